/* RMSNorm fused with the residual add: one block per output row. */
#include "device.cuh"
#include "rmsnorm.h"

static __global__ void
rmsnorm_residual_kernel(float *x, const __half *delta, const __half *w,
    const int32_t *rows, int hidden, float eps, __half *out)
{
    int     row = rows ? rows[blockIdx.x] : (int) blockIdx.x;
    float  *xr = x + (size_t) row * hidden;
    __half *o = out + (size_t) blockIdx.x * hidden;
    float   ss = 0.0f, v, r;

    for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
        v = xr[j];
        if (delta != nullptr) {
            v += __half2float(delta[(size_t) row * hidden + j]);
            xr[j] = v;
        }
        ss += v * v;
    }
    r = rsqrtf(block_sum(ss) / hidden + eps);
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
        o[j] = __float2half(xr[j] * r * __half2float(w[j]));
    }
}

extern "C" int
infer_cuda_rmsnorm_residual(float *x, const uint16_t *delta,
    const uint16_t *w, const int32_t *rows, int n, int hidden, float eps,
    uint16_t *out, void *stream)
{
    int threads = hidden >= 4096 ? 1024 : hidden >= 1024 ? 512 : 128;

    if (n > 0) {
        rmsnorm_residual_kernel<<<n, threads, 0, (cudaStream_t) stream>>>(
            x, reinterpret_cast<const __half *>(delta),
            reinterpret_cast<const __half *>(w), rows, hidden, eps,
            reinterpret_cast<__half *>(out));
    }
    return (int) cudaGetLastError();
}
