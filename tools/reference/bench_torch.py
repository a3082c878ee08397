"""Speed baseline: milliseconds per denoiser step of the PyTorch reference UNet, the number a
user running plain PyTorch would get, for comparison with the C engine.

Usage: bench_torch.py --config CONFIG.json [--device cuda|cpu] [--dtype bf16|fp32]
                      [--mode eager|compile|graphs ...] [--batch N ...] [--frames T] [--latent HxW]
                      [--attention manual|sdpa] [--warmup W] [--repeats R] [--threads K]
                      [--seed S]

CONFIG.json is a vdmini config (as in a weights file's __metadata__["vdmini.config"]); the UNet
gets random weights. One step is one UNet forward over N batch rows (with classifier-free
guidance a step of V videos has N = 2V rows). bf16 runs under torch.autocast on CUDA (matrix
products in bf16, fp32 accumulation and storage). Attention defaults to SDPA where torch has it,
else the written-out form; compile uses torch.compile where it exists, graphs torch.compile's
"reduce-overhead" mode, which replays the step as CUDA graphs (as vdmini's recorded forwards do).
CPU runs use 2 threads unless --threads says otherwise. Prints one JSON line per (mode, batch)
with the median over the repeats.
"""

import argparse
import contextlib
import json
import statistics
import time

import torch

import vdmini_ref as ref


def parse_size(text):
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def time_step_ms(step, device, warmup, repeats):
    """Median milliseconds of step() after warm-up, with CUDA events on the GPU."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def add_common_arguments(parser, modes=("eager", "compile")):
    """The options every PyTorch speed baseline takes (this one and bench_train_torch.py)."""
    parser.add_argument("--config", required=True, help="vdmini config JSON file")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--mode", choices=modes, nargs="+", default=["eager"])
    parser.add_argument("--frames", type=int, help="default: the config's unet.frames")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--attention", choices=ref.ATTENTION_IMPLS,
                        default=ref.default_attention_impl())
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--seed", type=int, default=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, ("eager", "compile", "graphs"))
    parser.add_argument("--batch", type=int, nargs="+", default=[2], help="UNet batch rows")
    parser.add_argument("--latent", type=parse_size, help="HxW, default: unet.latent_size")
    args = parser.parse_args()

    with open(args.config) as f:
        config = json.load(f)
    unet_cfg = config["unet"]
    frames = args.frames or unet_cfg["frames"]
    height, width = args.latent or tuple(unet_cfg["latent_size"])
    tokens = config["text"]["max_tokens"] if "text" in config else 16
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    if args.dtype == "bf16" and args.device != "cuda":
        parser.error("bf16 is measured on cuda only")

    attention_impl = args.attention
    weights = ref.init_weights({"unet": unet_cfg}, args.seed, device=args.device)
    unet = ref.UNet3D(unet_cfg, weights, attention_impl)
    gpu_name = torch.cuda.get_device_name() if args.device == "cuda" else None

    for mode in args.mode:
        if mode in ("compile", "graphs") and not hasattr(torch, "compile"):
            print(json.dumps({"impl": "torch", "mode": mode, "skipped": "no torch.compile"}))
            continue
        if mode == "graphs" and args.device != "cuda":
            print(json.dumps({"impl": "torch", "mode": mode, "skipped": "CUDA graphs need cuda"}))
            continue
        forward = (torch.compile(unet.forward, mode="reduce-overhead") if mode == "graphs"
                   else torch.compile(unet.forward) if mode == "compile" else unet.forward)
        for batch in args.batch:
            generator = torch.Generator().manual_seed(args.seed)
            x = torch.randn(batch, frames, unet_cfg["in_channels"], height, width,
                            generator=generator).to(args.device)
            t = torch.randint(0, 1000, (batch,), generator=generator).float().to(args.device)
            context = torch.randn(batch, tokens, unet_cfg["context_dim"],
                                  generator=generator).to(args.device)

            def step():
                precision = (torch.autocast("cuda", dtype=torch.bfloat16)
                             if args.dtype == "bf16" else contextlib.nullcontext())
                with torch.inference_mode(), precision:
                    return forward(x, t, context)

            ms = time_step_ms(step, args.device, args.warmup, args.repeats)
            print(json.dumps({
                "impl": "torch", "mode": mode, "batch": batch, "frames": frames,
                "latent": [height, width], "dtype": args.dtype, "attention": attention_impl,
                "ms_per_step": round(ms, 3), "device": args.device, "gpu_name": gpu_name,
                "torch": torch.__version__,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_conv": torch.backends.cudnn.allow_tf32,
            }), flush=True)


if __name__ == "__main__":
    main()
