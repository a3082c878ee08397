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

/* ---- ops ---- */

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

/* y(n) = x * (1 + erf(x / sqrt 2)) / 2. */
static void ref_gelu(vd_backend *be, float *y, const float *x, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + erf(v / sqrt(2.0))));
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
    be->add_broadcast = ref_add_broadcast;
    be->add_channel_bias = ref_add_channel_bias;
    be->concat_channels = ref_concat_channels;
    be->transpose = ref_transpose;
    be->timestep_embedding = ref_timestep_embedding;
    be->embedding = ref_embedding;
    return be;
}
