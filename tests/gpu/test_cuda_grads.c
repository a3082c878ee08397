/* test_cuda_grads.c: every backward and training op of the CUDA backend against the CPU reference
 * backend, on fresh random inputs each run (the seed, from the clock, is printed;
 * VDMINI_TEST_SEED repeats a run). Gradients that an op writes start as NaN, so an element it
 * fails to write shows up as a failure; gradients it accumulates start from known random values,
 * and what is compared is the increment, so that writing instead of adding fails too. Some cases
 * pass NULL for gradients they do not want. Each shape runs in fp32 (relative error <= 1e-4, as
 * the forward tests: an accumulated gradient's increment is read back as a difference of two
 * floats, which costs a few bits) and in bf16 mode, where the matrix products (linear,
 * convolutions, attention) may be off by up to 2e-2 and every other op must still match to 1e-4.
 *
 * Exit status: 0 when everything passed, 1 on any failure, 77 (skip) without a usable GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../test_util.h"
#include "backend.h"
#include "common.h"

#define MAX_INPUTS 4
#define MAX_OUTPUTS 3
#define TOL_F32 1e-4
#define TOL_BF16 2e-2

typedef struct grad_case grad_case;
/* Runs the op with device inputs `in` and outputs `out` (NULL where not wanted); a training op
 * with a host result stores it in *scalar. */
typedef void (*grad_runner)(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                            double *scalar);

typedef enum {
    OUT_WRITTEN,     /* poisoned with NaN first */
    OUT_ACCUMULATED, /* starts from `start`; the increment is compared */
    OUT_UPDATED,     /* starts from `start` (in-place state such as AdamW's); the result is compared */
    OUT_NULL         /* a NULL pointer is passed */
} output_kind;

/* One op on one shape: host inputs, the gradients it produces, and how to call it. */
struct grad_case {
    const char *op;
    char shape[96];
    int is_matrix_product; /* loose tolerance in bf16 mode */
    int n_inputs;
    void *input[MAX_INPUTS]; /* host data */
    size_t input_bytes[MAX_INPUTS];
    int n_outputs;
    const char *out_name[MAX_OUTPUTS];
    output_kind out_kind[MAX_OUTPUTS];
    size_t out_count[MAX_OUTPUTS]; /* floats */
    float *out_start[MAX_OUTPUTS]; /* host start values for accumulated and updated outputs */
    int has_scalar;                /* the op returns a host value (loss, sum of squares) */
    int p[8];                      /* the op's integer arguments */
    float f[8];                    /* and its float ones */
    grad_runner run;
};

static uint64_t next_seed;
static int passed, failed;
static double worst_f32, worst_bf16;

static uint64_t fresh_seed(void)
{
    return next_seed += 0x9E3779B97F4A7C15ull;
}

static float *random_normal(size_t n, float mean, float std)
{
    float *x = vd_malloc((n ? n : 1) * sizeof *x);
    test_fill_normal(x, n, fresh_seed(), mean, std);
    return x;
}

static void add_input(grad_case *c, void *host, size_t bytes)
{
    c->input[c->n_inputs] = host;
    c->input_bytes[c->n_inputs] = bytes;
    c->n_inputs++;
}

static void add_floats(grad_case *c, float *host, size_t count)
{
    add_input(c, host, count * sizeof(float));
}

/* An output of `count` floats; accumulated and updated ones start from random values. */
static void add_output(grad_case *c, const char *name, output_kind kind, size_t count)
{
    int o = c->n_outputs++;
    c->out_name[o] = name;
    c->out_kind[o] = kind;
    c->out_count[o] = count;
    c->out_start[o] = kind == OUT_ACCUMULATED || kind == OUT_UPDATED ? random_normal(count, 0, 1) : NULL;
}

/* A written gradient, or NULL when `wanted` is 0. */
static void add_written(grad_case *c, const char *name, size_t count, int wanted)
{
    add_output(c, name, wanted ? OUT_WRITTEN : OUT_NULL, count);
}

/* An accumulated gradient, or NULL when `wanted` is 0. */
static void add_accumulated(grad_case *c, const char *name, size_t count, int wanted)
{
    add_output(c, name, wanted ? OUT_ACCUMULATED : OUT_NULL, count);
}

/* Runs c on be; returns the outputs in fresh host memory (accumulated ones minus their start). */
static void run_case(vd_backend *be, const grad_case *c, float **host_out, double *scalar)
{
    void *device_in[MAX_INPUTS] = {0};
    float *device_out[MAX_OUTPUTS] = {0};
    for (int i = 0; i < c->n_inputs; i++) {
        device_in[i] = be->alloc(be, c->input_bytes[i]);
        be->upload(be, device_in[i], c->input[i], c->input_bytes[i]);
    }
    for (int o = 0; o < c->n_outputs; o++) {
        size_t count = c->out_count[o];
        host_out[o] = vd_malloc((count ? count : 1) * sizeof(float));
        if (c->out_kind[o] == OUT_NULL) continue;
        if (c->out_start[o]) memcpy(host_out[o], c->out_start[o], count * sizeof(float));
        else test_poison(host_out[o], count);
        device_out[o] = be->alloc(be, count * sizeof(float));
        be->upload(be, device_out[o], host_out[o], count * sizeof(float));
    }
    *scalar = NAN;
    c->run(be, device_out, device_in, c, scalar);
    for (int o = 0; o < c->n_outputs; o++) {
        if (c->out_kind[o] == OUT_NULL) continue;
        be->download(be, host_out[o], device_out[o], c->out_count[o] * sizeof(float));
        be->release(be, device_out[o]);
        if (c->out_kind[o] == OUT_ACCUMULATED)
            for (size_t i = 0; i < c->out_count[o]; i++) host_out[o][i] -= c->out_start[o][i];
    }
    for (int i = 0; i < c->n_inputs; i++) be->release(be, device_in[i]);
}

static size_t count_non_finite(const float *x, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}

static void report(const char *op, const char *what, const char *shape, vd_precision precision,
                   double err, double tol, size_t unwritten)
{
    int ok = err <= tol;
    if (ok) passed++;
    else failed++;
    double *worst = precision == VD_PRECISION_BF16 ? &worst_bf16 : &worst_f32;
    if (err > *worst) *worst = err;
    char name[64];
    snprintf(name, sizeof name, "%s/%s", op, what);
    printf("%-28s %-44s %-5s %10.3e  %s", name, shape, precision == VD_PRECISION_BF16 ? "bf16" : "fp32",
           err, ok ? "ok" : "FAIL");
    if (unwritten) printf("  (%zu values NaN or not written)", unwritten);
    printf("\n");
    fflush(stdout);
}

/* Compares c on the GPU, in both precisions, with the reference; frees c's data. */
static void check_case(vd_backend *ref, vd_backend *gpu, grad_case *c)
{
    float *want[MAX_OUTPUTS], *got[MAX_OUTPUTS];
    double want_scalar, got_scalar;
    run_case(ref, c, want, &want_scalar);
    for (int mode = 0; mode < 2; mode++) {
        vd_precision precision = mode ? VD_PRECISION_BF16 : VD_PRECISION_F32;
        gpu->precision = precision;
        run_case(gpu, c, got, &got_scalar);
        double tol = (precision == VD_PRECISION_BF16 && c->is_matrix_product) ? TOL_BF16 : TOL_F32;
        for (int o = 0; o < c->n_outputs; o++) {
            if (c->out_kind[o] != OUT_NULL)
                report(c->op, c->out_name[o], c->shape, precision,
                       test_rel_error(got[o], want[o], c->out_count[o]), tol,
                       count_non_finite(got[o], c->out_count[o]));
            free(got[o]);
        }
        if (c->has_scalar) {
            double err = isfinite(got_scalar) ? fabs(got_scalar - want_scalar) : INFINITY;
            if (want_scalar != 0.0) err /= fabs(want_scalar);
            report(c->op, "host", c->shape, precision, err, tol, 0);
        }
    }
    gpu->precision = VD_PRECISION_F32;
    for (int o = 0; o < c->n_outputs; o++) {
        free(want[o]);
        free(c->out_start[o]);
    }
    for (int i = 0; i < c->n_inputs; i++) free(c->input[i]);
}

/* ---- runners: unpack a case into the op's arguments ---- */

static void run_conv2d(vd_backend *be, float *const *out, void *const *in, const grad_case *c, double *scalar)
{
    (void)scalar;
    be->conv2d_backward(be, out[0], out[1], out[2], in[0], in[1], in[2], c->p[0], c->p[1], c->p[2],
                        c->p[3], c->p[4], c->p[5], c->p[6]);
}

static void run_temporal_conv(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                              double *scalar)
{
    (void)scalar;
    be->temporal_conv_backward(be, out[0], out[1], out[2], in[0], in[1], in[2], c->p[0], c->p[1],
                               c->p[2], c->p[3], c->p[4]);
}

static void run_group_norm(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                           double *scalar)
{
    (void)scalar;
    be->group_norm_backward(be, out[0], out[1], out[2], in[0], in[1], in[2], c->p[0], c->p[1],
                            c->p[2], c->p[3], c->f[0]);
}

static void run_layer_norm(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                           double *scalar)
{
    (void)scalar;
    be->layer_norm_backward(be, out[0], out[1], out[2], in[0], in[1], in[2], c->p[0], c->p[1], c->f[0]);
}

static void run_silu(vd_backend *be, float *const *out, void *const *in, const grad_case *c, double *scalar)
{
    (void)scalar;
    be->silu_backward(be, out[0], in[0], in[1], c->out_count[0]);
}

static void run_gelu(vd_backend *be, float *const *out, void *const *in, const grad_case *c, double *scalar)
{
    (void)scalar;
    be->gelu_backward(be, out[0], in[0], in[1], c->out_count[0]);
}

static void run_linear(vd_backend *be, float *const *out, void *const *in, const grad_case *c, double *scalar)
{
    (void)scalar;
    be->linear_backward(be, out[0], out[1], out[2], in[0], in[1], in[2], c->p[0], c->p[1], c->p[2]);
}

static void run_attention(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                          double *scalar)
{
    (void)scalar;
    be->attention_backward(be, out[0], out[1], out[2], in[0], in[1], in[2], in[3], c->p[0], c->p[1],
                           c->p[2], c->p[3], c->p[4], c->p[5]);
}

static void run_upsample2x(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                           double *scalar)
{
    (void)scalar;
    be->upsample2x_backward(be, out[0], in[0], c->p[0], c->p[1], c->p[2], c->p[3]);
}

static void run_concat_channels(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                                double *scalar)
{
    (void)scalar;
    be->concat_channels_backward(be, out[0], out[1], in[0], c->p[0], c->p[1], c->p[2], c->p[3]);
}

static void run_add_broadcast(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                              double *scalar)
{
    (void)scalar;
    be->add_broadcast_backward(be, out[0], in[0], (size_t)c->p[0], (size_t)c->p[1]);
}

static void run_add_channel_bias(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                                 double *scalar)
{
    (void)scalar;
    be->add_channel_bias_backward(be, out[0], in[0], c->p[0], c->p[1], c->p[2], c->p[3]);
}

static void run_embedding(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                          double *scalar)
{
    (void)scalar;
    be->embedding_backward(be, out[0], in[0], in[1], c->p[0], c->p[1]);
}

static void run_mse_loss(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                         double *scalar)
{
    float loss = NAN;
    be->mse_loss(be, &loss, out[0], in[0], in[1], c->p[0] ? in[2] : NULL, c->out_count[0], c->f[0]);
    *scalar = loss;
}

static void run_sum_squares(vd_backend *be, float *const *out, void *const *in, const grad_case *c,
                            double *scalar)
{
    (void)out;
    be->sum_squares(be, scalar, in[0], (size_t)c->p[0]);
}

static void run_adamw(vd_backend *be, float *const *out, void *const *in, const grad_case *c, double *scalar)
{
    (void)scalar;
    be->adamw(be, out[0], in[0], out[1], out[2], c->out_count[0], c->f[0], c->f[1], c->f[2], c->f[3],
              c->f[4], c->p[0], c->f[5]);
}

/* ---- the cases ---- */

static void test_conv2d(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][8] = {
        /* B, ci, H, W, co, k, stride, wanted (bits: dx, dw, db) */
        {2, 3, 17, 13, 5, 3, 1, 7}, {3, 8, 16, 16, 16, 3, 2, 7}, {2, 16, 9, 7, 8, 1, 1, 7},
        {2, 4, 9, 9, 6, 1, 2, 7},   {2, 9, 15, 11, 7, 3, 2, 7},  {1, 32, 16, 16, 64, 3, 1, 7},
        {2, 5, 8, 6, 4, 3, 1, 6},   {2, 5, 8, 6, 4, 3, 2, 1},
        /* columns over 256 MiB: the images go in two chunks */
        {120, 64, 32, 32, 2, 3, 1, 7},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        const int *s = shapes[i];
        int B = s[0], ci = s[1], H = s[2], W = s[3], co = s[4], k = s[5], stride = s[6], wanted = s[7];
        int Ho = (H + 2 * (k / 2) - k) / stride + 1, Wo = (W + 2 * (k / 2) - k) / stride + 1;
        size_t x_count = (size_t)B * ci * H * W, y_count = (size_t)B * co * Ho * Wo, w_count = (size_t)co * ci * k * k;
        grad_case c = {.op = "conv2d_backward", .is_matrix_product = 1, .run = run_conv2d};
        snprintf(c.shape, sizeof c.shape, "B%d ci%d %dx%d co%d k%d s%d%s", B, ci, H, W, co, k, stride,
                 wanted == 7 ? "" : " some NULL");
        add_floats(&c, random_normal(y_count, 0, 1), y_count);
        add_floats(&c, random_normal(x_count, 0, 1), x_count);
        add_floats(&c, random_normal(w_count, 0, 1.0f / sqrtf((float)ci * k * k)), w_count);
        add_written(&c, "dx", x_count, wanted & 4);
        add_accumulated(&c, "dw", w_count, wanted & 2);
        add_accumulated(&c, "db", (size_t)co, wanted & 1);
        memcpy(c.p, s, 7 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_temporal_conv(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][6] = {
        /* N, T, ci, co, S, wanted (bits: dx, dw, db) */
        {2, 5, 6, 7, 13, 7}, {1, 1, 8, 8, 16, 7}, {3, 16, 32, 32, 64, 7}, {2, 2, 5, 3, 1, 7}, {2, 3, 4, 5, 9, 4},
        {24, 16, 64, 2, 1024, 7}, /* columns over 256 MiB: two chunks of whole videos */
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        const int *s = shapes[i];
        int N = s[0], T = s[1], ci = s[2], co = s[3], S = s[4], wanted = s[5];
        size_t x_count = (size_t)N * T * ci * S, y_count = (size_t)N * T * co * S, w_count = (size_t)co * ci * 3;
        grad_case c = {.op = "temporal_conv_backward", .is_matrix_product = 1, .run = run_temporal_conv};
        snprintf(c.shape, sizeof c.shape, "N%d T%d ci%d co%d S%d%s", N, T, ci, co, S, wanted == 7 ? "" : " some NULL");
        add_floats(&c, random_normal(y_count, 0, 1), y_count);
        add_floats(&c, random_normal(x_count, 0, 1), x_count);
        add_floats(&c, random_normal(w_count, 0, 1.0f / sqrtf(3.0f * ci)), w_count);
        add_written(&c, "dx", x_count, wanted & 4);
        add_accumulated(&c, "dw", w_count, wanted & 2);
        add_accumulated(&c, "db", (size_t)co, wanted & 1);
        memcpy(c.p, s, 5 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_norms(vd_backend *ref, vd_backend *gpu)
{
    static const int gn_shapes[][5] = {
        /* B, C, S, G, wanted (bits: dx, dgamma, dbeta) */
        {2, 8, 49, 4, 7}, {3, 32, 256, 32, 7}, {2, 64, 1000, 16, 7}, {1, 6, 1, 3, 7}, {2, 8, 10, 2, 3},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(gn_shapes); i++) {
        const int *s = gn_shapes[i];
        int C = s[1], wanted = s[4];
        size_t n = (size_t)s[0] * s[1] * s[2];
        grad_case c = {.op = "group_norm_backward", .run = run_group_norm};
        snprintf(c.shape, sizeof c.shape, "B%d C%d S%d G%d%s", s[0], C, s[2], s[3], wanted == 7 ? "" : " no dx");
        add_floats(&c, random_normal(n, 0, 1), n);
        add_floats(&c, random_normal(n, 3.0f, 2.0f), n); /* off-centre: tests the variance sum */
        add_floats(&c, random_normal(C, 1, 0.5f), C);
        add_written(&c, "dx", n, wanted & 4);
        add_accumulated(&c, "dgamma", C, wanted & 2);
        add_accumulated(&c, "dbeta", C, wanted & 1);
        memcpy(c.p, s, 4 * sizeof(int));
        c.f[0] = 1e-5f;
        check_case(ref, gpu, &c);
    }
    static const int ln_shapes[][3] = {{7, 33, 7}, {1000, 320, 7}, {5, 1280, 7}, {3, 1, 7}, {600, 40, 4}};
    for (size_t i = 0; i < VD_ARRAY_LEN(ln_shapes); i++) {
        const int *s = ln_shapes[i];
        int M = s[0], C = s[1], wanted = s[2];
        size_t n = (size_t)M * C;
        grad_case c = {.op = "layer_norm_backward", .run = run_layer_norm};
        snprintf(c.shape, sizeof c.shape, "M%d C%d%s", M, C, wanted == 7 ? "" : " dx only");
        add_floats(&c, random_normal(n, 0, 1), n);
        add_floats(&c, random_normal(n, -2.0f, 3.0f), n);
        add_floats(&c, random_normal(C, 1, 0.5f), C);
        add_written(&c, "dx", n, wanted & 4);
        add_accumulated(&c, "dgamma", C, wanted & 2);
        add_accumulated(&c, "dbeta", C, wanted & 1);
        c.p[0] = M;
        c.p[1] = C;
        c.f[0] = 1e-5f;
        check_case(ref, gpu, &c);
    }
}

static void test_elementwise(vd_backend *ref, vd_backend *gpu)
{
    static const size_t sizes[] = {1, 1000, 100003};
    for (size_t i = 0; i < VD_ARRAY_LEN(sizes); i++)
        for (int which = 0; which < 2; which++) {
            size_t n = sizes[i];
            grad_case c = {.op = which ? "gelu_backward" : "silu_backward", .run = which ? run_gelu : run_silu};
            snprintf(c.shape, sizeof c.shape, "n%zu", n);
            add_floats(&c, random_normal(n, 0, 1), n);
            add_floats(&c, random_normal(n, 0, 4), n);
            add_written(&c, "dx", n, 1);
            check_case(ref, gpu, &c);
        }
}

static void test_linear(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][4] = {
        /* M, in, out, wanted (bits: dx, dw, db) */
        {7, 13, 5, 7}, {300, 128, 512, 7}, {1, 1, 1, 7}, {257, 320, 96, 7}, {33, 17, 9, 6}, {20, 8, 12, 3},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        const int *s = shapes[i];
        int M = s[0], in = s[1], out = s[2], wanted = s[3];
        grad_case c = {.op = "linear_backward", .is_matrix_product = 1, .run = run_linear};
        snprintf(c.shape, sizeof c.shape, "M%d in%d out%d%s", M, in, out, wanted == 7 ? "" : " some NULL");
        add_floats(&c, random_normal((size_t)M * out, 0, 1), (size_t)M * out);
        add_floats(&c, random_normal((size_t)M * in, 0, 1), (size_t)M * in);
        add_floats(&c, random_normal((size_t)out * in, 0, 1.0f / sqrtf((float)in)), (size_t)out * in);
        add_written(&c, "dx", (size_t)M * in, wanted & 4);
        add_accumulated(&c, "dw", (size_t)out * in, wanted & 2);
        add_accumulated(&c, "db", (size_t)out, wanted & 1);
        memcpy(c.p, s, 3 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_attention(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][7] = {
        /* B, Lq, Lk, heads, d, kv_group, wanted (bits: dq, dk, dv) */
        {2, 7, 9, 2, 16, 1, 7},    {4, 33, 77, 3, 64, 2, 7},  {6, 16, 16, 4, 32, 1, 7},
        {4, 100, 16, 5, 64, 4, 7}, {1, 130, 200, 2, 128, 1, 7}, {2, 20, 30, 2, 160, 2, 7},
        {3, 5, 1, 2, 8, 3, 7},     {2, 70, 129, 1, 64, 1, 7},  {4, 9, 11, 2, 24, 2, 4},
        {3, 12, 10, 3, 16, 3, 3},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        const int *s = shapes[i];
        int B = s[0], Lq = s[1], Lk = s[2], heads = s[3], d = s[4], kv_group = s[5], wanted = s[6];
        size_t q_count = (size_t)B * Lq * heads * d, kv_count = (size_t)(B / kv_group) * Lk * heads * d;
        grad_case c = {.op = "attention_backward", .is_matrix_product = 1, .run = run_attention};
        snprintf(c.shape, sizeof c.shape, "B%d Lq%d Lk%d heads%d d%d kv_group%d%s", B, Lq, Lk, heads, d,
                 kv_group, wanted == 7 ? "" : " some NULL");
        add_floats(&c, random_normal(q_count, 0, 1), q_count);
        add_floats(&c, random_normal(q_count, 0, 1), q_count);
        add_floats(&c, random_normal(kv_count, 0, 1), kv_count);
        add_floats(&c, random_normal(kv_count, 0, 1), kv_count);
        add_written(&c, "dq", q_count, wanted & 4);
        add_written(&c, "dk", kv_count, wanted & 2);
        add_written(&c, "dv", kv_count, wanted & 1);
        memcpy(c.p, s, 6 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_layout(vd_backend *ref, vd_backend *gpu)
{
    static const int up_shapes[][4] = {{2, 3, 5, 7}, {1, 16, 32, 32}, {1, 1, 1, 1}};
    for (size_t i = 0; i < VD_ARRAY_LEN(up_shapes); i++) {
        const int *s = up_shapes[i];
        size_t n = (size_t)s[0] * s[1] * s[2] * s[3];
        grad_case c = {.op = "upsample2x_backward", .run = run_upsample2x};
        snprintf(c.shape, sizeof c.shape, "B%d C%d %dx%d", s[0], s[1], s[2], s[3]);
        add_floats(&c, random_normal(4 * n, 0, 1), 4 * n);
        add_written(&c, "dx", n, 1);
        memcpy(c.p, s, 4 * sizeof(int));
        check_case(ref, gpu, &c);
    }
    static const int cat_shapes[][5] = {
        /* B, ca, cb, S, wanted (bits: da, db) */
        {2, 3, 5, 17, 3}, {3, 64, 64, 100, 3}, {1, 1, 1, 1, 3}, {2, 4, 3, 5, 1}, {2, 4, 3, 5, 2},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(cat_shapes); i++) {
        const int *s = cat_shapes[i];
        int B = s[0], ca = s[1], cb = s[2], S = s[3], wanted = s[4];
        size_t n = (size_t)B * (ca + cb) * S;
        grad_case c = {.op = "concat_channels_backward", .run = run_concat_channels};
        snprintf(c.shape, sizeof c.shape, "B%d ca%d cb%d S%d%s", B, ca, cb, S, wanted == 3 ? "" : " one NULL");
        add_floats(&c, random_normal(n, 0, 1), n);
        add_written(&c, "da", (size_t)B * ca * S, wanted & 2);
        add_written(&c, "db", (size_t)B * cb * S, wanted & 1);
        c.p[0] = ca;
        c.p[1] = cb;
        c.p[2] = B;
        c.p[3] = S;
        check_case(ref, gpu, &c);
    }
    static const int bc_shapes[][2] = {{7, 13}, {100, 320}, {1, 1}, {3000, 5}};
    for (size_t i = 0; i < VD_ARRAY_LEN(bc_shapes); i++) {
        const int *s = bc_shapes[i];
        size_t n = (size_t)s[0] * s[1];
        grad_case c = {.op = "add_broadcast_backward", .run = run_add_broadcast};
        snprintf(c.shape, sizeof c.shape, "outer%d inner%d", s[0], s[1]);
        add_floats(&c, random_normal(n, 0, 1), n);
        add_accumulated(&c, "dx", (size_t)s[1], 1);
        c.p[0] = s[0];
        c.p[1] = s[1];
        check_case(ref, gpu, &c);
    }
    static const int cb_shapes[][4] = {{2, 3, 5, 7}, {4, 16, 32, 64}, {1, 1, 3, 1}};
    for (size_t i = 0; i < VD_ARRAY_LEN(cb_shapes); i++) {
        const int *s = cb_shapes[i];
        size_t n = (size_t)s[0] * s[1] * s[2] * s[3];
        grad_case c = {.op = "add_channel_bias_backward", .run = run_add_channel_bias};
        snprintf(c.shape, sizeof c.shape, "N%d T%d C%d S%d", s[0], s[1], s[2], s[3]);
        add_floats(&c, random_normal(n, 0, 1), n);
        add_accumulated(&c, "dbias", (size_t)s[0] * s[2], 1);
        memcpy(c.p, s, 4 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_embedding(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][3] = {{9, 17, 50}, {32, 128, 1000}, {300, 8, 3}};
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        int n = shapes[i][0], dim = shapes[i][1], rows = shapes[i][2];
        grad_case c = {.op = "embedding_backward", .run = run_embedding};
        snprintf(c.shape, sizeof c.shape, "n%d dim%d rows%d", n, dim, rows);
        add_floats(&c, random_normal((size_t)n * dim, 0, 1), (size_t)n * dim);
        int32_t *ids = vd_malloc((size_t)n * sizeof *ids);
        uint64_t state = fresh_seed();
        for (int m = 0; m < n; m++) ids[m] = (int32_t)(test_rng_next(&state) % (uint64_t)rows);
        ids[n - 1] = rows - 1;
        add_input(&c, ids, (size_t)n * sizeof *ids);
        add_accumulated(&c, "dtable", (size_t)rows * dim, 1);
        c.p[0] = n;
        c.p[1] = dim;
        check_case(ref, gpu, &c);
    }
}

static void test_training(vd_backend *ref, vd_backend *gpu)
{
    static const size_t sizes[] = {1, 1000, 100003};
    for (size_t i = 0; i < VD_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        for (int with_grad = 0; with_grad < 2; with_grad++)
            for (int weighted = 0; weighted < 2; weighted++) {
                grad_case c = {.op = "mse_loss", .run = run_mse_loss, .has_scalar = 1};
                snprintf(c.shape, sizeof c.shape, "n%zu scale%s%s", n, with_grad ? "0.5" : "1, no dpred",
                         weighted ? ", weighted" : "");
                add_floats(&c, random_normal(n, 0, 1), n);
                add_floats(&c, random_normal(n, 0.5f, 1), n);
                if (weighted) add_floats(&c, random_normal(n, 3, 1), n);
                add_written(&c, "dpred", n, with_grad);
                c.f[0] = with_grad ? 0.5f : 1.0f;
                c.p[0] = weighted;
                check_case(ref, gpu, &c);
            }
        grad_case c = {.op = "sum_squares", .run = run_sum_squares, .has_scalar = 1};
        snprintf(c.shape, sizeof c.shape, "n%zu", 10 * n);
        add_floats(&c, random_normal(10 * n, 0, 3), 10 * n);
        c.p[0] = (int)(10 * n);
        check_case(ref, gpu, &c);
        for (int step = 1; step <= 10; step += 9) {
            grad_case a = {.op = "adamw", .run = run_adamw};
            snprintf(a.shape, sizeof a.shape, "n%zu step%d", n, step);
            add_floats(&a, random_normal(n, 0, 1), n);
            add_output(&a, "param", OUT_UPDATED, n);
            add_output(&a, "m", OUT_UPDATED, n);
            add_output(&a, "v", OUT_UPDATED, n);
            for (size_t e = 0; e < n; e++) a.out_start[2][e] = step == 1 ? 0.0f : fabsf(a.out_start[2][e]);
            if (step == 1) memset(a.out_start[1], 0, n * sizeof(float));
            const float f[6] = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f}; /* lr, betas, eps, decay, scale */
            memcpy(a.f, f, sizeof f);
            a.p[0] = step;
            check_case(ref, gpu, &a);
        }
    }
}

int main(void)
{
    char err[256] = "";
    vd_backend *gpu = vd_backend_cuda(0, err, sizeof err);
    if (!gpu) {
        printf("skip: %s\n", err);
        return 77;
    }
    vd_backend *ref = vd_backend_cpu_reference();

    uint64_t seed = test_seed();
    next_seed = seed;
    printf("seed %llu (set VDMINI_TEST_SEED to repeat)\n", (unsigned long long)seed);
    printf("%-28s %-44s %-5s %10s  %s\n", "op/output", "shape", "prec", "rel err", "result");

    test_conv2d(ref, gpu);
    test_temporal_conv(ref, gpu);
    test_norms(ref, gpu);
    test_elementwise(ref, gpu);
    test_linear(ref, gpu);
    test_attention(ref, gpu);
    test_layout(ref, gpu);
    test_embedding(ref, gpu);
    test_training(ref, gpu);

    printf("worst relative error: fp32 %.3e, bf16 %.3e\n", worst_f32, worst_bf16);
    printf("%d passed, %d failed\n", passed, failed);
    gpu->destroy(gpu);
    ref->destroy(ref);
    return failed ? 1 : 0;
}
