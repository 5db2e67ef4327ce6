/* The sublayer norm fused with the residual add: one block per output
 * row, every sum a block reduction in fp32. */
#include "device.cuh"
#include "norm.h"

static __global__ void
norm_residual_kernel(infer_norm_args_t a)
{
    int           row = a.rows ? a.rows[blockIdx.x] : (int) blockIdx.x;
    int           H = a.hidden;
    float        *xr = a.x + (size_t) row * H;
    const __half *d = a.delta == nullptr ? nullptr
                      : as_half(a.delta) + (size_t) row * H;
    __half       *o = as_half(a.out) + (size_t) blockIdx.x * H;
    float         ss = 0.0f, v, r = 1.0f, mean = 0.0f;

    if (a.delta != nullptr) {
        if (a.delta_norm != nullptr) {
            for (int j = threadIdx.x; j < H; j += blockDim.x) {
                v = __half2float(d[j]);
                if (a.delta_bias != nullptr) {
                    v += __half2float(as_half(a.delta_bias)[j]);
                }
                ss += v * v;
            }
            r = rsqrtf(block_sum(ss) / H + a.eps);
        }
        for (int j = threadIdx.x; j < H; j += blockDim.x) {
            v = __half2float(d[j]);
            if (a.delta_bias != nullptr) {
                v += __half2float(as_half(a.delta_bias)[j]);
            }
            if (a.delta_norm != nullptr) {
                v = v * r * __half2float(as_half(a.delta_norm)[j]);
            }
            xr[j] += v;
        }
        __syncthreads();        /* x[j] is summed by other threads below */
    }
    if (a.b != nullptr) {
        ss = 0.0f;
        for (int j = threadIdx.x; j < H; j += blockDim.x) {
            ss += xr[j];
        }
        mean = block_sum(ss) / H;
    }
    ss = 0.0f;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        v = xr[j] - mean;
        ss += v * v;
    }
    r = rsqrtf(block_sum(ss) / H + a.eps);
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        v = (xr[j] - mean) * r * __half2float(as_half(a.w)[j]);
        if (a.b != nullptr) {
            v += __half2float(as_half(a.b)[j]);
        }
        o[j] = __float2half(v);
    }
}

extern "C" int
infer_cuda_norm_residual(const infer_norm_args_t *a, void *stream)
{
    int threads = a->hidden >= 4096 ? 1024 : a->hidden >= 1024 ? 512 : 128;

    if (a->n > 0) {
        norm_residual_kernel<<<a->n, threads, 0, (cudaStream_t) stream>>>(
            *a);
    }
    return (int) cudaGetLastError();
}
