/* CPU reference for the embedding gather. */
#include <stddef.h>
#include "embed.h"

void
infer_ref_embed(const float *table, const float *pos_table,
    const int32_t *tokens, const int32_t *positions, int n, int hidden,
    float scale, float *x)
{
    int t, i;

    for (t = 0; t < n; t++) {
        for (i = 0; i < hidden; i++) {
            x[(size_t) t * hidden + i] =
                table[(size_t) tokens[t] * hidden + i] * scale
                + (pos_table != NULL
                   ? pos_table[(size_t) positions[t] * hidden + i] : 0.0f);
        }
    }
}
