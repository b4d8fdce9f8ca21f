#!/usr/bin/env bash
# Test on a Slurm cluster, one task per GPU (MMPretrain's slurm_test.sh interface).
#
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#        tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
#
# GPUS is the number of tasks (processes) in all, GPUS_PER_NODE the tasks per node. On a
# cluster without GPUs set GRES="" (no --gres request): tools/test.py then runs over gloo on
# the CPU tasks. PYTHON selects the interpreter (default: python).
set -euo pipefail

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
PY_ARGS=("${@:5}")
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-"gpu:${GPUS_PER_NODE}"}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
TOOLS_DIR=$(dirname "$0")

GRES_ARGS=()
if [ -n "$GRES" ]; then
    GRES_ARGS=(--gres="$GRES")
fi

# SRUN_ARGS is split on purpose: it holds any number of extra srun options.
# shellcheck disable=SC2086
PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    ${GRES_ARGS[@]+"${GRES_ARGS[@]}"} \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$TOOLS_DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher=slurm \
    ${PY_ARGS[@]+"${PY_ARGS[@]}"}
