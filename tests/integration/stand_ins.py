"""fetch-tls.sh's world on this machine: a Parameter Store answered from files, and the script's inputs.

The `aws` stand-in is the rehearsal's own (outsystems_redis.tools.loopback.render_aws_stand_in):
`aws ssm get-parameter --name N ... --output text` prints the file for N; an outage
file makes every call fail at once ("fail", exit 254) or never answer ("hang").
"""

from __future__ import annotations

import grp
import os
import signal
import subprocess
from pathlib import Path

from outsystems_redis.parameters import tls_ca_parameter, tls_cert_parameter, tls_key_parameter
from outsystems_redis.render.tls import fetch_tls_script
from outsystems_redis.tools.loopback import BASH, REGION, render_aws_stand_in
from tests.tools import require

STACK = "test"
SERVER = 0


def require_root_and_redis_group() -> None:
    """The fetch chowns to root:redis: it needs root and the group (make test runs as root after installing
    redis-server, whose package creates the group). Missing either fails like a missing tool."""
    if os.geteuid() != 0:
        require(None, "root (the fetch writes root:redis files; make test runs as root)")
    try:
        grp.getgrnam("redis")
    except KeyError:
        require(None, "the redis group (install redis-server: bash scripts/setup.sh)")


class Ssm:
    """A stand-in Parameter Store under `root`, the shipped fetch-tls.sh, and where it writes (root/etc/redis/tls)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.store = self.root / "ssm"
        self.store.mkdir(parents=True, exist_ok=True)
        self.outage_file = self.root / "ssm-outage"
        self.bin_dir = self.root / "bin"
        self.bin_dir.mkdir(exist_ok=True)
        aws = self.bin_dir / "aws"
        aws.write_text(render_aws_stand_in(self.store, self.outage_file))
        aws.chmod(0o755)
        self.script = self.root / "redis-fetch-tls"
        self.script.write_text(fetch_tls_script())
        self.tls_dir = self.root / "etc" / "redis" / "tls"
        self.ca_file, self.cert_file, self.key_file = (self.tls_dir / n for n in ("ca.crt", "server.crt",
                                                                                    "server.key"))

    def put(self, name: str, value: str) -> None:
        (self.store / name.replace("/", "_")).write_text(value)

    def put_material(self, ca: str, cert: str, key: str) -> None:
        """What `pulumi up` stores for server 1 of the stack: the CA, its certificate and its key."""
        self.put(tls_ca_parameter(STACK), ca)
        self.put(tls_cert_parameter(STACK, SERVER), cert)
        self.put(tls_key_parameter(STACK, SERVER), key)

    def outage(self, mode: str | None) -> None:
        """None: SSM answers; "fail": every call fails at once; "hang": no call ever answers."""
        if mode is None:
            self.outage_file.unlink(missing_ok=True)
        else:
            self.outage_file.write_text(mode)

    def env(self, **overrides: str) -> dict[str, str]:
        """auth.env as on EC2 (parameter names, file paths), with one quick attempt by default."""
        return {
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "AWS_REGION": REGION,
            "TLS_CA_PARAMETER": tls_ca_parameter(STACK),
            "TLS_CERT_PARAMETER": tls_cert_parameter(STACK, SERVER),
            "TLS_KEY_PARAMETER": tls_key_parameter(STACK, SERVER),
            "TLS_CA_FILE": str(self.ca_file),
            "TLS_CERT_FILE": str(self.cert_file),
            "TLS_KEY_FILE": str(self.key_file),
            "ATTEMPTS": "1",
            "RETRY_SECONDS": "1",
            **overrides,
        }

    def fetch(self, timeout: float = 60, **overrides: str) -> subprocess.CompletedProcess:
        """Run the shipped fetch once. On `timeout` its whole process group (a hanging `aws` too) is killed
        and AssertionError says so."""
        proc = subprocess.Popen([BASH, str(self.script)], env=self.env(**overrides), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"fetch-tls still running after {timeout}s:\n{out}{err}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
