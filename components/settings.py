"""Stack config -> one frozen, validated Settings object.

Pulumi hands config over as strings (lists as JSON). Every check here runs
before any resource is registered, and every error names the config key.
Checks that need AWS facts (the VPC's CIDRs, the instance type's specs) are
separate functions that take those facts as plain values.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from components.errors import SettingsError
from components.monitoring import BACKUP_RETENTION_DAYS_DEFAULT, LOG_RETENTION_DAYS_DEFAULT
from components.platforms import DEFAULT_PLATFORM, PLATFORMS
from components.sizing import Minimums, minimums_for

NAMESPACE = "outsystems-redis"

# Every key the program reads, with the default the README documents.
KNOWN_KEYS = (
    "servers",
    "instanceType",
    "platform",
    "vpcId",
    "subnetCidrs",
    "availabilityZones",
    "frontEndCidrs",
    "frontEndSecurityGroupIds",
    "natGatewayId",
    "natSubnetId",
    "amiId",
    "rootVolumeGiB",
    "port",
    "redisPassword",
    "protect",
    "healthCheck",
    "healthCheckTimeout",
    "tls",
    "replaceServers",
    "alarmEmail",
    "alarmTopicArn",
    "logRetentionDays",
    "backupRetentionDays",
    "tags",
)

DEFAULT_INSTANCE_TYPE = {"non-production": "c5.large", "production": "c5.xlarge"}
DEFAULT_ROOT_VOLUME_GIB = 20
DEFAULT_HEALTH_CHECK_TIMEOUT = 900  # a cold boot: packages, then cluster creation

# Front-end sources must be private: RFC 1918 plus the shared address space
# (RFC 6598) that some VPNs and transit setups use.
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)

# Characters that break a StackExchange.Redis connection string (`,` `=`),
# whitespace, and quotes/backslash that redis.conf would need escaped.
_PASSWORD_FORBIDDEN = re.compile(r"""[,=\s"'\\]""")
MIN_PASSWORD_LENGTH = 16

# The retention periods CloudWatch Logs accepts (PutRetentionPolicy). Its 0, "never expire",
# is not offered: logs of a session store are for incidents, not an archive that grows forever.
LOG_RETENTION_CHOICES = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
# A snapshot holds sessions, which live minutes to hours; restored keys keep their TTL, so an old
# snapshot restores nothing anyone still uses. 35 days is also ElastiCache's own snapshot retention
# limit; S3 lifecycle expiration needs at least one day.
BACKUP_RETENTION_DAYS_MAX = 35
# An SNS topic ARN: partition, region, account, then a standard (or .fifo) topic name of 1 to 256
# letters, digits, hyphens and underscores.
_TOPIC_ARN = re.compile(r"arn:aws(-[a-z]+)*:sns:[a-z]{2}(-[a-z]+)+-\d:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
# What SNS can deliver to: one address, no spaces or commas; 254 is the longest address SMTP carries.
_EMAIL = re.compile(r"[^@\s,;]+@[^@\s,;]+\.[^@\s,;.]+")

# AWS's tag limits, as the strictest of the services the stack tags (EC2, IAM, KMS, SNS, S3, SSM,
# CloudWatch) has them: 50 tags a resource, keys of 1 to 128 characters, values of 0 to 256, Unicode
# letters, digits and spaces plus _ . : / = + - @, and no `aws:` prefix (AWS's own).
MAX_TAGS_PER_RESOURCE = 50
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
_TAG_PUNCTUATION = frozenset("_.:/=+-@")
# Every tag key the program sets itself, on any resource (a server's instance carries all of them).
# They win over a user's tag of the same key, compared without case: IAM holds keys case-insensitively.
OUR_TAG_KEYS = ("Project", "Stack", "OutsystemsTier", "Name", "RedisServerIndex", "RedisRoles", "VCpus", "MemoryMiB")
MAX_USER_TAGS = MAX_TAGS_PER_RESOURCE - len(OUR_TAG_KEYS)


@dataclass(frozen=True)
class Settings:
    stack: str
    servers: int
    instance_type: str
    platform: str
    subnet_cidrs: tuple[str, ...]
    availability_zones: tuple[str, ...] = ()
    vpc_id: str | None = None
    front_end_cidrs: tuple[str, ...] = ()
    front_end_security_group_ids: tuple[str, ...] = ()
    nat_gateway_id: str | None = None
    nat_subnet_id: str | None = None
    ami_id: str | None = None
    root_volume_gib: int = DEFAULT_ROOT_VOLUME_GIB
    port: int = 6379
    redis_password: str | None = field(default=None, repr=False)
    protect: bool = False
    health_check: bool = True
    health_check_timeout: int = DEFAULT_HEALTH_CHECK_TIMEOUT
    tls: bool = False
    replace_servers: tuple[int, ...] = ()  # 1-based server numbers
    alarm_email: str | None = None
    alarm_topic_arn: str | None = None  # set: alarms go to this existing topic, none is created
    log_retention_days: int = LOG_RETENTION_DAYS_DEFAULT
    backup_retention_days: int = BACKUP_RETENTION_DAYS_DEFAULT
    tags: tuple[tuple[str, str], ...] = ()  # the user's, in config order; merge_tags adds ours on top

    @property
    def cluster(self) -> bool:
        return self.servers >= 3

    @property
    def minimums(self) -> Minimums:
        return minimums_for(self.servers)


def _int(raw: Mapping[str, str], key: str, default: int, lo: int, hi: int, allowed: str) -> int:
    if key not in raw:
        return default
    try:
        value = int(str(raw[key]).strip())
    except ValueError:
        raise SettingsError(key, raw[key], allowed) from None
    if not lo <= value <= hi:
        raise SettingsError(key, value, allowed)
    return value


def _bool(raw: Mapping[str, str], key: str, default: bool) -> bool:
    if key not in raw:
        return default
    text = str(raw[key]).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise SettingsError(key, raw[key], "true or false")


def _list(raw: Mapping[str, str], key: str) -> tuple[str, ...]:
    if key not in raw:
        return ()
    text = str(raw[key]).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise SettingsError(key, text, "a YAML list of strings") from None
        if not isinstance(items, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in items):
            raise SettingsError(key, text, "a YAML list of strings")
        items = [str(i) for i in items]
    else:
        items = [i for i in text.split(",")]
    return tuple(i.strip() for i in items if i.strip())


_TAG_CHARACTERS = "Unicode letters, digits, spaces and _ . : / = + - @"


def _tag_text_ok(text: str) -> bool:
    return all(unicodedata.category(c)[0] in "LNZ" or c in _TAG_PUNCTUATION for c in text)


def _tags(raw: Mapping[str, str], key: str = "tags") -> tuple[tuple[str, str], ...]:
    """A JSON object of string -> string (the stack file's YAML map), checked against AWS's tag limits."""
    if key not in raw:
        return ()
    text = str(raw[key]).strip()
    try:
        tags = json.loads(text)
    except json.JSONDecodeError:
        tags = None
    if not isinstance(tags, dict):
        raise SettingsError(key, text, "a YAML map of tag keys to values, such as {CostCenter: '1234', Owner: ops}")
    seen: dict[str, str] = {}  # lowercased key -> key as given
    for name, value in tags.items():
        where = f"{key}.{name}"
        if not 1 <= len(name) <= TAG_KEY_MAX or not _tag_text_ok(name):
            raise SettingsError(key, name, f"tag keys of 1 to {TAG_KEY_MAX} {_TAG_CHARACTERS}")
        if not isinstance(value, str):
            # YAML turns 0123 into 123 and yes into true: a tag that reaches AWS must be what was written.
            raise SettingsError(
                where, value,
                "a string: quote numbers and true/false in the stack file, or set it with "
                "pulumi config set --path --type string",
            )
        if len(value) > TAG_VALUE_MAX or not _tag_text_ok(value):
            raise SettingsError(where, value, f"at most {TAG_VALUE_MAX} {_TAG_CHARACTERS}")
        if name.lower().startswith("aws:") or value.lower().startswith("aws:"):
            raise SettingsError(where, value, "no 'aws:' prefix on a key or value: AWS reserves it for its own tags")
        if name.lower() in seen:
            raise SettingsError(
                key, f"{seen[name.lower()]} and {name}", "keys that differ in more than case (IAM holds them as one)"
            )
        seen[name.lower()] = name
    ours = {k.lower() for k in OUR_TAG_KEYS}
    extra = len([k for k in seen if k not in ours])
    if extra > MAX_USER_TAGS:
        raise SettingsError(
            key, f"{extra} tags besides the program's own",
            f"at most {MAX_USER_TAGS} besides the program's own ({', '.join(OUR_TAG_KEYS)}): "
            f"AWS allows {MAX_TAGS_PER_RESOURCE} tags a resource",
        )
    return tuple(tags.items())


def merge_tags(base: Mapping[str, str] | tuple[tuple[str, str], ...], ours: Mapping[str, str]) -> dict[str, str]:
    """`base` with `ours` on top; a key of `base` that matches one of ours in any case gives way."""
    mine = {k.lower() for k in ours}
    return {**{k: v for k, v in dict(base).items() if k.lower() not in mine}, **ours}


def _str(raw: Mapping[str, str], key: str) -> str | None:
    value = str(raw.get(key, "")).strip()
    return value or None


def _network(key: str, text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        raise SettingsError(key, text, "an IPv4 CIDR block such as 10.0.1.0/24, with no host bits set") from None


def check_unknown_keys(raw: Mapping[str, str]) -> None:
    for key in raw:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.6)
            if not close:
                close = [k for k in KNOWN_KEYS if k.lower() == key.lower()]
            hint = f"did you mean '{NAMESPACE}:{close[0]}'? " if close else ""
            # Never echo the value: a misspelled secret key (redisPasword) holds a secret.
            raise SettingsError(
                f"{NAMESPACE}:{key}",
                "[value not shown]",
                f"{hint}known keys are " + ", ".join(KNOWN_KEYS),
            )


def check_password(password: str, key: str = "redisPassword") -> None:
    """Never echo the password itself: say what is wrong with it."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SettingsError(
            key, f"[secret of {len(password)} characters]", f"at least {MIN_PASSWORD_LENGTH} characters"
        )
    bad = sorted(set(_PASSWORD_FORBIDDEN.findall(password)))
    if bad or not password.isascii() or not password.isprintable():
        shown = " ".join(repr(c) for c in bad) or "non-printable or non-ASCII characters"
        raise SettingsError(
            key,
            f"[secret containing {shown}]",
            "printable ASCII without ',' '=' spaces, quotes or backslash "
            "(they break the OutSystems connection string or redis.conf)",
        )


def check_front_end_cidr(text: str, key: str = "frontEndCidrs") -> None:
    net = _network(key, text)
    if net.prefixlen == 0 or not any(net.subnet_of(r) for r in PRIVATE_RANGES):
        raise SettingsError(
            key,
            text,
            "private ranges only (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10); "
            "Redis must never be reachable from the internet",
        )


def load_settings(raw: Mapping[str, str], stack: str) -> Settings:
    """Validate the project's config namespace (keys without the `outsystems-redis:` prefix)."""
    check_unknown_keys(raw)

    servers = _int(raw, "servers", 1, -(10**6), 10**6, "1 (one non-production server) or 3 or more (a Redis Cluster)")
    if servers < 1 or servers == 2:
        raise SettingsError(
            "servers",
            servers,
            "1 (one non-production server) or 3 or more (a Redis Cluster; 2 cannot keep a majority of masters)",
        )
    if servers > 100:
        raise SettingsError("servers", servers, "at most 100")
    tier = minimums_for(servers).tier

    platform = _str(raw, "platform") or DEFAULT_PLATFORM
    if platform not in PLATFORMS:
        raise SettingsError("platform", platform, "one of " + ", ".join(PLATFORMS))

    subnet_cidrs = _list(raw, "subnetCidrs")
    if not subnet_cidrs:
        raise SettingsError(
            "subnetCidrs",
            raw.get("subnetCidrs"),
            "a list of one or more private CIDR blocks inside the VPC, one per availability zone",
        )
    nets = [_network("subnetCidrs", c) for c in subnet_cidrs]
    for net in nets:
        if not 16 <= net.prefixlen <= 28:
            raise SettingsError("subnetCidrs", str(net), "prefix lengths /16 to /28 (the AWS subnet limits)")
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            if a.overlaps(b):
                raise SettingsError("subnetCidrs", f"{a} and {b}", "non-overlapping CIDR blocks")
    for i, net in enumerate(nets):
        per_subnet = len(range(i, servers, len(nets)))
        # AWS reserves the first four and the last address; servers start at .10.
        if per_subnet and 10 + per_subnet > net.num_addresses - 1:
            raise SettingsError("subnetCidrs", str(net), f"room for {per_subnet} servers from host .10 upwards")

    zones = _list(raw, "availabilityZones")
    if zones and len(zones) != len(subnet_cidrs):
        raise SettingsError(
            "availabilityZones", list(zones), f"one zone per entry of subnetCidrs ({len(subnet_cidrs)}), or unset"
        )

    front_end_cidrs = _list(raw, "frontEndCidrs")
    for cidr in front_end_cidrs:
        check_front_end_cidr(cidr)
    front_end_sgs = _list(raw, "frontEndSecurityGroupIds")
    for sg in front_end_sgs:
        if not re.fullmatch(r"sg-[0-9a-f]{8,17}", sg):
            raise SettingsError("frontEndSecurityGroupIds", sg, "security group ids such as sg-0123456789abcdef0")
    if servers >= 3 and not (front_end_cidrs or front_end_sgs):
        raise SettingsError(
            "frontEndCidrs",
            None,
            "a production cluster must list its front-ends explicitly in frontEndCidrs and/or frontEndSecurityGroupIds",
        )

    port = _int(raw, "port", 6379, 1024, 55535, "a port from 1024 to 55535")
    if servers >= 3 and "port" in raw:
        raise SettingsError("port", raw["port"], "unset for a cluster (masters use 7000, replicas 7001)")

    password = raw.get("redisPassword")
    if password is not None:
        check_password(str(password))

    for key in ("vpcId", "natGatewayId", "natSubnetId", "amiId"):
        prefix = {"vpcId": "vpc-", "natGatewayId": "nat-", "natSubnetId": "subnet-", "amiId": "ami-"}[key]
        value = _str(raw, key)
        if value is not None and not re.fullmatch(re.escape(prefix) + r"[0-9a-f]{8,17}", value):
            raise SettingsError(key, value, f"an id such as {prefix}0123456789abcdef0")

    tls = _bool(raw, "tls", False)
    if tls and not PLATFORMS[platform].supports_tls:
        raise SettingsError(
            "tls",
            raw["tls"],
            f"false on platform {platform} (Redis {PLATFORMS[platform].redis_version} has no TLS); "
            "TLS needs platform ubuntu-24.04-redis-7.0",
        )

    protect = _bool(raw, "protect", servers >= 3)
    replace_servers: list[int] = []
    for item in _list(raw, "replaceServers"):
        if not item.isdigit() or not 1 <= int(item) <= servers:
            raise SettingsError("replaceServers", item, f"server numbers from 1 to {servers}")
        replace_servers.append(int(item))
    if replace_servers and protect:
        raise SettingsError(
            "replaceServers", replace_servers, "unset while protect is true: lift the protection first "
            "(pulumi config set protect false, then pulumi up), one server at a time",
        )

    alarm_email, alarm_topic_arn = _alarm_target(raw)
    log_retention_days = _int(
        raw, "logRetentionDays", LOG_RETENTION_DAYS_DEFAULT, 1, 3653,
        "one of CloudWatch Logs' retention periods: " + ", ".join(map(str, LOG_RETENTION_CHOICES)),
    )
    if log_retention_days not in LOG_RETENTION_CHOICES:
        raise SettingsError(
            "logRetentionDays",
            log_retention_days,
            "one of CloudWatch Logs' retention periods: " + ", ".join(map(str, LOG_RETENTION_CHOICES)),
        )

    return Settings(
        stack=stack,
        servers=servers,
        instance_type=_str(raw, "instanceType") or DEFAULT_INSTANCE_TYPE[tier],
        platform=platform,
        subnet_cidrs=tuple(str(n) for n in nets),
        availability_zones=zones,
        vpc_id=_str(raw, "vpcId"),
        front_end_cidrs=front_end_cidrs,
        front_end_security_group_ids=front_end_sgs,
        nat_gateway_id=_str(raw, "natGatewayId"),
        nat_subnet_id=_str(raw, "natSubnetId"),
        ami_id=_str(raw, "amiId"),
        root_volume_gib=_int(
            raw,
            "rootVolumeGiB",
            DEFAULT_ROOT_VOLUME_GIB,
            minimums_for(servers).disk_gib,
            16384,
            f"at least {minimums_for(servers).disk_gib} GiB (the OutSystems minimum)",
        ),
        port=port,
        redis_password=str(password) if password is not None else None,
        protect=protect,
        health_check=_bool(raw, "healthCheck", True),
        health_check_timeout=_int(
            raw, "healthCheckTimeout", DEFAULT_HEALTH_CHECK_TIMEOUT, 10, 7200, "seconds, from 10 to 7200"
        ),
        tls=tls,
        replace_servers=tuple(replace_servers),
        alarm_email=alarm_email,
        alarm_topic_arn=alarm_topic_arn,
        log_retention_days=log_retention_days,
        backup_retention_days=_int(
            raw, "backupRetentionDays", BACKUP_RETENTION_DAYS_DEFAULT, 1, BACKUP_RETENTION_DAYS_MAX,
            f"days from 1 to {BACKUP_RETENTION_DAYS_MAX} (sessions in an older snapshot have expired anyway)",
        ),
        tags=_tags(raw),
    )


def _alarm_target(raw: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(alarmEmail, alarmTopicArn): where the alarms go."""
    email = _str(raw, "alarmEmail")
    if email is not None and (len(email) > 254 or not _EMAIL.fullmatch(email)):
        raise SettingsError("alarmEmail", email, "one email address, such as ops@example.com")
    topic = _str(raw, "alarmTopicArn")
    if topic is not None and not _TOPIC_ARN.fullmatch(topic):
        raise SettingsError(
            "alarmTopicArn", topic, "an SNS topic ARN such as arn:aws:sns:eu-west-1:111122223333:redis-alarms"
        )
    if email is not None and topic is not None:
        raise SettingsError(
            "alarmEmail",
            email,
            "unset when alarmTopicArn is set: the program subscribes addresses only to the topic it creates; "
            "subscribe the address to your own topic where that topic is managed",
        )
    return email, topic


def check_subnets_in_vpc(settings: Settings, vpc_cidrs: list[str]) -> None:
    """Every subnet CIDR must lie inside one of the VPC's CIDR blocks."""
    blocks = [ipaddress.IPv4Network(c) for c in vpc_cidrs]
    for cidr in settings.subnet_cidrs:
        net = ipaddress.IPv4Network(cidr)
        if not any(net.subnet_of(b) for b in blocks):
            raise SettingsError("subnetCidrs", cidr, "blocks inside the VPC's CIDR " + ", ".join(vpc_cidrs))
