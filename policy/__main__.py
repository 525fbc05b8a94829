"""The outsystems-redis policy pack: `pulumi preview --policy-pack policy`.

Only wiring lives here; the checks are plain functions in rules.py.
"""

import sys
from pathlib import Path

# The pack shares the requirement numbers with the program (components/), so
# the repository root must be importable when the CLI runs this file.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.pack import policies  # noqa: E402

PolicyPack(
    name="outsystems-redis",
    policies=policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
)
