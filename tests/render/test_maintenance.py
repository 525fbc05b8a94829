"""What rolling maintenance sends to a server, through shellcheck as POSIX sh (AWS-RunShellScript runs /bin/sh),
and the pure decisions it takes from CLUSTER NODES."""

from __future__ import annotations

import subprocess

import pytest

from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.tools import health, maintenance
from outsystems_redis.tools.rehearsal import error_windows
from tests.tools import tool

PINS = {"ubuntu-20.04-redis-5.0": "5:5.0.7*", "ubuntu-24.04-redis-7.0": "5:7.0.15*"}


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_what_runs_on_a_server_passes_shellcheck_as_posix_sh(name, tmp_path) -> None:
    for i, script in enumerate((maintenance.upgrade_script(PLATFORMS[name]), maintenance.BOOT_ID_SCRIPT,
                                maintenance.REBOOT_SCRIPT)):
        path = tmp_path / f"step-{i}.sh"
        path.write_text(script)
        result = subprocess.run([tool("shellcheck"), "--shell=sh", "--severity=style", str(path)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_redis_moves_only_within_its_pinned_line(name) -> None:
    script = maintenance.upgrade_script(PLATFORMS[name])
    pin = PINS[name]
    assert f"install --allow-change-held-packages 'redis-server={pin}' 'redis-tools={pin}'" in script
    assert "apt-mark hold redis-server redis-tools" in script and "unhold" not in script
    other = [p for n, p in PINS.items() if n != name]
    assert not any(p in script for p in other) and "dist-upgrade" not in script and "full-upgrade" not in script
    # The hold is back before the OS upgrade, which keeps held packages where they are.
    assert script.index("apt-mark hold") < script.index("upgrade --with-new-pkgs")


NODES = """\
a1 10.0.1.10:7000@17000 myself,master - 0 0 1 connected 0-5460
b1 10.0.2.10:7000@17000 master - 0 0 2 connected 5461-10922
c1 10.0.3.10:7000@17000 master - 0 0 3 connected 10923-16383
a2 10.0.1.10:7001@17001 slave b1 0 0 2 connected
b2 10.0.2.10:7001@17001 slave c1 0 0 3 connected
c2 10.0.3.10:7001@17001 slave a1 0 0 1 disconnected
"""


def test_masters_on_a_server_and_the_replica_that_takes_over() -> None:
    view = health.parse_cluster_nodes(NODES)
    (a1,) = maintenance.masters_on(view, "10.0.1.10")
    assert a1.id == "a1" and maintenance.masters_on(view, "10.0.9.9") == []
    # a1's only replica has its link down: nothing to promote (maintenance stops before touching the server).
    assert maintenance.replica_to_promote(view, a1) is None
    (b1,) = maintenance.masters_on(view, "10.0.2.10")
    assert maintenance.replica_to_promote(view, b1).address == "10.0.1.10:7001"


def test_the_clients_errors_are_grouped_into_bursts() -> None:
    assert error_windows([]) == []
    assert error_windows([10.0, 10.2, 10.9, 30.0]) == [(10.0, 10.9, 3), (30.0, 30.0, 1)]
