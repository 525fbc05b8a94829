#!/bin/bash
# Gives this server its master role back after a failover, with a plain
# CLUSTER FAILOVER (never FORCE or TAKEOVER: no acknowledged write is lost).
#
# After a server is lost, the replica of its master (on the server before it)
# takes over; when the server comes back, its master process returns as a
# replica. Until someone acts, one server holds two masters and this one none,
# and losing the doubled server would cost two masters. A timer runs this every
# minute on every cluster server; it acts only when the cluster is whole:
#   - this server's master process is a replica, its link is up and in sync;
#   - cluster_state:ok, all 16384 slots served, no node flagged failing;
#   - it is the first drifted server (by IP): never two failovers at once.
# Otherwise it says why it waits and exits 0; a real outage is never fought.
#
# Inputs (environment): SERVER_IP, MASTER_PORT, AUTH_FILE, REDIS_CLI,
# FAILOVER_WAIT_SECONDS (default 10, per try).
set -euo pipefail

: "${SERVER_IP:?SERVER_IP is required}"
: "${MASTER_PORT:?MASTER_PORT is required}"
: "${AUTH_FILE:?AUTH_FILE is required}"
REDIS_CLI=${REDIS_CLI:-redis-cli}
FAILOVER_WAIT_SECONDS=${FAILOVER_WAIT_SECONDS:-10}

log() { echo "role-restore: $*"; }

# The password reaches redis-cli only through REDISCLI_AUTH: never argv, never ps.
# redis_login (lib.sh): the operations user where the servers have users (7.0), else requirepass.
redis_login "$AUTH_FILE" 2>/dev/null || { log "ERROR: no password in $AUTH_FILE"; exit 1; }

me="$SERVER_IP:$MASTER_PORT"
cli() { "${redis_cli[@]}" -h "$SERVER_IP" -p "$MASTER_PORT" "$@" 2>/dev/null | tr -d '\r'; }
# value TEXT KEY : the value of "key:value" lines (INFO, CLUSTER INFO).
value() { awk -F: -v k="$2" '$1 == k { print $2; exit }' <<<"$1"; }

replication=$(cli info replication) || { log "$me does not answer; waiting"; exit 0; }
[ "$(value "$replication" role)" = slave ] || exit 0  # the usual case: nothing to restore

wait_for() { log "$me is a replica; waiting: $*"; exit 0; }

[ "$(value "$replication" master_link_status)" = up ] || wait_for "its link to its master is down"
[ "$(value "$replication" master_sync_in_progress)" = 0 ] || wait_for "it is still syncing"
info=$(cli cluster info)
[ "$(value "$info" cluster_state)" = ok ] || wait_for "cluster_state is not ok"
[ "$(value "$info" cluster_slots_ok)" = 16384 ] || wait_for "not every slot is served"
nodes=$(cli cluster nodes)
failing=$(awk '$3 ~ /fail|handshake|noaddr/ { print $2 }' <<<"$nodes")
[ -z "$failing" ] || wait_for "nodes flagged failing: $(tr '\n' ' ' <<<"$failing")"
# Servers whose master port runs a replica; the first (by IP) restores first, one per run.
first=$(awk -v port="$MASTER_PORT" '{ split($2, a, "[:@]") } a[2] == port && $3 ~ /slave/ { print a[1] }' <<<"$nodes" |
    sort -V | head -n 1)
[ "$first" = "$SERVER_IP" ] || wait_for "server $first restores its master role first"

log "$me is a replica of $(value "$replication" master_host):$(value "$replication" master_port) and in sync; CLUSTER FAILOVER"
# Redis drops a manual failover that gets no majority within 5 s (votes are refused for a while
# after another election): a few tries, each given FAILOVER_WAIT_SECONDS.
for attempt in 1 2 3; do
    [ "$(cli cluster failover)" = OK ] || { log "ERROR: CLUSTER FAILOVER refused by $me"; exit 1; }
    for ((i = 0; i < FAILOVER_WAIT_SECONDS; i++)); do
        if [ "$(value "$(cli info replication)" role)" = master ]; then
            log "$me is a master again: this server holds its master role (try $attempt)"
            exit 0
        fi
        sleep 1
    done
done
# A manual failover that times out changes nothing; the next run tries again.
log "WARNING: $me is still a replica after 3 tries of CLUSTER FAILOVER; trying again next run"
exit 1
