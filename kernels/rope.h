/*
 * Rotary position embedding, Hugging Face rotate_half layout, with what
 * comes before it in the attention block: in place on the fused
 * projection rows [q (nh heads) | k (nkv) | v (nkv)], `stride` elements
 * apart, per token:
 *     x += bias                                  (q, k, v; qwen2, gpt2)
 *     x = rmsnorm(x) * q_norm / k_norm           (each q / k head; qwen3)
 *     rotate pairs (j, j + rot/2), j < rot/2, of each q and k head by
 *         pos * inv_freq[j], cos and sin times `scale`; dims from rot on
 *         pass (Phi-3's partial rotary factor)
 * inv_freq has one row of rot/2 frequencies, or one per sequence
 * (freq_row[t] picks the token's: dynamic NTK, longrope); NULL inv_freq
 * skips the rotation (learned positions).  The frequencies come from
 * src/engine/rope_freq.c, computed on the host as transformers does.
 */
#ifndef INFER_KERNELS_ROPE_H
#define INFER_KERNELS_ROPE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define INFER_ROPE_MAX_HEAD  256

typedef struct {
    uint16_t       *qkv;
    int             stride;
    const uint16_t *bias;           /* [(nh + 2 nkv) hd] or NULL */
    const uint16_t *q_norm;         /* [hd] or NULL (then k_norm too) */
    const uint16_t *k_norm;
    float           eps;
    const int32_t  *positions;
    const float    *inv_freq;       /* [rows][rot / 2] or NULL */
    const int32_t  *freq_row;       /* [n] or NULL: row 0 */
    int             rot;
    float           scale;
    int             n, nh, nkv, head_dim;
} infer_rope_args_t;

int infer_cuda_rope_qkv(const infer_rope_args_t *a, void *stream);

/* The same on float rows (double trigonometry and sums); the pointers of
 * a are float arrays here (qkv, bias, q_norm, k_norm). */
void infer_ref_rope_qkv(float *qkv, int stride, const float *bias,
    const float *q_norm, const float *k_norm, float eps,
    const int32_t *positions, const float *inv_freq, const int32_t *freq_row,
    int rot, float scale, int n, int nh, int nkv, int head_dim);

#ifdef __cplusplus
}
#endif

#endif
