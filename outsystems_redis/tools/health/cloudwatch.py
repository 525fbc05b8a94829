"""The post-deploy check through CloudWatch: the servers' own verdicts, read with the deployer's AWS credentials.

A laptop or a hosted CI runner cannot reach the servers' private IPs, but it can call CloudWatch. Every
minute each server's metrics agent (redis-observe.py, redis-metrics.timer) judges its own Redis processes
and the cluster as they see it, with the health check's own functions (outsystems_redis/judge.py), and publishes
the verdict in its own namespace (the stack's, then its session: only that server may publish there).
This check waits until every server has published a healthy verdict
in a minute that began after the check did (CloudWatch keeps these metrics per minute, time-stamped with the
minute's start, and rounds a query's start down to the minute: a reading from before the check could
otherwise pass for a new one):

- ClusterStateOk 1: every Redis process of the server answers, and (a cluster) reports cluster_state:ok;
- SlotsServed 16384: every slot is served by a master that is not failing, as the server sees the cluster;
- ReplicaLinksDown 0: every replica on the server is linked to its master;
- ShapeFailures 0: every master on the server has a working replica on another server, and the cluster
  marks none of its processes failing.

RoleDrift 1 (a server holding two masters or none, after a failover) is a warning, as in the direct check.
So the check takes one to two minutes at least. What the servers do not publish, it cannot judge: whether
they took a new password (they do within a minute of `pulumi up` writing it), the Redis version, memory,
TLS, a round trip; the direct check (`healthCheckVia: direct`) judges those from inside the VPC.

The pure parts (judge, report) take readings; `read` is the only code that calls AWS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from outsystems_redis.alarms import RULES
from outsystems_redis.judge import SLOTS
from outsystems_redis.monitoring import (
    PUBLISH_PERIOD_SECONDS,
    SERVER_DIMENSION,
    STACK_DIMENSION,
    metric_namespace,
    stack_namespaces,
)

VERDICT_METRICS = ("ClusterStateOk", "SlotsServed", "ReplicaLinksDown", "ShapeFailures", "RoleDrift")
POLL_SECONDS = 15.0
MINUTE = PUBLISH_PERIOD_SECONDS


@dataclass(frozen=True)
class Reading:
    at: datetime  # the datapoint's timestamp (UTC)
    value: float


Readings = Mapping[str, Mapping[str, Reading]]  # server name -> metric name -> its latest reading
# Server name -> its session (monitoring.server_session), in the stack's order: where it alone publishes.
Servers = Mapping[str, str]


def judge(readings: Readings, servers: Collection[str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the latest readings of every server; no problem means healthy."""
    problems: list[str] = []
    warnings: list[str] = []
    for server in servers:
        got = readings.get(server, {})
        if not got:
            problems.append(f"{server}: no verdict published since the check began (still booting, or its "
                            "metrics agent cannot reach CloudWatch: `journalctl -u redis-metrics` on it)")
            continue
        state, slots, links, shape, drift = (got.get(m) for m in VERDICT_METRICS)
        if state is None or slots is None or links is None or shape is None:
            problems.append(f"{server}: an incomplete verdict (no ClusterStateOk, SlotsServed, ReplicaLinksDown or "
                            "ShapeFailures)")
            continue
        if state.value != 1:
            problems.append(f"{server}: not ok at {_hhmmss(state.at)} (a Redis process on it does not answer, or "
                            "the cluster it sees is not whole)")
        if slots.value != SLOTS:
            problems.append(f"{server}: sees {slots.value:.0f} of {SLOTS} slots served at {_hhmmss(slots.at)}")
        if links.value > 0:
            problems.append(f"{server}: {links.value:.0f} replica link(s) to a master down at {_hhmmss(links.at)}")
        if shape.value > 0:
            problems.append(f"{server}: {shape.value:.0f} failure(s) of the cluster's shape at {_hhmmss(shape.at)} (a "
                            "master without a working replica on another server, or a process marked failing: the "
                            "direct health check names them)")
        if drift is not None and drift.value > 0:
            warnings.append(f"{server}: holds two masters or none (roles drifted after a failover; its "
                            "role-restore timer gives the master role back)")
    return problems, warnings


def report(readings: Readings, servers: Collection[str], stack: str, cluster: bool) -> str:
    """The verdict's text: HEALTHY or UNHEALTHY first, as the direct check prints it, then each server."""
    problems, warnings = judge(readings, servers)
    what = f"Redis Cluster, {len(servers)} servers" if cluster else "Redis server"
    verdict = "UNHEALTHY" if problems else ("DEGRADED" if warnings else "HEALTHY")
    where = f"{stack_namespaces(stack)}<role id>:<instance id>"
    lines = [f"{verdict} - {what}, as the servers judge themselves (CloudWatch, {where})"]
    for server in servers:
        got = readings.get(server, {})
        shown = ", ".join(f"{m} {got[m].value:g}" for m in VERDICT_METRICS if m in got)
        newest = max((r.at for r in got.values()), default=None)
        lines.append(f"  {server}: {shown or 'nothing yet'}" + (f" (at {_hhmmss(newest)} UTC)" if newest else ""))
    lines += [f"  FAIL {p}" for p in problems] + [f"  WARN {w}" for w in warnings]
    return "\n".join(lines)


def read(cloudwatch, stack: str, servers: Servers, since: datetime,
         now: datetime) -> dict[str, dict[str, Reading]]:
    """The latest datapoint since `since` of each verdict metric of each server (GetMetricData, one call per 500)."""
    queries, keys = [], {}
    for i, (server, session) in enumerate(servers.items()):
        for j, metric in enumerate(VERDICT_METRICS):
            qid = f"m{i}_{j}"
            keys[qid] = (server, metric)
            queries.append({"Id": qid, "ReturnData": True, "MetricStat": {
                # The server's own namespace: what another server publishes in its name is not read.
                "Metric": {"Namespace": metric_namespace(stack, session), "MetricName": metric,
                           "Dimensions": [{"Name": STACK_DIMENSION, "Value": stack},
                                          {"Name": SERVER_DIMENSION, "Value": server}]},
                # The worst value of each minute, as its alarm reads it: a minute with one bad verdict is bad.
                "Period": PUBLISH_PERIOD_SECONDS, "Stat": RULES[metric].statistic}})
    readings: dict[str, dict[str, Reading]] = {}
    for start in range(0, len(queries), 500):  # GetMetricData's limit of queries per call
        kwargs = {"MetricDataQueries": queries[start:start + 500], "StartTime": since,
                  "EndTime": now + timedelta(minutes=1), "ScanBy": "TimestampDescending"}
        while True:
            page = cloudwatch.get_metric_data(**kwargs)
            for result in page["MetricDataResults"]:
                server, metric = keys[result["Id"]]
                for at, value in zip(result["Timestamps"], result["Values"], strict=True):
                    at = at.astimezone(UTC)
                    known = readings.get(server, {}).get(metric)
                    # Only minutes from `since` on (CloudWatch rounds StartTime down); the newest across pages.
                    if at >= since and (known is None or at > known.at):
                        readings.setdefault(server, {})[metric] = Reading(at, value)
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return readings


def first_whole_minute(began: float) -> datetime:
    """The start of the first minute that begins at or after `began` (a Unix time)."""
    return datetime.fromtimestamp(-(-int(began) // MINUTE) * MINUTE, UTC)


def wait_healthy(cloudwatch, stack: str, servers: Servers, cluster: bool, wait: float,
                 progress: Callable[[str], None], poll: float = POLL_SECONDS,
                 clock: Callable[[], float] = time.time,
                 transient: Callable[[Exception], bool] = lambda exc: False) -> tuple[bool, str]:
    """Read until every server's verdict, from the first whole minute after now on, is healthy, or `wait`
    seconds pass; (healthy, report). An error `transient` accepts (throttling, a timeout) is retried while
    time is left; any other is raised."""
    began = clock()
    since = first_whole_minute(began)
    readings: dict[str, dict[str, Reading]] = {}
    while True:
        try:
            readings = read(cloudwatch, stack, servers, since, datetime.fromtimestamp(clock(), UTC))
            problems, _ = judge(readings, servers)
        except Exception as exc:
            if not transient(exc) or clock() - began >= wait:
                raise
            problems = [f"CloudWatch did not answer ({exc})"]
        text = report(readings, servers, stack, cluster)
        if not problems:
            return True, text
        left = began + wait - clock()
        if left <= 0:
            return False, text
        progress(f"waiting ({clock() - began:.0f} s of {wait:g}): {problems[0]}")
        time.sleep(min(poll, left))


def _hhmmss(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S")
