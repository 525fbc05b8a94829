"""Alarms, topic, dashboard, log group, backup bucket and the servers' new rights, per stack, under mocks.

Expectations are written out here (not read back from outsystems_redis/alarms.py), so a
changed threshold or missing-data choice shows up as a failing test to be argued.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pytest
import yaml

from outsystems_redis import alarms, monitoring
from outsystems_redis.alarms import dashboard_name
from outsystems_redis.backup_bucket import tool_objects
from outsystems_redis.errors import SettingsError
from outsystems_redis.monitoring import (
    BACKUP_TOOL_KEY,
    FETCH_PASSWORD_TOOL_KEY,
    FETCH_TLS_TOOL_KEY,
    JOIN_TOOL_KEY,
    METRIC_NAMES,
    OBSERVE_TOOL_KEY,
    PASSWORD_SYNC_TOOL_KEY,
    backup_bucket_parameter,
    log_group_name,
)
from outsystems_redis.pulumi.observability import ObservabilityArgs, RedisObservability
from outsystems_redis.render.cloud_config import decode_user_data
from outsystems_redis.render.fetched import fetched_tools
from outsystems_redis.settings import KNOWN_KEYS, load_settings
from outsystems_redis.signing import (
    RELEASE,
    SEED_MIN_LENGTH,
    SIGNATURE_SUFFIX,
    SIGNED_SUFFIX,
    TOOLS_PUBLIC_KEY_PATH,
    public_key_pem,
    release_signature,
    release_verifies,
    signature,
    verifies,
)
from tests.unit.program import (
    ACCOUNT,
    DEPLOYER_ROLE_PATH,
    ROOT,
    AwsMocks,
    Program,
    RecordingMonitor,
    run_program,
    session_of,
)

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
BUCKET = "aws:s3/bucket:Bucket"
TLS_7 = {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0", "outsystems-redis:tls": True}
STACKS = {"dev": ("dev", {}), "prod": ("prod", {}), "prod-tls-7.0": ("prod", TLS_7)}
TOPIC_ARN = f"arn:aws:sns:eu-west-1:{ACCOUNT}:outsystems-redis-observability-alarms-e4f5a6b"
BUCKET_NAME = "outsystems-redis-observability-backups-a1b2c3d"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET_NAME}"
GIVEN_TOPIC = "arn:aws:sns:eu-west-1:444455556666:ops-pager"

# metric -> (statistic, comparison, threshold, period, evaluation periods, treat missing data)
EXPECTED = {
    "ClusterStateOk": ("Minimum", "LessThanThreshold", 1, 60, 2, "breaching"),
    "SlotsServed": ("Minimum", "LessThanThreshold", 16384, 60, 2, "notBreaching"),
    "ReplicaLinksDown": ("Maximum", "GreaterThanOrEqualToThreshold", 1, 60, 5, "notBreaching"),
    "ReplicationLagBytes": ("Maximum", "GreaterThanThreshold", 67108864, 60, 5, "notBreaching"),
    "RoleDrift": ("Maximum", "GreaterThanOrEqualToThreshold", 1, 60, 15, "notBreaching"),
    "ShapeFailures": ("Maximum", "GreaterThanOrEqualToThreshold", 1, 60, 5, "notBreaching"),
    # Eviction (and on 5.0, failed script writes) starts at 100 %: the first minute at 85 % pages.
    "MemoryUsedPercent": ("Maximum", "GreaterThanOrEqualToThreshold", 85, 60, 1, "notBreaching"),
    "EvictedKeys": ("Sum", "GreaterThanOrEqualToThreshold", 1, 60, 1, "notBreaching"),
    "ConnectedClients": ("Maximum", "GreaterThanOrEqualToThreshold", 8000, 60, 5, "notBreaching"),
    "RejectedConnections": ("Sum", "GreaterThanOrEqualToThreshold", 1, 60, 1, "notBreaching"),
    "LastSaveAgeSeconds": ("Minimum", "GreaterThanThreshold", 7200, 300, 3, "notBreaching"),
    "StatusCheckFailed_Instance": ("Maximum", "GreaterThanOrEqualToThreshold", 1, 60, 3, "missing"),
}
CLUSTER_ONLY = {"SlotsServed", "ReplicaLinksDown", "ReplicationLagBytes", "RoleDrift", "ShapeFailures"}


@pytest.fixture(scope="module")
def programs() -> dict[str, Program]:
    return {key: run_program(stack, overrides) for key, (stack, overrides) in STACKS.items()}


def servers_of(program: Program) -> list[str]:
    return sorted(r.name.removesuffix("-instance") for r in program.of_type("aws:ec2/instance:Instance"))


def watching(program: Program) -> dict[tuple[str, str], dict]:
    """(server, metric) -> the alarm's inputs, for the alarms the observability component makes."""
    out = {}
    for a in program.of_type(ALARM):
        if a.inputs["metricName"] == "StatusCheckFailed_System":
            continue  # the recover alarm, outsystems_redis/pulumi/server.py
        server = a.inputs["dimensions"].get("Server") or a.name.removesuffix("-StatusCheckFailed_Instance")
        key = (server, a.inputs["metricName"])
        assert key not in out, f"two alarms for {key}"
        out[key] = a.inputs
    return out


# ------------------------------------------------------------------------------ alarms


@pytest.mark.parametrize("key", list(STACKS))
def test_every_server_has_each_alarm_with_its_threshold_and_missing_data_choice(
    programs: dict[str, Program], key: str
) -> None:
    program, stack = programs[key], STACKS[key][0]
    cluster = stack == "prod"
    servers = servers_of(program)
    assert len(servers) == (3 if cluster else 1)
    found = watching(program)
    metrics = {m for m in EXPECTED if cluster or m not in CLUSTER_ONLY}
    assert set(found) == {(s, m) for s in servers for m in metrics}
    for (server, metric), a in found.items():
        got = (a["statistic"], a["comparisonOperator"], a["threshold"], a["period"], a["evaluationPeriods"],
               a["treatMissingData"])
        assert got == EXPECTED[metric], (server, metric)
        assert a["alarmActions"] == [TOPIC_ARN] and a["okActions"] == [TOPIC_ARN]
        assert a["name"] == f"outsystems-redis/{stack}/{server}/{metric}"
        if metric.startswith("StatusCheckFailed"):
            assert a["namespace"] == "AWS/EC2" and a["dimensions"] == {"InstanceId": f"{server}-instance-id"}
        else:
            # The server's own namespace, where only its instance's session may publish.
            assert a["namespace"] == f"OutSystems/Redis/{stack}/{session_of(server)}"
            assert a["dimensions"] == {"Stack": stack, "Server": server}


def test_a_server_that_stops_publishing_pages_once_by_its_heartbeat(programs: dict[str, Program]) -> None:
    for program in programs.values():
        breaching = {m for (_, m), a in watching(program).items() if a["treatMissingData"] == "breaching"}
        assert breaching == {"ClusterStateOk"}


def test_the_recover_alarm_also_notifies_the_topic_and_keeps_recovering(programs: dict[str, Program]) -> None:
    for program in programs.values():
        recover = [a for a in program.of_type(ALARM) if a.inputs["metricName"] == "StatusCheckFailed_System"]
        assert len(recover) == len(servers_of(program))
        for a in recover:
            assert a.inputs["alarmActions"] == ["arn:aws:automate:eu-west-1:ec2:recover", TOPIC_ARN]
            assert a.inputs["okActions"] == [TOPIC_ARN]


def test_every_published_metric_pages_or_says_why_not() -> None:
    assert set(EXPECTED) - {"StatusCheckFailed_Instance"} == set(alarms.RULES)
    assert set(alarms.RULES) | set(alarms.NOT_ALARMED) == set(METRIC_NAMES)
    assert {m for m, r in alarms.RULES.items() if r.cluster_only} == CLUSTER_ONLY


def test_alarms_keep_within_cloudwatchs_limits(programs: dict[str, Program]) -> None:
    for program in programs.values():
        for a in program.of_type(ALARM):
            i = a.inputs
            if "name" in i:  # the recover alarm is autonamed
                assert len(i["name"]) <= 255 and i["name"].isascii() and i["name"].isprintable()
            assert len(i.get("alarmDescription", "")) <= 1024
            # Standard resolution: a period of a whole minute; period x evaluations at most one day.
            assert i["period"] % 60 == 0 and i["period"] * i["evaluationPeriods"] <= 86400
            assert i["treatMissingData"] in ("breaching", "notBreaching", "ignore", "missing")
            assert len(i["alarmActions"]) <= 5 and len(i.get("okActions", [])) <= 5
    # The longest names the settings allow: a 100-character stack (Pulumi's limit), server 100.
    assert len(alarms.alarm_name("s" * 100, "outsystems-redis-server-100", "StatusCheckFailed_Instance")) <= 255
    # CloudWatch namespaces: at most 255 characters of letters, digits and . - _ / # : (no "AWS/" prefix).
    longest = monitoring.metric_namespace("s" * 100, monitoring.server_session("AROA" + "X" * 17, "i-" + "f" * 17))
    assert len(longest) <= 255 and re.fullmatch(r"[A-Za-z0-9.\-_/#:]+", longest) and not longest.startswith("AWS/")
    with pytest.raises(ValueError, match="alarm name"):
        alarms.alarm_name("s" * 250, "outsystems-redis-server-1", "ClusterStateOk")


def test_growing_the_cluster_only_adds_alarms(programs: dict[str, Program]) -> None:
    before = {a.urn: a.inputs for a in programs["prod"].of_type(ALARM)}
    after = {a.urn: a.inputs for a in run_program("prod", {"outsystems-redis:servers": 4}).of_type(ALARM)}
    assert set(before) < set(after) and len(after) - len(before) == len(before) // 3
    assert all(after[urn] == inputs for urn, inputs in before.items())


# ------------------------------------------------------------------------------ where alarms go


def test_the_topic_is_encrypted_with_a_key_cloudwatch_may_use(programs: dict[str, Program]) -> None:
    program = programs["prod"]
    (topic,) = program.of_type(TOPIC)
    (key,) = program.of_type("aws:kms/key:Key")
    assert topic.inputs["kmsMasterKeyId"] == f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key.name}"
    assert topic.inputs["kmsMasterKeyId"] != "alias/aws/sns"  # CloudWatch cannot publish with that key
    assert key.inputs["enableKeyRotation"] is True
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    cloudwatch = statements["CloudWatchAlarmsPublish"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert statements["AccountAdministersTheKey"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    # Autonamed from the resource name: SNS allows 256 letters, digits, '-' and '_'.
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,248}", topic.name)
    assert not program.of_type(SUBSCRIPTION)  # no alarmEmail: no subscription


def test_an_email_subscription_only_when_alarm_email_is_set() -> None:
    program = run_program("dev", {"outsystems-redis:alarmEmail": "ops@example.com"})
    (sub,) = program.of_type(SUBSCRIPTION)
    assert sub.inputs == {"topic": TOPIC_ARN, "protocol": "email", "endpoint": "ops@example.com"}


def test_a_given_topic_is_used_and_none_created() -> None:
    # With toolWriters named too and the direct check, nothing needs the deployer's identity (the key policy
    # would, and the check through CloudWatch compares the shell's account with it).
    program = run_program("prod", {"outsystems-redis:alarmTopicArn": GIVEN_TOPIC,
                                   "outsystems-redis:toolWriters": [f"arn:aws:iam::{ACCOUNT}:role/admins"],
                                   "outsystems-redis:healthCheckVia": "direct"})
    assert not program.of_type(TOPIC) and not program.of_type("aws:kms/key:Key")
    assert not program.of_type(SUBSCRIPTION)
    for a in program.of_type(ALARM):
        assert GIVEN_TOPIC in a.inputs["alarmActions"] and a.inputs["okActions"] == [GIVEN_TOPIC]
        assert TOPIC_ARN not in json.dumps(a.inputs)
    assert not [t for t, _ in program.calls if t == "aws:index/getCallerIdentity:getCallerIdentity"]


# ------------------------------------------------------------------------------ dashboard


@pytest.mark.parametrize("key", list(STACKS))
def test_the_dashboard_names_every_server_and_instance(programs: dict[str, Program], key: str) -> None:
    program, stack = programs[key], STACKS[key][0]
    (dash,) = program.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dash.inputs["dashboardName"] == f"outsystems-redis-{stack}"
    body = json.loads(dash.inputs["dashboardBody"])
    graphs = {w["properties"]["title"].split(" ")[0]: w["properties"] for w in body["widgets"] if w["type"] == "metric"}
    shown = set(METRIC_NAMES) - (set() if stack == "prod" else CLUSTER_ONLY)
    assert set(graphs) == shown | {"StatusCheckFailed_Instance", "StatusCheckFailed_System"}
    for name, props in graphs.items():
        assert props["region"] == "eu-west-1"
        lines = props["metrics"]
        assert sorted(line[-1]["label"] for line in lines) == servers_of(program), name
        if name.startswith("StatusCheckFailed"):
            assert sorted(line[3] for line in lines) == [f"{s}-instance-id" for s in servers_of(program)]
        else:
            assert all(line[:6] == [f"OutSystems/Redis/{stack}/{session_of(line[5])}", name, "Stack", stack,
                                    "Server", line[5]] for line in lines)
    assert graphs["MemoryUsedPercent"]["annotations"]["horizontal"] == [{"label": "alarm", "value": 85}]


def test_the_dashboard_stays_within_cloudwatchs_limits_at_100_servers() -> None:
    servers = [(f"outsystems-redis-server-{i}", f"i-{i:017x}", f"AROA{'X' * 17}:i-{i:017x}") for i in range(1, 101)]
    body = alarms.dashboard_body("production-eu", "eu-west-1", servers, cluster=True)
    doc = json.loads(body)
    assert len(body.encode()) < alarms.DASHBOARD_BODY_MAX_BYTES == 1_000_000
    assert sum(len(w["properties"].get("metrics", [])) for w in doc["widgets"]) == 100 * (12 + 2) <= 2500
    with pytest.raises(ValueError, match="dashboard over CloudWatch's limits"):
        alarms.dashboard_body("x", "eu-west-1", servers * 2, cluster=True)  # 2800 metrics
    assert alarms.dashboard_name("team.prod") == "outsystems-redis-team-prod"  # '.' is not allowed there


# ------------------------------------------------------------------------------ logs and backups


def test_the_log_group_has_the_shared_name_and_the_retention(programs: dict[str, Program]) -> None:
    (group,) = programs["prod"].of_type("aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["name"] == "/outsystems-redis/prod" and group.inputs["retentionInDays"] == 30
    (group,) = run_program("dev", {"outsystems-redis:logRetentionDays": 90}).of_type(
        "aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["name"] == "/outsystems-redis/dev" and group.inputs["retentionInDays"] == 90


def test_the_backup_bucket_is_encrypted_versioned_private_and_owner_enforced(programs: dict[str, Program]) -> None:
    program = programs["prod"]
    (bucket,) = program.of_type(BUCKET)
    assert bucket.inputs["forceDestroy"] is False  # a destroy must never take the snapshots with it
    assert "bucket" not in bucket.inputs and "bucketPrefix" not in bucket.inputs  # autonamed
    # Autonaming appends '-' and 7 characters; S3 names are 3-63 lowercase letters, digits, '-'.
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{2,54}", bucket.name)
    by = {r.type.split(":")[-1]: r.inputs for r in program.resources if r.type.startswith("aws:s3/bucket")}
    for kind in ("BucketServerSideEncryptionConfiguration", "BucketVersioning", "BucketPublicAccessBlock",
                 "BucketOwnershipControls", "BucketLifecycleConfiguration", "BucketPolicy"):
        assert by[kind]["bucket"] == BUCKET_NAME, kind
    assert by["BucketServerSideEncryptionConfiguration"]["rules"] == [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    assert by["BucketVersioning"]["versioningConfiguration"] == {"status": "Enabled"}
    pab = by["BucketPublicAccessBlock"]
    assert [pab[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")] \
        == [True] * 4
    assert by["BucketOwnershipControls"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    deny, others, _tools = json.loads(by["BucketPolicy"]["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Resource"] == [BUCKET_ARN, f"{BUCKET_ARN}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # Snapshots are written by the stack's servers only (their role), nobody else: not by S3 replication either
    # (the bucket is versioned, so it can be a replication destination, which writes with s3:ReplicateObject).
    assert others["Effect"] == "Deny" and others["Principal"] == "*"
    assert others["Action"] == ["s3:PutObject", "s3:ReplicateObject"]
    assert others["Resource"] == f"{BUCKET_ARN}/snapshots/*"
    assert others["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/outsystems-redis-server-role-name"}}


def _tools_statement(program: Program) -> dict:
    (policy,) = program.of_type("aws:s3/bucketPolicy:BucketPolicy")
    (statement,) = [st for st in json.loads(policy.inputs["policy"])["Statement"]
                    if st["Resource"] == f"{BUCKET_ARN}/tools/*"]
    return statement


def test_only_the_deployer_may_change_the_programs_the_servers_run_as_root(programs: dict[str, Program]) -> None:
    """tools/ holds what every server fetches and runs as root: writes, overwrites and version deletions
    by anyone but the deploying principal are denied, whatever their own IAM policy grants."""
    for program in programs.values():
        tools = _tools_statement(program)
        assert tools["Effect"] == "Deny" and tools["Principal"] == "*"
        # Replication into the bucket (a destination must be versioned, as this one is) writes and deletes with
        # actions of its own.
        assert set(tools["Action"]) == {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
                                        "s3:ReplicateObject", "s3:ReplicateDelete"}
        # The role behind the assumed-role session running `pulumi up`, with its path: aws:PrincipalArn
        # carries the role's ARN, never the session's (arn:aws:sts::...:assumed-role/...), which would
        # match nobody and lock the deployer out.
        assert tools["Condition"] == {
            "ArnNotEquals": {"aws:PrincipalArn": [f"arn:aws:iam::{ACCOUNT}:role/{DEPLOYER_ROLE_PATH}deployer"]}}
        (policy,) = program.of_type("aws:s3/bucketPolicy:BucketPolicy")
        for tool in program.of_type("aws:s3/bucketObjectv2:BucketObjectv2"):
            # A new deployer (a CI role taking over) is listed before it writes the tools.
            assert policy.urn in tool.dependencies, tool.name


def test_tool_writers_can_be_named_and_are_checked() -> None:
    writers = [f"arn:aws:iam::{ACCOUNT}:role/admins", f"arn:aws:iam::{ACCOUNT}:user/ops/alice"]
    program = run_program("dev", {"outsystems-redis:toolWriters": writers})
    assert _tools_statement(program)["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": sorted(writers)}}
    with pytest.raises(Exception, match="toolWriters.*assumed-role session"):
        run_program("dev", {"outsystems-redis:toolWriters": [f"arn:aws:sts::{ACCOUNT}:assumed-role/ci/session"]})


@pytest.mark.parametrize(("days", "expected"), [(None, 7), (1, 1), (35, 35)])
def test_the_lifecycle_expires_snapshots_only_after_the_retention(days: int | None, expected: int) -> None:
    program = run_program("dev", {"outsystems-redis:backupRetentionDays": days})
    (lifecycle,) = program.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    (rule,) = lifecycle.inputs["rules"]
    assert rule == {
        "id": f"expire-snapshots-after-{expected}-days",
        "status": "Enabled",
        "filter": {"prefix": "snapshots/"},  # never tools/: the servers' code does not expire
        "expiration": {"days": expected},
        "noncurrentVersionExpiration": {"noncurrentDays": 1},
        "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1},
    }
    assert len(rule["id"]) <= 255
    versioning = program.of_type("aws:s3/bucketVersioning:BucketVersioning")[0]
    assert versioning.urn in lifecycle.dependencies  # noncurrent expiry needs versioning first


def test_the_bucket_name_is_published_for_the_servers(programs: dict[str, Program]) -> None:
    (param,) = [p for p in programs["prod"].of_type("aws:ssm/parameter:Parameter")
                if p.inputs["name"] == "/outsystems-redis/prod/backup-bucket"]
    assert param.inputs["type"] == "String" and param.inputs["value"] == BUCKET_NAME



def test_the_servers_fetched_programs_are_uploaded_and_the_servers_wait_for_them(programs: dict[str, Program]) -> None:
    """What the user data's launcher fetches: exactly the rendered programs, under tools/."""
    for program in programs.values():
        uploaded = {o.inputs["key"]: o for o in program.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
                    if not o.inputs["key"].endswith((SIGNATURE_SUFFIX, SIGNED_SUFFIX))}
        assert {k: o.inputs["content"] for k, o in uploaded.items()} == \
            {f"tools/{k}": text for k, text in fetched_tools().items()}
        assert set(uploaded) == {OBSERVE_TOOL_KEY, BACKUP_TOOL_KEY, PASSWORD_SYNC_TOOL_KEY, FETCH_PASSWORD_TOOL_KEY,
                                 FETCH_TLS_TOOL_KEY, JOIN_TOOL_KEY}
        for instance in program.of_type("aws:ec2/instance:Instance"):
            assert all(o.urn in instance.dependencies for o in uploaded.values())


def test_tool_keys_land_under_tools_and_may_not_escape_it() -> None:
    assert tool_objects({"health/judge.py": "print()"}) == {"tools/health/judge.py": "print()"}
    for bad in ("../snapshots/x", "/abs", "a//b", "a/../../b", ""):
        with pytest.raises(ValueError, match="tool key"):
            tool_objects({bad: "/tmp/x"})


# ------------------------------------------------------------------------------ the servers' rights


@pytest.mark.parametrize("key", list(STACKS))
def test_the_servers_gain_exactly_the_scoped_rights(programs: dict[str, Program], key: str) -> None:
    program, stack = programs[key], STACKS[key][0]
    (policy,) = program.of_type("aws:iam/rolePolicy:RolePolicy")
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    group = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/outsystems-redis/{stack}"
    assert {k: v for k, v in statements.items() if k not in ("ReadOwnSecrets", "SessionManager")} == {
        "PublishMetrics": {"Sid": "PublishMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData",
                           "Resource": "*",
                           # The stack's own namespace: no other stack's servers may publish there.
                           # Each server in its own namespace (IAM fills in "<role id>:<instance id>"), and
                           # until the next minor version the stack's former one, which nothing reads now.
                           "Condition": {"StringEquals": {"cloudwatch:namespace": [
                               f"OutSystems/Redis/{stack}/${{aws:userid}}", f"OutSystems/Redis/{stack}"]}}},
        "ShipLogs": {"Sid": "ShipLogs", "Effect": "Allow",
                     "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                     "Resource": [group, f"{group}:log-stream:*"]},
        # Each instance under its own session's id (IAM fills in "<role id>:<instance id>"): no server can
        # replace another's snapshots (test_backup holds redis-backup's keys to it).
        "WriteSnapshots": {"Sid": "WriteSnapshots", "Effect": "Allow", "Action": "s3:PutObject",
                           "Resource": f"{BUCKET_ARN}/snapshots/${{aws:userid}}/*"},
        "ReadTools": {"Sid": "ReadTools", "Effect": "Allow", "Action": "s3:GetObject",
                      "Resource": f"{BUCKET_ARN}/tools/*"},
    }
    # Nothing else: the password (and TLS) reads and Session Manager were there before.
    assert set(statements) == {"ReadOwnSecrets", "SessionManager", "PublishMetrics", "ShipLogs", "WriteSnapshots",
                               "ReadTools"}
    reads = statements["ReadOwnSecrets"]["Resource"]
    assert f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/outsystems-redis/{stack}/backup-bucket" in reads


def test_no_server_boots_before_its_alarm_topic_log_group_bucket_and_parameter(programs: dict[str, Program]) -> None:
    for program in programs.values():
        needs = {r.urn for r in program.resources
                 if r.type == "aws:cloudwatch/logGroup:LogGroup" or r.type.startswith("aws:s3/")
                 or (r.type == "aws:ssm/parameter:Parameter" and r.inputs["name"].endswith("/backup-bucket"))}
        assert len(needs) == 9 + 6 * 3  # and the programs the servers fetch, and their two signatures
        for inst in program.of_type("aws:ec2/instance:Instance"):
            assert needs <= set(inst.dependencies), inst.name
            policy = program.of_type("aws:iam/rolePolicy:RolePolicy")[0]
            assert policy.urn in inst.dependencies


# ------------------------------------------------------------------------------ bad input

BAD = [
    ("alarmEmail", "not-an-address", "one email address"),
    ("alarmEmail", "a@example.com,b@example.com", "one email address"),
    ("alarmTopicArn", "arn:aws:sqs:eu-west-1:111122223333:queue", "an SNS topic ARN"),
    ("alarmTopicArn", "ops-pager", "an SNS topic ARN"),
    ("alarmTopicArn", "arn:aws:sns:eu-west-1:1111:ops", "an SNS topic ARN"),
    ("logRetentionDays", 0, "one of CloudWatch Logs' retention periods"),
    ("logRetentionDays", 31, "one of CloudWatch Logs' retention periods"),
    ("logRetentionDays", "month", "one of CloudWatch Logs' retention periods"),
    ("backupRetentionDays", 0, "days from 1 to 35"),
    ("backupRetentionDays", 36, "days from 1 to 35"),
    ("backupRetentionDays", "week", "days from 1 to 35"),
]


@pytest.mark.parametrize(("key", "value", "detail"), BAD, ids=[f"{k}-{v}" for k, v, _ in BAD])
def test_bad_observability_settings_name_the_key_and_register_nothing(key: str, value: object, detail: str) -> None:
    recorded: list = []
    with pytest.raises(SettingsError) as err:
        run_program("dev", {f"outsystems-redis:{key}": value}, into=recorded)
    assert err.value.key == key and f"config key '{key}'" in str(err.value) and detail in str(err.value)
    assert recorded == []


def test_an_email_and_a_given_topic_together_are_refused() -> None:
    with pytest.raises(SettingsError) as err:
        run_program("dev", {"outsystems-redis:alarmEmail": "ops@example.com",
                            "outsystems-redis:alarmTopicArn": GIVEN_TOPIC})
    assert err.value.key == "alarmEmail" and "unset when alarmTopicArn is set" in str(err.value)


def test_a_misspelled_observability_key_is_caught() -> None:
    with pytest.raises(SettingsError) as err:
        run_program("dev", {"outsystems-redis:alarmEmails": "ops@example.com"})
    assert "did you mean 'outsystems-redis:alarmEmail'" in str(err.value)


# ------------------------------------------------------------------------------ the README


def test_the_readmes_alarm_table_is_the_generated_one() -> None:
    """One source: the table is outsystems_redis/alarms.py's RULES and status checks, as the alarms themselves.
    Planted (a threshold changed in RULES, or a row edited by hand): fails."""
    from outsystems_redis.alarms import readme_with_table

    page = (ROOT / "docs/operations.md").read_text()
    assert readme_with_table(page) == page, \
        "docs/operations.md's alarm table differs from outsystems_redis/alarms.py: run .venv/bin/python -m " \
        "outsystems_redis.alarms --update-readme docs/operations.md"


def test_the_readme_documents_every_alarm_and_every_key_with_its_default() -> None:
    text = (ROOT / "docs/operations.md").read_text()
    section = text.split("\n## What pages you and why\n", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].split("`")[1]: line for line in section.splitlines() if line.startswith("| `")}
    assert set(rows) == set(EXPECTED) | {"StatusCheckFailed_System"}
    for metric in CLUSTER_ONLY:
        assert "| cluster |" in rows[metric]
    assert "or no data" in rows["ClusterStateOk"]  # the only alarm that counts silence
    table = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert set(KNOWN_KEYS) <= documented
    for key, default in (("alarmEmail", "none"), ("alarmTopicArn", "none"), ("logRetentionDays", "`30`"),
                         ("backupRetentionDays", "`7`")):
        assert f"| `{key}` | {default}" in table, key


def test_tools_are_uploaded_under_tools_and_the_servers_wait_for_them(tmp_path: Path) -> None:
    """The hook for the servers' code: ObservabilityArgs.tools -> objects under tools/ in the bucket."""
    judge = "print('judge')\n"
    program = Program(resources=[], exports={}, secret_exports=set())
    mocks = AwsMocks(program)
    pulumi.runtime.set_mocks(mocks, project="outsystems-redis", stack="dev", monitor=RecordingMonitor(mocks))
    settings = load_settings({"subnetCidrs": '["172.31.128.0/24"]'}, "dev")
    made: list[RedisObservability] = []

    @pulumi.runtime.test
    def run() -> pulumi.Output:
        args = ObservabilityArgs(settings, "eu-west-1", {}, "arn:aws:iam::111122223333:role/servers",
                                 tools={"health/judge.py": judge})
        obs = RedisObservability("obs", args)
        made.append(obs)
        return pulumi.Output.all(*[t.key for t in obs.tools])

    run()
    (obs,) = made
    (tool,) = program.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
    assert tool.inputs["key"] == "tools/health/judge.py" and tool.inputs["bucket"] == "obs-backups-a1b2c3d"
    assert tool.inputs["content"] == judge
    assert obs.tools and all(t in obs.first_boot_needs for t in obs.tools)


def test_the_alarms_wait_for_the_health_check_so_a_first_boot_pages_no_one(programs: dict[str, Program]) -> None:
    for program in programs.values():
        (check,) = program.of_type("command:local:Command")
        watchers = [a for a in program.of_type(ALARM) if a.inputs["metricName"] != "StatusCheckFailed_System"]
        assert watchers and all(check.urn in a.dependencies for a in watchers)
    unchecked = run_program("dev", {"outsystems-redis:healthCheck": False})
    assert not unchecked.of_type("command:local:Command")
    assert len(unchecked.of_type(ALARM)) == 8  # still every alarm, only without the gate


@pytest.mark.parametrize("extra, topic", [({}, TOPIC_ARN),
                                          ({"outsystems-redis:alarmTopicArn": GIVEN_TOPIC}, GIVEN_TOPIC)])
def test_exports_say_where_to_look_when_something_pages(extra: dict, topic: str) -> None:
    program = run_program("prod", extra)
    assert program.exports["alarmTopicArn"] == topic
    assert program.exports["logGroup"] == log_group_name("prod")
    assert program.exports["dashboardName"] == dashboard_name("prod")
    (parameter,) = [r for r in program.of_type("aws:ssm/parameter:Parameter")
                    if r.inputs["name"] == backup_bucket_parameter("prod")]
    assert program.exports["backupBucket"] and program.exports["backupBucket"] == parameter.inputs["value"]


def test_every_fetched_program_is_signed_for_the_key_in_every_servers_user_data(programs: dict[str, Program]) -> None:
    """Beside each program, tools/<program>.signed (its release and signature, then the program) and
    tools/<program>.sig: its signatures with the stack's key (outsystems_redis/signing.py), with and without the
    programs' release,
    which verifies against the public key every server's user data carries, and against nothing else;
    the same text signs the same way again (no preview noise), and the state holds the seed only as a secret."""
    for program in programs.values():
        objects = {o.inputs["key"]: o.inputs["content"]
                   for o in program.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
        (seed_resource,) = [r for r in program.of_type("random:index/randomPassword:RandomPassword")
                            if r.name.endswith("tools-signing-seed")]
        assert seed_resource.inputs["length"] >= SEED_MIN_LENGTH and seed_resource.inputs["special"] is False
        seed = "A1b2" + "x" * (int(seed_resource.inputs["length"]) - 4)  # the mocks' result (tests/unit/program.py)
        public = public_key_pem(seed)
        for instance in program.of_type("aws:ec2/instance:Instance"):
            files = {f["path"]: f["content"] for f in
                     yaml.safe_load(decode_user_data(instance.inputs["userDataBase64"]))["write_files"]}
            assert files[TOOLS_PUBLIC_KEY_PATH] == public, instance.name
            assert "userDataBase64" not in instance.secret_inputs  # reviewers still see user data diffs
        programs_ = {k: v for k, v in objects.items() if not k.endswith((SIGNATURE_SUFFIX, SIGNED_SUFFIX))}
        assert set(objects) == set(programs_) | {k + suffix for k in programs_
                                                 for suffix in (SIGNATURE_SUFFIX, SIGNED_SUFFIX)}
        for key, text in programs_.items():
            # What this version's launcher fetches: the release and its signature, then the program.
            signed_object = objects[key + SIGNED_SUFFIX]
            released = release_signature(seed, key, text)
            assert signed_object == released + text and released.startswith(f"{RELEASE}\n")
            assert released.count("\n") == 2  # the launcher's `head -n 2` and `tail -n +3`
            assert release_verifies(public, key, text, released) == RELEASE
            assert release_verifies(public, key, text + "\n", released) is None
            assert release_verifies(public, key, text, "0" + released) is None  # the launcher reads no "01"
            assert not any(release_verifies(public, other, text, released) for other in programs_ if other != key)
            # The plain one, for servers created before releases (their launcher).
            signed = objects[key + SIGNATURE_SUFFIX]
            assert verifies(public, key, text, signed), key
            (sig_object,) = [o for o in program.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
                             if o.inputs["key"] == key + SIGNATURE_SUFFIX]
            assert "content" not in sig_object.secret_inputs
            assert signed == signature(seed, key, text)
            assert not verifies(public, key, text + "\n", signed)
            assert not verifies(public_key_pem("B" * 64), key, text, signed)
            assert not any(verifies(public, other, text, signed) for other in programs_ if other != key)
