"""The health CLI against a real Redis cluster on loopback, formed by the shipped bootstrap.

The tests of both Redis lines: test_health_cluster_5_0.py and test_health_cluster_7_0.py each
bind `cluster` to their line and import these, so the two workers (--dist loadfile) run the
lines side by side. Each test leaves the cluster healthy again, so one cluster per line serves
them all. Addresses come from tests/integration/loopbacks.py (127.<pid>.<n>.x), so parallel runs
never collide. The check waiting for a cluster being formed (--wait) is run through the
program's own command: tests/integration/test_post_deploy_check.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outsystems_redis.judge import FAILOVER_AGAIN, OPERATIONS_LOGIN, PASSWORD_LOGIN
from outsystems_redis.tools import health
from outsystems_redis.tools.loopback import Loopback
from tests.integration.loopbacks import make_loopback
from tests.tools import ROOT


def run_health(lo: Loopback, *args: str, password: str | None = None, timeout: float = 120):
    nodes = ",".join(p.address for p in lo.processes)
    env = {**os.environ, "REDIS_PASSWORD": password if password is not None else lo.password}
    return subprocess.run(
        [sys.executable, "-m", "outsystems_redis.tools.health", "--nodes", nodes, "--cluster",
         "--expect-version", lo.version,
         *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def wait_for(lo: Loopback, condition, timeout: float = 40) -> list[health.Finding]:
    """Poll the check in-process until `condition(findings)` holds; return those findings."""
    deadline = time.monotonic() + timeout
    while True:
        facts = health.gather([(p.host, p.port) for p in lo.processes], lo.password, True, lo.version)
        findings = health.judge(facts)
        if condition(findings):
            return findings
        assert time.monotonic() < deadline, health.report(facts, findings)
        time.sleep(0.5)


def healthy(findings) -> bool:
    return health.verdict(findings) == "healthy"


def take_roles_back(lo: Loopback, tries: int = 4) -> None:
    """Healthy again after processes came back: where roles drifted (a replica took over while its master was
    down, as restarts under load can leave it), follow the report's fix, as redis-role-restore does on the
    servers: CLUSTER FAILOVER on the replica it names, sent again only while that node is still a replica
    (Redis drops a manual failover that gets no majority within 5 s)."""
    for _ in range(tries):
        findings = wait_for(lo, lambda f: health.verdict(f) != "unhealthy")
        drifted = [f for f in findings if f.check == "balance" and f.severity == health.WARN and f.node]
        if healthy(findings) or not drifted:
            break
        node = lo.admin(next(p for p in lo.processes if p.address == drifted[0].node))  # as an operator
        if node.info("replication")["role"] == "slave":
            node.execute_command("CLUSTER", "FAILOVER")
        try:
            wait_for(lo, healthy, timeout=15)
            return
        except AssertionError:
            continue
    wait_for(lo, healthy)


def kill(lo: Loopback, host: str, port: int) -> None:
    """SIGKILL one process, found through its pid file."""
    p = next(p for p in lo.processes if p.host == host and p.port == port)
    pid = int(Path(lo.paths(p.server).pid_file(p.port)).read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"pid {pid} still there 10 s after SIGKILL"
        try:
            os.waitpid(pid, os.WNOHANG)  # our child: reap it so it does not linger as a zombie
        except ChildProcessError:
            pass
        time.sleep(0.02)


def cluster_fixture(version: str):
    """The module's `cluster`: one healthy crossed cluster of Redis `version`, stopped at the end."""

    @pytest.fixture(scope="module")
    def cluster(request, tmp_path_factory):
        lo = make_loopback(request, tmp_path_factory, version)
        try:
            lo.start()
            lo.bootstrap()
            wait_for(lo, healthy)
            yield lo
        finally:
            lo.stop()
            assert lo.running() == []
            shutil.rmtree(lo.state_dir, ignore_errors=True)

    return cluster


def test_a_healthy_crossed_cluster_exits_0(cluster):
    result = run_health(cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("HEALTHY")
    assert "no replica shares a server with its master" in result.stdout
    assert "session round-trip" in result.stdout
    report = json.loads(run_health(cluster, "--json").stdout)
    assert report["verdict"] == "healthy" and report["exit_code"] == 0


def test_a_wrong_password_exits_1_with_a_one_line_reason(cluster):
    result = run_health(cluster, password="not-the-password-at-all")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("UNHEALTHY")
    [reason] = [line for line in lines if "FAIL" in line]
    assert "wrong password (AUTH rejected): check REDIS_PASSWORD" in reason


def test_a_replica_moved_onto_its_masters_server_exits_1_naming_the_server(cluster):
    host = cluster.topology.servers[0].private_ip
    replica = cluster.admin(cluster.topology.servers[0].processes[1])  # as an operator would
    own_master = cluster.client(cluster.topology.servers[0].processes[0])
    ring_master_id = replica.execute_command("CLUSTER", "NODES")  # remember whom it follows now
    old = next(n for n in health.parse_cluster_nodes(ring_master_id, host) if "myself" in n.flags).master_id
    replica.execute_command("CLUSTER", "REPLICATE", own_master.execute_command("CLUSTER", "MYID"))
    try:
        wait_for(cluster, lambda f: any(x.check == "crossed" for x in f if x.severity == health.FAIL))
        result = run_health(cluster)
        assert result.returncode == 1
        assert f"FAIL  server {host}: replica {host}:7001 follows master {host}:7000 on the same server" \
            in result.stdout
        assert f"CLUSTER REPLICATE {old}" in result.stdout  # the fix: back to the ring's master
    finally:
        replica.execute_command("CLUSTER", "REPLICATE", old)
        wait_for(cluster, healthy)


def test_uncovered_slots_exit_1(cluster):
    """Kill one master and its (crossed) replica: that master's slots have nobody left to serve them."""
    first, last = cluster.topology.servers[0], cluster.topology.servers[-1]
    kill(cluster, first.private_ip, 7000)
    kill(cluster, last.private_ip, 7001)  # the replica that follows server 0's master
    try:
        # The slots go uncovered as soon as both are flagged; the surviving masters then
        # vote the master FAIL and every node turns cluster_state:fail (full coverage
        # is required by default). Wait for both, or the verdict races the vote.
        wait_for(cluster, lambda f: {("slots", health.FAIL), ("cluster-state", health.FAIL)}
                 <= {(x.check, x.severity) for x in f})
        result = run_health(cluster)
        assert result.returncode == 1
        assert f"master {first.private_ip}:7000 is down" in result.stdout
        assert "sessions there are unavailable" in result.stdout
        assert "cluster_state:fail" in result.stdout
    finally:
        cluster.start_server(0)
        cluster.start_server(len(cluster.topology.servers) - 1)
        # Under load the restarted replica can win an election before its master is back (CI of 001aaaa).
        take_roles_back(cluster)


def test_a_killed_server_exits_1_then_warns_after_it_returns_until_rebalanced(cluster):
    host = cluster.topology.servers[1].private_ip
    cluster.kill_server(1)
    try:
        result = run_health(cluster)
        assert result.returncode == 1
        assert f"server {host}:" in result.stdout and "connection refused" in result.stdout
        # Wait for the replica on server 0 to take over (server 0 then holds two masters) and the
        # master on server 2 to be left without a replica: still unhealthy.
        wait_for(cluster, lambda f: any(x.check == "slots" and x.severity == health.OK for x in f)
                 and any(x.check == "balance" and x.severity == health.WARN for x in f)
                 and any(x.check == "replicas" and x.severity == health.FAIL for x in f))
        assert run_health(cluster).returncode == 1
    finally:
        cluster.start_server(1)
    findings = wait_for(cluster, lambda f: health.verdict(f) != "unhealthy")
    result = run_health(cluster)
    assert result.returncode == 0 and result.stdout.startswith("DEGRADED"), result.stdout
    assert run_health(cluster, "--strict").returncode == 1
    [warn] = [f for f in findings if f.severity == health.WARN]
    assert warn.check == "balance" and f"server {host} holds no master" in warn.message
    # The fix the report gives restores the ring exactly.
    h, _, p = warn.node.rpartition(":")
    # Logged in as an operator may administer the line: 5.0's password; 7.0's operations user (the front-ends'
    # user cannot fail a master over).
    login = OPERATIONS_LOGIN if cluster.version != "5.0" else PASSWORD_LOGIN
    assert warn.fix.startswith(f"{login} -h {h} -p {p} CLUSTER FAILOVER"), warn.fix
    assert warn.fix.endswith(FAILOVER_AGAIN)
    # Pasted into a shell as printed, with the exports docs/operations.md gives, Redis takes it.
    pasted = subprocess.run(["bash", "-c", warn.fix], capture_output=True, text=True, timeout=30, env={
        "PATH": f"{Path(cluster.redis_cli).parent}:/usr/bin:/bin", "REDIS_PASSWORD": cluster.password,
        "REDIS_OPS_PASSWORD": cluster.ops_secret or ""})
    assert pasted.returncode == 0 and pasted.stdout.strip() == "OK", pasted.stdout + pasted.stderr
    # As the fix says: Redis drops a manual failover that gets no majority within 5 s (CI of 119ba95,
    # on a loaded machine), so a second or third try, while the node is still a replica, is part of the fix.
    take_roles_back(cluster)
    assert run_health(cluster).returncode == 0


def tests_for(version: str) -> dict[str, object]:
    """A per-line test file's namespace: its `cluster` fixture and every test above, in file order
    (pytest collects a module's tests in the order they appear in it)."""
    tests = {name: obj for name, obj in globals().items() if name.startswith("test_") and callable(obj)}
    return {"cluster": cluster_fixture(version), **tests}
