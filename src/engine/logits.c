/*
 * Logits operations.  The penalties follow the definitions their users
 * know: OpenAI's for presence and frequency (logit -= presence * [count >
 * 0] + frequency * count, over the completion), Hugging Face's for the
 * repetition penalty (CTRL's, over the whole sequence).
 */
#include <math.h>
#include "logits.h"

double
infer_logsumexp(const float *row, int n)
{
    double  m, sum;
    int     i;

    m = row[0];
    for (i = 1; i < n; i++) {
        if (row[i] > m) {
            m = row[i];
        }
    }
    if (isinf(m)) {
        return m;
    }
    sum = 0.0;
    for (i = 0; i < n; i++) {
        sum += exp((double) row[i] - m);
    }
    return m + log(sum);
}

/* a ranks before b: larger logit, or the same and a lower id */
static int
ranks_before(const float *row, int32_t a, int32_t b)
{
    return row[a] > row[b] || (row[a] == row[b] && a < b);
}

/* One pass keeping the k best in order (k is at most 20: insertion into a
 * short sorted list beats a sort of the vocabulary). */
void
infer_top_ids(const float *row, int n, int k, int32_t *ids)
{
    int      i, j, have = 0;

    if (k > n) {
        k = n;
    }
    if (k <= 0) {
        return;
    }
    for (i = 0; i < n; i++) {
        if (have == k && !ranks_before(row, i, ids[k - 1])) {
            continue;
        }
        j = have < k ? have++ : k - 1;
        while (j > 0 && ranks_before(row, i, ids[j - 1])) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
}

int
infer_penalties_active(const infer_penalties_t *p)
{
    return p->presence != 0.0f || p->frequency != 0.0f
           || (p->repetition != 1.0f && p->repetition > 0.0f)
           || p->n_bias > 0;
}

static void
repetition(float *row, const int32_t *ids, int n_ids, float penalty,
    uint32_t *seen)
{
    int  i;

    for (i = 0; i < n_ids; i++) {
        if (seen[ids[i]]++ == 0) {
            row[ids[i]] = row[ids[i]] > 0.0f ? row[ids[i]] / penalty
                                             : row[ids[i]] * penalty;
        }
    }
}

static void
clear(const int32_t *ids, int n_ids, uint32_t *counts)
{
    int  i;

    for (i = 0; i < n_ids; i++) {
        counts[ids[i]] = 0;
    }
}

void
infer_apply_penalties(float *row, int n, const infer_penalties_t *p,
    const int32_t *prompt, int n_prompt, const int32_t *gen, int n_gen,
    uint32_t *counts)
{
    int  i;

    (void) n;

    for (i = 0; i < p->n_bias; i++) {
        row[p->bias_ids[i]] += p->bias[i];
    }

    if (p->repetition != 1.0f && p->repetition > 0.0f) {
        repetition(row, prompt, n_prompt, p->repetition, counts);
        repetition(row, gen, n_gen, p->repetition, counts);
        clear(prompt, n_prompt, counts);
        clear(gen, n_gen, counts);
    }

    if (p->presence != 0.0f || p->frequency != 0.0f) {
        for (i = 0; i < n_gen; i++) {
            counts[gen[i]]++;
        }
        for (i = 0; i < n_gen; i++) {
            if (counts[gen[i]] > 0) {
                row[gen[i]] -= p->presence
                               + p->frequency * (float) counts[gen[i]];
                counts[gen[i]] = 0;
            }
        }
    }
}
