#!/bin/sh
# test_ablation.sh: tools/vdmini-ablation.sh end to end with --quick on a very small model (the
# admin tests' 32x32 one) on the CPU: the analysis has a row per unit, every rule's plan names
# units of it and its student is smaller than the teacher, every distillation leaves its student
# and log, every evaluation and the speed lines are there; a second run does nothing, and a
# missing piece is made again alone; a bad LOSS_RULE is refused before anything runs.
set -u
: "${top_srcdir:=.}"
script="$top_srcdir/tools/vdmini-ablation.sh"
. "$top_srcdir/tests/cli/script_test.sh"
export BENCH_MODELS="$build/bench/bench_models" TARGET="--flops 0.2"
model="$work/small.safetensors" out="$work/out"
"$build/tests/server/make_small_model" 7 "$model" || { echo "FAIL: make_small_model"; exit 1; }

if LOSS_RULE=middle "$script" --quick "$model" "$model" "$work/refused" 2>"$work/err"; then
    bad "a bad LOSS_RULE ran"
elif grep -q "LOSS_RULE" "$work/err" && [ ! -e "$work/refused" ]; then
    ok "a bad LOSS_RULE is refused before anything runs"
else
    bad "bad LOSS_RULE: $(cat "$work/err")"
fi

if "$script" --quick "$model" "$model" "$out" >"$work/log" 2>&1; then ok "the quick run finishes"; else bad "quick run: $(tail -5 "$work/log")"; fi

if python3 - "$out" "$VDMINI" "$model" <<'PY'; then ok "analysis, plans, students, runs, evaluations and speed lines"; else bad "the outputs"; fi
import json, os, subprocess, sys
out, vdmini, teacher = sys.argv[1:]
def unet_params(path):
    text = subprocess.run([vdmini, "info", path], capture_output=True, text=True, check=True).stdout
    line = next(l for l in text.splitlines() if l.startswith("unet:"))
    return float(line.split(",")[-1].split()[0])
analysis = json.load(open(os.path.join(out, "analysis.json")))
units = [row["block"] for row in analysis["blocks"]]
assert units and len(units) == len(set(units)), units
for row in analysis["blocks"]:
    for key in ("content_drop", "motion_drop", "direction_drop", "flop_share", "latency_share"):
        assert isinstance(row[key], (int, float)), (row["block"], key)
full = unet_params(teacher)
for rule in ("shallow", "deep", "random"):
    plan = json.load(open(os.path.join(out, f"plan-{rule}.json")))
    assert plan["remove"] and set(plan["remove"]) <= set(units), (rule, plan)
    assert unet_params(os.path.join(out, f"student-{rule}.safetensors")) < full, rule
runs = ["shallow-icmd", "deep-icmd", "random-icmd", "deep-task", "deep-icd", "deep-mca"]
for run in runs:
    assert os.path.getsize(os.path.join(out, run, "student-ema.safetensors")) > 0, run
    with open(os.path.join(out, run, "train.csv")) as f:
        assert f.readline().startswith("step,") and f.readline(), run
for name in ["teacher"] + runs:
    report = json.load(open(os.path.join(out, f"eval-{name}.json")))
    assert report["clips"] == 1 and isinstance(report["content_score"], (int, float)), name
lines = [json.loads(l) for l in open(os.path.join(out, "bench.jsonl"))]
assert len([l for l in lines if "against" in l]) == 3, lines
assert not os.path.exists(os.path.join(out, "shallow-task")), "the loss ablation ran on the wrong student"
PY

ls -l --time-style=+%s.%N "$out" >"$work/before"
if "$script" --quick "$model" "$model" "$out" >"$work/log" 2>&1 && ls -l --time-style=+%s.%N "$out" | cmp -s - "$work/before"; then
    ok "a second run keeps every finished piece"
else
    bad "a second run changed the results: $(tail -3 "$work/log")"
fi
rm "$out/eval-deep-mca.json"
cp "$out/eval-teacher.json" "$work/teacher.json"
if "$script" --quick "$model" "$model" "$out" >"$work/log" 2>&1 && [ -s "$out/eval-deep-mca.json" ] &&
   cmp -s "$out/eval-teacher.json" "$work/teacher.json"; then
    ok "a missing evaluation is made again, the rest kept"
else
    bad "the missing evaluation: $(tail -3 "$work/log")"
fi

finish
