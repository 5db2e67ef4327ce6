/*
 * Embedding gather: x[t] = table[tokens[t]], fp16 table, fp32 residual
 * stream.  Launchers return a cudaError_t (0 = launched); references are
 * plain C on float data and always built.
 */
#ifndef INFER_KERNELS_EMBED_H
#define INFER_KERNELS_EMBED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int infer_cuda_embed(const uint16_t *table, const int32_t *tokens, int n,
    int hidden, float *x, void *stream);

void infer_ref_embed(const float *table, const int32_t *tokens, int n,
    int hidden, float *x);

#ifdef __cplusplus
}
#endif

#endif
