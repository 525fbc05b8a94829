#!/bin/bash
# Brings this server into the running Redis Cluster, by itself, whatever its
# index. Two cases, told apart by what the cluster shows (re-read every round):
#
#   JOIN (a NEW server >= 3, scale-out): its master takes a fair share of the
#   slots, its replica joins the crossed ring, and the ring is re-linked so
#   that still no replica shares a server with its master. Servers 0..2 never
#   do this: server 0's cluster-bootstrap forms the cluster from them.
#
#   REJOIN (any server that boots EMPTY at the address of a known server: a
#   replaceServers replacement, an EC2 recovery onto a new disk, a wiped disk):
#   the cluster shows a hole: a live master with slots and no live replica
#   (the failover promoted the replica of this server's old master, on the
#   server before it, and the master of the next server lost its replica).
#   Then, only when every slot is served without this server, the only dead
#   nodes (flagged fail or noaddr) own no slot and are at this address or have
#   none left (a peer that reached the new process marks the old id noaddr),
#   and every other server holds its two processes:
#     1. every live node forgets the dead ids (CLUSTER FORGET, all in one sweep:
#        each node refuses a forgotten id for 60 s, and a node that still knew
#        it would gossip it back);
#     2. the master process meets the cluster and replicates the master that
#        now owns this server's old slots (the hole on a server holding two
#        masters);
#     3. the replica process meets the cluster and replicates the other hole:
#        the master of the next server (the crossed ring again);
#     4. waits until both are linked and in sync. redis-role-restore (a timer,
#        every minute) then gives this server its master role back with a
#        plain CLUSTER FAILOVER: no acknowledged write is lost, never FORCE or
#        TAKEOVER.
#   A real outage (a slot unserved, a node of another server failing, a server
#   with one process) is never fought: the rejoin waits and says why.
#
# Until one case applies (first boot of servers 0..2: the bootstrap adds them;
# a replacement whose old master has not failed over yet) it waits, bounded by
# WAIT_SECONDS; systemd starts it again after a failure.
#
# Order of a JOIN, chosen so that every slot always has a replica on another server:
#   1. wait for this server's processes, for the cluster to be healthy, and for
#      every earlier server to have joined (see "Two servers at once" below);
#   2. add this server's master (redis-cli --cluster add-node), still empty;
#   3. link the ring: this server's replica follows the master of server 0
#      (which then briefly has two replicas), then the replica of the server
#      before this one moves to this server's master (CLUSTER REPLICATE, by id);
#   4. move slots to the new master (--cluster rebalance, --cluster-use-empty-masters)
#      until every master is within REBALANCE_THRESHOLD percent of equal;
#   5. wait until the cluster is healthy again.
#
# Two servers at once (4 -> 6): joins are serialised by server index. Server k
# waits until servers 0..k-1 each hold a master with slots and the cluster has
# been settled (no open slot, same slot map) for SETTLE_SECONDS. Server k-1
# itself waited for k-2, so this orders every join. No lock is kept anywhere:
# the cluster's own state is the queue, so a crashed joiner leaves nothing to
# clean up, and the ring stays right because each joiner is, while it works,
# the last server of the ring. The price: a server that never comes up holds
# up the ones after it (each wait is bounded by WAIT_SECONDS, then this fails
# with a line saying what it waited for). A join waits while a rejoin leaves a
# hole or dead nodes, and a rejoin waits while a server holds one process.
#
# Roles come from the cluster, by server IP: after a failover the master of a
# server may be its 7001 process. If roles drifted (a server holds two masters
# or none), a JOIN does not touch the cluster and points at the health check's
# CLUSTER FAILOVER fix.
#
# Idempotent: every step checks what is already there, so a reboot or a second
# run changes nothing. Once a later server has joined, the ring and the slots
# are that server's to keep; this only confirms its own nodes are members.
#
# Inputs (environment, usually from an EnvironmentFile), so the exact same
# text runs on EC2 and on loopback:
#   SERVERS              "ip ip ..."  servers 0..k in index order (k >= 3: this server is the
#                        last), or the first three servers (this server is one of them)
#   SERVER_INDEX         this server's index in SERVERS (default: the last)
#   MASTER_PORT          port of each server's master (7000)
#   REPLICA_PORT         port of each server's replica (7001)
#   AUTH_FILE            redis.conf include holding `requirepass <password>`
#   REDIS_CLI            redis-cli binary (default: redis-cli)
#   WAIT_SECONDS         bound of each wait (default 1800)
#   SETTLE_SECONDS       how long the cluster must stay unchanged before a join (default 5)
#   REBALANCE_THRESHOLD  percent off equal that rebalance tolerates (default 1)
# Logs go to stdout, which systemd sends to the journal.
set -euo pipefail

REDIS_CLI=${REDIS_CLI:-redis-cli}
WAIT_SECONDS=${WAIT_SECONDS:-1800}
SETTLE_SECONDS=${SETTLE_SECONDS:-5}
REBALANCE_THRESHOLD=${REBALANCE_THRESHOLD:-1}
: "${SERVERS:?SERVERS is required}"
: "${MASTER_PORT:?MASTER_PORT is required}"
: "${REPLICA_PORT:?REPLICA_PORT is required}"
: "${AUTH_FILE:?AUTH_FILE is required}"

log() { echo "cluster-join: $*"; }
die() { log "ERROR: $*"; exit 1; }

# The password reaches redis-cli only through REDISCLI_AUTH: never argv, never ps.
# redis-cli passes it on to MIGRATE (AUTH, with the user AUTH2) when rebalance moves keys.
# redis_login (lib.sh): the operations user where the servers have users (7.0), else requirepass.
redis_login "$AUTH_FILE" 2>/dev/null || die "no password in $AUTH_FILE"

read -r -a servers <<<"$SERVERS"
count=${#servers[@]}
index=${SERVER_INDEX:-$((count - 1))}
if ! [[ "$index" =~ ^[0-9]+$ ]] || [ "$index" -ge "$count" ]; then die "SERVER_INDEX $index is not a server of SERVERS"; fi
# A server past the first three names servers 0..k, itself last (its user data ignores later servers).
[ "$index" -lt 3 ] || [ "$index" = $((count - 1)) ] || die "server $((index + 1)) must be the last of SERVERS"
me=${servers[$index]}
my_master="$me:$MASTER_PORT"
my_replica="$me:$REPLICA_PORT"
HEALTH_HINT="run the health check (python -m outsystems_redis.tools.health --cluster --nodes ...) and its CLUSTER FAILOVER fix, then start this unit again"

cli() {
    local node=$1
    shift
    "${redis_cli[@]}" -h "${node%:*}" -p "${node##*:}" "$@"
}

cinfo() {
    cli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'
}

field() {
    cli "$1" info "$2" 2>/dev/null | tr -d '\r' | awk -F: -v k="$3" '$1 == k { print $2 }'
}

# CLUSTER NODES of one node as "id host:port role master_id slots failing dead handshake", one line
# a node. role: master|slave; failing: 1 when flagged fail/fail?/handshake/noaddr; dead: 1 when
# flagged fail (agreed, not fail?) or noaddr; handshake: 1 while the id is a placeholder, dropped
# once the node answers. A noaddr node's host:port is ":0".
table() {
    cli "$1" cluster nodes 2>/dev/null | tr -d '\r' | awk '
        NF >= 8 {
            split($2, a, "@"); n = 0
            for (i = 9; i <= NF; i++) {
                if ($i ~ /^\[/) continue  # a slot being migrated, not owned
                split($i, r, "-"); n += (r[2] == "" ? 1 : r[2] - r[1] + 1)
            }
            failing = ($3 ~ /fail|handshake|noaddr/) ? 1 : 0
            f = "," $3 ","
            dead = (index(f, ",fail,") || index(f, ",noaddr,")) ? 1 : 0
            print $1, a[1], ($3 ~ /master/ ? "master" : "slave"), $4, n, failing, dead, ($3 ~ /handshake/ ? 1 : 0)
        }'
}

# Any node of the other servers that reports cluster_state:ok (masters first).
seed() {
    local i port node
    for port in "$MASTER_PORT" "$REPLICA_PORT"; do
        for ((i = 0; i < count; i++)); do
            [ "$i" != "$index" ] || continue
            node="${servers[$i]}:$port"
            if [ "$(cinfo "$node" cluster_state)" = ok ]; then
                echo "$node"
                return 0
            fi
        done
    done
    return 1
}

member() { [ "$(cinfo "$1" cluster_known_nodes)" != "" ] && [ "$(cinfo "$1" cluster_known_nodes)" != 1 ]; }

# The cluster's current view, from a seed, into globals.
view=""
refresh() {
    local s
    s=$(seed) || return 1
    SEED=$s
    view=$(table "$SEED")
    [ -n "$view" ]
}

# masters_on IP : masters that own slots on one server (ids).
masters_on() { awk -v ip="$1" '{ split($2, a, ":") } a[1] == ip && $3 == "master" && $5 > 0 && !$6 { print $1 }' <<<"$view"; }
# A node mid-handshake shows under a random id at the same address: never that one.
id_of() { awk -v n="$1" '$2 == n && !$8 { print $1 }' <<<"$view"; }
row_of() { awk -v id="$1" '$1 == id' <<<"$view"; }

# The master of server IP: its one master with slots; this server's own master before it has slots.
master_of() {
    local ip=$1 ids
    ids=$(masters_on "$ip")
    if [ -z "$ids" ] && [ "$ip" = "$me" ]; then
        ids=$(id_of "$my_master")
    fi
    [ "$(wc -w <<<"$ids")" = 1 ] || return 1
    echo "$ids"
}

# The replica of server IP: its other process.
replica_of() {
    local ip=$1 master=$2
    awk -v ip="$ip" -v m="$master" '{ split($2, a, ":") } a[1] == ip && $1 != m { print $1 }' <<<"$view"
}

# Servers (IPs) holding a master with slots that are not in SERVERS: they joined after this one.
later_servers() {
    awk '$3 == "master" && $5 > 0 && !$6 { split($2, a, ":"); print a[1] }' <<<"$view" | sort -u |
        while read -r ip; do
            case " ${servers[*]} " in *" $ip "*) ;; *) echo "$ip" ;; esac
        done
}

# Sets `why` to the reason the cluster is not ready for this server to act ("" when it is).
# Runs in this shell (not a subshell) so that `view` and SEED stay current.
why=""
check_ready() {
    local i ip n
    why=""
    refresh || { why="no server of ${servers[*]:0:$index} reports cluster_state:ok"; return 0; }
    [ "$(cinfo "$SEED" cluster_slots_ok)" = 16384 ] || { why="not every slot is served ($SEED)"; return 0; }
    if awk '$6 { found = 1 } END { exit !found }' <<<"$view"; then
        why="a node is flagged failing: $(awk '$6 { print $2 }' <<<"$view" | tr '\n' ' ')"
        return 0
    fi
    for ((i = 0; i < index; i++)); do
        ip=${servers[$i]}
        n=$(masters_on "$ip" | wc -l)
        # A joiner's master is empty (or not there yet) until its rebalance; a server
        # whose processes are both replicas lost its master role to a failover.
        if [ "$n" = 0 ] && [ "$i" -ge 3 ] && ! awk -v ip="$ip" '{ split($2, a, ":") }
                a[1] == ip && $3 == "slave" { found = 1 } END { exit !found }' <<<"$view"; then
            why="server $((i + 1)) ($ip) has not finished joining yet"
            return 0
        fi
        if [ "$n" != 1 ]; then
            why="DRIFT: server $ip holds $n masters; roles drifted after a failover. $HEALTH_HINT"
            return 0
        fi
    done
    # Open slots: a rebalance (or a half-finished one) is moving slots.
    if ! "${redis_cli[@]}" --cluster check "$SEED" >/dev/null 2>&1; then
        why="slots are being moved (redis-cli --cluster check $SEED: open slots): another server's rebalance; if none runs, one stopped half-way and needs: redis-cli --cluster fix $SEED"
    fi
}

# Waits until the cluster is healthy, every earlier server has joined, and nothing moved for SETTLE_SECONDS.
wait_for_cluster() {
    local deadline=$((SECONDS + WAIT_SECONDS)) last="" before
    while :; do
        check_ready
        if [ -z "$why" ]; then
            before=$(cut -d' ' -f1-5 <<<"$view")
            sleep "$SETTLE_SECONDS"
            check_ready
            if [ -z "$why" ]; then
                [ "$(cut -d' ' -f1-5 <<<"$view")" = "$before" ] && break
                why="the cluster changed in the last ${SETTLE_SECONDS}s"
            fi
        fi
        [ "$why" = "$last" ] || log "waiting: $why"
        last=$why
        [ "$SECONDS" -lt "$deadline" ] || die "gave up after ${WAIT_SECONDS}s: $why"
        sleep 2
    done
    log "cluster healthy and settled (seen from $SEED)"
}

wait_for_own_nodes() {
    local deadline=$((SECONDS + WAIT_SECONDS)) node
    for node in "$my_master" "$my_replica"; do
        until [ "$(cli "$node" ping 2>/dev/null | tr -d '\r')" = PONG ] &&
            [ "$(field "$node" cluster cluster_enabled)" = 1 ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "$node did not answer PING with cluster_enabled:1 in ${WAIT_SECONDS}s"
            sleep 1
        done
    done
    log "$my_master and $my_replica answer, cluster_enabled:1"
}

# Waits until NODE is known to a consistent cluster and every member has met it
# (gossip: a node that has not met it yet answers "Unknown node" to CLUSTER REPLICATE).
# Replies are read whole, then searched: `redis-cli | grep -q` fails under pipefail when grep
# leaves before a long reply is written.
wait_known() {
    local node=$1 deadline=$((SECONDS + WAIT_SECONDS)) id peer peers
    # The node's own word for its id: a peer's view can still hold a handshake placeholder.
    until id=$(cli "$node" cluster myid 2>/dev/null | tr -d '\r') && [ -n "$id" ] && refresh &&
        [ -n "$(row_of "$id")" ] && "${redis_cli[@]}" --cluster check "$SEED" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "$node not known to a consistent cluster in ${WAIT_SECONDS}s"
        sleep 1
    done
    mapfile -t peers < <(awk '!$6 { print $2 }' <<<"$view")
    for peer in "${peers[@]}"; do
        local nudge=$((SECONDS + 10))
        until grep -q "^$id " <<<"$(cli "$peer" cluster nodes 2>/dev/null)"; do
            [ "$SECONDS" -lt "$deadline" ] || die "$peer has not met $node in ${WAIT_SECONDS}s"
            # This member missed it (a FORGET bars a node from its gossip for 60 s): introduce them.
            [ "$SECONDS" -lt "$nudge" ] || { cli "$peer" cluster meet "${node%:*}" "${node##*:}"; nudge=$((SECONDS + 10)); }
            sleep 0.5
        done
    done
}

# The master a replica itself says it follows (its own view, not a peer's gossip-delayed one).
follows_now() {
    cli "$1" cluster nodes 2>/dev/null | tr -d '\r' | awk '$3 ~ /myself/ { print $4 }'
}

add_master() {
    if member "$my_master"; then
        log "$my_master is already a member of the cluster"
    else
        log "adding master $my_master (empty) through $SEED"
        "${redis_cli[@]}" --cluster add-node "$my_master" "$SEED"
    fi
    wait_known "$my_master"
}

add_replica() {
    local target=$1 target_node
    if member "$my_replica"; then
        log "$my_replica is already a member of the cluster"
    else
        target_node=$(row_of "$target" | cut -d' ' -f2)
        log "adding replica $my_replica following $target_node ($target), the master of server 1"
        "${redis_cli[@]}" --cluster add-node "$my_replica" "$SEED" --cluster-slave --cluster-master-id "$target"
    fi
    wait_known "$my_replica"
}

# Re-point replicas so that the replica on server i follows the master on server i+1,
# from this server downwards: the new replica first, then the one that must move.
link_ring() {
    local i ip next master target replica node row reply changed=0
    for ((i = index; i >= 0; i--)); do
        ip=${servers[$i]}
        next=${servers[$(((i + 1) % count))]}
        master=$(master_of "$ip") || die "server $ip holds no single master. $HEALTH_HINT"
        target=$(master_of "$next") || die "server $next holds no single master. $HEALTH_HINT"
        replica=$(replica_of "$ip" "$master")
        [ "$(wc -w <<<"$replica")" = 1 ] || die "server $ip: expected one replica, found '${replica}'"
        row=$(row_of "$replica")
        node=$(cut -d' ' -f2 <<<"$row")
        [ "$(follows_now "$node")" = "$target" ] && continue
        [ "$(cut -d' ' -f5 <<<"$row")" = 0 ] || die "$node owns slots; never demoting a master"
        log "replica $node of server $((i + 1)) now follows $(row_of "$target" | cut -d' ' -f2) ($target)"
        reply=$(cli "$node" cluster replicate "$target" | tr -d '\r')
        [ "$reply" = OK ] || die "CLUSTER REPLICATE on $node: $reply"
        changed=1
        wait_known "$node"
    done
    [ "$changed" = 1 ] || log "the ring is already linked: every replica follows the master of the next server"
}

# Every replica's link to its master is up (a new or re-pointed one finished its sync).
wait_links() {
    local deadline=$((SECONDS + WAIT_SECONDS)) node replicas
    mapfile -t replicas < <(awk '$3 == "slave" { print $2 }' <<<"$view")
    for node in "${replicas[@]}"; do
        until [ "$(field "$node" replication master_link_status)" = up ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "$node has no link to its master in ${WAIT_SECONDS}s"
            sleep 1
        done
    done
    log "every replica is linked to its master"
}

rebalance() {
    local before after
    before=$(row_of "$(id_of "$my_master")" | cut -d' ' -f5)
    log "rebalancing slots (threshold ${REBALANCE_THRESHOLD}%); $my_master owns $before"
    # The progress bar (one # per slot) says nothing the summary below does not.
    "${redis_cli[@]}" --cluster rebalance "$SEED" --cluster-use-empty-masters --cluster-threshold "$REBALANCE_THRESHOLD" |
        sed '/^#*$/d'
    refresh || die "no server reports cluster_state:ok after the rebalance"
    after=$(row_of "$(id_of "$my_master")" | cut -d' ' -f5)
    log "$my_master owns $after slots (moved to it: $((after - before)))"
}

# Every member reports cluster_state:ok. A node that just joined answers CLUSTERDOWN
# until it does, and rebalance's MIGRATE into it would fail on that.
wait_state_ok() {
    local deadline=$((SECONDS + WAIT_SECONDS)) node nodes
    refresh || die "no server reports cluster_state:ok"
    mapfile -t nodes < <(awk '!$6 { print $2 }' <<<"$view")
    for node in "${nodes[@]}"; do
        until [ "$(cinfo "$node" cluster_state)" = ok ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "$node did not reach cluster_state:ok in ${WAIT_SECONDS}s"
            sleep 0.5
        done
    done
    log "cluster_state:ok on all ${#nodes[@]} nodes"
}

wait_healthy() {
    wait_state_ok
    wait_known "$my_master"
    wait_links
}

# ---- REJOIN: an empty server at a known address ----

# holes: live masters that own slots and have no live replica, as "id ip masters_on_that_ip".
holes() {
    awk '!$6 && $3 == "slave" { has[$4] = 1 }
        !$6 && $3 == "master" && $5 > 0 { split($2, a, ":"); ip[$1] = a[1]; n[a[1]]++ }
        END { for (id in ip) if (!has[id]) print id, ip[id], n[ip[id]] }' <<<"$view"
}

# attached NODE: a member that replicates a master or owns slots (not just met), in its own view.
attached() {
    member "$1" || return 1
    [ "$(field "$1" replication role)" = slave ] ||
        [ "$(cli "$1" cluster nodes 2>/dev/null | awk '$3 ~ /myself/ { print NF }')" -gt 8 ]
}

# Sets `mode`: member (both processes attached or, for 0..2, members), rejoin, join (>= 3, the
# JOIN flow below, which does its own waiting), or wait (with `why`). Keeps `view` and SEED current.
mode=""
classify() {
    local i ip n others node
    mode="wait"
    why=""
    refresh || { why="no other server reports cluster_state:ok"; return 0; }
    # A rejoin only fills a hole, and only while this server owns nothing and one of its
    # processes is not attached yet (empty, or met but not replicating).
    if [ -n "$(holes)" ] && ! awk -v ip="$me" '{ split($2, a, ":") } a[1] == ip && $5 > 0 { f = 1 } END { exit !f }' \
            <<<"$view" && { ! attached "$my_master" || ! attached "$my_replica"; }; then
        [ "$(cinfo "$SEED" cluster_slots_ok)" = 16384 ] || { why="not every slot is served yet (a failover pending?)"; return 0; }
        if awk '$6 && $5 > 0 { f = 1 } END { exit !f }' <<<"$view"; then
            why="a failing master still owns slots: the failover has not happened yet"
            return 0
        fi
        others=$(awk -v ip="$me" '$6 && !($7 && $5 == 0 && (substr($2, 1, 1) == ":" || substr($2, 1, length(ip) + 1) == ip ":")) { print $2 }' <<<"$view")
        [ -z "$others" ] || { why="nodes of another server are failing: $(tr '\n' ' ' <<<"$others")(an outage: not acting)"; return 0; }
        for ((i = 0; i < count; i++)); do
            [ "$i" != "$index" ] || continue
            n=$(awk -v ip="${servers[$i]}" '{ split($2, a, ":") } a[1] == ip && !$6' <<<"$view" | wc -l)
            [ "$n" -gt 0 ] || { why="server $((i + 1)) (${servers[$i]}) has no live node"; return 0; }
        done
        ip=$(awk -v me="$me" '!$6 { split($2, a, ":"); if (a[1] != me) n[a[1]]++ } END { for (i in n) if (n[i] != 2) print i }' <<<"$view")
        [ -z "$ip" ] || { why="server(s) $(tr '\n' ' ' <<<"$ip")hold one process, not two (another join at work?)"; return 0; }
        [ "$(holes | wc -l)" -le 2 ] || { why="more than one server's replicas are missing: $(holes | cut -d' ' -f2 | tr '\n' ' ')(one server at a time)"; return 0; }
        "${redis_cli[@]}" --cluster check "$SEED" >/dev/null 2>&1 || { why="slots are being moved (open slots)"; return 0; }
        mode=rejoin
        return 0
    fi
    if member "$my_master" && member "$my_replica"; then
        mode=member
    elif [ "$index" -ge 3 ]; then
        mode="join"
    else
        node=$(awk -v ip="$me" '{ split($2, a, ":") } a[1] == ip' <<<"$view" | wc -l)
        why="this server's processes are not both members yet ($node known): the bootstrap on server 1 adds them at first boot"
    fi
}

# The hole this server's master process replicates: on a server holding two masters (the promoted
# replica of this server's old master); with two such holes, the one on the server before this one.
holder() {
    local found
    found=$(holes | awk '$3 >= 2 { print $1, $2 }')
    if [ "$(wc -l <<<"$found")" -gt 1 ] && [ "$index" -ge 1 ]; then
        found=$(awk -v ip="${servers[$((index - 1))]}" '$2 == ip' <<<"$found")
    fi
    [ -n "$found" ] && [ "$(wc -l <<<"$found")" = 1 ] || return 1
    cut -d' ' -f1 <<<"$found"
}

# The hole this server's replica process replicates: the master of the next server (not the one
# this server's master follows, not on this server).
next_master() {
    local skip found
    skip=$(follows_now "$my_master")
    found=$(holes | awk -v skip="$skip" -v me="$me" '$1 != skip && $2 != me { print $1 }')
    [ -n "$found" ] && [ "$(wc -l <<<"$found")" = 1 ] || return 1
    echo "$found"
}

# Every live node forgets the dead ids, in one sweep (each refuses a forgotten id for 60 s, and a
# node that still knew one would gossip it back), then again until no live node knows any.
forget_dead() {
    local dead nodes node id reply deadline=$((SECONDS + 60))
    mapfile -t dead < <(awk '$7 { print $1 }' <<<"$view")
    [ "${#dead[@]}" -gt 0 ] || return 0
    log "forgetting the dead node id(s) of this server's address on every live node: ${dead[*]}"
    while :; do
        mapfile -t nodes < <(awk '!$6 { print $2 }' <<<"$view")
        local left=0
        for node in "${nodes[@]}"; do
            for id in "${dead[@]}"; do
                grep -q "^$id " <<<"$(cli "$node" cluster nodes 2>/dev/null)" || continue
                left=1
                reply=$(cli "$node" cluster forget "$id" 2>&1 | tr -d '\r')
                [ "$reply" = OK ] || log "CLUSTER FORGET $id on $node: $reply"
            done
        done
        [ "$left" = 1 ] || break
        [ "$SECONDS" -lt "$deadline" ] || die "the dead ids ${dead[*]} are still known after 60s"
        refresh || die "no other server reports cluster_state:ok"
    done
    log "no live node knows the dead id(s) any more"
}

# attach NODE TARGET_FN: NODE meets the cluster (when empty) and replicates the master TARGET_FN names.
attach() {
    local node=$1 pick=$2 target reply deadline=$((SECONDS + WAIT_SECONDS))
    if [ "$(field "$node" replication role)" = slave ] && member "$node"; then
        log "$node already replicates $(row_of "$(follows_now "$node")" | cut -d' ' -f2)"
        return 0
    fi
    if ! member "$node"; then
        log "$node meets the cluster through $SEED"
        reply=$(cli "$node" cluster meet "${SEED%:*}" "${SEED##*:}" | tr -d '\r')
        [ "$reply" = OK ] || die "CLUSTER MEET on $node: $reply"
    fi
    wait_known "$node"
    target=$("$pick") || die "cannot tell which master $node must replicate: holes $(holes | tr '\n' ';')"
    until grep -q "^$target " <<<"$(cli "$node" cluster nodes 2>/dev/null)"; do
        [ "$SECONDS" -lt "$deadline" ] || die "$node has not learned of $target in ${WAIT_SECONDS}s"
        sleep 0.5
    done
    log "$node replicates $(row_of "$target" | cut -d' ' -f2) ($target)"
    reply=$(cli "$node" cluster replicate "$target" | tr -d '\r')
    [ "$reply" = OK ] || die "CLUSTER REPLICATE on $node: $reply"
    wait_known "$node"
}

# A node linked to its master and in sync; or this server's master process once redis-role-restore
# gave it its master role back (its timer ticks whenever it likes, also in the middle of this rejoin).
synced() {
    if [ "$1" = "$my_master" ] && [ "$(field "$1" replication role)" = master ]; then
        attached "$1"
        return
    fi
    [ "$(field "$1" replication master_link_status)" = up ] &&
        [ "$(field "$1" replication master_sync_in_progress)" = 0 ]
}

# Both processes linked to their masters and in sync: then redis-role-restore may fail over.
wait_synced() {
    local node deadline=$((SECONDS + WAIT_SECONDS))
    for node in "$my_master" "$my_replica"; do
        until synced "$node"; do
            [ "$SECONDS" -lt "$deadline" ] || die "$node not in sync with its master in ${WAIT_SECONDS}s"
            sleep 1
        done
    done
    log "$my_master and $my_replica are linked to their masters and in sync"
}

rejoin() {
    log "REJOIN: this server is empty at the address of a known server; the cluster serves every slot without it"
    forget_dead
    refresh || die "no other server reports cluster_state:ok"
    attach "$my_master" holder
    refresh || die "no other server reports cluster_state:ok"
    attach "$my_replica" next_master
    wait_synced
    wait_state_ok
    if [ "$(field "$my_master" replication role)" = master ]; then
        log "done: rejoined; $my_master already holds its master role again (redis-role-restore)"
    else
        log "done: rejoined; redis-role-restore gives $my_master its master role back (a plain CLUSTER FAILOVER, within a minute)"
    fi
}

# Waits (bounded) until this server is a member, rejoins, or (>= 3) goes on to the JOIN below.
settle_place() {
    local deadline=$((SECONDS + WAIT_SECONDS)) last=""
    if [ "$index" -lt 3 ] && attached "$my_master" && attached "$my_replica"; then
        log "$my_master and $my_replica are members of the cluster; nothing to do"
        exit 0
    fi
    while :; do
        classify
        case $mode in
            rejoin) rejoin; exit 0 ;;
            member)
                if [ "$index" -lt 3 ]; then
                    log "$my_master and $my_replica are members of the cluster; nothing to do"
                    exit 0
                fi
                return 0 ;;
            join) return 0 ;;
        esac
        [ "$why" = "$last" ] || log "waiting: $why"
        last=$why
        [ "$SECONDS" -lt "$deadline" ] || die "gave up after ${WAIT_SECONDS}s: $why"
        sleep 2
    done
}

log "server $((index + 1)) ($me); the other servers: ${servers[*]/$me/}"
wait_for_own_nodes
settle_place
if member "$my_master" && member "$my_replica"; then
    # A second run or a reboot: no need to queue behind anyone.
    until refresh; do
        [ "$SECONDS" -lt "$WAIT_SECONDS" ] || die "no server of ${servers[*]:0:$index} reports cluster_state:ok"
        sleep 2
    done
    later=$(later_servers | tr '\n' ' ')
    if [ -n "$later" ]; then
        log "already joined; server(s) ${later}joined later and keep the ring and the slots. done"
        exit 0
    fi
    check_ready
    if [[ "$why" == DRIFT* ]]; then
        log "already joined; not touching the cluster: ${why#DRIFT: }"
        exit 0
    fi
fi
wait_for_cluster
add_master
first=$(master_of "${servers[0]}") || die "server ${servers[0]} holds no single master. $HEALTH_HINT"
add_replica "$first"
link_ring
wait_links
wait_state_ok
rebalance
wait_healthy
log "done: $my_master owns $(row_of "$(id_of "$my_master")" | cut -d' ' -f5) slots; the ring over ${count} servers is linked"
