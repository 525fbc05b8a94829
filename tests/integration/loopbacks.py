"""Loopback clusters for the integration tests: unique addresses, always stopped."""

from __future__ import annotations

import itertools
import re

import pytest

from outsystems_redis.tools.loopback import Loopback
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


# ---------------------------------------------------------------- what tests read from a loopback

SLOTS = 16384


def nodes(lo: Loopback) -> dict[str, dict]:
    """CLUSTER NODES as seen from the first live process: address -> {id, role, master_id, slots}."""
    alive = lo.running()
    raw = lo.client(alive[0]).execute_command("CLUSTER", "NODES")
    result = {}
    for line in raw.splitlines():
        f = line.split()
        slots = 0
        for r in f[8:]:
            lo_, _, hi = r.partition("-")
            slots += int(hi or lo_) - int(lo_) + 1
        result[f[1].split("@")[0]] = {
            "id": f[0], "role": "master" if "master" in f[2] else "replica", "master_id": f[3],
            "slots": slots, "failed": "fail" in f[2] and "fail?" not in f[2],
        }
    return result


def server_of(lo: Loopback, address: str) -> int:
    return next(p.server for p in lo.processes if p.address == address)


def assert_crossed(lo: Loopback) -> None:
    view = nodes(lo)
    masters = {a: n for a, n in view.items() if n["role"] == "master"}
    assert len(masters) == 3
    assert len({server_of(lo, a) for a in masters}) == 3
    assert sum(n["slots"] for n in masters.values()) == SLOTS
    by_id = {n["id"]: a for a, n in view.items()}
    replicas = {a: n for a, n in view.items() if n["role"] == "replica"}
    assert len(replicas) == 3
    for address, n in replicas.items():
        master = by_id[n["master_id"]]
        assert server_of(lo, master) != server_of(lo, address), f"{address} replicates {master} on its own server"
        # The ring: the replica on server i follows the master on server i+1.
        assert server_of(lo, master) == (server_of(lo, address) + 1) % 3


# Warning-level ('#') lines that are not about the config: start-up banners, and
# the host's kernel settings, which the cloud-config's sysctl/THP rules fix on EC2.
BENIGN = re.compile(
    r"Redis is starting|Redis version=|Configuration loaded|Server initialized|"
    r"overcommit|Transparent Huge Pages|TCP backlog setting|Ready to accept"
)


def warnings(lo: Loopback) -> list[str]:
    found = []
    for p in lo.processes:
        for line in lo.log_file(p).read_text().splitlines():
            if re.match(r"\d+:[CMSX] .* # ", line) and not BENIGN.search(line):
                found.append(f"{p.address}: {line}")
    return found


def replica_logins(lo: Loopback) -> dict[str, list[str]]:
    """For every master process, the user each of its replica links is logged in as (CLIENT LIST TYPE replica,
    as the operations user; CLIENT by its secret name on 5.0)."""
    logins = {}
    for p in (p for p in lo.processes if p.role == "master"):
        admin = lo.admin(p)
        try:
            links = admin.execute_command(lo.command_name(p, "CLIENT"), "LIST", "TYPE", "replica").splitlines()
        finally:
            admin.close()
        logins[p.address] = [next(w[5:] for w in line.split() if w.startswith("user=")) for line in links]
    return logins
