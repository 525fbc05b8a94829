#!/bin/bash
# Forms the Redis Cluster of the first servers: masters first, then each
# replica attached to the master of the NEXT server (a ring), so no replica
# ever shares a server with its master.
#
# Idempotent: every step checks what is already there. A reboot or a second
# run never creates a second cluster and never touches data.
#
# It runs on server 0, whose master and replica come first in MASTERS and
# REPLICAS. When server 0 boots empty (replaced, or a wiped disk) while the
# other servers already form a cluster, it forms nothing and attaches nothing:
# redis-cluster-join rejoins this server (forgets its dead node ids first). For
# the same reason a replica is attached here only while its own server's master
# process owns slots (as right after the create): a replica on a replaced
# server is the rejoin's to place.
#
# Inputs (environment, usually from an EnvironmentFile), so the exact same
# text runs on EC2 and on loopback:
#   MASTERS        "host:port host:port ..."  master of server 0, 1, 2, ...
#   REPLICAS       "replica=master ..."       each replica and the master it follows
#   AUTH_FILE      redis.conf include holding `requirepass <password>`
#   REDIS_CLI      redis-cli binary (default: redis-cli)
#   WAIT_SECONDS   how long to wait for peers and for cluster_state:ok (default 900)
# Logs go to stdout, which systemd sends to the journal.
set -euo pipefail

REDIS_CLI=${REDIS_CLI:-redis-cli}
WAIT_SECONDS=${WAIT_SECONDS:-900}
: "${MASTERS:?MASTERS is required}"
: "${REPLICAS:?REPLICAS is required}"
: "${AUTH_FILE:?AUTH_FILE is required}"

log() { echo "cluster-bootstrap: $*"; }
die() { log "ERROR: $*"; exit 1; }

# The password reaches redis-cli only through REDISCLI_AUTH: never argv, never ps.
# redis_login (lib.sh): the operations user where the servers have users (7.0), else requirepass.
redis_login "$AUTH_FILE" 2>/dev/null || die "no password in $AUTH_FILE"

read -r -a masters <<<"$MASTERS"
read -r -a replicas <<<"$REPLICAS"

# cli HOST:PORT ARGS... : one command against one node.
cli() {
    local node=$1
    shift
    "${redis_cli[@]}" -h "${node%:*}" -p "${node##*:}" "$@"
}

# field NODE SECTION KEY : one value from INFO (empty when unreachable).
field() {
    cli "$1" info "$2" 2>/dev/null | tr -d '\r' | awk -F: -v k="$3" '$1 == k { print $2 }'
}

# cinfo NODE KEY : one value from CLUSTER INFO (empty when unreachable).
cinfo() {
    cli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'
}

all_nodes() {
    local pair
    printf '%s\n' "${masters[@]}"
    for pair in "${replicas[@]}"; do printf '%s\n' "${pair%%=*}"; done
}

# wait_for_nodes NODE... : each answers PING with cluster_enabled:1 (bounded by WAIT_SECONDS).
wait_for_nodes() {
    local deadline=$((SECONDS + WAIT_SECONDS)) node
    for node in "$@"; do
        until [ "$(cli "$node" ping 2>/dev/null | tr -d '\r')" = PONG ] &&
            [ "$(field "$node" cluster cluster_enabled)" = 1 ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "$node did not answer PING with cluster_enabled:1 in ${WAIT_SECONDS}s"
            sleep 1
        done
        log "$node answers, cluster_enabled:1"
    done
}

# A cluster exists if any master already knows another node or owns a slot.
cluster_exists() {
    local node
    for node in "${masters[@]}"; do
        if [ "$(cinfo "$node" cluster_known_nodes)" != 1 ] || [ "$(cinfo "$node" cluster_slots_assigned)" != 0 ]; then
            log "$node already belongs to a cluster"
            return 0
        fi
    done
    return 1
}

# in_cluster NODE: it answers, and knows another node or owns a slot.
in_cluster() {
    local known
    known=$(cinfo "$1" cluster_known_nodes)
    [ -n "$known" ] && { [ "$known" != 1 ] || [ "$(cinfo "$1" cluster_slots_assigned)" != 0 ]; }
}

# Server 0 empty while another server's process already belongs to a cluster: a replacement.
# Hands over to redis-cluster-join and stops here (exit 0), so no second cluster is ever formed.
hand_over_if_replaced() {
    local node
    if in_cluster "${masters[0]}" || in_cluster "${replicas[0]%%=*}"; then return 0; fi
    for node in $(all_nodes); do
        if [ "$node" != "${masters[0]}" ] && [ "$node" != "${replicas[0]%%=*}" ] && in_cluster "$node"; then
            log "this server is empty but $node belongs to a cluster: the peers already form one;" \
                "not forming another (redis-cluster-join rejoins this server)"
            exit 0
        fi
    done
}

# owns_slots NODE: a master with slots, in its own view.
owns_slots() {
    [ "$(cli "$1" cluster nodes 2>/dev/null | awk '$3 ~ /myself/ { print NF }')" -gt 8 ]
}

# The master process on the same server as REPLICA (host:port).
master_beside() {
    local node
    for node in "${masters[@]}"; do
        [ "${node%:*}" != "${1%:*}" ] || { echo "$node"; return 0; }
    done
}

create_masters() {
    if cluster_exists; then
        log "cluster already created; not creating another"
        return
    fi
    log "creating the cluster from masters: ${masters[*]}"
    "${redis_cli[@]}" --cluster create "${masters[@]}" --cluster-replicas 0 --cluster-yes
}

attach_replicas() {
    local pair replica master master_id reply
    for pair in "${replicas[@]}"; do
        replica=${pair%%=*}
        master=${pair##*=}
        if [ "$(cinfo "$replica" cluster_known_nodes)" = 1 ] && ! owns_slots "$(master_beside "$replica")"; then
            log "$replica is empty and so is its server's master: a replaced server; redis-cluster-join places it"
        elif [ "$(cinfo "$replica" cluster_known_nodes)" = 1 ]; then
            master_id=$(cli "$master" cluster myid | tr -d '\r')
            [ -n "$master_id" ] || die "cannot read the node id of $master"
            log "adding $replica as replica of $master ($master_id)"
            "${redis_cli[@]}" --cluster add-node "$replica" "$master" --cluster-slave --cluster-master-id "$master_id"
        elif [ "$(field "$replica" replication role)" = slave ]; then
            log "$replica is already a replica; leaving it"
        elif [ "$(cli "$replica" cluster nodes | awk '$3 ~ /myself/ { print NF }')" -gt 8 ]; then
            # It owns slots: a failover promoted it. Never demote a master here.
            log "$replica is a master with slots (promoted by a failover); leaving it"
        elif ! owns_slots "$(master_beside "$replica")"; then
            log "$replica met the cluster but its server's master owns no slot: a rejoin at work; leaving it"
        else
            # Met the cluster but never got its master (an earlier run stopped half-way).
            master_id=$(cli "$master" cluster myid | tr -d '\r')
            log "$replica already met the cluster; making it replicate $master ($master_id)"
            reply=$(cli "$replica" cluster replicate "$master_id" | tr -d '\r')
            [ "$reply" = OK ] || die "CLUSTER REPLICATE on $replica: $reply"
        fi
    done
}

wait_for_ok() {
    local deadline=$((SECONDS + WAIT_SECONDS)) node pair
    for node in $(all_nodes); do
        until [ "$(cinfo "$node" cluster_state)" = ok ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "$node did not reach cluster_state:ok in ${WAIT_SECONDS}s"
            sleep 1
        done
    done
    # A replica is attached once its link to the master is up (after a failover
    # a 7001 process may be the master: it has no link to wait for).
    for pair in "${replicas[@]}"; do
        node=${pair%%=*}
        [ "$(field "$node" replication role)" = slave ] || continue
        until [ "$(field "$node" replication master_link_status)" = up ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "$node has no link to its master in ${WAIT_SECONDS}s"
            sleep 1
        done
    done
    # Gossip spreads the new roles: wait until every master sees every replica.
    # (After failovers the 7000/7001 roles may be swapped; the count still holds.)
    for node in "${masters[@]}"; do
        until [ "$(cli "$node" cluster nodes 2>/dev/null | awk '$3 ~ /slave/' | wc -l)" -ge "${#replicas[@]}" ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "$node does not see all ${#replicas[@]} replicas in ${WAIT_SECONDS}s"
            sleep 1
        done
    done
    log "cluster_state:ok on every node; every replica linked to its master and seen by every master"
}

log "masters: ${masters[*]}; replicas: ${replicas[*]}"
wait_for_nodes "${masters[0]}" "${replicas[0]%%=*}"
hand_over_if_replaced
# shellcheck disable=SC2046  # one node a word
wait_for_nodes $(all_nodes)
hand_over_if_replaced
create_masters
attach_replicas
wait_for_ok
log "done"
