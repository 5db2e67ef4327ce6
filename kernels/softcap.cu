/* Logit soft-cap, elementwise. */
#include "device.cuh"
#include "softcap.h"

static __global__ void
softcap_kernel(float *x, size_t n, float cap)
{
    for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n;
         i += (size_t) gridDim.x * blockDim.x)
    {
        x[i] = tanhf(x[i] / cap) * cap;
    }
}

extern "C" int
infer_cuda_softcap(float *x, size_t n, float cap, void *stream)
{
    size_t blocks = (n + 255) / 256;

    if (n > 0) {
        softcap_kernel<<<blocks < 65536 ? (unsigned) blocks : 65536u, 256, 0,
                         (cudaStream_t) stream>>>(x, n, cap);
    }
    return (int) cudaGetLastError();
}
