/*
 * int8 weights (int8.c) on random data against a float64 reference.
 *
 * Quantization: every value comes back within half a step (scale / 2, the
 * rounding's bound) plus float32's rounding of the product, and each row's
 * largest magnitude is exactly +-127 steps.  Products: the vector kernel
 * and the plain C one against sum_i x_i q_i scale computed in double, held
 * to the bound of a float32 sum of `in` terms, in * FLT_EPSILON *
 * sum_i |x_i q_i scale| (any summation order meets it; a wrong lane, tail
 * or scale is off by whole terms, orders of magnitude above it), on shapes
 * that exercise every tile and tail (tokens 1..17, rows 1..37, widths not a
 * multiple of 8).  Dequantization is exact (one float32 product).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "int8.h"
#include "tap.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* uniform in [-1, 1), from a 64-bit LCG's high bits */
static float
uniform(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((double) (rng >> 11) / (double) (1ull << 52) - 1.0);
}

static void
test_quantize(void)
{
    enum { ROWS = 64, COLS = 333 };
    static float  w[ROWS][COLS];
    static int8_t q[ROWS][COLS];
    float         scale[ROWS], zero[COLS] = { 0 };
    int           r, i, bad = 0, peak = 0;
    double        worst = 0, d;

    for (r = 0; r < ROWS; r++) {
        /* rows of different magnitudes: the scale is per row */
        for (i = 0; i < COLS; i++) {
            w[r][i] = uniform() * ldexpf(1.0f, r % 9 - 4);
        }
        infer_i8_quantize_row(w[r], COLS, q[r], &scale[r]);
        for (i = 0; i < COLS; i++) {
            d = fabs((double) w[r][i] - (double) q[r][i] * scale[r]);
            worst = d / scale[r] > worst ? d / scale[r] : worst;
            bad += d > scale[r] * (0.5 + 1e-6) || q[r][i] < -127;
        }
    }
    ok(bad == 0, "quantize: %d x %d values within half a step (worst %.4f "
       "steps), none below -127", ROWS, COLS, worst);
    for (r = 0, peak = 0; r < ROWS; r++) {
        int has = 0;

        for (i = 0; i < COLS; i++) {
            has |= abs(q[r][i]) == 127;
        }
        peak += has;
    }
    is_int(peak, ROWS, "quantize: every row's largest value is +-127 steps");

    infer_i8_quantize_row(zero, COLS, q[0], &scale[0]);
    for (i = 0, bad = 0; i < COLS; i++) {
        bad += q[0][i] != 0;
    }
    ok(scale[0] == 0.0f && bad == 0, "quantize: a zero row is zeros, "
       "scale 0");
    zero[5] = INFINITY;
    infer_i8_quantize_row(zero, COLS, q[0], &scale[0]);
    ok(scale[0] == 0.0f, "quantize: a row with an infinity holds no scale "
       "(zeros, no NaN)");
}

/* max over outputs of |got - ref| / bound, with ref and bound in double */
static double
gemm_error(const float *x, int n, int in, const int8_t *w,
    const float *scale, int rows, const float *y, int ldy)
{
    double ref, sabs, term, worst = 0, e;
    int    t, r, i;

    for (t = 0; t < n; t++) {
        for (r = 0; r < rows; r++) {
            ref = sabs = 0;
            for (i = 0; i < in; i++) {
                term = (double) x[(size_t) t * in + i]
                       * w[(size_t) r * in + i] * scale[r];
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
test_gemm(void)
{
    static const int ns[] = { 1, 2, 3, 4, 5, 8, 16, 17 };
    static const int rowss[] = { 1, 2, 3, 4, 5, 7, 37 };
    static const int ins[] = { 8, 13, 64, 300, 2051 };
    size_t  maxx = 17 * 2051, maxw = 37 * 2051;
    float  *x = malloc(maxx * sizeof(float)), *wf = malloc(2051 * 4);
    float  *y = malloc(17 * 40 * sizeof(float)), scale[37];
    int8_t *w = malloc(maxw);
    double  e, worst_ref = 0, worst_vec = 0;
    int     a, b, c, r, i, shapes = 0, sentinel = 1;

    for (i = 0; i < (int) maxx; i++) {
        x[i] = uniform();
    }
    for (a = 0; a < (int) (sizeof(ins) / sizeof(ins[0])); a++) {
        int in = ins[a];

        for (r = 0; r < 37; r++) {
            for (i = 0; i < in; i++) {
                wf[i] = uniform() * (1 + r % 3);
            }
            infer_i8_quantize_row(wf, in, w + (size_t) r * in, &scale[r]);
        }
        for (b = 0; b < (int) (sizeof(ns) / sizeof(ns[0])); b++) {
            for (c = 0; c < (int) (sizeof(rowss) / sizeof(rowss[0])); c++) {
                int n = ns[b], rows = rowss[c], ldy = rows + 3;

                /* the columns past rows must stay untouched */
                for (i = 0; i < n * ldy; i++) {
                    y[i] = -7.0f;
                }
                infer_i8_gemm_ref(x, n, in, w, scale, rows, y, ldy);
                e = gemm_error(x, n, in, w, scale, rows, y, ldy);
                worst_ref = e > worst_ref ? e : worst_ref;
                infer_i8_gemm(x, n, in, w, scale, rows, y, ldy);
                e = gemm_error(x, n, in, w, scale, rows, y, ldy);
                worst_vec = e > worst_vec || isnan(e) ? e : worst_vec;
                for (i = 0; i < n; i++) {
                    sentinel &= y[(size_t) i * ldy + rows] == -7.0f;
                }
                shapes++;
            }
        }
    }
    ok(worst_ref <= 1.0, "gemm (C): %d shapes within a float32 sum's bound "
       "of float64 (worst %.3g of it)", shapes, worst_ref);
    ok(worst_vec <= 1.0, "gemm (%s): %d shapes within a float32 sum's bound "
       "of float64 (worst %.3g of it)", infer_i8_kernel(), shapes,
       worst_vec);
    ok(sentinel, "gemm: writes only its rows of y");

    /* the bound is tight enough to catch one weight off by 100 steps
     * (at an x of magnitude >= 0.5) */
    for (i = 0; fabsf(x[i]) < 0.5f; i++) {
    }
    c = w[i];
    w[i] = (int8_t) (c > 0 ? c - 100 : c + 100);
    infer_i8_gemm(x, 1, 2051, w, scale, 4, y, 4);
    w[i] = (int8_t) c;
    ok(gemm_error(x, 1, 2051, w, scale, 4, y, 4) > 1.0,
       "gemm: one weight 100 steps off is outside the bound (the test can "
       "fail)");
    free(x);
    free(wf);
    free(y);
    free(w);
}

static void
test_dequantize(void)
{
    enum { ROWS = 5, COLS = 77 };
    int8_t q[ROWS * COLS];
    float  scale[ROWS], out[ROWS * COLS];
    int    i, bad = 0;

    for (i = 0; i < ROWS * COLS; i++) {
        q[i] = (int8_t) (i * 37 % 255 - 127);
    }
    for (i = 0; i < ROWS; i++) {
        scale[i] = 0.01f * (i + 1) + uniform() * 1e-3f;
    }
    infer_i8_dequantize(q, scale, ROWS, COLS, out);
    for (i = 0; i < ROWS * COLS; i++) {
        bad += out[i] != scale[i / COLS] * (float) q[i];
    }
    is_int(bad, 0, "dequantize: %d values exactly scale * q", ROWS * COLS);
}

int
main(void)
{
    test_quantize();
    test_gemm();
    test_dequantize();
    return done_testing();
}
