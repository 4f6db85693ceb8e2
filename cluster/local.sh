#!/usr/bin/env bash
# A local Ray cluster of its own on this machine -- its own temp dir and ports, stopped by
# the PIDs it started (never a bare `ray stop`, which would stop every Ray on the host).
#   bash cluster/local.sh start [--nodes 2] [--num-cpus 4] [--num-gpus 0]
#   mmbatch run quickstart --address "$(cat /tmp/mmbatch-ray/address)"
#   bash cluster/local.sh stop
set -euo pipefail
DIR=${MMBATCH_RAY_DIR:-/tmp/mmbatch-ray}
PORT=${MMBATCH_RAY_PORT:-46379}
nodes=1; cpus=4; gpus=0
cmd=${1:-start}; shift || true
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --num-cpus) cpus=$2; shift 2 ;;
    --num-gpus) gpus=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
pids_of_ours() { pgrep -f -- "$DIR/ray|--port=$PORT|127.0.0.1:$PORT" || true; }
case "$cmd" in
  start)
    mkdir -p "$DIR/ray"
    head_cpus=$([ "$nodes" -gt 1 ] && echo 0 || echo "$cpus")   # with workers, the head only schedules
    ray start --head --port="$PORT" --temp-dir="$DIR/ray" --num-cpus="$head_cpus" --num-gpus="$gpus" \
      --include-dashboard=false --disable-usage-stats
    for i in $(seq 2 "$nodes"); do
      ray start --address="127.0.0.1:$PORT" --num-cpus="$cpus" --num-gpus="$gpus" --disable-usage-stats
    done
    echo "127.0.0.1:$PORT" > "$DIR/address"
    echo "cluster up: mmbatch run JOB --address 127.0.0.1:$PORT" ;;
  stop)
    pids=$(pids_of_ours)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    sleep 2
    pids=$(pids_of_ours)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    rm -f "$DIR/address"
    echo "stopped the cluster in $DIR" ;;
  *) echo "usage: $0 start|stop [--nodes N] [--num-cpus N] [--num-gpus N]" >&2; exit 2 ;;
esac
