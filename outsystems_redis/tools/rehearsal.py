"""A stack's topology rehearsed on this machine, before touching AWS.

    python -m outsystems_redis.tools.rehearsal up|status|down|failover --stack dev|prod [--version 5.0|7.0] [--tls]
    python -m outsystems_redis.tools.rehearsal scale --servers N --stack prod
    python -m outsystems_redis.tools.rehearsal rotate-password [--grace SECONDS] | sync-password --stack dev|prod
    python -m outsystems_redis.tools.rehearsal maintain --stack prod
    python -m outsystems_redis.tools.rehearsal replace --server K --stack prod
    python -m outsystems_redis.tools.rehearsal crash --server K [--process master|replica] --stack prod

Server N of the stack (counted from 1) becomes 127.0.0.N, with the same rendered redis.conf
files and the same bootstrap script as the cloud-config (outsystems_redis.tools.loopback
does the remapping of addresses and paths). Everything lives under one state
directory (default .rehearsal/<stack>): configs, data, logs, pid files and the
password (mode 0600). `down` stops every process and removes that directory.

`failover` is the drill that matters: it kills one whole server, times how long
until every slot is served and writable again, checks that no acknowledged
session (written with WAIT 1) was lost, brings the server back and shows the
health verdict, which stays WARN until roles are rebalanced.

`crash --server K [--process master|replica]` kills one Redis process with SIGKILL (an OOM kill, a
segfault) after writing sessions through the session provider's scripts, some of them held by a write
lock, and restarts it after the RestartSec of the shipped unit, as systemd would. It prints how long
until every slot was writable again, the sessions lost (0 expected on a cluster) and the locks kept.

`scale --servers N` grows a running cluster the way raising `servers` does on
AWS: the new servers start with their rendered files and run the shipped join
script, all at once, while a client keeps writing and reading OutSystems-shaped
sessions. It prints the duration, the slots moved, the sessions checked and
the errors the client saw.

`replace --server K` (K counts from 1, as `replaceServers` and the server names do)
replaces server K the way `replaceServers` does on AWS, under a client writing
and reading 20 KB sessions: its processes are killed, its data dirs wiped (no
nodes.conf, no RDB), and once the cluster has failed over (a replacement takes
minutes to boot on EC2) it boots empty at its address through the units EC2
runs: redis-auth, its Redis processes, redis-cluster-join (and, on server 1,
redis-cluster-bootstrap). The join rejoins it by itself; the servers'
redis-role-restore (as their timers would) gives it its master role back. It
prints the sessions acknowledged and lost, the client's errors with their count
and duration, and the health report, which must be HEALTHY with no WARN within
REPLACE_TIMEOUT seconds of the kill.

`rotate-password` changes the password the way a new `redisPassword` (or a
re-generated one) does on AWS: a new 40-character password goes into the
rehearsal's Parameter Store, the shipped redis-password-sync runs on every
server at the same moment (as their timers do on the minute), and while a
client keeps writing and reading sessions it waits until every process takes
the new password, then prints the new connection string and the health
report. On Redis 7.0 the old password stays accepted for `--grace` seconds
(default 3600, as on AWS); `sync-password` (the timers' next run) after that
removes it. On Redis 5.0 the old password is refused by new connections at
once; open connections stay logged in.

`maintain` runs the rolling maintenance of outsystems_redis.tools.maintenance against the
rehearsal, its steps unchanged (a loopback runner stands in for SSM Run Command:
package commands are recorded, a reboot is the clean stop through the shipped
redis-step-down, then the boot's steps), while a client keeps writing and
reading 20 KB sessions. It prints the sessions lost, the errors the client saw
(count and when), and whether every server holds one master again.

`--tls` (Redis 7.0 only; on by itself when the stack file sets `tls: true`)
rehearses with TLS on: a throwaway CA and per-server certificates in the state
dir, the same TLS confs as EC2, and every client here trusting that CA.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.render.password import PASSWORD_GRACE_SECONDS
from outsystems_redis.render.redis_conf import has_users
from outsystems_redis.render.systemd import restart_seconds
from outsystems_redis.settings import Settings
from outsystems_redis.tools import health
from outsystems_redis.tools.cli import command_parser
from outsystems_redis.tools.loopback import Loopback, generate_password, loopback_hosts, platform_for
from outsystems_redis.tools.sessions import (
    PROVIDER_RETRY_BUDGET_MS,
    SessionStore,
    inspect,
    session_keys,
    session_tag,
    tag_of,
)
from outsystems_redis.tools.stack_file import read_settings, stack_argument
from outsystems_redis.topology import Process

STATE_FILE = "rehearsal.json"
SESSIONS = 200  # sessions written before a failover; enough to land on every master
HELD_LOCKS = 20  # crash: sessions whose write lock a request holds across the crash
ITEM_BYTES = 64  # the login item of the drills' sessions (SessionTraffic's carry SESSION_BYTES)
SESSION_BYTES = 20 * 1024  # the requirements page's session size
SESSION_TTL = 3600  # seconds: outlives any rehearsal, still expires by itself
KILLED_SERVER = 1  # the second server: its master's slots fail over to the replica on the first
RECOVERY_TIMEOUT = 60.0  # seconds; cluster-node-timeout is 5 s, failover normally takes 6-8 s
PASSWORD_SWITCH_TIMEOUT = 30.0  # seconds; the sync itself takes well under one
# Kill -> HEALTHY with no WARN for `replace`: failover (6-15 s) + rejoin (10-30 s) + role restore (2-10 s).
REPLACE_TIMEOUT = 120.0
REJOIN_WAIT_SECONDS = 90  # the join's own bound on each wait (WAIT_SECONDS)
# A master acknowledges a write before its replica has it (Redis replicates asynchronously, and the session
# provider does not WAIT), so a write acknowledged in the instant before a master's SIGKILL can die with it.
# On loopback the replica has it within milliseconds; a loss acknowledged earlier than this is a defect.
UNREPLICATED_WINDOW = 1.0  # seconds before the kill


# ---------------------------------------------------------------- state


def save_state(state_dir: Path, state: dict) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def load_loopback(state_dir: Path) -> Loopback | None:
    """The rehearsal recorded in `state_dir`, or None if there is none."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    settings = Settings(**{k: _tuples(v) for k, v in state["settings"].items()}) if "settings" in state else None
    return Loopback(state_dir, servers=state["servers"], platform=state["platform"], port=state["port"],
                    hosts=state["hosts"], memory_mib=state["memory_mib"], tls=state.get("tls", False),
                    make_room=True, settings=settings)


def settings_state(settings: Settings) -> dict:
    """The settings as the state file keeps them: JSON, without the password (the state file is not secret)."""
    return {k: v for k, v in dataclasses.asdict(settings).items() if k != "redis_password"}


def _tuples(value: object) -> object:
    """JSON's lists back into the tuples Settings holds (tags: a tuple of pairs)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def nodes_of(lo: Loopback) -> list[tuple[str, int]]:
    return [(p.host, p.port) for p in lo.processes]


def tls_of(lo: Loopback) -> health.Tls | None:
    """The health check trusts the rehearsal's throwaway CA, as front-ends trust the stack's."""
    return health.Tls(ca_file=str(lo.ca_file)) if lo.tls else None


def check(lo: Loopback, wait: float = 0) -> tuple[health.Facts, list[health.Finding]]:
    return health.run_check(nodes_of(lo), lo.password, lo.topology.cluster, lo.version, wait,
                            progress=lambda line: print("  " + line, flush=True), interval=1.0, tls=tls_of(lo))


# ---------------------------------------------------------------- commands


def up(lo: Loopback, stack: str) -> int:
    started = time.monotonic()
    print(f"rehearsal {stack}: {len(lo.topology.servers)} server(s), Redis {lo.version} "
          f"({lo.platform.name}){', TLS' if lo.tls else ''}, state in {lo.state_dir}")
    lo.start()
    print(f"started {len(lo.processes)} redis-server process(es): {', '.join(p.address for p in lo.processes)}")
    if lo.topology.cluster:
        print("running the shipped cluster bootstrap script ...", flush=True)
        with Ticker("forming the cluster"):
            log = lo.bootstrap()
        print("\n".join("  " + line for line in log.strip().splitlines()[-3:]))
    with Ticker("checking its health"):
        facts, findings = check(lo, wait=60)
    print(health.report(facts, findings))
    print(f"\nOutSystems connection string (server.hsconf <ConnectionString>):\n  "
          f"{lo.topology.connection_string(lo.password, lo.tls)}")
    if lo.tls:
        print(f"CA certificate the front-ends must trust (caCertificate on AWS):\n  {lo.ca_file}")
    print(f"up in {time.monotonic() - started:.1f}s")
    return health.exit_code(findings)


def status(lo: Loopback) -> int:
    running = lo.running()
    print(f"{len(running)} of {len(lo.processes)} processes running under {lo.state_dir}")
    facts, findings = check(lo)
    print(health.report(facts, findings))
    print(f"\nOutSystems connection string: {lo.topology.connection_string(lo.password, lo.tls)}")
    return health.exit_code(findings)


class Ticker:
    """Says every few seconds that a long step is still running (`with Ticker("joining"):`), so no wait is silent."""

    def __init__(self, what: str, every: float = 5.0) -> None:
        self.what, self.every = what, every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        started = time.monotonic()
        while not self._done.wait(self.every):
            print(f"  ... {self.what}: {time.monotonic() - started:.0f}s", flush=True)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def down(state_dir: Path) -> int:
    lo = load_loopback(state_dir)
    if lo is not None:
        print(f"stopping {len(lo.processes)} process(es) under {state_dir} (each hands its masters over first) ...",
              flush=True)
        with Ticker("stopping"):
            lo.stop()
        left = lo.running()
        if left:
            print(f"still running: {', '.join(p.address for p in left)}; state kept in {state_dir}")
            return 1
    if state_dir.exists():
        if lo is None and not (state_dir / "password").exists():
            # Refuse to delete a directory this tool did not create (a mistyped --state-dir).
            print(f"{state_dir} holds no rehearsal; not removing it")
            return 1
        shutil.rmtree(state_dir)
        print(f"stopped every process and removed {state_dir}")
    else:
        print(f"no rehearsal under {state_dir}")
    return 0


def _cluster_client(lo: Loopback, skip_server: int | None = None):
    from redis.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(p.host, p.port) for p in lo.processes if p.server != skip_server]
    return RedisCluster(startup_nodes=nodes, password=lo.password, decode_responses=True, socket_timeout=2,
                        socket_connect_timeout=2, **lo.tls_kwargs)


def _session_client(lo: Loopback):
    """What a front-end holds: a cluster client on prod, one connection's client on a single server."""
    return _cluster_client(lo) if lo.topology.cluster else lo.client(lo.processes[0])


def write_sessions(lo: Loopback, count: int, item_bytes: int = ITEM_BYTES) -> list[str]:
    """Write `count` sessions through the session provider's scripts (create, then a request that takes the
    write lock, writes and releases); return the _Data keys of those acknowledged.

    On a cluster "acknowledged" means the master answered and WAIT 1 confirmed a
    replica has it: the guarantee a crossed replica is there to keep.
    """
    acked = []
    client = _session_client(lo)
    store = SessionStore(client, timeout=SESSION_TTL)
    try:
        for _ in range(count):
            tag = session_tag()
            data = session_keys(tag)[1]
            store.create(tag, {"login": session_value(data)[:item_bytes]})
            if not store.write(tag, {"internal": internal_value(data)}):
                raise RuntimeError(f"session {tag}: its fresh write lock was held by another request")
            if lo.topology.cluster and int(client.execute_command(
                    "WAIT", 1, 2000, target_nodes=client.get_node_from_key(data))) < 1:
                continue
            acked.append(data)
    finally:
        client.close()
    return acked


def session_intact(store: SessionStore, data: str, item_bytes: int) -> bool:
    """The session of _Data key `data` holds what write_sessions/SessionTraffic wrote, with a TTL."""
    items, timeout = store.get(tag_of(data))
    return timeout > 0 and items == {"login": session_value(data)[:item_bytes], "internal": internal_value(data)}


def lost_sessions(lo: Loopback, keys: Sequence[str], skip_server: int | None = None,
                  item_bytes: int = ITEM_BYTES) -> int:
    client = _cluster_client(lo, skip_server) if lo.topology.cluster else lo.client(lo.processes[0])
    store = SessionStore(client, timeout=SESSION_TTL)
    try:
        return sum(not session_intact(store, data, item_bytes) for data in keys)
    finally:
        client.close()


def probe_keys(view: Sequence[health.ClusterNode]) -> dict[str, str]:
    """One key per master that owns slots, keyed by the master's id: writing them proves every master writable."""
    from redis.crc import key_slot

    result: dict[str, str] = {}
    for m in (n for n in view if n.is_master and n.slots):
        n = 0
        while m.id not in result:
            key = f"{{rehearsal-probe-{n}}}"
            if any(a <= key_slot(key.encode()) <= b for a, b in m.slots):
                result[m.id] = key
            n += 1
    return result


def slots_writable(lo: Loopback, dead_hosts: set[str]) -> bool:
    """True when all 16384 slots belong to masters that are up, off the dead server, and accept a write."""
    import redis

    for p in lo.processes:
        if p.host in dead_hosts:
            continue
        try:
            c = lo.client(p, socket_timeout=0.5)
            view = health.parse_cluster_nodes(c.execute_command("CLUSTER", "NODES"), p.host)
            c.close()
            break
        except redis.RedisError:
            continue
    else:
        return False
    masters = [m for m in view if m.is_master and m.slots]
    if sum(m.slot_count for m in masters) != health.SLOTS or any(m.failing or m.host in dead_hosts for m in masters):
        return False
    by_id = {m.id: m for m in masters}
    for master_id, key in probe_keys(masters).items():
        m = by_id[master_id]
        try:
            c = redis.Redis(m.host, m.port, password=lo.password, socket_timeout=0.5, decode_responses=True,
                            **lo.tls_kwargs)
            c.set(key, "probe", ex=60)
            c.close()
        except redis.RedisError:
            return False
    return True


def seconds_until_writable(lo: Loopback, dead_host: str, since: float) -> float | None:
    """Seconds from `since` until every slot is writable off `dead_host`; None after RECOVERY_TIMEOUT."""
    while time.monotonic() - since < RECOVERY_TIMEOUT:
        if slots_writable(lo, {dead_host}):
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def standalone_writable(lo: Loopback) -> bool:
    import redis

    try:
        c = lo.client(lo.processes[0], socket_timeout=0.5)
        c.set("{rehearsal-probe}", "probe", ex=60)
        c.close()
        return True
    except redis.RedisError:
        return False


def master_hosts(lo: Loopback) -> set[str]:
    """Hosts of the masters that own slots, as the first answering process sees the cluster."""
    import redis

    for p in lo.running():
        try:
            view = health.parse_cluster_nodes(lo.client(p).execute_command("CLUSTER", "NODES"), p.host)
        except redis.RedisError:
            continue
        return {m.host for m in view if m.is_master and m.slot_count and not m.failing}
    return set()


def pick_victim(lo: Loopback) -> int:
    """KILLED_SERVER when it holds a master; else the first server that does (a drill must cost a master)."""
    holding = master_hosts(lo)
    servers = lo.topology.servers
    order = [KILLED_SERVER] + [s.index for s in servers if s.index != KILLED_SERVER]
    for index in order:
        if servers[index].private_ip in holding:
            if index != KILLED_SERVER:
                print(f"server {servers[KILLED_SERVER].private_ip} holds no master (roles drifted): "
                      f"killing {servers[index].private_ip}, which does")
            return index
    print("NOTE: no server answers as a master holding slots; killing "
          f"{servers[KILLED_SERVER].private_ip} anyway, so this measures no master failover")
    return KILLED_SERVER


def restore_roles(lo: Loopback, timeout: float = RECOVERY_TIMEOUT) -> tuple[float | None, list[str]]:
    """Run the servers' redis-role-restore as their timers do (here every 2 s instead of every minute) until
    every server holds its master again; (seconds it took or None, what the scripts said)."""
    started, said = time.monotonic(), []
    while time.monotonic() - started < timeout:
        for _, (_, out) in sorted(lo.restore_roles().items()):
            said += [line for line in out.splitlines() if "CLUSTER FAILOVER" in line or "master again" in line]
        facts, findings = check(lo)
        if health.verdict(findings) == "healthy":
            return time.monotonic() - started, said
        time.sleep(2)
    return None, said


def failover(lo: Loopback) -> int:
    cluster = lo.topology.cluster
    victim = pick_victim(lo) if cluster else 0
    host = lo.topology.servers[victim].private_ip
    acked = write_sessions(lo, SESSIONS)
    print(f"wrote {SESSIONS} sessions ({{guid_sessionid}}_Data/_Internal), {len(acked)} acknowledged"
          + (" by a replica (WAIT 1)" if cluster else ""))
    print(f"killing server {host} (SIGKILL of {', '.join(p.address for p in lo.topology.servers[victim].processes)})")
    killed_at = time.monotonic()
    lo.kill_server(victim)
    recovered = None
    if cluster:
        recovered = seconds_until_writable(lo, host, killed_at)
        if recovered is None:
            print(f"NOT RECOVERED: slots still not all writable {RECOVERY_TIMEOUT:.0f}s after the kill")
        else:
            print(f"every slot served and writable again {recovered:.1f}s after the kill "
                  f"(cluster-node-timeout plus the replica's election)")
        lost = lost_sessions(lo, acked, skip_server=victim)
        print(f"acknowledged sessions lost: {lost} of {len(acked)}")
        print(f"bringing server {host} back ...")
        lo.start_server(victim)
        # On EC2 each server's redis-role-restore.timer does this every minute, with no command typed.
        took, said = restore_roles(lo)
        for line in said:
            print(f"  {line}")
        print(f"every server holds its master again {took:.1f}s after the restart (redis-role-restore)"
              if took is not None else f"roles still drifted {RECOVERY_TIMEOUT:.0f}s after the restart")
    else:
        print("a single non-production server has no replica: sessions are unavailable until it is back")
        lo.start_server(victim)
        while time.monotonic() - killed_at < RECOVERY_TIMEOUT:
            if standalone_writable(lo):
                recovered = time.monotonic() - killed_at
                break
            time.sleep(0.1)
        print(f"writable again {recovered:.1f}s after the kill (including the restart)" if recovered is not None
              else "NOT RECOVERED")
        lost = lost_sessions(lo, acked)
        print(f"sessions lost: {lost} of {len(acked)} (expected: no persistence and no replica on one server)")
    facts, findings = check(lo, wait=60)
    print(health.report(facts, findings))
    ok = recovered is not None and (not cluster or (lost == 0 and health.verdict(findings) == "healthy")) \
        and health.verdict(findings) != "unhealthy"
    return 0 if ok else 1


# ---------------------------------------------------------------- crash


def process_playing(lo: Loopback, index: int, role: str) -> Process:
    """The process of server `index` that is the master or the replica right now (INFO replication)."""
    import redis

    for p in lo.topology.servers[index].processes:
        try:
            info = lo.client(p).info("replication")
        except redis.RedisError:
            continue
        if (info.get("role") == "master") == (role == "master"):
            return p
    raise RuntimeError(f"server {index + 1} has no running {role} process (roles drifted or a process is down)")


ELECTION_NOTES = ("unable to failover", "its master is up", "Failover attempt expired", "Starting a failover")


def election_notes(lo: Loopback, last: int = 6) -> list[str]:
    """The last election lines of every running process's log (address: line)."""
    notes = []
    for p in lo.running():
        try:
            lines = lo.log_file(p).read_text(errors="replace").splitlines()
        except OSError:
            continue
        notes += [f"{p.address}: {line}" for line in lines if any(n in line for n in ELECTION_NOTES)]
    return notes[-last:]


def crash(lo: Loopback, index: int, role: str = "master") -> int:
    """kill -9 one Redis process; restart it after RestartSec, as the shipped unit does; count what was lost."""
    cluster = lo.topology.cluster
    process = process_playing(lo, index, role) if cluster else lo.processes[0]
    delay = restart_seconds(cluster)
    acked = write_sessions(lo, SESSIONS)
    client = _session_client(lo)
    store = SessionStore(client, timeout=SESSION_TTL)
    held = [h for h in (store.lock_and_get(tag_of(data)) for data in acked[:HELD_LOCKS]) if h is not None]
    if cluster:
        for h in held:
            client.execute_command("WAIT", 1, 2000, target_nodes=client.get_node_from_key(h.tag))
    client.close()
    print(f"wrote {len(acked)} sessions through the provider's scripts"
          + (" (each acknowledged by a replica, WAIT 1)" if cluster else "")
          + f"; {len(held)} of them held by a request's write lock")
    print(f"crash: SIGKILL of the {role if cluster else 'Redis'} process {process.address} on server {index + 1}; "
          f"systemd restarts it after RestartSec={delay}s (the shipped unit)")
    killed_at = time.monotonic()
    lo.kill_process(process)
    writable = None
    while time.monotonic() - killed_at < delay:
        if writable is None and (slots_writable(lo, set()) if cluster else standalone_writable(lo)):
            writable = time.monotonic() - killed_at
        time.sleep(0.1)
    lo.start_process(process)
    restarted = time.monotonic() - killed_at
    while writable is None and time.monotonic() - killed_at < RECOVERY_TIMEOUT:
        if slots_writable(lo, set()) if cluster else standalone_writable(lo):
            writable = time.monotonic() - killed_at
        time.sleep(0.1)
    if writable is None:
        print(f"NOT RECOVERED: not every slot writable {RECOVERY_TIMEOUT:.0f}s after the crash")
    else:
        where = ("it restarted" if not cluster or writable >= restarted
                 else "its replica took over" if role == "master" else "the masters kept serving")
        print(f"every slot writable again {writable:.1f}s after the crash ({where}); restarted at {restarted:.1f}s. "
              f"A request on that {'master' if cluster else 'server'} waits that long: the provider retries "
              f"for {PROVIDER_RETRY_BUDGET_MS} ms by default")
        if cluster and role == "master" and writable >= restarted:
            # Why the replica did not take over first, in Redis's own words (a denied or expired election).
            for line in election_notes(lo):
                print(f"  {line}")
    facts, findings = check(lo, wait=60)
    client = _session_client(lo)
    store = SessionStore(client, timeout=SESSION_TTL)
    lost = [data for data in acked if not session_intact(store, data, ITEM_BYTES)]
    half = sum(inspect(client, tag_of(data)).half for data in lost)
    kept = 0
    for h in held:
        state = inspect(client, h.tag)
        kept += state.lock == h.lock_id and store.set_and_release(h, {"page": "after the crash"})
    client.close()
    print(f"sessions lost: {len(lost)} of {len(acked)} ({half} half: one of _Data/_Internal gone)"
          + ("" if cluster else " (one server, no replica: what changed since its last snapshot, save 60 1)"))
    print(f"write locks kept: {kept} of {len(held)} (still held by their request, and its write went through)")
    if cluster:
        took, said = restore_roles(lo)
        for line in said:
            print(f"  {line}")
        print(f"every server holds its master again {took:.1f}s after the restart (redis-role-restore)"
              if took is not None else f"roles still drifted {RECOVERY_TIMEOUT:.0f}s after the restart")
        facts, findings = check(lo, wait=30)
    print(health.report(facts, findings))
    ok = writable is not None and health.verdict(findings) != "unhealthy"
    if cluster:
        ok = ok and not lost and kept == len(held)
    return 0 if ok else 1


# ---------------------------------------------------------------- scale-out


def session_value(data_key: str) -> str:
    """A session's 20 KB _Data, derived from its key so any reader can tell a wrong answer from a right one."""
    digest = hashlib.sha256(data_key.encode()).hexdigest()
    return (digest * (SESSION_BYTES // len(digest) + 1))[:SESSION_BYTES]


def internal_value(data_key: str) -> str:
    return "internal:" + hashlib.sha256(data_key.encode()).hexdigest()[:16]


class SessionTraffic:
    """A front-end's load: writes OutSystems-shaped sessions and reads back ones it wrote, in a thread.

    A session counts as acknowledged once both keys' SETs returned OK. Errors
    (exceptions the client gave up on) and wrong answers (a read of an
    acknowledged session that returned nothing or other content) are counted
    apart: a redirect the client followed (MOVED/ASK) is neither.
    Bounded: it stops on `stop()` or after `max_seconds`.
    """

    def __init__(self, lo: Loopback, *, pause: float = 0.005, max_seconds: float = 600) -> None:
        self.lo = lo
        self.pause = pause
        self.max_seconds = max_seconds
        self.acked: list[str] = []
        self.acked_at: dict[str, float] = {}  # _Data key -> when both its SETs were acknowledged
        self.writes = self.reads = 0
        self.errors: list[str] = []
        self.wrong: list[str] = []
        self.wrong_keys: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-traffic", daemon=True)

    def start(self) -> SessionTraffic:
        self._thread.start()
        return self

    def stop(self) -> SessionTraffic:
        self._stop.set()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise RuntimeError("the session traffic did not stop within 30 s")
        return self

    def _run(self) -> None:
        client = None
        rng = random.Random(7)
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    if client is None:
                        client = _session_client(self.lo)
                        store = SessionStore(client, timeout=SESSION_TTL)
                    self._one_request(store, rng)
                except Exception as exc:
                    # Not a Redis error the request counted: redis-py's cluster client can raise others
                    # (AttributeError) while the slot map changes under it. Counted, never a silently dead
                    # thread; a fresh client goes on, as a front-end's would after a reconnect.
                    self.errors.append(f"client: {type(exc).__name__}: {exc}")
                    if client is not None:
                        client.close()
                    client = None
                time.sleep(self.pause)
        finally:
            if client is not None:
                client.close()

    def _one_request(self, store: SessionStore, rng: random.Random) -> None:
        """A login (the provider creates the session, then the request writes it under its lock), and a read
        of an acknowledged session. Redis errors are counted here; anything else goes to _run."""
        import redis

        tag = session_tag()
        data = session_keys(tag)[1]
        try:
            store.create(tag, {"login": session_value(data)})
            if not store.write(tag, {"internal": internal_value(data)}):
                raise redis.RedisError("a new session's write lock was held by another request")
            self.acked.append(data)
            self.acked_at[data] = time.monotonic()
            self.writes += 1
        except redis.RedisError as exc:
            self.errors.append(f"write: {type(exc).__name__}: {exc}")
        if self.acked:
            key = rng.choice(self.acked)
            try:
                self.reads += 1
                if not session_intact(store, key, SESSION_BYTES):
                    self.wrong.append(f"{key}: read nothing or other content")
                    self.wrong_keys.append(key)
            except redis.RedisError as exc:
                self.errors.append(f"read: {type(exc).__name__}: {exc}")


def session_problems(lo: Loopback, keys: Sequence[str]) -> dict[str, str]:
    """Each session of `keys` that is not readable with its content and a TTL -> what is wrong with it."""
    client = _session_client(lo)
    store = SessionStore(client, timeout=SESSION_TTL)
    problems = {}
    try:
        for data in keys:
            if not session_intact(store, data, SESSION_BYTES):
                problems[data] = "missing or wrong content"
            elif client.ttl(data) <= 0:
                problems[data] = "lost its TTL"
    finally:
        client.close()
    return problems


def verify_sessions(lo: Loopback, keys: Sequence[str]) -> list[str]:
    """Every session in `keys` readable with its content and a TTL; returns what is wrong (empty when all are)."""
    return [f"{key}: {what}" for key, what in session_problems(lo, keys).items()]


def slot_owners(lo: Loopback) -> dict[int, str]:
    """slot -> node id of its master, as the first answering process sees it."""
    import redis

    for p in lo.running():
        try:
            view = health.parse_cluster_nodes(lo.client(p).execute_command("CLUSTER", "NODES"), p.host)
            break
        except redis.RedisError:
            continue
    else:
        return {}
    return {s: m.id for m in view if m.is_master for a, b in m.slots for s in range(a, b + 1)}


def scale(lo: Loopback, servers: int, state_dir: Path, wait_seconds: int = 300) -> int:
    current = len(lo.topology.servers)
    if not lo.topology.cluster:
        print("a single non-production server does not grow: deploy the prod stack instead")
        return 1
    if servers < current:
        print(f"refusing to shrink {current} -> {servers}: drain the server's slots and remove it deliberately "
              "(docs/operations.md: Growing the cluster)")
        return 1
    if servers == current:
        print(f"already {current} servers; nothing to add")
        return 0
    before = slot_owners(lo)
    traffic = SessionTraffic(lo).start()
    time.sleep(1)  # some sessions exist before the move starts
    started = time.monotonic()
    print(f"scaling {current} -> {servers} servers; new servers join at once, a client keeps writing "
          f"{SESSION_BYTES // 1024} KB sessions")
    try:
        joining = f"server {servers}" if servers == current + 1 else f"servers {current + 1} to {servers}"
        with Ticker(f"{joining} joining (rebalance moves slots under the client)"):
            outputs = lo.add_servers(servers - current, wait_seconds=wait_seconds)
    finally:
        duration = time.monotonic() - started
        traffic.stop()
        save_state(state_dir, {**json.loads((state_dir / STATE_FILE).read_text()),
                               "servers": len(lo.topology.servers), "hosts": lo.hosts,
                               "settings": settings_state(lo.settings)})
    for server, output in sorted(outputs.items()):
        print(f"server {server + 1} ({lo.topology.servers[server].private_ip}) join:")
        print("\n".join("  " + line for line in output.strip().splitlines() if line.startswith("cluster-join:")
                        and ("moved" in line or "done" in line or "now follows" in line)))
    after = slot_owners(lo)
    moved = sum(1 for s, owner in after.items() if before.get(s) != owner)
    problems = verify_sessions(lo, traffic.acked)
    print(f"duration: {duration:.1f}s; slots moved: {moved} of {health.SLOTS}")
    print(f"sessions checked: {len(traffic.acked)} (20 KB _Data + _Internal, written from 1 s before the move to "
          f"its end, {traffic.reads} reads during it), all readable with their content afterwards: "
          f"{'yes' if not problems else f'NO, {len(problems)} not'}")
    print(f"errors seen by the client: {len(traffic.errors)}; wrong answers: {len(traffic.wrong)}")
    for line in (traffic.errors + traffic.wrong + problems)[:5]:
        print(f"  {line}")
    facts, findings = check(lo, wait=60)
    print(health.report(facts, findings))
    ok = not problems and not traffic.wrong and health.verdict(findings) == "healthy"
    return 0 if ok else 1


# ---------------------------------------------------------------- replace


class _TimedErrors(list):
    """SessionTraffic's error list, with when each error happened (for the outage's duration)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: str) -> None:
        self.times.append(time.monotonic())
        super().append(item)


def write_session_store(lo: Loopback, count: int) -> list[str]:
    """`count` 20 KB sessions (content derived from the key), each acknowledged by a replica (WAIT 1)."""
    return write_sessions(lo, count, item_bytes=SESSION_BYTES)


def master_slots_on(lo: Loopback, host: str) -> set[int]:
    """The slots whose master runs on `host`, as its processes see them."""
    for p in lo.running():
        if p.host == host:
            view = health.parse_cluster_nodes(lo.client(p).execute_command("CLUSTER", "NODES"), p.host)
            return {s for m in view if m.is_master and m.host == host for a, b in m.slots for s in range(a, b + 1)}
    return set()


def in_flight_at_kill(lost: Sequence[str], acked_at: Mapping[str, float], slots: set[int], killed: tuple[float, float],
                      window: float = UNREPLICATED_WINDOW) -> set[str]:
    """The lost sessions that asynchronous replication explains: a master among `slots` acknowledged them from
    `window` seconds before the kill until the kill was done (`killed`: its start and end), so its replica may
    never have had them. Any other loss is a defect."""
    from redis.crc import key_slot

    start, end = killed
    return {data for data in lost
            if key_slot(data.encode()) in slots and start - window <= acked_at.get(data, -1e9) <= end}


def server_number(value: str, servers: int) -> int:
    """`--server K` (1..servers, as replaceServers and the server names count) -> the 0-based index."""
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"--server: a server number from 1 to {servers}, not {value!r}") from None
    if not 1 <= number <= servers:
        raise ValueError(f"--server: a server number from 1 to {servers} (they count from 1, as replaceServers "
                         f"does), not {number}")
    return number - 1


def replace(lo: Loopback, index: int) -> int:
    """Server `index` (0-based) replaced under live sessions; 0 when it rejoined by itself, HEALTHY with no
    WARN within REPLACE_TIMEOUT, and no acknowledged session lost."""
    if not lo.topology.cluster:
        print("a single non-production server has nothing to rejoin: replacing it loses its sessions")
        return 1
    facts, findings = check(lo)
    if health.verdict(findings) != "healthy":
        print(health.report(facts, findings))
        print("refusing to replace a server of a cluster that is not HEALTHY: fix it first")
        return 1
    server = lo.topology.servers[index]
    host = server.private_ip
    before = write_session_store(lo, SESSIONS)
    print(f"wrote {SESSIONS} sessions of {SESSION_BYTES // 1024} KB, {len(before)} acknowledged by a replica (WAIT 1)")
    traffic = SessionTraffic(lo)
    traffic.errors = errors = _TimedErrors()
    traffic.start()
    time.sleep(1)  # the client is busy before the server goes
    print(f"replacing server {index + 1} ({host}) under a client writing and reading {SESSION_BYTES // 1024} KB "
          "sessions: SIGKILL of its processes, nodes.conf and RDB wiped")
    victim_slots = master_slots_on(lo, host)
    killed_at = time.monotonic()
    healthy_at = failed_over = None
    try:
        lo.wipe_server(index)
        kill_done = time.monotonic()
        # On EC2 the replacement boots minutes later, long after the failover; booting before it would
        # hand the old master's address to an empty process that its replica then syncs from.
        failed_over = seconds_until_writable(lo, host, killed_at)
        if failed_over is None:
            print(f"NOT FAILED OVER: slots still not all writable {RECOVERY_TIMEOUT:.0f}s after the kill")
            return 1
        print(f"every slot served and writable again {failed_over:.1f}s after the kill (the failover)")
        units = " and ".join(["redis-cluster-bootstrap"] * (index == 0) + ["redis-cluster-join"])
        print(f"server {index + 1} boots empty at {host}: redis-auth, its Redis processes, then {units}")
        results = lo.boot_server(index, wait_seconds=REJOIN_WAIT_SECONDS)
        for name, (code, output) in sorted(results.items()):
            print(f"  {name} exit {code}")
            print("\n".join("    " + line for line in output.strip().splitlines()
                            if code != 0 or any(w in line for w in ("REJOIN", "forgetting", "replicates",
                                                                    "done", "not forming", "waiting"))))
        print(f"rejoined {time.monotonic() - killed_at:.1f}s after the kill; the servers' redis-role-restore runs "
              "as their timers do (every 2 s here, every minute on EC2)")
        took, said = restore_roles(lo, timeout=max(1.0, REPLACE_TIMEOUT - (time.monotonic() - killed_at)))
        for line in said:
            print(f"  {line}")
        if took is not None:
            healthy_at = time.monotonic() - killed_at
    finally:
        traffic.stop()
    facts, findings = check(lo)
    print(health.report(facts, findings))
    healthy = health.verdict(findings) == "healthy"
    print(f"HEALTHY with no WARN {healthy_at:.1f}s after the kill (bound {REPLACE_TIMEOUT:.0f}s)"
          if healthy and healthy_at is not None else f"NOT HEALTHY within {REPLACE_TIMEOUT:.0f}s of the kill")
    lost_before = verify_sessions(lo, before)
    problems = session_problems(lo, traffic.acked)
    in_flight = in_flight_at_kill(list(problems), traffic.acked_at, victim_slots, (killed_at, kill_done))
    lost_during = [f"{key}: {what}" for key, what in problems.items() if key not in in_flight]
    wrong = [line for line, key in zip(traffic.wrong, traffic.wrong_keys, strict=True) if key not in in_flight]
    print(f"sessions written before the replacement: {len(before)} acknowledged, lost: {len(lost_before)}")
    print(f"sessions written during it by the client: {len(traffic.acked)} acknowledged, lost: {len(lost_during)}; "
          f"{traffic.reads} reads, wrong answers: {len(wrong)}")
    if in_flight:
        print(f"  and {len(in_flight)} in flight at the kill: acknowledged by a master on server {index + 1} within "
              f"{UNREPLICATED_WINDOW:.0f} s before it, not yet on its replica (Redis replicates asynchronously and the "
              "session provider does not WAIT): lost with the master, as on EC2; "
              f"{len(traffic.wrong) - len(wrong)} wrong answers were reads of them")
    span = f" over {errors.times[-1] - errors.times[0]:.1f}s (from {errors.times[0] - killed_at:.1f}s after the " \
           "kill)" if errors.times else ""
    print(f"errors seen by the client: {len(errors)}{span}")
    for line in (errors[:3] + wrong[:3] + lost_before[:3] + lost_during[:3]):
        print(f"  {line}")
    ok = healthy and healthy_at is not None and not lost_before and not lost_during and not wrong \
        and all(code == 0 for code, _ in results.values())
    return 0 if ok else 1


# ---------------------------------------------------------------- password rotation


def password_takers(lo: Loopback, password: str) -> list[str]:
    """The processes that accept `password` on a new connection (a front-end's reconnect)."""
    return [p.address for p in lo.processes if lo.accepts(p, password)]


def _print_sync_logs(results: Mapping[int, tuple[int, str]], lo: Loopback) -> bool:
    ok = True
    for server, (code, output) in sorted(results.items()):
        lines = [line for line in output.strip().splitlines() if line]
        print(f"server {server + 1} ({lo.topology.servers[server].private_ip}): redis-password-sync exit {code}"
              + ("" if lines else ", nothing to do"))
        print("\n".join("  " + line for line in lines))
        ok = ok and code == 0
    return ok


def grace_ends(lo: Loopback) -> dict[str, int]:
    """Server IP -> the epoch until which its auth file keeps the previous password (Redis 7.0 grace)."""
    ends = {}
    for server in lo.topology.servers:
        for line in Path(lo.paths(server.index).auth_file).read_text().splitlines():
            words = line.split()
            if words[:2] == ["#", "previous-password-until"] and len(words) > 2 and words[2].isdigit():
                ends[server.private_ip] = int(words[2])
    return ends


def adopt_password(lo: Loopback, new: str, old: str | None, state_dir: Path) -> int:
    """Once every process takes `new` (bounded wait, the health check's own code): make it the rehearsal's
    password, and print the connection string and the health report. 0 when healthy with `new`.

    `old`: the password before a rotation, to say who still accepts it; None when unknown.
    """
    facts, findings = health.run_check(nodes_of(lo), new, lo.topology.cluster, lo.version,
                                       wait=PASSWORD_SWITCH_TIMEOUT, interval=0.5, tls=tls_of(lo))
    if health.verdict(findings) == "unhealthy":
        print(health.report(facts, findings))
        print(f"\nNOT SWITCHED within {PASSWORD_SWITCH_TIMEOUT:.0f}s: the Parameter Store holds the new password; "
              f"`sync-password` tries again (on AWS the timer does, every minute). State kept in {state_dir}")
        return 1
    lo.set_password(new)
    print(health.report(facts, findings))
    ends = grace_ends(lo)
    if old is not None and old != new:
        still = password_takers(lo, old)
        print(f"\nthe previous password: accepted by {len(still)} of {len(lo.processes)} processes on new "
              "connections; connections already open stay logged in")
    if ends:
        until = time.strftime("%H:%M:%S %Z", time.localtime(max(ends.values())))
        print(f"Redis 7.0 grace: the previous password stays accepted until {until} on {', '.join(sorted(ends))}; "
              "paste the new connection string into every front-end before then; `sync-password` after that "
              "removes it (on AWS the timer does, every minute)")
    else:
        print("no previous password is kept by any server: only the new one logs in")
    print(f"\nOutSystems connection string (server.hsconf <ConnectionString>):\n  "
          f"{lo.topology.connection_string(new, lo.tls)}")
    return health.exit_code(findings)


def rotate_password(lo: Loopback, state_dir: Path, grace: int) -> int:
    old, new = lo.password, generate_password()
    state = json.loads((state_dir / STATE_FILE).read_text())
    save_state(state_dir, {**state, "password_grace": grace})
    traffic = SessionTraffic(lo).start()
    time.sleep(1)  # sessions exist before the switch
    print(f"put a new {len(new)}-character password into the rehearsal's Parameter Store "
          "(pulumi up does this when redisPassword changes)")
    lo.ssm_put(new)
    started = time.monotonic()
    results = lo.sync_passwords(grace_seconds=grace)
    took = time.monotonic() - started
    print(f"ran the shipped redis-password-sync on every server at once ({took:.2f}s), as their timers "
          "do on the minute:")
    synced = _print_sync_logs(results, lo)
    time.sleep(1)  # traffic goes on after the switch, over the connections it opened with the old password
    traffic.stop()
    code = adopt_password(lo, new, old, state_dir)
    problems = verify_sessions(lo, traffic.acked) if code == 0 else []
    print(f"\nsessions written during the switch: {len(traffic.acked)} (20 KB), all readable with the new "
          f"password afterwards: {'yes' if not problems else f'NO, {len(problems)} not'}; "
          f"errors seen by the client: {len(traffic.errors)}; wrong answers: {len(traffic.wrong)}")
    for line in (traffic.errors + traffic.wrong + problems)[:5]:
        print(f"  {line}")
    return 0 if code == 0 and synced and not problems and not traffic.wrong else 1


def sync_password(lo: Loopback, state_dir: Path) -> int:
    """The timers' next run: applies a changed Parameter Store password, or ends a grace that is over."""
    state = json.loads((state_dir / STATE_FILE).read_text())
    old, new = lo.password, lo.ssm_value()
    results = lo.sync_passwords(grace_seconds=int(state.get("password_grace", PASSWORD_GRACE_SECONDS)))
    synced = _print_sync_logs(results, lo)
    if new is None:
        print("the rehearsal's Parameter Store holds no password")
        return 1
    code = adopt_password(lo, new, old if old != new else None, state_dir)
    return 0 if code == 0 and synced else 1


# ---------------------------------------------------------------- rolling maintenance


class _Stamped(list):
    """A list that also keeps when each item arrived (the client's errors, for their duration)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item) -> None:
        self.times.append(time.monotonic())
        super().append(item)


def error_windows(times: Sequence[float], gap: float = 1.0) -> list[tuple[float, float, int]]:
    """Error times -> (first, last, count) of each burst, bursts split by `gap` seconds without an error."""
    windows: list[tuple[float, float, int]] = []
    for t in sorted(times):
        if windows and t - windows[-1][1] <= gap:
            first, _, count = windows[-1]
            windows[-1] = (first, t, count + 1)
        else:
            windows.append((t, t, 1))
    return windows


def maintain(lo: Loopback, runner=None, timeouts=None) -> int:
    """`python -m outsystems_redis.tools.maintenance` against the rehearsal, under a live session workload."""
    from outsystems_redis.tools import maintenance

    if not lo.topology.cluster:
        print("a single non-production server has no replica to take its sessions during a reboot: "
              "rolling maintenance is for the prod stack")
        return 1
    runner = runner or maintenance.LoopbackRunner(lo)
    servers = maintenance.loopback_servers(lo)
    cluster = maintenance.Cluster(servers, lo.password, lo.version, tls_of(lo),
                                  say=lambda line: print(line, flush=True),
                                  timeouts=timeouts or maintenance.Timeouts(reboot=60, back=60, healthy=60),
                                  ops_password=lo.ops_secret if has_users(lo.platform) else None)
    traffic = SessionTraffic(lo, max_seconds=1800)
    traffic.errors = _Stamped()
    traffic.start()
    time.sleep(1)  # sessions exist before the first server moves
    started = time.monotonic()
    try:
        code = maintenance.run(servers, cluster, runner, lo.platform)
    finally:
        time.sleep(1)  # and go on after the last one
        traffic.stop()
    problems = verify_sessions(lo, traffic.acked)
    print(f"sessions written and read during maintenance: {len(traffic.acked)} written "
          f"({SESSION_BYTES // 1024} KB _Data + _Internal), {traffic.reads} reads; acknowledged sessions lost: "
          f"{len(problems)}; wrong answers: {len(traffic.wrong)}")
    windows = error_windows(traffic.errors.times)
    print(f"errors seen by the client: {len(traffic.errors)}"
          + "".join(f"\n  {count} between {a - started:.1f}s and {b - started:.1f}s ({b - a:.2f}s)"
                    for a, b, count in windows))
    for line in (list(traffic.errors) + traffic.wrong + problems)[:5]:
        print(f"  {line}")
    holding = master_hosts(lo)
    print(f"servers holding a master: {len(holding)} of {len(lo.topology.servers)}")
    ok = code == 0 and not problems and not traffic.wrong and holding == set(lo.hosts)
    return 0 if ok else 1


# ---------------------------------------------------------------- CLI


# Each verb, what it does, and an example: the --help text (docs/development.md: Rehearsing a stack before AWS).
VERBS = {
    "up": ("start the stack's servers as Redis processes, form the cluster, print the health report",
           "up --stack prod"),
    "status": ("the health report and the connection string of the running rehearsal", "status --stack prod"),
    "down": ("stop every process and remove the rehearsal's files", "down --stack prod"),
    "failover": ("kill one whole server under live sessions; time the failover, count sessions lost",
                 "failover --stack prod"),
    "crash": ("kill -9 one process; systemd's restart comes after its failover", "crash --server 2 --stack prod"),
    "scale": ("grow the running cluster, as raising `servers` does", "scale --servers 4 --stack prod"),
    "replace": ("wipe one server and let it rejoin by itself, as replaceServers does",
                "replace --server 2 --stack prod"),
    "rotate-password": ("change the password under live sessions, as pulumi up with a new redisPassword does",
                        "rotate-password --stack prod"),
    "sync-password": ("run each server's password sync again (ends the 7.0 grace)", "sync-password --stack prod"),
    "maintain": ("rolling OS/Redis maintenance, one server at a time", "maintain --stack prod"),
}


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m outsystems_redis.tools.rehearsal", "Rehearse a stack's Redis topology on loopback "
                       "(127.0.0.x).", VERBS, "Exit codes: 0 done, 1 failed, 2 bad usage.")
    p.add_argument("--stack", type=stack_argument, required=True,
                   help="the Pulumi stack whose Pulumi.<stack>.yaml to rehearse")
    p.add_argument("--version", choices=("5.0", "7.0"), help="the Redis line (default: the stack's platform)")
    p.add_argument("--state-dir", type=Path, help="where processes keep their files (default .rehearsal/<stack>)")
    p.add_argument("--config", type=Path, help="the stack file (default Pulumi.<stack>.yaml in the current directory)")
    p.add_argument("--host-prefix", default="127.0.0.",
                   help="loopback prefix of the servers (default 127.0.0.; server N is prefix + N, from 1)")
    p.add_argument("--servers", type=int, help="scale: the server count to grow the running cluster to")
    p.add_argument("--server", metavar="K",
                   help="replace, crash: the server, counted from 1 as replaceServers does (1 = redis-1)")
    p.add_argument("--process", choices=("master", "replica"), default="master",
                   help="crash: which of the server's two processes to kill (default: the master)")
    p.add_argument("--grace", type=int, default=PASSWORD_GRACE_SECONDS, metavar="SECONDS",
                   help=f"rotate-password: how long Redis 7.0 still accepts the old password "
                        f"(default {PASSWORD_GRACE_SECONDS}, as on AWS)")
    p.add_argument("--tls", action="store_true",
                   help="up: TLS on, as the `tls` stack key (Redis 7.0 only: with --version 7.0 or a 7.0 stack)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    state_dir = (args.state_dir or Path.cwd() / ".rehearsal" / args.stack).resolve()
    if args.command == "down":
        return down(state_dir)
    if args.command == "scale" and args.servers is None:
        parser.error("scale: give --servers N")
    if args.command in ("replace", "crash") and args.server is None:
        parser.error(f"{args.command}: give --server K (1 = the first server, as replaceServers counts)")
    if args.grace < 0:
        parser.error("--grace: 0 or more seconds")
    lo = load_loopback(state_dir)
    if args.command == "up" and lo is None:
        try:
            settings = read_settings(args.stack, args.config)
        except (OSError, ValueError) as exc:
            parser.error(f"stack {args.stack}: {exc}")
        platform = platform_for(args.version).name if args.version else settings.platform
        tls = args.tls or settings.tls
        if tls and not PLATFORMS[platform].supports_tls:
            parser.error(f"--tls needs Redis 7.0 ({platform} runs Redis {PLATFORMS[platform].redis_version}): "
                         "add --version 7.0")
        try:
            hosts = loopback_hosts(settings.servers, args.host_prefix)
        except ValueError as exc:
            parser.error(str(exc))
        save_state(state_dir, {"stack": args.stack, "servers": settings.servers, "platform": platform,
                               "port": settings.port, "hosts": hosts, "tls": tls,
                               # maxmemory as on the tier's minimum instance (no AWS here to ask for the real one)
                               "memory_mib": settings.minimums.memory_mib,
                               # The stack's settings whole (but the password), which the servers' files are
                               # rendered from: a setting that reaches them reaches the rehearsal's too.
                               "settings": settings_state(dataclasses.replace(settings, platform=platform, tls=tls))})
        lo = load_loopback(state_dir)
    if lo is None:
        print(f"no rehearsal of {args.stack} under {state_dir}: run `up` first")
        return 1
    if args.command == "up" and ((args.version and lo.version != platform_for(args.version).redis_version)
                                 or (args.tls and not lo.tls)):
        # An `up` that would silently keep the running rehearsal's Redis line or plain TCP is a mistake.
        wanted = f"Redis {args.version or lo.version}{' with TLS' if args.tls else ''}"
        print(f"a rehearsal of Redis {lo.version}{' with TLS' if lo.tls else ''} is already up under {state_dir}; "
              f"for {wanted}, run `down` first", file=sys.stderr)
        return 2
    try:
        if args.command == "up":
            return up(lo, args.stack)
        if args.command == "status":
            return status(lo)
        if args.command == "scale":
            return scale(lo, args.servers, state_dir)
        if args.command in ("replace", "crash"):
            try:
                index = server_number(args.server, len(lo.topology.servers))
            except ValueError as exc:
                parser.error(str(exc))
            return replace(lo, index) if args.command == "replace" else crash(lo, index, args.process)
        if args.command == "rotate-password":
            return rotate_password(lo, state_dir, args.grace)
        if args.command == "sync-password":
            return sync_password(lo, state_dir)
        if args.command == "maintain":
            return maintain(lo)
        return failover(lo)
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"rehearsal {args.command} failed: {exc}\n(state kept in {state_dir}; `down` cleans up)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from outsystems_redis.tools.cli import exit_with

    exit_with(main)
