#!/bin/bash
# Writes the Redis auth include (requirepass/masterauth) from the SSM
# SecureString parameter, on every boot, before any Redis process starts.
# The password never touches user-data, a command line or the journal.
#
# Inputs (environment): PASSWORD_PARAMETER, AWS_REGION, AUTH_FILE, ATTEMPTS.
set -euo pipefail

: "${PASSWORD_PARAMETER:?PASSWORD_PARAMETER is required}"
: "${AWS_REGION:?AWS_REGION is required}"
AUTH_FILE=${AUTH_FILE:-/etc/redis/auth.conf}
ATTEMPTS=${ATTEMPTS:-30}

log() { echo "redis-auth: $*"; }

for attempt in $(seq 1 "$ATTEMPTS"); do
    # The instance role may read this one parameter and nothing else.
    if password=$(aws ssm get-parameter --region "$AWS_REGION" --name "$PASSWORD_PARAMETER" \
        --with-decryption --query Parameter.Value --output text); then
        umask 077
        tmp=$(mktemp "$AUTH_FILE.XXXXXX")
        # printf is a shell builtin: the password is never an argv of a process.
        printf 'requirepass %s\nmasterauth %s\n' "$password" "$password" >"$tmp"
        chown root:redis "$tmp"
        chmod 0640 "$tmp"
        mv -f "$tmp" "$AUTH_FILE"
        log "wrote $AUTH_FILE from $PASSWORD_PARAMETER (attempt $attempt)"
        exit 0
    fi
    log "cannot read $PASSWORD_PARAMETER yet (attempt $attempt of $ATTEMPTS); retrying in 10s"
    sleep 10
done

if [ -s "$AUTH_FILE" ]; then
    # SSM unreachable on a reboot: the password from the last boot still works.
    log "WARNING: SSM unreachable; keeping the existing $AUTH_FILE"
    exit 0
fi
log "ERROR: no password from $PASSWORD_PARAMETER and no earlier $AUTH_FILE; Redis cannot start"
exit 1
