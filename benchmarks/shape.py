"""The session workload in the provider's shape beside the plain shape it replaced: `python -m benchmarks.shape`.

Until this change the benchmarks' request was plain GET and SET of two strings. The session provider's
request is two EVALSHA calls over three keys: a write lock, a hash of items and a hash holding the timeout
(benchmarks/workload.py, outsystems_redis/tools/sessions.py). Both shapes run here in one run, on each Redis line's
ours-prod (three servers, the shipped redis.conf and bootstrap), alternating shape run by shape run so that
the machine's drift falls on both alike. Reported per line and shape: the median of the closed-loop runs
(req/s, p50, p99) with the lowest and highest run beside it, and the provider ÷ plain ratio of the medians.

Writes benchmarks/results/shape.json and prints a Markdown table; `section()` is BENCHMARKS.md's part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.topologies import bring_up, make_variant, tear_down
from benchmarks.workload import SHAPES, LoadSpec, prefill, run_load

RESULTS = Path(__file__).resolve().parent / "results" / "shape.json"
DATA_BYTES = 20 * 1024
INTERNAL_BYTES = 256


def measure(versions: tuple[str, ...], repeats: int, duration_s: float, keyspace: int, generators: int,
            host_base: int) -> dict:
    """Closed-loop runs of both shapes on each line's ours-prod; every run's figures."""
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="outsystems-redis-shape-") as tmp:
        for i, version in enumerate(versions):
            lo = make_variant("ours-prod", version, Path(tmp), f"127.0.{host_base + i}.")
            try:
                bring_up([lo])
                for shape in SHAPES:  # every read of a run finds its session, in its own shape
                    prefill(lo.nodes, lo.password, True, keyspace, DATA_BYTES, INTERNAL_BYTES, shape=shape,
                            first=0 if shape == "provider" else keyspace)
                for rep in range(repeats):
                    for shape in SHAPES:
                        # The plain sessions are the second key range (prefilled above).
                        r = run_load(LoadSpec(nodes=lo.nodes, password=lo.password, cluster=True,
                                              keyspace=keyspace, duration_s=duration_s, data_bytes=DATA_BYTES,
                                              internal_bytes=INTERNAL_BYTES, processes=generators, shape=shape,
                                              seed=rep + 1, first_session=0 if shape == "provider" else keyspace))
                        runs.append({"version": version, "shape": shape, "repeat": rep,
                                     **{k: r[k] for k in ("achieved_rps", "requests", "errors", "error_kinds",
                                                          "misses", "p50_ms", "p99_ms", "generator_cpu_pct")}})
                        print(f"{version} {shape} #{rep + 1}: {r['achieved_rps']:.0f} req/s, p99 "
                              f"{r['p99_ms']:.2f} ms, errors {r['errors']}, misses {r['misses']}",
                              file=sys.stderr, flush=True)
            finally:
                tear_down([lo])
    return {"versions": list(versions), "repeats": repeats, "duration_s": duration_s, "keyspace": keyspace,
            "generators": generators, "data_bytes": DATA_BYTES, "runs": runs,
            "started": time.strftime("%Y-%m-%d")}


def summarize(results: dict) -> list[dict]:
    """One row per (line, shape): medians with the lowest and highest run, and provider ÷ plain."""
    rows = []
    for version in results["versions"]:
        medians = {}
        for shape in SHAPES:
            runs = [r for r in results["runs"] if r["version"] == version and r["shape"] == shape]
            kinds: dict[str, int] = {}
            for r in runs:
                for kind, n in r["error_kinds"].items():
                    kinds[kind] = kinds.get(kind, 0) + n
            row = {"version": version, "shape": shape, "runs": len(runs), "error_kinds": kinds,
                   "errors": sum(r["errors"] for r in runs), "misses": sum(r["misses"] for r in runs)}
            for key in ("achieved_rps", "p50_ms", "p99_ms"):
                values = [r[key] for r in runs]
                row[key] = (statistics.median(values), min(values), max(values))
            medians[shape] = row
            rows.append(row)
        medians["provider"]["ratio"] = medians["provider"]["achieved_rps"][0] / medians["plain"]["achieved_rps"][0]
    return rows


def table(results: dict) -> str:
    lines = ["| Redis | request shape | req/s, median (lowest–highest) | p50 ms | p99 ms | errors | misses | "
             "req/s ÷ plain |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in summarize(results):
        rps, p50, p99 = r["achieved_rps"], r["p50_ms"], r["p99_ms"]
        shape = "provider's scripts (now)" if r["shape"] == "provider" else "plain GET/SET (before)"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "1"
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["error_kinds"].items()))
        errors = f"{r['errors']} ({kinds})" if kinds else str(r["errors"])
        lines.append(f"| {r['version']} | {shape} | {rps[0]:,.0f} ({rps[1]:,.0f}–{rps[2]:,.0f}) | "
                     f"{p50[0]:.2f} ({p50[1]:.2f}–{p50[2]:.2f}) | {p99[0]:.2f} ({p99[1]:.2f}–{p99[2]:.2f}) | "
                     f"{errors} | {r['misses']} | {ratio} |")
    return "\n".join(lines)


def section(path: Path = RESULTS) -> str:
    """BENCHMARKS.md's section on the two request shapes, from the last `python -m benchmarks.shape --out`."""
    if not path.exists():
        return ""
    results = json.loads(path.read_text())
    return (
        "\n## The session workload in the provider's shape, beside the plain shape it replaced\n\n"
        "`python -m benchmarks.shape --out benchmarks/results/shape.json` "
        f"(run of {results['started']}): ours-prod on each line, {results['generators']} generator processes, "
        f"closed loop, {results['repeats']} runs of {results['duration_s']:g} s per shape, alternating. "
        "A provider request is two EVALSHA calls (take the lock and read the items; write the items and release "
        "the lock) over `_Write_Lock`, a `_Data` hash and an `_Internal` hash; a plain request is GET of two "
        "strings and SET of both, two pipelines. Both move one "
        f"{results['data_bytes'] // 1024} KiB item each way. The figures elsewhere in this file come from the "
        "benchmark run named at its top: they are in the plain shape if that run is older than this one. "
        "LOCKED: two generator processes drew the same session at once and the second found it held, as a "
        "provider request would (it retries); the plain shape has no lock to find.\n\n"
        + table(results) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.shape", description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", default="5.0,7.0")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--keyspace", type=int, default=5000, help="sessions per shape (default 5000)")
    ap.add_argument("--generators", type=int, default=2)
    ap.add_argument("--host-base", type=int, default=60, help="servers on 127.0.<base+i>.x (default 60)")
    ap.add_argument("--out", type=Path, help=f"also write the results as JSON (BENCHMARKS.md reads {RESULTS.name})")
    args = ap.parse_args(argv)
    results = measure(tuple(args.versions.split(",")), args.repeats, args.duration, args.keyspace,
                      args.generators, args.host_base)
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
