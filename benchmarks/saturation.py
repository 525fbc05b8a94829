"""The session workload driven by a C client until Redis is the limit: `python -m benchmarks.saturation`.

Why: the Python generator of `make bench` is the bottleneck (BENCHMARKS.md, "Is the generator the
bottleneck?"), so its ours ÷ stock ratios compare generators as much as configurations. Here Debian's
`redis-benchmark` 7.0 (C; it speaks to Redis 5.0 too) drives the session's four operations:

    GET sess:{tag}:<n>_Data    MGET sess:{tag}:<n>_Internal
    SET sess:{tag}:<n>_Data <20480 B> EX 1200    SETEX sess:{tag}:<n>_Internal 1200 <256 B>

redis-benchmark runs one command per invocation, so a session is modelled as four redis-benchmark
processes (one per operation) started together, each with the same number of requests. What was checked
about its `--cluster` mode (7.0.15) before relying on it: a custom command is routed by its literal
`{tag}` placeholder, which each client replaces with the hash tag of ONE slot of the master it is attached
to (the same tag for all its requests, so all of a master's benchmark keys sit in one slot, and `_Data` and
`_Internal` of a session share it, as `{<guid>_<sid>}` does); the first key argument does not route. Every
`__rand_int__` of a command gets its own random number, so one command cannot name both keys of one session
(hence no single Lua EVAL doing the four operations on one random session). Sessions are `-r` random numbers
per master, pre-written (every session id of every master's tag) before the runs.

Throughput, Redis CPU and the request mix are taken over the window in which all four processes run (from
their start to the first one's exit), from the servers' own counters: INFO commandstats (GET and SET calls
on the masters; _Internal goes through MGET and SETEX so that each operation has its own counter) and
utime+stime of every redis-server from /proc/<pid>/stat. The small operations run faster, so that window
is not the session mix: sessions/s and Redis CPU per session are over the whole run instead (start to the
last exit: every operation done `-n` times, i.e. `-n` sessions of work), a conservative rate since the
tail runs fewer processes. p50/p99 are redis-benchmark's own (its CSV),
per command, over each process's whole run (with -P, a request's latency includes its pipeline).

Topologies: ours-prod, stock-prod, ours-dev (benchmarks.topologies) and stock-dev, made here: the dev
stack's single server with `stock_conf` (Redis's defaults but the addresses, paths and password).

Writes benchmarks/results/saturation.json and prints a Markdown table; `section()` is BENCHMARKS.md's part.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.topologies import (
    CLK_TCK,
    BenchLoopback,
    MachineCpu,
    bring_up,
    cpu_ticks,
    make_variant,
    stock_conf,
    tear_down,
)

REDIS_BENCHMARK = "/usr/bin/redis-benchmark"
RESULTS = Path(__file__).resolve().parent / "results" / "saturation.json"
DATA_BYTES = 20480  # the session's _Data value, as in benchmarks.workload
INTERNAL_BYTES = 256
TTL_S = 1200
SESSIONS = 20_000  # pre-written sessions over all masters, as in `make bench`
TOPOLOGIES = ("ours-prod", "stock-prod", "ours-dev", "stock-dev")
PAIRS = (("ours-prod", "stock-prod"), ("ours-dev", "stock-dev"))
OPS = ("GET _Data", "GET _Internal", "SET _Data", "SET _Internal")
KEY = "sess:{tag}:__rand_int__"  # redis-benchmark puts a hash tag for `{tag}` and a number for __rand_int__


def make_topology(name: str, version: str, state_root: Path, host_prefix: str) -> BenchLoopback:
    if name != "stock-dev":
        return make_variant(name, version, state_root, host_prefix)
    state = state_root / f"stock-dev-{version}"
    if state.exists():
        shutil.rmtree(state)
    return BenchLoopback(state, servers=1, version=version, port=6379, hosts=[f"{host_prefix}1"],
                         memory_mib=4 * 1024, conf_transform=stock_conf)


def base_command(lo: BenchLoopback, requests: int, clients: int, pipeline: int, keyspace: int) -> list[str]:
    host, port = lo.nodes[0]
    # redis-benchmark reads no password from the environment (REDISCLI_AUTH: NOAUTH), so -a it is: the
    # throwaway password of a loopback cluster made for this run, never a deployed one. Recorded elided.
    cmd = [REDIS_BENCHMARK, "-h", host, "-p", str(port), "-a", lo.password, "-n", str(requests),
           "-c", str(clients), "-P", str(pipeline), "-r", str(keyspace), "--csv"]
    if lo.topology.cluster:
        cmd.insert(1, "--cluster")
    return cmd


# One command name per operation, so that INFO commandstats counts each of the four apart: _Internal is read
# with a one-key MGET and written with SETEX (the same work as GET and SET ... EX; SETEX is what older
# StackExchange.Redis sends for a write with an expiry).
STAT = {"GET _Data": "get", "GET _Internal": "mget", "SET _Data": "set", "SET _Internal": "setex"}


def op_args(op: str) -> list[str]:
    verb, suffix = op.split()
    key = KEY + suffix
    if verb == "GET":
        return ["GET" if suffix == "_Data" else "MGET", key]
    if suffix == "_Data":
        return ["SET", key, "x" * DATA_BYTES, "EX", str(TTL_S)]
    return ["SETEX", key, str(TTL_S), "x" * INTERNAL_BYTES]


def shown(cmd: list[str], password: str) -> str:
    out = []
    for a in cmd:
        if a == password:
            out.append("<password>")
        elif len(a) > 64 and set(a) == {"x"}:
            out.append(f"<{len(a)}-byte value>")
        else:
            out.append(a)
    return " ".join(out)


def masters(lo: BenchLoopback):
    return [p for p in lo.processes if p.role == "master"] or list(lo.processes)


def key_prefixes(lo: BenchLoopback) -> dict[str, str]:
    """Each master's key prefix as redis-benchmark writes it ("sess:{06S}:"), learnt from a probe run."""
    n = len(lo.nodes)
    cmd = base_command(lo, 20 * n, 2 * n, 1, 1)
    subprocess.run(cmd + ["SET", "sess:{tag}:probe", "1"], capture_output=True, text=True, timeout=60,
                   stdin=subprocess.DEVNULL, check=True)
    out = {}
    for p in masters(lo):
        c = lo.client(p)
        keys = [str(k) for k in c.scan_iter(match="sess:*:probe", count=1000)]
        if len(keys) != 1:
            raise RuntimeError(f"{p.address}: expected one probe key from redis-benchmark, found {keys}")
        c.delete(keys[0])
        out[p.address] = keys[0].removesuffix("probe")
    return out


def prefill(lo: BenchLoopback, keyspace: int) -> dict[str, str]:
    """Every session id 0..keyspace-1 of every master's tag: _Data and _Internal, with the TTL."""
    prefixes = key_prefixes(lo)
    data, internal = b"d" * DATA_BYTES, b"i" * INTERNAL_BYTES
    for p in masters(lo):
        c = lo.client(p)
        pipe = c.pipeline(transaction=False)
        for i in range(keyspace):
            key = f"{prefixes[p.address]}{i:012d}"
            pipe.set(key + "_Data", data, ex=TTL_S)
            pipe.set(key + "_Internal", internal, ex=TTL_S)
            if i % 200 == 199:
                pipe.execute()
        pipe.execute()
    return prefixes


def command_calls(lo: BenchLoopback) -> dict[str, int]:
    """Calls of each operation's command so far, summed over the masters (INFO commandstats)."""
    total = dict.fromkeys(OPS, 0)
    for p in masters(lo):
        stats = lo.client(p).info("commandstats")
        for op in OPS:
            total[op] += int(stats.get(f"cmdstat_{STAT[op]}", {}).get("calls", 0))
    return total


def parse_csv(text: str) -> dict:
    rows = [r for r in csv.reader(io.StringIO(text)) if len(r) >= 7 and r[0] != "test"]
    if len(rows) != 1:
        raise RuntimeError(f"redis-benchmark printed {len(rows)} result rows: {text[-500:]}")
    r = rows[0]
    return {"rps": float(r[1]), "p50_ms": float(r[4]), "p99_ms": float(r[6])}


def measure(lo: BenchLoopback, name: str, requests: int, clients: int, pipeline: int, keyspace: int,
            read_ticks=cpu_ticks) -> dict:
    """The four processes together; counters over the window in which all four run."""
    pids = {f"{p.address} ({p.role})": lo.pid(p) for p in lo.processes}
    cmds = {op: base_command(lo, requests, clients, pipeline, keyspace) + op_args(op) for op in OPS}
    calls0, ticks0, machine = command_calls(lo), {k: read_ticks(v) for k, v in pids.items()}, MachineCpu()
    machine.start()
    t0 = time.monotonic()
    procs = {op: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL) for op, cmd in cmds.items()}
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.005)
        window = time.monotonic() - t0
        ticks1 = {k: read_ticks(v) for k, v in pids.items()}
        gen_ticks = sum(read_ticks(p.pid) for p in procs.values() if p.poll() is None)
        calls1, machine_cpu = command_calls(lo), machine.stop()
        outs = {op: p.communicate(timeout=300) for op, p in procs.items()}
        whole = time.monotonic() - t0
        ticks_end = {k: read_ticks(v) for k, v in pids.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    calls_end = command_calls(lo)
    for op, p in procs.items():
        if p.returncode != 0:
            raise RuntimeError(f"redis-benchmark {op} failed ({p.returncode}): {outs[op][1][-500:]}")
    client = {op: parse_csv(outs[op][0]) for op in OPS}
    counts = {op: calls1[op] - calls0[op] for op in OPS}
    cpu_s = {k: (ticks1[k] - ticks0[k]) / CLK_TCK for k in pids}  # the window: all four running
    whole_cpu_s = {k: (ticks_end[k] - ticks0[k]) / CLK_TCK for k in pids}  # start to the last exit
    busiest = max(cpu_s, key=cpu_s.get)
    # The whole run did every operation `requests` times: exactly `requests` sessions of work.
    sessions = requests
    return {
        "topology": name, "version": lo.version, "window_s": round(window, 3), "whole_s": round(whole, 3),
        "requests_per_process": requests, "requests_reported": requests * len(OPS),
        "server_calls_total": {op: calls_end[op] - calls0[op] for op in OPS},
        "window_calls": counts,
        "sessions_per_s": round(sessions / whole, 1), "ops_per_s": round(sum(counts.values()) / window, 1),
        "mb_per_s": round(sessions * 2 * (DATA_BYTES + INTERNAL_BYTES) / whole / 1e6, 1),
        "client": client,
        "redis_cpu_s": {k: round(v, 3) for k, v in cpu_s.items()},
        "whole_redis_cpu_s": {k: round(v, 3) for k, v in whole_cpu_s.items()},
        "busiest": busiest, "busiest_cpu_s": round(cpu_s[busiest], 3),
        "busiest_cpu_pct": round(100 * cpu_s[busiest] / window, 1),
        "busiest_cpu_pct_whole": round(100 * max(whole_cpu_s.values()) / whole, 1),
        "redis_cpu_pct_sum": round(100 * sum(cpu_s.values()) / window, 1),
        "redis_cpu_us_per_session": round(1e6 * sum(whole_cpu_s.values()) / sessions, 1),
        "generator_cpu_pct_still_running": round(100 * gen_ticks / CLK_TCK / window, 1),
        "machine_cpu_pct": machine_cpu,
        "commands": {op: shown(cmd, lo.password) for op, cmd in cmds.items()},
    }


def run_version(version: str, topologies: tuple[str, ...], repeats: int, requests: int, clients: int,
                pipeline: int, state_root: Path, host_base: int, read_ticks=cpu_ticks) -> list[dict]:
    los = {name: make_topology(name, version, state_root, f"127.0.{host_base + i}.")
           for i, name in enumerate(topologies)}
    rows = []
    try:
        bring_up(list(los.values()))
        keyspaces = {}
        for name, lo in los.items():
            keyspaces[name] = math.ceil(SESSIONS / len(masters(lo)))
            t = time.monotonic()
            prefill(lo, keyspaces[name])
            print(f"Redis {version} {name}: {keyspaces[name] * len(masters(lo))} sessions written in "
                  f"{time.monotonic() - t:.1f}s", flush=True)
        for rep in range(repeats):
            order = list(topologies) if rep % 2 == 0 else [t for pair in zip(topologies[1::2], topologies[0::2],
                                                                              strict=False) for t in pair]
            order += [t for t in topologies if t not in order]
            for name in order:
                r = measure(los[name], name, requests, clients, pipeline, keyspaces[name], read_ticks)
                r["repeat"] = rep + 1
                rows.append(r)
                print(f"Redis {version} {name} #{rep + 1}: {r['sessions_per_s']:,.0f} sessions/s "
                      f"({r['ops_per_s']:,.0f} ops/s), busiest {r['busiest']} {r['busiest_cpu_pct']}%, "
                      f"{r['redis_cpu_us_per_session']} µs Redis CPU/session, machine "
                      f"{r['machine_cpu_pct']['busy_pct']}%", flush=True)
    finally:
        tear_down(list(los.values()))
    return rows


def _spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def ratios(rows: list[dict]) -> list[dict]:
    """ours ÷ stock per repeat, for each pair present."""
    out = []
    for version in sorted({r["version"] for r in rows}):
        for ours, stock in PAIRS:
            by = {(r["topology"], r["repeat"]): r for r in rows if r["version"] == version}
            reps = sorted({k[1] for k in by if k[0] == ours} & {k[1] for k in by if k[0] == stock})
            if not reps:
                continue
            entry = {"version": version, "ours": ours, "stock": stock, "repeats": len(reps)}
            for what, get in (("sessions_per_s", lambda r: r["sessions_per_s"]),
                              ("p50_set_data", lambda r: r["client"]["SET _Data"]["p50_ms"]),
                              ("p99_set_data", lambda r: r["client"]["SET _Data"]["p99_ms"]),
                              ("p50_get_data", lambda r: r["client"]["GET _Data"]["p50_ms"]),
                              ("p99_get_data", lambda r: r["client"]["GET _Data"]["p99_ms"]),
                              ("cpu_per_session", lambda r: r["redis_cpu_us_per_session"])):
                vals = [get(by[ours, k]) / get(by[stock, k]) for k in reps if get(by[stock, k])]
                entry[what] = [round(v, 3) for v in vals]
            out.append(entry)
    return out


def table(rows: list[dict]) -> str:
    lines = ["| Redis | topology | sessions/s (whole run) | ops/s (all 4 running) | MB/s | GET _Data p50 / p99 ms | "
             "SET _Data p50 / p99 ms | "
             "busiest Redis process, % of a core | Redis CPU % (sum) | Redis CPU µs/session | machine busy % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for version in sorted({r["version"] for r in rows}):
        for name in TOPOLOGIES:
            sel = [r for r in rows if r["version"] == version and r["topology"] == name]
            if not sel:
                continue
            c = [r["client"] for r in sel]
            lines.append(
                f"| {version} | {name} | {_spread([r['sessions_per_s'] for r in sel])} | "
                f"{_spread([r['ops_per_s'] for r in sel])} | "
                f"{_spread([r['mb_per_s'] for r in sel])} | "
                f"{_spread([x['GET _Data']['p50_ms'] for x in c], '{:.2f}')} / "
                f"{_spread([x['GET _Data']['p99_ms'] for x in c], '{:.2f}')} | "
                f"{_spread([x['SET _Data']['p50_ms'] for x in c], '{:.2f}')} / "
                f"{_spread([x['SET _Data']['p99_ms'] for x in c], '{:.2f}')} | "
                f"{_spread([r['busiest_cpu_pct'] for r in sel])} | {_spread([r['redis_cpu_pct_sum'] for r in sel])} | "
                f"{_spread([r['redis_cpu_us_per_session'] for r in sel])} | "
                f"{_spread([r['machine_cpu_pct']['busy_pct'] for r in sel])} |")
    return "\n".join(lines)


def ratio_table(entries: list[dict]) -> str:
    lines = ["| Redis | ours ÷ stock | repeats | sessions/s | GET _Data p50 | GET _Data p99 | SET _Data p50 | "
             "SET _Data p99 | Redis CPU per session |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in entries:
        cells = [_spread(e[k], "{:.2f}") for k in ("sessions_per_s", "p50_get_data", "p99_get_data", "p50_set_data",
                                                    "p99_set_data", "cpu_per_session")]
        lines.append(f"| {e['version']} | {e['ours']} ÷ {e['stock']} | {e['repeats']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(path: Path = RESULTS) -> str:
    """BENCHMARKS.md's section on the C-driven session workload, from the last `python -m benchmarks.saturation`."""
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    rows, p = data["runs"], data["params"]
    busiest = max(rows, key=lambda r: r["busiest_cpu_pct"])
    dev = [r for r in rows if r["topology"].endswith("-dev")]
    prod = [r for r in rows if r["topology"].endswith("-prod")]
    example = next((r for r in rows if r["topology"] == "ours-prod"), rows[0])["commands"]
    cmds = "\n".join(f"    {example[op]}" for op in OPS)
    return f"""
## Session workload at saturation: redis-benchmark (C) as the generator

From `python -m benchmarks.saturation` (benchmarks/results/saturation.json; this run took
{data['elapsed_s'] / 60:.1f} minutes on the same 2-core machine, which other jobs share, so every figure
carries their noise; `make bench` does not re-run it). Debian's `redis-benchmark` {data['redis_benchmark']}
drives the session's four operations as four processes started together, {p['requests']:,} requests each,
{p['clients']} connections each (spread over the masters) and `-P {p['pipeline']}`, over {SESSIONS:,} pre-written
sessions (a `_Data` of {DATA_BYTES} bytes and an `_Internal` of {INTERNAL_BYTES} bytes each, read, then written
with `EX {TTL_S}`). The ours-prod command lines (`<password>`: the run's throwaway loopback password, which
redis-benchmark only takes with `-a`):

{cmds}

ours-dev and stock-dev drop `--cluster`; stock-dev is the dev server with `stock_conf` (made in
`benchmarks/saturation.py`). In `--cluster` mode redis-benchmark routes a custom command by its `{{tag}}`
placeholder and gives every connection one slot of its master, so `_Data` and `_Internal` of a session share
a slot, as `{{<guid>_<sid>}}` does; each `__rand_int__` is drawn on its own, so the four operations are
independent draws from the same sessions rather than one session's request. Throughput, Redis CPU (every
redis-server's utime+stime from `/proc/<pid>/stat`) and the mix come from the servers' counters (INFO
commandstats; `_Internal` is read with a one-key `MGET` and written with `SETEX`, the same work under
their own counters). The busiest process's CPU and ops/s are over the window in which all four processes
run (start to the first one's exit). The small operations finish first, so that window is not the session
mix: sessions/s and Redis CPU per session are over the whole run instead (start to the last exit: every
operation done {p['requests']:,} times, i.e. {p['requests']:,} sessions of work), conservative since the tail
runs fewer processes.
Latency is redis-benchmark's own per command (with `-P`, it includes the pipeline's wait).
{p['repeats']} repeats per topology, ours and stock alternating in order.

{table(rows)}

Busiest Redis process: {busiest['busiest_cpu_pct']:.0f}% of one core ({busiest['busiest']}, Redis {busiest['version']}
{busiest['topology']}, repeat {busiest['repeat']}); on the dev topologies (one server) the busiest process ran at
{_spread([r['busiest_cpu_pct'] for r in dev])}% of a core, on the prod ones (three masters and three replicas
on 2 cores) at {_spread([r['busiest_cpu_pct'] for r in prod])}% with the whole machine
{_spread([r['machine_cpu_pct']['busy_pct'] for r in prod])}% busy of 200%: on prod the machine's two cores,
shared by six Redis processes and the four generators, are the limit before any one Redis process is.

ours ÷ stock, paired by repeat (median (min–max); a ratio whose range spans 1.00 is no measurable difference):

{ratio_table(ratios(rows))}

Compared with the Python-driven figures above (which stay: the generator there was the bottleneck, at about
9,000-11,000 sessions/s on prod and 12,000-16,500 on dev with no Redis process near a core), the C generator
reaches {_spread([r['sessions_per_s'] for r in prod])} sessions/s on prod and
{_spread([r['sessions_per_s'] for r in dev])} on dev (both Redis lines), with pipelining that the
OutSystems client's one-request-per-page pattern does not have.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", default="5.0,7.0")
    ap.add_argument("--topologies", default=",".join(TOPOLOGIES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=60_000, help="requests per redis-benchmark process")
    ap.add_argument("--clients", type=int, default=12, help="connections per redis-benchmark process")
    ap.add_argument("--pipeline", type=int, default=4)
    ap.add_argument("--host-base", type=int, default=240, help="servers on 127.0.<base..base+7>.x")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    topologies = tuple(args.topologies.split(","))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="saturation-") as tmp:
        for i, version in enumerate(args.versions.split(",")):
            rows += run_version(version, topologies, args.repeats, args.requests, args.clients, args.pipeline,
                                Path(tmp), args.host_base + 4 * i)
    version_line = subprocess.run([REDIS_BENCHMARK, "--version"], capture_output=True, text=True).stdout.split()
    data = {"params": {"requests": args.requests, "clients": args.clients, "pipeline": args.pipeline,
                       "repeats": args.repeats, "sessions": SESSIONS, "data_bytes": DATA_BYTES,
                       "internal_bytes": INTERNAL_BYTES, "ttl_s": TTL_S},
            "redis_benchmark": version_line[1] if len(version_line) > 1 else "?",
            "elapsed_s": round(time.monotonic() - t0, 1), "runs": rows, "ratios": ratios(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(table(rows))
    print(ratio_table(data["ratios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
