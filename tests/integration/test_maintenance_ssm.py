"""Rolling maintenance's AWS side against moto in server mode on loopback: EC2 discovery by the
stack's tags and SSM Run Command (AWS-RunShellScript), the API calls a real run makes.

moto answers every Run Command with Success and no output, so a reboot never shows a new boot
id: the full run against a loopback cluster stops at that step, naming it, with the cluster
still serving; every command it sent is checked for the password.
"""

from __future__ import annotations

import json

import pytest

from outsystems_redis.tools import maintenance
from outsystems_redis.tools.loopback import platform_for
from outsystems_redis.tools.rehearsal import master_hosts, slots_writable, tls_of
from outsystems_redis.tools.stack_file import read_settings
from outsystems_redis.topology import build_topology
from tests.integration.moto_stand_in import REGION
from tests.tools import ROOT


@pytest.fixture
def aws(moto):
    """(ec2, ssm) boto3 clients of the test's moto stand-in."""
    import boto3

    kwargs = {"endpoint_url": moto.url, "region_name": REGION, "aws_access_key_id": "testing",
              "aws_secret_access_key": "testing"}
    ssm = boto3.client("ssm", **kwargs)
    # What the client puts on the wire. (moto's own record adds every instance of the region to a
    # command sent without Targets, so SSM's InstanceIds cannot be read back from it.)
    ssm.sent = []
    ssm.meta.events.register("provide-client-params.ssm.SendCommand",
                             lambda params, **_: ssm.sent.append(json.loads(json.dumps(params))))
    ssm.endpoint = kwargs["endpoint_url"]
    return boto3.client("ec2", **kwargs), ssm


def launch(ec2, stack: str, count: int, moved: dict[int, str] | None = None,
           only: list[int] | None = None) -> list[str]:
    """Instances tagged as the program tags the servers of a `count`-server stack (or `only` these
    indexes), each at the address its stack file gives it (or at `moved[index]`); their ids in order."""
    settings = read_settings(stack, ROOT / f"Pulumi.{stack}.yaml")
    topology = build_topology(count, settings.subnet_cidrs)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = {s["CidrBlock"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ids = []
    for index in range(count) if only is None else only:
        server = topology.servers[index]
        cidr = settings.subnet_cidrs[server.subnet]
        if cidr not in subnets:
            subnets[cidr] = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
        tags = {"Project": "outsystems-redis", "Stack": stack, "RedisServerIndex": str(index),
                "Name": f"outsystems-redis-server-{index + 1}"}
        got = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large", SubnetId=subnets[cidr],
            PrivateIpAddress=(moved or {}).get(index, server.private_ip),
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
        ids.append(got["Instances"][0]["InstanceId"])
    return ids


def sent(ssm, instance_id: str) -> list[dict]:
    """Every SendCommand to `instance_id`, in order, as the client sent it."""
    return [c for c in ssm.sent if instance_id in c["InstanceIds"]]


def test_servers_are_found_by_the_stacks_tags_and_scripts_go_through_run_command(aws) -> None:
    ec2, ssm = aws
    ids = launch(ec2, "prod", 3)
    launch(ec2, "dev", 1)  # another stack's server is never touched
    servers = maintenance.discover_servers(ec2, "prod")
    assert [(s.index, s.name, s.instance_id) for s in servers] == [
        (i, f"outsystems-redis-server-{i + 1}", ids[i]) for i in range(3)]
    assert [s.host for s in servers] == ["172.31.129.10", "172.31.130.10", "172.31.131.10"]
    assert maintenance.chosen(servers, [ids[2], ids[0]]) == [servers[2], servers[0]]
    with pytest.raises(ValueError, match="i-00000000000000000 is not a running server"):
        maintenance.chosen(servers, ["i-00000000000000000"])
    ec2.stop_instances(InstanceIds=[ids[1]])
    with pytest.raises(ValueError, match=r"\[0, 2\]; one is missing or stopped"):
        maintenance.discover_servers(ec2, "prod")

    script = maintenance.upgrade_script(platform_for("7.0"))
    runner = maintenance.SsmRunner(ssm, poll=0.05, comment="outsystems-redis prod")
    runner.run_script(servers[0], script, 900)
    (command,) = sent(ssm, ids[0])
    assert command["DocumentName"] == "AWS-RunShellScript" and command["InstanceIds"] == [ids[0]]
    assert command["Parameters"]["commands"] == script.strip().splitlines()
    assert command["Parameters"]["executionTimeout"] == ["900"]
    assert "outsystems-redis prod maintenance" in command["Comment"]
    # SSM took it: the command is recorded with that document and those lines.
    (recorded,) = ssm.list_commands()["Commands"]
    assert recorded["DocumentName"] == "AWS-RunShellScript"
    assert recorded["Parameters"]["commands"] == script.strip().splitlines()
    assert "'redis-server=5:7.0.15*'" in "\n".join(command["Parameters"]["commands"])


def test_a_run_through_ssm_stops_at_the_reboot_that_never_comes_back(aws, loopback_factory, capsys) -> None:
    ec2, ssm = aws
    lo = loopback_factory("5.0")
    lo.start()
    lo.bootstrap()
    ids = launch(ec2, "prod", 3)
    servers = [maintenance.Server(s.index, s.name, s.host, ids[s.index])
               for s in maintenance.loopback_servers(lo)]
    cluster = maintenance.Cluster(servers, lo.password, lo.version, tls_of(lo),
                                  timeouts=maintenance.Timeouts(reboot=1, back=30, healthy=30))
    runner = maintenance.SsmRunner(ssm, poll=0.05, reboot_poll=0.2)

    assert maintenance.run(servers, cluster, runner, lo.platform) == 1
    out = capsys.readouterr().out
    assert (f"STOPPED: stopped at server 1 (redis-1, {servers[0].host}, {ids[0]}), step 'reboot': its OS did not "
            "answer Run Command within 1 s of the reboot") in out, out
    commands = [c["Parameters"]["commands"] for c in sent(ssm, ids[0])]
    assert commands[0] == maintenance.upgrade_script(lo.platform).strip().splitlines()
    assert commands[1] == maintenance.BOOT_ID_SCRIPT.strip().splitlines()
    assert commands[2] == maintenance.REBOOT_SCRIPT.strip().splitlines()
    assert all(c == commands[1] for c in commands[3:]) and len(commands) > 3  # polled for a new boot id
    assert sent(ssm, ids[1]) == [] and sent(ssm, ids[2]) == []
    # No secret in anything sent to any server.
    everything = json.dumps(ssm.list_commands()["Commands"], default=str)
    assert lo.password not in everything
    # Stopped with the cluster serving: server 0's master moved away before anything else happened.
    assert slots_writable(lo, set()) and servers[0].host not in master_hosts(lo)


def test_the_command_line_finds_the_stacks_servers_and_names_bad_input(aws, monkeypatch, capsys) -> None:
    ec2, ssm = aws
    ids = launch(ec2, "prod", 3)
    for name, value in {"AWS_ENDPOINT_URL": ssm.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    assert maintenance.main(["--stack", "prod", "--dry-run", "--instance-ids", f"{ids[2]},{ids[0]}"]) == 0
    out = capsys.readouterr().out
    assert out.index("server 3 (outsystems-redis-server-3, 172.31.131.10") < out.index(
        "server 1 (outsystems-redis-server-1, 172.31.129.10") and ids[1] not in out
    assert "'redis-server=5:5.0.7*'" in out  # Pulumi.prod.yaml's platform

    with pytest.raises(SystemExit) as exit_:
        maintenance.main(["--stack", "prod"])
    assert exit_.value.code == 2 and "REDIS_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("REDIS_PASSWORD", "not-used-here-0123456789")
    with pytest.raises(SystemExit):
        maintenance.main(["--stack", "prod", "--instance-ids", "web-1"])
    assert "--instance-ids: EC2 instance ids" in capsys.readouterr().err
    assert maintenance.main(["--stack", "prod", "--dry-run", "--instance-ids", "i-0123456789abcdef0"]) == 1
    assert "i-0123456789abcdef0 is not a running server of this stack" in capsys.readouterr().err


def test_an_instance_tagged_as_a_server_but_elsewhere_is_refused_before_anything_is_sent(aws, monkeypatch,
                                                                                         capsys) -> None:
    """Tags are not trusted alone: whoever may tag an instance would otherwise get the password and root
    scripts. An instance carrying server 2's tags at another address stops the run before any command."""
    ec2, ssm = aws
    ids = launch(ec2, "prod", 3, moved={1: "172.31.130.77"})
    for name, value in {"AWS_ENDPOINT_URL": ssm.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                        "REDIS_PASSWORD": "not-used-here-0123456789"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert maintenance.main(["--stack", "prod"]) == 1
    err = capsys.readouterr().err
    assert (f"instance {ids[1]} is tagged as server 2 of stack prod but its address is 172.31.130.77, "
            "not 172.31.130.10") in err, err
    assert ssm.sent == []
    # A fourth tagged instance where the stack file says three servers: refused too.
    launch(ec2, "dev", 1)
    assert maintenance.main(["--stack", "dev", "--dry-run"]) == 0  # the dev server is where dev's file says
    launch(ec2, "prod", 4, only=[3])
    assert maintenance.main(["--stack", "prod", "--dry-run"]) == 1
    assert "carry its tags but its stack file says servers: 3" in capsys.readouterr().err
    assert ssm.sent == []


def test_a_7_0_stack_needs_the_operations_secret_before_anything_is_asked_of_aws(tmp_path, monkeypatch,
                                                                                   capsys) -> None:
    """Redis 7.0's front-ends' user cannot fail a master over (redis_conf.FRONT_END_RULES): without
    REDIS_OPS_PASSWORD the tool stops at once, naming it and where it lives; 5.0 (Pulumi.prod.yaml) needs none
    (the test above). Planted (the check removed): it goes on to AWS and fails there instead."""
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text((ROOT / "Pulumi.prod.yaml").read_text().replace(
        "config:\n", "config:\n  outsystems-redis:platform: ubuntu-24.04-redis-7.0\n", 1))
    monkeypatch.setenv("REDIS_PASSWORD", "not-used-here-0123456789")
    monkeypatch.delenv("REDIS_OPS_PASSWORD", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing may be asked of AWS
    with pytest.raises(SystemExit) as exit_:
        maintenance.main(["--stack", "prod", "--config", str(stack)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "REDIS_OPS_PASSWORD" in err and "/outsystems-redis/prod/ops-password" in err, err
