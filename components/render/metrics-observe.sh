#!/bin/bash
# redis-observe (the launcher in the user data): runs this stack's metrics publisher and log
# shipper, redis-observe.py, fetched at every run from the stack's bucket: the object TOOLS_KEY
# (components.monitoring.OBSERVE_TOOL_KEY, uploaded by `pulumi up`) of the bucket whose name is
# in BUCKET_PARAMETER. Why not in the user data: with the health check's functions it is about
# 9 KB gzipped, and EC2's 16 KB limit leaves about 5 KB; from S3 a fix also reaches running
# servers, whose user data never changes. When S3 or SSM cannot be reached the last fetched
# copy runs (a WARNING); with no copy at all the run fails, and the missing metrics raise the
# alarms. No secret here: redis-observe.py reads the password from AUTH_FILE itself.
# Inputs: AWS_REGION, BUCKET_PARAMETER, TOOLS_KEY, STATE_DIR (and redis-observe.py's own).
set -euo pipefail

: "${AWS_REGION:?AWS_REGION is required}"
: "${BUCKET_PARAMETER:?BUCKET_PARAMETER is required}"
: "${TOOLS_KEY:?TOOLS_KEY is required}"
: "${STATE_DIR:?STATE_DIR is required}"
export AWS_RETRY_MODE=${AWS_RETRY_MODE:-standard}
export AWS_MAX_ATTEMPTS=${AWS_MAX_ATTEMPTS:-2}

program="$STATE_DIR/redis-observe.py"
log() { echo "redis-observe: $*" >&2; }

fetch() {
    local bucket
    bucket=$(timeout -k 2 20 aws ssm get-parameter --region "$AWS_REGION" --name "$BUCKET_PARAMETER" \
        --with-decryption --query Parameter.Value --output text --cli-connect-timeout 3 --cli-read-timeout 5) ||
        return 1
    [ -n "$bucket" ] && [ "$bucket" != None ] || return 1
    timeout -k 2 30 aws s3 cp "s3://$bucket/$TOOLS_KEY" "$program.new" --region "$AWS_REGION" --only-show-errors \
        --cli-connect-timeout 3 --cli-read-timeout 10 || return 1
    # A truncated or foreign object never replaces a working copy.
    python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$program.new" || return 1
    mv -f "$program.new" "$program"
}

mkdir -p "$STATE_DIR"
if ! fetch; then
    rm -f "$program.new"
    [ -s "$program" ] || {
        log "ERROR: cannot fetch $TOOLS_KEY from the bucket named in $BUCKET_PARAMETER, and no earlier copy"
        exit 1
    }
    log "WARNING: cannot fetch $TOOLS_KEY from the bucket named in $BUCKET_PARAMETER; running the copy of $(date -u -r "$program" '+%F %T UTC')"
fi
exec python3 "$program" "$@"
