"""The policy pack's checks, as plain functions over plain property dicts.

Each function takes the properties of a resource the way a policy sees them
(pulumi-aws 7 input names in camelCase) and returns a list of violation
messages, empty when the resource complies. Nothing here imports pulumi, so the
tests call these directly, on the mocked program's resources and on crafted
bad ones. `__main__.py` only wires them into the policy pack.

Values that are unknown during a preview arrive as `UNKNOWN`. A check that
needs such a value to prove compliance reports it rather than guessing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from outsystems_redis.settings import PRIVATE_RANGES
from outsystems_redis.sizing import NON_PRODUCTION, PRODUCTION, Minimums
from outsystems_redis.topology import BUS_PORT_OFFSET, MASTER_PORT, REPLICA_PORT, follows


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN: Any = _Unknown()

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INSTANCE = "aws:ec2/instance:Instance"
SUBNET = "aws:ec2/subnet:Subnet"
EBS_VOLUME = "aws:ebs/volume:Volume"
EIP = "aws:ec2/eip:Eip"
EIP_ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
NETWORK_INTERFACE = "aws:ec2/networkInterface:NetworkInterface"

SSH_PORT = 22
OPEN_CIDRS = ("0.0.0.0/0", "::/0")
TIERS: dict[str, Minimums] = {m.tier: m for m in (NON_PRODUCTION, PRODUCTION)}
# AWS names every burstable family t<generation>[suffix] (t2, t3, t3a, t4g).
# Burstable CPU runs out of credits under steady session traffic.
BURSTABLE = re.compile(r"^t\d+[a-z]*\.")


def known(value: Any) -> bool:
    return value is not UNKNOWN


# ---------------------------------------------------------------- ingress rules


@dataclass(frozen=True)
class Ingress:
    """One ingress permission, whatever resource shape declared it."""

    where: str  # how a message names it
    group: Any  # the security group it opens (id, or a reference the wiring resolved)
    protocol: Any
    from_port: Any
    to_port: Any
    cidrs: tuple[Any, ...] = ()
    ipv6_cidrs: tuple[Any, ...] = ()
    groups: tuple[Any, ...] = ()  # source security groups
    self_source: bool = False  # the group itself is the source
    prefix_lists: tuple[Any, ...] = ()

    @property
    def all_ports(self) -> bool:
        return str(self.protocol) in ("-1", "all")

    def covers(self, port: int) -> bool:
        if self.all_ports:
            return True
        if not known(self.from_port) or not known(self.to_port) or self.from_port is None:
            return True  # unknown: assume the worst
        hi = self.to_port if self.to_port is not None else self.from_port
        return int(self.from_port) <= port <= int(hi)

    def port_text(self) -> str:
        if self.all_ports:
            return "all ports"
        lo, hi = (int(p) if isinstance(p, (int, float)) else p for p in (self.from_port, self.to_port))
        if lo == hi or hi is None:
            return f"port {lo}"
        return f"ports {lo}-{hi}"


def _tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if value is UNKNOWN:
        return (UNKNOWN,)
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def ingress_of(resource_type: str, name: str, props: Mapping[str, Any]) -> list[Ingress]:
    """Normalise the three ways pulumi-aws declares ingress into `Ingress` entries."""
    if resource_type == INGRESS_RULE:
        return [
            Ingress(
                where=f"ingress rule {name}",
                group=props.get("securityGroupId"),
                protocol=props.get("ipProtocol"),
                from_port=props.get("fromPort"),
                to_port=props.get("toPort"),
                cidrs=_tuple(props.get("cidrIpv4")),
                ipv6_cidrs=_tuple(props.get("cidrIpv6")),
                groups=_tuple(props.get("referencedSecurityGroupId")),
                prefix_lists=_tuple(props.get("prefixListId")),
            )
        ]
    if resource_type == SECURITY_GROUP_RULE:
        if props.get("type") != "ingress":
            return []
        return [
            Ingress(
                where=f"security group rule {name}",
                group=props.get("securityGroupId"),
                protocol=props.get("protocol"),
                from_port=props.get("fromPort"),
                to_port=props.get("toPort"),
                cidrs=_tuple(props.get("cidrBlocks")),
                ipv6_cidrs=_tuple(props.get("ipv6CidrBlocks")),
                groups=_tuple(props.get("sourceSecurityGroupId")),
                self_source=props.get("self") is True,
                prefix_lists=_tuple(props.get("prefixListIds")),
            )
        ]
    if resource_type == SECURITY_GROUP:
        entries = props.get("ingress") or []
        if entries is UNKNOWN:
            return [Ingress(f"security group {name} (inline ingress unknown during preview)", None, "-1", 0, 0,
                            cidrs=(UNKNOWN,))]
        return [
            Ingress(
                where=f"inline ingress #{i + 1} of security group {name}",
                group=None,
                protocol=e.get("protocol"),
                from_port=e.get("fromPort"),
                to_port=e.get("toPort"),
                cidrs=_tuple(e.get("cidrBlocks")),
                ipv6_cidrs=_tuple(e.get("ipv6CidrBlocks")),
                groups=_tuple(e.get("securityGroups")),
                self_source=e.get("self") is True,
                prefix_lists=_tuple(e.get("prefixListIds")),
            )
            for i, e in enumerate(entries)
        ]
    return []


def open_ingress_violations(resource_type: str, name: str, props: Mapping[str, Any]) -> list[str]:
    """No ingress from the whole internet, and no SSH: servers are reached through SSM Session Manager."""
    out: list[str] = []
    for rule in ingress_of(resource_type, name, props):
        for cidr in rule.cidrs + rule.ipv6_cidrs:
            if not known(cidr):
                out.append(f"{rule.where}: its source CIDR is unknown during preview; use a literal private CIDR "
                           "so the policy can check it")
            elif _is_world(str(cidr)):
                out.append(f"{rule.where} opens {rule.port_text()} to {cidr} (the whole internet); "
                           "replace it with the OutSystems front-end CIDRs (config frontEndCidrs) "
                           "or their security groups (frontEndSecurityGroupIds)")
        if rule.covers(SSH_PORT):
            out.append(f"{rule.where} allows {rule.port_text()}, which includes SSH (22); remove it: "
                       "administrators reach the servers through SSM Session Manager, never SSH")
    return out


def _is_world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return cidr in OPEN_CIDRS


@dataclass(frozen=True)
class DeclaredSources:
    """The front-ends a stack declares in its config (frontEndCidrs, frontEndSecurityGroupIds)."""

    cidrs: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    client_ports: tuple[int, ...] = (6379, MASTER_PORT, REPLICA_PORT)
    bus_ports: tuple[int, ...] = (MASTER_PORT + BUS_PORT_OFFSET, REPLICA_PORT + BUS_PORT_OFFSET)


def redis_source_violations(rules: Iterable[Ingress], declared: DeclaredSources) -> list[str]:
    """Client ports only from declared front-ends (or the Redis group itself); bus ports only from the group.

    When a stack declares no front-ends, the program defaults to the VPC's CIDR,
    which the policy cannot see: any private range is then accepted, never a
    public one. A production stack must declare its front-ends (settings.py).
    """
    out: list[str] = []
    for rule in rules:
        client = [p for p in declared.client_ports if rule.covers(p)]
        bus = [p for p in declared.bus_ports if rule.covers(p)]
        if not client and not bus:
            continue
        own = rule.self_source or (known(rule.group) and rule.group is not None and rule.group in rule.groups)
        others = [g for g in rule.groups if not (own and g == rule.group)]
        if bus:
            ports = "/".join(str(p) for p in bus)
            if rule.cidrs or rule.ipv6_cidrs or rule.prefix_lists or others or not own:
                out.append(f"{rule.where} opens the cluster bus ({ports}) to a source other than the Redis "
                           "security group itself; the bus is between Redis servers only: use the Redis group "
                           "as the only source (referencedSecurityGroupId = securityGroupId)")
        if client:
            ports = "/".join(str(p) for p in client)
            for cidr in rule.cidrs:
                if not _declared_cidr(cidr, declared):
                    allowed = ", ".join(declared.cidrs) or "private ranges"
                    out.append(f"{rule.where} lets {cidr} reach Redis ({ports}), which is not a declared "
                               f"front-end source ({allowed}); add it to config frontEndCidrs or remove the rule")
            for cidr in rule.ipv6_cidrs + rule.prefix_lists:
                out.append(f"{rule.where} lets {cidr} reach Redis ({ports}); only the declared IPv4 front-end "
                           "CIDRs and security groups may: remove it")
            for group in others:
                if not known(group) or group not in declared.groups:
                    out.append(f"{rule.where} lets security group {group} reach Redis ({ports}), which is not a "
                               "declared front-end group; add it to config frontEndSecurityGroupIds or remove it")
    return out


def _declared_cidr(cidr: Any, declared: DeclaredSources) -> bool:
    if not known(cidr):
        return False
    if declared.cidrs or declared.groups:
        return cidr in declared.cidrs
    try:
        net = ipaddress.ip_network(str(cidr), strict=True)
    except ValueError:
        return False
    return net.version == 4 and net.prefixlen > 0 and any(net.subnet_of(r) for r in PRIVATE_RANGES)


# ---------------------------------------------------------------- servers


def tags_of(props: Mapping[str, Any]) -> dict[str, Any]:
    tags = props.get("tags")
    return dict(tags) if isinstance(tags, Mapping) else {}


def minimums_for_tags(props: Mapping[str, Any]) -> Minimums | None:
    """The tier the program recorded on the server (tag OutsystemsTier)."""
    return TIERS.get(str(tags_of(props).get("OutsystemsTier")))


def server_minimum_violations(name: str, props: Mapping[str, Any], minimums: Minimums | None) -> list[str]:
    """vCPU, memory, non-burstable CPU and root volume against the OutSystems tier minimums.

    A policy cannot ask AWS what an instance type offers, and a hand-written
    table of types would drift. So vCPU and memory come from the tags VCpus and
    MemoryMiB, which the program writes from aws.ec2.get_instance_type, the
    same lookup its own check (outsystems_redis/sizing.py) uses. Burstable families
    are rejected by name (AWS names them all t<n>). The clock speed has no tag
    and is checked by the program only.
    """
    out: list[str] = []
    tags = tags_of(props)
    itype = props.get("instanceType")
    if minimums is None:
        out.append(f"server {name} has no OutsystemsTier tag (non-production or production), so its minimums "
                   "are unknown; the program tags every server with its tier")
        minimums = PRODUCTION
    need = f"the OutSystems {minimums.tier} minimums ({minimums.vcpus} vCPU, {minimums.memory_mib / 1024:g} GiB)"
    if known(itype) and itype is not None and BURSTABLE.match(str(itype)):
        out.append(f"server {name} uses {itype}, a burstable type that runs out of CPU credits under steady "
                   f"session traffic; set config instanceType to a non-burstable type meeting {need}, "
                   "e.g. c5.large (non-production) or c5.xlarge (production)")
    for tag, least, unit in (("VCpus", minimums.vcpus, "vCPU"), ("MemoryMiB", minimums.memory_mib, "MiB")):
        raw = tags.get(tag)
        try:
            value = int(str(raw))
        except ValueError:
            out.append(f"server {name} ({itype}) lacks a numeric {tag} tag (from aws.ec2.get_instance_type), "
                       f"so the policy cannot prove it meets {need}")
            continue
        if value < least:
            out.append(f"server {name} ({itype}) has {value} {unit}, below {need}; set config instanceType "
                       f"to a type with at least {least} {unit}")
    size = (props.get("rootBlockDevice") or {}).get("volumeSize")
    if size is None or not known(size) or int(size) < minimums.disk_gib:
        shown = "the AMI's default size" if size is None else f"{size} GiB"
        out.append(f"server {name} has a root volume of {shown}; set rootBlockDevice.volumeSize "
                   f"(config rootVolumeGiB) to at least {minimums.disk_gib} GiB")
    return out


def imdsv2_violations(name: str, props: Mapping[str, Any]) -> list[str]:
    tokens = (props.get("metadataOptions") or {}).get("httpTokens")
    if tokens != "required":
        return [f"instance {name} has metadataOptions.httpTokens={tokens!r}; set it to \"required\" (IMDSv2 only), "
                "so a request forged through the server cannot read its instance credentials"]
    return []


def encryption_violations(resource_type: str, name: str, props: Mapping[str, Any]) -> list[str]:
    """Sessions are written to disk (RDB snapshots, swap): every volume must be encrypted."""
    out: list[str] = []
    if resource_type == INSTANCE:
        root = props.get("rootBlockDevice") or {}
        if root.get("encrypted") is not True:
            out.append(f"instance {name}: set rootBlockDevice.encrypted to true (its root volume is not encrypted)")
        for i, dev in enumerate(props.get("ebsBlockDevices") or []):
            if dev.get("encrypted") is not True:
                out.append(f"instance {name}: set encrypted to true on ebsBlockDevices[{i}] "
                           f"({dev.get('deviceName', '?')})")
    elif resource_type == EBS_VOLUME and props.get("encrypted") is not True:
        out.append(f"EBS volume {name}: set encrypted to true")
    return out


def public_ip_violations(resource_type: str, name: str, props: Mapping[str, Any]) -> list[str]:
    """The session store lives on private subnets only: no public address on any path."""
    if resource_type == INSTANCE and props.get("associatePublicIpAddress") is not False:
        return [f"instance {name} has associatePublicIpAddress={props.get('associatePublicIpAddress')!r}; "
                "set it to false: Redis servers are never reachable from the internet"]
    if resource_type == SUBNET and props.get("mapPublicIpOnLaunch") is True:
        return [f"subnet {name} sets mapPublicIpOnLaunch=true; set it to false: the Redis subnets are private"]
    if resource_type == EIP and props.get("instance") not in (None, ""):
        return [f"elastic IP {name} is attached to instance {props.get('instance')}; remove the attachment: "
                "Redis servers never get a public address"]
    if resource_type == EIP_ASSOCIATION and props.get("instanceId") not in (None, ""):
        return [f"EIP association {name} gives instance {props.get('instanceId')} a public address; remove it"]
    return []


# ---------------------------------------------------------------- the stack


@dataclass(frozen=True)
class ServerFacts:
    name: str
    tags: Mapping[str, Any]
    subnet: Any  # a key the wiring resolved to one of `subnets`, or UNKNOWN


def _roles(tags: Mapping[str, Any]) -> dict[str, int]:
    """"master:7000 replica:7001" (or, on stacks created before 0.3, comma-separated) -> {"master": 7000, ...}."""
    roles: dict[str, int] = {}
    for item in re.split(r"[\s,]+", str(tags.get("RedisRoles") or "")):
        role, _, port = item.strip().partition(":")
        if role and port.isdigit():
            roles[role] = int(port)
    return roles


def topology_violations(
    servers: Sequence[ServerFacts],
    subnets: Mapping[Any, Any],
    configured_subnets: Sequence[str],
    production: bool,
) -> list[str]:
    """A production cluster: >= 3 servers, spread over the configured subnets, replicas crossed.

    `subnets` maps a subnet key to its CIDR block. Roles come from the tags the
    program writes from outsystems_redis/topology.py, the same data its cloud-init
    is rendered from: RedisServerIndex and RedisRoles ("master:7000 replica:7001").
    Which master a replica follows is not tagged (a tag would change on
    existing servers at every scale-out); it is the ring of
    outsystems_redis/topology.follows over the server indexes, which must therefore
    be exactly 0..N-1. An explicit RedisReplicaFollows tag, if present, wins.
    """
    out: list[str] = []
    if not production:
        return out
    least = PRODUCTION.servers
    if len(servers) < least:
        out.append(f"the production cluster has {len(servers)} Redis server(s); OutSystems requires at least "
                   f"{least}: set config servers to {least} or more")
    configured = list(configured_subnets)
    used: set[Any] = set()
    for s in servers:
        cidr = subnets.get(s.subnet) if known(s.subnet) else None
        if cidr is None:
            out.append(f"server {s.name} is not in one of this stack's Redis subnets; place it in a subnet the "
                       "program creates from config subnetCidrs")
        elif configured and cidr not in configured:
            out.append(f"server {s.name} is in subnet {cidr}, which is not in config subnetCidrs "
                       f"({', '.join(configured)})")
        else:
            used.add(cidr)
    spread = min(len(configured) or 1, len(servers))
    if servers and len(used) < spread:
        out.append(f"the production servers use {len(used)} of the {len(configured)} configured subnets; "
                   f"spread them over at least {spread} (one per availability zone) so one zone's outage "
                   "cannot take a majority of masters")

    index: dict[int, str] = {}
    for s in servers:
        raw = str(s.tags.get("RedisServerIndex", ""))
        if not raw.isdigit():
            out.append(f"server {s.name} lacks the RedisServerIndex tag, so its replica placement cannot be checked")
        elif int(raw) in index:
            out.append(f"servers {index[int(raw)]} and {s.name} both have RedisServerIndex {raw}; each server "
                       "needs its own index, or two replicas follow one master and another master has none")
        else:
            index[int(raw)] = s.name
    if index and sorted(index) != list(range(len(servers))):
        out.append(f"the server indexes are {sorted(index)}, not 0..{len(servers) - 1}; the crossed replica ring "
                   "(outsystems_redis/topology.py) needs every index exactly once")
    followed: dict[int, list[str]] = {}
    for s in servers:
        roles = _roles(s.tags)
        own = str(s.tags.get("RedisServerIndex", ""))
        if "master" not in roles:
            out.append(f"server {s.name} runs no master (RedisRoles={s.tags.get('RedisRoles')!r}); each production "
                       f"server runs a master on {MASTER_PORT} and a replica on {REPLICA_PORT}")
        if "replica" not in roles:
            out.append(f"server {s.name} runs no replica (RedisRoles={s.tags.get('RedisRoles')!r}); each production "
                       f"server must run a replica on {REPLICA_PORT} following another server's master, or a lost "
                       "server loses its slots' sessions")
            continue
        if not own.isdigit():
            continue
        target = str(s.tags.get("RedisReplicaFollows", follows(int(own), len(servers))))
        if not target.isdigit():
            out.append(f"server {s.name} has RedisReplicaFollows={target!r}; it must name a server index")
            continue
        if target == own:
            out.append(f"the replica on server {s.name} follows the master on its own server; cross it onto "
                       "another server's master (outsystems_redis/topology.py places replica i after master i+1)")
        elif int(target) not in index:
            out.append(f"the replica on server {s.name} follows server index {target}, which does not exist")
        followed.setdefault(int(target), []).append(s.name)
    for i, name in sorted(index.items()):
        if "master" in _roles(next(s.tags for s in servers if s.name == name)) and len(followed.get(i, [])) != 1:
            count = len(followed.get(i, []))
            out.append(f"the master on server {name} has {count} replicas on other servers; each master needs "
                       "exactly one crossed replica")
    return out


# ---------------------------------------------------------------- backups and alarms

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
BUCKET_VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
BUCKET_PUBLIC_ACCESS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
PUBLIC_ACCESS_SETTINGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


@dataclass(frozen=True)
class BucketFacts:
    """A bucket, with the props of the configuration resources the wiring found aimed at it."""

    name: str
    props: Mapping[str, Any]
    encryption: tuple[Mapping[str, Any], ...] = ()
    versioning: tuple[Mapping[str, Any], ...] = ()
    public_access: tuple[Mapping[str, Any], ...] = ()


def _encrypts(rule: Any) -> bool:
    default = (rule or {}).get("applyServerSideEncryptionByDefault") or {}
    return default.get("sseAlgorithm") in SSE_ALGORITHMS


def bucket_violations(bucket: BucketFacts) -> list[str]:
    """Snapshots hold every session: the bucket is encrypted, versioned and closed to the public.

    pulumi-aws 7 declares each in its own resource (aimed at the bucket); the older
    inline bucket properties count too.
    """
    out: list[str] = []
    inline_sse = (bucket.props.get("serverSideEncryptionConfiguration") or {}).get("rule")
    if not (_encrypts(inline_sse) or any(_encrypts(r) for c in bucket.encryption for r in c.get("rules") or [])):
        out.append(f"bucket {bucket.name} has no default encryption; add an "
                   "aws.s3.BucketServerSideEncryptionConfiguration for it (sseAlgorithm AES256 or aws:kms)")
    inline_versioning = (bucket.props.get("versioning") or {}).get("enabled") is True
    if not (inline_versioning or any((v.get("versioningConfiguration") or {}).get("status") == "Enabled"
                                     for v in bucket.versioning)):
        out.append(f"bucket {bucket.name} is not versioned; add an aws.s3.BucketVersioning for it with "
                   "status Enabled, so an overwritten or deleted snapshot can still be restored")
    if not any(all(p.get(k) is True for k in PUBLIC_ACCESS_SETTINGS) for p in bucket.public_access):
        out.append(f"bucket {bucket.name} lacks a full public access block; add an aws.s3.BucketPublicAccessBlock "
                   "for it with " + ", ".join(f"{k}=true" for k in PUBLIC_ACCESS_SETTINGS))
    return out


def alarm_action_violations(name: str, props: Mapping[str, Any]) -> list[str]:
    """An alarm that notifies no one pages no one."""
    actions = props.get("alarmActions")
    if actions is UNKNOWN or (isinstance(actions, (list, tuple)) and len(actions) > 0):
        if props.get("actionsEnabled") is False:
            return [f"alarm {name} has actionsEnabled=false; remove it so its actions run"]
        return []
    return [f"alarm {name} has no alarmActions; send it to the stack's alarm topic (config alarmTopicArn, or the "
            "topic the program creates) so someone hears of it"]
