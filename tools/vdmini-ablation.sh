#!/bin/sh
# vdmini-ablation.sh: VDMini's experiment end to end on one machine (the GPU when there is one):
# analyse the teacher's blocks, plan students at one budget by the paper's rule (shallow), by its
# mirror (deep) and at random, prune, distil each from the teacher with the
# recipe models/recipes/vdmini.json, distil one of them (LOSS_RULE) also with the task loss
# alone, with ICD alone and with MCA alone, evaluate the teacher and every student on held-out prompts,
# and time the ICMD student of each rule against the teacher.
#
#   tools/vdmini-ablation.sh [--time-limit SECONDS] [--quick] TEACHER AE OUTDIR
#
# OUTDIR gets analysis.json, plan-RULE.json, student-RULE.safetensors, a run directory per
# distillation (RULE-LOSS/, with train.csv and student-ema.safetensors), eval-NAME.json and
# bench.jsonl. Every finished piece is kept: run it again to continue (a distillation resumes from
# its newest checkpoint). With --time-limit it stops after about that many seconds, after a
# checkpoint, and exits 3. --quick shrinks everything (2 steps, 1 prompt) to check the pipeline.
# Settings: TARGET (the plans' budget as vdmini plan's option, "--flops 0.375": the share of a
# step's FLOPs to remove for a 1.6x faster step; "--params 0.3" budgets parameters, "--latency
# 0.375" the analysis's measured step time), LOSS_RULE (the rule whose student gets the loss
# ablation: deep, the one that stays usable in docs/vdmini.md; or shallow, random), PROMPTS
# (analysis, 8), EVAL_PROMPTS (200), EVAL_SEED (1000), GPUS (1; more spreads every distillation
# over that many GPUs with as many micro-batches a step: GPUS times the recipe's clips a step).
# The program is $VDMINI, else vdmini-core, else vdmini; bench_models is $BENCH_MODELS, else on
# PATH, else the source tree's.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
limit=0 quick=0
while [ $# -gt 3 ]; do
    case $1 in
    --time-limit) limit=${2:?--time-limit needs seconds}; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "vdmini-ablation.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -eq 3 ] || { echo "usage: vdmini-ablation.sh [--time-limit S] [--quick] TEACHER AE OUTDIR" >&2; exit 2; }
teacher=$(realpath "$1") ae=$(realpath "$2") out=$3
. "$here/tools/resumable-run.sh"
vdmini=$(vdmini_program)
bench_models=${BENCH_MODELS:-$(command -v bench_models || echo "$here/bench/bench_models")}
target=${TARGET:---flops 0.375} loss_rule=${LOSS_RULE:-deep} prompts=${PROMPTS:-8} eval_prompts=${EVAL_PROMPTS:-200} eval_seed=${EVAL_SEED:-1000}
gpus=${GPUS:-1}
case $loss_rule in
shallow | deep | random) ;;
*) echo "vdmini-ablation.sh: LOSS_RULE must be shallow, deep or random" >&2; exit 2 ;;
esac
steps=25 gpu="--device auto --bf16" bench="--batch 2 --batch 16 --iters 5 --videos 2"
if [ $quick -eq 1 ]; then prompts=1 eval_prompts=1 steps=2 bench="--batch 2 --iters 1 --videos 0"; fi
mkdir -p "$out"
cd "$out"
start=$(date +%s)

[ -f analysis.json ] || "$vdmini" analyze --teacher "$teacher" --ae "$ae" --prompts "$prompts" --steps "$steps" \
    $gpu --out analysis.json
for rule in shallow deep random; do
    # shellcheck disable=SC2086
    [ -f "plan-$rule.json" ] || "$vdmini" plan --analysis analysis.json $target --rule "$rule" --seed 1 \
        --out "plan-$rule.json"
    [ -f "student-$rule.safetensors" ] || "$vdmini" prune --teacher "$teacher" --plan "plan-$rule.json" \
        --out "student-$rule.safetensors"
done

# distil RULE LOSS LAMBDA_ICD LAMBDA_MCA: the recipe with the run's lambdas, resumed where it stopped
distil() {
    rule=$1 loss=$2 dir=$1-$2
    [ -f "$dir/student-ema.safetensors" ] && return 0
    recipe=$(sed -e 's/"lambda_icd": *[0-9.e-]*/"lambda_icd": '"$3"'/' -e 's/"lambda_mca": *[0-9.e-]*/"lambda_mca": '"$4"'/' \
        -e 's/}[[:space:]]*$//' "$here/models/recipes/vdmini.json")
    if [ $quick -eq 1 ]; then
        recipe=$(printf '%s' "$recipe" | sed -e 's/"steps": *[0-9]*/"steps": 2/' -e 's/"clips": *[0-9]*/"clips": 1/' \
            -e 's/"batch": *[0-9]*/"batch": 4/' -e 's/"warmup_steps": *[0-9]*/"warmup_steps": 1/')
    fi
    printf '%s,\n  "grad_accum": %d,\n  "ae": "%s",\n  "out_dir": "%s"\n}\n' "$recipe" "$gpus" "$ae" "$dir" >"$dir.json"
    # shellcheck disable=SC2086
    run_resumable "$dir" "$gpus" distill --teacher "$teacher" --student "student-$rule.safetensors" \
        --config "$dir.json" $gpu || return $?
    [ -f "$dir/student-ema.safetensors" ] || return 3
}
status=0 runs= # runs: the run directories, RULE-LOSS, in order
for run in "shallow icmd 0.1 1" "deep icmd 0.1 1" "random icmd 0.1 1" "$loss_rule task 0 0" "$loss_rule icd 0.1 0" \
    "$loss_rule mca 0 1"; do
    runs="$runs $(echo "$run" | cut -d' ' -f1)-$(echo "$run" | cut -d' ' -f2)"
    # shellcheck disable=SC2086
    [ $status -eq 0 ] && { distil $run || status=$?; }
done
if [ $status -eq 3 ]; then
    echo "vdmini-ablation.sh: stopped at the time limit; run it again to continue" >&2
    exit 3
fi
[ $status -eq 0 ] || exit $status

evaluate() { # NAME MODEL
    [ -f "eval-$1.json" ] || "$vdmini" eval --model "$2" --ae "$ae" --prompts "$eval_prompts" --seed "$eval_seed" \
        --steps "$steps" $gpu --json "eval-$1.json"
}
evaluate teacher "$teacher"
for dir in $runs; do
    evaluate "$dir" "$dir/student-ema.safetensors"
done
device=cpu
nvidia-smi -L >/dev/null 2>&1 && device=cuda
# shellcheck disable=SC2086
[ -f bench.jsonl ] || "$bench_models" --model "$teacher" --model shallow-icmd/student-ema.safetensors \
    --model deep-icmd/student-ema.safetensors --model random-icmd/student-ema.safetensors --ae "$ae" \
    --device "$device" --bf16 $bench >bench.jsonl
echo "vdmini-ablation.sh: done; results in $out" >&2
