/*
 * The OpenAI request parser on any bytes, as both /v1/completions and
 * /v1/chat/completions bodies.  A rejected body must still give the client
 * a JSON error (the module has no other way to answer 400); an accepted
 * one must hold what the engine relies on, and every response piece built
 * from its fields must be JSON that gives the text back unchanged.
 */
#include "fuzz.h"
#include "openai.h"

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
    json_t                *j;
    char                  *s;
    size_t                 len;
    int                    chat = req->kind == INFER_OAI_CHAT;

    rsp.kind = req->kind;
    rsp.id = chat ? "chatcmpl-fuzz" : "cmpl-fuzz";
    rsp.created = 1700000000;
    rsp.model = req->model;

    s = infer_oai_completion_body(&rsp, text, tlen, "stop", 3, 5, &len);
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

    s = infer_oai_chunk(&rsp, text, tlen, 0, NULL, req->include_usage,
                        &len);
    FUZZ_CHECK(s != NULL, "no chunk");
    j = fuzz_sse_json(s, len);
    FUZZ_CHECK(j != NULL, "chunk is not JSON: %s", s);
    fuzz_check_text(j, chat ? "delta" : "text", chat ? "content" : NULL,
                    text, tlen);
    json_decref(j);
    free(s);

    s = infer_oai_chunk(&rsp, text, tlen, 1, NULL, 0, &len);
    FUZZ_CHECK(s != NULL, "no role chunk");
    j = fuzz_sse_json(s, len);
    FUZZ_CHECK(j != NULL, "role chunk is not JSON: %s", s);
    json_decref(j);
    free(s);

    s = infer_oai_chunk(&rsp, NULL, 0, 0, "length", 1, &len);
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
static void
fuzz_check_request(const infer_oai_request_t *req)
{
    int  i;

    FUZZ_CHECK(req->model != NULL, "no model");
    FUZZ_CHECK(req->max_tokens >= 0, "max_tokens %d", req->max_tokens);
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
        FUZZ_CHECK(req->n_messages > 0 && req->messages != NULL,
                   "chat without messages");
        for (i = 0; i < req->n_messages; i++) {
            FUZZ_CHECK(req->messages[i].role != NULL
                       && req->messages[i].role[0] != '\0'
                       && req->messages[i].content != NULL,
                       "messages[%d] has an empty role or no content", i);
            fuzz_check_response(req, req->messages[i].content,
                                strlen(req->messages[i].content));
        }
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  kind;

    for (kind = INFER_OAI_COMPLETION; kind <= INFER_OAI_CHAT; kind++) {
        if (infer_oai_parse_request((const char *) data, size, kind, &req,
                                    &err) != 0)
        {
            fuzz_check_error(&err);
            continue;
        }
        FUZZ_CHECK(req.kind == (infer_oai_kind_t) kind, "kind changed");
        fuzz_check_request(&req);
        infer_oai_request_free(&req);
    }
    return 0;
}
