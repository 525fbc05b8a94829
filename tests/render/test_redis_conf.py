"""Every rendered redis.conf starts under a real Redis 5.0 and 7.0, with no warning about it."""

from __future__ import annotations

import pytest

from outsystems_redis.platforms import PLATFORMS
from outsystems_redis.render.redis_conf import EC2_PATHS, EVICTION_POLICY, render_redis_conf
from outsystems_redis.sizing import usable_memory_mib
from tests.integration.loopbacks import warnings
from tests.render.stacks import stack
from tests.tools import REDIS_VERSIONS


@pytest.mark.parametrize("version", REDIS_VERSIONS)
@pytest.mark.parametrize("servers", [1, 3])
def test_rendered_conf_starts_without_warnings(loopback_factory, version, servers):
    lo = loopback_factory(version, servers)
    lo.start()
    for p in lo.processes:
        info = lo.client(p).info()
        assert info["redis_version"].startswith(version)
        assert info["cluster_enabled"] == (1 if servers > 1 else 0)
        config = lo.config_get(p, "*")
        assert config["maxmemory-policy"] == EVICTION_POLICY
        assert config["appendonly"] == "no"
        if servers > 1:
            # A replica's full sync starts at once: from disk (5.0), or diskless with no wait for more
            # replicas (7.0: its default waits 5 s, and each master has only the one).
            assert config["repl-diskless-sync"] == "no" or config["repl-diskless-sync-delay"] == "0", config
        assert int(config["maxmemory"]) == usable_memory_mib(lo.memory_mib, lo.settings) << 20
    assert warnings(lo) == []


def test_warning_detector_can_fail(loopback_factory):
    lo = loopback_factory("7.0", 1)
    lo.write_files()
    p = lo.processes[0]
    conf = lo.paths(0).conf(p.port)
    with open(conf, "a") as f:
        f.write("maxmemory 100\n")  # Redis warns: less than 1MB
    lo.start_server(0)  # start() would render the files again
    assert any("maxmemory" in w for w in warnings(lo))


def test_ec2_conf_binds_private_ip_and_loopback_and_announces():
    for servers, platform in [(3, "ubuntu-20.04-redis-5.0"), (3, "ubuntu-24.04-redis-7.0")]:
        settings, topology = stack(servers, platform)
        p = topology.servers[1].processes[1]
        text = render_redis_conf(p, settings, memory_mib=8192)
        assert f"bind {p.host} 127.0.0.1\n" in text
        assert f"cluster-announce-ip {p.host}\n" in text
        assert ("bind-source-addr" in text) == PLATFORMS[platform].announce_bus_source
        assert f"dir {EC2_PATHS.data_dir(7001)}\n" in text
        assert "logfile /var/log/redis/redis-server-7001.log\n" in text
