"""Printing the health check: the text report (problems first, each with its fix) and --json."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict

from outsystems_redis.judge import FAIL, OK, Facts, Finding, exit_code, verdict


def describe(facts: Facts) -> str:
    hosts = list(dict.fromkeys(n.host for n in facts.nodes))
    what = f"Redis Cluster, {len(hosts)} servers" if facts.cluster else "Redis server"
    return f"{what}{' over TLS' if facts.tls else ''}: {', '.join(n.address for n in facts.nodes)}"


def report(facts: Facts, findings: Sequence[Finding]) -> str:
    """Problems first, each with its server and fix; then what was checked and passed."""
    v = verdict(findings)
    problems = [f for f in findings if f.severity != OK]
    fails = sum(f.severity == FAIL for f in problems)
    warns = len(problems) - fails
    head = {"healthy": "HEALTHY", "degraded": "DEGRADED (sessions work; act soon)",
            "unhealthy": "UNHEALTHY (sessions at risk or failing)"}[v]
    lines = [f"{head} - {describe(facts)}"]
    if problems:
        lines.append(f"{fails} failure(s), {warns} warning(s):")
    for f in problems:
        lines.append(f"  {f.severity:<4}  {f.message}")
        if f.fix:
            lines.append(f"        fix: {f.fix}")
    passed = [f for f in findings if f.severity == OK]
    if passed:
        lines.append("Passed:")
        lines += [f"  ok    {line}" for line in summarize_passed(passed)]
    return "\n".join(lines)


_SAME_ON_EVERY_NODE = {"cluster-state": "cluster_state:ok", "version": "Redis version", "memory": "memory"}


def summarize_passed(passed: Sequence[Finding]) -> list[str]:
    """Per-node OKs of the same check fold into one line; details stay in --json."""
    lines: list[str] = []
    for check in dict.fromkeys(f.check for f in passed):
        group = [f for f in passed if f.check == check]
        if check == "memory" and len(group) > 1:
            fullest = max(group, key=lambda f: int(re.search(r"\((\d+)%\)", f.message + "(0%)").group(1)))
            lines.append(f"{len(group)} processes within maxmemory; the fullest: {fullest.message}")
        elif check in _SAME_ON_EVERY_NODE and len(group) > 1:
            detail = group[0].message.split(" ", 1)[1]  # drop the address: "runs Redis 7.0.15"
            same = all(f.message.split(" ", 1)[1] == detail for f in group)
            lines.append(f"{len(group)} processes: {detail}" if same else
                         f"{_SAME_ON_EVERY_NODE[check]}: " + "; ".join(f.message for f in group))
        else:
            lines += [f.message for f in group]
    return lines


def to_json(facts: Facts, findings: Sequence[Finding], strict: bool = False) -> str:
    return json.dumps({
        "verdict": verdict(findings),
        "exit_code": exit_code(findings, strict),
        "cluster": facts.cluster,
        "nodes": [n.address for n in facts.nodes],
        "expected_version": facts.expected_version,
        "tls": facts.tls is not None,
        "findings": [asdict(f) for f in findings],
    }, indent=2)
