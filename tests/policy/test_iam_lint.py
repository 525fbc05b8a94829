"""Every IAM policy document the program asks AWS for, through an IAM policy linter (parliament, with its
community auditors): the servers' inline policy, the backup bucket's policy, the alarm key's policy, on each
shape of stack. A finding fails the test unless it is accepted below, for one kind of document, with the
reason. The role's trust policy is not for this linter (it reads it as an identity policy, calls it malformed
for having no Resource and stops there): it is checked here statement by statement instead.
"""

from __future__ import annotations

import json

import pytest
from parliament import analyze_policy_string

from tests.unit.program import Program, run_program

TRUST = ("aws:iam/role:Role", "assumeRolePolicy")
# (resource type, input) -> the findings that document may carry, and why.
ACCEPTED = {
    ("aws:kms/key:Key", "policy"): {
        # AWS's default key policy: the account administers its own key (without it the key could be
        # locked out for good). In a key policy "*" is the key itself.
        "RESOURCE_STAR": "a key policy's Resource is the key",
        "PERMISSIONS_MANAGEMENT_ACTIONS": "the account administers its key",
    },
}
# The documents that must be there to lint: a shape that rendered none would pass with nothing checked.
EXPECTED = {
    TRUST,
    ("aws:iam/rolePolicy:RolePolicy", "policy"),
    ("aws:s3/bucketPolicy:BucketPolicy", "policy"),
    ("aws:kms/key:Key", "policy"),
}
SHAPES = {
    "dev": ("dev", {}),
    "prod": ("prod", {}),
    "prod-7.0-tls-writers": ("prod", {
        "outsystems-redis:platform": "ubuntu-24.04-redis-7.0",
        "outsystems-redis:tls": True,
        "outsystems-redis:toolWriters": '["arn:aws:iam::111122223333:role/deployers/ci"]',
    }),
}


def policy_documents(program: Program) -> list[tuple[str, str, str, str]]:
    """(resource type, resource name, input, JSON text) of every input that holds a policy document."""
    found = []
    for r in program.resources:
        for key, value in r.inputs.items():
            if not isinstance(value, str) or "olicy" not in key:
                continue
            try:
                document = json.loads(value)
            except ValueError:
                continue
            if isinstance(document, dict) and "Statement" in document:
                found.append((r.type, r.name, key, value))
    return found


@pytest.mark.parametrize("shape", SHAPES)
def test_every_rendered_policy_passes_the_iam_linter(shape: str) -> None:
    stack, overrides = SHAPES[shape]
    documents = policy_documents(run_program(stack, overrides))
    assert EXPECTED <= {(kind, key) for kind, _, key, _ in documents}, documents
    unexpected = []
    for kind, name, key, text in documents:
        if (kind, key) == TRUST:
            # Only EC2 may assume the servers' role: one statement, no wildcard, nothing else allowed.
            assert json.loads(text)["Statement"] == [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ], text
            continue
        accepted = ACCEPTED.get((kind, key), {})
        for finding in analyze_policy_string(text, include_community_auditors=True).findings:
            if finding.issue not in accepted:
                unexpected.append(f"{name}.{key}: {finding.issue} {finding.detail} at {finding.location}")
    assert not unexpected, "\n".join(unexpected)


def test_the_linter_catches_what_it_guards_against() -> None:
    """The linter this test relies on does report a wildcard write and an unknown action."""
    bad = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:PutBucketPolicy"], "Resource": "*"},
        {"Effect": "Allow", "Action": "ssm:GetParameters2", "Resource": "arn:aws:ssm:eu-west-1:1:parameter/x"},
    ]})
    issues = {f.issue for f in analyze_policy_string(bad, include_community_auditors=True).findings}
    assert {"RESOURCE_STAR", "UNKNOWN_ACTION"} <= issues, issues
