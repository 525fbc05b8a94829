"""A changed password reaches running servers: real Redis 5.0 and 7.0 on loopback, the shipped scripts, an `aws`
stand-in for SSM Parameter Store (outsystems_redis.tools.loopback), and a live session workload.

- Rotation (prod: 3 servers, dev: 1): redis-password-sync runs on every server at once, as the aligned timers
  do. No acknowledged session is lost, the health check is green with the new password, every replication link
  reconnects with the new masterauth, a restart keeps what the sync applied, and the old password is refused
  in the end. Redis 7.0: a client reconnecting with the old password until the switch and the new one after
  never fails to log in, and the old password goes at the first run after the grace. Redis 5.0: the window in
  which new logins with the old password still work on some process and fail on others is measured.
- The boot step, fetch-password.sh, run for real: root:redis 0640 written atomically, the 7.0 grace entry kept
  across a reboot, at most ~30 s of waiting for SSM when an earlier boot's file exists, exit 1 on a first boot
  without SSM.
- Neither script ever puts the password on a command line (every command they run goes through a logging
  shim), on stdout or on stderr.

Every wait is bounded. A missing Redis build fails (tests.tools).
"""

from __future__ import annotations

import functools
import grp
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from outsystems_redis.parameters import OPERATIONS_USER, REPLICATION_USER, replication_password
from outsystems_redis.render.password import secret_names_env
from outsystems_redis.render.redis_conf import FRONT_END_RULES, REPLICATION_RULES, secret_named_commands
from outsystems_redis.tools import health
from outsystems_redis.tools.loopback import BASH, PASSWORD_PARAMETER, Loopback, generate_password
from outsystems_redis.tools.rehearsal import SessionTraffic, verify_sessions
from tests.integration.loopbacks import replica_logins
from tests.tools import ROOT, loopback_octet, redis_bin

GRACE = 4  # seconds of Redis 7.0 grace in these tests (3600 on AWS)
SWITCH_BOUND = 5.0  # seconds: "every server switches within the same second or so", with room for a busy CI
WAIT = 20  # seconds: every other bounded wait


def nodes(lo: Loopback) -> list[tuple[str, int]]:
    return [(p.host, p.port) for p in lo.processes]


def healthy_with(lo: Loopback, password: str) -> tuple[str, str]:
    facts, findings = health.run_check(nodes(lo), password, lo.topology.cluster, lo.version, wait=WAIT,
                                       interval=0.5)
    return health.verdict(findings), health.report(facts, findings)


def takers(lo: Loopback, password: str) -> list[str]:
    return [p.address for p in lo.processes if lo.accepts(p, password)]


@dataclass
class Logins:
    """A front-end reconnecting all the time: a NEW connection to each process in turn, one login each.

    `mode` "both": every round tries the old and the new password (5.0: when does each process switch?).
    `mode` "switch": the old password until `switched_at` is set, the new one after (7.0: an administrator
    pasting the new connection string right after the switch); each failure counts.
    """

    lo: Loopback
    old: str
    new: str
    mode: str
    switched_at: float | None = None
    records: list[tuple[float, str, str, bool]] = field(default_factory=list)  # (time, old|new, address, ok)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Logins:
        self._thread.start()
        return self

    def stop(self) -> Logins:
        self._stop.set()
        self._thread.join(timeout=30)
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            for p in self.lo.processes:
                labels = ["old", "new"] if self.mode == "both" else ["old" if self.switched_at is None else "new"]
                for label in labels:
                    ok = self.lo.accepts(p, self.old if label == "old" else self.new, timeout=1)
                    self.records.append((time.monotonic(), label, p.address, ok))

    def failures(self, label: str) -> int:
        return sum(1 for _, lab, _, ok in self.records if lab == label and not ok)

    def attempts(self, label: str) -> int:
        return sum(1 for _, lab, _, _ in self.records if lab == label)


def windows_5_0(logins: Logins, t0: float) -> dict[str, float]:
    """Milliseconds after the sync started: when old-password logins stopped working, per process and overall."""
    figures: dict[str, float] = {}
    last_old_ok, first_old_fail, first_new_ok = {}, {}, {}
    for t, label, address, ok in logins.records:
        if label == "old" and ok:
            # Once a process refuses the old password, it never takes it again.
            assert address not in first_old_fail, f"{address} took the old password again after refusing it"
            last_old_ok[address] = t
        elif label == "old":
            first_old_fail.setdefault(address, t)
        elif ok:
            first_new_ok.setdefault(address, t)
    addresses = {p.address for p in logins.lo.processes}
    assert set(first_old_fail) == addresses and set(first_new_ok) == addresses, "a process never switched"
    figures["old_last_accepted_ms"] = (max(last_old_ok.values()) - t0) * 1000
    figures["old_first_refused_ms"] = (min(first_old_fail.values()) - t0) * 1000
    figures["all_refuse_old_from_ms"] = (max(first_old_fail.values()) - t0) * 1000
    figures["last_process_takes_new_ms"] = (max(first_new_ok.values()) - t0) * 1000
    # Some processes refuse the old password while others still take it: the mixed window.
    figures["mixed_window_ms"] = max(0.0, figures["old_last_accepted_ms"] - figures["old_first_refused_ms"])
    return figures


def links_up(lo: Loopback) -> None:
    """Wait (bounded) until every replica's link to its master is up."""
    deadline = time.monotonic() + WAIT
    for p in (p for p in lo.processes if p.role == "replica"):
        while True:
            try:
                if lo.client(p, socket_timeout=1).info("replication").get("master_link_status") == "up":
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, f"{p.address}: replication link still down after {WAIT}s"
            time.sleep(0.1)


def replication_reconnects(lo: Loopback) -> None:
    """Drop every replica's link to its master: it logs in again with the masterauth it holds in memory."""
    links_up(lo)
    for p in (p for p in lo.processes if p.role == "replica"):
        c = lo.admin(p)
        client = lo.command_name(p, "CLIENT")  # a secret name on 5.0
        assert c.execute_command(client, "KILL", "TYPE", "master") == 1, f"{p.address} had no master link"
        c.close()
    time.sleep(0.5)
    links_up(lo)


def restart_server(lo: Loopback, server: int) -> None:
    """A reboot of the Redis processes: they start again from the auth include the sync rewrote."""
    lo.stop_server(server)
    lo.start_server(server)


CASES = [("5.0", 3), ("5.0", 1), ("7.0", 3), ("7.0", 1)]


@pytest.mark.parametrize("version, servers", CASES, ids=[f"{v}-{'prod' if n > 1 else 'dev'}" for v, n in CASES])
def test_rotation_under_a_session_workload(version, servers, loopback_factory):
    redis_bin(version)
    lo = loopback_factory(version, servers)
    lo.start()
    if lo.topology.cluster:
        lo.bootstrap(wait_seconds=60)
    old, new = lo.password, generate_password()
    grace_mode = version == "7.0"

    # Connections opened with the old password before the switch, used again after it.
    held = [redis.Redis(p.host, p.port, password=old, single_connection_client=True, socket_timeout=2)
            for p in lo.processes]
    assert all(c.ping() for c in held)
    traffic = SessionTraffic(lo, max_seconds=120).start()
    logins = Logins(lo, old, new, "switch" if grace_mode else "both").start()
    time.sleep(0.5)  # sessions and logins before the switch
    lo.ssm_put(new)  # what `pulumi up` does with a changed redisPassword
    t0 = time.monotonic()
    results = lo.sync_passwords(grace_seconds=GRACE, timeout=60)
    logins.switched_at = t1 = time.monotonic()
    time.sleep(0.5)  # and after it
    logins.stop()
    traffic.stop()

    for server, (code, output) in results.items():
        assert code == 0, f"server {server}:\n{output}"
        assert old not in output and new not in output
    assert t1 - t0 < SWITCH_BOUND
    # Open connections stay logged in (on 5.0 a reconnect with the old password would fail by now).
    assert all(c.ping() for c in held)
    for c in held:
        c.close()
    verdict, report = healthy_with(lo, new)
    assert verdict == "healthy", report
    lo.set_password(new)
    assert len(traffic.acked) > 20 and traffic.reads > 20
    assert verify_sessions(lo, traffic.acked) == [], "acknowledged sessions lost"
    assert (traffic.errors, traffic.wrong) == ([], [])
    figures = {"sync_ms": (t1 - t0) * 1000, "sessions": len(traffic.acked), "reads": traffic.reads}

    if grace_mode:
        # Not one failed login for a client that moves to the new password after the switch.
        figures |= {"old_logins": logins.attempts("old"), "new_logins": logins.attempts("new"),
                    "failed_logins": logins.failures("old") + logins.failures("new")}
        assert logins.attempts("old") > 20 and logins.attempts("new") > 20
        assert logins.failures("old") == 0 and logins.failures("new") == 0
        assert takers(lo, old) == [p.address for p in lo.processes], "the grace did not keep the old password"
        restart_server(lo, 0)  # a reboot during the grace keeps both
        restarted = [p.address for p in lo.topology.servers[0].processes]
        assert set(restarted) <= set(takers(lo, old)) and set(restarted) <= set(takers(lo, new))
        # The first run after the grace removes the old password.
        time.sleep(max(0.0, t0 + GRACE + 1.1 - time.monotonic()))
        for server, (code, output) in lo.sync_passwords(grace_seconds=GRACE, timeout=60).items():
            assert code == 0, f"server {server}:\n{output}"
            assert "grace has ended" in output and old not in output and new not in output
    else:
        figures |= windows_5_0(logins, t0)
        assert figures["all_refuse_old_from_ms"] < SWITCH_BOUND * 1000
        restart_server(lo, 0)
    print(f"\nRedis {version} {'prod' if servers > 1 else 'dev'}: "
          + ", ".join(f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))

    assert takers(lo, old) == [], "the old password still logs in"
    assert takers(lo, new) == [p.address for p in lo.processes]
    if lo.topology.cluster:
        replication_reconnects(lo)
    verdict, report = healthy_with(lo, new)
    assert verdict == "healthy", report
    assert verify_sessions(lo, traffic.acked) == [], "sessions lost across the restart"
    # The secret command names and 7.0's users, written at boot, are kept through the change.
    for server in lo.topology.servers:
        assert Path(lo.paths(server.index).auth_file).read_text() == written(lo, new)


# ---------------------------------------------------------------- argv, stdout, stderr

SHIMMED = ("aws", "timeout", "mktemp", "chown", "chmod", "mv", "rm", "seq", "sleep", "date", "cat", "tr", "sed",
           "awk", "flock", "redis-cli", "sha256sum")


def shims(tmp_path: Path, lo: Loopback) -> tuple[Path, Path]:
    """A PATH where every command the scripts may run logs its argv, then runs the real one.

    A command missing here is not found at all, so nothing the scripts run escapes the log.
    """
    shim_dir, log = tmp_path / "shims", tmp_path / "argv.log"
    shim_dir.mkdir()
    real = {name: str(lo.bin_dir / "aws") if name == "aws" else lo.redis_cli if name == "redis-cli"
            else subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True, text=True).stdout.strip()
            for name in SHIMMED}
    for name, path in real.items():
        assert path, f"{name} not found"
        shim = shim_dir / name
        shim.write_text(f'#!/bin/bash\nprintf "%s " "${{0##*/}}" "$@" >>{log}\necho >>{log}\nexec {path} "$@"\n')
        shim.chmod(0o755)
    return shim_dir, log


def test_sync_keeps_the_password_off_argv_and_output_and_waits_out_an_ssm_outage(tmp_path,
                                                                                 loopback_factory):
    redis_bin("7.0")
    lo = loopback_factory("7.0", 1)
    lo.start()
    old, new = lo.password, generate_password()
    shim_dir, log = shims(tmp_path, lo)
    env = {**lo.password_sync_environment(0, grace_seconds=1), "PATH": str(shim_dir), "REDIS_CLI": "redis-cli"}

    def sync() -> subprocess.CompletedProcess:
        return subprocess.run([BASH, str(lo.state_dir / "redis-password-sync")], env=env, capture_output=True,
                              text=True, timeout=60)

    lo.ssm_put(new)
    lo.ssm_outage("fail")
    unreachable = sync()
    assert unreachable.returncode == 0 and "cannot read" in unreachable.stdout
    assert takers(lo, old) == [lo.processes[0].address] and takers(lo, new) == []
    lo.ssm_outage(None)
    switched = sync()
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert takers(lo, new) == [lo.processes[0].address] and takers(lo, old) == [lo.processes[0].address]
    time.sleep(2.1)  # past the 1 s grace (whole seconds)
    ended = sync()
    assert ended.returncode == 0 and "grace has ended" in ended.stdout, ended.stdout + ended.stderr
    assert takers(lo, old) == []
    argv = log.read_text()
    assert "redis-cli" in argv and "aws ssm get-parameter" in argv and "mv -f" in argv  # the log is real
    for result in (unreachable, switched, ended):
        assert old not in result.stdout + result.stderr and new not in result.stdout + result.stderr
    assert old not in argv and new not in argv


def test_sync_checks_every_reply_and_keeps_the_file_when_a_process_refuses(loopback_factory):
    """redis-cli exits 0 on an error reply: told REDIS_LINE=7.0 on a Redis 5.0 server, ACL SETUSER fails
    there; the sync must say so (its error code only), exit 1 and leave the auth file as it was."""
    redis_bin("5.0")
    lo = loopback_factory("5.0", 1)
    lo.start()
    old, new = lo.password, generate_password()
    auth = Path(lo.paths(0).auth_file)
    before = auth.read_text()
    lo.ssm_put(new)
    env = {"PATH": lo.script_path(), **lo.password_sync_environment(0, grace_seconds=60), "REDIS_LINE": "7.0"}
    result = subprocess.run([BASH, str(lo.state_dir / "redis-password-sync")], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refused the change (ERR)" in result.stdout and "unchanged" in result.stdout
    assert old not in result.stdout + result.stderr and new not in result.stdout + result.stderr
    assert auth.read_text() == before
    # The next run, with the right line, switches it (login tries the current password, then the new one).
    fixed = lo.sync_passwords(grace_seconds=60)[0]
    assert fixed[0] == 0, fixed[1]
    assert takers(lo, new) == [lo.processes[0].address] and takers(lo, old) == []


def test_sync_through_the_tls_cli(loopback_factory):
    """With the `tls` key, REDIS_CLI is the TLS wrapper; the sync reaches 127.0.0.x over TLS like any client."""
    redis_bin("7.0")
    lo = loopback_factory("7.0", 1, tls=True)
    lo.start()
    old, new = lo.password, generate_password()
    lo.ssm_put(new)
    code, output = lo.sync_passwords(grace_seconds=0)[0]
    assert code == 0 and "redis-cli-tls" in lo.password_sync_environment(0)["REDIS_CLI"], output
    assert takers(lo, new) == [lo.processes[0].address] and takers(lo, old) == []
    # Without a grace too, a replica keeps logging in as the replication user: its masterauth does not change.
    assert lo.config_get(lo.processes[0], "masterauth")["masterauth"] == replication_password(lo.ops_secret)


# ---------------------------------------------------------------- fetch-password.sh, the boot step


def fetcher(tmp_path: Path) -> Loopback:
    """The stand-in Parameter Store and the shipped fetch for one server, with no Redis running."""
    lo = Loopback(tmp_path / "state", servers=1, version="7.0", hosts=["127.0.0.1"])
    Path(lo.paths(0).auth_dir).mkdir(parents=True)  # on EC2, redis-auth's ConfigurationDirectory
    lo.ssm_put(generate_password(), secret_names_env("rehearsal", lo.platform)["OPS_PARAMETER"])
    return lo


def written(lo: Loopback, password: str, until: int | None = None, previous: str = "") -> str:
    """An auth include as redis-fetch-password writes it: the password, the secret command names and, on 7.0,
    the replication user (replicas log in as it, whatever the password), the operations user and the front-ends'
    narrowed `default` user (accepting `previous` too until `until`: a grace), written out here rather than
    rendered by lib.sh."""
    renames = "".join(f"rename-command {c} {c}-{lo.ops_secret}\n" for c in secret_named_commands(lo.platform))
    if lo.version == "5.0":
        return f"requirepass {password}\nmasterauth {password}\n" + renames
    replication = replication_password(lo.ops_secret)
    text = f"requirepass {password}\nuser {REPLICATION_USER} on >{replication} {REPLICATION_RULES}\n" \
           f"masteruser {REPLICATION_USER}\nmasterauth {replication}\n" + renames
    text += f"user {OPERATIONS_USER} on >{lo.ops_secret} ~* &* +@all\n"
    if until is not None:
        return text + f"# previous-password-until {until}\nuser default on >{previous} >{password} {FRONT_END_RULES}\n"
    return text + f"user default on >{password} {FRONT_END_RULES}\n"


HANGING_SSM_TEST = "test_fetch_gives_a_hanging_ssm_at_most_about_30_seconds_on_a_reboot"


@pytest.fixture(scope="module", autouse=True)
def ssm_hangs_on_a_reboot(request, tmp_path_factory):
    """A reboot while SSM never answers, with the default bounds. It takes its ~30 s, so it starts before this
    file's first test and runs alongside the others; its own test (at the end) collects it."""
    if not any(item.name == HANGING_SSM_TEST for item in request.session.items):
        yield None  # not selected (-k): do not spend 30 s on it
        return
    lo = fetcher(tmp_path_factory.mktemp("hang"))
    cached = generate_password()
    Path(lo.paths(0).auth_file).write_text(f"requirepass {cached}\nmasterauth {cached}\n")
    lo.ssm_put(generate_password())  # a newer password it will never get to read
    lo.ssm_outage("hang")
    lo.write_password_scripts()
    env = {"PATH": lo.script_path(), **lo.fetch_password_environment(0)}
    outcome: dict = {"started": time.monotonic()}
    proc = subprocess.Popen([BASH, str(lo.state_dir / "redis-fetch-password")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def collect() -> None:
        outcome["stdout"], outcome["stderr"] = proc.communicate()
        outcome["ended"] = time.monotonic()

    waiter = threading.Thread(target=collect, daemon=True)
    waiter.start()
    yield lo, cached, proc, waiter, outcome
    if proc.poll() is None:
        proc.kill()
    waiter.join(timeout=10)


def require_root_and_redis_group() -> None:
    # The fetch chowns to root:redis only as root (a rehearsal run by a user keeps its own files).
    # make test runs as root after installing redis-server, whose package creates the group.
    if os.geteuid() != 0:
        pytest.fail("run as root (make test does): the fetch writes root:redis files only as root", pytrace=False)
    try:
        grp.getgrnam("redis")
    except KeyError:
        pytest.fail("no group redis: install redis-server (scripts/setup.sh does)", pytrace=False)


def test_fetch_writes_root_redis_0640_atomically_and_never_shows_the_password(tmp_path):
    require_root_and_redis_group()
    lo = fetcher(tmp_path)
    password = generate_password()
    lo.ssm_put(password)
    shim_dir, log = shims(tmp_path, lo)
    auth = Path(lo.paths(0).auth_file)
    first = lo.fetch_password(0, ATTEMPTS="1", PATH=str(shim_dir))
    assert first.returncode == 0, first.stdout + first.stderr
    assert auth.read_text() == written(lo, password)
    st = auth.stat()
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, oct(st.st_mode & 0o777)) == (0, "redis", "0o640")
    inode = st.st_ino
    second = lo.fetch_password(0, ATTEMPTS="1", PATH=str(shim_dir))
    assert second.returncode == 0
    # Replaced by a rename (a new inode), never rewritten in place; no temporary copy left beside it.
    assert auth.stat().st_ino != inode
    assert sorted(p.name for p in auth.parent.iterdir()) == ["auth.conf"]
    argv = log.read_text()
    assert "aws ssm get-parameter" in argv and "mv -f" in argv and "chown root:redis" in argv
    assert password not in argv
    secrets = (password, lo.ops_secret, replication_password(lo.ops_secret))
    assert not [s for s in secrets if s in argv]
    for result in (first, second):
        assert not [s for s in secrets if s in result.stdout + result.stderr]


def grace_file(lo: Loopback, new: str, old: str, until: int) -> str:
    return written(lo, new, until, old)


def test_fetch_keeps_a_running_grace_only_for_the_password_it_belongs_to(tmp_path):
    lo = fetcher(tmp_path)
    auth = Path(lo.paths(0).auth_file)
    old, new, newer = generate_password(), generate_password(), generate_password()
    later, earlier = int(time.time()) + 600, int(time.time()) - 5

    def boot(cached: str, in_ssm: str | None, outage: str | None = None) -> str:
        auth.write_text(cached)
        if in_ssm:
            lo.ssm_put(in_ssm)
        lo.ssm_outage(outage)
        result = lo.fetch_password(0, ATTEMPTS="1", CACHED_WAIT_SECONDS="2", RETRY_SECONDS="1")
        assert result.returncode == 0, result.stdout + result.stderr
        return auth.read_text()

    grace = functools.partial(grace_file, lo)
    assert boot(grace(new, old, later), new) == grace(new, old, later)  # a reboot during the grace
    assert boot(grace(new, old, later), newer) == written(lo, newer)
    assert boot(grace(new, old, earlier), new) == written(lo, new)
    # Without SSM: a running grace stays, an ended one goes (the server's own clock decides).
    assert boot(grace(new, old, later), None, "fail") == grace(new, old, later)
    assert boot(grace(new, old, earlier), None, "fail") == written(lo, new)


def test_fetch_without_ssm_starts_from_the_cached_file_and_fails_a_first_boot(tmp_path):
    lo = fetcher(tmp_path)
    auth = Path(lo.paths(0).auth_file)
    cached = generate_password()
    lo.ssm_outage("fail")
    started = time.monotonic()
    first_boot = lo.fetch_password(0, ATTEMPTS="2", RETRY_SECONDS="1")
    assert first_boot.returncode == 1 and "ERROR" in first_boot.stdout and not auth.exists()
    assert "(attempt 1)" in first_boot.stdout and "(attempt 2)" not in first_boot.stdout
    assert time.monotonic() - started < 10
    auth.write_text(f"requirepass {cached}\nmasterauth {cached}\n")
    reboot = lo.fetch_password(0, CACHED_WAIT_SECONDS="3", RETRY_SECONDS="1")
    assert reboot.returncode == 0 and "WARNING" in reboot.stdout
    assert auth.read_text() == f"requirepass {cached}\nmasterauth {cached}\n"
    assert cached not in reboot.stdout + reboot.stderr


def test_a_reboot_waits_at_most_its_cached_wait_when_only_the_operations_secret_hangs(tmp_path):
    """Redis 5.0's boot reads two parameters; their calls share the reboot's wait (CACHED_WAIT_SECONDS), so
    a hanging second read cannot hold Redis back longer than the first alone could. Planted (each call
    bounded by SSM_CALL_SECONDS alone): about 12 s."""
    lo = Loopback(tmp_path / "state", servers=1, version="5.0", hosts=["127.0.0.1"])
    Path(lo.paths(0).auth_dir).mkdir(parents=True)
    lo.write_files()  # the first boot: the password, the operations secret and the names
    written = Path(lo.paths(0).auth_file).read_text()
    assert f"rename-command CONFIG CONFIG-{lo.ops_secret}" in written
    lo.ssm_outage("hang", only=secret_names_env("rehearsal", lo.platform)["OPS_PARAMETER"])
    started = time.monotonic()
    reboot = lo.fetch_password(0, CACHED_WAIT_SECONDS="4", SSM_CALL_SECONDS="10", RETRY_SECONDS="1")
    took = time.monotonic() - started
    assert reboot.returncode == 0 and "WARNING" in reboot.stdout, reboot.stdout + reboot.stderr
    assert took < 8, f"took {took:.1f}s"
    assert Path(lo.paths(0).auth_file).read_text() == written  # the cached names kept
    assert lo.ops_secret not in reboot.stdout + reboot.stderr


def test_a_first_boot_gives_up_within_its_first_boot_seconds_and_names_the_parameter_it_could_not_read(tmp_path):
    """A first boot has no cached password: it tries until FIRST_BOOT_SECONDS have passed, whatever ATTEMPTS
    says, so redis-auth fails on its own (with a line naming what it could not read) well before systemd's
    TimeoutStartSec would kill it (tests/render/test_password.py checks the sum). Here only Redis 5.0's operations
    secret hangs. Planted (each call bounded by SSM_CALL_SECONDS alone, 30 attempts): about 2 minutes."""
    lo = Loopback(tmp_path / "state", servers=1, version="5.0", hosts=["127.0.0.1"])
    Path(lo.paths(0).auth_dir).mkdir(parents=True)
    lo.write_password_scripts()
    lo.ssm_put(lo.password)
    ops = secret_names_env("rehearsal", lo.platform)["OPS_PARAMETER"]
    lo.ssm_put(generate_password(), ops)
    lo.ssm_outage("hang", only=ops)
    started = time.monotonic()
    first = lo.fetch_password(0, timeout=60, ATTEMPTS="30", FIRST_BOOT_SECONDS="6", SSM_CALL_SECONDS="3",
                              RETRY_SECONDS="1")
    took = time.monotonic() - started
    output = first.stdout + first.stderr
    assert first.returncode == 1 and not Path(lo.paths(0).auth_file).exists(), output
    assert took < 10, f"took {took:.1f}s"
    assert f"ERROR: cannot read {ops}, and no earlier" in output, output
    assert lo.password not in output and lo.ssm_value(ops) not in output


def test_fetch_gives_a_hanging_ssm_at_most_about_30_seconds_on_a_reboot(ssm_hangs_on_a_reboot):
    lo, cached, proc, waiter, outcome = ssm_hangs_on_a_reboot
    waiter.join(timeout=60)
    assert "ended" in outcome, "the fetch still waits for SSM after 60 s"
    took, output = outcome["ended"] - outcome["started"], outcome["stdout"] + outcome["stderr"]
    print(f"\nfetch with a hanging SSM and a cached file: exit {proc.returncode} after {took:.1f}s")
    assert proc.returncode == 0 and "WARNING" in outcome["stdout"], output
    assert 25 <= took <= 35, f"took {took:.1f}s"
    assert Path(lo.paths(0).auth_file).read_text() == f"requirepass {cached}\nmasterauth {cached}\n"
    assert cached not in output


# ---------------------------------------------------------------- the rehearsal CLI

A = loopback_octet()


def rehearse(state: Path, prefix: str, version: str | None, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "outsystems_redis.tools.rehearsal", *args, "--stack", "dev", "--state-dir", str(state),
           "--host-prefix", prefix] + (["--version", version] if version else [])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("version, b", [(None, 241), ("7.0", 242)], ids=["dev-default", "dev-7.0"])
def test_rehearsal_rotate_password_then_status_keeps_working(version, b, tmp_path):
    redis_bin(version or "5.0")  # the stacks' default platform runs Redis 5.0
    state, prefix = tmp_path / "rehearsal", f"127.{A}.{b}."
    try:
        assert rehearse(state, prefix, version, "up").returncode == 0
        old = (state / "password").read_text().strip()
        rotated = rehearse(state, prefix, version, "rotate-password", "--grace", "2")
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        new = (state / "password").read_text().strip()
        assert new != old and len(new) == 40 and new.isalnum()
        assert (state / "password").stat().st_mode & 0o777 == 0o600
        assert f"{prefix}1:6379,password={new}" in rotated.stdout and "HEALTHY" in rotated.stdout
        assert "errors seen by the client: 0; wrong answers: 0" in rotated.stdout
        assert f"server 1 ({prefix}1): redis-password-sync exit 0" in rotated.stdout  # counted from 1
        status = rehearse(state, prefix, version, "status")
        assert status.returncode == 0 and "HEALTHY" in status.stdout and f"password={new}" in status.stdout
        if version == "7.0":
            assert "grace" in rotated.stdout and "accepted by 1 of 1" in rotated.stdout
            # The zone as the machine names it: UTC, CET, or a numeric one such as -03.
            assert re.search(r"stays accepted until \d\d:\d\d:\d\d ([A-Z]{3,5}|[+-]\d{2,4}) on ", rotated.stdout), \
                rotated.stdout
            time.sleep(3)
            synced = rehearse(state, prefix, version, "sync-password")
            assert synced.returncode == 0 and "grace has ended" in synced.stdout, synced.stdout
        else:
            assert "accepted by 0 of 1" in rotated.stdout
        assert redis.Redis(prefix + "1", 6379, password=new, socket_timeout=2).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(prefix + "1", 6379, password=old, socket_timeout=2).ping()
    finally:
        down = rehearse(state, prefix, version, "down")
    assert down.returncode == 0 and not state.exists()


def test_before_redis_auth_has_written_the_file_the_sync_has_nothing_to_do(loopback_factory, tmp_path):
    """A first boot's timer can fire before redis-auth has written the auth file (its unit still trying, or
    restarted): the sync says so and succeeds, touching nothing, so no unit shows failed for redis-auth's
    delay (the boot test saw one, after redis-auth's container-only 219/CGROUP restart)."""
    redis_bin("5.0")
    lo = loopback_factory("5.0", 1)
    lo.write_password_scripts()
    missing = tmp_path / "auth" / "auth.conf"
    env = {"PATH": lo.script_path(), **lo.password_sync_environment(0), "AUTH_FILE": str(missing)}
    result = subprocess.run([BASH, str(lo.state_dir / "redis-password-sync")], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "has not written it; nothing to sync" in result.stdout
    assert not missing.parent.exists()


def operations_takers(lo: Loopback) -> list[str]:
    """The processes that log in the operations user with the operations secret (a new connection each)."""
    took = []
    for p in lo.processes:
        try:
            client = redis.Redis(p.host, p.port, username=OPERATIONS_USER, password=lo.ops_secret, socket_timeout=2)
            try:
                if client.ping():
                    took.append(p.address)
            finally:
                client.close()
        except redis.RedisError:
            pass
    return took


@pytest.mark.parametrize("names", ["with secret command names", "before them"])
def test_the_sync_gives_a_7_0_server_of_an_earlier_version_the_operations_user(names, loopback_factory):
    """A 7.0 server created before the users (its redis-auth had no FRONT_END_RULES, so its auth include
    defines none) gets the operations user at the sync's next run, on every process and in the include, so the
    scripts of this version log in as it on every server of a cluster alike, and so does a restart. It gets the
    replication user too, and its replicas log in to their masters as it (masteruser), as a new server's do. Its
    front-ends' user keeps every command (narrowing it is a new server's redis-auth's). The sessions are kept.
    A server older still (no secret command names, no OPS_PARAMETER in its auth.env) reads the operations secret
    beside its password's parameter. Planted (the sync without this step; without that reading): each fails."""
    lo = loopback_factory("7.0")
    older = {"FRONT_END_RULES": ""}  # as an earlier version's auth.env: no users
    if names == "before them":
        older |= {"OPS_PARAMETER": "", "RENAMED_COMMANDS": ""}
    lo.auth_overrides.update(older)
    lo.start()
    lo.bootstrap()
    auth = Path(lo.paths(0).auth_file)
    assert "user " not in auth.read_text() and operations_takers(lo) == []
    assert ("rename-command" in auth.read_text()) == (names != "before them")
    traffic = SessionTraffic(lo)
    traffic.start()
    results = lo.sync_passwords(**older)
    traffic.stop()
    assert all(code == 0 for code, _ in results.values()), results
    assert all("added the operations user" in output for _, output in results.values()), results
    assert all("added the replication user" in output for _, output in results.values()), results
    assert operations_takers(lo) == [p.address for p in lo.processes]
    text = auth.read_text()
    assert f"user {OPERATIONS_USER} on >{lo.ops_secret} ~* &* +@all\n" in text
    replication = replication_password(lo.ops_secret)
    assert f"user {REPLICATION_USER} on >{replication} {REPLICATION_RULES}\nmasteruser {REPLICATION_USER}\n" \
           f"masterauth {replication}\n" in text, text
    replication_reconnects(lo)  # the links log in again, now as the replication user
    assert {u for users in replica_logins(lo).values() for u in users} == {REPLICATION_USER}
    assert f"user default on >{lo.password} ~* &* +@all\n" in text  # the front-ends' user as it was
    assert takers(lo, lo.password) == [p.address for p in lo.processes]
    assert verify_sessions(lo, traffic.acked) == []
    # The next run has nothing to add; a restart reads the users from the include.
    again = lo.sync_passwords()
    assert all(code == 0 and "added" not in output for code, output in again.values()), again
    first = lo.processes[0]
    lo.kill_process(first)
    lo.start()
    assert first.address in operations_takers(lo) and lo.accepts(first, lo.password)
    links_up(lo)
    assert {u for users in replica_logins(lo).values() for u in users} == {REPLICATION_USER}


def test_an_unusable_password_in_ssm_still_lets_the_sync_give_an_earlier_server_its_users(loopback_factory):
    """An unusable password in SSM (someone put one by hand) fails the sync's run, names the parameter, and changes
    no password; the steps that give a 7.0 server of an earlier version its operations and replication users still
    run, so that server does not wait for the parameter to be fixed. Planted (the run ending at the unusable
    password, as before): no users."""
    lo = loopback_factory("7.0", servers=1)
    older = {"FRONT_END_RULES": ""}  # as an earlier version's auth.env: no users
    lo.auth_overrides.update(older)
    lo.start()
    auth = Path(lo.paths(0).auth_file)
    assert "user " not in auth.read_text()
    lo.ssm_put("short,one")
    [(code, output)] = lo.sync_passwords(**older).values()
    assert code == 1 and "ERROR: " in output and "holds no usable password" in output, output
    assert f"{PASSWORD_PARAMETER} holds no usable password" in output and "short,one" not in output, output
    assert "added the operations user" in output and "added the replication user" in output, output
    text = auth.read_text()
    assert f"requirepass {lo.password}\n" in text and f"user {OPERATIONS_USER} on >{lo.ops_secret} " in text, text
    assert operations_takers(lo) == [p.address for p in lo.processes] and takers(lo, lo.password)
