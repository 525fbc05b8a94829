"""Wiring: the policy objects, each a thin adapter from pulumi-policy's args to a function in rules.py.

Kept apart from __main__.py because constructing a PolicyPack starts the
analyzer's gRPC server and never returns; the tests import this module and
drive each policy with pulumi-policy's own argument objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import _is_unknown

from outsystems_redis.errors import SettingsError
from outsystems_redis.settings import NAMESPACE, Settings, load_settings
from outsystems_redis.sizing import minimums_for
from outsystems_redis.topology import BUS_PORT_OFFSET, MASTER_PORT, REPLICA_PORT
from policy import rules

MANDATORY = EnforcementLevel.MANDATORY
_SG_PROPS = ("securityGroupId", "referencedSecurityGroupId", "sourceSecurityGroupId")


def plain(value: Any) -> Any:
    """pulumi-policy's unknown-checking proxies -> plain dicts and lists; unknowns -> rules.UNKNOWN."""
    if type(value).__name__ in ("_DictProxy", "_ListProxy"):
        value = value["__target"]  # the proxies' documented escape hatch; children stay proxied
    if isinstance(value, Mapping):
        return {k: plain(value[k]) for k in value}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if _is_unknown(value):
        return rules.UNKNOWN
    return value


def stack_settings() -> Settings | None:
    """The stack's own config, as the program reads it (outsystems_redis/settings.py), or None when absent.

    The CLI hands the stack's config to policy packs as it does to programs.
    """
    merged = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    prefix = NAMESPACE + ":"
    raw = {k[len(prefix):]: v for k, v in merged.items() if k.startswith(prefix)}
    if not raw:
        return None
    return load_settings(raw, os.environ.get("PULUMI_STACK", "stack"))


def declared_sources(settings: Settings) -> rules.DeclaredSources:
    client = (settings.port,) if not settings.cluster else (MASTER_PORT, REPLICA_PORT)
    return rules.DeclaredSources(
        cidrs=settings.front_end_cidrs,
        groups=settings.front_end_security_group_ids,
        # Both layouts' ports are guarded whatever this stack uses.
        client_ports=tuple(sorted({*client, MASTER_PORT, REPLICA_PORT, 6379})),
        bus_ports=(MASTER_PORT + BUS_PORT_OFFSET, REPLICA_PORT + BUS_PORT_OFFSET),
    )


def _report_all(report: ReportViolation, messages: list[str], urn: str | None = None) -> None:
    for message in messages:
        report(message, urn) if urn else report(message)


def _resource_policy(
    name: str, description: str, types: tuple[str, ...], check: Callable[[str, str, dict[str, Any]], list[str]]
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type in types:
            _report_all(report, check(args.resource_type, args.name, plain(args.props)))

    return ResourceValidationPolicy(name, description, validate, MANDATORY)


def _server_minimums(resource_type: str, name: str, props: dict[str, Any]) -> list[str]:
    try:
        settings = stack_settings()
    except SettingsError:
        settings = None  # the program itself refuses such config, naming the key
    # The stack's declared server count decides the tier; the tag is the fallback.
    minimums = minimums_for(settings.servers) if settings else rules.minimums_for_tags(props)
    return rules.server_minimum_violations(name, props, minimums)


def _resolved(resource: Any) -> dict[str, Any]:
    """Props, with security-group references replaced by the URN they come from when the program wired one.

    During a preview a new group's id is unknown; its URN still tells whether a
    rule's source is the rule's own group.
    """
    props = plain(resource.props)
    for key in _SG_PROPS:
        deps = resource.property_dependencies.get(key, [])
        urns = sorted(d.urn for d in deps if d.resource_type == rules.SECURITY_GROUP)
        if urns:
            props[key] = "urn:" + ",".join(urns)
    return props


def _config_or_report(report: ReportViolation) -> Settings | None:
    try:
        settings = stack_settings()
    except SettingsError as e:
        report(f"the stack's config is invalid: {e}")
        return None
    if settings is None:
        report(f"the policy pack cannot see the stack's '{NAMESPACE}:*' config, so it cannot tell the declared "
               "front-ends or subnets; run it from `pulumi preview/up --policy-pack policy` on this project")
    return settings


def validate_redis_sources(args: StackValidationArgs, report: ReportViolation) -> None:
    settings = _config_or_report(report)
    if settings is None:
        return
    declared = declared_sources(settings)
    for r in args.resources:
        found = rules.ingress_of(r.resource_type, r.name, _resolved(r))
        _report_all(report, rules.redis_source_violations(found, declared), r.urn)


def validate_topology(args: StackValidationArgs, report: ReportViolation) -> None:
    settings = _config_or_report(report)
    if settings is None:
        return
    subnets = {r.urn: plain(r.props).get("cidrBlock") for r in args.resources if r.resource_type == rules.SUBNET}
    servers = []
    for r in args.resources:
        if r.resource_type != rules.INSTANCE:
            continue
        deps = [d.urn for d in r.property_dependencies.get("subnetId", []) if d.resource_type == rules.SUBNET]
        servers.append(rules.ServerFacts(r.name, rules.tags_of(plain(r.props)), deps[0] if len(deps) == 1 else None))
    _report_all(report, rules.topology_violations(servers, subnets, settings.subnet_cidrs, settings.cluster))


def _bucket_key(resource: Any, by_name: dict[str, str]) -> str | None:
    """The URN of the bucket a configuration resource is aimed at: through its `bucket` property's
    dependency (known even in a preview), else by the bucket's name."""
    deps = [d.urn for d in resource.property_dependencies.get("bucket", []) if d.resource_type in rules.BUCKETS]
    if len(deps) == 1:
        return deps[0]
    value = plain(resource.props).get("bucket")
    return by_name.get(value) if isinstance(value, str) else None


def validate_buckets(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = {r.urn: r for r in args.resources if r.resource_type in rules.BUCKETS}
    by_name = {plain(r.props).get("bucket"): urn for urn, r in buckets.items() if plain(r.props).get("bucket")}
    aimed: dict[str, dict[str, list[dict[str, Any]]]] = {urn: {} for urn in buckets}
    for r in args.resources:
        for kind, types in (("encryption", rules.BUCKET_ENCRYPTION), ("versioning", rules.BUCKET_VERSIONING),
                            ("public_access", rules.BUCKET_PUBLIC_ACCESS)):
            target = _bucket_key(r, by_name) if r.resource_type in types else None
            if target in aimed:
                aimed[target].setdefault(kind, []).append(plain(r.props))
    for urn, r in buckets.items():
        facts = rules.BucketFacts(r.name, plain(r.props), **{k: tuple(v) for k, v in aimed[urn].items()})
        _report_all(report, rules.bucket_violations(facts), urn)


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [
        _resource_policy(
            "no-open-ingress",
            "No security group rule admits 0.0.0.0/0 or ::/0, and none opens SSH (22).",
            (rules.INGRESS_RULE, rules.SECURITY_GROUP_RULE, rules.SECURITY_GROUP),
            rules.open_ingress_violations,
        ),
        StackValidationPolicy(
            "redis-ports-from-declared-sources",
            "Redis client ports (6379/7000/7001) only from the declared front-ends or the Redis group itself; "
            "cluster bus ports (17000/17001) only from the Redis group itself.",
            validate_redis_sources,
            MANDATORY,
        ),
        _resource_policy(
            "server-meets-tier-minimums",
            "Each Redis server meets the OutSystems tier minimums: vCPU, memory, non-burstable CPU, root volume.",
            (rules.INSTANCE,),
            _server_minimums,
        ),
        _resource_policy(
            "imdsv2-required",
            "Instances require IMDSv2 (metadataOptions.httpTokens = required).",
            (rules.INSTANCE,),
            lambda _t, name, props: rules.imdsv2_violations(name, props),
        ),
        _resource_policy(
            "encrypted-volumes",
            "Root and data volumes are encrypted.",
            (rules.INSTANCE, rules.EBS_VOLUME),
            rules.encryption_violations,
        ),
        _resource_policy(
            "no-public-ip",
            "Redis servers get no public IP: no public address on instances, subnets or elastic IPs.",
            (rules.INSTANCE, rules.SUBNET, rules.EIP, rules.EIP_ASSOCIATION),
            rules.public_ip_violations,
        ),
        StackValidationPolicy(
            "production-topology",
            "A production cluster has at least 3 servers spread over the configured subnets, and every replica "
            "runs on a different server than its master.",
            validate_topology,
            MANDATORY,
        ),
        StackValidationPolicy(
            "bucket-encrypted-versioned-private",
            "Every S3 bucket (the RDB snapshots) has default encryption, versioning enabled and a public access "
            "block with all four settings on.",
            validate_buckets,
            MANDATORY,
        ),
        _resource_policy(
            "alarm-has-action",
            "Every CloudWatch alarm has at least one alarm action, with actions enabled.",
            (rules.METRIC_ALARM,),
            lambda _t, name, props: rules.alarm_action_violations(name, props),
        ),
    ]
