"""The boot tests' shared fixtures: the cached Debian 12 root, and a booted prod fleet per module
(tests/boot/support.py has the rest)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot import machines as m
from tests.boot.support import Cluster, Deployment, booted
from tests.tools import tool


@pytest.fixture(scope="session")
def root() -> Path:
    # A missing tool fails (tests/tools.py), never skips.
    for name in ("systemd-nspawn", "debootstrap", "dpkg-scanpackages", "nsenter", "ip", "redis-cli"):
        tool(name)
    if os.geteuid() != 0:
        pytest.fail("the boot tests run as root (network namespaces, overlay mounts, systemd-nspawn)", pytrace=False)
    return m.build_root()  # built once per machine, under a lock: workers booting at once share it


@pytest.fixture(scope="module")
def prod(root: Path) -> Iterator[Cluster]:
    """The prod stack's three servers, powered on together and booted: one fleet per test module."""
    deployment = Deployment.of("prod")
    with booted(root, deployment) as fleet:
        yield Cluster(fleet, deployment)
