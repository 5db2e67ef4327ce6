/*
 * OpenAI-compatible JSON codec: request bodies of /v1/completions and
 * /v1/chat/completions in, response bodies and SSE chunks out.  Pure
 * functions over jansson, no nginx types, so they are unit-tested alone.
 */
#ifndef INFER_OPENAI_H
#define INFER_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "infer.h"
#include "jinja.h"
#include "tokenizer.h"

#define INFER_OAI_MAX_STOP  4

typedef enum {
    INFER_OAI_COMPLETION = 0,
    INFER_OAI_CHAT
} infer_oai_kind_t;

/* tool_choice */
typedef enum {
    INFER_OAI_TOOLS_AUTO = 0,
    INFER_OAI_TOOLS_NONE,
    INFER_OAI_TOOLS_REQUIRED,
    INFER_OAI_TOOLS_NAMED           /* {"type":"function","function":
                                       {"name": tool_name}} */
} infer_oai_tool_choice_t;

typedef struct {
    infer_oai_kind_t       kind;
    char                  *model;
    char                  *prompt;         /* text prompt, or NULL */
    size_t                 prompt_len;
    int32_t               *prompt_ids;     /* token-id prompt, or NULL */
    int                    n_prompt_ids;
    /* chat only: what the chat template is given */
    json_t                *messages;       /* objects with a string role,
                                              content a string or null,
                                              tool_calls' arguments
                                              objects where they parse */
    json_t                *tools;          /* array, or NULL */
    json_t                *documents;      /* array, or NULL */
    json_t                *template_kwargs;   /* chat_template_kwargs,
                                                 or NULL */
    int                    add_generation_prompt;   /* default 1 */
    int                    continue_final_message;
    infer_oai_tool_choice_t  tool_choice;
    char                  *tool_name;      /* INFER_OAI_TOOLS_NAMED */
    /* /tokenize only */
    int                    add_special;    /* add_special_tokens */
    int                    token_strs;     /* return_token_strs */
    int                    max_tokens;     /* when has_max_tokens: 0 (a
                                              completion that only scores
                                              its prompt) or more */
    int                    has_max_tokens;
    int                    min_tokens;
    double                 temperature;    /* default 1 */
    double                 top_p;          /* default 1 */
    int                    top_k;          /* 0: off */
    uint64_t               seed;
    int                    has_seed;
    int                    priority;       /* lower first (vLLM's); 0 */
    double                 presence_penalty;    /* [-2, 2], default 0 */
    double                 frequency_penalty;   /* [-2, 2], default 0 */
    double                 repetition_penalty;  /* > 0, default 1 (off) */
    int                    skip_special;   /* skip_special_tokens, default
                                              1: special tokens make no
                                              text */
    int32_t               *bias_ids;       /* logit_bias: ids (not checked
                                              against a vocabulary yet) */
    float                 *bias;           /* and their biases */
    int                    n_bias;
    char                  *stop[INFER_OAI_MAX_STOP];
    int                    n_stop;
    int                    n;              /* choices, 1 .. max_n */
    int                    echo;           /* completions: the prompt
                                              first in the text */
    int                    logprobs;       /* of each token of the text */
    int                    top_logprobs;   /* alternatives with each,
                                              0 .. INFER_MAX_TOP_LOGPROBS */
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
 * and leaves nothing to free.  Unknown fields are ignored; a known one that
 * asks for what the server does not do (a JSON response format, best_of
 * above n, ...) is refused, naming it.  max_n bounds n. */
int infer_oai_parse_request(const char *body, size_t len,
    infer_oai_kind_t kind, int max_n, infer_oai_request_t *req,
    infer_oai_error_t *err);
void infer_oai_request_free(infer_oai_request_t *req);

/*
 * POST .../tokenize and .../detokenize as vLLM serves them.  tokenize:
 * {"model", "prompt", "add_special_tokens" (default true),
 * "return_token_strs"} (kind COMPLETION), or {"model", "messages",
 * "add_generation_prompt", "continue_final_message", "tools",
 * "chat_template_kwargs", "add_special_tokens" (default false),
 * "return_token_strs"} (kind CHAT: prompt what a chat request renders).
 * detokenize: {"model", "tokens": [ids]} (prompt_ids, maybe none).  The
 * model may be left out (req->model NULL).  On failure a 400 in err.
 */
int infer_oai_parse_tokenize(const char *body, size_t len, int detokenize,
    infer_oai_request_t *req, infer_oai_error_t *err);
/* {"count", "max_model_len", "tokens", "token_strs"} (token_strs null
 * unless asked for: each id's vocabulary string). */
char *infer_oai_tokenize_body(const infer_tokenizer_t *tok,
    const int32_t *ids, int n, int max_model_len, int token_strs,
    size_t *len);
/* {"prompt"}: the ids decoded as the tokenizer's decode() does without
 * skipping special tokens (they are their vocabulary strings). */
char *infer_oai_detokenize_body(const infer_tokenizer_t *tok,
    const int32_t *ids, int n, size_t *len);

/* Fills err; message is printf-style. */
void infer_oai_set_error(infer_oai_error_t *err, int status,
    const char *type, const char *param, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/*
 * The template of a model whose tokenizer_config.json has none (where
 * transformers would refuse to render a chat):
 * "<bos>role: content\n...assistant:".
 */
extern const char  infer_oai_default_template[];

/*
 * The prompt text of a chat request: its messages, tools, documents,
 * add_generation_prompt and continue_final_message rendered by template t
 * as apply_chat_template(tokenize=False) renders them, with the model's
 * special tokens (special: an object such as {"bos_token": "<s>",
 * "eos_token": "</s>"}, or NULL) and the request's chat_template_kwargs
 * over them.  The text holds special tokens as text: it is encoded
 * without adding any.  A template that refuses the chat (its
 * raise_exception, an undefined member, a limit) is a 400 on messages with
 * the template's error; when one message alone makes the difference, the
 * error names it.  Returns malloc'd text, its length in *len.
 */
char *infer_oai_chat_prompt(const infer_jinja_tmpl_t *t,
    const infer_oai_request_t *req, json_t *special, size_t *len,
    infer_oai_error_t *err);

/*
 * Whether a template can serve chats, for configuration time: it must
 * render a one-line user chat, with or without a tool offered (some
 * templates are for chats with tools only).  -1 with err (the first
 * failure: line and column in the template) when neither renders.
 */
int infer_oai_template_check(const infer_jinja_tmpl_t *t, json_t *special,
    infer_jinja_error_t *err);

/*
 * Tokens that end an assistant turn in a template's format, found in its
 * text (<|im_end|>, <|eot_id|>, <|eom_id|>, <|end|>, <end_of_turn>, ...)
 * and in the vocabulary: the chat's stop tokens beside eos.  Writes up to
 * max ids, returns how many.
 */
int infer_oai_template_stops(const char *src, const infer_tokenizer_t *tok,
    int32_t *ids, int max);

/* Identity shared by every piece of one response. */
typedef struct {
    infer_oai_kind_t   kind;
    const char        *id;          /* "cmpl-..." / "chatcmpl-..." */
    int64_t            created;     /* unix seconds */
    const char        *model;
    int                cached_tokens;   /* prompt tokens from the prefix
                                           cache: usage's
                                           prompt_tokens_details, when
                                           not 0 */
} infer_oai_response_t;

/* Every builder returns a malloc'd string (length in *len) or NULL when out
 * of memory. */

/* {"error":{"message","type","param","code"}} */
char *infer_oai_error_body(const infer_oai_error_t *err, size_t *len);

/*
 * The logprobs of one choice in the response shape of its kind: for
 * completions OpenAI's legacy object (tokens, token_logprobs, top_logprobs
 * with the chosen token among the alternatives, text_offset in characters
 * of the choice's text), for chat {"content":[{token, logprob, bytes,
 * top_logprobs}]}.  Entries come from engine events in sequence order; each
 * builder below takes the entries gathered since the previous one, so a
 * stream sends every token once.  Token strings are what a token decodes
 * to on its own; bytes that are not UTF-8 are written \xNN after a
 * "bytes:" prefix (the raw bytes are in "bytes"), special tokens are their
 * vocabulary string with "bytes" null.
 */
typedef struct infer_oai_logprobs_s  infer_oai_logprobs_t;

/* prompt: the sequence's first tokens; echo: the prompt's tokens come
 * first (the first without a logprob: nothing predicts it) and its text
 * of echo_chars characters begins the choice's text. */
infer_oai_logprobs_t *infer_oai_logprobs_create(infer_oai_kind_t kind,
    const infer_tokenizer_t *tok, const int32_t *prompt, int n_prompt,
    int echo, size_t echo_chars);
void infer_oai_logprobs_free(infer_oai_logprobs_t *l);
/* Adds an event's logprobs (lp_first, n_lp, lp_top and their arrays).
 * -1 when out of memory. */
int infer_oai_logprobs_add(infer_oai_logprobs_t *l, const infer_event_t *ev);
/* Entries gathered and not yet taken by a builder. */
int infer_oai_logprobs_pending(const infer_oai_logprobs_t *l);

/* The text a token-id prompt decodes to (what echo shows of it), and its
 * length in characters; malloc'd. */
char *infer_oai_decode(const infer_tokenizer_t *tok, const int32_t *ids,
    int n, size_t *len);
/* Unicode characters in UTF-8 text. */
size_t infer_oai_chars(const char *s, size_t len);

/* One choice of a response, or of a stream chunk. */
typedef struct {
    const char            *text;       /* NULL: "" */
    size_t                 text_len;
    const char            *finish;     /* "stop"/"length"/"tool_calls";
                                          NULL: null */
    infer_oai_logprobs_t  *logprobs;   /* NULL: "logprobs": null */
    json_t                *tool_calls; /* chat: the message's tool_calls
                                          (infer_tool_parse), its content
                                          null when there is no text; in
                                          a chunk, the delta (see
                                          infer_oai_tool_deltas) */
} infer_oai_choice_t;

/* Whole non-streaming response with its n choices and usage. */
char *infer_oai_completion_body(const infer_oai_response_t *rsp,
    const infer_oai_choice_t *choices, int n, int prompt_tokens,
    int completion_tokens, size_t *len);

/* One SSE event "data: {...}\n\n" for choice index: its text (or the chat
 * role when role is set), logprobs, finish reason or null, and
 * "usage":null when usage_null.  A chunk's logprobs are null when it
 * carries none. */
char *infer_oai_chunk(const infer_oai_response_t *rsp, int index,
    const infer_oai_choice_t *choice, int role, int usage_null, size_t *len);

/*
 * The stream deltas of tool calls as OpenAI sends them, two per call: its
 * index, id, type and name with empty arguments, then the arguments.  An
 * array of {"tool_calls": [...]} objects for infer_oai_chunk's
 * tool_calls, or NULL when out of memory.
 */
json_t *infer_oai_tool_deltas(json_t *calls);

/* The final usage event of stream_options.include_usage. */
char *infer_oai_usage_chunk(const infer_oai_response_t *rsp,
    int prompt_tokens, int completion_tokens, size_t *len);

/* An error as an SSE event, for failures after the stream has begun. */
char *infer_oai_error_chunk(const infer_oai_error_t *err, size_t *len);

/* GET /v1/models: each model with the unix time it was loaded. */
char *infer_oai_models_body(const char *const *names, const int64_t *created,
    int n, size_t *len);
/* GET /v1/models/{id}: one model. */
char *infer_oai_model_body(const char *name, int64_t created, size_t *len);

/* infer_stats: one engine snapshot per model of this worker. */
char *infer_stats_body(const char *const *names, const infer_stats_t *st,
    int n, long pid, size_t *len);

/* infer_health: {"status":"ok"}, or with model set {"status":
 * "unavailable","model","reason"} for the first model that cannot serve. */
char *infer_health_body(const char *model, const char *reason, size_t *len);

/* "stop" / "length" for an engine finish reason (infer_finish_t). */
const char *infer_oai_finish_reason(int finish);

#endif
