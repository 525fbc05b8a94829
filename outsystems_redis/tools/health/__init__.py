"""The health check: gather facts (gather.py) -> judge them (outsystems_redis/judge.py) -> print (report.py).

`python -m outsystems_redis.tools.health` is the command line (__main__.py, not imported here, so runpy
runs it fresh). Callers import this package and use one namespace, as they did before the split.
"""

from outsystems_redis.judge import (
    FAIL,
    OK,
    SLOTS,
    WARN,
    ClusterNode,
    Facts,
    Finding,
    NodeFacts,
    Tls,
    check_tls,
    exit_code,
    judge,
    parse_cluster_info,
    parse_cluster_nodes,
    slot_ranges,
    verdict,
)
from outsystems_redis.tools.health.gather import (
    CONNECT_TIMEOUT,
    gather,
    gather_node,
    reason,
    redis_tls_kwargs,
    run_check,
    session_keys,
    tls_reason,
)
from outsystems_redis.tools.health.report import report, to_json

__all__ = [
    "CONNECT_TIMEOUT", "FAIL", "OK", "SLOTS", "WARN", "ClusterNode", "Facts", "Finding", "NodeFacts", "Tls",
    "check_tls", "exit_code", "gather", "gather_node", "judge", "parse_cluster_info", "parse_cluster_nodes", "reason",
    "redis_tls_kwargs", "report", "run_check", "session_keys", "slot_ranges", "tls_reason", "to_json", "verdict",
]
