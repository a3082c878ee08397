/* train_layers.h: the layer records the training passes share (ae_train.c, denoiser_train.c):
 * each forward fills a record with what its backward reads, each backward writes the input
 * gradient into a fresh buffer and accumulates the parameter gradients into the pass's gradient
 * buffer (the model's parameter layout). Activations a forward makes are "kept" by the context
 * and released together when the pass ends. */
#ifndef VD_TRAIN_LAYERS_H
#define VD_TRAIN_LAYERS_H

#include "model.h"

typedef struct {
    vd_model *m;
    vd_backend *be;
    float *grads;
    float **keep; /* forward activations, released after the backward */
    int keep_count, keep_cap;
} tl_ctx;

typedef struct {
    char name[96];
    const float *x;
    int B, ci, H, W, co, k, stride;
} tl_conv_rec;

typedef struct {
    char name[96];
    const float *x;
    int M, in, out, has_bias;
} tl_linear_rec;

typedef struct {
    char name[96];
    const float *x;
    int B, C, S, G;
} tl_gn_rec;

typedef struct {
    tl_gn_rec gn;
    float *g; /* GroupNorm(x), before SiLU */
} tl_norm_silu_rec;

typedef struct {
    char name[96];
    const float *x;
    int M, C;
} tl_ln_rec;

/* The parameter prefix + suffix; a missing one aborts unless optional. */
const vd_param *tl_lookup(tl_ctx *c, const char *prefix, const char *suffix, int optional);

const float *tl_weight(tl_ctx *c, const char *prefix, const char *suffix);

float *tl_grad(tl_ctx *c, const char *prefix, const char *suffix);

/* A scratch buffer of n floats from the model's pool (model.h), and its release. */
float *tl_buffer(tl_ctx *c, size_t n);
void tl_release(tl_ctx *c, float *p);

/* A forward activation: lives until the end of the training pass. */
float *tl_kept(tl_ctx *c, size_t n);

float *tl_zeroed(tl_ctx *c, size_t n);

/* x (B, ci, H, W) -> y (B, co, Ho, Wo) */
float *tl_conv_fwd(tl_ctx *c, tl_conv_rec *r, const char *name, const float *x, int B, int ci, int H, int W, int co,
                       int k, int stride);

/* dy -> new dx (none when want_dx is 0). */
float *tl_conv_bwd(tl_ctx *c, const tl_conv_rec *r, const float *dy, int want_dx);

/* x (M, in) -> y (M, out) */
float *tl_linear_fwd(tl_ctx *c, tl_linear_rec *r, const char *name, const float *x, int M, int in, int out);

float *tl_linear_bwd(tl_ctx *c, const tl_linear_rec *r, const float *dy, int want_dx);

/* GroupNorm over images x (B, C, S) -> y */
float *tl_gn_fwd(tl_ctx *c, tl_gn_rec *r, const char *name, const float *x, int B, int C, int S, int G);

float *tl_gn_bwd(tl_ctx *c, const tl_gn_rec *r, const float *dy);

/* SiLU(GroupNorm(x)), x (B, C, S) */
float *tl_norm_silu_fwd(tl_ctx *c, tl_norm_silu_rec *r, const char *name, const float *x, int B, int C, int S, int G);

float *tl_norm_silu_bwd(tl_ctx *c, const tl_norm_silu_rec *r, const float *da);

/* LayerNorm over rows x (M, C) -> y */
float *tl_ln_fwd(tl_ctx *c, tl_ln_rec *r, const char *name, const float *x, int M, int C);

float *tl_ln_bwd(tl_ctx *c, const tl_ln_rec *r, const float *dy);

/* Releases every kept activation (the end of a training pass). */
void tl_release_kept(tl_ctx *c);

#endif
