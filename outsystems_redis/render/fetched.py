"""Programs the servers fetch from the stack's bucket at every run, instead of carrying them in user data.

EC2 refuses user data above 16 KB (after base64 decoding; ours is gzip). The jobs
that need AWS anyway, and so cannot run without it, live in the bucket: the
metrics publisher and log shipper (redis-observe.py, with the health check's
judge carried inside it), the hourly backup (redis-backup.sh, which writes to that very
bucket), the password sync (redis-password-sync.sh, which reads Parameter Store
every minute), and redis-auth's boot steps that read the password and the TLS
material from Parameter Store (redis-fetch-password.sh, redis-fetch-tls.sh). The
user data carries their units and one launcher (metrics-observe.sh, installed as
metrics.OBSERVE_PATH) that fetches the program named by TOOLS_KEY and runs it, or
its last copy when S3 or SSM cannot be reached; at a first boot, with no copy yet,
redis-auth's launcher keeps trying (FIRST_FETCH_SECONDS). The cluster join
(redis-cluster-join.sh) too, as Redis cannot start without redis-auth's fetch anyway: root
fetches and verifies it, the redis user runs the verified copy. What forms the first
cluster and what runs at a stop stay in the user data. A changed program is
uploaded by `pulumi up` and reaches every running server at its next run.
Pure text, no pulumi.
"""

from __future__ import annotations

from outsystems_redis.render import programs


def fetched_tools() -> dict[str, str]:
    """Key under tools/ (without the prefix) -> the exact text the program uploads there (each program's
    `fetched`, render/programs.py)."""
    return programs.fetched_tools()
