#!/usr/bin/env bash
# A local multi-process Ray "cluster" on this machine, to try --address auto.
# Usage: bash cluster/local.sh start [--num-gpus 2]   |   bash cluster/local.sh stop
# Then:  mmbatch run jobs/quickstart.yaml --address auto
set -euo pipefail
case "${1:-start}" in
  start) shift || true; ray start --head --include-dashboard=false "$@" ;;
  stop) ray stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
