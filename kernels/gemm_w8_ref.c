/* CPU reference for the W8A16 product (double math). */
#include <stddef.h>
#include "gemm_w8.h"

void
infer_ref_gemm_w8a16(const float *x, const int8_t *w, const float *scale,
    int n, int in, int out, float *y)
{
    double s;
    int    t, r, i;

    for (t = 0; t < n; t++) {
        for (r = 0; r < out; r++) {
            s = 0.0;
            for (i = 0; i < in; i++) {
                s += (double) x[(size_t) t * in + i]
                     * w[(size_t) r * in + i];
            }
            y[(size_t) t * out + r] = (float) (s * scale[r]);
        }
    }
}
