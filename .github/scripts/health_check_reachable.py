"""Stop a deploy early when its post-deploy health check could never reach the servers.

With `healthCheck` on and `healthCheckVia: direct`, `pulumi up` runs the health check
(outsystems_redis/tools/health) against the servers' private IPs from the runner. A GitHub-hosted
runner is outside the VPC, so the check would only time out after healthCheckTimeout.
The default, `healthCheckVia: cloudwatch`, reads the servers' verdicts through AWS and runs anywhere.
Usage: python .github/scripts/health_check_reachable.py <stack>
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from outsystems_redis.settings import NAMESPACE  # noqa: E402
from outsystems_redis.tools import stack_file  # noqa: E402


def connects_directly(stack: str, root: Path = ROOT) -> bool:
    """The check is on and connects to the servers (healthCheckVia: direct): the stack file parsed (and
    defaulted) exactly as the program does, a `secure:` password and a `tags` map included."""
    settings = stack_file.read_settings(stack, root / f"Pulumi.{stack}.yaml")
    return settings.health_check and settings.health_check_via == "direct"


def problem(stack: str, hosted: bool, root: Path = ROOT) -> str | None:
    if hosted and connects_directly(stack, root):
        return (
            f"Pulumi.{stack}.yaml sets {NAMESPACE}:healthCheckVia: direct, but this job runs on a GitHub-hosted "
            "runner, which cannot reach the servers' private IPs. Remove the key (the default, cloudwatch, reads "
            "the servers' verdicts through AWS), run the deploy jobs on a self-hosted runner inside the VPC (or "
            f"one with a VPN into it), or set `{NAMESPACE}:healthCheck: false` in Pulumi.{stack}.yaml."
        )
    return None


if __name__ == "__main__":
    message = problem(sys.argv[1], os.environ.get("RUNNER_ENVIRONMENT") == "github-hosted")
    if message:
        print(f"::error file=Pulumi.{sys.argv[1]}.yaml::{message}")
        sys.exit(1)
    settings = stack_file.read_settings(sys.argv[1], ROOT / f"Pulumi.{sys.argv[1]}.yaml")
    how = f"on, {settings.health_check_via}" if settings.health_check else "off"
    print(f"health check: {how} for {sys.argv[1]}; runner ok")
