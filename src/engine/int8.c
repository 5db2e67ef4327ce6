/* int8 weights: per-row quantization (see int8.h). */
#include <math.h>
#include <string.h>
#include "int8.h"

void
infer_i8_quantize_row(const float *w, int n, int8_t *q, float *scale)
{
    float amax = 0.0f, inv, v;
    int   i;

    for (i = 0; i < n; i++) {
        amax = fabsf(w[i]) > amax ? fabsf(w[i]) : amax;
    }
    if (amax == 0.0f || !isfinite(amax)) {
        /* a zero row, or one a float16 overflow made infinite: nothing
         * a scale can hold, so zeros (never NaN products) */
        memset(q, 0, n);
        *scale = 0.0f;
        return;
    }
    *scale = amax / 127.0f;
    inv = 127.0f / amax;
    for (i = 0; i < n; i++) {
        v = roundf(w[i] * inv);
        q[i] = (int8_t) (v > 127.0f ? 127 : v < -127.0f ? -127
                         : v == v ? v : 0);
    }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void
infer_i8_dequantize(const int8_t *w, const float *scale, int rows, int in,
    float *dst)
{
    int r, i;

    for (r = 0; r < rows; r++) {
        const int8_t *wr = w + (size_t) r * in;
        float        *dr = dst + (size_t) r * in, s = scale[r];

#pragma omp simd
        for (i = 0; i < in; i++) {
            dr[i] = s * (float) wr[i];
        }
    }
}
