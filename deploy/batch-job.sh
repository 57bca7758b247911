#!/usr/bin/env bash
# One SLURM submission that reconstructs a whole batch of cells inside its allocation.
#
#   sbatch deploy/batch-job.sh cells.yaml results/ [more `sxtdist batch` options]
#
# sxtdist starts a local Dask cluster on the allocated node (one single-threaded worker
# per allocated core, the allocation's memory shared between them); the cells run
# concurrently on it. Nothing else is submitted, so this suits sites that limit the
# number of jobs, or short queues. For many nodes use --cluster slurm instead (one
# scheduler here, workers as separate jobs; see docs/cluster.md).
#
# Resuming: SLURM sends SIGTERM at the time limit (here 5 minutes before it, see
# --signal); sxtdist then stops, leaves finished cells complete and the others marked
# incomplete. Submit the same command again and it carries on where it stopped.
#
#SBATCH --job-name=sxtdist-batch
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16          # EDIT: cores = Dask workers
#SBATCH --mem=64G                   # EDIT: shared by the workers
#SBATCH --time=08:00:00             # EDIT
#SBATCH --signal=B:TERM@300         # SIGTERM to this script 5 min before the limit
#SBATCH --output=sxtdist-batch-%j.log
# #SBATCH --partition=compute       # EDIT: your partition / account
# #SBATCH --account=myproject
set -euo pipefail

MANIFEST=${1:?usage: sbatch deploy/batch-job.sh MANIFEST OUT_DIR [sxtdist batch options]}
OUT=${2:?usage: sbatch deploy/batch-job.sh MANIFEST OUT_DIR [sxtdist batch options]}
shift 2

# EDIT: make the environment with sxtdist available, e.g.
# module load python/3.12; source ~/venvs/sxtdist/bin/activate
SXTDIST=${SXTDIST:-sxtdist}

WORKERS=${SLURM_CPUS_PER_TASK:-$(nproc)}
if [ -n "${SLURM_MEM_PER_NODE:-}" ]; then
  # Each worker's memory limit: the allocation (MB) shared out, less 10% for the client.
  export DASK_SXTDIST__CLUSTER__MEMORY_LIMIT="$((SLURM_MEM_PER_NODE * 9 / 10 / WORKERS))MB"
fi
# Workers' scratch (spilled data) on node-local disk.
export DASK_TEMPORARY_DIRECTORY=${TMPDIR:-/tmp}

echo "sxtdist batch on $(hostname): $WORKERS workers, ${DASK_SXTDIST__CLUSTER__MEMORY_LIMIT:-auto} each" >&2
# Run in the background and wait, so that the shell can pass SIGTERM on at once
# (bash defers traps while a foreground child runs).
"$SXTDIST" batch "$MANIFEST" --out "$OUT" --cluster local --workers "$WORKERS" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child" || { rc=$?; wait "$child" 2>/dev/null || true; exit "$rc"; }
