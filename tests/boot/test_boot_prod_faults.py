"""Prod: faults on a fresh three-server cluster: a crashed master process, every server powered off and on,
a wiped disk."""

from __future__ import annotations

import time

import pytest

from tests.boot import machines as m
from tests.boot.support import (
    BOOT_TIMEOUT,
    FAILOVER_TIMEOUT,
    SLOTS,
    UNITS_TIMEOUT,
    Cluster,
    assert_crossed,
    assert_no_boot_problems,
    assert_replicated_elsewhere,
    assert_roles_restore_themselves,
    assert_sessions_kept,
    cli,
    cluster_view,
    post_deploy_check,
    verdict,
    write_sessions,
)


@pytest.fixture(scope="module", autouse=True)
def formed(prod: Cluster) -> None:
    """Formed and healthy before any fault (test_boot_prod_growth checks the first boot itself)."""
    for server in prod.fleet.servers.values():
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
    post_deploy_check(prod.fleet, prod.deployment)


def test_a_crashed_master_process_comes_back_after_its_failover_and_keeps_every_session(prod: Cluster) -> None:
    """SIGKILL of a master's redis-server (an OOM kill, a segfault): systemd restarts it (Restart=always) after
    the unit's RestartSec, by when its replica has taken over, so it rejoins as a replica and nothing is lost.
    With the 2 s restart shipped before, it came back first, reloaded its last snapshot and kept its slots:
    what was written since then was gone."""
    fleet, deployment = prod.fleet, prod.deployment
    victim = fleet.servers[1]
    survivor = next(n for n in deployment.nodes if not n.startswith(victim.ip + ":"))
    port = next(p for p in (7000, 7001)
                if "role:master" in cli(fleet, deployment, f"{victim.ip}:{p}", "info", "replication"))
    unit = f"redis-server@{port}.service"
    items = write_sessions(fleet, deployment, 100)
    restarts = int(victim.out(f"systemctl show -p NRestarts --value {unit}"))
    log = f"/var/log/redis/redis-server-{port}.log"

    def followed() -> int:
        """How often the process has turned into a replica because another node owns its slots now."""
        return int(victim.out(f"grep -c 'Reconfiguring myself as a replica of' {log} || true") or 0)

    followed_before = followed()

    killed_at = time.monotonic()
    victim.out(f"systemctl kill --signal=SIGKILL {unit}")  # a crash, not a stop: no step-down runs

    def restarted() -> bool:
        return (int(victim.out(f"systemctl show -p NRestarts --value {unit}")) > restarts
                and victim.out(f"systemctl is-active {unit}") == "active")

    m.wait_for(restarted, FAILOVER_TIMEOUT, f"systemd did not restart {unit}", victim.diagnostics)
    print(f"{unit} on {victim.name} restarted by systemd {time.monotonic() - killed_at:.1f}s after SIGKILL")
    # It learns its replica's newer epoch from the bus within a few seconds and follows it. Being a replica
    # can be brief: once it is in sync, its server's role-restore timer takes the master role back (a minute
    # at most), so its log's line counts too (a probe on a busy machine missed a window of seconds once).
    m.wait_for(lambda: followed() > followed_before
               or "role:slave" in cli(fleet, deployment, f"{victim.ip}:{port}", "info", "replication"), 30,
               f"{victim.ip}:{port} came back as a master (it restarted before its failover)", fleet.diagnostics)
    assert_sessions_kept(fleet, deployment, items)
    assert_roles_restore_themselves(fleet, deployment, survivor, f"after {unit} crashed on {victim.name}")
    assert_replicated_elsewhere(cluster_view(fleet, deployment, survivor), "after the crash")
    assert_sessions_kept(fleet, deployment, items)


def test_every_server_powered_off_and_on_keeps_sessions(prod: Cluster) -> None:
    fleet, deployment = prod.fleet, prod.deployment
    items = write_sessions(fleet, deployment, 100)
    servers = list(fleet.servers.values())

    fleet.poweroff(servers)
    fleet.boot(servers, BOOT_TIMEOUT)
    for server in servers:
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
        assert_no_boot_problems(server, "power cycle of every server")
    assert_roles_restore_themselves(fleet, deployment, deployment.nodes[0], "after every server's power cycle")
    report = post_deploy_check(fleet, deployment)
    print(f"after every server's power cycle:\n{verdict(report)}")
    assert verdict(report).startswith("HEALTHY") and "WARN" not in report, report
    assert_replicated_elsewhere(cluster_view(fleet, deployment, deployment.nodes[0]), "after the power cycle")
    assert_sessions_kept(fleet, deployment, items)


def test_a_server_whose_disk_was_wiped_boots_empty_and_rejoins_by_itself(prod: Cluster) -> None:
    """Server 1 (index 0: it forms the cluster) loses its Redis data dirs and boots empty at its address:
    its bootstrap hands over, its redis-cluster-join rejoins it, its role-restore timer gives its master back."""
    fleet, deployment = prod.fleet, prod.deployment
    victim = fleet.servers[0]
    survivor = next(n for n in deployment.nodes if not n.startswith(victim.ip + ":"))
    items = write_sessions(fleet, deployment, 50)

    fleet.poweroff([victim])
    m.wait_for(lambda: "cluster_state:ok" in cli(fleet, deployment, survivor, "cluster", "info") and all(
        r["ip"] != victim.ip for r in cluster_view(fleet, deployment, survivor) if r["master"] and r["slots"]
        and not r["failing"]) and sum(r["slots"] for r in cluster_view(fleet, deployment, survivor)
                                      if r["master"] and not r["failing"]) == SLOTS,
        FAILOVER_TIMEOUT, f"{victim.ip}'s slots were not taken over by another server", fleet.diagnostics)
    for port in (7000, 7001):  # the disk's Redis state: nodes.conf and the RDB
        data = victim.merged / f"var/lib/redis/{port}"
        wiped = [p for p in data.iterdir() if p.is_file()]
        assert any(p.name.startswith("nodes") for p in wiped), f"no nodes.conf in {data}: {wiped}"
        for p in wiped:
            p.unlink()

    victim.boot()
    victim.wait_booted(BOOT_TIMEOUT)
    victim.wait_units_active(m.expected_units(victim.config), UNITS_TIMEOUT)
    assert_no_boot_problems(victim, "boot with a wiped disk")
    assert "not forming another" in victim.out("journalctl -b --no-pager -o cat -u redis-cluster-bootstrap")
    journal = victim.out("journalctl -b --no-pager -o cat -u redis-cluster-join")
    assert "REJOIN" in journal and "done: rejoined" in journal, journal
    assert_roles_restore_themselves(fleet, deployment, survivor, f"after {victim.name} rejoined")
    report = post_deploy_check(fleet, deployment)
    print(f"after {victim.name} rejoined with a wiped disk:\n{verdict(report)}\n"
          + "\n".join(line for line in journal.splitlines() if "REJOIN" in line or "replicates" in line))
    assert verdict(report).startswith("HEALTHY") and "WARN" not in report, report
    assert_crossed(cluster_view(fleet, deployment, survivor), len(fleet.servers))
    assert_sessions_kept(fleet, deployment, items)
