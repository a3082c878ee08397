/* flop_count.c: a backend that computes nothing and counts the floating-point operations of the
 * matrix-product ops (conv2d, temporal_conv, linear, attention: 2 per multiply-add), so that
 * `vdmini info` can report GFLOPs per step by running the real forward pass. Their backward ops
 * count twice their forward's (one product for the input gradient, one for the weights; for
 * attention, the query and the key/value gradients); every other op counts nothing. Its memory is
 * address space only: pointers are handed out and never dereferenced. */
#include "flop_count.h"
#include "model.h"
#include "common.h"

#include <stdlib.h>

typedef struct {
    double flops;
    uintptr_t next;
} counter;

static counter *C(vd_backend *be) { return be->impl; }

static void *fc_alloc(vd_backend *be, size_t bytes)
{
    uintptr_t p = C(be)->next;
    C(be)->next += (bytes + 255) & ~(size_t)255;
    return (void *)p;
}
static void fc_release(vd_backend *be, void *p) { (void)be, (void)p; }
static void fc_move(vd_backend *be, void *d, const void *s, size_t n) { (void)be, (void)d, (void)s, (void)n; }
static void fc_zero(vd_backend *be, void *d, size_t n) { (void)be, (void)d, (void)n; }
static void fc_memory(vd_backend *be, size_t *used, size_t *total)
{
    (void)be;
    *used = *total = 0;
}
static void fc_sync(vd_backend *be) { (void)be; }
static void fc_declare(vd_backend *be, const void *p, size_t n) { (void)be, (void)p, (void)n; }
static void fc_destroy(vd_backend *be)
{
    free(be->impl);
    free(be);
}

static void fc_conv2d(vd_backend *be, float *y, const float *x, const float *w, const float *b, int B, int ci,
                      int H, int W, int co, int k, int stride)
{
    (void)y, (void)x, (void)w, (void)b;
    double ho = (H + 2 * (k / 2) - k) / stride + 1, wo = (W + 2 * (k / 2) - k) / stride + 1;
    C(be)->flops += 2.0 * B * co * ho * wo * ci * k * k;
}
static void fc_tconv(vd_backend *be, float *y, const float *x, const float *w, const float *b, int N, int T,
                     int ci, int co, int S)
{
    (void)y, (void)x, (void)w, (void)b;
    C(be)->flops += 2.0 * N * T * co * ci * 3.0 * S;
}
static void fc_norm(vd_backend *be, float *y, const float *x, const float *g, const float *b, int B, int C_,
                    int S, int G, float eps)
{
    (void)be, (void)y, (void)x, (void)g, (void)b, (void)B, (void)C_, (void)S, (void)G, (void)eps;
}
static void fc_lnorm(vd_backend *be, float *y, const float *x, const float *g, const float *b, int M, int C_,
                     float eps)
{
    (void)be, (void)y, (void)x, (void)g, (void)b, (void)M, (void)C_, (void)eps;
}
static void fc_unary(vd_backend *be, float *y, const float *x, size_t n) { (void)be, (void)y, (void)x, (void)n; }
static void fc_linear(vd_backend *be, float *y, const float *x, const float *w, const float *b, int M, int in,
                      int out)
{
    (void)y, (void)x, (void)w, (void)b;
    C(be)->flops += 2.0 * M * in * out;
}
static void fc_attention(vd_backend *be, float *o, const float *q, const float *k, const float *v, int B,
                         int Lq, int Lk, int heads, int d, int kv_group)
{
    (void)o, (void)q, (void)k, (void)v, (void)kv_group;
    C(be)->flops += 4.0 * B * heads * (double)Lq * Lk * d;
}
static void fc_up(vd_backend *be, float *y, const float *x, int B, int C_, int H, int W)
{
    (void)be, (void)y, (void)x, (void)B, (void)C_, (void)H, (void)W;
}
static void fc_add(vd_backend *be, float *y, const float *a, const float *b, size_t n)
{
    (void)be, (void)y, (void)a, (void)b, (void)n;
}
static void fc_axpby(vd_backend *be, float *y, float a, const float *x, float b, size_t n)
{
    (void)be, (void)y, (void)a, (void)x, (void)b, (void)n;
}
static void fc_noise(vd_backend *be, float *y, float scale, uint64_t seed, size_t n)
{
    (void)be, (void)y, (void)scale, (void)seed, (void)n;
}
static void fc_bcast(vd_backend *be, float *y, const float *x, size_t o, size_t i)
{
    (void)be, (void)y, (void)x, (void)o, (void)i;
}
static void fc_cbias(vd_backend *be, float *y, const float *b, int N, int T, int C_, int S)
{
    (void)be, (void)y, (void)b, (void)N, (void)T, (void)C_, (void)S;
}
static void fc_concat(vd_backend *be, float *y, const float *a, int ca, const float *b, int cb, int B, int S)
{
    (void)be, (void)y, (void)a, (void)ca, (void)b, (void)cb, (void)B, (void)S;
}
static void fc_transpose(vd_backend *be, float *y, const float *x, int A, int B, int C_, int D)
{
    (void)be, (void)y, (void)x, (void)A, (void)B, (void)C_, (void)D;
}
static void fc_temb(vd_backend *be, float *y, const float *t, int n, int dim)
{
    (void)be, (void)y, (void)t, (void)n, (void)dim;
}
static void fc_emb(vd_backend *be, float *y, const int32_t *ids, const float *table, int n, int dim)
{
    (void)be, (void)y, (void)ids, (void)table, (void)n, (void)dim;
}

static void fc_conv2d_bwd(vd_backend *be, float *dx, float *dw, float *db, const float *dy, const float *x,
                          const float *w, int B, int ci, int H, int W, int co, int k, int stride)
{
    (void)dx, (void)dw, (void)db, (void)dy, (void)x, (void)w;
    double ho = (H + 2 * (k / 2) - k) / stride + 1, wo = (W + 2 * (k / 2) - k) / stride + 1;
    C(be)->flops += 4.0 * B * co * ho * wo * ci * k * k;
}
static void fc_tconv_bwd(vd_backend *be, float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, int N, int T, int ci, int co, int S)
{
    (void)dx, (void)dw, (void)db, (void)dy, (void)x, (void)w;
    C(be)->flops += 4.0 * N * T * co * ci * 3.0 * S;
}
static void fc_norm_bwd(vd_backend *be, float *dx, float *dg, float *db, const float *dy, const float *x,
                        const float *g, int B, int C_, int S, int G, float eps)
{
    (void)be, (void)dx, (void)dg, (void)db, (void)dy, (void)x, (void)g, (void)B, (void)C_, (void)S, (void)G,
        (void)eps;
}
static void fc_lnorm_bwd(vd_backend *be, float *dx, float *dg, float *db, const float *dy, const float *x,
                         const float *g, int M, int C_, float eps)
{
    (void)be, (void)dx, (void)dg, (void)db, (void)dy, (void)x, (void)g, (void)M, (void)C_, (void)eps;
}
static void fc_unary_bwd(vd_backend *be, float *dx, const float *dy, const float *x, size_t n)
{
    (void)be, (void)dx, (void)dy, (void)x, (void)n;
}
static void fc_linear_bwd(vd_backend *be, float *dx, float *dw, float *db, const float *dy, const float *x,
                          const float *w, int M, int in, int out)
{
    (void)dx, (void)dw, (void)db, (void)dy, (void)x, (void)w;
    C(be)->flops += 4.0 * M * in * out;
}
static void fc_attention_bwd(vd_backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, int B, int Lq, int Lk, int heads, int d,
                             int kv_group)
{
    (void)dq, (void)dk, (void)dv, (void)dout, (void)q, (void)k, (void)v, (void)kv_group;
    C(be)->flops += 8.0 * B * heads * (double)Lq * Lk * d;
}
static void fc_up_bwd(vd_backend *be, float *dx, const float *dy, int B, int C_, int H, int W)
{
    (void)be, (void)dx, (void)dy, (void)B, (void)C_, (void)H, (void)W;
}
static void fc_concat_bwd(vd_backend *be, float *da, float *db, const float *dy, int ca, int cb, int B, int S)
{
    (void)be, (void)da, (void)db, (void)dy, (void)ca, (void)cb, (void)B, (void)S;
}
static void fc_bcast_bwd(vd_backend *be, float *dx, const float *dy, size_t o, size_t i)
{
    (void)be, (void)dx, (void)dy, (void)o, (void)i;
}
static void fc_cbias_bwd(vd_backend *be, float *dbias, const float *dy, int N, int T, int C_, int S)
{
    (void)be, (void)dbias, (void)dy, (void)N, (void)T, (void)C_, (void)S;
}
static void fc_emb_bwd(vd_backend *be, float *dtable, const float *dy, const int32_t *ids, int n, int dim)
{
    (void)be, (void)dtable, (void)dy, (void)ids, (void)n, (void)dim;
}
/* The training ops: the host results they report are zero, since nothing was computed. */
static void fc_mse(vd_backend *be, float *loss, float *dpred, const float *pred, const float *target,
                   const float *weight, size_t n, float scale)
{
    (void)be, (void)dpred, (void)pred, (void)target, (void)weight, (void)n, (void)scale;
    *loss = 0.0f;
}
static void fc_sumsq(vd_backend *be, double *out, const float *x, size_t n)
{
    (void)be, (void)x, (void)n;
    *out = 0.0;
}
static void fc_adamw(vd_backend *be, float *param, const float *grad, float *m, float *v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int step, float grad_scale)
{
    (void)be, (void)param, (void)grad, (void)m, (void)v, (void)n, (void)lr, (void)beta1, (void)beta2, (void)eps,
        (void)weight_decay, (void)step, (void)grad_scale;
}

vd_backend *vd_backend_flop_counter(void)
{
    vd_backend *be = vd_calloc(1, sizeof *be);
    counter *c = vd_calloc(1, sizeof *c);
    c->next = 4096;
    *be = (vd_backend){
        .name = "flop-counter", .impl = c, .alloc = fc_alloc, .release = fc_release, .upload = fc_move,
        .download = fc_move, .copy = fc_move, .zero = fc_zero, .synchronize = fc_sync, .destroy = fc_destroy,
        .declare_constant = fc_declare, .memory_info = fc_memory,
        .conv2d = fc_conv2d, .temporal_conv = fc_tconv, .group_norm = fc_norm, .layer_norm = fc_lnorm,
        .silu = fc_unary, .gelu = fc_unary, .linear = fc_linear, .attention = fc_attention,
        .upsample2x = fc_up, .add = fc_add, .axpby = fc_axpby, .add_random_normal = fc_noise,
        .add_broadcast = fc_bcast,
        .add_channel_bias = fc_cbias, .concat_channels = fc_concat, .transpose = fc_transpose,
        .timestep_embedding = fc_temb, .embedding = fc_emb,
        .conv2d_backward = fc_conv2d_bwd, .temporal_conv_backward = fc_tconv_bwd,
        .group_norm_backward = fc_norm_bwd, .layer_norm_backward = fc_lnorm_bwd,
        .silu_backward = fc_unary_bwd, .gelu_backward = fc_unary_bwd, .linear_backward = fc_linear_bwd,
        .attention_backward = fc_attention_bwd, .upsample2x_backward = fc_up_bwd,
        .concat_channels_backward = fc_concat_bwd, .add_broadcast_backward = fc_bcast_bwd,
        .add_channel_bias_backward = fc_cbias_bwd, .embedding_backward = fc_emb_bwd,
        .mse_loss = fc_mse, .sum_squares = fc_sumsq, .adamw = fc_adamw,
    };
    return be;
}

double vd_flop_counter_take(vd_backend *be)
{
    double f = C(be)->flops;
    C(be)->flops = 0;
    return f;
}

double vd_unet_step_flops(const vd_model_config *cfg, int N)
{
    vd_model m;
    char err[256];
    if (vd_model_build(&m, cfg, err, sizeof err)) return 0;
    vd_backend *be = vd_backend_flop_counter();
    vd_model_attach(&m, be);
    const vd_unet_config *u = &cfg->unet;
    int L = cfg->text.present ? cfg->text.max_tokens : 1;
    vd_unet_forward(&m, NULL, NULL, NULL, L, N, u->frames, u->latent_h, u->latent_w, NULL);
    double flops = vd_flop_counter_take(be);
    vd_model_free(&m);
    be->destroy(be);
    return flops;
}
