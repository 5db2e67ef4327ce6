/*
 * Rotary position embedding, Hugging Face rotate_half layout: within each
 * head, element j pairs with j + head_dim/2 and turns by the angle
 * pos * inv_freq[j], inv_freq[j] = theta^(-2j/head_dim).
 *
 * Works in place on the fused projection rows [q (nh heads) | k (nkv) |
 * v (nkv)], each row `stride` elements apart.  When bias is not NULL
 * (qwen2) it is added to q, k and v first, so the bias add costs no pass
 * of its own.
 */
#ifndef INFER_KERNELS_ROPE_H
#define INFER_KERNELS_ROPE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int infer_cuda_rope_qkv(uint16_t *qkv, int stride, const uint16_t *bias,
    const int32_t *positions, const float *inv_freq, int n, int nh,
    int nkv, int head_dim, void *stream);

void infer_ref_rope_qkv(float *qkv, int stride, const float *bias,
    const int32_t *positions, const float *inv_freq, int n, int nh,
    int nkv, int head_dim);

#ifdef __cplusplus
}
#endif

#endif
