"""The whole program, per stack, under Pulumi mocks: what it asks AWS for, resource by resource."""

from __future__ import annotations

import io
import json
import shlex

import pytest
import yaml

from outsystems_redis.errors import SettingsError
from outsystems_redis.render.redis_conf import FRONT_END_RULES
from outsystems_redis.tools import check
from tests.unit.program import (
    AMI_ID,
    DEFAULT_SUBNETS,
    VPC_CIDR,
    Program,
    run_program,
    session_of,
    stack_config,
    user_data,
)

INSTANCE = "aws:ec2/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SUBNET = "aws:ec2/subnet:Subnet"
SG_ID = "sg-0feedfacecafe0001"
PROD_FRONT_ENDS = ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"]


@pytest.fixture(scope="module")
def prod() -> Program:
    return run_program("prod")


@pytest.fixture(scope="module")
def dev() -> Program:
    return run_program("dev")


def ingress(program: Program) -> list[tuple]:
    return sorted(
        (
            r.inputs["fromPort"],
            r.inputs["toPort"],
            r.inputs.get("cidrIpv4") or "",
            r.inputs.get("referencedSecurityGroupId") or "",
        )
        for r in program.of_type(INGRESS)
    )


# --- production -------------------------------------------------------------


def test_prod_asks_for_three_servers_meeting_the_production_minimums(prod: Program) -> None:
    instances = prod.of_type(INSTANCE)
    assert len(instances) == 3
    for inst in instances:
        assert inst.inputs["instanceType"] == "c5.xlarge"
        assert inst.inputs["tags"]["VCpus"] == "4" and int(inst.inputs["tags"]["MemoryMiB"]) >= 8192
        assert inst.inputs["ami"] == AMI_ID


def test_prod_servers_are_private_hardened_and_protected(prod: Program) -> None:
    for inst in prod.of_type(INSTANCE):
        i = inst.inputs
        assert i["associatePublicIpAddress"] is False
        assert i["metadataOptions"]["httpTokens"] == "required"
        assert i["metadataOptions"]["httpPutResponseHopLimit"] == 1
        root = i["rootBlockDevice"]
        assert root["encrypted"] is True and root["volumeType"] == "gp3" and root["volumeSize"] >= 10
        assert "keyName" not in i  # no SSH key: operators use SSM Session Manager
        assert i["disableApiTermination"] is True
        # In state before any replacement: pulumi-aws ignores force_destroy set in the deleting operation.
        assert i["forceDestroy"] is True
        assert inst.protect is True
        assert set(inst.ignore_changes) == {"ami", "userData", "userDataBase64", "instanceType"}
        assert inst.delete_before_replace is True  # the static IP must be free for the replacement
        assert i.get("userDataReplaceOnChange") is False


def test_prod_spreads_servers_one_per_zone_with_static_ips(prod: Program) -> None:
    subnets = {r.inputs["cidrBlock"]: r.inputs for r in prod.of_type(SUBNET)}
    assert set(subnets) == {"172.31.129.0/24", "172.31.130.0/24", "172.31.131.0/24"}
    assert {s["availabilityZone"] for s in subnets.values()} == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets.values())
    ips = sorted(r.inputs["privateIp"] for r in prod.of_type(INSTANCE))
    assert ips == ["172.31.129.10", "172.31.130.10", "172.31.131.10"]
    assert prod.exports["serverPrivateIps"] == ips


def test_prod_ingress_is_front_ends_on_redis_ports_and_bus_between_servers_only(prod: Program) -> None:
    expected = [(7000, 7001, cidr, "") for cidr in PROD_FRONT_ENDS]
    expected += [(7000, 7001, "", SG_ID), (17000, 17001, "", SG_ID)]
    assert ingress(prod) == sorted(expected)
    for rule in prod.of_type(INGRESS):
        assert rule.inputs["ipProtocol"] == "tcp"
        assert rule.inputs["securityGroupId"] == SG_ID


def test_no_stack_opens_anything_to_the_world_or_port_22(prod: Program, dev: Program) -> None:
    for program in (prod, dev):
        for rule in program.of_type(INGRESS):
            assert rule.inputs.get("cidrIpv4") != "0.0.0.0/0" and "cidrIpv6" not in rule.inputs
            assert not rule.inputs["fromPort"] <= 22 <= rule.inputs["toPort"]
        for sg in program.of_type("aws:ec2/securityGroup:SecurityGroup"):
            assert not sg.inputs.get("ingress")  # rules are separate resources, asserted above


def test_egress_is_narrow(prod: Program) -> None:
    world = sorted((r.inputs["fromPort"], r.inputs["toPort"]) for r in prod.of_type(EGRESS) if r.inputs.get("cidrIpv4"))
    assert world == [(80, 80), (443, 443)]  # apt mirrors and HTTPS (SSM, Parameter Store)
    peers = sorted(
        (r.inputs["fromPort"], r.inputs["toPort"])
        for r in prod.of_type(EGRESS)
        if r.inputs.get("referencedSecurityGroupId")
    )
    assert peers == [(7000, 7001), (17000, 17001)]


def test_private_route_table_goes_out_through_nat_only(prod: Program) -> None:
    (table,) = prod.of_type("aws:ec2/routeTable:RouteTable")
    (route,) = table.inputs["routes"]
    assert route["cidrBlock"] == "0.0.0.0/0" and route["natGatewayId"] == "outsystems-redis-network-nat-id"
    assert "gatewayId" not in route  # never an internet gateway
    assert len(prod.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")) == 3
    (nat,) = prod.of_type("aws:ec2/natGateway:NatGateway")
    assert nat.inputs["subnetId"] == "subnet-0aaaaaaaaaaaaaaa1"  # the VPC's first default (public) subnet


def test_a_named_nat_gateway_is_used_and_none_created() -> None:
    program = run_program("prod", {"outsystems-redis:natGatewayId": "nat-0123456789abcdef0"})
    assert not program.of_type("aws:ec2/natGateway:NatGateway") and not program.of_type("aws:ec2/eip:Eip")
    (table,) = program.of_type("aws:ec2/routeTable:RouteTable")
    assert table.inputs["routes"][0]["natGatewayId"] == "nat-0123456789abcdef0"


def test_prod_exports_the_hsconf_connection_string_as_a_secret(prod: Program) -> None:
    conn = prod.exports["connectionString"]
    hosts, password = conn.rsplit(",password=", 1)
    assert hosts == "172.31.129.10:7000,172.31.130.10:7000,172.31.131.10:7000"
    assert len(password) >= 32 and password.isalnum()
    assert f'<ConnectionString encrypted="false">{conn}</ConnectionString>' in prod.exports["hsconfSnippet"]
    assert prod.exports["hsconfSnippet"].startswith('<InMemorySessionConfiguration ProviderKey="Redis">')
    assert {"connectionString", "hsconfSnippet"} <= prod.secret_exports
    assert prod.exports["securityGroupId"] == SG_ID and len(prod.exports["subnetIds"]) == 3


def test_generated_password_is_long_connection_string_safe_and_only_in_secrets(prod: Program) -> None:
    (generator,) = [r for r in prod.of_type("random:index/randomPassword:RandomPassword")
                    if not r.name.endswith(("tools-signing-seed", "ops-password"))]
    assert generator.inputs["length"] >= 32 and generator.inputs["special"] is False
    password = prod.exports["connectionString"].rsplit("=", 1)[1]
    (param,) = [p for p in prod.of_type("aws:ssm/parameter:Parameter") if p.name == "outsystems-redis-password"]
    assert param.inputs["type"] == "SecureString" and "value" in param.secret_inputs
    assert param.inputs["name"] == "/outsystems-redis/prod/redis-password"
    for r in prod.resources:
        for key, value in r.inputs.items():
            if password in json.dumps(value, default=str):
                assert key in r.secret_inputs, f"{r.name}.{key} carries the password in plain text"


def test_configured_password_is_used_and_kept_secret() -> None:
    secret = "S3ssion-Store_Password-2026"
    program = run_program(
        "dev", {"outsystems-redis:redisPassword": secret}, secret_keys=("outsystems-redis:redisPassword",)
    )
    # Only the tools' signing seed (outsystems_redis/signing.py) and Redis 5.0's operations secret are generated,
    # not a password.
    assert sorted(r.name for r in program.of_type("random:index/randomPassword:RandomPassword")) == \
        ["outsystems-redis-ops-password", "outsystems-redis-tools-signing-seed"]
    assert program.exports["connectionString"] == f"172.31.128.10:6379,password={secret}"
    for r in program.resources:
        for key, value in r.inputs.items():
            if secret in json.dumps(value, default=str):
                assert key in r.secret_inputs, f"{r.name}.{key} carries the password in plain text"


def test_servers_read_only_their_own_password_parameter(prod: Program) -> None:
    (policy,) = prod.of_type("aws:iam/rolePolicy:RolePolicy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    reads = [s for s in statements if any(a.startswith("ssm:GetParameter") for a in _actions(s))]
    assert reads == [
        {
            "Sid": "ReadOwnSecrets",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": [
                "arn:aws:ssm:eu-west-1:111122223333:parameter/outsystems-redis/prod/redis-password",
                # Not a secret, but the servers' own: the backup bucket's generated name.
                "arn:aws:ssm:eu-west-1:111122223333:parameter/outsystems-redis/prod/backup-bucket",
                # Redis 5.0's: the names of the administrative commands on the servers.
                "arn:aws:ssm:eu-west-1:111122223333:parameter/outsystems-redis/prod/ops-password",
            ],
        }
    ]
    assert not prod.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")  # no broad managed policies
    for inst in prod.of_type(INSTANCE):
        assert inst.inputs["iamInstanceProfile"] == "outsystems-redis-server-profile-name"


def test_the_operations_secret_is_generated_secret_and_on_both_lines(prod: Program) -> None:
    """The servers' scripts know CONFIG and SLOWLOG (and ACL on 7.0) by names made from it
    (redis_conf.secret_named_commands): a SecureString of its own, generated, letters and digits (a command
    name), never in plain text, which each server's redis-auth reads and renames those commands with."""
    (generator,) = [r for r in prod.of_type("random:index/randomPassword:RandomPassword")
                    if r.name.endswith("ops-password")]
    assert generator.inputs["length"] >= 32 and generator.inputs["special"] is False
    (param,) = [p for p in prod.of_type("aws:ssm/parameter:Parameter") if p.name == "outsystems-redis-ops-password"]
    assert param.inputs["name"] == "/outsystems-redis/prod/ops-password"
    assert param.inputs["type"] == "SecureString" and "value" in param.secret_inputs
    (inst,) = [i for i in prod.of_type(INSTANCE) if i.name.endswith("server-1-instance")]
    assert param.urn in inst.dependencies  # redis-auth reads it at the first boot
    on_7_0 = run_program("prod", {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0"})
    (param,) = [p for p in on_7_0.of_type("aws:ssm/parameter:Parameter") if p.name.endswith("ops-password")]
    assert "Redis 7.0's administrative commands" in param.inputs["description"]
    for inst in on_7_0.of_type(INSTANCE):
        assert param.urn in inst.dependencies
        (auth_env,) = [f["content"] for f in yaml.safe_load(user_data(inst.inputs))["write_files"]
                       if f["path"] == "/etc/redis/auth.env"]
        assert {'OPS_PARAMETER="/outsystems-redis/prod/ops-password"', 'RENAMED_COMMANDS="CONFIG SLOWLOG ACL"',
                f'FRONT_END_RULES="{FRONT_END_RULES}"'} <= set(auth_env.splitlines()), auth_env
    # 5.0 has no users: its redis-auth gets no rules for the front-ends' user (it would refuse a `user` line).
    for inst in prod.of_type(INSTANCE):
        (auth_env,) = [f["content"] for f in yaml.safe_load(user_data(inst.inputs))["write_files"]
                       if f["path"] == "/etc/redis/auth.env"]
        assert "FRONT_END_RULES" not in auth_env, auth_env
    # Every server takes the stack's bucket by name (the mocks name a bucket `<resource name>-a1b2c3d`), not from
    # its parameter; test_backup holds that no file of the user data names the parameter.
    (bucket,) = [b for b in prod.of_type("aws:s3/bucket:Bucket") if b.name.endswith("-backups")]
    for inst in prod.of_type(INSTANCE):
        (auth_env,) = [f["content"] for f in yaml.safe_load(user_data(inst.inputs))["write_files"]
                       if f["path"] == "/etc/redis/auth.env"]
        assert f'BUCKET="{bucket.name}-a1b2c3d"' in auth_env.splitlines() and "BUCKET_PARAMETER" not in auth_env


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def first_boot_needs(program: Program) -> dict[str, set[str]]:
    """What an instance's first boot needs to exist already, by kind: URNs of the program's resources."""
    urns = lambda token: {r.urn for r in program.of_type(token)}  # noqa: E731
    return {
        "secrets": urns("aws:ssm/parameter:Parameter"),
        "role": urns("aws:iam/rolePolicy:RolePolicy") | urns("aws:iam/instanceProfile:InstanceProfile"),
        "routes": urns("aws:ec2/routeTable:RouteTable") | urns("aws:ec2/routeTableAssociation:RouteTableAssociation")
        | urns("aws:ec2/natGateway:NatGateway"),
        "rules": urns(EGRESS) | {r.urn for r in program.of_type(INGRESS)
                                 if r.inputs.get("referencedSecurityGroupId") == SG_ID},
        # Where the first minute's metrics, logs and snapshots go, with the bucket's rules in force.
        "observability": urns("aws:cloudwatch/logGroup:LogGroup") | {r.urn for r in program.resources
                                                                      if r.type.startswith("aws:s3/")},
    }


@pytest.mark.parametrize("overrides", [{}, {"outsystems-redis:natGatewayId": "nat-0123456789abcdef0"},
                                       {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0",
                                        "outsystems-redis:tls": True}],
                         ids=["created-nat", "given-nat", "tls"])
def test_no_server_is_created_before_its_way_out_and_its_secrets_exist(overrides: dict) -> None:
    """cloud-init's apt step runs once: the instance must wait for everything they need."""
    program = run_program("prod", overrides)
    needs = first_boot_needs(program)
    # Each kind is really there: a route table, one association per subnet, the NAT unless given,
    # egress 80/443 and to the peers (client ports, bus), the same from the peers, the role's policy
    # and profile, the secrets.
    assert len(needs["routes"]) == 1 + 3 + (0 if overrides.get("outsystems-redis:natGatewayId") else 1)
    assert len(needs["rules"]) == 4 + 2 and len(needs["role"]) == 2
    # The password and the operations secret (with TLS, on 7.0, the TLS material too), and the backup
    # bucket's name.
    assert len(needs["secrets"]) == 1 + 1 + (2 * 3 + 1 if overrides.get("outsystems-redis:tls") else 0) + 1
    # The log group, the bucket and its encryption, versioning, public access block, ownership,
    # lifecycle and policy, and the six programs the servers fetch from it (metrics/logs, backup, password
    # sync, redis-auth's two, the cluster join) with their two signatures each.
    assert len(needs["observability"]) == 1 + 7 + 6 * 3
    for inst in program.of_type(INSTANCE):
        for kind, urns in needs.items():
            missing = urns - set(inst.dependencies)
            assert not missing, f"{inst.name} may boot before {kind}: {sorted(missing)}"


def test_dev_server_waits_for_its_way_out_too(dev: Program) -> None:
    (inst,) = dev.of_type(INSTANCE)
    for kind, urns in first_boot_needs(dev).items():
        assert urns and urns <= set(inst.dependencies), kind


def test_post_deploy_health_check_wiring(prod: Program) -> None:
    # By default it reads the servers' own verdicts from CloudWatch: no route to the servers, no secret.
    (check,) = prod.of_type("command:local:Command")
    args = shlex.split(check.inputs["create"])
    assert args[:4] == [".venv/bin/python", "-m", "outsystems_redis.tools.health", "--through-cloudwatch"]
    assert args[args.index("--stack") + 1] == "prod" and args[args.index("--region") + 1] == "eu-west-1"
    assert args[args.index("--account") + 1] == "111122223333"  # the provider's, which the shell's must match
    # The names the servers publish under (their Server dimension is their Name tag), in server order, each
    # with its session (the role's unique id and its instance's id), which names its own namespace.
    names = [r.inputs["tags"]["Name"] for r in sorted(prod.of_type(INSTANCE), key=lambda r: r.name)]
    assert args[args.index("--servers") + 1].split(",") == [f"{n}={session_of(n)}" for n in names]
    assert len(names) == 3
    assert "--cluster" in args and args[args.index("--wait") + 1] == "900"
    assert "--nodes" not in args and "--password" not in check.inputs["create"]
    assert not check.inputs.get("environment")  # nothing secret: the deploying shell's AWS credentials
    assert check.inputs["triggers"] == [f"outsystems-redis-server-{i}-instance-id" for i in (1, 2, 3)]
    instance_urns = {r.urn for r in prod.of_type(INSTANCE)}
    assert instance_urns <= set(check.dependencies)


def test_health_check_can_be_turned_off_and_its_deadline_set() -> None:
    off = run_program("dev", {"outsystems-redis:healthCheck": False})
    assert not off.of_type("command:local:Command") and "healthReport" not in off.exports
    slow = run_program("dev", {"outsystems-redis:healthCheckTimeout": 1800})
    (check,) = slow.of_type("command:local:Command")
    assert "--wait 1800" in check.inputs["create"] and "--cluster" not in check.inputs["create"]


GET_PARAMETER = "aws:ssm/getParameter:getParameter"


def test_ami_is_canonicals_current_focal_from_its_public_parameter_and_not_looked_up_when_pinned(
    prod: Program,
) -> None:
    # Canonical's parameter resolves to an id, which keeps working once older focal
    # images are deprecated (get_ami without include_deprecated would not see them).
    (call,) = [args for token, args in prod.calls if token == GET_PARAMETER]
    assert call["name"] == "/aws/service/canonical/ubuntu/server/20.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
    assert not [t for t, _ in prod.calls if t == "aws:ec2/getAmi:getAmi"]
    pinned = run_program("prod", {"outsystems-redis:amiId": "ami-0fedcba9876543210"})
    assert not [t for t, _ in pinned.calls if t == GET_PARAMETER]
    assert {r.inputs["ami"] for r in pinned.of_type(INSTANCE)} == {"ami-0fedcba9876543210"}


def test_zones_are_the_regions_own_never_an_opted_in_local_zone(prod: Program) -> None:
    (call,) = [args for token, args in prod.calls if token == "aws:index/getAvailabilityZones:getAvailabilityZones"]
    assert call["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    zones = sorted(r.inputs["availabilityZone"] for r in prod.of_type(SUBNET))
    assert zones == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def test_prod_in_a_single_zone_is_allowed_by_config() -> None:
    program = run_program("prod", {"outsystems-redis:subnetCidrs": ["172.31.140.0/24"]})
    assert len(program.of_type(SUBNET)) == 1
    assert sorted(r.inputs["privateIp"] for r in program.of_type(INSTANCE)) == [
        "172.31.140.10",
        "172.31.140.11",
        "172.31.140.12",
    ]


def test_prod_can_name_front_end_security_groups() -> None:
    program = run_program(
        "prod",
        {"outsystems-redis:frontEndCidrs": None, "outsystems-redis:frontEndSecurityGroupIds": ["sg-0123456789abcdef0"]},
    )
    assert ingress(program) == sorted(
        [(7000, 7001, "", SG_ID), (7000, 7001, "", "sg-0123456789abcdef0"), (17000, 17001, "", SG_ID)]
    )


# --- non-production ---------------------------------------------------------


def test_dev_asks_for_one_server_with_its_redis_port_open_to_the_vpc_only(dev: Program) -> None:
    (inst,) = dev.of_type(INSTANCE)
    assert inst.inputs["instanceType"] == "c5.large"
    assert inst.inputs["tags"]["VCpus"] == "2" and int(inst.inputs["tags"]["MemoryMiB"]) >= 4096
    assert inst.inputs["associatePublicIpAddress"] is False
    assert inst.inputs["metadataOptions"]["httpTokens"] == "required"
    assert inst.inputs["rootBlockDevice"]["encrypted"] is True
    assert inst.protect is False and inst.inputs["disableApiTermination"] is False
    assert ingress(dev) == [(6379, 6379, "", SG_ID), (6379, 6379, VPC_CIDR, "")]
    assert dev.exports["connectionString"].startswith("172.31.128.10:6379,password=")


def test_dev_front_ends_can_be_listed(dev: Program) -> None:
    program = run_program("dev", {"outsystems-redis:frontEndCidrs": ["10.20.0.0/16", "10.30.0.0/16"]})
    assert ingress(program) == [
        (6379, 6379, "", SG_ID),
        (6379, 6379, "10.20.0.0/16", ""),
        (6379, 6379, "10.30.0.0/16", ""),
    ]


# --- bad input: a clear error naming the key, and no resource registered ------

BAD_INPUTS = [
    ("dev", {"outsystems-redis:servers": 2}, "servers", "got 2"),
    ("dev", {"outsystems-redis:servers": 0}, "servers", "got 0"),
    ("dev", {"outsystems-redis:servers": -3}, "servers", "got -3"),
    ("dev", {"outsystems-redis:servers": "three"}, "servers", "'three'"),
    ("dev", {"outsystems-redis:instanceType": "t3.micro"}, "instanceType", "1 GiB of memory"),
    ("prod", {"outsystems-redis:instanceType": "c5.large"}, "instanceType", "2 vCPU (needs at least 3)"),
    ("prod", {"outsystems-redis:instanceType": "t3.xlarge"}, "instanceType", "sustained clock of 2.5 GHz"),
    ("prod", {"outsystems-redis:instanceType": "c6g.xlarge"}, "instanceType", "x86_64"),
    ("dev", {"outsystems-redis:subnetCidrs": ["10.9.0.0/24"]}, "subnetCidrs", "inside the VPC"),
    ("dev", {"outsystems-redis:subnetCidrs": ["172.31.8.0/24"]}, "subnetCidrs",
     "172.31.0.0/20 is already subnet subnet-0aaaaaaaaaaaaaaa1"),
    ("prod", {"outsystems-redis:instanceType": "c5n.xlarge"}, "instanceType", "not offered in eu-west-1c"),
    ("prod", {"outsystems-redis:instanceType": "c5n.xlarge",
              "outsystems-redis:availabilityZones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]},
     "availabilityZones", "zones that offer c5n.xlarge (not eu-west-1c)"),
    (
        "prod",
        {"outsystems-redis:subnetCidrs": ["172.31.129.0/24", "172.31.129.128/25"]},
        "subnetCidrs",
        "non-overlapping",
    ),
    ("prod", {"outsystems-redis:frontEndCidrs": ["0.0.0.0/0"]}, "frontEndCidrs", "private ranges only"),
    ("prod", {"outsystems-redis:frontEndCidrs": ["8.8.8.0/24"]}, "frontEndCidrs", "private ranges only"),
    ("prod", {"outsystems-redis:frontEndCidrs": None}, "frontEndCidrs", "must list its front-ends"),
    ("prod", {"outsystems-redis:frontEndCidrs": [f"10.1.{i}.0/24" for i in range(59)]}, "frontEndCidrs",
     "at most 58 front-end CIDR blocks and security groups together"),
    ("dev", {"outsystems-redis:redisPassword": "short-password"}, "redisPassword", "at least 16"),
    ("dev", {"outsystems-redis:redisPassword": "A" * 513}, "redisPassword", "at most 512"),
    ("dev", {"outsystems-redis:redisPassword": "long-enough,but-comma"}, "redisPassword", "','"),
    ("dev", {"outsystems-redis:redisPassword": "long-enough=but-equals"}, "redisPassword", "'='"),
    ("dev", {"outsystems-redis:redisPassword": "long enough but spaces"}, "redisPassword", "' '"),
    (
        "dev",
        {"outsystems-redis:instancetype": "c5.large"},
        "outsystems-redis:instancetype",
        "did you mean 'outsystems-redis:instanceType'",
    ),
    ("dev", {"outsystems-redis:rootVolumeGiB": 8}, "rootVolumeGiB", "at least 10 GiB"),
    ("dev", {"outsystems-redis:platform": "ubuntu-18.04"}, "platform", "ubuntu-20.04-redis-5.0"),
    # A YAML list where one value belongs: Pulumi hands it over as its JSON text, which AWS would refuse halfway.
    ("dev", {"outsystems-redis:alarmEmail": ["ops@example.com"]}, "alarmEmail", "one value, not a YAML list"),
    ("dev", {"outsystems-redis:instanceType": ["c5.large"]}, "instanceType", "one value, not a YAML list"),
    ("dev", {"outsystems-redis:instanceType": "c5.xlarg"}, "instanceType", "an EC2 instance type that this region"),
]


@pytest.mark.parametrize(
    ("stack", "overrides", "key", "detail"), BAD_INPUTS, ids=[f"{k}-{d}" for _, _, k, d in BAD_INPUTS]
)
def test_bad_input_names_the_key_and_registers_nothing(stack: str, overrides: dict, key: str, detail: str,
                                                       tmp_path) -> None:
    recorded: list = []
    with pytest.raises(SettingsError) as err:
        run_program(stack, overrides, secret_keys=("outsystems-redis:redisPassword",), into=recorded)
    assert err.value.key == key
    assert f"config key '{key}'" in str(err.value) and detail in str(err.value)
    assert recorded == [], "a resource was registered before the error"
    if "redisPassword" in overrides or "outsystems-redis:redisPassword" in overrides:
        assert overrides["outsystems-redis:redisPassword"] not in str(err.value)  # never echo a secret
    # The config check, on the same stack file, refuses it with the program's own line, or (when only AWS's
    # answers can tell) names the key among the checks left for `pulumi up`.
    config = {k: v for k, v in {**stack_config(stack), **overrides}.items() if v is not None}
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    out, err_out = io.StringIO(), io.StringIO()
    code = check.run(stack, path, out, err_out)
    if code == 2:
        assert err_out.getvalue() == f"{path.name}: {err.value}\n"
    else:
        assert code == 0, err_out.getvalue()
        left = out.getvalue().split("Left for `pulumi up`, which asks AWS:\n")[1]
        assert any(line.startswith(f"  - {key} ") for line in left.splitlines()), out.getvalue()


def test_replace_servers_takes_the_current_image_and_user_data_for_that_server_only() -> None:
    program = run_program("prod", {"outsystems-redis:protect": False, "outsystems-redis:replaceServers": [2]})
    by_name = {r.name: r for r in program.of_type(INSTANCE)}
    rebuilt = by_name["outsystems-redis-server-2-instance"]
    assert rebuilt.ignore_changes == () and rebuilt.inputs["userDataReplaceOnChange"] is True
    for name in ("outsystems-redis-server-1-instance", "outsystems-redis-server-3-instance"):
        assert set(by_name[name].ignore_changes) == {"ami", "userData", "userDataBase64", "instanceType"}
        assert by_name[name].inputs["userDataReplaceOnChange"] is False


def test_replace_servers_steps_ask_aws_for_what_each_step_needs() -> None:
    """The README's steps, as pulumi-aws will act on them. Step 1 (`protect false` alone) lifts EC2's
    termination protection in place and replaces nothing: every server keeps its ignore_changes, and
    forceDestroy stays in state. Step 2 (`replaceServers`) then replaces server k, whose old instance is
    no longer termination-protected, and asks the same of the others as step 1."""
    before = run_program("prod")
    step1 = run_program("prod", {"outsystems-redis:protect": False})
    step2 = run_program("prod", {"outsystems-redis:protect": False, "outsystems-redis:replaceServers": [2]})
    old = {r.name: r for r in before.of_type(INSTANCE)}
    for r in step1.of_type(INSTANCE):
        assert r.inputs["disableApiTermination"] is False and r.protect is False and r.inputs["forceDestroy"] is True
        assert set(r.ignore_changes) == set(old[r.name].ignore_changes)  # nothing replaced in step 1
        changed = {k for k in r.inputs if r.inputs[k] != old[r.name].inputs.get(k)}
        assert changed == {"disableApiTermination"}, changed  # an in-place attribute change only
    after = {r.name: r for r in step2.of_type(INSTANCE)}
    for name, r in after.items():
        assert r.inputs["disableApiTermination"] is False and r.inputs["forceDestroy"] is True
        assert (r.ignore_changes == ()) == (name == "outsystems-redis-server-2-instance")


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [({"outsystems-redis:replaceServers": [2]}, "protect is true"),
     ({"outsystems-redis:protect": False, "outsystems-redis:replaceServers": [4]}, "from 1 to 3")],
)
def test_replace_servers_is_refused_while_protected_or_out_of_range(overrides: dict, detail: str) -> None:
    with pytest.raises(SettingsError) as err:
        run_program("prod", overrides)
    assert err.value.key == "replaceServers" and detail in str(err.value)


def test_a_misspelled_secret_key_never_echoes_its_value() -> None:
    secret = "SuperSecretPassw0rd1234"
    with pytest.raises(SettingsError) as err:
        run_program("dev", {"outsystems-redis:redisPasword": secret}, secret_keys=("outsystems-redis:redisPasword",))
    assert err.value.key == "outsystems-redis:redisPasword" and "did you mean 'outsystems-redis:redisPassword'" in str(
        err.value
    )
    assert secret not in str(err.value)


def test_front_end_default_must_itself_be_private() -> None:
    # A VPC whose CIDR is a public range cannot be the default front-end source.
    from outsystems_redis.settings import check_front_end_cidr

    with pytest.raises(SettingsError, match="frontEndCidrs"):
        check_front_end_cidr("52.0.0.0/16")


# --- growing the cluster ------------------------------------------------------


@pytest.mark.parametrize("servers", [4, 6])
def test_raising_the_server_count_only_adds_servers(prod: Program, servers: int) -> None:
    grown = run_program("prod", {"outsystems-redis:servers": servers})
    before = {r.name: r for r in prod.of_type(INSTANCE)}
    after = {r.name: r for r in grown.of_type(INSTANCE)}
    assert set(before) < set(after) and len(after) == servers
    for name, old in before.items():
        # Byte-identical inputs: no replacement, no reboot, same IP and user-data.
        assert after[name].inputs == old.inputs, f"{name} would change"
    new_ips = [after[n].inputs["privateIp"] for n in sorted(set(after) - set(before))]
    assert len(set(new_ips)) == servers - 3
    assert all(r.protect for r in after.values())  # a later decrease cannot delete a server
    # Nothing else is replaced either: the network keeps its inputs.
    for token in (SUBNET, INGRESS, "aws:ec2/routeTable:RouteTable", "aws:ssm/parameter:Parameter"):
        assert sorted(map(repr, (r.inputs for r in grown.of_type(token)))) == sorted(
            map(repr, (r.inputs for r in prod.of_type(token)))
        )
    assert grown.exports["connectionString"].count(":7000") == servers


def test_growing_again_leaves_the_servers_added_before_alone() -> None:
    four = {r.name: r.inputs for r in run_program("prod", {"outsystems-redis:servers": 4}).of_type(INSTANCE)}
    six = {r.name: r.inputs for r in run_program("prod", {"outsystems-redis:servers": 6}).of_type(INSTANCE)}
    assert all(six[name] == inputs for name, inputs in four.items())
    # Servers past the first three join a running cluster; only server 1 forms one.
    texts = {name: user_data(inputs) for name, inputs in six.items()}
    assert "redis-cluster-bootstrap" in texts["outsystems-redis-server-1-instance"]
    for i in (4, 5, 6):
        assert "redis-cluster-join" in texts[f"outsystems-redis-server-{i}-instance"]
        assert "redis-cluster-bootstrap.service" not in texts[f"outsystems-redis-server-{i}-instance"]


# --- platforms and TLS ----------------------------------------------------------

CURRENT = {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0"}


def test_current_platform_selects_noble_and_redis_7(prod: Program) -> None:
    program = run_program("prod", {**CURRENT, "outsystems-redis:healthCheckVia": "direct"})
    (call,) = [args for token, args in program.calls if token == GET_PARAMETER]
    assert call["name"] == "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    assert {r.inputs["ami"] for r in program.of_type(INSTANCE)} == {"ami-0a24b24c24d24e24f"}
    assert ingress(program) == ingress(prod)  # one code path: the same security group rules
    # The direct post-deploy check: every process, from inside the VPC, with the password as a secret.
    (check,) = program.of_type("command:local:Command")
    args = shlex.split(check.inputs["create"])
    assert args[:3] == [".venv/bin/python", "-m", "outsystems_redis.tools.health"]
    nodes = args[args.index("--nodes") + 1].split(",")
    ips = ["172.31.129.10", "172.31.130.10", "172.31.131.10"]
    assert sorted(nodes) == sorted(f"{ip}:{port}" for ip in ips for port in (7000, 7001))
    assert "--cluster" in args and args[args.index("--wait") + 1] == "900"
    assert args[args.index("--expect-version") + 1] == "7.0"
    assert "--password" not in check.inputs["create"] and "--through-cloudwatch" not in args
    assert "environment" in check.secret_inputs and set(check.inputs["environment"]) == {"REDIS_PASSWORD"}
    assert "--cacert" not in check.inputs["create"]


def test_tls_adds_a_private_ca_and_per_server_certificates_through_parameter_store(prod: Program) -> None:
    program = run_program("prod", {**CURRENT, "outsystems-redis:tls": True,
                                   "outsystems-redis:healthCheckVia": "direct"})
    (ca,) = program.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert ca.inputs["isCaCertificate"] is True
    requests = program.of_type("tls:index/certRequest:CertRequest")
    assert sorted(r.inputs["ipAddresses"][0] for r in requests) == ["172.31.129.10", "172.31.130.10", "172.31.131.10"]
    assert len(program.of_type("tls:index/locallySignedCert:LocallySignedCert")) == 3
    params = {r.inputs["name"]: r for r in program.of_type("aws:ssm/parameter:Parameter")}
    keys = [n for n in params if n.endswith(".key")]
    assert sorted(keys) == [f"/outsystems-redis/prod/tls/server-{i}.key" for i in (1, 2, 3)]
    for name in keys:
        assert params[name].inputs["type"] == "SecureString" and "value" in params[name].secret_inputs
    assert params["/outsystems-redis/prod/tls/ca.crt"].inputs["type"] == "String"
    # The servers may read exactly these parameters and the password, nothing else: the TLS folder of this stack
    # (every TLS parameter is in it), the password and the bucket's name.
    (policy,) = program.of_type("aws:iam/rolePolicy:RolePolicy")
    (read,) = [s for s in json.loads(policy.inputs["policy"])["Statement"] if s["Sid"] == "ReadOwnSecrets"]
    arn = "arn:aws:ssm:eu-west-1:111122223333:parameter"
    assert sorted(read["Resource"]) == sorted([f"{arn}/outsystems-redis/prod/tls/*", *(
        f"{arn}{n}" for n in params if "/tls/" not in n)])
    assert all(n.startswith("/outsystems-redis/prod/tls/") for n in params if "/tls/" in n)
    assert len(params) == 3 + 1 + 2 * 3  # password, ops secret, bucket name; the CA; each server's certificate and key
    assert program.exports["connectionString"].endswith(",ssl=true")
    (check,) = program.of_type("command:local:Command")
    assert "--cacert-env REDIS_CA_CERT" in check.inputs["create"]
    assert check.inputs["environment"]["REDIS_CA_CERT"].startswith("-----BEGIN CERTIFICATE-----")
    assert program.exports["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "caCertificate" not in program.secret_exports  # front-ends must be able to trust it
    assert ingress(program) == ingress(prod)  # the same ports carry TLS: nothing new is opened


def test_without_tls_there_is_no_certificate(prod: Program) -> None:
    assert not [r for r in prod.resources if r.type.startswith("tls:")]
    assert "caCertificate" not in prod.exports and "ssl=true" not in prod.exports["connectionString"]


def test_tls_on_the_redis_5_platform_is_refused() -> None:
    with pytest.raises(SettingsError) as err:
        run_program("prod", {"outsystems-redis:tls": True})
    assert err.value.key == "tls" and "ubuntu-24.04-redis-7.0" in str(err.value)


def test_prod_user_data_installs_tunes_and_forms_the_cluster_once_without_the_password(prod: Program) -> None:
    password = prod.exports["connectionString"].rsplit("password=", 1)[1]
    bootstraps = 0
    for inst in prod.of_type(INSTANCE):
        text = user_data(inst.inputs)
        doc = yaml.safe_load(text)
        assert text.startswith("#cloud-config")
        assert ["redis-server", "5:5.0.7*"] in doc["packages"] and ["redis-tools", "5:5.0.7*"] in doc["packages"]
        assert "vm.overcommit_memory = 1" in text and "net.core.somaxconn = 65535" in text
        assert "transparent_hugepage/enabled - - - - never" in text
        confs = sorted(f["path"] for f in doc["write_files"] if f["path"].startswith("/etc/redis/redis-"))
        assert confs == ["/etc/redis/redis-7000.conf", "/etc/redis/redis-7001.conf"]
        assert f"bind {inst.inputs['privateIp']} 127.0.0.1" in text
        assert password not in text and "/outsystems-redis/prod/redis-password" in text
        bootstraps += "redis-cluster-bootstrap.service" in text
    assert bootstraps == 1


def test_dev_user_data_runs_one_standalone_redis(dev: Program) -> None:
    (inst,) = dev.of_type(INSTANCE)
    text = user_data(inst.inputs)
    assert "/etc/redis/redis-6379.conf" in text and "cluster-enabled yes" not in text
    assert "redis-cluster-bootstrap" not in text and "redis-cluster-join" not in text


@pytest.mark.parametrize("stack,extra", [("dev", {}), ("prod", {}),
                                         ("prod", {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0",
                                                   "outsystems-redis:tls": True})],
                         ids=["dev", "prod", "prod-tls"])
def test_every_export_either_lacks_the_password_or_is_a_secret(stack: str, extra: dict) -> None:
    """Not only connectionString and hsconfSnippet: any export that carries the password is a secret,
    and the ones meant to be read in plain text (IPs, ids, the CA) do not carry it at all."""
    secret = "Export-Scan_Password-2026x"
    program = run_program(stack, {"outsystems-redis:redisPassword": secret, **extra},
                          secret_keys=("outsystems-redis:redisPassword",))
    carrying = {name for name, value in program.exports.items() if secret in json.dumps(value, default=str)}
    assert carrying == {"connectionString", "hsconfSnippet"}
    assert carrying <= program.secret_exports
    # The report holds no password, but the program keeps it secret itself rather than relying on
    # pulumi-command's inference from the environment (the mock's echo could not show that).
    assert "healthReport" in program.secret_exports


def test_ec2_recovery_is_stated_and_alarmed_per_server(prod: Program) -> None:
    instances = {r.urn.rsplit("::", 1)[1]: r for r in prod.of_type(INSTANCE)}
    for inst in instances.values():
        assert inst.inputs["maintenanceOptions"] == {"autoRecovery": "default"}
    alarms = [a for a in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if a.inputs["metricName"] == "StatusCheckFailed_System"]
    assert len(alarms) == len(instances) == 3
    for alarm in alarms:
        a = alarm.inputs
        assert (a["namespace"], a["metricName"], a["statistic"]) == ("AWS/EC2", "StatusCheckFailed_System", "Maximum")
        assert a["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and a["threshold"] == 1
        assert a["period"] == 60 and a["evaluationPeriods"] == 2
        # EC2 recovers the server, and the stack's alarm topic hears of it and of its end.
        topic = "arn:aws:sns:eu-west-1:111122223333:outsystems-redis-observability-alarms-e4f5a6b"
        assert a["alarmActions"] == ["arn:aws:automate:eu-west-1:ec2:recover", topic]
        assert a["okActions"] == [topic]
        # Each alarm watches its own server's instance (the mock's id is "<name>-id").
        server = alarm.name.removesuffix("-recover")
        assert a["dimensions"] == {"InstanceId": f"{server}-instance-id"}


def test_the_hsconf_snippet_is_xml_that_gives_back_the_connection_string_exactly() -> None:
    """A password with XML's special characters: the snippet parses, and its text is the connection string."""
    import xml.etree.ElementTree as ET

    from outsystems_redis.pulumi.session_store import hsconf_snippet

    conn = "10.0.0.1:7000,password=a&b<c>d\"e'f-0123456789"
    element = ET.fromstring(hsconf_snippet(conn))
    assert element.find("ConnectionString").text == conn


def test_front_end_sources_fill_the_security_groups_inbound_quota_exactly() -> None:
    """58 front-end CIDR blocks on a cluster: 60 inbound rules, AWS's default quota; one more is refused by name
    (BAD_INPUTS). Planted (the servers' own rules counted as one): BAD_INPUTS' 59 blocks pass, 61 rules."""
    program = run_program("prod", {"outsystems-redis:frontEndCidrs": [f"10.1.{i}.0/24" for i in range(58)]})
    assert len(program.of_type(INGRESS)) == 60


@pytest.mark.parametrize(("overrides", "value", "detail"), [
    ({}, None, "this region has no default VPC"),
    ({"outsystems-redis:vpcId": "vpc-0123456789abcdef0"}, "vpc-0123456789abcdef0", "a VPC in this account and region"),
], ids=["no-default-vpc", "unknown-vpc-id"])
def test_a_missing_vpc_is_a_named_config_error_and_registers_nothing(overrides: dict, value, detail: str) -> None:
    """The provider's own "no matching EC2 VPC found" becomes an error naming vpcId (planted: no translation, the
    provider's text surfaces)."""
    recorded: list = []
    with pytest.raises(SettingsError) as err:
        run_program("dev", overrides, into=recorded, default_vpc=False)
    assert err.value.key == "vpcId" and err.value.value == value and detail in str(err.value)
    assert recorded == []


def test_an_update_finds_its_own_subnets_in_the_vpc_and_another_stacks_are_refused() -> None:
    """On a second pulumi up the VPC holds this stack's own subnets (tagged Project and Stack): they are not a
    conflict. The same blocks held by another stack are. Planted: the Stack tag not compared (another stack's
    blocks pass); no subnet compared (BAD_INPUTS' overlap passes)."""
    own = {f"subnet-0c{i}": {"cidr": f"172.31.{129 + i}.0/24", "tags": {"Project": "outsystems-redis",
                                                                      "Stack": "prod", "Name": f"s{i}"}}
           for i in range(3)}
    ipv6_only = {"subnet-0d6": {"cidr": "", "tags": {}}}  # EC2 reports no IPv4 block for it
    assert run_program("prod", subnets={**DEFAULT_SUBNETS, **own, **ipv6_only}).of_type("aws:ec2/subnet:Subnet")
    theirs = {i: {**n, "tags": {**n["tags"], "Stack": "staging"}} for i, n in own.items()}
    with pytest.raises(SettingsError) as err:
        run_program("prod", subnets={**DEFAULT_SUBNETS, **theirs})
    assert err.value.key == "subnetCidrs" and "172.31.129.0/24 is already subnet subnet-0c0 (s0)" in str(err.value)
