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
#include "gemm_wide.h"
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

void
infer_gemm_wide_bf16(const float *x, int n, int in, const uint16_t *w,
    int rows, float *y, int ldy)
{
    wide_bf16(x, n, in, w, NULL, rows, y, ldy);
}

void
infer_gemm_wide_i8(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, float *y, int ldy)
{
    wide_i8(x, n, in, w, scale, rows, y, ldy);
}

int
infer_gemm_wide_available(void)
{
    return wtype_have_avx2();
}
