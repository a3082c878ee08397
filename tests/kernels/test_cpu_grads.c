/* test_cpu_grads.c: the CPU backends' backward and training ops.
 *
 * (1) Every backward op of the reference backend against central finite differences of its
 * forward: for a small random case, a random upstream gradient r defines L = sum(r * y); for each
 * differentiable input X and a random direction u, (L(X + eps u) - L(X - eps u)) / (2 eps),
 * summed in double, must match sum(dX * u) from the backward to a relative 1e-3. Activation
 * gradients start as NaN (so they must be written); parameter gradients start at a known value
 * (so the result must be that value plus the gradient). (2) NULL gradient pointers: each gradient
 * alone, with the others NULL, equals the one from the full call, on both backends, and the
 * parameter gradients accumulate. (3) The fast backend against the reference on several shapes
 * (relative error 1e-5). (4) mse_loss, sum_squares and adamw against hand-computed values. */
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
#include "../test_util.h"

#define FD_TOL        1e-3 /* finite differences against the analytic gradient */
#define FAST_TOL      1e-5 /* fast backend against the reference */
#define PARAM_PREFILL 0.25f
#define MAX_INPUTS    4
/* Ops linear in each input have no truncation error: a large step keeps fp32 rounding of the
 * forward's output small against the difference. */
#define LINEAR_STEP 0.5
#define DIRECTIONS    2

static vd_backend *fast_backend, *reference_backend;

static int setup_backends(void **state)
{
    (void)state;
    fast_backend = vd_backend_cpu();
    reference_backend = vd_backend_cpu_reference();
    return 0;
}

static int teardown_backends(void **state)
{
    (void)state;
    fast_backend->destroy(fast_backend);
    reference_backend->destroy(reference_backend);
    return 0;
}

/* ---- one op under test: its inputs, forward and backward ---- */

typedef struct grad_case grad_case;

typedef struct {
    size_t n;       /* elements */
    int is_param;   /* its gradient accumulates (+=) rather than being written (=) */
    float mean, std; /* how its values are drawn */
} input_spec;

struct grad_case {
    char label[160];
    int inputs;                 /* differentiable inputs, in the order of the gradients */
    input_spec in[MAX_INPUTS];
    size_t out;                 /* elements of the forward's output */
    int ints[8];                /* the op's integer arguments */
    float eps_arg;              /* the norms' eps */
    const int32_t *ids;         /* embedding only */
    double step;                /* finite-difference step */
    /* y = op(x[0..inputs)); y is written, whatever it held. */
    void (*forward)(vd_backend *be, const grad_case *c, float *y, float *const *x);
    /* The backward, with grad[i] (possibly NULL) the gradient of input i. */
    void (*backward)(vd_backend *be, const grad_case *c, float *const *grad, const float *dy,
                     float *const *x);
};

static void conv2d_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    const int *i = c->ints;
    be->conv2d(be, y, x[0], x[1], x[2], i[0], i[1], i[2], i[3], i[4], i[5], i[6]);
}

static void conv2d_backward(vd_backend *be, const grad_case *c, float *const *g, const float *dy,
                            float *const *x)
{
    const int *i = c->ints;
    be->conv2d_backward(be, g[0], g[1], g[2], dy, x[0], x[1], i[0], i[1], i[2], i[3], i[4], i[5],
                        i[6]);
}

/* x (B, ci, H, W), w (co, ci, k, k), b (co). */
static grad_case conv2d_case(int B, int ci, int H, int W, int co, int k, int stride)
{
    int Ho = (H + 2 * (k / 2) - k) / stride + 1, Wo = (W + 2 * (k / 2) - k) / stride + 1;
    grad_case c = {.inputs = 3, .ints = {B, ci, H, W, co, k, stride}, .step = LINEAR_STEP,
                   .forward = conv2d_forward, .backward = conv2d_backward};
    c.in[0] = (input_spec){(size_t)B * ci * H * W, 0, 0.0f, 1.0f};
    c.in[1] = (input_spec){(size_t)co * ci * k * k, 1, 0.0f, 0.3f};
    c.in[2] = (input_spec){(size_t)co, 1, 0.0f, 1.0f};
    c.out = (size_t)B * co * Ho * Wo;
    snprintf(c.label, sizeof c.label, "conv2d B=%d ci=%d %dx%d co=%d k=%d stride=%d", B, ci, H, W,
             co, k, stride);
    return c;
}

static void temporal_conv_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    const int *i = c->ints;
    be->temporal_conv(be, y, x[0], x[1], x[2], i[0], i[1], i[2], i[3], i[4]);
}

static void temporal_conv_backward(vd_backend *be, const grad_case *c, float *const *g,
                                   const float *dy, float *const *x)
{
    const int *i = c->ints;
    be->temporal_conv_backward(be, g[0], g[1], g[2], dy, x[0], x[1], i[0], i[1], i[2], i[3], i[4]);
}

/* x (N, T, ci, S), w (co, ci, 3), b (co). */
static grad_case temporal_conv_case(int N, int T, int ci, int co, int S)
{
    grad_case c = {.inputs = 3, .ints = {N, T, ci, co, S}, .step = LINEAR_STEP,
                   .forward = temporal_conv_forward, .backward = temporal_conv_backward};
    c.in[0] = (input_spec){(size_t)N * T * ci * S, 0, 0.0f, 1.0f};
    c.in[1] = (input_spec){(size_t)co * ci * 3, 1, 0.0f, 0.3f};
    c.in[2] = (input_spec){(size_t)co, 1, 0.0f, 1.0f};
    c.out = (size_t)N * T * co * S;
    snprintf(c.label, sizeof c.label, "temporal_conv N=%d T=%d ci=%d co=%d S=%d", N, T, ci, co, S);
    return c;
}

static void group_norm_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    const int *i = c->ints;
    be->group_norm(be, y, x[0], x[1], x[2], i[0], i[1], i[2], i[3], c->eps_arg);
}

static void group_norm_backward(vd_backend *be, const grad_case *c, float *const *g,
                                const float *dy, float *const *x)
{
    const int *i = c->ints;
    be->group_norm_backward(be, g[0], g[1], g[2], dy, x[0], x[1], i[0], i[1], i[2], i[3],
                            c->eps_arg);
}

/* x (B, C, S), gamma, beta (C). */
static grad_case group_norm_case(int B, int C, int S, int G)
{
    grad_case c = {.inputs = 3, .ints = {B, C, S, G}, .eps_arg = 1e-5f, .step = 3e-3,
                   .forward = group_norm_forward, .backward = group_norm_backward};
    c.in[0] = (input_spec){(size_t)B * C * S, 0, 1.5f, 2.0f};
    c.in[1] = (input_spec){(size_t)C, 1, 1.0f, 0.5f};
    c.in[2] = (input_spec){(size_t)C, 1, 0.0f, 0.5f};
    c.out = (size_t)B * C * S;
    snprintf(c.label, sizeof c.label, "group_norm B=%d C=%d S=%d G=%d", B, C, S, G);
    return c;
}

static void layer_norm_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    be->layer_norm(be, y, x[0], x[1], x[2], c->ints[0], c->ints[1], c->eps_arg);
}

static void layer_norm_backward(vd_backend *be, const grad_case *c, float *const *g,
                                const float *dy, float *const *x)
{
    be->layer_norm_backward(be, g[0], g[1], g[2], dy, x[0], x[1], c->ints[0], c->ints[1],
                            c->eps_arg);
}

/* x (M, C), gamma, beta (C). */
static grad_case layer_norm_case(int M, int C)
{
    grad_case c = {.inputs = 3, .ints = {M, C}, .eps_arg = 1e-5f, .step = 3e-3,
                   .forward = layer_norm_forward, .backward = layer_norm_backward};
    c.in[0] = (input_spec){(size_t)M * C, 0, -1.0f, 2.0f};
    c.in[1] = (input_spec){(size_t)C, 1, 1.0f, 0.5f};
    c.in[2] = (input_spec){(size_t)C, 1, 0.0f, 0.5f};
    c.out = (size_t)M * C;
    snprintf(c.label, sizeof c.label, "layer_norm M=%d C=%d", M, C);
    return c;
}

static void silu_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    be->silu(be, y, x[0], c->out);
}

static void silu_backward(vd_backend *be, const grad_case *c, float *const *g, const float *dy,
                          float *const *x)
{
    be->silu_backward(be, g[0], dy, x[0], c->out);
}

static void gelu_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    be->gelu(be, y, x[0], c->out);
}

static void gelu_backward(vd_backend *be, const grad_case *c, float *const *g, const float *dy,
                          float *const *x)
{
    be->gelu_backward(be, g[0], dy, x[0], c->out);
}

/* x, y (n), drawn wide enough to reach both tails. */
static grad_case activation_case(int is_gelu, size_t n)
{
    grad_case c = {.inputs = 1, .out = n, .step = 1e-2,
                   .forward = is_gelu ? gelu_forward : silu_forward,
                   .backward = is_gelu ? gelu_backward : silu_backward};
    c.in[0] = (input_spec){n, 0, 0.0f, 3.0f};
    snprintf(c.label, sizeof c.label, "%s n=%zu", is_gelu ? "gelu" : "silu", n);
    return c;
}

static void linear_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    be->linear(be, y, x[0], x[1], x[2], c->ints[0], c->ints[1], c->ints[2]);
}

static void linear_backward(vd_backend *be, const grad_case *c, float *const *g, const float *dy,
                            float *const *x)
{
    be->linear_backward(be, g[0], g[1], g[2], dy, x[0], x[1], c->ints[0], c->ints[1], c->ints[2]);
}

/* x (M, in), w (out, in), b (out). */
static grad_case linear_case(int M, int in, int out)
{
    grad_case c = {.inputs = 3, .ints = {M, in, out}, .step = LINEAR_STEP,
                   .forward = linear_forward, .backward = linear_backward};
    c.in[0] = (input_spec){(size_t)M * in, 0, 0.0f, 1.0f};
    c.in[1] = (input_spec){(size_t)out * in, 1, 0.0f, 0.3f};
    c.in[2] = (input_spec){(size_t)out, 1, 0.0f, 1.0f};
    c.out = (size_t)M * out;
    snprintf(c.label, sizeof c.label, "linear M=%d in=%d out=%d", M, in, out);
    return c;
}

static void attention_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    const int *i = c->ints;
    be->attention(be, y, x[0], x[1], x[2], i[0], i[1], i[2], i[3], i[4], i[5]);
}

static void attention_backward(vd_backend *be, const grad_case *c, float *const *g,
                               const float *dy, float *const *x)
{
    const int *i = c->ints;
    be->attention_backward(be, g[0], g[1], g[2], dy, x[0], x[1], x[2], i[0], i[1], i[2], i[3],
                           i[4], i[5]);
}

/* q (B, Lq, heads*d); k, v (B/kv_group, Lk, heads*d). */
static grad_case attention_case(int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    grad_case c = {.inputs = 3, .ints = {B, Lq, Lk, heads, d, kv_group}, .step = 1e-2,
                   .forward = attention_forward, .backward = attention_backward};
    size_t kv = (size_t)(B / kv_group) * Lk * heads * d;
    c.in[0] = (input_spec){(size_t)B * Lq * heads * d, 0, 0.0f, 0.7f};
    c.in[1] = (input_spec){kv, 0, 0.0f, 0.7f};
    c.in[2] = (input_spec){kv, 0, 0.0f, 1.0f};
    c.out = c.in[0].n;
    snprintf(c.label, sizeof c.label, "attention B=%d Lq=%d Lk=%d heads=%d d=%d kv_group=%d", B,
             Lq, Lk, heads, d, kv_group);
    return c;
}

static void upsample2x_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    be->upsample2x(be, y, x[0], c->ints[0], c->ints[1], c->ints[2], c->ints[3]);
}

static void upsample2x_backward(vd_backend *be, const grad_case *c, float *const *g,
                                const float *dy, float *const *x)
{
    (void)x;
    be->upsample2x_backward(be, g[0], dy, c->ints[0], c->ints[1], c->ints[2], c->ints[3]);
}

/* x (B, C, H, W) -> y (B, C, 2H, 2W). */
static grad_case upsample2x_case(int B, int C, int H, int W)
{
    grad_case c = {.inputs = 1, .ints = {B, C, H, W}, .step = LINEAR_STEP,
                   .forward = upsample2x_forward, .backward = upsample2x_backward};
    c.in[0] = (input_spec){(size_t)B * C * H * W, 0, 0.0f, 1.0f};
    c.out = 4 * c.in[0].n;
    snprintf(c.label, sizeof c.label, "upsample2x B=%d C=%d H=%d W=%d", B, C, H, W);
    return c;
}

static void concat_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    be->concat_channels(be, y, x[0], c->ints[0], x[1], c->ints[1], c->ints[2], c->ints[3]);
}

static void concat_backward(vd_backend *be, const grad_case *c, float *const *g, const float *dy,
                            float *const *x)
{
    (void)x;
    be->concat_channels_backward(be, g[0], g[1], dy, c->ints[0], c->ints[1], c->ints[2],
                                 c->ints[3]);
}

/* a (B, ca, S), b (B, cb, S) -> y (B, ca + cb, S). */
static grad_case concat_case(int ca, int cb, int B, int S)
{
    grad_case c = {.inputs = 2, .ints = {ca, cb, B, S}, .step = LINEAR_STEP,
                   .forward = concat_forward, .backward = concat_backward};
    c.in[0] = (input_spec){(size_t)B * ca * S, 0, 0.0f, 1.0f};
    c.in[1] = (input_spec){(size_t)B * cb * S, 0, 0.0f, 1.0f};
    c.out = (size_t)B * (ca + cb) * S;
    snprintf(c.label, sizeof c.label, "concat_channels ca=%d cb=%d B=%d S=%d", ca, cb, B, S);
    return c;
}

/* The updating ops run on a zero output, so that y is a function of their table alone. */
static void add_broadcast_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    memset(y, 0, c->out * sizeof *y);
    be->add_broadcast(be, y, x[0], (size_t)c->ints[0], (size_t)c->ints[1]);
}

static void add_broadcast_backward(vd_backend *be, const grad_case *c, float *const *g,
                                   const float *dy, float *const *x)
{
    (void)x;
    be->add_broadcast_backward(be, g[0], dy, (size_t)c->ints[0], (size_t)c->ints[1]);
}

/* x (inner) added to every row of y (outer, inner). */
static grad_case add_broadcast_case(int outer, int inner)
{
    grad_case c = {.inputs = 1, .ints = {outer, inner}, .step = LINEAR_STEP,
                   .forward = add_broadcast_forward, .backward = add_broadcast_backward};
    c.in[0] = (input_spec){(size_t)inner, 1, 0.0f, 1.0f};
    c.out = (size_t)outer * inner;
    snprintf(c.label, sizeof c.label, "add_broadcast outer=%d inner=%d", outer, inner);
    return c;
}

static void add_channel_bias_forward(vd_backend *be, const grad_case *c, float *y,
                                     float *const *x)
{
    memset(y, 0, c->out * sizeof *y);
    be->add_channel_bias(be, y, x[0], c->ints[0], c->ints[1], c->ints[2], c->ints[3]);
}

static void add_channel_bias_backward(vd_backend *be, const grad_case *c, float *const *g,
                                      const float *dy, float *const *x)
{
    (void)x;
    be->add_channel_bias_backward(be, g[0], dy, c->ints[0], c->ints[1], c->ints[2], c->ints[3]);
}

/* bias (N, C) added over y (N, T, C, S). */
static grad_case add_channel_bias_case(int N, int T, int C, int S)
{
    grad_case c = {.inputs = 1, .ints = {N, T, C, S}, .step = LINEAR_STEP,
                   .forward = add_channel_bias_forward, .backward = add_channel_bias_backward};
    c.in[0] = (input_spec){(size_t)N * C, 1, 0.0f, 1.0f};
    c.out = (size_t)N * T * C * S;
    snprintf(c.label, sizeof c.label, "add_channel_bias N=%d T=%d C=%d S=%d", N, T, C, S);
    return c;
}

static void embedding_forward(vd_backend *be, const grad_case *c, float *y, float *const *x)
{
    be->embedding(be, y, c->ids, x[0], c->ints[0], c->ints[1]);
}

static void embedding_backward(vd_backend *be, const grad_case *c, float *const *g,
                               const float *dy, float *const *x)
{
    (void)x;
    be->embedding_backward(be, g[0], dy, c->ids, c->ints[0], c->ints[1]);
}

/* table (rows, dim), ids (n) with repeats -> y (n, dim). */
static const int32_t embedding_ids[] = {3, 0, 3, 5, 1, 3, 0};

static grad_case embedding_case(int dim)
{
    int n = (int)VD_ARRAY_LEN(embedding_ids), rows = 6;
    grad_case c = {.inputs = 1, .ints = {n, dim, rows}, .ids = embedding_ids,
                   .step = LINEAR_STEP,
                   .forward = embedding_forward, .backward = embedding_backward};
    c.in[0] = (input_spec){(size_t)rows * dim, 1, 0.0f, 1.0f};
    c.out = (size_t)n * dim;
    snprintf(c.label, sizeof c.label, "embedding n=%d dim=%d rows=%d", n, dim, rows);
    return c;
}

/* ---- the checks ---- */

static float *normal_tensor(size_t n, uint64_t seed, float mean, float std)
{
    float *x = vd_malloc(n * sizeof *x);
    test_fill_normal(x, n, seed, mean, std);
    return x;
}

static float **make_inputs(const grad_case *c, uint64_t seed)
{
    float **x = vd_calloc(MAX_INPUTS, sizeof *x);
    for (int i = 0; i < c->inputs; i++)
        x[i] = normal_tensor(c->in[i].n, seed + 7 * (uint64_t)i, c->in[i].mean, c->in[i].std);
    return x;
}

static void free_tensors(float **x)
{
    for (int i = 0; i < MAX_INPUTS; i++) free(x[i]);
    free(x);
}

/* Runs the backward with the gradients selected by `wanted` (a bit per input); activation
 * gradients start as NaN, parameter gradients at `prefill`. Unselected gradients are NULL. */
static float **run_backward(vd_backend *be, const grad_case *c, const float *dy, float *const *x,
                            unsigned wanted, float prefill)
{
    float **grad = vd_calloc(MAX_INPUTS, sizeof *grad);
    for (int i = 0; i < c->inputs; i++) {
        if (!(wanted & 1u << i)) continue;
        grad[i] = vd_malloc(c->in[i].n * sizeof *grad[i]);
        for (size_t e = 0; e < c->in[i].n; e++) grad[i][e] = c->in[i].is_param ? prefill : NAN;
    }
    c->backward(be, c, grad, dy, x);
    return grad;
}

/* sum(r * op(x)) in double on the reference backend. */
static double functional(const grad_case *c, const float *r, float *const *x)
{
    float *y = vd_malloc(c->out * sizeof *y);
    test_poison(y, c->out);
    c->forward(reference_backend, c, y, x);
    double total = 0.0;
    for (size_t e = 0; e < c->out; e++) total += (double)r[e] * y[e];
    free(y);
    return total;
}

static double worst_fd_error;

/* Finite differences against the reference backward, for every input and DIRECTIONS random
 * directions. */
static void check_finite_differences(grad_case c, uint64_t seed)
{
    float **x = make_inputs(&c, seed);
    float *r = normal_tensor(c.out, seed + 100, 0.0f, 1.0f);
    float **grad = run_backward(reference_backend, &c, r, x, (1u << c.inputs) - 1, PARAM_PREFILL);
    for (int i = 0; i < c.inputs; i++) {
        size_t n = c.in[i].n;
        float *saved = vd_malloc(n * sizeof *saved);
        memcpy(saved, x[i], n * sizeof *saved);
        for (int direction = 0; direction < DIRECTIONS; direction++) {
            float *u = normal_tensor(n, seed + 200 + 10 * (uint64_t)i + (uint64_t)direction, 0.0f,
                                     1.0f);
            double analytic = 0.0;
            for (size_t e = 0; e < n; e++) {
                double g = c.in[i].is_param ? (double)grad[i][e] - PARAM_PREFILL : grad[i][e];
                analytic += g * u[e];
            }
            /* the step actually taken: x + h u rounded to fp32, in each direction */
            for (size_t e = 0; e < n; e++) x[i][e] = (float)(saved[e] + c.step * u[e]);
            double plus = functional(&c, r, x);
            for (size_t e = 0; e < n; e++) x[i][e] = (float)(saved[e] - c.step * u[e]);
            double minus = functional(&c, r, x);
            memcpy(x[i], saved, n * sizeof *saved);
            double numeric = (plus - minus) / (2.0 * c.step);
            double scale = fabs(analytic) > 1e-2 ? fabs(analytic) : 1e-2;
            double err = fabs(numeric - analytic) / scale;
            if (!(err <= FD_TOL))
                print_error("%s, input %d: finite differences %.9g, backward %.9g (rel %.3g)\n",
                            c.label, i, numeric, analytic, err);
            assert_true(err <= FD_TOL);
            if (err > worst_fd_error) worst_fd_error = err;
            free(u);
        }
        free(saved);
    }
    free_tensors(grad);
    free(r);
    free_tensors(x);
}

/* On one backend: the full call's gradients equal each gradient computed alone (others NULL), a
 * call with every gradient NULL runs, and parameter gradients accumulate onto their prefill. */
static void check_null_and_accumulate(vd_backend *be, grad_case c, uint64_t seed)
{
    float **x = make_inputs(&c, seed);
    float *r = normal_tensor(c.out, seed + 100, 0.0f, 1.0f);
    unsigned all = (1u << c.inputs) - 1;
    float **full = run_backward(be, &c, r, x, all, 0.0f);
    free_tensors(run_backward(be, &c, r, x, 0, 0.0f));
    for (int i = 0; i < c.inputs; i++) {
        float **alone = run_backward(be, &c, r, x, 1u << i, 0.0f);
        char what[200];
        snprintf(what, sizeof what, "%s on %s: gradient %d alone", c.label, be->name, i);
        double err = test_rel_error(alone[i], full[i], c.in[i].n);
        if (!(err <= 1e-6)) print_error("%s: relative error %.3g\n", what, err);
        assert_true(err <= 1e-6);
        free_tensors(alone);
        if (!c.in[i].is_param) continue;
        float **accumulated = run_backward(be, &c, r, x, 1u << i, PARAM_PREFILL);
        for (size_t e = 0; e < c.in[i].n; e++) {
            double want = (double)full[i][e] + PARAM_PREFILL;
            double tol = 1e-6 * (fabs(want) + 1.0);
            if (!(fabs(accumulated[i][e] - want) <= tol))
                print_error("%s on %s: gradient %d does not accumulate: %.9g, want %.9g\n",
                            c.label, be->name, i, accumulated[i][e], want);
            assert_true(fabs(accumulated[i][e] - want) <= tol);
        }
        free_tensors(accumulated);
    }
    free_tensors(full);
    free(r);
    free_tensors(x);
}

static double worst_fast_error;

/* The fast backend's gradients against the reference's (parameter gradients from zero). */
static void check_fast_matches(grad_case c, uint64_t seed)
{
    float **x = make_inputs(&c, seed);
    float *r = normal_tensor(c.out, seed + 100, 0.0f, 1.0f);
    unsigned all = (1u << c.inputs) - 1;
    float **want = run_backward(reference_backend, &c, r, x, all, 0.0f);
    float **got = run_backward(fast_backend, &c, r, x, all, 0.0f);
    for (int i = 0; i < c.inputs; i++) {
        double err = test_rel_error(got[i], want[i], c.in[i].n);
        if (!(err <= FAST_TOL))
            print_error("%s, gradient %d: fast against reference, relative error %.3g\n",
                        c.label, i, err);
        assert_true(err <= FAST_TOL);
        if (err > worst_fast_error) worst_fast_error = err;
    }
    free_tensors(got);
    free_tensors(want);
    free(r);
    free_tensors(x);
}

/* Small cases for finite differences and the NULL/accumulation checks. */
static grad_case small_case(int which)
{
    switch (which) {
    case 0: return conv2d_case(2, 3, 5, 4, 4, 3, 1);
    case 1: return conv2d_case(1, 2, 7, 6, 3, 3, 2);
    case 2: return conv2d_case(2, 3, 4, 4, 2, 1, 1);
    case 3: return temporal_conv_case(2, 4, 3, 2, 5);
    case 4: return temporal_conv_case(1, 1, 2, 3, 4);
    case 5: return group_norm_case(2, 6, 5, 3);
    case 6: return group_norm_case(1, 4, 6, 1);
    case 7: return layer_norm_case(4, 9);
    case 8: return activation_case(0, 64);
    case 9: return activation_case(1, 64);
    case 10: return linear_case(5, 7, 6);
    case 11: return attention_case(2, 4, 5, 2, 3, 1);
    case 12: return attention_case(4, 3, 4, 2, 4, 2);
    case 13: return attention_case(3, 2, 6, 1, 5, 3);
    case 14: return upsample2x_case(2, 2, 3, 2);
    case 15: return concat_case(2, 3, 2, 4);
    case 16: return add_broadcast_case(4, 5);
    case 17: return add_channel_bias_case(2, 3, 4, 5);
    default: return embedding_case(4);
    }
}
#define SMALL_CASES 19

static void test_finite_differences(void **state)
{
    (void)state;
    for (int which = 0; which < SMALL_CASES; which++)
        check_finite_differences(small_case(which), 1000 + 37 * (uint64_t)which);
    print_message("worst finite-difference relative error: %.3g\n", worst_fd_error);
}

static void test_null_gradients_and_accumulation(void **state)
{
    (void)state;
    for (int which = 0; which < SMALL_CASES; which++) {
        check_null_and_accumulate(reference_backend, small_case(which), 2000 + (uint64_t)which);
        check_null_and_accumulate(fast_backend, small_case(which), 2000 + (uint64_t)which);
    }
}

static void test_fast_matches_reference(void **state)
{
    (void)state;
    for (int which = 0; which < SMALL_CASES; which++)
        check_fast_matches(small_case(which), 3000 + (uint64_t)which);
    check_fast_matches(conv2d_case(3, 5, 9, 8, 6, 3, 2), 3100);      /* stride 2, odd height */
    check_fast_matches(conv2d_case(2, 8, 6, 6, 5, 1, 1), 3101);      /* 1x1: direct GEMMs */
    check_fast_matches(conv2d_case(1, 4, 7, 7, 3, 1, 2), 3102);      /* 1x1 stride 2: im2col */
    check_fast_matches(conv2d_case(4, 3, 5, 6, 2, 5, 1), 3103);      /* k = 5 */
    check_fast_matches(conv2d_case(1, 8, 33, 17, 12, 3, 1), 3104);   /* one image */
    check_fast_matches(conv2d_case(1, 1024, 16, 15, 8, 3, 1), 3105); /* deep: column blocks */
    check_fast_matches(conv2d_case(1, 4096, 5, 40, 4, 3, 1), 3107);  /* deeper: parts of rows */
    check_fast_matches(conv2d_case(4, 32, 16, 16, 32, 3, 1), 3106);  /* a UNet-like shape */
    check_fast_matches(temporal_conv_case(3, 2, 6, 5, 1), 3110);
    check_fast_matches(temporal_conv_case(2, 8, 32, 32, 64), 3111);
    check_fast_matches(group_norm_case(3, 8, 5, 1), 3120);
    check_fast_matches(group_norm_case(16, 64, 100, 16), 3121);
    check_fast_matches(layer_norm_case(1, 1), 3130);
    check_fast_matches(layer_norm_case(300, 200), 3131); /* parallel, several column blocks */
    check_fast_matches(activation_case(0, 100003), 3140);
    check_fast_matches(activation_case(1, 100003), 3141);
    check_fast_matches(linear_case(1, 33, 65), 3150);
    check_fast_matches(linear_case(64, 32, 128), 3151);
    check_fast_matches(linear_case(3, 300, 500), 3152);  /* few rows: column tasks */
    check_fast_matches(linear_case(500, 40, 300), 3153); /* row tasks */
    check_fast_matches(attention_case(3, 16, 16, 4, 32, 1), 3160);
    check_fast_matches(attention_case(6, 7, 3, 3, 8, 3), 3161);
    check_fast_matches(attention_case(2, 500, 300, 2, 16, 2), 3162); /* several query blocks */
    check_fast_matches(upsample2x_case(4, 8, 33, 17), 3170);
    check_fast_matches(concat_case(8, 4, 3, 9), 3180);
    check_fast_matches(add_broadcast_case(300, 130), 3190);
    check_fast_matches(add_channel_bias_case(2, 8, 16, 200), 3191);
    check_fast_matches(embedding_case(64), 3192);
    print_message("worst fast-against-reference relative error: %.3g\n", worst_fast_error);
}

/* ---- training ops: hand-computed values ---- */

static void expect_near(const char *what, double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        print_error("%s: got %.9g, want %.9g (tolerance %.1g)\n", what, got, want, tol);
    assert_true(fabs(got - want) <= tol);
}

static void test_mse_loss(void **state)
{
    (void)state;
    vd_backend *backends[2] = {reference_backend, fast_backend};
    for (int which = 0; which < 2; which++) {
        vd_backend *be = backends[which];
        /* diffs 1, -2, 0.5, 0: mean square (1 + 4 + 0.25) / 4 = 1.3125; dpred = 2 d / 4 * 3 */
        const float pred[4] = {2.0f, -1.0f, 0.5f, 7.0f}, target[4] = {1.0f, 1.0f, 0.0f, 7.0f};
        const float want_grad[4] = {1.5f, -3.0f, 0.75f, 0.0f};
        float loss = NAN, dpred[4];
        test_poison(dpred, 4);
        be->mse_loss(be, &loss, dpred, pred, target, NULL, 4, 3.0f);
        expect_near(be->name, loss, 1.3125, 1e-7);
        for (int i = 0; i < 4; i++) expect_near(be->name, dpred[i], want_grad[i], 1e-7);

        /* a large random case against a double sum */
        size_t n = 100003;
        float *p = normal_tensor(n, 51, 0.0f, 1.0f), *t = normal_tensor(n, 52, 0.5f, 1.0f);
        float *g = vd_malloc(n * sizeof *g);
        double total = 0.0;
        for (size_t i = 0; i < n; i++) total += ((double)p[i] - t[i]) * ((double)p[i] - t[i]);
        be->mse_loss(be, &loss, g, p, t, NULL, n, 0.5f);
        expect_near(be->name, loss, total / (double)n, 1e-6 * total / (double)n);
        for (size_t i = 0; i < n; i += 997) {
            double want = ((double)p[i] - t[i]) / (double)n;
            expect_near(be->name, g[i], want, 1e-6 * fabs(want));
        }

        /* the same weighted by w (mean 3) */
        float *w = normal_tensor(n, 53, 3.0f, 1.0f);
        total = 0.0;
        for (size_t i = 0; i < n; i++) total += w[i] * ((double)p[i] - t[i]) * ((double)p[i] - t[i]);
        be->mse_loss(be, &loss, g, p, t, w, n, 0.5f);
        expect_near(be->name, loss, total / (double)n, 1e-6 * total / (double)n);
        for (size_t i = 0; i < n; i += 997) {
            double want = w[i] * ((double)p[i] - t[i]) / (double)n;
            expect_near(be->name, g[i], want, 1e-6 * fabs(want));
        }
        free(p), free(t), free(w), free(g);
    }
}

static void test_sum_squares(void **state)
{
    (void)state;
    vd_backend *backends[2] = {reference_backend, fast_backend};
    for (int which = 0; which < 2; which++) {
        vd_backend *be = backends[which];
        const float x[3] = {3.0f, -4.0f, 0.5f};
        double out = NAN;
        be->sum_squares(be, &out, x, 3);
        expect_near(be->name, out, 25.25, 0.0);
        size_t n = 100003;
        float *y = normal_tensor(n, 61, 1.0f, 2.0f);
        double total = 0.0;
        for (size_t i = 0; i < n; i++) total += (double)y[i] * y[i];
        be->sum_squares(be, &out, y, n);
        expect_near(be->name, out, total, 1e-10 * total);
        free(y);
    }
}

static void test_adamw(void **state)
{
    (void)state;
    vd_backend *backends[2] = {reference_backend, fast_backend};
    const float lr = 0.1f, beta1 = 0.9f, beta2 = 0.99f, eps = 1e-8f, decay = 0.01f;
    const float grad_scale = 0.5f;
    for (int which = 0; which < 2; which++) {
        vd_backend *be = backends[which];
        /* step 1 from zero moments: mhat = g, vhat = g^2, so the update is lr (sign(g) + wd p)
         * (up to eps): g = 2 * 0.5 = 1 on p = 1 gives 1 - 0.1 (1 + 0.01) = 0.899 */
        float param[2] = {1.0f, -2.0f}, grad[2] = {2.0f, -4.0f}, m[2] = {0}, v[2] = {0};
        be->adamw(be, param, grad, m, v, 2, lr, beta1, beta2, eps, decay, 1, grad_scale);
        expect_near(be->name, param[0], 1.0 - 0.1 * (1.0 + 0.01 * 1.0), 1e-6);
        expect_near(be->name, param[1], -2.0 - 0.1 * (-1.0 + 0.01 * -2.0), 1e-6);
        expect_near(be->name, m[0], 0.1 * 1.0, 1e-7);
        expect_near(be->name, v[1], 0.01 * 4.0, 1e-7);

        /* step 3 from given moments, against the formula in double */
        float p3 = 0.5f, g3 = -0.3f, m3 = 0.2f, v3 = 0.05f;
        double g = -0.3 * grad_scale;
        double m_new = 0.9 * 0.2 + 0.1 * g, v_new = 0.99 * 0.05 + 0.01 * g * g;
        double mhat = m_new / (1.0 - pow(0.9, 3)), vhat = v_new / (1.0 - pow(0.99, 3));
        double want = 0.5 - 0.1 * (mhat / (sqrt(vhat) + 1e-8) + 0.01 * 0.5);
        be->adamw(be, &p3, &g3, &m3, &v3, 1, lr, beta1, beta2, eps, decay, 3, grad_scale);
        expect_near(be->name, p3, want, 1e-6);
        expect_near(be->name, m3, m_new, 1e-7);
        expect_near(be->name, v3, v_new, 1e-7);
    }

    /* many parameters: the fast backend against the reference */
    size_t n = 100003;
    float *p[2], *m[2], *v[2];
    float *g = normal_tensor(n, 71, 0.0f, 1.0f);
    for (int which = 0; which < 2; which++) {
        p[which] = normal_tensor(n, 72, 0.0f, 1.0f);
        m[which] = normal_tensor(n, 73, 0.0f, 0.1f);
        v[which] = normal_tensor(n, 74, 0.0f, 0.1f);
        for (size_t i = 0; i < n; i++) v[which][i] *= v[which][i];
        backends[which]->adamw(backends[which], p[which], g, m[which], v[which], n, lr, beta1,
                               beta2, eps, decay, 7, grad_scale);
    }
    double err = test_rel_error(p[1], p[0], n);
    if (!(err <= FAST_TOL)) print_error("adamw: fast against reference %.3g\n", err);
    assert_true(err <= FAST_TOL);
    assert_true(test_rel_error(m[1], m[0], n) <= FAST_TOL);
    assert_true(test_rel_error(v[1], v[0], n) <= FAST_TOL);
    for (int which = 0; which < 2; which++) free(p[which]), free(m[which]), free(v[which]);
    free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_null_gradients_and_accumulation),
        cmocka_unit_test(test_fast_matches_reference),
        cmocka_unit_test(test_mse_loss),
        cmocka_unit_test(test_sum_squares),
        cmocka_unit_test(test_adamw),
    };
    return cmocka_run_group_tests(tests, setup_backends, teardown_backends);
}
