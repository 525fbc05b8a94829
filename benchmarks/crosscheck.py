"""An independent witness: Debian's redis-benchmark (C, --cluster) against the same processes.

On a TLS variant it runs with --tls --cacert <the variant's CA>.

redis-benchmark 7.0 does not read REDISCLI_AUTH (checked: it answers NOAUTH),
so the password goes on its command line with -a. It is a throwaway password
of a loopback test cluster, never a deployed one.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

from benchmarks.topologies import BenchLoopback, CpuSampler, MachineCpu

REDIS_BENCHMARK = "/usr/bin/redis-benchmark"


def available() -> bool:
    return shutil.which(REDIS_BENCHMARK) is not None


def run(lo: BenchLoopback, requests: int, data_bytes: int, keyspace: int, clients: int = 50,
        timeout: float = 120) -> dict:
    """SET then GET of `data_bytes` values over `keyspace` random keys; requests/s per test and Redis CPU."""
    host, port = lo.nodes[0]
    cmd = [REDIS_BENCHMARK, "-h", host, "-p", str(port), "-a", lo.password, "-t", "set,get",
           "-n", str(requests), "-d", str(data_bytes), "-r", str(keyspace), "-c", str(clients), "--csv"]
    if lo.topology.cluster:
        cmd.insert(1, "--cluster")
    if lo.tls:
        # The same verification as our generator: the throwaway CA, no client certificate.
        cmd += ["--tls", "--cacert", str(lo.ca_file)]
    cpu, machine = CpuSampler(lo), MachineCpu()
    cpu.start()
    machine.start()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    redis_cpu, machine_cpu = cpu.stop(), machine.stop()
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({out.returncode}): {out.stderr[-500:]}")
    # --cluster prints the cluster's masters before the CSV: keep only the data rows.
    rows = [r for r in csv.reader(io.StringIO(out.stdout)) if len(r) >= 5 and r[0] in ("SET", "GET")]
    return {
        "command": " ".join("<password>" if a == lo.password else a for a in cmd),
        "tls": lo.tls,
        "rps": {r[0]: float(r[1]) for r in rows},
        "p50_ms": {r[0]: float(r[4]) for r in rows if len(r) > 4},
        "redis_cpu_pct": redis_cpu,
        "machine_cpu_pct": machine_cpu,
    }
