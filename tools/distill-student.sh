#!/bin/sh
# distill-student.sh: makes the shipped student, models/vdmini.safetensors, from the shipped
# teacher: prunes it by models/recipes/student-f-plan.json (plan F: temporal.0 and the attention
# part of down.1.1 removed), then distils it in two stages of guidance distillation with the recipes
# models/recipes/student-f-1.json (680 steps of 64 clips, learning rate 1e-4) and student-f-2.json
# (1,200 steps, 5e-5, from the first stage's EMA weights): the task's target is the teacher's
# prediction guided at 3 by its guide, models/teacher-guide.safetensors, at 2. It writes the result
# in F8 as OUTDIR/vdmini.safetensors, a student that samples at guidance 1 (docs/vdmini.md,
# "Student F from the stage-25 teacher", has how good the shipped one is and what the stages cost:
# about 5.5 and 9 minutes on two H200s). TEACHER set to another file distils from that one, and
# GUIDE names another guide than the shipped one (tools/make-guide.sh derives it).
#
#   tools/distill-student.sh [--time-limit SECONDS] [--gpus N] [--quick] OUTDIR
#
# The program is $VDMINI, else vdmini-core on PATH, else vdmini on PATH, else the source tree's
# (tools/resumable-run.sh); TEACHER, AE and PLAN name other files than the shipped ones. Each stage resumes from its newest
# checkpoint under OUTDIR: with --time-limit the run stops after about that many seconds (after a
# checkpoint) and exits 3; run it again to go on. With --gpus N each stage is spread over as many
# of the N GPUs as share its micro-batches a step (grad_accum) evenly: the same run. --quick
# shrinks every stage to 2 steps of one clip, to check the pipeline on the CPU.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
limit=0 gpus=1 quick=0
while [ $# -gt 1 ]; do
    case $1 in
    --time-limit) limit=${2:?--time-limit needs a number of seconds}; shift 2 ;;
    --gpus) gpus=${2:?--gpus needs a number of GPUs}; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "distill-student.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -eq 1 ] || { echo "usage: distill-student.sh [--time-limit SECONDS] [--gpus N] [--quick] OUTDIR" >&2; exit 2; }
. "$here/tools/resumable-run.sh"
check_run_options distill-student.sh
teacher=$(realpath "${TEACHER:-$here/models/teacher.safetensors}")
ae=$(realpath "${AE:-$here/models/ae.safetensors}")
plan=$(realpath "${PLAN:-$here/models/recipes/student-f-plan.json}")
guide=${GUIDE:-$here/models/teacher-guide.safetensors}
[ -f "$guide" ] || { echo "distill-student.sh: no guide $guide (tools/make-guide.sh writes it)" >&2; exit 2; }
guide=$(realpath "$guide")
vdmini=$(vdmini_program)
mkdir -p "$1"
cd "$1"
start=$(date +%s)

[ -f student-init.safetensors ] || "$vdmini" prune --teacher "$teacher" --plan "$plan" --out student-init.safetensors

# stage N STUDENT: distils STUDENT with recipe student-f-N.json into student-N/, resuming from its
# newest checkpoint. Returns 3 when the time limit stopped it before the end.
stage() {
    dir=student-$1 student=$2
    [ -f "$dir/student-ema.safetensors" ] && return 0
    recipe=$(sed -e 's/}[[:space:]]*$//' "$here/models/recipes/student-f-$1.json")
    if [ $quick -eq 1 ]; then
        recipe=$(printf '%s' "$recipe" | sed -e 's/"steps": *[0-9]*/"steps": 2/' -e 's/"clips": *[0-9]*/"clips": 1/' \
            -e 's/"batch": *[0-9]*/"batch": 1/' -e 's/"grad_accum": *[0-9]*/"grad_accum": 1/' \
            -e 's/"warmup_steps": *[0-9]*/"warmup_steps": 1/' -e 's/"loader_threads": *[0-9]*/"loader_threads": 1/')
    fi
    case $recipe in *teacher_guidance*) recipe=$(printf '%s,\n  "teacher_guide": "%s"' "$recipe" "$guide") ;; esac
    printf '%s,\n  "ae": "%s",\n  "out_dir": "%s"\n}\n' "$recipe" "$ae" "$dir" >"$dir.json"
    run_resumable "$dir" "$(sed -n 's/.*"grad_accum": *\([0-9]*\).*/\1/p' "$dir.json")" \
        distill --teacher "$teacher" --student "$student" --config "$dir.json" --device auto --bf16 || return $?
    [ -f "$dir/student-ema.safetensors" ] || return 3
}

status=0 from=student-init.safetensors
for n in 1 2; do
    stage $n "$from" || { status=$?; break; }
    from=student-$n/student-ema.safetensors
done
if [ $status -eq 3 ]; then
    echo "distill-student.sh: stopped at the time limit; run it again to continue" >&2
    exit 3
fi
[ $status -eq 0 ] || exit $status
[ -f vdmini.safetensors ] || "$vdmini" convert --model student-2/student-ema.safetensors --dtype f8 --out vdmini.safetensors
echo "distill-student.sh: wrote $1/vdmini.safetensors" >&2
