"""Scale-out on real Redis: 3 -> 4 -> 6 servers with the shipped join script, under live sessions.

The tests of both Redis lines: test_scale_out_5_0.py and test_scale_out_7_0.py each bind
`cluster` to their line and take these, so the two workers (--dist loadfile) grow a 5.0 and
a 7.0 cluster side by side. One cluster per line, grown step by step; the tests run in file order.
"""

from __future__ import annotations

import time

import pytest

from outsystems_redis.tools import health
from outsystems_redis.tools.loopback import Loopback
from outsystems_redis.tools.rehearsal import SessionTraffic, verify_sessions
from outsystems_redis.topology import follows
from tests.integration.loopbacks import make_loopback

MAX_CLIENT_ERRORS = 5  # errors the client may give up on during a move (seen: 0); wrong answers: none at all


def view(lo: Loopback) -> tuple[health.ClusterNode, ...]:
    p = lo.running()[0]
    return health.parse_cluster_nodes(lo.client(p).execute_command("CLUSTER", "NODES"), p.host)


def layout(lo: Loopback) -> set[tuple]:
    """What a join may change: who is where, who follows whom, who owns which slots."""
    return {(n.id, n.address, n.is_master, n.master_id, n.slots) for n in view(lo)}


def assert_ring(lo: Loopback) -> None:
    """One master per server, and the replica on server i follows the master on server i+1 (mod N)."""
    nodes = view(lo)
    hosts = [s.private_ip for s in lo.topology.servers]
    masters = {h: [n for n in nodes if n.host == h and n.is_master and n.slots] for h in hosts}
    assert all(len(ms) == 1 for ms in masters.values()), masters
    for i, h in enumerate(hosts):
        [replica] = [n for n in nodes if n.host == h and not n.is_master]
        assert replica.master_id == masters[hosts[follows(i, len(hosts))]][0].id, f"replica on server {i}"
    counts = [ms[0].slot_count for ms in masters.values()]
    assert sum(counts) == health.SLOTS
    assert max(counts) - min(counts) <= 0.05 * health.SLOTS / len(hosts), counts


def assert_fully_green(lo: Loopback) -> None:
    facts, findings = health.run_check([(p.host, p.port) for p in lo.processes], lo.password, True, lo.version,
                                       wait=30, interval=1)
    assert [f for f in findings if f.severity != health.OK] == [], health.report(facts, findings)
    checks = {f.check for f in findings}
    assert {"crossed", "ring", "balance", "slot-balance", "replicas"} <= checks


def grow(lo: Loopback, count: int) -> tuple[dict[int, str], SessionTraffic, float]:
    """Add `count` servers at once while a client writes and reads 20 KB sessions."""
    traffic = SessionTraffic(lo, max_seconds=300).start()
    time.sleep(1.5)  # sessions that exist before the move
    started = time.monotonic()
    try:
        # A bound, not a wait: server 6 queues behind server 5's rebalance, which took over 120 s with a
        # second copy of the suite running beside this one.
        outputs = lo.add_servers(count, wait_seconds=400)
    finally:
        took = time.monotonic() - started
        traffic.stop()
    return outputs, traffic, took


def assert_sessions_kept(lo: Loopback, traffic: SessionTraffic) -> None:
    assert traffic.wrong == [], traffic.wrong[:5]
    assert len(traffic.errors) <= MAX_CLIENT_ERRORS, traffic.errors[:5]
    assert len(traffic.acked) > 100 and traffic.reads > 100
    assert verify_sessions(lo, traffic.acked) == []


def cluster_fixture(version: str):
    """The module's `cluster`: a crossed 3-server cluster of Redis `version`, grown by the tests in order."""

    @pytest.fixture(scope="module")
    def cluster(request, tmp_path_factory):
        lo = make_loopback(request, tmp_path_factory, version)
        lo.start()
        lo.bootstrap()
        return lo

    return cluster


def test_three_to_four_under_live_sessions(cluster):
    outputs, traffic, took = grow(cluster, 1)
    assert "moved to it: 4096" in outputs[3], outputs[3]
    # People count servers from 1 (the Name tag redis-4, the README); the logs do too.
    assert f"server 4 ({cluster.topology.servers[3].private_ip})" in outputs[3], outputs[3]
    assert_sessions_kept(cluster, traffic)
    assert_ring(cluster)
    assert_fully_green(cluster)
    print(f"3->4 on Redis {cluster.version}: {took:.1f}s, {len(traffic.acked)} sessions, "
          f"{len(traffic.errors)} errors")


def test_a_second_join_changes_nothing(cluster):
    before = layout(cluster)
    output = cluster.join(3)
    assert "is already a member" in output and "the ring is already linked" in output
    assert "No rebalancing needed" in output
    assert "Adding node" not in output and "Moving" not in output and "CLUSTER REPLICATE" not in output
    assert layout(cluster) == before


def test_four_to_six_two_servers_joining_at_once(cluster):
    outputs, traffic, took = grow(cluster, 2)
    # Server 6 queued behind server 5 (serialised by index), then took its share.
    assert "waiting: server 5" in outputs[5] or "slots are being moved" in outputs[5], outputs[5]
    assert outputs[4].index("done") and "done" in outputs[5]
    assert_sessions_kept(cluster, traffic)
    assert_ring(cluster)
    assert_fully_green(cluster)
    print(f"4->6 on Redis {cluster.version}: {took:.1f}s, {len(traffic.acked)} sessions, "
          f"{len(traffic.errors)} errors")


def test_after_later_joins_an_earlier_join_leaves_the_ring_alone(cluster):
    before = layout(cluster)
    output = cluster.join(3)
    assert "joined later and keep the ring and the slots" in output
    assert layout(cluster) == before


def test_a_drifted_cluster_is_not_fought(cluster):
    lo = cluster
    # Server 4's replica takes over the master of server 5: server 4 holds two masters, server 5 none.
    s4, s5 = lo.topology.servers[4], lo.topology.servers[5]
    replica = next(p for p in s4.processes if p.port == 7001)
    assert lo.admin(replica).execute_command("CLUSTER", "FAILOVER") == "OK"
    old = next(p for p in s5.processes if p.port == 7000)
    deadline = time.monotonic() + 30
    # Settled once every node sees the swap (gossip), so only a join could change the layout from here.
    while not all(
        any(n.address == replica.address and n.is_master for n in v) and
        any(n.address == old.address and not n.is_master for n in v)
        for v in (health.parse_cluster_nodes(lo.client(p).execute_command("CLUSTER", "NODES"), p.host)
                  for p in lo.processes)
    ):
        assert time.monotonic() < deadline, "CLUSTER FAILOVER did not happen"
        time.sleep(0.2)
    try:
        drifted = layout(lo)
        assert "already joined; not touching the cluster" in lo.join(5)
        assert layout(lo) == drifted
        # A new server does not join a drifted cluster; it says why and what fixes it.
        lo.add_servers(1, join=False)
        with pytest.raises(RuntimeError) as refused:
            lo.join(6, wait_seconds=5)
        assert "roles drifted" in str(refused.value) and "CLUSTER FAILOVER" in str(refused.value)
        assert layout(lo) == drifted
    finally:
        # The health check's fix: the old master (now a replica on server 5) takes its role back.
        lo.admin(old).execute_command("CLUSTER", "FAILOVER")


def tests_for(version: str) -> dict[str, object]:
    """A per-line test file's namespace: its `cluster` fixture and every test above, in file order
    (pytest collects a module's tests in the order they appear in it, and each step grows the last)."""
    tests = {name: obj for name, obj in globals().items() if name.startswith("test_") and callable(obj)}
    return {"cluster": cluster_fixture(version), **tests}
