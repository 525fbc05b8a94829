"""A team's own program: its front-ends' security group, the session store, and a secret for the deploy pipeline.

The store is one resource among the program's others: it takes the security group this program
creates (an Output) as its front-ends, a password from this program's secret config, and its
connection string lands in a Secrets Manager secret that the OutSystems deployment reads.
"""

import pulumi
import pulumi_aws as aws

from outsystems_redis.pulumi.session_store import RedisSessionStore, SessionStoreArgs

config = pulumi.Config()
vpc_id = config.require("vpcId")

front_ends = aws.ec2.SecurityGroup(
    "outsystems-front-ends",
    vpc_id=vpc_id,
    description="OutSystems front-end servers",
    tags={"Team": "outsystems-platform"},
)

store = RedisSessionStore(
    "sessions",
    SessionStoreArgs(
        vpc_id=vpc_id,
        subnet_cidrs=[config.require("redisSubnetCidr")],
        front_end_security_group_ids=[front_ends.id],
        redis_password=config.require_secret("redisPassword"),
        tags={"Team": "outsystems-platform"},
    ),
)

connection = aws.secretsmanager.Secret(
    "session-store-connection",
    description="StackExchange.Redis connection string of the OutSystems session store",
    tags={"Team": "outsystems-platform"},
)
aws.secretsmanager.SecretVersion(
    "session-store-connection",
    secret_id=connection.id,
    secret_string=store.connection_string,
)

pulumi.export("frontEndSecurityGroupId", front_ends.id)
pulumi.export("connectionSecretArn", connection.arn)
pulumi.export("serverPrivateIps", store.private_ips)
