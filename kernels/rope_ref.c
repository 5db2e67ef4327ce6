/* The CPU reference for the RoPE kernel (double trigonometry). */
#include <math.h>
#include <stddef.h>
#include "rope.h"

static void
rope_head(float *x, const float *inv_freq, int pos, int head_dim)
{
    double a, c, s, x1, x2;
    int    j, half = head_dim / 2;

    for (j = 0; j < half; j++) {
        /* the angle in float, as Hugging Face computes it */
        a = (double) ((float) pos * inv_freq[j]);
        c = cos(a);
        s = sin(a);
        x1 = x[j];
        x2 = x[j + half];
        x[j] = (float) (x1 * c - x2 * s);
        x[j + half] = (float) (x2 * c + x1 * s);
    }
}

void
infer_ref_rope_qkv(float *qkv, int stride, const float *bias,
    const int32_t *positions, const float *inv_freq, int n, int nh,
    int nkv, int head_dim)
{
    float *row;
    int    t, h, j, width = (nh + 2 * nkv) * head_dim;

    for (t = 0; t < n; t++) {
        row = qkv + (size_t) t * stride;
        if (bias != NULL) {
            for (j = 0; j < width; j++) {
                row[j] += bias[j];
            }
        }
        /* q heads then k heads: they are adjacent in the row */
        for (h = 0; h < nh + nkv; h++) {
            rope_head(row + h * head_dim, inv_freq, positions[t], head_dim);
        }
    }
}
