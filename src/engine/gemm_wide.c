/*
 * Wide products: y = x W^T for many rows of x (see gemm_wide.h).
 *
 * W's rows are packed KC inputs at a time into panels of NR rows laid out
 * input-major (panel[k * NR + j] = W[j][k0 + k], widened and scaled), so
 * a tile of MR rows of x by NR rows of W keeps MR x NR / 8 sums in
 * registers and, per input, loads NR / 8 vectors of the panel and
 * broadcasts MR values of x: MR x NR / 8 multiply-adds for NR / 8 + MR
 * loads.  The panels (INFER_WIDE_ROWS x KC floats, 96 KiB) stay in L2,
 * and MR rows of x (4 KiB of the block) in L1 while they pass over every
 * panel; the other order, one panel in L1 while every row of x passes
 * over it, was no faster (2 threads, 128 rows of x: 0.97-1.00x).
 *
 * TinyLlama prefill of 128 tokens, 2 threads, against widening W into a
 * float32 tile for OpenBLAS's sgemm (3 alternating runs): bf16 42.0-45.9
 * tokens/s against 33.4-38.8, int8 45.9-49.2 against 40.8-45.6.  With
 * float32 W, packed the same way, sgemm stayed faster (46.9-47.9 against
 * 41.5-45.5), so float32 has no wide product.  No better in a harness
 * (2 threads, 128 rows of x, best of 15-25 alternating calls): 6 x 16
 * tiles, 128 or 192 inputs a block, x copied to a contiguous block per
 * row of tiles.
 */
#include <immintrin.h>
#include <string.h>
#include "gemm_narrow.h"
#include "gemm_wide.h"
#include "model.h"
#include "wtype.h"

#define KC  256
#define MR  4
#define NV  3
#define NR  (8 * NV)

/* ---- packing: W to float32 panels ---------------------------------------- */

/* v[j] lane i becomes v[i] lane j */
static WTYPE_AVX2 inline void
transpose8(__m256 v[8])
{
    __m256 a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7;

    a0 = _mm256_unpacklo_ps(v[0], v[1]);
    a1 = _mm256_unpackhi_ps(v[0], v[1]);
    a2 = _mm256_unpacklo_ps(v[2], v[3]);
    a3 = _mm256_unpackhi_ps(v[2], v[3]);
    a4 = _mm256_unpacklo_ps(v[4], v[5]);
    a5 = _mm256_unpackhi_ps(v[4], v[5]);
    a6 = _mm256_unpacklo_ps(v[6], v[7]);
    a7 = _mm256_unpackhi_ps(v[6], v[7]);
    b0 = _mm256_shuffle_ps(a0, a2, 0x44);
    b1 = _mm256_shuffle_ps(a0, a2, 0xee);
    b2 = _mm256_shuffle_ps(a1, a3, 0x44);
    b3 = _mm256_shuffle_ps(a1, a3, 0xee);
    b4 = _mm256_shuffle_ps(a4, a6, 0x44);
    b5 = _mm256_shuffle_ps(a4, a6, 0xee);
    b6 = _mm256_shuffle_ps(a5, a7, 0x44);
    b7 = _mm256_shuffle_ps(a5, a7, 0xee);
    v[0] = _mm256_permute2f128_ps(b0, b4, 0x20);
    v[1] = _mm256_permute2f128_ps(b1, b5, 0x20);
    v[2] = _mm256_permute2f128_ps(b2, b6, 0x20);
    v[3] = _mm256_permute2f128_ps(b3, b7, 0x20);
    v[4] = _mm256_permute2f128_ps(b0, b4, 0x31);
    v[5] = _mm256_permute2f128_ps(b1, b5, 0x31);
    v[6] = _mm256_permute2f128_ps(b2, b6, 0x31);
    v[7] = _mm256_permute2f128_ps(b3, b7, 0x31);
}

/*
 * Rows [0, rows) of W (rows <= NR; the panel's other rows are zeros) at
 * inputs [k0, k0 + kc) into panel[k * NR + j], times scale[j] for int8:
 * 8 inputs of 8 rows at a time, widened, then turned input-major.
 */
#define WIDE_PACK(NAME, WT, LOAD8, ELEM, SCALE)                             \
static WTYPE_AVX2 void                                                      \
NAME(const WT *w, const float *scale, int in, int rows, int k0, int kc,     \
    float *panel)                                                           \
{                                                                           \
    __m256 v[8];                                                            \
    int    k, h, j, r;                                                      \
                                                                            \
    (void) scale;                                                           \
    for (k = 0; k + 8 <= kc; k += 8) {                                      \
        for (h = 0; h < NV; h++) {                                          \
            for (j = 0; j < 8; j++) {                                       \
                r = h * 8 + j;                                              \
                v[j] = r < rows ? _mm256_mul_ps(LOAD8(w + (size_t) r * in   \
                                                      + k0 + k),            \
                                                _mm256_set1_ps(SCALE))      \
                                : _mm256_setzero_ps();                      \
            }                                                               \
            transpose8(v);                                                  \
            for (j = 0; j < 8; j++) {                                       \
                _mm256_store_ps(panel + (size_t) (k + j) * NR + h * 8,      \
                                v[j]);                                      \
            }                                                               \
        }                                                                   \
    }                                                                       \
    for (; k < kc; k++) {                                                   \
        for (r = 0; r < NR; r++) {                                          \
            panel[(size_t) k * NR + r] =                                    \
                r < rows ? ELEM(w, (size_t) r * in + k0 + k) * (SCALE)      \
                         : 0.0f;                                            \
        }                                                                   \
    }                                                                       \
}

WIDE_PACK(pack_bf16, uint16_t, wtype_load8_bf16, wtype_elem_bf16, 1.0f)
WIDE_PACK(pack_i8, int8_t, wtype_load8_i8, wtype_elem_i8, scale[r])

/* ---- the tile ------------------------------------------------------------ */

/*
 * M rows of x (M <= MR) by the panel's NR rows of W over kc inputs, into
 * y's first cols columns of M rows (added to what is there with add).
 */
#define WIDE_TILE(M)                                                        \
static WTYPE_AVX2 void                                                      \
tile_##M(const float *x, int ldx, const float *panel, int kc, float *y,     \
    int ldy, int cols, int add)                                             \
{                                                                           \
    __m256 c[M][NV], wv[NV], xb;                                            \
    float  part[NR];                                                        \
    int    k, t, v, j;                                                      \
                                                                            \
    _Pragma("GCC unroll 8")                                                 \
    for (t = 0; t < M; t++) {                                               \
        _Pragma("GCC unroll 4")                                             \
        for (v = 0; v < NV; v++) {                                          \
            c[t][v] = _mm256_setzero_ps();                                  \
        }                                                                   \
    }                                                                       \
    _Pragma("GCC unroll 4")                                                 \
    for (k = 0; k < kc; k++) {                                              \
        _Pragma("GCC unroll 4")                                             \
        for (v = 0; v < NV; v++) {                                          \
            wv[v] = _mm256_load_ps(panel + (size_t) k * NR + 8 * v);        \
        }                                                                   \
        _Pragma("GCC unroll 8")                                             \
        for (t = 0; t < M; t++) {                                           \
            xb = _mm256_broadcast_ss(x + (size_t) t * ldx + k);             \
            _Pragma("GCC unroll 4")                                         \
            for (v = 0; v < NV; v++) {                                      \
                c[t][v] = _mm256_fmadd_ps(xb, wv[v], c[t][v]);              \
            }                                                               \
        }                                                                   \
    }                                                                       \
    _Pragma("GCC unroll 8")                                                 \
    for (t = 0; t < M; t++) {                                               \
        float *yt = y + (size_t) t * ldy;                                   \
                                                                            \
        if (cols == NR) {                                                   \
            _Pragma("GCC unroll 4")                                         \
            for (v = 0; v < NV; v++) {                                      \
                if (add) {                                                  \
                    c[t][v] = _mm256_add_ps(c[t][v],                        \
                                            _mm256_loadu_ps(yt + 8 * v));   \
                }                                                           \
                _mm256_storeu_ps(yt + 8 * v, c[t][v]);                      \
            }                                                               \
            continue;                                                       \
        }                                                                   \
        _Pragma("GCC unroll 4")                                             \
        for (v = 0; v < NV; v++) {                                          \
            _mm256_storeu_ps(part + 8 * v, c[t][v]);                        \
        }                                                                   \
        for (j = 0; j < cols; j++) {                                        \
            yt[j] = add ? yt[j] + part[j] : part[j];                        \
        }                                                                   \
    }                                                                       \
}

WIDE_TILE(1)
WIDE_TILE(2)
WIDE_TILE(3)
WIDE_TILE(4)

typedef void (*tile_fn)(const float *x, int ldx, const float *panel, int kc,
    float *y, int ldy, int cols, int add);

static const tile_fn tiles[MR + 1] = { NULL, tile_1, tile_2, tile_3, tile_4 };

/* ---- the product --------------------------------------------------------- */

/*
 * While the tiles run over one block of inputs, they ask for the next
 * block's bytes of these rows of W (lines of lpr lines a row; none after
 * the last block), a share before each tile, so that packing finds them
 * in L2: into L1 they were slower when this packed float32 too, whose
 * block is 3x L1 and pushed out the panel (2 threads, 2048 x 2048, 128
 * rows of x, best of 25: 72 GFLOP/s against 121).
 */
static WTYPE_AVX2 inline void
prefetch_share(const char *w, size_t row_bytes, size_t k0_bytes, int lpr,
    long lines, long ntiles, long tile)
{
    long l, l1, r, c;

    if (lpr == 0) {
        return;
    }
    l = tile * lines / ntiles;
    l1 = (tile + 1) * lines / ntiles;
    r = l / lpr;
    c = l % lpr;
    for (; l < l1; l++) {
        _mm_prefetch(w + (size_t) r * row_bytes + k0_bytes + c * 64,
                     _MM_HINT_T1);
        if (++c == lpr) {
            c = 0;
            r++;
        }
    }
}

#define WIDE_PRODUCT(NAME, WT, PACK)                                        \
static WTYPE_AVX2 void                                                      \
NAME(const float *x, int n, int in, const WT *w, const float *scale,        \
    int rows, float *y, int ldy)                                            \
{                                                                           \
    float panels[INFER_WIDE_ROWS * KC] __attribute__((aligned(32)));        \
    int   k0, kc, g, t, m, cols, ng = (rows + NR - 1) / NR, lpr;            \
    long  lines, ntiles = (long) ((n + MR - 1) / MR) * ng, tile;            \
                                                                            \
    for (k0 = 0; k0 < in; k0 += KC) {                                       \
        kc = in - k0 < KC ? in - k0 : KC;                                   \
        for (g = 0; g < ng; g++) {                                          \
            PACK(w + (size_t) g * NR * in, scale != NULL ? scale + g * NR   \
                                                         : NULL,            \
                 in, rows - g * NR < NR ? rows - g * NR : NR, k0, kc,       \
                 panels + (size_t) g * NR * kc);                            \
        }                                                                   \
        lpr = (int) (((in - k0 - kc < KC ? in - k0 - kc : KC)               \
                      * sizeof(WT) + 63) / 64);                             \
        lines = (long) rows * lpr;                                          \
        tile = 0;                                                           \
        for (t = 0; t < n; t += MR) {                                       \
            m = n - t < MR ? n - t : MR;                                    \
            for (g = 0; g < ng; g++) {                                      \
                prefetch_share((const char *) w, in * sizeof(WT),           \
                               (k0 + kc) * sizeof(WT), lpr, lines, ntiles,  \
                               tile++);                                     \
                cols = rows - g * NR < NR ? rows - g * NR : NR;             \
                tiles[m](x + (size_t) t * in + k0, in,                      \
                         panels + (size_t) g * NR * kc, kc,                 \
                         y + (size_t) t * ldy + g * NR, ldy, cols, k0 > 0); \
            }                                                               \
        }                                                                   \
    }                                                                       \
}

WIDE_PRODUCT(wide_bf16, uint16_t, pack_bf16)
WIDE_PRODUCT(wide_i8, int8_t, pack_i8)

/* ---- AVX-512: pairs of inputs, one dot-product instruction --------------- */

/*
 * int8 on AVX512_VNNI: the same blocking, but a panel holds pairs of
 * inputs: panel[p * NR2 + j] is the dword (W[j][k0 + 2p], W[j][k0 + 2p +
 * 1]) widened to int16, and x is quantized to int16 pairs once per
 * product (infer_gemm_wide_prepare), so one vpdpwssd does 32
 * multiply-adds of 16 rows of W against a broadcast pair of x.  The
 * int16 sums are exact within a block of INFER_NARROW_XBLOCK inputs
 * (|xq w| <= 32767 * 127, 128 terms), then scaled by the block's x scale
 * into float32 sums, as the narrow x16 product does: two sets of
 * accumulators, 6 rows of x a tile (27 of the 32 registers).  (bf16 on
 * AVX512_BF16 packs x instead: below.)
 */
#define NV2  2
#define NR2  (16 * NV2)
#define MRI  6
#define BP   (INFER_NARROW_XBLOCK / 2)     /* pairs of an x block */

_Static_assert(KC % INFER_NARROW_XBLOCK == 0, "x blocks within KC");
_Static_assert(INFER_WIDE_ROWS % NR2 == 0, "whole panels");

static WTYPE_AVX2 inline __m256
pairs8_i8(const int8_t *w)
{
    return _mm256_castsi256_ps(_mm256_cvtepi8_epi16(
        _mm_loadu_si128((const __m128i *) w)));
}

static inline uint32_t
pair_i8(const int8_t *w, size_t i, int two)
{
    return (uint16_t) (int16_t) w[i]
           | (two ? (uint32_t) (uint16_t) (int16_t) w[i + 1] << 16 : 0);
}

/*
 * Rows [0, rows) of W (rows <= NR2; the panel's other rows are zeros) at
 * inputs [k0, k0 + kc) into panel[p * NR2 + j]: 8 pairs of 8 rows at a
 * time, turned pair-major; an odd last input pairs with a zero.
 */
static WTYPE_AVX2 void
pack_pairs_i8(const int8_t *w, int in, int rows, int k0, int kc,
    uint32_t *panel)
{
    __m256 v[8];
    int    p, h, j, r, kp = (kc + 1) / 2;

    for (p = 0; 2 * p + 16 <= kc; p += 8) {
        for (h = 0; h < NR2 / 8; h++) {
            for (j = 0; j < 8; j++) {
                r = h * 8 + j;
                v[j] = r < rows ? pairs8_i8(w + (size_t) r * in + k0 + 2 * p)
                                : _mm256_setzero_ps();
            }
            transpose8(v);
            for (j = 0; j < 8; j++) {
                _mm256_store_ps((float *) panel + (size_t) (p + j) * NR2
                                + h * 8, v[j]);
            }
        }
    }
    for (; p < kp; p++) {
        for (r = 0; r < NR2; r++) {
            panel[(size_t) p * NR2 + r] =
                r < rows ? pair_i8(w, (size_t) r * in + k0 + 2 * p,
                                   2 * p + 1 < kc)
                         : 0;
        }
    }
}

/* the tile's sums c[t][v] into y's first cols columns of row t */
#define PAIRS_STORE(M)                                                      \
    _Pragma("GCC unroll 8")                                                 \
    for (t = 0; t < M; t++) {                                               \
        _Pragma("GCC unroll 2")                                             \
        for (v = 0; v < NV2; v++) {                                         \
            float     *yv = y + (size_t) t * ldy + 16 * v;                  \
            __mmask16  mk = cols >= 16 * (v + 1) ? 0xffff                   \
                            : cols <= 16 * v ? 0                            \
                            : (__mmask16) ((1u << (cols - 16 * v)) - 1);    \
                                                                            \
            if (add) {                                                      \
                c[t][v] = _mm512_add_ps(c[t][v],                            \
                                        _mm512_maskz_loadu_ps(mk, yv));     \
            }                                                               \
            _mm512_mask_storeu_ps(yv, mk, c[t][v]);                         \
        }                                                                   \
    }

/* M rows of int16 x pairs by a panel over kp pairs, from the x block b0:
 * exact int32 sums a block, then times the block's x scale in float32,
 * and at the end times the rows' scales */
#define I16_TILE(M)                                                         \
static WTYPE_AVX512_VNNI void                                               \
i16_tile_##M(const uint32_t *x, int ldx, const uint32_t *panel, int kp,     \
    const float *pscale, int b0, const float *xs, int ldxs, float *y,       \
    int ldy, int cols, int add)                                             \
{                                                                           \
    __m512i ci[M][NV2], wv[NV2], xb;                                        \
    __m512  c[M][NV2], sb;                                                  \
    int     p, p1, q, t, v, b;                                              \
                                                                            \
    _Pragma("GCC unroll 8")                                                 \
    for (t = 0; t < M; t++) {                                               \
        _Pragma("GCC unroll 2")                                             \
        for (v = 0; v < NV2; v++) {                                         \
            c[t][v] = _mm512_setzero_ps();                                  \
        }                                                                   \
    }                                                                       \
    for (p = 0, b = b0; p < kp; p = p1, b++) {                              \
        p1 = kp - p < BP ? kp : p + BP;                                     \
        _Pragma("GCC unroll 8")                                             \
        for (t = 0; t < M; t++) {                                           \
            _Pragma("GCC unroll 2")                                         \
            for (v = 0; v < NV2; v++) {                                     \
                ci[t][v] = _mm512_setzero_si512();                          \
            }                                                               \
        }                                                                   \
        _Pragma("GCC unroll 2")                                             \
        for (q = p; q < p1; q++) {                                          \
            _Pragma("GCC unroll 2")                                         \
            for (v = 0; v < NV2; v++) {                                     \
                wv[v] = _mm512_load_si512(panel + (size_t) q * NR2          \
                                          + 16 * v);                        \
            }                                                               \
            _Pragma("GCC unroll 8")                                         \
            for (t = 0; t < M; t++) {                                       \
                xb = _mm512_set1_epi32((int) x[(size_t) t * ldx + q]);      \
                _Pragma("GCC unroll 2")                                     \
                for (v = 0; v < NV2; v++) {                                 \
                    ci[t][v] = _mm512_dpwssd_epi32(ci[t][v], xb, wv[v]);    \
                }                                                           \
            }                                                               \
        }                                                                   \
        _Pragma("GCC unroll 8")                                             \
        for (t = 0; t < M; t++) {                                           \
            sb = _mm512_set1_ps(xs[(size_t) t * ldxs + b]);                 \
            _Pragma("GCC unroll 2")                                         \
            for (v = 0; v < NV2; v++) {                                     \
                c[t][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ci[t][v]), sb, \
                                          c[t][v]);                         \
            }                                                               \
        }                                                                   \
    }                                                                       \
    _Pragma("GCC unroll 8")                                                 \
    for (t = 0; t < M; t++) {                                               \
        _Pragma("GCC unroll 2")                                             \
        for (v = 0; v < NV2; v++) {                                         \
            c[t][v] = _mm512_mul_ps(c[t][v],                                \
                                    _mm512_loadu_ps(pscale + 16 * v));      \
        }                                                                   \
    }                                                                       \
    PAIRS_STORE(M)                                                          \
}

I16_TILE(1)
I16_TILE(2)
I16_TILE(3)
I16_TILE(4)
I16_TILE(5)
I16_TILE(6)

typedef void (*pairs_tile_fn)(const uint32_t *x, int ldx,
    const uint32_t *panel, int kp, const float *pscale, int b0,
    const float *xs, int ldxs, float *y, int ldy, int cols, int add);

static const pairs_tile_fn i16_tiles[MRI + 1] = {
    NULL, i16_tile_1, i16_tile_2, i16_tile_3, i16_tile_4, i16_tile_5,
    i16_tile_6
};

/* x rows of `pairs` dwords, then (int8) their blocks' scales */
static size_t
pairs_of(int in)
{
    return (size_t) (in + 1) / 2;
}

static size_t
blocks_of(int in)
{
    return (size_t) (in + INFER_NARROW_XBLOCK - 1) / INFER_NARROW_XBLOCK;
}

static WTYPE_AVX2 void
pairs_i8(const void *xp, int n, int in, const int8_t *w, const float *scale,
    int rows, float *y, int ldy)
{
    uint32_t     panels[INFER_WIDE_ROWS * KC / 2]
                 __attribute__((aligned(64)));
    float        pscale[INFER_WIDE_ROWS];
    const float *xs;
    int          k0, kc, kp, g, t, m, cols, lpr, ng = (rows + NR2 - 1) / NR2;
    int          pairs = (int) pairs_of(in);
    long         lines, ntiles = (long) ((n + MRI - 1) / MRI) * ng, tile;

    xs = (const float *) ((const uint32_t *) xp + (size_t) n * pairs);
    for (g = 0; g < ng * NR2; g++) {
        pscale[g] = g < rows ? scale[g] : 0.0f;
    }
    for (k0 = 0; k0 < in; k0 += KC) {
        kc = in - k0 < KC ? in - k0 : KC;
        kp = (kc + 1) / 2;
        for (g = 0; g < ng; g++) {
            pack_pairs_i8(w + (size_t) g * NR2 * in, in,
                          rows - g * NR2 < NR2 ? rows - g * NR2 : NR2, k0,
                          kc, panels + (size_t) g * NR2 * kp);
        }
        lpr = ((in - k0 - kc < KC ? in - k0 - kc : KC) + 63) / 64;
        lines = (long) rows * lpr;
        tile = 0;
        for (t = 0; t < n; t += MRI) {
            m = n - t < MRI ? n - t : MRI;
            for (g = 0; g < ng; g++) {
                prefetch_share((const char *) w, in, k0 + kc, lpr, lines,
                               ntiles, tile++);
                cols = rows - g * NR2 < NR2 ? rows - g * NR2 : NR2;
                i16_tiles[m]((const uint32_t *) xp + (size_t) t * pairs
                             + k0 / 2, pairs, panels + (size_t) g * NR2 * kp,
                             kp, pscale + g * NR2, k0 / INFER_NARROW_XBLOCK,
                             xs + (size_t) t * blocks_of(in),
                             (int) blocks_of(in),
                             y + (size_t) t * ldy + g * NR2, ldy, cols,
                             k0 > 0);
            }
        }
    }
}

/*
 * bf16 the other way round: x is the packed side and W is broadcast from
 * where it lies.  Packing W cost more than the tiles could hide at a
 * prompt's few hundred rows (TinyLlama's 5632 x 2048 with 128 rows of x,
 * 1 thread: 2.7 of 9.5 ms, the same with or without prefetching, and 1.8
 * ms with W in cache: the transposes), while x, packed once per product
 * by infer_gemm_wide_prepare, is n rows where W is thousands.  x panels:
 * 16 rows of x a block, pair-major (xpanel[(b * pairs + p) * 16 + lane]
 * = rows 16b + lane's pair p, zeros past n).  A tile is XR rows of W
 * (their pair p broadcast) by up to XV blocks of x (24 sums, 4 loads of x
 * and 6 broadcasts a pair), over all the inputs, then stored lane by lane
 * (scattered into y's columns).  XV blocks of x (64 rows, 256 KiB of
 * pairs at 2048 inputs) pass over all the call's rows of W (96: 384 KiB),
 * both in L2; on the first pass each tile asks for the next XR rows'
 * lines.  The other order, each XR rows of W against every block of x,
 * read x from L3 past 256 rows (512 rows: 35 ms against 30 for packing W).
 * An odd input count's last pair (one weight) runs in a loop of its own,
 * not as a test at every broadcast: 5632 x 2048 with 128 rows of x, 1
 * thread on Zen 4, 217-220 GFLOP/s against 207-209 (vdpbf16ps peak 232),
 * 2 threads 421 against 401; 16 rows (XV = 1) 196 against 203.
 */
#define XR  6
#define XV  4

static inline uint32_t
w_pair(const uint16_t *w, size_t i)
{
    uint32_t d;

    memcpy(&d, w + i, sizeof(d));
    return d;
}

/* the parts the bf16 and float32 tiles share: the sums set to 0; lane l's
 * offset in y (l rows of ldy); on the first pass, every 16 steps, the
 * next RB rows' line at the weight AT */
#define XT_ZERO(RB, NVX)                                                    \
    _Pragma("GCC unroll 8")                                                 \
    for (r = 0; r < RB; r++) {                                              \
        _Pragma("GCC unroll 4")                                             \
        for (v = 0; v < NVX; v++) {                                         \
            acc[r][v] = _mm512_setzero_ps();                                \
        }                                                                   \
    }

#define XT_LANES(ldy)                                                       \
    _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, \
                                        5, 4, 3, 2, 1, 0),                  \
                       _mm512_set1_epi32(ldy))

#define XT_AHEAD(RB, STEP, AT)                                              \
    if (ahead && (STEP) % 16 == 0) {                                        \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            _mm_prefetch((const char *) (w + (size_t) (RB + r) * in         \
                                         + (AT)), _MM_HINT_T0);             \
        }                                                                   \
    }

/* and their sums, lane by lane, into y's columns r of rows t0 + 16 v.. */
#define XT_STORE(RB, NVX)                                                   \
    _Pragma("GCC unroll 4")                                                 \
    for (v = 0; v < NVX; v++) {                                             \
        left = n - t0 - 16 * v;                                             \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            _mm512_mask_i32scatter_ps(y + (size_t) (t0 + 16 * v) * ldy + r, \
                left >= 16 ? (__mmask16) 0xffff                             \
                           : (__mmask16) ((1u << left) - 1), idx,           \
                acc[r][v], 4);                                              \
        }                                                                   \
    }

/* one pair step of a tile: XR (or 1) broadcasts of W's pair p (WP: the
 * pair as it lies, or its last single weight) against NVX blocks of x */
#define XT_STEP(RB, NVX, WP)                                                \
    _Pragma("GCC unroll 4")                                                 \
    for (v = 0; v < NVX; v++) {                                             \
        xv[v] = _mm512_loadu_si512(xpan + ((size_t) v * pairs + p) * 16);   \
    }                                                                       \
    _Pragma("GCC unroll 8")                                                 \
    for (r = 0; r < RB; r++) {                                              \
        wb = _mm512_set1_epi32((int) (WP));                                 \
        _Pragma("GCC unroll 4")                                             \
        for (v = 0; v < NVX; v++) {                                         \
            acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh) xv[v],       \
                                         (__m512bh) wb);                    \
        }                                                                   \
    }

#define XT_TILE(NAME, RB, NVX)                                              \
static WTYPE_AVX512_BF16 void                                               \
NAME(const uint32_t *xpan, int pairs, const uint16_t *w, int in, float *y,  \
    int ldy, int t0, int n, int ahead)                                      \
{                                                                           \
    __m512  acc[RB][NVX];                                                   \
    __m512i xv[NVX], wb;                                                    \
    __m512i idx = XT_LANES(ldy);                                            \
    int     p, r, v, left, full = in / 2;                                   \
                                                                            \
    XT_ZERO(RB, NVX)                                                        \
    for (p = 0; p < full; p++) {                                            \
        XT_AHEAD(RB, p, 2 * p)                                              \
        XT_STEP(RB, NVX, w_pair(w, (size_t) r * in + 2 * p))                \
    }                                                                       \
    for (; p < pairs; p++) {                                                \
        XT_STEP(RB, NVX, w[(size_t) r * in + 2 * p])                        \
    }                                                                       \
    XT_STORE(RB, NVX)                                                       \
}

XT_TILE(xt_6x1, XR, 1)
XT_TILE(xt_6x2, XR, 2)
XT_TILE(xt_6x3, XR, 3)
XT_TILE(xt_6x4, XR, 4)
XT_TILE(xt_1x1, 1, 1)
XT_TILE(xt_1x2, 1, 2)
XT_TILE(xt_1x3, 1, 3)
XT_TILE(xt_1x4, 1, 4)

/* a product's tiles: XV blocks of x at a time (panels of STEPS steps)
 * over the call's rows of W, XR rows a tile and the last ones one by one,
 * the first pass asking for the next tile's rows */
#define XT_PASSES(TILES, STEPS)                                             \
    for (b = 0; b < nb; b += nv) {                                          \
        nv = nb - b < XV ? nb - b : XV;                                     \
        for (r = 0; r < rows; r += rb) {                                    \
            rb = rows - r >= XR ? XR : 1;                                   \
            TILES[rb == XR][nv](xpan + (size_t) b * (STEPS) * 16, STEPS,    \
                                w + (size_t) r * in, in, y + r, ldy,        \
                                16 * b, n, b == 0 && r + 2 * rb <= rows);   \
        }                                                                   \
    }

typedef void (*xt_tile_fn)(const uint32_t *xpan, int pairs,
    const uint16_t *w, int in, float *y, int ldy, int t0, int n, int ahead);

static const xt_tile_fn xt_tiles[2][XV + 1] = {
    { NULL, xt_1x1, xt_1x2, xt_1x3, xt_1x4 },
    { NULL, xt_6x1, xt_6x2, xt_6x3, xt_6x4 }
};

static void
xt_bf16(const void *xp, int n, int in, const uint16_t *w, int rows,
    float *y, int ldy)
{
    const uint32_t *xpan = xp;
    int             pairs = (int) pairs_of(in), nb = (n + 15) / 16;
    int             r, b, nv, rb;

    XT_PASSES(xt_tiles, pairs)
}

/*
 * float32 W the same way round: x panels of 16 rows, input-major
 * (xpanel[(b * in + i) * 16 + lane] = row 16b + lane's input i, zeros
 * past n), each weight broadcast from where it lies, XR rows of W by up
 * to XV blocks of x a tile (24 FMAs, 4 loads of x and 6 broadcasts an
 * input).  OpenBLAS's sgemm packs W on every call instead.  One thread
 * on Zen 4 (its FMA peak is about 110 GFLOP/s), 128 rows of x, 96-row
 * calls: 5568 x 2048 110.7 GFLOP/s against sgemm's 81.3 (83.2 in one
 * call), 2016 x 5632 110.2 against 91.2, and with 512 rows 110.1 against
 * 92.0 (100.5).
 */
#define XF_TILE(NAME, RB, NVX)                                              \
static WTYPE_AVX512 void                                                    \
NAME(const float *xpan, int steps, const float *w, int in, float *y,       \
    int ldy, int t0, int n, int ahead)                                      \
{                                                                           \
    __m512  acc[RB][NVX], xv[NVX], wb;                                      \
    __m512i idx = XT_LANES(ldy);                                            \
    int     i, r, v, left;                                                  \
                                                                            \
    XT_ZERO(RB, NVX)                                                        \
    for (i = 0; i < steps; i++) {                                           \
        XT_AHEAD(RB, i, i)                                                  \
        _Pragma("GCC unroll 4")                                             \
        for (v = 0; v < NVX; v++) {                                         \
            xv[v] = _mm512_loadu_ps(xpan + ((size_t) v * steps + i) * 16);  \
        }                                                                   \
        _Pragma("GCC unroll 8")                                             \
        for (r = 0; r < RB; r++) {                                          \
            wb = _mm512_set1_ps(w[(size_t) r * in + i]);                    \
            _Pragma("GCC unroll 4")                                         \
            for (v = 0; v < NVX; v++) {                                     \
                acc[r][v] = _mm512_fmadd_ps(xv[v], wb, acc[r][v]);          \
            }                                                               \
        }                                                                   \
    }                                                                       \
    XT_STORE(RB, NVX)                                                       \
}

XF_TILE(xf_6x1, XR, 1)
XF_TILE(xf_6x2, XR, 2)
XF_TILE(xf_6x3, XR, 3)
XF_TILE(xf_6x4, XR, 4)
XF_TILE(xf_1x1, 1, 1)
XF_TILE(xf_1x2, 1, 2)
XF_TILE(xf_1x3, 1, 3)
XF_TILE(xf_1x4, 1, 4)

typedef void (*xf_tile_fn)(const float *xpan, int steps, const float *w,
    int in, float *y, int ldy, int t0, int n, int ahead);

static const xf_tile_fn xf_tiles[2][XV + 1] = {
    { NULL, xf_1x1, xf_1x2, xf_1x3, xf_1x4 },
    { NULL, xf_6x1, xf_6x2, xf_6x3, xf_6x4 }
};

static void
xf_f32(const float *xpan, int n, int in, const float *w, int rows, float *y,
    int ldy)
{
    int nb = (n + 15) / 16, r, b, nv, rb;

    XT_PASSES(xf_tiles, in)
}

/* x into float32 x panels: 8 rows by 8 inputs at a time, turned */
static WTYPE_AVX512 void
prepare_f32_panels(const float *x, int n, int in, float *xp)
{
    __m256 v[8];
    int    nb = (n + 15) / 16, b, i, h, j, t, lane;

    for (b = 0; b < nb; b++) {
        for (i = 0; i + 8 <= in; i += 8) {
            for (h = 0; h < 2; h++) {
                for (j = 0; j < 8; j++) {
                    t = 16 * b + 8 * h + j;
                    v[j] = t < n ? _mm256_loadu_ps(x + (size_t) t * in + i)
                                 : _mm256_setzero_ps();
                }
                transpose8(v);
                for (j = 0; j < 8; j++) {
                    _mm256_storeu_ps(xp + ((size_t) b * in + i + j) * 16
                                     + 8 * h, v[j]);
                }
            }
        }
        for (; i < in; i++) {
            for (lane = 0; lane < 16; lane++) {
                t = 16 * b + lane;
                xp[((size_t) b * in + i) * 16 + lane] =
                    t < n ? x[(size_t) t * in + i] : 0.0f;
            }
        }
    }
}

/* x rounded to bf16 into x panels: 8 rows by 8 pairs at a time, turned */
static WTYPE_AVX512_BF16 void
prepare_bf16_panels(const float *x, int n, int in, uint32_t *xp)
{
    __m256  v[8];
    int     pairs = (int) pairs_of(in), nb = (n + 15) / 16;
    int     b, p, h, j, t, lane, k;
    uint16_t lo, hi;

    for (b = 0; b < nb; b++) {
        for (p = 0; 2 * p + 16 <= in; p += 8) {
            for (h = 0; h < 2; h++) {
                for (j = 0; j < 8; j++) {
                    t = 16 * b + 8 * h + j;
                    v[j] = t < n ? _mm256_castsi256_ps((__m256i)
                               _mm512_cvtneps_pbh(_mm512_loadu_ps(
                                   x + (size_t) t * in + 2 * p)))
                                 : _mm256_setzero_ps();
                }
                transpose8(v);
                for (j = 0; j < 8; j++) {
                    _mm256_storeu_ps((float *) xp
                                     + ((size_t) b * pairs + p + j) * 16
                                     + 8 * h, v[j]);
                }
            }
        }
        for (; p < pairs; p++) {
            for (lane = 0; lane < 16; lane++) {
                t = 16 * b + lane;
                k = 2 * p;
                lo = t < n ? infer_float_to_bf16(x[(size_t) t * in + k]) : 0;
                hi = t < n && k + 1 < in
                     ? infer_float_to_bf16(x[(size_t) t * in + k + 1]) : 0;
                xp[((size_t) b * pairs + p) * 16 + lane] =
                    lo | (uint32_t) hi << 16;
            }
        }
    }
}

/* x rounded to bfloat16 (to nearest even, as transformers and llama.cpp
 * round activations), 32 at a time, row by row: the narrow products' x */
static WTYPE_AVX512_BF16 void
prepare_bf16_rows(const float *x, int n, int in, uint32_t *xp)
{
    uint16_t *row;
    int       t, i;

    for (t = 0; t < n; t++) {
        row = (uint16_t *) (xp + (size_t) t * pairs_of(in));
        for (i = 0; i + 32 <= in; i += 32) {
            _mm512_storeu_si512(row + i, (__m512i) _mm512_cvtne2ps_pbh(
                _mm512_loadu_ps(x + (size_t) t * in + i + 16),
                _mm512_loadu_ps(x + (size_t) t * in + i)));
        }
        for (; i < in; i++) {
            row[i] = infer_float_to_bf16(x[(size_t) t * in + i]);
        }
        if (in % 2 != 0) {
            row[in] = 0;
        }
    }
}

/* x quantized to int16 in blocks, as the narrow x16 product's x */
static void
prepare_i16(const float *x, int n, int in, uint32_t *xp)
{
    float   *xs = (float *) (xp + (size_t) n * pairs_of(in));
    int16_t *row;
    int      t;

    for (t = 0; t < n; t++) {
        row = (int16_t *) (xp + (size_t) t * pairs_of(in));
        infer_gemm_narrow_quantize_x16(x + (size_t) t * in, in, row,
                                       xs + (size_t) t * blocks_of(in));
        if (in % 2 != 0) {
            row[in] = 0;
        }
    }
}

/* ---- dispatch ------------------------------------------------------------ */

static int
use_pairs(int i8)
{
    return i8 ? wtype_have_avx512_vnni() : wtype_have_avx512_bf16();
}

size_t
infer_gemm_wide_x_bytes(int i8, int n, int in)
{
    if (!use_pairs(i8)) {
        return 0;
    }
    /* bf16: x panels of 16 rows (and rows, for the narrow products) */
    return i8 ? (size_t) n * (pairs_of(in) + blocks_of(in)) * 4
              : (size_t) (n + 15) / 16 * 16 * pairs_of(in) * 4;
}

void
infer_gemm_wide_prepare(int i8, const float *x, int n, int in, void *xp)
{
    if (use_pairs(i8)) {
        (i8 ? prepare_i16 : prepare_bf16_panels)(x, n, in, xp);
    }
}

void
infer_gemm_wide_prepare_rows(const float *x, int n, int in, void *xp)
{
    if (use_pairs(0)) {
        prepare_bf16_rows(x, n, in, xp);
    }
}

void
infer_gemm_wide_bf16(const float *x, const void *xp, int n, int in,
    const uint16_t *w, int rows, float *y, int ldy)
{
    if (use_pairs(0)) {
        xt_bf16(xp, n, in, w, rows, y, ldy);
    } else {
        wide_bf16(x, n, in, w, NULL, rows, y, ldy);
    }
}

void
infer_gemm_wide_i8(const float *x, const void *xp, int n, int in,
    const int8_t *w, const float *scale, int rows, float *y, int ldy)
{
    if (use_pairs(1)) {
        pairs_i8(xp, n, in, w, scale, rows, y, ldy);
    } else {
        wide_i8(x, n, in, w, scale, rows, y, ldy);
    }
}

size_t
infer_gemm_wide_f32_x_bytes(int n, int in)
{
    return wtype_have_avx512() ? (size_t) (n + 15) / 16 * 16 * in * 4 : 0;
}

void
infer_gemm_wide_prepare_f32(const float *x, int n, int in, void *xp)
{
    if (wtype_have_avx512()) {
        prepare_f32_panels(x, n, in, xp);
    }
}

void
infer_gemm_wide_f32(const void *xp, int n, int in, const float *w,
    int rows, float *y, int ldy)
{
    xf_f32(xp, n, in, w, rows, y, ldy);
}

const char *
infer_gemm_wide_f32_kernel(void)
{
    return wtype_have_avx512() ? "AVX-512" : NULL;
}

const char *
infer_gemm_wide_kernel(int i8)
{
    if (use_pairs(i8)) {
        return i8 ? "AVX512-VNNI" : "AVX512-BF16";
    }
    return wtype_have_avx2() ? "AVX2+FMA" : NULL;
}
