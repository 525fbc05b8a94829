"""Gathering facts for the health check: the only code of it that talks to Redis (redis-py).

Every failure becomes a one-line reason a person can act on, never a traceback;
`run_check` gathers, judges (outsystems_redis/judge.py) and, with `wait`, retries until
no failure remains (a fresh deploy).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Sequence

from outsystems_redis.judge import (
    FAIL,
    Facts,
    Finding,
    NodeFacts,
    Tls,
    judge,
    parse_cluster_info,
    parse_cluster_nodes,
    parse_info,
    verdict,
)
from outsystems_redis.tools.sessions import SessionStore, session_tag
from outsystems_redis.tools.sessions import session_keys as provider_keys

CONNECT_TIMEOUT = 3.0
SESSION_TTL = 60  # seconds: the probe keys expire by themselves even if the delete never runs


def redis_tls_kwargs(tls: Tls) -> dict:
    """redis-py arguments: TLS, the peer's certificate checked against the CA and the IP connected to."""
    return {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True,
            "ssl_ca_certs": tls.ca_file, "ssl_ca_data": tls.ca_data}


_VERIFY_DETAIL = re.compile(r"certificate verify failed: (.*?)(?: \(_ssl\.c:\d+\))?\.?$", re.IGNORECASE)


def tls_reason(text: str, address: str, ca_given: bool = True) -> str | None:
    """A TLS failure in one line, or None when `text` is not one. `ca_given`: a CA was passed (--cacert)."""
    low = text.lower()
    if "certificate verify failed" in low:
        detail = _VERIFY_DETAIL.search(text)
        why = detail.group(1) if detail else "certificate verify failed"
        if "expired" in why.lower():
            return (f"TLS certificate expired ({why}): pulumi up renews it in Parameter Store; then restart "
                    "redis-auth and Redis on that server (docs/upgrades-and-migration.md: certificate renewal)")
        if "mismatch" in why.lower() or "doesn't match" in why.lower() or "not valid for" in why.lower():
            return (f"TLS certificate does not name {address} ({why}): connect by the server's private IP, "
                    "which its certificate names")
        if not ca_given:
            return (f"TLS certificate not trusted ({why}): no CA was given, and the stack's own CA signs the "
                    "servers' certificates: add --cacert FILE (pulumi stack output caCertificate > redis-ca.crt)")
        return (f"TLS certificate not trusted ({why}): the server's certificate is not signed by the given CA; "
                "use the stack's CA (pulumi stack output caCertificate)")
    if "wrong version number" in low or "record layer failure" in low or "unexpected eof" in low \
            or "packet length too long" in low or "tlsv1 alert" in low or "[ssl" in low:
        return f"TLS handshake failed ({text}): does {address} speak TLS (the stack's `tls` key)?"
    return None


# A server that does not answer on its first boot is usually still installing; when its
# way out was broken, redis-provision retries the install and says so in its journal.
FIRST_BOOT_HINT = ("; on a new server: still installing? On the server (Session Manager): "
                   "journalctl -u redis-provision -u redis-auth")


def reason(exc: BaseException, address: str, timeout: float = CONNECT_TIMEOUT, tls: bool = False,
           ca_given: bool = True) -> str:
    """One line a person can act on, for the errors a session store check meets."""
    import redis

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    tls_why = tls_reason(text, address, ca_given)
    if tls_why:
        return tls_why
    if isinstance(exc, redis.AuthenticationError) or "wrongpass" in low or "invalid password" in low \
            or "invalid username-password" in low:
        if "required" in low:
            return "the server requires a password: set REDIS_PASSWORD"
        return ("wrong password (AUTH rejected): check REDIS_PASSWORD; after a password change each server "
                "takes the new one within a minute (redis-password-sync.timer)")
    if "noauth" in low or "authentication required" in low:
        return "the server requires a password: set REDIS_PASSWORD"
    if "without any password configured" in low:
        return "the server has no password set (OutSystems requires one): check requirepass in redis.conf"
    if isinstance(exc, redis.TimeoutError) or "timed out" in low or "timeout" in low:
        return (f"no answer within {timeout:g}s (is this machine allowed by the security group, "
                "and the server up?" + (" Does it speak TLS? It waits for plain text when the stack's `tls` "
                                        "key is off)" if tls else ")") + FIRST_BOOT_HINT)
    if not tls and ("reset by peer" in low or "closed by server" in low):
        # A TLS-only port drops a client that sends plain text.
        return (f"{address} closed the connection: it speaks TLS only if the stack's `tls` key is on "
                "(use --tls --cacert FILE)")
    if "refused" in low:
        return f"connection refused: nothing listens on {address} (is redis-server running?)" + FIRST_BOOT_HINT
    if "name or service not known" in low or "nodename nor servname" in low:
        return "unknown host name"
    if "loading" in low:
        return "Redis is still loading its data set"
    return text


def _ca_given(tls: Tls | None) -> bool:
    return bool(tls and (tls.ca_file or tls.ca_data))


def _client(host: str, port: int, password: str | None, timeout: float, tls: Tls | None = None):
    import redis

    client = redis.Redis(host=host, port=port, password=password, socket_timeout=timeout,
                         socket_connect_timeout=timeout, decode_responses=True,
                         **(redis_tls_kwargs(tls) if tls else {}))
    # INFO as the text Redis sends, for judge.parse_info (the agent's reader), not redis-py's typed guess.
    client.set_response_callback("INFO", lambda response, **_: response)
    return client


def gather_node(host: str, port: int, password: str | None, timeout: float = CONNECT_TIMEOUT,
                tls: Tls | None = None) -> NodeFacts:
    facts = NodeFacts(host, port)
    try:
        r = _client(host, port, password, timeout, tls)
        try:
            facts.info = parse_info(r.execute_command("INFO"))
            if tls is not None:
                facts.cert_expires = _cert_expiry(r)
            if str(facts.info.get("cluster_enabled", "0")) == "1":
                facts.cluster_info = parse_cluster_info(r.execute_command("CLUSTER", "INFO"))
                facts.cluster_nodes = parse_cluster_nodes(r.execute_command("CLUSTER", "NODES"), host)
        finally:
            r.close()
    except Exception as exc:  # every failure becomes a one-line reason, never a traceback
        facts.error = reason(exc, facts.address, timeout, tls is not None, _ca_given(tls))
    return facts


def _cert_expiry(client) -> float | None:
    """notAfter of the certificate the server presented on `client`'s (verified) connection."""
    import ssl

    conn = client.connection_pool.get_connection()
    try:
        sock = getattr(conn, "_sock", None)
        cert = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        return ssl.cert_time_to_seconds(cert["notAfter"]) if cert and "notAfter" in cert else None
    finally:
        client.connection_pool.release(conn)


def session_keys() -> tuple[str, str]:
    """A pair of keys shaped like OutSystems' session keys: one hash tag, so one slot, one master."""
    tag = f"{{{uuid.uuid4()}_{uuid.uuid4().hex[:24]}}}"
    return f"{tag}_Data", f"{tag}_Internal"


def gather_round_trip(nodes: Sequence[tuple[str, int]], password: str | None, cluster: bool,
                      timeout: float = CONNECT_TIMEOUT, tls: Tls | None = None) -> tuple[float | None, str | None]:
    """Write, read back and delete a session through the client OutSystems' would use. (ms, error)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import ClusterNode as PyClusterNode
    from redis.cluster import RedisCluster
    from redis.retry import Retry

    started = time.monotonic()
    client = None
    try:
        if cluster:
            client = RedisCluster(
                startup_nodes=[PyClusterNode(h, p) for h, p in nodes], password=password, decode_responses=True,
                socket_timeout=timeout, socket_connect_timeout=timeout, require_full_coverage=True,
                retry=Retry(NoBackoff(), 1), **(redis_tls_kwargs(tls) if tls else {}),
            )
        else:
            client = _client(nodes[0][0], nodes[0][1], password, timeout, tls)
        # As a front-end does it: the session provider's scripts, its three keys, its write lock.
        store = SessionStore(client, timeout=SESSION_TTL)
        tag = session_tag("outsystems-redis-health")
        payload = os.urandom(64).hex()
        store.create(tag, {"probe": payload})
        held = store.lock_and_get(tag)
        if held is None or held.items != {"probe": payload}:
            return None, "the session read back under its write lock differs from the one written"
        if not store.set_and_release(held, {"page": "probe"}):
            return None, "the session's write lock was lost between taking it and writing"
        items, timeout = store.get(tag)
        if items != {"probe": payload, "page": "probe"} or timeout != SESSION_TTL:
            return None, "the value read back differs from the value written"
        if not 0 < client.ttl(provider_keys(tag)[1]) <= SESSION_TTL:
            return None, "the session has no TTL after the provider's write"
        held = store.lock_and_get(tag)
        if held is None or not store.remove(held):
            return None, "the session could not be removed under its write lock"
        return (time.monotonic() - started) * 1000, None
    except redis.RedisError as exc:
        return None, reason(exc, f"{nodes[0][0]}:{nodes[0][1]}", timeout, tls is not None, _ca_given(tls))
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, tls_reason(text, f"{nodes[0][0]}:{nodes[0][1]}", _ca_given(tls)) or text
    finally:
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


def gather(nodes: Sequence[tuple[str, int]], password: str | None, cluster: bool, expected_version: str,
           timeout: float = CONNECT_TIMEOUT, tls: Tls | None = None) -> Facts:
    facts = Facts(cluster, expected_version, [gather_node(h, p, password, timeout, tls) for h, p in nodes], tls=tls)
    # The round trip only means something once the nodes answer; otherwise it repeats their reason.
    if any(not n.error for n in facts.nodes):
        facts.round_trip_ms, facts.round_trip_error = gather_round_trip(
            [(n.host, n.port) for n in facts.nodes if not n.error], password, cluster, timeout, tls)
    return facts


def run_check(nodes: Sequence[tuple[str, int]], password: str | None, cluster: bool, expected_version: str,
              wait: float = 0, progress: Callable[[str], None] | None = None,
              interval: float = 3.0, tls: Tls | None = None) -> tuple[Facts, list[Finding]]:
    """Check once, or retry until no FAIL remains or `wait` seconds have passed. `tls`: the servers speak TLS."""
    deadline = time.monotonic() + wait
    started = time.monotonic()
    while True:
        facts = gather(nodes, password, cluster, expected_version, tls=tls)
        findings = judge(facts)
        if verdict(findings) != "unhealthy" or time.monotonic() + interval > deadline:
            return facts, findings
        if progress:
            first = next(f for f in findings if f.severity == FAIL)
            fails = sum(f.severity == FAIL for f in findings)
            progress(f"waiting ({time.monotonic() - started:.0f}s of {wait:g}s): {fails} failure(s), "
                     f"first: {first.message}")
        time.sleep(interval)
