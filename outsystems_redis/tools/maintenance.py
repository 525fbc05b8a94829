"""Rolling maintenance: patch a running cluster one server at a time, and keep it serving.

    export REDIS_PASSWORD=...            # as for the health check (outsystems_redis.tools.health)
    export REDIS_OPS_PASSWORD=...        # Redis 7.0: the operations secret (/outsystems-redis/<stack>/ops-password)
    python -m outsystems_redis.tools.maintenance --stack prod [--instance-ids i-...,i-...] [--region R] [--dry-run]

Needs AWS credentials (ec2:DescribeInstances, ssm:SendCommand, ssm:GetCommandInvocation) and,
like the direct health check, a machine that reaches the servers' private IPs on the Redis ports.

It starts only on a HEALTHY cluster (the health check's own verdict: no failure, no warning).
Then, for each server in turn:
  1. move its masters away: a plain CLUSTER FAILOVER (never FORCE or TAKEOVER) on each one's
     in-sync replica on another server, and wait until the replica is the master;
  2. upgrade packages: the OS, and Redis only within the stack's pinned line (the platform's
     apt version glob, e.g. 5:5.0.7*; the hold stays);
  3. reboot (the servers' redis-step-down finds nothing left to hand over), and wait for the boot;
  4. wait until its processes answer, its replicas are in sync and no check fails;
  5. give the master role back (plain CLUSTER FAILOVER on its own processes), then HEALTHY again.
It stops at the first problem, saying which server and which step, and leaves the cluster
serving: nothing is stopped before its masters have moved.

Servers are reached through SSM Run Command (AWS-RunShellScript), by instance id: no SSH.
The steps talk to the servers only through a `Runner`: `SsmRunner` on AWS, and
`LoopbackRunner` for the rehearsal (`python -m outsystems_redis.tools.rehearsal maintain`), which runs
the very same steps against the loopback servers. Plain Python, no pulumi.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from outsystems_redis.parameters import OPERATIONS_USER, ops_password_parameter
from outsystems_redis.platforms import PLATFORMS, Platform
from outsystems_redis.render.redis_conf import has_users
from outsystems_redis.tools import health
from outsystems_redis.tools.stack_file import stack_argument
from outsystems_redis.topology import MASTER_PORT, REPLICA_PORT, Topology, build_topology

MOVE = "move its masters away"
UPGRADE = "upgrade packages"
REBOOT = "reboot"
BACK = "wait until back, in sync and serving"
GIVE_BACK = "give the master role back"
HEALTHY = "health check"
STEPS = (MOVE, UPGRADE, REBOOT, BACK, GIVE_BACK, HEALTHY)
HELD = ("redis-server", "redis-tools")  # what provision.sh holds at the pinned version
PROJECT_TAG = "outsystems-redis"


@dataclass(frozen=True)
class Server:
    """One server as maintenance sees it: where its processes listen, and its instance on AWS."""

    index: int  # from 0, as the RedisServerIndex tag stores it; people read index + 1 (the Name tag, redis-<N>)
    name: str
    host: str  # the private IP its Redis processes announce
    instance_id: str = ""  # empty on loopback
    ports: tuple[int, ...] = (MASTER_PORT, REPLICA_PORT)

    @property
    def label(self) -> str:
        instance = f", {self.instance_id}" if self.instance_id else ""
        return f"server {self.index + 1} ({self.name}, {self.host}{instance})"


@dataclass(frozen=True)
class Timeouts:
    """Bounds of every wait, in seconds."""

    # Per CLUSTER FAILOVER try (three tries), past Redis's retry window: a replica whose election
    # failed may start another only 4 x cluster-node-timeout (20 s) later, so 10 s tries wasted one.
    failover: float = 21
    upgrade: float = 1800
    reboot: float = 900  # until the OS answers again
    back: float = 600  # until the processes answer and the replicas are in sync
    healthy: float = 120  # until the health check is HEALTHY again


class MaintenanceError(Exception):
    """Maintenance did not start or did not finish; the message says where and why."""


class Refused(MaintenanceError):
    """The cluster was not HEALTHY (or not a cluster) at the start: nothing was done."""


class StepFailed(MaintenanceError):
    def __init__(self, server: Server, step: str, detail: str) -> None:
        self.server, self.step, self.detail = server, step, detail
        super().__init__(f"stopped at {server.label}, step '{step}': {detail}")


class Runner(Protocol):
    """What the steps need done ON a server; everything else goes through the Redis ports."""

    def run_script(self, server: Server, script: str, timeout: float) -> str:
        """Run `script` (POSIX sh) as root on `server`; its output. RuntimeError (with the output) on failure."""
        ...

    def reboot(self, server: Server, timeout: float) -> str:
        """Reboot `server` cleanly and return once its OS is back; what it said. RuntimeError otherwise."""
        ...


# ---------------------------------------------------------------- what runs on a server (pure)


def upgrade_script(platform: Platform) -> str:
    """The package upgrade, as POSIX sh (Run Command's AWS-RunShellScript runs it with /bin/sh).

    Redis moves only within the stack's line: an explicit install at the platform's version glob
    (the newest build that matches it, e.g. a security update 5:5.0.7-2ubuntu0.1), allowed past the
    hold for this one command; the hold stays. Everything else gets the OS updates; `upgrade` (not
    `dist-upgrade`) keeps held packages where they are and removes nothing.
    """
    pins = " ".join(shlex.quote(f"{p}={platform.apt_version}") for p in HELD)
    return "\n".join([
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive",
        "apt_get() { apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef "
        "-o Dpkg::Options::=--force-confold \"$@\"; }",
        "apt_get update",
        f"apt_get install --allow-change-held-packages {pins}",
        f"apt-mark hold {' '.join(HELD)}",
        "apt_get upgrade --with-new-pkgs",
        "echo \"held: $(apt-mark showhold | paste -sd ' ' -)\"",
        f"echo 'upgraded: the OS, and Redis within {platform.apt_version}'",
    ]) + "\n"


BOOT_ID_SCRIPT = "cat /proc/sys/kernel/random/boot_id\n"
# In 5 s, from systemd itself: the Run Command that asks for it reports success before the reboot.
REBOOT_SCRIPT = 'systemd-run --on-active=5 "$(command -v systemctl)" reboot\necho "rebooting in 5 s"\n'


# ---------------------------------------------------------------- what the cluster says (pure)


def masters_on(view: Sequence[health.ClusterNode], host: str) -> list[health.ClusterNode]:
    """The masters holding slots on `host`."""
    return [n for n in view if n.is_master and n.slot_count and n.host == host and not n.failing]


def replica_to_promote(view: Sequence[health.ClusterNode], master: health.ClusterNode) -> health.ClusterNode | None:
    """A replica of `master` on another server that the cluster sees connected and not failing."""
    for node in view:
        if node.master_id == master.id and not node.failing and node.host != master.host \
                and node.link == "connected":
            return node
    return None


def first_problem(findings: Sequence[health.Finding]) -> str:
    """The first failure, else the first warning, of a health check."""
    for severity in (health.FAIL, health.WARN):
        for f in findings:
            if f.severity == severity:
                return f"{severity} {f.message}"
    return "no problem found"


# ---------------------------------------------------------------- the steps


@dataclass
class Cluster:
    """The cluster through its Redis ports (the health check's reach): every server's processes."""

    servers: Sequence[Server]
    password: str | None
    version: str  # the Redis line the stack pins: "5.0" or "7.0"
    tls: health.Tls | None = None
    say: Callable[[str], None] = print
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Redis 7.0: the operations secret. The failovers log in as the operations user with it (the front-ends'
    # user cannot administer); the health check keeps the front-ends' password, as a front-end sees the store.
    ops_password: str | None = None

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [(s.host, p) for s in self.servers for p in s.ports]

    def client(self, host: str, port: int, timeout: float = 3.0):
        import redis

        login = {"username": OPERATIONS_USER, "password": self.ops_password} if self.ops_password else \
            {"password": self.password}
        return redis.Redis(host=host, port=port, **login, socket_timeout=timeout,
                           socket_connect_timeout=timeout, decode_responses=True,
                           **(health.redis_tls_kwargs(self.tls) if self.tls else {}))

    def _ask(self, host: str, port: int, *command: str):
        c = self.client(host, port)
        try:
            return c.execute_command(*command)
        finally:
            c.close()

    def role(self, host: str, port: int) -> str | None:
        """master | slave, or None when the process does not answer."""
        import redis

        try:
            c = self.client(host, port)
            try:
                return c.info("replication").get("role")
            finally:
                c.close()
        except (redis.RedisError, OSError):
            return None

    def in_sync(self, host: str, port: int) -> bool:
        """A master, or a replica whose link is up and not syncing."""
        import redis

        try:
            c = self.client(host, port)
            try:
                info = c.info("replication")
            finally:
                c.close()
        except (redis.RedisError, OSError):
            return False
        return info.get("role") == "master" or (info.get("master_link_status") == "up"
                                                and not int(info.get("master_sync_in_progress", 1)))

    def view(self, skip: str | None = None) -> tuple[health.ClusterNode, ...]:
        """CLUSTER NODES from the first process that answers (not on host `skip`)."""
        import redis

        for host, port in self.nodes:
            if host == skip:
                continue
            try:
                return health.parse_cluster_nodes(self._ask(host, port, "CLUSTER", "NODES"), host)
            except (redis.RedisError, OSError):
                continue
        raise RuntimeError("no Redis process answers")

    def check(self, wait: float = 0) -> tuple[health.Facts, list[health.Finding]]:
        return health.run_check(self.nodes, self.password, True, self.version, wait, interval=1.0, tls=self.tls)

    def failover(self, host: str, port: int, then_master: bool = True) -> int:
        """A plain CLUSTER FAILOVER on replica host:port until it is the master: the try it took.

        Redis drops a manual failover that gets no majority within a few seconds (votes are
        refused for a while after another election): up to three tries. RuntimeError after those.
        """
        import redis

        for attempt in (1, 2, 3):
            if self.role(host, port) == "master":
                return attempt
            try:
                self._ask(host, port, "CLUSTER", "FAILOVER")
            except (redis.RedisError, OSError) as exc:
                if self.role(host, port) == "master":  # its server's own timer was quicker
                    return attempt
                raise RuntimeError(f"CLUSTER FAILOVER refused by {host}:{port}: {exc}") from exc
            deadline = time.monotonic() + self.timeouts.failover
            while time.monotonic() < deadline:
                if self.role(host, port) == "master":
                    return attempt
                time.sleep(0.2)
        raise RuntimeError(f"{host}:{port} is still a replica after 3 tries of CLUSTER FAILOVER "
                           f"({self.timeouts.failover:g} s each)")


def move_masters_away(cluster: Cluster, server: Server) -> list[str]:
    """Step 1: every master holding slots on `server` hands over to its in-sync replica elsewhere.

    Returns the ports that held masters (they get the role back at the end)."""
    view = cluster.view()
    masters = masters_on(view, server.host)
    ports = []
    for master in masters:
        replica = replica_to_promote(view, master)
        if replica is None:
            raise RuntimeError(f"master {master.address} has no connected replica on another server")
        if not cluster.in_sync(replica.host, replica.port):
            raise RuntimeError(f"replica {replica.address} of {master.address} is not in sync")
        attempt = cluster.failover(replica.host, replica.port)
        # Until the old master knows, its clients are not redirected yet: a moment for the news.
        deadline = time.monotonic() + cluster.timeouts.failover
        while cluster.role(master.host, master.port) != "slave" and time.monotonic() < deadline:
            time.sleep(0.2)
        cluster.say(f"  {master.address} handed its {master.slot_count} slots to {replica.address} "
                    f"(CLUSTER FAILOVER, try {attempt})")
        ports.append(master.port)
    # Each process says it itself (another node's view may lag by a gossip round).
    left = [f"{server.host}:{p}" for p in ports if cluster.role(server.host, p) != "slave"]
    if left:
        raise RuntimeError(f"still a master after its replica took over: {', '.join(left)}")
    if not masters:
        cluster.say("  no master on this server: nothing to move")
    return ports


def wait_back(cluster: Cluster, server: Server) -> float:
    """Step 4: the server's processes answer, its replicas are in sync and no check fails; seconds it took."""
    started = time.monotonic()
    deadline = started + cluster.timeouts.back
    why = "its processes do not answer"
    while time.monotonic() < deadline:
        if all(cluster.in_sync(server.host, p) for p in server.ports):
            facts, findings = cluster.check()
            if health.verdict(findings) != "unhealthy":
                return time.monotonic() - started
            why = first_problem(findings)
        else:
            why = "its processes do not answer or their replicas are not in sync yet"
        time.sleep(1)
    raise RuntimeError(f"not back within {cluster.timeouts.back:g} s: {why}")


def give_back(cluster: Cluster, server: Server, ports: Sequence[int]) -> None:
    """Step 5: the processes that ran masters before take the role back (plain CLUSTER FAILOVER)."""
    for port in ports:
        if cluster.role(server.host, port) == "master":
            cluster.say(f"  {server.host}:{port} is a master already")
            continue
        attempt = cluster.failover(server.host, port)
        cluster.say(f"  {server.host}:{port} is a master again (CLUSTER FAILOVER, try {attempt})")


def maintain(servers: Sequence[Server], cluster: Cluster, runner: Runner, platform: Platform) -> list[str]:
    """Patch each server of `servers` (of `cluster`) in turn; the servers done. Refused or StepFailed otherwise."""
    say = cluster.say
    if len(cluster.servers) < 3:
        raise Refused("a single server cannot be patched without its sessions going away during the reboot: "
                      "rolling maintenance is for a cluster of 3 or more servers")
    facts, findings = cluster.check()
    if health.verdict(findings) != "healthy":
        raise Refused(f"the cluster is not HEALTHY, so nothing was done: {first_problem(findings)}\n"
                      f"{health.report(facts, findings)}")
    script = upgrade_script(platform)
    done: list[str] = []
    for server in servers:
        say(f"{server.label}:")
        step = MOVE
        try:
            started = time.monotonic()
            ports = move_masters_away(cluster, server)
            step = UPGRADE
            out = runner.run_script(server, script, cluster.timeouts.upgrade)
            say("\n".join(f"  {line}" for line in out.strip().splitlines()[-2:]))
            step = REBOOT
            said = runner.reboot(server, cluster.timeouts.reboot)
            say("\n".join(f"  {line}" for line in said.strip().splitlines()))
            step = BACK
            took = wait_back(cluster, server)
            say(f"  back, in sync and serving {took:.1f}s after the reboot")
            step = GIVE_BACK
            give_back(cluster, server, ports)
            step = HEALTHY
            facts, findings = cluster.check(wait=0)
            deadline = time.monotonic() + cluster.timeouts.healthy
            while health.verdict(findings) != "healthy" and time.monotonic() < deadline:
                time.sleep(1)
                facts, findings = cluster.check()
            if health.verdict(findings) != "healthy":
                raise RuntimeError(f"not HEALTHY within {cluster.timeouts.healthy:g} s: {first_problem(findings)}")
        except (RuntimeError, OSError, TimeoutError) as exc:
            raise StepFailed(server, step, str(exc)) from exc
        say(f"  done in {time.monotonic() - started:.1f}s: HEALTHY")
        done.append(server.label)
    return done


def run(servers: Sequence[Server], cluster: Cluster, runner: Runner, platform: Platform) -> int:
    """maintain() with its outcome printed: 0 when every server is done, 1 when refused or stopped."""
    say = cluster.say
    started = time.monotonic()
    say(f"rolling maintenance of {len(servers)} servers, one at a time: {', '.join(s.label for s in servers)}")
    try:
        done = maintain(servers, cluster, runner, platform)
    except Refused as exc:
        say(f"REFUSED: {exc}")
        return 1
    except StepFailed as exc:
        say(f"STOPPED: {exc}")
        # Up to 15 s for a failure to clear: right after a handover the nodes' views still catch up.
        facts, findings = cluster.check(wait=15)
        say(f"the cluster now: {health.verdict(findings).upper()} ({first_problem(findings)}); "
            "nothing else was touched. Fix the cause, then run this command again: it starts over from a "
            "HEALTHY cluster (the servers' redis-role-restore gives a master role back by itself once in sync).")
        return 1
    say(f"every server patched ({len(done)}) in {time.monotonic() - started:.1f}s; the cluster is HEALTHY")
    return 0


# ---------------------------------------------------------------- the rehearsal: the same steps on loopback


def render_apt_stand_in(log_dir: Path) -> str:
    """apt-get / apt-mark on loopback: record the command in <log_dir>/<server>.log instead of running it.

    A file <log_dir>/fail-<command>-<server> makes that command fail there (a planted problem)."""
    d = shlex.quote(str(log_dir))
    return (
        "#!/bin/bash\n"
        "# The rehearsal's stand-in for apt-get and apt-mark (rendered by outsystems-redis): records, never installs.\n"
        'name=${0##*/}\n'
        f'echo "$name $*" >>{d}/"$MAINTENANCE_SERVER.log"\n'
        f'if [ -f {d}/"fail-$name-$MAINTENANCE_SERVER" ]; then\n'
        '    echo "E: $name failed on $MAINTENANCE_SERVER (planted by the rehearsal)" >&2\n'
        "    exit 100\n"
        "fi\n"
        '[ "$name $1" != "apt-mark showhold" ] || printf "redis-server\\nredis-tools\\n"\n'
    )


class LoopbackRunner:
    """The rehearsal's servers, stepped through exactly as SsmRunner steps EC2's.

    `run_script` runs the script with /bin/sh, as AWS-RunShellScript does, with stand-ins for
    apt-get and apt-mark first on PATH: they record each command (state dir/maintenance/<server IP>.log)
    and leave this machine's packages alone. `reboot` is a clean reboot: each process's ExecStop
    (the shipped redis-step-down), SIGTERM, then the boot's steps (redis-auth, the Redis units).
    """

    def __init__(self, lo) -> None:  # lo: outsystems_redis.tools.loopback.Loopback
        self.lo = lo
        self.dir = Path(lo.state_dir) / "maintenance"
        self.bin = self.dir / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name in ("apt-get", "apt-mark"):
            stand_in = self.bin / name
            stand_in.write_text(render_apt_stand_in(self.dir))
            stand_in.chmod(0o755)

    def log(self, server: Server) -> list[str]:
        """The commands the stand-ins recorded for `server`."""
        path = self.dir / f"{server.host}.log"
        return path.read_text().splitlines() if path.exists() else []

    def plant_failure(self, server: Server, command: str = "apt-get") -> None:
        """Make `command` fail on `server` from now on."""
        (self.dir / f"fail-{command}-{server.host}").touch()

    def run_script(self, server: Server, script: str, timeout: float) -> str:
        import subprocess

        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "MAINTENANCE_SERVER": server.host, "HOME": str(self.dir)}
        try:
            done = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"the script did not finish within {timeout:g} s") from exc
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-500:]}")
        return done.stdout + done.stderr

    def reboot(self, server: Server, timeout: float) -> str:
        said = self.lo.reboot_server(server.index, timeout=min(timeout, 60))
        lines = [line for _, (_, out) in sorted(said.items()) for line in out.strip().splitlines()]
        return "\n".join(lines + ["rebooted (loopback: each process's ExecStop, SIGTERM, then the boot's steps)"])


def loopback_servers(lo) -> list[Server]:
    """The rehearsal's servers as maintenance sees them."""
    return [Server(s.index, s.name, s.private_ip, "", tuple(p.port for p in s.processes)) for s in lo.topology.servers]


# ---------------------------------------------------------------- on AWS: SSM Run Command

DOCUMENT = "AWS-RunShellScript"
FINAL = {"Success", "Failed", "Cancelled", "TimedOut", "DeliveryTimedOut", "Undeliverable", "Terminated",
         "InvalidPlatform", "AccessDenied", "ExecutionTimedOut"}


class SsmRunner:
    """Run Command on the servers' SSM agents (AWS-RunShellScript), by instance id; no SSH."""

    def __init__(self, ssm, *, poll: float = 2.0, reboot_poll: float = 10.0, comment: str = "outsystems-redis") -> None:
        self.ssm = ssm  # a boto3 SSM client
        self.poll = poll
        self.reboot_poll = reboot_poll
        self.comment = comment

    def _send(self, server: Server, script: str, timeout: float) -> str:
        if not server.instance_id:
            raise RuntimeError(f"{server.label}: no instance id")
        answer = self.ssm.send_command(
            InstanceIds=[server.instance_id],
            DocumentName=DOCUMENT,
            Parameters={"commands": script.strip().splitlines(), "executionTimeout": [str(int(timeout))]},
            TimeoutSeconds=60,  # to be delivered; a server still booting gets the next one
            Comment=f"{self.comment} maintenance"[:100],
        )
        return answer["Command"]["CommandId"]

    def _result(self, server: Server, command_id: str, timeout: float) -> tuple[str, str]:
        from botocore.exceptions import ClientError

        deadline = time.monotonic() + timeout + 90
        status = "Pending"
        while time.monotonic() < deadline:
            try:
                got = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=server.instance_id)
            except ClientError as exc:  # InvocationDoesNotExist for a moment after SendCommand
                if exc.response.get("Error", {}).get("Code") != "InvocationDoesNotExist":
                    raise
                got = {}
            status = got.get("Status", "Pending")
            if status in FINAL:
                text = got.get("StandardOutputContent", "") + got.get("StandardErrorContent", "")
                return status, text
            time.sleep(self.poll)
        return "no answer", f"Run Command {command_id} still {status} after {timeout + 90:g} s"

    def run_script(self, server: Server, script: str, timeout: float) -> str:
        command_id = self._send(server, script, timeout)
        status, text = self._result(server, command_id, timeout)
        if status != "Success":
            tail = "\n".join(text.strip().splitlines()[-5:])
            raise RuntimeError(f"Run Command {command_id} on {server.instance_id}: {status}" + (f":\n{tail}"
                                                                                               if tail else ""))
        return text

    def reboot(self, server: Server, timeout: float) -> str:
        """`systemctl reboot` (each Redis unit's ExecStop runs the step-down first); back when the boot id changed."""
        from botocore.exceptions import BotoCoreError, ClientError

        before = self.run_script(server, BOOT_ID_SCRIPT, 120).strip()
        self.run_script(server, REBOOT_SCRIPT, 120)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            time.sleep(self.reboot_poll)
            try:
                now = self.run_script(server, BOOT_ID_SCRIPT, 60).strip()
            except (RuntimeError, ClientError, BotoCoreError):
                continue  # the agent is down while the server reboots
            if now and now != before:
                return f"rebooted: its OS answers again {time.monotonic() - started:.0f}s later (new boot id)"
        raise RuntimeError(f"its OS did not answer Run Command within {timeout:g} s of the reboot")


def discover_servers(ec2, stack: str) -> list[Server]:
    """Every running server of the stack, by its tags (Project, Stack, RedisServerIndex, Name), in index order."""
    filters = [{"Name": "tag:Project", "Values": [PROJECT_TAG]}, {"Name": "tag:Stack", "Values": [stack]},
               {"Name": "instance-state-name", "Values": ["running"]}]
    servers = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                index = tags.get("RedisServerIndex", "")
                if not index.isdigit():
                    raise ValueError(f"instance {instance['InstanceId']} of stack {stack} has no RedisServerIndex tag")
                servers.append(Server(int(index), tags.get("Name", f"redis-{int(index) + 1}"),
                                      instance["PrivateIpAddress"], instance["InstanceId"]))
    servers.sort(key=lambda s: s.index)
    if not servers:
        raise ValueError(f"no running instance tagged Project={PROJECT_TAG}, Stack={stack} (region? credentials?)")
    if [s.index for s in servers] != list(range(len(servers))):
        raise ValueError(f"stack {stack}: running servers by RedisServerIndex are {[s.index for s in servers]}; "
                         "one is missing or stopped: bring it back first")
    return servers


def check_addresses(servers: Sequence[Server], topology: Topology, stack: str) -> None:
    """Each tagged instance must sit at the address the stack file gives its server: tags alone are not
    trusted, since anyone who may tag an instance could otherwise receive the password and root scripts.
    Raises ValueError naming the first instance that does not match."""
    if len(servers) != len(topology.servers):
        raise ValueError(f"stack {stack}: {len(servers)} running server(s) carry its tags but its stack file "
                         f"says servers: {len(topology.servers)}; run `pulumi up` first, or give --config")
    for server in servers:
        expected = topology.servers[server.index].private_ip
        if server.host != expected:
            raise ValueError(f"instance {server.instance_id} is tagged as server {server.index + 1} of stack {stack} "
                             f"but its address is {server.host}, not {expected} (subnetCidrs): not one of this "
                             "stack's servers; nothing was sent to any server")


def chosen(servers: Sequence[Server], instance_ids: Sequence[str]) -> list[Server]:
    """The servers to patch: `instance_ids` in their order (each one a server of the stack), or every server."""
    if not instance_ids:
        return list(servers)
    by_id = {s.instance_id: s for s in servers}
    unknown = [i for i in instance_ids if i not in by_id]
    if unknown:
        raise ValueError(f"--instance-ids: {', '.join(unknown)} is not a running server of this stack "
                         f"({', '.join(by_id)})")
    return [by_id[i] for i in dict.fromkeys(instance_ids)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m outsystems_redis.tools.maintenance",
        description="Rolling maintenance of a deployed cluster (needs AWS credentials): one server at a time, "
                    "move its masters away, upgrade packages within the pinned Redis line, reboot, give the "
                    "masters back. Password from REDIS_PASSWORD.",
        epilog="Exit codes: 0 every server done, 1 refused or stopped (the message names server and step), "
               "2 bad usage.")
    p.add_argument("--stack", type=stack_argument, required=True,
                   help="the Pulumi stack (its servers carry the tag Stack=<stack>)")
    p.add_argument("--instance-ids", default="", metavar="ID[,ID...]",
                   help="only these servers, in this order (default: every running server of the stack)")
    p.add_argument("--region", help="AWS region (default: the stack file's aws:region, else the AWS configuration's)")
    p.add_argument("--config", type=Path, help="the stack file (default Pulumi.<stack>.yaml in the current directory)")
    p.add_argument("--cacert", metavar="FILE", help="the stack's CA (TLS stacks): pulumi stack output caCertificate")
    p.add_argument("--dry-run", action="store_true", help="print the servers and the upgrade script; do nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from outsystems_redis.tools.stack_file import aws_region, read_settings

    try:
        settings = read_settings(args.stack, args.config)
        region = args.region or aws_region(args.stack, args.config)
    except (OSError, ValueError) as exc:
        parser.error(f"--stack {args.stack}: {exc}")
    platform = PLATFORMS[settings.platform]
    ids = [i.strip() for i in args.instance_ids.split(",") if i.strip()]
    if any(not i.startswith("i-") for i in ids):
        parser.error("--instance-ids: EC2 instance ids such as i-0123456789abcdef0, comma-separated")
    password = os.environ.get("REDIS_PASSWORD") or None
    if not password and not args.dry_run:
        parser.error("REDIS_PASSWORD: set it to the stack's password (docs/operations.md: Checking the session store)")
    ops_password = os.environ.get("REDIS_OPS_PASSWORD") or None
    if has_users(platform) and not ops_password and not args.dry_run:
        parser.error("REDIS_OPS_PASSWORD: set it to the stack's operations secret "
                     f"({ops_password_parameter(args.stack)}; docs/operations.md: Rolling maintenance): on Redis 7.0 "
                     "only the operations user fails a master over")
    if settings.tls and not args.cacert:
        parser.error("--cacert: the stack speaks TLS; give its CA (pulumi stack output caCertificate > redis-ca.crt)")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    session = boto3.session.Session(region_name=region)
    try:
        servers = discover_servers(session.client("ec2"), args.stack)
        check_addresses(servers, build_topology(settings.servers, settings.subnet_cidrs), args.stack)
        patched = chosen(servers, ids)
    except ValueError as exc:  # refused: the servers found are not the stack file's, or not the ones named
        print(f"maintenance: {exc}", file=sys.stderr)
        return 1
    except NoRegionError:
        print("maintenance: the stack file names no aws:region: give --region or set AWS_REGION", file=sys.stderr)
        return 2
    except NoCredentialsError:
        print("maintenance: no AWS credentials: `aws sso login`, or set AWS_PROFILE", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:
        print(f"maintenance: cannot list the stack's servers (EC2 DescribeInstances): {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        print("servers to patch, in order:\n" + "\n".join(f"  {s.label}" for s in patched))
        print(f"steps per server: {'; '.join(STEPS)}\nupgrade script:\n{upgrade_script(platform)}")
        return 0
    cluster = Cluster(servers, password, platform.redis_version,
                      health.Tls(ca_file=args.cacert) if args.cacert else None,
                      say=lambda line: print(line, flush=True), ops_password=ops_password)
    return run(patched, cluster, SsmRunner(session.client("ssm"), comment=f"outsystems-redis {args.stack}"),
               platform)


if __name__ == "__main__":
    from outsystems_redis.tools.cli import exit_with

    exit_with(main)
