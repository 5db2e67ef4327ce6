/* Host-side parameters of the device sampler, from the request's
 * infer_sampling_t, following infer_sample() branch for branch. */
#include "sample.h"
#include "sampling.h"

void
infer_sample_row(const infer_sampling_t *s, int vocab,
    infer_sample_row_t *row)
{
    int truncate;

    row->inv_t = 0.0;
    row->top_p = 1.0;
    row->u = 0.0;
    row->m = vocab;
    if (s->temperature <= 0.0f || s->top_k == 1) {
        row->mode = INFER_SAMPLE_GREEDY;
        return;
    }
    truncate = (s->top_k > 0 && s->top_k < vocab) || s->top_p < 1.0f;
    row->mode = truncate ? INFER_SAMPLE_SORTED : INFER_SAMPLE_BY_ID;
    if (s->top_k > 0 && s->top_k < vocab) {
        row->m = s->top_k;
    }
    row->inv_t = 1.0 / (double) s->temperature;
    row->top_p = (double) s->top_p;
    row->u = infer_rng_uniform(s->seed, s->step);
}
