"""An existing stack upgrades to this version without replacing or changing anything.

Each golden/<shape>.json holds every URN, parent, option and input the program asked for before
issue 15's reusable component and layout split (written from cbafa15 by `python -m tests.unit.snapshot
--write`). The program today must ask for exactly the same, up to snapshot.RENAMES (the operator tools'
new module paths, in the post-deploy command and a hint in the cluster-join script).
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
