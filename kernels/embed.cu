/* Embedding gather (scaled, plus learned positions): one block per token. */
#include "device.cuh"
#include "embed.h"

static __global__ void
embed_kernel(const __half *table, const __half *pos_table,
    const int32_t *tokens, const int32_t *positions, int hidden, float scale,
    float *x)
{
    const __half *src = table + (size_t) tokens[blockIdx.x] * hidden;
    const __half *pos = pos_table == nullptr ? nullptr
                        : pos_table + (size_t) positions[blockIdx.x] * hidden;
    float        *dst = x + (size_t) blockIdx.x * hidden;
    float         v;

    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        v = __half2float(src[i]) * scale;
        if (pos != nullptr) {
            v += __half2float(pos[i]);
        }
        dst[i] = v;
    }
}

extern "C" int
infer_cuda_embed(const uint16_t *table, const uint16_t *pos_table,
    const int32_t *tokens, const int32_t *positions, int n, int hidden,
    float scale, float *x, void *stream)
{
    if (n > 0) {
        embed_kernel<<<n, 256, 0, (cudaStream_t) stream>>>(
            reinterpret_cast<const __half *>(table),
            reinterpret_cast<const __half *>(pos_table), tokens, positions,
            hidden, scale, x);
    }
    return (int) cudaGetLastError();
}
