/* cpu_reference.c: the reference backend. Every op is the plainest loop nest that follows the
 * definition in backend.h, with sums accumulated in double, so that it can be read and checked
 * by eye. It is the truth that the fast CPU path and the CUDA kernels are tested against; speed
 * does not matter here. The precision field is ignored: everything is fp32 in, fp32 out.
 *
 * This file also defines the host-memory functions both CPU backends share (cpu_internal.h). */
#include "cpu_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "random.h"

/* ---- memory: tensors are plain host memory ---- */

void *cpu_alloc(vd_backend *be, size_t bytes)
{
    (void)be;
    return vd_malloc(bytes);
}

void cpu_release(vd_backend *be, void *ptr)
{
    (void)be;
    free(ptr);
}

void cpu_upload(vd_backend *be, void *dst, const void *host_src, size_t bytes)
{
    (void)be;
    if (bytes) memcpy(dst, host_src, bytes);
}

void cpu_download(vd_backend *be, void *host_dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes) memcpy(host_dst, src, bytes);
}

void cpu_copy(vd_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes && dst != src) memmove(dst, src, bytes);
}

void cpu_zero(vd_backend *be, void *dst, size_t bytes)
{
    (void)be;
    if (bytes) memset(dst, 0, bytes);
}

void cpu_synchronize(vd_backend *be)
{
    (void)be;
}

/* The CPU backends keep no derived copies of data. */
void cpu_declare_constant(vd_backend *be, const void *ptr, size_t bytes)
{
    (void)be, (void)ptr, (void)bytes;
}

/* Host memory is not reported as device memory. */
void cpu_memory_info(vd_backend *be, size_t *used, size_t *total)
{
    (void)be;
    *used = *total = 0;
}

void cpu_set_memory_ops(vd_backend *be)
{
    be->alloc = cpu_alloc;
    be->release = cpu_release;
    be->upload = cpu_upload;
    be->download = cpu_download;
    be->copy = cpu_copy;
    be->zero = cpu_zero;
    be->synchronize = cpu_synchronize;
    be->declare_constant = cpu_declare_constant;
    be->memory_info = cpu_memory_info;
}

/* ---- ops, forward ---- */

/* y(B, co, Ho, Wo) = conv(x(B, ci, H, W), w(co, ci, k, k)) + b(co), zero padding k/2. */
static void ref_conv2d(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                       int B, int ci, int H, int W, int co, int k, int stride)
{
    (void)be;
    int pad = k / 2;
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    for (int n = 0; n < B; n++)
        for (int o = 0; o < co; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double acc = b ? b[o] : 0.0;
                    for (int i = 0; i < ci; i++)
                        for (int ky = 0; ky < k; ky++) {
                            int iy = oy * stride + ky - pad;
                            if (iy < 0 || iy >= H) continue;
                            for (int kx = 0; kx < k; kx++) {
                                int ix = ox * stride + kx - pad;
                                if (ix < 0 || ix >= W) continue;
                                acc += (double)w[(((size_t)o * ci + i) * k + ky) * k + kx] *
                                       x[(((size_t)n * ci + i) * H + iy) * W + ix];
                            }
                        }
                    y[(((size_t)n * co + o) * Ho + oy) * Wo + ox] = (float)acc;
                }
}

/* y(N, T, co, S) = b(co) + sum over j < 3 of w(co, ci, 3)[:, :, j] applied to frame t + j - 1 of
 * x(N, T, ci, S); frames outside [0, T) are zero. */
static void ref_temporal_conv(vd_backend *be, float *y, const float *x, const float *w,
                              const float *b, int N, int T, int ci, int co, int S)
{
    (void)be;
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++)
            for (int o = 0; o < co; o++)
                for (int s = 0; s < S; s++) {
                    double acc = b ? b[o] : 0.0;
                    for (int i = 0; i < ci; i++)
                        for (int j = 0; j < 3; j++) {
                            int ts = t + j - 1;
                            if (ts < 0 || ts >= T) continue;
                            acc += (double)w[((size_t)o * ci + i) * 3 + j] *
                                   x[(((size_t)n * T + ts) * ci + i) * S + s];
                        }
                    y[(((size_t)n * T + t) * co + o) * S + s] = (float)acc;
                }
}

/* GroupNorm: x, y (B, C, S); each image's channels split into G groups of C/G channels. */
static void ref_group_norm(vd_backend *be, float *y, const float *x, const float *gamma,
                           const float *beta, int B, int C, int S, int G, float eps)
{
    (void)be;
    int group_channels = C / G;
    size_t group_size = (size_t)group_channels * S;
    for (int n = 0; n < B; n++)
        for (int g = 0; g < G; g++) {
            size_t start = ((size_t)n * C + (size_t)g * group_channels) * S;
            double sum = 0.0;
            for (size_t e = 0; e < group_size; e++) sum += x[start + e];
            double mean = sum / (double)group_size;
            double squares = 0.0;
            for (size_t e = 0; e < group_size; e++) {
                double centred = x[start + e] - mean;
                squares += centred * centred;
            }
            double inv_std = 1.0 / sqrt(squares / (double)group_size + eps);
            for (int cg = 0; cg < group_channels; cg++) {
                int c = g * group_channels + cg;
                for (int s = 0; s < S; s++) {
                    size_t e = start + (size_t)cg * S + s;
                    y[e] = (float)((x[e] - mean) * inv_std * gamma[c] + beta[c]);
                }
            }
        }
}

/* LayerNorm over the last dimension: x, y (M, C). */
static void ref_layer_norm(vd_backend *be, float *y, const float *x, const float *gamma,
                           const float *beta, int M, int C, float eps)
{
    (void)be;
    for (int m = 0; m < M; m++) {
        const float *row = x + (size_t)m * C;
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += row[c];
        double mean = sum / C;
        double squares = 0.0;
        for (int c = 0; c < C; c++) squares += (row[c] - mean) * (row[c] - mean);
        double inv_std = 1.0 / sqrt(squares / C + eps);
        float *out = y + (size_t)m * C;
        for (int c = 0; c < C; c++)
            out[c] = (float)((row[c] - mean) * inv_std * gamma[c] + beta[c]);
    }
}

/* y(n) = x / (1 + exp(-x)). */
static void ref_silu(vd_backend *be, float *y, const float *x, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(v / (1.0 + exp(-v)));
    }
}

/* y(n) = x * (1 + erf(x / sqrt 2)) / 2, computed as x * erfc(-x / sqrt 2) / 2, which keeps its
 * accuracy in the negative tail. */
static void ref_gelu(vd_backend *be, float *y, const float *x, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * erfc(-v / sqrt(2.0)));
    }
}

/* y(M, out) = x(M, in) w(out, in)^T + b(out). */
static void ref_linear(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                       int M, int in, int out)
{
    (void)be;
    for (int m = 0; m < M; m++)
        for (int o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++)
                acc += (double)x[(size_t)m * in + i] * w[(size_t)o * in + i];
            y[(size_t)m * out + o] = (float)acc;
        }
}

/* o, q (B, Lq, heads*d); k, v (B/kv_group, Lk, heads*d). */
static void ref_attention(vd_backend *be, float *o, const float *q, const float *k, const float *v,
                          int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    (void)be;
    size_t row = (size_t)heads * d;
    double scale = 1.0 / sqrt((double)d);
    double *weights = vd_malloc((size_t)Lk * sizeof *weights);
    for (int b = 0; b < B; b++) {
        const float *kb = k + (size_t)(b / kv_group) * Lk * row;
        const float *vb = v + (size_t)(b / kv_group) * Lk * row;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < Lq; i++) {
                const float *qi = q + ((size_t)b * Lq + i) * row + (size_t)h * d;
                double largest = -INFINITY;
                for (int j = 0; j < Lk; j++) {
                    const float *kj = kb + (size_t)j * row + (size_t)h * d;
                    double dot = 0.0;
                    for (int e = 0; e < d; e++) dot += (double)qi[e] * kj[e];
                    weights[j] = dot * scale;
                    if (weights[j] > largest) largest = weights[j];
                }
                double total = 0.0;
                for (int j = 0; j < Lk; j++) {
                    weights[j] = exp(weights[j] - largest);
                    total += weights[j];
                }
                float *oi = o + ((size_t)b * Lq + i) * row + (size_t)h * d;
                for (int e = 0; e < d; e++) {
                    double acc = 0.0;
                    for (int j = 0; j < Lk; j++)
                        acc += weights[j] * vb[(size_t)j * row + (size_t)h * d + e];
                    oi[e] = (float)(acc / total);
                }
            }
    }
    free(weights);
}

/* Nearest 2x: x (B, C, H, W) -> y (B, C, 2H, 2W). */
static void ref_upsample2x(vd_backend *be, float *y, const float *x, int B, int C, int H, int W)
{
    (void)be;
    for (size_t plane = 0; plane < (size_t)B * C; plane++)
        for (int oy = 0; oy < 2 * H; oy++)
            for (int ox = 0; ox < 2 * W; ox++)
                y[(plane * 2 * H + oy) * 2 * W + ox] = x[(plane * H + oy / 2) * W + ox / 2];
}

/* y(n) = a + b. */
static void ref_add(vd_backend *be, float *y, const float *a, const float *b, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* y(n) = alpha x + beta y. With beta == 0, y is not read (as in BLAS), so it may hold anything. */
static void ref_axpby(vd_backend *be, float *y, float alpha, const float *x, float beta, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i++) y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

void cpu_add_random_normal(vd_backend *be, float *y, float scale, uint64_t seed, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i += 2) {
        float first, second;
        vd_rng_normal_pair(seed, i / 2, &first, &second);
        y[i] = scale * first + y[i];
        if (i + 1 < n) y[i + 1] = scale * second + y[i + 1];
    }
}

/* y(outer, inner) += x(inner) on every row. */
static void ref_add_broadcast(vd_backend *be, float *y, const float *x, size_t outer, size_t inner)
{
    (void)be;
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) y[o * inner + i] += x[i];
}

/* y(N, T, C, S) += bias(N, C). */
static void ref_add_channel_bias(vd_backend *be, float *y, const float *bias, int N, int T, int C,
                                 int S)
{
    (void)be;
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                for (int s = 0; s < S; s++)
                    y[(((size_t)n * T + t) * C + c) * S + s] += bias[(size_t)n * C + c];
}

/* y(B, ca + cb, S) = [a(B, ca, S), b(B, cb, S)] over channels. */
static void ref_concat_channels(vd_backend *be, float *y, const float *a, int ca, const float *b,
                                int cb, int B, int S)
{
    (void)be;
    for (int n = 0; n < B; n++)
        for (int c = 0; c < ca + cb; c++)
            for (int s = 0; s < S; s++)
                y[((size_t)n * (ca + cb) + c) * S + s] =
                    c < ca ? a[((size_t)n * ca + c) * S + s]
                           : b[((size_t)n * cb + (c - ca)) * S + s];
}

/* y(A, C, B, D)[a,c,b,d] = x(A, B, C, D)[a,b,c,d]. */
static void ref_transpose(vd_backend *be, float *y, const float *x, int A, int B, int C, int D)
{
    (void)be;
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                for (int d = 0; d < D; d++)
                    y[(((size_t)a * C + c) * B + b) * D + d] =
                        x[(((size_t)a * B + b) * C + c) * D + d];
}

/* y(n, dim) = [cos(t f), sin(t f)], f_i = exp(-ln(10000) i / (dim/2)). */
static void ref_timestep_embedding(vd_backend *be, float *y, const float *t, int n, int dim)
{
    (void)be;
    int half = dim / 2;
    for (int m = 0; m < n; m++)
        for (int i = 0; i < half; i++) {
            double angle = (double)t[m] * exp(-log(10000.0) * i / half);
            y[(size_t)m * dim + i] = (float)cos(angle);
            y[(size_t)m * dim + half + i] = (float)sin(angle);
        }
}

/* y(n, dim) = table[ids[i]]. */
static void ref_embedding(vd_backend *be, float *y, const int32_t *ids, const float *table, int n,
                          int dim)
{
    (void)be;
    for (int m = 0; m < n; m++)
        for (int e = 0; e < dim; e++) y[(size_t)m * dim + e] = table[(size_t)ids[m] * dim + e];
}

/* ---- ops, backward: activation gradients written (=), parameter gradients added (+=) ---- */

/* conv2d: dy (B, co, Ho, Wo); dx (B, ci, H, W), dw (co, ci, k, k), db (co). dx gathers, for
 * each input pixel, every (output pixel, tap) pair that read it. */
static void ref_conv2d_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, int B, int ci, int H, int W,
                                int co, int k, int stride)
{
    (void)be;
    int pad = k / 2;
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    if (dx)
        for (int n = 0; n < B; n++)
            for (int i = 0; i < ci; i++)
                for (int iy = 0; iy < H; iy++)
                    for (int ix = 0; ix < W; ix++) {
                        double acc = 0.0;
                        for (int o = 0; o < co; o++)
                            for (int ky = 0; ky < k; ky++) {
                                int ty = iy + pad - ky; /* = oy * stride */
                                if (ty < 0 || ty % stride != 0 || ty / stride >= Ho) continue;
                                for (int kx = 0; kx < k; kx++) {
                                    int tx = ix + pad - kx;
                                    if (tx < 0 || tx % stride != 0 || tx / stride >= Wo) continue;
                                    acc += (double)w[(((size_t)o * ci + i) * k + ky) * k + kx] *
                                           dy[(((size_t)n * co + o) * Ho + ty / stride) * Wo +
                                              tx / stride];
                                }
                            }
                        dx[(((size_t)n * ci + i) * H + iy) * W + ix] = (float)acc;
                    }
    if (dw)
        for (int o = 0; o < co; o++)
            for (int i = 0; i < ci; i++)
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        double acc = 0.0;
                        for (int n = 0; n < B; n++)
                            for (int oy = 0; oy < Ho; oy++) {
                                int iy = oy * stride + ky - pad;
                                if (iy < 0 || iy >= H) continue;
                                for (int ox = 0; ox < Wo; ox++) {
                                    int ix = ox * stride + kx - pad;
                                    if (ix < 0 || ix >= W) continue;
                                    acc += (double)dy[(((size_t)n * co + o) * Ho + oy) * Wo + ox] *
                                           x[(((size_t)n * ci + i) * H + iy) * W + ix];
                                }
                            }
                        dw[(((size_t)o * ci + i) * k + ky) * k + kx] += (float)acc;
                    }
    if (db)
        for (int o = 0; o < co; o++) {
            double acc = 0.0;
            for (int n = 0; n < B; n++)
                for (size_t p = 0; p < (size_t)Ho * Wo; p++)
                    acc += dy[((size_t)n * co + o) * Ho * Wo + p];
            db[o] += (float)acc;
        }
}

/* temporal_conv: dy (N, T, co, S); dx (N, T, ci, S), dw (co, ci, 3), db (co). Frame ts of x fed
 * output frame t = ts - j + 1 through tap j. */
static void ref_temporal_conv_backward(vd_backend *be, float *dx, float *dw, float *db,
                                       const float *dy, const float *x, const float *w, int N,
                                       int T, int ci, int co, int S)
{
    (void)be;
    if (dx)
        for (int n = 0; n < N; n++)
            for (int ts = 0; ts < T; ts++)
                for (int i = 0; i < ci; i++)
                    for (int s = 0; s < S; s++) {
                        double acc = 0.0;
                        for (int o = 0; o < co; o++)
                            for (int j = 0; j < 3; j++) {
                                int t = ts - j + 1;
                                if (t < 0 || t >= T) continue;
                                acc += (double)w[((size_t)o * ci + i) * 3 + j] *
                                       dy[(((size_t)n * T + t) * co + o) * S + s];
                            }
                        dx[(((size_t)n * T + ts) * ci + i) * S + s] = (float)acc;
                    }
    if (dw)
        for (int o = 0; o < co; o++)
            for (int i = 0; i < ci; i++)
                for (int j = 0; j < 3; j++) {
                    double acc = 0.0;
                    for (int n = 0; n < N; n++)
                        for (int t = 0; t < T; t++) {
                            int ts = t + j - 1;
                            if (ts < 0 || ts >= T) continue;
                            for (int s = 0; s < S; s++)
                                acc += (double)dy[(((size_t)n * T + t) * co + o) * S + s] *
                                       x[(((size_t)n * T + ts) * ci + i) * S + s];
                        }
                    dw[((size_t)o * ci + i) * 3 + j] += (float)acc;
                }
    if (db)
        for (int o = 0; o < co; o++) {
            double acc = 0.0;
            for (size_t frame = 0; frame < (size_t)N * T; frame++)
                for (int s = 0; s < S; s++) acc += dy[(frame * co + o) * S + s];
            db[o] += (float)acc;
        }
}

/* Normalisation backward over one group of `count` values spread over `channels` runs of `run`
 * values (a GroupNorm group: C/G channels of S; a LayerNorm row: C channels of 1), first channel
 * c0 of gamma. With xhat = (x - mean) inv_std and g = dy gamma:
 * dx = inv_std (g - mean(g) - xhat mean(g xhat)); dgamma[c] += sum dy xhat; dbeta[c] += sum dy. */
static void norm_backward_group(float *dx, double *dgamma, double *dbeta, const float *dy,
                                const float *x, const float *gamma, int c0, int channels, int run,
                                float eps)
{
    size_t count = (size_t)channels * run;
    double sum = 0.0;
    for (size_t e = 0; e < count; e++) sum += x[e];
    double mean = sum / (double)count;
    double squares = 0.0;
    for (size_t e = 0; e < count; e++) squares += (x[e] - mean) * (x[e] - mean);
    double inv_std = 1.0 / sqrt(squares / (double)count + eps);
    double g_sum = 0.0, g_xhat_sum = 0.0;
    for (int c = 0; c < channels; c++)
        for (int s = 0; s < run; s++) {
            size_t e = (size_t)c * run + s;
            double xhat = (x[e] - mean) * inv_std;
            g_sum += (double)dy[e] * gamma[c0 + c];
            g_xhat_sum += (double)dy[e] * gamma[c0 + c] * xhat;
            dgamma[c0 + c] += dy[e] * xhat;
            dbeta[c0 + c] += dy[e];
        }
    if (dx)
        for (int c = 0; c < channels; c++)
            for (int s = 0; s < run; s++) {
                size_t e = (size_t)c * run + s;
                double xhat = (x[e] - mean) * inv_std;
                dx[e] = (float)(inv_std * ((double)dy[e] * gamma[c0 + c] - g_sum / (double)count -
                                           xhat * g_xhat_sum / (double)count));
            }
}

/* Adds the double per-channel sums to the optional fp32 parameter gradients and frees them. */
static void norm_backward_finish(float *dgamma, float *dbeta, double *dgamma_sum,
                                 double *dbeta_sum, int C)
{
    for (int c = 0; c < C; c++) {
        if (dgamma) dgamma[c] += (float)dgamma_sum[c];
        if (dbeta) dbeta[c] += (float)dbeta_sum[c];
    }
    free(dgamma_sum);
    free(dbeta_sum);
}

/* GroupNorm: dy, x, dx (B, C, S); gamma, dgamma, dbeta (C). */
static void ref_group_norm_backward(vd_backend *be, float *dx, float *dgamma, float *dbeta,
                                    const float *dy, const float *x, const float *gamma, int B,
                                    int C, int S, int G, float eps)
{
    (void)be;
    int group_channels = C / G;
    double *dgamma_sum = vd_calloc((size_t)C, sizeof *dgamma_sum);
    double *dbeta_sum = vd_calloc((size_t)C, sizeof *dbeta_sum);
    for (int n = 0; n < B; n++)
        for (int g = 0; g < G; g++) {
            size_t start = ((size_t)n * C + (size_t)g * group_channels) * S;
            norm_backward_group(dx ? dx + start : NULL, dgamma_sum, dbeta_sum, dy + start,
                                x + start, gamma, g * group_channels, group_channels, S, eps);
        }
    norm_backward_finish(dgamma, dbeta, dgamma_sum, dbeta_sum, C);
}

/* LayerNorm: dy, x, dx (M, C); gamma, dgamma, dbeta (C). */
static void ref_layer_norm_backward(vd_backend *be, float *dx, float *dgamma, float *dbeta,
                                    const float *dy, const float *x, const float *gamma, int M,
                                    int C, float eps)
{
    (void)be;
    double *dgamma_sum = vd_calloc((size_t)C, sizeof *dgamma_sum);
    double *dbeta_sum = vd_calloc((size_t)C, sizeof *dbeta_sum);
    for (int m = 0; m < M; m++) {
        size_t start = (size_t)m * C;
        norm_backward_group(dx ? dx + start : NULL, dgamma_sum, dbeta_sum, dy + start, x + start,
                            gamma, 0, C, 1, eps);
    }
    norm_backward_finish(dgamma, dbeta, dgamma_sum, dbeta_sum, C);
}

/* silu: dx(n) = dy sigmoid(x) (1 + x (1 - sigmoid(x))). */
static void ref_silu_backward(vd_backend *be, float *dx, const float *dy, const float *x, size_t n)
{
    (void)be;
    if (!dx) return;
    for (size_t i = 0; i < n; i++) {
        double v = x[i], sigmoid = 1.0 / (1.0 + exp(-v));
        dx[i] = (float)(dy[i] * sigmoid * (1.0 + v * (1.0 - sigmoid)));
    }
}

/* gelu: dx(n) = dy (Phi(x) + x phi(x)), Phi and phi the standard normal cdf and density; Phi is
 * erfc(-x / sqrt 2) / 2, which keeps its accuracy in the negative tail (1 + erf would cancel). */
static void ref_gelu_backward(vd_backend *be, float *dx, const float *dy, const float *x, size_t n)
{
    (void)be;
    if (!dx) return;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        double cdf = 0.5 * erfc(-v / sqrt(2.0));
        double density = exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
        dx[i] = (float)(dy[i] * (cdf + v * density));
    }
}

/* linear: dy (M, out); dx (M, in) = dy w; dw (out, in) += dy^T x; db (out) += column sums. */
static void ref_linear_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, int M, int in, int out)
{
    (void)be;
    if (dx)
        for (int m = 0; m < M; m++)
            for (int i = 0; i < in; i++) {
                double acc = 0.0;
                for (int o = 0; o < out; o++)
                    acc += (double)dy[(size_t)m * out + o] * w[(size_t)o * in + i];
                dx[(size_t)m * in + i] = (float)acc;
            }
    if (dw)
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                double acc = 0.0;
                for (int m = 0; m < M; m++)
                    acc += (double)dy[(size_t)m * out + o] * x[(size_t)m * in + i];
                dw[(size_t)o * in + i] += (float)acc;
            }
    if (db)
        for (int o = 0; o < out; o++) {
            double acc = 0.0;
            for (int m = 0; m < M; m++) acc += dy[(size_t)m * out + o];
            db[o] += (float)acc;
        }
}

/* attention: dout, q, dq (B, Lq, heads*d); k, v, dk, dv (B/kv_group, Lk, heads*d). Per query
 * row, with P = softmax(q k^T / sqrt(d)): dP_j = dout . v_j; dS_j = P_j (dP_j - sum_l P_l dP_l);
 * dq = dS k / sqrt(d); dk_j += dS_j q / sqrt(d); dv_j += P_j dout. dk and dv are summed in
 * double over every query row of the kv_group entries that share them, then written. */
static void ref_attention_backward(vd_backend *be, float *dq, float *dk, float *dv,
                                   const float *dout, const float *q, const float *k,
                                   const float *v, int B, int Lq, int Lk, int heads, int d,
                                   int kv_group)
{
    (void)be;
    size_t row = (size_t)heads * d;
    size_t kv_values = (size_t)(B / kv_group) * Lk * row;
    double scale = 1.0 / sqrt((double)d);
    double *probs = vd_malloc((size_t)Lk * sizeof *probs);
    double *dscores = vd_malloc((size_t)Lk * sizeof *dscores);
    double *dk_sum = vd_calloc(kv_values, sizeof *dk_sum);
    double *dv_sum = vd_calloc(kv_values, sizeof *dv_sum);
    for (int b = 0; b < B; b++) {
        size_t kv_offset = (size_t)(b / kv_group) * Lk * row;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < Lq; i++) {
                size_t qi = ((size_t)b * Lq + i) * row + (size_t)h * d;
                double largest = -INFINITY;
                for (int j = 0; j < Lk; j++) {
                    size_t kj = kv_offset + (size_t)j * row + (size_t)h * d;
                    double dot = 0.0;
                    for (int e = 0; e < d; e++) dot += (double)q[qi + e] * k[kj + e];
                    probs[j] = dot * scale;
                    if (probs[j] > largest) largest = probs[j];
                }
                double total = 0.0;
                for (int j = 0; j < Lk; j++) {
                    probs[j] = exp(probs[j] - largest);
                    total += probs[j];
                }
                double weighted = 0.0; /* sum_j P_j dP_j */
                for (int j = 0; j < Lk; j++) {
                    size_t vj = kv_offset + (size_t)j * row + (size_t)h * d;
                    probs[j] /= total;
                    double dprob = 0.0;
                    for (int e = 0; e < d; e++) dprob += (double)dout[qi + e] * v[vj + e];
                    dscores[j] = dprob;
                    weighted += probs[j] * dprob;
                }
                for (int j = 0; j < Lk; j++) dscores[j] = probs[j] * (dscores[j] - weighted);
                for (int j = 0; j < Lk; j++) {
                    size_t kj = kv_offset + (size_t)j * row + (size_t)h * d;
                    for (int e = 0; e < d; e++) {
                        dk_sum[kj + e] += dscores[j] * scale * q[qi + e];
                        dv_sum[kj + e] += probs[j] * dout[qi + e];
                    }
                }
                if (dq)
                    for (int e = 0; e < d; e++) {
                        double acc = 0.0;
                        for (int j = 0; j < Lk; j++)
                            acc += dscores[j] * k[kv_offset + (size_t)j * row + (size_t)h * d + e];
                        dq[qi + e] = (float)(acc * scale);
                    }
            }
    }
    for (size_t e = 0; e < kv_values; e++) {
        if (dk) dk[e] = (float)dk_sum[e];
        if (dv) dv[e] = (float)dv_sum[e];
    }
    free(probs), free(dscores), free(dk_sum), free(dv_sum);
}

/* upsample2x: dy (B, C, 2H, 2W) -> dx (B, C, H, W), the sum of each 2x2 block. */
static void ref_upsample2x_backward(vd_backend *be, float *dx, const float *dy, int B, int C,
                                    int H, int W)
{
    (void)be;
    if (!dx) return;
    for (size_t plane = 0; plane < (size_t)B * C; plane++)
        for (int iy = 0; iy < H; iy++)
            for (int ix = 0; ix < W; ix++) {
                const float *top = dy + (plane * 2 * H + 2 * iy) * 2 * W + 2 * ix;
                const float *bottom = top + 2 * W;
                dx[(plane * H + iy) * W + ix] = top[0] + top[1] + bottom[0] + bottom[1];
            }
}

/* concat_channels: dy (B, ca + cb, S) -> da (B, ca, S), db (B, cb, S). */
static void ref_concat_channels_backward(vd_backend *be, float *da, float *db, const float *dy,
                                         int ca, int cb, int B, int S)
{
    (void)be;
    for (int n = 0; n < B; n++)
        for (int c = 0; c < ca + cb; c++)
            for (int s = 0; s < S; s++) {
                float g = dy[((size_t)n * (ca + cb) + c) * S + s];
                if (c < ca && da) da[((size_t)n * ca + c) * S + s] = g;
                if (c >= ca && db) db[((size_t)n * cb + (c - ca)) * S + s] = g;
            }
}

/* add_broadcast: dy (outer, inner) -> dx (inner) += column sums. */
static void ref_add_broadcast_backward(vd_backend *be, float *dx, const float *dy, size_t outer,
                                       size_t inner)
{
    (void)be;
    if (!dx) return;
    for (size_t i = 0; i < inner; i++) {
        double acc = 0.0;
        for (size_t o = 0; o < outer; o++) acc += dy[o * inner + i];
        dx[i] += (float)acc;
    }
}

/* add_channel_bias: dy (N, T, C, S) -> dbias (N, C) += sums over T and S. */
static void ref_add_channel_bias_backward(vd_backend *be, float *dbias, const float *dy, int N,
                                          int T, int C, int S)
{
    (void)be;
    if (!dbias) return;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double acc = 0.0;
            for (int t = 0; t < T; t++)
                for (int s = 0; s < S; s++) acc += dy[(((size_t)n * T + t) * C + c) * S + s];
            dbias[(size_t)n * C + c] += (float)acc;
        }
}

/* embedding: dy (n, dim) -> dtable (rows, dim): dtable[ids[i]] += dy[i], rows may repeat. Shared
 * with the fast backend (cpu_internal.h). */
void cpu_ref_embedding_backward(vd_backend *be, float *dtable, const float *dy,
                                   const int32_t *ids, int n, int dim)
{
    (void)be;
    if (!dtable) return;
    for (int m = 0; m < n; m++)
        for (int e = 0; e < dim; e++) dtable[(size_t)ids[m] * dim + e] += dy[(size_t)m * dim + e];
}

/* ---- training ---- */

/* pred, target, weight, dpred (n): *loss = mean(weight (pred - target)^2);
 * dpred = 2 weight (pred - target) / n scale; weight NULL: 1. */
static void ref_mse_loss(vd_backend *be, float *loss, float *dpred, const float *pred,
                         const float *target, const float *weight, size_t n, float scale)
{
    (void)be;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        double diff = (double)pred[i] - target[i], wi = weight ? weight[i] : 1.0;
        total += wi * diff * diff;
        if (dpred) dpred[i] = (float)(2.0 * wi * diff / (double)n * scale);
    }
    *loss = (float)(total / (double)n);
}

/* x (n): *out = sum x^2. */
static void ref_sum_squares(vd_backend *be, double *out, const float *x, size_t n)
{
    (void)be;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) total += (double)x[i] * x[i];
    *out = total;
}

/* param, grad, m, v (n): one AdamW step with bias correction and decoupled weight decay. */
static void ref_adamw(vd_backend *be, float *param, const float *grad, float *m, float *v,
                      size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                      int step, float grad_scale)
{
    (void)be;
    double correction1 = 1.0 - pow(beta1, step), correction2 = 1.0 - pow(beta2, step);
    for (size_t i = 0; i < n; i++) {
        double g = (double)grad[i] * grad_scale;
        double m_new = beta1 * (double)m[i] + (1.0 - beta1) * g;
        double v_new = beta2 * (double)v[i] + (1.0 - beta2) * g * g;
        double update = (m_new / correction1) / (sqrt(v_new / correction2) + eps) +
                        weight_decay * (double)param[i];
        m[i] = (float)m_new;
        v[i] = (float)v_new;
        param[i] = (float)(param[i] - lr * update);
    }
}

static void ref_destroy(vd_backend *be)
{
    free(be);
}

vd_backend *vd_backend_cpu_reference(void)
{
    vd_backend *be = vd_calloc(1, sizeof *be);
    be->name = "cpu-reference";
    be->precision = VD_PRECISION_F32;
    cpu_set_memory_ops(be);
    be->destroy = ref_destroy;
    be->conv2d = ref_conv2d;
    be->temporal_conv = ref_temporal_conv;
    be->group_norm = ref_group_norm;
    be->layer_norm = ref_layer_norm;
    be->silu = ref_silu;
    be->gelu = ref_gelu;
    be->linear = ref_linear;
    be->attention = ref_attention;
    be->upsample2x = ref_upsample2x;
    be->add = ref_add;
    be->axpby = ref_axpby;
    be->add_random_normal = cpu_add_random_normal;
    be->add_broadcast = ref_add_broadcast;
    be->add_channel_bias = ref_add_channel_bias;
    be->concat_channels = ref_concat_channels;
    be->transpose = ref_transpose;
    be->timestep_embedding = ref_timestep_embedding;
    be->embedding = ref_embedding;
    be->conv2d_backward = ref_conv2d_backward;
    be->temporal_conv_backward = ref_temporal_conv_backward;
    be->group_norm_backward = ref_group_norm_backward;
    be->layer_norm_backward = ref_layer_norm_backward;
    be->silu_backward = ref_silu_backward;
    be->gelu_backward = ref_gelu_backward;
    be->linear_backward = ref_linear_backward;
    be->attention_backward = ref_attention_backward;
    be->upsample2x_backward = ref_upsample2x_backward;
    be->concat_channels_backward = ref_concat_channels_backward;
    be->add_broadcast_backward = ref_add_broadcast_backward;
    be->add_channel_bias_backward = ref_add_channel_bias_backward;
    be->embedding_backward = cpu_ref_embedding_backward;
    be->mse_loss = ref_mse_loss;
    be->sum_squares = ref_sum_squares;
    be->adamw = ref_adamw;
    return be;
}
