"""A production session store on Redis 7.0 with TLS: clients, replication and the cluster bus all encrypted.

The store makes a private CA and one certificate per server; the front-ends must trust the CA
(the `caCertificate` output) to verify the servers.
"""

import pulumi

from outsystems_redis.pulumi.session_store import RedisSessionStore, SessionStoreArgs

config = pulumi.Config()
store = RedisSessionStore(
    "sessions",
    SessionStoreArgs(
        servers=3,
        platform="ubuntu-24.04-redis-7.0",
        tls=True,
        subnet_cidrs=config.require_object("subnetCidrs"),
        front_end_cidrs=config.require_object("frontEndCidrs"),
        alarm_email=config.get("alarmEmail"),
    ),
)

pulumi.export("redisVersion", store.redis_version)
pulumi.export("caCertificate", store.ca_certificate)
pulumi.export("connectionString", store.connection_string)
pulumi.export("alarmTopicArn", store.alarm_topic_arn)
