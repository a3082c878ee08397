#!/bin/sh
# gpu.sh: the GPU checks and speed comparison, run on a machine with an NVIDIA GPU, the engine's
# programs on PATH (bench_step, bench_train, test_cuda_ops, test_cuda_grads, test_cuda_model) and
# a CUDA PyTorch as python3.
#
#   bench/gpu.sh tests|tiny|large|train [OUTDIR]
#
# "tests" runs the CUDA op, gradient and whole-model tests; "tiny" and "large" time one denoiser
# step of that preset at batch 2 (one video with guidance) and 16, vdmini bf16 op by op and with
# its recorded forward (CUDA graphs; batches of up to 8 rows) against the PyTorch reference in
# eager mode, with torch.compile and with torch.compile's CUDA graphs (bf16 autocast), in the same
# run on the same card, and print the comparison table. Raw JSON lines go to OUTDIR/bench-PRESET.jsonl.
# "train" times one training step of the tiny preset's denoiser (text encoder and UNet: forward,
# backward, AdamW) at 1, 8 and 16 clips of 16 frames, vdmini bf16 against the PyTorch reference
# eager and compiled (bf16 autocast), the same way, into OUTDIR/bench-train.jsonl.
set -u
what=${1:?usage: gpu.sh tests|tiny|large|train [OUTDIR]}
out=${2:-.}
here=$(dirname "$0")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
case $what in
tests)
    test_cuda_ops; ops=$?
    test_cuda_grads; grads=$?
    test_cuda_model; model=$?
    [ $ops -eq 0 ] && [ $grads -eq 0 ] && [ $model -eq 0 ]
    ;;
tiny|large)
    config=$(mktemp)
    bench_step --print-config "$what" >"$config"
    log=$out/bench-$what.jsonl
    : >"$log"
    iters=20
    [ "$what" = large ] && iters=5
    for batch in 2 16; do
        bench_step --preset "$what" --batch "$batch" --device cuda --bf16 --iters $iters | tee -a "$log"
        bench_step --preset "$what" --batch "$batch" --device cuda --bf16 --iters $iters --record | tee -a "$log"
    done
    PYTHONPATH="$here/../tools/reference" python3 "$here/../tools/reference/bench_torch.py" --config "$config" \
        --device cuda --dtype bf16 --mode eager compile graphs --batch 2 16 --repeats $iters | tee -a "$log"
    python3 "$here/compare.py" <"$log"
    rm -f "$config"
    ;;
train)
    config=$(mktemp)
    bench_step --print-config tiny >"$config"
    log=$out/bench-train.jsonl
    : >"$log"
    for clips in 1 8 16; do
        bench_train --preset tiny --clips "$clips" --frames 16 --device cuda --bf16 --iters 20 | tee -a "$log"
    done
    PYTHONPATH="$here/../tools/reference" python3 "$here/../tools/reference/bench_train_torch.py" --config "$config" \
        --device cuda --dtype bf16 --mode eager compile --clips 1 8 16 --frames 16 --repeats 20 | tee -a "$log"
    python3 "$here/compare.py" <"$log"
    rm -f "$config"
    ;;
*) echo "gpu.sh: unknown run $what" >&2; exit 2 ;;
esac
