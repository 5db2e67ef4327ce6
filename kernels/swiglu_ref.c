/* CPU reference for SwiGLU (double exp). */
#include <math.h>
#include <stddef.h>
#include "swiglu.h"

void
infer_ref_swiglu(const float *gate_up, int n, int inter, float *out)
{
    const float *row;
    double       g;
    int          t, i;

    for (t = 0; t < n; t++) {
        row = gate_up + (size_t) t * 2 * inter;
        for (i = 0; i < inter; i++) {
            g = row[i];
            out[(size_t) t * inter + i] =
                (float) (g / (1.0 + exp(-g)) * row[inter + i]);
        }
    }
}
