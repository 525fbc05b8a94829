"""Summaries of a results JSON, the capacity arithmetic, and BENCHMARKS.md. Pure functions."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

# The requirements page's target.
TARGET_RPS = 10_000
SESSION_KB = 20
SERVERS = 3
ACTIVE_SESSIONS = 100_000


def spread(values: Sequence[float]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals)}


def cpu_us_per_request(run: dict) -> float | None:
    """Redis CPU time (all processes of the topology) per session request, in microseconds."""
    if not run["achieved_rps"]:
        return None
    return sum(run["redis_cpu_pct"].values()) / 100 / run["achieved_rps"] * 1e6


def _paired(runs: list[dict], version: str, loop: str, a: str, b: str, metric) -> list[float]:
    """metric(a's run) / metric(b's run) for every repeat both ran (same run, measured back to back)."""
    by = {(r["variant"], r["repeat"]): metric(r) for r in runs if r["version"] == version and r["loop"] == loop}
    return [by[(a, k)] / by[(b, k)] for (v, k) in by if v == a and by.get((b, k)) and by[(a, k)] is not None]


def summarize(results: dict) -> dict:
    """Per version/variant/loop spreads, paired ratios (same repeat) to stock and dev, TLS ÷ plain, scale-out
    phases, failover distributions."""
    out: dict = {"throughput": [], "ratios": [], "tls": [], "scaleout": [], "failover": [],
                 "capacity": capacity(results)}
    runs = results["runs"]
    keys = sorted({(r["version"], r["variant"], r["loop"]) for r in runs})
    for version, variant, loop in keys:
        sel = [r for r in runs if (r["version"], r["variant"], r["loop"]) == (version, variant, loop)]
        out["throughput"].append({
            "version": version, "variant": variant, "loop": loop,
            "offered_rps": sel[0]["offered_rps"],
            "achieved_rps": spread([r["achieved_rps"] for r in sel]),
            "mb_per_s": spread([r["mb_per_s"] for r in sel]),
            "p50_ms": spread([r["p50_ms"] for r in sel]),
            "p99_ms": spread([r["p99_ms"] for r in sel]),
            "p999_ms": spread([r["p999_ms"] for r in sel]),
            "errors": sum(r["errors"] for r in sel),
            "generator_cpu_pct": spread([r["generator_cpu_pct"] for r in sel]),
            "redis_cpu_pct_total": spread([sum(r["redis_cpu_pct"].values()) for r in sel]),
            "redis_cpu_us_per_request": spread([cpu_us_per_request(r) for r in sel]),
            "machine_busy_pct": spread([r["machine_cpu"]["busy_pct"] for r in sel]),
        })
    for version in sorted({r["version"] for r in runs}):
        for loop, metric in (("closed", "achieved_rps"), ("open", "p99_ms")):
            by = {(r["variant"], r["repeat"]): r[metric] for r in runs if r["version"] == version and r["loop"] == loop}
            for other in ("stock-prod", "ours-dev"):
                pairs = [by[("ours-prod", k)] / by[(other, k)] for (v, k) in by
                         if v == "ours-prod" and (other, k) in by and by[(other, k)]]
                out["ratios"].append({"version": version, "loop": loop, "metric": metric,
                                      "ours_prod_over": other, "ratio": spread(pairs)})
    for version in sorted({r["version"] for r in runs}):
        for tls_variant in sorted({r["variant"] for r in runs if r["version"] == version and r.get("tls")}):
            plain = tls_variant.removesuffix("-tls")
            for loop in ("closed", "open"):
                sel = {v: [r for r in runs if (r["version"], r["variant"], r["loop"]) == (version, v, loop)]
                       for v in (plain, tls_variant)}
                if not sel[plain] or not sel[tls_variant]:
                    continue
                row = {"version": version, "variant": plain, "loop": loop}
                for key, metric in (("rps", lambda r: r["achieved_rps"]), ("p50_ms", lambda r: r["p50_ms"]),
                                    ("p99_ms", lambda r: r["p99_ms"]), ("cpu_us", cpu_us_per_request)):
                    row[f"{key}_plain"] = spread([metric(r) for r in sel[plain]])
                    row[f"{key}_tls"] = spread([metric(r) for r in sel[tls_variant]])
                    row[f"{key}_ratio"] = spread(_paired(runs, version, loop, tls_variant, plain, metric))
                row["errors_tls"] = sum(r["errors"] for r in sel[tls_variant])
                out["tls"].append(row)
    for so in results.get("scaleout", []):
        ph = so["phases"]
        out["scaleout"].append({
            "version": so["version"], "join_s": so["join_s"], "move_s": so["move_s"],
            "slots_moved": so["slots_moved"], "slots_per_s": so["slots_per_s"], "mb_per_s_moved": so["mb_per_s_moved"],
            "errors": so["errors"], "misses": so["misses"], "join_error": so["join_error"],
            "p99_move_over_before": ph["move"]["p99_ms"] / ph["before"]["p99_ms"] if ph["before"]["p99_ms"] else None,
        })
    fo = results.get("failover", [])
    for version, ms in sorted({(f["version"], f["node_timeout_ms"]) for f in fo}):
        sel = [f for f in fo if (f["version"], f["node_timeout_ms"]) == (version, ms)]
        out["failover"].append({
            "version": version, "node_timeout_ms": ms, "trials": len(sel),
            "recover_s": spread([f["recover_s"] for f in sel]),
            "not_recovered": sum(1 for f in sel if f["recover_s"] is None and not f.get("error")),
            # A trial that could not start (cluster not back in place after the previous restore) is no
            # failover measurement: "x", kept apart from "-" (not writable within 60 s).
            "not_started": sum(1 for f in sel if f.get("error")),
            "recover_s_all": [f["recover_s"] for f in sel],
            "started_all": [not f.get("error") for f in sel],
            "lost_wait": sum(f["lost_wait"] or 0 for f in sel), "written_wait": sum(f["written_wait"] for f in sel),
            "lost_nowait": sum(f["lost_nowait"] or 0 for f in sel),
            "written_nowait": sum(f["written_nowait"] for f in sel),
        })
    return out


def bandwidth(rps: int = TARGET_RPS, kb: int = SESSION_KB, servers: int = SERVERS) -> dict:
    """Network arithmetic for rps requests/s, each reading and writing one session of `kb` "kb".

    Kilobytes: kb x 1024 bytes. Kilobits: kb x 1024 bits (the page's own 390 figure
    is 20 x 1024 x 10,000 x 2 / 2^20, so its "kb" is a binary kilo). Per server, in
    each direction: the client reads leaving plus replication leaving (every write goes
    to a replica on another server), i.e. 2/3 of a direction's aggregate on 3 servers.
    """
    out = {}
    for reading, bytes_per_kb in (("kilobytes", 1024), ("kilobits", 1024 / 8)):
        session = kb * bytes_per_kb
        client = session * rps * 2  # read + write, bytes/s, all servers together
        write = session * rps
        # Each server: receives 1/n of writes from clients + 1/n of writes as replication;
        # sends 1/n of reads to clients + 1/n of writes to its master's replica.
        per_server_each_way = 2 * write / servers
        out[reading] = {
            "session_bytes": session,
            "client_bytes_per_s": client,
            "client_gbit_per_s": client * 8 / 1e9,
            "client_mib_per_s": client / 2**20,
            "replication_gbit_per_s": write * 8 / 1e9,
            "per_server_each_way_gbit_per_s": per_server_each_way * 8 / 1e9,
            "per_server_each_way_mbyte_per_s": per_server_each_way / 1e6,
        }
    return out


def capacity(results: dict) -> dict:
    mem = {}
    for m in results.get("memory", []):
        if m["variant"] != "ours-prod":
            continue
        per_all = m["bytes_per_session_all"]
        mem[m["version"]] = {
            "bytes_per_session_masters": m["bytes_per_session_masters"],
            "bytes_per_session_with_replica": per_all,
            "gib_per_100k_with_replica": per_all * ACTIVE_SESSIONS / 2**30,
            "gib_per_server_per_100k": per_all * ACTIVE_SESSIONS / SERVERS / 2**30,
            # maxmemory of one process on an 8 GiB server (outsystems_redis.sizing): 3 GiB.
            "sessions_per_3gib_master": int(3 * 2**30 / m["bytes_per_session_masters"]),
        }
    return {"bandwidth": bandwidth(), "memory": mem}


# ---------------------------------------------------------------- markdown


def _f(x: float | None, nd: int = 0) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def _s(sp: dict | None, nd: int = 0) -> str:
    if not sp:
        return "-"
    if sp["n"] == 1:
        return _f(sp["median"], nd)
    return f"{_f(sp['median'], nd)} ({_f(sp['min'], nd)}–{_f(sp['max'], nd)})"


def render_tables(results: dict) -> str:
    s = results.get("summary") or summarize(results)
    lines = ["### Session workload (median (min–max) over repeats)", "",
             "| Redis | topology | loop | offered req/s | achieved req/s | MB/s | p50 ms | p99 ms | p99.9 ms "
             "| errors | Redis CPU % (sum) | Redis CPU µs/request | generator CPU % | machine busy % |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in s["throughput"]:
        lines.append(f"| {t['version']} | {t['variant']} | {t['loop']} | {_f(t['offered_rps'])} | "
                     f"{_s(t['achieved_rps'])} | {_s(t['mb_per_s'])} | {_s(t['p50_ms'], 2)} | {_s(t['p99_ms'], 2)} | "
                     f"{_s(t['p999_ms'], 2)} | {t['errors']} | {_s(t['redis_cpu_pct_total'])} | "
                     f"{_s(t.get('redis_cpu_us_per_request'))} | "
                     f"{_s(t['generator_cpu_pct'])} | {_s(t['machine_busy_pct'])} |")
    lines += ["", "### Ratios, paired by repeat (median (min–max))", "",
              "| Redis | what | ours-prod ÷ stock-prod | ours-prod ÷ ours-dev |", "|---|---|---:|---:|"]
    for version in sorted({r["version"] for r in s["ratios"]}):
        for loop, _metric, label in (("closed", "achieved_rps", "closed-loop req/s"),
                                    ("open", "p99_ms", "open-loop p99 latency")):
            cells = [next((_s(r["ratio"], 2) for r in s["ratios"] if (r["version"], r["loop"], r["ours_prod_over"])
                           == (version, loop, other)), "-") for other in ("stock-prod", "ours-dev")]
            lines.append(f"| {version} | {label} | {cells[0]} | {cells[1]} |")
    if s.get("tls"):
        lines += ["", "### TLS ÷ plain, same run, paired by repeat (median (min–max))", "",
                  "| Redis | topology | loop | req/s plain | req/s TLS | req/s TLS ÷ plain | p50 ms plain → TLS "
                  "| p99 ms plain → TLS | p99 TLS ÷ plain | Redis CPU µs/request plain → TLS | CPU/request TLS ÷ plain "
                  "| errors (TLS) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for t in s["tls"]:
            lines.append(
                f"| {t['version']} | {t['variant']} | {t['loop']} | {_s(t['rps_plain'])} | {_s(t['rps_tls'])} | "
                f"**{_s(t['rps_ratio'], 2)}** | {_s(t['p50_ms_plain'], 2)} → {_s(t['p50_ms_tls'], 2)} | "
                f"{_s(t['p99_ms_plain'], 2)} → {_s(t['p99_ms_tls'], 2)} | {_s(t['p99_ms_ratio'], 2)} | "
                f"{_s(t['cpu_us_plain'])} → {_s(t['cpu_us_tls'])} | **{_s(t['cpu_us_ratio'], 2)}** | "
                f"{t['errors_tls']} |")
    lines += ["", "### Generator scaling (ours-prod, closed loop)", "",
              "| Redis | generator processes | achieved req/s | p50 ms | generator CPU % | Redis CPU % (sum) "
              "| machine busy % | steal % |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["scaling"]:
        lines.append(f"| {r['version']} | {r['generators']} | {_f(r['achieved_rps'])} | {_f(r['p50_ms'], 2)} | "
                     f"{_f(r['generator_cpu_pct'])} | {_f(sum(r['redis_cpu_pct'].values()))} | "
                     f"{_f(r['machine_cpu']['busy_pct'])} | {_f(r['machine_cpu']['steal_pct'])} |")
    if results["crosscheck"]:
        lines += ["", "### Cross-check: redis-benchmark (Debian 7.0.15, C, 50 clients)", "",
                  "| Redis | topology | SET req/s | GET req/s | SET p50 ms | GET p50 ms | Redis CPU % (sum) "
                  "| machine busy % |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in results["crosscheck"]:
            lines.append(f"| {c['version']} | {c['variant']} | {_f(c['rps'].get('SET'))} | {_f(c['rps'].get('GET'))} "
                         f"| {_f(c['p50_ms'].get('SET'), 2)} | {_f(c['p50_ms'].get('GET'), 2)} | "
                         f"{_f(sum(c['redis_cpu_pct'].values()))} | "
                         f"{_f(c['machine_cpu_pct']['busy_pct'])} |")
    if results.get("scaleout"):
        lines += ["", "### Scale-out 3 -> 4 servers under the session workload (open loop)", "",
                  "| Redis | offered req/s | join script, s | slot move, s | slots moved | slots/s "
                  "| sessions moved, MB "
                  "| MB/s moved | MOVED / ASK followed | errors | sessions not found | after: masters, slots |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in results["scaleout"]:
            red = r["redirects"]
            lines.append(
                f"| {r['version']} | {_f(r['offered_rps'])} | {r['join_s']:.1f} | {r['move_s']:.1f} | "
                f"{r['slots_moved']:,} | {_f(r['slots_per_s'])} | {_f(r['mb_moved'], 1)} | "
                f"{_f(r['mb_per_s_moved'], 1)} | {red.get('MOVED', 0):,} / {red.get('ASK', 0):,} | {r['errors']} | "
                f"{r['misses']} | {r['masters_after']}, {r['slots_covered_after']:,} of {r['slots_total']:,}"
                + (f" (join failed: {r['join_error'].splitlines()[0][:120]})" if r["join_error"] else "") + " |")
        lines += ["", "Latency per phase (requests by scheduled start; open loop, so queueing counts):", "",
                  "| Redis | phase | seconds | achieved req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors "
                  "| sessions not found | machine busy % |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["scaleout"]:
            for name in ("before", "join", "move", "after"):
                ph = r["phases"][name]
                lines.append(f"| {r['version']} | {name} | {ph['seconds']:.1f} | {_f(ph['achieved_rps'])} | "
                             f"{_f(ph['p50_ms'], 2)} | {_f(ph['p99_ms'], 2)} | {_f(ph['p999_ms'], 2)} | "
                             f"{_f(ph['max_ms'], 1)} | {ph['errors']} | {ph['misses']} | "
                             f"{_f(ph.get('machine_busy_pct'))} |")
    if s["failover"]:
        lines += ["", "### Whole-server failover (SIGKILL of master + replica of one server)", "",
                  "| Redis | cluster-node-timeout | trials | all slots writable after, s: median (min–max) "
                  "| every trial, s | lost with WAIT 1 | lost without WAIT |", "|---|---:|---:|---:|---|---:|---:|"]
        for f in s["failover"]:
            label = f"{f['node_timeout_ms']}" + (" (shipped)" if f["node_timeout_ms"] == 5000 else " (Redis default)")
            every = ", ".join("x" if not ok else "-" if x is None else f"{x:.1f}"
                              for x, ok in zip(f["recover_s_all"], f.get("started_all", [True] * f["trials"]),
                                               strict=True))
            lines.append(f"| {f['version']} | {label} | {f['trials']} | {_s(f['recover_s'], 1)} | {every} | "
                         f"{f['lost_wait']} of {f['written_wait']} | {f['lost_nowait']} of {f['written_nowait']} |")
    mem = s["capacity"]["memory"]
    if mem:
        lines += ["", "### Memory per session (ours-prod, used_memory growth)", "",
                  "| Redis | bytes/session on masters | bytes/session incl. replica | GiB per 100,000 sessions "
                  "(incl. replica) | per server (3) | sessions per 3 GiB master |", "|---|---:|---:|---:|---:|---:|"]
        for v, m in sorted(mem.items()):
            lines.append(f"| {v} | {_f(m['bytes_per_session_masters'])} | {_f(m['bytes_per_session_with_replica'])} "
                         f"| {_f(m['gib_per_100k_with_replica'], 2)} | {_f(m['gib_per_server_per_100k'], 2)} | "
                         f"{_f(m['sessions_per_3gib_master'])} |")
    return "\n".join(lines) + "\n"


def headline(results: dict) -> dict:
    """The figures the README quotes."""
    s = results.get("summary") or summarize(results)
    head: dict = {}
    for t in s["throughput"]:
        if t["variant"] == "ours-prod" and t["loop"] == "closed":
            head[f"rps_{t['version']}"] = t["achieved_rps"]
    for r in s["ratios"]:
        if r["loop"] == "closed" and r["ours_prod_over"] == "stock-prod":
            head[f"ratio_stock_{r['version']}"] = r["ratio"]
    for f in s["failover"]:
        head[f"failover_{f['version']}_{f['node_timeout_ms']}"] = f["recover_s"]
    for t in s.get("tls", []):
        head[f"tls_{t['version']}_{t['variant']}_{t['loop']}"] = t
    for so in results.get("scaleout", []):
        head[f"scaleout_{so['version']}"] = so
    return head
