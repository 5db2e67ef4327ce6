/* CPU reference for RMSNorm fused with the residual add (double sums). */
#include <math.h>
#include <stddef.h>
#include "rmsnorm.h"

void
infer_ref_rmsnorm_residual(float *x, const float *delta, const float *w,
    const int32_t *rows, int n, int hidden, float eps, float *out)
{
    float  *xr;
    double  ss, r;
    int     i, j, row;

    for (i = 0; i < n; i++) {
        row = rows ? rows[i] : i;
        xr = x + (size_t) row * hidden;
        ss = 0.0;
        for (j = 0; j < hidden; j++) {
            if (delta != NULL) {
                xr[j] += delta[(size_t) row * hidden + j];
            }
            ss += (double) xr[j] * xr[j];
        }
        r = 1.0 / sqrt(ss / hidden + eps);
        for (j = 0; j < hidden; j++) {
            out[(size_t) i * hidden + j] = (float) (xr[j] * r * w[j]);
        }
    }
}
