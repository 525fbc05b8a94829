"""systemd units, drop-ins, sysctl and tmpfiles rules for a Redis server.

Each Redis process runs under Debian's hardened `redis-server@.service`
template (`redis-server@<port>` reads /etc/redis/redis-<port>.conf); we add
only a drop-in. Pure text; `tests/render` checks it with systemd-analyze.
"""

from __future__ import annotations

from outsystems_redis.monitoring import FETCH_PASSWORD_TOOL_KEY, FETCH_TLS_TOOL_KEY, JOIN_TOOL_KEY
from outsystems_redis.render.redis_conf import CLUSTER_NODE_TIMEOUT_MS, EC2_PATHS, Paths
from outsystems_redis.render.step_down import STEP_DOWN_ENV_PATH, STEP_DOWN_PATH

UNIT_DIR = "/etc/systemd/system"
TEMPLATE_DROP_IN = f"{UNIT_DIR}/redis-server@.service.d/outsystems.conf"
AUTH_UNIT = "redis-auth.service"
BOOTSTRAP_UNIT = "redis-cluster-bootstrap.service"
JOIN_UNIT = "redis-cluster-join.service"
PROVISION_UNIT = "redis-provision.service"
PROVISION_PATH = "/usr/local/sbin/redis-provision"
PROVISION_ENV_PATH = "/etc/redis/provision.env"
TIME_SYNC_PATH = "/etc/systemd/timesyncd.conf.d/60-amazon-time-sync.conf"
TLS_CLI_PATH = "/usr/local/sbin/redis-cli-tls"
BOOTSTRAP_PATH = "/usr/local/sbin/redis-cluster-bootstrap"
BOOTSTRAP_ENV_PATH = "/etc/redis/cluster-bootstrap.env"
JOIN_ENV_PATH = "/etc/redis/cluster-join.env"
AUTH_ENV_PATH = "/etc/redis/auth.env"
SYSCTL_PATH = "/etc/sysctl.d/60-redis.conf"
THP_TMPFILES_PATH = "/etc/tmpfiles.d/redis-thp.conf"
# The AWS CLI is /usr/bin/aws (apt's, 20.04) or /usr/local/bin/aws (the wheel, 24.04: redis-provision).
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The launcher of the programs servers fetch from the stack's bucket (outsystems_redis/render/fetched.py), and
# where it keeps each one's last copy (systemd's StateDirectory=outsystems-redis).
OBSERVE_PATH = "/usr/local/sbin/redis-run-fetched"
STATE_DIR = "/var/lib/outsystems-redis"
# The last copy of a fetched program that runs as redis: written by root only (0755), readable by redis
# (STATE_DIR is 0700).
REDIS_RUN_STATE_DIR = "/var/lib/outsystems-redis-run"


# The sandbox of the project's own units: no privilege gain, the file system read-only but for a private
# /tmp and the unit's StateDirectory (and the auth include's directory, for the two that rewrite it, and the
# TLS directory for redis-auth with TLS), no
# home directories, no devices. The units that only talk to Redis run in it as the redis user (cluster
# bootstrap and join, role restore, make-room): a compromised script gets the redis user's sockets and
# nothing more. The root units that call AWS (redis-auth, the password sync, backups, metrics, logs) run in
# it too (aws_sandbox), on every platform: none gets the AWS CLI from a snap, whose privileged launcher no
# sandbox lets start (platforms.py).
SANDBOX = (
    "NoNewPrivileges=yes\n"
    "ProtectSystem=strict\n"
    "ProtectHome=yes\n"
    "PrivateTmp=yes\n"
    "PrivateDevices=yes\n"
    "ProtectKernelTunables=yes\n"
    "ProtectKernelModules=yes\n"
    "ProtectControlGroups=yes\n"
    "RestrictSUIDSGID=yes\n"
    "RestrictNamespaces=yes\n"
    "LockPersonality=yes\n"
    "SystemCallArchitectures=native\n"
)


def aws_sandbox(*, writes_auth: bool = False) -> str:
    """SANDBOX for a root unit that calls AWS; `writes_auth`: the unit rewrites the auth include, in its own
    directory (redis-auth's ConfigurationDirectory), and nothing else of /etc/redis: not the key that checks
    fetched programs, nor the environment files other root units read."""
    return SANDBOX + (f"ReadWritePaths={EC2_PATHS.auth_dir}\n" if writes_auth else "")


def redis_unit(port: int) -> str:
    """The systemd instance that runs the process on `port`."""
    return f"redis-server@{port}.service"


def render_sysctl() -> str:
    return (
        "# Redis: fork for RDB snapshots without refusing memory, and a listen\n"
        "# backlog that matches tcp-backlog under connection bursts.\n"
        "vm.overcommit_memory = 1\n"
        "net.core.somaxconn = 65535\n"
    )


def render_thp_tmpfiles() -> str:
    # systemd-tmpfiles-setup applies this early on every boot, before Redis starts.
    return (
        "# Transparent huge pages cause latency spikes and memory bloat in Redis.\n"
        "w /sys/kernel/mm/transparent_hugepage/enabled - - - - never\n"
        "w /sys/kernel/mm/transparent_hugepage/defrag - - - - never\n"
    )


def render_template_drop_in(paths: Paths = EC2_PATHS, step_down: bool = False) -> str:
    """Drop-in for every redis-server@<port>: notify supervision, limits, password first.

    `step_down` (cluster servers): a clean stop first hands a master's slots to its replica.
    """
    # Why each line (kept out of the rendered text: user data is capped at 16 KB): the auth include comes
    # from SSM, so no Redis process starts without it; Type=notify and the foreground ExecStart are the
    # same on 20.04 (whose template forks) and 24.04; StateDirectory creates dir /var/lib/redis/<port>
    # owned by redis; the template waits forever to stop (0), and a shutdown whose RDB save fails must
    # not hang a reboot.
    return (
        "# outsystems-redis: added to Debian's redis-server@.service (outsystems_redis/render/systemd.py says why).\n"
        "[Unit]\n"
        f"Requires={AUTH_UNIT}\n"
        f"After={AUTH_UNIT} network-online.target systemd-tmpfiles-setup.service\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        "ExecStart=\n"
        f"ExecStart=/usr/bin/redis-server {paths.conf_dir}/redis-%i.conf --supervised systemd --daemonize no\n"
        "LimitNOFILE=65535\n"
        "StateDirectory=redis/%i\n"
        "StateDirectoryMode=0750\n"
        "TimeoutStartSec=300\n"
        "TimeoutStopSec=120\n"
        "Restart=always\n"
        + f"RestartSec={restart_seconds(step_down)}\n"
        + (_STEP_DOWN if step_down else "")
    )


# A crashed cluster process must come back only after its replica has taken over: restarted sooner, a
# master reloads its last RDB snapshot, keeps its slots, and its replica resyncs from that old copy, so
# every session written since the snapshot is lost (both Redis lines, measured: docs/operations.md "A crashed Redis
# process"). The failover takes cluster-node-timeout (5 s) plus the replica's election (up to about 2 s),
# but Redis 5.0 can deny a replica's first election: it asks for votes a moment before the masters flag
# its master FAIL ("its master is up"), and then may only try again 4 x cluster-node-timeout after that
# first try (cluster.c's auth retry time). 15 s (3 x) lost 65 of 200 sessions once on a busy machine that
# way. 7 x covers detection, one denied election and the retried one, with room for a busy server. The
# restarted process then finds a newer epoch for its slots and rejoins as the new master's replica. A
# single server has no replica to wait for: back at once.
CLUSTER_RESTART_SECONDS = 7 * CLUSTER_NODE_TIMEOUT_MS // 1000
SINGLE_RESTART_SECONDS = 2


def restart_seconds(cluster: bool) -> int:
    """How long systemd waits before restarting a crashed redis-server (RestartSec)."""
    return CLUSTER_RESTART_SECONDS if cluster else SINGLE_RESTART_SECONDS


# A '+' or '!' command of a unit with User=redis runs as root, but systemd still hands it the redis user's
# HOME (/var/lib/redis, which redis and Redis write). Root must not look there: the AWS CLI would read
# ~/.aws/config (a credential_process is a command it runs) and Python the user site-packages (a .pth file
# is code it runs). So each such command starts with root's own HOME.
ROOT_HOME = "/usr/bin/env HOME=/root "


# A clean stop (systemctl stop or restart, reboot, poweroff) first hands a master's slots to its
# in-sync replica on another server (CLUSTER FAILOVER); then systemd sends SIGTERM. The empty
# ExecStop= drops any of the template's own (neither platform's has one today). '+' runs it
# outside the template's sandbox (NoExecPaths=/ lets only redis-server run) and as root, which
# reads the auth include. The script bounds itself, and TimeoutStopSec bounds it too.
# (Kept out of the rendered text: user data is capped at 16 KB.)
_STEP_DOWN = (
    f"EnvironmentFile=-{STEP_DOWN_ENV_PATH}\n"
    "ExecStop=\n"
    f"ExecStop=+{ROOT_HOME}{STEP_DOWN_PATH} %i\n"
)


# The instance metadata service hands out the instance role's credentials (the password, TLS keys,
# the bucket) to any process that asks. Redis, and the scripts that run as redis, never need it, so the
# redis user is refused it at every boot, before any Redis process starts: a compromised Redis (a Lua
# sandbox escape, a module) stays inside the redis user's sockets. Checked first, so a restart of
# redis-auth adds no second rule. (The IPv6 endpoint is off: server.py leaves http_protocol_ipv6 unset.)
METADATA_ADDRESS = "169.254.169.254"
METADATA_FENCE_RULE = f"OUTPUT -d {METADATA_ADDRESS} -m owner --uid-owner redis -j REJECT"


def metadata_fence_command() -> str:
    """The root command (redis-auth's first step) that keeps the redis user from the metadata service."""
    return (f"/bin/sh -c 'iptables -w 10 -C {METADATA_FENCE_RULE} 2>/dev/null || "
            f"iptables -w 10 -I {METADATA_FENCE_RULE}'")


# How long redis-auth's launcher keeps trying to fetch a boot step's program when it has no copy yet
# (a first boot whose instance role is not yet known to S3 and SSM).
FIRST_FETCH_SECONDS = 240
# A first boot's worst case with AWS hanging, each bound by its own: the metadata fence (2 x 10 s), then
# for each program the launcher's tries (FIRST_FETCH_SECONDS and one more fetch of about a minute) and
# the program's own (FIRST_BOOT_SECONDS, 240, and its last calls). tests/render/test_password.py adds them up.
AUTH_TIMEOUT_SECONDS = 1200
# The join's start: root's fetch (ExecStartPre) keeps trying for FIRST_FETCH_SECONDS, then one more try
# (the launcher's bounds, 20 + 30 + 10 s, and their kills) before the program starts. systemd's default of
# 90 s would cut it off.
JOIN_START_SECONDS = FIRST_FETCH_SECONDS + 90


def render_auth_unit(tls: bool = False, sandbox: str = "") -> str:
    """The boot step before any Redis process: no metadata service for redis, then the programs (fetched
    from the stack's bucket by the launcher, verified) that write the password and, with TLS, the
    certificates. `sandbox` (aws_sandbox) confines the programs; the fence ('+') runs outside it, as
    iptables needs the kernel's modules and its lock in /run."""
    what = "password and TLS certificates" if tls else "password"
    return (
        "[Unit]\n"
        f"Description=Redis {what} from SSM Parameter Store (auth include)\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"Environment=PATH={SEARCH_PATH}\n"
        f"EnvironmentFile={AUTH_ENV_PATH}\n"
        f"Environment=STATE_DIR={STATE_DIR} FIRST_FETCH_SECONDS={FIRST_FETCH_SECONDS}\n"
        # A oneshot runs its ExecStart lines in order; any failing keeps Redis down.
        f"ExecStart=+{metadata_fence_command()}\n"
        f"ExecStart=/usr/bin/env TOOLS_KEY={FETCH_PASSWORD_TOOL_KEY} {OBSERVE_PATH}\n"
        # The TLS directory, made first ('+': one fixed command), is the one more path its sandbox may write.
        + (f"ExecStart=+/usr/bin/install -d -o root -g redis -m 0750 {EC2_PATHS.tls_dir}\n"
           f"ExecStart=/usr/bin/env TOOLS_KEY={FETCH_TLS_TOOL_KEY} {OBSERVE_PATH}\n"
           f"ReadWritePaths=-{EC2_PATHS.tls_dir}\n" if tls else "")
        + f"StateDirectory={STATE_DIR.rsplit('/', 1)[1]}\n"
        "StateDirectoryMode=0700\n"
        f"ConfigurationDirectory={EC2_PATHS.auth_dir.removeprefix('/etc/')}\n"
        "SyslogIdentifier=redis-auth\n"
        f"TimeoutStartSec={AUTH_TIMEOUT_SECONDS}\n"
        f"{sandbox}"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def render_time_sync() -> str:
    """systemd-timesyncd, the Ubuntu images' clock client, pointed at Amazon Time Sync.

    Its default (ntp.ubuntu.com, UDP 123) is outside the servers' egress rules;
    169.254.169.123 is link-local on every EC2 instance and no security group filters it.
    """
    return (
        "# outsystems-redis: Amazon Time Sync, reachable without any egress rule.\n"
        "[Time]\n"
        "NTP=169.254.169.123\n"
    )


def render_provision_unit() -> str:
    """Completes the install at every boot until it succeeds, then enables the Redis units."""
    return (
        "[Unit]\n"
        "Description=Install the pinned Redis packages if missing, then enable and start the Redis units\n"
        "Wants=network-online.target\n"
        "# Not After=cloud-final.service: cloud-final is itself After=multi-user.target, which\n"
        "# wants this unit (an ordering cycle on every reboot). At first boot cloud-init's runcmd\n"
        "# starts it, from inside cloud-final, once the package step has run.\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "# exec, not oneshot: retries can last as long as the way out is broken, and must\n"
        "# never hold multi-user.target (or a reboot) while they do.\n"
        "Type=exec\n"
        "RemainAfterExit=yes\n"
        f"Environment=PATH={SEARCH_PATH}\n"
        f"EnvironmentFile={PROVISION_ENV_PATH}\n"
        f"ExecStart={PROVISION_PATH}\n"
        "SyslogIdentifier=redis-provision\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _cluster_unit(ports: tuple[int, ...], description: str, env_file: str, run: str, identifier: str,
                  timeout: str) -> str:
    """A service that runs a cluster script as redis, after this server's own Redis processes. `run`: its
    Exec lines (and what they need)."""
    units = " ".join(redis_unit(p) for p in ports)
    return (
        "[Unit]\n"
        f"Description={description}\n"
        f"Wants=network-online.target {units}\n"
        f"After=network-online.target {units}\n"
        "\n"
        "[Service]\n"
        "# exec, not oneshot: it waits for peers that may be down, and a reboot must\n"
        "# reach multi-user.target without waiting for it. The script bounds its waits.\n"
        "Type=exec\n"
        "RemainAfterExit=yes\n"
        "User=redis\n"
        "Group=redis\n"
        f"Environment=PATH={SEARCH_PATH}\n"
        f"EnvironmentFile={env_file}\n"
        f"{run}"
        f"SyslogIdentifier={identifier}\n"
        f"{SANDBOX}"
        "# Idempotent: a run that gave up (a peer still installing) tries again.\n"
        "Restart=on-failure\n"
        "RestartSec=30\n"
        f"{timeout}"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def render_bootstrap_unit(ports: tuple[int, ...]) -> str:
    """Runs on the designated server, after its own Redis processes; a no-op once formed."""
    return _cluster_unit(
        ports,
        "Form the OutSystems Redis Cluster with crossed replicas (no-op once formed)",
        BOOTSTRAP_ENV_PATH, f"ExecStart={BOOTSTRAP_PATH}\n", "redis-cluster-bootstrap",
        "# Peers boot in parallel; the script waits up to WAIT_SECONDS for them.\n"
        "RuntimeMaxSec=1800\n",
    )


def render_join_unit(ports: tuple[int, ...]) -> str:
    """Runs on a server added to a running cluster, after its own Redis processes; a no-op once joined."""
    # The script comes from the stack's bucket (fetched.py): root fetches and verifies it (where the AWS
    # credentials are), then the launcher checks that copy again and runs it as redis. At a first boot the
    # fetch keeps trying while the instance role reaches S3. The fetch runs as root inside the unit's sandbox
    # ('!': only User= and Group= are lifted), writing nothing but its copies' directory, which root makes
    # first ('+': one fixed command).
    fetch = (f"ExecStartPre=+/usr/bin/install -d -m 0755 {REDIS_RUN_STATE_DIR}\n"
             f"ExecStartPre=!{ROOT_HOME}FETCH_ONLY=1 {OBSERVE_PATH}\n"
             f"ReadWritePaths=-{REDIS_RUN_STATE_DIR}\n")
    run = (f"EnvironmentFile={AUTH_ENV_PATH}\n"  # the region and the bucket
           f"Environment=TOOLS_KEY={JOIN_TOOL_KEY} STATE_DIR={REDIS_RUN_STATE_DIR} "
           f"FIRST_FETCH_SECONDS={FIRST_FETCH_SECONDS}\n"
           f"{fetch}"
           f"ExecStart=/usr/bin/env NO_FETCH=1 {OBSERVE_PATH}\n")
    return _cluster_unit(
        ports,
        "Join this server to the OutSystems Redis Cluster: fair share of slots, crossed ring (no-op once joined)",
        JOIN_ENV_PATH, run, "redis-cluster-join",
        "# Joins queue behind lower-numbered servers and a rebalance moves sessions;\n"
        "# the script bounds every wait itself (WAIT_SECONDS), so no runtime limit here.\n"
        f"TimeoutStartSec={JOIN_START_SECONDS}\n",
    )
