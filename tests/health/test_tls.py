"""The health check's TLS options and one-line TLS reasons, without Redis."""

from __future__ import annotations

import json

import pytest
import redis

from outsystems_redis.tools import health
from outsystems_redis.tools.health import __main__ as cli


def test_an_untrusted_certificate_is_one_line_naming_the_ca_to_use():
    exc = redis.ConnectionError("Error 1 connecting to 10.0.1.10:7000. [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                "verify failed: self-signed certificate in certificate chain (_ssl.c:1006).")
    why = health.reason(exc, "10.0.1.10:7000", tls=True)
    assert why.startswith("TLS certificate not trusted (self-signed certificate in certificate chain)")
    assert "pulumi stack output caCertificate" in why and "\n" not in why and "_ssl.c" not in why
    assert "not signed by the given CA" in why
    bare = health.reason(exc, "10.0.1.10:7000", tls=True, ca_given=False)
    assert "no CA was given" in bare and "add --cacert FILE" in bare and "the given CA" not in bare


def test_a_certificate_for_another_address_says_so():
    exc = redis.ConnectionError("Error 1 connecting to 10.0.1.10:7000. [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                "verify failed: IP address mismatch, certificate is not valid for '10.0.1.10'. "
                                "(_ssl.c:1006).")
    assert health.reason(exc, "10.0.1.10:7000", tls=True).startswith("TLS certificate does not name 10.0.1.10:7000")


def test_tls_against_a_plain_port_and_plain_against_a_tls_port():
    wrong = redis.ConnectionError("Error 1 connecting to h:6379. [SSL: WRONG_VERSION_NUMBER] wrong version number")
    assert health.reason(wrong, "h:6379", tls=True).startswith("TLS handshake failed")
    waiting = redis.TimeoutError("Timeout connecting to server")
    assert "Does it speak TLS?" in health.reason(waiting, "h:6379", tls=True)
    assert "TLS" not in health.reason(waiting, "h:6379")
    reset = redis.ConnectionError("Error while reading from h:7000 : (104, 'Connection reset by peer')")
    assert "--tls --cacert" in health.reason(reset, "h:7000")


def parse(*argv: str, environ: dict[str, str] | None = None) -> health.Tls | None:
    parser = cli.build_parser()
    args = parser.parse_args(["--nodes", "h:7000", *argv])
    return cli.tls_from_args(args, parser, environ or {})


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_tls_options(tmp_path):
    assert parse() is None
    assert parse("--tls") == health.Tls()
    ca = tmp_path / "redis-ca.crt"
    ca.write_text(PEM)
    assert parse("--cacert", str(ca)) == health.Tls(ca_file=str(ca))
    assert parse("--cacert-env", "REDIS_CA_CERT", environ={"REDIS_CA_CERT": PEM}) == health.Tls(ca_data=PEM)
    assert health.redis_tls_kwargs(health.Tls(ca_data=PEM))["ssl_ca_data"] == PEM


@pytest.mark.parametrize("argv, message", [
    (["--cacert", "/nonexistent/ca.crt"], "--cacert: cannot read"),
    (["--cacert-env", "REDIS_CA_CERT"], "--cacert-env: $REDIS_CA_CERT holds no PEM certificate"),
    (["--cacert", "x", "--cacert-env", "Y"], "not allowed with"),
])
def test_bad_tls_options_exit_2_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_fix_commands_reach_a_tls_server_and_the_report_says_tls():
    facts = health.Facts(cluster=False, expected_version="7.0", tls=health.Tls(ca_file="/tmp/ca.crt"),
                         nodes=[health.NodeFacts("10.0.1.10", 6379, info={"redis_version": "7.0.15",
                                                                           "used_memory": 1, "maxmemory": 0})])
    findings = health.judge(facts)
    (memory,) = [f for f in findings if f.check == "memory"]
    assert memory.fix.startswith('REDISCLI_AUTH="$REDIS_OPS_PASSWORD" redis-cli --tls --cacert /tmp/ca.crt '
                                 '--user operations -h 10.0.1.10')
    assert health.report(facts, findings).startswith("DEGRADED (sessions work; act soon) - Redis server over TLS")
    assert json.loads(health.to_json(facts, findings))["tls"] is True


def test_a_served_certificate_near_its_end_is_a_warning_with_the_reload():
    now = 1_800_000_000.0
    node = health.NodeFacts("10.0.1.10", 7000, info={"redis_version": "7.0.15"}, cert_expires=now + 10 * 86400)
    facts = health.Facts(cluster=False, expected_version="7.0", tls=health.Tls(ca_file="ca.crt"), nodes=[node])
    (warn,) = [f for f in health.check_tls(facts, now) if f.severity == health.WARN]
    assert "expires in 10 days" in warn.message
    assert "redis-fetch-tls" in warn.fix and "CONFIG SET tls-cert-file" in warn.fix
    node.cert_expires = now + 400 * 86400
    assert [f.severity for f in health.check_tls(facts, now)] == [health.OK]


def test_an_expired_certificate_is_not_called_untrusted():
    exc = redis.ConnectionError("Error 1 connecting to h:7000. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                "failed: certificate has expired (_ssl.c:1006).")
    assert health.reason(exc, "h:7000", tls=True).startswith("TLS certificate expired (certificate has expired)")
