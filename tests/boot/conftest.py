"""The boot tests' shared fixture: the cached Debian 12 root (tests/boot/support.py has the rest)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.boot import machines as m
from tests.tools import tool


@pytest.fixture(scope="session")
def root() -> Path:
    # A missing tool fails (tests/tools.py), never skips.
    for name in ("systemd-nspawn", "debootstrap", "dpkg-scanpackages", "nsenter", "ip", "redis-cli"):
        tool(name)
    if os.geteuid() != 0:
        pytest.fail("the boot tests run as root (network namespaces, overlay mounts, systemd-nspawn)", pytrace=False)
    return m.build_root()  # built once per machine, under a lock: workers booting at once share it
