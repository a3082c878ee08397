#!/bin/sh
# train_gpus.sh: denoiser training throughput on one GPU against the same run spread over N GPUs
# of one machine (vdmini train --gpus N), one after the other in this call: the shipped teacher
# and autoencoder, 16 clips of 16 frames a micro-batch, N micro-batches a step, bf16. Prints each
# run's clips per second over its steps after the first 20 (the start-up and cuDNN's plan search
# left out) and the ratio. vdmini-core (or vdmini) must be on PATH.
#
#   bench/train_gpus.sh [N] [STEPS]
set -eu
gpus=${1:-4} steps=${2:-100}
here=$(cd "$(dirname "$0")/.." && pwd)
prog=$(command -v vdmini-core || command -v vdmini)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for n in 1 "$gpus"; do
    cat >"$work/run-$n.json" <<JSON
{"init": "$here/models/teacher.safetensors", "ae": "$here/models/ae.safetensors", "out_dir": "$work/run-$n",
 "steps": $steps, "batch": 16, "clips": 16, "grad_accum": $gpus, "lr": 1e-5, "min_lr": 1e-5,
 "warmup_steps": 0, "loader_threads": 12, "checkpoint_every": 0, "log_every": 10}
JSON
    "$prog" train denoiser --config "$work/run-$n.json" --device cuda --bf16 --gpus "$n" --stop-at "$steps" \
        2>&1 | tr '\r' '\n' | grep -E "^vdmini: a step took" || true
done
nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1
awk -F, -v gpus="$gpus" '
    FNR == 1 { run = (FILENAME ~ /run-1\//) ? 1 : gpus; next }
    $1 > 20 { sum[run] += $5; rows[run]++ }
    END {
        one = sum[1] / rows[1]; many = sum[gpus] / rows[gpus]
        printf "1 GPU: %.1f clips/s\n%d GPUs: %.1f clips/s\nratio: %.2fx\n", one, gpus, many, many / one
    }' "$work/run-1/train.csv" "$work/run-$gpus/train.csv"
