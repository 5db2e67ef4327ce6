/*
 * Embedding gather: x[t] = table[tokens[t]] * scale, plus
 * pos_table[positions[t]] where the model learns its positions (GPT-2);
 * fp16 tables, fp32 residual stream.  scale is Gemma's sqrt(hidden) (1
 * elsewhere).  Launchers return a cudaError_t (0 = launched); references
 * are plain C on float data and always built.
 */
#ifndef INFER_KERNELS_EMBED_H
#define INFER_KERNELS_EMBED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int infer_cuda_embed(const uint16_t *table, const uint16_t *pos_table,
    const int32_t *tokens, const int32_t *positions, int n, int hidden,
    float scale, float *x, void *stream);

void infer_ref_embed(const float *table, const float *pos_table,
    const int32_t *tokens, const int32_t *positions, int n, int hidden,
    float scale, float *x);

#ifdef __cplusplus
}
#endif

#endif
