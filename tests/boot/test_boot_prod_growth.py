"""Prod: three servers form the crossed cluster, publish, grow to four, and one is powered off and on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from moto.core import DEFAULT_ACCOUNT_ID

from outsystems_redis.monitoring import JOIN_TOOL_KEY
from outsystems_redis.render.systemd import JOIN_UNIT, REDIS_RUN_STATE_DIR
from outsystems_redis.signing import SIGNED_SUFFIX
from tests.boot import machines as m
from tests.boot.support import (
    BOOT_TIMEOUT,
    CHECK_TIMEOUT,
    FAILOVER_TIMEOUT,
    HEALTH_CHECK,
    PLATFORM,
    SLOTS,
    UNITS_TIMEOUT,
    Cluster,
    Deployment,
    assert_crossed,
    assert_first_boot,
    assert_no_boot_problems,
    assert_replicated_elsewhere,
    assert_roles_restore_themselves,
    assert_sessions_kept,
    aws_callers,
    cli,
    cluster_view,
    post_deploy_check,
    verdict,
    write_sessions,
)
from tests.integration.metrics_stand_in import deployer_env
from tests.integration.moto_stand_in import VENV_BIN
from tests.unit.program import ACCOUNT, run_program


def test_prod_first_boot_forms_the_crossed_cluster(prod: Cluster) -> None:
    servers = list(prod.fleet.servers.values())
    assert len(servers) == 3
    for server in servers:
        assert_first_boot(server)
    # The cluster was formed by the shipped bootstrap, run by systemd from the unit the
    # user data installed on exactly one server (its files matched the render above).
    formers = [(s, u) for s in servers for u in m.expected_units(s.config) if "bootstrap" in u]
    assert len(formers) == 1, f"bootstrap units: {[(s.name, u) for s, u in formers]}"
    server, unit = formers[0]
    journal = server.out(f"journalctl -b --no-pager -o cat -u {unit}")
    assert "[OK] All 16384 slots covered." in journal, journal  # redis-cli --cluster create ran here
    assert re.search(r"(?m)^cluster-bootstrap: done$", journal), journal
    print(f"{server.name} {unit}:\n" + "\n".join(journal.splitlines()[-5:]))
    # It did so inside its sandbox, as systemd loaded it (outsystems_redis.render.systemd.SANDBOX).
    shown = server.out(f"systemctl show -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp {unit}")
    assert sorted(shown.split()) == ["NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
                                     "ProtectSystem=strict"], shown


def test_prod_post_deploy_check(prod: Cluster) -> None:
    print(verdict(post_deploy_check(prod.fleet, prod.deployment)))
    assert_crossed(cluster_view(prod.fleet, prod.deployment, prod.deployment.nodes[0]), 3)


def test_prod_servers_publish_metrics_and_logs(prod: Cluster) -> None:
    """redis-observe's timers, as booted: each server fetches the tool, publishes its metrics (the cluster
    healthy, its own name as dimension) and ships its units' journal, read by the real journalctl."""
    for server in prod.fleet.servers.values():
        def recorded(server: m.Server = server) -> list[str]:
            return server.out(f"cat {m.AWS_LOG}").splitlines()

        def latest_metrics(server: m.Server = server) -> dict | None:
            lines = recorded(server)
            published = [i for i, line in enumerate(lines) if "cloudwatch put-metric-data" in line]
            return {d["MetricName"]: d for d in json.loads(lines[published[-1] + 1])} if published else None

        def healthy_metrics(server: m.Server = server) -> dict | None:
            data = latest_metrics(server)
            ok = data and data["ClusterStateOk"]["Value"] == 1 and data["SlotsServed"]["Value"] == SLOTS
            return data if ok else None

        m.wait_for(lambda: any("logs put-log-events" in line and "/journal " in line for line in recorded()), 150,
                   f"{server.name}: no journal shipped", server.diagnostics)
        # A run during the cluster's first minutes rightly published cluster_state not ok; the next ones
        # (every minute) must say healthy, with every slot served.
        data = m.wait_for(healthy_metrics, 150,
                          f"{server.name}: no publish with ClusterStateOk 1 and {SLOTS} slots served",
                          server.diagnostics)
        lines = recorded()
        assert any(line.split()[1:3] == ["s3", "cp"] for line in lines)
        assert {x["Name"]: x["Value"] for x in data["ClusterStateOk"]["Dimensions"]} == {
            "Stack": "prod", "Server": server.hostname}
        journal = next(i for i, line in enumerate(lines) if "logs put-log-events" in line and "/journal " in line)
        # redis-auth's own line, as the real journal has it (identifier and pid), from the first boot.
        payload = lines[journal + 1]
        wrote = r'"message": "redis-auth\[\d+\]: redis-auth: wrote /etc/redis/auth/auth.conf'
        assert re.search(wrote, payload), payload[:500]
        assert prod.deployment.password not in "\n".join(lines)


# Sends on, inside the deployer's namespace, what one server's `aws cloudwatch put-metric-data` calls carried.
RELAY = """\
import json, sys
import boto3
url, recorded = sys.argv[1], sys.stdin.read().splitlines()
for i, line in enumerate(recorded):
    if " cloudwatch put-metric-data " in f" {line} ":
        args = line.split()
        boto3.client("cloudwatch", endpoint_url=url, region_name=args[args.index("--region") + 1],
                     aws_access_key_id="testing", aws_secret_access_key="testing").put_metric_data(
            Namespace=args[args.index("--namespace") + 1], MetricData=json.loads(recorded[i + 1]))
        print("relayed")
"""


def test_the_default_post_deploy_check_from_outside_the_vpc(prod: Cluster) -> None:
    """The program's default check (healthCheckVia: cloudwatch), run as pulumi-command runs it, by a deployer
    with AWS credentials only: no password, and a network namespace of its own whose only interface is
    loopback (no route to the servers; moto, CloudWatch's stand-in, listens there). The booted servers' own
    metrics agent publishes through the boot stand-in `aws`, which records each call with its payload; each
    call goes on to moto as the server made it, and the check reads it there."""
    check = run_program("prod", PLATFORM).named(HEALTH_CHECK)
    assert "--through-cloudwatch" in check.inputs["create"] and not check.inputs.get("environment")
    servers = list(prod.fleet.servers.values())
    ns = f"{prod.fleet.vpc.tag}-deployer"  # removed with the VPC's namespaces
    m.run(["ip", "netns", "add", ns])
    m.run(["ip", "-n", ns, "link", "set", "lo", "up"])
    inside = ["ip", "netns", "exec", ns]
    for server in servers:
        unroutable = m.run([*inside, "ip", "route", "get", server.ip], check=False)
        assert unroutable.returncode != 0 and "unreachable" in unroutable.stderr, unroutable
    url = "http://127.0.0.1:4566"
    moto = subprocess.Popen([*inside, str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", "4566"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    python = str(VENV_BIN / "python")
    try:
        m.wait_for(lambda: m.run([*inside, python, "-c", f"import urllib.request; urllib.request.urlopen("
                                  f"'{url}/moto-api/', timeout=2)"], check=False).returncode == 0,
                   60, "moto did not start in the deployer's namespace")
        seen = {s.name: len(s.out(f"cat {m.AWS_LOG}").splitlines()) for s in servers}
        env = deployer_env(url)
        # Polled every 2 s (the program leaves the default 15 s, the servers publishing once a minute), and
        # the stack's account as moto's (AWS's own check of the shell's credentials runs against moto).
        command = str(check.inputs["create"]).replace(f"--account {ACCOUNT} ", f"--account {DEFAULT_ACCOUNT_ID} ")
        assert command != check.inputs["create"]
        # Each server's session: the role's id (the mocks') and the instance id, the booted one's here.
        mocked = ",".join(f"{s.hostname}={m.SERVER_ROLE_ID}:{s.hostname}-instance-id" for s in servers)
        booted = ",".join(f"{s.hostname}={m.SERVER_ROLE_ID}:{s.instance_id}" for s in servers)
        assert f" --servers {mocked} " in command, command
        command = command.replace(f" --servers {mocked} ", f" --servers {booted} ")
        command += " --poll 2"
        began = time.time()
        proc = subprocess.Popen([*inside, "/bin/sh", "-c", command], cwd=m.REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            # Only minutes that begin after the check started count: what the servers published before (relayed
            # below with the rest) must not pass it.
            since = (int(began) // 60 + 1) * 60
            time.sleep(max(3.0, since + 1 - time.time()))
            assert proc.poll() is None, "the check passed before any server published since it began"
            since_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
            for server in servers:
                def recorded(server: m.Server = server) -> str | None:
                    """What the server's own timer (second 15 of each minute) published since, if it has."""
                    lines = server.out(f"cat {m.AWS_LOG}").splitlines()[seen[server.name]:]
                    done = any("cloudwatch put-metric-data" in line and line.split()[0] >= since_text
                               for line in lines)
                    return "\n".join(lines) if done else None

                calls = m.wait_for(recorded, 150, f"{server.name}: nothing published since {since_text}",
                                   lambda server=server: server.out(
                                       "journalctl --no-pager -o short-precise -n 40 -u redis-metrics.service")
                                   + server.diagnostics())
                relayed = subprocess.run([*inside, python, "-c", RELAY, url], input=calls, text=True,
                                         capture_output=True, timeout=60, cwd=m.REPO)
                assert relayed.returncode == 0 and "relayed" in relayed.stdout, relayed.stderr + calls[-2000:]
            out, err = proc.communicate(timeout=CHECK_TIMEOUT)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=10)
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(timeout=10)
        m.run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode == 0, out + err
    assert "waiting (" in err and "no verdict published since the check began" in err, err
    assert out.startswith("HEALTHY - Redis Cluster, 3 servers, as the servers judge themselves"), out
    for server in servers:
        assert f"  {server.hostname}: ClusterStateOk 1, SlotsServed {SLOTS}, ReplicaLinksDown 0" in out, out
    assert prod.deployment.password not in out + err


def test_fourth_server_joins(prod: Cluster) -> None:
    grown = Deployment.of("prod", {"outsystems-redis:servers": 4})
    assert sorted(grown.instances) == [0, 1, 2, 3]
    # Raising the count only adds a server: the running three keep their user data.
    for index in (0, 1, 2):
        assert grown.user_data(index) == prod.deployment.user_data(index), f"server {index}'s user data changed"
    new = grown.add_to(prod.fleet, 3)
    prod.fleet.boot([new], BOOT_TIMEOUT)
    assert_first_boot(new)
    assert any("join" in u for u in m.expected_units(new.config)), "the 4th server renders no join unit"
    prod.deployment = grown
    print(verdict(post_deploy_check(prod.fleet, grown)))
    assert_crossed(cluster_view(prod.fleet, grown, grown.nodes[0]), 4)
    # The join came from the stack's bucket: root's verified copy, in a directory only root writes, run as
    # redis (the launcher, then bash, under the unit's User=).
    copy = f"{REDIS_RUN_STATE_DIR}/{Path(JOIN_TOOL_KEY).name}"
    assert (new.merged / copy.lstrip("/")).read_text() == grown.tools[JOIN_TOOL_KEY]
    assert new.out(f"stat -c '%U %a' {REDIS_RUN_STATE_DIR} {copy} {copy}.sig").split("\n") == \
        ["root 755", "root 644", "root 644"]
    journal = new.out(f"journalctl -b --no-pager -o cat -u {JOIN_UNIT}")
    # What ran as redis, from the journal's own record of each line's sender (not the unit file's User=).
    as_redis = new.out(f"journalctl -b --no-pager -o cat _SYSTEMD_UNIT={JOIN_UNIT} _UID=$(id -u redis)")
    assert "the ring over 4 servers is linked" in as_redis, as_redis
    assert "ERROR" not in journal and "WARNING" not in journal and "the ring over 4 servers is linked" in journal, \
        journal
    # Root fetched it with root's HOME, though the unit names User=redis (assert_first_boot checked every call's
    # HOME). Planted (the fetch without HOME=/root): the fetch ran with /var/lib/redis.
    fetches = [(uid, home) for uid, home, args in aws_callers(new) if f"{JOIN_TOOL_KEY}{SIGNED_SUFFIX}" in args]
    assert fetches and set(fetches) == {("0", "/root")}, fetches


def test_one_server_powered_off_and_on(prod: Cluster) -> None:
    fleet, deployment = prod.fleet, prod.deployment
    victim = fleet.servers[0]
    survivor = next(n for n in deployment.nodes if not n.startswith(victim.ip + ":"))
    # Every node sees the cluster whole first: under a loaded host a node may still flag a peer after the
    # join (seen once: CLUSTERDOWN on the first write, with two boot modules on two cores).
    m.wait_for(lambda: all("cluster_state:ok" in cli(fleet, deployment, n, "cluster", "info")
                           for n in deployment.nodes),
               FAILOVER_TIMEOUT, "the cluster is not whole before the power cycle", fleet.diagnostics)
    items = write_sessions(fleet, deployment, 50)

    # And the victim's master has a replica in sync on another server, as its step-down requires: cluster
    # state ok comes before the bootstrap attaches the replicas (run alone, right after the boot, the
    # victim's step-down found none: "0 listed").
    def in_sync(node: str) -> bool:
        info = cli(fleet, deployment, node, "info", "replication")
        return "master_link_status:up" in info and "master_sync_in_progress:0" in info

    def victims_masters_in_sync() -> bool:
        view = cluster_view(fleet, deployment, survivor)
        masters = [r for r in view if r["ip"] == victim.ip and r["master"] and r["slots"]]
        return bool(masters) and all(any(in_sync(r["node"]) for r in view
                                         if not r["master"] and r["follows"] == master["id"] and r["ip"] != victim.ip)
                                     for master in masters)

    m.wait_for(victims_masters_in_sync, FAILOVER_TIMEOUT, f"{victim.ip}'s master has no replica in sync elsewhere",
               fleet.diagnostics)
    poweroff_started = time.monotonic()
    fleet.poweroff([victim])
    # A clean poweroff steps down first (each Redis unit's ExecStop, redis-step-down): the victim's
    # master handed its slots to its replica before going down, so right after the poweroff every
    # slot is already served from another server, with no wait for cluster-node-timeout (a kill
    # leaves the dead master owning its slots in every view for 5 s and an election).
    view = cluster_view(fleet, deployment, survivor)
    gone = [r for r in view if r["ip"] == victim.ip]
    if not gone or any(r["slots"] for r in gone):
        # Why it did not hand over, from the victim's own journal of the boot that ended (seen once, with
        # three boot fleets on two cores): back on, then the step-down's lines.
        victim.boot()
        victim.wait_booted(BOOT_TIMEOUT)
        said = victim.out("journalctl --no-pager -o cat -b -1 -u redis-server@7000 -u redis-server@7001")
        raise AssertionError(f"{victim.ip} went down holding slots: {view}\nits Redis units said:\n{said}")
    masters = [r for r in view if r["master"] and r["slots"] and r["ip"] != victim.ip]
    assert sum(r["slots"] for r in masters) == SLOTS, f"slots not all served right after the poweroff: {view}"
    print(f"{victim.name} powered off in {time.monotonic() - poweroff_started:.1f}s; its master had moved first")

    def failed_over() -> bool:
        view = cluster_view(fleet, deployment, survivor)
        masters = [r for r in view if r["master"] and r["slots"] and not r["failing"]]
        return (sum(r["slots"] for r in masters) == SLOTS and all(r["ip"] != victim.ip for r in masters)
                and "cluster_state:ok" in cli(fleet, deployment, survivor, "cluster", "info"))

    m.wait_for(failed_over, FAILOVER_TIMEOUT, f"{victim.ip}'s slots were not taken over by another server",
               fleet.diagnostics)
    assert_sessions_kept(fleet, deployment, items)

    victim.boot()
    victim.wait_booted(BOOT_TIMEOUT)
    victim.wait_units_active(m.expected_units(victim.config), UNITS_TIMEOUT)
    assert_no_boot_problems(victim, "power cycle")
    # Its old master came back as a replica; its redis-role-restore timer gives the role back by itself.
    assert_roles_restore_themselves(fleet, deployment, survivor, f"after {victim.name}'s power cycle")
    report = post_deploy_check(fleet, deployment)
    print(f"after {victim.name} came back:\n{verdict(report)}")
    assert verdict(report).startswith("HEALTHY") and "WARN" not in report, report
    assert "master again" in victim.out("journalctl -u redis-role-restore --no-pager")
    # What the step-down said while the server went down (the journal of the boot before).
    said = victim.out("journalctl --no-pager -o cat -b -1 -u redis-server@7000 -u redis-server@7001")
    assert "is the master now" in said and "stops as a replica" in said, said
    print("\n".join(line for line in said.splitlines() if "redis-step-down" in line))
    assert_replicated_elsewhere(cluster_view(fleet, deployment, survivor), "after one server's power cycle")
    assert_sessions_kept(fleet, deployment, items)
