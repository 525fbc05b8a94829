"""A crashed Redis process (kill -9) restarted as the shipped unit restarts it: no session or lock lost.

`rehearsal crash` writes sessions through the session provider's scripts (outsystems_redis.tools.sessions), holds
some of them by their write lock, SIGKILLs the master process of server 2 and starts it again after the
RestartSec that outsystems_redis/render/systemd.py renders into the unit. With a restart sooner than the
failover (the 2 s shipped before), the master reloads its last snapshot and its replica resyncs from it:
76 of 200 sessions and 8 of 20 locks were lost here, and this test failed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration import loopbacks
from tests.tools import REDIS_VERSIONS, ROOT, loopback_octet, redis_bin


def rehearse(command: str, stack: str, state: Path, prefix: str, version: str, *extra: str):
    args = [sys.executable, "-m", "outsystems_redis.tools.rehearsal", command, "--stack", stack,
            "--state-dir", str(state),
            "--host-prefix", prefix, "--version", version, *extra]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("version", REDIS_VERSIONS)
def test_a_crashed_master_restarts_after_its_failover_and_loses_nothing(version, tmp_path):
    redis_bin(version, "redis-server")
    state, prefix = tmp_path / "rehearsal", f"127.{loopback_octet()}.{next(loopbacks._next) % 250}."
    try:
        up = rehearse("up", "prod", state, prefix, version)
        assert up.returncode == 0, up.stdout + up.stderr
        crash = rehearse("crash", "prod", state, prefix, version, "--server", "2")
        print(crash.stdout)
        assert crash.returncode == 0, crash.stdout + crash.stderr
        assert re.search(r"^sessions lost: 0 of (\d+) ", crash.stdout, re.M), crash.stdout
        assert int(re.search(r"^wrote (\d+) sessions", crash.stdout, re.M).group(1)) >= 190, crash.stdout
        assert re.search(r"^write locks kept: 20 of 20 ", crash.stdout, re.M), crash.stdout
        # The replica took over before the restart; the restarted process came back as its replica and the
        # role restore gave the master back.
        assert "(its replica took over)" in crash.stdout and "HEALTHY" in crash.stdout, crash.stdout
    finally:
        rehearse("down", "prod", state, prefix, version)


def test_a_crashed_replica_restarts_and_nothing_is_lost(tmp_path):
    redis_bin("7.0", "redis-server")
    state, prefix = tmp_path / "rehearsal", f"127.{loopback_octet()}.{next(loopbacks._next) % 250}."
    try:
        assert rehearse("up", "prod", state, prefix, "7.0").returncode == 0
        crash = rehearse("crash", "prod", state, prefix, "7.0", "--server", "1", "--process", "replica")
        print(crash.stdout)
        assert crash.returncode == 0, crash.stdout + crash.stderr
        assert re.search(r"^sessions lost: 0 of ", crash.stdout, re.M) and "locks kept: 20 of 20" in crash.stdout
    finally:
        rehearse("down", "prod", state, prefix, "7.0")


def test_the_restart_waits_out_a_denied_election_on_redis_5_0():
    """Redis 5.0 can deny a replica's first election (its master not yet flagged FAIL by the voters); the
    replica retries only 4 x cluster-node-timeout after that try (cluster.c: auth_retry_time = 2 x the auth
    timeout of 2 x node timeout). The crashed master must not be back before the retried election is over:
    detection (one node timeout) + the retry wait + the election's own delay (up to 1.5 s) and a busy
    server's slack. With the 15 s shipped before, the 5.0 drill above lost 65 of 200 sessions once under
    load; that race cannot be forced, so this checks the arithmetic it depends on."""
    from outsystems_redis.render.redis_conf import CLUSTER_NODE_TIMEOUT_MS
    from outsystems_redis.render.systemd import render_template_drop_in, restart_seconds

    retried_election_done_ms = CLUSTER_NODE_TIMEOUT_MS + 4 * CLUSTER_NODE_TIMEOUT_MS + 1500
    assert restart_seconds(True) * 1000 >= retried_election_done_ms + 3000
    assert f"RestartSec={restart_seconds(True)}\n" in render_template_drop_in(step_down=True)
