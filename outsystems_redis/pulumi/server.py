"""ComponentResource: one Redis server (EC2 instance with its encrypted root volume)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from outsystems_redis.alarms import SYSTEM_CHECK
from outsystems_redis.settings import merge_tags


@dataclass
class ServerArgs:
    ami_id: str
    instance_type: str
    subnet_id: pulumi.Input[str]
    private_ip: str
    security_group_id: pulumi.Input[str]
    instance_profile: pulumi.Input[str]
    user_data_base64: pulumi.Input[str]  # gzipped cloud-config (render.cloud_config.encode_user_data)
    root_volume_gib: int
    protect: bool
    rebuild: bool  # config replaceServers: take the current AMI, user-data and type, by replacement
    tags: dict[str, str]
    # Everything the first boot needs: the secrets, the role's policy, and the way
    # out (route-table association, NAT route, egress rules). cloud-init's package
    # step runs once, so none of it may still be in the making.
    depends_on: list[pulumi.Resource]
    region: str
    # Where the recover alarm also reports (the stack's alarm topic): a host failure is recovered by
    # EC2, and someone still hears of it, and of its end.
    alarm_actions: list[pulumi.Input[str]] = field(default_factory=list)


# EC2's own recovery action: the instance restarts on healthy hardware, keeping its id, private
# IP, EBS root volume and user data. Sessions in memory since the last RDB save are lost on that
# server; its replicas on the other servers have already taken over its slots.
def recover_action(region: str) -> str:
    return f"arn:aws:automate:{region}:ec2:recover"


class RedisServer(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("outsystems:redis:Server", name, None, opts)
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=args.ami_id,
            instance_type=args.instance_type,
            subnet_id=args.subnet_id,
            # Static, so every server's configuration can name its peers before boot.
            private_ip=args.private_ip,
            associate_public_ip_address=False,
            vpc_security_group_ids=[args.security_group_id],
            iam_instance_profile=args.instance_profile,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",  # IMDSv2 only
                http_put_response_hop_limit=1,
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3",
                volume_size=args.root_volume_gib,
                encrypted=True,
                delete_on_termination=True,
            ),
            # Base64 of gzip: the largest rendered cloud-config is twice EC2's 16 KiB limit
            # as text; compressed, every shape fits (tests/unit asserts it).
            user_data_base64=args.user_data_base64,
            # cloud-init runs once; a changed user_data must never stop/start a live
            # session store in place: it is ignored, or (rebuild) it replaces the server.
            user_data_replace_on_change=args.rebuild,
            disable_api_termination=args.protect,
            # pulumi-aws deletes a termination-protected instance only if force_destroy was already in its
            # state before the operation that deletes it. Set from the start, a replaceServers run can
            # replace a server; Pulumi's own `protect` still guards every deletion until an operator lifts it.
            force_destroy=True,
            # Stated, not left to the account's default: EC2 moves the instance to new hardware
            # when the host fails (simplified automatic recovery), as the alarm below also asks.
            maintenance_options=aws.ec2.InstanceMaintenanceOptionsArgs(auto_recovery="default"),
            monitoring=True,
            tags=merge_tags(args.tags, {"Name": name}),
            volume_tags=merge_tags(args.tags, {"Name": name}),
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.protect,
                # A newer Ubuntu AMI, a newer rendering of user_data or another
                # instance type must never replace or stop a running server (AWS
                # resizes by stopping it). They apply to servers created from now
                # on, or to one named in replaceServers, which is then replaced.
                # userData as well: stacks created before the compression set it.
                ignore_changes=[] if args.rebuild else ["ami", "userData", "userDataBase64", "instanceType"],
                # The private IP is static, so a replacement can only be created
                # once the old instance has released it.
                delete_before_replace=True,
                depends_on=args.depends_on,
            ),
        )
        # The system status check fails when AWS's host (power, network, hardware) fails: recover
        # the instance after two failed minutes. Missing data (a stopped instance) is not a failure.
        self.recovery_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-recover",
            alarm_description=f"Recover {name} onto healthy hardware when EC2's system status check fails",
            namespace="AWS/EC2",
            metric_name="StatusCheckFailed_System",
            dimensions={"InstanceId": self.instance.id},
            **SYSTEM_CHECK.metric_alarm_inputs(),
            alarm_actions=[recover_action(args.region), *args.alarm_actions],
            ok_actions=args.alarm_actions,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.private_ip = self.instance.private_ip
        self.register_outputs({"instance_id": self.instance.id, "private_ip": self.private_ip})
