"""Metrics and central logs of each server: redis-observe, its environment, and two timers.

metrics_agent.py beside this file is the program. What servers run is one
self-contained Python file, `observe_script()`: its code, with the functions it
imports from components/judge.py and the names from components/monitoring.py
copied in (from their source, by name, with everything they need). One copy of
the judge, two places it runs. It is about 9 KB gzipped, more than the user data
has left under EC2's 16 KB, so `pulumi up` uploads it to the stack's bucket
(monitoring.OBSERVE_TOOL_KEY) and the user data carries only the small launcher
metrics-observe.sh, which fetches it at each run. Pure text, no pulumi.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import ModuleType

from components import judge, monitoring
from components.render.redis_conf import EC2_PATHS, Paths
from components.render.shipped import shipped_script, strip_docstrings
from components.render.systemd import AUTH_ENV_PATH, OBSERVE_PATH, SEARCH_PATH, STATE_DIR, redis_unit
from components.topology import Topology

AGENT_SOURCE = Path(__file__).with_name("metrics_agent.py")
LAUNCHER_SOURCE = Path(__file__).with_name("metrics-observe.sh")
OBSERVE_ENV_PATH = "/etc/redis/observe.env"
METRICS_UNIT = "redis-metrics.service"
METRICS_TIMER = "redis-metrics.timer"
LOGS_UNIT = "redis-logs.service"
LOGS_TIMER = "redis-logs.timer"
_INLINED = {"components.judge": judge, "components.monitoring": monitoring}


def _used_names(node: ast.AST) -> set[str]:
    """Names a definition needs at run time (annotations are strings under `from __future__ import annotations`)."""
    found: set[str] = set()

    def visit(n: ast.AST) -> None:
        if isinstance(n, ast.Name):
            found.add(n.id)
        for name, value in ast.iter_fields(n):
            if name in ("annotation", "returns"):
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    visit(child)

    visit(node)
    return found


def _inline(module: ModuleType, names: list[str]) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """(imports, definitions) for `names` of `module` and everything they use, in the module's order.

    Functions and classes come from the source; other module-level values are written as literals.
    """
    tree = ast.parse(inspect.getsource(module))
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    imported = {}
    for n in tree.body:
        if isinstance(n, ast.ImportFrom) and n.module != "__future__":
            for alias in n.names:
                imported[alias.asname or alias.name] = (n.module, alias.name)
        elif isinstance(n, ast.Import):
            for alias in n.names:
                imported[alias.asname or alias.name] = None
    wanted, todo, values, imports = set(), list(names), {}, {}
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        if name in defs:
            todo += [u for u in _used_names(defs[name]) if u in defs or u in imported or _is_value(module, u)]
        elif name in imported:
            imports[name] = imported[name]
        elif _is_value(module, name):
            values[name] = getattr(module, name)
        else:
            raise ValueError(f"{module.__name__} has no top-level {name}")
    out_imports = [ast.parse(f"from {m} import {n}").body[0] if spec else ast.parse(f"import {n}").body[0]
                   for n, spec in sorted(imports.items()) for m, _ in [spec or (None, None)]]
    # By name, and sets sorted: the text must not depend on the process's hash seed, or every
    # `pulumi up` would show the uploaded program as changed.
    out = [ast.parse(f"{k} = {_literal(v)}").body[0] for k, v in sorted(values.items())]
    out += [defs[n.name] for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in wanted]
    return out_imports, out


def _literal(value: object) -> str:
    if isinstance(value, frozenset):
        return f"frozenset({sorted(value)!r})"
    return repr(value)


def _is_value(module: ModuleType, name: str) -> bool:
    value = getattr(module, name, None)
    return isinstance(value, (str, int, float, tuple, dict, frozenset)) and not name.startswith("__")


def observe_launcher() -> str:
    """The exact text of the launcher (OBSERVE_PATH) in the user data."""
    return shipped_script(LAUNCHER_SOURCE)


def observe_script() -> str:
    """The exact text servers fetch and run as redis-observe.py: Python 3.8+, standard library only.

    `pulumi up` uploads it to monitoring.OBSERVE_TOOL_KEY; docstrings and comments are dropped.
    """
    tree = ast.parse(AGENT_SOURCE.read_text())
    imports: list[ast.stmt] = []
    inlined: list[ast.stmt] = []
    rest: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module in _INLINED:
            needed, defs = _inline(_INLINED[node.module], [a.name for a in node.names])
            imports += needed
            inlined += defs
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        else:
            rest.append(node)
    unique = {ast.unparse(i): i for i in imports}  # `from __future__` is the first import of the source
    tree.body = [*unique.values(), *inlined, *rest]
    strip_docstrings(tree)
    header = ("#!/usr/bin/python3\n# redis-observe of outsystems-redis (components/render/metrics_agent.py, with "
              "functions of components/judge.py); comments are in the source.\n")
    return header + ast.unparse(tree) + "\n"


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
        "BUCKET_PARAMETER": monitoring.backup_bucket_parameter(stack),
        "TOOLS_KEY": monitoring.OBSERVE_TOOL_KEY,
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
        "# Every AWS call is bounded: the fetch (66 s at worst, components/render/metrics-observe.sh)\n"
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
