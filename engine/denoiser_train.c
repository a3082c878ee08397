/* denoiser_train.c: the denoiser's training pass (see denoiser_train.h). As in ae_train.c, every
 * forward step fills a record with what its backward reads, and each layer's backward sits beside
 * its forward. The UNet is walked by model.c's stage plan, forward and then in reverse. Every
 * activation the forward makes is kept until the backward has finished; parameter gradients
 * accumulate into the caller's buffer, activation gradients are fresh buffers. */
#include "denoiser_train.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NORM_EPS 1e-5f

typedef struct {
    vd_model *m;
    vd_backend *be;
    float *grads;
    float **keep; /* forward activations, released after the backward */
    int keep_count, keep_cap;
} ctx;

/* The parameter prefix + suffix; a missing one aborts unless optional. */
static const vd_param *lookup(ctx *c, const char *prefix, const char *suffix, int optional)
{
    char name[160];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    const vd_param *p = vd_model_param(c->m, name);
    if (!p && !optional) {
        VD_LOG(VD_LOG_ERROR, "parameter %s missing from the model", name);
        abort();
    }
    return p;
}

static const float *weight(ctx *c, const char *prefix, const char *suffix)
{
    return c->m->weights + lookup(c, prefix, suffix, 0)->offset;
}

static float *grad(ctx *c, const char *prefix, const char *suffix)
{
    return c->grads + lookup(c, prefix, suffix, 0)->offset;
}

static float *buffer(ctx *c, size_t n) { return c->be->alloc(c->be, n * sizeof(float)); }
static void release(ctx *c, float *p) { c->be->release(c->be, p); }

/* A forward activation: lives until the end of the training pass. */
static float *kept(ctx *c, size_t n)
{
    if (c->keep_count == c->keep_cap) {
        c->keep_cap = c->keep_cap ? 2 * c->keep_cap : 256;
        c->keep = vd_realloc(c->keep, (size_t)c->keep_cap * sizeof *c->keep);
    }
    return c->keep[c->keep_count++] = buffer(c, n);
}

static float *zeroed(ctx *c, size_t n)
{
    float *p = buffer(c, n);
    c->be->zero(c->be, p, n * sizeof(float));
    return p;
}

/* ---- convolution ---- */

typedef struct {
    char name[96];
    const float *x;
    int B, ci, H, W, co, k, stride;
} conv_rec;

/* x (B, ci, H, W) -> y (B, co, Ho, Wo) */
static float *conv_fwd(ctx *c, conv_rec *r, const char *name, const float *x, int B, int ci, int H, int W, int co,
                       int k, int stride)
{
    int Ho = (H + 2 * (k / 2) - k) / stride + 1, Wo = (W + 2 * (k / 2) - k) / stride + 1;
    *r = (conv_rec){.x = x, .B = B, .ci = ci, .H = H, .W = W, .co = co, .k = k, .stride = stride};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = kept(c, (size_t)B * co * Ho * Wo);
    c->be->conv2d(c->be, y, x, weight(c, name, ".weight"), weight(c, name, ".bias"), B, ci, H, W, co, k, stride);
    return y;
}

/* dy -> new dx (none when want_dx is 0). */
static float *conv_bwd(ctx *c, const conv_rec *r, const float *dy, int want_dx)
{
    float *dx = want_dx ? buffer(c, (size_t)r->B * r->ci * r->H * r->W) : NULL;
    c->be->conv2d_backward(c->be, dx, grad(c, r->name, ".weight"), grad(c, r->name, ".bias"), dy, r->x,
                           weight(c, r->name, ".weight"), r->B, r->ci, r->H, r->W, r->co, r->k, r->stride);
    return dx;
}

/* ---- linear (bias when the model has one) ---- */

typedef struct {
    char name[96];
    const float *x;
    int M, in, out, has_bias;
} linear_rec;

/* x (M, in) -> y (M, out) */
static float *linear_fwd(ctx *c, linear_rec *r, const char *name, const float *x, int M, int in, int out)
{
    *r = (linear_rec){.x = x, .M = M, .in = in, .out = out, .has_bias = lookup(c, name, ".bias", 1) != NULL};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = kept(c, (size_t)M * out);
    c->be->linear(c->be, y, x, weight(c, name, ".weight"), r->has_bias ? weight(c, name, ".bias") : NULL, M, in,
                  out);
    return y;
}

static float *linear_bwd(ctx *c, const linear_rec *r, const float *dy, int want_dx)
{
    float *dx = want_dx ? buffer(c, (size_t)r->M * r->in) : NULL;
    c->be->linear_backward(c->be, dx, grad(c, r->name, ".weight"), r->has_bias ? grad(c, r->name, ".bias") : NULL,
                           dy, r->x, weight(c, r->name, ".weight"), r->M, r->in, r->out);
    return dx;
}

/* ---- norms ---- */

typedef struct {
    char name[96];
    const float *x;
    int B, C, S, G;
} gn_rec;

/* GroupNorm over images x (B, C, S) -> y */
static float *gn_fwd(ctx *c, gn_rec *r, const char *name, const float *x, int B, int C, int S, int G)
{
    *r = (gn_rec){.x = x, .B = B, .C = C, .S = S, .G = G};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = kept(c, (size_t)B * C * S);
    c->be->group_norm(c->be, y, x, weight(c, name, ".weight"), weight(c, name, ".bias"), B, C, S, G, NORM_EPS);
    return y;
}

static float *gn_bwd(ctx *c, const gn_rec *r, const float *dy)
{
    float *dx = buffer(c, (size_t)r->B * r->C * r->S);
    c->be->group_norm_backward(c->be, dx, grad(c, r->name, ".weight"), grad(c, r->name, ".bias"), dy, r->x,
                               weight(c, r->name, ".weight"), r->B, r->C, r->S, r->G, NORM_EPS);
    return dx;
}

typedef struct {
    gn_rec gn;
    float *g; /* GroupNorm(x), before SiLU */
} norm_silu_rec;

/* SiLU(GroupNorm(x)), x (B, C, S) */
static float *norm_silu_fwd(ctx *c, norm_silu_rec *r, const char *name, const float *x, int B, int C, int S, int G)
{
    r->g = gn_fwd(c, &r->gn, name, x, B, C, S, G);
    size_t n = (size_t)B * C * S;
    float *a = kept(c, n);
    c->be->silu(c->be, a, r->g, n);
    return a;
}

static float *norm_silu_bwd(ctx *c, const norm_silu_rec *r, const float *da)
{
    size_t n = (size_t)r->gn.B * r->gn.C * r->gn.S;
    float *dg = buffer(c, n);
    c->be->silu_backward(c->be, dg, da, r->g, n);
    float *dx = gn_bwd(c, &r->gn, dg);
    release(c, dg);
    return dx;
}

typedef struct {
    char name[96];
    const float *x;
    int M, C;
} ln_rec;

/* LayerNorm over rows x (M, C) -> y */
static float *ln_fwd(ctx *c, ln_rec *r, const char *name, const float *x, int M, int C)
{
    *r = (ln_rec){.x = x, .M = M, .C = C};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = kept(c, (size_t)M * C);
    c->be->layer_norm(c->be, y, x, weight(c, name, ".weight"), weight(c, name, ".bias"), M, C, NORM_EPS);
    return y;
}

static float *ln_bwd(ctx *c, const ln_rec *r, const float *dy)
{
    float *dx = buffer(c, (size_t)r->M * r->C);
    c->be->layer_norm_backward(c->be, dx, grad(c, r->name, ".weight"), grad(c, r->name, ".bias"), dy, r->x,
                               weight(c, r->name, ".weight"), r->M, r->C, NORM_EPS);
    return dx;
}

/* ---- attention with its projections ---- */

typedef struct {
    linear_rec q, k, v, out;
    const float *qb, *kb, *vb; /* projected queries, keys, values */
    int B, Lq, Lk, heads, d, kv_group, self;
} attn_rec;

/* Queries from xq (B*Lq, qdim); keys and values from xkv (B/kv_group * Lk, kvdim), or from xq
 * when xkv is NULL -> y (B*Lq, qdim). */
static float *attn_fwd(ctx *c, attn_rec *r, const char *p, const float *xq, const float *xkv, int B, int Lq, int Lk,
                       int qdim, int kvdim, int heads, int kv_group)
{
    char n[160];
    int self = xkv == NULL;
    if (self) xkv = xq, Lk = Lq, kvdim = qdim, kv_group = 1;
    int Bkv = B / kv_group;
    *r = (attn_rec){.B = B, .Lq = Lq, .Lk = Lk, .heads = heads, .d = qdim / heads, .kv_group = kv_group, .self = self};
    snprintf(n, sizeof n, "%s.to_q", p), r->qb = linear_fwd(c, &r->q, n, xq, B * Lq, qdim, qdim);
    snprintf(n, sizeof n, "%s.to_k", p), r->kb = linear_fwd(c, &r->k, n, xkv, Bkv * Lk, kvdim, qdim);
    snprintf(n, sizeof n, "%s.to_v", p), r->vb = linear_fwd(c, &r->v, n, xkv, Bkv * Lk, kvdim, qdim);
    float *o = kept(c, (size_t)B * Lq * qdim);
    c->be->attention(c->be, o, r->qb, r->kb, r->vb, B, Lq, Lk, heads, r->d, kv_group);
    snprintf(n, sizeof n, "%s.to_out", p);
    return linear_fwd(c, &r->out, n, o, B * Lq, qdim, qdim);
}

/* dy -> new dxq; for cross-attention the keys' source gradient is added into dkv_acc. */
static float *attn_bwd(ctx *c, const attn_rec *r, const float *dy, float *dkv_acc)
{
    vd_backend *be = c->be;
    size_t nq = (size_t)r->B * r->Lq * r->q.out, nkv = (size_t)(r->B / r->kv_group) * r->Lk * r->q.out;
    float *dob = linear_bwd(c, &r->out, dy, 1);
    float *dq = buffer(c, nq), *dk = buffer(c, nkv), *dv = buffer(c, nkv);
    be->attention_backward(be, dq, dk, dv, dob, r->qb, r->kb, r->vb, r->B, r->Lq, r->Lk, r->heads, r->d, r->kv_group);
    release(c, dob);
    float *dxq = linear_bwd(c, &r->q, dq, 1), *dxk = linear_bwd(c, &r->k, dk, 1), *dxv = linear_bwd(c, &r->v, dv, 1);
    float *acc = r->self ? dxq : dkv_acc;
    size_t nsrc = (size_t)r->k.M * r->k.in;
    be->add(be, acc, acc, dxk, nsrc);
    be->add(be, acc, acc, dxv, nsrc);
    release(c, dq), release(c, dk), release(c, dv), release(c, dxk), release(c, dxv);
    return dxq;
}

/* ---- residual sublayers of the transformers ---- */

typedef struct {
    ln_rec ln;
    attn_rec at;
} attn_res_rec;

/* h (B*L, ch) + Attention(LayerNorm(src)), keys from kv (B/kv_group * Lk, kvdim) or self when kv
 * is NULL -> new buffer. */
static float *attn_res_fwd(ctx *c, attn_res_rec *r, const char *norm, const char *attn, const float *h,
                           const float *src, int B, int L, int ch, int heads, const float *kv, int Lk, int kvdim,
                           int kv_group)
{
    size_t n = (size_t)B * L * ch;
    float *a = ln_fwd(c, &r->ln, norm, src, B * L, ch);
    float *o = attn_fwd(c, &r->at, attn, a, kv, B, L, Lk, ch, kvdim, heads, kv_group);
    float *y = kept(c, n);
    c->be->add(c->be, y, h, o, n);
    return y;
}

/* dh (the output's gradient) becomes the gradient of h, to which src's gradient is added (src is
 * h, or h plus a constant); the keys' source gradient is added into dkv_acc. */
static void attn_res_bwd(ctx *c, const attn_res_rec *r, float *dh, float *dkv_acc)
{
    float *da = attn_bwd(c, &r->at, dh, dkv_acc);
    float *dsrc = ln_bwd(c, &r->ln, da);
    c->be->add(c->be, dh, dh, dsrc, (size_t)r->ln.M * r->ln.C);
    release(c, da), release(c, dsrc);
}

typedef struct {
    ln_rec ln;
    linear_rec fc1, fc2;
    float *pre; /* fc1's output, before GELU */
} ff_rec;

/* h (M, ch) + fc2(GELU(fc1(LayerNorm(h)))) -> new buffer */
static float *ff_fwd(ctx *c, ff_rec *r, const char *norm, const char *ff, const float *h, int M, int ch)
{
    char n[160];
    float *a = ln_fwd(c, &r->ln, norm, h, M, ch);
    snprintf(n, sizeof n, "%s.fc1", ff), r->pre = linear_fwd(c, &r->fc1, n, a, M, ch, 4 * ch);
    float *g = kept(c, (size_t)M * 4 * ch);
    c->be->gelu(c->be, g, r->pre, (size_t)M * 4 * ch);
    snprintf(n, sizeof n, "%s.fc2", ff);
    float *f = linear_fwd(c, &r->fc2, n, g, M, 4 * ch, ch), *y = kept(c, (size_t)M * ch);
    c->be->add(c->be, y, h, f, (size_t)M * ch);
    return y;
}

/* dh: the output's gradient in, h's gradient out. */
static void ff_bwd(ctx *c, const ff_rec *r, float *dh)
{
    size_t nmid = (size_t)r->fc1.M * r->fc1.out;
    float *dg = linear_bwd(c, &r->fc2, dh, 1), *dpre = buffer(c, nmid);
    c->be->gelu_backward(c->be, dpre, dg, r->pre, nmid);
    float *da = linear_bwd(c, &r->fc1, dpre, 1), *dx = ln_bwd(c, &r->ln, da);
    c->be->add(c->be, dh, dh, dx, (size_t)r->ln.M * r->ln.C);
    release(c, dg), release(c, dpre), release(c, da), release(c, dx);
}

/* ---- text encoder ---- */

typedef struct {
    attn_res_rec *attn;
    ff_rec *ff;
    ln_rec out;
    const int32_t *ids;
    int N;
} text_rec;

/* ids (N, L) -> (N, L, D) */
static float *text_fwd(ctx *c, text_rec *r, const int32_t *ids, int N)
{
    const vd_text_config *t = &c->m->cfg.text;
    int L = t->max_tokens, D = t->dim;
    char p1[96], p2[96];
    r->attn = vd_calloc((size_t)t->layers, sizeof *r->attn);
    r->ff = vd_calloc((size_t)t->layers, sizeof *r->ff);
    r->ids = ids, r->N = N;
    float *x = kept(c, (size_t)N * L * D);
    c->be->embedding(c->be, x, ids, weight(c, "text.token_emb", ""), N * L, D);
    c->be->add_broadcast(c->be, x, weight(c, "text.pos_emb", ""), (size_t)N, (size_t)L * D);
    for (int i = 0; i < t->layers; i++) {
        snprintf(p1, sizeof p1, "text.layers.%d.norm1", i), snprintf(p2, sizeof p2, "text.layers.%d.attn", i);
        x = attn_res_fwd(c, &r->attn[i], p1, p2, x, x, N, L, D, t->heads, NULL, 0, 0, 1);
        snprintf(p1, sizeof p1, "text.layers.%d.norm2", i), snprintf(p2, sizeof p2, "text.layers.%d.ff", i);
        x = ff_fwd(c, &r->ff[i], p1, p2, x, N * L, D);
    }
    return ln_fwd(c, &r->out, "text.norm_out", x, N * L, D);
}

static void text_bwd(ctx *c, text_rec *r, const float *dout)
{
    const vd_text_config *t = &c->m->cfg.text;
    int L = t->max_tokens, D = t->dim;
    float *dx = ln_bwd(c, &r->out, dout);
    for (int i = t->layers - 1; i >= 0; i--) {
        ff_bwd(c, &r->ff[i], dx);
        attn_res_bwd(c, &r->attn[i], dx, NULL);
    }
    c->be->embedding_backward(c->be, grad(c, "text.token_emb", ""), dx, r->ids, r->N * L, D);
    c->be->add_broadcast_backward(c->be, grad(c, "text.pos_emb", ""), dx, (size_t)r->N, (size_t)L * D);
    release(c, dx);
    free(r->attn), free(r->ff);
}

/* ---- UNet parts ---- */

typedef struct {
    int N, T, G, L, temb_dim, head_dim, context_dim;
    const float *temb_act;    /* SiLU(time embedding) (N, temb_dim) */
    const float *text;        /* (N, L, context_dim) */
    const float *frame_index; /* (T) 0..T-1 */
    float *dtemb_act, *dtext; /* their gradients, accumulated by the backward */
} unet_state;

typedef struct {
    linear_rec fc1, fc2;
    float *pre1, *pre2; /* fc1's and fc2's outputs, before SiLU */
} time_rec;

/* t (N) -> SiLU(fc2(SiLU(fc1(timestep_embedding(t, c0))))) (N, 4c0) */
static float *time_fwd(ctx *c, time_rec *r, const float *t, int N)
{
    int c0 = c->m->cfg.unet.channels[0], td = 4 * c0;
    float *e = kept(c, (size_t)N * c0), *a1 = kept(c, (size_t)N * td), *a2 = kept(c, (size_t)N * td);
    c->be->timestep_embedding(c->be, e, t, N, c0);
    r->pre1 = linear_fwd(c, &r->fc1, "unet.time.fc1", e, N, c0, td);
    c->be->silu(c->be, a1, r->pre1, (size_t)N * td);
    r->pre2 = linear_fwd(c, &r->fc2, "unet.time.fc2", a1, N, td, td);
    c->be->silu(c->be, a2, r->pre2, (size_t)N * td);
    return a2;
}

static void time_bwd(ctx *c, const time_rec *r, const float *dact)
{
    size_t n = (size_t)r->fc2.M * r->fc2.out;
    float *d2 = buffer(c, n), *d1 = buffer(c, n);
    c->be->silu_backward(c->be, d2, dact, r->pre2, n);
    float *da1 = linear_bwd(c, &r->fc2, d2, 1);
    c->be->silu_backward(c->be, d1, da1, r->pre1, n);
    linear_bwd(c, &r->fc1, d1, 0); /* the sinusoidal embedding has no parameters */
    release(c, d2), release(c, d1), release(c, da1);
}

typedef struct {
    char tconv[96]; /* prefix of the temporal conv's weights */
    norm_silu_rec n1, n2, n3;
    conv_rec c1, c2, skip;
    linear_rec time;
    const float *a3; /* the temporal conv's input */
    int ci, co, S, has_skip;
} res3d_rec;

/* ResBlock3D: x (N*T, ci, H, W) -> (N*T, co, H, W) */
static float *res3d_fwd(ctx *c, res3d_rec *r, const unet_state *u, const char *p, const float *x, int ci, int co,
                        int H, int W)
{
    vd_backend *be = c->be;
    int B = u->N * u->T, S = H * W;
    size_t n = (size_t)B * co * S;
    char name[160];
    memset(r, 0, sizeof *r);
    r->ci = ci, r->co = co, r->S = S, r->has_skip = ci != co;
    snprintf(r->tconv, sizeof r->tconv, "%s.tconv", p);
    snprintf(name, sizeof name, "%s.norm1", p);
    float *a1 = norm_silu_fwd(c, &r->n1, name, x, B, ci, S, u->G);
    snprintf(name, sizeof name, "%s.conv1", p);
    float *h1 = conv_fwd(c, &r->c1, name, a1, B, ci, H, W, co, 3, 1);
    snprintf(name, sizeof name, "%s.time", p);
    float *tb = linear_fwd(c, &r->time, name, u->temb_act, u->N, u->temb_dim, co);
    be->add_channel_bias(be, h1, tb, u->N, u->T, co, S); /* conv1's backward reads a1, not h1 */
    snprintf(name, sizeof name, "%s.norm2", p);
    float *a2 = norm_silu_fwd(c, &r->n2, name, h1, B, co, S, u->G);
    snprintf(name, sizeof name, "%s.conv2", p);
    float *h2 = conv_fwd(c, &r->c2, name, a2, B, co, H, W, co, 3, 1), *x2 = kept(c, n);
    if (r->has_skip) {
        snprintf(name, sizeof name, "%s.skip", p);
        be->add(be, x2, conv_fwd(c, &r->skip, name, x, B, ci, H, W, co, 1, 1), h2, n);
    } else {
        be->add(be, x2, x, h2, n);
    }
    snprintf(name, sizeof name, "%s.norm3", p);
    r->a3 = norm_silu_fwd(c, &r->n3, name, x2, B, co, S, u->G);
    float *tc = kept(c, n), *out = kept(c, n);
    be->temporal_conv(be, tc, r->a3, weight(c, r->tconv, ".weight"), weight(c, r->tconv, ".bias"), u->N, u->T, co,
                      co, S);
    be->add(be, out, x2, tc, n);
    return out;
}

/* dout -> new dx; the time embedding's gradient is added into u->dtemb_act. */
static float *res3d_bwd(ctx *c, const res3d_rec *r, const unet_state *u, const float *dout)
{
    vd_backend *be = c->be;
    int B = u->N * u->T;
    size_t n = (size_t)B * r->co * r->S;
    float *da3 = buffer(c, n);
    be->temporal_conv_backward(be, da3, grad(c, r->tconv, ".weight"), grad(c, r->tconv, ".bias"), dout, r->a3,
                               weight(c, r->tconv, ".weight"), u->N, u->T, r->co, r->co, r->S);
    float *dx2 = norm_silu_bwd(c, &r->n3, da3);
    be->add(be, dx2, dx2, dout, n);
    release(c, da3);
    float *da2 = conv_bwd(c, &r->c2, dx2, 1), *dh1 = norm_silu_bwd(c, &r->n2, da2);
    release(c, da2);
    float *dtb = zeroed(c, (size_t)u->N * r->co);
    be->add_channel_bias_backward(be, dtb, dh1, u->N, u->T, r->co, r->S);
    float *dte = linear_bwd(c, &r->time, dtb, 1);
    be->add(be, u->dtemb_act, u->dtemb_act, dte, (size_t)u->N * u->temb_dim);
    release(c, dtb), release(c, dte);
    float *da1 = conv_bwd(c, &r->c1, dh1, 1), *dx = norm_silu_bwd(c, &r->n1, da1);
    release(c, dh1), release(c, da1);
    if (r->has_skip) {
        float *ds = conv_bwd(c, &r->skip, dx2, 1);
        be->add(be, dx, dx, ds, (size_t)B * r->ci * r->S);
        release(c, ds);
    } else {
        be->add(be, dx, dx, dx2, n);
    }
    release(c, dx2);
    return dx;
}

typedef struct {
    gn_rec gn;
    linear_rec proj_in, proj_out;
    attn_res_rec spatial, cross, temporal;
    ff_rec ff;
    int ch, S;
} attn3d_rec;

/* x (N*T, ch, H, W) + AttnBlock3D(x) -> new buffer */
static float *attn3d_fwd(ctx *c, attn3d_rec *r, const unet_state *u, const char *p, const float *x, int ch, int H,
                         int W)
{
    vd_backend *be = c->be;
    int N = u->N, T = u->T, B = N * T, S = H * W, heads = ch / u->head_dim;
    size_t n = (size_t)B * S * ch;
    char n1[160], n2[160];
    r->ch = ch, r->S = S;
    snprintf(n1, sizeof n1, "%s.norm", p);
    float *g = gn_fwd(c, &r->gn, n1, x, B, ch, S, u->G), *tok = kept(c, n);
    be->transpose(be, tok, g, B, ch, S, 1); /* (B, ch, S) -> (B, S, ch) */
    snprintf(n1, sizeof n1, "%s.proj_in", p);
    float *h = linear_fwd(c, &r->proj_in, n1, tok, B * S, ch, ch);
    snprintf(n1, sizeof n1, "%s.norm1", p), snprintf(n2, sizeof n2, "%s.attn1", p);
    h = attn_res_fwd(c, &r->spatial, n1, n2, h, h, B, S, ch, heads, NULL, 0, 0, 1);
    snprintf(n1, sizeof n1, "%s.norm2", p), snprintf(n2, sizeof n2, "%s.attn2", p);
    h = attn_res_fwd(c, &r->cross, n1, n2, h, h, B, S, ch, heads, u->text, u->L, u->context_dim, T);
    snprintf(n1, sizeof n1, "%s.norm3", p), snprintf(n2, sizeof n2, "%s.ff", p);
    h = ff_fwd(c, &r->ff, n1, n2, h, B * S, ch);
    /* temporal: (N, T, S, ch) -> (N, S, T, ch), attention over T with frame positions added */
    float *ht = kept(c, n), *fe = kept(c, (size_t)T * ch), *hp = kept(c, n);
    be->transpose(be, ht, h, N, T, S, ch);
    be->timestep_embedding(be, fe, u->frame_index, T, ch);
    be->copy(be, hp, ht, n * sizeof(float));
    be->add_broadcast(be, hp, fe, (size_t)N * S, (size_t)T * ch);
    snprintf(n1, sizeof n1, "%s.norm_t", p), snprintf(n2, sizeof n2, "%s.attn_t", p);
    h = attn_res_fwd(c, &r->temporal, n1, n2, ht, hp, N * S, T, ch, heads, NULL, 0, 0, 1);
    float *hb = kept(c, n);
    be->transpose(be, hb, h, N, S, T, ch); /* back to (N, T, S, ch) */
    snprintf(n1, sizeof n1, "%s.proj_out", p);
    float *po = linear_fwd(c, &r->proj_out, n1, hb, B * S, ch, ch), *pt = kept(c, n), *out = kept(c, n);
    be->transpose(be, pt, po, B, S, ch, 1); /* (B, S, ch) -> (B, ch, S) */
    be->add(be, out, x, pt, n);
    return out;
}

/* dout -> new dx; the text's gradient (cross-attention keys) is added into u->dtext. */
static float *attn3d_bwd(ctx *c, const attn3d_rec *r, const unet_state *u, const float *dout)
{
    vd_backend *be = c->be;
    int N = u->N, T = u->T, B = N * T, S = r->S, ch = r->ch;
    size_t n = (size_t)B * S * ch;
    float *dpo = buffer(c, n), *dh = buffer(c, n);
    be->transpose(be, dpo, dout, B, ch, S, 1);
    float *dhb = linear_bwd(c, &r->proj_out, dpo, 1);
    be->transpose(be, dh, dhb, N, T, S, ch); /* (N, S, T, ch): the temporal layout */
    release(c, dpo), release(c, dhb);
    attn_res_bwd(c, &r->temporal, dh, NULL); /* hp = ht + a constant: its gradient joins ht's */
    float *dtok = buffer(c, n);
    be->transpose(be, dtok, dh, N, S, T, ch); /* (N, T, S, ch) */
    release(c, dh);
    ff_bwd(c, &r->ff, dtok);
    attn_res_bwd(c, &r->cross, dtok, u->dtext);
    attn_res_bwd(c, &r->spatial, dtok, NULL);
    float *dt = linear_bwd(c, &r->proj_in, dtok, 1), *dg = buffer(c, n);
    be->transpose(be, dg, dt, B, S, ch, 1);
    float *dx = gn_bwd(c, &r->gn, dg);
    be->add(be, dx, dx, dout, n);
    release(c, dtok), release(c, dt), release(c, dg);
    return dx;
}

/* ---- the UNet, walked by its stage plan ---- */

typedef struct {
    conv_rec conv;      /* conv_in, downsample, upsample, conv_out */
    norm_silu_rec norm; /* norm_out */
    res3d_rec res, res2; /* a block's ResBlock3D; mid's res1 and res2 */
    attn3d_rec attn;
    int H, W;           /* the stage's input resolution */
    size_t out_floats;  /* the size of its output */
    int skip_from;      /* an up block's popped skip: the stage that made it, else -1 */
} stage_rec;

static float *block_fwd(ctx *c, stage_rec *r, const unet_state *u, const vd_unet_stage *s, const float *x, int H,
                        int W)
{
    char p[96];
    snprintf(p, sizeof p, "unet.%s.res", s->name);
    float *y = res3d_fwd(c, &r->res, u, p, x, s->ci, s->co, H, W);
    if (s->attn) snprintf(p, sizeof p, "unet.%s.attn", s->name), y = attn3d_fwd(c, &r->attn, u, p, y, s->co, H, W);
    return y;
}

static float *block_bwd(ctx *c, const stage_rec *r, const unet_state *u, const vd_unet_stage *s, const float *dy)
{
    if (!s->attn) return res3d_bwd(c, &r->res, u, dy);
    float *d = attn3d_bwd(c, &r->attn, u, dy), *dx = res3d_bwd(c, &r->res, u, d);
    release(c, d);
    return dx;
}

/* x (N*T, in_channels, h, w) -> prediction (N*T, out_channels, h, w); out[i] is stage i's output. */
static float *unet_fwd(ctx *c, const vd_unet_stage *st, int nst, stage_rec *rec, float **out, const unet_state *u,
                       const float *x, int h, int w)
{
    vd_backend *be = c->be;
    int B = u->N * u->T, H = h, W = w;
    int (*skips)[VD_UNET_MAX_STAGES] = vd_calloc(VD_MAX_LEVELS, sizeof *skips); /* stage indices */
    int skip_n[VD_MAX_LEVELS] = {0};
    char p[96];
    float *cur = NULL;
    for (int i = 0; i < nst; i++) {
        const vd_unet_stage *s = &st[i];
        stage_rec *r = &rec[i];
        r->H = H, r->W = W, r->skip_from = -1;
        switch (s->kind) {
        case VD_STAGE_CONV_IN: cur = conv_fwd(c, &r->conv, "unet.conv_in", x, B, s->ci, H, W, s->co, 3, 1); break;
        case VD_STAGE_DOWN_BLOCK: cur = block_fwd(c, r, u, s, cur, H, W); break;
        case VD_STAGE_DOWNSAMPLE:
            snprintf(p, sizeof p, "unet.down.%d.down", s->level);
            cur = conv_fwd(c, &r->conv, p, cur, B, s->ci, H, W, s->co, 3, 2);
            H /= 2, W /= 2;
            break;
        case VD_STAGE_MID:
            cur = res3d_fwd(c, &r->res, u, "unet.mid.res1", cur, s->ci, s->co, H, W);
            if (s->attn) cur = attn3d_fwd(c, &r->attn, u, "unet.mid.attn", cur, s->co, H, W);
            cur = res3d_fwd(c, &r->res2, u, "unet.mid.res2", cur, s->co, s->co, H, W);
            break;
        case VD_STAGE_UP_BLOCK:
            if (s->skip_ch) {
                r->skip_from = skips[s->level][--skip_n[s->level]];
                float *cat = kept(c, (size_t)B * s->ci * H * W);
                be->concat_channels(be, cat, cur, s->ci - s->skip_ch, out[r->skip_from], s->skip_ch, B, H * W);
                cur = cat;
            }
            cur = block_fwd(c, r, u, s, cur, H, W);
            break;
        case VD_STAGE_UPSAMPLE: {
            float *up = kept(c, (size_t)B * s->ci * H * W * 4);
            be->upsample2x(be, up, cur, B, s->ci, H, W);
            H *= 2, W *= 2;
            snprintf(p, sizeof p, "unet.up.%d.up", s->level);
            cur = conv_fwd(c, &r->conv, p, up, B, s->ci, H, W, s->co, 3, 1);
            break;
        }
        case VD_STAGE_OUT:
            cur = norm_silu_fwd(c, &r->norm, "unet.norm_out", cur, B, s->ci, H * W, u->G);
            cur = conv_fwd(c, &r->conv, "unet.conv_out", cur, B, s->ci, H, W, s->co, 3, 1);
            break;
        }
        out[i] = cur;
        r->out_floats = (size_t)B * s->co * H * W;
        if (s->push >= 0) skips[s->push][skip_n[s->push]++] = i;
    }
    free(skips);
    return cur;
}

/* dpred (taken over and released) -> parameter gradients; x_in gets none. */
static void unet_bwd(ctx *c, const vd_unet_stage *st, int nst, const stage_rec *rec, const unet_state *u,
                     float *dpred)
{
    vd_backend *be = c->be;
    int B = u->N * u->T;
    float **dskip = vd_calloc((size_t)nst, sizeof *dskip); /* gradients reaching a stage's output through a skip */
    float *d = dpred;
    for (int i = nst - 1; i >= 0; i--) {
        const vd_unet_stage *s = &st[i];
        const stage_rec *r = &rec[i];
        int S = r->H * r->W;
        float *next = NULL;
        if (dskip[i]) {
            be->add(be, d, d, dskip[i], r->out_floats);
            release(c, dskip[i]);
        }
        switch (s->kind) {
        case VD_STAGE_CONV_IN: conv_bwd(c, &r->conv, d, 0); break;
        case VD_STAGE_DOWN_BLOCK: next = block_bwd(c, r, u, s, d); break;
        case VD_STAGE_DOWNSAMPLE: next = conv_bwd(c, &r->conv, d, 1); break;
        case VD_STAGE_MID: {
            float *a = res3d_bwd(c, &r->res2, u, d);
            if (s->attn) {
                float *b = attn3d_bwd(c, &r->attn, u, a);
                release(c, a), a = b;
            }
            next = res3d_bwd(c, &r->res, u, a);
            release(c, a);
            break;
        }
        case VD_STAGE_UP_BLOCK:
            next = block_bwd(c, r, u, s, d);
            if (r->skip_from >= 0) {
                int ca = s->ci - s->skip_ch;
                float *dprev = buffer(c, (size_t)B * ca * S), *ds = buffer(c, (size_t)B * s->skip_ch * S);
                be->concat_channels_backward(be, dprev, ds, next, ca, s->skip_ch, B, S);
                release(c, next), next = dprev;
                dskip[r->skip_from] = ds;
            }
            break;
        case VD_STAGE_UPSAMPLE: {
            float *du = conv_bwd(c, &r->conv, d, 1);
            next = buffer(c, (size_t)B * s->ci * S);
            be->upsample2x_backward(be, next, du, B, s->ci, r->H, r->W);
            release(c, du);
            break;
        }
        case VD_STAGE_OUT: {
            float *da = conv_bwd(c, &r->conv, d, 1);
            next = norm_silu_bwd(c, &r->norm, da);
            release(c, da);
            break;
        }
        }
        release(c, d);
        d = next;
    }
    free(dskip);
}

/* ---- the whole pass ---- */

float vd_denoiser_loss_and_grads(vd_model *m, float *grads, const int32_t *ids, const float *x_in, const float *t,
                                 const float *v_target, int N, int T, int h, int w)
{
    const vd_unet_config *cfg = &m->cfg.unet;
    if (!m->cfg.text.present || !cfg->present) {
        VD_LOG(VD_LOG_ERROR, "the denoiser's training pass needs a text encoder and a UNet");
        abort();
    }
    ctx c = {.m = m, .be = m->be, .grads = grads};
    vd_unet_stage *st = vd_malloc(VD_UNET_MAX_STAGES * sizeof *st);
    char err[160];
    int nst = vd_unet_plan(cfg, st, err, sizeof err);
    if (nst < 0) {
        VD_LOG(VD_LOG_ERROR, "%s", err); /* the model was built from this config: cannot happen */
        abort();
    }
    int L = m->cfg.text.max_tokens, D = m->cfg.text.dim, td = 4 * cfg->channels[0];
    unet_state u = {.N = N, .T = T, .G = cfg->groups, .L = L, .temb_dim = td, .head_dim = cfg->head_dim,
                    .context_dim = cfg->context_dim};

    text_rec text;
    time_rec time;
    u.text = text_fwd(&c, &text, ids, N);
    u.temb_act = time_fwd(&c, &time, t, N);
    float *frames = kept(&c, (size_t)T), *frame_host = vd_malloc((size_t)T * sizeof(float));
    for (int i = 0; i < T; i++) frame_host[i] = (float)i;
    c.be->upload(c.be, frames, frame_host, (size_t)T * sizeof(float));
    free(frame_host);
    u.frame_index = frames;
    stage_rec *rec = vd_calloc((size_t)nst, sizeof *rec);
    float **outs = vd_calloc((size_t)nst, sizeof *outs);
    const float *pred = unet_fwd(&c, st, nst, rec, outs, &u, x_in, h, w);

    size_t n = (size_t)N * T * cfg->out_channels * h * w;
    float *dpred = buffer(&c, n), loss = 0.0f;
    c.be->mse_loss(c.be, &loss, dpred, pred, v_target, n, 1.0f);
    u.dtemb_act = zeroed(&c, (size_t)N * td);
    u.dtext = zeroed(&c, (size_t)N * L * D);
    unet_bwd(&c, st, nst, rec, &u, dpred);
    time_bwd(&c, &time, u.dtemb_act);
    text_bwd(&c, &text, u.dtext);

    release(&c, u.dtemb_act), release(&c, u.dtext);
    for (int i = 0; i < c.keep_count; i++) release(&c, c.keep[i]);
    free(c.keep), free(rec), free(outs), free(st);
    return loss;
}
