"""Reads benchmark JSON lines (from bench_step and tools/reference/bench_torch.py, and from
bench_train and tools/reference/bench_train_torch.py) on standard input, all for one model, and
prints a Markdown table per kind of step: per (device, batch) the milliseconds per denoiser step,
per (device, clips) the milliseconds per training step (lines with "what": "train"), of each
implementation and its speed relative to the vdmini engine (a ratio above 1 means vdmini is
faster). Lines that say "skipped" are listed under the tables."""

import json
import sys


def print_table(rows, name, size_key, what):
    groups = {}
    for r in rows:
        key = (r.get("device", "?").split(":")[0], name, r[size_key])
        label = r["impl"] if r["impl"] == "vdmini" else f"torch {r.get('mode', 'eager')}"
        groups.setdefault(key, {})[label] = r["ms_per_step"]
    print(f"| device | model | {size_key} | implementation | ms per {what} | torch time / vdmini time |")
    print("|---|---|---|---|---|---|")
    for (device, name, size), impls in sorted(groups.items()):
        ours = impls.get("vdmini")
        for label, ms in sorted(impls.items()):
            ratio = f"{ms / ours:.2f}" if ours and label != "vdmini" else ""
            print(f"| {device} | {name} | {size} | {label} | {ms:.2f} | {ratio} |")


def main():
    rows = [json.loads(line) for line in sys.stdin if line.startswith("{")]
    skipped = [r for r in rows if "skipped" in r]
    rows = [r for r in rows if "skipped" not in r]
    name = next((r["preset"] for r in rows if "preset" in r), "?")
    steps = [r for r in rows if r.get("what") != "train"]
    train = [r for r in rows if r.get("what") == "train"]
    if steps:
        print_table(steps, name, "batch", "step")
    if steps and train:
        print()
    if train:
        print_table(train, name, "clips", "training step")
    if skipped:
        print()
    for r in skipped:
        print(f"{r['impl']} {r.get('mode', '')} skipped: {r['skipped']}")


if __name__ == "__main__":
    main()
