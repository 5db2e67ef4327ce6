/*
 * OpenAI-compatible front end: POST /v1/completions, POST
 * /v1/chat/completions, GET /v1/models, and the health check.
 *
 * A request is parsed and tokenized in the worker, submitted to the engine
 * without blocking, and answered from the bridge as events arrive: SSE
 * chunks as text comes when streaming, one JSON body at the end otherwise.
 */
#include "ngx_http_infer.h"

typedef enum {
    NGX_HTTP_INFER_ROUTE_NONE = 0,
    NGX_HTTP_INFER_ROUTE_COMPLETIONS,
    NGX_HTTP_INFER_ROUTE_CHAT,
    NGX_HTTP_INFER_ROUTE_MODELS
} ngx_http_infer_route_t;

/* Room of a reusable SSE buffer: one token's event fits. */
#define NGX_HTTP_INFER_SSE_BUF  1024

static const char  ngx_http_infer_sse_done[] = "data: [DONE]\n\n";

/* Bodies up to this many bytes are prepared in the event loop (parsed and
 * tokenized in about a millisecond); bigger ones in nginx's thread pool. */
#define NGX_HTTP_INFER_INLINE_BODY  4096

/* One generation request from its body to its submission, in r->pool;
 * what it holds is malloc'd and freed with the pool. */
typedef struct {
    infer_oai_kind_t            kind;
    ngx_http_infer_loc_conf_t  *conf;
    u_char                     *body;          /* in r->pool */
    size_t                      body_len;
    infer_oai_request_t         req;
    ngx_http_infer_model_t     *model;
    const infer_tokenizer_t    *tok;
    int32_t                    *ids;           /* the prompt's tokens */
    int                         n;
    ngx_int_t                   rc;            /* of the preparation */
    infer_oai_error_t           err;
} ngx_http_infer_job_t;

static void ngx_http_infer_body_handler(ngx_http_request_t *r);
static void ngx_http_infer_stream_writer(ngx_http_request_t *r);
static ngx_int_t ngx_http_infer_stream_flow(ngx_http_infer_ctx_t *ctx);

static ngx_int_t
ngx_http_infer_add_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);
    return NGX_OK;
}

/* Sends a whole JSON response; body is the codec's malloc'd string. */
static ngx_int_t
ngx_http_infer_send_json(ngx_http_request_t *r, ngx_uint_t status,
    char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        free(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->last = ngx_cpymem(b->pos, body, len);
    free(body);
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}

static ngx_int_t
ngx_http_infer_send_error(ngx_http_request_t *r, infer_oai_error_t *err)
{
    char                       *body;
    size_t                      len;
    ngx_http_infer_loc_conf_t  *ilcf;

    if (err->status == NGX_HTTP_SERVICE_UNAVAILABLE
        && ngx_http_infer_add_header(r, "Retry-After", "1") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (err->status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
        ngx_log_error(ilcf->reject_log_level, r->connection->log, 0,
                      "infer: %s", err->message);
    } else if (err->status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "infer: %s",
                      err->message);
    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "infer: %s",
                      err->message);
    }

    body = infer_oai_error_body(err, &len);
    return ngx_http_infer_send_json(r, err->status, body, len);
}

/* Sends SSE events: parts are the codec's malloc'd strings (freed here;
 * a NULL one means it ran out of memory), then [DONE] when last.  Buffers
 * the client has taken are reused, so a long stream does not grow the
 * request pool by one buffer per token. */
static ngx_int_t
ngx_http_infer_stream_send(ngx_http_infer_ctx_t *ctx, char **parts,
    size_t *lens, ngx_uint_t n, ngx_uint_t last)
{
    u_char              *p;
    size_t               size, cap;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_uint_t           i, failed;
    ngx_chain_t         *cl;
    ngx_http_request_t  *r = ctx->r;

    size = last ? sizeof(ngx_http_infer_sse_done) - 1 : 0;
    failed = 0;
    for (i = 0; i < n; i++) {
        if (parts[i] == NULL) {
            failed = 1;
        } else {
            size += lens[i];
        }
    }

    cl = failed ? NULL : ngx_chain_get_free_buf(r->pool, &ctx->free);
    b = cl ? cl->buf : NULL;
    if (b != NULL && (size_t) (b->end - b->start) < size) {
        cap = ngx_max(size, NGX_HTTP_INFER_SSE_BUF);
        b->start = ngx_palloc(r->pool, cap);
        b->end = b->start ? b->start + cap : NULL;
    }

    p = (b && b->start) ? b->start : NULL;
    for (i = 0; i < n; i++) {
        if (p != NULL) {
            p = ngx_cpymem(p, parts[i], lens[i]);
        }
        free(parts[i]);
    }
    if (p == NULL) {
        return NGX_ERROR;
    }
    if (last) {
        p = ngx_cpymem(p, ngx_http_infer_sse_done,
                       sizeof(ngx_http_infer_sse_done) - 1);
    }

    b->pos = b->start;
    b->last = p;
    b->temporary = 1;
    b->flush = 1;
    b->last_buf = last && r == r->main;
    b->last_in_chain = last;
    b->tag = (ngx_buf_tag_t) &ngx_http_infer_module;

    rc = ngx_http_output_filter(r, cl);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &cl,
                            (ngx_buf_tag_t) &ngx_http_infer_module);
    if (rc != NGX_ERROR && ngx_http_infer_stream_flow(ctx) != NGX_OK) {
        return NGX_ERROR;
    }
    return rc;
}

/*
 * Backpressure.  Our buffers stay busy until the socket, TLS or HTTP/2
 * flow control has taken all of them, so the memory of the busy ones is
 * what a client that does not read costs.  Past infer_unsent_limit the
 * generation pauses (the engine keeps the sequence and its KV cache) and
 * resumes once half of it is free again, so worker memory is bounded by
 * configuration, not by clients.  As in ngx_http_writer, output that makes
 * no progress for send_timeout ends the request.
 */
static ngx_int_t
ngx_http_infer_stream_flow(ngx_http_infer_ctx_t *ctx)
{
    off_t                       unsent;
    ngx_chain_t                *cl;
    ngx_event_t                *wev;
    ngx_connection_t           *c;
    ngx_http_request_t         *r = ctx->r;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_infer_loc_conf_t  *ilcf;

    /* what the buffers hold, not what is left in them: a buffer is
     * reused only once all of it has been sent */
    unsent = 0;
    for (cl = ctx->busy; cl; cl = cl->next) {
        unsent += cl->buf->end - cl->buf->start;
    }

    c = r->connection;
    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);

    if (!ctx->paused && !ctx->engine_done
        && unsent > (off_t) ilcf->unsent_limit)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "infer: request %uL paused, %O bytes unsent",
                       ctx->id, unsent);
        ctx->paused = 1;
        infer_engine_pause(ctx->model->engine, ctx->id, 1);

    } else if (ctx->paused && unsent <= (off_t) ilcf->unsent_limit / 2) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "infer: request %uL resumed, %O bytes unsent",
                       ctx->id, unsent);
        ctx->paused = 0;
        if (!ctx->engine_done) {
            infer_engine_pause(ctx->model->engine, ctx->id, 0);
        }
    }

    wev = c->write;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (unsent > 0 || c->buffered) {
        if (!wev->delayed) {
            ngx_add_timer(wev, clcf->send_timeout);
        }
        /* a paused stream sends nothing more by itself: the writer must
         * hear when the client takes some */
        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (wev->timer_set) {
        ngx_del_timer(wev);
    }
    return NGX_OK;
}

/* A slow client: keep flushing what the filters hold whenever the socket
 * (or the HTTP/2 stream window) lets us. */
static void
ngx_http_infer_stream_writer(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_chain_t               *out;
    ngx_event_t               *wev;
    ngx_http_infer_ctx_t      *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_infer_module);
    wev = r->connection->write;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "infer: client timed out taking the stream of "
                      "request %uL", ctx->id);
        r->connection->timedout = 1;
        ngx_http_infer_ctx_finalize(ctx, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    rc = ngx_http_output_filter(r, NULL);
    if (rc == NGX_ERROR) {
        ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
        return;
    }

    out = NULL;
    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_infer_module);
    if (ngx_http_infer_stream_flow(ctx) != NGX_OK) {
        ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
    }
}

static ngx_int_t
ngx_http_infer_stream_start(ngx_http_infer_ctx_t *ctx)
{
    char                *part;
    size_t               len;
    ngx_int_t            rc;
    ngx_http_request_t  *r = ctx->r;

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    if (ngx_http_infer_add_header(r, "Cache-Control", "no-cache") != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    r->write_event_handler = ngx_http_infer_stream_writer;

    /* The chat stream opens with the assistant role. */
    if (ctx->rsp.kind == INFER_OAI_CHAT) {
        part = infer_oai_chunk(&ctx->rsp, NULL, 0, 1, NULL,
                               ctx->include_usage, &len);
        rc = ngx_http_infer_stream_send(ctx, &part, &len, 1, 0);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }
    return NGX_OK;
}

/* Ends the response with an error: a JSON body, or once the stream has
 * begun an error event and a clean end. */
static void
ngx_http_infer_fail(ngx_http_infer_ctx_t *ctx, infer_oai_error_t *err)
{
    char                *part;
    size_t               len;
    ngx_int_t            rc;
    ngx_http_request_t  *r = ctx->r;

    if (ctx->stream && r->header_sent) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "infer: stream ended by error: %s", err->message);
        part = infer_oai_error_chunk(err, &len);
        rc = ngx_http_infer_stream_send(ctx, &part, &len, 1, 1);
    } else {
        rc = ngx_http_infer_send_error(r, err);
    }
    ngx_http_infer_ctx_finalize(ctx, rc);
}

void
ngx_http_infer_openai_timeout(ngx_http_infer_ctx_t *ctx)
{
    infer_oai_error_t  err;

    ngx_log_error(NGX_LOG_WARN, ctx->r->connection->log, 0,
                  "infer: request %uL passed its deadline", ctx->id);

    infer_oai_set_error(&err, NGX_HTTP_GATEWAY_TIME_OUT, "timeout", NULL,
                        "timeout", "the request did not finish within %lu ms",
                        (unsigned long) ctx->model->timeout);
    ngx_http_infer_fail(ctx, &err);
}

static ngx_int_t
ngx_http_infer_text(ngx_http_infer_ctx_t *ctx, const char *text, size_t len)
{
    char    *part;
    size_t   plen, cap;
    u_char  *p;

    if (ctx->stream) {
        part = infer_oai_chunk(&ctx->rsp, text, len, 0, NULL,
                               ctx->include_usage, &plen);
        return ngx_http_infer_stream_send(ctx, &part, &plen, 1, 0);
    }

    if (ctx->text_len + len > ctx->text_cap) {
        cap = ngx_max(2 * ctx->text_cap, ctx->text_len + len + 256);
        p = ngx_alloc(cap, ctx->r->connection->log);
        if (p == NULL) {
            return NGX_ERROR;
        }
        if (ctx->text_len > 0) {
            ngx_memcpy(p, ctx->text, ctx->text_len);
        }
        ngx_free(ctx->text);
        ctx->text = p;
        ctx->text_cap = cap;
    }
    ngx_memcpy(ctx->text + ctx->text_len, text, len);
    ctx->text_len += len;
    return NGX_OK;
}

static void
ngx_http_infer_complete(ngx_http_infer_ctx_t *ctx, infer_event_t *ev)
{
    char         *parts[2], *body;
    size_t        lens[2], len;
    ngx_int_t     rc;
    ngx_uint_t    n;
    const char   *finish;

    finish = infer_oai_finish_reason(ev->finish);

    if (ctx->stream) {
        n = 0;
        parts[n] = infer_oai_chunk(&ctx->rsp, NULL, 0, 0, finish,
                                   ctx->include_usage, &lens[n]);
        n++;
        if (ctx->include_usage) {
            parts[n] = infer_oai_usage_chunk(&ctx->rsp, ev->prompt_tokens,
                                             ev->completion_tokens, &lens[n]);
            n++;
        }
        rc = ngx_http_infer_stream_send(ctx, parts, lens, n, 1);

    } else {
        body = infer_oai_completion_body(&ctx->rsp, (char *) ctx->text,
                                         ctx->text_len, finish,
                                         ev->prompt_tokens,
                                         ev->completion_tokens, &len);
        rc = ngx_http_infer_send_json(ctx->r, NGX_HTTP_OK, body, len);
    }

    ngx_http_infer_ctx_finalize(ctx, rc);
}

void
ngx_http_infer_openai_event(ngx_http_infer_ctx_t *ctx, infer_event_t *ev)
{
    infer_oai_error_t  err;

    if (ev->type != INFER_EVENT_ERROR && ev->text_len > 0
        && ngx_http_infer_text(ctx, ev->text, ev->text_len) == NGX_ERROR)
    {
        /* The client is gone or we ran out of memory: stop generating
         * (the cleanup cancels) and drop the connection. */
        ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
        return;
    }

    if (ev->type == INFER_EVENT_TOKEN) {
        return;
    }

    if (ev->type == INFER_EVENT_DONE
        && (ev->finish == INFER_FINISH_STOP
            || ev->finish == INFER_FINISH_LENGTH))
    {
        ngx_http_infer_complete(ctx, ev);
        return;
    }

    if (ev->type == INFER_EVENT_DONE && ev->finish == INFER_FINISH_DEADLINE) {
        ngx_http_infer_openai_timeout(ctx);
        return;
    }

    if (ev->type == INFER_EVENT_DONE
        && ev->finish == INFER_FINISH_CANCELLED)
    {
        infer_oai_set_error(&err, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "server_error", NULL, NULL,
                            "the engine cancelled the request");
    } else {
        infer_oai_set_error(&err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL, "generation failed: %s",
                            ev->text ? ev->text : "engine error");
    }
    ngx_http_infer_fail(ctx, &err);
}

static ngx_http_infer_route_t
ngx_http_infer_route(ngx_http_request_t *r)
{
    ngx_str_t  *uri = &r->uri;

#define ngx_http_infer_ends_with(s)                                          \
    (uri->len >= sizeof(s) - 1                                               \
     && ngx_strncmp(uri->data + uri->len - (sizeof(s) - 1), s,               \
                    sizeof(s) - 1) == 0)

    if (ngx_http_infer_ends_with("/chat/completions")) {
        return NGX_HTTP_INFER_ROUTE_CHAT;
    }
    if (ngx_http_infer_ends_with("/completions")) {
        return NGX_HTTP_INFER_ROUTE_COMPLETIONS;
    }
    if (ngx_http_infer_ends_with("/models")) {
        return NGX_HTTP_INFER_ROUTE_MODELS;
    }
    return NGX_HTTP_INFER_ROUTE_NONE;

#undef ngx_http_infer_ends_with
}

static ngx_int_t
ngx_http_infer_models(ngx_http_request_t *r)
{
    char                       *body;
    size_t                      len;
    ngx_int_t                   rc;
    int64_t                    *created;
    ngx_uint_t                  i;
    const char                **names;
    ngx_http_infer_model_t    **m;
    ngx_http_infer_loc_conf_t  *ilcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
    m = ilcf->models->elts;
    names = ngx_palloc(r->pool, ilcf->models->nelts * sizeof(char *));
    created = ngx_palloc(r->pool, ilcf->models->nelts * sizeof(int64_t));
    if (names == NULL || created == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    for (i = 0; i < ilcf->models->nelts; i++) {
        names[i] = (const char *) m[i]->name.data;
        created[i] = m[i]->created;
    }

    body = infer_oai_models_body(names, created, (int) ilcf->models->nelts,
                                 &len);
    return ngx_http_infer_send_json(r, NGX_HTTP_OK, body, len);
}

ngx_int_t
ngx_http_infer_openai_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    infer_oai_error_t        err;
    ngx_http_infer_route_t   route;

    route = ngx_http_infer_route(r);

    if (route == NGX_HTTP_INFER_ROUTE_MODELS) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            if (ngx_http_infer_add_header(r, "Allow", "GET, HEAD")
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
            infer_oai_set_error(&err, NGX_HTTP_NOT_ALLOWED,
                                NGX_HTTP_INFER_INVALID, NULL,
                                "method_not_allowed",
                                "method %.*s is not allowed here, use GET",
                                (int) r->method_name.len,
                                r->method_name.data);
            goto error;
        }
        return ngx_http_infer_models(r);
    }

    if (route == NGX_HTTP_INFER_ROUTE_NONE) {
        infer_oai_set_error(&err, NGX_HTTP_NOT_FOUND, NGX_HTTP_INFER_INVALID,
                            NULL, "unknown_url", "unknown route %.*s",
                            (int) r->uri.len, r->uri.data);
        goto error;
    }

    if (!(r->method & NGX_HTTP_POST)) {
        if (ngx_http_infer_add_header(r, "Allow", "POST") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        infer_oai_set_error(&err, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_INFER_INVALID,
                            NULL, "method_not_allowed",
                            "method %.*s is not allowed here, use POST",
                            (int) r->method_name.len, r->method_name.data);
        goto error;
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_infer_body_handler);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;

error:

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }
    return ngx_http_infer_send_error(r, &err);
}

/* The whole request body as one NUL-terminated string. */
static u_char *
ngx_http_infer_body(ngx_http_request_t *r, size_t *len)
{
    u_char       *p, *body;
    off_t         size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    size = 0;
    if (r->request_body != NULL) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            size += ngx_buf_size(cl->buf);
        }
    }

    body = ngx_pnalloc(r->pool, size + 1);
    if (body == NULL) {
        return NULL;
    }

    p = body;
    if (r->request_body != NULL) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;
            if (ngx_buf_in_memory(b)) {
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
                continue;
            }
            if (!b->in_file) {
                continue;       /* an empty last buffer */
            }
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NULL;
            }
            p += n;
        }
    }

    *p = '\0';
    *len = p - body;
    return body;
}

static ngx_http_infer_model_t *
ngx_http_infer_find_model(ngx_http_infer_loc_conf_t *ilcf, const char *name)
{
    ngx_uint_t                  i;
    ngx_http_infer_model_t    **m;

    m = ilcf->models->elts;
    for (i = 0; i < ilcf->models->nelts; i++) {
        if (ngx_strcmp(m[i]->name.data, name) == 0) {
            return m[i];
        }
    }
    return NULL;
}

/*
 * Renders and tokenizes the prompt into job->ids.  Runs in the event loop
 * or, for a big prompt, in a thread of nginx's pool: it touches nothing but
 * the job and the model's read-only tokenizer and settings, allocates with
 * malloc only and logs nothing.
 */
static void
ngx_http_infer_tokenize(ngx_http_infer_job_t *job)
{
    int                      i, vocab, context;
    char                    *text, msg[256];
    size_t                   len, least;
    infer_oai_request_t     *req = &job->req;
    infer_oai_error_t       *err = &job->err;
    ngx_http_infer_model_t  *m = job->model;

    job->rc = NGX_ERROR;

    if (req->prompt_ids != NULL) {
        vocab = infer_engine_vocab_size(m->engine);
        for (i = 0; i < req->n_prompt_ids; i++) {
            if (req->prompt_ids[i] >= vocab) {
                infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST,
                                    NGX_HTTP_INFER_INVALID, "prompt", NULL,
                                    "token id %d is outside the vocabulary "
                                    "of %d", req->prompt_ids[i], vocab);
                return;
            }
        }
        job->ids = req->prompt_ids;
        job->n = req->n_prompt_ids;
        req->prompt_ids = NULL;
        job->rc = NGX_OK;
        return;
    }

    text = NULL;
    if (req->kind == INFER_OAI_CHAT) {
        text = infer_chat_render(m->format, req->messages, req->n_messages,
                                 m->bos, m->eos, &len, msg, sizeof(msg));
        if (text == NULL) {
            infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST,
                                NGX_HTTP_INFER_INVALID, "messages", NULL,
                                "%s", msg);
            return;
        }
    } else {
        len = req->prompt_len;
    }

    /* what cannot fit, by its size alone, is refused before encoding */
    least = infer_tokenizer_min_ids(job->tok, len);
    context = infer_engine_context_length(m->engine);
    if (least >= (size_t) context
        || (req->max_tokens > 0 && least + req->max_tokens > (size_t) context))
    {
        infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST,
                            NGX_HTTP_INFER_INVALID,
                            req->kind == INFER_OAI_CHAT ? "messages"
                                                        : "prompt",
                            "context_length_exceeded",
                            "this model's maximum context length is %d "
                            "tokens, and a prompt of %zu bytes has at "
                            "least %zu%s", context, len, least,
                            least < (size_t) context
                            ? ", which leaves less than max_tokens" : "");
        free(text);
        return;
    }

    if (text != NULL) {
        /* The rendered text holds the special tokens itself. */
        i = infer_tokenizer_encode(job->tok, text, len, 0, &job->ids,
                                   &job->n);
        free(text);

    } else {
        i = infer_tokenizer_encode(job->tok, req->prompt, req->prompt_len, 1,
                                   &job->ids, &job->n);
    }

    if (i != 0) {
        job->ids = NULL;
        infer_oai_set_error(err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL,
                            "the prompt could not be tokenized");
        return;
    }
    if (job->n == 0) {
        infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST, NGX_HTTP_INFER_INVALID,
                            "prompt", NULL, "the prompt is empty");
        return;
    }
    job->rc = NGX_OK;
}

static void
ngx_http_infer_submit_error(int rc, infer_oai_request_t *req, int n_prompt,
    ngx_http_infer_model_t *m, infer_oai_error_t *err)
{
    int          context;
    const char  *param;

    switch (rc) {
    case INFER_ECONTEXT:
        context = infer_engine_context_length(m->engine);
        param = req->kind == INFER_OAI_CHAT ? "messages" : "prompt";
        if (n_prompt < context && req->max_tokens > 0) {
            infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST,
                                NGX_HTTP_INFER_INVALID, "max_tokens",
                                "context_length_exceeded",
                                "this model's maximum context length is %d "
                                "tokens, but %ld were requested (%d in the "
                                "%s, %d in the completion): reduce the "
                                "length of the %s or of max_tokens",
                                context,
                                (long) n_prompt + req->max_tokens, n_prompt,
                                param, req->max_tokens, param);
        } else {
            infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST,
                                NGX_HTTP_INFER_INVALID, param,
                                "context_length_exceeded",
                                "this model's maximum context length is %d "
                                "tokens, the %s has %d", context, param,
                                n_prompt);
        }
        break;
    case INFER_EINVAL:
        infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST, NGX_HTTP_INFER_INVALID,
                            NULL, NULL, "invalid request: %s",
                            infer_strerror(rc));
        break;
    case INFER_EQUEUE_FULL:
    case INFER_ESHUTDOWN:
        infer_oai_set_error(err, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "server_error", NULL, "overloaded",
                            "the server is busy: %s", infer_strerror(rc));
        break;
    default:
        infer_oai_set_error(err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL, "%s",
                            infer_strerror(rc));
    }
}

/*
 * Parses the body, finds the model and tokenizes the prompt: the work of a
 * request before it can be submitted.  Runs in the event loop or, for a
 * big body, in a thread of nginx's pool (a megabyte of JSON and its prompt
 * take milliseconds to a third of a second), so it touches only the job,
 * read-only configuration and the model's tokenizer; job->rc says how it
 * went, job->err why not.
 */
static void
ngx_http_infer_prepare(ngx_http_infer_job_t *job)
{
    const char              *why;
    infer_oai_request_t     *req = &job->req;
    infer_oai_error_t       *err = &job->err;
    ngx_http_infer_model_t  *m;

    job->rc = NGX_ERROR;

    if (infer_oai_parse_request((char *) job->body, job->body_len, job->kind,
                                req, err)
        != 0)
    {
        return;
    }

    m = ngx_http_infer_find_model(job->conf, req->model);
    if (m == NULL) {
        infer_oai_set_error(err, NGX_HTTP_NOT_FOUND, NGX_HTTP_INFER_INVALID,
                            "model", "model_not_found",
                            "the model '%s' does not exist", req->model);
        return;
    }
    why = ngx_http_infer_model_unavailable(m);
    if (why != NULL) {
        infer_oai_set_error(err, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "server_error", NULL, "unavailable",
                            "the model '%s' is not available in this "
                            "worker: %s", req->model, why);
        return;
    }

    job->model = m;
    job->tok = infer_engine_tokenizer(m->engine);
    ngx_http_infer_tokenize(job);
}

/* Submits the tokenized prompt; on success the context waits for the
 * engine's events. */
static ngx_int_t
ngx_http_infer_submit(ngx_http_request_t *r, ngx_http_infer_job_t *job)
{
    int                      rc, n;
    uint64_t                 id;
    infer_request_t          ireq;
    infer_oai_kind_t         kind;
    infer_oai_request_t     *req = &job->req;
    ngx_http_infer_ctx_t    *ctx;
    ngx_http_infer_model_t  *m = job->model;

    kind = req->kind;
    n = job->n;
    if (ngx_http_infer_model_unavailable(m) != NULL) {
        /* the engine stopped while the prompt was tokenized */
        infer_oai_set_error(&job->err, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "server_error", NULL, "unavailable",
                            "the model '%s' is not available in this "
                            "worker: %s", req->model,
                            ngx_http_infer_model_unavailable(m));
        return NGX_ERROR;
    }

    ngx_memzero(&ireq, sizeof(ireq));
    ireq.prompt = job->ids;
    ireq.n_prompt = n;
    ireq.max_tokens = req->max_tokens;
    if (ireq.max_tokens == 0 && kind == INFER_OAI_COMPLETION) {
        /* OpenAI's default for completions is 16, up to the context end */
        ireq.max_tokens = ngx_min(16, infer_engine_context_length(m->engine)
                                      - n);
        ireq.max_tokens = ngx_max(ireq.max_tokens, 1);

    } else if (ireq.max_tokens == 0) {
        /* and for chat the context end */
        ireq.max_tokens = INFER_TO_CONTEXT_END;
    }
    ireq.temperature = (float) req->temperature;
    ireq.top_p = (float) req->top_p;
    ireq.top_k = req->top_k;
    ireq.seed = req->seed;
    ireq.has_seed = req->has_seed;
    ireq.stop = (const char *const *) req->stop;
    ireq.n_stop = req->n_stop;
    if (kind == INFER_OAI_CHAT && m->end_id >= 0) {
        ireq.stop_ids = &m->end_id;
        ireq.n_stop_ids = 1;
    }
    ireq.deadline_ms = infer_now_ms() + (int64_t) m->timeout;

    ctx = ngx_http_infer_ctx_create(r, m);
    if (ctx == NULL) {
        infer_oai_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL, "out of memory");
        return NGX_ERROR;
    }
    ctx->stream = req->stream;
    ctx->include_usage = req->include_usage;
    ngx_sprintf((u_char *) ctx->rsp_id, "%s%08xD%08xD%08xD%Z",
                kind == INFER_OAI_CHAT ? "chatcmpl-" : "cmpl-",
                (uint32_t) ngx_random(), (uint32_t) ngx_random(),
                (uint32_t) ngx_random());
    ctx->rsp.kind = kind;
    ctx->rsp.id = ctx->rsp_id;
    ctx->rsp.created = ngx_time();
    /* The configuration outlives the request (and the worker's cycle
     * outlives a reload), so the model's own name can be used. */
    ctx->rsp.model = (const char *) m->name.data;

    ireq.user = ctx;
    rc = infer_engine_submit(m->engine, &ireq, &id);
    if (rc != INFER_OK) {
        ngx_http_infer_submit_error(rc, req, n, m, &job->err);
        return NGX_ERROR;
    }

    ctx->id = id;
    ctx->engine_done = 0;
    ngx_add_timer(&ctx->timer, m->timeout);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "infer: submitted request %uL, %d prompt tokens, "
                   "stream %ui", id, n, (ngx_uint_t) ctx->stream);

    /* Notice a client that goes away while we wait. */
    r->read_event_handler = ngx_http_test_reading;

    if (ctx->stream && ngx_http_infer_stream_start(ctx) != NGX_OK) {
        ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
    }
    return NGX_OK;
}

/* Submits a tokenized job, or answers with its error. */
static void
ngx_http_infer_go(ngx_http_request_t *r, ngx_http_infer_job_t *job)
{
    if (job->rc == NGX_OK && ngx_http_infer_submit(r, job) == NGX_OK) {
        return;
    }
    ngx_http_finalize_request(r, ngx_http_infer_send_error(r, &job->err));
}

static void
ngx_http_infer_job_cleanup(void *data)
{
    ngx_http_infer_job_t  *job = data;

    infer_oai_request_free(&job->req);
    free(job->ids);
}

#if (NGX_THREADS)

typedef struct {
    ngx_http_request_t       *r;
    ngx_http_infer_job_t     *job;
} ngx_http_infer_task_t;

static void
ngx_http_infer_prepare_thread(void *data, ngx_log_t *log)
{
    ngx_http_infer_task_t  *t = data;

    ngx_http_infer_prepare(t->job);
}

/* Back in the event loop once a thread has prepared the request. */
static void
ngx_http_infer_prepared(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_http_request_t     *r;
    ngx_http_infer_task_t  *t = ev->data;

    r = t->r;
    c = r->connection;
    ngx_http_set_log_request(c->log, r);
    r->main->blocked--;

    if (c->error) {
        /* the client left meanwhile; its request waited for us */
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);

    } else {
        ngx_http_infer_go(r, t->job);
    }
    ngx_http_run_posted_requests(c);
}

/*
 * A body this big takes milliseconds to parse and its prompt more to
 * render and tokenize (0.1-0.3 s for a megabyte), time the event loop owes
 * every other client of the worker: it is prepared in nginx's thread pool
 * instead.  The request cannot be freed while the thread holds its job
 * (r->main->blocked), as with nginx's own thread tasks.
 */
static ngx_int_t
ngx_http_infer_prepare_later(ngx_http_request_t *r, ngx_http_infer_job_t *job)
{
    ngx_thread_task_t           *task;
    ngx_http_infer_task_t       *t;
    ngx_http_infer_main_conf_t  *imcf;

    imcf = ngx_http_get_module_main_conf(r, ngx_http_infer_module);
    if (imcf->thread_pool == NULL
        || job->body_len < NGX_HTTP_INFER_INLINE_BODY)
    {
        return NGX_DECLINED;
    }

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_infer_task_t));
    if (task == NULL) {
        return NGX_DECLINED;
    }
    t = task->ctx;
    t->r = r;
    t->job = job;
    task->handler = ngx_http_infer_prepare_thread;
    task->event.handler = ngx_http_infer_prepared;
    task->event.data = t;

    if (ngx_thread_task_post(imcf->thread_pool, task) != NGX_OK) {
        return NGX_DECLINED;
    }

    r->main->blocked++;
    r->read_event_handler = ngx_http_test_reading;
    return NGX_OK;
}

#endif

static void
ngx_http_infer_body_handler(ngx_http_request_t *r)
{
    infer_oai_kind_t       kind;
    ngx_pool_cleanup_t    *cln;
    ngx_http_infer_job_t  *job;

    kind = ngx_http_infer_route(r) == NGX_HTTP_INFER_ROUTE_CHAT
           ? INFER_OAI_CHAT : INFER_OAI_COMPLETION;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_infer_job_t));
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    job = cln->data;
    ngx_memzero(job, sizeof(ngx_http_infer_job_t));
    cln->handler = ngx_http_infer_job_cleanup;
    job->kind = kind;
    job->conf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);

    job->body = ngx_http_infer_body(r, &job->body_len);
    if (job->body == NULL) {
        infer_oai_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL,
                            "cannot read the request body");
        ngx_http_finalize_request(r, ngx_http_infer_send_error(r, &job->err));
        return;
    }

#if (NGX_THREADS)
    if (ngx_http_infer_prepare_later(r, job) == NGX_OK) {
        return;
    }
#endif

    ngx_http_infer_prepare(job);
    ngx_http_infer_go(r, job);
}

ngx_int_t
ngx_http_infer_health_handler(ngx_http_request_t *r)
{
    char                         *body;
    size_t                        len;
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    const char                   *why, *name;
    ngx_http_infer_model_t      **m;
    ngx_http_infer_main_conf_t   *imcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    imcf = ngx_http_get_module_main_conf(r, ngx_http_infer_module);
    m = imcf->models.elts;
    name = NULL;
    why = imcf->models.nelts > 0 ? NULL : "no infer_model is declared";
    for (i = 0; i < imcf->models.nelts && why == NULL; i++) {
        why = ngx_http_infer_model_unavailable(m[i]);
        name = (const char *) m[i]->name.data;
    }

    len = 0;
    body = infer_health_body(why ? (name ? name : "") : NULL, why, &len);
    if (why != NULL
        && ngx_http_infer_add_header(r, "Retry-After", "1") != NGX_OK)
    {
        free(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    return ngx_http_infer_send_json(r, why ? NGX_HTTP_SERVICE_UNAVAILABLE
                                           : NGX_HTTP_OK, body, len);
}

/*
 * This worker's engines: requests running and waiting, scheduler steps,
 * tokens computed and generated, preemptions, KV blocks.  Counters are
 * per worker process, so a client sees the worker that accepted it.
 */
ngx_int_t
ngx_http_infer_stats_handler(ngx_http_request_t *r)
{
    char                         *body;
    size_t                        len;
    ngx_int_t                     rc;
    ngx_uint_t                    i, n;
    const char                  **names;
    infer_stats_t                *st;
    ngx_http_infer_model_t      **m;
    ngx_http_infer_main_conf_t   *imcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    imcf = ngx_http_get_module_main_conf(r, ngx_http_infer_module);
    m = imcf->models.elts;
    names = ngx_palloc(r->pool, (imcf->models.nelts + 1) * sizeof(char *));
    st = ngx_pcalloc(r->pool, (imcf->models.nelts + 1) * sizeof(*st));
    if (names == NULL || st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    n = 0;
    for (i = 0; i < imcf->models.nelts; i++) {
        if (m[i]->engine == NULL) {
            continue;
        }
        names[n] = (const char *) m[i]->name.data;
        infer_engine_stats(m[i]->engine, &st[n]);
        n++;
    }

    len = 0;
    body = infer_stats_body(names, st, (int) n, (long) ngx_pid, &len);
    return ngx_http_infer_send_json(r, NGX_HTTP_OK, body, len);
}
