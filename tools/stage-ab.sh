#!/bin/sh
# stage-ab.sh: an A/B of two teacher training stages, the way docs/models.md decides between
# variants: both configs train side by side (the same start and clips unless the configs say
# otherwise), then each result is evaluated on several held-out seeds, text- and image-to-video,
# and the rates are compared as means over the seeds, where one seed's noise would hide a gain.
#
#   tools/stage-ab.sh [--time-limit SECONDS] [--gpus N] [--seeds 1000,2000,3000] [--prompts 200]
#                     [--evals-at-once N] [--quick] CONFIG_A CONFIG_B OUTDIR
#
# CONFIG_A and CONFIG_B are `vdmini train denoiser` configs (README, "Training"); relative paths in
# them ("init", "ae") are taken from the config's own folder, and "out_dir" is replaced by OUTDIR/a
# and OUTDIR/b. With --gpus N (even) each run takes half of the GPUs (and must find them: --device
# cuda), and each result is evaluated on the first GPU of its half; with one GPU (or none) both
# share it (two runs of this model make about 1.2 times the clips of one: bench/RESULTS.md), and
# so do the evaluations of both. --evals-at-once N runs up to N evaluations at once on each GPU
# (default 1; one 200-prompt evaluation leaves an H200 partly idle: bench/RESULTS.md). Each
# run resumes from its newest checkpoint: with --time-limit the script stops after about that many
# seconds (after a checkpoint) and exits 3; run it again to go on. It then writes
# OUTDIR/{a,b}.safetensors (the EMA weights, bf16), OUTDIR/eval-{a,b}-{t2v,i2v}-SEED.json and
# OUTDIR/summary.md: every rate of A and B (the mean over the seeds), B - A, and the shape rate by
# the clip's object count and by the object's size over all the seeds' clips. The program is
# found as tools/resumable-run.sh says; AE names the autoencoder for the evaluation (default
# models/ae.safetensors). --quick shrinks the runs to 2 steps of one clip and the evaluations to 2
# prompts of 2 steps, to check the pipeline on the CPU.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
limit=0 gpus=1 quick=0 seeds=1000,2000,3000 prompts=200 at_once=1
while [ $# -gt 3 ]; do
    case $1 in
    --time-limit) limit=${2:?--time-limit needs a number of seconds}; shift 2 ;;
    --gpus) gpus=${2:?--gpus needs a number of GPUs}; shift 2 ;;
    --seeds) seeds=${2:?--seeds needs a list of seeds}; shift 2 ;;
    --prompts) prompts=${2:?--prompts needs a number}; shift 2 ;;
    --evals-at-once) at_once=${2:?--evals-at-once needs a number}; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "stage-ab.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -eq 3 ] || { echo "usage: stage-ab.sh [--time-limit S] [--gpus N] [--seeds S1,S2] [--prompts N] [--evals-at-once N] [--quick] CONFIG_A CONFIG_B OUTDIR" >&2; exit 2; }
. "$here/tools/resumable-run.sh"
check_run_options stage-ab.sh
case $seeds in '' | *[!0-9,]* | ,* | *, | *,,*) echo "stage-ab.sh: --seeds needs seeds separated by commas" >&2; exit 2 ;; esac
case $prompts in '' | *[!0-9]* | 0) echo "stage-ab.sh: --prompts needs a whole number from 1" >&2; exit 2 ;; esac
case $at_once in '' | *[!0-9]* | 0) echo "stage-ab.sh: --evals-at-once needs a whole number from 1" >&2; exit 2 ;; esac
[ "$gpus" -eq 1 ] || [ $((gpus % 2)) -eq 0 ] || { echo "stage-ab.sh: --gpus must be 1 or even (half for each run)" >&2; exit 2; }
for config in "$1" "$2"; do [ -f "$config" ] || { echo "stage-ab.sh: no config $config" >&2; exit 2; }; done
config_a=$(realpath "$1") config_b=$(realpath "$2")
ae=$(realpath "${AE:-$here/models/ae.safetensors}")
vdmini=$(vdmini_program)
device=auto
[ "$gpus" -gt 1 ] && device=cuda # with GPUs named, a run that finds none fails instead of using the CPU
mkdir -p "$3"
cd "$3"
start=$(date +%s)

# prepare ARM CONFIG: ARM.json, the config with its paths made absolute and out_dir ARM (shrunk
# with --quick)
prepare() {
    python3 - "$2" "$1" "$quick" >"$1.json" <<'PY'
import json, os, sys
path, arm, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
config = json.load(open(path))
for key in ("init", "ae"):
    value = config.get(key)
    if isinstance(value, str) and value.endswith(".safetensors") and not os.path.isabs(value):
        config[key] = os.path.join(os.path.dirname(path), value)
config["out_dir"] = arm
if quick:
    config.update(steps=2, batch=1, clips=1, grad_accum=1, warmup_steps=1, loader_threads=1, checkpoint_every=1)
json.dump(config, sys.stdout, indent=2)
print()
PY
}

# train ARM: trains ARM.json on this arm's GPUs; 3 when the time limit stopped it
train() {
    [ -f "$1/teacher-ema.safetensors" ] && return 0
    run_resumable "$1" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("grad_accum", 1))' "$1.json")" \
        train denoiser --config "$1.json" --device $device --bf16 || return $?
    [ -f "$1/teacher-ema.safetensors" ] || return 3
}

# evaluate_one ARM MODE SEED: ARM.safetensors, text- (t2v) or image-to-video (i2v), on SEED's prompts
evaluate_one() {
    eval_steps=25 count=$prompts out=eval-$1-$2-$3.json flag=
    [ $quick -eq 1 ] && eval_steps=2 count=2
    [ "$2" = i2v ] && flag=--i2v
    "$vdmini" eval --model "$1.safetensors" --ae "$ae" --prompts "$count" --seed "$3" \
        --steps "$eval_steps" --device $device --bf16 $flag --json "$out.tmp" >/dev/null || return 1
    mv "$out.tmp" "$out"
}

# evaluate ARM...: each ARM on every seed, text- and image-to-video, up to at_once at a time
evaluate() {
    status=0 pids=
    for arm in "$@"; do
        for seed in $(echo "$seeds" | tr , ' '); do
            for mode in t2v i2v; do
                [ -f "eval-$arm-$mode-$seed.json" ] && continue
                evaluate_one "$arm" $mode "$seed" &
                pids="$pids $!"
                [ $(echo $pids | wc -w) -lt "$at_once" ] && continue
                for pid in $pids; do wait "$pid" || status=1; done
                pids=
            done
        done
    done
    for pid in $pids; do wait "$pid" || status=1; done
    return $status
}

prepare a "$config_a"
prepare b "$config_b"
status_a=0 status_b=0
if [ "$gpus" -gt 1 ]; then
    # A on GPUs 0 .. half - 1, B on half .. gpus - 1, each run spread over its half
    half=$((gpus / 2))
    gpus_a=$(seq -s, 0 $((half - 1))) gpus_b=$(seq -s, "$half" $((gpus - 1)))
    (gpus=$half; CUDA_VISIBLE_DEVICES=$gpus_a; export CUDA_VISIBLE_DEVICES; train a) & pid_a=$!
    (gpus=$half; CUDA_VISIBLE_DEVICES=$gpus_b; export CUDA_VISIBLE_DEVICES; train b) & pid_b=$!
else
    (train a) & pid_a=$!
    (train b) & pid_b=$!
fi
wait $pid_a || status_a=$?
wait $pid_b || status_b=$?
for status in $status_a $status_b; do
    if [ "$status" -eq 3 ]; then
        echo "stage-ab.sh: stopped at the time limit; run it again to continue" >&2
        exit 3
    fi
    [ "$status" -eq 0 ] || exit "$status"
done

for arm in a b; do
    [ -f $arm.safetensors ] || "$vdmini" convert --model $arm/teacher-ema.safetensors --dtype bf16 --out $arm.safetensors
done
if [ "$gpus" -gt 1 ]; then
    (CUDA_VISIBLE_DEVICES=0; export CUDA_VISIBLE_DEVICES; evaluate a) & pid_a=$!
    (CUDA_VISIBLE_DEVICES=$half; export CUDA_VISIBLE_DEVICES; evaluate b) & pid_b=$!
    wait $pid_a && wait $pid_b
else
    evaluate a b
fi

python3 - "$seeds" "$config_a" "$config_b" >summary.md <<'PY'
import json, sys
seeds = sys.argv[1].split(",")
rates = ["content_score", "motion_score", "colour_correct", "shape_correct", "size_correct", "direction_correct",
         "speed_ok", "smooth", "flicker_free", "identity_kept", "frechet_distance"]
def load(arm, mode):
    return [json.load(open(f"eval-{arm}-{mode}-{seed}.json")) for seed in seeds]
print(f"# A/B: A = {sys.argv[2]}, B = {sys.argv[3]}\n")
print(f"Seeds {', '.join(seeds)}; each figure is the mean over the seeds (the Fréchet distance too).\n")
for mode in ("t2v", "i2v"):
    a, b = load("a", mode), load("b", mode)
    print(f"| {mode} | A | B | B - A |\n|---|---|---|---|")
    for rate in rates + (["first_frame_psnr"] if mode == "i2v" else []):
        va = sum(r[rate] for r in a) / len(a)
        vb = sum(r[rate] for r in b) / len(b)
        print(f"| {rate} | {va:.3f} | {vb:.3f} | {vb - va:+.3f} |")
    groups = [("shape_by_objects", c, f"clips of {c} object{'s' if c != '1' else ''}") for c in ("1", "2", "3")]
    groups += [("shape_by_size", size, f"{size} objects") for size in ("small", "medium", "large")]
    for field, key, label in groups:
        def share(runs):
            correct = sum(r[field][key]["correct"] for r in runs)
            frames = sum(r[field][key]["object_frames"] for r in runs)
            return correct / frames if frames else float("nan")
        sa, sb = share(a), share(b)
        cells = " | ".join("–" if x != x else f"{x:{form}}" for x, form in ((sa, ".3f"), (sb, ".3f"), (sb - sa, "+.3f")))
        print(f"| shape, {label} | {cells} |")
    print()
PY
cat summary.md
