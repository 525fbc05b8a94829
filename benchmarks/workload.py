"""The OutSystems session workload and the load-generator processes that drive it.

A request is what a Platform Server front-end does with a session through the session provider
(outsystems_redis/tools/sessions.py; README "How front-ends use sessions"). A session is three keys under one hash
tag `{<guid>_<id>}`: `_Write_Lock`, `_Data` (a hash; one item of 20 KB by default) and `_Internal` (a hash
holding SessionTimeout). A request is two round trips, each one EVALSHA of the provider's scripts: at the
start of the page request, take the write lock and read the items (lock_and_get, which also resets the
expiry); at its end, write the items and release the lock (set_and_release). The scripts are loaded with
SCRIPT LOAD when a connection opens, as the provider's client does before its first EVALSHA.

`shape="plain"` is the workload the benchmarks ran before: GET of `_Data` and `_Internal` as strings in one
pipeline, SET of both with the timeout as TTL in another. It is kept so that one run can report both shapes
(benchmarks/shape.py).

Routing and the protocol are done here, not by redis-py: a slot -> node table
from CLUSTER SLOTS and one raw RESP socket per master with pre-encoded
commands. redis-py's pipelines cost several times more Python per request, and
the generator must stay cheap next to Redis on a 2-core machine.

MOVED and ASK are followed, as a cluster client does (StackExchange.Redis too),
and counted as redirects, not errors: they are what a slot move (scale-out)
looks like to a client. Any other error reply (CLUSTERDOWN, ...) or a connection
error counts as an error and reloads the slot table (failover). A held lock found by lock_and_get (another
request holds the session) counts as an error too: in these runs every request takes a session at random,
so two requests on one session at once are rare, and each one is a request the provider would retry.

TLS (`cafile`): the same sockets wrapped by `ssl`, verifying the server's
certificate against the CA, hostname check on (the certificates name the
loopback IPs as SANs).
"""

from __future__ import annotations

import array
import hashlib
import os
import random
import resource
import socket
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import redis
from redis.crc import key_slot

from outsystems_redis.tools.sessions import LOCK_TTL_SECONDS, SCRIPTS

SLOTS = 16384
MAX_REDIRECTS = 5  # as redis-py's cluster client; a loop of redirects beyond that is an error


def session_base(sid: int) -> str:
    """`{<guid>_<sessionid>}` as OutSystems names it; deterministic so every process agrees on the key space."""
    return f"{{{uuid.UUID(int=(sid * 0x9E3779B97F4A7C15) % (1 << 128))}_{sid:x}}}"


def session_keys(sid: int) -> tuple[str, str]:
    """(_Data, _Internal) of session `sid`."""
    base = session_base(sid)
    return base + "_Data", base + "_Internal"


def lock_key(sid: int) -> str:
    return session_base(sid) + "_Write_Lock"


SHAPES = ("provider", "plain")
# The provider's two scripts of a request, by SHA1 (what EVALSHA names them by).
LOCK_AND_GET = SCRIPTS["lock_and_get"].encode()
SET_AND_RELEASE = SCRIPTS["set_and_release"].encode()
_SHA = {script: hashlib.sha1(script).hexdigest().encode() for script in (LOCK_AND_GET, SET_AND_RELEASE)}
DATA_ITEM = b"Data"  # the one session item: what the page keeps in its session, serialized


def provider_requests(sid: int, lock_id: bytes, lock_ttl: bytes, timeout: bytes, data: bytes) -> tuple[bytes, bytes]:
    """A request's two EVALSHA commands: lock_and_get at its start, set_and_release at its end."""
    keys = (lock_key(sid).encode(), *(k.encode() for k in session_keys(sid)))
    return (encode(b"EVALSHA", _SHA[LOCK_AND_GET], b"3", *keys, lock_id, lock_ttl),
            encode(b"EVALSHA", _SHA[SET_AND_RELEASE], b"3", *keys, lock_id, timeout, b"0", DATA_ITEM, data))


class RespError(Exception):
    """An error reply from Redis (MOVED, CLUSTERDOWN, NOAUTH, ...)."""


class SessionConflict(RespError):
    """The provider's scripts answered, but another request held the session (LOCKED), or the request's lock
    was gone when it wrote (LOCKLOST). The node is fine: no reconnect."""


class RespConn:
    """A minimal RESP2 connection: pipelines of pre-encoded commands, replies parsed by hand."""

    def __init__(self, host: str, port: int, password: str, timeout: float, cafile: str | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if cafile:
            # Full verification: chain to the throwaway CA and the IP as SAN, as a front-end would.
            sock = _tls_context(cafile).wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.rf = self.sock.makefile("rb", buffering=1 << 17)
        if password:
            (reply,) = self.pipeline(encode(b"AUTH", password.encode()), 1)
            if isinstance(reply, RespError):
                raise reply
        # Every node gets the provider's scripts before its first EVALSHA (a master promoted by a failover
        # is a new connection too, so it gets them then).
        for reply in self.pipeline(b"".join(encode(b"SCRIPT", b"LOAD", script) for script in _SHA), len(_SHA)):
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


_TLS_CONTEXTS: dict[str, ssl.SSLContext] = {}


def _tls_context(cafile: str) -> ssl.SSLContext:
    """One context per CA file and process (loading the CA is not free)."""
    ctx = _TLS_CONTEXTS.get(cafile)
    if ctx is None:
        ctx = _TLS_CONTEXTS[cafile] = ssl.create_default_context(cafile=cafile)
    return ctx


def tls_kwargs(cafile: str | None) -> dict:
    """redis-py arguments for the same TLS (empty when plain)."""
    return {"ssl": True, "ssl_ca_certs": cafile} if cafile else {}


def encode(*args: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Router:
    """Send a session's commands to the node that owns its slot (or to the one standalone server)."""

    def __init__(self, nodes: Sequence[tuple[str, int]], password: str, cluster: bool, timeout: float = 2.0,
                 cafile: str | None = None) -> None:
        self.nodes = list(nodes)
        self.password = password
        self.cluster = cluster
        self.timeout = timeout
        self.cafile = cafile
        self._conns: dict[tuple[str, int], RespConn] = {}
        self._slot_node: list[tuple[str, int]] = []
        self.refresh()

    def conn(self, node: tuple[str, int]) -> RespConn:
        c = self._conns.get(node)
        if c is None:
            c = RespConn(node[0], node[1], self.password, self.timeout, self.cafile)
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
                                    socket_connect_timeout=self.timeout,
                                    **tls_kwargs(self.cafile)).execute_command("CLUSTER SLOTS")
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

    def moved(self, slot: int, node: tuple[str, int]) -> None:
        """A MOVED reply: the slot has a new owner for good (a client updates its map)."""
        if self.cluster:
            self._slot_node[slot] = node

    def exchange(self, node: tuple[str, int], commands: list[bytes], redirects: dict[str, int]) -> list:
        """Send `commands` (one slot) to `node` in one pipeline; follow MOVED/ASK per command as a cluster
        client does, counting them in `redirects`. Other error replies are returned, not raised."""
        replies = self.conn(node).pipeline(b"".join(commands), len(commands))
        for _ in range(MAX_REDIRECTS):
            redo = [i for i, r in enumerate(replies)
                    if isinstance(r, RespError) and str(r).startswith(("MOVED ", "ASK "))]
            if not redo:
                break
            for i in redo:
                kind, slot, address = str(replies[i]).split()
                host, _, port = address.rpartition(":")
                target = (host, int(port))
                redirects[kind] = redirects.get(kind, 0) + 1
                if kind == "MOVED":
                    self.moved(int(slot), target)
                    replies[i] = self.conn(target).pipeline(commands[i], 1)[0]
                else:  # ASK: this one command, once, at the importing node, preceded by ASKING
                    replies[i] = self.conn(target).pipeline(encode(b"ASKING") + commands[i], 2)[1]
        return replies

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
    cafile: str | None = None  # TLS: the CA to verify the servers against; None = plain TCP
    timeline: bool = False  # keep each request's start time and every error's (scale-out phases)
    shape: str = "provider"  # SHAPES: the provider's scripts and hashes, or plain GET/SET strings (before)
    lock_ttl_s: int = LOCK_TTL_SECONDS
    first_session: int = 0  # sessions first_session .. first_session + keyspace - 1

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:  # here, not in the generator processes, which must never fail to report
            raise ValueError(f"LoadSpec.shape must be one of {SHAPES}, got {self.shape!r}")


@dataclass
class WorkerResult:
    requests: int = 0
    errors: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    cpu_s: float = 0.0  # the generator process's own user+sys CPU while it ran
    latencies: bytes = b""  # array('d') of seconds
    error_kinds: dict[str, int] = field(default_factory=dict)
    redirects: dict[str, int] = field(default_factory=dict)
    misses: int = 0  # reads that found no session (a session lost, or not yet where the client looked)
    elapsed_s: float = 0.0
    starts: bytes = b""  # timeline: array('d') of wall-clock scheduled starts, one per latency
    error_times: bytes = b""  # timeline: array('d') of wall-clock times of errors
    miss_times: bytes = b""  # timeline: array('d') of wall-clock times of misses


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _worker(spec: LoadSpec, index: int, ready, go, start_at, stop, out) -> None:
    """One generator process: wait for the common start, run until the deadline or `stop`, put a WorkerResult."""
    rng = random.Random(spec.seed * 1000 + index)
    data_value = os.urandom(spec.data_bytes)  # incompressible, as a serialized session roughly is
    internal_value = os.urandom(spec.internal_bytes)
    result = WorkerResult()
    kinds: dict[str, int] = {}
    redirects: dict[str, int] = {}
    lat, starts, error_times, miss_times = (array.array("d") for _ in range(4))
    try:
        router = Router(spec.nodes, spec.password, spec.cluster, cafile=spec.cafile)
        for node in set(router._slot_node):  # connect (and AUTH, TLS handshake) before the clock starts
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
    wall0 = start_at.value  # wall clock at t0: timeline entries are comparable across processes
    deadline = t0 + spec.duration_s
    interval = spec.processes / spec.rate if spec.rate else 0.0
    ttl = str(spec.ttl_s).encode()
    lock_ttl = str(spec.lock_ttl_s).encode()
    provider = spec.shape == "provider"
    offset = interval * index / spec.processes  # stagger the workers' schedules
    while time.perf_counter() < t0:
        time.sleep(min(0.01, max(0.0, t0 - time.perf_counter())))
    cpu0 = _cpu()
    i = 0
    next_stop_check = t0
    while i < spec.max_requests:
        now = time.perf_counter()
        if now >= deadline:
            break
        if now >= next_stop_check:  # a shared Event costs a lock: look every 50 ms, not every request
            if stop.is_set():
                deadline = now
                break
            next_stop_check = now + 0.05
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
        sid = spec.first_session + rng.randrange(spec.keyspace)
        data_key, internal_key = (k.encode() for k in session_keys(sid))
        node = router.node_for(data_key.decode())
        try:
            if provider:
                lock_id = b"%d-%d" % (index, i)
                start, end = provider_requests(sid, lock_id, lock_ttl, ttl, data_value)
                (got,) = router.exchange(node, [start], redirects)
                if isinstance(got, RespError):
                    raise got
                holder, items, _ = got
                if holder != lock_id:
                    raise SessionConflict("LOCKED another request holds the session")
                (written,) = router.exchange(node, [end], redirects)
                if isinstance(written, RespError):
                    raise written
                if written != 1:
                    raise SessionConflict("LOCKLOST the write lock was gone when the request wrote")
                missed = not items
                result.bytes_read += sum(len(v) for v in items[1::2])
                result.bytes_written += spec.data_bytes
            else:
                replies = router.exchange(node, [encode(b"GET", data_key), encode(b"GET", internal_key)],
                                          redirects)
                replies += router.exchange(node, [encode(b"SET", data_key, data_value, b"EX", ttl),
                                                  encode(b"SET", internal_key, internal_value, b"EX", ttl)],
                                           redirects)
                failed = [r for r in replies if isinstance(r, RespError)]
                if failed:
                    raise failed[0]
                missed = replies[0] is None
                result.bytes_read += sum(len(r) for r in replies[:2] if r is not None)
                result.bytes_written += spec.data_bytes + spec.internal_bytes
            if missed:
                result.misses += 1
                if spec.timeline:
                    miss_times.append(wall0 + intended - t0)
            lat.append(time.perf_counter() - intended)
            if spec.timeline:
                starts.append(wall0 + intended - t0)
            result.requests += 1
        except (RespError, OSError, ConnectionError) as exc:
            result.errors += 1
            if spec.timeline:
                error_times.append(wall0 + intended - t0)
            kind = str(exc).split(" ", 1)[0] if isinstance(exc, RespError) else type(exc).__name__
            kinds[kind] = kinds.get(kind, 0) + 1
            if not isinstance(exc, SessionConflict):
                router.drop(node)
                router.refresh()
                time.sleep(0.01)  # a dead node: don't spin on connection refused
    result.elapsed_s = min(time.perf_counter(), deadline) - t0
    result.cpu_s = _cpu() - cpu0
    result.latencies = lat.tobytes()
    result.starts, result.error_times, result.miss_times = starts.tobytes(), error_times.tobytes(), \
        miss_times.tobytes()
    result.error_kinds = kinds
    result.redirects = redirects
    router.close()
    out.put((index, asdict(result)))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def _doubles(raw: bytes) -> array.array:
    a = array.array("d")
    a.frombytes(raw)
    return a


class LoadRun:
    """`spec.processes` generator processes started together; `finish()` collects the merged figures.

    `start()` returns once every process is connected and the common start is set
    (`started_at`, wall clock); `stop()` ends the run early (the scale-out runs
    until the join is done); spec.duration_s stays the upper bound.
    """

    def __init__(self, spec: LoadSpec) -> None:
        import multiprocessing as mp

        self.spec = spec
        ctx = mp.get_context("spawn")  # no inherited sockets or locks from the parent
        self._ready, self._out = ctx.Queue(), ctx.Queue()
        self._go, self._stop = ctx.Event(), ctx.Event()
        self._start_at = ctx.Value("d", 0.0)
        self._procs = [ctx.Process(target=_worker,
                                   args=(spec, i, self._ready, self._go, self._start_at, self._stop, self._out),
                                   daemon=True)
                       for i in range(spec.processes)]
        self.started_at = 0.0

    def start(self) -> LoadRun:
        for p in self._procs:
            p.start()
        try:
            for _ in self._procs:
                self._ready.get(timeout=60)
        except BaseException:
            self._reap()
            raise
        self.started_at = self._start_at.value = time.time() + 0.2
        self._go.set()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _reap(self) -> None:
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()

    def finish(self) -> dict:
        """Wait for every process (at most the duration + 60 s) and merge their results."""
        try:
            left = self.spec.duration_s - (time.time() - self.started_at)
            results = [self._out.get(timeout=max(0.0, left) + 60)[1] for _ in self._procs]
        finally:
            self._stop.set()
            self._reap()
        return _merge(self.spec, results, self.started_at)


def run_load(spec: LoadSpec) -> dict:
    """Run `spec.processes` generator processes together for spec.duration_s; return the merged figures."""
    return LoadRun(spec).start().finish()


def _merge(spec: LoadSpec, results: list[dict], started_at: float) -> dict:
    lat = array.array("d")
    for r in results:
        lat.extend(_doubles(r["latencies"]))
    ordered = sorted(lat)
    requests = sum(r["requests"] for r in results)
    moved = sum(r["bytes_read"] + r["bytes_written"] for r in results)
    kinds: dict[str, int] = {}
    redirects: dict[str, int] = {}
    for r in results:
        for k, v in r["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
        for k, v in r["redirects"].items():
            redirects[k] = redirects.get(k, 0) + v
    # A run stopped early lasted as long as its longest worker; a full one, its duration.
    duration = max((r["elapsed_s"] for r in results), default=0.0) or spec.duration_s
    if duration >= spec.duration_s - 0.05:
        duration = spec.duration_s
    merged = {
        "loop": "open" if spec.rate else "closed",
        "generators": spec.processes,
        "offered_rps": spec.rate,
        "achieved_rps": requests / duration,
        "requests": requests,
        "errors": sum(r["errors"] for r in results),
        "error_kinds": kinds,
        "redirects": redirects,
        "misses": sum(r["misses"] for r in results),
        "tls": bool(spec.cafile),
        "mb_per_s": moved / duration / 1e6,
        "read_mb_per_s": sum(r["bytes_read"] for r in results) / duration / 1e6,
        "p50_ms": percentile(ordered, 50) * 1e3,
        "p99_ms": percentile(ordered, 99) * 1e3,
        "p999_ms": percentile(ordered, 99.9) * 1e3,
        "max_ms": (ordered[-1] if ordered else 0.0) * 1e3,
        "duration_s": duration,
        # 100% = one core busy. Summed over the generator processes.
        "generator_cpu_pct": 100 * sum(r["cpu_s"] for r in results) / duration,
    }
    if spec.timeline:
        # Not JSON: the caller (scale-out) cuts it into phases and drops it.
        starts, lats = array.array("d"), array.array("d")
        errs, misses = array.array("d"), array.array("d")
        for r in results:
            starts.extend(_doubles(r["starts"]))
            lats.extend(_doubles(r["latencies"]))
            errs.extend(_doubles(r["error_times"]))
            misses.extend(_doubles(r["miss_times"]))
        merged["timeline"] = {"started_at": started_at, "starts": starts, "latencies": lats,
                              "error_times": errs, "miss_times": misses}
    return merged


def prefill(nodes: Sequence[tuple[str, int]], password: str, cluster: bool, keyspace: int,
            data_bytes: int, internal_bytes: int, ttl_s: int = 3600, first: int = 0, batch: int = 200,
            cafile: str | None = None, shape: str = "provider") -> None:
    """Write sessions first..first+keyspace-1, so every read of the run finds a full session. In the provider's
    shape, as it creates a new session: set_and_release with no lock id (`internal_bytes` is then unused:
    _Internal holds the timeout)."""
    router = Router(nodes, password, cluster, cafile=cafile)
    data_value, internal_value = os.urandom(data_bytes), os.urandom(internal_bytes)
    try:
        pending: dict[tuple[str, int], list[int]] = {}
        for sid in range(first, first + keyspace):
            node = router.node_for(session_keys(sid)[0])
            pending.setdefault(node, []).append(sid)
            if len(pending[node]) >= batch:
                _write(router, node, pending.pop(node), data_value, internal_value, ttl_s, shape)
        for node, sids in pending.items():
            _write(router, node, sids, data_value, internal_value, ttl_s, shape)
    finally:
        router.close()


def _write(router: Router, node: tuple[str, int], sids: list[int], data: bytes, internal: bytes, ttl: int,
           shape: str) -> None:
    if shape == "provider":
        payload = b"".join(provider_requests(sid, b"", b"", str(ttl).encode(), data)[1] for sid in sids)
        replies = router.conn(node).pipeline(payload, len(sids))
    else:
        payload = b"".join(encode(b"SET", k.encode(), v, b"EX", str(ttl).encode())
                           for sid in sids for k, v in zip(session_keys(sid), (data, internal), strict=True))
        replies = router.conn(node).pipeline(payload, 2 * len(sids))
    failed = [r for r in replies if isinstance(r, RespError)]
    if failed:
        raise failed[0]
