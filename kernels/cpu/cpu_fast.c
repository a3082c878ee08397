/* cpu_fast.c: the default CPU backend. Matrix products (conv2d through im2col, temporal_conv,
 * linear, attention) go to OpenBLAS sgemm; everything else is an OpenMP loop. Results match
 * cpu_reference.c to fp32 rounding (tests/kernels/test_cpu_ops.c checks every op). The precision
 * field is ignored: everything is fp32.
 *
 * Threading: one pool only. OpenBLAS is told to run single-threaded (openblas_set_num_threads(1)
 * when the backend is made; this is process-wide), and every op splits its work into independent
 * tasks (images, frames, column ranges, query blocks) that OpenMP threads run, each task calling
 * sgemm on its own block. OpenBLAS's own worker threads are never given work, so the two thread
 * pools cannot oversubscribe the cores or spin against each other, and small GEMMs cost no
 * hand-off. (Measured on 2 cores: 32 per-image GEMMs of a 64-channel 3x3 conv ran at ~125 GFLOPS
 * this way, ~95 with OpenBLAS threading them, and far slower while both pools were awake.)
 *
 * Scratch (im2col columns, repacked weights, attention scores) lives in one buffer owned by the
 * backend, grown on demand, freed in destroy; each thread uses its own slice, and no op needs
 * more than SCRATCH_BUDGET bytes (except attention with over ~4M keys, whose single score row
 * per thread is the least it can hold). A backend is used by one caller thread at a time. */
#include "cpu_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define SCRATCH_BUDGET        ((size_t)64 << 20)  /* bytes, all threads together */
#define IM2COL_BLOCK_BYTES    ((size_t)4 << 20)   /* target size of one thread's im2col block */
#define SCORE_BLOCK_BYTES     ((size_t)256 << 10) /* target size of one thread's attention scores */
#define PARALLEL_MIN_ELEMENTS 16384 /* below this, elementwise ops stay on one thread */
#define ACTIVATION_BLOCK      4096  /* values per task in silu and gelu */

/* The build targets generic x86-64 (SSE2), so the loops that are bound by arithmetic rather than
 * memory (activations, softmax) are compiled three times, and the best one for the CPU found at
 * load time is used. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

typedef struct {
    float *scratch;
    size_t scratch_floats;
} cpu_fast_state;

/* Returns a scratch area of at least `floats` floats; earlier contents are not kept. */
static float *scratch_reserve(vd_backend *be, size_t floats)
{
    cpu_fast_state *state = be->impl;
    if (floats > state->scratch_floats) {
        free(state->scratch);
        state->scratch = vd_malloc(floats * sizeof(float));
        state->scratch_floats = floats;
    }
    return state->scratch;
}

static size_t thread_count(void)
{
    return (size_t)omp_get_max_threads();
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Chooses how many columns of each of `items` independent output matrices (each `columns` wide)
 * one task handles: whole matrices when they spread evenly over the threads, else one slice per
 * thread; never more than max_columns, and not under 64 columns unless max_columns says so. */
static size_t column_chunk(size_t items, size_t columns, size_t max_columns)
{
    size_t threads = thread_count();
    size_t parts = 1;
    if (items % threads != 0 && items < 8 * threads) parts = threads;
    size_t chunk = (columns + parts - 1) / parts;
    if (chunk < 64) chunk = min_size(64, columns);
    chunk = min_size(chunk, max_columns);
    return chunk ? chunk : 1;
}

/* exp(x) to about 2 ulp, written so that loops over it vectorise (glibc's expf does not without
 * -ffast-math). Inputs are clamped to [-87, 87] so that 2^n stays a normal float: exp of anything
 * below -87 returns 1.6e-38 instead of a denormal or 0, and above 87 returns 6.1e37. NaN stays
 * NaN. The clamp is one fabsf comparison because GCC (with its default -ftrapping-math) will not
 * if-convert two chained float comparisons, which would leave the loops scalar. */
static inline float exp_approx(float x)
{
    const float round_shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer kept in
                                              the low mantissa bits */
    x = fabsf(x) > 87.0f ? copysignf(87.0f, x) : x;
    float shifted = x * 1.44269504f + round_shift;
    float n = shifted - round_shift;
    float r = x - n * 0.693145751953125f; /* ln 2 split in two so that n * high part is exact */
    r = r - n * 1.428606765330187e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    uint32_t scale_bits = (bits - 0x4B400000u + 127u) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

/* ---- convolutions ---- */

/* Writes columns [s0, s0 + cols) of the im2col matrix of one image x(ci, H, W) into
 * col(ci*k*k, cols): col[(i*k + ky)*k + kx, s] = x[i, oy*stride + ky - pad, ox*stride + kx - pad]
 * for output pixel s = oy*Wo + ox, zero outside the image. */
static void im2col_block(float *col, const float *x, int ci, int H, int W, int k, int stride,
                         int Wo, size_t s0, size_t cols)
{
    int pad = k / 2;
    for (int i = 0; i < ci; i++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *dst = col + ((size_t)(i * k + ky) * k + kx) * cols;
                size_t s = s0, end = s0 + cols;
                while (s < end) {
                    int oy = (int)(s / Wo), ox_begin = (int)(s % Wo);
                    int ox_end = (int)min_size((size_t)Wo, ox_begin + (end - s));
                    int iy = oy * stride + ky - pad;
                    /* input columns ix = ox*stride + kx - pad inside [0, W) for ox in [lo, hi) */
                    int lo = kx < pad ? (pad - kx + stride - 1) / stride : 0;
                    int hi = W - 1 + pad - kx >= 0 ? (W - 1 + pad - kx) / stride + 1 : 0;
                    if (iy < 0 || iy >= H) lo = hi = ox_begin;
                    lo = lo < ox_begin ? ox_begin : lo > ox_end ? ox_end : lo;
                    hi = hi < lo ? lo : hi > ox_end ? ox_end : hi;
                    for (int ox = ox_begin; ox < lo; ox++) dst[ox - ox_begin] = 0.0f;
                    if (lo < hi) {
                        const float *src = x + ((size_t)i * H + iy) * W;
                        if (stride == 1)
                            memcpy(dst + (lo - ox_begin), src + lo + kx - pad,
                                   (size_t)(hi - lo) * sizeof *dst);
                        else
                            for (int ox = lo; ox < hi; ox++)
                                dst[ox - ox_begin] = src[ox * stride + kx - pad];
                    }
                    for (int ox = hi; ox < ox_end; ox++) dst[ox - ox_begin] = 0.0f;
                    dst += ox_end - ox_begin;
                    s += (size_t)(ox_end - ox_begin);
                }
            }
}

/* Fills rows(count, cols) of a matrix with leading dimension ld with bias[row], or zeros. */
static void fill_rows(float *y, const float *bias, int count, size_t cols, size_t ld)
{
    for (int r = 0; r < count; r++) {
        float value = bias ? bias[r] : 0.0f;
        float *row = y + r * ld;
        for (size_t s = 0; s < cols; s++) row[s] = value;
    }
}

/* y(B, co, Ho, Wo) = conv(x(B, ci, H, W), w(co, ci, k, k)) + b(co): per task, one column block of
 * one image: y_n[:, block] = w(co, ci*k*k) * im2col(x_n)[:, block]. A 1x1 stride-1 conv needs no
 * im2col: x_n(ci, S) is already the right matrix. */
static void fast_conv2d(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                        int B, int ci, int H, int W, int co, int k, int stride)
{
    int pad = k / 2;
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    size_t out_pixels = (size_t)Ho * Wo, in_pixels = (size_t)H * W;
    size_t depth = (size_t)ci * k * k;
    int direct = k == 1 && stride == 1;
    size_t max_cols = direct ? out_pixels
                             : min_size(IM2COL_BLOCK_BYTES, SCRATCH_BUDGET / thread_count()) /
                                   (depth * sizeof(float));
    size_t chunk = column_chunk((size_t)B, out_pixels, max_cols ? max_cols : 1);
    size_t chunks_per_image = (out_pixels + chunk - 1) / chunk;
    float *scratch = direct ? NULL : scratch_reserve(be, thread_count() * depth * chunk);

#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < (size_t)B * chunks_per_image; task++) {
        size_t n = task / chunks_per_image, s0 = task % chunks_per_image * chunk;
        size_t cols = min_size(chunk, out_pixels - s0);
        const float *image = x + n * ci * in_pixels;
        float *out = y + n * co * out_pixels + s0;
        const float *columns;
        size_t ld_columns;
        if (direct) {
            columns = image + s0;
            ld_columns = in_pixels;
        } else {
            float *block = scratch + (size_t)omp_get_thread_num() * depth * chunk;
            im2col_block(block, image, ci, H, W, k, stride, Wo, s0, cols);
            columns = block;
            ld_columns = cols;
        }
        fill_rows(out, b, co, cols, out_pixels);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, co, (int)cols, (int)depth, 1.0f, w,
                    (int)depth, columns, (int)ld_columns, 1.0f, out, (int)out_pixels);
    }
}

/* y(N, T, co, S) = b + sum_j W_j x(N, T, ci, S)[:, t + j - 1] with W_j = w(co, ci, 3)[:, :, j]:
 * the weights are first repacked into three contiguous (co, ci) matrices, then each task (one
 * frame, one column block) runs up to three accumulating GEMMs, skipping frames outside [0, T). */
static void fast_temporal_conv(vd_backend *be, float *y, const float *x, const float *w,
                               const float *b, int N, int T, int ci, int co, int S)
{
    size_t taps = (size_t)co * ci;
    float *repacked = scratch_reserve(be, 3 * taps);
    for (int j = 0; j < 3; j++)
        for (size_t oi = 0; oi < taps; oi++) repacked[j * taps + oi] = w[oi * 3 + j];

    size_t frames = (size_t)N * T;
    size_t chunk = column_chunk(frames, (size_t)S, (size_t)S);
    size_t chunks_per_frame = ((size_t)S + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < frames * chunks_per_frame; task++) {
        size_t frame = task / chunks_per_frame, s0 = task % chunks_per_frame * chunk;
        size_t cols = min_size(chunk, (size_t)S - s0);
        int t = (int)(frame % (size_t)T);
        float *out = y + frame * co * S + s0;
        fill_rows(out, b, co, cols, (size_t)S);
        for (int j = 0; j < 3; j++) {
            int source = t + j - 1;
            if (source < 0 || source >= T) continue;
            const float *in = x + (frame + (size_t)(j - 1)) * ci * S + s0;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, co, (int)cols, ci, 1.0f,
                        repacked + j * taps, ci, in, S, 1.0f, out, S);
        }
    }
}

/* ---- norms and activations ---- */

/* GroupNorm: x, y (B, C, S); one task per (image, group). Statistics in double, one pass. */
static void fast_group_norm(vd_backend *be, float *y, const float *x, const float *gamma,
                            const float *beta, int B, int C, int S, int G, float eps)
{
    (void)be;
    int group_channels = C / G;
    size_t group_size = (size_t)group_channels * S;
#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < (size_t)B * G; task++) {
        size_t start = task * group_size;
        const float *in = x + start;
        double sum = 0.0, squares = 0.0;
#pragma omp simd reduction(+ : sum, squares)
        for (size_t e = 0; e < group_size; e++) {
            double v = in[e];
            sum += v;
            squares += v * v;
        }
        double mean = sum / (double)group_size;
        double variance = squares / (double)group_size - mean * mean;
        double inv_std = 1.0 / sqrt((variance > 0.0 ? variance : 0.0) + eps);
        int first_channel = (int)(task % (size_t)G) * group_channels;
        for (int cg = 0; cg < group_channels; cg++) {
            float scale = (float)(inv_std * gamma[first_channel + cg]);
            float shift =
                (float)(beta[first_channel + cg] - mean * inv_std * gamma[first_channel + cg]);
            const float *src = in + (size_t)cg * S;
            float *dst = y + start + (size_t)cg * S;
#pragma omp simd
            for (int s = 0; s < S; s++) dst[s] = src[s] * scale + shift;
        }
    }
}

/* LayerNorm over rows of x, y (M, C). */
static void fast_layer_norm(vd_backend *be, float *y, const float *x, const float *gamma,
                            const float *beta, int M, int C, float eps)
{
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)M * C >= PARALLEL_MIN_ELEMENTS)
    for (int m = 0; m < M; m++) {
        const float *row = x + (size_t)m * C;
        double sum = 0.0, squares = 0.0;
#pragma omp simd reduction(+ : sum, squares)
        for (int c = 0; c < C; c++) {
            double v = row[c];
            sum += v;
            squares += v * v;
        }
        double mean = sum / C;
        double variance = squares / C - mean * mean;
        float inv_std = (float)(1.0 / sqrt((variance > 0.0 ? variance : 0.0) + eps));
        float mean_f = (float)mean;
        float *out = y + (size_t)m * C;
#pragma omp simd
        for (int c = 0; c < C; c++) out[c] = (row[c] - mean_f) * inv_std * gamma[c] + beta[c];
    }
}

/* silu over one block: y(n) = x * sigmoid(x). */
VECTOR_CLONES
static void silu_block(float *y, const float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_approx(-x[i]));
}

/* gelu over one block: y(n) = x (1 + erf(x / sqrt 2)) / 2, computed as
 * max(x, 0) - |x| erfc(|x| / sqrt 2) / 2: no comparison (so it vectorises) and no cancellation
 * in the negative tail. erfc(z >= 0) is the Chebyshev fit of Numerical Recipes (erfcc), whose
 * fractional error is below 1.2e-7 everywhere, so small negative outputs keep their accuracy. */
VECTOR_CLONES
static void gelu_block(float *y, const float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float v = x[i], magnitude = fabsf(v);
        float z = magnitude * 0.70710678f;
        float t = 1.0f / (1.0f + 0.5f * z);
        float poly = 0.17087277f;
        poly = poly * t - 0.82215223f;
        poly = poly * t + 1.48851587f;
        poly = poly * t - 1.13520398f;
        poly = poly * t + 0.27886807f;
        poly = poly * t - 0.18628806f;
        poly = poly * t + 0.09678418f;
        poly = poly * t + 0.37409196f;
        poly = poly * t + 1.00002368f;
        poly = poly * t - 1.26551223f;
        float erfc_z = t * exp_approx(poly - z * z);
        y[i] = 0.5f * (v + magnitude) - 0.5f * magnitude * erfc_z;
    }
}

/* Elementwise activations: blocks of ACTIVATION_BLOCK values spread over the threads, each block
 * a vectorised loop (a combined "parallel for simd" loop is left scalar by GCC at -O2). */
static void fast_silu(vd_backend *be, float *y, const float *x, size_t n)
{
    (void)be;
    size_t blocks = (n + ACTIVATION_BLOCK - 1) / ACTIVATION_BLOCK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMENTS)
    for (size_t block = 0; block < blocks; block++) {
        size_t begin = block * ACTIVATION_BLOCK;
        silu_block(y + begin, x + begin, min_size(ACTIVATION_BLOCK, n - begin));
    }
}

static void fast_gelu(vd_backend *be, float *y, const float *x, size_t n)
{
    (void)be;
    size_t blocks = (n + ACTIVATION_BLOCK - 1) / ACTIVATION_BLOCK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMENTS)
    for (size_t block = 0; block < blocks; block++) {
        size_t begin = block * ACTIVATION_BLOCK;
        gelu_block(y + begin, x + begin, min_size(ACTIVATION_BLOCK, n - begin));
    }
}

/* ---- linear and attention ---- */

/* y(M, out) = x(M, in) w(out, in)^T + b(out). Tasks are row blocks of y, or column blocks when
 * there are too few rows to share. */
static void fast_linear(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                        int M, int in, int out)
{
    (void)be;
    size_t threads = thread_count();
    int by_rows = (size_t)M >= 4 * threads || M >= out;
    size_t extent = by_rows ? (size_t)M : (size_t)out;
    size_t tasks = (size_t)M * in * out < 65536 ? 1 : min_size(threads, extent);
    size_t block = (extent + tasks - 1) / tasks;
#pragma omp parallel for schedule(static) if (tasks > 1)
    for (size_t task = 0; task < tasks; task++) {
        size_t begin = task * block;
        if (begin >= extent) continue;
        int count = (int)min_size(block, extent - begin);
        int rows = by_rows ? count : M, cols = by_rows ? out : count;
        const float *x_block = by_rows ? x + begin * in : x;
        const float *w_block = by_rows ? w : w + begin * in;
        const float *b_block = b ? (by_rows ? b : b + begin) : NULL;
        float *y_block = by_rows ? y + begin * out : y + begin;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                y_block[(size_t)r * out + c] = b_block ? b_block[c] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, in, 1.0f, x_block, in,
                    w_block, in, 1.0f, y_block, out);
    }
}

/* Softmax of each row of scores(rows, Lk) in place, without the division: returns the row sums
 * in row_sums so the caller can scale the (shorter) output rows instead. */
VECTOR_CLONES
static void softmax_rows_unnormalised(float *scores, float *row_sums, int rows, int Lk)
{
    for (int r = 0; r < rows; r++) {
        float *row = scores + (size_t)r * Lk;
        float largest = -INFINITY;
#pragma omp simd reduction(max : largest)
        for (int j = 0; j < Lk; j++) largest = row[j] > largest ? row[j] : largest;
        float total = 0.0f;
#pragma omp simd reduction(+ : total)
        for (int j = 0; j < Lk; j++) {
            row[j] = exp_approx(row[j] - largest);
            total += row[j];
        }
        row_sums[r] = total;
    }
}

/* o, q (B, Lq, heads*d); k, v (B/kv_group, Lk, heads*d). One task per (batch entry, head, block
 * of query rows): scores(rows, Lk) = q_block k^T / sqrt(d), softmax, o_block = P v / row sums. */
static void fast_attention(vd_backend *be, float *o, const float *q, const float *k, const float *v,
                           int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    size_t threads = thread_count();
    size_t per_thread_floats =
        min_size(SCORE_BLOCK_BYTES, SCRATCH_BUDGET / threads) / sizeof(float);
    size_t block_rows = per_thread_floats / ((size_t)Lk + 1);
    block_rows = min_size(block_rows ? block_rows : 1, (size_t)Lq);
    size_t blocks_per_head = ((size_t)Lq + block_rows - 1) / block_rows;
    size_t slice = block_rows * ((size_t)Lk + 1);
    float *scratch = scratch_reserve(be, threads * slice);
    size_t row = (size_t)heads * d;
    float scale = 1.0f / sqrtf((float)d);

#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < (size_t)B * heads * blocks_per_head; task++) {
        size_t i0 = task % blocks_per_head * block_rows;
        size_t h = task / blocks_per_head % (size_t)heads;
        size_t b = task / blocks_per_head / (size_t)heads;
        int rows = (int)min_size(block_rows, (size_t)Lq - i0);
        float *scores = scratch + (size_t)omp_get_thread_num() * slice;
        float *row_sums = scores + block_rows * Lk;
        const float *q_block = q + (b * Lq + i0) * row + h * d;
        const float *k_head = k + b / (size_t)kv_group * Lk * row + h * d;
        const float *v_head = v + b / (size_t)kv_group * Lk * row + h * d;
        float *o_block = o + (b * Lq + i0) * row + h * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Lk, d, scale, q_block, (int)row,
                    k_head, (int)row, 0.0f, scores, Lk);
        softmax_rows_unnormalised(scores, row_sums, rows, Lk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, Lk, 1.0f, scores, Lk,
                    v_head, (int)row, 0.0f, o_block, (int)row);
        for (int r = 0; r < rows; r++) {
            float inverse = 1.0f / row_sums[r];
            for (int e = 0; e < d; e++) o_block[(size_t)r * row + e] *= inverse;
        }
    }
}

/* ---- data movement and elementwise arithmetic ---- */

/* Nearest 2x: x (B, C, H, W) -> y (B, C, 2H, 2W); one task per input row. */
static void fast_upsample2x(vd_backend *be, float *y, const float *x, int B, int C, int H, int W)
{
    (void)be;
    size_t input_rows = (size_t)B * C * H;
#pragma omp parallel for schedule(static) if (input_rows * W >= PARALLEL_MIN_ELEMENTS)
    for (size_t r = 0; r < input_rows; r++) {
        const float *src = x + r * W;
        float *dst = y + r * 4 * W; /* output rows 2r and 2r + 1 */
        for (int ix = 0; ix < W; ix++) dst[2 * ix] = dst[2 * ix + 1] = src[ix];
        memcpy(dst + 2 * W, dst, 2 * (size_t)W * sizeof *dst);
    }
}

/* y(n) = a + b. */
static void fast_add(vd_backend *be, float *y, const float *a, const float *b, size_t n)
{
    (void)be;
#pragma omp parallel for simd schedule(static) if (parallel : n >= PARALLEL_MIN_ELEMENTS)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* y(n) = alpha x + beta y; with beta == 0, y is not read (as in BLAS). */
static void fast_axpby(vd_backend *be, float *y, float alpha, const float *x, float beta, size_t n)
{
    (void)be;
    if (beta == 0.0f) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= PARALLEL_MIN_ELEMENTS)
        for (size_t i = 0; i < n; i++) y[i] = alpha * x[i];
    } else {
#pragma omp parallel for simd schedule(static) if (parallel : n >= PARALLEL_MIN_ELEMENTS)
        for (size_t i = 0; i < n; i++) y[i] = alpha * x[i] + beta * y[i];
    }
}

/* y(outer, inner) += x(inner) on every row. */
static void fast_add_broadcast(vd_backend *be, float *y, const float *x, size_t outer, size_t inner)
{
    (void)be;
#pragma omp parallel for schedule(static) if (outer * inner >= PARALLEL_MIN_ELEMENTS)
    for (size_t o = 0; o < outer; o++) {
        float *dst = y + o * inner;
#pragma omp simd
        for (size_t i = 0; i < inner; i++) dst[i] += x[i];
    }
}

/* y(N, T, C, S) += bias(N, C); one task per (n, t, c) plane. */
static void fast_add_channel_bias(vd_backend *be, float *y, const float *bias, int N, int T, int C,
                                  int S)
{
    (void)be;
    size_t planes = (size_t)N * T * C;
#pragma omp parallel for schedule(static) if (planes * S >= PARALLEL_MIN_ELEMENTS)
    for (size_t p = 0; p < planes; p++) {
        size_t n = p / ((size_t)T * C), c = p % (size_t)C;
        float shift = bias[n * C + c];
        float *dst = y + p * S;
#pragma omp simd
        for (int s = 0; s < S; s++) dst[s] += shift;
    }
}

/* y(B, ca + cb, S) = [a(B, ca, S), b(B, cb, S)]: two contiguous copies per image. */
static void fast_concat_channels(vd_backend *be, float *y, const float *a, int ca, const float *b,
                                 int cb, int B, int S)
{
    (void)be;
    size_t a_size = (size_t)ca * S, b_size = (size_t)cb * S, total = (size_t)B * (a_size + b_size);
#pragma omp parallel for schedule(static) if (total >= PARALLEL_MIN_ELEMENTS)
    for (int n = 0; n < B; n++) {
        float *dst = y + (size_t)n * (a_size + b_size);
        memcpy(dst, a + n * a_size, a_size * sizeof *dst);
        memcpy(dst + a_size, b + n * b_size, b_size * sizeof *dst);
    }
}

/* y(A, C, B, D)[a,c,b,d] = x(A, B, C, D)[a,b,c,d], in 32x32 tiles of (b, c) for cache locality;
 * one task per (a, tile row). */
static void fast_transpose(vd_backend *be, float *y, const float *x, int A, int B, int C, int D)
{
    (void)be;
    const int tile = 32;
    int tile_rows = (B + tile - 1) / tile;
    size_t total = (size_t)A * B * C * D;
#pragma omp parallel for collapse(2) schedule(static) if (total >= PARALLEL_MIN_ELEMENTS)
    for (int a = 0; a < A; a++)
        for (int tb = 0; tb < tile_rows; tb++) {
            const float *src = x + (size_t)a * B * C * D;
            float *dst = y + (size_t)a * B * C * D;
            int b_end = tb * tile + tile < B ? tb * tile + tile : B;
            for (int c0 = 0; c0 < C; c0 += tile) {
                int c_end = c0 + tile < C ? c0 + tile : C;
                for (int b = tb * tile; b < b_end; b++)
                    for (int c = c0; c < c_end; c++) {
                        if (D == 1)
                            dst[(size_t)c * B + b] = src[(size_t)b * C + c];
                        else
                            memcpy(dst + ((size_t)c * B + b) * D, src + ((size_t)b * C + c) * D,
                                   (size_t)D * sizeof *dst);
                    }
            }
        }
}

/* y(n, dim) = [cos(t f), sin(t f)], f_i = exp(-ln(10000) i / (dim/2)). The angles are formed in
 * double: t reaches ~1000, where fp32 rounding of t*f alone would move the result by ~1e-4. */
static void fast_timestep_embedding(vd_backend *be, float *y, const float *t, int n, int dim)
{
    (void)be;
    int half = dim / 2;
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= PARALLEL_MIN_ELEMENTS)
    for (int m = 0; m < n; m++)
        for (int i = 0; i < half; i++) {
            double angle = (double)t[m] * exp(-log(10000.0) * i / half);
            y[(size_t)m * dim + i] = (float)cos(angle);
            y[(size_t)m * dim + half + i] = (float)sin(angle);
        }
}

/* y(n, dim) = table[ids[i]]: one row copy per id. */
static void fast_embedding(vd_backend *be, float *y, const int32_t *ids, const float *table, int n,
                           int dim)
{
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= PARALLEL_MIN_ELEMENTS)
    for (int m = 0; m < n; m++)
        memcpy(y + (size_t)m * dim, table + (size_t)ids[m] * dim, (size_t)dim * sizeof *y);
}

static void fast_destroy(vd_backend *be)
{
    cpu_fast_state *state = be->impl;
    free(state->scratch);
    free(state);
    free(be);
}

vd_backend *vd_backend_cpu(void)
{
    openblas_set_num_threads(1); /* see "Threading" at the top of this file */
    vd_backend *be = vd_calloc(1, sizeof *be);
    be->name = "cpu";
    be->precision = VD_PRECISION_F32;
    be->impl = vd_calloc(1, sizeof(cpu_fast_state));
    cpu_set_memory_ops(be);
    be->destroy = fast_destroy;
    be->conv2d = fast_conv2d;
    be->temporal_conv = fast_temporal_conv;
    be->group_norm = fast_group_norm;
    be->layer_norm = fast_layer_norm;
    be->silu = fast_silu;
    be->gelu = fast_gelu;
    be->linear = fast_linear;
    be->attention = fast_attention;
    be->upsample2x = fast_upsample2x;
    be->add = fast_add;
    be->axpby = fast_axpby;
    be->add_broadcast = fast_add_broadcast;
    be->add_channel_bias = fast_add_channel_bias;
    be->concat_channels = fast_concat_channels;
    be->transpose = fast_transpose;
    be->timestep_embedding = fast_timestep_embedding;
    be->embedding = fast_embedding;
    return be;
}
