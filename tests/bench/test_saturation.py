"""benchmarks.saturation's smoke run: one dev topology on Redis 7.0, a few thousand requests per process.

Checks that the JSON is well formed, that the Redis CPU reading is real (the busiest process spent CPU time)
and that the servers' own counters saw exactly the requests redis-benchmark reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import saturation
from tests.bench.support import redis_on_blocks
from tests.tools import redis_bin, require, saturation_octet

REQUESTS = 3000


def test_smoke_run_measures_real_cpu_and_counts(tmp_path):
    redis_bin("7.0", "redis-server")
    require(saturation.REDIS_BENCHMARK if Path(saturation.REDIS_BENCHMARK).exists() else None, "redis-benchmark")
    base = saturation_octet()  # its own block of 127.0.x (see tests.tools)
    before = redis_on_blocks(base)
    out = tmp_path / "saturation.json"
    try:
        code = saturation.main(["--versions", "7.0", "--topologies", "ours-dev", "--repeats", "1",
                                "--requests", str(REQUESTS), "--clients", "4", "--host-base", str(base),
                                "--out", str(out)])
    finally:
        left = {pid: cmd for pid, cmd in redis_on_blocks(base).items() if pid not in before}
    assert code == 0
    assert left == {}, "redis-server processes of the smoke run still running"

    data = json.loads(out.read_text())
    assert data["params"]["requests"] == REQUESTS
    (run,) = data["runs"]
    assert run["topology"] == "ours-dev" and run["version"] == "7.0"
    assert run["requests_reported"] == REQUESTS * len(saturation.OPS)
    # Every request redis-benchmark reported reached a server, once per operation (no redirect or error).
    assert run["server_calls_total"] == dict.fromkeys(saturation.OPS, REQUESTS)
    assert run["busiest_cpu_s"] > 0 and 0 < run["busiest_cpu_pct"] <= 110
    assert sum(run["whole_redis_cpu_s"].values()) >= run["busiest_cpu_s"]
    assert run["redis_cpu_us_per_session"] > 0 and run["sessions_per_s"] > 0
    for op in saturation.OPS:
        c = run["client"][op]
        assert c["rps"] > 0 and 0 < c["p50_ms"] <= c["p99_ms"]
        assert "<password>" in run["commands"][op] and "-a <password>" in run["commands"][op]
    text = saturation.section(out)
    assert "| 7.0 | ours-dev |" in text
