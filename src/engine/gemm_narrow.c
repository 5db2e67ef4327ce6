/*
 * Narrow products: y = x W^T for a few rows of x, reading W once (see
 * gemm_narrow.h).  One tile routine per weight type, made by one macro:
 * what differs is how 8 weights become 8 floats.
 */
#include <math.h>
#include <string.h>
#include <immintrin.h>
#include "gemm_narrow.h"
#include "wtype.h"

int wtype_avx512 = 1;

/* ---- references ---------------------------------------------------------- */

#define NARROW_REF(NAME, WT, ELEM, SCALE)                                   \
void                                                                        \
NAME(const float *x, int n, int in, const WT *w, const float *scale,        \
    int rows, float *y, int ldy)                                            \
{                                                                           \
    int   t, r, i;                                                          \
    float s;                                                                \
                                                                            \
    (void) scale;                                                           \
    for (r = 0; r < rows; r++) {                                            \
        for (t = 0; t < n; t++) {                                           \
            s = 0.0f;                                                       \
            for (i = 0; i < in; i++) {                                      \
                s += x[(size_t) t * in + i]                                 \
                     * ELEM(w, (size_t) r * in + i);                        \
            }                                                               \
            y[(size_t) t * ldy + r] = s * (SCALE);                          \
        }                                                                   \
    }                                                                       \
}

static NARROW_REF(ref_f32, float, wtype_elem_f32, 1.0f)
static NARROW_REF(ref_bf16, uint16_t, wtype_elem_bf16, 1.0f)
static NARROW_REF(ref_i8, int8_t, wtype_elem_i8, scale[r])

void
infer_gemm_narrow_f32_ref(const float *x, int n, int in, const float *w,
    int rows, float *y, int ldy)
{
    ref_f32(x, n, in, w, NULL, rows, y, ldy);
}

void
infer_gemm_narrow_bf16_ref(const float *x, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy)
{
    ref_bf16(x, n, in, w, NULL, rows, y, ldy);
}

void
infer_gemm_narrow_i8_ref(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy)
{
    ref_i8(x, n, in, w, scale, rows, y, ldy);
}

/* ---- int8 weights x int16 activations, one row of x ---------------------- */

void
infer_gemm_narrow_quantize_x16(const float *x, int in, int16_t *xq,
    float *xscale)
{
    int   b, i, i0, i1;
    float m, q;

    for (b = 0, i0 = 0; i0 < in; b++, i0 = i1) {
        i1 = i0 + INFER_NARROW_XBLOCK < in ? i0 + INFER_NARROW_XBLOCK : in;
        m = 0.0f;
        for (i = i0; i < i1; i++) {
            m = fabsf(x[i]) > m || isnan(x[i]) ? fabsf(x[i]) : m;
        }
        /* an infinity or NaN in the block makes its outputs NaN, as the
         * float32 products would, instead of vanishing in the rounding */
        if (!isfinite(m)) {
            memset(xq + i0, 0, (size_t) (i1 - i0) * sizeof(*xq));
            xscale[b] = NAN;
            continue;
        }
        q = m > 0.0f ? 32767.0f / m : 0.0f;
        for (i = i0; i < i1; i++) {
            xq[i] = (int16_t) lrintf(x[i] * q);
        }
        xscale[b] = m / 32767.0f;
    }
}

/* one row's sum of xq[i0..i1) w[i0..i1), exact */
static inline int32_t
dot_x16(const int16_t *xq, const int8_t *w, int i0, int i1)
{
    int32_t s = 0;
    int     i;

    for (i = i0; i < i1; i++) {
        s += (int32_t) xq[i] * w[i];
    }
    return s;
}

void
infer_gemm_narrow_i8_x16_ref(const int16_t *xq, const float *xscale,
    int in, const int8_t *w, const float *scale, int rows, float *y)
{
    const int8_t *wr;
    float         s;
    int           r, b, i0, i1;

    for (r = 0; r < rows; r++) {
        wr = w + (size_t) r * in;
        s = 0.0f;
        for (b = 0, i0 = 0; i0 < in; b++, i0 = i1) {
            i1 = i0 + INFER_NARROW_XBLOCK < in ? i0 + INFER_NARROW_XBLOCK
                                                : in;
            s += (float) dot_x16(xq, wr, i0, i1) * xscale[b];
        }
        y[r] = s * scale[r];
    }
}

/* ---- AVX2 + FMA ---------------------------------------------------------- */

/*
 * TB rows of x by RB rows of W: every weight is widened once and
 * multiplied into TB sums, so the conversion is paid once per TB rows of
 * x, and the TB x RB independent sums keep the FMA units busy past their
 * latency.  With ahead, the first pass over these rows of W also asks
 * for the next RB rows' same bytes, each of their cache lines once: the
 * rows are short streams (2-11 KiB) that the hardware prefetcher starts
 * late on (batch 16, 5632 x 2048, 1 thread: bf16 5.5-5.9 ms against
 * 6.8-8.0).  One line a step, as this asked before, covered only 2 of
 * every 3 float32 lines (TinyLlama batch-16 decode, 2 threads, 5
 * alternating runs: float32 27.7-29.5 tokens/s against 26.3-28.2; bf16,
 * 3 runs, 36.2-36.9 against 32.5-36.6).  V: 8 float lanes (AVX2) or 16
 * (AVX-512), a step of V_N inputs; the step that enters a line of W asks
 * for the next rows' line.
 */
#define V8_T       __m256
#define V8_N       8
#define V8_TARGET  WTYPE_AVX2
#define V8_ZERO    _mm256_setzero_ps
#define V8_LOADX   _mm256_loadu_ps
#define V8_FMA     _mm256_fmadd_ps
#define V8_SUM     wtype_hsum8
#define V16_T      __m512
#define V16_N      16
#define V16_TARGET WTYPE_AVX512
#define V16_ZERO   _mm512_setzero_ps
#define V16_LOADX  _mm512_loadu_ps
#define V16_FMA    _mm512_fmadd_ps
#define V16_SUM    _mm512_reduce_add_ps

#define NARROW_TILE(NAME, WT, LOAD, ELEM, SCALE, TB, RB, V)                 \
static V##_TARGET void                                                      \
NAME(const float *x, int in, const WT *w, const float *scale, float *y,     \
    int ldy, int ahead)                                                     \
{                                                                           \
    V##_T  acc[TB][RB], wv[RB], xv;                                         \
    float  s;                                                               \
    int    i, k, t, r;                                                      \
                                                                            \
    (void) scale;                                                           \
    _Pragma("GCC unroll 8")                                                 \
    for (t = 0; t < TB; t++) {                                              \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            acc[t][r] = V##_ZERO();                                         \
        }                                                                   \
    }                                                                       \
    for (i = 0; i + V##_N <= in; i += V##_N) {                              \
        if (ahead && i % (64 / sizeof(WT)) < V##_N) {                       \
            _Pragma("GCC unroll 8")                                         \
            for (r = 0; r < RB; r++) {                                      \
                _mm_prefetch((const char *) (w + (size_t) (RB + r) * in     \
                                             + i), _MM_HINT_T0);            \
            }                                                               \
        }                                                                   \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            wv[r] = LOAD(w + (size_t) r * in + i);                          \
        }                                                                   \
        _Pragma("GCC unroll 8")                                             \
        for (t = 0; t < TB; t++) {                                          \
            xv = V##_LOADX(x + (size_t) t * in + i);                        \
            _Pragma("GCC unroll 8")                                         \
            for (r = 0; r < RB; r++) {                                      \
                acc[t][r] = V##_FMA(xv, wv[r], acc[t][r]);                  \
            }                                                               \
        }                                                                   \
    }                                                                       \
    for (t = 0; t < TB; t++) {                                              \
        for (r = 0; r < RB; r++) {                                          \
            s = V##_SUM(acc[t][r]);                                         \
            for (k = i; k < in; k++) {                                      \
                s += x[(size_t) t * in + k]                                 \
                     * ELEM(w, (size_t) r * in + k);                        \
            }                                                               \
            y[(size_t) t * ldy + r] = s * (SCALE);                          \
        }                                                                   \
    }                                                                       \
}

/*
 * One row of x on AVX-512, a row of W at a time: 16 weights a load,
 * widened in the register, four sums over 64 weights, the bytes
 * STREAM_AHEAD further on asked for as it goes (the rows lie one after
 * another: one sequential stream a thread, as avx2_x16_row reads).  On
 * the AVX-512 machine (bench/RESULTS.md "AVX-512"), TinyLlama bf16
 * decode, 2 threads, 3 alternating runs: 19.0-19.2 tokens/s against
 * 15.0-16.9 for 4 rows side by side as the AVX2 1 x 4 tile reads them
 * (with the same next rows' lines asked for); 2, 4, 8 and 16 KiB ahead
 * were within the noise of each other.  float32 too, in place of sgemv,
 * which it matched (10.6-11.8 tokens/s against 10.2-11.9).
 */
#define STREAM_AHEAD  4096

#define NARROW_AVX512(NAME, WT, LOAD16, ELEM, SCALE)                        \
static WTYPE_AVX512 void                                                    \
NAME(const float *x, int in, const WT *w, const float *scale, int rows,     \
    float *y)                                                               \
{                                                                           \
    const WT *wr;                                                           \
    __m512    a0, a1, a2, a3;                                               \
    float     s;                                                            \
    int       r, i, k;                                                      \
                                                                            \
    (void) scale;                                                           \
    for (r = 0; r < rows; r++) {                                            \
        wr = w + (size_t) r * in;                                           \
        a0 = a1 = a2 = a3 = _mm512_setzero_ps();                            \
        for (i = 0; i + 64 <= in; i += 64) {                                \
            _Pragma("GCC unroll 4")                                         \
            for (k = 0; k < 64 * (int) sizeof(WT); k += 64) {               \
                _mm_prefetch((const char *) (wr + i) + STREAM_AHEAD + k,    \
                             _MM_HINT_T0);                                  \
            }                                                               \
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), LOAD16(wr + i), a0); \
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16),               \
                                 LOAD16(wr + i + 16), a1);                  \
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32),               \
                                 LOAD16(wr + i + 32), a2);                  \
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48),               \
                                 LOAD16(wr + i + 48), a3);                  \
        }                                                                   \
        for (; i + 16 <= in; i += 16) {                                     \
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), LOAD16(wr + i), a0); \
        }                                                                   \
        s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1),       \
                                               _mm512_add_ps(a2, a3)));     \
        for (; i < in; i++) {                                               \
            s += x[i] * ELEM(wr, i);                                        \
        }                                                                   \
        y[r] = s * (SCALE);                                                 \
    }                                                                       \
}

NARROW_AVX512(row512_f32, float, wtype_load16_f32, wtype_elem_f32, 1.0f)
NARROW_AVX512(row512_bf16, uint16_t, wtype_load16_bf16, wtype_elem_bf16, 1.0f)

/* The tiles over all rows of x and W: 1 x 4 for one row of x (four sums
 * in flight), else 4 x 3 (12 sums, 3 rows of widened weights and a row of
 * x: the 16 AVX2 registers; 1.5-2x faster than 4 x 2 at 16 rows of x)
 * with 1 x 3 for the last rows of x, and 1 x 1 for the last rows of W. */
#define NARROW_AVX2(NAME, WT, LOAD8, ELEM, SCALE)                           \
NARROW_TILE(NAME##_4x3, WT, LOAD8, ELEM, SCALE, 4, 3, V8)                   \
NARROW_TILE(NAME##_1x4, WT, LOAD8, ELEM, SCALE, 1, 4, V8)                   \
NARROW_TILE(NAME##_1x3, WT, LOAD8, ELEM, SCALE, 1, 3, V8)                   \
NARROW_TILE(NAME##_1x1, WT, LOAD8, ELEM, SCALE, 1, 1, V8)                   \
                                                                            \
static WTYPE_AVX2 void                                                      \
NAME(const float *x, int n, int in, const WT *w, const float *scale,        \
    int rows, float *y, int ldy)                                            \
{                                                                           \
    const float *sc;                                                        \
    int          r = 0, t;                                                  \
                                                                            \
    if (n == 1) {                                                           \
        for (; r + 4 <= rows; r += 4) {                                     \
            sc = scale != NULL ? scale + r : NULL;                          \
            NAME##_1x4(x, in, w + (size_t) r * in, sc, y + r, ldy,          \
                       r + 8 <= rows);                                      \
        }                                                                   \
    } else {                                                                \
        for (; r + 3 <= rows; r += 3) {                                     \
            sc = scale != NULL ? scale + r : NULL;                          \
            for (t = 0; t + 4 <= n; t += 4) {                               \
                NAME##_4x3(x + (size_t) t * in, in, w + (size_t) r * in,    \
                           sc, y + (size_t) t * ldy + r, ldy,               \
                           t == 0 && r + 6 <= rows);                        \
            }                                                               \
            for (; t < n; t++) {                                            \
                NAME##_1x3(x + (size_t) t * in, in, w + (size_t) r * in,    \
                           sc, y + (size_t) t * ldy + r, ldy, 0);           \
            }                                                               \
        }                                                                   \
    }                                                                       \
    for (; r < rows; r++) {                                                 \
        sc = scale != NULL ? scale + r : NULL;                              \
        for (t = 0; t < n; t++) {                                           \
            NAME##_1x1(x + (size_t) t * in, in, w + (size_t) r * in, sc,    \
                       y + (size_t) t * ldy + r, ldy, 0);                   \
        }                                                                   \
    }                                                                       \
}

/*
 * Batches on AVX-512: 4 x 6 tiles of 16 lanes (24 sums, 6 rows of widened
 * weights and a row of x: 31 of the 32 registers), 1 x 6 for the last
 * rows of x, 1 x 1 for the last rows of W.  8 x 3, the same registers,
 * was slower than the AVX2 4 x 3 tiles (TinyLlama batch-16 decode, 2
 * threads, 2 alternating runs: bf16 80-81 tokens/s against 89-91, f32
 * 51-54 against 64): 8 rows of x of 2048 floats are 64 KiB, past L1.
 * 4 x 6: bf16 103-111 against 86-94, f32 79 against 63-64, int8 157-165
 * against 96-101.
 */
#define NARROW_BATCH512(NAME, WT, LOAD16, ELEM, SCALE)                      \
NARROW_TILE(NAME##_4x6, WT, LOAD16, ELEM, SCALE, 4, 6, V16)                 \
NARROW_TILE(NAME##_1x6, WT, LOAD16, ELEM, SCALE, 1, 6, V16)                 \
NARROW_TILE(NAME##_1x1, WT, LOAD16, ELEM, SCALE, 1, 1, V16)                 \
                                                                            \
static WTYPE_AVX512 void                                                    \
NAME(const float *x, int n, int in, const WT *w, const float *scale,        \
    int rows, float *y, int ldy)                                            \
{                                                                           \
    const float *sc;                                                        \
    int          r = 0, t;                                                  \
                                                                            \
    for (; r + 6 <= rows; r += 6) {                                         \
        sc = scale != NULL ? scale + r : NULL;                              \
        for (t = 0; t + 4 <= n; t += 4) {                                   \
            NAME##_4x6(x + (size_t) t * in, in, w + (size_t) r * in, sc,    \
                       y + (size_t) t * ldy + r, ldy,                       \
                       t == 0 && r + 12 <= rows);                           \
        }                                                                   \
        for (; t < n; t++) {                                                \
            NAME##_1x6(x + (size_t) t * in, in, w + (size_t) r * in, sc,    \
                       y + (size_t) t * ldy + r, ldy, 0);                   \
        }                                                                   \
    }                                                                       \
    for (; r < rows; r++) {                                                 \
        sc = scale != NULL ? scale + r : NULL;                              \
        for (t = 0; t < n; t++) {                                           \
            NAME##_1x1(x + (size_t) t * in, in, w + (size_t) r * in, sc,    \
                       y + (size_t) t * ldy + r, ldy, 0);                   \
        }                                                                   \
    }                                                                       \
}

/*
 * bf16 W against x rounded to bf16 (gemm_wide.h's prepared x: rows of
 * xstride bf16 values) on AVX512_BF16: 32 weights a vdpbf16ps, straight
 * from where they lie, no widening.  One row of x reads W a row at a time
 * as one stream, as row512_bf16 does; batches run 4 x 6 tiles.  The last
 * in % 32 inputs one by one, in float32 from the same bf16 values.
 */
#define PAIRS_NARROW_TILE(NAME, TB, RB)                                     \
static WTYPE_AVX512_BF16 void                                               \
NAME(const uint16_t *xb, int xstride, int in, const uint16_t *w, float *y,  \
    int ldy, int ahead)                                                     \
{                                                                           \
    __m512  acc[TB][RB];                                                    \
    __m512i wv[RB], xv;                                                     \
    float   s;                                                              \
    int     i, k, t, r;                                                     \
                                                                            \
    _Pragma("GCC unroll 8")                                                 \
    for (t = 0; t < TB; t++) {                                              \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            acc[t][r] = _mm512_setzero_ps();                                \
        }                                                                   \
    }                                                                       \
    for (i = 0; i + 32 <= in; i += 32) {                                    \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            if (ahead) {                                                    \
                _mm_prefetch((const char *) (w + (size_t) (RB + r) * in     \
                                             + i), _MM_HINT_T0);            \
            }                                                               \
            wv[r] = _mm512_loadu_si512((const void *) (w + (size_t) r * in  \
                                                       + i));               \
        }                                                                   \
        _Pragma("GCC unroll 8")                                             \
        for (t = 0; t < TB; t++) {                                          \
            xv = _mm512_loadu_si512((const void *) (xb + (size_t) t         \
                                                    * xstride + i));        \
            _Pragma("GCC unroll 8")                                         \
            for (r = 0; r < RB; r++) {                                      \
                acc[t][r] = _mm512_dpbf16_ps(acc[t][r], (__m512bh) xv,      \
                                             (__m512bh) wv[r]);             \
            }                                                               \
        }                                                                   \
    }                                                                       \
    for (t = 0; t < TB; t++) {                                              \
        for (r = 0; r < RB; r++) {                                          \
            s = _mm512_reduce_add_ps(acc[t][r]);                            \
            for (k = i; k < in; k++) {                                      \
                s += wtype_elem_bf16(xb, (size_t) t * xstride + k)          \
                     * wtype_elem_bf16(w, (size_t) r * in + k);             \
            }                                                               \
            y[(size_t) t * ldy + r] = s;                                    \
        }                                                                   \
    }                                                                       \
}

PAIRS_NARROW_TILE(pairs_4x6, 4, 6)
PAIRS_NARROW_TILE(pairs_1x6, 1, 6)
PAIRS_NARROW_TILE(pairs_1x1, 1, 1)

static WTYPE_AVX512_BF16 float
pairs_row(const uint16_t *xb, int in, const uint16_t *w)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    float  s;
    int    i;

    for (i = 0; i + 64 <= in; i += 64) {
        _mm_prefetch((const char *) (w + i) + STREAM_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *) (w + i) + STREAM_AHEAD + 64,
                     _MM_HINT_T0);
        a0 = _mm512_dpbf16_ps(a0,
            (__m512bh) _mm512_loadu_si512((const void *) (xb + i)),
            (__m512bh) _mm512_loadu_si512((const void *) (w + i)));
        a1 = _mm512_dpbf16_ps(a1,
            (__m512bh) _mm512_loadu_si512((const void *) (xb + i + 32)),
            (__m512bh) _mm512_loadu_si512((const void *) (w + i + 32)));
    }
    for (; i + 32 <= in; i += 32) {
        a0 = _mm512_dpbf16_ps(a0,
            (__m512bh) _mm512_loadu_si512((const void *) (xb + i)),
            (__m512bh) _mm512_loadu_si512((const void *) (w + i)));
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < in; i++) {
        s += wtype_elem_bf16(xb, i) * wtype_elem_bf16(w, i);
    }
    return s;
}

static WTYPE_AVX512_BF16 void
pairs_bf16(const uint16_t *xb, int xstride, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy)
{
    int r = 0, t;

    if (n == 1) {
        for (; r < rows; r++) {
            y[r] = pairs_row(xb, in, w + (size_t) r * in);
        }
        return;
    }
    for (; r + 6 <= rows; r += 6) {
        for (t = 0; t + 4 <= n; t += 4) {
            pairs_4x6(xb + (size_t) t * xstride, xstride, in,
                      w + (size_t) r * in, y + (size_t) t * ldy + r, ldy,
                      t == 0 && r + 12 <= rows);
        }
        for (; t < n; t++) {
            pairs_1x6(xb + (size_t) t * xstride, xstride, in,
                      w + (size_t) r * in, y + (size_t) t * ldy + r, ldy, 0);
        }
    }
    for (; r < rows; r++) {
        for (t = 0; t < n; t++) {
            pairs_1x1(xb + (size_t) t * xstride, xstride, in,
                      w + (size_t) r * in, y + (size_t) t * ldy + r, ldy, 0);
        }
    }
}

/*
 * One row of x against int8 W, a row of W at a time: per block, 16
 * weights widened to int16 and multiplied pairwise into 8 int32 lanes
 * (pmaddwd), exact within the block, then converted and scaled into 8
 * float lanes; the last block's tail (in not a multiple of 16) one by
 * one.  The rows lie one after another, so a thread reads one sequential
 * stream, and asks for the bytes X16_AHEAD further on as it goes (into
 * the next rows; a prefetch past the end of W does not fault).  Reading
 * 4 rows side by side instead, with the next 4 rows' bytes prefetched,
 * made 8 streams of 2 KiB: two processes, each on its own 5632 x 2048
 * matrix, read 16.3-19.4 GB/s together that way against 22.9-23.4 this
 * way (sums of each one's best pass, so above what they sustain
 * together; TinyLlama int8 decode 13.0-14.2 tokens/s against 11.3-12.7).
 * The bf16 1 x 4 tile is the other way round: a row at a time, with four
 * float sums, read 21.1-21.7 GB/s against its 25.4-26.4, and decoded
 * 7.0-7.2 tokens/s against 7.4-8.7.
 */
#define X16_AHEAD  8192

static WTYPE_AVX2 float
avx2_x16_row(const int16_t *xq, const float *xscale, int in,
    const int8_t *w)
{
    __m256i acc;
    __m256  sum = _mm256_setzero_ps();
    float   tail = 0.0f;
    int     b, i, i0, i1;

    for (b = 0, i0 = 0; i0 < in; b++, i0 = i1) {
        i1 = i0 + INFER_NARROW_XBLOCK < in ? i0 + INFER_NARROW_XBLOCK : in;
        acc = _mm256_setzero_si256();
        for (i = i0; i + 16 <= i1; i += 16) {
            _mm_prefetch((const char *) (w + i + X16_AHEAD), _MM_HINT_T0);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(
                _mm256_loadu_si256((const __m256i *) (xq + i)),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(
                    (const __m128i *) (w + i)))));
        }
        sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc),
                              _mm256_set1_ps(xscale[b]), sum);
        if (i < i1) {
            tail += (float) dot_x16(xq, w, i, i1) * xscale[b];
        }
    }
    return wtype_hsum8(sum) + tail;
}

/*
 * The same row by row stream on AVX512_VNNI: 32 weights widened to int16
 * and multiplied pairwise into 16 int32 lanes in one vpdpwssd, half the
 * AVX2 loop's instructions per weight.
 */
static WTYPE_AVX512_VNNI float
vnni_x16_row(const int16_t *xq, const float *xscale, int in,
    const int8_t *w)
{
    __m512i acc;
    __m512  sum = _mm512_setzero_ps();
    float   tail = 0.0f;
    int     b, i, i0, i1;

    for (b = 0, i0 = 0; i0 < in; b++, i0 = i1) {
        i1 = i0 + INFER_NARROW_XBLOCK < in ? i0 + INFER_NARROW_XBLOCK : in;
        acc = _mm512_setzero_si512();
        for (i = i0; i + 32 <= i1; i += 32) {
            _mm_prefetch((const char *) (w + i + X16_AHEAD), _MM_HINT_T0);
            acc = _mm512_dpwssd_epi32(acc,
                _mm512_loadu_si512((const void *) (xq + i)),
                _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                    (const __m256i *) (w + i))));
        }
        sum = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc),
                              _mm512_set1_ps(xscale[b]), sum);
        if (i < i1) {
            tail += (float) dot_x16(xq, w, i, i1) * xscale[b];
        }
    }
    return _mm512_reduce_add_ps(sum) + tail;
}

NARROW_AVX2(avx2_f32, float, wtype_load8_f32, wtype_elem_f32, 1.0f)
NARROW_AVX2(avx2_bf16, uint16_t, wtype_load8_bf16, wtype_elem_bf16, 1.0f)
NARROW_AVX2(avx2_i8, int8_t, wtype_load8_i8, wtype_elem_i8, scale[r])
NARROW_BATCH512(batch512_f32, float, wtype_load16_f32, wtype_elem_f32, 1.0f)
NARROW_BATCH512(batch512_bf16, uint16_t, wtype_load16_bf16, wtype_elem_bf16,
                1.0f)
NARROW_BATCH512(batch512_i8, int8_t, wtype_load16_i8, wtype_elem_i8,
                scale[r])

/* ---- dispatch ------------------------------------------------------------ */

void
infer_gemm_narrow_f32(const float *x, int n, int in, const float *w,
    int rows, float *y, int ldy)
{
    if (n == 1 && wtype_have_avx512()) {
        row512_f32(x, in, w, NULL, rows, y);
        return;
    }
    if (wtype_have_avx512()) {
        batch512_f32(x, n, in, w, NULL, rows, y, ldy);
        return;
    }
    (wtype_have_avx2() ? avx2_f32 : ref_f32)(x, n, in, w, NULL, rows, y, ldy);
}

void
infer_gemm_narrow_bf16(const float *x, int n, int in, const uint16_t *w,
    int rows, float *y, int ldy)
{
    if (n == 1 && wtype_have_avx512()) {
        row512_bf16(x, in, w, NULL, rows, y);
        return;
    }
    if (wtype_have_avx512()) {
        batch512_bf16(x, n, in, w, NULL, rows, y, ldy);
        return;
    }
    (wtype_have_avx2() ? avx2_bf16 : ref_bf16)(x, n, in, w, NULL, rows, y, ldy);
}

void
infer_gemm_narrow_i8(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy)
{
    if (wtype_have_avx512()) {
        batch512_i8(x, n, in, w, scale, rows, y, ldy);
        return;
    }
    (wtype_have_avx2() ? avx2_i8 : ref_i8)(x, n, in, w, scale, rows, y, ldy);
}

void
infer_gemm_narrow_bf16_pairs(const void *xp, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy)
{
    pairs_bf16(xp, 2 * ((in + 1) / 2), n, in, w, rows, y, ldy);
}

void
infer_gemm_narrow_i8_x16(const int16_t *xq, const float *xscale, int in,
    const int8_t *w, const float *scale, int rows, float *y)
{
    float (*row)(const int16_t *xq, const float *xscale, int in,
                 const int8_t *w);
    int     r;

    if (!wtype_have_avx2()) {
        infer_gemm_narrow_i8_x16_ref(xq, xscale, in, w, scale, rows, y);
        return;
    }
    row = wtype_have_avx512_vnni() ? vnni_x16_row : avx2_x16_row;
    for (r = 0; r < rows; r++) {
        y[r] = row(xq, xscale, in, w + (size_t) r * in) * scale[r];
    }
}

const char *
infer_gemm_narrow_kernel(void)
{
    return wtype_have_avx512() ? "AVX-512"
           : wtype_have_avx2() ? "AVX2+FMA" : "C";
}

const char *
infer_gemm_narrow_x16_kernel(void)
{
    return wtype_have_avx512_vnni() ? "AVX512-VNNI"
           : wtype_have_avx2() ? "AVX2+FMA" : "C";
}
