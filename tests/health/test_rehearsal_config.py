"""Stack files are read the way Pulumi hands config to the program (outsystems_redis/tools/stack_file.py)."""

from __future__ import annotations

import json

import pytest

from outsystems_redis.errors import SettingsError
from outsystems_redis.tools.stack_file import config_strings, read_settings
from outsystems_redis.tools.stack_file import read as read_stack_file
from tests.tools import ROOT


def test_stack_config_keeps_only_the_projects_keys_as_pulumi_strings():
    doc = {"config": {"aws:region": "eu-west-1", "outsystems-redis:servers": 3, "outsystems-redis:protect": False,
                      "outsystems-redis:subnetCidrs": ["10.0.1.0/24"], "outsystems-redis:tags": {"Team": "web"},
                      "outsystems-redis:redisPassword": {"secure": "v1:abc"}}}
    raw, encrypted = config_strings(doc)
    assert raw == {"servers": "3", "protect": "false", "subnetCidrs": json.dumps(["10.0.1.0/24"]),
                   "tags": json.dumps({"Team": "web"})}
    assert encrypted == ("redisPassword",)


def test_both_shipped_stacks_load():
    assert not read_settings("dev").cluster
    prod = read_settings("prod")
    assert prod.cluster and prod.servers >= 3
    assert (ROOT / "Pulumi.prod.yaml").exists()


def test_a_plain_text_password_is_checked_then_never_kept(tmp_path):
    """The rehearsal and maintenance refuse a password `pulumi up` would refuse, and never use a real one."""
    path = tmp_path / "Pulumi.mine.yaml"
    path.write_text("config:\n  outsystems-redis:subnetCidrs: [172.31.128.0/24]\n"
                    "  outsystems-redis:redisPassword: abcde\n")
    with pytest.raises(SettingsError, match="redisPassword"):
        read_settings("mine", path)
    path.write_text("config:\n  outsystems-redis:subnetCidrs: [172.31.128.0/24]\n"
                    "  outsystems-redis:redisPassword: abcdefghijklmnopqrstuvwxyz0123\n")
    assert read_settings("mine", path).redis_password is None


MINE = """config:
  aws:region: eu-west-1
  outsystems-redis:subnetCidrs: [172.31.128.0/24]
  outsystems-redis:protect: false
  outsystems-redis:tags: {Team: web, CostCenter: "42"}
  outsystems-redis:redisPassword:
    secure: v1:AAAABBBBCCCC
"""


def test_the_tests_mock_harnesses_read_stack_files_by_the_same_rule(tmp_path):
    """The mock harnesses (tests/unit/program.py, tests/policy/harness.py) hand a stack file to the program as
    the tools do: a tags map as JSON (a reader of their own once made it a Python repr), false as `false`, and
    a `secure:` value refused by its key rather than handed over as JSON text."""
    from tests.unit.program import config_for_pulumi, stack_config

    (tmp_path / "Pulumi.mine.yaml").write_text(MINE)
    config = stack_config("mine", tmp_path)
    with pytest.raises(AssertionError, match="outsystems-redis:redisPassword"):
        config_for_pulumi(config)
    handed = config_for_pulumi({**config, "outsystems-redis:redisPassword": "Sixteen-or-more-characters-42"})
    assert json.loads(handed["outsystems-redis:tags"]) == {"Team": "web", "CostCenter": "42"}
    assert handed["outsystems-redis:protect"] == "false" and handed["aws:region"] == "eu-west-1"
    # The tools read the same file to the same strings, under the project's names.
    tools = read_stack_file("mine", tmp_path / "Pulumi.mine.yaml")
    assert tools.raw == {k.partition(":")[2]: v for k, v in handed.items()
                         if k.startswith("outsystems-redis:") and k != "outsystems-redis:redisPassword"}
    assert tools.encrypted == ("redisPassword",)
