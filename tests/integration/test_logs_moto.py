"""The servers' log shipper against moto in server mode: the Redis log, the units' journal and the slow log.

Real Redis 5.0 and 7.0 on loopback, the real AWS CLI, the launcher from the user data
fetching redis-observe.py from moto's S3. The journal comes from a stand-in `journalctl`
(no journald runs on the build machines; the boot test runs the servers' real one).
"""

from __future__ import annotations

import calendar
import os
import re
import socket
import time
from pathlib import Path

import pytest

from outsystems_redis.render import metrics
from outsystems_redis.tools.loopback import generate_password
from tests.integration.metrics_stand_in import fake_journalctl, journal_entry, log_events, observe


def ship(moto, lo, tmp_path, journal_dir):
    extra = {"PATH": f"{journal_dir}:{moto.env()['PATH']}"}
    result = observe(moto, lo, 0, "logs", "logs", tmp_path / "state", extra=extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def log_lines(lo) -> list[str]:
    return [line.rstrip() for line in lo.log_file(lo.processes[0]).read_text().splitlines() if line.strip()]


def assert_shipped_once_in_order(shipped: list[str], before: list[str], after: list[str]) -> None:
    """Every line the log held before the shipper ran was shipped, once and in order. Lines Redis wrote while
    it ran (a dev server snapshots every minute) may or may not be in this run's batch."""
    assert len(shipped) >= len(before) and shipped == after[:len(shipped)], (shipped, after)


@pytest.mark.parametrize("version", ["5.0", "7.0"])
def test_logs_reach_their_streams_once_each_and_never_the_password(version, loopback_factory, moto,
                                                                     tmp_path):
    lo = loopback_factory(version, 1)
    lo.start()
    moto.prepare_stack("logs")
    name = lo.topology.servers[0].name
    port = lo.processes[0].port
    password = lo.password
    r = lo.admin(lo.processes[0])  # as the servers' scripts log in (7.0: the operations user)
    # CONFIG as the servers' scripts send it: by its secret name, which the slow log then quotes.
    config = lo.command_name(lo.processes[0], "CONFIG")
    r.execute_command(config, "SET", "slowlog-log-slower-than", 0)  # every command is "slow" from here on
    # The password where a slow log would carry it: an argument (and, on 5.0, every AUTH of a new connection).
    r.set("planted", password)
    r.execute_command(config, "SET", "requirepass", password)
    # A password no file names yet (as redis-password-sync sets the new one before rewriting the auth
    # include): only the shipper's redaction of such commands keeps it out (Redis 7.0 redacts it itself).
    unseen = generate_password()
    r.execute_command(config, "SET", "masterauth", unseen)
    lo.client(lo.processes[0]).ping()
    entries = tmp_path / "journal.jsonl"
    units = ["redis-auth.service", "redis-provision.service", f"redis-server@{port}.service", "ssh.service"]
    entries.write_text("".join(journal_entry(i, u, f"line {i} of {u}") + "\n" for i, u in enumerate(units))
                       + journal_entry(9, "redis-auth.service", f"a line that quotes {password} by mistake") + "\n")
    journal_dir = tmp_path / "journal-bin"
    fake_journalctl(journal_dir, entries)

    started = time.time()
    before = log_lines(lo)
    ship(moto, lo, tmp_path, journal_dir)
    redis_stream, journal_stream, slow_stream = (f"{name}/redis-{port}", f"{name}/journal", f"{name}/slowlog")
    assert_shipped_once_in_order(log_events(moto, "logs", redis_stream), before, log_lines(lo))
    journal = log_events(moto, "logs", journal_stream)
    assert journal == [f"{u.split('.')[0]}[{1000 + i}]: line {i} of {u}" for i, u in enumerate(units[:3])] + [
        "redis-auth[1009]: a line that quotes (redacted) by mistake"]
    slow = log_events(moto, "logs", slow_stream)
    # The command and its argument count only: keys are session cookies' values, values are session data.
    assert any(f"port {port} " in m and m.endswith(": SET (2 more arguments, not shipped)") for m in slow), slow
    assert any(m.endswith(": CONFIG SET requirepass (1 more argument, not shipped)") for m in slow), slow
    assert any(m.endswith(": CONFIG SET masterauth (1 more argument, not shipped)") for m in slow), slow
    assert not any("planted" in m for m in slow), slow
    # A secret command name is shipped as the command's own name, and never shows anywhere.
    assert config.startswith("CONFIG-") and len(config) > 24, config
    assert not any(config in m for m in slow + journal), slow

    # More of everything; the second run sends only what is new.
    before_slow = len(slow)
    # A snapshot, for its log lines (BGSAVE is gone from Redis: its own `save` rule, made due in a second).
    saves = lo.config_get(lo.processes[0], "save")["save"]
    saved = lo.log_file(lo.processes[0]).read_text().count("Background saving terminated")
    r.execute_command(config, "SET", "save", "1 1")
    r.set("one more", "change")
    deadline = time.monotonic() + 30
    while lo.log_file(lo.processes[0]).read_text().count("Background saving terminated") == saved:
        assert time.monotonic() < deadline, "no new snapshot"
        time.sleep(0.2)
    r.execute_command(config, "SET", "save", saves)
    with entries.open("a") as f:
        f.write(journal_entry(10, "redis-provision.service", "a new line") + "\n")
    r.set("another", "value")
    before = log_lines(lo)
    ship(moto, lo, tmp_path, journal_dir)
    assert_shipped_once_in_order(log_events(moto, "logs", redis_stream), before, log_lines(lo))  # all, once
    assert log_events(moto, "logs", journal_stream)[4:] == ["redis-provision[1010]: a new line"]
    slow = log_events(moto, "logs", slow_stream)
    ids = [int(re.search(r" id (\d+) ", m).group(1)) for m in slow]
    assert ids == sorted(set(ids)) and len(slow) > before_slow  # every entry once, in order
    assert any(m.endswith(": SET (2 more arguments, not shipped)") for m in slow[before_slow:])
    assert not any("another" in m or "value" in m.split(": ", 1)[1] for m in slow)

    # Timestamps: a Redis log line's own time (servers run in UTC), not the shipping time.
    logs = moto.client("logs")
    events = logs.get_log_events(logGroupName="/outsystems-redis/logs", logStreamName=redis_stream,
                                 startFromHead=True)["events"]
    stamp = re.match(r"^\d+:[A-Z] (\d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d)\.(\d{3}) ", events[-1]["message"])
    assert stamp, events[-1]
    assert events[-1]["timestamp"] == calendar.timegm(time.strptime(stamp.group(1), "%d %b %Y %H:%M:%S")) * 1000 \
        + int(stamp.group(2))
    assert abs(events[-1]["timestamp"] / 1000 - started) < 600

    # Nothing moto holds (metrics, logs, S3, SSM) carries the password.
    everything = moto.everything()
    assert "SET (2 more arguments" in everything  # the scan sees the log events
    assert "planted" not in everything  # a key: a session's cookie value
    assert password not in everything and unseen not in everything


def test_a_log_that_redis_replaced_by_a_link_a_pipe_or_a_socket_is_not_read(loopback_factory, moto, tmp_path):
    """The redis user owns the log directory, and root ships what is there. A log replaced by a link to a
    root-only file would ship that file; one replaced by a pipe would block every run; a socket would end it.
    Each is refused with an ERROR that names it, and the rest (the journal) is still shipped; a rotated log
    (`.1`) replaced so does not keep the current one from shipping. Planted (the log opened as before,
    following links, without the file check): the root-only line reaches CloudWatch, and the pipe blocks the
    run until its timeout."""
    lo = loopback_factory("7.0", 1)
    lo.start()
    moto.prepare_stack("logs")
    name, port = lo.topology.servers[0].name, lo.processes[0].port
    entries = tmp_path / "journal.jsonl"
    entries.write_text(journal_entry(1, "redis-auth.service", "still shipped") + "\n")
    journal_dir = tmp_path / "journal-bin"
    fake_journalctl(journal_dir, entries)
    extra = {"PATH": f"{journal_dir}:{moto.env()['PATH']}"}
    secret = tmp_path / "root-only"
    secret.write_text("a line only root may read\n")
    secret.chmod(0o600)
    log = lo.log_file(lo.processes[0])
    state = tmp_path / "state"

    def refused(reason: str) -> None:
        result = observe(moto, lo, 0, "logs", "logs", state, extra=extra, timeout=60)
        assert result.returncode != 0 and f"redis-observe: ERROR: {log} is {reason}: not read" in result.stderr, \
            result.stdout + result.stderr

    # Redis opens its log again for every line: whatever it logs meanwhile goes where the name points (as root
    # here; the redis user could not write a root-only file), so the name is a regular file again at the end.
    try:
        log.unlink()
        log.symlink_to(secret)
        refused("a symbolic link")
        assert "only root may read" not in moto.everything()
        assert log_events(moto, "logs", f"{name}/journal") == ["redis-auth[1001]: still shipped"]
        streams = moto.client("logs").describe_log_streams(logGroupName="/outsystems-redis/logs")["logStreams"]
        assert f"{name}/redis-{port}" not in {stream["logStreamName"] for stream in streams}, streams

        log.unlink()
        os.mkfifo(log)
        refused("not a regular file")
        log.unlink()
        with socket.socket(socket.AF_UNIX) as listening:
            listening.bind(str(log))
            refused("not readable (No such device or address)")
        log.unlink()

        # Rotated: the current log is new, its previous one (.1) a link. The current one ships, with a note.
        now = time.strftime("%d %b %Y %H:%M:%S", time.gmtime())  # CloudWatch refuses events over 14 days old
        log.write_text(f"1:M {now}.000 * a line before the rotation\n")
        result = observe(moto, lo, 0, "logs", "logs", state, extra=extra)
        assert result.returncode == 0, result.stdout + result.stderr
        log.rename(f"{log}.1")
        # The new log is made while the old one still exists: made after it was freed, it may get the old inode
        # back, and the shipper rightly reads that as the same file cut short (one CI run did).
        log.write_text(f"1:M {now}.001 * a line after the rotation\n")
        Path(f"{log}.1").unlink()
        Path(f"{log}.1").symlink_to(secret)
        result = observe(moto, lo, 0, "logs", "logs", state, extra=extra)
        assert result.returncode == 0, result.stdout + result.stderr
        shipped = log_events(moto, "logs", f"{name}/redis-{port}")
        # Each line once, in its own time's order; the note is stamped when it was said.
        assert [line.split(" * ")[1] for line in shipped if "rotation" in line] == \
            ["a line before the rotation", "a line after the rotation"], shipped
        assert any(f"{log}.1 is a symbolic link: not read; lines after byte" in line for line in shipped), shipped
        assert "only root may read" not in moto.everything()
    finally:
        if log.is_symlink() or log.exists():
            log.unlink()
        log.touch()


def test_batches_respect_cloudwatch_logs_limits():
    """10,000 events and 1 MB (message bytes + 26 each) per batch, 24 h span, 256 KB per event."""
    big = "x" * 300_000
    events = [(1000 + i, f"line {i}", i) for i in range(25_000)] + [(50_000, big, "big")]
    out = metrics_batches(events)
    assert [len(b) for b in out][:2] == [10_000, 10_000]
    assert sum(len(b) for b in out) == len(events)  # nothing dropped
    for b in out:
        assert len(b) <= 10_000 and sum(len(m.encode()) + 26 for _, m, _ in b) <= 1_048_576
    cut = out[-1][-1][1]
    assert len(cut.encode()) + 26 <= 262_144 and cut.endswith("[truncated: over CloudWatch's 256 KB]")
    day = 24 * 3600 * 1000
    spans = metrics_batches([(0, "a", 1), (day - 1, "b", 2), (day, "c", 3)])
    assert [[p for _, _, p in b] for b in spans] == [[1, 2], [3]]
    many = metrics_batches([(i, "y" * 100_000, i) for i in range(30)])
    assert all(sum(len(m) + 26 for _, m, _ in b) <= 1_048_576 for b in many) and len(many) == 3


def metrics_batches(events):
    import importlib

    agent = importlib.import_module("outsystems_redis.server_files.metrics_agent")
    assert metrics.AGENT_SOURCE.name == "metrics_agent.py"
    return agent.batches(events)
