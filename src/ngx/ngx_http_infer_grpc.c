/*
 * KServe v2 gRPC front end (infer_grpc NAME ...;): the methods of
 * inference.GRPCInferenceService on nginx's HTTP/2 listeners, h2c and TLS
 * alike.
 *
 * The request body is read as it arrives (request_body_no_buffering, as
 * nginx's grpc proxy reads it), cut into messages by the gRPC framing
 * (src/proto/grpc.c) and decoded by the KServe codec's protobuf half
 * (src/proto/kserve.c).  A unary ModelInfer is the REST front end's tensor
 * job (ngx_http_infer_kserve.h) with a protobuf answer; ModelStreamInfer
 * starts a generation for every message of the stream, up to
 * NGX_HTTP_INFER_GRPC_SLOTS at once, and sends its tokens back as they come,
 * each response with the request's id and Triton's triton_final_response
 * parameter, true on the last, as Triton's decoupled models do.
 *
 * Every answer ends with grpc-status and grpc-message: in trailers after
 * the messages, or, when nothing was sent, in a trailers-only response.
 */
#include "ngx_http_infer_kserve.h"
#include "grpc.h"

/* Generations at once on one ModelStreamInfer stream. */
#define NGX_HTTP_INFER_GRPC_SLOTS   64
#define NGX_HTTP_INFER_GRPC_TYPE    "application/grpc"
/* How often an open stream looks whether its worker is shutting down. */
#define NGX_HTTP_INFER_GRPC_WATCH   1000

typedef struct {
    ngx_http_request_t         *r;
    infer_grpc_method_t         method;
    infer_grpc_reader_t         rd;
    size_t                      max;           /* a message's bound */
    ngx_msec_t                  timeout;       /* grpc-timeout; 0: none */
    unsigned char              *msg;           /* a unary method's one */
    size_t                      msg_len;
    ngx_uint_t                  n_msgs;
    /* ModelStreamInfer */
    ngx_http_infer_ctx_t       *ctx;
    ngx_http_infer_ks_t        *jobs[NGX_HTTP_INFER_GRPC_SLOTS];
    ngx_event_t                 watch;         /* the worker's shutdown */
    unsigned                    body_done:1;
    unsigned                    ended:1;
} ngx_http_infer_grpc_t;

static void ngx_http_infer_grpc_read(ngx_http_request_t *r);
static void ngx_http_infer_grpc_event(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev);
static void ngx_http_infer_grpc_timeout(ngx_http_infer_ctx_t *ctx);
static void ngx_http_infer_grpc_abort(ngx_http_infer_grpc_t *g,
    infer_grpc_status_t code, const char *message, ngx_uint_t http);

static const ngx_http_infer_frontend_t  ngx_http_infer_grpc_frontend = {
    "grpc",
    ngx_http_infer_grpc_event,
    ngx_http_infer_grpc_timeout
};

static void
ngx_http_infer_grpc_cleanup(void *data)
{
    int                     i;
    ngx_http_infer_grpc_t  *g = data;

    if (g->watch.timer_set) {
        ngx_del_timer(&g->watch);
    }
    for (i = 0; i < NGX_HTTP_INFER_GRPC_SLOTS; i++) {
        if (g->jobs[i] != NULL) {
            ngx_http_infer_ks_free(g->jobs[i]);
            free(g->jobs[i]);
        }
    }
    infer_grpc_reader_free(&g->rd);
    free(g->msg);
}

/* The request's state: found by its cleanup, since the module's context
 * slot belongs to the bridge's context once a generation runs. */
static ngx_http_infer_grpc_t *
ngx_http_infer_grpc_of(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_infer_grpc_cleanup) {
            return cln->data;
        }
    }
    return NULL;
}

/* ---- status ------------------------------------------------------------- */

/* grpc-status and grpc-message into a header list (trailers, or the
 * headers of a trailers-only response). */
static ngx_int_t
ngx_http_infer_grpc_status(ngx_http_request_t *r, ngx_list_t *list,
    infer_grpc_status_t code, const char *message)
{
    char             *enc;
    u_char           *v;
    size_t            len;
    ngx_table_elt_t  *h;

    v = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    h = ngx_list_push(list);
    if (v == NULL || h == NULL) {
        return NGX_ERROR;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "grpc-status");
    h->value.data = v;
    h->value.len = ngx_sprintf(v, "%d", (int) code) - v;

    if (message == NULL || message[0] == '\0') {
        return NGX_OK;
    }
    enc = infer_grpc_percent(message, ngx_strlen(message));
    if (enc == NULL) {
        return NGX_ERROR;
    }
    len = ngx_strlen(enc);
    v = ngx_pnalloc(r->pool, len);
    h = ngx_list_push(list);
    if (v == NULL || h == NULL) {
        free(enc);
        return NGX_ERROR;
    }
    ngx_memcpy(v, enc, len);
    free(enc);
    h->hash = 1;
    ngx_str_set(&h->key, "grpc-message");
    h->value.data = v;
    h->value.len = len;
    return NGX_OK;
}

/*
 * Ends the call with a status: in a trailers-only response when nothing
 * was sent yet, else in the trailers after what was.  http is the status
 * the error has in the REST front ends, for the same log line.
 */
static ngx_int_t
ngx_http_infer_grpc_end(ngx_http_request_t *r, infer_grpc_status_t code,
    const char *message, ngx_uint_t http)
{
    ngx_int_t               rc;
    ngx_http_infer_grpc_t  *g;

    g = ngx_http_infer_grpc_of(r);
    if (g != NULL) {
        if (g->ended) {
            return NGX_OK;
        }
        g->ended = 1;
    }
    if (code != INFER_GRPC_OK) {
        ngx_http_infer_log_reject(r, http, message);
    }

    if (r->header_sent) {
        if (ngx_http_infer_grpc_status(r, &r->headers_out.trailers, code,
                                       message)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
        return ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, NGX_HTTP_INFER_GRPC_TYPE);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    ngx_http_clear_content_length(r);
    if (ngx_http_infer_grpc_status(r, &r->headers_out.headers, code,
                                   message)
        != NGX_OK)
    {
        return NGX_ERROR;
    }
    r->header_only = 1;
    rc = ngx_http_send_header(r);
    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}

/* infer_api_keys: no key, or a wrong one. */
ngx_int_t
ngx_http_infer_grpc_unauthenticated(ngx_http_request_t *r,
    const char *message)
{
    return ngx_http_infer_grpc_end(r, INFER_GRPC_UNAUTHENTICATED, message,
                                   NGX_HTTP_UNAUTHORIZED);
}

static ngx_int_t
ngx_http_infer_grpc_error(ngx_http_request_t *r, infer_ks_error_t *err)
{
    return ngx_http_infer_grpc_end(r, infer_grpc_status_of_http(err->status),
                                   err->message, err->status);
}

/* A unary method's answer: its one message (malloc'd, framed; NULL: out
 * of memory) and status OK in the trailers. */
static ngx_int_t
ngx_http_infer_grpc_reply(ngx_http_request_t *r, unsigned char *msg,
    size_t len)
{
    ngx_http_infer_grpc_t  *g;

    if (msg == NULL) {
        return ngx_http_infer_grpc_end(r, INFER_GRPC_INTERNAL,
                                       "out of memory",
                                       NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
    if (ngx_http_infer_grpc_status(r, &r->headers_out.trailers,
                                   INFER_GRPC_OK, NULL)
        != NGX_OK)
    {
        free(msg);
        return NGX_ERROR;
    }
    g = ngx_http_infer_grpc_of(r);
    if (g != NULL) {
        g->ended = 1;
    }
    r->expect_trailers = 1;
    return ngx_http_infer_send(r, NGX_HTTP_OK, NGX_HTTP_INFER_GRPC_TYPE,
                               (char *) msg, len);
}

/* ---- the simple methods ---------------------------------------------------- */

/* The model a ModelReady, ModelMetadata or ModelInfer request names, or
 * NULL with NOT_FOUND in err. */
static ngx_http_infer_model_t *
ngx_http_infer_grpc_model(ngx_http_request_t *r, const char *name,
    const char *version, infer_ks_error_t *err)
{
    ngx_http_infer_model_t     *m;
    ngx_http_infer_loc_conf_t  *ilcf;

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
    m = ngx_http_infer_find_model(ilcf, name, ngx_strlen(name));
    if (m == NULL) {
        infer_ks_set_error(err, NGX_HTTP_NOT_FOUND, "unknown model '%.256s'",
                           name);
        return NULL;
    }
    if (ngx_http_infer_ks_forbidden(r, m, err)) {
        return NULL;
    }
    if (version[0] != '\0'
        && ngx_strcmp(version, NGX_HTTP_INFER_KS_VERSION) != 0)
    {
        infer_ks_set_error(err, NGX_HTTP_NOT_FOUND, "unknown version "
                           "'%.64s' of model '%s': its only version is "
                           NGX_HTTP_INFER_KS_VERSION, version,
                           (char *) m->name.data);
        return NULL;
    }
    return m;
}

static ngx_int_t
ngx_http_infer_grpc_simple(ngx_http_request_t *r, ngx_http_infer_grpc_t *g)
{
    int                          ready;
    char                        *name, *version;
    size_t                       len;
    ngx_uint_t                   i;
    unsigned char               *out;
    infer_ks_error_t             err;
    ngx_http_infer_model_t      *m, **mp;
    ngx_http_infer_loc_conf_t   *ilcf;

    len = 0;
    switch (g->method) {

    case INFER_GRPC_SERVER_LIVE:
        /* the worker answers: it lives */
        out = infer_ks_pb_flag(1, 1, &len);
        break;

    case INFER_GRPC_SERVER_READY:
        ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
        mp = ilcf->models->elts;
        ready = 1;
        for (i = 0; i < ilcf->models->nelts; i++) {
            ready &= ngx_http_infer_model_unavailable(mp[i]) == NULL;
        }
        out = infer_ks_pb_flag(0, ready, &len);
        break;

    case INFER_GRPC_SERVER_METADATA:
        out = infer_ks_pb_server_metadata(NGINX_VERSION, &len);
        break;

    default: /* ModelReady, ModelMetadata */
        if (infer_ks_pb_model_ref(g->msg, g->msg_len, &name, &version) != 0) {
            return ngx_http_infer_grpc_end(r, INFER_GRPC_INVALID_ARGUMENT,
                                           "malformed protobuf: the message "
                                           "is not a model's name and "
                                           "version", NGX_HTTP_BAD_REQUEST);
        }
        m = ngx_http_infer_grpc_model(r, name, version, &err);
        free(name);
        free(version);
        if (m == NULL) {
            return ngx_http_infer_grpc_error(r, &err);
        }
        if (g->method == INFER_GRPC_MODEL_READY) {
            out = infer_ks_pb_flag(0, !ngx_http_infer_ks_unavailable(m,
                                                                     &err),
                                   &len);
            break;
        }
        /* the vocabulary (the logits' shape) is the engine's to tell */
        if (ngx_http_infer_ks_unavailable(m, &err)) {
            return ngx_http_infer_grpc_error(r, &err);
        }
        out = infer_ks_pb_model_metadata((char *) m->name.data,
                                         NGX_HTTP_INFER_KS_VERSION,
                                         infer_engine_vocab_size(m->engine),
                                         &len);
    }

    return ngx_http_infer_grpc_reply(r, out, len);
}

/* ---- ModelInfer ------------------------------------------------------------ */

static void
ngx_http_infer_grpc_encode(void *data)
{
    u_char               **own;
    infer_ks_piece_t      *pieces;
    infer_ks_output_t      out[INFER_KS_MAX_OUTPUTS];
    ngx_http_infer_ks_t   *job = data;

    job->reply = NULL;
    if (ngx_http_infer_ks_outputs(job, out, &pieces, &own) == NGX_OK) {
        job->reply = (char *) infer_ks_pb_infer_body(
                         (const char *) job->model->name.data,
                         NGX_HTTP_INFER_KS_VERSION, job->req.id, out,
                         job->req.n_outputs, -1, 0, &job->reply_len);
    }
    ngx_http_infer_ks_outputs_free(job, pieces, own);
}

static void
ngx_http_infer_grpc_answer(ngx_http_request_t *r, void *data)
{
    ngx_int_t             rc;
    ngx_http_infer_ks_t  *job = data;

    if (job->bad_row) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "infer: row %d has %d logits rows, not %d",
                      job->bad_row - 1,
                      job->batch->results[job->bad_row - 1].n_rows,
                      job->req.logits_last ? 1 : job->req.seq);
    }
    rc = ngx_http_infer_grpc_reply(r, (unsigned char *) job->reply,
                                   job->reply_len);
    /* the message is the request's now */
    job->reply = NULL;
    ngx_http_infer_ctx_finalize(job->batch->ctx, rc);
}

static ngx_int_t
ngx_http_infer_grpc_infer(ngx_http_request_t *r, ngx_http_infer_grpc_t *g)
{
    infer_ks_error_t      err;
    infer_ks_tensors_t    set;
    ngx_http_infer_ks_t  *job;

    if (infer_ks_parse_pb(g->msg, g->msg_len, &set, &err) != 0) {
        return ngx_http_infer_grpc_error(r, &err);
    }
    job = ngx_http_infer_ks_job(r);
    if (job == NULL) {
        infer_ks_tensors_free(&set);
        return NGX_ERROR;
    }
    /* the job frees the set from here */
    job->set = set;
    job->model = ngx_http_infer_grpc_model(r, set.model, set.version,
                                           &job->err);
    if (job->model == NULL) {
        return ngx_http_infer_grpc_error(r, &job->err);
    }
    job->kind = INFER_KS_ROUTE_INFER;
    job->pb = 1;
    job->timeout = g->timeout;
    job->send_error = ngx_http_infer_grpc_error;
    job->encode = ngx_http_infer_grpc_encode;
    job->answer = ngx_http_infer_grpc_answer;
    job->data = g;

    r->main->count++;
    ngx_http_infer_ks_run(r, job, g->msg_len);
    return NGX_DONE;
}

/* ---- ModelStreamInfer ------------------------------------------------------ */

/* Sends one message of the stream (malloc'd, framed; NULL: out of
 * memory), the response header first. */
static ngx_int_t
ngx_http_infer_grpc_send(ngx_http_infer_grpc_t *g, unsigned char *msg,
    size_t len)
{
    char                *part = (char *) msg;
    ngx_http_request_t  *r = g->r;

    if (!r->header_sent) {
        r->expect_trailers = 1;
        if (ngx_http_infer_stream_start(g->ctx, NGX_HTTP_INFER_GRPC_TYPE)
            != NGX_OK)
        {
            free(msg);
            return NGX_ERROR;
        }
    }
    return ngx_http_infer_stream_send(g->ctx, &part, &len, 1, 0);
}

/* A response of job's generation: a piece of its text, final or not. */
static ngx_int_t
ngx_http_infer_grpc_text(ngx_http_infer_grpc_t *g, ngx_http_infer_ks_t *job,
    const char *text, size_t text_len, int final)
{
    size_t             len;
    unsigned char     *msg;
    infer_ks_piece_t   piece;
    infer_ks_output_t  out;

    piece.p = text ? text : "";
    piece.len = text_len;
    ngx_memzero(&out, sizeof(infer_ks_output_t));
    out.name = "text_output";
    out.dtype = INFER_KS_BYTES;
    out.n_dims = job->req.text_rank;
    out.dims[0] = 1;
    out.dims[1] = 1;
    out.binary = 1;
    out.pieces = &piece;
    out.n_pieces = 1;

    len = 0;
    msg = infer_ks_pb_infer_body((const char *) job->model->name.data,
                                 NGX_HTTP_INFER_KS_VERSION, job->req.id,
                                 &out, 1, final, 1, &len);
    return ngx_http_infer_grpc_send(g, msg, len);
}

/* The error of one request of the stream, which goes on (Triton's
 * ModelStreamInferResponse.error_message). */
static ngx_int_t
ngx_http_infer_grpc_request_error(ngx_http_infer_grpc_t *g,
    infer_ks_error_t *err)
{
    size_t          len;
    unsigned char  *msg;

    ngx_http_infer_log_reject(g->r, err->status, err->message);
    len = 0;
    msg = infer_ks_pb_stream_error(err->message, &len);
    return ngx_http_infer_grpc_send(g, msg, len);
}

/* The stream is over when the client has sent all and every generation
 * has ended. */
static void
ngx_http_infer_grpc_maybe_end(ngx_http_infer_grpc_t *g)
{
    ngx_int_t  rc;

    if (g->ended || (g->ctx && g->ctx->n_live > 0)) {
        return;
    }
    if (!g->body_done) {
        if (ngx_exiting || ngx_terminate) {
            /* a stream would keep an exiting worker: its client is told
             * to call again, which reaches a new one */
            ngx_http_infer_grpc_abort(g, INFER_GRPC_UNAVAILABLE, "the worker "
                                      "is shutting down: call again",
                                      NGX_HTTP_SERVICE_UNAVAILABLE);
        }
        return;
    }
    rc = ngx_http_infer_grpc_end(g->r, INFER_GRPC_OK, NULL, NGX_HTTP_OK);
    if (g->ctx != NULL) {
        ngx_http_infer_ctx_finalize(g->ctx, rc);
    } else {
        ngx_http_finalize_request(g->r, rc);
    }
}

/* Ends the whole call with an error (the generations stop). */
static void
ngx_http_infer_grpc_abort(ngx_http_infer_grpc_t *g, infer_grpc_status_t code,
    const char *message, ngx_uint_t http)
{
    ngx_int_t  rc;

    if (g->ended) {
        return;
    }
    rc = ngx_http_infer_grpc_end(g->r, code, message, http);
    if (g->ctx != NULL) {
        ngx_http_infer_ctx_cancel(g->ctx);
        ngx_http_infer_ctx_finalize(g->ctx, rc);
    } else {
        ngx_http_finalize_request(g->r, rc);
    }
}

/* The stream's context, made with the first message's model: one stream
 * serves one model. */
static ngx_int_t
ngx_http_infer_grpc_stream_ctx(ngx_http_infer_grpc_t *g,
    ngx_http_infer_model_t *m)
{
    ngx_http_infer_ctx_t  *ctx;

    ctx = ngx_http_infer_ctx_create(g->r, m, &ngx_http_infer_grpc_frontend,
                                    NGX_HTTP_INFER_GRPC_SLOTS);
    if (ctx == NULL) {
        return NGX_ERROR;
    }
    ctx->data = g;
    g->ctx = ctx;
    if (g->timeout) {
        /* the call's deadline, from its first request on */
        ctx->timeout = g->timeout;
        ngx_add_timer(&ctx->timer, g->timeout);
    }
    return NGX_OK;
}

/* Starts the generation of one request message, or answers its error on
 * the stream.  NGX_ERROR: the stream cannot go on; NGX_DONE: the call has
 * ended (and g may be gone). */
static ngx_int_t
ngx_http_infer_grpc_stream_msg(ngx_http_infer_grpc_t *g,
    const unsigned char *msg, size_t len)
{
    int                          i, rc;
    infer_request_t              ir;
    ngx_http_infer_ks_t         *job;
    ngx_http_infer_model_t      *m;
    ngx_http_infer_model_t     **mp;
    ngx_http_infer_loc_conf_t   *ilcf;
    ngx_http_request_t          *r = g->r;

    if (ngx_exiting || ngx_terminate) {
        ngx_http_infer_grpc_abort(g, INFER_GRPC_UNAVAILABLE, "the worker is "
                                  "shutting down: call again",
                                  NGX_HTTP_SERVICE_UNAVAILABLE);
        return NGX_DONE;
    }

    job = calloc(1, sizeof(ngx_http_infer_ks_t));
    if (job == NULL) {
        return NGX_ERROR;
    }

    m = NULL;
    if (infer_ks_parse_pb(msg, len, &job->set, &job->err) == 0) {
        m = ngx_http_infer_grpc_model(r, job->set.model, job->set.version,
                                      &job->err);
    }

    if (g->ctx == NULL) {
        ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
        mp = ilcf->models->elts;
        if (ngx_http_infer_grpc_stream_ctx(g, m ? m : mp[0]) != NGX_OK) {
            goto fatal;
        }
    }

    if (m == NULL) {
        goto failed;
    }
    if (m != g->ctx->model) {
        infer_ks_set_error(&job->err, NGX_HTTP_BAD_REQUEST, "this stream "
                           "serves model '%s', its first request's: open "
                           "another stream for '%s'",
                           (char *) g->ctx->model->name.data,
                           (char *) m->name.data);
        goto failed;
    }
    if (ngx_http_infer_ks_unavailable(m, &job->err)) {
        goto failed;
    }

    job->kind = INFER_KS_ROUTE_INFER;
    job->pb = 1;
    job->model = m;
    job->timeout = m->timeout;
    job->tok = infer_engine_tokenizer(m->engine);
    job->vocab = infer_engine_vocab_size(m->engine);
    job->context = infer_engine_context_length(m->engine);
    ngx_http_infer_ks_prepare(job);
    if (job->rc != NGX_OK) {
        goto failed;
    }
    if (job->req.kind != INFER_KS_TEXT || job->req.n_rows != 1) {
        infer_ks_set_error(&job->err, NGX_HTTP_BAD_REQUEST,
                           "ModelStreamInfer streams the tokens of one "
                           "text_input: send input_ids and batches to "
                           "ModelInfer");
        goto failed;
    }

    for (i = 0; i < NGX_HTTP_INFER_GRPC_SLOTS; i++) {
        if (g->jobs[i] == NULL && !g->ctx->gens[i].live) {
            break;
        }
    }
    if (i == NGX_HTTP_INFER_GRPC_SLOTS) {
        infer_ks_set_error(&job->err, NGX_HTTP_TOO_MANY_REQUESTS, "%d "
                           "requests of this stream are running: wait for "
                           "one to end", NGX_HTTP_INFER_GRPC_SLOTS);
        goto failed;
    }

    ngx_http_infer_ks_row(job, 0, &ir);
    rc = ngx_http_infer_ctx_submit(g->ctx, i, &ir);
    /* the stream's body is still ours to read */
    r->read_event_handler = ngx_http_infer_grpc_read;
    if (rc != INFER_OK) {
        ngx_http_infer_ks_submit_error(job, 0, rc,
                                       infer_engine_output_bytes(m->engine,
                                                                 &ir),
                                       &job->err);
        goto failed;
    }
    if (g->timeout == 0) {
        /* past the deadline of the last generation started */
        ngx_add_timer(&g->ctx->timer, g->ctx->timeout);
    }
    g->jobs[i] = job;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "infer: grpc stream request %uL in slot %d",
                   g->ctx->gens[i].id, i);

    if (!job->req.settings[0].exclude_input) {
        return ngx_http_infer_grpc_text(g, job, job->req.texts[0],
                                        job->req.text_lens[0], 0)
               == NGX_ERROR ? NGX_ERROR : NGX_OK;
    }
    return NGX_OK;

failed:

    rc = ngx_http_infer_grpc_request_error(g, &job->err);
    ngx_http_infer_ks_free(job);
    free(job);
    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;

fatal:

    ngx_http_infer_ks_free(job);
    free(job);
    return NGX_ERROR;
}

static void
ngx_http_infer_grpc_event(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev)
{
    ngx_int_t               rc;
    const char             *finish;
    infer_ks_error_t        err;
    ngx_http_infer_ks_t    *job;
    ngx_http_infer_grpc_t  *g = ctx->data;

    job = g->jobs[gen];
    if (job == NULL) {
        return;
    }

    if (ev->type == INFER_EVENT_TOKEN) {
        if (ev->text_len > 0
            && ngx_http_infer_grpc_text(g, job, ev->text, ev->text_len, 0)
               == NGX_ERROR)
        {
            /* the client is gone or memory ran out: the cleanup cancels */
            ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
        }
        return;
    }

    finish = ev->type == INFER_EVENT_DONE
             ? infer_ks_finish_reason(ev->finish) : NULL;
    if (finish != NULL) {
        /* the last response: what text is left, marked final */
        rc = ngx_http_infer_grpc_text(g, job, ev->text, ev->text_len, 1);

    } else {
        if (ev->type == INFER_EVENT_DONE
            && ev->finish == INFER_FINISH_DEADLINE)
        {
            infer_ks_set_error(&err, NGX_HTTP_GATEWAY_TIME_OUT, "request "
                               "'%s' did not finish within %lu ms",
                               job->req.id ? job->req.id : "",
                               (unsigned long) job->timeout);
        } else if (ev->type == INFER_EVENT_DONE) {
            infer_ks_set_error(&err, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "the engine cancelled request '%s'",
                               job->req.id ? job->req.id : "");
        } else {
            infer_ks_set_error(&err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                               "generation failed: %s",
                               ev->text ? ev->text : "engine error");
        }
        rc = ngx_http_infer_grpc_request_error(g, &err);
    }

    ngx_http_infer_ks_free(job);
    free(job);
    g->jobs[gen] = NULL;

    if (rc == NGX_ERROR) {
        ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
        return;
    }
    if (ctx->n_live == 0 && g->timeout == 0 && ctx->timer.timer_set) {
        /* an idle stream waits under client_body_timeout alone */
        ngx_del_timer(&ctx->timer);
    }
    ngx_http_infer_grpc_maybe_end(g);
}

static void
ngx_http_infer_grpc_timeout(ngx_http_infer_ctx_t *ctx)
{
    ngx_http_infer_grpc_t  *g = ctx->data;

    ngx_log_error(NGX_LOG_WARN, ctx->r->connection->log, 0,
                  "infer: grpc stream passed its deadline");
    ngx_http_infer_grpc_abort(g, INFER_GRPC_DEADLINE_EXCEEDED,
                              "the call did not finish within its deadline",
                              NGX_HTTP_GATEWAY_TIME_OUT);
}

/* A stream that waits for its client's next message hears of a shutdown
 * from this (cancelable: it keeps no worker alive by itself). */
static void
ngx_http_infer_grpc_watch(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_http_infer_grpc_t  *g = ev->data;

    c = g->r->connection;
    /* armed first: a call that ends here is freed with its timer */
    ngx_add_timer(&g->watch, NGX_HTTP_INFER_GRPC_WATCH);
    ngx_http_infer_grpc_maybe_end(g);
    ngx_http_run_posted_requests(c);
}

/* ---- the body -------------------------------------------------------------- */

/* What the body buffers hold, into the reader (consumed, so that nginx
 * reuses them and opens the stream's window again). */
static ngx_int_t
ngx_http_infer_grpc_take(ngx_http_request_t *r, ngx_http_infer_grpc_t *g,
    ngx_uint_t *taken)
{
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *taken = 0;
    if (r->request_body == NULL) {
        return NGX_OK;
    }
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        if (ngx_buf_in_memory(b)) {
            if (infer_grpc_feed(&g->rd, b->pos, b->last - b->pos) != 0) {
                return NGX_ERROR;
            }
            *taken += b->last - b->pos;
            b->pos = b->last;
            continue;
        }
        if (!b->in_file || b->file_last == b->file_pos) {
            continue;
        }
        /* a body that came whole before we read it may be in a file */
        p = ngx_pnalloc(r->pool, b->file_last - b->file_pos);
        if (p == NULL) {
            return NGX_ERROR;
        }
        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);
        if (n != b->file_last - b->file_pos
            || infer_grpc_feed(&g->rd, p, n) != 0)
        {
            return NGX_ERROR;
        }
        *taken += n;
        b->file_pos = b->file_last;
    }
    r->request_body->bufs = NULL;
    return NGX_OK;
}

/* The messages the reader holds: a stream's each start a generation, a
 * unary method's one is kept. */
static ngx_int_t
ngx_http_infer_grpc_messages(ngx_http_infer_grpc_t *g)
{
    int                   rc;
    char                  err[256];
    size_t                len;
    const unsigned char  *msg;

    for ( ;; ) {
        rc = infer_grpc_next(&g->rd, g->max, &msg, &len, err, sizeof(err));
        if (rc == 0) {
            return NGX_OK;
        }
        if (rc < 0) {
            ngx_http_infer_grpc_abort(g, rc == INFER_GRPC_ETOO_LONG
                                         ? INFER_GRPC_RESOURCE_EXHAUSTED
                                         : INFER_GRPC_UNIMPLEMENTED,
                                      err, rc == INFER_GRPC_ETOO_LONG
                                           ? NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
                                           : NGX_HTTP_UNSUPPORTED_MEDIA_TYPE);
            return NGX_DONE;
        }
        g->n_msgs++;

        if (g->method == INFER_GRPC_MODEL_STREAM_INFER) {
            rc = ngx_http_infer_grpc_stream_msg(g, msg, len);
            if (rc == NGX_DONE) {
                return NGX_DONE;
            }
            if (rc != NGX_OK) {
                ngx_http_infer_grpc_abort(g, INFER_GRPC_INTERNAL,
                                          "the stream failed",
                                          NGX_HTTP_INTERNAL_SERVER_ERROR);
                return NGX_DONE;
            }
            continue;
        }

        if (g->n_msgs > 1) {
            ngx_http_infer_grpc_abort(g, INFER_GRPC_UNIMPLEMENTED,
                                      "a unary method takes one message",
                                      NGX_HTTP_BAD_REQUEST);
            return NGX_DONE;
        }
        g->msg = malloc(len ? len : 1);
        if (g->msg == NULL) {
            return NGX_ERROR;
        }
        ngx_memcpy(g->msg, msg, len);
        g->msg_len = len;
    }
}

/* The whole body has come. */
static void
ngx_http_infer_grpc_body_done(ngx_http_request_t *r, ngx_http_infer_grpc_t *g)
{
    ngx_int_t  rc;

    g->body_done = 1;
    if (infer_grpc_pending(&g->rd) > 0) {
        ngx_http_infer_grpc_abort(g, INFER_GRPC_INTERNAL, "the request ends "
                                  "inside a message", NGX_HTTP_BAD_REQUEST);
        return;
    }

    if (g->method == INFER_GRPC_MODEL_STREAM_INFER) {
        ngx_http_infer_grpc_maybe_end(g);
        return;
    }

    if (g->n_msgs == 0) {
        ngx_http_infer_grpc_abort(g, INFER_GRPC_UNIMPLEMENTED, "a unary "
                                  "method takes one message, and none came",
                                  NGX_HTTP_BAD_REQUEST);
        return;
    }

    /* notice a client that goes away while we answer */
    r->read_event_handler = ngx_http_test_reading;
    rc = g->method == INFER_GRPC_MODEL_INFER
         ? ngx_http_infer_grpc_infer(r, g)
         : ngx_http_infer_grpc_simple(r, g);
    ngx_http_finalize_request(r, rc);
}

/* The client is gone: the request goes, and with it (its cleanup) every
 * generation of the stream and their KV blocks. */
static void
ngx_http_infer_grpc_gone(ngx_http_infer_grpc_t *g, ngx_int_t rc)
{
    g->ended = 1;
    if (g->ctx != NULL) {
        ngx_http_infer_ctx_finalize(g->ctx, rc);
    } else {
        ngx_http_finalize_request(g->r, rc);
    }
}

static void
ngx_http_infer_grpc_read(ngx_http_request_t *r)
{
    ngx_int_t               rc;
    ngx_uint_t              taken;
    ngx_http_infer_grpc_t  *g;

    g = ngx_http_infer_grpc_of(r);
    if (g == NULL || g->ended) {
        return;
    }

    if (g->body_done) {
        /* only a client that goes away (RST_STREAM) is news now: the
         * cleanup cancels every generation of the stream */
        if (r->connection->error) {
            ngx_http_infer_grpc_gone(g, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        }
        return;
    }

    for ( ;; ) {
        if (r->reading_body) {
            rc = ngx_http_read_unbuffered_request_body(r);

            if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
                ngx_http_infer_grpc_abort(g, INFER_GRPC_RESOURCE_EXHAUSTED,
                                          "the request is longer than "
                                          "client_max_body_size",
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
                return;
            }
            if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
                /* the client went away (RST_STREAM) or timed out */
                ngx_http_infer_grpc_gone(g, r->connection->error
                                            ? NGX_HTTP_CLIENT_CLOSED_REQUEST
                                            : rc);
                return;
            }
        }

        if (ngx_http_infer_grpc_take(r, g, &taken) != NGX_OK) {
            ngx_http_infer_grpc_abort(g, INFER_GRPC_INTERNAL,
                                      "cannot read the request",
                                      NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
        rc = ngx_http_infer_grpc_messages(g);
        if (rc == NGX_DONE) {
            return;
        }
        if (rc != NGX_OK) {
            ngx_http_infer_grpc_abort(g, INFER_GRPC_INTERNAL,
                                      "out of memory",
                                      NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        if (!r->reading_body) {
            ngx_http_infer_grpc_body_done(r, g);
            return;
        }
        if (taken == 0) {
            return;
        }
    }
}

/* The body reading has begun (nginx calls this at once when it does not
 * buffer). */
static void
ngx_http_infer_grpc_body(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_http_infer_grpc_read;
    ngx_http_infer_grpc_read(r);
}

/* ---- the handler ----------------------------------------------------------- */

/* Refused before gRPC is spoken: a JSON error as the REST routes give. */
static ngx_int_t
ngx_http_infer_grpc_http_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    char              *body;
    size_t             len;
    ngx_int_t          rc;
    infer_ks_error_t   err;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }
    infer_ks_set_error(&err, status, "%s", message);
    len = 0;
    body = infer_ks_error_body(&err, &len);
    return ngx_http_infer_send_error(r, status, err.message,
                                     "application/json", body, len);
}

ngx_int_t
ngx_http_infer_grpc_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    uint64_t                   ms;
    ngx_int_t                  rc;
    ngx_str_t                 *ct;
    ngx_table_elt_t           *h;
    ngx_pool_cleanup_t        *cln;
    ngx_http_infer_grpc_t     *g;
    ngx_http_core_loc_conf_t  *clcf;
    char                       why[256];

#if (NGX_HTTP_V2)
    if (r->stream == NULL)
#endif
    {
        return ngx_http_infer_grpc_http_error(r, NGX_HTTP_BAD_REQUEST,
                                              "gRPC needs HTTP/2: this "
                                              "location serves "
                                              "inference.GRPCInferenceService "
                                              "on a \"listen ... http2\" "
                                              "server");
    }

    if (!(r->method & NGX_HTTP_POST)) {
        if (ngx_http_infer_add_header(r, "Allow", "POST") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_infer_grpc_http_error(r, NGX_HTTP_NOT_ALLOWED,
                                              "gRPC calls are POSTs");
    }

    ct = r->headers_in.content_type ? &r->headers_in.content_type->value
                                    : NULL;
    if (ct == NULL || ct->len < sizeof(NGX_HTTP_INFER_GRPC_TYPE) - 1
        || ngx_strncasecmp(ct->data, (u_char *) NGX_HTTP_INFER_GRPC_TYPE,
                           sizeof(NGX_HTTP_INFER_GRPC_TYPE) - 1) != 0
        || (ct->len > sizeof(NGX_HTTP_INFER_GRPC_TYPE) - 1
            && ct->data[sizeof(NGX_HTTP_INFER_GRPC_TYPE) - 1] != '+'
            && ct->data[sizeof(NGX_HTTP_INFER_GRPC_TYPE) - 1] != ';'))
    {
        return ngx_http_infer_grpc_http_error(r,
                                              NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                              "a gRPC call's Content-Type "
                                              "is application/grpc");
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_infer_grpc_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    g = cln->data;
    ngx_memzero(g, sizeof(ngx_http_infer_grpc_t));
    cln->handler = ngx_http_infer_grpc_cleanup;
    g->r = r;

    g->method = infer_grpc_method((char *) r->uri.data, r->uri.len);
    if (g->method == INFER_GRPC_NONE || g->method == INFER_GRPC_OTHER) {
        p = ngx_snprintf((u_char *) why, sizeof(why) - 1, "%s %V",
                         g->method == INFER_GRPC_NONE
                         ? "no service has the method"
                         : "this server does not implement", &r->uri);
        *p = '\0';
        goto unimplemented;
    }

    h = ngx_http_infer_find_header(r, "grpc-encoding");
    if (h != NULL && !(h->value.len == 8
                       && ngx_strncmp(h->value.data, "identity", 8) == 0))
    {
        p = ngx_snprintf((u_char *) why, sizeof(why) - 1, "grpc-encoding "
                         "%*s is not supported: send messages uncompressed",
                         ngx_min(h->value.len, 64), h->value.data);
        *p = '\0';
        goto unimplemented;
    }

    h = ngx_http_infer_find_header(r, "grpc-timeout");
    if (h != NULL) {
        if (infer_grpc_timeout((char *) h->value.data, h->value.len, &ms)
            != 0)
        {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }
            return ngx_http_infer_grpc_end(r, INFER_GRPC_INVALID_ARGUMENT,
                                           "grpc-timeout is malformed",
                                           NGX_HTTP_BAD_REQUEST);
        }
        g->timeout = ms ? (ngx_msec_t) ms : 1;
    }

    if (g->method == INFER_GRPC_MODEL_STREAM_INFER) {
        g->watch.handler = ngx_http_infer_grpc_watch;
        g->watch.data = g;
        g->watch.log = r->connection->log;
        g->watch.cancelable = 1;
        ngx_add_timer(&g->watch, NGX_HTTP_INFER_GRPC_WATCH);
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    g->max = clcf->client_max_body_size > 0
             ? (size_t) clcf->client_max_body_size : (size_t) 0xffffffff;

    r->request_body_no_buffering = 1;
    rc = ngx_http_read_client_request_body(r, ngx_http_infer_grpc_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;

unimplemented:

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }
    return ngx_http_infer_grpc_end(r, INFER_GRPC_UNIMPLEMENTED, why,
                                   NGX_HTTP_NOT_IMPLEMENTED);
}
