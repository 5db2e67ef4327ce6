/*
 * What every front end needs and none owns: reading the body, whole
 * replies, streams through reused buffers with backpressure, big requests
 * prepared in nginx's thread pool, the engine's codes as statuses, and the
 * health and stats endpoints.  No protocol is spoken here.
 */
#include "ngx_http_infer.h"

/* Room of a reusable stream buffer: one token's event fits. */
#define NGX_HTTP_INFER_STREAM_BUF   1024

/* Requests up to this many bytes are prepared in the event loop (a
 * millisecond of parsing and tokenizing); bigger ones in the thread pool. */
#define NGX_HTTP_INFER_INLINE_BYTES 4096

static ngx_int_t ngx_http_infer_stream_flow(ngx_http_infer_ctx_t *ctx);

ngx_int_t
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

static void
ngx_http_infer_free(void *data)
{
    free(data);
}

/* The buffer points into body, which the request pool frees once the
 * response is gone: a tensor reply of many megabytes is not copied. */
ngx_int_t
ngx_http_infer_send(ngx_http_request_t *r, ngx_uint_t status,
    const char *content_type, char *body, size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_pool_cleanup_t  *cln;

    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        free(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    cln->handler = ngx_http_infer_free;
    cln->data = body;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->start = b->pos = (u_char *) body;
    b->end = b->last = (u_char *) body + len;
    b->memory = len > 0;        /* an empty one is only the end */
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.data = (u_char *) content_type;
    r->headers_out.content_type.len = ngx_strlen(content_type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}

ngx_int_t
ngx_http_infer_send_json(ngx_http_request_t *r, ngx_uint_t status,
    char *body, size_t len)
{
    return ngx_http_infer_send(r, status, "application/json", body, len);
}

ngx_int_t
ngx_http_infer_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message, const char *content_type, char *body, size_t len)
{
    if (status == NGX_HTTP_SERVICE_UNAVAILABLE
        && ngx_http_infer_add_header(r, "Retry-After", "1") != NGX_OK)
    {
        free(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_http_infer_log_reject(r, status, message);
    return ngx_http_infer_send(r, status, content_type, body, len);
}

void
ngx_http_infer_log_reject(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    ngx_uint_t                  level;
    ngx_http_infer_loc_conf_t  *ilcf;

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
        level = ilcf->reject_log_level;
    } else {
        level = status >= NGX_HTTP_INTERNAL_SERVER_ERROR ? NGX_LOG_ERR
                                                         : NGX_LOG_INFO;
    }
    ngx_log_error(level, r->connection->log, 0, "infer: %s", message);

    ngx_http_infer_metrics_error(r, status);
}

u_char *
ngx_http_infer_read_body(ngx_http_request_t *r, size_t *len)
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

/*
 * infer_allowed_models: the request's list of model names (its value in
 * r->pool), or a list with NULL data where the location does not limit
 * them.  Evaluated in the event loop; the list is only read afterwards,
 * so a thread of the pool may check it.
 */
ngx_int_t
ngx_http_infer_allowed_models(ngx_http_request_t *r, ngx_str_t *list)
{
    ngx_http_infer_loc_conf_t  *ilcf;

    ngx_str_null(list);
    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
    if (ilcf->allowed_models == NULL) {
        return NGX_OK;
    }
    if (ngx_http_complex_value(r, ilcf->allowed_models, list) != NGX_OK) {
        return NGX_ERROR;
    }
    if (list->data == NULL) {
        list->data = (u_char *) "";     /* empty, but set: none allowed */
    }
    return NGX_OK;
}

/* Whether m is a name of the list (separated by spaces or commas) or the
 * list holds "*"; an unset list allows every model, an empty one none. */
ngx_uint_t
ngx_http_infer_model_allowed(ngx_str_t *list, ngx_http_infer_model_t *m)
{
    u_char  *p, *end, *word;

    if (list->data == NULL) {
        return 1;
    }
    p = list->data;
    end = p + list->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ',')) {
            p++;
        }
        word = p;
        while (p < end && *p != ' ' && *p != ',') {
            p++;
        }
        if ((p - word == 1 && *word == '*')
            || ((size_t) (p - word) == m->name.len
                && ngx_strncmp(word, m->name.data, m->name.len) == 0))
        {
            return 1;
        }
    }
    return 0;
}

ngx_http_infer_model_t *
ngx_http_infer_find_model(ngx_http_infer_loc_conf_t *ilcf, const char *name,
    size_t len)
{
    ngx_uint_t                i;
    ngx_http_infer_model_t  **m;

    m = ilcf->models->elts;
    for (i = 0; i < ilcf->models->nelts; i++) {
        if (m[i]->name.len == len
            && ngx_strncmp(m[i]->name.data, name, len) == 0)
        {
            return m[i];
        }
    }
    return NULL;
}

ngx_uint_t
ngx_http_infer_rc_status(int rc)
{
    switch (rc) {
    case INFER_EINVAL:
    case INFER_ECONTEXT:
    case INFER_EOUTPUT:
        return NGX_HTTP_BAD_REQUEST;
    case INFER_EQUEUE_FULL:
    case INFER_ESHUTDOWN:
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* ---- streams --------------------------------------------------------------- */

/* A slow client: keep flushing what the filters hold whenever the socket
 * (or the HTTP/2 stream window) lets us. */
static void
ngx_http_infer_stream_writer(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_chain_t           *out;
    ngx_event_t           *wev;
    ngx_http_infer_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_infer_module);
    wev = r->connection->write;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "infer: client timed out taking the stream of "
                      "request %uL", ctx->gens[0].id);
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

ngx_int_t
ngx_http_infer_stream_start(ngx_http_infer_ctx_t *ctx,
    const char *content_type)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r = ctx->r;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type.data = (u_char *) content_type;
    r->headers_out.content_type.len = ngx_strlen(content_type);
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

    ctx->streaming = 1;
    r->write_event_handler = ngx_http_infer_stream_writer;
    return NGX_OK;
}

/* Buffers the client has taken are reused, so a long stream does not grow
 * the request pool by one buffer per token. */
ngx_int_t
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

    size = 0;
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
        cap = ngx_max(size, NGX_HTTP_INFER_STREAM_BUF);
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
 * generations pause (the engine keeps them and their KV cache) and resume
 * once half of it is free again, so worker memory is bounded by
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

    if (!ctx->paused && ctx->n_live > 0
        && unsent > (off_t) ilcf->unsent_limit)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "infer: request %uL paused, %O bytes unsent",
                       ctx->gens[0].id, unsent);
        ctx->paused = 1;
        ngx_http_infer_ctx_pause(ctx, 1);

    } else if (ctx->paused && unsent <= (off_t) ilcf->unsent_limit / 2) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "infer: request %uL resumed, %O bytes unsent",
                       ctx->gens[0].id, unsent);
        ctx->paused = 0;
        ngx_http_infer_ctx_pause(ctx, 0);
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

/* ---- big requests in the thread pool --------------------------------------- */

#if (NGX_THREADS)

typedef struct {
    ngx_http_request_t   *r;
    void                (*work)(void *data);
    void                (*done)(ngx_http_request_t *r, void *data);
    void                 *data;
} ngx_http_infer_task_t;

static void
ngx_http_infer_task_run(void *data, ngx_log_t *log)
{
    ngx_http_infer_task_t  *t = data;

    t->work(t->data);
}

/* Back in the event loop once the thread is done. */
static void
ngx_http_infer_task_done(ngx_event_t *ev)
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
        t->done(r, t->data);
    }
    ngx_http_run_posted_requests(c);
}

#endif

/*
 * A megabyte of JSON takes milliseconds to parse and its prompt a third of
 * a second to tokenize: time the event loop owes every other client of the
 * worker.  Such work runs in nginx's "default" thread pool instead; the
 * request cannot be freed while a thread holds it (r->main->blocked), as
 * with nginx's own thread tasks.
 */
ngx_int_t
ngx_http_infer_run_later(ngx_http_request_t *r, size_t bytes,
    void (*work)(void *data), void (*done)(ngx_http_request_t *r,
    void *data), void *data)
{
#if (NGX_THREADS)
    ngx_thread_task_t           *task;
    ngx_http_infer_task_t       *t;
    ngx_http_infer_main_conf_t  *imcf;

    imcf = ngx_http_get_module_main_conf(r, ngx_http_infer_module);
    if (imcf->thread_pool == NULL || bytes < NGX_HTTP_INFER_INLINE_BYTES) {
        return NGX_DECLINED;
    }

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_infer_task_t));
    if (task == NULL) {
        return NGX_DECLINED;
    }
    t = task->ctx;
    t->r = r;
    t->work = work;
    t->done = done;
    t->data = data;
    task->handler = ngx_http_infer_task_run;
    task->event.handler = ngx_http_infer_task_done;
    task->event.data = t;

    if (ngx_thread_task_post(imcf->thread_pool, task) != NGX_OK) {
        return NGX_DECLINED;
    }

    r->main->blocked++;
    r->read_event_handler = ngx_http_test_reading;
    return NGX_OK;
#else
    return NGX_DECLINED;
#endif
}

/* ---- health and stats ------------------------------------------------------ */

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

/* A request header by name, case-insensitively: the ones nginx does not
 * index in headers_in (Accept in some builds, traceparent, grpc-*). */
ngx_table_elt_t *
ngx_http_infer_find_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;
        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == len
                && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
            {
                return &h[i];
            }
        }
    }
    return NULL;
}
