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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from outsystems_redis.errors import Namer, SettingsError
from outsystems_redis.generated_tables import between_markers, main
from outsystems_redis.monitoring import BACKUP_RETENTION_DAYS_DEFAULT, LOG_RETENTION_DAYS_DEFAULT
from outsystems_redis.platforms import DEFAULT_PLATFORM, PLATFORMS
from outsystems_redis.sizing import Minimums, minimums_for

NAMESPACE = "outsystems-redis"
SECURITY_GROUP_INBOUND_RULES = 60  # AWS's default quota of inbound rules per security group (IPv4)

# Every key the program reads: its name, its default as the README shows it, and its meaning. The README's
# configuration table is generated from this tuple (python -m outsystems_redis.settings --markdown-table).
# `applied` says honestly who supplies the default:
#   "settings": load_settings itself, the same for every stack;  "tier": load_settings, per tier;
#   "unset":    nothing (the key stays None/empty) and the program does without;
#   "deploy":   nothing here: the program computes it at deploy time (from AWS facts or a generated value);
#   "required": no default (load_settings refuses the stack without it).
Applied = Literal["settings", "tier", "unset", "deploy", "required"]


# How a key's value is written: what the stack config's text is read as, and what the component argument of
# the same words takes (session_store.SessionStoreArgs is made from these declarations).
Kind = Literal["int", "bool", "text", "list", "map"]


@dataclass(frozen=True)
class ConfigKey:
    name: str  # the stack config key (camelCase)
    default: str  # Markdown, as the README's table shows it
    meaning: str  # Markdown
    applied: Applied
    arg: str  # the component argument and the Settings field (snake_case)
    kind: Kind
    # Set: the argument may be an Output (known once deployed); this stand-in is checked in its place, and the
    # Output is only passed on to AWS, never looked up or computed with.
    deferred: str | None = None


DEFAULT_INSTANCE_TYPE = {"non-production": "c5.large", "production": "c5.xlarge"}
DEFAULT_ROOT_VOLUME_GIB = 20
DEFAULT_HEALTH_CHECK_TIMEOUT = 900  # a cold boot: packages, then cluster creation
HEALTH_CHECK_VIA = ("cloudwatch", "direct")  # the default first
DEFAULT_PORT = 6379
MIN_PASSWORD_LENGTH = 16
# Redis 5.0 refuses a longer requirepass (CONFIG_AUTHPASS_MAX_LEN): it would not start from its include, and a
# rotation would set masterauth and then fail on requirepass.
MAX_PASSWORD_LENGTH = 512
# The retention periods CloudWatch Logs accepts (PutRetentionPolicy). Its 0, "never expire",
# is not offered: logs of a session store are for incidents, not an archive that grows forever.
LOG_RETENTION_CHOICES = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
# A snapshot holds sessions, which live minutes to hours; restored keys keep their TTL, so an old
# snapshot restores nothing anyone still uses. 35 days is also ElastiCache's own snapshot retention
# limit; S3 lifecycle expiration needs at least one day.
BACKUP_RETENTION_DAYS_MAX = 35

_NON_PROD, _PROD = minimums_for(1), minimums_for(3)

CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "servers", "`1`",
        "Number of Redis servers. `1`: one standalone Redis (non-production tier). `3` to `100`: a Redis Cluster "
        "(production tier). `2` and anything below 1 are refused.",
        "settings", arg="servers", kind="int",
    ),
    ConfigKey(
        "instanceType",
        f"`{DEFAULT_INSTANCE_TYPE['non-production']}` (1 server), `{DEFAULT_INSTANCE_TYPE['production']}` (cluster)",
        "EC2 instance type. Checked at deploy time with AWS's own description of the type against the OutSystems "
        f"minimums of the tier: non-production {_NON_PROD.vcpus} vCPU / {_NON_PROD.memory_mib // 1024} GiB, "
        f"production {_PROD.vcpus} vCPU / {_PROD.memory_mib // 1024} GiB, both with a sustained clock above "
        f"{_PROD.clock_ghz} GHz and no burstable CPU credits. x86_64 only.",
        "tier", arg="instance_type", kind="text",
    ),
    ConfigKey(
        "platform", f"`{DEFAULT_PLATFORM}`",
        "Operating system and Redis line: `ubuntu-20.04-redis-5.0` (Redis 5.0.7, what the requirements page names) "
        "or `ubuntu-24.04-redis-7.0` (Redis 7.0.15, what OutSystems asks for with Platform Server 11.23). It selects "
        "the Canonical AMI family, the apt pin, the version-specific `redis.conf` directives and the version the "
        "direct health check expects. See [Choosing a platform](docs/upgrades-and-migration.md#choosing-a-platform).",
        "settings", arg="platform", kind="text",
    ),
    ConfigKey("vpcId", "the account's default VPC", "The existing VPC to deploy into.", "deploy", arg="vpc_id",
              kind="text"),
    ConfigKey(
        "subnetCidrs", "(required; the stack files set it)",
        "One private subnet per CIDR, each in its own availability zone; servers are spread over them round-robin. "
        "One CIDR puts a cluster in a single zone. Each must lie inside the VPC, must not overlap the others or a "
        "subnet already in the VPC (checked at deploy time), and must be /16 to /28.",
        "required", arg="subnet_cidrs", kind="list",
    ),
    ConfigKey(
        "availabilityZones",
        "the region's first zones, alphabetically; opted-in Local and Wavelength zones are never picked",
        "Zone of each subnet, one per entry of `subnetCidrs`. Every zone must offer `instanceType` "
        "(checked at deploy time, before anything is created; the error names the zones that do).",
        "deploy", arg="availability_zones", kind="list",
    ),
    ConfigKey(
        "frontEndCidrs",
        "one server without `frontEndSecurityGroupIds`: the VPC's CIDR; a cluster: none (required unless "
        "`frontEndSecurityGroupIds` is set)",
        "Private CIDRs of the OutSystems front-ends that may reach Redis. Public ranges and `0.0.0.0/0` are "
        "refused. A production cluster must list its front-ends here or in `frontEndSecurityGroupIds`. This key "
        "and `frontEndSecurityGroupIds` together hold at most 58 entries on a cluster and 59 on one server (a "
        "security group's default quota of 60 inbound rules).",
        "deploy", arg="front_end_cidrs", kind="list",
    ),
    ConfigKey(
        "frontEndSecurityGroupIds", "none", "Security groups of the OutSystems front-ends that may reach Redis.",
        "unset", arg="front_end_security_group_ids", kind="list", deferred="sg-00000000",
    ),
    ConfigKey(
        "natGatewayId", "none: the program creates one",
        "An existing NAT gateway for the servers' egress (apt, SSM).",
        "unset", arg="nat_gateway_id", kind="text", deferred="nat-00000000",
    ),
    ConfigKey(
        "natSubnetId", "the VPC's first default subnet", "Public subnet for the NAT gateway the program creates.",
        "deploy", arg="nat_subnet_id", kind="text", deferred="subnet-00000000",
    ),
    ConfigKey(
        "amiId", "Canonical's current Ubuntu image for the platform, at creation",
        "Pin the AMI. By default the id comes from Canonical's public SSM parameter "
        "(`/aws/service/canonical/ubuntu/server/20.04/stable/current/amd64/hvm/ebs-gp2/ami-id`, or "
        "`24.04/.../ebs-gp3/...`), which keeps working after Canonical deprecates older 20.04 images (a name search "
        "would no longer see them). Either way, a newer AMI never replaces a running server "
        "([Safety](docs/boot-and-safety.md#safety-what-pulumi-up-will-and-will-not-do-to-running-servers)).",
        "deploy", arg="ami_id", kind="text", deferred="ami-00000000",
    ),
    ConfigKey(
        "rootVolumeGiB", f"`{DEFAULT_ROOT_VOLUME_GIB}`",
        f"Size of each server's encrypted gp3 root volume; at least {_PROD.disk_gib} (the OutSystems minimum).",
        "settings", arg="root_volume_gib", kind="int",
    ),
    ConfigKey(
        "port", f"`{DEFAULT_PORT}`",
        "Port of a single (non-production) server, 1024 to 55535. A cluster always uses 7000 (masters) and 7001 "
        "(replicas); setting `port` on a cluster is refused.",
        "settings", arg="port", kind="int",
    ),
    ConfigKey(
        "redisPassword", "generated (40 letters and digits)",
        f"Set it with `pulumi config set --secret redisPassword ...`. {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} "
        "characters; "
        "no `,` `=` spaces, quotes or backslash, which break the OutSystems connection string or `redis.conf`.",
        "deploy", arg="redis_password", kind="text", deferred="pending-secret-value",
    ),
    ConfigKey(
        "protect", "`true` for a cluster, `false` for one server",
        "Protects the servers from deletion and replacement: Pulumi `protect`, and EC2 termination protection.",
        "tier", arg="protect", kind="bool",
    ),
    ConfigKey(
        "healthCheck", "`true`", "Run the post-deploy health check at the end of `pulumi up`.", "settings",
        arg="health_check", kind="bool",
    ),
    ConfigKey(
        "healthCheckVia", "`cloudwatch`",
        "How the post-deploy check sees the servers. `cloudwatch`: it waits for every server's own verdict "
        "(published each minute by its metrics agent) with the deploying machine's AWS credentials "
        "(`cloudwatch:GetMetricData`), so `pulumi up` succeeds from a laptop or a hosted runner. `direct`: it "
        "connects to every Redis process from the deploying machine, which must reach the servers' private IPs "
        "(a runner inside the VPC), and also proves that every process accepts the stack's password.",
        "settings", arg="health_check_via", kind="text",
    ),
    ConfigKey(
        "healthCheckTimeout", f"`{DEFAULT_HEALTH_CHECK_TIMEOUT}`",
        "Seconds the health check waits for the servers to become healthy (a cold boot installs packages, then "
        "forms the cluster): 10 to 7200, and at least 180 through CloudWatch (the servers publish once a minute).",
        "settings", arg="health_check_timeout", kind="int",
    ),
    ConfigKey(
        "tls", "`false`",
        "TLS in transit for clients, replication and the cluster bus, on the same ports. Only on "
        "`ubuntu-24.04-redis-7.0` (Redis 5.0 has no TLS; asking for it there is refused). See "
        "[TLS](docs/upgrades-and-migration.md#tls-redis-70-only).",
        "settings", arg="tls", kind="bool",
    ),
    ConfigKey(
        "replaceServers", "none",
        "Server numbers (1, 2, ...) to rebuild with the current AMI, cloud-config and `instanceType`, by "
        "replacement. Refused while `protect` is true. Only for the deliberate procedure under "
        "[Safety](docs/boot-and-safety.md#safety-what-pulumi-up-will-and-will-not-do-to-running-servers); "
        "remove it afterwards.",
        "unset", arg="replace_servers", kind="list",
    ),
    ConfigKey(
        "alarmEmail", "none",
        "An email address subscribed to the stack's alarm topic. SNS first mails a confirmation link: nothing "
        "arrives until someone clicks it. Refused together with `alarmTopicArn` (subscribe the address to your own "
        "topic where you manage it). See [What pages you and why](docs/operations.md#what-pages-you-and-why).",
        "unset", arg="alarm_email", kind="text",
    ),
    ConfigKey(
        "alarmTopicArn", "none: the program creates an encrypted topic",
        "An existing SNS topic (`arn:aws:sns:<region>:<account>:<name>`) for every alarm and \"OK\" notification; "
        "no topic or key is created then. If that topic is encrypted, its key policy must let "
        "`cloudwatch.amazonaws.com` use the key (`kms:Decrypt`, `kms:GenerateDataKey*`), or the notifications are "
        "dropped.",
        "unset", arg="alarm_topic_arn", kind="text", deferred="arn:aws:sns:us-east-1:000000000000:pending",
    ),
    ConfigKey(
        "logRetentionDays", f"`{LOG_RETENTION_DAYS_DEFAULT}`",
        "Days CloudWatch Logs keeps the servers' logs (log group `/outsystems-redis/<stack>`). One of CloudWatch's "
        "values: " + ", ".join(map(str, LOG_RETENTION_CHOICES)) + ". \"Never expire\" is not offered.",
        "settings", arg="log_retention_days", kind="int",
    ),
    ConfigKey(
        "backupRetentionDays", f"`{BACKUP_RETENTION_DAYS_DEFAULT}`",
        "Days an RDB snapshot stays in the stack's backup bucket (under `snapshots/`) before S3's lifecycle deletes "
        "it; a replaced or deleted snapshot's old version goes one day later. "
        f"1 to {BACKUP_RETENTION_DAYS_MAX}: sessions live minutes to hours and a restore keeps each key's TTL, so an "
        f"older snapshot brings back nothing anyone still uses ({BACKUP_RETENTION_DAYS_MAX} days is also "
        "ElastiCache's own snapshot retention limit).",
        "settings", arg="backup_retention_days", kind="int",
    ),
    ConfigKey(
        "toolWriters", "the IAM role or user running `pulumi up`",
        "IAM principal ARNs (`arn:aws:iam::<account>:role/<name>` or `:user/<name>`) that may write, overwrite or "
        "delete the programs under `tools/` in the backup bucket, which every server fetches and runs as root. The "
        "bucket policy denies those writes to everyone else in the account, whatever their own IAM policies allow. "
        "Set, it must list every principal that runs `pulumi up` or `pulumi destroy` for this stack (a CI role, "
        "the administrators' role): any other gets AccessDenied on the tool objects. See "
        "[The backup bucket](docs/operations.md#the-backup-bucket-and-pulumi-destroy).",
        "deploy", arg="tool_writers", kind="list",
    ),
    ConfigKey(
        "tags", "none",
        "Your tags (cost allocation, ownership), a map of key to string value, added to every resource of the "
        "stack that AWS can tag (instances and their volumes, network, IAM role and profile, parameters, alarm "
        "topic and key, log group, backup bucket, alarms; a dashboard cannot be tagged, and the program objects "
        "in the backup bucket are left out: S3 allows 10 tags per object). The program's own tags win on the same "
        "key (see below). Keys of 1 to 128 and values of up to 256 Unicode letters, digits, spaces and "
        "`_ . : / = + - @`; no `aws:` prefix; no two keys that differ only in case; at most 42 besides the "
        "program's own (AWS allows 50 per resource, and a server carries 8 of ours).",
        "unset", arg="tags", kind="map",
    ),
)

KNOWN_KEYS = tuple(k.name for k in CONFIG_KEYS)
KEY_OF = {k.name: k for k in CONFIG_KEYS}

# Front-end sources must be private: RFC 1918 plus the shared address space
# (RFC 6598) that some VPNs and transit setups use.
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)

# Characters that break a StackExchange.Redis connection string (`,` `=`),
# whitespace, and quotes/backslash that redis.conf would need escaped.
_PASSWORD_FORBIDDEN = re.compile(r"""[,=\s"'\\]""")

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


# A value known only once deployed: an Output a component argument gave for a deferred key (ConfigKey.deferred).
# The store passes it on to AWS as it is; nothing in the core computes with it.
DeployTime = Any


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
    front_end_security_group_ids: tuple[str | DeployTime, ...] = ()
    nat_gateway_id: str | DeployTime | None = None
    nat_subnet_id: str | DeployTime | None = None
    ami_id: str | DeployTime | None = None
    root_volume_gib: int = DEFAULT_ROOT_VOLUME_GIB
    port: int = DEFAULT_PORT
    redis_password: str | DeployTime | None = field(default=None, repr=False)
    protect: bool = False
    health_check: bool = True
    health_check_via: str = "cloudwatch"  # one of HEALTH_CHECK_VIA
    health_check_timeout: int = DEFAULT_HEALTH_CHECK_TIMEOUT
    tls: bool = False
    replace_servers: tuple[int, ...] = ()  # 1-based server numbers
    alarm_email: str | None = None
    alarm_topic_arn: str | DeployTime | None = None  # set: alarms go to this existing topic, none is created
    log_retention_days: int = LOG_RETENTION_DAYS_DEFAULT
    backup_retention_days: int = BACKUP_RETENTION_DAYS_DEFAULT
    tags: tuple[tuple[str, str], ...] = ()  # the user's, in config order; merge_tags adds ours on top
    tool_writers: tuple[str, ...] = ()  # empty: the principal running `pulumi up` (read at deploy time)

    @property
    def cluster(self) -> bool:
        return self.servers >= 3

    @property
    def minimums(self) -> Minimums:
        return minimums_for(self.servers)


# What the checks below take: each key's typed value (read_config reads the stack config's text into it;
# session_store reads the component's arguments), by config key; a key left out takes its default.
Values = Mapping[str, object]


def read_config(raw: Mapping[str, str]) -> dict[str, object]:
    """The stack config's text as typed values. A value that does not read as its kind is kept as written,
    so the key's own check refuses it with what the key allows."""
    check_unknown_keys(raw)
    return {key: _read(KEY_OF[key], raw[key]) for key in raw}


def _read(key: ConfigKey, written: object) -> object:
    text = str(written)
    # Pulumi hands a YAML list or map over as its JSON text: for a key of one value that text would pass as the
    # value (an alarm email of '["ops@example.com"]', which AWS refuses halfway through a deployment). The
    # password has rules of its own (quotes are refused there).
    if key.kind == "text" and key.name != "redisPassword" and text.strip().startswith(("[", "{")):
        try:
            structured = json.loads(text)
        except json.JSONDecodeError:
            structured = None
        if isinstance(structured, (list, dict)):
            raise SettingsError(key.name, text, "one value, not a YAML list or map")
    if key.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            return written
    if key.kind == "bool":
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
            text.strip().lower(), written)
    if key.kind == "list":
        return _list_of(key.name, text.strip())
    if key.kind == "map":
        try:
            return json.loads(text.strip())
        except json.JSONDecodeError:
            return written
    return written


def _list_of(key: str, text: str) -> tuple[str, ...]:
    """A YAML list (Pulumi hands it over as JSON) or comma-separated text."""
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise SettingsError(key, text, "a YAML list of strings") from None
        if not isinstance(items, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in items):
            raise SettingsError(key, text, "a YAML list of strings")
        items = [str(i) for i in items]
    else:
        items = text.split(",")
    return tuple(i.strip() for i in items if i.strip())


def _int(values: Values, key: str, default: int, lo: int, hi: int, allowed: str | Callable[[Namer], str]) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SettingsError(key, value, allowed)
    return value


def _one_of(values: Values, key: str, choices: tuple[str, ...]) -> str:
    """The key's value among `choices` (the first is the default)."""
    value = values.get(key, choices[0])
    if not isinstance(value, str) or value.strip() not in choices:
        raise SettingsError(key, value, " or ".join(choices))
    return value.strip()


def _bool(values: Values, key: str, default: bool) -> bool:
    value = values.get(key, default)
    if not isinstance(value, bool):
        raise SettingsError(key, value, "true or false")
    return value


def _list(values: Values, key: str) -> tuple[str, ...]:
    value = values.get(key, ())
    if not isinstance(value, (list, tuple)) or not all(isinstance(i, str) for i in value):
        raise SettingsError(key, value, "a list of strings")
    return tuple(i.strip() for i in value if i.strip())


_TAG_CHARACTERS = "Unicode letters, digits, spaces and _ . : / = + - @"


def _tag_text_ok(text: str) -> bool:
    return all(unicodedata.category(c)[0] in "LNZ" or c in _TAG_PUNCTUATION for c in text)


def _tags(values: Values, key: str = "tags") -> tuple[tuple[str, str], ...]:
    """A map of string -> string (the stack file's YAML map), checked against AWS's tag limits."""
    tags = values.get(key, {})
    if not isinstance(tags, dict) or not all(isinstance(name, str) for name in tags):
        raise SettingsError(key, tags, "a YAML map of tag keys to values, such as {CostCenter: '1234', Owner: ops}")
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


def _str(values: Values, key: str) -> str | None:
    value = values.get(key)
    if value is not None and not isinstance(value, str):
        raise SettingsError(key, value, "a string")
    return (value or "").strip() or None


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
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise SettingsError(
            key, f"[secret of {len(password)} characters]",
            f"at least {MIN_PASSWORD_LENGTH} characters, at most {MAX_PASSWORD_LENGTH} (Redis 5.0's limit)"
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
    values = read_config(raw)
    try:
        return check_values(values, stack)
    except SettingsError as err:
        # An error about a list, map or boolean key's whole value shows it as the stack file has it (`[]`, `yes`),
        # not as read (`()`, `True`); a number reads as written.
        if err.whole_key == err._key and err._key in raw and err.value is values.get(err._key) \
                and KEY_OF[err._key].kind in ("list", "map", "bool"):
            raise err.showing(raw[err._key]) from None
        raise


def check_values(raw: Values, stack: str) -> Settings:
    """Every check of the keys' typed values (read_config's, or the component's arguments), and the defaults."""

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
            "availabilityZones", list(zones),
            lambda n: f"one zone per entry of {n('subnetCidrs')} ({len(subnet_cidrs)}), or unset",
        )

    front_end_cidrs = _list(raw, "frontEndCidrs")
    for cidr in front_end_cidrs:
        check_front_end_cidr(cidr)
    front_end_sgs = _list(raw, "frontEndSecurityGroupIds")
    for sg in front_end_sgs:
        if not re.fullmatch(r"sg-[0-9a-f]{8,17}", sg):
            raise SettingsError("frontEndSecurityGroupIds", sg, "security group ids such as sg-0123456789abcdef0")
    # One inbound rule per front-end source, plus the servers' own (Redis between servers; the cluster bus).
    own_rules = 2 if servers >= 3 else 1
    if len(front_end_cidrs) + len(front_end_sgs) + own_rules > SECURITY_GROUP_INBOUND_RULES:
        raise SettingsError(
            "frontEndCidrs", f"{len(front_end_cidrs)} CIDR blocks and {len(front_end_sgs)} security groups",
            f"at most {SECURITY_GROUP_INBOUND_RULES - own_rules} front-end CIDR blocks and security groups together "
            f"(a security group holds {SECURITY_GROUP_INBOUND_RULES} inbound rules by AWS's default quota, "
            f"{own_rules} of them for the servers themselves): list wider blocks, or the front-ends' security groups",
        )
    if servers >= 3 and not (front_end_cidrs or front_end_sgs):
        raise SettingsError(
            "frontEndCidrs",
            None,
            lambda n: "a production cluster must list its front-ends explicitly in "
                      f"{n('frontEndCidrs')} and/or {n('frontEndSecurityGroupIds')}",
        )

    port = _int(raw, "port", DEFAULT_PORT, 1024, 55535, "a port from 1024 to 55535")
    if servers >= 3 and "port" in raw:
        raise SettingsError("port", raw["port"], "unset for a cluster (masters use 7000, replicas 7001)")

    password = raw.get("redisPassword")
    if password is not None:
        if not isinstance(password, str):
            raise SettingsError("redisPassword", "[value not shown]", "a string")
        check_password(password)

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

    health_check_via = _one_of(raw, "healthCheckVia", HEALTH_CHECK_VIA)
    shortest_check = 180 if health_check_via == "cloudwatch" else 10

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
        redis_password=password,
        protect=protect,
        health_check=_bool(raw, "healthCheck", True),
        health_check_via=health_check_via,
        health_check_timeout=_int(
            raw, "healthCheckTimeout", DEFAULT_HEALTH_CHECK_TIMEOUT, shortest_check, 7200,
            lambda n: f"seconds, from {shortest_check} to 7200"
            + (f" with {n('healthCheckVia')} cloudwatch (the servers publish once a minute, and a verdict counts "
               "from the first whole minute after the check starts)" if health_check_via == "cloudwatch" else ""),
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
        tool_writers=_tool_writers(raw),
    )


# An IAM role or user ARN as aws:PrincipalArn carries it: partition, account, then role/ or user/ with an
# optional path and the name (IAM's own characters). Not an assumed-role session ARN (sts), which never
# matches aws:PrincipalArn.
_PRINCIPAL_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)(/[\w+=,.@-]+)*/[\w+=,.@-]{1,128}")


def _tool_writers(raw: Values) -> tuple[str, ...]:
    writers = _list(raw, "toolWriters")
    for arn in writers:
        if not _PRINCIPAL_ARN.fullmatch(arn):
            raise SettingsError(
                "toolWriters", arn, "IAM role or user ARNs such as arn:aws:iam::111122223333:role/deployer (not an "
                "assumed-role session ARN arn:aws:sts::...)",
            )
    return writers


def _alarm_target(raw: Values) -> tuple[str | None, str | None]:
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
            lambda n: f"unset when {n('alarmTopicArn')} is set: the program subscribes addresses only to the topic "
                      "it creates; subscribe the address to your own topic where that topic is managed",
        )
    return email, topic


# The store's name prefixes every resource name; the tightest is the backup bucket's, autonamed
# "<name>-observability-backups-<7 random>": S3 allows 63 characters, lowercase letters, digits and '-'.
STORE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,32}")


# Pulumi's own stack-name characters; the name goes into Parameter Store paths and systemd environment files.
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def check_stack_name(stack: str) -> None:
    if not _STACK_NAME.fullmatch(stack):
        raise SettingsError("stack", stack, "1 to 100 letters, digits, '_', '.' or '-' (as Pulumi's stack names)")


def check_store_name(name: str) -> None:
    """Checked before anything is created: AWS would refuse the bucket only after other resources exist."""
    if not STORE_NAME.fullmatch(name):
        raise SettingsError(
            "name", name, "1 to 33 lowercase letters, digits and '-', starting with a letter or digit (it "
            "prefixes the backup bucket's name, which S3 limits to 63 such characters)",
        )


def check_subnets_in_vpc(settings: Settings, vpc_cidrs: list[str]) -> None:
    """Every subnet CIDR must lie inside one of the VPC's CIDR blocks."""
    blocks = [ipaddress.IPv4Network(c) for c in vpc_cidrs]
    for cidr in settings.subnet_cidrs:
        net = ipaddress.IPv4Network(cidr)
        if not any(net.subnet_of(b) for b in blocks):
            raise SettingsError("subnetCidrs", cidr, "blocks inside the VPC's CIDR " + ", ".join(vpc_cidrs))


def check_subnets_free(settings: Settings, existing: list[tuple[str, str, Mapping[str, str]]]) -> None:
    """No subnet CIDR may overlap a subnet already in the VPC, other than this stack's own (an update).

    `existing`: (subnet id, CIDR, tags) of every subnet in the VPC. EC2 refuses an overlapping subnet with
    InvalidSubnet.Conflict, after the program has begun creating resources.
    """
    for subnet_id, cidr, tags in existing:
        if not cidr or (tags.get("Project") == NAMESPACE and tags.get("Stack") == settings.stack):
            continue  # an IPv6-only subnet (no IPv4 block), or this stack's own subnet from an earlier pulumi up
        taken = ipaddress.IPv4Network(cidr)
        for ours in settings.subnet_cidrs:
            if ipaddress.IPv4Network(ours).overlaps(taken):
                raise SettingsError("subnetCidrs", ours, f"blocks free in the VPC: {cidr} is already subnet "
                                    f"{subnet_id}{' (' + tags['Name'] + ')' if tags.get('Name') else ''}")


# ------------------------------------------------------------------ the README's configuration table

TABLE_BEGIN = ("<!-- configuration table: generated by `python -m outsystems_redis.settings --update-readme README.md`"
               " -->")
TABLE_END = "<!-- end of the generated configuration table -->"


def markdown_table() -> str:
    """The README's configuration table, from CONFIG_KEYS (one source)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k.name}` | {k.default} | {k.meaning} |" for k in CONFIG_KEYS]
    deploy = ", ".join(f"`{k.name}`" for k in CONFIG_KEYS if k.applied == "deploy")
    lines += ["", f"Defaults computed by the program at deploy time (AWS look-ups, a generated password): {deploy}."]
    return "\n".join(lines) + "\n"


def readme_with_table(readme: str) -> str:
    """`readme` with the text between the table markers replaced by the generated table."""
    return between_markers(readme, TABLE_BEGIN, TABLE_END, markdown_table())


if __name__ == "__main__":
    main("The README's configuration table, generated from CONFIG_KEYS.", markdown_table, readme_with_table)
