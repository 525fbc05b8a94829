"""The join run by every cluster server (a new one joins, a replaced one rejoins): cloud-config, script (fetched
from the stack's bucket), unit, inputs.

That the join keeps the password off every command line is proven by running it:
tests/render/test_scripts_argv.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from outsystems_redis.monitoring import JOIN_TOOL_KEY
from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.render import systemd
from outsystems_redis.render.cloud_config import render_cloud_config
from outsystems_redis.render.fetched import fetched_tools
from outsystems_redis.render.join import join_env
from outsystems_redis.topology import INITIAL_CLUSTER_SERVERS
from tests.render.stacks import PARAMETER, PASSWORD, REGION, stack
from tests.render.support import files_of, verify_units
from tests.tools import ROOT, tool


def user_data(servers: int, platform: str, index: int) -> str:
    settings, topology = stack(servers, platform)
    return render_cloud_config(settings, topology, index, memory_mib=8192, password_parameter=PARAMETER,
                               region=REGION)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("servers,index", [(4, 3), (6, 3), (6, 5)])
def test_a_new_server_carries_the_join(servers, index, platform):
    text = user_data(servers, platform, index)
    assert PASSWORD not in text
    files = files_of(text)
    assert f"{systemd.UNIT_DIR}/{systemd.JOIN_UNIT}" in files and systemd.BOOTSTRAP_PATH not in files
    assert f"{systemd.UNIT_DIR}/{systemd.BOOTSTRAP_UNIT}" not in files
    # The script itself comes from the stack's bucket: root fetches and verifies it, redis runs that copy.
    unit = files[f"{systemd.UNIT_DIR}/{systemd.JOIN_UNIT}"].splitlines()
    # Root's fetch runs in the unit's sandbox ('!': only User= and Group= lifted), on every platform.
    assert f"ExecStartPre=!{systemd.ROOT_HOME}FETCH_ONLY=1 {systemd.OBSERVE_PATH}" in unit
    assert f"ReadWritePaths=-{systemd.REDIS_RUN_STATE_DIR}" in unit
    assert f"ExecStart=/usr/bin/env NO_FETCH=1 {systemd.OBSERVE_PATH}" in unit and "User=redis" in unit
    assert f"Environment=TOOLS_KEY={JOIN_TOOL_KEY} STATE_DIR={systemd.REDIS_RUN_STATE_DIR} " \
           f"FIRST_FETCH_SECONDS={systemd.FIRST_FETCH_SECONDS}" in unit
    assert f"tools/{Path(JOIN_TOOL_KEY).name}" in {f"tools/{k}" for k in fetched_tools()}
    assert not any(path.startswith("/usr/local/sbin/redis-cluster-join") for path in files)
    # redis-provision enables and starts the join (without blocking) once the packages are in.
    assert systemd.JOIN_UNIT in files[systemd.PROVISION_ENV_PATH]
    env = files[systemd.JOIN_ENV_PATH]
    assert "requirepass" not in env and 'AUTH_FILE="/etc/redis/auth/auth.conf"' in env


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_one_join_shape_no_other_test_validates_passes_cloud_init_schema(platform, tmp_path):
    # Server 3 of 4 is validated with every stack shape in tests/render/test_cloud_config.py, and server 3
    # of 6 is the same text (test_the_first_servers_never_join_...). A server past the fourth differs only
    # in its join's SERVERS list: validated here, once per platform.
    text = user_data(6, platform, 5)
    assert text not in {user_data(4, platform, i) for i in range(4)}
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    result = subprocess.run([tool("cloud-init"), "schema", "--config-file", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_server_can_rejoin_and_no_servers_user_data_depends_on_the_final_count(platform):
    for servers in (3, 4, 6):
        for index in range(servers):
            files = files_of(user_data(servers, platform, index))
            # Every cluster server carries the join (a replaced one rejoins); only server 0 the bootstrap.
            assert f"{systemd.UNIT_DIR}/{systemd.JOIN_UNIT}" in files
            assert systemd.JOIN_UNIT in files[systemd.PROVISION_ENV_PATH]
            assert (systemd.BOOTSTRAP_PATH in files) == (index == 0)
    # The first servers and server 3 are the same whether the stack has 3, 4 or 9 servers: raising the
    # count leaves every existing server's user data alone.
    for index in range(INITIAL_CLUSTER_SERVERS):
        assert user_data(3, platform, index) == user_data(4, platform, index) == user_data(9, platform, index)
    assert user_data(4, platform, 3) == user_data(6, platform, 3) == user_data(9, platform, 3)
    assert user_data(5, platform, 4) == user_data(6, platform, 4)


def test_join_inputs_name_the_servers_up_to_this_one_in_index_order():
    _, topology = stack(6, "ubuntu-20.04-redis-5.0")
    env = join_env(topology, 4, auth_file="/etc/redis/auth/auth.conf")
    assert env["SERVERS"].split() == [s.private_ip for s in topology.servers[:5]]
    assert env["SERVER_INDEX"] == "4"
    assert (env["MASTER_PORT"], env["REPLICA_PORT"]) == ("7000", "7001")
    # One of the first servers names those first servers (fixed), and where it sits among them.
    for index in range(INITIAL_CLUSTER_SERVERS):
        env = join_env(topology, index, auth_file="/etc/redis/auth/auth.conf")
        assert env["SERVERS"].split() == [s.private_ip for s in topology.servers[:INITIAL_CLUSTER_SERVERS]]
        assert env["SERVER_INDEX"] == str(index)
    with pytest.raises(ValueError):
        join_env(topology, 6, auth_file="/etc/redis/auth/auth.conf")
    _, single = stack(1, "ubuntu-20.04-redis-5.0")
    with pytest.raises(ValueError):
        join_env(single, 0, auth_file="/etc/redis/auth/auth.conf")


def test_join_script_passes_shellcheck(tmp_path):
    script = fetched_tools()[Path(JOIN_TOOL_KEY).name]
    path = tmp_path / "redis-cluster-join"
    path.write_text(script)
    result = subprocess.run([tool("shellcheck"), "--severity=style", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout


def test_join_unit_passes_systemd_analyzeverify_units(tmp_path):
    files = files_of(user_data(4, "ubuntu-20.04-redis-5.0", 3))
    copy = tmp_path / "redis-run-fetched"
    copy.write_text(files[systemd.OBSERVE_PATH])
    copy.chmod(0o755)
    unit = files[f"{systemd.UNIT_DIR}/{systemd.JOIN_UNIT}"].replace(systemd.OBSERVE_PATH, str(copy))
    assert "SyslogIdentifier=redis-cluster-join" in unit and "User=redis" in unit
    (tmp_path / systemd.JOIN_UNIT).write_text(unit)
    assert verify_units(tmp_path, str(tmp_path / systemd.JOIN_UNIT)) == "rc=0"


def test_the_joins_start_outlasts_roots_first_fetch() -> None:
    """root's fetch (ExecStartPre, the launcher) keeps trying for FIRST_FETCH_SECONDS, and its last try may
    begin just before then and take the launcher's no-copy bounds (each with a 2 s kill): the unit's start
    timeout (systemd's default is 90 s) must outlast that, or a slow first boot's join is cut off."""
    launcher = (ROOT / "outsystems_redis/server_files/metrics-observe.sh").read_text()
    bounds = re.search(r"else bounds=\(([\d ]+)\)", launcher)
    assert bounds, "metrics-observe.sh: no no-copy bounds"
    worst = systemd.FIRST_FETCH_SECONDS + sum(int(b) + 2 for b in bounds.group(1).split())
    unit = systemd.render_join_unit((7000, 7001))
    timeout = re.search(r"^TimeoutStartSec=(\d+)$", unit, re.M)
    assert timeout and int(timeout.group(1)) > worst, (timeout and timeout.group(0), worst)
