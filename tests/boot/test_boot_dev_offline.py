"""Dev: a first boot with no way out yet (the NAT gateway still coming up) completes later."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from tests.boot import machines as m
from tests.boot.support import (
    BOOT_TIMEOUT,
    UNITS_TIMEOUT,
    Deployment,
    pinned_packages,
    post_deploy_check,
    verdict,
)


def test_dev_first_boot_without_a_way_out_completes_later(root: Path) -> None:
    """cloud-init installs once: with no way out yet (NAT gateway still coming up), its package
    and snap steps fail for good. The server must still end up as rendered once the way out works."""
    deployment = Deployment.of("dev")
    fleet = m.Fleet(root)
    try:
        server = deployment.add_to(fleet, 0)
        server.set_way_out(False)
        fleet.boot([server], BOOT_TIMEOUT)
        print(f"cloud-init with no way out:\n{server.out('cloud-init status --long')}")
        server.set_way_out(True)
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
        mismatched = server.rendered_files_mismatch()
        assert not mismatched, "write_files did not land as rendered:\n" + "\n".join(mismatched)
        for package, version in pinned_packages(server.config):
            installed = server.out(f"dpkg-query -W -f '${{Version}}' {package}")
            assert fnmatch.fnmatch(installed, version), f"{package} {installed}, pinned {version}"
        print(verdict(post_deploy_check(fleet, deployment)))
    finally:
        fleet.destroy()


def test_dev_first_boot_while_ssm_denies_throttles_and_stalls(root: Path) -> None:
    """At a first boot SSM answers as AWS does while a stack is new: AccessDenied until the instance role's
    policy has propagated, then throttling, then an answer that comes after the caller gave up. redis-auth
    keeps trying within its bounds, and Redis starts with the password once SSM answers."""
    deployment = Deployment.of("dev")
    fleet = m.Fleet(root)
    try:
        server = deployment.add_to(fleet, 0)
        (parameter,) = [name for name in server.parameters if name.endswith("/redis-password")]
        faults = ["denied", "denied", "throttled", "slow"]
        server.queue_ssm_faults([(kind, parameter) for kind in faults])
        fleet.boot([server], BOOT_TIMEOUT)
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
        assert server.ssm_faults_left() == []
        auth = server.out("journalctl -u redis-auth --no-pager -o cat")
        # The password sync (every minute) reads the same parameter and may meet a fault or two itself.
        both = auth + server.out("journalctl -u redis-password-sync --no-pager -o cat")
        assert "AccessDeniedException" in both and "ThrottlingException" in both, both
        assert "cannot read" in auth and "wrote /etc/redis/auth.conf" in auth, auth
        assert server.out("systemctl is-active redis-server@6379.service") == "active"
        print(verdict(post_deploy_check(fleet, deployment)))
    finally:
        fleet.destroy()
