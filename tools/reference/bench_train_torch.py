"""Speed baseline: milliseconds per training step of the denoiser (text encoder and UNet) in the
PyTorch reference, the number a user training with plain PyTorch would get, for comparison with
the C engine's bench/bench_train.

Usage: bench_train_torch.py --config CONFIG.json [--device cuda|cpu] [--dtype bf16|fp32]
                            [--mode eager|compile ...] [--clips N ...] [--frames T]
                            [--attention manual|sdpa] [--warmup W] [--repeats R] [--threads K]
                            [--seed S]

CONFIG.json is a vdmini config (`bench_step --print-config tiny`); the text encoder and UNet get
random weights (fp32). One step is what bench_train times: zero the gradients, encode random
token ids, run the UNet over random inputs x (N, T, in_channels, h, w) at random timesteps, the
v-prediction loss mean((unet - v)^2) against random targets v, backward, clip the global
gradient norm to 1 and one torch.optim.AdamW step (lr 4e-4, weight decay 0.01, torch's default
implementation). bf16 runs the forward under torch.autocast on CUDA (matrix products in bf16,
fp32 weights, gradients and optimizer state). compile wraps the forward and loss in
torch.compile (static shapes) where it exists, and is skipped with a note where it does not.
Attention defaults to SDPA where torch has it. CPU runs use 2 threads unless --threads says
otherwise. Prints one JSON line per (mode, clips) with the median over the repeats.
"""

import argparse
import contextlib
import json

import torch

import vdmini_ref as ref
from bench_torch import add_common_arguments, time_step_ms

LEARNING_RATE = 4e-4
WEIGHT_DECAY = 0.01
CLIP_NORM = 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--clips", type=int, nargs="+", default=[1], help="clips per batch (N)")
    args = parser.parse_args()

    with open(args.config) as f:
        config = json.load(f)
    text_cfg, unet_cfg = config["text"], config["unet"]
    frames = args.frames or unet_cfg["frames"]
    height, width = unet_cfg["latent_size"]
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    if args.dtype == "bf16" and args.device != "cuda":
        parser.error("bf16 is measured on cuda only")

    weights = ref.init_weights({"text": text_cfg, "unet": unet_cfg}, args.seed, device=args.device)
    params = list(weights.values())
    for w in params:
        w.requires_grad_(True)
    text = ref.TextEncoder(text_cfg, weights, args.attention)
    unet = ref.UNet3D(unet_cfg, weights, args.attention)
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    gpu_name = torch.cuda.get_device_name() if args.device == "cuda" else None

    def loss_of(ids, x, t, v):
        return ((unet.forward(x, t, text.encode(ids)) - v) ** 2).mean()

    for mode in args.mode:
        if mode == "compile" and not hasattr(torch, "compile"):
            print(json.dumps({"impl": "torch", "what": "train", "mode": mode,
                              "skipped": f"no torch.compile in torch {torch.__version__}"}), flush=True)
            continue
        # static shapes: each clips count gets its own compiled graph
        forward = torch.compile(loss_of, dynamic=False) if mode == "compile" else loss_of
        for clips in args.clips:
            generator = torch.Generator().manual_seed(args.seed)
            ids = torch.randint(0, len(text_cfg["vocab"]), (clips, text_cfg["max_tokens"]),
                                generator=generator).to(args.device)
            x = torch.randn(clips, frames, unet_cfg["in_channels"], height, width,
                            generator=generator).to(args.device)
            t = torch.randint(0, config["diffusion"]["train_steps"], (clips,),
                              generator=generator).float().to(args.device)
            v = torch.randn(clips, frames, unet_cfg["out_channels"], height, width,
                            generator=generator).to(args.device)

            def step():
                optimizer.zero_grad(set_to_none=True)
                precision = (torch.autocast("cuda", dtype=torch.bfloat16)
                             if args.dtype == "bf16" else contextlib.nullcontext())
                with precision:
                    loss = forward(ids, x, t, v)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
                optimizer.step()
                return loss

            ms = time_step_ms(step, args.device, args.warmup, args.repeats)
            print(json.dumps({
                "impl": "torch", "what": "train", "mode": mode, "clips": clips, "frames": frames,
                "latent": [height, width], "dtype": args.dtype, "attention": args.attention,
                "params": sum(w.numel() for w in params), "ms_per_step": round(ms, 3),
                "loss": round(step().item(), 6), "device": args.device, "gpu_name": gpu_name,
                "torch": torch.__version__,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_conv": torch.backends.cudnn.allow_tf32,
            }), flush=True)


if __name__ == "__main__":
    main()
