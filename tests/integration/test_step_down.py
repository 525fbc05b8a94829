"""A clean stop steps down first: the shipped redis-step-down on real Redis 5.0 and 7.0 on loopback.

The ExecStop that systemd runs on `systemctl stop` or a reboot: a master's slots move to its
in-sync replica on another server (plain CLUSTER FAILOVER) while the process is still alive,
so a cluster client writing sessions sees at most a short pause, not cluster-node-timeout plus
an election; a replica and a single server are left alone.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from outsystems_redis.render.step_down import step_down_script
from outsystems_redis.tools.loopback import BASH
from outsystems_redis.tools.rehearsal import _cluster_client, master_hosts, slot_owners
from tests.tools import REDIS_VERSIONS

BLIP_LIMIT = 2.0  # seconds: the longest write pause allowed (a kill costs 5 s node timeout plus an election)


class Writer:
    """A front-end's writes through a cluster client: errors and the longest gap between two acknowledged writes."""

    def __init__(self, lo) -> None:
        self.lo, self.errors, self.writes, self.longest = lo, [], 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import redis

        client = _cluster_client(self.lo)
        last, i = time.monotonic(), 0
        while not self._stop.is_set():
            i += 1
            try:
                client.set(f"{{session-{i % 512}}}_Data", "x" * 1024, ex=600)
                now = time.monotonic()
                self.longest, last = max(self.longest, now - last), now
                self.writes += 1
            except redis.RedisError as exc:
                self.errors.append(f"{time.monotonic():.2f} {type(exc).__name__}: {exc}")
            time.sleep(0.002)
        client.close()

    def __enter__(self) -> Writer:
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.mark.parametrize("version", REDIS_VERSIONS)
def test_a_clean_stop_moves_the_masters_slots_before_the_process_exits(version, loopback_factory) -> None:
    lo = loopback_factory(version)
    lo.start()
    lo.bootstrap()
    hosts = [s.private_ip for s in lo.topology.servers]
    master, replica = lo.topology.servers[1].processes  # server 1: a master on 7000, a replica on 7001
    before = slot_owners(lo)
    master_id = lo.client(master).execute_command("CLUSTER", "MYID")
    moved = {s for s, owner in before.items() if owner == master_id}
    assert len(moved) > 5000

    with Writer(lo) as writer:
        started = time.monotonic()
        said = lo.step_down(1)  # what systemd's ExecStop does, before SIGTERM
        took = time.monotonic() - started
        # Still running, and already a replica: its slots are served from another server.
        assert lo.client(master).info("replication")["role"] == "slave", said
        # slot_owners reads one node's view, which may trail the handover by a gossip round
        # (seen once on 7.0); the new master already serves the slots. Bounded at 5 s.
        deadline = time.monotonic() + 5
        after = slot_owners(lo)
        while {after[s] for s in moved} == {master_id} and time.monotonic() < deadline:
            time.sleep(0.1)
            after = slot_owners(lo)
        assert {after[s] for s in moved} != {master_id}
        assert hosts[1] not in master_hosts(lo)
        lo.stop_server(1)
        time.sleep(1)  # writes go on after the exit
    code, out = said[master.port]
    assert code == 0 and "is the master now" in out, out
    assert "is a replica: nothing to hand over" in said[replica.port][1], said[replica.port][1]
    print(f"Redis {version}: step-down took {took:.2f}s; {writer.writes} writes, {len(writer.errors)} errors, "
          f"longest pause between two acknowledged writes {writer.longest:.2f}s")
    assert writer.errors == [] and writer.longest < BLIP_LIMIT, (writer.errors[:5], writer.longest)

    # Back as a replica; a second clean stop of the same server is a quiet no-op (it holds no master).
    lo.start_server(1)
    again = lo.step_down(1)
    assert all(code == 0 and "nothing to hand over" in out for code, out in again.values()), again


def test_a_single_server_is_left_alone(loopback_factory) -> None:
    lo = loopback_factory("7.0", servers=1)
    lo.start()
    with pytest.raises(ValueError, match="server 1 does not carry redis-step-down"):
        lo.step_down(0)
    # The script itself checks too (a drop-in copied onto a single server by hand).
    script = lo.state_dir / "redis-step-down"
    script.write_text(step_down_script())
    env = {"PATH": "/usr/bin:/bin", "SERVER_IP": lo.hosts[0], "AUTH_FILE": lo.paths(0).auth_file,
           "REDIS_CLI": lo.redis_cli}
    ran = subprocess.run([BASH, str(script), str(lo.port)], env=env, capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0 and "not a cluster node" in ran.stdout, ran.stdout + ran.stderr
    assert lo.stop_server_cleanly(0) == {} and lo.running() == []
