/* CPU reference for the logit soft-cap (double tanh). */
#include <math.h>
#include "softcap.h"

void
infer_ref_softcap(float *x, size_t n, float cap)
{
    size_t i;

    for (i = 0; i < n; i++) {
        x[i] = (float) (tanh((double) x[i] / cap) * cap);
    }
}
