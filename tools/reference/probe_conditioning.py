#!/usr/bin/env python3
"""probe_conditioning.py: how much a denoiser's prompt steers what it draws, on the CPU.

    probe_conditioning.py --model TEACHER.safetensors --ae AE.safetensors [--seed N]

Two probes on prompts that differ in one word ("a big red circle moves left on black", ... right,
upward, downward, "stays still", a blue circle, a red square):
- text features: the distance between each prompt's text-encoder output and the first one's,
  per token and in all; a word the model has learnt to tell apart moves the features;
- image-to-video at the top steps: with a first frame holding a red disc in the centre as the
  condition and fixed noise as z_t, the x0 prediction (guidance 7.5) decoded and the red mass's
  centroid followed over the frames: where each motion word sends the disc.
"""
import argparse
import math
import sys

import torch

import vdmini_ref as ref


def red_centroids(frames):
    """frames (T, 3, H, W) in [-1, 1] -> the centroid (x, y) of each frame's red excess."""
    red = (frames[:, 0] - 0.5 * (frames[:, 1] + frames[:, 2])).clamp(min=0)
    H, W = red.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=red.dtype), torch.arange(W, dtype=red.dtype), indexing="ij")
    mass = red.sum((1, 2)) + 1e-6
    return (red * xs).sum((1, 2)) / mass, (red * ys).sum((1, 2)) / mass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ae", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = ref.load_model(a.model)
    ae = ref.load_model(a.ae).ae
    motions = ["moves left", "moves right", "moves upward", "moves downward", "stays still"]
    prompts = [f"a big red circle {m} on black" for m in motions]
    prompts += ["a big blue circle moves left on black", "a big red square moves left on black"]
    ids = []
    for p in prompts:
        tokens, unknown = model.text.tokenize(p)
        if unknown:
            sys.exit(f"{p!r}: words the model does not know: {unknown}")
        ids.append(tokens)
    with torch.no_grad():
        ctx = model.text.encode(torch.tensor(ids + [model.text.tokenize("")[0]]))
    print("text features: distance to the first prompt's (all tokens; the first 8 tokens)")
    for i, p in enumerate(prompts):
        d = (ctx[i] - ctx[0]).norm(dim=-1)
        print(f"  {p:40s} {float(d.norm()):6.2f}  " + " ".join(f"{float(x):4.1f}" for x in d[:8]))

    cfg = model.config["unet"]
    T, (h, w) = cfg["frames"], cfg["latent_size"]
    size = h * ae.downscale
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    image = -torch.ones(1, 3, size, size)
    image[0, 0][(xs - size / 2) ** 2 + (ys - size / 2) ** 2 <= (size / 9) ** 2] = 1.0
    with torch.no_grad():
        latent = ae.encode(image)
    cond = torch.cat([latent.repeat(T, 1, 1, 1), torch.ones(T, 1, h, w)], dim=1)[None]
    noise = torch.randn(1, T, 4, h, w)
    print("image-to-video, x0 at the top steps: the disc's centroid in frames 0 and last, and its travel")
    for t in (model.schedule.train_steps - 1, int(0.9 * model.schedule.train_steps)):
        ab = model.schedule.alpha_bar(t)
        print(f"  t = {t} (sqrt(abar) = {math.sqrt(ab):.3f})")
        for i, m in enumerate(motions):
            with torch.no_grad():
                v = ref.guided_velocity(model.unet.forward, noise, cond, t, torch.stack([ctx[i], ctx[-1]]), 7.5)
                x0 = math.sqrt(ab) * noise - math.sqrt(1 - ab) * v
                cx, cy = red_centroids(ae.decode(x0[0]))
            print(f"    {m:15s} ({float(cx[0]):5.1f}, {float(cy[0]):5.1f}) -> ({float(cx[-1]):5.1f}, {float(cy[-1]):5.1f})"
                  f"  dx {float(cx[-1] - cx[0]):+5.1f}  dy {float(cy[-1] - cy[0]):+5.1f}")


if __name__ == "__main__":
    main()
