#!/bin/bash
# Multi-node DDP with SLURM: one task per GPU, Lightning reads SLURM's variables (ranks, master).
# Submit from the repository root (after `make install`):
#   sbatch experiments/cluster/slurm_multinode.sh face_attributes/celeba [--trainer.max_epochs=20 ...]
#   RESUME=1 sbatch experiments/cluster/slurm_multinode.sh face_attributes/celeba   # continue it
# Change --nodes / --gpus-per-node / --ntasks-per-node together; the srun line passes them on.
# CLI args after NAME come last, so they win over the flags below (e.g. --trainer.accelerator=cpu).
# The script's own variables: RESUME=1, RUN_ROOT (runs: the CLI's --run.root), PYTHON
# (.venv/bin/python), LATENTLAB_DATA (data), WANDB_MODE (offline).
#
# What srun gives each task and Lightning's SLURMEnvironment reads (the job name must not be
# `bash` or `interactive`: Lightning then ignores SLURM):
#   SLURM_PROCID  global rank            SLURM_NTASKS           world size (WORLD_SIZE)
#   SLURM_LOCALID rank on its node       SLURM_NODEID           node rank (NODE_RANK)
#   MASTER_ADDR   default: the first host of SLURM_NODELIST
#   MASTER_PORT   default: 15000 + the last 4 digits of SLURM_JOB_ID
#   SLURM_NNODES, SLURM_NTASKS_PER_NODE: must equal --trainer.num_nodes, --trainer.devices
# A launch without SLURM gives each node's command MASTER_ADDR, MASTER_PORT, NODE_RANK and
# WORLD_SIZE instead (Lightning's LightningEnvironment; tests/ddp_runs.py simulates both), and the
# same LATENTLAB_RUN_DIR: the one run folder of all ranks, set below.
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
RUN_ROOT=${RUN_ROOT:-runs}
PYTHON=${PYTHON:-.venv/bin/python}

# Data and weights from shared storage; compute nodes are often offline.
export LATENTLAB_DATA=${LATENTLAB_DATA:-$PWD/data}
export WANDB_MODE=${WANDB_MODE:-offline}   # sync later: wandb sync <run folder>/wandb

if [[ "${RESUME:-0}" == "1" ]]; then
    resume=(--run.resume=true)             # every rank finds the same latest run folder
else
    resume=()
    # the ranks start apart: they agree on a new run folder only through this (else the CLI stops)
    export LATENTLAB_RUN_DIR="${RUN_ROOT}/${NAME}/$(date +%Y-%m-%d_%H-%M-%S)_job${SLURM_JOB_ID}"
fi

srun "${PYTHON}" -m experiments run \
    --config experiments/_base.yaml --config "experiments/${NAME}.yaml" --run.root="${RUN_ROOT}" \
    --trainer.accelerator=gpu --trainer.strategy=ddp \
    --trainer.num_nodes="${SLURM_NNODES}" --trainer.devices="${SLURM_NTASKS_PER_NODE}" \
    "${resume[@]}" "$@"
