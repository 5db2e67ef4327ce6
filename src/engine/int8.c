/*
 * int8 weights: per-row quantization and the products that read them
 * (see int8.h).
 */
#include <math.h>
#include <string.h>
#include <immintrin.h>
#include "int8.h"

void
infer_i8_quantize_row(const float *w, int n, int8_t *q, float *scale)
{
    float amax = 0.0f, inv, v;
    int   i;

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
    for (i = 0; i < n; i++) {
        v = roundf(w[i] * inv);
        q[i] = (int8_t) (v > 127.0f ? 127 : v < -127.0f ? -127 : v);
    }
}

void
infer_i8_gemm_ref(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy)
{
    int   t, r, i;
    float s;

    for (r = 0; r < rows; r++) {
        const int8_t *wr = w + (size_t) r * in;

        for (t = 0; t < n; t++) {
            const float *xt = x + (size_t) t * in;

            s = 0.0f;
            for (i = 0; i < in; i++) {
                s += xt[i] * (float) wr[i];
            }
            y[(size_t) t * ldy + r] = s * scale[r];
        }
    }
}

/* ---- AVX2 + FMA ---------------------------------------------------------- */

#define I8_AVX2  __attribute__((target("avx2,fma")))

/* the 8 lanes' sum */
static I8_AVX2 inline float
hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
                          _mm256_extractf128_ps(v, 1));

    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 int8 weights widened to float32 */
static I8_AVX2 inline __m256
widen8(const int8_t *w)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
        _mm_loadl_epi64((const __m128i *) w)));
}

/*
 * TB tokens x RB rows: every weight is widened once and multiplied into
 * TB sums, so the conversion is paid once per TB tokens, and the TB x RB
 * independent sums keep the FMA units busy past their latency.
 */
#define I8_TILE(TB, RB)                                                     \
static I8_AVX2 void                                                         \
gemm_tile_##TB##x##RB(const float *x, int in, const int8_t *w,              \
    const float *scale, float *y, int ldy)                                  \
{                                                                           \
    __m256 acc[TB][RB], wv[RB], xv;                                         \
    float  tail;                                                            \
    int    i, t, r;                                                         \
                                                                            \
    _Pragma("GCC unroll 8")                                                 \
    for (t = 0; t < TB; t++) {                                              \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            acc[t][r] = _mm256_setzero_ps();                                \
        }                                                                   \
    }                                                                       \
    for (i = 0; i + 8 <= in; i += 8) {                                      \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            wv[r] = widen8(w + (size_t) r * in + i);                        \
        }                                                                   \
        _Pragma("GCC unroll 8")                                             \
        for (t = 0; t < TB; t++) {                                          \
            xv = _mm256_loadu_ps(x + (size_t) t * in + i);                  \
            _Pragma("GCC unroll 8")                                         \
            for (r = 0; r < RB; r++) {                                      \
                acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);          \
            }                                                               \
        }                                                                   \
    }                                                                       \
    for (t = 0; t < TB; t++) {                                              \
        for (r = 0; r < RB; r++) {                                          \
            tail = hsum8(acc[t][r]);                                        \
            for (int k = i; k < in; k++) {                                  \
                tail += x[(size_t) t * in + k] * (float) w[(size_t) r * in  \
                                                           + k];            \
            }                                                               \
            y[(size_t) t * ldy + r] = tail * scale[r];                      \
        }                                                                   \
    }                                                                       \
}

I8_TILE(4, 2)
I8_TILE(1, 4)
I8_TILE(1, 1)

static I8_AVX2 void
gemm_avx2(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy)
{
    int r = 0, t;

    if (n == 1) {
        /* decode at batch 1: four rows' sums in flight */
        for (; r + 4 <= rows; r += 4) {
            gemm_tile_1x4(x, in, w + (size_t) r * in, scale + r, y + r, ldy);
        }
    } else {
        for (; r + 2 <= rows; r += 2) {
            for (t = 0; t + 4 <= n; t += 4) {
                gemm_tile_4x2(x + (size_t) t * in, in, w + (size_t) r * in,
                              scale + r, y + (size_t) t * ldy + r, ldy);
            }
            for (; t < n; t++) {
                gemm_tile_1x1(x + (size_t) t * in, in, w + (size_t) r * in,
                              scale + r, y + (size_t) t * ldy + r, ldy);
                gemm_tile_1x1(x + (size_t) t * in, in,
                              w + (size_t) (r + 1) * in, scale + r + 1,
                              y + (size_t) t * ldy + r + 1, ldy);
            }
        }
    }
    for (; r < rows; r++) {
        for (t = 0; t < n; t++) {
            gemm_tile_1x1(x + (size_t) t * in, in, w + (size_t) r * in,
                          scale + r, y + (size_t) t * ldy + r, ldy);
        }
    }
}

static int
have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

void
infer_i8_gemm(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy)
{
    if (have_avx2()) {
        gemm_avx2(x, n, in, w, scale, rows, y, ldy);
    } else {
        infer_i8_gemm_ref(x, n, in, w, scale, rows, y, ldy);
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

const char *
infer_i8_kernel(void)
{
    return have_avx2() ? "AVX2+FMA" : "C";
}
