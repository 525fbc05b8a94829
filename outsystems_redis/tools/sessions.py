"""Sessions the way OutSystems' session provider keeps them, for every workload of ours that writes sessions.

The ASP.NET Redis session state provider (Microsoft.Web.RedisSessionStateProvider 2.x-4.x, which OutSystems'
session storage builds on) keeps a session as three keys under one hash tag, so one slot and one master:

- `{<app>_<id>}_Write_Lock`: a string holding the id of the request that holds the session, with the lock's TTL;
- `{<app>_<id>}_Data`: a hash, one field per session item;
- `{<app>_<id>}_Internal`: a hash whose field `SessionTimeout` is the session timeout in seconds.

Every read and write is a Lua script over all three keys, sent with EVALSHA (EVAL after NOSCRIPT; redis-py's
Script does that), never a plain SET or GET. The scripts below are ours, written from the provider's documented
behaviour: take the lock, read with it, write the items and release it, release without writing, read without
locking, reset the expiry, remove. What they run is what matters to Redis: a script's writes, a lock with a
short TTL beside two hashes with the session's TTL, and expiry resets on every read.

`SessionStore` drives them; `inspect` tells whole, half and lost sessions apart, and held locks from lost ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The provider's defaults: a lock lives as long as a request may run (ASP.NET's executionTimeout, 110 s);
# a session lives for the session timeout (20 minutes) after its last request; a failed call is retried
# for retryTimeoutInMilliseconds (5,000 ms).
LOCK_TTL_SECONDS = 110
SESSION_TIMEOUT_SECONDS = 1200
PROVIDER_RETRY_BUDGET_MS = 5000

# Every read resets the session's expiry to its timeout (-1 in `timeout` when there is no session).
_RESET_EXPIRY = """
local timeout = redis.call('HGET', KEYS[3], 'SessionTimeout')
if timeout then
  redis.call('EXPIRE', KEYS[2], timeout)
  redis.call('EXPIRE', KEYS[3], timeout)
else
  timeout = -1
end
"""

# KEYS: lock, data, internal. ARGV: lock id, lock TTL (s).
# Takes the lock if it is free (or already ours); reads the items only when we hold it; resets the expiry.
_LOCK_AND_GET = """
local holder = ARGV[1]
if redis.call('SETNX', KEYS[1], ARGV[1]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
else
  holder = redis.call('GET', KEYS[1])
end
local items = {}
if holder == ARGV[1] then items = redis.call('HGETALL', KEYS[2]) end
""" + _RESET_EXPIRY + """
return {holder, items, timeout}
"""

# KEYS: lock, data, internal. ARGV: none. A read-only request: no lock taken; the expiry is reset. (The
# provider's own read-only script skips the items while another request holds the lock, and polls; ours
# reads them anyway, so a drill can check a held session's content.)
_GET = """
local holder = redis.call('GET', KEYS[1])
local items = redis.call('HGETALL', KEYS[2])
""" + _RESET_EXPIRY + """
return {holder or '', items, timeout}
"""

# KEYS: lock, data, internal. ARGV: lock id ('' for a new session), timeout (s), removed-field count,
# removed fields..., then field/value pairs. Writes only when the lock is ours (or for a new session), then
# releases it. Returns 1 when written, 0 when another request holds the session.
_SET_AND_RELEASE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local removed = tonumber(ARGV[3])
for i = 4, 3 + removed do redis.call('HDEL', KEYS[2], ARGV[i]) end
if #ARGV >= 4 + removed then redis.call('HMSET', KEYS[2], unpack(ARGV, 4 + removed)) end
redis.call('HMSET', KEYS[3], 'SessionTimeout', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
if ARGV[1] ~= '' then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: lock, data, internal. ARGV: lock id. Releases the lock if it is ours; resets the expiry.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local timeout = redis.call('HGET', KEYS[3], 'SessionTimeout')
if timeout then
  redis.call('EXPIRE', KEYS[2], timeout)
  redis.call('EXPIRE', KEYS[3], timeout)
end
return 1
"""

# KEYS: lock, data, internal. ARGV: none. ResetItemTimeout: the session lives another timeout.
_RESET_TIMEOUT = """
local timeout = redis.call('HGET', KEYS[3], 'SessionTimeout')
if timeout then
  redis.call('EXPIRE', KEYS[2], timeout)
  redis.call('EXPIRE', KEYS[3], timeout)
  return 1
end
return 0
"""

# KEYS: lock, data, internal. ARGV: lock id. Abandon: removes the session if the lock is ours.
_REMOVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[1])
  return 1
end
return 0
"""

SCRIPTS = {"lock_and_get": _LOCK_AND_GET, "get": _GET, "set_and_release": _SET_AND_RELEASE,
           "release": _RELEASE, "reset_timeout": _RESET_TIMEOUT, "remove": _REMOVE}


def session_tag(app: str | None = None, session_id: str | None = None) -> str:
    """`{<app>_<id>}`: the hash tag every key of one session shares (the provider's layout)."""
    app = app or str(uuid.uuid4())
    return f"{{{app}_{session_id or uuid.uuid4().hex[:24]}}}"


def session_keys(tag: str) -> tuple[str, str, str]:
    """(lock, data, internal) of a session."""
    return f"{tag}_Write_Lock", f"{tag}_Data", f"{tag}_Internal"


def tag_of(key: str) -> str:
    """The session tag of any of its keys."""
    return key[: key.rindex("}") + 1]


@dataclass
class Held:
    """A session a request holds: its tag, its lock id, and the items it read."""

    tag: str
    lock_id: str
    items: dict[str, str] = field(default_factory=dict)
    timeout: int = -1


class SessionStore:
    """A front-end's view of the session store: the provider's scripts over one redis-py client.

    `client` is a redis.Redis (one server) or a redis.cluster.RedisCluster (a cluster); each script runs on
    the master of its session's slot. Replies are decoded when the client decodes them.
    """

    def __init__(self, client: Any, timeout: int = SESSION_TIMEOUT_SECONDS, lock_ttl: int = LOCK_TTL_SECONDS) -> None:
        self.client = client
        self.timeout = timeout
        self.lock_ttl = lock_ttl
        self._scripts = {name: client.register_script(text) for name, text in SCRIPTS.items()}

    def _run(self, name: str, tag: str, *args: Any) -> Any:
        return self._scripts[name](keys=list(session_keys(tag)), args=list(args))

    def create(self, tag: str, items: Mapping[str, str | bytes]) -> None:
        """A new session (the provider's insert of a new item): the items and the timeout, no lock."""
        self._run("set_and_release", tag, "", self.timeout, 0, *_pairs(items))

    def lock_and_get(self, tag: str, lock_id: str | None = None) -> Held | None:
        """GetItemExclusive: the session held by this request, or None while another request holds it."""
        lock_id = lock_id or uuid.uuid4().hex
        holder, items, timeout = self._run("lock_and_get", tag, lock_id, self.lock_ttl)
        if _text(holder) != lock_id:
            return None
        return Held(tag, lock_id, _as_dict(items), int(timeout))

    def set_and_release(self, held: Held, items: Mapping[str, str | bytes],
                        removed: Iterable[str] = ()) -> bool:
        """SetAndReleaseItemExclusive: write the changed items and release; False if the lock was not ours."""
        removed = list(removed)
        return bool(self._run("set_and_release", held.tag, held.lock_id, self.timeout, len(removed), *removed,
                              *_pairs(items)))

    def release(self, held: Held) -> None:
        """ReleaseItemExclusive: release without writing."""
        self._run("release", held.tag, held.lock_id)

    def get(self, tag: str) -> tuple[dict[str, str], int]:
        """GetItem (a read-only request): the items and the timeout (-1: no session), no lock taken."""
        _, items, timeout = self._run("get", tag)
        return _as_dict(items), int(timeout)

    def reset_timeout(self, tag: str) -> bool:
        return bool(self._run("reset_timeout", tag))

    def remove(self, held: Held) -> bool:
        return bool(self._run("remove", held.tag, held.lock_id))

    def write(self, tag: str, items: Mapping[str, str | bytes]) -> bool:
        """One request that changes the session: lock, read, write, release. False if it was held elsewhere."""
        held = self.lock_and_get(tag)
        return held is not None and self.set_and_release(held, items)


@dataclass(frozen=True)
class SessionState:
    """What Redis holds of one session, read key by key (not through the scripts, which would reset TTLs)."""

    data: bool
    internal: bool
    lock: str | None  # the lock id held, or None
    data_ttl: int  # seconds (-2: no key, -1: no TTL)

    @property
    def whole(self) -> bool:
        return self.data and self.internal

    @property
    def half(self) -> bool:
        """One of its two keys gone: the provider then sees an empty or timeout-less session."""
        return self.data != self.internal


def inspect(client: Any, tag: str) -> SessionState:
    lock, data, internal = session_keys(tag)
    holder = client.get(lock)
    return SessionState(bool(client.exists(data)), bool(client.exists(internal)),
                        _text(holder) if holder is not None else None, int(client.ttl(data)))


def _pairs(items: Mapping[str, str | bytes]) -> list[str | bytes]:
    return [x for k, v in items.items() for x in (k, v)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_dict(flat: Any) -> dict[str, str]:
    flat = list(flat or [])
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
