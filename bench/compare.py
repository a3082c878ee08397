"""Reads benchmark JSON lines (from bench_step and tools/reference/bench_torch.py) on standard
input, all for one model, and prints a Markdown table per (device, batch): milliseconds per
denoiser step of each implementation and its speed relative to the vdmini engine (a ratio above
1 means vdmini is faster)."""

import json
import sys


def main():
    rows = [json.loads(line) for line in sys.stdin if line.startswith("{")]
    groups = {}
    name = next((r["preset"] for r in rows if "preset" in r), "?")
    for r in rows:
        key = (r.get("device", "?").split(":")[0], name, r["batch"])
        label = r["impl"] if r["impl"] == "vdmini" else f"torch {r.get('mode', 'eager')}"
        groups.setdefault(key, {})[label] = r["ms_per_step"]
    print("| device | model | batch | implementation | ms per step | torch time / vdmini time |")
    print("|---|---|---|---|---|---|")
    for (device, name, batch), impls in sorted(groups.items()):
        ours = impls.get("vdmini")
        for label, ms in sorted(impls.items()):
            ratio = f"{ms / ours:.2f}" if ours and label != "vdmini" else ""
            print(f"| {device} | {name} | {batch} | {label} | {ms:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
