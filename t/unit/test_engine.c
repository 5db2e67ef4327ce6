/*
 * Engine end to end on the real stories260K model (fp32 CPU backend).
 *
 * Reference: ../shared/models/stories260K/expected_greedy_200.txt, the bytes
 * that greedy decoding from [<s>] must produce (llama2.c's own test).  Every
 * scheduling situation below (shared steps, chunked prefill, preemption,
 * tensor parallelism) must reproduce those bytes exactly: batching never
 * changes results.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "infer.h"
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
} result_t;

static char   model_dir[1024];
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
    if (ev->type == INFER_EVENT_TOKEN) {
        return 0;
    }
    r->done = 1;
    r->finish = ev->finish;
    r->prompt_tokens = ev->prompt_tokens;
    r->completion_tokens = ev->completion_tokens;
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
    int             i;

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

    r.max_tokens = -1;
    is_int(infer_engine_submit(e, &r, &id), INFER_EINVAL, "max_tokens -1");
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

int
main(void)
{
    char path[1100];

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
    test_failed_step();
    test_check();

    free(expected);
    return done_testing();
}
