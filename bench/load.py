"""Closed-loop load on a running vdminid: N clients, each posting a video, waiting for it to
finish (polling GET /v1/videos/{id}) and posting the next, for a fixed number of videos per
client. Prints one JSON line: videos per minute, latency percentiles (submit to completed), and
the settings.

Usage: load.py --url http://127.0.0.1:8080 [--clients 8] [--videos-per-client 3] [--frames 16]
               [--size 128x128] [--steps 25] [--key KEY] [--label TEXT]
"""

import argparse
import json
import statistics
import threading
import time
import urllib.request


def call(url, method="GET", payload=None, key=None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read())


def client(args, index, latencies, failures):
    fps = 8
    for n in range(args.videos_per_client):
        payload = {"prompt": f"a red circle moves left {index} {n}", "size": args.size,
                   "seconds": str(args.frames / fps), "fps": fps, "num_inference_steps": args.steps,
                   "seed": index * 1000 + n}
        start = time.monotonic()
        video = call(f"{args.url}/v1/videos", "POST", payload, args.key)
        while video["status"] in ("queued", "in_progress"):
            time.sleep(0.005)
            video = call(f"{args.url}/v1/videos/{video['id']}", key=args.key)
        if video["status"] == "completed":
            latencies.append(time.monotonic() - start)
        else:
            failures.append(video.get("error"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--videos-per-client", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default="128x128")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--key")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    latencies, failures = [], []
    threads = [threading.Thread(target=client, args=(args, i, latencies, failures)) for i in range(args.clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    lat = sorted(latencies)

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else None

    print(json.dumps({"label": args.label, "clients": args.clients, "videos": len(lat), "failed": len(failures),
                      "frames": args.frames, "size": args.size, "steps": args.steps,
                      "seconds": round(elapsed, 2), "videos_per_minute": round(60 * len(lat) / elapsed, 2),
                      "p50_s": round(statistics.median(lat), 3) if lat else None,
                      "p90_s": round(pct(90), 3) if lat else None, "p99_s": round(pct(99), 3) if lat else None}))


if __name__ == "__main__":
    main()
