/*
 * int8 weights (int8.c) on random data against a float64 reference.
 *
 * Quantization: every value comes back within half a step (scale / 2, the
 * rounding's bound) plus float32's rounding of the product, and each row's
 * largest magnitude is exactly +-127 steps.  Dequantization is exact (one
 * float32 product).  The products that read int8 weights are tested with
 * the others in test_gemm.c.
 */
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

    /* ties round away from zero, as roundf does, in the vector lanes and
     * the tail alike; a NaN weight becomes 0 */
    for (i = 0; i < COLS; i++) {
        w[0][i] = (float) (i % 254 - 127) + (i % 3 == 0 ? 0.5f : 0.25f);
    }
    w[0][0] = 127.0f;                   /* the scale: exactly 1 */
    w[0][7] = NAN;
    infer_i8_quantize_row(w[0], COLS, q[0], &scale[0]);
    for (i = 0, bad = 0; i < COLS; i++) {
        float want = i == 7 ? 0.0f : roundf(w[0][i]);

        want = want > 127.0f ? 127.0f : want < -127.0f ? -127.0f : want;
        bad += q[0][i] != (int8_t) want;
    }
    ok(scale[0] == 1.0f && bad == 0, "quantize: %d values at and beside "
       "ties, and a NaN, as roundf (%d differ)", COLS, bad);
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
    test_dequantize();
    return done_testing();
}
