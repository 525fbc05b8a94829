"""policy/ as the CLI runs it: it must import and start the analyzer's gRPC server."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tools import ROOT

PACK = ROOT / "policy"


def _announced_port(argv: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Start the pack, return (first stdout bytes, stderr): the port, read within a deadline, then kill it."""
    proc = subprocess.Popen(argv, cwd=PACK, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=30)
        line = os.read(proc.stdout.fileno(), 64).decode() if ready else ""
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)  # bounded: the pack is killed first
    return line, err.decode()


def test_policy_pack_starts_and_announces_its_port() -> None:
    # The Python analyzer prints the port it listens on, then serves until killed. Started
    # with buffered stdout (PYTHONUNBUFFERED unset, as on a user's machine): the port must
    # still arrive, within a deadline rather than a readline that could hang.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    line, err = _announced_port([sys.executable, str(PACK / "__main__.py")], env)
    assert line.strip().isdigit(), (line, "no port announced within 30 s", err)


def test_the_cli_runs_the_pack_with_the_repositorys_virtualenv() -> None:
    """`pulumi preview --policy-pack policy` on a user's machine: the interpreter PulumiPolicy.yaml names.

    The CLI starts its pulumi-analyzer-policy-python shim in the pack directory with `-virtualenv=<option>`;
    the shim makes a relative path absolute against that directory and runs `<venv>/bin/python -u -m
    pulumi.policy <engine> .`, and with no option runs the first python3 on PATH, which on a user's machine
    lacks pulumi-policy. Done here as the shim does it, with a PATH that holds no virtualenv.
    """
    runtime = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())["runtime"]
    assert isinstance(runtime, dict) and runtime.get("name") == "python", runtime
    virtualenv = (runtime.get("options") or {}).get("virtualenv")
    assert virtualenv, "PulumiPolicy.yaml sets no runtime.options.virtualenv: the CLI would run python3 from PATH"
    venv = PACK / virtualenv if not Path(virtualenv).is_absolute() else Path(virtualenv)
    python = venv / "bin" / "python"
    assert python.is_file(), f"{python} ({virtualenv} from the pack directory) is not a virtualenv's python"
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    probe = subprocess.run([str(python), "-c", "import pulumi_policy, pulumi.policy"],
                           cwd=PACK, env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    line, err = _announced_port([str(python), "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."], env)
    assert line.strip().isdigit(), (line, "no port announced within 30 s", err)
