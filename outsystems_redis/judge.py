"""The judge of the OutSystems session store's health: facts about Redis in, findings and a verdict out.

Pure functions from parsed INFO / CLUSTER NODES data to findings, unit-tested without Redis.
Two programs run them:
- the health check on an operator's machine (outsystems_redis/tools/health: it gathers the
  facts with redis-py, calls `judge`, prints the report);
- redis-observe on every server (outsystems_redis/server_files/metrics_agent.py): the functions it
  imports from here are copied into the file the servers run, by name and in this
  file's order (outsystems_redis/render/metrics.py), so the metrics are this judgement,
  never a second one. Hence: Python 3.8+ standard library and outsystems_redis/ only.

A "server" is an IP address. In a healthy cluster each server holds exactly one
master, and no replica shares a server with its master (the crossed ring of
outsystems_redis/topology.py), so losing one whole server never loses a slot.
"""

from __future__ import annotations

import re
import shlex
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from outsystems_redis.parameters import OPERATIONS_USER

SLOTS = 16384
OK, WARN, FAIL = "OK", "WARN", "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}
MEMORY_WARN, MEMORY_FAIL = 0.80, 0.95  # share of maxmemory; at 100% session writes fail or evict
LAG_WARN_BYTES = 1024 * 1024
SLOT_BALANCE_TOLERANCE = 0.05  # of the fair share 16384/N: a finished rebalance is within 1-2 slots
# Servers read their certificate at boot; `pulumi up` renews it in Parameter Store 30 days
# before expiry, so a served certificate this close to its end was never reloaded.
CERT_WARN_DAYS = 21
# The front-ends' password does not reach CONFIG: the server's scripts send it by the secret name in its auth
# include (servers created before the secret names keep the plain CONFIG).
CONFIG_BY_NAME = "CONFIG by its name in the server's auth include, AUTH_FILE in /etc/redis/auth.env"
# Fetch renewed TLS files without restarting redis-auth.service: every Redis unit
# Requires= it, so a restart of it would restart Redis too. Servers created before redis-auth's programs
# moved to the bucket carry redis-fetch-tls in their user data; later ones run it through the launcher.
# The units' own PATH (render.systemd.SEARCH_PATH), where a server has its AWS CLI (/usr/local/bin: the 24.04
# wheel; /usr/bin: apt's), and /snap/bin, where 24.04 servers created before the wheel have it.
AWS_CLI_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"
FETCH_TLS = ("sudo sh -c 'if [ -x /usr/local/sbin/redis-fetch-tls ]; then "
             "systemd-run --wait --pipe -p EnvironmentFile=/etc/redis/auth.env "
             f"--setenv=PATH={AWS_CLI_PATH} /usr/local/sbin/redis-fetch-tls; "
             "else systemd-run --wait --pipe -p EnvironmentFile=/etc/redis/auth.env "
             f"--setenv=PATH={AWS_CLI_PATH} --setenv=STATE_DIR=/var/lib/outsystems-redis "
             "--setenv=TOOLS_KEY=tools/redis-fetch-tls.sh /usr/local/sbin/redis-run-fetched; fi'")


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Finding:
    severity: str  # OK | WARN | FAIL
    check: str  # short name: reachable, cluster-state, slots, replicas, crossed, balance, ...
    message: str
    server: str | None = None  # the IP the finding is about, when there is one
    node: str | None = None  # HOST:PORT, when there is one
    fix: str | None = None  # the command that fixes it, when there is one


@dataclass(frozen=True)
class ClusterNode:
    """One line of CLUSTER NODES."""

    id: str
    host: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    link: str
    slots: tuple[tuple[int, int], ...]
    hostname: str = ""  # 7.0's cluster-announce-hostname, after the bus port ("ip:port@cport,hostname")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})

    @property
    def slot_count(self) -> int:
        return sum(b - a + 1 for a, b in self.slots)


@dataclass
class NodeFacts:
    """What one listed process told us, or why it could not."""

    host: str
    port: int
    error: str | None = None
    info: dict = field(default_factory=dict)
    cluster_info: dict[str, str] = field(default_factory=dict)
    cluster_nodes: tuple[ClusterNode, ...] = ()
    cert_expires: float | None = None  # notAfter of the served TLS certificate (epoch seconds)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Tls:
    """How the servers were reached when they speak TLS only (the `tls` stack key). No CA: the system's trust store.

    The judge reads it for its findings and fixes; outsystems_redis/tools/health/gather.py turns it into redis-py's
    arguments (redis_tls_kwargs).
    """

    ca_file: str | None = None  # PEM file of the stack's CA
    ca_data: str | None = None  # the same PEM as text (the post-deploy check gets it from its environment)

    @property
    def cli_args(self) -> str:
        """What a printed redis-cli fix command needs to reach the same servers."""
        return f"--tls --cacert {self.ca_file or 'redis-ca.crt'}"


@dataclass
class Facts:
    cluster: bool
    expected_version: str
    nodes: list[NodeFacts]
    round_trip_error: str | None = None
    round_trip_ms: float | None = None
    tls: Tls | None = None


# ---------------------------------------------------------------- parsing (pure)


def parse_cluster_nodes(text: str, self_host: str | None = None) -> tuple[ClusterNode, ...]:
    """Parse CLUSTER NODES (5.0 and 7.0 formats). `self_host` fills an empty address on `myself`."""
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        # 7.0 may append ",hostname". nodes.conf of 7.2 always has it (empty when unset), then key=value
        # fields (",shard-id=..."); clients are shown at most the hostname today, but a key=value is never one.
        addr, *extra = parts[1].split(",")
        hostname = extra[0] if extra and "=" not in extra[0] else ""
        host, _, port = addr.split("@")[0].rpartition(":")
        flags = frozenset(parts[2].split(","))
        if not host and "myself" in flags and self_host:
            host = self_host
        slots = []
        for token in parts[8:]:
            if token.startswith("["):  # a slot being migrated/imported, not owned
                continue
            a, _, b = token.partition("-")
            slots.append((int(a), int(b or a)))
        nodes.append(
            ClusterNode(
                id=parts[0], host=host, port=int(port or 0), flags=flags,
                master_id=None if parts[3] == "-" else parts[3], link=parts[7], slots=tuple(slots),
                hostname=hostname,
            )
        )
    return tuple(nodes)


def parse_info(text: str) -> dict[str, str]:
    """INFO's `field:value` lines, as the servers' metrics agent and the direct health check both read them:
    values stay text, and the judging functions convert what they compare."""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def parse_cluster_info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


def slot_ranges(slots: Iterable[int]) -> str:
    """{0,1,2,5} -> "0-2,5": short enough to print."""
    ordered = sorted(slots)
    out: list[str] = []
    start = prev = None
    for s in ordered + [None]:
        if start is not None and s != prev + 1:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = None
        if s is not None and start is None:
            start = s
        prev = s
    return ",".join(out)


# ---------------------------------------------------------------- judging (pure)


# Redis drops a manual failover that gets no majority within 5 s (masters refuse votes for a while
# after an election), and says so only in its log.
FAILOVER_AGAIN = "; run again if it is still a replica 10 s later"


def _cli(node: str, command: str) -> str:
    """A fix command that keeps the password off the command line (redis-cli reads REDISCLI_AUTH).

    Addresses and node ids come from what Redis reports (CLUSTER NODES), which a compromised node controls:
    each is quoted (and stripped of characters no address has), so pasting the line runs redis-cli and
    nothing else.
    """
    host, _, port = (_shown(part) for part in node.rpartition(":"))
    return f"{PASSWORD_LOGIN} -h {shlex.quote(host)} -p {shlex.quote(port)} {command}"


# What an administrative fix logs in with: the password on Redis 5.0, which has no users; on 7.0 the operations
# user (its password is the stack's operations secret), as the front-ends' user cannot administer.
PASSWORD_LOGIN = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli'
OPERATIONS_LOGIN = f'REDISCLI_AUTH="$REDIS_OPS_PASSWORD" redis-cli --user {OPERATIONS_USER}'


def _users_fix(facts: Facts, finding: Finding) -> Finding:
    """A printed redis-cli fix for a process of a Redis with users (7.0) logs in as the operations user. The
    process's own version decides (a 5.0 and a 7.0 half of one cluster during a migration); one the facts do not
    list is taken to run what the listed processes run."""
    if not finding.fix or PASSWORD_LOGIN not in finding.fix:
        return finding
    versions = {n.address: str(n.info["redis_version"]) for n in facts.nodes if n.info.get("redis_version")}
    version = versions.get(finding.node or "") or max(versions.values(), default="5", key=_major)
    if _major(version) < 6:
        return finding
    return replace(finding, fix=finding.fix.replace(PASSWORD_LOGIN, OPERATIONS_LOGIN))


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _shown(text: str) -> str:
    """A reported address or id as a fix line shows it: only characters an address or id has (no quote,
    space, newline or shell character that could end the argument or the comment)."""
    return re.sub(r"[^0-9A-Za-z.:\[\]_-]", "?", text)


def check_reachable(facts: Facts) -> list[Finding]:
    """One finding per distinct reason, so a wrong password reads as one line, not six."""
    out = []
    by_reason: dict[str, list[NodeFacts]] = {}
    for n in facts.nodes:
        if n.error:
            by_reason.setdefault(n.error, []).append(n)
    for why, nodes in by_reason.items():
        hosts = sorted({n.host for n in nodes})
        where = f"server {hosts[0]}" if len(hosts) == 1 else "servers " + ", ".join(hosts)
        out.append(Finding(FAIL, "reachable", f"{where}: {', '.join(n.address for n in nodes)}: {why}",
                           hosts[0] if len(hosts) == 1 else None, nodes[0].address if len(nodes) == 1 else None))
    up = [n.address for n in facts.nodes if not n.error]
    if up:
        out.append(Finding(OK, "reachable", f"{len(up)} of {len(facts.nodes)} processes answer and accept "
                                            "the password"))
    return out


def check_version(facts: Facts) -> list[Finding]:
    """The stack pins a major.minor; another line runs untested config and may differ in cluster behaviour."""
    out = []
    for n in facts.nodes:
        if n.error:
            continue
        running = str(n.info.get("redis_version", "?"))
        if running.split(".")[:2] == facts.expected_version.split(".")[:2]:
            out.append(Finding(OK, "version", f"{n.address} runs Redis {running}", n.host, n.address))
        else:
            out.append(Finding(
                WARN, "version",
                f"{n.address} runs Redis {running}, the stack pins {facts.expected_version}",
                n.host, n.address, "reinstall the pinned redis-server package on this server (see the platform key)",
            ))
    return out


def memory_share(info: Mapping) -> float | None:
    """used_memory / maxmemory of one process's INFO; None without maxmemory (also a metric, see metrics_agent)."""
    limit = int(info.get("maxmemory", 0))
    return int(info.get("used_memory", 0)) / limit if limit else None


def check_memory(facts: Facts) -> list[Finding]:
    """Sessions live in memory: at maxmemory, writes fail (noeviction) or sessions vanish (eviction)."""
    out = []
    for n in facts.nodes:
        if n.error:
            continue
        used, limit = int(n.info.get("used_memory", 0)), int(n.info.get("maxmemory", 0))
        mib = used / 2**20
        share = memory_share(n.info)
        if share is None:
            out.append(Finding(
                WARN, "memory", f"{n.address} uses {mib:.1f} MiB with no maxmemory: it can grow until the OS "
                "kills it", n.host, n.address,
                _cli(n.address, "CONFIG SET maxmemory <bytes>  (and in redis.conf; " + CONFIG_BY_NAME + ")"),
            ))
            continue
        text = f"{n.address} uses {mib:.1f} MiB of {limit / 2**20:.0f} MiB maxmemory ({share:.0%})"
        severity = FAIL if share >= MEMORY_FAIL else WARN if share >= MEMORY_WARN else OK
        out.append(Finding(severity, "memory", text, n.host, n.address,
                           None if severity == OK else "add servers (scale out) or a larger instance type"))
    return out


def check_mode(facts: Facts) -> list[Finding]:
    """A cluster check against a plain server (or the reverse) is a wiring mistake; say so in one line."""
    out = []
    for n in facts.nodes:
        if n.error:
            continue
        enabled = str(n.info.get("cluster_enabled", "0")) == "1"
        if facts.cluster and not enabled:
            out.append(Finding(FAIL, "cluster-mode", f"{n.address} is not a cluster node (cluster_enabled:0)",
                               n.host, n.address, "check redis.conf has `cluster-enabled yes`, or drop --cluster"))
        elif not facts.cluster and enabled:
            out.append(Finding(FAIL, "cluster-mode", f"{n.address} is a cluster node: check it with --cluster",
                               n.host, n.address))
    return out


def check_tls(facts: Facts, now: float | None = None) -> list[Finding]:
    """Say that TLS was checked, and warn about a served certificate close to its end."""
    up = [n for n in facts.nodes if not n.error]
    if facts.tls is None or not up:
        return []
    now = time.time() if now is None else now
    out = []
    for n in up:
        if n.cert_expires is None or n.cert_expires - now > CERT_WARN_DAYS * 86400:
            continue
        days = (n.cert_expires - now) / 86400
        out.append(Finding(
            WARN, "tls", f"{n.address} serves a TLS certificate that expires in {days:.0f} days "
            f"({time.strftime('%Y-%m-%d', time.gmtime(n.cert_expires))}): Redis reads it at start only",
            n.host, n.address,
            f"pulumi up (renews it in Parameter Store), then on server {n.host}: {FETCH_TLS} "
            f"&& " + _cli(n.address, "CONFIG SET tls-cert-file /etc/redis/tls/server.crt "
                                     "tls-key-file /etc/redis/tls/server.key  (" + CONFIG_BY_NAME + ")"),
        ))
    ca = facts.tls.ca_file or ("the CA given in the environment" if facts.tls.ca_data else "the system trust store")
    out.append(Finding(OK, "tls", f"{len(up)} of {len(facts.nodes)} processes answer over TLS with a certificate "
                                  f"that {ca} trusts, naming the address connected to"))
    return out


def _tls_fix(facts: Facts, finding: Finding) -> Finding:
    """Printed redis-cli commands must reach a TLS-only server too."""
    if facts.tls is None or not finding.fix or "redis-cli " not in finding.fix:
        return finding
    return replace(finding, fix=finding.fix.replace("redis-cli ", f"redis-cli {facts.tls.cli_args} "))


def check_round_trip(facts: Facts) -> list[Finding]:
    if facts.round_trip_error:
        return [Finding(FAIL, "session", f"session round-trip failed: {facts.round_trip_error}")]
    if facts.round_trip_ms is None:
        return []
    return [Finding(OK, "session", f"session round-trip (the provider's scripts: lock, write, read, TTL, remove) "
                                   f"in {facts.round_trip_ms:.0f} ms")]


def reference_view(facts: Facts) -> tuple[ClusterNode, ...]:
    """The cluster as most reachable nodes see it (ties: the first listed node's view)."""
    views = [n.cluster_nodes for n in facts.nodes if not n.error and n.cluster_nodes]
    if not views:
        return ()
    counts = Counter(_slot_map(v) for v in views)
    best = max(counts.values())
    return next(v for v in views if counts[_slot_map(v)] == best)


def _slot_map(view: Sequence[ClusterNode]) -> tuple:
    return tuple(sorted((n.address, n.slots) for n in view if n.is_master and n.slots))


def server_order(facts: Facts, view: Sequence[ClusterNode]) -> list[str]:
    """Servers (IPs) in the order the operator listed them, then any others the cluster knows."""
    order: list[str] = []
    for host in [n.host for n in facts.nodes] + sorted(n.host for n in view if n.host):
        if host not in order:
            order.append(host)
    return order


def check_cluster_state(facts: Facts) -> list[Finding]:
    out = []
    for n in facts.nodes:
        if n.error or not n.cluster_info:
            continue
        state = n.cluster_info.get("cluster_state", "?")
        known = n.cluster_info.get("cluster_known_nodes", "?")
        if state == "ok":
            out.append(Finding(OK, "cluster-state", f"{n.address} reports cluster_state:ok", n.host, n.address))
        elif known == "1":
            out.append(Finding(FAIL, "cluster-state", f"{n.address} has not joined a cluster (knows only itself)",
                               n.host, n.address, "run the bootstrap script, or redis-cli --cluster add-node"))
        else:
            out.append(Finding(FAIL, "cluster-state", f"{n.address} reports cluster_state:{state}",
                               n.host, n.address))
    return out


def serving_masters(view: Sequence[ClusterNode]) -> list[ClusterNode]:
    """Masters that own slots and are not flagged failing: what serves sessions (also the SlotsServed metric)."""
    return [m for m in view if m.is_master and m.slots and not m.failing]


def check_slots(view: Sequence[ClusterNode]) -> list[Finding]:
    """All 16384 slots must be owned by a master that is up, or sessions hashed there fail."""
    if not view:
        return []
    owned: set[int] = set()
    out = []
    for m in view:
        if not m.is_master or not m.slots:
            continue
        ranges = set()
        for a, b in m.slots:
            ranges.update(range(a, b + 1))
        owned |= ranges
        if m.failing:
            out.append(Finding(
                FAIL, "slots", f"master {m.address} is down ({','.join(sorted(m.flags & {'fail', 'fail?'}))}) and "
                f"still owns {m.slot_count} slots ({slot_ranges(ranges)}): sessions there are unavailable",
                m.host, m.address, f"start Redis on server {m.host} again (its replica did not take over)",
            ))
    missing = set(range(SLOTS)) - owned
    if missing:
        any_up = next((m.address for m in view if not m.failing), None)
        out.append(Finding(
            FAIL, "slots", f"{len(missing)} of {SLOTS} slots have no master ({slot_ranges(missing)})",
            fix=(f'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --cluster fix {shlex.quote(_shown(any_up))}'
                 if any_up else None),
        ))
    if not out:
        out.append(Finding(OK, "slots", f"all {SLOTS} slots are served by masters that are up"))
    return out


def check_nodes_up(view: Sequence[ClusterNode]) -> list[Finding]:
    out = []
    for n in view:
        if n.failing and not (n.is_master and n.slots):  # masters with slots are reported by check_slots
            role = "master" if n.is_master else "replica"
            out.append(Finding(FAIL, "nodes-up", f"{role} {n.address} is marked {','.join(sorted(n.flags))} "
                                                 "by the cluster", n.host, n.address,
                               f"start Redis on server {n.host} again"))
    return out


def check_replicas(view: Sequence[ClusterNode]) -> list[Finding]:
    """Every master needs a working replica on another server, or one lost server loses sessions."""
    out = []
    masters = serving_masters(view)
    for m in masters:
        replicas = [r for r in view if r.master_id == m.id and not r.failing]
        crossed = [r for r in replicas if r.host != m.host]
        if not replicas:
            out.append(Finding(FAIL, "replicas", f"master {m.address} has no working replica: if server {m.host} "
                                                 f"is lost, its {m.slot_count} slots are lost",
                               m.host, m.address))
        elif not crossed:
            out.append(Finding(FAIL, "replicas", f"master {m.address} has replicas only on its own server",
                               m.host, m.address))
        else:
            names = ", ".join(r.address for r in crossed)
            out.append(Finding(OK, "replicas", f"master {m.address} is replicated to {names}", m.host, m.address))
    return out


def check_crossed(view: Sequence[ClusterNode], servers: Sequence[str]) -> list[Finding]:
    """No replica on the same server as its master (the whole point of the crossed ring)."""
    by_id = {n.id: n for n in view}
    out = []
    for r in view:
        m = by_id.get(r.master_id or "")
        if r.is_master or m is None or r.host != m.host:
            continue
        fix = None
        target = ring_master(view, servers, r.host)
        if target is not None:
            fix = (_cli(r.address, f"CLUSTER REPLICATE {shlex.quote(target.id)}")
                   + f"   # follow {_shown(target.address)} instead")
        out.append(Finding(
            FAIL, "crossed", f"server {r.host}: replica {r.address} follows master {m.address} on the same server; "
            f"losing server {r.host} loses both copies of its slots", r.host, r.address, fix,
        ))
    if not out and any(not n.is_master for n in view):
        out.append(Finding(OK, "crossed", "no replica shares a server with its master"))
    return out


def ring_master(view: Sequence[ClusterNode], servers: Sequence[str], host: str) -> ClusterNode | None:
    """The master a replica on `host` should follow: the one on the next server round the ring."""
    from outsystems_redis.topology import follows  # plain Python, no pulumi

    if host not in servers or len(servers) < 2:
        return None
    target_host = servers[follows(servers.index(host), len(servers))]
    masters = [m for m in view if m.is_master and m.host == target_host and not m.failing]
    return min(masters, key=lambda m: m.port) if masters else None


def check_balance(view: Sequence[ClusterNode], servers: Sequence[str]) -> list[Finding]:
    """Each server should hold exactly one master. After a failover a server holds two; WARN with the fix.

    The fix: on a server with no master, find its replica whose master sits on an
    overloaded server and run CLUSTER FAILOVER there: a coordinated swap that
    loses no writes, and restores the ring exactly.
    """
    masters = serving_masters(view)
    per_server = {s: [m for m in masters if m.host == s] for s in servers if any(n.host == s for n in view)}
    if not per_server:
        return []
    if all(len(ms) == 1 for ms in per_server.values()):
        return [Finding(OK, "balance", f"each of the {len(per_server)} servers holds one master")]
    by_id = {n.id: n for n in view}
    out = []
    paired: set[str] = set()
    for server, ms in per_server.items():
        if ms:
            continue
        candidates = [
            r for r in view
            if r.host == server and not r.is_master and not r.failing
            and r.master_id in by_id and len(per_server.get(by_id[r.master_id].host, [])) > 1
        ]
        if candidates:
            r = min(candidates, key=lambda c: c.port)
            busy = by_id[r.master_id or ""].host
            paired.add(busy)
            out.append(Finding(
                WARN, "balance", f"server {server} holds no master while server {busy} holds "
                f"{len(per_server[busy])} ({', '.join(m.address for m in per_server[busy])}): roles drifted after "
                f"a failover; losing server {busy} now costs two masters", server, r.address,
                _cli(r.address, "CLUSTER FAILOVER") + f"   # {_shown(r.address)} takes its master role back"
                + FAILOVER_AGAIN,
            ))
        else:
            out.append(Finding(WARN, "balance", f"server {server} holds no master", server))
    for server, ms in per_server.items():
        if len(ms) > 1 and server not in paired:
            out.append(Finding(WARN, "balance", f"server {server} holds {len(ms)} masters "
                                                f"({', '.join(m.address for m in ms)})", server))
    return out


def check_slot_balance(view: Sequence[ClusterNode]) -> list[Finding]:
    """Masters should own about 16384/N slots each: an uneven cluster loads one server with more sessions.

    WARN when the largest and smallest share differ by more than SLOT_BALANCE_TOLERANCE
    of the fair share (a rebalance that stopped half-way, or a server added by hand).
    """
    # An empty master counts: a server added without a rebalance serves nothing.
    masters = [m for m in view if m.is_master and not m.failing]
    if len(masters) < 2:
        return []
    fair = SLOTS / len(masters)
    counts = {m.address: m.slot_count for m in masters}
    spread = max(counts.values()) - min(counts.values())
    if spread <= SLOT_BALANCE_TOLERANCE * fair:
        return [Finding(OK, "slot-balance", f"the {len(masters)} masters own {min(counts.values())} to "
                                            f"{max(counts.values())} slots each (fair share {fair:.0f})")]
    least = min(counts, key=counts.__getitem__)
    any_up = masters[0].address
    return [Finding(
        WARN, "slot-balance", f"masters own between {counts[least]} ({least}) and {max(counts.values())} slots; "
        f"fair share is {fair:.0f}: sessions and load are uneven", fix=(
            f'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --cluster rebalance {any_up} --cluster-use-empty-masters '
            "--cluster-threshold 1"),
    )]


def check_ring(view: Sequence[ClusterNode], servers: Sequence[str]) -> list[Finding]:
    """The crossed ring of outsystems_redis/topology.py: the replica on server i follows the master on server i+1.

    Only judged when every server holds one master and one replica (otherwise the
    balance and crossed checks already say what is wrong). A crossed arrangement that
    is not the ring is still safe, so this only warns.
    """
    live = [n for n in view if not n.failing]
    hosts = [s for s in servers if any(n.host == s for n in live)]
    masters = {s: [n for n in live if n.host == s and n.is_master and n.slots] for s in hosts}
    replicas = {s: [n for n in live if n.host == s and not n.is_master] for s in hosts}
    if len(hosts) < 3 or any(len(masters[s]) != 1 or len(replicas[s]) != 1 for s in hosts):
        return []
    out = []
    for i, host in enumerate(hosts):
        target = masters[hosts[(i + 1) % len(hosts)]][0]
        r = replicas[host][0]
        if r.master_id != target.id:
            out.append(Finding(WARN, "ring", f"server {host}: replica {r.address} does not follow the master of "
                                              f"the next server ({target.address})", host, r.address,
                               _cli(r.address, f"CLUSTER REPLICATE {shlex.quote(target.id)}")))
    if not out:
        out.append(Finding(OK, "ring", f"crossed ring over {len(hosts)} servers: each replica follows the master "
                                       "of the next server"))
    return out


def check_agreement(facts: Facts) -> list[Finding]:
    """Every node must agree on who owns which slots, or clients bounce between MOVED answers."""
    views = [(n, _slot_map(n.cluster_nodes)) for n in facts.nodes if not n.error and n.cluster_nodes]
    if len(views) < 2:
        return []
    counts = Counter(v for _, v in views)
    common = counts.most_common(1)[0][0]
    odd = [n.address for n, v in views if v != common]
    if odd:
        return [Finding(FAIL, "agreement", f"{', '.join(odd)} disagree with the other nodes about slot ownership",
                        fix="wait a few seconds for gossip; if it persists: redis-cli --cluster check "
                            + views[0][0].address)]
    return [Finding(OK, "agreement", f"all {len(views)} reachable nodes agree on the slot configuration")]


def check_membership(facts: Facts, view: Sequence[ClusterNode]) -> list[Finding]:
    """Every listed process must be part of the cluster the others see."""
    known = {n.address for n in view}
    out = []
    for n in facts.nodes:
        if not n.error and n.cluster_nodes and view and n.address not in known:
            out.append(Finding(FAIL, "membership", f"{n.address} is not part of the cluster", n.host, n.address,
                               "run the bootstrap script, or redis-cli --cluster add-node"))
    return out


def replication_lag(master_info: Mapping, replica_info: Mapping) -> int | None:
    """Bytes a replica is behind its master: the master's offset minus the replica's own (None: unknown)."""
    if "master_repl_offset" not in master_info or "slave_repl_offset" not in replica_info:
        return None
    return max(0, int(master_info["master_repl_offset"]) - int(replica_info["slave_repl_offset"]))


def check_replication(facts: Facts) -> list[Finding]:
    """Replication links up, with lag (bytes behind the master's offset) reported.

    Lag is the master's offset minus the replica's own; matching by the replica's
    own INFO avoids the address the master sees, which on Redis 7 can be the
    connection's source address rather than the replica's.
    """
    masters = {n.address: n for n in facts.nodes if not n.error}
    out = []
    for n in facts.nodes:
        if n.error or n.info.get("role") != "slave":
            continue
        master = f"{n.info.get('master_host')}:{n.info.get('master_port')}"
        if n.info.get("master_link_status") != "up":
            out.append(Finding(FAIL, "replication", f"server {n.host}: replica {n.address}'s link to master {master} "
                                                    f"is {n.info.get('master_link_status', '?')}", n.host, n.address))
            continue
        m = masters.get(master)
        lag = replication_lag(m.info, n.info) if m is not None else None
        lag_text = f"{lag} bytes behind" if lag is not None else "lag unknown (master not listed)"
        severity = WARN if lag is not None and lag > LAG_WARN_BYTES else OK
        out.append(Finding(severity, "replication", f"replica {n.address} -> {master}: link up, {lag_text}",
                           n.host, n.address))
    return out


def judge(facts: Facts) -> list[Finding]:
    """All findings, worst first; pure."""
    findings = check_reachable(facts) + check_mode(facts)
    if facts.cluster and not any(f.check == "cluster-mode" for f in findings):
        view = reference_view(facts)
        servers = server_order(facts, view)
        findings += (
            check_cluster_state(facts) + check_membership(facts, view) + check_slots(view)
            + check_nodes_up(view) + check_replicas(view) + check_crossed(view, servers)
            + check_balance(view, servers) + check_slot_balance(view) + check_ring(view, servers)
            + check_agreement(facts) + check_replication(facts)
        )
    findings += check_version(facts) + check_memory(facts) + check_tls(facts) + check_round_trip(facts)
    findings = [_tls_fix(facts, _users_fix(facts, f)) for f in findings]
    return sorted(findings, key=lambda f: -_RANK[f.severity])


def verdict(findings: Sequence[Finding]) -> str:
    worst = max((_RANK[f.severity] for f in findings), default=0)
    return ("healthy", "degraded", "unhealthy")[worst]


def exit_code(findings: Sequence[Finding], strict: bool = False) -> int:
    v = verdict(findings)
    return 1 if v == "unhealthy" or (strict and v == "degraded") else 0
