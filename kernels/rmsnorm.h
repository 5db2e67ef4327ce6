/*
 * RMSNorm fused with the residual add.  For output row i, r = rows[i] (or
 * i when rows is NULL):
 *     x[r] += delta[r]                       (skipped when delta is NULL)
 *     out[i] = x[r] * rsqrt(mean(x[r]^2) + eps) * w
 * x is the fp32 residual stream; delta, w and out are fp16.  rows lets the
 * final norm produce only the rows that need logits.
 */
#ifndef INFER_KERNELS_RMSNORM_H
#define INFER_KERNELS_RMSNORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int infer_cuda_rmsnorm_residual(float *x, const uint16_t *delta,
    const uint16_t *w, const int32_t *rows, int n, int hidden, float eps,
    uint16_t *out, void *stream);

void infer_ref_rmsnorm_residual(float *x, const float *delta,
    const float *w, const int32_t *rows, int n, int hidden, float eps,
    float *out);

#ifdef __cplusplus
}
#endif

#endif
