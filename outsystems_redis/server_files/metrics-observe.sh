#!/bin/bash
# redis-run-fetched (the launcher in the user data): runs a job's program fetched at every run
# from the stack's bucket: the object TOOLS_KEY (uploaded by `pulumi up`: redis-observe.py, the
# metrics publisher and log shipper; redis-backup.sh; redis-password-sync.sh; redis-auth's
# redis-fetch-password.sh and redis-fetch-tls.sh) of the bucket BUCKET (its name, fixed in the user
# data; servers created before that read it from the parameter BUCKET_PARAMETER at each run), run by
# python3 (.py) or bash (.sh). Why not in the user data: EC2's 16 KB
# limit (outsystems_redis/render/fetched.py); from S3 a fix also reaches running servers, whose user
# data never changes. When S3 or SSM cannot be reached the last fetched copy runs (a WARNING);
# with no copy at all the run fails, and the missing metrics raise the alarms. When the user data
# gave this server the deployer's public key (TOOLS_PUBLIC_KEY), a program runs only if its signature (kept
# beside the copy and checked again, on a private copy, at every run),
# in the object TOOLS_KEY.signed, which carries the program after its release and signature
# (outsystems_redis/signing.py), verifies against it: anything else in the bucket, or another bucket the
# parameter was pointed at, is refused (an ERROR) and the last good copy runs. (Without the key: the object
# TOOLS_KEY.)
# That signature names the programs' release: one older than this launcher's (TOOLS_RELEASE, rendered with
# it) or than the newest that a copy on this server verifies for is refused too, so an older program the
# deployer once signed is not run again.
# No secret here:
# the programs read the password from AUTH_FILE themselves.
# With FIRST_FETCH_SECONDS (redis-auth, whose programs Redis cannot start without) and no copy yet, a
# failed fetch is tried again every 10 s for that long: at a first boot the instance role's policy may
# not have reached S3 and SSM yet. When it has a copy, its calls get short bounds instead: a reboot with
# AWS hanging starts Redis from the copy within seconds, not minutes.
# A program that runs as redis (redis-cluster-join.sh) takes two steps: FETCH_ONLY=1 as root (fetch and
# verify into STATE_DIR, a directory only root writes), then NO_FETCH=1 as redis (check the copy again and
# run it): the redis user reaches neither AWS nor a way to write what it runs.
# Inputs: AWS_REGION, BUCKET (or BUCKET_PARAMETER), TOOLS_KEY, STATE_DIR, optional TOOLS_PUBLIC_KEY,
# FIRST_FETCH_SECONDS, FETCH_ONLY or NO_FETCH (and the program's own).
set -euo pipefail

: "${TOOLS_KEY:?TOOLS_KEY is required}"
: "${STATE_DIR:?STATE_DIR is required}"
BUCKET=${BUCKET:-} BUCKET_PARAMETER=${BUCKET_PARAMETER:-}
[ -n "${NO_FETCH:-}" ] || : "${AWS_REGION:?AWS_REGION is required}" "${BUCKET:-${BUCKET_PARAMETER:?BUCKET or BUCKET_PARAMETER is required}}"
source=${BUCKET:-"the bucket named in $BUCKET_PARAMETER"} # (for the log)
export AWS_RETRY_MODE=${AWS_RETRY_MODE:-standard}
export AWS_MAX_ATTEMPTS=${AWS_MAX_ATTEMPTS:-2}
TOOLS_PUBLIC_KEY=${TOOLS_PUBLIC_KEY:-/etc/redis/tools.pub}
TOOLS_RELEASE=@TOOLS_RELEASE@
FIRST_FETCH_SECONDS=${FIRST_FETCH_SECONDS:-0}

program="$STATE_DIR/${TOOLS_KEY##*/}"
# Each call's bound in seconds: the bucket's name, the program.
if [ "$FIRST_FETCH_SECONDS" -gt 0 ] && [ -s "$program" ]; then bounds=(5 8); else bounds=(20 30); fi
log() { echo "redis-run-fetched: $*" >&2; }
case "$program" in
    *.py) run=python3 ;;
    *.sh) run=bash ;;
    *) log "ERROR: TOOLS_KEY $TOOLS_KEY: a .py or .sh object"; exit 2 ;;
esac
case "$TOOLS_RELEASE" in '' | 0* | *[!0-9]*) log "ERROR: TOOLS_RELEASE '$TOOLS_RELEASE': a release number"; exit 2 ;; esac

# release_of SIG : the release on the first line of SIG (the first two lines of a .signed object), if it has one.
release_of() { head -n 1 "$1" 2>/dev/null | grep -x '[1-9][0-9]\{0,8\}' || true; }

# signed KEY PROGRAM SIG : SIG is the deployer's signature of its release, KEY and PROGRAM's bytes (signing.py:
# _release_message), so a signed program under another name fails.
signed() {
    local release
    release=$(release_of "$3")
    [ -n "$release" ] || return 1
    { printf 'outsystems-redis tools release %s\n%s\n' "$release" "$1"; cat "$2"; } >"$2.signed"
    sed -n 2p "$3" | base64 -d >"$2.der" 2>/dev/null &&
        openssl dgst -sha256 -verify "$TOOLS_PUBLIC_KEY" -signature "$2.der" "$2.signed" >/dev/null 2>&1
}

# oldest : the oldest release this server may fetch: its user data's, or the newest that a copy here (of any
# program: one upload signs them all with one release, so the minute jobs raise the floor of the programs fetched
# only at boot) still verifies for. On private copies: a number planted here counts for nothing.
oldest() {
    local floor=$TOOLS_RELEASE sig release name
    for sig in "$STATE_DIR"/*.sig; do
        cp "${sig%.sig}" "$work/kept" 2>/dev/null || continue
        cp "$sig" "$work/kept.sig" || continue
        release=$(release_of "$work/kept.sig") name=${sig##*/}
        [ -n "$release" ] || continue
        [ "$release" -gt "$floor" ] || continue
        ! signed "tools/${name%.sig}" "$work/kept" "$work/kept.sig" || floor=$release
    done
    echo "$floor"
}

fetch() {
    local bucket=$BUCKET
    [ -n "$bucket" ] ||
        bucket=$(timeout -k 2 "${bounds[0]}" aws ssm get-parameter --region "$AWS_REGION" --name "$BUCKET_PARAMETER" \
            --with-decryption --query Parameter.Value --output text --cli-connect-timeout 3 --cli-read-timeout 5) ||
        return 1
    [ -n "$bucket" ] && [ "$bucket" != None ] || return 1
    local object=$TOOLS_KEY
    [ ! -e "$TOOLS_PUBLIC_KEY" ] || object=$TOOLS_KEY.signed
    timeout -k 2 "${bounds[1]}" aws s3 cp "s3://$bucket/$object" "$work/program" --region "$AWS_REGION" --only-show-errors \
        --cli-connect-timeout 3 --cli-read-timeout 10 || return 1
    if [ -e "$TOOLS_PUBLIC_KEY" ]; then
        # The release and the signature, then the program.
        mv "$work/program" "$work/signed"
        head -n 2 "$work/signed" >"$work/sig"
        tail -n +3 "$work/signed" >"$work/program"
        local floor release
        floor=$(oldest) release=$(release_of "$work/sig")
        if [ -n "$release" ] && [ "$release" -lt "$floor" ]; then
            log "ERROR: $TOOLS_KEY: signed for release $release, older than release $floor that this server runs: refused"
            return 1
        fi
        signed "$TOOLS_KEY" "$work/program" "$work/sig" ||
            { log "ERROR: $TOOLS_KEY: no valid signature from this stack's deployer ($TOOLS_PUBLIC_KEY): refused"; return 1; }
    fi
    # A truncated or foreign object never replaces a working copy.
    if [ "$run" = python3 ]; then
        python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$work/program" || return 1
    else
        bash -n "$work/program" || return 1
    fi
    [ ! -e "$work/sig" ] || mv -f "$work/sig" "$program.sig" # kept: the copy is checked again at every run
    mv -f "$work/program" "$program"
}

work=""
trap '[ -z "$work" ] || rm -rf "$work"' EXIT
if [ -z "${NO_FETCH:-}" ]; then
    mkdir -p "$STATE_DIR"
    # Each run downloads into a directory of its own: two units fetching the same program at once never
    # check one download and install another.
    work=$(mktemp -d "$STATE_DIR/.fetch.XXXXXX")
    deadline=$((SECONDS + FIRST_FETCH_SECONDS))
    until fetch; do
        if [ -s "$program" ]; then
            log "WARNING: no usable $TOOLS_KEY from $source; running the copy of $(date -u -r "$program" '+%F %T UTC')"
            break
        fi
        [ $((SECONDS + 10)) -lt "$deadline" ] || {
            log "ERROR: cannot fetch $TOOLS_KEY from $source, and no earlier copy"
            exit 1
        }
        log "cannot fetch $TOOLS_KEY yet; retrying in 10s"
        sleep 10
    done
    [ -z "${FETCH_ONLY:-}" ] || exit 0
fi
[ -s "$program" ] || { log "ERROR: no copy of $TOOLS_KEY in $STATE_DIR"; exit 1; }
# The state directory is shared with the other root units of the server: what runs is a copy in this run's
# own directory under /tmp (private to the unit where it is sandboxed), checked there, so that a program
# another unit planted in the state directory, or swapped in after a check, never runs.
rm -rf "$work"
work=$(mktemp -d)
cp "$program" "$work/program"
[ ! -e "$program.sig" ] || cp "$program.sig" "$work/sig"
# (Against the user data's release only: another unit may have taken a newer one since this copy was fetched.)
if [ -e "$TOOLS_PUBLIC_KEY" ] && ! { signed "$TOOLS_KEY" "$work/program" "$work/sig" &&
    [ "$(release_of "$work/sig")" -ge "$TOOLS_RELEASE" ]; }; then
    log "ERROR: the copy of $TOOLS_KEY in $STATE_DIR has no valid signature from this stack's deployer: refused"
    exit 1
fi
"$run" "$work/program" "$@"
