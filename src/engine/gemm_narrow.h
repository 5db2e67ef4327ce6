/*
 * Narrow products for the CPU backend: y = x W^T for a few rows of x (the
 * decode steps of up to a few dozen sequences), W [rows, in] in float32,
 * bfloat16 or int8 with one float32 scale per row (int8.h):
 *
 *     y[t * ldy + r] = scale[r] * sum_i x[t * in + i] * W[r * in + i]
 *
 * They read W once, straight from where it lies, and widen each weight in
 * registers once for every 4 rows of x.  OpenBLAS's sgemm packs W into a
 * copy first, every call: at 16 rows of x that is most of its time
 * (TinyLlama's gate_proj, 1 thread: 40 ms, against 13 ms here for int8).
 * AVX2+FMA where the CPU has them (4 rows of x x 3 rows of W of float32
 * sums per pass; 1 x 4 for a single row of x), else the plain C
 * references below, one dot product at a time.
 */
#ifndef INFER_GEMM_NARROW_H
#define INFER_GEMM_NARROW_H

#include <stdint.h>

void infer_gemm_narrow_f32(const float *x, int n, int in, const float *w,
    int rows, float *y, int ldy);
void infer_gemm_narrow_bf16(const float *x, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy);
void infer_gemm_narrow_i8(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy);

/* The references (float32 sums in index order), and the fallbacks. */
void infer_gemm_narrow_f32_ref(const float *x, int n, int in,
    const float *w, int rows, float *y, int ldy);
void infer_gemm_narrow_bf16_ref(const float *x, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy);
void infer_gemm_narrow_i8_ref(const float *x, int n, int in,
    const int8_t *w, const float *scale, int rows, float *y, int ldy);

/* "AVX2+FMA" or "C": which kernels run on this CPU. */
const char *infer_gemm_narrow_kernel(void);

#endif
