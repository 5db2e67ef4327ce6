/* The MLP activation, gated (SwiGLU, GeGLU) or not (GPT-2). */
#include "act.h"
#include "device.cuh"

static __device__ __forceinline__ float
act_f(float x, int act)
{
    if (act == INFER_KACT_GELU) {
        return x * 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    }
    if (act == INFER_KACT_GELU_TANH) {
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f
                                        * (x + 0.044715f * x * x * x)));
    }
    return x / (1.0f + expf(-x));
}

static __global__ void
act_kernel(const __half *in, const __half *bias, size_t total, int inter,
    int gated, int act, __half *out)
{
    size_t i, t;
    int    c;
    float  g, u;

    for (i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < total;
         i += (size_t) gridDim.x * blockDim.x)
    {
        t = i / inter;
        c = (int) (i - t * inter);
        if (gated) {
            g = __half2float(in[i + t * inter]);
            u = __half2float(in[i + (t + 1) * inter]);
            if (bias != nullptr) {
                g += __half2float(bias[c]);
                u += __half2float(bias[inter + c]);
            }
            out[i] = __float2half(act_f(g, act) * u);
        } else {
            u = __half2float(in[i]);
            if (bias != nullptr) {
                u += __half2float(bias[c]);
            }
            out[i] = __float2half(act_f(u, act));
        }
    }
}

extern "C" int
infer_cuda_act(const uint16_t *in, const uint16_t *bias, int n, int inter,
    int gated, int act, uint16_t *out, void *stream)
{
    size_t total = (size_t) n * inter;
    size_t blocks = (total + 255) / 256;

    if (total > 0) {
        act_kernel<<<blocks < 65536 ? (unsigned) blocks : 65536u, 256, 0,
                     (cudaStream_t) stream>>>(
            reinterpret_cast<const __half *>(in),
            reinterpret_cast<const __half *>(bias), total, inter, gated, act,
            reinterpret_cast<__half *>(out));
    }
    return (int) cudaGetLastError();
}
