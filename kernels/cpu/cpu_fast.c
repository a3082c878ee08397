/* cpu_fast.c: the default CPU backend. Matrix products (conv2d through im2col, temporal_conv,
 * linear, attention, forward and backward) go to OpenBLAS sgemm, except the forward 3x3 stride-1
 * convs that a direct AVX-512 kernel runs where the CPU has it (direct_conv3x3); everything else
 * is an OpenMP loop. Results match cpu_reference.c to fp32 rounding (tests/kernels/test_cpu_ops.c
 * checks every forward op, tests/kernels/test_cpu_grads.c every backward and training op). The
 * precision field is ignored: everything is fp32.
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

/* im2col_block's common case, stride 1 over whole output rows [oy0, oy0 + rows): each tap's
 * row is an input row shifted by kx - pad, zero outside the image. Without the general path's
 * division per row it makes the UNet's 3x3 convs 12 to 25% faster on 2 cores (rows of 8 to 32
 * pixels). */
static void im2col_rows(float *col, const float *x, int ci, int H, int W, int k, int Wo, int oy0,
                        int rows)
{
    int pad = k / 2;
    size_t cols = (size_t)rows * Wo;
    for (int i = 0; i < ci; i++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *dst = col + ((size_t)(i * k + ky) * k + kx) * cols;
                int shift = kx - pad; /* input column of output column ox: ox + shift */
                int lo = shift < 0 ? -shift : 0, hi = W - shift < Wo ? W - shift : Wo;
                if (lo > Wo) lo = Wo;
                if (hi < lo) hi = lo;
                for (int r = 0; r < rows; r++, dst += Wo) {
                    int iy = oy0 + r + ky - pad;
                    if (iy < 0 || iy >= H) {
                        memset(dst, 0, (size_t)Wo * sizeof *dst);
                        continue;
                    }
                    const float *src = x + ((size_t)i * H + iy) * W;
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    memcpy(dst + lo, src + lo + shift, (size_t)(hi - lo) * sizeof *dst);
                    for (int ox = hi; ox < Wo; ox++) dst[ox] = 0.0f;
                }
            }
}

/* Writes columns [s0, s0 + cols) of the im2col matrix of one image x(ci, H, W) into
 * col(ci*k*k, cols): col[(i*k + ky)*k + kx, s] = x[i, oy*stride + ky - pad, ox*stride + kx - pad]
 * for output pixel s = oy*Wo + ox, zero outside the image. */
static void im2col_block(float *col, const float *x, int ci, int H, int W, int k, int stride,
                         int Wo, size_t s0, size_t cols)
{
    if (stride == 1 && s0 % (size_t)Wo == 0 && cols % (size_t)Wo == 0) {
        im2col_rows(col, x, ci, H, W, k, Wo, (int)(s0 / (size_t)Wo), (int)(cols / (size_t)Wo));
        return;
    }
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

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* A direct 3x3 stride-1 conv for CPUs with AVX-512, for images of a whole number of 16-pixel
 * vectors. im2col with sgemm spends about half its time copying (the nine-fold im2col matrix,
 * then OpenBLAS packing it again), which shows most at 32 channels, 32x32. Here each image is
 * copied three times, shifted by each kx, and a register tile of CONV_TILE_CHANNELS output
 * channels by up to CONV_TILE_VECTORS vectors of 16 output pixels sums all ci*9 taps in
 * registers. */
#define HAVE_DIRECT_CONV3X3 1
#define CONV_TILE_CHANNELS 8
#define CONV_TILE_VECTORS  3

/* Copies x(ci, H, W) into shifted(ci, 3, H + 2, W):
 * shifted[i, kx, r, ox] = x[i, r - 1, ox + kx - 1], zero outside the image. Tap (ky, kx) of
 * output pixel p = oy*W + ox is then shifted[i, kx][p + ky*W], so a vector of consecutive pixels
 * is one load even across rows. */
static void shift_image(float *shifted, const float *x, int ci, int H, int W)
{
    size_t plane = (size_t)(H + 2) * W;
    for (int i = 0; i < ci; i++)
        for (int kx = 0; kx < 3; kx++) {
            float *dst = shifted + ((size_t)i * 3 + kx) * plane;
            int lo = kx == 0 ? 1 : 0, hi = kx == 2 ? W - 1 : W; /* ox with ox + kx - 1 inside */
            memset(dst, 0, (size_t)W * sizeof *dst);
            memset(dst + (size_t)(H + 1) * W, 0, (size_t)W * sizeof *dst);
            for (int r = 0; r < H; r++) {
                float *row = dst + (size_t)(r + 1) * W;
                const float *src = x + ((size_t)i * H + r) * W;
                row[0] = row[W - 1] = 0.0f;
                if (hi > lo) memcpy(row + lo, src + lo + kx - 1, (size_t)(hi - lo) * sizeof *row);
            }
        }
}

/* out(channels, pixels [s, s + 16*vectors)) of one image (rows of out_pixels) from its shifted
 * copies (ci, 3, H + 2, W). tile_w holds the tile's weights as (ci, 9, CONV_TILE_CHANNELS) and
 * tile_b its biases, zero past `channels`. Inlined with `vectors` a constant so that the
 * accumulators stay in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void
conv3x3_tile(float *out, size_t out_pixels, int channels, const float *shifted, int ci, int H,
             int W, const float *tile_w, const float *tile_b, size_t s, int vectors)
{
    size_t plane = (size_t)(H + 2) * W;
    __m512 acc[CONV_TILE_CHANNELS][CONV_TILE_VECTORS];
#pragma GCC unroll 4
    for (int v = 0; v < vectors; v++)
#pragma GCC unroll 8
        for (int c = 0; c < CONV_TILE_CHANNELS; c++) acc[c][v] = _mm512_set1_ps(tile_b[c]);
    const float *src = shifted + s;
    for (int i = 0; i < ci; i++, tile_w += 9 * CONV_TILE_CHANNELS) {
#pragma GCC unroll 3
        for (int ky = 0; ky < 3; ky++)
#pragma GCC unroll 3
            for (int kx = 0; kx < 3; kx++) {
                size_t offset = ((size_t)i * 3 + kx) * plane + (size_t)ky * W;
                const float *tap_w = tile_w + (ky * 3 + kx) * CONV_TILE_CHANNELS;
                __m512 in[CONV_TILE_VECTORS];
#pragma GCC unroll 4
                for (int v = 0; v < vectors; v++) in[v] = _mm512_loadu_ps(src + offset + 16 * v);
#pragma GCC unroll 8
                for (int c = 0; c < CONV_TILE_CHANNELS; c++) {
                    __m512 weight = _mm512_set1_ps(tap_w[c]);
#pragma GCC unroll 4
                    for (int v = 0; v < vectors; v++)
                        acc[c][v] = _mm512_fmadd_ps(weight, in[v], acc[c][v]);
                }
            }
    }
    for (int c = 0; c < channels; c++)
#pragma GCC unroll 4
        for (int v = 0; v < vectors; v++)
            _mm512_storeu_ps(out + c * out_pixels + s + 16 * (size_t)v, acc[c][v]);
}

/* Pixels [begin, end) (multiples of 16) of y(co, H, W), one image, from its shifted copies,
 * packed weights and biases as made by direct_conv3x3. */
__attribute__((target("avx512f"))) static void
conv3x3_pixels(float *y, const float *shifted, const float *packed_w, const float *packed_b,
               int ci, int H, int W, int co, size_t begin, size_t end)
{
    size_t pixels = (size_t)H * W, tile_pixels = 16 * CONV_TILE_VECTORS;
    for (int c0 = 0; c0 < co; c0 += CONV_TILE_CHANNELS) {
        int channels = co - c0 < CONV_TILE_CHANNELS ? co - c0 : CONV_TILE_CHANNELS;
        const float *tile_w = packed_w + (size_t)c0 * ci * 9, *tile_b = packed_b + c0;
        float *out = y + c0 * pixels;
        size_t s = begin;
        for (; s + tile_pixels <= end; s += tile_pixels)
            conv3x3_tile(out, pixels, channels, shifted, ci, H, W, tile_w, tile_b, s, 3);
        if (end - s == 32)
            conv3x3_tile(out, pixels, channels, shifted, ci, H, W, tile_w, tile_b, s, 2);
        else if (end - s == 16)
            conv3x3_tile(out, pixels, channels, shifted, ci, H, W, tile_w, tile_b, s, 1);
    }
}

/* Whether direct_conv3x3 takes this conv: 3x3, stride 1, whole vectors of pixels, AVX-512, and
 * the shifted copies of all threads within the scratch budget. */
static int direct_conv3x3_applies(int ci, int H, int W, int k, int stride)
{
    size_t shifted = (size_t)ci * 3 * (H + 2) * W * sizeof(float);
    return k == 3 && stride == 1 && H * W % 16 == 0 && shifted * thread_count() <= SCRATCH_BUDGET &&
           __builtin_cpu_supports("avx512f");
}

/* conv2d through conv3x3_pixels: weights repacked into tiles (co rounded up to whole tiles, zeros
 * past co), then each task, one image or (when the images do not spread evenly over the threads)
 * one pixel range of one image, makes the image's shifted copies in its thread's scratch and
 * convolves them. */
static void direct_conv3x3(vd_backend *be, float *y, const float *x, const float *w,
                           const float *b, int B, int ci, int H, int W, int co)
{
    size_t tiles = ((size_t)co + CONV_TILE_CHANNELS - 1) / CONV_TILE_CHANNELS;
    size_t tile_w_floats = (size_t)ci * 9 * CONV_TILE_CHANNELS;
    size_t shifted_floats = (size_t)ci * 3 * (H + 2) * W;
    size_t packed_floats = tiles * (tile_w_floats + CONV_TILE_CHANNELS);
    float *packed_w = scratch_reserve(be, packed_floats + thread_count() * shifted_floats);
    float *packed_b = packed_w + tiles * tile_w_floats;
    float *shifted_all = packed_w + packed_floats;
    for (size_t t = 0; t < tiles; t++)
        for (int c = 0; c < CONV_TILE_CHANNELS; c++) {
            size_t o = t * CONV_TILE_CHANNELS + c;
            for (size_t tap = 0; tap < (size_t)ci * 9; tap++)
                packed_w[(t * ci * 9 + tap) * CONV_TILE_CHANNELS + c] =
                    o < (size_t)co ? w[o * ci * 9 + tap] : 0.0f;
            packed_b[o] = o < (size_t)co && b ? b[o] : 0.0f;
        }
    size_t pixels = (size_t)H * W, in_image = (size_t)ci * pixels, out_image = (size_t)co * pixels;
    size_t tile_pixels = 16 * CONV_TILE_VECTORS;
    size_t part = column_chunk((size_t)B, pixels, pixels);
    part = min_size((part + tile_pixels - 1) / tile_pixels * tile_pixels, pixels);
    size_t parts = (pixels + part - 1) / part;
#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < (size_t)B * parts; task++) {
        size_t n = task / parts, begin = task % parts * part;
        float *shifted = shifted_all + (size_t)omp_get_thread_num() * shifted_floats;
        shift_image(shifted, x + n * in_image, ci, H, W);
        conv3x3_pixels(y + n * out_image, shifted, packed_w, packed_b, ci, H, W, co, begin,
                       min_size(begin + part, pixels));
    }
}
#endif

/* y(B, co, Ho, Wo) = conv(x(B, ci, H, W), w(co, ci, k, k)) + b(co): per task, one column block of
 * one image: y_n[:, block] = w(co, ci*k*k) * im2col(x_n)[:, block]. A 1x1 stride-1 conv needs no
 * im2col: x_n(ci, S) is already the right matrix. */
static void fast_conv2d(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                        int B, int ci, int H, int W, int co, int k, int stride)
{
#ifdef HAVE_DIRECT_CONV3X3
    if (direct_conv3x3_applies(ci, H, W, k, stride)) {
        direct_conv3x3(be, y, x, w, b, B, ci, H, W, co);
        return;
    }
#endif
    int pad = k / 2;
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    size_t out_pixels = (size_t)Ho * Wo, in_pixels = (size_t)H * W;
    size_t depth = (size_t)ci * k * k;
    int direct = k == 1 && stride == 1;
    size_t max_cols = direct ? out_pixels
                             : min_size(IM2COL_BLOCK_BYTES, SCRATCH_BUDGET / thread_count()) /
                                   (depth * sizeof(float));
    size_t chunk = column_chunk((size_t)B, out_pixels, max_cols ? max_cols : 1);
    if (stride == 1 && chunk > (size_t)Wo) chunk -= chunk % (size_t)Wo; /* whole rows: im2col_rows */
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

/* erfc(z) for z >= 0: the Chebyshev fit of Numerical Recipes (erfcc), whose fractional error is
 * below 1.2e-7 everywhere, so small tails keep their accuracy. */
static inline float erfc_nonnegative(float z)
{
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
    return t * exp_approx(poly - z * z);
}

/* gelu over one block: y(n) = x (1 + erf(x / sqrt 2)) / 2, computed as
 * max(x, 0) - |x| erfc(|x| / sqrt 2) / 2: no comparison (so it vectorises) and no cancellation
 * in the negative tail. */
VECTOR_CLONES
static void gelu_block(float *y, const float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float v = x[i], magnitude = fabsf(v);
        float erfc_z = erfc_nonnegative(magnitude * 0.70710678f);
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

/* ---- backward ----
 * Activation gradients are written (=), parameter gradients accumulated (+=). Tasks are chosen so
 * that no two threads write the same gradient element: products that sum over images or frames
 * (dw) are split over output columns or rows of the gradient instead of over images. */

/* How many tasks to split `extent` rows or columns of a product of `work` multiply-adds into. */
static size_t product_tasks(size_t work, size_t extent)
{
    return work < 65536 ? 1 : min_size(thread_count(), extent);
}

/* dst(cols) += column sums of src(rows, cols), in double; tasks are blocks of 64 columns. */
static void column_sums_accumulate(float *dst, const float *src, size_t rows, size_t cols)
{
    enum { COLUMN_BLOCK = 64 };
    size_t blocks = (cols + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
#pragma omp parallel for schedule(static) if (rows * cols >= PARALLEL_MIN_ELEMENTS)
    for (size_t block = 0; block < blocks; block++) {
        size_t c0 = block * COLUMN_BLOCK, count = min_size(COLUMN_BLOCK, cols - c0);
        double sums[COLUMN_BLOCK] = {0.0};
        for (size_t r = 0; r < rows; r++) {
            const float *row = src + r * cols + c0;
            for (size_t c = 0; c < count; c++) sums[c] += row[c];
        }
        for (size_t c = 0; c < count; c++) dst[c0 + c] += (float)sums[c];
    }
}

/* dst[p] += sum over the `repeats` planes of `plane` values at stride `stride` that start at
 * src + p * plane (plane p of every repeat), in double: bias gradients of (R, P, plane) layouts
 * summed over R and the plane. One task per p. */
static void plane_sums_accumulate(float *dst, const float *src, size_t planes, size_t repeats,
                                  size_t plane, size_t stride)
{
#pragma omp parallel for schedule(static) if (planes * repeats * plane >= PARALLEL_MIN_ELEMENTS)
    for (size_t p = 0; p < planes; p++) {
        double acc = 0.0;
        for (size_t r = 0; r < repeats; r++) {
            const float *values = src + r * stride + p * plane;
#pragma omp simd reduction(+ : acc)
            for (size_t e = 0; e < plane; e++) acc += values[e];
        }
        dst[p] += (float)acc;
    }
}

/* The adjoint of im2col_block: adds col(ci*k*k, cols), columns [s0, s0 + cols) of an im2col
 * matrix, back into the image dx(ci, H, W) it was gathered from. */
static void col2im_block(float *dx, const float *col, int ci, int H, int W, int k, int stride,
                         int Wo, size_t s0, size_t cols)
{
    int pad = k / 2;
    for (int i = 0; i < ci; i++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *src = col + ((size_t)(i * k + ky) * k + kx) * cols;
                float *plane = dx + (size_t)i * H * W;
                int oy = (int)(s0 / Wo), ox = (int)(s0 % Wo);
                for (size_t c = 0; c < cols; c++) {
                    int iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                        plane[(size_t)iy * W + ix] += src[c];
                    if (++ox == Wo) ox = 0, oy++;
                }
            }
}

/* Splits `count` items into blocks so that blocks * others >= the thread count where possible;
 * returns the block size. */
static size_t block_size_for(size_t count, size_t others)
{
    size_t threads = thread_count();
    size_t blocks = min_size(count, (threads + others - 1) / others);
    blocks = blocks ? blocks : 1;
    return (count + blocks - 1) / blocks;
}

/* conv2d: dy (B, co, Ho, Wo); dx (B, ci, H, W), dw (co, ci, k, k), db (co). With col_n the
 * im2col matrix (ci*k*k, Ho*Wo) of image n:
 *   dx: per task (image, block of input channels): dcol = w[:, block]^T dy_n, in column blocks,
 *       added back with col2im (a 1x1 stride-1 conv writes w^T dy_n straight into dx);
 *   dw: per task (block of input channels, block of output channels): dw[block] += dy_n col_n^T
 *       over every image, the task making its own im2col rows. */
static void fast_conv2d_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy,
                                 const float *x, const float *w, int B, int ci, int H, int W,
                                 int co, int k, int stride)
{
    int pad = k / 2;
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    size_t out_pixels = (size_t)Ho * Wo, in_pixels = (size_t)H * W;
    size_t taps = (size_t)k * k, depth = (size_t)ci * taps;
    int direct = k == 1 && stride == 1;
    size_t threads = thread_count();

    if (db)
        plane_sums_accumulate(db, dy, (size_t)co, (size_t)B, out_pixels, (size_t)co * out_pixels);

    if (dx) {
        size_t block_channels = block_size_for((size_t)ci, (size_t)B);
        size_t blocks = ((size_t)ci + block_channels - 1) / block_channels;
        size_t rows = block_channels * taps;
        size_t chunk =
            min_size(IM2COL_BLOCK_BYTES, SCRATCH_BUDGET / threads) / (rows * sizeof(float));
        chunk = min_size(chunk ? chunk : 1, out_pixels);
        float *scratch = direct ? NULL : scratch_reserve(be, threads * rows * chunk);
#pragma omp parallel for schedule(static)
        for (size_t task = 0; task < (size_t)B * blocks; task++) {
            size_t n = task / blocks, i0 = task % blocks * block_channels;
            int channels = (int)min_size(block_channels, (size_t)ci - i0);
            const float *dy_n = dy + n * co * out_pixels;
            const float *w_block = w + i0 * taps; /* columns of w(co, depth) */
            float *dx_block = dx + (n * ci + i0) * in_pixels;
            if (direct) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, channels, (int)out_pixels, co,
                            1.0f, w_block, (int)depth, dy_n, (int)out_pixels, 0.0f, dx_block,
                            (int)in_pixels);
                continue;
            }
            float *col = scratch + (size_t)omp_get_thread_num() * rows * chunk;
            memset(dx_block, 0, (size_t)channels * in_pixels * sizeof *dx_block);
            for (size_t s0 = 0; s0 < out_pixels; s0 += chunk) {
                size_t cols = min_size(chunk, out_pixels - s0);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, channels * (int)taps,
                            (int)cols, co, 1.0f, w_block, (int)depth, dy_n + s0, (int)out_pixels,
                            0.0f, col, (int)cols);
                col2im_block(dx_block, col, channels, H, W, k, stride, Wo, s0, cols);
            }
        }
    }

    if (dw) {
        size_t block_channels = block_size_for((size_t)ci, 1);
        size_t channel_blocks = ((size_t)ci + block_channels - 1) / block_channels;
        size_t block_outputs = block_size_for((size_t)co, channel_blocks);
        size_t output_blocks = ((size_t)co + block_outputs - 1) / block_outputs;
        size_t rows = block_channels * taps;
        size_t chunk =
            min_size(IM2COL_BLOCK_BYTES, SCRATCH_BUDGET / threads) / (rows * sizeof(float));
        chunk = direct ? out_pixels : min_size(chunk ? chunk : 1, out_pixels);
        if (stride == 1 && chunk > (size_t)Wo) chunk -= chunk % (size_t)Wo; /* whole rows: im2col_rows */
        float *scratch = direct ? NULL : scratch_reserve(be, threads * rows * chunk);
#pragma omp parallel for schedule(static)
        for (size_t task = 0; task < channel_blocks * output_blocks; task++) {
            size_t i0 = task / output_blocks * block_channels;
            size_t o0 = task % output_blocks * block_outputs;
            int channels = (int)min_size(block_channels, (size_t)ci - i0);
            int outputs = (int)min_size(block_outputs, (size_t)co - o0);
            float *dw_block = dw + o0 * depth + i0 * taps;
            float *col = direct ? NULL : scratch + (size_t)omp_get_thread_num() * rows * chunk;
            for (int n = 0; n < B; n++) {
                const float *image = x + ((size_t)n * ci + i0) * in_pixels;
                const float *dy_n = dy + ((size_t)n * co + o0) * out_pixels;
                for (size_t s0 = 0; s0 < out_pixels; s0 += chunk) {
                    size_t cols = min_size(chunk, out_pixels - s0);
                    const float *columns = direct ? image + s0 : col;
                    if (!direct) im2col_block(col, image, channels, H, W, k, stride, Wo, s0, cols);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, outputs,
                                channels * (int)taps, (int)cols, 1.0f, dy_n + s0, (int)out_pixels,
                                columns, direct ? (int)in_pixels : (int)cols, 1.0f, dw_block,
                                (int)depth);
                }
            }
        }
    }
}

/* temporal_conv: dy (N, T, co, S); dx (N, T, ci, S), dw (co, ci, 3), db (co). With W_j the
 * (co, ci) matrix of tap j (repacked as in the forward):
 *   dx: per task (frame ts, column block): dx_ts = sum_j W_j^T dy_{ts - j + 1};
 *   dw: per task (tap j, block of output channels): dW_j[block] = sum over frames of
 *       dy_t[block] x_{t + j - 1}^T into repacked scratch, then added into dw's (co, ci, 3)
 *       layout. */
static void fast_temporal_conv_backward(vd_backend *be, float *dx, float *dw, float *db,
                                        const float *dy, const float *x, const float *w, int N,
                                        int T, int ci, int co, int S)
{
    size_t taps = (size_t)co * ci, frames = (size_t)N * T;
    float *repacked = scratch_reserve(be, 6 * taps); /* W_j, then dW_j */
    float *grad_repacked = repacked + 3 * taps;

    if (db) plane_sums_accumulate(db, dy, (size_t)co, frames, (size_t)S, (size_t)co * S);

    if (dx) {
        for (int j = 0; j < 3; j++)
            for (size_t oi = 0; oi < taps; oi++) repacked[j * taps + oi] = w[oi * 3 + j];
        size_t chunk = column_chunk(frames, (size_t)S, (size_t)S);
        size_t chunks_per_frame = ((size_t)S + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
        for (size_t task = 0; task < frames * chunks_per_frame; task++) {
            size_t frame = task / chunks_per_frame, s0 = task % chunks_per_frame * chunk;
            size_t cols = min_size(chunk, (size_t)S - s0);
            int ts = (int)(frame % (size_t)T);
            float *out = dx + frame * ci * S + s0;
            float beta = 0.0f; /* the centre tap (j = 1) always exists and comes first */
            for (int step = 0; step < 3; step++) {
                int j = (step + 1) % 3, t = ts - j + 1;
                if (t < 0 || t >= T) continue;
                const float *grad = dy + (frame - (size_t)(j - 1)) * co * S + s0;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ci, (int)cols, co, 1.0f,
                            repacked + j * taps, ci, grad, S, beta, out, S);
                beta = 1.0f;
            }
        }
    }

    if (dw) {
        size_t block_outputs = block_size_for((size_t)co, 3);
        size_t output_blocks = ((size_t)co + block_outputs - 1) / block_outputs;
#pragma omp parallel for schedule(static)
        for (size_t task = 0; task < 3 * output_blocks; task++) {
            int j = (int)(task / output_blocks);
            size_t o0 = task % output_blocks * block_outputs;
            int outputs = (int)min_size(block_outputs, (size_t)co - o0);
            float *dst = grad_repacked + j * taps + o0 * ci;
            memset(dst, 0, (size_t)outputs * ci * sizeof *dst);
            for (size_t frame = 0; frame < frames; frame++) {
                int source = (int)(frame % (size_t)T) + j - 1;
                if (source < 0 || source >= T) continue;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, outputs, ci, S, 1.0f,
                            dy + (frame * co + o0) * S, S, x + (frame + (size_t)(j - 1)) * ci * S,
                            S, 1.0f, dst, ci);
            }
        }
#pragma omp parallel for schedule(static) if (3 * taps >= PARALLEL_MIN_ELEMENTS)
        for (size_t oi = 0; oi < taps; oi++)
            for (int j = 0; j < 3; j++) dw[oi * 3 + j] += grad_repacked[j * taps + oi];
    }
}

/* GroupNorm: dy, x, dx (B, C, S); gamma, dgamma, dbeta (C). One task per (image, group): the
 * statistics (one pass, as in the forward), the per-channel sums a_c = sum dy xhat and
 * b_c = sum dy, then dx = inv_std (gamma_c dy - sum_c gamma_c b_c / n - xhat sum_c gamma_c a_c / n)
 * with n the group size. dgamma and dbeta add a_c and b_c over the images afterwards. */
static void fast_group_norm_backward(vd_backend *be, float *dx, float *dgamma, float *dbeta,
                                     const float *dy, const float *x, const float *gamma, int B,
                                     int C, int S, int G, float eps)
{
    (void)be;
    int group_channels = C / G;
    size_t group_size = (size_t)group_channels * S;
    double *sums = vd_malloc(2 * (size_t)B * C * sizeof *sums); /* (B, C, {a, b}) */
#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < (size_t)B * G; task++) {
        size_t start = task * group_size;
        const float *in = x + start, *grad = dy + start;
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
        float mean_f = (float)mean, inv_std_f = (float)inv_std;
        size_t first_channel = task / (size_t)G * C + task % (size_t)G * group_channels;
        double gamma_a = 0.0, gamma_b = 0.0;
        for (int cg = 0; cg < group_channels; cg++) {
            const float *src = in + (size_t)cg * S, *g = grad + (size_t)cg * S;
            double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
            for (int s = 0; s < S; s++) {
                a += g[s] * ((src[s] - mean_f) * inv_std_f);
                b += g[s];
            }
            size_t c = first_channel + cg;
            sums[2 * c] = a;
            sums[2 * c + 1] = b;
            gamma_a += gamma[c % (size_t)C] * a;
            gamma_b += gamma[c % (size_t)C] * b;
        }
        if (!dx) continue;
        float shift = (float)(inv_std * gamma_b / (double)group_size);
        float slope = (float)(inv_std * inv_std * gamma_a / (double)group_size);
        for (int cg = 0; cg < group_channels; cg++) {
            size_t offset = (size_t)cg * S;
            float scale = inv_std_f * gamma[(first_channel + cg) % (size_t)C];
            const float *src = in + offset, *g = grad + offset;
            float *dst = dx + start + offset;
#pragma omp simd
            for (int s = 0; s < S; s++) dst[s] = scale * g[s] - shift - slope * (src[s] - mean_f);
        }
    }
    if (dgamma || dbeta)
        for (int c = 0; c < C; c++) {
            double a = 0.0, b = 0.0;
            for (int n = 0; n < B; n++) {
                a += sums[2 * ((size_t)n * C + c)];
                b += sums[2 * ((size_t)n * C + c) + 1];
            }
            if (dgamma) dgamma[c] += (float)a;
            if (dbeta) dbeta[c] += (float)b;
        }
    free(sums);
}

/* LayerNorm: dy, x, dx (M, C); gamma, dgamma, dbeta (C). Rows in parallel for dx (keeping each
 * row's mean and inv_std), then blocks of 64 columns in parallel for dgamma and dbeta. */
static void fast_layer_norm_backward(vd_backend *be, float *dx, float *dgamma, float *dbeta,
                                     const float *dy, const float *x, const float *gamma, int M,
                                     int C, float eps)
{
    (void)be;
    float *stats = vd_malloc(2 * (size_t)M * sizeof *stats); /* (M, {mean, inv_std}) */
    int parallel = (size_t)M * C >= PARALLEL_MIN_ELEMENTS;
#pragma omp parallel for schedule(static) if (parallel)
    for (int m = 0; m < M; m++) {
        const float *row = x + (size_t)m * C, *g = dy + (size_t)m * C;
        double sum = 0.0, squares = 0.0;
#pragma omp simd reduction(+ : sum, squares)
        for (int c = 0; c < C; c++) {
            double v = row[c];
            sum += v;
            squares += v * v;
        }
        double mean = sum / C;
        double variance = squares / C - mean * mean;
        float mean_f = (float)mean;
        float inv_std = (float)(1.0 / sqrt((variance > 0.0 ? variance : 0.0) + eps));
        stats[2 * (size_t)m] = mean_f;
        stats[2 * (size_t)m + 1] = inv_std;
        if (!dx) continue;
        double gamma_a = 0.0, gamma_b = 0.0;
#pragma omp simd reduction(+ : gamma_a, gamma_b)
        for (int c = 0; c < C; c++) {
            float scaled = g[c] * gamma[c];
            gamma_a += scaled * ((row[c] - mean_f) * inv_std);
            gamma_b += scaled;
        }
        float shift = (float)(gamma_b / C), slope = (float)(gamma_a / C);
        float *out = dx + (size_t)m * C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float xhat = (row[c] - mean_f) * inv_std;
            out[c] = inv_std * (g[c] * gamma[c] - shift - xhat * slope);
        }
    }
    if (dgamma || dbeta) {
        enum { COLUMN_BLOCK = 64 };
        int blocks = (C + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
#pragma omp parallel for schedule(static) if (parallel)
        for (int block = 0; block < blocks; block++) {
            int c0 = block * COLUMN_BLOCK, count = C - c0 < COLUMN_BLOCK ? C - c0 : COLUMN_BLOCK;
            double a[COLUMN_BLOCK] = {0.0}, b[COLUMN_BLOCK] = {0.0};
            for (int m = 0; m < M; m++) {
                const float *row = x + (size_t)m * C + c0, *g = dy + (size_t)m * C + c0;
                float mean = stats[2 * (size_t)m], inv_std = stats[2 * (size_t)m + 1];
                for (int c = 0; c < count; c++) {
                    a[c] += g[c] * ((row[c] - mean) * inv_std);
                    b[c] += g[c];
                }
            }
            for (int c = 0; c < count; c++) {
                if (dgamma) dgamma[c0 + c] += (float)a[c];
                if (dbeta) dbeta[c0 + c] += (float)b[c];
            }
        }
    }
    free(stats);
}

/* silu backward over one block: dx(n) = dy s (1 + x (1 - s)), s = sigmoid(x). */
VECTOR_CLONES
static void silu_backward_block(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float sigmoid = 1.0f / (1.0f + exp_approx(-x[i]));
        dx[i] = dy[i] * sigmoid * (1.0f + x[i] * (1.0f - sigmoid));
    }
}

/* gelu backward over one block: dx(n) = dy (Phi(x) + x phi(x)); Phi(x) is erfc(|x| / sqrt 2) / 2
 * for x < 0 and one minus that for x >= 0, phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
VECTOR_CLONES
static void gelu_backward_block(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float tail = 0.5f * erfc_nonnegative(fabsf(v) * 0.70710678f);
        float cdf = v < 0.0f ? tail : 1.0f - tail;
        float density = 0.39894228f * exp_approx(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * density);
    }
}

/* Runs an activation's backward over n values in blocks, in parallel. */
static void activation_backward(void (*block_fn)(float *, const float *, const float *, size_t), float *dx,
                                const float *dy, const float *x, size_t n)
{
    if (!dx) return;
    size_t blocks = (n + ACTIVATION_BLOCK - 1) / ACTIVATION_BLOCK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMENTS)
    for (size_t block = 0; block < blocks; block++) {
        size_t begin = block * ACTIVATION_BLOCK;
        block_fn(dx + begin, dy + begin, x + begin, min_size(ACTIVATION_BLOCK, n - begin));
    }
}

static void fast_silu_backward(vd_backend *be, float *dx, const float *dy, const float *x,
                               size_t n)
{
    (void)be;
    activation_backward(silu_backward_block, dx, dy, x, n);
}

static void fast_gelu_backward(vd_backend *be, float *dx, const float *dy, const float *x,
                               size_t n)
{
    (void)be;
    activation_backward(gelu_backward_block, dx, dy, x, n);
}

/* linear: dy (M, out); dx (M, in) = dy w, in row blocks of M (or column blocks of in when M is
 * small); dw (out, in) += dy^T x, in row blocks of out (or column blocks of in); db (out) +=
 * column sums of dy. */
static void fast_linear_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy,
                                 const float *x, const float *w, int M, int in, int out)
{
    (void)be;
    size_t threads = thread_count(), work = (size_t)M * in * out;
    if (dx) {
        int by_rows = (size_t)M >= 4 * threads || M >= in;
        size_t extent = by_rows ? (size_t)M : (size_t)in;
        size_t tasks = product_tasks(work, extent), block = (extent + tasks - 1) / tasks;
#pragma omp parallel for schedule(static) if (tasks > 1)
        for (size_t task = 0; task < tasks; task++) {
            size_t begin = task * block;
            if (begin >= extent) continue;
            int count = (int)min_size(block, extent - begin);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, by_rows ? count : M,
                        by_rows ? in : count, out, 1.0f, by_rows ? dy + begin * out : dy, out,
                        by_rows ? w : w + begin, in, 0.0f, by_rows ? dx + begin * in : dx + begin,
                        in);
        }
    }
    if (dw) {
        int by_rows = (size_t)out >= 4 * threads || out >= in;
        size_t extent = by_rows ? (size_t)out : (size_t)in;
        size_t tasks = product_tasks(work, extent), block = (extent + tasks - 1) / tasks;
#pragma omp parallel for schedule(static) if (tasks > 1)
        for (size_t task = 0; task < tasks; task++) {
            size_t begin = task * block;
            if (begin >= extent) continue;
            int count = (int)min_size(block, extent - begin);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, by_rows ? count : out,
                        by_rows ? in : count, M, 1.0f, by_rows ? dy + begin : dy, out,
                        by_rows ? x : x + begin, in, 1.0f, by_rows ? dw + begin * in : dw + begin,
                        in);
        }
    }
    if (db) column_sums_accumulate(db, dy, (size_t)M, (size_t)out);
}

/* The softmax backward of each row of probs(rows, Lk), in place in grad(rows, Lk):
 * grad = probs (grad - sum_j probs_j grad_j). */
VECTOR_CLONES
static void softmax_backward_rows(float *grad, const float *probs, int rows, int Lk)
{
    for (int r = 0; r < rows; r++) {
        float *g = grad + (size_t)r * Lk;
        const float *p = probs + (size_t)r * Lk;
        float weighted = 0.0f;
#pragma omp simd reduction(+ : weighted)
        for (int j = 0; j < Lk; j++) weighted += p[j] * g[j];
#pragma omp simd
        for (int j = 0; j < Lk; j++) g[j] = p[j] * (g[j] - weighted);
    }
}

/* attention: dout, q, dq (B, Lq, heads*d); k, v, dk, dv (B/kv_group, Lk, heads*d). One task per
 * (key/value entry, head), so that dk and dv, summed over the kv_group query entries that share
 * them, have one writer. Per block of query rows: P = softmax(q k^T / sqrt(d)) recomputed;
 * dv += P^T dout; dS = softmax backward of dout v^T; dq = dS k / sqrt(d);
 * dk += dS^T q / sqrt(d). */
static void fast_attention_backward(vd_backend *be, float *dq, float *dk, float *dv,
                                    const float *dout, const float *q, const float *k,
                                    const float *v, int B, int Lq, int Lk, int heads, int d,
                                    int kv_group)
{
    size_t threads = thread_count();
    size_t per_thread_floats =
        min_size(SCORE_BLOCK_BYTES, SCRATCH_BUDGET / threads) / sizeof(float);
    size_t block_rows = per_thread_floats / (2 * (size_t)Lk + 1);
    block_rows = min_size(block_rows ? block_rows : 1, (size_t)Lq);
    size_t slice = block_rows * (2 * (size_t)Lk + 1);
    float *scratch = scratch_reserve(be, threads * slice);
    size_t row = (size_t)heads * d;
    float scale = 1.0f / sqrtf((float)d);

#pragma omp parallel for schedule(static)
    for (size_t task = 0; task < (size_t)(B / kv_group) * heads; task++) {
        size_t h = task % (size_t)heads, entry = task / (size_t)heads;
        size_t head_offset = entry * Lk * row + h * d;
        const float *k_head = k + head_offset, *v_head = v + head_offset;
        float *probs = scratch + (size_t)omp_get_thread_num() * slice;
        float *dprobs = probs + block_rows * Lk, *row_sums = dprobs + block_rows * Lk;
        for (int j = 0; j < Lk; j++) {
            if (dk) memset(dk + head_offset + (size_t)j * row, 0, (size_t)d * sizeof *dk);
            if (dv) memset(dv + head_offset + (size_t)j * row, 0, (size_t)d * sizeof *dv);
        }
        for (size_t b = entry * kv_group; b < (entry + 1) * kv_group; b++)
            for (size_t i0 = 0; i0 < (size_t)Lq; i0 += block_rows) {
                int rows = (int)min_size(block_rows, (size_t)Lq - i0);
                size_t block_offset = (b * Lq + i0) * row + h * d;
                const float *q_block = q + block_offset, *dout_block = dout + block_offset;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Lk, d, scale, q_block,
                            (int)row, k_head, (int)row, 0.0f, probs, Lk);
                softmax_rows_unnormalised(probs, row_sums, rows, Lk);
                for (int r = 0; r < rows; r++) {
                    float inverse = 1.0f / row_sums[r];
                    for (int j = 0; j < Lk; j++) probs[(size_t)r * Lk + j] *= inverse;
                }
                if (dv)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Lk, d, rows, 1.0f, probs,
                                Lk, dout_block, (int)row, 1.0f, dv + head_offset, (int)row);
                if (!dq && !dk) continue;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Lk, d, 1.0f, dout_block,
                            (int)row, v_head, (int)row, 0.0f, dprobs, Lk);
                softmax_backward_rows(dprobs, probs, rows, Lk);
                if (dq)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, Lk, scale,
                                dprobs, Lk, k_head, (int)row, 0.0f, dq + block_offset, (int)row);
                if (dk)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Lk, d, rows, scale, dprobs,
                                Lk, q_block, (int)row, 1.0f, dk + head_offset, (int)row);
            }
    }
}

/* upsample2x: dy (B, C, 2H, 2W) -> dx (B, C, H, W), each 2x2 block summed; one task per input
 * row. */
static void fast_upsample2x_backward(vd_backend *be, float *dx, const float *dy, int B, int C,
                                     int H, int W)
{
    (void)be;
    if (!dx) return;
    size_t input_rows = (size_t)B * C * H;
#pragma omp parallel for schedule(static) if (input_rows * W >= PARALLEL_MIN_ELEMENTS)
    for (size_t r = 0; r < input_rows; r++) {
        const float *top = dy + r * 4 * W, *bottom = top + 2 * W; /* output rows 2r, 2r + 1 */
        float *dst = dx + r * W;
        for (int ix = 0; ix < W; ix++)
            dst[ix] = top[2 * ix] + top[2 * ix + 1] + bottom[2 * ix] + bottom[2 * ix + 1];
    }
}

/* concat_channels: dy (B, ca + cb, S) -> da (B, ca, S), db (B, cb, S): two copies per image. */
static void fast_concat_channels_backward(vd_backend *be, float *da, float *db, const float *dy,
                                          int ca, int cb, int B, int S)
{
    (void)be;
    size_t a_size = (size_t)ca * S, b_size = (size_t)cb * S, total = (size_t)B * (a_size + b_size);
#pragma omp parallel for schedule(static) if (total >= PARALLEL_MIN_ELEMENTS)
    for (int n = 0; n < B; n++) {
        const float *src = dy + (size_t)n * (a_size + b_size);
        if (da) memcpy(da + n * a_size, src, a_size * sizeof *da);
        if (db) memcpy(db + n * b_size, src + a_size, b_size * sizeof *db);
    }
}

/* add_broadcast: dy (outer, inner) -> dx (inner) += column sums. */
static void fast_add_broadcast_backward(vd_backend *be, float *dx, const float *dy, size_t outer,
                                        size_t inner)
{
    (void)be;
    if (dx) column_sums_accumulate(dx, dy, outer, inner);
}

/* add_channel_bias: dy (N, T, C, S) -> dbias (N, C) += sums over T and S; one task per (n, c). */
static void fast_add_channel_bias_backward(vd_backend *be, float *dbias, const float *dy, int N,
                                           int T, int C, int S)
{
    (void)be;
    if (!dbias) return;
    for (int n = 0; n < N; n++)
        plane_sums_accumulate(dbias + (size_t)n * C, dy + (size_t)n * T * C * S, (size_t)C,
                              (size_t)T, (size_t)S, (size_t)C * S);
}

/* ---- training ---- */

/* pred, target, weight, dpred (n): *loss = mean(weight (pred - target)^2), summed in double;
 * dpred = 2 weight (pred - target) / n scale; weight NULL: 1. */
static void fast_mse_loss(vd_backend *be, float *loss, float *dpred, const float *pred,
                          const float *target, const float *weight, size_t n, float scale)
{
    (void)be;
    double total = 0.0;
    float factor = (float)(2.0 / (double)n * scale);
#pragma omp parallel for simd schedule(static) reduction(+ : total) \
    if (parallel : n >= PARALLEL_MIN_ELEMENTS)
    for (size_t i = 0; i < n; i++) {
        float diff = pred[i] - target[i], wi = weight ? weight[i] : 1.0f;
        total += (double)wi * diff * diff;
        if (dpred) dpred[i] = factor * wi * diff;
    }
    *loss = (float)(total / (double)n);
}

/* x (n): *out = sum x^2, in double. */
static void fast_sum_squares(vd_backend *be, double *out, const float *x, size_t n)
{
    (void)be;
    double total = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : total) \
    if (parallel : n >= PARALLEL_MIN_ELEMENTS)
    for (size_t i = 0; i < n; i++) total += (double)x[i] * x[i];
    *out = total;
}

/* param, grad, m, v (n): one AdamW step, in fp32 with the bias corrections formed in double. */
static void fast_adamw(vd_backend *be, float *param, const float *grad, float *m, float *v,
                       size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                       int step, float grad_scale)
{
    (void)be;
    float inv_correction1 = (float)(1.0 / (1.0 - pow(beta1, step)));
    float inv_correction2 = (float)(1.0 / (1.0 - pow(beta2, step)));
#pragma omp parallel for simd schedule(static) if (parallel : n >= PARALLEL_MIN_ELEMENTS)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float m_new = beta1 * m[i] + (1.0f - beta1) * g;
        float v_new = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = m_new;
        v[i] = v_new;
        param[i] -= lr * (m_new * inv_correction1 / (sqrtf(v_new * inv_correction2) + eps) +
                          weight_decay * param[i]);
    }
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
    be->add_random_normal = cpu_add_random_normal;
    be->add_broadcast = fast_add_broadcast;
    be->add_channel_bias = fast_add_channel_bias;
    be->concat_channels = fast_concat_channels;
    be->transpose = fast_transpose;
    be->timestep_embedding = fast_timestep_embedding;
    be->embedding = fast_embedding;
    be->conv2d_backward = fast_conv2d_backward;
    be->temporal_conv_backward = fast_temporal_conv_backward;
    be->group_norm_backward = fast_group_norm_backward;
    be->layer_norm_backward = fast_layer_norm_backward;
    be->silu_backward = fast_silu_backward;
    be->gelu_backward = fast_gelu_backward;
    be->linear_backward = fast_linear_backward;
    be->attention_backward = fast_attention_backward;
    be->upsample2x_backward = fast_upsample2x_backward;
    be->concat_channels_backward = fast_concat_channels_backward;
    be->add_broadcast_backward = fast_add_broadcast_backward;
    be->add_channel_bias_backward = fast_add_channel_bias_backward;
    /* Embedding gradients touch a few text-token rows per step: the reference loop is already
     * memory-bound and a parallel version would need per-row ownership for repeated ids. */
    be->embedding_backward = cpu_ref_embedding_backward;
    be->mse_loss = fast_mse_loss;
    be->sum_squares = fast_sum_squares;
    be->adamw = fast_adamw;
    return be;
}
