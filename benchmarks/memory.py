"""Sessions written well past maxmemory, the way the session provider writes them: `python -m benchmarks.memory`.

One Redis process per (version, policy), with a small maxmemory, on loopback. Front-end requests run the
provider's scripts (outsystems_redis.tools.sessions): each request takes its session's write lock, holds it while
`--held` other requests run (the page's work), then writes its items and releases the lock. New sessions keep
arriving until the store has been written `--fill` times its maxmemory. Counted:

- writes: the share of requests whose scripts succeeded (an OOM error is a failed login);
- locks lost: a request found its own lock gone when it came to write (evicted while held; its update is
  dropped, and any other request could have taken the session meanwhile);
- half sessions: sessions with one of _Data/_Internal left (the provider then reads an empty session).

The numbers decide the eviction policy in outsystems_redis/render/redis_conf.py (docs/boot-and-safety.md:
"When memory is full").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from outsystems_redis.render.make_room import make_room_env, needs_make_room
from outsystems_redis.render.redis_conf import EVICTION_POLICY
from outsystems_redis.tools.loopback import platform_for, redis_binary, spawn_make_room
from outsystems_redis.tools.sessions import SessionStore, inspect, session_tag

POLICIES = ("allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-ttl")
RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
ITEM_BYTES = 2000


@dataclass
class Result:
    version: str
    policy: str
    maxmemory_mb: int
    requests: int
    writes_ok: int
    oom_errors: int
    other_errors: int
    locks_lost: int
    sessions: int
    half_sessions: int
    whole_sessions: int
    evicted_keys: int
    other_error_kinds: dict
    gave_up: bool = False  # stopped after `give_up_after` refused requests

    @property
    def write_share(self) -> float:
        return self.writes_ok / self.requests if self.requests else 0.0


def _start(version: str, host: str, port: int, directory: Path, policy: str, maxmemory_mb: int,
           password: str) -> subprocess.Popen:
    conf = directory / "redis.conf"  # the password in a file, never on a command line
    conf.write_text(f"port {port}\nbind {host}\nsave \"\"\nappendonly no\ndir {directory}\n"
                    f"maxmemory {maxmemory_mb}mb\nmaxmemory-policy {policy}\nrequirepass {password}\n")
    proc = subprocess.Popen([redis_binary(version), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            redis.Redis(host, port, password=password, socket_timeout=1).ping()
            return proc
        except redis.RedisError:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server {version} exited ({proc.returncode})") from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server {version} on {port} did not answer PING in 20 s")


def _is_oom(exc: redis.ResponseError) -> bool:
    # redis-py strips the OOM code from its OutOfMemoryError; a script's error keeps it inside.
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in str(exc)


def _start_make_room(host: str, port: int, directory: Path, password: str) -> subprocess.Popen:
    """The shipped redis-make-room with the shipped figures, watching this one process (ahead of the writer)."""
    auth = directory / "auth.conf"
    auth.write_text(f"requirepass {password}\n")
    return spawn_make_room(directory / "redis-make-room", make_room_env(host, (port,), auth_file=str(auth)),
                           directory / "make-room.log", ahead=True)


def run_one(version: str, policy: str, *, port: int, host: str = "127.0.0.1", maxmemory_mb: int = 8,
            fill: float = 3.0, held: int = 50, make_room: bool = False, retry_seconds: float = 0.0,
            give_up_after: int = 0) -> Result:
    """Write sessions until `fill` x maxmemory has been written; `held` requests hold their lock at any time.

    `make_room`: with the shipped redis-make-room running beside the process, as on the 5.0 servers.
    `retry_seconds`: a call refused with OOM is sent again every 10 ms for that long, as the provider retries a
    failed call (retryTimeoutInMilliseconds, 5 s by default); 0 counts the first refusal.
    `give_up_after`: stop once that many requests failed with OOM (0: never), so that a store that stays full
    does not take the whole budget of retries.
    """
    password = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="osr-memory-") as tmp:
        proc = _start(version, host, port, Path(tmp), policy, maxmemory_mb, password)
        agent = _start_make_room(host, port, Path(tmp), password) if make_room else None
        try:
            client = redis.Redis(host, port, password=password, socket_timeout=5)
            store = SessionStore(client)

            def call(fn, *args):
                deadline = time.monotonic() + retry_seconds
                while True:
                    try:
                        return fn(*args)
                    except redis.ResponseError as exc:
                        if not _is_oom(exc) or time.monotonic() >= deadline:
                            raise
                        time.sleep(0.01)

            payload = os.urandom(ITEM_BYTES // 2).hex()
            budget = int(fill * maxmemory_mb * 1024 * 1024 / ITEM_BYTES)
            tags: list[str] = []
            holding: deque = deque()
            ok = oom = other = lost = 0
            errors: dict[str, int] = {}
            gave_up = False
            for n in range(budget):
                if give_up_after and oom >= give_up_after:
                    gave_up = True
                    break
                # A returning user (every third request) or a new login.
                returning = n % 3 == 2 and tags
                tag = tags[(n * 7919) % len(tags)] if returning else session_tag(f"app{n % 7}", uuid.uuid4().hex[:24])
                try:
                    if not returning:
                        call(store.create, tag, {"login": payload})
                        tags.append(tag)
                    lock = call(store.lock_and_get, tag)
                    if lock is not None:
                        holding.append(lock)
                    if len(holding) > held:
                        oldest = holding.popleft()
                        if call(store.set_and_release, oldest, {"page": payload[:200]}):
                            ok += 1
                        else:
                            lost += 1
                except redis.ResponseError as exc:
                    if _is_oom(exc):
                        oom += 1
                    else:
                        other += 1
                        errors.setdefault(str(exc)[:200], 0)
                        errors[str(exc)[:200]] += 1
            states = [inspect(client, t) for t in tags]
            evicted = int(client.info("stats")["evicted_keys"])
            client.close()
        finally:
            if agent is not None:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait(timeout=20)
            proc.terminate()
            proc.wait(timeout=20)
    requests = ok + oom + other + lost
    label = policy + (" + make-room" if make_room else "")
    return Result(version, label, maxmemory_mb, requests, ok, oom, other, lost, len(tags),
                  sum(s.half for s in states), sum(s.whole for s in states), evicted, errors, gave_up)


def table(results: list[Result]) -> str:
    rows = ["| Redis | policy | requests | writes ok | OOM errors | locks lost while held | half sessions | "
            "whole sessions left | keys evicted |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r.version} | {r.policy} | {r.requests} | {100 * r.write_share:.1f} % | {r.oom_errors} | "
                    f"{r.locks_lost} | {r.half_sessions} | {r.whole_sessions} of {r.sessions} | {r.evicted_keys} |")
    return "\n".join(rows)


def section(path: Path = RESULTS) -> str:
    """BENCHMARKS.md's section on sessions past maxmemory, from the last `python -m benchmarks.memory --out`."""
    if not path.exists():
        return ""
    results = [Result(**r) for r in json.loads(path.read_text())]
    first = results[0]
    return (
        "\n## Sessions past maxmemory, in the session provider's shape\n\n"
        "`python -m benchmarks.memory --out benchmarks/results/memory.json`: one Redis process per line and "
        f"policy, {first.maxmemory_mb} MiB of maxmemory, written about three times over through the provider's "
        "scripts (outsystems_redis/tools/sessions.py), 50 requests holding their write lock at any time. What the "
        "numbers decide, and why Redis 5.0 fails script writes at the limit: docs/boot-and-safety.md, "
        "\"When memory is full\".\n\n"
        + table(results) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", default="5.0,7.0")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--maxmemory-mb", type=int, default=8)
    ap.add_argument("--fill", type=float, default=3.0, help="write this many times maxmemory (default 3)")
    ap.add_argument("--held", type=int, default=50, help="requests holding their lock at once (default 50)")
    ap.add_argument("--port", type=int, default=6420)
    ap.add_argument("--out", type=Path, help=f"also write the results as JSON (BENCHMARKS.md reads {RESULTS.name})")
    args = ap.parse_args(argv)
    results = []
    for version in args.versions.split(","):
        for policy in args.policies.split(","):
            print(f"{version} {policy} ...", file=sys.stderr, flush=True)
            results.append(run_one(version, policy, port=args.port, maxmemory_mb=args.maxmemory_mb,
                                   fill=args.fill, held=args.held))
        if needs_make_room(platform_for(version)):
            # What the 5.0 servers run: the shipped policy with redis-make-room beside it.
            print(f"{version} {EVICTION_POLICY} + make-room ...", file=sys.stderr, flush=True)
            results.append(run_one(version, EVICTION_POLICY, port=args.port, maxmemory_mb=args.maxmemory_mb,
                                   fill=args.fill, held=args.held, make_room=True))
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
