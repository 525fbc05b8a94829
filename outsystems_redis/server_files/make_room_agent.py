#!/usr/bin/python3
"""redis-make-room (Redis 5.0 servers only): keeps each master on this server below its maxmemory,
so that the session provider's scripts can still write when the store is full.

Why: the provider writes only through Lua scripts. Redis 5.0 evicts before a script runs only
down to maxmemory; the script's own arguments then push memory past it again, and 5.0 refuses
the script's first write with OOM (6.0 changed this). At the limit, about 4 logins in 10 fail
(docs/boot-and-safety.md "When memory is full"). So something must keep room below the limit.

How: one connection per Redis process on this server, kept open (on a busy machine a new
connection now and then waits a second or more for its SYN to be retried: too long here). Every
INTERVAL_SECONDS (IDLE_INTERVAL_SECONDS while every process is below half its maxmemory) it reads INFO
memory; a master at TRIGGER_PERCENT of its maxmemory or more is
made to evict, under its own policy (allkeys-lru), down to TARGET_PERCENT: CONFIG SET maxmemory
to the lower figure (5.0 evicts at once), then back, in one MULTI/EXEC, so no client command
ever runs under the lowered limit and a stop half way cannot leave it lowered. The limit put
back is the one just read, so an operator's CONFIG SET maxmemory is kept. Replicas are left
alone: they follow their master's evictions. The MemoryUsedPercent alarm (85 %) fires first.

Runs as the redis user (the auth include's group gives it the password, which it sends only
over the connection: never argv, and CONFIG's secret name there: redis_conf.SECRET_NAMED_COMMANDS).
Python 3.8 (Ubuntu 20.04), standard library only.
Inputs (environment): SERVER_IP, PORTS (space-separated), AUTH_FILE, TRIGGER_PERCENT,
TARGET_PERCENT, INTERVAL_SECONDS, IDLE_INTERVAL_SECONDS.
"""

from __future__ import annotations

import os
import socket
import time


def log(message: str) -> None:
    print(f"make-room: {message}", flush=True)


OPERATIONS_USER = "operations"  # parameters.OPERATIONS_USER (this file is shipped alone; a test holds them equal)


def login_and_config(auth_file: str) -> tuple[list[str], str]:
    """AUTH's arguments, as the servers' scripts log in (lib.sh: redis_login: the operations user where the
    auth include defines it, 7.0, else requirepass), and what CONFIG is called on this server."""
    with open(auth_file) as f:
        words = [line.split() for line in f]
    login = next(([OPERATIONS_USER, x[1:]] for w in words if w[:2] == ["user", OPERATIONS_USER]
                  for x in w[2:] if x.startswith(">") and len(x) > 1), None)
    login = login or [w[1] for w in words if len(w) > 1 and w[0] == "requirepass"][:1]
    config = next((w[2] for w in words if len(w) == 3 and w[:2] == ["rename-command", "CONFIG"]), "CONFIG")
    return login, config


def connect(host: str, port: int, auth_file: str):
    """A connection, its reader and CONFIG's name; AUTH as the auth include says, read anew each time."""
    conn = socket.create_connection((host, port), timeout=5)
    reader = conn.makefile("rb")
    login, config = login_and_config(auth_file)
    if login:
        call(conn, reader, "AUTH", *login)
    return conn, reader, config


def call(conn, reader, *args: str):
    """One command in RESP; its reply (a Redis error raises RuntimeError)."""
    conn.sendall(b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args]))
    return reply(reader)


def reply(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b"$":
        return reader.read(int(rest) + 2)[:-2].decode() if int(rest) >= 0 else None
    if kind == b"*":
        return [reply(reader) for _ in range(int(rest))]
    return rest.decode()


def info(conn, reader, section: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in call(conn, reader, "INFO", section).splitlines() if ":" in line)


def make_room(conn, reader, config: str, address: str, trigger: int, target: int) -> bool:
    """Evict if this master is at `trigger` % or more; whether the process is at half its maxmemory or more."""
    memory = info(conn, reader, "memory")
    used, limit = int(memory["used_memory"]), int(memory["maxmemory"])
    if limit <= 0 or used * 100 < limit * trigger or info(conn, reader, "replication")["role"] != "master":
        return used * 2 >= limit > 0
    for command in (["MULTI"], [config, "SET", "maxmemory", str(limit * target // 100)],
                    [config, "SET", "maxmemory", str(limit)]):
        call(conn, reader, *command)
    done = call(conn, reader, "EXEC")
    log(f"{address} held {used * 100 // limit} % of maxmemory; " +
        (f"evicted down to {target} %" if done == ["OK", "OK"] else f"WARNING: EXEC {done}"))
    return True


def main() -> None:
    env = os.environ
    host, ports, auth_file = env["SERVER_IP"], [int(p) for p in env["PORTS"].split()], env["AUTH_FILE"]
    trigger, target = int(env["TRIGGER_PERCENT"]), int(env["TARGET_PERCENT"])
    interval, idle = float(env["INTERVAL_SECONDS"]), float(env["IDLE_INTERVAL_SECONDS"])
    conns, retry = {}, {}  # port -> connection; port -> when to connect again
    while True:
        half = False  # any process at half its maxmemory or more: look every `interval`, else every `idle`
        for port in ports:
            if port not in conns and time.monotonic() < retry.get(port, 0):
                continue
            try:
                if port not in conns:
                    conns[port] = connect(host, port, auth_file)
                half = make_room(*conns[port], f"{host}:{port}", trigger, target) or half
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                if port in conns:
                    conns.pop(port)[0].close()
                log(f"{host}:{port}: {exc!r}; trying again in 5 s")  # down or restarting
                retry[port] = time.monotonic() + 5
        time.sleep(interval if half else idle)


if __name__ == "__main__":
    main()
