"""The OutSystems session workload and the load-generator processes that drive it.

A request is what a Platform Server front-end does with a session: read
`{id}_Data` (20 KB by default) and `{id}_Internal` (small), which share one
hash tag, then write both back with the session timeout as TTL. The two reads
go in one pipeline and the two writes in another (StackExchange.Redis pipelines
commands to one slot; the read happens at the start of the page request and
the write at its end), so a request is two round trips.

Routing and the protocol are done here, not by redis-py: a slot -> node table
from CLUSTER SLOTS and one raw RESP socket per master with pre-encoded
commands. redis-py's pipelines cost several times more Python per request, and
the generator must stay cheap next to Redis on a 2-core machine. An error reply
(MOVED, CLUSTERDOWN, ...) or a connection error counts as an error and reloads
the slot table (failover).
"""

from __future__ import annotations

import array
import os
import random
import resource
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import redis
from redis.crc import key_slot

SLOTS = 16384


def session_base(sid: int) -> str:
    """`{<guid>_<sessionid>}` as OutSystems names it; deterministic so every process agrees on the key space."""
    return f"{{{uuid.UUID(int=(sid * 0x9E3779B97F4A7C15) % (1 << 128))}_{sid:x}}}"


def session_keys(sid: int) -> tuple[str, str]:
    base = session_base(sid)
    return base + "_Data", base + "_Internal"


class RespError(Exception):
    """An error reply from Redis (MOVED, CLUSTERDOWN, NOAUTH, ...)."""


class RespConn:
    """A minimal RESP2 connection: pipelines of pre-encoded commands, replies parsed by hand."""

    def __init__(self, host: str, port: int, password: str, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb", buffering=1 << 17)
        if password:
            (reply,) = self.pipeline(encode(b"AUTH", password.encode()), 1)
            if isinstance(reply, RespError):
                raise reply

    def pipeline(self, payload: bytes, replies: int) -> list:
        """Send pre-encoded commands in one write; read `replies` replies (error replies returned, not raised)."""
        self.sock.sendall(payload)
        return [self._read() for _ in range(replies)]

    def _read(self):
        line = self.rf.readline()
        if not line:
            raise ConnectionError("connection closed by Redis")
        kind, rest = line[:1], line[1:-2]
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.rf.read(n + 2)[:-2]
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b"*":
            return [self._read() for _ in range(int(rest))]
        raise ConnectionError(f"unexpected reply {line[:40]!r}")

    def close(self) -> None:
        try:
            self.rf.close()
            self.sock.close()
        except OSError:
            pass


def encode(*args: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Router:
    """Send a session's commands to the node that owns its slot (or to the one standalone server)."""

    def __init__(self, nodes: Sequence[tuple[str, int]], password: str, cluster: bool, timeout: float = 2.0) -> None:
        self.nodes = list(nodes)
        self.password = password
        self.cluster = cluster
        self.timeout = timeout
        self._conns: dict[tuple[str, int], RespConn] = {}
        self._slot_node: list[tuple[str, int]] = []
        self.refresh()

    def conn(self, node: tuple[str, int]) -> RespConn:
        c = self._conns.get(node)
        if c is None:
            c = RespConn(node[0], node[1], self.password, self.timeout)
            self._conns[node] = c
        return c

    def drop(self, node: tuple[str, int]) -> None:
        c = self._conns.pop(node, None)
        if c:
            c.close()

    def refresh(self) -> bool:
        """Reload the slot table from the first node that answers; False if none does."""
        if not self.cluster:
            self._slot_node = [self.nodes[0]]
            return True
        for node in self.nodes:
            try:
                slots = redis.Redis(node[0], node[1], password=self.password, socket_timeout=self.timeout,
                                    socket_connect_timeout=self.timeout).execute_command("CLUSTER SLOTS")
            except redis.RedisError:
                continue
            table: list[tuple[str, int]] = [("", 0)] * SLOTS
            # A plain client gets the raw reply: [[start, end, [host, port, id], replicas...], ...].
            for start, end, primary, *_ in slots:
                owner = (primary[0].decode() if isinstance(primary[0], bytes) else primary[0], int(primary[1]))
                for s in range(int(start), int(end) + 1):
                    table[s] = owner
            self._slot_node = table
            return True
        return False

    def node_for(self, key: str) -> tuple[str, int]:
        if not self.cluster:
            return self._slot_node[0]
        return self._slot_node[key_slot(key.encode())]

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()


@dataclass
class LoadSpec:
    nodes: list[tuple[str, int]]
    password: str
    cluster: bool
    keyspace: int
    duration_s: float
    data_bytes: int = 20 * 1024
    internal_bytes: int = 256
    ttl_s: int = 1200  # a 20-minute session timeout
    rate: float | None = None  # total offered req/s (open loop); None = closed loop, as fast as it goes
    processes: int = 4
    max_requests: int = 2_000_000  # hard stop per process, whatever the duration
    seed: int = 1


@dataclass
class WorkerResult:
    requests: int = 0
    errors: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    cpu_s: float = 0.0  # the generator process's own user+sys CPU while it ran
    latencies: bytes = b""  # array('d') of seconds
    error_kinds: dict[str, int] = field(default_factory=dict)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _worker(spec: LoadSpec, index: int, ready, go, start_at, out) -> None:
    """One generator process: wait for the common start, run, put a WorkerResult on `out`."""
    rng = random.Random(spec.seed * 1000 + index)
    data_value = os.urandom(spec.data_bytes)  # incompressible, as a serialized session roughly is
    internal_value = os.urandom(spec.internal_bytes)
    result = WorkerResult()
    kinds: dict[str, int] = {}
    lat = array.array("d")
    try:
        router = Router(spec.nodes, spec.password, spec.cluster)
        for node in set(router._slot_node):  # connect (and AUTH) before the clock starts
            router.conn(node)
    except Exception as exc:  # noqa: BLE001  # reported, not raised: the parent must never hang
        ready.put(index)
        go.wait(60)
        result.errors = 1
        result.error_kinds = {type(exc).__name__: 1}
        out.put((index, asdict(result)))
        return
    ready.put(index)
    go.wait(60)
    # Translate the shared wall-clock start into this process's perf_counter.
    t0 = time.perf_counter() + max(0.0, start_at.value - time.time())
    deadline = t0 + spec.duration_s
    interval = spec.processes / spec.rate if spec.rate else 0.0
    ttl = str(spec.ttl_s).encode()
    offset = interval * index / spec.processes  # stagger the workers' schedules
    while time.perf_counter() < t0:
        time.sleep(min(0.01, max(0.0, t0 - time.perf_counter())))
    cpu0 = _cpu()
    i = 0
    while i < spec.max_requests:
        now = time.perf_counter()
        if now >= deadline:
            break
        if interval:
            # Open loop: latency counts from the scheduled arrival, so a slow
            # server shows up as latency, not as fewer samples.
            intended = t0 + offset + i * interval
            if intended >= deadline:
                break
            if intended > now:
                time.sleep(intended - now)
        else:
            intended = now
        i += 1
        data_key, internal_key = (k.encode() for k in session_keys(rng.randrange(spec.keyspace)))
        node = router.node_for(data_key.decode())
        try:
            c = router.conn(node)
            replies = c.pipeline(encode(b"GET", data_key) + encode(b"GET", internal_key), 2)
            replies += c.pipeline(encode(b"SET", data_key, data_value, b"EX", ttl)
                                  + encode(b"SET", internal_key, internal_value, b"EX", ttl), 2)
            failed = [r for r in replies if isinstance(r, RespError)]
            if failed:
                raise failed[0]
            result.bytes_read += sum(len(r) for r in replies[:2] if r is not None)
            result.bytes_written += spec.data_bytes + spec.internal_bytes
            lat.append(time.perf_counter() - intended)
            result.requests += 1
        except (RespError, OSError, ConnectionError) as exc:
            result.errors += 1
            kind = str(exc).split(" ", 1)[0] if isinstance(exc, RespError) else type(exc).__name__
            kinds[kind] = kinds.get(kind, 0) + 1
            router.drop(node)
            router.refresh()
            time.sleep(0.01)  # a dead node: don't spin on connection refused
    result.cpu_s = _cpu() - cpu0
    result.latencies = lat.tobytes()
    result.error_kinds = kinds
    router.close()
    out.put((index, asdict(result)))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def run_load(spec: LoadSpec) -> dict:
    """Run `spec.processes` generator processes together; return the merged figures of the run."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no inherited sockets or locks from the parent
    ready, out = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_worker, args=(spec, i, ready, go, start_at, out), daemon=True)
             for i in range(spec.processes)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        start_at.value = time.time() + 0.2
        go.set()
        results = [out.get(timeout=spec.duration_s + 60)[1] for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    lat = array.array("d")
    for r in results:
        part = array.array("d")
        part.frombytes(r["latencies"])
        lat.extend(part)
    ordered = sorted(lat)
    requests = sum(r["requests"] for r in results)
    moved = sum(r["bytes_read"] + r["bytes_written"] for r in results)
    kinds: dict[str, int] = {}
    for r in results:
        for k, v in r["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    return {
        "loop": "open" if spec.rate else "closed",
        "generators": spec.processes,
        "offered_rps": spec.rate,
        "achieved_rps": requests / spec.duration_s,
        "requests": requests,
        "errors": sum(r["errors"] for r in results),
        "error_kinds": kinds,
        "mb_per_s": moved / spec.duration_s / 1e6,
        "read_mb_per_s": sum(r["bytes_read"] for r in results) / spec.duration_s / 1e6,
        "p50_ms": percentile(ordered, 50) * 1e3,
        "p99_ms": percentile(ordered, 99) * 1e3,
        "p999_ms": percentile(ordered, 99.9) * 1e3,
        "max_ms": (ordered[-1] if ordered else 0.0) * 1e3,
        "duration_s": spec.duration_s,
        # 100% = one core busy. Summed over the generator processes.
        "generator_cpu_pct": 100 * sum(r["cpu_s"] for r in results) / spec.duration_s,
    }


def prefill(nodes: Sequence[tuple[str, int]], password: str, cluster: bool, keyspace: int,
            data_bytes: int, internal_bytes: int, ttl_s: int = 3600, first: int = 0, batch: int = 200) -> None:
    """Write sessions first..first+keyspace-1, so every read of the run finds a full session."""
    router = Router(nodes, password, cluster)
    data_value, internal_value = os.urandom(data_bytes), os.urandom(internal_bytes)
    try:
        pending: dict[tuple[str, int], list[int]] = {}
        for sid in range(first, first + keyspace):
            node = router.node_for(session_keys(sid)[0])
            pending.setdefault(node, []).append(sid)
            if len(pending[node]) >= batch:
                _write(router, node, pending.pop(node), data_value, internal_value, ttl_s)
        for node, sids in pending.items():
            _write(router, node, sids, data_value, internal_value, ttl_s)
    finally:
        router.close()


def _write(router: Router, node: tuple[str, int], sids: list[int], data: bytes, internal: bytes, ttl: int) -> None:
    payload = b"".join(encode(b"SET", k.encode(), v, b"EX", str(ttl).encode())
                       for sid in sids for k, v in zip(session_keys(sid), (data, internal), strict=True))
    replies = router.conn(node).pipeline(payload, 2 * len(sids))
    failed = [r for r in replies if isinstance(r, RespError)]
    if failed:
        raise failed[0]
