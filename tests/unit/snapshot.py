"""Every resource the program asks for, as one comparable document: URN, parent, options and inputs.

`tests/unit/test_upgrade_snapshot.py` compares the program with the documents in golden/, written by
`python -m tests.unit.snapshot --write` at commit d1f9c00 (cbafa15 plus a fix of the hash-seed order
of the uploaded redis-observe.py), before the reusable component and the layout split of issue 15.
An existing stack upgrades without a replacement only if its URNs (type tokens, names, parent
chain) stay, and without a surprise only if its inputs stay.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write golden/<shape>.json (only from the old code)")
    parser.add_argument("shapes", nargs="*", default=list(SHAPES))
    args = parser.parse_args()
    for shape in args.shapes:
        doc = take(shape)
        text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        if args.write:
            GOLDEN.mkdir(exist_ok=True)
            golden_path(shape).write_text(text)
        print(f"{shape}: {len(doc['resources'])} resources, {len(text)} bytes")


if __name__ == "__main__":
    main()
