"""The operating system and Redis line a stack runs, chosen by the `platform` key.

Everything that differs between platforms is here; topology, security groups,
bootstrap and health are one code path for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Canonical's AWS account, owner of the official Ubuntu AMIs.
CANONICAL_OWNER = "099720109477"


@dataclass(frozen=True)
class Platform:
    name: str
    ubuntu: str
    ami_name_pattern: str
    apt_version: str  # apt version glob, then `apt-mark hold`
    redis_version: str  # major.minor the health check expects
    announce_bus_source: bool  # Redis 7 needs bind-source-addr for its outgoing bus connections
    supports_tls: bool  # Redis 6 and later can speak TLS


PLATFORMS: dict[str, Platform] = {
    "ubuntu-20.04-redis-5.0": Platform(
        name="ubuntu-20.04-redis-5.0",
        ubuntu="20.04",
        ami_name_pattern="ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-*",
        apt_version="5:5.0.7*",
        redis_version="5.0",
        announce_bus_source=False,
        supports_tls=False,
    ),
    "ubuntu-24.04-redis-7.0": Platform(
        name="ubuntu-24.04-redis-7.0",
        ubuntu="24.04",
        ami_name_pattern="ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
        apt_version="5:7.0.15*",
        redis_version="7.0",
        announce_bus_source=True,
        supports_tls=True,
    ),
}

DEFAULT_PLATFORM = "ubuntu-20.04-redis-5.0"
