/*
 * A request's outputs besides text (engine-private): the logits rows and
 * logprobs it asked for, gathered as its positions are computed and handed
 * to its next event.  Row p is the model's output at position p, the
 * distribution of the token at index p + 1; every row and logprob goes out
 * once, even when a preempted request computes its positions again.
 */
#ifndef INFER_OUTPUTS_H
#define INFER_OUTPUTS_H

#include "infer.h"

typedef struct {
    /* what was asked (infer_request_t) */
    infer_logits_t  prompt_logits;
    int             gen_logits;
    int             f16;
    int             logprobs;
    int             prompt_logprobs;
    int             top;
    int             vocab;
    int             n_prompt;
    int             next;           /* positions below are out already */

    /* gathered, not yet in an event */
    unsigned char  *rows;
    int             n_rows;
    int             rows_first;
    size_t          rows_cap;       /* bytes */
    int32_t        *lp_ids;
    float          *lp;
    int32_t        *lp_top_ids;
    float          *lp_top_lp;
    int             n_lp;
    int             lp_first;
    int             lp_cap;         /* entries */
} infer_outputs_t;

void infer_outputs_init(infer_outputs_t *o, const infer_request_t *r,
    int vocab);
void infer_outputs_free(infer_outputs_t *o);

/* Bytes the outputs of a request with n_gen generated tokens take, for the
 * cap checked before any compute. */
size_t infer_outputs_bytes(const infer_request_t *r, int n_gen, int vocab);

/* Whether position p needs a row for the outputs (1) or not (0). */
int infer_outputs_want_row(const infer_outputs_t *o, int p);

/* Takes the row at position p: the row itself if asked, and the logprob
 * of the token at index p + 1 (id, -1 when not known yet) if asked.
 * -1 when out of memory. */
int infer_outputs_add(infer_outputs_t *o, int p, const float *row,
    int32_t id);

int infer_outputs_pending(const infer_outputs_t *o);
/* Moves what is gathered into an event (which then owns it). */
void infer_outputs_take(infer_outputs_t *o, infer_event_t *ev);

#endif
