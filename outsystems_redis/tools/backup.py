"""List the stack's snapshot sets in S3, and restore one into a Redis Cluster (or one server), key by key.

    python -m outsystems_redis.tools.backup list --bucket NAME            # or --stack NAME: the bucket from SSM
    REDIS_PASSWORD=... python -m outsystems_redis.tools.backup restore --bucket NAME --taken-at 20261126T200000Z \\
        --target 10.0.1.10:7000 [--replace] [--redis-server /usr/bin/redis-server]

Every server's redis-backup uploads, each hour, one RDB per master it holds and a
manifest beside it (outsystems_redis.monitoring's keys); one hour's snapshots share their
`taken_at` and form a snapshot set. The restore downloads a set, loads each RDB into a
throwaway local redis-server (on a Unix socket in a private directory, no TCP port)
and copies every key with DUMP + PTTL -> RESTORE into the target, through a cluster
client when the target is a cluster: by key, so the target's slot layout does not
matter. A key whose TTL ran out is skipped; a key already in the target stops the
restore before anything is written, unless --replace. Each snapshot's writer (the
instance whose prefix it is under) must be, by EC2's tags, the server it names, or the
restore stops before anything is written. The password comes from
REDIS_PASSWORD, never from the command line. Plain Python (boto3, redis-py), no pulumi.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from outsystems_redis.monitoring import BACKUP_MANIFEST_SUFFIX, BACKUP_PREFIX, backup_bucket_parameter
from outsystems_redis.settings import NAMESPACE as PROJECT  # every server's Project tag
from outsystems_redis.tools.stack_file import stack_argument

SLOTS = 16384
PASSWORD_ENV = "REDIS_PASSWORD"  # as the health check
BATCH = 500  # keys per DUMP/RESTORE pipeline
# <prefix><writer>/<server>/<taken_at>/<port>: the writer is the instance's IAM session (monitoring.SERVER_SESSION).
# Snapshots uploaded before this version have no writer segment; they expire within backupRetentionDays.
# A server's name never holds ':' (settings.STORE_NAME), an EC2 writer always does: no key reads in the other form.
_KEY = re.compile(rf"^{re.escape(BACKUP_PREFIX)}(?:(?P<writer>[^/]+)/)?(?P<server>[^/:]+)/"
                  rf"(?P<taken_at>\d{{8}}T\d{{6}}Z)/(?P<port>\d+)(?P<kind>\.rdb|{re.escape(BACKUP_MANIFEST_SUFFIX)})$")


class BackupError(Exception):
    """A problem the operator can fix; the message names the argument or the object."""


# -- pure: keys, manifests, sets ------------------------------------------------


@dataclass
class Snapshot:
    server: str
    port: int
    taken_at: str
    writer: str = ""  # the instance that uploaded it ("" before writers had prefixes of their own)
    rdb_key: str | None = None
    manifest_key: str | None = None
    rdb_size: int = 0
    manifest: dict | None = None

    @property
    def complete(self) -> bool:
        """The server job uploads the manifest last: without it the snapshot is incomplete."""
        return self.rdb_key is not None and self.manifest_key is not None

    @property
    def name(self) -> str:
        return f"{self.server}:{self.port}"


@dataclass
class SnapshotSet:
    taken_at: str
    snapshots: list[Snapshot] = field(default_factory=list)

    @property
    def complete_snapshots(self) -> list[Snapshot]:
        return [s for s in self.snapshots if s.complete]


def parse_key(key: str) -> tuple[str, str, str, int, str] | None:
    """(writer, server, taken_at, port, ".rdb" or the manifest suffix) of a snapshot object's key, or None."""
    m = _KEY.match(key)
    return (m["writer"] or "", m["server"], m["taken_at"], int(m["port"]), m["kind"]) if m else None


def group_sets(objects: Iterable[tuple[str, int]]) -> dict[str, SnapshotSet]:
    """Snapshot sets by taken_at, from (key, size) of the bucket's objects (others ignored)."""
    sets: dict[str, SnapshotSet] = {}
    found: dict[tuple[str, str, str, int], Snapshot] = {}
    for key, size in objects:
        parsed = parse_key(key)
        if parsed is None:
            continue
        writer, server, taken_at, port, kind = parsed
        snap = found.get((writer, server, taken_at, port))
        if snap is None:
            snap = found[(writer, server, taken_at, port)] = Snapshot(server, port, taken_at, writer)
            sets.setdefault(taken_at, SnapshotSet(taken_at)).snapshots.append(snap)
        if kind == ".rdb":
            snap.rdb_key, snap.rdb_size = key, size
        else:
            snap.manifest_key = key
    for s in sets.values():
        s.snapshots.sort(key=lambda x: (x.server, x.port, x.writer))
    return dict(sorted(sets.items()))


# How the restore names, and --ignore-writer takes, the writer of a snapshot from before writer prefixes.
LEGACY = "legacy"


def instance_of(writer: str) -> str:
    """The instance id in a writer (monitoring.server_session: "<role id>:<instance id>")."""
    return writer.rpartition(":")[2]


def unverified(snapshots: list[Snapshot], instances: Mapping[str, Mapping[str, str]], stack: str | None,
               trusted: set[str]) -> list[str]:
    """Why a snapshot's writer cannot be taken for the server it names, with what the operator can do: its
    instance (`instances`: EC2's tags by instance id) must carry that server's name and the project's tag (and
    the stack's, when known), as the program tags every server. A server can write only under its own prefix,
    but names itself below it: an impostor's upload for an hour whose real upload failed would otherwise
    restore its keys for those slots. Snapshots from before writer prefixes, and `trusted` writers, pass."""
    problems: dict[tuple[str, str], str] = {}
    for snap in snapshots:
        if not snap.writer or snap.writer in trusted:
            continue
        tags = instances.get(instance_of(snap.writer))
        if tags is None:
            why = (f"an instance EC2 does not know (terminated over an hour ago, or never one of ours): if it was "
                   f"this server's (replaced since), give --trust-writer {snap.writer}; else --ignore-writer "
                   f"{snap.writer}")
        else:
            wanted = {"Name": snap.server, "Project": PROJECT, **({"Stack": stack} if stack is not None else {})}
            wrong = [f"{k} {tags.get(k)!r}, not {v!r}" for k, v in wanted.items() if tags.get(k) != v]
            if not wrong:
                continue
            why = f"whose instance's tags differ ({'; '.join(wrong)}): leave it out with --ignore-writer {snap.writer}"
        problems.setdefault((snap.writer, snap.server),
                            f"{snap.server}'s snapshots were uploaded by {snap.writer}, {why}")
    return list(problems.values())


def two_names(snapshots: list[Snapshot]) -> dict[str, list[str]]:
    """Writers that uploaded under more than one server name in one set -> those names. A server names only
    itself: one writer of two names is not both servers, whichever (if any) it is."""
    names: dict[str, set[str]] = {}
    for snap in snapshots:
        if snap.writer:
            names.setdefault(snap.writer, set()).add(snap.server)
    return {writer: sorted(n) for writer, n in sorted(names.items()) if len(n) > 1}


def claimed_twice(snapshots: list[Snapshot]) -> dict[str, list[str]]:
    """Server names that more than one instance uploaded under in one set -> those instances. A server writes
    only under its own instance's prefix, but names itself: a second writer of one name is an impostor, or a
    replaced server's, and either way the set cannot say whose keys are the server's."""
    writers: dict[str, set[str]] = {}
    for snap in snapshots:
        writers.setdefault(snap.server, set()).add(snap.writer or LEGACY)
    return {server: sorted(w) for server, w in sorted(writers.items()) if len(w) > 1}


def parse_slots(text: str) -> set[int]:
    """The slots of a manifest's "0-5460 10923" (CLUSTER NODES' notation)."""
    slots: set[int] = set()
    for part in text.split():
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise BackupError(f"manifest slots: {part!r} is not a slot or a slot range") from None
        if not 0 <= first <= last < SLOTS:
            raise BackupError(f"manifest slots: {part!r} is outside 0-{SLOTS - 1}")
        slots.update(range(first, last + 1))
    return slots


def slots_of(snapshot: Snapshot) -> set[int] | None:
    """The slots its master held; None for a single server (every key belongs to it)."""
    m = snapshot.manifest or {}
    return parse_slots(str(m.get("slots", ""))) if m.get("cluster") else None


def coverage(snapshots: list[Snapshot]) -> tuple[int, list[tuple[int, str, str]]]:
    """(slots covered, [(slot, snapshot, other snapshot)] held by two snapshots) of a set's cluster snapshots."""
    owner: dict[int, str] = {}
    overlaps: list[tuple[int, str, str]] = []
    for snap in snapshots:
        for slot in sorted(slots_of(snap) or ()):
            if slot in owner:
                overlaps.append((slot, owner[slot], snap.name))
            else:
                owner[slot] = snap.name
    return len(owner), overlaps


def version_tuple(text: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text)
    if not m:
        raise BackupError(f"cannot read a Redis version from {text!r}")
    return int(m[1]), int(m[2])


def check_versions(local: str, snapshots: list[str], target: str) -> None:
    """The local redis-server must load every RDB (at least their version) and its DUMP payloads must
    RESTORE into the target (at most the target's version)."""
    newest = max(snapshots, key=version_tuple, default=local)
    if version_tuple(local) < version_tuple(newest):
        raise BackupError(f"--redis-server is Redis {local}; the snapshots were taken by Redis {newest}, "
                          f"whose RDB it cannot load: give a redis-server of {newest} or newer")
    if version_tuple(local) > version_tuple(target):
        raise BackupError(f"--redis-server is Redis {local}; the target runs Redis {target}, which refuses "
                          f"its DUMP payloads: give a redis-server of {target[:3]}")


def restore_ttl(pttl: int, read_at_ms: int = 0) -> int | None:
    """RESTORE's ttl for a key's PTTL read at `read_at_ms` (unix ms): the absolute expiry for ABSTTL (the
    relative PTTL when `read_at_ms` is 0); None when the key expired (or vanished), 0 for no expiry."""
    if pttl == -1:
        return 0
    if pttl == -2 or pttl <= 0:
        return None
    return read_at_ms + pttl


def show(key: bytes) -> str:
    return key.decode("utf-8", errors="backslashreplace")


# -- S3 ------------------------------------------------------------------------


def s3_client(region: str | None):
    import boto3  # only the tool needs it; the program and the renderers never import it

    return boto3.client("s3", region_name=region)


def instance_tags(region: str | None, ids: set[str]) -> dict[str, dict[str, str]]:
    """EC2's tags of each instance in `ids` that EC2 still knows (terminated ones for about an hour)."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region)
    found: dict[str, dict[str, str]] = {}
    ordered = sorted(ids)
    try:
        for start in range(0, len(ordered), 200):  # a filter takes at most 200 values
            pages = ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": ordered[start:start + 200]}])
            for page in pages:
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        found[instance["InstanceId"]] = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    except Exception as e:  # botocore's errors are generated classes
        raise BackupError(f"cannot ask EC2 which instances uploaded the snapshots (ec2:DescribeInstances): {e}") \
            from None
    return found


def bucket_from_args(args: argparse.Namespace) -> str:
    if args.bucket:
        return args.bucket
    if not args.stack:
        raise BackupError("give --bucket NAME (the stack's backup bucket) or --stack NAME (read from SSM)")
    import boto3

    name = backup_bucket_parameter(args.stack)
    try:
        value = boto3.client("ssm", region_name=args.region).get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as e:  # botocore's errors are generated classes
        raise BackupError(f"--stack {args.stack}: cannot read {name} from SSM: {e}") from None
    return value


def list_objects(s3, bucket: str) -> list[tuple[str, int]]:
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=BACKUP_PREFIX)
        return [(o["Key"], o["Size"]) for page in pages for o in page.get("Contents", [])]
    except Exception as e:
        raise BackupError(f"--bucket {bucket}: cannot list {BACKUP_PREFIX}: {e}") from None


def load_manifests(s3, bucket: str, snapshot_set: SnapshotSet) -> None:
    import json

    for snap in snapshot_set.complete_snapshots:
        body = s3.get_object(Bucket=bucket, Key=snap.manifest_key)["Body"].read()
        try:
            snap.manifest = json.loads(body)
        except ValueError:
            raise BackupError(f"s3://{bucket}/{snap.manifest_key} is not a manifest (JSON)") from None


# -- the throwaway local redis-server ---------------------------------------------


def redis_server_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"v=(\d+\.\d+\.\d+)", out)
    if not m:
        raise BackupError(f"--redis-server {binary}: not a redis-server ({out.strip()!r})")
    return m[1]


class LocalServer:
    """One RDB loaded into a redis-server of our own: Unix socket only, in a 0700 directory, no saving."""

    def __init__(self, binary: str, rdb: Path, timeout: float) -> None:
        self.dir = rdb.parent
        self.socket = self.dir / "redis.sock"
        self.log = self.dir / "redis.log"
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--dbfilename", rdb.name, "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=30)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client.ping():  # answers LOADING until the RDB is in
                    return
            except (redis.ConnectionError, redis.BusyLoadingError, redis.ResponseError, FileNotFoundError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
                self.stop()
                raise BackupError(f"the local redis-server could not load {rdb.name} within {timeout:.0f}s "
                                  f"(--load-timeout):\n{tail}")
            time.sleep(0.05)

    def keys(self) -> Iterator[bytes]:
        yield from self.client.scan_iter(count=1000)

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# -- the target ------------------------------------------------------------------


def parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BackupError(f"--target {text!r}: give HOST:PORT of one of the target's Redis processes")
    return host, int(port)


def connect_target(target: str, password: str | None, tls: dict) -> tuple[redis.Redis | RedisCluster, str, bool]:
    """(client, Redis version, is a cluster) of the target."""
    host, port = parse_target(target)
    try:
        probe = redis.Redis(host, port, password=password, socket_timeout=10, **tls)
        info = probe.info()
        probe.close()
        cluster = bool(info.get("cluster_enabled"))
        client = RedisCluster(host, port, password=password, socket_timeout=30, **tls) if cluster else \
            redis.Redis(host, port, password=password, socket_timeout=30, **tls)
    except redis.AuthenticationError:
        raise BackupError(f"--target {target}: the password in {PASSWORD_ENV} was refused") from None
    except redis.RedisError as e:
        hint = f" (set {PASSWORD_ENV})" if "NOAUTH" in str(e) or "Authentication" in str(e) else ""
        raise BackupError(f"--target {target}: {e}{hint}") from None
    return client, str(info["redis_version"]), cluster


def _batches(keys: Iterable[bytes], size: int = BATCH) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Counts:
    restored: int = 0
    expired: int = 0
    outside_slots: int = 0
    existing: list[bytes] = field(default_factory=list)


def _in_slots(slots: set[int] | None) -> Callable[[bytes], bool]:
    return (lambda _key: True) if slots is None else (lambda key: key_slot(key) in slots)


def find_existing(local: LocalServer, target, slots: set[int] | None, counts: Counts) -> None:
    """The first pass: which of the snapshot's keys the target already holds (nothing is written)."""
    wanted = _in_slots(slots)
    for batch in _batches(k for k in local.keys() if wanted(k)):
        pipe = target.pipeline(transaction=False)
        for key in batch:
            pipe.exists(key)
        counts.existing += [key for key, n in zip(batch, pipe.execute(), strict=True) if n]


def copy_keys(local: LocalServer, target, slots: set[int] | None, replace: bool, counts: Counts) -> None:
    """DUMP + PTTL from the local server, RESTORE into the target; expired keys skipped."""
    wanted = _in_slots(slots)
    for batch in _batches(local.keys()):
        src = local.client.pipeline(transaction=False)
        for key in batch:
            src.pttl(key)
            src.dump(key)
        # Absolute expiry (RESTORE ... ABSTTL, Redis 5.0+): the time between reading a batch and restoring it
        # (seconds on a busy machine or a slow link) no longer adds to each session's life. The clock is read
        # before the PTTLs, so an expiry errs early by the read's duration, never late.
        read_at_ms = int(time.time() * 1000)
        answers = src.execute()
        pipe = target.pipeline(transaction=False)
        sent = []
        for i, key in enumerate(batch):
            if not wanted(key):
                counts.outside_slots += 1
                continue
            ttl, payload = restore_ttl(answers[2 * i], read_at_ms), answers[2 * i + 1]
            if ttl is None or payload is None:
                counts.expired += 1
                continue
            pipe.restore(key, ttl, payload, replace=replace, absttl=ttl != 0)
            sent.append(key)
        if not sent:
            continue
        for key, result in zip(sent, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(result, Exception):
                if "BUSYKEY" in str(result):
                    raise BackupError(f"key {show(key)!r} appeared in the target during the restore; "
                                      "run again with --replace to overwrite it")
                raise BackupError(f"RESTORE of key {show(key)!r} failed: {result}")
            counts.restored += 1


# -- commands ----------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, out=sys.stdout) -> int:
    bucket = bucket_from_args(args)
    s3 = s3_client(args.region)
    sets = group_sets(list_objects(s3, bucket))
    if not sets:
        print(f"no snapshot sets in s3://{bucket}/{BACKUP_PREFIX}", file=out)
        return 0
    print(f"{'TAKEN AT (UTC)':<18} {'MASTERS':>7} {'KEYS':>10} {'SLOTS':>11} {'MB':>9}  NOTES", file=out)
    for taken_at, snapshot_set in sets.items():
        load_manifests(s3, bucket, snapshot_set)
        done = snapshot_set.complete_snapshots
        covered, overlaps = coverage(done)
        cluster = any(s.manifest and s.manifest.get("cluster") for s in done)
        notes = []
        if len(done) < len(snapshot_set.snapshots):
            notes.append(f"{len(snapshot_set.snapshots) - len(done)} incomplete upload(s) ignored")
        if overlaps:
            notes.append(f"{len(overlaps)} slot(s) in two snapshots")
        for server, writers in claimed_twice(done).items():
            notes.append(f"{server} uploaded by {len(writers)} instances: {', '.join(writers)}")
        for writer, names in two_names(done).items():
            notes.append(f"{writer} uploaded as {', '.join(names)}")
        keys = sum(int((s.manifest or {}).get("keys", 0)) for s in done)
        size = sum(s.rdb_size for s in done) / 1e6
        slots = f"{covered}/{SLOTS}" if cluster else "single"
        print(f"{taken_at:<18} {len(done):>7} {keys:>10} {slots:>11} {size:>9.1f}  {'; '.join(notes)}", file=out)
    return 0


def cmd_restore(args: argparse.Namespace, out=sys.stdout) -> int:
    binary = args.redis_server or shutil.which("redis-server")
    if not binary:
        raise BackupError("no redis-server on PATH: give --redis-server PATH (the version the snapshots were taken "
                          "with, or one between it and the target's)")
    if not os.access(binary, os.X_OK):
        raise BackupError(f"--redis-server {binary}: not an executable file")
    local_version = redis_server_version(binary)
    bucket = bucket_from_args(args)
    s3 = s3_client(args.region)
    sets = group_sets(list_objects(s3, bucket))
    if args.taken_at not in sets:
        raise BackupError(f"--taken-at {args.taken_at}: no such snapshot set in s3://{bucket} "
                          f"(`list` shows them; newest: {next(reversed(sets), 'none')})")
    snapshot_set = sets[args.taken_at]
    load_manifests(s3, bucket, snapshot_set)
    ignored = {"" if w == LEGACY else w for w in args.ignore_writer or ()}
    for flag, given in (("--ignore-writer", ignored), ("--trust-writer", set(args.trust_writer or ()))):
        unknown = given - {s.writer for s in snapshot_set.snapshots}
        if unknown:
            raise BackupError(f"{flag} {sorted(unknown)[0] or LEGACY}: no snapshot of this set was uploaded by it")
    snapshots = [s for s in snapshot_set.complete_snapshots if s.writer not in ignored]
    if not snapshot_set.complete_snapshots:
        raise BackupError(f"--taken-at {args.taken_at}: every upload of this set is incomplete (no manifest)")
    if not snapshots:
        raise BackupError(f"--ignore-writer: leaves nothing of the set {args.taken_at} to restore")
    problems = [f"{writer} uploaded as {' and '.join(names)} (a server names only itself): leave it out with "
                f"--ignore-writer {writer}" for writer, names in two_names(snapshots).items()]
    problems += [f"{server}'s snapshots were uploaded by more than one instance ({', '.join(writers)}): find the "
                 "server's own instance id (EC2, its Name tag), then leave the others out with --ignore-writer"
                 for server, writers in claimed_twice(snapshots).items()]
    trusted = set(args.trust_writer or ())
    if not problems:
        writers = {instance_of(s.writer) for s in snapshots if s.writer and s.writer not in trusted}
        problems = unverified(snapshots, instance_tags(args.region, writers) if writers else {}, args.stack, trusted)
    if problems:
        raise BackupError(f"--taken-at {args.taken_at}: " + "; ".join(problems) + " (or restore another set)")
    covered, overlaps = coverage(snapshots)
    if overlaps:
        slot, a, b = overlaps[0]
        raise BackupError(f"--taken-at {args.taken_at}: slot {slot} is in the snapshots of both {a} and {b} "
                          "(roles changed during the backup): restore another set")
    cluster_set = any(s.manifest and s.manifest.get("cluster") for s in snapshots)
    if cluster_set and covered < SLOTS and not args.allow_partial:
        raise BackupError(f"--taken-at {args.taken_at}: its snapshots cover {covered} of {SLOTS} slots (a master's "
                          "backup failed that hour); restore another set, or pass --allow-partial")

    tls = {"ssl": True, "ssl_ca_certs": args.cacert} if args.tls else {}
    target, target_version, target_cluster = connect_target(args.target, os.environ.get(PASSWORD_ENV) or None, tls)
    check_versions(local_version, [str((s.manifest or {}).get("redis_version", "0.0")) for s in snapshots],
                   target_version)
    print(f"restoring snapshot set {args.taken_at} ({len(snapshots)} snapshot(s)) into "
          f"{'the cluster at ' if target_cluster else ''}{args.target} (Redis {target_version}) "
          f"through redis-server {local_version}", file=out)

    work = Path(tempfile.mkdtemp(prefix="osr-restore-", dir=args.work_dir))  # 0700: sessions inside
    try:
        files = {}
        for snap in snapshots:
            d = work / f"{snap.server}-{snap.port}"
            d.mkdir(mode=0o700)
            files[snap.name] = d / "dump.rdb"
            s3.download_file(bucket, snap.rdb_key, str(files[snap.name]))
        counts = {snap.name: Counts() for snap in snapshots}
        if not args.replace:
            # Nothing is written until every key is known to be new.
            for snap in snapshots:
                local = LocalServer(binary, files[snap.name], args.load_timeout)
                try:
                    find_existing(local, target, slots_of(snap), counts[snap.name])
                finally:
                    local.stop()
            existing = [k for c in counts.values() for k in c.existing]
            if existing:
                raise BackupError(f"the target already holds {len(existing)} of the set's keys, e.g. "
                                  f"{show(existing[0])!r}; nothing was written: pass --replace to overwrite them")
        for snap in snapshots:
            local = LocalServer(binary, files[snap.name], args.load_timeout)
            try:
                copy_keys(local, target, slots_of(snap), args.replace, counts[snap.name])
            finally:
                local.stop()
            c = counts[snap.name]
            print(f"  {snap.name}: {c.restored} key(s) restored, {c.expired} expired (skipped)"
                  + (f", {c.outside_slots} outside the slots its master held (skipped)" if c.outside_slots else ""),
                  file=out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        target.close()
    total = sum(c.restored for c in counts.values())
    print(f"restored {total} key(s) from snapshot set {args.taken_at}", file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m outsystems_redis.tools.backup", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples (AWS credentials for the stack's account):\n"
               "  python -m outsystems_redis.tools.backup list --stack prod\n"
               "  REDIS_PASSWORD=... python -m outsystems_redis.tools.backup restore --stack prod \\\n"
               "      --taken-at 20260101T030000Z --target 172.31.129.10:7000\n"
               "exit codes: 0 done, 2 refused or bad input (the message says why)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("list", "the snapshot sets in the bucket"), ("restore", "restore one snapshot set")):
        c = sub.add_parser(name, help=text)
        where = c.add_mutually_exclusive_group()
        where.add_argument("--bucket", help="the stack's backup bucket's name")
        where.add_argument("--stack", type=stack_argument, help="the Pulumi stack: its bucket's name is read from SSM")
        c.add_argument("--region", help="the stack's AWS region (default: the AWS CLI/SDK configuration)")
        if name == "restore":
            c.add_argument("--taken-at", required=True, metavar="YYYYMMDDTHHMMSSZ",
                           help="the snapshot set (a TAKEN AT of `list`)")
            c.add_argument("--target", required=True, metavar="HOST:PORT",
                           help=f"one Redis process of the target cluster or server (password: ${PASSWORD_ENV})")
            c.add_argument("--replace", action="store_true", help="overwrite keys the target already holds")
            c.add_argument("--ignore-writer", action="append", metavar="ROLE_ID:INSTANCE_ID",
                           help="leave out what this instance uploaded (repeatable): when two instances "
                                "uploaded under one server's name, or one that is not that server")
            c.add_argument("--trust-writer", action="append", metavar="ROLE_ID:INSTANCE_ID",
                           help="take this instance's uploads for the server they name without asking EC2 "
                                "(repeatable): a server replaced since, which EC2 no longer knows")
            c.add_argument("--allow-partial", action="store_true",
                           help="restore a set that does not cover every slot")
            c.add_argument("--redis-server", metavar="PATH", help="the redis-server that loads the RDB files "
                           "(default: from PATH)")
            c.add_argument("--load-timeout", type=float, default=600, metavar="SECONDS",
                           help="how long one RDB may take to load (default 600)")
            c.add_argument("--work-dir", help="where the RDB files are downloaded (default: the system's temp dir)")
            c.add_argument("--tls", action="store_true", help="the target speaks TLS (the `tls` stack key)")
            c.add_argument("--cacert", metavar="FILE", help="with --tls: the CA file (the caCertificate output)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return cmd_list(args) if args.command == "list" else cmd_restore(args)
    except BackupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from outsystems_redis.tools.cli import exit_with

    exit_with(main)
