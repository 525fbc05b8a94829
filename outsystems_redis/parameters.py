"""Where each secret lives in SSM Parameter Store, and the TLS certificates' shape.

Shared by the program (which writes the parameters and lets the servers read
exactly these) and the renderers (whose boot step fetches them).
"""

from __future__ import annotations

import hashlib

from outsystems_redis.topology import Server

# The private CA outlives any server; server certificates are re-issued by
# `pulumi up` once they are within EARLY_RENEWAL_HOURS of expiry.
CA_VALIDITY_HOURS = 10 * 365 * 24
SERVER_VALIDITY_HOURS = 2 * 365 * 24
EARLY_RENEWAL_HOURS = 30 * 24


def password_parameter(stack: str) -> str:
    return f"/outsystems-redis/{stack}/redis-password"


def ops_password_parameter(stack: str) -> str:
    """The operations secret of a stack: the servers' own scripts know the administrative
    commands by names made from it (redis_conf.SECRET_NAMED_COMMANDS); the front-ends never see it."""
    return f"/outsystems-redis/{stack}/ops-password"


# The Redis 7.0 user that the servers' scripts, agents and the operator's tools log in as, with the operations
# secret for its password (redis_conf.OPERATIONS_RULES; lib.sh and make_room_agent.py name it too, held equal by
# tests/render/test_password.py). The front-ends keep Redis's `default` user.
OPERATIONS_USER = "operations"

# The Redis 7.0 user that replicas log in to their master as (`masteruser`; redis_conf.REPLICATION_RULES: the
# replication handshake and nothing else), so the front-ends' `default` user needs no PSYNC. Its password is made
# from the operations secret (replication_password; lib.sh: replication_secret), not kept apart: whoever holds
# the operations secret administers Redis anyway, and the replication password, which every replica holds and
# sends to its master (in clear text without TLS), gives a full copy and nothing more, never the secret itself.
REPLICATION_USER = "replication"


def replication_password(ops: str) -> str:
    """The replication user's password on the servers whose operations secret is `ops`."""
    return hashlib.sha256(f"replication:{ops}".encode()).hexdigest()


def tls_ca_parameter(stack: str) -> str:
    return f"/outsystems-redis/{stack}/tls/ca.crt"


def tls_cert_parameter(stack: str, server: int) -> str:
    return f"/outsystems-redis/{stack}/tls/server-{server + 1}.crt"


def tls_key_parameter(stack: str, server: int) -> str:
    return f"/outsystems-redis/{stack}/tls/server-{server + 1}.key"


def server_certificate_ips(server: Server) -> list[str]:
    """Clients and peers connect by IP (the OutSystems connection string names IPs)."""
    return [server.private_ip, "127.0.0.1"]
