/*
 * SwiGLU: out[t][i] = silu(gu[t][i]) * gu[t][inter + i], where gu is the
 * fused [gate | up] projection (2 * inter columns) and silu(g) =
 * g / (1 + exp(-g)), computed in fp32.
 */
#ifndef INFER_KERNELS_SWIGLU_H
#define INFER_KERNELS_SWIGLU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int infer_cuda_swiglu(const uint16_t *gate_up, int n, int inter,
    uint16_t *out, void *stream);

void infer_ref_swiglu(const float *gate_up, int n, int inter, float *out);

#ifdef __cplusplus
}
#endif

#endif
