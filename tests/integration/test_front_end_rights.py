"""What the front-ends' password can do, on real Redis 5.0 and 7.0 started from the shipped redis.conf.

The commands that administer the store rather than keep sessions in it, and that nothing of ours sends, are
gone (redis_conf.disabled_commands), and those that the servers' scripts need go by secret names
(redis_conf.secret_named_commands; on 5.0, which has no users, CLIENT too): each is tried with the
front-ends' password, as a compromised front-end would, and must be refused, while the session provider's
own traffic (hashes, Lua scripts, the write lock: outsystems_redis.tools.sessions) keeps working before and
after, on a single server (dev) and a cluster, and the scripts' own names for CONFIG and CLIENT still work.
On 7.0 the front-ends' user is narrowed too (redis_conf.FRONT_END_RULES): every administrative command and
subcommand of the real 7.0, with arguments enough to pass its arity, is refused (NOPERM), PSYNC too:
replicas log in as the replication user. The commands that StackExchange.Redis and the session provider
send are allowed (ACL DRYRUN); the servers' scripts and tools log in as the operations user.
"""

from __future__ import annotations

import contextlib
import functools
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from outsystems_redis.parameters import OPERATIONS_USER, REPLICATION_USER
from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.render.redis_conf import disabled_commands, has_users, secret_named_commands
from outsystems_redis.tools.loopback import Loopback
from outsystems_redis.tools.rehearsal import lost_sessions, write_sessions
from tests.integration.loopbacks import nodes, replica_logins
from tests.tools import REDIS_VERSIONS, redis_bin

# Each disabled command with arguments that would do harm if it ran. (One that ran would also break what
# follows: FLUSHALL loses the sessions checked afterwards.)
ATTEMPTS = {
    "MODULE": ["LOAD", "/tmp/no-such-module.so"],
    "DEBUG": ["SLEEP", "0"],
    "REPLICAOF": ["127.0.0.1", "1"],
    "SLAVEOF": ["127.0.0.1", "1"],
    "FLUSHALL": [],
    "FLUSHDB": [],
    "SWAPDB": ["0", "1"],
    "SAVE": [],
    "BGSAVE": [],
    "BGREWRITEAOF": [],
    "LASTSAVE": [],
    "LATENCY": ["RESET"],
    "PFSELFTEST": [],
    "PFDEBUG": ["GETREG", "session"],
    "SHUTDOWN": ["NOSAVE"],
    "MONITOR": [],
    "FAILOVER": [],  # 7.0
}
# What a front-end would do with the commands that only the servers' scripts may use.
SECRET_NAMED_ATTEMPTS = {
    "CONFIG": ["SET", "maxmemory", "1"],  # every session evicted
    "SLOWLOG": ["GET", "10"],  # other clients' commands as sent
    "ACL": ["SETUSER", "default", "resetpass", ">locked-out-everyone-else"],  # 7.0
    "CLIENT": ["PAUSE", "10000"],  # 5.0: every client stalls for ten seconds
}
ONLY_ON_7_0 = {"FAILOVER", "ACL"}  # 5.0 has neither command (and refuses a rename of one)
# Renamed on 5.0 only: 7.0's users' rules refuse the front-ends CLIENT KILL, PAUSE, LIST... and keep CLIENT SETNAME, ID.
ONLY_ON_5_0 = {"CLIENT"}
# Redis's own administrative commands that the front-ends' password keeps, each for a reason
# (redis_conf.py, SECURITY.md gap 2). Any other command that the real Redis of a line marks "admin" must
# answer the front-ends' password with "unknown command".
KEPT_ADMIN = {
    "CLUSTER",  # NODES and SLOTS are the front-ends' slot map; redis-cli --cluster sends the rest by that name
    "PSYNC", "SYNC", "REPLCONF",  # replicas log in with the password
}
# On 7.0, whose front-ends' user is narrowed (redis_conf.FRONT_END_RULES): nothing. Replicas log in as the
# replication user (PSYNC, REPLCONF, PING).
REPLICATION_COMMANDS = {"psync", "sync", "replconf"}
# Not administrative to Redis, refused the 7.0 front-ends all the same: the server would connect wherever it
# names (a port nothing listens on here: had it run, it would say IOERR, not "no permissions").
REFUSED_ON_7_0 = {"MIGRATE": ["127.0.0.1", "1", "session", "0", "1000"]}
# What StackExchange.Redis sends (its handshake, auto-configuration, heartbeat, cluster redirections) and the
# session provider (EVALSHA, falling back to SCRIPT LOAD and EVAL; in its scripts, 2.x-5.x), and what this
# product's own tools send with the front-ends' password (the health check: CLUSTER INFO; redis-py's cluster
# client: CLUSTER SLOTS; the backup's restore: DUMP, PTTL, RESTORE; the rehearsal: WAIT).
FRONT_END_COMMANDS = [
    ["ECHO", "x"], ["PING"], ["CLIENT", "SETNAME", "x"], ["CLIENT", "ID"], ["INFO"], ["INFO", "replication"],
    ["CLUSTER", "NODES"], ["CLUSTER", "SLOTS"], ["CLUSTER", "SHARDS"], ["CLUSTER", "INFO"], ["SELECT", "0"],
    ["SUBSCRIBE", "__Booksleeve_MasterChanged"], ["UNSUBSCRIBE"], ["READONLY"], ["READWRITE"], ["ASKING"],
    ["GET", "__Booksleeve_TieBreak"], ["MULTI"], ["EXEC"], ["DISCARD"], ["WATCH", "k"], ["UNWATCH"],
    ["SCRIPT", "LOAD", "return 1"], ["EVAL", "return 1", "0"],
    ["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"],
    ["GET", "k"], ["SET", "k", "v"], ["SETNX", "k", "v"], ["EXPIRE", "k", "1"], ["EXISTS", "k"], ["DEL", "k"],
    ["HGET", "k", "f"], ["HGETALL", "k"], ["HMSET", "k", "f", "v"], ["HSET", "k", "f", "v"], ["HDEL", "k", "f"],
    ["DUMP", "k"], ["PTTL", "k"], ["RESTORE", "k", "0", "x"], ["WAIT", "1", "0"],
]


@functools.cache
def admin_entries_7_0() -> dict[str, int]:
    """Every command and subcommand (`cluster|reset`) that a plain Redis 7.0 files as administrative, and its
    arity (negative: at least that many words)."""
    with plain_redis("7.0") as client:
        entries = set(client.acl_cat("admin"))
        arity = {}
        for name in {e.split("|")[0] for e in entries}:
            info = client.execute_command("COMMAND", "INFO", name)[name]  # redis-py parses it into a dict
            arity[name] = info["arity"]
            for sub in info.get("subcommands") or []:
                arity[sub[0]] = sub[1]
    return {entry: arity[entry] for entry in entries}


@contextlib.contextmanager
def plain_redis(version: str) -> Iterator[redis.Redis]:
    """A client of a plain redis-server of `version` (no config of ours) on a unix socket."""
    with tempfile.TemporaryDirectory() as run:
        sock = Path(run) / "plain.sock"
        server = subprocess.Popen(
            [redis_bin(version), "--port", "0", "--unixsocket", str(sock), "--save", "", "--dir", run],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not sock.exists():
                assert server.poll() is None and time.monotonic() < deadline, f"plain redis-server {version}"
                time.sleep(0.05)
            client = redis.Redis(unix_socket_path=str(sock), decode_responses=True, socket_timeout=10)
            try:
                yield client
            finally:
                client.close()
        finally:
            server.kill()
            server.wait(timeout=10)


@functools.cache
def admin_commands(version: str) -> frozenset[str]:
    """The commands that a plain redis-server of `version` (no config of ours) marks as administrative:
    7.0's ACL category "admin" (a subcommand counts for its command), 5.0's COMMAND flag "admin"."""
    with plain_redis(version) as client:
        if version == "5.0":
            names = {name for name, info in client.command().items() if "admin" in info["flags"]}
        else:
            names = {entry.split("|")[0] for entry in client.acl_cat("admin")}
    return frozenset(name.upper() for name in names)


def refused(client: redis.Redis, command: str, args: list[str]) -> str | None:
    """The error Redis answers with, or None if the command ran."""
    try:
        client.execute_command(command, *args)
    except redis.exceptions.ResponseError as e:
        return str(e)
    return None


def assert_only_sessions(lo: Loopback) -> None:
    acked = write_sessions(lo, 50)
    assert len(acked) == 50
    for process in lo.processes:
        client = lo.client(process)  # the front-ends' password, straight to each process
        # Every attempt this file knows of, on the line that has the command, whatever redis_conf says.
        for command, args in {**ATTEMPTS, **SECRET_NAMED_ATTEMPTS}.items():
            if command in (ONLY_ON_7_0 if lo.version == "5.0" else ONLY_ON_5_0):
                continue
            error = refused(client, command, args)
            assert error is not None and "unknown command" in error.lower(), \
                f"{process.host}:{process.port} ran {command} {' '.join(args)} for the front-ends' password: {error}"
        if lo.version == "5.0":
            # Every administrative command of the real Redis of this line, but those kept for a reason.
            for command in sorted(admin_commands(lo.version) - KEPT_ADMIN):
                error = refused(client, command, ["HELP"])
                assert error is not None and "unknown command" in error.lower(), \
                    f"{process.host}:{process.port}: {command} is administrative and answered the front-ends' password"
        else:
            # Every administrative command and subcommand, with the words its arity asks for: Redis checks the
            # arity before the user's rights, so too few words would be refused for the wrong reason.
            for entry, arity in sorted(admin_entries_7_0().items()):
                words = entry.split("|")
                words += ["0"] * max(0, abs(arity) - len(words))
                error = refused(client, words[0], words[1:])
                # (redis-py drops the NOPERM code: NoPermissionError says the rest.)
                assert error is not None and ("no permissions to run" in error or "unknown command" in error.lower()), \
                    f"{process.address}: {' '.join(words)} answered the front-ends' password: {error}"
            for command, args in REFUSED_ON_7_0.items():
                error = refused(client, command, args)
                assert error is not None and "no permissions to run" in error, f"{process.address}: {command}: {error}"
            # What the client library and the session provider send stays allowed (asked without running it).
            admin = lo.admin(process)
            acl = lo.command_name(process, "ACL")
            for words in FRONT_END_COMMANDS:
                assert admin.execute_command(acl, "DRYRUN", "default", *words) == "OK", (process.address, words)
            admin.close()
        for command in secret_named_commands(lo.platform):
            secret = lo.command_name(process, command)
            assert secret != command and len(secret) > len(command) + 16, secret
        client.close()
        # The servers' scripts reach CONFIG by its name in the auth include, as the operations user on 7.0.
        assert int(lo.config_get(process, "maxmemory")["maxmemory"]) > 0
        # And an operator's CLIENT LIST (docs/operations.md: ConnectedClients) still answers, under that name on 5.0.
        admin = lo.admin(process)
        assert "addr=" in admin.execute_command(lo.command_name(process, "CLIENT"), "LIST")
        admin.close()
    assert lost_sessions(lo, acked) == 0
    assert len(write_sessions(lo, 20)) == 20


def test_the_list_covers_what_makes_a_password_an_administrators() -> None:
    assert set(ATTEMPTS) == {c for p in PLATFORMS.values() for c in disabled_commands(p)}
    assert set(SECRET_NAMED_ATTEMPTS) == {c for p in PLATFORMS.values() for c in secret_named_commands(p)}
    closed = {line: {c for p in PLATFORMS.values() if p.redis_version == line
                     for c in (*disabled_commands(p), *secret_named_commands(p))} for line in ("5.0", "7.0")}
    assert ONLY_ON_7_0 == closed["7.0"] - closed["5.0"]
    assert ONLY_ON_5_0 == closed["5.0"] - closed["7.0"]


def test_the_kept_administrative_commands_are_what_redis_calls_administrative() -> None:
    """The exemptions name real administrative commands (a stale one would hide nothing, and mean nothing)."""
    on = {version: admin_commands(version) for version in REDIS_VERSIONS}
    assert {"CONFIG", "MODULE", "DEBUG", "SHUTDOWN", "CLUSTER", "PSYNC"} <= on["5.0"] & on["7.0"], on
    assert KEPT_ADMIN <= on["5.0"] & on["7.0"], KEPT_ADMIN - (on["5.0"] & on["7.0"])
    assert ONLY_ON_5_0 <= on["5.0"], ONLY_ON_5_0 - on["5.0"]
    entries = admin_entries_7_0()
    assert REPLICATION_COMMANDS <= set(entries) and {"cluster|reset", "cluster|failover", "client|kill", "role"} <= \
        set(entries) and "cluster|nodes" not in entries, sorted(entries)


@pytest.mark.parametrize("version", REDIS_VERSIONS)
def test_a_single_servers_front_end_password_keeps_sessions_and_nothing_else(version, loopback_factory) -> None:
    lo = loopback_factory(version, servers=1)
    lo.start()
    assert_only_sessions(lo)


@pytest.mark.parametrize("version", REDIS_VERSIONS)
def test_a_clusters_front_end_password_keeps_sessions_and_nothing_else(version, loopback_factory) -> None:
    lo = loopback_factory(version)
    lo.start()
    lo.bootstrap()
    assert_only_sessions(lo)
    if has_users(lo.platform):
        # Every master's replica is logged in as the replication user (the front-ends' user has no PSYNC).
        logins = replica_logins(lo)
        assert logins and all(users == [REPLICATION_USER] for users in logins.values()), logins


def crc64(data: bytes) -> int:
    """The checksum that ends a DUMP payload: CRC-64 with Jones's polynomial, reflected (Redis's crc64.c)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
    return crc


def test_crc64_is_redis_checksum() -> None:
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # crc64.c's own test vector


def test_a_7_0_front_end_cannot_restore_a_crafted_payload(loopback_factory) -> None:
    """RESTORE stays with the front-ends (and the backup's restore). A payload whose checksum is right but whose
    structure is not (here a session hash with one field twice) would corrupt the process's memory; 7.0 checks
    each client's payload whole (sanitize-dump-payload clients) and refuses it. Planted (the line left out of
    redis.conf): the crafted hash is restored."""
    lo = loopback_factory("7.0", servers=1)
    lo.start()
    client = lo.client(lo.processes[0])
    client.hset("{s}_Data", mapping={"a": "1", "b": "2"})
    payload = client.dump("{s}_Data")
    body = payload[:-8]
    assert payload[-8:] == struct.pack("<Q", crc64(body))  # the checksum is computed as Redis does
    assert client.restore("{s}_Copy", 0, payload) == "OK" and client.hgetall("{s}_Copy") == {"a": "1", "b": "2"}
    at = body.index(b"\x81b")  # the listpack's one-byte string "b", the second field's name
    crafted = body[:at] + b"\x81a" + body[at + 2:]
    crafted += struct.pack("<Q", crc64(crafted))
    with pytest.raises(redis.ResponseError, match="Bad data format"):
        client.restore("{s}_Crafted", 0, crafted)
    assert not client.exists("{s}_Crafted")
    client.close()


@pytest.mark.parametrize("version", REDIS_VERSIONS)
def test_the_documented_shrink_still_removes_a_node_without_shutdown(version, loopback_factory) -> None:
    """docs/operations.md "Shrinking", step 4, with SHUTDOWN gone: `redis-cli --cluster del-node` of the line
    removes the node from every other node's view. 7.0's ends with CLUSTER RESET SOFT on it; 5.0's with a
    SHUTDOWN that Redis refuses, after the node is forgotten (the doc says so)."""
    lo = loopback_factory(version)
    lo.start()
    lo.bootstrap()
    view = nodes(lo)
    replica = next(a for a, n in view.items() if n["role"] == "replica")
    # Every node knows it first: right after the bootstrap on a loaded host one may not yet, and its CLUSTER
    # FORGET then answers "Unknown node" (seen once in a full run).
    deadline = time.monotonic() + 30
    while not all(view[replica]["id"] in nodes_seen_by(lo, p) for p in lo.processes if p.address != replica):
        assert time.monotonic() < deadline, f"not every node knows {replica} by its id"
        time.sleep(0.2)
    # As the doc says: on 7.0 as the operations user (the front-ends' user cannot administer).
    login = ["--user", OPERATIONS_USER] if has_users(lo.platform) else []
    removed = subprocess.run(
        [lo.redis_cli, *login, "--cluster", "del-node", lo.processes[0].address, view[replica]["id"]],
        env={"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": lo.ops_secret if login else lo.password},
        capture_output=True, text=True, timeout=60,
    )
    said = removed.stdout + removed.stderr
    assert "CLUSTER FORGET" in said, said
    if version == "5.0":
        assert removed.returncode == 1 and "unknown command `SHUTDOWN`" in said, said
    else:
        assert removed.returncode == 0 and "CLUSTER RESET SOFT" in said, said
    deadline = time.monotonic() + 10
    while any(replica in nodes_seen_by(lo, p) for p in lo.processes if p.address != replica):
        assert time.monotonic() < deadline, f"{replica} is still in the cluster"
        time.sleep(0.2)


def nodes_seen_by(lo: Loopback, process) -> str:
    client = lo.client(process)
    try:
        return client.execute_command("CLUSTER", "NODES")
    finally:
        client.close()
