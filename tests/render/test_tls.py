"""TLS on the 7.0 platform, as rendered: redis.conf directives, the boot-time fetch, no secret in user-data.

The fetch script runs here for real against a stand-in `aws` that answers
from files, so its atomic writes, modes and refusals are checked, not read.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from outsystems_redis.monitoring import FETCH_PASSWORD_TOOL_KEY, FETCH_TLS_TOOL_KEY
from outsystems_redis.parameters import tls_ca_parameter, tls_cert_parameter, tls_key_parameter
from outsystems_redis.render import systemd
from outsystems_redis.render.cloud_config import render_cloud_config
from outsystems_redis.render.redis_conf import EC2_PATHS, render_redis_conf
from outsystems_redis.render.tls import fetch_tls_script
from outsystems_redis.tools.loopback import make_ca, make_server_certificate
from tests.render.stacks import PARAMETER, PASSWORD, REGION, STACKS, TLS_STACKS, stack
from tests.tools import require, tool

REDIS_7 = "ubuntu-24.04-redis-7.0"
CONF = re.compile(r"/etc/redis/redis-\d+\.conf")


def files(servers: int, platform: str, tls: bool, server: int) -> dict[str, dict]:
    settings, topology = stack(servers, platform, tls)
    text = render_cloud_config(settings, topology, server, memory_mib=8192, password_parameter=PARAMETER,
                               region=REGION)
    return {f["path"]: f for f in yaml.safe_load(text)["write_files"]}


def user_data(servers: int, platform: str, tls: bool) -> list[str]:
    settings, topology = stack(servers, platform, tls)
    return [render_cloud_config(settings, topology, i, memory_mib=8192, password_parameter=PARAMETER, region=REGION)
            for i in range(servers)]


@pytest.mark.parametrize("servers,platform", TLS_STACKS)
def test_tls_confs_serve_tls_only_on_the_same_ports(servers, platform):
    for server in range(servers):
        written = files(servers, platform, True, server)
        confs = {p: f for p, f in written.items() if CONF.fullmatch(p)}
        assert confs
        for path, f in confs.items():
            port = int(re.search(r"(\d+)\.conf", path).group(1))
            text = f["content"]
            assert "port 0\n" in text and f"tls-port {port}\n" in text
            assert not re.search(rf"^port {port}$", text, re.M)  # the plain port is off
            assert f"tls-cert-file {EC2_PATHS.tls_cert}\n" in text
            assert f"tls-key-file {EC2_PATHS.tls_key}\n" in text
            assert f"tls-ca-cert-file {EC2_PATHS.tls_ca}\n" in text
            assert 'tls-protocols "TLSv1.2 TLSv1.3"\n' in text
            assert "tls-auth-clients no\n" in text and "tls-replication yes\n" in text
            assert ("tls-cluster yes\n" in text) == (servers > 1)
            # No secret in a conf (the auth include is separate): root-owned, world-readable, never deferred.
            assert (f["owner"], f["permissions"], f.get("defer")) == ("root:root", "0644", None)
        # The boot step fetches this server's own certificate and key, by parameter name only.
        env = written[systemd.AUTH_ENV_PATH]["content"]
        for name in (tls_ca_parameter("dev" if servers == 1 else "prod"),
                     tls_cert_parameter("dev" if servers == 1 else "prod", server),
                     tls_key_parameter("dev" if servers == 1 else "prod", server)):
            assert f'="{name}"\n' in env
        # The password first, then the certificates: each the launcher's verified copy from the bucket.
        auth_unit = written[f"{systemd.UNIT_DIR}/{systemd.AUTH_UNIT}"]["content"]
        assert auth_unit.index(f"TOOLS_KEY={FETCH_PASSWORD_TOOL_KEY} {systemd.OBSERVE_PATH}\n") \
            < auth_unit.index(f"TOOLS_KEY={FETCH_TLS_TOOL_KEY} {systemd.OBSERVE_PATH}\n")
        # In the sandbox, which may write the TLS directory too, made first by root ("-": a missing path would
        # fail every command of the unit before the first made it: 226/NAMESPACE): the 24.04 boot test met
        # "cannot change owner and permissions of '/etc/redis/tls'" when the sandbox came to that platform.
        lines = auth_unit.splitlines()
        assert all(line in lines for line in systemd.SANDBOX.splitlines())
        assert lines.index("ExecStart=+/usr/bin/install -d -o root -g redis -m 0750 /etc/redis/tls") < \
            lines.index(f"ExecStart=/usr/bin/env TOOLS_KEY={FETCH_TLS_TOOL_KEY} {systemd.OBSERVE_PATH}")
        assert [line for line in lines if line.startswith("ReadWritePaths=")] == \
            ["ReadWritePaths=-/etc/redis/tls", "ReadWritePaths=/etc/redis/auth"]
        assert "--tls --cacert /etc/redis/tls/ca.crt" in written[systemd.TLS_CLI_PATH]["content"]


@pytest.mark.parametrize("servers,platform", TLS_STACKS)
def test_tls_scripts_are_the_plain_scripts_run_through_the_tls_cli(servers, platform):
    for server in range(servers):
        plain, tls = files(servers, platform, False, server), files(servers, platform, True, server)
        # The bootstrap in the user data, the join from the bucket: one script text either way.
        if systemd.BOOTSTRAP_PATH in plain:
            assert tls[systemd.BOOTSTRAP_PATH]["content"] == plain[systemd.BOOTSTRAP_PATH]["content"]
        for env in (systemd.BOOTSTRAP_ENV_PATH, systemd.JOIN_ENV_PATH):
            if env in plain:
                assert f'REDIS_CLI="{systemd.TLS_CLI_PATH}"\n' in tls[env]["content"]
                assert 'REDIS_CLI="redis-cli"\n' in plain[env]["content"]


@pytest.mark.parametrize("servers,platform", STACKS)
def test_without_tls_nothing_tls_is_rendered(servers, platform):
    for text in user_data(servers, platform, False):
        # No TLS directive, file, unit or parameter (a shipped script may mention TLS in a comment).
        for marker in ("tls-port", "tls-cert-file", "tls-replication", "tls-cluster", "/etc/redis/tls",
                       FETCH_TLS_TOOL_KEY, systemd.TLS_CLI_PATH, "TLS_CA_PARAMETER="):
            assert marker not in text


@pytest.mark.parametrize("servers,platform", TLS_STACKS)
def test_no_secret_in_user_data_with_tls(servers, platform):
    for text in user_data(servers, platform, True):
        assert PASSWORD not in text
        assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text


def test_tls_on_redis_5_is_refused_by_the_renderer():
    settings, topology = stack(3, "ubuntu-20.04-redis-5.0")
    with pytest.raises(ValueError, match="no TLS"):
        render_redis_conf(topology.servers[0].processes[0], dataclasses.replace(settings, tls=True),
                          memory_mib=4096)


def test_tls_auth_unit_passes_systemd_analyze_verify(tmp_path):
    written = files(3, REDIS_7, True, 0)
    text = written[f"{systemd.UNIT_DIR}/{systemd.AUTH_UNIT}"]["content"]
    # verify checks that each ExecStart's program exists: the launcher's copy from the user data.
    launcher = tmp_path / Path(systemd.OBSERVE_PATH).name
    launcher.write_text(written[systemd.OBSERVE_PATH]["content"])
    launcher.chmod(0o755)
    text = text.replace(f" {systemd.OBSERVE_PATH}\n", f" {launcher}\n")
    (tmp_path / systemd.AUTH_UNIT).write_text(text)
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}
    result = subprocess.run([tool("systemd-analyze"), "verify", str(tmp_path / systemd.AUTH_UNIT)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# ---------------------------------------------------------------- the fetch, run for real


@pytest.fixture
def ssm(tmp_path):
    """A stand-in `aws` answering get-parameter from tmp_path/ssm/<name>; exits 255 for a missing one."""
    if os.geteuid() != 0 or subprocess.run(["getent", "group", "redis"], capture_output=True, timeout=120).returncode:
        # Like a missing tool: .ci/run runs as root with redis-server installed, so in CI this fails.
        require(None, "root and the redis group (the fetch chowns to root:redis; make test as root has both)")
    tool("openssl")
    store = tmp_path / "ssm"
    store.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(
        "#!/bin/bash\n"
        'while [ $# -gt 0 ]; do [ "$1" = --name ] && name=$2; shift; done\n'
        f'f="{store}/$(printf %s "$name" | tr / _)"\n'
        '[ -f "$f" ] || { echo "ParameterNotFound" >&2; exit 255; }\n'
        'cat "$f"\n'
    )
    (bin_dir / "aws").chmod(0o755)
    ca, ca_key = make_ca(tmp_path / "ca")
    make_server_certificate((ca, ca_key), tmp_path / "server.crt", tmp_path / "server.key", ["10.20.1.10", "127.0.0.1"])
    put = {"/s/ca": ca.read_text(), "/s/crt": (tmp_path / "server.crt").read_text(),
           "/s/key": (tmp_path / "server.key").read_text()}
    for name, value in put.items():
        (store / name.replace("/", "_")).write_text(value)
    script = tmp_path / "redis-fetch-tls"
    script.write_text(fetch_tls_script())
    out = tmp_path / "etc" / "tls"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "AWS_REGION": REGION, "ATTEMPTS": "1",
           "TLS_CA_PARAMETER": "/s/ca", "TLS_CERT_PARAMETER": "/s/crt", "TLS_KEY_PARAMETER": "/s/key",
           "TLS_CA_FILE": str(out / "ca.crt"), "TLS_CERT_FILE": str(out / "server.crt"),
           "TLS_KEY_FILE": str(out / "server.key")}

    def run(**overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script)], env={**env, **overrides}, capture_output=True, text=True,
                              timeout=60)

    return run, store, out, put


def test_fetch_writes_ca_cert_and_key_with_their_modes(ssm):
    run, _, out, put = ssm
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "ca.crt").read_text() == put["/s/ca"]
    assert (out / "server.crt").read_text() == put["/s/crt"]
    assert (out / "server.key").read_text() == put["/s/key"]
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [out, *out.iterdir()]}
    assert modes == {"tls": "0o750", "ca.crt": "0o644", "server.crt": "0o644", "server.key": "0o640"}
    assert {p.group() for p in [out, *out.iterdir()]} == {"redis"}
    assert "BEGIN" not in result.stdout + result.stderr  # nothing of the key in the journal


def test_fetch_refuses_a_key_that_is_not_the_certificates(ssm, tmp_path):
    run, store, out, _ = ssm
    make_server_certificate(make_ca(tmp_path / "other"), tmp_path / "o.crt", tmp_path / "o.key", ["10.0.0.1"])
    (store / "_s_key").write_text((tmp_path / "o.key").read_text())
    result = run()
    assert result.returncode == 1
    assert "does not match the key" in result.stdout and not out.exists()


def test_fetch_keeps_the_last_boots_files_when_ssm_is_unreachable(ssm):
    run, store, out, put = ssm
    assert run().returncode == 0
    for f in store.iterdir():
        f.unlink()
    result = run()
    assert result.returncode == 0 and "keeping the existing files" in result.stdout
    assert (out / "server.key").read_text() == put["/s/key"]
