/* cuda_internal.h: what cuda_backend.cu (memory, setup) and cuda_ops.cu (the ops) share: checked
 * wrappers for CUDA, cuBLAS and cuDNN calls that log file:line and abort (the backend's calls fail
 * only on programming errors or a lost device, so they are treated like startup failures), the
 * launch check that follows every kernel, and the backend's private state. */
#ifndef VD_CUDA_INTERNAL_H
#define VD_CUDA_INTERNAL_H

#include <cublas_v2.h>
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

/* The convolution algorithm cuDNN chose for one shape, remembered so that the heuristics run
 * once per shape. */
typedef struct {
    int B, ci, H, W, co, k, stride;
    int algo;
    size_t workspace_bytes;
} cuda_conv_plan;

#define CUDA_CONV_PLAN_SLOTS 128

typedef struct {
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t cublas;
#ifdef VD_HAVE_CUDNN
    cudnnHandle_t cudnn;
    cuda_conv_plan conv_plans[CUDA_CONV_PLAN_SLOTS];
    int conv_plan_count;
#endif
    cuda_scratch workspace;      /* cuDNN workspace, im2col columns, attention scores */
    cuda_scratch staging_input;  /* bf16 copies of activations for matrix products */
    cuda_scratch staging_weight; /* bf16 copies of weights for matrix products */
} cuda_state;

static inline cuda_state *cuda_state_of(vd_backend *be)
{
    return (cuda_state *)be->impl;
}

/* Makes s hold at least bytes; may free and reallocate (which synchronises the device). */
void *cuda_scratch_reserve(cuda_scratch *s, size_t bytes);
void cuda_scratch_free(cuda_scratch *s);

/* Fills the op members of be (cuda_ops.cu). */
void cuda_set_ops(vd_backend *be);

/* Checks that this build carries code the device can run; returns a cudaError_t. */
cudaError_t cuda_probe_kernels(void);

#endif
