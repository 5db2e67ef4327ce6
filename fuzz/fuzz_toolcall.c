/*
 * The tool-call parser on model output from the fuzz data: the first byte
 * picks the format (hermes, llama3_json, mistral), the rest is the text.
 *
 * Properties: nothing crashes or leaks; calls, when found, each have an
 * id, type "function", a non-empty name and arguments that are a string;
 * the content before them lies within the text; and no prefix of the
 * text lets a stream send as content more than that (what a stream sends
 * before it knows is never part of a call).
 */
#include "fuzz.h"
#include "toolcall.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t             i, k, clen, len, safe;
    json_t            *calls, *c, *fn, *id, *name, *args;
    const char        *text;
    infer_tool_fmt_t   f;

    if (size == 0) {
        return 0;
    }
    f = (infer_tool_fmt_t) (1 + data[0] % 3);
    text = (const char *) data + 1;
    len = size - 1;

    calls = infer_tool_parse(f, text, len, size, &clen);
    FUZZ_CHECK(clen <= len, "content %zu of %zu bytes", clen, len);
    FUZZ_CHECK(calls == NULL || json_array_size(calls) > 0,
               "an empty list of calls");
    FUZZ_SAY("%s: %zu calls, %zu bytes of content", infer_tool_fmt_name(f),
             calls ? json_array_size(calls) : 0, clen);

    json_array_foreach(calls, i, c) {
        fn = json_object_get(c, "function");
        id = json_object_get(c, "id");
        name = json_object_get(fn, "name");
        args = json_object_get(fn, "arguments");
        FUZZ_CHECK(json_is_string(id) && json_string_length(id) > 0
                   && json_is_string(json_object_get(c, "type"))
                   && json_is_string(name) && json_string_length(name) > 0
                   && json_is_string(args),
                   "call %zu is not {id, type, function: {name, "
                   "arguments}}", i);
    }

    for (k = 0; k <= len; k++) {
        safe = infer_tool_stream_safe(f, text, k);
        FUZZ_CHECK(safe <= k, "%zu safe bytes of %zu", safe, k);
        FUZZ_CHECK(calls == NULL || safe <= clen,
                   "a stream would send %zu bytes of %zu as content, the "
                   "calls begin at %zu", safe, k, clen);
    }
    json_decref(calls);
    return 0;
}
