"""Drive the policy pack's real wiring (policy/pack.py) with pulumi-policy's own argument objects.

The resources come from the mocked program (tests/unit/program.py) or are
crafted. Props go through pulumi-policy's unknown-checking proxy, as they do
under the CLI. Stack policies get PolicyResource objects with the property
dependencies the engine would send (subnetId -> the subnet, security-group
references -> the group), so the URN-based matching is exercised too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi_policy import (
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.policy import PolicyCustomTimeouts
from pulumi_policy.proxy import unknown_checking_proxy

from policy import rules
from policy.pack import policies
from tests.unit.program import Program, config_for_pulumi, stack_config

SG_PROPS = ("securityGroupId", "referencedSecurityGroupId", "sourceSecurityGroupId")


@dataclass
class Res:
    """A resource as the policy pack sees it."""

    type: str
    name: str
    props: dict[str, Any]
    urn: str = ""
    deps: dict[str, list[str]] = field(default_factory=dict)  # property -> URNs it was computed from

    def __post_init__(self) -> None:
        self.urn = self.urn or f"urn:pulumi:test::outsystems-redis::{self.type}::{self.name}"


def from_program(program: Program) -> list[Res]:
    """Recorded resources -> Res, with the property dependencies the engine would report."""
    by_urn = {r.urn: r for r in program.resources}
    out = []
    for r in program.resources:
        deps: dict[str, list[str]] = {}
        subnets = [u for u in r.dependencies if by_urn.get(u) and by_urn[u].type == rules.SUBNET]
        groups = [u for u in r.dependencies if by_urn.get(u) and by_urn[u].type == rules.SECURITY_GROUP]
        if "subnetId" in r.inputs and len(subnets) == 1:
            deps["subnetId"] = subnets
        buckets = [u for u in r.dependencies if by_urn.get(u) and by_urn[u].type in rules.BUCKETS]
        if "bucket" in r.inputs and len(buckets) == 1:
            deps["bucket"] = buckets
        for key in SG_PROPS:
            # Only a group the program created has a URN; a configured front-end group id is a literal.
            if key in r.inputs and groups and str(r.inputs[key]).startswith("sg-0feedface"):
                deps[key] = groups
        out.append(Res(r.type, r.name, copy.deepcopy(r.inputs), r.urn, deps))
    return out


def set_stack_config(stack: str, overrides: dict[str, Any] | None = None) -> None:
    pulumi.runtime.set_all_config(config_for_pulumi({**stack_config(stack), **(overrides or {})}))


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def evaluate(resources: list[Res]) -> dict[str, list[str]]:
    """Every policy of the pack over `resources`: policy name -> violation messages."""
    found: dict[str, list[str]] = {}
    policy_resources = {
        r.urn: PolicyResource(r.type, unknown_checking_proxy(r.props), r.urn, r.name, _opts(), None, None, [], {})
        for r in resources
    }
    for r in resources:
        policy_resources[r.urn].property_dependencies = {
            k: [policy_resources[u] for u in urns if u in policy_resources] for k, urns in r.deps.items()
        }
    for policy in policies():
        messages = found.setdefault(policy.name, [])

        def report(message: str, urn: str | None = None, _m: list[str] = messages) -> None:
            _m.append(message)

        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(r.type, unknown_checking_proxy(r.props), r.urn, r.name, _opts(), None)
                policy.validate(args, report)
        else:
            policy.validate(StackValidationArgs(list(policy_resources.values())), report)
    return found


def violations(found: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in found.items() if v}
