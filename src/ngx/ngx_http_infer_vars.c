/*
 * Variables for log_format (and anything else that takes variables), and
 * W3C trace context.
 *
 *     $infer_model              the model that served the request
 *     $infer_prompt_tokens      prompt tokens of its engine requests
 *     $infer_completion_tokens  tokens they generated
 *     $infer_finish_reason      stop, length, cancelled, timeout or error
 *                               (its first engine request's)
 *     $infer_ttft               ms from submission to the first token
 *     $infer_queue_time         ms from submission until the engine ran it
 *                               (joined its running batch)
 *     $infer_engine_steps       FIRST-LAST: the engine's steps that
 *                               computed its first and last tokens
 *     $infer_request_id         24 hex digits (OpenAI's response id ends
 *                               with them)
 *     $infer_trace_id           the 32 hex digits of the trace
 *     $infer_traceparent        the traceparent the response carries
 *
 * The request's figures are read from its context (ngx_http_set_ctx),
 * which lives until the request is freed, after the log phase; a request
 * that never reached an engine has none, and they log as "-".
 *
 * traceparent (https://www.w3.org/TR/trace-context/): a valid one from the
 * client keeps its trace id and flags; otherwise a new trace id is made.
 * Either way this server is a new span of it, with a span id of its own,
 * and the response carries "traceparent: 00-TRACE-SPAN-FLAGS" in every
 * location an infer_* handler serves.
 */
#include "ngx_http_infer.h"

#define NGX_HTTP_INFER_TRACEPARENT_LEN  55

enum {
    NGX_HTTP_INFER_VAR_MODEL = 0,
    NGX_HTTP_INFER_VAR_PROMPT,
    NGX_HTTP_INFER_VAR_COMPLETION,
    NGX_HTTP_INFER_VAR_FINISH,
    NGX_HTTP_INFER_VAR_TTFT,
    NGX_HTTP_INFER_VAR_QUEUE_TIME,
    NGX_HTTP_INFER_VAR_STEPS,
    NGX_HTTP_INFER_VAR_REQUEST_ID
};

static ngx_int_t ngx_http_infer_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_infer_trace_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_infer_trace_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_infer_served(ngx_http_request_t *r);

static ngx_http_variable_t  ngx_http_infer_vars[] = {

    { ngx_string("infer_model"), NULL, ngx_http_infer_variable,
      NGX_HTTP_INFER_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("infer_prompt_tokens"), NULL, ngx_http_infer_variable,
      NGX_HTTP_INFER_VAR_PROMPT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("infer_completion_tokens"), NULL, ngx_http_infer_variable,
      NGX_HTTP_INFER_VAR_COMPLETION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("infer_finish_reason"), NULL, ngx_http_infer_variable,
      NGX_HTTP_INFER_VAR_FINISH, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("infer_ttft"), NULL, ngx_http_infer_variable,
      NGX_HTTP_INFER_VAR_TTFT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("infer_queue_time"), NULL, ngx_http_infer_variable,
      NGX_HTTP_INFER_VAR_QUEUE_TIME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("infer_engine_steps"), NULL, ngx_http_infer_variable,
      NGX_HTTP_INFER_VAR_STEPS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("infer_request_id"), NULL, ngx_http_infer_variable,
      NGX_HTTP_INFER_VAR_REQUEST_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* cacheable: made once per request */
    { ngx_string("infer_traceparent"), NULL, ngx_http_infer_trace_variable,
      0, 0, 0 },

    { ngx_string("infer_trace_id"), NULL, ngx_http_infer_trace_variable,
      1, 0, 0 },

      ngx_http_null_variable
};

static ngx_int_t  ngx_http_infer_traceparent_index = NGX_ERROR;


ngx_int_t
ngx_http_infer_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_infer_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }
        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}

ngx_int_t
ngx_http_infer_trace_init(ngx_conf_t *cf)
{
    ngx_str_t                   name = ngx_string("infer_traceparent");
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    ngx_http_infer_traceparent_index = ngx_http_get_variable_index(cf, &name);
    if (ngx_http_infer_traceparent_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_infer_trace_handler;

    return NGX_OK;
}

/* The engine's finish of an event, as metrics and logs name it. */
const char *
ngx_http_infer_finish_name(ngx_uint_t type, ngx_uint_t finish)
{
    if (type == INFER_EVENT_ERROR) {
        return "error";
    }
    switch (finish) {
    case INFER_FINISH_STOP:
        return "stop";
    case INFER_FINISH_LENGTH:
        return "length";
    case INFER_FINISH_CANCELLED:
        return "cancelled";
    case INFER_FINISH_DEADLINE:
        return "timeout";
    default:
        return "error";
    }
}

static ngx_int_t
ngx_http_infer_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                *p;
    int64_t                us;
    ngx_http_infer_ctx_t  *ctx;
    ngx_http_infer_gen_t  *g;

    ctx = ngx_http_get_module_ctx(r, ngx_http_infer_module);
    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    g = &ctx->gens[0];

    switch (data) {

    case NGX_HTTP_INFER_VAR_MODEL:
        v->data = ctx->model->name.data;
        v->len = ctx->model->name.len;
        break;

    case NGX_HTTP_INFER_VAR_PROMPT:
    case NGX_HTTP_INFER_VAR_COMPLETION:
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }
        v->data = p;
        v->len = ngx_sprintf(p, "%L", data == NGX_HTTP_INFER_VAR_PROMPT
                                      ? ctx->prompt_tokens
                                      : ctx->completion_tokens)
                 - p;
        break;

    case NGX_HTTP_INFER_VAR_FINISH:
        if (ctx->finish == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }
        v->data = (u_char *) ctx->finish;
        v->len = ngx_strlen(ctx->finish);
        break;

    case NGX_HTTP_INFER_VAR_TTFT:
    case NGX_HTTP_INFER_VAR_QUEUE_TIME:
        us = data == NGX_HTTP_INFER_VAR_TTFT
             ? (g->first_us != 0 ? g->first_us - g->start_us : -1)
             : g->queue_us;
        if (us < 0) {
            v->not_found = 1;
            return NGX_OK;
        }
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 4);
        if (p == NULL) {
            return NGX_ERROR;
        }
        v->data = p;
        v->len = ngx_sprintf(p, "%L.%03L", us / 1000, us % 1000) - p;
        break;

    case NGX_HTTP_INFER_VAR_STEPS:
        if (g->first_step == 0) {
            v->not_found = 1;
            return NGX_OK;
        }
        p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }
        v->data = p;
        v->len = ngx_sprintf(p, "%uL-%uL", g->first_step, g->last_step) - p;
        break;

    default: /* NGX_HTTP_INFER_VAR_REQUEST_ID */
        v->data = ctx->request_id;
        v->len = ngx_strlen(ctx->request_id);
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}

static ngx_uint_t
ngx_http_infer_is_hex(u_char *p, size_t n, ngx_uint_t nonzero)
{
    ngx_uint_t  zero = 1;

    while (n--) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return 0;
        }
        zero &= (*p == '0');
        p++;
    }
    return !(nonzero && zero);
}

/* The client's traceparent when it is valid: a version of two lower-case
 * hex digits (not ff), a trace id and a parent id not all zeros, flags;
 * version 00 is exactly 55 bytes, later versions may add fields after a
 * '-'. */
static ngx_uint_t
ngx_http_infer_traceparent_valid(ngx_str_t *tp)
{
    u_char  *p = tp->data;

    if (tp->len < NGX_HTTP_INFER_TRACEPARENT_LEN
        || !ngx_http_infer_is_hex(p, 2, 0)
        || (p[0] == 'f' && p[1] == 'f'))
    {
        return 0;
    }
    if (tp->len > NGX_HTTP_INFER_TRACEPARENT_LEN
        && ((p[0] == '0' && p[1] == '0')
            || p[NGX_HTTP_INFER_TRACEPARENT_LEN] != '-'))
    {
        return 0;
    }
    return p[2] == '-' && p[35] == '-' && p[52] == '-'
           && ngx_http_infer_is_hex(p + 3, 32, 1)
           && ngx_http_infer_is_hex(p + 36, 16, 1)
           && ngx_http_infer_is_hex(p + 53, 2, 0);
}

/* $infer_traceparent (data 0) and $infer_trace_id (1): the response's
 * traceparent, made once per request and kept in its indexed value. */
static ngx_int_t
ngx_http_infer_trace_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    ngx_table_elt_t            *h;
    ngx_http_variable_value_t  *tp;

    if (!ngx_http_infer_served(r)) {
        /* no response of this location carries one */
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == 1) {
        tp = ngx_http_get_indexed_variable(r,
                                           ngx_http_infer_traceparent_index);
        if (tp == NULL || tp->not_found) {
            v->not_found = 1;
            return NGX_OK;
        }
        v->data = tp->data + 3;
        v->len = 32;
        v->valid = 1;
        v->no_cacheable = 0;
        v->not_found = 0;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_HTTP_INFER_TRACEPARENT_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_http_infer_find_header(r, "traceparent");

    if (h != NULL && ngx_http_infer_traceparent_valid(&h->value)) {
        /* its trace id and flags, our span */
        ngx_sprintf(p, "00-%*s-%08xD%08xD-%*s", (size_t) 32,
                    h->value.data + 3, (uint32_t) ngx_random(),
                    (uint32_t) ngx_random(), (size_t) 2, h->value.data + 53);

    } else {
        /* ngx_random() gives 31 bits: 4 draws of 8 hex digits */
        ngx_sprintf(p, "00-%08xD%08xD%08xD%08xD-%08xD%08xD-00",
                    (uint32_t) ngx_random() | 1, (uint32_t) ngx_random(),
                    (uint32_t) ngx_random(), (uint32_t) ngx_random(),
                    (uint32_t) ngx_random() | 1, (uint32_t) ngx_random());
    }

    v->data = p;
    v->len = NGX_HTTP_INFER_TRACEPARENT_LEN;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}

static ngx_uint_t
ngx_http_infer_served(ngx_http_request_t *r)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    return clcf->handler == ngx_http_infer_openai_handler
           || clcf->handler == ngx_http_infer_predict_handler
           || clcf->handler == ngx_http_infer_kserve_handler
           || clcf->handler == ngx_http_infer_grpc_handler;
}

/* Preaccess: the traceparent of a request an infer_* location serves is
 * made before anything can answer it (limit_req, infer_api_keys), and goes
 * into the response's headers. */
static ngx_int_t
ngx_http_infer_trace_handler(ngx_http_request_t *r)
{
    ngx_table_elt_t            *h;
    ngx_http_variable_value_t  *v;

    if (r != r->main || r->internal || !ngx_http_infer_served(r)) {
        return NGX_DECLINED;
    }

    v = ngx_http_get_indexed_variable(r, ngx_http_infer_traceparent_index);
    if (v == NULL || v->not_found) {
        return NGX_DECLINED;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "traceparent");
    h->value.data = v->data;
    h->value.len = v->len;

    return NGX_DECLINED;
}
