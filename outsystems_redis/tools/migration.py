"""Rolling migration of a running Redis 5.0 cluster onto Redis 7.0 servers, without losing sessions.

    python -m outsystems_redis.tools.migration join    --from OLD1,OLD2,OLD3 --to NEW1,NEW2,NEW3
    python -m outsystems_redis.tools.migration promote --from OLD1,OLD2,OLD3 --to NEW1,NEW2,NEW3
    python -m outsystems_redis.tools.migration rehearse [--servers 3]

`--from`/`--to` are server IPs (each runs a master on 7000 and a replica on
7001); the password comes from REDIS_PASSWORD and is the same on both sides; the new
(7.0) servers are administered as their operations user, with REDIS_OPS_PASSWORD.

What was found on real servers (tests/integration/test_migration.py) and why
the steps are in this order:
- A 7.0 node joins a 5.0 cluster over the cluster bus, and replicates from a
  5.0 master (7.0 loads the 5.0 RDB). It logs in to a 5.0 master with the one
  password (5.0 refuses AUTH with a user), and to a 7.0 master as the
  replication user (the front-ends' user there has no PSYNC): `join` and each
  failover set which (log_in_to_master).
- `CLUSTER FAILOVER` on a 7.0 replica promotes it; the 5.0 masters vote for it.
- A 5.0 replica cannot follow a 7.0 master: it logs in as the front-ends'
  user, which has no PSYNC there. (Where it has, on a 7.0 server created before
  the users, a 5.0 replica follows only by partial resync; a full sync fails,
  "Can't handle RDB format version 10", after the 5.0 node has flushed its
  data, and retries forever, forking a BGSAVE on the 7.0 master each time.) So
  the 5.0 replicas are removed before any failover, and each old master is
  removed right after its own failover.
- A 7.0 node with `cluster-announce-hostname` set adds ping extensions that
  5.0 predates; one run saw every 5.0 node mark such a node failed, later runs
  did not. The shipped redis.conf sets no hostname; preflight refuses a new
  node that does, rather than rely on either behaviour.

Steps. `join` (reversible: remove the 7.0 nodes and nothing happened):
  1. preflight: both sides answer with the one password, versions, old cluster ok,
     same server count, new servers empty; the new stack's own empty cluster
     (its first boot formed one) is reset;
  2. meet: the 7.0 nodes meet the old cluster;
  3. attach: 7.0 master-to-be on new server i replicates old master i, the 7.0
     replica on new server i replicates old master i+1 (the crossed ring to be).
Between `join` and `promote`, switch the OutSystems connection string to the
new servers: both halves are in one cluster then, so either string works.
`promote` (the first failover is the point of no return):
  4. retire the old replicas (CLUSTER FORGET everywhere, then CLUSTER RESET HARD);
  5. per server: CLUSTER FAILOVER on the 7.0 node, then retire the old master;
  6. wait for the crossed 7.0 ring; 7. the health check, expecting 7.0.
Every step checks what is already done, so a re-run continues where one stopped.
Plain Python, no pulumi.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from outsystems_redis.parameters import OPERATIONS_USER, REPLICATION_USER, replication_password
from outsystems_redis.tools import health
from outsystems_redis.tools.cli import command_parser
from outsystems_redis.topology import MASTER_PORT, REPLICA_PORT, follows

Address = tuple[str, int]
WAIT_SECONDS = 120.0  # per step; each is seconds on loopback, a few more over a VPC
POLL = 0.1


class MigrationError(RuntimeError):
    """A step could not be done or did not converge; the message says which and what to look at."""


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    detail: str


@dataclass
class Migration:
    """Move the slots of the old servers' masters onto the new servers, one master at a time."""

    old_hosts: Sequence[str]
    new_hosts: Sequence[str]
    password: str
    progress: Callable[[str], None] = print
    wait_seconds: float = WAIT_SECONDS
    # The new (7.0) stack's operations secret: its front-ends' user cannot administer, so the steps log in to the
    # new servers as its operations user. The old (5.0) servers have no users: the password.
    ops_password: str | None = None
    steps: list[Step] = field(default_factory=list)
    health_report: str = ""

    # ------------------------------------------------------------ addresses

    @property
    def old_nodes(self) -> list[Address]:
        return [(h, p) for h in self.old_hosts for p in (MASTER_PORT, REPLICA_PORT)]

    @property
    def new_nodes(self) -> list[Address]:
        return [(h, p) for h in self.new_hosts for p in (MASTER_PORT, REPLICA_PORT)]

    def connection_string(self) -> str:
        """The new servers' OutSystems connection string (the master port of every new server)."""
        return ",".join(f"{h}:{MASTER_PORT}" for h in self.new_hosts) + f",password={self.password}"

    # ------------------------------------------------------------ talking to Redis

    def client(self, node: Address) -> redis.Redis:
        login = {"username": OPERATIONS_USER, "password": self.ops_password} \
            if self.ops_password and node[0] in self.new_hosts else {"password": self.password}
        return redis.Redis(node[0], node[1], **login, decode_responses=True, socket_timeout=5,
                           socket_connect_timeout=5)

    def call(self, node: Address, *args: object) -> object:
        c = self.client(node)
        try:
            return c.execute_command(*args)
        finally:
            c.close()

    def view(self, node: Address) -> tuple[health.ClusterNode, ...]:
        return health.parse_cluster_nodes(str(self.call(node, "CLUSTER", "NODES")), node[0])

    def myid(self, node: Address) -> str:
        return str(self.call(node, "CLUSTER", "MYID"))

    def info(self, node: Address, section: str) -> dict:
        c = self.client(node)
        try:
            return c.info(section)
        finally:
            c.close()

    def log_in_to_master(self, node: Address, *, master_is_7_0: bool) -> None:
        """How new `node` logs in to its master: to a 5.0 one (which knows no users) as `default` with the one
        password; to a 7.0 one as the replication user, as its auth include says (masteruser). Redis applies it
        at the link's next connection; a restarted node reads its include again: `join` sets it again."""
        if not self.ops_password:
            return  # a 7.0 stack from before the users: its replicas log in with the one password anyway
        config = f"CONFIG-{self.ops_password}"  # its name on the new servers (redis-auth: <COMMAND>-<secret>)
        user, auth = (REPLICATION_USER, replication_password(self.ops_password)) if master_is_7_0 \
            else ("", self.password)
        self.call(node, config, "SET", "masteruser", user)
        self.call(node, config, "SET", "masterauth", auth)

    def log_in_as_masters_need(self) -> None:
        """Every new node logs in to its master as that master needs: as the replication user to a new (7.0) one,
        or once it is a master itself; with the one password to an old (5.0) one. Idempotent: `promote` runs it
        first and at each failover, so a new node that restarted since `join` (and read its include again) syncs."""
        new_ids = {self.myid(node) for node in self.new_nodes}
        for node in self.new_nodes:
            me = next(n for n in self.view(node) if "myself" in n.flags)
            self.log_in_to_master(node, master_is_7_0=me.is_master or me.master_id in new_ids)

    def members(self) -> list[Address]:
        """Every node still in the cluster: the new ones, and the old ones not yet retired."""
        known = {n.address for n in self.view(self.new_nodes[0])} if self._joined() else set()
        return [n for n in self.old_nodes if f"{n[0]}:{n[1]}" in known] + self.new_nodes

    def _joined(self) -> bool:
        """The first new node knows an old one (not merely the new stack's own first cluster)."""
        old = {f"{h}:{p}" for h, p in self.old_nodes}
        try:
            return any(n.address in old for n in self.view(self.new_nodes[0]))
        except redis.RedisError:
            return False

    def wait(self, what: str, done: Callable[[], bool]) -> None:
        """Poll `done` until true; MigrationError naming `what` after wait_seconds (connection errors retry)."""
        deadline = time.monotonic() + self.wait_seconds
        last = ""
        while time.monotonic() < deadline:
            try:
                if done():
                    return
            except redis.RedisError as exc:
                last = f" (last error: {exc})"
            time.sleep(POLL)
        raise MigrationError(f"timed out after {self.wait_seconds:.0f}s waiting for {what}{last}")

    def _step(self, name: str, run: Callable[[], str]) -> Step:
        self.progress(f"[{len(self.steps) + 1}] {name} ...")
        started = time.monotonic()
        detail = run()
        step = Step(name, time.monotonic() - started, detail)
        self.steps.append(step)
        self.progress(f"    done in {step.seconds:.1f}s: {detail}")
        return step

    # ------------------------------------------------------------ the plan

    def member(self) -> Address:
        """A node that stays in the cluster: the first new node once joined (an old node may be retired by then),
        else the first old one."""
        return self.new_nodes[0] if self._joined() else self.old_nodes[0]

    def cluster_view(self) -> tuple[health.ClusterNode, ...]:
        return self.view(self.member())

    def old_masters(self) -> list[health.ClusterNode]:
        """The old servers' slot-holding masters still in the cluster, in slot order: before `promote`, master i
        moves to new server i."""
        old = {f"{h}:{p}" for h, p in self.old_nodes}
        return sorted((n for n in self.cluster_view() if n.is_master and n.slots and n.address in old),
                      key=lambda n: n.slots[0][0])

    def targets(self, masters: Sequence[health.ClusterNode]) -> dict[Address, str]:
        """new node -> id of the old master it replicates, so the ring comes out crossed after the failovers."""
        n = len(self.new_hosts)
        plan = {}
        for i, host in enumerate(self.new_hosts):
            plan[(host, MASTER_PORT)] = masters[i].id
            plan[(host, REPLICA_PORT)] = masters[follows(i, n)].id
        return plan

    # ------------------------------------------------------------ join

    def preflight(self) -> str:
        versions = {}
        for node in self.old_nodes + self.new_nodes:
            try:
                # The one password first, on both sides: replicas of either side log in with it (masterauth).
                shared = redis.Redis(node[0], node[1], password=self.password, socket_timeout=5,
                                     socket_connect_timeout=5)
                try:
                    shared.ping()
                finally:
                    shared.close()
            except redis.AuthenticationError as exc:
                raise MigrationError(f"{node[0]}:{node[1]}: password rejected; both stacks must share one "
                                     "password (set the new stack's redisPassword to the old one)") from exc
            except redis.RedisError as exc:
                raise MigrationError(f"{node[0]}:{node[1]} does not answer a plain Redis connection ({exc}); "
                                     "the new servers must run without TLS during the migration") from exc
            try:
                versions[node] = str(self.info(node, "server")["redis_version"])
            except redis.AuthenticationError as exc:
                raise MigrationError(f"{node[0]}:{node[1]}: the operations user refuses REDIS_OPS_PASSWORD; give "
                                     "the new stack's operations secret (its ops-password parameter)") from exc
        old_v = sorted({v for n, v in versions.items() if n in self.old_nodes})
        new_v = sorted({v for n, v in versions.items() if n in self.new_nodes})
        if any(not v.startswith("7.0.") for v in new_v):
            raise MigrationError(f"the new servers must run Redis 7.0; they run {', '.join(new_v)}")
        for node in self.new_nodes:
            # From CLUSTER NODES, not CONFIG GET: CONFIG has a secret name on the servers.
            if any("myself" in n.flags and n.hostname for n in self.view(node)):
                raise MigrationError(f"{node[0]}:{node[1]} sets cluster-announce-hostname; its bus "
                                     "extensions are newer than Redis 5.0 and may get it marked failed. Unset it.")
        masters = self.old_masters()
        if self._joined():
            # `promote` retires old nodes (each then knows only itself) and fails old masters over: past either,
            # `join` has nothing left to do, and its `meet` would wait for the retired nodes.
            retired = [f"{h}:{p}" for h, p in self.old_nodes if len(self.view((h, p))) == 1]
            if retired or len(masters) < len(self.new_hosts):
                raise MigrationError(f"`promote` has begun ({len(retired)} old node(s) retired, "
                                     f"{len(self.new_hosts) - len(masters)} old master(s) failed over); "
                                     "run `promote` again, not `join`")
        cinfo = health.parse_cluster_info(str(self.call(self.member(), "CLUSTER", "INFO")))
        if cinfo.get("cluster_state") != "ok":
            raise MigrationError("the old cluster is not cluster_state:ok; "
                                 "fix it first (python -m outsystems_redis.tools.health)")
        if self._joined() and any(m.id in {n.id for n in masters} for m in self.view(self.new_nodes[0])):
            return (f"already joined (old Redis {', '.join(old_v)}, new {', '.join(new_v)}); "
                    f"{len(masters)} old masters")
        if len(masters) != len(self.new_hosts):
            raise MigrationError(f"the old cluster has {len(masters)} masters with slots and {len(self.new_hosts)} "
                                 "new servers are given: migrate to the same server count, scale out afterwards")
        keys = {node: int(self.call(node, "DBSIZE")) for node in self.new_nodes}  # type: ignore[arg-type]
        if any(keys.values()):
            full = ", ".join(f"{h}:{p} ({k} keys)" for (h, p), k in keys.items() if k)
            raise MigrationError(f"new servers hold keys: {full}; they must be empty (never reset data here)")
        # The new stack formed its own cluster at first boot: empty, so it can be reset.
        reset = [node for node in self.new_nodes if len(self.view(node)) > 1]
        for node in reset:
            self.call(node, "CLUSTER", "RESET", "HARD")
        self.wait("the new servers to forget their own cluster",
                  lambda: all(len(self.view(node)) == 1 for node in self.new_nodes))
        return (f"old Redis {', '.join(old_v)}, new Redis {', '.join(new_v)}, one password, old cluster ok, "
                f"{len(masters)} masters, new servers empty"
                + (f"; reset the new stack's own empty cluster ({len(reset)} nodes)" if reset else ""))

    def meet(self) -> str:
        seed = self.old_nodes[0]
        met = 0
        old_ids = {n.id for n in self.view(seed)}
        for node in self.new_nodes:
            if not old_ids & {n.id for n in self.view(node)}:
                self.call(node, "CLUSTER", "MEET", seed[0], seed[1])
                met += 1
        everyone = self.old_nodes + self.new_nodes

        def all_know_all() -> bool:
            for node in everyone:
                view = self.view(node)
                if len(view) != len(everyone) or any(n.failing for n in view):
                    return False
            return True

        self.wait("every old and new node to know every other one (cluster bus gossip)", all_know_all)
        return f"{met} new node(s) met the cluster; all {len(everyone)} nodes know each other"

    def attach(self) -> str:
        plan = self.targets(self.old_masters())
        changed = 0
        for node, master_id in plan.items():
            self.log_in_to_master(node, master_is_7_0=False)
            me = next(n for n in self.view(node) if "myself" in n.flags)
            if me.master_id != master_id:
                self.call(node, "CLUSTER", "REPLICATE", master_id)
                changed += 1

        def synced() -> bool:
            for node in plan:
                rep = self.info(node, "replication")
                if rep.get("role") != "slave" or rep.get("master_link_status") != "up" \
                        or int(rep.get("master_sync_in_progress", 1)):
                    return False
            # Every node must see the new roles before a failover asks the masters for votes.
            for node in self.old_nodes + self.new_nodes:
                view = {n.address: n for n in self.view(node)}
                if any(view[f"{h}:{p}"].master_id != mid for (h, p), mid in plan.items()):
                    return False
            return True

        self.wait("the 7.0 replicas to finish their sync from the 5.0 masters", synced)
        keys = sum(int(self.info(node, "keyspace").get("db0", {}).get("keys", 0)) for node in plan)
        return (f"{changed} 7.0 node(s) set to replicate; {len(plan)} replicas in sync "
                f"({keys} keys on them: every key on two 7.0 nodes)")

    def join(self) -> list[Step]:
        self._step("preflight", self.preflight)
        self._step("meet: the 7.0 nodes join the 5.0 cluster", self.meet)
        self._step("attach: each 7.0 node replicates a 5.0 master", self.attach)
        return self.steps

    # ------------------------------------------------------------ promote

    def retire(self, node: Address) -> None:
        """Remove one old node: every other member forgets it, then it forgets the cluster and its data.

        RESET HARD rather than SHUTDOWN: if systemd restarted a shut-down node it would
        rejoin its 7.0 master by full sync, fail on the RDB version, and retry forever.
        """
        node_id = self.myid(node)
        for other in self.members():
            if other != node and any(n.id == node_id for n in self.view(other)):
                self.call(other, "CLUSTER", "FORGET", node_id)
        self.call(node, "CLUSTER", "RESET", "HARD")

    def retire_old_replicas(self) -> str:
        self.log_in_as_masters_need()
        # Every old master still holding slots (all of them, unless a promote stopped after a failover) keeps a
        # 7.0 replica in sync before any old node goes.
        view = self.cluster_view()
        for master in self.old_masters():
            followers = [node for node in self.new_nodes
                         if any(n.address == f"{node[0]}:{node[1]}" and n.master_id == master.id for n in view)]
            ups = [a for a in followers if self.info(a, "replication").get("master_link_status") == "up"]
            if not ups:
                raise MigrationError(f"old master {master.address} has no 7.0 replica in sync; run join again")
        # (An old master that a stopped run failed over but did not retire is a replica now, of a 7.0 master
        # that refuses it: it goes here too.)
        members = {f"{h}:{p}" for h, p in self.members()}
        replicas = [n for n in self.old_nodes if f"{n[0]}:{n[1]}" in members
                    and self.info(n, "replication").get("role") == "slave"]
        for node in replicas:
            self.retire(node)
        return f"retired {len(replicas)} 5.0 replica(s): {', '.join(f'{h}:{p}' for h, p in replicas) or 'none left'}"

    def fail_over(self) -> str:
        lines = []
        for host in self.new_hosts:
            new = (host, MASTER_PORT)
            new_id = self.myid(new)
            me = next(n for n in self.view(new) if "myself" in n.flags)
            old_id = me.master_id
            if me.is_master and me.slots:
                lines.append(f"{host}:{MASTER_PORT} already master")
                continue
            old_address = next((n.address for n in self.view(new) if n.id == old_id), "")
            old = next((a for a in self.old_nodes if f"{a[0]}:{a[1]}" == old_address), None)
            self.log_in_as_masters_need()
            self.wait(f"{host}:{MASTER_PORT}'s link to its 5.0 master",
                      lambda new=new: self.info(new, "replication").get("master_link_status") == "up")
            started = time.monotonic()
            # Default (not FORCE/TAKEOVER): the old master stops its clients until the
            # replica has every write, so no acknowledged session is lost.
            self.call(new, "CLUSTER", "FAILOVER")

            def everyone_agrees(new_id: str = new_id) -> bool:
                for node in self.members():
                    view = {n.id: n for n in self.view(node)}
                    if not (view[new_id].is_master and view[new_id].slots):
                        return False
                return True

            self.wait(f"{host}:{MASTER_PORT} to take over its slots (every node agreeing)", everyone_agrees)
            took = time.monotonic() - started
            self.log_in_as_masters_need()  # the 7.0 replica that followed the old master follows this one now
            if old is not None:
                # It now follows the 7.0 master, which refuses it PSYNC (or, on a 7.0 server from before the
                # users, would at best accept a partial resync): remove it at once.
                self.retire(old)
            lines.append(f"{host}:{MASTER_PORT} master in {took:.1f}s"
                         + (f", {old[0]}:{old[1]} retired" if old else ""))
        self.log_in_as_masters_need()  # (a re-run after a stop between a failover and the line above)
        return "; ".join(lines)

    def ring_ok(self) -> bool:
        """Crossed 7.0 ring: master on every new server's 7000, the replica on server i follows server i+1."""
        ids = {node: self.myid(node) for node in self.new_nodes}
        n = len(self.new_hosts)
        for node in self.new_nodes:
            if health.parse_cluster_info(str(self.call(node, "CLUSTER", "INFO"))).get("cluster_state") != "ok":
                return False
            view = {m.id: m for m in self.view(node)}
            if len(view) != len(self.new_nodes) or any(m.failing for m in view.values()):
                return False
            for i, host in enumerate(self.new_hosts):
                master = view[ids[(host, MASTER_PORT)]]
                replica = view[ids[(host, REPLICA_PORT)]]
                if not (master.is_master and master.slots):
                    return False
                if replica.master_id != ids[(self.new_hosts[follows(i, n)], MASTER_PORT)]:
                    return False
        return all(self.info(node, "replication").get("master_link_status") == "up"
                   for node in self.new_nodes if node[1] == REPLICA_PORT)

    def wait_ring(self) -> str:
        self.wait("the crossed ring of 7.0 nodes with no 5.0 node left", self.ring_ok)
        return (f"{len(self.new_hosts)} 7.0 masters hold all {health.SLOTS} slots; the replica on server i "
                "follows the master on server i+1; no 5.0 node known")

    def check_health(self) -> str:
        facts, findings = health.run_check(self.new_nodes, self.password, True, "7.0", wait=60, interval=1)
        self.health_report = health.report(facts, findings)
        if health.verdict(findings) != "healthy":
            raise MigrationError(f"health check not green on the 7.0 servers:\n{self.health_report}")
        return "HEALTHY on Redis 7.0"

    def promote(self) -> list[Step]:
        self._step("retire the 5.0 replicas (each 5.0 master keeps two 7.0 replicas)", self.retire_old_replicas)
        self._step("fail over each 5.0 master to its 7.0 replica, then retire it", self.fail_over)
        self._step("wait for the crossed 7.0 ring", self.wait_ring)
        self._step("health check, expecting Redis 7.0", self.check_health)
        return self.steps


def step_table(steps: Sequence[Step]) -> str:
    width = max(len(s.name) for s in steps)
    lines = [f"  {i + 1}. {s.name:<{width}}  {s.seconds:6.1f}s" for i, s in enumerate(steps)]
    return "\n".join(lines + [f"  {'total':>{width + 3}}  {sum(s.seconds for s in steps):6.1f}s"])


# ---------------------------------------------------------------- rehearsal


OLD_PREFIX, NEW_PREFIX = "127.5.0.", "127.7.0."  # apart from a rehearsal (127.0.0.x) and the tests (127.1xx.x.x)


@dataclass
class RehearsalResult:
    steps: list[Step]
    acked: int
    reads: int
    errors: list[str]
    wrong: list[str]
    problems: list[str]  # sessions missing, changed or with a lost/longer TTL afterwards
    switch_ok: bool
    healthy: bool
    report: str


def ttl_problems(lo, keys: Sequence[str], written_since: float) -> list[str]:
    """Every session's two keys keep a TTL no longer than it was given and no shorter than time allows."""
    from outsystems_redis.tools.rehearsal import SESSION_TTL, _cluster_client

    floor_ms = (SESSION_TTL - (time.monotonic() - written_since) - 5) * 1000
    client = _cluster_client(lo)
    problems = []
    try:
        for data in keys:
            for key in (data, data[: -len("_Data")] + "_Internal"):
                pttl = client.pttl(key)
                if not floor_ms <= pttl <= SESSION_TTL * 1000:
                    problems.append(f"{key}: PTTL {pttl} ms, expected {floor_ms:.0f}..{SESSION_TTL * 1000}")
    finally:
        client.close()
    return problems


def switch_check(lo_new, keys: Sequence[str]) -> bool:
    """A front-end restarted with the new connection string (only new servers as seeds) reads old sessions."""
    from redis.cluster import ClusterNode, RedisCluster

    from outsystems_redis.tools.rehearsal import SESSION_BYTES, SESSION_TTL, session_intact
    from outsystems_redis.tools.sessions import SessionStore

    client = RedisCluster(startup_nodes=[ClusterNode(p.host, p.port) for p in lo_new.topology.masters],
                          password=lo_new.password, decode_responses=True, socket_timeout=2)
    try:
        store = SessionStore(client, timeout=SESSION_TTL)
        return all(session_intact(store, k, SESSION_BYTES) for k in keys)
    finally:
        client.close()


class _Stopped(Exception):
    """The rehearsal's stand-in for a `promote` that stopped: a lost connection, a closed laptop."""


@dataclass
class _StopsPartway(Migration):
    """A `promote` that stops just before it retires an old master (port 7000), once it has retired `retires` of
    them; with `retires` -1, just before its first failover (the old replicas retired, every old master still
    holding its slots)."""

    retires: int = 0

    def call(self, node: Address, *args: object) -> object:
        if self.retires < 0 and args[:2] == ("CLUSTER", "FAILOVER"):
            raise _Stopped(f"stopped before failing over to {node[0]}:{node[1]}")
        return super().call(node, *args)

    def retire(self, node: Address) -> None:
        if node[1] == MASTER_PORT:
            if self.retires == 0:
                raise _Stopped(f"stopped before retiring {node[0]}:{node[1]}")
            self.retires -= 1
        super().retire(node)


def rehearse(state_dir: Path, servers: int = 3, *, old_hosts: list[str] | None = None,
             new_hosts: list[str] | None = None, progress: Callable[[str], None] = print,
             keep: bool = False, stops: int = 0) -> RehearsalResult:
    """A 5.0.6 cluster under live sessions becomes a 7.0.15 cluster; the result says what the client saw.
    `stops`: `promote` stops that many times, and is run again from the start each time, as an operator would:
    first just before its first failover, then each time just before it retires an old master (right after that
    master's failover)."""
    from outsystems_redis.tools.loopback import Loopback, loopback_hosts
    from outsystems_redis.tools.rehearsal import SessionTraffic, verify_sessions

    old_hosts = old_hosts or loopback_hosts(servers, OLD_PREFIX)
    new_hosts = new_hosts or loopback_hosts(servers, NEW_PREFIX)
    old = Loopback(state_dir / "old-5.0", servers=servers, version="5.0", hosts=old_hosts)
    # The new stack is given the old stack's password (redisPassword), as on AWS.
    new = Loopback(state_dir / "new-7.0", servers=servers, version="7.0", hosts=new_hosts, password=old.password)
    traffic = None
    try:
        started = time.monotonic()
        old.start()
        old.bootstrap()
        progress(f"old stack: Redis {old_version(old)} cluster of {servers} servers ({', '.join(old_hosts)}) "
                 f"up in {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        new.start()
        new.bootstrap()  # what the new stack's first boot does; preflight resets this empty cluster
        progress(f"new stack: Redis {old_version(new)} servers ({', '.join(new_hosts)}) booted and formed their "
                 f"own empty cluster in {time.monotonic() - started:.1f}s")
        traffic = SessionTraffic(old, max_seconds=300).start()
        written_since = time.monotonic()
        time.sleep(2)  # sessions that exist before the migration starts
        progress(f"session traffic on: 20 KB {{guid_sessionid}}_Data + _Internal, TTL 3600 s, written and read "
                 f"continuously ({len(traffic.acked)} sessions so far)")
        mig = Migration(old_hosts, new_hosts, old.password, progress=progress, ops_password=new.ops_secret)
        mig.join()
        before_switch = list(traffic.acked)
        started = time.monotonic()
        switch_ok = switch_check(new, before_switch)
        mig.steps.append(Step("switch the connection string to the new servers", time.monotonic() - started,
                              "a client seeded only with the new servers reads every session so far"))
        progress(f"[{len(mig.steps)}] connection string -> {mig.connection_string().split(',password=')[0]},"
                 f"password=... : a client seeded with it read {len(before_switch)} sessions: "
                 f"{'ok' if switch_ok else 'FAILED'}")
        for run in range(stops + 1):
            again = dict(old_hosts=old_hosts, new_hosts=new_hosts, password=old.password, progress=progress,
                         ops_password=new.ops_secret, steps=mig.steps)
            runner = _StopsPartway(**again, retires=run - 1) if run < stops else Migration(**again)
            started = time.monotonic()
            try:
                runner.promote()
            except _Stopped as stopped:
                mig.steps.append(Step(f"promote {stopped}", time.monotonic() - started, "run it again"))
                progress(f"[{len(mig.steps)}] promote {stopped}: running it again")
                try:  # `join` by mistake instead: it must refuse, and change nothing
                    Migration(**{**again, "steps": []}).preflight()
                except MigrationError as refused:
                    progress(f"    (join would refuse here: {refused})")
                    continue
                raise MigrationError("join's preflight did not refuse a migration whose promote has begun") from None
            mig.health_report = runner.health_report
            break
        time.sleep(1)  # sessions written on the finished 7.0 cluster
        traffic.stop()
        old.stop(timeout=5)  # retiring the old stack
        problems = verify_sessions(new, traffic.acked) + ttl_problems(new, traffic.acked, written_since)
        return RehearsalResult(mig.steps, len(traffic.acked), traffic.reads, traffic.errors, traffic.wrong,
                               problems, switch_ok, True, mig.health_report)
    finally:
        if traffic is not None:
            traffic.stop()
        if not keep:
            old.stop(timeout=5)
            new.stop(timeout=5)


def old_version(lo) -> str:
    return str(lo.client(lo.processes[0]).info("server")["redis_version"])


def print_result(result: RehearsalResult) -> int:
    print("\nsteps:")
    print(step_table(result.steps))
    print(f"\nsessions acknowledged during the migration: {result.acked} ({result.reads} reads); "
          f"afterwards all readable on 7.0 with their content and TTL: "
          f"{'yes' if not result.problems else f'NO, {len(result.problems)} problem(s)'}")
    print(f"errors seen by the client: {len(result.errors)}; wrong answers: {len(result.wrong)}")
    for line in (result.errors + result.wrong + result.problems)[:5]:
        print(f"  {line}")
    print(result.report)
    ok = result.healthy and result.switch_ok and not result.problems and not result.wrong
    return 0 if ok else 1


# ---------------------------------------------------------------- CLI


# Each verb, what it does, and an example: the --help text (docs/upgrades-and-migration.md: Migrating to Redis 7.0).
_EXAMPLE_IPS = "--from 172.31.129.10,172.31.130.10,172.31.131.10 --to 172.31.132.10,172.31.133.10,172.31.134.10"
VERBS = {
    "join": ("the new 7.0 servers join the running 5.0 cluster as replicas (nothing is lost by stopping here)",
             f"join {_EXAMPLE_IPS}"),
    "promote": ("fail each 5.0 master over to its 7.0 replica, retire the 5.0 servers, check 7.0 is healthy",
                f"promote {_EXAMPLE_IPS}"),
    "rehearse": ("both steps on loopback under live sessions, with no AWS", "rehearse --servers 3"),
}


def server_ips(text: str) -> list[str]:
    """argparse's type for --from and --to: the servers' private IPv4 addresses, comma-separated, no ports."""
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    for host in hosts:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{host!r} is not an IPv4 address (give the servers' private IPs, "
                                             "without ports: the tool adds 7000 and 7001)") from None
    if len(hosts) < 3:
        raise argparse.ArgumentTypeError(f"{len(hosts)} address(es): a cluster has at least 3 servers")
    if len(set(hosts)) != len(hosts):
        raise argparse.ArgumentTypeError("an address is listed twice")
    return hosts


def seconds(text: str) -> float:
    """argparse's type for --wait: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number of seconds above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m outsystems_redis.tools.migration", "Rolling migration of a Redis 5.0 cluster onto "
                       "Redis 7.0 servers.", VERBS, "Password from REDIS_PASSWORD, the new stack's operations secret "
                       "from REDIS_OPS_PASSWORD (join, promote).")
    p.add_argument("--from", dest="old", type=server_ips, help="old (5.0) server IPs, comma-separated, in server order")
    p.add_argument("--to", dest="new", type=server_ips, help="new (7.0) server IPs, comma-separated, in server order")
    p.add_argument("--servers", type=int, default=3, help="rehearse: server count (default 3)")
    p.add_argument("--stops", type=int, default=0,
                   help="rehearse: stop `promote` this many times and run it again: before its first failover, "
                        "then before it retires each 5.0 master (default 0)")
    p.add_argument("--state-dir", type=Path, help="rehearse: where processes keep their files (default: a temp dir)")
    p.add_argument("--wait", type=seconds, default=WAIT_SECONDS, help="seconds each step may take (default 120)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "rehearse":
        if args.servers < 3:
            parser.error("rehearse: a cluster has at least 3 servers")
        if not 0 <= args.stops <= args.servers:
            parser.error(f"rehearse: --stops from 0 to {args.servers} (promote stops before its first failover, "
                         "then before retiring each 5.0 master but the last)")
        state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="migration-"))
        started = time.monotonic()
        print(f"rehearsing the migration of {args.servers} servers from Redis 5.0 to 7.0 on loopback "
              f"(state in {state_dir})")
        try:
            result = rehearse(state_dir.resolve(), args.servers, stops=args.stops)
        except (MigrationError, OSError, RuntimeError, TimeoutError) as exc:
            print(f"rehearsal failed: {exc}")
            return 1
        finally:
            if args.state_dir is None:
                shutil.rmtree(state_dir, ignore_errors=True)
        code = print_result(result)
        print(f"rehearsal in {time.monotonic() - started:.1f}s")
        return code
    if not args.old or not args.new:
        parser.error(f"{args.command}: give --from OLD_IPS and --to NEW_IPS")
    # New server i takes old master i's slots: one new server for each old one, none of them the same.
    if len(args.old) != len(args.new):
        parser.error(f"--from and --to: as many new servers as old ones (got {len(args.old)} and {len(args.new)})")
    if set(args.old) & set(args.new):
        parser.error(f"--from and --to: {sorted(set(args.old) & set(args.new))[0]} is in both")
    password = os.environ.get("REDIS_PASSWORD")
    if not password:
        parser.error("set REDIS_PASSWORD (the password both stacks share)")
    ops_password = os.environ.get("REDIS_OPS_PASSWORD")
    if not ops_password:
        parser.error("set REDIS_OPS_PASSWORD (the new stack's operations secret, "
                     "/outsystems-redis/<new stack>/ops-password): Redis 7.0's front-ends' password cannot administer")
    mig = Migration(args.old, args.new, password, wait_seconds=args.wait, ops_password=ops_password)
    try:
        if args.command == "join":
            mig.join()
            print(f"\njoined. Now set every front-end's connection string to\n  "
                  f"{mig.connection_string().split(',password=')[0]},password=<the same password>\n"
                  "then run `promote`.")
        else:
            mig.promote()
            print(mig.health_report)
    except (MigrationError, redis.RedisError) as exc:
        print(f"{args.command} stopped: {exc}\n(every step checks what is done: fix the cause and run it again)")
        return 1
    print("\nsteps:\n" + step_table(mig.steps))
    return 0


if __name__ == "__main__":
    from outsystems_redis.tools.cli import exit_with

    exit_with(main)
