/*
 * The per-family references of tools/ref/hf_family.py (t/data/ref/
 * NAME.ref): reading them, and driving a backend through a flat batch the
 * way the scheduler does, for test_hf_logits.c (CPU) and
 * test_cuda_families.c (GPU).
 */
#ifndef FAM_REF_H
#define FAM_REF_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "tap.h"

static char fam_err[1024];

#define FAM_TOP      8
#define FAM_GEN      64

typedef struct {
    char      name[16];
    int       n, n_pos;
    int32_t  *ids, *pos;
    float    *vals;                 /* [n_pos][n_ids] */
    int32_t  *top_ids;              /* [n_pos][FAM_TOP] */
    float    *top_vals;
} fam_case_t;

typedef struct {
    char      name[16];
    int       n, n_gen;
    int32_t  *ids;
    int32_t   gen[FAM_GEN];
    double    margin;
} fam_greedy_t;

typedef struct {
    char          name[64];
    char          source[256];
    int           vocab, stride, n_ids;
    fam_case_t    cases[3];
    int           n_cases;
    fam_greedy_t  greedy[2];
    int           n_greedy;
} fam_ref_t;

/* Reads n integers after a "ids" / "gen" keyword line. */
static int
fam_ints(char *line, const char *key, int n, int32_t *out)
{
    char *p = line, *end;
    int   i;

    if (strncmp(p, key, strlen(key)) != 0) {
        return -1;
    }
    p += strlen(key);
    for (i = 0; i < n; i++) {
        out[i] = (int32_t) strtol(p, &end, 10);
        if (end == p) {
            return -1;
        }
        p = end;
    }
    return 0;
}

static int
fam_read(const char *path, fam_ref_t *r)
{
    FILE        *f = fopen(path, "r");
    char        *line = NULL, *p, *end;
    size_t       cap = 0;
    fam_case_t   *c = NULL;
    fam_greedy_t *g = NULL;
    int          k, j, rc = -1, top, want = 0;

    memset(r, 0, sizeof(*r));
    if (f == NULL) {
        return -1;
    }
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#') {
            continue;
        }
        if (sscanf(line, "model %63s", r->name) == 1) {
            continue;
        }
        if (strncmp(line, "source ", 7) == 0) {
            snprintf(r->source, sizeof(r->source), "%s", line + 7);
            r->source[strcspn(r->source, "\n")] = '\0';
            continue;
        }
        if (sscanf(line, "vocab %d stride %d ids %d top %d", &r->vocab,
                   &r->stride, &r->n_ids, &top) == 4)
        {
            if (top != FAM_TOP || r->n_ids < 1
                || (r->n_ids - 1) * r->stride >= r->vocab)
            {
                goto done;
            }
            continue;
        }
        if (strncmp(line, "case ", 5) == 0 && r->n_cases < 3) {
            c = &r->cases[r->n_cases++];
            if (sscanf(line, "case %15s tokens %d positions %d", c->name,
                       &c->n, &c->n_pos) != 3 || c->n < 1 || c->n_pos < 1)
            {
                goto done;
            }
            c->ids = malloc(c->n * sizeof(int32_t));
            c->pos = malloc(c->n_pos * sizeof(int32_t));
            c->vals = malloc((size_t) c->n_pos * r->n_ids * sizeof(float));
            c->top_ids = malloc(c->n_pos * FAM_TOP * sizeof(int32_t));
            c->top_vals = malloc(c->n_pos * FAM_TOP * sizeof(float));
            if (!c->ids || !c->pos || !c->vals || !c->top_ids
                || !c->top_vals || getline(&line, &cap, f) <= 0
                || fam_ints(line, "ids", c->n, c->ids) != 0)
            {
                goto done;
            }
            for (j = 0; j < c->n_pos; j++) {
                if (getline(&line, &cap, f) <= 0
                    || strncmp(line, "pos ", 4) != 0)
                {
                    goto done;
                }
                c->pos[j] = (int32_t) strtol(line + 4, &p, 10);
                for (k = 0; k < r->n_ids; k++) {
                    c->vals[(size_t) j * r->n_ids + k] = strtof(p, &end);
                    if (end == p) {
                        goto done;
                    }
                    p = end;
                }
                p = strchr(p, '|');
                for (k = 0; p != NULL && k < FAM_TOP; k++) {
                    c->top_ids[j * FAM_TOP + k] =
                        (int32_t) strtol(p + (k == 0), &end, 10);
                    p = end;
                    c->top_vals[j * FAM_TOP + k] = strtof(p, &end);
                    p = end;
                }
                if (p == NULL || k != FAM_TOP) {
                    goto done;
                }
            }
            continue;
        }
        if (strncmp(line, "greedy ", 7) == 0 && r->n_greedy < 2) {
            g = &r->greedy[r->n_greedy++];
            if (sscanf(line, "greedy %15s prompt %d new %d margin %lf",
                       g->name, &g->n, &g->n_gen, &g->margin) != 4
                || g->n < 1 || g->n_gen != FAM_GEN)
            {
                goto done;
            }
            g->ids = malloc(g->n * sizeof(int32_t));
            if (g->ids == NULL || getline(&line, &cap, f) <= 0
                || fam_ints(line, "ids", g->n, g->ids) != 0
                || getline(&line, &cap, f) <= 0
                || fam_ints(line, "gen", g->n_gen, g->gen) != 0)
            {
                goto done;
            }
            want++;
        }
    }
    rc = r->n_cases == 3 && want == 2 && r->vocab > 0
         && strncmp(r->source, "gen ", 4) == 0 ? 0 : -1;
done:
    free(line);
    fclose(f);
    return rc;
}

static void
fam_free(fam_ref_t *r)
{
    int i;

    for (i = 0; i < r->n_cases; i++) {
        free(r->cases[i].ids);
        free(r->cases[i].pos);
        free(r->cases[i].vals);
        free(r->cases[i].top_ids);
        free(r->cases[i].top_vals);
    }
    for (i = 0; i < r->n_greedy; i++) {
        free(r->greedy[i].ids);
    }
}

/*
 * A few sequences driven through the backend as the scheduler drives it:
 * each step is a flat batch of runs (a prompt chunk or one decode token
 * per sequence), blocks of a sequence scattered over the pool.
 */
#define FAM_SEQS     3
#define FAM_BS       16
#ifndef FAM_MAXB
#define FAM_MAXB     80             /* blocks per sequence: 1280 tokens */
#endif

typedef struct {
    int       n, n_seqs, n_logits;
    int32_t  *tokens, *pos, *seq, *logit;
    int32_t   ctx[FAM_SEQS];
    int32_t   table[FAM_SEQS * FAM_MAXB];
} fam_step_t;

static void
fam_step_init(fam_step_t *st, int cap)
{
    int i;

    memset(st, 0, sizeof(*st));
    st->tokens = malloc(cap * sizeof(int32_t));
    st->pos = malloc(cap * sizeof(int32_t));
    st->seq = malloc(cap * sizeof(int32_t));
    st->logit = malloc(cap * sizeof(int32_t));
    /* scrambled physical blocks, disjoint between sequences */
    for (i = 0; i < FAM_SEQS * FAM_MAXB; i++) {
        st->table[i] = (i * 37 + 11) % (FAM_SEQS * FAM_MAXB);
    }
}

static void
fam_step_free(fam_step_t *st)
{
    free(st->tokens);
    free(st->pos);
    free(st->seq);
    free(st->logit);
}

/* Adds tokens [0, n) of a run at positions first.. of seq; logits for
 * those whose position is in want[0..n_want) (NULL: the last one). */
static void
fam_step_add(fam_step_t *st, int seq, const int32_t *tokens, int first,
    int n, const int32_t *want, int n_want)
{
    int i, j;

    for (i = 0; i < n; i++) {
        st->tokens[st->n] = tokens[i];
        st->pos[st->n] = first + i;
        st->seq[st->n] = seq;
        if (want == NULL) {
            if (i == n - 1) {
                st->logit[st->n_logits++] = st->n;
            }
        } else {
            for (j = 0; j < n_want; j++) {
                if (want[j] == first + i) {
                    st->logit[st->n_logits++] = st->n;
                    break;
                }
            }
        }
        st->n++;
    }
    st->n_seqs = seq + 1 > st->n_seqs ? seq + 1 : st->n_seqs;
    st->ctx[seq] = first + n;
}

static int
fam_step_run(infer_backend_t *b, fam_step_t *st, float *logits)
{
    infer_batch_t bt;

    memset(&bt, 0, sizeof(bt));
    bt.n_tokens = st->n;
    bt.tokens = st->tokens;
    bt.positions = st->pos;
    bt.seq_of_token = st->seq;
    bt.n_seqs = st->n_seqs;
    bt.ctx_len = st->ctx;
    bt.block_table = st->table;
    bt.max_blocks = FAM_MAXB;
    bt.n_logits = st->n_logits;
    bt.logit_tokens = st->logit;
    if (b->ops->forward(b, &bt, logits, fam_err, sizeof(fam_err)) != 0) {
        diag("forward: %s", fam_err);
        return -1;
    }
    st->n = st->n_logits = 0;
    return 0;
}

static int32_t
fam_argmax(const float *row, int vocab)
{
    int32_t i, best = 0;

    for (i = 1; i < vocab; i++) {
        if (row[i] > row[best]) {
            best = i;
        }
    }
    return best;
}

/* max |ours - ref| / max |ref| over the stored ids and the top ids of
 * each stored position; *top1 counts positions whose argmax (over the
 * whole vocabulary) is transformers' top-1. */
static double
fam_compare(const fam_ref_t *r, const fam_case_t *c, const float *got,
    int *top1)
{
    double  maxd = 0, maxr = 0, d;
    int     j, k;
    const float *row;

    *top1 = 0;
    for (j = 0; j < c->n_pos; j++) {
        row = got + (size_t) j * r->vocab;
        for (k = 0; k < r->n_ids; k++) {
            d = fabs((double) row[k * r->stride]
                     - c->vals[(size_t) j * r->n_ids + k]);
            maxd = d > maxd || isnan(d) ? d : maxd;
            maxr = fmax(maxr, fabs(c->vals[(size_t) j * r->n_ids + k]));
        }
        for (k = 0; k < FAM_TOP; k++) {
            d = fabs((double) row[c->top_ids[j * FAM_TOP + k]]
                     - c->top_vals[j * FAM_TOP + k]);
            maxd = d > maxd || isnan(d) ? d : maxd;
            maxr = fmax(maxr, fabs(c->top_vals[j * FAM_TOP + k]));
        }
        *top1 += fam_argmax(row, r->vocab) == c->top_ids[j * FAM_TOP];
    }
    return maxr > 0 ? maxd / maxr : INFINITY;
}

/* A backend by name ("cpu", "cuda") for the family tests: room for the
 * long prompt in one step and FAM_SEQS sequences of FAM_MAXB blocks. */
static infer_backend_t *
fam_backend_dtype(const infer_model_t *m, const char *name, int tp,
    const char *dtype)
{
    infer_backend_params_t     p;
    infer_backend_t           *b;
    const infer_backend_ops_t *ops = infer_backend_find(name, fam_err,
                                                        sizeof(fam_err));

    if (ops == NULL) {
        diag("%s", fam_err);
        return NULL;
    }
    memset(&p, 0, sizeof(p));
    p.dtype = dtype;
    p.threads = 1;
    p.tp = tp;
    p.block_size = FAM_BS;
    p.max_batch_tokens = 1100;
    p.max_seqs = FAM_SEQS;
    p.kv_cache_bytes = infer_backend_kv_block_bytes(ops, &m->cfg, FAM_BS)
                       * FAM_SEQS * FAM_MAXB;
    if (infer_backend_create(name, m, &p, &b, fam_err, sizeof(fam_err))
        != 0)
    {
        diag("%s backend tp=%d: %s", name, tp, fam_err);
        return NULL;
    }
    return b;
}

static infer_backend_t *
fam_backend(const infer_model_t *m, const char *name, int tp)
{
    return fam_backend_dtype(m, name, tp, NULL);
}

/* The whole prompt of c as chunks of `chunk` tokens (decode steps when
 * 1) after a first chunk of `first`; logits at the stored positions. */
static int
fam_prefill(infer_backend_t *b, const fam_case_t *c, int first, int chunk,
    float *got, int vocab)
{
    fam_step_t st;
    int        at = 0, n, k, rows = 0, rc = 0;

    fam_step_init(&st, c->n);
    while (rc == 0 && at < c->n) {
        n = at == 0 ? first : chunk;
        n = c->n - at < n ? c->n - at : n;
        fam_step_add(&st, 0, c->ids + at, at, n, c->pos, c->n_pos);
        k = st.n_logits;
        rc = fam_step_run(b, &st, got + (size_t) rows * vocab);
        rows += k;
        at += n;
    }
    fam_step_free(&st);
    return rc == 0 && rows == c->n_pos ? 0 : -1;
}

/*
 * What a greedy run saw at each step of each sequence: the argmax, the
 * gap between the two largest logits, and the logits of the reference's
 * ids 0, S, 2S, ... (n_ids of them).
 */
typedef struct {
    int32_t   arg[2][FAM_GEN];
    float     margin[2][FAM_GEN];
    float    *sample;               /* [2][FAM_GEN][n_ids] or NULL */
} fam_trace_t;

static void
fam_trace_row(const fam_ref_t *r, fam_trace_t *tr, int s, int step,
    const float *row)
{
    float best = -INFINITY, second = -INFINITY;
    int   i;

    for (i = 0; i < r->vocab; i++) {
        if (row[i] > best) {
            second = best;
            best = row[i];
        } else if (row[i] > second) {
            second = row[i];
        }
    }
    tr->arg[s][step] = fam_argmax(row, r->vocab);
    tr->margin[s][step] = best - second;
    if (tr->sample != NULL) {
        for (i = 0; i < r->n_ids; i++) {
            tr->sample[((size_t) s * FAM_GEN + step) * r->n_ids + i] =
                row[i * r->stride];
        }
    }
}

/*
 * Greedy decoding of both reference prompts through one backend: "alone"
 * runs a after b has finished, "batched" runs them in the same steps, b's
 * prompt joining while a already decodes (a prefill chunk and decode
 * tokens in one step).  forced feeds transformers' tokens back instead of
 * our own argmax (teacher forcing: the steps stay comparable where fp16
 * would pick the other side of a near tie).  Each sequence runs `steps`
 * steps (<= FAM_GEN); out gets the argmax of every step, tr (or NULL)
 * what each step saw.
 */
static int
fam_greedy(infer_backend_t *b, const fam_ref_t *r, int batched, int forced,
    int steps, int32_t out[2][FAM_GEN], fam_trace_t *tr)
{
    fam_step_t  st;
    float      *lg = malloc((size_t) 2 * r->vocab * sizeof(float));
    int         done[2] = { 0, 0 }, step, s, k, rc = 0, active[2];
    int         join = 3, order;
    const fam_greedy_t *g;

    fam_step_init(&st, r->greedy[0].n + r->greedy[1].n + 2);
    for (order = 0; order < (batched ? 1 : 2) && rc == 0; order++) {
        for (step = 0; rc == 0 && (done[0] < steps || done[1] < steps);
             step++)
        {
            k = 0;
            for (s = 0; s < 2; s++) {
                g = &r->greedy[s];
                active[s] = batched ? (s == 0 || step >= join)
                                    : s == order;
                if (!active[s] || done[s] == steps) {
                    active[s] = 0;
                    continue;
                }
                if (done[s] == 0) {
                    fam_step_add(&st, s, g->ids, 0, g->n, NULL, 0);
                } else {
                    fam_step_add(&st, s, forced ? &g->gen[done[s] - 1]
                                                : &out[s][done[s] - 1],
                                 g->n + done[s] - 1, 1, NULL, 0);
                }
                k++;
            }
            if (k == 0) {
                break;
            }
            rc = fam_step_run(b, &st, lg);
            for (s = 0, k = 0; rc == 0 && s < 2; s++) {
                if (active[s]) {
                    if (tr != NULL) {
                        fam_trace_row(r, tr, s, done[s],
                                      lg + (size_t) k * r->vocab);
                    }
                    out[s][done[s]++] = fam_argmax(lg + (size_t) k++
                                                   * r->vocab, r->vocab);
                }
            }
        }
    }
    fam_step_free(&st);
    free(lg);
    return rc;
}

#endif
