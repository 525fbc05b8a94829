"""Dev: a first boot with no way out yet (the NAT gateway still coming up) completes later."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from outsystems_redis.monitoring import FETCH_PASSWORD_TOOL_KEY, OBSERVE_TOOL_KEY
from outsystems_redis.render.metrics import LOGS_TIMER, LOGS_UNIT, METRICS_TIMER, METRICS_UNIT
from outsystems_redis.render.redis_conf import EC2_PATHS
from outsystems_redis.signing import SIGNED_SUFFIX
from tests.boot import machines as m
from tests.boot.support import (
    BOOT_TIMEOUT,
    UNITS_TIMEOUT,
    Deployment,
    pinned_packages,
    post_deploy_check,
    verdict,
)


def test_dev_first_boot_without_a_way_out_completes_later(root: Path) -> None:
    """cloud-init installs once: with no way out yet (NAT gateway still coming up), its package
    step fails for good. The server must still end up as rendered once the way out works."""
    deployment = Deployment.of("dev")
    fleet = m.Fleet(root)
    try:
        server = deployment.add_to(fleet, 0)
        server.set_way_out(False)
        fleet.boot([server], BOOT_TIMEOUT)
        print(f"cloud-init with no way out:\n{server.out('cloud-init status --long')}")
        server.set_way_out(True)
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
        mismatched = server.rendered_files_mismatch()
        assert not mismatched, "write_files did not land as rendered:\n" + "\n".join(mismatched)
        for package, version in pinned_packages(server.config):
            installed = server.out(f"dpkg-query -W -f '${{Version}}' {package}")
            assert fnmatch.fnmatch(installed, version), f"{package} {installed}, pinned {version}"
        print(verdict(post_deploy_check(fleet, deployment)))
    finally:
        fleet.destroy()


def test_dev_first_boot_while_ssm_denies_throttles_and_stalls(root: Path) -> None:
    """At a first boot AWS answers as it does while a stack is new: S3 denies the launcher redis-auth's
    program, then SSM denies the password until the instance role's policy has propagated, then throttles,
    then answers after the caller gave up. redis-auth keeps trying within its bounds, and Redis starts with
    the password once SSM answers."""
    deployment = Deployment.of("dev")
    fleet = m.Fleet(root)
    try:
        server = deployment.add_to(fleet, 0)
        (parameter,) = [name for name in server.parameters if name.endswith("/redis-password")]
        faults = ["denied", "denied", "throttled", "slow"]
        # First the launcher's fetch of redis-auth's program from S3, then the password itself.
        server.queue_ssm_faults([("denied", f"s3:{FETCH_PASSWORD_TOOL_KEY}{SIGNED_SUFFIX}")]
                                + [(kind, parameter) for kind in faults])
        fleet.boot([server], BOOT_TIMEOUT)
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
        assert server.ssm_faults_left() == []
        auth = server.out("journalctl -u redis-auth --no-pager -o cat")
        # The password sync (every minute) reads the same parameter and may meet a fault or two itself.
        both = auth + server.out("journalctl -u redis-password-sync --no-pager -o cat")
        assert "AccessDeniedException" in both and "ThrottlingException" in both, both
        assert "cannot read" in auth and "wrote /etc/redis/auth/auth.conf" in auth, auth
        assert f"cannot fetch {FETCH_PASSWORD_TOOL_KEY} yet" in auth, auth
        assert server.out("systemctl is-active redis-server@6379.service") == "active"
        print(verdict(post_deploy_check(fleet, deployment)))
    finally:
        fleet.destroy()


def test_dev_jobs_meet_s3_cloudwatch_and_logs_faults_and_say_what_they_lack(root: Path) -> None:
    """The minute jobs on a booted server while AWS answers as it does under load or a policy change: the
    launcher's fetch from S3 is denied, throttled (503) and stalled, and it runs its last good copy with a
    WARNING; CloudWatch refuses and throttles PutMetricData, and the run fails with the service's own error
    while the next one publishes; CloudWatch Logs throttles PutLogEvents, and the next run sends that batch
    again. Planted (the launcher without its fallback to the last copy): the first S3 fault fails the run."""
    deployment = Deployment.of("dev")
    fleet = m.Fleet(root)
    try:
        server = deployment.add_to(fleet, 0)
        fleet.boot([server], BOOT_TIMEOUT)
        server.wait_units_active(m.expected_units(server.config), UNITS_TIMEOUT)
        # The test runs the jobs itself: a timer's run would take a fault meant for the next manual one.
        server.exec(f"systemctl stop {METRICS_TIMER} {LOGS_TIMER}")

        def run(unit: str) -> tuple[int, str]:
            """One run of `unit` to its end: its exit status and what it wrote to the journal."""
            started = server.start(unit)
            invocation = server.out(f"systemctl show -p InvocationID --value {unit}")
            journal = server.out(f"journalctl _SYSTEMD_INVOCATION_ID={invocation} --no-pager -o cat")
            return started.returncode, journal

        def published() -> int:
            return server.out(f"cat {m.AWS_LOG}").count(" cloudwatch put-metric-data ")

        assert run(METRICS_UNIT)[0] == 0  # a first good fetch: the copy the faults below fall back on
        for kind in ("denied", "throttled", "slow"):
            server.queue_ssm_faults([(kind, f"s3:{OBSERVE_TOOL_KEY}{SIGNED_SUFFIX}")])
            before = published()
            status, journal = run(METRICS_UNIT)
            assert status == 0 and f"WARNING: no usable {OBSERVE_TOOL_KEY}" in journal, (kind, journal)
            # In the stack's former namespace, then the server's own (monitoring.former_namespace).
            assert published() == before + 2, f"{kind}: the last copy did not publish"
        assert server.ssm_faults_left() == []

        server.queue_ssm_faults([("denied", "cloudwatch:put-metric-data"), ("throttled", "cloudwatch:put-metric-data")])
        for error in ("(AccessDenied) when calling the PutMetricData operation",
                      "(Throttling) when calling the PutMetricData operation"):
            status, journal = run(METRICS_UNIT)
            assert status != 0 and "redis-observe: ERROR: aws cloudwatch put-metric-data" in journal, journal
            assert error in journal, journal
        assert run(METRICS_UNIT)[0] == 0 and server.ssm_faults_left() == []

        # A line the log shipper has not sent yet, in the Redis log it ships.
        marker = f"osr-boot-marker-{os.getpid()}"
        server.exec(f"echo {marker} >> {EC2_PATHS.log_file(6379)}")
        server.queue_ssm_faults([("throttled", "logs:put-log-events")])
        status, journal = run(LOGS_UNIT)
        assert status != 0 and "(ThrottlingException) when calling the PutLogEvents operation" in journal, journal
        assert "the next run sends it again" in journal and marker not in server.out(f"cat {m.AWS_LOG}")
        assert run(LOGS_UNIT)[0] == 0 and server.ssm_faults_left() == []
        assert server.out(f"cat {m.AWS_LOG}").count(marker) == 1, "the refused batch was not sent again"
    finally:
        fleet.destroy()
