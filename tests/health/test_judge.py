"""The judging half of the health check: pure functions on parsed INFO / CLUSTER NODES, no Redis."""

from __future__ import annotations

import pytest

from outsystems_redis.judge import FAIL, OK, WARN, Facts, NodeFacts, parse_cluster_nodes
from outsystems_redis.tools import health
from outsystems_redis.tools.health import __main__ as cli
from outsystems_redis.topology import follows

SLOTS = health.SLOTS


def ring(servers: int, *, swap: int | None = None, colocate: int | None = None, dead: int | None = None,
         unassigned: int | None = None) -> str:
    """CLUSTER NODES text of a crossed ring of `servers` servers on 10.0.1.10+i.

    swap: server i's replica has taken over its master's slots (a failover happened);
    colocate: server i's replica follows server i's own master;
    dead: server i's two processes are flagged fail;
    unassigned: server i's master owns no slots.
    """
    per = SLOTS // servers
    lines = []
    for i in range(servers):
        lo, hi = i * per, (SLOTS - 1 if i == servers - 1 else (i + 1) * per - 1)
        host = f"10.0.1.{10 + i}"
        bad = ",fail" if dead == i else ""
        slots = "" if unassigned == i else f" {lo}-{hi}"
        m_role, r_follow = "master", f"m{follows(i, servers)}"
        lines.append((f"m{i}", f"{host}:7000@17000", m_role + bad, "-", slots))
        lines.append((f"r{i}", f"{host}:7001@17001", "slave" + bad, r_follow, ""))
    if swap is not None:
        # The master on server `swap+1` failed over to its replica on server `swap`.
        t = follows(swap, servers)
        m = next(x for x in lines if x[0] == f"m{t}")
        r = next(x for x in lines if x[0] == f"r{swap}")
        lines[lines.index(m)] = (m[0], m[1], "slave", r[0], "")
        lines[lines.index(r)] = (r[0], r[1], "master", "-", m[4])
    if colocate is not None:
        r = next(x for x in lines if x[0] == f"r{colocate}")
        lines[lines.index(r)] = (r[0], r[1], r[2], f"m{colocate}", r[4])
    return "\n".join(f"{i:0<40} {a} {f} {(m + '').ljust(40, '0') if m != '-' else '-'} 0 0 1 connected{s}"
                     for i, a, f, m, s in lines)


def facts(text: str, servers: int, *, down: int | None = None, version: str = "5.0.7") -> Facts:
    nodes = []
    for i in range(servers):
        for port in (7000, 7001):
            host = f"10.0.1.{10 + i}"
            if down == i:
                nodes.append(NodeFacts(host, port, error="connection refused"))
                continue
            view = parse_cluster_nodes(text)
            me = next(n for n in view if n.address == f"{host}:{port}")
            info = {"redis_version": version, "cluster_enabled": 1, "used_memory": 10 * 2**20,
                    "maxmemory": 3 * 2**30, "master_repl_offset": 100,
                    "role": "master" if me.is_master else "slave"}
            if not me.is_master:
                m = next(n for n in view if n.id == me.master_id)
                info.update(master_host=m.host, master_port=m.port, master_link_status="up",
                            slave_repl_offset=100)
            nodes.append(NodeFacts(host, port, info=info, cluster_info={"cluster_state": "ok"}, cluster_nodes=view))
    return Facts(True, "5.0", nodes, round_trip_ms=3.0)


def problems(findings, severity=None):
    return [f for f in findings if f.severity != OK and (severity is None or f.severity == severity)]


@pytest.mark.parametrize("servers", [3, 4, 5])
def test_a_crossed_ring_is_healthy_for_any_server_count(servers):
    findings = health.judge(facts(ring(servers), servers))
    assert problems(findings) == []
    assert health.verdict(findings) == "healthy" and health.exit_code(findings) == 0


@pytest.mark.parametrize("servers", [3, 4])
def test_a_replica_on_its_masters_server_fails_naming_the_server_and_the_fix(servers):
    findings = health.judge(facts(ring(servers, colocate=1), servers))
    crossed = [f for f in findings if f.check == "crossed" and f.severity == FAIL]
    assert len(crossed) == 1 and crossed[0].server == "10.0.1.11"
    assert "server 10.0.1.11" in crossed[0].message
    # The fix points the replica back to the master on the next server round the ring.
    assert crossed[0].fix.endswith(f"CLUSTER REPLICATE {'m2'.ljust(40, '0')}   # follow 10.0.1.12:7000 instead")
    assert health.exit_code(findings) == 1


def test_a_fix_for_a_7_0_process_logs_in_as_the_operations_user_and_for_a_5_0_one_with_the_password():
    """7.0's front-ends' user cannot administer (redis_conf.FRONT_END_RULES): a fix line for a process of a
    Redis with users logs in as the operations user; 5.0 has no users. Each process by its own version (a
    migration's mixed cluster). Planted (every fix with the password): fails."""
    def balance_fix(base: Facts) -> str:
        [warn] = [f for f in problems(health.judge(base), WARN) if f.check == "balance"]
        return warn.fix

    for version, login in (("5.0.7", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h'),
                           ("7.0.15", 'REDISCLI_AUTH="$REDIS_OPS_PASSWORD" redis-cli --user operations -h')):
        fix = balance_fix(facts(ring(4, swap=1), 4, version=version))
        assert fix.startswith(login + " 10.0.1.12 -p 7000 CLUSTER FAILOVER"), fix
    # Mixed (a migration): the process the fix is for decides, whatever the others run.
    base = facts(ring(4, swap=1), 4)
    for n in base.nodes:
        n.info["redis_version"] = "7.0.15" if n.address == "10.0.1.12:7000" else "5.0.7"
    assert "--user operations" in balance_fix(base)
    base = facts(ring(4, swap=1), 4)
    for n in base.nodes:
        n.info["redis_version"] = "5.0.7" if n.address == "10.0.1.12:7000" else "7.0.15"
    assert balance_fix(base).startswith('REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 10.0.1.12')


def test_drifted_roles_warn_with_the_cluster_failover_that_restores_balance():
    findings = health.judge(facts(ring(4, swap=1), 4))
    assert problems(findings, FAIL) == []
    [warn] = problems(findings, WARN)
    assert warn.check == "balance" and "server 10.0.1.12 holds no master while server 10.0.1.11 holds 2" in warn.message
    assert warn.fix.startswith('REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 10.0.1.12 -p 7000 CLUSTER FAILOVER')
    assert health.verdict(findings) == "degraded"
    assert health.exit_code(findings) == 0 and health.exit_code(findings, strict=True) == 1


def test_a_dead_server_fails_for_its_processes_and_for_the_masters_left_without_replica():
    findings = health.judge(facts(ring(3, swap=0, dead=1), 3, down=1))
    fails = problems(findings, FAIL)
    assert any(f.check == "reachable" and f.server == "10.0.1.11" for f in fails)
    assert any(f.check == "replicas" and "10.0.1.12:7000 has no working replica" in f.message for f in fails)
    assert any(f.check == "nodes-up" for f in fails)


def test_uncovered_slots_fail_with_the_ranges():
    findings = health.judge(facts(ring(3, unassigned=0), 3))
    [slots] = [f for f in findings if f.check == "slots" and f.severity == FAIL]
    assert slots.message.startswith("5461 of 16384 slots have no master (0-5460)")
    assert "--cluster fix" in slots.fix


def test_a_failed_master_that_still_owns_slots_fails():
    findings = health.judge(facts(ring(3, dead=2), 3, down=2))
    assert any(f.check == "slots" and "master 10.0.1.12:7000 is down" in f.message for f in findings)


def test_nodes_that_disagree_about_slot_ownership_fail():
    f = facts(ring(3), 3)
    f.nodes[0].cluster_nodes = parse_cluster_nodes(ring(3, swap=0))
    assert any(x.check == "agreement" and x.severity == FAIL and "10.0.1.10:7000" in x.message
               for x in health.judge(f))


def test_a_broken_replication_link_fails_and_lag_is_reported():
    f = facts(ring(3), 3)
    f.nodes[1].info["master_link_status"] = "down"
    f.nodes[3].info["slave_repl_offset"] = 100 - 2 * 2**20
    findings = health.judge(f)
    assert any(x.check == "replication" and x.severity == FAIL and "10.0.1.10:7001" in x.message for x in findings)
    assert any(x.check == "replication" and x.severity == WARN and "2097152 bytes behind" in x.message
               for x in findings)


def test_version_other_than_the_pinned_line_warns():
    findings = health.judge(facts(ring(3), 3, version="7.0.15"))
    assert {f.check for f in problems(findings)} == {"version"}


@pytest.mark.parametrize("used, severity", [(0.5, OK), (0.85, WARN), (0.97, FAIL)])
def test_memory_against_maxmemory(used, severity):
    f = facts(ring(3), 3)
    f.nodes[0].info["used_memory"] = int(used * f.nodes[0].info["maxmemory"])
    [m] = [x for x in health.judge(f) if x.check == "memory" and x.node == "10.0.1.10:7000"]
    assert m.severity == severity


def test_no_maxmemory_warns():
    f = facts(ring(3), 3)
    f.nodes[0].info["maxmemory"] = 0
    assert any(x.check == "memory" and x.severity == WARN for x in health.judge(f))


def test_a_standalone_check_of_a_cluster_node_and_the_reverse_fail_in_one_line():
    f = facts(ring(3), 3)
    f.cluster = False
    assert any(x.check == "cluster-mode" and x.severity == FAIL for x in health.judge(f))
    g = Facts(True, "5.0", [NodeFacts("10.0.1.10", 6379, info={"cluster_enabled": 0, "redis_version": "5.0.7"})])
    [mode] = [x for x in health.judge(g) if x.check == "cluster-mode"]
    assert "not a cluster node" in mode.message


def test_one_reason_per_distinct_error_so_a_wrong_password_is_one_line():
    nodes = [NodeFacts(f"10.0.1.{10 + i}", 7000, error="wrong password (AUTH rejected)") for i in range(3)]
    findings = health.judge(Facts(True, "5.0", nodes))
    assert len(problems(findings)) == 1
    report = health.report(Facts(True, "5.0", nodes), findings)
    assert report.splitlines()[0].startswith("UNHEALTHY")
    assert "wrong password" in report.splitlines()[2]


def test_a_failed_round_trip_fails():
    f = facts(ring(3), 3)
    f.round_trip_ms, f.round_trip_error = None, "CLUSTERDOWN The cluster is down"
    assert any(x.check == "session" and x.severity == FAIL for x in health.judge(f))


def test_report_puts_problems_and_fixes_before_what_passed():
    f = facts(ring(3, colocate=0), 3)
    lines = health.report(f, health.judge(f)).splitlines()
    assert lines[0].startswith("UNHEALTHY")
    assert lines.index("Passed:") > max(i for i, line in enumerate(lines) if "fix:" in line)


def test_parse_cluster_nodes_reads_5_0_and_7_0_lines():
    text = (
        "a 10.0.1.10:7000@17000 myself,master - 0 0 1 connected 0-5460 5462 [5461->-b]\n"
        "b 10.0.1.11:7001@17001,redis-2 slave a 0 1700000000 2 connected\n"
        "c :7002@17002 myself,master - 0 0 0 connected\n"
    )
    a, b, c = parse_cluster_nodes(text, self_host="10.0.1.12")
    assert a.slots == ((0, 5460), (5462, 5462)) and a.slot_count == 5462 and a.is_master
    assert b.address == "10.0.1.11:7001" and b.master_id == "a" and not b.is_master
    assert c.address == "10.0.1.12:7002"
    assert (a.hostname, b.hostname) == ("", "redis-2")


def test_parse_cluster_nodes_reads_7_2_lines_hostname_and_shard_id():
    """7.2's nodes.conf form (the hostname field always, empty when unset, then key=value fields such as
    shard-id), which clients may be shown in a later version: the migration's preflight refuses a node whose
    hostname is set, so a shard id must not read as one."""
    text = ("a 10.0.1.10:7000@17000,,shard-id=2f1b myself,master - 0 0 1 connected 0-16383\n"
            "b 10.0.1.11:7001@17001,redis-2,shard-id=2f1b slave a 0 1700000000 1 connected\n")
    a, b = parse_cluster_nodes(text)
    assert (a.address, a.hostname) == ("10.0.1.10:7000", "")
    assert (b.address, b.hostname) == ("10.0.1.11:7001", "redis-2")


def test_slot_ranges():
    assert health.slot_ranges({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


@pytest.mark.parametrize("argv", [["--nodes", "nohost"], ["--nodes", "h:99999"], ["--nodes", ""],
                                  ["--nodes", "h:1", "--wait", "-1"], [], ["--nodes", "h:1", "--password", "x"]])
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize("exc, expected", [
    ("AuthenticationError('invalid username-password pair or user is disabled.')", "wrong password"),
    ("ResponseError('WRONGPASS invalid username-password pair')", "wrong password"),
    ("AuthenticationError('Authentication required.')", "requires a password"),
    ("ResponseError('NOAUTH Authentication required.')", "requires a password"),
    ("ConnectionError('Error 111 connecting to 10.0.1.10:7000. Connection refused.')", "connection refused"),
    ("TimeoutError('Timeout connecting to server')", "no answer within 3s"),
])
def test_reasons_are_one_line_and_actionable(exc, expected):
    import redis

    text = health.reason(eval(exc, vars(redis.exceptions)), "10.0.1.10:7000")
    assert expected in text and "\n" not in text


def _uneven(text: str, moved: int) -> str:
    """Move `moved` slots from m0 to m1 in a ring() text: m0 keeps fewer than its fair share."""
    lines = []
    for line in text.splitlines():
        f = line.split()
        if f[0].startswith("m0") and len(f) > 8:
            a, b = f[8].split("-")
            f[8] = f"{int(a) + moved}-{b}"
        if f[0].startswith("m1") and len(f) > 8:
            f.append(f"0-{moved - 1}")
        lines.append(" ".join(f))
    return "\n".join(lines)


@pytest.mark.parametrize("servers", [4, 6])
def test_uneven_slots_warn_with_the_rebalance_fix(servers):
    fair = SLOTS / servers
    ok = health.judge(facts(_uneven(ring(servers), int(0.02 * fair)), servers))  # spread 4%
    assert problems(ok) == [], problems(ok)
    findings = health.judge(facts(_uneven(ring(servers), int(0.03 * fair)), servers))  # spread 6%
    [warn] = problems(findings)
    assert warn.check == "slot-balance" and warn.severity == WARN
    assert "--cluster rebalance" in warn.fix and "--cluster-use-empty-masters" in warn.fix


def test_an_empty_master_of_a_new_server_warns_until_rebalanced():
    findings = health.judge(facts(ring(4, unassigned=3), 4))
    assert any(f.check == "slot-balance" and f.severity == WARN for f in findings)


@pytest.mark.parametrize("servers", [3, 4, 6])
def test_the_ring_is_judged_for_any_server_count(servers):
    findings = health.judge(facts(ring(servers), servers))
    assert any(f.check == "ring" and f.severity == OK and f"over {servers} servers" in f.message for f in findings)


def test_a_crossed_replica_off_the_ring_warns_with_the_replicate_fix():
    # 4 servers, every master replicated on another server, but not in ring order:
    # r0 -> m2, r1 -> m3, r2 -> m1 (r3 -> m0 as in the ring). Safe, so WARN only.
    text = ring(4)
    for r, old, new in (("r0", "m1", "m2"), ("r1", "m2", "m3"), ("r2", "m3", "m1")):
        lines = text.splitlines()
        i = next(i for i, line in enumerate(lines) if line.startswith(f"{r:0<40} "))
        lines[i] = lines[i].replace(old.ljust(40, "0"), new.ljust(40, "0"))
        text = "\n".join(lines)
    findings = health.judge(facts(text, 4))
    warns = problems(findings)
    assert {f.check for f in warns} == {"ring"} and all(f.severity == WARN for f in warns)
    assert sorted(f.server for f in warns) == ["10.0.1.10", "10.0.1.11", "10.0.1.12"]
    r2 = next(f for f in warns if f.server == "10.0.1.12")
    assert r2.fix.endswith(f"CLUSTER REPLICATE {'m3'.ljust(40, '0')}")


@pytest.mark.parametrize("address", ["10.0.1.12;reboot:7000", "$(reboot):7000", "10.0.1.12\nreboot:7000",
                                     "10.0.1.12`reboot`:7000"])
def test_a_fix_line_runs_redis_cli_and_nothing_else_whatever_address_redis_reports(address):
    """Addresses in fix lines come from CLUSTER NODES, which a compromised node writes: pasted into a shell, the
    line must still be one redis-cli command with the address as one argument."""
    import shlex

    from outsystems_redis.judge import FAILOVER_AGAIN, _cli, _shown

    line = _cli(address, "CLUSTER FAILOVER") + f"   # {_shown(address)} takes its master role back" + FAILOVER_AGAIN
    words = shlex.split(line, comments=True)
    host = _shown(address.rpartition(":")[0])
    assert words == ['REDISCLI_AUTH=$REDIS_PASSWORD', "redis-cli", "-h", host, "-p", "7000", "CLUSTER", "FAILOVER"]
    assert "\n" not in line


def test_a_missing_password_is_a_usage_mistake_not_an_outage(monkeypatch, capsys):
    """Without REDIS_PASSWORD the check would report every server as failing: exit 2 and one line instead."""
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as done:
        cli.main(["--nodes", "127.0.0.1:1"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "REDIS_PASSWORD is not set" in err and "UNHEALTHY" not in err


def test_a_closed_pipe_ends_the_check_without_a_traceback():
    """`--json | head`: the reader is gone before the report is written (here `true`, which reads nothing and
    exits at once, long before Python has started); the check says nothing on stderr."""
    import subprocess
    import sys

    from tests.tools import ROOT

    done = subprocess.run(
        f"{sys.executable} -m outsystems_redis.tools.health --nodes 127.0.0.1:1 --json | true",
        shell=True, cwd=ROOT, env={"REDIS_PASSWORD": "x" * 20, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_the_health_check_and_the_servers_agent_read_info_with_one_reader() -> None:
    """The direct health check and the metrics agent (which carries it to the servers) read INFO with one function,
    judge.parse_info, so a server's own verdict and the deployer's cannot read one reply two ways.
    (redis-make-room, which travels in the user data without the judge, keeps its own few lines.)"""
    import importlib

    import outsystems_redis.judge as judge_module
    import outsystems_redis.server_files.metrics_agent as agent

    # The package exports a function of that name.
    gather = importlib.import_module("outsystems_redis.tools.health.gather")

    assert agent.parse_info is judge_module.parse_info
    assert gather.parse_info is judge_module.parse_info
    text = ("# Server\r\nredis_version:7.0.15\r\nexecutable:/usr/bin/redis-server\r\n\r\n"
            "# Keyspace\r\ndb0:keys=3,expires=3\r\n")
    assert judge_module.parse_info(text) == {
        "redis_version": "7.0.15", "executable": "/usr/bin/redis-server", "db0": "keys=3,expires=3",
    }
