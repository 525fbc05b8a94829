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

import yaml

from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.render import programs
from outsystems_redis.render.programs import Where
from outsystems_redis.render.systemd import (
    PROVISION_UNIT,
    SYSCTL_PATH,
    THP_TMPFILES_PATH,
    TIME_SYNC_PATH,
    render_sysctl,
    render_thp_tmpfiles,
    render_time_sync,
)
from outsystems_redis.settings import Settings
from outsystems_redis.topology import Topology

# EC2 refuses user data above this many bytes, counted after base64 decoding.
EC2_USER_DATA_LIMIT = 16_384


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


def _file(path: str, content: str, permissions: str = "0644") -> dict:
    # Every file is root's and world-readable: none holds a secret (the password and the TLS key
    # are written at boot by redis-auth, root:redis 0640). Nothing waits for the redis group either:
    # cloud-init's deferred write_files fail for good when the package step did (no way out yet),
    # and redis-provision could not repair that.
    return {"path": path, "content": content, "owner": "root:root", "permissions": permissions}


def server_files(
    settings: Settings, topology: Topology, server: int, *, memory_mib: int, password_parameter: str, region: str,
    tools_public_key: str | None = None, bucket: str = "",
) -> list[dict]:
    """Every file server `server` needs, as cloud-init write_files entries: the OS's tuning, then every program it
    carries (render/programs.py). `tools_public_key`: the PEM the launcher verifies fetched programs with
    (outsystems_redis/signing.py); without it they run unverified. `bucket`: the stack's bucket's name; without
    it the servers read it from its parameter."""
    where = Where.on_ec2(settings, topology, server, password_parameter=password_parameter, region=region,
                         memory_mib=memory_mib, tools_public_key=tools_public_key, bucket=bucket)
    os_files = [(SYSCTL_PATH, render_sysctl()), (TIME_SYNC_PATH, render_time_sync()),
                (THP_TMPFILES_PATH, render_thp_tmpfiles())]
    return [_file(path, text) for path, text in os_files] + \
        [_file(path, text, mode) for path, text, mode in programs.server_files(where)]


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
    bucket: str = "",
) -> str:
    """The user-data of server `server`. Holds no secret: the password is read from SSM at boot."""
    platform = PLATFORMS[settings.platform]
    files = server_files(
        settings, topology, server, memory_mib=memory_mib, password_parameter=password_parameter, region=region,
        tools_public_key=tools_public_key, bucket=bucket,
    )
    for f in files:
        f["content"] = _Literal(f["content"])
    config: dict = {
        "hostname": topology.servers[server].name,
        # Masked before the package arrives, so the packaged single-instance
        # redis-server.service never starts (and never takes 6379).
        "bootcmd": [["systemctl", "mask", "redis-server.service"]],
        "package_update": True,
        "packages": programs.packages_of(platform),
        "write_files": files,
        "runcmd": _runcmd(),
    }
    return _as_cloud_config(config)


def _as_cloud_config(config: dict) -> str:
    """The document cloud-init reads: its header line, then the YAML (file contents as literal blocks)."""
    return "#cloud-config\n" + yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=1000)
