#!/bin/sh
# ab_builds.sh: two builds of bench_models against each other on the same models, in turns, in
# one call: for a kernel change, the build before it (BASE) and after it (NEW). Each round runs
# BASE then NEW with the same arguments; at the end it prints, per model and measure, the median
# over rounds of each build's median time and NEW's speed-up (BASE's time over NEW's).
#
#   bench/ab_builds.sh BASE_BENCH_MODELS NEW_BENCH_MODELS ROUNDS BENCH_MODELS_ARGS...
# e.g.
#   bench/ab_builds.sh ../before/bench/bench_models bench/bench_models 2 --model models/teacher.safetensors \
#       --ae models/ae.safetensors --device cpu --batch 2 --batch 16 --iters 5 --videos 2
set -eu
[ $# -ge 4 ] || { echo "usage: ab_builds.sh BASE NEW ROUNDS BENCH_MODELS_ARGS..." >&2; exit 2; }
base=$1 new=$2 rounds=$3
shift 3
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
i=0
while [ $i -lt "$rounds" ]; do
    for build in base new; do
        prog=$base
        [ $build = new ] && prog=$new
        "$prog" "$@" 2>/dev/null | grep '"what"' | sed "s/^{/{\"build\": \"$build\", /" >>"$lines"
    done
    i=$((i + 1))
done
python3 - "$lines" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    runs.setdefault((d["model"], d["what"], d["batch"]), {}).setdefault(d["build"], []).append(d["median_ms"])
for (model, what, batch), t in runs.items():
    b, n = statistics.median(t["base"]), statistics.median(t["new"])
    print(json.dumps({"model": model, "what": what, "batch": batch, "base_ms": round(b, 3), "new_ms": round(n, 3),
                      "speedup": round(b / n, 3), "rounds": len(t["new"])}))
PY
