/*
 * The Jinja interpreter on template text and user content from the fuzz
 * data.  Two shapes of input, by the first byte:
 *
 *   'T' template NUL json   the template text, then the variables (a JSON
 *                           object; one with "messages" is rendered as a
 *                           chat, through infer_jinja_render_chat)
 *   'C' k role+text NUL...  a conversation for template k of
 *                           $INFER_SHARED/chat_templates (the published
 *                           ones, read at start, never copied here): each
 *                           record's first byte picks its role, the rest
 *                           is its content, with tools and a tool call
 *
 * Properties: nothing crashes or leaks, whatever the bytes; a failure says
 * what failed; a rendering is NUL-terminated, within the output bound,
 * valid UTF-8 (templates and JSON strings are), and the same when
 * rendered again.  Bounds are small so every input runs in milliseconds.
 */
#include <dirent.h>

#include "fuzz.h"
#include "jinja.h"

#define FUZZ_MAX_TEMPLATES  64
#define FUZZ_MAX_MSG        16
#define FUZZ_OUTPUT         (1u << 20)

static infer_jinja_tmpl_t  *fuzz_tmpl[FUZZ_MAX_TEMPLATES];
static char                *fuzz_tmpl_src[FUZZ_MAX_TEMPLATES];
static int                  fuzz_ntmpl;
static json_t              *fuzz_tools;

static const char *const  fuzz_roles[] = {
    "user", "assistant", "system", "tool"
};

static int
fuzz_utf8_ok(const char *s, size_t n)
{
    json_t  *j = json_stringn(s, n);

    /* jansson checks UTF-8 (a NUL from "\u0000" input included) */
    if (j == NULL) {
        return 0;
    }
    json_decref(j);
    return 1;
}

static int
fuzz_by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The published templates, parsed once; none is fine. */
static void
fuzz_load_templates(void)
{
    infer_jinja_error_t   err;
    struct dirent        *e;
    const char           *shared = getenv("INFER_SHARED");
    char                  path[1024], *names[FUZZ_MAX_TEMPLATES];
    FILE                 *f;
    long                  n;
    DIR                  *d;
    int                   i, k = 0;

    snprintf(path, sizeof(path), "%s/chat_templates",
             shared && shared[0] ? shared : "../shared");
    d = opendir(path);
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL && k < FUZZ_MAX_TEMPLATES) {
        n = (long) strlen(e->d_name);
        if (n > 6 && strcmp(e->d_name + n - 6, ".jinja") == 0) {
            names[k++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, k, sizeof(names[0]), fuzz_by_name);
    for (i = 0; i < k; i++) {
        snprintf(path, sizeof(path), "%s/chat_templates/%s",
                 shared && shared[0] ? shared : "../shared", names[i]);
        free(names[i]);
        f = fopen(path, "rb");
        if (f == NULL) {
            continue;
        }
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        fuzz_tmpl_src[fuzz_ntmpl] = malloc(n + 1);
        if (fread(fuzz_tmpl_src[fuzz_ntmpl], 1, n, f) == (size_t) n) {
            fuzz_tmpl[fuzz_ntmpl] = infer_jinja_parse(
                fuzz_tmpl_src[fuzz_ntmpl], n, &err);
            FUZZ_CHECK(fuzz_tmpl[fuzz_ntmpl] != NULL, "%s: %s", path,
                       err.message);
            fuzz_ntmpl++;
        } else {
            free(fuzz_tmpl_src[fuzz_ntmpl]);
        }
        fclose(f);
    }
}

static void
fuzz_free_templates(void)
{
    int  i;

    for (i = 0; i < fuzz_ntmpl; i++) {
        infer_jinja_free(fuzz_tmpl[i]);
        free(fuzz_tmpl_src[i]);
    }
    json_decref(fuzz_tools);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    json_error_t  jerr;

    (void) argc;
    (void) argv;
    fuzz_load_templates();
    fuzz_tools = json_loads(
        "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
        " \"description\": \"Weather in a city.\", \"parameters\": "
        "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
        "\"string\"}, \"days\": {\"type\": [\"integer\", \"null\"]}}, "
        "\"required\": [\"city\"]}}}]", 0, &jerr);
    FUZZ_CHECK(fuzz_tools != NULL, "tools: %s", jerr.text);
    atexit(fuzz_free_templates);
    return 0;
}

static void
fuzz_limits(infer_jinja_limits_t *lim)
{
    static struct tm  now = { .tm_year = 126, .tm_mon = 2, .tm_mday = 5,
                              .tm_hour = 14, .tm_min = 7, .tm_sec = 9,
                              .tm_wday = 4, .tm_yday = 63 };

    memset(lim, 0, sizeof(*lim));
    lim->memory = 32u << 20;
    lim->output = FUZZ_OUTPUT;
    lim->steps = 2000000;
    lim->now = &now;
}

/* Renders twice and checks what came back. */
static void
fuzz_check_render(const infer_jinja_tmpl_t *t, json_t *vars,
    const infer_jinja_chat_t *chat)
{
    infer_jinja_limits_t   lim;
    infer_jinja_error_t    err, err2;
    char                  *out, *again;
    size_t                 len = 0, len2 = 0;

    fuzz_limits(&lim);
    out = chat ? infer_jinja_render_chat(t, chat, &lim, &len, &err)
               : infer_jinja_render(t, vars, &lim, &len, &err);
    again = chat ? infer_jinja_render_chat(t, chat, &lim, &len2, &err2)
                 : infer_jinja_render(t, vars, &lim, &len2, &err2);
    FUZZ_CHECK((out == NULL) == (again == NULL), "rendered only once");
    if (out == NULL) {
        FUZZ_SAY("error: %s: %s", err.type, err.message);
        FUZZ_CHECK(err.type[0] != '\0' && err.message[0] != '\0',
                   "a failure that does not say why");
        FUZZ_CHECK(strcmp(err.type, err2.type) == 0
                   && strcmp(err.message, err2.message) == 0,
                   "two different failures: %s, %s", err.message,
                   err2.message);
        return;
    }
    FUZZ_SAY("rendered %zu bytes", len);
    FUZZ_CHECK(out[len] == '\0', "not NUL-terminated");
    FUZZ_CHECK(len <= FUZZ_OUTPUT, "%zu bytes past the bound", len);
    FUZZ_CHECK(fuzz_utf8_ok(out, len), "the rendering is not UTF-8");
    FUZZ_CHECK(len == len2 && memcmp(out, again, len) == 0,
               "two different renderings");
    free(out);
    free(again);
}

/* 'T': template NUL variables. */
static void
fuzz_template(const char *s, size_t n)
{
    infer_jinja_tmpl_t   *t;
    infer_jinja_error_t   err;
    infer_jinja_chat_t    chat;
    const char           *nul = memchr(s, '\0', n);
    size_t                tn = nul ? (size_t) (nul - s) : n;
    json_t               *vars = NULL, *m;

    t = infer_jinja_parse(s, tn, &err);
    if (t == NULL) {
        FUZZ_SAY("parse error %d:%d %s", err.line, err.column, err.message);
        FUZZ_CHECK(err.message[0] != '\0', "a parse error without a message");
        FUZZ_CHECK(err.line >= 0 && err.column >= 0, "a negative position");
        return;
    }
    if (nul != NULL) {
        vars = fuzz_json(nul + 1, n - tn - 1);
    }
    if (vars != NULL && !json_is_object(vars)) {
        json_decref(vars);
        vars = NULL;
    }
    m = vars ? json_object_get(vars, "messages") : NULL;
    if (json_is_array(m)) {
        memset(&chat, 0, sizeof(chat));
        chat.messages = m;
        chat.tools = json_object_get(vars, "tools");
        chat.documents = json_object_get(vars, "documents");
        chat.extra = json_object_get(vars, "extra");
        chat.add_generation_prompt =
            json_is_true(json_object_get(vars, "add_generation_prompt"));
        chat.continue_final_message =
            json_is_true(json_object_get(vars, "continue_final_message"));
        fuzz_check_render(t, NULL, &chat);
    } else {
        fuzz_check_render(t, vars, NULL);
    }
    json_decref(vars);
    infer_jinja_free(t);
}

/* 'C': a conversation of the fuzz data's messages for a real template. */
static void
fuzz_conversation(const char *s, size_t n)
{
    infer_jinja_chat_t   chat;
    json_t              *msgs, *m, *text, *extra;
    const char          *p, *end = s + n, *next;
    unsigned char        r;
    int                  k, count = 0;

    if (fuzz_ntmpl == 0 || n == 0) {
        return;
    }
    k = (unsigned char) s[0] % fuzz_ntmpl;
    msgs = json_array();
    for (p = s + 1; p < end && count < FUZZ_MAX_MSG; p = next + 1) {
        next = memchr(p, '\0', (size_t) (end - p));
        if (next == NULL) {
            next = end;
        }
        r = p < next ? (unsigned char) *p : 0;
        text = json_stringn(p + (p < next), (size_t) (next - p)
                                            - (p < next));
        if (text == NULL) {
            continue;               /* not UTF-8: no client sends that */
        }
        m = json_pack("{s:s, s:o}", "role", fuzz_roles[r % 4], "content",
                      text);
        if (r & 0x10) {
            json_object_set_new(m, "tool_calls", json_pack(
                "[{s:s, s:s, s:{s:s, s:{s:s}}}]", "id", "call00001",
                "type", "function", "function", "name", "get_weather",
                "arguments", "city", json_string_value(text)));
        }
        if (r & 0x20) {
            json_object_set_new(m, "reasoning_content", json_string("hm"));
        }
        json_array_append_new(msgs, m);
        count++;
    }
    extra = json_pack("{s:s, s:s, s:b}", "bos_token", "<s>", "eos_token",
                      "</s>", "enable_thinking", (s[0] & 0x40) != 0);
    memset(&chat, 0, sizeof(chat));
    chat.messages = msgs;
    chat.tools = (s[0] & 0x80) ? fuzz_tools : NULL;
    chat.extra = extra;
    chat.add_generation_prompt = (s[0] & 0x20) != 0;
    chat.continue_final_message = !chat.add_generation_prompt
                                  && (s[0] & 0x10) != 0;
    FUZZ_SAY("template %d, %d messages", k, count);
    fuzz_check_render(fuzz_tmpl[k], NULL, &chat);
    json_decref(msgs);
    json_decref(extra);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *s = (const char *) data;

    if (size == 0) {
        return 0;
    }
    if (s[0] == 'C') {
        fuzz_conversation(s + 1, size - 1);
    } else {
        fuzz_template(s + 1, size - 1);
    }
    return 0;
}
