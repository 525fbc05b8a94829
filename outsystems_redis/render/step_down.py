"""A clean stop steps down first: redis-step-down, the ExecStop of every Redis process on a cluster server.

step-down.sh in server_files/ (shipped as redis-step-down) hands a master's
slots to its in-sync replica on another server with a plain CLUSTER FAILOVER
before systemd's SIGTERM, so `systemctl stop`, a reboot or a poweroff of a
server moves its masters away instead of leaving its slots unserved for
cluster-node-timeout and an election. Pure text, no pulumi.
"""

from __future__ import annotations

from outsystems_redis.render.shipped import shipped_script
from outsystems_redis.server_files import source
from outsystems_redis.topology import Topology

STEP_DOWN_SCRIPT = source("step-down.sh")
STEP_DOWN_PATH = "/usr/local/sbin/redis-step-down"
STEP_DOWN_ENV_PATH = "/etc/redis/step-down.env"
# Per CLUSTER FAILOVER try (two tries); well inside the drop-in's TimeoutStopSec.
STEP_DOWN_WAIT_SECONDS = 10


def step_down_script() -> str:
    """The exact text servers run."""
    return shipped_script(STEP_DOWN_SCRIPT, library=True)


def step_down_env(
    topology: Topology, server: int, *, auth_file: str, redis_cli: str = "redis-cli"
) -> dict[str, str]:
    """Inputs of redis-step-down on server `server` (names and addresses, no secret); the port is its argument."""
    if not topology.cluster:
        raise ValueError("a single server has no replica to hand its slots to")
    return {
        "SERVER_IP": topology.servers[server].private_ip,
        "AUTH_FILE": auth_file,
        "REDIS_CLI": redis_cli,
        "STEP_DOWN_WAIT_SECONDS": str(STEP_DOWN_WAIT_SECONDS),
    }
