"""The post-deploy check through CloudWatch: how it judges the servers' published verdicts, and how it fails
when AWS refuses it. (Reading what the real metrics agent published, from moto, is in
tests/integration/test_post_deploy_check.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from outsystems_redis.tools.health.cloudwatch import Reading, first_whole_minute, judge, read, report
from tests.tools import ROOT

AT = datetime(2026, 12, 6, 10, 0, 5, tzinfo=UTC)
SERVERS = ("s-1", "s-2", "s-3")
SESSION = "AROAEXAMPLEROLEID0001:i-0123456789abcdef0"  # s-1's


def healthy() -> dict[str, float]:
    return {"ClusterStateOk": 1, "SlotsServed": 16384, "ReplicaLinksDown": 0, "ShapeFailures": 0, "RoleDrift": 0}


def readings(**changed: dict[str, float | None]) -> dict[str, dict[str, Reading]]:
    """Every server healthy, except the metrics given per server (None: not published)."""
    out = {}
    for server in SERVERS:
        values = {**healthy(), **changed.get(server.replace("-", "_"), {})}
        out[server] = {m: Reading(AT, v) for m, v in values.items() if v is not None}
    return out


def test_every_server_healthy_is_healthy() -> None:
    assert judge(readings(), SERVERS) == ([], [])
    assert report(readings(), SERVERS, "prod", True).startswith(
        "HEALTHY - Redis Cluster, 3 servers, as the servers judge themselves (CloudWatch, OutSystems/Redis/prod/"
        "<role id>:<instance id>)")


@pytest.mark.parametrize(("changed", "says"), [
    ({"ClusterStateOk": 0}, "s-2: not ok at 10:00:05"),
    ({"SlotsServed": 10923}, "s-2: sees 10923 of 16384 slots served"),
    ({"ReplicaLinksDown": 1}, "s-2: 1 replica link(s) to a master down"),
    ({"ShapeFailures": 2}, "s-2: 2 failure(s) of the cluster's shape"),
    ({"ShapeFailures": None}, "s-2: an incomplete verdict"),
    ({"SlotsServed": None}, "s-2: an incomplete verdict"),
])
def test_one_bad_reading_makes_the_store_unhealthy_and_names_the_server(changed, says) -> None:
    problems, _ = judge(readings(s_2=changed), SERVERS)
    assert len(problems) == 1 and problems[0].startswith(says), problems
    text = report(readings(s_2=changed), SERVERS, "prod", True)
    assert text.startswith("UNHEALTHY") and f"FAIL {says}" in text


def test_a_server_that_published_nothing_is_unhealthy() -> None:
    got = readings()
    del got["s-3"]
    problems, _ = judge(got, SERVERS)
    assert problems == [problems[0]] and problems[0].startswith("s-3: no verdict published since the check began")
    assert "  s-3: nothing yet" in report(got, SERVERS, "prod", True)


def test_role_drift_is_a_warning_not_a_failure() -> None:
    problems, warnings = judge(readings(s_1={"RoleDrift": 1}), SERVERS)
    assert problems == [] and len(warnings) == 1 and warnings[0].startswith("s-1: holds two masters or none")
    assert report(readings(s_1={"RoleDrift": 1}), SERVERS, "prod", True).startswith("DEGRADED")


def test_no_credentials_is_one_clear_unhealthy_verdict_not_a_traceback(tmp_path) -> None:
    # What a deploying shell without AWS credentials meets: botocore's NoCredentialsError, exit 1, one verdict.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    run = subprocess.run([sys.executable, "-m", "outsystems_redis.tools.health", "--through-cloudwatch",
                          "--stack", "prod",
                          "--region", "eu-west-1", "--servers", f"s-1={SESSION}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stdout + run.stderr
    assert run.stdout.startswith("UNHEALTHY - cannot read the servers' verdicts from CloudWatch in eu-west-1")
    assert "cloudwatch:GetMetricData" in run.stdout and "healthCheckVia: direct" in run.stdout


def test_through_cloudwatch_names_what_it_lacks() -> None:
    run = subprocess.run([sys.executable, "-m", "outsystems_redis.tools.health", "--through-cloudwatch",
                          "--stack", "prod"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--through-cloudwatch needs --region, --servers" in run.stderr


@pytest.mark.parametrize("servers", ["s-1", "s-1=AROAX", "=AROAX:i-1", "s-1=AROA X:i-1", "s-1=AROAX:",
                                     "s-1=AROAX:i-1,s-1=AROAX:i-2"])
def test_a_server_without_its_session_is_refused(servers) -> None:
    """Only the server's session names the namespace it alone publishes in: a bare name would have the check
    read where any server of the stack could publish."""
    run = subprocess.run([sys.executable, "-m", "outsystems_redis.tools.health", "--through-cloudwatch",
                          "--stack", "prod",
                          "--region", "eu-west-1", "--servers", servers], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and ("is not NAME=ROLE_ID:INSTANCE_ID" in run.stderr or "s-1 is given twice" in
                                    run.stderr), run.stderr


class TwoPages:
    """GetMetricData's answer in two pages, newest first (ScanBy TimestampDescending), for one query."""

    def __init__(self, pages: list[list[tuple[datetime, float]]]) -> None:
        self.pages = pages

    def get_metric_data(self, **kwargs):  # noqa: ANN003, ANN201
        index = int(kwargs.get("NextToken", 0))
        points = self.pages[index]
        (query,) = [q for q in kwargs["MetricDataQueries"] if q["MetricStat"]["Metric"]["MetricName"] ==
                    "ClusterStateOk"]
        # Read in the server's own namespace, where only its session may publish.
        assert query["MetricStat"]["Metric"]["Namespace"] == f"OutSystems/Redis/prod/{SESSION}", query
        results = [{"Id": query["Id"], "Timestamps": [t for t, _ in points], "Values": [v for _, v in points]}]
        return {"MetricDataResults": results, **({"NextToken": str(index + 1)} if index + 1 < len(self.pages) else {})}


def test_read_keeps_the_newest_reading_across_pages_and_none_before_the_check() -> None:
    since = datetime(2026, 12, 6, 10, 1, tzinfo=UTC)
    newer, older, before = (datetime(2026, 12, 6, 10, m, tzinfo=UTC) for m in (3, 2, 0))
    got = read(TwoPages([[(newer, 1.0)], [(older, 0.0), (before, 1.0)]]), "prod", {"s-1": SESSION}, since, newer)
    assert got == {"s-1": {"ClusterStateOk": Reading(newer, 1.0)}}
    stale = read(TwoPages([[(before, 1.0)]]), "prod", {"s-1": SESSION}, since, newer)
    assert stale == {}


def test_the_check_counts_from_the_first_whole_minute_after_it_starts() -> None:
    assert first_whole_minute(datetime(2026, 12, 6, 10, 0, 40, tzinfo=UTC).timestamp()) == datetime(
        2026, 12, 6, 10, 1, tzinfo=UTC)
    assert first_whole_minute(datetime(2026, 12, 6, 10, 1, tzinfo=UTC).timestamp()) == datetime(
        2026, 12, 6, 10, 1, tzinfo=UTC)
