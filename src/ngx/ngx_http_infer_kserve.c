/*
 * KServe v2 REST front end (infer_kserve NAME ...;): GET /v2, the health
 * and model metadata routes, POST .../infer with tensors in JSON or in the
 * binary tensor data extension, and Triton's generate extension
 * (.../generate, .../generate_stream as Server-Sent Events).
 *
 * The codec (src/proto/kserve.c) parses and encodes.  Here a body is read,
 * parsed and tokenized (in nginx's thread pool when big), and its rows are
 * submitted as a batch (ngx_http_infer_batch.c) answered once all have
 * ended; generate_stream is a generation of our own whose text goes out as
 * it comes.
 */
#include "ngx_http_infer_kserve.h"

#define NGX_HTTP_INFER_KS_SSE       "text/event-stream; charset=utf-8"

/* OpenAI's default for a completion that does not say, as vLLM's Triton
 * backend has it. */
#define NGX_HTTP_INFER_KS_MAX_TOKENS  16


static void ngx_http_infer_ks_body(ngx_http_request_t *r);
static void ngx_http_infer_ks_encode(void *data);
static void ngx_http_infer_ks_answer(ngx_http_request_t *r, void *data);
static void ngx_http_infer_ks_cleanup(void *data);
static void ngx_http_infer_ks_event(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev);
static void ngx_http_infer_ks_timeout(ngx_http_infer_ctx_t *ctx);

/* generate_stream: the one request whose events are sent as they come;
 * the rest are batches. */
static const ngx_http_infer_frontend_t  ngx_http_infer_ks_stream_frontend = {
    "kserve",
    ngx_http_infer_ks_event,
    ngx_http_infer_ks_timeout
};

static ngx_int_t
ngx_http_infer_ks_send_error(ngx_http_request_t *r, infer_ks_error_t *err)
{
    char    *body;
    size_t   len = 0;

    body = infer_ks_error_body(err, &len);
    return ngx_http_infer_send_error(r, err->status, err->message,
                                     "application/json", body, len);
}

/* The model of a route, or NULL with the 404 (or 503) in err. */
static ngx_http_infer_model_t *
ngx_http_infer_ks_model(ngx_http_request_t *r, infer_ks_route_t *route,
    infer_ks_error_t *err)
{
    ngx_http_infer_model_t     *m;
    ngx_http_infer_loc_conf_t  *ilcf;

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
    m = ngx_http_infer_find_model(ilcf, route->model, route->model_len);
    if (m == NULL) {
        infer_ks_set_error(err, NGX_HTTP_NOT_FOUND, "unknown model '%.*s'",
                           (int) ngx_min(route->model_len, 256),
                           route->model);
        return NULL;
    }
    if (ngx_http_infer_ks_forbidden(r, m, err)) {
        return NULL;
    }
    if (route->version != NULL
        && (route->version_len != sizeof(NGX_HTTP_INFER_KS_VERSION) - 1
            || ngx_strncmp(route->version, NGX_HTTP_INFER_KS_VERSION,
                           route->version_len) != 0))
    {
        infer_ks_set_error(err, NGX_HTTP_NOT_FOUND, "unknown version '%.*s' "
                           "of model '%s': its only version is "
                           NGX_HTTP_INFER_KS_VERSION,
                           (int) ngx_min(route->version_len, 64),
                           route->version, (char *) m->name.data);
        return NULL;
    }
    return m;
}

int
ngx_http_infer_ks_forbidden(ngx_http_request_t *r, ngx_http_infer_model_t *m,
    infer_ks_error_t *err)
{
    ngx_str_t  allowed;

    if (ngx_http_infer_allowed_models(r, &allowed) != NGX_OK) {
        infer_ks_set_error(err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "out of memory");
        return 1;
    }
    if (!ngx_http_infer_model_allowed(&allowed, m)) {
        infer_ks_set_error(err, NGX_HTTP_FORBIDDEN, "this client may not "
                           "use the model '%s'", (char *) m->name.data);
        return 1;
    }
    return 0;
}

int
ngx_http_infer_ks_unavailable(ngx_http_infer_model_t *m,
    infer_ks_error_t *err)
{
    const char  *why;

    why = ngx_http_infer_model_unavailable(m);
    if (why == NULL) {
        return 0;
    }
    infer_ks_set_error(err, NGX_HTTP_SERVICE_UNAVAILABLE, "model '%s' is "
                       "not available in this worker: %s",
                       (char *) m->name.data, why);
    return 1;
}

/* ---- GET routes -------------------------------------------------------- */

static ngx_int_t
ngx_http_infer_ks_get(ngx_http_request_t *r, infer_ks_route_t *route,
    ngx_http_infer_model_t *m)
{
    char                        *body;
    size_t                       len;
    ngx_uint_t                   i;
    infer_ks_error_t             err;
    ngx_http_infer_model_t     **mp;
    ngx_http_infer_loc_conf_t   *ilcf;

    body = NULL;
    len = 0;

    switch (route->kind) {
    case INFER_KS_ROUTE_SERVER:
        body = infer_ks_server_metadata(NGINX_VERSION, &len);
        break;

    case INFER_KS_ROUTE_LIVE:
        /* the worker answers: it lives */
        body = strdup("{\"live\":true}");
        len = sizeof("{\"live\":true}") - 1;
        break;

    case INFER_KS_ROUTE_READY:
        ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
        mp = ilcf->models->elts;
        for (i = 0; i < ilcf->models->nelts; i++) {
            if (ngx_http_infer_ks_unavailable(mp[i], &err)) {
                return ngx_http_infer_ks_send_error(r, &err);
            }
        }
        body = strdup("{\"ready\":true}");
        len = sizeof("{\"ready\":true}") - 1;
        break;

    case INFER_KS_ROUTE_MODEL:
    case INFER_KS_ROUTE_MODEL_READY:
        /* the vocabulary (the logits' shape) is the engine's to tell */
        if (ngx_http_infer_ks_unavailable(m, &err)) {
            return ngx_http_infer_ks_send_error(r, &err);
        }
        if (route->kind == INFER_KS_ROUTE_MODEL_READY) {
            body = strdup("{\"ready\":true}");
            len = sizeof("{\"ready\":true}") - 1;
            break;
        }
        body = infer_ks_model_metadata((char *) m->name.data,
                                       NGX_HTTP_INFER_KS_VERSION,
                                       infer_engine_vocab_size(m->engine),
                                       &len);
        break;

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_infer_send_json(r, NGX_HTTP_OK, body, len);
}

ngx_int_t
ngx_http_infer_kserve_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_uint_t               post;
    infer_ks_route_t         route;
    infer_ks_error_t         err;
    ngx_http_infer_model_t  *m;

    infer_ks_route((char *) r->uri.data, r->uri.len, &route);
    if (route.kind == INFER_KS_ROUTE_NONE) {
        infer_ks_set_error(&err, NGX_HTTP_NOT_FOUND, "unknown route %.*s",
                           (int) ngx_min(r->uri.len, 256), r->uri.data);
        goto error;
    }

    post = route.kind >= INFER_KS_ROUTE_INFER;
    if (post ? !(r->method & NGX_HTTP_POST)
             : !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        if (ngx_http_infer_add_header(r, "Allow", post ? "POST" : "GET, HEAD")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        infer_ks_set_error(&err, NGX_HTTP_NOT_ALLOWED, "method %.*s is not "
                           "allowed here, use %s",
                           (int) ngx_min(r->method_name.len, 32),
                           r->method_name.data, post ? "POST" : "GET");
        goto error;
    }

    m = NULL;
    if (route.model != NULL) {
        m = ngx_http_infer_ks_model(r, &route, &err);
        if (m == NULL) {
            goto error;
        }
    }

    if (!post) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
        return ngx_http_infer_ks_get(r, &route, m);
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_infer_ks_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;

error:

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }
    return ngx_http_infer_ks_send_error(r, &err);
}

/* ---- preparing a POST -------------------------------------------------- */

/*
 * Parses the body and tokenizes its texts.  Runs in the event loop or, for
 * a big body, in a thread of nginx's pool: it touches only the job and the
 * model's read-only tokenizer, allocates with malloc and logs nothing.
 */
void
ngx_http_infer_ks_prepare(void *data)
{
    int                   b, rc, generate;
    size_t                least, len;
    infer_ks_error_t     *err;
    infer_ks_tensors_t    set;
    infer_ks_request_t   *req;
    infer_ks_settings_t  *st;
    ngx_http_infer_ks_t  *job = data;

    job->rc = NGX_ERROR;
    err = &job->err;
    req = &job->req;
    generate = job->kind != INFER_KS_ROUTE_INFER && !job->pb;

    if (job->pb) {
        /* parsed already: the message names the model */
        set = job->set;
        ngx_memzero(&job->set, sizeof(infer_ks_tensors_t));
        rc = 0;
    } else if (generate) {
        rc = infer_ks_parse_generate((char *) job->body, job->body_len, &set,
                                     err);
    } else {
        rc = infer_ks_parse_infer((char *) job->body, job->body_len,
                                  job->header_len, &set, err);
    }
    if (rc != 0) {
        return;
    }
    rc = infer_ks_interpret(&set, job->vocab, generate, req, err);
    infer_ks_tensors_free(&set);
    if (rc != 0) {
        return;
    }

    if (req->kind == INFER_KS_SCORE) {
        job->rc = NGX_OK;
        return;
    }

    job->ids = calloc(req->n_rows, sizeof(int32_t *));
    job->n_ids = calloc(req->n_rows, sizeof(int));
    if (job->ids == NULL || job->n_ids == NULL) {
        infer_ks_set_error(err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "out of memory");
        return;
    }

    for (b = 0; b < req->n_rows; b++) {
        st = &req->settings[b];
        if (st->stream && job->kind != INFER_KS_ROUTE_GENERATE_STREAM
            && !job->pb)
        {
            infer_ks_set_error(err, NGX_HTTP_BAD_REQUEST, "stream is true, "
                               "but this route answers once: POST to "
                               ".../generate_stream for a stream");
            return;
        }

        /* what cannot fit, by its size alone, is refused before encoding */
        len = req->text_lens[b];
        least = infer_tokenizer_min_ids(job->tok, len);
        if (least >= (size_t) job->context
            || (st->max_tokens > 0
                && least + st->max_tokens > (size_t) job->context))
        {
            infer_ks_set_error(err, NGX_HTTP_BAD_REQUEST, "the model's "
                               "context is %d tokens, and text_input %d of "
                               "%zu bytes has at least %zu%s", job->context,
                               b, len, least, least < (size_t) job->context
                               ? ", which leaves less than max_tokens" : "");
            return;
        }
        if (infer_tokenizer_encode(job->tok, req->texts[b], len, 1,
                                   &job->ids[b], &job->n_ids[b])
            != 0)
        {
            job->ids[b] = NULL;
            infer_ks_set_error(err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                               "text_input %d could not be tokenized", b);
            return;
        }
        if (job->n_ids[b] == 0) {
            infer_ks_set_error(err, NGX_HTTP_BAD_REQUEST, "text_input %d "
                               "is empty and the model adds no <bos>", b);
            return;
        }
    }
    job->rc = NGX_OK;
}

/* The engine request of row b. */
void
ngx_http_infer_ks_row(ngx_http_infer_ks_t *job, int b, infer_request_t *ir)
{
    int                   room;
    infer_ks_request_t   *req = &job->req;
    infer_ks_settings_t  *st;

    ngx_memzero(ir, sizeof(infer_request_t));
    ir->deadline_ms = infer_now_ms() + (int64_t) job->timeout;
    ir->top_p = 1.0f;
    ir->repetition_penalty = 1.0f;

    if (req->kind == INFER_KS_SCORE) {
        ir->prompt = req->ids + (size_t) b * req->seq;
        ir->n_prompt = req->seq;
        ir->max_tokens = 0;
        ir->prompt_logits = req->logits_last ? INFER_LOGITS_LAST
                                             : INFER_LOGITS_PROMPT;
        return;
    }

    st = &req->settings[b];
    ir->prompt = job->ids[b];
    ir->n_prompt = job->n_ids[b];
    ir->max_tokens = st->max_tokens;
    if (ir->max_tokens < 0) {
        room = job->context - ir->n_prompt;
        ir->max_tokens = ngx_max(ngx_min(NGX_HTTP_INFER_KS_MAX_TOKENS, room),
                                 1);
    }
    ir->min_tokens = st->min_tokens;
    ir->temperature = st->temperature;
    ir->top_p = st->top_p;
    ir->top_k = st->top_k;
    ir->seed = st->seed;
    ir->has_seed = st->has_seed;
    ir->repetition_penalty = st->repetition_penalty;
    ir->presence_penalty = st->presence_penalty;
    ir->frequency_penalty = st->frequency_penalty;
    ir->stop = (const char *const *) st->stop;
    ir->n_stop = st->n_stop;
    if (st->end_id >= 0) {
        ir->stop_ids = &st->end_id;
        ir->n_stop_ids = 1;
    }
}

void
ngx_http_infer_ks_submit_error(ngx_http_infer_ks_t *job, int b, int rc,
    size_t bytes, infer_ks_error_t *err)
{
    infer_engine_t      *e = job->model->engine;
    infer_ks_request_t  *req = &job->req;

    switch (rc) {
    case INFER_ECONTEXT:
        if (req->kind == INFER_KS_SCORE) {
            infer_ks_set_error(err, NGX_HTTP_BAD_REQUEST, "input_ids of %d "
                               "tokens do not fit the model's context of "
                               "%d", req->seq, job->context);
        } else {
            infer_ks_set_error(err, NGX_HTTP_BAD_REQUEST, "text_input %d "
                               "has %d tokens and max_tokens is %d, but the "
                               "model's context is %d tokens", b,
                               job->n_ids[b], req->settings[b].max_tokens,
                               job->context);
        }
        break;
    case INFER_EOUTPUT:
        infer_ks_set_error(err, NGX_HTTP_BAD_REQUEST, "the outputs asked "
                           "for take %zu bytes, more than the %zu one "
                           "request may have", bytes,
                           infer_engine_max_output(e));
        break;
    case INFER_EQUEUE_FULL:
    case INFER_ESHUTDOWN:
        infer_ks_set_error(err, NGX_HTTP_SERVICE_UNAVAILABLE, "the server "
                           "is busy: %s", infer_strerror(rc));
        break;
    default:
        infer_ks_set_error(err, ngx_http_infer_rc_status(rc), "%s",
                           infer_strerror(rc));
    }
}

/* ---- answers ------------------------------------------------------------ */

/* The text of row b as text_output: the continuation, or the prompt and
 * it with exclude_input_in_output false (in *own, malloc'd). */
static ngx_int_t
ngx_http_infer_ks_text(ngx_http_infer_ks_t *job, int b,
    ngx_http_infer_result_t *res, infer_ks_piece_t *piece, u_char **own)
{
    u_char              *p;
    infer_ks_request_t  *req = &job->req;

    *own = NULL;
    piece->p = res->text ? (const void *) res->text : "";
    piece->len = res->text_len;
    if (req->settings[b].exclude_input) {
        return NGX_OK;
    }
    p = malloc(req->text_lens[b] + res->text_len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }
    ngx_memcpy(p, req->texts[b], req->text_lens[b]);
    if (res->text_len > 0) {
        ngx_memcpy(p + req->text_lens[b], res->text, res->text_len);
    }
    *own = p;
    piece->p = p;
    piece->len = req->text_lens[b] + res->text_len;
    return NGX_OK;
}

/*
 * The outputs of a batch whose rows have all ended, as the codecs take
 * them: out[req->n_outputs] over pieces (one a row) and what the texts
 * with their prompts took (own[n_rows]), both malloc'd and freed with
 * ngx_http_infer_ks_outputs_free.  It reads only the job and the batch's
 * results, which nothing changes any more, so it may run in a thread.
 */
ngx_int_t
ngx_http_infer_ks_outputs(ngx_http_infer_ks_t *job, infer_ks_output_t *out,
    infer_ks_piece_t **pieces_out, u_char ***own_out)
{
    int                       b, i, vocab, want;
    u_char                  **own;
    infer_ks_piece_t         *pieces;
    infer_ks_request_t       *req;
    ngx_http_infer_batch_t   *bt = job->batch;
    ngx_http_infer_result_t  *res;

    req = &job->req;
    vocab = job->vocab;
    want = req->logits_last ? 1 : req->seq;

    pieces = calloc(req->n_rows, sizeof(infer_ks_piece_t));
    own = calloc(req->n_rows, sizeof(u_char *));
    *pieces_out = pieces;
    *own_out = own;
    if (pieces == NULL || own == NULL) {
        return NGX_ERROR;
    }

    for (b = 0; b < req->n_rows; b++) {
        res = &bt->results[b];
        if (req->kind == INFER_KS_TEXT) {
            if (ngx_http_infer_ks_text(job, b, res, &pieces[b], &own[b])
                != NGX_OK)
            {
                return NGX_ERROR;
            }
            continue;
        }
        if (res->n_rows != want || res->f16) {
            /* the engine broke its contract: logged in the loop */
            job->bad_row = b + 1;
            return NGX_ERROR;
        }
        pieces[b].p = res->rows;
        pieces[b].len = (size_t) want * vocab * sizeof(float);
    }

    /* the codec refused every output but the kind's own */
    for (i = 0; i < req->n_outputs; i++) {
        ngx_memzero(&out[i], sizeof(infer_ks_output_t));
        out[i].binary = req->binary[i];
        out[i].pieces = pieces;
        out[i].n_pieces = req->n_rows;
        out[i].dims[0] = req->n_rows;
        if (req->outputs[i] == INFER_KS_OUT_LOGITS) {
            out[i].name = "logits";
            out[i].dtype = INFER_KS_FP32;
            out[i].n_dims = req->logits_last ? 2 : 3;
            out[i].dims[1] = req->logits_last ? vocab : req->seq;
            out[i].dims[2] = vocab;
        } else {
            out[i].name = "text_output";
            out[i].dtype = INFER_KS_BYTES;
            out[i].n_dims = req->text_rank;
            out[i].dims[1] = 1;
        }
    }
    return NGX_OK;
}

void
ngx_http_infer_ks_outputs_free(ngx_http_infer_ks_t *job,
    infer_ks_piece_t *pieces, u_char **own)
{
    int  b;

    for (b = 0; own && b < job->req.n_rows; b++) {
        free(own[b]);
    }
    free(own);
    free(pieces);
}

/*
 * Encodes the answer of a batch whose rows have all ended into
 * job->reply.  Runs in the event loop or, for big outputs, in a thread of
 * nginx's pool (a 128 x 32000 logits reply is 16 MB, four times that as
 * JSON numbers), and allocates with malloc.
 */
static void
ngx_http_infer_ks_encode(void *data)
{
    u_char                  **own;
    const char               *model;
    infer_ks_piece_t         *pieces;
    infer_ks_output_t         out[INFER_KS_MAX_OUTPUTS];
    ngx_http_infer_ks_t      *job = data;

    model = (const char *) job->model->name.data;
    job->reply = NULL;
    job->reply_header_len = 0;

    if (ngx_http_infer_ks_outputs(job, out, &pieces, &own) != NGX_OK) {
        goto done;
    }

    if (job->kind != INFER_KS_ROUTE_INFER) {
        job->reply = infer_ks_generate_body(model, NGX_HTTP_INFER_KS_VERSION,
                                            pieces[0].p, pieces[0].len,
                                            infer_ks_finish_reason(
                                                job->batch->results[0].finish),
                                            &job->reply_len);
        goto done;
    }

    job->reply = infer_ks_infer_body(model, NGX_HTTP_INFER_KS_VERSION,
                                     job->req.id, out, job->req.n_outputs,
                                     &job->reply_len,
                                     &job->reply_header_len);

done:

    ngx_http_infer_ks_outputs_free(job, pieces, own);
}

/* Sends what ngx_http_infer_ks_encode() made, back in the event loop. */
static void
ngx_http_infer_ks_answer(ngx_http_request_t *r, void *data)
{
    char                 *hl;
    ngx_int_t             rc;
    ngx_http_infer_ks_t  *job = data;

    if (job->bad_row) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "infer: row %d has %d logits rows, not %d",
                      job->bad_row - 1,
                      job->batch->results[job->bad_row - 1].n_rows,
                      job->req.logits_last ? 1 : job->req.seq);
    }

    if (job->reply == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (job->reply_header_len == 0) {
        rc = ngx_http_infer_send_json(r, NGX_HTTP_OK, job->reply,
                                      job->reply_len);

    } else {
        hl = ngx_pnalloc(r->pool, NGX_SIZE_T_LEN + 1);
        if (hl != NULL) {
            ngx_sprintf((u_char *) hl, "%uz%Z", job->reply_header_len);
        }
        if (hl == NULL
            || ngx_http_infer_add_header(r, "Inference-Header-Content-Length",
                                         hl)
               != NGX_OK)
        {
            free(job->reply);
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        } else {
            rc = ngx_http_infer_send(r, NGX_HTTP_OK,
                                     "application/octet-stream", job->reply,
                                     job->reply_len);
        }
    }
    /* the body is the request's now */
    job->reply = NULL;
    ngx_http_infer_ctx_finalize(job->batch->ctx, rc);
}

/* What encoding costs, in bytes of plain copying: a JSON number takes
 * about as long to print as 16 bytes take to copy. */
static size_t
ngx_http_infer_ks_cost(ngx_http_infer_ks_t *job)
{
    int                  b, i, json;
    size_t               bytes;
    infer_ks_request_t  *req = &job->req;

    json = job->kind != INFER_KS_ROUTE_INFER;
    for (i = 0; i < req->n_outputs; i++) {
        json |= !req->binary[i];
    }
    bytes = 0;
    for (b = 0; b < req->n_rows; b++) {
        bytes += job->batch->results[b].text_len
                 + (size_t) job->batch->results[b].n_rows * job->vocab
                   * (json ? 16 : 4);
    }
    return bytes;
}

/* Every row has ended, or the deadline passed. */
static void
ngx_http_infer_ks_done(ngx_http_infer_batch_t *bt)
{
    int                       b;
    ngx_int_t                 rc;
    infer_ks_error_t          err;
    ngx_http_infer_ks_t      *job = bt->data;
    ngx_http_infer_result_t  *res, *why;

    if (bt->timed_out) {
        ngx_log_error(NGX_LOG_WARN, bt->ctx->r->connection->log, 0,
                      "infer: request %uL passed its deadline",
                      bt->ctx->gens[0].id);
        infer_ks_set_error(&err, NGX_HTTP_GATEWAY_TIME_OUT, "the request "
                           "did not finish within %lu ms",
                           (unsigned long) job->timeout);
        rc = job->send_error(bt->ctx->r, &err);

    } else if (bt->failed) {
        /* the row that failed, not those cancelled because it did */
        why = NULL;
        for (b = 0; b < bt->n; b++) {
            res = &bt->results[b];
            if (res->failed && (why == NULL
                                || (why->finish == INFER_FINISH_CANCELLED
                                    && res->finish
                                       != INFER_FINISH_CANCELLED)))
            {
                why = res;
            }
        }
        infer_ks_set_error(&err, why && why->finish == INFER_FINISH_CANCELLED
                                 ? NGX_HTTP_SERVICE_UNAVAILABLE
                                 : why && why->finish == INFER_FINISH_DEADLINE
                                 ? NGX_HTTP_GATEWAY_TIME_OUT
                                 : NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "inference failed: %s",
                           why ? why->error : "engine error");
        rc = job->send_error(bt->ctx->r, &err);

    } else {
        /* the rows have ended: the deadline no longer applies, and must
         * not fire while a thread encodes the answer */
        if (bt->ctx->timer.timer_set) {
            ngx_del_timer(&bt->ctx->timer);
        }
        if (ngx_http_infer_run_later(bt->ctx->r, ngx_http_infer_ks_cost(job),
                                     job->encode, job->answer, job)
            != NGX_OK)
        {
            job->encode(job);
            job->answer(bt->ctx->r, job);
        }
        return;
    }

    ngx_http_infer_ctx_finalize(bt->ctx, rc);
}

static ngx_int_t
ngx_http_infer_ks_batch(ngx_http_request_t *r, ngx_http_infer_ks_t *job)
{
    int                      b, rc;
    size_t                   bytes;
    infer_request_t          ir;
    ngx_http_infer_batch_t  *bt;

    /* outputs past the cap are refused before any row runs, not after
     * the rows before the one that crossed it have */
    bytes = 0;
    for (b = 0; b < job->req.n_rows; b++) {
        ngx_http_infer_ks_row(job, b, &ir);
        bytes += infer_engine_output_bytes(job->model->engine, &ir);
    }
    if (bytes > infer_engine_max_output(job->model->engine)) {
        ngx_http_infer_ks_submit_error(job, 0, INFER_EOUTPUT, bytes,
                                       &job->err);
        return NGX_ERROR;
    }

    bt = ngx_http_infer_batch_create(r, job->model, job->req.n_rows,
                                     ngx_http_infer_ks_done, job);
    if (bt == NULL) {
        infer_ks_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "out of memory");
        return NGX_ERROR;
    }
    job->batch = bt;
    bt->ctx->timeout = job->timeout;

    for (b = 0; b < job->req.n_rows; b++) {
        ngx_http_infer_ks_row(job, b, &ir);
        rc = ngx_http_infer_batch_submit(bt, b, &ir);
        if (rc == INFER_OK) {
            continue;
        }
        bytes = bt->output_bytes
                + infer_engine_output_bytes(job->model->engine, &ir);
        ngx_http_infer_ks_submit_error(job, b, rc, bytes, &job->err);
        /* the rows already running stop; their events find the request
         * finished */
        ngx_http_infer_ctx_cancel(bt->ctx);
        ngx_http_infer_ctx_finalize(bt->ctx, job->send_error(r, &job->err));
        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "infer: kserve batch of %d rows from request %uL",
                   job->req.n_rows, bt->ctx->gens[0].id);
    return NGX_OK;
}

/* ---- generate_stream -------------------------------------------------- */

static ngx_int_t
ngx_http_infer_ks_stream_send(ngx_http_infer_ctx_t *ctx, const char *text,
    size_t len, const char *finish)
{
    char                 *part;
    size_t                plen;
    ngx_http_infer_ks_t  *job = ctx->data;

    plen = 0;
    part = infer_ks_generate_event((char *) job->model->name.data,
                                   NGX_HTTP_INFER_KS_VERSION, text, len,
                                   finish, &plen);
    return ngx_http_infer_stream_send(ctx, &part, &plen, 1, finish != NULL);
}

/* Ends the response with an error: a JSON body, or once the stream has
 * begun an error event. */
static void
ngx_http_infer_ks_fail(ngx_http_infer_ctx_t *ctx, infer_ks_error_t *err)
{
    char                *part;
    size_t               len;
    ngx_int_t            rc;
    ngx_http_request_t  *r = ctx->r;

    if (ctx->streaming && r->header_sent) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "infer: stream ended by error: %s", err->message);
        len = 0;
        part = infer_ks_error_event(err, &len);
        rc = ngx_http_infer_stream_send(ctx, &part, &len, 1, 1);
    } else {
        rc = ngx_http_infer_ks_send_error(r, err);
    }
    ngx_http_infer_ctx_finalize(ctx, rc);
}

static void
ngx_http_infer_ks_timeout(ngx_http_infer_ctx_t *ctx)
{
    infer_ks_error_t  err;

    ngx_log_error(NGX_LOG_WARN, ctx->r->connection->log, 0,
                  "infer: request %uL passed its deadline", ctx->gens[0].id);
    infer_ks_set_error(&err, NGX_HTTP_GATEWAY_TIME_OUT, "the request did "
                       "not finish within %lu ms",
                       (unsigned long) ctx->model->timeout);
    ngx_http_infer_ks_fail(ctx, &err);
}

static void
ngx_http_infer_ks_event(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev)
{
    ngx_int_t          rc;
    const char        *finish;
    infer_ks_error_t   err;

    if (ev->type == INFER_EVENT_TOKEN) {
        if (ev->text_len > 0
            && ngx_http_infer_ks_stream_send(ctx, ev->text, ev->text_len,
                                             NULL)
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
        /* the last event: what text is left, and why it ended */
        rc = ngx_http_infer_ks_stream_send(ctx, ev->text ? ev->text : "",
                                           ev->text_len, finish);
        ngx_http_infer_ctx_finalize(ctx, rc);
        return;
    }

    if (ev->type == INFER_EVENT_DONE && ev->finish == INFER_FINISH_DEADLINE) {
        ngx_http_infer_ks_timeout(ctx);
        return;
    }
    if (ev->type == INFER_EVENT_DONE) {
        infer_ks_set_error(&err, NGX_HTTP_SERVICE_UNAVAILABLE,
                           "the engine cancelled the request");
    } else {
        infer_ks_set_error(&err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "generation failed: %s",
                           ev->text ? ev->text : "engine error");
    }
    ngx_http_infer_ks_fail(ctx, &err);
}

static ngx_int_t
ngx_http_infer_ks_stream(ngx_http_request_t *r, ngx_http_infer_ks_t *job)
{
    int                    rc;
    infer_request_t        ir;
    ngx_http_infer_ctx_t  *ctx;

    ctx = ngx_http_infer_ctx_create(r, job->model,
                                    &ngx_http_infer_ks_stream_frontend, 1);
    if (ctx == NULL) {
        infer_ks_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "out of memory");
        return NGX_ERROR;
    }
    ctx->data = job;

    ngx_http_infer_ks_row(job, 0, &ir);
    rc = ngx_http_infer_ctx_submit(ctx, 0, &ir);
    if (rc != INFER_OK) {
        ngx_http_infer_ks_submit_error(job, 0, rc,
                                       infer_engine_output_bytes(
                                           job->model->engine, &ir),
                                       &job->err);
        ngx_http_infer_ctx_finalize(ctx,
                                    ngx_http_infer_ks_send_error(r,
                                                                 &job->err));
        return NGX_OK;
    }

    if (ngx_http_infer_stream_start(ctx, NGX_HTTP_INFER_KS_SSE) != NGX_OK
        || (!job->req.settings[0].exclude_input
            && ngx_http_infer_ks_stream_send(ctx, job->req.texts[0],
                                             job->req.text_lens[0], NULL)
               == NGX_ERROR))
    {
        ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
    }
    return NGX_OK;
}

/* ---- the body --------------------------------------------------------- */

/* Submits a prepared job, or answers with its error. */
static void
ngx_http_infer_ks_go(ngx_http_request_t *r, void *data)
{
    ngx_int_t             rc;
    ngx_http_infer_ks_t  *job = data;

    if (job->rc == NGX_OK
        && !ngx_http_infer_ks_unavailable(job->model, &job->err))
    {
        rc = job->kind == INFER_KS_ROUTE_GENERATE_STREAM
             ? ngx_http_infer_ks_stream(r, job)
             : ngx_http_infer_ks_batch(r, job);
        if (rc == NGX_OK) {
            return;
        }
    }
    ngx_http_finalize_request(r, job->send_error(r, &job->err));
}

void
ngx_http_infer_ks_free(void *data)
{
    int                   b;
    ngx_http_infer_ks_t  *job = data;

    for (b = 0; job->ids && b < job->req.n_rows; b++) {
        free(job->ids[b]);
    }
    free(job->ids);
    free(job->n_ids);
    free(job->reply);
    infer_ks_request_free(&job->req);
    infer_ks_tensors_free(&job->set);
}

static void
ngx_http_infer_ks_cleanup(void *data)
{
    ngx_http_infer_ks_free(data);
}

ngx_http_infer_ks_t *
ngx_http_infer_ks_job(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_infer_ks_t  *job;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_infer_ks_t));
    if (cln == NULL) {
        return NULL;
    }
    job = cln->data;
    ngx_memzero(job, sizeof(ngx_http_infer_ks_t));
    cln->handler = ngx_http_infer_ks_cleanup;
    job->send_error = ngx_http_infer_ks_send_error;
    job->encode = ngx_http_infer_ks_encode;
    job->answer = ngx_http_infer_ks_answer;
    return job;
}

/* A job whose model is known: prepared (in the thread pool when big),
 * then submitted, or answered with its error. */
void
ngx_http_infer_ks_run(ngx_http_request_t *r, ngx_http_infer_ks_t *job,
    size_t bytes)
{
    if (job->timeout == 0) {
        job->timeout = job->model->timeout;
    }
    if (ngx_http_infer_ks_unavailable(job->model, &job->err)) {
        ngx_http_finalize_request(r, job->send_error(r, &job->err));
        return;
    }
    job->tok = infer_engine_tokenizer(job->model->engine);
    job->vocab = infer_engine_vocab_size(job->model->engine);
    job->context = infer_engine_context_length(job->model->engine);

    if (ngx_http_infer_run_later(r, bytes, ngx_http_infer_ks_prepare,
                                 ngx_http_infer_ks_go, job)
        == NGX_OK)
    {
        return;
    }

    ngx_http_infer_ks_prepare(job);
    ngx_http_infer_ks_go(r, job);
}

static void
ngx_http_infer_ks_body(ngx_http_request_t *r)
{
    ngx_str_t            *v;
    infer_ks_route_t      route;
    ngx_table_elt_t      *h;
    ngx_http_infer_ks_t  *job;

    job = ngx_http_infer_ks_job(r);
    if (job == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the handler found the route and the model already */
    infer_ks_route((char *) r->uri.data, r->uri.len, &route);
    job->kind = route.kind;
    job->model = ngx_http_infer_ks_model(r, &route, &job->err);
    if (job->model == NULL) {
        goto failed;
    }

    h = ngx_http_infer_find_header(r, "Content-Encoding");
    if (h != NULL && !(h->value.len == 8
                       && ngx_strncasecmp(h->value.data,
                                          (u_char *) "identity", 8) == 0))
    {
        infer_ks_set_error(&job->err, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                           "Content-Encoding %.*s is not supported: send "
                           "the body as it is",
                           (int) ngx_min(h->value.len, 64), h->value.data);
        goto failed;
    }

    job->body = ngx_http_infer_read_body(r, &job->body_len);
    if (job->body == NULL) {
        infer_ks_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "cannot read the request body");
        goto failed;
    }

    job->header_len = job->body_len;
    h = ngx_http_infer_find_header(r, "Inference-Header-Content-Length");
    if (h != NULL && job->kind == INFER_KS_ROUTE_INFER) {
        v = &h->value;
        if (infer_ks_header_length((char *) v->data, v->len, job->body_len,
                                   &job->header_len, &job->err)
            != 0)
        {
            goto failed;
        }
    }

    ngx_http_infer_ks_run(r, job, job->body_len);
    return;

failed:

    ngx_http_finalize_request(r, ngx_http_infer_ks_send_error(r, &job->err));
}
