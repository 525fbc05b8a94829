"""A production session store in a VPC you already run, whose private subnets leave through your NAT gateway.

The store creates its three private subnets, routes them through natGatewayId (it creates no NAT and no
Elastic IP), and lets in only the front-ends' security group.
"""

import pulumi

from outsystems_redis.pulumi.session_store import RedisSessionStore, SessionStoreArgs

config = pulumi.Config()
store = RedisSessionStore(
    "sessions",
    SessionStoreArgs(
        servers=3,
        vpc_id=config.require("vpcId"),
        nat_gateway_id=config.require("natGatewayId"),
        subnet_cidrs=config.require_object("subnetCidrs"),
        front_end_security_group_ids=config.require_object("frontEndSecurityGroupIds"),
        tags={"CostCenter": "1234", "Owner": "outsystems-platform"},
    ),
)

pulumi.export("serverInstanceIds", store.instance_ids)
pulumi.export("connectionString", store.connection_string)
pulumi.export("hsconfSnippet", store.hsconf)
