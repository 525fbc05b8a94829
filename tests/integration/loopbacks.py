"""Loopback clusters for the integration tests: unique addresses, always stopped."""

from __future__ import annotations

import itertools

import pytest

from operator_tools.loopback import Loopback
from tests.tools import loopback_octet, redis_bin

# Each Loopback gets its own 127.<a>.<b>.x hosts, so tests (and a rehearsal on
# 127.0.0.x) never share a port; the pid picks `a` so parallel runs don't either.
_next = itertools.count(1)

def make_loopback(request, tmp_path_factory, version: str, servers: int = 3, tls: bool = False) -> Loopback:
    redis_bin(version, "redis-server")  # a missing tool fails the test
    redis_bin(version, "redis-cli")
    b = next(_next) % 250
    a = loopback_octet()
    hosts = [f"127.{a}.{b}.{i + 1}" for i in range(servers)]
    lo = Loopback(tmp_path_factory.mktemp(f"lo-{version}"), servers=servers, version=version, hosts=hosts, tls=tls)
    request.addfinalizer(lambda: lo.stop(timeout=5))
    return lo

@pytest.fixture
def loopback_factory(request, tmp_path_factory):
    return lambda version, servers=3, tls=False: make_loopback(request, tmp_path_factory, version, servers, tls)
