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
            ok(good, "%s", name);
            if (!good) {
                diag("got:  %s", out ? out : infer_jinja_strerror(&err, buf,
                                                                  sizeof(buf)));
                diag("want: %s", json_string_value(want_out));
            }
        } else {
            good = out == NULL && same_error(&err,
                                             json_string_value(want_err));
            ok(good, "%s: %s", name, json_string_value(want_err));
            if (!good) {
                diag("got: %s", out ? out : infer_jinja_strerror(&err, buf,
                                                                 sizeof(buf)));
            }
        }
        free(out);
        infer_jinja_free(t);
    }
    json_decref(ref);
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
    return done_testing();
}
