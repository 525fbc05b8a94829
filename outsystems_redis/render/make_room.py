"""Room below maxmemory on Redis 5.0: redis-make-room and its unit, on every 5.0 server.

make_room_agent.py in server_files/ (shipped as redis-make-room) says why 5.0 needs it: at
maxmemory, 5.0 refuses the session provider's script writes instead of evicting. 7.0
evicts for scripts itself, so 7.0 servers do not run it. Pure text, no pulumi.
"""

from __future__ import annotations

import ast

from outsystems_redis.platforms import Platform
from outsystems_redis.render.shipped import strip_docstrings
from outsystems_redis.render.systemd import SANDBOX, SEARCH_PATH, redis_unit
from outsystems_redis.server_files import source

MAKE_ROOM_SOURCE = source("make_room_agent.py")
MAKE_ROOM_PATH = "/usr/local/sbin/redis-make-room"
MAKE_ROOM_ENV_PATH = "/etc/redis/make-room.env"
MAKE_ROOM_UNIT = "redis-make-room.service"
# A master at 90 % of maxmemory evicts down to 80 %: the MemoryUsedPercent alarm (85 %) fires
# first. Each round frees 10 % of maxmemory (about 300 MiB per process on the prod size), and it
# looks four times a second (an INFO on a connection it keeps open).
TRIGGER_PERCENT = 90
TARGET_PERCENT = 80
INTERVAL_SECONDS = 0.25
IDLE_INTERVAL_SECONDS = 1  # while every process is below half its maxmemory
# The loopback rehearsal and benchmarks give a process a few MiB, not GiB: one client on loopback
# fills 10 % of that in a fraction of a second, which no front-end fleet does to 10 % of 3 GiB.
# They look every 10 ms, to keep a like ratio of interval to fill time on a busy test machine.
LOOPBACK_INTERVALS = {"INTERVAL_SECONDS": "0.01", "IDLE_INTERVAL_SECONDS": "0.25"}


def needs_make_room(platform: Platform) -> bool:
    """Only Redis 5.0 refuses script writes at maxmemory (6.0 and later evict for them)."""
    return platform.redis_version == "5.0"


def make_room_script() -> str:
    """The exact text servers run: the source without its docstrings and comments (EC2's 16 KB)."""
    tree = ast.parse(MAKE_ROOM_SOURCE.read_text())
    strip_docstrings(tree)
    for node in ast.walk(tree):  # annotations too: Python ignores them, EC2 counts them
        if isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, ast.FunctionDef):
            node.returns = None
        elif isinstance(node, ast.AnnAssign):
            raise ValueError("make_room_agent.py: no annotated assignments (they cannot be dropped)")
    # With no annotations left, `from __future__ import annotations` has nothing to do.
    tree.body = [n for n in tree.body if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    return "#!/usr/bin/python3\n# outsystems_redis/server_files/make_room_agent.py\n" + ast.unparse(tree) + "\n"


def make_room_env(server_ip: str, ports: tuple[int, ...], *, auth_file: str) -> dict[str, str]:
    """Inputs of redis-make-room on one server (names and figures, no secret)."""
    if not 0 < TARGET_PERCENT < TRIGGER_PERCENT <= 100:
        raise ValueError("TARGET_PERCENT must be below TRIGGER_PERCENT, at most 100")
    return {
        "SERVER_IP": server_ip,
        "PORTS": " ".join(str(p) for p in ports),
        "AUTH_FILE": auth_file,
        "TRIGGER_PERCENT": str(TRIGGER_PERCENT),
        "TARGET_PERCENT": str(TARGET_PERCENT),
        "INTERVAL_SECONDS": f"{INTERVAL_SECONDS:g}",
        "IDLE_INTERVAL_SECONDS": f"{IDLE_INTERVAL_SECONDS:g}",
    }


def render_make_room_unit(ports: tuple[int, ...], env_file: str = MAKE_ROOM_ENV_PATH) -> str:
    """As the redis user (the auth include is root:redis 0640), hardened: it only talks to Redis."""
    units = " ".join(redis_unit(p) for p in ports)
    return (
        "[Unit]\n"
        "Description=Keep each Redis 5.0 master below maxmemory, so session scripts can write\n"
        f"After={units}\n"
        "\n"
        "[Service]\n"
        "User=redis\n"
        "Group=redis\n"
        f"Environment=PATH={SEARCH_PATH}\n"
        f"EnvironmentFile={env_file}\n"
        f"ExecStart={MAKE_ROOM_PATH}\n"
        "Restart=always\n"
        "RestartSec=5\n"
        "SyslogIdentifier=redis-make-room\n"
        f"{SANDBOX}"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
