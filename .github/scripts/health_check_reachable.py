"""Stop a deploy early when its post-deploy health check could never reach the servers.

With `healthCheck` on (the default), `pulumi up` runs the health check (operator_tools/health)
against the servers' private IPs from the runner. A GitHub-hosted runner is
outside the VPC, so the check would only time out after healthCheckTimeout.
Usage: python .github/scripts/health_check_reachable.py <stack>
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from components.settings import NAMESPACE  # noqa: E402
from operator_tools import stack_file  # noqa: E402


def health_check_enabled(stack: str, root: Path = ROOT) -> bool:
    """The stack's healthCheck, parsed (and defaulted) exactly as the program does: the stack file read as the
    config check reads it (a `secure:` password and a `tags` map included)."""
    return stack_file.read_settings(stack, root / f"Pulumi.{stack}.yaml").health_check


def problem(stack: str, hosted: bool, root: Path = ROOT) -> str | None:
    if hosted and health_check_enabled(stack, root):
        return (
            f"Pulumi.{stack}.yaml leaves {NAMESPACE}:healthCheck on, but this job runs on a GitHub-hosted runner, "
            "which cannot reach the servers' private IPs. Run the deploy jobs on a self-hosted runner inside the "
            f"VPC (or one with a VPN into it), or set `{NAMESPACE}:healthCheck: false` in Pulumi.{stack}.yaml "
            "and run `python -m operator_tools.health` from inside the VPC."
        )
    return None


if __name__ == "__main__":
    message = problem(sys.argv[1], os.environ.get("RUNNER_ENVIRONMENT") == "github-hosted")
    if message:
        print(f"::error file=Pulumi.{sys.argv[1]}.yaml::{message}")
        sys.exit(1)
    print(f"health check: {'on' if health_check_enabled(sys.argv[1]) else 'off'} for {sys.argv[1]}; runner ok")
