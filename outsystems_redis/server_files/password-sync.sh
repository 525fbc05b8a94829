#!/bin/bash
# Applies the password in SSM Parameter Store to this server's running Redis
# processes (no restart) when it differs from AUTH_FILE's. Run every minute on
# every server, on the minute (redis-password-sync.timer), so all switch together.
# 5.0: CONFIG SET masterauth, then requirepass: new connections need the new
#   password at once; open ones (front-ends, replication) stay logged in.
# 7.0: the previous password stays accepted for GRACE_SECONDS (time to paste the
#   new connection string into the front-ends), recorded in AUTH_FILE so a
#   restart keeps it; the first run after that removes it.
# Then AUTH_FILE is rewritten (first line `requirepass <password>`: the cluster
# scripts read it); its `rename-command` lines (the secret command names, written
# by redis-auth at boot) are kept, and CONFIG and ACL are sent by their names there.
# On 7.0 it logs in as the operations user (lib.sh: read_auth), and gives that
# user, and the replication user, to a server created before them (its include
# defines none); a replica that logs in as the replication user keeps its
# masterauth when the front-ends' password changes.
# The password never reaches an argv (commands on redis-cli's stdin,
# REDISCLI_AUTH) or the log; replies are checked (redis-cli exits 0 on
# errors) but never printed: an error could quote the password.
# Inputs: PASSWORD_PARAMETER, AWS_REGION, AUTH_FILE, PORTS, REDIS_LINE (5.0|7.0),
# REDIS_CLI, GRACE_SECONDS; optional REDIS_HOST, SSM_CALL_SECONDS.
# Exit 0: done, nothing to do, or SSM unreachable; 1: not switched, or SSM's
# password unusable (the users' steps still run). Either way the next run tries again.
set -euo pipefail

: "${PASSWORD_PARAMETER:?PASSWORD_PARAMETER is required}"
: "${AWS_REGION:?AWS_REGION is required}"
: "${AUTH_FILE:?AUTH_FILE is required}"
: "${PORTS:?PORTS is required}"
: "${REDIS_LINE:?REDIS_LINE is required}"
REDIS_CLI=${REDIS_CLI:-redis-cli}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
GRACE_SECONDS=${GRACE_SECONDS:-3600}
SSM_CALL_SECONDS=${SSM_CALL_SECONDS:-10}
export AWS_RETRY_MODE=${AWS_RETRY_MODE:-standard}
export AWS_MAX_ATTEMPTS=${AWS_MAX_ATTEMPTS:-2}

log() { echo "redis-password-sync: $*"; }
die() {
    log "ERROR: $*"
    exit 1
}

case "$REDIS_LINE" in 5.0 | 7.0) ;; *) die "REDIS_LINE must be 5.0 or 7.0, not $REDIS_LINE" ;; esac
case "$GRACE_SECONDS" in '' | *[!0-9]*) die "GRACE_SECONDS must be a number of seconds" ;; esac
read -r -a ports <<<"$PORTS"
# Nothing to sync before redis-auth has written the file (a first boot, or redis-auth still trying): Redis is
# not up either, and redis-auth's own unit says why. Not a failure of this unit (the metrics agent agrees).
if [ ! -s "$AUTH_FILE" ]; then
    log "no $AUTH_FILE yet: redis-auth.service has not written it; nothing to sync"
    exit 0
fi

# One run at a time (a manual run next to the timer's).
exec 9>"$AUTH_FILE.lock"
flock -n 9 || {
    log "another run is in progress; leaving it to that one"
    exit 0
}

# What the processes use now (read_auth, lib.sh: current = requirepass; accepted = the default user's passwords
# of a 7.0 grace; until = its end; renames = the secret command names).
read_auth "$AUTH_FILE"
[ -n "$current" ] || die "no requirepass in $AUTH_FILE"
config=CONFIG acl=ACL
for line in "${renames[@]}"; do
    # Expansions, not `read <<<`: a here-string may pass through a temporary file, and the names hold a secret.
    case "$line" in
    "rename-command CONFIG "?*) config=${line#rename-command CONFIG } ;;
    "rename-command ACL "?*) acl=${line#rename-command ACL } ;;
    esac
done
previous=""
for word in "${accepted[@]}"; do
    [ "$word" = "$current" ] || previous=$word
done
printf -v now '%(%s)T' -1

# (ssm_get and password_usable: lib.sh, shipped ahead of this script.)

# send PORT USER PASSWORD COMMAND... : the COMMAND lines on redis-cli's stdin (printf is a builtin), logged in as
# USER with PASSWORD through REDISCLI_AUTH; prints the replies, blank lines dropped.
send() {
    local port=$1 password=$3 as=()
    [ "$2" = default ] || as=(--user "$2") # (redis-cli 5.0 has no --user, nor Redis 5.0 users)
    shift 3
    printf '%s\n' "$@" | REDISCLI_AUTH=$password "$REDIS_CLI" "${as[@]}" -h "$REDIS_HOST" -p "$port" 2>/dev/null |
        tr -d '\r' | sed '/^$/d' || true
}

# login PORT PASSWORD... : sets `user` and `auth` to how this script logs in to the process on PORT: as the
# operations user where the auth include defines it (7.0), else as `default` with the first PASSWORD the process
# accepts (the current one first; after a partial earlier run a process may already take the new one).
login() {
    local port=$1 candidate
    shift
    if [ -n "$operations" ]; then
        user=$OPERATIONS_USER auth=$operations
        [ "$(send "$port" "$user" "$auth" PING)" != PONG ] || return 0
        log "ERROR: $REDIS_HOST:$port refuses the operations user (or is not running)"
        return 1
    fi
    for candidate in "$@"; do
        [ -n "$candidate" ] || continue
        if [ "$(send "$port" default "$candidate" PING)" = PONG ]; then
            user=default auth=$candidate
            return 0
        fi
    done
    log "ERROR: $REDIS_HOST:$port accepts none of the known passwords (or is not running)"
    return 1
}

# apply PORT COMMAND... : runs the commands logged in as `user` with `auth`; true when every reply is OK.
apply() {
    local port=$1 replies code
    shift
    replies=$(send "$port" "$user" "$auth" "$@")
    [ "$replies" != "$(printf 'OK\n%.0s' "$@")" ] || return 0
    # The first word of the first other reply: an error code (ERR, NOPERM, ...). The rest is withheld.
    code=$(printf '%s\n' "$replies" | awk '$0 != "OK" { print $1; exit }')
    case "$code" in '' | *[!A-Z]*) code="no or an unexpected reply" ;; esac
    log "ERROR: $REDIS_HOST:$port refused the change ($code)"
    return 1
}

tmp=""
trap '[ -z "$tmp" ] || rm -f "$tmp"' EXIT # a failed run leaves no copy of the password behind

# write_auth PASSWORD [UNTIL PREVIOUS] : replace AUTH_FILE atomically, root:redis 0640 as redis-auth wrote it,
# with the secret command names it has (auth_lines). With UNTIL, the default user also accepts PREVIOUS.
# (replace_file and auth_lines: lib.sh.)
write_auth() {
    replace_file "$AUTH_FILE" 0640 auth_lines "$@"
}

when() { date -u -d "@$1" '+%F %T UTC'; }

# rewrite_auth : AUTH_FILE again, with the password read_auth read and the users set since; a running 7.0 grace
# (the default user's other password, until `until`) is kept.
rewrite_auth() {
    local word kept=""
    for word in "${accepted[@]}"; do
        [ "$word" = "$current" ] || kept=$word
    done
    if [ -n "$kept" ] && [ "$until" -gt "$now" ]; then
        write_auth "$current" "$until" "$kept"
    else
        write_auth "$current"
    fi
}

unusable=""
if ! new=$(ssm_get "$PASSWORD_PARAMETER" "$SSM_CALL_SECONDS"); then
    log "cannot read $PASSWORD_PARAMETER from SSM (unreachable?); trying again at the next run"
    new=""
elif ! password_usable "$new"; then
    # Not a reason to skip the users' steps below: the password stays, and the run fails at its end.
    log "ERROR: $PASSWORD_PARAMETER holds no usable password ($PASSWORD_RULE); the password is not changed"
    new="" unusable=1
fi

if [ -n "$new" ] && [ "$new" != "$current" ]; then
    grace=$GRACE_SECONDS
    [ "$REDIS_LINE" = 7.0 ] || grace=0 # Redis 5.0 has one password per process
    failed=0
    for port in "${ports[@]}"; do
        if ! login "$port" "$current" "$new" "$previous"; then
            failed=1
        elif [ "$grace" -gt 0 ]; then
            # Exactly the current and the new password: a previous one still in its grace (a second
            # change within the hour) goes now. One atomic command; repeating it changes nothing.
            # Replicas that log in as the replication user keep their masterauth.
            masterauth=("$config SET masterauth \"$new\"")
            [ -z "$replication" ] || masterauth=()
            if apply "$port" "$acl SETUSER default resetpass \">$current\" \">$new\"" "${masterauth[@]}"; then
                log "$REDIS_HOST:$port takes the new password, and the previous one during the grace"
            else
                failed=1
            fi
        # masterauth first: this replica's link to its master must outlive the master's switch (but for
        # replicas that log in as the replication user: 7.0 without a grace).
        elif masterauth=("$config SET masterauth \"$new\"") && { [ -z "$replication" ] || masterauth=(); } &&
            apply "$port" "${masterauth[@]}" "$config SET requirepass \"$new\""; then
            log "$REDIS_HOST:$port takes the new password only"
        else
            failed=1
        fi
    done
    # AUTH_FILE says what a restart must accept: only once every process has switched.
    [ "$failed" -eq 0 ] || die "not every process switched; $AUTH_FILE unchanged, the next run tries again"
    if [ "$grace" -gt 0 ]; then
        write_auth "$new" "$((now + grace))" "$current"
        log "wrote the new password to $AUTH_FILE; the previous one stays accepted until $(when "$((now + grace))")"
    else
        write_auth "$new"
        log "wrote the new password to $AUTH_FILE; the previous one is refused from now on"
    fi
elif [ -n "$previous" ] && [ "$until" -le "$now" ]; then
    # The grace has ended (SSM reachable or not: it is this server's own clock that decides).
    failed=0
    for port in "${ports[@]}"; do
        # resetpass: exactly this one password, whatever the process holds (`<OLD` fails where OLD
        # is already gone). CONFIG SET requirepass alone would not do: a process started during the
        # grace already has requirepass = current, and an unchanged value is not applied again.
        # It only keeps CONFIG GET requirepass true.
        if login "$port" "$current" "$previous" &&
            apply "$port" "$acl SETUSER default resetpass \">$current\"" "$config SET requirepass \"$current\""; then
            log "$REDIS_HOST:$port: the grace has ended; the previous password is refused from now on"
        else
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || die "the previous password is still accepted somewhere; the next run tries again"
    write_auth "$current"
    log "removed the previous password from $AUTH_FILE"
fi

# A 7.0 server created by a version without users (its auth include defines none) gets the operations user
# now, with the operations secret that its command names already carry: the scripts, agents and tools of this
# version log in as it, on every server of the cluster alike. Its front-ends' `default` user keeps every
# command until the server is replaced (a new server's redis-auth narrows it: SECURITY.md, gap 2).
if [ "$REDIS_LINE" = 7.0 ] && [ -z "$operations" ]; then
    read_auth "$AUTH_FILE" # what the steps above left
    if [ -z "$ops" ]; then
        # Created before the secret command names too: its auth.env names no OPS_PARAMETER, which is the
        # password's sibling (parameters.py; tests/render/test_password.py holds the two so).
        ops_parameter=${OPS_PARAMETER:-${PASSWORD_PARAMETER%/*}/ops-password}
        ops=$(ssm_get "$ops_parameter" "$SSM_CALL_SECONDS") ||
            die "cannot read $ops_parameter for the operations user; the next run tries again"
        [[ "$ops" =~ ^[[:alnum:]]{16,}$ ]] || die "$ops_parameter holds no usable secret (16+ letters and digits)"
    fi
    previous=""
    for word in "${accepted[@]}"; do
        [ "$word" = "$current" ] || previous=$word
    done
    failed=0
    for port in "${ports[@]}"; do
        if ! login "$port" "$current" "$previous" ||
            ! apply "$port" "$acl SETUSER $OPERATIONS_USER on resetpass \">$ops\" $OPERATIONS_RULES"; then
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || die "not every process has the operations user; the next run tries again"
    operations=$ops
    rewrite_auth
    log "added the operations user to $REDIS_HOST's Redis processes and $AUTH_FILE"
fi

# Likewise the replication user: each process gets the user, then logs in to its master as it (masteruser), so
# that no replica needs the front-ends' user to replicate. Every server of the cluster runs this in the same
# minute; a replica whose master has not yet got the user retries its link each second until it has.
if [ "$REDIS_LINE" = 7.0 ] && [ -z "$replication" ]; then
    read_auth "$AUTH_FILE" # what the steps above left (the operations user included)
    [ -n "$operations" ] || die "no operations user in $AUTH_FILE; the next run tries again"
    replication_secret "$operations" # (the operations user's password is the operations secret)
    failed=0
    for port in "${ports[@]}"; do
        if ! login "$port" ||
            ! apply "$port" "$acl SETUSER $REPLICATION_USER reset on \">$replication\" $REPLICATION_RULES" \
                "$config SET masteruser $REPLICATION_USER" "$config SET masterauth \"$replication\""; then
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || die "not every process has the replication user; the next run tries again"
    rewrite_auth
    log "added the replication user to $REDIS_HOST's Redis processes and $AUTH_FILE; their replicas log in as it"
fi

# The password in SSM was unusable: the run fails (the unit's failure shows), whatever else it did.
[ -z "$unusable" ] || exit 1
