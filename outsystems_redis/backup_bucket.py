"""The backup bucket's rules and the servers' new rights, as plain data (JSON documents and dicts).

Everything takes ARNs as plain strings, so the same functions serve the
Pulumi wiring (inside an apply) and the tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from outsystems_redis.monitoring import BACKUP_PREFIX, SERVER_SESSION, TOOLS_PREFIX, former_namespace, metric_namespace

LIFECYCLE_RULE_ID_MAX = 255  # S3's limit on a lifecycle rule's ID
# A snapshot overwritten or expired stays as a noncurrent version this long: enough to undo a
# mistaken overwrite the next morning, short enough that retention means what it says.
NONCURRENT_DAYS = 1
# A multipart upload cut off (a server stopped mid-backup) is billed until aborted; the servers
# may not abort it themselves (no s3:AbortMultipartUpload), so the lifecycle does.
ABORT_MULTIPART_DAYS = 1


def lifecycle_rules(backup_retention_days: int) -> list[dict[str, Any]]:
    """Snapshots expire after backupRetentionDays; tools (uploaded by the program) never do."""
    rule_id = f"expire-snapshots-after-{backup_retention_days}-days"
    if len(rule_id) > LIFECYCLE_RULE_ID_MAX:
        raise ValueError(f"lifecycle rule id over {LIFECYCLE_RULE_ID_MAX} characters: {rule_id}")
    return [
        {
            "id": rule_id,
            "status": "Enabled",
            "filter": {"prefix": BACKUP_PREFIX},
            "expiration": {"days": backup_retention_days},
            "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_DAYS},
            "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
        }
    ]


# What changes the programs a server fetches from tools/ and runs as root: a write or overwrite, and the
# deletion of a version (which would make an older one current again). ACLs are off (BucketOwnerEnforced).
# The bucket is versioned, so it can also be a replication destination: replication writes and deletes with
# actions of its own, which a Deny of PutObject does not cover.
REPLICATION_WRITE_ACTIONS = ("s3:ReplicateObject", "s3:ReplicateDelete")
TOOL_WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", *REPLICATION_WRITE_ACTIONS)
SNAPSHOT_WRITE_ACTIONS = ("s3:PutObject", "s3:ReplicateObject")


def bucket_policy(bucket_arn: str, server_role_arn: str, tool_writers: Sequence[str]) -> str:
    """Deny every request without TLS (snapshots hold every session); snapshot writes by anyone but the
    stack's servers, so a snapshot set is what the servers saved; and tool writes by anyone but
    `tool_writers` (the deployer), so that an identity policy granting s3:PutObject on the bucket (or on
    `*`) is not a way to run code as root on every server."""
    if not tool_writers:
        raise ValueError("tool_writers: at least the principal that deploys the stack")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyWithoutTls",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                {
                    "Sid": "SnapshotsOnlyFromTheServers",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": list(SNAPSHOT_WRITE_ACTIONS),
                    "Resource": f"{bucket_arn}/{BACKUP_PREFIX}*",
                    # An instance's session carries its role's ARN as aws:PrincipalArn.
                    "Condition": {"ArnNotEquals": {"aws:PrincipalArn": server_role_arn}},
                },
                {
                    "Sid": "ToolsOnlyFromTheDeployers",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": list(TOOL_WRITE_ACTIONS),
                    "Resource": f"{bucket_arn}/{TOOLS_PREFIX}*",
                    # A negated operator with several values matches none of them: only the listed
                    # principals (an assumed role's session carries its role's ARN) pass.
                    "Condition": {"ArnNotEquals": {"aws:PrincipalArn": sorted(set(tool_writers))}},
                },
            ],
        }
    )


def server_statements(stack: str, log_group_arn: str, bucket_arn: str) -> list[dict[str, Any]]:
    """What the servers' metrics publisher, log shipper and backup job need, and nothing more.

    No s3:ListBucket: the backup job writes known keys and retention is the lifecycle's job, so
    nothing on a server lists the bucket (the restore runs with an operator's credentials). No
    s3:AbortMultipartUpload: the lifecycle aborts cut-off uploads.
    """
    # The provider's log group ARN has no trailing ":*"; PutLogEvents is authorised on the stream.
    group = log_group_arn.removesuffix(":*")
    return [
        {
            "Sid": "PublishMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",  # PutMetricData has no resource type: the namespace condition scopes it
            # Each server in its own namespace: none can publish a verdict where another's is read. (And, until
            # the next minor version, the stack's former one, which nothing of this version reads.)
            "Condition": {"StringEquals": {"cloudwatch:namespace": [metric_namespace(stack, SERVER_SESSION),
                                                                    former_namespace(stack)]}},
        },
        {
            "Sid": "ShipLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [group, f"{group}:log-stream:*"],
        },
        {
            "Sid": "WriteSnapshots",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            # Each instance under its own session's id: one server cannot replace another's snapshots.
            "Resource": f"{bucket_arn}/{BACKUP_PREFIX}{SERVER_SESSION}/*",
        },
        {
            "Sid": "ReadTools",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"{bucket_arn}/{TOOLS_PREFIX}*",
        },
    ]


_TOOL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,200}")


def tool_objects(tools: Mapping[str, str]) -> dict[str, str]:
    """key under tools/ -> text: the objects the program uploads for the servers to fetch."""
    out = {}
    for key, text in tools.items():
        if not _TOOL_KEY.fullmatch(key) or ".." in key.split("/") or "//" in key:
            raise ValueError(f"tool key {key!r}: a relative path such as health/judge.py (no '..', no leading '/')")
        out[f"{TOOLS_PREFIX}{key}"] = text
    return out
