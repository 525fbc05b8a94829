"""A changed password reaches running servers: redis-password-sync and its timer.

Servers read the SSM password at boot only (fetch-password.sh, redis-auth.service).
password-sync.sh in server_files/ (uploaded by `pulumi up` to the stack's bucket as
monitoring.PASSWORD_SYNC_TOOL_KEY, and run by the launcher redis-run-fetched, as it
needs AWS anyway: outsystems_redis/render/fetched.py) runs
every minute on every server, on the minute, and applies a changed parameter to
the server's running Redis processes through their ports, without a restart:
on Redis 5.0 at once, on Redis 7.0 with a grace during which the previous
password is accepted too (PASSWORD_GRACE_SECONDS). Pure text, no pulumi.
"""

from __future__ import annotations

from pathlib import Path

from outsystems_redis import monitoring
from outsystems_redis.parameters import ops_password_parameter
from outsystems_redis.platforms import Platform
from outsystems_redis.render.redis_conf import FRONT_END_RULES, has_users, secret_named_commands
from outsystems_redis.render.shipped import shipped_script
from outsystems_redis.render.systemd import AUTH_ENV_PATH, AUTH_UNIT, OBSERVE_PATH, SEARCH_PATH, STATE_DIR, redis_unit
from outsystems_redis.server_files import source

PASSWORD_SYNC_SCRIPT = source("password-sync.sh")
FETCH_PASSWORD_SCRIPT = source("fetch-password.sh")
PASSWORD_SYNC_ENV_PATH = "/etc/redis/password-sync.env"
PASSWORD_SYNC_UNIT = "redis-password-sync.service"
PASSWORD_SYNC_TIMER = "redis-password-sync.timer"
# How long Redis 7.0 still accepts the previous password after a change: the time
# the administrator has to paste the new connection string into every front-end.
PASSWORD_GRACE_SECONDS = 3600
REDIS_LINES = ("5.0", "7.0")


def password_sync_script() -> str:
    """The exact text of redis-password-sync."""
    return shipped_script(PASSWORD_SYNC_SCRIPT, library=True)


def fetch_password_script() -> str:
    """The exact text of the boot step (redis-fetch-password) that writes the auth include from SSM."""
    return shipped_script(FETCH_PASSWORD_SCRIPT, library=True)


def secret_names_env(stack: str, platform: Platform) -> dict[str, str]:
    """redis-fetch-password's inputs for the secret command names (redis_conf.secret_named_commands): the
    operations secret's parameter and the commands to rename; on 7.0, the front-ends' rules
    (redis_conf.FRONT_END_RULES), which also give the servers their operations user."""
    return {"OPS_PARAMETER": ops_password_parameter(stack),
            "RENAMED_COMMANDS": " ".join(secret_named_commands(platform)),
            **({"FRONT_END_RULES": FRONT_END_RULES} if has_users(platform) else {})}


def password_sync_env(ports: tuple[int, ...], redis_line: str, redis_cli: str) -> dict[str, str]:
    """redis-password-sync's own inputs (PASSWORD_PARAMETER, AWS_REGION and AUTH_FILE come from auth.env).

    `redis_line` is the platform's Redis line ("5.0" or "7.0"); `redis_cli` is
    redis-cli, or the TLS wrapper when the stack's `tls` key is on. No secret.
    """
    if redis_line not in REDIS_LINES:
        raise ValueError(f"unknown Redis line {redis_line!r}: use 5.0 or 7.0")
    if not ports:
        raise ValueError("a server runs at least one Redis process")
    return {
        "PORTS": " ".join(str(p) for p in ports),
        "REDIS_LINE": redis_line,
        "REDIS_CLI": redis_cli,
        "GRACE_SECONDS": str(PASSWORD_GRACE_SECONDS),
    }


def password_sync_fetch_env(state_dir: str = STATE_DIR) -> dict[str, str]:
    """The launcher's inputs on EC2 (the bucket: auth.env): the program's key, where its last copy stays."""
    return {"TOOLS_KEY": monitoring.PASSWORD_SYNC_TOOL_KEY, "STATE_DIR": state_dir}


def render_password_sync_unit(ports: tuple[int, ...], sandbox: str = "") -> str:
    """The oneshot the timer starts: root (it rewrites the root:redis auth file), after this server's Redis.
    `sandbox`: systemd.aws_sandbox, with /etc/redis writable."""
    units = " ".join(redis_unit(p) for p in ports)
    return (
        "[Unit]\n"
        "Description=Apply a changed Redis password from SSM Parameter Store to the running Redis processes\n"
        "# Ordering only: a run waits for a Redis process that is starting, never starts one.\n"
        f"After=network-online.target {AUTH_UNIT} {units}\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"Environment=PATH={SEARCH_PATH}\n"
        f"EnvironmentFile={AUTH_ENV_PATH}\n"
        f"EnvironmentFile={PASSWORD_SYNC_ENV_PATH}\n"
        f"ExecStart={OBSERVE_PATH}\n"
        f"StateDirectory={Path(STATE_DIR).name}\n"
        "StateDirectoryMode=0700\n"
        "SyslogIdentifier=redis-password-sync\n"
        "# Every call is bounded: the fetch (SSM 22 s, the program 32 s, its signature 12 s at worst),\n"
        "# the sync's SSM read (12 s), each Redis command. A slow run delays the next minute's.\n"
        "TimeoutStartSec=110\n"
        f"{sandbox}"
    )


def render_password_sync_timer() -> str:
    """Every minute on the minute on every server, so all of them switch in the same second."""
    return (
        "[Unit]\n"
        "Description=Check SSM Parameter Store for a changed Redis password every minute\n"
        "\n"
        "[Timer]\n"
        "# On the wall clock, not relative to boot: every server (clocks kept by Amazon Time\n"
        "# Sync) runs in the same second, so the servers switch passwords together.\n"
        "OnCalendar=*:*:00\n"
        "AccuracySec=1s\n"
        f"Unit={PASSWORD_SYNC_UNIT}\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
