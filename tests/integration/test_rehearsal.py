"""Rehearsal up -> status -> failover -> down, through the CLI, for both stacks; nothing left behind.

`rehearsal scale` is in test_rehearsal_scale.py: its own file, so the two workers share the rehearsals.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time

import pytest
import redis

from outsystems_redis.tools.loopback import command_name_in, platform_for
from outsystems_redis.tools.rehearsal import STATE_FILE, SessionTraffic, load_loopback
from outsystems_redis.tools.sessions import SessionStore
from outsystems_redis.tools.stack_file import read_settings
from tests.integration.rehearsals import A, redis_processes, rehearse
from tests.tools import fill, redis_bin

# Own 127.<A>.<b>.x blocks (tests/integration/rehearsals.py). None: the stack's own platform.
CASES = [("dev", None, 251), ("prod", None, 252), ("prod", "7.0", 253)]


@pytest.mark.parametrize("stack, version, b", CASES, ids=[f"{s}-{v or 'default'}" for s, v, _ in CASES])
def test_up_status_failover_down(stack, version, b, tmp_path):
    redis_bin(version or "5.0", "redis-server")  # the stacks' default platform runs Redis 5.0
    redis_bin(version or "5.0", "redis-cli")
    state, prefix = tmp_path / "rehearsal", f"127.{A}.{b}."
    try:
        up = rehearse("up", stack, state, prefix, version)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "HEALTHY" in up.stdout
        assert (state / "password").stat().st_mode & 0o777 == 0o600
        password = (state / "password").read_text().strip()
        masters = [f"{prefix}1:6379"] if stack == "dev" else [f"{prefix}{i}:7000" for i in (1, 2, 3)]
        assert ",".join(masters) + f",password={password}" in up.stdout

        # The servers' files come from the stack's settings whole (all but the password), as on EC2.
        stacks = read_settings(stack)
        platform = platform_for(version).name if version else stacks.platform
        assert load_loopback(state).settings == dataclasses.replace(stacks, platform=platform)
        assert "redis_password" not in json.loads((state / STATE_FILE).read_text())["settings"]

        status = rehearse("status", stack, state, prefix, version)
        assert status.returncode == 0 and "HEALTHY" in status.stdout, status.stdout

        # Redis 5.0 servers run redis-make-room, and so does their rehearsal: one per server, and it acts.
        agents = redis_processes(str(state / "redis-make-room"), program="python")
        assert len(agents) == (0 if version == "7.0" else len(masters)), agents
        if version != "7.0":
            master = redis.Redis(masters[0].split(":")[0], int(masters[0].split(":")[1]), password=password)
            # CONFIG by its secret name on server 1, as its own scripts send it.
            config = command_name_in(sorted(state.rglob("auth.conf"))[0], "CONFIG")
            assert config != "CONFIG"

            def maxmemory() -> int:
                return int(master.execute_command(config, "GET", "maxmemory")[1])

            shipped = maxmemory()
            fill(master, 20000, "filler")
            limit = int(master.info("memory")["used_memory"]) * 100 // 95
            master.execute_command(config, "SET", "maxmemory", limit)  # at 95 %: the agent evicts down to 85 %
            deadline = time.monotonic() + 10
            while int(master.info("memory")["used_memory"]) * 100 >= limit * 86 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert int(master.info("memory")["used_memory"]) * 100 < limit * 86, "redis-make-room did not act"
            assert maxmemory() == limit  # and put the limit back
            fillers = list(master.scan_iter(match="filler:*", count=1000))
            for i in range(0, len(fillers), 1000):
                master.delete(*fillers[i:i + 1000])
            master.execute_command(config, "SET", "maxmemory", shipped)
            master.close()

        # `up` for another Redis line while this one runs: refused, not silently ignored.
        other = "7.0" if version is None else "5.0"
        again = rehearse("up", stack, state, prefix, other)
        assert again.returncode == 2 and "already up" in again.stderr and "run `down` first" in again.stderr, \
            again.stdout + again.stderr

        failover = rehearse("failover", stack, state, prefix, version)
        assert failover.returncode == 0, failover.stdout + failover.stderr
        if stack == "prod":
            assert "every slot served and writable again" in failover.stdout
            assert "acknowledged sessions lost: 0 of 200" in failover.stdout
            # The returning server's redis-role-restore takes its master back (a plain CLUSTER FAILOVER),
            # so the drill ends with the crossed ring whole again and nothing to type.
            assert "CLUSTER FAILOVER" in failover.stdout and "every server holds its master again" in failover.stdout
            assert "\nHEALTHY - Redis Cluster" in failover.stdout
            after = rehearse("status", stack, state, prefix, version)
            assert after.returncode == 0 and "HEALTHY" in after.stdout and "WARN" not in after.stdout, after.stdout
        else:
            assert "writable again" in failover.stdout and "HEALTHY" in failover.stdout
    finally:
        down = rehearse("down", stack, state, prefix, version)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not state.exists()
    assert redis_processes(prefix) == []
    assert redis_processes(str(state / "redis-make-room"), program="python") == []


def test_down_refuses_a_directory_it_did_not_create(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = rehearse("down", "prod", tmp_path, "127.0.0.", None)
    assert result.returncode == 1 and (tmp_path / "precious.txt").exists()


def test_an_address_in_use_or_not_on_this_machine_is_one_line_with_the_fix(tmp_path):
    """A server that cannot bind exits at once: the rehearsal says why and what to do, not "did not answer PING"
    20 s later. Planted (no exit check in wait_until_answering): the reason is the PING timeout."""
    redis_bin("5.0", "redis-server")
    prefix = f"127.{A}.251."  # the dev case's block: the tests of one file run one after another
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind((f"{prefix}1", 6379))
    taken.listen()
    try:
        up = rehearse("up", "dev", tmp_path / "in-use", prefix, None)
    finally:
        taken.close()
        rehearse("down", "dev", tmp_path / "in-use", prefix, None)
    assert up.returncode == 1, up.stdout + up.stderr
    assert f"redis-server for {prefix}1:6379 exited at start" in up.stderr, up.stderr
    assert "Address already in use" in up.stderr and "another process listens there" in up.stderr
    assert "Traceback" not in up.stdout + up.stderr
    # Not a loopback prefix: refused before anything starts (nothing is ever sent past this machine).
    elsewhere = rehearse("up", "dev", tmp_path / "elsewhere", "10.255.254.", None)
    assert elsewhere.returncode == 2 and "--host-prefix: a loopback prefix such as 127.0.0." in elsewhere.stderr, \
        elsewhere.stdout + elsewhere.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_session_traffic_counts_a_client_failure_and_goes_on(loopback_factory, monkeypatch):
    """A non-Redis exception inside the client (redis-py's cluster client raises AttributeError while the slot
    map changes) is counted as an error and the traffic goes on with a fresh client: never a dead thread that
    leaves a test with no traffic and nothing counted. Planted (the catch removed): no error, writes stop."""
    lo = loopback_factory("7.0", 1)
    lo.start()
    real_write, failures = SessionStore.write, [2]

    def write(self, *args, **kwargs):
        if failures[0]:
            failures[0] -= 1
            raise AttributeError("'NoneType' object has no attribute 'redis_connection'")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(SessionStore, "write", write)
    traffic = SessionTraffic(lo).start()
    deadline = time.monotonic() + 30
    while traffic.writes < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    traffic.stop()
    assert [e for e in traffic.errors if e.startswith("client: AttributeError")] == [
        "client: AttributeError: 'NoneType' object has no attribute 'redis_connection'"] * 2, traffic.errors
    assert traffic.writes >= 20 and traffic.wrong == []
