/*
 * OpenAI-compatible front end: POST /v1/completions, POST
 * /v1/chat/completions, GET /v1/models and /v1/models/{id}, and vLLM's
 * POST .../tokenize and .../detokenize.
 *
 * A request is parsed and tokenized in the worker, submitted to the engine
 * without blocking (one engine request per choice of `n`), and answered
 * from the bridge as events arrive: SSE chunks as text and logprobs come
 * when streaming, one JSON body once every choice has ended otherwise.
 */
#include "ngx_http_infer.h"

typedef enum {
    NGX_HTTP_INFER_ROUTE_NONE = 0,
    NGX_HTTP_INFER_ROUTE_COMPLETIONS,
    NGX_HTTP_INFER_ROUTE_CHAT,
    NGX_HTTP_INFER_ROUTE_MODELS,
    NGX_HTTP_INFER_ROUTE_MODEL,          /* .../models/{id} */
    NGX_HTTP_INFER_ROUTE_TOKENIZE,
    NGX_HTTP_INFER_ROUTE_DETOKENIZE
} ngx_http_infer_route_t;

static const char  ngx_http_infer_sse_done[] = "data: [DONE]\n\n";

/* One choice: the engine request ctx->gens[i]. */
typedef struct {
    u_char                     *text;          /* non-streamed output, or
                                                  with tool calls all */
    size_t                      text_len;
    size_t                      text_cap;
    size_t                      sent;          /* streamed as content */
    infer_oai_logprobs_t       *logprobs;      /* NULL: not asked for */
    const char                 *finish;        /* once it has ended */
    json_t                     *tool_calls;    /* parsed from the text */
    size_t                      content_len;   /* the text before them */
} ngx_http_infer_oai_choice_t;

/*
 * One OpenAI request from its body to its answer, in r->pool (ctx->data
 * once submitted); what it holds is malloc'd and freed with the pool.
 */
typedef struct {
    infer_oai_kind_t            kind;
    ngx_http_infer_route_t      route;
    ngx_http_infer_loc_conf_t  *conf;
    ngx_str_t                   allowed;       /* infer_allowed_models */
    u_char                     *body;          /* in r->pool */
    size_t                      body_len;
    infer_oai_request_t         req;
    ngx_http_infer_model_t     *model;
    const infer_tokenizer_t    *tok;
    int32_t                    *ids;           /* the prompt's tokens */
    int                         n;
    ngx_int_t                   rc;            /* of the preparation */
    infer_oai_error_t           err;
    infer_tool_fmt_t            tool_fmt;      /* the output's tool calls
                                                  parsed in this format */

    infer_oai_response_t        rsp;
    char                        rsp_id[40];
    char                       *echo;          /* the prompt as text, */
    size_t                      echo_len;      /* when echo asks for it */
    ngx_http_infer_oai_choice_t *choices;      /* [req.n], r->pool */
    int                         n_done;
    int                         prompt_tokens;
    int                         completion_tokens;
    ngx_http_infer_ctx_t       *ctx;           /* once created */
} ngx_http_infer_oai_t;

static void ngx_http_infer_body_handler(ngx_http_request_t *r);
static void ngx_http_infer_openai_event(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev);
static void ngx_http_infer_openai_timeout(ngx_http_infer_ctx_t *ctx);

static const ngx_http_infer_frontend_t  ngx_http_infer_openai_frontend = {
    "openai",
    ngx_http_infer_openai_event,
    ngx_http_infer_openai_timeout
};

static ngx_int_t
ngx_http_infer_oai_error(ngx_http_request_t *r, infer_oai_error_t *err)
{
    char    *body;
    size_t   len = 0;

    body = infer_oai_error_body(err, &len);
    return ngx_http_infer_send_error(r, err->status, err->message,
                                     "application/json", body, len);
}

/* Sends SSE events (the codec's malloc'd strings), then [DONE] when
 * last. */
static ngx_int_t
ngx_http_infer_sse(ngx_http_infer_ctx_t *ctx, char **parts, size_t *lens,
    ngx_uint_t n, ngx_uint_t last)
{
    char    *all[4];
    size_t   all_lens[4];
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        all[i] = parts[i];
        all_lens[i] = lens[i];
    }
    if (last) {
        all[n] = strdup(ngx_http_infer_sse_done);
        all_lens[n] = sizeof(ngx_http_infer_sse_done) - 1;
        n++;
    }
    return ngx_http_infer_stream_send(ctx, all, all_lens, n, last);
}

static ngx_int_t
ngx_http_infer_sse_start(ngx_http_infer_ctx_t *ctx)
{
    int                    i;
    char                  *part;
    size_t                 len;
    infer_oai_choice_t     c;
    ngx_http_infer_oai_t  *oai = ctx->data;

    if (ngx_http_infer_stream_start(ctx, "text/event-stream") != NGX_OK) {
        return NGX_ERROR;
    }

    /* Each choice of a chat stream opens with the assistant role, of a
     * completion stream with echo with the prompt. */
    for (i = 0; i < oai->req.n; i++) {
        if (oai->kind != INFER_OAI_CHAT && !oai->req.echo) {
            break;
        }
        ngx_memzero(&c, sizeof(c));
        c.text = oai->echo;
        c.text_len = oai->echo_len;
        c.logprobs = oai->choices[i].logprobs;
        part = infer_oai_chunk(&oai->rsp, i, &c,
                               oai->kind == INFER_OAI_CHAT,
                               oai->req.include_usage, &len);
        if (ngx_http_infer_sse(ctx, &part, &len, 1, 0) == NGX_ERROR) {
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

    if (ctx->streaming && r->header_sent) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "infer: stream ended by error: %s", err->message);
        part = infer_oai_error_chunk(err, &len);
        rc = ngx_http_infer_sse(ctx, &part, &len, 1, 1);
    } else {
        rc = ngx_http_infer_oai_error(r, err);
    }
    ngx_http_infer_ctx_finalize(ctx, rc);
}

static void
ngx_http_infer_openai_timeout(ngx_http_infer_ctx_t *ctx)
{
    infer_oai_error_t  err;

    ngx_log_error(NGX_LOG_WARN, ctx->r->connection->log, 0,
                  "infer: request %uL passed its deadline", ctx->gens[0].id);

    infer_oai_set_error(&err, NGX_HTTP_GATEWAY_TIME_OUT, "timeout", NULL,
                        "timeout", "the request did not finish within %lu ms",
                        (unsigned long) ctx->model->timeout);
    ngx_http_infer_fail(ctx, &err);
}

/* Appends to a buffer that grows (non-streamed text). */
static ngx_int_t
ngx_http_infer_append(ngx_http_infer_oai_choice_t *ch, const char *text,
    size_t len)
{
    size_t   cap;
    u_char  *p;

    if (ch->text_len + len > ch->text_cap) {
        cap = ngx_max(2 * ch->text_cap, ch->text_len + len + 256);
        p = realloc(ch->text, cap);
        if (p == NULL) {
            return NGX_ERROR;
        }
        ch->text = p;
        ch->text_cap = cap;
    }
    ngx_memcpy(ch->text + ch->text_len, text, len);
    ch->text_len += len;
    return NGX_OK;
}

/* An event's text and logprobs: a chunk when streaming (when it carries
 * either), else gathered for the body. */
static ngx_int_t
ngx_http_infer_text(ngx_http_infer_ctx_t *ctx, int gen, infer_event_t *ev)
{
    char                         *part;
    size_t                        plen, safe;
    infer_oai_choice_t            c;
    ngx_http_infer_oai_t         *oai = ctx->data;
    ngx_http_infer_oai_choice_t  *ch = &oai->choices[gen];

    if (ch->logprobs != NULL && ev->n_lp > 0
        && infer_oai_logprobs_add(ch->logprobs, ev) != 0)
    {
        return NGX_ERROR;
    }

    if (!oai->req.stream || oai->tool_fmt != INFER_TOOL_FMT_NONE) {
        if (ev->text_len > 0
            && ngx_http_infer_append(ch, ev->text, ev->text_len) != NGX_OK)
        {
            return NGX_ERROR;
        }
        if (!oai->req.stream) {
            return NGX_OK;
        }
    }

    ngx_memzero(&c, sizeof(c));
    c.text = ev->text;
    c.text_len = ev->text_len;
    if (oai->tool_fmt != INFER_TOOL_FMT_NONE) {
        /* what may be a tool call is held until the choice ends */
        safe = infer_tool_stream_safe(oai->tool_fmt, (char *) ch->text,
                                      ch->text_len);
        c.text = (char *) ch->text + ch->sent;
        c.text_len = safe > ch->sent ? safe - ch->sent : 0;
        ch->sent += c.text_len;
    }
    if (c.text_len == 0 && infer_oai_logprobs_pending(ch->logprobs) == 0) {
        return NGX_OK;
    }
    c.logprobs = ch->logprobs;
    part = infer_oai_chunk(&oai->rsp, gen, &c, 0, oai->req.include_usage,
                           &plen);
    return ngx_http_infer_sse(ctx, &part, &plen, 1, 0);
}

/*
 * Choice gen has ended and its output may hold tool calls: parsed, they
 * make its finish "tool_calls" and, when streaming, are sent as OpenAI's
 * deltas after the content held back before them; output that holds none
 * (or none that parses) is content, sent now.
 */
static ngx_int_t
ngx_http_infer_tool_calls(ngx_http_infer_ctx_t *ctx, int gen)
{
    char                         *part;
    size_t                        i, plen, end;
    json_t                       *deltas;
    uint64_t                      seed;
    ngx_int_t                     rc;
    infer_oai_choice_t            c;
    ngx_http_infer_oai_t         *oai = ctx->data;
    ngx_http_infer_oai_choice_t  *ch = &oai->choices[gen];

    seed = ((uint64_t) ngx_random() << 32) ^ (uint64_t) ngx_random();
    ch->tool_calls = infer_tool_parse(oai->tool_fmt, (char *) ch->text,
                                      ch->text_len, seed, &ch->content_len);
    if (ch->tool_calls != NULL) {
        ch->finish = "tool_calls";
    }
    if (!oai->req.stream) {
        return NGX_OK;
    }

    end = ch->tool_calls != NULL ? ch->content_len : ch->text_len;
    if (end > ch->sent) {
        ngx_memzero(&c, sizeof(c));
        c.text = (char *) ch->text + ch->sent;
        c.text_len = end - ch->sent;
        ch->sent = end;
        part = infer_oai_chunk(&oai->rsp, gen, &c, 0, oai->req.include_usage,
                               &plen);
        if (ngx_http_infer_sse(ctx, &part, &plen, 1, 0) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }
    if (ch->tool_calls == NULL) {
        return NGX_OK;
    }

    deltas = infer_oai_tool_deltas(ch->tool_calls);
    if (deltas == NULL) {
        return NGX_ERROR;
    }
    rc = NGX_OK;
    for (i = 0; i < json_array_size(deltas) && rc != NGX_ERROR; i++) {
        ngx_memzero(&c, sizeof(c));
        c.tool_calls = json_array_get(deltas, i);
        part = infer_oai_chunk(&oai->rsp, gen, &c, 0, oai->req.include_usage,
                               &plen);
        rc = ngx_http_infer_sse(ctx, &part, &plen, 1, 0);
    }
    json_decref(deltas);
    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}

/* Choice gen has ended: its finish chunk when streaming; after the last
 * one, the usage and [DONE], or the whole body. */
static void
ngx_http_infer_complete(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev)
{
    int                           i, last;
    char                         *parts[2], *body;
    size_t                        lens[2], len;
    ngx_int_t                     rc;
    ngx_uint_t                    n;
    infer_oai_choice_t           *cs, c;
    ngx_http_infer_oai_t         *oai = ctx->data;
    ngx_http_infer_oai_choice_t  *ch = &oai->choices[gen];

    ch->finish = infer_oai_finish_reason(ev->finish);
    oai->prompt_tokens = ev->prompt_tokens;
    oai->completion_tokens += ev->completion_tokens;
    /* with n choices: the prompt tokens cached for every one of them */
    if (oai->n_done == 0 || ev->cached_tokens < oai->rsp.cached_tokens) {
        oai->rsp.cached_tokens = ev->cached_tokens;
    }
    last = ++oai->n_done == oai->req.n;

    if (oai->tool_fmt != INFER_TOOL_FMT_NONE
        && ngx_http_infer_tool_calls(ctx, gen) != NGX_OK)
    {
        ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
        return;
    }

    if (oai->req.stream) {
        n = 0;
        ngx_memzero(&c, sizeof(c));
        c.finish = ch->finish;
        c.logprobs = ch->logprobs;
        parts[n] = infer_oai_chunk(&oai->rsp, gen, &c, 0,
                                   oai->req.include_usage, &lens[n]);
        n++;
        if (last && oai->req.include_usage) {
            parts[n] = infer_oai_usage_chunk(&oai->rsp, oai->prompt_tokens,
                                             oai->completion_tokens,
                                             &lens[n]);
            n++;
        }
        rc = ngx_http_infer_sse(ctx, parts, lens, n, last);
        if (rc == NGX_ERROR) {
            ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
        } else if (last) {
            ngx_http_infer_ctx_finalize(ctx, rc);
        }
        return;
    }

    if (!last) {
        return;
    }

    cs = ngx_pcalloc(ctx->r->pool, oai->req.n * sizeof(infer_oai_choice_t));
    if (cs == NULL) {
        ngx_http_infer_ctx_finalize(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    for (i = 0; i < oai->req.n; i++) {
        cs[i].text = (char *) oai->choices[i].text;
        cs[i].text_len = oai->choices[i].text_len;
        cs[i].finish = oai->choices[i].finish;
        cs[i].logprobs = oai->choices[i].logprobs;
        cs[i].tool_calls = oai->choices[i].tool_calls;
        if (cs[i].tool_calls != NULL) {
            cs[i].text_len = oai->choices[i].content_len;
        }
    }
    body = infer_oai_completion_body(&oai->rsp, cs, oai->req.n,
                                     oai->prompt_tokens,
                                     oai->completion_tokens, &len);
    rc = ngx_http_infer_send_json(ctx->r, NGX_HTTP_OK, body, len);
    ngx_http_infer_ctx_finalize(ctx, rc);
}

static void
ngx_http_infer_openai_event(ngx_http_infer_ctx_t *ctx, int gen,
    infer_event_t *ev)
{
    infer_oai_error_t  err;

    if (ev->type != INFER_EVENT_ERROR
        && ngx_http_infer_text(ctx, gen, ev) == NGX_ERROR)
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
        ngx_http_infer_complete(ctx, gen, ev);
        return;
    }

    /* Any other end fails the whole response: the other choices are
     * cancelled with it. */
    if (ev->type == INFER_EVENT_DONE && ev->finish == INFER_FINISH_DEADLINE) {
        ngx_http_infer_ctx_cancel(ctx);
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
    ngx_http_infer_ctx_cancel(ctx);
    ngx_http_infer_fail(ctx, &err);
}

/* The {id} of .../models/{id}: what follows the first "/models/" (a
 * model's name may hold a slash). */
static ngx_int_t
ngx_http_infer_model_id(ngx_http_request_t *r, ngx_str_t *id)
{
    u_char  *p, *end;

    end = r->uri.data + r->uri.len;
    p = ngx_strnstr(r->uri.data, "/models/", r->uri.len);
    if (p == NULL || p + sizeof("/models/") - 1 == end) {
        return NGX_DECLINED;
    }
    if (id != NULL) {
        id->data = p + sizeof("/models/") - 1;
        id->len = end - id->data;
    }
    return NGX_OK;
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
    if (ngx_http_infer_ends_with("/detokenize")) {
        return NGX_HTTP_INFER_ROUTE_DETOKENIZE;
    }
    if (ngx_http_infer_ends_with("/tokenize")) {
        return NGX_HTTP_INFER_ROUTE_TOKENIZE;
    }
    if (ngx_http_infer_ends_with("/models")) {
        return NGX_HTTP_INFER_ROUTE_MODELS;
    }
    if (ngx_http_infer_model_id(r, NULL) == NGX_OK) {
        return NGX_HTTP_INFER_ROUTE_MODEL;
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

/* GET .../models/{id}: one model of the location, or 404 as OpenAI's. */
static ngx_int_t
ngx_http_infer_model(ngx_http_request_t *r)
{
    char                       *body;
    size_t                      len;
    ngx_int_t                   rc;
    ngx_str_t                   id;
    infer_oai_error_t           err;
    ngx_http_infer_model_t     *m;
    ngx_http_infer_loc_conf_t  *ilcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
    ngx_str_null(&id);
    (void) ngx_http_infer_model_id(r, &id);
    m = ngx_http_infer_find_model(ilcf, (const char *) id.data, id.len);
    if (m == NULL) {
        infer_oai_set_error(&err, NGX_HTTP_NOT_FOUND, NGX_HTTP_INFER_INVALID,
                            "model", "model_not_found",
                            "the model '%.*s' does not exist",
                            (int) id.len, id.data);
        return ngx_http_infer_oai_error(r, &err);
    }

    body = infer_oai_model_body((const char *) m->name.data, m->created,
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

    if (route == NGX_HTTP_INFER_ROUTE_MODELS
        || route == NGX_HTTP_INFER_ROUTE_MODEL)
    {
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
        return route == NGX_HTTP_INFER_ROUTE_MODELS
               ? ngx_http_infer_models(r) : ngx_http_infer_model(r);
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
    return ngx_http_infer_oai_error(r, &err);
}

/*
 * Renders and tokenizes the prompt into job->ids.  Runs in the event loop
 * or, for a big prompt, in a thread of nginx's pool: it touches nothing but
 * the job and the model's read-only tokenizer and settings, allocates with
 * malloc only and logs nothing.
 */
static void
ngx_http_infer_tokenize(ngx_http_infer_oai_t *job)
{
    int                      i, vocab, context, tokenize;
    char                    *text;
    size_t                   len, least;
    infer_oai_request_t     *req = &job->req;
    infer_oai_error_t       *err = &job->err;
    ngx_http_infer_model_t  *m = job->model;

    job->rc = NGX_ERROR;
    vocab = infer_engine_vocab_size(m->engine);

    for (i = 0; i < req->n_bias; i++) {
        if (req->bias_ids[i] >= vocab) {
            infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST,
                                NGX_HTTP_INFER_INVALID, "logit_bias", NULL,
                                "'logit_bias' token id %d is outside the "
                                "vocabulary of %d", req->bias_ids[i], vocab);
            return;
        }
    }

    if (req->prompt_ids != NULL) {
        for (i = 0; i < req->n_prompt_ids; i++) {
            if (req->prompt_ids[i] >= vocab) {
                infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST,
                                    NGX_HTTP_INFER_INVALID,
                                    job->route
                                    == NGX_HTTP_INFER_ROUTE_DETOKENIZE
                                    ? "tokens" : "prompt", NULL,
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
        text = infer_oai_chat_prompt(m->tmpl, req, m->special, &len, err);
        if (text == NULL) {
            return;
        }
    } else {
        len = req->prompt_len;
    }

    /* what cannot fit, by its size alone, is refused before encoding
     * (tokenize says how long it is: the client compares) */
    least = infer_tokenizer_min_ids(job->tok, len);
    context = infer_engine_context_length(m->engine);
    if (job->route != NGX_HTTP_INFER_ROUTE_TOKENIZE
        && (least >= (size_t) context
            || (req->has_max_tokens
                && least + req->max_tokens > (size_t) context)))
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

    tokenize = job->route == NGX_HTTP_INFER_ROUTE_TOKENIZE;
    if (text != NULL) {
        /* The rendered text holds the special tokens itself. */
        i = infer_tokenizer_encode(job->tok, text, len,
                                   tokenize && req->add_special, &job->ids,
                                   &job->n);
        free(text);

    } else {
        i = infer_tokenizer_encode(job->tok, req->prompt, req->prompt_len,
                                   !tokenize || req->add_special, &job->ids,
                                   &job->n);
    }

    if (i != 0) {
        job->ids = NULL;
        infer_oai_set_error(err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL,
                            "the prompt could not be tokenized");
        return;
    }
    if (job->n == 0 && !tokenize) {
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
        if (n_prompt < context && req->has_max_tokens
            && req->max_tokens > 0)
        {
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
    case INFER_EOUTPUT:
        infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST, NGX_HTTP_INFER_INVALID,
                            "logprobs", NULL, "the logprobs of %d choice%s "
                            "of up to %d tokens would exceed this server's "
                            "limit of %zu bytes", req->n,
                            req->n > 1 ? "s" : "",
                            req->has_max_tokens
                            ? req->max_tokens
                            : infer_engine_context_length(m->engine)
                              - n_prompt,
                            infer_engine_max_output(m->engine));
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
 * big body, in a thread of nginx's pool, so it touches only the job,
 * read-only configuration and the model's tokenizer; job->rc says how it
 * went, job->err why not.
 */
static void
ngx_http_infer_prepare(void *data)
{
    const char              *why;
    ngx_http_infer_oai_t    *job = data;
    infer_oai_request_t     *req = &job->req;
    infer_oai_error_t       *err = &job->err;
    ngx_http_infer_model_t  *m;

    job->rc = NGX_ERROR;

    if (job->route == NGX_HTTP_INFER_ROUTE_TOKENIZE
        || job->route == NGX_HTTP_INFER_ROUTE_DETOKENIZE)
    {
        if (infer_oai_parse_tokenize((char *) job->body, job->body_len,
                                     job->route
                                     == NGX_HTTP_INFER_ROUTE_DETOKENIZE,
                                     req, err)
            != 0)
        {
            return;
        }
        job->kind = req->kind;

    } else if (infer_oai_parse_request((char *) job->body, job->body_len,
                                       job->kind, (int) job->conf->max_n,
                                       req, err)
               != 0)
    {
        return;
    }

    if (req->model == NULL) {
        /* vLLM's tokenize takes the model it serves */
        if (job->conf->models->nelts != 1) {
            infer_oai_set_error(err, NGX_HTTP_BAD_REQUEST,
                                NGX_HTTP_INFER_INVALID, "model", NULL,
                                "'model' is required: this location serves "
                                "%d models", (int) job->conf->models->nelts);
            return;
        }
        m = ((ngx_http_infer_model_t **) job->conf->models->elts)[0];

    } else {
        m = ngx_http_infer_find_model(job->conf, req->model,
                                      strlen(req->model));
    }
    if (m == NULL) {
        infer_oai_set_error(err, NGX_HTTP_NOT_FOUND, NGX_HTTP_INFER_INVALID,
                            "model", "model_not_found",
                            "the model '%s' does not exist", req->model);
        return;
    }
    if (!ngx_http_infer_model_allowed(&job->allowed, m)) {
        infer_oai_set_error(err, NGX_HTTP_FORBIDDEN, NGX_HTTP_INFER_INVALID,
                            "model", "model_not_allowed",
                            "this client may not use the model '%s'",
                            m->name.data);
        return;
    }
    why = ngx_http_infer_model_unavailable(m);
    if (why != NULL) {
        infer_oai_set_error(err, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "server_error", NULL, "unavailable",
                            "the model '%s' is not available in this "
                            "worker: %s", m->name.data, why);
        return;
    }

    job->model = m;
    job->tok = infer_engine_tokenizer(m->engine);
    /* tool_choice "none": the model is not to call any, and what it
     * writes is content */
    if (req->kind == INFER_OAI_CHAT && req->tools != NULL
        && req->tool_choice != INFER_OAI_TOOLS_NONE)
    {
        job->tool_fmt = m->tool_fmt;
    }
    ngx_http_infer_tokenize(job);
}

/* The engine request of every choice but its seed, or NGX_ERROR with
 * job->err. */
static ngx_int_t
ngx_http_infer_engine_request(ngx_http_infer_oai_t *job, infer_request_t *ir)
{
    int                      context;
    size_t                   bytes;
    infer_oai_request_t     *req = &job->req;
    ngx_http_infer_model_t  *m = job->model;

    context = infer_engine_context_length(m->engine);

    ngx_memzero(ir, sizeof(infer_request_t));
    ir->prompt = job->ids;
    ir->n_prompt = job->n;
    if (req->has_max_tokens) {
        ir->max_tokens = req->max_tokens;

    } else if (req->kind == INFER_OAI_COMPLETION) {
        /* OpenAI's default for completions is 16, up to the context end */
        ir->max_tokens = ngx_max(ngx_min(16, context - job->n), 1);

    } else {
        /* and for chat the context end */
        ir->max_tokens = INFER_TO_CONTEXT_END;
    }
    if (ir->max_tokens >= 0 && req->min_tokens > ir->max_tokens) {
        infer_oai_set_error(&job->err, NGX_HTTP_BAD_REQUEST,
                            NGX_HTTP_INFER_INVALID, "min_tokens", NULL,
                            "'min_tokens' (%d) must not exceed the %d "
                            "tokens of 'max_tokens'", req->min_tokens,
                            ir->max_tokens);
        return NGX_ERROR;
    }
    ir->min_tokens = req->min_tokens;
    ir->temperature = (float) req->temperature;
    ir->top_p = (float) req->top_p;
    ir->top_k = req->top_k;
    ir->presence_penalty = (float) req->presence_penalty;
    ir->frequency_penalty = (float) req->frequency_penalty;
    ir->repetition_penalty = (float) req->repetition_penalty;
    ir->bias_ids = req->bias_ids;
    ir->bias = req->bias;
    ir->n_bias = req->n_bias;
    ir->stop = (const char *const *) req->stop;
    ir->n_stop = req->n_stop;
    /* Mistral's calls begin with [TOOL_CALLS], a special token in its
     * tokenizers: its parser needs to see it (as vLLM's turns
     * skip_special_tokens off for it) */
    ir->keep_special = !req->skip_special
                       || job->tool_fmt == INFER_TOOL_FMT_MISTRAL;
    if (req->kind == INFER_OAI_CHAT && m->n_end_ids > 0) {
        ir->stop_ids = m->end_ids;
        ir->n_stop_ids = m->n_end_ids;
    }
    ir->logprobs = req->logprobs;
    ir->top_logprobs = req->top_logprobs;
    /* echo shows the prompt's tokens too, the first one without */
    ir->prompt_logprobs = req->logprobs && req->echo;
    ir->deadline_ms = infer_now_ms() + (int64_t) m->timeout;
    ir->priority = req->priority;

    /* the choices share the cap one engine request has */
    bytes = infer_engine_output_bytes(m->engine, ir);
    if (job->n < context
        && bytes * req->n > infer_engine_max_output(m->engine))
    {
        ngx_http_infer_submit_error(INFER_EOUTPUT, req, job->n, m,
                                    &job->err);
        return NGX_ERROR;
    }
    return NGX_OK;
}

/* What each choice gathers: its text (the prompt first with echo) and
 * logprobs. */
static ngx_int_t
ngx_http_infer_choices(ngx_http_request_t *r, ngx_http_infer_oai_t *job)
{
    int                           i;
    size_t                        chars;
    infer_oai_request_t          *req = &job->req;
    ngx_http_infer_oai_choice_t  *ch;

    job->choices = ngx_pcalloc(r->pool,
                               req->n * sizeof(ngx_http_infer_oai_choice_t));
    if (job->choices == NULL) {
        return NGX_ERROR;
    }

    if (req->echo && req->prompt != NULL) {
        job->echo = req->prompt;
        job->echo_len = req->prompt_len;
    } else if (req->echo) {
        job->echo = infer_oai_decode(job->tok, job->ids, job->n,
                                     &job->echo_len);
        if (job->echo == NULL) {
            return NGX_ERROR;
        }
    }
    chars = infer_oai_chars(job->echo, job->echo_len);

    for (i = 0; i < req->n; i++) {
        ch = &job->choices[i];
        if (!req->stream && job->echo_len > 0
            && ngx_http_infer_append(ch, job->echo, job->echo_len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
        if (req->logprobs) {
            ch->logprobs = infer_oai_logprobs_create(req->kind, job->tok,
                                                     job->ids, job->n,
                                                     req->echo, chars);
            if (ch->logprobs == NULL) {
                return NGX_ERROR;
            }
        }
    }
    return NGX_OK;
}

/* Submits a generation per choice; on success the context waits for the
 * engine's events. */
static ngx_int_t
ngx_http_infer_submit(ngx_http_request_t *r, ngx_http_infer_oai_t *job)
{
    int                      rc, i;
    const char              *why;
    infer_request_t          ireq;
    infer_oai_kind_t         kind;
    infer_oai_request_t     *req = &job->req;
    ngx_http_infer_ctx_t    *ctx;
    ngx_http_infer_model_t  *m = job->model;

    kind = req->kind;
    why = ngx_http_infer_model_unavailable(m);
    if (why != NULL) {
        /* the engine stopped while the prompt was tokenized */
        infer_oai_set_error(&job->err, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "server_error", NULL, "unavailable",
                            "the model '%s' is not available in this "
                            "worker: %s", req->model, why);
        return NGX_ERROR;
    }

    if (ngx_http_infer_engine_request(job, &ireq) != NGX_OK) {
        return NGX_ERROR;
    }
    if (ngx_http_infer_choices(r, job) != NGX_OK) {
        infer_oai_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL, "out of memory");
        return NGX_ERROR;
    }

    ctx = ngx_http_infer_ctx_create(r, m, &ngx_http_infer_openai_frontend,
                                    req->n);
    if (ctx == NULL) {
        infer_oai_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL, "out of memory");
        return NGX_ERROR;
    }
    ctx->data = job;
    job->ctx = ctx;
    /* $infer_request_id is the id's tail */
    ngx_sprintf((u_char *) job->rsp_id, "%s%s%Z",
                kind == INFER_OAI_CHAT ? "chatcmpl-" : "cmpl-",
                ctx->request_id);
    job->rsp.kind = kind;
    job->rsp.id = job->rsp_id;
    job->rsp.created = ngx_time();
    /* The configuration outlives the request (and the worker's cycle
     * outlives a reload), so the model's own name can be used. */
    job->rsp.model = (const char *) m->name.data;

    for (i = 0; i < req->n; i++) {
        /* a seed makes the choices reproducible, not the same */
        ireq.seed = req->seed + (uint64_t) i;
        ireq.has_seed = req->has_seed;
        rc = ngx_http_infer_ctx_submit(ctx, i, &ireq);
        if (rc != INFER_OK) {
            ngx_http_infer_submit_error(rc, req, job->n, m, &job->err);
            return NGX_ERROR;
        }
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "infer: submitted request %uL, %d prompt tokens, "
                   "%d choices, stream %d", ctx->gens[0].id, job->n, req->n,
                   req->stream);

    if (req->stream && ngx_http_infer_sse_start(ctx) != NGX_OK) {
        ngx_http_infer_ctx_finalize(ctx, NGX_ERROR);
    }
    return NGX_OK;
}

/* Submits a prepared job, or answers with its error (the choices already
 * submitted are cancelled: their events must not reach the answer). */
static void
ngx_http_infer_go(ngx_http_request_t *r, void *data)
{
    char                  *body;
    size_t                 len;
    ngx_http_infer_oai_t  *job = data;

    if (job->rc == NGX_OK && job->route == NGX_HTTP_INFER_ROUTE_TOKENIZE) {
        body = infer_oai_tokenize_body(job->tok, job->ids, job->n,
                   infer_engine_context_length(job->model->engine),
                   job->req.token_strs, &len);
        ngx_http_finalize_request(r, ngx_http_infer_send_json(r, NGX_HTTP_OK,
                                                              body, len));
        return;
    }
    if (job->rc == NGX_OK && job->route == NGX_HTTP_INFER_ROUTE_DETOKENIZE)
    {
        body = infer_oai_detokenize_body(job->tok, job->ids, job->n, &len);
        ngx_http_finalize_request(r, ngx_http_infer_send_json(r, NGX_HTTP_OK,
                                                              body, len));
        return;
    }

    if (job->rc == NGX_OK && ngx_http_infer_submit(r, job) == NGX_OK) {
        return;
    }
    if (job->ctx != NULL) {
        ngx_http_infer_ctx_cancel(job->ctx);
        ngx_http_infer_ctx_finalize(job->ctx,
                                    ngx_http_infer_oai_error(r, &job->err));
        return;
    }
    ngx_http_finalize_request(r, ngx_http_infer_oai_error(r, &job->err));
}

static void
ngx_http_infer_job_cleanup(void *data)
{
    int                    i;
    ngx_http_infer_oai_t  *job = data;

    for (i = 0; job->choices != NULL && i < job->req.n; i++) {
        free(job->choices[i].text);
        infer_oai_logprobs_free(job->choices[i].logprobs);
        json_decref(job->choices[i].tool_calls);
    }
    if (job->echo != job->req.prompt) {
        free(job->echo);
    }
    infer_oai_request_free(&job->req);
    free(job->ids);
}

static void
ngx_http_infer_body_handler(ngx_http_request_t *r)
{
    infer_oai_kind_t        kind;
    ngx_http_infer_route_t  route;
    ngx_pool_cleanup_t    *cln;
    ngx_http_infer_oai_t  *job;

    route = ngx_http_infer_route(r);
    kind = route == NGX_HTTP_INFER_ROUTE_CHAT ? INFER_OAI_CHAT
                                              : INFER_OAI_COMPLETION;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_infer_oai_t));
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    job = cln->data;
    ngx_memzero(job, sizeof(ngx_http_infer_oai_t));
    cln->handler = ngx_http_infer_job_cleanup;
    job->kind = kind;
    job->route = route;
    job->conf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);

    job->body = ngx_http_infer_read_body(r, &job->body_len);
    if (job->body == NULL
        || ngx_http_infer_allowed_models(r, &job->allowed) != NGX_OK)
    {
        infer_oai_set_error(&job->err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL,
                            "cannot read the request body");
        ngx_http_finalize_request(r, ngx_http_infer_oai_error(r, &job->err));
        return;
    }

    if (ngx_http_infer_run_later(r, job->body_len, ngx_http_infer_prepare,
                                 ngx_http_infer_go, job)
        == NGX_OK)
    {
        return;
    }

    ngx_http_infer_prepare(job);
    ngx_http_infer_go(r, job);
}
