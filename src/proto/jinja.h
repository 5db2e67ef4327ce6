/*
 * A Jinja interpreter for chat templates: the subset of Jinja2 that the
 * chat_template of published models uses, rendering as Hugging Face's
 * apply_chat_template renders it (jinja2's ImmutableSandboxedEnvironment
 * with trim_blocks and lstrip_blocks, loop controls and the generation
 * tag, transformers' tojson, raise_exception, strftime_now and
 * namespace), byte for byte.
 *
 * A template is parsed once (infer_jinja_parse) into a read-only tree that
 * any number of threads may render at once.  A render takes its variables
 * as JSON (jansson), so a front end passes a request's messages and tools
 * as they came, and does all its work in one arena of its own, malloc'd for
 * the render and freed before it returns: memory, time (a step budget),
 * nesting and output are bounded whatever the template or the input.
 *
 * Pure C, no nginx types.
 */
#ifndef INFER_JINJA_H
#define INFER_JINJA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

/*
 * The defaults of infer_jinja_limits_t; each can be raised or lowered.  A
 * published template renders a chat in well under 10,000 steps and 1 MiB;
 * the budget lets a large prompt be read and copied dozens of times and
 * stops a template that loops without end within seconds.
 */
#define INFER_JINJA_MEMORY      (128u << 20)    /* arena bytes per render */
#define INFER_JINJA_OUTPUT      (64u << 20)     /* bytes of rendered text */
#define INFER_JINJA_STEPS       50000000ull     /* evaluation steps */
#define INFER_JINJA_TEMPLATE    (1u << 20)      /* bytes of template text */

typedef struct infer_jinja_tmpl_s  infer_jinja_tmpl_t;

/*
 * What went wrong.  type is the class of the error as jinja2 or Python
 * names it ("TemplateSyntaxError" for a template that does not parse,
 * "TemplateError" for raise_exception, "UndefinedError", "TypeError",
 * "SecurityError", "ValueError", ...) or "LimitError" when a render ran
 * past a limit; message is the exception's text, so that "type: message"
 * reads as transformers reports it.  line and column (1-based, 0 when not
 * known) say where in the template.
 */
typedef struct {
    char    type[32];
    char    message[480];
    int     line;
    int     column;
} infer_jinja_error_t;

/* Bounds of one render; a zero field takes its default. */
typedef struct {
    size_t            memory;   /* bytes the render's arena may hold */
    size_t            output;   /* bytes of output (and of any capture) */
    uint64_t          steps;    /* evaluation steps, about one per node
                                   and per 8 bytes a string operation
                                   reads or writes */
    const struct tm  *now;      /* what strftime_now() reads (local time);
                                   NULL: the machine's clock */
} infer_jinja_limits_t;

/*
 * Parses a template of len bytes (UTF-8; at most INFER_JINJA_TEMPLATE).
 * NULL on error, with err saying why and where.  The result is immutable;
 * free it with infer_jinja_free.
 */
infer_jinja_tmpl_t *infer_jinja_parse(const char *src, size_t len,
    infer_jinja_error_t *err);
void infer_jinja_free(infer_jinja_tmpl_t *t);

/*
 * Renders with the members of the JSON object vars as the template's
 * variables (strings, numbers, booleans, null, arrays and objects in their
 * order).  Returns the text, malloc'd and NUL-terminated (its length in
 * *len; it may hold NUL bytes if the input did), or NULL with err set.
 * lim may be NULL for the defaults.
 */
char *infer_jinja_render(const infer_jinja_tmpl_t *t, json_t *vars,
    const infer_jinja_limits_t *lim, size_t *len, infer_jinja_error_t *err);

/*
 * A conversation as apply_chat_template takes it.  messages is an array of
 * objects; tools and documents arrays or NULL; extra an object of further
 * variables or NULL: the tokenizer's special tokens (bos_token, eos_token,
 * ...) and what the request adds (chat_template_kwargs such as
 * enable_thinking); a member of extra overrides an earlier one of the same
 * name, as kwargs override special tokens in transformers.
 */
typedef struct {
    json_t     *messages;
    json_t     *tools;
    json_t     *documents;
    json_t     *extra;
    int         add_generation_prompt;
    int         continue_final_message;    /* the last message is a prefix
                                              the model continues */
} infer_jinja_chat_t;

/*
 * apply_chat_template(messages, tools=, documents=,
 * add_generation_prompt=, continue_final_message=, tokenize=False,
 * **extra): the messages as transformers prepares them (keys whose value
 * is null dropped, reasoning_content, thinking and reasoning aliased to
 * each other), the template rendered, and for continue_final_message the
 * text cut where the final message ends.  The errors transformers raises
 * itself (an empty conversation, continue_final_message with
 * add_generation_prompt, ...) come with type "ValueError" or "TypeError"
 * and its message; the input is never modified.
 */
char *infer_jinja_render_chat(const infer_jinja_tmpl_t *t,
    const infer_jinja_chat_t *chat, const infer_jinja_limits_t *lim,
    size_t *len, infer_jinja_error_t *err);

/* "type: message", as Python prints the exception (for logs and 400s). */
const char *infer_jinja_strerror(const infer_jinja_error_t *err, char *buf,
    size_t size);

#endif
