/*
 * OpenAI-compatible JSON codec.  Field rules follow the OpenAI API reference:
 * unknown fields are ignored, null means "not given", wrong types and
 * out-of-range values are 400 invalid_request_error naming the field.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "infer.h"
#include "openai.h"

#define OAI_INVALID  "invalid_request_error"

/*
 * Messages quote what the client sent (a URI, a model name, the JSON
 * parser's text around a bad byte) and are cut at the buffer's end, so they
 * may hold bytes that are not UTF-8 or end inside a character; JSON cannot
 * carry those.  Each bad byte becomes U+FFFD, and the message ends at the
 * last whole character that fits.
 */
static void
oai_utf8_repair(char *s, size_t cap)
{
    char              in[sizeof(((infer_oai_error_t *) 0)->message)];
    size_t            i, o, n, len;
    utf8proc_int32_t  cp;
    utf8proc_ssize_t  k;

    len = strlen(s);
    if (len >= sizeof(in)) {
        len = sizeof(in) - 1;
    }
    memcpy(in, s, len);

    for (i = 0, o = 0; i < len; i += n) {
        k = utf8proc_iterate((const utf8proc_uint8_t *) in + i, len - i, &cp);
        if (k > 0) {
            n = (size_t) k;
            if (o + n >= cap) {
                break;
            }
            memcpy(s + o, in + i, n);
            o += n;
        } else {
            n = 1;
            if (o + 3 >= cap) {
                break;
            }
            memcpy(s + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
    }
    s[o] = '\0';
}

void
infer_oai_set_error(infer_oai_error_t *err, int status, const char *type,
    const char *param, const char *code, const char *fmt, ...)
{
    va_list  ap;

    err->status = status;
    err->type = type;
    err->param = param;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    oai_utf8_repair(err->message, sizeof(err->message));
}

#define oai_invalid(err, param, ...)                                         \
    infer_oai_set_error(err, 400, OAI_INVALID, param, NULL, __VA_ARGS__)

/* A field that is absent or JSON null counts as not given. */
static json_t *
oai_field(json_t *root, const char *name)
{
    json_t  *v;

    v = json_object_get(root, name);
    return json_is_null(v) ? NULL : v;
}

static int
oai_get_int(json_t *root, const char *name, long long min, long long max,
    long long *out, infer_oai_error_t *err)
{
    json_t     *v;
    long long   x;

    v = oai_field(root, name);
    if (v == NULL) {
        return 0;
    }
    if (!json_is_integer(v)) {
        oai_invalid(err, name, "'%s' must be an integer", name);
        return -1;
    }
    x = json_integer_value(v);
    if (x < min || x > max) {
        oai_invalid(err, name, "'%s' must be between %lld and %lld, got %lld",
                    name, min, max, x);
        return -1;
    }
    *out = x;
    return 1;
}

static int
oai_get_number(json_t *root, const char *name, double *out,
    infer_oai_error_t *err)
{
    json_t  *v;

    v = oai_field(root, name);
    if (v == NULL) {
        return 0;
    }
    if (!json_is_number(v)) {
        oai_invalid(err, name, "'%s' must be a number", name);
        return -1;
    }
    *out = json_number_value(v);
    return 1;
}

static int
oai_get_bool(json_t *root, const char *name, int *out, infer_oai_error_t *err)
{
    json_t  *v;

    v = oai_field(root, name);
    if (v == NULL) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        oai_invalid(err, name, "'%s' must be a boolean", name);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

static int
oai_nomem(infer_oai_error_t *err)
{
    infer_oai_set_error(err, 500, "server_error", NULL, NULL,
                        "out of memory");
    return -1;
}

/* A copy of a JSON string, which may hold NUL bytes (length in *len). */
static char *
oai_strdup(json_t *s, size_t *len, infer_oai_error_t *err)
{
    char    *p;
    size_t   n;

    n = json_string_length(s);
    p = malloc(n + 1);
    if (p == NULL) {
        oai_nomem(err);
        return NULL;
    }
    memcpy(p, json_string_value(s), n + 1);
    if (len != NULL) {
        *len = n;
    }
    return p;
}

/* A copy of a string used as C text (a name, a role, chat content, a stop
 * sequence): a NUL byte would silently cut it short, so it is refused. */
static char *
oai_text(json_t *s, const char *param, const char *what,
    infer_oai_error_t *err)
{
    if (memchr(json_string_value(s), '\0', json_string_length(s)) != NULL) {
        oai_invalid(err, param, "%s must not contain a NUL character", what);
        return NULL;
    }
    return oai_strdup(s, NULL, err);
}

static int
oai_parse_ids(json_t *a, infer_oai_request_t *req, infer_oai_error_t *err)
{
    json_t  *v;
    size_t   i;

    req->prompt_ids = malloc(json_array_size(a) * sizeof(int32_t));
    if (req->prompt_ids == NULL) {
        return oai_nomem(err);
    }
    json_array_foreach(a, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0
            || json_integer_value(v) > INT32_MAX)
        {
            oai_invalid(err, "prompt", "'prompt' token ids must be "
                        "non-negative integers (element %zu)", i);
            return -1;
        }
        req->prompt_ids[i] = (int32_t) json_integer_value(v);
    }
    req->n_prompt_ids = (int) json_array_size(a);
    return 0;
}

/* prompt: a string, an array of token ids, or a one-element array of
 * either (a batch of one). */
static int
oai_parse_prompt(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    json_t  *p;

    p = oai_field(root, "prompt");
    if (p == NULL) {
        oai_invalid(err, "prompt", "'prompt' is required");
        return -1;
    }

    if (json_is_array(p) && json_array_size(p) > 0
        && !json_is_integer(json_array_get(p, 0)))
    {
        if (json_array_size(p) > 1) {
            oai_invalid(err, "prompt", "batched prompts are not supported: "
                        "send one prompt per request");
            return -1;
        }
        p = json_array_get(p, 0);
    }

    if (json_is_string(p)) {
        req->prompt = oai_strdup(p, &req->prompt_len, err);
        return req->prompt ? 0 : -1;
    }
    if (json_is_array(p)) {
        if (json_array_size(p) == 0) {
            oai_invalid(err, "prompt", "'prompt' must not be empty");
            return -1;
        }
        return oai_parse_ids(p, req, err);
    }
    oai_invalid(err, "prompt", "'prompt' must be a string or an array of "
                "token ids");
    return -1;
}

/* content: a string, null, or an array of {"type":"text","text":...}
 * parts joined with newlines. */
static char *
oai_message_content(json_t *c, size_t i, infer_oai_error_t *err)
{
    json_t  *part, *t, *type;
    char    *s, what[64];
    size_t   k, len, n;

    snprintf(what, sizeof(what), "messages[%zu].content", i);

    if (c == NULL || json_is_null(c)) {
        s = strdup("");
        if (s == NULL) {
            oai_nomem(err);
        }
        return s;
    }
    if (json_is_string(c)) {
        return oai_text(c, "messages", what, err);
    }
    if (!json_is_array(c)) {
        oai_invalid(err, "messages", "%s must be a string or an array of "
                    "text parts", what);
        return NULL;
    }

    len = 0;
    json_array_foreach(c, k, part) {
        t = json_object_get(part, "text");
        type = json_object_get(part, "type");
        if (!json_is_string(type)
            || strcmp(json_string_value(type), "text") != 0
            || !json_is_string(t))
        {
            oai_invalid(err, "messages", "%s[%zu]: only parts of type "
                        "\"text\" with a string \"text\" are supported",
                        what, k);
            return NULL;
        }
        if (memchr(json_string_value(t), '\0', json_string_length(t))
            != NULL)
        {
            oai_invalid(err, "messages", "%s[%zu].text must not contain a "
                        "NUL character", what, k);
            return NULL;
        }
        len += json_string_length(t) + 1;
    }

    s = malloc(len + 1);
    if (s == NULL) {
        oai_nomem(err);
        return NULL;
    }
    n = 0;
    json_array_foreach(c, k, part) {
        t = json_object_get(part, "text");
        if (k > 0) {
            s[n++] = '\n';
        }
        memcpy(s + n, json_string_value(t), json_string_length(t));
        n += json_string_length(t);
    }
    s[n] = '\0';
    return s;
}

static int
oai_parse_messages(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    json_t  *a, *m, *role;
    char     what[64];
    size_t   i;

    a = oai_field(root, "messages");
    if (a == NULL) {
        oai_invalid(err, "messages", "'messages' is required");
        return -1;
    }
    if (!json_is_array(a) || json_array_size(a) == 0) {
        oai_invalid(err, "messages", "'messages' must be a non-empty array");
        return -1;
    }

    req->messages = calloc(json_array_size(a), sizeof(infer_chat_message_t));
    if (req->messages == NULL) {
        return oai_nomem(err);
    }

    json_array_foreach(a, i, m) {
        role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)
            || json_string_length(role) == 0)
        {
            oai_invalid(err, "messages", "messages[%zu] must be an object "
                        "with a string 'role'", i);
            return -1;
        }
        req->n_messages = (int) i + 1;
        snprintf(what, sizeof(what), "messages[%zu].role", i);
        req->messages[i].role = oai_text(role, "messages", what, err);
        if (req->messages[i].role == NULL) {
            return -1;
        }
        req->messages[i].content =
            oai_message_content(json_object_get(m, "content"), i, err);
        if (req->messages[i].content == NULL) {
            return -1;
        }
    }
    return 0;
}

static int
oai_parse_stop(json_t *root, infer_oai_request_t *req, infer_oai_error_t *err)
{
    json_t  *s, *v;
    size_t   i;

    s = oai_field(root, "stop");
    if (s == NULL) {
        return 0;
    }
    if (json_is_string(s)) {
        s = json_pack("[O]", s);
    } else if (json_is_array(s)) {
        json_incref(s);
    } else {
        oai_invalid(err, "stop", "'stop' must be a string or an array of "
                    "strings");
        return -1;
    }
    if (s == NULL) {
        return oai_nomem(err);
    }

    if (json_array_size(s) > INFER_OAI_MAX_STOP) {
        oai_invalid(err, "stop", "'stop' accepts at most %d sequences",
                    INFER_OAI_MAX_STOP);
        json_decref(s);
        return -1;
    }
    json_array_foreach(s, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            oai_invalid(err, "stop", "'stop' sequences must be non-empty "
                        "strings");
            json_decref(s);
            return -1;
        }
        req->stop[i] = oai_text(v, "stop", "'stop' sequences", err);
        if (req->stop[i] == NULL) {
            json_decref(s);
            return -1;
        }
        req->n_stop = (int) i + 1;
    }
    json_decref(s);
    return 0;
}

static int
oai_parse_sampling(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    long long  x;
    int        rc;

    rc = oai_get_int(root, "max_tokens", 1, INT_MAX, &x, err);
    if (rc < 0) {
        return -1;
    }
    if (rc > 0) {
        req->max_tokens = (int) x;
    }
    if (req->kind == INFER_OAI_CHAT) {
        rc = oai_get_int(root, "max_completion_tokens", 1, INT_MAX, &x, err);
        if (rc < 0) {
            return -1;
        }
        if (rc > 0) {
            req->max_tokens = (int) x;
        }
    }

    req->temperature = 1.0;
    if (oai_get_number(root, "temperature", &req->temperature, err) < 0) {
        return -1;
    }
    if (req->temperature < 0.0 || req->temperature > 2.0) {
        oai_invalid(err, "temperature", "'temperature' must be between 0 and "
                    "2, got %g", req->temperature);
        return -1;
    }

    req->top_p = 1.0;
    if (oai_get_number(root, "top_p", &req->top_p, err) < 0) {
        return -1;
    }
    if (!(req->top_p > 0.0 && req->top_p <= 1.0)) {
        oai_invalid(err, "top_p", "'top_p' must be in (0, 1], got %g",
                    req->top_p);
        return -1;
    }

    /* -1 is how several OpenAI-compatible servers spell "off". */
    rc = oai_get_int(root, "top_k", -1, INT_MAX, &x, err);
    if (rc < 0) {
        return -1;
    }
    req->top_k = (rc > 0 && x > 0) ? (int) x : 0;

    rc = oai_get_int(root, "seed", LLONG_MIN, LLONG_MAX, &x, err);
    if (rc < 0) {
        return -1;
    }
    if (rc > 0) {
        req->seed = (uint64_t) x;
        req->has_seed = 1;
    }

    rc = oai_get_int(root, "n", 1, 1, &x, err);
    if (rc < 0) {
        oai_invalid(err, "n", "only 'n': 1 is supported");
        return -1;
    }
    return 0;
}

static int
oai_parse_stream(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    json_t  *so;

    if (oai_get_bool(root, "stream", &req->stream, err) < 0) {
        return -1;
    }
    so = oai_field(root, "stream_options");
    if (so == NULL) {
        return 0;
    }
    if (!req->stream) {
        oai_invalid(err, "stream_options", "'stream_options' is only allowed "
                    "when 'stream' is true");
        return -1;
    }
    if (!json_is_object(so)) {
        oai_invalid(err, "stream_options", "'stream_options' must be an "
                    "object");
        return -1;
    }
    if (oai_get_bool(so, "include_usage", &req->include_usage, err) < 0) {
        err->param = "stream_options.include_usage";
        return -1;
    }
    return 0;
}

int
infer_oai_parse_request(const char *body, size_t len, infer_oai_kind_t kind,
    infer_oai_request_t *req, infer_oai_error_t *err)
{
    json_t        *root, *v;
    json_error_t   jerr;
    int            rc;

    memset(req, 0, sizeof(*req));
    memset(err, 0, sizeof(*err));
    req->kind = kind;

    root = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        oai_invalid(err, NULL, "invalid JSON body: %s (line %d, column %d)",
                    jerr.text, jerr.line, jerr.column);
        return -1;
    }

    rc = -1;
    if (!json_is_object(root)) {
        oai_invalid(err, NULL, "the request body must be a JSON object");
        goto done;
    }

    v = oai_field(root, "model");
    if (v == NULL || !json_is_string(v)) {
        oai_invalid(err, "model", "'model' is required and must be a string");
        goto done;
    }
    req->model = oai_text(v, "model", "'model'", err);
    if (req->model == NULL) {
        goto done;
    }

    v = oai_field(root, "user");
    if (v != NULL && !json_is_string(v)) {
        oai_invalid(err, "user", "'user' must be a string");
        goto done;
    }

    if (kind == INFER_OAI_CHAT) {
        if (oai_parse_messages(root, req, err) != 0) {
            goto done;
        }
    } else if (oai_parse_prompt(root, req, err) != 0) {
        goto done;
    }

    if (oai_parse_sampling(root, req, err) != 0
        || oai_parse_stop(root, req, err) != 0
        || oai_parse_stream(root, req, err) != 0)
    {
        goto done;
    }
    rc = 0;

done:
    json_decref(root);
    if (rc != 0) {
        infer_oai_request_free(req);
    }
    return rc;
}

void
infer_oai_request_free(infer_oai_request_t *req)
{
    int  i;

    free(req->model);
    free(req->prompt);
    free(req->prompt_ids);
    for (i = 0; i < req->n_messages; i++) {
        free(req->messages[i].role);
        free(req->messages[i].content);
    }
    free(req->messages);
    for (i = 0; i < req->n_stop; i++) {
        free(req->stop[i]);
    }
    memset(req, 0, sizeof(*req));
}

/* Serialises and frees obj; prefix/suffix frame SSE events. */
static char *
oai_dump(json_t *obj, const char *prefix, const char *suffix, size_t *len)
{
    char    *s, *out;
    size_t   n, np, ns;

    if (obj == NULL) {
        return NULL;
    }
    s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (s == NULL) {
        return NULL;
    }
    n = strlen(s);
    np = strlen(prefix);
    ns = strlen(suffix);
    out = malloc(np + n + ns + 1);
    if (out != NULL) {
        memcpy(out, prefix, np);
        memcpy(out + np, s, n);
        memcpy(out + np + n, suffix, ns + 1);
        *len = np + n + ns;
    }
    free(s);
    return out;
}

static json_t *
oai_error_object(const infer_oai_error_t *err)
{
    return json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error",
                     "message", err->message, "type", err->type,
                     "param", err->param, "code", err->code);
}

char *
infer_oai_error_body(const infer_oai_error_t *err, size_t *len)
{
    return oai_dump(oai_error_object(err), "", "\n", len);
}

char *
infer_oai_error_chunk(const infer_oai_error_t *err, size_t *len)
{
    return oai_dump(oai_error_object(err), "data: ", "\n\n", len);
}

static json_t *
oai_usage(int prompt_tokens, int completion_tokens)
{
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", prompt_tokens,
                     "completion_tokens", completion_tokens,
                     "total_tokens", prompt_tokens + completion_tokens);
}

static json_t *
oai_envelope(const infer_oai_response_t *rsp, int chunk)
{
    const char  *object;

    if (rsp->kind == INFER_OAI_CHAT) {
        object = chunk ? "chat.completion.chunk" : "chat.completion";
    } else {
        object = "text_completion";
    }
    return json_pack("{s:s,s:s,s:I,s:s}", "id", rsp->id, "object", object,
                     "created", (json_int_t) rsp->created,
                     "model", rsp->model);
}

char *
infer_oai_completion_body(const infer_oai_response_t *rsp, const char *text,
    size_t text_len, const char *finish, int prompt_tokens,
    int completion_tokens, size_t *len)
{
    json_t  *o, *choice;

    o = oai_envelope(rsp, 0);
    if (rsp->kind == INFER_OAI_CHAT) {
        choice = json_pack("{s:i,s:{s:s,s:s%},s:n,s:s}", "index", 0,
                           "message", "role", "assistant",
                           "content", text ? text : "", text_len,
                           "logprobs", "finish_reason", finish);
    } else {
        choice = json_pack("{s:i,s:s%,s:n,s:s}", "index", 0,
                           "text", text ? text : "", text_len,
                           "logprobs", "finish_reason", finish);
    }
    if (o == NULL || choice == NULL
        || json_object_set_new(o, "choices", json_pack("[o]", choice)) != 0
        || json_object_set_new(o, "usage",
                               oai_usage(prompt_tokens, completion_tokens))
           != 0)
    {
        json_decref(o);
        return NULL;
    }
    return oai_dump(o, "", "\n", len);
}

char *
infer_oai_chunk(const infer_oai_response_t *rsp, const char *text,
    size_t text_len, int role, const char *finish, int usage_null,
    size_t *len)
{
    json_t  *o, *choice, *delta;

    o = oai_envelope(rsp, 1);
    if (rsp->kind == INFER_OAI_CHAT) {
        if (role) {
            delta = json_pack("{s:s,s:s}", "role", "assistant",
                              "content", "");
        } else if (finish != NULL && text_len == 0) {
            delta = json_object();
        } else {
            delta = json_pack("{s:s%}", "content", text ? text : "",
                              text_len);
        }
        choice = json_pack("{s:i,s:o,s:n,s:s?}", "index", 0, "delta", delta,
                           "logprobs", "finish_reason", finish);
    } else {
        choice = json_pack("{s:i,s:s%,s:n,s:s?}", "index", 0,
                           "text", text ? text : "", text_len,
                           "logprobs", "finish_reason", finish);
    }
    if (o == NULL || choice == NULL
        || json_object_set_new(o, "choices", json_pack("[o]", choice)) != 0
        || (usage_null && json_object_set_new(o, "usage", json_null()) != 0))
    {
        json_decref(o);
        return NULL;
    }
    return oai_dump(o, "data: ", "\n\n", len);
}

char *
infer_oai_usage_chunk(const infer_oai_response_t *rsp, int prompt_tokens,
    int completion_tokens, size_t *len)
{
    json_t  *o;

    o = oai_envelope(rsp, 1);
    if (o == NULL
        || json_object_set_new(o, "choices", json_array()) != 0
        || json_object_set_new(o, "usage",
                               oai_usage(prompt_tokens, completion_tokens))
           != 0)
    {
        json_decref(o);
        return NULL;
    }
    return oai_dump(o, "data: ", "\n\n", len);
}

char *
infer_oai_models_body(const char *const *names, const int64_t *created,
    int n, size_t *len)
{
    json_t  *o, *data;
    int      i;

    data = json_array();
    for (i = 0; data != NULL && i < n; i++) {
        if (json_array_append_new(data,
                json_pack("{s:s,s:s,s:I,s:s}", "id", names[i],
                          "object", "model",
                          "created", (json_int_t) created[i],
                          "owned_by", "nginx")) != 0)
        {
            json_decref(data);
            return NULL;
        }
    }
    o = json_pack("{s:s,s:o}", "object", "list", "data", data);
    return oai_dump(o, "", "\n", len);
}

char *
infer_stats_body(const char *const *names, const infer_stats_t *st,
    int n, long pid, size_t *len)
{
    json_t  *o, *models;
    int      i;

    models = json_array();
    for (i = 0; models != NULL && i < n; i++) {
        if (json_array_append_new(models,
                json_pack("{s:s,s:i,s:i,s:I,s:I,s:I,s:I,s:i,s:i}",
                          "name", names[i],
                          "running", st[i].running,
                          "waiting", st[i].waiting,
                          "steps", (json_int_t) st[i].steps,
                          "prompt_tokens", (json_int_t) st[i].prompt_tokens,
                          "generated_tokens",
                          (json_int_t) st[i].generated_tokens,
                          "preemptions", (json_int_t) st[i].preemptions,
                          "kv_blocks", st[i].n_blocks,
                          "kv_blocks_free", st[i].free_blocks)) != 0)
        {
            json_decref(models);
            return NULL;
        }
    }
    o = json_pack("{s:I,s:o}", "pid", (json_int_t) pid, "models", models);
    return oai_dump(o, "", "\n", len);
}

char *
infer_health_body(const char *model, const char *reason, size_t *len)
{
    char  why[sizeof(((infer_oai_error_t *) 0)->message)];

    if (model == NULL) {
        return oai_dump(json_pack("{s:s}", "status", "ok"), "", "\n", len);
    }
    snprintf(why, sizeof(why), "%s", reason);
    oai_utf8_repair(why, sizeof(why));
    return oai_dump(json_pack("{s:s,s:s,s:s}", "status", "unavailable",
                              "model", model, "reason", why), "", "\n", len);
}

const char *
infer_oai_finish_reason(int finish)
{
    return finish == INFER_FINISH_LENGTH ? "length" : "stop";
}
