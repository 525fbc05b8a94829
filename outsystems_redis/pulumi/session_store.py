"""ComponentResource: one OutSystems session store (network, password, servers, post-deploy check).

`RedisSessionStore` is what another Pulumi program creates (`pip install` this repository; see
examples/), and what this project's own `__main__.py` builds from the stack's config. It checks its
arguments with the very rules of the stack config (settings.load_settings), looks up the AWS facts
they depend on (the VPC, the instance type, the zones, the AMI, a public subnet for the NAT) and
checks those too, all before it registers anything: bad input leaves nothing half-created. Then it
only wires resources; the decisions come from the pure core (settings, topology, render).

Its type token stays `outsystems:redis:Environment`, the name stacks deployed before this class
was renamed already hold: every URN beneath it keeps its parent chain, so an upgrade replaces nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape as xml_escape

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_random as random
import pulumi_tls as tls

from outsystems_redis.backup_bucket import server_statements
from outsystems_redis.errors import SettingsError
from outsystems_redis.monitoring import metric_namespace, server_session
from outsystems_redis.parameters import (
    CA_VALIDITY_HOURS,
    EARLY_RENEWAL_HOURS,
    SERVER_VALIDITY_HOURS,
    ops_password_parameter,
    password_parameter,
    server_certificate_ips,
    tls_ca_parameter,
    tls_cert_parameter,
    tls_key_parameter,
)
from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.pulumi.network import NetworkArgs, RedisNetwork
from outsystems_redis.pulumi.observability import ObservabilityArgs, RedisObservability, WatchedServer
from outsystems_redis.pulumi.server import RedisServer, ServerArgs
from outsystems_redis.render.cloud_config import encode_user_data, render_cloud_config
from outsystems_redis.render.fetched import fetched_tools
from outsystems_redis.settings import (
    CONFIG_KEYS,
    KEY_OF,
    NAMESPACE,
    ConfigKey,
    Settings,
    check_front_end_cidr,
    check_password,
    check_stack_name,
    check_store_name,
    check_subnets_free,
    check_subnets_in_vpc,
    check_values,
    load_settings,
    merge_tags,
    read_config,
)
from outsystems_redis.signing import public_key_pem
from outsystems_redis.sizing import InstanceTypeInfo, check_instance_type, check_zones_offer
from outsystems_redis.topology import Topology, build_topology

# What SSM Session Manager and Run Command (rolling maintenance: outsystems_redis.tools.maintenance)
# need on the instance, and nothing more: the agent registers (UpdateInstanceInformation)
# and takes Run Command's messages through ec2messages. The managed policy
# AmazonSSMManagedInstanceCore would also grant ssm:GetParameter on every
# parameter in the account; the servers may read only their own password.
SESSION_MANAGER_ACTIONS = [
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
]




# The argument's type for each kind of key (settings.ConfigKey.kind); a deferred key's argument also takes an
# Output. None (or an empty list or map) leaves the key's default.
_ANNOTATION = {"int": "int | None", "bool": "bool | None", "text": "str | None", "list": "Sequence[str]",
               "map": "Mapping[str, str]"}
_DEFERRED_ANNOTATION = {"text": "pulumi.Input[str] | None", "list": "Sequence[pulumi.Input[str]]"}


# Server numbers are numbers to a caller (the config's list holds their text).
_ANNOTATION_OF = {"replace_servers": "Sequence[int]"}


def _argument(key: ConfigKey) -> tuple[str, str, dataclasses.Field]:
    annotation = _ANNOTATION_OF.get(key.arg) or (_DEFERRED_ANNOTATION if key.deferred else _ANNOTATION)[key.kind]
    if key.applied == "required":
        return key.arg, annotation, field()
    # Keyword-only: the order of CONFIG_KEYS is the README's, not a calling convention.
    default = {"list": field(default=(), kw_only=True), "map": field(default_factory=dict, kw_only=True)}.get(
        key.kind, field(default=None, kw_only=True, repr=key.arg != "redis_password"))
    return key.arg, annotation, default


def _from_config(cls: type, raw: Mapping[str, str], stack: str,
                 health_check_python: str | None = None) -> SessionStoreArgs:
    """The arguments a stack's config holds (keys without the project prefix), checked as such: errors name
    the config keys."""
    load_settings(raw, stack)
    return _ConfigArgs(**{KEY_OF[key].arg: value for key, value in read_config(raw).items()}, stack=stack,
                       health_check_python=health_check_python)


# The session store's arguments: one per config key (settings.CONFIG_KEYS, in its order; the README's
# configuration table describes both), with the same checks; errors name the argument (the config key when
# the arguments came from `from_config`, which gives the subclass below).
SessionStoreArgs = dataclasses.make_dataclass(
    "SessionStoreArgs",
    [_argument(k) for k in sorted(CONFIG_KEYS, key=lambda k: k.applied != "required")] + [
        # Names what must be unique in the account and region (the Parameter Store paths, the log group,
        # the dashboard): default `<project>-<stack>` of the Pulumi program (this project's own stacks pass the
        # stack's name). Two stores in one program need two values.
        ("stack", "str | None", field(default=None, kw_only=True)),
        # The Python that runs the post-deploy check (it needs this package and redis-py); default: the
        # one running the program, relative to the working directory when it is inside it.
        ("health_check_python", "str | None", field(default=None, kw_only=True)),
    ],
    namespace={"from_config": classmethod(_from_config), "__module__": __name__, "__doc__": (
        "The session store's arguments: each config key's, in snake_case (`subnetCidrs` is `subnet_cidrs`).\n\n"
        + "\n".join(f"{k.arg}: {k.kind}{', or an Output' if k.deferred else ''}; default {k.default}"
                     for k in CONFIG_KEYS))},
)


class _ConfigArgs(SessionStoreArgs):
    """Arguments read from a stack's config (SessionStoreArgs.from_config): errors name the config keys.
    Otherwise they are SessionStoreArgs: equal to the same arguments given by hand, and shown as such."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionStoreArgs):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(SessionStoreArgs))

    __hash__ = None  # as the dataclass's own: mutable, so unhashable

    def __repr__(self) -> str:
        return "SessionStoreArgs" + SessionStoreArgs.__repr__(self).removeprefix(type(self).__qualname__)


def _names_config_keys(args: SessionStoreArgs) -> bool:
    return isinstance(args, _ConfigArgs)


# Config key -> argument, for every config key.
ARGUMENT_OF = {k.name: k.arg for k in CONFIG_KEYS}


def _values_of(args: SessionStoreArgs) -> dict[str, object]:
    """The arguments as typed values by config key (settings.check_values), each Output a deferred key takes
    replaced by its stand-in."""
    values: dict[str, object] = {}
    for key in CONFIG_KEYS:
        value = getattr(args, key.arg)
        if value is None:
            continue
        if key.kind == "list":
            if isinstance(value, (str, pulumi.Output)) or not isinstance(value, Sequence):
                raise SettingsError(key.name, "a single value", "a list, such as [\"...\"]")
            value = tuple(key.deferred if key.deferred and isinstance(v, pulumi.Output) else v for v in value)
            _plain(key, value)
            value = tuple(v if isinstance(v, str) else str(v) for v in value)
        elif key.kind == "map":
            _plain(key, value)
            if not isinstance(value, Mapping) or any(not isinstance(v, str) for v in value.values()):
                raise SettingsError(key.name, "a value that is not a plain string",
                                    "strings known when the program starts")
            value = dict(value)
        elif isinstance(value, pulumi.Output) and key.deferred:
            value = key.deferred
        else:
            _plain(key, value)
        if value is not None and value != () and value != {}:
            values[key.name] = value
    return values


def _plain(key: ConfigKey, value: object) -> None:
    """Refuse an Output where the store needs the value itself: it checks it, and looks up AWS from it."""
    if isinstance(value, pulumi.Output) or (isinstance(value, tuple) and any(isinstance(v, pulumi.Output)
                                                                             for v in value)):
        raise SettingsError(
            key.name, "an Output", "a plain value, known when the program starts: the store checks it, and looks "
            "up AWS from it, before it creates anything (Outputs are taken only by "
            + ", ".join(sorted(k.arg for k in CONFIG_KEYS if k.deferred)) + ")",
        )


def _named_for_arguments(error: SettingsError) -> SettingsError:
    """The same error, naming arguments: `subnetCidrs` is `subnet_cidrs`, in the key and wherever its text names
    a key (the check says where: SettingsError's `allowed`)."""
    return error.named(lambda key: ARGUMENT_OF.get(key, key), "argument")


def default_health_check_python() -> str:
    """The interpreter running this program, relative to the working directory when inside it.

    pulumi-command runs the check in the program's directory; a relative path keeps the command (an
    input in the state) the same on every operator's machine.
    """
    try:
        relative = os.path.relpath(sys.executable)
    except ValueError:
        return sys.executable
    return sys.executable if relative.startswith("..") else relative


def hsconf_snippet(connection_string: str) -> str:
    """The block an administrator pastes into each front-end's server.hsconf.

    XML-escaped: a password may hold `&` or `<`, which would otherwise break the file or change its meaning.
    """
    return (
        '<InMemorySessionConfiguration ProviderKey="Redis">\n'
        f'  <ConnectionString encrypted="false">{xml_escape(connection_string)}</ConnectionString>\n'
        "</InMemorySessionConfiguration>"
    )


def health_check_command(settings: Settings, topology: Topology, region: str, account: str | None,
                         python: str = ".venv/bin/python", sessions: Sequence[str] = ()) -> str:
    """The post-deploy check, run in the program's directory with `python` (this project: its virtualenv).

    `cloudwatch` (the default) needs only the deployer's AWS credentials, which must be for `account` (the
    check refuses others at once: a provider for another account is not the shell's), and each server's
    session (`sessions`, in server order: monitoring.server_session), which names the namespace it alone
    may publish in; `direct` needs a route to the servers.
    """
    args = [python, "-m", "outsystems_redis.tools.health"]
    if settings.health_check_via == "cloudwatch":
        if len(sessions) != len(topology.servers):
            raise ValueError(f"{len(topology.servers)} servers, {len(sessions)} sessions")
        args += ["--through-cloudwatch", "--stack", settings.stack, "--region", region]
        args += ["--account", account] if account else []
        args += ["--servers", ",".join(f"{s.name}={session}" for s, session in zip(topology.servers, sessions,
                                                                                    strict=True))]
        if settings.cluster:
            args.append("--cluster")
    else:
        args += ["--nodes", ",".join(p.address for p in (*topology.masters, *topology.replicas))]
        if settings.cluster:
            args.append("--cluster")
        args += ["--expect-version", PLATFORMS[settings.platform].redis_version]
        if settings.tls:
            # The CA's PEM arrives in the environment: no file to write or clean up.
            args += ["--cacert-env", "REDIS_CA_CERT"]
    args += ["--wait", str(settings.health_check_timeout)]
    return shlex.join(args)


@dataclass(frozen=True)
class AwsFacts:
    """What the store needs to know of the account before it creates anything."""

    vpc_id: str
    zones: list[str]
    front_end_cidrs: list[str]  # already defaulted (non-production: the VPC's CIDRs)
    ami_id: str
    memory_mib: int
    vcpus: int
    nat_subnet_id: str | None
    region: str
    account: str | None  # the account the store deploys into (the provider's), when the check needs it


def checked_settings(args: SessionStoreArgs) -> Settings:
    """The arguments through the stack config's own checks; values known only at deploy time kept as given."""
    names_keys = _names_config_keys(args)
    stack = args.stack if args.stack is not None else f"{pulumi.get_project()}-{pulumi.get_stack()}"
    check_stack_name(stack)
    settings = check_values(_values_of(args), stack)
    kept = {k.arg: getattr(args, k.arg) for k in CONFIG_KEYS
            if k.deferred and isinstance(getattr(args, k.arg), pulumi.Output)}
    # A deferred list as given: its Outputs, not the stand-ins checked in their place.
    kept |= {k.arg: tuple(getattr(args, k.arg) or ()) for k in CONFIG_KEYS if k.deferred and k.kind == "list"}
    password = args.redis_password
    if isinstance(password, pulumi.Output):

        def checked(value: str) -> str:
            try:
                check_password(value)
            except SettingsError as error:
                raise (error if names_keys else _named_for_arguments(error)) from None
            return value

        kept["redis_password"] = pulumi.Output.secret(password).apply(checked)
    return dataclasses.replace(settings, **kept)


def claim_stack(stack: str) -> None:
    """Refuse a second store with the same `stack` in one program: they would share parameters and logs."""
    claimed = _CLAIMED.setdefault(pulumi.runtime.settings.get_monitor() or _NO_ENGINE, set())
    if stack in claimed:
        raise SettingsError(
            "stack", stack, "a name no other store of this program has: two stores with one name would write the "
            "same Parameter Store parameters, log group and dashboard",
        )
    claimed.add(stack)


# The `stack` names in use, per program run (the engine connection: one per run, also under mocks).
_CLAIMED: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()
_NO_ENGINE = type("NoEngine", (), {})()


def look_up(s: Settings, invoke: pulumi.InvokeOptions | None = None) -> AwsFacts:
    """The AWS facts the settings depend on, each checked; the errors name config keys."""
    try:
        vpc = (aws.ec2.get_vpc(id=s.vpc_id, opts=invoke) if s.vpc_id
               else aws.ec2.get_vpc(default=True, opts=invoke))
    except Exception as exc:
        # The provider's words when nothing matched ("no matching EC2 VPC found"); any other error is not ours.
        if "no matching" not in str(exc) or "VPC found" not in str(exc):
            raise
        if s.vpc_id:
            raise SettingsError("vpcId", s.vpc_id, "the id of a VPC in this account and region") from None
        raise SettingsError("vpcId", None, lambda n: "the id of the VPC to deploy into: this region has no default "
                            f"VPC (set {n('vpcId')} to vpc-...; then {n('subnetCidrs')} inside its CIDR)") from None
    vpc_cidrs = [a.cidr_block for a in vpc.cidr_block_associations] or [vpc.cidr_block]
    check_subnets_in_vpc(s, vpc_cidrs)
    in_vpc = aws.ec2.get_subnets(filters=[aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc.id])],
                                 opts=invoke).ids
    subnets = [aws.ec2.get_subnet(id=subnet_id, opts=invoke) for subnet_id in sorted(in_vpc)]
    check_subnets_free(s, [(n.id, n.cidr_block, dict(n.tags or {})) for n in subnets])

    try:
        spec = aws.ec2.get_instance_type(instance_type=s.instance_type, opts=invoke)
    except Exception as exc:
        # EC2's error code for a type it does not know (a typo, or one this region lacks); any other is not ours.
        if "InvalidInstanceType" not in str(exc):
            raise
        raise SettingsError("instanceType", s.instance_type,
                            "an EC2 instance type that this region offers, such as c5.xlarge") from None
    if "x86_64" not in spec.supported_architectures:
        raise SettingsError("instanceType", s.instance_type, "an x86_64 instance type (the Ubuntu AMI is amd64)")
    check_instance_type(
        InstanceTypeInfo(
            name=s.instance_type,
            vcpus=spec.default_vcpus,
            memory_mib=spec.memory_size,
            sustained_clock_ghz=spec.sustained_clock_speed,
            burstable=spec.burstable_performance_supported,
        ),
        s,
    )

    # Only the region's own zones: opted-in Local and Wavelength zones sort first
    # ("eu-west-1-lax-1a" < "eu-west-1a") and lack the instance types we need.
    available = aws.get_availability_zones(
        state="available",
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
        opts=invoke,
    ).names
    zones = list(s.availability_zones)
    if not zones:
        if len(available) < len(s.subnet_cidrs):
            raise SettingsError(
                "subnetCidrs",
                list(s.subnet_cidrs),
                f"at most {len(available)} subnets, one per availability zone of this region",
            )
        zones = sorted(available)[: len(s.subnet_cidrs)]
    offerings = aws.ec2.get_instance_type_offerings(
        location_type="availability-zone",
        filters=[aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="instance-type", values=[s.instance_type])],
        opts=invoke,
    )
    check_zones_offer(s.instance_type, zones, set(offerings.locations), set(available), bool(s.availability_zones))

    # Canonical's public parameter, read once when a server is created (ami is in
    # ignore_changes): a newer image never replaces a running server.
    ami_id = s.ami_id or aws.ssm.get_parameter(name=PLATFORMS[s.platform].ami_parameter, opts=invoke).value

    nat_subnet_id = s.nat_subnet_id
    if not s.nat_gateway_id and not nat_subnet_id:
        public = aws.ec2.get_subnets(
            filters=[
                aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc.id]),
                aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
            ],
            opts=invoke,
        ).ids
        if not public:
            raise SettingsError(
                "natGatewayId",
                None,
                lambda n: f"the id of a NAT gateway in this VPC, or {n('natSubnetId')}: a public "
                          "subnet for the NAT gateway this program creates (the VPC has no default subnet)",
            )
        nat_subnet_id = sorted(public)[0]

    # Non-production defaults to the whole VPC; production must list its front-ends.
    front_end_cidrs = list(s.front_end_cidrs) or ([] if s.front_end_security_group_ids else vpc_cidrs)
    for cidr in front_end_cidrs:
        check_front_end_cidr(cidr, "frontEndCidrs" if s.front_end_cidrs else "frontEndCidrs (default: the VPC's CIDR)")

    return AwsFacts(
        vpc_id=vpc.id,
        zones=zones,
        front_end_cidrs=front_end_cidrs,
        ami_id=ami_id,
        memory_mib=spec.memory_size,
        vcpus=spec.default_vcpus,
        nat_subnet_id=nat_subnet_id,
        region=aws.get_region(opts=invoke).region,
        # Only the check through CloudWatch needs it (it refuses credentials for another account).
        account=(aws.get_caller_identity(opts=invoke).account_id
                 if s.health_check and s.health_check_via == "cloudwatch" else None),
    )


def _invoke_options(opts: pulumi.ResourceOptions | None) -> pulumi.InvokeOptions | None:
    """Look-ups through the provider the store itself will use (another region or account), if one is given."""
    if opts is None:
        return None
    provider = opts.provider
    if provider is None and isinstance(opts.providers, Mapping):
        provider = opts.providers.get("aws")
    elif provider is None and opts.providers:
        provider = next((p for p in opts.providers if getattr(p, "package", None) == "aws"), None)
    return pulumi.InvokeOptions(parent=opts.parent, provider=provider)


class RedisSessionStore(pulumi.ComponentResource):
    """The OutSystems Redis session store: one server (non-production) or a crossed Redis Cluster (production)."""

    def __init__(self, name: str, args: SessionStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Every check and look-up first: a bad argument must leave nothing registered.
        try:
            check_store_name(name)
            s = checked_settings(args)
            facts = look_up(s, _invoke_options(opts))
            claim_stack(s.stack)
        except SettingsError as error:
            if _names_config_keys(args):
                raise
            raise _named_for_arguments(error) from None
        super().__init__("outsystems:redis:Environment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The user's tags (config `tags`) on every resource that takes tags; ours win on a conflict.
        tags = merge_tags(s.tags, {"Project": NAMESPACE, "Stack": s.stack, "OutsystemsTier": s.minimums.tier})
        topology = build_topology(s.servers, s.subnet_cidrs, s.port, name_prefix=f"{name}-server")

        if s.redis_password is not None:
            password: pulumi.Output[str] = pulumi.Output.secret(s.redis_password)
        else:
            # Letters and digits only: always safe in a StackExchange.Redis
            # connection string and in redis.conf. The result is a secret.
            password = pulumi.Output.secret(
                random.RandomPassword(
                    f"{name}-password",
                    length=40,
                    special=False,
                    min_upper=2,
                    min_lower=2,
                    min_numeric=2,
                    opts=child,
                ).result
            )
        self.parameter = aws.ssm.Parameter(
            f"{name}-password",
            name=password_parameter(s.stack),
            type="SecureString",
            value=password,
            description="Redis password of the OutSystems session store (requirepass/masterauth)",
            tags=tags,
            opts=child,
        )
        # The servers' scripts know CONFIG and SLOWLOG (and ACL on 7.0) by names made from this secret, which
        # the front-ends never get (redis_conf.SECRET_NAMED_COMMANDS). Letters and digits: a command name.
        self.ops_parameter = aws.ssm.Parameter(
            f"{name}-ops-password",
            name=ops_password_parameter(s.stack),
            type="SecureString",
            value=pulumi.Output.secret(
                random.RandomPassword(f"{name}-ops-password", length=40, special=False, opts=child).result),
            description="Operations secret of the OutSystems session store: the names of Redis "
                        f"{PLATFORMS[s.platform].redis_version}'s administrative commands on its servers",
            tags=tags,
            opts=child,
        )

        self.network = RedisNetwork(
            f"{name}-network",
            NetworkArgs(
                vpc_id=facts.vpc_id,
                subnet_cidrs=list(s.subnet_cidrs),
                zones=facts.zones,
                client_ports=list(topology.client_ports),
                bus_ports=list(topology.bus_ports),
                front_end_cidrs=facts.front_end_cidrs,
                front_end_security_group_ids=list(s.front_end_security_group_ids),
                nat_gateway_id=s.nat_gateway_id,
                nat_subnet_id=facts.nat_subnet_id,
                tags=tags,
            ),
            opts=child,
        )

        role = aws.iam.Role(
            f"{name}-server-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags=tags,
            opts=child,
        )
        self.ca_certificate: pulumi.Output[str] | None = None
        tls_parameters = self._certificates(name, s.stack, topology, tags) if s.tls else []
        # The programs the servers fetch are signed with a key only the state holds (outsystems_redis/signing.py);
        # the servers get its public half in their user data. Never replace it: servers created before
        # would refuse every program signed with the new key (and keep running their last good copies).
        signing_seed = pulumi.Output.secret(
            random.RandomPassword(f"{name}-tools-signing-seed", length=64, special=False, opts=child).result)
        tools_public_key = pulumi.Output.unsecret(signing_seed.apply(public_key_pem))
        self.observability = RedisObservability(
            f"{name}-observability",
            ObservabilityArgs(settings=s, region=facts.region, tags=tags, server_role_arn=role.arn,
                              tools=fetched_tools(), tools_signing_seed=signing_seed),
            opts=child,
        )
        obs = self.observability
        readable = [self.parameter.arn, obs.bucket_parameter.arn, self.ops_parameter.arn]
        if tls_parameters:
            # The TLS material by its folder (/outsystems-redis/<stack>/tls/*): the one server role reads every
            # server's key anyway, and two ARNs per server pass IAM's 10,240 characters for a role's inline
            # policies past about 47 servers.
            readable.append(tls_parameters[0].arn.apply(lambda arn: arn.rsplit("/", 1)[0] + "/*"))
        policy = aws.iam.RolePolicy(
            f"{name}-server-policy",
            role=role.id,
            policy=pulumi.Output.all(
                logs=obs.log_group.arn, bucket=obs.bucket.arn, readable=pulumi.Output.all(*readable)
            ).apply(
                lambda arns: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            # Only this stack's own parameters: the password, the TLS material when on,
                            # and the backup bucket's name.
                            {
                                "Sid": "ReadOwnSecrets",
                                "Effect": "Allow",
                                "Action": "ssm:GetParameter",
                                "Resource": list(arns["readable"]),
                            },
                            {
                                "Sid": "SessionManager",
                                "Effect": "Allow",
                                "Action": SESSION_MANAGER_ACTIONS,
                                "Resource": "*",
                            },
                            # Metrics in the stack's namespace, its own log group, its own bucket prefixes.
                            *server_statements(s.stack, arns["logs"], arns["bucket"]),
                        ],
                    }
                )
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-server-profile", role=role.name, tags=tags, opts=child)

        self.servers: list[RedisServer] = []
        for server in topology.servers:
            server_tags = merge_tags(tags, {
                "RedisServerIndex": str(server.index),
                # Space-separated: a comma is not among the tag characters every AWS service accepts.
                "RedisRoles": " ".join(f"{p.role}:{p.port}" for p in server.processes),
                "VCpus": str(facts.vcpus),
                "MemoryMiB": str(facts.memory_mib),
            })
            self.servers.append(
                RedisServer(
                    server.name,
                    ServerArgs(
                        ami_id=facts.ami_id,
                        instance_type=s.instance_type,
                        subnet_id=self.network.subnets[server.subnet].id,
                        private_ip=server.private_ip,
                        security_group_id=self.network.security_group_id,
                        instance_profile=profile.name,
                        # The bucket by name (not its parameter): what a server fetches and runs comes from there.
                        user_data_base64=pulumi.Output.all(tools_public_key, obs.bucket.bucket).apply(
                            lambda keyed, index=server.index: encode_user_data(
                                render_cloud_config(
                                    s,
                                    topology,
                                    index,
                                    memory_mib=facts.memory_mib,
                                    password_parameter=password_parameter(s.stack),
                                    region=facts.region,
                                    tools_public_key=keyed[0],
                                    bucket=keyed[1],
                                )
                            )
                        ),
                        root_volume_gib=s.root_volume_gib,
                        protect=s.protect,
                        rebuild=server.index + 1 in s.replace_servers,
                        tags=server_tags,
                        # The secrets in Parameter Store, the right to read them, the way out, and
                        # where the metrics, logs and snapshots go.
                        depends_on=[
                            self.parameter, self.ops_parameter,
                            *tls_parameters, profile, policy, *self.network.ready,
                            *obs.first_boot_needs,
                        ],
                        region=facts.region,
                        alarm_actions=[obs.topic_arn],
                    ),
                    opts=child,
                )
            )

        self.topology = topology
        self.private_ips = [srv.private_ip for srv in self.servers]
        # Server order: each server's session (its role's unique id and its instance id), which names the
        # metric namespace it alone publishes in: read by the CloudWatch check, the alarms and the dashboard.
        sessions = [pulumi.Output.all(role.unique_id, srv.instance.id).apply(lambda v: server_session(*v))
                    for srv in self.servers]
        self.health_check = None
        if s.health_check:
            python = args.health_check_python or default_health_check_python()
            check: pulumi.Input[str] = health_check_command(s, topology, facts.region, facts.account, python) \
                if s.health_check_via == "direct" else pulumi.Output.all(*sessions).apply(
                    lambda v: health_check_command(s, topology, facts.region, facts.account, python, list(v)))
            if s.health_check_via == "direct":
                # A new password changes the environment, so the check runs again and waits
                # (--wait) until every server has taken it (redis-password-sync, every minute).
                environment = {"REDIS_PASSWORD": password, **({"REDIS_CA_CERT": self.ca_certificate} if s.tls else {})}
            else:
                # No secret: it reads CloudWatch with the deploying shell's credentials, and the stack's
                # AWS profile when the provider has one (boto3 does not read Pulumi's config).
                profile = pulumi.Config("aws").get("profile")
                environment = {"AWS_PROFILE": profile} if profile else None
            self.health_check = command.local.Command(
                f"{name}-health-check",
                create=check,
                update=check,
                environment=environment,
                # Runs again whenever a server is created or replaced.
                triggers=[srv.instance.id for srv in self.servers],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[srv.instance for srv in self.servers],
                ),
            )

        # The alarms come once the check has seen every server healthy: a server still in its first
        # boot publishes nothing, and its heartbeat alarm would page for a server not yet in service.
        obs.watch(
            [WatchedServer(srv_name.name, srv.instance.id, session)
             for srv_name, srv, session in zip(topology.servers, self.servers, sessions, strict=True)],
            after=[self.health_check] if self.health_check is not None else [],
        )

        # With the check on, the connection string (and hsconf snippet) resolve only once it passed; with
        # the direct check, that is once every Redis process has accepted this password, so after a
        # password change the outputs never hand OutSystems a password the servers still refuse.
        accepted = [self.health_check.stdout] if self.health_check is not None else []
        self.connection_string = pulumi.Output.secret(
            pulumi.Output.all(password, *accepted).apply(lambda v: topology.connection_string(v[0], s.tls))
        )
        self.hsconf = pulumi.Output.secret(self.connection_string.apply(hsconf_snippet))

        # What a caller wires next (this project exports each; README "Outputs").
        self.settings = s
        self.instance_ids = [srv.instance.id for srv in self.servers]  # server order: `aws ssm start-session`
        # Server order: where each server alone publishes (its session ends it: the health check's --servers).
        self.metric_namespaces = [session.apply(lambda v: metric_namespace(s.stack, v)) for session in sessions]
        self.redis_version = PLATFORMS[s.platform].redis_version
        self.password_parameter = self.parameter.name
        self.alarm_topic_arn = obs.topic_arn
        self.log_group_name = obs.log_group.name
        self.dashboard_name = obs.dashboard.dashboard_name
        self.backup_bucket = obs.bucket.bucket
        # Holds no password, but the check's environment does: kept secret on purpose rather than by
        # pulumi-command's inference, so no report ever lands in plain text in the state.
        self.health_report = (pulumi.Output.secret(self.health_check.stdout)
                              if self.health_check is not None else None)

        self.register_outputs(
            {
                "private_ips": self.private_ips,
                "subnet_ids": self.network.subnet_ids,
                "security_group_id": self.network.security_group_id,
                "connection_string": self.connection_string,
            }
        )

    def _certificates(self, name: str, stack: str, topology: Topology, tags: dict[str, str]) -> list[aws.ssm.Parameter]:
        """A private CA and one certificate per server, delivered through Parameter Store."""
        child = pulumi.ResourceOptions(parent=self)
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"outsystems-redis {stack} CA", organization="outsystems-redis"
            ),
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing"],
            opts=child,
        )
        self.ca_certificate = ca.cert_pem
        parameters = [
            aws.ssm.Parameter(
                f"{name}-tls-ca",
                name=tls_ca_parameter(stack),
                type="String",
                value=ca.cert_pem,
                description="CA certificate of the Redis servers' TLS",
                tags=tags,
                opts=child,
            )
        ]
        for server in topology.servers:
            key = tls.PrivateKey(f"{server.name}-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            request = tls.CertRequest(
                f"{server.name}-tls-request",
                private_key_pem=key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(common_name=server.private_ip, organization="outsystems-redis"),
                ip_addresses=server_certificate_ips(server),
                opts=child,
            )
            cert = tls.LocallySignedCert(
                f"{server.name}-tls-cert",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca.cert_pem,
                validity_period_hours=SERVER_VALIDITY_HOURS,
                early_renewal_hours=EARLY_RENEWAL_HOURS,
                # Server and client: the same certificate serves clients and dials peers
                # on the cluster bus and for replication.
                allowed_uses=["digital_signature", "key_encipherment", "server_auth", "client_auth"],
                opts=child,
            )
            parameters += [
                aws.ssm.Parameter(
                    f"{server.name}-tls-cert",
                    name=tls_cert_parameter(stack, server.index),
                    type="String",
                    value=cert.cert_pem,
                    tags=tags,
                    opts=child,
                ),
                aws.ssm.Parameter(
                    f"{server.name}-tls-key",
                    name=tls_key_parameter(stack, server.index),
                    type="SecureString",
                    value=pulumi.Output.secret(key.private_key_pem),
                    tags=tags,
                    opts=child,
                ),
            ]
        return parameters
