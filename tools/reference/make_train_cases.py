"""Writes training test cases for the C engine, computed by PyTorch autograd in float64 from the
file's float32 weights: for the autoencoder, a batch of images, the reconstruction loss
mean((decode(encode(x)) - x)^2) and its gradient for every autoencoder parameter; for the
denoiser (text encoder and UNet), a batch of prompts, UNet inputs, timesteps and v targets, the
v-prediction loss mean(weight (unet(x, t, text(ids)) - v)^2), weighted as the training's
object_loss_weight does (1 on most values, more on some), and its gradient for every text and UNet
parameter.

Usage: make_train_cases.py --weights W.safetensors --out OUT.safetensors [--batch 2] [--size 32]
                           [--frames 3] [--latent 8] [--seed 0] [--skip-ae]

Tensors written, for the components the weights have (the autoencoder's not with --skip-ae):
  ae.train.in (B, 3, S, S) float32 images in [-1, 1]; ae.train.loss (1,)
  unet.train.ids (2, L) int32; unet.train.x (2, F, in_channels, s, s); unet.train.t (2,);
  unet.train.v (2, F, out_channels, s, s); unet.train.weight (2, F, out_channels, s, s);
  unet.train.loss (1,)
  grad.<parameter name> for every ae.*, text.* and unet.* parameter
"""

import argparse

import torch

import vdmini_ref as ref
from safetensors_io import write_safetensors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--frames", type=int, default=3, help="frames of the denoiser case")
    parser.add_argument("--latent", type=int, default=8, help="latent side of the denoiser case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ae", action="store_true", help="no autoencoder case")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = ref.load_model(args.weights, dtype=torch.float64)
    has_denoiser = model.text is not None and model.unet is not None
    has_ae = model.ae is not None and not args.skip_ae
    if not has_ae and not has_denoiser:
        raise SystemExit(f"{args.weights}: neither an autoencoder nor a text encoder and UNet")
    tensors = {}
    if has_ae:
        tensors.update(autoencoder_case(model, args))
    if has_denoiser:
        tensors.update(denoiser_case(model, args))
    write_safetensors(args.out, tensors, {})


def gradients_of(model, prefixes):
    params = {name: w for name, w in model.weights.items() if name.startswith(prefixes)}
    for w in params.values():
        w.requires_grad_(True)
    return params


def autoencoder_case(model, args):
    params = gradients_of(model.ae, ("ae.",))
    images = (torch.rand(args.batch, 3, args.size, args.size) * 2 - 1).float()
    x = images.double()
    loss = ((model.ae.decode(model.ae.encode(x)) - x) ** 2).mean()
    loss.backward()
    tensors = {"ae.train.in": images.numpy(), "ae.train.loss": loss.detach().float().reshape(1).numpy()}
    for name, w in params.items():
        tensors["grad." + name] = w.grad.float().numpy()
    print(f"{args.out}: autoencoder loss {loss.item():.6f}, {len(params)} parameter gradients")
    return tensors


def denoiser_case(model, args):
    params = gradients_of(model.unet, ("text.", "unet."))
    cfg = model.unet.cfg
    # two prompts: known words, and known words with an unknown one among them
    words = model.text.vocab[2:]
    prompts = [" ".join(words[:4]), " ".join(words[4:6] + ["unheardof"] + words[6:8])]
    ids = torch.tensor([model.text.tokenize(p)[0] for p in prompts], dtype=torch.int32)
    n, side = len(prompts), args.latent
    x = torch.randn(n, args.frames, cfg["in_channels"], side, side).float()
    t = torch.randint(0, model.schedule.train_steps, (n,)).float()
    v = torch.randn(n, args.frames, cfg["out_channels"], side, side).float()
    weight = (1 + 3 * (torch.rand(v.shape) < 0.3)).float()
    pred = model.unet(x.double(), t.double(), model.text.encode(ids))
    loss = (weight.double() * (pred - v.double()) ** 2).mean()
    loss.backward()
    tensors = {"unet.train.ids": ids.numpy(), "unet.train.x": x.numpy(), "unet.train.t": t.numpy(),
               "unet.train.v": v.numpy(), "unet.train.weight": weight.numpy(),
               "unet.train.loss": loss.detach().float().reshape(1).numpy()}
    for name, w in params.items():
        tensors["grad." + name] = w.grad.float().numpy()
    print(f"{args.out}: denoiser loss {loss.item():.6f}, {len(params)} parameter gradients")
    return tensors


if __name__ == "__main__":
    main()
