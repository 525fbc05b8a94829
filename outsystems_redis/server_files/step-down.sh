#!/bin/bash
# Before a clean stop of a Redis process, hands its master role to its replica
# on another server with a plain CLUSTER FAILOVER (never FORCE or TAKEOVER: the
# replica catches up with the master before it takes over, so no acknowledged
# write is lost and clients are redirected instead of waiting out
# cluster-node-timeout and an election).
#
# It is the ExecStop of every redis-server@<port> on a cluster server, so it
# runs on `systemctl stop|restart`, `reboot` and `poweroff`, before systemd
# sends SIGTERM. It never fails a stop: whatever happens it exits 0, and every
# wait is bounded (systemd's TimeoutStopSec bounds it too). It acts only when
#   - this process answers, runs in cluster mode and is a master holding slots;
#   - one of its replicas is on another server, connected, its link up and in sync.
# Otherwise (a replica, a single server, no synced replica) it says why and exits.
#
# Usage: redis-step-down PORT
# Inputs (environment): SERVER_IP, AUTH_FILE, REDIS_CLI,
# STEP_DOWN_WAIT_SECONDS (default 10, per try; two tries).
set -uo pipefail  # no -e: nothing here may fail the stop

PORT=${1:-}
SERVER_IP=${SERVER_IP:-}
AUTH_FILE=${AUTH_FILE:-}
REDIS_CLI=${REDIS_CLI:-redis-cli}
STEP_DOWN_WAIT_SECONDS=${STEP_DOWN_WAIT_SECONDS:-10}

log() { echo "redis-step-down: $*"; }
finish() { log "$*"; exit 0; }

if [ -z "$PORT" ] || [ -z "$SERVER_IP" ] || [ -z "$AUTH_FILE" ]; then
    finish "ERROR: usage: SERVER_IP=... AUTH_FILE=... redis-step-down PORT; stopping without a step-down"
fi

# The password reaches redis-cli only through REDISCLI_AUTH: never argv, never ps.
# redis_login (lib.sh): the operations user where the servers have users (7.0), else requirepass.
redis_login "$AUTH_FILE" 2>/dev/null || finish "ERROR: no password in $AUTH_FILE; stopping without a step-down"

me="$SERVER_IP:$PORT"
# cli HOST PORT ARGS... : one bounded call (a peer that hangs must not hold the stop).
cli() { timeout 5 "${redis_cli[@]}" -h "$1" -p "$2" "${@:3}" 2>/dev/null | tr -d '\r'; }
# value TEXT KEY : the value of "key:value" lines (INFO).
value() { awk -F: -v k="$2" '$1 == k { print $2; exit }' <<<"$1"; }
role_of() { value "$(cli "$1" "$2" info replication)" role; }

info=$(cli "$SERVER_IP" "$PORT" info) || finish "$me does not answer: nothing to hand over"
[ "$(value "$info" cluster_enabled)" = 1 ] || finish "$me is not a cluster node (a single server): nothing to hand over"
[ "$(value "$info" role)" = master ] || finish "$me is a replica: nothing to hand over"

nodes=$(cli "$SERVER_IP" "$PORT" cluster nodes) || finish "$me: CLUSTER NODES failed; stopping without a step-down"
my_id=$(awk '$3 ~ /myself/ { print $1; exit }' <<<"$nodes")
# Slot ranges start at field 9 of CLUSTER NODES.
slots=$(awk '$3 ~ /myself/ { print NF - 8; exit }' <<<"$nodes")
[ "${slots:-0}" -gt 0 ] || finish "$me holds no slots: nothing to hand over"

# Its replicas on other servers that the cluster sees connected and not failing.
target=""
while read -r host port; do
    if [ -z "$host" ] || [ "$host" = "$SERVER_IP" ]; then continue; fi
    replication=$(cli "$host" "$port" info replication)
    [ -n "$replication" ] || { log "replica $host:$port of $me does not answer"; continue; }
    if [ "$(value "$replication" master_link_status)" = up ] &&
        [ "$(value "$replication" master_sync_in_progress)" = 0 ]; then
        target="$host $port"
        break
    fi
    log "replica $host:$port of $me is not in sync"
done < <(awk -v id="$my_id" '$4 == id && $3 ~ /slave/ && $3 !~ /fail|handshake|noaddr/ && $8 == "connected" {
        split($2, a, "[:@,]"); print a[1], a[2] }' <<<"$nodes")
[ -n "$target" ] || finish "WARNING: $me is a master with no replica in sync on another server" \
    "($(awk -v id="$my_id" '$4 == id' <<<"$nodes" | wc -l) listed); stopping without a step-down (its slots wait for a failover)"

read -r host port <<<"$target"
log "$me is a master holding slots; CLUSTER FAILOVER on its replica $host:$port (in sync) before stopping"
started=$SECONDS
for attempt in 1 2; do
    answer=$(cli "$host" "$port" cluster failover)
    [ "$answer" = OK ] || finish "WARNING: $host:$port refused CLUSTER FAILOVER ($answer); stopping anyway"
    for ((i = 0; i < STEP_DOWN_WAIT_SECONDS * 5; i++)); do
        if [ "$(role_of "$host" "$port")" = master ]; then
            # A moment for this process to learn it: its clients then get MOVED, not a closed connection.
            for ((j = 0; j < 10; j++)); do
                [ "$(role_of "$SERVER_IP" "$PORT")" = slave ] && break
                sleep 0.2
            done
            finish "$host:$port is the master now ($((SECONDS - started)) s, try $attempt); $me stops as a replica"
        fi
        sleep 0.2
    done
done
finish "WARNING: $host:$port did not take over within $((SECONDS - started)) s; stopping $me anyway" \
    "(its replica takes over after cluster-node-timeout)"
