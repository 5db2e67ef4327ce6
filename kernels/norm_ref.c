/* CPU reference for the sublayer norm fused with the residual add (double
 * sums). */
#include <math.h>
#include <stddef.h>
#include "norm.h"

void
infer_ref_norm_residual(float *x, const float *delta,
    const float *delta_bias, const float *delta_norm, const float *w,
    const float *b, const int32_t *rows, int n, int hidden, float eps,
    float *out)
{
    float  *xr;
    double  ss, r, mean, v;
    int     i, j, row;

    for (i = 0; i < n; i++) {
        row = rows ? rows[i] : i;
        xr = x + (size_t) row * hidden;
        if (delta != NULL) {
            r = 1.0;
            if (delta_norm != NULL) {
                ss = 0.0;
                for (j = 0; j < hidden; j++) {
                    v = (double) delta[(size_t) row * hidden + j]
                        + (delta_bias ? delta_bias[j] : 0.0);
                    ss += v * v;
                }
                r = 1.0 / sqrt(ss / hidden + eps);
            }
            for (j = 0; j < hidden; j++) {
                v = (double) delta[(size_t) row * hidden + j]
                    + (delta_bias ? delta_bias[j] : 0.0);
                xr[j] += (float) (delta_norm ? v * r * delta_norm[j] : v);
            }
        }
        mean = 0.0;
        if (b != NULL) {
            for (j = 0; j < hidden; j++) {
                mean += xr[j];
            }
            mean /= hidden;
        }
        ss = 0.0;
        for (j = 0; j < hidden; j++) {
            ss += (xr[j] - mean) * (xr[j] - mean);
        }
        r = 1.0 / sqrt(ss / hidden + eps);
        for (j = 0; j < hidden; j++) {
            out[(size_t) i * hidden + j] =
                (float) ((xr[j] - mean) * r * w[j] + (b ? b[j] : 0.0));
        }
    }
}
