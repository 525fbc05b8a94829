"""Each server's #cloud-config: packages, OS tuning, redis.conf files, units, bootstrap.

Holds no secret: the password (and, with TLS, the certificates and key) is
read from SSM at boot by redis-auth.service.
The program sets ignore_changes on user_data, so this text matters at the
first boot only; everything that must happen on every boot (THP, sysctl, the
password, the idempotent bootstrap) is a systemd unit or rule it installs.
"""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import yaml

from components import monitoring
from components.platforms import PLATFORMS, Platform
from components.render.backup import (
    BACKUP_ENV_PATH,
    BACKUP_TIMER,
    BACKUP_UNIT,
    backup_env,
    render_backup_timer,
    render_backup_unit,
)
from components.render.bootstrap import BOOTSTRAP_SERVER, bootstrap_env, bootstrap_script, render_env_file
from components.render.join import join_env, runs_join
from components.render.make_room import (
    MAKE_ROOM_ENV_PATH,
    MAKE_ROOM_PATH,
    MAKE_ROOM_UNIT,
    make_room_env,
    make_room_script,
    needs_make_room,
    render_make_room_unit,
)
from components.render.metrics import (
    LOGS_TIMER,
    LOGS_UNIT,
    METRICS_TIMER,
    METRICS_UNIT,
    OBSERVE_ENV_PATH,
    OBSERVE_PATH,
    observe_env,
    observe_launcher,
    render_logs_timer,
    render_logs_unit,
    render_metrics_timer,
    render_metrics_unit,
)
from components.render.password import (
    PASSWORD_SYNC_ENV_PATH,
    PASSWORD_SYNC_TIMER,
    PASSWORD_SYNC_UNIT,
    password_sync_env,
    password_sync_fetch_env,
    render_password_sync_timer,
    render_password_sync_unit,
    secret_names_env,
)
from components.render.redis_conf import EC2_PATHS, render_redis_conf
from components.render.roles import (
    ROLE_RESTORE_ENV_PATH,
    ROLE_RESTORE_PATH,
    ROLE_RESTORE_TIMER,
    ROLE_RESTORE_UNIT,
    render_role_restore_timer,
    render_role_restore_unit,
    role_restore_env,
    role_restore_script,
)
from components.render.shipped import shipped_script
from components.render.step_down import STEP_DOWN_ENV_PATH, STEP_DOWN_PATH, step_down_env, step_down_script
from components.render.systemd import (
    AUTH_ENV_PATH,
    AUTH_UNIT,
    BOOTSTRAP_ENV_PATH,
    BOOTSTRAP_PATH,
    BOOTSTRAP_UNIT,
    JOIN_ENV_PATH,
    JOIN_UNIT,
    PROVISION_ENV_PATH,
    PROVISION_PATH,
    PROVISION_UNIT,
    SYSCTL_PATH,
    TEMPLATE_DROP_IN,
    THP_TMPFILES_PATH,
    TIME_SYNC_PATH,
    TLS_CLI_PATH,
    UNIT_DIR,
    aws_sandbox,
    redis_unit,
    render_auth_unit,
    render_bootstrap_unit,
    render_join_unit,
    render_provision_unit,
    render_sysctl,
    render_template_drop_in,
    render_thp_tmpfiles,
    render_time_sync,
)
from components.render.tls import render_tls_cli, tls_env
from components.settings import Settings
from components.signing import TOOLS_PUBLIC_KEY_PATH
from components.topology import INITIAL_CLUSTER_SERVERS, Topology

PROVISION_SCRIPT = Path(__file__).with_name("provision.sh")
# EC2 refuses user data above this many bytes, counted after base64 decoding.
EC2_USER_DATA_LIMIT = 16_384


def provision_script() -> str:
    return shipped_script(PROVISION_SCRIPT)


def encode_user_data(cloud_config: str) -> str:
    """The cloud-config gzipped and base64-encoded, for the instance's user_data_base64.

    cloud-init decompresses gzip user data itself. Compressed, the largest server (server 1
    on Redis 5.0) is close to EC2's limit: tests/unit/test_deploy_limits.py checks every shape. mtime=0 keeps the bytes
    the same for the same text, so a preview shows no spurious change.
    """
    return base64.b64encode(gzip.compress(cloud_config.encode(), compresslevel=9, mtime=0)).decode("ascii")


def decode_user_data(encoded: str) -> str:
    """The cloud-config back from encode_user_data's form (tests, and operators reading an instance's user data)."""
    return gzip.decompress(base64.b64decode(encoded)).decode()


def user_data_costs(cloud_config: str) -> dict[str, int]:
    """What each write_files entry of a rendered cloud-config costs in EC2's count: the gzipped size of
    the whole, less that of the whole without it (gzip shares text between files, so a file costs less
    than its own compressed size). Where the bytes go when the budget is tight."""
    config = yaml.safe_load(cloud_config)

    def size(files: list[dict]) -> int:
        text = _as_cloud_config({**config, "write_files": [{**f, "content": _Literal(f["content"])} for f in files]})
        return len(gzip.compress(text.encode(), compresslevel=9, mtime=0))

    files = config["write_files"]
    whole = size(files)
    return {f["path"]: whole - size(files[:i] + files[i + 1:]) for i, f in enumerate(files)}


def runs_bootstrap(topology: Topology, server: int) -> bool:
    """Exactly one server of a cluster forms it: server 0."""
    return topology.cluster and server == BOOTSTRAP_SERVER


def _file(path: str, content: str, permissions: str = "0644") -> dict:
    # Every file is root's and world-readable: none holds a secret (the password and the TLS key
    # are written at boot by redis-auth, root:redis 0640). Nothing waits for the redis group either:
    # cloud-init's deferred write_files fail for good when the package step did (no way out yet),
    # and redis-provision could not repair that.
    return {"path": path, "content": content, "owner": "root:root", "permissions": permissions}


def server_files(
    settings: Settings, topology: Topology, server: int, *, memory_mib: int, password_parameter: str, region: str,
    tools_public_key: str | None = None,
) -> list[dict]:
    """Every file server `server` needs, as cloud-init write_files entries. `tools_public_key`: the PEM the
    launcher verifies fetched programs with (components/signing.py); without it they run unverified."""
    platform = PLATFORMS[settings.platform]
    srv = topology.servers[server]
    tls = settings.tls
    # With TLS, the bootstrap and join run the same scripts through a redis-cli that speaks TLS.
    redis_cli = TLS_CLI_PATH if tls else "redis-cli"
    # Names, not secrets: which parameters to read and where to write them.
    auth_env = (f'PASSWORD_PARAMETER="{password_parameter}"\nAWS_REGION="{region}"\n'
                f'AUTH_FILE="{EC2_PATHS.auth_file}"\n')
    auth_env += render_env_file({**secret_names_env(settings.stack, platform),
                                 "BUCKET_PARAMETER": monitoring.backup_bucket_parameter(settings.stack)})
    if tls:
        auth_env += render_env_file(tls_env(settings.stack, server))
    files = [
        _file(SYSCTL_PATH, render_sysctl()),
        _file(TIME_SYNC_PATH, render_time_sync()),
        _file(THP_TMPFILES_PATH, render_thp_tmpfiles()),
        _file(TEMPLATE_DROP_IN, render_template_drop_in(step_down=topology.cluster)),
        # redis-auth runs the launcher below: its programs come from the stack's bucket (fetched.py).
        _file(f"{UNIT_DIR}/{AUTH_UNIT}", render_auth_unit(tls, aws_sandbox(platform, writes_auth=True))),
        _file(AUTH_ENV_PATH, auth_env),
    ]
    if tls:
        files.append(_file(TLS_CLI_PATH, render_tls_cli(EC2_PATHS.tls_ca), "0755"))
    for p in srv.processes:
        conf = render_redis_conf(p, settings, memory_mib=memory_mib)
        files.append(_file(EC2_PATHS.conf(p.port), conf))
    if runs_bootstrap(topology, server):
        env = bootstrap_env(topology, auth_file=EC2_PATHS.auth_file, redis_cli=redis_cli)
        files += [
            _file(BOOTSTRAP_PATH, bootstrap_script(), "0755"),
            _file(BOOTSTRAP_ENV_PATH, render_env_file(env)),
            _file(f"{UNIT_DIR}/{BOOTSTRAP_UNIT}", render_bootstrap_unit(tuple(p.port for p in srv.processes))),
        ]
    if runs_join(topology, server):
        # Every cluster server: a new one joins, one that boots empty at its known address rejoins.
        # Names only servers 0..server (or the first, fixed ones): the same text whatever the final count.
        files += [
            _file(JOIN_ENV_PATH,
                  render_env_file(join_env(topology, server, auth_file=EC2_PATHS.auth_file, redis_cli=redis_cli))),
            _file(f"{UNIT_DIR}/{JOIN_UNIT}", render_join_unit(tuple(p.port for p in srv.processes), platform)),
        ]
    ports = tuple(p.port for p in srv.processes)
    if topology.cluster:
        # After a failover, this server takes its master role back by itself once the cluster is whole.
        files += [
            _file(ROLE_RESTORE_PATH, role_restore_script(), "0755"),
            _file(ROLE_RESTORE_ENV_PATH, render_env_file(
                role_restore_env(topology, server, auth_file=EC2_PATHS.auth_file, redis_cli=redis_cli))),
            _file(f"{UNIT_DIR}/{ROLE_RESTORE_UNIT}", render_role_restore_unit(ports)),
            _file(f"{UNIT_DIR}/{ROLE_RESTORE_TIMER}", render_role_restore_timer()),
            # A clean stop or reboot hands this server's masters to their replicas first (the drop-in's ExecStop).
            _file(STEP_DOWN_PATH, step_down_script(), "0755"),
            _file(STEP_DOWN_ENV_PATH, render_env_file(
                step_down_env(topology, server, auth_file=EC2_PATHS.auth_file, redis_cli=redis_cli))),
        ]
    if needs_make_room(platform):
        # 5.0 refuses script writes at maxmemory: each master is kept below it (make_room_agent.py says how).
        files += [
            _file(MAKE_ROOM_PATH, make_room_script(), "0755"),
            _file(MAKE_ROOM_ENV_PATH, render_env_file(make_room_env(srv.private_ip, ports,
                                                                     auth_file=EC2_PATHS.auth_file))),
            _file(f"{UNIT_DIR}/{MAKE_ROOM_UNIT}", render_make_room_unit(ports)),
        ]
    files += [
        # A changed password reaches the running processes within a minute (Parameter Store is read at boot only).
        # (The program itself comes from the stack's bucket, through redis-run-fetched: fetched.py.)
        _file(PASSWORD_SYNC_ENV_PATH, render_env_file({**password_sync_env(ports, platform.redis_version, redis_cli),
                                                       **password_sync_fetch_env(settings.stack)})),
        _file(f"{UNIT_DIR}/{PASSWORD_SYNC_UNIT}",
              render_password_sync_unit(ports, aws_sandbox(platform, writes_auth=True))),
        _file(f"{UNIT_DIR}/{PASSWORD_SYNC_TIMER}", render_password_sync_timer()),
        # Every hour, with every other server: an RDB of each master on this server to the stack's bucket.
        _file(BACKUP_ENV_PATH, render_env_file(backup_env(topology, server, stack=settings.stack,
                                                          redis_cli=redis_cli))),
        _file(f"{UNIT_DIR}/{BACKUP_UNIT}", render_backup_unit(ports, sandbox=aws_sandbox(platform))),
        _file(f"{UNIT_DIR}/{BACKUP_TIMER}", render_backup_timer()),
        # Metrics to CloudWatch and logs to CloudWatch Logs, every minute: a launcher that runs the
        # program `pulumi up` puts in the stack's bucket (components/render/metrics.py says why).
        _file(OBSERVE_PATH, observe_launcher(), "0755"),
        *([_file(TOOLS_PUBLIC_KEY_PATH, tools_public_key)] if tools_public_key else []),
        _file(OBSERVE_ENV_PATH, render_env_file(observe_env(topology, server, platform, stack=settings.stack,
                                                                        tls=tls))),
        _file(f"{UNIT_DIR}/{METRICS_UNIT}", render_metrics_unit(ports, aws_sandbox(platform))),
        _file(f"{UNIT_DIR}/{METRICS_TIMER}", render_metrics_timer()),
        _file(f"{UNIT_DIR}/{LOGS_UNIT}", render_logs_unit(ports, aws_sandbox(platform))),
        _file(f"{UNIT_DIR}/{LOGS_TIMER}", render_logs_timer()),
        _file(PROVISION_PATH, provision_script(), "0755"),
        _file(PROVISION_ENV_PATH, render_env_file(provision_env(settings, topology, server))),
        _file(f"{UNIT_DIR}/{PROVISION_UNIT}", render_provision_unit()),
    ]
    assert INITIAL_CLUSTER_SERVERS >= 3
    return files


def _units(topology: Topology, server: int, platform: Platform) -> list[str]:
    """What a server runs, enabled for every boot: the password first, its Redis processes, the cluster step."""
    units = [AUTH_UNIT, *(redis_unit(p.port) for p in topology.servers[server].processes), PASSWORD_SYNC_TIMER,
             BACKUP_TIMER, METRICS_TIMER, LOGS_TIMER]
    if needs_make_room(platform):
        units.append(MAKE_ROOM_UNIT)
    if topology.cluster:
        units.append(ROLE_RESTORE_TIMER)
    if runs_bootstrap(topology, server):
        units.append(BOOTSTRAP_UNIT)
    if runs_join(topology, server):
        units.append(JOIN_UNIT)
    return units


def provision_env(settings: Settings, topology: Topology, server: int) -> dict[str, str]:
    """Inputs of redis-provision: the same packages as cloud-init's `packages`, and the units to enable."""
    platform = PLATFORMS[settings.platform]
    packages = [p if isinstance(p, str) else f"{p[0]}={p[1]}" for p in _packages(platform)]
    return {
        "PACKAGES": " ".join(packages),
        "HOLD": "redis-server redis-tools",
        "SNAPS": " ".join(_snaps(platform)),
        "UNITS": " ".join(_units(topology, server, platform)),
    }


def _packages(platform: Platform) -> list:
    pinned = [["redis-server", platform.apt_version], ["redis-tools", platform.apt_version]]
    # awscli reads the password from SSM: apt on 20.04; 24.04 ships it as a snap only. iptables (in
    # Ubuntu's images already) fences the metadata service off from the redis user (systemd.py).
    return pinned + ["iptables"] + ([] if platform.aws_cli_snap else ["awscli"])


def _snaps(platform: Platform) -> list[str]:
    return ["aws-cli"] if platform.aws_cli_snap else []


def _runcmd() -> list:
    return [
        # First boot only; later boots get these from systemd-sysctl and tmpfiles.
        ["sysctl", "--system"],
        ["systemd-tmpfiles", "--create", THP_TMPFILES_PATH],
        ["systemctl", "daemon-reload"],
        # redis-provision holds the pin and enables the Redis units, after making sure
        # cloud-init's package step really installed them (it runs once, and fails for
        # good if the way out was not ready). --no-block: cloud-init finishes; the
        # Redis units wait for the password, the cluster step for its peers.
        ["systemctl", "enable", "--now", "--no-block", PROVISION_UNIT],
    ]


class _Literal(str):
    pass


def _literal_dumper(base: type) -> type:
    """A safe YAML dumper that writes _Literal strings (the files) as `|` blocks."""
    dumper = type(f"_Literal{base.__name__}", (base,), {})
    dumper.add_representer(
        _Literal, lambda d, data: d.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")
    )
    return dumper


# libyaml's emitter writes the same bytes (tests/render/test_cloud_config.py compares them) about ten
# times faster than PyYAML's own; a 100-server program renders 100 user data. PyYAML without libyaml
# falls back to its own.
_Dumper = _literal_dumper(yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper)


def render_cloud_config(
    settings: Settings,
    topology: Topology,
    server: int,
    *,
    memory_mib: int,
    password_parameter: str,
    region: str,
    tools_public_key: str | None = None,
) -> str:
    """The user-data of server `server`. Holds no secret: the password is read from SSM at boot."""
    platform = PLATFORMS[settings.platform]
    files = server_files(
        settings, topology, server, memory_mib=memory_mib, password_parameter=password_parameter, region=region,
        tools_public_key=tools_public_key,
    )
    for f in files:
        f["content"] = _Literal(f["content"])
    config: dict = {
        "hostname": topology.servers[server].name,
        # Masked before the package arrives, so the packaged single-instance
        # redis-server.service never starts (and never takes 6379).
        "bootcmd": [["systemctl", "mask", "redis-server.service"]],
        "package_update": True,
        "packages": _packages(platform),
        "write_files": files,
        "runcmd": _runcmd(),
    }
    if _snaps(platform):
        config["snap"] = {"commands": [["snap", "install", name, "--classic"] for name in _snaps(platform)]}
    return _as_cloud_config(config)


def _as_cloud_config(config: dict) -> str:
    """The document cloud-init reads: its header line, then the YAML (file contents as literal blocks)."""
    return "#cloud-config\n" + yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=1000)
