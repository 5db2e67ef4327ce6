/*
 * The CPU backend's weight types, read one element or 8 at a time as
 * float32: float32 itself, bfloat16 (float32's upper half, so widening
 * is exact) and int8 (its row's scale applied by the caller).  The
 * 8-at-a-time loads need AVX2 (WTYPE_AVX2 on the function that calls
 * them).  And which of the vector extensions the products use this CPU
 * has.
 */
#ifndef INFER_WTYPE_H
#define INFER_WTYPE_H

#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#define WTYPE_AVX2  __attribute__((target("avx2,fma")))
#define WTYPE_AVX512                                                         \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))
/* AVX-512 with the bf16 pair dot product (vdpbf16ps), or with the int16
 * pair dot product (vpdpwssd) */
#define WTYPE_AVX512_BF16                                                    \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")))
#define WTYPE_AVX512_VNNI                                                    \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

/* whether this CPU runs the WTYPE_AVX2 code */
static inline int
wtype_have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* 0: the AVX2 kernels even where AVX-512 ones would run (tests); defined
 * in gemm_narrow.c */
extern int wtype_avx512;

static inline int
wtype_have_avx512(void)
{
    __builtin_cpu_init();
    return wtype_avx512 && wtype_have_avx2()
           && __builtin_cpu_supports("avx512f")
           && __builtin_cpu_supports("avx512bw")
           && __builtin_cpu_supports("avx512vl");
}

static inline int
wtype_have_avx512_bf16(void)
{
    return wtype_have_avx512() && __builtin_cpu_supports("avx512bf16");
}

static inline int
wtype_have_avx512_vnni(void)
{
    return wtype_have_avx512() && __builtin_cpu_supports("avx512vnni");
}

static inline float
wtype_elem_f32(const float *w, size_t i)
{
    return w[i];
}

static inline float
wtype_elem_bf16(const uint16_t *w, size_t i)
{
    uint32_t u = (uint32_t) w[i] << 16;
    float    f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

static inline float
wtype_elem_i8(const int8_t *w, size_t i)
{
    return (float) w[i];
}

static WTYPE_AVX2 inline __m256
wtype_load8_f32(const float *w)
{
    return _mm256_loadu_ps(w);
}

static WTYPE_AVX2 inline __m256
wtype_load8_bf16(const uint16_t *w)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(
        _mm_loadu_si128((const __m128i *) w)), 16));
}

static WTYPE_AVX2 inline __m256
wtype_load8_i8(const int8_t *w)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
        _mm_loadl_epi64((const __m128i *) w)));
}

static WTYPE_AVX512 inline __m512
wtype_load16_f32(const float *w)
{
    return _mm512_loadu_ps(w);
}

static WTYPE_AVX512 inline __m512
wtype_load16_bf16(const uint16_t *w)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(
        _mm256_loadu_si256((const __m256i *) w)), 16));
}

static WTYPE_AVX512 inline __m512
wtype_load16_i8(const int8_t *w)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128((const __m128i *) w)));
}

/* the 8 lanes' sum */
static WTYPE_AVX2 inline float
wtype_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
                          _mm256_extractf128_ps(v, 1));

    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif
