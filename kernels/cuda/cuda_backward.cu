/* cuda_backward.cu: the backward ops and the training ops of backend.h on the GPU. Activation
 * gradients are written, parameter gradients accumulated (atomicAdd where several blocks meet one
 * value), and a NULL gradient pointer skips its work.
 *
 * Matrix products go through cuBLAS with fp32 accumulation and no TF32: convolutions as im2col +
 * GEMM with the input gradient gathered back from the column gradient, attention by recomputing
 * the scores of a chunk of query rows with batched GEMMs. In VD_PRECISION_BF16 the GEMM operands
 * are rounded to bf16 into staging buffers first; everything else stays fp32. Scores, columns and
 * staged operands are bounded by CHUNK_BYTES per chunk. */
#include "cuda_internal.h"

#include <math.h>
#include <stdint.h>


static __host__ __device__ size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---------------------------------------------------------------------------------------------
 * GEMM operands */

static __global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n)
{
    GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

/* A GEMM operand of n values: src itself in fp32, else a bf16 copy in buf (same layout). */
static const void *operand(cuda_state *st, bool bf16, cuda_scratch *buf, const float *src, size_t n)
{
    if (!bf16) return src;
    __nv_bfloat16 *dst = (__nv_bfloat16 *)cuda_scratch_reserve(buf, (n ? n : 1) * sizeof(__nv_bfloat16));
    if (n) {
        to_bf16_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(dst, src, n);
        CUDA_LAUNCH_CHECK();
    }
    return dst;
}

/* Column-major C(m, n) = alpha op(A)(m, k) op(B)(k, n) + beta C over `batch` matrices spaced by
 * the strides (0 shares one). A and B are bf16 when bf16, else fp32; C is fp32; fp32 accumulation
 * without TF32. Strides and offsets count elements. */
static void gemm(cuda_state *st, bool bf16, cublasOperation_t op_a, cublasOperation_t op_b, int m,
                 int n, int k, float alpha, const void *A, int lda, long long stride_a, const void *B,
                 int ldb, long long stride_b, float beta, float *C, int ldc, long long stride_c,
                 int batch)
{
    if (m <= 0 || n <= 0 || batch <= 0) return;
    cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(st->cublas, op_a, op_b, m, n, k, &alpha, A, type, lda,
                                            stride_a, B, type, ldb, stride_b, &beta, C, CUDA_R_32F,
                                            ldc, stride_c, batch, CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT));
}

/* The operand pointer `offset` elements past p (fp32 or bf16 by bf16). */
static const void *offset_of(const void *p, bool bf16, size_t offset)
{
    return bf16 ? (const void *)((const __nv_bfloat16 *)p + offset) : (const void *)((const float *)p + offset);
}

/* ---------------------------------------------------------------------------------------------
 * reductions */


#define COLUMN_ROWS_PER_BLOCK 256

/* dst(inner) += sum over o of src(outer, inner)[o, i]. Block (32, 8): 32 columns, rows split
 * between the threads of a column; grid (column tiles, row slices of COLUMN_ROWS_PER_BLOCK). */
static __global__ void sum_columns_kernel(float *dst, const float *src, size_t outer, size_t inner)
{
    __shared__ float partial[8][33];
    size_t col = (size_t)blockIdx.x * 32 + threadIdx.x;
    size_t row0 = (size_t)blockIdx.y * COLUMN_ROWS_PER_BLOCK;
    size_t row1 = min_size(row0 + COLUMN_ROWS_PER_BLOCK, outer);
    float sum = 0.0f;
    if (col < inner)
        for (size_t r = row0 + threadIdx.y; r < row1; r += blockDim.y) sum += src[r * inner + col];
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && col < inner) {
        for (int y = 1; y < 8; y++) sum += partial[y][threadIdx.x];
        atomicAdd(&dst[col], sum);
    }
}

/* Rows per launch of the column kernels: grid.y stays within its limit of 65535. */
#define COLUMN_ROWS_PER_LAUNCH ((size_t)65535 * COLUMN_ROWS_PER_BLOCK)

static void launch_sum_columns(cuda_state *st, float *dst, const float *src, size_t outer, size_t inner)
{
    if (!dst || !outer || !inner) return;
    for (size_t row0 = 0; row0 < outer; row0 += COLUMN_ROWS_PER_LAUNCH) {
        size_t rows = min_size(COLUMN_ROWS_PER_LAUNCH, outer - row0);
        dim3 grid((unsigned)((inner + 31) / 32), (unsigned)((rows + COLUMN_ROWS_PER_BLOCK - 1) / COLUMN_ROWS_PER_BLOCK));
        sum_columns_kernel<<<grid, dim3(32, 8), 0, st->stream>>>(dst, src + row0 * inner, rows, inner);
        CUDA_LAUNCH_CHECK();
    }
}

/* dbias(N, C) += sum over t, s of dy(N, T, C, S); one block per (n, c). */
static __global__ void sum_channels_kernel(float *dbias, const float *dy, int T, int C, int S)
{
    __shared__ double shared[THREADS / 32];
    int c = blockIdx.x % C;
    size_t n = blockIdx.x / C;
    size_t count = (size_t)T * S;
    double sum = 0.0;
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
        size_t t = i / S, s = i % S;
        sum += dy[((n * T + t) * C + c) * S + s];
    }
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) dbias[blockIdx.x] += (float)sum;
}

static void launch_sum_channels(cuda_state *st, float *dbias, const float *dy, int N, int T, int C, int S)
{
    if (!dbias || N <= 0 || C <= 0) return;
    sum_channels_kernel<<<(unsigned)((size_t)N * C), THREADS, 0, st->stream>>>(dbias, dy, T, C, S);
    CUDA_LAUNCH_CHECK();
}

/* ---------------------------------------------------------------------------------------------
 * linear: y(M, out) = x(M, in) w(out, in)^T + b(out) */

static void cuda_linear_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy,
                                 const float *x, const float *w, int M, int in, int out)
{
    cuda_state *st = cuda_state_of(be);
    bool bf16 = use_bf16(be);
    if (M <= 0 || in <= 0 || out <= 0) {
        if (dx && M > 0 && in > 0) CUDA_CHECK(cudaMemsetAsync(dx, 0, (size_t)M * in * sizeof(float), st->stream));
        return;
    }
    if (dx || dw) {
        const void *dy_op = operand(st, bf16, &st->staging_input, dy, (size_t)M * out);
        /* Row-major dx(M, in) = dy(M, out) w(out, in): column-major dx^T(in, M) = w^T dy^T. */
        if (dx) {
            const void *w_op = operand(st, bf16, &st->staging_weight, w, (size_t)out * in);
            gemm(st, bf16, CUBLAS_OP_N, CUBLAS_OP_N, in, M, out, 1.0f, w_op, in, 0, dy_op, out, 0, 0.0f,
                 dx, in, 0, 1);
        }
        /* dw(out, in) += dy^T x: column-major dw^T(in, out) += x^T(in, M) dy(M, out). */
        if (dw) {
            const void *x_op = operand(st, bf16, &st->staging_output, x, (size_t)M * in);
            gemm(st, bf16, CUBLAS_OP_N, CUBLAS_OP_T, in, out, M, 1.0f, x_op, in, 0, dy_op, out, 0, 1.0f,
                 dw, in, 0, 1);
        }
    }
    launch_sum_columns(st, db, dy, (size_t)M, (size_t)out);
}

/* ---------------------------------------------------------------------------------------------
 * convolutions as im2col + GEMM */

/* cols(ci*k*k, images, Ho*Wo) for images [image0, image0 + images) of x(B, ci, H, W): the
 * images of a chunk side by side in each row, so that one product sums the weight gradient over
 * all of them; row (i*k + ky)*k + kx holds channel i shifted by (ky - k/2, kx - k/2), zero
 * outside. */
template <typename T>
static __global__ void columns_kernel(T *cols, const float *x, int image0, int images, int ci, int H,
                                      int W, int k, int stride, int Ho, int Wo)
{
    int pad = k / 2;
    size_t pixels = (size_t)Ho * Wo;
    GRID_STRIDE(idx, (size_t)images * ci * k * k * pixels)
    {
        size_t pixel = idx % pixels, image = (idx / pixels) % images + image0;
        size_t row = idx / (pixels * images);
        int oy = (int)(pixel / Wo), ox = (int)(pixel % Wo);
        int kx = (int)(row % k), ky = (int)((row / k) % k), i = (int)(row / ((size_t)k * k));
        int iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
        float v = iy >= 0 && iy < H && ix >= 0 && ix < W ? x[((image * ci + i) * H + iy) * W + ix] : 0.0f;
        if constexpr (sizeof(T) == sizeof(float)) cols[idx] = v;
        else cols[idx] = __float2bfloat16_rn(v);
    }
}

/* dx(images, ci, H, W) for images [image0, ...) gathered from dcols(images, ci*k*k, Ho*Wo): each
 * input pixel sums the column entries it was copied into. */
static __global__ void fold_columns_kernel(float *dx, const float *dcols, int image0, int images,
                                           int ci, int H, int W, int k, int stride, int Ho, int Wo)
{
    int pad = k / 2;
    size_t pixels = (size_t)Ho * Wo, rows = (size_t)ci * k * k;
    GRID_STRIDE(idx, (size_t)images * ci * H * W)
    {
        int ix = (int)(idx % W), iy = (int)((idx / W) % H);
        int i = (int)((idx / ((size_t)W * H)) % ci);
        size_t image = idx / ((size_t)W * H * ci);
        const float *dc = dcols + image * rows * pixels;
        float sum = 0.0f;
        for (int ky = 0; ky < k; ky++) {
            int ny = iy + pad - ky;
            if (ny < 0 || ny % stride) continue;
            int oy = ny / stride;
            if (oy >= Ho) continue;
            for (int kx = 0; kx < k; kx++) {
                int nx = ix + pad - kx;
                if (nx < 0 || nx % stride) continue;
                int ox = nx / stride;
                if (ox >= Wo) continue;
                sum += dc[((size_t)(i * k + ky) * k + kx) * pixels + (size_t)oy * Wo + ox];
            }
        }
        dx[(size_t)image0 * ci * H * W + idx] = sum;
    }
}

/* cols(ci*3, frames, S) for frames [frame0, frame0 + frames) of x(N, T, ci, S), the frames side
 * by side as in columns_kernel: row i*3 + j holds channel i of frame t + j - 1 of the same video,
 * zero outside it. */
template <typename T>
static __global__ void temporal_columns_kernel(T *cols, const float *x, int frame0, int frames, int T_,
                                               int ci, int S)
{
    GRID_STRIDE(idx, (size_t)frames * ci * 3 * S)
    {
        size_t s = idx % S, frame = (idx / S) % frames + frame0;
        size_t row = idx / ((size_t)S * frames);
        int j = (int)(row % 3), i = (int)(row / 3);
        int t = (int)(frame % T_) + j - 1;
        float v = t >= 0 && t < T_ ? x[((frame + (size_t)(j - 1)) * ci + i) * S + s] : 0.0f;
        if constexpr (sizeof(T) == sizeof(float)) cols[idx] = v;
        else cols[idx] = __float2bfloat16_rn(v);
    }
}

/* dyt(co, images, P) from dy(images, co, P), in the GEMM operand type: the output gradient laid
 * out like the columns, images side by side in each channel's row. */
template <typename T>
static __global__ void output_grad_rows_kernel(T *dyt, const float *dy, int images, int co, int P)
{
    GRID_STRIDE(idx, (size_t)images * co * P)
    {
        size_t p = idx % P, image = (idx / P) % images, c = idx / ((size_t)P * images);
        float v = dy[(image * co + c) * P + p];
        if constexpr (sizeof(T) == sizeof(float)) dyt[idx] = v;
        else dyt[idx] = __float2bfloat16_rn(v);
    }
}

/* dx(frames, ci, S) for frames [frame0, ...) of a video batch (N, T, ci, S), gathered from
 * dcols(frames, ci*3, S) whose frames start at frame0 too: channel i of frame t met the columns
 * of frame t - j + 1 at row i*3 + j. Chunks hold whole videos, so those frames are all in dcols. */
static __global__ void fold_temporal_kernel(float *dx, const float *dcols, int frame0, int frames,
                                            int T_, int ci, int S)
{
    size_t rows = (size_t)ci * 3;
    GRID_STRIDE(idx, (size_t)frames * ci * S)
    {
        size_t s = idx % S;
        int i = (int)((idx / S) % ci);
        int local = (int)(idx / ((size_t)S * ci));
        int t = (frame0 + local) % T_;
        float sum = 0.0f;
        for (int j = 0; j < 3; j++) {
            int t_out = t - j + 1, other = local - j + 1;
            if (t_out < 0 || t_out >= T_) continue;
            sum += dcols[((size_t)other * rows + (size_t)i * 3 + j) * S + s];
        }
        dx[((size_t)frame0 + local) * ci * S + (size_t)i * S + s] = sum;
    }
}

/* The shared part of both convolution backwards, for images (frames) of y_b(co, P) =
 * w(co, K) cols_b(K, P): dw(co, K) += sum_b dy_b cols_b^T, dcols_b = w^T dy_b, folded into dx by
 * fold(first image, count, dcols). Images go in chunks whose columns stay under CHUNK_BYTES;
 * within a chunk the columns (K, count, P) and the output gradient (co, count, P) hold the images
 * side by side, so that the weight gradient is one product over count * P pixels.
 * `align` images are added to each chunk's size (temporal chunks hold whole videos). */
template <typename MakeCols, typename Fold>
static void conv_backward_as_gemm(vd_backend *be, float *dx, float *dw, const float *dy, const float *w,
                                  int images, int co, int K, int P, int align, MakeCols make_cols, Fold fold)
{
    cuda_state *st = cuda_state_of(be);
    bool bf16 = use_bf16(be);
    size_t elem = bf16 ? sizeof(__nv_bfloat16) : sizeof(float);
    size_t image_values = (size_t)K * P;
    int per_chunk = (int)(CHUNK_BYTES / (image_values * sizeof(float)));
    if (per_chunk < align) per_chunk = align;
    per_chunk -= per_chunk % align;
    if (per_chunk > images) per_chunk = images;
    const void *w_op = operand(st, bf16, &st->staging_weight, w, (size_t)co * K);
    void *cols = dw ? cuda_scratch_reserve(&st->workspace, image_values * per_chunk * elem) : NULL;
    float *dcols = dx ? (float *)cuda_scratch_reserve(&st->staging_output, image_values * per_chunk * sizeof(float)) : NULL;
    void *dyt = cuda_scratch_reserve(&st->staging_input, (size_t)per_chunk * co * P * elem);
    for (int image0 = 0; image0 < images; image0 += per_chunk) {
        int count = images - image0 < per_chunk ? images - image0 : per_chunk;
        const float *dy_chunk = dy + (size_t)image0 * co * P;
        size_t n = (size_t)count * co * P;
        if (bf16)
            output_grad_rows_kernel<__nv_bfloat16><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                (__nv_bfloat16 *)dyt, dy_chunk, count, co, P);
        else
            output_grad_rows_kernel<float><<<grid_for(st, n), THREADS, 0, st->stream>>>((float *)dyt, dy_chunk,
                                                                                       count, co, P);
        CUDA_LAUNCH_CHECK();
        int pixels = count * P;
        if (dw) {
            make_cols(image0, count, cols);
            /* column-major dw^T(K, co) += cols^T(K, pixels) dyt(pixels, co): cols is column-major
             * (pixels, K), dyt column-major (pixels, co) */
            gemm(st, bf16, CUBLAS_OP_T, CUBLAS_OP_N, K, co, pixels, 1.0f, cols, pixels, 0, dyt, pixels, 0,
                 1.0f, dw, K, 0, 1);
        }
        if (dx) {
            /* column-major dcols_b(P, K) = dy_b(P, co) w(co, K), w being column-major (K, co);
             * dy_b starts at column b * P of dyt, its channels count * P apart */
            gemm(st, bf16, CUBLAS_OP_N, CUBLAS_OP_T, P, K, co, 1.0f, dyt, pixels, P, w_op, K, 0, 0.0f, dcols,
                 P, (long long)image_values, count);
            fold(image0, count, dcols);
        }
    }
}

static void cuda_conv2d_backward(vd_backend *be, float *dx, float *dw, float *db, const float *dy,
                                 const float *x, const float *w, int B, int ci, int H, int W, int co,
                                 int k, int stride)
{
    cuda_state *st = cuda_state_of(be);
    int pad = k / 2;
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    if (B <= 0 || ci <= 0 || H <= 0 || W <= 0) return;
    if (co <= 0 || Ho <= 0 || Wo <= 0) {
        if (dx) CUDA_CHECK(cudaMemsetAsync(dx, 0, (size_t)B * ci * H * W * sizeof(float), st->stream));
        return;
    }
    bool bf16 = use_bf16(be);
    int K = ci * k * k, P = Ho * Wo;
    conv_backward_as_gemm(
        be, dx, dw, dy, w, B, co, K, P, 1,
        [&](int image0, int count, void *cols) {
            size_t n = (size_t)count * K * P;
            if (bf16)
                columns_kernel<__nv_bfloat16><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                    (__nv_bfloat16 *)cols, x, image0, count, ci, H, W, k, stride, Ho, Wo);
            else
                columns_kernel<float><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                    (float *)cols, x, image0, count, ci, H, W, k, stride, Ho, Wo);
            CUDA_LAUNCH_CHECK();
        },
        [&](int image0, int count, const float *dcols) {
            size_t n = (size_t)count * ci * H * W;
            fold_columns_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(dx, dcols, image0, count, ci, H,
                                                                              W, k, stride, Ho, Wo);
            CUDA_LAUNCH_CHECK();
        });
    launch_sum_channels(st, db, dy, 1, B, co, P);
}

static void cuda_temporal_conv_backward(vd_backend *be, float *dx, float *dw, float *db,
                                        const float *dy, const float *x, const float *w, int N,
                                        int T, int ci, int co, int S)
{
    cuda_state *st = cuda_state_of(be);
    if (N <= 0 || T <= 0 || ci <= 0 || S <= 0) return;
    if (co <= 0) {
        if (dx) CUDA_CHECK(cudaMemsetAsync(dx, 0, (size_t)N * T * ci * S * sizeof(float), st->stream));
        return;
    }
    bool bf16 = use_bf16(be);
    /* w(co, ci, 3) is the (co, ci*3) matrix whose column i*3 + j meets cols row i*3 + j; chunks
     * hold whole videos, so that a frame's column gradients all lie in its chunk. */
    conv_backward_as_gemm(
        be, dx, dw, dy, w, N * T, co, ci * 3, S, T,
        [&](int frame0, int count, void *cols) {
            size_t n = (size_t)count * ci * 3 * S;
            if (bf16)
                temporal_columns_kernel<__nv_bfloat16><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                    (__nv_bfloat16 *)cols, x, frame0, count, T, ci, S);
            else
                temporal_columns_kernel<float><<<grid_for(st, n), THREADS, 0, st->stream>>>(
                    (float *)cols, x, frame0, count, T, ci, S);
            CUDA_LAUNCH_CHECK();
        },
        [&](int frame0, int count, const float *dcols) {
            size_t n = (size_t)count * ci * S;
            fold_temporal_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(dx, dcols, frame0, count, T, ci, S);
            CUDA_LAUNCH_CHECK();
        });
    launch_sum_channels(st, db, dy, 1, N * T, co, S);
}

/* ---------------------------------------------------------------------------------------------
 * normalisation */

/* One block per (image, group) of x, dy, dx (B, C, S): statistics as in the forward (double sums),
 * then per channel sum(dy) and sum(dy * xhat) (accumulated into dbeta, dgamma), then
 * dx = inv_std (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)), formed in double: in a
 * small group the three terms nearly cancel, and float would keep only their rounding. */
static __global__ void __launch_bounds__(THREADS)
group_norm_backward_kernel(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                           const float *gamma, int C, int S, int G, float eps)
{
    __shared__ double shared[THREADS / 32];
    int group = blockIdx.x % G;
    int channels = C / G;
    size_t count = (size_t)channels * S;
    size_t base = (size_t)blockIdx.x * count;
    double sum = 0.0, sum_sq = 0.0;
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
        double v = x[base + i];
        sum += v;
        sum_sq += v * v;
    }
    sum = block_sum(sum, shared);
    sum_sq = block_sum(sum_sq, shared);
    double mean = sum / count;
    double variance = sum_sq / count - mean * mean;
    if (variance < 0.0) variance = 0.0;
    double inv_std = 1.0 / sqrt(variance + (double)eps);
    double gdy_total = 0.0, gdy_xhat_total = 0.0;
    for (int ch = 0; ch < channels; ch++) {
        int c = group * channels + ch;
        const float *dy_c = dy + base + (size_t)ch * S;
        const float *x_c = x + base + (size_t)ch * S;
        double dy_sum = 0.0, dy_xhat = 0.0;
        for (int s = threadIdx.x; s < S; s += blockDim.x) {
            float g = dy_c[s];
            dy_sum += g;
            dy_xhat += (double)g * (((double)x_c[s] - mean) * inv_std);
        }
        dy_sum = block_sum(dy_sum, shared);
        dy_xhat = block_sum(dy_xhat, shared);
        if (threadIdx.x == 0) {
            if (dbeta) atomicAdd(&dbeta[c], (float)dy_sum);
            if (dgamma) atomicAdd(&dgamma[c], (float)dy_xhat);
        }
        gdy_total += gamma[c] * dy_sum;
        gdy_xhat_total += gamma[c] * dy_xhat;
    }
    if (!dx) return;
    double mean_gdy = gdy_total / count, mean_gdy_xhat = gdy_xhat_total / count;
    for (size_t i = threadIdx.x; i < count; i += blockDim.x) {
        int c = group * channels + (int)(i / S);
        double xhat = ((double)x[base + i] - mean) * inv_std;
        dx[base + i] = (float)(inv_std * ((double)gamma[c] * dy[base + i] - mean_gdy - xhat * mean_gdy_xhat));
    }
}

static void cuda_group_norm_backward(vd_backend *be, float *dx, float *dgamma, float *dbeta,
                                     const float *dy, const float *x, const float *gamma, int B,
                                     int C, int S, int G, float eps)
{
    cuda_state *st = cuda_state_of(be);
    if (B <= 0 || C <= 0 || S <= 0) return;
    group_norm_backward_kernel<<<(unsigned)((size_t)B * G), THREADS, 0, st->stream>>>(
        dx, dgamma, dbeta, dy, x, gamma, C, S, G, eps);
    CUDA_LAUNCH_CHECK();
}

/* One warp per row of x, dy, dx (M, C): the forward's statistics, kept in stats(M, 2) as (mean,
 * inv_std) for the parameter gradients, and dx when wanted. */
static __global__ void layer_norm_backward_kernel(float *dx, float *stats, const float *dy, const float *x,
                                                  const float *gamma, int M, int C, float eps)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= (size_t)M) return;
    const float *xr = x + row * C, *dyr = dy + row * C;
    float mean, inv_std;
    warp_row_stats(xr, C, eps, lane, &mean, &inv_std);
    if (stats && lane == 0) {
        stats[2 * row] = mean;
        stats[2 * row + 1] = inv_std;
    }
    if (!dx) return;
    float gdy = 0.0f, gdy_xhat = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float g = gamma[c] * dyr[c];
        gdy += g;
        gdy_xhat += g * (xr[c] - mean) * inv_std;
    }
    for (int off = 16; off; off /= 2) {
        gdy += __shfl_xor_sync(0xffffffffu, gdy, off);
        gdy_xhat += __shfl_xor_sync(0xffffffffu, gdy_xhat, off);
    }
    gdy /= C;
    gdy_xhat /= C;
    for (int c = lane; c < C; c += 32) {
        float xhat = (xr[c] - mean) * inv_std;
        dx[row * C + c] = inv_std * (gamma[c] * dyr[c] - gdy - xhat * gdy_xhat);
    }
}

/* dgamma(C) += sum over rows of dy * xhat, dbeta(C) += sum of dy; block (32, 8) over 32 columns
 * and COLUMN_ROWS_PER_BLOCK rows, grid (column tiles, row slices). */
static __global__ void layer_norm_params_kernel(float *dgamma, float *dbeta, const float *dy, const float *x,
                                                const float *stats, int M, int C)
{
    __shared__ float partial[2][8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    size_t row0 = (size_t)blockIdx.y * COLUMN_ROWS_PER_BLOCK;
    size_t row1 = min_size(row0 + COLUMN_ROWS_PER_BLOCK, (size_t)M);
    float g_sum = 0.0f, b_sum = 0.0f;
    if (col < C)
        for (size_t r = row0 + threadIdx.y; r < row1; r += blockDim.y) {
            float g = dy[r * C + col];
            b_sum += g;
            g_sum += g * (x[r * C + col] - stats[2 * r]) * stats[2 * r + 1];
        }
    partial[0][threadIdx.y][threadIdx.x] = g_sum;
    partial[1][threadIdx.y][threadIdx.x] = b_sum;
    __syncthreads();
    if (threadIdx.y == 0 && col < C) {
        for (int y = 1; y < 8; y++) {
            g_sum += partial[0][y][threadIdx.x];
            b_sum += partial[1][y][threadIdx.x];
        }
        if (dgamma) atomicAdd(&dgamma[col], g_sum);
        if (dbeta) atomicAdd(&dbeta[col], b_sum);
    }
}

static void cuda_layer_norm_backward(vd_backend *be, float *dx, float *dgamma, float *dbeta,
                                     const float *dy, const float *x, const float *gamma, int M,
                                     int C, float eps)
{
    cuda_state *st = cuda_state_of(be);
    bool params = dgamma || dbeta;
    if (M <= 0 || C <= 0 || (!dx && !params)) return;
    int rows_per_block = THREADS / 32;
    /* the statistics go in bands of rows so that their buffer stays small */
    size_t band = min_size(CHUNK_BYTES / (2 * sizeof(float)), COLUMN_ROWS_PER_LAUNCH);
    float *stats = params ? (float *)cuda_scratch_reserve(&st->workspace, min_size(band, (size_t)M) * 2 * sizeof(float)) : NULL;
    for (size_t row0 = 0; row0 < (size_t)M; row0 += band) {
        int rows = (int)min_size(band, (size_t)M - row0);
        const float *dy_band = dy + row0 * C, *x_band = x + row0 * C;
        layer_norm_backward_kernel<<<(unsigned)(((size_t)rows + rows_per_block - 1) / rows_per_block), THREADS, 0,
                                     st->stream>>>(dx ? dx + row0 * C : NULL, stats, dy_band, x_band, gamma, rows, C, eps);
        CUDA_LAUNCH_CHECK();
        if (!params) continue;
        size_t slices = ((size_t)rows + COLUMN_ROWS_PER_BLOCK - 1) / COLUMN_ROWS_PER_BLOCK;
        dim3 grid((unsigned)((C + 31) / 32), (unsigned)slices);
        layer_norm_params_kernel<<<grid, dim3(32, 8), 0, st->stream>>>(dgamma, dbeta, dy_band, x_band, stats, rows, C);
        CUDA_LAUNCH_CHECK();
    }
}

/* ---------------------------------------------------------------------------------------------
 * elementwise */

struct silu_grad {
    __device__ float operator()(float g, float v) const
    {
        float s = 1.0f / (1.0f + expf(-v));
        return g * s * (1.0f + v * (1.0f - s));
    }
};

struct gelu_grad {
    __device__ float operator()(float g, float v) const
    {
        float cdf = 0.5f * erfcf(-v * 0.70710678118654752f); /* accurate in the negative tail */
        float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        return g * (cdf + v * pdf);
    }
};

template <typename Op> static __global__ void unary_backward_kernel(float *dx, const float *dy, const float *x, size_t n, Op op)
{
    GRID_STRIDE(i, n) dx[i] = op(dy[i], x[i]);
}

template <typename Op> static void launch_unary_backward(vd_backend *be, float *dx, const float *dy, const float *x, size_t n, Op op)
{
    cuda_state *st = cuda_state_of(be);
    if (!dx || !n) return;
    unary_backward_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(dx, dy, x, n, op);
    CUDA_LAUNCH_CHECK();
}

static void cuda_silu_backward(vd_backend *be, float *dx, const float *dy, const float *x, size_t n)
{
    launch_unary_backward(be, dx, dy, x, n, silu_grad());
}

static void cuda_gelu_backward(vd_backend *be, float *dx, const float *dy, const float *x, size_t n)
{
    launch_unary_backward(be, dx, dy, x, n, gelu_grad());
}

/* ---------------------------------------------------------------------------------------------
 * attention */

/* Per row of p, dp (rows, n): ds = scale * p (dp - sum_j p dp), written over dp; with bf16 copies
 * p16 and ds16 as well (when p16 is not NULL). One warp per row. */
static __global__ void softmax_backward_kernel(float *dp, const float *p, __nv_bfloat16 *p16,
                                               __nv_bfloat16 *ds16, size_t rows, int n, float scale)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float *pr = p + row * n;
    float *dr = dp + row * n;
    float dot = 0.0f;
    for (int j = lane; j < n; j += 32) dot += pr[j] * dr[j];
    for (int off = 16; off; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    for (int j = lane; j < n; j += 32) {
        float ds = scale * pr[j] * (dr[j] - dot);
        dr[j] = ds;
        if (p16) {
            p16[row * n + j] = __float2bfloat16_rn(pr[j]);
            ds16[row * n + j] = __float2bfloat16_rn(ds);
        }
    }
}

/* For each head, kv_group member r and chunk of key/value entries, the scores of a band of query
 * rows are recomputed for all the chunk's entries at once (batched GEMMs, one batch entry per
 * key/value entry), then dq is written and dk, dv accumulate (zeroed first). In bf16 the chunk's
 * q, dout, k and v are staged as bf16, and so are p and ds. */
static void cuda_attention_backward(vd_backend *be, float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v, int B, int Lq,
                                    int Lk, int heads, int d, int kv_group)
{
    cuda_state *st = cuda_state_of(be);
    if (B <= 0 || heads <= 0 || d <= 0 || kv_group <= 0) return;
    int entries = (B + kv_group - 1) / kv_group;
    size_t rs = (size_t)heads * d;
    size_t q_entry = (size_t)Lq * rs, kv_entry = (size_t)Lk * rs;
    if (dk) CUDA_CHECK(cudaMemsetAsync(dk, 0, (size_t)entries * kv_entry * sizeof(float), st->stream));
    if (dv) CUDA_CHECK(cudaMemsetAsync(dv, 0, (size_t)entries * kv_entry * sizeof(float), st->stream));
    if (Lq <= 0) return;
    if (Lk <= 0) { /* the output was the empty sum */
        if (dq) CUDA_CHECK(cudaMemsetAsync(dq, 0, (size_t)B * q_entry * sizeof(float), st->stream));
        return;
    }
    if (!dq && !dk && !dv) return;
    bool bf16 = use_bf16(be);
    size_t elem = bf16 ? sizeof(__nv_bfloat16) : sizeof(float);

    /* A band of query rows per entry, then as many entries as the scores (p and dp in fp32, plus
     * their bf16 copies) and the staged operands allow. */
    size_t score_row = (size_t)Lk * (2 * sizeof(float) + (bf16 ? 2 * sizeof(__nv_bfloat16) : 0));
    int band = (int)min_size((size_t)Lq, CHUNK_BYTES / score_row > 0 ? CHUNK_BYTES / score_row : 1);
    size_t per_chunk = CHUNK_BYTES / ((size_t)band * score_row);
    if (bf16) per_chunk = min_size(per_chunk, CHUNK_BYTES / ((2 * (size_t)kv_group * q_entry + 2 * kv_entry) * elem));
    per_chunk = min_size(per_chunk ? per_chunk : 1, (size_t)entries);

    size_t scores = per_chunk * band * Lk;
    float *p = (float *)cuda_scratch_reserve(&st->workspace, 2 * scores * sizeof(float));
    float *dp = p + scores;
    __nv_bfloat16 *p16 = NULL, *ds16 = NULL;
    __nv_bfloat16 *q16 = NULL, *dout16 = NULL, *k16 = NULL, *v16 = NULL;
    if (bf16) {
        p16 = (__nv_bfloat16 *)cuda_scratch_reserve(&st->staging_output, 2 * scores * sizeof(__nv_bfloat16));
        ds16 = p16 + scores;
        q16 = (__nv_bfloat16 *)cuda_scratch_reserve(&st->staging_input, 2 * per_chunk * kv_group * q_entry * sizeof(__nv_bfloat16));
        dout16 = q16 + per_chunk * kv_group * q_entry;
        k16 = (__nv_bfloat16 *)cuda_scratch_reserve(&st->staging_weight, 2 * per_chunk * kv_entry * sizeof(__nv_bfloat16));
        v16 = k16 + per_chunk * kv_entry;
    }
    float scale = 1.0f / sqrtf((float)d);
    long long q_stride = (long long)kv_group * q_entry, kv_stride = (long long)kv_entry;

    for (size_t e0 = 0; e0 < (size_t)entries; e0 += per_chunk) {
        size_t count = min_size(per_chunk, (size_t)entries - e0);
        size_t b0 = e0 * kv_group, b_end = min_size((e0 + count) * kv_group, (size_t)B);
        /* the chunk's operands: fp32 in place, or bf16 copies laid out alike */
        const void *q_op = q + b0 * q_entry, *dout_op = dout + b0 * q_entry;
        const void *k_op = k + e0 * kv_entry, *v_op = v + e0 * kv_entry;
        if (bf16) {
            size_t qn = (b_end - b0) * q_entry, kn = count * kv_entry;
            to_bf16_kernel<<<grid_for(st, qn), THREADS, 0, st->stream>>>(q16, q + b0 * q_entry, qn);
            to_bf16_kernel<<<grid_for(st, qn), THREADS, 0, st->stream>>>(dout16, dout + b0 * q_entry, qn);
            to_bf16_kernel<<<grid_for(st, kn), THREADS, 0, st->stream>>>(k16, k + e0 * kv_entry, kn);
            to_bf16_kernel<<<grid_for(st, kn), THREADS, 0, st->stream>>>(v16, v + e0 * kv_entry, kn);
            CUDA_LAUNCH_CHECK();
            q_op = q16, dout_op = dout16, k_op = k16, v_op = v16;
        }
        for (int r = 0; r < kv_group; r++) {
            /* entries of the chunk that have a member r (only the batch's last entry may not) */
            int batch = 0;
            while ((size_t)batch < count && b0 + (size_t)batch * kv_group + r < (size_t)B) batch++;
            for (int h = 0; h < heads; h++) {
                for (int row0 = 0; row0 < Lq; row0 += band) {
                    int rows = Lq - row0 < band ? Lq - row0 : band;
                    long long score_stride = (long long)rows * Lk;
                    size_t q_off = ((size_t)r * Lq + row0) * rs + (size_t)h * d;
                    const void *q_h = offset_of(q_op, bf16, q_off), *dout_h = offset_of(dout_op, bf16, q_off);
                    const void *k_h = offset_of(k_op, bf16, (size_t)h * d), *v_h = offset_of(v_op, bf16, (size_t)h * d);
                    /* p(rows, Lk) = softmax(scale q k^T): column-major (Lk, rows) = K (Lk, d) Q^T */
                    gemm(st, bf16, CUBLAS_OP_T, CUBLAS_OP_N, Lk, rows, d, scale, k_h, (int)rs, kv_stride, q_h,
                         (int)rs, q_stride, 0.0f, p, Lk, score_stride, batch);
                    size_t score_rows = (size_t)batch * rows;
                    cuda_softmax_rows(st, p, score_rows, Lk);
                    /* dp(rows, Lk) = dout v^T: column-major (Lk, rows) = V (Lk, d) dout^T */
                    gemm(st, bf16, CUBLAS_OP_T, CUBLAS_OP_N, Lk, rows, d, 1.0f, v_h, (int)rs, kv_stride, dout_h,
                         (int)rs, q_stride, 0.0f, dp, Lk, score_stride, batch);
                    softmax_backward_kernel<<<(unsigned)((score_rows + 7) / 8), THREADS, 0, st->stream>>>(
                        dp, p, p16, ds16, score_rows, Lk, scale);
                    CUDA_LAUNCH_CHECK();
                    const void *p_op = bf16 ? (const void *)p16 : (const void *)p;
                    const void *ds_op = bf16 ? (const void *)ds16 : (const void *)dp;
                    size_t kv_off = e0 * kv_entry + (size_t)h * d;
                    /* dq(rows, d) = ds k: column-major (d, rows) = K^T (d, Lk) ds^T (Lk, rows) */
                    if (dq)
                        gemm(st, bf16, CUBLAS_OP_N, CUBLAS_OP_N, d, rows, Lk, 1.0f, k_h, (int)rs, kv_stride, ds_op,
                             Lk, score_stride, 0.0f, dq + b0 * q_entry + q_off, (int)rs, q_stride, batch);
                    /* dk(Lk, d) += ds^T q: column-major (d, Lk) += Q^T (d, rows) ds (rows, Lk) */
                    if (dk)
                        gemm(st, bf16, CUBLAS_OP_N, CUBLAS_OP_T, d, Lk, rows, 1.0f, q_h, (int)rs, q_stride, ds_op,
                             Lk, score_stride, 1.0f, dk + kv_off, (int)rs, kv_stride, batch);
                    /* dv(Lk, d) += p^T dout */
                    if (dv)
                        gemm(st, bf16, CUBLAS_OP_N, CUBLAS_OP_T, d, Lk, rows, 1.0f, dout_h, (int)rs, q_stride, p_op,
                             Lk, score_stride, 1.0f, dv + kv_off, (int)rs, kv_stride, batch);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * layout and embeddings */

/* dx(B, C, H, W) = sum of each 2x2 block of dy(B, C, 2H, 2W). */
static __global__ void upsample2x_backward_kernel(float *dx, const float *dy, size_t planes, int H, int W)
{
    GRID_STRIDE(i, planes * H * W)
    {
        size_t plane = i / ((size_t)H * W);
        int pixel = (int)(i % ((size_t)H * W));
        int y = pixel / W, x = pixel % W;
        const float *top = dy + (plane * 2 * H + 2 * y) * (size_t)(2 * W) + 2 * x;
        const float *bottom = top + 2 * W;
        dx[i] = (top[0] + top[1]) + (bottom[0] + bottom[1]);
    }
}

static void cuda_upsample2x_backward(vd_backend *be, float *dx, const float *dy, int B, int C, int H, int W)
{
    cuda_state *st = cuda_state_of(be);
    size_t n = (size_t)B * C * H * W;
    if (!dx || !n) return;
    upsample2x_backward_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(dx, dy, (size_t)B * C, H, W);
    CUDA_LAUNCH_CHECK();
}

static void cuda_concat_channels_backward(vd_backend *be, float *da, float *db, const float *dy, int ca,
                                          int cb, int B, int S)
{
    cuda_state *st = cuda_state_of(be);
    size_t row = (size_t)(ca + cb) * S * sizeof(float);
    /* each image's part is one contiguous run: a strided 2D copy */
    if (da && ca > 0 && S > 0 && B > 0)
        CUDA_CHECK(cudaMemcpy2DAsync(da, (size_t)ca * S * sizeof(float), dy, row, (size_t)ca * S * sizeof(float),
                                     (size_t)B, cudaMemcpyDeviceToDevice, st->stream));
    if (db && cb > 0 && S > 0 && B > 0)
        CUDA_CHECK(cudaMemcpy2DAsync(db, (size_t)cb * S * sizeof(float), dy + (size_t)ca * S, row,
                                     (size_t)cb * S * sizeof(float), (size_t)B, cudaMemcpyDeviceToDevice, st->stream));
}

static void cuda_add_broadcast_backward(vd_backend *be, float *dx, const float *dy, size_t outer, size_t inner)
{
    launch_sum_columns(cuda_state_of(be), dx, dy, outer, inner);
}

static void cuda_add_channel_bias_backward(vd_backend *be, float *dbias, const float *dy, int N, int T, int C,
                                           int S)
{
    launch_sum_channels(cuda_state_of(be), dbias, dy, N, T, C, S);
}

static __global__ void embedding_backward_kernel(float *dtable, const float *dy, const int32_t *ids, int n, int dim)
{
    GRID_STRIDE(idx, (size_t)n * dim)
    {
        size_t m = idx / dim;
        atomicAdd(&dtable[(size_t)ids[m] * dim + idx % dim], dy[idx]);
    }
}

static void cuda_embedding_backward(vd_backend *be, float *dtable, const float *dy, const int32_t *ids, int n,
                                    int dim)
{
    cuda_state *st = cuda_state_of(be);
    size_t count = (size_t)n * dim;
    if (!dtable || !count) return;
    embedding_backward_kernel<<<grid_for(st, count), THREADS, 0, st->stream>>>(dtable, dy, ids, n, dim);
    CUDA_LAUNCH_CHECK();
}

/* ---------------------------------------------------------------------------------------------
 * training */

/* partials[block] = sum of weight (pred - target)^2 (target NULL: of pred^2; weight NULL: 1) over
 * the block's share, in double; dpred = factor weight (pred - target) when dpred is not NULL. */
static __global__ void squares_kernel(double *partials, float *dpred, const float *pred, const float *target,
                                      const float *weight, size_t n, float factor)
{
    __shared__ double shared[THREADS / 32];
    double sum = 0.0;
    GRID_STRIDE(i, n)
    {
        float diff = target ? pred[i] - target[i] : pred[i], wi = weight ? weight[i] : 1.0f;
        sum += (double)wi * diff * diff;
        if (dpred) dpred[i] = factor * wi * diff;
    }
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

/* partials[0] = sum of partials[0 .. count) in one block. */
static __global__ void finish_sum_kernel(double *partials, unsigned count)
{
    __shared__ double shared[THREADS / 32];
    double sum = 0.0;
    for (unsigned i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) partials[0] = sum;
}

/* The weighted sum of squares of pred - target (or of pred) over n values, to the host; writes dpred. */
static double squares_to_host(cuda_state *st, float *dpred, const float *pred, const float *target,
                              const float *weight, size_t n, float factor)
{
    unsigned blocks = grid_for(st, n);
    double *partials = (double *)cuda_scratch_reserve(&st->workspace, blocks * sizeof(double));
    squares_kernel<<<blocks, THREADS, 0, st->stream>>>(partials, dpred, pred, target, weight, n, factor);
    CUDA_LAUNCH_CHECK();
    finish_sum_kernel<<<1, THREADS, 0, st->stream>>>(partials, blocks);
    CUDA_LAUNCH_CHECK();
    double total = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&total, partials, sizeof total, cudaMemcpyDeviceToHost, st->stream));
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    return total;
}

static void cuda_mse_loss(vd_backend *be, float *loss, float *dpred, const float *pred, const float *target,
                          const float *weight, size_t n, float scale)
{
    if (!n) {
        if (loss) *loss = 0.0f;
        return;
    }
    double total = squares_to_host(cuda_state_of(be), dpred, pred, target, weight, n, (float)(2.0 / n * scale));
    if (loss) *loss = (float)(total / n);
}

static void cuda_sum_squares(vd_backend *be, double *out, const float *x, size_t n)
{
    *out = n ? squares_to_host(cuda_state_of(be), NULL, x, NULL, NULL, n, 0.0f) : 0.0;
}

/* One AdamW step; correction1, correction2 are 1 - beta^step. */
static __global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                                    float beta1, float beta2, float eps, float weight_decay, float correction1,
                                    float correction2, float grad_scale)
{
    GRID_STRIDE(i, n)
    {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float update = (mi / correction1) / (sqrtf(vi / correction2) + eps);
        param[i] -= lr * (update + weight_decay * param[i]);
    }
}

static void cuda_adamw(vd_backend *be, float *param, const float *grad, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, int step, float grad_scale)
{
    cuda_state *st = cuda_state_of(be);
    if (!n) return;
    float correction1 = (float)(1.0 - pow(beta1, step)), correction2 = (float)(1.0 - pow(beta2, step));
    adamw_kernel<<<grid_for(st, n), THREADS, 0, st->stream>>>(param, grad, m, v, n, lr, beta1, beta2, eps,
                                                              weight_decay, correction1, correction2, grad_scale);
    CUDA_LAUNCH_CHECK();
}

/* ---------------------------------------------------------------------------------------------
 * registration */

void cuda_set_backward_ops(vd_backend *be)
{
    be->conv2d_backward = cuda_conv2d_backward;
    be->temporal_conv_backward = cuda_temporal_conv_backward;
    be->group_norm_backward = cuda_group_norm_backward;
    be->layer_norm_backward = cuda_layer_norm_backward;
    be->silu_backward = cuda_silu_backward;
    be->gelu_backward = cuda_gelu_backward;
    be->linear_backward = cuda_linear_backward;
    be->attention_backward = cuda_attention_backward;
    be->upsample2x_backward = cuda_upsample2x_backward;
    be->concat_channels_backward = cuda_concat_channels_backward;
    be->add_broadcast_backward = cuda_add_broadcast_backward;
    be->add_channel_bias_backward = cuda_add_channel_bias_backward;
    be->embedding_backward = cuda_embedding_backward;
    be->mse_loss = cuda_mse_loss;
    be->sum_squares = cuda_sum_squares;
    be->adamw = cuda_adamw;
}
