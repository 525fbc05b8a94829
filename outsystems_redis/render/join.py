"""The cluster join script and the environment that tells a server where its peers are.

Servers 0..INITIAL_CLUSTER_SERVERS-1 form the cluster (cluster-bootstrap.sh on
server 0); every later server joins it with cluster-join.sh in server_files/,
shipped verbatim. Every cluster server runs that script: a server that boots
empty at a known address (a replacement, a wiped disk) rejoins with it,
whatever its index. Server k's inputs name only servers 0..k (servers below
INITIAL_CLUSTER_SERVERS: the first servers, which are fixed), so its user-data
is the same whatever the final server count: raising 4 -> 6 never changes server 3.
"""

from __future__ import annotations

from outsystems_redis.render.shipped import shipped_script
from outsystems_redis.server_files import source
from outsystems_redis.topology import INITIAL_CLUSTER_SERVERS, MASTER_PORT, REPLICA_PORT, Topology

SCRIPT_PATH = source("cluster-join.sh")
# Percent off equal that `redis-cli --cluster rebalance` tolerates: 1% of 16384/6 is ~27 slots.
REBALANCE_THRESHOLD = 1


def join_script() -> str:
    """The exact text of the join script."""
    return shipped_script(SCRIPT_PATH, library=True)


def runs_join(topology: Topology, server: int) -> bool:
    """Every cluster server (re)joins by itself: servers past the first ones join at first boot, and
    any server that boots empty at a known address rejoins."""
    return topology.cluster and 0 <= server < len(topology.servers)


def join_env(topology: Topology, server: int, *, auth_file: str, redis_cli: str = "redis-cli") -> dict[str, str]:
    """Inputs of the join on server `server`: the servers up to and including it in index order (for one
    of the first servers: those first servers), and its index among them."""
    if not runs_join(topology, server):
        raise ValueError(f"server {server} is not a server of a cluster; nothing to join")
    known = topology.servers[: max(server + 1, INITIAL_CLUSTER_SERVERS)]
    return {
        "SERVERS": " ".join(s.private_ip for s in known),
        "SERVER_INDEX": str(server),
        "MASTER_PORT": str(MASTER_PORT),
        "REPLICA_PORT": str(REPLICA_PORT),
        "AUTH_FILE": auth_file,
        "REDIS_CLI": redis_cli,
        "REBALANCE_THRESHOLD": str(REBALANCE_THRESHOLD),
    }
