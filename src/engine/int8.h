/*
 * int8 weights for the CPU backend (dtype=int8): weight-only, symmetric,
 * one float32 scale per output channel (row of W[out, in]), computed at
 * load from the checkpoint's F32/F16/BF16 values:
 *
 *     scale[r] = max_i |W[r][i]| / 127,   q[r][i] = round(W[r][i] / scale[r])
 *
 * Activations stay float32: a product multiplies float32 x by the int8
 * weights widened in registers and applies the row's scale to the sum, so
 * a token reads one byte per weight.  There is no int8 x int8 dot product
 * here: this CPU class (AVX2, no VNNI) gains little from it, and it would
 * add the activations' rounding to the weights'.
 */
#ifndef INFER_INT8_H
#define INFER_INT8_H

#include <stddef.h>
#include <stdint.h>

/* Quantizes one row of n floats: q[i] and its scale (0 for a zero row). */
void infer_i8_quantize_row(const float *w, int n, int8_t *q, float *scale);

/*
 * y[t * ldy + r] = scale[r] * sum_i x[t * in + i] * w[r * in + i] for
 * tokens t < n and rows r < rows: the decode product, reading each weight
 * once for all n tokens.  AVX2+FMA where the CPU has them (4 tokens x 2
 * rows of float32 sums per pass), else infer_i8_gemm_ref.
 */
void infer_i8_gemm(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy);

/* The same in plain C, one dot product at a time (the reference the
 * vector kernel is tested against, and the fallback). */
void infer_i8_gemm_ref(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy);

/* dst[r * in + i] = scale[r] * w[r * in + i]: rows widened for sgemm. */
void infer_i8_dequantize(const int8_t *w, const float *scale, int rows,
    int in, float *dst);

/* "AVX2+FMA" or "C": which infer_i8_gemm runs on this CPU. */
const char *infer_i8_kernel(void);

#endif
