#!/usr/bin/python3
"""redis-observe: one Redis server's metrics and logs to CloudWatch, through the AWS CLI it already has.

    redis-observe metrics   # redis-metrics.timer, every minute: outsystems_redis.monitoring.METRICS
    redis-observe logs      # redis-logs.timer, every minute: Redis logs, the units' journal, the slow log

The health check's own pure functions (parse_cluster_nodes, check_cluster_state,
check_replication, serving_masters, ...) come from outsystems_redis/judge.py, which the
file servers run carries whole and imports as here (outsystems_redis/render/metrics.py,
observe_script), so the metrics are the health check's judgement, never a second judge. That file is about
15 KB gzipped, more than EC2's user-data limit leaves: `pulumi up` puts it in the
stack's bucket and the launcher in the user data (metrics-observe.sh) fetches it
at each run. Python 3.8+ standard library only: Ubuntu 20.04 has python3 but not
redis-py; a small RESP client talks to Redis (TLS with the stack's CA when TLS_CA
is set).

Environment (names, no secret; redis-observe.env): STACK, SERVER_NAME, SERVER_IP,
PORTS, CLUSTER (1|0), AUTH_FILE, AWS_REGION, LOG_GROUP, REDIS_LOGS ("PORT=PATH ..."),
JOURNAL_UNITS, STATE_DIR, optional TLS_CA. The password is read from AUTH_FILE and
goes to Redis inside the connection (AUTH), never to an argv, a metric or a log:
every shipped line is scrubbed of it.
"""

from __future__ import annotations

import calendar
import errno
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from typing import BinaryIO

# Shipped: these modules travel inside the program servers run (shipped.python_program).
from outsystems_redis.judge import (
    FAIL,
    OK,
    Facts,
    NodeFacts,
    check_cluster_state,
    check_nodes_up,
    check_replicas,
    check_replication,
    memory_share,
    parse_cluster_info,
    parse_cluster_nodes,
    parse_info,
    reference_view,
    replication_lag,
    serving_masters,
)
from outsystems_redis.monitoring import (
    METRIC_UNITS,
    SERVER_DIMENSION,
    STACK_DIMENSION,
    former_namespace,
    log_stream_name,
    metric_namespace,
)
from outsystems_redis.parameters import OPERATIONS_USER

SLOTS_ALL = 16384
CONNECT_TIMEOUT = 3.0
AWS_CALL_SECONDS = 40
# CloudWatch Logs PutLogEvents limits: per batch 10,000 events and 1,048,576 bytes (each
# event's UTF-8 message + 26), one batch spanning at most 24 h; per event 256 KB.
BATCH_EVENTS = 10_000
BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
EVENT_BYTES = 262_144 - EVENT_OVERHEAD
BATCH_SPAN_MS = 24 * 3600 * 1000
READ_LIMIT = 4 * 1024 * 1024  # bytes of one log file per run; the rest waits for the next run
SLOWLOG_FETCH = 128  # Redis's default slowlog-max-len
REDACTED = "(redacted)"


class RedisError(Exception):
    pass


class Redis:
    """The smallest RESP client these calls need: commands as arrays of bulk strings, replies parsed."""

    def __init__(self, host: str, port: int, login: tuple[str, ...], ca: str | None = None,
                 timeout: float = CONNECT_TIMEOUT) -> None:
        sock = socket.create_connection((host, port), timeout)
        if ca:
            sock = ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.file = sock.makefile("rwb")
        if login:
            self.call("AUTH", *login)

    def call(self, *args: str):
        parts = [str(a).encode() for a in args]
        self.file.write(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        self.file.flush()
        return self._reply()

    def _reply(self):
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2].decode(errors="replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise ConnectionError(f"unexpected reply {line[:20]!r}")

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def read_passwords(auth_file: str) -> list[str]:
    """requirepass first, then any other password of a Redis user there: the default user's (a Redis 7.0 grace),
    the operations and the replication user's (7.0). All of them are scrubbed from what is shipped."""
    found: list[str] = []
    if not os.path.exists(auth_file):  # redis-auth has not written it yet: Redis is not up either
        print(f"redis-observe: no {auth_file} yet", file=sys.stderr)
        return found
    with open(auth_file) as f:
        for line in f:
            words = line.split()
            if words[:1] == ["requirepass"] and len(words) > 1:
                found.insert(0, words[1])
            elif words[:1] == ["user"]:
                found += [w[1:] for w in words[2:] if w.startswith(">") and len(w) > 1]
    return list(dict.fromkeys(found))


def read_login(auth_file: str) -> tuple[str, ...]:
    """AUTH's arguments for this server's Redis, as its scripts log in (lib.sh: redis_login): the operations
    user where the auth include defines it (7.0; the front-ends' user cannot read the slow log), else requirepass;
    none without the file."""
    if not os.path.exists(auth_file):
        return ()
    with open(auth_file) as f:
        words = [line.split() for line in f]
    for w in words:
        if w[:2] == ["user", OPERATIONS_USER]:
            return (OPERATIONS_USER, *[x[1:] for x in w[2:] if x.startswith(">") and len(x) > 1][:1])
    return next(((w[1],) for w in words if w[:1] == ["requirepass"] and len(w) > 1), ())


def read_command_names(auth_file: str) -> dict[str, str]:
    """What this server's Redis calls a renamed command (the secret names, redis_conf.SECRET_NAMED_COMMANDS):
    `rename-command CONFIG <name>` lines of the auth include; empty without any (a server created before)."""
    if not os.path.exists(auth_file):
        return {}
    with open(auth_file) as f:
        return {w[1].upper(): w[2] for w in (line.split() for line in f) if len(w) == 3 and w[0] == "rename-command"}


def gather_process(host: str, port: int, login: tuple[str, ...], ca: str | None, cluster: bool,
                info_only: bool = False) -> NodeFacts:
    node = NodeFacts(host, port)
    try:
        r = Redis(host, port, login, ca)
        try:
            node.info = parse_info(r.call("INFO", "replication") if info_only else r.call("INFO"))
            if cluster and not info_only:
                node.cluster_info = parse_cluster_info(r.call("CLUSTER", "INFO"))
                node.cluster_nodes = parse_cluster_nodes(r.call("CLUSTER", "NODES"), host)
        finally:
            r.close()
    except (OSError, RedisError) as exc:  # the server is judged down; the reason goes to the journal
        node.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return node


def gather_server(host: str, ports: list[int], login: tuple[str, ...], ca: str | None, cluster: bool) -> Facts:
    """This server's processes, and the master of each of its replicas (for the lag)."""
    nodes = [gather_process(host, p, login, ca, cluster) for p in ports]
    seen = {n.address for n in nodes}
    for n in list(nodes):
        if n.info.get("role") == "slave":
            address = f"{n.info.get('master_host')}:{n.info.get('master_port')}"
            if address not in seen and n.info.get("master_port", "").isdigit():
                seen.add(address)
                nodes.append(gather_process(n.info["master_host"], int(n.info["master_port"]), login, ca, cluster,
                                         info_only=True))
    return Facts(cluster, "", nodes)


def _num(info: dict, key: str) -> float:
    try:
        return float(info.get(key, 0))
    except ValueError:
        return 0.0


def compute_metrics(facts: Facts, host: str, previous: dict, now: float) -> tuple[dict[str, float], dict]:
    """(metric name -> value, the counters to remember) for server `host`, from the health check's functions."""
    local = [n for n in facts.nodes if n.host == host]
    up = [n for n in local if not n.error]
    ok_nodes = {f.node for f in check_cluster_state(facts) if f.severity == OK}
    values: dict[str, float] = {
        "ClusterStateOk": float(bool(up) and len(up) == len(local)
                                and (not facts.cluster or all(n.address in ok_nodes for n in local))),
        "ReplicaLinksDown": float(sum(1 for f in check_replication(facts)
                                      if f.severity == FAIL and f.node in {n.address for n in local})),
    }
    if facts.cluster:
        view = reference_view(facts)
        values["SlotsServed"] = float(sum(m.slot_count for m in serving_masters(view)))
        if view:
            values["RoleDrift"] = float(len([m for m in serving_masters(view) if m.host == host]) != 1)
            # The direct check's shape failures, as this server sees the cluster, about its own processes. (Its
            # check_crossed is left out, as it always was here: check_replicas already fails a master whose only
            # working replicas are beside it, which is what would lose sessions.)
            shape = (*check_nodes_up(view), *check_replicas(view))
            values["ShapeFailures"] = float(sum(1 for f in shape if f.severity == FAIL and f.server == host))
    else:
        values["SlotsServed"] = float(SLOTS_ALL if up else 0)
        values["RoleDrift"] = 0.0
        values["ShapeFailures"] = 0.0
    if not up:
        return values, previous
    by_address = {n.address: n for n in facts.nodes if not n.error}
    lags = [replication_lag(by_address[f"{n.info.get('master_host')}:{n.info.get('master_port')}"].info, n.info)
            for n in up if n.info.get("role") == "slave" and n.info.get("master_link_status") == "up"
            and f"{n.info.get('master_host')}:{n.info.get('master_port')}" in by_address]
    values["ReplicationLagBytes"] = float(max([lag for lag in lags if lag is not None], default=0))
    shares = [s for s in (memory_share(n.info) for n in up) if s is not None]
    if shares:
        values["MemoryUsedPercent"] = round(100.0 * max(shares), 2)
    values["ConnectedClients"] = sum(_num(n.info, "connected_clients") for n in up)
    # Counters: the increase since the last run (since the process started when it restarted since).
    seen = previous.get("processes", {})
    elapsed = now - previous.get("time", now)
    counters, evicted, rejected, ops = {}, 0.0, 0.0, 0.0
    for n in up:
        now_counts = {k: _num(n.info, k) for k in ("evicted_keys", "rejected_connections", "total_commands_processed")}
        before = seen.get(str(n.port))
        same = before is not None and before.get("run_id") == n.info.get("run_id")
        counters[str(n.port)] = {"run_id": n.info.get("run_id"), **now_counts}
        evicted += now_counts["evicted_keys"] - (before["evicted_keys"] if same else 0)
        rejected += now_counts["rejected_connections"] - (before["rejected_connections"] if same else 0)
        if same and elapsed > 0:
            ops += max(0.0, now_counts["total_commands_processed"] - before["total_commands_processed"]) / elapsed
        else:
            ops += _num(n.info, "instantaneous_ops_per_sec")
    values["EvictedKeys"] = max(0.0, evicted)
    values["RejectedConnections"] = max(0.0, rejected)
    values["OpsPerSecond"] = round(ops, 2)
    masters = [n for n in up if n.info.get("role") == "master"] or up
    # An idle master (nothing changed since its last save) has nothing at risk: 0, or it would page at night.
    values["LastSaveAgeSeconds"] = max(
        0.0 if _num(n.info, "rdb_changes_since_last_save") == 0 else max(0.0, now - _num(n.info, "rdb_last_save_time"))
        for n in masters)
    return values, {"time": now, "processes": counters}


def metric_data(values: dict[str, float], stack: str, server: str, now: float) -> list[dict]:
    """PutMetricData's MetricData: every value with the stack and server dimensions, in METRICS order."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    dims = [{"Name": STACK_DIMENSION, "Value": stack}, {"Name": SERVER_DIMENSION, "Value": server}]
    return [{"MetricName": name, "Dimensions": dims, "Unit": unit, "Value": values[name], "Timestamp": stamp}
            for name, unit in METRIC_UNITS.items() if name in values]


# ---------------------------------------------------------------- AWS CLI and state


class AwsError(Exception):
    pass


def aws(env: dict, *args: str, payload: object = None) -> dict:
    """One bounded AWS CLI call (JSON out); `payload` goes through a file:// argument, never the argv itself."""
    path = None
    argv = ["aws", *args]
    try:
        if payload is not None:
            fd, path = tempfile.mkstemp(prefix="aws-", suffix=".json", dir=env["STATE_DIR"])
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f)
            argv[-1] = argv[-1].replace("@PAYLOAD@", f"file://{path}")
        argv += ["--region", env["AWS_REGION"], "--output", "json", "--cli-connect-timeout", "5",
                 "--cli-read-timeout", "20"]
        # AWS_PAGER: a CLI v2 (the snap of 24.04 servers made before the wheel) never waits on a pager. STS in the
        # region, as the rest (the CLI v1 would call its global endpoint).
        call_env = {**os.environ, "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "3", "AWS_PAGER": "",
                    "AWS_STS_REGIONAL_ENDPOINTS": "regional"}
        result = subprocess.run(argv, capture_output=True, text=True, timeout=AWS_CALL_SECONDS, env=call_env,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AwsError(f"aws {args[0]} {args[1]}: no answer within {AWS_CALL_SECONDS}s") from None
    finally:
        if path:
            os.unlink(path)
    if result.returncode != 0:
        raise AwsError(f"aws {args[0]} {args[1]} (exit {result.returncode}): {result.stderr.strip()[-400:]}")
    return json.loads(result.stdout) if result.stdout.strip() else {}


def load_state(env: dict, name: str) -> dict:
    try:
        with open(os.path.join(env["STATE_DIR"], name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save_state(env: dict, name: str, state: dict) -> None:
    """Atomically (a temporary file, then a rename): a crash leaves the old state or the new one."""
    path = os.path.join(env["STATE_DIR"], name)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def settings(environ: dict) -> dict:
    missing = [k for k in ("STACK", "SERVER_NAME", "SERVER_IP", "PORTS", "AUTH_FILE", "AWS_REGION", "LOG_GROUP",
                           "STATE_DIR") if not environ.get(k)]
    if missing:
        raise SystemExit(f"redis-observe: ERROR: {', '.join(missing)} required (redis-observe.env)")
    os.makedirs(environ["STATE_DIR"], mode=0o700, exist_ok=True)
    return dict(environ)


def own_session(env: dict) -> str:
    """This instance's session as IAM names it (aws:userid): the role lets it publish in its own namespace only.
    Asked each run (GetCallerIdentity needs no permission): nothing cached can outlive the instance."""
    session = str(aws(env, "sts", "get-caller-identity").get("UserId", ""))
    if not session or not all(c.isalnum() or c in ":._@-" for c in session):
        raise AwsError(f"aws sts get-caller-identity: no usable UserId ({session!r})")
    return session


def publish_metrics(env: dict) -> int:
    ports = [int(p) for p in env["PORTS"].split()]
    facts = gather_server(env["SERVER_IP"], ports, read_login(env["AUTH_FILE"]), env.get("TLS_CA") or None,
                   env.get("CLUSTER") == "1")
    now = time.time()
    values, counters = compute_metrics(facts, env["SERVER_IP"], load_state(env, "metrics.json"), now)
    for n in facts.nodes:
        if n.error:
            print(f"redis-observe: {n.address} does not answer: {n.error}", file=sys.stderr)
    payload = metric_data(values, env["STACK"], env["SERVER_NAME"], now)
    # The stack's former namespace first (monitoring.former_namespace: what an upgrading stack's alarms read
    # until `pulumi up` moves them; it needs no STS), then the server's own.
    aws(env, "cloudwatch", "put-metric-data", "--namespace", former_namespace(env["STACK"]),
        "--metric-data", "@PAYLOAD@", payload=payload)
    aws(env, "cloudwatch", "put-metric-data", "--namespace", metric_namespace(env["STACK"], own_session(env)),
        "--metric-data", "@PAYLOAD@", payload=payload)
    save_state(env, "metrics.json", counters)
    return 0


# ---------------------------------------------------------------- logs


# Commands whose second word says what they did (CONFIG SET, CLUSTER FAILOVER ...); CONFIG's third word is a
# parameter name. Nothing else of an entry is shipped.
SUBCOMMANDS = {"acl", "client", "cluster", "command", "config", "debug", "function", "latency", "memory",
               "module", "object", "script", "slowlog", "xinfo", "xgroup"}


def command_shape(args: list[str]) -> str:
    """What a slow log entry may ship: the command (and subcommand) and how many arguments it had.

    Never a key or a value: session keys are the session cookies' values, and items are session data,
    so anyone who could read the logs could take over live sessions. Passwords are arguments too.
    """
    if not args:
        return "(empty)"
    words = [args[0].upper()]
    if args[0].lower() in SUBCOMMANDS and len(args) > 1:
        words.append(args[1].upper())
        if args[0].lower() == "config" and len(args) > 2 and args[1].lower() in ("set", "get"):
            words.append(args[2].lower())
    rest = len(args) - len(words)
    return f"{' '.join(words)} ({rest} more argument{'' if rest == 1 else 's'}, not shipped)"


def scrub(message: str, passwords: list[str]) -> str:
    for p in passwords:
        message = message.replace(p, REDACTED)
    return message


REDIS_TIME = re.compile(r"^\d+:[A-Z] (\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d)\.(\d{3}) ")


def redis_line_time(line: str, fallback: int) -> int:
    """Milliseconds of a Redis log line ("1234:M 26 Nov 2026 20:15:01.123 * ..."; servers run in UTC)."""
    m = REDIS_TIME.match(line)
    if not m:
        return fallback
    try:
        return calendar.timegm(time.strptime(m.group(1), "%d %b %Y %H:%M:%S")) * 1000 + int(m.group(2))
    except ValueError:
        return fallback


class NotALog(OSError):
    """A Redis log's name that is not a regular file: neither followed nor read."""


def open_log(path: str) -> tuple[int, os.stat_result]:
    """A Redis log opened for root to read, and what fstat says of it. The redis user owns /var/log/redis: it
    could replace a log by a link to a root-only file (shipped to CloudWatch, then) or by a pipe (every run
    blocked on it). Neither is followed nor read. (A hard link to a file of root's cannot be made there:
    fs.protected_hardlinks.)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:  # a link (ELOOP), a socket (ENXIO), a directory...; a missing log is the caller's
        if exc.errno == errno.ENOENT:
            raise
        what = "a symbolic link" if exc.errno == errno.ELOOP else f"not readable ({exc.strerror})"
        raise NotALog(f"{path} is {what}: not read") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotALog(f"{path} is not a regular file: not read")
    except OSError:
        os.close(fd)
        raise
    return fd, st


def file_events(path: str, saved: dict | None, now_ms: int) -> list[tuple[int, str, dict]]:
    """New complete lines of a Redis log since `saved` ({inode, offset}), as (ms, line, position after it).

    Follows logrotate (Debian's rule: rename, then `.1` stays uncompressed one cycle): a
    file renamed since the last run is finished from `.1` first. What cannot be read is
    said in an event, never skipped quietly; a log that is not a regular file raises NotALog.
    """
    notes: list[str] = []
    events: list[tuple[int, str, dict]] = []
    try:
        fd, st = open_log(path)
    except FileNotFoundError:
        return events
    with os.fdopen(fd, "rb") as current:
        offset = 0
        if saved and saved.get("inode") != st.st_ino:
            events, note = _rotated(path, saved, now_ms)
            notes += [note] if note else []
        elif saved and st.st_size < saved.get("offset", 0):
            notes.append(f"{path} was truncated: lines after byte {saved['offset']} of it were not shipped")
        elif saved:
            offset = saved.get("offset", 0)
        # A note's position is where reading resumes, so it is said once.
        start = {"inode": st.st_ino, "offset": offset}
        events = [(now_ms, f"redis-observe: {n}", start) for n in notes] + events
        return events + _lines(current, offset, st.st_ino, events[-1][0] if events else now_ms)


def _rotated(path: str, saved: dict, now_ms: int) -> tuple[list, str | None]:
    """The rest of the file `saved` points into, now `.1`; or, when that is gone or not a log, a note saying
    what was not shipped (the current file still ships)."""
    lost = f"lines after byte {saved['offset']} of the previous file were not shipped"
    try:
        fd, st = open_log(path + ".1")
    except FileNotFoundError:
        return [], f"{path} was rotated and its previous file is gone: {lost}"
    except NotALog as exc:
        return [], f"{exc}; {lost}"
    with os.fdopen(fd, "rb") as old:
        if st.st_ino != saved["inode"]:
            return [], f"{path} was rotated and its previous file is gone: {lost}"
        return _lines(old, saved["offset"], saved["inode"], now_ms, final=True), None


def _lines(f: BinaryIO, offset: int, inode: int, fallback_ms: int, final: bool = False) -> list:
    f.seek(offset)
    data = f.read(READ_LIMIT)
    # Only complete lines (Redis may be writing the last one), unless this file is finished.
    end = len(data) if final and len(data) < READ_LIMIT else data.rfind(b"\n") + 1
    out, position, stamp = [], offset, fallback_ms
    for raw in data[:end].splitlines(keepends=True):
        position += len(raw)
        line = raw.decode(errors="replace").rstrip()
        stamp = redis_line_time(line, stamp)
        # A rotated file's position is where the current file starts: offset 0 of its inode.
        after = {"inode": inode, "offset": position}
        if line:
            out.append((stamp, line, after))
        elif out:
            out[-1] = (out[-1][0], out[-1][1], after)
    return out


def journal_events(units: list[str], cursor: str | None) -> list[tuple[int, str, str]]:
    """Journal entries of `units` after `cursor`, as (ms, "identifier[pid]: message", cursor)."""
    argv = ["journalctl", "--no-pager", "-o", "json", *(f"--unit={u}" for u in units)]
    if cursor:
        argv.append(f"--after-cursor={cursor}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise OSError(f"journalctl (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    out = []
    for line in result.stdout.splitlines():
        entry = json.loads(line)
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # binary: an array of bytes
            message = bytes(message).decode(errors="replace")
        who = entry.get("SYSLOG_IDENTIFIER") or entry.get("_SYSTEMD_UNIT") or "?"
        pid = f"[{entry['_PID']}]" if entry.get("_PID") else ""
        out.append((int(entry["__REALTIME_TIMESTAMP"]) // 1000, f"{who}{pid}: {message or ''}", entry["__CURSOR"]))
    return out


def slowlog_events(r: Redis, port: int, saved: dict | None, now_ms: int,
                   names: dict[str, str] | None = None) -> list[tuple[int, str, dict]]:
    """Slow log entries newer than the last one shipped, tracked by id (no SLOWLOG RESET: an operator's
    own SLOWLOG GET still sees them); a restart (new run_id) starts the ids again. `names`: the secret
    names of renamed commands (read_command_names); an entry says the command's own name instead."""
    names = names or {}
    real = {secret.lower(): command for command, secret in names.items()}
    run_id = parse_info(r.call("INFO", "server")).get("run_id", "")
    entries = sorted(r.call(names.get("SLOWLOG", "SLOWLOG"), "GET", str(SLOWLOG_FETCH)) or [], key=lambda e: e[0])
    last = saved["last_id"] if saved and saved.get("run_id") == run_id else -1
    new = [e for e in entries if e[0] > last]
    out = []
    if new and last >= 0 and new[0][0] > last + 1:
        lost = new[0][0] - last - 1
        out.append((now_ms, f"redis-observe: port {port}: {lost} slow log entries were overwritten before they "
                            "could be shipped (slowlog-max-len)", {"run_id": run_id, "last_id": new[0][0] - 1}))
    for e in new:
        client = f" {e[4]}" if len(e) > 4 and e[4] else ""
        args = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in e[3]]
        shape = command_shape([real.get(args[0].lower(), args[0]), *args[1:]] if args else args)
        out.append((int(e[1]) * 1000, f"port {port} id {e[0]} {e[2]} us{client}: {shape}",
                    {"run_id": run_id, "last_id": e[0]}))
    return out


def batches(events: list) -> list[list]:
    """Split events (in source order) into PutLogEvents batches within CloudWatch's limits.

    Each event is (ms, message, position); a message over 256 KB is cut and says so.
    """
    out: list[list] = []
    current: list = []
    size = 0
    for stamp, message, position in events:
        data = message.encode()
        if len(data) > EVENT_BYTES:
            data = data[:EVENT_BYTES - 40] + b" [truncated: over CloudWatch's 256 KB]"
            message = data.decode(errors="ignore")
            data = message.encode()
        first = current[0][0] if current else stamp
        if current and (len(current) >= BATCH_EVENTS or size + len(data) + EVENT_OVERHEAD > BATCH_BYTES
                        or abs(stamp - first) >= BATCH_SPAN_MS):
            out.append(current)
            current, size = [], 0
        current.append((stamp, message, position))
        size += len(data) + EVENT_OVERHEAD
    if current:
        out.append(current)
    return out


def put_events(env: dict, state: dict, stream: str, batch: list) -> None:
    """One batch into `stream` (created on first use), in time order as CloudWatch requires."""
    created = state.setdefault("streams", [])
    for attempt in (1, 2):
        if stream not in created:
            try:
                aws(env, "logs", "create-log-stream", "--log-group-name", env["LOG_GROUP"], "--log-stream-name", stream)
            except AwsError as exc:
                if "ResourceAlreadyExistsException" not in str(exc):
                    raise
            created.append(stream)
        events = [{"timestamp": s, "message": m} for s, m, _ in sorted(batch, key=lambda e: e[0])]
        try:
            answer = aws(env, "logs", "put-log-events", "--log-group-name", env["LOG_GROUP"], "--log-stream-name",
                         stream, "--log-events", "@PAYLOAD@", payload=events)
        except AwsError as exc:
            if attempt == 1 and "ResourceNotFoundException" in str(exc) and "stream" in str(exc).lower():
                created.remove(stream)  # the stream was deleted: create it again
                continue
            raise
        rejected = answer.get("rejectedLogEventsInfo")
        if rejected:
            print(f"redis-observe: CloudWatch Logs rejected part of a batch for {stream}: {rejected}", file=sys.stderr)
        return


def ship_logs(env: dict) -> int:
    state = load_state(env, "logs.json")
    names = read_command_names(env["AUTH_FILE"])
    passwords = read_passwords(env["AUTH_FILE"])
    secrets = passwords + list(names.values())  # the secret names are scrubbed like the passwords
    server = env["SERVER_NAME"]
    now_ms = int(time.time() * 1000)
    failures = 0
    # (stream, events, commit): commit(position) records what was shipped, after each batch.
    sources = []
    files = state.setdefault("files", {})
    for item in env.get("REDIS_LOGS", "").split():
        port, _, path = item.partition("=")
        try:
            events = file_events(path, files.get(path), now_ms)
        except NotALog as exc:
            print(f"redis-observe: ERROR: {exc}", file=sys.stderr)
            failures += 1
            continue
        sources.append((log_stream_name(server, f"redis-{port}"), events,
                        lambda p, path=path: files.__setitem__(path, p)))
    units = env.get("JOURNAL_UNITS", "").split()
    if units:
        try:
            events = journal_events(units, state.get("journal_cursor"))
            sources.append((log_stream_name(server, "journal"), events,
                            lambda p: state.__setitem__("journal_cursor", p)))
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"redis-observe: ERROR: journal: {exc}", file=sys.stderr)
            failures += 1
    slow = state.setdefault("slowlog", {})
    for port in env["PORTS"].split():
        try:
            r = Redis(env["SERVER_IP"], int(port), read_login(env["AUTH_FILE"]), env.get("TLS_CA") or None)
            try:
                events = slowlog_events(r, int(port), slow.get(port), now_ms, names)
            finally:
                r.close()
        except (OSError, RedisError) as exc:
            print(f"redis-observe: slow log of port {port} not read: {exc}", file=sys.stderr)
            continue
        sources.append((log_stream_name(server, "slowlog"), events,
                        lambda p, port=port: slow.__setitem__(port, p)))
    for stream, events, commit in sources:
        for batch in batches([(s, scrub(m, secrets), p) for s, m, p in events]):
            try:
                put_events(env, state, stream, batch)
            except AwsError as exc:
                print(f"redis-observe: ERROR: {stream}: {exc}; the next run sends it again", file=sys.stderr)
                failures += 1
                break
            commit(batch[-1][2])
            save_state(env, "logs.json", state)
    save_state(env, "logs.json", state)
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if argv[1:] not in (["metrics"], ["logs"]):
        print("usage: redis-observe metrics|logs", file=sys.stderr)
        return 2
    env = settings(dict(os.environ))
    try:
        return publish_metrics(env) if argv[1] == "metrics" else ship_logs(env)
    except (AwsError, OSError) as exc:
        print(f"redis-observe: ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
