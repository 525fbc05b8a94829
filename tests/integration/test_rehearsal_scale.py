"""Rehearsal scale: a running prod rehearsal grows 3 -> 4 through the CLI, and refuses to shrink.

Apart from test_rehearsal.py (whose helpers it uses) so that --dist loadfile can give it the other worker.
"""

from __future__ import annotations

import re

from tests.integration.rehearsals import SCALE_BLOCK, A, redis_processes, rehearse
from tests.tools import redis_bin


def test_scale_grows_a_running_rehearsal_and_refuses_to_shrink(tmp_path):
    redis_bin("7.0", "redis-server")
    redis_bin("7.0", "redis-cli")
    state, prefix = tmp_path / "rehearsal", f"127.{A}.{SCALE_BLOCK}."
    try:
        assert rehearse("up", "prod", state, prefix, "7.0").returncode == 0
        grown = rehearse("scale", "prod", state, prefix, "7.0", "--servers", "4")
        assert grown.returncode == 0, grown.stdout + grown.stderr
        out = grown.stdout
        for line in ("duration: ", "slots moved: 4096 of 16384", "sessions checked: ",
                     "all readable with their content afterwards: yes", "wrong answers: 0", "HEALTHY",
                     "crossed ring over 4 servers"):
            assert line in out, out
        # The join takes longer than 5 s (it waits 5 s for a settled cluster before it starts): never silent.
        assert re.search(r"\n  \.\.\. server 4 joining \(rebalance moves slots under the client\): \d+s\n", out), out
        status = rehearse("status", "prod", state, prefix, "7.0")
        assert "8 of 8 processes running" in status.stdout and "HEALTHY" in status.stdout
        shrink = rehearse("scale", "prod", state, prefix, "7.0", "--servers", "3")
        assert shrink.returncode == 1 and "refusing to shrink" in shrink.stdout
    finally:
        down = rehearse("down", "prod", state, prefix, "7.0")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.startswith("stopping 8 process(es) under "), down.stdout
    assert redis_processes(prefix) == []
