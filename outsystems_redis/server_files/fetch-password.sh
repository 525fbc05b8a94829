#!/bin/bash
# Writes the Redis auth include (requirepass/masterauth) from the SSM
# SecureString parameter, on every boot, before any Redis process starts.
# The password never touches user-data, a command line or the journal.
# First boot: up to ATTEMPTS tries, RETRY_SECONDS apart, within FIRST_BOOT_SECONDS
# (redis-auth's TimeoutStartSec covers it); no password, no Redis.
# Later boots: SSM gets CACHED_WAIT_SECONDS in all, then Redis starts from the
# last boot's AUTH_FILE (WARNING); redis-password-sync.timer keeps trying SSM.
# A Redis 7.0 grace entry left by redis-password-sync (previous password still
# accepted until an epoch) is kept while SSM holds the password it belongs to,
# so a reboot during the grace accepts both; an ended grace is dropped.
# RENAMED_COMMANDS (set by the program): the commands it names are renamed to
# <COMMAND>-<operations secret>, from OPS_PARAMETER, in the same include; only
# the servers' own scripts, which read them there, know those names.
# FRONT_END_RULES (set by the program on 7.0): the include also defines the
# operations user (the operations secret; the scripts, agents and tools log in
# as it) and the replication user (replicas log in to their masters as it), and
# narrows the front-ends' `default` user to these rules (lib.sh: auth_lines). A
# server that redis-password-sync gave these users (one created by an earlier
# version, without FRONT_END_RULES) keeps them.
# Every aws call is bounded (timeouts, AWS_MAX_ATTEMPTS, and `timeout`).
# Inputs: PASSWORD_PARAMETER, AWS_REGION, AUTH_FILE; optional OPS_PARAMETER and
# RENAMED_COMMANDS (both or neither: the program sets them), FRONT_END_RULES, ATTEMPTS,
# RETRY_SECONDS, FIRST_BOOT_SECONDS, CACHED_WAIT_SECONDS, SSM_CALL_SECONDS.
set -euo pipefail

: "${PASSWORD_PARAMETER:?PASSWORD_PARAMETER is required}"
: "${AWS_REGION:?AWS_REGION is required}"
AUTH_FILE=${AUTH_FILE:-/etc/redis/auth.conf}
OPS_PARAMETER=${OPS_PARAMETER:-}
RENAMED_COMMANDS=${RENAMED_COMMANDS:-}
FRONT_END_RULES=${FRONT_END_RULES:-}
ATTEMPTS=${ATTEMPTS:-30}
RETRY_SECONDS=${RETRY_SECONDS:-10}
FIRST_BOOT_SECONDS=${FIRST_BOOT_SECONDS:-240}
CACHED_WAIT_SECONDS=${CACHED_WAIT_SECONDS:-30}
SSM_CALL_SECONDS=${SSM_CALL_SECONDS:-10}
export AWS_RETRY_MODE=${AWS_RETRY_MODE:-standard}
export AWS_MAX_ATTEMPTS=${AWS_MAX_ATTEMPTS:-2}

log() { echo "redis-auth: $*"; }
if [ -n "$FRONT_END_RULES" ] && [ -z "$OPS_PARAMETER" ]; then
    log "ERROR: FRONT_END_RULES needs OPS_PARAMETER: narrowed front-ends need an operations user; Redis cannot start"
    exit 1
fi

# (ssm_get and password_usable: lib.sh, shipped ahead of this script.)

# ssm_secrets DEADLINE : sets `password` and, with OPS_PARAMETER, `fresh_ops`; `unread` names the
# parameter that failed. Each call lasts at most SSM_CALL_SECONDS, and no longer than what is left
# until DEADLINE (in $SECONDS; at least a second).
fresh_ops=""
ssm_secrets() {
    within "$1"
    unread=$PASSWORD_PARAMETER
    password=$(ssm_get "$PASSWORD_PARAMETER" "$bound") || return 1
    [ -z "$OPS_PARAMETER" ] || { within "$1"; unread=$OPS_PARAMETER; fresh_ops=$(ssm_get "$OPS_PARAMETER" "$bound"); }
}
within() {
    bound=$(($1 - SECONDS))
    bound=$((bound < 1 ? 1 : bound < SSM_CALL_SECONDS ? bound : SSM_CALL_SECONDS))
}

# usable PASSWORD : the program's password rule (lib.sh), and the operations secret, when there is one,
# can make command names.
usable() {
    password_usable "$1" || return 1
    [ -z "$OPS_PARAMETER" ] || [[ "$fresh_ops" =~ ^[[:alnum:]]{16,}$ ]]
}
unusable="$PASSWORD_PARAMETER holds no usable password ($PASSWORD_RULE)${OPS_PARAMETER:+, or $OPS_PARAMETER no usable secret (16+ letters and digits)}"

tmp=""
trap '[ -z "$tmp" ] || rm -f "$tmp"' EXIT # a failed run leaves no copy of the password behind

# write_auth PASSWORD [UNTIL PREVIOUS] : replace AUTH_FILE atomically (a temporary file beside it, then a
# rename), root:redis 0640, with lib.sh's auth_lines. UNTIL and PREVIOUS carry a 7.0 grace over.
# (replace_file, read_auth and auth_lines: lib.sh.)
write_auth() {
    # A file this script wrote always has the secret; one without it must not start Redis with CONFIG.
    [ -n "$ops" ] || [ -z "$RENAMED_COMMANDS" ] || return 1
    replace_file "$AUTH_FILE" 0640 auth_lines "$@"
}

# What the last boot (or the last redis-password-sync) left (read_auth: current, until, accepted, the users, renames, ops).
read_auth "$AUTH_FILE"
cached=$current why="SSM unreachable for ${CACHED_WAIT_SECONDS}s"
previous=""
for word in "${accepted[@]}"; do
    [ "$word" = "$cached" ] || previous=$word
done
printf -v now '%(%s)T' -1
in_grace() { [ -n "$previous" ] && [ "$until" -gt "$now" ]; }

# from_ssm PASSWORD ATTEMPT : write what SSM holds, keeping a running grace that belongs to it.
from_ssm() {
    if [ -n "$OPS_PARAMETER" ]; then
        ops=$fresh_ops
        renames=()
        for command in $RENAMED_COMMANDS; do
            renames+=("rename-command $command $command-$ops")
        done
        # The operations user: the program asks for it (7.0), or redis-password-sync gave it to this server.
        [ -z "$FRONT_END_RULES$operations" ] || operations=$ops
        # The replication user likewise; its password is made from the same secret.
        [ -z "$FRONT_END_RULES$replication" ] || replication_secret "$ops"
    fi
    [ -z "$FRONT_END_RULES" ] || default_rules=$FRONT_END_RULES
    if [ "$1" = "$cached" ] && in_grace; then
        write_auth "$1" "$until" "$previous"
        log "wrote $AUTH_FILE from $PASSWORD_PARAMETER (attempt $2); the previous password stays accepted until $(date -u -d "@$until" '+%F %T UTC')"
    else
        write_auth "$1"
        log "wrote $AUTH_FILE from $PASSWORD_PARAMETER (attempt $2)"
    fi
}

if [ -n "$cached" ]; then
    # A reboot: Redis must not wait minutes for SSM; the cached password works until the sync timer runs.
    deadline=$((SECONDS + CACHED_WAIT_SECONDS))
    attempt=0
    while [ "$SECONDS" -lt "$deadline" ]; do
        attempt=$((attempt + 1))
        if ssm_secrets "$deadline"; then
            if usable "$password"; then
                from_ssm "$password" "$attempt"
                exit 0
            fi
            why=$unusable
            break
        fi
        why="cannot read $unread in ${CACHED_WAIT_SECONDS}s"
        left=$((deadline - SECONDS))
        [ "$left" -gt 0 ] || break
        sleep $((left < RETRY_SECONDS ? left : RETRY_SECONDS))
    done
    if [ "$until" -gt 0 ] && ! in_grace; then
        write_auth "$cached" # the grace ended while the server was down: drop the old password
        log "the previous password's grace has ended: removed it from $AUTH_FILE"
    fi
    log "WARNING: $why; starting Redis with the password of the last boot in $AUTH_FILE (redis-password-sync.timer keeps trying SSM every minute)"
    exit 0
fi

deadline=$((SECONDS + FIRST_BOOT_SECONDS))
for attempt in $(seq 1 "$ATTEMPTS"); do
    if ssm_secrets "$deadline"; then
        if usable "$password"; then
            from_ssm "$password" "$attempt"
            exit 0
        fi
        log "ERROR: $unusable; Redis cannot start"
        exit 1
    fi
    [ "$attempt" -lt "$ATTEMPTS" ] || break
    [ $((SECONDS + RETRY_SECONDS)) -lt "$deadline" ] || break
    log "cannot read $unread yet (attempt $attempt); retrying"
    sleep "$RETRY_SECONDS"
done
log "ERROR: cannot read $unread, and no earlier $AUTH_FILE; Redis cannot start"
exit 1
