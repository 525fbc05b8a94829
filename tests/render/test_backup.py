"""redis-backup's unit, timer and environment, through systemd-analyze and the rendered user data."""

from __future__ import annotations

import subprocess
from datetime import datetime

import pytest

from outsystems_redis.monitoring import BACKUP_PREFIX, BACKUP_TOOL_KEY, backup_bucket_parameter
from outsystems_redis.render import systemd
from outsystems_redis.render.backup import BACKUP_ENV_PATH, BACKUP_TIMER, BACKUP_UNIT, backup_script
from outsystems_redis.render.cloud_config import render_cloud_config
from outsystems_redis.render.metrics import OBSERVE_PATH
from tests.render.stacks import PARAMETER, PASSWORD, REGION, STACKS, stack
from tests.render.support import files_of, verify_units
from tests.tools import tool


def server_files(servers: int, platform: str, server: int) -> dict[str, str]:
    settings, topology = stack(servers, platform)
    return files_of(render_cloud_config(settings, topology, server, memory_mib=8192, password_parameter=PARAMETER,
                                        region=REGION))


@pytest.mark.parametrize("servers,platform", STACKS)
def test_every_server_runs_the_backup_with_names_only(servers, platform):
    settings, topology = stack(servers, platform)
    for server in range(servers):
        files = server_files(servers, platform, server)
        env = dict(line.split("=", 1) for line in files[BACKUP_ENV_PATH].splitlines())
        assert env["SERVER_NAME"] == f'"{topology.servers[server].name}"'
        assert env["SERVER_IP"] == f'"{topology.servers[server].private_ip}"'
        assert env["PORTS"] == ('"6379"' if servers == 1 else '"7000 7001"')  # roles are read at run time
        assert not [k for k in env if k.startswith("BUCKET")]  # the bucket: auth.env's (below)
        assert env["KEY_PREFIX"] == f'"{BACKUP_PREFIX}"'
        assert env["TOOLS_KEY"] == f'"{BACKUP_TOOL_KEY}"'  # the launcher fetches the script from the bucket
        assert PASSWORD not in files[BACKUP_ENV_PATH] + backup_script()
        provision = dict(line.split("=", 1) for line in files[systemd.PROVISION_ENV_PATH].splitlines())
        assert BACKUP_TIMER in provision["UNITS"].strip('"').split()


@pytest.mark.parametrize("servers,platform", STACKS)
def test_the_servers_take_the_bucket_by_its_name_in_the_user_data(servers, platform):
    """The program gives the stack's bucket by name: auth.env, which every unit that fetches a program or uploads
    a snapshot reads, names it, and no file names the bucket's parameter (a parameter can be pointed at another
    bucket by whoever may write it). Without a name (the loopback rehearsals) the parameter is named instead."""
    settings, topology = stack(servers, platform)
    for server in range(servers):
        files = files_of(render_cloud_config(settings, topology, server, memory_mib=8192, password_parameter=PARAMETER,
                                             region=REGION, bucket="osr-example-bucket"))
        assert 'BUCKET="osr-example-bucket"' in files[systemd.AUTH_ENV_PATH].splitlines()
        # (The launcher's code can still read a parameter, for servers whose user data names one.)
        assert not [path for path, text in files.items() if backup_bucket_parameter(settings.stack) in text
                    or path.endswith(".env") and "BUCKET_PARAMETER" in text]
        unnamed = server_files(servers, platform, server)[systemd.AUTH_ENV_PATH].splitlines()
        assert f'BUCKET_PARAMETER="{backup_bucket_parameter(settings.stack)}"' in unnamed
        assert not [line for line in unnamed if line.startswith("BUCKET=")]


def test_backup_units_pass_systemd_analyzeverify_units(tmp_path):
    files = server_files(3, "ubuntu-20.04-redis-5.0", 1)
    copy = tmp_path / "redis-run-fetched"
    copy.write_text(files[OBSERVE_PATH])
    copy.chmod(0o755)
    for unit in (BACKUP_UNIT, BACKUP_TIMER):
        text = files[f"{systemd.UNIT_DIR}/{unit}"].replace(f"ExecStart={OBSERVE_PATH}", f"ExecStart={copy}")
        (tmp_path / unit).write_text(text)
    assert verify_units(tmp_path, str(tmp_path / BACKUP_UNIT), str(tmp_path / BACKUP_TIMER)) == "rc=0"


def test_the_timer_fires_every_hour_at_the_same_second_on_every_server():
    timers = {server_files(3, "ubuntu-24.04-redis-7.0", s)[f"{systemd.UNIT_DIR}/{BACKUP_TIMER}"] for s in range(3)}
    assert len(timers) == 1  # the same schedule everywhere: one hour's runs form one snapshot set
    (calendar,) = [line.split("=", 1)[1] for line in timers.pop().splitlines() if line.startswith("OnCalendar=")]
    out = subprocess.run([tool("systemd-analyze"), "calendar", "--iterations=3", calendar], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    elapses = [datetime.fromisoformat(" ".join(line.split(":", 1)[1].split()[1:3]))
               for line in out.stdout.splitlines() if "Next elapse" in line or line.strip().startswith("Iter.")]
    assert len(elapses) == 3
    assert all((b - a).total_seconds() == 3600 for a, b in zip(elapses, elapses[1:], strict=False))
    assert all(e.minute == 0 and e.second == 15 for e in elapses)
