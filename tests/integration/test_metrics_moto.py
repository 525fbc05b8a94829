"""The servers' metrics publisher against moto in server mode: real Redis 5.0 and 7.0 on loopback, the real AWS CLI.

Each test runs the user data's launcher (it fetches redis-observe.py from moto's S3, as
from the stack's bucket) for a server of a loopback cluster, then reads back from moto
what CloudWatch received.
"""

from __future__ import annotations

import time

import pytest
import redis

from outsystems_redis import monitoring
from outsystems_redis.backup_bucket import server_statements
from outsystems_redis.judge import parse_cluster_info, parse_cluster_nodes
from tests.integration.metrics_stand_in import latest, namespace_of, namespaces, observe, published


def state(client: redis.Redis) -> str:
    return parse_cluster_info(client.execute_command("CLUSTER", "INFO"))["cluster_state"]


def run_ok(moto, lo, server, stack, tmp_path, **kw):
    result = observe(moto, lo, server, stack, "metrics", tmp_path / f"state-{stack}-{server}", **kw)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def assert_every_metric_healthy(moto, lo, tmp_path) -> None:
    """The launcher on every server of a healthy cluster: every metric per server, each at its healthy value."""
    moto.prepare_stack("healthy")
    for i in range(3):
        run_ok(moto, lo, i, "healthy", tmp_path)
    names = [s.name for s in lo.topology.servers]
    # list_metrics: every metric, with exactly the Stack and Server dimensions, for every server, each in the
    # namespace of its own session only (the role's grant: monitoring.metric_namespace(stack, SERVER_SESSION)).
    assert published(moto, "healthy") == {n: set(monitoring.METRIC_NAMES) for n in names}
    assert {n: set(spaces) for n, spaces in namespaces(moto, "healthy").items()} == {
        n: {monitoring.metric_namespace("healthy", moto.writer(i))} for i, n in enumerate(names)}
    # ... which is what the role's policy lets that server, and only it, publish in (IAM fills in aws:userid).
    # And, until the next minor version, the stack's former namespace, where an upgrading stack's alarms read.
    ((own, former),) = [s["Condition"]["StringEquals"]["cloudwatch:namespace"] for s in server_statements(
        "healthy", "arn:aws:logs:x", "arn:aws:s3:::b") if s["Sid"] == "PublishMetrics"]
    assert [own.replace("${aws:userid}", moto.writer(i)) for i in range(3)] == \
        [namespace_of(moto, "healthy", n) for n in names]
    listed = moto.client("cloudwatch").list_metrics(Namespace=former)["Metrics"]
    assert former == monitoring.former_namespace("healthy") and {
        (m["MetricName"], next(d["Value"] for d in m["Dimensions"] if d["Name"] == "Server")) for m in listed} == {
        (metric, n) for metric in monitoring.METRIC_NAMES for n in names}
    for n in names:
        assert latest(moto, "healthy", n, "ClusterStateOk") == 1
        assert latest(moto, "healthy", n, "SlotsServed") == 16384
        assert latest(moto, "healthy", n, "ReplicaLinksDown") == 0
        assert latest(moto, "healthy", n, "RoleDrift") == 0
        assert latest(moto, "healthy", n, "ShapeFailures") == 0
        assert 0 < latest(moto, "healthy", n, "MemoryUsedPercent") < 5
        assert latest(moto, "healthy", n, "ConnectedClients") >= 2  # the replication links at least
        assert 0 <= latest(moto, "healthy", n, "LastSaveAgeSeconds") < 600
    assert lo.password not in moto.everything()


# On 7.0 here; on 5.0 at the start of the killed-server test below (its cluster is healthy until the kill).
def test_a_healthy_cluster_publishes_every_metric_per_server(loopback_factory, moto, tmp_path):
    lo = loopback_factory("7.0")
    lo.start()
    lo.bootstrap()
    assert_every_metric_healthy(moto, lo, tmp_path)


def test_a_tls_cluster_is_read_through_the_stacks_ca(loopback_factory, moto, tmp_path):
    lo = loopback_factory("7.0", tls=True)
    lo.start()
    lo.bootstrap()
    moto.prepare_stack("tls")
    for i in range(3):
        run_ok(moto, lo, i, "tls", tmp_path)
    assert published(moto, "tls") == {s.name: set(monitoring.METRIC_NAMES) for s in lo.topology.servers}
    assert {latest(moto, "tls", s.name, "ClusterStateOk") for s in lo.topology.servers} == {1}


def test_a_killed_server_shows_in_cluster_state_slots_and_replica_links(loopback_factory, moto, tmp_path):
    lo = loopback_factory("5.0")
    lo.start()
    lo.bootstrap()
    assert_every_metric_healthy(moto, lo, tmp_path)
    moto.prepare_stack("killed")
    moto.prepare_stack("failedover")
    # Server 0's replica follows server 1's master; holding its failover back keeps the outage visible.
    replica = lo.topology.servers[0].processes[1]
    lo.config(replica, "SET", "cluster-replica-no-failover", "yes")
    master_1 = lo.client(lo.topology.servers[1].processes[0])
    (lost,) = [n.slot_count for n in parse_cluster_nodes(master_1.execute_command("CLUSTER", "NODES"))
               if "myself" in n.flags]
    assert 0 < lost < 16384
    lo.kill_server(1)
    survivor = lo.client(lo.topology.servers[0].processes[0])
    deadline = time.monotonic() + 60
    while state(survivor) != "fail":
        assert time.monotonic() < deadline, "server 1's master was never flagged failing"
        time.sleep(0.5)
    for i in (0, 2):
        run_ok(moto, lo, i, "killed", tmp_path)
    s0, s2 = lo.topology.servers[0].name, lo.topology.servers[2].name
    for name in (s0, s2):
        assert latest(moto, "killed", name, "ClusterStateOk") == 0
        assert latest(moto, "killed", name, "SlotsServed") == 16384 - lost
    assert latest(moto, "killed", s0, "ReplicaLinksDown") == 1  # its master is gone
    assert latest(moto, "killed", s2, "ReplicaLinksDown") == 0
    # Server 2's master had its replica on server 1: no working copy left (server 0's master still has one).
    assert latest(moto, "killed", s2, "ShapeFailures") == 1
    assert latest(moto, "killed", s0, "ShapeFailures") == 0

    # Let the failover happen: the cluster is whole again, and server 0 holds two masters.
    lo.config(replica, "SET", "cluster-replica-no-failover", "no")
    deadline = time.monotonic() + 60
    while state(survivor) != "ok":
        assert time.monotonic() < deadline, "no failover"
        time.sleep(0.5)
    run_ok(moto, lo, 0, "failedover", tmp_path)
    assert latest(moto, "failedover", s0, "ClusterStateOk") == 1
    assert latest(moto, "failedover", s0, "SlotsServed") == 16384
    assert latest(moto, "failedover", s0, "RoleDrift") == 1
    assert latest(moto, "failedover", s0, "ShapeFailures") == 1  # the master it took over has no replica


def test_counters_publish_the_increase_since_the_last_run(loopback_factory, moto, tmp_path):
    lo = loopback_factory("7.0", 1)
    lo.start()
    moto.prepare_stack("counters")
    name = lo.topology.servers[0].name
    r = lo.client(lo.processes[0])
    lo.config(lo.processes[0], "SET", "maxmemory", str(4 * 1024 * 1024))
    lo.config(lo.processes[0], "SET", "maxclients", "4")

    def fill(prefix: str) -> None:
        pipe = r.pipeline(transaction=False)
        for i in range(400):
            pipe.set(f"{prefix}{i}", "x" * 20_000)
        pipe.execute()

    def refuse(n: int) -> None:
        held = [lo.client(lo.processes[0]) for _ in range(3)]
        for c in held:
            c.ping()
        for _ in range(n):
            with pytest.raises(redis.ConnectionError):
                lo.client(lo.processes[0]).ping()
        for c in held:
            c.close()
        time.sleep(0.5)  # the server notices the closed connections

    fill("a")
    refuse(2)
    stats = r.info("stats")
    run_ok(moto, lo, 0, "counters", tmp_path)
    first_evicted = latest(moto, "counters", name, "EvictedKeys")
    # The first run (no state yet): the increase since the process started.
    assert first_evicted == stats["evicted_keys"] > 0
    assert latest(moto, "counters", name, "RejectedConnections") == stats["rejected_connections"] == 2
    time.sleep(1.1)  # another second, so the second run's datapoint is the latest
    fill("b")
    refuse(3)
    after = r.info("stats")
    run_ok(moto, lo, 0, "counters", tmp_path)
    assert latest(moto, "counters", name, "EvictedKeys") == after["evicted_keys"] - stats["evicted_keys"] > 0
    assert latest(moto, "counters", name, "RejectedConnections") == 3
    assert latest(moto, "counters", name, "OpsPerSecond") > 0
    assert latest(moto, "counters", name, "ClusterStateOk") == 1  # one server: 1 when up
    assert latest(moto, "counters", name, "SlotsServed") == 16384
