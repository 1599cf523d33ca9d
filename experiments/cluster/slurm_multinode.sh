#!/bin/bash
# Multi-node DDP with SLURM: one task per GPU, Lightning reads SLURM's variables (ranks, master).
# Submit from the repository root (after `make install`):
#   sbatch experiments/cluster/slurm_multinode.sh face_attributes/celeba [--trainer.max_epochs=20 ...]
#   RESUME=1 sbatch experiments/cluster/slurm_multinode.sh face_attributes/celeba   # continue it
# Change --nodes / --gpus-per-node / --ntasks-per-node together; the srun line passes them on.
#SBATCH --job-name=latentlab
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

NAME=${1:?usage: sbatch experiments/cluster/slurm_multinode.sh <method>/<dataset>[_<variant>] [CLI args]}
shift
cd "${SLURM_SUBMIT_DIR}"

# Data and weights from shared storage; compute nodes are often offline.
export LATENTLAB_DATA=${LATENTLAB_DATA:-$PWD/data}
export WANDB_MODE=${WANDB_MODE:-offline}   # sync later: wandb sync runs/<NAME>/<time>/wandb

if [[ "${RESUME:-0}" == "1" ]]; then
    resume=(--run.resume=true)             # every rank finds the same latest run folder
else
    resume=()
    # all ranks start at once: fix the run folder here so they agree on it
    export LATENTLAB_RUN_DIR="runs/${NAME}/$(date +%Y-%m-%d_%H-%M-%S)_job${SLURM_JOB_ID}"
fi

srun .venv/bin/python -m experiments run \
    --config experiments/_base.yaml --config "experiments/${NAME}.yaml" \
    --trainer.accelerator=gpu --trainer.strategy=ddp \
    --trainer.num_nodes="${SLURM_NNODES}" --trainer.devices="${SLURM_NTASKS_PER_NODE}" \
    "${resume[@]}" "$@"
