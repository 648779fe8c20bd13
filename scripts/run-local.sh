#!/usr/bin/env bash
# `make run`: kubernary against a local S3-compatible server (rclone serve s3)
# with a seeded object, so the default configuration passes on a fresh
# machine with no cloud account and no network. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_S3_ADDR=${RUN_S3_ADDR:-127.0.0.1:9000}
LISTEN=${LISTEN:-127.0.0.1:10002}
STATSD=${STATSD:-}
data=.tools/run/s3
mkdir -p "$data/kubernary"
printf 'kubernary canary object\n' > "$data/kubernary/check"

# Local-only credentials for the local server; never real AWS keys.
export AWS_ACCESS_KEY_ID=AKIAKUBERNARYLOCAL
export AWS_SECRET_ACCESS_KEY=kubernary-local-secret
export AWS_EC2_METADATA_DISABLED=true

.tools/rclone/bin/rclone serve s3 --config /dev/null --dir-cache-time 0s \
  --auth-key "$AWS_ACCESS_KEY_ID,$AWS_SECRET_ACCESS_KEY" --addr "$RUN_S3_ADDR" "$data" \
  >.tools/run/rclone.log 2>&1 &
rclone_pid=$!
trap 'kill $rclone_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "Starting s3 server" .tools/run/rclone.log 2>/dev/null && break
  kill -0 $rclone_pid 2>/dev/null || { cat .tools/run/rclone.log; exit 1; }
  sleep 0.1
done
echo "local S3 at http://$RUN_S3_ADDR (bucket kubernary, key check); kubernary at http://$LISTEN/health" >&2

export KUBERNARY_CHECKS=${KUBERNARY_CHECKS:-s3}
export KUBERNARY_S3_BUCKET=kubernary
export KUBERNARY_S3_ENDPOINT=http://$RUN_S3_ADDR
export KUBERNARY_S3_INTERVAL=${KUBERNARY_S3_INTERVAL:-10s}

if [ -n "$STATSD" ]; then stats=("$STATSD"); else stats=(--no-stats); fi
# Not exec: the trap must stop rclone when kubernary exits.
target/debug/kubernary --listen "$LISTEN" "${stats[@]}" "$@" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null || true' INT TERM
wait $daemon || status=$?
wait $daemon 2>/dev/null || true
exit "${status:-0}"
