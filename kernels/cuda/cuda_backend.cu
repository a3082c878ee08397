/* cuda_backend.cu: the CUDA backend's constructor, memory functions and teardown. Tensors live
 * in device memory from cudaMalloc; every transfer and op runs in order on the backend's own
 * stream, and download synchronises it so that the host sees the result. */
#include "cuda_internal.h"

#include <stdio.h>

void *cuda_scratch_reserve(cuda_scratch *s, size_t bytes)
{
    if (bytes <= s->bytes) return s->ptr;
    CUDA_CHECK(cudaFree(s->ptr)); /* synchronises: no queued op still reads the old buffer */
    s->ptr = NULL;
    s->bytes = 0;
    CUDA_CHECK(cudaMalloc(&s->ptr, bytes));
    s->bytes = bytes;
    return s->ptr;
}

void cuda_scratch_free(cuda_scratch *s)
{
    CUDA_CHECK(cudaFree(s->ptr));
    s->ptr = NULL;
    s->bytes = 0;
}

static void *cuda_alloc(vd_backend *be, size_t bytes)
{
    (void)be;
    void *ptr = NULL;
    CUDA_CHECK(cudaMalloc(&ptr, bytes ? bytes : 1));
    return ptr;
}

static void cuda_release(vd_backend *be, void *ptr)
{
    cuda_state *st = cuda_state_of(be);
    if (!ptr) return;
    /* cudaFree waits for the device; queued ops on our stream that use ptr finish first. */
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    CUDA_CHECK(cudaFree(ptr));
}

static void cuda_upload(vd_backend *be, void *dst, const void *host_src, size_t bytes)
{
    if (!bytes) return;
    /* From pageable memory this returns once the source has been staged, so the caller may
     * reuse host_src immediately. */
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cuda_state_of(be)->stream));
}

static void cuda_download(vd_backend *be, void *host_dst, const void *src, size_t bytes)
{
    cuda_state *st = cuda_state_of(be);
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, st->stream));
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
}

static void cuda_copy(vd_backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes || dst == src) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_state_of(be)->stream));
}

static void cuda_zero(vd_backend *be, void *dst, size_t bytes)
{
    if (!bytes) return;
    CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, cuda_state_of(be)->stream));
}

static void cuda_synchronize(vd_backend *be)
{
    CUDA_CHECK(cudaStreamSynchronize(cuda_state_of(be)->stream));
}

static void cuda_destroy(vd_backend *be)
{
    if (!be) return;
    cuda_state *st = cuda_state_of(be);
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    cuda_scratch_free(&st->workspace);
    cuda_scratch_free(&st->staging_input);
    cuda_scratch_free(&st->staging_weight);
#ifdef VD_HAVE_CUDNN
    CUDNN_CHECK(cudnnDestroy(st->cudnn));
#endif
    CUBLAS_CHECK(cublasDestroy(st->cublas));
    CUDA_CHECK(cudaStreamDestroy(st->stream));
    free(st);
    free(be);
}

/* Formats a failure into err and returns NULL, undoing whatever was set up so far. */
static vd_backend *cuda_fail(cuda_state *st, char *err, size_t errlen, const char *what,
                             const char *why)
{
    if (err && errlen) snprintf(err, errlen, "CUDA backend: %s: %s", what, why);
    if (st) {
        if (st->cublas) cublasDestroy(st->cublas);
        if (st->stream) cudaStreamDestroy(st->stream);
        free(st);
    }
    return NULL;
}

extern "C" vd_backend *vd_backend_cuda(int device, char *err, size_t errlen)
{
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) return cuda_fail(NULL, err, errlen, "no usable device", cudaGetErrorString(status));
    if (count == 0) return cuda_fail(NULL, err, errlen, "no usable device", "no CUDA device present");
    if (device < 0 || device >= count) {
        char why[64];
        snprintf(why, sizeof why, "device %d requested, %d present", device, count);
        return cuda_fail(NULL, err, errlen, "no such device", why);
    }
    status = cudaSetDevice(device);
    if (status != cudaSuccess) return cuda_fail(NULL, err, errlen, "cudaSetDevice", cudaGetErrorString(status));
    status = cuda_probe_kernels();
    if (status != cudaSuccess) return cuda_fail(NULL, err, errlen, "kernels do not run on this device", cudaGetErrorString(status));

    cuda_state *st = (cuda_state *)vd_calloc(1, sizeof *st);
    status = cudaDeviceGetAttribute(&st->sm_count, cudaDevAttrMultiProcessorCount, device);
    if (status != cudaSuccess) return cuda_fail(st, err, errlen, "device attributes", cudaGetErrorString(status));
    status = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking);
    if (status != cudaSuccess) return cuda_fail(st, err, errlen, "cudaStreamCreate", cudaGetErrorString(status));
    cublasStatus_t blas_status = cublasCreate(&st->cublas);
    if (blas_status != CUBLAS_STATUS_SUCCESS) {
        st->cublas = NULL;
        return cuda_fail(st, err, errlen, "cublasCreate", cublasGetStatusString(blas_status));
    }
    CUBLAS_CHECK(cublasSetStream(st->cublas, st->stream));
    /* fp32 products stay true fp32 (no TF32); bf16 products ask for fp32 accumulation per call. */
    CUBLAS_CHECK(cublasSetMathMode(st->cublas, CUBLAS_DEFAULT_MATH));
#ifdef VD_HAVE_CUDNN
    cudnnStatus_t dnn_status = cudnnCreate(&st->cudnn);
    if (dnn_status != CUDNN_STATUS_SUCCESS) return cuda_fail(st, err, errlen, "cudnnCreate", cudnnGetErrorString(dnn_status));
    CUDNN_CHECK(cudnnSetStream(st->cudnn, st->stream));
#endif

    vd_backend *be = (vd_backend *)vd_calloc(1, sizeof *be);
    be->name = "cuda";
    be->precision = VD_PRECISION_F32;
    be->impl = st;
    be->alloc = cuda_alloc;
    be->release = cuda_release;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->copy = cuda_copy;
    be->zero = cuda_zero;
    be->synchronize = cuda_synchronize;
    be->destroy = cuda_destroy;
    cuda_set_ops(be);

    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    VD_LOG(VD_LOG_INFO, "CUDA backend on device %d: %s, %d SMs, %.1f GiB", device, prop.name,
           st->sm_count, prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return be;
}
