"""The `tags` key and the serverInstanceIds / redisVersion outputs, on the whole program under mocks.

Which resources take tags is read from the provider packages themselves (a `tags` argument),
not listed here: a resource added later that takes tags and lacks the user's fails this file.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import pytest

from outsystems_redis.errors import SettingsError
from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.settings import MAX_TAGS_PER_RESOURCE, MAX_USER_TAGS, OUR_TAG_KEYS
from tests.tools import documentation
from tests.unit.program import ROOT, SERVER_ROLE_ID, Program, Recorded, run_program

TLS_7 = {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0", "outsystems-redis:tls": True}
# Between them every resource type the program makes: the NAT it creates, the TLS material,
# the alarm topic with its key and email subscription, the health check.
SHAPES = {
    "dev": ("dev", {}),
    "prod-tls-7.0-email": ("prod", {**TLS_7, "outsystems-redis:alarmEmail": "ops@example.com"}),
}
# Conflicts on purpose: Project and Stack are ours; `name` differs from our Name only in case (IAM
# holds keys case-insensitively, so it must give way wherever we set Name).
USER_TAGS = {
    "CostCenter": "1234",
    "Owner": "platform team",
    "Équipe": "données/sessions @ eu-west-1",
    "Empty": "",
    "Project": "someone-elses",
    "Stack": "not-this-one",
    "name": "theirs",
}
# Taggable, yet deliberately untagged: S3 allows 10 tags per object (AWS's limit for the rest is 50),
# and an object is billed as part of its bucket, which carries the tags.
EXEMPT = {"aws:s3/bucketObjectv2:BucketObjectv2"}
OUR_COMPONENTS = {
    "outsystems:redis:Environment",
    "outsystems:redis:Network",
    "outsystems:redis:Server",
    "outsystems:redis:Observability",
}


def tag_arguments(token: str) -> list[str]:
    """The tag inputs (camelCase, as recorded) the resource type's Python class accepts."""
    package, module, name = token.split(":")
    path = f"pulumi_{package}" + ("" if module.split("/")[0] == "index" else "." + module.split("/")[0])
    cls = getattr(importlib.import_module(path), name)
    parameters = inspect.signature(cls._internal_init).parameters
    return [camel for snake, camel in (("tags", "tags"), ("volume_tags", "volumeTags")) if snake in parameters]


def with_tags(overrides: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    return {**overrides, "outsystems-redis:tags": tags}


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[Program, Program]]:
    """Per shape: (without tags, with USER_TAGS)."""
    return {
        key: (run_program(stack, overrides), run_program(stack, with_tags(overrides, USER_TAGS)))
        for key, (stack, overrides) in SHAPES.items()
    }


def by_urn(program: Program) -> dict[str, Recorded]:
    return {r.urn: r for r in program.resources}


def expected_tags(ours: dict[str, str]) -> dict[str, str]:
    """The user's tags under ours: a user key matching one of ours in any case gives way."""
    mine = {k.lower() for k in ours}
    return {**{k: v for k, v in USER_TAGS.items() if k.lower() not in mine}, **ours}


# ------------------------------------------------------------------------------ tags


def test_the_shapes_cover_every_taggable_type_and_the_exemptions_exist(pairs: dict) -> None:
    types = {r.type for _, (_, tagged) in pairs.items() for r in tagged.resources}
    taggable = {t for t in types - OUR_COMPONENTS if tag_arguments(t)}
    # The list guards the discovery itself: a broken look-up would find nothing and check nothing.
    assert {"aws:ec2/instance:Instance", "aws:s3/bucket:Bucket", "aws:kms/key:Key", "aws:sns/topic:Topic",
            "aws:ssm/parameter:Parameter", "aws:cloudwatch/logGroup:LogGroup", "aws:cloudwatch/metricAlarm:MetricAlarm",
            "aws:iam/role:Role", "aws:ec2/eip:Eip", "aws:ec2/natGateway:NatGateway"} <= taggable
    assert tag_arguments("aws:ec2/instance:Instance") == ["tags", "volumeTags"]
    assert not tag_arguments("aws:cloudwatch/dashboard:Dashboard")  # AWS cannot tag a dashboard
    assert EXEMPT <= taggable, "an exemption for a type the program no longer makes: drop it"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_user_tags_are_on_every_taggable_resource_and_ours_win(pairs: dict, shape: str) -> None:
    plain, tagged = pairs[shape]
    before, after = by_urn(plain), by_urn(tagged)
    assert before.keys() == after.keys(), "tags added or removed a resource"
    checked = 0
    for urn, resource in after.items():
        if resource.type in OUR_COMPONENTS or resource.type in EXEMPT:
            continue
        for argument in tag_arguments(resource.type):
            assert argument in resource.inputs, f"{resource.name} ({resource.type}) takes {argument} but has none"
            ours = before[urn].inputs[argument]
            # Ours unchanged, the user's added beneath them, nothing else.
            assert resource.inputs[argument] == expected_tags(ours), (resource.name, argument)
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("shape", list(SHAPES))
def test_tags_change_nothing_but_the_tags(pairs: dict, shape: str) -> None:
    plain, tagged = pairs[shape]
    before = by_urn(plain)
    for urn, resource in by_urn(tagged).items():
        old = before[urn]
        strip = set(tag_arguments(resource.type)) if resource.type not in OUR_COMPONENTS else set()
        assert {k: v for k, v in resource.inputs.items() if k not in strip} == {
            k: v for k, v in old.inputs.items() if k not in strip
        }, resource.name
        assert (resource.protect, resource.ignore_changes, resource.delete_before_replace, resource.parent) == (
            old.protect, old.ignore_changes, old.delete_before_replace, old.parent
        ), resource.name
        assert set(resource.dependencies) == set(old.dependencies), resource.name
    assert tagged.exports == plain.exports


def test_ours_are_the_declared_keys_and_the_most_user_tags_fit_in_awss_fifty() -> None:
    """The count check in settings assumes no resource carries tags of ours beyond OUR_TAG_KEYS."""
    most = {f"k{i:03d}" + "x" * 124: "v" * 256 for i in range(MAX_USER_TAGS)}
    most["project"] = "ours wins and it is not counted"
    for stack, overrides in SHAPES.values():
        program = run_program(stack, with_tags(overrides, most))
        for resource in program.resources:
            for argument in tag_arguments(resource.type) if resource.type not in OUR_COMPONENTS else []:
                tags = resource.inputs.get(argument, {})
                assert len(tags) <= MAX_TAGS_PER_RESOURCE, (resource.name, len(tags))
                assert set(tags) - set(most) <= set(OUR_TAG_KEYS), resource.name
    one_more = {**most, "one-more": "x"}
    with pytest.raises(SettingsError) as err:
        run_program("dev", with_tags({}, one_more))
    assert err.value.key == "tags" and f"at most {MAX_USER_TAGS}" in str(err.value)


BAD_TAGS = [
    ('["CostCenter"]', "tags", "a YAML map"),
    ("CostCenter=1234", "tags", "a YAML map"),
    ({"CostCenter": 1234}, "tags.CostCenter", "quote numbers"),
    ({"Billable": True}, "tags.Billable", "quote numbers"),
    ({"Owner": None}, "tags.Owner", "a string"),
    ({"Owner": ["a", "b"]}, "tags.Owner", "a string"),
    ({"": "x"}, "tags", "tag keys of 1 to 128"),
    ({"k" * 129: "x"}, "tags", "tag keys of 1 to 128"),
    ({"Owner": "v" * 257}, "tags.Owner", "at most 256"),
    ({"Cost#Center": "1"}, "tags", "_ . : / = + - @"),
    ({"Owner": "a,b"}, "tags.Owner", "_ . : / = + - @"),
    ({"aws:createdBy": "me"}, "tags.aws:createdBy", "'aws:' prefix"),
    ({"AWS:Owner": "me"}, "tags.AWS:Owner", "'aws:' prefix"),
    ({"Owner": "AWS:me"}, "tags.Owner", "'aws:' prefix"),
    ({"Owner": "a", "owner": "b"}, "tags", "differ in more than case"),
]


@pytest.mark.parametrize(("value", "key", "detail"), BAD_TAGS, ids=[f"{k}-{d}" for _, k, d in BAD_TAGS])
def test_bad_tags_name_the_key_and_register_nothing(value: Any, key: str, detail: str) -> None:
    recorded: list = []
    # A string goes to the program as written; a map or list as Pulumi hands structured config over (JSON).
    with pytest.raises(SettingsError) as err:
        run_program("dev", {"outsystems-redis:tags": value}, into=recorded)
    assert err.value.key == key
    assert f"config key '{key}'" in str(err.value) and detail in str(err.value)
    assert recorded == [], "a resource was registered before the error"


def test_a_tag_value_may_be_empty_and_unicode(pairs: dict) -> None:
    _, tagged = pairs["dev"]
    (instance,) = tagged.of_type("aws:ec2/instance:Instance")
    assert instance.inputs["tags"]["Empty"] == "" and instance.inputs["tags"]["Équipe"].startswith("données")
    assert json.loads(json.dumps(instance.inputs["volumeTags"])) == instance.inputs["volumeTags"]


# ------------------------------------------------------------------------------ outputs


@pytest.mark.parametrize("servers", [1, 3, 6])
def test_server_instance_ids_follow_the_server_order(servers: int) -> None:
    stack = "dev" if servers == 1 else "prod"
    program = run_program(stack, {} if servers == 1 else {"outsystems-redis:servers": servers})
    ids = program.exports["serverInstanceIds"]
    # The mocks give each instance the id "<name>-id"; the name carries the server's number.
    assert ids == [f"outsystems-redis-server-{n}-instance-id" for n in range(1, servers + 1)]
    by_ip = {r.inputs["privateIp"]: f"{r.name}-id" for r in program.of_type("aws:ec2/instance:Instance")}
    assert ids == [by_ip[ip] for ip in program.exports["serverPrivateIps"]]  # the same order as the IPs
    assert "serverInstanceIds" not in program.secret_exports
    # Each server's own metric namespace, in the same order: its session is the role's id and its instance's.
    assert program.exports["serverMetricNamespaces"] == [f"OutSystems/Redis/{stack}/{SERVER_ROLE_ID}:{i}" for i in ids]


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_redis_version_is_the_platforms_line(platform: str) -> None:
    program = run_program("dev", {"outsystems-redis:platform": platform})
    expected = {"ubuntu-20.04-redis-5.0": "5.0", "ubuntu-24.04-redis-7.0": "7.0"}[platform]
    assert program.exports["redisVersion"] == expected == PLATFORMS[platform].redis_version
    assert "redisVersion" not in program.secret_exports


def test_the_readme_names_every_output_and_the_tags_key(pairs: dict) -> None:
    text = (ROOT / "README.md").read_text()
    for _, tagged in pairs.values():
        for name in tagged.exports:
            assert f"`{name}`" in text, f"output {name} is not in the README"
    table = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    assert "| `tags` | none |" in table and f"at most {MAX_USER_TAGS} besides" in table
    everywhere = documentation()
    assert "aws ssm start-session --target <instance id of outsystems-redis-server-1>" not in everywhere
    assert "serverInstanceIds" in everywhere.split("aws ssm start-session", 1)[1][:400]


@pytest.mark.parametrize("stack, overrides", [("dev", {}), ("prod", {}),
                                              ("prod", {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0",
                                                        "outsystems-redis:tls": True})])
def test_every_tag_the_program_writes_uses_only_characters_every_service_accepts(stack, overrides) -> None:
    """The general AWS tag rule (letters, digits, spaces, _ . : / = + - @): some services refuse the rest,
    a comma among them (the servers' RedisRoles tag carried one)."""
    from outsystems_redis.settings import _tag_text_ok

    program = run_program(stack, overrides)
    bad = [(r.name, k, v) for r in program.resources for k, v in (r.inputs.get("tags") or {}).items()
           if not (_tag_text_ok(str(k)) and _tag_text_ok(str(v)))]
    assert not bad, bad
