"""The topologies compared, each a outsystems_redis.tools.loopback.Loopback with the shipped files.

- `ours-prod`: the prod stack's cluster (3 servers, 7000 + 7001 crossed), our rendered redis.conf.
- `stock-prod`: the same processes and the same bootstrap, but redis.conf is Redis's defaults except
  what a cluster on these addresses cannot run without: port, bind/announce, cluster-enabled,
  cluster-config-file, password, and the pid/log/dir paths the runner needs to find its processes.
- `ours-dev`: the dev stack's single server on 6379, our rendered redis.conf.
- `ours-prod-tls`, `ours-dev-tls` (Redis 7.0 only): the same with the `tls` stack key on, as
  `Loopback(tls=True)` renders it (tls-port on the same ports, plain port off, TLS replication and
  cluster bus), on hosts .11-.13 of the plain variant's /24 so that both run side by side.

The stock config and the cluster-node-timeout override are made here, by
post-processing the rendered text (`conf_transform`), so outsystems_redis/ stays as it ships.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from outsystems_redis.tools.loopback import Loopback
from outsystems_redis.topology import Process

ConfTransform = Callable[[Process, str], str]

# What stock keeps from our rendered text: a cluster cannot form on loopback without these lines.
_STOCK_KEEP = re.compile(
    r"^(port|bind|pidfile|logfile|dir|cluster-enabled|cluster-config-file|cluster-announce-ip|bind-source-addr|"
    r"include|daemonize) "
)


def stock_conf(process: Process, text: str) -> str:
    """Redis's defaults (no maxmemory, noeviction, default save points, node timeout 15000) plus the musts."""
    kept = [line for line in text.splitlines() if _STOCK_KEEP.match(line)]
    return "# stock redis-server defaults; only addresses, paths, cluster and password set\n" + "\n".join(kept) + "\n"


def node_timeout(ms: int) -> ConfTransform:
    """Our rendered conf with only cluster-node-timeout changed (the failover comparison)."""

    def transform(process: Process, text: str) -> str:
        out, n = re.subn(r"^cluster-node-timeout \d+$", f"cluster-node-timeout {ms}", text, flags=re.M)
        if n != 1:
            raise ValueError("rendered redis.conf has no cluster-node-timeout line to override")
        return f"# benchmark override: cluster-node-timeout {ms} (shipped: 5000)\n" + out

    return transform


class BenchLoopback(Loopback):
    """A Loopback whose rendered redis.conf text goes through `conf_transform` first."""

    def __init__(self, *args, conf_transform: ConfTransform | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conf_transform = conf_transform

    def conf_text(self, process: Process) -> str:
        text = super().conf_text(process)
        return self.conf_transform(process, text) if self.conf_transform else text

    def pid(self, process: Process) -> int | None:
        return self._pid(process)

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """Where clients connect: the masters (as in the OutSystems connection string)."""
        return [(p.host, p.port) for p in self.topology.masters]

    @property
    def cafile(self) -> str | None:
        """The CA our own generator verifies against when TLS is on (None: plain TCP)."""
        return str(self.ca_file) if self.tls else None


VARIANTS = ("ours-prod", "stock-prod", "ours-dev")
TLS_SUFFIX = "-tls"
TLS_FIRST_HOST = 11  # a TLS variant's servers: .11, .12, ... of its plain twin's /24 (scale-out takes .4)


def variants_for(version: str, tls: bool) -> tuple[str, ...]:
    """The variants of one Redis line, each TLS one right after its plain twin (measured back to back)."""
    if not tls or version == "5.0":  # Redis 5.0 has no TLS
        return VARIANTS
    return ("ours-prod", "ours-prod" + TLS_SUFFIX, "stock-prod", "ours-dev", "ours-dev" + TLS_SUFFIX)


def plain_twin(name: str) -> str:
    """"ours-prod-tls" -> "ours-prod"; a plain variant is its own twin."""
    return name.removesuffix(TLS_SUFFIX)


def make_variant(name: str, version: str, state_root: Path, host_prefix: str,
                 transform: ConfTransform | None = None, tls: bool = False) -> BenchLoopback:
    """`host_prefix` like "127.0.50." gives this variant its own loopback addresses.

    A name ending in "-tls" (or `tls=True`) is its plain twin with TLS on, on hosts .11 and up.
    """
    tls = tls or name.endswith(TLS_SUFFIX)
    base = plain_twin(name)
    first = TLS_FIRST_HOST if tls else 1
    state = state_root / f"{base}{TLS_SUFFIX if tls else ''}-{version}"
    if state.exists():
        shutil.rmtree(state)  # a fresh cluster: no nodes.conf or RDB from an earlier run
    if base == "ours-dev":
        return BenchLoopback(state, servers=1, version=version, port=6379, hosts=[f"{host_prefix}{first}"],
                             memory_mib=4 * 1024, tls=tls)  # the dev tier's minimum instance
    conf = stock_conf if base == "stock-prod" else transform
    return BenchLoopback(state, servers=3, version=version, hosts=[f"{host_prefix}{first + i}" for i in range(3)],
                         memory_mib=8 * 1024, conf_transform=conf, tls=tls)


def bring_up(loopbacks: list[BenchLoopback]) -> None:
    """Start every process, then run the shipped bootstrap on every cluster at once (each takes ~10 s)."""
    for lo in loopbacks:
        lo.start()
    errors: list[BaseException] = []

    def boot(lo: BenchLoopback) -> None:
        try:
            lo.bootstrap(wait_seconds=60)
        except BaseException as exc:  # noqa: BLE001  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(lo,)) for lo in loopbacks if lo.topology.cluster]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def tear_down(loopbacks: list[BenchLoopback]) -> None:
    """SIGKILL every process (the data is throwaway; a clean stop would write every RDB first).

    Never raises, so one failure does not leave the other topologies running.
    """
    for lo in loopbacks:
        for server in lo.topology.servers:
            try:
                lo.kill_server(server.index)
            except Exception:  # noqa: BLE001
                pass


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int | None) -> int:
    """utime + stime of a process from /proc/<pid>/stat (0 if it is gone)."""
    if not pid:
        return 0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


class CpuSampler:
    """CPU % (100 = one core) of every Redis process of a Loopback between start() and stop()."""

    def __init__(self, lo: BenchLoopback) -> None:
        self.lo = lo
        self.pids = {p.address + f" ({p.role})": lo.pid(p) for p in lo.processes}

    def start(self) -> None:
        import time

        self.t0 = time.monotonic()
        self.ticks0 = {k: cpu_ticks(pid) for k, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        import time

        wall = time.monotonic() - self.t0
        return {k: round(100 * (cpu_ticks(pid) - self.ticks0[k]) / CLK_TCK / wall, 1) for k, pid in self.pids.items()}


class MachineCpu:
    """Whole-machine CPU from /proc/stat: busy % (100 = one core) and steal %, between start() and stop()."""

    @staticmethod
    def _read() -> list[int]:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]

    def start(self) -> None:
        import time

        self.t0, self.v0 = time.monotonic(), self._read()

    def stop(self) -> dict[str, float]:
        import time

        wall = time.monotonic() - self.t0
        d = [b - a for a, b in zip(self.v0, self._read(), strict=False)]
        idle = d[3] + d[4]  # idle + iowait
        steal = d[7] if len(d) > 7 else 0
        busy = sum(d[:8]) - idle  # guest time is already inside user
        return {"busy_pct": round(100 * busy / CLK_TCK / wall, 1), "steal_pct": round(100 * steal / CLK_TCK / wall, 1),
                "cores": os.cpu_count() or 0}
