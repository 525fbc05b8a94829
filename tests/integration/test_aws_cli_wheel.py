"""The AWS CLI of the 24.04 servers, as they run it: the wheel of outsystems_redis/platforms.py, installed with its
digest checked, on the versions of its dependencies that Ubuntu 24.04 ships (scripts/setup.sh builds it into
build/aws-cli-24.04 from tests/integration/aws-cli-24.04.txt). Every call the servers make goes through it to moto
here: the launcher's fetch, the metrics and the logs (redis-observe), an hour's backups (redis-backup), and the
shell programs' parameter reads (lib.sh), whose output and failures must be the ones the rest of the suite checks
with the venv's CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from outsystems_redis import monitoring
from outsystems_redis.platforms import AWS_CLI_1_32_46, AWS_CLI_BOTOCORE, AWS_CLI_PACKAGES, PLATFORMS
from outsystems_redis.render.backup import backup_script
from outsystems_redis.server_files import source
from outsystems_redis.tools.loopback import run_at_once
from tests.integration.metrics_stand_in import fake_journalctl, journal_entry, log_events, observe, published
from tests.integration.moto_stand_in import BUCKET, STACK, Moto, backup_environment

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "build" / "aws-cli-24.04"


def wrapper(cli: Path) -> str:
    """What redis-provision writes as /usr/local/bin/aws, with the wheel's directory and Ubuntu's packages (here:
    the same versions in a directory of their own) first on the path; -S keeps the venv's newer botocore out."""
    path = [str(cli / "cli"), str(cli / "deps")]
    return (f"#!/bin/sh\nexec {sys.executable} -I -S -c 'import sys; sys.path[:0] = {json.dumps(path)}; "
            "from awscli.clidriver import main; sys.exit(main())' \"$@\"\n")


@pytest.fixture
def moto_24_04(moto: Moto) -> Moto:
    """The moto harness with the 24.04 servers' AWS CLI as `aws`."""
    built = (CLI / "requirement").read_text().strip() if (CLI / "requirement").exists() else "nothing"
    assert built == AWS_CLI_1_32_46, f"{CLI} holds {built}: run scripts/setup.sh"
    aws = moto.bin / "aws"
    aws.unlink()
    aws.write_text(wrapper(CLI))
    aws.chmod(0o755)
    version = subprocess.run(["aws", "--version"], env=moto.env(), capture_output=True, text=True, timeout=60)
    # The CLI and botocore of a 24.04 server, and no other.
    assert version.returncode == 0 and "aws-cli/1.32.46 " in version.stdout + version.stderr \
        and "botocore/1.34.46" in version.stdout + version.stderr, version
    return moto


def test_the_24_04_servers_wheel_is_the_one_the_platform_installs() -> None:
    """The platform that has no awscli package installs this requirement (and the setup built this one)."""
    (platform,) = [p for p in PLATFORMS.values() if p.aws_cli_wheel]
    assert platform.ubuntu == "24.04" and platform.aws_cli_wheel == AWS_CLI_1_32_46
    assert "--hash=sha256:" in AWS_CLI_1_32_46 and AWS_CLI_1_32_46.startswith("awscli==")
    # pip installs the wheel alone (--no-deps): each of its requirements is an Ubuntu package the platform
    # installs (their own dependencies, jmespath or pyasn1, come with them), and pip is one too.
    (metadata,) = (CLI / "cli").glob("awscli-1.32.46.dist-info/METADATA")
    required = [line.split(":", 1)[1].split()[0] for line in metadata.read_text().splitlines()
                if line.startswith("Requires-Dist:")]
    debian = {"PyYAML": "python3-yaml"}
    # The botocore it requires is the one the platform pins (and the one this test runs it on).
    (botocore,) = [line for line in metadata.read_text().splitlines() if line.startswith("Requires-Dist: botocore")]
    noble = (Path(__file__).parent / "aws-cli-24.04.txt").read_text()
    assert botocore == "Requires-Dist: botocore (==1.34.46)" and AWS_CLI_BOTOCORE == "1.34.46*" and \
        "\nbotocore==1.34.46\n" in noble, botocore
    assert required and {debian.get(name, f"python3-{name.lower()}") for name in required} | {"python3-pip"} == \
        set(AWS_CLI_PACKAGES), required


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
