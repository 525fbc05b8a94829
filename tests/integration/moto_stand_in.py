"""moto in server mode on a loopback address of this test process, recording every request it receives: the
harness, the one `moto` fixture every test on the host uses (tests/conftest.py registers it), and what the
backup tests give the shipped redis-backup to reach it (test_backup, test_scripts_argv)."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from outsystems_redis import monitoring
from outsystems_redis.render import programs
from outsystems_redis.render.metrics import observe_script
from outsystems_redis.tools.loopback import Loopback
from tests.tools import loopback_octet, require

STACK = "rehearsal"  # the backup tests' stack
REGION = "eu-west-1"
VENV_BIN = Path(sys.executable).parent
_ports = itertools.count(4566)


class MotoServer:
    """moto_server on 127.<this process's octet>.253.1, recording every request it receives: the one harness
    that starts moto for the tests on the host (the boot test starts its own inside the servers' network)."""

    def __init__(self, directory: Path, region: str = REGION) -> None:
        self.region = region
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.recording = self.dir / "requests.jsonl"
        self.host = f"127.{loopback_octet()}.253.1"
        self.port = next(_ports)
        self.url = f"http://{self.host}:{self.port}"
        server = shutil.which("moto_server", path=str(VENV_BIN)) or require(None, "moto_server (pip moto[server])")
        self.proc = subprocess.Popen(
            [server, "-H", self.host, "-p", str(self.port)],
            env={**os.environ, "MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(self.recording)},
            stdin=subprocess.DEVNULL, stdout=open(self.dir / "moto.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (self.dir / "moto.log").read_text()[-2000:]
                    raise RuntimeError(f"moto_server did not answer: {log}") from None
                time.sleep(0.1)

    def env(self) -> dict[str, str]:
        """What points the AWS CLI and boto3 at moto instead of AWS (and at nothing else)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str):  # noqa: ANN201
        return boto3.client(service, region_name=self.region, endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def requests(self) -> list[dict]:
        """Every request moto received (the recorder's entries, bodies decoded to bytes)."""
        # moto writes an entry and its newline in two calls, and requests run in threads: a large entry
        # can end up with another right behind it on one line. So: one JSON value after another.
        text = self.recording.read_text() if self.recording.exists() else ""
        decoder, at, entries = json.JSONDecoder(), 0, []
        while True:
            while at < len(text) and text[at].isspace():
                at += 1
            if at == len(text):
                break
            entry, at = decoder.raw_decode(text, at)
            body = entry.get("body") or ""
            entry["body"] = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
            entries.append(entry)
        return entries

    def leaks(self, secret: str) -> list[str]:
        """Requests carrying `secret` anywhere: URL, headers or body."""
        s = secret.encode()
        return [f"{e['method']} {e['url']}" for e in self.requests()
                if s in e["body"] or s in json.dumps(e["headers"]).encode() or s in e["url"].encode()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class Moto(MotoServer):
    """The moto harness with the AWS CLI as a server runs it: `aws` (the venv's awscli) alone on PATH beside
    the system's, so python3 stays the system's, as on a server; a HOME of its own."""

    def __init__(self, tmp: Path) -> None:
        self.aws_cli = require(str(VENV_BIN / "aws"), "aws (pip install awscli)")
        super().__init__(tmp, region=REGION)
        self.bin = tmp / "aws-bin"  # only `aws` from the venv: python3 stays the system's, as on a server
        self.bin.mkdir()
        (self.bin / "aws").symlink_to(self.aws_cli)
        self.home = tmp / "home"
        self.home.mkdir()
        self.instances: dict[int, str] = {}  # server -> its instance in the stand-in's EC2 (instance_session)

    def env(self) -> dict[str, str]:
        return {**super().env(), "PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.home), "AWS_REGION": REGION}

    def prepare_stack(self, stack: str, tool: str | None = None) -> str:
        """What `pulumi up` makes for a stack: the bucket named in its parameter, the metrics agent in it, the
        log group. The bucket's name."""
        bucket = bucket_of(stack)
        self.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.client("s3").put_object(Bucket=bucket, Key=monitoring.OBSERVE_TOOL_KEY,
                                     Body=(tool if tool is not None else observe_script()).encode())
        self.client("ssm").put_parameter(Name=monitoring.backup_bucket_parameter(stack), Value=bucket, Type="String")
        self.client("logs").create_log_group(logGroupName=monitoring.log_group_name(stack))
        return bucket

    def instance_session(self, server: int, name: str = "", stack: str = "") -> dict[str, str]:
        """Credentials of server `server`'s instance, as EC2 hands them out: the servers' one role, assumed
        with the instance id as the session name, so each server has its own aws:userid
        ("<role id>:<instance id>"): its metric namespace and its snapshots' prefix. With `name`, the
        instance exists in the stand-in's EC2 too, tagged as the program tags a server (the restore asks)."""
        if name and server not in self.instances:
            tags = [{"Key": "Name", "Value": name}, {"Key": "Project", "Value": "outsystems-redis"},
                    {"Key": "Stack", "Value": stack}]
            self.instances[server] = self.client("ec2").run_instances(
                ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1,
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]["InstanceId"]
        iam = self.client("iam")
        try:
            role = iam.get_role(RoleName=SERVER_ROLE)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                             "Principal": {"Service": "ec2.amazonaws.com"}}]}
            role = iam.create_role(RoleName=SERVER_ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        session = self.instances.get(server, instance_id(server))
        got = self.client("sts").assume_role(RoleArn=role, RoleSessionName=session)["Credentials"]
        return {"AWS_ACCESS_KEY_ID": got["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": got["SecretAccessKey"],
                "AWS_SESSION_TOKEN": got["SessionToken"]}

    def writer(self, server: int) -> str:
        """Server `server`'s aws:userid, as STS tells it to the server itself."""
        creds = self.instance_session(server)
        return boto3.client("sts", endpoint_url=self.url, region_name=self.region,
                            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=creds["AWS_SESSION_TOKEN"]).get_caller_identity()["UserId"]

    def everything(self) -> str:
        """Every piece of state moto holds, as JSON text (to scan for a secret)."""
        return urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=30).read().decode()


SERVER_ROLE = "outsystems-redis-server-role"


def instance_id(server: int) -> str:
    return f"i-{server + 1:017x}"


def bucket_of(stack: str) -> str:
    return f"osr-{stack}-bucket"


BUCKET = bucket_of(STACK)


@pytest.fixture
def moto(tmp_path_factory, request) -> Moto:
    """The one moto fixture: a stand-in of its own for each test, empty (a test makes what `pulumi up` would
    with prepare_stack)."""
    server = Moto(tmp_path_factory.mktemp("moto"))
    request.addfinalizer(server.stop)
    return server


def stand_in_where(lo: Loopback, server: int, stack: str, **places: str) -> programs.Where:
    """`lo`'s server `server` as render/programs.py describes it, in a stack of this stand-in's (its name, its
    region); `places`: Where's state_dir or backup_dir."""
    where = lo.where(server)
    return dataclasses.replace(where, settings=dataclasses.replace(where.settings, stack=stack), region=REGION,
                               **places)


def backup_environment(lo: Loopback, server: int, moto: Moto, work_dir: Path) -> dict[str, str]:
    """redis-backup's environment on server `server`: what its unit reads (auth.env, backup.env: programs.py's
    environment()), with the loopback's paths, the AWS CLI as a server runs it (Moto.env), and moto's endpoint.
    The bucket by name, as the program gives it; but server 1 reads it from the parameter, as a server created
    before that does, so a fleet exercises both."""
    where = stand_in_where(lo, server, STACK, backup_dir=str(work_dir))
    return {
        **moto.env(),
        **moto.instance_session(server, lo.topology.servers[server].name, STACK),
        **programs.environment("redis-backup", dataclasses.replace(where, bucket=BUCKET if server else "")),
    }
