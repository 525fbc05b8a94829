"""The pack's backup-bucket and alarm policies: the mocked program passes, each weakened resource is caught."""

from __future__ import annotations

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from policy import rules
from tests.policy.harness import Res, evaluate, from_program, set_stack_config, violations
from tests.unit.program import Program, run_program

BUCKET_POLICY = "bucket-encrypted-versioned-private"
ALARM_POLICY = "alarm-has-action"


@pytest.fixture(scope="module")
def prod() -> Program:
    return run_program("prod")


def resources(prod: Program) -> list[Res]:
    set_stack_config("prod")
    return from_program(prod)


def of(resources: list[Res], types: tuple[str, ...] | str) -> list[Res]:
    types = (types,) if isinstance(types, str) else types
    return [r for r in resources if r.type in types]


def only(found: dict[str, list[str]], policy: str) -> list[str]:
    bad = violations(found)
    assert set(bad) == {policy}, bad
    return bad[policy]


def test_the_program_passes_and_the_bucket_configs_are_matched_through_their_dependency(prod: Program) -> None:
    res = resources(prod)
    assert len(of(res, rules.BUCKETS)) == 1
    configs = of(res, rules.BUCKET_ENCRYPTION + rules.BUCKET_VERSIONING + rules.BUCKET_PUBLIC_ACCESS)
    assert len(configs) == 3 and all(c.deps.get("bucket") for c in configs)
    assert len(of(res, rules.METRIC_ALARM)) > 3
    assert violations(evaluate(res)) == {}


@pytest.mark.parametrize(
    ("types", "change", "expected"),
    [
        (rules.BUCKET_ENCRYPTION, lambda p: p.update(rules=[]), "no default encryption"),
        (rules.BUCKET_VERSIONING, lambda p: p.update(versioningConfiguration={"status": "Suspended"}),
         "is not versioned"),
        (rules.BUCKET_PUBLIC_ACCESS, lambda p: p.update(restrictPublicBuckets=False), "full public access block"),
        (rules.BUCKET_PUBLIC_ACCESS, lambda p: p.pop("blockPublicPolicy"), "full public access block"),
    ],
    ids=["encryption-without-rule", "versioning-suspended", "one-public-setting-off", "one-public-setting-unset"],
)
def test_a_weakened_bucket_is_caught(prod: Program, types: tuple[str, ...], change, expected: str) -> None:
    res = resources(prod)
    (config,) = of(res, types)
    change(config.props)
    (msg,) = only(evaluate(res), BUCKET_POLICY)
    assert expected in msg and "outsystems-redis-observability-backups" in msg and "add an aws.s3." in msg


@pytest.mark.parametrize("types", [rules.BUCKET_ENCRYPTION, rules.BUCKET_VERSIONING, rules.BUCKET_PUBLIC_ACCESS],
                         ids=["encryption", "versioning", "public-access"])
def test_a_missing_bucket_config_is_caught(prod: Program, types: tuple[str, ...]) -> None:
    res = [r for r in resources(prod) if r.type not in types]
    assert len(only(evaluate(res), BUCKET_POLICY)) == 1


def test_a_config_aimed_at_another_bucket_does_not_count(prod: Program) -> None:
    res = resources(prod)
    other = Res("aws:s3/bucket:Bucket", "other", {"bucket": "someone-elses"})
    for config in of(res, rules.BUCKET_VERSIONING):
        config.deps = {"bucket": [other.urn]}
    msgs = only(evaluate(res + [other]), BUCKET_POLICY)
    assert sum("outsystems-redis-observability-backups is not versioned" in m for m in msgs) == 1
    # The other bucket got the versioning, and still lacks encryption and the public access block.
    assert sorted(m.split(";")[0] for m in msgs if m.startswith("bucket other")) == [
        "bucket other has no default encryption", "bucket other lacks a full public access block"]


def test_configs_are_matched_by_name_without_a_dependency_and_inline_settings_count() -> None:
    set_stack_config("prod")
    bucket = Res("aws:s3/bucketV2:BucketV2", "legacy", {"bucket": "legacy-bucket", "versioning": {"enabled": True},
                                                         "serverSideEncryptionConfiguration": {"rule": {
                                                             "applyServerSideEncryptionByDefault": {
                                                                 "sseAlgorithm": "aws:kms"}}}})
    block = Res(rules.BUCKET_PUBLIC_ACCESS[0], "legacy-pab", {"bucket": "legacy-bucket",
                                                              **dict.fromkeys(rules.PUBLIC_ACCESS_SETTINGS, True)})
    assert violations(evaluate([bucket, block])).get(BUCKET_POLICY) is None
    block.props["bucket"] = "another-bucket"
    (msg,) = violations(evaluate([bucket, block]))[BUCKET_POLICY]
    assert "bucket legacy lacks a full public access block" in msg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p.pop("alarmActions"), "has no alarmActions"),
        (lambda p: p.update(alarmActions=[]), "has no alarmActions"),
        (lambda p: p.update(actionsEnabled=False), "actionsEnabled=false"),
    ],
    ids=["no-actions", "empty-actions", "actions-disabled"],
)
def test_an_alarm_that_notifies_no_one_is_caught(prod: Program, change, expected: str) -> None:
    res = resources(prod)
    alarm = next(a for a in of(res, rules.METRIC_ALARM) if a.props["metricName"] == "EvictedKeys")
    change(alarm.props)
    (msg,) = only(evaluate(res), ALARM_POLICY)
    assert expected in msg and alarm.name in msg


def test_an_alarm_whose_topic_is_unknown_in_a_preview_passes() -> None:
    # A first preview: the topic is not created yet, so its ARN is unknown; the alarm still has an action.
    assert rules.alarm_action_violations("a", {"alarmActions": [UNKNOWN_STRING_VALUE]}) == []
    assert rules.alarm_action_violations("a", {"alarmActions": rules.UNKNOWN}) == []
