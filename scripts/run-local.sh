#!/usr/bin/env bash
# `make run`: kubernary against local stand-ins for the services a cluster
# has, so the default configuration passes on a fresh machine with no cloud
# account and no network:
#   s3        rclone serve s3, with a seeded object (checks SigV4 signatures)
#   identity  moto's STS, expecting the identity moto gives unknown keys
#   web       a static HTTP server (python3 -m http.server)
#   port      a TCP connection to the local S3 server
#   resolver  localhost, from /etc/hosts
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_S3_ADDR=${RUN_S3_ADDR:-127.0.0.1:9000}
RUN_STS_PORT=${RUN_STS_PORT:-9001}
RUN_WEB_PORT=${RUN_WEB_PORT:-9002}
LISTEN=${LISTEN:-127.0.0.1:10002}
STATSD=${STATSD:-}
run=.tools/run
mkdir -p "$run/s3/kubernary" "$run/www"
printf 'kubernary canary object\n' > "$run/s3/kubernary/check"
printf 'ok\n' > "$run/www/healthz"

# Local-only credentials for the local servers; never real AWS keys.
export AWS_ACCESS_KEY_ID=AKIAKUBERNARYLOCAL
export AWS_SECRET_ACCESS_KEY=kubernary-local-secret
export AWS_EC2_METADATA_DISABLED=true

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# Starts a background server and waits until its log shows `ready`.
serve() {
  local name=$1 ready=$2; shift 2
  "$@" >"$run/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "$ready" "$run/$name.log" 2>/dev/null && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$run/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "make run: $name did not start; see $run/$name.log" >&2
  exit 1
}

serve s3 "Starting s3 server" .tools/rclone/bin/rclone serve s3 --config /dev/null --dir-cache-time 0s \
  --auth-key "$AWS_ACCESS_KEY_ID,$AWS_SECRET_ACCESS_KEY" --addr "$RUN_S3_ADDR" "$run/s3"
serve sts "Running on" env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY PYTHONPATH=.tools/moto \
  "$(cat .tools/moto/python)" -m moto.server -H 127.0.0.1 -p "$RUN_STS_PORT"
serve web "Serving HTTP" python3 -u -m http.server --bind 127.0.0.1 --directory "$run/www" "$RUN_WEB_PORT"
echo "make run: kubernary at http://$LISTEN/health (local S3 $RUN_S3_ADDR, STS :$RUN_STS_PORT, web :$RUN_WEB_PORT)" >&2

export KUBERNARY_CHECKS=${KUBERNARY_CHECKS:-s3,identity,web=http,port=tcp,resolver=dns}
export KUBERNARY_S3_BUCKET=kubernary
export KUBERNARY_S3_ENDPOINT=http://$RUN_S3_ADDR
export KUBERNARY_IDENTITY_ENDPOINT=http://127.0.0.1:$RUN_STS_PORT
export KUBERNARY_IDENTITY_EXPECT_ARN='arn:aws:sts::123456789012:user/moto'
export KUBERNARY_WEB_URL=http://127.0.0.1:$RUN_WEB_PORT/healthz
export KUBERNARY_PORT_ADDRESS=$RUN_S3_ADDR
export KUBERNARY_RESOLVER_NAME=localhost
for check in S3 IDENTITY WEB PORT RESOLVER; do
  var=KUBERNARY_${check}_INTERVAL
  export "$var=${!var:-10s}"
done

if [ -n "$STATSD" ]; then stats=("$STATSD"); else stats=(--no-stats); fi
# Not exec: the trap must stop the servers when kubernary exits.
target/debug/kubernary --listen "$LISTEN" "${stats[@]}" "$@" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null || true' INT TERM
status=0
wait $daemon || status=$?
wait $daemon 2>/dev/null || true
exit "$status"
