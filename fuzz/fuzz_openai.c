/*
 * The OpenAI request parser on any bytes, as both /v1/completions and
 * /v1/chat/completions bodies.  A rejected body must still give the client
 * a JSON error (the module has no other way to answer 400); an accepted
 * one must hold what the engine relies on, and every response piece built
 * from its fields must be JSON that gives the text back unchanged.  The
 * input's bytes also serve as token ids and logprobs for the logprobs
 * shapes, with two real tokenizers of ../shared (SentencePiece with byte
 * fallback, and GPT-2's byte level, whose tokens may hold any part of a
 * character): every token must come out as a JSON string, its raw bytes
 * intact, each entry exactly once across a chunk and the body after it.
 */
#include <math.h>

#include "fuzz.h"
#include "openai.h"
#include "tokenizer.h"

#define FUZZ_MAX_N    8
#define FUZZ_N_TOK    2
#define FUZZ_MAX_IDS  8
#define FUZZ_MAX_TOP  5

static const char         *fuzz_tok_dirs[FUZZ_N_TOK] = {
    "models/stories260K", "tokenizers/gpt2"
};
static infer_tokenizer_t  *fuzz_tok[FUZZ_N_TOK];
/* chats are rendered with the default template and one that reads tool
 * calls, tools and kwargs */
static infer_jinja_tmpl_t *fuzz_tmpl[2];
static json_t             *fuzz_special;
static const char          fuzz_tools_tmpl[] =
    "{% for m in messages %}{{ m.role }}:{{ m.content }}"
    "{% for c in m.tool_calls or [] %}{{ c.function.name }}"
    "{{ c.function.arguments | tojson }}{% endfor %}{% endfor %}"
    "{% if tools %}{{ tools | tojson }}{% endif %}{{ enable_thinking }}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char           *shared = getenv("INFER_SHARED");
    char                  dir[1024], err[512];
    int                   k;
    infer_jinja_error_t   jerr;

    (void) argc;
    (void) argv;
    if (shared == NULL || shared[0] == '\0') {
        shared = "../shared";
    }
    for (k = 0; k < FUZZ_N_TOK; k++) {
        snprintf(dir, sizeof(dir), "%s/%s", shared, fuzz_tok_dirs[k]);
        if (infer_tokenizer_load(dir, &fuzz_tok[k], err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz_openai: %s\n", err);
            abort();
        }
    }
    fuzz_tmpl[0] = infer_jinja_parse(infer_oai_default_template,
                                     strlen(infer_oai_default_template),
                                     &jerr);
    fuzz_tmpl[1] = infer_jinja_parse(fuzz_tools_tmpl,
                                     sizeof(fuzz_tools_tmpl) - 1, &jerr);
    fuzz_special = json_pack("{s:s,s:s}", "bos_token", "<s>", "eos_token",
                             "</s>");
    if (fuzz_tmpl[0] == NULL || fuzz_tmpl[1] == NULL
        || fuzz_special == NULL)
    {
        fprintf(stderr, "fuzz_openai: the templates: %s\n", jerr.message);
        abort();
    }
    return 0;
}

/* The SSE frame "data: {...}\n\n" around one JSON object. */
static json_t *
fuzz_sse_json(const char *s, size_t len)
{
    FUZZ_CHECK(len >= 8 && memcmp(s, "data: ", 6) == 0
               && memcmp(s + len - 2, "\n\n", 2) == 0,
               "not an SSE event: %.*s", (int) len, s);
    return fuzz_json(s + 6, len - 8);
}

static void
fuzz_check_error(const infer_oai_error_t *err)
{
    json_t  *j, *e;
    char    *body;
    size_t   len;

    FUZZ_CHECK(err->status == 400 || err->status == 500, "status %d",
               err->status);
    FUZZ_CHECK(err->type != NULL && err->message[0] != '\0',
               "error without type or message");

    body = infer_oai_error_body(err, &len);
    FUZZ_CHECK(body != NULL, "no error body for message \"%s\"",
               err->message);
    j = fuzz_json(body, len);
    e = json_object_get(j, "error");
    FUZZ_CHECK(json_is_string(json_object_get(e, "message"))
               && json_is_string(json_object_get(e, "type")),
               "error body is not {\"error\":{...}}: %s", body);
    json_decref(j);
    free(body);

    body = infer_oai_error_chunk(err, &len);
    FUZZ_CHECK(body != NULL, "no error event for \"%s\"", err->message);
    j = fuzz_sse_json(body, len);
    FUZZ_CHECK(json_is_object(json_object_get(j, "error")),
               "error event is not {\"error\":{...}}: %s", body);
    json_decref(j);
    free(body);
}

/* The JSON string at choices[0] + path equals text[0..len). */
static void
fuzz_check_text(json_t *j, const char *k1, const char *k2, const char *text,
    size_t len)
{
    json_t  *v;

    v = json_object_get(json_array_get(json_object_get(j, "choices"), 0),
                        k1);
    if (k2 != NULL) {
        v = json_object_get(v, k2);
    }
    FUZZ_CHECK(json_is_string(v) && json_string_length(v) == len
               && memcmp(json_string_value(v), text, len) == 0,
               "text of %zu bytes did not round-trip", len);
}

/* Every piece of a response carrying text, as the module builds them. */
static void
fuzz_check_response(const infer_oai_request_t *req, const char *text,
    size_t tlen)
{
    infer_oai_response_t   rsp;
    infer_oai_choice_t     c;
    json_t                *j;
    char                  *s;
    size_t                 len;
    int                    chat = req->kind == INFER_OAI_CHAT;

    rsp.kind = req->kind;
    rsp.id = chat ? "chatcmpl-fuzz" : "cmpl-fuzz";
    rsp.created = 1700000000;
    rsp.model = req->model;

    c.text = text;
    c.text_len = tlen;
    c.finish = "stop";
    c.logprobs = NULL;
    c.tool_calls = NULL;
    s = infer_oai_completion_body(&rsp, &c, 1, 3, 5, &len);
    FUZZ_CHECK(s != NULL, "no completion body");
    j = fuzz_json(s, len);
    FUZZ_CHECK(j != NULL, "completion body is not JSON: %s", s);
    fuzz_check_text(j, chat ? "message" : "text", chat ? "content" : NULL,
                    text, tlen);
    FUZZ_CHECK(json_is_string(json_object_get(j, "model"))
               && strcmp(json_string_value(json_object_get(j, "model")),
                         req->model) == 0, "model did not round-trip");
    json_decref(j);
    free(s);

    c.finish = NULL;
    s = infer_oai_chunk(&rsp, 0, &c, 0, req->include_usage, &len);
    FUZZ_CHECK(s != NULL, "no chunk");
    j = fuzz_sse_json(s, len);
    FUZZ_CHECK(j != NULL, "chunk is not JSON: %s", s);
    fuzz_check_text(j, chat ? "delta" : "text", chat ? "content" : NULL,
                    text, tlen);
    json_decref(j);
    free(s);

    s = infer_oai_chunk(&rsp, 0, &c, 1, 0, &len);
    FUZZ_CHECK(s != NULL, "no role chunk");
    j = fuzz_sse_json(s, len);
    FUZZ_CHECK(j != NULL, "role chunk is not JSON: %s", s);
    json_decref(j);
    free(s);

    c.text = NULL;
    c.text_len = 0;
    c.finish = "length";
    s = infer_oai_chunk(&rsp, FUZZ_MAX_N - 1, &c, 0, 1, &len);
    FUZZ_CHECK(s != NULL, "no finish chunk");
    j = fuzz_sse_json(s, len);
    FUZZ_CHECK(j != NULL, "finish chunk is not JSON: %s", s);
    json_decref(j);
    free(s);

    s = infer_oai_usage_chunk(&rsp, 3, 5, &len);
    FUZZ_CHECK(s != NULL, "no usage chunk");
    j = fuzz_sse_json(s, len);
    FUZZ_CHECK(j != NULL, "usage chunk is not JSON: %s", s);
    json_decref(j);
    free(s);
}

/* What the module and the engine take for granted of a parsed request. */
/* An accepted chat: its messages as the template gets them, rendered by
 * both templates to a prompt or to a 400 on messages. */
static void
fuzz_check_chat(const infer_oai_request_t *req)
{
    int                 t;
    char               *s;
    size_t              i, len;
    json_t             *m, *role, *content;
    infer_oai_error_t   err;

    FUZZ_CHECK(json_is_array(req->messages)
               && json_array_size(req->messages) > 0,
               "chat without messages");
    json_array_foreach(req->messages, i, m) {
        role = json_object_get(m, "role");
        content = json_object_get(m, "content");
        FUZZ_CHECK(json_is_string(role) && json_string_length(role) > 0,
                   "messages[%zu] has an empty role", i);
        FUZZ_CHECK(content == NULL || json_is_null(content)
                   || json_is_string(content),
                   "messages[%zu].content is neither text nor null", i);
        /* (a tokenize request may leave the model out) */
        if (json_is_string(content) && req->model != NULL) {
            fuzz_check_response(req, json_string_value(content),
                                json_string_length(content));
        }
    }
    FUZZ_CHECK(req->tools == NULL || json_array_size(req->tools) > 0,
               "an empty tools list kept");
    FUZZ_CHECK(req->tool_choice != INFER_OAI_TOOLS_NAMED
               || req->tool_name != NULL, "a named tool_choice without name");
    FUZZ_CHECK(!(req->add_generation_prompt && req->continue_final_message),
               "add_generation_prompt with continue_final_message");

    for (t = 0; t < 2; t++) {
        s = infer_oai_chat_prompt(fuzz_tmpl[t], req, fuzz_special, &len,
                                  &err);
        if (s == NULL) {
            FUZZ_CHECK(err.status == 400 || err.status == 500,
                       "a chat the template refuses: status %d",
                       err.status);
            fuzz_check_error(&err);
            continue;
        }
        FUZZ_CHECK(len > 0 || req->continue_final_message,
                   "template %d rendered nothing", t);
        free(s);
    }
}

static void
fuzz_check_request(const infer_oai_request_t *req)
{
    int  i;

    FUZZ_CHECK(req->model != NULL, "no model");
    FUZZ_CHECK(req->max_tokens >= (req->kind == INFER_OAI_CHAT
                                   && req->has_max_tokens),
               "max_tokens %d", req->max_tokens);
    FUZZ_CHECK(req->min_tokens >= 0
               && (!req->has_max_tokens || req->min_tokens <= req->max_tokens),
               "min_tokens %d, max_tokens %d", req->min_tokens,
               req->max_tokens);
    FUZZ_CHECK(req->n >= 1 && req->n <= FUZZ_MAX_N, "n %d", req->n);
    FUZZ_CHECK(req->top_logprobs >= 0
               && req->top_logprobs <= INFER_MAX_TOP_LOGPROBS
               && (req->top_logprobs == 0 || req->logprobs),
               "top_logprobs %d, logprobs %d", req->top_logprobs,
               req->logprobs);
    FUZZ_CHECK(!req->echo || req->kind == INFER_OAI_COMPLETION,
               "echo in a chat");
    FUZZ_CHECK(fabs(req->presence_penalty) <= 2.0
               && fabs(req->frequency_penalty) <= 2.0
               && req->repetition_penalty > 0.0
               && isfinite(req->repetition_penalty),
               "penalties %g %g %g", req->presence_penalty,
               req->frequency_penalty, req->repetition_penalty);
    FUZZ_CHECK(req->n_bias >= 0
               && (req->n_bias == 0
                   || (req->bias_ids != NULL && req->bias != NULL)),
               "n_bias %d without arrays", req->n_bias);
    for (i = 0; i < req->n_bias; i++) {
        FUZZ_CHECK(req->bias_ids[i] >= 0 && req->bias[i] >= -100.0f
                   && req->bias[i] <= 100.0f, "logit_bias %d: %g",
                   req->bias_ids[i], req->bias[i]);
    }
    FUZZ_CHECK(req->temperature >= 0.0 && req->temperature <= 2.0,
               "temperature %g", req->temperature);
    FUZZ_CHECK(req->top_p > 0.0 && req->top_p <= 1.0, "top_p %g",
               req->top_p);
    FUZZ_CHECK(req->top_k >= 0, "top_k %d", req->top_k);
    FUZZ_CHECK(req->n_stop >= 0 && req->n_stop <= INFER_OAI_MAX_STOP,
               "n_stop %d", req->n_stop);
    for (i = 0; i < req->n_stop; i++) {
        /* an empty stop sequence would end every generation at once */
        FUZZ_CHECK(req->stop[i] != NULL && req->stop[i][0] != '\0',
                   "stop[%d] is empty", i);
    }
    FUZZ_CHECK(req->include_usage == 0 || req->stream,
               "include_usage without stream");

    if (req->kind == INFER_OAI_CHAT) {
        fuzz_check_chat(req);
        return;
    }

    FUZZ_CHECK((req->prompt != NULL) != (req->prompt_ids != NULL),
               "a completion needs exactly one of text and token ids");
    if (req->prompt_ids != NULL) {
        FUZZ_CHECK(req->n_prompt_ids > 0, "empty token-id prompt");
        for (i = 0; i < req->n_prompt_ids; i++) {
            FUZZ_CHECK(req->prompt_ids[i] >= 0, "negative token id");
        }
        fuzz_check_response(req, "", 0);
    } else {
        fuzz_check_response(req, req->prompt, req->prompt_len);
    }
}

static int
fuzz_json_string_ok(const char *s, size_t n)
{
    json_t  *j = json_stringn(s, n);

    json_decref(j);
    return j != NULL;
}

/* A logprobs body or chunk as JSON.  A token of byte 0 is a key "\u0000"
 * of the legacy alternatives, which is JSON but which jansson's decoder
 * refuses in a key: the oracle reads it as \u0001 (a "\\u0000" that is
 * a backslash and text stays valid too). */
static json_t *
fuzz_lp_json(const char *s, size_t n, int sse)
{
    char    *t, *p;
    json_t  *j;

    t = malloc(n + 1);
    FUZZ_CHECK(t != NULL, "out of memory");
    memcpy(t, s, n);
    t[n] = '\0';
    p = t;
    while ((p = memmem(p, n - (p - t), "\\u0000", 6)) != NULL) {
        p[5] = '1';
        p += 6;
    }
    j = sse ? fuzz_sse_json(t, n) : fuzz_json(t, n);
    free(t);
    return j;
}

/* The entries of a logprobs object: their count, after checking each. */
static size_t
fuzz_check_lp_json(json_t *lp, infer_oai_kind_t kind,
    const infer_tokenizer_t *tok, const int32_t *ids, size_t from, int top,
    size_t *last_offset)
{
    json_t       *a, *e, *b, *tops;
    const char   *raw;
    size_t        n, i, k, len, off;

    if (kind == INFER_OAI_CHAT) {
        a = json_object_get(lp, "content");
        FUZZ_CHECK(json_is_array(a), "chat logprobs without content");
        json_array_foreach(a, i, e) {
            b = json_object_get(e, "bytes");
            tops = json_object_get(e, "top_logprobs");
            FUZZ_CHECK(json_is_string(json_object_get(e, "token"))
                       && json_is_real(json_object_get(e, "logprob"))
                       && json_is_array(tops)
                       && json_array_size(tops) == (size_t) top,
                       "chat entry %zu malformed", i);
            if (infer_tokenizer_is_special(tok, ids[from + i])) {
                FUZZ_CHECK(json_is_null(b), "special token with bytes");
                continue;
            }
            /* the raw bytes, whatever the string shows */
            raw = infer_tokenizer_token_bytes(tok, ids[from + i], &len);
            FUZZ_CHECK(json_is_array(b) && json_array_size(b) == len,
                       "token %d: %zu bytes, not %zu", ids[from + i],
                       json_array_size(b), len);
            for (k = 0; k < len; k++) {
                FUZZ_CHECK(json_integer_value(json_array_get(b, k))
                           == (unsigned char) raw[k],
                           "token %d: byte %zu differs", ids[from + i], k);
            }
        }
        return json_array_size(a);
    }

    a = json_object_get(lp, "tokens");
    n = json_array_size(a);
    FUZZ_CHECK(json_is_array(a)
               && json_array_size(json_object_get(lp, "token_logprobs")) == n
               && json_array_size(json_object_get(lp, "top_logprobs")) == n
               && json_array_size(json_object_get(lp, "text_offset")) == n,
               "legacy logprobs arrays of different lengths");
    for (i = 0; i < n; i++) {
        FUZZ_CHECK(json_is_string(json_array_get(a, i)), "token %zu", i);
        e = json_array_get(json_object_get(lp, "top_logprobs"), i);
        FUZZ_CHECK(json_is_null(e)
                   || (json_is_object(e) && json_object_size(e) >= 1
                       && json_object_size(e) <= (size_t) top + 1),
                   "top_logprobs %zu holds %zu", i, json_object_size(e));
        off = (size_t) json_integer_value(
                  json_array_get(json_object_get(lp, "text_offset"), i));
        FUZZ_CHECK(off >= *last_offset, "text_offset goes back at %zu", i);
        *last_offset = off;
    }
    return n;
}

/*
 * The input as a sequence of token ids and logprobs (two bytes an id, one
 * a logprob, -inf and NaN among them), scored or generated in the shape of
 * kind: a chunk takes the first event's entries, the body the rest.
 */
static void
fuzz_check_logprobs(const uint8_t *data, size_t size, infer_oai_kind_t kind,
    int echo, int top, const infer_tokenizer_t *tok)
{
    static const float    special[4] = { -INFINITY, NAN, 0.0f, -1e30f };
    int32_t               ids[FUZZ_MAX_IDS];
    int32_t               top_ids[FUZZ_MAX_IDS * FUZZ_MAX_TOP];
    float                 lp[FUZZ_MAX_IDS];
    float                 top_lp[FUZZ_MAX_IDS * FUZZ_MAX_TOP];
    size_t                n, i, k, got, last;
    int                   vocab, n_prompt, first;
    infer_oai_response_t  rsp = { kind, "x", 1, "m", 0 };
    infer_oai_choice_t    c;
    infer_oai_logprobs_t *l;
    infer_event_t         ev;
    json_t               *j, *lpj;
    char                 *s;

    vocab = infer_tokenizer_vocab_size(tok);
    n = size / 2 < FUZZ_MAX_IDS ? size / 2 : FUZZ_MAX_IDS;
    if (n < 2) {
        return;
    }
    for (i = 0; i < n; i++) {
        ids[i] = (int32_t) ((data[2 * i] | data[2 * i + 1] << 8) % vocab);
        lp[i] = data[2 * i] < 4 ? special[data[2 * i]]
                                : -(float) data[2 * i + 1] / 16.0f;
        for (k = 0; k < (size_t) top; k++) {
            top_ids[i * top + k] = (int32_t) ((ids[i] + 31 * k) % vocab);
            top_lp[i * top + k] = lp[i] - (float) k;
        }
    }
    n_prompt = (int) (n / 2);

    /* the echoed text is the prompt decoded, as for a token-id prompt */
    s = infer_oai_decode(tok, ids, n_prompt, &got);
    FUZZ_CHECK(s != NULL && fuzz_json_string_ok(s, got),
               "the decoded prompt is not UTF-8");
    l = infer_oai_logprobs_create(kind, tok, ids, n_prompt, echo,
                                  infer_oai_chars(s, got));
    free(s);
    FUZZ_CHECK(l != NULL, "no logprobs");
    /* with echo: the prompt's from index 1, else the generated ones */
    first = echo ? 1 : n_prompt;
    ev = (infer_event_t) { .lp_first = first, .n_lp = n_prompt - first + 1,
                           .lp_ids = ids + first, .lp = lp + first,
                           .lp_top = top, .lp_top_ids = top_ids + first * top,
                           .lp_top_lp = top_lp + first * top };
    FUZZ_CHECK(infer_oai_logprobs_add(l, &ev) == 0, "add failed");

    memset(&c, 0, sizeof(c));
    c.text = "";
    c.text_len = 0;
    c.finish = NULL;
    c.logprobs = l;
    last = 0;
    s = infer_oai_chunk(&rsp, 0, &c, 0, 0, &got);
    FUZZ_CHECK(s != NULL, "no logprobs chunk");
    j = fuzz_lp_json(s, got, 1);
    FUZZ_CHECK(j != NULL, "logprobs chunk is not JSON: %s", s);
    lpj = json_object_get(json_array_get(json_object_get(j, "choices"), 0),
                          "logprobs");
    got = fuzz_check_lp_json(lpj, kind, tok, ids, echo ? 0 : n_prompt, top,
                             &last);
    FUZZ_CHECK(got == (size_t) (n_prompt + 1 - (echo ? 0 : n_prompt)),
               "chunk carries %zu entries", got);
    json_decref(j);
    free(s);

    ev.lp_first = n_prompt + 1;
    ev.n_lp = (int) n - n_prompt - 1;
    ev.lp_ids = ids + n_prompt + 1;
    ev.lp = lp + n_prompt + 1;
    ev.lp_top_ids = top_ids + (n_prompt + 1) * top;
    ev.lp_top_lp = top_lp + (n_prompt + 1) * top;
    FUZZ_CHECK(infer_oai_logprobs_add(l, &ev) == 0, "add failed");
    c.finish = "stop";
    s = infer_oai_completion_body(&rsp, &c, 1, 1, 1, &got);
    FUZZ_CHECK(s != NULL, "no logprobs body");
    j = fuzz_lp_json(s, got, 0);
    FUZZ_CHECK(j != NULL, "logprobs body is not JSON: %s", s);
    lpj = json_object_get(json_array_get(json_object_get(j, "choices"), 0),
                          "logprobs");
    got = fuzz_check_lp_json(lpj, kind, tok, ids, n_prompt + 1, top, &last);
    FUZZ_CHECK(got == n - n_prompt - 1, "body carries %zu entries of %zu",
               got, n - n_prompt - 1);
    json_decref(j);
    free(s);
    infer_oai_logprobs_free(l);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  kind;

    /* one shape, tokenizer and echo an input, few ids and alternatives:
     * JSON for all of them would be most of a run's time */
    fuzz_check_logprobs(data, size, size % 2 ? INFER_OAI_CHAT
                                             : INFER_OAI_COMPLETION,
                        size % 4 == 0, size % (FUZZ_MAX_TOP + 1),
                        fuzz_tok[size / 2 % FUZZ_N_TOK]);

    for (kind = INFER_OAI_COMPLETION; kind <= INFER_OAI_CHAT; kind++) {
        if (infer_oai_parse_request((const char *) data, size, kind,
                                    FUZZ_MAX_N, &req, &err) != 0)
        {
            fuzz_check_error(&err);
            continue;
        }
        FUZZ_CHECK(req.kind == (infer_oai_kind_t) kind, "kind changed");
        fuzz_check_request(&req);
        infer_oai_request_free(&req);
    }

    /* tokenize and detokenize bodies */
    for (kind = 0; kind < 2; kind++) {
        if (infer_oai_parse_tokenize((const char *) data, size, kind, &req,
                                     &err) != 0)
        {
            fuzz_check_error(&err);
            continue;
        }
        FUZZ_CHECK(kind == 0 || req.n_prompt_ids == 0
                   || req.prompt_ids != NULL, "tokens without ids");
        FUZZ_CHECK(kind == 1 || (req.prompt != NULL)
                   != (req.messages != NULL),
                   "tokenize needs one of prompt and messages");
        if (req.messages != NULL) {
            fuzz_check_chat(&req);
        }
        infer_oai_request_free(&req);
    }
    return 0;
}
