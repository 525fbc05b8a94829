"""The cluster bootstrap script and the environment that tells it where the nodes are.

The script text is shipped verbatim (cluster-bootstrap.sh in server_files/);
only its environment differs between EC2 and loopback.
"""

from __future__ import annotations

from outsystems_redis.render.shipped import shipped_script
from outsystems_redis.server_files import source
from outsystems_redis.topology import INITIAL_CLUSTER_SERVERS, Topology, follows

SCRIPT_PATH = source("cluster-bootstrap.sh")
# The one server that forms the cluster at first boot.
BOOTSTRAP_SERVER = 0


def bootstrap_script() -> str:
    """The exact text of the bootstrap script."""
    return shipped_script(SCRIPT_PATH, library=True)


def bootstrap_env(topology: Topology, *, auth_file: str, redis_cli: str = "redis-cli") -> dict[str, str]:
    """Inputs of the bootstrap: the first servers' masters and their crossed replicas.

    Only servers 0..INITIAL_CLUSTER_SERVERS-1 form the first cluster. The ring
    is closed over those servers, so their placement never changes when more
    servers are added later; servers beyond them join an existing cluster
    (a separate join step, not this script).
    """
    initial = topology.servers[:INITIAL_CLUSTER_SERVERS]
    n = len(initial)
    masters = [s.processes[0] for s in initial]
    replicas = [f"{s.processes[1].address}={masters[follows(s.index, n)].address}" for s in initial]
    return {
        "MASTERS": " ".join(p.address for p in masters),
        "REPLICAS": " ".join(replicas),
        "AUTH_FILE": auth_file,
        "REDIS_CLI": redis_cli,
    }


def render_env_file(env: dict[str, str]) -> str:
    """systemd EnvironmentFile syntax (values quoted; none holds a secret)."""
    return "".join(f'{k}="{v}"\n' for k, v in env.items())
