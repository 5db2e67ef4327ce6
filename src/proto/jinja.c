/*
 * The Jinja interpreter's entry points: the arena every parse and render
 * allocates from, errors, variables from JSON, and apply_chat_template's
 * own steps around the render (transformers'
 * utils/chat_template_utils.py and tokenization_utils_base.py).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_impl.h"

/* Chunks grow from 64 KiB to 8 MiB, so a small render costs one malloc
 * and a large one a few dozen. */
#define JJ_CHUNK_MIN    (64u << 10)
#define JJ_CHUNK_MAX    (8u << 20)
#define JJ_ALIGN        16

/* Nesting of evaluation (and of JSON input): what bounds the C stack. */
#define JJ_DEPTH_MAX    1000

/* What the parse of a template may hold (and its tokens, apart), per
 * byte of template: published ones need up to 60, and 150 when small. */
#define JJ_PARSE_MEMORY_PER_BYTE  256

struct jj_chunk_s {
    jj_chunk_t  *next;
    size_t       size;
    size_t       used;
    size_t       last;      /* offset of the latest allocation */
    _Alignas(JJ_ALIGN) unsigned char data[];
};

static size_t
jj_round(size_t n)
{
    return (n + JJ_ALIGN - 1) & ~(size_t) (JJ_ALIGN - 1);
}

void *
jj_arena_alloc(jj_ctx_t *c, jj_arena_t *a, size_t n)
{
    jj_chunk_t  *ch = a->head;
    size_t       size;
    void        *p;

    n = jj_round(n ? n : 1);
    if (ch == NULL || ch->size - ch->used < n) {
        size = ch ? ch->size * 2 : JJ_CHUNK_MIN;
        if (size > JJ_CHUNK_MAX) {
            size = JJ_CHUNK_MAX;
        }
        if (size < n) {
            size = n;
        }
        if (n > a->limit || a->total + size + sizeof(jj_chunk_t) > a->limit) {
            /* the last chunk may be smaller than the doubling wants */
            size = n;
            if (a->total + size + sizeof(jj_chunk_t) > a->limit) {
                jj_fail(c, "LimitError", 0, 0,
                        "the template needs more than %zu bytes of memory",
                        a->limit);
            }
        }
        ch = malloc(sizeof(jj_chunk_t) + size);
        if (ch == NULL) {
            jj_fail(c, "MemoryError", 0, 0, "out of memory");
        }
        ch->next = a->head;
        ch->size = size;
        ch->used = 0;
        ch->last = 0;
        a->head = ch;
        a->total += size + sizeof(jj_chunk_t);
    }
    p = ch->data + ch->used;
    ch->last = ch->used;
    ch->used += n;
    return p;
}

/* Grows the latest allocation in place when it can: a buffer being
 * appended to costs no copies while nothing else is allocated. */
void *
jj_arena_grow(jj_ctx_t *c, jj_arena_t *a, void *p, size_t old, size_t n)
{
    jj_chunk_t  *ch = a->head;
    void        *q;

    if (p != NULL && ch != NULL && (unsigned char *) p == ch->data + ch->last
        && ch->last + jj_round(n) <= ch->size)
    {
        ch->used = ch->last + jj_round(n);
        return p;
    }
    q = jj_arena_alloc(c, a, n);
    if (old > 0) {
        memcpy(q, p, old < n ? old : n);
    }
    return q;
}

char *
jj_strdup(jj_ctx_t *c, const char *s, size_t n)
{
    char  *p = jj_alloc(c, n + 1);

    if (n > 0) {
        memcpy(p, s, n);
    }
    p[n] = '\0';
    return p;
}

void
jj_arena_free(jj_arena_t *a)
{
    jj_chunk_t  *ch, *next;

    for (ch = a->head; ch != NULL; ch = next) {
        next = ch->next;
        free(ch);
    }
    a->head = NULL;
    a->total = 0;
}

/* Copies at most size-1 bytes of s, not cutting a UTF-8 character. */
static void
jj_copy_text(char *dst, size_t size, const char *s)
{
    size_t  n = strlen(s);

    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80) {
            n--;
        }
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

void
jj_vfail(jj_ctx_t *c, const char *type, int line, int col, const char *fmt,
    va_list ap)
{
    char  msg[sizeof(c->err->message) + 8];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    jj_copy_text(c->err->type, sizeof(c->err->type), type);
    jj_copy_text(c->err->message, sizeof(c->err->message), msg);
    c->err->line = line;
    c->err->column = col;
    longjmp(c->jmp, 1);
}

void
jj_fail(jj_ctx_t *c, const char *type, int line, int col, const char *fmt,
    ...)
{
    va_list  ap;

    va_start(ap, fmt);
    jj_vfail(c, type, line, col, fmt, ap);
}

const char *
infer_jinja_strerror(const infer_jinja_error_t *err, char *buf, size_t size)
{
    snprintf(buf, size, "%s: %s", err->type, err->message);
    return buf;
}

static void
jj_err_clear(infer_jinja_error_t *err)
{
    err->type[0] = '\0';
    err->message[0] = '\0';
    err->line = 0;
    err->column = 0;
}

/* ---- parse -------------------------------------------------------------- */

static int
jj_parse_guarded(jj_ctx_t *c, infer_jinja_tmpl_t *t, const char *src,
    size_t len)
{
    jj_tokens_t  toks;
    char        *norm;
    size_t       n;

    if (setjmp(c->jmp)) {
        return -1;
    }
    norm = jj_normalize(c, src, len, &n);
    jj_lex(c, norm, n, &toks);
    t->root = jj_parse(c, &toks);
    t->src = norm;
    t->len = n;
    return 0;
}

infer_jinja_tmpl_t *
infer_jinja_parse(const char *src, size_t len, infer_jinja_error_t *err)
{
    infer_jinja_tmpl_t  *t;
    jj_ctx_t             c;
    int                  rc;

    jj_err_clear(err);
    if (len > INFER_JINJA_TEMPLATE) {
        snprintf(err->type, sizeof(err->type), "TemplateSyntaxError");
        snprintf(err->message, sizeof(err->message),
                 "the template is %zu bytes, more than %u", len,
                 INFER_JINJA_TEMPLATE);
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err->type, sizeof(err->type), "MemoryError");
        snprintf(err->message, sizeof(err->message), "out of memory");
        return NULL;
    }
    memset(&c, 0, sizeof(c));
    c.arena.limit = (len + 1024) * JJ_PARSE_MEMORY_PER_BYTE;
    c.scratch.limit = c.arena.limit;
    c.err = err;
    c.depth_max = JJ_DEPTH_MAX;
    rc = jj_parse_guarded(&c, t, src, len);
    jj_arena_free(&c.scratch);
    if (rc != 0) {
        jj_arena_free(&c.arena);
        free(t);
        return NULL;
    }
    t->arena = c.arena;
    return t;
}

void
infer_jinja_free(infer_jinja_tmpl_t *t)
{
    if (t != NULL) {
        jj_arena_free(&t->arena);
        free(t);
    }
}

/* ---- variables from JSON ------------------------------------------------ */

static jj_value_t
jj_from_json(jj_render_t *r, json_t *j)
{
    jj_value_t   v, k;
    const char  *key;
    json_t      *m;
    size_t       i;
    void        *it;

    jj_step(r, 1);
    if (++r->c.depth > r->c.depth_max) {
        jj_raise(r, "LimitError", "the input nests deeper than %u",
                 r->c.depth_max);
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        v = jj_dict_new(r, (uint32_t) json_object_size(j));
        for (it = json_object_iter(j); it != NULL;
             it = json_object_iter_next(j, it))
        {
            key = json_object_iter_key(it);
#if JANSSON_VERSION_HEX >= 0x020e00
            k = jj_str(r, key, json_object_iter_key_len(it));
#else
            k = jj_str(r, key, strlen(key));
#endif
            jj_dict_set(r, &v, k, jj_from_json(r, json_object_iter_value(it)));
        }
        break;
    case JSON_ARRAY:
        v = jj_list_new(r, (uint32_t) json_array_size(j), 0);
        json_array_foreach(j, i, m) {
            jj_list_push(r, &v, jj_from_json(r, m));
        }
        break;
    case JSON_STRING:
        if (json_string_length(j) > UINT32_MAX / 2) {
            jj_raise(r, "LimitError", "a string of the input is too long");
        }
        v = jj_str(r, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        v = jj_int(json_integer_value(j));
        break;
    case JSON_REAL:
        v = jj_float(json_real_value(j));
        break;
    case JSON_TRUE:
        v = jj_bool(1);
        break;
    case JSON_FALSE:
        v = jj_bool(0);
        break;
    default:
        v = jj_none();
        break;
    }
    r->c.depth--;
    return v;
}

/* Every member of the JSON object vars as a variable. */
static void
jj_scope_from_json(jj_render_t *r, jj_scope_t *sc, json_t *vars)
{
    const char  *key;
    void        *it;

    if (vars == NULL) {
        return;
    }
    if (!json_is_object(vars)) {
        jj_raise(r, "TypeError", "the variables must be a JSON object");
    }
    for (it = json_object_iter(vars); it != NULL;
         it = json_object_iter_next(vars, it))
    {
        key = json_object_iter_key(it);
        jj_scope_set(r, sc, key, strlen(key),
                     jj_from_json(r, json_object_iter_value(it)));
    }
}

/* ---- render ------------------------------------------------------------- */

static void
jj_render_init(jj_render_t *r, const infer_jinja_limits_t *lim,
    infer_jinja_error_t *err)
{
    time_t  now;

    memset(r, 0, sizeof(*r));
    r->c.err = err;
    r->c.depth_max = JJ_DEPTH_MAX;
    r->c.arena.limit = lim && lim->memory ? lim->memory : INFER_JINJA_MEMORY;
    r->out_max = lim && lim->output ? lim->output : INFER_JINJA_OUTPUT;
    r->steps_max = lim && lim->steps ? lim->steps : INFER_JINJA_STEPS;
    if (lim && lim->now) {
        r->now = *lim->now;
    } else {
        now = time(NULL);
        localtime_r(&now, &r->now);
    }
}

/* The result, copied out of the arena. */
static char *
jj_result(jj_render_t *r, const char *s, size_t n, size_t *len)
{
    char  *out = malloc(n + 1);

    if (out == NULL) {
        jj_raise(r, "MemoryError", "out of memory");
    }
    memcpy(out, s, n);
    out[n] = '\0';
    if (len != NULL) {
        *len = n;
    }
    return out;
}

static char *
jj_render_guarded(jj_render_t *r, const infer_jinja_tmpl_t *t, json_t *vars,
    size_t *len)
{
    jj_scope_t  *globals;
    jj_value_t   out;

    if (setjmp(r->c.jmp)) {
        return NULL;
    }
    globals = jj_alloc(&r->c, sizeof(jj_scope_t));
    memset(globals, 0, sizeof(*globals));
    jj_scope_from_json(r, globals, vars);
    out = jj_render_tree(r, t->root, globals);
    return jj_result(r, out.u.s, out.len, len);
}

char *
infer_jinja_render(const infer_jinja_tmpl_t *t, json_t *vars,
    const infer_jinja_limits_t *lim, size_t *len, infer_jinja_error_t *err)
{
    jj_render_t  r;
    char        *out;

    jj_err_clear(err);
    jj_render_init(&r, lim, err);
    out = jj_render_guarded(&r, t, vars, len);
    jj_arena_free(&r.c.arena);
    return out;
}

/* ---- apply_chat_template ------------------------------------------------ */

/* What transformers appends to the final message and cuts the rendering
 * at, for continue_final_message. */
#define JJ_CONTINUE_TAG  "CONTINUE_FINAL_MESSAGE_TAG "

/* The names render_jinja_template() and Template.render() take
 * themselves: a kwarg of the same name is Python's TypeError. */
static const char *const jj_chat_reserved[] = {
    "messages", "tools", "documents", "add_generation_prompt",
    "continue_final_message", "chat_template",
    "return_assistant_tokens_mask", "conversations", NULL
};

/* Python's str.strip(): [*b, *e) in s without the whitespace around. */
static void
jj_strip_span(const char *s, size_t n, size_t *b, size_t *e)
{
    size_t   i = 0, j, k;
    int32_t  ch;

    while (i < n) {
        j = i;
        ch = jj_utf8_next(s, n, &j);
        if (!jj_py_space(ch)) {
            break;
        }
        i = j;
    }
    *b = i;
    *e = n;
    for (k = i; k < n; ) {
        ch = jj_utf8_next(s, n, &k);
        if (!jj_py_space(ch)) {
            *e = k;
        }
    }
}

/*
 * _normalize_chat_messages() then _alias_reasoning_fields(): keys whose
 * value is None dropped, and a message with reasoning under any of its
 * names gets it as "thinking" (first) and "reasoning_content" too.
 */
static jj_value_t
jj_chat_message(jj_render_t *r, jj_value_t m)
{
    static const char *const  names[] = {
        "reasoning_content", "thinking", "reasoning"
    };
    jj_value_t               out, alias, *p, *thinking;
    uint32_t                 i;
    jj_buf_t                 b;

    if (m.type != JJ_DICT) {
        memset(&b, 0, sizeof(b));
        jj_write_repr(r, &b, m);
        jj_raise(r, "TypeError", "Chat messages should be dicts, dataclasses "
                 "or pydantic models, but got %.*s.", (int) b.len, b.p);
    }
    out = jj_dict_new(r, m.u.dict->n + 2);
    for (i = 0; i < m.u.dict->n; i++) {
        if (m.u.dict->val[i].type != JJ_NONE) {
            jj_dict_set(r, &out, m.u.dict->key[i], m.u.dict->val[i]);
        }
    }
    alias.type = JJ_UNDEF;
    for (i = 0; i < 3 && alias.type == JJ_UNDEF; i++) {
        p = jj_dict_gets(out.u.dict, names[i], strlen(names[i]));
        if (p != NULL) {
            alias = *p;
        }
    }
    if (alias.type == JJ_UNDEF) {
        return out;
    }
    m = out;
    out = jj_dict_new(r, m.u.dict->n + 2);
    thinking = jj_dict_gets(m.u.dict, "thinking", 8);
    jj_dict_set(r, &out, jj_cstr(r, "thinking"), thinking ? *thinking : alias);
    for (i = 0; i < m.u.dict->n; i++) {
        jj_dict_set(r, &out, m.u.dict->key[i], m.u.dict->val[i]);
    }
    jj_dict_set(r, &out, jj_cstr(r, "reasoning_content"), alias);
    return out;
}

/* Appends the tag to the final message's content, as transformers does
 * (to the last text block of a list); returns what the message said
 * before.  What is changed is copied: the input stays as it came. */
static jj_value_t
jj_chat_tag_final(jj_render_t *r, const infer_jinja_tmpl_t *t,
    jj_value_t *last)
{
    jj_value_t   *content, tag, text, final, blocks, item, copy;
    jj_dict_t    *d;
    uint32_t      i, k;

    tag = jj_cstr(r, JJ_CONTINUE_TAG);
    text = jj_cstr(r, "text");
    content = jj_dict_gets(last->u.dict, "content", 7);
    if (content == NULL) {
        jj_raise(r, "ValueError", "continue_final_message is set but the "
                 "final message has no \"content\" to continue!");
    }
    if (memmem(t->src, t->len, "content", 7) == NULL) {
        jj_raise(r, "ValueError", "continue_final_message is set to "
                 "\"content\" but this is not an accepted field in the "
                 "chat_template");
    }
    if (content->type != JJ_LIST) {
        final = *content;
        jj_dict_set(r, last, jj_cstr(r, "content"),
                    jj_binop(r, JJ_ADD, *content, tag));
        return final;
    }
    blocks = jj_list_new(r, content->u.list->n, content->flags);
    for (i = 0; i < content->u.list->n; i++) {
        jj_list_push(r, &blocks, content->u.list->v[i]);
    }
    for (i = blocks.u.list->n; i-- > 0; ) {
        item = blocks.u.list->v[i];
        if (!jj_contains(r, item, text)) {
            continue;
        }
        final = jj_getitem(r, item, text);
        if (item.type != JJ_DICT) {
            jj_raise(r, "TypeError", "'%s' object does not support item "
                     "assignment", jj_type_name(item));
        }
        d = item.u.dict;
        copy = jj_dict_new(r, d->n);
        for (k = 0; k < d->n; k++) {
            jj_dict_set(r, &copy, d->key[k], d->val[k]);
        }
        jj_dict_set(r, &copy, text, jj_binop(r, JJ_ADD, final, tag));
        blocks.u.list->v[i] = copy;
        jj_dict_set(r, last, jj_cstr(r, "content"), blocks);
        return final;
    }
    jj_raise(r, "ValueError", "continue_final_message is set but we could "
             "not find any text to continue in the final message!");
}

/* Cuts the rendering where the final message ends. */
static void
jj_chat_cut(jj_render_t *r, jj_value_t final, const char *s, size_t *n)
{
    static const char  tag[] = JJ_CONTINUE_TAG;
    const size_t       tn = sizeof(tag) - 1, ts = tn - 1;
    size_t             fb, fe, loc, i;
    const char        *p;

    if (!jj_is_str(final)) {
        jj_raise(r, "AttributeError", "'%s' object has no attribute 'strip'",
                 jj_type_name(final));
    }
    jj_strip_span(final.u.s, final.len, &fb, &fe);
    p = memmem(s, *n, final.u.s + fb, fe - fb);
    if (p == NULL || memmem(s, *n, tag, ts) == NULL) {
        jj_raise(r, "ValueError", "continue_final_message is set but the "
                 "final message does not appear in the chat after applying "
                 "the chat template! This can happen if the chat template "
                 "deletes portions of the final message. Please verify the "
                 "chat template and final message in your chat to ensure "
                 "they are compatible.Final message to continue: %.*s\n"
                 "Rendered chat:\n%.*s", (int) (fe - fb), final.u.s + fb,
                 (int) *n, s);
    }
    loc = 0;
    for (i = 0; i + ts <= *n; i++) {
        if (memcmp(s + i, tag, ts) == 0) {
            loc = i;
        }
    }
    jj_charge(r, *n);
    if (loc + tn <= *n && memcmp(s + loc, tag, tn) == 0) {
        *n = loc;
        return;
    }
    jj_strip_span(s, loc, &fb, &fe);
    /* rstrip only: what leads stays */
    *n = fb == loc ? 0 : fe;
}

static char *
jj_chat_guarded(jj_render_t *r, const infer_jinja_tmpl_t *t,
    const infer_jinja_chat_t *chat, size_t *len)
{
    jj_scope_t          *globals;
    jj_value_t           msgs, v, final;
    const char *const   *name;
    const char          *key;
    size_t               n;
    uint32_t             i;
    void                *it;

    if (setjmp(r->c.jmp)) {
        return NULL;
    }
    if (!json_is_array(chat->messages)) {
        jj_raise(r, "TypeError", "the messages must be a JSON array");
    }
    if (json_array_size(chat->messages) == 0) {
        jj_raise(r, "ValueError", "Cannot apply chat template to an empty "
                 "conversation. Provide at least one message.");
    }
    v = jj_from_json(r, chat->messages);
    msgs = jj_list_new(r, v.u.list->n, 0);
    for (i = 0; i < v.u.list->n; i++) {
        jj_list_push(r, &msgs, jj_chat_message(r, v.u.list->v[i]));
    }
    if (chat->continue_final_message && chat->add_generation_prompt) {
        jj_raise(r, "ValueError", "continue_final_message and "
                 "add_generation_prompt are not compatible. Use "
                 "continue_final_message when you want the model to continue "
                 "the final message, and add_generation_prompt when you want "
                 "to add a header that will prompt it to start a new "
                 "assistant message instead.");
    }
    final = jj_undef();
    if (chat->continue_final_message) {
        final = jj_chat_tag_final(r, t, &msgs.u.list->v[msgs.u.list->n - 1]);
    }

    globals = jj_alloc(&r->c, sizeof(jj_scope_t));
    memset(globals, 0, sizeof(*globals));
    if (chat->extra != NULL && !json_is_object(chat->extra)) {
        jj_raise(r, "TypeError", "the extra variables must be a JSON object");
    }
    if (chat->extra != NULL) {
        for (it = json_object_iter(chat->extra); it != NULL;
             it = json_object_iter_next(chat->extra, it))
        {
            key = json_object_iter_key(it);
            for (name = jj_chat_reserved; *name != NULL; name++) {
                if (strcmp(key, *name) == 0) {
                    jj_raise(r, "TypeError", "apply_chat_template() got "
                             "multiple values for keyword argument '%s'",
                             key);
                }
            }
        }
    }
    jj_scope_set(r, globals, "messages", 8, msgs);
    jj_scope_set(r, globals, "tools", 5,
                 chat->tools ? jj_from_json(r, chat->tools) : jj_none());
    jj_scope_set(r, globals, "documents", 9,
                 chat->documents ? jj_from_json(r, chat->documents)
                                 : jj_none());
    jj_scope_set(r, globals, "add_generation_prompt", 21,
                 jj_bool(chat->add_generation_prompt));
    jj_scope_from_json(r, globals, chat->extra);

    v = jj_render_tree(r, t->root, globals);
    n = v.len;
    if (chat->continue_final_message) {
        jj_chat_cut(r, final, v.u.s, &n);
    }
    return jj_result(r, v.u.s, n, len);
}

char *
infer_jinja_render_chat(const infer_jinja_tmpl_t *t,
    const infer_jinja_chat_t *chat, const infer_jinja_limits_t *lim,
    size_t *len, infer_jinja_error_t *err)
{
    jj_render_t  r;
    char        *out;

    jj_err_clear(err);
    jj_render_init(&r, lim, err);
    out = jj_chat_guarded(&r, t, chat, len);
    jj_arena_free(&r.c.arena);
    return out;
}
