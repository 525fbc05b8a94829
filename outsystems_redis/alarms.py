"""What pages someone: the CloudWatch alarms per server and the stack's dashboard, as plain data.

The thresholds are decisions about OutSystems sessions, so each says why. The
Pulumi wiring (outsystems_redis/pulumi/observability.py) only turns these specs into
resources; docs/operations.md's "What pages you and why" is generated from the same table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from outsystems_redis.generated_tables import between_markers, main
from outsystems_redis.monitoring import (
    METRIC_NAMES,
    METRIC_UNITS,
    METRICS,
    PUBLISH_PERIOD_SECONDS,
    SERVER_DIMENSION,
    STACK_DIMENSION,
    metric_namespace,
)

# AWS limits that mocks do not enforce (PutMetricAlarm, PutDashboard).
ALARM_NAME_MAX = 255
DASHBOARD_NAME_MAX = 255
DASHBOARD_BODY_MAX_BYTES = 1_000_000
DASHBOARD_MAX_WIDGETS = 500
DASHBOARD_MAX_METRICS = 2500
GRAPH_MAX_METRICS = 500
CLUSTER_SLOTS = 16384

EC2_NAMESPACE = "AWS/EC2"


@dataclass(frozen=True)
class AlarmRule:
    """How one metric pages: the statistic over each period, against the threshold, for how long."""

    statistic: str
    comparison: str  # a CloudWatch ComparisonOperator
    threshold: float
    period: int  # seconds
    evaluation_periods: int
    treat_missing_data: str  # breaching | notBreaching | ignore | missing
    cluster_only: bool
    summary: str  # what it means, for the alarm description and the README
    action: str  # what the person paged does first

    def metric_alarm_inputs(self) -> dict:
        """The rule as aws.cloudwatch.MetricAlarm's arguments (the rest is the alarm's own)."""
        return {"statistic": self.statistic, "period": self.period, "evaluation_periods": self.evaluation_periods,
                "comparison_operator": self.comparison, "threshold": self.threshold,
                "treat_missing_data": self.treat_missing_data}


# One minute of data per publish (PUBLISH_PERIOD_SECONDS). Only ClusterStateOk treats missing data as
# breaching: it is the heartbeat, so a server (or its publisher) that goes silent pages once, by name,
# instead of once per metric. The others ignore gaps (notBreaching) for the same reason.
RULES: dict[str, AlarmRule] = {
    # Two silent or failing minutes: longer than a failover (about 6-14 s on loopback) takes to restore
    # the state, short enough that users still notice only a blip.
    "ClusterStateOk": AlarmRule(
        "Minimum", "LessThanThreshold", 1, PUBLISH_PERIOD_SECONDS, 2, "breaching", False,
        "the server's Redis reports cluster_state not ok (one server: Redis down), or the server stopped publishing",
        "run the health check (docs/operations.md: Checking the session store at 3 a.m.); if the server is silent, "
        "look at its EC2 status checks, then the metrics publisher's journal on it",
    ),
    # Any unserved slot makes OutSystems fail the sessions hashed to it. Two minutes covers a failover.
    "SlotsServed": AlarmRule(
        "Minimum", "LessThanThreshold", CLUSTER_SLOTS, PUBLISH_PERIOD_SECONDS, 2, "notBreaching", True,
        f"fewer than {CLUSTER_SLOTS} slots are served by a healthy master, as this server sees the cluster",
        "find the failed master with the health check; if no replica took over, bring its server back",
    ),
    # A replica restarting resyncs in seconds; five minutes down means a master has no copy.
    "ReplicaLinksDown": AlarmRule(
        "Maximum", "GreaterThanOrEqualToThreshold", 1, PUBLISH_PERIOD_SECONDS, 5, "notBreaching", True,
        "a replica on this server has lost its link to its master for five minutes",
        "read journalctl -u redis-server@7001 on the server; a master without a replica loses its sessions "
        "if its server fails next",
    ),
    # Redis's own replica output buffer soft limit is 64 MB over 60 s: a gap that stays above it for five
    # minutes means the replica is falling behind and will be cut off.
    "ReplicationLagBytes": AlarmRule(
        "Maximum", "GreaterThanThreshold", 64 * 1024 * 1024, PUBLISH_PERIOD_SECONDS, 5, "notBreaching", True,
        "a replica on this server is more than 64 MiB behind its master for five minutes",
        "check the servers' network and CPU (dashboard); a replica this far behind loses writes on failover",
    ),
    # redis-role-restore gives a drifted master back within a minute or two when the cluster is healthy;
    # still drifted after 15 minutes means it is waiting on something a person must look at.
    "RoleDrift": AlarmRule(
        "Maximum", "GreaterThanOrEqualToThreshold", 1, PUBLISH_PERIOD_SECONDS, 15, "notBreaching", True,
        "this server has held more or fewer than one master for 15 minutes",
        "read journalctl -u redis-role-restore on the server: it says what it waits for",
    ),
    # A master whose only copy is gone or on its own server: losing that server loses its sessions. Five
    # minutes, as ReplicaLinksDown: a replica restarting is back well within it.
    "ShapeFailures": AlarmRule(
        "Maximum", "GreaterThanOrEqualToThreshold", 1, PUBLISH_PERIOD_SECONDS, 5, "notBreaching", True,
        "for five minutes, a master on this server has no working replica on another server, or a process here "
        "is marked failing",
        "run the health check (docs/operations.md: Checking the session store at 3 a.m.): it names the node and "
        "the fix",
    ),
    # At maxmemory, allkeys-lru evicts sessions (logged-out users, half sessions) and Redis 5.0 fails
    # script writes that carry session data (docs/boot-and-safety.md "When memory is full"): page on the first minute
    # at 85 %, before eviction begins, so there is time to scale out.
    "MemoryUsedPercent": AlarmRule(
        "Maximum", "GreaterThanOrEqualToThreshold", 85, PUBLISH_PERIOD_SECONDS, 1, "notBreaching", False,
        "a Redis process on this server has used 85 % of maxmemory",
        "add servers (docs/operations.md: Growing the cluster) or a larger instanceType before keys are evicted",
    ),
    # Every eviction is a user logged out: page on the first minute with any.
    "EvictedKeys": AlarmRule(
        "Sum", "GreaterThanOrEqualToThreshold", 1, PUBLISH_PERIOD_SECONDS, 1, "notBreaching", False,
        "Redis evicted session keys for maxmemory (users were logged out)",
        "add memory now (docs/operations.md: Growing the cluster); see MemoryUsedPercent on the dashboard",
    ),
    # maxclients is 10000 per process; 8000 on one server for five minutes is a leak or a storm, well
    # before front-ends are refused.
    "ConnectedClients": AlarmRule(
        "Maximum", "GreaterThanOrEqualToThreshold", 8000, PUBLISH_PERIOD_SECONDS, 5, "notBreaching", False,
        "8000 or more client connections to this server for five minutes (maxclients is 10000 per process)",
        "look for a front-end that leaks connections (CLIENT LIST on the server, by address; on 7.0 as the "
        "operations user, on 5.0 by its secret name: README, Operations secret)",
    ),
    # A refused connection is a front-end failing a request: page on the first one.
    "RejectedConnections": AlarmRule(
        "Sum", "GreaterThanOrEqualToThreshold", 1, PUBLISH_PERIOD_SECONDS, 1, "notBreaching", False,
        "Redis refused connections (maxclients reached)",
        "as for ConnectedClients, at once: front-ends are failing requests",
    ),
    # `save 300 1` writes an RDB within five minutes of a change, and each backup run saves too: a save
    # older than two hours means saves fail (disk full, fork refused), so a restart would lose sessions.
    # Five-minute periods: the age moves slowly and a single late publish must not page.
    "LastSaveAgeSeconds": AlarmRule(
        "Minimum", "GreaterThanThreshold", 2 * 3600, 300, 3, "notBreaching", False,
        "a master on this server has not saved an RDB snapshot for more than two hours",
        "INFO persistence on the server (rdb_last_bgsave_status), then disk space (df /var/lib/redis)",
    ),
}
# Metrics shown on the dashboard but paging no one, and why.
NOT_ALARMED: dict[str, str] = {
    "OpsPerSecond": "the load follows the OutSystems applications' traffic; no level of it is wrong in itself",
}

# EC2's own status checks. The instance check (the OS: kernel, network config, exhausted memory) needs a
# person (reboot); the system check (AWS's host) is recovered by EC2 itself (outsystems_redis/pulumi/server.py), and
# also notifies. Missing data (a stopped instance) is left to ClusterStateOk's heartbeat.
INSTANCE_CHECK = AlarmRule(
    "Maximum", "GreaterThanOrEqualToThreshold", 1, 60, 3, "missing", False,
    "EC2's instance status check failed for three minutes (the server's OS is unreachable)",
    "reboot the instance (aws ec2 reboot-instances); its Redis processes rejoin on their own",
)
# The system check's alarm recovers the instance (outsystems_redis/pulumi/server.py wires it with EC2's recover action).
SYSTEM_CHECK = AlarmRule(
    "Maximum", "GreaterThanOrEqualToThreshold", 1, 60, 2, "missing", False,
    "AWS's host failed (EC2's system status check)",
    "nothing first: EC2 recovers the instance onto healthy hardware by itself, and the topic hears of it and "
    "of its end",
)
STATUS_CHECKS = ("StatusCheckFailed_Instance", "StatusCheckFailed_System")


@dataclass(frozen=True)
class AlarmSpec:
    key: str  # the Pulumi resource's name suffix: stable, so the alarm's URN is
    name: str  # CloudWatch's alarm name
    description: str
    # None: the server's own namespace (metric_namespace(stack, its session)), known once the instance exists.
    namespace: str | None
    metric: str
    dimensions: tuple[tuple[str, str], ...]  # EC2 alarms: empty here, InstanceId added by the wiring
    rule: AlarmRule


def alarm_name(stack: str, server_name: str, metric: str) -> str:
    name = f"outsystems-redis/{stack}/{server_name}/{metric}"
    if len(name) > ALARM_NAME_MAX or not name.isascii() or not name.isprintable():
        raise ValueError(f"alarm name {name!r} breaks CloudWatch's rules (printable ASCII, {ALARM_NAME_MAX} chars)")
    return name


def rules_for(cluster: bool) -> dict[str, AlarmRule]:
    """The published metrics that page on this kind of stack (cluster-only metrics on clusters only)."""
    return {m: r for m, r in RULES.items() if cluster or not r.cluster_only}


def server_alarms(stack: str, server_name: str, cluster: bool) -> list[AlarmSpec]:
    """One server's alarms on what it publishes, then on EC2's instance status check."""
    dims = ((STACK_DIMENSION, stack), (SERVER_DIMENSION, server_name))
    specs = [
        AlarmSpec(metric, alarm_name(stack, server_name, metric), f"{server_name}: {rule.summary}. {rule.action}.",
                  None, metric, dims, rule)
        for metric, rule in rules_for(cluster).items()
    ]
    check = "StatusCheckFailed_Instance"
    specs.append(AlarmSpec(check, alarm_name(stack, server_name, check),
                           f"{server_name}: {INSTANCE_CHECK.summary}. {INSTANCE_CHECK.action}.",
                           EC2_NAMESPACE, check, (), INSTANCE_CHECK))
    return specs


def dashboard_name(stack: str) -> str:
    """Dashboard names allow letters, digits, '-' and '_' only; a stack name may also hold '.'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"outsystems-redis-{stack}")[:DASHBOARD_NAME_MAX]


def dashboard_body(stack: str, region: str, servers: list[tuple[str, str, str]], cluster: bool) -> str:
    """The dashboard's JSON: one graph per published metric (a line per server), then EC2's status checks.

    servers: (server name, instance id, session: monitoring.server_session, which names the namespace it
    alone publishes in). Each alarmed metric's graph shows its threshold.
    """
    shown = [m for m in METRICS if cluster or not (m.name in RULES and RULES[m.name].cluster_only)]
    widgets: list[dict] = [
        {
            "type": "text", "x": 0, "y": 0, "width": 24, "height": 2,
            "properties": {"markdown": f"## OutSystems session store `{stack}`\n"
                                       f"{len(servers)} server(s); alarms and what to do: docs/operations.md, "
                                       "*What pages you and why*."},
        }
    ]

    def graph(title: str, metrics: list[list], stat: str, annotations: list[dict]) -> dict:
        i = len(widgets) - 1
        props: dict = {"title": title, "view": "timeSeries", "region": region, "stat": stat,
                       "period": PUBLISH_PERIOD_SECONDS, "metrics": metrics}
        if annotations:
            props["annotations"] = {"horizontal": annotations}
        return {"type": "metric", "x": 12 * (i % 2), "y": 2 + 6 * (i // 2), "width": 12, "height": 6,
                "properties": props}

    for metric in shown:
        rule = RULES.get(metric.name)
        lines = [[metric_namespace(stack, session), metric.name, STACK_DIMENSION, stack,
                  SERVER_DIMENSION, name, {"label": name}] for name, _, session in servers]
        notes = [{"label": "alarm", "value": rule.threshold}] if rule else []
        widgets.append(graph(f"{metric.name} ({metric.unit})", lines, rule.statistic if rule else "Average", notes))
    for check in STATUS_CHECKS:
        lines = [[EC2_NAMESPACE, check, "InstanceId", instance, {"label": name}] for name, instance, _ in servers]
        widgets.append(graph(check, lines, "Maximum", [{"label": "failed", "value": 1}]))
    body = json.dumps({"widgets": widgets}, separators=(",", ":"))
    check_dashboard(body)
    return body


def check_dashboard(body: str) -> None:
    """PutDashboard's limits: a body that breaks them fails only at `pulumi up` on AWS."""
    doc = json.loads(body)
    metrics = sum(len(w["properties"].get("metrics", [])) for w in doc["widgets"])
    per_graph = max((len(w["properties"].get("metrics", [])) for w in doc["widgets"]), default=0)
    if (len(body.encode()) > DASHBOARD_BODY_MAX_BYTES or len(doc["widgets"]) > DASHBOARD_MAX_WIDGETS
            or metrics > DASHBOARD_MAX_METRICS or per_graph > GRAPH_MAX_METRICS):
        raise ValueError(f"dashboard over CloudWatch's limits: {len(body.encode())} bytes, "
                         f"{len(doc['widgets'])} widgets, {metrics} metrics ({per_graph} in one graph)")


if set(RULES) | set(NOT_ALARMED) != set(METRIC_NAMES) or set(RULES) & set(NOT_ALARMED):
    raise RuntimeError("every published metric in outsystems_redis/monitoring.py must page (RULES) or say why not")


# ------------------------------------------------------------------ the alarm table of docs/operations.md

ALARMS_BEGIN = ("<!-- alarm table: generated by `python -m outsystems_redis.alarms --update-readme docs/operations.md`"
                " -->")
ALARMS_END = "<!-- end of the generated alarm table -->"
_COMPARED = {"LessThanThreshold": "below {}", "GreaterThanThreshold": "above {}",
             "GreaterThanOrEqualToThreshold": "{} or more"}


def _threshold(metric: str, rule: AlarmRule) -> str:
    unit, value = METRIC_UNITS.get(metric, "Count"), rule.threshold
    if unit == "Bytes":
        text = f"{value / 2**20:g} MiB"
    elif unit == "Percent":
        text = f"{value:g} % of `maxmemory`"
    elif unit == "Seconds" and value >= 3600:
        text = f"{value / 3600:g} hours"
    else:
        text = f"{value:g}"
    return _COMPARED[rule.comparison].format(text)


def pages_when(metric: str, rule: AlarmRule) -> str:
    """When `rule` pages, in words: its threshold, for how long, and whether silence counts."""
    minutes = rule.period * rule.evaluation_periods // 60
    lasting = ("in any minute" if rule.statistic == "Maximum" else "in a minute") if minutes == 1 \
        else f"for {minutes} minutes"
    what = "failed" if metric in STATUS_CHECKS else _threshold(metric, rule)
    silent = f", **or no data for {minutes} minutes**" if rule.treat_missing_data == "breaching" else ""
    return f"{what} {lasting}{silent}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def markdown_table() -> str:
    """The alarm table of docs/operations.md ("What pages you and why"), from RULES and EC2's two status checks
    (one source with the alarms)."""
    rows = [*RULES.items(), ("StatusCheckFailed_Instance", INSTANCE_CHECK), ("StatusCheckFailed_System", SYSTEM_CHECK)]
    lines = ["| alarm (per server) | pages when | stacks | what it means, and what to do |", "|---|---|---|---|"]
    lines += [f"| `{metric}` | {pages_when(metric, rule)} | {'cluster' if rule.cluster_only else 'all'} | "
              f"{_sentence(rule.summary)} {_sentence(rule.action)} |" for metric, rule in rows]
    return "\n".join(lines) + "\n"


def readme_with_table(readme: str) -> str:
    """`readme` (a page's text) with the text between the alarm table's markers replaced by the generated table."""
    return between_markers(readme, ALARMS_BEGIN, ALARMS_END, markdown_table())


if __name__ == "__main__":
    main("The alarm table of docs/operations.md, from outsystems_redis/alarms.py.", markdown_table, readme_with_table)
