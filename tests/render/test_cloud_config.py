"""Every rendered cloud-config, script and unit, checked by the tool that consumes it."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from outsystems_redis.judge import AWS_CLI_PATH, FETCH_TLS
from outsystems_redis.platforms import AWS_CLI_PACKAGES, AWS_CLI_WHEELS
from outsystems_redis.render import systemd
from outsystems_redis.render.cloud_config import encode_user_data, render_cloud_config, user_data_costs
from outsystems_redis.render.fetched import fetched_tools
from outsystems_redis.render.step_down import STEP_DOWN_PATH
from tests.render.stacks import PARAMETER, PASSWORD, REGION, STACKS, stack
from tests.render.support import SCHEMA_CASES, files_of, rendered, shipped_scripts, verify_units
from tests.tools import tool


@pytest.mark.parametrize("servers,platform,tls", SCHEMA_CASES)
def test_cloud_config_passes_cloud_init_schema(servers, platform, tls, tmp_path):
    cloud_init = tool("cloud-init")
    for i, text in enumerate(rendered(servers, platform, tls)):
        path = tmp_path / f"user-data-{i}.yaml"
        path.write_text(text)
        result = subprocess.run([cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Valid cloud-config" in result.stdout


def test_schema_check_can_fail(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\npackages: 42\nwrite_files: [{content: x}]\n")
    assert subprocess.run([tool("cloud-init"), "schema", "--config-file", str(path)], capture_output=True,
                          timeout=120).returncode


# The pins the requirements name, written out here rather than read from the code under test.
PINS = {"ubuntu-20.04-redis-5.0": "5:5.0.7*", "ubuntu-24.04-redis-7.0": "5:7.0.15*"}


@pytest.mark.parametrize("servers,platform", STACKS)
def test_user_data_content(servers, platform):
    texts = rendered(servers, platform)
    pin = PINS[platform]
    for index, text in enumerate(texts):
        assert PASSWORD not in text
        config = yaml.safe_load(text)
        assert ["redis-server", pin] in config["packages"]
        assert ["redis-tools", pin] in config["packages"]
        assert ["systemctl", "mask", "redis-server.service"] in config["bootcmd"]
        # cloud-init hands over to redis-provision, which installs whatever the package step
        # could not, holds the pin and enables the units, at this boot and every later one.
        assert config["runcmd"][-1] == ["systemctl", "enable", "--now", "--no-block", systemd.PROVISION_UNIT]
        files = files_of(text)
        env = dict(line.split("=", 1) for line in files[systemd.PROVISION_ENV_PATH].splitlines())
        # iptables fences the metadata service off from the redis user (redis-auth, systemd.py).
        # The AWS CLI: apt's on 20.04; on 24.04 its wheels, checked against their digests, and what else they
        # need from Ubuntu (tests/integration/test_aws_cli_wheel.py runs it).
        aws_cli = "awscli" if "20.04" in platform else " ".join(AWS_CLI_PACKAGES)
        assert env["PACKAGES"] == f'"redis-server={pin} redis-tools={pin} iptables {aws_cli}"'
        assert "iptables" in config["packages"] and "snap" not in config
        assert env["AWS_CLI_WHEELS"] == ('""' if "20.04" in platform else f'"{" ".join(AWS_CLI_WHEELS)}"')
        assert env["HOLD"] == '"redis-server redis-tools"'
        ports = (6379,) if servers == 1 else (7000, 7001)
        # Server 0 forms the cluster; every cluster server (re)joins it by itself (a new or a replaced one).
        cluster_step = ([systemd.BOOTSTRAP_UNIT] if servers > 1 and index == 0 else []) + (
            [systemd.JOIN_UNIT] if servers > 1 else [])
        # In render/programs.py's order (one `systemctl enable --now --no-block`: systemd orders the starts).
        assert env["UNITS"].strip('"').split() == [systemd.AUTH_UNIT, *(f"redis-server@{p}.service" for p in ports),
                                                   *cluster_step,
                                                   *(["redis-role-restore.timer"] if servers > 1 else []),
                                                   # Only Redis 5.0 needs room made below maxmemory.
                                                   *(["redis-make-room.service"] if "5.0" in platform else []),
                                                   "redis-password-sync.timer", "redis-backup.timer",
                                                   "redis-metrics.timer", "redis-logs.timer"]
        assert "NTP=169.254.169.123" in files[systemd.TIME_SYNC_PATH]
        assert "vm.overcommit_memory = 1" in files[systemd.SYSCTL_PATH]
        assert "net.core.somaxconn = 65535" in files[systemd.SYSCTL_PATH]
        assert "transparent_hugepage/enabled - - - - never" in files[systemd.THP_TMPFILES_PATH]
        assert PARAMETER in files["/etc/redis/auth.env"]
        confs = [p for p in files if re.fullmatch(r"/etc/redis/redis-\d+\.conf", p)]
        assert len(confs) == (1 if servers == 1 else 2)
        for conf in confs:
            assert "requirepass" not in files[conf] and "include /etc/redis/auth/auth.conf" in files[conf]
    with_bootstrap = [i for i, t in enumerate(texts) if systemd.BOOTSTRAP_PATH in files_of(t)]
    assert with_bootstrap == ([] if servers == 1 else [0])


def test_every_shipped_script_passes_shellcheck(tmp_path):
    shellcheck = tool("shellcheck")
    scripts = shipped_scripts()
    assert set(scripts) == {systemd.BOOTSTRAP_PATH, systemd.TLS_CLI_PATH, systemd.PROVISION_PATH,
                            "/usr/local/sbin/redis-role-restore",
                            "/usr/local/sbin/redis-step-down", "/usr/local/sbin/redis-run-fetched"}
    # And the shell programs the launcher fetches from the stack's bucket.
    fetched = {f"tools/{key}": text for key, text in fetched_tools().items() if key.endswith(".sh")}
    assert set(fetched) == {"tools/redis-backup.sh", "tools/redis-password-sync.sh", "tools/redis-fetch-password.sh",
                            "tools/redis-fetch-tls.sh", "tools/redis-cluster-join.sh"}
    for path, content in {**scripts, **fetched}.items():
        f = tmp_path / Path(path).name
        f.write_text(content)
        result = subprocess.run([shellcheck, "--severity=style", str(f)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout


# Each platform's redis-server@.service template: 24.04's is the one Debian 12's redis-server 7.0.15 installs
# (the same packaging), 20.04's a stand-in for 5:5.0.7-2's (Type=forking; see the file's header).
TEMPLATES = {
    "ubuntu-24.04-redis-7.0": Path("/lib/systemd/system/redis-server@.service"),
    "ubuntu-20.04-redis-5.0": Path(__file__).with_name("templates") / "redis-server@.service.ubuntu-20.04",
}


def _effective(texts: list[str], key: str) -> list[str]:
    """The values of `key` in [Service] after the template and its drop-ins, in that order, are merged: a list
    setting appends, and an empty assignment clears what came before (systemd.unit(5))."""
    values: list[str] = []
    for text in texts:
        section = ""
        for line in text.splitlines():
            if line.startswith("["):
                section = line.strip()
            elif section == "[Service]" and line.startswith(f"{key}="):
                value = line.split("=", 1)[1]
                values = [] if not value else [*values, value]
    return values


@pytest.mark.parametrize("platform", sorted(TEMPLATES))
@pytest.mark.parametrize("servers", [1, 3])
def test_units_pass_systemd_analyzeverify_units(platform, servers, tmp_path):
    """Every unit and the template drop-in, against the platform's own template; any complaint fails (verify
    exits 0 on unknown keys). Then what the merged redis-server@ unit runs: Redis in the foreground under
    Type=notify on both templates, and on a cluster server the step-down alone at a stop."""
    template = TEMPLATES[platform]
    if not template.exists():
        tool("redis-server@.service template (Debian redis-server package)")
    (tmp_path / "redis-server@.service").write_text(template.read_text())  # first on the unit path
    settings, topology = stack(servers, platform)
    files = files_of(
        render_cloud_config(settings, topology, 0, memory_mib=8192, password_parameter=PARAMETER, region=REGION)
    )

    def local(text: str) -> str:
        # verify checks that each ExecStart/ExecStop program exists: point them at copies of the rendered ones.
        for path, content in files.items():
            if f"={path}" in text or f"=+{path}" in text:
                copy = tmp_path / Path(path).name
                copy.write_text(content)
                copy.chmod(0o755)
                text = text.replace(path, str(copy))
        return text

    drop_in = tmp_path / "redis-server@.service.d" / "outsystems.conf"
    drop_in.parent.mkdir()
    drop_in.write_text(local(files[systemd.TEMPLATE_DROP_IN]))
    units = []
    for path, text in files.items():
        if path.startswith(f"{systemd.UNIT_DIR}/") and path.endswith((".service", ".timer")):
            (tmp_path / Path(path).name).write_text(local(text))
            units.append(str(tmp_path / Path(path).name))
    assert len(units) >= 8, units
    ports = [p.port for p in topology.servers[0].processes]
    assert verify_units(tmp_path, *units, *(f"redis-server@{port}.service" for port in ports)) == "rc=0"

    merged = [template.read_text(), files[systemd.TEMPLATE_DROP_IN]]
    assert _effective(merged, "Type")[-1] == "notify"  # a single setting: the last one counts
    assert _effective(merged, "ExecStart") == [
        f"/usr/bin/redis-server {systemd.EC2_PATHS.conf_dir}/redis-%i.conf --supervised systemd --daemonize no"]
    stops = _effective(merged, "ExecStop")
    if topology.cluster:
        assert stops == [f"+{systemd.ROOT_HOME}{STEP_DOWN_PATH} %i"]
    else:
        # A single server keeps the template's own stop (20.04: a SIGTERM; 24.04 has none, and systemd sends one).
        assert all("redis-step-down" not in stop for stop in stops) and len(stops) <= 1, stops


def test_verify_catches_a_bad_drop_in(tmp_path):
    drop_in = tmp_path / "redis-server@.service.d" / "outsystems.conf"
    drop_in.parent.mkdir()
    drop_in.write_text("[Service]\nLimitNOFILES=65535\n")
    assert verify_units(tmp_path, "redis-server@7000.service") != "rc=0"


def test_a_clean_stop_steps_down_on_cluster_servers_only():
    """The cluster drop-in replaces the template's ExecStop with the step-down; a single server keeps it."""
    settings, topology = stack(3, "ubuntu-20.04-redis-5.0")
    cluster = files_of(render_cloud_config(settings, topology, 1, memory_mib=8192, password_parameter=PARAMETER,
                                           region=REGION))
    stops = [line for line in cluster[systemd.TEMPLATE_DROP_IN].splitlines() if line.startswith("ExecStop")]
    # The reset first: an ExecStop of the template (none in either platform's today) would run before the
    # step-down, and a stop must hand the master over before anything else.
    assert stops == ["ExecStop=", f"ExecStop=+{systemd.ROOT_HOME}{STEP_DOWN_PATH} %i"]
    env = dict(line.split("=", 1) for line in cluster["/etc/redis/step-down.env"].splitlines())
    assert env["SERVER_IP"] == f'"{topology.servers[1].private_ip}"' and PASSWORD not in str(cluster)
    # Its bound fits inside the unit's stop timeout (two tries, then the RDB save needs time too).
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", cluster[systemd.TEMPLATE_DROP_IN], re.M).group(1))
    assert 2 * int(env["STEP_DOWN_WAIT_SECONDS"].strip('"')) + 30 < timeout
    settings, topology = stack(1, "ubuntu-20.04-redis-5.0")
    single = files_of(render_cloud_config(settings, topology, 0, memory_mib=8192, password_parameter=PARAMETER,
                                          region=REGION))
    assert "ExecStop" not in single[systemd.TEMPLATE_DROP_IN] and STEP_DOWN_PATH not in single


@pytest.mark.parametrize("servers,platform,tls", SCHEMA_CASES)
def test_every_calendar_timer_fires_within_a_second_of_its_time(servers, platform, tls):
    """systemd's default AccuracySec is a minute: a timer at :30 could fire as late as :30 a minute on,
    and what waits on it (a role restore, a password sync) would wait that long too."""
    timers = {path: text for user_data in rendered(servers, platform, tls)
              for path, text in files_of(user_data).items() if path.endswith(".timer") and "OnCalendar=" in text}
    assert timers or servers == 1, "no calendar timer rendered"
    loose = [path for path, text in timers.items() if not re.search(r"^AccuracySec=1s$", text, re.M)]
    assert not loose, f"timers without AccuracySec=1s: {loose}"


def test_libyaml_and_pyyaml_write_the_same_user_data(monkeypatch):
    """The renderer uses libyaml's emitter when PyYAML has it; a machine without it must get the same bytes."""
    import yaml

    from outsystems_redis.render import cloud_config

    assert yaml.__with_libyaml__, "PyYAML without libyaml: the renderer would fall back to the slow emitter"
    fast = {case: rendered(*case) for case in SCHEMA_CASES}
    monkeypatch.setattr(cloud_config, "_Dumper", cloud_config._literal_dumper(yaml.SafeDumper))
    for case in SCHEMA_CASES:
        assert rendered(*case) == fast[case], f"{case}: the emitters differ"


def test_the_user_data_report_charges_each_file_what_it_adds() -> None:
    """user_data_costs (tests/unit/user_data_report.py prints it): every file, each a positive share, the
    dearest a script, and together no more than the whole."""
    text = rendered(3, "ubuntu-20.04-redis-5.0")[0]
    costs = user_data_costs(text)
    assert set(costs) == set(files_of(text))
    # deflate is not monotonic: without a file that is mostly text shared with others (a unit), its
    # choices can come out a few bytes longer, so such a file may show a small negative share. A script
    # always costs.
    assert all(cost > 0 for path, cost in costs.items() if path.startswith("/usr/local/sbin/")), costs
    assert all(cost > -32 for cost in costs.values()), costs
    assert sum(costs.values()) <= len(base64.b64decode(encode_user_data(text)))
    # The dearest file is a script (which one depends on what they share: the lib.sh parts several carry
    # compress against each other, so each is charged less for them).
    assert max(costs, key=costs.get).startswith("/usr/local/sbin/redis-"), costs


def test_the_units_that_only_talk_to_redis_run_sandboxed() -> None:
    """Cluster bootstrap and join, role restore and make-room: the redis user, and systemd's sandbox."""
    sandboxed = {systemd.BOOTSTRAP_UNIT, systemd.JOIN_UNIT, "redis-role-restore.service", "redis-make-room.service"}
    seen = set()
    for servers, platform, tls in SCHEMA_CASES:
        for text in rendered(servers, platform, tls):
            for path, content in files_of(text).items():
                name = Path(path).name
                if name in sandboxed:
                    seen.add(name)
                    assert "User=redis\n" in content, path
                    assert all(line in content.splitlines() for line in systemd.SANDBOX.splitlines()), \
                        f"{path} ({servers} servers, {platform}): not sandboxed"
    assert seen == sandboxed


def test_no_root_command_runs_with_the_redis_users_home() -> None:
    """A '+' or '!' command in a unit that runs as redis (User=redis, or the drop-in of Debian's
    redis-server@ template, which names it) runs as root with the redis user's HOME unless it sets its own:
    the AWS CLI would then run a credential_process from /var/lib/redis/.aws/config, and Python import a .pth
    from its user site. Planted (the join's fetch without HOME=/root): fails."""
    checked: dict[str, set[str]] = {}
    for servers, platform, tls in SCHEMA_CASES:
        for text in rendered(servers, platform, tls):
            for path, content in files_of(text).items():
                if "User=redis\n" not in content and path != systemd.TEMPLATE_DROP_IN:
                    continue
                for line in content.splitlines():
                    # Exec prefixes combine (systemd.exec(5): "-", "@", ":", "+", "!", "|"), in any order.
                    command = re.match(r"Exec\w+=([-@:|+!]*)(.*)", line)
                    if command and ("+" in command.group(1) or "!" in command.group(1)):
                        checked.setdefault(platform, set()).add(Path(path).name)
                        assert command.group(2).startswith(systemd.ROOT_HOME) or \
                            command.group(2).startswith("/usr/bin/install "), f"{path} ({platform}): {line}"
    # On each platform: the join's fetch, and a cluster process's step-down.
    assert {platform: names >= {systemd.JOIN_UNIT, Path(systemd.TEMPLATE_DROP_IN).name}
            for platform, names in checked.items()} == {platform: True for _, platform, _ in SCHEMA_CASES}, checked


# The boot tests run 20.04's user data under Debian 12's systemd 252; Ubuntu 20.04 has 245, which ignores (with
# a warning) a directive it does not know. Each directive the 20.04 units use, with the release that brought it
# (systemd's NEWS); a new one must be checked against 245 before it joins this list. (The `+` prefix of an
# Exec line, full privileges: 231.)
SYSTEMD_245_DIRECTIVES = {
    "AccuracySec": 209, "After": 1, "Description": 1, "Environment": 1, "EnvironmentFile": 1, "ExecStart": 1,
    "ExecStartPre": 1, "ExecStop": 1, "Group": 1, "IOSchedulingClass": 1, "IOSchedulingPriority": 1,
    "LimitNOFILE": 1, "NTP": 211,
    "Nice": 1, "NoNewPrivileges": 187, "OnCalendar": 197, "Persistent": 212, "PrivateDevices": 209,
    "PrivateTmp": 1, "ProtectHome": 214, "ProtectSystem": 214, "RemainAfterExit": 1, "Requires": 1, "Restart": 1,
    "RestartSec": 1, "RuntimeMaxSec": 229, "StateDirectory": 235, "StateDirectoryMode": 235,
    "SyslogIdentifier": 1, "TimeoutStartSec": 188, "TimeoutStopSec": 188, "Type": 1, "Unit": 1, "User": 1,
    "WantedBy": 1, "Wants": 1, "ReadWritePaths": 231, "ProtectKernelTunables": 232, "ProtectKernelModules": 232,
    "ProtectControlGroups": 232, "RestrictSUIDSGID": 242, "RestrictNamespaces": 233, "LockPersonality": 235,
    "SystemCallArchitectures": 209, "ConfigurationDirectory": 239,
}
# The values used of directives whose later values came after 245 (ProtectHome=tmpfs 242 is fine, but
# PrivateTmp=disconnected is 255, ProtectSystem= and Type= gained values over time): each checked against 245.
SYSTEMD_245_VALUES = {"Type": {"oneshot", "exec", "notify", "simple", "forking"},  # exec: 240
                      "ProtectSystem": {"strict", "full", "true", "yes"}, "ProtectHome": {"yes", "read-only", "tmpfs"},
                      "PrivateTmp": {"yes"}, "StateDirectoryMode": {"0700", "0750"}}


def test_the_20_04_units_use_only_what_systemd_245_knows():
    """Planted (ProtectProc=invisible, systemd 247, in the sandbox of the redis units): fails."""
    used: dict[str, set[str]] = {}
    for servers in (1, 3):
        for text in rendered(servers, "ubuntu-20.04-redis-5.0"):
            for path, body in files_of(text).items():
                if "/systemd/" not in path:
                    continue
                for line in body.splitlines():
                    found = re.match(r"([A-Z][A-Za-z]+)=(.*)", line)
                    if found:
                        used.setdefault(found.group(1), set()).add(found.group(2))
    unknown = sorted(set(used) - set(SYSTEMD_245_DIRECTIVES))
    assert not unknown, f"check these against systemd 245 (Ubuntu 20.04), then list them: {unknown}"
    assert all(v <= 245 for v in SYSTEMD_245_DIRECTIVES.values())
    late = {k: sorted(used[k] - allowed) for k, allowed in SYSTEMD_245_VALUES.items() if used.get(k, set()) - allowed}
    assert not late, f"values to check against systemd 245, then list: {late}"


def test_the_tls_fetch_the_operator_runs_finds_the_aws_cli_where_the_units_do() -> None:
    """judge.FETCH_TLS (the health check's fix, docs/upgrades-and-migration.md) runs the fetch outside any unit:
    its PATH is the units' own (the 24.04 wheel's /usr/local/bin/aws, apt's /usr/bin/aws), then /snap/bin for
    24.04 servers created before the wheel."""
    assert AWS_CLI_PATH == f"{systemd.SEARCH_PATH}:/snap/bin"
    assert FETCH_TLS.count(f"--setenv=PATH={AWS_CLI_PATH} ") == 2
    guide = (Path(__file__).resolve().parents[2] / "docs" / "upgrades-and-migration.md").read_text()
    assert guide.count(f"--setenv=PATH={AWS_CLI_PATH} ") == 2
