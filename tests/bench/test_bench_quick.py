"""The benchmark's smoke mode (quick's sections plus the scale-out) runs and writes a well-formed report.

Run by `make bench-quick`, not `make test`.

No timing assertions: only that every section is there, complete and self-consistent.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.bench.support import redis_on_blocks
from tests.tools import ROOT, bench_octet, redis_bin

# In `make bench-quick`, not `make test`: it asserts that the benchmark tool works (sections, counts, no
# misses), which no product behaviour depends on, and it took 80-90 s of the suite's two cores.
pytestmark = pytest.mark.bench_smoke

def test_smoke_run_writes_a_well_formed_report(tmp_path):
    redis_bin("7.0", "redis-server")
    redis_bin("7.0", "redis-cli")
    out, md = tmp_path / "smoke.json", tmp_path / "smoke.md"
    # Own blocks (tests.tools.bench_octet), so a `make bench` or another worker running alongside never collides.
    base = bench_octet()
    before = redis_on_blocks(base)  # another run's, if any: not this one's to clean up
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--host-base", str(base),
                          "--out", str(out), "--markdown", str(md)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    # Whatever happened, the run SIGKILLs everything it started, on every block it used.
    left = {pid: cmd for pid, cmd in redis_on_blocks(base).items() if pid not in before}
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert left == {}, "redis-server processes of the smoke run still running"
    results = json.loads(out.read_text())

    assert {r["variant"] for r in results["runs"]} == {"ours-prod", "ours-prod-tls", "stock-prod", "ours-dev"}
    assert {r["loop"] for r in results["runs"]} == {"closed", "open"}
    for r in results["runs"] + results["scaling"]:
        assert r["achieved_rps"] > 0 and r["requests"] > 0
        assert isinstance(r["errors"], int) and r["errors"] >= 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["p999_ms"] <= r["max_ms"]
        assert r["misses"] == 0 and set(r["redirects"]) <= {"MOVED", "ASK"}
        assert r["mb_per_s"] > 0
        assert r["redis_cpu_pct"] and all(v >= 0 for v in r["redis_cpu_pct"].values())
        if r["loop"] == "open":
            assert r["offered_rps"] > 0
    assert len({r["generators"] for r in results["scaling"]}) >= 2
    for c in results["crosscheck"]:
        assert c["rps"]["SET"] > 0 and c["rps"]["GET"] > 0
        assert "<password>" in c["command"]
    mem = results["summary"]["capacity"]["memory"]["7.0"]
    # A session holds at least its 20 KiB payload on the master, and about twice that with the replica.
    assert mem["bytes_per_session_masters"] > 20 * 1024
    assert mem["bytes_per_session_with_replica"] > mem["bytes_per_session_masters"]
    bw = results["summary"]["capacity"]["bandwidth"]
    assert bw["kilobytes"]["client_bytes_per_s"] == 20 * 1024 * 10_000 * 2
    check_tls(results)
    check_scaleout(results)
    text = md.read_text()
    assert "| ours-prod | closed |" in text and "TODO" not in text
    assert "### TLS ÷ plain" in text and "### Scale-out 3 -> 4 servers" in text


def check_tls(results: dict) -> None:
    """The TLS variant ran over TLS next to its plain twin, and its summary rows are complete (when present)."""
    tls_runs = [r for r in results["runs"] if r["variant"].endswith("-tls")]
    assert all(r["tls"] and r["version"] == "7.0" for r in tls_runs)
    assert not any(r["tls"] for r in results["runs"] if not r["variant"].endswith("-tls"))
    for c in results["crosscheck"]:
        assert ("--tls" in c["command"]) == c["variant"].endswith("-tls")
    rows = results["summary"]["tls"]
    assert {(t["variant"], t["loop"]) for t in rows} == {(r["variant"].removesuffix("-tls"), r["loop"])
                                                         for r in tls_runs}
    for t in rows:
        for key in ("rps", "p50_ms", "p99_ms", "cpu_us"):
            for side in ("plain", "tls", "ratio"):
                sp = t[f"{key}_{side}"]
                assert sp and 0 < sp["min"] <= sp["median"] <= sp["max"], (key, side, sp)
        assert isinstance(t["errors_tls"], int)


def check_scaleout(results: dict) -> None:
    """3 -> 4: the join succeeded, every slot is served by 4 masters, and each phase's figures are sane."""
    for r in results["scaleout"]:
        assert r["join_error"] is None, r["join_error"]
        assert (r["servers_before"], r["servers_after"], r["masters_after"]) == (3, 4, 4)
        assert r["slots_covered_after"] == r["slots_total"] == 16384
        assert 0 < r["slots_moved"] < 16384 and r["slots_per_s"] > 0 and r["move_s"] > 0
        assert r["join_s"] >= r["move_s"] - 0.2  # the move happens inside the join (poll granularity 0.1 s)
        assert isinstance(r["errors"], int) and isinstance(r["misses"], int)
        assert set(r["redirects"]) <= {"MOVED", "ASK"}
        assert set(r["phases"]) == {"before", "join", "move", "after"}
        for ph in r["phases"].values():
            assert ph["requests"] > 0 and ph["achieved_rps"] > 0
            assert 0 < ph["p50_ms"] <= ph["p99_ms"] <= ph["p999_ms"] <= ph["max_ms"]
            assert ph["errors"] >= 0 and ph["misses"] >= 0
        assert sum(r["phases"][p]["errors"] for p in ("before", "join", "after")) <= r["errors"]
        assert any(line.startswith("cluster-join: done") for line in r["join_log"])
