"""RedisSessionStore as another Pulumi program uses it: the examples/ under mocks, and its arguments.

The whole-program tests (test_program.py and the rest) cover what the store creates from stack config;
here: what changes when a program builds it directly. Errors name the argument, not the config key;
Outputs are accepted where a program would pass one; the look-ups go through the caller's provider.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from outsystems_redis.errors import SettingsError
from outsystems_redis.pulumi.session_store import ARGUMENT_OF, SessionStoreArgs, default_health_check_python
from outsystems_redis.settings import CONFIG_KEYS
from tests.unit.program import ROOT, Program, Recorded, run_code, run_program, run_store

EXAMPLES = ROOT / "examples"
INSTANCE = "aws:ec2/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
STORE = "outsystems:redis:Environment"
PASSWORD = "Sixteen-or-more-characters-42"


def run_example(name: str, stack: str, overrides: dict | None = None, secret_keys: tuple[str, ...] = ()) -> Program:
    return run_program(stack, overrides, secret_keys=secret_keys, directory=EXAMPLES / name)


def test_every_example_is_tested_here() -> None:
    tested = {"existing-vpc-nat", "tls-production", "alongside-other-resources"}
    assert {p.name for p in EXAMPLES.iterdir() if (p / "__main__.py").exists()} == tested


def test_existing_vpc_example_routes_through_the_given_nat_and_creates_none() -> None:
    program = run_example("existing-vpc-nat", "prod")
    assert not program.of_type("aws:ec2/natGateway:NatGateway") and not program.of_type("aws:ec2/eip:Eip")
    (table,) = program.of_type("aws:ec2/routeTable:RouteTable")
    assert [r["natGatewayId"] for r in table.inputs["routes"]] == ["nat-0123456789abcdef0"]
    assert len(program.of_type(INSTANCE)) == 3
    sources = {r.inputs.get("referencedSecurityGroupId") for r in program.of_type(INGRESS)}
    assert "sg-0123456789abcdef0" in sources
    assert not any(r.inputs.get("cidrIpv4") for r in program.of_type(INGRESS) if r.inputs["fromPort"] == 7000)
    (vpc_call,) = [args for token, args in program.calls if token == "aws:ec2/getVpc:getVpc"]
    assert vpc_call == {"id": "vpc-0a1b2c3d4e5f60718"}
    for instance in program.of_type(INSTANCE):
        assert instance.inputs["tags"]["CostCenter"] == "1234"
    assert set(program.exports) == {"serverInstanceIds", "connectionString", "hsconfSnippet"}
    assert program.exports["serverInstanceIds"] == [f"sessions-server-{i}-instance-id" for i in (1, 2, 3)]


def test_tls_example_is_a_7_0_cluster_with_a_certificate_per_server() -> None:
    program = run_example("tls-production", "prod")
    assert program.exports["redisVersion"] == "7.0"
    assert program.exports["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert program.exports["connectionString"].count("ssl=true") == 1
    assert len(program.of_type("tls:index/locallySignedCert:LocallySignedCert")) == 3
    (subscription,) = program.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs["endpoint"] == "ops@example.com"
    # The check runs with the interpreter running the program (it has the package), through CloudWatch.
    (check,) = program.of_type("command:local:Command")
    assert check.inputs["create"].startswith(
        f"{default_health_check_python()} -m outsystems_redis.tools.health --through-cloudwatch ")


def test_alongside_example_wires_the_programs_own_resources_in() -> None:
    key = "outsystems-platform:redisPassword"
    program = run_example("alongside-other-resources", "staging", {key: PASSWORD}, secret_keys=(key,))
    (group,) = [r for r in program.of_type("aws:ec2/securityGroup:SecurityGroup") if r.name == "outsystems-front-ends"]
    # The group the program created (an Output when the store got it) is the one front-end source.
    front_end_rules = [r for r in program.of_type(INGRESS) if "front-end" in r.name]
    assert front_end_rules and {r.inputs["referencedSecurityGroupId"] for r in front_end_rules} == {
        "outsystems-front-ends-id"
    }
    assert not any(r.inputs.get("cidrIpv4") for r in program.of_type(INGRESS))
    assert [r.inputs["description"] for r in front_end_rules] == [
        "Redis from OutSystems front-end group outsystems-front-ends-id"]
    assert STORE not in group.urn
    # The configured secret is the password: in Parameter Store as a secret, and in the pipeline's secret.
    (parameter,) = [r for r in program.of_type("aws:ssm/parameter:Parameter") if r.name == "sessions-password"]
    assert parameter.inputs["value"] == PASSWORD and "value" in parameter.secret_inputs
    # The tools' signing seed and Redis 5.0's operations secret only, no generated password.
    assert sorted(r.name for r in program.of_type("random:index/randomPassword:RandomPassword")) == \
        ["sessions-ops-password", "sessions-tools-signing-seed"]
    (version,) = program.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert PASSWORD in version.inputs["secretString"] and "secretString" in version.secret_inputs
    # Every resource of the store hangs under it, whatever else the program holds.
    store_urn = next(r.urn for r in program.resources if r.type == STORE)
    mine = {r.urn for r in program.resources if r.type == STORE or r.urn.count(STORE) == 1}
    assert all(r.parent in mine for r in program.resources if r.urn in mine and r.urn != store_urn)


def test_arguments_are_typed_keyword_arguments_and_none_keeps_a_default() -> None:
    from outsystems_redis.pulumi.session_store import _values_of

    args = SessionStoreArgs(["172.31.140.0/24"], servers=3, front_end_cidrs=None, tags=None, replace_servers=[2])
    assert _values_of(args) == {"subnetCidrs": ("172.31.140.0/24",), "servers": 3, "replaceServers": ("2",)}
    # Keyword-only but the subnets: the declarations' order is the README's, not a calling convention.
    with pytest.raises(TypeError):
        SessionStoreArgs(["172.31.140.0/24"], 3)  # type: ignore[misc]


def test_arguments_from_a_stack_config_are_the_same_arguments_given_by_hand() -> None:
    """from_config marks its arguments so that errors name config keys; otherwise they are SessionStoreArgs."""
    read = SessionStoreArgs.from_config({"subnetCidrs": '["172.31.140.0/24"]', "servers": "3",
                                         "frontEndCidrs": '["10.0.0.0/16"]'}, "mine")
    given = SessionStoreArgs(("172.31.140.0/24",), servers=3, front_end_cidrs=("10.0.0.0/16",), stack="mine")
    assert read == given and given == read and repr(read) == repr(given)
    assert read != dataclasses.replace(given, servers=4)


def test_every_config_key_is_an_argument() -> None:
    fields = {f.name for f in dataclasses.fields(SessionStoreArgs)} - {"stack", "health_check_python"}
    assert set(ARGUMENT_OF) == {k.name for k in CONFIG_KEYS}
    assert set(ARGUMENT_OF.values()) == fields


# --- a program of the test's own: bad arguments --------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named", "detail"),
    [
        ("subnet_cidrs=[]", "subnet_cidrs", "private CIDR blocks"),
        ("subnet_cidrs=['172.31.140.0/24'], servers=2", "servers", "3 or more"),
        # Typed: no argument is read back through its config text ("3" is not a number of servers, 1 not a bool).
        ("subnet_cidrs=['172.31.140.0/24'], servers='3'", "servers", "3 or more"),
        ("subnet_cidrs=['172.31.140.0/24'], health_check=1", "health_check", "true or false"),
        ("subnet_cidrs=['172.31.140.0/24'], root_volume_gib=5", "root_volume_gib", "GiB"),
        ("subnet_cidrs=['172.31.140.0/24'], tags={'aws:team': 'x'}", "tags", "'aws:' prefix"),
        # The text names the other argument too, not its config key.
        ("subnet_cidrs=['172.31.140.0/24'], alarm_email='a@example.com', "
         "alarm_topic_arn='arn:aws:sns:eu-west-1:111122223333:t'", "alarm_email", "unset when alarm_topic_arn"),
        ("subnet_cidrs=['172.31.140.0/24'], redis_password='short'", "redis_password", "at least 16"),
        # Checks against AWS facts, inside the component: the VPC's range, the instance type's architecture.
        ("subnet_cidrs=['10.9.0.0/24']", "subnet_cidrs", "inside the VPC"),
        ("subnet_cidrs=['172.31.140.0/24'], instance_type='c6g.xlarge'", "instance_type", "x86_64"),
        ("subnet_cidrs=['172.31.140.0/24'], servers=3", "front_end_cidrs", "front-ends explicitly in front_end_cidrs"),
        # Values the look-ups need cannot wait for another resource.
        ("subnet_cidrs=['172.31.140.0/24'], vpc_id=pulumi.Output.from_input('vpc-0a1b2c3d4e5f60718')", "vpc_id",
         "a plain value"),
        ("subnet_cidrs=[pulumi.Output.from_input('172.31.140.0/24')]", "subnet_cidrs", "a plain value"),
        ("subnet_cidrs=['172.31.140.0/24'], front_end_security_group_ids=pulumi.Output.from_input('sg-01234567')",
         "front_end_security_group_ids", "a list"),
        ("subnet_cidrs=['172.31.140.0/24'], tags={'Owner': pulumi.Output.from_input('x')}", "tags", "strings known"),
        ("subnet_cidrs=['172.31.140.0/24'], stack='team a/x'", "stack", "letters, digits"),
    ],
)
def test_a_bad_argument_is_named_and_nothing_is_registered(
    tmp_path: Path, arguments: str, named: str, detail: str
) -> None:
    recorded: list[Recorded] = []
    with pytest.raises(Exception) as raised:
        run_store(tmp_path, arguments, recorded)
    error = raised.value
    while not isinstance(error, SettingsError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, SettingsError), raised.value
    assert str(error).startswith("argument '") and error.key.split(".")[0] == named, str(error)
    assert detail in str(error)
    assert not any(c.isupper() for c in error.key), "a config key's camelCase leaked into the argument's name"
    assert recorded == []


def test_a_password_known_only_at_deploy_time_is_checked_then(tmp_path: Path) -> None:
    # In a process of its own: a program that fails inside an apply leaves its event loop's tasks
    # behind, and the next program in the same process can trip over them (CPython 3.11's compiler).
    script = textwrap.dedent(f"""\
        from pathlib import Path
        from tests.unit.program import run_store
        try:
            run_store(Path({str(tmp_path)!r}), "subnet_cidrs=['172.31.140.0/24'], "
                      "redis_password=pulumi.Output.secret('short')", [])
        except Exception as error:
            chain = []
            while error is not None:
                chain.append(str(error))
                error = error.__cause__ or error.__context__
            print("\\n".join(chain))
        else:
            print("NO ERROR")
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "argument 'redis_password': got '[secret of 5 characters]'" in done.stdout, done.stdout + done.stderr
    assert "'short'" not in done.stdout + done.stderr


def test_look_ups_use_the_callers_provider(tmp_path: Path) -> None:
    program = run_store(
        tmp_path, "subnet_cidrs=['172.31.140.0/24']", [],
        opts="pulumi.ResourceOptions(provider=aws.Provider('frankfurt', region='eu-central-1'))",
    )
    looked_up = [p for (token, _), p in zip(program.calls, program.call_providers, strict=True)
                 if token.startswith("aws:")]
    assert looked_up and all("frankfurt" in p for p in looked_up), [
        t for (t, _), p in zip(program.calls, program.call_providers, strict=True) if "frankfurt" not in p]
    # The store's resources inherit it too (the look-ups alone would be half the job).
    (instance,) = program.of_type(INSTANCE)
    assert "frankfurt" in instance.provider


def test_the_check_runs_with_the_programs_own_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative inside the program's folder, so the command (an input in the state) is the same on every
    # operator's machine; absolute when the interpreter lives elsewhere.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    assert default_health_check_python() == "venv/bin/python"
    monkeypatch.setattr(sys, "executable", "/usr/lib/pulumi-python/bin/python3")
    assert default_health_check_python() == "/usr/lib/pulumi-python/bin/python3"


@pytest.mark.parametrize("name", ["Sessions", "sessions_eu", "-sessions", "s" * 34])
def test_a_store_name_aws_would_refuse_for_the_bucket_is_refused_first(tmp_path: Path, name: str) -> None:
    recorded: list[Recorded] = []
    with pytest.raises(SettingsError, match="argument 'name'.*63"):
        run_code(tmp_path, f"RedisSessionStore({name!r}, SessionStoreArgs(subnet_cidrs=['172.31.140.0/24']))\n",
                 recorded)
    assert recorded == []


def test_the_longest_store_name_fits_s3s_bucket_limit(tmp_path: Path) -> None:
    code = f"RedisSessionStore({'s' * 33!r}, SessionStoreArgs(subnet_cidrs=['172.31.140.0/24']))\n"
    program = run_code(tmp_path, code, [])
    (bucket,) = program.of_type("aws:s3/bucket:Bucket")
    # Pulumi's autoname: the resource name, '-', 7 random characters.
    assert len(bucket.name) + 8 <= 63


def test_two_stores_in_one_program_need_two_names(tmp_path: Path) -> None:
    recorded: list[Recorded] = []
    two = ("RedisSessionStore('sessions', SessionStoreArgs(subnet_cidrs=['172.31.140.0/24']))\n"
           "RedisSessionStore('more-sessions', SessionStoreArgs(subnet_cidrs=['172.31.141.0/24']{}))\n")
    with pytest.raises(SettingsError, match="argument 'stack': got 'team-program-test'; allowed: a name no other"):
        run_code(tmp_path, two.format(""), recorded)
    # The first store is whole; the second registered nothing.
    assert recorded and not any("more-sessions" in r.name for r in recorded)
    program = run_code(tmp_path, two.format(", stack='more'"), [])
    names = sorted(r.inputs["name"] for r in program.of_type("aws:ssm/parameter:Parameter"))
    assert names == ["/outsystems-redis/more/backup-bucket", "/outsystems-redis/more/ops-password",
                     "/outsystems-redis/more/redis-password", "/outsystems-redis/team-program-test/backup-bucket",
                     "/outsystems-redis/team-program-test/ops-password",
                     "/outsystems-redis/team-program-test/redis-password"]


def test_what_is_only_passed_on_may_be_an_output(tmp_path: Path) -> None:
    program = run_store(
        tmp_path,
        "subnet_cidrs=['172.31.140.0/24'], nat_gateway_id=aws.ec2.NatGateway('nat', subnet_id='subnet-0abc1234').id, "
        "alarm_topic_arn=aws.sns.Topic('pager').arn, ami_id=pulumi.Output.from_input('ami-0fedcba987654321f')",
        [],
    )
    (table,) = program.of_type("aws:ec2/routeTable:RouteTable")
    assert [r["natGatewayId"] for r in table.inputs["routes"]] == ["nat-id"]
    assert len(program.of_type("aws:ec2/natGateway:NatGateway")) == 1, "the store made a NAT of its own"
    assert not program.of_type("aws:kms/key:Key"), "the store made a topic of its own"
    alarms = program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms and all(a.inputs["alarmActions"][-1].startswith("arn:aws:sns:eu-west-1:111122223333:pager")
                          for a in alarms)
    (instance,) = program.of_type(INSTANCE)
    assert instance.inputs["ami"] == "ami-0fedcba987654321f"


def test_the_password_never_shows_in_the_arguments_repr() -> None:
    args = SessionStoreArgs(subnet_cidrs=["172.31.140.0/24"], redis_password=PASSWORD)
    assert PASSWORD not in repr(args) and PASSWORD not in str(args)
