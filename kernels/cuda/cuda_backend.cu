/* cuda_backend.cu: the CUDA backend's constructor, memory functions and teardown. Tensors live
 * in device memory from cudaMalloc; every transfer and op runs in order on the backend's own
 * stream, and download synchronises it so that the host sees the result. Declared constant ranges
 * are tracked here, and the bf16 weight copies made from them (cuda_ops.cu) are dropped when
 * their range is released or declared again. Recordings (backend.h) are CUDA graphs captured
 * from the stream. */
#include "cuda_internal.h"

#include <stdio.h>

/* cuBLAS's workspace: the size its documentation asks for on Hopper, enough for older cards */
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)

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

bool cuda_is_constant(const cuda_state *st, const void *ptr, size_t bytes)
{
    uintptr_t begin = (uintptr_t)ptr;
    for (int i = 0; i < st->constant_count; i++)
        if (begin >= st->constants[i].begin && begin + bytes <= st->constants[i].end) return true;
    return false;
}

static bool in_range(const void *ptr, uintptr_t begin, uintptr_t end)
{
    return ptr && (uintptr_t)ptr >= begin && (uintptr_t)ptr < end;
}

void cuda_drop_weight_copies(cuda_state *st, uintptr_t begin, uintptr_t end)
{
    int kept = 0;
    for (int i = 0; i < st->weight_copy_count; i++) {
        cuda_weight_copy *c = &st->weight_copies[i];
        if (in_range(c->w, begin, end) || in_range(c->b, begin, end)) {
            CUDA_CHECK(cudaFree(c->copy)); /* waits for queued ops that read it */
            st->weight_copy_drops++;
        } else
            st->weight_copies[kept++] = *c;
    }
    st->weight_copy_count = kept;
}

/* Forgets the declared ranges that overlap [begin, end), with their copies. */
static void forget_constants(cuda_state *st, uintptr_t begin, uintptr_t end)
{
    int kept = 0;
    for (int i = 0; i < st->constant_count; i++) {
        cuda_constant_range r = st->constants[i];
        if (r.begin < end && begin < r.end)
            cuda_drop_weight_copies(st, r.begin, r.end);
        else
            st->constants[kept++] = r;
    }
    st->constant_count = kept;
}

static void cuda_memory_info(vd_backend *be, size_t *used, size_t *total)
{
    (void)be;
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) free_bytes = total_bytes = 0;
    *used = total_bytes - free_bytes;
    *total = total_bytes;
}

static void cuda_declare_constant(vd_backend *be, const void *ptr, size_t bytes)
{
    cuda_state *st = cuda_state_of(be);
    uintptr_t begin = (uintptr_t)ptr, end = begin + bytes;
    forget_constants(st, begin, end);
    if (!ptr || !bytes) return;
    if (st->constant_count == st->constant_cap) {
        st->constant_cap = st->constant_cap ? 2 * st->constant_cap : 8;
        st->constants = (cuda_constant_range *)vd_realloc(st->constants, (size_t)st->constant_cap * sizeof *st->constants);
    }
    st->constants[st->constant_count++] = (cuda_constant_range){begin, end};
}

static void *cuda_alloc(vd_backend *be, size_t bytes)
{
    void *ptr = NULL;
    CUDA_CHECK(cudaMalloc(&ptr, bytes ? bytes : 1));
    /* A declared range inside a buffer released as a whole is stale by now. */
    forget_constants(cuda_state_of(be), (uintptr_t)ptr, (uintptr_t)ptr + (bytes ? bytes : 1));
    return ptr;
}

static void cuda_release(vd_backend *be, void *ptr)
{
    cuda_state *st = cuda_state_of(be);
    if (!ptr) return;
    forget_constants(st, (uintptr_t)ptr, (uintptr_t)ptr + 1);
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

static void cuda_activate(vd_backend *be) { CUDA_CHECK(cudaSetDevice(cuda_state_of(be)->device)); }

static void cuda_destroy(vd_backend *be)
{
    if (!be) return;
    cuda_activate(be);
    cuda_state *st = cuda_state_of(be);
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    cuda_scratch_free(&st->workspace);
    cuda_scratch_free(&st->staging_input);
    cuda_scratch_free(&st->staging_output);
    cuda_scratch_free(&st->staging_weight);
    forget_constants(st, 0, UINTPTR_MAX);
    free(st->constants);
    free(st->weight_copies);
#ifdef VD_HAVE_CUDNN
    free(st->conv_plans);
    CUDNN_CHECK(cudnnDestroy(st->cudnn));
#endif
    CUBLAS_CHECK(cublasDestroy(st->cublas));
    CUDA_CHECK(cudaFree(st->cublas_workspace));
    CUDA_CHECK(cudaStreamDestroy(st->stream));
    free(st);
    free(be);
}

/* ---- recordings: CUDA graphs captured from the backend's stream ---- */

/* A captured graph and the backend's own buffers it was captured on. */
typedef struct {
    cudaGraphExec_t exec;
    void *workspace, *staging_input, *staging_output, *staging_weight;
    unsigned weight_copy_drops;
} cuda_recording;

static int cuda_record_begin(vd_backend *be)
{
    /* relaxed: a first-time cuBLAS or cuDNN call may still allocate memory while capturing */
    cudaError_t status = cudaStreamBeginCapture(cuda_state_of(be)->stream, cudaStreamCaptureModeRelaxed);
    if (status == cudaSuccess) return 0;
    VD_LOG(VD_LOG_WARN, "cannot record on the CUDA stream: %s", cudaGetErrorString(status));
    return -1;
}

static void *cuda_record_end(vd_backend *be)
{
    cuda_state *st = cuda_state_of(be);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t status = cudaStreamEndCapture(st->stream, &graph);
    if (status == cudaSuccess) status = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) CUDA_CHECK(cudaGraphDestroy(graph));
    if (status != cudaSuccess) {
        (void)cudaGetLastError(); /* the failure is reported here, not at the next launch */
        VD_LOG(VD_LOG_WARN, "recording on the CUDA stream failed: %s", cudaGetErrorString(status));
        return NULL;
    }
    cuda_recording *r = (cuda_recording *)vd_malloc(sizeof *r);
    *r = (cuda_recording){exec, st->workspace.ptr, st->staging_input.ptr, st->staging_output.ptr,
                          st->staging_weight.ptr, st->weight_copy_drops};
    return r;
}

static int cuda_replay(vd_backend *be, void *recording)
{
    cuda_state *st = cuda_state_of(be);
    const cuda_recording *r = (const cuda_recording *)recording;
    /* The scratch buffers only grow, so one at the same address still holds what r reaches. */
    if (r->workspace != st->workspace.ptr || r->staging_input != st->staging_input.ptr ||
        r->staging_output != st->staging_output.ptr || r->staging_weight != st->staging_weight.ptr ||
        r->weight_copy_drops != st->weight_copy_drops)
        return -1;
    CUDA_CHECK(cudaGraphLaunch(r->exec, st->stream));
    return 0;
}

static void cuda_release_recording(vd_backend *be, void *recording)
{
    cuda_recording *r = (cuda_recording *)recording;
    if (!r) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_state_of(be)->stream));
    CUDA_CHECK(cudaGraphExecDestroy(r->exec));
    free(r);
}

/* Formats a failure into err and returns NULL, undoing whatever was set up so far. */
static vd_backend *cuda_fail(cuda_state *st, char *err, size_t errlen, const char *what,
                             const char *why)
{
    if (err && errlen) snprintf(err, errlen, "CUDA backend: %s: %s", what, why);
    if (st) {
        if (st->cublas) cublasDestroy(st->cublas);
        if (st->cublas_workspace) cudaFree(st->cublas_workspace);
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
    st->device = device;
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
    /* set once, so that no recording makes cuBLAS allocate one */
    status = cudaMalloc(&st->cublas_workspace, CUBLAS_WORKSPACE_BYTES);
    if (status != cudaSuccess) return cuda_fail(st, err, errlen, "cuBLAS workspace", cudaGetErrorString(status));
    CUBLAS_CHECK(cublasSetWorkspace(st->cublas, st->cublas_workspace, CUBLAS_WORKSPACE_BYTES));
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
    be->declare_constant = cuda_declare_constant;
    be->memory_info = cuda_memory_info;
    be->activate = cuda_activate;
    be->record_begin = cuda_record_begin;
    be->record_end = cuda_record_end;
    be->replay = cuda_replay;
    be->release_recording = cuda_release_recording;
    cuda_set_ops(be);
    cuda_set_backward_ops(be);

    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    VD_LOG(VD_LOG_INFO, "CUDA backend on device %d: %s, %d SMs, %.1f GiB", device, prop.name,
           st->sm_count, prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return be;
}
