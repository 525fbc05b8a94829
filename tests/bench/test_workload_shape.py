"""The benchmarks' session workload drives Redis the way the session provider does (benchmarks/workload.py).

A short closed-loop run against one real Redis (the dev topology) of each line, then what Redis saw and
holds: every request was two EVALSHA calls and nothing else from the client, the sessions are a `_Data` hash
and an `_Internal` hash with the session timeout as their TTL, and no write lock is left behind.
"""

from __future__ import annotations

import pytest

from benchmarks.workload import DATA_ITEM, LoadSpec, lock_key, prefill, run_load, session_keys

KEYSPACE = 60
PREFILLED = 30  # the other half are new sessions: the request creates them (a miss)
TTL = 900
REQUESTS = 150


def client_calls(client) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in client.info("commandstats").items()}


@pytest.mark.parametrize("version", ["5.0", "7.0"])
def test_a_request_is_the_providers_two_scripts_over_hashes_and_a_released_lock(loopback_factory, version):
    lo = loopback_factory(version, 1)
    lo.start()
    p = lo.processes[0]
    nodes = [(p.host, p.port)]
    prefill(nodes, lo.password, False, PREFILLED, 2048, 0, ttl_s=TTL)
    c = lo.client(p)
    lo.config(p, "RESETSTAT")  # as the servers name CONFIG (its secret name)
    # A fixed number of requests, not a duration: a busy machine runs fewer per second. 150 random draws
    # over 60 sessions miss at least one new session but with a chance of 2^-150.
    result = run_load(LoadSpec(nodes=nodes, password=lo.password, cluster=False, keyspace=KEYSPACE,
                               duration_s=60.0, data_bytes=2048, processes=1, ttl_s=TTL, max_requests=REQUESTS))
    assert result["errors"] == 0, result["error_kinds"]
    assert result["requests"] == REQUESTS
    assert 0 < result["misses"] <= KEYSPACE - PREFILLED  # only the sessions that did not exist yet

    calls = client_calls(c)
    # Each request: EVALSHA lock_and_get + EVALSHA set_and_release. The SCRIPT LOADs are the connection's.
    assert calls["evalsha"] == 2 * result["requests"], calls
    # What the scripts run counts too: set_and_release's GET of the lock, once a request (lock_and_get
    # only GETs a lock it could not take, and one generator never contends with itself). A plain request
    # would add two GETs and two SETs of its own.
    assert calls.get("get") == result["requests"] and not calls.get("set") and not calls.get("eval"), calls

    for sid in range(KEYSPACE):
        data, internal = session_keys(sid)
        if not c.exists(data):
            continue  # a new session no request picked
        assert c.type(data) == "hash" and c.type(internal) == "hash", sid
        assert set(c.hkeys(data)) == {DATA_ITEM.decode()} and c.hstrlen(data, DATA_ITEM) == 2048
        assert c.hget(internal, "SessionTimeout") == str(TTL)
        assert 0 < c.ttl(data) <= TTL and 0 < c.ttl(internal) <= TTL, sid
        assert not c.exists(lock_key(sid)), f"session {sid}: the write lock was left behind"

