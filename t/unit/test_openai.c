/*
 * OpenAI codec and chat templates.  Expected chat renders come from jinja2
 * 3.1 (PyPI) rendering the published templates the way Hugging Face's
 * apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, add_generation_prompt=True): Llama-2 from
 * meta-llama/Llama-2-7b-chat-hf, Llama-3 from
 * ../shared/tokenizers/llama3/tokenizer_config.json, ChatML as Qwen2 and
 * OpenHermes publish it.  Expected JSON shapes follow the OpenAI API
 * reference for completions, chat completions and their stream chunks.
 */
#include <jansson.h>
#include <math.h>

#include "tap.h"
#include "infer.h"
#include "openai.h"
#include "tokenizer.h"

static int
parse(const char *body, infer_oai_kind_t kind, infer_oai_request_t *req,
    infer_oai_error_t *err)
{
    return infer_oai_parse_request(body, strlen(body), kind, 8, req, err);
}

/* One choice without logprobs, for the builders. */
static const infer_oai_choice_t *
choice(const char *text, size_t len, const char *finish)
{
    static infer_oai_choice_t  c;

    c.text = text;
    c.text_len = len;
    c.finish = finish;
    c.logprobs = NULL;
    c.tool_calls = NULL;
    return &c;
}

/* A request that must fail with 400 on the given param. */
static void
bad(const char *body, infer_oai_kind_t kind, const char *param,
    const char *what)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  rc;

    rc = parse(body, kind, &req, &err);
    ok(rc == -1 && err.status == 400
       && strcmp(err.type, "invalid_request_error") == 0
       && ((param == NULL && err.param == NULL)
           || (param && err.param && strcmp(param, err.param) == 0)),
       "400 on %s: %s", what, rc ? err.message : "(accepted)");
    if (rc == 0) {
        infer_oai_request_free(&req);
    }
}

/*
 * Error bodies are JSON whatever the message quotes: bytes that are not
 * UTF-8, a character cut at the buffer's end, the repro body whose parse
 * error jansson cuts inside a character.  Each must encode, and each body
 * must parse back (jansson rejects strings that are not UTF-8).
 */
static void
check_error_encodes(const infer_oai_error_t *err, const char *what)
{
    char          *body;
    size_t         len;
    json_t        *back;
    json_error_t   jerr;

    body = infer_oai_error_body(err, &len);
    back = body ? json_loadb(body, len, 0, &jerr) : NULL;
    ok(back != NULL && json_is_string(json_object_get(
           json_object_get(back, "error"), "message")),
       "%s: the error body is valid JSON", what);
    json_decref(back);
    free(body);
}

static void
test_error_utf8(void)
{
    char               name[700], path[512], *body;
    size_t             i, len;
    infer_oai_error_t  err;
    infer_oai_request_t req;

    infer_oai_set_error(&err, 404, "invalid_request_error", NULL,
                        "unknown_url", "unknown route %s", "/v1/\xff\xfe");
    is_str(err.message, "unknown route /v1/\xEF\xBF\xBD\xEF\xBF\xBD",
           "each byte that is not UTF-8 becomes U+FFFD");
    check_error_encodes(&err, "URI with 0xff");

    /* "a" + 300 x "é" (600 bytes): the 511-byte cut falls inside one */
    name[0] = 'a';
    for (i = 0; i < 300; i++) {
        name[1 + 2 * i] = (char) 0xc3;
        name[2 + 2 * i] = (char) 0xa9;
    }
    name[601] = '\0';
    infer_oai_set_error(&err, 404, "invalid_request_error", "model",
                        "model_not_found", "the model '%s' does not exist",
                        name);
    len = strlen(err.message);
    ok(len <= 511 && (unsigned char) err.message[len - 1] == 0xa9,
       "a message cut inside a character ends at the last whole one "
       "(%zu bytes)", len);
    check_error_encodes(&err, "model name cut at 511 bytes");

    snprintf(path, sizeof(path), "%s/repro/openai-body-bad-escape.json",
             shared_dir());
    body = tap_read_file(path, &len);
    if (ok(body != NULL, "read %s", path)) {
        ok(infer_oai_parse_request(body, len, INFER_OAI_COMPLETION, 8, &req,
                                   &err) == -1 && err.status == 400,
           "the bad escape is a 400: %s", err.message);
        check_error_encodes(&err, "repro openai-body-bad-escape.json");
    }
    free(body);

    /* a completion with no text at all still has a body */
    {
        infer_oai_response_t rsp = { INFER_OAI_COMPLETION, "cmpl-1", 5, "m", 0 };
        infer_oai_choice_t   none = { NULL, 0, "stop", NULL, NULL };

        body = infer_oai_completion_body(&rsp, &none, 1, 3, 1, &len);
        ok(body != NULL && strstr(body, "\"text\":\"\"") != NULL,
           "empty completion text encodes as \"\"");
        free(body);
        rsp.kind = INFER_OAI_CHAT;
        body = infer_oai_completion_body(&rsp, &none, 1, 3, 1, &len);
        ok(body != NULL && strstr(body, "\"content\":\"\"") != NULL,
           "empty chat content encodes as \"\"");
        free(body);
    }
}

/* A NUL inside a string the engine uses as C text is refused, not cut. */
static void
test_nul(void)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;

    bad("{\"model\":\"default\\u0000x\",\"prompt\":\"x\"}",
        INFER_OAI_COMPLETION, "model", "NUL in the model name");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"a\\u0000b\"]}",
        INFER_OAI_COMPLETION, "stop", "NUL in a stop sequence");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"us\\u0000er\","
        "\"content\":\"x\"}]}", INFER_OAI_CHAT, "messages", "NUL in a role");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
        "\"content\":\"x\\u0000y\"}]}", INFER_OAI_CHAT, "messages",
        "NUL in chat content");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
        "\"content\":[{\"type\":\"text\",\"text\":\"\\u0000\"}]}]}",
        INFER_OAI_CHAT, "messages", "NUL in a text part");

    /* a completion prompt carries its length: NUL is part of the text */
    is_int(parse("{\"model\":\"m\",\"prompt\":\"a\\u0000b\"}",
                 INFER_OAI_COMPLETION, &req, &err), 0,
           "NUL inside a prompt string is kept");
    ok(req.prompt_len == 3 && memcmp(req.prompt, "a\0b", 3) == 0,
       "the prompt holds all 3 bytes");
    infer_oai_request_free(&req);
}

static void
test_completion_fields(void)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  rc;

    rc = parse("{\"model\":\"tiny\",\"prompt\":\"Once upon\","
               "\"max_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,"
               "\"top_k\":40,\"seed\":-3,\"stop\":[\"\\n\",\"Lily\"],"
               "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
               "\"n\":1,\"user\":\"u1\",\"logit_bias\":{},\"echo\":false,"
               "\"priority\":-7}",
               INFER_OAI_COMPLETION, &req, &err);
    is_int(rc, 0, "full completion request parses");
    is_str(req.model, "tiny", "model");
    is_str(req.prompt, "Once upon", "prompt text");
    is_int(req.prompt_len, 9, "prompt length");
    is_int(req.max_tokens, 7, "max_tokens");
    ok(req.temperature == 0.5 && req.top_p == 0.9, "temperature, top_p");
    is_int(req.top_k, 40, "top_k");
    ok(req.has_seed && req.seed == (uint64_t) -3, "negative seed kept");
    is_int(req.priority, -7, "priority");
    is_int(req.n_stop, 2, "two stop strings");
    is_str(req.stop[1], "Lily", "second stop string");
    ok(req.stream && req.include_usage, "stream with include_usage");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\",\"prompt\":\"x\",\"stop\":\"end\","
               "\"top_k\":-1,\"max_tokens\":null,\"temperature\":null}",
               INFER_OAI_COMPLETION, &req, &err);
    ok(rc == 0 && req.n_stop == 1 && strcmp(req.stop[0], "end") == 0,
       "stop as a string");
    ok(req.top_k == 0 && req.max_tokens == 0 && req.temperature == 1.0
       && req.top_p == 1.0 && !req.has_seed && !req.stream
       && req.priority == 0,
       "defaults: nulls are not given, top_k -1 is off");
    infer_oai_request_free(&req);
}

static void
test_prompt_forms(void)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  rc;

    rc = parse("{\"model\":\"m\",\"prompt\":[1,403,407]}",
               INFER_OAI_COMPLETION, &req, &err);
    ok(rc == 0 && req.prompt == NULL && req.n_prompt_ids == 3
       && req.prompt_ids[0] == 1 && req.prompt_ids[2] == 407,
       "prompt as token ids");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\",\"prompt\":[\"one\"]}",
               INFER_OAI_COMPLETION, &req, &err);
    ok(rc == 0 && req.prompt && strcmp(req.prompt, "one") == 0,
       "prompt as a one-string array");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\",\"prompt\":[[5,6]]}",
               INFER_OAI_COMPLETION, &req, &err);
    ok(rc == 0 && req.n_prompt_ids == 2 && req.prompt_ids[1] == 6,
       "prompt as a one-element array of token arrays");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\",\"prompt\":\"a\\u0000b\"}",
               INFER_OAI_COMPLETION, &req, &err);
    ok(rc == 0 && req.prompt_len == 3, "prompt keeps an embedded NUL");
    infer_oai_request_free(&req);

    bad("{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", INFER_OAI_COMPLETION,
        "prompt", "batched prompts");
    bad("{\"model\":\"m\",\"prompt\":[]}", INFER_OAI_COMPLETION, "prompt",
        "empty prompt array");
    bad("{\"model\":\"m\",\"prompt\":[1,-2]}", INFER_OAI_COMPLETION,
        "prompt", "negative token id");
    bad("{\"model\":\"m\",\"prompt\":[1,2.5]}", INFER_OAI_COMPLETION,
        "prompt", "fractional token id");
    bad("{\"model\":\"m\",\"prompt\":5}", INFER_OAI_COMPLETION, "prompt",
        "prompt as a number");
    bad("{\"model\":\"m\"}", INFER_OAI_COMPLETION, "prompt",
        "missing prompt");
}

static void
test_invalid(void)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;

    ok(parse("{\"model\":", INFER_OAI_COMPLETION, &req, &err) == -1
       && err.status == 400 && strstr(err.message, "invalid JSON") != NULL,
       "malformed JSON: %s", err.message);
    bad("[1,2]", INFER_OAI_COMPLETION, NULL, "array body");
    bad("{\"prompt\":\"x\"}", INFER_OAI_COMPLETION, "model", "no model");
    bad("{\"model\":7,\"prompt\":\"x\"}", INFER_OAI_COMPLETION, "model",
        "model as a number");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":-1}",
        INFER_OAI_COMPLETION, "max_tokens", "max_tokens -1");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
        "\"max_tokens\":0}", INFER_OAI_CHAT, "max_tokens",
        "max_tokens 0 in a chat");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":\"16\"}",
        INFER_OAI_COMPLETION, "max_tokens", "max_tokens as a string");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":4294967296}",
        INFER_OAI_COMPLETION, "max_tokens", "max_tokens past int");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":2.5}",
        INFER_OAI_COMPLETION, "temperature", "temperature 2.5");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":\"hot\"}",
        INFER_OAI_COMPLETION, "temperature", "temperature as a string");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"top_p\":0}",
        INFER_OAI_COMPLETION, "top_p", "top_p 0");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"top_p\":1.01}",
        INFER_OAI_COMPLETION, "top_p", "top_p above 1");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"top_k\":-2}",
        INFER_OAI_COMPLETION, "top_k", "top_k -2");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"seed\":1.5}",
        INFER_OAI_COMPLETION, "seed", "fractional seed");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"priority\":1000001}",
        INFER_OAI_COMPLETION, "priority", "priority past 1000000");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"priority\":\"high\"}",
        INFER_OAI_COMPLETION, "priority", "priority as a string");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"n\":9}",
        INFER_OAI_COMPLETION, "n", "n above the maximum of 8");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"n\":0}",
        INFER_OAI_COMPLETION, "n", "n 0");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\","
        "\"e\"]}", INFER_OAI_COMPLETION, "stop", "five stop strings");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"\"]}",
        INFER_OAI_COMPLETION, "stop", "empty stop string");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[1]}",
        INFER_OAI_COMPLETION, "stop", "stop as numbers");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"stream\":\"yes\"}",
        INFER_OAI_COMPLETION, "stream", "stream as a string");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"stream_options\":"
        "{\"include_usage\":true}}", INFER_OAI_COMPLETION, "stream_options",
        "stream_options without stream");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":1}}", INFER_OAI_COMPLETION,
        "stream_options.include_usage", "include_usage as a number");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"user\":3}",
        INFER_OAI_COMPLETION, "user", "user as a number");
}

static void
test_chat_request(void)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  rc;

    rc = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\","
               "\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":"
               "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
               "\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":null}],"
               "\"max_tokens\":5,\"max_completion_tokens\":9}",
               INFER_OAI_CHAT, &req, &err);
    is_int(rc, 0, "chat request parses");
    is_int((int) json_array_size(req.messages), 3, "three messages");
    is_str(json_string_value(json_object_get(json_array_get(req.messages, 0),
                                             "role")),
           "system", "system role");
    is_str(json_string_value(json_object_get(json_array_get(req.messages, 1),
                                             "content")),
           "a\nb", "text parts joined by newline");
    ok(json_is_null(json_object_get(json_array_get(req.messages, 2),
                                    "content")),
       "null content stays null (the template decides)");
    is_int(req.add_generation_prompt, 1, "add_generation_prompt by default");
    ok(req.tools == NULL && req.tool_choice == INFER_OAI_TOOLS_AUTO,
       "no tools, tool_choice auto");
    is_int(req.max_tokens, 9, "max_completion_tokens wins over max_tokens");
    infer_oai_request_free(&req);

    bad("{\"model\":\"m\"}", INFER_OAI_CHAT, "messages", "missing messages");
    bad("{\"model\":\"m\",\"messages\":[]}", INFER_OAI_CHAT, "messages",
        "empty messages");
    bad("{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
        INFER_OAI_CHAT, "messages", "message without role");
    bad("{\"model\":\"m\",\"messages\":[\"hi\"]}", INFER_OAI_CHAT,
        "messages", "message as a string");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
        "[{\"type\":\"image_url\"}]}]}", INFER_OAI_CHAT, "messages",
        "image content part");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
        INFER_OAI_CHAT, "messages", "content as a number");
}

#define TOOL  "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
              "\"parameters\":{\"type\":\"object\"}}}"
#define USER  "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"

/* tools, tool_choice, tool calls in the history, the template's kwargs */
static void
test_chat_tools_request(void)
{
    json_t               *args;
    infer_oai_request_t   req;
    infer_oai_error_t     err;
    int                   rc;

    rc = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
               "\"content\":\"Paris?\"},{\"role\":\"assistant\","
               "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
               "\"function\":{\"name\":\"get_weather\",\"arguments\":"
               "\"{\\\"city\\\": \\\"Paris\\\"}\"}},{\"id\":\"c2\",\"type\":"
               "\"function\",\"function\":{\"name\":\"get_weather\","
               "\"arguments\":\"not json\"}}]},{\"role\":\"tool\","
               "\"tool_call_id\":\"c1\",\"content\":\"18C\"},{\"role\":"
               "\"observer\",\"content\":\"an unknown role\"}],"
               "\"tools\":[" TOOL "],\"tool_choice\":{\"type\":\"function\","
               "\"function\":{\"name\":\"get_weather\"}},"
               "\"chat_template_kwargs\":{\"enable_thinking\":false},"
               "\"add_generation_prompt\":false,"
               "\"continue_final_message\":true}",
               INFER_OAI_CHAT, &req, &err);
    if (!ok(rc == 0, "a chat with tools parses")) {
        diag("%s", err.message);
        return;
    }
    args = json_object_get(json_object_get(json_array_get(json_object_get(
               json_array_get(req.messages, 1), "tool_calls"), 0),
               "function"), "arguments");
    ok(json_is_object(args)
       && strcmp(json_string_value(json_object_get(args, "city")), "Paris")
          == 0,
       "tool call arguments given to the template as the object they "
       "encode");
    args = json_object_get(json_object_get(json_array_get(json_object_get(
               json_array_get(req.messages, 1), "tool_calls"), 1),
               "function"), "arguments");
    is_str(json_string_value(args), "not json",
           "arguments that are not a JSON object stay a string");
    is_str(json_string_value(json_object_get(json_array_get(req.messages, 3),
                                             "role")),
           "observer", "an unknown role is the template's to judge");
    is_int((int) json_array_size(req.tools), 1, "one tool");
    is_int(req.tool_choice, INFER_OAI_TOOLS_NAMED, "a named tool_choice");
    is_str(req.tool_name, "get_weather", "its name");
    ok(json_is_false(json_object_get(req.template_kwargs,
                                     "enable_thinking")),
       "chat_template_kwargs kept");
    ok(!req.add_generation_prompt && req.continue_final_message,
       "add_generation_prompt and continue_final_message");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\"," USER ",\"tools\":[" TOOL "],"
               "\"tool_choice\":\"required\"}", INFER_OAI_CHAT, &req, &err);
    ok(rc == 0 && req.tool_choice == INFER_OAI_TOOLS_REQUIRED,
       "tool_choice required");
    infer_oai_request_free(&req);
    rc = parse("{\"model\":\"m\"," USER ",\"tools\":[],"
               "\"tool_choice\":\"none\"}", INFER_OAI_CHAT, &req, &err);
    ok(rc == 0 && req.tools == NULL && req.tool_choice == INFER_OAI_TOOLS_NONE,
       "an empty tools list and tool_choice none");
    infer_oai_request_free(&req);

    bad("{\"model\":\"m\"," USER ",\"tool_choice\":\"required\"}",
        INFER_OAI_CHAT, "tool_choice", "tool_choice required without tools");
    bad("{\"model\":\"m\"," USER ",\"tools\":[" TOOL "],\"tool_choice\":"
        "{\"type\":\"function\",\"function\":{\"name\":\"other\"}}}",
        INFER_OAI_CHAT, "tool_choice", "a named function not among tools");
    bad("{\"model\":\"m\"," USER ",\"tools\":[" TOOL "],"
        "\"tool_choice\":\"sometimes\"}", INFER_OAI_CHAT, "tool_choice",
        "an unknown tool_choice");
    bad("{\"model\":\"m\"," USER ",\"tools\":{}}", INFER_OAI_CHAT, "tools",
        "tools as an object");
    bad("{\"model\":\"m\"," USER ",\"tools\":[{\"type\":\"function\"}]}",
        INFER_OAI_CHAT, "tools", "a tool without a function");
    bad("{\"model\":\"m\"," USER ",\"tools\":[{\"type\":\"retrieval\","
        "\"function\":{\"name\":\"f\"}}]}", INFER_OAI_CHAT, "tools",
        "a tool of another type");
    bad("{\"model\":\"m\"," USER ",\"chat_template_kwargs\":[1]}",
        INFER_OAI_CHAT, "chat_template_kwargs", "kwargs as an array");
    bad("{\"model\":\"m\"," USER ",\"continue_final_message\":true}",
        INFER_OAI_CHAT, "continue_final_message",
        "continue_final_message with add_generation_prompt");
    bad("{\"model\":\"m\"," USER ",\"chat_template\":\"{{ 1 }}\"}",
        INFER_OAI_CHAT, "chat_template", "a template from the client");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\","
        "\"tool_calls\":[{\"function\":{}}]}]}", INFER_OAI_CHAT, "messages",
        "a tool call without a function name");
}

static void
test_bodies(void)
{
    infer_oai_response_t  cmpl = { INFER_OAI_COMPLETION, "cmpl-1", 1700000000,
                                   "tiny", 0 };
    infer_oai_response_t  chat = { INFER_OAI_CHAT, "chatcmpl-2", 1700000001,
                                   "tiny", 0 };
    infer_oai_error_t     err;
    const char           *names[] = { "tiny", "big" };
    const int64_t         created[] = { 5, 7 };
    char                 *s;
    size_t                len;

    s = infer_oai_completion_body(&cmpl,
                                  choice("Lily\"\n", 6, "length"), 1, 3, 2,
                                  &len);
    is_str(s, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\","
           "\"created\":1700000000,\"model\":\"tiny\",\"choices\":[{"
           "\"index\":0,\"text\":\"Lily\\\"\\n\",\"logprobs\":null,"
           "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":3,"
           "\"completion_tokens\":2,\"total_tokens\":5}}\n",
           "completion body");
    ok(s && len == strlen(s), "length matches");
    free(s);

    s = infer_oai_completion_body(&chat, choice("Hi", 2, "stop"), 1, 10, 1,
                                  &len);
    is_str(s, "{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion\","
           "\"created\":1700000001,\"model\":\"tiny\",\"choices\":[{"
           "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
           "\"Hi\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
           "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":1,"
           "\"total_tokens\":11}}\n", "chat completion body");
    free(s);

    s = infer_oai_chunk(&cmpl, 0, choice(" upon", 5, NULL), 0, 0, &len);
    is_str(s, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\","
           "\"created\":1700000000,\"model\":\"tiny\",\"choices\":[{"
           "\"index\":0,\"text\":\" upon\",\"logprobs\":null,"
           "\"finish_reason\":null}]}\n\n", "completion chunk");
    free(s);

    s = infer_oai_chunk(&chat, 0, choice(NULL, 0, NULL), 1, 1, &len);
    is_str(s, "data: {\"id\":\"chatcmpl-2\",\"object\":"
           "\"chat.completion.chunk\",\"created\":1700000001,\"model\":"
           "\"tiny\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
           "\"assistant\",\"content\":\"\"},\"logprobs\":null,"
           "\"finish_reason\":null}],\"usage\":null}\n\n",
           "first chat chunk carries the role (and usage null)");
    free(s);

    s = infer_oai_chunk(&chat, 0, choice("é", strlen("é"), NULL), 0, 0,
                        &len);
    is_str(s, "data: {\"id\":\"chatcmpl-2\",\"object\":"
           "\"chat.completion.chunk\",\"created\":1700000001,\"model\":"
           "\"tiny\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
           "\"é\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
           "chat content chunk");
    free(s);

    s = infer_oai_chunk(&chat, 0, choice("", 0, "stop"), 0, 0, &len);
    is_str(s, "data: {\"id\":\"chatcmpl-2\",\"object\":"
           "\"chat.completion.chunk\",\"created\":1700000001,\"model\":"
           "\"tiny\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
           "\"finish_reason\":\"stop\"}]}\n\n", "final chat chunk");
    free(s);

    s = infer_oai_usage_chunk(&chat, 4, 6, &len);
    is_str(s, "data: {\"id\":\"chatcmpl-2\",\"object\":"
           "\"chat.completion.chunk\",\"created\":1700000001,\"model\":"
           "\"tiny\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
           "\"completion_tokens\":6,\"total_tokens\":10}}\n\n",
           "usage chunk");
    free(s);

    /* prompt tokens from the prefix cache, as OpenAI reports them */
    chat.cached_tokens = 3;
    s = infer_oai_usage_chunk(&chat, 4, 6, &len);
    is_str(s, "data: {\"id\":\"chatcmpl-2\",\"object\":"
           "\"chat.completion.chunk\",\"created\":1700000001,\"model\":"
           "\"tiny\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
           "\"completion_tokens\":6,\"total_tokens\":10,"
           "\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n",
           "usage chunk with 3 cached prompt tokens");
    free(s);
    chat.cached_tokens = 0;

    infer_oai_set_error(&err, 404, "invalid_request_error", "model",
                        "model_not_found", "The model '%s' does not exist",
                        "gpt");
    s = infer_oai_error_body(&err, &len);
    is_str(s, "{\"error\":{\"message\":\"The model 'gpt' does not exist\","
           "\"type\":\"invalid_request_error\",\"param\":\"model\","
           "\"code\":\"model_not_found\"}}\n", "error body");
    free(s);

    infer_oai_set_error(&err, 504, "timeout", NULL, NULL, "deadline");
    s = infer_oai_error_chunk(&err, &len);
    is_str(s, "data: {\"error\":{\"message\":\"deadline\",\"type\":"
           "\"timeout\",\"param\":null,\"code\":null}}\n\n",
           "error chunk with null param and code");
    free(s);

    s = infer_oai_models_body(names, created, 2, &len);
    is_str(s, "{\"object\":\"list\",\"data\":[{\"id\":\"tiny\",\"object\":"
           "\"model\",\"created\":5,\"owned_by\":\"nginx\"},{\"id\":\"big\","
           "\"object\":\"model\",\"created\":7,\"owned_by\":\"nginx\"}]}\n",
           "models list, each with its own load time");
    free(s);

    is_str(infer_oai_finish_reason(INFER_FINISH_STOP), "stop", "stop");
    is_str(infer_oai_finish_reason(INFER_FINISH_LENGTH), "length", "length");
}


/* The fields of issue 11: n, echo, logprobs, penalties, logit_bias. */
static void
test_scoring_fields(void)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  rc;

    rc = parse("{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":0,"
               "\"echo\":true,\"logprobs\":5,\"n\":3,\"best_of\":3,"
               "\"presence_penalty\":0.5,\"frequency_penalty\":-2,"
               "\"repetition_penalty\":1.3,\"min_tokens\":0,"
               "\"skip_special_tokens\":false,"
               "\"logit_bias\":{\"12\":-100,\"007\":5.5},\"suffix\":null}",
               INFER_OAI_COMPLETION, &req, &err);
    is_int(rc, 0, "a scoring request parses: %s", rc ? err.message : "");
    ok(req.has_max_tokens && req.max_tokens == 0,
       "max_tokens 0 is given, not the default");
    ok(req.echo && req.logprobs && req.top_logprobs == 5 && req.n == 3,
       "echo, logprobs 5 (alternatives), n 3");
    ok(req.presence_penalty == 0.5 && req.frequency_penalty == -2.0
       && req.repetition_penalty == 1.3, "the penalties");
    ok(!req.skip_special, "skip_special_tokens false");
    ok(req.n_bias == 2 && req.bias_ids[0] == 12 && req.bias[0] == -100.0f
       && req.bias_ids[1] == 7 && req.bias[1] == 5.5f,
       "logit_bias in the body's order, decimal keys");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":0}",
               INFER_OAI_COMPLETION, &req, &err);
    ok(rc == 0 && req.logprobs && req.top_logprobs == 0 && !req.echo
       && req.n == 1 && req.repetition_penalty == 1.0 && !req.has_max_tokens
       && req.skip_special,
       "logprobs 0: the chosen token's only; defaults elsewhere");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":4,"
               "\"min_tokens\":4}", INFER_OAI_COMPLETION, &req, &err);
    ok(rc == 0 && req.min_tokens == 4, "min_tokens up to max_tokens");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
               "\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":20,"
               "\"n\":8,\"echo\":\"ignored in chat\"}", INFER_OAI_CHAT, &req,
               &err);
    ok(rc == 0 && req.logprobs && req.top_logprobs == 20 && req.n == 8
       && !req.echo, "chat: logprobs true, top_logprobs 20, n 8");
    infer_oai_request_free(&req);

    rc = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
               "\"content\":\"x\"}],\"logprobs\":false,\"top_logprobs\":null}",
               INFER_OAI_CHAT, &req, &err);
    ok(rc == 0 && !req.logprobs, "chat: logprobs false");
    infer_oai_request_free(&req);

    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":21}",
        INFER_OAI_COMPLETION, "logprobs", "logprobs 21");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":true}",
        INFER_OAI_COMPLETION, "logprobs", "completion logprobs as a boolean");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"echo\":1}",
        INFER_OAI_COMPLETION, "echo", "echo as a number");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
        "\"logprobs\":3}", INFER_OAI_CHAT, "logprobs",
        "chat logprobs as a number");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
        "\"top_logprobs\":2}", INFER_OAI_CHAT, "top_logprobs",
        "top_logprobs without logprobs");
    bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
        "\"logprobs\":true,\"top_logprobs\":21}", INFER_OAI_CHAT,
        "top_logprobs", "top_logprobs 21");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"presence_penalty\":2.5}",
        INFER_OAI_COMPLETION, "presence_penalty", "presence_penalty 2.5");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"frequency_penalty\":-3}",
        INFER_OAI_COMPLETION, "frequency_penalty", "frequency_penalty -3");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"frequency_penalty\":\"0\"}",
        INFER_OAI_COMPLETION, "frequency_penalty",
        "frequency_penalty as a string");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"skip_special_tokens\":1}",
        INFER_OAI_COMPLETION, "skip_special_tokens",
        "skip_special_tokens not a boolean");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"repetition_penalty\":0}",
        INFER_OAI_COMPLETION, "repetition_penalty", "repetition_penalty 0");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"repetition_penalty\":-1.2}",
        INFER_OAI_COMPLETION, "repetition_penalty",
        "negative repetition_penalty");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"min_tokens\":-1}",
        INFER_OAI_COMPLETION, "min_tokens", "min_tokens -1");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":3,"
        "\"min_tokens\":4}", INFER_OAI_COMPLETION, "min_tokens",
        "min_tokens above max_tokens");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":[1]}",
        INFER_OAI_COMPLETION, "logit_bias", "logit_bias as an array");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"a\":1}}",
        INFER_OAI_COMPLETION, "logit_bias", "logit_bias key not an id");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"-1\":1}}",
        INFER_OAI_COMPLETION, "logit_bias", "negative logit_bias id");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"1.5\":1}}",
        INFER_OAI_COMPLETION, "logit_bias", "fractional logit_bias id");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"\":1}}",
        INFER_OAI_COMPLETION, "logit_bias", "empty logit_bias key");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":"
        "{\"99999999999\":1}}", INFER_OAI_COMPLETION, "logit_bias",
        "logit_bias id past int32");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"5\":101}}",
        INFER_OAI_COMPLETION, "logit_bias", "logit_bias value 101");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"5\":\"1\"}}",
        INFER_OAI_COMPLETION, "logit_bias", "logit_bias value a string");
    bad("{\"model\":\"m\",\"prompt\":\"x\",\"n\":2,\"best_of\":1}",
        INFER_OAI_COMPLETION, "best_of", "best_of below n");
}

/* A minimal request of kind with more fields. */
static int
parse_with(const char *fields, infer_oai_kind_t kind,
    infer_oai_request_t *req, infer_oai_error_t *err)
{
    char  body[512];

    snprintf(body, sizeof(body), "{\"model\":\"m\",%s,%s}",
             kind == INFER_OAI_CHAT
             ? "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
             : "\"prompt\":\"x\"", fields);
    return parse(body, kind, req, err);
}

/* A field the server does not implement is a 400 naming it, with
 * OpenAI's unsupported_parameter code; its "asks for nothing" values and
 * unknown fields pass. */
static void
unsupported(const char *fields, infer_oai_kind_t kind, const char *param)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  rc;

    rc = parse_with(fields, kind, &req, &err);
    ok(rc == -1 && err.status == 400 && err.param != NULL
       && strcmp(err.param, param) == 0 && err.code != NULL
       && strcmp(err.code, "unsupported_parameter") == 0
       && strstr(err.message, param) != NULL,
       "%s: 400 unsupported_parameter naming %s (%s)", fields, param,
       rc ? err.message : "accepted");
    if (rc == 0) {
        infer_oai_request_free(&req);
    }
}

static void
supported(const char *fields, infer_oai_kind_t kind)
{
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    int                  rc;

    rc = parse_with(fields, kind, &req, &err);
    ok(rc == 0, "%s: accepted (%s)", fields, rc ? err.message : "");
    if (rc == 0) {
        infer_oai_request_free(&req);
    }
}

static void
test_unsupported(void)
{
    infer_oai_kind_t  chat = INFER_OAI_CHAT, cmpl = INFER_OAI_COMPLETION;

    unsupported("\"functions\":[{\"name\":\"f\"}]", chat, "functions");
    unsupported("\"function_call\":\"auto\"", chat, "function_call");
    unsupported("\"response_format\":{\"type\":\"json_object\"}", chat,
                "response_format");
    unsupported("\"response_format\":{\"type\":\"json_schema\","
                "\"json_schema\":{\"name\":\"x\"}}", chat, "response_format");
    unsupported("\"response_format\":\"text\"", chat, "response_format");
    unsupported("\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}", chat,
                "audio");
    unsupported("\"modalities\":[\"text\",\"audio\"]", chat, "modalities");
    unsupported("\"web_search_options\":{\"search_context_size\":\"low\"}",
                chat, "web_search_options");
    unsupported("\"web_search_options\":{}", chat, "web_search_options");
    unsupported("\"audio\":{}", chat, "audio");
    unsupported("\"suffix\":\" the end\"", cmpl, "suffix");
    unsupported("\"best_of\":3", cmpl, "best_of");
    unsupported("\"n\":2,\"best_of\":3", cmpl, "best_of");

    supported("\"tools\":[],\"tool_choice\":\"none\",\"functions\":null,"
              "\"function_call\":\"none\",\"parallel_tool_calls\":true,"
              "\"response_format\":{\"type\":\"text\"},\"audio\":null,"
              "\"modalities\":[\"text\"],\"web_search_options\":null,"
              "\"prediction\":{\"type\":\"content\",\"content\":\"x\"},"
              "\"store\":false,\"metadata\":{\"a\":\"b\"},"
              "\"service_tier\":\"auto\",\"made_up_field\":[1,2]", chat);
    supported("\"suffix\":\"\",\"best_of\":1,\"made_up_field\":{}", cmpl);
    supported("\"n\":2,\"best_of\":2,\"tools\":[{\"type\":\"function\"}]",
              cmpl);
}

/*
 * The logprobs shapes, with stories260K's tokenizer (SentencePiece with
 * byte fallback): ids 1 <s>, 2 </s>, 403 "▁Once", 407 "▁upon", 261 "▁a",
 * 229 <0xE2> (a byte that is not UTF-8 alone), from its tokenizer.json.
 */
static infer_event_t
lp_event(int first, int n, int32_t *ids, float *lp, int top,
    int32_t *top_ids, float *top_lp)
{
    infer_event_t  ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = INFER_EVENT_TOKEN;
    ev.lp_first = first;
    ev.n_lp = n;
    ev.lp_ids = ids;
    ev.lp = lp;
    ev.lp_top = top;
    ev.lp_top_ids = top_ids;
    ev.lp_top_lp = top_lp;
    return ev;
}

static void
test_logprobs(void)
{
    infer_oai_response_t   cmpl = { INFER_OAI_COMPLETION, "cmpl-1", 7, "m", 0 };
    infer_oai_response_t   chat = { INFER_OAI_CHAT, "chatcmpl-1", 7, "m", 0 };
    infer_tokenizer_t     *tok;
    infer_oai_logprobs_t  *l;
    infer_oai_choice_t     c;
    infer_event_t          ev;
    char                   dir[600], msg[256], *s, *echo;
    size_t                 len, echo_len;
    int32_t                prompt[3] = { 1, 403, 407 };
    int32_t                ids[2] = { 403, 407 }, gen[2] = { 261, 229 };
    int32_t                top[4] = { 403, 261, 261, 2 };
    float                  lp[2] = { -0.5f, -0.25f }, glp[2] = { -1.0f,
                                                                 -INFINITY };
    float                  tlp[4] = { -0.5f, -1.5f, -1.0f, -2.0f };

    snprintf(dir, sizeof(dir), "%s/models/stories260K", shared_dir());
    if (!ok(infer_tokenizer_load(dir, &tok, msg, sizeof(msg)) == 0,
            "load %s: %s", dir, msg))
    {
        return;
    }

    echo = infer_oai_decode(tok, prompt, 3, &echo_len);
    is_str(echo, "Once upon", "a token-id prompt decodes as echo shows it");
    is_int(infer_oai_chars("é\xe2\x80\x99x", 6), 3, "characters of UTF-8");

    /* echo: <s> without a logprob, the prompt's, then generated ones */
    l = infer_oai_logprobs_create(INFER_OAI_COMPLETION, tok, prompt, 3, 1,
                                  infer_oai_chars(echo, echo_len));
    ok(l != NULL && infer_oai_logprobs_pending(l) == 1,
       "echo starts with the first prompt token");
    ev = lp_event(1, 2, ids, lp, 1, top, tlp);
    ok(infer_oai_logprobs_add(l, &ev) == 0, "prompt logprobs added");
    memset(&c, 0, sizeof(c));
    c.text = echo;
    c.text_len = echo_len;
    c.finish = NULL;
    c.logprobs = l;
    s = infer_oai_chunk(&cmpl, 2, &c, 0, 0, &len);
    is_str(s, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\","
           "\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":2,"
           "\"text\":\"Once upon\",\"logprobs\":{\"tokens\":[\"<s>\","
           "\" Once\",\" upon\"],\"token_logprobs\":[null,-0.5,-0.25],"
           "\"top_logprobs\":[null,{\" Once\":-0.5},{\" a\":-1.5,"
           "\" upon\":-0.25}],\"text_offset\":[0,0,4]},"
           "\"finish_reason\":null}]}\n\n",
           "legacy chunk: <s> null, offsets in the echoed text, the chosen "
           "token among the alternatives");
    free(s);
    ok(infer_oai_logprobs_pending(l) == 0, "a chunk takes what it sends");

    ev = lp_event(3, 2, gen, glp, 1, top + 2, tlp + 2);
    ok(infer_oai_logprobs_add(l, &ev) == 0, "generated logprobs added");
    c.text = " a";
    c.text_len = 2;
    c.finish = "length";
    s = infer_oai_completion_body(&cmpl, &c, 1, 3, 2, &len);
    is_str(s, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\","
           "\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,"
           "\"text\":\" a\",\"logprobs\":{\"tokens\":[\" a\","
           "\"bytes:\\\\xe2\"],\"token_logprobs\":[-1.0,-9999.0],"
           "\"top_logprobs\":[{\" a\":-1.0},{\"</s>\":-2.0,"
           "\"bytes:\\\\xe2\":-9999.0}],\"text_offset\":[9,11]},"
           "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":3,"
           "\"completion_tokens\":2,\"total_tokens\":5}}\n",
           "generated offsets after the echo's 9 characters; a lone byte "
           "as bytes:\\xe2; -inf as -9999");
    free(s);
    infer_oai_logprobs_free(l);

    /* chat: token, logprob, bytes (null for a special token), the
     * alternatives */
    l = infer_oai_logprobs_create(INFER_OAI_CHAT, tok, prompt, 3, 0, 0);
    ev = lp_event(3, 2, gen, glp, 2, top, tlp);
    ok(l != NULL && infer_oai_logprobs_add(l, &ev) == 0,
       "chat logprobs added");
    c.text = " a";
    c.text_len = 2;
    c.finish = NULL;
    c.logprobs = l;
    s = infer_oai_chunk(&chat, 0, &c, 0, 0, &len);
    is_str(s, "data: {\"id\":\"chatcmpl-1\",\"object\":"
           "\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
           "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" a\"},"
           "\"logprobs\":{\"content\":[{\"token\":\" a\",\"logprob\":-1.0,"
           "\"bytes\":[32,97],\"top_logprobs\":[{\"token\":\" Once\","
           "\"logprob\":-0.5,\"bytes\":[32,79,110,99,101]},{\"token\":\" a\","
           "\"logprob\":-1.5,\"bytes\":[32,97]}]},{\"token\":\"bytes:\\\\xe2\","
           "\"logprob\":-9999.0,\"bytes\":[226],\"top_logprobs\":[{\"token\":"
           "\" a\",\"logprob\":-1.0,\"bytes\":[32,97]},{\"token\":\"</s>\","
           "\"logprob\":-2.0,\"bytes\":null}]}],\"refusal\":null},"
           "\"finish_reason\":null}]}\n\n", "chat chunk with logprobs");
    free(s);
    c.text = NULL;
    c.text_len = 0;
    c.finish = "stop";
    s = infer_oai_chunk(&chat, 0, &c, 0, 0, &len);
    ok(s != NULL && strstr(s, "\"logprobs\":null") != NULL,
       "a chunk without new entries has logprobs null");
    free(s);
    s = infer_oai_completion_body(&chat, &c, 1, 3, 0, &len);
    ok(s != NULL && strstr(s, "\"logprobs\":{\"content\":[],"
                              "\"refusal\":null}") != NULL,
       "a body asked for logprobs always has the object");
    free(s);
    infer_oai_logprobs_free(l);

    /* several choices, each with its index */
    {
        infer_oai_choice_t  cs[2] = { { "A", 1, "stop", NULL, NULL },
                                      { "B", 1, "length", NULL, NULL } };

        s = infer_oai_completion_body(&chat, cs, 2, 4, 6, &len);
        is_str(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
               "\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,"
               "\"message\":{\"role\":\"assistant\",\"content\":\"A\"},"
               "\"logprobs\":null,\"finish_reason\":\"stop\"},{\"index\":1,"
               "\"message\":{\"role\":\"assistant\",\"content\":\"B\"},"
               "\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":"
               "{\"prompt_tokens\":4,\"completion_tokens\":6,"
               "\"total_tokens\":10}}\n", "n = 2: two choices");
        free(s);
    }

    s = infer_oai_model_body("tiny", 5, &len);
    is_str(s, "{\"id\":\"tiny\",\"object\":\"model\",\"created\":5,"
           "\"owned_by\":\"nginx\"}\n", "GET /v1/models/{id} body");
    free(s);

    free(echo);
    infer_tokenizer_free(tok);
}

/* vLLM's tokenize and detokenize bodies. */
static void
test_tokenize(void)
{
    char                 path[512], *s;
    size_t               len;
    int32_t              ids[] = { 1, 403, 407 };
    infer_tokenizer_t   *tok;
    infer_oai_request_t  req;
    infer_oai_error_t    err;

    ok(infer_oai_parse_tokenize("{\"prompt\":\"x\"}", 14, 0, &req, &err) == 0
       && req.model == NULL && req.add_special && !req.token_strs
       && req.kind == INFER_OAI_COMPLETION, "tokenize a prompt: specials "
       "added by default, the model may be left out");
    infer_oai_request_free(&req);
    s = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
        "\"return_token_strs\":true,\"add_generation_prompt\":false}";
    ok(infer_oai_parse_tokenize(s, strlen(s), 0, &req, &err) == 0
       && req.kind == INFER_OAI_CHAT && !req.add_special && req.token_strs
       && !req.add_generation_prompt
       && json_array_size(req.messages) == 1,
       "tokenize messages: no specials added by default");
    infer_oai_request_free(&req);
    s = "{\"prompt\":\"x\",\"messages\":[]}";
    ok(infer_oai_parse_tokenize(s, strlen(s), 0, &req, &err) != 0
       && err.status == 400, "prompt and messages: 400");
    s = "{\"model\":\"m\",\"tokens\":[1,-2]}";
    ok(infer_oai_parse_tokenize(s, strlen(s), 1, &req, &err) != 0
       && strcmp(err.param, "tokens") == 0, "a negative id: 400 on tokens");
    s = "{\"tokens\":[]}";
    ok(infer_oai_parse_tokenize(s, strlen(s), 1, &req, &err) == 0
       && req.n_prompt_ids == 0, "no tokens to detokenize");
    infer_oai_request_free(&req);

    snprintf(path, sizeof(path), "%s/models/stories260K", shared_dir());
    if (infer_tokenizer_load(path, &tok, path, sizeof(path)) != 0) {
        ok(0, "stories260K tokenizer: %s", path);
        return;
    }
    s = infer_oai_tokenize_body(tok, ids, 3, 512, 1, &len);
    is_str(s, "{\"count\":3,\"max_model_len\":512,\"tokens\":[1,403,407],"
           "\"token_strs\":[\"<s>\",\"\xe2\x96\x81Once\",\"\xe2\x96\x81upon\"]}\n",
           "the tokenize body, with the token strings");
    free(s);
    /* tokenizers' decode([1, 403, 407]) of stories260K: "<s> Once upon" */
    s = infer_oai_detokenize_body(tok, ids, 3, &len);
    is_str(s, "{\"prompt\":\"<s> Once upon\"}\n",
           "the detokenize body keeps special tokens as decode() does");
    free(s);
    infer_tokenizer_free(tok);
}

/* A message with tool calls and their stream deltas, in the shapes of
 * OpenAI's chat completion object and chunk. */
static void
test_tool_call_bodies(void)
{
    char                  *s;
    size_t                 len;
    json_t                *calls, *deltas;
    infer_oai_choice_t     c;
    infer_oai_response_t   chat = { INFER_OAI_CHAT, "chatcmpl-1", 7, "m", 0 };

    calls = json_pack("[{s:s,s:s,s:{s:s,s:s}}]", "id", "call_1", "type",
                      "function", "function", "name", "get_weather",
                      "arguments", "{\"city\": \"Paris\"}");
    memset(&c, 0, sizeof(c));
    c.finish = "tool_calls";
    c.tool_calls = calls;
    s = infer_oai_completion_body(&chat, &c, 1, 10, 3, &len);
    is_str(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
           "\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,"
           "\"message\":{\"role\":\"assistant\",\"content\":null,"
           "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
           "\"function\":{\"name\":\"get_weather\",\"arguments\":"
           "\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},\"logprobs\":null,"
           "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":"
           "10,\"completion_tokens\":3,\"total_tokens\":13}}\n",
           "a message with tool calls: content null, finish tool_calls");
    free(s);

    c.text = "Let me look.";
    c.text_len = 12;
    s = infer_oai_completion_body(&chat, &c, 1, 10, 3, &len);
    ok(s != NULL && strstr(s, "\"content\":\"Let me look.\",\"tool_calls\"")
       != NULL, "content before the calls is kept");
    free(s);

    deltas = infer_oai_tool_deltas(calls);
    ok(json_array_size(deltas) == 2, "two deltas for one call");
    memset(&c, 0, sizeof(c));
    c.tool_calls = json_array_get(deltas, 0);
    s = infer_oai_chunk(&chat, 0, &c, 0, 0, &len);
    is_str(s, "data: {\"id\":\"chatcmpl-1\",\"object\":"
           "\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
           "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":"
           "0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
           "\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,"
           "\"finish_reason\":null}]}\n\n",
           "the first delta: index, id, type, name, empty arguments");
    free(s);
    c.tool_calls = json_array_get(deltas, 1);
    s = infer_oai_chunk(&chat, 0, &c, 0, 0, &len);
    ok(s != NULL && strstr(s, "\"delta\":{\"tool_calls\":[{\"index\":0,"
                           "\"function\":{\"arguments\":\"{\\\"city\\\": "
                           "\\\"Paris\\\"}\"}}]}") != NULL,
       "the second: the arguments");
    free(s);
    json_decref(deltas);
    json_decref(calls);
}

/* A template of ../shared/chat_templates, parsed. */
static infer_jinja_tmpl_t *
load_template(const char *name)
{
    char                  path[512], *src;
    long                  n;
    FILE                 *f;
    infer_jinja_tmpl_t   *t;
    infer_jinja_error_t   jerr;

    snprintf(path, sizeof(path), "%s/chat_templates/%s.jinja", shared_dir(),
             name);
    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    src = malloc(n + 1);
    if (src == NULL || fread(src, 1, n, f) != (size_t) n) {
        fclose(f);
        free(src);
        return NULL;
    }
    fclose(f);
    t = infer_jinja_parse(src, n, &jerr);
    free(src);
    return t;
}

/* transformers' rendering of a corpus case (t/data/chat), with
 * add_generation_prompt; NULL if it raised. */
static const char *
reference(json_t *refs, const char *name)
{
    size_t   i;
    json_t  *r;

    json_array_foreach(json_object_get(refs, "renders"), i, r) {
        if (strcmp(json_string_value(json_object_get(r, "case")), name) == 0
            && json_is_true(json_object_get(r, "add_generation_prompt")))
        {
            return json_string_value(json_object_get(r, "output"));
        }
    }
    return NULL;
}

/*
 * A corpus case as an OpenAI client sends it: tool call arguments as JSON
 * strings, the case's kwargs as chat_template_kwargs.
 */
static char *
openai_body(json_t *c)
{
    char    *s;
    size_t   i, k;
    json_t  *body, *msgs, *m, *call, *fn;

    msgs = json_deep_copy(json_object_get(c, "messages"));
    json_array_foreach(msgs, i, m) {
        json_array_foreach(json_object_get(m, "tool_calls"), k, call) {
            fn = json_object_get(call, "function");
            if (json_is_object(json_object_get(fn, "arguments"))) {
                s = json_dumps(json_object_get(fn, "arguments"),
                               JSON_COMPACT);
                json_object_set_new(fn, "arguments", json_string(s ? s : "?"));
                free(s);
            }
        }
    }
    body = json_pack("{s:s,s:o}", "model", "m", "messages", msgs);
    if (json_object_get(c, "tools") != NULL) {
        json_object_set(body, "tools", json_object_get(c, "tools"));
    }
    if (json_object_get(c, "kwargs") != NULL) {
        json_object_set(body, "chat_template_kwargs",
                        json_object_get(c, "kwargs"));
    }
    s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return s;
}

/*
 * A chat request renders as transformers' apply_chat_template rendered the
 * same conversation (t/data/chat, tools/ref/chat_templates.py): what the
 * codec makes of an OpenAI body is what the template expects.
 */
static void
test_chat_prompt_refs(void)
{
    static const char  *templates[] = {
        "Qwen-Qwen2.5-7B-Instruct", "meta-llama-Llama-3.1-8B-Instruct",
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
        "mistralai-Mistral-Nemo-Instruct-2407", "Qwen-Qwen3-0.6B"
    };
    static const char  *cases[] = {
        "system_user", "multi_turn", "non_ascii", "tools_query", "tool_call",
        "parallel_tool_calls", "thinking_off", "mistral_ids"
    };
    char                 path[512], *body, *s;
    size_t               i, k, j, len;
    json_t              *corpus, *refs, *c, *found, *special;
    const char          *want;
    infer_oai_request_t  req;
    infer_oai_error_t    err;
    infer_jinja_tmpl_t  *t;

    snprintf(path, sizeof(path), "t/data/chat/corpus.json");
    corpus = json_load_file(path, 0, NULL);
    special = json_pack("{s:s,s:s}", "bos_token", "<s>", "eos_token", "</s>");

    for (i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
        t = load_template(templates[i]);
        snprintf(path, sizeof(path), "t/data/chat/%s.json", templates[i]);
        refs = json_load_file(path, 0, NULL);
        if (!ok(t != NULL && refs != NULL, "%s and its references",
                templates[i]))
        {
            continue;
        }
        for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            want = reference(refs, cases[k]);
            found = NULL;
            json_array_foreach(json_object_get(corpus, "cases"), j, c) {
                if (strcmp(json_string_value(json_object_get(c, "name")),
                           cases[k]) == 0)
                {
                    found = c;
                }
            }
            c = found;
            if (want == NULL || c == NULL) {
                continue;    /* transformers raised: tested below */
            }
            body = openai_body(c);
            if (parse(body, INFER_OAI_CHAT, &req, &err) != 0) {
                ok(0, "%s %s: %s", templates[i], cases[k], err.message);
                free(body);
                continue;
            }
            s = infer_oai_chat_prompt(t, &req, special, &len, &err);
            if (!ok(s != NULL && strcmp(s, want) == 0,
                    "%s, %s: as transformers renders it", templates[i],
                    cases[k]))
            {
                diag("got '%s', expected '%s'", s ? s : err.message, want);
            }
            free(s);
            infer_oai_request_free(&req);
            free(body);
        }
        json_decref(refs);
        infer_jinja_free(t);
    }
    json_decref(corpus);
    json_decref(special);
}

/* A chat the template refuses: a 400 on messages with its error, naming
 * the message that makes the difference. */
static void
chat_refused(const char *tname, const char *src, const char *body,
    const char *want, const char *what)
{
    char                 *s;
    size_t                len;
    infer_oai_request_t   req;
    infer_oai_error_t     err;
    infer_jinja_error_t   jerr;
    infer_jinja_tmpl_t   *t;

    t = tname ? load_template(tname) : infer_jinja_parse(src, strlen(src),
                                                         &jerr);
    if (parse(body, INFER_OAI_CHAT, &req, &err) != 0 || t == NULL) {
        ok(0, "%s: %s", what, err.message);
        infer_jinja_free(t);
        return;
    }
    s = infer_oai_chat_prompt(t, &req, NULL, &len, &err);
    ok(s == NULL && err.status == 400 && err.param != NULL
       && strcmp(err.param, "messages") == 0
       && strstr(err.message, want) != NULL, "%s: %s", what, err.message);
    free(s);
    infer_oai_request_free(&req);
    infer_jinja_free(t);
}

static void
test_chat_refused(void)
{
    static const char  chatml[] = "{% for message in messages %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /* the TemplateError texts are the references' (t/data/chat) */
    chat_refused("google-gemma-2-2b-it", NULL,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\","
                 "\"content\":\"I speak first.\"},{\"role\":\"user\","
                 "\"content\":\"Fine.\"}]}",
                 "cannot render messages[0] (role \"assistant\"): "
                 "TemplateError: Conversation roles must alternate "
                 "user/assistant/user/assistant/...",
                 "gemma-2 refuses an assistant first");
    chat_refused("mistralai-Mistral-Nemo-Instruct-2407", NULL,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"}]}",
                 "cannot render messages[1] (role \"user\"): TemplateError: "
                 "After the optional system message, conversation roles "
                 "must alternate user/assistant/user/assistant/...",
                 "Mistral Nemo refuses two users in a row");
    chat_refused(NULL, chatml,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"},{\"role\":\"assistant\"}]}",
                 "cannot render messages[1] (role \"assistant\"): "
                 "UndefinedError:",
                 "a message without content where the template needs it");
    chat_refused(NULL, "{{ raise_exception('no chats today') }}",
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"}]}",
                 "cannot render messages[0] (role \"user\"): TemplateError: "
                 "no chats today (template line 1, column ",
                 "raise_exception's text");
    chat_refused(NULL, "{% if add_generation_prompt %}{{ raise_exception("
                 "'not now') }}{% endif %}",
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\"}]}",
                 "cannot render these messages: TemplateError: not now",
                 "an error no single message causes names none");
}

/* The default template, a template's configuration-time check and its
 * turn-end tokens. */
static void
test_chat_templates(void)
{
    char                  path[512], *s;
    size_t                len;
    int32_t               ids[4];
    int                   n;
    json_t               *special;
    infer_tokenizer_t    *tok;
    infer_oai_request_t   req;
    infer_oai_error_t     err;
    infer_jinja_tmpl_t   *t;
    infer_jinja_error_t   jerr;

    /* transformers 5.24's apply_chat_template(chat_template=
     * infer_oai_default_template) on stories260K's tokenizer renders
     * this; tokenized, 18 tokens (t/002-chat.t) */
    t = infer_jinja_parse(infer_oai_default_template,
                          strlen(infer_oai_default_template), &jerr);
    special = json_pack("{s:s,s:s}", "bos_token", "<s>", "eos_token", "</s>");
    parse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":"
          "\"Be brief.\"},{\"role\":\"user\",\"content\":\"Once upon a "
          "time\"},{\"role\":\"assistant\"},{\"role\":\"user\",\"content\":"
          "\"Go on\"}]}", INFER_OAI_CHAT, &req, &err);
    s = infer_oai_chat_prompt(t, &req, special, &len, &err);
    is_str(s, "<s>system: Be brief.\nuser: Once upon a time\nassistant: \n"
           "user: Go on\nassistant:", "the default template");
    free(s);
    infer_oai_request_free(&req);
    ok(infer_oai_template_check(t, special, &jerr) == 0,
       "the default template passes the check");
    infer_jinja_free(t);

    s = "\n  {{ raise_exception('not for chats') }}";
    t = infer_jinja_parse(s, strlen(s), &jerr);
    n = infer_oai_template_check(t, special, &jerr);
    ok(n != 0 && strcmp(jerr.type, "TemplateError") == 0 && jerr.line == 2
       && strcmp(jerr.message, "not for chats") == 0,
       "a template that raises fails the check, line %d column %d",
       jerr.line, jerr.column);
    infer_jinja_free(t);

    /* Hermes' tool_use template is for chats with tools only */
    t = load_template("NousResearch-Hermes-3-Llama-3.1-8B-tool_use");
    ok(t != NULL && infer_oai_template_check(t, special, &jerr) == 0,
       "a template for chats with tools passes the check");
    infer_jinja_free(t);
    json_decref(special);

    snprintf(path, sizeof(path), "%s/tokenizers/llama3", shared_dir());
    if (infer_tokenizer_load(path, &tok, path, sizeof(path)) != 0) {
        ok(0, "llama3 tokenizer: %s", path);
        return;
    }
    /* Llama-3.0's vocabulary has <|eot_id|>, not 3.1's <|eom_id|> nor
     * ChatML's <|im_end|> */
    n = infer_oai_template_stops("{{ '<|eot_id|>' }}{{ '<|eom_id|>' }}"
                                 "<|im_end|>", tok, ids, 4);
    ok(n == 1 && ids[0] == infer_tokenizer_token_id(tok, "<|eot_id|>")
       && ids[0] >= 0, "Llama-3's turn end <|eot_id|>, only what the "
       "vocabulary has");
    is_int(infer_oai_template_stops("{{ messages }}", tok, ids, 4), 0,
           "a template without turn-end tokens: eos only");
    infer_tokenizer_free(tok);
}

int
main(void)
{
    (void) skip_all;    /* tap.h helper this test has no use for */

    test_completion_fields();
    test_prompt_forms();
    test_invalid();
    test_chat_request();
    test_chat_tools_request();
    test_scoring_fields();
    test_unsupported();
    test_bodies();
    test_logprobs();
    test_tool_call_bodies();
    test_tokenize();
    test_chat_prompt_refs();
    test_chat_refused();
    test_chat_templates();
    test_error_utf8();
    test_nul();
    return done_testing();
}
