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

# The AWS CLI where Ubuntu has no awscli package (24.04): the wheels pip installs, each only if its SHA-256 is the
# one here. awscli 1.32.46 requires exactly botocore 1.34.46 (noble's own version), which comes as a wheel too:
# Debian's packaging of botocore drops botocore.vendored, which awscli imports at every start (checked on Debian
# 12's; Ubuntu's "+repack" was not checked, and the wheel makes that question moot).
AWS_CLI_WHEELS = (
    "awscli==1.32.46 --hash=sha256:5bd09d4457b3f9a7439f441c4e904db76ed3e4219c0a9a9f3f75c96d3b834805",
    "botocore==1.34.46 --hash=sha256:f54330ba1e8ce31489a4e09b4ba8afbf84be01bbc48dbb31d44897fb7657f7ad",
)
# The rest of what they require, from Ubuntu (noble: s3transfer 0.10.1, PyYAML 6.0.1, jmespath 1.0.1, dateutil
# 2.8.2, urllib3 2.0.7; docutils 0.20.1 and colorama 0.4.6 above awscli's stated bounds:
# tests/integration/test_aws_cli_wheel.py runs every call the servers make on these versions), and pip's own
# wheel to install them with (python3-pip would bring a C compiler with its Recommends).
AWS_CLI_PACKAGES = ("python3-s3transfer", "python3-yaml", "python3-docutils", "python3-colorama", "python3-rsa",
                    "python3-jmespath", "python3-dateutil", "python3-urllib3", "python3-pip-whl")


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
    # The AWS CLI: apt's awscli (20.04), or where Ubuntu has none (24.04: only a snap, which starts through a
    # privileged launcher that no systemd sandbox lets run) the same CLI v1 from PyPI, checked against its digest,
    # with the rest of its dependencies from Ubuntu (AWS_CLI_PACKAGES).
    aws_cli_wheels: tuple[str, ...]  # pip requirements with --hash (AWS_CLI_WHEELS), or none: apt's awscli


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
        aws_cli_wheels=(),
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
        aws_cli_wheels=AWS_CLI_WHEELS,
    ),
}

DEFAULT_PLATFORM = "ubuntu-20.04-redis-5.0"
