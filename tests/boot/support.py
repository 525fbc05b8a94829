"""What the boot tests share: the mocked program's deployment of a stack, booting it, and the checks.

The boot tests boot the program's own rendered user data on real cloud-init and systemd: each server is a
systemd-nspawn container of Debian 12 (see machines.py for what stands in for EC2 and AWS, and which
cloud-init steps fail by design in a container). The user data, private IPs, SSM parameters and the
post-deploy check all come from the mocked program, never re-rendered here.

The scenarios live in one module per fleet (test_boot_dev, test_boot_dev_offline, test_boot_prod_growth,
test_boot_prod_faults), so pytest-xdist's --dist loadfile boots them on different workers at once; inside a
module, later tests build on the earlier ones. Every wait is bounded; containers and namespaces are torn
down by the fixtures even when a test fails, and a killed run's leftovers by the next run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outsystems_redis.topology import MASTER_PORT
from tests.boot import machines as m
from tests.unit.program import Program, Recorded, run_program

PLATFORM = {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0"}
# The boot tests' own judge is the direct check, run from inside the VPC with the password (the strictest
# one: every process, the password, the version). The default check, through CloudWatch from outside, is
# booted by test_boot_prod_growth.test_the_default_post_deploy_check_from_outside_the_vpc.
DIRECT_CHECK = {"outsystems-redis:healthCheckVia": "direct"}
INSTANCE = "aws:ec2/instance:Instance"
PARAMETER = "aws:ssm/parameter:Parameter"
BUCKET_OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
HEALTH_CHECK = "outsystems-redis-health-check"
SLOTS = 16384
BOOT_TIMEOUT = 240  # power on -> cloud-init finished (about 15 s here)
UNITS_TIMEOUT = 300  # -> every rendered unit active (the bootstrap and the join wait for peers)
# The post-deploy check runs once the units are up, and answers in about a second then;
# on a broken store it would wait its own --wait 900.
CHECK_TIMEOUT = 120
# The timer's next :30, the resync, up to three CLUSTER FAILOVER tries, and one server a minute when every
# server drifted (role-restore turns round the first drifted server by IP per run).
ROLE_RESTORE_TIMEOUT = 300
FAILOVER_TIMEOUT = 90  # cluster-node-timeout is 5000 ms: a replica takes over within seconds
SESSION_TTL = 3600


@dataclass
class Deployment:
    """What the mocked program asks AWS for, for one stack."""

    program: Program
    instances: dict[int, Recorded]  # by RedisServerIndex
    parameters: dict[str, str]
    tools: dict[str, str]  # the bucket objects the program uploads (key -> text)
    check_command: str
    check_env: dict[str, str]

    @classmethod
    def of(cls, stack: str, overrides: dict[str, Any] | None = None) -> Deployment:
        program = run_program(stack, {**PLATFORM, **DIRECT_CHECK, **(overrides or {})})
        check = program.named(HEALTH_CHECK)
        return cls(
            program=program,
            instances={int(r.inputs["tags"]["RedisServerIndex"]): r for r in program.of_type(INSTANCE)},
            parameters={p.inputs["name"]: str(p.inputs["value"]) for p in program.of_type(PARAMETER)},
            tools={o.inputs["key"]: o.inputs["content"] for o in program.of_type(BUCKET_OBJECT)},
            check_command=str(check.inputs["create"]),
            check_env={k: str(v) for k, v in check.inputs["environment"].items()},
        )

    def user_data(self, index: int) -> bytes:
        return m.user_data_bytes(self.instances[index].inputs)

    def add_to(self, fleet: m.Fleet, index: int) -> m.Server:
        inputs = self.instances[index].inputs
        return fleet.add(self.instances[index].name, index, inputs["privateIp"], self.user_data(index),
                         self.parameters, self.tools)

    @property
    def nodes(self) -> list[str]:
        """HOST:PORT of every Redis process, as the post-deploy check names them."""
        argv = shlex.split(self.check_command)
        return argv[argv.index("--nodes") + 1].split(",")

    @property
    def password(self) -> str:
        return self.check_env["REDIS_PASSWORD"]


@dataclass
class Cluster:
    fleet: m.Fleet
    deployment: Deployment  # the stack as last deployed (3 servers, then 4)



@contextmanager
def booted(root: Path, deployment: Deployment) -> Iterator[m.Fleet]:
    """Every server of `deployment` powered on together (as EC2 starts them) and booted; always torn down."""
    fleet = m.Fleet(root)
    try:
        for index in sorted(deployment.instances):
            deployment.add_to(fleet, index)
        fleet.boot(fleet.servers.values(), BOOT_TIMEOUT)
        yield fleet
    finally:
        fleet.destroy()


def assert_first_boot(server: m.Server) -> None:
    """The first boot did what the rendered user data asks, and nothing failed that should not."""
    units = m.expected_units(server.config)
    assert units, "the rendered user data names no unit to run"
    # cloud-init's verdict first: a failed install would otherwise show only as units that never start.
    assert_no_boot_problems(server, "cloud-init finished", defer_cgroup=True)
    server.wait_units_active(units, UNITS_TIMEOUT)
    assert_no_boot_problems(server, "units started")

    # cloud-init was handed exactly the bytes EC2 would hand it (gzip when the program compresses).
    given = server.merged / f"var/lib/cloud/instances/{server.instance_id}/user-data.txt"
    assert given.read_bytes() == server.user_data, "cloud-init did not consume the seeded user data"
    mismatched = server.rendered_files_mismatch()
    assert not mismatched, f"{server.name}: write_files did not land as rendered:\n" + "\n".join(mismatched)

    enabled = server.out("systemctl is-enabled " + " ".join(units)).split()
    assert enabled == ["enabled"] * len(units), f"{server.name}: {dict(zip(units, enabled, strict=False))}"
    # The packaged single-instance server stays off.
    assert server.out("systemctl is-active redis-server.service") != "active"

    # The pinned packages came from cloud-init's install, and are held.
    held = server.out("apt-mark showhold").split()
    for package, version in pinned_packages(server.config):
        installed = server.out(f"dpkg-query -W -f '${{Version}}' {package}")
        assert fnmatch.fnmatch(installed, version), f"{package} {installed}, pinned {version}"
        assert package in held, f"{package} is not held: {held}"

    # Where Ubuntu has no awscli package (24.04), redis-provision's pip installed the wheels (their digests
    # checked) from the index (here the root's /srv/wheels) into a directory of root's, and wrote
    # /usr/local/bin/aws, which starts: the system's python3 with the wheels' awscli and botocore, and the rest
    # from the distribution's packages (the calls themselves go to the stand-in, first on the units' PATH).
    wheels = provision_env(server).get("AWS_CLI_WHEELS", "")
    if wheels:
        assert server.out("cat /usr/local/lib/aws-cli/requirements") == wheels
        assert server.out("ls -d /usr/local/lib/aws-cli/*.dist-info").split() == sorted(
            f"/usr/local/lib/aws-cli/{w.replace('==', '-')}.dist-info" for w in wheels.split()[::2])
        assert server.out("stat -c '%U %a' /usr/local/bin/aws /usr/local/lib/aws-cli").split("\n") == \
            ["root 755", "root 755"]
        version = server.out("/usr/local/bin/aws --version 2>&1")
        assert version.startswith("aws-cli/1.32.46 ") and "botocore/1.34.46" in version, version
    # The password came from "SSM", through the AWS CLI.
    calls = server.out(f"cat {m.AWS_LOG}")
    assert any(f"--name {name}" in calls for name in server.parameters), f"no SSM read: {calls!r}"
    assert_aws_called_with_homes_redis_cannot_write(server)
    # The programs came from the bucket that the user data names; no server asked SSM for the bucket's name.
    bucket = server.out("awk -F= '$1 == \"BUCKET\" { gsub(/\"/, \"\", $2); print $2 }' /etc/redis/auth.env")
    assert bucket and f"s3://{bucket}/tools/" in calls and "/backup-bucket" not in calls, (bucket, calls)


def aws_callers(server: m.Server) -> list[tuple[str, str, str]]:
    """Every AWS call so far: (uid, HOME or "unset", its arguments)."""
    lines = server.out(f"cat {m.AWS_CALLERS}").splitlines()
    return [(uid, home, args) for uid, home, args in (line.split(" ", 2) for line in lines)]


def assert_aws_called_with_homes_redis_cannot_write(server: m.Server) -> None:
    """The AWS CLI runs what the caller's ~/.aws/config names (credential_process): a root call with the redis
    user's HOME (systemd hands it to '+' and '!' commands of a User=redis unit) runs what redis planted."""
    callers = aws_callers(server)
    assert callers, "no AWS call recorded"
    for home in sorted({home for _, home, _ in callers} - {"unset"}):
        writable = server.exec(f"runuser -u redis -- test -w {home} && echo writable")
        assert "writable" not in writable.stdout and home != "/var/lib/redis", (home, callers)


def assert_no_boot_problems(server: m.Server, when: str, defer_cgroup: bool = False) -> None:
    problems = server.boot_problems(defer_cgroup)
    assert not problems, f"{server.name} ({when}):\n" + "\n".join(problems) + "\n" + server.diagnostics()


# Paths where the redis user may write by design: its data, logs and runtime directories (its pid file),
# sticky scratch space (/tmp and the like, cloud-init's own), and Debian's default redis.conf (redis's
# through the package's statoverride; nothing here reads it: the servers run redis-server@<port> with
# redis-<port>.conf).
REDIS_OWN = ("/var/lib/redis", "/var/log/redis", "/run/redis*", "/tmp", "/var/tmp", "/dev/shm", "/run/lock",
             "/run/cloud-init/tmp", "/etc/redis/redis.conf")


def assert_redis_user_writes_nothing_root_reads(server: m.Server) -> None:
    """A compromised Redis runs as `redis`. Everything root reads (configuration, environment files,
    scripts, units, the auth include) must be out of its reach: listed by find as the redis user, then
    tried for real."""
    prune = " -o ".join(f"-path '{p}'" for p in REDIS_OWN)
    found = server.exec(f"runuser -u redis -- find /etc /usr /opt /root /var /run /srv -xdev \\( {prune} \\) "
                        "-prune -o \\( -type f -o -type d \\) -writable -print 2>/dev/null", timeout=120)
    assert found.stdout.split() == [], found.stdout
    # And for real: planting a file next to root's, or replacing one of them.
    tried = server.exec("runuser -u redis -- sh -c 'touch /etc/redis/planted || echo refused; "
                        "mv /etc/redis/auth.env /etc/redis/moved 2>/dev/null || echo refused'")
    assert tried.stdout.split() == ["refused", "refused"], tried.stdout + tried.stderr
    owner, mode = server.out("stat -c '%U:%G %a' /etc/redis").split()
    assert owner == "root:redis" and int(mode, 8) & 0o022 == 0, (owner, mode)  # group and others only read


def provision_env(server: m.Server) -> dict[str, str]:
    """redis-provision's inputs, as the server has them (KEY="value" lines)."""
    lines = server.out("cat /etc/redis/provision.env").splitlines()
    return {key: value.strip('"') for key, value in (line.split("=", 1) for line in lines if "=" in line)}


def pinned_packages(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(package, version glob) of the rendered `packages` entries that pin a version."""
    return [(str(p[0]), str(p[1])) for p in config.get("packages", []) if isinstance(p, list)]


def post_deploy_check(fleet: m.Fleet, deployment: Deployment) -> str:
    """The program's own post-deploy command, exactly, from the repo root inside the VPC: exit 0."""
    env = {**os.environ, **deployment.check_env}
    code, out = m.bounded(["ip", "netns", "exec", fleet.vpc.ns, "/bin/sh", "-c", deployment.check_command],
                          CHECK_TIMEOUT, env=env, cwd=m.REPO)
    if code != 0:
        why = f"did not finish in {CHECK_TIMEOUT}s" if code is None else f"exited {code}"
        lines = out.splitlines()
        shown = "\n".join(lines if len(lines) <= 30 else [*lines[:20], "...", *lines[-8:]])
        raise AssertionError(f"post-deploy check {why}: {deployment.check_command}\n{shown}\n{fleet.diagnostics()}")
    return out


def cli(fleet: m.Fleet, deployment: Deployment, node: str, *args: str) -> str:
    """redis-cli against one node, from inside the VPC (password through REDISCLI_AUTH, never argv)."""
    host, port = node.rsplit(":", 1)
    env = {**os.environ, "REDISCLI_AUTH": deployment.password}
    return fleet.vpc.exec(["redis-cli", "-h", host, "-p", port, *args], env=env, timeout=20).stdout


def cluster_view(fleet: m.Fleet, deployment: Deployment, via: str) -> list[dict[str, Any]]:
    """CLUSTER NODES as one node sees it: id, ip, node, master, failing, follows, slots."""
    rows = []
    for line in cli(fleet, deployment, via, "cluster", "nodes").splitlines():
        f = line.split()
        if len(f) < 8:
            continue
        slots = 0
        for r in f[8:]:
            if not r.startswith("["):  # a slot being migrated, not owned
                lo, _, hi = r.partition("-")
                slots += int(hi or lo) - int(lo) + 1
        node = f[1].split("@")[0]
        rows.append({"id": f[0], "node": node, "ip": node.rsplit(":", 1)[0], "master": "master" in f[2],
                     "failing": bool(re.search(r"fail|handshake|noaddr", f[2])), "follows": f[3], "slots": slots})
    return rows


def roles_restored(fleet: m.Fleet, deployment: Deployment, via: str) -> bool:
    """Every server's master process (7000) is the master with slots again: what redis-role-restore brings
    back, and what the health check's ring wants. (One master per server is not enough: after every server
    was powered off, each may come back with its 7001 the master, which role-restore then turns round.)"""
    view = cluster_view(fleet, deployment, via)
    masters = [r for r in view if r["master"] and r["slots"] and not r["failing"]]
    # ... and the view has settled: each of them followed by a replica on another server.
    followed = all(any(not r["master"] and r["follows"] == mr["id"] and r["ip"] != mr["ip"] for r in view)
                   for mr in masters)
    return followed and sorted(r["node"] for r in masters) == \
        sorted(f"{server.ip}:{MASTER_PORT}" for server in fleet.servers.values())


def assert_roles_restore_themselves(fleet: m.Fleet, deployment: Deployment, via: str, what: str) -> None:
    # redis-role-restore.timer fires every minute at :30 on each server, and acts once the cluster is whole.
    m.wait_for(lambda: roles_restored(fleet, deployment, via), ROLE_RESTORE_TIMEOUT,
               f"{what}: roles still drifted {ROLE_RESTORE_TIMEOUT}s later", fleet.diagnostics)


def assert_replicated_elsewhere(view: list[dict[str, Any]], what: str) -> None:
    """Every slot served by a live master, and every such master replicated from another server."""
    masters = [r for r in view if r["master"] and r["slots"] and not r["failing"]]
    assert sum(r["slots"] for r in masters) == SLOTS, f"{what}: slots served {view}"
    for master in masters:
        replicas = [r for r in view if not r["master"] and r["follows"] == master["id"] and not r["failing"]]
        assert replicas, f"{what}: {master['node']} has no replica: {view}"
        assert all(r["ip"] != master["ip"] for r in replicas), f"{what}: replica beside its master: {view}"


def assert_crossed(view: list[dict[str, Any]], servers: int) -> None:
    """The shape the program promises: one master per server, each replicated on another server."""
    assert_replicated_elsewhere(view, "crossed cluster")
    masters = [r for r in view if r["master"] and r["slots"]]
    assert len(masters) == servers and len({r["ip"] for r in masters}) == servers, f"masters: {masters}"


SESSIONS_PY = r"""
import json, os, sys
from redis import Redis
from redis.cluster import ClusterNode, RedisCluster
from outsystems_redis.tools.sessions import SessionStore, inspect
req = json.loads(sys.argv[1])
nodes = [ClusterNode(n.rsplit(":", 1)[0], int(n.rsplit(":", 1)[1])) for n in req["nodes"]]
if len(nodes) > 1:
    rc = RedisCluster(startup_nodes=nodes, password=os.environ["REDIS_PASSWORD"], socket_timeout=5,
                      decode_responses=True)
else:  # dev: one process, no cluster
    rc = Redis(nodes[0].host, nodes[0].port, password=os.environ["REDIS_PASSWORD"], socket_timeout=5,
               decode_responses=True)
store = SessionStore(rc, timeout=req["ttl"])
if req["op"] == "write":
    for tag, items in req["sessions"].items():
        store.create(tag, {"login": items["login"]})
        assert store.write(tag, {"page": items["page"]}), tag
    print(json.dumps(len(req["sessions"])))
else:
    # Read key by key first (inspect does not reset the expiry), then as the provider reads.
    out = {}
    for tag in req["tags"]:
        state = inspect(rc, tag)
        out[tag] = [store.get(tag)[0] if state.whole else {}, state.data_ttl, state.half]
    print(json.dumps(out))
"""


def sessions(fleet: m.Fleet, deployment: Deployment, request: dict[str, Any]) -> Any:
    """Sessions written or read through the session provider's scripts (outsystems_redis.tools.sessions), with
    redis-py's cluster client (its single-server client on dev), from inside the VPC."""
    env = {**os.environ, "REDIS_PASSWORD": deployment.password}
    request = {**request, "nodes": deployment.nodes, "ttl": SESSION_TTL}
    result = fleet.vpc.exec([str(m.REPO / ".venv/bin/python"), "-c", SESSIONS_PY, json.dumps(request)],
                            env=env, cwd=m.REPO, timeout=120)
    assert result.returncode == 0, f"sessions {request['op']}: {result.stderr[-3000:]}"
    return json.loads(result.stdout)


def write_sessions(fleet: m.Fleet, deployment: Deployment, count: int) -> dict[str, dict[str, str]]:
    """`count` sessions in the provider's shape: created, then updated by a request holding the write lock."""
    written = {}
    for n in range(count):
        tag = f"{{{uuid.uuid4()}_{uuid.uuid4().hex[:24]}}}"
        written[tag] = {"login": uuid.uuid4().hex * 8, "page": f"request {n}"}
    assert sessions(fleet, deployment, {"op": "write", "sessions": written}) == count
    return written


def assert_sessions_kept(fleet: m.Fleet, deployment: Deployment, written: dict[str, dict[str, str]]) -> None:
    got = sessions(fleet, deployment, {"op": "read", "tags": list(written)})
    lost = [tag for tag, items in written.items() if got[tag][0] != items]
    half = [tag for tag in written if got[tag][2]]
    assert not lost, f"{len(lost)} of {len(written)} sessions lost ({len(half)} half), e.g. {lost[:3]}"
    ttls = [ttl for _, ttl, _ in got.values()]
    assert all(0 < ttl <= SESSION_TTL for ttl in ttls), f"TTLs not kept: {sorted(set(ttls))[:5]}"


def verdict(report: str) -> str:
    """The health check's headline and its warnings/failures, for the test log."""
    return "\n".join(line for line in report.splitlines()
                     if re.match(r"(HEALTHY|DEGRADED|UNHEALTHY)|\s+(WARN|FAIL)\b", line))


# Each root unit that calls AWS, and whether it may write the auth include's directory (and nothing else of
# /etc/redis, where the key that checks fetched programs and other root units' environment files live).
SANDBOXED = {"redis-password-sync.service": True, "redis-metrics.service": False, "redis-logs.service": False,
             "redis-backup.service": False}
# ($$: systemd's own escape for a $ it must not expand.)
PROBE = ("/bin/sh -c 'for p in /usr/local/sbin /etc/redis /etc/redis/auth /root; do "
         "if touch $$p/.osr-probe 2>/dev/null; then rm -f $$p/.osr-probe; echo $$p wrote; else echo $$p refused; "
         "fi; done > /var/lib/outsystems-redis/.osr-probe'")


def assert_root_units_that_call_aws_run_sandboxed(server: m.Server) -> None:
    """The root units that call AWS run in systemd.SANDBOX, on either platform's AWS CLI: a compromised program
    (or AWS CLI) cannot replace what root runs, nor write /etc/redis but the auth include's own directory, and
    only the password sync that one. Probed from inside each unit as systemd merges it (a drop-in runs the probe
    before the program), then each runs its real job: no ERROR in its journal. Planted (aws_sandbox giving no
    sandbox, as it did for 24.04's snap): the probe writes."""
    # The test starts each unit itself: a run its timer began before the probe was in place would be the one
    # `systemctl start` waits for (CI of eb6cffa met that), so the timers stop, and any run in progress ends.
    timers = " ".join(unit.replace(".service", ".timer") for unit in SANDBOXED)
    server.exec(f"systemctl stop {timers}; systemctl stop {' '.join(SANDBOXED)}", timeout=150)
    try:
        for unit, writes_auth in SANDBOXED.items():
            drop_in = server.merged / f"etc/systemd/system/{unit}.d/osr-probe.conf"
            drop_in.parent.mkdir(parents=True, exist_ok=True)
            drop_in.write_text(f"[Service]\nExecStartPre=-{PROBE}\n")
            server.exec("systemctl daemon-reload")
            # This run's lines only: a test before may have left an ERROR of its own in the unit's journal.
            cursor = server.out("journalctl -n 0 --show-cursor --no-pager").rsplit("cursor: ", 1)[-1]
            try:
                ran = server.start(unit, timeout=150)
                journal = server.out(f"journalctl -u {unit} --after-cursor={shlex.quote(cursor)} --no-pager -o cat")
                probe = dict(line.rsplit(" ", 1) for line in server.out("cat /var/lib/outsystems-redis/.osr-probe")
                             .splitlines())
            finally:
                drop_in.unlink()
                server.exec("systemctl daemon-reload; rm -f /var/lib/outsystems-redis/.osr-probe")
            assert ran.returncode == 0, f"{unit}:\n{journal}\n{server.diagnostics()}"
            assert f"Finished {unit}" in journal, f"{unit}: not this run's journal ({cursor}):\n{journal}"
            assert "ERROR" not in journal, f"{unit}:\n{journal}"
            auth = "wrote" if writes_auth else "refused"
            assert probe == {"/usr/local/sbin": "refused", "/etc/redis": "refused", "/etc/redis/auth": auth,
                             "/root": "refused"}, f"{unit}: {probe}"
    finally:
        server.exec(f"systemctl start {timers}")
    # The backup uploaded under this instance's own session id (what STS told it), the only prefix its role may
    # write (outsystems_redis/backup_bucket.py), with its server's name below that.
    uploads = server.out("cd /usr/local/lib/osr-boot/s3 && find snapshots -type f | sort").split()
    mine = f"snapshots/{m.SERVER_ROLE_ID}:{server.instance_id}/{server.hostname}/"
    assert uploads and all(u.startswith(mine) for u in uploads), (mine, uploads)
    # redis-auth ran in it at boot: its programs wrote the auth include in its own directory, its fence outside.
    assert server.out("systemctl show -p NoNewPrivileges --value redis-auth.service") == "yes"
    writable = server.out("systemctl show -p ReadWritePaths --value redis-auth.service").split()
    assert [p for p in writable if p.startswith("/etc")] == ["/etc/redis/auth"], writable
    assert server.out("stat -c '%U:%G %a' /etc/redis/auth/auth.conf") == "root:redis 640"
    assert server.out("stat -c '%U:%G %a' /etc/redis/auth") == "root:root 755"
