"""Whole-server failover timing and session loss, on a loopback cluster of the shipped files.

One trial: two writers create new sessions on the victim server's master (one
with WAIT 1 after each session, one without), the whole server is SIGKILLed
(master and replica together), and the clock runs until every one of the 16384
slots is owned by a live master that accepts a write. Then every session a
writer had acknowledged before the kill is read back. Finally the server is
started again and the old master takes its role back (CLUSTER FAILOVER), so
every trial starts from the shipped placement.
"""

from __future__ import annotations

import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from benchmarks.topologies import BenchLoopback
from benchmarks.workload import SLOTS, session_keys

VICTIM = 1  # the second server, as in the rehearsal drill
RECOVERY_TIMEOUT = 60.0
# Redis lets a replica schedule a new election only 4 x cluster-node-timeout after its previous one
# (auth_retry_time), and a master vote about the same failed master only 2 x after its last vote. A kill
# inside that window measures the retry, not a failover: the next kill waits this long after the takeover.
RETRY_WINDOW_TIMEOUTS = 4


def wait_out_retry_window(last_takeover: float | None, node_timeout_ms: int) -> float:
    """Sleep until RETRY_WINDOW_TIMEOUTS x the node timeout + 1 s after `last_takeover` (monotonic); the wait, s."""
    if last_takeover is None:
        return 0.0
    wait = max(0.0, last_takeover + RETRY_WINDOW_TIMEOUTS * node_timeout_ms / 1000 + 1 - time.monotonic())
    time.sleep(wait)
    return wait


def takeover_time(result: dict) -> float | None:
    """When the trial's replica had taken over (monotonic): the kill + the time until every slot was writable."""
    return None if result["recover_s"] is None else result["killed_at"] + result["recover_s"]


def _client(host: str, port: int, password: str, timeout: float = 0.5, retry: bool = True,
            **tls: object) -> redis.Redis:
    """`tls`: the Loopback's tls_kwargs (empty when plain), so a TLS cluster is reached the same way.

    `retry=False`: no redis-py retries. Its default (3 retries of a connection error with an exponential
    backoff of up to 10 s) made a writer on the killed master sleep for seconds, and the probe only
    started after the writers had stopped: the clock then measured redis-py's backoff, not Redis.
    """
    extra = {} if retry else {"retry": Retry(NoBackoff(), 0)}
    return redis.Redis(host, port, password=password, socket_timeout=timeout, socket_connect_timeout=timeout,
                       **extra, **tls)


def slot_owners(lo: BenchLoopback, dead_host: str | None = None,
                retry: bool = True) -> dict[tuple[str, int], list[int]] | None:
    """{master: slots} from the first live node's CLUSTER SLOTS, or None if no node answers."""
    for p in lo.processes:
        if p.host == dead_host:
            continue
        c = _client(p.host, p.port, lo.password, retry=retry, **lo.tls_kwargs)
        try:
            reply = c.execute_command("CLUSTER SLOTS")
        except redis.RedisError:
            continue
        finally:
            c.close()
        owners: dict[tuple[str, int], list[int]] = {}
        for start, end, primary, *_ in reply:
            node = (primary[0].decode() if isinstance(primary[0], bytes) else primary[0], int(primary[1]))
            owners.setdefault(node, []).extend(range(int(start), int(end) + 1))
        return owners
    return None


def all_slots_writable(lo: BenchLoopback, dead_host: str, retry: bool = True) -> bool:
    owners = slot_owners(lo, dead_host, retry)
    if not owners or sum(len(s) for s in owners.values()) != SLOTS or any(h == dead_host for h, _ in owners):
        return False
    for (host, port), slots in owners.items():
        key = _key_in(set(slots))
        c = _client(host, port, lo.password, retry=retry, **lo.tls_kwargs)
        try:
            c.set(key, b"probe", ex=60)
        except redis.RedisError:
            return False
        finally:
            c.close()
    return True


def _key_in(slots: set[int]) -> str:
    n = 0
    while key_slot(f"{{failover-probe-{n}}}".encode()) not in slots:
        n += 1
    return f"{{failover-probe-{n}}}"


def _writer(lo: BenchLoopback, master: tuple[str, int], slots: set[int], start_sid: int, wait: bool,
            stop: threading.Event, acked: list[tuple[float, int]], retry: bool = True) -> None:
    """Write new sessions (only those the victim master owns) until `stop`; record (ack time, sid)."""
    c = _client(*master, lo.password, **lo.tls_kwargs, timeout=1.0, retry=retry)
    sid = start_sid
    payload = b"x" * 20480
    while not stop.is_set():
        sid += 1
        data, internal = session_keys(sid)
        if key_slot(data.encode()) not in slots:
            continue
        try:
            p = c.pipeline(transaction=False)
            p.set(data, payload, ex=3600)
            p.set(internal, b"i" * 256, ex=3600)
            p.execute()
            # WAIT 1: acknowledged only once a replica has the writes (100 ms cap, as a web request would).
            if wait and int(c.execute_command("WAIT", 1, 100)) < 1:
                continue
            acked.append((time.monotonic(), sid))
        except redis.RedisError:
            return  # the server is gone: the writer's window is over
        if len(acked) > 200_000:  # bounded whatever happens
            return


def trial(lo: BenchLoopback, window_s: float = 1.0, *, prompt_probe: bool = True) -> dict:
    """One kill of server VICTIM; the cluster is left restored to the shipped roles.

    `prompt_probe=False` is the probe as it was before it was fixed (kept to measure before/after in one run):
    the writers' clients retry with redis-py's default backoff, and the probe starts only once both writers
    have stopped (up to 5 s each), so the clock included redis-py's backoff.
    """
    victim = lo.topology.servers[VICTIM]
    master = next((p.host, p.port) for p in victim.processes if p.role == "master")
    # Right after a restore, the node asked may not yet show the master's slots back: give
    # the cluster's view a few seconds to settle before calling the placement wrong.
    deadline = time.monotonic() + 10
    owners = slot_owners(lo)
    while (not owners or master not in owners) and time.monotonic() < deadline:
        time.sleep(0.5)
        owners = slot_owners(lo)
    if not owners or master not in owners:
        raise RuntimeError(f"{master} owns no slots before the trial: cluster not in its shipped placement")
    slots = set(owners[master])
    stop = threading.Event()
    acked_wait: list[tuple[float, int]] = []
    acked_nowait: list[tuple[float, int]] = []
    base = int(time.time() * 1000) * 1000  # fresh session ids for each trial
    retry = not prompt_probe
    writers = [threading.Thread(target=_writer, args=(lo, master, slots, base, True, stop, acked_wait, retry)),
               threading.Thread(target=_writer,
                                args=(lo, master, slots, base + 10**8, False, stop, acked_nowait, retry))]
    for w in writers:
        w.start()
    time.sleep(window_s)
    killed_at, killed_at_wall = time.monotonic(), time.time()  # wall clock: to match Redis's log timestamps
    lo.kill_server(VICTIM)
    stop.set()
    if not prompt_probe:
        for w in writers:
            w.join(timeout=5)
    recovered = None
    while time.monotonic() - killed_at < RECOVERY_TIMEOUT:
        if all_slots_writable(lo, victim.private_ip, retry):
            recovered = time.monotonic() - killed_at
            break
        time.sleep(0.05)
    for w in writers:  # stopped at the kill's first error (no retries when prompt)
        w.join(timeout=5)
    result = {"recover_s": recovered, "killed_at": killed_at, "killed_at_wall": killed_at_wall}
    for label, acked in (("wait", acked_wait), ("nowait", acked_nowait)):
        before = [sid for t, sid in acked if t <= killed_at]
        result[f"written_{label}"] = len(before)
        result[f"lost_{label}"] = _count_lost(lo, before, victim.private_ip) if recovered is not None else None
    try:
        restore(lo)
        result["restored"] = "CLUSTER FAILOVER"
    except RuntimeError:
        rebuild(lo)
        result["restored"] = "fresh cluster"
    return result


def _count_lost(lo: BenchLoopback, sids: list[int], dead_host: str) -> int:
    owners = slot_owners(lo, dead_host) or {}
    by_slot = {s: node for node, slots in owners.items() for s in slots}
    lost = 0
    conns: dict[tuple[str, int], redis.Redis] = {}
    for sid in sids:
        data, internal = session_keys(sid)
        node = by_slot[key_slot(data.encode())]
        c = conns.setdefault(node, _client(*node, lo.password, **lo.tls_kwargs, timeout=2.0))
        if c.exists(data, internal) != 2:
            lost += 1
    return lost


def restore(lo: BenchLoopback, timeout: float = 60.0) -> None:
    """Start the killed server again and give its master its slots back (the shipped placement)."""
    victim = lo.topology.servers[VICTIM]
    lo.start_server(VICTIM)
    old_master = next(p for p in victim.processes if p.role == "master")
    c = _client(old_master.host, old_master.port, lo.password, **lo.tls_kwargs, timeout=2.0)
    deadline = time.monotonic() + timeout
    asked = 0.0
    while time.monotonic() < deadline:
        try:
            info = c.info("replication")
            if info.get("role") == "master" and _healthy(lo):
                return
            # A manual failover can be abandoned (replica not caught up in time): ask again every 8 s.
            if (info.get("role") == "slave" and info.get("master_link_status") == "up"
                    and time.monotonic() - asked > 8):
                c.execute_command("CLUSTER", "FAILOVER")
                asked = time.monotonic()
        except redis.RedisError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{old_master.address} did not take its slots back within {timeout:.0f}s")


def rebuild(lo: BenchLoopback) -> None:
    """The fallback when restore fails: a fresh cluster from the shipped files and bootstrap."""
    import shutil

    from benchmarks.topologies import bring_up, tear_down

    _ = lo.password  # keep it in memory across the wipe
    tear_down([lo])
    for server in lo.topology.servers:
        shutil.rmtree(lo.paths(server.index).data_root, ignore_errors=True)
    bring_up([lo])


def _healthy(lo: BenchLoopback) -> bool:
    """cluster_state ok everywhere and every replica linked: the next trial starts from a full cluster."""
    for p in lo.processes:
        try:
            c = _client(p.host, p.port, lo.password, **lo.tls_kwargs)
            if not _state_ok(c.execute_command("CLUSTER INFO")):
                return False
            info = c.info("replication")
            if p.role == "replica" and (info.get("role") != "slave" or info.get("master_link_status") != "up"):
                return False
            if p.role == "master" and info.get("role") != "master":
                return False
        except redis.RedisError:
            return False
    return True


def _state_ok(reply: object) -> bool:
    """cluster_state:ok, whether redis-py parsed CLUSTER INFO into a dict or left it as text."""
    if isinstance(reply, dict):
        state = reply.get("cluster_state", reply.get(b"cluster_state"))
        return state in ("ok", b"ok")
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return "cluster_state:ok" in text
