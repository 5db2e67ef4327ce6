/*
 * W8A16 decode product: one warp per row of W, each lane 8 weights (8
 * bytes) and the 8 matching fp16 activations (16 bytes) of every token at
 * a time, fp32 sums reduced over the warp.
 */
#include "device.cuh"
#include "gemm_w8.h"

#define W8_TOKENS  8              /* tokens a launch sums for */
#define W8_WARPS   4              /* rows per block */

template <int N>
static __global__ void
gemm_w8a16_kernel(const __half *x, const int8_t *w, const float *scale,
    int n, int in, int out, __half *y)
{
    int           row = blockIdx.x * W8_WARPS + threadIdx.x / 32;
    int           lane = threadIdx.x % 32, i, t, k;
    float         acc[N], wf[8];
    const int8_t *wr;

    /* the whole warp leaves together: warp_sum needs every lane */
    if (row >= out) {
        return;
    }
    wr = w + (size_t) row * in;
#pragma unroll
    for (t = 0; t < N; t++) {
        acc[t] = 0.0f;
    }
    if ((in & 7) == 0) {
        /* rows of W 8-byte aligned, rows of x 16-byte aligned */
        for (i = lane * 8; i < in; i += 32 * 8) {
            int2          wv = *reinterpret_cast<const int2 *>(wr + i);
            const int8_t *wb = reinterpret_cast<const int8_t *>(&wv);

#pragma unroll
            for (k = 0; k < 8; k++) {
                wf[k] = (float) wb[k];
            }
#pragma unroll
            for (t = 0; t < N; t++) {
                if (t < n) {
                    uint4          xv = *reinterpret_cast<const uint4 *>(
                                            x + (size_t) t * in + i);
                    const __half2 *h = reinterpret_cast<const __half2 *>(
                                           &xv);

#pragma unroll
                    for (k = 0; k < 4; k++) {
                        float2 f = __half22float2(h[k]);

                        acc[t] = fmaf(f.x, wf[2 * k], acc[t]);
                        acc[t] = fmaf(f.y, wf[2 * k + 1], acc[t]);
                    }
                }
            }
        }
    } else {
        for (i = lane; i < in; i += 32) {
            float wi = (float) wr[i];

#pragma unroll
            for (t = 0; t < N; t++) {
                if (t < n) {
                    acc[t] = fmaf(__half2float(x[(size_t) t * in + i]), wi,
                                  acc[t]);
                }
            }
        }
    }
#pragma unroll
    for (t = 0; t < N; t++) {
        if (t < n) {
            float s = warp_sum(acc[t]);

            if (lane == 0) {
                y[(size_t) t * out + row] = __float2half(s * scale[row]);
            }
        }
    }
}

extern "C" int
infer_cuda_gemm_w8a16(const uint16_t *x, const int8_t *w, const float *scale,
    int n, int in, int out, uint16_t *y, void *stream)
{
    unsigned      blocks = (unsigned) ((out + W8_WARPS - 1) / W8_WARPS);
    const __half *hx = reinterpret_cast<const __half *>(x);
    __half       *hy = reinterpret_cast<__half *>(y);
    int           t0, m;

    for (t0 = 0; t0 < n && out > 0; t0 += W8_TOKENS) {
        m = n - t0 < W8_TOKENS ? n - t0 : W8_TOKENS;
        if (m == 1) {
            gemm_w8a16_kernel<1><<<blocks, 32 * W8_WARPS, 0,
                                   (cudaStream_t) stream>>>(
                hx + (size_t) t0 * in, w, scale, 1, in, out,
                hy + (size_t) t0 * out);
        } else {
            gemm_w8a16_kernel<W8_TOKENS><<<blocks, 32 * W8_WARPS, 0,
                                           (cudaStream_t) stream>>>(
                hx + (size_t) t0 * in, w, scale, m, in, out,
                hy + (size_t) t0 * out);
        }
    }
    return (int) cudaGetLastError();
}

/* One element a thread, over the whole block of rows. */
static __global__ void
dequant_w8_kernel(const int8_t *w, const float *scale, int in, size_t n,
    __half *y)
{
    size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        y[i] = __float2half(scale[i / in] * (float) w[i]);
    }
}

extern "C" int
infer_cuda_dequant_w8(const int8_t *w, const float *scale, int rows, int in,
    uint16_t *y, void *stream)
{
    size_t n = (size_t) rows * in;

    if (n == 0) {
        return 0;
    }
    dequant_w8_kernel<<<(unsigned) ((n + 255) / 256), 256, 0,
                        (cudaStream_t) stream>>>(
        w, scale, in, n, reinterpret_cast<__half *>(y));
    return (int) cudaGetLastError();
}
