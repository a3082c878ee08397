"""Writes model test cases for the C engine: deterministic inputs and the reference's outputs
for each component of a weights file.

Usage: make_model_cases.py --weights W.safetensors --out OUT.safetensors
                           [--frames T] [--size HxW] [--seed S] [--steps S] [--guidance G]
                           [--skip-ae] [--guide GUIDE.safetensors]

--size is the latent size (default 16x16), --frames the video length (default 4). Outputs are
computed in float64 from the file's float32 weights and stored as float32. Components absent
from the weights file are skipped, and so is the autoencoder with --skip-ae (a pruned student's
is its teacher's). Tensors written (N = 2 videos, P prompts, L tokens):

  text.ids (P, L) int32        tokenizer output for the prompts in the metadata
  text.out (P, L, D)           text encoder output for text.ids
  ae.enc.in (2, 3, H, W)       -> ae.enc.out (2, latent, h, w)   (H = h * AE downscale)
  ae.dec.in (2, latent, h, w)  -> ae.dec.out (2, 3, H, W)
  unet.x (N, T, in, h, w), unet.t (N) float32, unet.ctx (N, L, D) -> unet.out (N, T, out, h, w)
  sample.noise (N, T, out, h, w), sample.cond (N, T, in - out, h, w), sample.ctx (2N, L, D)
      -> sample.ddim.out, sample.euler.out (N, T, out, h, w): final latents;
      sample.ddim_rescaled.out the same DDIM run with the guidance rescale of the metadata;
      sample.ddim_eta.out the same DDIM run with the metadata's eta and noise_seed (fresh noise);
      with --guide, sample.ddim_guided.out the same DDIM run moving away from the guide's UNet
      (fed the conditional rows) by the metadata's guide_scale

sample.cond holds the condition latent and the mask: video 0 is image-to-video (one latent
repeated over T, mask 1), video 1 text-to-video (zeros). sample.ctx rows 0..N-1 are
conditional, rows N..2N-1 unconditional. __metadata__["vdmini.cases"] is JSON with "prompts",
"unknown_words" (per prompt), "frames", "latent_size", "image_size", "seed" and
"sample": {"steps", "guidance", "guidance_rescale", "guide_scale", "eta", "noise_seed", "timesteps"}.
"""

import argparse
import json

import torch

import vdmini_ref as ref
from safetensors_io import write_safetensors

VIDEOS = 2
GUIDANCE_RESCALE = 0.7
GUIDE_SCALE = 1.5
ETA = 1.0
NOISE_SEED = 77


def test_prompts(vocab, max_tokens):
    """Prompts that exercise every tokenizer rule, built partly from the model's vocabulary."""
    words = [w for w in vocab[2:] if w.isalpha()] or ["a"]
    known = " ".join(words[:5])
    return [
        known,
        "  " + known.upper().replace(" ", ", ") + "!  ",
        f"The {words[0].capitalize()} zqxj-wug 42 {words[-1]}3d frobnicated... {words[0]}",
        "",
        " ".join(words[i % len(words)] for i in range(max_tokens + 5)),
        "Caf\u00e9 na\u00efve \u212aelvin stra\u00dfe",
    ]


def parse_size(text):
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="model .safetensors file")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=parse_size, default=(16, 16), help="latent HxW")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--skip-ae", action="store_true", help="no autoencoder cases")
    parser.add_argument("--guide", help="a guide model's weights: adds the guided DDIM case")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = ref.load_model(args.weights, attention_impl="manual", dtype=torch.float64)
    frames, (height, width) = args.frames, args.size
    tensors = {}
    cases = {"frames": frames, "latent_size": [height, width], "seed": args.seed}

    def store(name, value):
        tensors[name] = value.float().numpy() if value.is_floating_point() else value.numpy()

    def f32_input(*shape):
        return torch.randn(shape).float()

    if model.text is not None:
        prompts = test_prompts(model.text.vocab, model.text.max_tokens)
        tokenized = [model.text.tokenize(p) for p in prompts]
        ids = torch.tensor([t[0] for t in tokenized], dtype=torch.int32)
        cases["prompts"] = prompts
        cases["unknown_words"] = [t[1] for t in tokenized]
        store("text.ids", ids)
        store("text.out", model.text.encode(ids))

    if model.ae is not None and not args.skip_ae:
        factor = model.ae.downscale
        cases["image_size"] = [height * factor, width * factor]
        images = (torch.rand(VIDEOS, 3, height * factor, width * factor) * 2 - 1).float()
        store("ae.enc.in", images)
        store("ae.enc.out", model.ae.encode(images.double()))
        latents = f32_input(VIDEOS, model.config["ae"]["latent_channels"], height, width)
        store("ae.dec.in", latents)
        store("ae.dec.out", model.ae.decode(latents.double()))

    if model.unet is not None:
        unet_cfg = model.config["unet"]
        n_in, n_out = unet_cfg["in_channels"], unet_cfg["out_channels"]
        tokens = model.text.max_tokens if model.text is not None else 16
        context_dim = unet_cfg["context_dim"]

        x = f32_input(VIDEOS, frames, n_in, height, width)
        t = torch.tensor([999.0, 250.0][:VIDEOS], dtype=torch.float32)
        context = f32_input(VIDEOS, tokens, context_dim)
        store("unet.x", x)
        store("unet.t", t)
        store("unet.ctx", context)
        store("unet.out", model.unet(x.double(), t.double(), context.double()))

        noise = f32_input(VIDEOS, frames, n_out, height, width)
        cond = torch.zeros(VIDEOS, frames, n_in - n_out, height, width)
        cond[0, :, : n_in - n_out - 1] = f32_input(1, 1, n_in - n_out - 1, height, width)
        cond[0, :, n_in - n_out - 1] = 1.0
        sample_context = f32_input(2 * VIDEOS, tokens, context_dim)
        store("sample.noise", noise)
        store("sample.cond", cond)
        store("sample.ctx", sample_context)
        for sampler_name, sampler in (("ddim", ref.sample_ddim), ("euler", ref.sample_euler)):
            final = sampler(model.unet, model.schedule, noise.double(), cond.double(),
                            sample_context.double(), args.steps, args.guidance)
            store(f"sample.{sampler_name}.out", final)
        final = ref.sample_ddim(model.unet, model.schedule, noise.double(), cond.double(),
                                sample_context.double(), args.steps, args.guidance, GUIDANCE_RESCALE)
        store("sample.ddim_rescaled.out", final)
        final = ref.sample_ddim(model.unet, model.schedule, noise.double(), cond.double(),
                                sample_context.double(), args.steps, args.guidance, eta=ETA, noise_seed=NOISE_SEED)
        store("sample.ddim_eta.out", final)
        if args.guide:
            guide = ref.load_model(args.guide, attention_impl="manual", dtype=torch.float64)
            final = ref.sample_ddim(model.unet, model.schedule, noise.double(), cond.double(),
                                    sample_context.double(), args.steps, args.guidance, 0.0, guide.unet,
                                    GUIDE_SCALE)
            store("sample.ddim_guided.out", final)
        cases["sample"] = {"steps": args.steps, "guidance": args.guidance, "guidance_rescale": GUIDANCE_RESCALE,
                           "guide_scale": GUIDE_SCALE, "eta": ETA, "noise_seed": NOISE_SEED,
                           "timesteps": model.schedule.timesteps(args.steps)}

    write_safetensors(args.out, tensors, {"vdmini.cases": json.dumps(cases)})
    print(f"{args.out}: {', '.join(tensors)}")


if __name__ == "__main__":
    main()
