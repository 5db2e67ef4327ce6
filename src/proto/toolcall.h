/*
 * Tool calls in a model's output, in the formats the chat templates of the
 * families we load prompt for, parsed into OpenAI's tool_calls as vLLM's
 * tool parsers of the same names do:
 *
 *     hermes       <tool_call>{"name": ..., "arguments": {...}}</tool_call>
 *                  (Hermes, Qwen2.5, Qwen3), one or more, after content
 *     llama3_json  {"name": ..., "parameters": {...}} (Llama-3.1/3.2), the
 *                  whole output, several separated by ";"
 *     mistral      [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] or
 *                  [TOOL_CALLS]name[ARGS]{...}, after content (the
 *                  marker is a special token: the engine keeps special
 *                  tokens' text for this parser); without the marker an
 *                  output that is a JSON array of calls
 *
 * An output that does not parse is content, never an error.  Pure C over
 * jansson, no nginx types.
 */
#ifndef INFER_TOOLCALL_H
#define INFER_TOOLCALL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum {
    INFER_TOOL_FMT_NONE = 0,        /* the output is content */
    INFER_TOOL_FMT_HERMES,
    INFER_TOOL_FMT_LLAMA3_JSON,
    INFER_TOOL_FMT_MISTRAL
} infer_tool_fmt_t;

/* "none", "hermes", "llama3_json", "mistral" -> format; -1 if unknown. */
int infer_tool_fmt_parse(const char *name, size_t len);
const char *infer_tool_fmt_name(infer_tool_fmt_t f);

/* The format a chat template prompts for, from its text (<tool_call>,
 * [TOOL_CALLS], Llama-3's "parameters" JSON); NONE when it names none. */
infer_tool_fmt_t infer_tool_fmt_detect(const char *tmpl);

/*
 * The tool calls of a whole output: an array of {"id", "type":
 * "function", "function": {"name", "arguments"}} with arguments a JSON
 * string, or NULL when the output holds none in format f, or one that
 * does not parse (then it is all content).  With calls, *content_len is
 * how many bytes of text before them are content.  Ids are "call_" and 24
 * hex digits (Mistral's: 9 letters and digits, as its templates require)
 * drawn from seed.
 */
json_t *infer_tool_parse(infer_tool_fmt_t f, const char *text, size_t len,
    uint64_t seed, size_t *content_len);

/*
 * Streaming: of the len bytes of output so far, how many are content
 * for certain (a call cannot begin before them), so that a stream sends
 * them and holds the rest until it ends.
 */
size_t infer_tool_stream_safe(infer_tool_fmt_t f, const char *text,
    size_t len);

#endif
