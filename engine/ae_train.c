/* ae_train.c: the autoencoder's training pass (see ae_train.h). Every forward step keeps its
 * input and pre-activation buffers in a small record; the backward walks the same structure in
 * reverse, so each layer's backward sits beside its forward. Parameter gradients accumulate into
 * the trainer's gradient buffer, activation gradients are fresh buffers. */
#include "ae_train.h"
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NORM_EPS 1e-5f

typedef struct {
    vd_ae_trainer *t;
    vd_backend *be;
} ctx;

static size_t offset_of(const vd_model *m, const char *prefix, const char *suffix)
{
    char name[160];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    const vd_param *p = vd_model_param(m, name);
    if (!p) {
        VD_LOG(VD_LOG_ERROR, "parameter %s missing from the model", name);
        abort();
    }
    return p->offset;
}

static const float *weight(ctx *c, const char *prefix, const char *suffix)
{
    return c->t->m->weights + offset_of(c->t->m, prefix, suffix);
}

static float *grad(ctx *c, const char *prefix, const char *suffix)
{
    return c->t->grads + offset_of(c->t->m, prefix, suffix);
}

static float *buffer(ctx *c, size_t n) { return c->be->alloc(c->be, n * sizeof(float)); }
static void release(ctx *c, float *p) { c->be->release(c->be, p); }

/* ---- convolution ---- */

typedef struct {
    char name[96];
    const float *x; /* input, owned by whoever made it */
    int B, ci, H, W, co, k, stride, Ho, Wo;
} conv_rec;

static float *conv_fwd(ctx *c, conv_rec *r, const char *name, const float *x, int B, int ci, int H, int W, int co,
                       int k, int stride)
{
    int Ho = (H + 2 * (k / 2) - k) / stride + 1, Wo = (W + 2 * (k / 2) - k) / stride + 1;
    *r = (conv_rec){.x = x, .B = B, .ci = ci, .H = H, .W = W, .co = co, .k = k, .stride = stride, .Ho = Ho, .Wo = Wo};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = buffer(c, (size_t)B * co * Ho * Wo);
    c->be->conv2d(c->be, y, x, weight(c, name, ".weight"), weight(c, name, ".bias"), B, ci, H, W, co, k, stride);
    return y;
}

/* dy -> new dx (or none when want_dx is 0); parameter gradients accumulate. */
static float *conv_bwd(ctx *c, const conv_rec *r, const float *dy, int want_dx)
{
    float *dx = want_dx ? buffer(c, (size_t)r->B * r->ci * r->H * r->W) : NULL;
    c->be->conv2d_backward(c->be, dx, grad(c, r->name, ".weight"), grad(c, r->name, ".bias"), dy, r->x,
                           weight(c, r->name, ".weight"), r->B, r->ci, r->H, r->W, r->co, r->k, r->stride);
    return dx;
}

/* ---- group norm followed by SiLU ---- */

typedef struct {
    char name[96];
    const float *x;
    float *g; /* GroupNorm(x), before SiLU */
    int B, C, S, G;
} norm_silu_rec;

static float *norm_silu_fwd(ctx *c, norm_silu_rec *r, const char *name, const float *x, int B, int C, int S, int G)
{
    *r = (norm_silu_rec){.x = x, .B = B, .C = C, .S = S, .G = G};
    snprintf(r->name, sizeof r->name, "%s", name);
    size_t n = (size_t)B * C * S;
    r->g = buffer(c, n);
    c->be->group_norm(c->be, r->g, x, weight(c, name, ".weight"), weight(c, name, ".bias"), B, C, S, G, NORM_EPS);
    float *a = buffer(c, n);
    c->be->silu(c->be, a, r->g, n);
    return a;
}

static float *norm_silu_bwd(ctx *c, norm_silu_rec *r, const float *da)
{
    size_t n = (size_t)r->B * r->C * r->S;
    float *dg = buffer(c, n), *dx = buffer(c, n);
    c->be->silu_backward(c->be, dg, da, r->g, n);
    c->be->group_norm_backward(c->be, dx, grad(c, r->name, ".weight"), grad(c, r->name, ".bias"), dg, r->x,
                               weight(c, r->name, ".weight"), r->B, r->C, r->S, r->G, NORM_EPS);
    release(c, dg);
    release(c, r->g);
    return dx;
}

/* ---- ResBlock2D: out = skip(x) + conv2(silu(gn2(conv1(silu(gn1(x)))))) ---- */

typedef struct {
    norm_silu_rec n1, n2;
    conv_rec c1, c2, skip;
    float *a1, *h1, *a2; /* kept activations */
    int has_skip;
} res_rec;

static float *res_fwd(ctx *c, res_rec *r, const char *p, const float *x, int B, int ci, int co, int H, int W, int G)
{
    char name[96];
    int S = H * W;
    memset(r, 0, sizeof *r);
    snprintf(name, sizeof name, "%s.norm1", p), r->a1 = norm_silu_fwd(c, &r->n1, name, x, B, ci, S, G);
    snprintf(name, sizeof name, "%s.conv1", p), r->h1 = conv_fwd(c, &r->c1, name, r->a1, B, ci, H, W, co, 3, 1);
    snprintf(name, sizeof name, "%s.norm2", p), r->a2 = norm_silu_fwd(c, &r->n2, name, r->h1, B, co, S, G);
    snprintf(name, sizeof name, "%s.conv2", p);
    float *out = conv_fwd(c, &r->c2, name, r->a2, B, co, H, W, co, 3, 1);
    size_t n = (size_t)B * co * S;
    if (ci != co) {
        r->has_skip = 1;
        snprintf(name, sizeof name, "%s.skip", p);
        float *s = conv_fwd(c, &r->skip, name, x, B, ci, H, W, co, 1, 1);
        c->be->add(c->be, out, out, s, n);
        release(c, s);
    } else {
        c->be->add(c->be, out, out, x, n);
    }
    return out;
}

static float *res_bwd(ctx *c, res_rec *r, const float *dout)
{
    float *da2 = conv_bwd(c, &r->c2, dout, 1);
    float *dh1 = norm_silu_bwd(c, &r->n2, da2);
    release(c, da2);
    float *da1 = conv_bwd(c, &r->c1, dh1, 1);
    release(c, dh1);
    float *dx = norm_silu_bwd(c, &r->n1, da1);
    release(c, da1);
    size_t n = (size_t)r->n1.B * r->n1.C * r->n1.S;
    if (r->has_skip) {
        float *ds = conv_bwd(c, &r->skip, dout, 1);
        c->be->add(c->be, dx, dx, ds, n);
        release(c, ds);
    } else {
        c->be->add(c->be, dx, dx, dout, n);
    }
    release(c, r->a1), release(c, r->h1), release(c, r->a2);
    return dx;
}

/* ---- the whole autoencoder ---- */

#define MAX_AE_LEVELS VD_MAX_LEVELS

typedef struct {
    conv_rec enc_in, enc_down[MAX_AE_LEVELS], enc_out, dec_in, dec_up[MAX_AE_LEVELS], dec_out;
    res_rec enc_res[MAX_AE_LEVELS], enc_mid, dec_mid, dec_res[MAX_AE_LEVELS];
    norm_silu_rec enc_norm, dec_norm;
    float *keep[4 * MAX_AE_LEVELS + 16]; /* every activation the backward reads, freed at the end */
    int keep_count;
    int up_B[MAX_AE_LEVELS], up_C[MAX_AE_LEVELS], up_H[MAX_AE_LEVELS], up_W[MAX_AE_LEVELS];
} ae_recs;

static float *kept(ae_recs *r, float *p)
{
    r->keep[r->keep_count++] = p;
    return p;
}

/* Forward of encode then decode with records; returns the reconstruction (B, 3, H, W). */
static float *ae_forward(ctx *c, ae_recs *r, const float *img, int B, int H, int W)
{
    const vd_ae_config *a = &c->t->m->cfg.ae;
    vd_backend *be = c->be;
    int K = a->levels, G = a->groups, ch = a->channels[0], lc = a->latent_channels;
    char p[96];
    float *x = kept(r, conv_fwd(c, &r->enc_in, "ae.enc.conv_in", img, B, 3, H, W, ch, 3, 1));
    for (int l = 0; l < K; l++) {
        snprintf(p, sizeof p, "ae.enc.down.%d.res", l);
        x = kept(r, res_fwd(c, &r->enc_res[l], p, x, B, ch, a->channels[l], H, W, G));
        ch = a->channels[l];
        if (l < K - 1) {
            snprintf(p, sizeof p, "ae.enc.down.%d.down", l);
            x = kept(r, conv_fwd(c, &r->enc_down[l], p, x, B, ch, H, W, ch, 3, 2));
            H /= 2, W /= 2;
        }
    }
    x = kept(r, res_fwd(c, &r->enc_mid, "ae.enc.mid", x, B, ch, ch, H, W, G));
    x = kept(r, norm_silu_fwd(c, &r->enc_norm, "ae.enc.norm_out", x, B, ch, H * W, G));
    /* z = conv_out * scale, and the decoder divides by scale again: the two cancel */
    float *z = kept(r, conv_fwd(c, &r->enc_out, "ae.enc.conv_out", x, B, ch, H, W, lc, 3, 1));
    ch = a->channels[K - 1];
    x = kept(r, conv_fwd(c, &r->dec_in, "ae.dec.conv_in", z, B, lc, H, W, ch, 3, 1));
    x = kept(r, res_fwd(c, &r->dec_mid, "ae.dec.mid", x, B, ch, ch, H, W, G));
    for (int l = K - 1; l >= 0; l--) {
        snprintf(p, sizeof p, "ae.dec.up.%d.res", l);
        x = kept(r, res_fwd(c, &r->dec_res[l], p, x, B, ch, a->channels[l], H, W, G));
        ch = a->channels[l];
        if (l > 0) {
            float *u = kept(r, buffer(c, (size_t)B * ch * 4 * H * W));
            be->upsample2x(be, u, x, B, ch, H, W);
            r->up_B[l] = B, r->up_C[l] = ch, r->up_H[l] = H, r->up_W[l] = W;
            H *= 2, W *= 2;
            snprintf(p, sizeof p, "ae.dec.up.%d.up", l);
            x = kept(r, conv_fwd(c, &r->dec_up[l], p, u, B, ch, H, W, ch, 3, 1));
        }
    }
    x = kept(r, norm_silu_fwd(c, &r->dec_norm, "ae.dec.norm_out", x, B, ch, H * W, G));
    return conv_fwd(c, &r->dec_out, "ae.dec.conv_out", x, B, ch, H, W, 3, 3, 1);
}

static void ae_backward(ctx *c, ae_recs *r, const float *drec)
{
    const vd_ae_config *a = &c->t->m->cfg.ae;
    vd_backend *be = c->be;
    int K = a->levels;
    float *d = conv_bwd(c, &r->dec_out, drec, 1), *next;
    next = norm_silu_bwd(c, &r->dec_norm, d), release(c, d), d = next;
    for (int l = 0; l < K; l++) {
        if (l > 0) {
            float *du = conv_bwd(c, &r->dec_up[l], d, 1);
            release(c, d);
            d = buffer(c, (size_t)r->up_B[l] * r->up_C[l] * r->up_H[l] * r->up_W[l]);
            be->upsample2x_backward(be, d, du, r->up_B[l], r->up_C[l], r->up_H[l], r->up_W[l]);
            release(c, du);
        }
        next = res_bwd(c, &r->dec_res[l], d), release(c, d), d = next;
    }
    next = res_bwd(c, &r->dec_mid, d), release(c, d), d = next;
    next = conv_bwd(c, &r->dec_in, d, 1), release(c, d), d = next;
    next = conv_bwd(c, &r->enc_out, d, 1), release(c, d), d = next;
    next = norm_silu_bwd(c, &r->enc_norm, d), release(c, d), d = next;
    next = res_bwd(c, &r->enc_mid, d), release(c, d), d = next;
    for (int l = K - 1; l >= 0; l--) {
        if (l < K - 1) next = conv_bwd(c, &r->enc_down[l], d, 1), release(c, d), d = next;
        next = res_bwd(c, &r->enc_res[l], d), release(c, d), d = next;
    }
    conv_bwd(c, &r->enc_in, d, 0); /* the image itself needs no gradient */
    release(c, d);
    for (int i = 0; i < r->keep_count; i++) release(c, r->keep[i]);
}

/* ---- trainer ---- */

/* The autoencoder's parameters are one contiguous range of the buffer (declared first). */
static void ae_range(const vd_model *m, size_t *begin, size_t *end)
{
    *begin = (size_t)-1, *end = 0;
    for (int i = 0; i < m->nparams; i++) {
        const vd_param *p = &m->params[i];
        if (strncmp(p->name, "ae.", 3) != 0) continue;
        if (p->offset < *begin) *begin = p->offset;
        if (p->offset + p->numel > *end) *end = p->offset + p->numel;
    }
}

void vd_ae_trainer_init(vd_ae_trainer *t, vd_model *m)
{
    vd_backend *be = m->be;
    memset(t, 0, sizeof *t);
    t->m = m;
    size_t bytes = m->total * sizeof(float);
    t->grads = be->alloc(be, bytes);
    t->adam_m = be->alloc(be, bytes);
    t->adam_v = be->alloc(be, bytes);
    be->zero(be, t->grads, bytes);
    be->zero(be, t->adam_m, bytes);
    be->zero(be, t->adam_v, bytes);
}

void vd_ae_trainer_free(vd_ae_trainer *t)
{
    vd_backend *be = t->m->be;
    be->release(be, t->grads), be->release(be, t->adam_m), be->release(be, t->adam_v);
    memset(t, 0, sizeof *t);
}

void vd_ae_zero_grads(vd_ae_trainer *t)
{
    t->m->be->zero(t->m->be, t->grads, t->m->total * sizeof(float));
}

float vd_ae_loss_and_grads(vd_ae_trainer *t, const float *img, int B, int H, int W)
{
    ctx c = {.t = t, .be = t->m->be};
    ae_recs *r = vd_calloc(1, sizeof *r);
    float *rec = ae_forward(&c, r, img, B, H, W);
    size_t n = (size_t)B * 3 * H * W;
    float *drec = buffer(&c, n), loss = 0.0f;
    c.be->mse_loss(c.be, &loss, drec, rec, img, n, 1.0f);
    release(&c, rec);
    ae_backward(&c, r, drec);
    release(&c, drec);
    free(r);
    return loss;
}

double vd_ae_optimizer_step(vd_ae_trainer *t, const vd_adamw_config *cfg)
{
    vd_model *m = t->m;
    vd_backend *be = m->be;
    size_t begin, end;
    ae_range(m, &begin, &end);
    double sq = 0;
    be->sum_squares(be, &sq, t->grads + begin, end - begin);
    double norm = sqrt(sq);
    float scale = cfg->clip_norm > 0 && norm > cfg->clip_norm ? (float)(cfg->clip_norm / norm) : 1.0f;
    t->step++;
    be->adamw(be, m->weights + begin, t->grads + begin, t->adam_m + begin, t->adam_v + begin, end - begin, cfg->lr,
              cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, t->step, scale);
    be->declare_constant(be, m->weights, m->total * sizeof(float));
    return norm;
}
