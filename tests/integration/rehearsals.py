"""What the rehearsal CLI's tests share (test_rehearsal, test_rehearsal_scale, test_rejoin): the CLI run as a
user runs it, the Redis processes it left, and their loopback blocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.tools import ROOT, loopback_octet

# Own 127.<a>.<b>.x blocks: `a` from the pid like tests/integration/loopbacks.py, `b` above its range
# (test_rehearsal's cases take 251-253).
A = loopback_octet()
SCALE_BLOCK = 254  # test_rehearsal_scale.py's


def rehearse(command: str, stack: str, state: Path, prefix: str, version: str | None, *extra: str):
    args = [sys.executable, "-m", "outsystems_redis.tools.rehearsal", command, "--stack", stack,
            "--state-dir", str(state),
            "--host-prefix", prefix] + (["--version", version] if version else []) + list(extra)
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240)


def redis_processes(prefix: str, program: str = "redis-server") -> list[str]:
    """Every process of `program` on this machine whose command line holds `prefix` (an address, a path)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if program in text and prefix in text:
            found.append(text)
    return found
