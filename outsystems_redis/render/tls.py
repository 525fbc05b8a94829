"""TLS on the 7.0 platform: the boot step that fetches the certificates, and redis-cli over TLS.

With TLS on, every Redis process listens on its usual port (6379, 7000, 7001)
with TLS only. Certificates reach a server like the password does: at boot,
from SSM Parameter Store (fetch-tls.sh in server_files/, run by
redis-auth.service), never through user-data.

The bootstrap and join scripts are the same text with and without TLS: they
run `$REDIS_CLI`, which with TLS is a two-line wrapper adding
`--tls --cacert <the CA>`. So the scripts (and every non-TLS user-data) stay
byte-identical, and an operator on the server gets the same wrapper.
"""

from __future__ import annotations

import shlex

from outsystems_redis.parameters import tls_ca_parameter, tls_cert_parameter, tls_key_parameter
from outsystems_redis.render.redis_conf import EC2_PATHS, Paths
from outsystems_redis.render.shipped import shipped_script
from outsystems_redis.server_files import source

FETCH_TLS_SCRIPT = source("fetch-tls.sh")


def fetch_tls_script() -> str:
    """The exact text of the boot step that writes the CA, certificate and key from SSM."""
    return shipped_script(FETCH_TLS_SCRIPT, library=True)


def tls_env(stack: str, server: int, paths: Paths = EC2_PATHS) -> dict[str, str]:
    """fetch-tls.sh's inputs on server `server`: parameter names and file paths, no secret."""
    return {
        "TLS_CA_PARAMETER": tls_ca_parameter(stack),
        "TLS_CERT_PARAMETER": tls_cert_parameter(stack, server),
        "TLS_KEY_PARAMETER": tls_key_parameter(stack, server),
        "TLS_CA_FILE": paths.tls_ca,
        "TLS_CERT_FILE": paths.tls_cert,
        "TLS_KEY_FILE": paths.tls_key,
    }


def tls_cli_args(cacert: str) -> list[str]:
    """What redis-cli needs to reach a server of the stack: TLS, trusting only the stack's CA.

    No client certificate: the servers do not ask for one (tls-auth-clients no).
    """
    return ["--tls", "--cacert", cacert]


def render_tls_cli(cacert: str, redis_cli: str = "redis-cli") -> str:
    """A redis-cli that speaks TLS to the stack's servers; the bootstrap and join run it as $REDIS_CLI."""
    args = " ".join(shlex.quote(a) for a in [redis_cli, *tls_cli_args(cacert)])
    return (
        "#!/bin/bash\n"
        "# redis-cli over TLS to this stack's Redis servers (rendered by outsystems-redis).\n"
        "# The password still comes from REDISCLI_AUTH, never from the command line.\n"
        f'exec {args} "$@"\n'
    )
