/* CPU reference for the embedding gather. */
#include <string.h>
#include "embed.h"

void
infer_ref_embed(const float *table, const int32_t *tokens, int n,
    int hidden, float *x)
{
    int t;

    for (t = 0; t < n; t++) {
        memcpy(x + (size_t) t * hidden, table + (size_t) tokens[t] * hidden,
               (size_t) hidden * sizeof(float));
    }
}
