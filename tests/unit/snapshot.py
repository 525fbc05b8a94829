"""Every resource the program asks for, as one comparable document: URN, parent, options and inputs.

Two guards read it (tests/unit/test_upgrade_snapshot.py). The invariant: no URN of golden/ is lost,
re-typed or re-parented, and protect, ignore_changes and delete_before_replace stay: those would replace
servers, and no command re-blesses them. The approved inputs: everything else (user data, scripts,
policies, alarms) may change, once `python -m tests.unit.snapshot --approve` has printed what changed and
written it to golden/, so the pull request shows it. The URNs in golden/ are those of commit d1f9c00,
before issue 15's reusable component and layout split; they have held since.

Long texts (user data, policies, scripts) are kept as a digest of their text: the golden files stay
small, and any change of one byte still shows. RENAMES are the refactor's only intended changes of
text, applied to both sides before comparing: the health check's module path in the post-deploy
command and in a hint of the servers' cluster-join script (user data, which running servers ignore),
and the judge's file named in the header of the uploaded redis-observe.py (re-uploaded once).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from tests.unit.program import Program, run_program

GOLDEN = Path(__file__).parent / "golden"
# Configurations that between them make every resource type and every branch of the wiring.
SHAPES: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "dev": ("dev", {}, ()),
    "prod": ("prod", {}, ()),
    "prod-tls-7.0-email": (
        "prod",
        {
            "outsystems-redis:platform": "ubuntu-24.04-redis-7.0",
            "outsystems-redis:tls": True,
            "outsystems-redis:alarmEmail": "ops@example.com",
        },
        (),
    ),
    "prod-existing-vpc-nat-topic": (
        "prod",
        {
            "outsystems-redis:vpcId": "vpc-0a1b2c3d4e5f60718",
            "outsystems-redis:natGatewayId": "nat-0123456789abcdef0",
            "outsystems-redis:frontEndSecurityGroupIds": ["sg-0123456789abcdef0"],
            "outsystems-redis:alarmTopicArn": "arn:aws:sns:eu-west-1:111122223333:redis-alarms",
            "outsystems-redis:availabilityZones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
            "outsystems-redis:servers": 4,
            "outsystems-redis:protect": False,
            "outsystems-redis:replaceServers": ["2"],
            "outsystems-redis:logRetentionDays": 90,
            "outsystems-redis:backupRetentionDays": 3,
        },
        (),
    ),
    "dev-password-no-check-tags": (
        "dev",
        {
            "outsystems-redis:redisPassword": "Sixteen-chars-or-more-0123",
            "outsystems-redis:healthCheck": False,
            "outsystems-redis:natSubnetId": "subnet-0123456789abcdef0",
            "outsystems-redis:amiId": "ami-0fedcba9876543210",
            "outsystems-redis:tags": {"CostCenter": "1234", "Owner": "platform team"},
            "outsystems-redis:rootVolumeGiB": 40,
            "outsystems-redis:port": 6380,
        },
        ("outsystems-redis:redisPassword",),
    ),
}
# Old text -> new text. Longest first, so a module path is never half-renamed.
RENAMES: tuple[tuple[str, str], ...] = (
    ("components.health", "operator_tools.health"),
    ("components/health.py", "components/judge.py"),
)
LONG = 160


def _text(value: str) -> str:
    for old, new in RENAMES:
        value = value.replace(old, new)
    return value


def _normal(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(k, v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_normal(key, v) for v in value]
    if isinstance(value, str):
        if key == "userDataBase64":
            value = gzip.decompress(base64.b64decode(value)).decode()
        value = _text(value)
        if len(value) > LONG:
            return f"sha256:{hashlib.sha256(value.encode()).hexdigest()} ({len(value)} chars)"
    return value


def snapshot(program: Program) -> dict[str, Any]:
    """The program's resources keyed by URN, and its exports."""
    resources = {}
    for r in program.resources:
        assert r.urn not in resources, f"two resources with the URN {r.urn}"
        resources[r.urn] = {
            # The stack's own URN as the parent of top-level resources: the mocks keep the root resource of
            # the first program a test process ran, and the stack's URN is not part of its children's URNs.
            "parent": "pulumi:pulumi:Stack" if "::pulumi:pulumi:Stack::" in r.parent else r.parent,
            "inputs": _normal("", r.inputs),
            "secret_inputs": sorted(r.secret_inputs),
            "protect": r.protect,
            "ignore_changes": sorted(r.ignore_changes),
            "delete_before_replace": r.delete_before_replace,
            "dependencies": sorted(r.dependencies),
        }
    return {
        "resources": resources,
        "exports": {k: _normal(k, v) for k, v in sorted(program.exports.items())},
        "secret_exports": sorted(program.secret_exports),
    }


def take(shape: str) -> dict[str, Any]:
    stack, overrides, secret_keys = SHAPES[shape]
    return snapshot(run_program(stack, overrides, secret_keys=secret_keys))


def golden_path(shape: str) -> Path:
    return GOLDEN / f"{shape}.json"


# What an existing stack's resources must keep for `pulumi up` to update them in place: a changed URN
# (type token, name, parent chain) replaces a resource, and so can a changed option.
INVARIANT = ("parent", "protect", "ignore_changes", "delete_before_replace")


def invariant_breaks(golden: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Every way `now` would replace or orphan a resource of `golden`: lost URNs, changed parents and options.
    New resources are fine (an upgrade creates them)."""
    breaks = []
    for urn, was in golden["resources"].items():
        if urn not in now["resources"]:
            breaks.append(f"lost (renamed, re-typed or re-parented): {urn}")
            continue
        for option in INVARIANT:
            if now["resources"][urn][option] != was[option]:
                breaks.append(f"{option} changed: {urn}: {was[option]!r} -> {now['resources'][urn][option]!r}")
    return breaks


def input_changes(golden: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What a reviewer approves: new resources, and changed inputs, dependencies and exports (by key)."""
    changes = [f"new: {urn}" for urn in sorted(set(now["resources"]) - set(golden["resources"]))]
    for urn, was in golden["resources"].items():
        new = now["resources"].get(urn)
        if new is None:
            continue
        for part in ("inputs", "secret_inputs", "dependencies"):
            a, b = was[part], new[part]
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                changes.append(f"{part} of {urn.rsplit('::', 1)[-1]}: {', '.join(keys)}")
            else:
                changes.append(f"{part} of {urn.rsplit('::', 1)[-1]}")
    for part in ("exports", "secret_exports"):
        if golden[part] != now[part]:
            changes.append(part)
    return changes


# The release of the fetched programs (outsystems_redis/signing.py: RELEASE): release -> digest of the programs.
# A server refuses a release older than the one it runs, so one release number must never name two sets.
RELEASES = GOLDEN / "tools-releases.json"


def fetched_digest() -> str:
    """sha256 of every fetched program (key and exact text), as `pulumi up` uploads them."""
    from outsystems_redis.render.fetched import fetched_tools
    return hashlib.sha256(json.dumps(sorted(fetched_tools().items())).encode()).hexdigest()


def release_problem(ledger: dict[str, str], release: int, digest: str) -> str | None:
    """Why the programs of `digest` cannot go out as `release`, given the recorded `ledger`; None when they can
    (recorded as that release, or a new release above every recorded one)."""
    if ledger.get(str(release)) == digest:
        return None
    latest = max(map(int, ledger), default=0)
    if str(release) in ledger or release <= latest:
        return (f"the fetched programs changed, but release {release} already names other programs (or is not "
                f"the latest, {latest}): raise outsystems_redis.signing.RELEASE to {latest + 1}")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Approve the program's current inputs as the upgrade golden (tests/unit/golden/).",
        epilog="--approve prints what changed, for the pull request, and refuses to approve a lost URN or a "
               "changed parent, protect, ignore_changes or delete_before_replace: those replace servers.")
    parser.add_argument("--approve", action="store_true", help="write golden/<shape>.json from the program now")
    parser.add_argument("shapes", nargs="*", default=list(SHAPES))
    args = parser.parse_args()
    status = 0
    for shape in args.shapes:
        doc = take(shape)
        path = golden_path(shape)
        golden = json.loads(path.read_text()) if path.exists() else {"resources": {}, "exports": {},
                                                                     "secret_exports": []}
        breaks = invariant_breaks(golden, doc)
        if breaks:
            print(f"{shape}: NOT approved, an existing stack would lose or replace resources:")
            print("\n".join(f"  {b}" for b in breaks))
            status = 1
            continue
        changes = input_changes(golden, doc)
        print(f"{shape}: {len(doc['resources'])} resources; {len(changes)} change(s) to approve")
        print("\n".join(f"  {c}" for c in changes))
        if args.approve and changes:
            GOLDEN.mkdir(exist_ok=True)
            path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    from outsystems_redis.signing import RELEASE
    ledger = json.loads(RELEASES.read_text()) if RELEASES.exists() else {}
    digest = fetched_digest()
    problem = release_problem(ledger, RELEASE, digest)
    if problem:
        print(f"fetched programs: NOT approved: {problem}")
        status = 1
    elif ledger.get(str(RELEASE)) != digest:
        print(f"fetched programs: release {RELEASE} to record")
        if args.approve:
            RELEASES.write_text(json.dumps({**ledger, str(RELEASE): digest}, indent=1, sort_keys=True) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
