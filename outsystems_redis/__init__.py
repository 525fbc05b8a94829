"""outsystems-redis: the Redis session store OutSystems specifies, on AWS, as a Pulumi component.

    from outsystems_redis.pulumi.session_store import RedisSessionStore, SessionStoreArgs

The folders are the roles (docs/development.md, Layout): the pure core here (settings, sizing, topology, the
health check's judge, ...) and in render/ (pure text out); the Pulumi shell in pulumi/ (the ComponentResources);
what runs on the servers in server_files/; the operator's tools in tools/. This file imports nothing: the
servers' agent carries the package as an empty one.
"""
