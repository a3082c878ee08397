/* train_layers.c: the shared layer records of train_layers.h. */
#include "train_layers.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parameter prefix + suffix; a missing one aborts unless optional. */
const vd_param *tl_lookup(tl_ctx *c, const char *prefix, const char *suffix, int optional)
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

const float *tl_weight(tl_ctx *c, const char *prefix, const char *suffix)
{
    return c->m->weights + tl_lookup(c, prefix, suffix, 0)->offset;
}

float *tl_grad(tl_ctx *c, const char *prefix, const char *suffix)
{
    return c->grads + tl_lookup(c, prefix, suffix, 0)->offset;
}

float *tl_buffer(tl_ctx *c, size_t n) { return vd_model_scratch(c->m, n); }

void tl_release(tl_ctx *c, float *p) { vd_model_scratch_done(c->m, p); }

/* A forward activation: lives until the end of the training pass. */
float *tl_kept(tl_ctx *c, size_t n)
{
    if (c->keep_count == c->keep_cap) {
        c->keep_cap = c->keep_cap ? 2 * c->keep_cap : 256;
        c->keep = vd_realloc(c->keep, (size_t)c->keep_cap * sizeof *c->keep);
    }
    return c->keep[c->keep_count++] = tl_buffer(c, n);
}

float *tl_zeroed(tl_ctx *c, size_t n)
{
    float *p = tl_buffer(c, n);
    c->be->zero(c->be, p, n * sizeof(float));
    return p;
}

/* ---- convolution ---- */


/* x (B, ci, H, W) -> y (B, co, Ho, Wo) */
float *tl_conv_fwd(tl_ctx *c, tl_conv_rec *r, const char *name, const float *x, int B, int ci, int H, int W, int co,
                       int k, int stride)
{
    int Ho = (H + 2 * (k / 2) - k) / stride + 1, Wo = (W + 2 * (k / 2) - k) / stride + 1;
    *r = (tl_conv_rec){.x = x, .B = B, .ci = ci, .H = H, .W = W, .co = co, .k = k, .stride = stride};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = tl_kept(c, (size_t)B * co * Ho * Wo);
    c->be->conv2d(c->be, y, x, tl_weight(c, name, ".weight"), tl_weight(c, name, ".bias"), B, ci, H, W, co, k, stride);
    return y;
}

/* dy -> new dx (none when want_dx is 0). */
float *tl_conv_bwd(tl_ctx *c, const tl_conv_rec *r, const float *dy, int want_dx)
{
    float *dx = want_dx ? tl_buffer(c, (size_t)r->B * r->ci * r->H * r->W) : NULL;
    c->be->conv2d_backward(c->be, dx, tl_grad(c, r->name, ".weight"), tl_grad(c, r->name, ".bias"), dy, r->x,
                           tl_weight(c, r->name, ".weight"), r->B, r->ci, r->H, r->W, r->co, r->k, r->stride);
    return dx;
}

/* ---- linear (bias when the model has one) ---- */


/* x (M, in) -> y (M, out) */
float *tl_linear_fwd(tl_ctx *c, tl_linear_rec *r, const char *name, const float *x, int M, int in, int out)
{
    *r = (tl_linear_rec){.x = x, .M = M, .in = in, .out = out, .has_bias = tl_lookup(c, name, ".bias", 1) != NULL};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = tl_kept(c, (size_t)M * out);
    c->be->linear(c->be, y, x, tl_weight(c, name, ".weight"), r->has_bias ? tl_weight(c, name, ".bias") : NULL, M, in,
                  out);
    return y;
}

float *tl_linear_bwd(tl_ctx *c, const tl_linear_rec *r, const float *dy, int want_dx)
{
    float *dx = want_dx ? tl_buffer(c, (size_t)r->M * r->in) : NULL;
    c->be->linear_backward(c->be, dx, tl_grad(c, r->name, ".weight"), r->has_bias ? tl_grad(c, r->name, ".bias") : NULL,
                           dy, r->x, tl_weight(c, r->name, ".weight"), r->M, r->in, r->out);
    return dx;
}

/* ---- norms ---- */


/* GroupNorm over images x (B, C, S) -> y */
float *tl_gn_fwd(tl_ctx *c, tl_gn_rec *r, const char *name, const float *x, int B, int C, int S, int G)
{
    *r = (tl_gn_rec){.x = x, .B = B, .C = C, .S = S, .G = G};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = tl_kept(c, (size_t)B * C * S);
    c->be->group_norm(c->be, y, x, tl_weight(c, name, ".weight"), tl_weight(c, name, ".bias"), B, C, S, G, VD_NORM_EPS);
    return y;
}

float *tl_gn_bwd(tl_ctx *c, const tl_gn_rec *r, const float *dy)
{
    float *dx = tl_buffer(c, (size_t)r->B * r->C * r->S);
    c->be->group_norm_backward(c->be, dx, tl_grad(c, r->name, ".weight"), tl_grad(c, r->name, ".bias"), dy, r->x,
                               tl_weight(c, r->name, ".weight"), r->B, r->C, r->S, r->G, VD_NORM_EPS);
    return dx;
}


/* SiLU(GroupNorm(x)), x (B, C, S) */
float *tl_norm_silu_fwd(tl_ctx *c, tl_norm_silu_rec *r, const char *name, const float *x, int B, int C, int S, int G)
{
    r->g = tl_gn_fwd(c, &r->gn, name, x, B, C, S, G);
    size_t n = (size_t)B * C * S;
    float *a = tl_kept(c, n);
    c->be->silu(c->be, a, r->g, n);
    return a;
}

float *tl_norm_silu_bwd(tl_ctx *c, const tl_norm_silu_rec *r, const float *da)
{
    size_t n = (size_t)r->gn.B * r->gn.C * r->gn.S;
    float *dg = tl_buffer(c, n);
    c->be->silu_backward(c->be, dg, da, r->g, n);
    float *dx = tl_gn_bwd(c, &r->gn, dg);
    tl_release(c, dg);
    return dx;
}


/* LayerNorm over rows x (M, C) -> y */
float *tl_ln_fwd(tl_ctx *c, tl_ln_rec *r, const char *name, const float *x, int M, int C)
{
    *r = (tl_ln_rec){.x = x, .M = M, .C = C};
    snprintf(r->name, sizeof r->name, "%s", name);
    float *y = tl_kept(c, (size_t)M * C);
    c->be->layer_norm(c->be, y, x, tl_weight(c, name, ".weight"), tl_weight(c, name, ".bias"), M, C, VD_NORM_EPS);
    return y;
}

float *tl_ln_bwd(tl_ctx *c, const tl_ln_rec *r, const float *dy)
{
    float *dx = tl_buffer(c, (size_t)r->M * r->C);
    c->be->layer_norm_backward(c->be, dx, tl_grad(c, r->name, ".weight"), tl_grad(c, r->name, ".bias"), dy, r->x,
                               tl_weight(c, r->name, ".weight"), r->M, r->C, VD_NORM_EPS);
    return dx;
}

void tl_release_kept(tl_ctx *c)
{
    for (int i = 0; i < c->keep_count; i++) tl_release(c, c->keep[i]);
    free(c->keep);
    c->keep = NULL;
    c->keep_count = c->keep_cap = 0;
}
