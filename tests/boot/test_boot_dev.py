"""Dev (one server): its first boot and the post-deploy check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outsystems_redis.monitoring import PASSWORD_SYNC_TOOL_KEY
from outsystems_redis.render.systemd import METADATA_ADDRESS, STATE_DIR
from outsystems_redis.signing import SIGNED_SUFFIX
from tests.boot import machines as m
from tests.boot.support import (
    Deployment,
    assert_first_boot,
    assert_redis_user_writes_nothing_root_reads,
    assert_root_units_that_call_aws_run_sandboxed,
    booted,
    post_deploy_check,
    verdict,
)


@pytest.fixture(scope="module")
def dev(root: Path) -> Iterator[tuple[Deployment, m.Fleet]]:
    deployment = Deployment.of("dev")
    with booted(root, deployment) as fleet:
        yield deployment, fleet


def test_dev_server_first_boot(dev: tuple[Deployment, m.Fleet]) -> None:
    deployment, fleet = dev
    assert len(fleet.servers) == 1
    server = fleet.servers[0]
    if deployment.instances[0].inputs.get("userDataBase64"):
        # What EC2 hands cloud-init is the gzip itself: this boot proves cloud-init unpacks it.
        assert server.user_data[:2] == b"\x1f\x8b", "userDataBase64 is not gzip-compressed"
    assert_first_boot(server)


def test_dev_post_deploy_check(dev: tuple[Deployment, m.Fleet]) -> None:
    deployment, fleet = dev
    print(verdict(post_deploy_check(fleet, deployment)))


def test_the_password_sync_runs_the_signed_program_from_the_stacks_bucket(dev: tuple[Deployment, m.Fleet]) -> None:
    """redis-password-sync is not in the user data: its unit runs the launcher, which fetches the program
    `pulumi up` uploaded (the aws stand-in serves the program's uploads), checks its signature against the
    user data's key, and runs it; with the password unchanged it changes nothing and succeeds."""
    deployment, fleet = dev
    server = fleet.servers[0]
    ran = server.start("redis-password-sync.service")
    journal = server.out("journalctl -u redis-password-sync --no-pager -o cat")
    assert ran.returncode == 0, journal + "\n" + server.diagnostics()
    copy = server.merged / STATE_DIR.lstrip("/") / Path(PASSWORD_SYNC_TOOL_KEY).name
    assert copy.read_text() == deployment.tools[PASSWORD_SYNC_TOOL_KEY], journal
    assert "ERROR" not in journal and "WARNING" not in journal, journal
    assert not (server.merged / "usr/local/sbin/redis-password-sync").exists()

    # A tampered object in the bucket (its signature no longer matches) is refused; the last good copy runs.
    served = server.merged / "usr/local/lib/osr-boot/s3" / (PASSWORD_SYNC_TOOL_KEY + SIGNED_SUFFIX)
    original = served.read_text()
    served.write_text(original + "echo tampered\n")
    try:
        ran = server.start("redis-password-sync.service")
        journal = server.out("journalctl -u redis-password-sync --no-pager -o cat")
        assert ran.returncode == 0, journal
        assert "no valid signature from this stack's deployer" in journal and "tampered" not in journal, journal
        assert copy.read_text() == deployment.tools[PASSWORD_SYNC_TOOL_KEY]
    finally:
        served.write_text(original)


def test_the_redis_user_can_write_nothing_that_root_reads(dev: tuple[Deployment, m.Fleet]) -> None:
    """A compromised Redis runs as `redis`: nothing root reads may be within its reach (support.py)."""
    _, fleet = dev
    assert_redis_user_writes_nothing_root_reads(fleet.servers[0])


# A stand-in for the instance metadata service on the server's own loopback (its own network namespace:
# nothing leaves it). It records the user id of every process that reaches it (the kernel's socket table
# says who owns the peer end) and answers "token".
METADATA_STAND_IN = f"""
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{METADATA_ADDRESS}", 80))
s.listen()
s.settimeout(float(sys.argv[1]))
with open(sys.argv[2], "a") as log:
    try:
        while True:
            c, (_, port) = s.accept()
            owner = [line.split()[7] for line in open("/proc/net/tcp").read().splitlines()[1:]
                     if int(line.split()[1].split(":")[1], 16) == port]
            log.write(" ".join(owner) + "\\n")
            log.flush()
            c.sendall(b"token")
            c.close()
    except socket.timeout:
        pass
"""
PROBE = f"""
import socket
try:
    print(socket.create_connection(("{METADATA_ADDRESS}", 80), 3).recv(5).decode())
except OSError as e:
    print(type(e).__name__)
"""


def test_the_redis_user_cannot_reach_the_instance_metadata_service(dev: tuple[Deployment, m.Fleet]) -> None:
    """The metadata service hands the instance role's credentials (the password, the TLS keys, the bucket)
    to any process that asks. A compromised Redis, or any program running as redis, must not reach it:
    neither code of its own nor redis-server's own outgoing connections (MIGRATE, which any holder of the
    password can aim anywhere). Root's AWS calls still reach it. And redis-auth put exactly one rule."""
    deployment, fleet = dev
    server = fleet.servers[0]
    lib = server.merged / "usr/local/lib/osr-boot"
    (lib / "metadata.py").write_text(METADATA_STAND_IN)
    (lib / "probe.py").write_text(PROBE)
    seen = "/run/metadata-seen"
    assert server.exec(f"ip addr replace {METADATA_ADDRESS}/32 dev lo").returncode == 0
    server.exec(f"rm -f {seen}; (timeout 60 python3 /usr/local/lib/osr-boot/metadata.py 30 {seen} "
                ">/dev/null 2>&1 &); sleep 1")
    try:
        as_root = server.out("python3 /usr/local/lib/osr-boot/probe.py")
        as_redis = server.out("runuser -u redis -- python3 /usr/local/lib/osr-boot/probe.py")
        auth = f"REDISCLI_AUTH={deployment.password}"
        cli = f"{auth} redis-cli -h {server.ip} -p 6379"
        assert server.out(f"{cli} SET metadata-probe 1") == "OK"
        # The front-ends' user may not MIGRATE at all (redis_conf.FRONT_END_RULES); the operations user may.
        refused = server.out(f"{cli} MIGRATE {METADATA_ADDRESS} 80 '' 0 2000 COPY KEYS metadata-probe")
        operations = ("REDISCLI_AUTH=$(awk '$1 == \"user\" && $2 == \"operations\" { print substr($4, 2) }' "
                      f"/etc/redis/auth/auth.conf) redis-cli --user operations -h {server.ip} -p 6379")
        migrated = server.out(f"{operations} MIGRATE {METADATA_ADDRESS} 80 '' 0 2000 COPY KEYS metadata-probe")
        redis_uid = server.out("id -u redis")
        reached = server.out(f"cat {seen}").split()
    finally:
        server.exec(f"pkill -f osr-boot/metadata.py; ip addr del {METADATA_ADDRESS}/32 dev lo")
    assert as_root == "token", as_root
    assert as_redis == "ConnectionRefusedError", as_redis
    assert "NOPERM" in refused, refused
    assert "IOERR" in migrated, migrated  # redis-server could not connect
    assert reached == ["0"], f"the metadata stand-in was reached by user ids {reached} (redis is {redis_uid})"
    rules = [r for r in server.out("iptables -S OUTPUT").splitlines() if METADATA_ADDRESS in r]
    assert len(rules) == 1 and f"--uid-owner {redis_uid} -j REJECT" in rules[0], rules


def test_the_root_units_that_call_aws_run_sandboxed_with_the_wheels_cli(dev: tuple[Deployment, m.Fleet]) -> None:
    """On 24.04 too, now that its AWS CLI is the wheel and no snap (support.py)."""
    _, fleet = dev
    assert_root_units_that_call_aws_run_sandboxed(fleet.servers[0])
