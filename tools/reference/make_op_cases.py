"""Writes test cases for every backend op (kernels/backend.h) to a safetensors file, for the C
op checker.

Usage: make_op_cases.py OUT.safetensors [--seed S]

__metadata__["vdmini.op_cases"] is a JSON list of {"name", "op", "args"}; the tensors of case
NAME are "NAME/<arg>" with backend.h's parameter names, and the expected result is "NAME/out".
Inputs are float32 (ids int32); expected outputs are computed in float64 from those float32
inputs and stored as float32. For the ops that update an output in place (axpby,
add_broadcast, add_channel_bias) the output's initial value is stored as "NAME/y".

Cases of ops with a backward (all but add, axpby, transpose and timestep_embedding) also hold a
random upstream gradient "NAME/dy" ("NAME/dout" for attention) and the autograd gradients of the
inputs, named as backend.h's backward parameters ("NAME/dx", "NAME/dw", "NAME/db", "NAME/dgamma",
"NAME/dq", "NAME/dtable", ...), computed in float64 and stored as float32.
"""

import argparse
import json
import math

import torch

import vdmini_ref as ref
from safetensors_io import write_safetensors


class CaseWriter:
    """Collects cases: float32 inputs from one seeded generator, float64 expected outputs."""

    def __init__(self, seed):
        self.generator = torch.Generator().manual_seed(seed)
        self.cases = []
        self.tensors = {}
        self.counts = {}

    def normal(self, *shape, scale=1.0, shift=0.0):
        return (torch.randn(shape, generator=self.generator) * scale + shift).float()

    def uniform(self, *shape, low=-1.0, high=1.0):
        return (torch.rand(shape, generator=self.generator) * (high - low) + low).float()

    def gradients(self, fn, inputs, wrt, upstream="dy"):
        """A random upstream gradient for fn(**inputs) and the float64 autograd gradients of the
        inputs named in wrt, as {upstream: ..., "d<name>": ...}."""
        leaves = {k: f64(v).requires_grad_(k in wrt) if v.is_floating_point() else v
                  for k, v in inputs.items()}
        out = fn(**leaves)
        dy = self.normal(*out.shape)
        grads = torch.autograd.grad(out, [leaves[k] for k in wrt], f64(dy))
        result = {upstream: dy}
        result.update({"d" + k: g.float() for k, g in zip(wrt, grads)})
        return result

    def add(self, op, args, inputs, out, grads=None):
        index = self.counts.get(op, 0)
        self.counts[op] = index + 1
        name = f"{op}_{index}"
        self.cases.append({"name": name, "op": op, "args": args})
        for arg, value in {**inputs, **(grads or {})}.items():
            self.tensors[f"{name}/{arg}"] = value.numpy()
        self.tensors[f"{name}/out"] = out.float().numpy()


def f64(x):
    return x.double()


def conv2d_cases(w):
    for B, ci, H, W, co, k, stride in [(2, 3, 7, 5, 4, 3, 1), (1, 5, 9, 8, 6, 3, 2),
                                       (3, 4, 5, 6, 2, 1, 1), (2, 8, 6, 6, 8, 3, 2),
                                       (1, 9, 4, 4, 16, 3, 1)]:
        x, wt, b = w.normal(B, ci, H, W), w.normal(co, ci, k, k, scale=0.3), w.normal(co)
        out = ref.conv2d(f64(x), f64(wt), f64(b), stride)
        grads = w.gradients(lambda x, w, b: ref.conv2d(x, w, b, stride), dict(x=x, w=wt, b=b),
                            ("x", "w", "b"))
        w.add("conv2d", dict(B=B, ci=ci, H=H, W=W, co=co, k=k, stride=stride),
              dict(x=x, w=wt, b=b), out, grads)


def temporal_conv_cases(w):
    for N, T, ci, co, S in [(2, 5, 3, 4, 6), (1, 1, 4, 4, 9), (3, 2, 5, 3, 1), (1, 8, 8, 8, 16)]:
        x, wt, b = w.normal(N, T, ci, S), w.normal(co, ci, 3, scale=0.3), w.normal(co)
        out = ref.temporal_conv(f64(x), f64(wt), f64(b))
        grads = w.gradients(ref.temporal_conv, dict(x=x, w=wt, b=b), ("x", "w", "b"))
        w.add("temporal_conv", dict(N=N, T=T, ci=ci, co=co, S=S), dict(x=x, w=wt, b=b), out,
              grads)


def group_norm_cases(w):
    eps = 1e-5
    for B, C, S, G in [(2, 8, 12, 4), (3, 6, 5, 3), (1, 32, 64, 8), (2, 4, 7, 1), (1, 5, 3, 5)]:
        x = w.normal(B, C, S, scale=2.0, shift=1.5)
        gamma, beta = w.normal(C, scale=0.5, shift=1.0), w.normal(C, scale=0.5)
        out = ref.group_norm(f64(x), f64(gamma), f64(beta), G, eps)
        grads = w.gradients(lambda x, gamma, beta: ref.group_norm(x, gamma, beta, G, eps),
                            dict(x=x, gamma=gamma, beta=beta), ("x", "gamma", "beta"))
        w.add("group_norm", dict(B=B, C=C, S=S, G=G, eps=eps),
              dict(x=x, gamma=gamma, beta=beta), out, grads)


def layer_norm_cases(w):
    eps = 1e-5
    for M, C in [(5, 8), (1, 33), (7, 128)]:
        x = w.normal(M, C, scale=3.0, shift=-2.0)
        gamma, beta = w.normal(C, scale=0.5, shift=1.0), w.normal(C, scale=0.5)
        out = ref.layer_norm(f64(x), f64(gamma), f64(beta), eps)
        grads = w.gradients(lambda x, gamma, beta: ref.layer_norm(x, gamma, beta, eps),
                            dict(x=x, gamma=gamma, beta=beta), ("x", "gamma", "beta"))
        w.add("layer_norm", dict(M=M, C=C, eps=eps), dict(x=x, gamma=gamma, beta=beta), out,
              grads)


def gelu_erfc(x):
    """gelu as x erfc(-x / sqrt 2) / 2: the same function, but its float64 value and gradient
    keep their accuracy in the negative tail, where 1 + erf cancels (at x = -8 the derivative is
    ~4e-14): the expected values of the gelu cases."""
    return 0.5 * x * torch.erfc(-x / math.sqrt(2.0))


def activation_cases(w):
    for op, fn, grad_fn in (("silu", ref.silu, ref.silu), ("gelu", gelu_erfc, gelu_erfc)):
        for n in (1, 37, 1000):
            x = w.uniform(n, low=-10.0, high=10.0)
            w.add(op, dict(n=n), dict(x=x), fn(f64(x)), w.gradients(grad_fn, dict(x=x), ("x",)))


def linear_cases(w):
    for M, n_in, n_out, has_bias in [(3, 5, 7, True), (4, 16, 1, False), (1, 33, 65, True),
                                     (64, 32, 128, True), (9, 12, 10, False)]:
        x, wt = w.normal(M, n_in), w.normal(n_out, n_in, scale=0.3)
        inputs = dict(x=x, w=wt)
        b = None
        if has_bias:
            b = w.normal(n_out)
            inputs["b"] = b
        out = ref.linear(f64(x), f64(wt), None if b is None else f64(b))
        grads = w.gradients(lambda x, w, b=None: ref.linear(x, w, b), inputs, tuple(inputs))
        w.add("linear", {"M": M, "in": n_in, "out": n_out}, inputs, out, grads)


def attention_cases(w):
    for B, Lq, Lk, heads, d, kv_group in [(2, 5, 5, 2, 4, 1), (6, 7, 3, 3, 8, 3),
                                          (4, 1, 9, 1, 16, 2), (3, 16, 16, 4, 32, 1),
                                          (8, 4, 4, 1, 5, 1), (4, 33, 12, 2, 8, 4)]:
        q = w.normal(B, Lq, heads * d, scale=0.7)
        k = w.normal(B // kv_group, Lk, heads * d, scale=0.7)
        v = w.normal(B // kv_group, Lk, heads * d)
        out = ref.attention(f64(q), f64(k), f64(v), heads, kv_group, "manual")
        grads = w.gradients(lambda q, k, v: ref.attention(q, k, v, heads, kv_group, "manual"),
                            dict(q=q, k=k, v=v), ("q", "k", "v"), upstream="dout")
        w.add("attention", dict(B=B, Lq=Lq, Lk=Lk, heads=heads, d=d, kv_group=kv_group),
              dict(q=q, k=k, v=v), out, grads)


def layout_cases(w):
    for B, C, H, W in [(2, 3, 4, 5), (1, 1, 1, 1), (1, 4, 3, 3)]:
        x = w.normal(B, C, H, W)
        w.add("upsample2x", dict(B=B, C=C, H=H, W=W), dict(x=x), ref.upsample2x(f64(x)),
              w.gradients(ref.upsample2x, dict(x=x), ("x",)))
    for A, B, C, D in [(2, 3, 4, 1), (2, 3, 5, 4), (1, 7, 1, 3)]:
        x = w.normal(A, B, C, D)
        w.add("transpose", dict(A=A, B=B, C=C, D=D), dict(x=x), ref.transpose(f64(x)))
    for ca, cb, B, S in [(3, 5, 2, 6), (1, 1, 1, 1), (8, 4, 3, 9)]:
        a, b = w.normal(B, ca, S), w.normal(B, cb, S)
        w.add("concat_channels", dict(ca=ca, cb=cb, B=B, S=S), dict(a=a, b=b),
              ref.concat_channels(f64(a), f64(b)),
              w.gradients(ref.concat_channels, dict(a=a, b=b), ("a", "b")))


def arithmetic_cases(w):
    for n in (1, 17, 1000):
        a, b = w.normal(n), w.normal(n)
        w.add("add", dict(n=n), dict(a=a, b=b), ref.add(f64(a), f64(b)))
    for n, alpha, beta in [(17, 0.75, -1.25), (100, 1.0, 0.0), (1, -2.5, 1.0), (1000, 0.25, 0.5)]:
        x, y = w.normal(n), w.normal(n)
        w.add("axpby", dict(n=n, alpha=alpha, beta=beta), dict(x=x, y=y),
              ref.axpby(f64(x), f64(y), alpha, beta))
    for outer, inner in [(3, 7), (1, 16), (5, 1)]:
        y, x = w.normal(outer, inner), w.normal(inner)
        w.add("add_broadcast", dict(outer=outer, inner=inner), dict(y=y, x=x),
              ref.add_broadcast(f64(y), f64(x)),
              w.gradients(ref.add_broadcast, dict(y=y, x=x), ("x",)))
    for N, T, C, S in [(2, 3, 4, 5), (1, 1, 3, 1), (3, 2, 6, 7)]:
        y, bias = w.normal(N, T, C, S), w.normal(N, C)
        w.add("add_channel_bias", dict(N=N, T=T, C=C, S=S), dict(y=y, bias=bias),
              ref.add_channel_bias(f64(y), f64(bias)),
              w.gradients(ref.add_channel_bias, dict(y=y, bias=bias), ("bias",)))


def embedding_cases(w):
    for values, dim in [([0.0, 1.0, 10.5, 500.0, 999.0], 8), ([3.0, 250.0, 42.25], 32),
                        ([0.0, 1.0, 2.0, 3.0], 2), ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 64)]:
        t = torch.tensor(values, dtype=torch.float32)
        w.add("timestep_embedding", dict(n=len(values), dim=dim), dict(t=t),
              ref.timestep_embedding(f64(t), dim))
    for n, dim, rows in [(6, 5, 10), (1, 16, 3), (12, 8, 4)]:
        ids = torch.randint(0, rows, (n,), generator=w.generator, dtype=torch.int32)
        table = w.normal(rows, dim)
        w.add("embedding", dict(n=n, dim=dim, rows=rows), dict(ids=ids, table=table),
              ref.embedding(ids, f64(table)),
              w.gradients(ref.embedding, dict(ids=ids, table=table), ("table",)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output .safetensors file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    writer = CaseWriter(args.seed)
    for make_cases in (conv2d_cases, temporal_conv_cases, group_norm_cases, layer_norm_cases,
                       activation_cases, linear_cases, attention_cases, layout_cases,
                       arithmetic_cases, embedding_cases):
        make_cases(writer)
    write_safetensors(args.out, writer.tensors,
                      {"vdmini.op_cases": json.dumps(writer.cases), "vdmini.seed": str(args.seed)})
    print(f"{args.out}: {len(writer.cases)} cases, {len(writer.tensors)} tensors")


if __name__ == "__main__":
    main()
