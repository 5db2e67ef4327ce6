/* CPU reference for paged causal GQA attention (sliding window and
 * soft-cap included): double math, and a plain two-pass softmax where the
 * kernel uses tiles, splits and an online one. */
#include <math.h>
#include <stdlib.h>
#include "attention.h"
#include "kvcache.h"

void
infer_ref_attention(const float *q, int q_stride, const float *k_cache,
    const float *v_cache, const int32_t *positions,
    const int32_t *seq_of_token, const int32_t *block_table, int max_blocks,
    int block_size, int n, int nh, int nkv, int head_dim, float scale,
    int window, float softcap, float *out, int out_stride)
{
    const float *qh, *k, *v;
    double      *s, mx, sum, acc;
    size_t       off;
    int          t, h, kvh, p, pos, d, lo;

    s = malloc(((size_t) max_blocks * block_size + 1) * sizeof(double));
    if (s == NULL) {
        abort();
    }
    for (t = 0; t < n; t++) {
        pos = positions[t];
        lo = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
        for (h = 0; h < nh; h++) {
            kvh = h / (nh / nkv);
            qh = q + (size_t) t * q_stride + (size_t) h * head_dim;
            mx = -INFINITY;
            for (p = lo; p <= pos; p++) {
                off = infer_kv_offset(block_table[(size_t) seq_of_token[t]
                                                  * max_blocks
                                                  + p / block_size],
                                      p % block_size, block_size, nkv,
                                      head_dim)
                      + (size_t) kvh * head_dim;
                k = k_cache + off;
                s[p] = 0.0;
                for (d = 0; d < head_dim; d++) {
                    s[p] += (double) qh[d] * k[d];
                }
                s[p] *= scale;
                if (softcap > 0.0f) {
                    s[p] = tanh(s[p] / softcap) * softcap;
                }
                mx = fmax(mx, s[p]);
            }
            sum = 0.0;
            for (p = lo; p <= pos; p++) {
                s[p] = exp(s[p] - mx);
                sum += s[p];
            }
            for (d = 0; d < head_dim; d++) {
                acc = 0.0;
                for (p = lo; p <= pos; p++) {
                    off = infer_kv_offset(block_table[(size_t) seq_of_token[t]
                                                      * max_blocks
                                                      + p / block_size],
                                          p % block_size, block_size, nkv,
                                          head_dim)
                          + (size_t) kvh * head_dim;
                    v = v_cache + off;
                    acc += s[p] * v[d];
                }
                out[(size_t) t * out_stride + (size_t) h * head_dim + d] =
                    (float) (acc / sum);
            }
        }
    }
    free(s);
}
