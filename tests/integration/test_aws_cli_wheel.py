"""The AWS CLI of the 24.04 servers, as they run it: the wheels of outsystems_redis/platforms.py, installed with
their digests checked, with the rest at the versions Ubuntu 24.04 ships (scripts/setup.sh builds it into
build/aws-cli-24.04 from tests/integration/aws-cli-24.04.txt), run by the servers' own wrapper. Every call the
servers make goes through it to moto here: the launcher's fetch, the metrics and the logs (redis-observe), an hour's
backups (redis-backup), and the shell programs' parameter reads (lib.sh), whose output and failures must be the ones
the rest of the suite checks with the venv's CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from outsystems_redis import monitoring
from outsystems_redis.platforms import AWS_CLI_PACKAGES, AWS_CLI_WHEELS, PLATFORMS
from outsystems_redis.render.backup import backup_script
from outsystems_redis.server_files import source
from outsystems_redis.tools.loopback import run_at_once
from tests.integration.metrics_stand_in import fake_journalctl, journal_entry, log_events, observe, published
from tests.integration.moto_stand_in import BUCKET, STACK, Moto, backup_environment

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "build" / "aws-cli-24.04"
PROVISION = REPO / "outsystems_redis" / "server_files" / "provision.sh"


def wrapper(lib: Path) -> str:
    """/usr/local/bin/aws exactly as redis-provision writes it (its own printf), for the directory `lib`."""
    (form,) = re.findall(r"printf '(#!/usr/bin/python3 -I\\n[^']*)' \\\n\s*\"\$AWS_CLI_DIR\"", PROVISION.read_text())
    return subprocess.run(["bash", "-c", 'printf "$1" "$2"', "-", form, str(lib)], capture_output=True, text=True,
                          check=True, timeout=10).stdout


@pytest.fixture
def moto_24_04(moto: Moto) -> Moto:
    """The moto harness with the 24.04 servers' AWS CLI as `aws`: their wrapper, run by the system's python3 as
    theirs is (with -I: no PYTHON* variable, no user site), on the directory scripts/setup.sh built."""
    built = (CLI / "built").read_text().split("\n")[0] if (CLI / "built").exists() else "nothing"
    assert built == " ".join(AWS_CLI_WHEELS), f"{CLI} holds {built}: run scripts/setup.sh"
    aws = moto.bin / "aws"
    aws.unlink()
    aws.write_text(wrapper(CLI / "lib"))
    aws.chmod(0o755)
    version = subprocess.run(["aws", "--version"], env=moto.env(), capture_output=True, text=True, timeout=60)
    # The CLI and botocore of a 24.04 server, and no other.
    assert version.returncode == 0 and "aws-cli/1.32.46 " in version.stdout + version.stderr \
        and "botocore/1.34.46" in version.stdout + version.stderr, version
    return moto


def requires(dist_info: Path) -> list[str]:
    """The names a wheel requires (its METADATA's Requires-Dist), extras left out."""
    lines = (dist_info / "METADATA").read_text().splitlines()
    return sorted({line.split(":", 1)[1].split()[0] for line in lines
                   if line.startswith("Requires-Dist:") and "extra ==" not in line})


def test_the_24_04_servers_wheels_and_packages_are_what_the_cli_requires() -> None:
    """The platform that has no awscli package installs these wheels, by digest; everything else they require
    is an Ubuntu package it installs (their own dependencies, such as pyasn1 or six, come with those), and
    pip's own wheel to install them with."""
    (platform,) = [p for p in PLATFORMS.values() if p.aws_cli_wheels]
    assert platform.ubuntu == "24.04" and platform.aws_cli_wheels == AWS_CLI_WHEELS
    assert [w.split("==")[0] for w in AWS_CLI_WHEELS] == ["awscli", "botocore"]
    assert all(re.fullmatch(r"[a-z]+==[0-9.]+ --hash=sha256:[0-9a-f]{64}", w) for w in AWS_CLI_WHEELS)
    awscli = requires(CLI / "lib" / "awscli-1.32.46.dist-info")
    # awscli requires exactly the botocore among the wheels.
    metadata = (CLI / "lib" / "awscli-1.32.46.dist-info" / "METADATA").read_text()
    assert "botocore" in awscli and "Requires-Dist: botocore (==1.34.46)" in metadata
    assert AWS_CLI_WHEELS[1].startswith("botocore==1.34.46 ")
    rest = set(awscli) - {"botocore"} | set(requires(CLI / "lib" / "botocore-1.34.46.dist-info"))
    debian = {"PyYAML": "python3-yaml", "python-dateutil": "python3-dateutil"}
    assert {debian.get(name, f"python3-{name.lower()}") for name in rest} | {"python3-pip-whl"} == \
        set(AWS_CLI_PACKAGES), rest
    # And this test's directory has each at the version Ubuntu 24.04 ships (aws-cli-24.04.txt), and no other.
    pinned = {line.split("==")[0] for line in (Path(__file__).parent / "aws-cli-24.04.txt").read_text().splitlines()
              if "==" in line}
    assert rest <= pinned, rest - pinned


def test_metrics_logs_and_backups_go_through_the_24_04_cli(loopback_factory, moto_24_04, tmp_path):
    """The launcher fetches and checks redis-observe.py, which publishes every metric of every server (STS,
    CloudWatch) and ships the journal (CloudWatch Logs); redis-backup uploads one snapshot per master (S3)."""
    moto = moto_24_04
    lo = loopback_factory("7.0")
    lo.start()
    lo.bootstrap()
    moto.prepare_stack("metrics")
    for server in range(3):
        result = observe(moto, lo, server, "metrics", "metrics", tmp_path / f"metrics-{server}")
        assert result.returncode == 0, result.stdout + result.stderr
    assert published(moto, "metrics") == {s.name: set(monitoring.METRIC_NAMES) for s in lo.topology.servers}

    moto.prepare_stack("logs")
    entries = tmp_path / "journal.jsonl"
    entries.write_text(journal_entry(1, "redis-auth.service", "through the wheel") + "\n")
    journal_dir = tmp_path / "journal-bin"
    fake_journalctl(journal_dir, entries)
    result = observe(moto, lo, 0, "logs", "logs", tmp_path / "logs-state",
                     extra={"PATH": f"{journal_dir}:{moto.env()['PATH']}"})
    assert result.returncode == 0, result.stdout + result.stderr
    name = lo.topology.servers[0].name
    assert log_events(moto, "logs", f"{name}/journal") == ["redis-auth[1001]: through the wheel"]

    moto.prepare_stack(STACK)
    script = tmp_path / "redis-backup"
    script.write_text(backup_script())
    envs = {server: backup_environment(lo, server, moto, tmp_path / f"backup-{server}") for server in range(3)}
    for server, (code, out) in run_at_once(script, envs, timeout=180).items():
        assert code == 0, f"server {server}:\n{out}"
    listed = moto.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=monitoring.BACKUP_PREFIX).get("Contents", [])
    # An RDB and its manifest per master (three masters, one a server).
    assert len([o for o in listed if o["Key"].endswith(".rdb")]) == 3 and len(listed) == 6, listed


def lib_sh(moto: Moto, call: str, venv_cli: bool = False) -> subprocess.CompletedProcess:
    """One of lib.sh's functions in bash, with the 24.04 CLI or (venv_cli) the venv's."""
    env = {**moto.env(), **moto.instance_session(0)}
    if venv_cli:
        env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    script = f"set -euo pipefail\n{source('lib.sh').read_text()}\n{call}\n"
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_parameter_reads_answer_as_the_venvs_cli_does(moto_24_04):
    """lib.sh's ssm_get (a SecureString, decrypted) and caller_id print what the venv's CLI prints, and a missing
    parameter fails the same way (exit 254 and ParameterNotFound on 20.04's CLI too: the scripts only test the
    status)."""
    moto = moto_24_04
    ssm = moto.client("ssm")
    ssm.put_parameter(Name="/outsystems-redis/wheel/redis-password", Value="a-secret-of-24-chars-xx",
                      Type="SecureString")
    for call in ("ssm_get /outsystems-redis/wheel/redis-password 20", "caller_id 20"):
        wheel, venv = lib_sh(moto, call), lib_sh(moto, call, venv_cli=True)
        assert wheel.returncode == 0 and (wheel.stdout, wheel.returncode) == (venv.stdout, venv.returncode), \
            (call, wheel, venv)
    assert lib_sh(moto, "ssm_get /outsystems-redis/wheel/redis-password 20").stdout == "a-secret-of-24-chars-xx\n"
    missing = lib_sh(moto, "ssm_get /outsystems-redis/wheel/nothing 20")
    assert missing.returncode != 0 and "ParameterNotFound" in missing.stderr, missing
