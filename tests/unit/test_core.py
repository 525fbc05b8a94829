"""The pure core: settings, sizing and topology, without Pulumi."""

from __future__ import annotations

import ast
import ipaddress
import re

import pytest

from outsystems_redis.errors import SettingsError
from outsystems_redis.settings import CONFIG_KEYS, load_settings
from outsystems_redis.sizing import PRODUCTION, InstanceTypeInfo, check_instance_type, usable_memory_mib
from outsystems_redis.topology import build_topology, follows
from tests.tools import ROOT

PROD = {"servers": "3", "subnetCidrs": '["10.0.1.0/24","10.0.2.0/24","10.0.3.0/24"]', "frontEndCidrs": "10.1.0.0/16"}


@pytest.mark.parametrize("servers", [3, 4, 5, 6, 9])
def test_ring_never_puts_a_replica_on_its_masters_server(servers: int) -> None:
    topo = build_topology(servers, ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"])
    masters = {p.server: p for p in topo.masters}
    assert len(masters) == servers and {p.port for p in topo.masters} == {7000}
    followed = [r.follows for r in topo.replicas]
    assert sorted(followed) == list(range(servers))  # every master has exactly one replica
    for replica in topo.replicas:
        assert replica.port == 7001
        assert masters[replica.follows].host != replica.host


def test_adding_servers_never_moves_an_existing_one() -> None:
    three = build_topology(3, ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"])
    six = build_topology(6, ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"])
    assert [s.private_ip for s in six.servers[:3]] == [s.private_ip for s in three.servers]
    assert len({s.private_ip for s in six.servers}) == 6
    for s in six.servers:
        assert ipaddress.ip_address(s.private_ip) in ipaddress.ip_network(["10.0.1.0/24", "10.0.2.0/24",
                                                                            "10.0.3.0/24"][s.subnet])


def test_standalone_topology_and_connection_strings() -> None:
    dev = build_topology(1, ["10.0.9.0/28"])
    assert not dev.cluster and dev.bus_ports == () and dev.client_ports == (6379,)
    assert dev.connection_string("p" * 20) == "10.0.9.10:6379,password=" + "p" * 20
    prod = build_topology(3, ["10.0.1.0/24"])
    assert prod.bus_ports == (17000, 17001)
    assert prod.connection_string("x" * 16).startswith("10.0.1.10:7000,10.0.1.11:7000,10.0.1.12:7000,password=")
    assert follows(2, 3) == 0


def test_settings_defaults_per_tier() -> None:
    dev = load_settings({"subnetCidrs": "10.0.9.0/24"}, "dev")
    assert (dev.servers, dev.instance_type, dev.port, dev.protect, dev.cluster) == (1, "c5.large", 6379, False, False)
    prod = load_settings(PROD, "prod")
    assert (prod.instance_type, prod.protect, prod.cluster, prod.minimums) == ("c5.xlarge", True, True, PRODUCTION)
    assert prod.root_volume_gib == 20 and prod.health_check and prod.health_check_timeout == 900
    assert prod.health_check_via == "cloudwatch"
    direct = load_settings({**PROD, "healthCheckVia": "direct", "healthCheckTimeout": "60"}, "prod")
    assert direct.health_check_timeout == 60
    assert "redis_password" not in repr(load_settings({**PROD, "redisPassword": "a" * 20}, "prod"))


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({**PROD, "port": "7000"}, "port"),
        ({**PROD, "subnetCidrs": "10.0.1.0/24,10.0.1.5/24"}, "subnetCidrs"),  # host bits set
        ({**PROD, "subnetCidrs": "10.0.0.0/12"}, "subnetCidrs"),  # larger than AWS allows
        ({**PROD, "subnetCidrs": "10.0.1.0/28", "servers": "9"}, "subnetCidrs"),  # no room
        ({**PROD, "availabilityZones": '["eu-west-1a"]'}, "availabilityZones"),
        ({**PROD, "frontEndSecurityGroupIds": "default"}, "frontEndSecurityGroupIds"),
        ({**PROD, "protect": "maybe"}, "protect"),
        ({**PROD, "healthCheckVia": "ssh"}, "healthCheckVia"),
        ({**PROD, "healthCheckTimeout": "60"}, "healthCheckTimeout"),  # under 180 through CloudWatch
        ({**PROD, "vpcId": "my-vpc"}, "vpcId"),
        ({**PROD, "servers": "101"}, "servers"),
        ({"servers": "1"}, "subnetCidrs"),
    ],
)
def test_settings_refuse_bad_values_by_key(raw: dict, key: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(raw, "prod")
    assert err.value.key == key


def test_instance_type_check() -> None:
    prod, dev = load_settings(PROD, "prod"), load_settings({"subnetCidrs": "10.0.9.0/24"}, "dev")
    check_instance_type(InstanceTypeInfo("c5.xlarge", 4, 8192, 3.4, False), prod)
    check_instance_type(InstanceTypeInfo("c5.large", 2, 4096, 3.4, False), dev)
    with pytest.raises(SettingsError, match=r"2\.6 GHz"):  # the page says more than 2.6 GHz
        check_instance_type(InstanceTypeInfo("x.large", 4, 8192, 2.6, False), prod)
    with pytest.raises(SettingsError, match="7.5 GiB of memory"):
        check_instance_type(InstanceTypeInfo("y.xlarge", 4, 7680, 3.0, False), prod)


def test_maxmemory_leaves_the_os_room_for_two_processes() -> None:
    prod, dev = load_settings(PROD, "prod"), load_settings({"subnetCidrs": "10.0.9.0/24"}, "dev")
    assert usable_memory_mib(8192, prod) == 3072  # 8 GiB server: 2 GiB for the OS, 3 GiB per process
    assert usable_memory_mib(4096, dev) == 3072
    assert 2 * usable_memory_mib(32768, prod) + 8192 <= 32768


@pytest.mark.parametrize("raw,shown", [
    ({"servers": "3", "subnetCidrs": "[]"}, "config key 'subnetCidrs': got '[]'"),
    ({"subnetCidrs": "10.0.1.0/24", "tls": "yes", "platform": "ubuntu-20.04-redis-5.0"}, "config key 'tls': got 'yes'"),
    ({"subnetCidrs": "10.0.1.0/24", "healthCheck": "maybe"}, "config key 'healthCheck': got 'maybe'"),
    ({"servers": "2"}, "config key 'servers': got 2"),  # a number reads as written
    # A detail of the value, not the whole: shown as checked.
    ({"servers": "3", "subnetCidrs": '["10.0.0.0/8"]'}, "config key 'subnetCidrs': got '10.0.0.0/8'"),
])
def test_a_config_error_shows_the_value_as_the_stack_file_has_it(raw: dict, shown: str) -> None:
    """Not as read_config typed it: `subnetCidrs: []` read `got ()`, and `tls: yes` read `got True`."""
    with pytest.raises(SettingsError) as caught:
        load_settings(raw, "dev" if raw.get("servers", "1") == "1" else "prod")
    assert str(caught.value).startswith(shown), str(caught.value)


def test_an_error_names_every_key_as_its_reader_knows_it() -> None:
    error = SettingsError("availabilityZones", ["a"], lambda n: f"one zone per entry of {n('subnetCidrs')}")
    assert str(error) == "config key 'availabilityZones': got ['a']; allowed: one zone per entry of subnetCidrs"
    arguments = {"availabilityZones": "availability_zones", "subnetCidrs": "subnet_cidrs", "tags": "tags"}
    named = error.named(arguments.__getitem__, "argument")
    assert str(named) == "argument 'availability_zones': got ['a']; allowed: one zone per entry of subnet_cidrs"
    assert SettingsError("tags.Owner", 1, "a string").named(str.upper, "argument").key == "TAGS.Owner"


def test_no_error_text_names_a_config_key_by_hand() -> None:
    """A camelCase key in an error's text reads wrong to a component's caller: texts name other keys through
    SettingsError's namer (`lambda n: ... n('subnetCidrs')`), so both readers see their own names."""
    camel = [k.name for k in CONFIG_KEYS if k.name != k.arg]
    by_hand = []
    for path in sorted((ROOT / "outsystems_redis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            # SettingsError and the helpers that pass their `allowed` on to it.
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("SettingsError", "_int", "_one_of"):
                texts = [c.value for arg in [*node.args[1:], *(k.value for k in node.keywords)]
                         for c in ast.walk(arg) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                # A text that is the key alone is the namer's argument: n('subnetCidrs').
                by_hand += [f"{path.name}:{node.lineno} {key}" for key in camel for text in texts
                            if text != key and re.search(rf"\b{key}\b", text)]
    assert by_hand == []
