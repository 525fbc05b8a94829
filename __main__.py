"""outsystems-redis: the OutSystems Redis session store on AWS.

Reads the stack's settings, looks up the AWS facts they depend on, checks
them, then builds one environment. Every check runs before any resource is
registered.
"""

import pulumi
import pulumi_aws as aws

from components.environment import EnvironmentArgs, RedisEnvironment
from components.errors import SettingsError
from components.platforms import PLATFORMS
from components.settings import NAMESPACE, check_front_end_cidr, check_subnets_in_vpc, load_settings
from components.sizing import InstanceTypeInfo, check_instance_type


def project_config() -> dict[str, str]:
    """Every key set in this project's namespace, so a misspelled one is caught, not ignored."""
    merged = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    prefix = NAMESPACE + ":"
    return {k[len(prefix) :]: v for k, v in merged.items() if k.startswith(prefix)}


settings = load_settings(project_config(), pulumi.get_stack())

vpc = aws.ec2.get_vpc(id=settings.vpc_id) if settings.vpc_id else aws.ec2.get_vpc(default=True)
vpc_cidrs = [a.cidr_block for a in vpc.cidr_block_associations] or [vpc.cidr_block]
check_subnets_in_vpc(settings, vpc_cidrs)

spec = aws.ec2.get_instance_type(instance_type=settings.instance_type)
if "x86_64" not in spec.supported_architectures:
    raise SettingsError("instanceType", settings.instance_type, "an x86_64 instance type (the Ubuntu AMI is amd64)")
check_instance_type(
    InstanceTypeInfo(
        name=settings.instance_type,
        vcpus=spec.default_vcpus,
        memory_mib=spec.memory_size,
        sustained_clock_ghz=spec.sustained_clock_speed,
        burstable=spec.burstable_performance_supported,
    ),
    settings.minimums,
)

zones = list(settings.availability_zones)
if not zones:
    # Only the region's own zones: opted-in Local and Wavelength zones sort first
    # ("eu-west-1-lax-1a" < "eu-west-1a") and lack the instance types we need.
    available = aws.get_availability_zones(
        state="available",
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
    ).names
    if len(available) < len(settings.subnet_cidrs):
        raise SettingsError(
            "subnetCidrs",
            list(settings.subnet_cidrs),
            f"at most {len(available)} subnets, one per availability zone of this region",
        )
    zones = sorted(available)[: len(settings.subnet_cidrs)]

platform = PLATFORMS[settings.platform]
# Canonical's public parameter, read once when a server is created (ami is in
# ignore_changes): a newer image never replaces a running server.
ami_id = settings.ami_id or aws.ssm.get_parameter(name=platform.ami_parameter).value

nat_subnet_id = settings.nat_subnet_id
if not settings.nat_gateway_id and not nat_subnet_id:
    public = aws.ec2.get_subnets(
        filters=[
            aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc.id]),
            aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
        ]
    ).ids
    if not public:
        raise SettingsError(
            "natGatewayId",
            None,
            "the id of a NAT gateway in this VPC, or natSubnetId: a public "
            "subnet for the NAT gateway this program creates (the VPC has no default subnet)",
        )
    nat_subnet_id = sorted(public)[0]

# Non-production defaults to the whole VPC; production must list its front-ends.
front_end_cidrs = list(settings.front_end_cidrs) or ([] if settings.front_end_security_group_ids else vpc_cidrs)
for cidr in front_end_cidrs:
    check_front_end_cidr(
        cidr, "frontEndCidrs" if settings.front_end_cidrs else "frontEndCidrs (default: the VPC's CIDR)"
    )

environment = RedisEnvironment(
    "outsystems-redis",
    EnvironmentArgs(
        settings=settings,
        vpc_id=vpc.id,
        zones=zones,
        front_end_cidrs=front_end_cidrs,
        ami_id=ami_id,
        memory_mib=spec.memory_size,
        vcpus=spec.default_vcpus,
        nat_subnet_id=nat_subnet_id,
        region=aws.get_region().region,
    ),
)

pulumi.export("serverPrivateIps", environment.private_ips)
# In server order, like serverPrivateIps: the targets of `aws ssm start-session`.
pulumi.export("serverInstanceIds", [srv.instance.id for srv in environment.servers])
# The Redis line the servers run (major.minor), as the platform chose it.
pulumi.export("redisVersion", platform.redis_version)
pulumi.export("subnetIds", environment.network.subnet_ids)
pulumi.export("securityGroupId", environment.network.security_group_id)
pulumi.export("passwordParameter", environment.parameter.name)
pulumi.export("connectionString", environment.connection_string)
pulumi.export("hsconfSnippet", environment.hsconf)
# Where to look when something pages: the topic alarms go to, the stack's logs, its dashboard and backups.
pulumi.export("alarmTopicArn", environment.observability.topic_arn)
pulumi.export("logGroup", environment.observability.log_group.name)
pulumi.export("dashboardName", environment.observability.dashboard.dashboard_name)
pulumi.export("backupBucket", environment.observability.bucket.bucket)
if environment.ca_certificate is not None:
    # Not a secret: front-ends trust this CA to verify the servers' TLS certificates.
    pulumi.export("caCertificate", environment.ca_certificate)
if environment.health_check is not None:
    # Holds no password, but its command's environment does: kept secret on purpose rather than
    # by pulumi-command's inference, so no report ever lands in plain text in the state.
    pulumi.export("healthReport", pulumi.Output.secret(environment.health_check.stdout))
