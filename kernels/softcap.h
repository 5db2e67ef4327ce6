/*
 * Gemma-2's final logit soft-cap, in place on fp32 logits:
 *     x = cap * tanh(x / cap)
 * (the attention scores' cap lives in the attention kernel).
 */
#ifndef INFER_KERNELS_SOFTCAP_H
#define INFER_KERNELS_SOFTCAP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

int infer_cuda_softcap(float *x, size_t n, float cap, void *stream);

void infer_ref_softcap(float *x, size_t n, float cap);

#ifdef __cplusplus
}
#endif

#endif
