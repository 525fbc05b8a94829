"""Roles restore themselves: redis-role-restore and its timer, on every cluster server.

role-restore.sh in server_files/ (shipped as redis-role-restore) gives a server
its master role back with a plain CLUSTER FAILOVER once the cluster is whole
again after a failover. Pure text, no pulumi.
"""

from __future__ import annotations

from outsystems_redis.render.shipped import shipped_script
from outsystems_redis.render.systemd import SANDBOX, SEARCH_PATH, redis_unit
from outsystems_redis.server_files import source
from outsystems_redis.topology import MASTER_PORT, Topology

ROLE_RESTORE_SCRIPT = source("role-restore.sh")
ROLE_RESTORE_PATH = "/usr/local/sbin/redis-role-restore"
ROLE_RESTORE_ENV_PATH = "/etc/redis/role-restore.env"
ROLE_RESTORE_UNIT = "redis-role-restore.service"
ROLE_RESTORE_TIMER = "redis-role-restore.timer"


def role_restore_script() -> str:
    """The exact text servers run."""
    return shipped_script(ROLE_RESTORE_SCRIPT, library=True)


def role_restore_env(
    topology: Topology, server: int, *, auth_file: str, redis_cli: str = "redis-cli"
) -> dict[str, str]:
    """Inputs of redis-role-restore on server `server` (names and addresses, no secret)."""
    if not topology.cluster:
        raise ValueError("a single server has no roles to restore")
    return {
        "SERVER_IP": topology.servers[server].private_ip,
        "MASTER_PORT": str(MASTER_PORT),
        "AUTH_FILE": auth_file,
        "REDIS_CLI": redis_cli,
    }


def render_role_restore_unit(ports: tuple[int, ...], env_file: str = ROLE_RESTORE_ENV_PATH) -> str:
    units = " ".join(redis_unit(p) for p in ports)
    return (
        "[Unit]\n"
        "Description=Give this server its Redis master role back after a failover, once the cluster is whole\n"
        f"After=network-online.target {units}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "# The auth include is root:redis 0640: the group is enough to read the password.\n"
        "User=redis\n"
        "Group=redis\n"
        f"Environment=PATH={SEARCH_PATH}\n"
        f"EnvironmentFile={env_file}\n"
        f"ExecStart={ROLE_RESTORE_PATH}\n"
        "SyslogIdentifier=redis-role-restore\n"
        f"{SANDBOX}"
        "TimeoutStartSec=50\n"
    )


def render_role_restore_timer() -> str:
    return (
        "[Unit]\n"
        "Description=Check every minute whether this server should take its Redis master role back\n"
        "\n"
        "[Timer]\n"
        "# Half a minute off redis-password-sync, which runs on the minute.\n"
        "OnCalendar=*:*:30\n"
        "# systemd's default AccuracySec=1min would let it fire anywhere in the next minute.\n"
        "AccuracySec=1s\n"
        f"Unit={ROLE_RESTORE_UNIT}\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
