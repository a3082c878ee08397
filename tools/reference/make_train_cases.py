"""Writes training test cases for the C engine: a batch of images, the autoencoder's
reconstruction loss mean((decode(encode(x)) - x)^2) and the gradient of that loss for every
autoencoder parameter, computed by PyTorch autograd in float64 from the file's float32 weights.

Usage: make_train_cases.py --weights W.safetensors --out OUT.safetensors [--batch 2] [--size 32]
                           [--seed 0]

Tensors written: "ae.train.in" (B, 3, S, S) float32 images in [-1, 1]; "ae.train.loss" (1,);
"grad.<parameter name>" for every ae.* parameter.
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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = ref.load_model(args.weights, dtype=torch.float64)
    if model.ae is None:
        raise SystemExit(f"{args.weights}: no autoencoder")
    params = {name: w for name, w in model.ae.weights.items() if name.startswith("ae.")}
    for w in params.values():
        w.requires_grad_(True)
    images = (torch.rand(args.batch, 3, args.size, args.size) * 2 - 1).float()
    x = images.double()
    loss = ((model.ae.decode(model.ae.encode(x)) - x) ** 2).mean()
    loss.backward()
    tensors = {"ae.train.in": images.numpy(), "ae.train.loss": loss.detach().float().reshape(1).numpy()}
    for name, w in params.items():
        tensors["grad." + name] = w.grad.float().numpy()
    write_safetensors(args.out, tensors, {})
    print(f"{args.out}: loss {loss.item():.6f}, {len(params)} parameter gradients")


if __name__ == "__main__":
    main()
