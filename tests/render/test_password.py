"""redis-password-sync and its timer through their real consumers: shellcheck, systemd-analyze.

A missing tool fails here (tests.tools): these checks are the only proof the
rendered units and the shipped scripts are what systemd and bash accept.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from outsystems_redis.parameters import (
    OPERATIONS_USER,
    REPLICATION_USER,
    ops_password_parameter,
    password_parameter,
    replication_password,
)
from outsystems_redis.render import systemd
from outsystems_redis.render.metrics import observe_launcher
from outsystems_redis.render.password import (
    PASSWORD_GRACE_SECONDS,
    PASSWORD_SYNC_ENV_PATH,
    PASSWORD_SYNC_TIMER,
    PASSWORD_SYNC_UNIT,
    fetch_password_script,
    password_sync_env,
    password_sync_script,
    render_password_sync_timer,
    render_password_sync_unit,
)
from outsystems_redis.render.redis_conf import OPERATIONS_RULES, REPLICATION_RULES
from outsystems_redis.render.shipped import LIBRARY
from outsystems_redis.render.tls import fetch_tls_script
from outsystems_redis.server_files import make_room_agent, metrics_agent
from tests.tools import tool

PORTS = (7000, 7001)


def shellcheck(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess:
    f = tmp_path / name
    f.write_text(text)
    return subprocess.run([tool("shellcheck"), "--severity=style", str(f)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, text", [("redis-password-sync", password_sync_script()),
                                        ("redis-fetch-password", fetch_password_script())])
def test_scripts_pass_shellcheck(name, text, tmp_path):
    result = shellcheck(tmp_path, name, text)
    assert result.returncode == 0, result.stdout


def test_shellcheck_can_fail(tmp_path):
    assert shellcheck(tmp_path, "bad", "#!/bin/bash\necho $1\n").returncode != 0


def verify(unit_dir: Path, *units: str) -> str:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}  # trailing ':' keeps the system dirs
    result = subprocess.run([tool("systemd-analyze"), "verify", *units], capture_output=True, text=True, env=env,
                            timeout=120)
    return f"rc={result.returncode}\n{result.stdout}{result.stderr}".strip()


def write_units(tmp_path: Path, timer: str | None = None) -> list[str]:
    """The unit and the timer as cloud-init writes them, ExecStart pointed at a copy of the script."""
    if not Path("/lib/systemd/system/redis-server@.service").exists():
        tool("redis-server@.service template (Debian redis-server package)")
    copy = tmp_path / "redis-password-sync"
    copy.write_text(password_sync_script())
    copy.chmod(0o755)
    unit = render_password_sync_unit(PORTS).replace(f"ExecStart={systemd.OBSERVE_PATH}\n", f"ExecStart={copy}\n")
    (tmp_path / PASSWORD_SYNC_UNIT).write_text(unit)
    (tmp_path / PASSWORD_SYNC_TIMER).write_text(timer if timer is not None else render_password_sync_timer())
    return [str(tmp_path / PASSWORD_SYNC_UNIT), str(tmp_path / PASSWORD_SYNC_TIMER)]


def test_unit_and_timer_pass_systemd_analyze_verify(tmp_path):
    assert verify(tmp_path, *write_units(tmp_path)) == "rc=0"


def test_verify_catches_a_bad_timer(tmp_path):
    bad = render_password_sync_timer().replace("OnCalendar=*:*:00", "OnCalendar=*:*:61")
    assert verify(tmp_path, *write_units(tmp_path, bad)) != "rc=0"


def test_timer_fires_on_the_minute_on_the_wall_clock():
    """Every server's timer elapses at second 0 of every minute, so all of them switch together."""
    timer = render_password_sync_timer()
    spec = re.search(r"^OnCalendar=(.+)$", timer, re.M).group(1)
    assert re.search(r"^AccuracySec=1s$", timer, re.M)
    assert not re.search(r"^(OnBootSec|OnUnitActiveSec|RandomizedDelaySec)=", timer, re.M)
    result = subprocess.run([tool("systemd-analyze"), "calendar", "--iterations=3", spec],
                            capture_output=True, text=True, env={**os.environ, "TZ": "UTC", "LC_ALL": "C"}, timeout=120)
    assert result.returncode == 0, result.stderr
    elapses = [datetime.strptime(m, "%Y-%m-%d %H:%M:%S")
               for m in re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+)", result.stdout)]
    assert len(elapses) == 3 and all(e.second == 0 for e in elapses)
    assert [(b - a).total_seconds() for a, b in zip(elapses, elapses[1:], strict=False)] == [60, 60]


def test_unit_runs_the_script_as_root_after_this_servers_redis_with_both_env_files():
    unit = render_password_sync_unit(PORTS)
    after = re.search(r"^After=(.+)$", unit, re.M).group(1).split()
    assert {systemd.AUTH_UNIT, "redis-server@7000.service", "redis-server@7001.service"} <= set(after)
    assert "Type=oneshot\n" in unit and "User=" not in unit  # root: the auth file is root:redis
    assert f"EnvironmentFile={systemd.AUTH_ENV_PATH}\n" in unit
    assert f"EnvironmentFile={PASSWORD_SYNC_ENV_PATH}\n" in unit
    # The launcher runs the program `pulumi up` put in the stack's bucket (fetched.py), keeping its last copy.
    assert f"ExecStart={systemd.OBSERVE_PATH}\n" in unit and "SyslogIdentifier=redis-password-sync\n" in unit
    assert f"StateDirectory={Path(systemd.STATE_DIR).name}\n" in unit
    # Requires/Wants on Redis would start it from a timer; ordering only.
    assert not re.search(r"^(Requires|BindsTo)=", unit, re.M)
    assert f"Unit={PASSWORD_SYNC_UNIT}" in render_password_sync_timer()


def test_sync_env_names_ports_line_cli_and_grace_and_no_secret():
    env = password_sync_env(PORTS, "7.0", "/usr/local/sbin/redis-cli-tls")
    assert env == {"PORTS": "7000 7001", "REDIS_LINE": "7.0", "REDIS_CLI": "/usr/local/sbin/redis-cli-tls",
                   "GRACE_SECONDS": str(PASSWORD_GRACE_SECONDS)}
    assert password_sync_env((6379,), "5.0", "redis-cli")["PORTS"] == "6379"
    with pytest.raises(ValueError):
        password_sync_env(PORTS, "6.2", "redis-cli")


@pytest.mark.parametrize("text", [password_sync_script(), fetch_password_script()], ids=["sync", "fetch"])
def test_scripts_never_put_a_password_on_a_command_line(text):
    """Static half of the argv check (the dynamic half runs the scripts under logging shims):
    redis-cli never gets -a/--pass/--user, and no command runs by absolute path, which would
    slip past those shims."""
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    cli_calls = [line for line in code if re.search(r"redis-cli|REDIS_CLI\"", line)]
    assert not [line for line in cli_calls if re.search(r"\s(-a|--pass|--user|--askpass)\s", line)]
    assert not [line for line in code if re.search(r"(^|[|;&(`]|\$\()\s*/(usr|bin|sbin|opt)/", line)]
    if "REDIS_CLI" in text:
        assert 'REDISCLI_AUTH=$password "$REDIS_CLI"' in text  # the one way redis-cli is run


@pytest.mark.parametrize("text", [password_sync_script(), fetch_password_script()], ids=["sync", "fetch"])
def test_every_ssm_call_is_bounded(text):
    """A boot or a sync never hangs on SSM: connect/read timeouts, few retries, and a hard `timeout`."""
    calls = [line for line in text.splitlines()
             if re.search(r"\baws ssm\b", line) and not line.lstrip().startswith("#")]
    assert calls and all(re.search(r"\btimeout -k \d+ \S+ aws ssm", line) for line in calls)
    call = text[text.index("aws ssm get-parameter"):]
    call = call[:call.index("\n}")]
    assert "--cli-connect-timeout" in call and "--cli-read-timeout" in call
    assert "export AWS_RETRY_MODE=" in text and "export AWS_MAX_ATTEMPTS=" in text


def _default(script: str, name: str) -> int:
    """A script's own default for input `name` (`NAME=${NAME:-N}`)."""
    return int(re.search(rf"^{name}=\$\{{{name}:-(\d+)\}}$", script, re.M).group(1))


@pytest.mark.parametrize("tls", [False, True])
def test_redis_auth_gives_up_by_itself_before_systemd_stops_it(tls):
    """A first boot with AWS hanging: redis-auth's steps end on their own, each with a line naming what it
    could not fetch or read, before TimeoutStartSec (systemd would kill them with no word of why). The worst
    case of each step: the metadata fence (two iptables waits); for each program, the launcher's tries
    (FIRST_FETCH_SECONDS, then one more fetch: the sum of its call bounds) and the program's own (the
    password: FIRST_BOOT_SECONDS, then its last call of at least a second plus the kill grace; the
    certificates: a whole attempt of three calls past its FIRST_BOOT_SECONDS). The password's bound is run
    for real in test_password_rotation, the launcher's in test_fetched_signatures. Planted
    (TimeoutStartSec=900): fails with TLS."""
    unit = systemd.render_auth_unit(tls)
    timeout = int(re.search(r"^TimeoutStartSec=(\d+)$", unit, re.M).group(1))
    fence = 2 * int(re.search(r"-w (\d+)", systemd.metadata_fence_command()).group(1))
    first_fetch = int(re.search(r"FIRST_FETCH_SECONDS=(\d+)", unit).group(1))
    # The bounds of a fetch without a copy (the bucket's name, the signed program), each + 2 s to kill.
    bounds = re.search(r"else bounds=\((\d+) (\d+)\)", observe_launcher()).groups()
    one_fetch = sum(int(n) + 2 for n in bounds)
    assert one_fetch >= 50, one_fetch  # (the regex took the two bounds: 22 + 32)
    launcher = first_fetch + one_fetch
    password = fetch_password_script()
    # Past its deadline each of its (up to two) SSM calls still gets a second, and 2 s to be killed.
    worst = fence + launcher + _default(password, "FIRST_BOOT_SECONDS") + 2 * (1 + 2)
    if tls:
        certificates = fetch_tls_script()
        assert "first_boot_deadline" in certificates
        worst += launcher + _default(certificates, "FIRST_BOOT_SECONDS") \
            + 3 * (_default(certificates, "SSM_CALL_SECONDS") + 2)
    assert worst < timeout, (worst, timeout)


# Passwords a deployer could put in Parameter Store: one of each kind the program refuses, and some it takes.
CANDIDATES = [
    "A" * 15, "A" * 16, "A" * 512, "A" * 513, "None", "Aa1!#$%&()*+-./:;<>?@[]^_`{|}~" + "x" * 4, "comma,in" + "x" * 12,
    "equals=in" + "x" * 12, "space in" + "x" * 12, "tab\tin" + "x" * 12, 'quote"in' + "x" * 12,
    "quote'in" + "x" * 12, "back\\slash" + "x" * 12, "accent\u00e9in" + "x" * 12, "bell\x07in" + "x" * 12,
    "newline\nin" + "x" * 12, "del\x7fin" + "x" * 12, "\u2603snowman" + "x" * 12,
]


def _program_takes(password: str) -> bool:
    from outsystems_redis.settings import SettingsError, check_password

    try:
        check_password(password)
    except SettingsError:
        return False
    return True


@pytest.mark.parametrize("name,text", [("redis-fetch-password", fetch_password_script()),
                                       ("redis-password-sync", password_sync_script())])
def test_the_servers_take_exactly_the_passwords_the_program_takes(name, text):
    """One rule: a password that `pulumi up` refuses (settings.check_password) is refused by the servers too, when
    it reaches Parameter Store another way (docs/operations.md: Changing the password), and the servers take what
    the program takes. The rule each script runs (lib.sh's password_usable, shipped in each, and
    redis-fetch-password's usable() around it) runs in bash, in a UTF-8 locale. Planted (`,` and `=` allowed,
    the rule before): fails."""
    functions = {m.group(1): m.group(0) for m in re.finditer(r"^(\w+)\(\) \{\n.*?^\}\n", text, re.M | re.S)}
    assert "password_usable" in functions, f"{name}: no password_usable() (lib.sh)"
    assert re.search(r"\b(usable|password_usable) \"\$new\"|usable \"\$password\"", text), f"{name} never uses it"
    check = "usable" if "usable" in functions else "password_usable"
    program = "OPS_PARAMETER=\n" + "".join(functions[f] for f in ("password_usable", "usable") if f in functions) \
        + check + ' "$1" && echo takes || echo refuses\n'
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for password in CANDIDATES:
        got = subprocess.run([tool("bash"), "-c", program, "usable", password], capture_output=True, text=True,
                             env=env, timeout=10).stdout.strip()
        want = "takes" if _program_takes(password) else "refuses"
        assert got == want, f"{name}: {password!r}: the servers' rule {got}, the program's {want}"


def test_a_failed_write_leaves_the_old_file_and_no_copy(tmp_path):
    """lib.sh's replace_file: content that fails half-way (set -u, as the scripts run) never replaces the file,
    and the script's EXIT trap removes the temporary copy; content that succeeds replaces it whole."""
    target = tmp_path / "auth.conf"
    target.write_text("requirepass old\n")
    script = (LIBRARY.read_text() + "\nset -euo pipefail\ntmp=''\ntrap '[ -z \"$tmp\" ] || rm -f \"$tmp\"' EXIT\n"
              "lines() { printf 'requirepass %s\\n' \"$1\"; printf '%s\\n' \"$unset_here\"; }\n"
              "good() { printf 'requirepass %s\\n' \"$1\"; }\n"
              'replace_file "$TARGET" 0640 "$WHICH" new\n')
    for which, code, content in [("lines", 1, "requirepass old\n"), ("good", 0, "requirepass new\n")]:
        done = subprocess.run([tool("bash"), "-c", script], env={"TARGET": str(target), "WHICH": which},
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == code and target.read_text() == content, (which, done.stderr)
        assert [p.name for p in tmp_path.iterdir()] == ["auth.conf"], which
    assert oct(target.stat().st_mode & 0o777) == "0o640"


def test_a_full_disk_leaves_the_auth_include_as_it_was(tmp_path) -> None:
    """With the disk full every write of auth_lines fails; its status was its last command's (0 on 5.0), so the
    include was replaced by an empty file, and Redis 5.0 would start with no password (its protected mode does
    nothing once redis.conf binds an address). Each layer on its own: auth_lines fails on a full device,
    replace_file refuses an empty result; together, on a real full file system, the old include stays.
    Planted (both layers removed): the include is empty."""
    full = _lib('operations="" renames=()\nauth_lines new-Password-0123456 >/dev/full && echo written')
    assert full.returncode != 0 and "written" not in full.stdout, full.stdout + full.stderr
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], check=True, timeout=30)
    try:
        auth = disk / "auth.conf"
        auth.write_text("requirepass old-Password-0123456\n")
        program = ('tmp=""\ntrap \'[ -z "$tmp" ] || rm -f "$tmp"\' EXIT\nempty() { :; }\n'
                   'replace_file "$AUTH" 0640 "$WHICH" new-Password-0123456 && echo replaced')
        nothing = _lib('operations="" renames=()\n' + program, {"AUTH": str(auth), "WHICH": "empty"})
        assert nothing.returncode != 0 and "replaced" not in nothing.stdout, nothing.stderr
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):  # until the file system is full
            while True:
                os.write(filler, b"x" * 512)
        os.close(filler)
        written = _lib('operations="" renames=()\n' + program, {"AUTH": str(auth), "WHICH": "auth_lines"})
        assert written.returncode != 0 and "replaced" not in written.stdout, written.stderr
        assert auth.read_text() == "requirepass old-Password-0123456\n"
        assert sorted(p.name for p in disk.iterdir()) == ["auth.conf", "filler"]  # no copy left behind
    finally:
        subprocess.run(["umount", str(disk)], check=False, timeout=30)


def _lib(program: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`program` run by bash after lib.sh, as the shipped scripts run it (set -euo pipefail)."""
    return subprocess.run([tool("bash"), "-c", LIBRARY.read_text() + "\nset -euo pipefail\n" + program],
                          env={"PATH": os.environ["PATH"], **(env or {})}, capture_output=True, text=True,
                          timeout=10)


def test_the_operations_user_has_one_name_and_one_rule_on_every_side() -> None:
    """The program, lib.sh (every shell program) and the two agents name the 7.0 operations user alike, with the
    rules the program gives it; the replication user too, and lib.sh makes its password as the migration tool
    does. Planted (lib.sh's user renamed, make-room's literal changed, a salt changed): each fails."""
    said = _lib('replication_secret "$OPS"\nprintf "%s\\n" "$OPERATIONS_USER" "$OPERATIONS_RULES" "$REPLICATION_USER" '
                '"$REPLICATION_RULES" "$replication"', {"OPS": "OPSsecret0123456789"}).stdout.splitlines()
    assert said == [OPERATIONS_USER, OPERATIONS_RULES, REPLICATION_USER, REPLICATION_RULES,
                    replication_password("OPSsecret0123456789")]
    assert len(said[-1]) == 64 and "OPSsecret" not in said[-1]
    assert make_room_agent.OPERATIONS_USER == metrics_agent.OPERATIONS_USER == OPERATIONS_USER


def test_the_auth_include_reads_back_as_it_was_written_on_both_lines(tmp_path) -> None:
    """lib.sh's auth_lines writes what read_auth reads back, for 5.0 (no users), 7.0 (the operations user, the
    front-ends' rules) and a 7.0 grace; redis_login, the agents' read_login and make-room then log in as the
    operations user where there is one, else with requirepass. (Real Redis 5.0 and 7.0 start from these files
    in the integration suite.) Planted (read_auth not reading the operations user): fails."""
    auth = tmp_path / "auth.conf"
    cases = {
        "5.0": ("", "", "", ()),
        "7.0": ("OPSsecret0123456789", "~* &* +@all -@admin", "", ()),
        "grace": ("OPSsecret0123456789", "~* &* +@all -@admin", "1800000000", ("previous-Password-0123",)),
    }
    for case, (operations, rules, until, previous) in cases.items():
        written = _lib(
            'renames=("rename-command CONFIG CONFIG-$OPS")\noperations=$OPERATIONS default_rules=$RULES\n'
            '[ -z "$OPERATIONS" ] || replication_secret "$OPERATIONS"\n'
            'if [ -n "$UNTIL" ]; then auth_lines "$PASSWORD" "$UNTIL" "$PREVIOUS"; else auth_lines "$PASSWORD"; fi\n',
            {"OPS": "OPSsecret0123456789", "OPERATIONS": operations, "RULES": rules, "UNTIL": until,
             "PREVIOUS": "".join(previous), "PASSWORD": "current-Password-0123"})
        assert written.returncode == 0, written.stderr
        auth.write_text(written.stdout)
        read = _lib('read_auth "$AUTH"\nredis_login "$AUTH"\n'
                    'printf "%s\\n" "$current" "$until" "${accepted[*]}" "$default_rules" "$ops" "$operations" '
                    '"${renames[*]}" "${redis_cli[*]}" "$REDISCLI_AUTH" "$replication"',
                    {"AUTH": str(auth), "REDIS_CLI": "cli"})
        assert read.returncode == 0, read.stderr
        current, got_until, accepted, got_rules, ops, got_operations, renames, cli, login, replication = \
            read.stdout.splitlines()
        assert (current, ops, renames) == ("current-Password-0123", "OPSsecret0123456789",
                                           "rename-command CONFIG CONFIG-OPSsecret0123456789"), case
        assert got_until == (until or "0") and got_operations == operations, case
        if case == "5.0":
            assert "user " not in written.stdout and (accepted, got_rules) == ("", ""), written.stdout
            assert "masterauth current-Password-0123\n" in written.stdout and "masteruser" not in written.stdout
            assert replication == "", written.stdout
            assert (cli, login) == ("cli", "current-Password-0123")
            assert metrics_agent.read_login(str(auth)) == ("current-Password-0123",)
            assert make_room_agent.login_and_config(str(auth)) == (["current-Password-0123"],
                                                                    "CONFIG-OPSsecret0123456789")
        else:
            assert accepted.split() == [*previous, "current-Password-0123"] and got_rules == rules, case
            # Replicas log in as the replication user, whatever the front-ends' password (or its grace) is.
            assert replication == replication_password(operations), case
            assert f"masteruser {REPLICATION_USER}\nmasterauth {replication}\n" in written.stdout, written.stdout
            assert "masterauth current" not in written.stdout, written.stdout
            assert (cli, login) == (f"cli --user {OPERATIONS_USER}", operations), case
            assert metrics_agent.read_login(str(auth)) == (OPERATIONS_USER, operations)
            assert make_room_agent.login_and_config(str(auth))[0] == [OPERATIONS_USER, operations]
            # Every password in the file is scrubbed from what the agent ships.
            assert set(metrics_agent.read_passwords(str(auth))) == {"current-Password-0123", operations, replication,
                                                                    *previous}


def test_the_operations_secret_is_the_passwords_sibling_as_the_sync_derives_it() -> None:
    """redis-password-sync finds the operations secret of a server created before OPS_PARAMETER (its auth.env
    names none) beside the password's parameter: the program must keep them siblings."""
    for stack in ("dev", "prod", "prod-70"):
        assert ops_password_parameter(stack) == password_parameter(stack).rsplit("/", 1)[0] + "/ops-password"
    assert "${PASSWORD_PARAMETER%/*}/ops-password" in password_sync_script()


def test_a_last_line_without_its_newline_is_read_too(tmp_path) -> None:
    """An include edited by hand may end without a newline: its last line still counts (planted: the plain
    `while read` loses it)."""
    auth = tmp_path / "auth.conf"
    auth.write_text("requirepass current-Password-0123\nuser operations on >OPSsecret0123456789 ~* &* +@all")
    read = _lib('read_auth "$AUTH"; printf "%s\\n" "$current" "$operations"', {"AUTH": str(auth)})
    assert read.stdout.splitlines() == ["current-Password-0123", "OPSsecret0123456789"], read.stdout + read.stderr
