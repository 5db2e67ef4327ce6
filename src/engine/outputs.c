/*
 * A request's logits rows and logprobs, from the rows of each step to its
 * events.  See outputs.h.
 */
#include <stdlib.h>
#include <string.h>
#include "logits.h"
#include "model.h"
#include "outputs.h"

void
infer_outputs_init(infer_outputs_t *o, const infer_request_t *r, int vocab)
{
    memset(o, 0, sizeof(*o));
    o->prompt_logits = r->prompt_logits;
    o->gen_logits = r->gen_logits;
    o->f16 = r->logits_f16;
    o->logprobs = r->logprobs;
    o->prompt_logprobs = r->prompt_logprobs;
    o->top = (r->logprobs || r->prompt_logprobs) ? r->top_logprobs : 0;
    o->vocab = vocab;
    o->n_prompt = r->n_prompt;
}

void
infer_outputs_free(infer_outputs_t *o)
{
    free(o->rows);
    free(o->lp_ids);
    free(o->lp);
    free(o->lp_top_ids);
    free(o->lp_top_lp);
    o->rows = NULL;
    o->lp_ids = o->lp_top_ids = NULL;
    o->lp = o->lp_top_lp = NULL;
}

size_t
infer_outputs_bytes(const infer_request_t *r, int n_gen, int vocab)
{
    size_t  rows = 0, lps = 0;

    if (r->prompt_logits == INFER_LOGITS_PROMPT) {
        rows += r->n_prompt;
    } else if (r->prompt_logits == INFER_LOGITS_LAST) {
        rows += 1;
    }
    if (r->gen_logits) {
        rows += n_gen;
    }
    if (r->prompt_logprobs) {
        lps += r->n_prompt;
    }
    if (r->logprobs) {
        lps += n_gen;
    }
    return rows * vocab * (r->logits_f16 ? 2 : 4)
           + lps * (1 + (size_t) r->top_logprobs) * 8;
}

static int
want_logprob(const infer_outputs_t *o, int i)
{
    return i < o->n_prompt ? o->prompt_logprobs && i > 0 : o->logprobs;
}

static int
want_logits(const infer_outputs_t *o, int p)
{
    if (o->gen_logits && p >= o->n_prompt - 1) {
        return 1;
    }
    return o->prompt_logits == INFER_LOGITS_PROMPT
           ? p < o->n_prompt
           : o->prompt_logits == INFER_LOGITS_LAST && p == o->n_prompt - 1;
}

int
infer_outputs_want_row(const infer_outputs_t *o, int p)
{
    return p >= o->next && (want_logits(o, p) || want_logprob(o, p + 1));
}

static int
grow_lp(infer_outputs_t *o)
{
    int      cap = o->lp_cap ? 2 * o->lp_cap : 16;
    void    *a, *b, *c, *d;

    a = realloc(o->lp_ids, cap * sizeof(int32_t));
    if (a != NULL) {
        o->lp_ids = a;
    }
    b = realloc(o->lp, cap * sizeof(float));
    if (b != NULL) {
        o->lp = b;
    }
    c = realloc(o->lp_top_ids, (size_t) cap * (o->top + 1) * sizeof(int32_t));
    if (c != NULL) {
        o->lp_top_ids = c;
    }
    d = realloc(o->lp_top_lp, (size_t) cap * (o->top + 1) * sizeof(float));
    if (d != NULL) {
        o->lp_top_lp = d;
    }
    if (a == NULL || b == NULL || c == NULL || d == NULL) {
        return -1;
    }
    o->lp_cap = cap;
    return 0;
}

static int
add_row(infer_outputs_t *o, int p, const float *row)
{
    size_t          each = (size_t) o->vocab * (o->f16 ? 2 : 4), cap;
    unsigned char  *q;
    uint16_t       *h;
    int             i;

    if ((size_t) (o->n_rows + 1) * each > o->rows_cap) {
        cap = o->rows_cap ? 2 * o->rows_cap : each;
        while (cap < (size_t) (o->n_rows + 1) * each) {
            cap *= 2;
        }
        q = realloc(o->rows, cap);
        if (q == NULL) {
            return -1;
        }
        o->rows = q;
        o->rows_cap = cap;
    }
    if (o->n_rows == 0) {
        o->rows_first = p;
    }
    q = o->rows + o->n_rows * each;
    if (o->f16) {
        h = (uint16_t *) q;
        for (i = 0; i < o->vocab; i++) {
            h[i] = infer_float_to_half(row[i]);
        }
    } else {
        memcpy(q, row, each);
    }
    o->n_rows++;
    return 0;
}

static int
add_logprob(infer_outputs_t *o, int i, const float *row, int32_t id)
{
    double   lse;
    int      k;
    int32_t *top;
    float   *top_lp;

    if (o->n_lp == o->lp_cap && grow_lp(o) != 0) {
        return -1;
    }
    if (o->n_lp == 0) {
        o->lp_first = i;
    }
    lse = infer_logsumexp(row, o->vocab);
    o->lp_ids[o->n_lp] = id;
    o->lp[o->n_lp] = (float) ((double) row[id] - lse);
    top = o->lp_top_ids + (size_t) o->n_lp * o->top;
    top_lp = o->lp_top_lp + (size_t) o->n_lp * o->top;
    infer_top_ids(row, o->vocab, o->top, top);
    for (k = 0; k < o->top; k++) {
        top_lp[k] = (float) ((double) row[top[k]] - lse);
    }
    o->n_lp++;
    return 0;
}

int
infer_outputs_add(infer_outputs_t *o, int p, const float *row, int32_t id)
{
    if (p < o->next) {
        return 0;
    }
    if (want_logits(o, p) && add_row(o, p, row) != 0) {
        return -1;
    }
    if (id >= 0 && want_logprob(o, p + 1)
        && add_logprob(o, p + 1, row, id) != 0)
    {
        return -1;
    }
    o->next = p + 1;
    return 0;
}

int
infer_outputs_pending(const infer_outputs_t *o)
{
    return o->n_rows > 0 || o->n_lp > 0;
}

void
infer_outputs_take(infer_outputs_t *o, infer_event_t *ev)
{
    if (o->n_rows > 0) {
        ev->rows = o->rows;
        ev->n_rows = o->n_rows;
        ev->rows_first = o->rows_first;
        o->rows = NULL;
        o->rows_cap = 0;
        o->n_rows = 0;
    }
    if (o->n_lp > 0) {
        ev->lp_first = o->lp_first;
        ev->n_lp = o->n_lp;
        ev->lp_top = o->top;
        ev->lp_ids = o->lp_ids;
        ev->lp = o->lp;
        ev->lp_top_ids = o->lp_top_ids;
        ev->lp_top_lp = o->lp_top_lp;
        o->lp_ids = o->lp_top_ids = NULL;
        o->lp = o->lp_top_lp = NULL;
        o->lp_cap = 0;
        o->n_lp = 0;
    }
}
