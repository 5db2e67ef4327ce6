/* CPU reference for the MLP activation (double math). */
#include <math.h>
#include <stddef.h>
#include "act.h"

static double
act_d(double x, int act)
{
    if (act == INFER_KACT_GELU) {
        return x * 0.5 * (1.0 + erf(x / sqrt(2.0)));
    }
    if (act == INFER_KACT_GELU_TANH) {
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI)
                                     * (x + 0.044715 * x * x * x)));
    }
    return x / (1.0 + exp(-x));
}

void
infer_ref_act(const float *in, const float *bias, int n, int inter,
    int gated, int act, float *out)
{
    const float *row;
    double       g, u;
    int          t, i;

    for (t = 0; t < n; t++) {
        row = in + (size_t) t * (gated ? 2 : 1) * inter;
        for (i = 0; i < inter; i++) {
            g = row[i] + (bias ? bias[i] : 0.0);
            if (gated) {
                u = row[inter + i] + (bias ? bias[inter + i] : 0.0);
                out[(size_t) t * inter + i] = (float) (act_d(g, act) * u);
            } else {
                out[(size_t) t * inter + i] = (float) act_d(g, act);
            }
        }
    }
}
