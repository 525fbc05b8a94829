"""The outsystems-redis policy pack: `pulumi preview --policy-pack policy`.

Only wiring lives here; the checks are plain functions in rules.py.
"""

import io
import os
import sys
from pathlib import Path

# pulumi-policy announces its port with sys.stdout.buffer.write and no flush: on a pipe
# that stays in the buffer unless the interpreter runs unbuffered (PYTHONUNBUFFERED or
# -u), and whoever starts the pack waits for the port forever. An unbuffered stdout
# makes the announcement leave at once, however the pack is started.
sys.stdout = io.TextIOWrapper(io.FileIO(os.dup(sys.stdout.fileno()), "wb"), write_through=True)

# The pack shares the requirement numbers with the program (outsystems_redis/), so
# the repository root must be importable when the CLI runs this file.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.pack import policies  # noqa: E402

PolicyPack(
    name="outsystems-redis",
    policies=policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
)
