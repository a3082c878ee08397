#!/bin/sh
# test_distill_reference.sh: VDMini's ICMD distillation loss against the PyTorch reference
# (Debian's python3-torch, CPU): a tiny teacher with random weights, a student pruned of a shallow
# block, the mid block and a level-1 block's attention part, and tools/reference/make_distill_cases.py's terms and gradients
# (student and discriminator heads) checked by check_distill on both CPU backends; then the same
# with guidance distillation's target (the teacher's guided prediction, guidance 3, moved away from
# a guide pruned of a level-0 up block by a scale of 2). Fresh random weights and inputs each run
# (the seed is printed).
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

"$top_builddir/vdmini" init --preset tiny --seed "$seed" --out "$work/teacher.safetensors"
echo '{"remove": ["down.0.1", "mid", "up.1.1.attn"]}' >"$work/plan.json"
"$top_builddir/vdmini" prune --teacher "$work/teacher.safetensors" --plan "$work/plan.json" \
    --out "$work/student.safetensors"
"$TORCH_PYTHON" "$top_srcdir/tools/reference/make_distill_cases.py" --teacher "$work/teacher.safetensors" \
    --student "$work/student.safetensors" --out "$work/cases.safetensors" --seed "$((seed % 100000))"
"$top_builddir/tests/engine/check_distill" "$work/teacher.safetensors" "$work/student.safetensors" \
    "$work/cases.safetensors"

echo '{"remove": ["up.0.1"]}' >"$work/guide-plan.json"
"$top_builddir/vdmini" prune --teacher "$work/teacher.safetensors" --plan "$work/guide-plan.json" \
    --out "$work/guide.safetensors"
"$TORCH_PYTHON" "$top_srcdir/tools/reference/make_distill_cases.py" --teacher "$work/teacher.safetensors" \
    --student "$work/student.safetensors" --out "$work/guided.safetensors" --seed "$((seed % 100000))" \
    --guidance 3 --guide "$work/guide.safetensors" --guide-scale 2
"$top_builddir/tests/engine/check_distill" "$work/teacher.safetensors" "$work/student.safetensors" \
    "$work/guided.safetensors" "$work/guide.safetensors"
