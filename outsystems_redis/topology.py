"""Servers -> Redis processes: hosts, ports, roles and the crossed replica ring.

The ring: the replica on server i follows the master on server i+1 (mod N).
No replica ever shares a server with its master, and when a server dies its
slots fail over to a replica on another server. Placement is a pure function
of the server count, so the bootstrap, the health check and the tests all
agree on it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MASTER_PORT = 7000
REPLICA_PORT = 7001
BUS_PORT_OFFSET = 10000  # Redis Cluster's bus listens on port + 10000
FIRST_HOST = 10  # AWS reserves .0-.3; leave a little room below the servers
# The servers that form the cluster at first boot. Servers beyond these join
# an existing cluster, so raising the count never changes their user-data.
INITIAL_CLUSTER_SERVERS = 3


@dataclass(frozen=True)
class Process:
    host: str
    port: int
    role: str  # "standalone" | "master" | "replica"
    server: int  # index of the server it runs on
    follows: int | None = None  # for a replica: the server whose master it follows

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Server:
    index: int
    name: str
    private_ip: str
    subnet: int  # index into the stack's subnet CIDRs
    processes: tuple[Process, ...]


@dataclass(frozen=True)
class Topology:
    cluster: bool
    servers: tuple[Server, ...]

    @property
    def masters(self) -> tuple[Process, ...]:
        return tuple(p for s in self.servers for p in s.processes if p.role in ("master", "standalone"))

    @property
    def replicas(self) -> tuple[Process, ...]:
        return tuple(p for s in self.servers for p in s.processes if p.role == "replica")

    @property
    def client_ports(self) -> tuple[int, ...]:
        return tuple(sorted({p.port for s in self.servers for p in s.processes}))

    @property
    def bus_ports(self) -> tuple[int, ...]:
        return tuple(p + BUS_PORT_OFFSET for p in self.client_ports) if self.cluster else ()

    def connection_string(self, password: str, tls: bool = False) -> str:
        """The value of <ConnectionString> in OutSystems' server.hsconf (StackExchange.Redis syntax)."""
        return ",".join(p.address for p in self.masters) + f",password={password}" + (",ssl=true" if tls else "")


def follows(server: int, servers: int) -> int:
    """The server whose master the replica on `server` follows: the next one round the ring."""
    return (server + 1) % servers


def server_ip(subnet_cidrs: list[str] | tuple[str, ...], index: int) -> tuple[int, str]:
    """Static private IP of server `index`: round-robin over the subnets, from host .10 up.

    Depends only on the index, so adding servers never moves an existing one.
    """
    subnet = index % len(subnet_cidrs)
    net = ipaddress.IPv4Network(subnet_cidrs[subnet])
    return subnet, str(net.network_address + FIRST_HOST + index // len(subnet_cidrs))


def build_topology(
    servers: int,
    subnet_cidrs: list[str] | tuple[str, ...],
    standalone_port: int = 6379,
    name_prefix: str = "redis",
    hosts: list[str] | None = None,
) -> Topology:
    """`hosts` overrides the addresses (the loopback rehearsal uses 127.0.0.x)."""
    cluster = servers >= 3
    result = []
    for i in range(servers):
        subnet, ip = server_ip(subnet_cidrs, i)
        host = hosts[i] if hosts else ip
        if cluster:
            procs: tuple[Process, ...] = (
                Process(host, MASTER_PORT, "master", i),
                Process(host, REPLICA_PORT, "replica", i, follows(i, servers)),
            )
        else:
            procs = (Process(host, standalone_port, "standalone", i),)
        result.append(Server(i, f"{name_prefix}-{i + 1}", host, subnet, procs))
    return Topology(cluster, tuple(result))
