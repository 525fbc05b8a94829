"""The suite's units of work (tests/conftest.py): a file listed as SPREAD must be safe to split."""

from __future__ import annotations

import re

import pytest

from tests import conftest
from tests.tools import ROOT


def test_spread_files_share_no_fixture_beyond_one_test() -> None:
    """A module-, class- or session-scoped fixture in a SPREAD file would be set up on every worker that
    runs one of its tests, and tests that build on each other would run apart."""
    for path in conftest.SPREAD:
        text = (ROOT / path).read_text()
        assert not re.search(r"scope=\"(module|class|session|package)\"", text), path
        assert "globals().update" not in text, path  # tests generated in order from a shared module


def test_a_spread_files_tests_are_units_and_any_other_file_is_one() -> None:
    spread = "tests/integration/test_backup.py::test_a_snapshot_the_disk_cannot_hold_is_not_taken"
    assert conftest.unit_of(spread) == spread
    for name in ("test_three_to_four_under_live_sessions", "test_a_drifted_cluster_is_not_fought"):
        assert conftest.unit_of(f"tests/integration/test_scale_out_5_0.py::{name}") == \
            "tests/integration/test_scale_out_5_0.py"


def test_every_listed_unit_is_a_file_here() -> None:
    for prefix in (*conftest.SPREAD, *conftest.LONGEST_FIRST):
        assert (ROOT / prefix.split("::")[0]).is_file(), prefix


def test_a_console_failure_is_matched_to_its_unit_through_systemds_shortening() -> None:
    """The boot harness forgives a unit that failed at the container's cgroup setup and then ran; its
    console line must be recognised, shortened as systemd prints it, and no other unit's."""
    from tests.boot.machines import _names_unit

    name = "systemd-tmpfiles-setup-dev.service - Create Static Device Nodes in /dev"
    line = "console: [FAILED] Failed to start systemd-tm…reate Static Device Nodes in /dev."
    assert _names_unit(line, name)
    assert not _names_unit(line, "systemd-tmpfiles-setup.service - Create System Files and Directories")
    assert _names_unit("console: [FAILED] Failed to start a.service - A.", "a.service - A")
    assert not _names_unit("console: [FAILED] Failed to start a.service - A.", "b.service - A")


def test_a_recovered_units_console_line_is_forgiven_in_every_later_check_of_that_boot(tmp_path) -> None:
    """The boot tests check a server twice per boot (cloud-init finished, units started). A unit that failed
    at the cgroup setup is started again in the first check and is no longer failed in the second, but its
    console line is still there: the second check must not count it either. Only systemd's and the
    container's answers are stood in for here."""
    from tests.boot import machines

    server = object.__new__(machines.Server)
    server.recovered = set()
    server.merged = tmp_path
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/cloud-init-output.log").write_text("Cloud-init finished\n")
    failed = ["systemd-remount-fs.service loaded failed failed Remount Root and Kernel File Systems"]
    answers = {
        "cloud-init status --long": "status: done",
        "cat /run/cloud-init/result.json": '{"errors": []}',
        "cat /run/cloud-init/status.json": '{"errors": []}',
        "systemctl show -p Description --value systemd-remount-fs.service": "Remount Root and Kernel File Systems",
    }

    def out(command: str, *args, **kwargs) -> str:
        if command.startswith("systemctl list-units --failed"):
            return "\n".join(failed)
        return answers.get(command, "")

    def rerun(unit: str, timeout: float = 60) -> bool:
        failed.clear()  # started again, and it ran
        return unit == "systemd-remount-fs.service"

    server.out = out
    server.console = lambda tail=4000: "[FAILED] Failed to start systemd-re…ount Root and Kernel File Systems.\n"
    server._cgroup_flake_recovered = lambda unit, timeout=75: False
    server._cgroup_flake_rerun = rerun
    assert server.boot_problems() == []
    assert server.boot_problems() == []
    # A failure of another unit in the same boot is still reported.
    server.console = lambda tail=4000: "[FAILED] Failed to start systemd-ti…Network Time Synchronization.\n"
    assert server.boot_problems() == ["console: [FAILED] Failed to start systemd-ti…Network Time Synchronization."]


def test_a_unit_the_wait_started_again_after_219_cgroup_is_recovered_for_that_boots_checks(tmp_path) -> None:
    """redis-provision failed at the container's cgroup setup during a power cycle; waiting for the units started
    it again and it ran. Its console line must not fail the boot check that follows (CI, stop 34). A second
    219 of the same unit is a failure. Only systemd's answers are stood in for."""
    from tests.boot import machines

    server = object.__new__(machines.Server)
    server.recovered = set()
    server.cgroup_retried = set()
    server.fleet = {}
    server.name = "server-1"
    server.merged = tmp_path
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/cloud-init-output.log").write_text("Cloud-init finished\n")
    states = iter([{"redis-provision.service": "failed"}, {"redis-provision.service": "done"}])
    started = []
    server.units_state = lambda units: next(states)
    server._failed_at_cgroup_setup = lambda unit: True
    server.exec = lambda command, timeout=60: started.append(command)
    server.diagnostics = lambda: ""
    answers = {
        "cloud-init status --long": "status: done",
        "cat /run/cloud-init/result.json": '{"errors": []}',
        "cat /run/cloud-init/status.json": '{"errors": []}',
        "systemctl show -p Description --value redis-provision.service":
            "Install the pinned Redis packages if missing, then enable and start the Redis units",
    }
    server.out = lambda command, *a, **k: answers.get(command, "")
    server.console = lambda tail=4000: "[FAILED] Failed to start redis-prov… enable and start the Redis units.\n"
    server._cgroup_flake_recovered = lambda unit, timeout=75: False
    server._cgroup_flake_rerun = lambda unit, timeout=60: False

    server.wait_units_active(["redis-provision.service"], timeout=5)
    assert started == ["systemctl reset-failed redis-provision.service; "
                       "systemctl start --no-block redis-provision.service"]
    assert server.boot_problems() == []

    server.recovered, server.cgroup_retried = set(), set()  # the next boot
    states = iter([{"redis-provision.service": "failed"}, {"redis-provision.service": "failed"}])
    server.units_state = lambda units: next(states)
    with pytest.raises(AssertionError, match="failed: \\['redis-provision.service'\\]"):
        server.wait_units_active(["redis-provision.service"], timeout=5)


def test_a_peers_unit_that_flaked_at_cgroup_setup_is_started_again_by_a_wait_on_another_server(monkeypatch) -> None:
    """Server 1's bootstrap waits until every server's Redis answers. When server 3's redis-auth failed with
    219/CGROUP, nothing started it again until the wait on server 1 had timed out (CI of d97af44: the TLS
    boot, 300 s). The wait on any server starts a peer's flaked unit again, once; a peer's other failure is
    left to that peer's own wait. Only systemd's answers are stood in for."""
    from tests.boot import machines

    def server(name: str, states: list[dict[str, str]], flaked: set[str]):
        s = object.__new__(machines.Server)
        s.name, s.recovered, s.cgroup_retried, s.config = name, set(), set(), {}
        s.started = []
        answers = iter(states)
        last = {}

        def units_state(units):
            nonlocal last
            last = next(answers, last)
            return last
        s.units_state = units_state
        s._failed_at_cgroup_setup = lambda unit: unit in flaked
        s.exec = lambda command, timeout=60: s.started.append(command)
        s.diagnostics = lambda: ""
        s.proc = type("Running", (), {"poll": staticmethod(lambda: None)})()
        return s

    auth, join = "redis-auth.service", "redis-cluster-bootstrap.service"
    first = server("server-1", [{join: "active/running"}, {join: "active/running"}, {join: "done"}], set())
    third = server("server-3", [{auth: "failed", "redis-logs.service": "failed"}, {auth: "done"}], {auth})
    first.fleet = third.fleet = {0: first, 2: third}
    monkeypatch.setattr(machines, "expected_units", lambda config: [auth])
    first.wait_units_active([join], timeout=10)
    assert third.started == [f"systemctl reset-failed {auth}; systemctl start --no-block {auth}"]
    assert third.cgroup_retried == {auth} and first.started == []


def test_a_unit_that_flaked_at_cgroup_setup_and_runs_again_is_forgiven_with_its_dependents(tmp_path) -> None:
    """redis-auth failed with 219/CGROUP at boot, so the Redis processes that require it failed as a dependency
    (CI, stop 35); redis-provision then started all three and they run. The console's three lines are not
    problems; a "Dependency failed" line of a unit that does not run now, and a 219 unit that does not run now,
    still are. Only systemd's answers are stood in for."""
    from tests.boot import machines

    server = object.__new__(machines.Server)
    server.recovered = set()
    server.merged = tmp_path
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/cloud-init-output.log").write_text("Cloud-init finished\n")
    auth, r7000, r7001 = "redis-auth.service", "redis-server@7000.service", "redis-server@7001.service"
    active = {auth, r7000, r7001}
    answers = {
        "cloud-init status --long": "status: done",
        "cat /run/cloud-init/result.json": '{"errors": []}',
        "cat /run/cloud-init/status.json": '{"errors": []}',
        "journalctl -b --no-pager -o cat _PID=1 | grep -F 'status=219/CGROUP'":
            f"{auth}: Main process exited, code=exited, status=219/CGROUP",
        f"systemctl show -p Description --value {auth}": "Redis password from SSM Parameter Store (auth include)",
        f"systemctl show -p Description --value {r7000}": "Advanced key-value store (7000)",
        f"systemctl show -p Description --value {r7001}": "Advanced key-value store (7001)",
        f"systemctl show -p RequiredBy --value {auth}": f"{r7000} {r7001}",
    }

    def out(command: str, *args, **kwargs) -> str:
        if command.startswith("systemctl is-active "):
            return "active" if command.split()[-1] in active else "failed"
        return answers.get(command, "")

    server.out = out
    server.console = lambda tail=4000: (
        "[FAILED] Failed to start redis-auth…SM Parameter Store (auth include).\n"
        "[DEPEND] Dependency failed for redi…- Advanced key-value store (7001).\n"
        "[DEPEND] Dependency failed for redi…- Advanced key-value store (7000).\n")
    server._cgroup_flake_recovered = lambda unit, timeout=75: False
    server._cgroup_flake_rerun = lambda unit, timeout=60: False
    assert server.boot_problems() == []
    assert server.recovered == {auth}

    server.recovered = set()  # the next boot: 7001 did not come back
    active.discard(r7001)
    assert server.boot_problems() == ["console: [DEPEND] Dependency failed for redi…- Advanced key-value store (7001)."]
    server.recovered = set()  # and auth itself did not either
    active.discard(auth)
    assert len(server.boot_problems()) == 3


def test_a_unit_that_failed_at_cgroup_setup_is_left_to_the_wait_in_the_first_check(tmp_path) -> None:
    """Right after cloud-init, redis-auth has met 219/CGROUP (its program never ran) and nothing has started it
    again yet: the first check defers it, with its console lines and its dependents', to wait_units_active;
    the second check still fails it if it never ran. Only systemd's answers are stood in for."""
    from tests.boot import machines

    server = object.__new__(machines.Server)
    server.recovered = set()
    server.merged = tmp_path
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/cloud-init-output.log").write_text("Cloud-init finished\n")
    auth, r7000 = "redis-auth.service", "redis-server@7000.service"
    answers = {
        "cloud-init status --long": "status: done",
        "cat /run/cloud-init/result.json": '{"errors": []}',
        "cat /run/cloud-init/status.json": '{"errors": []}',
        "systemctl list-units --failed --plain --no-legend": f"{auth} loaded failed failed Redis password",
        f"systemctl show -p ExecMainStatus -p ExecStartPre {auth}": "ExecMainStatus=219\nExecStartPre=",
        f"systemctl show -p Description --value {auth}": "Redis password from SSM Parameter Store (auth include)",
        f"systemctl show -p Description --value {r7000}": "Advanced key-value store (7000)",
        f"systemctl show -p RequiredBy --value {auth}": r7000,
    }
    server.out = lambda command, *args, **kwargs: answers.get(command, "")
    server.console = lambda tail=4000: (
        "[FAILED] Failed to start redis-auth…SM Parameter Store (auth include).\n"
        "[DEPEND] Dependency failed for redi…- Advanced key-value store (7000).\n")
    server._cgroup_flake_recovered = lambda unit, timeout=75: False
    server._cgroup_flake_rerun = lambda unit, timeout=60: False
    assert server.boot_problems(defer_cgroup=True) == []
    assert server.recovered == set()
    later = server.boot_problems()  # nothing started it again: the second check counts it and its lines
    assert any(p.startswith("failed units: ['redis-auth.service']") for p in later), later
    assert len([p for p in later if p.startswith("console: ")]) == 2, later
    # An ExecStartPre that met it (systemd: "Control process exited ... 219/CGROUP") is deferred the same way.
    answers[f"systemctl show -p ExecMainStatus -p ExecStartPre {auth}"] = (
        "ExecMainStatus=0\nExecStartPre={ path=/usr/bin/env ; argv[]=/usr/bin/env HOME=/root ; ignore_errors=no ; "
        "pid=12 ; code=exited ; status=219/CGROUP }")
    assert server.boot_problems(defer_cgroup=True) == []
    answers[f"systemctl show -p ExecMainStatus -p ExecStartPre {auth}"] = "ExecMainStatus=1\nExecStartPre="
    assert any(p.startswith("failed units:") for p in server.boot_problems(defer_cgroup=True))  # never deferred


def test_the_aws_stand_ins_calls_are_recorded_whole_when_jobs_call_at_once(tmp_path) -> None:
    """The boot test relays each recorded put-metric-data to moto by its next line, the payload; a backup's s3 cp
    recorded in between broke that once. Many calls at once: every call's line is followed by its own payload."""
    import subprocess

    from tests.boot import machines as m

    log = tmp_path / "aws.log"
    log.touch()
    script = m.AWS_STANDIN.replace("@SSM_DIR@", str(tmp_path / "ssm")).replace("@SSM_FAULTS@", str(tmp_path / "q")) \
        .replace("@SSM_UNREACHABLE@", str(tmp_path / "off")).replace("@AWS_LOG@", str(log)) \
        .replace("@AWS_CALLERS@", str(tmp_path / "callers")).replace("@ROLE_ID@", "AROATEST")
    assert not re.findall(r"@[A-Z_]+@", script), "a placeholder left in the stand-in"
    (tmp_path / "aws").write_text(script)
    (tmp_path / "aws").chmod(0o755)
    calls = []
    for i in range(24):
        payload = tmp_path / f"p{i}.json"
        payload.write_text(f'[{{"MetricName": "M{i}", "Value": {i}}}]' + " " * 4000)
        calls.append([str(tmp_path / "aws"), "cloudwatch", "put-metric-data", "--region", "eu-west-1",
                      "--namespace", f"N{i}", "--metric-data", f"file://{payload}"])
        calls.append([str(tmp_path / "aws"), "ssm", "get-parameter", "--region", "eu-west-1", "--name", f"/p{i}",
                      "--with-decryption", "--query", "Parameter.Value", "--output", "text"])
    running = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in calls]
    for proc in running:
        proc.wait(timeout=60)
    lines = log.read_text().splitlines()
    published = [i for i, line in enumerate(lines) if " cloudwatch put-metric-data " in line]
    assert len(published) == 24 and sum(" ssm get-parameter " in line for line in lines) == 24, lines
    for i in published:
        namespace = lines[i].split("--namespace ")[1].split()[0]
        assert lines[i + 1].startswith(f'[{{"MetricName": "M{namespace[1:]}"'), lines[i:i + 2]
