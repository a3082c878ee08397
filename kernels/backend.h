/* backend.h: the interface every compute backend implements (cpu/ and cuda/).
 *
 * A backend owns its memory (host memory for the CPU, device memory for CUDA) and runs the ops
 * the models need. Pointers passed to ops always point into that backend's memory. Every op is
 * a forward pass here; backward passes join as `<op>_backward` members with the same shapes
 * (parameter gradients accumulate with +=, activation gradients are written with =).
 *
 * Shapes in the comments are row-major. "Images" are (B, C, H, W); a video batch (N, T, C, H, W)
 * is passed as B = N*T images. S always means H*W.
 *
 * Ops run in order on one stream; results are visible to a later op without synchronisation,
 * and to the host after `download` (which synchronises). Output buffers never alias inputs
 * unless an op says so. */
#ifndef VD_BACKEND_H
#define VD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    VD_PRECISION_F32 = 0, /* everything in fp32 */
    VD_PRECISION_BF16 = 1 /* matrix products (linear, conv, attention) take bf16 operands and
                             accumulate in fp32; storage and other ops stay fp32 */
} vd_precision;

typedef struct vd_backend vd_backend;

struct vd_backend {
    const char *name;       /* "cpu", "cpu-reference" or "cuda" */
    vd_precision precision; /* may be changed between ops by the caller */
    void *impl;             /* the backend's private state */

    /* ---- memory ---- */
    void *(*alloc)(vd_backend *be, size_t bytes); /* aborts on failure; contents undefined */
    void (*release)(vd_backend *be, void *ptr);
    /* host_src may be reused or freed as soon as upload returns. */
    void (*upload)(vd_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(vd_backend *be, void *host_dst, const void *src, size_t bytes);
    void (*copy)(vd_backend *be, void *dst, const void *src, size_t bytes);
    void (*zero)(vd_backend *be, void *dst, size_t bytes);
    void (*synchronize)(vd_backend *be);
    void (*destroy)(vd_backend *be); /* frees the backend itself */
    /* Declares [ptr, ptr + bytes) read-only until it is released or declared again: the backend
     * may keep derived copies of data in it (such as bf16 weights). Declaring it again drops
     * those copies (for a caller that changed the data). */
    void (*declare_constant)(vd_backend *be, const void *ptr, size_t bytes);
    /* Device memory in use and in all, in bytes; 0 and 0 for host memory. */
    void (*memory_info)(vd_backend *be, size_t *used, size_t *total);
    /* Makes the backend's device the calling thread's current one: a thread must call it before
     * its first call into a backend of one of several GPUs. NULL for host memory (nothing to do). */
    void (*activate)(vd_backend *be);

    /* ---- recorded op sequences (CUDA graphs); all NULL where the backend has none ----
     * record_begin makes the ops called next be recorded instead of run (0, or -1 when it cannot
     * record); record_end stops and returns the recording, or NULL when it could not be made. The
     * recorded ops have not run: replay runs them, on the same buffers, as often as it is called.
     * Between record_begin and record_end only ops, copy and zero may be called (no upload,
     * download, release or synchronize), and the backend's own buffers must already be large
     * enough: run the same sequence once unrecorded first. replay returns -1 and runs nothing when
     * the backend has since replaced a buffer of its own that the recording uses (record again). */
    int (*record_begin)(vd_backend *be);
    void *(*record_end)(vd_backend *be);
    int (*replay)(vd_backend *be, void *recording);
    void (*release_recording)(vd_backend *be, void *recording);

    /* ---- ops, forward ---- */

    /* y(B, co, Ho, Wo) = conv(x(B, ci, H, W), w(co, ci, k, k)) + b(co); zero padding k/2;
     * Ho = (H + 2*(k/2) - k) / stride + 1. b may be NULL. */
    void (*conv2d)(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                   int B, int ci, int H, int W, int co, int k, int stride);

    /* Temporal convolution, kernel 3, zero padding 1 over T:
     * y(N, T, co, S)[n,t,o,s] = b[o] + sum_i sum_j w(co, ci, 3)[o,i,j] * x(N, T, ci, S)[n,t+j-1,i,s].
     * b may be NULL. */
    void (*temporal_conv)(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                          int N, int T, int ci, int co, int S);

    /* GroupNorm over each image: x, y (B, C, S), G groups, affine gamma/beta (C). y may equal x. */
    void (*group_norm)(vd_backend *be, float *y, const float *x, const float *gamma,
                       const float *beta, int B, int C, int S, int G, float eps);

    /* LayerNorm over the last dimension: x, y (M, C), gamma/beta (C). y may equal x. */
    void (*layer_norm)(vd_backend *be, float *y, const float *x, const float *gamma,
                       const float *beta, int M, int C, float eps);

    /* Elementwise activations over n values; y may equal x. gelu is the exact erf form. */
    void (*silu)(vd_backend *be, float *y, const float *x, size_t n);
    void (*gelu)(vd_backend *be, float *y, const float *x, size_t n);

    /* y(M, out) = x(M, in) * w(out, in)^T + b(out); b may be NULL. */
    void (*linear)(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                   int M, int in, int out);

    /* Multi-head attention, no mask. q, o: (B, Lq, heads*d). k, v: (B / kv_group, Lk, heads*d);
     * batch entry b attends to key/value entry b / kv_group (kv_group = T lets every frame of a
     * video attend to that video's text). o[b,i,h] = softmax_j(q[b,i,h].k[b',j,h] / sqrt(d)) v. */
    void (*attention)(vd_backend *be, float *o, const float *q, const float *k, const float *v,
                      int B, int Lq, int Lk, int heads, int d, int kv_group);

    /* Nearest-neighbour 2x: x (B, C, H, W) -> y (B, C, 2H, 2W). */
    void (*upsample2x)(vd_backend *be, float *y, const float *x, int B, int C, int H, int W);

    /* y = a + b over n values; y may equal a or b. */
    void (*add)(vd_backend *be, float *y, const float *a, const float *b, size_t n);

    /* y = alpha * x + beta * y over n values. */
    void (*axpby)(vd_backend *be, float *y, float alpha, const float *x, float beta, size_t n);

    /* y[i] += scale * (standard normal number i of stream seed) over n values: the generator of
     * random.h, run where y lives (a sampler step's fresh noise, with no upload). */
    void (*add_random_normal)(vd_backend *be, float *y, float scale, uint64_t seed, size_t n);

    /* y[o, i] += x[i] for o < outer, i < inner (positional tables added to every batch entry). */
    void (*add_broadcast)(vd_backend *be, float *y, const float *x, size_t outer, size_t inner);

    /* y(N, T, C, S)[n,t,c,s] += bias(N, C)[n,c] (a per-video, per-channel shift). */
    void (*add_channel_bias)(vd_backend *be, float *y, const float *bias, int N, int T, int C,
                             int S);

    /* y(B, ca + cb, S) = concat over channels of a(B, ca, S) and b(B, cb, S). */
    void (*concat_channels)(vd_backend *be, float *y, const float *a, int ca, const float *b,
                            int cb, int B, int S);

    /* y(A, C, B, D)[a,c,b,d] = x(A, B, C, D)[a,b,c,d]: swaps the two middle dimensions.
     * (B, C, S) -> (B, S, C) is transpose(A=B, B=C, C=S, D=1); (N, T, S, C) -> (N, S, T, C) is
     * transpose(A=N, B=T, C=S, D=C). */
    void (*transpose)(vd_backend *be, float *y, const float *x, int A, int B, int C, int D);

    /* y(n, dim) = [cos(t*f), sin(t*f)], f_i = exp(-ln(10000) * i / (dim/2)), t (n) in backend
     * memory. dim is even. */
    void (*timestep_embedding)(vd_backend *be, float *y, const float *t, int n, int dim);

    /* y(n, dim) = table[ids[i]] for i < n; ids (n int32) in backend memory, each < rows. */
    void (*embedding)(vd_backend *be, float *y, const int32_t *ids, const float *table, int n,
                      int dim);

    /* ---- ops, backward ----
     * Each takes the forward's inputs and dy (the gradient of the forward's output) and writes
     * the input gradients: activation gradients (dx, da, dq, ...) are written (=), parameter
     * gradients (dw, db, dgamma, dbeta, dtable, dbias) are accumulated (+=). Any gradient
     * pointer may be NULL when it is not wanted. Shapes are the forward's. Matrix products
     * follow be->precision like their forward. */

    void (*conv2d_backward)(vd_backend *be, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, int B, int ci, int H, int W, int co,
                            int k, int stride);
    void (*temporal_conv_backward)(vd_backend *be, float *dx, float *dw, float *db,
                                   const float *dy, const float *x, const float *w, int N, int T,
                                   int ci, int co, int S);
    /* The norms recompute their statistics from x. */
    void (*group_norm_backward)(vd_backend *be, float *dx, float *dgamma, float *dbeta,
                                const float *dy, const float *x, const float *gamma, int B, int C,
                                int S, int G, float eps);
    void (*layer_norm_backward)(vd_backend *be, float *dx, float *dgamma, float *dbeta,
                                const float *dy, const float *x, const float *gamma, int M, int C,
                                float eps);
    void (*silu_backward)(vd_backend *be, float *dx, const float *dy, const float *x, size_t n);
    void (*gelu_backward)(vd_backend *be, float *dx, const float *dy, const float *x, size_t n);
    void (*linear_backward)(vd_backend *be, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, int M, int in, int out);
    /* dq is written; dk and dv (B / kv_group entries) are written with the sum over the
     * kv_group query entries that share each key/value entry. */
    void (*attention_backward)(vd_backend *be, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, int B, int Lq,
                               int Lk, int heads, int d, int kv_group);
    /* dx (B, C, H, W) = sum of dy (B, C, 2H, 2W) over each 2x2 block. */
    void (*upsample2x_backward)(vd_backend *be, float *dx, const float *dy, int B, int C, int H,
                                int W);
    /* Splits dy (B, ca + cb, S) into da (B, ca, S) and db (B, cb, S). */
    void (*concat_channels_backward)(vd_backend *be, float *da, float *db, const float *dy,
                                     int ca, int cb, int B, int S);
    /* dx[i] += sum over o of dy[o, i] (the gradient of add_broadcast's table). */
    void (*add_broadcast_backward)(vd_backend *be, float *dx, const float *dy, size_t outer,
                                   size_t inner);
    /* dbias(N, C)[n,c] += sum over t, s of dy(N, T, C, S)[n,t,c,s]. */
    void (*add_channel_bias_backward)(vd_backend *be, float *dbias, const float *dy, int N, int T,
                                      int C, int S);
    /* dtable[ids[i]] += dy[i] for i < n (rows may repeat). */
    void (*embedding_backward)(vd_backend *be, float *dtable, const float *dy, const int32_t *ids,
                               int n, int dim);

    /* ---- training ---- */

    /* Weighted mean squared error over n values: *loss (host) = mean(weight (pred - target)^2)
     * and dpred = 2 weight (pred - target) / n * scale; weight NULL weighs every value 1. */
    void (*mse_loss)(vd_backend *be, float *loss, float *dpred, const float *pred,
                     const float *target, const float *weight, size_t n, float scale);
    /* Sum of squares of x (n values) into *out (host), for gradient norms. */
    void (*sum_squares)(vd_backend *be, double *out, const float *x, size_t n);
    /* One AdamW step over n parameters: m, v are the moments, step counts from 1; the gradient
     * is multiplied by grad_scale first (clipping); weight decay is decoupled. */
    void (*adamw)(vd_backend *be, float *param, const float *grad, float *m, float *v, size_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int step,
                  float grad_scale);
};

/* Constructors. The CPU backends always exist; vd_backend_cuda returns NULL (with a message
 * in err) when the build has no CUDA or no usable device is present. */
vd_backend *vd_backend_cpu(void);           /* the fast path: OpenBLAS and OpenMP */
vd_backend *vd_backend_cpu_reference(void); /* plain loops: the truth for every other backend */
vd_backend *vd_backend_cuda(int device, char *err, size_t errlen);

#endif
