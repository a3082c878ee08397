#!/bin/sh
# test_reference.sh: the C engine against the PyTorch reference in tools/reference/ (Debian's
# python3-torch, CPU, fp32): every op on both CPU backends, then a tiny model's tokenizer, text
# encoder, autoencoder, UNet step and DDIM/Euler sampling runs (DDIM also moving away from a guide
# model, a second tiny model of other weights), and the training gradients of the
# autoencoder and of the denoiser (text encoder and UNet) against autograd; then the UNet step,
# sampling and denoiser gradients of a student pruned of temporal and attention units, and of a
# model whose ResBlocks are wider inside than their levels (inner_channels). Fresh random weights
# and inputs each run (the seed is printed).
set -eu
: "${top_srcdir:=.}" "${top_builddir:=.}" "${TORCH_PYTHON:=/usr/bin/python3}"
if ! "$TORCH_PYTHON" -c 'import torch' 2>/dev/null; then
    echo "SKIP: $TORCH_PYTHON has no torch (apt-get install python3-torch)"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
echo "seed $seed"

"$TORCH_PYTHON" "$top_srcdir/tools/reference/make_op_cases.py" "$work/ops.safetensors" --seed "$seed"
"$top_builddir/tests/kernels/check_op_cases" "$work/ops.safetensors"

"$top_builddir/vdmini" init --preset tiny --seed "$seed" --out "$work/tiny.safetensors"
"$top_builddir/vdmini" init --preset tiny --seed "$((seed + 1))" --out "$work/guide.safetensors"
"$TORCH_PYTHON" "$top_srcdir/tools/reference/make_model_cases.py" --weights "$work/tiny.safetensors" \
    --out "$work/cases.safetensors" --seed "$((seed % 100000))" --guide "$work/guide.safetensors"
"$top_builddir/tests/engine/check_reference" "$work/tiny.safetensors" "$work/cases.safetensors" "$work/guide.safetensors"

"$TORCH_PYTHON" "$top_srcdir/tools/reference/make_train_cases.py" --weights "$work/tiny.safetensors" \
    --out "$work/train.safetensors" --seed "$((seed % 100000))"
"$top_builddir/tests/engine/check_train" "$work/tiny.safetensors" "$work/train.safetensors"

# check_small NAME CASE_SEED: the UNet step, sampling and denoiser gradients of $work/NAME.safetensors
# (no autoencoder cases), at 3 frames of 8x8 latents and one sampling step
check_small() {
    "$TORCH_PYTHON" "$top_srcdir/tools/reference/make_model_cases.py" --weights "$work/$1.safetensors" \
        --out "$work/$1-cases.safetensors" --seed "$2" --frames 3 --size 8x8 --steps 1 --skip-ae
    "$top_builddir/tests/engine/check_reference" "$work/$1.safetensors" "$work/$1-cases.safetensors"
    "$TORCH_PYTHON" "$top_srcdir/tools/reference/make_train_cases.py" --weights "$work/$1.safetensors" \
        --out "$work/$1-train.safetensors" --seed "$2" --skip-ae
    "$top_builddir/tests/engine/check_train" "$work/$1.safetensors" "$work/$1-train.safetensors"
}

# a pruned student without the temporal layers of level 0 (temporal convs only) and of the
# deepest level (temporal convs and temporal self-attentions, mid's too), and without the
# attention parts of down.1.0 and mid
echo '{"remove": ["temporal.0", "temporal.2", "down.1.0.attn", "mid.attn"]}' >"$work/plan.json"
"$top_builddir/vdmini" prune --teacher "$work/tiny.safetensors" --plan "$work/plan.json" \
    --out "$work/parts.safetensors"
check_small parts "$((seed % 100000 + 1))"

# ResBlocks wider inside than their levels at every level (mid's too)
"$top_builddir/vdmini" init --preset tiny --inner-channels 48,80,108 --seed "$seed" --out "$work/wide.safetensors"
check_small wide "$((seed % 100000 + 2))"
