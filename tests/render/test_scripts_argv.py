"""No shipped script ever puts the password or the TLS key on a process's command line, stdout or stderr.

Each shipped bash script that handles a secret runs here for real, on loopback,
under both guards of tests/integration/argv.py: a PATH of logging shims (every
command run by name, and `$REDIS_CLI`) and a /proc sampler (every process, even
one run by absolute path). A script that passed `-a "$REDISCLI_AUTH"` to
redis-cli, or the key to openssl as an argument, fails here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from outsystems_redis.render import programs
from outsystems_redis.render.backup import backup_script
from outsystems_redis.render.bootstrap import bootstrap_script
from outsystems_redis.render.join import join_script
from outsystems_redis.render.make_room import LOOPBACK_INTERVALS, TARGET_PERCENT, make_room_env, make_room_script
from outsystems_redis.render.metrics import observe_launcher, observe_script
from outsystems_redis.render.password import fetch_password_script, password_sync_script
from outsystems_redis.render.roles import role_restore_env, role_restore_script
from outsystems_redis.render.step_down import step_down_env, step_down_script
from outsystems_redis.render.tls import fetch_tls_script
from outsystems_redis.tools.loopback import BASH, generate_password, make_ca, make_server_certificate
from tests.integration.argv import Shims, assert_never_shown, detectors_work, run_watched
from tests.integration.loopbacks import make_loopback
from tests.integration.metrics_stand_in import fake_journalctl, journal_entry
from tests.integration.moto_stand_in import STACK, VENV_BIN, backup_environment, stand_in_where
from tests.integration.stand_ins import Ssm, require_root_and_redis_group
from tests.render.support import shipped_scripts
from tests.tools import fill, redis_bin, tool

# What marks a script as handling a secret, outside its comments.
SECRET_INPUTS = re.compile(r"REDISCLI_AUTH|AUTH_FILE|PASSWORD_PARAMETER|TLS_KEY_PARAMETER|TLS_KEY_FILE")
# Each script that does, and the test here that runs it.
WATCHED = {
    "cluster-bootstrap": bootstrap_script,
    "cluster-join": join_script,
    "fetch-password": fetch_password_script,
    "password-sync": password_sync_script,
    "fetch-tls": fetch_tls_script,
    "role-restore": role_restore_script,
    "make-room": make_room_script,
    "backup": backup_script,
    "step-down": step_down_script,
    # Fetched by the user data's launcher from the stack's bucket (too big for the user data).
    "redis-observe": observe_script,
}
# Handle a secret but are not in the user data: the servers fetch them at run time.
# fetched from the bucket by the launcher
FETCHED = {observe_script, backup_script, password_sync_script, fetch_password_script, fetch_tls_script, join_script}


def handles_a_secret(text: str) -> bool:
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return bool(SECRET_INPUTS.search(code))


def copy_of(tmp_path: Path, name: str) -> str:
    """The shipped text of `name`, written where the test runs it."""
    path = tmp_path / name
    path.write_text(WATCHED[name]())
    return str(path)


def test_every_shipped_script_that_handles_a_secret_is_run_here():
    # A new secret-handling script in any user-data shape must be added to WATCHED (and run below).
    # The shell scripts, and the one Python program (redis-make-room) the user data carries.
    handling = {text for text in [*shipped_scripts().values(), make_room_script()] if handles_a_secret(text)}
    assert handling | {text() for text in FETCHED} == {text() for text in WATCHED.values()}
    assert all(handles_a_secret(text()) for text in FETCHED)


def test_the_argv_guards_catch_a_planted_secret(tmp_path):
    detectors_work(tmp_path)


def test_cluster_bootstrap_and_join_keep_the_password_off_every_command_line(request, tmp_path_factory, tmp_path):
    lo = make_loopback(request, tmp_path_factory, "5.0")
    lo.start()
    shims = Shims(tmp_path / "shims", first=[Path(lo.redis_cli).parent])
    cli = {"PATH": shims.path, "REDIS_CLI": shims.command("redis-cli")}

    env = {**lo.bootstrap_environment(wait_seconds=60), **cli}
    formed, sampler = run_watched([BASH, copy_of(tmp_path, "cluster-bootstrap")], env, [lo.password], shims, 240)
    assert formed.returncode == 0, formed.stdout + formed.stderr
    assert "creating the cluster" in formed.stdout
    assert_never_shown(formed, sampler, shims, [lo.password])
    assert shims.ran("redis-cli") > 10  # the log is real: every cluster command went through the shim
    assert sampler.marker_seen > 0  # and the sampler saw them (a quick script may finish between two scans)

    lo.add_servers(1, join=False)  # server 3 boots; its join runs here, under watch
    # SETTLE_SECONDS: how long the cluster must stay still before a join; 1 s is plenty on loopback.
    env = {**lo.join_environment(3, wait_seconds=120), **cli, "SETTLE_SECONDS": "1"}
    joined, sampler = run_watched([BASH, copy_of(tmp_path, "cluster-join")], env, [lo.password], shims, 600)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert "moved to it: 4096" in joined.stdout, joined.stdout
    assert_never_shown(joined, sampler, shims, [lo.password])
    commands = [" ".join(args) for args in shims.lines()]
    # add-node and rebalance (whose MIGRATEs carry AUTH) ran through the shim, with no password in sight.
    assert any("--cluster add-node" in c for c in commands) and any("--cluster rebalance" in c for c in commands)


@pytest.mark.parametrize("version", ["5.0", "7.0"])
def test_fetch_password_and_password_sync_keep_both_passwords_off_every_command_line(version,
                                                                                     loopback_factory,
                                                                                     tmp_path):
    lo = loopback_factory(version, 1)
    lo.start()
    old, new = lo.password, generate_password()
    # The operations secret (CONFIG's name is made from it) is a secret too.
    ops = [lo.ops_secret]
    assert lo.ops_secret
    shims = Shims(tmp_path / "shims", first=[lo.bin_dir, Path(lo.redis_cli).parent])

    env = {**lo.fetch_password_environment(0), "PATH": shims.path, "ATTEMPTS": "1"}
    fetched, sampler = run_watched([BASH, copy_of(tmp_path, "fetch-password")], env, [old, *ops], shims, 120)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert_never_shown(fetched, sampler, shims, [old, *ops])
    assert shims.ran("aws") == 1 + len(ops)

    lo.ssm_put(new)  # a rotation: the sync handles the old and the new password at once
    env = {**lo.password_sync_environment(0, grace_seconds=0), "PATH": shims.path,
           "REDIS_CLI": shims.command("redis-cli")}
    synced, sampler = run_watched([BASH, copy_of(tmp_path, "password-sync")], env, [old, new, *ops], shims, 120)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert_never_shown(synced, sampler, shims, [old, new, *ops])
    assert lo.accepts(lo.processes[0], new) and not lo.accepts(lo.processes[0], old)  # it did switch


def test_fetch_tls_keeps_the_key_off_every_command_line(tmp_path):
    tool("openssl")
    redis_bin("7.0")
    require_root_and_redis_group()
    ssm = Ssm(tmp_path)
    ca = make_ca(tmp_path / "ca")
    make_server_certificate(ca, tmp_path / "server.crt", tmp_path / "server.key", ["127.0.0.1"])
    key = (tmp_path / "server.key").read_text()
    ssm.put_material(ca[0].read_text(), (tmp_path / "server.crt").read_text(), key)
    # Every line of the key's body: a leak of any part of it counts.
    secrets = [line for line in key.splitlines() if line and not line.startswith("-----")]
    shims = Shims(tmp_path / "shims", first=[ssm.bin_dir])
    env = {**ssm.env(), "PATH": shims.path}
    fetched, sampler = run_watched([BASH, copy_of(tmp_path, "fetch-tls")], env, secrets, shims, 120)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert Path(env["TLS_KEY_FILE"]).read_text() == key
    assert_never_shown(fetched, sampler, shims, secrets)
    assert shims.ran("openssl") == 2 and shims.ran("aws") == 3  # the key went to openssl, on stdin


def test_role_restore_keeps_the_password_off_every_command_line(loopback_factory, tmp_path):
    lo = loopback_factory("7.0")
    lo.start()
    lo.bootstrap()
    # Drift server 1 by hand (its master hands over to its replica on server 0), so the script acts.
    lo.admin(lo.topology.servers[0].processes[1]).execute_command("CLUSTER", "FAILOVER")
    shims = Shims(tmp_path / "shims", first=[Path(lo.redis_cli).parent])
    env = {**role_restore_env(lo.topology, 1, auth_file=lo.paths(1).auth_file, redis_cli=shims.command("redis-cli")),
           "PATH": shims.path}
    for _ in range(60):  # the handover takes a moment; the script waits (exit 0) until it is done
        restored, sampler = run_watched([BASH, copy_of(tmp_path, "role-restore")], env, [lo.password], shims, 120)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert_never_shown(restored, sampler, shims, [lo.password])
        if "master again" in restored.stdout:
            break
    assert "master again" in restored.stdout, restored.stdout
    # The failover itself went through the shim (the password in REDISCLI_AUTH only).
    assert any("cluster failover" in " ".join(args) for args in shims.lines())


def test_make_room_keeps_the_password_off_every_command_line(loopback_factory, tmp_path):
    lo = loopback_factory("5.0", servers=1)
    lo.start()
    client = lo.client(lo.processes[0])
    fill(client, 20000, "key")
    used = int(client.info("memory")["used_memory"])
    limit = used * 100 // 95  # the process at 95 % of its maxmemory: the script must act
    lo.config(lo.processes[0], "SET", "maxmemory", str(limit))
    shims = Shims(tmp_path / "shims", first=[Path(lo.redis_cli).parent])
    env = {**make_room_env(lo.topology.servers[0].private_ip, (lo.port,), auth_file=lo.paths(0).auth_file),
           **LOOPBACK_INTERVALS, "PATH": shims.path}
    # It loops for good, as its unit runs it: two seconds of it.
    ran, sampler = run_watched([tool("timeout"), "2", sys.executable, copy_of(tmp_path, "make-room")], env,
                               [lo.password, lo.ops_secret], shims, 60)
    assert ran.returncode == 124, ran.stdout + ran.stderr  # stopped by timeout, not failed
    assert_never_shown(ran, sampler, shims, [lo.password, lo.ops_secret])
    assert re.search(rf"held 9\d % of maxmemory; evicted down to {TARGET_PERCENT} %", ran.stdout), ran.stdout
    memory = client.info("memory")
    assert int(memory["maxmemory"]) == limit  # put back as it was
    assert int(memory["used_memory"]) * 100 < limit * 86
    assert not shims.lines()  # it runs no program: its password goes over its own connection


def test_backup_keeps_the_password_off_every_command_line(loopback_factory, moto, tmp_path):
    moto.prepare_stack(STACK)  # the bucket and its parameter, as `pulumi up` makes them
    lo = loopback_factory("7.0")
    lo.start()
    lo.bootstrap()
    # The line's own redis-cli first: the venv's is 5.0's, which has no --user.
    shims = Shims(tmp_path / "shims", first=[Path(lo.redis_cli).parent, VENV_BIN])
    env = {**backup_environment(lo, 0, moto, tmp_path / "work"), "PATH": shims.path,
           "REDIS_CLI": shims.command("redis-cli")}
    backed_up, sampler = run_watched([BASH, copy_of(tmp_path, "backup")], env, [lo.password], shims, 180)
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    assert "1 master(s) backed up" in backed_up.stdout, backed_up.stdout
    assert_never_shown(backed_up, sampler, shims, [lo.password])
    # The snapshot, the identity and both uploads went through the shims (the password in REDISCLI_AUTH only).
    assert any("--rdb" in args for args in shims.lines()) and shims.ran("aws") == 4
    assert not moto.leaks(lo.password)


def test_step_down_keeps_the_password_off_every_command_line(loopback_factory, tmp_path):
    lo = loopback_factory("7.0")
    lo.start()
    lo.bootstrap()
    shims = Shims(tmp_path / "shims", first=[Path(lo.redis_cli).parent])
    env = {**step_down_env(lo.topology, 1, auth_file=lo.paths(1).auth_file, redis_cli=shims.command("redis-cli")),
           "PATH": shims.path}
    master = lo.topology.servers[1].processes[0]
    stepped, sampler = run_watched([BASH, copy_of(tmp_path, "step-down"), str(master.port)], env, [lo.password],
                                   shims, 120)
    assert stepped.returncode == 0 and "is the master now" in stepped.stdout, stepped.stdout + stepped.stderr
    assert_never_shown(stepped, sampler, shims, [lo.password])
    # The failover itself went through the shim (the password in REDISCLI_AUTH only).
    assert any("cluster failover" in " ".join(args) for args in shims.lines())


def test_redis_observe_keeps_the_password_off_every_command_line(loopback_factory, moto, tmp_path):
    """The launcher and the program it fetches (metrics, then logs with the password in the slow log)."""
    lo = loopback_factory("5.0", 1)
    lo.start()
    r = lo.client(lo.processes[0])
    lo.config(lo.processes[0], "SET", "slowlog-log-slower-than", "0")
    r.set("planted", lo.password)
    moto.prepare_stack("argv")
    entries = tmp_path / "journal.jsonl"
    entries.write_text(journal_entry(1, "redis-auth.service", "redis-auth: wrote the auth include") + "\n")
    journal_dir = tmp_path / "journal-bin"
    fake_journalctl(journal_dir, entries)
    # /usr/bin before the rest: python3 is the system one, as on a server (not a pyenv shim).
    shims = Shims(tmp_path / "shims", first=[journal_dir, moto.bin, "/usr/bin"])
    launcher = tmp_path / "redis-observe"
    launcher.write_text(observe_launcher())
    for command in ("metrics", "logs"):
        env = {**moto.env(), **programs.environment(f"redis-{command}",
                                                    stand_in_where(lo, 0, "argv", state_dir=str(tmp_path / "st"))),
               "PATH": shims.path}
        result, sampler = run_watched([BASH, str(launcher), command], env, [lo.password, lo.ops_secret],
                                      shims, 180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_never_shown(result, sampler, shims, [lo.password, lo.ops_secret])
    # Each run: SSM and S3 (the launcher); then PutMetricData in the stack's former namespace,
    # GetCallerIdentity and PutMetricData in the server's own, or per stream (Redis log, journal, slow log)
    # CreateLogStream and PutLogEvents. All through the shims: the log is real.
    assert (shims.ran("aws"), shims.ran("python3"), shims.ran("journalctl")) == (2 + 3 + 2 + 6, 4, 1)
    assert lo.password not in moto.everything()
