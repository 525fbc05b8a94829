#!/bin/bash
# Writes this server's TLS material (the stack's CA certificate, this server's
# certificate and private key) from SSM Parameter Store, on every boot, before
# any Redis process starts. redis-auth.service runs it after the password.
# Nothing here is in user-data; the key never touches a command line or the journal.
#
# To pick up a certificate that `pulumi up` renewed, run it on its own through the launcher (not by
# restarting redis-auth, which the Redis units Require=, so they would restart): docs/upgrades-and-migration.md, "Renewal".
# Redis reads the files at start or on CONFIG SET tls-cert-file.
#
# Inputs (environment): TLS_CA_PARAMETER, TLS_CERT_PARAMETER, TLS_KEY_PARAMETER,
# AWS_REGION, TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, ATTEMPTS, RETRY_SECONDS,
# FIRST_BOOT_SECONDS, CACHED_WAIT_SECONDS, SSM_CALL_SECONDS.
# A first boot tries for FIRST_BOOT_SECONDS at most (redis-auth's TimeoutStartSec covers it).
# With the files of an earlier boot present, SSM gets CACHED_WAIT_SECONDS in all, then Redis
# starts with those (a reboot while SSM is unreachable must not keep Redis down for minutes).
set -euo pipefail

: "${TLS_CA_PARAMETER:?TLS_CA_PARAMETER is required}"
: "${TLS_CERT_PARAMETER:?TLS_CERT_PARAMETER is required}"
: "${TLS_KEY_PARAMETER:?TLS_KEY_PARAMETER is required}"
: "${AWS_REGION:?AWS_REGION is required}"
TLS_CA_FILE=${TLS_CA_FILE:-/etc/redis/tls/ca.crt}
TLS_CERT_FILE=${TLS_CERT_FILE:-/etc/redis/tls/server.crt}
TLS_KEY_FILE=${TLS_KEY_FILE:-/etc/redis/tls/server.key}
ATTEMPTS=${ATTEMPTS:-30}
RETRY_SECONDS=${RETRY_SECONDS:-10}
FIRST_BOOT_SECONDS=${FIRST_BOOT_SECONDS:-240}
CACHED_WAIT_SECONDS=${CACHED_WAIT_SECONDS:-30}
SSM_CALL_SECONDS=${SSM_CALL_SECONDS:-10}
export AWS_RETRY_MODE=${AWS_RETRY_MODE:-standard}
export AWS_MAX_ATTEMPTS=${AWS_MAX_ATTEMPTS:-2}

log() { echo "redis-tls: $*"; }

# get NAME : one parameter's value on stdout (ssm_get: lib.sh, shipped ahead of this script).
get() { ssm_get "$1" "$SSM_CALL_SECONDS"; }

# cached : the files of an earlier boot are all there.
cached() { [ -s "$TLS_CA_FILE" ] && [ -s "$TLS_CERT_FILE" ] && [ -s "$TLS_KEY_FILE" ]; }

# put FILE MODE CONTENT : replace FILE atomically (replace_file: lib.sh), so Redis never reads a
# half-written certificate or key.
tmp=""
trap '[ -z "$tmp" ] || rm -f "$tmp"' EXIT # a failed run leaves no copy of the key behind
put() { replace_file "$1" "$2" printf '%s\n' "$3"; }

# pem TEXT : true when TEXT holds a PEM block (SSM returned what we stored, not an error text).
pem() { case "$1" in *"-----BEGIN "*"-----"*) return 0 ;; *) return 1 ;; esac }

# matches CERT KEY : the certificate's public key is the key's (a mismatched pair stops Redis).
matches() {
    command -v openssl >/dev/null || return 0
    [ "$(printf '%s\n' "$1" | openssl x509 -noout -pubkey)" = "$(printf '%s\n' "$2" | openssl pkey -pubout)" ]
}

umask 077
deadline=$((SECONDS + CACHED_WAIT_SECONDS))
first_boot_deadline=$((SECONDS + FIRST_BOOT_SECONDS))
for attempt in $(seq 1 "$ATTEMPTS"); do
    if ca=$(get "$TLS_CA_PARAMETER") && cert=$(get "$TLS_CERT_PARAMETER") && key=$(get "$TLS_KEY_PARAMETER"); then
        if ! pem "$ca" || ! pem "$cert" || ! pem "$key"; then
            log "ERROR: $TLS_CA_PARAMETER, $TLS_CERT_PARAMETER or $TLS_KEY_PARAMETER holds no PEM block"
            break
        fi
        if ! matches "$cert" "$key"; then
            log "ERROR: the certificate in $TLS_CERT_PARAMETER does not match the key in $TLS_KEY_PARAMETER"
            break
        fi
        # The directory is readable by the redis group only; the key is root:redis 0640.
        for dir in "$(dirname "$TLS_CA_FILE")" "$(dirname "$TLS_CERT_FILE")" "$(dirname "$TLS_KEY_FILE")"; do
            install -d -o root -g redis -m 0750 "$dir"
        done
        put "$TLS_CA_FILE" 0644 "$ca"
        put "$TLS_KEY_FILE" 0640 "$key"
        put "$TLS_CERT_FILE" 0644 "$cert"
        log "wrote $TLS_CA_FILE, $TLS_CERT_FILE and $TLS_KEY_FILE from Parameter Store (attempt $attempt)"
        exit 0
    fi
    [ "$attempt" -lt "$ATTEMPTS" ] || break
    [ $((SECONDS + RETRY_SECONDS)) -lt "$first_boot_deadline" ] || break
    if cached && [ "$SECONDS" -ge "$deadline" ]; then
        break
    fi
    log "cannot read the TLS parameters yet (attempt $attempt of $ATTEMPTS); retrying in ${RETRY_SECONDS}s"
    sleep "$RETRY_SECONDS"
done

if cached; then
    # SSM unreachable (or bad content) on a reboot: the material from the last boot still works.
    log "WARNING: no usable TLS material from Parameter Store; keeping the existing files"
    exit 0
fi
log "ERROR: no TLS material from Parameter Store and none from an earlier boot; Redis cannot start"
exit 1
