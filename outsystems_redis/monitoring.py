"""Names shared by what the servers publish and what the program creates to watch it.

The servers' metrics publisher, log shipper and backup job (rendered into user
data) and the program's alarms, dashboard, log group, bucket and IAM policy
(Pulumi) must agree on every name below: this module is their one source.
Pure data, no pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE_ROOT = "OutSystems/Redis"
# Every metric carries both: one stack's servers never mix with another's.
STACK_DIMENSION = "Stack"
SERVER_DIMENSION = "Server"  # the server's name (topology Server.name), as its EC2 Name tag
PUBLISH_PERIOD_SECONDS = 60


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # a CloudWatch StandardUnit
    meaning: str


# What each server publishes every minute (its own processes, and the cluster as it sees it).
METRICS: tuple[Metric, ...] = (
    Metric("ClusterStateOk", "Count", "1 when this server's nodes report cluster_state:ok (one server: 1 when up)"),
    Metric("SlotsServed", "Count", "slots served by a master that is not failing, as this server sees the cluster"),
    Metric("ReplicaLinksDown", "Count", "replica processes on this server whose link to their master is down"),
    Metric("ReplicationLagBytes", "Bytes", "largest offset gap between a master and a replica on this server"),
    Metric("RoleDrift", "Count", "1 when this server holds more or fewer than one master (cluster only)"),
    Metric("ShapeFailures", "Count", "the health check's failures of the cluster's shape about this server's "
           "processes: a master without a working replica on another server, a process the cluster marks failing "
           "(cluster only)"),
    Metric("MemoryUsedPercent", "Percent", "largest used_memory / maxmemory of this server's processes"),
    Metric("EvictedKeys", "Count", "keys evicted for maxmemory since the last publish (sessions lost)"),
    Metric("ConnectedClients", "Count", "client connections to this server's processes"),
    Metric("RejectedConnections", "Count", "connections refused (maxclients) since the last publish"),
    Metric("OpsPerSecond", "Count/Second", "commands per second over this server's processes"),
    Metric("LastSaveAgeSeconds", "Seconds", "age of the oldest last successful RDB save of this server's masters"),
)
METRIC_NAMES = tuple(m.name for m in METRICS)

# Central logs: one log group per stack; each server writes streams named after itself.
LOG_RETENTION_DAYS_DEFAULT = 30


# A server's own session as IAM names it: aws:userid, "<role id>:<instance id>" for an instance profile's
# credentials. The servers' role grants its writes only where this policy variable names them (their metric
# namespace, their snapshots' prefix), so what one server publishes or uploads cannot pass for another's.
# A server learns its own from STS (GetCallerIdentity, which needs no permission); the program from the role's
# unique id and the instance's id (server_session).
SERVER_SESSION = "${aws:userid}"


def server_session(role_id: str, instance_id: str) -> str:
    """What IAM's aws:userid is for `instance_id` running with the role of unique id `role_id`."""
    return f"{role_id}:{instance_id}"


def metric_namespace(stack: str, session: str) -> str:
    """One server's own metric namespace, in its stack's: `session` is its aws:userid (server_session), or
    SERVER_SESSION in the role's policy. PutMetricData has no resource to scope: IAM's cloudwatch:namespace
    condition is its only scope, so with one namespace for a stack, a server could publish a healthy
    ClusterStateOk in another server's name and silence its alarm (with one for all stacks, a dev server
    could for a prod server)."""
    return f"{NAMESPACE_ROOT}/{stack}/{session}"


def stack_namespaces(stack: str) -> str:
    """How the stack's servers' namespaces begin (for people reading the console)."""
    return f"{NAMESPACE_ROOT}/{stack}/"


def former_namespace(stack: str) -> str:
    """The one namespace of all of a stack's servers before each had its own. Until the next minor version the
    agent also publishes there: a stack deployed by the previous version keeps its alarms reading it until
    `pulumi up` has moved them, after the post-deploy check, minutes after the servers' agents changed; without
    it, every heartbeat alarm would see those minutes without data, and page. Nothing of this version reads it."""
    return f"{NAMESPACE_ROOT}/{stack}"


def log_group_name(stack: str) -> str:
    return f"/outsystems-redis/{stack}"


def log_stream_name(server_name: str, source: str) -> str:
    """source: "redis-7000", "redis-7001", "journal", "slowlog", ..."""
    return f"{server_name}/{source}"


# Backups: the stack's bucket has a generated (globally unique) name, so servers read it from
# this parameter at run time instead of their user data carrying it.
BACKUP_RETENTION_DAYS_DEFAULT = 7
BACKUP_PREFIX = "snapshots/"  # servers write only under it: snapshots/<writer>/<server name>/<UTC time>/<port>.rdb
# The writer: the instance's own session (SERVER_SESSION). The role's policy allows s3:PutObject only under
# it, so no server can overwrite another's snapshots.
TOOLS_PREFIX = "tools/"  # read-only for servers: code the program uploads (e.g. the health judge)


def backup_bucket_parameter(stack: str) -> str:
    return f"/outsystems-redis/{stack}/backup-bucket"


def backup_key(writer: str, server_name: str, taken_at: str, port: int) -> str:
    """writer: the server's aws:userid (server_session); taken_at: UTC, e.g. 20261126T201500Z, which one
    snapshot set shares across the servers' runs of the same hour."""
    return f"{BACKUP_PREFIX}{writer}/{server_name}/{taken_at}/{port}.rdb"


# --- Backups: the server job and the restore tool (appended for issue 13's backup part) ---
# Each snapshot's manifest sits beside its RDB (same prefix, so the same write permission and lifecycle):
# the slots its master held, its key count and Redis version. A snapshot counts once its manifest exists.
BACKUP_MANIFEST_SUFFIX = ".json"
# The servers' timer runs each hour; every run of one hour shares this slot as its taken_at.
BACKUP_PERIOD_SECONDS = 3600
TAKEN_AT_FORMAT = "%Y%m%dT%H%M%SZ"  # UTC, as backup_key's taken_at


def backup_manifest_key(writer: str, server_name: str, taken_at: str, port: int) -> str:
    """The manifest object beside backup_key(writer, server_name, taken_at, port)."""
    # Not str.removesuffix: this module also runs on the servers' Python 3.8, inside redis-observe.
    return backup_key(writer, server_name, taken_at, port)[:-len(".rdb")] + BACKUP_MANIFEST_SUFFIX


# ---- appended for the servers' publisher and log shipper (issue 13, server side: server_files/metrics_agent.py)
METRIC_UNITS = {m.name: m.unit for m in METRICS}  # what redis-observe publishes, name -> CloudWatch unit
# What the servers' role must be allowed (IAM) for redis-observe, and nothing more; it calls exactly these:
#   cloudwatch:PutMetricData   Resource "*", condition StringEquals cloudwatch:namespace =
#                              metric_namespace(stack, SERVER_SESSION) or former_namespace(stack)
#   sts:GetCallerIdentity      (no permission: it cannot be denied) for the server's own session
#   logs:CreateLogStream, logs:PutLogEvents
#                              arn:aws:logs:<region>:<account>:log-group:<log_group_name(stack)>:log-stream:*
#                              (streams are named <server name>/<source>, see log_stream_name)
#   ssm:GetParameter           arn:aws:ssm:<region>:<account>:parameter<backup_bucket_parameter(stack)>
#   s3:GetObject               arn:aws:s3:::<bucket>/tools/*  (OBSERVE_TOOL_KEY, BACKUP_TOOL_KEY,
#                              PASSWORD_SYNC_TOOL_KEY)
SERVER_API_ACTIONS = ("cloudwatch:PutMetricData", "logs:CreateLogStream", "logs:PutLogEvents", "ssm:GetParameter",
                      "s3:GetObject")
# Log streams each server writes (log_stream_name(server, source)).
LOG_SOURCES = ("redis-7000", "redis-7001", "redis-6379", "journal", "slowlog")
# Programs the servers fetch from the bucket at every run (outsystems_redis/render/fetched.py says why);
# the program uploads them, and nothing of the servers' may write under TOOLS_PREFIX (they run what
# is there, as root).
OBSERVE_TOOL_KEY = f"{TOOLS_PREFIX}redis-observe.py"
BACKUP_TOOL_KEY = f"{TOOLS_PREFIX}redis-backup.sh"
PASSWORD_SYNC_TOOL_KEY = f"{TOOLS_PREFIX}redis-password-sync.sh"
# And at every boot, before any Redis process (redis-auth): the password and, with TLS, the certificates.
FETCH_PASSWORD_TOOL_KEY = f"{TOOLS_PREFIX}redis-fetch-password.sh"
FETCH_TLS_TOOL_KEY = f"{TOOLS_PREFIX}redis-fetch-tls.sh"
# And run as redis: the cluster join (fetched and verified by root first, systemd.render_join_unit).
JOIN_TOOL_KEY = f"{TOOLS_PREFIX}redis-cluster-join.sh"
