/* The CPU reference for the bias + q/k norm + RoPE kernel (double
 * trigonometry and sums). */
#include <math.h>
#include <stddef.h>
#include "rope.h"

static void
ref_head(float *x, const float *norm, float eps, const float *inv_freq,
    int rot, float scale, int pos, int head_dim)
{
    double a, c, s, x1, x2, ss = 0.0, r;
    int    j, half = rot / 2;

    if (norm != NULL) {
        for (j = 0; j < head_dim; j++) {
            ss += (double) x[j] * x[j];
        }
        r = 1.0 / sqrt(ss / head_dim + eps);
        for (j = 0; j < head_dim; j++) {
            x[j] = (float) (norm[j] * (x[j] * r));
        }
    }
    if (inv_freq == NULL) {
        return;
    }
    for (j = 0; j < half; j++) {
        /* the angle in float, as Hugging Face computes it */
        a = (double) ((float) pos * inv_freq[j]);
        c = cos(a) * scale;
        s = sin(a) * scale;
        x1 = x[j];
        x2 = x[j + half];
        x[j] = (float) (x1 * c - x2 * s);
        x[j + half] = (float) (x2 * c + x1 * s);
    }
}

void
infer_ref_rope_qkv(float *qkv, int stride, const float *bias,
    const float *q_norm, const float *k_norm, float eps,
    const int32_t *positions, const float *inv_freq, const int32_t *freq_row,
    int rot, float scale, int n, int nh, int nkv, int head_dim)
{
    const float *inv;
    float       *row;
    int          t, h, j, width = (nh + 2 * nkv) * head_dim;

    for (t = 0; t < n; t++) {
        row = qkv + (size_t) t * stride;
        inv = inv_freq == NULL ? NULL
              : inv_freq + (freq_row ? (size_t) freq_row[t] * (rot / 2) : 0);
        if (bias != NULL) {
            for (j = 0; j < width; j++) {
                row[j] += bias[j];
            }
        }
        /* q heads then k heads: they are adjacent in the row */
        for (h = 0; h < nh + nkv; h++) {
            ref_head(row + h * head_dim, h < nh ? q_norm : k_norm, eps, inv,
                     rot, scale, positions[t], head_dim);
        }
    }
}
