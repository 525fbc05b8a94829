"""Off-host backups on loopback, against moto in server mode: the shipped redis-backup and the restore tool.

Each server's shipped redis-backup runs for real (bash, the real redis-cli --rdb, the
real AWS CLI v1) against real Redis 5.0 and 7.0 clusters of tests/integration/loopbacks,
all servers at once as their aligned timers do. AWS is moto's server on a loopback
address of this test process: the endpoint override (AWS_ENDPOINT_URL) and throwaway
credentials are the only differences from EC2. moto records every request it receives
(headers and bodies), so the tests can prove the password never reached it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from outsystems_redis.backup_bucket import server_statements
from outsystems_redis.monitoring import (
    BACKUP_PERIOD_SECONDS,
    BACKUP_PREFIX,
    SERVER_SESSION,
    TAKEN_AT_FORMAT,
    backup_key,
    backup_manifest_key,
)
from outsystems_redis.render.backup import backup_script
from outsystems_redis.tools.loopback import Loopback, run_at_once
from outsystems_redis.tools.sessions import SessionStore, session_keys, session_tag

# Its `moto` fixture is the one of tests/integration/moto_stand_in.py (tests/conftest.py registers it).
from tests.integration.moto_stand_in import BUCKET, STACK, Moto, backup_environment


def run_backups(lo: Loopback, moto: Moto, root: Path, timeout: float = 180,
                first_on_path: Path | None = None) -> dict[int, tuple[int, str]]:
    """The shipped redis-backup on every server at once, as their timers run it; (exit code, output) by server."""
    script = root / "redis-backup"
    script.write_text(backup_script())
    envs = {}
    for server in range(len(lo.topology.servers)):
        env = backup_environment(lo, server, moto, root / f"work-{server}")
        if first_on_path:
            env["PATH"] = f"{first_on_path}:{env['PATH']}"
        envs[server] = env
    return run_at_once(script, envs, timeout)


def slot_of_hour(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch) // BACKUP_PERIOD_SECONDS * BACKUP_PERIOD_SECONDS, UTC).strftime(
        TAKEN_AT_FORMAT)


def objects(moto: Moto) -> dict[str, bytes]:
    s3 = moto.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="snapshots/").get("Contents", [])  # not the tools
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def masters(lo: Loopback) -> list:
    return [p for p in lo.processes if lo.client(p).info("replication")["role"] == "master"]


def assert_one_snapshot_per_master(lo: Loopback, moto: Moto, results: dict, started: float) -> str:
    """Every run succeeded; exactly one RDB and one manifest per master, under backup_key; returns taken_at."""
    for server, (code, out) in results.items():
        assert code == 0, f"server {server}:\n{out}"
    stored = objects(moto)
    taken = {k.split("/")[3] for k in stored}
    assert len(taken) == 1, stored.keys()  # one snapshot set
    taken_at = taken.pop()
    assert taken_at in {slot_of_hour(started), slot_of_hour(time.time())}
    expected = set()
    for p in masters(lo):
        name = lo.topology.servers[p.server].name
        # Under the server's own instance session (the only prefix its role may write), as STS names it.
        writer = moto.writer(p.server)
        expected |= {backup_key(writer, name, taken_at, p.port), backup_manifest_key(writer, name, taken_at, p.port)}
    assert set(stored) == expected
    # What the servers' role allows (the program's own statement, its policy variable as IAM fills it in for
    # each server): every key within its own server's grant, and none within another server's.
    grant = next(st for st in server_statements(STACK, "arn:aws:logs:x", f"arn:aws:s3:::{BUCKET}")
                 if st["Sid"] == "WriteSnapshots")["Resource"].removeprefix(f"arn:aws:s3:::{BUCKET}/")
    servers = range(len(lo.topology.servers))
    for key in stored:
        allowed = {s for s in servers if fnmatch.fnmatchcase(key, grant.replace(SERVER_SESSION, moto.writer(s)))}
        assert len(allowed) == 1 and allowed <= {p.server for p in masters(lo)}, (key, grant)
    slots: list[int] = []
    for key, body in stored.items():
        if key.endswith(".rdb"):
            assert body.startswith(b"REDIS"), key
        else:
            manifest = json.loads(body)
            assert manifest["taken_at"] == taken_at and manifest["redis_version"].startswith(lo.version)
            assert manifest["writer"] == key.split("/")[1], manifest
            if lo.topology.cluster:
                for part in manifest["slots"].split():
                    low, _, high = part.partition("-")
                    slots += range(int(low), int(high or low) + 1)
    if lo.topology.cluster:
        assert sorted(slots) == list(range(16384))  # every slot once: no master missed, none twice
    return taken_at


def assert_nothing_left_behind(root: Path, servers: int) -> None:
    for server in range(servers):
        assert list((root / f"work-{server}").iterdir()) == [], "a snapshot was left on the server's disk"


def write_sessions(lo: Loopback, count: int, size: int = 20_000) -> dict[str, tuple[Any, int | None]]:
    """Sessions as the session provider writes them (its scripts: a _Data hash and an _Internal hash under one
    hash tag, each with the session's TTL, a different one per session); (content, absolute expiry in ms) by
    key. Content is the hash (field -> bytes), or the bytes of the one plain key without a TTL."""
    from redis.cluster import RedisCluster

    p = lo.processes[0]
    c = RedisCluster(p.host, p.port, password=lo.password, socket_timeout=5, **lo.tls_kwargs) \
        if lo.topology.cluster else redis.Redis(p.host, p.port, password=lo.password, socket_timeout=5)
    sessions: dict[str, tuple[Any, int | None]] = {}
    for i in range(count):
        tag, item = session_tag("backup", f"{i:05d}"), secrets.token_bytes(size)
        SessionStore(c, timeout=600 + i).create(tag, {"login": item})
        _, data, internal = session_keys(tag)
        for key, content in ((data, {b"login": item}), (internal, {b"SessionTimeout": str(600 + i).encode()})):
            sessions[key] = (content, int(time.time() * 1000) + c.pttl(key))
    c.set("settings:no-expiry", b"kept")
    sessions["settings:no-expiry"] = (b"kept", None)
    c.close()
    return sessions


def read_back(c, key: str, content: Any) -> Any:
    return c.hgetall(key) if isinstance(content, dict) else c.get(key)


def assert_uploaded_cleanly(lo: Loopback, moto: Moto, root: Path) -> None:
    """Nothing left on the servers' disks, the password in no request, and the recorder saw the uploads
    themselves (so the leak check looked at them)."""
    assert_nothing_left_behind(root, len(lo.topology.servers))
    assert not moto.leaks(lo.password)
    uploads = [e for e in moto.requests() if e["method"] == "PUT" and "/snapshots/" in e["url"]]
    assert sum(1 for e in uploads if b"REDIS" in e["body"]) == len(masters(lo))  # (aws-chunked bodies too)


# A dev server here. Clusters are backed up by the tests below, each with every check of this one: on 5.0 and
# 7.0 after a failover, and on 5.0, and 7.0 with TLS on (the snapshot through the TLS redis-cli), before a
# restore. (A separate run per cluster shape measured the same paths again, for 40 s of the suite's CPU.)
def test_a_backup_run_uploads_one_snapshot_per_master(loopback_factory, moto, tmp_path):
    moto.prepare_stack(STACK)  # the bucket and its parameter, as `pulumi up` makes them
    lo = loopback_factory("5.0", 1)
    lo.start()
    write_sessions(lo, 30, size=2000)
    started = time.time()
    results = run_backups(lo, moto, tmp_path)
    assert_one_snapshot_per_master(lo, moto, results, started)
    assert_uploaded_cleanly(lo, moto, tmp_path)


@pytest.mark.parametrize("version", ["5.0", "7.0"])
def test_after_a_failover_every_master_is_backed_up_once(loopback_factory, moto, tmp_path, version):
    moto.prepare_stack(STACK)  # the bucket and its parameter, as `pulumi up` makes them
    lo = loopback_factory(version)
    lo.start()
    lo.bootstrap()
    write_sessions(lo, 30, size=2000)
    # Server 0's replica (7001) takes over its master, on another server: server 0 now holds two masters
    # (7000 and 7001), that server none.
    replica = lo.topology.servers[0].processes[1]
    lo.admin(replica).execute_command("CLUSTER", "FAILOVER")
    deadline = time.monotonic() + 30
    while len([p for p in masters(lo) if p.server == 0]) != 2 or len(masters(lo)) != 3:
        assert time.monotonic() < deadline, "the failover did not complete"
        time.sleep(0.2)
    started = time.time()
    results = run_backups(lo, moto, tmp_path)
    assert_one_snapshot_per_master(lo, moto, results, started)
    first = f"{BACKUP_PREFIX}{moto.writer(0)}/{lo.topology.servers[0].name}/"
    ports = sorted(k.split("/")[4] for k in objects(moto) if k.startswith(first))
    assert ports == ["7000.json", "7000.rdb", "7001.json", "7001.rdb"]
    assert any("is a replica" in out for _, out in results.values())
    assert_uploaded_cleanly(lo, moto, tmp_path)



# What can happen to a master while the hourly run snapshots it, done right after the snapshot (the hook below,
# run by a redis-cli wrapper after each --rdb while the file `left` holds "<action> <times>"):
# - "slot": a scale-out's rebalance moves one of its slots (an empty one, so no MIGRATE is needed) to another
#   master: the target is told first, then the source (CLUSTER SETSLOT ... NODE, the step that ends a slot's
#   move in `redis-cli --cluster`);
# - "failover": its replica, on another server, takes over (CLUSTER FAILOVER).
AFTER_THE_SNAPSHOT = """\
import os, sys, time
import redis
left, args = sys.argv[1], sys.argv[2:]  # then redis-cli's own: [--user USER] -h HOST -p PORT --rdb FILE
host, port = args[args.index("-h") + 1], int(args[args.index("-p") + 1])
user = args[args.index("--user") + 1] if "--user" in args else None
with open(left) as f:
    action, times = f.read().split()
if int(times) > 0:
    with open(left, "w") as f:
        f.write(f"{action} {int(times) - 1}")
    def client(h, p):
        return redis.Redis(h, int(p), username=user, password=os.environ["REDISCLI_AUTH"], socket_timeout=5,
                           decode_responses=True)
    me = client(host, port)
    lines = [line.split() for line in me.execute_command("CLUSTER", "NODES").splitlines()]
    mine = next(n for n in lines if "myself" in n[2])
    if action == "slot":
        # A master that serves slots: just after a fail-back, this node may still see its old replica,
        # now a replica again, flagged master without slots (SETSLOT there: "only with masters").
        other = next(n for n in lines if "master" in n[2] and "myself" not in n[2] and len(n) > 8)
        low, _, high = mine[8].partition("-")
        slot = next(s for s in range(int(low), int(high or low) + 1)
                    if me.execute_command("CLUSTER", "COUNTKEYSINSLOT", s) == 0)
        for h, p in ((other[1].split("@")[0].rsplit(":", 1)), (host, port)):
            client(h, p).execute_command("CLUSTER", "SETSLOT", slot, "NODE", other[0])
    else:
        replica = client(*next(n for n in lines if n[3] == mine[0])[1].split("@")[0].rsplit(":", 1))
        deadline, asked = time.monotonic() + 90, 0.0
        while me.info("replication")["role"] != "slave":
            assert time.monotonic() < deadline, "no failover"
            if time.monotonic() - asked > 10:  # a manual failover gives up after a few seconds: ask again
                replica.execute_command("CLUSTER", "FAILOVER")
                asked = time.monotonic()
            time.sleep(0.2)
"""


def served(lo: Loopback, process) -> list[str]:
    """The slot ranges `process` serves, in order, written as CLUSTER NODES writes them ("low-high" or "slot")."""
    ranges = lo.client(process).execute_command("CLUSTER", "SLOTS")
    return [f"{low}-{high}" if high > low else f"{low}" for low, high, *nodes in sorted(ranges)
            if (str(nodes[0][0]), int(nodes[0][1])) == (process.host, process.port)]


def count(ranges: list[str]) -> int:
    return sum(int(r.rpartition("-")[2]) - int(r.partition("-")[0]) + 1 for r in ranges)


def test_a_master_whose_slots_move_during_its_snapshot_is_tried_again(loopback_factory, moto, tmp_path):
    moto.prepare_stack(STACK)  # the bucket and its parameter, as `pulumi up` makes them
    lo = loopback_factory("7.0")
    lo.start()
    lo.bootstrap()
    write_sessions(lo, 30, size=2000)
    hook, left = tmp_path / "after_the_snapshot.py", tmp_path / "left"
    hook.write_text(AFTER_THE_SNAPSHOT)
    cli = tmp_path / "redis-cli"  # the real one, then the hook after a snapshot (--rdb)
    hook_log = tmp_path / "hook.log"
    cli.write_text(f'#!/bin/bash\n"{lo.cli_for(0)}" "$@"; rc=$?\n'
                   f'if [[ " $* " == *" --rdb "* ]]; then "{sys.executable}" "{hook}" "{left}" "$@" '
                   f'2>>"{hook_log}"; fi\nexit $rc\n')
    cli.chmod(0o755)
    env = {**backup_environment(lo, 0, moto, tmp_path / "work-0"), "REDIS_CLI": str(cli), "RETRY_SECONDS": "1",
           "SNAPSHOT_ATTEMPTS": "2"}
    script = tmp_path / "redis-backup"
    script.write_text(backup_script())
    master = lo.topology.servers[0].processes[0]
    before = served(lo, master)

    def run_once(action: str) -> tuple[int, str]:
        for key in objects(moto):
            moto.client("s3").delete_object(Bucket=BUCKET, Key=key)
        left.write_text(action)
        (code, out), = run_at_once(script, {0: env}, 120).values()
        assert_nothing_left_behind(tmp_path, 1)
        return code, out + (f"\nhook: {hook_log.read_text()}" if hook_log.exists() else "")

    # Failed over during the snapshot: not tried again as a replica (its new master's server may have passed
    # it over already); the run fails at once. Then the master role goes back (on a cluster still whole).
    code, out = run_once("failover 1")
    assert code == 1 and "is no longer a master it could vouch for" in out and "trying again" not in out, out
    assert objects(moto) == {}
    deadline, asked = time.monotonic() + 90, 0.0
    while (replication := lo.client(master).info("replication"))["role"] != "master":
        assert time.monotonic() < deadline, f"the master role did not come back: {replication}"
        # A manual failover needs the link to the new master up (the demoted one resyncs first); it gives
        # up after a few seconds if the offsets do not meet, so it is asked again.
        if replication.get("master_link_status") == "up" and time.monotonic() - asked > 10:
            lo.admin(master).execute_command("CLUSTER", "FAILOVER")
            asked = time.monotonic()
        time.sleep(0.2)

    # Moved once: the second attempt is uploaded, once, with the slots the master holds after the move.
    code, out = run_once("slot 1")
    assert code == 0 and "changed during the snapshot" in out and "trying again in 1 s" in out, out
    manifest, = [json.loads(b) for k, b in objects(moto).items() if k.endswith("7000.json")]
    after = served(lo, master)
    assert manifest["slots"].split() == after and count(after) == count(before) - 1, (manifest, before, after)
    assert sum(1 for e in moto.requests() if e["method"] == "PUT" and e["url"].endswith("7000.rdb")) == 1

    # Moved at every attempt: nothing of that master uploaded, and the run fails, saying so.
    code, out = run_once("slot 2")
    assert code == 1 and "changed during each of 2 snapshots; not backed up" in out, out
    assert objects(moto) == {}


IMPOSTOR = "AROAEXAMPLEIMPOSTOR:i-0ffffffffffffffff"


def restore(moto: Moto, lo: Loopback, taken_at: str, *extra: str) -> subprocess.CompletedProcess:
    p = lo.processes[0]
    if lo.tls:
        extra = ("--tls", "--cacert", str(lo.ca_file), *extra)
    env = {**os.environ, **moto.env(), "REDIS_PASSWORD": lo.password}
    return subprocess.run(
        [sys.executable, "-m", "outsystems_redis.tools.backup", "restore", "--bucket", BUCKET, "--taken-at", taken_at,
         "--target", p.address, "--redis-server", lo.redis_server, *extra],
        env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])


# The restored TTL is the key's remaining TTL when the RESTORE runs, so its absolute expiry is the original's;
# the test reads both through a client round trip, each bracketed by the clock: 1 s covers the restore's own delay.
TTL_TOLERANCE_MS = 1000
# Sessions about to time out: kept alive (their TTL set again every REFRESH_S) until every server's backup
# run has returned, so they are in the snapshot however long the run takes on a busy machine; then they
# expire SHORT_TTL_MS later, before the restore. (A fixed 20 s TTL ran out before a busy run's snapshot.)
SHORT_TTL_MS = 8_000
REFRESH_S = 0.5


class KeptAlive:
    """Sets `keys`' TTL to SHORT_TTL_MS every REFRESH_S, in a thread, until stopped."""

    def __init__(self, lo: Loopback, keys: list[str]) -> None:
        self.lo, self.keys = lo, keys
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        c = client_of(self.lo)
        try:
            while not self.stop.wait(REFRESH_S):
                for key in self.keys:
                    if not c.pexpire(key, SHORT_TTL_MS):
                        self.failures.append(f"{key} was gone before the backup ended")
        finally:
            c.close()

    def __enter__(self) -> KeptAlive:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def client_of(lo: Loopback):  # noqa: ANN201
    """A client of the whole store: a cluster client for a cluster, a plain one for a single server."""
    from redis.cluster import RedisCluster

    p = lo.processes[0]
    return RedisCluster(p.host, p.port, password=lo.password, socket_timeout=5, **lo.tls_kwargs) \
        if lo.topology.cluster else redis.Redis(p.host, p.port, password=lo.password, socket_timeout=5)


# The same Redis line and layout; a 5.0 cluster's set into a single 7.0 server (another slot layout
# altogether, and the migration's direction: the 7.0 redis-server loads the 5.0 RDB files); and a 7.0
# cluster with TLS on (a plain 7.0 cluster adds no path of its own: dropped for the suite's time).
@pytest.mark.parametrize("version,fresh_version,fresh_servers,tls", [
    ("5.0", "5.0", 3, False), ("5.0", "7.0", 1, False), ("7.0", "7.0", 3, True)])
def test_restore_rehearsal_brings_back_every_session_with_its_ttl(loopback_factory, moto, tmp_path,
                                                                 version, fresh_version, fresh_servers, tls):
    moto.prepare_stack(STACK)  # the bucket and its parameter, as `pulumi up` makes them
    lo = loopback_factory(version, 3, tls)
    lo.start()
    lo.bootstrap()
    sessions = write_sessions(lo, 300)
    # Sessions about to time out: in the snapshot, expired by the restore: not brought back.
    c = client_of(lo)
    short = [f"session:short-{i}" for i in range(10)]
    for key in short:
        c.set(key, b"x" * 100, px=SHORT_TTL_MS)
    c.close()
    started = time.time()
    with KeptAlive(lo, short) as kept:
        results = run_backups(lo, moto, tmp_path)
    short_gone_at = time.monotonic() + SHORT_TTL_MS / 1000 + 0.5
    assert kept.failures == []
    taken_at = assert_one_snapshot_per_master(lo, moto, results, started)
    assert_uploaded_cleanly(lo, moto, tmp_path)
    old_password = lo.password

    lo.stop()  # the cluster is gone, data and all
    shutil.rmtree(lo.state_dir)
    fresh = loopback_factory(fresh_version, fresh_servers, tls)
    fresh.start()
    if fresh.topology.cluster:
        fresh.bootstrap()
    time.sleep(max(0.0, short_gone_at - time.monotonic()))  # the short sessions' TTLs have run out

    listed = subprocess.run([sys.executable, "-m", "outsystems_redis.tools.backup", "list", "--bucket", BUCKET],
                            env={**os.environ, **moto.env()}, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parents[2])
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(taken_at)).split()
    # Every session and every short one (else "expired: not brought back" below would prove nothing).
    assert row[1] == "3" and row[3] == "16384/16384", listed.stdout
    assert int(row[2]) == len(sessions) + len(short), listed.stdout

    done = restore(moto, fresh, taken_at)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"restored {len(sessions)} key(s)" in done.stdout, done.stdout
    c = client_of(fresh)
    for key, (content, expires_at) in sessions.items():
        assert read_back(c, key, content) == content, key  # hashes come back as hashes, field by field
        # The clock read with each PTTL, not once for all 300 keys: on a busy machine the reads alone took
        # more than the tolerance.
        before_ms = time.time() * 1000
        pttl = c.pttl(key)
        after_ms = time.time() * 1000
        if expires_at is None:
            assert pttl == -1, key
        else:
            early, late = before_ms + pttl - expires_at, after_ms + pttl - expires_at
            assert -TTL_TOLERANCE_MS <= early and late <= TTL_TOLERANCE_MS, (key, early, late)
    assert not any(c.exists(f"session:short-{i}") for i in range(10))  # expired: not brought back

    # Again, without --replace: refused before anything is written, naming a key.
    first = next(iter(sessions))
    c.hset(first, "login", b"newer")
    again = restore(moto, fresh, taken_at)
    assert again.returncode == 2 and "--replace" in again.stderr and "'{backup_0" in again.stderr, again.stderr
    assert c.hget(first, "login") == b"newer"

    # An impostor: another instance uploads under server 1's name in that hour (its own prefix is all its role
    # may write). The set no longer says whose keys are server 1's: noted by `list`, refused by `restore`.
    s3, name = moto.client("s3"), lo.topology.servers[0].name
    for key in [k for k in objects(moto) if k.split("/")[2:4] == [name, taken_at]]:
        s3.copy_object(Bucket=BUCKET, Key=key.replace(moto.writer(0), IMPOSTOR),
                       CopySource={"Bucket": BUCKET, "Key": key})
    listed = subprocess.run([sys.executable, "-m", "outsystems_redis.tools.backup", "list", "--bucket", BUCKET],
                            env={**os.environ, **moto.env()}, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parents[2])
    assert f"{name} uploaded by 2 instances" in listed.stdout, listed.stdout + listed.stderr
    refused = restore(moto, fresh, taken_at, "--replace")
    assert refused.returncode == 2 and f"{name}'s snapshots were uploaded by more than one instance" in \
        refused.stderr and IMPOSTOR in refused.stderr, refused.stderr
    assert c.hget(first, "login") == b"newer"  # nothing written
    # The operator, having found server 1's own instance, leaves the impostor out.
    kept = restore(moto, fresh, taken_at, "--replace", "--ignore-writer", IMPOSTOR)
    assert kept.returncode == 0 and f"restored {len(sessions)} key(s)" in kept.stdout, kept.stdout + kept.stderr
    assert c.hget(first, "login") == sessions[first][0][b"login"]

    # A compromised server (2) uploads in server 1's name for an hour whose own upload server 1 lacks: no
    # second writer of that name, but one writer of two names.
    c.hset(first, "login", b"newer")
    other = lo.topology.servers[1].name
    for key in [k for k in objects(moto) if k.split("/")[1:4] == [moto.writer(0), name, taken_at]]:
        s3.copy_object(Bucket=BUCKET, Key=key.replace(moto.writer(0), moto.writer(1)),
                       CopySource={"Bucket": BUCKET, "Key": key})
        s3.delete_object(Bucket=BUCKET, Key=key)
    refused = restore(moto, fresh, taken_at, "--replace", "--ignore-writer", IMPOSTOR)
    assert refused.returncode == 2 and f"{moto.writer(1)} uploaded as {name} and {other}" in refused.stderr, \
        refused.stderr
    # Had it uploaded nothing of its own that hour, EC2 still says whose instance it is. Refused, naming it.
    for key in [k for k in objects(moto) if k.split("/")[1:4] == [moto.writer(1), other, taken_at]]:
        s3.delete_object(Bucket=BUCKET, Key=key)
    refused = restore(moto, fresh, taken_at, "--replace", "--ignore-writer", IMPOSTOR)
    assert refused.returncode == 2 and f"{name}'s snapshots were uploaded by {moto.writer(1)}, whose instance's " \
        f"tags differ (Name '{other}', not '{name}')" in refused.stderr, refused.stderr
    assert "--trust-writer" not in refused.stderr  # EC2 knows it: not a replaced server
    assert c.hget(first, "login") == b"newer"  # nothing written
    c.close()
    assert not moto.leaks(old_password) and not moto.leaks(fresh.password)


def test_a_snapshot_the_disk_cannot_hold_is_not_taken(loopback_factory, moto, tmp_path):
    moto.prepare_stack(STACK)  # the bucket and its parameter, as `pulumi up` makes them
    lo = loopback_factory("5.0", 1)
    lo.start()
    write_sessions(lo, 5, size=2000)
    # A disk with 1 byte free: `df` as the server would print it then.
    fake = tmp_path / "full-disk"
    fake.mkdir()
    (fake / "df").write_text("#!/bin/bash\necho 'Filesystem 1-blocks Used Available Capacity Mounted on'\n"
                             "echo '/dev/root 8000000000 7999999999 1 100% /'\n")
    (fake / "df").chmod(0o755)
    (code, out), = run_backups(lo, moto, tmp_path, first_on_path=fake).values()
    assert code == 1 and "has 1 free; not backed up" in out, out
    assert objects(moto) == {}
    assert_nothing_left_behind(tmp_path, 1)
