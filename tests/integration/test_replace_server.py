"""The manual fallback for replacing one server (docs/boot-and-safety.md), run for real on loopback.

A replaced server rejoins by itself (tests/integration/test_rejoin.py). The manual procedure stays
documented for when that rejoin cannot act (its log says why) and for servers deployed before it
existed, so it stays rehearsed here: fail the server's master over to its replica, replace the
server by an empty one at the same address (its processes only: no cluster unit runs, as on such
an old server), rejoin it with the documented redis-cli commands, and end with a green health
check and every session still there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster

from outsystems_redis.parameters import OPERATIONS_USER
from outsystems_redis.render.redis_conf import has_users
from outsystems_redis.tools import health
from outsystems_redis.tools.loopback import Loopback
from tests.integration.loopbacks import make_loopback


def cli(lo: Loopback, host: str, port: int, *args: str) -> str:
    """redis-cli as docs/operations.md says: the password in REDISCLI_AUTH; on 7.0 the operations user's."""
    env = {**os.environ, "REDISCLI_AUTH": lo.password}
    user: list[str] = []
    if has_users(lo.platform):
        env["REDISCLI_AUTH"], user = lo.ops_secret or "", ["--user", OPERATIONS_USER]
    done = subprocess.run([lo.redis_cli, *user, "-h", host, "-p", str(port), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def node_id(lo: Loopback, host: str, port: int) -> str:
    return cli(lo, host, port, "CLUSTER", "MYID").strip()


def role(lo: Loopback, host: str, port: int) -> str:
    return lo.client(next(p for p in lo.processes if p.host == host and p.port == port)).info("replication")["role"]


def wait(condition, what: str, timeout: float = 60, explain=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {explain()}"
        time.sleep(0.5)


def verdict(lo: Loopback) -> list[health.Finding]:
    facts = health.gather([(p.host, p.port) for p in lo.processes], lo.password, True, lo.version)
    return [f for f in health.judge(facts) if f.severity != health.OK]


@pytest.mark.parametrize("version", ["5.0", "7.0"])
def test_replace_a_server_and_rejoin_it_as_documented(request, tmp_path_factory, version: str) -> None:
    lo = make_loopback(request, tmp_path_factory, version)
    lo.start()
    lo.bootstrap()
    prev, k, nxt = (s.private_ip for s in lo.topology.servers)  # server k = the second one
    sessions = RedisCluster(startup_nodes=[ClusterNode(prev, 7000)], password=lo.password)
    keys = []
    for _ in range(300):
        tag = f"{{{uuid.uuid4()}_{uuid.uuid4().hex[:24]}}}"
        pipe = sessions.pipeline()
        pipe.set(f"{tag}_Data", tag.encode() * 50, ex=3600)
        pipe.set(f"{tag}_Internal", b"i", ex=3600)
        pipe.execute()
        keys.append(tag)
    for master in lo.topology.masters:
        assert lo.client(master).execute_command("WAIT", 1, 5000) >= 1

    # Step 2: move k's master role to its replica, on server k-1.
    cli(lo, prev, 7001, "CLUSTER", "FAILOVER")
    wait(lambda: role(lo, prev, 7001) == "master", "k-1:7001 to take over k's slots")
    old_ids = [node_id(lo, k, 7000), node_id(lo, k, 7001)]

    # Step 4 (pulumi up --replace): the server goes away; a new, empty one boots at the same IP.
    lo.kill_server(1)
    for port in (7000, 7001):
        shutil.rmtree(lo.paths(1).data_dir(port))
        Path(lo.paths(1).data_dir(port)).mkdir()
    lo.start_server(1)

    # Step 5: forget the old ids, add the master as a replica of k-1:7001, the replica to
    # k+1's master, then give the master role back.
    for old in old_ids:
        print(cli(lo, prev, 7000, "--cluster", "call", f"{prev}:7000", "CLUSTER", "FORGET", old))
    cli(lo, prev, 7000, "--cluster", "add-node", f"{k}:7000", f"{prev}:7000", "--cluster-slave",
        "--cluster-master-id", node_id(lo, prev, 7001))
    cli(lo, prev, 7000, "--cluster", "add-node", f"{k}:7001", f"{prev}:7000", "--cluster-slave",
        "--cluster-master-id", node_id(lo, nxt, 7000))
    wait(lambda: lo.client(next(p for p in lo.processes if p.host == k and p.port == 7000))
         .info("replication").get("master_link_status") == "up", "the new master's sync")
    # As the README says: repeat the failover until ROLE answers master (a manual
    # failover that starts before every node has met the new one times out quietly).
    for _ in range(4):
        cli(lo, k, 7000, "CLUSTER", "FAILOVER")
        try:
            wait(lambda: cli(lo, k, 7000, "ROLE").startswith("master"), "the master role back", timeout=15)
            break
        except AssertionError:
            continue

    wait(lambda: not verdict(lo), "a green health check", timeout=90,
         explain=lambda: "; ".join(f"{f.severity} {f.message}" for f in verdict(lo)))
    for tag in keys:
        assert sessions.get(f"{tag}_Data") == tag.encode() * 50
        assert sessions.get(f"{tag}_Internal") == b"i"
        assert sessions.ttl(f"{tag}_Data") > 0
    sessions.close()
