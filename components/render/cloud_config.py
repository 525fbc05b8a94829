"""Each server's #cloud-config. Placeholder until the cloud-init issue lands."""

from __future__ import annotations

from components.settings import Settings
from components.topology import Topology


def render_cloud_config(
    settings: Settings,
    topology: Topology,
    server: int,
    *,
    memory_mib: int,
    password_parameter: str,
    region: str,
) -> str:
    """The user-data of server `server`. Holds no secret: the password is read from SSM at boot."""
    name = topology.servers[server].name
    return f"#cloud-config\nhostname: {name}\n"
