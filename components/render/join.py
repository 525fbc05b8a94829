"""The cluster join script and the environment that tells a new server where its peers are.

Servers 0..INITIAL_CLUSTER_SERVERS-1 form the cluster (cluster-bootstrap.sh);
every later server joins it with cluster-join.sh beside this file, shipped
verbatim. Server k's inputs name only servers 0..k, so its user-data is the
same whatever the final server count: raising 4 -> 6 never changes server 3.
"""

from __future__ import annotations

from pathlib import Path

from components.render.shipped import shipped_script
from components.topology import INITIAL_CLUSTER_SERVERS, MASTER_PORT, REPLICA_PORT, Topology

SCRIPT_PATH = Path(__file__).with_name("cluster-join.sh")
# Percent off equal that `redis-cli --cluster rebalance` tolerates: 1% of 16384/6 is ~27 slots.
REBALANCE_THRESHOLD = 1


def join_script() -> str:
    """The exact text of the join script."""
    return shipped_script(SCRIPT_PATH)


def runs_join(topology: Topology, server: int) -> bool:
    """Every cluster server beyond the ones that form the cluster joins it."""
    return topology.cluster and server >= INITIAL_CLUSTER_SERVERS


def join_env(topology: Topology, server: int, *, auth_file: str, redis_cli: str = "redis-cli") -> dict[str, str]:
    """Inputs of the join on server `server`: the servers up to and including it, in index order."""
    if not runs_join(topology, server):
        raise ValueError(f"server {server} forms the cluster; only servers >= {INITIAL_CLUSTER_SERVERS} join")
    return {
        "SERVERS": " ".join(s.private_ip for s in topology.servers[: server + 1]),
        "MASTER_PORT": str(MASTER_PORT),
        "REPLICA_PORT": str(REPLICA_PORT),
        "AUTH_FILE": auth_file,
        "REDIS_CLI": redis_cli,
        "REBALANCE_THRESHOLD": str(REBALANCE_THRESHOLD),
    }
