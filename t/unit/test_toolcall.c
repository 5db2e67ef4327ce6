/*
 * Tool calls parsed from model output (src/proto/toolcall.c).  The formats
 * are those the published chat templates prompt for (../shared/
 * chat_templates: Qwen2.5's <tool_call> JSON, Llama-3.1's "parameters"
 * JSON, Mistral Nemo's [TOOL_CALLS] list) and vLLM's hermes, llama3_json
 * and mistral parsers read; arguments are expected as Python's
 * json.dumps(arguments, ensure_ascii=False) writes them, which is what
 * vLLM returns.
 */
#include <jansson.h>

#include "tap.h"
#include "toolcall.h"

static json_t *
calls_of(infer_tool_fmt_t f, const char *text, size_t *content)
{
    return infer_tool_parse(f, text, strlen(text), 7, content);
}

static const char *
call_field(json_t *calls, size_t i, const char *k)
{
    json_t  *c = json_array_get(calls, i);

    if (strcmp(k, "id") == 0 || strcmp(k, "type") == 0) {
        return json_string_value(json_object_get(c, k));
    }
    return json_string_value(json_object_get(json_object_get(c, "function"),
                                             k));
}

/* One call named name with arguments args, after content bytes. */
static void
one_call(infer_tool_fmt_t f, const char *text, const char *name,
    const char *args, size_t content, const char *what)
{
    size_t   clen;
    json_t  *calls;

    calls = calls_of(f, text, &clen);
    ok(calls != NULL && json_array_size(calls) == 1, "%s: one call", what);
    is_str(call_field(calls, 0, "name"), name, "%s: its name", what);
    is_str(call_field(calls, 0, "arguments"), args, "%s: its arguments",
           what);
    is_str(call_field(calls, 0, "type"), "function", "%s: type", what);
    is_int(clen, content, "%s: content before it", what);
    json_decref(calls);
}

static void
no_call(infer_tool_fmt_t f, const char *text, const char *what)
{
    size_t   clen;
    json_t  *calls;

    calls = calls_of(f, text, &clen);
    ok(calls == NULL && clen == strlen(text), "%s: all content", what);
    json_decref(calls);
}

static void
test_hermes(void)
{
    size_t      clen;
    json_t     *calls;
    const char *id;

    one_call(INFER_TOOL_FMT_HERMES,
             "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
             "{\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
             "get_weather", "{\"city\": \"Paris\", \"unit\": \"celsius\"}",
             0, "hermes");
    one_call(INFER_TOOL_FMT_HERMES,
             "Let me look.\n<tool_call>\n{\"name\":\"get_weather\","
             "\"arguments\":{\"city\":\"Z\xc3\xbcrich\",\"days\":[1,2],"
             "\"x\":1.5}}\n</tool_call>\n",
             "get_weather",
             "{\"city\": \"Z\xc3\xbcrich\", \"days\": [1, 2], \"x\": 1.5}",
             13, "hermes after content, UTF-8 and numbers as json.dumps");
    one_call(INFER_TOOL_FMT_HERMES,
             "<tool_call>\n{\"name\": \"now\"}\n",
             "now", "{}", 0, "hermes: a call left open, no arguments");

    calls = calls_of(INFER_TOOL_FMT_HERMES,
                     "<tool_call>{\"name\": \"a\", \"arguments\": {}}"
                     "</tool_call>\n<tool_call>{\"name\": \"b\", "
                     "\"arguments\": {\"q\": null}}</tool_call>", &clen);
    ok(calls != NULL && json_array_size(calls) == 2
       && strcmp(call_field(calls, 1, "name"), "b") == 0
       && strcmp(call_field(calls, 1, "arguments"), "{\"q\": null}") == 0,
       "hermes: two calls");
    id = call_field(calls, 0, "id");
    ok(id != NULL && strncmp(id, "call_", 5) == 0 && strlen(id) == 29
       && strcmp(id, call_field(calls, 1, "id")) != 0,
       "ids call_ and 24 hex digits, one per call: %s", id ? id : "");
    json_decref(calls);

    no_call(INFER_TOOL_FMT_HERMES, "Paris is sunny today.", "no marker");
    no_call(INFER_TOOL_FMT_HERMES,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
            "{\"city\": \"Par\n</tool_call>", "truncated JSON");
    no_call(INFER_TOOL_FMT_HERMES,
            "<tool_call>\n[\"get_weather\"]\n</tool_call>", "not an object");
    no_call(INFER_TOOL_FMT_HERMES,
            "<tool_call>{\"name\": \"a\"} trailing</tool_call>",
            "text after the JSON");
    no_call(INFER_TOOL_FMT_HERMES,
            "<tool_call>{\"name\": \"a\"}</tool_call><tool_call>oops",
            "one of two does not parse");
    no_call(INFER_TOOL_FMT_HERMES,
            "<tool_call>{\"arguments\": {}}</tool_call>", "no name");
}

static void
test_llama3(void)
{
    size_t   clen;
    json_t  *calls;

    one_call(INFER_TOOL_FMT_LLAMA3_JSON,
             "{\"name\": \"get_weather\", \"parameters\": {\"city\": "
             "\"Paris\"}}", "get_weather", "{\"city\": \"Paris\"}", 0,
             "llama3_json");
    one_call(INFER_TOOL_FMT_LLAMA3_JSON,
             "<|python_tag|>{\"name\": \"f\", \"arguments\": {\"a\": "
             "true}}", "f", "{\"a\": true}", 0,
             "llama3_json after <|python_tag|>, arguments spelt so");
    calls = calls_of(INFER_TOOL_FMT_LLAMA3_JSON,
                     " {\"name\": \"a\", \"parameters\": {}}; {\"name\": "
                     "\"b\", \"parameters\": {\"n\": 2}}\n", &clen);
    ok(calls != NULL && json_array_size(calls) == 2 && clen == 0
       && strcmp(call_field(calls, 1, "arguments"), "{\"n\": 2}") == 0,
       "llama3_json: two calls separated by ;");
    json_decref(calls);

    no_call(INFER_TOOL_FMT_LLAMA3_JSON, "The weather is {\"sunny\"}",
            "text first");
    no_call(INFER_TOOL_FMT_LLAMA3_JSON,
            "{\"name\": \"a\", \"parameters\": {}} and more",
            "text after the call");
    no_call(INFER_TOOL_FMT_LLAMA3_JSON, "{\"city\": \"Paris\"}",
            "JSON without a name");
}

static void
test_mistral(void)
{
    size_t       clen, i;
    json_t      *calls;
    const char  *id;

    one_call(INFER_TOOL_FMT_MISTRAL,
             "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": "
             "{\"city\": \"Paris\"}}]", "get_weather",
             "{\"city\": \"Paris\"}", 0, "mistral");
    one_call(INFER_TOOL_FMT_MISTRAL,
             "[{\"name\": \"get_weather\", \"arguments\": {\"city\": "
             "\"Paris\"}}]", "get_weather", "{\"city\": \"Paris\"}", 0,
             "mistral whose special [TOOL_CALLS] was dropped");
    one_call(INFER_TOOL_FMT_MISTRAL,
             "Sure. [TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}",
             "get_weather", "{\"city\": \"Paris\"}", 6,
             "mistral's name[ARGS] form after content");

    calls = calls_of(INFER_TOOL_FMT_MISTRAL,
                     "[TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]b[ARGS]{\"x\": [1]}",
                     &clen);
    ok(calls != NULL && json_array_size(calls) == 2
       && strcmp(call_field(calls, 1, "arguments"), "{\"x\": [1]}") == 0,
       "mistral: two name[ARGS] calls");
    id = call_field(calls, 0, "id");
    ok(id != NULL && strlen(id) == 9, "Mistral ids: 9 characters (%s)",
       id ? id : "");
    for (i = 0; id != NULL && id[i] != '\0'; i++) {
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')
              || (id[i] >= '0' && id[i] <= '9')))
        {
            break;
        }
    }
    ok(id != NULL && id[i] == '\0', "letters and digits only");
    json_decref(calls);

    no_call(INFER_TOOL_FMT_MISTRAL, "[1, 2, 3] are numbers", "a list of text");
    no_call(INFER_TOOL_FMT_MISTRAL, "[TOOL_CALLS][{\"name\": ", "truncated");
    no_call(INFER_TOOL_FMT_MISTRAL, "[TOOL_CALLS]get_weather{}",
            "no [ARGS]");
    no_call(INFER_TOOL_FMT_NONE, "<tool_call>{\"name\": \"a\"}</tool_call>",
            "format none");
}

static void
test_ids(void)
{
    size_t       clen;
    json_t      *a, *b, *c;
    const char  *text = "<tool_call>{\"name\": \"a\"}</tool_call>";

    a = infer_tool_parse(INFER_TOOL_FMT_HERMES, text, strlen(text), 1, &clen);
    b = infer_tool_parse(INFER_TOOL_FMT_HERMES, text, strlen(text), 1, &clen);
    c = infer_tool_parse(INFER_TOOL_FMT_HERMES, text, strlen(text), 2, &clen);
    ok(a && b && c && strcmp(call_field(a, 0, "id"), call_field(b, 0, "id"))
       == 0 && strcmp(call_field(a, 0, "id"), call_field(c, 0, "id")) != 0,
       "ids: the same seed the same, another another");
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void
safe(infer_tool_fmt_t f, const char *text, size_t want, const char *what)
{
    is_int(infer_tool_stream_safe(f, text, strlen(text)), want, "%s", what);
}

static void
test_stream(void)
{
    safe(INFER_TOOL_FMT_HERMES, "Hello", 5, "hermes: text is content");
    safe(INFER_TOOL_FMT_HERMES, "Hello <tool", 6,
         "hermes: what may begin a marker is held");
    safe(INFER_TOOL_FMT_HERMES, "Hello <tool_call>{\"na", 6,
         "hermes: nothing from the marker on");
    safe(INFER_TOOL_FMT_HERMES, "a < b", 5, "hermes: a '<' then a space");
    safe(INFER_TOOL_FMT_LLAMA3_JSON, "  ", 0, "llama3_json: undecided");
    safe(INFER_TOOL_FMT_LLAMA3_JSON, " {\"name", 0,
         "llama3_json: a JSON start is held");
    safe(INFER_TOOL_FMT_LLAMA3_JSON, "Sure", 4, "llama3_json: text");
    safe(INFER_TOOL_FMT_MISTRAL, "[", 0, "mistral: a bracket is undecided");
    safe(INFER_TOOL_FMT_MISTRAL, "[{", 0, "mistral: a list of objects held");
    safe(INFER_TOOL_FMT_MISTRAL, "[1]", 3, "mistral: a list of numbers");
    safe(INFER_TOOL_FMT_MISTRAL, "Hi [TOOL", 3,
         "mistral: a marker's start held");
    safe(INFER_TOOL_FMT_NONE, "<tool_call>", 11, "none: all content");
}

/* The format each published template prompts for. */
static void
test_detect(void)
{
    static const struct {
        const char        *name;
        infer_tool_fmt_t   want;
    } t[] = {
        { "Qwen-Qwen2.5-7B-Instruct", INFER_TOOL_FMT_HERMES },
        { "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
          INFER_TOOL_FMT_HERMES },
        { "meta-llama-Llama-3.1-8B-Instruct", INFER_TOOL_FMT_LLAMA3_JSON },
        { "meta-llama-Llama-3.2-3B-Instruct", INFER_TOOL_FMT_LLAMA3_JSON },
        { "mistralai-Mistral-Nemo-Instruct-2407", INFER_TOOL_FMT_MISTRAL },
        { "google-gemma-2-2b-it", INFER_TOOL_FMT_NONE },
    };
    char    path[512], *src;
    size_t  i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(path, sizeof(path), "%s/chat_templates/%s.jinja",
                 shared_dir(), t[i].name);
        src = tap_read_file(path, NULL);
        is_str(infer_tool_fmt_name(infer_tool_fmt_detect(src)),
               infer_tool_fmt_name(t[i].want), "%s's template: %s",
               t[i].name, infer_tool_fmt_name(t[i].want));
        free(src);
    }
    is_int(infer_tool_fmt_parse("llama3_json", 11),
           INFER_TOOL_FMT_LLAMA3_JSON, "format name llama3_json");
    is_int(infer_tool_fmt_parse("pythonic", 8), -1, "an unknown name");
}

int
main(void)
{
    (void) skip_all;

    test_hermes();
    test_llama3();
    test_mistral();
    test_ids();
    test_stream();
    test_detect();
    return done_testing();
}
