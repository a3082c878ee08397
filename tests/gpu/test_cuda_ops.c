/* test_cuda_ops.c: every op of the CUDA backend against the CPU reference backend, on fresh random
 * inputs each run (the seed, from the clock, is printed; VDMINI_TEST_SEED repeats a run). The CUDA
 * output is poisoned with NaN before each op, so an element the op fails to write shows up as a
 * failure. Each shape runs in fp32 (relative error <= 1e-4) and in bf16 mode, where the matrix
 * products (linear, convolutions, attention) may be off by up to 2e-2 and every other op must
 * still match to 1e-4. With VDMINI_TEST_TIMING set, a few large ops are timed afterwards.
 *
 * Exit status: 0 when everything passed, 1 on any failure, 77 (skip) without a usable GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../test_util.h"
#include "backend.h"
#include "common.h"

#define MAX_INPUTS 6
#define TOL_F32 1e-4
#define TOL_BF16 2e-2

typedef struct op_case op_case;
typedef void (*op_runner)(vd_backend *be, float *out, void *const *in, const op_case *c);

/* One op on one shape: host inputs, the output's size, and how to call the op. */
struct op_case {
    const char *op;
    char shape[96];
    int is_matrix_product;           /* loose tolerance in bf16 mode */
    int n_inputs;
    void *input[MAX_INPUTS];         /* host data; NULL passes a NULL pointer (optional bias) */
    size_t input_bytes[MAX_INPUTS];
    size_t out_count;                /* floats */
    int out_is_input0;               /* in place: input 0 is also the output */
    int p[8];                        /* the op's integer arguments */
    float f[2];                      /* and its float ones */
    op_runner run;
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

static float *random_uniform(size_t n, float lo, float hi)
{
    float *x = vd_malloc((n ? n : 1) * sizeof *x);
    test_fill_uniform(x, n, fresh_seed(), lo, hi);
    return x;
}

static void add_input(op_case *c, void *host, size_t bytes)
{
    c->input[c->n_inputs] = host;
    c->input_bytes[c->n_inputs] = bytes;
    c->n_inputs++;
}

static void add_floats(op_case *c, float *host, size_t count)
{
    add_input(c, host, count * sizeof(float));
}

/* Runs c on be and returns the output, downloaded into fresh host memory. */
static float *run_case(vd_backend *be, const op_case *c)
{
    void *device_in[MAX_INPUTS] = {0};
    for (int i = 0; i < c->n_inputs; i++) {
        if (!c->input[i]) continue;
        device_in[i] = be->alloc(be, c->input_bytes[i]);
        be->upload(be, device_in[i], c->input[i], c->input_bytes[i]);
    }
    size_t out_bytes = c->out_count * sizeof(float);
    float *host_out = vd_malloc(out_bytes ? out_bytes : 1);
    float *out;
    if (c->out_is_input0) {
        out = device_in[0];
    } else {
        test_poison(host_out, c->out_count);
        out = be->alloc(be, out_bytes);
        be->upload(be, out, host_out, out_bytes);
    }
    c->run(be, out, device_in, c);
    be->download(be, host_out, out, out_bytes);
    if (!c->out_is_input0) be->release(be, out);
    for (int i = 0; i < c->n_inputs; i++) be->release(be, device_in[i]);
    return host_out;
}

static size_t count_non_finite(const float *x, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}

static void report(const char *op, const char *shape, vd_precision precision, double err,
                   double tol, size_t unwritten)
{
    int ok = err <= tol;
    if (ok) passed++;
    else failed++;
    double *worst = precision == VD_PRECISION_BF16 ? &worst_bf16 : &worst_f32;
    if (err > *worst) *worst = err;
    printf("%-18s %-44s %-5s %10.3e  %s", op, shape, precision == VD_PRECISION_BF16 ? "bf16" : "fp32",
           err, ok ? "ok" : "FAIL");
    if (unwritten) printf("  (%zu values NaN or not written)", unwritten);
    printf("\n");
    fflush(stdout);
}

/* Compares c on the GPU, in both precisions, with the reference; frees c's inputs. */
static void check_case(vd_backend *ref, vd_backend *gpu, op_case *c)
{
    float *want = run_case(ref, c);
    for (int mode = 0; mode < 2; mode++) {
        vd_precision precision = mode ? VD_PRECISION_BF16 : VD_PRECISION_F32;
        gpu->precision = precision;
        float *got = run_case(gpu, c);
        double tol = (precision == VD_PRECISION_BF16 && c->is_matrix_product) ? TOL_BF16 : TOL_F32;
        report(c->op, c->shape, precision, test_rel_error(got, want, c->out_count), tol,
               count_non_finite(got, c->out_count));
        free(got);
    }
    gpu->precision = VD_PRECISION_F32;
    free(want);
    for (int i = 0; i < c->n_inputs; i++) free(c->input[i]);
}

/* ---- runners: unpack a case into the op's arguments ---- */

static void run_conv2d(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->conv2d(be, out, in[0], in[1], in[2], c->p[0], c->p[1], c->p[2], c->p[3], c->p[4], c->p[5], c->p[6]);
}

static void run_temporal_conv(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->temporal_conv(be, out, in[0], in[1], in[2], c->p[0], c->p[1], c->p[2], c->p[3], c->p[4]);
}

static void run_group_norm(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->group_norm(be, out, in[0], in[1], in[2], c->p[0], c->p[1], c->p[2], c->p[3], c->f[0]);
}

static void run_layer_norm(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->layer_norm(be, out, in[0], in[1], in[2], c->p[0], c->p[1], c->f[0]);
}

static void run_silu(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->silu(be, out, in[0], c->out_count);
}

static void run_gelu(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->gelu(be, out, in[0], c->out_count);
}

static void run_linear(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->linear(be, out, in[0], in[1], in[2], c->p[0], c->p[1], c->p[2]);
}

static void run_attention(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->attention(be, out, in[0], in[1], in[2], c->p[0], c->p[1], c->p[2], c->p[3], c->p[4], c->p[5]);
}

static void run_upsample2x(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->upsample2x(be, out, in[0], c->p[0], c->p[1], c->p[2], c->p[3]);
}

static void run_add(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->add(be, out, in[0], in[1], c->out_count);
}

static void run_axpby(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    /* in[0] is y's starting value when the case has one (then out == in[0]). */
    be->axpby(be, out, c->f[0], in[1], c->f[1], c->out_count);
}

static void run_add_broadcast(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->add_broadcast(be, out, in[1], (size_t)c->p[0], (size_t)c->p[1]);
}

static void run_add_channel_bias(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->add_channel_bias(be, out, in[1], c->p[0], c->p[1], c->p[2], c->p[3]);
}

static void run_concat_channels(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->concat_channels(be, out, in[0], c->p[0], in[1], c->p[1], c->p[2], c->p[3]);
}

static void run_transpose(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->transpose(be, out, in[0], c->p[0], c->p[1], c->p[2], c->p[3]);
}

static void run_timestep_embedding(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->timestep_embedding(be, out, in[0], c->p[0], c->p[1]);
}

static void run_embedding(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    be->embedding(be, out, in[0], in[1], c->p[0], c->p[1]);
}

/* ---- the cases ---- */

static void test_conv2d(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][8] = {
        /* B, ci, H, W, co, k, stride, has_bias */
        {2, 3, 17, 13, 5, 3, 1, 1}, {3, 8, 16, 16, 16, 3, 2, 1}, {2, 16, 9, 7, 8, 1, 1, 1},
        {2, 4, 9, 9, 6, 1, 2, 1},   {1, 32, 32, 32, 64, 3, 1, 0}, {4, 64, 20, 32, 64, 3, 1, 1},
        {2, 9, 15, 11, 7, 3, 2, 0},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        const int *s = shapes[i];
        int B = s[0], ci = s[1], H = s[2], W = s[3], co = s[4], k = s[5], stride = s[6];
        int Ho = (H + 2 * (k / 2) - k) / stride + 1, Wo = (W + 2 * (k / 2) - k) / stride + 1;
        op_case c = {.op = "conv2d", .is_matrix_product = 1, .run = run_conv2d};
        snprintf(c.shape, sizeof c.shape, "B%d ci%d %dx%d co%d k%d s%d%s", B, ci, H, W, co, k,
                 stride, s[7] ? "" : " nobias");
        add_floats(&c, random_normal((size_t)B * ci * H * W, 0, 1), (size_t)B * ci * H * W);
        add_floats(&c, random_normal((size_t)co * ci * k * k, 0, 1.0f / sqrtf((float)ci * k * k)),
                   (size_t)co * ci * k * k);
        add_floats(&c, s[7] ? random_normal(co, 0, 1) : NULL, (size_t)co);
        c.out_count = (size_t)B * co * Ho * Wo;
        memcpy(c.p, s, 7 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_temporal_conv(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][6] = {
        /* N, T, ci, co, S, has_bias */
        {2, 5, 6, 7, 13, 1}, {1, 1, 8, 8, 16, 1}, {3, 16, 32, 32, 64, 0}, {2, 2, 5, 3, 1, 1},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        const int *s = shapes[i];
        int N = s[0], T = s[1], ci = s[2], co = s[3], S = s[4];
        op_case c = {.op = "temporal_conv", .is_matrix_product = 1, .run = run_temporal_conv};
        snprintf(c.shape, sizeof c.shape, "N%d T%d ci%d co%d S%d%s", N, T, ci, co, S, s[5] ? "" : " nobias");
        add_floats(&c, random_normal((size_t)N * T * ci * S, 0, 1), (size_t)N * T * ci * S);
        add_floats(&c, random_normal((size_t)co * ci * 3, 0, 1.0f / sqrtf(3.0f * ci)), (size_t)co * ci * 3);
        add_floats(&c, s[5] ? random_normal(co, 0, 1) : NULL, (size_t)co);
        c.out_count = (size_t)N * T * co * S;
        memcpy(c.p, s, 5 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_norms(vd_backend *ref, vd_backend *gpu)
{
    static const int gn_shapes[][5] = {
        /* B, C, S, G, in_place */
        {2, 8, 49, 4, 0}, {3, 32, 256, 32, 0}, {2, 64, 1000, 16, 1}, {1, 6, 1, 3, 0},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(gn_shapes); i++) {
        const int *s = gn_shapes[i];
        size_t n = (size_t)s[0] * s[1] * s[2];
        op_case c = {.op = "group_norm", .run = run_group_norm, .out_count = n, .out_is_input0 = s[4]};
        snprintf(c.shape, sizeof c.shape, "B%d C%d S%d G%d%s", s[0], s[1], s[2], s[3], s[4] ? " in-place" : "");
        add_floats(&c, random_normal(n, 3.0f, 2.0f), n); /* off-centre: tests the variance sum */
        add_floats(&c, random_normal(s[1], 1, 0.5f), s[1]);
        add_floats(&c, random_normal(s[1], 0, 0.5f), s[1]);
        memcpy(c.p, s, 4 * sizeof(int));
        c.f[0] = 1e-5f;
        check_case(ref, gpu, &c);
    }
    static const int ln_shapes[][3] = {{7, 33, 0}, {1000, 320, 1}, {5, 1280, 0}, {3, 1, 0}};
    for (size_t i = 0; i < VD_ARRAY_LEN(ln_shapes); i++) {
        const int *s = ln_shapes[i];
        size_t n = (size_t)s[0] * s[1];
        op_case c = {.op = "layer_norm", .run = run_layer_norm, .out_count = n, .out_is_input0 = s[2]};
        snprintf(c.shape, sizeof c.shape, "M%d C%d%s", s[0], s[1], s[2] ? " in-place" : "");
        add_floats(&c, random_normal(n, -2.0f, 3.0f), n);
        add_floats(&c, random_normal(s[1], 1, 0.5f), s[1]);
        add_floats(&c, random_normal(s[1], 0, 0.5f), s[1]);
        c.p[0] = s[0];
        c.p[1] = s[1];
        c.f[0] = 1e-5f;
        check_case(ref, gpu, &c);
    }
}

static void test_elementwise(vd_backend *ref, vd_backend *gpu)
{
    static const size_t sizes[] = {1, 1000, 100003};
    for (size_t i = 0; i < VD_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        for (int in_place = 0; in_place < 2; in_place++) {
            for (int which = 0; which < 2; which++) {
                op_case c = {.op = which ? "gelu" : "silu", .run = which ? run_gelu : run_silu,
                             .out_count = n, .out_is_input0 = in_place};
                snprintf(c.shape, sizeof c.shape, "n%zu%s", n, in_place ? " in-place" : "");
                add_floats(&c, random_normal(n, 0, 4), n);
                check_case(ref, gpu, &c);
            }
            op_case c = {.op = "add", .run = run_add, .out_count = n, .out_is_input0 = in_place};
            snprintf(c.shape, sizeof c.shape, "n%zu%s", n, in_place ? " y=a" : "");
            add_floats(&c, random_normal(n, 0, 1), n);
            add_floats(&c, random_normal(n, 0, 1), n);
            check_case(ref, gpu, &c);
        }
        /* axpby always updates y in place; beta = 0 must not read y (poisoned here). */
        for (int beta_zero = 0; beta_zero < 2; beta_zero++) {
            op_case c = {.op = "axpby", .run = run_axpby, .out_count = n, .out_is_input0 = !beta_zero};
            snprintf(c.shape, sizeof c.shape, "n%zu a0.75 b%s", n, beta_zero ? "0 (y poisoned)" : "-1.5");
            add_floats(&c, beta_zero ? NULL : random_normal(n, 0, 1), n);
            add_floats(&c, random_normal(n, 0, 1), n);
            c.f[0] = 0.75f;
            c.f[1] = beta_zero ? 0.0f : -1.5f;
            check_case(ref, gpu, &c);
        }
    }
}

static void run_add_random_normal(vd_backend *be, float *out, void *const *in, const op_case *c)
{
    (void)in;
    be->add_random_normal(be, out, c->f[0], ((uint64_t)(uint32_t)c->p[0] << 32) | (uint32_t)c->p[1], c->out_count);
}

/* The device draws the host generator's normals (random.h): the same floats, but for the rare
 * value whose last bit the device's double log, sine or cosine rounds the other way. At most one
 * value in 10,000 may differ, and by one unit in the last place; then y += scale * normal on top. */
static void test_random_normal(vd_backend *ref, vd_backend *gpu)
{
    size_t n = 1000001;
    uint64_t seed = fresh_seed();
    float *want = vd_calloc(n, sizeof *want), *got = vd_malloc(n * sizeof *got);
    ref->add_random_normal(ref, want, 1.0f, seed, n);
    float *device = gpu->alloc(gpu, n * sizeof *device);
    gpu->zero(gpu, device, n * sizeof *device);
    gpu->add_random_normal(gpu, device, 1.0f, seed, n);
    gpu->download(gpu, got, device, n * sizeof *got);
    gpu->release(gpu, device);
    size_t differ = 0;
    int64_t worst_ulps = 0;
    for (size_t i = 0; i < n; i++) {
        if (got[i] == want[i]) continue;
        differ++;
        int32_t a, b;
        memcpy(&a, &got[i], sizeof a), memcpy(&b, &want[i], sizeof b);
        int64_t ulps = (a < 0) != (b < 0) || !isfinite(got[i]) ? INT32_MAX : llabs((int64_t)a - b);
        if (ulps > worst_ulps) worst_ulps = ulps;
    }
    int ok = differ <= n / 10000 && worst_ulps <= 1;
    ok ? passed++ : failed++;
    printf("%-18s %-44s %-5s %zu of %zu values differ, by at most %lld ulp  %s\n", "random_normal", "n1000001",
           "fp32", differ, n, (long long)worst_ulps, ok ? "ok" : "FAIL");
    free(want), free(got);

    static const size_t sizes[] = {1, 1000, 100003};
    for (size_t i = 0; i < VD_ARRAY_LEN(sizes); i++) {
        op_case c = {.op = "add_random_normal", .run = run_add_random_normal, .out_count = sizes[i], .out_is_input0 = 1};
        snprintf(c.shape, sizeof c.shape, "n%zu scale 0.5", sizes[i]);
        add_floats(&c, random_normal(sizes[i], 0, 1), sizes[i]);
        uint64_t stream = fresh_seed();
        c.p[0] = (int)(uint32_t)(stream >> 32), c.p[1] = (int)(uint32_t)stream;
        c.f[0] = 0.5f;
        check_case(ref, gpu, &c);
    }
}

static void test_linear(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][4] = {{7, 13, 5, 1}, {300, 128, 512, 0}, {1024, 320, 1280, 1}, {1, 1, 1, 1}};
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        const int *s = shapes[i];
        int M = s[0], in = s[1], out = s[2];
        op_case c = {.op = "linear", .is_matrix_product = 1, .run = run_linear, .out_count = (size_t)M * out};
        snprintf(c.shape, sizeof c.shape, "M%d in%d out%d%s", M, in, out, s[3] ? "" : " nobias");
        add_floats(&c, random_normal((size_t)M * in, 0, 1), (size_t)M * in);
        add_floats(&c, random_normal((size_t)out * in, 0, 1.0f / sqrtf((float)in)), (size_t)out * in);
        add_floats(&c, s[3] ? random_normal(out, 0, 1) : NULL, (size_t)out);
        memcpy(c.p, s, 3 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_attention(vd_backend *ref, vd_backend *gpu)
{
    static const int shapes[][6] = {
        /* B, Lq, Lk, heads, d, kv_group */
        {2, 7, 9, 2, 16, 1},     {4, 33, 77, 3, 64, 2},   {6, 16, 16, 4, 32, 1},
        {4, 100, 16, 5, 64, 4},  {1, 130, 200, 2, 128, 1}, {2, 40, 50, 2, 40, 1},
        {2, 20, 30, 2, 160, 2},  {3, 5, 1, 2, 8, 3},      {2, 70, 129, 1, 64, 1},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(shapes); i++) {
        const int *s = shapes[i];
        int B = s[0], Lq = s[1], Lk = s[2], heads = s[3], d = s[4], kv_group = s[5];
        size_t q_count = (size_t)B * Lq * heads * d, kv_count = (size_t)(B / kv_group) * Lk * heads * d;
        op_case c = {.op = "attention", .is_matrix_product = 1, .run = run_attention, .out_count = q_count};
        snprintf(c.shape, sizeof c.shape, "B%d Lq%d Lk%d heads%d d%d kv_group%d", B, Lq, Lk, heads, d, kv_group);
        add_floats(&c, random_normal(q_count, 0, 1), q_count);
        add_floats(&c, random_normal(kv_count, 0, 1), kv_count);
        add_floats(&c, random_normal(kv_count, 0, 1), kv_count);
        memcpy(c.p, s, 6 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

/* The spatial self-attention size of the large model (2560 tokens, 5 heads of 64) on a batch of
 * 4; the CPU reference checks 64 query rows of the first and of the last batch entry. */
static void test_attention_large(vd_backend *ref, vd_backend *gpu)
{
    const int B = 4, L = 2560, heads = 5, d = 64, rows = 64;
    size_t row = (size_t)heads * d, count = (size_t)B * L * row;
    float *q = random_normal(count, 0, 1), *k = random_normal(count, 0, 1), *v = random_normal(count, 0, 1);
    float *o = vd_malloc(count * sizeof *o);
    float *dq = gpu->alloc(gpu, count * 4), *dk = gpu->alloc(gpu, count * 4), *dv = gpu->alloc(gpu, count * 4);
    float *dout = gpu->alloc(gpu, count * 4);
    gpu->upload(gpu, dq, q, count * 4);
    gpu->upload(gpu, dk, k, count * 4);
    gpu->upload(gpu, dv, v, count * 4);

    /* Reference slices: batch entry b, query rows [row0, row0 + rows), all keys of b. */
    const int slice_b[2] = {0, B - 1}, slice_row0[2] = {0, L - rows};
    size_t slice_count = (size_t)rows * row;
    float *want = vd_malloc(2 * slice_count * sizeof *want), *got = vd_malloc(2 * slice_count * sizeof *got);
    float *rq = ref->alloc(ref, slice_count * 4), *rk = ref->alloc(ref, (size_t)L * row * 4);
    float *rv = ref->alloc(ref, (size_t)L * row * 4), *ro = ref->alloc(ref, slice_count * 4);
    for (int s = 0; s < 2; s++) {
        size_t b_off = (size_t)slice_b[s] * L * row;
        ref->upload(ref, rq, q + b_off + (size_t)slice_row0[s] * row, slice_count * 4);
        ref->upload(ref, rk, k + b_off, (size_t)L * row * 4);
        ref->upload(ref, rv, v + b_off, (size_t)L * row * 4);
        ref->attention(ref, ro, rq, rk, rv, 1, rows, L, heads, d, 1);
        ref->download(ref, want + s * slice_count, ro, slice_count * 4);
    }
    for (int mode = 0; mode < 2; mode++) {
        vd_precision precision = mode ? VD_PRECISION_BF16 : VD_PRECISION_F32;
        gpu->precision = precision;
        test_poison(o, count);
        gpu->upload(gpu, dout, o, count * 4);
        gpu->attention(gpu, dout, dq, dk, dv, B, L, L, heads, d, 1);
        gpu->download(gpu, o, dout, count * 4);
        for (int s = 0; s < 2; s++)
            memcpy(got + s * slice_count, o + ((size_t)slice_b[s] * L + slice_row0[s]) * row, slice_count * 4);
        char shape[96];
        snprintf(shape, sizeof shape, "B%d L%d heads%d d%d (2 slices of %d rows)", B, L, heads, d, rows);
        report("attention", shape, precision, test_rel_error(got, want, 2 * slice_count),
               mode ? TOL_BF16 : TOL_F32, count_non_finite(o, count));
    }
    gpu->precision = VD_PRECISION_F32;
    ref->release(ref, rq);
    ref->release(ref, rk);
    ref->release(ref, rv);
    ref->release(ref, ro);
    gpu->release(gpu, dq);
    gpu->release(gpu, dk);
    gpu->release(gpu, dv);
    gpu->release(gpu, dout);
    free(q);
    free(k);
    free(v);
    free(o);
    free(want);
    free(got);
}

static void test_layout(vd_backend *ref, vd_backend *gpu)
{
    static const int up_shapes[][4] = {{2, 3, 5, 7}, {1, 16, 32, 32}, {1, 1, 1, 1}};
    for (size_t i = 0; i < VD_ARRAY_LEN(up_shapes); i++) {
        const int *s = up_shapes[i];
        size_t n = (size_t)s[0] * s[1] * s[2] * s[3];
        op_case c = {.op = "upsample2x", .run = run_upsample2x, .out_count = 4 * n};
        snprintf(c.shape, sizeof c.shape, "B%d C%d %dx%d", s[0], s[1], s[2], s[3]);
        add_floats(&c, random_normal(n, 0, 1), n);
        memcpy(c.p, s, 4 * sizeof(int));
        check_case(ref, gpu, &c);
    }
    static const int bc_shapes[][2] = {{7, 13}, {100, 320}, {1, 1}};
    for (size_t i = 0; i < VD_ARRAY_LEN(bc_shapes); i++) {
        const int *s = bc_shapes[i];
        size_t n = (size_t)s[0] * s[1];
        op_case c = {.op = "add_broadcast", .run = run_add_broadcast, .out_count = n, .out_is_input0 = 1};
        snprintf(c.shape, sizeof c.shape, "outer%d inner%d", s[0], s[1]);
        add_floats(&c, random_normal(n, 0, 1), n);
        add_floats(&c, random_normal(s[1], 0, 1), s[1]);
        c.p[0] = s[0];
        c.p[1] = s[1];
        check_case(ref, gpu, &c);
    }
    static const int cb_shapes[][4] = {{2, 3, 5, 7}, {4, 16, 32, 64}, {1, 1, 3, 1}};
    for (size_t i = 0; i < VD_ARRAY_LEN(cb_shapes); i++) {
        const int *s = cb_shapes[i];
        size_t n = (size_t)s[0] * s[1] * s[2] * s[3];
        op_case c = {.op = "add_channel_bias", .run = run_add_channel_bias, .out_count = n, .out_is_input0 = 1};
        snprintf(c.shape, sizeof c.shape, "N%d T%d C%d S%d", s[0], s[1], s[2], s[3]);
        add_floats(&c, random_normal(n, 0, 1), n);
        add_floats(&c, random_normal((size_t)s[0] * s[2], 0, 1), (size_t)s[0] * s[2]);
        memcpy(c.p, s, 4 * sizeof(int));
        check_case(ref, gpu, &c);
    }
    static const int cat_shapes[][4] = {{2, 3, 5, 17}, {3, 64, 64, 100}, {1, 1, 1, 1}};
    for (size_t i = 0; i < VD_ARRAY_LEN(cat_shapes); i++) {
        const int *s = cat_shapes[i];
        int B = s[0], ca = s[1], cb = s[2], S = s[3];
        op_case c = {.op = "concat_channels", .run = run_concat_channels, .out_count = (size_t)B * (ca + cb) * S};
        snprintf(c.shape, sizeof c.shape, "B%d ca%d cb%d S%d", B, ca, cb, S);
        add_floats(&c, random_normal((size_t)B * ca * S, 0, 1), (size_t)B * ca * S);
        add_floats(&c, random_normal((size_t)B * cb * S, 0, 1), (size_t)B * cb * S);
        c.p[0] = ca;
        c.p[1] = cb;
        c.p[2] = B;
        c.p[3] = S;
        check_case(ref, gpu, &c);
    }
    static const int tr_shapes[][4] = {
        {2, 5, 7, 1}, {3, 64, 100, 1}, {2, 16, 33, 8}, {2, 5, 3, 3}, {1, 40, 70, 1}, {2, 3, 4, 320},
    };
    for (size_t i = 0; i < VD_ARRAY_LEN(tr_shapes); i++) {
        const int *s = tr_shapes[i];
        size_t n = (size_t)s[0] * s[1] * s[2] * s[3];
        op_case c = {.op = "transpose", .run = run_transpose, .out_count = n};
        snprintf(c.shape, sizeof c.shape, "A%d B%d C%d D%d", s[0], s[1], s[2], s[3]);
        add_floats(&c, random_normal(n, 0, 1), n);
        memcpy(c.p, s, 4 * sizeof(int));
        check_case(ref, gpu, &c);
    }
}

static void test_embeddings(vd_backend *ref, vd_backend *gpu)
{
    static const int te_shapes[][2] = {{7, 32}, {3, 320}, {1, 2}};
    for (size_t i = 0; i < VD_ARRAY_LEN(te_shapes); i++) {
        int n = te_shapes[i][0], dim = te_shapes[i][1];
        op_case c = {.op = "timestep_embedding", .run = run_timestep_embedding, .out_count = (size_t)n * dim};
        snprintf(c.shape, sizeof c.shape, "n%d dim%d t in [0, 1000)", n, dim);
        add_floats(&c, random_uniform(n, 0, 1000), n);
        c.p[0] = n;
        c.p[1] = dim;
        check_case(ref, gpu, &c);
    }
    static const int emb_shapes[][3] = {{9, 17, 50}, {32, 128, 1000}};
    for (size_t i = 0; i < VD_ARRAY_LEN(emb_shapes); i++) {
        int n = emb_shapes[i][0], dim = emb_shapes[i][1], rows = emb_shapes[i][2];
        op_case c = {.op = "embedding", .run = run_embedding, .out_count = (size_t)n * dim};
        snprintf(c.shape, sizeof c.shape, "n%d dim%d rows%d", n, dim, rows);
        int32_t *ids = vd_malloc((size_t)n * sizeof *ids);
        uint64_t state = fresh_seed();
        for (int m = 0; m < n; m++) ids[m] = (int32_t)(test_rng_next(&state) % (uint64_t)rows);
        ids[n - 1] = rows - 1;
        add_input(&c, ids, (size_t)n * sizeof *ids);
        add_floats(&c, random_normal((size_t)rows * dim, 0, 1), (size_t)rows * dim);
        c.p[0] = n;
        c.p[1] = dim;
        check_case(ref, gpu, &c);
    }
}

/* ---- optional timings at the large model's sizes ---- */

/* A device buffer of n random floats, uploaded from a small host pattern repeated. */
static float *device_random(vd_backend *gpu, size_t n)
{
    const size_t pattern = (size_t)1 << 22;
    float *host = random_normal(pattern, 0, 1);
    float *dev = gpu->alloc(gpu, n * sizeof *dev);
    for (size_t off = 0; off < n; off += pattern)
        gpu->upload(gpu, dev + off, host, (n - off < pattern ? n - off : pattern) * sizeof *dev);
    gpu->synchronize(gpu);
    free(host);
    return dev;
}

typedef struct {
    vd_backend *gpu;
    float *y, *x, *w, *b, *k, *v;
} timing_args;

static double median_ms(void (*op)(const timing_args *), const timing_args *a)
{
    double times[7];
    op(a); /* warm-up: plans, workspaces, module load */
    a->gpu->synchronize(a->gpu);
    for (int r = 0; r < 7; r++) {
        double start = vd_now();
        op(a);
        a->gpu->synchronize(a->gpu);
        times[r] = (vd_now() - start) * 1e3;
    }
    for (int i = 1; i < 7; i++)
        for (int j = i; j > 0 && times[j - 1] > times[j]; j--) {
            double t = times[j];
            times[j] = times[j - 1];
            times[j - 1] = t;
        }
    return times[3];
}

static void time_attention(const timing_args *a)
{
    a->gpu->attention(a->gpu, a->y, a->x, a->k, a->v, 512, 2560, 2560, 5, 64, 1);
}

static void time_temporal_attention(const timing_args *a)
{
    a->gpu->attention(a->gpu, a->y, a->x, a->k, a->v, 32 * 2560, 16, 16, 5, 64, 1);
}

static void time_conv(const timing_args *a)
{
    a->gpu->conv2d(a->gpu, a->y, a->x, a->w, a->b, 512, 320, 40, 64, 320, 3, 1);
}

static void time_linear(const timing_args *a)
{
    a->gpu->linear(a->gpu, a->y, a->x, a->w, a->b, 512 * 2560, 320, 1280);
}

static void time_group_norm(const timing_args *a)
{
    a->gpu->group_norm(a->gpu, a->y, a->x, a->w, a->b, 512, 320, 2560, 32, 1e-5f);
}

static void run_timings(vd_backend *gpu)
{
    size_t big = (size_t)512 * 2560 * 1280; /* the largest activation timed: linear's output */
    timing_args a = {gpu, device_random(gpu, big), device_random(gpu, big),
                     device_random(gpu, 1280 * 320 * 9), device_random(gpu, 1280),
                     device_random(gpu, (size_t)512 * 2560 * 320), device_random(gpu, (size_t)512 * 2560 * 320)};
    struct {
        const char *name;
        void (*op)(const timing_args *);
        double flops;
    } ops[] = {
        {"attention B512 L2560 5x64", time_attention, 4.0 * 512 * 5 * 2560.0 * 2560 * 64},
        {"attention B81920 L16 5x64", time_temporal_attention, 4.0 * 81920 * 5 * 16.0 * 16 * 64},
        {"conv2d B512 320->320 40x64 k3", time_conv, 2.0 * 512 * 320 * 2560.0 * 320 * 9},
        {"linear M1310720 320->1280", time_linear, 2.0 * 512 * 2560 * 320.0 * 1280},
        {"group_norm B512 C320 S2560 G32", time_group_norm, 0},
    };
    printf("\ntimings (median of 7):\n");
    for (size_t i = 0; i < VD_ARRAY_LEN(ops); i++)
        for (int mode = 0; mode < 2; mode++) {
            gpu->precision = mode ? VD_PRECISION_BF16 : VD_PRECISION_F32;
            double ms = median_ms(ops[i].op, &a);
            printf("  %-32s %-4s %9.3f ms", ops[i].name, mode ? "bf16" : "fp32", ms);
            if (ops[i].flops > 0) printf("  %7.1f TFLOP/s", ops[i].flops / (ms * 1e-3) / 1e12);
            printf("\n");
        }
    gpu->precision = VD_PRECISION_F32;
    float *buffers[] = {a.y, a.x, a.w, a.b, a.k, a.v};
    for (size_t i = 0; i < VD_ARRAY_LEN(buffers); i++) gpu->release(gpu, buffers[i]);
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
    printf("%-18s %-44s %-5s %10s  %s\n", "op", "shape", "prec", "rel err", "result");

    test_conv2d(ref, gpu);
    test_temporal_conv(ref, gpu);
    test_norms(ref, gpu);
    test_elementwise(ref, gpu);
    test_random_normal(ref, gpu);
    test_linear(ref, gpu);
    test_attention(ref, gpu);
    test_attention_large(ref, gpu);
    test_layout(ref, gpu);
    test_embeddings(ref, gpu);

    printf("worst relative error: fp32 %.3e, bf16 %.3e\n", worst_f32, worst_bf16);
    printf("%d passed, %d failed\n", passed, failed);
    if (getenv("VDMINI_TEST_TIMING")) run_timings(gpu);

    gpu->destroy(gpu);
    ref->destroy(ref);
    return failed ? 1 : 0;
}
