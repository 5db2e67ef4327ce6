/*
 * Paged KV cache write.  The cache of one layer is a pool of blocks; a
 * block holds block_size token slots of [nkv][head_dim] keys (and values,
 * in a second pool of the same shape).  Token t of sequence s at position
 * p goes to block block_table[s * max_blocks + p / block_size], slot
 * p % block_size.  k and v are read from the fused projection rows
 * [q | k | v] (after RoPE), `stride` elements apart.
 */
#ifndef INFER_KERNELS_KVCACHE_H
#define INFER_KERNELS_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __CUDACC__
#define INFER_HOST_DEVICE __host__ __device__
#else
#define INFER_HOST_DEVICE
#endif

/* Element offset of (block, slot, kv head 0, dim 0) in a pool. */
static inline INFER_HOST_DEVICE size_t
infer_kv_offset(int32_t block, int slot, int block_size, int nkv,
    int head_dim)
{
    return ((size_t) block * block_size + slot) * nkv * head_dim;
}

int infer_cuda_kv_write(const uint16_t *qkv, int stride,
    const int32_t *positions, const int32_t *seq_of_token,
    const int32_t *block_table, int max_blocks, int n, int nh, int nkv,
    int head_dim, int block_size, uint16_t *k_cache, uint16_t *v_cache,
    void *stream);

void infer_ref_kv_write(const float *qkv, int stride,
    const int32_t *positions, const int32_t *seq_of_token,
    const int32_t *block_table, int max_blocks, int n, int nh, int nkv,
    int head_dim, int block_size, float *k_cache, float *v_cache);

#ifdef __cplusplus
}
#endif

#endif
