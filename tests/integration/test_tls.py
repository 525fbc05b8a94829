"""TLS on real Redis 7.0.15, on loopback: the rendered TLS confs, the shipped bootstrap and join, the health check.

Certificates are generated here (outsystems_redis.tools.loopback, openssl CLI): a throwaway
CA, one certificate per server with its loopback IP as SAN, where the confs
expect them. A second CA that signed nothing stands for "a certificate the
client does not trust".
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from outsystems_redis.tools import health
from outsystems_redis.tools.loopback import Loopback, make_ca
from tests.integration.loopbacks import assert_crossed, make_loopback, warnings
from tests.tools import ROOT, loopback_octet, redis_bin, tool


def nodes(lo: Loopback) -> list[tuple[str, int]]:
    return [(p.host, p.port) for p in lo.processes]


def tls_loopback(factory, servers: int) -> Loopback:
    tool("openssl")
    lo = factory("7.0", servers, tls=True)
    lo.start()
    return lo


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "outsystems_redis.tools.health", *args], cwd=ROOT,
                          env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("servers", [1, 3])
def test_tls_confs_start_on_redis_7_without_warnings(loopback_factory, servers):
    lo = tls_loopback(loopback_factory, servers)
    for p in lo.processes:
        config = lo.config_get(p, "*")
        assert (config["port"], config["tls-port"]) == ("0", str(p.port))
        assert config["tls-replication"] == "yes"
        assert config["tls-cluster"] == ("yes" if servers > 1 else "no")
        assert config["tls-auth-clients"] == "no"
    assert warnings(lo) == []


def test_a_client_without_tls_is_refused(loopback_factory):
    lo = tls_loopback(loopback_factory, 1)
    p = lo.processes[0]
    with pytest.raises(redis.ConnectionError):
        redis.Redis(p.host, p.port, password=lo.password, socket_timeout=2).ping()
    plain_cli = subprocess.run([lo.redis_cli, "-h", p.host, "-p", str(p.port), "ping"], capture_output=True,
                               text=True, timeout=10, env={"REDISCLI_AUTH": lo.password})
    assert "PONG" not in plain_cli.stdout
    # The health check says why in one line.
    facts, findings = health.run_check(nodes(lo), lo.password, False, "7.0")
    (fail,) = [f for f in findings if f.severity == health.FAIL and f.check == "reachable"]
    assert "closed the connection" in fail.message and "--tls" in fail.message and "\n" not in fail.message
    # The same server over TLS, trusting the CA: fine.
    assert lo.client(p).ping()


@pytest.fixture(scope="module")
def tls_cluster(request, tmp_path_factory) -> Loopback:
    """One crossed 3-server cluster over TLS, formed by the shipped bootstrap: checked, then grown to 4."""
    tool("openssl")
    lo = make_loopback(request, tmp_path_factory, "7.0", tls=True)
    lo.start()
    lo.output = lo.bootstrap()
    return lo


def test_bootstrap_forms_a_crossed_cluster_over_tls_and_health_passes(tls_cluster, tmp_path):
    lo = tls_cluster
    assert "cluster-bootstrap: done" in lo.output
    assert_crossed(lo)
    # Replication and the bus run over TLS: the plain port is off, so nothing else could carry them.
    for p in lo.processes:
        info = lo.client(p).info("replication")
        assert info["role"] == "master" or info["master_link_status"] == "up"

    tls = health.Tls(ca_file=str(lo.ca_file))
    facts, findings = health.run_check(nodes(lo), lo.password, True, "7.0", wait=30, interval=1, tls=tls)
    assert health.verdict(findings) == "healthy", health.report(facts, findings)
    assert any(f.check == "tls" and f.severity == health.OK for f in findings)

    # The post-deploy check's way: the CA's PEM in an environment variable, no file.
    node_list = ",".join(f"{h}:{p}" for h, p in nodes(lo))
    ok = run_cli("--cluster", "--nodes", node_list, "--expect-version", "7.0", "--cacert-env", "REDIS_CA_CERT",
                 env={"REDIS_PASSWORD": lo.password, "REDIS_CA_CERT": lo.ca_file.read_text()})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("HEALTHY - Redis Cluster, 3 servers over TLS")

    # A CA that did not sign the servers' certificates: one-line FAIL, no traceback.
    untrusted, _ = make_ca(tmp_path / "untrusted", name="not the stack's CA")
    bad = run_cli("--cluster", "--nodes", node_list, "--expect-version", "7.0", "--cacert", str(untrusted),
                  env={"REDIS_PASSWORD": lo.password})
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
    fails = [line for line in bad.stdout.splitlines() if line.strip().startswith("FAIL")]
    assert len(fails) == 1, bad.stdout
    assert "TLS certificate not trusted" in fails[0] and "caCertificate" in fails[0]

    # --tls and no CA at all: the fix is to give one, not to doubt the one given.
    bare = run_cli("--cluster", "--nodes", node_list, "--expect-version", "7.0", "--tls",
                   env={"REDIS_PASSWORD": lo.password})
    assert bare.returncode == 1 and "Traceback" not in bare.stdout + bare.stderr, bare.stdout + bare.stderr
    fails = [line for line in bare.stdout.splitlines() if line.strip().startswith("FAIL")]
    assert len(fails) == 1 and "no CA was given" in fails[0] and "--cacert FILE" in fails[0], bare.stdout
    assert "the given CA" not in bare.stdout


def test_a_server_joins_a_tls_cluster(tls_cluster):
    """Scale-out over TLS: add-node, replica re-linking and rebalance (MIGRATE goes over the TLS bus)."""
    lo = tls_cluster
    client = lo.client(lo.processes[0])
    cluster = redis.RedisCluster(host=lo.processes[0].host, port=lo.processes[0].port, password=lo.password,
                                 decode_responses=True, **lo.tls_kwargs)
    keys = [f"{{session-{i}}}_Data" for i in range(200)]
    for k in keys:
        cluster.set(k, k, ex=600)
    outputs = lo.add_servers(1, wait_seconds=120)
    assert "done" in outputs[3]
    tls = health.Tls(ca_file=str(lo.ca_file))
    facts, findings = health.run_check(nodes(lo), lo.password, True, "7.0", wait=30, interval=1, tls=tls)
    assert health.verdict(findings) == "healthy", health.report(facts, findings)
    assert all(cluster.get(k) == k for k in keys)  # sessions moved by the rebalance survive
    cluster.close()
    client.close()


def test_rehearsal_tls_is_refused_on_redis_5_and_runs_on_7(tmp_path):
    redis_bin("7.0")
    tool("openssl")
    base = [sys.executable, "-m", "outsystems_redis.tools.rehearsal"]
    refused = subprocess.run([*base, "up", "--stack", "dev", "--version", "5.0", "--tls", "--state-dir",
                              str(tmp_path / "r5")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--tls needs Redis 7.0" in refused.stderr
    # Own 127.<a>.255.x block (tests/integration/test_rehearsal.py uses 251-254).
    prefix = f"127.{loopback_octet()}.255."
    state = tmp_path / "r7"
    common = ["--stack", "dev", "--state-dir", str(state), "--host-prefix", prefix]
    try:
        up = subprocess.run([*base, "up", *common, "--version", "7.0", "--tls"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "HEALTHY - Redis server over TLS" in up.stdout and ",ssl=true" in up.stdout
        status = subprocess.run([*base, "status", *common], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "over TLS" in status.stdout
    finally:
        subprocess.run([*base, "down", *common], cwd=ROOT, capture_output=True, timeout=60)
    assert not state.exists()
