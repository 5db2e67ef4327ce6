/*
 * int8 weights for the CPU backend (dtype=int8): weight-only, symmetric,
 * one float32 scale per output channel (row of W[out, in]), computed at
 * load from the checkpoint's F32/F16/BF16 values:
 *
 *     scale[r] = max_i |W[r][i]| / 127,   q[r][i] = round(W[r][i] / scale[r])
 *
 * Activations stay float32: a product multiplies float32 x by the int8
 * weights widened in registers and applies the row's scale to the sum
 * (gemm_narrow.h), so a token reads one byte per weight.  There is no
 * int8 x int8 dot product here: this CPU class (AVX2, no VNNI) gains
 * little from it, and it would add the activations' rounding to the
 * weights'.
 */
#ifndef INFER_INT8_H
#define INFER_INT8_H

#include <stddef.h>
#include <stdint.h>

/* Quantizes one row of n floats: q[i] and its scale (0 for a zero row,
 * or one with an infinity); a NaN becomes 0. */
void infer_i8_quantize_row(const float *w, int n, int8_t *q, float *scale);

/* dst[r * in + i] = scale[r] * w[r * in + i]: rows widened for sgemm. */
void infer_i8_dequantize(const int8_t *w, const float *scale, int rows,
    int in, float *dst);

#endif
