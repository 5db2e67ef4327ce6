/* SwiGLU over the fused [gate | up] rows. */
#include "device.cuh"
#include "swiglu.h"

static __global__ void
swiglu_kernel(const __half *gate_up, size_t total, int inter, __half *out)
{
    size_t i, t;
    float  g, u;

    for (i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < total;
         i += (size_t) gridDim.x * blockDim.x)
    {
        t = i / inter;
        g = __half2float(gate_up[i + t * inter]);
        u = __half2float(gate_up[i + (t + 1) * inter]);
        out[i] = __float2half(g / (1.0f + expf(-g)) * u);
    }
}

extern "C" int
infer_cuda_swiglu(const uint16_t *gate_up, int n, int inter, uint16_t *out,
    void *stream)
{
    size_t total = (size_t) n * inter;
    size_t blocks = (total + 255) / 256;

    if (total > 0) {
        swiglu_kernel<<<blocks < 65536 ? (unsigned) blocks : 65536u, 256, 0,
                        (cudaStream_t) stream>>>(
            reinterpret_cast<const __half *>(gate_up), total, inter,
            reinterpret_cast<__half *>(out));
    }
    return (int) cudaGetLastError();
}
