"""The rehearsal reads Pulumi.<stack>.yaml the way Pulumi hands config to the program."""

from __future__ import annotations

import json

from operator_tools.rehearsal import read_settings, stack_config
from tests.tools import ROOT


def test_stack_config_keeps_only_the_projects_keys_as_pulumi_strings():
    doc = {"config": {"aws:region": "eu-west-1", "outsystems-redis:servers": 3, "outsystems-redis:protect": False,
                      "outsystems-redis:subnetCidrs": ["10.0.1.0/24"],
                      "outsystems-redis:redisPassword": {"secure": "v1:abc"}}}
    assert stack_config(doc, "prod") == {"servers": "3", "protect": "false", "subnetCidrs": json.dumps(["10.0.1.0/24"])}


def test_both_shipped_stacks_load():
    assert not read_settings("dev").cluster
    prod = read_settings("prod")
    assert prod.cluster and prod.servers >= 3
    assert (ROOT / "Pulumi.prod.yaml").exists()
