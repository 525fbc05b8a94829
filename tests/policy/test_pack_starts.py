"""policy/__main__.py as the CLI runs it: it must import and start the analyzer's gRPC server."""

from __future__ import annotations

import subprocess
import sys

from tests.tools import ROOT


def test_policy_pack_starts_and_announces_its_port() -> None:
    # The Python analyzer prints the port it listens on, then serves until killed.
    proc = subprocess.Popen([sys.executable, str(ROOT / "policy" / "__main__.py")], cwd=ROOT / "policy",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip().isdigit(), (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    finally:
        proc.kill()
        proc.wait(timeout=10)
