"""An existing stack upgrades to this version without a replacement, and with no change but the renames.

Each golden/<shape>.json holds every URN, parent, option and input the program asked for before
issue 15's reusable component and layout split (see tests/unit/snapshot.py). The program today must
ask for exactly the same, up to snapshot.RENAMES: the operator tools' new module paths.
"""

from __future__ import annotations

import json

import pytest

from tests.unit.snapshot import SHAPES, golden_path, take


@pytest.mark.parametrize("shape", list(SHAPES))
def test_urns_options_and_inputs_are_those_of_the_previous_version(shape: str) -> None:
    golden = json.loads(golden_path(shape).read_text())
    now = take(shape)
    assert sorted(now["resources"]) == sorted(golden["resources"]), "URNs differ: a resource would be replaced"
    for urn, was in golden["resources"].items():
        assert now["resources"][urn] == was, urn
    assert now["exports"] == golden["exports"]
    assert now["secret_exports"] == golden["secret_exports"]
