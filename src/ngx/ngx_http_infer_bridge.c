/*
 * The bridge between an engine and the worker's event loop.
 *
 * The engine's eventfd gets a connection object of its own, registered for
 * read like any socket (ngx_notify belongs to nginx's thread pool).  Its
 * read handler drains the engine's event queue in the loop thread and hands
 * each event to its request context; contexts whose request is gone only
 * wait for their final event to be freed.
 */
#include "ngx_http_infer.h"

#define NGX_HTTP_INFER_POLL_BATCH  64

static void ngx_http_infer_bridge_read(ngx_event_t *rev);
static void ngx_http_infer_ctx_cleanup(void *data);
static void ngx_http_infer_ctx_timer(ngx_event_t *ev);
static void ngx_http_infer_ctx_free(ngx_http_infer_ctx_t *ctx);
static void ngx_http_infer_engine_failed(ngx_http_infer_model_t *m,
    ngx_log_t *log);

ngx_int_t
ngx_http_infer_bridge_start(ngx_cycle_t *cycle, ngx_http_infer_model_t *m)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(infer_engine_event_fd(m->engine), cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = m;
    c->read->handler = ngx_http_infer_bridge_read;
    c->read->log = cycle->log;
    c->write->log = cycle->log;

    /* Level-triggered: readable while the engine's counter is set; a poll
     * that leaves events behind sets it again. */
    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        c->fd = (ngx_socket_t) -1;
        ngx_free_connection(c);
        return NGX_ERROR;
    }

    m->conn = c;
    return NGX_OK;
}

/* At process exit, before the engine is destroyed (which closes the fd):
 * contexts are freed with their events; requests still open will never be
 * freed in an exiting process. */
void
ngx_http_infer_bridge_stop(ngx_http_infer_model_t *m)
{
    ngx_queue_t           *q;
    ngx_http_infer_ctx_t  *ctx;

    if (m->conn != NULL) {
        if (m->conn->read->active) {
            ngx_del_event(m->conn->read, NGX_READ_EVENT, 0);
        }
        /* The fd belongs to the engine, which closes it. */
        m->conn->fd = (ngx_socket_t) -1;
        ngx_free_connection(m->conn);
        m->conn = NULL;
    }

    while (!ngx_queue_empty(&m->ctxs)) {
        q = ngx_queue_head(&m->ctxs);
        ctx = ngx_queue_data(q, ngx_http_infer_ctx_t, queue);
        if (ctx->timer.timer_set) {
            ngx_del_timer(&ctx->timer);
        }
        ngx_http_infer_ctx_free(ctx);
    }
}

static void
ngx_http_infer_bridge_read(ngx_event_t *rev)
{
    int                      i, n;
    ngx_connection_t        *c, *rc;
    infer_event_t            ev[NGX_HTTP_INFER_POLL_BATCH];
    ngx_http_infer_ctx_t    *ctx;
    ngx_http_infer_gen_t    *gen;
    ngx_http_infer_model_t  *m;

    c = rev->data;
    m = c->data;

    do {
        n = infer_engine_poll(m->engine, ev, NGX_HTTP_INFER_POLL_BATCH);

        for (i = 0; i < n; i++) {
            gen = ev[i].user;
            ctx = gen->ctx;

            ngx_http_infer_metrics_event(ctx, gen, &ev[i]);

            if (ev[i].type != INFER_EVENT_TOKEN) {
                gen->live = 0;
                ctx->n_live--;
                ctx->prompt_tokens += ev[i].prompt_tokens;
                ctx->completion_tokens += ev[i].completion_tokens;
                if (gen == &ctx->gens[0]) {
                    ctx->finish = ngx_http_infer_finish_name(ev[i].type,
                                                             ev[i].finish);
                }
            }

            if (ctx->r == NULL) {
                /* The request is gone: drop the event, and the context
                 * with the last final one. */
                if (ctx->n_live == 0) {
                    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                                   "infer: request %uL released after its "
                                   "client left", gen->id);
                    ngx_http_infer_ctx_free(ctx);
                }

            } else if (ctx->finished) {
                /* Answered already (deadline); the cleanup frees it. */

            } else {
                rc = ctx->r->connection;
                ctx->frontend->event(ctx, (int) (gen - ctx->gens), &ev[i]);
                ngx_http_run_posted_requests(rc);
            }

            infer_event_release(&ev[i]);
        }

    } while (n == NGX_HTTP_INFER_POLL_BATCH);

    if (!m->failure_seen && !infer_engine_alive(m->engine)) {
        ngx_http_infer_engine_failed(m, c->log);
    }
}

/*
 * The engine stopped on its own after a failed step (its requests have had
 * their errors).  The backend may be beyond repair in this process (a
 * sticky CUDA error), so the worker finishes what its other engines serve
 * and exits; the master starts a fresh one.  Until then requests and the
 * health check get 503 with the reason.
 */
static void
ngx_http_infer_engine_failed(ngx_http_infer_model_t *m, ngx_log_t *log)
{
    const char  *why;

    m->failure_seen = 1;
    why = infer_engine_error(m->engine);

    if (ngx_process != NGX_PROCESS_WORKER) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "infer_model \"%V\": the engine stopped: %s",
                      &m->name, why ? why : "unknown error");
        return;
    }

    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "infer_model \"%V\": the engine stopped: %s; the worker "
                  "exits when its other requests are done, and the master "
                  "starts a new one", &m->name, why ? why : "unknown error");
    ngx_quit = 1;
}

ngx_http_infer_ctx_t *
ngx_http_infer_ctx_create(ngx_http_request_t *r, ngx_http_infer_model_t *m,
    const ngx_http_infer_frontend_t *frontend, int n_gens)
{
    int                    i;
    ngx_pool_cleanup_t    *cln;
    ngx_http_infer_ctx_t  *ctx;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ctx = ngx_calloc(sizeof(ngx_http_infer_ctx_t)
                     + n_gens * sizeof(ngx_http_infer_gen_t),
                     r->connection->log);
    if (ctx == NULL) {
        return NULL;
    }

    ctx->r = r;
    ctx->model = m;
    ctx->frontend = frontend;
    ctx->timeout = m->timeout;
    ctx->gens = (ngx_http_infer_gen_t *) (ctx + 1);
    ctx->n_gens = n_gens;
    ctx->route = ngx_http_infer_metrics_route(r);
    ngx_sprintf(ctx->request_id, "%08xD%08xD%08xD%Z",
                (uint32_t) ngx_random(), (uint32_t) ngx_random(),
                (uint32_t) ngx_random());
    for (i = 0; i < n_gens; i++) {
        ctx->gens[i].ctx = ctx;
    }

    ctx->timer.handler = ngx_http_infer_ctx_timer;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;

    ngx_queue_insert_tail(&m->ctxs, &ctx->queue);
    ngx_http_set_ctx(r, ctx, ngx_http_infer_module);

    cln->handler = ngx_http_infer_ctx_cleanup;
    cln->data = ctx;
    ctx->cln = cln;

    return ctx;
}

/*
 * infer_priority: the operator's value, when it gives one, is the
 * request's priority whatever its body asked for (a client cannot raise
 * its own); an empty value leaves the body's.  A value that is not an
 * integer within INFER_PRIORITY_MAX is the configuration's mistake: it is
 * logged and the body's is kept.
 */
static void
ngx_http_infer_priority(ngx_http_request_t *r, infer_request_t *req)
{
    ngx_str_t                   v;
    ngx_int_t                   n;
    ngx_uint_t                  neg;
    ngx_http_infer_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
    if (lcf->priority == NULL
        || ngx_http_complex_value(r, lcf->priority, &v) != NGX_OK
        || v.len == 0)
    {
        return;
    }
    neg = v.data[0] == '-';
    n = ngx_atoi(v.data + neg, v.len - neg);
    if (n == NGX_ERROR || n > INFER_PRIORITY_MAX) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "infer_priority: \"%V\" is not an integer from "
                      "-%d to %d, ignored", &v, INFER_PRIORITY_MAX,
                      INFER_PRIORITY_MAX);
        return;
    }
    req->priority = neg ? -(int) n : (int) n;
}

int
ngx_http_infer_ctx_submit(ngx_http_infer_ctx_t *ctx, int gen,
    infer_request_t *req)
{
    int                    rc;
    ngx_http_infer_gen_t  *g = &ctx->gens[gen];

    ngx_http_infer_priority(ctx->r, req);
    req->user = g;
    g->start_us = ngx_http_infer_now_us();
    g->first_us = 0;
    g->queue_us = -1;
    g->first_step = 0;
    g->last_step = 0;
    g->end_us = 0;
    rc = infer_engine_submit(ctx->model->engine, req, &g->id);
    if (rc != INFER_OK) {
        return rc;
    }
    g->live = 1;
    ctx->n_live++;
    if (!ctx->timer.timer_set) {
        ngx_add_timer(&ctx->timer, ctx->timeout);
        /* Notice a client that goes away while we wait. */
        ctx->r->read_event_handler = ngx_http_test_reading;
    }
    return INFER_OK;
}

void
ngx_http_infer_ctx_cancel(ngx_http_infer_ctx_t *ctx)
{
    int  i;

    if (ctx->cancelled || ctx->model->engine == NULL) {
        return;
    }
    ctx->cancelled = 1;
    for (i = 0; i < ctx->n_gens; i++) {
        if (ctx->gens[i].live) {
            infer_engine_cancel(ctx->model->engine, ctx->gens[i].id);
        }
    }
}

void
ngx_http_infer_ctx_pause(ngx_http_infer_ctx_t *ctx, int paused)
{
    int  i;

    if (ctx->model->engine == NULL) {
        return;
    }
    for (i = 0; i < ctx->n_gens; i++) {
        if (ctx->gens[i].live) {
            infer_engine_pause(ctx->model->engine, ctx->gens[i].id, paused);
        }
    }
}

/* Completes the response; the context may be freed before this returns. */
void
ngx_http_infer_ctx_finalize(ngx_http_infer_ctx_t *ctx, ngx_int_t rc)
{
    ctx->finished = 1;
    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }
    ngx_http_finalize_request(ctx->r, rc);
}

/* The request pool is going away: client gone, response done, or error. */
static void
ngx_http_infer_ctx_cleanup(void *data)
{
    ngx_http_infer_ctx_t  *ctx = data;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ctx->n_live > 0 && !ctx->cancelled) {
        ngx_log_error(NGX_LOG_INFO, ctx->r->connection->log, 0,
                      "infer: client gone, cancelling request %uL",
                      ctx->gens[0].id);
        ngx_http_infer_ctx_cancel(ctx);
    }

    ctx->r = NULL;

    if (ctx->n_live == 0) {
        ngx_http_infer_ctx_free(ctx);
    }
}

static void
ngx_http_infer_ctx_timer(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_http_infer_ctx_t  *ctx = ev->data;

    c = ctx->r->connection;

    ngx_http_infer_ctx_cancel(ctx);
    ctx->frontend->timeout(ctx);
    ngx_http_run_posted_requests(c);
}

static void
ngx_http_infer_ctx_free(ngx_http_infer_ctx_t *ctx)
{
    if (ctx->r != NULL) {
        /* Only at exit: the request outlives its context. */
        ctx->cln->handler = NULL;
    }
    ngx_queue_remove(&ctx->queue);
    ngx_free(ctx);
}
