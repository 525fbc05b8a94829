# shellcheck shell=bash
# lib.sh: what the shell programs fetched from the stack's bucket share (outsystems_redis/render/fetched.py).
# Never a file on a server: shipped_script(..., library=True) puts it after each program's shebang, so the
# one signed object carries it and nothing is sourced from a path at run time.

# ssm_get NAME SECONDS : the parameter's value on stdout (a String or a SecureString: --with-decryption
# serves both), or a failure within SECONDS (+2 to kill). The instance role reads only its stack's ones.
ssm_get() {
    timeout -k 2 "$2" aws ssm get-parameter --region "$AWS_REGION" --name "$1" \
        --with-decryption --query Parameter.Value --output text \
        --cli-connect-timeout 3 --cli-read-timeout 5
}

# caller_id SECONDS : this instance's session as IAM names it (aws:userid: the role's unique id and the
# instance id), or a failure within SECONDS (+2 to kill). Regional STS: the CLI of 20.04 would otherwise
# call the global endpoint.
# shellcheck disable=SC2317
caller_id() {
    AWS_STS_REGIONAL_ENDPOINTS=regional timeout -k 2 "$1" aws sts get-caller-identity --region "$AWS_REGION" \
        --query UserId --output text --cli-connect-timeout 5 --cli-read-timeout 20
}

# replace_file PATH MODE COMMAND [ARGS...] : COMMAND's output becomes PATH atomically (a temporary file
# beside it, then a rename), so a reader never sees half a file; MODE, and run as root, owner root:redis
# (Redis reads it through its group; a loopback rehearsal run by a user keeps the user). COMMAND runs in
# this shell (a function, or a builtin such as printf): no secret it prints is an argv of a process, and
# an error in it (set -u) ends the script before the rename. The temporary file's name is in $tmp until
# the rename: the caller's EXIT trap removes it, so a failed run leaves no copy of a secret.
# shellcheck disable=SC2317
replace_file() {
    local path=$1 mode=$2
    shift 2
    tmp=$(mktemp "$path.XXXXXX") || return 1
    # Never an empty file in place of one that held something (a full disk fails every write of COMMAND).
    "$@" >"$tmp" && [ -s "$tmp" ] || return 1
    if [ "$EUID" -eq 0 ]; then
        chown root:redis "$tmp" || return 1
    fi
    chmod "$mode" "$tmp" && mv -f "$tmp" "$path" || return 1
    tmp=""
}

# password_usable PASSWORD : what redis.conf and the OutSystems connection string can carry: the program's
# own rule (settings.check_password, PASSWORD_RULE; tests/render/test_password.py holds the two equal).
# `aws --output text` prints None for a missing value.
# (Not every program checks a password: for the others these two are unused.)
# shellcheck disable=SC2034
PASSWORD_RULE="16 to 512 printable ASCII characters, none of , = quotes or backslash"
# shellcheck disable=SC2317
password_usable() {
    local LC_ALL=C # byte ranges, whatever the locale
    [ "${#1}" -ge 16 ] && [ "${#1}" -le 512 ] && [ "$1" != None ] || return 1
    case "$1" in *[!\!-~]* | *[,=\"\'\\]*) return 1 ;; esac
}

# Redis 7.0's operations user (redis_conf.py: OPERATIONS_USER, OPERATIONS_RULES; tests/render/test_password.py
# holds them equal): the servers' scripts and agents log in as it where the auth include defines it.
OPERATIONS_USER=operations
OPERATIONS_RULES="~* &* +@all"
# And the user that 7.0 replicas log in to their masters as (parameters.REPLICATION_USER, redis_conf.REPLICATION_RULES).
REPLICATION_USER=replication
REPLICATION_RULES="-@all +psync +replconf +ping"

# replication_secret OPS : sets `replication`, the replication user's password, made from the operations secret
# OPS as parameters.replication_password makes it (the secret on stdin: no argv holds it).
# shellcheck disable=SC2034,SC2317
replication_secret() {
    replication=$(printf 'replication:%s' "$1" | sha256sum)
    replication=${replication%% *}
}

# read_auth FILE : an auth include, parsed by the shell itself (no secret reaches an argv). Sets `current`
# (requirepass), `until` (the end of a 7.0 grace, 0 if none), `accepted` (the passwords of its `user default`
# line: a 7.0 grace's two) and `default_rules` (that line's rules), `renames` (the secret command names' lines),
# `ops` (the operations secret, which those names carry), `operations` and `replication` (the operations and the
# replication user's passwords, where the file defines them: 7.0). An absent or empty file leaves them empty.
# shellcheck disable=SC2034,SC2317
read_auth() {
    local words word
    current="" until=0 accepted=() default_rules="" renames=() ops="" operations="" replication=""
    [ -s "$1" ] || return 0
    # `|| ...`: a last line without its newline is read too (a file edited by hand).
    while read -r -a words || [ "${#words[@]}" -gt 0 ]; do
        case "${words[0]:-} ${words[1]:-}" in
        "requirepass "?*) [ -n "$current" ] || current=${words[1]} ;;
        "rename-command "?*)
            renames+=("${words[*]}")
            [ "${#words[@]}" -ne 3 ] || ops=${words[2]#"${words[1]}-"}
            ;;
        "# previous-password-until") until=${words[2]:-0} ;;
        "user default")
            for word in "${words[@]:2}"; do
                case "$word" in
                ">"?*) accepted+=("${word#>}") ;;
                on) ;;
                *) default_rules+="${default_rules:+ }$word" ;;
                esac
            done
            ;;
        "user $OPERATIONS_USER")
            for word in "${words[@]:2}"; do
                case "$word" in ">"?*) operations=${word#>} ;; esac
            done
            ;;
        "user $REPLICATION_USER")
            for word in "${words[@]:2}"; do
                case "$word" in ">"?*) replication=${word#>} ;; esac
            done
            ;;
        esac
    done <"$1"
    case "$until" in '' | *[!0-9]*) until=0 ;; esac
}

# auth_lines PASSWORD [UNTIL PREVIOUS] : an auth include's lines, the one format that redis-auth and
# redis-password-sync write and read_auth reads: requirepass PASSWORD, the secret command names (`renames`);
# where `replication` is set (7.0), the replication user with that password, as which replicas log in to their
# masters (masteruser, masterauth), else masterauth PASSWORD (replicas log in as `default`); where `operations` is
# set (7.0), the operations user with that password and the front-ends' `default` user with `default_rules` (all
# commands when empty); with UNTIL, a 7.0 grace: the default user accepts PREVIOUS too until then. Builtins
# only: no secret reaches an argv.
# shellcheck disable=SC2317
auth_lines() {
    # Every write's status counts (replace_file trusts it): a write that failed (a full disk) must not leave a
    # file without the password, with which Redis 5.0 would start open to its whole network.
    printf 'requirepass %s\n' "$1" || return 1
    if [ -n "${replication:-}" ]; then
        printf 'user %s on >%s %s\nmasteruser %s\nmasterauth %s\n' "$REPLICATION_USER" "$replication" \
            "$REPLICATION_RULES" "$REPLICATION_USER" "$replication" || return 1
    else
        printf 'masterauth %s\n' "$1" || return 1
    fi
    [ "${#renames[@]}" -eq 0 ] || printf '%s\n' "${renames[@]}" || return 1
    [ -z "$operations" ] || printf 'user %s on >%s %s\n' "$OPERATIONS_USER" "$operations" "$OPERATIONS_RULES" ||
        return 1
    [ $# -ne 3 ] || printf '# previous-password-until %s\n' "$2" || return 1
    # `on` matters: a `user default` line without it disables the user.
    if [ $# -eq 3 ]; then
        printf 'user default on >%s >%s %s\n' "$3" "$1" "${default_rules:-~* &* +@all}" || return 1
    elif [ -n "$operations" ]; then
        printf 'user default on >%s %s\n' "$1" "${default_rules:-~* &* +@all}" || return 1
    fi
}

# redis_login AUTH_FILE : how a script of the servers logs in to their Redis. Exports REDISCLI_AUTH (never an
# argv) and sets `redis_cli`, the command to run: REDIS_CLI as the operations user where the file defines it
# (7.0), else as the default user (requirepass). Fails when the file holds neither password.
# shellcheck disable=SC2034,SC2317
redis_login() {
    read_auth "$1"
    if [ -n "$operations" ]; then
        REDISCLI_AUTH=$operations
        redis_cli=("$REDIS_CLI" --user "$OPERATIONS_USER")
    else
        REDISCLI_AUTH=$current
        redis_cli=("$REDIS_CLI")
    fi
    [ -n "$REDISCLI_AUTH" ] || return 1
    export REDISCLI_AUTH
}
