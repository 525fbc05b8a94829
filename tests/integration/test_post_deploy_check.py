"""The post-deploy health check exactly as the program builds it, then run as `pulumi up` runs it.

The command is asserted whole, as a literal: a suffix that swallows its exit status
(`|| true`, `; echo`) or a changed flag fails here. pulumi-command runs `create` as
`/bin/sh -c <create>` in the project directory and fails the update on a non-zero
exit; so the same string, with only the values that name the servers pointed at a
loopback cluster (and `--wait` shortened where the store is meant to stay unhealthy),
runs here through `sh -c` from the repository root.

Through CloudWatch (the default, `healthCheckVia: cloudwatch`): the servers' real metrics
agent (the user data's launcher, the real AWS CLI) publishes to moto in server mode, and
the check reads it there with the deployer's credentials only, no route to the servers:

- while the servers have published nothing (still booting), it waits; what they publish
  before the first whole minute after it started does not count (CloudWatch would serve
  it as that earlier minute's); it exits 0 with HEALTHY once each has published a healthy
  verdict since;
- credentials for another account than the stack's are refused at once.
(A server that publishes nothing is named in the report: tests/health/test_cloudwatch_verdict.py.)

Direct (`healthCheckVia: direct`, from inside the VPC), the password in REDIS_PASSWORD:
a dev server on Redis 5.0, and Redis 7.0 over TLS for the `platform:
ubuntu-24.04-redis-7.0`, `tls: true` variant (the CA's PEM in REDIS_CA_CERT): it waits for
the cluster to form, passes, then fails with a server lost.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

import boto3
import pytest

from outsystems_redis.tools.loopback import Loopback
from tests.integration.loopbacks import make_loopback
from tests.integration.metrics_stand_in import deployer_env, observe
from tests.integration.moto_stand_in import REGION
from tests.tools import ROOT, tool
from tests.unit.program import Program, run_program, session_of

TLS_7_0 = {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0", "outsystems-redis:tls": True}
DIRECT = {"outsystems-redis:healthCheckVia": "direct"}
STACKS = {"dev": ("dev", {}), "prod": ("prod", {}), "dev-direct": ("dev", DIRECT),
          "prod-7.0-tls-direct": ("prod", {**TLS_7_0, **DIRECT})}
PROD_NODES = ("172.31.129.10:7000,172.31.130.10:7000,172.31.131.10:7000,"
              "172.31.129.10:7001,172.31.130.10:7001,172.31.131.10:7001")
# Each server with its session (the role's unique id and its instance's id, as the mocks give them).
PROD_SERVERS = ",".join(f"outsystems-redis-server-{i}={session_of(f'outsystems-redis-server-{i}')}" for i in (1, 2, 3))
# Written out, not rebuilt from the code under test.
EXPECTED = {
    "dev": ".venv/bin/python -m outsystems_redis.tools.health --through-cloudwatch --stack dev --region eu-west-1 "
           f"--account 111122223333 --servers outsystems-redis-server-1={session_of('outsystems-redis-server-1')} "
           "--wait 900",
    "prod": ".venv/bin/python -m outsystems_redis.tools.health --through-cloudwatch --stack prod --region eu-west-1 "
            f"--account 111122223333 --servers {PROD_SERVERS} --cluster --wait 900",
    "dev-direct": ".venv/bin/python -m outsystems_redis.tools.health --nodes 172.31.128.10:6379 --expect-version 5.0 "
                  "--wait 900",
    "prod-7.0-tls-direct": f".venv/bin/python -m outsystems_redis.tools.health --nodes {PROD_NODES} --cluster "
                           "--expect-version 7.0 --cacert-env REDIS_CA_CERT --wait 900",
}
FORMING = 150  # seconds: bound on a check that waits for the cluster to form (its own --wait is 900)
# Seconds of --wait when the store is meant to stay unhealthy: more than the check's 3 s between tries,
# so it tries, waits, tries again, then runs out.
UNHEALTHY_WAIT = "10"


@pytest.fixture(scope="module")
def programs() -> dict[str, Program]:
    return {name: run_program(stack, overrides) for name, (stack, overrides) in STACKS.items()}


def check_of(program: Program):
    (check,) = program.of_type("command:local:Command")
    return check


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_post_deploy_command_is_exactly_this(programs: dict[str, Program], name: str) -> None:
    check = check_of(programs[name])
    assert check.inputs["create"] == EXPECTED[name]
    assert check.inputs["update"] == EXPECTED[name]  # a new password or a replaced server runs the same check
    # No interpreter and no dir: pulumi-command's defaults, `/bin/sh -c` in the project directory, which
    # passes the command's exit status on (so an unhealthy store fails `pulumi up`).
    assert "interpreter" not in check.inputs and "dir" not in check.inputs
    if name.endswith("direct"):
        tls = "tls" in name
        assert set(check.inputs["environment"]) == {"REDIS_PASSWORD", *(["REDIS_CA_CERT"] if tls else [])}
        assert "environment" in check.secret_inputs
    else:  # the deploying shell's AWS credentials, nothing of the stack's secrets
        assert not check.inputs.get("environment")


def as_run_here(create: str, lo: Loopback, wait: str | None = None, **values: str) -> str:
    """The program's command with the value of `--nodes` (or of each flag in `values`, such as `servers=`), and
    of `--wait` when given, replaced in the string itself: every other character stays as the program wrote it,
    shell syntax included."""
    args = shlex.split(create)
    if values:
        swaps = [(f"--{flag}", value) for flag, value in values.items()]
    else:
        swaps = [("--nodes", ",".join(p.address for p in (*lo.topology.masters, *lo.topology.replicas)))]
    swaps += [("--wait", wait)] if wait is not None else []
    for flag, value in swaps:
        old = f" {flag} {args[args.index(flag) + 1]}"
        assert create.count(old) == 1, f"{old!r} is not in {create!r} exactly once"
        create = create.replace(old, f" {flag} {value}")
    return create


def start(command: str, lo: Loopback, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`sh -c <command>` from the project directory, as pulumi-command runs `create`; with `env`, that
    environment (the deploying shell's) instead of the direct check's password and CA."""
    if env is None:
        env = {**os.environ, "REDIS_PASSWORD": lo.password}
        if lo.tls:
            env["REDIS_CA_CERT"] = lo.ca_file.read_text()
    return subprocess.Popen([tool("sh"), "-c", command], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"the check still ran after {timeout}s:\n{out}{err}") from None


def run(command: str, lo: Loopback, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = start(command, lo, env)
    out, err = finish(proc, timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def waits_then_passes(create: str, lo: Loopback) -> str:
    """Servers up, no cluster yet (cloud-init still running): the check waits, then passes once it is formed."""
    proc = start(as_run_here(create, lo), lo)
    try:
        time.sleep(2)
        assert proc.poll() is None, "the check did not wait for the cluster to form"
        lo.bootstrap()
    finally:
        out, err = finish(proc, FORMING)
    assert proc.returncode == 0, out + err
    assert "waiting (" in err and "has not joined a cluster" in err
    return out


def fails_with_a_server_lost(create: str, lo: Loopback, server: int) -> str:
    """One server's processes killed, a short --wait: it retries, runs out, exits 1 with the report naming it."""
    lo.kill_server(server)
    started = time.monotonic()
    result = run(as_run_here(create, lo, wait=UNHEALTHY_WAIT), lo)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert "waiting (" in result.stderr and 3 < took < 45, (took, result.stderr)  # retried, then gave up
    assert result.stdout.startswith("UNHEALTHY")
    host = lo.topology.servers[server].private_ip
    assert f"server {host}:" in result.stdout and "connection refused" in result.stdout
    return result.stdout


def test_prod_check_through_cloudwatch_waits_for_every_verdict_from_after_it_began(
        programs, request, tmp_path_factory, tmp_path, moto):
    create = check_of(programs["prod"]).inputs["create"]
    lo = make_loopback(request, tmp_path_factory, "5.0")
    lo.start()
    stack = "deployed"
    moto.prepare_stack(stack)
    names = ",".join(f"{s.name}={moto.writer(i)}" for i, s in enumerate(lo.topology.servers))
    account = boto3.client("sts", endpoint_url=moto.url, region_name=REGION, aws_access_key_id="testing",
                           aws_secret_access_key="testing").get_caller_identity()["Account"]

    def here(account: str = account) -> str:
        # Polled every second here (the servers publish once a minute, so the program leaves the default 15 s).
        return as_run_here(create, lo, stack=stack, region=REGION, account=account, servers=names) + " --poll 1"

    def publish() -> None:
        for server in range(3):
            result = observe(moto, lo, server, stack, "metrics", tmp_path / f"agent-{server}")
            assert result.returncode == 0, result.stdout + result.stderr

    # Credentials for another account than the stack's: refused at once, saying why.
    other = run(here(account="999999999999"), lo, env=deployer_env(moto.url))
    assert other.returncode == 1 and "these AWS credentials are for account" in other.stdout, other.stdout

    # Each server publishes in the minute the check started (not counted: it would pass a reading from before
    # the check), then again in the next minute. The first round (6-15 s alone, over 20 s in a loaded full run)
    # must end inside that minute: it starts with at least 45 s of it left.
    lo.bootstrap()
    if next_minute(time.time()) - time.time() < 45:
        time.sleep(next_minute(time.time()) - time.time() + 1)
    began = time.time()
    proc = start(here(), lo, deployer_env(moto.url))
    try:
        publish()
        assert time.time() < next_minute(began), "the first round outlasted its minute: the test cannot tell"
        time.sleep(max(0.0, next_minute(began) - time.time()) + 1)
        if proc.poll() is not None:  # with its output: under load it may have failed, not passed early
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"the check ended (exit {proc.returncode}) in the minute it began; it may have "
                                 f"counted a verdict from that minute:\n{out}{err}")
        publish()
    finally:
        out, err = finish(proc, FORMING)
    assert proc.returncode == 0, out + err
    assert "waiting (" in err and "no verdict published since the check began" in err
    assert out.startswith("HEALTHY - Redis Cluster, 3 servers, as the servers judge themselves"), out
    assert all(f"  {s.name}: ClusterStateOk 1, SlotsServed 16384, ReplicaLinksDown 0" in out
               for s in lo.topology.servers), out
    assert lo.password not in out + err


def next_minute(t: float) -> float:
    return (int(t) // 60 + 1) * 60


def test_dev_check_passes_then_fails_when_the_server_is_lost(programs, request, tmp_path_factory):
    create = check_of(programs["dev-direct"]).inputs["create"]
    lo = make_loopback(request, tmp_path_factory, "5.0", servers=1)
    lo.start()
    ok = run(as_run_here(create, lo), lo)
    assert ok.returncode == 0 and ok.stdout.startswith("HEALTHY - Redis server"), ok.stdout + ok.stderr
    fails_with_a_server_lost(create, lo, 0)


def test_prod_tls_check_waits_for_the_cluster_then_fails_when_a_server_is_lost(programs, request,
                                                                               tmp_path_factory):
    tool("openssl")
    create = check_of(programs["prod-7.0-tls-direct"]).inputs["create"]
    lo = make_loopback(request, tmp_path_factory, "7.0", tls=True)
    lo.start()
    out = waits_then_passes(create, lo)
    assert out.startswith("HEALTHY - Redis Cluster, 3 servers over TLS")
    fails_with_a_server_lost(create, lo, 2)
