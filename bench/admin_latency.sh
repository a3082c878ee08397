#!/bin/sh
# admin_latency.sh: what an admin run costs serving. Starts vdminid on MODEL, and measures the p50
# latency (POST /v1/videos until the video is completed) of REQUESTS short video requests sent
# one after another: with the server otherwise idle, then while a distillation of the model runs,
# then while a block-importance analysis runs; each twice, with the sharing policy of the
# defaults (admin_yield_seconds, admin_cpu_priority) and with it off (0 and normal). Prints one line per
# case with the p50, its ratio to the idle p50, the load average when the case began and how far
# the admin run got meanwhile (a distillation's steps, an analysis's models: evidence that it
# ran). vdminid must be on PATH or in BUILDDIR.
#
#   bench/admin_latency.sh MODEL [DEVICE] [REQUESTS] [SIZE] [FRAMES] [STEPS]
set -eu
model=$1 device=${2:-cpu} requests=${3:-10} size=${4:-64x64} frames=${5:-4} steps=${6:-4}
bin=${BUILDDIR:+$BUILDDIR/}
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null; fi; rm -rf "$work"' EXIT
key=bench-admin-key

for policy in on off; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    set -- --set device="$device" --set admin_keys="$key" --set max_queue_wait_ms=0
    if [ "$policy" = off ]; then set -- "$@" --set admin_yield_seconds=0 --set admin_cpu_priority=normal; fi
    "${bin}vdminid" --model "$model" --data-dir "$work/data-$policy" --listen "127.0.0.1:$port" "$@" \
        2>"$work/log-$policy" &
    pid=$!
    python3 - "$port" "$key" "$policy" "$requests" "$size" "$frames" "$steps" <<'PY'
import json, os, statistics, sys, time, urllib.error, urllib.request

port, key, policy, requests, size, frames, steps = sys.argv[1:]
requests, frames, steps = int(requests), int(frames), int(steps)
base = f"http://127.0.0.1:{port}"


def call(method, path, payload=None, admin=False):
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    if admin:
        headers["Authorization"] = f"Bearer {key}"
    body = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(base + path, body, headers, method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def wait_up():
    for _ in range(600):
        try:
            return call("GET", "/healthz")
        except OSError:
            time.sleep(0.1)
    raise SystemExit("vdminid did not start")


def video_latency(i):
    start = time.perf_counter()
    video = call("POST", "/v1/videos", {"prompt": "a small red circle moves left on a blue background",
                                        "size": size, "seconds": str(frames // 2), "fps": 2,
                                        "num_inference_steps": steps, "seed": i})
    while video["status"] not in ("completed", "failed", "cancelled"):
        time.sleep(0.01)
        video = call("GET", f"/v1/videos/{video['id']}")
    assert video["status"] == "completed", video
    return time.perf_counter() - start


def admin_progress(run):
    """What an admin run has done: a distillation's steps, an analysis's models."""
    if not run:
        return ""
    p = call("GET", f"/admin/v1/{run[0]}/{run[1]}", admin=True)["progress"] or {}
    return p.get("step", p.get("done", 0))


def p50(label, idle=None, run=None):
    times = []
    load = os.getloadavg()[0]
    before = admin_progress(run)
    for i in range(requests):
        times.append(video_latency(i))
        time.sleep(0.2)  # a client's pause between requests
    median = statistics.median(times)
    ratio = f"{median / idle:.2f}x" if idle else "1.00x"
    work = f"admin: {before} -> {admin_progress(run)}" if run else ""
    print(f"policy {policy:3} | {label:24} | p50 {median * 1e3:8.1f} ms | {ratio} | load {load:.1f} | {work}",
          flush=True)
    return median


def admin_run(kind, payload):
    run = call("POST", f"/admin/v1/{kind}", payload, admin=True)
    while run["status"] == "queued" or (run["status"] == "in_progress" and not run["progress"]):
        time.sleep(0.1)
        run = call("GET", f"/admin/v1/{kind}/{run['id']}", admin=True)
    assert run["status"] == "in_progress", run
    return run["id"]


def stop(kind, run_id):
    try:
        call("POST", f"/admin/v1/{kind}/{run_id}/cancel", {}, admin=True)
    except urllib.error.HTTPError as e:
        if e.code != 409:  # 409: it had already finished
            raise
    while call("GET", f"/admin/v1/{kind}/{run_id}", admin=True)["status"] == "in_progress":
        time.sleep(0.1)


wait_up()
video_latency(0)  # warm up
idle = p50("idle")
run_id = admin_run("distillations", {"plan": {"remove": ["mid"]},
                                     "config": {"steps": 100000, "warmup_steps": 1, "batch": frames,
                                                "loader_threads": 1, "checkpoint_every": 0}})
p50("during a distillation", idle, ("distillations", run_id))
stop("distillations", run_id)
# an analysis stops only between its models, so each of them is kept short (one prompt, two steps)
run_id = admin_run("analyses", {"prompts": 1, "steps": 2})
p50("during an analysis", idle, ("analyses", run_id))
stop("analyses", run_id)
PY
    kill -TERM $pid
    wait $pid || true
    pid=
done
