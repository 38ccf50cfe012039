#!/bin/bash
# Pretrain on SLURM across nodes, surviving preemption and time limits by requeueing.
#
#   sbatch docs/slurm_train.sh                     # edit the #SBATCH lines, RECIPE and WORKDIR first
#
# How it survives: SLURM sends SIGTERM to this script 180 s before the time limit (--signal=B:TERM@180);
# the trap forwards it to srun -> torchrun -> every rank; the ranks finish their step, rank 0 writes a
# checkpoint, and they exit non-zero; the trap then requeues the job. The requeued job runs the same
# command, and `--resume auto` continues from the newest checkpoint (or starts fresh when WORKDIR holds
# no checkpoint yet). A scheduler preemption that signals every process of the job works the same way.
#
#SBATCH --job-name=crossscale
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node; it starts one process per GPU
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64           # DataLoader workers: 8 GPUs x PairedTiles.num_workers, plus one each
#SBATCH --time=24:00:00
#SBATCH --signal=B:TERM@180          # SIGTERM to this script 3 minutes before the limit
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

set -euo pipefail

RECIPE=${RECIPE:-gin/latentmim_sa.gin}
WORKDIR=${WORKDIR:-runs/latentmim_sa}     # on a filesystem every node sees
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export OMP_NUM_THREADS=1

srun --kill-on-bad-exit=1 torchrun \
    --nnodes="$SLURM_NNODES" --nproc_per_node="$GPUS_PER_NODE" \
    --rdzv-backend c10d --rdzv-endpoint "$HEAD_NODE:29500" --rdzv-id "$SLURM_JOB_ID" \
    tools/train.py --gin "$RECIPE" --workdir "$WORKDIR" --resume auto "$@" &
CHILD=$!

on_term() {
    echo "$(date +%T) SIGTERM: the run checkpoints its current step; then the job is requeued"
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" || true
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
}
trap on_term TERM

wait "$CHILD"
