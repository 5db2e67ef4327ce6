/*
 * The engine: a scheduler thread running continuous (iteration-level)
 * batching over a backend.
 *
 * Every step the scheduler admits waiting requests up to max_seqs, gives
 * each running sequence in decode one token of the step's budget, fills the
 * rest with prefill chunks (so long prompts are split across steps and mixed
 * with decode), allocates KV blocks as positions grow (reusing the blocks
 * of a cached prefix), preempts the sequences that rank last (lowest
 * priority, then youngest) when the block pool runs dry (they recompute
 * later), runs one forward pass, samples, and turns tokens into text
 * events.
 *
 * Threads: callers only touch the submit queue, the cancel list and the
 * event list, each under a mutex; everything else belongs to the scheduler.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "backend.h"
#include "infer.h"
#include "kvpool.h"
#include "logits.h"
#include "model.h"
#include "outputs.h"
#include "sampling.h"
#include "tokenizer.h"

#define INFER_MAX_STOP      16
#define INFER_MAX_STOP_LEN  1024
#define INFER_MAX_STOP_IDS  64

typedef struct infer_seq infer_seq_t;

struct infer_seq {
    uint64_t          id;
    void             *user;
    int32_t          *tokens;        /* prompt then generated */
    int               n_tokens;
    int               n_prompt;
    int               n_generated;
    int               n_reported;    /* generated tokens already in events */
    int               max_tokens;    /* 0: score the prompt only */
    int               min_tokens;
    int               n_computed;    /* tokens whose keys/values are cached */
    int32_t          *blocks;        /* [max_blocks_per_seq] */
    int               n_blocks;
    int               n_named;       /* leading blocks published by name */
    uint64_t          last_name;     /* the name of block n_named - 1 */
    int               cached_tokens; /* from the cache, first admission */
    int64_t           rank;          /* priority x aging + arrival ms:
                                        lower is admitted first */
    int               admitted;      /* admitted at least once */
    infer_sampling_t  sampling;
    infer_penalties_t penalties;
    int32_t          *bias_ids;      /* the penalties' logit bias */
    float            *bias;
    infer_outputs_t   outputs;
    int               row0;          /* its first logits row in the step */
    int               n_rows;
    int32_t          *stop_ids;
    int               n_stop_ids;
    char            **stop;
    int               n_stop;
    int               ignore_eos;
    int64_t           deadline_ms;
    int64_t           submit_us;
    int64_t           queue_us;      /* until it first ran; -1: not yet */
    uint64_t          first_step;    /* steps that computed it; 0: none */
    uint64_t          last_step;
    infer_detok_t     detok;
    char             *held;          /* decoded text not yet emitted */
    size_t            held_len;
    size_t            held_cap;
    int               chunk;         /* tokens of this seq in the step */
    int               paused;        /* its caller cannot take more output */
    struct infer_event_node *final;  /* its last event, allocated ahead */
    infer_seq_t      *next;
};

/* What a caller asks of a request it submitted, applied at the next step. */
typedef enum {
    INFER_CTL_CANCEL = 1,
    INFER_CTL_PAUSE,
    INFER_CTL_RESUME
} infer_control_op_t;

typedef struct {
    uint64_t            id;
    infer_control_op_t  op;
} infer_control_t;

typedef struct infer_event_node {
    infer_event_t             ev;
    struct infer_event_node  *next;
} infer_event_node_t;

struct infer_engine {
    infer_model_t       *model;
    infer_tokenizer_t   *tok;
    infer_backend_t     *backend;
    char                 backend_name[16];
    int                  max_batch_tokens;
    int                  max_seqs;
    int                  max_queue;
    int                  block_size;
    int                  prefix_cache;  /* reuse cached blocks */
    int                  aging_ms;      /* a priority level per this wait */
    int                  n_blocks;
    int                  max_blocks;    /* per sequence */
    int                  context;       /* usable tokens per sequence */
    int                  vocab;

    /* shared with callers, under mu */
    pthread_mutex_t      mu;
    pthread_cond_t       wake;
    infer_seq_t         *submitted_head, *submitted_tail;
    int                  n_pending;     /* submitted or waiting */
    infer_control_t     *controls;      /* cancels, pauses, in order */
    int                  n_controls, cap_controls;
    uint64_t             next_id;
    int                  stop;
    int                  alive;
    char                 error[256];    /* why it stopped, once failed */
    infer_stats_t        stats;
    pthread_t            thread;
    int                  started;

    /* events, under ev_mu */
    pthread_mutex_t      ev_mu;
    infer_event_node_t  *ev_head, *ev_tail;
    int                  efd;
    infer_event_node_t  *step_head, *step_tail;  /* scheduler: this step's */

    /* the scheduler's own */
    infer_seq_t        **running;      /* by rank, first first */
    int                  n_running;
    infer_seq_t         *waiting;       /* by rank */
    infer_kvpool_t      *pool;
    infer_seq_t        **step_seqs;
    int32_t             *b_tokens, *b_pos, *b_seq, *b_ctx, *b_table;
    int32_t             *b_logit;
    int32_t             *b_logit_pos;   /* position of each logits row */
    int                  max_rows;      /* logits rows of one step */
    size_t               max_output;    /* bytes of outputs a request */
    float               *logits;
    float               *work;          /* a row being penalized */
    uint32_t            *counts;        /* vocab zeros, for penalties */
    void                *sample_scratch;
    char                *text;         /* detokenizer output scratch */
    size_t               text_cap;
    infer_stats_t        counters;     /* published into stats each step */
    char                 kernels[192]; /* the backend's matrix library */
};

static void infer_seq_free(infer_seq_t *s);

static int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
infer_now_ms(void)
{
    return now_us() / 1000;
}

const int64_t  infer_step_us_bounds[INFER_STEP_BOUNDS] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 75000, 100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000
};

const int64_t  infer_step_tokens_bounds[INFER_STEP_BOUNDS] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
    32768
};

static void
hist_add(infer_hist_t *h, const int64_t *bounds, int64_t v)
{
    int  i;

    for (i = 0; i < INFER_STEP_BOUNDS && v > bounds[i]; i++) {
        /* void */
    }
    h->count[i]++;
    h->sum += (uint64_t) v;
}

const char *
infer_strerror(int rc)
{
    switch (rc) {
    case INFER_OK:          return "ok";
    case INFER_EINVAL:      return "invalid request parameter";
    case INFER_EQUEUE_FULL: return "request queue is full";
    case INFER_ECONTEXT:    return "prompt exceeds the context length";
    case INFER_ESHUTDOWN:   return "engine is shutting down";
    case INFER_ENOMEM:      return "out of memory";
    case INFER_EOUTPUT:     return "the outputs asked for exceed the limit";
    default:                return "engine error";
    }
}

/* ---- events -------------------------------------------------------------- */

static void
infer_notify(infer_engine_t *e)
{
    uint64_t one = 1;

    /* EAGAIN only when the counter is saturated, i.e. already readable */
    if (write(e->efd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        perror("infer: eventfd write");
    }
}

static void
step_append(infer_engine_t *e, infer_event_node_t *n)
{
    if (e->step_tail != NULL) {
        e->step_tail->next = n;
    } else {
        e->step_head = n;
    }
    e->step_tail = n;
}

/* Every event takes the logits rows and logprobs gathered so far. */
static void
event_init(infer_event_node_t *n, infer_event_type_t type, infer_seq_t *s,
    infer_finish_t finish)
{
    n->ev.type = type;
    n->ev.id = s->id;
    n->ev.user = s->user;
    n->ev.finish = finish;
    n->ev.prompt_tokens = s->n_prompt;
    n->ev.completion_tokens = s->n_generated;
    n->ev.queue_us = s->queue_us;
    n->ev.first_step = s->first_step;
    n->ev.last_step = s->last_step;
    n->ev.cached_tokens = s->cached_tokens;
    infer_outputs_take(&s->outputs, &n->ev);
}

/*
 * Queues a token event for the end of the step.  It carries the tokens
 * generated since the request's previous event, so every token id is
 * reported once.  -1 when out of memory: nothing was queued.
 */
static int
emit_token(infer_engine_t *e, infer_seq_t *s, const char *text, size_t len)
{
    infer_event_node_t *n;
    int                 n_tokens = s->n_generated - s->n_reported;

    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return -1;
    }
    n->ev.text = malloc(len + 1);
    n->ev.tokens = malloc((n_tokens + 1) * sizeof(int32_t));
    if (n->ev.text == NULL || n->ev.tokens == NULL) {
        infer_event_release(&n->ev);
        free(n);
        return -1;
    }
    event_init(n, INFER_EVENT_TOKEN, s, INFER_FINISH_NONE);
    memcpy(n->ev.text, text, len);
    n->ev.text[len] = '\0';
    n->ev.text_len = len;
    memcpy(n->ev.tokens, s->tokens + s->n_prompt + s->n_reported,
           n_tokens * sizeof(int32_t));
    n->ev.n_tokens = n_tokens;
    s->n_reported = s->n_generated;

    step_append(e, n);
    return 0;
}

/*
 * Queues the request's last event (done or error).  It cannot fail: its
 * node was allocated with the sequence, the text is the sequence's own held
 * text (or a copy of a message, which may be lost), and the unreported ids
 * move to the front of the sequence's token buffer, which the event takes.
 * A lost final event would leave its caller waiting for the deadline.
 */
static void
emit_final(infer_engine_t *e, infer_seq_t *s, infer_event_type_t type,
    infer_finish_t finish, const char *text, size_t len)
{
    infer_event_node_t *n = s->final;
    int                 n_tokens = s->n_generated - s->n_reported;

    s->final = NULL;
    event_init(n, type, s, finish);

    if (len > 0 && text == s->held) {
        s->held[len] = '\0';
        n->ev.text = s->held;
        n->ev.text_len = len;
        s->held = NULL;
        s->held_len = s->held_cap = 0;
    } else if (len > 0) {
        n->ev.text = malloc(len + 1);
        if (n->ev.text != NULL) {
            memcpy(n->ev.text, text, len);
            n->ev.text[len] = '\0';
            n->ev.text_len = len;
        }
    }

    if (n_tokens > 0) {
        memmove(s->tokens, s->tokens + s->n_prompt + s->n_reported,
                n_tokens * sizeof(int32_t));
        n->ev.tokens = s->tokens;
        n->ev.n_tokens = n_tokens;
        s->tokens = NULL;
    }
    s->n_reported = s->n_generated;

    step_append(e, n);
}

/* Makes the step's events visible to callers at once, after its stats. */
static void
publish_events(infer_engine_t *e)
{
    if (e->step_head == NULL) {
        return;
    }
    pthread_mutex_lock(&e->ev_mu);
    if (e->ev_tail != NULL) {
        e->ev_tail->next = e->step_head;
    } else {
        e->ev_head = e->step_head;
    }
    e->ev_tail = e->step_tail;
    pthread_mutex_unlock(&e->ev_mu);
    e->step_head = e->step_tail = NULL;
    infer_notify(e);
}

int
infer_engine_poll(infer_engine_t *e, infer_event_t *ev, int max)
{
    infer_event_node_t *n;
    uint64_t            counter;
    int                 got = 0, more;

    if (read(e->efd, &counter, sizeof(counter)) < 0 && errno != EAGAIN) {
        perror("infer: eventfd read");
    }
    pthread_mutex_lock(&e->ev_mu);
    while (got < max && e->ev_head != NULL) {
        n = e->ev_head;
        e->ev_head = n->next;
        ev[got++] = n->ev;
        free(n);
    }
    if (e->ev_head == NULL) {
        e->ev_tail = NULL;
    }
    more = e->ev_head != NULL;
    pthread_mutex_unlock(&e->ev_mu);
    if (more) {
        /* the caller took fewer than were queued: stay readable */
        infer_notify(e);
    }
    return got;
}

void
infer_event_release(infer_event_t *ev)
{
    free(ev->text);
    free(ev->tokens);
    free(ev->rows);
    free(ev->lp_ids);
    free(ev->lp);
    free(ev->lp_top_ids);
    free(ev->lp_top_lp);
    ev->text = NULL;
    ev->tokens = NULL;
    ev->rows = NULL;
    ev->lp_ids = ev->lp_top_ids = NULL;
    ev->lp = ev->lp_top_lp = NULL;
}

int
infer_engine_event_fd(infer_engine_t *e)
{
    return e->efd;
}

/* ---- KV blocks ------------------------------------------------------------ */

static int
blocks_for(const infer_engine_t *e, int tokens)
{
    return (tokens + e->block_size - 1) / e->block_size;
}

static void
release_blocks(infer_engine_t *e, infer_seq_t *s)
{
    while (s->n_blocks > 0) {
        infer_kvpool_release(e->pool, s->blocks[--s->n_blocks]);
    }
    s->n_named = 0;
    s->last_name = 0;
}

static void
remove_running(infer_engine_t *e, infer_seq_t *s)
{
    int i;

    for (i = 0; i < e->n_running; i++) {
        if (e->running[i] == s) {
            memmove(&e->running[i], &e->running[i + 1],
                    (e->n_running - i - 1) * sizeof(infer_seq_t *));
            e->n_running--;
            return;
        }
    }
}

/* Whether a is served after b: a later rank, or the same and later id. */
static int
ranks_after(const infer_seq_t *a, const infer_seq_t *b)
{
    return a->rank > b->rank || (a->rank == b->rank && a->id > b->id);
}

/* Puts s in the waiting line at its rank. */
static void
wait_in_line(infer_engine_t *e, infer_seq_t *s)
{
    infer_seq_t **pp = &e->waiting;

    while (*pp != NULL && !ranks_after(*pp, s)) {
        pp = &(*pp)->next;
    }
    s->next = *pp;
    *pp = s;
}

/* Frees a running sequence's blocks; it recomputes later, from the blocks
 * the prefix cache still holds. */
static void
preempt(infer_engine_t *e, infer_seq_t *s)
{
    e->counters.preemptions++;
    release_blocks(e, s);
    s->n_computed = 0;
    s->chunk = 0;
    remove_running(e, s);
    wait_in_line(e, s);
    pthread_mutex_lock(&e->mu);
    e->n_pending++;
    pthread_mutex_unlock(&e->mu);
}

/*
 * Gives s blocks for its first `tokens` positions, preempting running
 * sequences that are not in this step: paused ones first (they would not
 * use their blocks soon), then those that rank last (lowest priority, then
 * youngest), never one that ranks before s.  Returns -1 when nothing is
 * left to preempt.
 */
static int
reserve_blocks(infer_engine_t *e, infer_seq_t *s, int tokens)
{
    int need = blocks_for(e, tokens) - s->n_blocks, i;

    while (need > infer_kvpool_available(e->pool)) {
        infer_seq_t *victim = NULL, *c;

        /* running is in rank order: the first found ranks last */
        for (i = e->n_running - 1; i >= 0; i--) {
            c = e->running[i];
            if (c != s && c->chunk == 0
                && (victim == NULL || (c->paused && !victim->paused)))
            {
                victim = c;
            }
        }
        if (victim == NULL || (!victim->paused && ranks_after(s, victim))) {
            return -1;
        }
        preempt(e, victim);
    }
    for (i = 0; i < need; i++) {
        s->blocks[s->n_blocks++] = infer_kvpool_alloc(e->pool);
    }
    return 0;
}

/* ---- the prefix cache ------------------------------------------------------ */

/*
 * A sequence (new, or preempted and back) takes the cached blocks of its
 * longest cached prefix in whole blocks, and computes from the first
 * position after them.  The cached part stops before the last token (its
 * logits are what the next token is drawn from) and before the first
 * position whose logits or logprobs the request wants; so every shared
 * block lies strictly before the positions the sequence writes.
 */
static void
attach_prefix(infer_engine_t *e, infer_seq_t *s)
{
    int       bs = e->block_size, limit, p, i;
    uint64_t  name = 0, prev;
    int32_t   b;

    limit = s->n_tokens - 1;
    for (p = 0; p < limit; p++) {
        if (infer_outputs_want_row(&s->outputs, p)) {
            limit = p;
        }
    }
    limit /= bs;
    for (i = 0; i < limit; i++) {
        prev = name;
        name = infer_kvpool_hash(prev, s->tokens + (size_t) i * bs, bs);
        b = infer_kvpool_lookup(e->pool, name, prev,
                                s->tokens + (size_t) i * bs);
        if (b < 0) {
            break;
        }
        s->blocks[s->n_blocks++] = b;
        s->last_name = name;
    }
    s->n_named = s->n_blocks;
    s->n_computed = s->n_blocks * bs;
    e->counters.prefix_queries += s->n_tokens;
    e->counters.prefix_hits += s->n_computed;
    if (!s->admitted) {
        s->cached_tokens = s->n_computed;
    }
}

/* Names the blocks s has filled, for later sequences to find. */
static void
publish_blocks(infer_engine_t *e, infer_seq_t *s)
{
    int       bs = e->block_size;
    uint64_t  name;
    int32_t  *t;

    while ((s->n_named + 1) * bs <= s->n_computed) {
        t = s->tokens + (size_t) s->n_named * bs;
        name = infer_kvpool_hash(s->last_name, t, bs);
        infer_kvpool_publish(e->pool, s->blocks[s->n_named], name,
                             s->last_name, t);
        s->last_name = name;
        s->n_named++;
    }
}

/* ---- finishing ------------------------------------------------------------ */

static void
finish(infer_engine_t *e, infer_seq_t *s, infer_finish_t why,
    const char *text, size_t len, int running)
{
    emit_final(e, s, why == INFER_FINISH_ERROR ? INFER_EVENT_ERROR
                                               : INFER_EVENT_DONE,
               why, text, len);
    release_blocks(e, s);
    if (running) {
        remove_running(e, s);
    }
    infer_seq_free(s);
}

static int
is_cancelled(const infer_control_t *ctl, int n, uint64_t id)
{
    int i;

    for (i = 0; i < n; i++) {
        if (ctl[i].id == id && ctl[i].op == INFER_CTL_CANCEL) {
            return 1;
        }
    }
    return 0;
}

/* Why a sequence must end now (cancelled, past its deadline), or NONE. */
static infer_finish_t
reap_reason(const infer_seq_t *s, const infer_control_t *ctl, int n_ctl,
    int64_t now)
{
    if (is_cancelled(ctl, n_ctl, s->id)) {
        return INFER_FINISH_CANCELLED;
    }
    if (s->deadline_ms && now >= s->deadline_ms) {
        return INFER_FINISH_DEADLINE;
    }
    return INFER_FINISH_NONE;
}

/* Applies cancels and deadlines to running and waiting sequences. */
static void
reap(infer_engine_t *e, const infer_control_t *ctl, int n_ctl)
{
    int64_t         now = infer_now_ms();
    infer_seq_t   **pp, *s;
    infer_finish_t  why;
    int             i, removed = 0;

    for (i = e->n_running - 1; i >= 0; i--) {
        s = e->running[i];
        why = reap_reason(s, ctl, n_ctl, now);
        if (why != INFER_FINISH_NONE) {
            finish(e, s, why, NULL, 0, 1);
        }
    }
    for (pp = &e->waiting; *pp != NULL; ) {
        s = *pp;
        why = reap_reason(s, ctl, n_ctl, now);
        if (why != INFER_FINISH_NONE) {
            *pp = s->next;
            removed++;
            finish(e, s, why, NULL, 0, 0);
        } else {
            pp = &s->next;
        }
    }
    if (removed) {
        pthread_mutex_lock(&e->mu);
        e->n_pending -= removed;
        pthread_mutex_unlock(&e->mu);
    }
}

static infer_seq_t *
find_seq(infer_engine_t *e, uint64_t id)
{
    infer_seq_t *s;
    int          i;

    for (i = 0; i < e->n_running; i++) {
        if (e->running[i]->id == id) {
            return e->running[i];
        }
    }
    for (s = e->waiting; s != NULL; s = s->next) {
        if (s->id == id) {
            return s;
        }
    }
    return NULL;
}

/* Pauses and resumes, in the order they were asked for; a request that
 * has ended meanwhile is not found and needs nothing. */
static void
apply_pauses(infer_engine_t *e, const infer_control_t *ctl, int n_ctl)
{
    infer_seq_t *s;
    int          i;

    for (i = 0; i < n_ctl; i++) {
        if (ctl[i].op == INFER_CTL_CANCEL) {
            continue;
        }
        s = find_seq(e, ctl[i].id);
        if (s != NULL) {
            s->paused = ctl[i].op == INFER_CTL_PAUSE;
        }
    }
}

/* ---- text and stop conditions -------------------------------------------- */

static int
held_append(infer_seq_t *s, const char *p, size_t n)
{
    if (s->held_len + n + 1 > s->held_cap) {
        size_t cap = (s->held_len + n + 1) * 2;
        char  *h = realloc(s->held, cap);

        if (h == NULL) {
            return -1;
        }
        s->held = h;
        s->held_cap = cap;
    }
    memcpy(s->held + s->held_len, p, n);
    s->held_len += n;
    s->held[s->held_len] = '\0';
    return 0;
}

/* Earliest occurrence of any stop string in the held text, or -1. */
static long
stop_match(const infer_seq_t *s)
{
    long  best = -1;
    int   i;

    for (i = 0; i < s->n_stop; i++) {
        const char *m = memmem(s->held, s->held_len, s->stop[i],
                               strlen(s->stop[i]));
        if (m != NULL && (best < 0 || m - s->held < best)) {
            best = m - s->held;
        }
    }
    return best;
}

/* Bytes at the end of the held text that could still begin a stop string. */
static size_t
stop_prefix_tail(const infer_seq_t *s)
{
    size_t k, longest = 0;
    int    i;

    for (i = 0; i < s->n_stop; i++) {
        size_t len = strlen(s->stop[i]);

        for (k = len - 1 < s->held_len ? len - 1 : s->held_len;
             k > longest; k--)
        {
            if (memcmp(s->held + s->held_len - k, s->stop[i], k) == 0) {
                longest = k;
                break;
            }
        }
    }
    return longest;
}

static int
emit_held(infer_engine_t *e, infer_seq_t *s, size_t n)
{
    if (emit_token(e, s, s->held, n) != 0) {
        return -1;
    }
    memmove(s->held, s->held + n, s->held_len - n + 1);
    s->held_len -= n;
    return 0;
}

/* An event with only the outputs gathered this step: the rows of a
 * prompt chunk, the logprob of a token whose text is still held back. */
static int
emit_outputs(infer_engine_t *e, infer_seq_t *s)
{
    infer_event_node_t *n;

    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return -1;
    }
    event_init(n, INFER_EVENT_TOKEN, s, INFER_FINISH_NONE);
    step_append(e, n);
    return 0;
}

static int
is_stop_token(const infer_engine_t *e, const infer_seq_t *s, int32_t t)
{
    const infer_model_config_t *c = &e->model->cfg;
    int                         i;

    for (i = 0; i < s->n_stop_ids; i++) {
        if (s->stop_ids[i] == t) {
            return 1;
        }
    }
    if (!s->ignore_eos) {
        for (i = 0; i < c->n_eos; i++) {
            if (c->eos_token_ids[i] == t) {
                return 1;
            }
        }
    }
    return 0;
}

/* Appends a sampled token; emits its text; finishes the sequence if due
 * (then 1: s is gone). */
static int
accept_token(infer_engine_t *e, infer_seq_t *s, int32_t token)
{
    size_t n;
    long   at;

    s->tokens[s->n_tokens++] = token;
    s->n_generated++;

    if (is_stop_token(e, s, token)) {
        n = infer_detok_flush(&s->detok, e->text, e->text_cap);
        held_append(s, e->text, n);
        finish(e, s, INFER_FINISH_STOP, s->held, s->held_len, 1);
        return 1;
    }

    n = infer_detok_push(&s->detok, token, e->text, e->text_cap);
    if (held_append(s, e->text, n) != 0) {
        finish(e, s, INFER_FINISH_ERROR, "out of memory", 13, 1);
        return 1;
    }

    if (s->n_stop > 0 && (at = stop_match(s)) >= 0) {
        finish(e, s, INFER_FINISH_STOP, s->held, (size_t) at, 1);
        return 1;
    }

    if (s->n_generated >= s->max_tokens) {
        n = infer_detok_flush(&s->detok, e->text, e->text_cap);
        held_append(s, e->text, n);
        finish(e, s, INFER_FINISH_LENGTH, s->held, s->held_len, 1);
        return 1;
    }

    n = s->held_len - stop_prefix_tail(s);
    if (n > 0 && emit_held(e, s, n) != 0) {
        finish(e, s, INFER_FINISH_ERROR, "out of memory", 13, 1);
        return 1;
    }
    return 0;
}

/* Before min_tokens, the tokens that would end the sequence are out. */
static void
mask_ends(const infer_engine_t *e, const infer_seq_t *s, float *row)
{
    const infer_model_config_t *c = &e->model->cfg;
    int                         i;

    for (i = 0; i < s->n_stop_ids; i++) {
        row[s->stop_ids[i]] = -INFINITY;
    }
    for (i = 0; !s->ignore_eos && i < c->n_eos; i++) {
        if (c->eos_token_ids[i] >= 0 && c->eos_token_ids[i] < e->vocab) {
            row[c->eos_token_ids[i]] = -INFINITY;
        }
    }
}

/* The next token from the model's row, after the request's penalties. */
static int32_t
draw(infer_engine_t *e, infer_seq_t *s, const float *row)
{
    int  early = s->n_generated < s->min_tokens;

    if (early || infer_penalties_active(&s->penalties)) {
        memcpy(e->work, row, (size_t) e->vocab * sizeof(float));
        infer_apply_penalties(e->work, e->vocab, &s->penalties, s->tokens,
                              s->n_prompt, s->tokens + s->n_prompt,
                              s->n_generated, e->counts);
        if (early) {
            mask_ends(e, s, e->work);
        }
        row = e->work;
    }
    s->sampling.step = s->n_generated;
    return infer_sample(row, e->vocab, &s->sampling, e->sample_scratch);
}

/* ---- one step -------------------------------------------------------------- */

/* Waiting sequences take free running slots in rank order; a paused one
 * keeps its place in line without taking a slot.  The running ones stay
 * in rank order too: the step's budget goes to them in that order. */
static void
admit(infer_engine_t *e)
{
    infer_seq_t **pp, *s;
    int           admitted = 0, i;

    for (pp = &e->waiting; *pp != NULL && e->n_running < e->max_seqs; ) {
        s = *pp;
        if (s->paused) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        s->next = NULL;
        s->chunk = 0;
        if (s->queue_us < 0) {
            s->queue_us = now_us() - s->submit_us;
        }
        if (e->prefix_cache) {
            attach_prefix(e, s);
        }
        s->admitted = 1;
        for (i = e->n_running; i > 0 && ranks_after(e->running[i - 1], s);
             i--)
        {
            e->running[i] = e->running[i - 1];
        }
        e->running[i] = s;
        e->n_running++;
        admitted++;
    }
    if (admitted) {
        pthread_mutex_lock(&e->mu);
        e->n_pending -= admitted;
        pthread_mutex_unlock(&e->mu);
    }
}

/*
 * Chooses this step's tokens: decode tokens first (one per sequence), then
 * prefill chunks, oldest sequences first, within the token budget.
 */
/* Position p of s needs a logits row: for its outputs, or to draw the
 * next token from. */
static int
needs_row(const infer_seq_t *s, int p)
{
    return infer_outputs_want_row(&s->outputs, p)
           || (p == s->n_tokens - 1 && s->max_tokens > 0);
}

/* The most of s's next `chunk` positions whose rows fit in `left`. */
static int
fit_rows(const infer_seq_t *s, int chunk, int left, int *rows)
{
    int  k, n = 0, need;

    for (k = 0; k < chunk; k++) {
        need = needs_row(s, s->n_computed + k);
        if (n + need > left) {
            break;
        }
        n += need;
    }
    *rows = n;
    return k;
}

/*
 * Chooses this step's tokens: decode tokens first (one per sequence), then
 * prefill chunks, oldest sequences first, within the token budget and the
 * step's logits rows (a request that asked for every prompt position's
 * logits takes a row per token).
 */
static int
plan_step(infer_engine_t *e)
{
    int budget = e->max_batch_tokens, rows = 0, pass, i, n_seqs = 0;

    for (i = 0; i < e->n_running; i++) {
        e->running[i]->chunk = 0;
    }
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < e->n_running && budget > 0; i++) {
            infer_seq_t *s = e->running[i];
            int          need = s->n_tokens - s->n_computed;
            int          chunk, r;

            if (s->paused || s->chunk > 0 || (pass == 0) != (need == 1)) {
                continue;
            }
            chunk = need < budget ? need : budget;
            chunk = fit_rows(s, chunk, e->max_rows - rows, &r);
            if (chunk == 0) {
                continue;
            }
            if (reserve_blocks(e, s, s->n_computed + chunk) != 0) {
                /* nobody left to preempt: s waits for blocks to free up */
                preempt(e, s);
                i--;
                continue;
            }
            s->chunk = chunk;
            budget -= chunk;
            rows += r;
            e->step_seqs[n_seqs++] = s;
        }
    }
    return n_seqs;
}

static int
run_step(infer_engine_t *e, int n_seqs, char *err, size_t errlen)
{
    infer_batch_t b;
    int           i, j, p, n = 0, n_logits = 0;

    for (i = 0; i < n_seqs; i++) {
        infer_seq_t *s = e->step_seqs[i];

        s->row0 = n_logits;
        s->last_step = e->counters.steps + 1;
        if (s->first_step == 0) {
            s->first_step = s->last_step;
        }
        for (j = 0; j < s->chunk; j++) {
            p = s->n_computed + j;
            e->b_tokens[n] = s->tokens[p];
            e->b_pos[n] = p;
            e->b_seq[n] = i;
            if (needs_row(s, p)) {
                e->b_logit[n_logits] = n;
                e->b_logit_pos[n_logits] = p;
                n_logits++;
            }
            n++;
        }
        s->n_rows = n_logits - s->row0;
        e->b_ctx[i] = s->n_computed + s->chunk;
        if (s->n_computed < s->n_tokens - 1) {
            e->counters.prompt_tokens += s->chunk;
        }
        memcpy(e->b_table + (size_t) i * e->max_blocks, s->blocks,
               s->n_blocks * sizeof(int32_t));
    }

    memset(&b, 0, sizeof(b));
    b.n_tokens = n;
    b.tokens = e->b_tokens;
    b.positions = e->b_pos;
    b.seq_of_token = e->b_seq;
    b.n_seqs = n_seqs;
    b.ctx_len = e->b_ctx;
    b.block_table = e->b_table;
    b.max_blocks = e->max_blocks;
    b.n_logits = n_logits;
    b.logit_tokens = e->b_logit;

    return e->backend->ops->forward(e->backend, &b, e->logits, err, errlen);
}

/*
 * One sequence after the forward pass: its rows go to its outputs (each
 * with the logprob of the token that follows it), then the last row draws
 * the next token, unless the prompt is still being computed or the request
 * only scores it.
 */
static void
seq_done(infer_engine_t *e, infer_seq_t *s)
{
    const float *row;
    int          r, p, draws;
    int32_t      next;

    s->n_computed += s->chunk;
    s->chunk = 0;
    if (e->prefix_cache) {
        publish_blocks(e, s);
    }
    draws = s->n_computed == s->n_tokens && s->max_tokens > 0;

    for (r = 0; r < s->n_rows - draws; r++) {
        row = e->logits + (size_t) (s->row0 + r) * e->vocab;
        p = e->b_logit_pos[s->row0 + r];
        next = p + 1 < s->n_tokens ? s->tokens[p + 1] : -1;
        if (infer_outputs_add(&s->outputs, p, row, next) != 0) {
            goto nomem;
        }
    }

    if (s->n_computed < s->n_tokens) {
        /* a prompt chunk: only outputs to tell */
        if (infer_outputs_pending(&s->outputs) && emit_outputs(e, s) != 0) {
            goto nomem;
        }
        return;
    }

    if (!draws) {
        finish(e, s, INFER_FINISH_LENGTH, NULL, 0, 1);
        return;
    }

    row = e->logits + (size_t) (s->row0 + s->n_rows - 1) * e->vocab;
    next = draw(e, s, row);
    if (infer_outputs_add(&s->outputs, s->n_tokens - 1, row, next) != 0) {
        goto nomem;
    }
    e->counters.generated_tokens++;
    if (accept_token(e, s, next) == 0 && infer_outputs_pending(&s->outputs)
        && emit_outputs(e, s) != 0)
    {
        goto nomem;
    }
    return;

nomem:
    finish(e, s, INFER_FINISH_ERROR, "out of memory", 13, 1);
}

static void
sample_step(infer_engine_t *e, int n_seqs)
{
    int i;

    for (i = 0; i < n_seqs; i++) {
        seq_done(e, e->step_seqs[i]);
    }
}

static void
publish_stats(infer_engine_t *e, int n_seqs)
{
    e->counters.steps += n_seqs > 0;
    e->counters.n_blocks = e->n_blocks;
    e->counters.free_blocks = infer_kvpool_available(e->pool);
    e->counters.cached_blocks = infer_kvpool_cached(e->pool);
    e->counters.running = e->n_running;
    pthread_mutex_lock(&e->mu);
    e->counters.waiting = e->n_pending;
    e->stats = e->counters;
    pthread_mutex_unlock(&e->mu);
}

void
infer_engine_stats(infer_engine_t *e, infer_stats_t *st)
{
    pthread_mutex_lock(&e->mu);
    *st = e->stats;
    pthread_mutex_unlock(&e->mu);
}

static void
describe_bytes(char *buf, size_t len, size_t bytes)
{
    if (bytes >= (size_t) 1 << 30) {
        snprintf(buf, len, "%.2f GiB", (double) bytes / (1 << 30));
    } else if (bytes >= (size_t) 1 << 20) {
        snprintf(buf, len, "%.2f MiB", (double) bytes / (1 << 20));
    } else {
        snprintf(buf, len, "%.1f KiB", (double) bytes / (1 << 10));
    }
}

void
infer_engine_describe(infer_engine_t *e, char *buf, size_t len)
{
    infer_stats_t  st;
    char           w[32], kv[32], block[32];

    infer_engine_stats(e, &st);
    if (st.weight_bytes > 0) {
        describe_bytes(w, sizeof(w), st.weight_bytes);
    } else {
        snprintf(w, sizeof(w), "?");
    }
    describe_bytes(kv, sizeof(kv), st.kv_block_bytes * st.n_blocks);
    describe_bytes(block, sizeof(block), st.kv_block_bytes);
    snprintf(buf, len, "%s %s, weights %s, %d thread%s x tp=%d, KV cache "
             "%s in %d blocks of %d tokens (%s each)%s%s", st.backend,
             st.dtype, w, st.threads, st.threads == 1 ? "" : "s", st.tp, kv,
             st.n_blocks, e->block_size, block, st.kernels[0] ? ", " : "",
             st.kernels);
}

/*
 * A failed forward pass leaves the backend in an unknown state (a CUDA
 * error is sticky: every later call fails too), so the engine stops: every
 * request it holds ends with the reason, later submits are refused, and
 * infer_engine_alive() turns 0 with the reason in infer_engine_error().
 */
static void
fail_engine(infer_engine_t *e, const char *why)
{
    infer_seq_t  *s, *next, *submitted;
    size_t        len = strlen(why);

    pthread_mutex_lock(&e->mu);
    snprintf(e->error, sizeof(e->error), "%s", why);
    e->alive = 0;
    submitted = e->submitted_head;
    e->submitted_head = e->submitted_tail = NULL;
    e->n_pending = 0;
    pthread_mutex_unlock(&e->mu);

    while (e->n_running > 0) {
        finish(e, e->running[e->n_running - 1], INFER_FINISH_ERROR, why,
               len, 1);
    }
    for (s = e->waiting; s != NULL; s = next) {
        next = s->next;
        finish(e, s, INFER_FINISH_ERROR, why, len, 0);
    }
    e->waiting = NULL;
    for (s = submitted; s != NULL; s = next) {
        next = s->next;
        finish(e, s, INFER_FINISH_ERROR, why, len, 0);
    }
    publish_stats(e, 0);
    publish_events(e);
}

/*
 * 1 when a running or waiting sequence can make progress; else *first is
 * the earliest deadline among the (paused) sequences held, 0 if none, for
 * the scheduler to wake at.
 */
static void
earliest_deadline(const infer_seq_t *s, int64_t *first)
{
    if (s->deadline_ms && (*first == 0 || s->deadline_ms < *first)) {
        *first = s->deadline_ms;
    }
}

static int
runnable(const infer_engine_t *e, int64_t *first)
{
    const infer_seq_t *s;
    int                i;

    *first = 0;
    for (i = 0; i < e->n_running; i++) {
        if (!e->running[i]->paused) {
            return 1;
        }
        earliest_deadline(e->running[i], first);
    }
    for (s = e->waiting; s != NULL; s = s->next) {
        if (!s->paused) {
            return 1;
        }
        earliest_deadline(s, first);
    }
    return 0;
}

/* Waits on e->wake (e->mu held) until the monotonic time `at`. */
static void
wait_until(infer_engine_t *e, int64_t at)
{
    struct timespec  ts;
    int64_t          ms = at - infer_now_ms();

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&e->wake, &e->mu, &ts);
}

static void *
scheduler_thread(void *arg)
{
    infer_engine_t  *e = arg;
    infer_control_t *ctl = NULL;
    int              n_ctl, n_seqs, i, tokens;
    int64_t          first, t0;
    char             err[256];

    for ( ;; ) {
        pthread_mutex_lock(&e->mu);
        /* with nothing to run (or only paused sequences) sleep, but not
         * past the nearest deadline */
        while (!e->stop && e->submitted_head == NULL && e->n_controls == 0
               && !runnable(e, &first))
        {
            if (first == 0) {
                pthread_cond_wait(&e->wake, &e->mu);
            } else if (first <= infer_now_ms()) {
                break;
            } else {
                wait_until(e, first);
            }
        }
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        /* submitted requests join the waiting line at their rank */
        while (e->submitted_head != NULL) {
            infer_seq_t *s = e->submitted_head;

            e->submitted_head = s->next;
            wait_in_line(e, s);
        }
        e->submitted_tail = NULL;
        free(ctl);
        ctl = e->controls;
        n_ctl = e->n_controls;
        e->controls = NULL;
        e->n_controls = e->cap_controls = 0;
        pthread_mutex_unlock(&e->mu);

        reap(e, ctl, n_ctl);
        apply_pauses(e, ctl, n_ctl);
        admit(e);
        n_seqs = plan_step(e);
        t0 = now_us();
        for (i = 0, tokens = 0; i < n_seqs; i++) {
            tokens += e->step_seqs[i]->chunk;
        }
        if (n_seqs > 0 && run_step(e, n_seqs, err, sizeof(err)) != 0) {
            fail_engine(e, err);
            break;
        }
        if (n_seqs > 0) {
            sample_step(e, n_seqs);
            hist_add(&e->counters.step_us, infer_step_us_bounds,
                     now_us() - t0);
            hist_add(&e->counters.step_tokens, infer_step_tokens_bounds,
                     tokens);
        }
        publish_stats(e, n_seqs);
        publish_events(e);
    }

    free(ctl);
    pthread_mutex_lock(&e->mu);
    e->alive = 0;
    pthread_mutex_unlock(&e->mu);
    /* wake the caller's loop even with no request left to tell */
    infer_notify(e);
    return NULL;
}

/* ---- requests ------------------------------------------------------------- */

static void
infer_seq_free(infer_seq_t *s)
{
    int i;

    if (s == NULL) {
        return;
    }
    for (i = 0; i < s->n_stop; i++) {
        free(s->stop[i]);
    }
    free(s->stop);
    free(s->stop_ids);
    free(s->tokens);
    free(s->blocks);
    free(s->held);
    free(s->final);
    free(s->bias_ids);
    free(s->bias);
    infer_outputs_free(&s->outputs);
    free(s);
}

static int
validate(const infer_engine_t *e, const infer_request_t *r)
{
    int i;

    if (r->prompt == NULL || r->n_prompt < 1
        || r->max_tokens < INFER_TO_CONTEXT_END || r->min_tokens < 0
        || (r->max_tokens >= 0 && r->min_tokens > r->max_tokens)
        || !(r->temperature >= 0.0f) || r->temperature > 1e6f
        || !(r->top_p > 0.0f && r->top_p <= 1.0f) || r->top_k < 0
        || r->n_stop < 0 || r->n_stop > INFER_MAX_STOP
        || r->n_stop_ids < 0 || r->n_stop_ids > INFER_MAX_STOP_IDS
        || !isfinite(r->presence_penalty) || !isfinite(r->frequency_penalty)
        || !(r->repetition_penalty >= 0.0f)
        || !isfinite(r->repetition_penalty)
        || r->n_bias < 0 || r->n_bias > e->vocab
        || (r->n_bias > 0 && (r->bias_ids == NULL || r->bias == NULL))
        || r->prompt_logits < INFER_LOGITS_NONE
        || r->prompt_logits > INFER_LOGITS_PROMPT
        || r->top_logprobs < 0 || r->top_logprobs > INFER_MAX_TOP_LOGPROBS
        || r->priority < -INFER_PRIORITY_MAX
        || r->priority > INFER_PRIORITY_MAX)
    {
        return INFER_EINVAL;
    }
    for (i = 0; i < r->n_prompt; i++) {
        if (r->prompt[i] < 0 || r->prompt[i] >= e->vocab) {
            return INFER_EINVAL;
        }
    }
    for (i = 0; i < r->n_stop_ids; i++) {
        if (r->stop_ids[i] < 0 || r->stop_ids[i] >= e->vocab) {
            return INFER_EINVAL;
        }
    }
    for (i = 0; i < r->n_bias; i++) {
        if (r->bias_ids[i] < 0 || r->bias_ids[i] >= e->vocab
            || !isfinite(r->bias[i]))
        {
            return INFER_EINVAL;
        }
    }
    for (i = 0; i < r->n_stop; i++) {
        if (r->stop[i] == NULL || r->stop[i][0] == '\0'
            || strlen(r->stop[i]) > INFER_MAX_STOP_LEN)
        {
            return INFER_EINVAL;
        }
    }
    /* what was asked for must fit: clamping would answer a different
     * request than the one sent; a prompt that is only scored may take
     * every position, one to be continued leaves room for a token */
    if (r->n_prompt > e->context
        || (r->n_prompt == e->context && r->max_tokens != 0)
        || (long) r->n_prompt + r->max_tokens > e->context)
    {
        return INFER_ECONTEXT;
    }
    if (infer_engine_output_bytes((infer_engine_t *) e, r) > e->max_output) {
        return INFER_EOUTPUT;
    }
    return INFER_OK;
}

size_t
infer_engine_output_bytes(infer_engine_t *e, const infer_request_t *r)
{
    int  n_gen;

    n_gen = r->max_tokens >= 0 ? r->max_tokens : e->context - r->n_prompt;
    return infer_outputs_bytes(r, n_gen > 0 ? n_gen : 0, e->vocab);
}

size_t
infer_engine_max_output(infer_engine_t *e)
{
    return e->max_output;
}

static infer_seq_t *
infer_seq_create(infer_engine_t *e, const infer_request_t *r)
{
    infer_seq_t *s = calloc(1, sizeof(*s));
    int          i;

    if (s == NULL) {
        return NULL;
    }
    s->user = r->user;
    s->n_prompt = r->n_prompt;
    s->max_tokens = r->max_tokens >= 0 ? r->max_tokens
                                       : e->context - r->n_prompt;
    s->min_tokens = r->min_tokens;
    s->tokens = malloc((size_t) (r->n_prompt + s->max_tokens + 1)
                       * sizeof(int32_t));
    s->blocks = malloc((size_t) e->max_blocks * sizeof(int32_t));
    s->stop_ids = malloc((r->n_stop_ids + 1) * sizeof(int32_t));
    s->stop = calloc(r->n_stop + 1, sizeof(char *));
    s->final = calloc(1, sizeof(*s->final));
    s->bias_ids = malloc((r->n_bias + 1) * sizeof(int32_t));
    s->bias = malloc((r->n_bias + 1) * sizeof(float));
    if (!s->tokens || !s->blocks || !s->stop_ids || !s->stop || !s->final
        || !s->bias_ids || !s->bias)
    {
        infer_seq_free(s);
        return NULL;
    }
    if (r->n_bias > 0) {
        memcpy(s->bias_ids, r->bias_ids, r->n_bias * sizeof(int32_t));
        memcpy(s->bias, r->bias, r->n_bias * sizeof(float));
    }
    s->penalties.presence = r->presence_penalty;
    s->penalties.frequency = r->frequency_penalty;
    s->penalties.repetition = r->repetition_penalty > 0.0f
                              ? r->repetition_penalty : 1.0f;
    s->penalties.bias_ids = s->bias_ids;
    s->penalties.bias = s->bias;
    s->penalties.n_bias = r->n_bias;
    infer_outputs_init(&s->outputs, r, e->vocab);
    memcpy(s->tokens, r->prompt, r->n_prompt * sizeof(int32_t));
    s->n_tokens = r->n_prompt;
    if (r->n_stop_ids > 0) {
        memcpy(s->stop_ids, r->stop_ids, r->n_stop_ids * sizeof(int32_t));
    }
    s->n_stop_ids = r->n_stop_ids;
    for (i = 0; i < r->n_stop; i++) {
        s->stop[i] = strdup(r->stop[i]);
        if (s->stop[i] == NULL) {
            infer_seq_free(s);
            return NULL;
        }
        s->n_stop++;
    }
    s->ignore_eos = r->ignore_eos;
    s->deadline_ms = r->deadline_ms;
    s->submit_us = now_us();
    s->queue_us = -1;
    s->sampling.temperature = r->temperature;
    s->sampling.top_k = r->top_k;
    s->sampling.top_p = r->top_p;
    /* text right after <s> (or after nothing) drops the leading space */
    infer_detok_init(&s->detok, e->tok,
                     r->n_prompt == 1
                     && r->prompt[0] == e->model->cfg.bos_token_id);
    s->detok.keep_special = r->keep_special;
    return s;
}

int
infer_engine_submit(infer_engine_t *e, const infer_request_t *r,
    uint64_t *id)
{
    infer_seq_t *s;
    int          rc;

    rc = validate(e, r);
    if (rc != INFER_OK) {
        return rc;
    }
    s = infer_seq_create(e, r);
    if (s == NULL) {
        return INFER_ENOMEM;
    }

    pthread_mutex_lock(&e->mu);
    if (e->stop || (e->started && !e->alive)) {
        rc = INFER_ESHUTDOWN;
    } else if (e->n_pending >= e->max_queue + e->max_seqs
                                - e->stats.running)
    {
        /* a request the thread has not admitted yet may be headed for a
         * free running slot: only what exceeds those slots is queued */
        rc = INFER_EQUEUE_FULL;
    } else {
        s->id = ++e->next_id;
        s->rank = (int64_t) r->priority * e->aging_ms + infer_now_ms();
        s->sampling.seed = r->has_seed
                           ? r->seed
                           : infer_rng_u64((uint64_t) infer_now_ms(), s->id);
        if (e->submitted_tail != NULL) {
            e->submitted_tail->next = s;
        } else {
            e->submitted_head = s;
        }
        e->submitted_tail = s;
        e->n_pending++;
        *id = s->id;
        pthread_cond_signal(&e->wake);
    }
    pthread_mutex_unlock(&e->mu);

    if (rc != INFER_OK) {
        infer_seq_free(s);
    }
    return rc;
}

static void
push_control(infer_engine_t *e, uint64_t id, infer_control_op_t op)
{
    infer_control_t *c;
    int              cap;

    pthread_mutex_lock(&e->mu);
    if (e->n_controls == e->cap_controls) {
        cap = e->cap_controls ? e->cap_controls * 2 : 16;
        c = realloc(e->controls, cap * sizeof(infer_control_t));
        if (c == NULL) {
            pthread_mutex_unlock(&e->mu);
            return;
        }
        e->controls = c;
        e->cap_controls = cap;
    }
    e->controls[e->n_controls].id = id;
    e->controls[e->n_controls].op = op;
    e->n_controls++;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
}

void
infer_engine_cancel(infer_engine_t *e, uint64_t id)
{
    push_control(e, id, INFER_CTL_CANCEL);
}

void
infer_engine_pause(infer_engine_t *e, uint64_t id, int paused)
{
    push_control(e, id, paused ? INFER_CTL_PAUSE : INFER_CTL_RESUME);
}

/* ---- life cycle ------------------------------------------------------------ */

/* The dtypes a backend holds weights in: cpu f32, bf16 or int8, cuda
 * f16 or int8. */
static int
check_dtype(const char *dtype, const char *backend, char *err,
    size_t errlen)
{
    int cuda = backend != NULL && strcmp(backend, "cuda") == 0;

    if (dtype == NULL || strcmp(dtype, "auto") == 0) {
        return 0;
    }
    if (strcmp(dtype, "int8") == 0
        || (cuda ? strcmp(dtype, "f16") == 0
                 : strcmp(dtype, "f32") == 0 || strcmp(dtype, "bf16") == 0))
    {
        return 0;
    }
    snprintf(err, errlen, "dtype=%s: backend=%s holds weights as %s", dtype,
             cuda ? "cuda" : "cpu",
             cuda ? "f16 or int8" : "f32, bf16 or int8");
    return -1;
}

int
infer_engine_check(const infer_engine_config_t *cfg, char *err,
    size_t errlen)
{
    int                         tp, block, rc;
    size_t                      kv, per_block;
    infer_model_t              *m;
    infer_tokenizer_t          *tok;
    const infer_backend_ops_t  *ops;
    const infer_model_config_t *c;

    if (cfg->threads > INFER_MAX_THREADS) {
        snprintf(err, errlen, "threads=%d is more than %d", cfg->threads,
                 INFER_MAX_THREADS);
        return INFER_EINVAL;
    }
    ops = infer_backend_find(cfg->backend, err, errlen);
    if (ops == NULL || check_dtype(cfg->dtype, cfg->backend, err, errlen)) {
        return INFER_EINVAL;
    }
    if (infer_model_open(cfg->model_dir, &m, err, errlen) != 0) {
        return INFER_ERROR;
    }
    if (infer_tokenizer_load(cfg->model_dir, &tok, err, errlen) != 0) {
        infer_model_close(m);
        return INFER_ERROR;
    }
    infer_tokenizer_free(tok);

    c = &m->cfg;
    tp = cfg->tp > 0 ? cfg->tp : 1;
    block = cfg->block_size > 0 ? cfg->block_size : 16;
    kv = cfg->kv_cache_bytes ? cfg->kv_cache_bytes : (size_t) 64 << 20;
    per_block = infer_backend_kv_block_bytes(ops, c, block);
    rc = INFER_OK;

    if (c->num_heads % tp != 0 || c->num_kv_heads % tp != 0) {
        snprintf(err, errlen, "tp=%d does not divide the model's %d "
                 "attention heads and %d key/value heads", tp,
                 c->num_heads, c->num_kv_heads);
        rc = INFER_EINVAL;
    } else if (kv < per_block) {
        snprintf(err, errlen, "kv_cache=%zu bytes holds no block of %d "
                 "tokens (one block needs %zu bytes with backend=%s)", kv,
                 block, per_block, ops->name);
        rc = INFER_EINVAL;
    }
    infer_model_close(m);
    return rc;
}

int
infer_engine_create(const infer_engine_config_t *cfg, infer_engine_t **out,
    char *err, size_t errlen)
{
    infer_engine_t        *e;
    infer_backend_params_t p;

    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return INFER_ENOMEM;
    }
    e->efd = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->ev_mu, NULL);
    pthread_cond_init(&e->wake, NULL);

    e->max_batch_tokens = cfg->max_batch_tokens > 0 ? cfg->max_batch_tokens
                                                    : 512;
    e->max_seqs = cfg->max_seqs > 0 ? cfg->max_seqs : 64;
    e->max_queue = cfg->max_queue > 0 ? cfg->max_queue : 256;
    e->block_size = cfg->block_size > 0 ? cfg->block_size : 16;
    e->prefix_cache = !cfg->no_prefix_cache;
    e->aging_ms = cfg->priority_aging_ms > 0
                  && cfg->priority_aging_ms <= INFER_MAX_AGING_MS
                  ? cfg->priority_aging_ms : 1000;
    e->max_output = cfg->max_output_bytes ? cfg->max_output_bytes
                                          : (size_t) 64 << 20;
    snprintf(e->backend_name, sizeof(e->backend_name), "%s",
             cfg->backend ? cfg->backend : "cpu");

    if (infer_model_open(cfg->model_dir, &e->model, err, errlen) != 0) {
        goto failed;
    }
    if (infer_tokenizer_load(cfg->model_dir, &e->tok, err, errlen) != 0) {
        goto failed;
    }
    e->vocab = e->model->cfg.vocab_size;
    /* dynamic NTK and longrope turn a key by frequencies of the whole
     * sequence's length: a block's keys depend on more than its prefix,
     * so a block computed for a shorter sequence is not what a longer one
     * would compute */
    if (infer_rope_depends_on_length(&e->model->cfg.rope)) {
        e->prefix_cache = 0;
    }

    memset(&p, 0, sizeof(p));
    if (check_dtype(cfg->dtype, cfg->backend, err, errlen) != 0) {
        goto failed;
    }
    p.dtype = cfg->dtype;
    p.threads = cfg->threads;
    p.tp = cfg->tp > 0 ? cfg->tp : 1;
    p.devices = cfg->devices;
    p.n_devices = cfg->n_devices;
    p.kv_cache_bytes = cfg->kv_cache_bytes ? cfg->kv_cache_bytes
                                           : (size_t) 64 << 20;
    p.block_size = e->block_size;
    p.max_batch_tokens = e->max_batch_tokens;
    p.max_seqs = e->max_seqs;
    if (infer_backend_create(e->backend_name, e->model, &p, &e->backend,
                             err, errlen) != 0)
    {
        goto failed;
    }
    e->n_blocks = p.n_blocks;
    snprintf(e->kernels, sizeof(e->kernels), "%s", p.kernels);
    e->counters.backend = e->backend->ops->name;
    e->counters.dtype = p.dtype_used != NULL ? p.dtype_used
                        : e->backend->ops->kv_elem_bytes == 2 ? "f16" : "f32";
    e->counters.threads = p.threads > 0 ? p.threads : 1;
    e->counters.tp = p.tp;
    e->counters.weight_bytes = p.weight_bytes;
    e->counters.kv_block_bytes = infer_backend_kv_block_bytes(
                                     e->backend->ops, &e->model->cfg,
                                     e->block_size);
    e->counters.kernels = e->kernels;
    e->counters.kernels_warning = p.kernels_warning;

    /* a sequence may use the whole pool but not more than the model's
     * positions */
    e->context = e->model->cfg.max_position;
    if ((long) e->n_blocks * e->block_size < e->context) {
        e->context = e->n_blocks * e->block_size;
    }
    e->max_blocks = blocks_for(e, e->context);

    e->pool = infer_kvpool_create(e->n_blocks, e->block_size,
                                  e->prefix_cache);
    e->running = calloc(e->max_seqs, sizeof(infer_seq_t *));
    e->step_seqs = calloc(e->max_seqs, sizeof(infer_seq_t *));
    e->b_tokens = malloc(e->max_batch_tokens * sizeof(int32_t));
    e->b_pos = malloc(e->max_batch_tokens * sizeof(int32_t));
    e->b_seq = malloc(e->max_batch_tokens * sizeof(int32_t));
    e->b_ctx = malloc(e->max_seqs * sizeof(int32_t));
    /* a row per sequence, and room for prompt chunks whose logits were
     * asked for (a larger prompt takes several steps) */
    e->max_rows = e->max_seqs > 64 ? e->max_seqs : 64;
    e->b_logit = malloc(e->max_rows * sizeof(int32_t));
    e->b_logit_pos = malloc(e->max_rows * sizeof(int32_t));
    e->b_table = calloc((size_t) e->max_seqs * e->max_blocks,
                        sizeof(int32_t));
    e->logits = malloc((size_t) e->max_rows * e->vocab * sizeof(float));
    e->work = malloc((size_t) e->vocab * sizeof(float));
    e->counts = calloc(e->vocab, sizeof(uint32_t));
    e->sample_scratch = malloc(infer_sample_scratch_bytes(e->vocab));
    e->text_cap = infer_tokenizer_max_token_bytes(e->tok) + 64;
    e->text = malloc(e->text_cap);
    e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!e->pool || !e->running || !e->step_seqs || !e->b_tokens
        || !e->b_pos || !e->b_seq || !e->b_ctx || !e->b_logit
        || !e->b_logit_pos || !e->b_table || !e->logits || !e->work
        || !e->counts || !e->sample_scratch || !e->text || e->efd < 0)
    {
        snprintf(err, errlen, "engine: out of memory or no eventfd");
        goto failed;
    }
    e->counters.n_blocks = e->counters.free_blocks = e->n_blocks;
    e->stats = e->counters;

    *out = e;
    return INFER_OK;

failed:
    infer_engine_destroy(e);
    return INFER_ERROR;
}

int
infer_engine_start(infer_engine_t *e, char *err, size_t errlen)
{
    e->alive = 1;
    if (pthread_create(&e->thread, NULL, scheduler_thread, e) != 0) {
        e->alive = 0;
        snprintf(err, errlen, "engine: cannot start the scheduler thread");
        return INFER_ERROR;
    }
    e->started = 1;
    return INFER_OK;
}

const char *
infer_engine_error(infer_engine_t *e)
{
    const char *why;

    pthread_mutex_lock(&e->mu);
    why = (!e->alive && e->error[0] != '\0') ? e->error : NULL;
    pthread_mutex_unlock(&e->mu);
    return why;
}

int
infer_engine_alive(infer_engine_t *e)
{
    int alive;

    pthread_mutex_lock(&e->mu);
    alive = e->alive && !e->stop;
    pthread_mutex_unlock(&e->mu);
    return alive;
}

static void
free_list(infer_seq_t *s)
{
    while (s != NULL) {
        infer_seq_t *next = s->next;

        infer_seq_free(s);
        s = next;
    }
}

void
infer_engine_destroy(infer_engine_t *e)
{
    infer_event_node_t *n;
    int                 i;

    if (e == NULL) {
        return;
    }
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = 1;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    for (i = 0; i < e->n_running; i++) {
        infer_seq_free(e->running[i]);
    }
    free_list(e->waiting);
    free_list(e->submitted_head);
    while ((n = e->ev_head) != NULL) {
        e->ev_head = n->next;
        infer_event_release(&n->ev);
        free(n);
    }
    while ((n = e->step_head) != NULL) {
        e->step_head = n->next;
        infer_event_release(&n->ev);
        free(n);
    }
    infer_backend_destroy(e->backend);
    infer_tokenizer_free(e->tok);
    infer_model_close(e->model);
    free(e->controls);
    infer_kvpool_destroy(e->pool);
    free(e->running);
    free(e->step_seqs);
    free(e->b_tokens);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_ctx);
    free(e->b_logit);
    free(e->b_logit_pos);
    free(e->b_table);
    free(e->logits);
    free(e->work);
    free(e->counts);
    free(e->sample_scratch);
    free(e->text);
    if (e->efd >= 0) {
        close(e->efd);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->ev_mu);
    pthread_cond_destroy(&e->wake);
    free(e);
}

const infer_tokenizer_t *
infer_engine_tokenizer(infer_engine_t *e)
{
    return e->tok;
}

int
infer_engine_context_length(infer_engine_t *e)
{
    return e->context;
}

int
infer_engine_vocab_size(infer_engine_t *e)
{
    return e->vocab;
}
