/*
 * Tool calls in a model's output (toolcall.h).  What counts as a call
 * follows vLLM's parsers of the same names (hermes, llama3_json,
 * mistral): the JSON a call holds is decoded, its arguments written again
 * as JSON text (", " and ": " between members, as Python's json.dumps
 * writes them, UTF-8 as is), and any part that does not decode makes the
 * whole output content.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "toolcall.h"

#define TOOL_HERMES_OPEN   "<tool_call>"
#define TOOL_HERMES_CLOSE  "</tool_call>"
#define TOOL_MISTRAL       "[TOOL_CALLS]"
#define TOOL_MISTRAL_ARGS  "[ARGS]"
#define TOOL_PYTHON_TAG    "<|python_tag|>"

static const char  *tool_fmt_names[] = {
    "none", "hermes", "llama3_json", "mistral"
};

int
infer_tool_fmt_parse(const char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < sizeof(tool_fmt_names) / sizeof(tool_fmt_names[0]); i++)
    {
        if (strlen(tool_fmt_names[i]) == len
            && strncasecmp(tool_fmt_names[i], name, len) == 0)
        {
            return (int) i;
        }
    }
    return -1;
}

const char *
infer_tool_fmt_name(infer_tool_fmt_t f)
{
    return tool_fmt_names[f];
}

infer_tool_fmt_t
infer_tool_fmt_detect(const char *tmpl)
{
    if (tmpl == NULL) {
        return INFER_TOOL_FMT_NONE;
    }
    if (strstr(tmpl, TOOL_HERMES_OPEN) != NULL) {
        return INFER_TOOL_FMT_HERMES;
    }
    if (strstr(tmpl, TOOL_MISTRAL) != NULL) {
        return INFER_TOOL_FMT_MISTRAL;
    }
    /* Llama-3.1's and 3.2's: 'Respond in the format {"name": function
     * name, "parameters": dictionary of argument name and its value}' */
    if (strstr(tmpl, "\"parameters\": dictionary") != NULL) {
        return INFER_TOOL_FMT_LLAMA3_JSON;
    }
    return INFER_TOOL_FMT_NONE;
}

static int
tool_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The first occurrence of the NUL-terminated s in text[0..len), or NULL. */
static const char *
tool_find(const char *text, size_t len, const char *s)
{
    size_t  n = strlen(s);

    return n <= len ? memmem(text, len, s, n) : NULL;
}

static uint64_t
tool_next(uint64_t *x)
{
    /* splitmix64 */
    uint64_t  z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static json_t *
tool_id(infer_tool_fmt_t f, uint64_t *seed)
{
    static const char  alnum[] = "abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char      id[32];
    int       i;
    uint64_t  a, b;

    if (f == INFER_TOOL_FMT_MISTRAL) {
        a = tool_next(seed);
        for (i = 0; i < 9; i++) {
            id[i] = alnum[a % 62];
            a /= 62;
        }
        id[9] = '\0';
        return json_string(id);
    }
    a = tool_next(seed);
    b = tool_next(seed);
    snprintf(id, sizeof(id), "call_%016llx%08llx", (unsigned long long) a,
             (unsigned long long) (b & 0xffffffffu));
    return json_string(id);
}

/*
 * One call from a decoded {"name": ..., "arguments" or "parameters":
 * ...}; appended to calls.  -1 when obj is not one.
 */
static int
tool_add(json_t *calls, infer_tool_fmt_t f, json_t *obj, const char *name,
    size_t name_len, uint64_t *seed)
{
    char    *args;
    json_t  *a, *n, *call;

    if (name == NULL) {
        if (!json_is_object(obj)) {
            return -1;
        }
        n = json_object_get(obj, "name");
        if (!json_is_string(n) || json_string_length(n) == 0) {
            return -1;
        }
        name = json_string_value(n);
        name_len = json_string_length(n);
        a = json_object_get(obj, "arguments");
        if (a == NULL) {
            a = json_object_get(obj, "parameters");
        }
    } else {
        a = obj;
    }

    if (json_is_string(a)) {
        /* already JSON text, as some models write it */
        args = strdup(json_string_value(a));
    } else if (a == NULL || json_is_null(a)) {
        args = strdup("{}");
    } else {
        args = json_dumps(a, JSON_ENCODE_ANY);
    }
    if (args == NULL) {
        return -1;
    }

    call = json_pack("{s:o,s:s,s:{s:s%,s:s}}", "id", tool_id(f, seed),
                     "type", "function", "function", "name", name, name_len,
                     "arguments", args);
    free(args);
    if (call == NULL || json_array_append_new(calls, call) != 0) {
        return -1;
    }
    return 0;
}

/* Decodes one JSON value at text[*pos..len), moving *pos past it. */
static json_t *
tool_json(const char *text, size_t len, size_t *pos)
{
    json_t        *v;
    json_error_t   err;

    v = json_loadb(text + *pos, len - *pos,
                   JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &err);
    if (v != NULL) {
        *pos += err.position;
    }
    return v;
}

static size_t
tool_skip_space(const char *text, size_t len, size_t pos)
{
    while (pos < len && tool_space(text[pos])) {
        pos++;
    }
    return pos;
}

/* <tool_call> JSON </tool_call> ..., the last maybe left open. */
static int
tool_parse_hermes(json_t *calls, const char *text, size_t len,
    uint64_t *seed, size_t *content_len)
{
    const char  *open, *close, *end;
    json_t      *v;
    size_t       pos, n;
    int          rc;

    open = tool_find(text, len, TOOL_HERMES_OPEN);
    if (open == NULL) {
        return -1;
    }
    *content_len = open - text;
    end = text + len;

    while (open != NULL) {
        pos = open - text + sizeof(TOOL_HERMES_OPEN) - 1;
        close = tool_find(text + pos, len - pos, TOOL_HERMES_CLOSE);
        n = close != NULL ? (size_t) (close - text) : len;
        pos = tool_skip_space(text, n, pos);
        v = tool_json(text, n, &pos);
        if (v == NULL || tool_skip_space(text, n, pos) != n) {
            json_decref(v);
            return -1;
        }
        rc = tool_add(calls, INFER_TOOL_FMT_HERMES, v, NULL, 0, seed);
        json_decref(v);
        if (rc != 0 || close == NULL) {
            return rc;
        }
        close += sizeof(TOOL_HERMES_CLOSE) - 1;
        open = tool_find(close, end - close, TOOL_HERMES_OPEN);
    }
    return 0;
}

/* The whole output: JSON objects separated by ";". */
static int
tool_parse_llama3(json_t *calls, const char *text, size_t len,
    uint64_t *seed, size_t *content_len)
{
    json_t  *v;
    size_t   pos;
    int      rc;

    *content_len = 0;
    pos = tool_skip_space(text, len, 0);
    if (len - pos >= sizeof(TOOL_PYTHON_TAG) - 1
        && memcmp(text + pos, TOOL_PYTHON_TAG, sizeof(TOOL_PYTHON_TAG) - 1)
           == 0)
    {
        pos = tool_skip_space(text, len, pos + sizeof(TOOL_PYTHON_TAG) - 1);
    }
    if (pos == len || text[pos] != '{') {
        return -1;
    }

    while (pos < len) {
        v = tool_json(text, len, &pos);
        if (v == NULL) {
            return -1;
        }
        rc = tool_add(calls, INFER_TOOL_FMT_LLAMA3_JSON, v, NULL, 0, seed);
        json_decref(v);
        if (rc != 0) {
            return -1;
        }
        pos = tool_skip_space(text, len, pos);
        if (pos < len && text[pos] == ';') {
            pos = tool_skip_space(text, len, pos + 1);
            continue;
        }
        if (pos != len) {
            return -1;
        }
    }
    return 0;
}

/* After [TOOL_CALLS]: a JSON array of calls, or name[ARGS]{...}
 * repeated, each after its own [TOOL_CALLS]. */
static int
tool_parse_mistral(json_t *calls, const char *text, size_t len,
    uint64_t *seed, size_t *content_len)
{
    const char  *mark, *args;
    json_t      *v, *e;
    size_t       pos, i, name, name_len;
    int          rc;

    mark = tool_find(text, len, TOOL_MISTRAL);
    if (mark != NULL) {
        *content_len = mark - text;
        pos = mark - text + sizeof(TOOL_MISTRAL) - 1;
    } else {
        /* the marker is a special token: dropped from the text */
        *content_len = 0;
        pos = tool_skip_space(text, len, 0);
        i = pos < len ? tool_skip_space(text, len, pos + 1) : len;
        if (pos == len || text[pos] != '[' || i == len || text[i] != '{') {
            return -1;
        }
    }
    pos = tool_skip_space(text, len, pos);

    if (pos < len && text[pos] == '[') {
        v = tool_json(text, len, &pos);
        if (!json_is_array(v) || json_array_size(v) == 0
            || tool_skip_space(text, len, pos) != len)
        {
            json_decref(v);
            return -1;
        }
        json_array_foreach(v, i, e) {
            if (tool_add(calls, INFER_TOOL_FMT_MISTRAL, e, NULL, 0, seed)
                != 0)
            {
                json_decref(v);
                return -1;
            }
        }
        json_decref(v);
        return 0;
    }

    if (mark == NULL) {
        return -1;
    }
    for ( ;; ) {
        args = tool_find(text + pos, len - pos, TOOL_MISTRAL_ARGS);
        if (args == NULL) {
            return -1;
        }
        name = pos;
        name_len = args - text - pos;
        while (name_len > 0 && tool_space(text[name + name_len - 1])) {
            name_len--;
        }
        if (name_len == 0) {
            return -1;
        }
        pos = args - text + sizeof(TOOL_MISTRAL_ARGS) - 1;
        pos = tool_skip_space(text, len, pos);
        v = tool_json(text, len, &pos);
        if (v == NULL) {
            return -1;
        }
        rc = tool_add(calls, INFER_TOOL_FMT_MISTRAL, v, text + name,
                      name_len, seed);
        json_decref(v);
        if (rc != 0) {
            return -1;
        }
        pos = tool_skip_space(text, len, pos);
        if (pos == len) {
            return 0;
        }
        if (len - pos < sizeof(TOOL_MISTRAL) - 1
            || memcmp(text + pos, TOOL_MISTRAL, sizeof(TOOL_MISTRAL) - 1)
               != 0)
        {
            return -1;
        }
        pos = tool_skip_space(text, len, pos + sizeof(TOOL_MISTRAL) - 1);
    }
}

json_t *
infer_tool_parse(infer_tool_fmt_t f, const char *text, size_t len,
    uint64_t seed, size_t *content_len)
{
    int      rc;
    json_t  *calls;

    *content_len = len;
    if (f == INFER_TOOL_FMT_NONE || text == NULL || len == 0) {
        return NULL;
    }
    calls = json_array();
    if (calls == NULL) {
        return NULL;
    }

    switch (f) {
    case INFER_TOOL_FMT_HERMES:
        rc = tool_parse_hermes(calls, text, len, &seed, content_len);
        break;
    case INFER_TOOL_FMT_LLAMA3_JSON:
        rc = tool_parse_llama3(calls, text, len, &seed, content_len);
        break;
    default:
        rc = tool_parse_mistral(calls, text, len, &seed, content_len);
        break;
    }

    if (rc != 0 || json_array_size(calls) == 0) {
        json_decref(calls);
        *content_len = len;
        return NULL;
    }
    return calls;
}

/* How much of text's end could be the start of marker m. */
static size_t
tool_partial(const char *text, size_t len, const char *m)
{
    size_t  n, k;

    n = strlen(m);
    for (k = n - 1; k > 0; k--) {
        if (k <= len && memcmp(text + len - k, m, k) == 0) {
            return k;
        }
    }
    return 0;
}

size_t
infer_tool_stream_safe(infer_tool_fmt_t f, const char *text, size_t len)
{
    const char  *mark, *found;
    size_t       pos, next;

    switch (f) {
    case INFER_TOOL_FMT_NONE:
        return len;

    case INFER_TOOL_FMT_HERMES:
    case INFER_TOOL_FMT_MISTRAL:
        mark = f == INFER_TOOL_FMT_HERMES ? TOOL_HERMES_OPEN : TOOL_MISTRAL;
        if (f == INFER_TOOL_FMT_MISTRAL) {
            /* a JSON array from the start: calls whose marker was
             * dropped */
            pos = tool_skip_space(text, len, 0);
            next = pos < len ? tool_skip_space(text, len, pos + 1) : len;
            if (pos == len
                || (text[pos] == '[' && (next == len || text[next] == '{')))
            {
                return 0;
            }
        }
        found = tool_find(text, len, mark);
        if (found != NULL) {
            return found - text;
        }
        return len - tool_partial(text, len, mark);

    default:
        /* llama3_json: calls are the whole output, so an output that
         * begins like one is held to the end */
        pos = tool_skip_space(text, len, 0);
        if (pos == len || text[pos] == '{' || text[pos] == '<') {
            return 0;
        }
        return len;
    }
}
