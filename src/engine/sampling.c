/*
 * Sampling.  The order of operations follows Hugging Face generate():
 * temperature, then top-k, then top-p, then one draw.  The draw is an
 * inverse-CDF pick with u = infer_rng_uniform(seed, step), so it depends only
 * on the request's seed and the token's index.  Candidates are ordered by
 * descending logit (ties: lower id first) whenever top-k or top-p truncates,
 * and by id otherwise; the CUDA sampler uses the same orders.
 */
#include <math.h>
#include <stdlib.h>
#include "sampling.h"

uint64_t
infer_rng_u64(uint64_t seed, uint64_t counter)
{
    uint64_t z = seed + (counter + 1) * 0x9e3779b97f4a7c15ULL;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double
infer_rng_uniform(uint64_t seed, uint64_t counter)
{
    return (double) (infer_rng_u64(seed, counter) >> 11) * 0x1.0p-53;
}

int32_t
infer_argmax(const float *logits, int n)
{
    int32_t best = 0;
    int     i;

    for (i = 1; i < n; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    return best;
}

static int
by_logit_desc(const void *a, const void *b, void *arg)
{
    const float *logits = arg;
    int32_t      i = *(const int32_t *) a, j = *(const int32_t *) b;

    if (logits[i] != logits[j]) {
        return logits[i] > logits[j] ? -1 : 1;
    }
    return i < j ? -1 : 1;
}

size_t
infer_sample_scratch_bytes(int n)
{
    return (size_t) n * (sizeof(int32_t) + sizeof(double));
}

/* Keeps the k largest logits (ties: lower id) at the front of idx, sorted. */
static int
top_k_candidates(const float *logits, int n, int k, int32_t *idx)
{
    int i;

    for (i = 0; i < n; i++) {
        idx[i] = i;
    }
    qsort_r(idx, n, sizeof(int32_t), by_logit_desc, (void *) logits);
    return k > 0 && k < n ? k : n;
}

int32_t
infer_sample(const float *logits, int n, const infer_sampling_t *s,
    void *scratch)
{
    /* doubles first: after n int32 ids they would be misaligned for odd n */
    double  *p = scratch;
    int32_t *idx = (int32_t *) ((char *) scratch + (size_t) n * sizeof(double));
    double   inv_t, zmax, sum, cum, u;
    int      m, i, truncate;

    if (s->temperature <= 0.0f || s->top_k == 1) {
        return infer_argmax(logits, n);
    }

    truncate = (s->top_k > 0 && s->top_k < n) || s->top_p < 1.0f;
    if (truncate) {
        m = top_k_candidates(logits, n, s->top_k, idx);
    } else {
        for (i = 0; i < n; i++) {
            idx[i] = i;
        }
        m = n;
    }

    inv_t = 1.0 / (double) s->temperature;
    zmax = -INFINITY;
    for (i = 0; i < m; i++) {
        if (logits[idx[i]] * inv_t > zmax) {
            zmax = logits[idx[i]] * inv_t;
        }
    }
    sum = 0.0;
    for (i = 0; i < m; i++) {
        p[i] = exp(logits[idx[i]] * inv_t - zmax);
        sum += p[i];
    }

    if (s->top_p < 1.0f) {
        /* smallest prefix whose mass reaches top_p, at least one token */
        cum = 0.0;
        for (i = 0; i < m; i++) {
            cum += p[i];
            if (cum >= (double) s->top_p * sum) {
                m = i + 1;
                break;
            }
        }
        sum = cum;
    }

    u = infer_rng_uniform(s->seed, s->step) * sum;
    cum = 0.0;
    for (i = 0; i < m; i++) {
        cum += p[i];
        if (u < cum) {
            return idx[i];
        }
    }
    return idx[m - 1];
}
