#!/bin/sh
# cpu.sh: one denoiser step of the tiny preset on the CPU, vdmini against the PyTorch reference
# (Debian's python3-torch, same threads), at batch 2 (one video with guidance).
#
#   bench/cpu.sh [BUILDDIR]
set -eu
build=${1:-.}
here=$(dirname "$0")
threads=$(nproc)
config=$(mktemp)
"$build/bench/bench_step" --print-config tiny >"$config"
{
    OMP_NUM_THREADS=$threads "$build/bench/bench_step" --preset tiny --batch 2 --device cpu --iters 5
    PYTHONPATH="$here/../tools/reference" /usr/bin/python3 "$here/../tools/reference/bench_torch.py" \
        --config "$config" --device cpu --dtype fp32 --mode eager --batch 2 --repeats 5 --threads "$threads"
} | tee /dev/stderr | python3 "$here/compare.py"
rm -f "$config"
