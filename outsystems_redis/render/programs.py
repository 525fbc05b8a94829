"""What runs on a server, each program described once.

A ServerProgram says which servers carry it, the files the user data writes for it (its script when the user
data carries it, its units), its environment file, the other environment files its units read, the units a
boot enables, and the programs it fetches from the stack's bucket. render/cloud_config.py writes every
carried program into a server's user data; outsystems_redis/tools/loopback.py gives the scripts it runs the same
environments (`environment`), so the rehearsal cannot drift from EC2; render/fetched.py uploads the fetched ones.

A new program on the servers: its script, a module that renders its unit and environment, and one entry in
PROGRAMS. Pure text, no pulumi.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from outsystems_redis import monitoring
from outsystems_redis.platforms import AWS_CLI_PACKAGES, PLATFORMS, Platform
from outsystems_redis.render import (
    backup,
    bootstrap,
    join,
    make_room,
    metrics,
    password,
    roles,
    step_down,
    systemd,
    tls,
)
from outsystems_redis.render.redis_conf import EC2_PATHS, Paths, render_redis_conf
from outsystems_redis.render.shipped import shipped_script
from outsystems_redis.server_files import source
from outsystems_redis.settings import Settings
from outsystems_redis.signing import TOOLS_PUBLIC_KEY_PATH
from outsystems_redis.topology import Topology

File = tuple[str, str, str]  # (path, content, mode) of a file the user data writes
PROVISION_SCRIPT = source("provision.sh")


@dataclass(frozen=True)
class Where:
    """One server, and what differs between an EC2 server and its loopback rehearsal: where Redis keeps its
    files, which redis-cli speaks to it, and where the password comes from."""

    settings: Settings
    topology: Topology
    server: int
    redis_cli: str
    paths: Paths = EC2_PATHS
    password_parameter: str = ""
    region: str = ""
    memory_mib: int = 0
    tools_public_key: str | None = None  # the PEM the launcher verifies fetched programs with
    # The stack's bucket, which the launcher fetches programs from and backups go to, by name: fixed in the user
    # data. Without it (the loopback rehearsals), its name is read from the bucket's parameter at each run.
    bucket: str = ""
    state_dir: str = systemd.STATE_DIR  # where the launcher keeps the last good copy of each fetched program
    backup_dir: str = backup.BACKUP_WORK_DIR  # where redis-backup writes its snapshots before the upload

    @classmethod
    def on_ec2(cls, settings: Settings, topology: Topology, server: int, *, password_parameter: str, region: str,
               memory_mib: int = 0, tools_public_key: str | None = None, bucket: str = "") -> Where:
        # With TLS, the scripts speak to Redis through a redis-cli that speaks TLS.
        return cls(settings, topology, server, systemd.TLS_CLI_PATH if settings.tls else "redis-cli",
                   password_parameter=password_parameter, region=region, memory_mib=memory_mib,
                   tools_public_key=tools_public_key, bucket=bucket)

    @property
    def platform(self) -> Platform:
        return PLATFORMS[self.settings.platform]

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(p.port for p in self.topology.servers[self.server].processes)

    @property
    def ip(self) -> str:
        return self.topology.servers[self.server].private_ip

    @property
    def cluster(self) -> bool:
        return self.topology.cluster


def _none(where: Where) -> list:
    return []


@dataclass(frozen=True)
class ServerProgram:
    name: str  # the program's name on the server
    carried: Callable[[Where], bool] = lambda where: True  # which servers have it
    files: Callable[[Where], list[File]] = _none  # written before its environment file: scripts, keys, configs
    env_path: str | None = None
    env: Callable[[Where], dict[str, str]] | None = None  # the content of env_path
    # The other environment files its units read, in their order; its own (env_path) comes last unless placed here.
    reads: tuple[str, ...] = ()
    units: Callable[[Where], list[tuple[str, str]]] = _none  # (name under UNIT_DIR, text)
    enables: Callable[[Where], list[str]] = _none  # units a boot enables and starts
    journal: Callable[[Where], list[str]] = _none  # units whose journal goes to CloudWatch Logs
    fetched: Mapping[str, Callable[[], str]] = field(default_factory=dict)  # bucket key -> the text it fetches


def _x(path: str, text: str) -> File:
    return (path, text, "0755")


def _auth_env(where: Where) -> dict[str, str]:
    # Names, not secrets: which parameters to read and where to write them.
    env = {"PASSWORD_PARAMETER": where.password_parameter, "AWS_REGION": where.region,
           "AUTH_FILE": where.paths.auth_file,
           **password.secret_names_env(where.settings.stack, where.platform),
           # The bucket by name: a parameter could be pointed at another bucket by whoever may write it.
           **({"BUCKET": where.bucket} if where.bucket else
              {"BUCKET_PARAMETER": monitoring.backup_bucket_parameter(where.settings.stack)})}
    return {**env, **(tls.tls_env(where.settings.stack, where.server, where.paths) if where.settings.tls else {})}


def _redis_files(where: Where) -> list[File]:
    confs = [(where.paths.conf(p.port), render_redis_conf(p, where.settings, memory_mib=where.memory_mib,
                                                   paths=where.paths), "0644")
             for p in where.topology.servers[where.server].processes]
    cli = [_x(systemd.TLS_CLI_PATH, tls.render_tls_cli(where.paths.tls_ca))] if where.settings.tls else []
    return cli + confs


def _runs_bootstrap(where: Where) -> bool:
    """Exactly one server of a cluster forms it."""
    return where.cluster and where.server == bootstrap.BOOTSTRAP_SERVER


def _observe_env(where: Where) -> dict[str, str]:
    return metrics.observe_env(where.topology, where.server, stack=where.settings.stack, tls=where.settings.tls,
                               journal_units=journal_units(where), paths=where.paths, state_dir=where.state_dir)


def _key(key: str) -> str:
    return key.removeprefix(monitoring.TOOLS_PREFIX)


def provision_env(where: Where) -> dict[str, str]:
    """Inputs of redis-provision: the same packages as cloud-init's `packages`, and the units to enable."""
    packages = [p if isinstance(p, str) else f"{p[0]}={p[1]}" for p in packages_of(where.platform)]
    return {
        "PACKAGES": " ".join(packages),
        "HOLD": "redis-server redis-tools",
        "AWS_CLI_WHEELS": " ".join(where.platform.aws_cli_wheels),
        "UNITS": " ".join(enabled_units(where)),
    }


def packages_of(platform: Platform) -> list:
    pinned = [["redis-server", platform.apt_version], ["redis-tools", platform.apt_version]]
    # The AWS CLI reads the password from SSM (platforms.py: apt's awscli, or what its wheels need and pip).
    # iptables (in Ubuntu's images already) fences the metadata service off from the redis user.
    aws_cli = list(AWS_CLI_PACKAGES) if platform.aws_cli_wheels else ["awscli"]
    return pinned + ["iptables"] + aws_cli


def env_files(program: ServerProgram) -> tuple[str, ...]:
    """Every environment file `program`'s units read, in systemd's order (a later file's variable wins)."""
    if program.env_path is None or program.env_path in program.reads:
        return program.reads
    return (*program.reads, program.env_path)


PROGRAMS: tuple[ServerProgram, ...] = (
    # The boot step before any Redis process: the password (and TLS material) from Parameter Store.
    ServerProgram(
        "redis-auth", env_path=systemd.AUTH_ENV_PATH, env=_auth_env,
        units=lambda w: [(systemd.AUTH_UNIT, systemd.render_auth_unit(
            w.settings.tls, systemd.aws_sandbox(writes_auth=True)))],
        enables=lambda w: [systemd.AUTH_UNIT], journal=lambda w: [systemd.AUTH_UNIT],
        fetched={_key(monitoring.FETCH_PASSWORD_TOOL_KEY): password.fetch_password_script,
                 _key(monitoring.FETCH_TLS_TOOL_KEY): tls.fetch_tls_script}),
    # Debian's redis-server@ template, one instance per process, with the project's drop-in.
    # On a cluster server, each process's ExecStop runs redis-step-down with its environment (the drop-in).
    ServerProgram(
        "redis-server", files=_redis_files, reads=(step_down.STEP_DOWN_ENV_PATH,),
        units=lambda w: [(systemd.TEMPLATE_DROP_IN.removeprefix(systemd.UNIT_DIR + "/"),
                          systemd.render_template_drop_in(w.paths, step_down=PROGRAM["redis-step-down"].carried(w)))],
        enables=lambda w: [systemd.redis_unit(p) for p in w.ports], journal=lambda w: ["redis-server@*.service"]),
    ServerProgram(
        "redis-cluster-bootstrap", carried=_runs_bootstrap,
        files=lambda w: [_x(systemd.BOOTSTRAP_PATH, bootstrap.bootstrap_script())],
        env_path=systemd.BOOTSTRAP_ENV_PATH,
        env=lambda w: bootstrap.bootstrap_env(w.topology, auth_file=w.paths.auth_file, redis_cli=w.redis_cli),
        units=lambda w: [(systemd.BOOTSTRAP_UNIT, systemd.render_bootstrap_unit(w.ports))],
        enables=lambda w: [systemd.BOOTSTRAP_UNIT], journal=lambda w: [systemd.BOOTSTRAP_UNIT]),
    # Every cluster server: a new one joins, one that boots empty at its known address rejoins. Its env
    # names only servers 0..server (or the first, fixed ones): the same text whatever the final count.
    ServerProgram(
        "redis-cluster-join", carried=lambda w: join.runs_join(w.topology, w.server),
        # auth.env after its own: root's fetch needs the region and the bucket.
        env_path=systemd.JOIN_ENV_PATH, reads=(systemd.JOIN_ENV_PATH, systemd.AUTH_ENV_PATH),
        env=lambda w: join.join_env(w.topology, w.server, auth_file=w.paths.auth_file, redis_cli=w.redis_cli),
        units=lambda w: [(systemd.JOIN_UNIT, systemd.render_join_unit(w.ports))],
        enables=lambda w: [systemd.JOIN_UNIT], journal=lambda w: [systemd.JOIN_UNIT],
        fetched={_key(monitoring.JOIN_TOOL_KEY): join.join_script}),
    # After a failover, this server takes its master role back by itself once the cluster is whole.
    ServerProgram(
        "redis-role-restore", carried=lambda w: w.cluster,
        files=lambda w: [_x(roles.ROLE_RESTORE_PATH, roles.role_restore_script())],
        env_path=roles.ROLE_RESTORE_ENV_PATH,
        env=lambda w: roles.role_restore_env(w.topology, w.server, auth_file=w.paths.auth_file,
                                             redis_cli=w.redis_cli),
        units=lambda w: [(roles.ROLE_RESTORE_UNIT, roles.render_role_restore_unit(w.ports)),
                         (roles.ROLE_RESTORE_TIMER, roles.render_role_restore_timer())],
        enables=lambda w: [roles.ROLE_RESTORE_TIMER], journal=lambda w: [roles.ROLE_RESTORE_UNIT]),
    # A clean stop or reboot hands this server's masters to their replicas first (the drop-in's ExecStop).
    ServerProgram(
        "redis-step-down", carried=lambda w: w.cluster,
        files=lambda w: [_x(step_down.STEP_DOWN_PATH, step_down.step_down_script())],
        env_path=step_down.STEP_DOWN_ENV_PATH,
        env=lambda w: step_down.step_down_env(w.topology, w.server, auth_file=w.paths.auth_file,
                                              redis_cli=w.redis_cli)),
    # 5.0 refuses script writes at maxmemory: each master is kept below it (make_room_agent.py says how).
    ServerProgram(
        "redis-make-room", carried=lambda w: make_room.needs_make_room(w.platform),
        files=lambda w: [_x(make_room.MAKE_ROOM_PATH, make_room.make_room_script())],
        env_path=make_room.MAKE_ROOM_ENV_PATH,
        env=lambda w: make_room.make_room_env(w.ip, w.ports, auth_file=w.paths.auth_file),
        units=lambda w: [(make_room.MAKE_ROOM_UNIT, make_room.render_make_room_unit(w.ports))],
        enables=lambda w: [make_room.MAKE_ROOM_UNIT], journal=lambda w: [make_room.MAKE_ROOM_UNIT]),
    # A changed password reaches the running processes within a minute (Parameter Store is read at boot only).
    ServerProgram(
        "redis-password-sync", env_path=password.PASSWORD_SYNC_ENV_PATH, reads=(systemd.AUTH_ENV_PATH,),
        env=lambda w: {**password.password_sync_env(w.ports, w.platform.redis_version, w.redis_cli),
                       **password.password_sync_fetch_env(w.state_dir)},
        units=lambda w: [(password.PASSWORD_SYNC_UNIT, password.render_password_sync_unit(
                              w.ports, systemd.aws_sandbox(writes_auth=True))),
                         (password.PASSWORD_SYNC_TIMER, password.render_password_sync_timer())],
        enables=lambda w: [password.PASSWORD_SYNC_TIMER], journal=lambda w: [password.PASSWORD_SYNC_UNIT],
        fetched={_key(monitoring.PASSWORD_SYNC_TOOL_KEY): password.password_sync_script}),
    # Every hour, with every other server: an RDB of each master on this server to the stack's bucket.
    ServerProgram(
        "redis-backup", env_path=backup.BACKUP_ENV_PATH, reads=(systemd.AUTH_ENV_PATH,),
        env=lambda w: backup.backup_env(w.topology, w.server, redis_cli=w.redis_cli,
                                        work_dir=w.backup_dir, state_dir=w.state_dir),
        units=lambda w: [(backup.BACKUP_UNIT, backup.render_backup_unit(w.ports,
                                                                        sandbox=systemd.aws_sandbox())),
                         (backup.BACKUP_TIMER, backup.render_backup_timer())],
        enables=lambda w: [backup.BACKUP_TIMER],
        fetched={_key(monitoring.BACKUP_TOOL_KEY): backup.backup_script}),
    # The launcher that runs what `pulumi up` puts in the stack's bucket, once verified (fetched.py says why).
    ServerProgram(
        "redis-run-fetched",
        files=lambda w: [_x(systemd.OBSERVE_PATH, metrics.observe_launcher()),
                         *([(TOOLS_PUBLIC_KEY_PATH, w.tools_public_key, "0644")] if w.tools_public_key else [])]),
    # Metrics to CloudWatch and logs to CloudWatch Logs, every minute (metrics.py says why).
    ServerProgram(
        "redis-metrics", env_path=metrics.OBSERVE_ENV_PATH, reads=(systemd.AUTH_ENV_PATH,), env=_observe_env,
        units=lambda w: [(metrics.METRICS_UNIT, metrics.render_metrics_unit(w.ports, systemd.aws_sandbox())),
                         (metrics.METRICS_TIMER, metrics.render_metrics_timer())],
        enables=lambda w: [metrics.METRICS_TIMER], journal=lambda w: [metrics.METRICS_UNIT],
        fetched={_key(monitoring.OBSERVE_TOOL_KEY): metrics.observe_script}),
    # Not its own journal: each run would ship the lines of the run before.
    ServerProgram(
        "redis-logs", reads=(systemd.AUTH_ENV_PATH, metrics.OBSERVE_ENV_PATH),
        units=lambda w: [(metrics.LOGS_UNIT, metrics.render_logs_unit(w.ports, systemd.aws_sandbox())),
                         (metrics.LOGS_TIMER, metrics.render_logs_timer())],
        enables=lambda w: [metrics.LOGS_TIMER]),
    # Installs the pinned packages if cloud-init could not, then enables and starts every program's units.
    ServerProgram(
        "redis-provision", files=lambda w: [_x(systemd.PROVISION_PATH, shipped_script(PROVISION_SCRIPT))],
        env_path=systemd.PROVISION_ENV_PATH, env=provision_env,
        units=lambda w: [(systemd.PROVISION_UNIT, systemd.render_provision_unit())],
        journal=lambda w: [systemd.PROVISION_UNIT]),
)
PROGRAM = {p.name: p for p in PROGRAMS}


def carried(where: Where) -> list[ServerProgram]:
    return [p for p in PROGRAMS if p.carried(where)]


def enabled_units(where: Where) -> list[str]:
    """What a server runs, enabled for every boot, in PROGRAMS' order: the password first, its Redis processes."""
    return [u for p in carried(where) for u in p.enables(where)]


def journal_units(where: Where) -> list[str]:
    """The units whose journal `where`'s server ships to CloudWatch Logs: only those it has."""
    return [u for p in carried(where) for u in p.journal(where)]


def environment(name: str, where: Where) -> dict[str, str]:
    """What the units of program `name` are given on `where`'s server, beyond their PATH: the environment files
    they read (env_files), merged in that order as systemd does."""
    program = PROGRAM[name]
    if not program.carried(where):
        raise ValueError(f"server {where.server + 1} does not carry {name}")
    # A plain `EnvironmentFile=path` that is missing fails the unit (`EnvironmentFile=-path` does not).
    required = {line.split("=", 1)[1] for _, text in program.units(where) for line in text.splitlines()
                if line.startswith("EnvironmentFile=") and not line.startswith("EnvironmentFile=-")}
    env: dict[str, str] = {}
    for path in env_files(program):
        owner = next((p for p in PROGRAMS if p.env_path == path), None)
        if owner is not None and owner.env is not None and owner.carried(where):
            env.update(owner.env(where))
        elif path in required:
            raise ValueError(f"{name} on server {where.server + 1} reads {path}, which no program that server "
                             "carries writes: systemd would fail its units")
    return env


def fetched_tools() -> dict[str, str]:
    """Key under tools/ (without the prefix) -> the exact text the program uploads there."""
    return {key: text() for p in PROGRAMS for key, text in p.fetched.items()}


def server_files(where: Where) -> list[File]:
    """Every file of every program `where`'s server carries: its files, its environment file, its units."""
    out: list[File] = []
    for program in carried(where):
        out += program.files(where)
        if program.env_path and program.env:
            out.append((program.env_path, bootstrap.render_env_file(program.env(where)), "0644"))
        out += [(f"{systemd.UNIT_DIR}/{name}", text, "0644") for name, text in program.units(where)]
    return out
