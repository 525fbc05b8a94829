"""Off-host snapshots: redis-backup and its hourly timer, on every server (cluster or single).

backup.sh in server_files/ (shipped as redis-backup) streams an RDB snapshot of
each master process on the server (`redis-cli --rdb`) to the stack's S3 bucket,
whose name it reads from SSM at run time, under outsystems_redis.monitoring's keys.
Every server's timer fires at the same minute each hour, and each run names its
snapshots after the hour it belongs to, so one hour's runs form one snapshot set
(what `python -m outsystems_redis.tools.backup restore` loads). Pure text, no pulumi.
"""

from __future__ import annotations

from pathlib import Path

from outsystems_redis.monitoring import BACKUP_PERIOD_SECONDS, BACKUP_PREFIX, BACKUP_TOOL_KEY
from outsystems_redis.render.metrics import OBSERVE_PATH, STATE_DIR
from outsystems_redis.render.shipped import shipped_script
from outsystems_redis.render.systemd import AUTH_ENV_PATH, AUTH_UNIT, SEARCH_PATH, redis_unit
from outsystems_redis.server_files import source
from outsystems_redis.topology import Topology

BACKUP_SCRIPT = source("backup.sh")
BACKUP_ENV_PATH = "/etc/redis/backup.env"
BACKUP_UNIT = "redis-backup.service"
BACKUP_TIMER = "redis-backup.timer"
# systemd's StateDirectory=redis-backup (root-only): on the instance's disk, not /run's tmpfs (memory).
BACKUP_WORK_DIR = "/var/lib/redis-backup"


def backup_script() -> str:
    """The exact text servers run."""
    return shipped_script(BACKUP_SCRIPT, library=True)


def backup_env(topology: Topology, server: int, *, redis_cli: str = "redis-cli",
               work_dir: str = BACKUP_WORK_DIR, state_dir: str = STATE_DIR) -> dict[str, str]:
    """Inputs of redis-backup on server `server` (names and addresses, no secret).

    AWS_REGION, AUTH_FILE and the bucket come from auth.env, as for the other units.
    """
    srv = topology.servers[server]
    return {
        "SERVER_NAME": srv.name,
        "SERVER_IP": srv.private_ip,
        "PORTS": " ".join(str(p.port) for p in srv.processes),
        "KEY_PREFIX": BACKUP_PREFIX,  # (in the bucket auth.env names)
        "PERIOD_SECONDS": str(BACKUP_PERIOD_SECONDS),
        "REDIS_CLI": redis_cli,
        "WORK_DIR": work_dir,
        # The launcher's: which program to fetch from the bucket, and where it keeps the last copy.
        "TOOLS_KEY": BACKUP_TOOL_KEY,
        "STATE_DIR": state_dir,
    }


def render_backup_unit(ports: tuple[int, ...], env_file: str = BACKUP_ENV_PATH, sandbox: str = "") -> str:
    """The oneshot the timer starts. Its whys live here, not in user data (EC2's 16 KB):
    - After=, not Wants=: a run never starts a Redis process.
    - root, as redis-password-sync: the instance role's credentials come from the metadata service,
      which is fenced off from the redis user; the snapshot stays in a root-only StateDirectory on disk
      (not /run, a tmpfs: memory).
    - Nice and idle-ish I/O: sessions come first.
    - `sandbox`: systemd.aws_sandbox (the snapshot goes to its StateDirectory, which stays writable).
    - The script bounds each snapshot (15 min; up to 3 of them, 30 s apart, while a rebalance moves
      a master's slots) and each upload (30 min); TimeoutStartSec ends a run before the next hour's.
    """
    units = " ".join(redis_unit(p) for p in ports)
    return (
        "[Unit]\n"
        "Description=Snapshot this server's Redis masters (RDB) to the stack's S3 bucket\n"
        f"After=network-online.target {AUTH_UNIT} {units}\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"Environment=PATH={SEARCH_PATH}\n"
        f"EnvironmentFile={AUTH_ENV_PATH}\n"
        f"EnvironmentFile={env_file}\n"
        f"ExecStart={OBSERVE_PATH}\n"
        f"StateDirectory={Path(BACKUP_WORK_DIR).name} {Path(STATE_DIR).name}\n"
        "StateDirectoryMode=0700\n"
        "Nice=10\n"
        "IOSchedulingClass=best-effort\n"
        "IOSchedulingPriority=7\n"
        "SyslogIdentifier=redis-backup\n"
        "TimeoutStartSec=3300\n"
        f"{sandbox}"
    )


def render_backup_timer() -> str:
    """Every hour at hh:00:15 on every server, no randomized delay: one hour's snapshots form one set,
    as close in time as the servers' clocks (Amazon Time Sync); 15 s clear of redis-password-sync on
    the minute (a rotation rewrites the auth include then). Not Persistent: a run missed while the
    server was off is not caught up at boot, while Redis still loads its RDB."""
    return (
        "[Unit]\n"
        "Description=Snapshot this server's Redis masters to S3 every hour, with every other server\n"
        "\n"
        "[Timer]\n"
        "OnCalendar=*-*-* *:00:15\n"
        "AccuracySec=1s\n"
        "Persistent=false\n"
        f"Unit={BACKUP_UNIT}\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
