"""ComponentResource: where alarms go, what they watch, the stack's log group and its backup bucket.

Wiring only. The alarms and dashboard come from outsystems_redis/alarms.py, the
bucket's rules and the servers' rights from outsystems_redis/backup_bucket.py, the shared
names from outsystems_redis/monitoring.py.

Two steps, because the servers sit in between: the constructor makes what a
server's first boot needs (log group, bucket, its parameter) and the topic the
recover alarms notify; `watch` then adds the per-server alarms and the dashboard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from outsystems_redis.alarms import dashboard_body, dashboard_name, server_alarms
from outsystems_redis.backup_bucket import bucket_policy, lifecycle_rules, tool_objects
from outsystems_redis.monitoring import backup_bucket_parameter, log_group_name, metric_namespace
from outsystems_redis.settings import Settings
from outsystems_redis.signing import SIGNATURE_SUFFIX, SIGNED_SUFFIX, signature, signed_program


@dataclass
class ObservabilityArgs:
    settings: Settings
    region: str
    tags: dict[str, str]
    server_role_arn: pulumi.Input[str]  # the only writer of snapshots
    tools: Mapping[str, str] = field(default_factory=dict)  # key under tools/ -> the text to upload
    # The secret the tools' signing key derives from (outsystems_redis/signing.py): each tool gets a signature
    # object beside it, which the servers verify before they run the tool.
    tools_signing_seed: pulumi.Input[str] | None = None


@dataclass
class WatchedServer:
    name: str  # topology Server.name: the metrics' Server dimension
    instance_id: pulumi.Input[str]
    session: pulumi.Input[str]  # monitoring.server_session: names the namespace it alone publishes in


def alarm_key_policy(partition: str, account_id: str) -> str:
    """The topic's key: the account administers it; CloudWatch may use it to publish alarms.

    Not the AWS-managed alias/aws/sns: its key policy cannot be changed and does not let
    CloudWatch use it, so alarms would be evaluated and their notifications silently dropped.
    """
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministersTheKey",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
            ],
        }
    )


class RedisObservability(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("outsystems:redis:Observability", name, None, opts)
        self._name = name
        self._args = args
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        tags = args.tags

        self.topic: aws.sns.Topic | None = None
        self.email: aws.sns.TopicSubscription | None = None
        if s.alarm_topic_arn:
            self.topic_arn = pulumi.Output.from_input(s.alarm_topic_arn)
        else:
            # Through the store's provider: the key policy names the account the store is deployed to.
            identity = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self))
            key = aws.kms.Key(
                f"{name}-alarms-key",
                description=f"Encrypts the alarm topic of the OutSystems session store {s.stack}",
                enable_key_rotation=True,
                policy=alarm_key_policy(identity.arn.split(":")[1], identity.account_id),
                tags=tags,
                opts=child,
            )
            self.topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=key.arn, tags=tags, opts=child)
            self.topic_arn = self.topic.arn
            if s.alarm_email:
                # SNS mails a confirmation link first: nothing is delivered until someone clicks it.
                self.email = aws.sns.TopicSubscription(
                    f"{name}-alarm-email", topic=self.topic.arn, protocol="email", endpoint=s.alarm_email, opts=child
                )

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=log_group_name(s.stack),
            retention_in_days=s.log_retention_days,
            tags=tags,
            opts=child,
        )

        # force_destroy stays off: `pulumi destroy` then fails on a bucket that still holds snapshots,
        # which a person can empty on purpose; turned on, one destroy would silently take every backup
        # (and every noncurrent version) with it.
        self.bucket = aws.s3.Bucket(f"{name}-backups", force_destroy=False, tags=tags, opts=child)
        on_bucket = pulumi.ResourceOptions(parent=self)
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-backups-encryption",
            bucket=self.bucket.id,
            # SSE-S3: encrypted at rest without giving the servers' role any KMS permission.
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=on_bucket,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-backups-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=on_bucket,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-backups-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=on_bucket,
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-backups-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},  # ACLs off: the policy alone decides
            opts=on_bucket,
        )
        lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-backups-lifecycle",
            bucket=self.bucket.id,
            rules=lifecycle_rules(s.backup_retention_days),
            # Noncurrent-version expiry means something only once versioning is on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        if s.tool_writers:
            tool_writers = pulumi.Output.from_input(list(s.tool_writers))
        else:
            # The principal running `pulumi up`: its role's ARN when it is an assumed-role session (what
            # aws:PrincipalArn carries), or the user's own ARN.
            caller = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self))
            tool_writers = aws.iam.get_session_context_output(
                arn=caller.arn, opts=pulumi.InvokeOptions(parent=self)).issuer_arn.apply(lambda arn: [arn])
        policy = aws.s3.BucketPolicy(
            f"{name}-backups-policy",
            bucket=self.bucket.id,
            policy=pulumi.Output.all(self.bucket.arn, args.server_role_arn, tool_writers).apply(
                lambda v: bucket_policy(*v)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        # The name is generated (globally unique). The servers take it from their user data; this parameter is
        # for the backup tool, and for servers created before the name was in the user data.
        self.bucket_parameter = aws.ssm.Parameter(
            f"{name}-backup-bucket",
            name=backup_bucket_parameter(s.stack),
            type="String",
            value=self.bucket.bucket,
            description="S3 bucket of the Redis servers' RDB snapshots",
            tags=tags,
            opts=child,
        )
        def upload(key: str, content: pulumi.Input[str]) -> aws.s3.BucketObjectv2:
            return aws.s3.BucketObjectv2(
                f"{name}-tool-{re.sub(r'[^A-Za-z0-9_.-]', '-', key)}",
                bucket=self.bucket.id,
                key=key,
                content=content,
                # After the policy: a new deployer (say a CI role taking over) lists itself before it writes.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[encryption, policy]),
            )

        seed = pulumi.Output.from_input(args.tools_signing_seed) if args.tools_signing_seed is not None else None
        self.tools: list[aws.s3.BucketObjectv2] = []
        for key, text in tool_objects(args.tools).items():
            self.tools.append(upload(key, text))
            if seed is not None:
                # Not secrets (signatures), though derived from one: reviewers see them change with their tool.
                # The signed program is what this version's servers fetch; the plain program and signature, servers
                # created before releases (signing.py).
                for suffix, sign in ((SIGNATURE_SUFFIX, signature), (SIGNED_SUFFIX, signed_program)):
                    self.tools.append(upload(key + suffix, pulumi.Output.unsecret(
                        seed.apply(lambda s, key=key, text=text, sign=sign: sign(s, key, text)))))
        # What a server's first boot needs: its jobs write to these from the first minute.
        self.first_boot_needs: list[pulumi.Resource] = [
            self.log_group, self.bucket, encryption, versioning, public_access, ownership, lifecycle, policy,
            self.bucket_parameter, *self.tools,
        ]
        self.alarms: list[aws.cloudwatch.MetricAlarm] = []
        self.dashboard: aws.cloudwatch.Dashboard | None = None

    def watch(self, servers: list[WatchedServer], after: list[pulumi.Resource]) -> None:
        """The per-server alarms (created after `after`) and the dashboard; then the outputs."""
        s = self._args.settings
        child = pulumi.ResourceOptions(parent=self)
        gated = pulumi.ResourceOptions(parent=self, depends_on=after)
        actions = [self.topic_arn]
        for server in servers:
            own = pulumi.Output.from_input(server.session).apply(lambda session: metric_namespace(s.stack, session))
            for spec in server_alarms(s.stack, server.name, s.cluster):
                self.alarms.append(
                    aws.cloudwatch.MetricAlarm(
                        f"{server.name}-{spec.key}",
                        name=spec.name,
                        alarm_description=spec.description,
                        namespace=own if spec.namespace is None else spec.namespace,
                        metric_name=spec.metric,
                        dimensions=dict(spec.dimensions) or {"InstanceId": server.instance_id},
                        **spec.rule.metric_alarm_inputs(),
                        alarm_actions=actions,
                        ok_actions=actions,  # "resolved" reaches the same people
                        tags=self._args.tags,
                        opts=gated,
                    )
                )
        names = [srv.name for srv in servers]
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{self._name}-dashboard",
            dashboard_name=dashboard_name(s.stack),
            dashboard_body=pulumi.Output.all(
                pulumi.Output.all(*[srv.instance_id for srv in servers]),
                pulumi.Output.all(*[srv.session for srv in servers]),
            ).apply(lambda v: dashboard_body(s.stack, self._args.region, list(zip(names, *v, strict=True)), s.cluster)),
            opts=child,
        )
        self.register_outputs(
            {
                "alarm_topic_arn": self.topic_arn,
                "log_group": self.log_group.name,
                "backup_bucket": self.bucket.bucket,
                "dashboard": self.dashboard.dashboard_name,
            }
        )
