"""Dev-like and prod-like stacks, on both platforms, for the renderer tests."""

from __future__ import annotations

from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.settings import Settings, load_settings
from outsystems_redis.topology import Topology, build_topology

PASSWORD = "Sup3rSecretSessionPw9"  # must never appear in anything rendered
PARAMETER = "/outsystems-redis/test/redis-password"
REGION = "eu-west-1"


def stack(servers: int, platform: str, tls: bool = False) -> tuple[Settings, Topology]:
    raw = {
        "servers": str(servers),
        "platform": platform,
        "subnetCidrs": '["10.20.1.0/24", "10.20.2.0/24", "10.20.3.0/24"]',
        "redisPassword": PASSWORD,
    }
    if tls:
        raw["tls"] = "true"
    if servers >= 3:
        raw["frontEndCidrs"] = '["10.30.0.0/16"]'
    settings = load_settings(raw, "dev" if servers == 1 else "prod")
    return settings, build_topology(settings.servers, settings.subnet_cidrs, settings.port)


STACKS = [(n, p) for n in (1, 3, 4) for p in PLATFORMS]
# TLS is a 7.0-platform option: the same stack shapes with `tls: true`.
TLS_STACKS = [(n, p) for n, p in STACKS if PLATFORMS[p].supports_tls]
