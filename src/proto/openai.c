/*
 * OpenAI-compatible JSON codec.  Field rules follow the OpenAI API reference:
 * unknown fields are ignored, null means "not given", wrong types and
 * out-of-range values are 400 invalid_request_error naming the field, and
 * a field asking for what the server does not do is a 400
 * unsupported_parameter naming it, never silently dropped.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "infer.h"
#include "openai.h"
#include "tokenizer.h"

#define OAI_INVALID      "invalid_request_error"
#define OAI_UNSUPPORTED  "unsupported_parameter"

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

/* A number in [min, max]. */
static int
oai_get_range(json_t *root, const char *name, double min, double max,
    double *out, infer_oai_error_t *err)
{
    int  rc;

    rc = oai_get_number(root, name, out, err);
    if (rc > 0 && !(*out >= min && *out <= max)) {
        oai_invalid(err, name, "'%s' must be between %g and %g, got %g",
                    name, min, max, *out);
        return -1;
    }
    return rc;
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

/*
 * content: a string, null, or an array of {"type":"text","text":...}
 * parts, which become one string joined with newlines (as vLLM gives a
 * template that reads content as a string).  NULL with err on a bad one;
 * a new reference otherwise (json_null() for none).
 */
static json_t *
oai_message_content(json_t *c, size_t i, infer_oai_error_t *err)
{
    json_t  *part, *t, *type, *s;
    char    *p;
    size_t   k, len, n;

    if (c == NULL || json_is_null(c)) {
        return json_null();
    }
    if (json_is_string(c)) {
        if (memchr(json_string_value(c), '\0', json_string_length(c))
            != NULL)
        {
            oai_invalid(err, "messages", "messages[%zu].content must not "
                        "contain a NUL character", i);
            return NULL;
        }
        return json_incref(c);
    }
    if (!json_is_array(c)) {
        oai_invalid(err, "messages", "messages[%zu].content must be a "
                    "string or an array of text parts", i);
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
            oai_invalid(err, "messages", "messages[%zu].content[%zu]: only "
                        "parts of type \"text\" with a string \"text\" are "
                        "supported", i, k);
            return NULL;
        }
        if (memchr(json_string_value(t), '\0', json_string_length(t))
            != NULL)
        {
            oai_invalid(err, "messages", "messages[%zu].content[%zu].text "
                        "must not contain a NUL character", i, k);
            return NULL;
        }
        len += json_string_length(t) + 1;
    }

    p = malloc(len + 1);
    if (p == NULL) {
        oai_nomem(err);
        return NULL;
    }
    n = 0;
    json_array_foreach(c, k, part) {
        t = json_object_get(part, "text");
        if (k > 0) {
            p[n++] = '\n';
        }
        memcpy(p + n, json_string_value(t), json_string_length(t));
        n += json_string_length(t);
    }
    s = json_stringn_nocheck(p, n);
    free(p);
    if (s == NULL) {
        oai_nomem(err);
    }
    return s;
}

/*
 * An assistant message's tool_calls as templates read them: the
 * arguments OpenAI sends as a JSON string are given as the object they
 * encode (vLLM does the same; Hugging Face templates write them with
 * tojson), an arguments string that is not a JSON object stays a string.
 */
static int
oai_message_tool_calls(json_t *m, size_t i, infer_oai_error_t *err)
{
    json_t      *calls, *call, *fn, *args, *obj;
    size_t       k;

    calls = json_object_get(m, "tool_calls");
    if (calls == NULL || json_is_null(calls)) {
        return 0;
    }
    if (!json_is_array(calls)) {
        oai_invalid(err, "messages", "messages[%zu].tool_calls must be an "
                    "array", i);
        return -1;
    }
    json_array_foreach(calls, k, call) {
        fn = json_object_get(call, "function");
        if (!json_is_object(call) || !json_is_object(fn)
            || !json_is_string(json_object_get(fn, "name")))
        {
            oai_invalid(err, "messages", "messages[%zu].tool_calls[%zu] "
                        "must be an object with a \"function\" that has a "
                        "string \"name\"", i, k);
            return -1;
        }
        args = json_object_get(fn, "arguments");
        if (!json_is_string(args)) {
            continue;
        }
        obj = json_loadb(json_string_value(args), json_string_length(args),
                         JSON_DECODE_ANY, NULL);
        if (json_is_object(obj)) {
            if (json_object_set_new(fn, "arguments", obj) != 0) {
                return oai_nomem(err);
            }
            continue;
        }
        json_decref(obj);
    }
    return 0;
}

/*
 * messages as the chat template sees them: each an object with a string
 * role (any role: the template decides what it accepts) and the other
 * members it came with (name, tool_calls, tool_call_id, reasoning, ...),
 * content made a string.
 */
static int
oai_parse_messages(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    json_t  *a, *m, *role, *copy, *content;
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

    req->messages = json_array();
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
        if (memchr(json_string_value(role), '\0', json_string_length(role))
            != NULL)
        {
            oai_invalid(err, "messages", "messages[%zu].role must not "
                        "contain a NUL character", i);
            return -1;
        }
        copy = json_deep_copy(m);
        if (copy == NULL || json_array_append_new(req->messages, copy) != 0)
        {
            return oai_nomem(err);
        }
        content = oai_message_content(json_object_get(m, "content"), i, err);
        if (content == NULL) {
            return -1;
        }
        if (json_object_get(m, "content") != NULL
            && json_object_set_new(copy, "content", content) != 0)
        {
            return oai_nomem(err);
        }
        if (json_object_get(m, "content") == NULL) {
            json_decref(content);
        }
        if (oai_message_tool_calls(copy, i, err) != 0) {
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

    /* A completion may ask for no tokens at all: it scores its prompt
     * (with echo and logprobs). */
    rc = oai_get_int(root, "max_tokens", req->kind == INFER_OAI_CHAT,
                     INT_MAX, &x, err);
    if (rc < 0) {
        return -1;
    }
    if (rc > 0) {
        req->max_tokens = (int) x;
        req->has_max_tokens = 1;
    }
    if (req->kind == INFER_OAI_CHAT) {
        rc = oai_get_int(root, "max_completion_tokens", 1, INT_MAX, &x, err);
        if (rc < 0) {
            return -1;
        }
        if (rc > 0) {
            req->max_tokens = (int) x;
            req->has_max_tokens = 1;
        }
    }

    rc = oai_get_int(root, "min_tokens", 0, INT_MAX, &x, err);
    if (rc < 0) {
        return -1;
    }
    if (rc > 0) {
        req->min_tokens = (int) x;
    }
    if (req->has_max_tokens && req->min_tokens > req->max_tokens) {
        oai_invalid(err, "min_tokens", "'min_tokens' (%d) must not exceed "
                    "'max_tokens' (%d)", req->min_tokens, req->max_tokens);
        return -1;
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

    /* vLLM's scheduling priority: lower first */
    rc = oai_get_int(root, "priority", -INFER_PRIORITY_MAX,
                     INFER_PRIORITY_MAX, &x, err);
    if (rc < 0) {
        return -1;
    }
    req->priority = rc > 0 ? (int) x : 0;

    rc = oai_get_int(root, "seed", LLONG_MIN, LLONG_MAX, &x, err);
    if (rc < 0) {
        return -1;
    }
    if (rc > 0) {
        req->seed = (uint64_t) x;
        req->has_seed = 1;
    }

    if (oai_get_range(root, "presence_penalty", -2.0, 2.0,
                      &req->presence_penalty, err) < 0
        || oai_get_range(root, "frequency_penalty", -2.0, 2.0,
                         &req->frequency_penalty, err) < 0)
    {
        return -1;
    }

    /* Hugging Face's (and vLLM's): logits of seen tokens divided by it
     * when positive, multiplied when negative; 1 is off. */
    req->repetition_penalty = 1.0;
    if (oai_get_number(root, "repetition_penalty", &req->repetition_penalty,
                       err) < 0)
    {
        return -1;
    }
    if (!(req->repetition_penalty > 0.0) || req->repetition_penalty > 1e6) {
        oai_invalid(err, "repetition_penalty", "'repetition_penalty' must be "
                    "positive, got %g", req->repetition_penalty);
        return -1;
    }

    /* vLLM's: false puts special tokens' text in the output */
    req->skip_special = 1;
    if (oai_get_bool(root, "skip_special_tokens", &req->skip_special, err)
        < 0)
    {
        return -1;
    }
    return 0;
}

/* logit_bias: {"token id": bias in [-100, 100], ...}; the ids are checked
 * against the model's vocabulary once the model is known. */
static int
oai_parse_logit_bias(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    json_t      *o, *v;
    const char  *key, *p;
    size_t       n;
    double       b;
    long long    id;

    o = oai_field(root, "logit_bias");
    if (o == NULL) {
        return 0;
    }
    if (!json_is_object(o)) {
        oai_invalid(err, "logit_bias", "'logit_bias' must be an object of "
                    "token ids and biases");
        return -1;
    }
    n = json_object_size(o);
    if (n == 0) {
        return 0;
    }
    req->bias_ids = malloc(n * sizeof(int32_t));
    req->bias = malloc(n * sizeof(float));
    if (req->bias_ids == NULL || req->bias == NULL) {
        return oai_nomem(err);
    }

    json_object_foreach(o, key, v) {
        id = 0;
        for (p = key; *p >= '0' && *p <= '9' && id <= INT32_MAX; p++) {
            id = id * 10 + (*p - '0');
        }
        if (p == key || *p != '\0' || id > INT32_MAX) {
            oai_invalid(err, "logit_bias", "'logit_bias' keys must be token "
                        "ids, got \"%s\"", key);
            return -1;
        }
        if (!json_is_number(v)) {
            oai_invalid(err, "logit_bias", "'logit_bias' values must be "
                        "numbers (token %lld)", id);
            return -1;
        }
        b = json_number_value(v);
        if (!(b >= -100.0 && b <= 100.0)) {
            oai_invalid(err, "logit_bias", "'logit_bias' values must be "
                        "between -100 and 100, got %g for token %lld", b, id);
            return -1;
        }
        req->bias_ids[req->n_bias] = (int32_t) id;
        req->bias[req->n_bias] = (float) b;
        req->n_bias++;
    }
    return 0;
}

/* n, echo and logprobs: how many choices, and what each one shows. */
static int
oai_parse_choices(json_t *root, int max_n, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    long long  x;
    int        rc, lp;

    req->n = 1;
    rc = oai_get_int(root, "n", 1, max_n, &x, err);
    if (rc < 0) {
        return -1;
    }
    if (rc > 0) {
        req->n = (int) x;
    }

    if (req->kind == INFER_OAI_COMPLETION) {
        if (oai_get_bool(root, "echo", &req->echo, err) < 0) {
            return -1;
        }
        /* the legacy API: logprobs is the number of alternatives */
        rc = oai_get_int(root, "logprobs", 0, INFER_MAX_TOP_LOGPROBS, &x,
                         err);
        if (rc < 0) {
            return -1;
        }
        if (rc > 0) {
            req->logprobs = 1;
            req->top_logprobs = (int) x;
        }
        return 0;
    }

    lp = 0;
    if (oai_get_bool(root, "logprobs", &lp, err) < 0) {
        return -1;
    }
    req->logprobs = lp;
    rc = oai_get_int(root, "top_logprobs", 0, INFER_MAX_TOP_LOGPROBS, &x,
                     err);
    if (rc < 0) {
        return -1;
    }
    if (rc > 0 && !lp) {
        oai_invalid(err, "top_logprobs", "'top_logprobs' needs 'logprobs' "
                    "set to true");
        return -1;
    }
    if (rc > 0) {
        req->top_logprobs = (int) x;
    }
    return 0;
}

#define oai_unsupported(err, param, ...)                                     \
    infer_oai_set_error(err, 400, OAI_INVALID, param, OAI_UNSUPPORTED,       \
                        __VA_ARGS__)

/* A field that is there and not empty (null, false, "", [] and {} ask
 * for nothing). */
static int
oai_asks(json_t *root, const char *name)
{
    json_t  *v;

    v = oai_field(root, name);
    return v != NULL && !json_is_false(v)
           && !(json_is_string(v) && json_string_length(v) == 0)
           && !(json_is_array(v) && json_array_size(v) == 0)
           && !(json_is_object(v) && json_object_size(v) == 0);
}

/* Whether v is the string s. */
static int
oai_is(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/*
 * Fields of the OpenAI API that ask for what this server does not do: a
 * client that sends one relies on it, so answering without it would be a
 * wrong answer that looks right.  Each is a 400 naming the field; the
 * values that ask for nothing ("none", a text response format, ...) pass.
 */
static int
oai_check_unsupported(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    /* an empty list of functions offers none; any audio or web search
     * options (even {}: the defaults) ask for them */
    static const char  *options[] = { "audio", "web_search_options" };
    json_t      *v, *m;
    size_t       i;
    long long    x;
    int          rc;

    if (req->kind == INFER_OAI_COMPLETION) {
        if (oai_asks(root, "suffix")) {
            oai_unsupported(err, "suffix", "'suffix' (insertion) is not "
                            "supported by this server");
            return -1;
        }
        rc = oai_get_int(root, "best_of", 1, INT_MAX, &x, err);
        if (rc < 0) {
            return -1;
        }
        if (rc > 0 && x < req->n) {
            oai_invalid(err, "best_of", "'best_of' (%lld) must be at least "
                        "'n' (%d)", x, req->n);
            return -1;
        }
        if (rc > 0 && x > req->n) {
            oai_unsupported(err, "best_of", "'best_of' greater than 'n' is "
                            "not supported by this server");
            return -1;
        }
        return 0;
    }

    /* the deprecated functions: the same as tools, in a shape this
     * server does not read */
    if (oai_asks(root, "functions")) {
        oai_unsupported(err, "functions", "'functions' is not supported by "
                        "this server (send 'tools')");
        return -1;
    }
    for (i = 0; i < 2; i++) {
        if (oai_field(root, options[i]) != NULL) {
            oai_unsupported(err, options[i], "'%s' is not supported by this "
                            "server", options[i]);
            return -1;
        }
    }
    /* a template sent by the client would run whatever it holds */
    if (oai_field(root, "chat_template") != NULL) {
        oai_unsupported(err, "chat_template", "'chat_template' is not "
                        "supported by this server (the model's template "
                        "applies)");
        return -1;
    }

    v = oai_field(root, "function_call");
    if (v != NULL && !oai_is(v, "none")) {
        oai_unsupported(err, "function_call", "'function_call' is not "
                        "supported by this server (only \"none\")");
        return -1;
    }

    v = oai_field(root, "response_format");
    if (v != NULL && !oai_is(json_object_get(v, "type"), "text")) {
        oai_unsupported(err, "response_format", "'response_format' other "
                        "than {\"type\": \"text\"} is not supported by this "
                        "server");
        return -1;
    }

    v = oai_field(root, "modalities");
    if (v != NULL) {
        if (!json_is_array(v)) {
            oai_invalid(err, "modalities", "'modalities' must be an array");
            return -1;
        }
        json_array_foreach(v, i, m) {
            if (!oai_is(m, "text")) {
                oai_unsupported(err, "modalities", "'modalities' other "
                                "than \"text\" are not supported by this "
                                "server");
                return -1;
            }
        }
    }
    return 0;
}

/* The name of a tool of tools, or NULL. */
static json_t *
oai_find_tool(json_t *tools, const char *name)
{
    json_t  *t, *fn;
    size_t   i;

    json_array_foreach(tools, i, t) {
        fn = json_object_get(t, "function");
        if (oai_is(json_object_get(fn, "name"), name)) {
            return t;
        }
    }
    return NULL;
}

static int
oai_parse_tools(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    json_t      *tools, *t, *fn, *v, *name;
    size_t       i;

    tools = oai_field(root, "tools");
    if (tools != NULL && !json_is_array(tools)) {
        oai_invalid(err, "tools", "'tools' must be an array");
        return -1;
    }
    json_array_foreach(tools, i, t) {
        fn = json_object_get(t, "function");
        name = json_object_get(fn, "name");
        if (!json_is_object(t) || !oai_is(json_object_get(t, "type"),
                                          "function")
            || !json_is_object(fn) || !json_is_string(name)
            || json_string_length(name) == 0)
        {
            oai_invalid(err, "tools", "tools[%zu] must be {\"type\": "
                        "\"function\", \"function\": {\"name\": ...}} with "
                        "a non-empty string name", i);
            return -1;
        }
        v = json_object_get(fn, "parameters");
        if (v != NULL && !json_is_object(v)) {
            oai_invalid(err, "tools", "tools[%zu].function.parameters must "
                        "be an object (a JSON Schema)", i);
            return -1;
        }
    }
    if (tools != NULL && json_array_size(tools) > 0) {
        req->tools = json_deep_copy(tools);
        if (req->tools == NULL) {
            return oai_nomem(err);
        }
    }

    v = oai_field(root, "tool_choice");
    if (v == NULL || oai_is(v, "auto")) {
        req->tool_choice = INFER_OAI_TOOLS_AUTO;
        return 0;
    }
    if (oai_is(v, "none")) {
        req->tool_choice = INFER_OAI_TOOLS_NONE;
        return 0;
    }
    if (req->tools == NULL) {
        oai_invalid(err, "tool_choice", "'tool_choice' is only allowed when "
                    "'tools' are specified");
        return -1;
    }
    if (oai_is(v, "required")) {
        req->tool_choice = INFER_OAI_TOOLS_REQUIRED;
        return 0;
    }
    fn = json_object_get(v, "function");
    name = json_object_get(fn, "name");
    if (!json_is_object(v) || !oai_is(json_object_get(v, "type"), "function")
        || !json_is_string(name))
    {
        oai_invalid(err, "tool_choice", "'tool_choice' must be \"none\", "
                    "\"auto\", \"required\" or {\"type\": \"function\", "
                    "\"function\": {\"name\": ...}}");
        return -1;
    }
    if (oai_find_tool(req->tools, json_string_value(name)) == NULL) {
        oai_invalid(err, "tool_choice", "'tool_choice' names the function "
                    "'%s', which is not among 'tools'",
                    json_string_value(name));
        return -1;
    }
    req->tool_name = oai_text(name, "tool_choice", "the function's name",
                              err);
    if (req->tool_name == NULL) {
        return -1;
    }
    req->tool_choice = INFER_OAI_TOOLS_NAMED;
    return 0;
}

/* What else the chat template is given, as vLLM takes it:
 * chat_template_kwargs, add_generation_prompt, continue_final_message,
 * documents. */
static int
oai_parse_chat_options(json_t *root, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    json_t  *v;

    if (oai_parse_tools(root, req, err) != 0) {
        return -1;
    }

    v = oai_field(root, "chat_template_kwargs");
    if (v != NULL && !json_is_object(v)) {
        oai_invalid(err, "chat_template_kwargs", "'chat_template_kwargs' "
                    "must be an object");
        return -1;
    }
    if (v != NULL && json_object_size(v) > 0) {
        req->template_kwargs = json_deep_copy(v);
        if (req->template_kwargs == NULL) {
            return oai_nomem(err);
        }
    }

    v = oai_field(root, "documents");
    if (v != NULL && !json_is_array(v)) {
        oai_invalid(err, "documents", "'documents' must be an array");
        return -1;
    }
    if (v != NULL && json_array_size(v) > 0) {
        req->documents = json_deep_copy(v);
        if (req->documents == NULL) {
            return oai_nomem(err);
        }
    }

    req->add_generation_prompt = 1;
    if (oai_get_bool(root, "add_generation_prompt",
                     &req->add_generation_prompt, err) < 0
        || oai_get_bool(root, "continue_final_message",
                        &req->continue_final_message, err) < 0)
    {
        return -1;
    }
    if (req->add_generation_prompt && req->continue_final_message) {
        oai_invalid(err, "continue_final_message", "'continue_final_message' "
                    "and 'add_generation_prompt' cannot both be true");
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
    int max_n, infer_oai_request_t *req, infer_oai_error_t *err)
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
        if (oai_parse_messages(root, req, err) != 0
            || oai_parse_chat_options(root, req, err) != 0)
        {
            goto done;
        }
    } else if (oai_parse_prompt(root, req, err) != 0) {
        goto done;
    }

    if (oai_parse_sampling(root, req, err) != 0
        || oai_parse_logit_bias(root, req, err) != 0
        || oai_parse_choices(root, max_n, req, err) != 0
        || oai_check_unsupported(root, req, err) != 0
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

int
infer_oai_parse_tokenize(const char *body, size_t len, int detokenize,
    infer_oai_request_t *req, infer_oai_error_t *err)
{
    json_t        *root, *v;
    json_error_t   jerr;
    size_t         i;
    int            rc;

    memset(req, 0, sizeof(*req));
    memset(err, 0, sizeof(*err));
    req->kind = INFER_OAI_COMPLETION;

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
    if (v != NULL && !json_is_string(v)) {
        oai_invalid(err, "model", "'model' must be a string");
        goto done;
    }
    if (v != NULL) {
        req->model = oai_text(v, "model", "'model'", err);
        if (req->model == NULL) {
            goto done;
        }
    }

    if (detokenize) {
        v = oai_field(root, "tokens");
        if (!json_is_array(v)) {
            oai_invalid(err, "tokens", "'tokens' is required and must be an "
                        "array of token ids");
            goto done;
        }
        req->prompt_ids = malloc((json_array_size(v) + 1) * sizeof(int32_t));
        if (req->prompt_ids == NULL) {
            oai_nomem(err);
            goto done;
        }
        for (i = 0; i < json_array_size(v); i++) {
            if (!json_is_integer(json_array_get(v, i))
                || json_integer_value(json_array_get(v, i)) < 0
                || json_integer_value(json_array_get(v, i)) > INT32_MAX)
            {
                oai_invalid(err, "tokens", "'tokens' must be non-negative "
                            "integers (element %zu)", i);
                goto done;
            }
            req->prompt_ids[i] =
                (int32_t) json_integer_value(json_array_get(v, i));
        }
        req->n_prompt_ids = (int) json_array_size(v);
        rc = 0;
        goto done;
    }

    if ((oai_field(root, "prompt") != NULL)
        == (oai_field(root, "messages") != NULL))
    {
        oai_invalid(err, "prompt", "give either 'prompt' or 'messages'");
        goto done;
    }
    v = oai_field(root, "prompt");
    if (v != NULL) {
        if (!json_is_string(v)) {
            oai_invalid(err, "prompt", "'prompt' must be a string");
            goto done;
        }
        req->prompt = oai_strdup(v, &req->prompt_len, err);
        if (req->prompt == NULL) {
            goto done;
        }
        req->add_special = 1;
    } else {
        req->kind = INFER_OAI_CHAT;
        if (oai_parse_messages(root, req, err) != 0
            || oai_parse_chat_options(root, req, err) != 0)
        {
            goto done;
        }
    }
    if (oai_get_bool(root, "add_special_tokens", &req->add_special, err) < 0
        || oai_get_bool(root, "return_token_strs", &req->token_strs, err) < 0)
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
    json_decref(req->messages);
    json_decref(req->tools);
    json_decref(req->documents);
    json_decref(req->template_kwargs);
    free(req->tool_name);
    for (i = 0; i < req->n_stop; i++) {
        free(req->stop[i]);
    }
    free(req->bias_ids);
    free(req->bias);
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
oai_usage(const infer_oai_response_t *rsp, int prompt_tokens,
    int completion_tokens)
{
    json_t  *u;

    u = json_pack("{s:i,s:i,s:i}", "prompt_tokens", prompt_tokens,
                  "completion_tokens", completion_tokens,
                  "total_tokens", prompt_tokens + completion_tokens);
    if (u != NULL && rsp->cached_tokens > 0
        && json_object_set_new(u, "prompt_tokens_details",
                               json_pack("{s:i}", "cached_tokens",
                                         rsp->cached_tokens)) != 0)
    {
        json_decref(u);
        return NULL;
    }
    return u;
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

/* ---- logprobs ------------------------------------------------------------ */

struct infer_oai_logprobs_s {
    infer_oai_kind_t          kind;
    const infer_tokenizer_t  *tok;
    int                       n_prompt;
    int                       gen_at_start;  /* the engine's detokenizer
                                                strips a leading space */
    int                       in_gen;        /* detok is the generated
                                                text's */
    infer_detok_t             detok;         /* the text so far */
    size_t                    offset;        /* its characters */
    size_t                    echo_chars;
    int                       pending;
    char                     *buf;           /* one detok push */
    size_t                    cap;
    /* legacy completions shape */
    json_t                   *tokens, *token_logprobs, *top_logprobs;
    json_t                   *text_offset;
    /* chat shape */
    json_t                   *content;
};

static int
oai_logprobs_arrays(infer_oai_logprobs_t *l)
{
    if (l->kind == INFER_OAI_CHAT) {
        l->content = json_array();
        return l->content != NULL ? 0 : -1;
    }
    l->tokens = json_array();
    l->token_logprobs = json_array();
    l->top_logprobs = json_array();
    l->text_offset = json_array();
    return l->tokens && l->token_logprobs && l->top_logprobs
           && l->text_offset ? 0 : -1;
}

static void
oai_logprobs_drop(infer_oai_logprobs_t *l)
{
    json_decref(l->tokens);
    json_decref(l->token_logprobs);
    json_decref(l->top_logprobs);
    json_decref(l->text_offset);
    json_decref(l->content);
    l->tokens = l->token_logprobs = l->top_logprobs = l->text_offset = NULL;
    l->content = NULL;
}

/*
 * A token as a JSON string: what it decodes to on its own, or a special
 * token's vocabulary string.  Bytes that are not UTF-8 (a token holding
 * part of a character) cannot be a JSON string: they are written \xNN
 * after a "bytes:" prefix, as OpenAI writes them; *bytes (NULL for a
 * special token, which puts nothing in the text) has the raw ones.
 */
static json_t *
oai_token_string(const infer_tokenizer_t *tok, int32_t id,
    const char **bytes, size_t *n_bytes)
{
    const char        *s;
    char              *esc;
    size_t             len, i, o;
    json_t            *j;
    utf8proc_int32_t   cp;
    utf8proc_ssize_t   k;

    *bytes = NULL;
    *n_bytes = 0;
    if (infer_tokenizer_is_special(tok, id)) {
        s = infer_tokenizer_token_str(tok, id);
        len = s != NULL ? strlen(s) : 0;
    } else {
        s = infer_tokenizer_token_bytes(tok, id, &len);
        *bytes = s;
        *n_bytes = s != NULL ? len : 0;
    }
    if (s == NULL) {
        return json_string("");
    }

    j = json_stringn(s, len);
    if (j != NULL) {
        return j;
    }

    esc = malloc(sizeof("bytes:") + 4 * len);
    if (esc == NULL) {
        return NULL;
    }
    memcpy(esc, "bytes:", 6);
    o = 6;
    for (i = 0; i < len; i += k > 0 ? (size_t) k : 1) {
        k = utf8proc_iterate((const utf8proc_uint8_t *) s + i, len - i, &cp);
        if (k > 0) {
            memcpy(esc + o, s + i, k);
            o += k;
        } else {
            o += sprintf(esc + o, "\\x%02x", (unsigned char) s[i]);
        }
    }
    j = json_stringn(esc, o);
    free(esc);
    return j;
}

static json_t *
oai_byte_array(const char *bytes, size_t n)
{
    json_t  *a;
    size_t   i;

    if (bytes == NULL) {
        return json_null();
    }
    a = json_array();
    for (i = 0; a != NULL && i < n; i++) {
        if (json_array_append_new(a,
                json_integer((unsigned char) bytes[i])) != 0)
        {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* A logprob as JSON: OpenAI's -9999 stands for a token the model rules
 * out (JSON has no -inf). */
static json_t *
oai_logprob(float lp)
{
    return json_real(isfinite(lp) ? (double) lp : -9999.0);
}

/* {token, logprob, bytes} of the chat shape. */
static json_t *
oai_chat_token(const infer_tokenizer_t *tok, int32_t id, float lp)
{
    const char  *bytes;
    size_t       n;
    json_t      *t;

    t = oai_token_string(tok, id, &bytes, &n);
    if (t == NULL) {
        return NULL;
    }
    return json_pack("{s:o,s:o,s:o}", "token", t, "logprob", oai_logprob(lp),
                     "bytes", oai_byte_array(bytes, n));
}

/* Counts the characters token id adds to the text, for offsets. */
static void
oai_logprobs_advance(infer_oai_logprobs_t *l, int32_t id)
{
    size_t  n;

    n = infer_detok_push(&l->detok, id, l->buf, l->cap);
    l->offset += infer_oai_chars(l->buf, n);
}

/* One entry: the token at sequence index idx, its logprob (none for the
 * first prompt token) and its n_top best alternatives. */
static int
oai_logprobs_entry(infer_oai_logprobs_t *l, int idx, int32_t id,
    const float *lp, int n_top, const int32_t *top_ids, const float *top_lp)
{
    const char  *bytes;
    size_t       n;
    json_t      *t, *top, *key;
    int          k, rc;

    if (idx >= l->n_prompt && !l->in_gen) {
        /* the generated text begins after the echoed prompt, decoded as
         * the engine decodes it */
        l->in_gen = 1;
        l->offset = l->echo_chars;
        infer_detok_init(&l->detok, l->tok, l->gen_at_start);
    }

    if (l->kind == INFER_OAI_CHAT) {
        t = oai_chat_token(l->tok, id, lp != NULL ? *lp : 0.0f);
        if (t == NULL
            || json_object_set_new(t, "top_logprobs", json_array()) != 0)
        {
            json_decref(t);
            return -1;
        }
        top = json_object_get(t, "top_logprobs");
        for (k = 0; k < n_top; k++) {
            if (json_array_append_new(top,
                    oai_chat_token(l->tok, top_ids[k], top_lp[k])) != 0)
            {
                json_decref(t);
                return -1;
            }
        }
        rc = json_array_append_new(l->content, t);
        l->pending++;
        return rc;
    }

    /* legacy: a dict of the alternatives, the chosen token among them,
     * the better logprob kept where two share a string */
    if (lp != NULL) {
        top = json_object();
        for (k = 0; top != NULL && k <= n_top; k++) {
            key = oai_token_string(l->tok, k < n_top ? top_ids[k] : id,
                                   &bytes, &n);
            if (key == NULL) {
                json_decref(top);
                return -1;
            }
            if (json_object_getn(top, json_string_value(key),
                                 json_string_length(key)) == NULL
                && json_object_setn_new(top, json_string_value(key),
                                        json_string_length(key),
                                        oai_logprob(k < n_top ? top_lp[k]
                                                              : *lp))
                   != 0)
            {
                json_decref(key);
                json_decref(top);
                return -1;
            }
            json_decref(key);
        }
    } else {
        top = json_null();
    }

    t = oai_token_string(l->tok, id, &bytes, &n);
    rc = json_array_append_new(l->tokens, t)
         | json_array_append_new(l->token_logprobs,
                                 lp != NULL ? oai_logprob(*lp) : json_null())
         | json_array_append_new(l->top_logprobs, top)
         | json_array_append_new(l->text_offset,
                                 json_integer((json_int_t) l->offset));
    oai_logprobs_advance(l, id);
    l->pending++;
    return rc != 0 || t == NULL || top == NULL ? -1 : 0;
}

infer_oai_logprobs_t *
infer_oai_logprobs_create(infer_oai_kind_t kind, const infer_tokenizer_t *tok,
    const int32_t *prompt, int n_prompt, int echo, size_t echo_chars)
{
    infer_oai_logprobs_t  *l;

    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    l->kind = kind;
    l->tok = tok;
    l->n_prompt = n_prompt;
    l->echo_chars = echo ? echo_chars : 0;
    /* as the engine decides it */
    l->gen_at_start = n_prompt == 1
                      && prompt[0] == infer_tokenizer_bos_id(tok);
    l->cap = infer_tokenizer_max_token_bytes(tok) + 8;
    l->buf = malloc(l->cap);
    if (l->buf == NULL || oai_logprobs_arrays(l) != 0) {
        infer_oai_logprobs_free(l);
        return NULL;
    }

    if (echo) {
        /* the prompt's text starts the choice's: decoded from its start */
        infer_detok_init(&l->detok, tok, 1);
        if (oai_logprobs_entry(l, 0, prompt[0], NULL, 0, NULL, NULL) != 0) {
            infer_oai_logprobs_free(l);
            return NULL;
        }
    } else {
        l->in_gen = 1;
        infer_detok_init(&l->detok, tok, l->gen_at_start);
    }
    return l;
}

void
infer_oai_logprobs_free(infer_oai_logprobs_t *l)
{
    if (l == NULL) {
        return;
    }
    oai_logprobs_drop(l);
    free(l->buf);
    free(l);
}

int
infer_oai_logprobs_add(infer_oai_logprobs_t *l, const infer_event_t *ev)
{
    int  i;

    for (i = 0; i < ev->n_lp; i++) {
        if (oai_logprobs_entry(l, ev->lp_first + i, ev->lp_ids[i],
                               &ev->lp[i], ev->lp_top,
                               ev->lp_top_ids + (size_t) i * ev->lp_top,
                               ev->lp_top_lp + (size_t) i * ev->lp_top)
            != 0)
        {
            return -1;
        }
    }
    return 0;
}

int
infer_oai_logprobs_pending(const infer_oai_logprobs_t *l)
{
    return l != NULL ? l->pending : 0;
}

/* The entries gathered since the last take as the response's logprobs
 * object (null without logprobs), and a fresh start for the next. */
static json_t *
oai_logprobs_take(infer_oai_logprobs_t *l)
{
    json_t  *o;

    if (l == NULL) {
        return json_null();
    }
    if (l->kind == INFER_OAI_CHAT) {
        o = json_pack("{s:o,s:n}", "content", l->content, "refusal");
    } else {
        o = json_pack("{s:o,s:o,s:o,s:o}", "tokens", l->tokens,
                      "token_logprobs", l->token_logprobs,
                      "top_logprobs", l->top_logprobs,
                      "text_offset", l->text_offset);
    }
    /* json_pack's "o" took the arrays, even on failure */
    l->tokens = l->token_logprobs = l->top_logprobs = l->text_offset = NULL;
    l->content = NULL;
    l->pending = 0;
    if (oai_logprobs_arrays(l) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

size_t
infer_oai_chars(const char *s, size_t len)
{
    size_t  i, n = 0;

    for (i = 0; i < len; i++) {
        n += ((unsigned char) s[i] & 0xC0) != 0x80;
    }
    return n;
}

char *
infer_oai_decode(const infer_tokenizer_t *tok, const int32_t *ids, int n,
    size_t *len)
{
    infer_detok_t   d;
    char           *out, *p;
    size_t          cap, used, step;
    int             i;

    step = infer_tokenizer_max_token_bytes(tok) + 8;
    cap = step * ((size_t) n + 1) + 1;
    out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    infer_detok_init(&d, tok, 1);
    used = 0;
    for (i = 0; i < n; i++) {
        used += infer_detok_push(&d, ids[i], out + used, step);
    }
    used += infer_detok_flush(&d, out + used, step);
    out[used] = '\0';
    p = realloc(out, used + 1);
    *len = used;
    return p != NULL ? p : out;
}

/* ---- response bodies ----------------------------------------------------- */

char *
infer_oai_tokenize_body(const infer_tokenizer_t *tok, const int32_t *ids,
    int n, int max_model_len, int token_strs, size_t *len)
{
    int          i;
    json_t      *o, *a, *s;
    const char  *str;

    a = json_array();
    s = token_strs ? json_array() : json_null();
    for (i = 0; a != NULL && s != NULL && i < n; i++) {
        if (json_array_append_new(a, json_integer(ids[i])) != 0) {
            json_decref(a);
            a = NULL;
            break;
        }
        if (!token_strs) {
            continue;
        }
        str = infer_tokenizer_token_str(tok, ids[i]);
        if (json_array_append_new(s, json_string(str ? str : "")) != 0) {
            json_decref(s);
            s = NULL;
        }
    }
    o = json_pack("{s:i,s:i,s:o*,s:o*}", "count", n, "max_model_len",
                  max_model_len, "tokens", a, "token_strs", s);
    if (o == NULL || a == NULL || s == NULL) {
        json_decref(o);
        return NULL;
    }
    return oai_dump(o, "", "\n", len);
}

char *
infer_oai_detokenize_body(const infer_tokenizer_t *tok, const int32_t *ids,
    int n, size_t *len)
{
    int            i;
    char          *out;
    size_t         cap, used, step, k;
    json_t        *o;
    const char    *str;
    infer_detok_t  d;

    step = infer_tokenizer_max_token_bytes(tok) + 8;
    cap = step * ((size_t) n + 1) + 1;
    out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    infer_detok_init(&d, tok, 1);
    used = 0;
    for (i = 0; i < n; i++) {
        if (!infer_tokenizer_is_special(tok, ids[i])) {
            used += infer_detok_push(&d, ids[i], out + used, step);
            continue;
        }
        /* decode(skip_special_tokens=False): the token's own string; the
         * text after it is not at the start any more */
        used += infer_detok_flush(&d, out + used, step);
        str = infer_tokenizer_token_str(tok, ids[i]);
        k = str ? strlen(str) : 0;
        if (k > step) {
            k = 0;
        }
        memcpy(out + used, str ? str : "", k);
        used += k;
        infer_detok_init(&d, tok, 0);
    }
    used += infer_detok_flush(&d, out + used, step);

    /* the detokenizer writes whole characters only (U+FFFD for a broken
     * one), so the text is UTF-8 */
    o = json_pack("{s:s%}", "prompt", out, used);
    free(out);
    if (o == NULL) {
        return NULL;
    }
    return oai_dump(o, "", "\n", len);
}

static json_t *
oai_choice(const infer_oai_response_t *rsp, int index,
    const infer_oai_choice_t *c)
{
    const char  *text = c->text != NULL ? c->text : "";

    if (rsp->kind == INFER_OAI_CHAT && c->tool_calls != NULL) {
        return json_pack("{s:i,s:{s:s,s:o,s:O},s:o,s:s?}", "index", index,
                         "message", "role", "assistant",
                         "content", c->text_len > 0
                                    ? json_stringn(text, c->text_len)
                                    : json_null(),
                         "tool_calls", c->tool_calls,
                         "logprobs", oai_logprobs_take(c->logprobs),
                         "finish_reason", c->finish);
    }
    if (rsp->kind == INFER_OAI_CHAT) {
        return json_pack("{s:i,s:{s:s,s:s%},s:o,s:s?}", "index", index,
                         "message", "role", "assistant",
                         "content", text, c->text_len,
                         "logprobs", oai_logprobs_take(c->logprobs),
                         "finish_reason", c->finish);
    }
    return json_pack("{s:i,s:s%,s:o,s:s?}", "index", index,
                     "text", text, c->text_len,
                     "logprobs", oai_logprobs_take(c->logprobs),
                     "finish_reason", c->finish);
}

char *
infer_oai_completion_body(const infer_oai_response_t *rsp,
    const infer_oai_choice_t *choices, int n, int prompt_tokens,
    int completion_tokens, size_t *len)
{
    json_t  *o, *a;
    int      i;

    o = oai_envelope(rsp, 0);
    a = json_array();
    if (o == NULL || a == NULL
        || json_object_set_new(o, "choices", a) != 0)
    {
        json_decref(o);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (json_array_append_new(a, oai_choice(rsp, i, &choices[i])) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    if (json_object_set_new(o, "usage",
                            oai_usage(rsp, prompt_tokens, completion_tokens))
        != 0)
    {
        json_decref(o);
        return NULL;
    }
    return oai_dump(o, "", "\n", len);
}

char *
infer_oai_chunk(const infer_oai_response_t *rsp, int index,
    const infer_oai_choice_t *c, int role, int usage_null, size_t *len)
{
    json_t      *o, *choice, *delta, *lp;
    const char  *text = c->text != NULL ? c->text : "";

    o = oai_envelope(rsp, 1);
    lp = infer_oai_logprobs_pending(c->logprobs) > 0
         ? oai_logprobs_take(c->logprobs) : json_null();
    if (rsp->kind == INFER_OAI_CHAT) {
        if (role) {
            delta = json_pack("{s:s,s:s}", "role", "assistant",
                              "content", "");
        } else if (c->tool_calls != NULL) {
            delta = json_deep_copy(c->tool_calls);
        } else if (c->finish != NULL && c->text_len == 0) {
            delta = json_object();
        } else {
            delta = json_pack("{s:s%}", "content", text, c->text_len);
        }
        choice = json_pack("{s:i,s:o,s:o,s:s?}", "index", index,
                           "delta", delta, "logprobs", lp,
                           "finish_reason", c->finish);
    } else {
        choice = json_pack("{s:i,s:s%,s:o,s:s?}", "index", index,
                           "text", text, c->text_len, "logprobs", lp,
                           "finish_reason", c->finish);
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

json_t *
infer_oai_tool_deltas(json_t *calls)
{
    json_t  *a, *c, *fn, *head, *args;
    size_t   i;

    a = json_array();
    json_array_foreach(calls, i, c) {
        fn = json_object_get(c, "function");
        head = json_pack("{s:[{s:i,s:O,s:s,s:{s:O,s:s}}]}", "tool_calls",
                         "index", (int) i, "id", json_object_get(c, "id"),
                         "type", "function", "function",
                         "name", json_object_get(fn, "name"),
                         "arguments", "");
        args = json_pack("{s:[{s:i,s:{s:O}}]}", "tool_calls", "index",
                         (int) i, "function", "arguments",
                         json_object_get(fn, "arguments"));
        if (a == NULL || json_array_append_new(a, head) != 0
            || json_array_append_new(a, args) != 0)
        {
            json_decref(a);
            return NULL;
        }
    }
    return a;
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
                               oai_usage(rsp, prompt_tokens,
                                         completion_tokens))
           != 0)
    {
        json_decref(o);
        return NULL;
    }
    return oai_dump(o, "data: ", "\n\n", len);
}

static json_t *
oai_model(const char *name, int64_t created)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", name, "object", "model",
                     "created", (json_int_t) created, "owned_by", "nginx");
}

char *
infer_oai_models_body(const char *const *names, const int64_t *created,
    int n, size_t *len)
{
    json_t  *o, *data;
    int      i;

    data = json_array();
    for (i = 0; data != NULL && i < n; i++) {
        if (json_array_append_new(data, oai_model(names[i], created[i]))
            != 0)
        {
            json_decref(data);
            return NULL;
        }
    }
    o = json_pack("{s:s,s:o}", "object", "list", "data", data);
    return oai_dump(o, "", "\n", len);
}

char *
infer_oai_model_body(const char *name, int64_t created, size_t *len)
{
    return oai_dump(oai_model(name, created), "", "\n", len);
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
                json_pack("{s:s,s:i,s:i,s:I,s:I,s:I,s:I,s:i,s:i,s:i,s:I,"
                          "s:I,s:I,s:I,s:s?,s:s?,s:i,s:i,s:I,s:s?,s:s?}",
                          "name", names[i],
                          "running", st[i].running,
                          "waiting", st[i].waiting,
                          "steps", (json_int_t) st[i].steps,
                          "prompt_tokens", (json_int_t) st[i].prompt_tokens,
                          "generated_tokens",
                          (json_int_t) st[i].generated_tokens,
                          "preemptions", (json_int_t) st[i].preemptions,
                          "kv_blocks", st[i].n_blocks,
                          "kv_blocks_free", st[i].free_blocks,
                          "kv_blocks_cached", st[i].cached_blocks,
                          "prefix_cache_queries",
                          (json_int_t) st[i].prefix_queries,
                          "prefix_cache_hits",
                          (json_int_t) st[i].prefix_hits,
                          "kv_block_bytes", (json_int_t) st[i].kv_block_bytes,
                          "kv_bytes", (json_int_t) (st[i].kv_block_bytes
                                                    * st[i].n_blocks),
                          "backend", st[i].backend,
                          "dtype", st[i].dtype,
                          "threads", st[i].threads,
                          "tp", st[i].tp,
                          "weight_bytes", (json_int_t) st[i].weight_bytes,
                          "kernels", st[i].kernels,
                          "kernels_warning", st[i].kernels_warning)) != 0)
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


/* ---- chat templates ------------------------------------------------ */

const char  infer_oai_default_template[] =
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

/* Conversations of more messages are not searched for the one that a
 * template refuses: each try renders a prefix again. */
#define OAI_CULPRIT_MAX  32

static char *
oai_render(const infer_jinja_tmpl_t *t, json_t *messages, json_t *tools,
    json_t *documents, json_t *extra, int gen, int cont, size_t *len,
    infer_jinja_error_t *jerr)
{
    infer_jinja_chat_t  chat;

    memset(&chat, 0, sizeof(chat));
    chat.messages = messages;
    chat.tools = tools;
    chat.documents = documents;
    chat.extra = extra;
    chat.add_generation_prompt = gen;
    chat.continue_final_message = cont;
    return infer_jinja_render_chat(t, &chat, NULL, len, jerr);
}

/*
 * The message a template refuses: the first k for which the chat cut
 * after messages[k] fails with the same error (what went before rendered,
 * so that message is what the template does not take).  -1 when there is
 * none such or the chat is long.
 */
static int
oai_culprit(const infer_jinja_tmpl_t *t, const infer_oai_request_t *req,
    json_t *extra, const infer_jinja_error_t *e)
{
    char                 *s;
    size_t                k, n, len;
    json_t               *prefix;
    int                   found;
    infer_jinja_error_t   pe;

    n = json_array_size(req->messages);
    if (n > OAI_CULPRIT_MAX) {
        return -1;
    }
    prefix = json_array();
    if (prefix == NULL) {
        return -1;
    }
    found = -1;
    for (k = 0; k < n; k++) {
        if (json_array_append(prefix, json_array_get(req->messages, k))
            != 0)
        {
            break;
        }
        s = oai_render(t, prefix, req->tools, req->documents, extra, 0, 0,
                       &len, &pe);
        if (s != NULL) {
            free(s);
            continue;
        }
        if (strcmp(pe.type, e->type) == 0
            && strcmp(pe.message, e->message) == 0)
        {
            found = (int) k;
        }
        break;
    }
    json_decref(prefix);
    return found;
}

char *
infer_oai_chat_prompt(const infer_jinja_tmpl_t *t,
    const infer_oai_request_t *req, json_t *special, size_t *len,
    infer_oai_error_t *err)
{
    int                   k;
    char                 *s, why[600], where[64];
    json_t               *extra, *role;
    infer_jinja_error_t   jerr;

    /* a deep copy: special is shared by the threads that render, and
     * a shallow one would change its members' reference counts */
    extra = special != NULL ? json_deep_copy(special) : json_object();
    if (extra == NULL
        || (req->template_kwargs != NULL
            && json_object_update(extra, req->template_kwargs) != 0))
    {
        json_decref(extra);
        oai_nomem(err);
        return NULL;
    }

    s = oai_render(t, req->messages, req->tools, req->documents, extra,
                   req->add_generation_prompt, req->continue_final_message,
                   len, &jerr);
    if (s != NULL) {
        json_decref(extra);
        return s;
    }

    infer_jinja_strerror(&jerr, why, sizeof(why));
    where[0] = '\0';
    if (jerr.line > 0) {
        snprintf(where, sizeof(where), " (template line %d, column %d)",
                 jerr.line, jerr.column);
    }
    k = oai_culprit(t, req, extra, &jerr);
    json_decref(extra);

    if (k >= 0) {
        role = json_object_get(json_array_get(req->messages, k), "role");
        oai_invalid(err, "messages", "the model's chat template cannot "
                    "render messages[%d] (role \"%.64s\"): %s%s", k,
                    json_string_value(role), why, where);
    } else {
        oai_invalid(err, "messages", "the model's chat template cannot "
                    "render these messages: %s%s", why, where);
    }
    return NULL;
}

int
infer_oai_template_check(const infer_jinja_tmpl_t *t, json_t *special,
    infer_jinja_error_t *err)
{
    int                   rc;
    char                 *s;
    size_t                len;
    json_t               *msgs, *tools;
    infer_jinja_error_t   e2;

    msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "Hello");
    tools = json_pack("[{s:s,s:{s:s,s:s,s:{s:s,s:{}}}}]", "type", "function",
                      "function", "name", "get_time", "description",
                      "The current time.", "parameters", "type", "object",
                      "properties");
    rc = -1;
    if (msgs == NULL || tools == NULL) {
        memset(err, 0, sizeof(*err));
        snprintf(err->type, sizeof(err->type), "MemoryError");
        snprintf(err->message, sizeof(err->message), "out of memory");
        goto done;
    }

    s = oai_render(t, msgs, NULL, NULL, special, 1, 0, &len, err);
    if (s == NULL) {
        s = oai_render(t, msgs, tools, NULL, special, 1, 0, &len, &e2);
    }
    if (s != NULL) {
        free(s);
        rc = 0;
    }

done:
    json_decref(msgs);
    json_decref(tools);
    return rc;
}

/* What ends an assistant turn in the formats of the families. */
static const char  *oai_turn_ends[] = {
    "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>",
    "<|END_OF_TURN_TOKEN|>", "<|end_of_text|>"
};

int
infer_oai_template_stops(const char *src, const infer_tokenizer_t *tok,
    int32_t *ids, int max)
{
    int      n;
    size_t   i;
    int32_t  id;

    n = 0;
    for (i = 0; i < sizeof(oai_turn_ends) / sizeof(oai_turn_ends[0]); i++) {
        if (n == max || strstr(src, oai_turn_ends[i]) == NULL) {
            continue;
        }
        id = infer_tokenizer_token_id(tok, oai_turn_ends[i]);
        if (id >= 0 && infer_tokenizer_is_special(tok, id)) {
            ids[n++] = id;
        }
    }
    return n;
}
