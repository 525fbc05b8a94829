"""Scale-out timing: 3 -> 4 servers while the session workload runs.

On a running, filled ours-prod cluster (the shipped files and bootstrap):

1. the open-loop session workload starts in the background at the same offered
   rate as the open-loop runs, with a per-request timeline (scheduled start,
   latency; time of every error and of every read that found no session);
2. after `baseline_s` of it, `Loopback.add_servers(1)` starts server 4 with its
   rendered files and runs the shipped join script (add-node, crossed ring
   re-linked, `redis-cli --cluster rebalance`), exactly as its first boot on EC2;
3. a poller reads CLUSTER NODES every POLL_S to see when slots start and stop
   moving to the new master;
4. the workload runs `after_s` more, then stops.

The generator follows MOVED and ASK as a cluster client does (counted as
redirects), so "errors" are what a client would have surfaced.

Phases of the timeline: *before* (the load before the join starts), *join*
(the whole join script, from start to exit), *move* (first to last poll that saw
slots moving: the rebalance proper), *after* (after the script exits).
"""

from __future__ import annotations

import array
import threading
import time
from bisect import bisect_left, bisect_right

import redis

from benchmarks.topologies import CLK_TCK, BenchLoopback, MachineCpu
from benchmarks.workload import SLOTS, LoadRun, LoadSpec, percentile

POLL_S = 0.1


def _cluster_nodes(lo: BenchLoopback) -> list[dict]:
    """CLUSTER NODES of the first live original master: address, master?, slots owned, any slot open."""
    for p in lo.topology.masters[:3]:
        try:
            # redis-py parses it: {"host:port": {"flags", "slots": [[a, b] | [a]], "migrations": [...]}}.
            parsed = lo.client(p, socket_timeout=1).execute_command("CLUSTER NODES")
        except redis.RedisError:
            continue
        return [{"address": address.split("@")[0], "master": "master" in node["flags"],
                 "slots": sum(int(r[-1]) - int(r[0]) + 1 for r in node["slots"]),
                 "open": bool(node["migrations"])}
                for address, node in parsed.items()]
    return []


class _Poller(threading.Thread):
    """(wall time, slots of `address`, any slot open) every POLL_S until stopped."""

    def __init__(self, lo: BenchLoopback, address: str) -> None:
        super().__init__(daemon=True)
        self.lo, self.address = lo, address
        self.samples: list[tuple[float, int, bool]] = []
        self.cpu: list[tuple[float, list[int]]] = []  # (wall time, /proc/stat jiffies): machine busy per phase
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.cpu.append((time.time(), MachineCpu._read()))
            nodes = _cluster_nodes(self.lo)
            if nodes:
                mine = next((n["slots"] for n in nodes if n["address"] == self.address), 0)
                self.samples.append((time.time(), mine, any(n["open"] for n in nodes)))
            self.halt.wait(POLL_S)


def _busy_pct(cpu: list[tuple[float, list[int]]], t0: float, t1: float) -> float | None:
    """Whole-machine busy % (100 = one core) between the samples nearest t0 and t1."""
    inside = [(t, v) for t, v in cpu if t0 <= t <= t1]
    if len(inside) < 2:
        return None
    (ta, a), (tb, b) = inside[0], inside[-1]
    d = [y - x for x, y in zip(a, b, strict=False)]
    return round(100 * (sum(d[:8]) - d[3] - d[4]) / CLK_TCK / (tb - ta), 1)


def _phase(tl: dict, t0: float, t1: float) -> dict:
    """Requests scheduled in [t0, t1): count, req/s, latency percentiles, errors, misses."""
    starts, lats = tl["starts"], tl["latencies"]
    # Timeline entries arrive per worker: sort once by start (cached on the dict).
    if "_order" not in tl:
        order = sorted(range(len(starts)), key=starts.__getitem__)
        tl["_order"] = (array.array("d", (starts[i] for i in order)), array.array("d", (lats[i] for i in order)),
                        sorted(tl["error_times"]), sorted(tl["miss_times"]))
    s, la, errs, misses = tl["_order"]
    lo_i, hi_i = bisect_left(s, t0), bisect_left(s, t1)
    sel = sorted(la[lo_i:hi_i])
    wall = max(t1 - t0, 1e-9)
    return {
        "seconds": round(t1 - t0, 2),
        "requests": len(sel),
        "achieved_rps": len(sel) / wall,
        "p50_ms": percentile(sel, 50) * 1e3,
        "p99_ms": percentile(sel, 99) * 1e3,
        "p999_ms": percentile(sel, 99.9) * 1e3,
        "max_ms": (sel[-1] if sel else 0.0) * 1e3,
        "errors": bisect_left(errs, t1) - bisect_left(errs, t0),
        "misses": bisect_right(misses, t1) - bisect_left(misses, t0),
    }


def measure(lo: BenchLoopback, spec: LoadSpec, baseline_s: float = 5.0, after_s: float = 3.0,
            max_join_s: float = 600.0) -> dict:
    """Grow `lo` (a running, filled ours-prod) by one server under `spec`'s open-loop load; the figures.

    `spec.duration_s` is ignored: the load runs until `after_s` after the join ends
    (bounded by baseline_s + max_join_s + after_s).
    """
    from dataclasses import replace

    if not lo.topology.cluster or not spec.rate:
        raise ValueError("scale-out needs a cluster and an open-loop rate")
    servers_before = len(lo.topology.servers)
    next_host = lo.hosts[-1].rpartition(".")[0] + f".{int(lo.hosts[-1].rpartition('.')[2]) + 1}"
    new_master = f"{next_host}:{lo.topology.masters[0].port}"
    spec = replace(spec, duration_s=baseline_s + max_join_s + after_s, timeline=True)
    poller = _Poller(lo, new_master)
    load = LoadRun(spec).start()
    join_error, outputs = None, {}
    try:
        poller.start()
        time.sleep(max(0.0, load.started_at - time.time()) + baseline_s)
        join_t0 = time.time()
        try:
            outputs = lo.add_servers(1, wait_seconds=int(max_join_s // 3))
        except Exception as exc:  # noqa: BLE001  # recorded: the report says the join failed, and why
            join_error = str(exc)[-2000:]
        join_t1 = time.time()
        time.sleep(after_s)
    finally:
        load.stop()
        poller.halt.set()
        result = load.finish()
        poller.join(timeout=5)
    tl = result.pop("timeline")
    samples = poller.samples
    final = samples[-1][1] if samples else 0
    # The move: from the first poll that saw a slot open or owned by the new master, to the first
    # poll from which its slot count stayed at its final value with nothing open.
    moving = [t for t, n, open_ in samples if n > 0 or open_]
    move_t0 = moving[0] - POLL_S if moving else join_t1  # it started at most one poll earlier
    unsettled = [i for i, (_, n, open_) in enumerate(samples) if n != final or open_]
    settled_from = unsettled[-1] + 1 if unsettled else 0
    move_t1 = samples[settled_from][0] if settled_from < len(samples) else join_t1
    move_s = max(move_t1 - move_t0, POLL_S)
    keys_moved = 0
    try:
        new = next(p for p in lo.topology.masters if p.address == new_master)
        keys_moved = int(lo.client(new).dbsize())
    except (StopIteration, redis.RedisError):
        pass
    nodes = _cluster_nodes(lo)
    session_bytes = spec.data_bytes + spec.internal_bytes
    end = load.started_at + result["duration_s"]
    return {
        "servers_before": servers_before,
        "servers_after": len(lo.topology.servers),
        "new_master": new_master,
        "offered_rps": spec.rate,
        "join_error": join_error,
        "join_s": round(join_t1 - join_t0, 2),
        "move_s": round(move_s, 2),
        "slots_moved": final,
        "slots_per_s": final / move_s,
        "keys_moved": keys_moved,
        # Both keys of a session share a slot, so they move together: payload MB of the sessions moved.
        "mb_moved": keys_moved / 2 * session_bytes / 1e6,
        "mb_per_s_moved": keys_moved / 2 * session_bytes / 1e6 / move_s,
        "masters_after": sum(1 for n in nodes if n["master"] and n["slots"]),
        "slots_covered_after": sum(n["slots"] for n in nodes if n["master"]),
        "slots_total": SLOTS,
        "phases": {name: {**_phase(tl, a, b), "machine_busy_pct": _busy_pct(poller.cpu, a, b)}
                   for name, a, b in (("before", load.started_at, join_t0), ("join", join_t0, join_t1),
                                      ("move", move_t0, move_t0 + move_s), ("after", join_t1, end))},
        "redirects": result["redirects"],
        "errors": result["errors"],
        "error_kinds": result["error_kinds"],
        "misses": result["misses"],
        "join_log": [line for out in outputs.values() for line in out.splitlines()
                     if line.startswith("cluster-join:")][-20:],
    }
