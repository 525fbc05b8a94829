"""The README's configuration table comes from outsystems_redis/settings.py; its defaults are the applied ones."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from outsystems_redis.errors import SettingsError
from outsystems_redis.settings import (
    CONFIG_KEYS,
    KNOWN_KEYS,
    Settings,
    load_settings,
    markdown_table,
    readme_with_table,
)
from outsystems_redis.tools import stack_file
from tests.tools import ROOT

STACKS = ("dev", "prod")
# Config key -> Settings attribute, where the camel-to-snake rule does not give it.
ATTRIBUTE = {"rootVolumeGiB": "root_volume_gib", "redisPassword": "redis_password"}
# Keys documented here whose parsing lands with another change (the tags branch): until it is merged,
# Settings has no attribute for them. Listed by name so no other key can go unchecked.
PARSED_ELSEWHERE: set[str] = set()


def _attribute(key: str) -> str:
    return ATTRIBUTE.get(key) or "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _stack_raw(stack: str) -> dict[str, str]:
    """The stack file's keys in the project namespace, as Pulumi hands them over (lists as JSON)."""
    return stack_file.read(stack, ROOT / f"Pulumi.{stack}.yaml").raw


def _applied(stack: str, key: str) -> Any:
    """What load_settings applies for `key` on `stack` when the stack file leaves it unset."""
    raw = {k: v for k, v in _stack_raw(stack).items() if k != key}
    settings = load_settings(raw, stack)
    return getattr(settings, _attribute(key))


def _shown(value: Any) -> str:
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme_with_table(readme) == readme, (
        "README.md's configuration table differs from outsystems_redis/settings.py's CONFIG_KEYS: "
        "run .venv/bin/python -m outsystems_redis.settings --update-readme README.md"
    )


def test_the_generator_writes_one_row_per_known_key_and_keeps_the_text_around_it() -> None:
    rows = [line for line in markdown_table().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(KNOWN_KEYS)
    assert len(set(KNOWN_KEYS)) == len(KNOWN_KEYS)
    readme = (ROOT / "README.md").read_text()
    assert readme_with_table(readme).split("## Configuration")[0] == readme.split("## Configuration")[0]
    with pytest.raises(ValueError, match="markers"):
        readme_with_table("no markers here")


@pytest.mark.parametrize("key", [k for k in CONFIG_KEYS if k.applied == "settings"], ids=lambda k: k.name)
def test_a_stack_independent_default_is_what_load_settings_applies_to_dev_and_prod(key: Any) -> None:
    for stack in STACKS:
        if key.name == "port" and stack == "prod":
            continue  # a cluster refuses `port`; its 7000/7001 are stated in the meaning
        assert key.default == _shown(_applied(stack, key.name)), (stack, key.name)


def test_the_per_tier_defaults_are_what_load_settings_applies_per_tier() -> None:
    tiered = {k.name: k.default for k in CONFIG_KEYS if k.applied == "tier"}
    assert set(tiered) == {"instanceType", "protect"}
    dev, prod = (_shown(_applied(s, "instanceType")) for s in STACKS)
    assert tiered["instanceType"] == f"{dev} (1 server), {prod} (cluster)"
    dev, prod = (_shown(_applied(s, "protect")) for s in STACKS)
    assert tiered["protect"] == f"{prod} for a cluster, {dev} for one server"


@pytest.mark.parametrize("key", [k for k in CONFIG_KEYS if k.applied in ("unset", "deploy")], ids=lambda k: k.name)
def test_a_default_the_settings_do_not_apply_leaves_the_key_unset(key: Any) -> None:
    """"none" and the deploy-time defaults: load_settings leaves the key empty for the program to fill in."""
    attribute = _attribute(key.name)
    if attribute not in {f.name for f in fields(Settings)}:
        assert key.name in PARSED_ELSEWHERE, f"{key.name}: no Settings attribute {attribute}"
        return
    for stack in STACKS:
        if key.name == "frontEndCidrs" and stack == "prod":
            continue  # required on prod: the next test
        assert _applied(stack, key.name) in (None, ()), (stack, key.name)
    if key.applied == "unset":
        assert key.default.startswith("none"), key.name


def test_the_required_keys_have_no_default() -> None:
    assert [k.name for k in CONFIG_KEYS if k.applied == "required"] == ["subnetCidrs"]
    for stack in STACKS:
        with pytest.raises(SettingsError, match="subnetCidrs"):
            _applied(stack, "subnetCidrs")
    with pytest.raises(SettingsError, match="frontEndCidrs"):
        _applied("prod", "frontEndCidrs")
    assert "a cluster: none (required unless" in next(k.default for k in CONFIG_KEYS if k.name == "frontEndCidrs")

