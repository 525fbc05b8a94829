"""The default platform, ubuntu-20.04-redis-5.0: the dev server and the prod stack's three servers boot.

cloud-init installs Ubuntu 20.04's own redis-server and redis-tools 5:5.0.7-2ubuntu0.1 (the packages its EC2
servers get; scripts/boot-root.sh puts them, checked by SHA-256, in the root's only apt source), with their
forking unit template under the program's drop-in. The prod servers form the cluster on Redis 5.0, run
redis-make-room, keep sessions written the session provider's way, hand a master over at a stop, and pass
the program's own post-deploy check; the dev server passes it too and keeps its sessions across a restart
(the template's own stop: SIGTERM, and Redis saves). What is Debian 12's here and not Ubuntu 20.04's:
systemd, cloud-init and Python (tests/boot/machines.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outsystems_redis.platforms import DEFAULT_PLATFORM, PLATFORMS
from outsystems_redis.render.redis_conf import disabled_commands, secret_named_commands
from tests.boot import machines as m
from tests.boot.support import (
    Deployment,
    assert_crossed,
    assert_first_boot,
    assert_redis_user_writes_nothing_root_reads,
    assert_replicated_elsewhere,
    assert_roles_restore_themselves,
    assert_root_units_that_call_aws_run_sandboxed,
    assert_sessions_kept,
    booted,
    cli,
    cluster_view,
    post_deploy_check,
    verdict,
    write_sessions,
)

# Ubuntu 20.04's redis-server, as `redis-server --version` prints it.
FOCAL_BUILD = "Redis server v=5.0.7"


@pytest.fixture(scope="module")
def focal_dev(root: Path) -> Iterator[tuple[Deployment, m.Fleet]]:
    deployment = Deployment.of("dev", {"outsystems-redis:platform": DEFAULT_PLATFORM})
    with booted(root, deployment) as fleet:
        yield deployment, fleet


def test_the_default_platforms_dev_server_boots_passes_the_check_and_keeps_sessions_across_a_restart(
        focal_dev) -> None:
    deployment, fleet = focal_dev
    assert len(fleet.servers) == 1
    server = next(iter(fleet.servers.values()))
    assert_first_boot(server)
    assert server.out("redis-server --version").startswith(FOCAL_BUILD)
    assert server.out("systemctl show -p Type --value redis-server@6379") == "notify"
    assert server.out("systemctl is-active redis-make-room.service") == "active"
    print(verdict(post_deploy_check(fleet, deployment)))
    written = write_sessions(fleet, deployment, 100)
    assert server.start("redis-server@6379.service", verb="restart").returncode == 0, \
        server.out("journalctl -u redis-server@6379 --no-pager -o cat | tail -20")
    m.wait_for(lambda: "PONG" in cli(fleet, deployment, deployment.nodes[0], "PING"), 60,
               "the dev server's Redis did not answer after its restart", fleet.diagnostics)
    assert_sessions_kept(fleet, deployment, written)


@pytest.fixture(scope="module")
def focal_prod(root: Path) -> Iterator[tuple[Deployment, m.Fleet]]:
    assert DEFAULT_PLATFORM == "ubuntu-20.04-redis-5.0", "this file boots the default platform: update it"
    deployment = Deployment.of("prod", {"outsystems-redis:platform": DEFAULT_PLATFORM})
    with booted(root, deployment) as fleet:
        yield deployment, fleet


def test_the_default_platform_boots_its_own_packages_forms_the_cluster_and_passes_the_check(focal_prod) -> None:
    deployment, fleet = focal_prod
    servers = list(fleet.servers.values())
    assert len(servers) == 3
    for server in servers:
        assert_first_boot(server)  # includes: the pinned packages installed by cloud-init, and held
        assert server.out("dpkg-query -W -f '${Version}' redis-server") == "5:5.0.7-2ubuntu0.1"
        assert server.out("redis-server --version").startswith(FOCAL_BUILD), server.out("redis-server --version")
        # The package's template forks; the drop-in runs redis-server in the foreground under systemd's watch.
        unit = server.out("systemctl show -p Type -p ExecMainPID --value redis-server@7000").split()
        assert unit[0] == "notify", unit
        assert server.out("systemctl is-active redis-make-room.service") == "active", \
            server.out("journalctl -u redis-make-room --no-pager -o cat")
    report = post_deploy_check(fleet, deployment)
    print(verdict(report))
    assert_crossed(cluster_view(fleet, deployment, deployment.nodes[0]), 3)
    info = cli(fleet, deployment, deployment.nodes[0], "INFO", "server")
    assert "redis_version:5.0.7" in info, info
    assert PLATFORMS[DEFAULT_PLATFORM].redis_version == "5.0"


def test_the_front_ends_password_cannot_administer_a_5_0_server(focal_prod) -> None:
    """On 5.0 the commands nothing of ours sends are gone, and those the scripts need go by secret names
    (redis_conf; CLIENT too, which 5.0 has no users to narrow): the front-ends' password meets "unknown command"
    for each, on the real 5.0.7 build."""
    deployment, fleet = focal_prod
    node = deployment.nodes[1]
    platform = PLATFORMS[DEFAULT_PLATFORM]
    # Written out (SECURITY.md): a command the program stopped closing would still be tried.
    closed = {"MODULE", "DEBUG", "REPLICAOF", "SLAVEOF", "FLUSHALL", "FLUSHDB", "SWAPDB", "SAVE", "BGSAVE",
              "BGREWRITEAOF", "LASTSAVE", "LATENCY", "PFSELFTEST", "PFDEBUG", "SHUTDOWN", "MONITOR", "CONFIG",
              "SLOWLOG", "CLIENT"}
    assert {*disabled_commands(platform), *secret_named_commands(platform)} == closed
    harmless = {"CONFIG": "GET", "SLOWLOG": "GET", "CLIENT": "LIST"}  # (what each would answer if it ran)
    for command in sorted(closed):
        reply = cli(fleet, deployment, node, command, harmless.get(command, "HELP"))
        assert "unknown command" in reply.lower(), f"{node}: {command}: {reply!r}"


def test_the_redis_user_can_write_nothing_that_root_reads_with_the_5_0_package(focal_prod) -> None:
    """Ubuntu 20.04's package makes /etc/redis redis:redis 2770 and its template lets Redis write there; the
    program's statoverride and drop-in take that back (support.py tries every path as the redis user)."""
    _, fleet = focal_prod
    assert_redis_user_writes_nothing_root_reads(next(iter(fleet.servers.values())))


def test_a_stopped_master_hands_over_first_and_no_session_is_lost(focal_prod) -> None:
    """systemctl stop of a master on 5.0.7: the drop-in's step-down (ExecStop) fails it over to its replica on
    another server before the process exits; sessions written the provider's way survive; started again, the
    process comes back as a replica, in sync."""
    deployment, fleet = focal_prod
    # The whole cluster first (the tests before this one load a busy machine: a node may have timed out).
    assert_roles_restore_themselves(fleet, deployment, deployment.nodes[1], "before the stop")
    written = write_sessions(fleet, deployment, 200)
    server = next(iter(fleet.servers.values()))
    master = f"{server.ip}:7000"
    view = cluster_view(fleet, deployment, deployment.nodes[1])
    assert any(r["node"] == master and r["master"] and r["slots"] for r in view), view
    stopped = server.exec("systemctl stop redis-server@7000.service", timeout=120)
    journal = server.out("journalctl -u redis-server@7000 --no-pager -o cat | tail -20")
    assert stopped.returncode == 0, journal
    assert "CLUSTER FAILOVER on its replica" in journal, journal
    other = next(n for n in deployment.nodes if not n.startswith(f"{server.ip}:"))
    view = cluster_view(fleet, deployment, other)
    assert not any(r["node"] == master and r["master"] and r["slots"] and not r["failing"] for r in view), view
    assert_sessions_kept(fleet, deployment, written)
    assert server.start("redis-server@7000.service").returncode == 0

    def back_in_sync() -> bool:
        rows = cluster_view(fleet, deployment, other)
        me = next((r for r in rows if r["node"] == master), None)
        return me is not None and not me["master"] and not me["failing"] and \
            "master_link_status:up" in cli(fleet, deployment, master, "INFO", "replication")

    m.wait_for(back_in_sync, 120, f"{master} did not come back as a replica in sync", fleet.diagnostics)
    assert_replicated_elsewhere(cluster_view(fleet, deployment, other), "after the stop and start")
    assert_sessions_kept(fleet, deployment, written)


def test_the_root_units_that_call_aws_run_sandboxed_and_still_do_their_job(focal_dev) -> None:
    """support.assert_root_units_that_call_aws_run_sandboxed on 20.04 (apt's AWS CLI); test_boot_dev on 24.04."""
    _, fleet = focal_dev
    assert_root_units_that_call_aws_run_sandboxed(next(iter(fleet.servers.values())))
