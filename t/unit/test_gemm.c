/*
 * The CPU products, narrow (gemm_narrow.c) and wide (gemm_wide.c), on
 * random data against float64.
 *
 * For each weight type (float32, bfloat16, int8 with per-row scales) the
 * vector kernels and the plain C one against sum_i x_i w_i scale computed
 * in double from the exact values the kernel reads, held to the bound of a
 * float32 sum of `in` terms, (in + 1) * FLT_EPSILON * sum_i |x_i w_i
 * scale| (any summation order meets it; a wrong lane, tail or scale is off
 * by whole terms, orders of magnitude above it), on shapes that exercise
 * every tile and tail (rows of x 1..70, rows of W 1..96, widths not a
 * multiple of 8 and across the wide products' blocks of 256; float32's
 * wide one is AVX-512 only), writing only their rows of y.  One weight
 * changed by a large step must fall outside the bound, so the bound can
 * fail.  And int8 W against one row of x quantized to int16
 * (infer_gemm_narrow_i8_x16).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "gemm_narrow.h"
#include "gemm_wide.h"
#include "int8.h"
#include "model.h"
#include "wtype.h"
#include "tap.h"

enum { MAXN = 70, MAXR = 96, MAXIN = 2051 };

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* uniform in [-1, 1), from a 64-bit LCG's high bits */
static float
uniform(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((double) (rng >> 11) / (double) (1ull << 52) - 1.0);
}

typedef enum { W_F32, W_BF16, W_I8 } wtype_t;

static const char *const type_names[] = { "f32", "bf16", "int8" };

/* the kernels under test: the C references, the narrow ones (the CPU's
 * best, and AVX2's where that is AVX-512), the wide ones on AVX2 and
 * with AVX-512's pair dot products */
enum { K_REF, K_NARROW, K_NARROW_AVX2, K_NARROW_PAIRS, K_WIDE, K_PAIRS,
       K_KINDS };

static const char *const kind_names[] = { "C", "narrow", "narrow AVX2",
                                          "narrow AVX512-BF16", "wide AVX2",
                                          "wide AVX-512" };

/* the kinds that read x prepared for the pair products */
#define READS_PAIRS(kind)  ((kind) == K_PAIRS || (kind) == K_NARROW_PAIRS)

/* x prepared for the pair products (float32's panels for its wide one),
 * and the values they read of it */
static uint32_t xpairs[(MAXN + 15) / 16 * 16 * MAXIN];
static double   xread[MAXN * MAXIN];

/* the weights in each type, and the exact values a kernel reads */
typedef struct {
    float    f32[MAXR * MAXIN];
    uint16_t bf16[MAXR * MAXIN];
    int8_t   i8[MAXR * MAXIN];
    float    scale[MAXR];
    double   value[MAXR * MAXIN];   /* w * scale */
} weights_t;

static void
make_weights(weights_t *W, wtype_t type, int in)
{
    float row[MAXIN];
    int   r, i;

    for (r = 0; r < MAXR; r++) {
        for (i = 0; i < in; i++) {
            row[i] = uniform() * (1 + r % 3);
        }
        if (type == W_I8) {
            infer_i8_quantize_row(row, in, W->i8 + (size_t) r * in,
                                  &W->scale[r]);
        }
        for (i = 0; i < in; i++) {
            size_t k = (size_t) r * in + i;

            W->f32[k] = row[i];
            W->bf16[k] = infer_float_to_bf16(row[i]);
            W->value[k] = type == W_F32 ? row[i]
                          : type == W_BF16 ? infer_bf16_to_float(W->bf16[k])
                          : (double) W->i8[k] * W->scale[r];
        }
    }
}

/* x as the pair products read it: rounded to bf16, or quantized to
 * int16 in blocks (its values times their block's scale, in double) */
static void
prepare_pairs(wtype_t type, int rows, const float *x, int n, int in)
{
    const uint16_t *b16 = (const uint16_t *) xpairs;
    const int16_t  *q16 = (const int16_t *) xpairs;
    const float    *xs;
    size_t          at;
    int             t, i, pairs = (in + 1) / 2, blocks = (in + 127) / 128;

    wtype_avx512 = 1;
    if (type == W_F32) {
        infer_gemm_wide_prepare_f32(x, n, in, xpairs);
        for (i = 0; i < n * in; i++) {
            xread[i] = x[i];
        }
        return;
    }
    if (rows) {
        infer_gemm_wide_prepare_rows(x, n, in, xpairs);
    } else {
        infer_gemm_wide_prepare(type == W_I8, x, n, in, xpairs);
    }
    xs = (const float *) (xpairs + (size_t) n * pairs);
    for (t = 0; t < n; t++) {
        for (i = 0; i < in; i++) {
            /* bf16 for the wide products: panels of 16 rows, pair-major */
            at = rows || type == W_I8
                 ? (size_t) t * pairs * 2 + i
                 : (((size_t) (t / 16) * pairs + i / 2) * 16 + t % 16) * 2
                   + i % 2;
            xread[(size_t) t * in + i] =
                type == W_I8
                ? (double) q16[at]
                  * xs[(size_t) t * blocks + i / INFER_NARROW_XBLOCK]
                : infer_bf16_to_float(b16[at]);
        }
    }
}

static void
run(wtype_t type, int kind, const float *x, int n, int in,
    const weights_t *W, int rows, float *y, int ldy)
{
    wtype_avx512 = kind != K_NARROW_AVX2 && kind != K_WIDE;
    if (READS_PAIRS(kind)) {
        prepare_pairs(type, kind == K_NARROW_PAIRS, x, n, in);
    }
    switch (type * K_KINDS + kind) {
    case W_F32 * K_KINDS + K_REF:
        infer_gemm_narrow_f32_ref(x, n, in, W->f32, rows, y, ldy);
        break;
    case W_F32 * K_KINDS + K_NARROW:
    case W_F32 * K_KINDS + K_NARROW_AVX2:
        infer_gemm_narrow_f32(x, n, in, W->f32, rows, y, ldy);
        break;
    case W_F32 * K_KINDS + K_PAIRS:
        infer_gemm_wide_f32(xpairs, n, in, W->f32, rows, y, ldy);
        break;
    case W_BF16 * K_KINDS + K_REF:
        infer_gemm_narrow_bf16_ref(x, n, in, W->bf16, rows, y, ldy);
        break;
    case W_BF16 * K_KINDS + K_NARROW:
    case W_BF16 * K_KINDS + K_NARROW_AVX2:
        infer_gemm_narrow_bf16(x, n, in, W->bf16, rows, y, ldy);
        break;
    case W_BF16 * K_KINDS + K_NARROW_PAIRS:
        infer_gemm_narrow_bf16_pairs(xpairs, n, in, W->bf16, rows, y, ldy);
        break;
    case W_BF16 * K_KINDS + K_WIDE:
    case W_BF16 * K_KINDS + K_PAIRS:
        infer_gemm_wide_bf16(x, xpairs, n, in, W->bf16, rows, y, ldy);
        break;
    case W_I8 * K_KINDS + K_REF:
        infer_gemm_narrow_i8_ref(x, n, in, W->i8, W->scale, rows, y, ldy);
        break;
    case W_I8 * K_KINDS + K_NARROW:
    case W_I8 * K_KINDS + K_NARROW_AVX2:
        infer_gemm_narrow_i8(x, n, in, W->i8, W->scale, rows, y, ldy);
        break;
    default:
        infer_gemm_wide_i8(x, xpairs, n, in, W->i8, W->scale, rows, y, ldy);
    }
    wtype_avx512 = 1;
}

/* max over outputs of |got - ref| / bound, ref from the x the kernel
 * read (the pair products' xread) */
static double
error(int kind, const float *xf, int n, int in, const weights_t *W,
    int rows, const float *y, int ldy)
{
    double ref, sabs, term, worst = 0, e;
    int    t, r, i;

    for (t = 0; t < n; t++) {
        for (r = 0; r < rows; r++) {
            ref = sabs = 0;
            for (i = 0; i < in; i++) {
                term = (READS_PAIRS(kind) ? xread[(size_t) t * in + i]
                                        : (double) xf[(size_t) t * in + i])
                       * W->value[(size_t) r * in + i];
                ref += term;
                sabs += fabs(term);
            }
            e = fabs(y[(size_t) t * ldy + r] - ref)
                / ((in + 1) * (double) FLT_EPSILON * sabs + 1e-30);
            worst = e > worst || isnan(e) ? e : worst;
        }
    }
    return worst;
}

static void
test_type(wtype_t type, const float *x, weights_t *W)
{
    static const int ns[] = { 1, 2, 3, 4, 5, 8, 16, 17, 40, 70 };
    static const int rowss[] = { 1, 2, 3, 4, 5, 7, 23, 24, 25, 37, 49, 96 };
    static const int ins[] = { 8, 13, 64, 300, 2051 };
    static float     y[MAXN * (MAXR + 3)];
    double           e, worst[K_KINDS] = { 0, 0, 0, 0, 0, 0 };
    int              a, b, c, i, kind, shapes = 0, sentinel = 1;
    int              active[K_KINDS];

    /* the wide products have no C fallback: linear() keeps sgemm then;
     * float32's is AVX-512 only (sgemm on AVX2) */
    active[K_REF] = active[K_NARROW] = 1;
    active[K_NARROW_AVX2] = strcmp(infer_gemm_narrow_kernel(),
                                   "AVX-512") == 0;
    active[K_PAIRS] = type == W_F32
                      ? infer_gemm_wide_f32_kernel() != NULL
                      : infer_gemm_wide_x_bytes(type == W_I8, 1, 8) > 0;
    active[K_NARROW_PAIRS] = type == W_BF16 && active[K_PAIRS];
    wtype_avx512 = 0;
    active[K_WIDE] = type != W_F32 && infer_gemm_wide_kernel(0) != NULL;
    wtype_avx512 = 1;
    for (a = 0; a < (int) (sizeof(ins) / sizeof(ins[0])); a++) {
        int in = ins[a];

        make_weights(W, type, in);
        for (b = 0; b < (int) (sizeof(ns) / sizeof(ns[0])); b++) {
            for (c = 0; c < (int) (sizeof(rowss) / sizeof(rowss[0])); c++) {
                int n = ns[b], rows = rowss[c], ldy = rows + 3;

                for (kind = 0; kind < K_KINDS; kind++) {
                    if (!active[kind]) {
                        continue;
                    }
                    /* the columns past rows must stay untouched */
                    for (i = 0; i < n * ldy; i++) {
                        y[i] = -7.0f;
                    }
                    run(type, kind, x, n, in, W, rows, y, ldy);
                    e = error(kind, x, n, in, W, rows, y, ldy);
                    worst[kind] = e > worst[kind] || isnan(e) ? e
                                  : worst[kind];
                    for (i = 0; i < n; i++) {
                        sentinel &= y[(size_t) i * ldy + rows] == -7.0f;
                    }
                }
                shapes++;
            }
        }
    }
    ok(worst[K_REF] <= 1.0, "%s (C): %d shapes within a float32 sum's "
       "bound of float64 (worst %.3g of it)", type_names[type], shapes,
       worst[K_REF]);
    ok(worst[K_NARROW] <= 1.0, "%s (narrow, %s): %d shapes within a "
       "float32 sum's bound of float64 (worst %.3g of it)",
       type_names[type], infer_gemm_narrow_kernel(), shapes,
       worst[K_NARROW]);
    if (active[K_NARROW_AVX2]) {
        ok(worst[K_NARROW_AVX2] <= 1.0, "%s (narrow, AVX2+FMA): %d shapes "
           "within a float32 sum's bound of float64 (worst %.3g of it)",
           type_names[type], shapes, worst[K_NARROW_AVX2]);
    } else {
        diag("%s: narrow AVX-512 kernels skipped: this CPU has no "
             "AVX-512", type_names[type]);
    }
    if (active[K_NARROW_PAIRS]) {
        ok(worst[K_NARROW_PAIRS] <= 1.0, "%s (narrow, AVX512-BF16): %d "
           "shapes within a float32 sum's bound of float64 over the x it "
           "reads (worst %.3g of it)", type_names[type], shapes,
           worst[K_NARROW_PAIRS]);
    }
    if (active[K_WIDE]) {
        ok(worst[K_WIDE] <= 1.0, "%s (wide, AVX2+FMA): %d shapes within a "
           "float32 sum's bound of float64 (worst %.3g of it)",
           type_names[type], shapes, worst[K_WIDE]);
    } else if (type != W_F32) {
        diag("%s: wide products skipped: this CPU has no AVX2+FMA",
             type_names[type]);
    }
    if (active[K_PAIRS]) {
        ok(worst[K_PAIRS] <= 1.0, "%s (wide, %s): %d shapes within a "
           "float32 sum's bound of float64 over the x it reads (worst "
           "%.3g of it)", type_names[type],
           type == W_F32 ? infer_gemm_wide_f32_kernel()
           : infer_gemm_wide_kernel(type == W_I8), shapes, worst[K_PAIRS]);
    } else {
        diag("%s: wide AVX-512 products skipped: this CPU has no %s",
             type_names[type], type == W_F32 ? "AVX-512"
             : type == W_I8 ? "AVX512_VNNI" : "AVX512_BF16");
    }
    ok(sentinel, "%s: writes only its rows of y", type_names[type]);

    /* one weight changed by a large step (at an x of magnitude >= 0.5)
     * is outside the bound: the test can fail */
    for (i = 0; fabsf(x[i]) < 0.5f; i++) {
    }
    W->f32[i] += 1.5f;
    W->bf16[i] = infer_float_to_bf16(infer_bf16_to_float(W->bf16[i]) + 1.5f);
    W->i8[i] = (int8_t) (W->i8[i] > 0 ? W->i8[i] - 100 : W->i8[i] + 100);
    for (kind = K_NARROW; kind < K_KINDS; kind++) {
        if (!active[kind]) {
            continue;
        }
        for (b = 1; b <= 3; b += 2) {           /* one row of x, and 3 */
            run(type, kind, x, b, 2051, W, 4, y, 4);
            ok(error(kind, x, 1, 2051, W, 4, y, 4) > 1.0, "%s (%s, %d rows "
               "of x): one weight off by a large step is outside the bound",
               type_names[type], kind_names[kind], b);
        }
    }
}

/*
 * One row of x quantized to int16 in blocks (infer_gemm_narrow_quantize_x16)
 * against int8 W: the quantized x within half a step of x, and the
 * products against float64 over the quantized values (the integer block
 * sums are exact; what is left is float32 rounding of one term a block).
 */
static void
test_x16(const float *x, weights_t *W)
{
    static const int ins[] = { 8, 13, 64, 127, 128, 129, 300, 2051 };
    static const int rowss[] = { 1, 3, 4, 5, 8, 9, 37 };
    static int16_t   xq[MAXIN];
    static float     xs[MAXIN / INFER_NARROW_XBLOCK + 1], y[MAXR + 1];
    static float     xnan[MAXIN];
    double           ref, sabs, term, e, qerr = 0, worst[3] = { 0, 0, 0 };
    int              a, c, vec, r, i, b, in, rows, shapes = 0;
    int              sentinel = 1, vnni;

    /* vec 0: C; 1: AVX2 (AVX-512 off); 2: the CPU's best (VNNI) */
    vnni = strcmp(infer_gemm_narrow_x16_kernel(), "AVX512-VNNI") == 0;

    for (a = 0; a < (int) (sizeof(ins) / sizeof(ins[0])); a++) {
        in = ins[a];
        make_weights(W, W_I8, in);
        infer_gemm_narrow_quantize_x16(x, in, xq, xs);
        for (i = 0; i < in; i++) {
            b = i / INFER_NARROW_XBLOCK;
            e = fabs((double) xq[i] * xs[b] - x[i]) / xs[b];
            qerr = e > qerr || isnan(e) ? e : qerr;
        }
        for (c = 0; c < (int) (sizeof(rowss) / sizeof(rowss[0])); c++) {
            rows = rowss[c];
            for (vec = 0; vec < 2 + vnni; vec++) {
                y[rows] = -7.0f;
                wtype_avx512 = vec != 1;
                (vec ? infer_gemm_narrow_i8_x16
                     : infer_gemm_narrow_i8_x16_ref)(xq, xs, in, W->i8,
                                                     W->scale, rows, y);
                wtype_avx512 = 1;
                sentinel &= y[rows] == -7.0f;
                for (r = 0; r < rows; r++) {
                    ref = sabs = 0;
                    for (i = 0; i < in; i++) {
                        term = (double) xq[i] * xs[i / INFER_NARROW_XBLOCK]
                               * W->value[(size_t) r * in + i];
                        ref += term;
                        sabs += fabs(term);
                    }
                    e = fabs(y[r] - ref)
                        / ((in / 8 + 4) * (double) FLT_EPSILON * sabs
                           + 1e-30);
                    worst[vec] = e > worst[vec] || isnan(e) ? e
                                 : worst[vec];
                }
            }
            shapes++;
        }
    }
    /* half a step, and float32's rounding of x * 32767 / max (up to
     * 32767 * 2^-24 = 0.002 of a step, twice: the product and 1 / scale) */
    ok(qerr <= 0.5 + 0.005, "int8 x int16: x quantized within half a step "
       "of its block's scale and float32 rounding (worst %.4f step)", qerr);
    ok(worst[0] <= 1.0, "int8 x int16 (C): %d shapes within float32 "
       "rounding of float64 over the quantized x (worst %.3g of the bound)",
       shapes, worst[0]);
    ok(worst[1] <= 1.0, "int8 x int16 (%s): %d shapes within float32 "
       "rounding of float64 over the quantized x (worst %.3g of the bound)",
       infer_gemm_narrow_kernel(), shapes, worst[1]);
    if (vnni) {
        ok(worst[2] <= 1.0, "int8 x int16 (AVX512-VNNI): %d shapes within "
           "float32 rounding of float64 over the quantized x (worst %.3g "
           "of the bound)", shapes, worst[2]);
    } else {
        diag("int8 x int16: AVX512-VNNI kernel skipped: this CPU has no "
             "AVX512_VNNI");
    }
    ok(sentinel, "int8 x int16: writes only its rows of y");

    /* an infinity in a block is not rounded away: that row's sum is NaN */
    memcpy(xnan, x, sizeof(float) * 300);
    xnan[200] = INFINITY;
    make_weights(W, W_I8, 300);
    infer_gemm_narrow_quantize_x16(xnan, 300, xq, xs);
    infer_gemm_narrow_i8_x16(xq, xs, 300, W->i8, W->scale, 4, y);
    ok(isnan(y[0]) && isnan(y[3]) && isnan(xs[1]) && !isnan(xs[0]),
       "int8 x int16: an infinite x makes the outputs NaN, as float32 would");

    /* one weight changed by a large step is outside the bound */
    make_weights(W, W_I8, 2051);
    infer_gemm_narrow_quantize_x16(x, 2051, xq, xs);
    for (i = 0; fabsf(x[i]) < 0.5f; i++) {
    }
    W->i8[i] = (int8_t) (W->i8[i] > 0 ? W->i8[i] - 100 : W->i8[i] + 100);
    infer_gemm_narrow_i8_x16(xq, xs, 2051, W->i8, W->scale, 1, y);
    W->i8[i] = (int8_t) (W->i8[i] > 0 ? W->i8[i] - 100 : W->i8[i] + 100);
    ref = sabs = 0;
    for (r = 0; r < 2051; r++) {
        term = (double) xq[r] * xs[r / INFER_NARROW_XBLOCK] * W->value[r];
        ref += term;
        sabs += fabs(term);
    }
    ok(fabs(y[0] - ref) > (2051 / 8 + 4) * (double) FLT_EPSILON * sabs,
       "int8 x int16: one weight off by a large step is outside the bound");
}

int
main(void)
{
    static float     x[MAXN * MAXIN];
    static weights_t W;
    int              i;

    for (i = 0; i < MAXN * MAXIN; i++) {
        x[i] = uniform();
    }
    test_type(W_F32, x, &W);
    test_type(W_BF16, x, &W);
    test_type(W_I8, x, &W);
    test_x16(x, &W);
    if (infer_gemm_wide_x_bytes(0, 1, 8) > 0) {
        int same = 1, rows;

        /* rows for the narrow products, panels for the wide ones */
        for (rows = 0; rows < 2; rows++) {
            prepare_pairs(W_BF16, rows, x, MAXN, MAXIN);
            for (i = 0; i < MAXN * MAXIN; i++) {
                same &= (float) xread[i]
                        == infer_bf16_to_float(infer_float_to_bf16(x[i]));
            }
        }
        ok(same, "bf16 pairs: x rounded to nearest even as "
           "infer_float_to_bf16 rounds, %d values, rows and panels",
           MAXN * MAXIN);
    }
    return done_testing();
}
