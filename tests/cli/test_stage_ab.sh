#!/bin/sh
# test_stage_ab.sh: tools/stage-ab.sh end to end with --quick on the CPU, from the shipped
# teacher: two configs (the second with crowded clips) train side by side, each result is
# evaluated on two seeds, text- and image-to-video, and the summary compares them; the configs
# keep their settings with out_dir replaced and relative paths resolved; a second run changes
# nothing; bad options and a missing config are refused before anything runs; with --gpus 4 each
# run gets its half of the GPUs, and --evals-at-once 2 runs the evaluations two at a time (both
# checked with a stand-in for the program).
set -u
: "${top_srcdir:=.}"
script="$top_srcdir/tools/stage-ab.sh"
. "$top_srcdir/tests/cli/script_test.sh"
out="$work/out"
models=$(cd "$top_srcdir/models" && pwd)

mkdir -p "$work/configs"
cp "$models"/teacher*.safetensors "$work/configs/" # the shipped teacher and its parts
cat >"$work/configs/a.json" <<JSON
{"init": "teacher.safetensors", "ae": "$models/ae.safetensors", "out_dir": "elsewhere", "steps": 100,
 "batch": 16, "clips": 16, "grad_accum": 8, "lr": 1e-4, "min_lr": 1e-5, "seed": 27, "object_loss_weight": 3}
JSON
sed 's/"object_loss_weight": 3}/"object_loss_weight": 3, "object_count_odds": [1, 2, 2]}/' "$work/configs/a.json" \
    >"$work/configs/b.json"

expect_refused "an unknown option" --epochs --epochs 3 "$work/configs/a.json" "$work/configs/b.json"
expect_refused "--gpus 3" --gpus --gpus 3 "$work/configs/a.json" "$work/configs/b.json"
expect_refused "bad seeds" --seeds --seeds 1000,,2000 "$work/configs/a.json" "$work/configs/b.json"
expect_refused "--evals-at-once 0" --evals-at-once --evals-at-once 0 "$work/configs/a.json" "$work/configs/b.json"
expect_refused "a missing config" "no config" "$work/configs/a.json" "$work/configs/none.json"

if "$script" --quick --seeds 1000,2000 "$work/configs/a.json" "$work/configs/b.json" "$out" >"$work/log" 2>&1; then
    ok "the quick A/B finishes"
else
    bad "quick A/B: $(tail -5 "$work/log")"
fi
if python3 - "$out" "$work/configs" <<'PY'; then
import json, os, sys
out, configs = sys.argv[1:]
for arm in ("a", "b"):
    got = json.load(open(f"{out}/{arm}.json"))
    assert got["out_dir"] == arm and got["init"] == f"{configs}/teacher.safetensors", got
    assert got["seed"] == 27 and got["object_loss_weight"] == 3 and got["steps"] == 2, got
    assert ("object_count_odds" in got) == (arm == "b"), got
    assert os.path.exists(f"{out}/{arm}/teacher-ema.safetensors") and os.path.exists(f"{out}/{arm}.safetensors")
    for mode in ("t2v", "i2v"):
        for seed in (1000, 2000):
            report = json.load(open(f"{out}/eval-{arm}-{mode}-{seed}.json"))
            assert report["clips"] == 2 and "shape_by_objects" in report, (arm, mode, seed)
PY
    ok "each arm trains its own config and is evaluated on every seed"
else
    bad "arms: $(ls "$out")"
fi
if grep -q "^| t2v | A | B | B - A |" "$out/summary.md" && grep -q "^| i2v | A | B | B - A |" "$out/summary.md" &&
   grep -q "^| shape_correct | [0-9.]* | [0-9.]* | [-+][0-9.]* |" "$out/summary.md" &&
   grep -q "^| first_frame_psnr |" "$out/summary.md" && grep -q "^| shape, clips of 1 object |" "$out/summary.md" &&
   grep -q "^| shape, small objects | [0-9.–]* |" "$out/summary.md"; then
    ok "the summary compares A and B"
else
    bad "summary: $(cat "$out/summary.md")"
fi
before=$(ls -l --time-style=full-iso "$out"/*.safetensors "$out"/eval-*.json)
if "$script" --quick --seeds 1000,2000 "$work/configs/a.json" "$work/configs/b.json" "$out" >"$work/log2" 2>&1 &&
   [ "$before" = "$(ls -l --time-style=full-iso "$out"/*.safetensors "$out"/eval-*.json)" ]; then
    ok "a second run changes nothing"
else
    bad "second run: $(tail -3 "$work/log2")"
fi

# --gpus 4 without GPUs here: a stand-in for the program logs what each call gets. A trains on
# GPUs 0 and 1 with --gpus 2, B on 2 and 3; A is evaluated on GPU 0, B on GPU 2; all on cuda.
cat >"$work/fake" <<'FAKE'
#!/bin/sh
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-} $*" >>"$FAKE_LOG"
case $1 in
train) dir=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["out_dir"])' "$4")
       mkdir -p "$dir" && : >"$dir/teacher-ema.safetensors" ;;
convert) while [ $# -gt 1 ] && [ "$1" != --out ]; do shift; done; : >"$2" ;;
eval) mode=t2v; case " $* " in *" --i2v "*) mode=i2v ;; esac
      if [ -n "${FAKE_PAIRS:-}" ]; then # a barrier: the 2k-1th and 2kth evaluations wait for each other
          echo $$ >>"$FAKE_PAIRS"; need=$(( ($(wc -l <"$FAKE_PAIRS") + 1) / 2 * 2 )) tries=0
          while [ "$(wc -l <"$FAKE_PAIRS")" -lt $need ] && [ $tries -lt 50 ]; do sleep 0.1; tries=$((tries + 1)); done
          if [ "$(wc -l <"$FAKE_PAIRS")" -ge $need ]; then echo "eval paired" >>"$FAKE_LOG"; else echo "eval alone" >>"$FAKE_LOG"; fi
      fi
      while [ $# -gt 1 ] && [ "$1" != --json ]; do shift; done; cp "$FAKE_REPORTS/eval-a-$mode-1000.json" "$2" ;;
esac
FAKE
chmod +x "$work/fake"
export FAKE_LOG="$work/fake.log" FAKE_REPORTS="$out" # the quick run's reports stand in for the evaluations
if VDMINI="$work/fake" "$script" --gpus 4 --seeds 1000 "$work/configs/a.json" "$work/configs/b.json" "$work/split" \
       >/dev/null 2>"$work/err" &&
   grep -q "^CUDA_VISIBLE_DEVICES=0,1 train denoiser --config a.json --device cuda --bf16 --gpus 2" "$FAKE_LOG" &&
   grep -q "^CUDA_VISIBLE_DEVICES=2,3 train denoiser --config b.json --device cuda --bf16 --gpus 2" "$FAKE_LOG" &&
   [ "$(grep -c "^CUDA_VISIBLE_DEVICES=0 eval --model a.safetensors .*--device cuda" "$FAKE_LOG")" -eq 2 ] &&
   [ "$(grep -c "^CUDA_VISIBLE_DEVICES=2 eval --model b.safetensors .*--device cuda" "$FAKE_LOG")" -eq 2 ]; then
    ok "--gpus 4 gives each run half of the GPUs"
else
    bad "--gpus 4: $(cat "$work/err" "$FAKE_LOG")"
fi

# One GPU, --evals-at-once 2: the four evaluations run in pairs, each meeting its partner at the
# stand-in's barrier (run one at a time, each would give up waiting and log "alone").
: >"$FAKE_LOG"
if FAKE_PAIRS="$work/pairs" VDMINI="$work/fake" "$script" --evals-at-once 2 --seeds 1000 "$work/configs/a.json" \
       "$work/configs/b.json" "$work/together" >/dev/null 2>"$work/err" &&
   [ "$(grep -c "^eval paired" "$FAKE_LOG")" -eq 4 ] && ! grep -q "^eval alone" "$FAKE_LOG" &&
   [ "$(ls "$work/together"/eval-*.json | wc -l)" -eq 4 ]; then
    ok "--evals-at-once 2 runs the evaluations two at a time"
else
    bad "--evals-at-once: $(cat "$work/err" "$FAKE_LOG")"
fi

finish
