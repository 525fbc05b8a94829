"""How `make test` spreads the suite over its workers (--dist loadgroup --no-loadscope-reorder).

Every file is one unit of work (one worker runs it, in order, with its module fixtures), except the files
in SPREAD: their tests share nothing, and each is a unit of its own. Units start longest first, so the
last ones to finish are short: xdist's default order (files with the most tests first) started the
few long cluster files last.
"""

from __future__ import annotations

import pytest

# The shared fixtures, for every test module without an import (so no name shadows another): the
# loopback Redis servers, and the one moto stand-in.
pytest_plugins = ("tests.integration.loopbacks", "tests.integration.moto_stand_in")

# Files whose tests start their own clusters and share no fixture or state beyond one test.
SPREAD = {
    "tests/integration/test_backup.py",
    "tests/integration/test_crash.py",
    "tests/integration/test_maintain.py",
    "tests/integration/test_memory.py",
    "tests/integration/test_metrics_moto.py",
    "tests/integration/test_rehearsal.py",
    "tests/integration/test_rejoin.py",
    "tests/integration/test_role_restore.py",
    "tests/render/test_scripts_argv.py",
}

# The longest units first (a test id prefix each, measured with --durations=0 on a full run); the rest
# follow in collection order. Only the order depends on this list: a stale entry costs time, never a test.
LONGEST_FIRST = (
    "tests/boot/test_boot_prod_faults.py",
    "tests/integration/test_scale_out_5_0.py",
    "tests/integration/test_scale_out_7_0.py",
    "tests/boot/test_boot_prod_growth.py",
    "tests/boot/test_boot_prod_tls.py",
    "tests/boot/test_boot_default_platform.py",
    "tests/integration/test_rejoin.py::test_a_replaced_joiner",
    "tests/integration/test_tls.py",
    "tests/unit/test_deploy_limits.py",
    "tests/integration/test_backup.py::test_restore_rehearsal",
    "tests/integration/test_rejoin.py::test_rehearsal_replace_server_1",
    "tests/integration/test_crash.py",
    "tests/unit/test_program.py",
    "tests/render/test_cloud_config.py",
    "tests/integration/test_health_cluster_5_0.py",
    "tests/integration/test_migration.py",
    "tests/integration/test_maintenance_ssm.py",
    "tests/integration/test_password_rotation.py",
    "tests/integration/test_post_deploy_check.py",
    "tests/integration/test_metrics_moto.py",
    "tests/integration/test_rejoin.py",
    "tests/integration/test_backup.py",
    "tests/integration/test_health_cluster_7_0.py",
    "tests/integration/test_logs_moto.py",
    "tests/integration/test_rehearsal_scale.py",
    "tests/integration/test_bootstrap.py",
)


def unit_of(nodeid: str) -> str:
    """A test's unit of work: its file, or the test itself in a SPREAD file."""
    path = nodeid.split("::", 1)[0]
    return nodeid if path in SPREAD else path


def rank(nodeid: str) -> int:
    """Where a test's unit starts: its place in LONGEST_FIRST, after all of them when not listed."""
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest units first. A file that is one unit stays in one piece (its module fixtures are set up once,
    its tests keep their order); a SPREAD file's tests are placed one by one."""
    starts: dict[str, int] = {}
    for item in items:
        unit = unit_of(item.nodeid)
        starts[unit] = min(starts.get(unit, len(LONGEST_FIRST)), rank(item.nodeid))
    items.sort(key=lambda item: starts[unit_of(item.nodeid)])


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201
    """For --dist loadgroup: the units above, handed out in collection order (--no-loadscope-reorder).
    (xdist's own loadgroup reads xdist_group marks through a test id that pytest 9 no longer lets it change.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return Units(config, log)
