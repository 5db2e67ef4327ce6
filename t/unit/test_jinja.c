/*
 * The Jinja interpreter against Hugging Face transformers, byte for byte.
 *
 * t/data/chat/NAME.json holds what transformers' apply_chat_template
 * (tokenize=False) returned, or raised, for ../shared/chat_templates/
 * NAME.jinja and every case of t/data/chat/corpus.json, with
 * add_generation_prompt true and false; t/data/chat/snippets.json what
 * jinja2 in transformers' environment made of small templates that pin
 * down one construct each (whitespace control, scoping, filters, errors).
 * tools/ref/chat_templates.py wrote both; this test renders the same with
 * src/proto/jinja.c and compares.  Then the limits: memory, steps, output,
 * nesting; and syntax errors with their line and column.
 *
 * JINJA_DIFF=1 prints where each mismatch starts.
 */
#include <jansson.h>
#include <pthread.h>
#include <time.h>

#include "tap.h"
#include "jinja.h"

static struct tm  clock_tm;
static int        show_diff;

/* "YYYY-MM-DD HH:MM:SS" as a local time with its weekday and yearday. */
static void
parse_clock(const char *s)
{
    memset(&clock_tm, 0, sizeof(clock_tm));
    sscanf(s, "%d-%d-%d %d:%d:%d", &clock_tm.tm_year, &clock_tm.tm_mon,
           &clock_tm.tm_mday, &clock_tm.tm_hour, &clock_tm.tm_min,
           &clock_tm.tm_sec);
    clock_tm.tm_year -= 1900;
    clock_tm.tm_mon -= 1;
    clock_tm.tm_isdst = -1;
    mktime(&clock_tm);
}

static void
diff(const char *what, const char *got, size_t glen, const char *want,
    size_t wlen)
{
    size_t  i = 0, from;

    if (!show_diff) {
        return;
    }
    while (i < glen && i < wlen && got[i] == want[i]) {
        i++;
    }
    from = i > 60 ? i - 60 : 0;
    diag("%s: differs at byte %zu (got %zu, want %zu bytes)", what, i, glen,
         wlen);
    diag("  got:  %.*s", (int) (glen - from < 160 ? glen - from : 160),
         got + from);
    diag("  want: %.*s", (int) (wlen - from < 160 ? wlen - from : 160),
         want + from);
}

/* The exception as transformers' message, cut where ours is cut. */
static int
same_error(const infer_jinja_error_t *err, const char *want)
{
    char    got[sizeof(err->type) + sizeof(err->message) + 4];
    size_t  n;

    infer_jinja_strerror(err, got, sizeof(got));
    n = strlen(got);
    if (strlen(err->message) + 1 == sizeof(err->message)) {
        /* ours was truncated: compare what it kept */
        return strncmp(got, want, n - 4) == 0;
    }
    return strcmp(got, want) == 0;
}

static json_t *
case_named(json_t *cases, const char *name)
{
    size_t   i;
    json_t  *c;

    json_array_foreach(cases, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
        {
            return c;
        }
    }
    return NULL;
}

/* Renders one case as the reference script called transformers. */
static int
render_case(const infer_jinja_tmpl_t *t, json_t *corpus, const char *tname,
    json_t *r, int quiet)
{
    infer_jinja_limits_t  lim;
    infer_jinja_error_t   err;
    infer_jinja_chat_t    chat;
    json_t               *c, *extra, *want_out, *want_err;
    char                 *out, what[256], buf[600];
    size_t                len;
    int                   ok;

    c = case_named(json_object_get(corpus, "cases"),
                   json_string_value(json_object_get(r, "case")));
    if (c == NULL) {
        diag("%s: no case %s in the corpus", tname,
             json_string_value(json_object_get(r, "case")));
        return 0;
    }
    extra = json_deep_copy(json_object_get(corpus, "common"));
    json_object_update(extra, json_object_get(json_object_get(corpus,
                                                 "template_vars"), tname));
    json_object_update(extra, json_object_get(c, "kwargs"));
    memset(&chat, 0, sizeof(chat));
    chat.messages = json_object_get(c, "messages");
    chat.tools = json_object_get(c, "tools");
    chat.documents = json_object_get(c, "documents");
    chat.extra = extra;
    chat.add_generation_prompt =
        json_is_true(json_object_get(r, "add_generation_prompt"));
    chat.continue_final_message =
        json_is_true(json_object_get(c, "continue_final_message"));
    memset(&lim, 0, sizeof(lim));
    lim.now = &clock_tm;

    out = infer_jinja_render_chat(t, &chat, &lim, &len, &err);
    snprintf(what, sizeof(what), "%s %s agp=%d", tname,
             json_string_value(json_object_get(c, "name")),
             chat.add_generation_prompt);
    want_out = json_object_get(r, "output");
    want_err = json_object_get(r, "error");
    if (want_out != NULL) {
        ok = out != NULL && len == json_string_length(want_out)
             && memcmp(out, json_string_value(want_out), len) == 0;
        if (!ok && !quiet) {
            if (out == NULL) {
                diag("%s: %s", what, infer_jinja_strerror(&err, buf,
                                                          sizeof(buf)));
            } else {
                diff(what, out, len, json_string_value(want_out),
                     json_string_length(want_out));
            }
        }
    } else {
        ok = out == NULL && same_error(&err, json_string_value(want_err));
        if (!ok && !quiet) {
            diag("%s: want %s", what, json_string_value(want_err));
            diag("%s: got  %s", what, out ? "(a rendering)"
                                          : infer_jinja_strerror(&err, buf,
                                                                 sizeof(buf)));
        }
    }
    free(out);
    json_decref(extra);
    return ok;
}

static void
test_template(json_t *corpus, const char *path)
{
    infer_jinja_tmpl_t   *t;
    infer_jinja_error_t   err;
    json_error_t          jerr;
    json_t               *ref, *renders, *r;
    const char           *tname;
    char                  tpath[1024], *src;
    size_t                i, len, good = 0;

    ref = json_load_file(path, 0, &jerr);
    if (ref == NULL) {
        ok(0, "%s: %s", path, jerr.text);
        return;
    }
    tname = json_string_value(json_object_get(ref, "template"));
    renders = json_object_get(ref, "renders");
    snprintf(tpath, sizeof(tpath), "%s/chat_templates/%s", shared_dir(),
             tname);
    src = tap_read_file(tpath, &len);
    if (src == NULL) {
        ok(0, "%s: cannot read %s", tname, tpath);
        json_decref(ref);
        return;
    }
    t = infer_jinja_parse(src, len, &err);
    if (t == NULL) {
        ok(0, "%s parses: %s:%d:%d: %s", tname, err.type, err.line,
           err.column, err.message);
        free(src);
        json_decref(ref);
        return;
    }
    json_array_foreach(renders, i, r) {
        good += render_case(t, corpus, tname, r, 0);
    }
    ok(good == json_array_size(renders), "%s: %zu of %zu renders exact",
       tname, good, json_array_size(renders));
    infer_jinja_free(t);
    free(src);
    json_decref(ref);
}

static void
test_corpus(void)
{
    char          path[1024], dir[] = "t/data/chat";
    json_error_t  jerr;
    json_t       *corpus, *list;
    size_t        i;
    json_t       *name;

    snprintf(path, sizeof(path), "%s/corpus.json", dir);
    corpus = json_load_file(path, 0, &jerr);
    if (corpus == NULL) {
        ok(0, "%s: %s", path, jerr.text);
        return;
    }
    parse_clock(json_string_value(json_object_get(corpus, "clock")));
    list = json_object_get(corpus, "templates");
    json_array_foreach(list, i, name) {
        snprintf(path, sizeof(path), "%s/%s", dir, json_string_value(name));
        test_template(corpus, path);
    }
    ok(json_array_size(list) > 0, "%zu templates in the corpus",
       json_array_size(list));
    json_decref(corpus);
}

/*
 * The snippets: each renders as jinja2 rendered it, or fails as it
 * failed.  A syntax error need not say the same words, but must be a
 * parse error on the line jinja2 names (jinja2 defers some, such as
 * extends without a loader, to the render: we refuse them when parsing).
 */
static void
test_snippets(void)
{
    infer_jinja_limits_t   lim;
    infer_jinja_tmpl_t    *t;
    infer_jinja_error_t    err;
    json_error_t           jerr;
    json_t                *ref, *vars, *sn, *want_out, *want_err, *line;
    const char            *name, *src;
    char                  *out, buf[600];
    size_t                 i, len;
    int                    good;

    ref = json_load_file("t/data/chat/snippets.json", 0, &jerr);
    if (!ok(ref != NULL, "snippets.json loads")) {
        diag("%s", jerr.text);
        return;
    }
    vars = json_object_get(ref, "vars");
    memset(&lim, 0, sizeof(lim));
    lim.now = &clock_tm;
    json_array_foreach(json_object_get(ref, "snippets"), i, sn) {
        name = json_string_value(json_object_get(sn, "name"));
        src = json_string_value(json_object_get(sn, "template"));
        want_out = json_object_get(sn, "output");
        want_err = json_object_get(sn, "error");
        line = json_object_get(sn, "line");
        t = infer_jinja_parse(src, json_string_length(
                                  json_object_get(sn, "template")), &err);
        if (strncmp(name, "syntax_", 7) == 0 && want_err != NULL) {
            good = t == NULL
                   && (line == NULL || json_integer_value(line) == err.line);
            ok(good, "%s: a syntax error at line %d:%d (%s)", name, err.line,
               err.column, t ? "parsed" : err.message);
            if (!good) {
                diag("want %s at line %lld", json_string_value(want_err),
                     (long long) json_integer_value(line));
            }
            infer_jinja_free(t);
            continue;
        }
        if (t == NULL) {
            ok(0, "%s parses: %d:%d %s", name, err.line, err.column,
               err.message);
            continue;
        }
        out = infer_jinja_render(t, vars, &lim, &len, &err);
        if (want_out != NULL) {
            good = out != NULL && len == json_string_length(want_out)
                   && memcmp(out, json_string_value(want_out), len) == 0;
        } else {
            good = out == NULL && same_error(&err,
                                             json_string_value(want_err));
        }
        ok(good, "%s", name);
        if (!good) {
            diag("got:  %s", out ? out : infer_jinja_strerror(&err, buf,
                                                              sizeof(buf)));
            diag("want: %s", json_string_value(want_out ? want_out
                                                        : want_err));
        }
        free(out);
        infer_jinja_free(t);
    }
    json_decref(ref);
}

/* Renders src with vars (JSON text or NULL) under lim; the text, or NULL
 * with err. */
static char *
render_text(const char *src, const char *vars, infer_jinja_limits_t *lim,
    infer_jinja_error_t *err)
{
    infer_jinja_tmpl_t  *t;
    json_error_t         jerr;
    json_t              *v = vars ? json_loads(vars, 0, &jerr) : NULL;
    char                *out;
    size_t               len;

    t = infer_jinja_parse(src, strlen(src), err);
    if (t == NULL) {
        json_decref(v);
        return NULL;
    }
    out = infer_jinja_render(t, v, lim, &len, err);
    infer_jinja_free(t);
    json_decref(v);
    return out;
}

static void
expect_error(const char *what, const char *src, infer_jinja_limits_t *lim,
    const char *type, const char *words)
{
    infer_jinja_error_t  err;
    char                *out = render_text(src, NULL, lim, &err);

    ok(out == NULL && strcmp(err.type, type) == 0
       && strstr(err.message, words) != NULL, "%s: %s: %s", what, err.type,
       out ? "(rendered)" : err.message);
    free(out);
}

static char *
repeat(const char *head, const char *unit, int n, const char *tail)
{
    size_t  hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char   *s = malloc(hl + ul * n + tl + 1), *p = s;
    int     i;

    memcpy(p, head, hl);
    p += hl;
    for (i = 0; i < n; i++) {
        memcpy(p, unit, ul);
        p += ul;
    }
    memcpy(p, tail, tl + 1);
    return s;
}

static const struct {
    const char  *what;
    const char  *head;
    const char  *unit;
    int          n;
    const char  *tail;
} deep_srcs[] = {
    { "300 parentheses", "{{ ", "(", 300, "1 }}" },
    { "300 unary minus", "{{ ", "-", 300, "1 }}" },
    { "a sum of 20000 terms", "{{ 1", "+1", 20000, " }}" },
    { "20000 filters in a row", "{{ x", "|trim", 20000, " }}" },
    { "300 nested ifs", "", "{% if 1 %}", 300, "" }
};

/* Every bound holds, and says which it was. */
static void
test_limits(void)
{
    infer_jinja_limits_t  lim;
    infer_jinja_error_t   err;
    infer_jinja_tmpl_t   *t;
    struct timespec       t0, t1;
    json_t               *deep, *vars;
    char                 *src, *big;
    size_t                len;
    int                   i;
    double                secs;

    memset(&lim, 0, sizeof(lim));
    lim.steps = 100000;
    expect_error("steps", "{% for i in range(100000) %}{% for j in "
                 "range(100000) %}{% endfor %}{% endfor %}", &lim,
                 "LimitError", "budget of 100000 steps");
    lim.steps = 0;
    lim.output = 100;
    expect_error("output", "{% for i in range(100) %}xx{% endfor %}", &lim,
                 "LimitError", "writes more than 100 bytes");
    expect_error("output of a repetition", "{{ 'ab' * 1000 }}", &lim,
                 "LimitError", "repetition");
    lim.output = 0;
    lim.memory = 1 << 20;
    expect_error("memory", "{% set ns = namespace(s='x') %}{% for i in "
                 "range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 &lim, "LimitError", "more than 1048576 bytes of memory");
    lim.memory = 0;
    expect_error("recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}"
                 "{{ f(0) }}", &lim, "RecursionError",
                 "maximum recursion depth exceeded");
    expect_error("a tuple nested 5000 deep", "{% set ns = namespace(t=()) %}"
                 "{% for i in range(5000) %}{% set ns.t = (ns.t,) %}"
                 "{% endfor %}{{ ns.t in {} }}", &lim, "LimitError",
                 "nests deeper");
    expect_error("a list nested 5000 deep", "{% set ns = namespace(t=[]) %}"
                 "{% for i in range(5000) %}{% set ns.t = [ns.t] %}"
                 "{% endfor %}{{ ns.t == ns.t }}{{ ns.t|tojson }}", &lim,
                 "LimitError", "nests deeper");
    expect_error("range", "{{ range(100001)|length }}", &lim,
                 "OverflowError", "MAX_RANGE (100000)");

    /* the default budget stops an endless template within seconds */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_error("default budget", "{% set r = range(100000) %}{% for i in "
                 "r %}{% for j in r %}{{ '' }}{% endfor %}{% endfor %}", NULL,
                 "LimitError", "budget of");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    ok(secs < 20, "the default budget ran out in %.2f s", secs);

    /* nesting is refused while parsing, whatever builds it */
    for (i = 0; i < (int) (sizeof(deep_srcs) / sizeof(deep_srcs[0])); i++) {
        src = repeat(deep_srcs[i].head, deep_srcs[i].unit, deep_srcs[i].n,
                     deep_srcs[i].tail);
        t = infer_jinja_parse(src, strlen(src), &err);
        ok(t == NULL && err.line == 1, "%s: %s", deep_srcs[i].what,
           err.message);
        free(src);
    }
    big = malloc(INFER_JINJA_TEMPLATE + 2);
    memset(big, 'x', INFER_JINJA_TEMPLATE + 1);
    big[INFER_JINJA_TEMPLATE + 1] = '\0';
    t = infer_jinja_parse(big, INFER_JINJA_TEMPLATE + 1, &err);
    ok(t == NULL,
       "a template over %u bytes: %s", INFER_JINJA_TEMPLATE, err.message);
    free(big);
    t = infer_jinja_parse("a\n\xff{{ 1 }}", 10, &err);
    ok(t == NULL && err.line == 2
       && err.column == 1, "bytes that are not UTF-8: %d:%d %s", err.line,
       err.column, err.message);

    /* input that nests deeper than the bound */
    deep = json_array();
    for (i = 0; i < 3000; i++) {
        deep = json_pack("[o]", deep);
    }
    vars = json_pack("{so}", "x", deep);
    t = infer_jinja_parse("{{ x|length }}", 14, &err);
    src = infer_jinja_render(t, vars, NULL, &len, &err);
    ok(src == NULL && strcmp(err.type, "LimitError") == 0,
       "input nested 3000 deep: %s", err.message);
    infer_jinja_free(t);
    json_decref(vars);
}

static const char *const  thread_src =
    "{% for m in messages %}<{{ m.role }}>{{ m.content|trim }}"
    "{% endfor %}{{ strftime_now('%Y') }}";

static void *
render_thread(void *arg)
{
    infer_jinja_tmpl_t   *t = arg;
    infer_jinja_error_t   err;
    json_error_t          jerr;
    json_t               *v;
    char                 *out;
    size_t                len;
    int                   i, same = 1;

    v = json_loads("{\"messages\": [{\"role\": \"user\", \"content\": "
                   "\" hi \"}]}", 0, &jerr);
    for (i = 0; i < 2000 && same; i++) {
        infer_jinja_limits_t  lim;

        memset(&lim, 0, sizeof(lim));
        lim.now = &clock_tm;
        out = infer_jinja_render(t, v, &lim, &len, &err);
        same = out != NULL && strcmp(out, "<user>hi2026") == 0;
        free(out);
    }
    json_decref(v);
    return same ? arg : NULL;
}

/* The entry points' contracts. */
static void
test_api(void)
{
    infer_jinja_limits_t   lim;
    infer_jinja_error_t    err;
    infer_jinja_chat_t     chat;
    infer_jinja_tmpl_t    *t;
    json_error_t           jerr;
    json_t                *msgs, *extra;
    pthread_t              th[2];
    void                  *res[2];
    char                  *out, *before, *after, buf[600];
    size_t                 len;

    memset(&lim, 0, sizeof(lim));
    lim.now = &clock_tm;
    out = render_text("a{{ x }}b", NULL, &lim, &err);
    is_str(out, "ab", "no variables: an undefined prints nothing");
    free(out);

    out = render_text("line 1\nline 2 {{ 1 }}\n  {{ x.y }}", NULL, &lim,
                      &err);
    ok(out == NULL && err.line == 3 && err.column == 6,
       "a render error says where: %d:%d", err.line, err.column);
    is_str(infer_jinja_strerror(&err, buf, sizeof(buf)),
           "UndefinedError: 'x' is undefined", "strerror is Python's");

    out = "{% for m in messages %}{{ m.content }}|{% endfor %}";
    t = infer_jinja_parse(out, strlen(out), &err);
    msgs = json_loads("[{\"role\": \"user\", \"content\": \"Hi\"}, "
                      "{\"role\": \"assistant\", \"content\": \"Hel\", "
                      "\"x\": null}]", 0, &jerr);
    before = json_dumps(msgs, JSON_COMPACT);
    memset(&chat, 0, sizeof(chat));
    chat.messages = msgs;
    chat.continue_final_message = 1;
    out = infer_jinja_render_chat(t, &chat, &lim, &len, &err);
    after = json_dumps(msgs, JSON_COMPACT);
    is_str(out, "Hi|Hel", "continue_final_message cuts after the message");
    is_str(after, before, "and leaves the input as it came");
    free(out);
    free(before);
    free(after);

    chat.continue_final_message = 0;
    extra = json_loads("{\"tools\": []}", 0, &jerr);
    chat.extra = extra;
    out = infer_jinja_render_chat(t, &chat, &lim, &len, &err);
    ok(out == NULL && strcmp(err.type, "TypeError") == 0,
       "an extra variable named tools: %s", err.message);
    json_decref(extra);
    chat.extra = NULL;

    json_array_clear(msgs);
    out = infer_jinja_render_chat(t, &chat, &lim, &len, &err);
    ok(out == NULL && strcmp(err.type, "ValueError") == 0,
       "no messages: %s", err.message);
    json_decref(msgs);
    infer_jinja_free(t);

    /* one parsed template, renders in parallel */
    t = infer_jinja_parse(thread_src, strlen(thread_src), &err);
    pthread_create(&th[0], NULL, render_thread, t);
    pthread_create(&th[1], NULL, render_thread, t);
    pthread_join(th[0], &res[0]);
    pthread_join(th[1], &res[1]);
    ok(res[0] == t && res[1] == t, "two threads render one template");
    infer_jinja_free(t);
}

int
main(void)
{
    char  path[1024];
    FILE *f;

    show_diff = getenv("JINJA_DIFF") != NULL;
    snprintf(path, sizeof(path), "%s/chat_templates/README.md",
             shared_dir());
    f = fopen(path, "r");
    if (f == NULL) {
        skip_all("no ../shared/chat_templates");
    }
    fclose(f);
    test_corpus();
    test_snippets();
    test_limits();
    test_api();
    return done_testing();
}
