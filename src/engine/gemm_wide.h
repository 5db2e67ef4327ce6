/*
 * Wide products for the CPU backend: y = x W^T for many rows of x (a
 * prompt's tokens), W [rows, in] in bfloat16 or int8 with one float32
 * scale per row (int8.h):
 *
 *     y[t * ldy + r] = scale[r] * sum_i x[t * in + i] * W[r * in + i]
 *
 * for t < n and r < rows <= INFER_WIDE_ROWS: a thread's share of W, whose
 * packed copy stays in its L2.  Bound by the arithmetic, as sgemm is, but
 * each weight is widened to float32 while it is packed, once per call, so
 * W needs no float32 copy first, and the threads are the rank's own
 * (gemm_wide.c says what was measured; float32 W stays with sgemm, which
 * packed it faster).  AVX2+FMA only: infer_gemm_wide_available() says
 * whether this CPU runs them.
 */
#ifndef INFER_GEMM_WIDE_H
#define INFER_GEMM_WIDE_H

#include <stdint.h>

#define INFER_WIDE_ROWS  96

void infer_gemm_wide_bf16(const float *x, int n, int in, const uint16_t *w,
    int rows, float *y, int ldy);
void infer_gemm_wide_i8(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy);

int infer_gemm_wide_available(void);

#endif
