/*
 * int8 weights for the CPU backend (dtype=int8): weight-only, symmetric,
 * one float32 scale per output channel (row of W[out, in]), computed at
 * load from the checkpoint's F32/F16/BF16 values:
 *
 *     scale[r] = max_i |W[r][i]| / 127,   q[r][i] = round(W[r][i] / scale[r])
 *
 * A token reads one byte per weight.  Batch-1 decode quantizes its row of
 * activations to int16 in blocks of 128 and sums integer products
 * (gemm_narrow.h: a 1/65534 rounding next to the weights' 1/254); batches
 * multiply float32 x by the weights widened in registers, and prefill
 * widens them as it packs them on AVX2 CPUs, or with AVX512_VNNI
 * quantizes x to int16 as decode does and sums int16 pairs (gemm_wide.h;
 * tiles of rows widened for sgemm where neither runs).  There is no
 * int8 x int8 product: int8 activations would double the rounding, and
 * vpdpwssd's int16 pairs already run at the arithmetic's pace there.
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
