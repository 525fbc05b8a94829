"""ComponentResource: the private subnets, their route table, egress NAT and the Redis security group.

Wiring only; every decision (CIDRs, ports, sources) arrives already made.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from outsystems_redis.settings import merge_tags


@dataclass
class NetworkArgs:
    vpc_id: str
    subnet_cidrs: list[str]
    zones: list[str]
    client_ports: list[int]  # Redis ports the front-ends use
    bus_ports: list[int]  # cluster bus ports, Redis servers only
    front_end_cidrs: list[str]
    front_end_security_group_ids: list[str]
    nat_gateway_id: str | None  # an existing NAT gateway; None: create one
    nat_subnet_id: str | None  # public subnet for the NAT this component creates
    tags: dict[str, str]


def _port_range(ports: list[int]) -> tuple[int, int]:
    """Ports are contiguous (7000-7001, 17000-17001, or one port): one rule per source covers them."""
    return min(ports), max(ports)


class RedisNetwork(pulumi.ComponentResource):
    subnet_ids: pulumi.Output[list[str]]
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("outsystems:redis:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.subnets = [
            aws.ec2.Subnet(
                f"{name}-subnet-{i + 1}",
                vpc_id=args.vpc_id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=merge_tags(args.tags, {"Name": f"{name}-subnet-{i + 1}"}),
                opts=child,
            )
            for i, (cidr, zone) in enumerate(zip(args.subnet_cidrs, args.zones, strict=True))
        ]

        if args.nat_gateway_id:
            nat_gateway_id: pulumi.Input[str] = args.nat_gateway_id
        else:
            # Egress for apt and SSM only. A NAT gateway is billed per hour and
            # per GB; the README states the cost.
            eip = aws.ec2.Eip(f"{name}-nat-ip", domain="vpc", tags=merge_tags(args.tags, {"Name": f"{name}-nat"}),
                              opts=child)
            nat = aws.ec2.NatGateway(
                f"{name}-nat",
                allocation_id=eip.id,
                subnet_id=args.nat_subnet_id,
                connectivity_type="public",
                tags=merge_tags(args.tags, {"Name": f"{name}-nat"}),
                opts=child,
            )
            nat_gateway_id = nat.id

        # The only route out is the NAT gateway: no internet gateway route, so
        # nothing in these subnets is reachable from outside the VPC.
        self.route_table = aws.ec2.RouteTable(
            f"{name}-routes",
            vpc_id=args.vpc_id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat_gateway_id)],
            tags=merge_tags(args.tags, {"Name": f"{name}-private"}),
            opts=child,
        )
        # What a server's first boot needs before it starts: its subnet routed
        # through the NAT gateway, and the security group rules (egress to apt and
        # SSM, its peers' ports). Servers depend on all of it explicitly.
        self.ready: list[pulumi.Resource] = [self.route_table, *([] if args.nat_gateway_id else [nat])]
        for i, subnet in enumerate(self.subnets):
            self.ready.append(
                aws.ec2.RouteTableAssociation(
                    f"{name}-routes-{i + 1}", subnet_id=subnet.id, route_table_id=self.route_table.id, opts=child
                )
            )

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-redis",
            vpc_id=args.vpc_id,
            description="Redis servers for OutSystems sessions: front-ends in, cluster bus between servers",
            tags=merge_tags(args.tags, {"Name": f"{name}-redis"}),
            opts=child,
        )
        sg = self.security_group.id
        lo, hi = _port_range(args.client_ports)

        def rule(kind: type, suffix: str, first: int, last: int, text: pulumi.Input[str],
                 **source: pulumi.Input[str]) -> None:
            self.ready.append(
                kind(f"{name}-{suffix}", security_group_id=sg, ip_protocol="tcp", from_port=first, to_port=last,
                     description=text, tags=args.tags, opts=child, **source)
            )

        ingress, egress = aws.vpc.SecurityGroupIngressRule, aws.vpc.SecurityGroupEgressRule
        for i, cidr in enumerate(args.front_end_cidrs):
            rule(ingress, f"front-end-cidr-{i + 1}", lo, hi, f"Redis from OutSystems front-ends {cidr}",
                 cidr_ipv4=cidr)
        for i, group in enumerate(args.front_end_security_group_ids):
            # concat: the group may be an Output (one the caller's program creates beside the store).
            rule(ingress, f"front-end-group-{i + 1}", lo, hi,
                 pulumi.Output.concat("Redis from OutSystems front-end group ", group),
                 referenced_security_group_id=group)
        # Servers talk to each other on the client ports too (replication, and
        # redis-cli --cluster during bootstrap and scale-out), and on the bus.
        peers = [("redis-peers", lo, hi, "Redis between Redis servers")]
        if args.bus_ports:
            peers.append(("cluster-bus", *_port_range(args.bus_ports), "Redis Cluster bus between Redis servers"))
        for suffix, first, last, text in peers:
            rule(ingress, suffix, first, last, text, referenced_security_group_id=sg)
            rule(egress, f"{suffix}-out", first, last, text, referenced_security_group_id=sg)
        # apt mirrors are plain HTTP (80); SSM, S3 and the security mirror use HTTPS (443).
        for port, what in ((80, "apt package mirrors"), (443, "SSM Session Manager, Parameter Store, apt over HTTPS")):
            rule(egress, f"egress-{port}", port, port, f"Out to {what}, through the NAT gateway", cidr_ipv4="0.0.0.0/0")

        self.subnet_ids = pulumi.Output.all(*[s.id for s in self.subnets])
        self.security_group_id = sg
        self.register_outputs({"subnet_ids": self.subnet_ids, "security_group_id": sg})
