/*
 * The MLP's activation over the up (and gate) projection, fp32 inside:
 *     gated:      out[t][i] = act(gu[t][i] + b[i]) * (gu[t][I + i] + b[I + i])
 *                 over the fused [gate | up] rows (2 I columns)
 *     not gated:  out[t][i] = act(u[t][i] + b[i])          (GPT-2's MLP)
 * with act one of INFER_KACT_*: silu g / (1 + exp(-g)); gelu (erf); the
 * tanh approximation (gelu_new, gelu_pytorch_tanh).  b may be NULL.
 */
#ifndef INFER_KERNELS_ACT_H
#define INFER_KERNELS_ACT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* the order of model.h's infer_act_t */
#define INFER_KACT_SILU       0
#define INFER_KACT_GELU       1
#define INFER_KACT_GELU_TANH  2

int infer_cuda_act(const uint16_t *in, const uint16_t *bias, int n,
    int inter, int gated, int act, uint16_t *out, void *stream);

void infer_ref_act(const float *in, const float *bias, int n, int inter,
    int gated, int act, float *out);

#ifdef __cplusplus
}
#endif

#endif
