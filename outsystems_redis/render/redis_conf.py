"""One redis.conf per Redis process, the same text for Redis 5.0 and 7.0.

The file holds no secret: it `include`s an auth file (requirepass/masterauth)
that a boot-time unit writes from SSM. Paths and bind addresses come from a
`Paths` value so the loopback rehearsal starts the very same text with only
its addresses and directories remapped.
"""

from __future__ import annotations

from dataclasses import dataclass

from outsystems_redis.platforms import PLATFORMS, Platform
from outsystems_redis.settings import Settings
from outsystems_redis.sizing import usable_memory_mib
from outsystems_redis.topology import Process


@dataclass(frozen=True)
class Paths:
    """Where a process keeps its files. EC2 uses Debian's layout; loopback a state dir."""

    conf_dir: str = "/etc/redis"
    data_root: str = "/var/lib/redis"
    log_dir: str = "/var/log/redis"
    run_root: str = "/run"
    # On EC2 every process also listens on loopback (for redis-cli and the
    # bootstrap on the server itself). On loopback the host already is one.
    bind_loopback: bool = True

    def conf(self, port: int) -> str:
        return f"{self.conf_dir}/redis-{port}.conf"

    def data_dir(self, port: int) -> str:
        return f"{self.data_root}/{port}"

    def log_file(self, port: int) -> str:
        # Named redis-server-*.log so Debian's logrotate rule covers it.
        return f"{self.log_dir}/redis-server-{port}.log"

    def pid_file(self, port: int) -> str:
        # The directory is the template's RuntimeDirectory=redis-%i.
        return f"{self.run_root}/redis-{port}/redis-server.pid"

    # The auth include has a directory of its own: the only part of conf_dir that the root units which rewrite
    # it may write (systemd.aws_sandbox), so that they cannot touch the other files root reads there.
    @property
    def auth_dir(self) -> str:
        return f"{self.conf_dir}/auth"

    @property
    def auth_file(self) -> str:
        return f"{self.auth_dir}/auth.conf"

    # TLS material, written at boot from SSM (EC2) or generated (loopback).
    @property
    def tls_dir(self) -> str:
        return f"{self.conf_dir}/tls"

    @property
    def tls_ca(self) -> str:
        return f"{self.tls_dir}/ca.crt"

    @property
    def tls_cert(self) -> str:
        return f"{self.tls_dir}/server.crt"

    @property
    def tls_key(self) -> str:
        return f"{self.tls_dir}/server.key"


EC2_PATHS = Paths()

# Sessions carry TTLs (the session timeout), so most of the time expiry frees
# memory. When a burst fills maxmemory anyway, allkeys-lru drops the session
# idle the longest: at worst one idle user logs in again. volatile-lru would
# spare any key without a TTL, and once only such keys are left every write
# fails with OOM, an outage for every user. Evicting idle sessions is the
# gentler failure for a session store.
EVICTION_POLICY = "allkeys-lru"

# OutSystems' value: a master unreachable this long is failed over to its replica.
CLUSTER_NODE_TIMEOUT_MS = 5000

# TLS 1.0/1.1 are deprecated (RFC 8996); StackExchange.Redis on .NET Framework
# 4.7+ and .NET Core negotiate 1.2 or 1.3.
TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"


# Commands that no client, script or tool of this product sends, and that let a holder of the
# password administer the store rather than keep sessions in it. The front-ends and the servers' scripts
# share one password (SECURITY.md), so these are removed outright (renamed to ""), on
# both Redis lines, for every caller. CLUSTER stays: StackExchange.Redis reads the slot map with CLUSTER
# NODES.
DISABLED_COMMANDS = (
    "MODULE",  # loads native code into the Redis process
    "DEBUG",  # crashes or stalls the process on demand
    # Point the server at another master: its sessions are replaced by another server's data, and on
    # 5.0 that data can carry the module that MODULE LOAD would run.
    "REPLICAOF",
    "SLAVEOF",
    "FLUSHALL",  # every session gone at once
    "FLUSHDB",
    "SWAPDB",
    "SAVE",  # blocks every client for the whole snapshot; backups stream one with `redis-cli --rdb`
    # A fork of the whole dataset on demand, as often as asked: memory doubles on a write-heavy master.
    # The `save` lines and `redis-cli --rdb` take the snapshots. (A full SYNC, which the password keeps for
    # replicas and backups, forks too: SECURITY.md, gap 2.)
    "BGSAVE",
    "BGREWRITEAOF",
    "LASTSAVE",  # nothing reads it; the metrics agent takes the save's age from INFO persistence
    "LATENCY",  # nothing of ours reads it (the monitor is off: latency-monitor-threshold 0)
    "PFSELFTEST",  # seconds of CPU on the main thread, every client waits
    "PFDEBUG",
    # A front-end could stop a process (systemd starts it again, after its failover). systemd stops Redis
    # with SIGTERM; redis-cli 7.0's `--cluster del-node` ends with CLUSTER RESET SOFT, and 5.0's, which ends
    # with SHUTDOWN, has forgotten the node by then (docs/operations.md: shrinking).
    "SHUTDOWN",
    "MONITOR",  # every other client's commands as sent: session keys, and the secret names below
)
# Redis's own "admin" commands (ACL CAT admin; 5.0's COMMAND flags) that stay in Redis, and why: CLUSTER (its
# NODES and SLOTS are the front-ends' slot map, and redis-cli --cluster sends it by that name; on 5.0 the same
# password reaches its administrative subcommands), PSYNC, SYNC, REPLCONF (on 5.0 replicas log in with the
# password). 7.0's users take every administrative one from the front-ends (FRONT_END_RULES below; replicas log
# in as the replication user; SECURITY.md, gap 2); on 5.0, CLIENT goes by a secret name
# (SECRET_NAMED_COMMANDS_5_0). ROLE, administrative on 7.0 only, says what INFO replication says.

# 7.0's own: coordinated failover of a replicated pair, which the cluster does with CLUSTER FAILOVER instead.
DISABLED_COMMANDS_7_0 = ("FAILOVER",)

# The front-ends and the servers' scripts log in with one password (the `default` user on 7.0): what the
# scripts need and the front-ends must not have is renamed to a name only the servers know,
# `<COMMAND>-<operations secret>` (its own SecureString, parameters.ops_password_parameter), written into
# the auth include at boot by redis-auth. CONFIG rotates the password and makes room below maxmemory;
# without it a front-end could move `dir` and `dbfilename` (a file written wherever redis may), set its own
# `requirepass` (everyone locked out) or `maxmemory 1` (every session evicted). SLOWLOG goes with it: an
# entry quotes a slow command as sent, the secret name of a CONFIG SET that evicted included. On 7.0, ACL
# too (the password sync's grace sets the default user's two passwords with it; a front-end could lock
# everyone out or read the ACL log). Neither COMMAND nor CLIENT LIST shows a renamed command's new name.
SECRET_NAMED_COMMANDS = ("CONFIG", "SLOWLOG")
SECRET_NAMED_COMMANDS_7_0 = ("ACL",)
# 5.0 has no users to take this from the front-ends alone: CLIENT (PAUSE stalls every client, KILL drops the
# other front-ends' and the replicas' links, LIST shows every client's address and last command). Nothing of
# ours sends it; an operator finds CLIENT LIST under its secret name. StackExchange.Redis sends
# CLIENT SETNAME and CLIENT ID in its handshake and goes on when they are refused (redis-py's CLIENT SETINFO
# too); 7.0 keeps those two for the front-ends and refuses them the rest of CLIENT by the user's rules.
SECRET_NAMED_COMMANDS_5_0 = ("CLIENT",)


# Redis 7.0's users, which redis-auth writes into the auth include (lib.sh: auth_lines). The servers' scripts and
# agents, and the operator's tools, log in as parameters.OPERATIONS_USER (OPERATIONS_RULES: everything), whose
# password is the operations secret. Replicas log in to their masters as parameters.REPLICATION_USER
# (REPLICATION_RULES: what a 7.0 replica sends, PING, REPLCONF and PSYNC; `masteruser`). redis-password-sync gives
# both users to 7.0 servers created before them. The front-ends keep Redis's `default` user (their connection
# string names no user), narrowed to FRONT_END_RULES: every command but those Redis itself files as
# administrative (`ACL CAT admin`: CLUSTER RESET, FORGET, MEET, REPLICATE, FAILOVER, SETSLOT..., CLIENT KILL,
# PAUSE, LIST, ROLE, PSYNC, SYNC, REPLCONF, and CONFIG, SLOWLOG and ACL whatever their names). And MIGRATE,
# which Redis files as dangerous only: it makes the server connect to any address a front-end names and write
# keys there (a way out through the servers' egress, or to what only they reach); a rebalance sends it as the
# operations user.
# StackExchange.Redis and the session provider send none of those: ECHO, PING, CLIENT SETNAME and ID, INFO,
# CLUSTER NODES, SELECT, SUBSCRIBE, READONLY, ASKING, SCRIPT LOAD, EVAL, EVALSHA, and in the provider's scripts
# GET, SET, SETNX, EXPIRE, EXISTS, DEL, HGET, HGETALL, HMSET, HDEL (test_front_end_rights asks the real 7.0 with
# ACL DRYRUN). Not narrower: a list of exactly those would refuse, on every front-end at once, whatever else the
# client build that OutSystems ships sends. A server created before this (its redis-auth had no FRONT_END_RULES)
# keeps every command for its front-ends until it is replaced. lib.sh holds the users' rules too (test_password).
OPERATIONS_RULES = "~* &* +@all"
REPLICATION_RULES = "-@all +psync +replconf +ping"
FRONT_END_RULES = "~* &* +@all -@admin -migrate"


def has_users(platform: Platform) -> bool:
    """Whether `platform`'s Redis has users (7.0), so that the front-ends' can be narrowed."""
    return platform.redis_version != "5.0"


def disabled_commands(platform: Platform) -> tuple[str, ...]:
    """The commands gone from `platform`'s Redis (5.0 refuses to start on a rename of one it lacks)."""
    return DISABLED_COMMANDS + (DISABLED_COMMANDS_7_0 if platform.redis_version != "5.0" else ())


def secret_named_commands(platform: Platform) -> tuple[str, ...]:
    """The commands that `platform`'s Redis knows only by secret names."""
    own = SECRET_NAMED_COMMANDS_5_0 if platform.redis_version == "5.0" else SECRET_NAMED_COMMANDS_7_0
    return SECRET_NAMED_COMMANDS + own


def command_lines(platform: Platform) -> list[str]:
    """What the password cannot do: disabled_commands gone; on 7.0 its own switches stated, all off, and RESTORE's
    payloads checked."""
    lines = [f'rename-command {command} ""' for command in disabled_commands(platform)]
    if platform.redis_version != "5.0":
        # Redis 7.0's defaults, written out so that a changed default cannot turn them on: no DEBUG or
        # MODULE (already gone above), and no CONFIG SET of the protected configs (dir, dbfilename),
        # which would let a client write a file anywhere the redis user may.
        lines += ["enable-protected-configs no", "enable-debug-command no", "enable-module-command no"]
        # RESTORE (the front-ends keep it; the backup's restore sends it) checks a payload's structure, not only
        # its checksum: a crafted one (from a front-end, or in a snapshot that a compromised server uploaded)
        # would otherwise corrupt the process's memory. Replication's own RDB is not checked twice. (5.0 has
        # no such check: SECURITY.md, gap 2.)
        lines.append("sanitize-dump-payload clients")
    return lines


def tls_lines(port: int, *, cluster: bool, paths: Paths) -> list[str]:
    """The TLS directives of one process: the same port, TLS only, for clients, replication and the bus."""
    lines = [
        # The plain port is off; TLS takes the same port, so the security groups do not change.
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {paths.tls_cert}",
        f"tls-key-file {paths.tls_key}",
        f"tls-ca-cert-file {paths.tls_ca}",
        f'tls-protocols "{TLS_PROTOCOLS}"',
        # OutSystems front-ends (StackExchange.Redis) present no client certificate, so
        # none is required. Clients are still authenticated by requirepass; replicas by
        # masterauth; the cluster bus (which Redis never password-protects) is reachable
        # only from the Redis security group. Outgoing connections to peers verify the
        # peer's certificate against the CA.
        "tls-auth-clients no",
        "tls-replication yes",
    ]
    if cluster:
        lines.append("tls-cluster yes")  # cluster bus and MIGRATE (rebalance) over TLS
    return lines


def render_redis_conf(
    process: Process,
    settings: Settings,
    *,
    memory_mib: int,
    paths: Paths = EC2_PATHS,
) -> str:
    """redis.conf of one process, valid for the settings' platform's Redis line (5.0 or 7.0).

    The stack's settings, whole: a setting that reaches redis.conf is read here and nowhere between (the
    servers' user data and the loopback rehearsal both call this). TLS (7.0 platform only) replaces the
    plain port by a TLS port with the same number.
    """
    platform, cluster, tls = PLATFORMS[settings.platform], settings.cluster, settings.tls
    maxmemory_mib = usable_memory_mib(memory_mib, settings)  # memory_mib: the instance's
    if tls and not platform.supports_tls:
        raise ValueError(f"platform {platform.name} (Redis {platform.redis_version}) has no TLS")
    port = process.port
    binds = [process.host] + (["127.0.0.1"] if paths.bind_loopback and process.host != "127.0.0.1" else [])
    lines = [
        f"# Redis {process.role} on port {port}, rendered by outsystems-redis. Do not edit by hand:",
        "# a change here is lost when the server is replaced.",
        *(tls_lines(port, cluster=cluster, paths=paths) if tls else [f"port {port}"]),
        f"bind {' '.join(binds)}",
        # A second lock on 7.0: were the auth include ever empty, protected mode would still refuse every client
        # that is not on loopback. (5.0 applies it only without a `bind` line: there the include must never be
        # empty, which lib.sh's replace_file and auth_lines see to.)
        "protected-mode yes",
        "tcp-backlog 511",
        "tcp-keepalive 300",
        "timeout 0",
        # systemd supervises (the unit passes --supervised systemd); never fork.
        "daemonize no",
        f"pidfile {paths.pid_file(port)}",
        "loglevel notice",
        f"logfile {paths.log_file(port)}",
        f"dir {paths.data_dir(port)}",
        "databases 16",
        # Persistence: OutSystems' appendonly no. Replicas are the protection
        # against a lost server; an RDB snapshot every 5 minutes (when anything
        # changed) and on clean shutdown lets a reboot or a package update keep
        # the sessions. AOF would fsync every second under 10k writes/s for data
        # that expires within the session timeout anyway.
        "appendonly no",
        "save 300 1",
        # A crash is restarted after the failover on a cluster (nothing lost); a single server has no
        # replica, so it loses what changed since the last snapshot: at most a minute there.
        *([] if cluster else ["save 60 1"]),
        "dbfilename dump.rdb",
        "rdbcompression yes",
        "stop-writes-on-bgsave-error no",
        f"maxmemory {maxmemory_mib}mb",
        f"maxmemory-policy {EVICTION_POLICY}",
        *command_lines(platform),
    ]
    if cluster:
        lines += [
            "cluster-enabled yes",
            f"cluster-config-file nodes-{port}.conf",  # relative: lives in `dir`
            f"cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}",
            # Peers and clients learn this address, never a NAT'd or loopback one.
            f"cluster-announce-ip {process.host}",
        ]
        if platform.announce_bus_source:
            # Redis 7 opens outgoing bus connections from the kernel's default
            # source address unless told; peers would learn the wrong IP.
            lines.append(f"bind-source-addr {process.host}")
        if platform.diskless_sync:
            # A diskless full sync waits repl-diskless-sync-delay (5 s) for more replicas to share it.
            # Each master here has one replica: the wait only keeps the master without a copy longer.
            lines.append("repl-diskless-sync-delay 0")
    # requirepass, masterauth and (5.0) the secret command names, written at boot from SSM; never in user-data.
    lines.append(f"include {paths.auth_file}")
    return "\n".join(lines) + "\n"
