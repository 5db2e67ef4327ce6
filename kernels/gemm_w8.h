/*
 * int8-weight products for decode (W8A16): y = x W^T with W [out, in]
 * int8 and one float32 scale per row of W (the CPU backend's dtype=int8
 * layout, src/engine/int8.h), x [n, in] and y [n, out] fp16, fp32 sums:
 *
 *     y[t][r] = fp16(scale[r] * sum_i x[t][i] * w[r][i])
 *
 * One warp per row of W reads it once for every 8 tokens (decode: n a few
 * sequences), so a step reads one byte per weight instead of fp16's two.
 */
#ifndef INFER_KERNELS_GEMM_W8_H
#define INFER_KERNELS_GEMM_W8_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int infer_cuda_gemm_w8a16(const uint16_t *x, const int8_t *w,
    const float *scale, int n, int in, int out, uint16_t *y, void *stream);

/*
 * Rows widened for cuBLAS (prefill, where the product is bound by math,
 * not by the weights' bytes): y[r][i] = fp16(scale[r] * w[r][i]), the
 * float32 product rounded to nearest even, as infer_i8_dequantize and
 * infer_float_to_half compute it on the host.
 */
int infer_cuda_dequant_w8(const int8_t *w, const float *scale, int rows,
    int in, uint16_t *y, void *stream);

/* The reference: the same sums in double, rounded to float once. */
void infer_ref_gemm_w8a16(const float *x, const int8_t *w,
    const float *scale, int n, int in, int out, float *y);

#ifdef __cplusplus
}
#endif

#endif
