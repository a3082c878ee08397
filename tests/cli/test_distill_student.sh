#!/bin/sh
# test_distill_student.sh: tools/distill-student.sh end to end with --quick on the CPU, from the
# shipped teacher: it writes an F8 student without exactly the units of plan F that samples at
# guidance 1, each stage's config takes its recipe's settings and the guide (here the teacher
# stands in for it, as a clone without the history has no derived guide), a second run changes
# nothing, and an unknown option or a bad --gpus is refused before anything runs.
set -u
: "${top_srcdir:=.}"
script="$top_srcdir/tools/distill-student.sh"
. "$top_srcdir/tests/cli/script_test.sh"
out="$work/out"
GUIDE="$top_srcdir/models/teacher.safetensors"
export GUIDE

expect_refused "an unknown option" --epochs --epochs 3
expect_refused "--gpus 0" --gpus --gpus 0

if "$script" --quick "$out" >"$work/log" 2>&1; then ok "the quick run finishes"; else bad "quick run: $(tail -5 "$work/log")"; fi
removed=$("$VDMINI" info "$out/vdmini.safetensors" 2>/dev/null | sed -n 's/^removed blocks: //p')
if python3 - "$removed" "$top_srcdir/models/recipes/student-f-plan.json" "$out/vdmini.safetensors" <<'PY'; then
import json, struct, sys
removed, plan, path = sys.argv[1].split(), json.load(open(sys.argv[2]))["remove"], sys.argv[3]
with open(path, "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
sys.exit(not (sorted(removed) == sorted(plan) and dtypes == {"F8_E4M3"}))
PY
    ok "the student lacks plan F's units, in F8"
else
    bad "student: removed '$removed'"
fi
if "$VDMINI" info "$out/vdmini.safetensors" 2>/dev/null | grep -q "^samples at guidance 1 where none is asked for"; then
    ok "the student samples at guidance 1"
else
    bad "the student's file records no sampling guidance of 1"
fi
# each stage: its recipe's settings (but --quick's), the shipped autoencoder, the stage before it
if python3 - "$top_srcdir/models/recipes" "$out" <<'PY'; then
import json, os, sys
recipes, out = sys.argv[1:]
for n in (1, 2):
    got, want = json.load(open(f"{out}/student-{n}.json")), json.load(open(f"{recipes}/student-f-{n}.json"))
    assert got["out_dir"] == f"student-{n}" and got["ae"].endswith("models/ae.safetensors"), got
    for key in ("lr", "min_lr", "ema_decay", "seed", "lambda_icd", "lambda_mca", "object_loss_weight"):
        assert got[key] == want[key], (n, key)
    assert got["teacher_guidance"] == want["teacher_guidance"] == 3 and got["teacher_guide_scale"] == 2, got
    assert os.path.samefile(got["teacher_guide"], os.environ["GUIDE"]), got
    assert got["steps"] == 2 and os.path.exists(f"{out}/student-{n}/student-ema.safetensors"), n
PY
    ok "each stage follows its recipe"
else
    bad "stage configs"
fi
before=$(ls -l --time-style=full-iso "$out/vdmini.safetensors" "$out"/student-*/student-ema.safetensors)
if "$script" --quick "$out" >"$work/log2" 2>&1 &&
   [ "$before" = "$(ls -l --time-style=full-iso "$out/vdmini.safetensors" "$out"/student-*/student-ema.safetensors)" ] &&
   ! grep -q "distilling" "$work/log2"; then
    ok "a second run changes nothing"
else
    bad "second run: $(tail -3 "$work/log2")"
fi

finish
