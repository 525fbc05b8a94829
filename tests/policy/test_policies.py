"""The policy pack, on the mocked program's resources (all pass) and on crafted bad ones (each caught).

Every bad case asserts which policy reports it and that the message says what
to change, and that the other policies stay quiet about it.
"""

from __future__ import annotations

import inspect
import re

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from outsystems_redis.sizing import NON_PRODUCTION, PRODUCTION
from policy import rules
from policy.pack import policies
from tests.policy.harness import Res, evaluate, from_program, set_stack_config, violations
from tests.unit.program import Program, run_program

POLICY_NAMES = {
    "no-open-ingress", "redis-ports-from-declared-sources", "server-meets-tier-minimums", "imdsv2-required",
    "encrypted-volumes", "no-public-ip", "production-topology", "bucket-encrypted-versioned-private",
    "alarm-has-action",
}


@pytest.fixture(scope="module")
def programs() -> dict[str, Program]:
    return {stack: run_program(stack) for stack in ("dev", "prod")}


def stack(programs: dict[str, Program], name: str) -> list[Res]:
    set_stack_config(name)
    return from_program(programs[name])


def instances(resources: list[Res]) -> list[Res]:
    return [r for r in resources if r.type == rules.INSTANCE]


def only(found: dict[str, list[str]], policy: str) -> list[str]:
    """The messages of `policy`, asserting no other policy reported anything."""
    bad = violations(found)
    assert set(bad) == {policy}, bad
    return bad[policy]


def test_the_pack_has_every_mandatory_policy() -> None:
    pack = policies()
    assert {p.name for p in pack} == POLICY_NAMES
    assert all(p.enforcement_level.value == "mandatory" for p in pack)


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_the_program_passes_every_policy(programs: dict[str, Program], name: str) -> None:
    resources = stack(programs, name)
    assert len(instances(resources)) == {"dev": 1, "prod": 3}[name]
    found = evaluate(resources)
    assert set(found) == POLICY_NAMES  # every policy ran
    assert violations(found) == {}


# ------------------------------------------------------------ security groups


def rule(name: str, **props: object) -> Res:
    base = {"securityGroupId": "sg-0feedfacecafe0001", "ipProtocol": "tcp", "description": "crafted"}
    return Res(rules.INGRESS_RULE, name, {**base, **props})


def test_world_open_redis_port_is_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "prod") + [rule("open", fromPort=7000, toPort=7001, cidrIpv4="0.0.0.0/0")]
    found = violations(evaluate(resources))
    assert set(found) == {"no-open-ingress", "redis-ports-from-declared-sources"}
    (open_msg,) = found["no-open-ingress"]
    assert "ingress rule open" in open_msg and "0.0.0.0/0" in open_msg and "frontEndCidrs" in open_msg
    (src_msg,) = found["redis-ports-from-declared-sources"]
    assert "not a declared front-end source" in src_msg and "add it to config frontEndCidrs" in src_msg


@pytest.mark.parametrize(
    "bad",
    [
        rule("ssh", fromPort=22, toPort=22, cidrIpv4="10.0.0.0/8"),
        rule("all", ipProtocol="-1", fromPort=0, toPort=0, cidrIpv4="10.0.0.0/8"),
        rule("v6", fromPort=443, toPort=443, cidrIpv6="::/0"),
        Res(rules.SECURITY_GROUP, "inline", {"ingress": [
            {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}]}),
        Res(rules.SECURITY_GROUP_RULE, "legacy", {"type": "ingress", "protocol": "tcp", "fromPort": 20, "toPort": 25,
                                                  "cidrBlocks": ["10.1.0.0/16"], "securityGroupId": "sg-1"}),
    ],
    ids=["ssh", "all-protocols", "ipv6-world", "inline-ingress", "security-group-rule"],
)
def test_open_or_ssh_ingress_is_caught_in_every_shape(programs: dict[str, Program], bad: Res) -> None:
    found = violations(evaluate(stack(programs, "dev") + [bad]))
    msgs = found["no-open-ingress"]
    assert msgs and all(bad.name in m for m in msgs)
    assert any("SSH (22)" in m or "whole internet" in m for m in msgs)


def test_egress_and_private_ingress_are_not_open_ingress() -> None:
    egress = Res(rules.SECURITY_GROUP_RULE, "out", {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0,
                                                     "cidrBlocks": ["0.0.0.0/0"]})
    assert rules.open_ingress_violations(egress.type, egress.name, egress.props) == []
    ok = rule("https", fromPort=443, toPort=443, cidrIpv4="10.0.0.0/8")
    assert rules.open_ingress_violations(ok.type, ok.name, ok.props) == []


def test_undeclared_front_end_source_is_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "prod") + [
        rule("extra-cidr", fromPort=7000, toPort=7001, cidrIpv4="10.9.0.0/16"),
        rule("extra-group", fromPort=7000, toPort=7000, referencedSecurityGroupId="sg-0123456789abcdef0"),
    ]
    msgs = only(evaluate(resources), "redis-ports-from-declared-sources")
    assert len(msgs) == 2
    assert any("10.9.0.0/16" in m and "frontEndCidrs" in m for m in msgs)
    assert any("sg-0123456789abcdef0" in m and "frontEndSecurityGroupIds" in m for m in msgs)


def test_declared_front_end_group_is_accepted(programs: dict[str, Program]) -> None:
    set_stack_config("prod", {"outsystems-redis:frontEndSecurityGroupIds": ["sg-0123456789abcdef0"]})
    resources = from_program(programs["prod"]) + [
        rule("declared-group", fromPort=7000, toPort=7001, referencedSecurityGroupId="sg-0123456789abcdef0"),
    ]
    assert violations(evaluate(resources)) == {}


def test_cluster_bus_from_front_ends_is_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "prod") + [rule("bus-open", fromPort=17000, toPort=17001, cidrIpv4="172.31.0.0/20")]
    (msg,) = only(evaluate(resources), "redis-ports-from-declared-sources")
    assert "cluster bus (17000/17001)" in msg and "Redis security group itself" in msg


def test_dev_without_declared_front_ends_accepts_private_ranges_only(programs: dict[str, Program]) -> None:
    # dev declares no front-ends: the program opens the VPC's CIDR, which the policy cannot see.
    resources = stack(programs, "dev") + [rule("public-range", fromPort=6379, toPort=6379, cidrIpv4="8.8.8.0/24")]
    (msg,) = only(evaluate(resources), "redis-ports-from-declared-sources")
    assert "8.8.8.0/24" in msg


def test_preview_unknown_group_ids_resolve_through_dependencies() -> None:
    """During a first preview the group's id is unknown; the URN it comes from proves the self reference."""
    set_stack_config("prod")
    sg = Res(rules.SECURITY_GROUP, "redis", {"description": "x"})
    bus = rule("bus", fromPort=17000, toPort=17001, securityGroupId=UNKNOWN_STRING_VALUE,
               referencedSecurityGroupId=UNKNOWN_STRING_VALUE)
    bus.deps = {"securityGroupId": [sg.urn], "referencedSecurityGroupId": [sg.urn]}
    assert violations(evaluate([sg, bus])).get("redis-ports-from-declared-sources") is None
    stray = rule("stray", fromPort=17000, toPort=17001, securityGroupId=UNKNOWN_STRING_VALUE,
                 referencedSecurityGroupId=UNKNOWN_STRING_VALUE)
    stray.deps = {"securityGroupId": [sg.urn]}  # the source is some other, unknown group
    assert violations(evaluate([sg, stray]))["redis-ports-from-declared-sources"]


# ------------------------------------------------------------ servers


def test_t3_micro_is_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "dev")
    (server,) = instances(resources)
    # What the program would record for a t3.micro (aws.ec2.get_instance_type: 2 vCPU, 1 GiB, burstable).
    server.props["instanceType"] = "t3.micro"
    server.props["tags"].update(VCpus="2", MemoryMiB="1024")
    msgs = only(evaluate(resources), "server-meets-tier-minimums")
    assert any("burstable" in m and "set config instanceType" in m for m in msgs)
    assert any("1024 MiB" in m and "at least 4096 MiB" in m for m in msgs)


def test_prod_sized_below_production_minimums_is_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "prod")
    for s in instances(resources):
        s.props["instanceType"] = "c5.large"
        s.props["tags"].update(VCpus="2", MemoryMiB="4096")
    msgs = only(evaluate(resources), "server-meets-tier-minimums")
    assert len(msgs) == 6 and all("production minimums" in m for m in msgs)


def test_small_root_volume_and_missing_size_tags_are_caught() -> None:
    props = {"instanceType": "c5.large", "tags": {}, "rootBlockDevice": {"volumeSize": 8, "encrypted": True}}
    msgs = rules.server_minimum_violations("s", props, NON_PRODUCTION)
    assert any("VCpus tag" in m for m in msgs) and any("MemoryMiB tag" in m for m in msgs)
    assert any("8 GiB" in m and f"at least {NON_PRODUCTION.disk_gib} GiB" in m for m in msgs)
    props["rootBlockDevice"] = {}
    assert any("AMI's default size" in m for m in rules.server_minimum_violations("s", props, PRODUCTION))


def test_public_ip_is_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "prod")
    instances(resources)[0].props["associatePublicIpAddress"] = True
    (msg,) = only(evaluate(resources), "no-public-ip")
    assert "associatePublicIpAddress=True" in msg and "set it to false" in msg


def test_public_subnet_and_attached_eip_are_caught() -> None:
    assert rules.public_ip_violations(rules.SUBNET, "s", {"mapPublicIpOnLaunch": True})
    assert rules.public_ip_violations(rules.EIP, "e", {"instance": "i-1"})
    assert rules.public_ip_violations(rules.EIP, "nat", {"domain": "vpc"}) == []  # the NAT gateway's address
    assert rules.public_ip_violations(rules.INSTANCE, "i", {})  # unset means the subnet decides: not good enough


def test_imdsv1_is_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "dev")
    instances(resources)[0].props["metadataOptions"]["httpTokens"] = "optional"
    (msg,) = only(evaluate(resources), "imdsv2-required")
    assert "httpTokens='optional'" in msg and 'set it to "required"' in msg


def test_unencrypted_volumes_are_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "dev")
    instances(resources)[0].props["rootBlockDevice"]["encrypted"] = False
    resources.append(Res(rules.EBS_VOLUME, "data", {"size": 50, "availabilityZone": "eu-west-1a"}))
    msgs = only(evaluate(resources), "encrypted-volumes")
    assert len(msgs) == 2 and all("set" in m and "encrypted to true" in m for m in msgs)


# ------------------------------------------------------------ the production topology


def test_replica_less_topology_is_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "prod")
    for s in instances(resources):
        s.props["tags"]["RedisRoles"] = "master:7000"
    msgs = only(evaluate(resources), "production-topology")
    assert sum("runs no replica" in m for m in msgs) == 3
    assert any("replica on 7001 following another server's master" in m for m in msgs)


def test_replica_on_its_own_masters_server_is_caught(programs: dict[str, Program]) -> None:
    # Only from the tags the program writes (RedisServerIndex, RedisRoles): the ring follows the indexes, so a
    # production stack whose program registered a single server has that server's replica follow its own master.
    resources = stack(programs, "prod")
    for s in instances(resources):
        if s.props["tags"]["RedisServerIndex"] != "0":
            resources.remove(s)
    (alone,) = instances(resources)
    assert set(alone.props["tags"]) >= {"RedisServerIndex", "RedisRoles"}
    msgs = only(evaluate(resources), "production-topology")
    assert sum("follows the master on its own server" in m for m in msgs) == 1
    assert any("has 1 Redis server(s)" in m for m in msgs)


# Read by policy/rules.py but never written by the program (outsystems_redis/pulumi/session_store.py): a dead override
# that no resource can carry. Listed so that no other such tag slips in; its branch belongs out of rules.py.
UNWRITTEN_TAGS_READ = {"RedisReplicaFollows"}


def test_the_policies_read_only_tags_the_program_writes(programs: dict[str, Program]) -> None:
    # A policy keyed on a tag no server carries checks nothing: every Redis* tag the rules read must be written.
    read = set(re.findall(r"\"(Redis[A-Za-z]+)\"", inspect.getsource(rules)))
    written = {tag for s in instances(stack(programs, "prod")) for tag in s.props["tags"]}
    assert {"RedisServerIndex", "RedisRoles"} <= read
    assert read - written <= UNWRITTEN_TAGS_READ, f"policy rules read tags the program never writes: {read - written}"


def test_broken_ring_indexes_are_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "prod")
    # Registration order varies between runs: pick the server by its index, not its position.
    (third,) = [i for i in instances(resources) if i.props["tags"]["RedisServerIndex"] == "2"]
    third.props["tags"]["RedisServerIndex"] = "0"
    msgs = only(evaluate(resources), "production-topology")
    assert any("both have RedisServerIndex 0" in m for m in msgs)
    assert any("not 0..2" in m for m in msgs)


def test_too_few_servers_and_one_subnet_are_caught(programs: dict[str, Program]) -> None:
    resources = stack(programs, "prod")
    servers = instances(resources)
    resources.remove(servers[2])
    servers[1].deps["subnetId"] = servers[0].deps["subnetId"]
    msgs = only(evaluate(resources), "production-topology")
    assert any("has 2 Redis server(s)" in m and "set config servers to 3" in m for m in msgs)
    assert any("use 1 of the 3 configured subnets" in m for m in msgs)


def test_non_production_is_not_held_to_the_cluster_layout(programs: dict[str, Program]) -> None:
    resources = stack(programs, "dev")
    assert rules.topology_violations([], {}, ["10.0.0.0/24"], production=False) == []
    assert violations(evaluate(resources)) == {}


def test_stack_policies_fail_closed_without_config() -> None:
    import pulumi

    pulumi.runtime.set_all_config({})
    found = violations(evaluate([]))
    assert set(found) == {"redis-ports-from-declared-sources", "production-topology"}
    assert all("cannot see the stack's" in m for m in found["production-topology"])


def test_minimums_come_from_components_sizing() -> None:
    # The pack shares the numbers rather than writing them twice.
    assert rules.TIERS == {"non-production": NON_PRODUCTION, "production": PRODUCTION}
    msgs = rules.server_minimum_violations(
        "s", {"instanceType": "c5.large", "tags": {"VCpus": "2", "MemoryMiB": "4096"},
              "rootBlockDevice": {"volumeSize": 20}}, PRODUCTION)
    assert any(f"at least {PRODUCTION.vcpus} vCPU" in m for m in msgs)
