"""The post-deploy health check exactly as the program builds it, then run as `pulumi up` runs it.

The command is asserted whole, as a literal: a suffix that swallows its exit status
(`|| true`, `; echo`) or a changed flag fails here. pulumi-command runs `create` as
`/bin/sh -c <create>` in the project directory and fails the update on a non-zero
exit; so the same string, with only `--nodes` pointed at a loopback cluster (and
`--wait` shortened where the store is meant to stay unhealthy), runs here through
`sh -c` from the repository root, the password in REDIS_PASSWORD:

- while the servers are up but the cluster is not formed yet (a fresh deploy), it
  waits, then exits 0 with HEALTHY once the shipped bootstrap has formed it;
- with a server lost, `--wait` runs out: exit 1, and the report on stdout names it.

Redis 5.0 for the stacks as shipped (dev, prod), Redis 7.0 over TLS for the
`platform: ubuntu-24.04-redis-7.0`, `tls: true` variant (the CA's PEM in REDIS_CA_CERT).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

import pytest

from operator_tools.loopback import Loopback
from tests.integration.loopbacks import make_loopback
from tests.tools import ROOT, tool
from tests.unit.program import Program, run_program

TLS_7_0 = {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0", "outsystems-redis:tls": True}
STACKS = {"dev": ("dev", {}), "prod": ("prod", {}), "prod-7.0-tls": ("prod", TLS_7_0)}
PROD_NODES = ("172.31.129.10:7000,172.31.130.10:7000,172.31.131.10:7000,"
              "172.31.129.10:7001,172.31.130.10:7001,172.31.131.10:7001")
# Written out, not rebuilt from the code under test.
EXPECTED = {
    "dev": ".venv/bin/python -m operator_tools.health --nodes 172.31.128.10:6379 --expect-version 5.0 --wait 900",
    "prod": f".venv/bin/python -m operator_tools.health --nodes {PROD_NODES} --cluster --expect-version 5.0 --wait 900",
    "prod-7.0-tls": f".venv/bin/python -m operator_tools.health --nodes {PROD_NODES} --cluster --expect-version 7.0 "
                    "--cacert-env REDIS_CA_CERT --wait 900",
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
    tls = name.endswith("tls")
    assert set(check.inputs["environment"]) == {"REDIS_PASSWORD", *(["REDIS_CA_CERT"] if tls else [])}
    assert "environment" in check.secret_inputs


def as_run_here(create: str, lo: Loopback, wait: str | None = None) -> str:
    """The program's command with the value of `--nodes` (and of `--wait` when given) replaced in the string
    itself: every other character stays as the program wrote it, shell syntax included."""
    args = shlex.split(create)
    nodes = ",".join(p.address for p in (*lo.topology.masters, *lo.topology.replicas))
    swaps = [("--nodes", nodes)] + ([("--wait", wait)] if wait is not None else [])
    for flag, value in swaps:
        old = f" {flag} {args[args.index(flag) + 1]}"
        assert create.count(old) == 1, f"{old!r} is not in {create!r} exactly once"
        create = create.replace(old, f" {flag} {value}")
    return create


def start(command: str, lo: Loopback) -> subprocess.Popen:
    """`sh -c <command>` from the project directory, as pulumi-command runs `create`."""
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


def run(command: str, lo: Loopback, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = start(command, lo)
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


def test_prod_check_waits_for_the_cluster_then_fails_when_a_server_is_lost(programs, request, tmp_path_factory):
    create = check_of(programs["prod"]).inputs["create"]
    lo = make_loopback(request, tmp_path_factory, "5.0")
    lo.start()
    out = waits_then_passes(create, lo)
    assert out.startswith("HEALTHY - Redis Cluster, 3 servers")
    assert "no replica shares a server with its master" in out
    fails_with_a_server_lost(create, lo, 1)


def test_dev_check_passes_then_fails_when_the_server_is_lost(programs, request, tmp_path_factory):
    create = check_of(programs["dev"]).inputs["create"]
    lo = make_loopback(request, tmp_path_factory, "5.0", servers=1)
    lo.start()
    ok = run(as_run_here(create, lo), lo)
    assert ok.returncode == 0 and ok.stdout.startswith("HEALTHY - Redis server"), ok.stdout + ok.stderr
    fails_with_a_server_lost(create, lo, 0)


def test_prod_tls_check_waits_for_the_cluster_then_fails_when_a_server_is_lost(programs, request,
                                                                               tmp_path_factory):
    tool("openssl")
    create = check_of(programs["prod-7.0-tls"]).inputs["create"]
    lo = make_loopback(request, tmp_path_factory, "7.0", tls=True)
    lo.start()
    out = waits_then_passes(create, lo)
    assert out.startswith("HEALTHY - Redis Cluster, 3 servers over TLS")
    fails_with_a_server_lost(create, lo, 2)
