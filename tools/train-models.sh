#!/bin/sh
# train-models.sh: trains the shipped models from scratch, the autoencoder and then the teacher
# (text encoder and UNet) in twenty-five stages (teacher.json, then teacher-2.json from the first
# stage's EMA, teacher-3.json from the second's, and so on to teacher-25.json), with the recipes in
# models/recipes/, and writes them in bf16 as OUTDIR/ae.safetensors and OUTDIR/teacher.safetensors
# (the teacher in files of at most 8 MiB: teacher.safetensors names teacher-part-2.safetensors
# beside it; copy them all into models/ to serve them), and stage 10's EMA weights in F8 as
# OUTDIR/teacher-guide.safetensors, the guide the server samples the teacher with (docs/models.md,
# "Guided by an earlier stage"). Stages 7 and 8 stop where the shipped teacher's runs
# stopped (steps 2748 and 3601, before the end of their learning-rate schedules); the next stage
# starts from the EMA of that checkpoint.
#
#   tools/train-models.sh [--time-limit SECONDS] [--gpus N] OUTDIR
#
# The program it runs is $VDMINI when set (e.g. VDMINI=/opt/vdmini/bin/vdmini-core), else
# vdmini-core on PATH (vdmini without video: all that training needs), else vdmini on PATH, else
# the one built in the source tree (./vdmini-core, then ./vdmini). Run it from anywhere. Each run
# resumes from the newest checkpoint under OUTDIR, so a long training can be done in chunks: with
# --time-limit the run stops after about that many seconds (after a checkpoint) and exits 3;
# run it again to go on. Training takes the GPU when there is one (bf16 matrix products, fp32
# weights); on the CPU the recipes take days. With --gpus N, a stage whose recipe sums a multiple
# of N micro-batches a step (grad_accum) is spread over N GPUs (the same run; four H200s give it
# about three times the clips a second); any other on as many of the N as share its micro-batches
# evenly.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
limit=0 gpus=1
while [ $# -gt 1 ]; do
    case $1 in
    --time-limit) limit=${2:?--time-limit needs a number of seconds}; shift 2 ;;
    --gpus) gpus=${2:?--gpus needs a number of GPUs}; shift 2 ;;
    *) break ;;
    esac
done
out=${1:?usage: train-models.sh [--time-limit SECONDS] [--gpus N] OUTDIR}
. "$here/tools/resumable-run.sh"
check_run_options train-models.sh
vdmini=$(vdmini_program)
mkdir -p "$out"
cd "$out"
start=$(date +%s)

# Runs `vdmini train WHAT` from its recipe, resuming from the newest checkpoint in DIR; with STOP,
# it stops after that step and writes that checkpoint's EMA as DIR/FINAL. Returns 3 when the time
# limit stopped it before the end.
train() {
    what=$1 recipe=$2 dir=$3 final=$4 stop=${5:-0}
    [ -f "$dir/$final" ] && return 0
    set -- train "$what" --config "$recipe" --device auto --bf16
    [ "$stop" -gt 0 ] && set -- "$@" --stop-at "$stop"
    run_resumable "$dir" "$(sed -n 's/.*"grad_accum": *\([0-9]*\).*/\1/p' "$recipe")" "$@" || return $?
    checkpoint=$dir/$(printf 'step-%06d' "$stop")
    if [ "$stop" -gt 0 ] && [ -d "$checkpoint" ]; then
        "$vdmini" convert --model "$checkpoint" --dtype f32 --out "$dir/$final" || return $?
    fi
    [ -f "$dir/$final" ] || return 3
}

status=0
train ae "$here/models/recipes/ae.json" ae ae-ema.safetensors || status=$?
[ $status -eq 0 ] && { train denoiser "$here/models/recipes/teacher.json" teacher teacher-ema.safetensors || status=$?; }
for stage in 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
    stop=0
    [ $stage -eq 7 ] && stop=2748
    [ $stage -eq 8 ] && stop=3601
    [ $status -eq 0 ] && { train denoiser "$here/models/recipes/teacher-$stage.json" teacher-$stage teacher-ema.safetensors $stop ||
        status=$?; }
done
if [ $status -eq 3 ]; then
    echo "train-models.sh: stopped at the time limit; run it again to continue" >&2
    exit 3
fi
[ $status -eq 0 ] || exit $status
"$vdmini" convert --model ae/ae-ema.safetensors --dtype bf16 --out ae.safetensors
"$vdmini" convert --model teacher-25/teacher-ema.safetensors --dtype bf16 --max-file-mb 8 --out teacher.safetensors
"$vdmini" convert --model teacher-10/teacher-ema.safetensors --dtype f8 --out teacher-guide.safetensors
echo "train-models.sh: wrote $out/ae.safetensors, $out/teacher.safetensors and $out/teacher-guide.safetensors" >&2
