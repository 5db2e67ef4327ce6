/*
 * A batch: the engine requests of one client request (the rows of a
 * /predict or KServe tensor), run side by side and gathered until every
 * one has ended; then the owning front end answers once.  It is a front
 * end of the bridge itself, so the tensor protocols only parse and encode.
 */
#include "ngx_http_infer.h"

static void ngx_http_infer_batch_event(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev);
static void ngx_http_infer_batch_timeout(ngx_http_infer_ctx_t *ctx);

static const ngx_http_infer_frontend_t  ngx_http_infer_batch_frontend = {
    "batch",
    ngx_http_infer_batch_event,
    ngx_http_infer_batch_timeout
};

static void
ngx_http_infer_batch_cleanup(void *data)
{
    int                       i;
    ngx_http_infer_batch_t   *b = data;
    ngx_http_infer_result_t  *res;

    for (i = 0; i < b->n; i++) {
        res = &b->results[i];
        free(res->text);
        free(res->tokens);
        free(res->rows);
        free(res->lp_ids);
        free(res->lp);
        free(res->lp_top_ids);
        free(res->lp_top_lp);
    }
}

ngx_http_infer_batch_t *
ngx_http_infer_batch_create(ngx_http_request_t *r, ngx_http_infer_model_t *m,
    int n, void (*done)(ngx_http_infer_batch_t *b), void *data)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_infer_batch_t  *b;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_infer_batch_t));
    if (cln == NULL) {
        return NULL;
    }
    b = cln->data;
    ngx_memzero(b, sizeof(ngx_http_infer_batch_t));
    b->results = ngx_pcalloc(r->pool, n * sizeof(ngx_http_infer_result_t));
    if (b->results == NULL) {
        cln->handler = NULL;
        return NULL;
    }
    b->n = n;
    b->done = done;
    b->data = data;
    cln->handler = ngx_http_infer_batch_cleanup;

    b->ctx = ngx_http_infer_ctx_create(r, m, &ngx_http_infer_batch_frontend,
                                       n);
    if (b->ctx == NULL) {
        return NULL;
    }
    b->ctx->data = b;
    return b;
}

int
ngx_http_infer_batch_submit(ngx_http_infer_batch_t *b, int i,
    infer_request_t *req)
{
    int                      rc;
    size_t                   bytes;
    infer_engine_t          *e = b->ctx->model->engine;
    ngx_http_infer_result_t *res = &b->results[i];

    /* one client's rows share the cap one engine request has */
    bytes = infer_engine_output_bytes(e, req);
    if (b->output_bytes + bytes > infer_engine_max_output(e)) {
        return INFER_EOUTPUT;
    }

    res->f16 = req->logits_f16;
    rc = ngx_http_infer_ctx_submit(b->ctx, i, req);
    if (rc == INFER_OK) {
        b->output_bytes += bytes;
        b->n_submitted++;
    }
    return rc;
}

static ngx_int_t
ngx_http_infer_grow(void **p, size_t *cap, size_t need)
{
    void    *q;
    size_t   c;

    if (need <= *cap) {
        return NGX_OK;
    }
    c = *cap ? *cap : 256;
    while (c < need) {
        c *= 2;
    }
    q = realloc(*p, c);
    if (q == NULL) {
        return NGX_ERROR;
    }
    *p = q;
    *cap = c;
    return NGX_OK;
}

/* Appends an event's text, ids, rows and logprobs to its result. */
static ngx_int_t
ngx_http_infer_batch_take(ngx_http_infer_batch_t *b,
    ngx_http_infer_result_t *res, infer_event_t *ev)
{
    size_t  row_bytes, k;
    int     vocab;

    vocab = infer_engine_vocab_size(b->ctx->model->engine);
    row_bytes = (size_t) vocab * (res->f16 ? 2 : 4);

    if (ev->type != INFER_EVENT_ERROR && ev->text_len > 0) {
        if (ngx_http_infer_grow((void **) &res->text, &res->text_cap,
                                res->text_len + ev->text_len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
        ngx_memcpy(res->text + res->text_len, ev->text, ev->text_len);
        res->text_len += ev->text_len;
    }

    if (ev->n_tokens > 0) {
        if (ngx_http_infer_grow((void **) &res->tokens, &res->tokens_cap,
                                (res->n_tokens + ev->n_tokens)
                                * sizeof(int32_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
        ngx_memcpy(res->tokens + res->n_tokens, ev->tokens,
                   ev->n_tokens * sizeof(int32_t));
        res->n_tokens += ev->n_tokens;
    }

    if (ev->n_rows > 0) {
        if (res->n_rows == 0) {
            res->rows_first = ev->rows_first;
        }
        if (ngx_http_infer_grow((void **) &res->rows, &res->rows_cap,
                                (res->n_rows + ev->n_rows) * row_bytes)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
        ngx_memcpy(res->rows + res->n_rows * row_bytes, ev->rows,
                   ev->n_rows * row_bytes);
        res->n_rows += ev->n_rows;
    }

    if (ev->n_lp > 0) {
        if (res->n_lp == 0) {
            res->lp_first = ev->lp_first;
            res->lp_top = ev->lp_top;
        }
        k = res->n_lp + ev->n_lp;
        if (ngx_http_infer_grow((void **) &res->lp_ids, &res->lp_ids_cap,
                                k * sizeof(int32_t)) != NGX_OK
            || ngx_http_infer_grow((void **) &res->lp, &res->lp_cap,
                                   k * sizeof(float)) != NGX_OK
            || ngx_http_infer_grow((void **) &res->lp_top_ids,
                                   &res->lp_top_ids_cap,
                                   k * (res->lp_top + 1) * sizeof(int32_t))
               != NGX_OK
            || ngx_http_infer_grow((void **) &res->lp_top_lp,
                                   &res->lp_top_lp_cap,
                                   k * (res->lp_top + 1) * sizeof(float))
               != NGX_OK)
        {
            return NGX_ERROR;
        }
        ngx_memcpy(res->lp_ids + res->n_lp, ev->lp_ids,
                   ev->n_lp * sizeof(int32_t));
        ngx_memcpy(res->lp + res->n_lp, ev->lp, ev->n_lp * sizeof(float));
        ngx_memcpy(res->lp_top_ids + (size_t) res->n_lp * res->lp_top,
                   ev->lp_top_ids,
                   (size_t) ev->n_lp * res->lp_top * sizeof(int32_t));
        ngx_memcpy(res->lp_top_lp + (size_t) res->n_lp * res->lp_top,
                   ev->lp_top_lp,
                   (size_t) ev->n_lp * res->lp_top * sizeof(float));
        res->n_lp = (int) k;
    }
    return NGX_OK;
}

static void
ngx_http_infer_batch_event(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev)
{
    ngx_http_infer_batch_t   *b = ctx->data;
    ngx_http_infer_result_t  *res = &b->results[gen];

    if (ngx_http_infer_batch_take(b, res, ev) != NGX_OK) {
        ngx_snprintf((u_char *) res->error, sizeof(res->error) - 1,
                     "out of memory%Z");
        res->failed = 1;
        b->failed = 1;
        ngx_http_infer_ctx_cancel(ctx);
    }

    if (ev->type == INFER_EVENT_TOKEN) {
        return;
    }

    res->done = 1;
    res->finish = ev->finish;
    res->prompt_tokens = ev->prompt_tokens;
    res->completion_tokens = ev->completion_tokens;
    if (ev->type == INFER_EVENT_ERROR
        || (ev->finish != INFER_FINISH_STOP
            && ev->finish != INFER_FINISH_LENGTH))
    {
        if (!res->failed) {
            ngx_snprintf((u_char *) res->error, sizeof(res->error) - 1,
                         "%s%Z", ev->finish == INFER_FINISH_DEADLINE
                                 ? "the deadline passed"
                                 : ev->finish == INFER_FINISH_CANCELLED
                                 ? "the engine cancelled the request"
                                 : ev->text ? ev->text : "engine error");
        }
        res->failed = 1;
        if (!b->failed) {
            /* one row failed: the answer is an error, the others stop */
            b->failed = 1;
            ngx_http_infer_ctx_cancel(ctx);
        }
    }

    if (++b->n_done == b->n_submitted) {
        b->done(b);
    }
}

static void
ngx_http_infer_batch_timeout(ngx_http_infer_ctx_t *ctx)
{
    ngx_http_infer_batch_t  *b = ctx->data;

    b->timed_out = 1;
    b->failed = 1;
    b->done(b);
}
