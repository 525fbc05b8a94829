"""An existing stack upgrades to this version without a replacement, and with only approved input changes.

golden/<shape>.json (tests/unit/snapshot.py) holds every URN, parent, option and input of an earlier version.
"""

from __future__ import annotations

import json

import pytest

from tests.unit.snapshot import SHAPES, golden_path, input_changes, invariant_breaks, take


@pytest.fixture(scope="module")
def taken() -> dict[str, tuple[dict, dict]]:
    return {shape: (json.loads(golden_path(shape).read_text()), take(shape)) for shape in SHAPES}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_no_resource_is_lost_retyped_reparented_or_given_other_options(shape: str, taken) -> None:
    """Never re-blessed: a break here replaces servers of every existing stack."""
    golden, now = taken[shape]
    breaks = invariant_breaks(golden, now)
    assert not breaks, "\n".join(breaks)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_inputs_are_the_approved_ones(shape: str, taken) -> None:
    """A change of user data, a script, a policy or an alarm is fine once approved: run
    `python -m tests.unit.snapshot --approve`, which prints the changes for the pull request."""
    golden, now = taken[shape]
    changes = input_changes(golden, now)
    assert not changes, "not approved (python -m tests.unit.snapshot --approve):\n" + "\n".join(changes)


def test_the_invariant_catches_a_renamed_resource_and_not_a_changed_script(taken) -> None:
    golden, now = taken["prod"]
    urn = next(u for u in now["resources"] if u.endswith("::outsystems-redis-server-1-instance"))
    renamed = {**now, "resources": {(u.replace("server-1-instance", "server-one-instance") if u == urn else u): r
                                    for u, r in now["resources"].items()}}
    assert any("lost" in b for b in invariant_breaks(golden, renamed))
    unprotected = json.loads(json.dumps(now))
    unprotected["resources"][urn]["protect"] = not unprotected["resources"][urn]["protect"]
    assert any("protect changed" in b for b in invariant_breaks(golden, unprotected))
    rescripted = json.loads(json.dumps(now))
    rescripted["resources"][urn]["inputs"]["userDataBase64"] = "sha256:0 (1 chars)"
    assert not invariant_breaks(golden, rescripted)
    assert any("userDataBase64" in c for c in input_changes(golden, rescripted))
