/* ae_train.c: the autoencoder's training pass (see ae_train.h), built from the shared layer
 * records of train_layers.h: the backward walks the same structure as the forward in reverse,
 * so each layer's backward sits beside its forward. */
#include "ae_train.h"
#include "common.h"
#include "train_layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ResBlock2D: out = skip(x) + conv2(silu(gn2(conv1(silu(gn1(x)))))) ---- */

typedef struct {
    tl_norm_silu_rec n1, n2;
    tl_conv_rec c1, c2, skip;
    int has_skip;
} res_rec;

static float *res_fwd(tl_ctx *c, res_rec *r, const char *p, const float *x, int B, int ci, int co, int H, int W, int G)
{
    char name[96];
    int S = H * W;
    memset(r, 0, sizeof *r);
    snprintf(name, sizeof name, "%s.norm1", p);
    float *a1 = tl_norm_silu_fwd(c, &r->n1, name, x, B, ci, S, G);
    snprintf(name, sizeof name, "%s.conv1", p);
    float *h1 = tl_conv_fwd(c, &r->c1, name, a1, B, ci, H, W, co, 3, 1);
    snprintf(name, sizeof name, "%s.norm2", p);
    float *a2 = tl_norm_silu_fwd(c, &r->n2, name, h1, B, co, S, G);
    snprintf(name, sizeof name, "%s.conv2", p);
    float *out = tl_conv_fwd(c, &r->c2, name, a2, B, co, H, W, co, 3, 1);
    size_t n = (size_t)B * co * S;
    const float *skip = x;
    if (ci != co) {
        r->has_skip = 1;
        snprintf(name, sizeof name, "%s.skip", p);
        skip = tl_conv_fwd(c, &r->skip, name, x, B, ci, H, W, co, 1, 1);
    }
    c->be->add(c->be, out, out, skip, n);
    return out;
}

static float *res_bwd(tl_ctx *c, res_rec *r, const float *dout)
{
    float *da2 = tl_conv_bwd(c, &r->c2, dout, 1);
    float *dh1 = tl_norm_silu_bwd(c, &r->n2, da2);
    tl_release(c, da2);
    float *da1 = tl_conv_bwd(c, &r->c1, dh1, 1);
    tl_release(c, dh1);
    float *dx = tl_norm_silu_bwd(c, &r->n1, da1);
    tl_release(c, da1);
    size_t n = (size_t)r->n1.gn.B * r->n1.gn.C * r->n1.gn.S;
    if (r->has_skip) {
        float *ds = tl_conv_bwd(c, &r->skip, dout, 1);
        c->be->add(c->be, dx, dx, ds, n);
        tl_release(c, ds);
    } else {
        c->be->add(c->be, dx, dx, dout, n);
    }
    return dx;
}

/* ---- the whole autoencoder ---- */

typedef struct {
    tl_conv_rec enc_in, enc_down[VD_MAX_LEVELS], enc_out, dec_in, dec_up[VD_MAX_LEVELS], dec_out;
    res_rec enc_res[VD_MAX_LEVELS], enc_mid, dec_mid, dec_res[VD_MAX_LEVELS];
    tl_norm_silu_rec enc_norm, dec_norm;
    int up_B[VD_MAX_LEVELS], up_C[VD_MAX_LEVELS], up_H[VD_MAX_LEVELS], up_W[VD_MAX_LEVELS];
} ae_recs;

/* Forward of encode then decode with records; returns the reconstruction (B, 3, H, W). */
static float *ae_forward(tl_ctx *c, ae_recs *r, const float *img, int B, int H, int W)
{
    const vd_ae_config *a = &c->m->cfg.ae;
    vd_backend *be = c->be;
    int K = a->levels, G = a->groups, ch = a->channels[0], lc = a->latent_channels;
    char p[96];
    float *x = tl_conv_fwd(c, &r->enc_in, "ae.enc.conv_in", img, B, 3, H, W, ch, 3, 1);
    for (int l = 0; l < K; l++) {
        snprintf(p, sizeof p, "ae.enc.down.%d.res", l);
        x = res_fwd(c, &r->enc_res[l], p, x, B, ch, a->channels[l], H, W, G);
        ch = a->channels[l];
        if (l < K - 1) {
            snprintf(p, sizeof p, "ae.enc.down.%d.down", l);
            x = tl_conv_fwd(c, &r->enc_down[l], p, x, B, ch, H, W, ch, 3, 2);
            H /= 2, W /= 2;
        }
    }
    x = res_fwd(c, &r->enc_mid, "ae.enc.mid", x, B, ch, ch, H, W, G);
    x = tl_norm_silu_fwd(c, &r->enc_norm, "ae.enc.norm_out", x, B, ch, H * W, G);
    /* z = conv_out * scale, and the decoder divides by scale again: the two cancel */
    float *z = tl_conv_fwd(c, &r->enc_out, "ae.enc.conv_out", x, B, ch, H, W, lc, 3, 1);
    ch = a->channels[K - 1];
    x = tl_conv_fwd(c, &r->dec_in, "ae.dec.conv_in", z, B, lc, H, W, ch, 3, 1);
    x = res_fwd(c, &r->dec_mid, "ae.dec.mid", x, B, ch, ch, H, W, G);
    for (int l = K - 1; l >= 0; l--) {
        snprintf(p, sizeof p, "ae.dec.up.%d.res", l);
        x = res_fwd(c, &r->dec_res[l], p, x, B, ch, a->channels[l], H, W, G);
        ch = a->channels[l];
        if (l > 0) {
            float *u = tl_kept(c, (size_t)B * ch * 4 * H * W);
            be->upsample2x(be, u, x, B, ch, H, W);
            r->up_B[l] = B, r->up_C[l] = ch, r->up_H[l] = H, r->up_W[l] = W;
            H *= 2, W *= 2;
            snprintf(p, sizeof p, "ae.dec.up.%d.up", l);
            x = tl_conv_fwd(c, &r->dec_up[l], p, u, B, ch, H, W, ch, 3, 1);
        }
    }
    x = tl_norm_silu_fwd(c, &r->dec_norm, "ae.dec.norm_out", x, B, ch, H * W, G);
    return tl_conv_fwd(c, &r->dec_out, "ae.dec.conv_out", x, B, ch, H, W, 3, 3, 1);
}

/* d: a fresh gradient buffer, replaced by the next one (the old one released). */
static float *step_back(tl_ctx *c, float *d, float *next)
{
    tl_release(c, d);
    return next;
}

static void ae_backward(tl_ctx *c, ae_recs *r, const float *drec)
{
    vd_backend *be = c->be;
    int K = c->m->cfg.ae.levels;
    float *d = tl_conv_bwd(c, &r->dec_out, drec, 1);
    d = step_back(c, d, tl_norm_silu_bwd(c, &r->dec_norm, d));
    for (int l = 0; l < K; l++) {
        if (l > 0) {
            float *du = tl_conv_bwd(c, &r->dec_up[l], d, 1);
            d = step_back(c, d, tl_buffer(c, (size_t)r->up_B[l] * r->up_C[l] * r->up_H[l] * r->up_W[l]));
            be->upsample2x_backward(be, d, du, r->up_B[l], r->up_C[l], r->up_H[l], r->up_W[l]);
            tl_release(c, du);
        }
        d = step_back(c, d, res_bwd(c, &r->dec_res[l], d));
    }
    d = step_back(c, d, res_bwd(c, &r->dec_mid, d));
    d = step_back(c, d, tl_conv_bwd(c, &r->dec_in, d, 1));
    d = step_back(c, d, tl_conv_bwd(c, &r->enc_out, d, 1));
    d = step_back(c, d, tl_norm_silu_bwd(c, &r->enc_norm, d));
    d = step_back(c, d, res_bwd(c, &r->enc_mid, d));
    for (int l = K - 1; l >= 0; l--) {
        if (l < K - 1) d = step_back(c, d, tl_conv_bwd(c, &r->enc_down[l], d, 1));
        d = step_back(c, d, res_bwd(c, &r->enc_res[l], d));
    }
    tl_conv_bwd(c, &r->enc_in, d, 0); /* the image itself needs no gradient */
    tl_release(c, d);
}

/* ---- trainer ---- */

void vd_param_range(const vd_model *m, const char *const *prefixes, int count, size_t *begin, size_t *end)
{
    *begin = (size_t)-1, *end = 0;
    for (int i = 0; i < m->nparams; i++) {
        const vd_param *p = &m->params[i];
        int match = 0;
        for (int k = 0; k < count && !match; k++) match = strncmp(p->name, prefixes[k], strlen(prefixes[k])) == 0;
        if (!match) continue;
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
    tl_ctx c = {.m = t->m, .be = t->m->be, .grads = t->grads};
    ae_recs *r = vd_calloc(1, sizeof *r);
    float *rec = ae_forward(&c, r, img, B, H, W);
    size_t n = (size_t)B * 3 * H * W;
    float *drec = tl_buffer(&c, n), loss = 0.0f;
    c.be->mse_loss(c.be, &loss, drec, rec, img, NULL, n, 1.0f);
    ae_backward(&c, r, drec);
    tl_release(&c, drec);
    tl_release_kept(&c);
    free(r);
    return loss;
}

double vd_ae_optimizer_step(vd_ae_trainer *t, const vd_adamw_config *cfg)
{
    static const char *const ae_prefix[] = {"ae."}; /* the autoencoder's parameters: one contiguous range */
    size_t begin, end;
    vd_param_range(t->m, ae_prefix, 1, &begin, &end);
    return vd_adamw_range_step(t, cfg, begin, end);
}

double vd_adamw_range_step(vd_ae_trainer *t, const vd_adamw_config *cfg, size_t begin, size_t end)
{
    vd_model *m = t->m;
    vd_backend *be = m->be;
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
