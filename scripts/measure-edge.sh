#!/usr/bin/env bash
# One quick figure set for a kubernary binary: idle and peak RSS, peak threads,
# /health per second and CPU per answer under wrk -t2 -c50 -d5s, and the
# process name. Loopback only. Usage: scripts/measure-edge.sh BINARY PORT [VAR=VALUE...]
# (docs/reliability.md). `make bench` is the full, interleaved benchmark.
[ $# -ge 2 ] || { echo "usage: $0 BINARY PORT [VAR=VALUE...]" >&2; exit 2; }
BIN=$1; PORT=$2; shift 2
env -i PATH=$PATH HOME=/tmp KUBERNARY_CHECKS=port=tcp KUBERNARY_PORT_ADDRESS=127.0.0.1:1 "$@" $BIN --no-stats --listen 127.0.0.1:$PORT >/tmp/edge-m-$PORT.log 2>&1 &
PID=$!
sleep 1
curl -s -o /dev/null http://127.0.0.1:$PORT/livez
sleep 0.5
IDLE=$(grep VmRSS /proc/$PID/status | awk '{print $2}')
COMM=$(cat /proc/$PID/comm)
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
wrk -t2 -c50 -d5s http://127.0.0.1:$PORT/health > /tmp/edge-wrk-$PORT.txt &
WPID=$!
PEAKT=0; PEAKR=0
while kill -0 $WPID 2>/dev/null; do
  T=$(grep Threads /proc/$PID/status | awk '{print $2}'); R=$(grep VmRSS /proc/$PID/status | awk '{print $2}')
  [ "$T" -gt "$PEAKT" ] && PEAKT=$T; [ "$R" -gt "$PEAKR" ] && PEAKR=$R
  sleep 0.05
done
T1=$(awk '{print $14+$15}' /proc/$PID/stat)
REQS=$(grep "requests in" /tmp/edge-wrk-$PORT.txt | awk '{print $1}')
RPS=$(grep Requests/sec /tmp/edge-wrk-$PORT.txt | awk '{print $2}')
TCK=$(getconf CLK_TCK)
CPU_US=$(python3 -c "print(round(($T1-$T0)/$TCK*1e6/$REQS,1))")
echo "comm=$COMM idle_rss_kib=$IDLE peak_rss_kib=$PEAKR peak_threads=$PEAKT req_s=$RPS cpu_us_per_req=$CPU_US $*"
kill $PID; wait $PID 2>/dev/null
