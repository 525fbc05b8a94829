"""policy/__main__.py as the CLI runs it: it must import and start the analyzer's gRPC server."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys

from tests.tools import ROOT


def test_policy_pack_starts_and_announces_its_port() -> None:
    # The Python analyzer prints the port it listens on, then serves until killed. Started
    # with buffered stdout (PYTHONUNBUFFERED unset, as on a user's machine): the port must
    # still arrive, within a deadline rather than a readline that could hang.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "policy" / "__main__.py")], cwd=ROOT / "policy",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=30)
        line = os.read(proc.stdout.fileno(), 64).decode() if ready else ""
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)  # bounded: the pack is killed first
    assert line.strip().isdigit(), (line, "no port announced within 30 s", err.decode())
