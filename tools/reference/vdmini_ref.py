"""PyTorch reference of the vdmini model: the truth for the C engine and the baseline a user
would otherwise run.

It implements docs/architecture.md exactly, as functional code over a dict of weights named as
that document names them: the ops of kernels/backend.h, the autoencoder, the tokenizer and text
encoder, the 3D UNet (named, removable blocks and per-level temporal layers; per-level skip
stacks), the v-prediction schedule and the DDIM and Euler samplers with classifier-free
guidance.

Runs under PyTorch 1.13 (CPU; attention written out, "manual") and PyTorch 2.x (where
F.scaled_dot_product_attention gives the "sdpa" implementation). Layouts follow the engine: a
video latent batch is (N, T, C, H, W) and spatial ops see B = N*T images.

Classifier-free guidance runs one UNet batch of 2N rows: rows 0..N-1 are the conditional
inputs (prompt text), rows N..2N-1 the unconditional ones (empty prompt), in the same video order.
"""

import json
import math
import re
from collections import OrderedDict, namedtuple

import numpy as np
import torch
import torch.nn.functional as F

from safetensors_io import read_safetensors

ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

NORM_EPS = 1e-5
PAD_ID = 0
UNKNOWN_ID = 1
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
ATTENTION_IMPLS = ("manual", "sdpa") if HAS_SDPA else ("manual",)


def default_attention_impl():
    return "sdpa" if HAS_SDPA else "manual"


# ---------------------------------------------------------------------------------------------
# Ops, with the shapes and semantics of kernels/backend.h
# ---------------------------------------------------------------------------------------------

def conv2d(x, w, b, stride=1):
    """x (B, ci, H, W), w (co, ci, k, k), b (co) or None -> (B, co, Ho, Wo); zero padding k/2."""
    return F.conv2d(x, w, b, stride=stride, padding=w.shape[-1] // 2)


def temporal_conv(x, w, b):
    """x (N, T, ci, S), w (co, ci, 3), b (co) or None -> (N, T, co, S);
    y[n,t,o,s] = b[o] + sum_i sum_j w[o,i,j] * x[n,t+j-1,i,s], zero padding over T."""
    N, T, ci, S = x.shape
    columns = x.permute(0, 3, 2, 1).reshape(N * S, ci, T)
    y = F.conv1d(columns, w, b, padding=1)
    return y.reshape(N, S, -1, T).permute(0, 3, 2, 1).contiguous()


def group_norm(x, gamma, beta, groups, eps=NORM_EPS):
    """x (B, C, ...) normalised per image over (C/groups, ...), affine per channel."""
    return F.group_norm(x, groups, gamma, beta, eps)


def layer_norm(x, gamma, beta, eps=NORM_EPS):
    """Normalises the last dimension, affine."""
    return F.layer_norm(x, (x.shape[-1],), gamma, beta, eps)


def silu(x):
    return F.silu(x)


def gelu(x):
    """The exact erf form."""
    return F.gelu(x)


def linear(x, w, b=None):
    """x (..., in), w (out, in), b (out) or None -> (..., out)."""
    return F.linear(x, w, b)


def attention(q, k, v, heads, kv_group=1, impl="manual"):
    """q (B, Lq, heads*d); k, v (B/kv_group, Lk, heads*d) -> (B, Lq, heads*d), no mask.
    Batch entry b attends to key/value entry b // kv_group;
    o[b,i,h] = softmax_j(q[b,i,h] . k[b',j,h] / sqrt(d)) v[b',j,h]."""
    B, Lq, width = q.shape
    d = width // heads

    def split_heads(x):  # (B', L, heads*d) -> (B', heads, L, d)
        return x.reshape(x.shape[0], x.shape[1], heads, d).transpose(1, 2)

    qh, kh, vh = split_heads(q), split_heads(k), split_heads(v)
    if kv_group > 1:
        kh = kh.repeat_interleave(kv_group, dim=0)
        vh = vh.repeat_interleave(kv_group, dim=0)
    if impl == "sdpa":
        oh = F.scaled_dot_product_attention(qh, kh, vh)
    elif impl == "manual":
        scores = torch.matmul(qh, kh.transpose(-1, -2)) / math.sqrt(d)
        oh = torch.matmul(torch.softmax(scores, dim=-1), vh)
    else:
        raise ValueError(f"attention implementation {impl!r} is not one of {ATTENTION_IMPLS}")
    return oh.transpose(1, 2).reshape(B, Lq, width)


def upsample2x(x):
    """Nearest neighbour: (B, C, H, W) -> (B, C, 2H, 2W)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def add(a, b):
    return a + b


def axpby(x, y, alpha, beta):
    """alpha * x + beta * y (y is the output's initial value)."""
    return alpha * x + beta * y


def add_broadcast(y, x):
    """y (outer, inner) + x (inner) on every row."""
    return y + x


def add_channel_bias(y, bias):
    """y (N, T, C, S) + bias (N, C) over T and S."""
    return y + bias[:, None, :, None]


def concat_channels(a, b):
    """a (B, ca, S), b (B, cb, S) -> (B, ca + cb, S)."""
    return torch.cat([a, b], dim=1)


def transpose(x):
    """x (A, B, C, D) -> (A, C, B, D)."""
    return x.transpose(1, 2).contiguous()


def timestep_embedding(t, dim):
    """t (n) -> (n, dim) = [cos(t*f), sin(t*f)], f_i = exp(-ln(10000) * i / (dim/2)); cos first."""
    half = dim // 2
    index = torch.arange(half, dtype=t.dtype, device=t.device)
    freqs = torch.exp(-math.log(10000.0) * index / half)
    angles = t[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def embedding(ids, table):
    """ids (n) int, table (rows, dim) -> (n, dim)."""
    return table[ids.long()]


# ---------------------------------------------------------------------------------------------
# Parameter names and shapes (docs/architecture.md)
# ---------------------------------------------------------------------------------------------

def _norm_shapes(shapes, p, c):
    shapes[p + ".weight"] = (c,)
    shapes[p + ".bias"] = (c,)


def _linear_shapes(shapes, p, n_in, n_out, bias=True):
    shapes[p + ".weight"] = (n_out, n_in)
    if bias:
        shapes[p + ".bias"] = (n_out,)


def _conv_shapes(shapes, p, ci, co, k):
    shapes[p + ".weight"] = (co, ci, k, k)
    shapes[p + ".bias"] = (co,)


def _attention_shapes(shapes, p, q_dim, kv_dim):
    _linear_shapes(shapes, p + ".to_q", q_dim, q_dim, bias=False)
    _linear_shapes(shapes, p + ".to_k", kv_dim, q_dim, bias=False)
    _linear_shapes(shapes, p + ".to_v", kv_dim, q_dim, bias=False)
    _linear_shapes(shapes, p + ".to_out", q_dim, q_dim)


def _resblock2d_shapes(shapes, p, ci, co):
    _norm_shapes(shapes, p + ".norm1", ci)
    _conv_shapes(shapes, p + ".conv1", ci, co, 3)
    _norm_shapes(shapes, p + ".norm2", co)
    _conv_shapes(shapes, p + ".conv2", co, co, 3)
    if ci != co:
        _conv_shapes(shapes, p + ".skip", ci, co, 1)


def ae_parameter_shapes(cfg):
    shapes = OrderedDict()
    channels, latent = cfg["channels"], cfg["latent_channels"]
    last = len(channels) - 1
    _conv_shapes(shapes, "ae.enc.conv_in", 3, channels[0], 3)
    c = channels[0]
    for level, width in enumerate(channels):
        _resblock2d_shapes(shapes, f"ae.enc.down.{level}.res", c, width)
        c = width
        if level < last:
            _conv_shapes(shapes, f"ae.enc.down.{level}.down", c, c, 3)
    _resblock2d_shapes(shapes, "ae.enc.mid", c, c)
    _norm_shapes(shapes, "ae.enc.norm_out", c)
    _conv_shapes(shapes, "ae.enc.conv_out", c, latent, 3)

    _conv_shapes(shapes, "ae.dec.conv_in", latent, channels[last], 3)
    c = channels[last]
    _resblock2d_shapes(shapes, "ae.dec.mid", c, c)
    for level in range(last, -1, -1):
        _resblock2d_shapes(shapes, f"ae.dec.up.{level}.res", c, channels[level])
        c = channels[level]
        if level > 0:
            _conv_shapes(shapes, f"ae.dec.up.{level}.up", c, c, 3)
    _norm_shapes(shapes, "ae.dec.norm_out", c)
    _conv_shapes(shapes, "ae.dec.conv_out", c, 3, 3)
    return shapes


def text_parameter_shapes(cfg):
    shapes = OrderedDict()
    dim = cfg["dim"]
    shapes["text.token_emb"] = (len(cfg["vocab"]), dim)
    shapes["text.pos_emb"] = (cfg["max_tokens"], dim)
    for i in range(cfg["layers"]):
        p = f"text.layers.{i}"
        _norm_shapes(shapes, p + ".norm1", dim)
        _attention_shapes(shapes, p + ".attn", dim, dim)
        _norm_shapes(shapes, p + ".norm2", dim)
        _linear_shapes(shapes, p + ".ff.fc1", dim, 4 * dim)
        _linear_shapes(shapes, p + ".ff.fc2", 4 * dim, dim)
    _norm_shapes(shapes, "text.norm_out", dim)
    return shapes


# One step of the UNet's layout. kind: "conv_in", "block", "downsample", "mid", "upsample",
# "out". name: the block name ("down.1.0", "mid", "up.2.1") or the part's name below "unet.".
# ci/co: channels in and out (ci of an up block includes the popped skip). push_level: the
# level whose skip stack receives this step's output, or None. pops_skip: an up block that pops
# its level's stack and concatenates the skip after h. temporal: a block or mid that keeps its
# temporal layers (its level's "temporal.<level>" unit is not removed).
UNetStep = namedtuple("UNetStep", "kind name level ci co attention push_level pops_skip temporal")


def unet_block_names(cfg):
    """All block names of a config's full (unpruned) layout, in execution order."""
    levels, blocks = len(cfg["channels"]), cfg["blocks_per_level"]
    names = [f"down.{l}.{b}" for l in range(levels) for b in range(blocks)] + ["mid"]
    names += [f"up.{l}.{b}" for l in range(levels - 1, -1, -1) for b in range(blocks + 1)]
    return names


def block_level(cfg, name):
    """The level of a block name; mid belongs to the deepest."""
    return len(cfg["channels"]) - 1 if name == "mid" else int(name.split(".")[1])


def unet_unit_names(cfg):
    """Every name "removed" may hold: the blocks, then "temporal.<level>" for each level (the
    temporal convs and temporal self-attentions of that level's blocks; mid's belong to the
    deepest level), then "<block>.attn" for each block whose level has attention (its
    AttnBlock3D)."""
    blocks = unet_block_names(cfg)
    return (blocks + [f"temporal.{l}" for l in range(len(cfg["channels"]))]
            + [f"{b}.attn" for b in blocks if cfg["attention"][block_level(cfg, b)]])


def unet_plan(cfg):
    """The UNet's layout as a list of UNetStep, following the units that are not removed."""
    channels, blocks, has_attention = cfg["channels"], cfg["blocks_per_level"], cfg["attention"]
    levels = len(channels)
    removed_list = cfg.get("removed", [])
    removed = set(removed_list)
    unknown = removed - set(unet_unit_names(cfg))
    if unknown:
        raise ValueError(f"unet.removed names unknown units: {sorted(unknown)}")
    if len(removed) != len(removed_list):
        raise ValueError("unet.removed names a unit twice")
    if len(has_attention) != levels:
        raise ValueError("unet.attention needs one entry per level")
    both = sorted(n for n in removed if n + ".attn" in removed)
    if both:
        raise ValueError(f"unet.removed names the attention of a removed block: {both}")
    temporal = [f"temporal.{l}" not in removed for l in range(levels)]

    def attention(name, level):
        return bool(has_attention[level]) and f"{name}.attn" not in removed

    plan = []
    skip_channels = [[] for _ in range(levels)]
    plan.append(UNetStep("conv_in", "conv_in", 0, cfg["in_channels"], channels[0], False, 0, False,
                         False))
    skip_channels[0].append(channels[0])
    c = channels[0]
    for level in range(levels):
        for b in range(blocks):
            name = f"down.{level}.{b}"
            if name in removed:
                continue
            plan.append(UNetStep("block", name, level, c, channels[level], attention(name, level),
                                 level, False, temporal[level]))
            c = channels[level]
            skip_channels[level].append(c)
        if level < levels - 1:
            plan.append(UNetStep("downsample", f"down.{level}.down", level, c, c, False,
                                 level + 1, False, False))
            skip_channels[level + 1].append(c)
    if "mid" not in removed:
        plan.append(UNetStep("mid", "mid", levels - 1, c, channels[-1], attention("mid", levels - 1),
                             None, False, temporal[-1]))
        c = channels[-1]
    for level in range(levels - 1, -1, -1):
        for b in range(blocks + 1):
            name = f"up.{level}.{b}"
            if name in removed:
                continue
            pops = bool(skip_channels[level])
            ci = c + (skip_channels[level].pop() if pops else 0)
            plan.append(UNetStep("block", name, level, ci, channels[level], attention(name, level),
                                 None, pops, temporal[level]))
            c = channels[level]
        if level > 0:
            plan.append(UNetStep("upsample", f"up.{level}.up", level, c, c, False, None, False,
                                 False))
    plan.append(UNetStep("out", "out", 0, c, cfg["out_channels"], False, None, False, False))
    return plan


def inner_channels(cfg, level):
    """The inner width of a level's ResBlocks (conv1's output, norm2, conv2's input)."""
    return cfg.get("inner_channels", cfg["channels"])[level]


def _resblock3d_shapes(shapes, p, ci, cm, co, time_dim, temporal):
    _norm_shapes(shapes, p + ".norm1", ci)
    _conv_shapes(shapes, p + ".conv1", ci, cm, 3)
    _linear_shapes(shapes, p + ".time", time_dim, cm)
    _norm_shapes(shapes, p + ".norm2", cm)
    _conv_shapes(shapes, p + ".conv2", cm, co, 3)
    if ci != co:
        _conv_shapes(shapes, p + ".skip", ci, co, 1)
    if temporal:
        _norm_shapes(shapes, p + ".norm3", co)
        shapes[p + ".tconv.weight"] = (co, co, 3)
        shapes[p + ".tconv.bias"] = (co,)


def _attnblock3d_shapes(shapes, p, c, context_dim, temporal):
    _norm_shapes(shapes, p + ".norm", c)
    _linear_shapes(shapes, p + ".proj_in", c, c)
    _norm_shapes(shapes, p + ".norm1", c)
    _attention_shapes(shapes, p + ".attn1", c, c)
    _norm_shapes(shapes, p + ".norm2", c)
    _attention_shapes(shapes, p + ".attn2", c, context_dim)
    _norm_shapes(shapes, p + ".norm3", c)
    _linear_shapes(shapes, p + ".ff.fc1", c, 4 * c)
    _linear_shapes(shapes, p + ".ff.fc2", 4 * c, c)
    if temporal:
        _norm_shapes(shapes, p + ".norm_t", c)
        _attention_shapes(shapes, p + ".attn_t", c, c)
    _linear_shapes(shapes, p + ".proj_out", c, c)


def unet_parameter_shapes(cfg):
    shapes = OrderedDict()
    c0 = cfg["channels"][0]
    time_dim = 4 * c0
    _linear_shapes(shapes, "unet.time.fc1", c0, time_dim)
    _linear_shapes(shapes, "unet.time.fc2", time_dim, time_dim)
    if cfg.get("pooled_text", False):
        _linear_shapes(shapes, "unet.text_pool", cfg["context_dim"], time_dim)
    for step in unet_plan(cfg):
        p = "unet." + step.name
        if step.kind == "conv_in":
            _conv_shapes(shapes, "unet.conv_in", step.ci, step.co, 3)
        elif step.kind == "block":
            _resblock3d_shapes(shapes, p + ".res", step.ci, inner_channels(cfg, step.level), step.co,
                               time_dim, step.temporal)
            if step.attention:
                _attnblock3d_shapes(shapes, p + ".attn", step.co, cfg["context_dim"],
                                    step.temporal)
        elif step.kind in ("downsample", "upsample"):
            _conv_shapes(shapes, p, step.ci, step.co, 3)
        elif step.kind == "mid":
            cm = inner_channels(cfg, step.level)
            _resblock3d_shapes(shapes, "unet.mid.res1", step.ci, cm, step.co, time_dim, step.temporal)
            if step.attention:
                _attnblock3d_shapes(shapes, "unet.mid.attn", step.co, cfg["context_dim"],
                                    step.temporal)
            _resblock3d_shapes(shapes, "unet.mid.res2", step.co, cm, step.co, time_dim, step.temporal)
        else:
            _norm_shapes(shapes, "unet.norm_out", step.ci)
            _conv_shapes(shapes, "unet.conv_out", step.ci, step.co, 3)
    return shapes


def parameter_shapes(config):
    """name -> shape of every parameter of the components present in a config."""
    shapes = OrderedDict()
    if "ae" in config:
        shapes.update(ae_parameter_shapes(config["ae"]))
    if "text" in config:
        shapes.update(text_parameter_shapes(config["text"]))
    if "unet" in config:
        shapes.update(unet_parameter_shapes(config["unet"]))
    return shapes


def init_weights(config, seed, device="cpu", dtype=torch.float32):
    """Random weights for a config: Linear/Conv/TConv weights ~ N(0, 1/fan_in), biases 0,
    norms gamma 1 beta 0, embedding tables ~ N(0, 0.02^2). Deterministic for a seed."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in parameter_shapes(config).items():
        if name in ("text.token_emb", "text.pos_emb"):
            value = torch.randn(shape, generator=generator) * 0.02
        elif name.endswith(".bias"):
            value = torch.zeros(shape)
        elif len(shape) == 1:
            value = torch.ones(shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        weights[name] = value.to(device=device, dtype=dtype)
    return weights


# ---------------------------------------------------------------------------------------------
# Model components
# ---------------------------------------------------------------------------------------------

class _Component:
    """Shared helpers: weights looked up by prefix, as architecture.md names them."""

    def __init__(self, weights, attention_impl):
        self.weights = weights
        self.attention_impl = attention_impl

    def _conv(self, p, x, stride=1):
        return conv2d(x, self.weights[p + ".weight"], self.weights[p + ".bias"], stride)

    def _linear(self, p, x, bias=True):
        return linear(x, self.weights[p + ".weight"], self.weights[p + ".bias"] if bias else None)

    def _group_norm(self, p, x, groups):
        return group_norm(x, self.weights[p + ".weight"], self.weights[p + ".bias"], groups)

    def _layer_norm(self, p, x):
        return layer_norm(x, self.weights[p + ".weight"], self.weights[p + ".bias"])

    def _attention(self, p, x, context, heads, kv_group=1):
        """Attention(q_dim, kv_dim, heads) at prefix p: queries from x, keys and values from
        context (x itself for self-attention)."""
        source = x if context is None else context
        q = self._linear(p + ".to_q", x, bias=False)
        k = self._linear(p + ".to_k", source, bias=False)
        v = self._linear(p + ".to_v", source, bias=False)
        o = attention(q, k, v, heads, kv_group, self.attention_impl)
        return self._linear(p + ".to_out", o)

    def _feed_forward(self, p, x):
        return self._linear(p + ".fc2", gelu(self._linear(p + ".fc1", x)))


class Autoencoder(_Component):
    """Per-frame autoencoder: images (B, 3, H, W) in [-1, 1] <-> latents (B, latent, H/f, W/f),
    f = 2^(levels-1)."""

    def __init__(self, cfg, weights):
        super().__init__(weights, attention_impl=None)
        self.channels = cfg["channels"]
        self.groups = cfg["groups"]
        self.scale_factor = cfg.get("scale_factor", 1.0)
        self.downscale = 2 ** (len(self.channels) - 1)

    def _resblock2d(self, p, x, co):
        h = self._conv(p + ".conv1", silu(self._group_norm(p + ".norm1", x, self.groups)))
        h = self._conv(p + ".conv2", silu(self._group_norm(p + ".norm2", h, self.groups)))
        skip = self._conv(p + ".skip", x) if x.shape[1] != co else x
        return skip + h

    def encode(self, images):
        last = len(self.channels) - 1
        h = self._conv("ae.enc.conv_in", images)
        for level, width in enumerate(self.channels):
            h = self._resblock2d(f"ae.enc.down.{level}.res", h, width)
            if level < last:
                h = self._conv(f"ae.enc.down.{level}.down", h, stride=2)
        h = self._resblock2d("ae.enc.mid", h, self.channels[last])
        h = silu(self._group_norm("ae.enc.norm_out", h, self.groups))
        return self._conv("ae.enc.conv_out", h) * self.scale_factor

    def decode(self, latents):
        last = len(self.channels) - 1
        h = self._conv("ae.dec.conv_in", latents / self.scale_factor)
        h = self._resblock2d("ae.dec.mid", h, self.channels[last])
        for level in range(last, -1, -1):
            h = self._resblock2d(f"ae.dec.up.{level}.res", h, self.channels[level])
            if level > 0:
                h = self._conv(f"ae.dec.up.{level}.up", upsample2x(h))
        h = silu(self._group_norm("ae.dec.norm_out", h, self.groups))
        return self._conv("ae.dec.conv_out", h)


class TextEncoder(_Component):
    """Tokenizer and transformer text encoder: ids (P, L) -> tokens (P, L, D)."""

    def __init__(self, cfg, weights, attention_impl):
        super().__init__(weights, attention_impl)
        self.vocab = cfg["vocab"]
        self.max_tokens = cfg["max_tokens"]
        self.layers = cfg["layers"]
        self.heads = cfg["heads"]
        self.word_ids = {}
        for index, word in enumerate(self.vocab):
            self.word_ids.setdefault(word, index)

    def tokenize(self, prompt):
        """Returns (ids, unknown_words): ids has max_tokens entries (words in order, truncated,
        then PAD_ID); unknown_words lists each unknown word of the whole prompt once, in order
        of first appearance. A word is a maximal run of ASCII letters and non-ASCII characters;
        every other ASCII character separates words. ASCII letters are lower-cased; a word
        holding a non-ASCII character is always unknown."""
        words = [w.translate(ASCII_LOWER) for w in re.findall(r"[A-Za-z\u0080-\U0010ffff]+", prompt)]
        known = [w.isascii() and w in self.word_ids for w in words]
        ids = [self.word_ids[w] if ok else UNKNOWN_ID for w, ok in zip(words, known)][: self.max_tokens]
        ids += [PAD_ID] * (self.max_tokens - len(ids))
        unknown_words = []
        for w, ok in zip(words, known):
            if not ok and w not in unknown_words:
                unknown_words.append(w)
        return ids, unknown_words

    def encode(self, ids):
        x = embedding(ids.reshape(-1), self.weights["text.token_emb"])
        x = x.reshape(ids.shape[0], ids.shape[1], -1) + self.weights["text.pos_emb"]
        for i in range(self.layers):
            p = f"text.layers.{i}"
            x = x + self._attention(p + ".attn", self._layer_norm(p + ".norm1", x), None,
                                    self.heads)
            x = x + self._feed_forward(p + ".ff", self._layer_norm(p + ".norm2", x))
        return self._layer_norm("text.norm_out", x)


class UNet3D(_Component):
    """The denoiser: x (N, T, in_channels, h, w), t (N) float timesteps, context (N, L, D)
    -> v prediction (N, T, out_channels, h, w)."""

    def __init__(self, cfg, weights, attention_impl):
        super().__init__(weights, attention_impl)
        self.cfg = cfg
        self.plan = unet_plan(cfg)
        self.groups = cfg["groups"]
        self.head_dim = cfg["head_dim"]
        self.levels = len(cfg["channels"])

    def _time_embedding(self, t, context):
        """(N, 4 c0); with pooled_text the projected mean of each video's L text tokens is added."""
        c0 = self.cfg["channels"][0]
        te = self._linear("unet.time.fc1", timestep_embedding(t, c0))
        te = self._linear("unet.time.fc2", silu(te))
        if self.cfg.get("pooled_text", False):
            te = te + self._linear("unet.text_pool", context.mean(dim=1))
        return te

    def _resblock3d(self, p, x, time_silu, N, T, co, temporal):
        B, ci, H, W = x.shape
        h = self._conv(p + ".conv1", silu(self._group_norm(p + ".norm1", x, self.groups)))
        cm = h.shape[1]  # the inner width; norm2 keeps the group width of co's groups
        time_bias = self._linear(p + ".time", time_silu)
        h = add_channel_bias(h.reshape(N, T, cm, H * W), time_bias).reshape(B, cm, H, W)
        h = self._conv(p + ".conv2", silu(self._group_norm(p + ".norm2", h, self.groups * cm // co)))
        skip = self._conv(p + ".skip", x) if ci != co else x
        x = skip + h
        if not temporal:  # the level's temporal layers are removed
            return x
        temporal_in = silu(self._group_norm(p + ".norm3", x, self.groups)).reshape(N, T, co, H * W)
        temporal_out = temporal_conv(temporal_in, self.weights[p + ".tconv.weight"],
                                     self.weights[p + ".tconv.bias"])
        return x + temporal_out.reshape(B, co, H, W)

    def _attnblock3d(self, p, x, context, N, T, temporal):
        B, c, H, W = x.shape
        S = H * W
        heads = c // self.head_dim
        h = self._group_norm(p + ".norm", x, self.groups).reshape(B, c, S).transpose(1, 2)
        h = self._linear(p + ".proj_in", h)  # (B, S, c)
        h = h + self._attention(p + ".attn1", self._layer_norm(p + ".norm1", h), None, heads)
        h = h + self._attention(p + ".attn2", self._layer_norm(p + ".norm2", h), context, heads,
                                kv_group=T)
        h = h + self._feed_forward(p + ".ff", self._layer_norm(p + ".norm3", h))
        if temporal:
            # temporal self-attention: every (video, position) attends over its T frames
            h = h.reshape(N, T, S, c).transpose(1, 2).reshape(N * S, T, c)
            frame_index = torch.arange(T, dtype=h.dtype, device=h.device)
            with_frame_pos = h + timestep_embedding(frame_index, c)
            h = h + self._attention(p + ".attn_t",
                                    self._layer_norm(p + ".norm_t", with_frame_pos), None, heads)
            h = h.reshape(N, S, T, c).transpose(1, 2).reshape(B, S, c)
        h = self._linear(p + ".proj_out", h).transpose(1, 2).reshape(B, c, H, W)
        return x + h

    def _block(self, p, x, time_silu, context, N, T, step):
        x = self._resblock3d(p + ".res", x, time_silu, N, T, step.co, step.temporal)
        if step.attention:
            x = self._attnblock3d(p + ".attn", x, context, N, T, step.temporal)
        return x

    def forward(self, x, t, context, outputs=None, stop=None):
        """x (N, T, in_channels, H, W) -> the prediction (N, T, out_channels, H, W). outputs, when a
        list, gets every stage's output (N*T, C, h, w) in plan order; stop ends the walk after the
        first stop stages (the encoder half, for distillation) and returns the last output."""
        N, T, C, H, W = x.shape
        divisor = 2 ** (self.levels - 1)
        if C != self.cfg["in_channels"] or H % divisor or W % divisor:
            raise ValueError(f"UNet input {tuple(x.shape)}: needs {self.cfg['in_channels']} "
                             f"channels and a size divisible by {divisor}")
        time_silu = silu(self._time_embedding(t, context))
        skips = [[] for _ in range(self.levels)]
        h = x.reshape(N * T, C, H, W)
        for step in self.plan[:stop]:
            p = "unet." + step.name
            if step.kind == "conv_in":
                h = self._conv("unet.conv_in", h)
            elif step.kind == "block":
                if step.pops_skip:
                    h = torch.cat([h, skips[step.level].pop()], dim=1)
                h = self._block(p, h, time_silu, context, N, T, step)
            elif step.kind == "downsample":
                h = self._conv(p, h, stride=2)
            elif step.kind == "mid":
                h = self._resblock3d("unet.mid.res1", h, time_silu, N, T, step.co, step.temporal)
                if step.attention:
                    h = self._attnblock3d("unet.mid.attn", h, context, N, T, step.temporal)
                h = self._resblock3d("unet.mid.res2", h, time_silu, N, T, step.co, step.temporal)
            elif step.kind == "upsample":
                h = self._conv(p, upsample2x(h))
            else:
                h = self._group_norm("unet.norm_out", h, self.groups)
                h = self._conv("unet.conv_out", silu(h))
            if step.push_level is not None:
                skips[step.push_level].append(h)
            if outputs is not None:
                outputs.append(h)
        return h if stop is not None else h.reshape(N, T, -1, H, W)

    __call__ = forward  # a UNet3D is called like a module: unet(x, t, context)


# ---------------------------------------------------------------------------------------------
# Diffusion: v-prediction schedule and samplers
# ---------------------------------------------------------------------------------------------

class VPredictionSchedule:
    """The "scaled linear" betas, cumulative alphas (float64) and trailing sampling timesteps."""

    def __init__(self, cfg):
        if cfg.get("prediction", "v") != "v":
            raise ValueError("only v-prediction is supported")
        self.train_steps = cfg["train_steps"]
        start, end = math.sqrt(cfg["beta_start"]), math.sqrt(cfg["beta_end"])
        n = self.train_steps
        betas = [(start + i / (n - 1) * (end - start)) ** 2 for i in range(n)]
        ab = np.cumprod([1.0 - beta for beta in betas])
        k2 = float(cfg.get("snr_shift", 1.0)) ** 2
        ab = ab / (ab + k2 * (1.0 - ab))
        if cfg.get("zero_terminal_snr", False):
            root = np.sqrt(ab)
            root = (root - root[-1]) * root[0] / (root[0] - root[-1])
            ab = root * root
            ab[-1] = 0.0
        self.alphas_cumprod = ab

    def timesteps(self, steps):
        """t_k = round((S - k) * train_steps / S) - 1, k = 0..S-1, halves rounded up."""
        if not 1 <= steps <= self.train_steps:
            raise ValueError(f"steps must be in 1..{self.train_steps}")
        return [int(math.floor((steps - k) * self.train_steps / steps + 0.5)) - 1
                for k in range(steps)]

    def alpha_bar(self, t):
        return float(self.alphas_cumprod[t])

    def karras_grid(self, steps, rho=7.0):
        """[(sigma_k, t_k)] for k = 0..S-1: sigmas spaced as Karras et al. between the table's
        largest and smallest sigma, and t_k the fractional training index whose log sigma is
        log sigma_k (linear between neighbours), rounded to float32 as the model's input is.
        With a zero terminal SNR the first point is (inf, last index) and the other S - 1 span
        the finite sigmas."""
        if not 1 <= steps <= self.train_steps:
            raise ValueError(f"steps must be in 1..{self.train_steps}")
        ab = self.alphas_cumprod
        grid = []
        if ab[-1] == 0.0:
            grid.append((math.inf, float(self.train_steps - 1)))
            ab = ab[:-1]
        log_sigmas = 0.5 * np.log((1.0 - ab) / ab)
        smax, smin = math.exp(log_sigmas[-1]), math.exp(log_sigmas[0])
        points = steps - len(grid)
        for k in range(points):
            frac = k / (points - 1) if points > 1 else 0.0
            sigma = (smax ** (1 / rho) + frac * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
            ls = math.log(sigma)
            if ls <= log_sigmas[0]:
                t = 0.0
            elif ls >= log_sigmas[-1]:
                t = float(len(ab) - 1)
            else:
                lo = int(np.searchsorted(log_sigmas, ls, side="right")) - 1
                t = lo + (ls - log_sigmas[lo]) / (log_sigmas[lo + 1] - log_sigmas[lo])
            grid.append((sigma, float(np.float32(t))))
        return grid


def guided_velocity(unet, z, cond, t, context, guidance, rescale=0.0, guide=None, guide_scale=0.0):
    """v for latents z (N, T, 4, h, w) at timestep t. cond (N, T, 5, h, w) is the condition
    latent and mask; context (2N, L, D) holds the conditional rows then the unconditional rows.
    guidance > 1 runs both halves as one batch of 2N and returns v_g = v_u + g (v_c - v_u);
    guidance <= 1 runs only the conditional half (v_g = v_c). With a guide (a weaker UNet that
    sees the conditional rows), guide_scale a adds a (v_c - v_guide). Then, when guided either
    way, v_g times rescale * rms(v_c) / rms(v_g) + 1 - rescale per video (rms over all its
    values)."""
    N = z.shape[0]
    x = torch.cat([z, cond], dim=2)
    times = torch.full((N,), float(t), dtype=z.dtype, device=z.device)
    if guidance <= 1:
        v_cond = guided = unet(x, times, context[:N])
    else:
        v = unet(torch.cat([x, x], dim=0), torch.cat([times, times]), context)
        v_cond, v_uncond = v[:N], v[N:]
        guided = v_uncond + guidance * (v_cond - v_uncond)
    if guide is not None:
        guided = guided + guide_scale * (v_cond - guide(x, times, context[:N]))
    if rescale > 0 and (guidance > 1 or guide is not None):
        dims = tuple(range(1, guided.dim()))
        ratio = (v_cond.square().sum(dims) / guided.square().sum(dims)).sqrt()
        guided = guided * (rescale * ratio + 1 - rescale).view(-1, *([1] * len(dims)))
    return guided


def pin_first_frame(z0, cond):
    """Image-to-video videos (mask 1 on frame 0) get the condition latent as frame 0's x0."""
    latent = z0.shape[2]
    z0 = z0.clone()
    for i in range(z0.shape[0]):
        if float(cond[i, 0, latent, 0, 0]) == 1.0:
            z0[i, 0] = cond[i, 0, :latent]
    return z0


MASK64 = (1 << 64) - 1
STEP_NOISE_STREAM = 0x6E6F697365


def _mix64(z):
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(MASK64)
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(MASK64)
    return z ^ (z >> np.uint64(31))


def rng_u64(seed, index):
    """The engine's counter-based generator: number `index` (an array) of stream `seed`."""
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64((seed + 0x9E3779B97F4A7C15) & MASK64))
        index = np.asarray(index, dtype=np.uint64)
        return _mix64(key ^ (index * np.uint64(0xD1B54A32D192ED03) + np.uint64(0x632BE59BD9B4E019)))


def rng_normal(seed, n):
    """n standard normal numbers of stream seed from offset 0, as the engine draws them (Box-Muller
    on pairs of uniforms, in float64, stored as float32)."""
    pairs = (n + 1) // 2
    index = np.arange(2 * pairs, dtype=np.uint64)
    u = ((rng_u64(seed, index) >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)
    r, a = np.sqrt(-2.0 * np.log(u[0::2])), 6.283185307179586 * u[1::2]
    out = np.empty(2 * pairs, dtype=np.float64)
    out[0::2], out[1::2] = r * np.cos(a), r * np.sin(a)
    return out[:n].astype(np.float32)


def step_noise(seed, step, shape):
    """The fresh noise a video with noise seed `seed` gets at DDIM step `step` (eta > 0)."""
    stream = int(rng_u64(seed, STEP_NOISE_STREAM + step))
    return torch.from_numpy(rng_normal(stream, math.prod(shape)).reshape(shape))


def sample_ddim(unet, schedule, noise, cond, context, steps, guidance, rescale=0.0, guide=None, guide_scale=0.0,
                eta=0.0, noise_seed=0):
    """DDIM from z_T = noise; returns the final latents z_0. guide and guide_scale as in
    guided_velocity. With eta > 0 each step adds fresh noise sigma * xi, sigma = eta
    sqrt((1 - a') / (1 - a)) sqrt(1 - a / a'), and keeps sqrt(1 - a' - sigma^2) of the predicted
    noise; video i's xi is step_noise(noise_seed + i, step)."""
    timesteps = schedule.timesteps(steps)
    z = noise
    for k, t in enumerate(timesteps):
        a = schedule.alpha_bar(t)
        a_prev = schedule.alpha_bar(timesteps[k + 1]) if k + 1 < steps else 1.0
        v = guided_velocity(unet, z, cond, t, context, guidance, rescale, guide, guide_scale)
        z0 = pin_first_frame(math.sqrt(a) * z - math.sqrt(1 - a) * v, cond)
        eps = math.sqrt(1 - a) * z + math.sqrt(a) * v
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a)) * math.sqrt(1 - a / a_prev) if eta > 0 else 0.0
        z = math.sqrt(a_prev) * z0 + math.sqrt(max(0.0, 1 - a_prev - sigma * sigma)) * eps
        if sigma > 0:
            xi = torch.stack([step_noise(noise_seed + i, k, z.shape[1:]) for i in range(z.shape[0])])
            z = z + sigma * xi.to(z.dtype)
    return z


def sample_euler(unet, schedule, noise, cond, context, steps, guidance, rescale=0.0):
    """Euler on the Karras sigma grid (rho = 7) from z_T = noise. The step is DDIM's first-order
    update between the noise levels of consecutive grid points (in x = z / sqrt(abar) it is
    x <- x + (sigma_next - sigma) * (x - x0) / sigma); the model sees each point's fractional
    timestep. Returns the final latents."""
    grid = schedule.karras_grid(steps)
    z = noise
    for k, (sigma, t) in enumerate(grid):
        a = 1.0 / (1.0 + sigma * sigma)  # 0 at an infinite sigma
        a_next = 1.0 / (1.0 + grid[k + 1][0] ** 2) if k + 1 < steps else 1.0
        v = guided_velocity(unet, z, cond, t, context, guidance, rescale)
        z0 = pin_first_frame(math.sqrt(a) * z - math.sqrt(1 - a) * v, cond)
        eps = math.sqrt(1 - a) * z + math.sqrt(a) * v
        z = math.sqrt(a_next) * z0 + math.sqrt(1 - a_next) * eps
    return z


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

class Model:
    """The components present in a config: ae, text, unet and schedule (None when absent)."""

    def __init__(self, config, weights, attention_impl="manual"):
        expected = parameter_shapes(config)
        missing = [n for n in expected if n not in weights]
        unexpected = [n for n in weights if n not in expected]
        wrong = [f"{n} {tuple(weights[n].shape)} != {s}" for n, s in expected.items()
                 if n in weights and tuple(weights[n].shape) != tuple(s)]
        if missing or unexpected or wrong:
            raise ValueError(f"weights do not match the config: missing {missing[:8]}, "
                             f"unexpected {unexpected[:8]}, wrong shapes {wrong[:8]}")
        self.config = config
        self.ae = Autoencoder(config["ae"], weights) if "ae" in config else None
        self.text = self.unet = self.schedule = None
        if "text" in config:
            self.text = TextEncoder(config["text"], weights, attention_impl)
        if "unet" in config:
            self.unet = UNet3D(config["unet"], weights, attention_impl)
            self.schedule = VPredictionSchedule(config["diffusion"])


def load_model(path, attention_impl="manual", dtype=torch.float32, device="cpu"):
    """Builds the model of a weights file from its __metadata__["vdmini.config"]."""
    arrays, metadata = read_safetensors(path)
    if "vdmini.config" not in metadata:
        raise ValueError(f"{path}: no vdmini.config in __metadata__")
    config = json.loads(metadata["vdmini.config"])
    weights = {name: torch.from_numpy(array).to(device=device, dtype=dtype)
               for name, array in arrays.items()}
    return Model(config, weights, attention_impl)
