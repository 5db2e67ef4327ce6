/* Paged KV cache write: one block per token, k and v together. */
#include "device.cuh"
#include "kvcache.h"

static __global__ void
kv_write_kernel(const __half *qkv, int stride, const int32_t *positions,
    const int32_t *seq_of_token, const int32_t *block_table, int max_blocks,
    int nh, int nkv, int head_dim, int block_size, __half *k_cache,
    __half *v_cache)
{
    int           pos = positions[blockIdx.x], width = nkv * head_dim;
    int32_t       block = block_table[(size_t) seq_of_token[blockIdx.x]
                                      * max_blocks + pos / block_size];
    size_t        off = infer_kv_offset(block, pos % block_size, block_size,
                                        nkv, head_dim);
    const __half *k = qkv + (size_t) blockIdx.x * stride
                      + (size_t) nh * head_dim;

    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        k_cache[off + i] = k[i];
        v_cache[off + i] = k[width + i];
    }
}

extern "C" int
infer_cuda_kv_write(const uint16_t *qkv, int stride,
    const int32_t *positions, const int32_t *seq_of_token,
    const int32_t *block_table, int max_blocks, int n, int nh, int nkv,
    int head_dim, int block_size, uint16_t *k_cache, uint16_t *v_cache,
    void *stream)
{
    if (n > 0) {
        kv_write_kernel<<<n, 128, 0, (cudaStream_t) stream>>>(
            reinterpret_cast<const __half *>(qkv), stride, positions,
            seq_of_token, block_table, max_blocks, nh, nkv, head_dim,
            block_size, reinterpret_cast<__half *>(k_cache),
            reinterpret_cast<__half *>(v_cache));
    }
    return (int) cudaGetLastError();
}
