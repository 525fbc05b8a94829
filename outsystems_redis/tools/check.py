"""Check a stack's configuration without the Pulumi CLI or AWS.

    python -m outsystems_redis.tools.check --stack prod [--config FILE]

Runs the checks `pulumi up` runs before it asks AWS anything (outsystems_redis/settings.py: the same code, the
same messages), then lists the checks that only `pulumi up` can run because they need AWS's answers, and
why. Exit codes: 0 every check here passed (warnings allowed), 2 a mistake in the stack file or the
command line (one line naming the key or the file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from outsystems_redis.errors import SettingsError
from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.settings import Settings, load_settings
from outsystems_redis.tools.stack_file import StackFile, StackFileError, read, stack_argument


def left_for_deploy(settings: Settings, stack_file: StackFile) -> list[str]:
    """The checks `pulumi up` runs with AWS's answers (session_store.look_up), one line each: what and why."""
    m = settings.minimums
    vpc = f"VPC {settings.vpc_id}" if settings.vpc_id else "the region's default VPC"
    lines = [
        f"vpcId {settings.vpc_id}: a VPC of this account and region" if settings.vpc_id
        else "vpcId (unset): the region has a default VPC",
        f"instanceType {settings.instance_type}: x86_64 and the OutSystems {m.tier} minimums ({m.vcpus} vCPU, "
        f"{m.memory_mib / 1024:g} GiB, > {m.clock_ghz:g} GHz sustained, not burstable), from EC2's facts about "
        "the type",
        f"subnetCidrs {', '.join(settings.subnet_cidrs)}: inside the CIDR blocks of {vpc}, and overlapping none "
        "of its subnets but this stack's own, as EC2 reports them",
    ]
    if settings.availability_zones:
        lines.append(f"availabilityZones {', '.join(settings.availability_zones)}: each offers "
                     f"{settings.instance_type}, from EC2")
    else:
        lines.append(f"availabilityZones (unset): the region has {len(settings.subnet_cidrs)} zone(s) for the "
                     f"subnets, each offering {settings.instance_type}, from EC2")
    if not (settings.nat_gateway_id or settings.nat_subnet_id):
        lines.append(f"natGatewayId/natSubnetId (unset): {vpc} has a default (public) subnet for the NAT gateway")
    if not (settings.front_end_cidrs or settings.front_end_security_group_ids):
        lines.append(f"frontEndCidrs (unset): the CIDR of {vpc}, from EC2, as the front-ends' range")
    if not settings.ami_id:
        lines.append(f"amiId (unset): {PLATFORMS[settings.platform].name}'s image, from Canonical's public "
                     "Parameter Store parameter")
    if not settings.tool_writers:
        lines.append("toolWriters (unset): the IAM role or user running `pulumi up`, from STS")
    for key in stack_file.encrypted:
        lines.append(f"{key}: encrypted (secure:); reading it needs the stack's secrets provider, so its rules "
                     "are checked when `pulumi up` decrypts it")
    return lines


def warnings(stack_file: StackFile) -> list[str]:
    found = []
    if "redisPassword" in stack_file.raw:
        found.append(f"redisPassword is in plain text in {stack_file.path.name}: anyone who reads the file or "
                     "the repository has the store's password. Remove it and run "
                     "`pulumi config set --secret redisPassword` (or unset it: the program generates one)")
    return found


def run(stack: str, path: Path | None, out: TextIO, err: TextIO) -> int:
    try:
        stack_file = read(stack, path)  # its errors name the file, or the stack
    except (StackFileError, SettingsError) as exc:
        print(exc, file=err)
        return 2
    try:
        settings = load_settings(stack_file.raw, stack)
    except SettingsError as exc:
        print(f"{stack_file.path.name}: {exc}", file=err)
        return 2
    layout = (f"{settings.servers} servers, a Redis Cluster" if settings.cluster
              else "1 server, non-production")
    print(f"{stack_file.path.name}: every check that needs no AWS passed ({layout}; {settings.instance_type}; "
          f"platform {settings.platform}{'; TLS' if settings.tls else ''}).", file=out)
    print("Left for `pulumi up`, which asks AWS:", file=out)
    for line in left_for_deploy(settings, stack_file):
        print(f"  - {line}", file=out)
    for line in warnings(stack_file):
        print(f"WARNING: {line}", file=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m outsystems_redis.tools.check",
        description="Check a stack's configuration as `pulumi up` does, without the Pulumi CLI or AWS.",
        epilog="Example: python -m outsystems_redis.tools.check --stack prod. Exit codes: 0 passed (warnings allowed), "
               "2 a mistake (the line names the key or the file).",
    )
    p.add_argument("--stack", type=stack_argument, required=True, help="the stack whose Pulumi.<stack>.yaml to check")
    p.add_argument("--config", type=Path, help="the stack file (default Pulumi.<stack>.yaml in the current directory)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.stack, args.config, sys.stdout, sys.stderr)


if __name__ == "__main__":
    from outsystems_redis.tools.cli import exit_with

    exit_with(main)
