/*
 * Decode attention: a grouped-query group of one token's heads against its
 * sequence's paged keys and values (see attn_decode.h).
 */
#include <string.h>
#include <immintrin.h>
#include "attn_decode.h"
#include "vmath.h"
#include "wtype.h"

#define ATTN_INLINE  static inline __attribute__((always_inline))

/* position p's key (base c->k) or value (c->v) */
ATTN_INLINE const float *
slot(const infer_attn_cache_t *c, const float *base, int p)
{
    return base + (size_t) c->table[p / c->block_size] * c->block_stride
           + (size_t) (p % c->block_size) * c->head_dim;
}

/* infer_attn_softmax (attn_decode.h), inlined into each kernel, so that
 * the AVX2 ones call libmvec's 8-lane expf and tanhf. */
ATTN_INLINE void
softmax(float *s, int n, float cap)
{
    float max = -INFINITY, sum = 0.0f;
    int   j;

    if (cap != 0.0f) {
#pragma omp simd
        for (j = 0; j < n; j++) {
            s[j] = tanhf(s[j] / cap) * cap;
        }
    }
#pragma omp simd reduction(max:max)
    for (j = 0; j < n; j++) {
        max = s[j] > max ? s[j] : max;
    }
#pragma omp simd reduction(+:sum)
    for (j = 0; j < n; j++) {
        s[j] = expf(s[j] - max);
        sum += s[j];
    }
    sum = 1.0f / sum;
#pragma omp simd
    for (j = 0; j < n; j++) {
        s[j] *= sum;
    }
}

/* ---- reference ----------------------------------------------------------- */

void
infer_attn_decode_ref(const infer_attn_cache_t *c, int lo, int ctx,
    const float *q, int group, float scale, float softcap, float *out,
    float *s)
{
    int          hd = c->head_dim, n = ctx - lo, h, j, d;
    float        dot, pj;
    const float *qh, *k, *v;
    float       *oh, *sh;

    for (h = 0; h < group; h++) {
        qh = q + (size_t) h * hd;
        oh = out + (size_t) h * hd;
        sh = s + (size_t) h * n;
        for (j = 0; j < n; j++) {
            k = slot(c, c->k, lo + j);
            dot = 0.0f;
#pragma omp simd reduction(+:dot)
            for (d = 0; d < hd; d++) {
                dot += qh[d] * k[d];
            }
            sh[j] = dot * scale;
        }
        softmax(sh, n, softcap);
        memset(oh, 0, (size_t) hd * sizeof(float));
        for (j = 0; j < n; j++) {
            v = slot(c, c->v, lo + j);
            pj = sh[j];
#pragma omp simd
            for (d = 0; d < hd; d++) {
                oh[d] += pj * v[d];
            }
        }
    }
}

/* ---- AVX2 + FMA ---------------------------------------------------------- */

/* lane i: the sum of a_i's 8 lanes */
static WTYPE_AVX2 inline __m256
sum8x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
    __m256 a6, __m256 a7)
{
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1),
                               _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5),
                               _mm256_hadd_ps(a6, a7));

    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/*
 * s[j] = scale * q . k_j for m contiguous keys.  Eight keys at a time:
 * each load of q serves 8 independent sums (a single dot product is one
 * chain of dependent FMAs), and one reduction gives the 8 scores.
 */
static WTYPE_AVX2 void
avx2_scores(const float *q, int hd, const float *k, int m, float scale,
    float *s)
{
    int          j, d;
    __m256       qd, a0, a1, a2, a3, a4, a5, a6, a7;
    const float *kj;

    for (j = 0; j + 8 <= m; j += 8) {
        kj = k + (size_t) j * hd;
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm256_setzero_ps();
        for (d = 0; d < hd; d += 8) {
            qd = _mm256_loadu_ps(q + d);
            a0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + d), a0);
            a1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + hd + d), a1);
            a2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + 2 * hd + d), a2);
            a3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + 3 * hd + d), a3);
            a4 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + 4 * hd + d), a4);
            a5 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + 5 * hd + d), a5);
            a6 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + 6 * hd + d), a6);
            a7 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kj + 7 * hd + d), a7);
        }
        _mm256_storeu_ps(s + j, _mm256_mul_ps(
            sum8x8(a0, a1, a2, a3, a4, a5, a6, a7), _mm256_set1_ps(scale)));
    }
    for ( ; j < m; j++) {
        kj = k + (size_t) j * hd;
        a0 = _mm256_setzero_ps();
        for (d = 0; d < hd; d += 8) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d),
                                 _mm256_loadu_ps(kj + d), a0);
        }
        s[j] = wtype_hsum8(a0) * scale;
    }
}

/*
 * out += sum_j p[j] v_j for m contiguous values: 64 columns of out in
 * registers at a time (8 independent FMA chains), then 8 at a time.
 */
static WTYPE_AVX2 void
avx2_values(const float *p, int hd, const float *v, int m, float *out)
{
    int          d, j, i;
    __m256       o[8], pj;
    const float *vj;

    for (d = 0; d + 64 <= hd; d += 64) {
#pragma GCC unroll 8
        for (i = 0; i < 8; i++) {
            o[i] = _mm256_loadu_ps(out + d + 8 * i);
        }
        for (j = 0; j < m; j++) {
            pj = _mm256_broadcast_ss(p + j);
            vj = v + (size_t) j * hd + d;
#pragma GCC unroll 8
            for (i = 0; i < 8; i++) {
                o[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * i), o[i]);
            }
        }
#pragma GCC unroll 8
        for (i = 0; i < 8; i++) {
            _mm256_storeu_ps(out + d + 8 * i, o[i]);
        }
    }
    for ( ; d < hd; d += 8) {
        o[0] = _mm256_loadu_ps(out + d);
        for (j = 0; j < m; j++) {
            o[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j),
                                   _mm256_loadu_ps(v + (size_t) j * hd + d),
                                   o[0]);
        }
        _mm256_storeu_ps(out + d, o[0]);
    }
}

/*
 * Block by block (a block's slots are contiguous), every head of the group
 * on the block's keys, then on its values, while they are in L1.
 */
static WTYPE_AVX2 void
avx2_decode(const infer_attn_cache_t *c, int lo, int ctx, const float *q,
    int group, float scale, float softcap, float *out, float *s)
{
    int hd = c->head_dim, bs = c->block_size, n = ctx - lo, p, m, h;

    for (p = lo; p < ctx; p += m) {
        m = bs - p % bs;
        m = ctx - p < m ? ctx - p : m;
        for (h = 0; h < group; h++) {
            avx2_scores(q + (size_t) h * hd, hd, slot(c, c->k, p), m, scale,
                        s + (size_t) h * n + (p - lo));
        }
    }
    for (h = 0; h < group; h++) {
        softmax(s + (size_t) h * n, n, softcap);
    }
    memset(out, 0, (size_t) group * hd * sizeof(float));
    for (p = lo; p < ctx; p += m) {
        m = bs - p % bs;
        m = ctx - p < m ? ctx - p : m;
        for (h = 0; h < group; h++) {
            avx2_values(s + (size_t) h * n + (p - lo), hd, slot(c, c->v, p),
                        m, out + (size_t) h * hd);
        }
    }
}

/* ---- dispatch ------------------------------------------------------------ */

static WTYPE_AVX2 void
avx2_softmax(float *s, int n, float softcap)
{
    softmax(s, n, softcap);
}

static void
ref_softmax(float *s, int n, float softcap)
{
    softmax(s, n, softcap);
}

void
infer_attn_softmax(float *s, int n, float softcap)
{
    (wtype_have_avx2() ? avx2_softmax : ref_softmax)(s, n, softcap);
}

void
infer_attn_decode(const infer_attn_cache_t *c, int lo, int ctx,
    const float *q, int group, float scale, float softcap, float *out,
    float *s)
{
    (c->head_dim % 8 == 0 && wtype_have_avx2()
     ? avx2_decode : infer_attn_decode_ref)(c, lo, ctx, q, group, scale,
                                            softcap, out, s);
}

const char *
infer_attn_decode_kernel(int head_dim)
{
    return head_dim % 8 == 0 && wtype_have_avx2() ? "AVX2+FMA" : "C";
}
