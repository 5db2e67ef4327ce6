/*
 * Paged causal attention with GQA over the KV cache, one kernel for decode
 * and chunked prefill.  Query token t (position p, sequence s) attends to
 * positions [0, p] of s (with a sliding window, (p - window, p]: the keys
 * transformers keeps), read through its block table; head h uses kv head
 * h / (nh / nkv); scores are scaled by `scale`, soft-capped as
 * softcap * tanh(s / softcap) when softcap > 0 (Gemma-2), and the softmax
 * runs in fp32.
 *
 * The host plans the batch as tiles: runs of consecutive tokens of one
 * sequence, at most INFER_ATTN_ROWS / group tokens each, so one thread block
 * serves every query head of a kv head and loads each K/V chunk once for
 * all of them (this is what makes chunked prefill cheap).  Single-token
 * tiles (decode) may instead be split over the context, flash-decoding
 * style: each split writes a partial (max, sum, unnormalised output) to a
 * slot, and a reduce kernel merges the slots.
 */
#ifndef INFER_KERNELS_ATTENTION_H
#define INFER_KERNELS_ATTENTION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define INFER_ATTN_ROWS     32      /* query rows (tokens x group) a block */
#define INFER_ATTN_MAX_HEAD 256     /* largest head_dim supported */
#define INFER_ATTN_MAX_SPLIT 16

typedef struct {
    const uint16_t *q;          /* token t, head h: q + t*q_stride + h*hd */
    int             q_stride;
    const uint16_t *k_cache;    /* pools as in kvcache.h */
    const uint16_t *v_cache;
    uint16_t       *out;        /* token t, head h: out + t*out_stride+h*hd */
    int             out_stride;
    const int32_t  *positions;
    const int32_t  *block_table;
    int             max_blocks;
    int             block_size;
    int             nh;
    int             nkv;
    int             head_dim;
    float           scale;
    int             window;     /* 0: the whole context */
    float           softcap;    /* 0: none */
    const int32_t  *tiles;      /* [n_tiles][4]: first token, count, seq,
                                   split slot (-1: not split) */
    int             n_tiles;
    int             n_split;    /* splits per slot (1: no reduce) */
    int             split_len;  /* positions per split */
    float          *part_ml;    /* [slot][split][nh][2]: max, sum */
    float          *part_o;     /* [slot][split][nh][head_dim] */
    const int32_t  *dec_tok;    /* [n_dec]: the token of each slot */
    int             n_dec;
} infer_attn_args_t;

/*
 * Splits for contexts of up to max_ctx positions: a split covers
 * *split_len positions (a multiple of 32).  Depends only on max_ctx so a
 * decode step's launch shape repeats (CUDA graphs).
 */
int infer_attn_splits(int max_ctx, int *split_len);

/*
 * Cuts tokens into tiles (first, count, seq, slot).  Single-token tiles get
 * split slots 0, 1, ... while split > 1 and fewer than max_slots are used;
 * dec_tok[slot] is the slot's token.  tiles has room for 4 * n ints,
 * dec_tok for n.  Returns the number of tiles.
 */
int infer_attn_plan(int n, const int32_t *seq_of_token, int group,
    int split, int max_slots, int32_t *tiles, int32_t *dec_tok, int *n_dec);

/* Bytes of dynamic shared memory a block needs for head_dim. */
int infer_attn_smem_bytes(int head_dim);

/* Allows the kernel for head_dim its shared memory; call once per model
 * (not while a stream is being captured). */
int infer_cuda_attention_setup(int head_dim);

int infer_cuda_attention(const infer_attn_args_t *a, void *stream);

/* Reference: float pools, double math, plain softmax (no tiles, splits).
 * out row t is out + t*out_stride. */
void infer_ref_attention(const float *q, int q_stride, const float *k_cache,
    const float *v_cache, const int32_t *positions,
    const int32_t *seq_of_token, const int32_t *block_table, int max_blocks,
    int block_size, int n, int nh, int nkv, int head_dim, float scale,
    int window, float softcap, float *out, int out_stride);

#ifdef __cplusplus
}
#endif

#endif
