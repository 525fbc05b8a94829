"""The health check of the OutSystems session store: one Redis server or a Redis Cluster.

    python -m outsystems_redis.tools.health --nodes HOST:PORT[,HOST:PORT...] [--cluster] [--wait SECONDS] [--json]
                                    [--tls] [--cacert FILE | --cacert-env VAR]
    python -m outsystems_redis.tools.health --through-cloudwatch --stack STACK --region REGION \
        --servers NAME=ROLE_ID:INSTANCE_ID[,...]
                                    [--cluster] [--wait SECONDS]

The second form (the post-deploy check's default) reads the servers' own verdicts from CloudWatch with
the caller's AWS credentials, so it runs from anywhere (outsystems_redis/tools/health/cloudwatch.py).

The password comes from REDIS_PASSWORD, never from an argument (it would show in `ps`). The check logs in
as a front-end does; its printed fix lines administer, so on Redis 7.0 they log in as the operations user
with REDIS_OPS_PASSWORD (the stack's operations secret), on 5.0 with REDIS_PASSWORD.
With the `tls` stack key on, give the stack's CA (the `caCertificate` output) as a
file (--cacert) or as PEM text in an environment variable (--cacert-env); either
implies --tls. The servers' certificates must chain to it and name the IP connected to.
Exit codes: 0 healthy (warnings allowed unless --strict), 1 unhealthy, 2 bad usage.

Three parts, kept apart on purpose:
- gathering (outsystems_redis/tools/health/gather.py): the only code that talks to Redis;
  it turns every failure into a one-line reason instead of a traceback;
- judging (outsystems_redis/judge.py): pure functions from parsed INFO / CLUSTER NODES
  data to findings, unit-tested without Redis, and also run by the servers'
  redis-observe (so it lives in the core);
- printing (outsystems_redis/tools/health/report.py): the text report and --json.
This file is the command line: its arguments, progress lines while --wait retries, exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from outsystems_redis.judge import Tls, exit_code
from outsystems_redis.platforms import DEFAULT_PLATFORM, PLATFORMS
from outsystems_redis.tools.health.cloudwatch import POLL_SECONDS
from outsystems_redis.tools.health.gather import run_check
from outsystems_redis.tools.health.report import report, to_json
from outsystems_redis.tools.stack_file import stack_argument


def parse_nodes_arg(text: str) -> list[tuple[str, int]]:
    """"h1:7000,h2:7000" -> [("h1", 7000), ("h2", 7000)]; ValueError names the bad entry."""
    result = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"'{item}' is not HOST:PORT")
        result.append((host, int(port)))
    if not result:
        raise ValueError("no HOST:PORT given")
    return result


def expected_version_default() -> str:
    return PLATFORMS[DEFAULT_PLATFORM].redis_version


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m outsystems_redis.tools.health",
        description="Health check of the OutSystems Redis session store. Password from REDIS_PASSWORD (on Redis "
                    "7.0 the fix lines use REDIS_OPS_PASSWORD, the operations secret).",
        epilog="Exit codes: 0 healthy (or degraded, unless --strict), 1 unhealthy, 2 bad usage.",
    )
    p.add_argument("--nodes", help="HOST:PORT[,HOST:PORT...]: every Redis process to check")
    p.add_argument("--through-cloudwatch", action="store_true",
                   help="read the servers' own verdicts from CloudWatch instead of connecting to them "
                        "(needs --stack, --region, --servers and cloudwatch:GetMetricData)")
    p.add_argument("--stack", type=stack_argument, help="with --through-cloudwatch: the Pulumi stack's name")
    p.add_argument("--region", help="with --through-cloudwatch: the stack's AWS region")
    p.add_argument("--account", help="with --through-cloudwatch: the stack's AWS account id; other credentials "
                                     "are refused at once")
    p.add_argument("--servers", help="with --through-cloudwatch: NAME=ROLE_ID:INSTANCE_ID[,...], every server's "
                                     "name (its Name tag) and its session (the role's unique id, its instance id), "
                                     "which names the metric namespace it alone may publish in")
    p.add_argument("--poll", type=float, default=POLL_SECONDS, metavar="SECONDS",
                   help=f"with --through-cloudwatch: seconds between reads while --wait lasts (default "
                        f"{POLL_SECONDS:g}; the servers publish once a minute)")
    p.add_argument("--cluster", action="store_true", help="the nodes form a Redis Cluster (production)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="retry until healthy or this many seconds have passed (a fresh deploy)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--expect-version", default=expected_version_default(), metavar="MAJOR.MINOR",
                   help=f"the Redis line the stack pins (default {expected_version_default()})")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--tls", action="store_true",
                   help="the servers speak TLS only (the stack's `tls` key); without a CA below, trust the system's")
    ca = p.add_mutually_exclusive_group()
    ca.add_argument("--cacert", metavar="FILE",
                    help="PEM file of the stack's CA (pulumi stack output caCertificate > redis-ca.crt); implies --tls")
    ca.add_argument("--cacert-env", metavar="VAR",
                    help="name of an environment variable holding the CA's PEM text (the post-deploy check); "
                         "implies --tls")
    return p


def tls_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser,
                  environ: Mapping[str, str] = os.environ) -> Tls | None:
    """--tls / --cacert / --cacert-env -> Tls, or None for plain TCP; bad input exits 2 with one line."""
    if args.cacert:
        try:
            with open(args.cacert, encoding="ascii") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"--cacert: cannot read {args.cacert}: {exc.strerror if isinstance(exc, OSError) else exc}")
        if "-----BEGIN CERTIFICATE-----" not in text:
            parser.error(f"--cacert: {args.cacert} holds no PEM certificate")
        return Tls(ca_file=args.cacert)
    if args.cacert_env:
        text = environ.get(args.cacert_env, "")
        if "-----BEGIN CERTIFICATE-----" not in text:
            parser.error(f"--cacert-env: ${args.cacert_env} holds no PEM certificate")
        return Tls(ca_data=text)
    return Tls() if args.tls else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage
    if args.wait < 0:
        parser.error("--wait: must be 0 or more seconds")
    if args.poll <= 0:
        parser.error("--poll: must be more than 0 seconds")
    if args.through_cloudwatch:
        return through_cloudwatch(args, parser)
    if not args.nodes:
        parser.error("--nodes is required (or --through-cloudwatch)")
    try:
        nodes = parse_nodes_arg(args.nodes)
    except ValueError as exc:
        parser.error(f"--nodes: {exc}")
    if not all(part.isdigit() for part in args.expect_version.split(".")):
        parser.error("--expect-version: give MAJOR.MINOR such as 5.0 or 7.0")
    password = os.environ.get("REDIS_PASSWORD") or None
    if password is None:
        # Every server the product deploys requires one: without it the check would report an outage.
        parser.error("REDIS_PASSWORD is not set: export the store's password first (docs/operations.md, \"Checking the "
                     "session store at 3 a.m.\": aws ssm get-parameter --with-decryption --name "
                     "/outsystems-redis/<stack>/redis-password)")
    tls = tls_from_args(args, parser)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    facts, findings = run_check(nodes, password, args.cluster, args.expect_version, args.wait, progress, tls=tls)
    print(to_json(facts, findings, args.strict) if args.json else report(facts, findings))
    return exit_code(findings, args.strict)


# AWS answers worth waiting out (the SDK already retried them a few times); anything else ends the check.
TRANSIENT_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable",
                   "InternalFailure", "InternalServiceError", "RequestTimeout"}
DIRECT_ONLY = ("json", "strict", "tls", "cacert", "cacert_env")


def through_cloudwatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The check from anywhere: wait for every server's own healthy verdict in CloudWatch; 0 healthy, 1 not."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

    from outsystems_redis.tools.health import cloudwatch

    if args.nodes:
        parser.error("--through-cloudwatch: --nodes is for the direct check; give --servers")
    given = [f"--{k.replace('_', '-')}" for k in DIRECT_ONLY if getattr(args, k)]
    if given or args.expect_version != expected_version_default():
        parser.error(f"--through-cloudwatch: {', '.join(given) or '--expect-version'} is for the direct check only")
    missing = [f"--{k}" for k in ("stack", "region", "servers") if not getattr(args, k)]
    if missing:
        parser.error(f"--through-cloudwatch needs {', '.join(missing)}")
    servers: dict[str, str] = {}
    for entry in (s.strip() for s in args.servers.split(",") if s.strip()):
        name, _, session = entry.partition("=")
        role_id, _, instance = session.partition(":")
        if not name or not role_id.isalnum() or not instance or not instance.replace("-", "").isalnum():
            parser.error(f"--servers: {entry!r} is not NAME=ROLE_ID:INSTANCE_ID (a server's Name tag, then the "
                         "end of its entry in the stack output serverMetricNamespaces)")
        if name in servers:
            parser.error(f"--servers: {name} is given twice")
        servers[name] = session
    if not servers:
        parser.error("--servers: no server given")

    def transient(exc: Exception) -> bool:
        if isinstance(exc, ClientError):
            return exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES
        return isinstance(exc, (ConnectionError, ReadTimeoutError))

    # Throttling and 5xx are retried by the SDK first (standard mode, with backoff); each call is bounded.
    config = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=20)
    try:
        if args.account:
            caller = boto3.client("sts", region_name=args.region, config=config).get_caller_identity()["Account"]
            if caller != args.account:
                print(f"UNHEALTHY - these AWS credentials are for account {caller}, the stack is in {args.account}: "
                      "the check reads CloudWatch with the credentials of the shell running `pulumi up`, not the "
                      "stack's provider. Give that shell credentials for the stack's account (AWS_PROFILE), "
                      "or set healthCheckVia: direct.")
                return 1
        client = boto3.client("cloudwatch", region_name=args.region, config=config)
        healthy, text = cloudwatch.wait_healthy(client, args.stack, servers, args.cluster, args.wait,
                                                lambda line: print(line, file=sys.stderr, flush=True),
                                                poll=args.poll, transient=transient)
    except (BotoCoreError, ClientError) as exc:
        # No credentials, AccessDenied on cloudwatch:GetMetricData, an expired session, or AWS unreachable
        # past --wait.
        print(f"UNHEALTHY - cannot read the servers' verdicts from CloudWatch in {args.region}: {exc}\n"
              "  The deploying identity needs cloudwatch:GetMetricData (docs/operations.md: The post-deploy health "
              "check), "
              "or set healthCheckVia: direct and deploy from inside the VPC.")
        return 1
    print(text)
    return 0 if healthy else 1


if __name__ == "__main__":
    from outsystems_redis.tools.cli import exit_with

    exit_with(main)
