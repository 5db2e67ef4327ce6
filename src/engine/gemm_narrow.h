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
 * sums per pass; 1 x 4 for a single row of x, or on AVX-512 one row of W
 * at a time, 16 weights a load), else the plain C references below, one
 * dot product at a time.
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

/*
 * One row of x against int8 W with integer products: x is quantized to
 * int16 in blocks of INFER_NARROW_XBLOCK inputs, each with its own scale
 * (max |x| / 32767 over the block; a block's rounding is at most 1/65534
 * of its largest element, far below the int8 weights' 1/254), and
 *
 *     y[r] = scale[r] * sum_b xscale[b] * sum_{i in b} xq[i] * W[r * in + i]
 *
 * with the inner sums exact in int32 (|xq w| <= 32767 * 127, 128 terms).
 * Widening int8 to float32 for every weight (cvt + fma per 8 weights and
 * row) made batch-1 decode bound by the arithmetic at 57% of the memory
 * roofline; pmaddwd does 16 multiply-adds with one widening per 16
 * weights, 1.3-1.5x the float32 widening's speed from memory (2048 x
 * 5632, 1 thread); the rows are read one after another as one stream,
 * prefetched 8 KiB ahead.  Batches of x stay with the float32 tiles,
 * where each widened weight serves 4 rows of x: an int16 4 x 3 tile
 * measured slower there (25 against 38 GMAC/s with W in cache).
 */
#define INFER_NARROW_XBLOCK  128

/* xq [in] and xscale [ceil(in / INFER_NARROW_XBLOCK)] from x [in] */
void infer_gemm_narrow_quantize_x16(const float *x, int in, int16_t *xq,
    float *xscale);
void infer_gemm_narrow_i8_x16(const int16_t *xq, const float *xscale,
    int in, const int8_t *w, const float *scale, int rows, float *y);
void infer_gemm_narrow_i8_x16_ref(const int16_t *xq, const float *xscale,
    int in, const int8_t *w, const float *scale, int rows, float *y);

/*
 * bf16 W against x rounded to bf16, on CPUs with AVX512_BF16 only: xp is
 * x rounded row by row (infer_gemm_wide_prepare_rows; available where
 * infer_gemm_wide_x_bytes(0, ...) > 0), so that a step's products round x
 * as its prefill's do.
 */
void infer_gemm_narrow_bf16_pairs(const void *xp, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy);

/* The references (float32 sums in index order), and the fallbacks. */
void infer_gemm_narrow_f32_ref(const float *x, int n, int in,
    const float *w, int rows, float *y, int ldy);
void infer_gemm_narrow_bf16_ref(const float *x, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy);
void infer_gemm_narrow_i8_ref(const float *x, int n, int in,
    const int8_t *w, const float *scale, int rows, float *y, int ldy);

/* "AVX-512", "AVX2+FMA" or "C": which kernels run on this CPU; the x16
 * product's ("AVX512-VNNI", 32 weights an instruction, where it has it). */
const char *infer_gemm_narrow_kernel(void);
const char *infer_gemm_narrow_x16_kernel(void);

#endif
