#!/bin/bash
# Snapshots every Redis master process on this server to the stack's S3 bucket.
#
# A timer runs this on every server at the same moment each hour. All runs of
# one hour share TAKEN_AT, the start of the hour the run belongs to (its start
# time rounded down to PERIOD_SECONDS), never the time an upload ends: the
# snapshots of every server's masters from one hour form one snapshot set.
#
# Which processes are masters is read at run time (INFO replication): after a
# failover the master may be the 7001 process, or this server may hold none.
# For each master:
#   - `redis-cli --rdb`: the master sends a point-in-time RDB over its
#     replication protocol (one fork, like any BGSAVE). Redis 7.0 streams it
#     from the fork (diskless, its default); 5.0 writes its own dump.rdb first,
#     as its `save 300 1` does, and sends that (a save already running is
#     waited for, within SNAPSHOT_SECONDS). Neither schedule nor config changes.
#     Our copy is the only extra one on disk: one master at a time, removed
#     once uploaded; a run refuses a snapshot the disk could not hold.
#   - its role and slots before and after: a master that changed during the
#     snapshot is not uploaded. One that lost or gained slots is tried again
#     RETRY_SECONDS later, up to SNAPSHOT_ATTEMPTS times (a scale-out's
#     rebalance moves slots for a minute or two, and the hourly timers may
#     fire in it); after the last attempt the run fails (exit 1). One that
#     became a replica fails the run at once: its slots' new master, on
#     another server, may have been passed over by that server's run.
#   - upload <prefix><writer>/<server>/<taken_at>/<port>.rdb, then <port>.json
#     (the manifest: the slots it held, its keys, its Redis version). The
#     manifest goes last: a snapshot without one is incomplete and the restore
#     ignores it. The writer is this instance's own session as IAM names it
#     (aws:userid, "<role id>:<instance id>", from STS GetCallerIdentity, which
#     needs no permission): the role may write only there, so no server can
#     replace another's snapshots.
# The bucket is BUCKET, its name fixed in the user data (servers created before that read it from the
# parameter BUCKET_PARAMETER at each run).
# The password reaches redis-cli through REDISCLI_AUTH only. Every call is
# bounded (`timeout`, AWS CLI timeouts). Exit 1 when any master was not
# backed up (the journal says which and why).
#
# Inputs (environment): SERVER_NAME, SERVER_IP, PORTS, AUTH_FILE, AWS_REGION,
# BUCKET (or BUCKET_PARAMETER), KEY_PREFIX, WORK_DIR; optional REDIS_CLI, PERIOD_SECONDS,
# SNAPSHOT_SECONDS, UPLOAD_SECONDS, SNAPSHOT_ATTEMPTS, RETRY_SECONDS.
set -euo pipefail

: "${SERVER_NAME:?SERVER_NAME is required}"
: "${SERVER_IP:?SERVER_IP is required}"
: "${PORTS:?PORTS is required}"
: "${AUTH_FILE:?AUTH_FILE is required}"
: "${AWS_REGION:?AWS_REGION is required}"
BUCKET=${BUCKET:-} BUCKET_PARAMETER=${BUCKET_PARAMETER:-}
: "${BUCKET:-${BUCKET_PARAMETER:?BUCKET or BUCKET_PARAMETER is required}}"
: "${KEY_PREFIX:?KEY_PREFIX is required}"
: "${WORK_DIR:?WORK_DIR is required}"
REDIS_CLI=${REDIS_CLI:-redis-cli}
PERIOD_SECONDS=${PERIOD_SECONDS:-3600}
SNAPSHOT_SECONDS=${SNAPSHOT_SECONDS:-900}
UPLOAD_SECONDS=${UPLOAD_SECONDS:-1800}
SNAPSHOT_ATTEMPTS=${SNAPSHOT_ATTEMPTS:-3}
RETRY_SECONDS=${RETRY_SECONDS:-30}
case "$SNAPSHOT_ATTEMPTS" in '' | *[!0-9]* | 0) echo "redis-backup: ERROR: SNAPSHOT_ATTEMPTS must be 1 or more" >&2; exit 1 ;; esac
export AWS_RETRY_MODE=${AWS_RETRY_MODE:-standard}
export AWS_MAX_ATTEMPTS=${AWS_MAX_ATTEMPTS:-3}

log() { echo "redis-backup: $*"; }

# The set this run belongs to, from its start: the scheduled hour, whatever the runs' durations.
printf -v now '%(%s)T' -1
taken_at=$(date -u -d "@$((now / PERIOD_SECONDS * PERIOD_SECONDS))" +%Y%m%dT%H%M%SZ)

# redis_login (lib.sh): the operations user where the servers have users (7.0), else requirepass.
redis_login "$AUTH_FILE" 2>/dev/null || { log "ERROR: no password in $AUTH_FILE"; exit 1; }

# The bucket by name from the user data; a server created before that reads it from its parameter (ssm_get:
# lib.sh, shipped ahead of this script).
bucket=$BUCKET
[ -n "$bucket" ] || bucket=$(ssm_get "$BUCKET_PARAMETER" 30) ||
    { log "ERROR: cannot read the bucket's name from $BUCKET_PARAMETER"; exit 1; }
case "$bucket" in '' | None) log "ERROR: $BUCKET_PARAMETER holds no bucket name"; exit 1 ;; esac
# caller_id: lib.sh. The writer's prefix is the only one this role may write under.
writer=$(caller_id 30) ||
    { log "ERROR: cannot read this instance's identity from STS (GetCallerIdentity)"; exit 1; }
case "$writer" in '' | None | *[!A-Za-z0-9:._@-]*) log "ERROR: STS gave no usable identity ($writer)"; exit 1 ;; esac

mkdir -p "$WORK_DIR"
# A run killed by its unit's timeout cannot clean up; runs never overlap and last under an hour.
find "$WORK_DIR" -maxdepth 1 -name 'run.*' -mmin +60 -exec rm -rf {} + || true
run_dir=$(mktemp -d "$WORK_DIR/run.XXXXXX")
trap 'rm -rf "$run_dir"' EXIT

cli() { timeout -k 2 10 "${redis_cli[@]}" -h "$SERVER_IP" -p "$port" "$@" 2>/dev/null | tr -d '\r'; }
value() { awk -F: -v k="$2" '$1 == k { print $2; exit }' <<<"$1"; }
# held : this master's role and slots as CLUSTER NODES tells them (slots in migration left out).
held() {
    if [ "$cluster" = 1 ]; then
        cli cluster nodes | awk '$3 ~ /myself/ {
            printf "%s", ($3 ~ /master/ ? "master" : "replica")
            for (i = 9; i <= NF; i++) if ($i !~ /^\[/) printf " %s", $i
        }'
    else
        value "$(cli info replication)" role
    fi
}

aws_put() {
    timeout -k 5 "$UPLOAD_SECONDS" aws s3 cp "$1" "s3://$bucket/$2" --region "$AWS_REGION" \
        --only-show-errors --no-progress --cli-connect-timeout 5 --cli-read-timeout 60
}

# snapshot PORT: back up one master (return 0), or say why not (1), or that its slots moved under the
# snapshot (2). Called as `snapshot ... || ...`, where bash suspends `set -e`: every step checks its own status.
snapshot() {
    local port=$1 me="$SERVER_IP:$1" replication info used free rdb keys before after key manifest slots
    if ! replication=$(cli info replication) || [ -z "$replication" ]; then
        log "ERROR: $me does not answer; not backed up"
        return 1
    fi
    if [ "$(value "$replication" role)" != master ]; then
        log "$me is a replica: its master is backed up by the server it runs on"
        return 0
    fi
    info=$(cli info) || info=""
    cluster=$(value "$info" cluster_enabled)
    before=$(held) || before=unknown
    used=$(value "$info" used_memory)
    free=$(df -P -B1 "$run_dir" | awk 'NR == 2 { print $4 }')
    case "$free" in '' | *[!0-9]*) log "ERROR: cannot read the free space of $WORK_DIR; $me not backed up"; return 1 ;; esac
    # An RDB is smaller than the memory it comes from; below that much free space, do not try.
    if [ "$free" -lt "${used:-0}" ]; then
        log "ERROR: $me uses $used bytes; $WORK_DIR has $free free; not backed up"
        return 1
    fi
    rdb="$run_dir/$port.rdb"
    keys=$(cli dbsize) || keys=0
    if ! timeout -k 5 "$SNAPSHOT_SECONDS" "${redis_cli[@]}" -h "$SERVER_IP" -p "$port" --rdb "$rdb" \
        >"$run_dir/snapshot.log" 2>&1 || [ "$(head -c 5 "$rdb" 2>/dev/null)" != REDIS ]; then
        log "ERROR: no snapshot of $me: $(tail -n 3 "$run_dir/snapshot.log" | tr '\n' ' ')"
        rm -f "$rdb"
        return 1
    fi
    after=$(held) || after=unknown
    if [ "$after" != "$before" ] || [ "${before%% *}" != master ]; then
        rm -f "$rdb"
        if [ "${before%% *}" = master ] && [ "${after%% *}" = master ]; then
            log "$me changed during the snapshot ($before -> $after); not uploaded"
            return 2
        fi
        log "ERROR: $me is no longer a master it could vouch for ($before -> $after); not backed up"
        return 1
    fi
    key="$KEY_PREFIX$writer/$SERVER_NAME/$taken_at/$port"
    manifest="$run_dir/$port.json"
    slots=${before#master}
    slots=${slots# }
    if ! printf '{"server": "%s", "writer": "%s", "port": %s, "taken_at": "%s", "cluster": %s, "slots": "%s", "keys": %s, "bytes": %s, "redis_version": "%s"}\n' \
        "$SERVER_NAME" "$writer" "$port" "$taken_at" "$([ "$cluster" = 1 ] && echo true || echo false)" "$slots" \
        "${keys:-0}" "$(stat -c %s "$rdb")" "$(value "$info" redis_version)" >"$manifest"; then
        log "ERROR: cannot write the manifest of $me; not uploaded"
        rm -f "$rdb" "$manifest"
        return 1
    fi
    if aws_put "$rdb" "$key.rdb" && aws_put "$manifest" "$key.json"; then
        log "$me: uploaded s3://$bucket/$key.rdb ($(stat -c %s "$rdb") bytes, ${keys:-0} keys${slots:+, slots $slots})"
        rm -f "$rdb" "$manifest"
        backed_up=$((backed_up + 1))
        return 0
    fi
    log "ERROR: upload of $me to s3://$bucket/$key.rdb failed"
    rm -f "$rdb" "$manifest"
    return 1
}

failed=0
backed_up=0
for port in $PORTS; do
    for attempt in $(seq "$SNAPSHOT_ATTEMPTS"); do
        outcome=0
        snapshot "$port" || outcome=$?
        [ "$outcome" -eq 2 ] || break
        if [ "$attempt" -lt "$SNAPSHOT_ATTEMPTS" ]; then
            log "$SERVER_IP:$port: trying again in $RETRY_SECONDS s (attempt $((attempt + 1)) of $SNAPSHOT_ATTEMPTS)"
            sleep "$RETRY_SECONDS"
        else
            log "ERROR: $SERVER_IP:$port changed during each of $SNAPSHOT_ATTEMPTS snapshots; not backed up"
        fi
    done
    [ "$outcome" -eq 0 ] || failed=$((failed + 1))
done

log "snapshot set $taken_at: $backed_up master(s) backed up, $failed failed"
[ "$failed" -eq 0 ]
