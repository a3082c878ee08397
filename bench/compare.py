"""Reads benchmark JSON lines (from bench_step and tools/reference/bench_torch.py, and from
bench_train and tools/reference/bench_train_torch.py) on standard input, all for one model, and
prints a Markdown table per kind of step: per (device, batch) the milliseconds per denoiser step,
per (device, clips) the milliseconds per training step (lines with "what": "train"), of each
implementation and its time over the vdmini engine's, op by op and, where the run has one, with
its recorded forward (a ratio above 1 means vdmini is faster). Lines that say "skipped" are
listed under the tables."""

import json
import sys


def label_of(r):
    if r["impl"] == "vdmini":
        return "vdmini recorded" if r.get("recorded") else "vdmini"
    return f"torch {r.get('mode', 'eager')}"


def print_table(rows, name, size_key, what):
    groups = {}
    for r in rows:
        key = (r.get("device", "?").split(":")[0], name, r[size_key])
        groups.setdefault(key, {})[label_of(r)] = r["ms_per_step"]
    print(f"| device | model | {size_key} | implementation | ms per {what} | time / vdmini's | "
          f"time / vdmini recorded's |")
    print("|---|---|---|---|---|---|---|")
    for (device, name, size), impls in sorted(groups.items()):
        ours, recorded = impls.get("vdmini"), impls.get("vdmini recorded")
        for label, ms in sorted(impls.items()):
            ratio = f"{ms / ours:.2f}" if ours and label != "vdmini" else ""
            ratio_recorded = f"{ms / recorded:.2f}" if recorded and label != "vdmini recorded" else ""
            print(f"| {device} | {name} | {size} | {label} | {ms:.2f} | {ratio} | {ratio_recorded} |")


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
