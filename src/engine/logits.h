/*
 * Operations on one row of logits: the log-softmax a request's logprobs
 * come from, its best alternatives, and the penalties applied before a
 * token is drawn.  Pure functions over the row.
 */
#ifndef INFER_LOGITS_H
#define INFER_LOGITS_H

#include <stddef.h>
#include <stdint.h>

/* log(sum(exp(row))) in double, so that logprob(id) = row[id] - lse. */
double infer_logsumexp(const float *row, int n);

/* The k largest logits' ids, best first (ties: the lower id first). */
void infer_top_ids(const float *row, int n, int k, int32_t *ids);

typedef struct {
    float           presence;       /* OpenAI: once per generated id */
    float           frequency;      /* OpenAI: per occurrence */
    float           repetition;     /* Hugging Face: 1 = off */
    const int32_t  *bias_ids;       /* OpenAI logit_bias */
    const float    *bias;
    int             n_bias;
} infer_penalties_t;

int infer_penalties_active(const infer_penalties_t *p);

/*
 * Applies, in vLLM's order, the logit bias, then the repetition penalty
 * over every id of the prompt and the generated tokens (a positive logit
 * divided by it, a negative one multiplied, once per distinct id, as
 * Hugging Face's RepetitionPenaltyLogitsProcessor), then presence and
 * frequency penalties over the generated ids.  counts is n zeroed
 * uint32_t of scratch, left zeroed.
 */
void infer_apply_penalties(float *row, int n, const infer_penalties_t *p,
    const int32_t *prompt, int n_prompt, const int32_t *gen, int n_gen,
    uint32_t *counts);

#endif
