"""Rolling maintenance on real Redis 5.0 and 7.0 on loopback: `rehearsal maintain`, unchanged steps.

Every server in turn under a live 20 KB session workload: no acknowledged session lost, the
client's errors counted and timed, HEALTHY at the end with one master per server. It refuses an
unhealthy cluster without touching anything, and stops at a failing step, naming server and step,
with the cluster still serving.
"""

from __future__ import annotations

import re

import pytest

from outsystems_redis.tools import health, maintenance, rehearsal
from outsystems_redis.tools.rehearsal import master_hosts, slots_writable, write_sessions
from tests.tools import REDIS_VERSIONS

PINS = {"5.0": "5:5.0.7*", "7.0": "5:7.0.15*"}  # the requirements' lines, written out here


@pytest.mark.parametrize("version", REDIS_VERSIONS)
def test_maintain_patches_every_server_without_losing_a_session(version, loopback_factory, capsys) -> None:
    lo = loopback_factory(version)
    lo.start()
    lo.bootstrap()
    runner = maintenance.LoopbackRunner(lo)

    code = rehearsal.maintain(lo, runner)
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert "acknowledged sessions lost: 0;" in out and "wrong answers: 0" in out
    written = int(re.search(r"during maintenance: (\d+) written", out).group(1))
    assert written > 100
    # The client's errors are counted and timed; a blip, if any, is far shorter than a kill's failover.
    errors = int(re.search(r"errors seen by the client: (\d+)", out).group(1))
    durations = [float(d) for d in re.findall(r"between [\d.]+s and [\d.]+s \(([\d.]+)s\)", out)]
    assert len(durations) <= errors and all(d < 3 for d in durations), out
    assert "every server patched (3)" in out and "servers holding a master: 3 of 3" in out
    assert master_hosts(lo) == set(lo.hosts)
    for server in maintenance.loopback_servers(lo):
        # In order: masters moved (the step-down then finds none), packages, reboot, the master back.
        section = out.split(f"{server.label}:\n")[1].split("done in")[0]
        assert re.search(rf"{server.host}:7000 handed its \d+ slots to .*:7001 \(CLUSTER FAILOVER", section)
        assert f"{server.host}:7000 is a replica: nothing to hand over" in section
        assert f"{server.host}:7000 is a master again" in section
        assert "\n  held: redis-server redis-tools\n" in section  # what the stand-in apt-mark holds, no trailing space
        log = runner.log(server)
        # Redis only within the pinned line, the hold kept, the OS without removals.
        assert any(f"install --allow-change-held-packages redis-server={PINS[version]} "
                   f"redis-tools={PINS[version]}" in line for line in log), log
        assert "apt-mark hold redis-server redis-tools" in log
        assert any(line.endswith("upgrade --with-new-pkgs") for line in log) and not any(
            "dist-upgrade" in line or "full-upgrade" in line for line in log)
    facts, findings = health.run_check(rehearsal.nodes_of(lo), lo.password, True, lo.version)
    assert health.verdict(findings) == "healthy", health.report(facts, findings)


def test_maintain_refuses_an_unhealthy_cluster_and_touches_nothing(loopback_factory, capsys) -> None:
    lo = loopback_factory("7.0")
    lo.start()
    lo.bootstrap()
    masters = master_hosts(lo)
    replica = lo.topology.servers[2].processes[1]
    lo.kill_process(replica)  # a master without its replica: sessions at risk
    runner = maintenance.LoopbackRunner(lo)

    assert rehearsal.maintain(lo, runner) == 1
    out = capsys.readouterr().out
    assert "REFUSED: the cluster is not HEALTHY, so nothing was done: FAIL" in out, out
    assert all(runner.log(s) == [] for s in maintenance.loopback_servers(lo))
    assert master_hosts(lo) == masters and "handed its" not in out


def test_maintain_stops_at_a_failing_step_naming_it_and_the_cluster_keeps_serving(loopback_factory, capsys) -> None:
    lo = loopback_factory("5.0")
    lo.start()
    lo.bootstrap()
    acked = write_sessions(lo, 50)
    runner = maintenance.LoopbackRunner(lo)
    servers = maintenance.loopback_servers(lo)
    runner.plant_failure(servers[1])  # apt-get fails on the second server

    assert rehearsal.maintain(lo, runner) == 1
    out = capsys.readouterr().out
    assert (f"STOPPED: stopped at server 2 (redis-2, {servers[1].host}), step 'upgrade packages': exit 100: "
            f"E: apt-get failed on {servers[1].host}") in out, out
    assert f"{servers[0].label}:\n" in out and "done in" in out.split(f"{servers[1].label}:")[0]
    assert runner.log(servers[2]) == [] and servers[2].label + ":" not in out  # never reached
    # Still serving: every slot writable, nothing lost; server 1's master sits on its replica's server.
    assert slots_writable(lo, set()) and rehearsal.lost_sessions(lo, acked) == 0
    assert servers[1].host not in master_hosts(lo)
    # Degraded (roles drifted), never failing: a failure gets 30 s to clear while the views catch up.
    facts, findings = health.run_check(rehearsal.nodes_of(lo), lo.password, True, lo.version, wait=30, interval=1)
    assert health.verdict(findings) == "degraded", health.report(facts, findings)
