/*
 * OpenAI-compatible JSON codec: request bodies of /v1/completions and
 * /v1/chat/completions in, response bodies and SSE chunks out.  Pure
 * functions over jansson, no nginx types, so they are unit-tested alone.
 */
#ifndef INFER_OPENAI_H
#define INFER_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "infer.h"

#define INFER_OAI_MAX_STOP  4

typedef enum {
    INFER_OAI_COMPLETION = 0,
    INFER_OAI_CHAT
} infer_oai_kind_t;

typedef struct {
    infer_oai_kind_t       kind;
    char                  *model;
    char                  *prompt;         /* text prompt, or NULL */
    size_t                 prompt_len;
    int32_t               *prompt_ids;     /* token-id prompt, or NULL */
    int                    n_prompt_ids;
    infer_chat_message_t  *messages;       /* chat only */
    int                    n_messages;
    int                    max_tokens;     /* 0: not given */
    double                 temperature;    /* default 1 */
    double                 top_p;          /* default 1 */
    int                    top_k;          /* 0: off */
    uint64_t               seed;
    int                    has_seed;
    char                  *stop[INFER_OAI_MAX_STOP];
    int                    n_stop;
    int                    stream;
    int                    include_usage;
} infer_oai_request_t;

/* An OpenAI error: HTTP status and the fields of {"error":{...}}. */
typedef struct {
    int          status;
    char         message[512];
    const char  *type;
    const char  *param;         /* NULL: null */
    const char  *code;          /* NULL: null */
} infer_oai_error_t;

/* Parses and validates a request body; on failure fills err (status 400)
 * and leaves nothing to free.  Unknown fields are ignored. */
int infer_oai_parse_request(const char *body, size_t len,
    infer_oai_kind_t kind, infer_oai_request_t *req, infer_oai_error_t *err);
void infer_oai_request_free(infer_oai_request_t *req);

/* Fills err; message is printf-style. */
void infer_oai_set_error(infer_oai_error_t *err, int status,
    const char *type, const char *param, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Identity shared by every piece of one response. */
typedef struct {
    infer_oai_kind_t   kind;
    const char        *id;          /* "cmpl-..." / "chatcmpl-..." */
    int64_t            created;     /* unix seconds */
    const char        *model;
} infer_oai_response_t;

/* Every builder returns a malloc'd string (length in *len) or NULL when out
 * of memory. */

/* {"error":{"message","type","param","code"}} */
char *infer_oai_error_body(const infer_oai_error_t *err, size_t *len);

/* Whole non-streaming response with usage. */
char *infer_oai_completion_body(const infer_oai_response_t *rsp,
    const char *text, size_t text_len, const char *finish,
    int prompt_tokens, int completion_tokens, size_t *len);

/* One SSE event "data: {...}\n\n" carrying text (or the chat role when
 * role is set), finish reason or null, and "usage":null when usage_null. */
char *infer_oai_chunk(const infer_oai_response_t *rsp, const char *text,
    size_t text_len, int role, const char *finish, int usage_null,
    size_t *len);

/* The final usage event of stream_options.include_usage. */
char *infer_oai_usage_chunk(const infer_oai_response_t *rsp,
    int prompt_tokens, int completion_tokens, size_t *len);

/* An error as an SSE event, for failures after the stream has begun. */
char *infer_oai_error_chunk(const infer_oai_error_t *err, size_t *len);

/* GET /v1/models: each model with the unix time it was loaded. */
char *infer_oai_models_body(const char *const *names, const int64_t *created,
    int n, size_t *len);

/* infer_stats: one engine snapshot per model of this worker. */
char *infer_stats_body(const char *const *names, const infer_stats_t *st,
    int n, long pid, size_t *len);

/* infer_health: {"status":"ok"}, or with model set {"status":
 * "unavailable","model","reason"} for the first model that cannot serve. */
char *infer_health_body(const char *model, const char *reason, size_t *len);

/* "stop" / "length" for an engine finish reason (infer_finish_t). */
const char *infer_oai_finish_reason(int finish);

#endif
