/* cuda_ops.cu: every op of backend.h on the GPU. Storage is fp32. Matrix products go through
 * cuBLAS (linear, convolutions as im2col + GEMM), cuDNN (convolutions, when built with it) or the
 * fused attention kernels below; everything else is a small kernel of its own.
 *
 * In VD_PRECISION_F32 every product is true fp32 (no TF32), so results match the CPU reference to
 * rounding. In VD_PRECISION_BF16 the operands of linear, conv2d, temporal_conv and attention are
 * rounded to bf16 and products accumulate in fp32; outputs stay fp32. Weights in a declared
 * constant range are converted once and cached; activations are converted into staging buffers
 * (NHWC for cuDNN's tensor-core convolutions, whose bf16 output is converted back with the bias
 * added), and a linear layer's bias rides in its product as one more input column. */
#include "cuda_internal.h"
#include "random.h"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>


/* True when all three pointers are 16-byte aligned (float4 access). */
static bool aligned16(const void *a, const void *b, const void *c)
{
    return ((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) % 16 == 0;
}


/* ---------------------------------------------------------------------------------------------
 * bf16 staging of activations and weights */

static int round_up8(int n)
{
    return (n + 7) / 8 * 8;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi)
{
    __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&pair);
}

/* dst(rows, width) in bf16 from src(rows, cols); width is a multiple of 8 and at least cols. The
 * values past cols are zero, except that with `extra` set, value `cols` of row r is
 * extra_column[r] (or 1 when extra_column is NULL): a bias folded into a matrix product as one
 * more column of the weights, met by a column of ones in the inputs. One thread per 8 outputs. */
__global__ void rows_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t rows, int cols,
                                    int width, int extra, const float *extra_column)
{
    int groups = width / 8;
    bool vector_loads = cols % 4 == 0 && (uintptr_t)src % 16 == 0;
    GRID_STRIDE(i, rows * groups)
    {
        size_t r = i / groups;
        int c0 = (int)(i % groups) * 8;
        const float *row = src + r * cols;
        float v[8];
        if (vector_loads && c0 + 8 <= cols) {
            float4 a = *reinterpret_cast<const float4 *>(row + c0);
            float4 b = *reinterpret_cast<const float4 *>(row + c0 + 4);
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) {
                int c = c0 + e;
                v[e] = c < cols ? row[c] : (extra && c == cols ? (extra_column ? extra_column[r] : 1.0f) : 0.0f);
            }
        }
        uint4 packed = {pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]), pack_bf16x2(v[4], v[5]),
                        pack_bf16x2(v[6], v[7])};
        *reinterpret_cast<uint4 *>(dst + r * width + c0) = packed;
    }
}

/* Converts src(rows, cols) into buf as bf16 rows of `width` (see rows_to_bf16_kernel). */
static __nv_bfloat16 *stage_rows_bf16(cuda_state *st, void *buf, const float *src, size_t rows,
                                      int cols, int width, int extra, const float *extra_column)
{
    __nv_bfloat16 *dst = (__nv_bfloat16 *)buf;
    size_t n = rows * (width / 8);
    if (!n) return dst;
    rows_to_bf16_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(dst, src, rows, cols, width, extra, extra_column);
    CUDA_LAUNCH_CHECK();
    return dst;
}

/* w(co, ci, taps) -> dst(co_pad, taps, ci_pad) in bf16, zeros in the padding. */
__global__ void conv_weight_nhwc_kernel(__nv_bfloat16 *dst, const float *w, int co, int ci, int taps,
                                        int co_pad, int ci_pad)
{
    GRID_STRIDE(i, (size_t)co_pad * taps * ci_pad)
    {
        int c = (int)(i % ci_pad);
        size_t rest = i / ci_pad;
        int tap = (int)(rest % taps);
        int o = (int)(rest / taps);
        float v = o < co && c < ci ? w[((size_t)o * ci + c) * taps + tap] : 0.0f;
        dst[i] = __float2bfloat16_rn(v);
    }
}

/* A bf16 copy of weight w (with bias b for CUDA_WEIGHT_ROWS, may be NULL) in the given layout
 * (cuda_internal.h). rows, cols: w's matrix shape (for NHWC, co and ci); taps: the kernel taps
 * for NHWC. Weights inside a declared constant range are converted once and kept; others are
 * converted on every call into the weight staging buffer. */
static const __nv_bfloat16 *weight_bf16(cuda_state *st, cuda_weight_layout layout, const float *w,
                                        const float *b, int rows, int cols, int width, int taps)
{
    bool nhwc = layout == CUDA_WEIGHT_NHWC;
    size_t source_floats = nhwc ? (size_t)rows * cols * taps : (size_t)rows * cols;
    size_t count = nhwc ? (size_t)round_up8(rows) * taps * width : (size_t)rows * width;
    bool cached = cuda_is_constant(st, w, source_floats * sizeof(float)) &&
                  (!b || cuda_is_constant(st, b, (size_t)rows * sizeof(float)));
    if (cached) {
        for (int i = 0; i < st->weight_copy_count; i++) {
            const cuda_weight_copy *c = &st->weight_copies[i];
            if (c->w == w && c->b == b && c->layout == layout && c->rows == rows && c->cols == cols &&
                c->width == width && c->taps == taps)
                return c->copy;
        }
    }
    __nv_bfloat16 *dst;
    if (cached) CUDA_CHECK(cudaMalloc(&dst, count * sizeof(__nv_bfloat16)));
    else dst = (__nv_bfloat16 *)cuda_scratch_reserve(&st->staging_weight, count * sizeof(__nv_bfloat16));
    if (nhwc) {
        conv_weight_nhwc_kernel<<<grid_for(st, count), THREADS, 0, st->stream>>>(dst, w, rows, cols, taps,
                                                                                  round_up8(rows), width);
        CUDA_LAUNCH_CHECK();
    } else {
        stage_rows_bf16(st, dst, w, (size_t)rows, cols, width, b != NULL, b);
    }
    if (cached) {
        if (st->weight_copy_count == st->weight_copy_cap) {
            st->weight_copy_cap = st->weight_copy_cap ? 2 * st->weight_copy_cap : 256;
            st->weight_copies = (cuda_weight_copy *)vd_realloc(
                st->weight_copies, (size_t)st->weight_copy_cap * sizeof *st->weight_copies);
        }
        st->weight_copies[st->weight_copy_count++] = (cuda_weight_copy){w, b, layout, rows, cols, width, taps, dst};
    }
    return dst;
}

/* ---------------------------------------------------------------------------------------------
 * matrix products */

/* Column-major C(m, n) = alpha * op(A)(m, k) * op(B)(k, n) + beta * C, over `batch` matrices
 * spaced by the strides (0 shares one matrix). A and B are bf16 when bf16, else fp32; C is fp32;
 * accumulation is fp32 without TF32 either way. */
static void gemm(cuda_state *st, bool bf16, cublasOperation_t op_a, cublasOperation_t op_b, int m,
                 int n, int k, float alpha, const void *A, int lda, long long stride_a,
                 const void *B, int ldb, long long stride_b, float beta, float *C, int ldc,
                 long long stride_c, int batch)
{
    cudaDataType_t operand_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    if (batch == 1)
        CUBLAS_CHECK(cublasGemmEx(st->cublas, op_a, op_b, m, n, k, &alpha, A, operand_type, lda, B,
                                  operand_type, ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            st->cublas, op_a, op_b, m, n, k, &alpha, A, operand_type, lda, stride_a, B,
            operand_type, ldb, stride_b, &beta, C, CUDA_R_32F, ldc, stride_c, batch,
            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* ---------------------------------------------------------------------------------------------
 * broadcast adds (also used for the biases of linear and conv) */

/* y(outer, inner) += x(inner). */
__global__ void add_broadcast_kernel(float *y, const float *x, size_t outer, size_t inner)
{
    GRID_STRIDE(i, outer * inner) y[i] += x[i % inner];
}

/* y(N, T, C, S) += bias(N, C). */
__global__ void add_channel_bias_kernel(float *y, const float *bias, int N, int T, int C, int S)
{
    size_t per_video = (size_t)T * C * S;
    GRID_STRIDE(i, (size_t)N * per_video)
    {
        size_t n = i / per_video;
        int c = (int)((i / S) % C);
        y[i] += bias[n * C + c];
    }
}

static void launch_add_broadcast(cuda_state *st, float *y, const float *x, size_t outer, size_t inner)
{
    size_t n = outer * inner;
    if (!n) return;
    add_broadcast_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(y, x, outer, inner);
    CUDA_LAUNCH_CHECK();
}

static void launch_add_channel_bias(cuda_state *st, float *y, const float *bias, int N, int T, int C, int S)
{
    size_t n = (size_t)N * T * C * S;
    if (!n) return;
    add_channel_bias_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(y, bias, N, T, C, S);
    CUDA_LAUNCH_CHECK();
}

static void cuda_add_broadcast(vd_backend *be, float *y, const float *x, size_t outer, size_t inner)
{
    launch_add_broadcast(cuda_state_of(be), y, x, outer, inner);
}

static void cuda_add_channel_bias(vd_backend *be, float *y, const float *bias, int N, int T, int C, int S)
{
    launch_add_channel_bias(cuda_state_of(be), y, bias, N, T, C, S);
}

/* ---------------------------------------------------------------------------------------------
 * linear: y(M, out) = x(M, in) w(out, in)^T + b(out) */

static void cuda_linear(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                        int M, int in, int out)
{
    cuda_state *st = cuda_state_of(be);
    if (M <= 0 || out <= 0) return;
    /* Row-major y(M, out) is column-major y^T(out, M) = op_T(w as col-major (in, out)) * x^T. */
    if (!use_bf16(be)) {
        gemm(st, false, CUBLAS_OP_T, CUBLAS_OP_N, out, M, in, 1.0f, w, in, 0, x, in, 0, 0.0f, y,
             out, 0, 1);
        if (b) launch_add_broadcast(st, y, b, (size_t)M, (size_t)out);
        return;
    }
    /* The bias rides in the product: one more weight column, met by a column of ones in x. Rows
     * are padded to a multiple of 8 values (16 bytes) for the tensor cores. */
    int width = round_up8(in + (b ? 1 : 0));
    const __nv_bfloat16 *w16 = weight_bf16(st, CUDA_WEIGHT_ROWS, w, b, out, in, width, 0);
    size_t rows_per_chunk = CHUNK_BYTES / ((size_t)width * sizeof(__nv_bfloat16));
    if (rows_per_chunk < 1) rows_per_chunk = 1;
    if (rows_per_chunk > (size_t)M) rows_per_chunk = (size_t)M;
    void *buf = cuda_scratch_reserve(&st->staging_input, rows_per_chunk * width * sizeof(__nv_bfloat16));
    for (size_t row0 = 0; row0 < (size_t)M; row0 += rows_per_chunk) {
        int rows = (int)((size_t)M - row0 < rows_per_chunk ? (size_t)M - row0 : rows_per_chunk);
        const __nv_bfloat16 *x16 = stage_rows_bf16(st, buf, x + row0 * in, (size_t)rows, in, width, b != NULL, NULL);
        gemm(st, true, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, width, 1.0f, w16, width, 0, x16, width, 0,
             0.0f, y + row0 * out, out, 0, 1);
    }
}

/* ---------------------------------------------------------------------------------------------
 * convolutions as im2col + GEMM */

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

/* cols(images, ci*k*k, Ho*Wo) for images [image0, image0 + images) of x(B, ci, H, W); row
 * (i*k + ky)*k + kx holds input channel i shifted by (ky - k/2, kx - k/2), zero outside. */
template <typename T>
__global__ void im2col_kernel(T *cols, const float *x, int image0, int images, int ci, int H,
                              int W, int k, int stride, int Ho, int Wo)
{
    int pad = k / 2;
    size_t out_pixels = (size_t)Ho * Wo;
    size_t rows = (size_t)ci * k * k;
    GRID_STRIDE(idx, (size_t)images * rows * out_pixels)
    {
        size_t pixel = idx % out_pixels;
        size_t row = (idx / out_pixels) % rows;
        size_t image = idx / (out_pixels * rows) + image0;
        int oy = (int)(pixel / Wo), ox = (int)(pixel % Wo);
        int kx = (int)(row % k), ky = (int)((row / k) % k), i = (int)(row / ((size_t)k * k));
        int iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
        float v = 0.0f;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[((image * ci + i) * H + iy) * W + ix];
        cols[idx] = from_float<T>(v);
    }
}

/* cols(frames, ci*3, S) for frames [frame0, frame0 + frames) of x(N, T, ci, S); row i*3 + j holds
 * channel i of frame t + j - 1 of the same video, zero outside the video. */
template <typename T>
__global__ void temporal_im2col_kernel(T *cols, const float *x, int frame0, int frames, int T_,
                                       int ci, int S)
{
    size_t rows = (size_t)ci * 3;
    GRID_STRIDE(idx, (size_t)frames * rows * S)
    {
        size_t s = idx % S;
        size_t row = (idx / S) % rows;
        size_t frame = idx / ((size_t)S * rows) + frame0;
        int j = (int)(row % 3), i = (int)(row / 3);
        int t = (int)(frame % T_) + j - 1;
        float v = 0.0f;
        if (t >= 0 && t < T_) v = x[((frame + (size_t)(j - 1)) * ci + i) * S + s];
        cols[idx] = from_float<T>(v);
    }
}

/* The shared GEMM part of both convolutions: for each image b, y_b(co, P) = w(co, K) * cols_b(K, P)
 * where the columns come from make_cols(first image, count, buffer). Images go in chunks so that
 * the columns stay under CHUNK_BYTES. */
template <typename MakeCols>
static void conv_as_gemm(vd_backend *be, float *y, const float *w, int images, int co, int K,
                         int P, MakeCols make_cols)
{
    cuda_state *st = cuda_state_of(be);
    bool bf16 = use_bf16(be);
    size_t elem = bf16 ? sizeof(__nv_bfloat16) : sizeof(float);
    int ldw = bf16 ? round_up8(K) : K;
    const void *wmat = bf16 ? (const void *)weight_bf16(st, CUDA_WEIGHT_ROWS, w, NULL, co, K, ldw, 0)
                            : (const void *)w;
    size_t image_bytes = (size_t)K * P * elem;
    int per_chunk = (int)(CHUNK_BYTES / image_bytes);
    if (per_chunk < 1) per_chunk = 1;
    if (per_chunk > images) per_chunk = images;
    void *cols = cuda_scratch_reserve(&st->workspace, image_bytes * per_chunk);
    for (int image0 = 0; image0 < images; image0 += per_chunk) {
        int count = images - image0 < per_chunk ? images - image0 : per_chunk;
        make_cols(image0, count, cols);
        /* Row-major y_b(co, P) is column-major (P, co) = cols_b^T(P, K) * w^T(K, co). */
        gemm(st, bf16, CUBLAS_OP_N, CUBLAS_OP_N, P, co, K, 1.0f, cols, P, (long long)K * P, wmat,
             ldw, 0, 0.0f, y + (size_t)image0 * co * P, P, (long long)co * P, count);
    }
}

static void conv2d_im2col(vd_backend *be, float *y, const float *x, const float *w, int B, int ci,
                          int H, int W, int co, int k, int stride, int Ho, int Wo)
{
    cuda_state *st = cuda_state_of(be);
    bool bf16 = use_bf16(be);
    int K = ci * k * k, P = Ho * Wo;
    if (k == 1 && stride == 1 && !bf16) {
        /* A 1x1 convolution is already a GEMM over the input: no columns to build. */
        gemm(st, false, CUBLAS_OP_N, CUBLAS_OP_N, P, co, K, 1.0f, x, P, (long long)K * P, w, K, 0,
             0.0f, y, P, (long long)co * P, B);
        return;
    }
    conv_as_gemm(be, y, w, B, co, K, P, [&](int image0, int count, void *cols) {
        size_t n = (size_t)count * K * P;
        if (bf16)
            im2col_kernel<__nv_bfloat16><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                (__nv_bfloat16 *)cols, x, image0, count, ci, H, W, k, stride, Ho, Wo);
        else
            im2col_kernel<float><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                (float *)cols, x, image0, count, ci, H, W, k, stride, Ho, Wo);
        CUDA_LAUNCH_CHECK();
    });
}

#ifdef VD_HAVE_CUDNN
/* The algorithm for one shape: found in the plan cache, or chosen once. fp32 takes cuDNN's
 * heuristics among true-fp32 (FMA) algorithms; bf16 times the candidates (cudnnFind) with tensor
 * ops allowed. Timing can choose another algorithm in another process, so bf16 results differ in
 * their last bits from run to run; the heuristics' choice would not, but it makes a video 20 to 50%
 * slower (bench/RESULTS.md, "cuDNN's bf16 algorithm"). Returns NULL when cuDNN offers none. */
static const cuda_conv_plan *conv_plan(cuda_state *st, cudnnTensorDescriptor_t x_desc,
                                       cudnnFilterDescriptor_t w_desc,
                                       cudnnConvolutionDescriptor_t conv_desc,
                                       cudnnTensorDescriptor_t y_desc, const cuda_conv_plan *key)
{
    for (int i = 0; i < st->conv_plan_count; i++) {
        const cuda_conv_plan *p = &st->conv_plans[i];
        if (p->B == key->B && p->ci == key->ci && p->H == key->H && p->W == key->W &&
            p->co == key->co && p->kh == key->kh && p->kw == key->kw && p->stride == key->stride &&
            p->bf16 == key->bf16)
            return p->algo >= 0 ? p : NULL;
    }
    if (st->conv_plan_count == st->conv_plan_cap) {
        st->conv_plan_cap = st->conv_plan_cap ? 2 * st->conv_plan_cap : 64;
        st->conv_plans = (cuda_conv_plan *)vd_realloc(st->conv_plans, (size_t)st->conv_plan_cap * sizeof *st->conv_plans);
    }
    cuda_conv_plan *slot = &st->conv_plans[st->conv_plan_count++];
    *slot = *key;
    slot->algo = -1;
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int returned = 0;
    if (key->bf16)
        CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(st->cudnn, x_desc, w_desc, conv_desc, y_desc,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
    else
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(st->cudnn, x_desc, w_desc, conv_desc, y_desc,
                                                            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
    for (int i = 0; i < returned; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
        if (!key->bf16 && perf[i].mathType != CUDNN_FMA_MATH) continue;
        if (perf[i].memory > 4 * CHUNK_BYTES) continue;
        slot->algo = (int)perf[i].algo;
        slot->math_type = (int)perf[i].mathType;
        slot->workspace_bytes = perf[i].memory;
        return slot;
    }
    VD_LOG(VD_LOG_WARN, "cuDNN offers no %s algorithm for conv B=%d ci=%d %dx%d co=%d kernel %dx%d stride %d; using im2col",
           key->bf16 ? "bf16" : "fp32", key->B, key->ci, key->H, key->W, key->co, key->kh, key->kw, key->stride);
    return NULL;
}

/* One cuDNN convolution of `count` images with a kh x kw kernel, zero padding kh/2, kw/2: fp32
 * NCHW tensors, or bf16 NHWC ones (channel counts as stored, padded). Returns false, having done
 * nothing, when cuDNN has no algorithm. */
static bool cudnn_conv_forward(cuda_state *st, bool bf16, void *y, const void *x, const void *w,
                               int count, int ci, int H, int W, int co, int kh, int kw, int stride,
                               int Ho, int Wo)
{
    cudnnDataType_t type = bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    cudnnTensorFormat_t format = bf16 ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    cudnnTensorDescriptor_t x_desc, y_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t conv_desc;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&x_desc));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&y_desc));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&w_desc));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv_desc));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_desc, type, format, co, ci, kh, kw));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv_desc, kh / 2, kw / 2, stride, stride, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(conv_desc, bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(x_desc, format, type, count, ci, H, W));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(y_desc, format, type, count, co, Ho, Wo));
    cuda_conv_plan key = {count, ci, H, W, co, kh, kw, stride, bf16, -1, 0, 0};
    const cuda_conv_plan *plan = conv_plan(st, x_desc, w_desc, conv_desc, y_desc, &key);
    if (plan) {
        CUDNN_CHECK(cudnnSetConvolutionMathType(conv_desc, (cudnnMathType_t)plan->math_type));
        void *workspace = plan->workspace_bytes ? cuda_scratch_reserve(&st->workspace, plan->workspace_bytes) : NULL;
        const float one = 1.0f, zero = 0.0f;
        CUDNN_CHECK(cudnnConvolutionForward(st->cudnn, &one, x_desc, x, w_desc, w, conv_desc,
                                            (cudnnConvolutionFwdAlgo_t)plan->algo, workspace,
                                            plan->workspace_bytes, &zero, y_desc, y));
    }
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(conv_desc));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(w_desc));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(y_desc));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(x_desc));
    return plan != NULL;
}

/* The fp32 convolution through cuDNN in batches that keep every tensor under 2^31 elements (cuDNN
 * indexes with int); returns false, having done nothing, when cuDNN has no suitable algorithm. */
static bool conv2d_cudnn_f32(cuda_state *st, float *y, const float *x, const float *w, int B, int ci,
                             int H, int W, int co, int k, int stride, int Ho, int Wo)
{
    size_t per_image = (size_t)ci * H * W > (size_t)co * Ho * Wo ? (size_t)ci * H * W : (size_t)co * Ho * Wo;
    int images = (int)((size_t)INT32_MAX / per_image);
    if (images < 1) return false;
    if (images > B) images = B;
    for (int image0 = 0; image0 < B; image0 += images) {
        int count = B - image0 < images ? B - image0 : images;
        /* only the first batch can fail: later ones are the same or smaller */
        if (!cudnn_conv_forward(st, false, y + (size_t)image0 * co * Ho * Wo, x + (size_t)image0 * ci * H * W,
                                w, count, ci, H, W, co, k, k, stride, Ho, Wo))
            return false;
    }
    return true;
}

#define LAYOUT_TILE 32

/* dst(images, S, C_pad) in bf16 from src(images, C, S), channels past C zero: 32x32 tiles through
 * shared memory so that reads and writes are both coalesced. Block (32, 8); grid (S tiles,
 * C_pad tiles, up to 65535 image slices). */
__global__ void nchw_to_nhwc_bf16_kernel(__nv_bfloat16 *dst, const float *src, int C, int C_pad, int S,
                                         int images)
{
    __shared__ float tile[LAYOUT_TILE][LAYOUT_TILE + 1];
    int s0 = blockIdx.x * LAYOUT_TILE, c0 = blockIdx.y * LAYOUT_TILE;
    for (int image = blockIdx.z; image < images; image += gridDim.z) {
        const float *x = src + (size_t)image * C * S;
        __nv_bfloat16 *y = dst + (size_t)image * S * C_pad;
        for (int r = threadIdx.y; r < LAYOUT_TILE; r += blockDim.y) {
            int c = c0 + r, s = s0 + threadIdx.x;
            tile[r][threadIdx.x] = c < C && s < S ? x[(size_t)c * S + s] : 0.0f;
        }
        __syncthreads();
        for (int r = threadIdx.y; r < LAYOUT_TILE; r += blockDim.y) {
            int s = s0 + r, c = c0 + threadIdx.x;
            if (s < S && c < C_pad) y[(size_t)s * C_pad + c] = __float2bfloat16_rn(tile[threadIdx.x][r]);
        }
        __syncthreads();
    }
}

/* dst(images, C, S) = src(images, S, C_pad)[..., :C] in fp32, plus bias(C) when given; tiled as
 * above, grid (S tiles, C tiles, image slices). */
__global__ void nhwc_bf16_to_nchw_kernel(float *dst, const __nv_bfloat16 *src, const float *bias, int C,
                                         int C_pad, int S, int images)
{
    __shared__ float tile[LAYOUT_TILE][LAYOUT_TILE + 1];
    int s0 = blockIdx.x * LAYOUT_TILE, c0 = blockIdx.y * LAYOUT_TILE;
    for (int image = blockIdx.z; image < images; image += gridDim.z) {
        const __nv_bfloat16 *x = src + (size_t)image * S * C_pad;
        float *y = dst + (size_t)image * C * S;
        for (int r = threadIdx.y; r < LAYOUT_TILE; r += blockDim.y) {
            int s = s0 + r, c = c0 + threadIdx.x;
            tile[r][threadIdx.x] = s < S && c < C ? __bfloat162float(x[(size_t)s * C_pad + c]) : 0.0f;
        }
        __syncthreads();
        for (int r = threadIdx.y; r < LAYOUT_TILE; r += blockDim.y) {
            int c = c0 + r, s = s0 + threadIdx.x;
            if (c < C && s < S) y[(size_t)c * S + s] = tile[threadIdx.x][r] + (bias ? bias[c] : 0.0f);
        }
        __syncthreads();
    }
}

/* Largest bf16 staging buffer (NHWC input or output) of one chunk of a bf16 convolution. */
#define CONV_STAGE_BYTES ((size_t)1 << 30)

/* A bf16 convolution through cuDNN, bias included. The input holds B images of `planes` planes of
 * ci channels (NCHW per plane): conv2d has one plane per image (H x W pixels); temporal_conv sees a
 * video as one image of T planes of S pixels (H = T, W = S) and convolves it with a 3x1 kernel.
 * Each chunk of images is converted to bf16 NHWC with the channels padded to a multiple of 8,
 * convolved by cuDNN on the tensor cores into bf16 NHWC, and converted back to fp32 planes with the
 * bias added. Returns false, having done nothing, when cuDNN has no algorithm. */
static bool conv_cudnn_bf16(cuda_state *st, float *y, const float *x, const __nv_bfloat16 *w16,
                            const float *b, int B, int planes, int ci, int H, int W, int co, int kh,
                            int kw, int stride, int Ho, int Wo)
{
    int ci_pad = round_up8(ci), co_pad = round_up8(co);
    size_t in_image = (size_t)ci_pad * H * W, out_image = (size_t)co_pad * Ho * Wo;
    size_t largest = in_image > out_image ? in_image : out_image;
    size_t images = (size_t)INT32_MAX / largest;
    if (images < 1) return false;
    size_t fit = CONV_STAGE_BYTES / (largest * sizeof(__nv_bfloat16));
    if (images > fit) images = fit > 0 ? fit : 1;
    if (images > (size_t)B) images = (size_t)B;
    int in_plane = H * W / planes, out_plane = Ho * Wo / planes;
    __nv_bfloat16 *x16 = (__nv_bfloat16 *)cuda_scratch_reserve(&st->staging_input, images * in_image * sizeof(__nv_bfloat16));
    __nv_bfloat16 *y16 = (__nv_bfloat16 *)cuda_scratch_reserve(&st->staging_output, images * out_image * sizeof(__nv_bfloat16));
    for (int image0 = 0; image0 < B; image0 += (int)images) {
        int count = B - image0 < (int)images ? B - image0 : (int)images;
        int plane_count = count * planes;
        int slices = plane_count < 65535 ? plane_count : 65535;
        dim3 block(LAYOUT_TILE, 8);
        dim3 in_grid((in_plane + LAYOUT_TILE - 1) / LAYOUT_TILE, (ci_pad + LAYOUT_TILE - 1) / LAYOUT_TILE, slices);
        nchw_to_nhwc_bf16_kernel<<<in_grid, block, 0, st->stream>>>(
            x16, x + (size_t)image0 * planes * ci * in_plane, ci, ci_pad, in_plane, plane_count);
        CUDA_LAUNCH_CHECK();
        /* only the first chunk can fail: later ones are the same or smaller */
        if (!cudnn_conv_forward(st, true, y16, x16, w16, count, ci_pad, H, W, co_pad, kh, kw, stride, Ho, Wo))
            return false;
        dim3 out_grid((out_plane + LAYOUT_TILE - 1) / LAYOUT_TILE, (co + LAYOUT_TILE - 1) / LAYOUT_TILE, slices);
        nhwc_bf16_to_nchw_kernel<<<out_grid, block, 0, st->stream>>>(
            y + (size_t)image0 * planes * co * out_plane, y16, b, co, co_pad, out_plane, plane_count);
        CUDA_LAUNCH_CHECK();
    }
    return true;
}
#endif

static void cuda_conv2d(vd_backend *be, float *y, const float *x, const float *w, const float *b,
                        int B, int ci, int H, int W, int co, int k, int stride)
{
    cuda_state *st = cuda_state_of(be);
    int pad = k / 2;
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    if (B <= 0 || co <= 0 || Ho <= 0 || Wo <= 0) return;
#ifdef VD_HAVE_CUDNN
    if (use_bf16(be)) {
        const __nv_bfloat16 *w16 = weight_bf16(st, CUDA_WEIGHT_NHWC, w, NULL, co, ci, round_up8(ci), k * k);
        if (conv_cudnn_bf16(st, y, x, w16, b, B, 1, ci, H, W, co, k, k, stride, Ho, Wo)) return;
    } else if (!(k == 1 && stride == 1) && conv2d_cudnn_f32(st, y, x, w, B, ci, H, W, co, k, stride, Ho, Wo)) {
        if (b) launch_add_channel_bias(st, y, b, 1, B, co, Ho * Wo);
        return;
    }
#endif
    conv2d_im2col(be, y, x, w, B, ci, H, W, co, k, stride, Ho, Wo);
    if (b) launch_add_channel_bias(st, y, b, 1, B, co, Ho * Wo);
}

static void cuda_temporal_conv(vd_backend *be, float *y, const float *x, const float *w,
                               const float *b, int N, int T, int ci, int co, int S)
{
    cuda_state *st = cuda_state_of(be);
    if (N <= 0 || T <= 0 || co <= 0 || S <= 0) return;
    bool bf16 = use_bf16(be);
#ifdef VD_HAVE_CUDNN
    if (bf16) {
        const __nv_bfloat16 *w16 = weight_bf16(st, CUDA_WEIGHT_NHWC, w, NULL, co, ci, round_up8(ci), 3);
        if (conv_cudnn_bf16(st, y, x, w16, b, N, T, ci, T, S, co, 3, 1, 1, T, S)) return;
    }
#endif
    /* w(co, ci, 3) is already the (co, ci*3) matrix whose column i*3 + j meets cols row i*3 + j. */
    conv_as_gemm(be, y, w, N * T, co, ci * 3, S, [&](int frame0, int count, void *cols) {
        size_t n = (size_t)count * ci * 3 * S;
        if (bf16)
            temporal_im2col_kernel<__nv_bfloat16><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                (__nv_bfloat16 *)cols, x, frame0, count, T, ci, S);
        else
            temporal_im2col_kernel<float><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                (float *)cols, x, frame0, count, T, ci, S);
        CUDA_LAUNCH_CHECK();
    });
    if (b) launch_add_channel_bias(st, y, b, 1, N * T, co, S);
}

/* ---------------------------------------------------------------------------------------------
 * attention */

/* Keys per shared-memory tile in the fp32 kernel. */
#define F32_KEY_TILE 32

/* fp32 attention, one thread per query row and head, keys streamed through shared memory with an
 * online softmax. D is d rounded up to the kernel's width; the extra dimensions hold zeros.
 * Block: up to 128 threads covering consecutive queries of one (b, h). */
template <int D>
__global__ void __launch_bounds__(128)
attention_f32_kernel(float *o, const float *q, const float *k, const float *v, int Lq, int Lk,
                     int heads, int d, int kv_group, float scale, int q_tiles)
{
    __shared__ float k_tile[F32_KEY_TILE][D];
    __shared__ float v_tile[F32_KEY_TILE][D];
    long long block = blockIdx.x;
    int q_tile = (int)(block % q_tiles);
    long long bh = block / q_tiles;
    int h = (int)(bh % heads);
    long long b = bh / heads;
    size_t row_stride = (size_t)heads * d;
    const float *k_bh = k + (size_t)(b / kv_group) * Lk * row_stride + (size_t)h * d;
    const float *v_bh = v + (size_t)(b / kv_group) * Lk * row_stride + (size_t)h * d;
    int i = q_tile * blockDim.x + threadIdx.x;
    bool active = i < Lq;
    const float *q_row = q + ((size_t)b * Lq + (active ? i : 0)) * row_stride + (size_t)h * d;

    float q_reg[D], acc[D];
#pragma unroll
    for (int c = 0; c < D; c++) {
        q_reg[c] = (active && c < d) ? q_row[c] * scale : 0.0f;
        acc[c] = 0.0f;
    }
    float running_max = -INFINITY, denominator = 0.0f;

    for (int key0 = 0; key0 < Lk; key0 += F32_KEY_TILE) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < F32_KEY_TILE * D; idx += blockDim.x) {
            int r = idx / D, c = idx % D;
            bool valid = key0 + r < Lk && c < d;
            size_t off = (size_t)(key0 + r) * row_stride + c;
            k_tile[r][c] = valid ? k_bh[off] : 0.0f;
            v_tile[r][c] = valid ? v_bh[off] : 0.0f;
        }
        __syncthreads();
        int keys = Lk - key0 < F32_KEY_TILE ? Lk - key0 : F32_KEY_TILE;
        for (int j = 0; j < keys; j++) {
            float partial[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int c = 0; c < D; c++) partial[c % 4] = fmaf(q_reg[c], k_tile[j][c], partial[c % 4]);
            float score = (partial[0] + partial[1]) + (partial[2] + partial[3]);
            if (score > running_max) {
                float correction = expf(running_max - score);
                denominator *= correction;
#pragma unroll
                for (int c = 0; c < D; c++) acc[c] *= correction;
                running_max = score;
            }
            float p = expf(score - running_max);
            denominator += p;
#pragma unroll
            for (int c = 0; c < D; c++) acc[c] = fmaf(p, v_tile[j][c], acc[c]);
        }
    }
    if (!active) return;
    float *o_row = o + ((size_t)b * Lq + i) * row_stride + (size_t)h * d;
    float inv = 1.0f / denominator;
#pragma unroll
    for (int c = 0; c < D; c++)
        if (c < d) o_row[c] = acc[c] * inv;
}

/* c(16x8, fp32) += a(16x16, bf16, row-major) * b(16x8, bf16, column-major), one warp. Fragment
 * layout (PTX ISA, mma.m16n8k16), with g = lane / 4 and t = lane % 4; each 32-bit register holds
 * two bf16 at consecutive columns (rows for b), the lower index in the low half:
 *   a[0]: row g, columns 2t, 2t+1      a[1]: row g+8, columns 2t, 2t+1
 *   a[2]: row g, columns 2t+8, 2t+9    a[3]: row g+8, columns 2t+8, 2t+9
 *   b0: rows 2t, 2t+1 of column g      b1: rows 2t+8, 2t+9 of column g
 *   c[0], c[1]: row g, columns 2t, 2t+1;  c[2], c[3]: row g+8, the same columns. */
__device__ __forceinline__ void mma_bf16_16x8x16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 16-byte asynchronous copy global -> shared; with src_bytes 0 the destination is zero-filled. */
__device__ __forceinline__ void cp_async16(void *shared_dst, const void *global_src, int src_bytes)
{
    unsigned dst = (unsigned)__cvta_generic_to_shared(shared_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global_src), "r"(src_bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits until at most `pending` committed groups of this thread are still in flight. */
template <int pending> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(pending) : "memory");
}

/* Four 8x8 bf16 matrices from shared memory; lane l gives the address of row l % 8 of matrix
 * l / 8, and r[m] receives matrix m in the mma fragment layout (transposed with `trans`). */
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *shared_row)
{
    unsigned addr = (unsigned)__cvta_generic_to_shared(shared_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *shared_row)
{
    unsigned addr = (unsigned)__cvta_generic_to_shared(shared_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

/* bf16 flash attention on the tensor cores. Each warp owns 16 query rows of one (b, h), read
 * from fp32 q once; the block's WARPS warps share tiles of KT keys. Keys and values come
 * pre-converted to bf16 as (entries, Lk, heads, D) rows (attention_bf16 below) and stream through
 * two shared-memory buffers by cp.async, the next tile loading while this one is used; fragments
 * come out by ldmatrix (transposed for V). Scores stay in registers: the S = QK^T accumulators
 * are reused directly as the A operand of O += PV, with an online softmax in base 2 between the
 * two. D is d rounded up to 32, 64 or 128; the extra dimensions hold zeros. */
template <int D, int WARPS, int KT>
__global__ void __launch_bounds__(WARPS * 32)
attention_bf16_kernel(float *o, const float *q, const __nv_bfloat16 *k16, const __nv_bfloat16 *v16,
                      int Lq, int Lk, int heads, int d, int kv_group, float scale_log2, int q_tiles)
{
    constexpr int STRIDE = D + 8; /* bf16 per shared row: 16-byte aligned, ldmatrix off banks */
    __shared__ __align__(16) __nv_bfloat16 k_tile[2][KT * STRIDE];
    __shared__ __align__(16) __nv_bfloat16 v_tile[2][KT * STRIDE];

    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int g = lane / 4, t = lane % 4;
    long long block = blockIdx.x;
    int q_tile = (int)(block % q_tiles);
    long long bh = block / q_tiles;
    int h = (int)(bh % heads);
    long long b = bh / heads;
    size_t row_stride = (size_t)heads * d, kv_row_stride = (size_t)heads * D;
    const float *q_bh = q + (size_t)b * Lq * row_stride + (size_t)h * d;
    const __nv_bfloat16 *k_bh = k16 + (size_t)(b / kv_group) * Lk * kv_row_stride + (size_t)h * D;
    const __nv_bfloat16 *v_bh = v16 + (size_t)(b / kv_group) * Lk * kv_row_stride + (size_t)h * D;
    int row_lo = (q_tile * WARPS + warp) * 16 + g, row_hi = row_lo + 8;

    /* Keys [key0, key0 + KT) into buffer buf, rows past Lk zero-filled. */
    auto load_tile = [&](int buf, int key0) {
        for (int idx = threadIdx.x; idx < KT * (D / 8); idx += WARPS * 32) {
            int r = idx / (D / 8), c = (idx % (D / 8)) * 8;
            bool valid = key0 + r < Lk;
            size_t off = valid ? (size_t)(key0 + r) * kv_row_stride + c : 0;
            cp_async16(&k_tile[buf][r * STRIDE + c], k_bh + off, valid ? 16 : 0);
            cp_async16(&v_tile[buf][r * STRIDE + c], v_bh + off, valid ? 16 : 0);
        }
        cp_async_commit();
    };
    load_tile(0, 0);

    /* Q as A fragments, one per 16 dimensions. */
    uint32_t q_frag[D / 16][4];
#pragma unroll
    for (int kc = 0; kc < D / 16; kc++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            int c = kc * 16 + half * 8 + 2 * t;
            float lo0 = 0, lo1 = 0, hi0 = 0, hi1 = 0;
            if (row_lo < Lq) {
                const float *src = q_bh + (size_t)row_lo * row_stride;
                if (c < d) lo0 = src[c];
                if (c + 1 < d) lo1 = src[c + 1];
            }
            if (row_hi < Lq) {
                const float *src = q_bh + (size_t)row_hi * row_stride;
                if (c < d) hi0 = src[c];
                if (c + 1 < d) hi1 = src[c + 1];
            }
            q_frag[kc][half * 2] = pack_bf16x2(lo0, lo1);
            q_frag[kc][half * 2 + 1] = pack_bf16x2(hi0, hi1);
        }
    }

    float acc[D / 8][4];
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.0f;
    float running_max[2] = {-INFINITY, -INFINITY};
    float partial_sum[2] = {0.0f, 0.0f}; /* this thread's share of each row's denominator */

    int tiles = (Lk + KT - 1) / KT;
    for (int tile = 0; tile < tiles; tile++) {
        int buf = tile & 1, key0 = tile * KT;
        if (tile + 1 < tiles) {
            load_tile(buf ^ 1, key0 + KT);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();

        /* S(16 rows, KT keys) = Q K^T, as tiles of 8 keys; one ldmatrix gives 32 dimensions. */
        float s[KT / 8][4];
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            const __nv_bfloat16 *k_rows = &k_tile[buf][(nt * 8 + (lane & 7)) * STRIDE + (lane >> 3) * 8];
#pragma unroll
            for (int kc = 0; kc < D / 16; kc += 2) {
                uint32_t kf[4];
                ldmatrix_x4(kf, k_rows + kc * 16);
                mma_bf16_16x8x16(s[nt], q_frag[kc], kf[0], kf[1]);
                mma_bf16_16x8x16(s[nt], q_frag[kc + 1], kf[2], kf[3]);
            }
        }

        /* Online softmax: scale to base 2, mask keys past Lk, rescale what came before. */
        float tile_max[2] = {running_max[0], running_max[1]};
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = key0 + nt * 8 + 2 * t + (e & 1);
                s[nt][e] = key < Lk ? s[nt][e] * scale_log2 : -INFINITY;
                tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[nt][e]);
            }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
            float correction = exp2f(running_max[r] - tile_max[r]);
            partial_sum[r] *= correction;
#pragma unroll
            for (int dn = 0; dn < D / 8; dn++) {
                acc[dn][2 * r] *= correction;
                acc[dn][2 * r + 1] *= correction;
            }
            running_max[r] = tile_max[r];
        }
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[nt][e] = exp2f(s[nt][e] - running_max[e >> 1]);
                partial_sum[e >> 1] += s[nt][e];
            }

        /* O(16, D) += P(16, KT) V(KT, D): two score tiles make one A fragment of 16 keys; one
         * transposed ldmatrix gives the B fragments of 16 dimensions. */
#pragma unroll
        for (int kk = 0; kk < KT / 16; kk++) {
            uint32_t p_frag[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]),
                                  pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                                  pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            const __nv_bfloat16 *v_rows = &v_tile[buf][(kk * 16 + (lane & 15)) * STRIDE + (lane >> 4) * 8];
#pragma unroll
            for (int dn = 0; dn < D / 8; dn += 2) {
                uint32_t vf[4];
                ldmatrix_x4_trans(vf, v_rows + dn * 8);
                mma_bf16_16x8x16(acc[dn], p_frag, vf[0], vf[1]);
                mma_bf16_16x8x16(acc[dn + 1], p_frag, vf[2], vf[3]);
            }
        }
        __syncthreads(); /* every warp is done with buf before the next load refills it */
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        partial_sum[r] += __shfl_xor_sync(0xffffffffu, partial_sum[r], 1);
        partial_sum[r] += __shfl_xor_sync(0xffffffffu, partial_sum[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = r ? row_hi : row_lo;
        if (row >= Lq) continue;
        float inv = 1.0f / partial_sum[r];
        float *o_row = o + ((size_t)b * Lq + row) * row_stride + (size_t)h * d;
#pragma unroll
        for (int dn = 0; dn < D / 8; dn++) {
            int c = dn * 8 + 2 * t;
            if (c < d) o_row[c] = acc[dn][2 * r] * inv;
            if (c + 1 < d) o_row[c + 1] = acc[dn][2 * r + 1] * inv;
        }
    }
}

/* Softmax over each of `rows` rows of length n, in place; one warp per row. */
static __global__ void softmax_rows_kernel(float *x, size_t rows, int n)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    float *r = x + row * n;
    float largest = -INFINITY;
    for (int j = lane; j < n; j += 32) largest = fmaxf(largest, r[j]);
    for (int off = 16; off; off /= 2) largest = fmaxf(largest, __shfl_xor_sync(0xffffffffu, largest, off));
    float total = 0.0f;
    for (int j = lane; j < n; j += 32) {
        float e = expf(r[j] - largest);
        r[j] = e;
        total += e;
    }
    for (int off = 16; off; off /= 2) total += __shfl_xor_sync(0xffffffffu, total, off);
    float inv = 1.0f / total;
    for (int j = lane; j < n; j += 32) r[j] *= inv;
}

void cuda_softmax_rows(cuda_state *st, float *x, size_t rows, int n)
{
    softmax_rows_kernel<<<(unsigned)((rows + 7) / 8), THREADS, 0, st->stream>>>(x, rows, n);
    CUDA_LAUNCH_CHECK();
}

/* Attention for heads wider than the fused kernels take (d > 128): scores for a block of query
 * rows of one batch entry go through memory, in fp32, in chunks of at most CHUNK_BYTES. */
static void attention_unfused(cuda_state *st, float *o, const float *q, const float *k,
                              const float *v, int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    int row_stride = heads * d;
    size_t rows_per_chunk = CHUNK_BYTES / ((size_t)heads * Lk * sizeof(float));
    if (rows_per_chunk < 1) rows_per_chunk = 1;
    if (rows_per_chunk > (size_t)Lq) rows_per_chunk = (size_t)Lq;
    float *scores = (float *)cuda_scratch_reserve(&st->workspace, rows_per_chunk * heads * Lk * sizeof(float));
    float scale = 1.0f / sqrtf((float)d);
    for (int b = 0; b < B; b++) {
        const float *k_b = k + (size_t)(b / kv_group) * Lk * row_stride;
        const float *v_b = v + (size_t)(b / kv_group) * Lk * row_stride;
        for (int row0 = 0; row0 < Lq; row0 += (int)rows_per_chunk) {
            int rows = Lq - row0 < (int)rows_per_chunk ? Lq - row0 : (int)rows_per_chunk;
            const float *q_rows = q + ((size_t)b * Lq + row0) * row_stride;
            float *o_rows = o + ((size_t)b * Lq + row0) * row_stride;
            /* Per head: scores(rows, Lk), column-major (Lk, rows) = K_h (Lk, d) * Q_h^T. */
            gemm(st, false, CUBLAS_OP_T, CUBLAS_OP_N, Lk, rows, d, scale, k_b, row_stride, d,
                 q_rows, row_stride, d, 0.0f, scores, Lk, (long long)rows * Lk, heads);
            size_t score_rows = (size_t)heads * rows;
            cuda_softmax_rows(st, scores, score_rows, Lk);
            CUDA_LAUNCH_CHECK();
            /* Per head: O_h(rows, d), column-major (d, rows) = V_h^T (d, Lk) * P^T (Lk, rows). */
            gemm(st, false, CUBLAS_OP_N, CUBLAS_OP_N, d, rows, Lk, 1.0f, v_b, row_stride, d, scores,
                 Lk, (long long)rows * Lk, 0.0f, o_rows, row_stride, d, heads);
        }
    }
}

template <int D>
static void launch_attention_f32(cuda_state *st, float *o, const float *q, const float *k,
                                 const float *v, int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    int threads = Lq >= 128 ? 128 : ((Lq + 31) / 32) * 32;
    int q_tiles = (Lq + threads - 1) / threads;
    size_t blocks = (size_t)q_tiles * heads * B;
    attention_f32_kernel<D><<<(unsigned)blocks, threads, 0, st->stream>>>(
        o, q, k, v, Lq, Lk, heads, d, kv_group, 1.0f / sqrtf((float)d), q_tiles);
    CUDA_LAUNCH_CHECK();
}

template <int D, int WARPS, int KT>
static void launch_attention_bf16(cuda_state *st, float *o, const float *q, const __nv_bfloat16 *k16,
                                  const __nv_bfloat16 *v16, int B, int Lq, int Lk, int heads, int d,
                                  int kv_group)
{
    int q_tiles = (Lq + 16 * WARPS - 1) / (16 * WARPS);
    size_t blocks = (size_t)q_tiles * heads * B;
    float scale_log2 = 1.4426950408889634f / sqrtf((float)d);
    attention_bf16_kernel<D, WARPS, KT><<<(unsigned)blocks, WARPS * 32, 0, st->stream>>>(
        o, q, k16, v16, Lq, Lk, heads, d, kv_group, scale_log2, q_tiles);
    CUDA_LAUNCH_CHECK();
}

/* bf16 attention: keys and values are converted once to bf16 rows of D per head (in chunks of
 * key/value entries, each under CHUNK_BYTES), then the fused kernel runs over the batch entries
 * that attend to the chunk. Blocks have as many warps as 16-row query tiles fill (up to 8), and
 * short key sequences (temporal attention) get 16-key tiles. */
template <int D>
static void attention_bf16(cuda_state *st, float *o, const float *q, const float *k, const float *v,
                           int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    constexpr int KT = D > 64 ? 32 : 64;
    int entries = (B + kv_group - 1) / kv_group;
    size_t entry_values = (size_t)Lk * heads * D;
    size_t per_chunk = CHUNK_BYTES / (entry_values * sizeof(__nv_bfloat16));
    if (per_chunk < 1) per_chunk = 1;
    if (per_chunk > (size_t)entries) per_chunk = (size_t)entries;
    __nv_bfloat16 *k16 = (__nv_bfloat16 *)cuda_scratch_reserve(&st->workspace, 2 * per_chunk * entry_values * sizeof(__nv_bfloat16));
    __nv_bfloat16 *v16 = k16 + per_chunk * entry_values;
    size_t q_entry = (size_t)Lq * heads * d, kv_entry = (size_t)Lk * heads * d;
    for (size_t e0 = 0; e0 < (size_t)entries; e0 += per_chunk) {
        size_t count = (size_t)entries - e0 < per_chunk ? (size_t)entries - e0 : per_chunk;
        stage_rows_bf16(st, k16, k + e0 * kv_entry, count * Lk * heads, d, D, 0, NULL);
        stage_rows_bf16(st, v16, v + e0 * kv_entry, count * Lk * heads, d, D, 0, NULL);
        size_t b0 = e0 * kv_group, b1 = (e0 + count) * kv_group;
        if (b1 > (size_t)B) b1 = (size_t)B;
        int batch = (int)(b1 - b0);
        float *o_chunk = o + b0 * q_entry;
        const float *q_chunk = q + b0 * q_entry;
        if (Lq <= 16 && Lk <= 16)
            launch_attention_bf16<D, 1, 16>(st, o_chunk, q_chunk, k16, v16, batch, Lq, Lk, heads, d, kv_group);
        else if (Lq <= 16)
            launch_attention_bf16<D, 1, KT>(st, o_chunk, q_chunk, k16, v16, batch, Lq, Lk, heads, d, kv_group);
        else if (Lq <= 32)
            launch_attention_bf16<D, 2, KT>(st, o_chunk, q_chunk, k16, v16, batch, Lq, Lk, heads, d, kv_group);
        else if (Lq <= 64)
            launch_attention_bf16<D, 4, KT>(st, o_chunk, q_chunk, k16, v16, batch, Lq, Lk, heads, d, kv_group);
        else
            launch_attention_bf16<D, 8, KT>(st, o_chunk, q_chunk, k16, v16, batch, Lq, Lk, heads, d, kv_group);
    }
}

static void cuda_attention(vd_backend *be, float *o, const float *q, const float *k, const float *v,
                           int B, int Lq, int Lk, int heads, int d, int kv_group)
{
    cuda_state *st = cuda_state_of(be);
    if (B <= 0 || Lq <= 0 || heads <= 0 || d <= 0) return;
    if (Lk <= 0) { /* nothing to attend to: the empty sum */
        CUDA_CHECK(cudaMemsetAsync(o, 0, (size_t)B * Lq * heads * d * sizeof(float), st->stream));
        return;
    }
    if (d > 128) {
        attention_unfused(st, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
        return;
    }
    if (use_bf16(be)) {
        if (d <= 32) attention_bf16<32>(st, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
        else if (d <= 64) attention_bf16<64>(st, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
        else attention_bf16<128>(st, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
    } else {
        if (d <= 32) launch_attention_f32<32>(st, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
        else if (d <= 64) launch_attention_f32<64>(st, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
        else launch_attention_f32<128>(st, o, q, k, v, B, Lq, Lk, heads, d, kv_group);
    }
}

/* ---------------------------------------------------------------------------------------------
 * normalisation */


/* One block per (image, group): x, y (B, C, S), the group's C/G channels are contiguous. Sums go
 * in double so that E[x^2] - E[x]^2 keeps its precision. With `vectors` set (S a multiple of 4,
 * both tensors 16-byte aligned) each thread moves float4s, which never straddle a channel. */
__global__ void __launch_bounds__(THREADS)
group_norm_kernel(float *y, const float *x, const float *gamma, const float *beta, int C, int S,
                  int G, float eps, bool vectors)
{
    __shared__ double partials[THREADS / 32];
    int group = blockIdx.x % G;
    int channels = C / G;
    size_t count = (size_t)channels * S;
    size_t base = (size_t)blockIdx.x * count; /* image b = blockIdx.x / G starts at b*C*S */
    const float4 *x4 = reinterpret_cast<const float4 *>(x + base);
    float4 *y4 = reinterpret_cast<float4 *>(y + base);
    double sum = 0.0, sum_sq = 0.0;
    if (vectors) {
        for (size_t i = threadIdx.x; i < count / 4; i += blockDim.x) {
            float4 v = x4[i];
            sum += (double)v.x + v.y + (double)v.z + v.w;
            sum_sq += (double)v.x * v.x + (double)v.y * v.y + (double)v.z * v.z + (double)v.w * v.w;
        }
    } else {
        for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
            double value = x[base + i];
            sum += value;
            sum_sq += value * value;
        }
    }
    sum = block_sum(sum, partials);
    sum_sq = block_sum(sum_sq, partials);
    double mean = sum / count;
    double variance = sum_sq / count - mean * mean;
    if (variance < 0.0) variance = 0.0;
    float inv_std = (float)(1.0 / sqrt(variance + eps));
    float mean_f = (float)mean;
    if (vectors) {
        for (size_t i = threadIdx.x; i < count / 4; i += blockDim.x) {
            int c = group * channels + (int)(4 * i / S);
            float scale = gamma[c] * inv_std, shift = beta[c];
            float4 v = x4[i];
            y4[i] = make_float4((v.x - mean_f) * scale + shift, (v.y - mean_f) * scale + shift,
                                (v.z - mean_f) * scale + shift, (v.w - mean_f) * scale + shift);
        }
    } else {
        for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
            int c = group * channels + (int)(i / S);
            float scale = gamma[c] * inv_std;
            y[base + i] = (x[base + i] - mean_f) * scale + beta[c];
        }
    }
}

static void cuda_group_norm(vd_backend *be, float *y, const float *x, const float *gamma,
                            const float *beta, int B, int C, int S, int G, float eps)
{
    cuda_state *st = cuda_state_of(be);
    if (B <= 0 || C <= 0 || S <= 0) return;
    bool vectors = S % 4 == 0 && aligned16(x, y, y);
    group_norm_kernel<<<(unsigned)((size_t)B * G), THREADS, 0, st->stream>>>(y, x, gamma, beta, C, S, G, eps, vectors);
    CUDA_LAUNCH_CHECK();
}

/* One warp per row of x, y (M, C): mean, then variance about the mean, then the affine map. */
__global__ void layer_norm_kernel(float *y, const float *x, const float *gamma, const float *beta,
                                  int M, int C, float eps)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= (size_t)M) return;
    const float *xr = x + row * C;
    float *yr = y + row * C;
    float mean, inv_std;
    warp_row_stats(xr, C, eps, lane, &mean, &inv_std);
    for (int c = lane; c < C; c += 32) yr[c] = (xr[c] - mean) * inv_std * gamma[c] + beta[c];
}

static void cuda_layer_norm(vd_backend *be, float *y, const float *x, const float *gamma,
                            const float *beta, int M, int C, float eps)
{
    cuda_state *st = cuda_state_of(be);
    if (M <= 0 || C <= 0) return;
    int rows_per_block = THREADS / 32;
    layer_norm_kernel<<<(unsigned)(((size_t)M + rows_per_block - 1) / rows_per_block), THREADS, 0,
                        st->stream>>>(y, x, gamma, beta, M, C, eps);
    CUDA_LAUNCH_CHECK();
}

/* ---------------------------------------------------------------------------------------------
 * elementwise */

/* The elementwise kernels move float4s when every pointer is 16-byte aligned: vectors over the
 * first n/4*4 values, then single values for the rest. */
struct silu_op {
    __device__ float operator()(float v) const { return v / (1.0f + expf(-v)); }
};

/* x erfc(-x / sqrt 2) / 2: exact gelu, accurate in the negative tail where 1 + erf cancels. */
struct gelu_op {
    __device__ float operator()(float v) const { return 0.5f * v * erfcf(-v * 0.70710678118654752f); }
};

template <typename Op>
__global__ void unary_kernel(float *y, const float *x, size_t n, size_t vectors, Op op)
{
    GRID_STRIDE(i, vectors)
    {
        float4 v = reinterpret_cast<const float4 *>(x)[i];
        reinterpret_cast<float4 *>(y)[i] = make_float4(op(v.x), op(v.y), op(v.z), op(v.w));
    }
    GRID_STRIDE(i, n - 4 * vectors) y[4 * vectors + i] = op(x[4 * vectors + i]);
}

__global__ void add_kernel(float *y, const float *a, const float *b, size_t n, size_t vectors)
{
    GRID_STRIDE(i, vectors)
    {
        float4 u = reinterpret_cast<const float4 *>(a)[i], v = reinterpret_cast<const float4 *>(b)[i];
        reinterpret_cast<float4 *>(y)[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
    }
    GRID_STRIDE(i, n - 4 * vectors) y[4 * vectors + i] = a[4 * vectors + i] + b[4 * vectors + i];
}

template <typename Op> static void launch_unary(cuda_state *st, float *y, const float *x, size_t n, Op op)
{
    if (!n) return;
    size_t vectors = aligned16(y, x, x) ? n / 4 : 0;
    unary_kernel<<<grid_for(st, vectors ? vectors : n), THREADS, 0, st->stream>>>(y, x, n, vectors, op);
    CUDA_LAUNCH_CHECK();
}

/* y = alpha x + beta y; with beta == 0, y is not read (as in BLAS). */
__global__ void axpby_kernel(float *y, float alpha, const float *x, float beta, size_t n)
{
    GRID_STRIDE(i, n) y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

/* y[i] += scale * normal number i of stream seed: one thread a pair of normals (random.h). */
__global__ void add_random_normal_kernel(float *y, float scale, uint64_t seed, size_t n)
{
    GRID_STRIDE(pair, (n + 1) / 2) {
        float first, second;
        vd_rng_normal_pair(seed, pair, &first, &second);
        size_t i = 2 * pair;
        y[i] = scale * first + y[i];
        if (i + 1 < n) y[i + 1] = scale * second + y[i + 1];
    }
}

static void cuda_silu(vd_backend *be, float *y, const float *x, size_t n)
{
    launch_unary(cuda_state_of(be), y, x, n, silu_op());
}

static void cuda_gelu(vd_backend *be, float *y, const float *x, size_t n)
{
    launch_unary(cuda_state_of(be), y, x, n, gelu_op());
}

static void cuda_add(vd_backend *be, float *y, const float *a, const float *b, size_t n)
{
    cuda_state *st = cuda_state_of(be);
    if (!n) return;
    size_t vectors = aligned16(y, a, b) ? n / 4 : 0;
    add_kernel<<<grid_for(st, vectors ? vectors : n), THREADS, 0, st->stream>>>(y, a, b, n, vectors);
    CUDA_LAUNCH_CHECK();
}

static void cuda_axpby(vd_backend *be, float *y, float alpha, const float *x, float beta, size_t n)
{
    cuda_state *st = cuda_state_of(be);
    if (!n) return;
    axpby_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(y, alpha, x, beta, n);
    CUDA_LAUNCH_CHECK();
}

static void cuda_add_random_normal(vd_backend *be, float *y, float scale, uint64_t seed, size_t n)
{
    cuda_state *st = cuda_state_of(be);
    if (!n) return;
    add_random_normal_kernel<<<grid_for(st, (n + 1) / 2), THREADS, 0, st->stream>>>(y, scale, seed, n);
    CUDA_LAUNCH_CHECK();
}

/* ---------------------------------------------------------------------------------------------
 * layout */

/* x (B, C, H, W) -> y (B, C, 2H, 2W), one thread per output value. */
__global__ void upsample2x_kernel(float *y, const float *x, size_t planes, int H, int W)
{
    size_t out_plane = (size_t)4 * H * W;
    GRID_STRIDE(i, planes * out_plane)
    {
        size_t plane = i / out_plane;
        int pixel = (int)(i % out_plane);
        int oy = pixel / (2 * W), ox = pixel % (2 * W);
        y[i] = x[(plane * H + oy / 2) * W + ox / 2];
    }
}

static void cuda_upsample2x(vd_backend *be, float *y, const float *x, int B, int C, int H, int W)
{
    cuda_state *st = cuda_state_of(be);
    size_t n = (size_t)B * C * 4 * H * W;
    if (!n) return;
    upsample2x_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(y, x, (size_t)B * C, H, W);
    CUDA_LAUNCH_CHECK();
}

/* y(B, ca + cb, S) from a(B, ca, S) and b(B, cb, S), one thread per output value. */
__global__ void concat_channels_kernel(float *y, const float *a, int ca, const float *b, int cb,
                                       size_t images, int S)
{
    size_t per_image = (size_t)(ca + cb) * S;
    GRID_STRIDE(i, images * per_image)
    {
        size_t image = i / per_image;
        size_t within = i % per_image;
        size_t first = (size_t)ca * S;
        y[i] = within < first ? a[image * first + within] : b[image * (size_t)cb * S + (within - first)];
    }
}

static void cuda_concat_channels(vd_backend *be, float *y, const float *a, int ca, const float *b,
                                 int cb, int B, int S)
{
    cuda_state *st = cuda_state_of(be);
    size_t n = (size_t)B * (ca + cb) * S;
    if (!n) return;
    concat_channels_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(y, a, ca, b, cb, (size_t)B, S);
    CUDA_LAUNCH_CHECK();
}

#define TRANSPOSE_TILE 32

/* D == 1: y(A, C, B) from x(A, B, C) through 32x32 shared-memory tiles, so that both the reads and
 * the writes are coalesced. Block (32, 8); grid (C tiles, B tiles, A slices). */
__global__ void transpose_tiled_kernel(float *y, const float *x, int A, int B, int C)
{
    __shared__ float tile[TRANSPOSE_TILE][TRANSPOSE_TILE + 1];
    int c0 = blockIdx.x * TRANSPOSE_TILE, b0 = blockIdx.y * TRANSPOSE_TILE;
    for (int a = blockIdx.z; a < A; a += gridDim.z) {
        const float *xa = x + (size_t)a * B * C;
        float *ya = y + (size_t)a * B * C;
        for (int r = threadIdx.y; r < TRANSPOSE_TILE; r += blockDim.y) {
            int b = b0 + r, c = c0 + threadIdx.x;
            if (b < B && c < C) tile[r][threadIdx.x] = xa[(size_t)b * C + c];
        }
        __syncthreads();
        for (int r = threadIdx.y; r < TRANSPOSE_TILE; r += blockDim.y) {
            int c = c0 + r, b = b0 + threadIdx.x;
            if (b < B && c < C) ya[(size_t)c * B + b] = tile[threadIdx.x][r];
        }
        __syncthreads();
    }
}

/* D > 1: one thread per output vector of `VEC` floats, rows of D contiguous on both sides. */
template <typename VEC>
__global__ void transpose_rows_kernel(VEC *y, const VEC *x, int A, int B, int C, int D_vec)
{
    GRID_STRIDE(i, (size_t)A * B * C * D_vec)
    {
        size_t dd = i % D_vec;
        size_t rest = i / D_vec;
        size_t b = rest % B;
        rest /= B;
        size_t c = rest % C;
        size_t a = rest / C;
        y[i] = x[((a * B + b) * C + c) * D_vec + dd];
    }
}

static void cuda_transpose(vd_backend *be, float *y, const float *x, int A, int B, int C, int D)
{
    cuda_state *st = cuda_state_of(be);
    if ((size_t)A * B * C * D == 0) return;
    if (D == 1) {
        dim3 grid((C + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE, (B + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE,
                  A < 65535 ? A : 65535);
        transpose_tiled_kernel<<<grid, dim3(TRANSPOSE_TILE, 8), 0, st->stream>>>(y, x, A, B, C);
    } else if (D % 4 == 0 && ((uintptr_t)x | (uintptr_t)y) % 16 == 0) {
        size_t n = (size_t)A * B * C * (D / 4);
        transpose_rows_kernel<float4><<<grid_for(st, n), THREADS, 0, st->stream>>>(
            (float4 *)y, (const float4 *)x, A, B, C, D / 4);
    } else {
        size_t n = (size_t)A * B * C * D;
        transpose_rows_kernel<float><<<grid_for(st, n), THREADS, 0, st->stream>>>(y, x, A, B, C, D);
    }
    CUDA_LAUNCH_CHECK();
}

/* ---------------------------------------------------------------------------------------------
 * embeddings */

/* y(n, dim) = [cos(t f), sin(t f)]; the angle in double, since t reaches the thousands. */
__global__ void timestep_embedding_kernel(float *y, const float *t, int n, int dim)
{
    int half = dim / 2;
    GRID_STRIDE(idx, (size_t)n * half)
    {
        size_t m = idx / half;
        int i = (int)(idx % half);
        double angle = (double)t[m] * exp(-log(10000.0) * i / half);
        y[m * dim + i] = (float)cos(angle);
        y[m * dim + half + i] = (float)sin(angle);
    }
}

__global__ void embedding_kernel(float *y, const int32_t *ids, const float *table, int n, int dim)
{
    GRID_STRIDE(idx, (size_t)n * dim)
    {
        size_t m = idx / dim;
        y[idx] = table[(size_t)ids[m] * dim + idx % dim];
    }
}

static void cuda_timestep_embedding(vd_backend *be, float *y, const float *t, int n, int dim)
{
    cuda_state *st = cuda_state_of(be);
    size_t count = (size_t)n * (dim / 2);
    if (!count) return;
    timestep_embedding_kernel<<<grid_for(st, count), THREADS, 0, st->stream>>>(y, t, n, dim);
    CUDA_LAUNCH_CHECK();
}

static void cuda_embedding(vd_backend *be, float *y, const int32_t *ids, const float *table, int n, int dim)
{
    cuda_state *st = cuda_state_of(be);
    size_t count = (size_t)n * dim;
    if (!count) return;
    embedding_kernel<<<grid_for(st, count), THREADS, 0, st->stream>>>(y, ids, table, n, dim);
    CUDA_LAUNCH_CHECK();
}

/* ---------------------------------------------------------------------------------------------
 * registration */

cudaError_t cuda_probe_kernels(void)
{
    cudaFuncAttributes attributes;
    cudaError_t status = cudaFuncGetAttributes(&attributes, attention_bf16_kernel<64, 4, 64>);
    if (status == cudaSuccess) status = cudaFuncGetAttributes(&attributes, add_kernel);
    return status;
}

void cuda_set_ops(vd_backend *be)
{
    be->conv2d = cuda_conv2d;
    be->temporal_conv = cuda_temporal_conv;
    be->group_norm = cuda_group_norm;
    be->layer_norm = cuda_layer_norm;
    be->silu = cuda_silu;
    be->gelu = cuda_gelu;
    be->linear = cuda_linear;
    be->attention = cuda_attention;
    be->upsample2x = cuda_upsample2x;
    be->add = cuda_add;
    be->axpby = cuda_axpby;
    be->add_random_normal = cuda_add_random_normal;
    be->add_broadcast = cuda_add_broadcast;
    be->add_channel_bias = cuda_add_channel_bias;
    be->concat_channels = cuda_concat_channels;
    be->transpose = cuda_transpose;
    be->timestep_embedding = cuda_timestep_embedding;
    be->embedding = cuda_embedding;
}
