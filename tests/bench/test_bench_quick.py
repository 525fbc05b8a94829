"""The benchmark's quick mode runs and writes a well-formed report. No timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.tools import ROOT, redis_bin


def test_smoke_run_writes_a_well_formed_report(tmp_path):
    redis_bin("7.0", "redis-server")
    redis_bin("7.0", "redis-cli")
    out, md = tmp_path / "smoke.json", tmp_path / "smoke.md"
    # Own loopback range (127.0.<70+pid%100>.x) so a `make bench` running alongside never collides.
    base = 70 + os.getpid() % 100
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--host-base", str(base),
                          "--out", str(out), "--markdown", str(md)],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())

    assert {r["variant"] for r in results["runs"]} == {"ours-prod", "stock-prod", "ours-dev"}
    assert {r["loop"] for r in results["runs"]} == {"closed", "open"}
    for r in results["runs"] + results["scaling"]:
        assert r["achieved_rps"] > 0 and r["requests"] > 0
        assert isinstance(r["errors"], int) and r["errors"] >= 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["p999_ms"] <= r["max_ms"]
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
    text = md.read_text()
    assert "| ours-prod | closed |" in text and "TODO (not measured)" in text


def test_no_redis_left_running_on_the_smoke_range():
    # The smoke run above SIGKILLs everything it started; nothing on 127.0.7x-16x stays up.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    base = 70 + os.getpid() % 100
    assert not [line for line in ps.splitlines() if line.startswith("/") and f"127.0.{base}." in line]
