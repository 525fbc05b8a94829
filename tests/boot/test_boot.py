"""The program's own rendered user data, booted on real cloud-init and systemd.

Each server is a systemd-nspawn container of Debian 12 (see tests/boot/machines.py
for what stands in for EC2 and AWS, and which cloud-init steps fail by design in a
container). The user data, private IPs, SSM parameters and the post-deploy check
all come from the mocked program, never re-rendered here.

One module, one pytest worker: the servers boot once per stack and later tests
build on the earlier ones (dev: one server; a dev server whose first boot has no
way out yet; prod: boot 3, join a 4th, power one off and on, power all off and
on). Every wait is bounded; containers and namespaces are torn down by the
fixtures even when a test fails, and a killed run's leftovers by the next run.

Run: .venv/bin/python -m pytest tests/boot -x -q (as root; `make test` runs it).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.boot import machines as m
from tests.tools import tool
from tests.unit.program import Program, Recorded, run_program

PLATFORM = {"outsystems-redis:platform": "ubuntu-24.04-redis-7.0"}
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
ROLE_RESTORE_TIMEOUT = 180  # the timer's next :30, the resync, and up to three CLUSTER FAILOVER tries
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
        program = run_program(stack, {**PLATFORM, **(overrides or {})})
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


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def root() -> Path:
    # A missing tool fails (tests/tools.py), never skips.
    for name in ("systemd-nspawn", "debootstrap", "dpkg-scanpackages", "nsenter", "ip", "redis-cli"):
        tool(name)
    if os.geteuid() != 0:
        pytest.fail("the boot tests run as root (network namespaces, overlay mounts, systemd-nspawn)", pytrace=False)
    return m.build_root()


@pytest.fixture(scope="module")
def dev(root: Path) -> Iterator[tuple[Deployment, m.Fleet]]:
    deployment = Deployment.of("dev")
    fleet = m.Fleet(root)
    try:
        for index in deployment.instances:
            deployment.add_to(fleet, index)
        fleet.boot(fleet.servers.values(), BOOT_TIMEOUT)
        yield deployment, fleet
    finally:
        fleet.destroy()


@dataclass
class Cluster:
    fleet: m.Fleet
    deployment: Deployment  # the stack as last deployed (3 servers, then 4)


@pytest.fixture(scope="module")
def prod(root: Path) -> Iterator[Cluster]:
    deployment = Deployment.of("prod")
    fleet = m.Fleet(root)
    try:
        for index in sorted(deployment.instances):
            deployment.add_to(fleet, index)
        fleet.boot(fleet.servers.values(), BOOT_TIMEOUT)  # in parallel, as EC2 starts them
        yield Cluster(fleet, deployment)
    finally:
        fleet.destroy()


# --- checks -------------------------------------------------------------------------


def assert_first_boot(server: m.Server) -> None:
    """The first boot did what the rendered user data asks, and nothing failed that should not."""
    units = m.expected_units(server.config)
    assert units, "the rendered user data names no unit to run"
    # cloud-init's verdict first: a failed install would otherwise show only as units that never start.
    assert_no_boot_problems(server, "cloud-init finished")
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

    # The password came from "SSM", through the AWS CLI the snap step installed.
    if any("aws-cli" in cmd for cmd in map(str, server.config.get("snap", {}).get("commands", []))):
        assert (server.merged / "snap/bin/aws").exists(), "snap install aws-cli did not run"
    calls = server.out(f"cat {m.AWS_LOG}")
    assert any(f"--name {name}" in calls for name in server.parameters), f"no SSM read: {calls!r}"


def assert_no_boot_problems(server: m.Server, when: str) -> None:
    problems = server.boot_problems()
    assert not problems, f"{server.name} ({when}):\n" + "\n".join(problems) + "\n" + server.diagnostics()


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
    """Every server holds exactly one master with slots again (what redis-role-restore brings back)."""
    view = cluster_view(fleet, deployment, via)
    masters = [r for r in view if r["master"] and r["slots"] and not r["failing"]]
    # ... and the view has settled: each of them followed by a replica on another server.
    followed = all(any(not r["master"] and r["follows"] == mr["id"] and r["ip"] != mr["ip"] for r in view)
                   for mr in masters)
    return followed and sorted(r["ip"] for r in masters) == sorted(server.ip for server in fleet.servers.values())


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
from redis.cluster import ClusterNode, RedisCluster
req = json.loads(sys.argv[1])
nodes = [ClusterNode(n.rsplit(":", 1)[0], int(n.rsplit(":", 1)[1])) for n in req["nodes"]]
rc = RedisCluster(startup_nodes=nodes, password=os.environ["REDIS_PASSWORD"], socket_timeout=5,
                  decode_responses=True)
if req["op"] == "write":
    for key, value in req["items"].items():
        rc.set(key, value, ex=req["ttl"])
    print(json.dumps(len(req["items"])))
else:
    print(json.dumps({key: [rc.get(key), rc.ttl(key)] for key in req["keys"]}))
"""


def sessions(fleet: m.Fleet, deployment: Deployment, request: dict[str, Any]) -> Any:
    """Session keys written or read with redis-py's cluster client, from inside the VPC."""
    env = {**os.environ, "REDIS_PASSWORD": deployment.password}
    request = {**request, "nodes": deployment.nodes}
    result = fleet.vpc.exec([str(m.REPO / ".venv/bin/python"), "-c", SESSIONS_PY, json.dumps(request)],
                            env=env, cwd=m.REPO, timeout=120)
    assert result.returncode == 0, f"sessions {request['op']}: {result.stderr[-3000:]}"
    return json.loads(result.stdout)


def write_sessions(fleet: m.Fleet, deployment: Deployment, count: int) -> dict[str, str]:
    """`count` OutSystems-shaped sessions: two keys sharing one hash tag, with a TTL."""
    items = {}
    for _ in range(count):
        tag = f"{{{uuid.uuid4()}_{uuid.uuid4().hex[:24]}}}"
        items[f"{tag}_Data"] = uuid.uuid4().hex * 8
        items[f"{tag}_Internal"] = uuid.uuid4().hex
    assert sessions(fleet, deployment, {"op": "write", "items": items, "ttl": SESSION_TTL}) == len(items)
    return items


def assert_sessions_kept(fleet: m.Fleet, deployment: Deployment, items: dict[str, str]) -> None:
    got = sessions(fleet, deployment, {"op": "read", "keys": list(items)})
    lost = [k for k, v in items.items() if got[k][0] != v]
    assert not lost, f"{len(lost)} of {len(items)} session keys lost, e.g. {lost[:3]}"
    ttls = [ttl for _, ttl in got.values()]
    assert all(0 < ttl <= SESSION_TTL for ttl in ttls), f"TTLs not kept: {sorted(set(ttls))[:5]}"


def verdict(report: str) -> str:
    """The health check's headline and its warnings/failures, for the test log."""
    return "\n".join(line for line in report.splitlines()
                     if re.match(r"(HEALTHY|DEGRADED|UNHEALTHY)|\s+(WARN|FAIL)\b", line))


# --- dev: one server ----------------------------------------------------------------


def test_dev_server_first_boot(dev: tuple[Deployment, m.Fleet]) -> None:
    deployment, fleet = dev
    assert len(fleet.servers) == 1
    server = fleet.servers[0]
    if deployment.instances[0].inputs.get("userDataBase64"):
        # What EC2 hands cloud-init is the gzip itself: this boot proves cloud-init unpacks it.
        assert server.user_data[:2] == b"\x1f\x8b", "userDataBase64 is not gzip-compressed"
    assert_first_boot(server)


def test_dev_post_deploy_check(dev: tuple[Deployment, m.Fleet]) -> None:
    deployment, fleet = dev
    print(verdict(post_deploy_check(fleet, deployment)))


def test_dev_first_boot_without_a_way_out_completes_later(root: Path) -> None:
    """cloud-init installs once: with no way out yet (NAT gateway still coming up), its package
    and snap steps fail for good. The server must still end up as rendered once the way out works."""
    deployment = Deployment.of("dev")
    fleet = m.Fleet(root)
    try:
        server = deployment.add_to(fleet, 0)
        server.set_way_out(False)
        fleet.boot([server], BOOT_TIMEOUT)
        print(f"cloud-init with no way out:\n{server.out('cloud-init status --long')}")
        server.set_way_out(True)
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
        mismatched = server.rendered_files_mismatch()
        assert not mismatched, "write_files did not land as rendered:\n" + "\n".join(mismatched)
        for package, version in pinned_packages(server.config):
            installed = server.out(f"dpkg-query -W -f '${{Version}}' {package}")
            assert fnmatch.fnmatch(installed, version), f"{package} {installed}, pinned {version}"
        print(verdict(post_deploy_check(fleet, deployment)))
    finally:
        fleet.destroy()


# --- prod: the crossed cluster, its growth, and power cycles --------------------------


def test_prod_first_boot_forms_the_crossed_cluster(prod: Cluster) -> None:
    servers = list(prod.fleet.servers.values())
    assert len(servers) == 3
    for server in servers:
        assert_first_boot(server)
    # The cluster was formed by the shipped bootstrap, run by systemd from the unit the
    # user data installed on exactly one server (its files matched the render above).
    formers = [(s, u) for s in servers for u in m.expected_units(s.config) if "bootstrap" in u]
    assert len(formers) == 1, f"bootstrap units: {[(s.name, u) for s, u in formers]}"
    server, unit = formers[0]
    journal = server.out(f"journalctl -b --no-pager -o cat -u {unit}")
    assert "[OK] All 16384 slots covered." in journal, journal  # redis-cli --cluster create ran here
    assert re.search(r"(?m)^cluster-bootstrap: done$", journal), journal
    print(f"{server.name} {unit}:\n" + "\n".join(journal.splitlines()[-5:]))


def test_prod_post_deploy_check(prod: Cluster) -> None:
    print(verdict(post_deploy_check(prod.fleet, prod.deployment)))
    assert_crossed(cluster_view(prod.fleet, prod.deployment, prod.deployment.nodes[0]), 3)


def test_prod_servers_publish_metrics_and_logs(prod: Cluster) -> None:
    """redis-observe's timers, as booted: each server fetches the tool, publishes its metrics (the cluster
    healthy, its own name as dimension) and ships its units' journal, read by the real journalctl."""
    for server in prod.fleet.servers.values():
        def recorded(server: m.Server = server) -> list[str]:
            return server.out(f"cat {m.AWS_LOG}").splitlines()

        def latest_metrics(server: m.Server = server) -> dict | None:
            lines = recorded(server)
            published = [i for i, line in enumerate(lines) if "cloudwatch put-metric-data" in line]
            return {d["MetricName"]: d for d in json.loads(lines[published[-1] + 1])} if published else None

        def healthy_metrics(server: m.Server = server) -> dict | None:
            data = latest_metrics(server)
            ok = data and data["ClusterStateOk"]["Value"] == 1 and data["SlotsServed"]["Value"] == SLOTS
            return data if ok else None

        m.wait_for(lambda: any("logs put-log-events" in line and "/journal " in line for line in recorded()), 150,
                   f"{server.name}: no journal shipped", server.diagnostics)
        # A run during the cluster's first minutes rightly published cluster_state not ok; the next ones
        # (every minute) must say healthy, with every slot served.
        data = m.wait_for(healthy_metrics, 150,
                          f"{server.name}: no publish with ClusterStateOk 1 and {SLOTS} slots served",
                          server.diagnostics)
        lines = recorded()
        assert any(line.split()[1:3] == ["s3", "cp"] for line in lines)
        assert {x["Name"]: x["Value"] for x in data["ClusterStateOk"]["Dimensions"]} == {
            "Stack": "prod", "Server": server.hostname}
        journal = next(i for i, line in enumerate(lines) if "logs put-log-events" in line and "/journal " in line)
        # redis-auth's own line, as the real journal has it (identifier and pid), from the first boot.
        payload = lines[journal + 1]
        wrote = r'"message": "redis-auth\[\d+\]: redis-auth: wrote /etc/redis/auth.conf'
        assert re.search(wrote, payload), payload[:500]
        assert prod.deployment.password not in "\n".join(lines)


def test_fourth_server_joins(prod: Cluster) -> None:
    grown = Deployment.of("prod", {"outsystems-redis:servers": 4})
    assert sorted(grown.instances) == [0, 1, 2, 3]
    # Raising the count only adds a server: the running three keep their user data.
    for index in (0, 1, 2):
        assert grown.user_data(index) == prod.deployment.user_data(index), f"server {index}'s user data changed"
    new = grown.add_to(prod.fleet, 3)
    prod.fleet.boot([new], BOOT_TIMEOUT)
    assert_first_boot(new)
    assert any("join" in u for u in m.expected_units(new.config)), "the 4th server renders no join unit"
    prod.deployment = grown
    print(verdict(post_deploy_check(prod.fleet, grown)))
    assert_crossed(cluster_view(prod.fleet, grown, grown.nodes[0]), 4)


def test_one_server_powered_off_and_on(prod: Cluster) -> None:
    fleet, deployment = prod.fleet, prod.deployment
    victim = fleet.servers[0]
    survivor = next(n for n in deployment.nodes if not n.startswith(victim.ip + ":"))
    items = write_sessions(fleet, deployment, 50)

    poweroff_started = time.monotonic()
    fleet.poweroff([victim])
    # A clean poweroff steps down first (each Redis unit's ExecStop, redis-step-down): the victim's
    # master handed its slots to its replica before going down, so right after the poweroff every
    # slot is already served from another server, with no wait for cluster-node-timeout (a kill
    # leaves the dead master owning its slots in every view for 5 s and an election).
    view = cluster_view(fleet, deployment, survivor)
    gone = [r for r in view if r["ip"] == victim.ip]
    assert gone and not any(r["slots"] for r in gone), f"{victim.ip} went down holding slots: {view}"
    masters = [r for r in view if r["master"] and r["slots"] and r["ip"] != victim.ip]
    assert sum(r["slots"] for r in masters) == SLOTS, f"slots not all served right after the poweroff: {view}"
    print(f"{victim.name} powered off in {time.monotonic() - poweroff_started:.1f}s; its master had moved first")

    def failed_over() -> bool:
        view = cluster_view(fleet, deployment, survivor)
        masters = [r for r in view if r["master"] and r["slots"] and not r["failing"]]
        return (sum(r["slots"] for r in masters) == SLOTS and all(r["ip"] != victim.ip for r in masters)
                and "cluster_state:ok" in cli(fleet, deployment, survivor, "cluster", "info"))

    m.wait_for(failed_over, FAILOVER_TIMEOUT, f"{victim.ip}'s slots were not taken over by another server",
               fleet.diagnostics)
    assert_sessions_kept(fleet, deployment, items)

    victim.boot()
    victim.wait_booted(BOOT_TIMEOUT)
    victim.wait_units_active(m.expected_units(victim.config), UNITS_TIMEOUT)
    assert_no_boot_problems(victim, "power cycle")
    # Its old master came back as a replica; its redis-role-restore timer gives the role back by itself.
    assert_roles_restore_themselves(fleet, deployment, survivor, f"after {victim.name}'s power cycle")
    report = post_deploy_check(fleet, deployment)
    print(f"after {victim.name} came back:\n{verdict(report)}")
    assert verdict(report).startswith("HEALTHY") and "WARN" not in report, report
    assert "master again" in victim.out("journalctl -u redis-role-restore --no-pager")
    # What the step-down said while the server went down (the journal of the boot before).
    said = victim.out("journalctl --no-pager -o cat -b -1 -u redis-server@7000 -u redis-server@7001")
    assert "is the master now" in said and "stops as a replica" in said, said
    print("\n".join(line for line in said.splitlines() if "redis-step-down" in line))
    assert_replicated_elsewhere(cluster_view(fleet, deployment, survivor), "after one server's power cycle")
    assert_sessions_kept(fleet, deployment, items)


def test_every_server_powered_off_and_on_keeps_sessions(prod: Cluster) -> None:
    fleet, deployment = prod.fleet, prod.deployment
    items = write_sessions(fleet, deployment, 100)
    servers = list(fleet.servers.values())

    fleet.poweroff(servers)
    fleet.boot(servers, BOOT_TIMEOUT)
    for server in servers:
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
        assert_no_boot_problems(server, "power cycle of every server")
    assert_roles_restore_themselves(fleet, deployment, deployment.nodes[0], "after every server's power cycle")
    report = post_deploy_check(fleet, deployment)
    print(f"after every server's power cycle:\n{verdict(report)}")
    assert verdict(report).startswith("HEALTHY") and "WARN" not in report, report
    assert_replicated_elsewhere(cluster_view(fleet, deployment, deployment.nodes[0]), "after the power cycle")
    assert_sessions_kept(fleet, deployment, items)


def test_a_server_whose_disk_was_wiped_boots_empty_and_rejoins_by_itself(prod: Cluster) -> None:
    """Server 1 (index 0: it forms the cluster) loses its Redis data dirs and boots empty at its address:
    its bootstrap hands over, its redis-cluster-join rejoins it, its role-restore timer gives its master back."""
    fleet, deployment = prod.fleet, prod.deployment
    victim = fleet.servers[0]
    survivor = next(n for n in deployment.nodes if not n.startswith(victim.ip + ":"))
    items = write_sessions(fleet, deployment, 50)

    fleet.poweroff([victim])
    m.wait_for(lambda: "cluster_state:ok" in cli(fleet, deployment, survivor, "cluster", "info") and all(
        r["ip"] != victim.ip for r in cluster_view(fleet, deployment, survivor) if r["master"] and r["slots"]
        and not r["failing"]) and sum(r["slots"] for r in cluster_view(fleet, deployment, survivor)
                                      if r["master"] and not r["failing"]) == SLOTS,
        FAILOVER_TIMEOUT, f"{victim.ip}'s slots were not taken over by another server", fleet.diagnostics)
    for port in (7000, 7001):  # the disk's Redis state: nodes.conf and the RDB
        data = victim.merged / f"var/lib/redis/{port}"
        wiped = [p for p in data.iterdir() if p.is_file()]
        assert any(p.name.startswith("nodes") for p in wiped), f"no nodes.conf in {data}: {wiped}"
        for p in wiped:
            p.unlink()

    victim.boot()
    victim.wait_booted(BOOT_TIMEOUT)
    victim.wait_units_active(m.expected_units(victim.config), UNITS_TIMEOUT)
    assert_no_boot_problems(victim, "boot with a wiped disk")
    assert "not forming another" in victim.out("journalctl -b --no-pager -o cat -u redis-cluster-bootstrap")
    journal = victim.out("journalctl -b --no-pager -o cat -u redis-cluster-join")
    assert "REJOIN" in journal and "done: rejoined" in journal, journal
    assert_roles_restore_themselves(fleet, deployment, survivor, f"after {victim.name} rejoined")
    report = post_deploy_check(fleet, deployment)
    print(f"after {victim.name} rejoined with a wiped disk:\n{verdict(report)}\n"
          + "\n".join(line for line in journal.splitlines() if "REJOIN" in line or "replicates" in line))
    assert verdict(report).startswith("HEALTHY") and "WARN" not in report, report
    assert_crossed(cluster_view(fleet, deployment, survivor), len(fleet.servers))
    assert_sessions_kept(fleet, deployment, items)
