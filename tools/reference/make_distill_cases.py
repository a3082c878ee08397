"""Writes a distillation test case for the C engine (engine/distill.h), computed by PyTorch autograd
in float64 from the files' float32 weights: a teacher, a student pruned from it, a batch of
prompts, UNet inputs, timesteps, v targets, the task term's loss weights (1 on most values, more
on some, as the training's object_loss_weight gives), the MCA's re-noising timesteps and noise,
and random discriminator heads; the loss terms task, ICD, MCA and the discriminator's hinge loss, the
gradient of task + lambda_icd ICD + lambda_mca MCA for every student parameter, and the gradient
of the hinge loss for the heads.

Usage: make_distill_cases.py --teacher T.safetensors --student S.safetensors --out OUT.safetensors
                             [--frames 3] [--latent 8] [--lambda-icd 1] [--lambda-mca 1] [--seed 0]

Tensors written:
  distill.ids (2, L) int32; distill.x (2, F, in_channels, s, s); distill.t (2,); distill.v,
  distill.weight, distill.eps (2, F, out_channels, s, s); distill.t2 (2,); distill.heads (the heads' parameters,
  flat, in distill.h's layout); distill.terms (4,): task, icd, mca, disc; distill.lambdas (2,);
  grad.<parameter name> for every student text.* and unet.* parameter; grad.heads (flat);
  grad.heads_scale (1,): the norm of the heads' gradients of the real and the fake side together;
  with --guidance, distill.guided (2,): G and A
"""

import argparse
import math

import torch
import torch.nn.functional as F

import vdmini_ref as ref
from safetensors_io import write_safetensors


def stage_outputs(unet, x, t, context, stop=None):
    """The UNet's stage outputs in plan order (the first stop stages when stop is given)."""
    outputs = []
    unet.forward(x, t, context, outputs=outputs, stop=stop)
    return outputs


def last_block(plan, kind, level):
    found = None
    for i, step in enumerate(plan):
        if step.kind == "block" and step.name.startswith(f"{kind}.{level}."):
            found = i
    return found


def icd_pairs(student_plan, teacher_plan, levels):
    """(student stage, teacher stage) of every level's last down block and last up block that
    both models have with the same output channels."""
    pairs = []
    for kind in ("down", "up"):
        for level in range(levels):
            s, t = last_block(student_plan, kind, level), last_block(teacher_plan, kind, level)
            if s is not None and t is not None and student_plan[s].co == teacher_plan[t].co:
                pairs.append((s, t))
    return pairs


def backbone(plan):
    """The encoder half's stage count and the stages whose outputs feed the heads."""
    stop = 0
    while stop < len(plan) and (plan[stop].kind in ("conv_in", "downsample") or
                                (plan[stop].kind == "block" and plan[stop].name.startswith("down."))):
        stop += 1
    features = [i for i in range(stop) if i + 1 == stop or plan[i + 1].kind == "downsample"]
    return stop, features


def random_heads(channels, generator):
    """Per level: the spatial head's conv (C, C, 1, 1), bias, conv (1, C, 1, 1), bias; the temporal
    head's conv (C, C, 3), bias, linear (1, C), bias. Weights normal / sqrt(fan_in), biases small."""
    heads = []
    for c in channels:
        shapes = [((c, c, 1, 1), c), ((c,), 0), ((1, c, 1, 1), c), ((1,), 0),
                  ((c, c, 3), 3 * c), ((c,), 0), ((1, c), c), ((1,), 0)]
        level = []
        for shape, fan_in in shapes:
            values = torch.randn(shape, generator=generator, dtype=torch.float64)
            level.append(values / math.sqrt(fan_in) if fan_in else values * 0.1)
        heads.append(level)
    return heads


def discriminate(unet, heads, feature_stages, stop, x, t, context, frames):
    """D per clip: the mean of every head's per-frame logit over frames, heads and levels."""
    outputs = stage_outputs(unet, x, t, context, stop)
    n = x.shape[0]
    logits = 0
    for (w1, b1, w2, b2, tw1, tb1, tw2, tb2), stage in zip(heads, feature_stages):
        f = outputs[stage]  # (N*T, C, H, W)
        spatial = ref.conv2d(ref.silu(ref.conv2d(f, w1, b1)), w2, b2).mean(dim=(1, 2, 3))
        pooled = f.mean(dim=(2, 3)).reshape(n, frames, -1, 1)
        temporal = ref.linear(ref.silu(ref.temporal_conv(pooled, tw1, tb1)).reshape(n * frames, -1), tw2, tb2)
        logits = logits + spatial + temporal.reshape(-1)
    return logits.reshape(n, frames).sum(dim=1) / (2 * len(heads) * frames)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--lambda-icd", type=float, default=1.0)
    parser.add_argument("--lambda-mca", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=0.0)
    parser.add_argument("--guide")
    parser.add_argument("--guide-scale", type=float, default=0.0)
    args = parser.parse_args()
    if args.guide_scale > 0 and not args.guide:
        parser.error("--guide-scale needs --guide")

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    teacher = ref.load_model(args.teacher, dtype=torch.float64)
    student = ref.load_model(args.student, dtype=torch.float64)
    params = {name: w for name, w in student.unet.weights.items() if name.startswith(("text.", "unet."))}
    for w in params.values():
        w.requires_grad_(True)
    cfg, frames, side = student.unet.cfg, args.frames, args.latent
    lc = cfg["out_channels"]

    words = student.text.vocab[2:]
    prompts = [" ".join(words[:4]), " ".join(words[4:7])]
    n = len(prompts)
    ids = torch.tensor([student.text.tokenize(p)[0] for p in prompts], dtype=torch.int32)
    x = torch.randn(n, frames, cfg["in_channels"], side, side).float()
    t = torch.randint(0, student.schedule.train_steps, (n,)).float()
    v = torch.randn(n, frames, lc, side, side).float()
    weight = (1 + 3 * (torch.rand(v.shape) < 0.3)).float()
    t2 = torch.randint(0, student.schedule.train_steps, (n,)).float()
    eps = torch.randn(n, frames, lc, side, side).float()

    xd, td, vd, epsd = x.double(), t.double(), v.double(), eps.double()
    context_s, context_t = student.text.encode(ids), teacher.text.encode(ids)
    out_s = stage_outputs(student.unet, xd, td, context_s)
    with torch.no_grad():
        out_t = stage_outputs(teacher.unet, xd, td, context_t)
    pred_s = out_s[-1].reshape(vd.shape)
    pred_t = out_t[-1].reshape(vd.shape)
    target = vd
    if args.guidance > 1:  # the teacher's guided prediction is both the task's target and MCA's real side
        empty = torch.tensor([teacher.text.tokenize("")[0]] * n, dtype=torch.int32)
        with torch.no_grad():
            v_u = stage_outputs(teacher.unet, xd, td, teacher.text.encode(empty))[-1].reshape(vd.shape)
            target = v_u + args.guidance * (pred_t - v_u)
            if args.guide_scale > 0:
                guide = ref.load_model(args.guide, dtype=torch.float64)
                v_guide = stage_outputs(guide.unet, xd, td, guide.text.encode(ids))[-1].reshape(vd.shape)
                target = target + args.guide_scale * (pred_t - v_guide)
        pred_t = target
    task = (weight.double() * (pred_s - target) ** 2).mean()
    pairs = icd_pairs(student.unet.plan, teacher.unet.plan, len(cfg["channels"]))
    icd = sum(((out_s[s] - out_t[k]) ** 2).mean() for s, k in pairs) / len(pairs)

    # MCA: both predictions' x0, re-noised to t2 with eps, judged by the heads on the teacher's encoder half
    abar = teacher.schedule.alphas_cumprod
    a = torch.tensor([math.sqrt(abar[int(k)]) for k in t], dtype=torch.float64).reshape(n, 1, 1, 1, 1)
    b = torch.tensor([math.sqrt(1 - abar[int(k)]) for k in t], dtype=torch.float64).reshape(n, 1, 1, 1, 1)
    a2 = torch.tensor([math.sqrt(abar[int(k)]) for k in t2], dtype=torch.float64).reshape(n, 1, 1, 1, 1)
    b2 = torch.tensor([math.sqrt(1 - abar[int(k)]) for k in t2], dtype=torch.float64).reshape(n, 1, 1, 1, 1)
    z_t, cond = xd[:, :, :lc], xd[:, :, lc:]
    real = torch.cat([a2 * (a * z_t - b * pred_t) + b2 * epsd, cond], dim=2)
    fake = torch.cat([a2 * (a * z_t - b * pred_s) + b2 * epsd, cond], dim=2)
    stop, feature_stages = backbone(teacher.unet.plan)
    channels = [teacher.unet.plan[i].co for i in feature_stages]
    heads = random_heads(channels, generator)
    for level in heads:
        for w in level:
            w.requires_grad_(True)
    d_real = discriminate(teacher.unet, heads, feature_stages, stop, real, t2.double(), context_t, frames)
    d_fake = discriminate(teacher.unet, heads, feature_stages, stop, fake, t2.double(), context_t, frames)
    disc = F.relu(1 - d_real).mean() + F.relu(1 + d_fake.detach()).mean()
    mca = -d_fake.mean()

    loss = task + args.lambda_icd * icd + args.lambda_mca * mca
    head_params = [w for level in heads for w in level]
    student_grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    # the hinge loss's heads gradient: the fake side sees the student's output as a constant
    d_fake_heads = discriminate(teacher.unet, heads, feature_stages, stop, fake.detach(), t2.double(), context_t, frames)
    real_part, fake_part = F.relu(1 - d_real).mean(), F.relu(1 + d_fake_heads).mean()
    head_grads = torch.autograd.grad(real_part + fake_part, head_params, retain_graph=True)
    # the two sides' gradients nearly cancel when teacher and student agree, so float32 can only
    # be asked to match the sum to a fraction of the sides' size, which grad.heads_scale gives
    side_norms = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(part, head_params, retain_graph=True)]).norm()
                  for part in (real_part, fake_part)]
    heads_scale = torch.stack(side_norms).norm()

    tensors = {"distill.ids": ids.numpy(), "distill.x": x.numpy(), "distill.t": t.numpy(), "distill.v": v.numpy(),
               "distill.weight": weight.numpy(),
               "distill.t2": t2.numpy(), "distill.eps": eps.numpy(),
               "distill.heads": torch.cat([w.detach().reshape(-1) for w in head_params]).float().numpy(),
               "distill.terms": torch.stack([task, icd, mca, disc]).detach().float().numpy(),
               "distill.lambdas": torch.tensor([args.lambda_icd, args.lambda_mca]).float().numpy(),
               "grad.heads": torch.cat([g.reshape(-1) for g in head_grads]).float().numpy(),
               "grad.heads_scale": heads_scale.reshape(1).float().numpy()}
    if args.guidance > 1:
        tensors["distill.guided"] = torch.tensor([args.guidance, args.guide_scale]).float().numpy()
    for (name, w), g in zip(params.items(), student_grads):
        tensors["grad." + name] = (g if g is not None else torch.zeros_like(w)).float().numpy()
    write_safetensors(args.out, tensors, {})
    print(f"{args.out}: {'guided target, ' if args.guidance > 1 else ''}task {task.item():.6f} icd {icd.item():.6f} mca {mca.item():.6f} disc {disc.item():.6f}, "
          f"{len(pairs)} ICD features, {len(heads)} head levels, {len(params)} parameter gradients")


if __name__ == "__main__":
    main()
