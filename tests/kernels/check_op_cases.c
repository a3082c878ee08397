/* check_op_cases: runs op cases written by the PyTorch reference (tools/reference/make_op_cases.py)
 * on both CPU backends and compares each result with the expected output.
 *
 * Usage: check_op_cases FILE.safetensors
 *
 * The file's __metadata__["vdmini.op_cases"] is a JSON list of {"name", "op", "args"}; the
 * tensors of case NAME are "NAME/<arg>" (backend.h's parameter names) and the expected output is
 * "NAME/out". Ops that update their output take its initial value from "NAME/y". A case whose
 * file holds the upstream gradient of its op's backward ("NAME/dy", or "NAME/dout" for attention)
 * also runs that backward and compares the input gradients with "NAME/d<arg>" (parameter
 * gradients accumulate from zero; activation gradients start as NaN). Prints one line per case
 * and one per backward; exits 0 when every case is within tolerance, 1 when any is not, 2 when
 * the file is malformed (with a message naming the problem) or cannot be read. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"
#include "safetensors.h"
#include "../test_util.h"

#define REL_TOL        1e-4
#define MAX_INT_ARGS   8
#define MAX_FLOAT_ARGS 2
#define MAX_INPUTS     4
#define MAX_ELEMENTS   ((int64_t)1 << 28) /* per tensor: refuses sizes that could not be meant */

/* One case's arguments, in the order its op_spec lists them. */
typedef struct {
    int64_t ints[MAX_INT_ARGS];
    double floats[MAX_FLOAT_ARGS];
} case_args;

/* Element counts of a case's inputs (in op_spec order) and of its output; 0 for an absent
 * optional input. */
typedef struct {
    int64_t inputs[MAX_INPUTS];
    int64_t out;
} case_sizes;

/* One input gradient of an op's backward: its tensor name, the input whose shape it has, and
 * whether it accumulates (+=, a parameter) or is written (=, an activation). */
typedef struct {
    const char *name;
    int input;
    int accumulates;
} grad_spec;

typedef struct {
    const char *op;
    const char *int_args[MAX_INT_ARGS + 1];     /* NULL-terminated */
    const char *float_args[MAX_FLOAT_ARGS + 1]; /* NULL-terminated */
    const char *inputs[MAX_INPUTS + 1];         /* NULL-terminated; "ids" is int32, "y" is the
                                                   output's initial value */
    const char *optional_input;                 /* may be absent (passed as NULL), or NULL */
    /* Checks the arguments against the op's rules and fills the sizes; returns a message, or
     * NULL when they are valid. */
    const char *(*sizes)(const case_args *a, case_sizes *s);
    /* Runs the op; in[i] is input i in backend memory (NULL when absent), out the output. */
    void (*run)(vd_backend *be, float *out, void *const *in, const case_args *a);
    /* The backward, for ops that have one: the upstream gradient's name (shaped as the output),
     * the input gradients (a name of NULL ends them), and the call; grad[i] is gradient i of
     * `grads` (NULL when its input is absent). */
    const char *upstream;
    grad_spec grads[MAX_INPUTS + 1];
    void (*run_backward)(vd_backend *be, float *const *grad, const float *dy, void *const *in,
                         const case_args *a);
} op_spec;

/* ---- per-op shape rules and calls ---- */

static const char *conv2d_sizes(const case_args *a, case_sizes *s)
{
    int64_t B = a->ints[0], ci = a->ints[1], H = a->ints[2], W = a->ints[3], co = a->ints[4],
            k = a->ints[5], stride = a->ints[6];
    int64_t pad = k / 2;
    if (H + 2 * pad < k || W + 2 * pad < k) return "kernel larger than the padded image";
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    s->inputs[0] = B * ci * H * W;
    s->inputs[1] = co * ci * k * k;
    s->inputs[2] = co;
    s->out = B * co * Ho * Wo;
    return NULL;
}

static void conv2d_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->conv2d(be, out, in[0], in[1], in[2], (int)i[0], (int)i[1], (int)i[2], (int)i[3], (int)i[4],
               (int)i[5], (int)i[6]);
}

static const char *temporal_conv_sizes(const case_args *a, case_sizes *s)
{
    int64_t N = a->ints[0], T = a->ints[1], ci = a->ints[2], co = a->ints[3], S = a->ints[4];
    s->inputs[0] = N * T * ci * S;
    s->inputs[1] = co * ci * 3;
    s->inputs[2] = co;
    s->out = N * T * co * S;
    return NULL;
}

static void temporal_conv_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->temporal_conv(be, out, in[0], in[1], in[2], (int)i[0], (int)i[1], (int)i[2], (int)i[3],
                      (int)i[4]);
}

static const char *group_norm_sizes(const case_args *a, case_sizes *s)
{
    int64_t B = a->ints[0], C = a->ints[1], S = a->ints[2], G = a->ints[3];
    if (C % G != 0) return "G does not divide C";
    if (!(a->floats[0] > 0.0)) return "eps must be positive";
    s->inputs[0] = B * C * S;
    s->inputs[1] = s->inputs[2] = C;
    s->out = B * C * S;
    return NULL;
}

static void group_norm_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->group_norm(be, out, in[0], in[1], in[2], (int)i[0], (int)i[1], (int)i[2], (int)i[3],
                   (float)a->floats[0]);
}

static const char *layer_norm_sizes(const case_args *a, case_sizes *s)
{
    if (!(a->floats[0] > 0.0)) return "eps must be positive";
    s->inputs[0] = s->out = a->ints[0] * a->ints[1];
    s->inputs[1] = s->inputs[2] = a->ints[1];
    return NULL;
}

static void layer_norm_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->layer_norm(be, out, in[0], in[1], in[2], (int)a->ints[0], (int)a->ints[1],
                   (float)a->floats[0]);
}

/* silu, gelu, add, axpby: every tensor holds n values. */
static const char *n_values_sizes(const case_args *a, case_sizes *s)
{
    s->inputs[0] = s->inputs[1] = s->out = a->ints[0];
    return NULL;
}

static void silu_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->silu(be, out, in[0], (size_t)a->ints[0]);
}

static void gelu_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->gelu(be, out, in[0], (size_t)a->ints[0]);
}

static void add_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->add(be, out, in[0], in[1], (size_t)a->ints[0]);
}

static void axpby_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->axpby(be, out, (float)a->floats[0], in[1], (float)a->floats[1], (size_t)a->ints[0]);
}

static const char *linear_sizes(const case_args *a, case_sizes *s)
{
    int64_t M = a->ints[0], in = a->ints[1], out = a->ints[2];
    s->inputs[0] = M * in;
    s->inputs[1] = out * in;
    s->inputs[2] = out;
    s->out = M * out;
    return NULL;
}

static void linear_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->linear(be, out, in[0], in[1], in[2], (int)a->ints[0], (int)a->ints[1], (int)a->ints[2]);
}

static const char *attention_sizes(const case_args *a, case_sizes *s)
{
    int64_t B = a->ints[0], Lq = a->ints[1], Lk = a->ints[2], heads = a->ints[3], d = a->ints[4],
            kv_group = a->ints[5];
    if (B % kv_group != 0) return "kv_group does not divide B";
    s->inputs[0] = s->out = B * Lq * heads * d;
    s->inputs[1] = s->inputs[2] = B / kv_group * Lk * heads * d;
    return NULL;
}

static void attention_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->attention(be, out, in[0], in[1], in[2], (int)i[0], (int)i[1], (int)i[2], (int)i[3],
                  (int)i[4], (int)i[5]);
}

static const char *upsample2x_sizes(const case_args *a, case_sizes *s)
{
    s->inputs[0] = a->ints[0] * a->ints[1] * a->ints[2] * a->ints[3];
    s->out = 4 * s->inputs[0];
    return NULL;
}

static void upsample2x_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->upsample2x(be, out, in[0], (int)i[0], (int)i[1], (int)i[2], (int)i[3]);
}

static const char *add_broadcast_sizes(const case_args *a, case_sizes *s)
{
    s->inputs[0] = s->out = a->ints[0] * a->ints[1]; /* y */
    s->inputs[1] = a->ints[1];                       /* x */
    return NULL;
}

static void add_broadcast_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->add_broadcast(be, out, in[1], (size_t)a->ints[0], (size_t)a->ints[1]);
}

static const char *add_channel_bias_sizes(const case_args *a, case_sizes *s)
{
    int64_t N = a->ints[0], T = a->ints[1], C = a->ints[2], S = a->ints[3];
    s->inputs[0] = s->out = N * T * C * S; /* y */
    s->inputs[1] = N * C;                  /* bias */
    return NULL;
}

static void add_channel_bias_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->add_channel_bias(be, out, in[1], (int)i[0], (int)i[1], (int)i[2], (int)i[3]);
}

static const char *concat_channels_sizes(const case_args *a, case_sizes *s)
{
    int64_t ca = a->ints[0], cb = a->ints[1], B = a->ints[2], S = a->ints[3];
    s->inputs[0] = B * ca * S;
    s->inputs[1] = B * cb * S;
    s->out = B * (ca + cb) * S;
    return NULL;
}

static void concat_channels_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->concat_channels(be, out, in[0], (int)i[0], in[1], (int)i[1], (int)i[2], (int)i[3]);
}

static const char *transpose_sizes(const case_args *a, case_sizes *s)
{
    s->inputs[0] = s->out = a->ints[0] * a->ints[1] * a->ints[2] * a->ints[3];
    return NULL;
}

static void transpose_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->transpose(be, out, in[0], (int)i[0], (int)i[1], (int)i[2], (int)i[3]);
}

static const char *timestep_embedding_sizes(const case_args *a, case_sizes *s)
{
    if (a->ints[1] % 2 != 0) return "dim must be even";
    s->inputs[0] = a->ints[0];
    s->out = a->ints[0] * a->ints[1];
    return NULL;
}

static void timestep_embedding_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->timestep_embedding(be, out, in[0], (int)a->ints[0], (int)a->ints[1]);
}

static const char *embedding_sizes(const case_args *a, case_sizes *s)
{
    s->inputs[0] = a->ints[0];              /* ids */
    s->inputs[1] = a->ints[2] * a->ints[1]; /* table (rows, dim) */
    s->out = a->ints[0] * a->ints[1];
    return NULL;
}

static void embedding_run(vd_backend *be, float *out, void *const *in, const case_args *a)
{
    be->embedding(be, out, in[0], in[1], (int)a->ints[0], (int)a->ints[1]);
}

/* ---- backward calls ---- */

static void conv2d_backward_run(vd_backend *be, float *const *g, const float *dy, void *const *in,
                                const case_args *a)
{
    const int64_t *i = a->ints;
    be->conv2d_backward(be, g[0], g[1], g[2], dy, in[0], in[1], (int)i[0], (int)i[1], (int)i[2],
                        (int)i[3], (int)i[4], (int)i[5], (int)i[6]);
}

static void temporal_conv_backward_run(vd_backend *be, float *const *g, const float *dy,
                                       void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->temporal_conv_backward(be, g[0], g[1], g[2], dy, in[0], in[1], (int)i[0], (int)i[1],
                               (int)i[2], (int)i[3], (int)i[4]);
}

static void group_norm_backward_run(vd_backend *be, float *const *g, const float *dy,
                                    void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->group_norm_backward(be, g[0], g[1], g[2], dy, in[0], in[1], (int)i[0], (int)i[1],
                            (int)i[2], (int)i[3], (float)a->floats[0]);
}

static void layer_norm_backward_run(vd_backend *be, float *const *g, const float *dy,
                                    void *const *in, const case_args *a)
{
    be->layer_norm_backward(be, g[0], g[1], g[2], dy, in[0], in[1], (int)a->ints[0],
                            (int)a->ints[1], (float)a->floats[0]);
}

static void silu_backward_run(vd_backend *be, float *const *g, const float *dy, void *const *in,
                              const case_args *a)
{
    be->silu_backward(be, g[0], dy, in[0], (size_t)a->ints[0]);
}

static void gelu_backward_run(vd_backend *be, float *const *g, const float *dy, void *const *in,
                              const case_args *a)
{
    be->gelu_backward(be, g[0], dy, in[0], (size_t)a->ints[0]);
}

static void linear_backward_run(vd_backend *be, float *const *g, const float *dy, void *const *in,
                                const case_args *a)
{
    be->linear_backward(be, g[0], g[1], g[2], dy, in[0], in[1], (int)a->ints[0], (int)a->ints[1],
                        (int)a->ints[2]);
}

static void attention_backward_run(vd_backend *be, float *const *g, const float *dout,
                                   void *const *in, const case_args *a)
{
    const int64_t *i = a->ints;
    be->attention_backward(be, g[0], g[1], g[2], dout, in[0], in[1], in[2], (int)i[0], (int)i[1],
                           (int)i[2], (int)i[3], (int)i[4], (int)i[5]);
}

static void upsample2x_backward_run(vd_backend *be, float *const *g, const float *dy,
                                    void *const *in, const case_args *a)
{
    (void)in;
    const int64_t *i = a->ints;
    be->upsample2x_backward(be, g[0], dy, (int)i[0], (int)i[1], (int)i[2], (int)i[3]);
}

static void concat_channels_backward_run(vd_backend *be, float *const *g, const float *dy,
                                         void *const *in, const case_args *a)
{
    (void)in;
    const int64_t *i = a->ints;
    be->concat_channels_backward(be, g[0], g[1], dy, (int)i[0], (int)i[1], (int)i[2], (int)i[3]);
}

static void add_broadcast_backward_run(vd_backend *be, float *const *g, const float *dy,
                                       void *const *in, const case_args *a)
{
    (void)in;
    be->add_broadcast_backward(be, g[0], dy, (size_t)a->ints[0], (size_t)a->ints[1]);
}

static void add_channel_bias_backward_run(vd_backend *be, float *const *g, const float *dy,
                                          void *const *in, const case_args *a)
{
    (void)in;
    const int64_t *i = a->ints;
    be->add_channel_bias_backward(be, g[0], dy, (int)i[0], (int)i[1], (int)i[2], (int)i[3]);
}

static void embedding_backward_run(vd_backend *be, float *const *g, const float *dy,
                                   void *const *in, const case_args *a)
{
    be->embedding_backward(be, g[0], dy, in[0], (int)a->ints[0], (int)a->ints[1]);
}

static const op_spec op_specs[] = {
    {"conv2d", {"B", "ci", "H", "W", "co", "k", "stride"}, {NULL}, {"x", "w", "b"}, NULL,
     conv2d_sizes, conv2d_run, "dy", {{"dx", 0, 0}, {"dw", 1, 1}, {"db", 2, 1}},
     conv2d_backward_run},
    {"temporal_conv", {"N", "T", "ci", "co", "S"}, {NULL}, {"x", "w", "b"}, NULL,
     temporal_conv_sizes, temporal_conv_run, "dy", {{"dx", 0, 0}, {"dw", 1, 1}, {"db", 2, 1}},
     temporal_conv_backward_run},
    {"group_norm", {"B", "C", "S", "G"}, {"eps"}, {"x", "gamma", "beta"}, NULL, group_norm_sizes,
     group_norm_run, "dy", {{"dx", 0, 0}, {"dgamma", 1, 1}, {"dbeta", 2, 1}},
     group_norm_backward_run},
    {"layer_norm", {"M", "C"}, {"eps"}, {"x", "gamma", "beta"}, NULL, layer_norm_sizes,
     layer_norm_run, "dy", {{"dx", 0, 0}, {"dgamma", 1, 1}, {"dbeta", 2, 1}},
     layer_norm_backward_run},
    {"silu", {"n"}, {NULL}, {"x"}, NULL, n_values_sizes, silu_run, "dy", {{"dx", 0, 0}},
     silu_backward_run},
    {"gelu", {"n"}, {NULL}, {"x"}, NULL, n_values_sizes, gelu_run, "dy", {{"dx", 0, 0}},
     gelu_backward_run},
    {"linear", {"M", "in", "out"}, {NULL}, {"x", "w", "b"}, "b", linear_sizes, linear_run,
     "dy", {{"dx", 0, 0}, {"dw", 1, 1}, {"db", 2, 1}}, linear_backward_run},
    {"attention", {"B", "Lq", "Lk", "heads", "d", "kv_group"}, {NULL}, {"q", "k", "v"}, NULL,
     attention_sizes, attention_run, "dout", {{"dq", 0, 0}, {"dk", 1, 0}, {"dv", 2, 0}},
     attention_backward_run},
    {"upsample2x", {"B", "C", "H", "W"}, {NULL}, {"x"}, NULL, upsample2x_sizes, upsample2x_run,
     "dy", {{"dx", 0, 0}}, upsample2x_backward_run},
    {"add", {"n"}, {NULL}, {"a", "b"}, NULL, n_values_sizes, add_run, NULL, {{NULL}}, NULL},
    {"axpby", {"n"}, {"alpha", "beta"}, {"y", "x"}, NULL, n_values_sizes, axpby_run, NULL,
     {{NULL}}, NULL},
    {"add_broadcast", {"outer", "inner"}, {NULL}, {"y", "x"}, NULL, add_broadcast_sizes,
     add_broadcast_run, "dy", {{"dx", 1, 1}}, add_broadcast_backward_run},
    {"add_channel_bias", {"N", "T", "C", "S"}, {NULL}, {"y", "bias"}, NULL,
     add_channel_bias_sizes, add_channel_bias_run, "dy", {{"dbias", 1, 1}},
     add_channel_bias_backward_run},
    {"concat_channels", {"ca", "cb", "B", "S"}, {NULL}, {"a", "b"}, NULL, concat_channels_sizes,
     concat_channels_run, "dy", {{"da", 0, 0}, {"db", 1, 0}}, concat_channels_backward_run},
    {"transpose", {"A", "B", "C", "D"}, {NULL}, {"x"}, NULL, transpose_sizes, transpose_run, NULL,
     {{NULL}}, NULL},
    {"timestep_embedding", {"n", "dim"}, {NULL}, {"t"}, NULL, timestep_embedding_sizes,
     timestep_embedding_run, NULL, {{NULL}}, NULL},
    {"embedding", {"n", "dim", "rows"}, {NULL}, {"ids", "table"}, NULL, embedding_sizes,
     embedding_run, "dy", {{"dtable", 1, 1}}, embedding_backward_run},
};

/* Ops that update their output (axpby, add_broadcast, add_channel_bias) list "y", its initial
 * value, as input 0; the op then runs on that buffer. */
static int updates_output(const op_spec *spec)
{
    return strcmp(spec->inputs[0], "y") == 0;
}

/* ---- one case: parsed, loaded, run ---- */

typedef struct {
    const char *name;
    const op_spec *spec;
    case_args args;
    case_sizes sizes;
    void *inputs[MAX_INPUTS]; /* host copies: float, or int32 for "ids"; NULL when absent */
    float *expected;
    float *upstream;                  /* the backward's upstream gradient, or NULL: no backward */
    float *expected_grads[MAX_INPUTS]; /* in the order of spec->grads; NULL for an absent input */
} loaded_case;

static int malformed(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int malformed(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void free_case(loaded_case *c)
{
    for (int i = 0; i < MAX_INPUTS; i++) free(c->inputs[i]), free(c->expected_grads[i]);
    free(c->expected);
    free(c->upstream);
    memset(c, 0, sizeof *c);
}

/* Finds tensor "<case>/<arg>"; checks its element count and dtype (int32 for ids, a float type
 * otherwise) and copies it to the host as float (or int32). *data stays NULL when the tensor is
 * absent and `optional`. */
static int load_tensor(const vd_st_file *file, const char *case_name, const char *arg,
                       int64_t numel, int optional, void **data, char *err, size_t errlen)
{
    char key[512];
    snprintf(key, sizeof key, "%s/%s", case_name, arg);
    const vd_st_tensor *t = vd_st_find(file, key);
    *data = NULL;
    if (!t) return optional ? 0 : malformed(err, errlen, "tensor \"%s\" is missing", key);
    if (vd_st_numel(t) != numel)
        return malformed(err, errlen, "tensor \"%s\" has %lld elements, the args call for %lld",
                         key, (long long)vd_st_numel(t), (long long)numel);
    *data = vd_malloc((size_t)numel * 4);
    if (strcmp(arg, "ids") == 0) {
        if (t->dtype != VD_ST_I32) return malformed(err, errlen, "tensor \"%s\" must be I32", key);
        memcpy(*data, t->data, (size_t)numel * 4);
        return 0;
    }
    if (vd_st_to_f32(t, *data) != 0)
        return malformed(err, errlen, "tensor \"%s\" must have a floating dtype", key);
    return 0;
}

/* Parses case `entry` of the JSON list and loads its tensors. */
static int load_case(const vd_st_file *file, json_t *entry, size_t index, loaded_case *c, char *err,
                     size_t errlen)
{
    memset(c, 0, sizeof *c);
    json_t *name = json_object_get(entry, "name"), *op = json_object_get(entry, "op");
    json_t *args = json_object_get(entry, "args");
    if (!json_is_object(entry) || !json_is_string(name) || !json_is_string(op) ||
        !json_is_object(args))
        return malformed(
            err, errlen,
            "case %zu: needs a string \"name\", a string \"op\" and an object \"args\"", index);
    c->name = json_string_value(name);
    for (size_t i = 0; i < VD_ARRAY_LEN(op_specs); i++)
        if (strcmp(op_specs[i].op, json_string_value(op)) == 0) c->spec = &op_specs[i];
    if (!c->spec)
        return malformed(err, errlen, "case %s: unknown op \"%s\"", c->name, json_string_value(op));

    for (int i = 0; c->spec->int_args[i]; i++) {
        json_t *value = json_object_get(args, c->spec->int_args[i]);
        if (!json_is_integer(value))
            return malformed(err, errlen, "case %s: arg \"%s\" is missing or not an integer",
                             c->name, c->spec->int_args[i]);
        c->args.ints[i] = json_integer_value(value);
        if (c->args.ints[i] < 1 || c->args.ints[i] > MAX_ELEMENTS)
            return malformed(err, errlen, "case %s: arg \"%s\" = %lld is out of range", c->name,
                             c->spec->int_args[i], (long long)c->args.ints[i]);
    }
    for (int i = 0; c->spec->float_args[i]; i++) {
        json_t *value = json_object_get(args, c->spec->float_args[i]);
        if (!json_is_number(value))
            return malformed(err, errlen, "case %s: arg \"%s\" is missing or not a number", c->name,
                             c->spec->float_args[i]);
        c->args.floats[i] = json_number_value(value);
    }
    /* Products of several args below 2^28 each can overflow: bound every size in double first. */
    double product = 1.0;
    for (int i = 0; c->spec->int_args[i]; i++) product *= (double)c->args.ints[i];
    if (product > 8.0 * (double)MAX_ELEMENTS)
        return malformed(err, errlen, "case %s: the args describe tensors too large to check",
                         c->name);
    const char *problem = c->spec->sizes(&c->args, &c->sizes);
    if (problem) return malformed(err, errlen, "case %s: %s", c->name, problem);
    for (int i = 0; c->spec->inputs[i]; i++)
        if (c->sizes.inputs[i] > MAX_ELEMENTS)
            return malformed(err, errlen, "case %s: input \"%s\" is too large", c->name,
                             c->spec->inputs[i]);
    if (c->sizes.out > MAX_ELEMENTS)
        return malformed(err, errlen, "case %s: output is too large", c->name);

    for (int i = 0; c->spec->inputs[i]; i++) {
        const char *arg = c->spec->inputs[i];
        int optional = c->spec->optional_input && strcmp(c->spec->optional_input, arg) == 0;
        if (load_tensor(file, c->name, arg, c->sizes.inputs[i], optional, &c->inputs[i], err,
                        errlen) != 0)
            return -1;
    }
    void *expected;
    int loaded = load_tensor(file, c->name, "out", c->sizes.out, 0, &expected, err, errlen);
    c->expected = expected;
    if (loaded != 0) return -1;

    if (c->spec->upstream) {
        void *upstream;
        if (load_tensor(file, c->name, c->spec->upstream, c->sizes.out, 1, &upstream, err,
                        errlen) != 0)
            return -1;
        c->upstream = upstream;
        for (int g = 0; c->upstream && c->spec->grads[g].name; g++) {
            int input = c->spec->grads[g].input;
            if (!c->inputs[input]) continue; /* an absent optional input has no gradient */
            void *grad;
            if (load_tensor(file, c->name, c->spec->grads[g].name, c->sizes.inputs[input], 0,
                            &grad, err, errlen) != 0)
                return -1;
            c->expected_grads[g] = grad;
        }
    }

    if (strcmp(c->spec->op, "embedding") == 0) {
        const int32_t *ids = c->inputs[0];
        for (int64_t i = 0; i < c->sizes.inputs[0]; i++)
            if (ids[i] < 0 || ids[i] >= c->args.ints[2])
                return malformed(err, errlen, "case %s: ids[%lld] = %d is outside [0, rows)",
                                 c->name, (long long)i, ids[i]);
    }
    return 0;
}

/* Runs a loaded case on one backend through its memory API; returns the relative error of the
 * output against the expected one (INFINITY when anything is NaN or infinite). */
static double run_case(vd_backend *be, const loaded_case *c)
{
    void *device_inputs[MAX_INPUTS] = {NULL};
    for (int i = 0; c->spec->inputs[i]; i++) {
        if (!c->inputs[i]) continue;
        size_t bytes = (size_t)c->sizes.inputs[i] * 4;
        device_inputs[i] = be->alloc(be, bytes);
        be->upload(be, device_inputs[i], c->inputs[i], bytes);
    }
    size_t out_bytes = (size_t)c->sizes.out * sizeof(float);
    float *host_out = vd_malloc(out_bytes);
    float *out;
    if (updates_output(c->spec)) {
        out = device_inputs[0]; /* the op updates "y" in place */
    } else {
        test_poison(host_out, (size_t)c->sizes.out);
        out = be->alloc(be, out_bytes);
        be->upload(be, out, host_out, out_bytes);
    }
    c->spec->run(be, out, device_inputs, &c->args);
    be->download(be, host_out, out, out_bytes);
    double err = test_rel_error(host_out, c->expected, (size_t)c->sizes.out);
    if (!updates_output(c->spec)) be->release(be, out);
    for (int i = 0; i < MAX_INPUTS; i++)
        if (device_inputs[i]) be->release(be, device_inputs[i]);
    free(host_out);
    return err;
}

/* Runs a loaded case's backward on one backend: parameter gradients start at zero, activation
 * gradients as NaN. Returns the largest relative error over its input gradients. */
static double run_backward_case(vd_backend *be, const loaded_case *c)
{
    void *device_inputs[MAX_INPUTS] = {NULL};
    float *device_grads[MAX_INPUTS] = {NULL};
    for (int i = 0; c->spec->inputs[i]; i++) {
        if (!c->inputs[i]) continue;
        size_t bytes = (size_t)c->sizes.inputs[i] * 4;
        device_inputs[i] = be->alloc(be, bytes);
        be->upload(be, device_inputs[i], c->inputs[i], bytes);
    }
    size_t out_bytes = (size_t)c->sizes.out * sizeof(float);
    float *upstream = be->alloc(be, out_bytes);
    be->upload(be, upstream, c->upstream, out_bytes);
    for (int g = 0; c->spec->grads[g].name; g++) {
        if (!c->expected_grads[g]) continue;
        size_t n = (size_t)c->sizes.inputs[c->spec->grads[g].input];
        device_grads[g] = be->alloc(be, n * sizeof(float));
        if (c->spec->grads[g].accumulates) {
            be->zero(be, device_grads[g], n * sizeof(float));
        } else {
            float *poison = vd_malloc(n * sizeof *poison);
            test_poison(poison, n);
            be->upload(be, device_grads[g], poison, n * sizeof *poison);
            free(poison);
        }
    }
    c->spec->run_backward(be, device_grads, upstream, device_inputs, &c->args);
    double worst = 0.0;
    for (int g = 0; c->spec->grads[g].name; g++) {
        if (!device_grads[g]) continue;
        size_t n = (size_t)c->sizes.inputs[c->spec->grads[g].input];
        float *host = vd_malloc(n * sizeof *host);
        be->download(be, host, device_grads[g], n * sizeof *host);
        double err = test_rel_error(host, c->expected_grads[g], n);
        if (!(err <= worst)) worst = err; /* a NaN error is kept as the worst */
        free(host);
        be->release(be, device_grads[g]);
    }
    be->release(be, upstream);
    for (int i = 0; i < MAX_INPUTS; i++)
        if (device_inputs[i]) be->release(be, device_inputs[i]);
    return worst;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE.safetensors\n", argv[0]);
        return 2;
    }
    char err[1024];
    vd_st_file file;
    if (vd_st_read(argv[1], &file, err, sizeof err) != 0) {
        fprintf(stderr, "cannot read the case file: %s\n", err);
        return 2;
    }
    const char *meta = vd_st_meta(&file, "vdmini.op_cases");
    if (!meta) {
        fprintf(stderr, "%s: no __metadata__ entry \"vdmini.op_cases\"\n", argv[1]);
        vd_st_free(&file);
        return 2;
    }
    json_error_t json_err;
    json_t *cases = json_loads(meta, 0, &json_err);
    if (!json_is_array(cases) || json_array_size(cases) == 0) {
        if (cases)
            fprintf(stderr, "%s: vdmini.op_cases is not a non-empty JSON list\n", argv[1]);
        else
            fprintf(stderr, "%s: vdmini.op_cases is not valid JSON: %s\n", argv[1], json_err.text);
        json_decref(cases);
        vd_st_free(&file);
        return 2;
    }

    /* Load and check every case before running any, so a malformed file runs nothing. */
    size_t count = json_array_size(cases);
    loaded_case *loaded = vd_calloc(count, sizeof *loaded);
    int status = 0;
    for (size_t i = 0; i < count && status == 0; i++) {
        if (load_case(&file, json_array_get(cases, i), i, &loaded[i], err, sizeof err) != 0) {
            fprintf(stderr, "%s: malformed: %s\n", argv[1], err);
            status = 2;
        }
        for (size_t j = 0; j < i && status == 0; j++)
            if (strcmp(loaded[j].name, loaded[i].name) == 0) {
                fprintf(stderr, "%s: malformed: case name \"%s\" is used twice\n", argv[1],
                        loaded[i].name);
                status = 2;
            }
    }

    if (status == 0) {
        vd_backend *backends[2] = {vd_backend_cpu(), vd_backend_cpu_reference()};
        int failures = 0, backward_checks = 0;
        for (size_t i = 0; i < count; i++) {
            printf("%-24s %-18s", loaded[i].name, loaded[i].spec->op);
            int ok = 1;
            for (int b = 0; b < 2; b++) {
                double rel = run_case(backends[b], &loaded[i]);
                printf("  %s %.2e", backends[b]->name, rel);
                if (!(rel <= REL_TOL)) ok = 0;
            }
            printf("  %s\n", ok ? "ok" : "FAIL");
            failures += !ok;
            if (!loaded[i].upstream) continue;
            char backward_name[64];
            snprintf(backward_name, sizeof backward_name, "%s_backward", loaded[i].spec->op);
            printf("%-24s %-18s", loaded[i].name, backward_name);
            ok = 1;
            for (int b = 0; b < 2; b++) {
                double rel = run_backward_case(backends[b], &loaded[i]);
                printf("  %s %.2e", backends[b]->name, rel);
                if (!(rel <= REL_TOL)) ok = 0;
            }
            printf("  %s\n", ok ? "ok" : "FAIL");
            failures += !ok;
            backward_checks++;
        }
        printf("%zu cases (%d with a backward), %d failed (tolerance: relative error %.0e)\n",
               count, backward_checks, failures, REL_TOL);
        status = failures ? 1 : 0;
        for (int b = 0; b < 2; b++) backends[b]->destroy(backends[b]);
    }
    for (size_t i = 0; i < count; i++) free_case(&loaded[i]);
    free(loaded);
    json_decref(cases);
    vd_st_free(&file);
    return status;
}
