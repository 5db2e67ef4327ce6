/* CPU reference for the paged KV cache write. */
#include <string.h>
#include "kvcache.h"

void
infer_ref_kv_write(const float *qkv, int stride, const int32_t *positions,
    const int32_t *seq_of_token, const int32_t *block_table, int max_blocks,
    int n, int nh, int nkv, int head_dim, int block_size, float *k_cache,
    float *v_cache)
{
    const float *row;
    size_t       off, width = (size_t) nkv * head_dim;
    int32_t      block;
    int          t, pos;

    for (t = 0; t < n; t++) {
        pos = positions[t];
        block = block_table[(size_t) seq_of_token[t] * max_blocks
                            + pos / block_size];
        off = infer_kv_offset(block, pos % block_size, block_size, nkv,
                              head_dim);
        row = qkv + (size_t) t * stride + (size_t) nh * head_dim;
        memcpy(k_cache + off, row, width * sizeof(float));
        memcpy(v_cache + off, row + width, width * sizeof(float));
    }
}
