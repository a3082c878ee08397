/* test_cpu_ops.c: the CPU backends' op tests.
 *
 * Two kinds of checks: (1) every op of the fast backend against the reference backend on random
 * inputs at shapes chosen to reach the edge cases (odd sizes, strides, 1x1 convs, T = 1, shared
 * keys, several groups, in-place calls), with outputs poisoned with NaN first so that an element
 * left unwritten fails; (2) known-answer checks on both backends (identity kernels, normalised
 * statistics, uniform attention, closed-form activations), so the reference is not only checked
 * against itself. fp32 tolerance: relative error 1e-5 of the output's norm. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"
#include "rng.h"
#include "../test_util.h"

#define REL_TOL 1e-5

static vd_backend *fast_backend, *reference_backend;
static vd_backend *both_backends[2]; /* reference first, for the known-answer tests */

static int setup_backends(void **state)
{
    (void)state;
    fast_backend = vd_backend_cpu();
    reference_backend = vd_backend_cpu_reference();
    both_backends[0] = reference_backend;
    both_backends[1] = fast_backend;
    return 0;
}

static int teardown_backends(void **state)
{
    (void)state;
    fast_backend->destroy(fast_backend);
    reference_backend->destroy(reference_backend);
    return 0;
}

/* The CPU backends keep tensors in host memory, so plain host buffers are valid arguments. */
static float *normal_tensor(size_t n, uint64_t seed, float mean, float std)
{
    float *x = vd_malloc(n * sizeof *x);
    test_fill_normal(x, n, seed, mean, std);
    return x;
}

static float *poisoned_tensor(size_t n)
{
    float *x = vd_malloc(n * sizeof *x);
    test_poison(x, n);
    return x;
}

static float *copy_tensor(const float *x, size_t n)
{
    float *y = vd_malloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static void expect_close(const char *what, const float *got, const float *want, size_t n,
                         double tol)
{
    double err = test_rel_error(got, want, n);
    if (!(err <= tol)) print_error("%s: relative error %.3g (tolerance %.1g)\n", what, err, tol);
    assert_true(err <= tol);
}

static void expect_near(const char *what, double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        print_error("%s: got %.9g, want %.9g (tolerance %.1g)\n", what, got, want, tol);
    assert_true(fabs(got - want) <= tol);
}

/* ---- fast backend against the reference ---- */

static void check_conv2d(int B, int ci, int H, int W, int co, int k, int stride, int with_bias)
{
    int pad = k / 2;
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    size_t nx = (size_t)B * ci * H * W, ny = (size_t)B * co * Ho * Wo;
    float *x = normal_tensor(nx, 11 + (uint64_t)ci, 0.0f, 1.0f);
    float *w = normal_tensor((size_t)co * ci * k * k, 12, 0.0f, 0.3f);
    float *b = with_bias ? normal_tensor((size_t)co, 13, 0.0f, 1.0f) : NULL;
    float *y_ref = poisoned_tensor(ny), *y_fast = poisoned_tensor(ny);
    reference_backend->conv2d(reference_backend, y_ref, x, w, b, B, ci, H, W, co, k, stride);
    fast_backend->conv2d(fast_backend, y_fast, x, w, b, B, ci, H, W, co, k, stride);
    char what[160];
    snprintf(what, sizeof what, "conv2d B=%d ci=%d %dx%d co=%d k=%d stride=%d bias=%d", B, ci, H, W,
             co, k, stride, with_bias);
    expect_close(what, y_fast, y_ref, ny, REL_TOL);
    free(x), free(w), free(b), free(y_ref), free(y_fast);
}

static void test_conv2d_matches_reference(void **state)
{
    (void)state;
    check_conv2d(2, 3, 7, 5, 4, 3, 1, 1);      /* odd sizes */
    check_conv2d(3, 5, 9, 8, 6, 3, 2, 1);      /* stride 2, odd height */
    check_conv2d(2, 4, 8, 8, 6, 3, 2, 0);      /* stride 2, even, no bias */
    check_conv2d(2, 8, 6, 6, 5, 1, 1, 1);      /* 1x1: direct GEMM */
    check_conv2d(3, 8, 7, 5, 5, 1, 1, 0);      /* 1x1, odd image count */
    check_conv2d(1, 4, 7, 7, 3, 1, 2, 1);      /* 1x1 stride 2: im2col */
    check_conv2d(4, 3, 5, 6, 2, 5, 1, 1);      /* k = 5 */
    check_conv2d(1, 8, 33, 17, 12, 3, 1, 1);   /* one image: split into column blocks */
    check_conv2d(1, 1024, 17, 15, 8, 3, 1, 1); /* deep: im2col blocks of 105 columns (7 rows) */
    check_conv2d(1, 4096, 5, 40, 4, 3, 1, 0);  /* deeper: blocks of 28 columns, part of a row */
    check_conv2d(4, 32, 16, 16, 32, 3, 1, 1);  /* a UNet-like shape */
    check_conv2d(2, 1, 1, 1, 1, 3, 1, 1);      /* one pixel: all taps but the centre pad */
    /* 3x3 stride 1 over whole 16-pixel vectors: the direct path where AVX-512 is there */
    check_conv2d(3, 5, 5, 16, 13, 3, 1, 1);    /* 80 pixels: tiles of 3 and 2 vectors; 13 = 8 + 5 */
    check_conv2d(2, 32, 32, 32, 32, 3, 1, 0);  /* 32x32: 21 tiles of 3 vectors and one of 1 */
    check_conv2d(1, 3, 4, 48, 4, 3, 1, 1);     /* 3-vector rows, one image, part of a tile */
    check_conv2d(2, 7, 8, 8, 9, 3, 1, 1);      /* 8x8: each vector spans two rows */
    check_conv2d(1, 3, 4, 12, 5, 3, 1, 0);     /* rows of 12: vectors start mid-row */
    check_conv2d(1, 6, 16, 16, 8, 3, 1, 1);    /* one image in two pixel ranges: 144 + 112 */
}

static void check_temporal_conv(int N, int T, int ci, int co, int S, int with_bias)
{
    size_t nx = (size_t)N * T * ci * S, ny = (size_t)N * T * co * S;
    float *x = normal_tensor(nx, 21, 0.0f, 1.0f);
    float *w = normal_tensor((size_t)co * ci * 3, 22, 0.0f, 0.3f);
    float *b = with_bias ? normal_tensor((size_t)co, 23, 0.0f, 1.0f) : NULL;
    float *y_ref = poisoned_tensor(ny), *y_fast = poisoned_tensor(ny);
    reference_backend->temporal_conv(reference_backend, y_ref, x, w, b, N, T, ci, co, S);
    fast_backend->temporal_conv(fast_backend, y_fast, x, w, b, N, T, ci, co, S);
    char what[160];
    snprintf(what, sizeof what, "temporal_conv N=%d T=%d ci=%d co=%d S=%d bias=%d", N, T, ci, co, S,
             with_bias);
    expect_close(what, y_fast, y_ref, ny, REL_TOL);
    free(x), free(w), free(b), free(y_ref), free(y_fast);
}

static void test_temporal_conv_matches_reference(void **state)
{
    (void)state;
    check_temporal_conv(2, 5, 3, 4, 7, 1);   /* ci != co, odd sizes */
    check_temporal_conv(1, 1, 4, 4, 9, 1);   /* T = 1: only the centre tap */
    check_temporal_conv(3, 2, 6, 5, 1, 0);   /* S = 1, no bias */
    check_temporal_conv(1, 3, 5, 7, 200, 1); /* 3 frames: column blocks */
    check_temporal_conv(2, 8, 32, 32, 64, 1);
}

static void check_group_norm(int B, int C, int S, int G, int in_place)
{
    size_t n = (size_t)B * C * S;
    float *x = normal_tensor(n, 31, 3.0f, 2.0f); /* offset mean: tests the variance formula */
    float *gamma = normal_tensor((size_t)C, 32, 1.0f, 0.5f),
          *beta = normal_tensor((size_t)C, 33, 0.0f, 1.0f);
    float *y_ref = poisoned_tensor(n), *y_fast = poisoned_tensor(n);
    reference_backend->group_norm(reference_backend, y_ref, x, gamma, beta, B, C, S, G, 1e-5f);
    if (in_place) {
        memcpy(y_fast, x, n * sizeof *x);
        fast_backend->group_norm(fast_backend, y_fast, y_fast, gamma, beta, B, C, S, G, 1e-5f);
    } else {
        fast_backend->group_norm(fast_backend, y_fast, x, gamma, beta, B, C, S, G, 1e-5f);
    }
    char what[160];
    snprintf(what, sizeof what, "group_norm B=%d C=%d S=%d G=%d in_place=%d", B, C, S, G, in_place);
    expect_close(what, y_fast, y_ref, n, REL_TOL);
    free(x), free(gamma), free(beta), free(y_ref), free(y_fast);
}

static void test_group_norm_matches_reference(void **state)
{
    (void)state;
    check_group_norm(2, 6, 7, 3, 0);
    check_group_norm(3, 8, 5, 1, 0); /* one group */
    check_group_norm(2, 8, 5, 8, 1); /* one channel per group, in place */
    check_group_norm(1, 32, 64, 8, 1);
    check_group_norm(16, 64, 100, 16, 0);
}

static void check_layer_norm(int M, int C, int in_place)
{
    size_t n = (size_t)M * C;
    float *x = normal_tensor(n, 41, -2.0f, 3.0f);
    float *gamma = normal_tensor((size_t)C, 42, 1.0f, 0.5f),
          *beta = normal_tensor((size_t)C, 43, 0.0f, 1.0f);
    float *y_ref = poisoned_tensor(n), *y_fast = poisoned_tensor(n);
    reference_backend->layer_norm(reference_backend, y_ref, x, gamma, beta, M, C, 1e-5f);
    if (in_place) {
        memcpy(y_fast, x, n * sizeof *x);
        fast_backend->layer_norm(fast_backend, y_fast, y_fast, gamma, beta, M, C, 1e-5f);
    } else {
        fast_backend->layer_norm(fast_backend, y_fast, x, gamma, beta, M, C, 1e-5f);
    }
    char what[160];
    snprintf(what, sizeof what, "layer_norm M=%d C=%d in_place=%d", M, C, in_place);
    expect_close(what, y_fast, y_ref, n, REL_TOL);
    free(x), free(gamma), free(beta), free(y_ref), free(y_fast);
}

static void test_layer_norm_matches_reference(void **state)
{
    (void)state;
    check_layer_norm(5, 7, 0);
    check_layer_norm(1, 1, 0);
    check_layer_norm(33, 128, 1);
    check_layer_norm(1000, 96, 0);
}

/* silu or gelu of both backends over n values spread across [-12, 12]. */
static void check_activation(int gelu, size_t n, int in_place)
{
    float *x = vd_malloc(n * sizeof *x);
    test_fill_uniform(x, n, 51, -12.0f, 12.0f);
    float *y_ref = poisoned_tensor(n), *y_fast = poisoned_tensor(n);
    if (gelu)
        reference_backend->gelu(reference_backend, y_ref, x, n);
    else
        reference_backend->silu(reference_backend, y_ref, x, n);
    const float *in = x;
    if (in_place) {
        memcpy(y_fast, x, n * sizeof *x);
        in = y_fast;
    }
    if (gelu)
        fast_backend->gelu(fast_backend, y_fast, in, n);
    else
        fast_backend->silu(fast_backend, y_fast, in, n);
    char what[160];
    snprintf(what, sizeof what, "%s n=%zu in_place=%d", gelu ? "gelu" : "silu", n, in_place);
    expect_close(what, y_fast, y_ref, n, REL_TOL);
    /* elementwise too: the norm alone could hide a bad small value */
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(y_fast[i] - y_ref[i]) <= 1e-6f + 1e-5f * fabsf(y_ref[i]))) {
            print_error("%s: x=%.9g fast=%.9g reference=%.9g\n", what, x[i], y_fast[i], y_ref[i]);
            fail();
        }
    free(x), free(y_ref), free(y_fast);
}

static void test_activations_match_reference(void **state)
{
    (void)state;
    size_t sizes[] = {1, 17, 100003};
    for (size_t i = 0; i < VD_ARRAY_LEN(sizes); i++)
        for (int in_place = 0; in_place < 2; in_place++) {
            check_activation(0, sizes[i], in_place);
            check_activation(1, sizes[i], in_place);
        }
}

static void check_linear(int M, int in, int out, int with_bias)
{
    size_t ny = (size_t)M * out;
    float *x = normal_tensor((size_t)M * in, 61, 0.0f, 1.0f);
    float *w = normal_tensor((size_t)out * in, 62, 0.0f, 0.2f);
    float *b = with_bias ? normal_tensor((size_t)out, 63, 0.0f, 1.0f) : NULL;
    float *y_ref = poisoned_tensor(ny), *y_fast = poisoned_tensor(ny);
    reference_backend->linear(reference_backend, y_ref, x, w, b, M, in, out);
    fast_backend->linear(fast_backend, y_fast, x, w, b, M, in, out);
    char what[160];
    snprintf(what, sizeof what, "linear M=%d in=%d out=%d bias=%d", M, in, out, with_bias);
    expect_close(what, y_fast, y_ref, ny, REL_TOL);
    free(x), free(w), free(b), free(y_ref), free(y_fast);
}

static void test_linear_matches_reference(void **state)
{
    (void)state;
    check_linear(1, 3, 5, 1);
    check_linear(7, 13, 11, 0);
    check_linear(2, 128, 512, 1); /* few rows: split over output columns */
    check_linear(3, 64, 9, 1);
    check_linear(1001, 128, 128, 1);
    check_linear(65, 256, 1024, 0);
}

static void check_attention(int B, int Lq, int Lk, int heads, int d, int kv_group, float q_scale)
{
    size_t row = (size_t)heads * d;
    size_t nq = (size_t)B * Lq * row, nkv = (size_t)(B / kv_group) * Lk * row;
    float *q = normal_tensor(nq, 71, 0.0f, q_scale);
    float *k = normal_tensor(nkv, 72, 0.0f, 1.0f), *v = normal_tensor(nkv, 73, 0.0f, 1.0f);
    float *o_ref = poisoned_tensor(nq), *o_fast = poisoned_tensor(nq);
    reference_backend->attention(reference_backend, o_ref, q, k, v, B, Lq, Lk, heads, d, kv_group);
    fast_backend->attention(fast_backend, o_fast, q, k, v, B, Lq, Lk, heads, d, kv_group);
    char what[160];
    snprintf(what, sizeof what, "attention B=%d Lq=%d Lk=%d heads=%d d=%d kv_group=%d q_scale=%g",
             B, Lq, Lk, heads, d, kv_group, q_scale);
    expect_close(what, o_fast, o_ref, nq, REL_TOL);
    free(q), free(k), free(v), free(o_ref), free(o_fast);
}

static void test_attention_matches_reference(void **state)
{
    (void)state;
    check_attention(2, 5, 7, 3, 4, 1, 1.0f);
    check_attention(6, 9, 4, 2, 8, 3, 1.0f);      /* kv_group > 1: shared keys */
    check_attention(4, 1, 1, 1, 1, 2, 1.0f);      /* one key: output is v */
    check_attention(2, 1000, 13, 1, 8, 1, 1.0f);  /* Lq >> Lk, several query blocks */
    check_attention(1, 300, 300, 2, 16, 1, 1.0f); /* more than one query block per head */
    check_attention(2, 16, 16, 4, 32, 1, 1.0f);   /* temporal-attention-like */
    check_attention(4, 64, 16, 4, 32, 2, 1.0f);   /* cross-attention-like */
    check_attention(2, 9, 11, 2, 8, 1, 40.0f);    /* scores in the hundreds: stable softmax */
}

static void test_upsample2x_matches_reference(void **state)
{
    (void)state;
    int shapes[][4] = {{2, 3, 5, 7}, {1, 1, 1, 1}, {4, 16, 32, 32}};
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        int B = shapes[i][0], C = shapes[i][1], H = shapes[i][2], W = shapes[i][3];
        size_t nx = (size_t)B * C * H * W, ny = 4 * nx;
        float *x = normal_tensor(nx, 81, 0.0f, 1.0f);
        float *y_ref = poisoned_tensor(ny), *y_fast = poisoned_tensor(ny);
        reference_backend->upsample2x(reference_backend, y_ref, x, B, C, H, W);
        fast_backend->upsample2x(fast_backend, y_fast, x, B, C, H, W);
        assert_true(test_max_abs_diff(y_fast, y_ref, ny) == 0.0);
        free(x), free(y_ref), free(y_fast);
    }
}

static void test_elementwise_match_reference(void **state)
{
    (void)state;
    size_t n = 70001;
    float *a = normal_tensor(n, 91, 0.0f, 1.0f), *b = normal_tensor(n, 92, 0.0f, 1.0f);
    float *y_ref = poisoned_tensor(n), *y_fast = poisoned_tensor(n);

    reference_backend->add(reference_backend, y_ref, a, b, n);
    fast_backend->add(fast_backend, y_fast, a, b, n);
    expect_close("add", y_fast, y_ref, n, 0.0);
    memcpy(y_fast, a, n * sizeof *a); /* y == a */
    fast_backend->add(fast_backend, y_fast, y_fast, b, n);
    expect_close("add in place (y == a)", y_fast, y_ref, n, 0.0);
    memcpy(y_fast, b, n * sizeof *b); /* y == b */
    fast_backend->add(fast_backend, y_fast, a, y_fast, n);
    expect_close("add in place (y == b)", y_fast, y_ref, n, 0.0);

    memcpy(y_ref, b, n * sizeof *b);
    memcpy(y_fast, b, n * sizeof *b);
    reference_backend->axpby(reference_backend, y_ref, 0.75f, a, -1.5f, n);
    fast_backend->axpby(fast_backend, y_fast, 0.75f, a, -1.5f, n);
    expect_close("axpby", y_fast, y_ref, n, REL_TOL);

    /* beta = 0: y is not read, so a NaN already in it must not survive */
    test_poison(y_ref, n);
    test_poison(y_fast, n);
    reference_backend->axpby(reference_backend, y_ref, 2.0f, a, 0.0f, n);
    fast_backend->axpby(fast_backend, y_fast, 2.0f, a, 0.0f, n);
    expect_close("axpby beta=0", y_fast, y_ref, n, 0.0);
    for (size_t i = 0; i < n; i++) assert_true(y_ref[i] == 2.0f * a[i]);
    free(a), free(b), free(y_ref), free(y_fast);
}

static void test_broadcasts_match_reference(void **state)
{
    (void)state;
    /* add_broadcast: (outer, inner) += (inner) */
    size_t outer = 37, inner = 129;
    float *x = normal_tensor(inner, 101, 0.0f, 1.0f);
    float *y_ref = normal_tensor(outer * inner, 102, 0.0f, 1.0f);
    float *y_fast = copy_tensor(y_ref, outer * inner);
    reference_backend->add_broadcast(reference_backend, y_ref, x, outer, inner);
    fast_backend->add_broadcast(fast_backend, y_fast, x, outer, inner);
    expect_close("add_broadcast", y_fast, y_ref, outer * inner, 0.0);
    free(x), free(y_ref), free(y_fast);

    /* add_channel_bias: (N, T, C, S) += (N, C) */
    int N = 3, T = 5, C = 7, S = 33;
    size_t n = (size_t)N * T * C * S;
    float *bias = normal_tensor((size_t)N * C, 103, 0.0f, 1.0f);
    y_ref = normal_tensor(n, 104, 0.0f, 1.0f);
    y_fast = copy_tensor(y_ref, n);
    reference_backend->add_channel_bias(reference_backend, y_ref, bias, N, T, C, S);
    fast_backend->add_channel_bias(fast_backend, y_fast, bias, N, T, C, S);
    expect_close("add_channel_bias", y_fast, y_ref, n, 0.0);
    free(bias), free(y_ref), free(y_fast);
}

static void test_concat_and_transpose_match_reference(void **state)
{
    (void)state;
    int ca = 3, cb = 5, B = 4, S = 29;
    size_t n = (size_t)B * (ca + cb) * S;
    float *a = normal_tensor((size_t)B * ca * S, 111, 0.0f, 1.0f);
    float *b = normal_tensor((size_t)B * cb * S, 112, 0.0f, 1.0f);
    float *y_ref = poisoned_tensor(n), *y_fast = poisoned_tensor(n);
    reference_backend->concat_channels(reference_backend, y_ref, a, ca, b, cb, B, S);
    fast_backend->concat_channels(fast_backend, y_fast, a, ca, b, cb, B, S);
    expect_close("concat_channels", y_fast, y_ref, n, 0.0);
    free(a), free(b), free(y_ref), free(y_fast);

    int shapes[][4] = {{2, 3, 5, 1}, {3, 37, 70, 1}, {2, 5, 33, 4}, {1, 1, 1, 1}, {2, 64, 64, 3}};
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        int A = shapes[i][0], TB = shapes[i][1], TC = shapes[i][2], D = shapes[i][3];
        size_t count = (size_t)A * TB * TC * D;
        float *x = normal_tensor(count, 113, 0.0f, 1.0f);
        float *t_ref = poisoned_tensor(count), *t_fast = poisoned_tensor(count);
        reference_backend->transpose(reference_backend, t_ref, x, A, TB, TC, D);
        fast_backend->transpose(fast_backend, t_fast, x, A, TB, TC, D);
        char what[96];
        snprintf(what, sizeof what, "transpose %dx%dx%dx%d", A, TB, TC, D);
        expect_close(what, t_fast, t_ref, count, 0.0);
        free(x), free(t_ref), free(t_fast);
    }
}

static void test_embeddings_match_reference(void **state)
{
    (void)state;
    int n = 7, dim = 64;
    float t[7] = {0.0f, 1.0f, 2.5f, 17.0f, 250.0f, 999.0f, 500.0f};
    float *y_ref = poisoned_tensor((size_t)n * dim), *y_fast = poisoned_tensor((size_t)n * dim);
    reference_backend->timestep_embedding(reference_backend, y_ref, t, n, dim);
    fast_backend->timestep_embedding(fast_backend, y_fast, t, n, dim);
    expect_close("timestep_embedding", y_fast, y_ref, (size_t)n * dim, REL_TOL);
    free(y_ref), free(y_fast);

    int rows = 11;
    int32_t ids[9] = {0, 10, 3, 3, 7, 1, 0, 9, 2};
    float *table = normal_tensor((size_t)rows * dim, 121, 0.0f, 1.0f);
    y_ref = poisoned_tensor(9 * (size_t)dim);
    y_fast = poisoned_tensor(9 * (size_t)dim);
    reference_backend->embedding(reference_backend, y_ref, ids, table, 9, dim);
    fast_backend->embedding(fast_backend, y_fast, ids, table, 9, dim);
    expect_close("embedding", y_fast, y_ref, 9 * (size_t)dim, 0.0);
    for (int i = 0; i < 9; i++)
        assert_memory_equal(y_ref + (size_t)i * dim, table + (size_t)ids[i] * dim,
                            dim * sizeof(float));
    free(table), free(y_ref), free(y_fast);
}

/* ---- known answers, on both backends ---- */

static void test_conv2d_known_answers(void **state)
{
    (void)state;
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        /* a centred delta kernel that maps channel i to channel i is the identity */
        int B = 2, C = 3, H = 6, W = 5;
        size_t n = (size_t)B * C * H * W;
        float *x = normal_tensor(n, 131, 0.0f, 1.0f), *y = poisoned_tensor(n);
        for (int k = 1; k <= 5; k += 2) {
            float *w = vd_calloc((size_t)C * C * k * k, sizeof(float));
            for (int c = 0; c < C; c++) w[(((size_t)c * C + c) * k + k / 2) * k + k / 2] = 1.0f;
            test_poison(y, n);
            be->conv2d(be, y, x, w, NULL, B, C, H, W, C, k, 1);
            expect_close(be->name, y, x, n, 0.0);

            /* with stride 2 the same kernel picks every other pixel */
            int Ho = (H - 1) / 2 + 1, Wo = (W - 1) / 2 + 1;
            float *strided = poisoned_tensor((size_t)B * C * Ho * Wo);
            be->conv2d(be, strided, x, w, NULL, B, C, H, W, C, k, 2);
            for (int p = 0; p < B * C; p++)
                for (int oy = 0; oy < Ho; oy++)
                    for (int ox = 0; ox < Wo; ox++)
                        assert_true(strided[((size_t)p * Ho + oy) * Wo + ox] ==
                                    x[((size_t)p * H + 2 * oy) * W + 2 * ox]);
            free(w), free(strided);
        }
        free(x), free(y);

        /* all-ones 3x3 kernel on an all-ones 3x4 image counts the in-bounds taps, plus the bias */
        float ones[12], w_ones[9], bias = 0.5f, counted[12];
        for (int i = 0; i < 12; i++) ones[i] = 1.0f;
        for (int i = 0; i < 9; i++) w_ones[i] = 1.0f;
        be->conv2d(be, counted, ones, w_ones, &bias, 1, 1, 3, 4, 1, 3, 1);
        float want[12] = {4, 6, 6, 4, 6, 9, 9, 6, 4, 6, 6, 4};
        for (int i = 0; i < 12; i++) expect_near(be->name, counted[i], want[i] + 0.5, 0.0);
    }
}

static void test_temporal_conv_known_answers(void **state)
{
    (void)state;
    int N = 2, T = 4, C = 3, S = 5;
    size_t n = (size_t)N * T * C * S;
    float *x = normal_tensor(n, 141, 0.0f, 1.0f), *y = poisoned_tensor(n);
    float *w = vd_malloc((size_t)C * C * 3 * sizeof(float));
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        /* taps [0, 1, 0] times the identity matrix: y = x */
        for (size_t i = 0; i < (size_t)C * C * 3; i++) w[i] = 0.0f;
        for (int c = 0; c < C; c++) w[((size_t)c * C + c) * 3 + 1] = 1.0f;
        test_poison(y, n);
        be->temporal_conv(be, y, x, w, NULL, N, T, C, C, S);
        expect_close(be->name, y, x, n, 0.0);

        /* taps [1, 0, 0]: each frame takes the previous one, the first becomes the bias */
        for (size_t i = 0; i < (size_t)C * C * 3; i++) w[i] = 0.0f;
        for (int c = 0; c < C; c++) w[((size_t)c * C + c) * 3] = 1.0f;
        float bias[3] = {0.25f, -1.0f, 2.0f};
        test_poison(y, n);
        be->temporal_conv(be, y, x, w, bias, N, T, C, C, S);
        for (int v = 0; v < N; v++)
            for (int t = 0; t < T; t++)
                for (int c = 0; c < C; c++)
                    for (int s = 0; s < S; s++) {
                        float got = y[(((size_t)v * T + t) * C + c) * S + s];
                        float want =
                            bias[c] + (t > 0 ? x[(((size_t)v * T + t - 1) * C + c) * S + s] : 0.0f);
                        expect_near(be->name, got, want, 1e-6);
                    }
    }
    free(x), free(y), free(w);
}

static void test_norms_known_answers(void **state)
{
    (void)state;
    int B = 3, C = 12, S = 50, G = 4;
    size_t n = (size_t)B * C * S;
    float *x = normal_tensor(n, 151, 5.0f, 2.0f), *y = poisoned_tensor(n);
    float *gamma = vd_malloc((size_t)C * sizeof(float)),
          *beta = vd_calloc((size_t)C, sizeof(float));
    for (int c = 0; c < C; c++) gamma[c] = 1.0f;
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        /* gamma = 1, beta = 0: every group has mean 0 and (biased) variance 1 */
        test_poison(y, n);
        be->group_norm(be, y, x, gamma, beta, B, C, S, G, 1e-5f);
        size_t group_size = (size_t)(C / G) * S;
        for (size_t g = 0; g < (size_t)B * G; g++) {
            double sum = 0.0, squares = 0.0;
            for (size_t e = 0; e < group_size; e++) sum += y[g * group_size + e];
            double mean = sum / group_size;
            for (size_t e = 0; e < group_size; e++)
                squares += (y[g * group_size + e] - mean) * (y[g * group_size + e] - mean);
            expect_near(be->name, mean, 0.0, 1e-5);
            expect_near(be->name, squares / group_size, 1.0, 1e-4);
        }

        /* layer_norm, same statistics per row of (B*S, C) */
        test_poison(y, n);
        be->layer_norm(be, y, x, gamma, beta, B * S, C, 1e-5f);
        for (int m = 0; m < B * S; m++) {
            double sum = 0.0, squares = 0.0;
            for (int c = 0; c < C; c++) sum += y[(size_t)m * C + c];
            for (int c = 0; c < C; c++)
                squares += (y[(size_t)m * C + c] - sum / C) * (y[(size_t)m * C + c] - sum / C);
            expect_near(be->name, sum / C, 0.0, 1e-5);
            expect_near(be->name, squares / C, 1.0, 1e-4);
        }
    }
    free(x), free(y), free(gamma), free(beta);
}

static void test_activations_known_answers(void **state)
{
    (void)state;
    /* silu(x) = x / (1 + e^-x); gelu(x) = x * Phi(x) with Phi(1) = 0.841344746... */
    float x[6] = {0.0f, 1.0f, -1.0f, 20.0f, -20.0f, 2.0f};
    double silu_want[6] = {0.0, 0.7310585786, -0.2689414214, 20.0, -4.122307e-8, 1.7615941560};
    double gelu_want[6] = {0.0, 0.8413447461, -0.1586552539, 20.0, 0.0, 1.9544997361};
    float y[6];
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        be->silu(be, y, x, 6);
        for (int i = 0; i < 6; i++)
            expect_near(be->name, y[i], silu_want[i], 1e-6 * (1 + fabs(silu_want[i])));
        be->gelu(be, y, x, 6);
        for (int i = 0; i < 6; i++)
            expect_near(be->name, y[i], gelu_want[i], 1e-6 * (1 + fabs(gelu_want[i])));
    }
}

static void test_linear_known_answers(void **state)
{
    (void)state;
    /* the identity weight gives y = x + b */
    int M = 5, D = 6;
    float *x = normal_tensor((size_t)M * D, 161, 0.0f, 1.0f),
          *b = normal_tensor((size_t)D, 162, 0.0f, 1.0f);
    float *w = vd_calloc((size_t)D * D, sizeof(float)), *y = poisoned_tensor((size_t)M * D);
    for (int i = 0; i < D; i++) w[(size_t)i * D + i] = 1.0f;
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        test_poison(y, (size_t)M * D);
        be->linear(be, y, x, w, b, M, D, D);
        for (int m = 0; m < M; m++)
            for (int i = 0; i < D; i++)
                expect_near(be->name, y[(size_t)m * D + i], x[(size_t)m * D + i] + b[i], 1e-6);
    }
    /* a 1x2 times 3x2^T product by hand: [1, 2] . rows [1, 0], [0, 1], [3, -1] */
    float x2[2] = {1.0f, 2.0f}, w2[6] = {1, 0, 0, 1, 3, -1}, y2[3];
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        be->linear(be, y2, x2, w2, NULL, 1, 2, 3);
        expect_near(be->name, y2[0], 1.0, 0.0);
        expect_near(be->name, y2[1], 2.0, 0.0);
        expect_near(be->name, y2[2], 1.0, 0.0);
    }
    free(x), free(b), free(w), free(y);
}

static void test_attention_known_answers(void **state)
{
    (void)state;
    int B = 4, Lq = 3, Lk = 5, heads = 2, d = 4, kv_group = 2;
    size_t row = (size_t)heads * d, nq = (size_t)B * Lq * row,
           nkv = (size_t)(B / kv_group) * Lk * row;
    float *q = normal_tensor(nq, 171, 0.0f, 1.0f), *k = vd_malloc(nkv * sizeof(float));
    float *v = normal_tensor(nkv, 172, 0.0f, 1.0f), *o = poisoned_tensor(nq);
    /* identical keys: every weight is 1/Lk, so each output row is the mean of the values */
    for (int kb = 0; kb < B / kv_group; kb++)
        for (int j = 0; j < Lk; j++)
            for (size_t e = 0; e < row; e++)
                k[((size_t)kb * Lk + j) * row + e] = 0.1f * (float)e - (float)kb;
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        test_poison(o, nq);
        be->attention(be, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Lq; i++)
                for (size_t e = 0; e < row; e++) {
                    double mean = 0.0;
                    for (int j = 0; j < Lk; j++)
                        mean += v[((size_t)(b / kv_group) * Lk + j) * row + e];
                    expect_near(be->name, o[((size_t)b * Lq + i) * row + e], mean / Lk, 1e-6);
                }
    }
    /* one key far ahead of the others: the output is that key's value */
    for (size_t i = 0; i < nq; i++) q[i] = 1.0f;
    for (size_t i = 0; i < nkv; i++) k[i] = 0.0f;
    for (int kb = 0; kb < B / kv_group; kb++)
        for (size_t e = 0; e < row; e++) k[((size_t)kb * Lk + (size_t)(2 + kb)) * row + e] = 50.0f;
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        be->attention(be, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Lq; i++)
                for (size_t e = 0; e < row; e++) {
                    int kb = b / kv_group;
                    expect_near(be->name, o[((size_t)b * Lq + i) * row + e],
                                v[((size_t)kb * Lk + (size_t)(2 + kb)) * row + e], 1e-5);
                }
    }
    free(q), free(k), free(v), free(o);
}

static void test_data_movement_known_answers(void **state)
{
    (void)state;
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        /* upsample of [[1, 2], [3, 4]] */
        float x[4] = {1, 2, 3, 4}, y[16];
        float want[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
        test_poison(y, 16);
        be->upsample2x(be, y, x, 1, 1, 2, 2);
        assert_memory_equal(y, want, sizeof want);

        /* transpose twice is the identity, and one element lands where the definition says */
        int A = 2, TB = 3, TC = 5, D = 2;
        size_t n = (size_t)A * TB * TC * D;
        float *src = normal_tensor(n, 181, 0.0f, 1.0f), *once = poisoned_tensor(n),
              *twice = poisoned_tensor(n);
        be->transpose(be, once, src, A, TB, TC, D);
        be->transpose(be, twice, once, A, TC, TB, D);
        assert_memory_equal(twice, src, n * sizeof(float));
        /* x[1, 2, 4, 1] -> y[1, 4, 2, 1] */
        assert_true(once[(((size_t)1 * TC + 4) * TB + 2) * D + 1] ==
                    src[(((size_t)1 * TB + 2) * TC + 4) * D + 1]);
        free(src), free(once), free(twice);

        /* concat of channels [a0 a1 | b0] per image */
        float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, cat[6], cat_want[6] = {1, 2, 5, 3, 4, 6};
        be->concat_channels(be, cat, a, 2, b, 1, 2, 1);
        assert_memory_equal(cat, cat_want, sizeof cat);

        /* add_channel_bias on (N=2, T=1, C=2, S=2) */
        float plane[8] = {0}, bias[4] = {1, 2, 3, 4}, plane_want[8] = {1, 1, 2, 2, 3, 3, 4, 4};
        be->add_channel_bias(be, plane, bias, 2, 1, 2, 2);
        assert_memory_equal(plane, plane_want, sizeof plane);

        /* axpby and add_broadcast */
        float ys[3] = {1, 2, 3}, xs[3] = {10, 20, 30}, axpby_want[3] = {3, 6, 9};
        be->axpby(be, ys, 0.5f, xs, -2.0f, 3); /* 0.5x - 2y = 5-2, 10-4, 15-6 */
        assert_memory_equal(ys, axpby_want, sizeof ys);
        float grid[6] = {0, 0, 0, 1, 1, 1}, grid_want[6] = {10, 20, 30, 11, 21, 31};
        be->add_broadcast(be, grid, xs, 2, 3);
        assert_memory_equal(grid, grid_want, sizeof grid);
    }
}

/* add_random_normal adds scale times the engine's normals (rng.h's vd_rng_normal, the stream the
 * PyTorch reference ports), and those look standard normal: mean 0, variance 1, and two seeds'
 * streams uncorrelated. Bounds are about five standard errors at n = 70001. */
static void test_random_normal_known_answers(void **state)
{
    (void)state;
    size_t n = 70001;
    float *b = normal_tensor(n, 95, 0.0f, 1.0f), *g = vd_malloc(n * sizeof *g), *h = vd_malloc(n * sizeof *h);
    vd_rng_normal(77, 0, g, n);
    vd_rng_normal(78, 0, h, n);
    for (int k = 0; k < 2; k++) {
        float *y = copy_tensor(b, n);
        both_backends[k]->add_random_normal(both_backends[k], y, 0.5f, 77, n);
        for (size_t i = 0; i < n; i++) assert_true(y[i] == 0.5f * g[i] + b[i]);
        free(y);
    }
    double mean = 0.0, square = 0.0, cross = 0.0;
    for (size_t i = 0; i < n; i++) mean += g[i], square += (double)g[i] * g[i], cross += (double)g[i] * h[i];
    mean /= n, square /= n, cross /= n;
    expect_near("normal mean", mean, 0.0, 0.02);
    expect_near("normal variance", square - mean * mean, 1.0, 0.03);
    expect_near("two streams' correlation", cross, 0.0, 0.02);
    free(b), free(g), free(h);
}

static void test_timestep_embedding_known_answers(void **state)
{
    (void)state;
    for (int which = 0; which < 2; which++) {
        vd_backend *be = both_backends[which];
        /* t = 0: cos 0 = 1 in the first half, sin 0 = 0 in the second */
        float t0 = 0.0f, y[8];
        be->timestep_embedding(be, y, &t0, 1, 8);
        for (int i = 0; i < 4; i++) expect_near(be->name, y[i], 1.0, 0.0);
        for (int i = 4; i < 8; i++) expect_near(be->name, y[i], 0.0, 0.0);

        /* t = 1, dim 4: f = [1, 10000^-1/2 = 0.01] */
        float t1 = 1.0f, z[4];
        be->timestep_embedding(be, z, &t1, 1, 4);
        expect_near(be->name, z[0], cos(1.0), 1e-7);
        expect_near(be->name, z[1], cos(0.01), 1e-7);
        expect_near(be->name, z[2], sin(1.0), 1e-7);
        expect_near(be->name, z[3], sin(0.01), 1e-7);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_matches_reference),
        cmocka_unit_test(test_temporal_conv_matches_reference),
        cmocka_unit_test(test_group_norm_matches_reference),
        cmocka_unit_test(test_layer_norm_matches_reference),
        cmocka_unit_test(test_activations_match_reference),
        cmocka_unit_test(test_linear_matches_reference),
        cmocka_unit_test(test_attention_matches_reference),
        cmocka_unit_test(test_upsample2x_matches_reference),
        cmocka_unit_test(test_elementwise_match_reference),
        cmocka_unit_test(test_broadcasts_match_reference),
        cmocka_unit_test(test_concat_and_transpose_match_reference),
        cmocka_unit_test(test_embeddings_match_reference),
        cmocka_unit_test(test_conv2d_known_answers),
        cmocka_unit_test(test_temporal_conv_known_answers),
        cmocka_unit_test(test_norms_known_answers),
        cmocka_unit_test(test_activations_known_answers),
        cmocka_unit_test(test_linear_known_answers),
        cmocka_unit_test(test_attention_known_answers),
        cmocka_unit_test(test_data_movement_known_answers),
        cmocka_unit_test(test_timestep_embedding_known_answers),
        cmocka_unit_test(test_random_normal_known_answers),
    };
    return cmocka_run_group_tests(tests, setup_backends, teardown_backends);
}
