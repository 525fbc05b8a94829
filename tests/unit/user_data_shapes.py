"""The user-data shapes that tests/unit/test_deploy_limits.py measures and tests/unit/user_data_report.py
reports, and the budget both hold them to."""

from __future__ import annotations

from outsystems_redis.render.cloud_config import EC2_USER_DATA_LIMIT
from tests.unit.program import Program, run_program

INSTANCE = "aws:ec2/instance:Instance"
CURRENT = "ubuntu-24.04-redis-7.0"
LEGACY = "ubuntu-20.04-redis-5.0"
# Every shape the README allows: one server, the first cluster, one and three joiners, on both platforms,
# and with TLS (7.0 only); and the largest `servers` accepted (100) once, on the platform whose user data is
# the largest at every smaller count (checked below). A joiner's user data does not depend on the final
# count (checked below too), so 100 servers on the other platforms would measure the same texts again.
PLATFORM_SHAPES = ((LEGACY, False), (CURRENT, False), (CURRENT, True))
SHAPES = [
    (stack, servers, platform, tls)
    for stack, servers in (("dev", 1), ("prod", 3), ("prod", 4), ("prod", 6))
    for platform, tls in PLATFORM_SHAPES
] + [("prod", 100, CURRENT, True)]


def shape(stack: str, servers: int, platform: str, tls: bool) -> Program:
    overrides = {"outsystems-redis:servers": servers, "outsystems-redis:platform": platform}
    if tls:
        overrides["outsystems-redis:tls"] = True
    return run_program(stack, overrides)


# Below EC2's limit on purpose: the room a fix needs without first moving a script to the bucket. A change
# that passes it moves a program that needs AWS anyway behind the launcher (outsystems_redis/render/fetched.py).
# (15,000 until the fetched programs were signed: the public key and the check cost 448 bytes. 15,500, then
# 15,750, with the metadata fence and Redis 5.0's secret command names. Then redis-auth's own programs,
# redis-fetch-password and redis-fetch-tls, moved behind the launcher, which now retries at a first boot:
# 1,291 bytes less (with what came later). Now 90 % of EC2's limit, as issue 23 asks.)
USER_DATA_BUDGET = EC2_USER_DATA_LIMIT * 90 // 100
# And what the largest shape carries today, at most (issue 23): the cluster join moved behind the launcher
# (4,044 bytes less). A change past it moves a program to the bucket first, or raises this on purpose.
USER_DATA_TARGET = 12 * 1024
