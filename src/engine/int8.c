/* int8 weights: per-row quantization (see int8.h). */
#include <math.h>
#include <string.h>
#include "int8.h"
#include "wtype.h"

/*
 * q[i] = round(w[i] * inv) as the scalar loop below computes it, 8 at a
 * time, for i < n rounded down to 8; returns that count.  roundf rounds
 * half away from zero, so t = trunc(v), plus the sign where |v - t| >=
 * 1/2 (exact: |v| <= 127); NaN becomes 0.  Quantizing TinyLlama-1.1B at
 * load through roundf, one weight at a time, took a quarter of its int8
 * start-up.
 */
static WTYPE_AVX2 int
avx2_quantize(const float *w, int n, float inv, int8_t *q)
{
    __m256  v, t, half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    __m256  sign = _mm256_set1_ps(-0.0f), lim = _mm256_set1_ps(127.0f);
    __m256i r;
    __m128i p;
    int     i;

    for (i = 0; i + 8 <= n; i += 8) {
        v = _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_set1_ps(inv));
        v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
        v = _mm256_min_ps(_mm256_max_ps(v, _mm256_xor_ps(lim, sign)), lim);
        t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        t = _mm256_add_ps(t, _mm256_and_ps(
            _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), half,
                          _CMP_GE_OQ),
            _mm256_or_ps(one, _mm256_and_ps(v, sign))));
        r = _mm256_cvttps_epi32(t);
        p = _mm_packs_epi32(_mm256_castsi256_si128(r),
                            _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64((__m128i *) (q + i), _mm_packs_epi16(p, p));
    }
    return i;
}

void
infer_i8_quantize_row(const float *w, int n, int8_t *q, float *scale)
{
    float amax = 0.0f, inv, v;
    int   i;

#pragma omp simd reduction(max:amax)
    for (i = 0; i < n; i++) {
        amax = fabsf(w[i]) > amax ? fabsf(w[i]) : amax;
    }
    if (amax == 0.0f || !isfinite(amax)) {
        /* a zero row, or one a float16 overflow made infinite: nothing
         * a scale can hold, so zeros (never NaN products) */
        memset(q, 0, n);
        *scale = 0.0f;
        return;
    }
    *scale = amax / 127.0f;
    inv = 127.0f / amax;
    for (i = wtype_have_avx2() ? avx2_quantize(w, n, inv, q) : 0; i < n;
         i++) {
        v = roundf(w[i] * inv);
        q[i] = (int8_t) (v > 127.0f ? 127 : v < -127.0f ? -127
                         : v == v ? v : 0);
    }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void
infer_i8_dequantize(const int8_t *w, const float *scale, int rows, int in,
    float *dst)
{
    int r, i;

    for (r = 0; r < rows; r++) {
        const int8_t *wr = w + (size_t) r * in;
        float        *dr = dst + (size_t) r * in, s = scale[r];

#pragma omp simd
        for (i = 0; i < in; i++) {
            dr[i] = s * (float) wr[i];
        }
    }
}
