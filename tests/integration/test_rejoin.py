"""Self-healing rejoin on real Redis 5.0 and 7.0: a server that boots empty at a known address rejoins by itself.

The shipped redis-cluster-join (and, on server 0, redis-cluster-bootstrap) runs as the server's units do on
EC2 (Loopback.boot_server); redis-role-restore then gives the master role back, as its timer does.
- `rehearsal replace --server 1` through the CLI (server 0: it forms the cluster, so its bootstrap must hand
  over instead of forming a second one), under live 20 KB sessions, on both lines;
- a replaced joiner (server 3 of 4) waits while another server is down (an outage is never fought), then
  rejoins, and a reboot afterwards changes nothing;
- while a slot is unserved a rejoin waits and forgets nothing;
- the rejoin keeps the password off every command line (tests/integration/argv.py's two guards).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from outsystems_redis.render.join import join_script
from outsystems_redis.render.roles import role_restore_script
from outsystems_redis.tools import health
from outsystems_redis.tools.loopback import BASH, Loopback
from outsystems_redis.tools.rehearsal import (
    UNREPLICATED_WINDOW,
    in_flight_at_kill,
    restore_roles,
    server_number,
    slots_writable,
    verify_sessions,
    write_session_store,
)
from tests.integration import loopbacks
from tests.integration.argv import Shims, assert_never_shown, run_watched
from tests.integration.rehearsals import redis_processes, rehearse
from tests.integration.scale_out import assert_ring, layout
from tests.tools import loopback_octet, redis_bin

FAILOVER_TIMEOUT = 45  # cluster-node-timeout 5 s, plus elections


def wait_failed_over(lo: Loopback, server: int) -> None:
    """The cluster serves every slot without `server`: what a replacement that boots minutes later finds."""
    host = lo.topology.servers[server].private_ip
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while not slots_writable(lo, {host}):
        assert time.monotonic() < deadline, f"no failover of {host} within {FAILOVER_TIMEOUT}s"
        time.sleep(0.2)


def node_ids(lo: Loopback, process) -> set[str]:
    return {line.split()[0] for line in lo.client(process).execute_command("CLUSTER", "NODES").splitlines()}


def green(lo: Loopback) -> None:
    facts, findings = health.run_check([(p.host, p.port) for p in lo.processes], lo.password, True, lo.version,
                                       wait=30, interval=1)
    assert health.verdict(findings) == "healthy", health.report(facts, findings)


def test_server_numbers_count_from_one_and_a_bad_one_names_the_argument() -> None:
    assert server_number("1", 3) == 0 and server_number("4", 4) == 3
    for bad in ("0", "5", "two"):
        with pytest.raises(ValueError, match="--server"):
            server_number(bad, 4)


def test_only_a_loss_acknowledged_by_the_killed_master_just_before_the_kill_is_put_down_to_replication() -> None:
    from redis.crc import key_slot

    on_victim, elsewhere = "{a_1}_Data", "{b_2}_Data"
    assert key_slot(on_victim.encode()) != key_slot(elsewhere.encode())
    victim_slots = {key_slot(on_victim.encode())}
    kill = (100.0, 100.05)

    def excused(data: str, acked: float) -> bool:
        return bool(in_flight_at_kill([data], {data: acked}, victim_slots, kill))

    assert excused(on_victim, 100.0 - UNREPLICATED_WINDOW / 2)
    assert excused(on_victim, 100.02)  # acknowledged while the SIGKILL was on its way
    assert not excused(on_victim, 100.0 - UNREPLICATED_WINDOW - 0.5)  # its replica had time: a defect
    assert not excused(on_victim, 101.0)  # acknowledged after the kill, by the replica that took over
    assert not excused(elsewhere, 99.9)  # a master that was not killed
    assert not in_flight_at_kill([on_victim], {}, victim_slots, kill)  # never acknowledged: not the client's


@pytest.mark.parametrize("version", ["5.0", "7.0"])
def test_rehearsal_replace_server_1_rejoins_by_itself_under_live_sessions(version, tmp_path) -> None:
    redis_bin(version, "redis-server")
    redis_bin(version, "redis-cli")
    state = tmp_path / "rehearsal"
    prefix = f"127.{loopback_octet()}.{next(loopbacks._next) % 250}."
    try:
        assert rehearse("up", "prod", state, prefix, version).returncode == 0
        started = time.monotonic()
        replaced = rehearse("replace", "prod", state, prefix, version, "--server", "1")
        took = time.monotonic() - started
        out = replaced.stdout
        assert replaced.returncode == 0, out + replaced.stderr
        # Server 0's bootstrap saw the peers' cluster and formed none; the join rejoined it.
        assert "not forming another" in out and "REJOIN" in out and "forgetting the dead node id(s)" in out, out
        assert "CLUSTER FAILOVER" in out and "master again" in out, out
        assert re.search(r"HEALTHY with no WARN [\d.]+s after the kill \(bound 120s\)", out), out
        assert "sessions written before the replacement: 200 acknowledged, lost: 0" in out, out
        assert re.search(r"sessions written during it by the client: [1-9]\d* acknowledged, lost: 0;", out), out
        assert "wrong answers: 0" in out and re.search(r"errors seen by the client: \d+", out), out
        print(f"replace --server 1 on {version}: {took:.1f}s;",
              *[line for line in out.splitlines() if "after the kill" in line or "client" in line], sep="\n")
        after = rehearse("status", "prod", state, prefix, version)
        assert after.returncode == 0 and "HEALTHY" in after.stdout and "WARN" not in after.stdout, after.stdout
        bad = rehearse("replace", "prod", state, prefix, version, "--server", "0")
        assert bad.returncode == 2 and "--server: a server number from 1 to 3" in bad.stderr, bad.stderr
    finally:
        down = rehearse("down", "prod", state, prefix, version)
    assert down.returncode == 0, down.stdout + down.stderr
    assert redis_processes(prefix) == []


def test_a_replaced_joiner_waits_out_another_servers_outage_then_rejoins_and_a_reboot_changes_nothing(
        loopback_factory) -> None:
    lo = loopback_factory("7.0")
    lo.start()
    lo.bootstrap()
    lo.add_servers(1)  # server 3 joins (scale-out), then is replaced
    before = write_session_store(lo, 100)
    lo.wipe_server(3)
    wait_failed_over(lo, 3)
    # Server 1 is lost too (a real outage, not a replacement): its slots fail over, so every slot is
    # served and cluster_state is ok, but the rejoin must not act while another server's nodes fail.
    lo.stop_server(1)
    wait_failed_over(lo, 1)
    known = node_ids(lo, lo.topology.servers[0].processes[0])
    code, out = lo.boot_server(3, wait_seconds=10)["redis-cluster-join"]
    assert code != 0 and "nodes of another server are failing" in out, out
    assert "REJOIN" not in out and "forgetting" not in out, out
    assert node_ids(lo, lo.topology.servers[0].processes[0]) == known  # nothing forgotten, nothing met

    lo.start_server(1)  # back with its own data: its processes return as replicas
    results = lo.boot_server(3, wait_seconds=90)
    code, out = results["redis-cluster-join"]
    assert code == 0 and "REJOIN" in out, out
    assert list(results) == ["redis-cluster-join"]  # only server 0 carries the bootstrap
    took, said = restore_roles(lo)  # two servers drifted: role-restore gives them back one per run
    assert took is not None, said
    green(lo)
    assert_ring(lo)  # one master per server, each replica on the next server's master
    assert verify_sessions(lo, before) == []

    # A reboot (or the unit's next start) of any server changes nothing, nor does server 0's bootstrap.
    shape = layout(lo)
    again = lo.join(3, wait_seconds=60)
    assert "REJOIN" not in again and "forget" not in again, again
    for server in (0, 1):
        assert "nothing to do" in lo.join(server, wait_seconds=60)
    assert "not creating another" in lo.bootstrap(wait_seconds=60)
    assert layout(lo) == shape


def test_a_rejoin_waits_while_a_slot_is_unserved(loopback_factory) -> None:
    lo = loopback_factory("5.0")
    lo.start()
    lo.bootstrap()
    before = write_session_store(lo, 100)
    lo.wipe_server(1)
    wait_failed_over(lo, 1)
    # Server 2 stops too (cleanly: its RDB keeps its sessions): its master's replica was on server 1,
    # so its slots are unserved.
    lo.stop_server(2)
    time.sleep(7)  # past cluster-node-timeout: the cluster flags server 2 failing
    dead = node_ids(lo, lo.topology.servers[0].processes[0])
    results = lo.boot_server(1, wait_seconds=15)
    code, out = results["redis-cluster-join"]
    assert code != 0 and "waiting: " in out and "gave up after 15s" in out, out
    assert "REJOIN" not in out and "forgetting" not in out, out
    assert node_ids(lo, lo.topology.servers[0].processes[0]) == dead  # the dead ids are all still known

    # Server 2 is back: every slot is served without server 1 again, and the next start rejoins it.
    lo.start_server(2)
    code, out = lo.boot_server(1, wait_seconds=90)["redis-cluster-join"]
    assert code == 0 and "REJOIN" in out, out
    took, said = restore_roles(lo)
    assert took is not None, said
    green(lo)
    assert verify_sessions(lo, before) == []


def test_the_rejoin_keeps_the_password_off_every_command_line(loopback_factory, tmp_path) -> None:
    lo = loopback_factory("5.0")
    lo.start()
    lo.bootstrap()
    lo.wipe_server(2)
    wait_failed_over(lo, 2)
    lo.start_server(2)  # its processes only: the join runs below, under watch
    script = tmp_path / "cluster-join"
    script.write_text(join_script())
    shims = Shims(tmp_path / "shims", first=[Path(lo.redis_cli).parent])
    env = {**lo.join_environment(2, wait_seconds=90), "PATH": shims.path, "REDIS_CLI": shims.command("redis-cli")}
    joined, sampler = run_watched([BASH, str(script)], env, [lo.password], shims, 400)
    assert joined.returncode == 0 and "REJOIN" in joined.stdout, joined.stdout + joined.stderr
    assert_never_shown(joined, sampler, shims, [lo.password])
    commands = [" ".join(args).lower() for args in shims.lines()]
    for command in ("cluster forget", "cluster meet", "cluster replicate"):
        assert any(command in c for c in commands), command


def test_a_rejoin_finishes_when_role_restore_gives_the_master_back_before_the_replica_is_attached(
        loopback_factory, tmp_path) -> None:
    """A CI boot of a wiped server 1 hung in its join for 300 s: the role-restore timer ticked while the join
    was attaching the replica process, found the master process linked and in sync, and failed it over. The
    join then waited for that process's link to a master it no longer had (bounded only by WAIT_SECONDS).
    Here the tick happens at that moment every time: a shim runs the shipped role-restore, as its timer
    would, just before the join points the replica process at its master."""
    lo = loopback_factory("5.0")
    lo.start()
    lo.bootstrap()
    before = write_session_store(lo, 100)
    victim = 1
    lo.wipe_server(victim)
    wait_failed_over(lo, victim)
    lo.start_server(victim)  # its processes only: the join runs below, with the tick planted in it
    master, replica = lo.topology.servers[victim].processes
    restore = tmp_path / "redis-role-restore"
    restore.write_text(role_restore_script())
    restore_env = " ".join(f"{k}={shlex.quote(v)}" for k, v in lo.environment("redis-role-restore", victim).items())
    ticked, real_cli = tmp_path / "ticked", lo.cli_for(victim)
    shim = tmp_path / "redis-cli"
    # The tick runs until role-restore has acted (it waits while the replica process is mid-handshake).
    shim.write_text(
        f"#!{BASH}\n"
        f"if [[ \" $* \" == *' -p {replica.port} cluster replicate '* && ! -e {ticked} ]]; then\n"
        f"    touch {ticked}\n"
        f"    for _ in $(seq 60); do\n"
        f"        env {restore_env} {BASH} {restore} >>{ticked} 2>&1\n"
        f"        grep -q 'master again' {ticked} && break\n"
        f"        sleep 1\n"
        f"    done\n"
        f"fi\n"
        f"exec {shlex.quote(real_cli)} \"$@\"\n")
    shim.chmod(0o755)
    script = tmp_path / "cluster-join"
    script.write_text(join_script())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **lo.join_environment(victim, wait_seconds=40),
           "REDIS_CLI": str(shim)}
    joined = subprocess.run([BASH, str(script)], env=env, capture_output=True, text=True, timeout=300)
    tick = ticked.read_text() if ticked.exists() else "(the tick never ran)"
    assert "master again" in tick, tick  # the race happened: the master process took its role back mid-join
    assert joined.returncode == 0 and "REJOIN" in joined.stdout, joined.stdout + joined.stderr + tick
    assert lo.client(master).info("replication")["role"] == "master"
    green(lo)
    assert_ring(lo)
    assert verify_sessions(lo, before) == []
