"""Prod with TLS on Redis 7.0: three servers fetch their certificates at boot, form the cluster over TLS,
and pass the program's own post-deploy check, which speaks TLS with the stack's CA."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from outsystems_redis.judge import FETCH_TLS
from outsystems_redis.parameters import tls_ca_parameter, tls_cert_parameter, tls_key_parameter
from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.render.redis_conf import disabled_commands, secret_named_commands
from outsystems_redis.render.systemd import TLS_CLI_PATH
from outsystems_redis.tools.loopback import make_ca, make_server_certificate
from tests.boot import machines as m
from tests.boot.support import PLATFORM, Deployment, assert_first_boot, booted, post_deploy_check, verdict


@pytest.fixture(scope="module")
def tls_prod(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, m.Fleet]]:
    deployment = Deployment.of("prod", {"outsystems-redis:tls": True})
    # The mocked program's certificates are placeholders. Real ones, as pulumi-tls issues them: one CA,
    # and for each server a certificate for its private IP and loopback, into the same parameters.
    directory = tmp_path_factory.mktemp("tls")
    ca = make_ca(directory)
    deployment.parameters[tls_ca_parameter("prod")] = ca[0].read_text()
    deployment.check_env["REDIS_CA_CERT"] = ca[0].read_text()
    for index, instance in deployment.instances.items():
        cert, key = directory / f"server-{index + 1}.crt", directory / f"server-{index + 1}.key"
        make_server_certificate(ca, cert, key, [instance.inputs["privateIp"], "127.0.0.1"])
        for name, path in ((tls_cert_parameter("prod", index), cert), (tls_key_parameter("prod", index), key)):
            assert name in deployment.parameters, name  # the program's own parameter, with a real value
            deployment.parameters[name] = path.read_text()
    with booted(root, deployment) as fleet:
        yield deployment, fleet


def test_a_tls_cluster_boots_forms_over_tls_and_passes_the_post_deploy_check(tls_prod) -> None:
    deployment, fleet = tls_prod
    servers = list(fleet.servers.values())
    assert len(servers) == 3
    for server in servers:
        assert_first_boot(server)
        # The key came from "SSM" through redis-auth's TLS step: root's, readable by the redis group only.
        assert server.out("stat -c '%U:%G %a' /etc/redis/tls/server.key") == "root:redis 640"
    report = post_deploy_check(fleet, deployment)
    print(verdict(report))
    assert "3 servers over TLS" in report, report
    # TLS only: the same port refuses a plain-text client (the security groups do not change).
    host, port = deployment.nodes[0].rsplit(":", 1)
    plain = fleet.vpc.exec(["redis-cli", "-h", host, "-p", port, "PING"], timeout=20)
    assert "PONG" not in plain.stdout, plain.stdout


def test_the_renewal_command_fetches_the_tls_files_again_without_restarting_redis(tls_prod) -> None:
    """docs/upgrades-and-migration.md "Renewal" and the health check's fix (judge.FETCH_TLS), run as given on a
    booted server: the launcher's verified copy of redis-fetch-tls writes the files again, and no Redis process
    restarts. Planted (the command without TOOLS_KEY): the launcher refuses to run."""
    _, fleet = tls_prod
    server = next(iter(fleet.servers.values()))
    pids = server.out("systemctl show -p MainPID --value redis-server@7000 redis-server@7001")
    server.exec("touch -d '2020-01-01' /etc/redis/tls/server.crt")
    renewal = server.exec(FETCH_TLS.removeprefix("sudo "), timeout=120)
    assert renewal.returncode == 0, renewal.stdout + renewal.stderr
    assert "wrote /etc/redis/tls/ca.crt" in renewal.stdout + renewal.stderr, renewal.stdout + renewal.stderr
    assert server.out("date -r /etc/redis/tls/server.crt +%Y") != "2020"
    assert server.out("systemctl show -p MainPID --value redis-server@7000 redis-server@7001") == pids


# What the front-ends' password must not run on 7.0 (SECURITY.md), written out here: a command the program
# stopped closing would still be tried.
CLOSED_ON_7_0 = {"MODULE", "DEBUG", "REPLICAOF", "SLAVEOF", "FLUSHALL", "FLUSHDB", "SWAPDB", "SAVE", "BGSAVE",
                 "BGREWRITEAOF", "LASTSAVE", "LATENCY", "PFSELFTEST", "PFDEBUG", "SHUTDOWN", "MONITOR", "FAILOVER",
                 "CONFIG", "SLOWLOG", "ACL"}


def renewal_steps() -> str:
    """The shell block of docs/upgrades-and-migration.md's "Renewal" that makes each process load the files."""
    text = (m.REPO / "docs/upgrades-and-migration.md").read_text()
    block = re.search(r"\*\*Renewal\*\*.*?```bash\n(.*?)```", text, re.S)
    assert block, "docs/upgrades-and-migration.md: no bash block under Renewal"
    return block.group(1)


def test_the_documented_reload_and_the_front_ends_password_on_7_0(tls_prod) -> None:
    """The renewal's reload steps, run as documented in a root shell on a booted server: CONFIG goes by its
    secret name, and both processes load the files (OK each). With the front-ends' password, over TLS, every
    disabled command and the plain name of every secret-named one meet "unknown command" on 7.0 too.
    Planted (7.0 without secret names): CONFIG answers the front-ends' password."""
    deployment, fleet = tls_prod
    server = next(iter(fleet.servers.values()))
    ran = server.exec(f"bash -euo pipefail -c {shlex.quote(renewal_steps())}", timeout=60)
    assert ran.returncode == 0 and ran.stdout.split() == ["OK", "OK"], ran.stdout + ran.stderr
    platform = PLATFORMS[PLATFORM["outsystems-redis:platform"]]
    assert platform.redis_version == "7.0"
    assert {*disabled_commands(platform), *secret_named_commands(platform)} == CLOSED_ON_7_0
    login = "REDISCLI_AUTH=$(awk '$1 == \"requirepass\" { print $2 }' /etc/redis/auth/auth.conf)"
    assert server.out(f"{login}; echo $REDISCLI_AUTH") == deployment.password  # the front-ends' password
    for command in sorted(CLOSED_ON_7_0):
        reply = server.exec(f"export {login}; {TLS_CLI_PATH} -p 7001 {command} HELP", timeout=20)
        assert "unknown command" in (reply.stdout + reply.stderr).lower(), f"{command}: {reply.stdout!r}"
    # The front-ends' user is narrowed (redis_conf.FRONT_END_RULES): Redis's own administrative commands are
    # refused it (harmless ones tried here; tests/integration/test_front_end_rights.py tries every one).
    for command in ("ROLE", "CLIENT LIST", "CLUSTER SAVECONFIG", "CLUSTER COUNT-FAILURE-REPORTS 0",
                    "REPLCONF listening-port 7002"):
        reply = server.exec(f"export {login}; {TLS_CLI_PATH} -p 7001 {command}", timeout=20)
        assert "NOPERM" in reply.stdout + reply.stderr, f"{command}: {reply.stdout!r}"
    # Replicas log in to their masters as the replication user (masteruser in the include), over TLS: every
    # replica link to this server's processes names that user. (The cluster formed in this file's first test.)
    operations = "REDISCLI_AUTH=$(awk '$1 == \"user\" && $2 == \"operations\" { print substr($4, 2) }' " \
                 "/etc/redis/auth/auth.conf)"
    links = [line for port in (7000, 7001) for line in server.out(
        f"export {operations}; {TLS_CLI_PATH} --user operations -p {port} CLIENT LIST TYPE replica").splitlines()]
    assert links and all(" user=replication " in line for line in links), links
