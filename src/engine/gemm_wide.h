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
 * (gemm_wide.c says what was measured; on AVX2 float32 W stays with
 * sgemm, which packed it faster).  AVX2+FMA or AVX-512 only:
 * infer_gemm_wide_kernel() says which this CPU runs.
 */
#ifndef INFER_GEMM_WIDE_H
#define INFER_GEMM_WIDE_H

#include <stddef.h>
#include <stdint.h>

#define INFER_WIDE_ROWS  96

/*
 * Where the CPU has AVX512_BF16 (bf16) or AVX512_VNNI (int8) the products
 * multiply pairs of inputs in one instruction, with x prepared once per
 * product, before its rows are shared: rounded to bfloat16 (as
 * transformers in bf16 and llama.cpp round activations) into panels of 16
 * rows, pair-major, against which W is broadcast as it lies, or quantized to
 * int16 in blocks as the narrow x16 product's x (gemm_narrow.h).  x_bytes
 * is 0 where the products take x as it is (AVX2: x widened W in float32);
 * prepare does nothing there.  i8: int8 W, else bf16.
 */
size_t infer_gemm_wide_x_bytes(int i8, int n, int in);
void infer_gemm_wide_prepare(int i8, const float *x, int n, int in,
    void *xp);

/* bf16 x rounded row by row, as the narrow bf16 pair products take it
 * (gemm_narrow.h), into the same x_bytes */
void infer_gemm_wide_prepare_rows(const float *x, int n, int in, void *xp);

/* xp: x prepared (ignored where x_bytes is 0) */
void infer_gemm_wide_bf16(const float *x, const void *xp, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy);
void infer_gemm_wide_i8(const float *x, const void *xp, int n, int in,
    const int8_t *w, const float *scale, int rows, float *y, int ldy);

/* "AVX512-BF16", "AVX512-VNNI", "AVX2+FMA", or NULL: none on this CPU */
const char *infer_gemm_wide_kernel(int i8);

/*
 * float32 W on AVX-512: x in panels of 16 rows (x_bytes, 0 without
 * AVX-512), W broadcast as it lies, where sgemm packs it on every call;
 * kernel "AVX-512" or NULL (then sgemm runs them).
 */
size_t infer_gemm_wide_f32_x_bytes(int n, int in);
void infer_gemm_wide_prepare_f32(const float *x, int n, int in, void *xp);
void infer_gemm_wide_f32(const void *xp, int n, int in, const float *w,
    int rows, float *y, int ldy);
const char *infer_gemm_wide_f32_kernel(void);

#endif
