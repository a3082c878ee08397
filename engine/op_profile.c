/* op_profile.c: the timing wrapper of op_profile.h. Each op forwards to the wrapped backend,
 * synchronises, and adds the elapsed time to that op's row. */
#include "op_profile.h"
#include "common.h"

#include <stdlib.h>

enum { OP_CONV2D, OP_TEMPORAL_CONV, OP_GROUP_NORM, OP_LAYER_NORM, OP_SILU, OP_GELU, OP_LINEAR, OP_ATTENTION, OP_UPSAMPLE2X, OP_ADD, OP_AXPBY, OP_ADD_RANDOM_NORMAL, OP_ADD_BROADCAST, OP_ADD_CHANNEL_BIAS, OP_CONCAT_CHANNELS, OP_TRANSPOSE, OP_TIMESTEP_EMBEDDING, OP_EMBEDDING, OP_CONV2D_BACKWARD, OP_TEMPORAL_CONV_BACKWARD, OP_GROUP_NORM_BACKWARD, OP_LAYER_NORM_BACKWARD, OP_SILU_BACKWARD, OP_GELU_BACKWARD, OP_LINEAR_BACKWARD, OP_ATTENTION_BACKWARD, OP_UPSAMPLE2X_BACKWARD, OP_CONCAT_CHANNELS_BACKWARD, OP_ADD_BROADCAST_BACKWARD, OP_ADD_CHANNEL_BIAS_BACKWARD, OP_EMBEDDING_BACKWARD, OP_MSE_LOSS, OP_SUM_SQUARES, OP_ADAMW, OP_COUNT };

static const char *const op_names[OP_COUNT] = {"conv2d", "temporal_conv", "group_norm", "layer_norm", "silu", "gelu", "linear", "attention", "upsample2x", "add", "axpby", "add_random_normal", "add_broadcast", "add_channel_bias", "concat_channels", "transpose", "timestep_embedding", "embedding", "conv2d_backward", "temporal_conv_backward", "group_norm_backward", "layer_norm_backward", "silu_backward", "gelu_backward", "linear_backward", "attention_backward", "upsample2x_backward", "concat_channels_backward", "add_broadcast_backward", "add_channel_bias_backward", "embedding_backward", "mse_loss", "sum_squares", "adamw"};

typedef struct {
    vd_backend *inner;
    double seconds[OP_COUNT];
    long calls[OP_COUNT];
} profile;

static profile *P(vd_backend *be) { return be->impl; }

static void record(vd_backend *be, int op, double t0)
{
    P(be)->inner->synchronize(P(be)->inner);
    P(be)->seconds[op] += vd_now() - t0;
    P(be)->calls[op]++;
}

static void *pr_alloc(vd_backend *be, size_t n) { return P(be)->inner->alloc(P(be)->inner, n); }
static void pr_release(vd_backend *be, void *p) { P(be)->inner->release(P(be)->inner, p); }
static void pr_upload(vd_backend *be, void *d, const void *s, size_t n) { P(be)->inner->upload(P(be)->inner, d, s, n); }
static void pr_download(vd_backend *be, void *d, const void *s, size_t n) { P(be)->inner->download(P(be)->inner, d, s, n); }
static void pr_copy(vd_backend *be, void *d, const void *s, size_t n) { P(be)->inner->copy(P(be)->inner, d, s, n); }
static void pr_zero(vd_backend *be, void *d, size_t n) { P(be)->inner->zero(P(be)->inner, d, n); }
static void pr_synchronize(vd_backend *be) { P(be)->inner->synchronize(P(be)->inner); }
static void pr_memory_info(vd_backend *be, size_t *u, size_t *t) { P(be)->inner->memory_info(P(be)->inner, u, t); }
static void pr_declare_constant(vd_backend *be, const void *p, size_t n) { P(be)->inner->declare_constant(P(be)->inner, p, n); }
static void pr_destroy(vd_backend *be)
{
    free(be->impl);
    free(be);
}

static void pr_conv2d(vd_backend *be, float *y, const float *x, const float *w, const float *b, int B, int ci, int H, int W, int co, int k, int stride)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->conv2d(P(be)->inner, y, x, w, b, B, ci, H, W, co, k, stride);
    record(be, OP_CONV2D, t0);
}
static void pr_temporal_conv(vd_backend *be, float *y, const float *x, const float *w, const float *b, int N, int T, int ci, int co, int S)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->temporal_conv(P(be)->inner, y, x, w, b, N, T, ci, co, S);
    record(be, OP_TEMPORAL_CONV, t0);
}
static void pr_group_norm(vd_backend *be, float *y, const float *x, const float *gamma, const float *beta, int B, int C, int S, int G, float eps)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->group_norm(P(be)->inner, y, x, gamma, beta, B, C, S, G, eps);
    record(be, OP_GROUP_NORM, t0);
}
static void pr_layer_norm(vd_backend *be, float *y, const float *x, const float *gamma, const float *beta, int M, int C, float eps)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->layer_norm(P(be)->inner, y, x, gamma, beta, M, C, eps);
    record(be, OP_LAYER_NORM, t0);
}
static void pr_silu(vd_backend *be, float *y, const float *x, size_t n)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->silu(P(be)->inner, y, x, n);
    record(be, OP_SILU, t0);
}
static void pr_gelu(vd_backend *be, float *y, const float *x, size_t n)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->gelu(P(be)->inner, y, x, n);
    record(be, OP_GELU, t0);
}
static void pr_linear(vd_backend *be, float *y, const float *x, const float *w, const float *b, int M, int in, int out)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->linear(P(be)->inner, y, x, w, b, M, in, out);
    record(be, OP_LINEAR, t0);
}
static void pr_attention(vd_backend *be, float *o, const float *q, const float *k, const float *v, int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->attention(P(be)->inner, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
    record(be, OP_ATTENTION, t0);
}
static void pr_upsample2x(vd_backend *be, float *y, const float *x, int B, int C, int H, int W)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->upsample2x(P(be)->inner, y, x, B, C, H, W);
    record(be, OP_UPSAMPLE2X, t0);
}
static void pr_add(vd_backend *be, float *y, const float *a, const float *b, size_t n)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->add(P(be)->inner, y, a, b, n);
    record(be, OP_ADD, t0);
}
static void pr_axpby(vd_backend *be, float *y, float alpha, const float *x, float beta, size_t n)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->axpby(P(be)->inner, y, alpha, x, beta, n);
    record(be, OP_AXPBY, t0);
}
static void pr_add_random_normal(vd_backend *be, float *y, float scale, uint64_t seed, size_t n)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->add_random_normal(P(be)->inner, y, scale, seed, n);
    record(be, OP_ADD_RANDOM_NORMAL, t0);
}
static void pr_add_broadcast(vd_backend *be, float *y, const float *x, size_t outer, size_t inner)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->add_broadcast(P(be)->inner, y, x, outer, inner);
    record(be, OP_ADD_BROADCAST, t0);
}
static void pr_add_channel_bias(vd_backend *be, float *y, const float *bias, int N, int T, int C, int S)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->add_channel_bias(P(be)->inner, y, bias, N, T, C, S);
    record(be, OP_ADD_CHANNEL_BIAS, t0);
}
static void pr_concat_channels(vd_backend *be, float *y, const float *a, int ca, const float *b, int cb, int B, int S)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->concat_channels(P(be)->inner, y, a, ca, b, cb, B, S);
    record(be, OP_CONCAT_CHANNELS, t0);
}
static void pr_transpose(vd_backend *be, float *y, const float *x, int A, int B, int C, int D)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->transpose(P(be)->inner, y, x, A, B, C, D);
    record(be, OP_TRANSPOSE, t0);
}
static void pr_timestep_embedding(vd_backend *be, float *y, const float *t, int n, int dim)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->timestep_embedding(P(be)->inner, y, t, n, dim);
    record(be, OP_TIMESTEP_EMBEDDING, t0);
}
static void pr_embedding(vd_backend *be, float *y, const int32_t *ids, const float *table, int n, int dim)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->embedding(P(be)->inner, y, ids, table, n, dim);
    record(be, OP_EMBEDDING, t0);
}
static void pr_conv2d_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int B, int ci, int H, int W, int co, int k, int stride)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->conv2d_backward(P(be)->inner, dx, dw, db, dy, x, w, B, ci, H, W, co, k, stride);
    record(be, OP_CONV2D_BACKWARD, t0);
}
static void pr_temporal_conv_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int N, int T, int ci, int co, int S)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->temporal_conv_backward(P(be)->inner, dx, dw, db, dy, x, w, N, T, ci, co, S);
    record(be, OP_TEMPORAL_CONV_BACKWARD, t0);
}
static void pr_group_norm_backward(vd_backend *be, float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *gamma, int B, int C, int S, int G, float eps)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->group_norm_backward(P(be)->inner, dx, dgamma, dbeta, dy, x, gamma, B, C, S, G, eps);
    record(be, OP_GROUP_NORM_BACKWARD, t0);
}
static void pr_layer_norm_backward(vd_backend *be, float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *gamma, int M, int C, float eps)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->layer_norm_backward(P(be)->inner, dx, dgamma, dbeta, dy, x, gamma, M, C, eps);
    record(be, OP_LAYER_NORM_BACKWARD, t0);
}
static void pr_silu_backward(vd_backend *be, float *dx, const float *dy, const float *x, size_t n)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->silu_backward(P(be)->inner, dx, dy, x, n);
    record(be, OP_SILU_BACKWARD, t0);
}
static void pr_gelu_backward(vd_backend *be, float *dx, const float *dy, const float *x, size_t n)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->gelu_backward(P(be)->inner, dx, dy, x, n);
    record(be, OP_GELU_BACKWARD, t0);
}
static void pr_linear_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int M, int in, int out)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->linear_backward(P(be)->inner, dx, dw, db, dy, x, w, M, in, out);
    record(be, OP_LINEAR_BACKWARD, t0);
}
static void pr_attention_backward(vd_backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v, int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->attention_backward(P(be)->inner, dq, dk, dv, dout, q, k, v, B, Lq, Lk, heads, d, kv_group);
    record(be, OP_ATTENTION_BACKWARD, t0);
}
static void pr_upsample2x_backward(vd_backend *be, float *dx, const float *dy, int B, int C, int H, int W)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->upsample2x_backward(P(be)->inner, dx, dy, B, C, H, W);
    record(be, OP_UPSAMPLE2X_BACKWARD, t0);
}
static void pr_concat_channels_backward(vd_backend *be, float *da, float *db, const float *dy, int ca, int cb, int B, int S)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->concat_channels_backward(P(be)->inner, da, db, dy, ca, cb, B, S);
    record(be, OP_CONCAT_CHANNELS_BACKWARD, t0);
}
static void pr_add_broadcast_backward(vd_backend *be, float *dx, const float *dy, size_t outer, size_t inner)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->add_broadcast_backward(P(be)->inner, dx, dy, outer, inner);
    record(be, OP_ADD_BROADCAST_BACKWARD, t0);
}
static void pr_add_channel_bias_backward(vd_backend *be, float *dbias, const float *dy, int N, int T, int C, int S)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->add_channel_bias_backward(P(be)->inner, dbias, dy, N, T, C, S);
    record(be, OP_ADD_CHANNEL_BIAS_BACKWARD, t0);
}
static void pr_embedding_backward(vd_backend *be, float *dtable, const float *dy, const int32_t *ids, int n, int dim)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->embedding_backward(P(be)->inner, dtable, dy, ids, n, dim);
    record(be, OP_EMBEDDING_BACKWARD, t0);
}
static void pr_mse_loss(vd_backend *be, float *loss, float *dpred, const float *pred, const float *target,
                        const float *weight, size_t n, float scale)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->mse_loss(P(be)->inner, loss, dpred, pred, target, weight, n, scale);
    record(be, OP_MSE_LOSS, t0);
}
static void pr_sum_squares(vd_backend *be, double *out, const float *x, size_t n)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->sum_squares(P(be)->inner, out, x, n);
    record(be, OP_SUM_SQUARES, t0);
}
static void pr_adamw(vd_backend *be, float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay, int step, float grad_scale)
{
    double t0 = vd_now();
    P(be)->inner->precision = be->precision;
    P(be)->inner->adamw(P(be)->inner, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step, grad_scale);
    record(be, OP_ADAMW, t0);
}

vd_backend *vd_backend_profiled(vd_backend *inner)
{
    vd_backend *be = vd_calloc(1, sizeof *be);
    profile *p = vd_calloc(1, sizeof *p);
    p->inner = inner;
    *be = (vd_backend){
        .name = inner->name, .precision = inner->precision, .impl = p,
        .alloc = pr_alloc, .release = pr_release, .upload = pr_upload, .download = pr_download,
        .copy = pr_copy, .zero = pr_zero, .synchronize = pr_synchronize, .destroy = pr_destroy,
        .declare_constant = pr_declare_constant, .memory_info = pr_memory_info,
        .conv2d = pr_conv2d,
        .temporal_conv = pr_temporal_conv,
        .group_norm = pr_group_norm,
        .layer_norm = pr_layer_norm,
        .silu = pr_silu,
        .gelu = pr_gelu,
        .linear = pr_linear,
        .attention = pr_attention,
        .upsample2x = pr_upsample2x,
        .add = pr_add,
        .axpby = pr_axpby,
        .add_random_normal = pr_add_random_normal,
        .add_broadcast = pr_add_broadcast,
        .add_channel_bias = pr_add_channel_bias,
        .concat_channels = pr_concat_channels,
        .transpose = pr_transpose,
        .timestep_embedding = pr_timestep_embedding,
        .embedding = pr_embedding,
        .conv2d_backward = pr_conv2d_backward,
        .temporal_conv_backward = pr_temporal_conv_backward,
        .group_norm_backward = pr_group_norm_backward,
        .layer_norm_backward = pr_layer_norm_backward,
        .silu_backward = pr_silu_backward,
        .gelu_backward = pr_gelu_backward,
        .linear_backward = pr_linear_backward,
        .attention_backward = pr_attention_backward,
        .upsample2x_backward = pr_upsample2x_backward,
        .concat_channels_backward = pr_concat_channels_backward,
        .add_broadcast_backward = pr_add_broadcast_backward,
        .add_channel_bias_backward = pr_add_channel_bias_backward,
        .embedding_backward = pr_embedding_backward,
        .mse_loss = pr_mse_loss,
        .sum_squares = pr_sum_squares,
        .adamw = pr_adamw,
    };
    return be;
}

void vd_profile_reset(vd_backend *profiled)
{
    profile *p = P(profiled);
    for (int i = 0; i < OP_COUNT; i++) p->seconds[i] = 0, p->calls[i] = 0;
}

void vd_profile_print(vd_backend *profiled, FILE *out)
{
    profile *p = P(profiled);
    double total = 0;
    for (int i = 0; i < OP_COUNT; i++) total += p->seconds[i];
    fprintf(out, "%-26s %10s %8s %7s\n", "op", "ms", "calls", "share");
    for (int i = 0; i < OP_COUNT; i++)
        if (p->calls[i])
            fprintf(out, "%-26s %10.2f %8ld %6.1f%%\n", op_names[i], 1e3 * p->seconds[i], p->calls[i],
                    total > 0 ? 100.0 * p->seconds[i] / total : 0.0);
    fprintf(out, "%-26s %10.2f\n", "total", 1e3 * total);
}
