#!/usr/bin/env bash
# Stop the single-node SLURM started by deploy/slurm-local/start.sh (and munged, if that
# script started it). Leaves the packages and /etc/slurm/slurm.conf in place; pass --purge
# to also remove the state directory (job state, logs).
set -euo pipefail
STATE=${SXTDIST_SLURM_STATE:-/tmp/sxtdist-slurm}

stop_pidfile() {  # name pidfile
  local pid
  [ -s "$2" ] || return 0
  pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    echo "slurm-local: stopping $1 (pid $pid)" >&2
    kill "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "slurm-local: $1 did not stop; sending SIGKILL" >&2; kill -9 "$pid"; }
  fi
  rm -f "$2"
}

stop_pidfile slurmd "$STATE/slurmd.pid"
stop_pidfile slurmctld "$STATE/slurmctld.pid"
if [ -f "$STATE/started-munged" ]; then
  stop_pidfile munged /run/munge/munged.pid
  rm -f "$STATE/started-munged"
fi
if [ "${1:-}" = --purge ]; then rm -rf "$STATE"; echo "slurm-local: removed $STATE" >&2; fi
