"""The join's wait for every member to know a new node: the id it waits for, and a member that missed it.

Fresh-clone runs of the suite failed with "127.x.4.1:7000 has not met 127.x.4.4:7000 in 120s" (scale-out
over TLS, and the rejoin rehearsal: "... has not met 127.x.1:7001 in 90s"), with CLUSTER MEET answered OK
every 10 s. The cause: right after a node meets the seed, the seed lists it under a random placeholder id
flagged `handshake` until the node answers (on Redis 5.0 that window showed in 20 of 20 tries on an idle
machine). The join read the node's id from the seed's view in that window and then waited for a placeholder
that no member would ever know. It now asks the node for its own id (CLUSTER MYID), and the view never
names a node mid-handshake.

A member can also miss the joiner for real (CLUSTER FORGET bars it from gossip for 60 s): cluster-join then
meets them from that member itself.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest
import redis

from outsystems_redis.render.join import join_script
from tests.integration import loopbacks
from tests.tools import REDIS_VERSIONS, loopback_octet, redis_bin, tool

WAIT_SECONDS = 40  # shorter than Redis's 60 s FORGET bar: only a direct meeting gets the joiner known in time
FORGETTING_SECONDS = 6


def test_a_member_that_missed_the_joiner_is_introduced_by_the_join(loopback_factory):
    lo = loopback_factory("5.0", 3)
    lo.start()
    lo.bootstrap()
    lo.add_servers(1, join=False)
    joiner_ids = {lo.client(p).execute_command("CLUSTER", "MYID") for p in lo.topology.servers[3].processes}
    member = lo.client(lo.topology.servers[1].processes[0])
    forgot: list[str] = []
    first_forgot: list[float] = []
    stop = threading.Event()

    def forget() -> None:
        # Forget the joiner's nodes whenever this member learns them, from the first time it does (however
        # long gossip takes on a busy machine) for a few seconds more.
        deadline = time.monotonic() + WAIT_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            if forgot:
                deadline = min(deadline, first_forgot[0] + FORGETTING_SECONDS)
            known = str(member.execute_command("CLUSTER", "NODES"))
            for node_id in joiner_ids:
                if node_id in known:
                    try:
                        member.execute_command("CLUSTER", "FORGET", node_id)
                        first_forgot.append(time.monotonic())
                        forgot.append(node_id)
                    except redis.ResponseError:
                        pass  # it moved on meanwhile
            time.sleep(0.05)

    forgetting = threading.Thread(target=forget, daemon=True)
    forgetting.start()
    try:
        lo.join_all([3], WAIT_SECONDS)  # raises with the join's output when it fails
    finally:
        stop.set()
        forgetting.join(timeout=10)
    assert forgot, "the member never learned the joiner while forgetting: this run proves nothing"
    for p in lo.processes:
        view = str(lo.client(p).execute_command("CLUSTER", "NODES"))
        assert all(node_id in view for node_id in joiner_ids), f"{p.address} does not know the joiner"


def _functions(script: str, *names: str) -> str:
    """The named shell functions of a script, as written (one-line or up to the closing brace)."""
    found = []
    for name in names:
        match = re.search(rf"^{name}\(\) {{(?:.*}}$|\n.*?^}})", script, re.S | re.M)
        assert match, f"{name}() is not in the script"
        found.append(match.group(0))
    return "\n".join(found)


def _cluster_node(version: str, host: str, directory) -> subprocess.Popen:
    directory.mkdir()
    return subprocess.Popen([redis_bin(version), "--bind", host, "--port", "7000", "--save", "",
                             "--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf"),
                             "--cluster-node-timeout", "30000", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _answering(host: str) -> redis.Redis:
    client = redis.Redis(host=host, port=7000, decode_responses=True, socket_timeout=5)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return client
        except redis.ConnectionError:
            assert time.monotonic() < deadline, f"{host}:7000 did not answer PING in 20 s"
            time.sleep(0.1)


@pytest.mark.parametrize("version", REDIS_VERSIONS)
def test_a_node_mid_handshake_is_never_taken_for_a_member(version, tmp_path):
    """The seed's view of a node it is still meeting holds a placeholder id: the join's id_of names no one
    there, and still names a member that has answered. Planted (id_of without `!$8`): it prints the
    placeholder's id."""
    prefix = f"127.{loopback_octet()}.{next(loopbacks._next) % 250}."
    member, unborn = f"{prefix}2:7000", f"{prefix}3:7000"  # nothing listens on .3: its handshake never ends
    servers = [_cluster_node(version, f"{prefix}{i}", tmp_path / str(i)) for i in (1, 2)]
    try:
        seed, other = _answering(f"{prefix}1"), _answering(f"{prefix}2")
        member_id = other.execute_command("CLUSTER", "MYID")
        seed.execute_command("CLUSTER", "MEET", f"{prefix}2", 7000)
        deadline = time.monotonic() + 20
        while member_id not in str(seed.execute_command("CLUSTER", "NODES")):
            assert time.monotonic() < deadline, "the seed did not learn the member in 20 s"
            time.sleep(0.1)
        seed.execute_command("CLUSTER", "MEET", f"{prefix}3", 7000)
        nodes = str(seed.execute_command("CLUSTER", "NODES"))
        assert re.search(rf"{re.escape(unborn)}\S* handshake", nodes), nodes  # the placeholder is there
        shell = _functions(join_script(), "cli", "table", "id_of")
        # (redis_cli: what redis_login sets; these nodes have no password.)
        probe = (f'{shell}\nredis_cli=("$REDIS_CLI")\nview=$(table "$1")\necho "member=$(id_of "$2")"\n'
                 'echo "unborn=$(id_of "$3")"\n')
        out = subprocess.run([tool("bash"), "-c", probe, "probe", f"{prefix}1:7000", member, unborn],
                             capture_output=True, text=True, timeout=30,
                             env={"PATH": "/usr/bin:/bin", "REDIS_CLI": redis_bin(version, "redis-cli")})
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [f"member={member_id}", "unborn="], out.stdout + nodes
    finally:
        for server in servers:
            server.kill()
            server.wait(timeout=10)
