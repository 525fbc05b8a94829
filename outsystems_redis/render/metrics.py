"""Metrics and central logs of each server: redis-observe, its environment, and two timers.

metrics_agent.py in server_files/ is the program. What servers run is one
self-contained Python file, `observe_script()`: its code, carrying inside it the
modules of outsystems_redis/ that it imports (outsystems_redis/judge.py, outsystems_redis/monitoring.py),
whole, which it imports as it does here (shipped.python_program). One copy of
the judge, two places it runs. It is about 15 KB gzipped, more than the user data
has left under EC2's 16 KB, so `pulumi up` uploads it to the stack's bucket
(monitoring.OBSERVE_TOOL_KEY) and the user data carries only the small launcher
metrics-observe.sh, which fetches it at each run. Pure text, no pulumi.
"""

from __future__ import annotations

from outsystems_redis import monitoring
from outsystems_redis.render.redis_conf import EC2_PATHS, Paths
from outsystems_redis.render.shipped import python_program, shipped_script
from outsystems_redis.render.systemd import AUTH_ENV_PATH, OBSERVE_PATH, SEARCH_PATH, STATE_DIR, redis_unit
from outsystems_redis.server_files import source
from outsystems_redis.signing import RELEASE
from outsystems_redis.topology import Topology

AGENT_SOURCE = source("metrics_agent.py")
LAUNCHER_SOURCE = source("metrics-observe.sh")
OBSERVE_ENV_PATH = "/etc/redis/observe.env"
METRICS_UNIT = "redis-metrics.service"
METRICS_TIMER = "redis-metrics.timer"
LOGS_UNIT = "redis-logs.service"
LOGS_TIMER = "redis-logs.timer"


def observe_launcher(release: int = RELEASE) -> str:
    """The exact text of the launcher (OBSERVE_PATH) in the user data, which runs fetched programs of `release`
    (signing.RELEASE: the one `pulumi up` uploads with it) or later."""
    if release < 1:
        raise ValueError(f"release {release}: a positive number")
    return shipped_script(LAUNCHER_SOURCE).replace("@TOOLS_RELEASE@", str(release))


def observe_script() -> str:
    """The exact text servers fetch and run as redis-observe.py: Python 3.8+, standard library only.

    `pulumi up` uploads it to monitoring.OBSERVE_TOOL_KEY. The modules of outsystems_redis/ that the agent imports
    (the judge, monitoring's names) travel inside it whole and are imported as here (shipped.python_program).
    """
    return python_program(AGENT_SOURCE, "outsystems_redis", (
        "#!/usr/bin/python3\n# redis-observe of outsystems-redis (outsystems_redis/server_files/metrics_agent.py, "
        "carrying the modules of outsystems_redis/ it imports); comments are in the source.\n"))


def observe_env(topology: Topology, server: int, *, stack: str, tls: bool, journal_units: list[str],
                paths: Paths = EC2_PATHS, state_dir: str = STATE_DIR, log_group: str | None = None) -> dict[str, str]:
    """redis-observe's inputs on server `server` (AWS_REGION and AUTH_FILE come from auth.env): `journal_units`,
    the units whose journal it ships (render/programs.py: only those the server has). No secret."""
    srv = topology.servers[server]
    env = {
        "STACK": stack,
        "SERVER_NAME": srv.name,
        "SERVER_IP": srv.private_ip,
        "PORTS": " ".join(str(p.port) for p in srv.processes),
        "CLUSTER": "1" if topology.cluster else "0",
        "LOG_GROUP": log_group or monitoring.log_group_name(stack),
        "REDIS_LOGS": " ".join(f"{p.port}={paths.log_file(p.port)}" for p in srv.processes),
        "JOURNAL_UNITS": " ".join(journal_units),
        "STATE_DIR": state_dir,
        "TOOLS_KEY": monitoring.OBSERVE_TOOL_KEY,  # (from the bucket auth.env names)
    }
    if tls:
        env["TLS_CA"] = paths.tls_ca
    return env


def _observe_unit(ports: tuple[int, ...], what: str, command: str, identifier: str, sandbox: str) -> str:
    units = " ".join(redis_unit(p) for p in ports)
    return (
        "[Unit]\n"
        f"Description={what}\n"
        f"After=network-online.target redis-auth.service {units}\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "# root: it reads the auth include, the Redis logs and the system journal.\n"
        f"Environment=PATH={SEARCH_PATH}\n"
        f"EnvironmentFile={AUTH_ENV_PATH}\n"
        f"EnvironmentFile={OBSERVE_ENV_PATH}\n"
        "StateDirectory=outsystems-redis\n"
        "StateDirectoryMode=0700\n"
        f"ExecStart={OBSERVE_PATH} {command}\n"
        f"SyslogIdentifier={identifier}\n"
        "# Every AWS call is bounded: the fetch (54 s at worst, outsystems_redis/server_files/metrics-observe.sh)\n"
        "# and the agent's (40 s). A slow run delays the next minute's.\n"
        "TimeoutStartSec=110\n"
        f"{sandbox}"
    )


def render_metrics_unit(ports: tuple[int, ...], sandbox: str = "") -> str:
    """`sandbox`: systemd.aws_sandbox (the agent keeps its state in the StateDirectory)."""
    return _observe_unit(ports, "Publish this Redis server's metrics to CloudWatch", "metrics", "redis-metrics",
                         sandbox)


def render_logs_unit(ports: tuple[int, ...], sandbox: str = "") -> str:
    """`sandbox`: systemd.aws_sandbox (it reads the journal and the Redis logs, and writes only its state)."""
    return _observe_unit(ports, "Ship this Redis server's logs, units' journal and slow log to CloudWatch Logs",
                         "logs", "redis-logs", sandbox)


def _timer(what: str, unit: str, second: int) -> str:
    return (
        "[Unit]\n"
        f"Description={what} every minute\n"
        "\n"
        "[Timer]\n"
        f"# Second {second}: clear of redis-password-sync (:00) and redis-role-restore (:30).\n"
        f"OnCalendar=*:*:{second:02d}\n"
        "AccuracySec=1s\n"
        f"Unit={unit}\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def render_metrics_timer() -> str:
    return _timer("Publish Redis metrics to CloudWatch", METRICS_UNIT, 15)


def render_logs_timer() -> str:
    return _timer("Ship Redis logs to CloudWatch Logs", LOGS_UNIT, 45)
