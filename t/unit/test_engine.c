/*
 * Engine end to end on the real stories260K model (fp32 CPU backend).
 *
 * Reference: ../shared/models/stories260K/expected_greedy_200.txt, the bytes
 * that greedy decoding from [<s>] must produce (llama2.c's own test).  Every
 * scheduling situation below (shared steps, chunked prefill, preemption,
 * tensor parallelism) must reproduce those bytes exactly: batching never
 * changes results.
 */
#include <libgen.h>
#include <poll.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "backend.h"
#include "hf_ref.h"
#include "infer.h"
#include "model.h"
#include "tap.h"

#define MAX_REQ 16

typedef struct {
    uint64_t        id;
    char            text[8192];
    size_t          len;
    int32_t         tokens[1024];
    int             n_tokens;
    int             done;
    infer_finish_t  finish;
    int             prompt_tokens;
    int             completion_tokens;
    int             cached_tokens;
    int64_t         queue_us;

    int             f16;            /* rows come as halves */
    int             vocab;
    float          *rows;           /* outputs gathered from the events */
    int             n_rows;
    int             rows_first;
    int             rows_broken;    /* not consecutive, or repeated */
    int             lp_first, n_lp, lp_top;
    int32_t         lp_ids[1024];
    float           lp[1024];
    int32_t         top_ids[1024 * 5];
    float           top_lp[1024 * 5];
} result_t;

static char   model_dir[1024];
static int    prefix_off;       /* engines made with prefix_cache=off */
static int    aging_ms;         /* their priority_aging_ms */
static char  *expected;
static size_t expected_len;

static infer_engine_t *
engine(int max_batch_tokens, int max_seqs, size_t kv_bytes, int tp,
    int max_queue, int start)
{
    infer_engine_config_t c;
    infer_engine_t       *e;
    char                  err[512];

    memset(&c, 0, sizeof(c));
    c.model_dir = model_dir;
    c.threads = 1;
    c.max_batch_tokens = max_batch_tokens;
    c.max_seqs = max_seqs;
    c.kv_cache_bytes = kv_bytes;
    c.tp = tp;
    c.max_queue = max_queue;
    c.no_prefix_cache = prefix_off;
    c.priority_aging_ms = aging_ms;
    if (infer_engine_create(&c, &e, err, sizeof(err)) != INFER_OK) {
        diag("engine: %s", err);
        return NULL;
    }
    if (start && infer_engine_start(e, err, sizeof(err)) != INFER_OK) {
        diag("start: %s", err);
        infer_engine_destroy(e);
        return NULL;
    }
    return e;
}

static infer_request_t
greedy(const int32_t *prompt, int n, int max_tokens)
{
    infer_request_t r;

    memset(&r, 0, sizeof(r));
    r.prompt = prompt;
    r.n_prompt = n;
    r.max_tokens = max_tokens;
    r.top_p = 1.0f;
    r.ignore_eos = 1;
    return r;
}

/* Rows and logprobs of an event; each must follow the previous ones. */
static void
take_outputs(result_t *r, const infer_event_t *ev)
{
    int  i, k;

    if (ev->n_rows > 0) {
        if (r->n_rows == 0) {
            r->rows_first = ev->rows_first;
        }
        r->rows_broken |= ev->rows_first != r->rows_first + r->n_rows;
        r->rows = realloc(r->rows, (size_t) (r->n_rows + ev->n_rows)
                                   * r->vocab * sizeof(float));
        for (i = 0; i < ev->n_rows * r->vocab; i++) {
            r->rows[(size_t) r->n_rows * r->vocab + i] =
                r->f16 ? infer_half_to_float(((uint16_t *) ev->rows)[i])
                       : ((float *) ev->rows)[i];
        }
        r->n_rows += ev->n_rows;
    }
    for (i = 0; i < ev->n_lp && r->n_lp < 1024; i++) {
        if (r->n_lp == 0) {
            r->lp_first = ev->lp_first;
        }
        r->rows_broken |= ev->lp_first + i != r->lp_first + r->n_lp;
        r->lp_top = ev->lp_top;
        r->lp_ids[r->n_lp] = ev->lp_ids[i];
        r->lp[r->n_lp] = ev->lp[i];
        for (k = 0; k < ev->lp_top && k < 5; k++) {
            r->top_ids[r->n_lp * 5 + k] = ev->lp_top_ids[i * ev->lp_top + k];
            r->top_lp[r->n_lp * 5 + k] = ev->lp_top_lp[i * ev->lp_top + k];
        }
        r->n_lp++;
    }
}

/* Adds an event to the result it belongs to; 1 when that request ended. */
static int
take(result_t *res, int n, const infer_event_t *ev)
{
    result_t *r = NULL;
    int       j;

    for (j = 0; j < n; j++) {
        if (res[j].id == ev->id) {
            r = &res[j];
        }
    }
    if (r == NULL) {
        return 0;
    }
    if (ev->text_len > 0 && r->len + ev->text_len < sizeof(r->text)) {
        memcpy(r->text + r->len, ev->text, ev->text_len);
        r->len += ev->text_len;
        r->text[r->len] = '\0';
    }
    for (j = 0; j < ev->n_tokens && r->n_tokens < 1024; j++) {
        r->tokens[r->n_tokens++] = ev->tokens[j];
    }
    take_outputs(r, ev);
    if (ev->type == INFER_EVENT_TOKEN) {
        return 0;
    }
    r->done = 1;
    r->finish = ev->finish;
    r->prompt_tokens = ev->prompt_tokens;
    r->completion_tokens = ev->completion_tokens;
    r->cached_tokens = ev->cached_tokens;
    r->queue_us = ev->queue_us;
    return 1;
}

/* Collects events until every listed request is done (or, with ms > 0,
 * for that long). */
static int
collect_for(infer_engine_t *e, result_t *res, int n, int ms)
{
    infer_event_t ev[32];
    struct pollfd pfd = { infer_engine_event_fd(e), POLLIN, 0 };
    int           open = n, k, i, idle = 0;
    int64_t       end = infer_now_ms() + ms;

    while (ms > 0 ? infer_now_ms() < end : (open > 0 && idle < 600)) {
        if (poll(&pfd, 1, 100) == 0) {
            idle++;
        }
        k = infer_engine_poll(e, ev, 32);
        for (i = 0; i < k; i++) {
            open -= take(res, n, &ev[i]);
            infer_event_release(&ev[i]);
        }
    }
    return open == 0 ? 0 : -1;
}

static int
collect(infer_engine_t *e, result_t *res, int n)
{
    return collect_for(e, res, n, 0);
}

static int
same_as_expected(const result_t *r, size_t n)
{
    return r->done && r->len == n && memcmp(r->text, expected, n) == 0;
}

static const int32_t bos[1] = { 1 };
/* "Once upon a time, there was a little girl named Lily." (model README) */
static const int32_t sentence[16] = {
    1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
    426
};

static void
test_greedy_200(void)
{
    infer_engine_t *e = engine(64, 8, 8 << 20, 1, 0, 1);
    infer_request_t r = greedy(bos, 1, 200);
    result_t        res;

    memset(&res, 0, sizeof(res));
    ok(e != NULL, "stories260K loads");
    if (e == NULL) {
        return;
    }
    is_int(infer_engine_submit(e, &r, &res.id), INFER_OK, "submit");
    ok(collect(e, &res, 1) == 0, "request completes");
    ok(same_as_expected(&res, expected_len),
       "greedy 200 tokens from <s> == expected_greedy_200.txt (%zu bytes)",
       expected_len);
    if (!same_as_expected(&res, expected_len)) {
        diag("got: %.*s", (int) res.len, res.text);
    }
    is_int(res.finish, INFER_FINISH_LENGTH, "finish reason length");
    is_int(res.completion_tokens, 200, "200 completion tokens");
    is_int(res.prompt_tokens, 1, "1 prompt token");
    infer_engine_destroy(e);
}

/*
 * The reference sequence shares every step with others of different
 * lengths, under a token budget small enough that their prompts are
 * chunked and mixed with its decode steps.
 */
static void
test_shared_steps(void)
{
    infer_engine_t *e = engine(24, 8, 8 << 20, 1, 0, 0);
    int32_t         longp[120];
    result_t        res[4];
    infer_request_t r;
    infer_stats_t   st;
    int             i, want, big;
    uint64_t        steps, tokens, us;

    if (e == NULL) {
        ok(0, "engine for shared steps");
        return;
    }
    for (i = 0; i < 120; i++) {
        longp[i] = sentence[i % 16];
    }
    memset(res, 0, sizeof(res));
    r = greedy(sentence, 16, 150);
    infer_engine_submit(e, &r, &res[0].id);
    r = greedy(bos, 1, 200);
    infer_engine_submit(e, &r, &res[1].id);
    r = greedy(longp, 120, 60);
    infer_engine_submit(e, &r, &res[2].id);
    r = greedy(sentence, 7, 90);
    infer_engine_submit(e, &r, &res[3].id);
    infer_engine_start(e, NULL, 0);

    ok(collect(e, res, 4) == 0, "four mixed requests complete");
    ok(same_as_expected(&res[1], expected_len),
       "reference text unchanged when sharing steps with 3 other sequences "
       "under a 24-token budget");
    is_int(res[2].completion_tokens, 60, "long-prompt request got 60 tokens");
    infer_engine_stats(e, &st);
    is_int(st.free_blocks, st.n_blocks, "every KV block back in the pool");

    /* the step histograms: every step once, every computed token once (a
     * request computes its prompt and all it generated but the last) */
    for (i = 0, steps = 0, us = 0, tokens = 0; i <= INFER_STEP_BOUNDS; i++) {
        steps += st.step_us.count[i];
        tokens += st.step_tokens.count[i];
    }
    is_int((int) steps, (int) st.steps, "a step duration for each of the %d "
           "steps", (int) st.steps);
    is_int((int) tokens, (int) st.steps, "a token count for each step");
    for (i = 0, want = 0; i < 4; i++) {
        want += res[i].prompt_tokens + res[i].completion_tokens - 1;
        us += res[i].queue_us >= 0;
    }
    is_int((int) st.step_tokens.sum, want, "the steps computed %d tokens",
           want);
    for (i = 0, big = 0; i < INFER_STEP_BOUNDS; i++) {
        big += i > 0 && infer_step_tokens_bounds[i - 1] >= 32
               ? (int) st.step_tokens.count[i] : 0;
    }
    ok(big == 0 && st.step_tokens.count[INFER_STEP_BOUNDS] == 0
       && st.step_us.sum > 0, "no step above 32 tokens (a 24-token "
       "budget); %.1f ms of steps", (double) st.step_us.sum / 1e3);
    is_int((int) us, 4, "each request's queue time is known");
    infer_engine_destroy(e);
}

/*
 * Continuing from the first 100 reference tokens as a prompt must produce
 * the reference's remaining 100 tokens, whether the prompt is prefilled in
 * chunks of 16 or in one step of 101 (two tiles of the CPU backend's
 * matrix-product attention).
 */
static void
test_chunked_prefill(int budget)
{
    infer_engine_t *e = engine(budget, 4, 8 << 20, 1, 0, 1);
    infer_request_t r = greedy(bos, 1, 200);
    result_t        ref, cont;
    int32_t         prompt[101];

    memset(&ref, 0, sizeof(ref));
    memset(&cont, 0, sizeof(cont));
    if (e == NULL) {
        ok(0, "engine for chunked prefill");
        return;
    }
    infer_engine_submit(e, &r, &ref.id);
    collect(e, &ref, 1);
    ok(same_as_expected(&ref, expected_len) && ref.n_tokens >= 100,
       "reference run under a %d-token budget", budget);

    prompt[0] = 1;
    memcpy(prompt + 1, ref.tokens, 100 * sizeof(int32_t));
    r = greedy(prompt, 101, 100);
    infer_engine_submit(e, &r, &cont.id);
    collect(e, &cont, 1);
    ok(cont.n_tokens == 100 && ref.n_tokens == 200
       && memcmp(cont.tokens, ref.tokens + 100, 100 * sizeof(int32_t)) == 0,
       "101-token prompt prefilled under a %d-token budget continues with "
       "the reference's tokens 101..200", budget);
    infer_engine_destroy(e);
}

/* A pool too small for everyone at once forces preemption/recompute. */
static void
test_preemption(void)
{
    /* keys and values: 2 x 5 layers x 4 kv heads x 16 tokens x 8 dims x
     * 4 bytes = 20 KiB a block; 40 blocks hold 640 tokens, four 201-token
     * sequences need 52 */
    infer_engine_t *e = engine(64, 4, 40 * 20480, 1, 0, 0);
    infer_request_t r = greedy(bos, 1, 200);
    result_t        res[4];
    infer_stats_t   st;
    int             i, all = 1;

    memset(res, 0, sizeof(res));
    if (e == NULL) {
        ok(0, "engine for preemption");
        return;
    }
    for (i = 0; i < 4; i++) {
        infer_engine_submit(e, &r, &res[i].id);
    }
    infer_engine_start(e, NULL, 0);
    ok(collect(e, res, 4) == 0, "four requests complete in a 40-block pool");
    for (i = 0; i < 4; i++) {
        all &= same_as_expected(&res[i], expected_len);
    }
    ok(all, "all four reproduce the reference text despite preemption");
    infer_engine_stats(e, &st);
    is_int(st.n_blocks, 40, "pool of 40 blocks");
    ok(st.preemptions > 0, "preemption happened (%llu times)",
       (unsigned long long) st.preemptions);
    is_int(st.free_blocks, 40, "all 40 blocks free afterwards");
    infer_engine_destroy(e);
}

static void
test_sampling(void)
{
    infer_engine_t *e = engine(64, 8, 8 << 20, 1, 0, 0);
    infer_request_t r = greedy(bos, 1, 120);
    result_t        res[5];

    memset(res, 0, sizeof(res));
    if (e == NULL) {
        ok(0, "engine for sampling");
        return;
    }
    r.temperature = 1.0f;
    r.top_p = 0.9f;
    r.top_k = 40;
    r.seed = 1234;
    r.has_seed = 1;
    infer_engine_submit(e, &r, &res[0].id);
    /* the same seed again, in a batch with different company */
    infer_engine_submit(e, &r, &res[1].id);
    r.seed = 99;
    infer_engine_submit(e, &r, &res[2].id);
    /* top_k = 1 at temperature 1 and temperature 0 are greedy */
    r.top_k = 1;
    r.top_p = 1.0f;
    infer_engine_submit(e, &r, &res[3].id);
    r.top_k = 0;
    r.temperature = 0.0f;
    r.max_tokens = 120;
    infer_engine_submit(e, &r, &res[4].id);
    infer_engine_start(e, NULL, 0);
    ok(collect(e, res, 5) == 0, "sampling requests complete");

    ok(res[0].len > 0 && res[0].len == res[1].len
       && memcmp(res[0].text, res[1].text, res[0].len) == 0,
       "same seed, same text");
    ok(res[0].n_tokens != res[2].n_tokens
       || memcmp(res[0].tokens, res[2].tokens,
                 res[0].n_tokens * sizeof(int32_t)) != 0,
       "another seed, other tokens");
    ok(res[0].n_tokens != res[4].n_tokens
       || memcmp(res[0].tokens, res[4].tokens,
                 res[0].n_tokens * sizeof(int32_t)) != 0,
       "temperature 1 differs from greedy");
    ok(res[3].n_tokens == 120 && res[4].n_tokens == 120
       && memcmp(res[3].tokens, res[4].tokens, 120 * sizeof(int32_t)) == 0,
       "top_k=1 equals greedy");
    ok(memcmp(res[4].text, expected, res[4].len) == 0 && res[4].len > 200,
       "temperature 0 gives the reference prefix");
    infer_engine_destroy(e);

    /* the same seed alone in the batch */
    e = engine(64, 8, 8 << 20, 1, 0, 1);
    memset(&res[1], 0, sizeof(res[1]));
    r = greedy(bos, 1, 120);
    r.temperature = 1.0f;
    r.top_p = 0.9f;
    r.top_k = 40;
    r.seed = 1234;
    r.has_seed = 1;
    infer_engine_submit(e, &r, &res[1].id);
    collect(e, &res[1], 1);
    ok(res[0].len == res[1].len
       && memcmp(res[0].text, res[1].text, res[0].len) == 0,
       "seeded text is the same alone as in a batch of five");
    infer_engine_destroy(e);
}

static void
test_stops_and_limits(void)
{
    /* one running slot and one queue place: two requests fit */
    infer_engine_t *e = engine(64, 1, 8 << 20, 1, 1, 0);
    infer_request_t r = greedy(bos, 1, 200);
    const char     *stop[2] = { "Lily", "zzz" };
    const char     *at = strstr(expected, "Lily");
    result_t        res[3];
    uint64_t        id;
    int32_t         huge[600];
    int             i;

    memset(res, 0, sizeof(res));
    if (e == NULL) {
        ok(0, "engine for stops");
        return;
    }
    r.stop = stop;
    r.n_stop = 2;
    infer_engine_submit(e, &r, &res[0].id);
    r = greedy(bos, 1, 7);
    infer_engine_submit(e, &r, &res[1].id);
    is_int(infer_engine_submit(e, &r, &id), INFER_EQUEUE_FULL,
           "third request with max_seqs=1, max_queue=1 is refused: queue "
           "full");

    r.max_tokens = -2;
    is_int(infer_engine_submit(e, &r, &id), INFER_EINVAL, "max_tokens -2");
    r.max_tokens = 512;
    is_int(infer_engine_submit(e, &r, &id), INFER_ECONTEXT,
           "1 prompt token + max_tokens 512 exceed the 512-token context");
    r.max_tokens = 5;
    r.top_p = 0.0f;
    is_int(infer_engine_submit(e, &r, &id), INFER_EINVAL, "top_p 0");
    r.top_p = 1.0f;
    huge[0] = 512;
    r.prompt = huge;
    is_int(infer_engine_submit(e, &r, &id), INFER_EINVAL,
           "token id past the vocabulary");
    for (i = 0; i < 600; i++) {
        huge[i] = 1;
    }
    r.n_prompt = 600;
    is_int(infer_engine_submit(e, &r, &id), INFER_ECONTEXT,
           "600-token prompt exceeds the 512-position context");
    r.n_prompt = 512;
    is_int(infer_engine_submit(e, &r, &id), INFER_ECONTEXT,
           "a 512-token prompt leaves no room to continue it");

    infer_engine_start(e, NULL, 0);
    ok(collect(e, res, 2) == 0, "stop and length requests complete");
    ok(at != NULL && res[0].len == (size_t) (at - expected)
       && memcmp(res[0].text, expected, res[0].len) == 0,
       "stop string \"Lily\" ends the text right before it");
    is_int(res[0].finish, INFER_FINISH_STOP, "finish reason stop");
    is_int(res[1].finish, INFER_FINISH_LENGTH, "max_tokens 7: length");
    is_int(res[1].completion_tokens, 7, "7 completion tokens");
    ok(res[1].len > 0 && memcmp(res[1].text, expected, res[1].len) == 0,
       "7-token text is the reference prefix");
    infer_engine_destroy(e);
}

static void
test_cancel_and_deadline(void)
{
    infer_engine_t *e = engine(64, 8, 8 << 20, 1, 0, 1);
    infer_request_t r = greedy(bos, 1, 500);
    infer_event_t   ev[8];
    struct pollfd   pfd;
    result_t        res[2];
    infer_stats_t   st;
    int             k, i, got_first = 0, tries = 0;

    memset(res, 0, sizeof(res));
    if (e == NULL) {
        ok(0, "engine for cancel");
        return;
    }
    infer_engine_submit(e, &r, &res[0].id);
    pfd.fd = infer_engine_event_fd(e);
    pfd.events = POLLIN;
    while (!got_first && tries++ < 100) {
        poll(&pfd, 1, 100);
        k = infer_engine_poll(e, ev, 8);
        for (i = 0; i < k; i++) {
            got_first |= ev[i].id == res[0].id;
            infer_event_release(&ev[i]);
        }
    }
    infer_engine_cancel(e, res[0].id);
    ok(collect(e, res, 1) == 0, "cancelled request ends");
    is_int(res[0].finish, INFER_FINISH_CANCELLED, "finish reason cancelled");
    ok(res[0].completion_tokens < 500, "stopped early (%d tokens)",
       res[0].completion_tokens);

    r.deadline_ms = infer_now_ms() - 1;
    infer_engine_submit(e, &r, &res[1].id);
    ok(collect(e, &res[1], 1) == 0, "request past its deadline ends");
    is_int(res[1].finish, INFER_FINISH_DEADLINE, "finish reason deadline");
    infer_engine_stats(e, &st);
    is_int(st.free_blocks, st.n_blocks, "blocks freed after cancel/deadline");
    infer_engine_destroy(e);
}

/* Tensor parallelism on the CPU: the same text with 2 and 4 ranks. */
static void
test_tensor_parallel(void)
{
    int tp;

    for (tp = 2; tp <= 4; tp += 2) {
        infer_engine_t *e = engine(32, 4, 8 << 20, tp, 0, 1);
        infer_request_t r = greedy(bos, 1, 200);
        result_t        res[2];

        memset(res, 0, sizeof(res));
        if (e == NULL) {
            ok(0, "engine with tp=%d", tp);
            continue;
        }
        infer_engine_submit(e, &r, &res[0].id);
        r = greedy(sentence, 16, 40);
        infer_engine_submit(e, &r, &res[1].id);
        collect(e, res, 2);
        ok(same_as_expected(&res[0], expected_len),
           "tp=%d reproduces expected_greedy_200.txt", tp);
        infer_engine_destroy(e);
    }
}

/*
 * Prompt logits and logprobs against Hugging Face transformers (float32,
 * t/data/ref/stories260K.logits: every vocabulary id at every position).
 * The bound is the same as test_hf_logits' (1e-4 of the largest logit):
 * our float32 sums run in another order than PyTorch's, which gives about
 * 1e-6 here; a wrong row, position or softmax is off by far more.
 */
static hf_ref_t ref;

static double
row_error(const float *got, const float *want, int n)
{
    double  m = 0, worst = 0, d;
    int     i;

    for (i = 0; i < n; i++) {
        m = fabs(want[i]) > m ? fabs(want[i]) : m;
    }
    for (i = 0; i < n; i++) {
        d = fabs((double) got[i] - want[i]) / m;
        worst = d > worst ? d : worst;
    }
    return worst;
}

static double
ref_logprob(const float *row, int n, int id)
{
    double  m = row[0], sum = 0;
    int     i;

    for (i = 1; i < n; i++) {
        m = row[i] > m ? row[i] : m;
    }
    for (i = 0; i < n; i++) {
        sum += exp((double) row[i] - m);
    }
    return row[id] - m - log(sum);
}

/* Checks r's rows and logprobs for the reference prompt; returns the worst
 * relative row error, or -1 when a shape is off. */
static double
check_scores(const result_t *r, int want_rows, int top)
{
    double  worst = 0, e;
    int     p, i, k, bad = 0;

    if (r->rows_broken || r->n_rows != want_rows || r->rows_first != 0
        || r->n_lp != ref.n_tokens - 1 || r->lp_first != 1
        || r->lp_top != top)
    {
        diag("rows %d from %d (want %d from 0), logprobs %d from %d, top %d",
             r->n_rows, r->rows_first, want_rows, r->n_lp, r->lp_first,
             r->lp_top);
        return -1;
    }
    for (p = 0; p < r->n_rows; p++) {
        e = row_error(r->rows + (size_t) p * ref.vocab,
                      ref.ref + (size_t) p * ref.vocab, ref.vocab);
        worst = e > worst ? e : worst;
    }
    for (i = 0; i < r->n_lp; i++) {
        const float *row = ref.ref + (size_t) i * ref.vocab;

        bad += r->lp_ids[i] != ref.tokens[i + 1]
               || fabs(r->lp[i] - ref_logprob(row, ref.vocab,
                                              ref.tokens[i + 1])) > 1e-4;
        for (k = 0; k < top; k++) {
            bad += fabs(r->top_lp[i * 5 + k]
                        - ref_logprob(row, ref.vocab, r->top_ids[i * 5 + k]))
                   > 1e-4;
            /* best first: no id ranks above the k-th but the first k */
            bad += k > 0 && r->top_lp[i * 5 + k] > r->top_lp[i * 5 + k - 1];
        }
    }
    if (bad) {
        diag("%d logprobs differ from the reference", bad);
        return -1;
    }
    return worst;
}

static infer_request_t
scoring(void)
{
    infer_request_t r;

    memset(&r, 0, sizeof(r));
    r.prompt = ref.tokens;
    r.n_prompt = ref.n_tokens;
    r.max_tokens = 0;
    r.top_p = 1.0f;
    r.prompt_logits = INFER_LOGITS_PROMPT;
    r.prompt_logprobs = 1;
    r.top_logprobs = 5;
    return r;
}

static void
test_outputs(void)
{
    infer_engine_t *e;
    infer_request_t r;
    infer_stats_t   st;
    result_t       *res;
    double          err;
    char            path[1100];
    uint64_t        id;
    int             i, top_ok;

    snprintf(path, sizeof(path), "t/data/ref/stories260K.logits");
    if (!ok(hf_ref_read(path, &ref) == 0 && ref.stride == 1,
            "read %s", path))
    {
        return;
    }
    res = calloc(5, sizeof(result_t));

    /* alone, in one step */
    e = engine(64, 8, 8 << 20, 1, 0, 1);
    r = scoring();
    res[0].vocab = ref.vocab;
    infer_engine_submit(e, &r, &res[0].id);
    ok(collect(e, res, 1) == 0 && res[0].finish == INFER_FINISH_LENGTH
       && res[0].completion_tokens == 0 && res[0].len == 0,
       "max_tokens 0 scores the prompt: no text, finish length");
    err = check_scores(&res[0], ref.n_tokens, 5);
    ok(err >= 0 && err < 1e-4, "prompt logits of all %d positions within "
       "1e-4 of transformers (%.2g), logprobs of tokens 1..%d and their 5 "
       "best within 1e-4", ref.n_tokens, err, ref.n_tokens - 1);
    infer_engine_destroy(e);

    /* chunked by a budget of 8 tokens, beside three generating requests,
     * in halves */
    e = engine(8, 8, 8 << 20, 1, 0, 1);
    for (i = 1; i < 4; i++) {
        infer_request_t g = greedy(bos, 1, 40);

        infer_engine_submit(e, &g, &res[i].id);
    }
    r.logits_f16 = 1;
    res[4].vocab = ref.vocab;
    res[4].f16 = 1;
    infer_engine_submit(e, &r, &res[4].id);
    ok(collect(e, res + 1, 4) == 0, "scoring and generating side by side");
    err = check_scores(&res[4], ref.n_tokens, 5);
    ok(err >= 0 && err < 2e-3, "chunked by 8 among 3 others, as float16: "
       "within 2e-3 (half precision's 2^-11 of the largest logit; %.2g)",
       err);
    for (i = 1; i < 4; i++) {
        ok(res[i].completion_tokens == 40 && res[i].len > 0
           && memcmp(res[i].text, expected, res[i].len) == 0,
           "generating request %d: the reference text", i);
    }
    infer_engine_destroy(e);

    /* a KV pool of 6 blocks for 3 x 41 + 21 tokens: preemptions recompute
     * positions whose rows went out already, which must not go again */
    e = engine(8, 8, 6 * 20480, 1, 0, 0);
    for (i = 0; i < 5; i++) {
        free(res[i].rows);
    }
    memset(res, 0, 5 * sizeof(result_t));
    for (i = 1; i < 4; i++) {
        infer_request_t g = greedy(bos, 1, 40);

        infer_engine_submit(e, &g, &res[i].id);
    }
    r = scoring();
    res[4].vocab = ref.vocab;
    infer_engine_submit(e, &r, &res[4].id);
    /* all four queued before the thread starts, so they share the pool */
    infer_engine_start(e, NULL, 0);
    ok(collect(e, res + 1, 4) == 0, "scoring under preemption ends");
    infer_engine_stats(e, &st);
    err = check_scores(&res[4], ref.n_tokens, 5);
    ok(st.preemptions > 0 && err >= 0 && err < 1e-4,
       "%llu preemptions: every row and logprob once, in order, within "
       "1e-4 (%.2g)", (unsigned long long) st.preemptions, err);
    infer_engine_destroy(e);

    /* the rows and logprobs of generated tokens: greedy picks the best,
     * whose logprob is the first of the top ones */
    e = engine(64, 8, 8 << 20, 1, 0, 1);
    free(res[0].rows);
    memset(&res[0], 0, sizeof(result_t));
    r = greedy(sentence, 16, 10);
    r.gen_logits = 1;
    r.logprobs = 1;
    r.top_logprobs = 3;
    res[0].vocab = ref.vocab;
    infer_engine_submit(e, &r, &res[0].id);
    collect(e, res, 1);
    top_ok = res[0].n_lp == 10 && res[0].lp_first == 16 && res[0].n_rows == 10
             && res[0].rows_first == 15 && !res[0].rows_broken;
    for (i = 0; top_ok && i < 10; i++) {
        const float *row = res[0].rows + (size_t) i * ref.vocab;

        top_ok = res[0].lp_ids[i] == res[0].tokens[i]
                 && res[0].top_ids[i * 5] == res[0].tokens[i]
                 && fabs(res[0].lp[i] - ref_logprob(row, ref.vocab,
                                                    res[0].tokens[i])) < 1e-5
                 && res[0].lp[i] == res[0].top_lp[i * 5];
    }
    ok(top_ok, "generated tokens: rows from position 15, each token the "
       "best of its row and its logprob that row's");

    /* logit_bias and min_tokens reach the draw; the logprobs stay the
     * model's (the biased token's logprob is its unbiased one) */
    {
        static const int32_t  ids[1] = { 500 };
        static const float    plus[1] = { 100.0f };
        static const int32_t  once[1] = { 403 };
        result_t              b[2];

        memset(b, 0, sizeof(b));
        r = greedy(bos, 1, 2);
        r.bias_ids = ids;
        r.bias = plus;
        r.n_bias = 1;
        r.logprobs = 1;
        b[0].vocab = ref.vocab;
        infer_engine_submit(e, &r, &b[0].id);
        r = greedy(bos, 1, 2);
        r.stop_ids = once;
        r.n_stop_ids = 1;
        r.min_tokens = 1;
        b[1].vocab = ref.vocab;
        infer_engine_submit(e, &r, &b[1].id);
        collect(e, b, 2);
        ok(b[0].n_tokens == 2 && b[0].tokens[0] == 500 && b[0].tokens[1]
           == 500 && b[0].lp[0] < -5.0f,
           "logit_bias +100 on id 500: greedy takes it (its model logprob "
           "%.2f)", b[0].lp[0]);
        ok(b[1].n_tokens >= 1 && b[1].tokens[0] != 403,
           "min_tokens 1 keeps the stop id 403 (greedy's first) out of the "
           "first draw (got %d)", b[1].tokens[0]);
    }

    /* a prompt only scored may take every position of the context */
    {
        int32_t   *full = malloc(512 * sizeof(int32_t));
        result_t   f;

        for (i = 0; i < 512; i++) {
            full[i] = ref.tokens[i % ref.n_tokens];
        }
        memset(&f, 0, sizeof(f));
        r = scoring();
        r.prompt = full;
        r.n_prompt = 512;
        r.prompt_logits = INFER_LOGITS_LAST;
        r.prompt_logprobs = 0;
        r.top_logprobs = 0;
        f.vocab = ref.vocab;
        ok(infer_engine_submit(e, &r, &f.id) == INFER_OK
           && collect(e, &f, 1) == 0 && f.n_rows == 1
           && f.rows_first == 511,
           "max_tokens 0 scores all 512 positions (the last row's at 511)");
        free(f.rows);
        free(full);
    }

    /* the cap on outputs, before any compute */
    {
        infer_engine_config_t c;
        infer_engine_t       *small;
        char                  msg[256];

        memset(&c, 0, sizeof(c));
        c.model_dir = model_dir;
        c.max_output_bytes = 4096;
        infer_engine_create(&c, &small, msg, sizeof(msg));
        r = scoring();
        is_int(infer_engine_submit(small, &r, &id), INFER_EOUTPUT,
               "21 rows of 512 floats are over a 4096-byte cap");
        r.prompt_logits = INFER_LOGITS_LAST;
        r.prompt_logprobs = 0;
        is_int(infer_engine_submit(small, &r, &id), INFER_OK,
               "the last row alone is within it");
        infer_engine_destroy(small);
    }
    infer_engine_stats(e, &st);
    is_int(st.free_blocks, st.n_blocks, "every block free at the end");
    infer_engine_destroy(e);

    for (i = 0; i < 5; i++) {
        free(res[i].rows);
    }
    free(res);
}

/*
 * A paused request makes no progress while others run past it, then
 * resumes to the same text; a paused request's deadline still ends it.
 */
static void
test_pause(void)
{
    infer_engine_t *e = engine(64, 4, 8 << 20, 1, 0, 1);
    infer_request_t r = greedy(bos, 1, 200);
    infer_stats_t   st;
    result_t        res[3];
    uint64_t        before;

    memset(res, 0, sizeof(res));
    if (e == NULL) {
        ok(0, "engine for pause");
        return;
    }
    /* paused at once: it takes effect at the scheduler's next step, long
     * before 200 tokens are done */
    infer_engine_submit(e, &r, &res[0].id);
    infer_engine_pause(e, res[0].id, 1);
    collect_for(e, res, 1, 200);

    /* another request runs to its end while the first one waits */
    r = greedy(sentence, 16, 40);
    infer_engine_submit(e, &r, &res[1].id);
    ok(collect(e, &res[1], 1) == 0, "a request beside a paused one ends");
    infer_engine_stats(e, &st);
    before = st.generated_tokens;
    poll(NULL, 0, 200);
    infer_engine_stats(e, &st);
    ok(st.generated_tokens == before && st.running + st.waiting == 1,
       "the paused request keeps its place and generates nothing (%llu "
       "tokens before and after)", (unsigned long long) before);

    infer_engine_pause(e, res[0].id, 0);
    ok(collect(e, res, 1) == 0, "the resumed request ends");
    ok(same_as_expected(&res[0], expected_len),
       "pausing changed nothing: expected_greedy_200.txt exactly");

    r = greedy(bos, 1, 300);
    r.deadline_ms = infer_now_ms() + 300;
    infer_engine_submit(e, &r, &res[2].id);
    infer_engine_pause(e, res[2].id, 1);
    ok(collect(e, &res[2], 1) == 0 && res[2].finish == INFER_FINISH_DEADLINE,
       "a paused request still ends at its deadline");
    infer_engine_stats(e, &st);
    is_int(st.free_blocks, st.n_blocks, "every block free at the end");
    ok(infer_engine_error(e) == NULL, "a running engine has no error");
    infer_engine_destroy(e);
}

/* The cpu backend, except that its fifth forward pass fails. */
static int flaky_calls;

static int
flaky_forward(infer_backend_t *b, const infer_batch_t *batch, float *logits,
    char *err, size_t errlen)
{
    if (++flaky_calls == 5) {
        snprintf(err, errlen, "injected failure at step %d", flaky_calls);
        return -1;
    }
    return infer_backend_cpu.forward(b, batch, logits, err, errlen);
}

static infer_backend_ops_t flaky_ops;

/*
 * A failed step stops the engine: every request it holds (in the step,
 * running beside it, waiting for a slot) ends with the reason, health turns
 * 0 with the reason, and later submits are refused.
 */
static void
test_failed_step(void)
{
    infer_engine_config_t c;
    infer_engine_t       *e;
    infer_request_t       r;
    infer_stats_t         st;
    result_t              res[3];
    const char           *why;
    char                  err[512];
    int                   i, failed;
    uint64_t              id;

    flaky_ops = infer_backend_cpu;
    flaky_ops.name = "flaky";
    flaky_ops.forward = flaky_forward;
    ok(infer_backend_register(&flaky_ops) == 0, "register a backend");

    memset(&c, 0, sizeof(c));
    c.model_dir = model_dir;
    c.backend = "flaky";
    c.max_seqs = 2;
    c.kv_cache_bytes = 8 << 20;
    if (infer_engine_create(&c, &e, err, sizeof(err)) != INFER_OK) {
        ok(0, "flaky engine: %s", err);
        return;
    }

    /* all three queued before the thread starts, so that the fifth step
     * finds them all inside */
    memset(res, 0, sizeof(res));
    r = greedy(bos, 1, 100);
    for (i = 0, failed = 0; i < 3; i++) {
        failed += infer_engine_submit(e, &r, &res[i].id) != INFER_OK;
    }
    is_int(failed, 0, "three requests queued");
    if (infer_engine_start(e, err, sizeof(err)) != INFER_OK) {
        ok(0, "flaky engine start: %s", err);
        infer_engine_destroy(e);
        return;
    }
    ok(collect(e, res, 3) == 0, "all three requests end (two running, one "
       "waiting for a slot)");
    for (i = 0, failed = 0; i < 3; i++) {
        failed += res[i].finish == INFER_FINISH_ERROR
                  && strstr(res[i].text, "injected failure at step 5");
    }
    is_int(failed, 3, "each ended with the step's error");
    is_int(infer_engine_alive(e), 0, "the engine is no longer alive");
    why = infer_engine_error(e);
    ok(why != NULL && strcmp(why, "injected failure at step 5") == 0,
       "infer_engine_error says why: %s", why ? why : "(null)");
    is_int(infer_engine_submit(e, &r, &id), INFER_ESHUTDOWN,
           "a submit after the failure is refused");
    infer_engine_stats(e, &st);
    ok(st.running == 0 && st.waiting == 0, "nothing left running or waiting");
    infer_engine_destroy(e);
}

/* What a configuration test can refuse without loading weights. */
static void
test_check(void)
{
    infer_engine_config_t c;
    char                  err[512];

    memset(&c, 0, sizeof(c));
    c.model_dir = model_dir;
    is_int(infer_engine_check(&c, err, sizeof(err)), INFER_OK,
           "the defaults pass");
    c.kv_cache_bytes = 1024;
    ok(infer_engine_check(&c, err, sizeof(err)) == INFER_EINVAL
       && strstr(err, "kv_cache=1024 bytes holds no block of 16 tokens "
                 "(one block needs 20480 bytes with backend=cpu)"),
       "kv_cache=1k: %s", err);
    c.kv_cache_bytes = 0;
    c.threads = INFER_MAX_THREADS + 1;
    ok(infer_engine_check(&c, err, sizeof(err)) == INFER_EINVAL
       && strstr(err, "threads=257 is more than 256"), "threads: %s", err);
    c.threads = 1;
    c.tp = 3;
    ok(infer_engine_check(&c, err, sizeof(err)) == INFER_EINVAL
       && strstr(err, "tp=3 does not divide"), "tp=3: %s", err);
    c.tp = 1;
    c.backend = "tpu";
    ok(infer_engine_check(&c, err, sizeof(err)) == INFER_EINVAL
       && strstr(err, "unknown backend \"tpu\""), "backend: %s", err);
}

/* ---- the prefix cache -------------------------------------------------------- */

static int32_t story[201];      /* <s> and the reference's 200 tokens */

/* prompt = story[0, n) followed by k tokens of `sentence` from index 1 */
static int
story_prompt(int32_t *p, int n, int k)
{
    memcpy(p, story, n * sizeof(int32_t));
    memcpy(p + n, sentence + 1, k * sizeof(int32_t));
    return n + k;
}

/* Runs the requests one after another, or all submitted at once. */
static int
run_requests(infer_engine_t *e, const infer_request_t *req, result_t *res,
    int n, int together)
{
    int i;

    for (i = 0; i < n; i++) {
        res[i].vocab = infer_engine_vocab_size(e);
        if (infer_engine_submit(e, &req[i], &res[i].id) != INFER_OK) {
            return -1;
        }
        if (!together && collect(e, &res[i], 1) != 0) {
            return -1;
        }
    }
    return together ? collect(e, res, n) : 0;
}

/* Whether two runs gave the same tokens and as many logits rows; *bits:
 * whether the rows are equal bit for bit, *worst: the largest difference
 * of a logit, relative to its row's largest magnitude. */
static int
same_tokens(const result_t *a, const result_t *b, int n, int *bits,
    double *worst)
{
    int     i, r, k;
    double  d, m;

    *bits = 1;
    *worst = 0;
    for (i = 0; i < n; i++) {
        if (!a[i].done || !b[i].done || a[i].n_tokens != b[i].n_tokens
            || memcmp(a[i].tokens, b[i].tokens,
                      a[i].n_tokens * sizeof(int32_t)) != 0
            || a[i].n_rows != b[i].n_rows || a[i].n_rows == 0)
        {
            *bits = 0;
            *worst = INFINITY;
            return 0;
        }
        *bits &= memcmp(a[i].rows, b[i].rows, (size_t) a[i].n_rows
                        * a[i].vocab * sizeof(float)) == 0;
        for (r = 0; r < a[i].n_rows; r++) {
            const float *x = a[i].rows + (size_t) r * a[i].vocab;
            const float *y = b[i].rows + (size_t) r * a[i].vocab;

            for (m = 0, k = 0; k < a[i].vocab; k++) {
                m = fabs(x[k]) > m ? fabs(x[k]) : m;
            }
            for (k = 0; k < a[i].vocab; k++) {
                d = fabs((double) x[k] - y[k]) / (m > 0 ? m : 1);
                *worst = d > *worst ? d : *worst;
            }
        }
    }
    return 1;
}

static void
free_results(result_t *res, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        free(res[i].rows);
    }
    memset(res, 0, n * sizeof(result_t));
}

/*
 * Five requests one after another: a first one of 60 story tokens that
 * leaves 4 full blocks named (its 60 + 7 generated tokens computed), then
 * prompts whose shared prefix ends inside block 2 (40 tokens: 2 blocks
 * reused), on the boundary of block 3 (48: 3 blocks), a prompt that is
 * all cached (64 tokens: 3 blocks, the last block computed again for its
 * last token's logits) and one cached up to its last token (65: 4
 * blocks).  With the cache and without: the same greedy tokens, and the
 * hits are exact.
 *
 * The rows those tokens were drawn from are equal bit for bit when the
 * steps are: under a budget of one block (16 tokens) a prompt computed
 * whole goes in the chunks [0, 16), [16, 32), ... and one that reuses k
 * blocks in the same chunks from 16 k on, so equal rows say that the
 * reused keys and values are exactly the ones a full computation makes.
 * Not for the last request: its block 3 was filled by the first one's
 * prompt (48 .. 59) and decode steps (60 .. 63), which round unlike a
 * 16-token chunk.
 * Under a budget of 64 the computed part goes in one product of another
 * row count, and OpenBLAS's sgemm rounds a row differently with the
 * number of rows in the call (measured: the first 32 rows of a 64-row
 * product differ in the last bit from a 32-row product, Haswell kernels,
 * one thread), as chunking and batching already do: there the rows agree
 * within 1e-4 of their largest logit (test_hf_logits' bound against
 * transformers), a wrong block or position is off by far more.
 */
static void
test_prefix_sequential(int budget, int tp)
{
    static int32_t  prompts[5][80];
    static const int shape[5][2] = {
        { 60, 0 }, { 40, 10 }, { 48, 9 }, { 64, 0 }, { 65, 0 }
    };
    static const int cached[5] = { 0, 32, 48, 48, 64 };
    infer_request_t req[5];
    result_t        res[2][5];
    infer_engine_t *e;
    infer_stats_t   st[2];
    double          worst = 0;
    int             i, off, queries = 0, hits = 0, got_cached = 1, good;
    int             bits = 0;

    memset(res, 0, sizeof(res));
    for (i = 0; i < 5; i++) {
        int n = story_prompt(prompts[i], shape[i][0], shape[i][1]);

        req[i] = greedy(prompts[i], n, i == 0 ? 8 : 24);
        req[i].gen_logits = 1;
        queries += n;
        hits += cached[i];
    }
    for (off = 0; off < 2; off++) {
        prefix_off = off;
        e = engine(budget, 8, 8 << 20, tp, 0, 1);
        ok(e != NULL && run_requests(e, req, res[off], 5, 0) == 0,
           "prefix cache %s: five requests in turn, budget %d, tp=%d",
           off ? "off" : "on", budget, tp);
        if (e != NULL) {
            infer_engine_stats(e, &st[off]);
            infer_engine_destroy(e);
        }
    }
    prefix_off = 0;
    good = same_tokens(res[0], res[1], 4, &bits, &worst)
           && same_tokens(res[0], res[1], 5, &good, &worst);
    ok(good, "cache on and off, budget %d: the same greedy tokens for "
       "prefixes ending inside a block, on a block boundary, wholly "
       "cached and cached up to the last token", budget);
    if (budget == 16) {
        ok(bits && worst < 1e-4, "and the same logits rows bit for bit "
           "(the same chunks), the last request's within 1e-4 of their "
           "largest (%.3g)", worst);
    } else {
        ok(worst < 1e-4, "and logits rows within 1e-4 of their largest "
           "(%.3g; bit for bit: %s)", worst, bits ? "yes" : "no");
    }
    for (i = 0; i < 5; i++) {
        got_cached &= res[0][i].cached_tokens == cached[i]
                      && res[1][i].cached_tokens == 0;
    }
    ok(got_cached, "cached_tokens of each: 0 32 48 48 64 (got %d %d %d %d "
       "%d), 0 without the cache", res[0][0].cached_tokens,
       res[0][1].cached_tokens, res[0][2].cached_tokens,
       res[0][3].cached_tokens, res[0][4].cached_tokens);
    ok(st[0].prefix_queries == (uint64_t) queries
       && st[0].prefix_hits == (uint64_t) hits,
       "prefix cache stats: %d tokens queried, %d hits (got %llu, %llu)",
       queries, hits, (unsigned long long) st[0].prefix_queries,
       (unsigned long long) st[0].prefix_hits);
    ok(st[1].prefix_queries == 0 && st[1].prefix_hits == 0
       && st[1].cached_blocks == 0, "without the cache: no queries, hits "
       "or cached blocks");
    ok(st[0].prompt_tokens + hits == st[1].prompt_tokens,
       "the cache saved exactly its hits in computed prompt tokens "
       "(%llu + %d = %llu)", (unsigned long long) st[0].prompt_tokens,
       hits, (unsigned long long) st[1].prompt_tokens);
    ok(st[0].free_blocks == st[0].n_blocks && st[0].cached_blocks > 0,
       "afterwards every block is free or cached (%d cached of %d)",
       st[0].cached_blocks, st[0].n_blocks);
    for (i = 0; i < 2; i++) {
        free_results(res[i], 5);
    }
}

/*
 * Several requests at once, with and without the cache, after a first
 * one that leaves its blocks cached: under a budget of 24 tokens their
 * prompts are chunked and mixed with each other's decode steps; and in a
 * pool of 16 blocks that cannot hold them all, so that they are
 * preempted and come back (finding their own blocks cached).  The steps
 * differ with the cache (fewer prompt tokens to compute), so the rows
 * agree within rounding (see test_prefix_sequential), the tokens exactly.
 */
static void
test_prefix_concurrent(int pool_blocks)
{
    static int32_t  prompts[5][80];
    static const int shape[5][2] = {
        { 60, 0 }, { 40, 10 }, { 48, 9 }, { 64, 0 }, { 33, 4 }
    };
    infer_request_t req[5];
    result_t        res[2][5];
    infer_engine_t *e;
    infer_stats_t   st[2];
    double          worst = 0;
    int             i, off, good, bits = 0;

    memset(res, 0, sizeof(res));
    for (i = 0; i < 5; i++) {
        int n = story_prompt(prompts[i], shape[i][0], shape[i][1]);

        req[i] = greedy(prompts[i], n, 60);
        req[i].gen_logits = 1;
    }
    for (off = 0; off < 2; off++) {
        prefix_off = off;
        e = engine(24, 4, pool_blocks ? (size_t) pool_blocks * 20480
                                      : 8 << 20, 1, 0, 1);
        good = e != NULL && run_requests(e, req, res[off], 1, 0) == 0
               && run_requests(e, req + 1, res[off] + 1, 4, 1) == 0;
        ok(good, "prefix cache %s: one request, then four at once%s",
           off ? "off" : "on", pool_blocks ? " in a small pool" : "");
        if (e != NULL) {
            infer_engine_stats(e, &st[off]);
            infer_engine_destroy(e);
        }
    }
    prefix_off = 0;
    good = same_tokens(res[0], res[1], 5, &bits, &worst) && worst < 1e-4;
    ok(good, "cache on and off%s: the same greedy tokens, logits rows "
       "within 1e-4 of their largest (%.3g; bit for bit: %s)",
       pool_blocks ? ", with preemption" : ", concurrent", worst,
       bits ? "yes" : "no");
    ok(st[0].prefix_hits > 0 && res[0][1].cached_tokens == 32
       && res[0][2].cached_tokens == 48 && res[0][3].cached_tokens == 48
       && res[0][4].cached_tokens == 32,
       "the four reused the first one's blocks (32 48 48 32 tokens)");
    if (pool_blocks) {
        ok(st[0].preemptions > 0 && st[1].preemptions > 0,
           "preemption happened with and without the cache (%llu, %llu)",
           (unsigned long long) st[0].preemptions,
           (unsigned long long) st[1].preemptions);
    }
    ok(st[0].free_blocks == st[0].n_blocks
       && st[1].free_blocks == st[1].n_blocks,
       "every block back (free or cached) afterwards");
    for (i = 0; i < 2; i++) {
        free_results(res[i], 5);
    }
}


/*
 * Gemma 2's local layers (a sliding window of 128 in tiny-gemma2) share
 * blocks too: keys are stored by absolute position and the window is a
 * mask, so a reused prefix of 176 tokens, longer than the window, gives a
 * request what it would have computed: with a budget of one block, the
 * same tokens and logits bit for bit (the same chunks, see
 * test_prefix_sequential).
 */
static void
test_prefix_window(const char *gen)
{
    char            dir[] = "/tmp/infer-test-prefix-XXXXXX", cmd[2300];
    char            saved[sizeof(model_dir)];
    static int32_t  prompts[2][200];
    infer_request_t req[2];
    result_t        res[2][2];
    infer_engine_t *e;
    double          worst = 0;
    int             i, off, vocab = 0, bits = 0, good = 1;
    uint64_t        x = 12345;

    if (mkdtemp(dir) == NULL) {
        ok(0, "temporary directory for tiny-gemma2");
        return;
    }
    snprintf(cmd, sizeof(cmd), "'%s' '%s/m' --preset tiny-gemma2 "
             ">/dev/null", gen, dir);
    if (!ok(system(cmd) == 0, "tiny-gemma2 generated")) {
        return;
    }
    memcpy(saved, model_dir, sizeof(saved));
    snprintf(model_dir, sizeof(model_dir), "%s/m", dir);
    memset(res, 0, sizeof(res));
    for (off = 0; off < 2; off++) {
        prefix_off = off;
        e = engine(16, 4, 8 << 20, 1, 0, 1);
        if (e == NULL) {
            good = 0;
            break;
        }
        vocab = infer_engine_vocab_size(e);
        for (i = 0; off == 0 && i < 200; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            prompts[0][i] = i == 0 ? 2 : (int32_t) ((x >> 33) % vocab);
            prompts[1][i] = i < 180 ? prompts[0][i]
                                    : (int32_t) ((x >> 17) % vocab);
        }
        for (i = 0; i < 2; i++) {
            req[i] = greedy(prompts[i], 200, 16);
            req[i].gen_logits = 1;
        }
        good &= run_requests(e, req, res[off], 2, 0) == 0;
        infer_engine_destroy(e);
    }
    prefix_off = 0;
    memcpy(model_dir, saved, sizeof(saved));
    ok(good && res[0][1].cached_tokens == 176,
       "tiny-gemma2: the second prompt reused 176 tokens (%d), more than "
       "the window of 128", res[0][1].cached_tokens);
    good = good && same_tokens(res[0], res[1], 2, &bits, &worst);
    ok(good && bits, "tiny-gemma2, cache on and off: the same tokens and "
       "logits bit for bit (worst %.3g)", worst);
    for (i = 0; i < 2; i++) {
        free_results(res[i], 2);
    }

    /* dynamic NTK RoPE: keys depend on the sequence's length, not only
     * on its prefix: no cache */
    snprintf(cmd, sizeof(cmd), "'%s' '%s/d' --preset tiny-llama-dynamic "
             ">/dev/null", gen, dir);
    if (ok(system(cmd) == 0, "tiny-llama-dynamic generated")) {
        infer_stats_t st;

        memset(&st, 0, sizeof(st));

        snprintf(model_dir, sizeof(model_dir), "%s/d", dir);
        e = engine(64, 4, 8 << 20, 1, 0, 1);
        memcpy(model_dir, saved, sizeof(saved));
        for (i = 0; i < 2; i++) {
            req[i] = greedy(prompts[0], 40, 2);
        }
        good = e != NULL && run_requests(e, req, res[0], 2, 0) == 0;
        if (e != NULL) {
            infer_engine_stats(e, &st);
            infer_engine_destroy(e);
        }
        ok(good && res[0][1].cached_tokens == 0 && st.prefix_queries == 0,
           "tiny-llama-dynamic (rope_type dynamic): a repeated prompt is "
           "computed again, the cache is off");
        free_results(res[0], 2);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        diag("could not remove %s", dir);
    }
}

static void
test_prefix_cache(const char *gen)
{
    infer_engine_t *e = engine(64, 4, 8 << 20, 1, 0, 1);
    infer_request_t r = greedy(bos, 1, 200);
    result_t        ref;

    memset(&ref, 0, sizeof(ref));
    if (e == NULL || infer_engine_submit(e, &r, &ref.id) != INFER_OK
        || collect(e, &ref, 1) != 0 || ref.n_tokens != 200)
    {
        ok(0, "reference tokens for the prefix cache tests");
        infer_engine_destroy(e);
        return;
    }
    infer_engine_destroy(e);
    story[0] = 1;
    memcpy(story + 1, ref.tokens, 200 * sizeof(int32_t));

    test_prefix_sequential(16, 1);
    test_prefix_sequential(64, 1);
    test_prefix_sequential(16, 2);      /* one pool, the table to each rank */
    test_prefix_concurrent(0);
    test_prefix_concurrent(16);
    test_prefix_window(gen);
}

/* ---- priorities ---------------------------------------------------------------- */

/* Collects until all n are done; order[k] is the index of the k-th to end. */
static int
end_order(infer_engine_t *e, result_t *res, int n, int *order)
{
    infer_event_t ev[32];
    struct pollfd pfd = { infer_engine_event_fd(e), POLLIN, 0 };
    int           ended = 0, k, i, j, idle = 0;

    while (ended < n && idle < 600) {
        if (poll(&pfd, 1, 100) == 0) {
            idle++;
        }
        k = infer_engine_poll(e, ev, 32);
        for (i = 0; i < k; i++) {
            if (take(res, n, &ev[i])) {
                for (j = 0; j < n; j++) {
                    if (res[j].id == ev[i].id) {
                        order[ended++] = j;
                    }
                }
            }
            infer_event_release(&ev[i]);
        }
    }
    return ended == n ? 0 : -1;
}

static void
test_priorities(void)
{
    infer_engine_t *e;
    infer_request_t r = greedy(bos, 1, 30);
    infer_stats_t   st;
    result_t        res[5];
    uint64_t        id;
    int             order[5] = { -1, -1, -1, -1, -1 }, i, ended;

    /* one running slot: four of priority 10 queued, then one of 0 */
    memset(res, 0, sizeof(res));
    e = engine(64, 1, 8 << 20, 1, 0, 0);
    if (e == NULL) {
        ok(0, "engine for priorities");
        return;
    }
    r.priority = 10;
    for (i = 0; i < 4; i++) {
        infer_engine_submit(e, &r, &res[i].id);
    }
    r.priority = 0;
    infer_engine_submit(e, &r, &res[4].id);
    infer_engine_start(e, NULL, 0);
    ended = end_order(e, res, 5, order) == 0;
    ok(ended && order[0] == 4 && order[1] == 0
       && order[2] == 1 && order[3] == 2 && order[4] == 3,
       "priority 0 overtakes four of priority 10 queued before it, which "
       "keep their order (ended: %d %d %d %d %d)", order[0], order[1],
       order[2], order[3], order[4]);
    r.priority = INFER_PRIORITY_MAX + 1;
    is_int(infer_engine_submit(e, &r, &id), INFER_EINVAL,
           "priority past INFER_PRIORITY_MAX is refused");
    infer_engine_destroy(e);

    /* aging of 20 ms a level: after 300 ms, priority 10 (rank 200 ms
     * after its arrival) passes a newcomer of 0 (rank 300) but not one
     * of -10 (rank 100) */
    memset(res, 0, sizeof(res));
    aging_ms = 20;
    e = engine(64, 1, 8 << 20, 1, 0, 0);
    aging_ms = 0;
    if (e == NULL) {
        ok(0, "engine for aging");
        return;
    }
    r.priority = 10;
    infer_engine_submit(e, &r, &res[0].id);
    usleep(300 * 1000);
    r.priority = 0;
    infer_engine_submit(e, &r, &res[1].id);
    r.priority = -10;
    infer_engine_submit(e, &r, &res[2].id);
    infer_engine_start(e, NULL, 0);
    ended = end_order(e, res, 3, order) == 0;
    ok(ended && order[0] == 2 && order[1] == 0
       && order[2] == 1, "aged 300 ms at 20 ms a level, priority 10 goes "
       "before a newer 0, after a newer -10 (ended: %d %d %d)", order[0],
       order[1], order[2]);
    infer_engine_destroy(e);

    /* two sequences of 201 tokens in 16 blocks (256 tokens): the one of
     * priority 5 is preempted, though the one of 0 came later */
    memset(res, 0, sizeof(res));
    e = engine(64, 2, 16 * 20480, 1, 0, 0);
    if (e == NULL) {
        ok(0, "engine for preemption by priority");
        return;
    }
    r = greedy(bos, 1, 200);
    r.priority = 5;
    infer_engine_submit(e, &r, &res[0].id);
    r.priority = 0;
    infer_engine_submit(e, &r, &res[1].id);
    infer_engine_start(e, NULL, 0);
    ok(end_order(e, res, 2, order) == 0 && order[0] == 1,
       "out of blocks, the lower priority is preempted: the later, "
       "higher one ends first");
    infer_engine_stats(e, &st);
    ok(st.preemptions > 0 && same_as_expected(&res[0], expected_len)
       && same_as_expected(&res[1], expected_len),
       "both reproduce the reference (%llu preemptions)",
       (unsigned long long) st.preemptions);
    infer_engine_destroy(e);
}

int
main(int argc, char **argv)
{
    char path[1100], self[1024], gen[1100];

    snprintf(model_dir, sizeof(model_dir), "%s/models/stories260K",
             shared_dir());
    snprintf(path, sizeof(path), "%s/expected_greedy_200.txt", model_dir);
    expected = tap_read_file(path, &expected_len);
    if (expected == NULL) {
        skip_all("no ../shared/models/stories260K");
    }

    test_greedy_200();
    test_shared_steps();
    test_chunked_prefill(16);
    test_chunked_prefill(256);
    test_preemption();
    test_sampling();
    test_stops_and_limits();
    test_cancel_and_deadline();
    test_tensor_parallel();
    test_pause();
    test_outputs();
    test_failed_step();
    test_check();
    /* the generator beside this binary's directory, as test_hf_logits */
    (void) argc;
    snprintf(self, sizeof(self), "%s", argv[0]);
    snprintf(gen, sizeof(gen), "%s/../infer-gen-model", dirname(self));
    test_prefix_cache(getenv("INFER_GEN_MODEL") ? getenv("INFER_GEN_MODEL")
                                                : gen);
    test_priorities();

    free(expected);
    return done_testing();
}
