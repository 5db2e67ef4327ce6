/* Embedding gather: one block per token. */
#include "device.cuh"
#include "embed.h"

static __global__ void
embed_kernel(const __half *table, const int32_t *tokens, int hidden,
    float *x)
{
    const __half *src = table + (size_t) tokens[blockIdx.x] * hidden;
    float        *dst = x + (size_t) blockIdx.x * hidden;

    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        dst[i] = __half2float(src[i]);
    }
}

extern "C" int
infer_cuda_embed(const uint16_t *table, const int32_t *tokens, int n,
    int hidden, float *x, void *stream)
{
    if (n > 0) {
        embed_kernel<<<n, 256, 0, (cudaStream_t) stream>>>(
            reinterpret_cast<const __half *>(table), tokens, hidden, x);
    }
    return (int) cudaGetLastError();
}
