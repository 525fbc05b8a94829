#!/bin/bash
# Completes this server's install, then enables and starts its units.
#
# cloud-init installs the packages at first boot, but only once: if the way out
# (NAT gateway, route, egress rule) was not working yet, its apt and snap steps
# fail and cloud-init never runs them again. This runs at the end of the first
# boot and at every later boot, and retries until the pinned packages (and the
# AWS CLI) are there, so a transient outage never leaves a server without Redis.
# Once installed it is a quick no-op apart from re-enabling the units.
#
# Inputs (environment, no secrets):
#   PACKAGES          apt install arguments, e.g. "redis-server=5:5.0.7* redis-tools=5:5.0.7* awscli"
#   HOLD              packages to hold at the pinned version
#   SNAPS             classic snaps to install (24.04 ships the AWS CLI as a snap), may be empty
#   UNITS             units to enable and start (redis-auth, the Redis processes, timers)
#   RETRY_MAX_SECONDS longest pause between attempts (the pause doubles from 5 s)
set -euo pipefail
# Version globs such as 5:5.0.7* are for apt, never for the shell.
set -f

: "${PACKAGES:?PACKAGES is required}"
: "${HOLD:?HOLD is required}"
: "${UNITS:?UNITS is required}"
SNAPS=${SNAPS:-}
RETRY_MAX_SECONDS=${RETRY_MAX_SECONDS:-120}
export DEBIAN_FRONTEND=noninteractive

log() { echo "redis-provision: $*"; }

# shellcheck disable=SC2206  # word splitting of the space-separated lists is intended
packages=($PACKAGES) hold=($HOLD) snaps=($SNAPS) units=($UNITS)

installed() {
    local p
    for p in "${packages[@]}"; do
        [ "$(dpkg-query -W -f '${db:Status-Status}' "${p%%=*}" 2>/dev/null)" = installed ] || return 1
    done
    for p in "${snaps[@]}"; do
        [ -e "/snap/bin/$p" ] || [ -e "/snap/bin/${p%-cli}" ] || return 1
    done
}

install() {
    local p
    # The lock timeout waits for apt-daily or cloud-init instead of failing on the dpkg lock.
    apt-get -q -o DPkg::Lock::Timeout=300 update || return 1
    apt-get -q -y -o DPkg::Lock::Timeout=300 install "${packages[@]}" || return 1
    for p in "${snaps[@]}"; do
        snap install "$p" --classic || return 1
    done
}

pause=5
attempt=1
until installed; do
    log "installing ${packages[*]} ${snaps[*]} (attempt $attempt)"
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
