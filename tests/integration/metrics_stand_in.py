"""moto in server mode on loopback, and the servers' redis-observe run against it exactly as on EC2.

The only difference from a server: AWS_ENDPOINT_URL points the real AWS CLI (v1,
PyPI `awscli`, as Ubuntu 20.04's apt package) at moto, with made-up credentials.
The launcher in the user data fetches redis-observe.py from moto's S3 (uploaded as
`pulumi up` would) and runs it with the system python3, which has no redis-py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from outsystems_redis import monitoring
from outsystems_redis.render import programs
from outsystems_redis.render.metrics import observe_launcher
from outsystems_redis.tools.loopback import BASH, Loopback
from tests.integration.moto_stand_in import Moto, stand_in_where


def deployer_env(url: str) -> dict[str, str]:
    """A deploying shell outside the VPC: this process's environment without AWS or Redis settings, and
    credentials for the AWS stand-in at `url` only (no password, no CA, no instance metadata)."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REDIS_"))}
    return {**keep, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": url,
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true"}


def observe(moto: Moto, lo: Loopback, server: int, stack: str, command: str, state_dir: Path,
            extra: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the user data's launcher for server `server` of `lo`, as redis-<command>.service does: what its unit
    reads (auth.env, observe.env: programs.py's environment()), paths remapped."""
    launcher = state_dir.parent / "redis-observe"
    launcher.write_text(observe_launcher())
    env = programs.environment(f"redis-{command}", stand_in_where(lo, server, stack, state_dir=str(state_dir)))
    # The instance's own credentials: the agent publishes in its own session's namespace.
    full = {**moto.env(), **moto.instance_session(server), **env, **(extra or {})}
    return subprocess.run([BASH, str(launcher), command], env=full, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def namespaces(moto: Moto, stack: str) -> dict[str, dict[str, set[str]]]:
    """Server name -> namespace -> the metric names it published there (exactly the Stack and Server
    dimensions), among the stack's servers' namespaces, read back with list_metrics."""
    out: dict[str, dict[str, set[str]]] = {}
    for page in moto.client("cloudwatch").get_paginator("list_metrics").paginate():
        for m in page["Metrics"]:
            dims = {d["Name"]: d["Value"] for d in m["Dimensions"]}
            if m["Namespace"].startswith(monitoring.stack_namespaces(stack)) and dims.get(
                    monitoring.STACK_DIMENSION) == stack and set(dims) == {monitoring.STACK_DIMENSION,
                                                                           monitoring.SERVER_DIMENSION}:
                out.setdefault(dims[monitoring.SERVER_DIMENSION], {}).setdefault(m["Namespace"], set()).add(
                    m["MetricName"])
    return out


def namespace_of(moto: Moto, stack: str, server: str) -> str:
    """The one namespace `server` published in."""
    (namespace,) = namespaces(moto, stack).get(server, {None: set()})
    assert namespace is not None, f"{server} published nothing in {stack}"
    return namespace


def latest(moto: Moto, stack: str, server: str, name: str) -> float | None:
    """The last value of one metric of one server, in its own namespace (moto keeps every datapoint)."""
    cw = moto.client("cloudwatch")
    now = time.time()
    points = cw.get_metric_statistics(
        Namespace=namespace_of(moto, stack, server), MetricName=name, StartTime=now - 3600, EndTime=now + 600,
        Period=60,
        Statistics=["Maximum"], Dimensions=[{"Name": monitoring.STACK_DIMENSION, "Value": stack},
                                            {"Name": monitoring.SERVER_DIMENSION, "Value": server}])["Datapoints"]
    return max(points, key=lambda p: p["Timestamp"])["Maximum"] if points else None


def published(moto: Moto, stack: str) -> dict[str, set[str]]:
    """Server name -> the metric names it published, in whichever namespaces."""
    return {server: set().union(*spaces.values()) for server, spaces in namespaces(moto, stack).items()}


def log_events(moto: Moto, stack: str, stream: str) -> list[str]:
    logs = moto.client("logs")
    events = logs.get_log_events(logGroupName=monitoring.log_group_name(stack), logStreamName=stream,
                                 startFromHead=True, limit=10000)["events"]
    return [e["message"] for e in events]


def fake_journalctl(directory: Path, entries: Path) -> Path:
    """`journalctl --no-pager -o json --unit=U ... [--after-cursor=C]` from a JSON-lines file (see the report:
    no journald runs on the build machines; the boot test runs the real one)."""
    directory.mkdir(exist_ok=True)
    script = directory / "journalctl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "units = {a.split('=', 1)[1] for a in args if a.startswith('--unit=')}\n"
        "after = next((a.split('=', 1)[1] for a in args if a.startswith('--after-cursor=')), None)\n"
        "assert args[:3] == ['--no-pager', '-o', 'json'], args\n"
        f"lines = open({str(entries)!r}).read().splitlines()\n"
        "entries = [json.loads(line) for line in lines if line]\n"
        "cursors = [e['__CURSOR'] for e in entries]\n"
        "start = cursors.index(after) + 1 if after else 0\n"
        "for e in entries[start:]:\n"
        "    if e.get('_SYSTEMD_UNIT') in units or any(u.endswith('*.service') and "
        "e.get('_SYSTEMD_UNIT', '').startswith(u[:-9]) for u in units):\n"
        "        print(json.dumps(e))\n")
    script.chmod(0o755)
    return script


def journal_entry(n: int, unit: str, message: str) -> str:
    return json.dumps({"__CURSOR": f"s=fake;i={n}", "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6) + n),
                       "_SYSTEMD_UNIT": unit, "SYSLOG_IDENTIFIER": unit.split(".")[0], "_PID": str(1000 + n),
                       "MESSAGE": message})


def environ_without_aws() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
