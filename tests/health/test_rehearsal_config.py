"""Stack files are read the way Pulumi hands config to the program (operator_tools/stack_file.py)."""

from __future__ import annotations

import json

import pytest

from components.errors import SettingsError
from operator_tools.stack_file import config_strings, read_settings
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
