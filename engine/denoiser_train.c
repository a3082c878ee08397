/* denoiser_train.c: the denoiser's training pass (see denoiser_train.h). As in ae_train.c, every
 * forward step fills a record with what its backward reads, and each layer's backward sits beside
 * its forward. The UNet is walked by model.c's stage plan, forward and then in reverse. Every
 * activation the forward makes is kept until the backward has finished; parameter gradients
 * accumulate into the caller's buffer, activation gradients are fresh buffers. */
#include "denoiser_train.h"
#include "common.h"
#include "train_layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- attention with its projections ---- */

typedef struct {
    tl_linear_rec q, k, v, out;
    const float *qb, *kb, *vb; /* projected queries, keys, values */
    int B, Lq, Lk, heads, d, kv_group, self;
} attn_rec;

/* Queries from xq (B*Lq, qdim); keys and values from xkv (B/kv_group * Lk, kvdim), or from xq
 * when xkv is NULL -> y (B*Lq, qdim). */
static float *attn_fwd(tl_ctx *c, attn_rec *r, const char *p, const float *xq, const float *xkv, int B, int Lq, int Lk,
                       int qdim, int kvdim, int heads, int kv_group)
{
    char n[160];
    int self = xkv == NULL;
    if (self) xkv = xq, Lk = Lq, kvdim = qdim, kv_group = 1;
    int Bkv = B / kv_group;
    *r = (attn_rec){.B = B, .Lq = Lq, .Lk = Lk, .heads = heads, .d = qdim / heads, .kv_group = kv_group, .self = self};
    snprintf(n, sizeof n, "%s.to_q", p), r->qb = tl_linear_fwd(c, &r->q, n, xq, B * Lq, qdim, qdim);
    snprintf(n, sizeof n, "%s.to_k", p), r->kb = tl_linear_fwd(c, &r->k, n, xkv, Bkv * Lk, kvdim, qdim);
    snprintf(n, sizeof n, "%s.to_v", p), r->vb = tl_linear_fwd(c, &r->v, n, xkv, Bkv * Lk, kvdim, qdim);
    float *o = tl_kept(c, (size_t)B * Lq * qdim);
    c->be->attention(c->be, o, r->qb, r->kb, r->vb, B, Lq, Lk, heads, r->d, kv_group);
    snprintf(n, sizeof n, "%s.to_out", p);
    return tl_linear_fwd(c, &r->out, n, o, B * Lq, qdim, qdim);
}

/* dy -> new dxq; for cross-attention the keys' source gradient is added into dkv_acc. */
static float *attn_bwd(tl_ctx *c, const attn_rec *r, const float *dy, float *dkv_acc)
{
    vd_backend *be = c->be;
    size_t nq = (size_t)r->B * r->Lq * r->q.out, nkv = (size_t)(r->B / r->kv_group) * r->Lk * r->q.out;
    float *dob = tl_linear_bwd(c, &r->out, dy, 1);
    float *dq = tl_buffer(c, nq), *dk = tl_buffer(c, nkv), *dv = tl_buffer(c, nkv);
    be->attention_backward(be, dq, dk, dv, dob, r->qb, r->kb, r->vb, r->B, r->Lq, r->Lk, r->heads, r->d, r->kv_group);
    tl_release(c, dob);
    float *dxq = tl_linear_bwd(c, &r->q, dq, 1), *dxk = tl_linear_bwd(c, &r->k, dk, 1), *dxv = tl_linear_bwd(c, &r->v, dv, 1);
    float *acc = r->self ? dxq : dkv_acc;
    size_t nsrc = (size_t)r->k.M * r->k.in;
    be->add(be, acc, acc, dxk, nsrc);
    be->add(be, acc, acc, dxv, nsrc);
    tl_release(c, dq), tl_release(c, dk), tl_release(c, dv), tl_release(c, dxk), tl_release(c, dxv);
    return dxq;
}

/* ---- residual sublayers of the transformers ---- */

typedef struct {
    tl_ln_rec ln;
    attn_rec at;
} attn_res_rec;

/* h (B*L, ch) + Attention(LayerNorm(src)), keys from kv (B/kv_group * Lk, kvdim) or self when kv
 * is NULL -> new buffer. */
static float *attn_res_fwd(tl_ctx *c, attn_res_rec *r, const char *norm, const char *attn, const float *h,
                           const float *src, int B, int L, int ch, int heads, const float *kv, int Lk, int kvdim,
                           int kv_group)
{
    size_t n = (size_t)B * L * ch;
    float *a = tl_ln_fwd(c, &r->ln, norm, src, B * L, ch);
    float *o = attn_fwd(c, &r->at, attn, a, kv, B, L, Lk, ch, kvdim, heads, kv_group);
    float *y = tl_kept(c, n);
    c->be->add(c->be, y, h, o, n);
    return y;
}

/* dh (the output's gradient) becomes the gradient of h, to which src's gradient is added (src is
 * h, or h plus a constant); the keys' source gradient is added into dkv_acc. */
static void attn_res_bwd(tl_ctx *c, const attn_res_rec *r, float *dh, float *dkv_acc)
{
    float *da = attn_bwd(c, &r->at, dh, dkv_acc);
    float *dsrc = tl_ln_bwd(c, &r->ln, da);
    c->be->add(c->be, dh, dh, dsrc, (size_t)r->ln.M * r->ln.C);
    tl_release(c, da), tl_release(c, dsrc);
}

typedef struct {
    tl_ln_rec ln;
    tl_linear_rec fc1, fc2;
    float *pre; /* fc1's output, before GELU */
} ff_rec;

/* h (M, ch) + fc2(GELU(fc1(LayerNorm(h)))) -> new buffer */
static float *ff_fwd(tl_ctx *c, ff_rec *r, const char *norm, const char *ff, const float *h, int M, int ch)
{
    char n[160];
    float *a = tl_ln_fwd(c, &r->ln, norm, h, M, ch);
    snprintf(n, sizeof n, "%s.fc1", ff), r->pre = tl_linear_fwd(c, &r->fc1, n, a, M, ch, 4 * ch);
    float *g = tl_kept(c, (size_t)M * 4 * ch);
    c->be->gelu(c->be, g, r->pre, (size_t)M * 4 * ch);
    snprintf(n, sizeof n, "%s.fc2", ff);
    float *f = tl_linear_fwd(c, &r->fc2, n, g, M, 4 * ch, ch), *y = tl_kept(c, (size_t)M * ch);
    c->be->add(c->be, y, h, f, (size_t)M * ch);
    return y;
}

/* dh: the output's gradient in, h's gradient out. */
static void ff_bwd(tl_ctx *c, const ff_rec *r, float *dh)
{
    size_t nmid = (size_t)r->fc1.M * r->fc1.out;
    float *dg = tl_linear_bwd(c, &r->fc2, dh, 1), *dpre = tl_buffer(c, nmid);
    c->be->gelu_backward(c->be, dpre, dg, r->pre, nmid);
    float *da = tl_linear_bwd(c, &r->fc1, dpre, 1), *dx = tl_ln_bwd(c, &r->ln, da);
    c->be->add(c->be, dh, dh, dx, (size_t)r->ln.M * r->ln.C);
    tl_release(c, dg), tl_release(c, dpre), tl_release(c, da), tl_release(c, dx);
}

/* ---- text encoder ---- */

typedef struct {
    attn_res_rec *attn;
    ff_rec *ff;
    tl_ln_rec out;
    const int32_t *ids;
    int N;
} text_rec;

/* ids (N, L) -> (N, L, D) */
static float *text_fwd(tl_ctx *c, text_rec *r, const int32_t *ids, int N)
{
    const vd_text_config *t = &c->m->cfg.text;
    int L = t->max_tokens, D = t->dim;
    char p1[96], p2[96];
    r->attn = vd_calloc((size_t)t->layers, sizeof *r->attn);
    r->ff = vd_calloc((size_t)t->layers, sizeof *r->ff);
    r->ids = ids, r->N = N;
    float *x = tl_kept(c, (size_t)N * L * D);
    c->be->embedding(c->be, x, ids, tl_weight(c, "text.token_emb", ""), N * L, D);
    c->be->add_broadcast(c->be, x, tl_weight(c, "text.pos_emb", ""), (size_t)N, (size_t)L * D);
    for (int i = 0; i < t->layers; i++) {
        snprintf(p1, sizeof p1, "text.layers.%d.norm1", i), snprintf(p2, sizeof p2, "text.layers.%d.attn", i);
        x = attn_res_fwd(c, &r->attn[i], p1, p2, x, x, N, L, D, t->heads, NULL, 0, 0, 1);
        snprintf(p1, sizeof p1, "text.layers.%d.norm2", i), snprintf(p2, sizeof p2, "text.layers.%d.ff", i);
        x = ff_fwd(c, &r->ff[i], p1, p2, x, N * L, D);
    }
    return tl_ln_fwd(c, &r->out, "text.norm_out", x, N * L, D);
}

static void text_bwd(tl_ctx *c, text_rec *r, const float *dout)
{
    const vd_text_config *t = &c->m->cfg.text;
    int L = t->max_tokens, D = t->dim;
    float *dx = tl_ln_bwd(c, &r->out, dout);
    for (int i = t->layers - 1; i >= 0; i--) {
        ff_bwd(c, &r->ff[i], dx);
        attn_res_bwd(c, &r->attn[i], dx, NULL);
    }
    c->be->embedding_backward(c->be, tl_grad(c, "text.token_emb", ""), dx, r->ids, r->N * L, D);
    c->be->add_broadcast_backward(c->be, tl_grad(c, "text.pos_emb", ""), dx, (size_t)r->N, (size_t)L * D);
    tl_release(c, dx);
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
    tl_linear_rec fc1, fc2, pool;
    float *pre1, *pre2; /* fc1's output, and fc2's plus the pooled text's: the SiLUs' inputs */
    int pooled;         /* the model has unet.text_pool */
} time_rec;

/* t (N), text (N, L, D) -> SiLU(fc2(SiLU(fc1(timestep_embedding(t, c0)))) [+ text_pool(mean over
 * the L tokens of text)]) (N, 4c0) */
static float *time_fwd(tl_ctx *c, time_rec *r, const float *t, const float *text, int N)
{
    const vd_unet_config *u = &c->m->cfg.unet;
    int c0 = u->channels[0], td = 4 * c0, L = c->m->cfg.text.max_tokens, D = u->context_dim;
    float *e = tl_kept(c, (size_t)N * c0), *a1 = tl_kept(c, (size_t)N * td), *a2 = tl_kept(c, (size_t)N * td);
    c->be->timestep_embedding(c->be, e, t, N, c0);
    r->pre1 = tl_linear_fwd(c, &r->fc1, "unet.time.fc1", e, N, c0, td);
    c->be->silu(c->be, a1, r->pre1, (size_t)N * td);
    r->pre2 = tl_linear_fwd(c, &r->fc2, "unet.time.fc2", a1, N, td, td);
    r->pooled = u->pooled_text;
    if (r->pooled) {
        float *mean = tl_kept(c, (size_t)N * D);
        vd_text_mean(c->be, mean, text, N, L, D);
        float *proj = tl_linear_fwd(c, &r->pool, "unet.text_pool", mean, N, D, td);
        c->be->add(c->be, r->pre2, r->pre2, proj, (size_t)N * td);
    }
    c->be->silu(c->be, a2, r->pre2, (size_t)N * td);
    return a2;
}

/* dact: the gradient of time_fwd's output; the pooled text's gradient is added to dtext. */
static void time_bwd(tl_ctx *c, const time_rec *r, const float *dact, float *dtext)
{
    size_t n = (size_t)r->fc2.M * r->fc2.out;
    float *d2 = tl_buffer(c, n), *d1 = tl_buffer(c, n);
    c->be->silu_backward(c->be, d2, dact, r->pre2, n);
    if (r->pooled) {
        int N = r->pool.M, D = r->pool.in, L = c->m->cfg.text.max_tokens;
        float *dmean = tl_linear_bwd(c, &r->pool, d2, 1);
        c->be->axpby(c->be, dmean, 1.0f / (float)L, dmean, 0.0f, (size_t)N * D);
        c->be->add_channel_bias(c->be, dtext, dmean, N, L, D, 1);
        tl_release(c, dmean);
    }
    float *da1 = tl_linear_bwd(c, &r->fc2, d2, 1);
    c->be->silu_backward(c->be, d1, da1, r->pre1, n);
    tl_linear_bwd(c, &r->fc1, d1, 0); /* the sinusoidal embedding has no parameters */
    tl_release(c, d2), tl_release(c, d1), tl_release(c, da1);
}

typedef struct {
    char tconv[96]; /* prefix of the temporal conv's weights */
    tl_norm_silu_rec n1, n2, n3;
    tl_conv_rec c1, c2, skip;
    tl_linear_rec time;
    const float *a3; /* the temporal conv's input */
    int ci, cm, co, S, has_skip, has_tconv;
} res3d_rec;

/* ResBlock3D: x (N*T, ci, H, W) -> (N*T, co, H, W), cm channels wide inside. The temporal conv runs
 * when the model has its weights: a removed temporal unit ("temporal.l") declares none for its
 * level's blocks. */
static float *res3d_fwd(tl_ctx *c, res3d_rec *r, const unet_state *u, const char *p, const float *x, int ci, int cm,
                        int co, int H, int W)
{
    vd_backend *be = c->be;
    int B = u->N * u->T, S = H * W;
    size_t n = (size_t)B * co * S;
    char name[160];
    memset(r, 0, sizeof *r);
    r->ci = ci, r->cm = cm, r->co = co, r->S = S, r->has_skip = ci != co;
    snprintf(r->tconv, sizeof r->tconv, "%s.tconv", p);
    r->has_tconv = tl_lookup(c, r->tconv, ".weight", 1) != NULL;
    snprintf(name, sizeof name, "%s.norm1", p);
    float *a1 = tl_norm_silu_fwd(c, &r->n1, name, x, B, ci, S, u->G);
    snprintf(name, sizeof name, "%s.conv1", p);
    float *h1 = tl_conv_fwd(c, &r->c1, name, a1, B, ci, H, W, cm, 3, 1);
    snprintf(name, sizeof name, "%s.time", p);
    float *tb = tl_linear_fwd(c, &r->time, name, u->temb_act, u->N, u->temb_dim, cm);
    be->add_channel_bias(be, h1, tb, u->N, u->T, cm, S); /* conv1's backward reads a1, not h1 */
    snprintf(name, sizeof name, "%s.norm2", p);
    float *a2 = tl_norm_silu_fwd(c, &r->n2, name, h1, B, cm, S, u->G * cm / co);
    snprintf(name, sizeof name, "%s.conv2", p);
    float *h2 = tl_conv_fwd(c, &r->c2, name, a2, B, cm, H, W, co, 3, 1), *x2 = tl_kept(c, n);
    if (r->has_skip) {
        snprintf(name, sizeof name, "%s.skip", p);
        be->add(be, x2, tl_conv_fwd(c, &r->skip, name, x, B, ci, H, W, co, 1, 1), h2, n);
    } else {
        be->add(be, x2, x, h2, n);
    }
    if (!r->has_tconv) return x2;
    snprintf(name, sizeof name, "%s.norm3", p);
    r->a3 = tl_norm_silu_fwd(c, &r->n3, name, x2, B, co, S, u->G);
    float *tc = tl_kept(c, n), *out = tl_kept(c, n);
    be->temporal_conv(be, tc, r->a3, tl_weight(c, r->tconv, ".weight"), tl_weight(c, r->tconv, ".bias"), u->N, u->T, co,
                      co, S);
    be->add(be, out, x2, tc, n);
    return out;
}

/* dout -> new dx; the time embedding's gradient is added into u->dtemb_act. */
static float *res3d_bwd(tl_ctx *c, const res3d_rec *r, const unet_state *u, const float *dout)
{
    vd_backend *be = c->be;
    int B = u->N * u->T;
    size_t n = (size_t)B * r->co * r->S;
    float *dx2;
    if (r->has_tconv) {
        float *da3 = tl_buffer(c, n);
        be->temporal_conv_backward(be, da3, tl_grad(c, r->tconv, ".weight"), tl_grad(c, r->tconv, ".bias"), dout, r->a3,
                                   tl_weight(c, r->tconv, ".weight"), u->N, u->T, r->co, r->co, r->S);
        dx2 = tl_norm_silu_bwd(c, &r->n3, da3);
        be->add(be, dx2, dx2, dout, n);
        tl_release(c, da3);
    } else {
        dx2 = tl_buffer(c, n);
        be->copy(be, dx2, dout, n * sizeof(float));
    }
    float *da2 = tl_conv_bwd(c, &r->c2, dx2, 1), *dh1 = tl_norm_silu_bwd(c, &r->n2, da2);
    tl_release(c, da2);
    float *dtb = tl_zeroed(c, (size_t)u->N * r->cm);
    be->add_channel_bias_backward(be, dtb, dh1, u->N, u->T, r->cm, r->S);
    float *dte = tl_linear_bwd(c, &r->time, dtb, 1);
    be->add(be, u->dtemb_act, u->dtemb_act, dte, (size_t)u->N * u->temb_dim);
    tl_release(c, dtb), tl_release(c, dte);
    float *da1 = tl_conv_bwd(c, &r->c1, dh1, 1), *dx = tl_norm_silu_bwd(c, &r->n1, da1);
    tl_release(c, dh1), tl_release(c, da1);
    if (r->has_skip) {
        float *ds = tl_conv_bwd(c, &r->skip, dx2, 1);
        be->add(be, dx, dx, ds, (size_t)B * r->ci * r->S);
        tl_release(c, ds);
    } else {
        be->add(be, dx, dx, dx2, n);
    }
    tl_release(c, dx2);
    return dx;
}

typedef struct {
    tl_gn_rec gn;
    tl_linear_rec proj_in, proj_out;
    attn_res_rec spatial, cross, temporal;
    ff_rec ff;
    int ch, S, has_temporal;
} attn3d_rec;

/* x (N*T, ch, H, W) + AttnBlock3D(x) -> new buffer. The temporal self-attention runs when the model
 * has its weights: a removed temporal unit ("temporal.l") declares none for its level's blocks. */
static float *attn3d_fwd(tl_ctx *c, attn3d_rec *r, const unet_state *u, const char *p, const float *x, int ch, int H,
                         int W)
{
    vd_backend *be = c->be;
    int N = u->N, T = u->T, B = N * T, S = H * W, heads = ch / u->head_dim;
    size_t n = (size_t)B * S * ch;
    char n1[160], n2[160];
    r->ch = ch, r->S = S;
    snprintf(n1, sizeof n1, "%s.attn_t", p);
    r->has_temporal = tl_lookup(c, n1, ".to_q.weight", 1) != NULL;
    snprintf(n1, sizeof n1, "%s.norm", p);
    float *g = tl_gn_fwd(c, &r->gn, n1, x, B, ch, S, u->G), *tok = tl_kept(c, n);
    be->transpose(be, tok, g, B, ch, S, 1); /* (B, ch, S) -> (B, S, ch) */
    snprintf(n1, sizeof n1, "%s.proj_in", p);
    float *h = tl_linear_fwd(c, &r->proj_in, n1, tok, B * S, ch, ch);
    snprintf(n1, sizeof n1, "%s.norm1", p), snprintf(n2, sizeof n2, "%s.attn1", p);
    h = attn_res_fwd(c, &r->spatial, n1, n2, h, h, B, S, ch, heads, NULL, 0, 0, 1);
    snprintf(n1, sizeof n1, "%s.norm2", p), snprintf(n2, sizeof n2, "%s.attn2", p);
    h = attn_res_fwd(c, &r->cross, n1, n2, h, h, B, S, ch, heads, u->text, u->L, u->context_dim, T);
    snprintf(n1, sizeof n1, "%s.norm3", p), snprintf(n2, sizeof n2, "%s.ff", p);
    h = ff_fwd(c, &r->ff, n1, n2, h, B * S, ch);
    if (r->has_temporal) {
        /* temporal: (N, T, S, ch) -> (N, S, T, ch), attention over T with frame positions added */
        float *ht = tl_kept(c, n), *fe = tl_kept(c, (size_t)T * ch), *hp = tl_kept(c, n);
        be->transpose(be, ht, h, N, T, S, ch);
        be->timestep_embedding(be, fe, u->frame_index, T, ch);
        be->copy(be, hp, ht, n * sizeof(float));
        be->add_broadcast(be, hp, fe, (size_t)N * S, (size_t)T * ch);
        snprintf(n1, sizeof n1, "%s.norm_t", p), snprintf(n2, sizeof n2, "%s.attn_t", p);
        float *ha = attn_res_fwd(c, &r->temporal, n1, n2, ht, hp, N * S, T, ch, heads, NULL, 0, 0, 1);
        h = tl_kept(c, n);
        be->transpose(be, h, ha, N, S, T, ch); /* back to (N, T, S, ch) */
    }
    snprintf(n1, sizeof n1, "%s.proj_out", p);
    float *po = tl_linear_fwd(c, &r->proj_out, n1, h, B * S, ch, ch), *pt = tl_kept(c, n), *out = tl_kept(c, n);
    be->transpose(be, pt, po, B, S, ch, 1); /* (B, S, ch) -> (B, ch, S) */
    be->add(be, out, x, pt, n);
    return out;
}

/* dout -> new dx; the text's gradient (cross-attention keys) is added into u->dtext. */
static float *attn3d_bwd(tl_ctx *c, const attn3d_rec *r, const unet_state *u, const float *dout)
{
    vd_backend *be = c->be;
    int N = u->N, T = u->T, B = N * T, S = r->S, ch = r->ch;
    size_t n = (size_t)B * S * ch;
    float *dpo = tl_buffer(c, n);
    be->transpose(be, dpo, dout, B, ch, S, 1);
    float *dtok = tl_linear_bwd(c, &r->proj_out, dpo, 1); /* (N, T, S, ch) */
    tl_release(c, dpo);
    if (r->has_temporal) {
        float *dh = tl_buffer(c, n);
        be->transpose(be, dh, dtok, N, T, S, ch); /* (N, S, T, ch): the temporal layout */
        attn_res_bwd(c, &r->temporal, dh, NULL); /* hp = ht + a constant: its gradient joins ht's */
        be->transpose(be, dtok, dh, N, S, T, ch); /* back to (N, T, S, ch) */
        tl_release(c, dh);
    }
    ff_bwd(c, &r->ff, dtok);
    attn_res_bwd(c, &r->cross, dtok, u->dtext);
    attn_res_bwd(c, &r->spatial, dtok, NULL);
    float *dt = tl_linear_bwd(c, &r->proj_in, dtok, 1), *dg = tl_buffer(c, n);
    be->transpose(be, dg, dt, B, S, ch, 1);
    float *dx = tl_gn_bwd(c, &r->gn, dg);
    be->add(be, dx, dx, dout, n);
    tl_release(c, dtok), tl_release(c, dt), tl_release(c, dg);
    return dx;
}

/* ---- the UNet, walked by its stage plan ---- */

typedef struct {
    tl_conv_rec conv;      /* conv_in, downsample, upsample, conv_out */
    tl_norm_silu_rec norm; /* norm_out */
    res3d_rec res, res2; /* a block's ResBlock3D; mid's res1 and res2 */
    attn3d_rec attn;
    int H, W;           /* the stage's input resolution */
    size_t out_floats;  /* the size of its output */
    int skip_from;      /* an up block's popped skip: the stage that made it, else -1 */
} stage_rec;

static float *block_fwd(tl_ctx *c, stage_rec *r, const unet_state *u, const vd_unet_stage *s, const float *x, int H,
                        int W)
{
    char p[96];
    snprintf(p, sizeof p, "unet.%s.res", s->name);
    float *y = res3d_fwd(c, &r->res, u, p, x, s->ci, s->cm, s->co, H, W);
    if (s->attn) snprintf(p, sizeof p, "unet.%s.attn", s->name), y = attn3d_fwd(c, &r->attn, u, p, y, s->co, H, W);
    return y;
}

static float *block_bwd(tl_ctx *c, const stage_rec *r, const unet_state *u, const vd_unet_stage *s, const float *dy)
{
    if (!s->attn) return res3d_bwd(c, &r->res, u, dy);
    float *d = attn3d_bwd(c, &r->attn, u, dy), *dx = res3d_bwd(c, &r->res, u, d);
    tl_release(c, d);
    return dx;
}

/* x (N*T, in_channels, h, w) through stages 0..nst-1 -> the last one's output (the prediction
 * (N*T, out_channels, h, w) when nst is the whole plan); out[i] is stage i's output. */
static float *unet_fwd(tl_ctx *c, const vd_unet_stage *st, int nst, stage_rec *rec, float **out, const unet_state *u,
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
        case VD_STAGE_CONV_IN: cur = tl_conv_fwd(c, &r->conv, "unet.conv_in", x, B, s->ci, H, W, s->co, 3, 1); break;
        case VD_STAGE_DOWN_BLOCK: cur = block_fwd(c, r, u, s, cur, H, W); break;
        case VD_STAGE_DOWNSAMPLE:
            snprintf(p, sizeof p, "unet.down.%d.down", s->level);
            cur = tl_conv_fwd(c, &r->conv, p, cur, B, s->ci, H, W, s->co, 3, 2);
            H /= 2, W /= 2;
            break;
        case VD_STAGE_MID:
            cur = res3d_fwd(c, &r->res, u, "unet.mid.res1", cur, s->ci, s->cm, s->co, H, W);
            if (s->attn) cur = attn3d_fwd(c, &r->attn, u, "unet.mid.attn", cur, s->co, H, W);
            cur = res3d_fwd(c, &r->res2, u, "unet.mid.res2", cur, s->co, s->cm, s->co, H, W);
            break;
        case VD_STAGE_UP_BLOCK:
            if (s->skip_ch) {
                r->skip_from = skips[s->level][--skip_n[s->level]];
                float *cat = tl_kept(c, (size_t)B * s->ci * H * W);
                be->concat_channels(be, cat, cur, s->ci - s->skip_ch, out[r->skip_from], s->skip_ch, B, H * W);
                cur = cat;
            }
            cur = block_fwd(c, r, u, s, cur, H, W);
            break;
        case VD_STAGE_UPSAMPLE: {
            float *up = tl_kept(c, (size_t)B * s->ci * H * W * 4);
            be->upsample2x(be, up, cur, B, s->ci, H, W);
            H *= 2, W *= 2;
            snprintf(p, sizeof p, "unet.up.%d.up", s->level);
            cur = tl_conv_fwd(c, &r->conv, p, up, B, s->ci, H, W, s->co, 3, 1);
            break;
        }
        case VD_STAGE_OUT:
            cur = tl_norm_silu_fwd(c, &r->norm, "unet.norm_out", cur, B, s->ci, H * W, u->G);
            cur = tl_conv_fwd(c, &r->conv, "unet.conv_out", cur, B, s->ci, H, W, s->co, 3, 1);
            break;
        }
        out[i] = cur;
        r->out_floats = (size_t)B * s->co * H * W;
        if (s->push >= 0) skips[s->push][skip_n[s->push]++] = i;
    }
    free(skips);
    return cur;
}

/* dlast (the last stage's output gradient, taken over and released) -> parameter gradients, with
 * extra[i] (when extra and extra[i] are set) added to stage i's output gradient; the input's
 * gradient into dx_in when it is not NULL. */
static void unet_bwd(tl_ctx *c, const vd_unet_stage *st, int nst, const stage_rec *rec, const unet_state *u,
                     float *dlast, float *const *extra, float *dx_in)
{
    vd_backend *be = c->be;
    int B = u->N * u->T;
    float **dskip = vd_calloc((size_t)nst, sizeof *dskip); /* gradients reaching a stage's output through a skip */
    float *d = dlast;
    for (int i = nst - 1; i >= 0; i--) {
        const vd_unet_stage *s = &st[i];
        const stage_rec *r = &rec[i];
        int S = r->H * r->W;
        float *next = NULL;
        if (dskip[i]) {
            be->add(be, d, d, dskip[i], r->out_floats);
            tl_release(c, dskip[i]);
        }
        if (extra && extra[i]) be->add(be, d, d, extra[i], r->out_floats);
        switch (s->kind) {
        case VD_STAGE_CONV_IN:
            if (dx_in) {
                float *dx = tl_conv_bwd(c, &r->conv, d, 1);
                be->copy(be, dx_in, dx, (size_t)B * s->ci * S * sizeof(float));
                tl_release(c, dx);
            } else {
                tl_conv_bwd(c, &r->conv, d, 0);
            }
            break;
        case VD_STAGE_DOWN_BLOCK: next = block_bwd(c, r, u, s, d); break;
        case VD_STAGE_DOWNSAMPLE: next = tl_conv_bwd(c, &r->conv, d, 1); break;
        case VD_STAGE_MID: {
            float *a = res3d_bwd(c, &r->res2, u, d);
            if (s->attn) {
                float *b = attn3d_bwd(c, &r->attn, u, a);
                tl_release(c, a), a = b;
            }
            next = res3d_bwd(c, &r->res, u, a);
            tl_release(c, a);
            break;
        }
        case VD_STAGE_UP_BLOCK:
            next = block_bwd(c, r, u, s, d);
            if (r->skip_from >= 0) {
                int ca = s->ci - s->skip_ch;
                float *dprev = tl_buffer(c, (size_t)B * ca * S), *ds = tl_buffer(c, (size_t)B * s->skip_ch * S);
                be->concat_channels_backward(be, dprev, ds, next, ca, s->skip_ch, B, S);
                tl_release(c, next), next = dprev;
                dskip[r->skip_from] = ds;
            }
            break;
        case VD_STAGE_UPSAMPLE: {
            float *du = tl_conv_bwd(c, &r->conv, d, 1);
            next = tl_buffer(c, (size_t)B * s->ci * S);
            be->upsample2x_backward(be, next, du, B, s->ci, r->H, r->W);
            tl_release(c, du);
            break;
        }
        case VD_STAGE_OUT: {
            float *da = tl_conv_bwd(c, &r->conv, d, 1);
            next = tl_norm_silu_bwd(c, &r->norm, da);
            tl_release(c, da);
            break;
        }
        }
        tl_release(c, d);
        d = next;
    }
    free(dskip);
}

/* ---- the whole pass ---- */

struct vd_denoiser_pass {
    tl_ctx c;
    vd_unet_stage *st;
    int nst, run; /* stages in the plan, stages run */
    stage_rec *rec;
    float **outs;
    unet_state u;
    text_rec text;
    time_rec time;
};

vd_denoiser_pass *vd_denoiser_forward(vd_model *m, const int32_t *ids, const float *x_in, const float *t, int N, int T,
                                      int h, int w, int stop)
{
    const vd_unet_config *cfg = &m->cfg.unet;
    if (!m->cfg.text.present || !cfg->present) {
        VD_LOG(VD_LOG_ERROR, "the denoiser's training pass needs a text encoder and a UNet");
        abort();
    }
    vd_denoiser_pass *p = vd_calloc(1, sizeof *p);
    p->c = (tl_ctx){.m = m, .be = m->be};
    p->st = vd_malloc(VD_UNET_MAX_STAGES * sizeof *p->st);
    char err[160];
    p->nst = vd_unet_plan(cfg, p->st, err, sizeof err);
    if (p->nst < 0) {
        VD_LOG(VD_LOG_ERROR, "%s", err); /* the model was built from this config: cannot happen */
        abort();
    }
    p->run = stop > 0 && stop < p->nst ? stop : p->nst;
    int L = m->cfg.text.max_tokens, td = 4 * cfg->channels[0];
    p->u = (unet_state){.N = N, .T = T, .G = cfg->groups, .L = L, .temb_dim = td, .head_dim = cfg->head_dim,
                        .context_dim = cfg->context_dim};
    p->u.text = text_fwd(&p->c, &p->text, ids, N);
    p->u.temb_act = time_fwd(&p->c, &p->time, t, p->u.text, N);
    float *frames = tl_kept(&p->c, (size_t)T), *frame_host = vd_malloc((size_t)T * sizeof(float));
    for (int i = 0; i < T; i++) frame_host[i] = (float)i;
    p->c.be->upload(p->c.be, frames, frame_host, (size_t)T * sizeof(float));
    free(frame_host);
    p->u.frame_index = frames;
    p->rec = vd_calloc((size_t)p->nst, sizeof *p->rec);
    p->outs = vd_calloc((size_t)p->nst, sizeof *p->outs);
    unet_fwd(&p->c, p->st, p->run, p->rec, p->outs, &p->u, x_in, h, w);
    return p;
}

int vd_denoiser_pass_stages(const vd_denoiser_pass *p) { return p->run; }

const vd_unet_stage *vd_denoiser_pass_stage(const vd_denoiser_pass *p, int i) { return &p->st[i]; }

const float *vd_denoiser_pass_output(const vd_denoiser_pass *p, int i, size_t *floats)
{
    if (floats) *floats = p->rec[i].out_floats;
    return p->outs[i];
}

void vd_denoiser_backward(vd_denoiser_pass *p, float *grads, float *dlast, float *const *extra, float *dx_in)
{
    tl_ctx *c = &p->c;
    const vd_model *m = c->m;
    int N = p->u.N, L = m->cfg.text.max_tokens, D = m->cfg.text.dim;
    c->grads = grads;
    if (!dlast) dlast = tl_zeroed(c, p->rec[p->run - 1].out_floats);
    p->u.dtemb_act = tl_zeroed(c, (size_t)N * p->u.temb_dim);
    p->u.dtext = tl_zeroed(c, (size_t)N * L * D);
    unet_bwd(c, p->st, p->run, p->rec, &p->u, dlast, extra, dx_in);
    time_bwd(c, &p->time, p->u.dtemb_act, p->u.dtext);
    text_bwd(c, &p->text, p->u.dtext);
    tl_release(c, p->u.dtemb_act), tl_release(c, p->u.dtext);
    p->u.dtemb_act = p->u.dtext = NULL;
}

void vd_denoiser_pass_free(vd_denoiser_pass *p)
{
    if (!p) return;
    tl_release_kept(&p->c);
    free(p->text.attn), free(p->text.ff);
    free(p->rec), free(p->outs), free(p->st);
    free(p);
}

float vd_denoiser_loss_and_grads(vd_model *m, float *grads, const int32_t *ids, const float *x_in, const float *t,
                                 const float *v_target, const float *weight, int N, int T, int h, int w)
{
    vd_denoiser_pass *p = vd_denoiser_forward(m, ids, x_in, t, N, T, h, w, 0);
    size_t n;
    const float *pred = vd_denoiser_pass_output(p, p->run - 1, &n);
    float *dpred = tl_buffer(&p->c, n), loss = 0.0f;
    m->be->mse_loss(m->be, &loss, dpred, pred, v_target, weight, n, 1.0f);
    vd_denoiser_backward(p, grads, dpred, NULL, NULL);
    vd_denoiser_pass_free(p);
    return loss;
}
