/* cuda_internal.h: what cuda_backend.cu (memory, setup) and cuda_ops.cu (the ops) share: checked
 * wrappers for CUDA, cuBLAS and cuDNN calls that log file:line and abort (the backend's calls fail
 * only on programming errors or a lost device, so they are treated like startup failures), the
 * launch check that follows every kernel, the backend's private state and its cache of bf16
 * weight copies. */
#ifndef VD_CUDA_INTERNAL_H
#define VD_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#ifdef VD_HAVE_CUDNN
#include <cudnn.h>
#endif

extern "C" {
#include "backend.h"
#include "common.h"
}

#define CUDA_CHECK(call)                                                                     \
    do {                                                                                     \
        cudaError_t cuda_status_ = (call);                                                   \
        if (cuda_status_ != cudaSuccess) {                                                   \
            VD_LOG(VD_LOG_ERROR, "%s failed: %s", #call, cudaGetErrorString(cuda_status_)); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define CUBLAS_CHECK(call)                                                                     \
    do {                                                                                       \
        cublasStatus_t cublas_status_ = (call);                                                \
        if (cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                         \
            VD_LOG(VD_LOG_ERROR, "%s failed: %s", #call, cublasGetStatusString(cublas_status_)); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#ifdef VD_HAVE_CUDNN
#define CUDNN_CHECK(call)                                                                     \
    do {                                                                                      \
        cudnnStatus_t cudnn_status_ = (call);                                                 \
        if (cudnn_status_ != CUDNN_STATUS_SUCCESS) {                                          \
            VD_LOG(VD_LOG_ERROR, "%s failed: %s", #call, cudnnGetErrorString(cudnn_status_)); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)
#endif

/* After every kernel launch: catches bad launch configurations at the launch site. */
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

/* A device buffer that only grows; its contents do not survive a call to scratch_reserve. */
typedef struct {
    void *ptr;
    size_t bytes;
} cuda_scratch;

/* The convolution algorithm cuDNN chose for one shape and precision, remembered so that the
 * choice runs once per shape. In bf16 the channel counts are the padded ones of the NHWC tensors. */
typedef struct {
    int B, ci, H, W, co, kh, kw, stride, bf16;
    int algo;      /* -1: cuDNN offers none */
    int math_type; /* the cudnnMathType_t the algorithm was measured with */
    size_t workspace_bytes;
} cuda_conv_plan;

/* A range the caller declared read-only (backend.h, declare_constant). */
typedef struct {
    uintptr_t begin, end;
} cuda_constant_range;

/* How a bf16 weight copy is laid out:
 *   ROWS: w(rows, cols) with each row padded with zeros to `width` values; with a bias b, value
 *         `cols` of row r holds b[r] (a linear layer's bias as one more input column);
 *   NHWC: conv w(co, ci, taps) as (co padded to a multiple of 8, taps, ci padded to `width`) for
 *         cuDNN (taps: k*k for conv2d, 3 for temporal_conv). */
typedef enum { CUDA_WEIGHT_ROWS, CUDA_WEIGHT_NHWC } cuda_weight_layout;

/* One cached bf16 copy of a weight (and bias) lying in a declared range. */
typedef struct {
    const float *w, *b;
    cuda_weight_layout layout;
    int rows, cols, width, taps;
    __nv_bfloat16 *copy;
} cuda_weight_copy;

typedef struct {
    int device; /* the CUDA ordinal */
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t cublas;
#ifdef VD_HAVE_CUDNN
    cudnnHandle_t cudnn;
    cuda_conv_plan *conv_plans; /* every shape seen, kept: a server meets each batch size often */
    int conv_plan_count, conv_plan_cap;
#endif
    cuda_scratch workspace;      /* cuDNN workspace, im2col columns, attention scores and keys */
    cuda_scratch staging_input;  /* bf16 copies of activations for matrix products */
    cuda_scratch staging_output; /* bf16 convolution outputs before conversion to fp32 */
    cuda_scratch staging_weight; /* bf16 copies of weights outside declared ranges */
    cuda_constant_range *constants;
    int constant_count, constant_cap;
    cuda_weight_copy *weight_copies;
    int weight_copy_count, weight_copy_cap;
    unsigned weight_copy_drops; /* times cached copies were freed: recordings made before are stale */
    void *cublas_workspace;     /* cuBLAS's, set once, so that a recording never makes it allocate one */
} cuda_state;

static inline cuda_state *cuda_state_of(vd_backend *be)
{
    return (cuda_state *)be->impl;
}

/* Makes s hold at least bytes; may free and reallocate (which synchronises the device). */
void *cuda_scratch_reserve(cuda_scratch *s, size_t bytes);
void cuda_scratch_free(cuda_scratch *s);

/* True when [ptr, ptr + bytes) lies inside one declared range. */
bool cuda_is_constant(const cuda_state *st, const void *ptr, size_t bytes);

/* Frees the cached weight copies whose weight or bias lies in [begin, end). */
void cuda_drop_weight_copies(cuda_state *st, uintptr_t begin, uintptr_t end);

/* Fills the op members of be (cuda_ops.cu). */
void cuda_set_ops(vd_backend *be);

/* Fills the backward and training members of be (cuda_backward.cu). */
void cuda_set_backward_ops(vd_backend *be);

/* Softmax over each of `rows` rows of length n, in place (cuda_ops.cu). */
void cuda_softmax_rows(cuda_state *st, float *x, size_t rows, int n);

/* Checks that this build carries code the device can run; returns a cudaError_t. */
cudaError_t cuda_probe_kernels(void);

/* ---- launch helpers shared by cuda_ops.cu and cuda_backward.cu ---- */

/* Largest temporary buffer (im2col columns, bf16 staging of activations, attention scores and
 * keys) one chunk of an op may use; bigger ops are split into chunks of this size. */
#define CHUNK_BYTES ((size_t)256 << 20)

#define THREADS 256

#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static inline bool use_bf16(const vd_backend *be)
{
    return be->precision == VD_PRECISION_BF16;
}

/* Blocks for a grid-stride loop over n items. */
static inline unsigned grid_for(const cuda_state *st, size_t n)
{
    size_t blocks = (n + THREADS - 1) / THREADS;
    size_t cap = (size_t)st->sm_count * 32;
    if (blocks > cap) blocks = cap;
    return blocks ? (unsigned)blocks : 1u;
}

/* Mean and 1/sqrt(variance + eps) of one row xr (C values), computed by the 32 lanes of a warp
 * (variance about the mean, in two passes); every lane gets both. */
static __device__ inline void warp_row_stats(const float *xr, int C, float eps, int lane, float *mean,
                                             float *inv_std)
{
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) sum += xr[c];
    for (int off = 16; off; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    float m = sum / C, sum_sq = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float centred = xr[c] - m;
        sum_sq += centred * centred;
    }
    for (int off = 16; off; off /= 2) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, off);
    *mean = m;
    *inv_std = rsqrtf(sum_sq / C + eps);
}

/* Sums a (double) over the block; every thread gets the total. blockDim.x is THREADS. */
static __device__ inline double block_sum(double value, double *shared /* THREADS / 32 */)
{
    for (int off = 16; off; off /= 2) value += __shfl_xor_sync(0xffffffffu, value, off);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); /* shared may still be read from a previous call */
    if (lane == 0) shared[warp] = value;
    __syncthreads();
    double total = 0.0;
    for (int w = 0; w < (int)(blockDim.x / 32); w++) total += shared[w];
    return total;
}

#endif
