/*
 * ngx_http_infer_module: types shared by the module's nginx-facing files.
 *
 * Each worker owns one engine per infer_model.  Engine threads never touch
 * nginx objects: they queue events and write the engine's eventfd, which
 * the worker's event loop watches through a connection of its own (the
 * bridge).  The bridge hands each event to the request context named by
 * event->user.
 */
#ifndef NGX_HTTP_INFER_H
#define NGX_HTTP_INFER_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include "infer.h"
#include "tokenizer.h"
#include "chat.h"
#include "openai.h"

#define NGX_HTTP_INFER_MAX_DEVICES  16
#define NGX_HTTP_INFER_ERRLEN       512
#define NGX_HTTP_INFER_INVALID      "invalid_request_error"

typedef struct {
    ngx_str_t                name;
    ngx_str_t                dir;              /* NUL-terminated */
    infer_engine_config_t    ecfg;
    int                      devices[NGX_HTTP_INFER_MAX_DEVICES];
    ngx_msec_t               timeout;          /* per-request deadline */
    infer_chat_format_t      chat_format;      /* AUTO: from tokenizer */

    /* Per worker, from init_process on. */
    infer_engine_t          *engine;
    ngx_connection_t        *conn;             /* watches the eventfd */
    ngx_queue_t              ctxs;             /* live request contexts */
    infer_chat_format_t      format;           /* resolved chat format */
    const char              *bos, *eos;        /* special token strings */
    int32_t                  end_id;           /* chat turn end, or -1 */
    time_t                   created;
    ngx_event_t              retry;            /* start the engine again */
    ngx_msec_t               retry_delay;
    u_char                   error[NGX_HTTP_INFER_ERRLEN];
                                               /* why it did not start */
    unsigned                 failure_seen:1;   /* its engine died: logged */
} ngx_http_infer_model_t;

typedef struct {
    ngx_array_t              models;           /* ngx_http_infer_model_t * */
#if (NGX_THREADS)
    ngx_thread_pool_t       *thread_pool;      /* big prompts' tokenizing */
#endif
} ngx_http_infer_main_conf_t;

typedef struct {
    ngx_array_t             *models;           /* ngx_http_infer_model_t * */
    ngx_uint_t               reject_log_level; /* 503s: overload, no engine */
    size_t                   unsent_limit;     /* output held before the
                                                  generation pauses */
} ngx_http_infer_loc_conf_t;

/*
 * One generation request.  Allocated outside the request pool: the engine
 * may report on it after the client has gone, so it lives until both the
 * HTTP request is freed (r == NULL) and the engine's final event has come
 * (engine_done).
 */
typedef struct {
    ngx_queue_t              queue;            /* in model->ctxs */
    ngx_http_request_t      *r;
    ngx_http_infer_model_t  *model;
    uint64_t                 id;               /* engine request id */
    ngx_event_t              timer;            /* deadline */
    ngx_pool_cleanup_t      *cln;              /* in r->pool */

    infer_oai_response_t     rsp;
    char                     rsp_id[40];

    ngx_chain_t             *free;             /* SSE buffers, r->pool */
    ngx_chain_t             *busy;

    u_char                  *text;             /* non-streamed output */
    size_t                   text_len;
    size_t                   text_cap;

    unsigned                 engine_done:1;
    unsigned                 cancelled:1;
    unsigned                 paused:1;         /* client not reading */
    unsigned                 finished:1;       /* response completed */
    unsigned                 stream:1;
    unsigned                 include_usage:1;
} ngx_http_infer_ctx_t;

extern ngx_module_t  ngx_http_infer_module;

/* The module (ngx_http_infer_module.c). */
const char *ngx_http_infer_model_unavailable(ngx_http_infer_model_t *m);

/* The bridge (ngx_http_infer_bridge.c). */
ngx_int_t ngx_http_infer_bridge_start(ngx_cycle_t *cycle,
    ngx_http_infer_model_t *m);
void ngx_http_infer_bridge_stop(ngx_http_infer_model_t *m);
ngx_http_infer_ctx_t *ngx_http_infer_ctx_create(ngx_http_request_t *r,
    ngx_http_infer_model_t *m);
void ngx_http_infer_ctx_finalize(ngx_http_infer_ctx_t *ctx, ngx_int_t rc);

/* The OpenAI front end (ngx_http_infer_openai.c). */
ngx_int_t ngx_http_infer_openai_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_infer_health_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_infer_stats_handler(ngx_http_request_t *r);
void ngx_http_infer_openai_event(ngx_http_infer_ctx_t *ctx,
    infer_event_t *ev);
void ngx_http_infer_openai_timeout(ngx_http_infer_ctx_t *ctx);

#endif
