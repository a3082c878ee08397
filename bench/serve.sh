#!/bin/sh
# serve.sh: the server's throughput benchmark. For each maximum batch size (1 = batching off,
# then 8), starts vdminid on the given model, measures a single client alone, then N concurrent
# clients, with bench/load.py, and stops the server. vdminid and vdmini must be on PATH or in
# BUILDDIR.
#
#   bench/serve.sh MODEL DEVICE [CLIENTS] [FRAMES] [SIZE] [STEPS] [VIDEOS_PER_CLIENT]
set -eu
model=$1 device=$2 clients=${3:-8} frames=${4:-16} size=${5:-128x128} steps=${6:-25} per=${7:-3}
here=$(cd "$(dirname "$0")" && pwd)
bin=${BUILDDIR:+$BUILDDIR/}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for batch in 1 8; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${bin}vdminid" --model "$model" --data-dir "$work/data-$batch" --listen "127.0.0.1:$port" \
        --set device="$device" --set bf16=true --set max_batch=$batch --set max_queue_wait_ms=20 \
        2>"$work/log-$batch" &
    pid=$!
    for _ in $(seq 1 300); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" \
            2>/dev/null && break
        sleep 0.1
    done
    common="--url http://127.0.0.1:$port --frames $frames --size $size --steps $steps"
    python3 "$here/load.py" $common --clients 1 --videos-per-client "$per" --label "max_batch=$batch, 1 client"
    python3 "$here/load.py" $common --clients "$clients" --videos-per-client "$per" \
        --label "max_batch=$batch, $clients clients"
    python3 - "$port" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
          if line.startswith(("vdmini_step_duration_seconds_sum", "vdmini_step_duration_seconds_count",
                              "vdmini_step_batch_size_sum"))}
steps = values.get("vdmini_step_duration_seconds_count", 0)
if steps:
    print(f"# steps {steps:.0f}, mean {1e3 * values['vdmini_step_duration_seconds_sum'] / steps:.1f} ms, "
          f"mean batch {values.get('vdmini_step_batch_size_sum', 0) / steps:.2f} videos, "
          f"stepping {values['vdmini_step_duration_seconds_sum']:.2f} s in all")
PY
    kill -TERM $pid
    wait $pid || true
done
