"""ComponentResource: one OutSystems session store (network, password, servers, post-deploy check).

Wiring only. The decisions come in as plain values: the validated Settings,
the topology, the facts looked up from AWS, and the rendered user-data.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_random as random
import pulumi_tls as tls

from components.backup_bucket import server_statements
from components.network import NetworkArgs, RedisNetwork
from components.observability import ObservabilityArgs, RedisObservability, WatchedServer
from components.parameters import (
    CA_VALIDITY_HOURS,
    EARLY_RENEWAL_HOURS,
    SERVER_VALIDITY_HOURS,
    password_parameter,
    server_certificate_ips,
    tls_ca_parameter,
    tls_cert_parameter,
    tls_key_parameter,
)
from components.platforms import PLATFORMS
from components.render.cloud_config import encode_user_data, render_cloud_config
from components.render.fetched import fetched_tools
from components.server import RedisServer, ServerArgs
from components.settings import Settings, merge_tags
from components.topology import Topology, build_topology

# What SSM Session Manager and Run Command (rolling maintenance: components.maintenance)
# need on the instance, and nothing more: the agent registers (UpdateInstanceInformation)
# and takes Run Command's messages through ec2messages. The managed policy
# AmazonSSMManagedInstanceCore would also grant ssm:GetParameter on every
# parameter in the account; the servers may read only their own password.
SESSION_MANAGER_ACTIONS = [
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
]


@dataclass
class EnvironmentArgs:
    settings: Settings
    vpc_id: str
    zones: list[str]
    front_end_cidrs: list[str]  # already defaulted (dev: the VPC's CIDR)
    ami_id: str
    memory_mib: int
    vcpus: int
    nat_subnet_id: str | None
    region: str


def hsconf_snippet(connection_string: str) -> str:
    """The block an administrator pastes into each front-end's server.hsconf."""
    return (
        '<InMemorySessionConfiguration ProviderKey="Redis">\n'
        f'  <ConnectionString encrypted="false">{connection_string}</ConnectionString>\n'
        "</InMemorySessionConfiguration>"
    )


def health_check_command(settings: Settings, nodes: list[str]) -> str:
    """The post-deploy check, run from the project directory with the stack's virtualenv."""
    args = [".venv/bin/python", "-m", "operator_tools.health", "--nodes", ",".join(nodes)]
    if settings.cluster:
        args.append("--cluster")
    args += ["--expect-version", PLATFORMS[settings.platform].redis_version]
    if settings.tls:
        # The CA's PEM arrives in the environment: no file to write or clean up.
        args += ["--cacert-env", "REDIS_CA_CERT"]
    args += ["--wait", str(settings.health_check_timeout)]
    return shlex.join(args)


class RedisEnvironment(pulumi.ComponentResource):
    def __init__(self, name: str, args: EnvironmentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("outsystems:redis:Environment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        # The user's tags (config `tags`) on every resource that takes tags; ours win on a conflict.
        tags = merge_tags(s.tags, {"Project": "outsystems-redis", "Stack": s.stack, "OutsystemsTier": s.minimums.tier})
        topology = build_topology(s.servers, s.subnet_cidrs, s.port, name_prefix=f"{name}-server")

        if s.redis_password is not None:
            password: pulumi.Output[str] = pulumi.Output.secret(s.redis_password)
        else:
            # Letters and digits only: always safe in a StackExchange.Redis
            # connection string and in redis.conf. The result is a secret.
            password = pulumi.Output.secret(
                random.RandomPassword(
                    f"{name}-password",
                    length=40,
                    special=False,
                    min_upper=2,
                    min_lower=2,
                    min_numeric=2,
                    opts=child,
                ).result
            )
        self.parameter = aws.ssm.Parameter(
            f"{name}-password",
            name=password_parameter(s.stack),
            type="SecureString",
            value=password,
            description="Redis password of the OutSystems session store (requirepass/masterauth)",
            tags=tags,
            opts=child,
        )

        self.network = RedisNetwork(
            f"{name}-network",
            NetworkArgs(
                vpc_id=args.vpc_id,
                subnet_cidrs=list(s.subnet_cidrs),
                zones=args.zones,
                client_ports=list(topology.client_ports),
                bus_ports=list(topology.bus_ports),
                front_end_cidrs=args.front_end_cidrs,
                front_end_security_group_ids=list(s.front_end_security_group_ids),
                nat_gateway_id=s.nat_gateway_id,
                nat_subnet_id=args.nat_subnet_id,
                tags=tags,
            ),
            opts=child,
        )

        role = aws.iam.Role(
            f"{name}-server-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags=tags,
            opts=child,
        )
        self.ca_certificate: pulumi.Output[str] | None = None
        tls_parameters = self._certificates(name, s.stack, topology, tags) if s.tls else []
        self.observability = RedisObservability(
            f"{name}-observability",
            ObservabilityArgs(settings=s, region=args.region, tags=tags, server_role_arn=role.arn,
                              tools=fetched_tools()),
            opts=child,
        )
        obs = self.observability
        readable = [self.parameter.arn, *[p.arn for p in tls_parameters], obs.bucket_parameter.arn]
        policy = aws.iam.RolePolicy(
            f"{name}-server-policy",
            role=role.id,
            policy=pulumi.Output.all(
                logs=obs.log_group.arn, bucket=obs.bucket.arn, readable=pulumi.Output.all(*readable)
            ).apply(
                lambda arns: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            # Only this stack's own parameters: the password, the TLS material when on,
                            # and the backup bucket's name.
                            {
                                "Sid": "ReadOwnSecrets",
                                "Effect": "Allow",
                                "Action": "ssm:GetParameter",
                                "Resource": list(arns["readable"]),
                            },
                            {
                                "Sid": "SessionManager",
                                "Effect": "Allow",
                                "Action": SESSION_MANAGER_ACTIONS,
                                "Resource": "*",
                            },
                            # Metrics in the stack's namespace, its own log group, its own bucket prefixes.
                            *server_statements(arns["logs"], arns["bucket"]),
                        ],
                    }
                )
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-server-profile", role=role.name, tags=tags, opts=child)

        self.servers: list[RedisServer] = []
        for server in topology.servers:
            server_tags = merge_tags(tags, {
                "RedisServerIndex": str(server.index),
                "RedisRoles": ",".join(f"{p.role}:{p.port}" for p in server.processes),
                "VCpus": str(args.vcpus),
                "MemoryMiB": str(args.memory_mib),
            })
            self.servers.append(
                RedisServer(
                    server.name,
                    ServerArgs(
                        ami_id=args.ami_id,
                        instance_type=s.instance_type,
                        subnet_id=self.network.subnets[server.subnet].id,
                        private_ip=server.private_ip,
                        security_group_id=self.network.security_group_id,
                        instance_profile=profile.name,
                        user_data_base64=encode_user_data(
                            render_cloud_config(
                                s,
                                topology,
                                server.index,
                                memory_mib=args.memory_mib,
                                password_parameter=password_parameter(s.stack),
                                region=args.region,
                            )
                        ),
                        root_volume_gib=s.root_volume_gib,
                        protect=s.protect,
                        rebuild=server.index + 1 in s.replace_servers,
                        tags=server_tags,
                        # The secrets in Parameter Store, the right to read them, the way out, and
                        # where the metrics, logs and snapshots go.
                        depends_on=[
                            self.parameter, *tls_parameters, profile, policy, *self.network.ready,
                            *obs.first_boot_needs,
                        ],
                        region=args.region,
                        alarm_actions=[obs.topic_arn],
                    ),
                    opts=child,
                )
            )

        self.topology = topology
        self.private_ips = [srv.private_ip for srv in self.servers]
        self.health_check = None
        if s.health_check:
            nodes = [p.address for p in topology.masters] + [p.address for p in topology.replicas]
            check = health_check_command(s, nodes)
            self.health_check = command.local.Command(
                f"{name}-health-check",
                create=check,
                update=check,
                # A new password changes the environment, so the check runs again and waits
                # (--wait) until every server has taken it (redis-password-sync, every minute).
                environment={"REDIS_PASSWORD": password, **({"REDIS_CA_CERT": self.ca_certificate} if s.tls else {})},
                # Runs again whenever a server is created or replaced.
                triggers=[srv.instance.id for srv in self.servers],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[srv.instance for srv in self.servers],
                ),
            )

        # The alarms come once the check has seen every server healthy: a server still in its first
        # boot publishes nothing, and its heartbeat alarm would page for a server not yet in service.
        obs.watch(
            [WatchedServer(srv_name.name, srv.instance.id)
             for srv_name, srv in zip(topology.servers, self.servers, strict=True)],
            after=[self.health_check] if self.health_check is not None else [],
        )

        # With the check on, the connection string (and hsconf snippet) resolve only once
        # every Redis process has accepted this password: after a password change the
        # outputs never hand OutSystems a password the servers still refuse.
        accepted = [self.health_check.stdout] if self.health_check is not None else []
        self.connection_string = pulumi.Output.secret(
            pulumi.Output.all(password, *accepted).apply(lambda v: topology.connection_string(v[0], s.tls))
        )
        self.hsconf = pulumi.Output.secret(self.connection_string.apply(hsconf_snippet))

        self.register_outputs(
            {
                "private_ips": self.private_ips,
                "subnet_ids": self.network.subnet_ids,
                "security_group_id": self.network.security_group_id,
                "connection_string": self.connection_string,
            }
        )

    def _certificates(self, name: str, stack: str, topology: Topology, tags: dict[str, str]) -> list[aws.ssm.Parameter]:
        """A private CA and one certificate per server, delivered through Parameter Store."""
        child = pulumi.ResourceOptions(parent=self)
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"outsystems-redis {stack} CA", organization="outsystems-redis"
            ),
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing"],
            opts=child,
        )
        self.ca_certificate = ca.cert_pem
        parameters = [
            aws.ssm.Parameter(
                f"{name}-tls-ca",
                name=tls_ca_parameter(stack),
                type="String",
                value=ca.cert_pem,
                description="CA certificate of the Redis servers' TLS",
                tags=tags,
                opts=child,
            )
        ]
        for server in topology.servers:
            key = tls.PrivateKey(f"{server.name}-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            request = tls.CertRequest(
                f"{server.name}-tls-request",
                private_key_pem=key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(common_name=server.private_ip, organization="outsystems-redis"),
                ip_addresses=server_certificate_ips(server),
                opts=child,
            )
            cert = tls.LocallySignedCert(
                f"{server.name}-tls-cert",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca.cert_pem,
                validity_period_hours=SERVER_VALIDITY_HOURS,
                early_renewal_hours=EARLY_RENEWAL_HOURS,
                # Server and client: the same certificate serves clients and dials peers
                # on the cluster bus and for replication.
                allowed_uses=["digital_signature", "key_encipherment", "server_auth", "client_auth"],
                opts=child,
            )
            parameters += [
                aws.ssm.Parameter(
                    f"{server.name}-tls-cert",
                    name=tls_cert_parameter(stack, server.index),
                    type="String",
                    value=cert.cert_pem,
                    tags=tags,
                    opts=child,
                ),
                aws.ssm.Parameter(
                    f"{server.name}-tls-key",
                    name=tls_key_parameter(stack, server.index),
                    type="SecureString",
                    value=pulumi.Output.secret(key.private_key_pem),
                    tags=tags,
                    opts=child,
                ),
            ]
        return parameters
