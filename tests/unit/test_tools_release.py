"""One release number names one set of fetched programs (outsystems_redis/signing.py: RELEASE).

A server refuses programs signed for a release older than the one it runs; that stops a replay only if every
change to a program comes with a new release. golden/tools-releases.json records each release's programs
(`python -m tests.unit.snapshot --approve` adds the current one); these tests fail when the programs changed
and the release did not.
"""

from __future__ import annotations

import json

from outsystems_redis.signing import RELEASE
from tests.unit.snapshot import RELEASES, fetched_digest, release_problem


def test_the_fetched_programs_are_the_ones_recorded_for_the_current_release() -> None:
    ledger = json.loads(RELEASES.read_text())
    assert max(map(int, ledger)) == RELEASE, "record the current release: python -m tests.unit.snapshot --approve"
    assert ledger[str(RELEASE)] == fetched_digest(), release_problem(ledger, RELEASE, fetched_digest())


def test_a_changed_program_needs_a_new_release_above_every_recorded_one() -> None:
    ledger = {"1": "a" * 64, "2": "b" * 64}
    assert release_problem(ledger, 2, "b" * 64) is None  # unchanged
    assert "raise outsystems_redis.signing.RELEASE to 3" in release_problem(ledger, 2, "c" * 64)
    assert "raise outsystems_redis.signing.RELEASE to 3" in release_problem(ledger, 1, "c" * 64)  # not the latest
    assert release_problem(ledger, 3, "c" * 64) is None  # a new release, to record
    assert release_problem({}, 1, "c" * 64) is None
