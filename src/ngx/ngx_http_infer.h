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
#include "jinja.h"
#include "openai.h"
#include "toolcall.h"

#define NGX_HTTP_INFER_MAX_DEVICES  16
#define NGX_HTTP_INFER_ERRLEN       512
#define NGX_HTTP_INFER_INVALID      "invalid_request_error"

/* The protocols, as infer_metrics labels them (route=). */
#define NGX_HTTP_INFER_ROUTE_OPENAI   0
#define NGX_HTTP_INFER_ROUTE_PREDICT  1
#define NGX_HTTP_INFER_ROUTE_KSERVE   2
#define NGX_HTTP_INFER_ROUTE_GRPC     3
#define NGX_HTTP_INFER_ROUTES         4

typedef struct {
    ngx_str_t                name;
    ngx_str_t                dir;              /* NUL-terminated */
    infer_engine_config_t    ecfg;
    int                      devices[NGX_HTTP_INFER_MAX_DEVICES];
    ngx_msec_t               timeout;          /* per-request deadline */
    ngx_str_t                chat_template;    /* a template file, or
                                                  empty: the tokenizer's */
    /* From configuration time on (read-only, shared by the workers). */
    infer_jinja_tmpl_t      *tmpl;             /* the chat template */
    const char              *tmpl_from;        /* where it came from */
    json_t                  *special;          /* bos_token, eos_token */
    int32_t                  end_ids[4];       /* what ends a chat turn */
    int                      n_end_ids;
    infer_tool_fmt_t         tool_fmt;         /* tool calls in output */
    unsigned                 tool_fmt_set:1;   /* tool_parser= given */

    /* Per worker, from init_process on. */
    infer_engine_t          *engine;
    ngx_connection_t        *conn;             /* watches the eventfd */
    ngx_queue_t              ctxs;             /* live request contexts */
    time_t                   created;
    ngx_event_t              retry;            /* start the engine again */
    ngx_msec_t               retry_delay;
    u_char                   error[NGX_HTTP_INFER_ERRLEN];
                                               /* why it did not start */
    unsigned                 failure_seen:1;   /* its engine died: logged */

    /* Its figures in the infer_metrics zone (NULL: not counted), and the
     * engine's preemptions, steps and prefix cache queries and hits already
     * added there by this worker. */
    void                    *metrics;
    uint64_t                 preemptions_seen;
    infer_hist_t             step_us_seen;
    infer_hist_t             step_tokens_seen;
    uint64_t                 prefix_queries_seen;
    uint64_t                 prefix_hits_seen;
} ngx_http_infer_model_t;

typedef struct {
    ngx_array_t              models;           /* ngx_http_infer_model_t * */
#if (NGX_THREADS)
    ngx_thread_pool_t       *thread_pool;      /* big prompts' tokenizing */
#endif
    ngx_shm_zone_t          *metrics_zone;     /* infer_metrics, or NULL */
    void                    *metrics_sh;       /* what it holds */
} ngx_http_infer_main_conf_t;

typedef struct {
    ngx_array_t             *models;           /* ngx_http_infer_model_t * */
    ngx_uint_t               reject_log_level; /* 503s: overload, no engine */
    size_t                   unsent_limit;     /* output held before the
                                                  generation pauses */
    ngx_int_t                max_n;            /* OpenAI's n: choices of
                                                  one request */
    ngx_array_t             *api_keys;         /* SHA-256 digests, or
                                                  NULL: no check */
    ngx_http_complex_value_t *allowed_models;  /* the names a request may
                                                  use, or NULL: any */
    ngx_http_complex_value_t *priority;        /* infer_priority, or NULL */
    ngx_flag_t               proxy_stream_errors;
                                               /* a cut proxied SSE stream
                                                  ends with an error event */
} ngx_http_infer_loc_conf_t;

typedef struct ngx_http_infer_ctx_s  ngx_http_infer_ctx_t;

/*
 * A protocol's callbacks, as ngx_http_upstream_t has them per protocol:
 * the bridge hands each engine event and the deadline to the front end
 * that owns the request, and knows nothing of what it speaks.  Front ends
 * keep their state in ctx->data, in the request's pool: they are called
 * only while the request lives.
 */
typedef struct {
    const char  *name;
    /* an event of the generation ctx->gens[gen] */
    void       (*event)(ngx_http_infer_ctx_t *ctx, int gen,
                        infer_event_t *ev);
    /* the request's deadline passed (its generations are cancelled) */
    void       (*timeout)(ngx_http_infer_ctx_t *ctx);
} ngx_http_infer_frontend_t;

/* One engine request of a client request (a completion choice, a row of
 * a batch). */
typedef struct {
    ngx_http_infer_ctx_t    *ctx;
    uint64_t                 id;               /* engine request id */
    int64_t                  start_us;         /* submitted (monotonic) */
    int64_t                  first_us;         /* its first token, or 0 */
    int64_t                  last_us;          /* its latest token */
    int64_t                  end_us;           /* its final event, or 0 */
    int64_t                  queue_us;         /* the engine's queue time
                                                  (final event), or -1 */
    uint64_t                 first_step;       /* the engine steps that */
    uint64_t                 last_step;        /* ran it (final event) */
    unsigned                 live:1;           /* submitted, not done */
} ngx_http_infer_gen_t;

/*
 * A client request and its generations.  Allocated outside the request
 * pool: the engine may report on them after the client has gone, so it
 * lives until both the HTTP request is freed (r == NULL) and the final
 * event of every generation has come (n_live == 0).
 */
struct ngx_http_infer_ctx_s {
    ngx_queue_t                       queue;   /* in model->ctxs */
    ngx_http_request_t               *r;
    ngx_http_infer_model_t           *model;
    const ngx_http_infer_frontend_t  *frontend;
    void                             *data;    /* the front end's, r->pool */
    ngx_event_t                       timer;   /* deadline */
    ngx_msec_t                        timeout; /* from the first submit:
                                                  the model's, or what the
                                                  client asked for */
    ngx_pool_cleanup_t               *cln;     /* in r->pool */

    ngx_http_infer_gen_t             *gens;    /* [n_gens], with the ctx */
    int                               n_gens;
    int                               n_live;
    ngx_uint_t                        route;   /* NGX_HTTP_INFER_ROUTE_* */

    /* What the log variables show (ngx_http_infer_vars.c). */
    u_char                            request_id[25];
    int64_t                           prompt_tokens;   /* all generations' */
    int64_t                           completion_tokens;
    const char                       *finish;  /* gens[0]'s, or NULL */

    ngx_chain_t                      *free;    /* stream buffers, r->pool */
    ngx_chain_t                      *busy;

    unsigned                          cancelled:1;
    unsigned                          paused:1;   /* client not reading */
    unsigned                          finished:1; /* response completed */
    unsigned                          streaming:1;
};

extern ngx_module_t  ngx_http_infer_module;

/* The module (ngx_http_infer_module.c). */
const char *ngx_http_infer_model_unavailable(ngx_http_infer_model_t *m);

/* The bridge (ngx_http_infer_bridge.c). */
ngx_int_t ngx_http_infer_bridge_start(ngx_cycle_t *cycle,
    ngx_http_infer_model_t *m);
void ngx_http_infer_bridge_stop(ngx_http_infer_model_t *m);
ngx_http_infer_ctx_t *ngx_http_infer_ctx_create(ngx_http_request_t *r,
    ngx_http_infer_model_t *m, const ngx_http_infer_frontend_t *frontend,
    int n_gens);
/* Submits generation gen (its user pointer is set here); starts the
 * deadline with the first.  Returns the engine's code. */
int ngx_http_infer_ctx_submit(ngx_http_infer_ctx_t *ctx, int gen,
    infer_request_t *req);
/* Cancels the generations still running (a request that gives up). */
void ngx_http_infer_ctx_cancel(ngx_http_infer_ctx_t *ctx);
/* Pauses or resumes them (backpressure). */
void ngx_http_infer_ctx_pause(ngx_http_infer_ctx_t *ctx, int paused);
/* Completes the response; the context may be freed before this returns. */
void ngx_http_infer_ctx_finalize(ngx_http_infer_ctx_t *ctx, ngx_int_t rc);

/* Protocol-neutral I/O (ngx_http_infer_io.c). */
ngx_int_t ngx_http_infer_add_header(ngx_http_request_t *r, const char *key,
    const char *value);
/* Sends a whole response; body is malloc'd (the request owns it from
 * here, sent without a copy; NULL: 500). */
ngx_int_t ngx_http_infer_send(ngx_http_request_t *r, ngx_uint_t status,
    const char *content_type, char *body, size_t len);
ngx_int_t ngx_http_infer_send_json(ngx_http_request_t *r, ngx_uint_t status,
    char *body, size_t len);
ngx_table_elt_t *ngx_http_infer_find_header(ngx_http_request_t *r,
    const char *name);
/* Answers with an error body a front end made (malloc'd): its status,
 * Retry-After on a 503, and the log line of ngx_http_infer_log_reject. */
ngx_int_t ngx_http_infer_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message, const char *content_type, char *body, size_t len);
/* Logs a rejection: 503s at infer_reject_log_level, other 5xx at error,
 * the rest at info. */
void ngx_http_infer_log_reject(ngx_http_request_t *r, ngx_uint_t status,
    const char *message);
/* The whole request body as one NUL-terminated string in r->pool. */
u_char *ngx_http_infer_read_body(ngx_http_request_t *r, size_t *len);
/* A model of the location by name, or NULL. */
ngx_int_t ngx_http_infer_allowed_models(ngx_http_request_t *r,
    ngx_str_t *list);
ngx_uint_t ngx_http_infer_model_allowed(ngx_str_t *list,
    ngx_http_infer_model_t *m);
ngx_http_infer_model_t *ngx_http_infer_find_model(
    ngx_http_infer_loc_conf_t *ilcf, const char *name, size_t len);
/* The HTTP status of an engine return code (400, 503, 500...). */
ngx_uint_t ngx_http_infer_rc_status(int rc);
/* Streams: the header (content type, no length), then parts that are
 * malloc'd strings (freed here; a NULL part means out of memory), sent
 * through reused buffers with backpressure on the generations and
 * send_timeout; last ends the response body. */
ngx_int_t ngx_http_infer_stream_start(ngx_http_infer_ctx_t *ctx,
    const char *content_type);
ngx_int_t ngx_http_infer_stream_send(ngx_http_infer_ctx_t *ctx,
    char **parts, size_t *lens, ngx_uint_t n, ngx_uint_t last);
/* Runs work(data) in nginx's thread pool when the request is big enough
 * (bytes) to cost the event loop, then done(r, data) back in the loop
 * (not called if the client left meanwhile).  NGX_OK: posted;
 * NGX_DECLINED: the caller runs both itself. */
ngx_int_t ngx_http_infer_run_later(ngx_http_request_t *r, size_t bytes,
    void (*work)(void *data), void (*done)(ngx_http_request_t *r,
    void *data), void *data);
ngx_int_t ngx_http_infer_health_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_infer_stats_handler(ngx_http_request_t *r);

/* Prometheus metrics of all workers (ngx_http_infer_metrics.c). */
ngx_int_t ngx_http_infer_metrics_zone(ngx_conf_t *cf,
    ngx_http_infer_main_conf_t *imcf);
ngx_int_t ngx_http_infer_metrics_init_process(ngx_cycle_t *cycle);
void ngx_http_infer_metrics_exit_process(ngx_cycle_t *cycle);
/* Counts an engine event of g (in the loop, before its front end). */
void ngx_http_infer_metrics_event(ngx_http_infer_ctx_t *ctx,
    ngx_http_infer_gen_t *g, infer_event_t *ev);
/* Copies the engine's gauges of m into this worker's slot. */
void ngx_http_infer_metrics_engine(ngx_http_infer_model_t *m);
/* Counts an error answer. */
void ngx_http_infer_metrics_error(ngx_http_request_t *r, ngx_uint_t status);
ngx_int_t ngx_http_infer_metrics_handler(ngx_http_request_t *r);
ngx_uint_t ngx_http_infer_metrics_route(ngx_http_request_t *r);
int64_t ngx_http_infer_now_us(void);

/* Log variables and trace context (ngx_http_infer_vars.c). */
ngx_int_t ngx_http_infer_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_infer_trace_init(ngx_conf_t *cf);
const char *ngx_http_infer_finish_name(ngx_uint_t type, ngx_uint_t finish);

/* infer_proxy_stream_errors' body filter (ngx_http_infer_proxy.c). */
ngx_int_t ngx_http_infer_proxy_init(ngx_conf_t *cf);

/* infer_api_keys (ngx_http_infer_keys.c). */
char *ngx_http_infer_api_keys(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_infer_keys_init(ngx_conf_t *cf);
/* Ends a gRPC call with UNAUTHENTICATED (ngx_http_infer_grpc.c). */
ngx_int_t ngx_http_infer_grpc_unauthenticated(ngx_http_request_t *r,
    const char *message);

/*
 * A batch (ngx_http_infer_batch.c): the engine requests of one client
 * request, gathered until all have ended, then done() once (also when the
 * deadline passes: timed_out).  Results live with the request.
 */
typedef struct {
    u_char                  *text;             /* generated, UTF-8 */
    size_t                   text_len, text_cap;
    int32_t                 *tokens;           /* generated ids */
    int                      n_tokens;
    size_t                   tokens_cap;
    unsigned char           *rows;             /* n_rows x vocab */
    int                      n_rows;
    int                      rows_first;       /* position of row 0 */
    size_t                   rows_cap;
    int32_t                 *lp_ids;           /* logprobs by sequence */
    float                   *lp;               /* index, from lp_first */
    int32_t                 *lp_top_ids;       /* [n_lp][lp_top] */
    float                   *lp_top_lp;
    int                      n_lp, lp_first, lp_top;
    size_t                   lp_ids_cap, lp_cap, lp_top_ids_cap;
    size_t                   lp_top_lp_cap;
    infer_finish_t           finish;
    int                      prompt_tokens;
    int                      completion_tokens;
    char                     error[256];       /* why it failed */
    unsigned                 f16:1;            /* rows are halves */
    unsigned                 done:1;
    unsigned                 failed:1;
} ngx_http_infer_result_t;

typedef struct ngx_http_infer_batch_s  ngx_http_infer_batch_t;

struct ngx_http_infer_batch_s {
    ngx_http_infer_ctx_t     *ctx;
    ngx_http_infer_result_t  *results;         /* [n] */
    int                       n;
    int                       n_submitted;
    int                       n_done;
    size_t                    output_bytes;    /* asked for by all rows */
    void                    (*done)(ngx_http_infer_batch_t *b);
    void                     *data;            /* the front end's */
    unsigned                  failed:1;        /* some row did */
    unsigned                  timed_out:1;
};

ngx_http_infer_batch_t *ngx_http_infer_batch_create(ngx_http_request_t *r,
    ngx_http_infer_model_t *m, int n,
    void (*done)(ngx_http_infer_batch_t *b), void *data);
/* Submits row i; the sum of the rows' outputs has the engine's cap of
 * one request (INFER_EOUTPUT past it). */
int ngx_http_infer_batch_submit(ngx_http_infer_batch_t *b, int i,
    infer_request_t *req);

/* The front ends: OpenAI (ngx_http_infer_openai.c), the /predict tensor
 * service (ngx_http_infer_predict.c), KServe v2 REST
 * (ngx_http_infer_kserve.c), KServe v2 gRPC (ngx_http_infer_grpc.c). */
ngx_int_t ngx_http_infer_openai_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_infer_predict_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_infer_kserve_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_infer_grpc_handler(ngx_http_request_t *r);

#endif
