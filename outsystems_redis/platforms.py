"""The operating system and Redis line a stack runs, chosen by the `platform` key.

Everything that differs between platforms is here; topology, security groups,
bootstrap and health are one code path for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Canonical publishes the current image of each release as a public SSM parameter.
# The parameter resolves to an id, which EC2 launches even once Canonical has
# deprecated the image (as it does for 20.04's older images now that 20.04 left
# standard support): a name search with get_ami would skip those silently.
CANONICAL_AMI_PARAMETER = "/aws/service/canonical/ubuntu/server/{release}/stable/current/amd64/hvm/{volume}/ami-id"


@dataclass(frozen=True)
class Platform:
    name: str
    ubuntu: str
    ami_parameter: str  # Canonical's public SSM parameter holding the current AMI id
    apt_version: str  # apt version glob, then `apt-mark hold`
    redis_version: str  # major.minor the health check expects
    announce_bus_source: bool  # Redis 7 needs bind-source-addr for its outgoing bus connections
    supports_tls: bool  # Redis 6 and later can speak TLS
    diskless_sync: bool  # Redis 7 sends a full sync over the socket by default (repl-diskless-sync yes)
    aws_cli_snap: bool  # the AWS CLI is a snap (24.04; Ubuntu has no apt package), else apt's awscli (20.04)


PLATFORMS: dict[str, Platform] = {
    "ubuntu-20.04-redis-5.0": Platform(
        name="ubuntu-20.04-redis-5.0",
        ubuntu="20.04",
        ami_parameter=CANONICAL_AMI_PARAMETER.format(release="20.04", volume="ebs-gp2"),
        apt_version="5:5.0.7*",
        redis_version="5.0",
        announce_bus_source=False,
        supports_tls=False,
        diskless_sync=False,
        aws_cli_snap=False,
    ),
    "ubuntu-24.04-redis-7.0": Platform(
        name="ubuntu-24.04-redis-7.0",
        ubuntu="24.04",
        ami_parameter=CANONICAL_AMI_PARAMETER.format(release="24.04", volume="ebs-gp3"),
        apt_version="5:7.0.15*",
        redis_version="7.0",
        announce_bus_source=True,
        supports_tls=True,
        diskless_sync=True,
        aws_cli_snap=True,
    ),
}

DEFAULT_PLATFORM = "ubuntu-20.04-redis-5.0"
