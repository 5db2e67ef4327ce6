/*
 * Decode attention for the CPU backend: the query heads of one token that
 * share a key/value head (grouped-query attention: group = query heads /
 * kv heads) against that head's keys and values in the paged cache, as
 * transformers' eager attention computes it:
 *
 *     s_h[j] = softcap(scale * q_h . k_j),  p_h = softmax(s_h),
 *     out_h  = sum_j p_h[j] v_j,            j in [lo, ctx)
 *
 * The group's heads are computed together, a block of keys at a time, so
 * the keys and values are read from memory once per group rather than
 * once per query head.  AVX2+FMA where the CPU has it and head_dim is a
 * multiple of 8 (8 keys' dot products at once, reduced together), else
 * the plain C reference below, one dot product at a time.
 */
#ifndef INFER_ATTN_DECODE_H
#define INFER_ATTN_DECODE_H

#include <stddef.h>
#include <stdint.h>

/* One kv head's keys and values in one layer of the paged cache: position
 * p lies at table[p / block_size] * block_stride + (p % block_size) *
 * head_dim floats from k (and v); a block's slots are contiguous. */
typedef struct {
    const float   *k, *v;
    const int32_t *table;
    size_t         block_stride;
    int            block_size;
    int            head_dim;
} infer_attn_cache_t;

/*
 * q and out: [group][head_dim], the group's heads one after another;
 * softcap 0 for none; s: scratch of group * (ctx - lo) floats.
 */
void infer_attn_decode(const infer_attn_cache_t *c, int lo, int ctx,
    const float *q, int group, float scale, float softcap, float *out,
    float *s);
void infer_attn_decode_ref(const infer_attn_cache_t *c, int lo, int ctx,
    const float *q, int group, float scale, float softcap, float *out,
    float *s);

/*
 * s [n] of scores in, probabilities out: soft-capped (softcap 0: not) as
 * transformers writes it, a division then a multiplication, less the
 * row's max before the exponentials, divided by their sum.
 */
void infer_attn_softmax(float *s, int n, float softcap);

/* "AVX2+FMA" or "C": which kernel runs for this head_dim on this CPU. */
const char *infer_attn_decode_kernel(int head_dim);

#endif
