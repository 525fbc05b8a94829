#!/bin/bash
# Completes this server's install, then enables and starts its units.
#
# cloud-init installs the packages at first boot, but only once: if the way out
# (NAT gateway, route, egress rule) was not working yet, its apt step fails and
# cloud-init never runs it again. This runs at the end of the first
# boot and at every later boot, and retries until the pinned packages (and the
# AWS CLI) are there, so a transient outage never leaves a server without Redis.
# Once installed it is a quick no-op apart from re-enabling the units.
#
# Inputs (environment, no secrets):
#   PACKAGES          apt install arguments, e.g. "redis-server=5:5.0.7* redis-tools=5:5.0.7* awscli"
#   HOLD              packages to hold at the pinned version
#   AWS_CLI_WHEELS    where Ubuntu has no awscli package (24.04): the AWS CLI's pip requirements, each
#                     "NAME==VERSION --hash=sha256:...", space-separated; installed alone (the rest is
#                     Ubuntu's, in PACKAGES) into AWS_CLI_DIR, run as /usr/local/bin/aws. Empty where
#                     apt's awscli is in PACKAGES.
#   UNITS             units to enable and start (redis-auth, the Redis processes, timers)
#   RETRY_MAX_SECONDS longest pause between attempts (the pause doubles from 5 s)
set -euo pipefail
# Version globs such as 5:5.0.7* are for apt, never for the shell.
set -f

: "${PACKAGES:?PACKAGES is required}"
: "${HOLD:?HOLD is required}"
: "${UNITS:?UNITS is required}"
AWS_CLI_WHEELS=${AWS_CLI_WHEELS:-}
AWS_CLI_DIR=/usr/local/lib/aws-cli
RETRY_MAX_SECONDS=${RETRY_MAX_SECONDS:-120}
export DEBIAN_FRONTEND=noninteractive

log() { echo "redis-provision: $*"; }

# shellcheck disable=SC2206  # word splitting of the space-separated lists is intended
packages=($PACKAGES) hold=($HOLD) units=($UNITS)

installed() {
    local p
    for p in "${packages[@]}"; do
        [ "$(dpkg-query -W -f '${db:Status-Status}' "${p%%=*}" 2>/dev/null)" = installed ] || return 1
    done
    # The wheels' requirements are recorded last, once the CLI has started.
    [ -z "$AWS_CLI_WHEELS" ] || [ "$(cat "$AWS_CLI_DIR/requirements" 2>/dev/null)" = "$AWS_CLI_WHEELS" ]
}

install_aws_cli() {
    local pip
    pip=$(find /usr/share/python-wheels -name 'pip-*.whl' | sort -V | tail -n 1)
    [ -n "$pip" ] || return 1
    rm -rf "$AWS_CLI_DIR" /usr/local/bin/aws
    # pip from its own wheel (python3-pip-whl). --require-hashes: it installs nothing whose SHA-256 is not the
    # rendered one. -I: no PYTHON* variable and no user site of root's decides what runs.
    # shellcheck disable=SC2086  # one requirement a line: name and --hash
    printf '%s %s\n' $AWS_CLI_WHEELS | python3 -I "$pip/pip" install -q --no-deps --require-hashes \
        --only-binary :all: --no-cache-dir --disable-pip-version-check --no-warn-script-location \
        --target "$AWS_CLI_DIR" -r /dev/stdin || return 1
    printf '#!/usr/bin/python3 -I\nimport sys\nsys.path.insert(0, "%s")\nfrom awscli.clidriver import main\nsys.exit(main())\n' \
        "$AWS_CLI_DIR" >/usr/local/bin/aws
    chmod 0755 /usr/local/bin/aws
    # It starts with what Ubuntu gave it, and is on disk, before it counts as installed.
    /usr/local/bin/aws --version || return 1
    sync
    printf '%s\n' "$AWS_CLI_WHEELS" >"$AWS_CLI_DIR/requirements"
}

install() {
    # The lock timeout waits for apt-daily or cloud-init instead of failing on the dpkg lock.
    apt-get -q -o DPkg::Lock::Timeout=300 update || return 1
    apt-get -q -y -o DPkg::Lock::Timeout=300 install "${packages[@]}" || return 1
    [ -z "$AWS_CLI_WHEELS" ] || install_aws_cli
}

pause=5
attempt=1
until installed; do
    log "installing ${packages[*]}${AWS_CLI_WHEELS:+ and the AWS CLI wheels} (attempt $attempt)"
    if install && installed; then
        log "installed (attempt $attempt)"
        break
    fi
    log "install failed (no way out yet? NAT gateway, route or egress rule); retrying in ${pause}s"
    sleep "$pause"
    pause=$((pause * 2 > RETRY_MAX_SECONDS ? RETRY_MAX_SECONDS : pause * 2))
    attempt=$((attempt + 1))
done

# The pin holds across unattended upgrades; the units are enabled for every boot.
apt-mark hold "${hold[@]}" >/dev/null
# Root reads and writes files in /etc/redis; Debian makes it redis:redis 2770, so a compromised Redis
# could replace them. The redis user may read it, nothing more: set at every boot (an upgrade's postinst
# honours the statoverride; this also covers one that did not).
dpkg-statoverride --list /etc/redis >/dev/null || dpkg-statoverride --add root redis 0750 /etc/redis
chown root:redis /etc/redis
chmod 0750 /etc/redis
systemctl daemon-reload
# --no-block: the Redis units wait for the password (redis-auth) and the cluster
# units for their peers; none of that may hold this unit or the boot.
systemctl enable --now --no-block "${units[@]}"
log "enabled and started ${units[*]}"
