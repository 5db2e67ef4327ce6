/*
 * The norm before each sublayer, fused with the residual add of the one
 * before it.  For output row i, r = rows[i] (or i when rows is NULL):
 *     d = delta[r] + delta_bias          (a sublayer's output and bias)
 *     d = rmsnorm(d) * delta_norm        (Gemma-2's post-sublayer norm)
 *     x[r] += d                          (skipped when delta is NULL)
 *     out[i] = x[r] / sqrt(mean(x[r]^2) + eps) * w          (RMSNorm)
 *     out[i] = (x[r] - mean) / sqrt(var + eps) * w + b      (LayerNorm,
 *                                                            when b is set)
 * x is the fp32 residual stream; the rest fp16.  rows lets the final norm
 * produce only the rows that need logits.  Gemma's (1 + w) is folded into
 * w at load.
 */
#ifndef INFER_KERNELS_NORM_H
#define INFER_KERNELS_NORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float          *x;
    const uint16_t *delta;          /* or NULL */
    const uint16_t *delta_bias;     /* [hidden] or NULL */
    const uint16_t *delta_norm;     /* [hidden] or NULL */
    const uint16_t *w;              /* [hidden] */
    const uint16_t *b;              /* [hidden]: LayerNorm; NULL: RMSNorm */
    const int32_t  *rows;           /* or NULL */
    int             n, hidden;
    float           eps;
    uint16_t       *out;            /* [n][hidden] */
} infer_norm_args_t;

int infer_cuda_norm_residual(const infer_norm_args_t *a, void *stream);

/* The same on float data (double sums); NULLs as above. */
void infer_ref_norm_residual(float *x, const float *delta,
    const float *delta_bias, const float *delta_norm, const float *w,
    const float *b, const int32_t *rows, int n, int hidden, float eps,
    float *out);

#ifdef __cplusplus
}
#endif

#endif
