/* Host-side planning for the attention kernel: splits and tiles. */
#include "attention.h"

#define ATTN_KEYS       32      /* keys per shared-memory chunk */
#define ATTN_SPLIT_MIN  128     /* shortest split: enough work per block */

int
infer_attn_splits(int max_ctx, int *split_len)
{
    int len = ATTN_SPLIT_MIN, n;

    if (max_ctx < 1) {
        max_ctx = 1;
    }
    n = (max_ctx + len - 1) / len;
    if (n > INFER_ATTN_MAX_SPLIT) {
        len = (max_ctx + INFER_ATTN_MAX_SPLIT - 1) / INFER_ATTN_MAX_SPLIT;
        len = (len + ATTN_KEYS - 1) / ATTN_KEYS * ATTN_KEYS;
        n = (max_ctx + len - 1) / len;
    }
    *split_len = len;
    return n;
}

int
infer_attn_plan(int n, const int32_t *seq_of_token, int group, int split,
    int max_slots, int32_t *tiles, int32_t *dec_tok, int *n_dec)
{
    int per_tile = INFER_ATTN_ROWS / group, t = 0, count, nt = 0;

    *n_dec = 0;
    while (t < n) {
        count = 1;
        while (t + count < n && count < per_tile
               && seq_of_token[t + count] == seq_of_token[t])
        {
            count++;
        }
        tiles[4 * nt] = t;
        tiles[4 * nt + 1] = count;
        tiles[4 * nt + 2] = seq_of_token[t];
        tiles[4 * nt + 3] = -1;
        if (count == 1 && split > 1 && *n_dec < max_slots) {
            tiles[4 * nt + 3] = *n_dec;
            dec_tok[(*n_dec)++] = t;
        }
        nt++;
        t += count;
    }
    return nt;
}

int
infer_attn_smem_bytes(int head_dim)
{
    /* q rows, K chunk padded by one float against bank conflicts, V chunk */
    return (int) sizeof(float)
           * (INFER_ATTN_ROWS * head_dim + ATTN_KEYS * (head_dim + 1)
              + ATTN_KEYS * head_dim);
}
