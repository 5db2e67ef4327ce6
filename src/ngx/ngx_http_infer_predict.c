/*
 * The /predict front end (infer_predict NAME ...;): POST a batch of token
 * id rows or texts, get the model's logits or logprobs for them, in JSON,
 * JSON with base64 tensors, MessagePack or protobuf (src/proto/predict.h).
 *
 * Each row is one engine request that only scores its prompt (max_tokens
 * 0); the batch layer runs them side by side and gathers their results,
 * so this file parses, submits and encodes.  Big bodies are parsed and
 * tokenized, and big replies encoded, in nginx's thread pool, as the
 * OpenAI front end does with big prompts.
 */
#include "ngx_http_infer.h"
#include "predict.h"

/* A reply is encoded in the event loop up to this many bytes of logits;
 * beyond it in the thread pool (JSON numbers of 128 x 32000 logits take
 * a good part of a second). */
#define NGX_HTTP_INFER_PREDICT_INLINE  16384

/* nginx names no 406 */
#define NGX_HTTP_INFER_NOT_ACCEPTABLE  406

typedef struct {
    ngx_http_infer_loc_conf_t  *conf;
    u_char                     *body;          /* in r->pool */
    size_t                      body_len;
    infer_pred_request_t        req;
    infer_pred_error_t          err;
    ngx_http_infer_model_t     *model;
    ngx_int_t                   rc;            /* of the preparation */
    ngx_http_infer_batch_t     *batch;
    infer_pred_row_t           *rows;          /* [n_rows], r->pool */
    char                       *out;           /* the reply, malloc'd */
    size_t                      out_len;
} ngx_http_infer_pred_t;

static void ngx_http_infer_predict_body(ngx_http_request_t *r);

static void
ngx_http_infer_pred_cleanup(void *data)
{
    ngx_http_infer_pred_t  *job = data;

    infer_pred_request_free(&job->req);
    free(job->out);
}

/* The body's format and the reply's, from Content-Type and Accept; -1
 * with err set (415, 406) when they name none of ours. */
static ngx_int_t
ngx_http_infer_pred_formats(ngx_http_request_t *r, infer_pred_request_t *req,
    infer_pred_error_t *err)
{
    int               f;
    ngx_table_elt_t  *ct, *accept;

    req->format = INFER_PRED_JSON;
    req->reply = INFER_PRED_JSON;

    ct = r->headers_in.content_type;
    f = infer_pred_content_format(ct ? (char *) ct->value.data : NULL,
                                  ct ? ct->value.len : 0);
    if (f < 0) {
        infer_pred_set_error(err, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                             "Content-Type \"%.*s\" is none of "
                             "application/json, application/msgpack, "
                             "application/x-protobuf",
                             (int) ngx_min(ct->value.len, 64),
                             ct->value.data);
        return NGX_ERROR;
    }
    req->format = f;

    accept = ngx_http_infer_find_header(r, "Accept");
    f = infer_pred_accept_format(accept ? (char *) accept->value.data : NULL,
                                 accept ? accept->value.len : 0,
                                 req->format);
    if (f < 0) {
        infer_pred_set_error(err, NGX_HTTP_INFER_NOT_ACCEPTABLE,
                             "Accept \"%.*s\" takes none of "
                             "application/json, application/msgpack, "
                             "application/x-protobuf",
                             (int) ngx_min(accept->value.len, 64),
                             accept->value.data);
        return NGX_ERROR;
    }
    req->reply = f;
    return NGX_OK;
}

static ngx_int_t
ngx_http_infer_pred_error(ngx_http_request_t *r, infer_pred_format_t reply,
    infer_pred_error_t *err)
{
    char    *body;
    size_t   len = 0;

    body = infer_pred_error_body(reply, err, &len);
    return ngx_http_infer_send_error(r, err->status, err->message,
               infer_pred_content_type(infer_pred_error_format(reply)),
               body, len);
}

ngx_int_t
ngx_http_infer_predict_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    infer_pred_error_t    err;
    infer_pred_request_t  req;

    if (!(r->method & NGX_HTTP_POST)) {
        if (ngx_http_infer_add_header(r, "Allow", "POST") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        infer_pred_set_error(&err, NGX_HTTP_NOT_ALLOWED,
                             "method %.*s is not allowed here, use POST",
                             (int) ngx_min(r->method_name.len, 32),
                             r->method_name.data);
        goto error;
    }

    /* a body we cannot read or answer is refused before it is read */
    if (ngx_http_infer_pred_formats(r, &req, &err) != NGX_OK) {
        goto error;
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_infer_predict_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;

error:

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }
    return ngx_http_infer_pred_error(r, INFER_PRED_JSON, &err);
}

/*
 * Parses the body, picks the model and tokenizes texts: everything before
 * submitting.  Runs in the event loop or, for a big body, in a thread of
 * nginx's pool: it touches only the job, read-only configuration and the
 * model's tokenizer, allocates with malloc and logs nothing.
 */
static void
ngx_http_infer_pred_prepare(void *data)
{
    int                      most;
    const char              *why;
    ngx_http_infer_pred_t   *job = data;
    infer_pred_request_t    *req = &job->req;
    infer_pred_error_t      *err = &job->err;
    ngx_http_infer_model_t  *m, **models;

    job->rc = NGX_ERROR;

    if (infer_pred_parse((char *) job->body, job->body_len, req, err) != 0) {
        return;
    }

    if (req->model != NULL) {
        m = ngx_http_infer_find_model(job->conf, req->model,
                                      strlen(req->model));
        if (m == NULL) {
            infer_pred_set_error(err, NGX_HTTP_NOT_FOUND, "the model \"%.64s\" "
                                 "is not served here", req->model);
            return;
        }
    } else {
        models = job->conf->models->elts;
        m = models[0];
    }

    why = ngx_http_infer_model_unavailable(m);
    if (why != NULL) {
        infer_pred_set_error(err, NGX_HTTP_SERVICE_UNAVAILABLE, "the model "
                             "\"%s\" is not available in this worker: %s",
                             (char *) m->name.data, why);
        return;
    }

    /* rows beyond what the engine runs and queues could never all be
     * admitted: a client error, not a busy server */
    most = (m->ecfg.max_seqs ? m->ecfg.max_seqs : 64)
           + (m->ecfg.max_queue ? m->ecfg.max_queue : 256);
    if (req->n_rows > most) {
        infer_pred_set_error(err, NGX_HTTP_BAD_REQUEST, "a batch of %d rows "
                             "is more than the %d the model \"%s\" takes at "
                             "once", req->n_rows, most, (char *) m->name.data);
        return;
    }

    if (infer_pred_prepare(req, infer_engine_tokenizer(m->engine),
                           infer_engine_vocab_size(m->engine),
                           infer_engine_context_length(m->engine), err)
        != 0)
    {
        return;
    }
    job->model = m;
    job->rc = NGX_OK;
}

/* Builds the reply; in the event loop or a thread, as the preparation. */
static void
ngx_http_infer_pred_encode(void *data)
{
    ngx_http_infer_pred_t  *job = data;

    job->out = infer_pred_reply(&job->req, job->rows,
                                infer_engine_vocab_size(job->model->engine),
                                (char *) job->model->name.data,
                                &job->out_len, &job->err);
}

static void
ngx_http_infer_pred_answer(ngx_http_request_t *r, void *data)
{
    char                   *out;
    ngx_int_t               rc;
    ngx_http_infer_pred_t  *job = data;

    if (job->out == NULL) {
        rc = ngx_http_infer_pred_error(r, job->req.reply, &job->err);
    } else {
        out = job->out;
        job->out = NULL;
        rc = ngx_http_infer_send(r, NGX_HTTP_OK,
                 infer_pred_content_type(job->req.reply), out, job->out_len);
    }
    ngx_http_infer_ctx_finalize(job->batch->ctx, rc);
}

/* Every row has ended (or the deadline passed): answer once. */
static void
ngx_http_infer_pred_done(ngx_http_infer_batch_t *b)
{
    int                       i;
    size_t                    bytes;
    ngx_int_t                 rc;
    const char               *why;
    ngx_http_request_t       *r = b->ctx->r;
    ngx_http_infer_ctx_t     *ctx = b->ctx;
    ngx_http_infer_pred_t    *job = b->data;
    ngx_http_infer_result_t  *res;

    if (b->failed) {
        why = NULL;
        for (i = 0; i < b->n && why == NULL; i++) {
            if (b->results[i].failed) {
                why = b->results[i].error;
            }
        }
        if (b->timed_out || (why && ngx_strstr(why, "deadline") != NULL)) {
            infer_pred_set_error(&job->err, NGX_HTTP_GATEWAY_TIME_OUT,
                                 "the request did not finish within %lu ms",
                                 (unsigned long) ctx->model->timeout);
        } else {
            infer_pred_set_error(&job->err,
                                 why && ngx_strstr(why, "cancelled") != NULL
                                 ? NGX_HTTP_SERVICE_UNAVAILABLE
                                 : NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "scoring failed: %s",
                                 why ? why : "engine error");
        }
        rc = ngx_http_infer_pred_error(r, job->req.reply, &job->err);
        ngx_http_infer_ctx_finalize(ctx, rc);
        return;
    }

    job->rows = ngx_pcalloc(r->pool, b->n * sizeof(infer_pred_row_t));
    if (job->rows == NULL) {
        ngx_http_infer_ctx_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    for (i = 0; i < b->n; i++) {
        res = &b->results[i];
        job->rows[i].logits = res->rows;
        job->rows[i].n_logits = res->n_rows;
        job->rows[i].lp_ids = res->lp_ids;
        job->rows[i].lp = res->lp;
        job->rows[i].top_ids = res->lp_top_ids;
        job->rows[i].top_lp = res->lp_top_lp;
        job->rows[i].n_lp = res->n_lp;
        job->rows[i].top = res->lp_top;
    }

    /* Nothing is left to wait for but the encoding: the deadline stops
     * here, so that its timer cannot answer while a thread encodes. */
    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }
    ctx->finished = 1;

    bytes = infer_pred_output_bytes(&job->req,
                                    infer_engine_vocab_size(ctx->model->engine));
    if (bytes > NGX_HTTP_INFER_PREDICT_INLINE
        && ngx_http_infer_run_later(r, bytes, ngx_http_infer_pred_encode,
                                    ngx_http_infer_pred_answer, job)
           == NGX_OK)
    {
        return;
    }
    ngx_http_infer_pred_encode(job);
    ngx_http_infer_pred_answer(r, job);
}

/* A submission the engine refused, as the client's error. */
static void
ngx_http_infer_pred_submit_error(ngx_http_infer_pred_t *job, int rc,
    size_t bytes)
{
    infer_engine_t  *e = job->model->engine;

    switch (rc) {
    case INFER_EOUTPUT:
        infer_pred_set_error(&job->err, NGX_HTTP_BAD_REQUEST, "the outputs "
                             "asked for take %zu bytes, more than the %zu "
                             "one request may have", bytes,
                             infer_engine_max_output(e));
        break;
    case INFER_EQUEUE_FULL:
    case INFER_ESHUTDOWN:
        infer_pred_set_error(&job->err, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "the server is busy: %s", infer_strerror(rc));
        break;
    default:
        infer_pred_set_error(&job->err, ngx_http_infer_rc_status(rc),
                             "the engine refused a row: %s",
                             infer_strerror(rc));
    }
}

/* Submits every row; on success the batch waits for the engine. */
static ngx_int_t
ngx_http_infer_pred_submit(ngx_http_request_t *r, ngx_http_infer_pred_t *job)
{
    int                      i, rc;
    size_t                   bytes;
    int64_t                  deadline;
    ngx_int_t                status;
    const char              *why;
    infer_request_t         *ireq;
    infer_pred_request_t    *req = &job->req;
    ngx_http_infer_model_t  *m = job->model;

    why = ngx_http_infer_model_unavailable(m);
    if (why != NULL) {
        /* the engine stopped while the body was prepared */
        infer_pred_set_error(&job->err, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "the model \"%s\" is not available in this "
                             "worker: %s", (char *) m->name.data, why);
        return NGX_ERROR;
    }

    ireq = ngx_pcalloc(r->pool, req->n_rows * sizeof(infer_request_t));
    if (ireq == NULL) {
        infer_pred_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                             "out of memory");
        return NGX_ERROR;
    }

    deadline = infer_now_ms() + (int64_t) m->timeout;
    bytes = 0;
    for (i = 0; i < req->n_rows; i++) {
        ireq[i].prompt = req->ids[i];
        ireq[i].n_prompt = req->n_ids[i];
        ireq[i].max_tokens = 0;
        ireq[i].top_p = 1.0f;
        ireq[i].repetition_penalty = 1.0f;
        ireq[i].deadline_ms = deadline;
        ireq[i].logits_f16 = req->f16;
        switch (req->output) {
        case INFER_PRED_ALL:
            ireq[i].prompt_logits = INFER_LOGITS_PROMPT;
            break;
        case INFER_PRED_LAST:
            ireq[i].prompt_logits = INFER_LOGITS_LAST;
            break;
        default:
            ireq[i].prompt_logprobs = 1;
            ireq[i].top_logprobs = req->top_k;
        }
        bytes += infer_engine_output_bytes(m->engine, &ireq[i]);
    }

    /* the whole batch against the cap before any row runs */
    if (bytes > infer_engine_max_output(m->engine)) {
        ngx_http_infer_pred_submit_error(job, INFER_EOUTPUT, bytes);
        return NGX_ERROR;
    }

    job->batch = ngx_http_infer_batch_create(r, m, req->n_rows,
                                             ngx_http_infer_pred_done, job);
    if (job->batch == NULL) {
        infer_pred_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                             "out of memory");
        return NGX_ERROR;
    }

    for (i = 0; i < req->n_rows; i++) {
        rc = ngx_http_infer_batch_submit(job->batch, i, &ireq[i]);
        if (rc != INFER_OK) {
            /* the rows already running stop; their events are dropped
             * once the context is finished */
            ngx_http_infer_pred_submit_error(job, rc, bytes);
            ngx_http_infer_ctx_cancel(job->batch->ctx);
            status = ngx_http_infer_pred_error(r, req->reply, &job->err);
            ngx_http_infer_ctx_finalize(job->batch->ctx, status);
            return NGX_OK;
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "infer: predict submitted %d rows, output %d, "
                   "reply format %d", req->n_rows, (int) req->output,
                   (int) req->reply);
    return NGX_OK;
}

static void
ngx_http_infer_pred_go(ngx_http_request_t *r, void *data)
{
    ngx_http_infer_pred_t  *job = data;

    if (job->rc == NGX_OK && ngx_http_infer_pred_submit(r, job) == NGX_OK) {
        return;
    }
    ngx_http_finalize_request(r, ngx_http_infer_pred_error(r, job->req.reply,
                                                           &job->err));
}

static void
ngx_http_infer_predict_body(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t     *cln;
    ngx_http_infer_pred_t  *job;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_infer_pred_t));
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    job = cln->data;
    ngx_memzero(job, sizeof(ngx_http_infer_pred_t));
    cln->handler = ngx_http_infer_pred_cleanup;
    job->conf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);

    /* the handler checked them; they decide the error's format too */
    (void) ngx_http_infer_pred_formats(r, &job->req, &job->err);

    job->body = ngx_http_infer_read_body(r, &job->body_len);
    if (job->body == NULL) {
        infer_pred_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                             "cannot read the request body");
        ngx_http_finalize_request(r, ngx_http_infer_pred_error(r,
                                         job->req.reply, &job->err));
        return;
    }

    if (ngx_http_infer_run_later(r, job->body_len,
                                 ngx_http_infer_pred_prepare,
                                 ngx_http_infer_pred_go, job)
        == NGX_OK)
    {
        return;
    }
    ngx_http_infer_pred_prepare(job);
    ngx_http_infer_pred_go(r, job);
}
