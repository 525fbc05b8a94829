"""Roles restore themselves: the shipped redis-role-restore on real Redis 5.0 and 7.0 on loopback.

After a whole-server failover and the server's return, one run of every server's script (as
their timers do each minute) gives the returning server its master back with a plain CLUSTER
FAILOVER, without losing an acknowledged session; it never acts during an outage, and never
restores two servers in one run.
"""

from __future__ import annotations

import time

import pytest

from outsystems_redis.tools import health
from outsystems_redis.tools.loopback import Loopback
from outsystems_redis.tools.rehearsal import lost_sessions, master_hosts, slots_writable, write_sessions
from tests.tools import REDIS_VERSIONS

FAILOVER_TIMEOUT = 45  # cluster-node-timeout 5 s, plus elections


def fail_over(lo: Loopback, server: int) -> None:
    """Kill `server`, wait until its slots are served from the other servers, bring it back (drifted)."""
    host = lo.topology.servers[server].private_ip
    lo.kill_server(server)
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while not slots_writable(lo, {host}):
        assert time.monotonic() < deadline, f"no failover of {host} within {FAILOVER_TIMEOUT}s"
        time.sleep(0.2)
    lo.start_server(server)


def cluster_views(lo: Loopback) -> dict[str, str]:
    """Each process's own view: its cluster_state and the nodes it flags (for waits and failure messages)."""
    views = {}
    for p in lo.processes:
        try:
            client = lo.client(p)
            state = client.execute_command("CLUSTER", "INFO").split("cluster_state:")[1].split()[0]
            flagged = [line.split()[1] for line in client.execute_command("CLUSTER", "NODES").splitlines()
                       if any(f in line.split()[2] for f in ("fail", "handshake", "noaddr"))]
            # Who it takes for a master: after a failover the other nodes learn the new epoch by gossip.
            masters = sorted(line.split()[1].split("@")[0] for line in client.execute_command("CLUSTER", "NODES")
                             .splitlines() if "master" in line.split()[2])
            views[f"{p.host}:{p.port}"] = state + (" flags " + ",".join(flagged) if flagged else "") + \
                " masters " + ",".join(masters)
        except Exception as e:  # noqa: BLE001 (a process still starting: say so)
            views[f"{p.host}:{p.port}"] = f"no answer ({e})"
    return views


def wait_synced(lo: Loopback, timeout: float = 30) -> None:
    """Every process answers, every replica's link to its master is up and synced, and every process sees
    the cluster whole (cluster_state ok, no node flagged failing) with the same masters, those that say
    they are: the state a server's timer meets a minute after a return (a run right after a failover once
    met a node that had not yet heard of it). (A restarted replica that never synced cannot take over: Redis
    refuses its election as too old. A restarted process sees the cluster whole only once it has heard from every
    node again, which takes longer on a busy machine.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            infos = [lo.client(p).info("replication") for p in lo.processes]
            masters = " masters " + ",".join(sorted(f"{p.host}:{p.port}" for p, i in zip(lo.processes, infos,
                                                                                      strict=True)
                                                    if i["role"] == "master"))
            if all(i["role"] == "master" or (i.get("master_link_status") == "up"
                                              and not i.get("master_sync_in_progress")) for i in infos) \
                    and all(view == "ok" + masters for view in cluster_views(lo).values()):
                return
        except Exception:  # noqa: BLE001 (a process still starting: try again)
            pass
        assert time.monotonic() < deadline, f"replicas not in sync or cluster not whole within {timeout}s: " \
            f"{cluster_views(lo)}"
        time.sleep(0.5)


def acted(results: dict[int, tuple[int, str]]) -> list[int]:
    return sorted(s for s, (_, out) in results.items() if "CLUSTER FAILOVER" in out)


@pytest.mark.parametrize("version", REDIS_VERSIONS)
def test_a_returning_server_takes_its_master_back_one_server_per_run(version, loopback_factory) -> None:
    lo = loopback_factory(version)
    lo.start()
    lo.bootstrap()
    hosts = [s.private_ip for s in lo.topology.servers]
    acked = write_sessions(lo, 100)

    fail_over(lo, 1)  # server 1 back, its master port now a replica: drifted
    wait_synced(lo)

    # While another server is down, the drifted server waits: a node is flagged failing.
    lo.kill_server(2)
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while not slots_writable(lo, {hosts[2]}):
        assert time.monotonic() < deadline, f"no failover of {hosts[2]}"
        time.sleep(0.2)
    during = lo.restore_roles()
    assert acted(during) == [] and all(code == 0 for code, _ in during.values()), during
    assert "flagged failing" in during[1][1], during[1][1]
    lo.start_server(2)
    wait_synced(lo)
    # Server 2's slots went to the replica on server 1; servers 1 and 2 run replicas on their master port.
    assert master_hosts(lo) == {hosts[0], hosts[1]}
    assert [s.index for s in lo.topology.servers if lo.client(s.processes[0]).info("replication")["role"] == "slave"] \
        == [1, 2]
    assert lost_sessions(lo, acked) == 0

    first = lo.restore_roles()
    # The first drifted server by IP acts, and the other waits for it. The runs start together, but on a loaded
    # machine one may start a second late, when the first's failover has already ended (the env -i run of
    # 7bf1260): then it is the first drifted server by IP, and acts in the same run, after it.
    assert acted(first) in ([1], [1, 2]), first
    if acted(first) == [1]:
        assert "server " + hosts[1] + " restores its master role first" in first[2][1], (first, cluster_views(lo))
        wait_synced(lo)
        second = lo.restore_roles()
        assert acted(second) == [2], second
    else:
        assert "is a master again" in first[1][1], first  # server 1's had ended
    wait_synced(lo)
    assert acted(lo.restore_roles()) == []  # nothing left to do: a quiet no-op

    # A few seconds of gossip after the last failover, then HEALTHY with no WARN.
    facts, findings = health.run_check([(p.host, p.port) for p in lo.processes], lo.password, True, lo.version,
                                       wait=30, interval=1)
    assert health.verdict(findings) == "healthy", health.report(facts, findings)
    assert master_hosts(lo) == set(hosts)
    assert lost_sessions(lo, acked) == 0
