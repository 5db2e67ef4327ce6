/*
 * Values with Python's semantics, as a template sees them through jinja2:
 * str() and repr(), json.dumps (transformers' tojson), ==, <, in, len,
 * truth, iteration, the arithmetic operators, and attribute and item
 * lookup as jinja2's sandbox does it (environment.getattr/getitem: a
 * missing one is an Undefined that remembers why, and raises that when
 * used).  Strings are UTF-8; lengths and indexes count code points.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "jinja_impl.h"

/* ---- constructors ------------------------------------------------------- */

jj_value_t
jj_undef(void)
{
    jj_value_t  v;

    memset(&v, 0, sizeof(v));
    v.type = JJ_UNDEF;
    return v;
}

static jj_undef_t *
jj_undef_info(jj_render_t *r)
{
    jj_undef_t  *u = jj_alloc(&r->c, sizeof(jj_undef_t));

    memset(u, 0, sizeof(*u));
    u->exc = "UndefinedError";
    return u;
}

jj_value_t
jj_undef_hint(jj_render_t *r, const char *exc, const char *fmt, ...)
{
    jj_value_t   v = jj_undef();
    va_list      ap;
    char         buf[400];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    v.u.undef = jj_undef_info(r);
    v.u.undef->hint = jj_strdup(&r->c, buf, strlen(buf));
    if (exc != NULL) {
        v.u.undef->exc = exc;
    }
    return v;
}

jj_value_t
jj_undef_attr(jj_render_t *r, jj_value_t obj, jj_value_t name)
{
    jj_value_t  v = jj_undef();

    v.u.undef = jj_undef_info(r);
    v.u.undef->obj = obj;
    v.u.undef->name = name;
    return v;
}

jj_value_t
jj_undef_name(jj_render_t *r, const char *name, size_t len)
{
    return jj_undef_attr(r, jj_undef(), jj_str(r, name, len));
}

jj_value_t
jj_none(void)
{
    jj_value_t  v = jj_undef();

    v.type = JJ_NONE;
    return v;
}

jj_value_t
jj_bool(int b)
{
    jj_value_t  v = jj_undef();

    v.type = JJ_BOOL;
    v.u.i = b != 0;
    return v;
}

jj_value_t
jj_int(int64_t i)
{
    jj_value_t  v = jj_undef();

    v.type = JJ_INT;
    v.u.i = i;
    return v;
}

jj_value_t
jj_float(double f)
{
    jj_value_t  v = jj_undef();

    v.type = JJ_FLOAT;
    v.u.f = f;
    return v;
}

jj_value_t
jj_str(jj_render_t *r, const char *s, size_t n)
{
    jj_value_t  v = jj_undef();

    if (n > UINT32_MAX / 2) {
        jj_raise(r, "LimitError", "a string of %zu bytes is too long", n);
    }
    v.type = JJ_STR;
    v.u.s = s;
    v.len = (uint32_t) n;
    return v;
}

jj_value_t
jj_cstr(jj_render_t *r, const char *s)
{
    return jj_str(r, s, strlen(s));
}

jj_value_t
jj_buf_str(jj_render_t *r, const jj_buf_t *b)
{
    return jj_str(r, b->p ? b->p : "", b->len);
}

jj_value_t
jj_list_new(jj_render_t *r, uint32_t cap, uint8_t flags)
{
    jj_value_t  v = jj_undef();

    v.type = JJ_LIST;
    v.flags = flags;
    v.u.list = jj_alloc(&r->c, sizeof(jj_list_t));
    v.u.list->n = 0;
    v.u.list->cap = cap;
    v.u.list->v = cap ? jj_alloc(&r->c, cap * sizeof(jj_value_t)) : NULL;
    return v;
}

void
jj_list_push(jj_render_t *r, jj_value_t *list, jj_value_t x)
{
    jj_list_t  *l = list->u.list;
    uint32_t    cap;

    if (l->n == l->cap) {
        if (l->cap >= UINT32_MAX / 4) {
            jj_raise(r, "LimitError", "a list is too long");
        }
        cap = l->cap ? l->cap * 2 : 4;
        l->v = jj_grow(&r->c, l->v, l->n * sizeof(jj_value_t),
                       cap * sizeof(jj_value_t));
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

jj_value_t
jj_dict_new(jj_render_t *r, uint32_t cap)
{
    jj_value_t  v = jj_undef();

    v.type = JJ_DICT;
    v.u.dict = jj_alloc(&r->c, sizeof(jj_dict_t));
    memset(v.u.dict, 0, sizeof(jj_dict_t));
    if (cap > 0) {
        v.u.dict->cap = cap;
        v.u.dict->key = jj_alloc(&r->c, cap * sizeof(jj_value_t));
        v.u.dict->val = jj_alloc(&r->c, cap * sizeof(jj_value_t));
    }
    return v;
}

jj_value_t *
jj_dict_gets(const jj_dict_t *d, const char *k, size_t n)
{
    uint32_t  i;

    for (i = 0; i < d->n; i++) {
        if (d->key[i].type == JJ_STR && d->key[i].len == n
            && memcmp(d->key[i].u.s, k, n) == 0)
        {
            return &d->val[i];
        }
    }
    return NULL;
}

jj_value_t *
jj_dict_get(jj_render_t *r, const jj_dict_t *d, jj_value_t k)
{
    uint32_t  i;

    jj_check_hashable(r, k);
    jj_charge(r, d->n);
    if (k.type == JJ_STR) {
        return jj_dict_gets(d, k.u.s, k.len);
    }
    for (i = 0; i < d->n; i++) {
        if (jj_equal(r, d->key[i], k)) {
            return &d->val[i];
        }
    }
    return NULL;
}

void
jj_dict_set(jj_render_t *r, jj_value_t *dict, jj_value_t k, jj_value_t v)
{
    jj_dict_t   *d = dict->u.dict;
    jj_value_t  *old = jj_dict_get(r, d, k);
    uint32_t     cap;

    if (old != NULL) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        if (d->cap >= UINT32_MAX / 4) {
            jj_raise(r, "LimitError", "a dict is too large");
        }
        cap = d->cap ? d->cap * 2 : 4;
        d->key = jj_grow(&r->c, d->key, d->n * sizeof(jj_value_t),
                         cap * sizeof(jj_value_t));
        d->val = jj_grow(&r->c, d->val, d->n * sizeof(jj_value_t),
                         cap * sizeof(jj_value_t));
        d->cap = cap;
    }
    d->key[d->n] = k;
    d->val[d->n] = v;
    d->n++;
}

jj_value_t
jj_func_new(jj_render_t *r, int kind, int id, const char *name,
    jj_value_t self)
{
    jj_value_t  v = jj_undef();

    v.type = JJ_FUNC;
    v.u.func = jj_alloc(&r->c, sizeof(jj_func_t));
    memset(v.u.func, 0, sizeof(jj_func_t));
    v.u.func->kind = (uint8_t) kind;
    v.u.func->id = (uint16_t) id;
    v.u.func->name = name;
    v.u.func->self = self;
    return v;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* The code point at s[*i], advancing *i; -1 (one byte) where s is not
 * UTF-8 (overlong forms and surrogates included). */
int32_t
jj_utf8_next(const char *s, size_t n, size_t *i)
{
    const unsigned char  *p = (const unsigned char *) s + *i;
    size_t                left = n - *i, k, len;
    int32_t               c, min;

    if (p[0] < 0x80) {
        (*i)++;
        return p[0];
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        c = p[0] & 0x1f;
        min = 0x80;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        c = p[0] & 0x0f;
        min = 0x800;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        c = p[0] & 0x07;
        min = 0x10000;
    } else {
        (*i)++;
        return -1;
    }
    if (left < len) {
        (*i)++;
        return -1;
    }
    for (k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80) {
            (*i)++;
            return -1;
        }
        c = (c << 6) | (p[k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        (*i)++;
        return -1;
    }
    *i += len;
    return c;
}

size_t
jj_utf8_len(const char *s, size_t n)
{
    size_t  i, cps = 0;

    for (i = 0; i < n; i++) {
        cps += ((unsigned char) s[i] & 0xc0) != 0x80;
    }
    return cps;
}

/* The byte offset of code point cp (at most n). */
size_t
jj_utf8_offset(const char *s, size_t n, int64_t cp)
{
    size_t  i = 0;

    while (cp > 0 && i < n) {
        i++;
        while (i < n && ((unsigned char) s[i] & 0xc0) == 0x80) {
            i++;
        }
        cp--;
    }
    return i;
}

/* Python's str.isspace() (and the \s of its regular expressions). */
int
jj_py_space(int32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85
           || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a)
           || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f
           || c == 0x3000;
}

void
jj_write_utf8(jj_render_t *r, jj_buf_t *b, int32_t c)
{
    char  o[4];

    if (c < 0x80) {
        o[0] = (char) c;
        jj_buf_add(r, b, o, 1);
    } else if (c < 0x800) {
        o[0] = (char) (0xc0 | (c >> 6));
        o[1] = (char) (0x80 | (c & 0x3f));
        jj_buf_add(r, b, o, 2);
    } else if (c < 0x10000) {
        o[0] = (char) (0xe0 | (c >> 12));
        o[1] = (char) (0x80 | ((c >> 6) & 0x3f));
        o[2] = (char) (0x80 | (c & 0x3f));
        jj_buf_add(r, b, o, 3);
    } else {
        o[0] = (char) (0xf0 | (c >> 18));
        o[1] = (char) (0x80 | ((c >> 12) & 0x3f));
        o[2] = (char) (0x80 | ((c >> 6) & 0x3f));
        o[3] = (char) (0x80 | (c & 0x3f));
        jj_buf_add(r, b, o, 4);
    }
}

/* ---- types, truth, Undefined -------------------------------------------- */

int
jj_is_str(jj_value_t v)
{
    return v.type == JJ_STR;
}

const char *
jj_type_name(jj_value_t v)
{
    switch (v.type) {
    case JJ_UNDEF: return "Undefined";
    case JJ_NONE: return "NoneType";
    case JJ_BOOL: return "bool";
    case JJ_INT: return "int";
    case JJ_FLOAT: return "float";
    case JJ_STR: return v.flags & JJ_F_MARKUP ? "Markup" : "str";
    case JJ_LIST:
        return v.flags & JJ_F_GEN ? "generator"
               : v.flags & JJ_F_TUPLE ? "tuple" : "list";
    case JJ_DICT: return "dict";
    case JJ_NS: return "TemplateNamespace";
    case JJ_LOOP: return "LoopContext";
    default:
        return v.u.func->kind == JJ_FN_MACRO ? "Macro"
               : v.u.func->kind == JJ_FN_GLOBAL ? "function"
               : "builtin_function_or_method";
    }
}

/* jinja2's object_type_repr(): "dict object", "None", "markupsafe.Markup
 * object"... */
static void
jj_object_type_repr(jj_value_t v, char *buf, size_t size)
{
    const char  *module = NULL;

    switch (v.type) {
    case JJ_NONE:
        snprintf(buf, size, "None");
        return;
    case JJ_UNDEF:
        module = "jinja2.runtime";
        break;
    case JJ_STR:
        module = v.flags & JJ_F_MARKUP ? "markupsafe" : NULL;
        break;
    case JJ_NS:
        module = "transformers.utils.chat_template_utils";
        break;
    case JJ_LOOP:
        module = "jinja2.runtime";
        break;
    case JJ_FUNC:
        module = v.u.func->kind == JJ_FN_MACRO ? "jinja2.runtime" : NULL;
        break;
    default:
        break;
    }
    if (module != NULL) {
        snprintf(buf, size, "%s.%s object", module, jj_type_name(v));
    } else {
        snprintf(buf, size, "%s object", jj_type_name(v));
    }
}

int
jj_truthy(jj_value_t v)
{
    switch (v.type) {
    case JJ_UNDEF:
    case JJ_NONE:
        return 0;
    case JJ_BOOL:
    case JJ_INT:
        return v.u.i != 0;
    case JJ_FLOAT:
        return v.u.f != 0.0;
    case JJ_STR:
        return v.len > 0;
    case JJ_LIST:
        return (v.flags & JJ_F_GEN) || v.u.list->n > 0;
    case JJ_DICT:
        return v.u.dict->n > 0;
    default:
        return 1;
    }
}

/* Undefined._fail_with_undefined_error. */
void
jj_undef_fail(jj_render_t *r, jj_value_t v)
{
    const jj_undef_t  *u = v.u.undef;
    jj_buf_t           b;
    char               type[96];

    if (u == NULL) {
        jj_raise(r, "UndefinedError", "None is undefined");
    }
    if (u->hint != NULL) {
        jj_raise(r, u->exc, "%s", u->hint);
    }
    memset(&b, 0, sizeof(b));
    jj_write_repr(r, &b, u->name);
    if (u->obj.type == JJ_UNDEF) {
        jj_raise(r, u->exc, "%.*s is undefined", (int) b.len, b.p);
    }
    jj_object_type_repr(u->obj, type, sizeof(type));
    if (u->name.type != JJ_STR) {
        jj_raise(r, u->exc, "%s has no element %.*s", type, (int) b.len, b.p);
    }
    jj_raise(r, u->exc, "'%s' has no attribute %.*s", type, (int) b.len,
             b.p);
}

void
jj_check_defined(jj_render_t *r, jj_value_t v)
{
    if (v.type == JJ_UNDEF) {
        jj_undef_fail(r, v);
    }
}

/* ---- str(), repr() ------------------------------------------------------ */

void
jj_write_float(jj_render_t *r, jj_buf_t *b, double f)
{
    char     buf[40], digits[24];
    int      prec, exp, decpt, nd, i;
    char    *e;

    if (isnan(f)) {
        jj_buf_add(r, b, "nan", 3);
        return;
    }
    if (isinf(f)) {
        jj_buf_add(r, b, f < 0 ? "-inf" : "inf", f < 0 ? 4 : 3);
        return;
    }
    if (f == 0.0) {
        jj_buf_add(r, b, signbit(f) ? "-0.0" : "0.0", signbit(f) ? 4 : 3);
        return;
    }
    /* the shortest digits that read back as f: repr() */
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) {
            break;
        }
    }
    e = strchr(buf, 'e');
    exp = atoi(e + 1);
    nd = 0;
    for (i = buf[0] == '-'; buf + i < e; i++) {
        if (buf[i] != '.') {
            digits[nd++] = buf[i];
        }
    }
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    if (f < 0) {
        jj_buf_addc(r, b, '-');
    }
    decpt = exp + 1;
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            jj_buf_add(r, b, "0.", 2);
            for (i = decpt; i < 0; i++) {
                jj_buf_addc(r, b, '0');
            }
            jj_buf_add(r, b, digits, nd);
        } else if (decpt >= nd) {
            jj_buf_add(r, b, digits, nd);
            for (i = nd; i < decpt; i++) {
                jj_buf_addc(r, b, '0');
            }
            jj_buf_add(r, b, ".0", 2);
        } else {
            jj_buf_add(r, b, digits, decpt);
            jj_buf_addc(r, b, '.');
            jj_buf_add(r, b, digits + decpt, nd - decpt);
        }
        return;
    }
    jj_buf_addc(r, b, digits[0]);
    if (nd > 1) {
        jj_buf_addc(r, b, '.');
        jj_buf_add(r, b, digits + 1, nd - 1);
    }
    jj_buf_printf(r, b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
}

/* Python's str.isprintable() for one character. */
static int
jj_printable(int32_t c)
{
    utf8proc_category_t  cat;

    if (c == ' ') {
        return 1;
    }
    cat = utf8proc_category(c);
    return !(cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF
             || cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO
             || cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZL
             || cat == UTF8PROC_CATEGORY_ZP || cat == UTF8PROC_CATEGORY_ZS);
}

static void
jj_write_str_repr(jj_render_t *r, jj_buf_t *b, const char *s, size_t n)
{
    char     q = '\'';
    size_t   i, j;
    int32_t  c;

    jj_charge(r, n);
    if (memchr(s, '\'', n) != NULL && memchr(s, '"', n) == NULL) {
        q = '"';
    }
    jj_buf_addc(r, b, q);
    for (i = 0; i < n; ) {
        j = i;
        c = jj_utf8_next(s, n, &j);
        if (c == q || c == '\\') {
            jj_buf_addc(r, b, '\\');
            jj_buf_addc(r, b, (char) c);
        } else if (c == '\t') {
            jj_buf_add(r, b, "\\t", 2);
        } else if (c == '\n') {
            jj_buf_add(r, b, "\\n", 2);
        } else if (c == '\r') {
            jj_buf_add(r, b, "\\r", 2);
        } else if (c < 0) {
            jj_buf_printf(r, b, "\\x%02x", (unsigned char) s[i]);
        } else if (c < ' ' || c == 0x7f) {
            jj_buf_printf(r, b, "\\x%02x", c);
        } else if (c < 0x7f || jj_printable(c)) {
            jj_buf_add(r, b, s + i, j - i);
        } else if (c <= 0xff) {
            jj_buf_printf(r, b, "\\x%02x", c);
        } else if (c <= 0xffff) {
            jj_buf_printf(r, b, "\\u%04x", c);
        } else {
            jj_buf_printf(r, b, "\\U%08x", c);
        }
        i = j;
    }
    jj_buf_addc(r, b, q);
}

static void
jj_enter_value(jj_render_t *r)
{
    if (++r->c.depth > r->c.depth_max) {
        jj_raise(r, "LimitError", "a value nests deeper than %u",
                 r->c.depth_max);
    }
}

static void
jj_write_dict_repr(jj_render_t *r, jj_buf_t *b, const jj_dict_t *d)
{
    uint32_t  i;

    jj_buf_addc(r, b, '{');
    for (i = 0; i < d->n; i++) {
        if (i > 0) {
            jj_buf_add(r, b, ", ", 2);
        }
        jj_write_repr(r, b, d->key[i]);
        jj_buf_add(r, b, ": ", 2);
        jj_write_repr(r, b, d->val[i]);
    }
    jj_buf_addc(r, b, '}');
}

void
jj_write_repr(jj_render_t *r, jj_buf_t *b, jj_value_t v)
{
    uint32_t  i, n;

    jj_step(r, 1);
    switch (v.type) {
    case JJ_UNDEF:
        jj_buf_add(r, b, "Undefined", 9);
        return;
    case JJ_STR:
        if (v.flags & JJ_F_MARKUP) {
            jj_buf_add(r, b, "Markup(", 7);
            jj_write_str_repr(r, b, v.u.s, v.len);
            jj_buf_addc(r, b, ')');
            return;
        }
        jj_write_str_repr(r, b, v.u.s, v.len);
        return;
    case JJ_LIST:
        if (v.flags & JJ_F_GEN) {
            jj_buf_add(r, b, "<generator object>", 18);
            return;
        }
        jj_enter_value(r);
        n = v.u.list->n;
        jj_buf_addc(r, b, v.flags & JJ_F_TUPLE ? '(' : '[');
        for (i = 0; i < n; i++) {
            if (i > 0) {
                jj_buf_add(r, b, ", ", 2);
            }
            jj_write_repr(r, b, v.u.list->v[i]);
        }
        if ((v.flags & JJ_F_TUPLE) && n == 1) {
            jj_buf_addc(r, b, ',');
        }
        jj_buf_addc(r, b, v.flags & JJ_F_TUPLE ? ')' : ']');
        r->c.depth--;
        return;
    case JJ_DICT:
        jj_enter_value(r);
        jj_write_dict_repr(r, b, v.u.dict);
        r->c.depth--;
        return;
    default:
        jj_write_str(r, b, v);
        return;
    }
}

void
jj_write_str(jj_render_t *r, jj_buf_t *b, jj_value_t v)
{
    switch (v.type) {
    case JJ_UNDEF:
        return;
    case JJ_NONE:
        jj_buf_add(r, b, "None", 4);
        return;
    case JJ_BOOL:
        jj_buf_add(r, b, v.u.i ? "True" : "False", v.u.i ? 4 : 5);
        return;
    case JJ_INT:
        jj_buf_printf(r, b, "%lld", (long long) v.u.i);
        return;
    case JJ_FLOAT:
        jj_write_float(r, b, v.u.f);
        return;
    case JJ_STR:
        jj_charge(r, v.len);
        jj_buf_add(r, b, v.u.s, v.len);
        return;
    case JJ_NS:
        jj_enter_value(r);
        jj_buf_add(r, b, "<Namespace ", 11);
        jj_write_dict_repr(r, b, v.u.dict);
        jj_buf_addc(r, b, '>');
        r->c.depth--;
        return;
    case JJ_LOOP:
        jj_buf_printf(r, b, "<LoopContext %u/%u>", v.u.loop->i + 1,
                      v.u.loop->n);
        return;
    case JJ_FUNC:
        if (v.u.func->kind == JJ_FN_MACRO) {
            jj_buf_printf(r, b, "<Macro '%s'>", v.u.func->name);
        } else {
            jj_buf_printf(r, b, "<built-in method %s>", v.u.func->name);
        }
        return;
    default:
        jj_write_repr(r, b, v);
        return;
    }
}

/* str(v): a string as it is (not Markup any more), else its text. */
jj_value_t
jj_to_str(jj_render_t *r, jj_value_t v)
{
    jj_buf_t  b;

    if (v.type == JJ_STR) {
        v.flags = 0;
        return v;
    }
    memset(&b, 0, sizeof(b));
    jj_write_str(r, &b, v);
    return jj_buf_str(r, &b);
}

/* ---- json.dumps --------------------------------------------------------- */

static void
jj_write_json_str(jj_render_t *r, jj_buf_t *b, const char *s, size_t n,
    int ensure_ascii)
{
    size_t   i, j, run;
    int32_t  c, hi, lo;

    jj_charge(r, n);
    jj_buf_addc(r, b, '"');
    for (i = 0; i < n; ) {
        /* a run that needs no escape is copied at once */
        for (run = i; run < n; run++) {
            unsigned char  ch = (unsigned char) s[run];

            if (ch < 0x20 || ch == '"' || ch == '\\'
                || (ensure_ascii && ch >= 0x80))
            {
                break;
            }
        }
        if (run > i) {
            jj_buf_add(r, b, s + i, run - i);
            i = run;
            continue;
        }
        j = i;
        c = jj_utf8_next(s, n, &j);
        switch (c) {
        case '"': jj_buf_add(r, b, "\\\"", 2); break;
        case '\\': jj_buf_add(r, b, "\\\\", 2); break;
        case '\n': jj_buf_add(r, b, "\\n", 2); break;
        case '\r': jj_buf_add(r, b, "\\r", 2); break;
        case '\t': jj_buf_add(r, b, "\\t", 2); break;
        case '\b': jj_buf_add(r, b, "\\b", 2); break;
        case '\f': jj_buf_add(r, b, "\\f", 2); break;
        default:
            if (c >= 0x10000) {
                hi = 0xd800 + ((c - 0x10000) >> 10);
                lo = 0xdc00 + ((c - 0x10000) & 0x3ff);
                jj_buf_printf(r, b, "\\u%04x\\u%04x", hi, lo);
            } else {
                jj_buf_printf(r, b, "\\u%04x", c < 0 ? 0xfffd : c);
            }
        }
        i = j;
    }
    jj_buf_addc(r, b, '"');
}

static void
jj_json_newline(jj_render_t *r, jj_buf_t *b, const jj_json_opts_t *o,
    unsigned level)
{
    unsigned  i;

    jj_buf_addc(r, b, '\n');
    for (i = 0; i < level; i++) {
        jj_buf_add(r, b, o->indent_s, o->indent_n);
    }
}

/* A dict key as json.dumps writes it: str, or a number, bool or None
 * turned into its JSON text. */
static void
jj_write_json_key(jj_render_t *r, jj_buf_t *b, jj_value_t k,
    const jj_json_opts_t *o)
{
    jj_buf_t  t;

    switch (k.type) {
    case JJ_STR:
        jj_write_json_str(r, b, k.u.s, k.len, o->ensure_ascii);
        return;
    case JJ_INT:
    case JJ_FLOAT:
    case JJ_BOOL:
    case JJ_NONE:
        memset(&t, 0, sizeof(t));
        if (k.type == JJ_BOOL) {
            jj_buf_add(r, &t, k.u.i ? "true" : "false", k.u.i ? 4 : 5);
        } else if (k.type == JJ_NONE) {
            jj_buf_add(r, &t, "null", 4);
        } else {
            jj_write_str(r, &t, k);
        }
        jj_write_json_str(r, b, t.p, t.len, o->ensure_ascii);
        return;
    default:
        jj_raise(r, "TypeError", "keys must be str, int, float, bool or "
                 "None, not %s", jj_type_name(k));
    }
}

/* The order of a dict's keys, sorted when sort_keys is set. */
static uint32_t *
jj_json_order(jj_render_t *r, const jj_dict_t *d, int sort)
{
    uint32_t  *ix = jj_alloc(&r->c, (d->n + 1) * sizeof(uint32_t));
    uint32_t   i, j, t;

    for (i = 0; i < d->n; i++) {
        ix[i] = i;
    }
    if (sort) {
        /* insertion sort: stable, and JSON objects are small */
        for (i = 1; i < d->n; i++) {
            for (j = i; j > 0 && jj_less(r, d->key[ix[j]], d->key[ix[j - 1]],
                                         "<"); j--)
            {
                t = ix[j];
                ix[j] = ix[j - 1];
                ix[j - 1] = t;
            }
        }
    }
    return ix;
}

static void
jj_write_json_at(jj_render_t *r, jj_buf_t *b, jj_value_t v,
    const jj_json_opts_t *o, unsigned level)
{
    uint32_t   i, n, *ix;
    jj_dict_t  *d;

    jj_step(r, 1);
    switch (v.type) {
    case JJ_NONE:
        jj_buf_add(r, b, "null", 4);
        return;
    case JJ_BOOL:
        jj_buf_add(r, b, v.u.i ? "true" : "false", v.u.i ? 4 : 5);
        return;
    case JJ_INT:
        jj_write_str(r, b, v);
        return;
    case JJ_FLOAT:
        if (isnan(v.u.f)) {
            jj_buf_add(r, b, "NaN", 3);
        } else if (isinf(v.u.f)) {
            jj_buf_add(r, b, v.u.f < 0 ? "-Infinity" : "Infinity",
                       v.u.f < 0 ? 9 : 8);
        } else {
            jj_write_float(r, b, v.u.f);
        }
        return;
    case JJ_STR:
        jj_write_json_str(r, b, v.u.s, v.len, o->ensure_ascii);
        return;
    case JJ_LIST:
        if (v.flags & JJ_F_GEN) {
            break;
        }
        n = v.u.list->n;
        if (n == 0) {
            jj_buf_add(r, b, "[]", 2);
            return;
        }
        jj_enter_value(r);
        jj_buf_addc(r, b, '[');
        for (i = 0; i < n; i++) {
            if (i > 0) {
                jj_buf_add(r, b, o->item_sep, o->item_sep_n);
            }
            if (o->indent_s != NULL) {
                jj_json_newline(r, b, o, level + 1);
            }
            jj_write_json_at(r, b, v.u.list->v[i], o, level + 1);
        }
        if (o->indent_s != NULL) {
            jj_json_newline(r, b, o, level);
        }
        jj_buf_addc(r, b, ']');
        r->c.depth--;
        return;
    case JJ_DICT:
        d = v.u.dict;
        if (d->n == 0) {
            jj_buf_add(r, b, "{}", 2);
            return;
        }
        jj_enter_value(r);
        ix = jj_json_order(r, d, o->sort_keys);
        jj_buf_addc(r, b, '{');
        for (i = 0; i < d->n; i++) {
            if (i > 0) {
                jj_buf_add(r, b, o->item_sep, o->item_sep_n);
            }
            if (o->indent_s != NULL) {
                jj_json_newline(r, b, o, level + 1);
            }
            jj_write_json_key(r, b, d->key[ix[i]], o);
            jj_buf_add(r, b, o->key_sep, o->key_sep_n);
            jj_write_json_at(r, b, d->val[ix[i]], o, level + 1);
        }
        if (o->indent_s != NULL) {
            jj_json_newline(r, b, o, level);
        }
        jj_buf_addc(r, b, '}');
        r->c.depth--;
        return;
    default:
        break;
    }
    jj_raise(r, "TypeError", "Object of type %s is not JSON serializable",
             jj_type_name(v));
}

void
jj_write_json(jj_render_t *r, jj_buf_t *b, jj_value_t v,
    const jj_json_opts_t *o)
{
    jj_write_json_at(r, b, v, o, 0);
}

/* ---- comparisons -------------------------------------------------------- */

static int
jj_is_number(jj_value_t v)
{
    return v.type == JJ_BOOL || v.type == JJ_INT || v.type == JJ_FLOAT;
}

/* -1, 0, 1 for numbers: ints exactly, against floats as Python does. */
static int
jj_num_cmp(jj_value_t a, jj_value_t b)
{
    double  x, y;

    if (a.type != JJ_FLOAT && b.type != JJ_FLOAT) {
        return a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
    }
    x = a.type == JJ_FLOAT ? a.u.f : (double) a.u.i;
    y = b.type == JJ_FLOAT ? b.u.f : (double) b.u.i;
    if (isnan(x) || isnan(y)) {
        return 2;
    }
    if (x != y) {
        return x < y ? -1 : 1;
    }
    /* equal as doubles: an int that did not round-trip differs */
    if (a.type != JJ_FLOAT && (x >= 9223372036854775808.0
                               || (int64_t) x != a.u.i))
    {
        return (int64_t) x > a.u.i ? -1 : 1;
    }
    if (b.type != JJ_FLOAT && (y >= 9223372036854775808.0
                               || (int64_t) y != b.u.i))
    {
        return (int64_t) y > b.u.i ? 1 : -1;
    }
    return 0;
}

int
jj_equal(jj_render_t *r, jj_value_t a, jj_value_t b)
{
    uint32_t     i;
    jj_value_t  *p;

    jj_step(r, 1);
    if (jj_is_number(a) && jj_is_number(b)) {
        return jj_num_cmp(a, b) == 0;
    }
    if (a.type != b.type) {
        return 0;
    }
    switch (a.type) {
    case JJ_UNDEF:
    case JJ_NONE:
        return 1;
    case JJ_STR:
        jj_charge(r, a.len);
        return a.len == b.len && memcmp(a.u.s, b.u.s, a.len) == 0;
    case JJ_LIST:
        if ((a.flags & JJ_F_GEN) || (b.flags & JJ_F_GEN)) {
            return a.u.list == b.u.list;
        }
        if ((a.flags & JJ_F_TUPLE) != (b.flags & JJ_F_TUPLE)
            || a.u.list->n != b.u.list->n)
        {
            return 0;
        }
        jj_enter_value(r);
        for (i = 0; i < a.u.list->n; i++) {
            if (!jj_equal(r, a.u.list->v[i], b.u.list->v[i])) {
                r->c.depth--;
                return 0;
            }
        }
        r->c.depth--;
        return 1;
    case JJ_DICT:
        if (a.u.dict->n != b.u.dict->n) {
            return 0;
        }
        jj_enter_value(r);
        for (i = 0; i < a.u.dict->n; i++) {
            p = jj_dict_get(r, b.u.dict, a.u.dict->key[i]);
            if (p == NULL || !jj_equal(r, a.u.dict->val[i], *p)) {
                r->c.depth--;
                return 0;
            }
        }
        r->c.depth--;
        return 1;
    case JJ_NS:
        return a.u.dict == b.u.dict;
    case JJ_FUNC:
        return a.u.func == b.u.func;
    default:
        return a.u.loop == b.u.loop;
    }
}

int
jj_less(jj_render_t *r, jj_value_t a, jj_value_t b, const char *op)
{
    uint32_t  i, n;
    int       c;

    jj_step(r, 1);
    jj_check_defined(r, a);
    jj_check_defined(r, b);
    if (jj_is_number(a) && jj_is_number(b)) {
        c = jj_num_cmp(a, b);
        return c == -1;
    }
    if (a.type == JJ_STR && b.type == JJ_STR) {
        jj_charge(r, a.len < b.len ? a.len : b.len);
        c = memcmp(a.u.s, b.u.s, a.len < b.len ? a.len : b.len);
        return c < 0 || (c == 0 && a.len < b.len);
    }
    if (a.type == JJ_LIST && b.type == JJ_LIST
        && !((a.flags | b.flags) & JJ_F_GEN)
        && (a.flags & JJ_F_TUPLE) == (b.flags & JJ_F_TUPLE))
    {
        n = a.u.list->n < b.u.list->n ? a.u.list->n : b.u.list->n;
        for (i = 0; i < n; i++) {
            if (!jj_equal(r, a.u.list->v[i], b.u.list->v[i])) {
                jj_enter_value(r);
                c = jj_less(r, a.u.list->v[i], b.u.list->v[i], op);
                r->c.depth--;
                return c;
            }
        }
        return a.u.list->n < b.u.list->n;
    }
    jj_raise(r, "TypeError", "'%s' not supported between instances of '%s' "
             "and '%s'", op, jj_type_name(a), jj_type_name(b));
}

/* a op b for the comparison operators of jj_cmp_t. */
int
jj_compare(jj_render_t *r, int op, jj_value_t a, jj_value_t b)
{
    static const char *const  names[] = { "==", "!=", "<", "<=", ">", ">=" };

    switch (op) {
    case JJ_EQ:
        return jj_equal(r, a, b);
    case JJ_NE:
        return !jj_equal(r, a, b);
    case JJ_IN:
        return jj_contains(r, b, a);
    case JJ_NOTIN:
        return !jj_contains(r, b, a);
    case JJ_LT:
        return jj_less(r, a, b, names[op]);
    case JJ_GT:
        return jj_less(r, b, a, names[op]);
    case JJ_LE:
        return jj_less(r, a, b, names[op]) || jj_equal(r, a, b);
    default:
        return jj_less(r, b, a, names[op]) || jj_equal(r, a, b);
    }
}

void
jj_check_hashable(jj_render_t *r, jj_value_t v)
{
    uint32_t  i;

    if ((v.type == JJ_LIST && !(v.flags & (JJ_F_TUPLE | JJ_F_GEN)))
        || v.type == JJ_DICT)
    {
        jj_raise(r, "TypeError", "unhashable type: '%s'", jj_type_name(v));
    }
    if (v.type == JJ_LIST && (v.flags & JJ_F_TUPLE)) {
        jj_enter_value(r);
        for (i = 0; i < v.u.list->n; i++) {
            jj_check_hashable(r, v.u.list->v[i]);
        }
        r->c.depth--;
    }
}

int
jj_contains(jj_render_t *r, jj_value_t seq, jj_value_t x)
{
    uint32_t  i;

    switch (seq.type) {
    case JJ_UNDEF:
        return 0;
    case JJ_STR:
        jj_check_defined(r, x);
        if (x.type != JJ_STR) {
            jj_raise(r, "TypeError", "'in <string>' requires string as left "
                     "operand, not %s", jj_type_name(x));
        }
        jj_charge(r, seq.len);
        return x.len == 0 || memmem(seq.u.s, seq.len, x.u.s, x.len) != NULL;
    case JJ_LIST:
        for (i = 0; i < seq.u.list->n; i++) {
            if (jj_equal(r, seq.u.list->v[i], x)) {
                return 1;
            }
        }
        return 0;
    case JJ_DICT:
        return jj_dict_get(r, seq.u.dict, x) != NULL;
    default:
        jj_raise(r, "TypeError", "argument of type '%s' is not iterable",
                 jj_type_name(seq));
    }
}

int64_t
jj_len(jj_render_t *r, jj_value_t v)
{
    switch (v.type) {
    case JJ_UNDEF:
        return 0;
    case JJ_STR:
        jj_charge(r, v.len);
        return (int64_t) jj_utf8_len(v.u.s, v.len);
    case JJ_LIST:
        if (!(v.flags & JJ_F_GEN)) {
            return v.u.list->n;
        }
        break;
    case JJ_DICT:
        return v.u.dict->n;
    default:
        break;
    }
    jj_raise(r, "TypeError", "object of type '%s' has no len()",
             jj_type_name(v));
}

const jj_value_t *
jj_iterate(jj_render_t *r, jj_value_t v, uint32_t *n)
{
    jj_value_t  *out;
    size_t       i, j, k;

    switch (v.type) {
    case JJ_UNDEF:
        *n = 0;
        return NULL;
    case JJ_LIST:
        *n = v.u.list->n;
        return v.u.list->v;
    case JJ_DICT:
        *n = v.u.dict->n;
        return v.u.dict->key;
    case JJ_STR:
        jj_charge(r, v.len);
        out = jj_alloc(&r->c, (v.len + 1) * sizeof(jj_value_t));
        for (i = 0, k = 0; i < v.len; k++) {
            j = i;
            jj_utf8_next(v.u.s, v.len, &j);
            out[k] = jj_str(r, v.u.s + i, j - i);
            i = j;
        }
        *n = (uint32_t) k;
        return out;
    default:
        jj_raise(r, "TypeError", "'%s' object is not iterable",
                 jj_type_name(v));
    }
}

/* list(v) */
jj_value_t
jj_as_list(jj_render_t *r, jj_value_t v)
{
    const jj_value_t  *items;
    jj_value_t         l;
    uint32_t           n, i;

    items = jj_iterate(r, v, &n);
    jj_charge(r, n);
    l = jj_list_new(r, n, 0);
    for (i = 0; i < n; i++) {
        l.u.list->v[i] = items[i];
    }
    l.u.list->n = n;
    return l;
}

/* ---- arithmetic --------------------------------------------------------- */

static const char *const  jj_op_names[] = { "+", "-", "*", "/", "//", "%",
                                            "**" };

static void JJ_NORETURN
jj_unsupported(jj_render_t *r, int op, jj_value_t a, jj_value_t b)
{
    jj_raise(r, "TypeError", "unsupported operand type(s) for %s: '%s' and "
             "'%s'", jj_op_names[op], jj_type_name(a), jj_type_name(b));
}

/* Markup's escape(): & < > ' " as entities. */
static void
jj_write_escaped(jj_render_t *r, jj_buf_t *b, jj_value_t s)
{
    uint32_t  i, from = 0;
    const char  *e;

    if (s.flags & JJ_F_MARKUP) {
        jj_buf_add(r, b, s.u.s, s.len);
        return;
    }
    jj_charge(r, s.len);
    for (i = 0; i < s.len; i++) {
        switch (s.u.s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '\'': e = "&#39;"; break;
        case '"': e = "&#34;"; break;
        default: continue;
        }
        jj_buf_add(r, b, s.u.s + from, i - from);
        jj_buf_add(r, b, e, strlen(e));
        from = i + 1;
    }
    jj_buf_add(r, b, s.u.s + from, s.len - from);
}

static jj_value_t
jj_add(jj_render_t *r, jj_value_t a, jj_value_t b)
{
    jj_value_t  v;
    jj_buf_t    buf;
    uint32_t    i;
    int64_t     s;

    if (jj_is_number(a) && jj_is_number(b)) {
        if (a.type == JJ_FLOAT || b.type == JJ_FLOAT) {
            return jj_float((a.type == JJ_FLOAT ? a.u.f : (double) a.u.i)
                            + (b.type == JJ_FLOAT ? b.u.f : (double) b.u.i));
        }
        if (__builtin_add_overflow(a.u.i, b.u.i, &s)) {
            jj_raise(r, "OverflowError", "integer overflow");
        }
        return jj_int(s);
    }
    if (a.type == JJ_STR && b.type == JJ_STR) {
        memset(&buf, 0, sizeof(buf));
        if ((a.flags | b.flags) & JJ_F_MARKUP) {
            /* Markup + str escapes the str, whichever side it is on */
            jj_write_escaped(r, &buf, a);
            jj_write_escaped(r, &buf, b);
            v = jj_buf_str(r, &buf);
            v.flags = JJ_F_MARKUP;
            return v;
        }
        jj_charge(r, a.len + b.len);
        jj_buf_add(r, &buf, a.u.s, a.len);
        jj_buf_add(r, &buf, b.u.s, b.len);
        return jj_buf_str(r, &buf);
    }
    if (a.type == JJ_STR && !(a.flags & JJ_F_MARKUP)) {
        jj_raise(r, "TypeError", "can only concatenate str (not \"%s\") to "
                 "str", jj_type_name(b));
    }
    if (a.type == JJ_LIST && !(a.flags & JJ_F_GEN)) {
        if (b.type != JJ_LIST || (b.flags & (JJ_F_TUPLE | JJ_F_GEN))
                                 != (a.flags & JJ_F_TUPLE))
        {
            jj_raise(r, "TypeError", "can only concatenate %s (not \"%s\") "
                     "to %s", jj_type_name(a), jj_type_name(b),
                     jj_type_name(a));
        }
        jj_charge(r, a.u.list->n + b.u.list->n);
        v = jj_list_new(r, a.u.list->n + b.u.list->n, a.flags);
        for (i = 0; i < a.u.list->n; i++) {
            jj_list_push(r, &v, a.u.list->v[i]);
        }
        for (i = 0; i < b.u.list->n; i++) {
            jj_list_push(r, &v, b.u.list->v[i]);
        }
        return v;
    }
    jj_unsupported(r, JJ_ADD, a, b);
}

static jj_value_t
jj_repeat(jj_render_t *r, jj_value_t seq, jj_value_t times)
{
    jj_value_t  v;
    jj_buf_t    buf;
    int64_t     k, i;
    uint32_t    j, n;
    size_t      size;

    if (times.type != JJ_INT && times.type != JJ_BOOL) {
        jj_raise(r, "TypeError", "can't multiply sequence by non-int of type "
                 "'%s'", jj_type_name(times));
    }
    k = times.u.i < 0 ? 0 : times.u.i;
    n = seq.type == JJ_STR ? seq.len : seq.u.list->n;
    size = seq.type == JJ_STR ? 1 : sizeof(jj_value_t);
    if (n > 0 && (uint64_t) k > r->out_max / size / n) {
        jj_raise(r, "LimitError", "a repetition makes more than %zu bytes",
                 r->out_max);
    }
    jj_charge(r, (uint64_t) n * (uint64_t) k);
    if (seq.type == JJ_STR) {
        memset(&buf, 0, sizeof(buf));
        for (i = 0; i < k; i++) {
            jj_buf_add(r, &buf, seq.u.s, seq.len);
        }
        v = jj_buf_str(r, &buf);
        v.flags = seq.flags;
        return v;
    }
    v = jj_list_new(r, (uint32_t) (n * k), seq.flags);
    for (i = 0; i < k; i++) {
        for (j = 0; j < n; j++) {
            jj_list_push(r, &v, seq.u.list->v[j]);
        }
    }
    return v;
}

static double
jj_num(jj_value_t v)
{
    return v.type == JJ_FLOAT ? v.u.f : (double) v.u.i;
}

static jj_value_t
jj_int_pow(jj_render_t *r, int64_t base, int64_t exp)
{
    int64_t  acc = 1;

    if (exp < 0) {
        if (base == 0) {
            jj_raise(r, "ZeroDivisionError", "0.0 cannot be raised to a "
                     "negative power");
        }
        return jj_float(pow((double) base, (double) exp));
    }
    while (exp > 0) {
        jj_step(r, 1);
        if (exp & 1) {
            if (__builtin_mul_overflow(acc, base, &acc)) {
                jj_raise(r, "OverflowError", "integer overflow");
            }
        }
        exp >>= 1;
        if (exp > 0 && __builtin_mul_overflow(base, base, &base)) {
            jj_raise(r, "OverflowError", "integer overflow");
        }
    }
    return jj_int(acc);
}

jj_value_t
jj_binop(jj_render_t *r, int op, jj_value_t a, jj_value_t b)
{
    int64_t  q, m;
    double   x, y, fm, fd;

    jj_check_defined(r, a);
    jj_check_defined(r, b);
    if (op == JJ_ADD) {
        return jj_add(r, a, b);
    }
    if (op == JJ_MUL) {
        if ((a.type == JJ_STR || (a.type == JJ_LIST
                                  && !(a.flags & JJ_F_GEN)))
            && !jj_is_number(b) && b.type != JJ_STR && b.type != JJ_LIST)
        {
            jj_raise(r, "TypeError", "can't multiply sequence by non-int of "
                     "type '%s'", jj_type_name(b));
        }
        if (a.type == JJ_STR || (a.type == JJ_LIST
                                 && !(a.flags & JJ_F_GEN)))
        {
            if (b.type == JJ_STR || b.type == JJ_LIST) {
                jj_raise(r, "TypeError", "can't multiply sequence by non-int "
                         "of type '%s'", jj_type_name(b));
            }
            return jj_repeat(r, a, b);
        }
        if (b.type == JJ_STR || (b.type == JJ_LIST && !(b.flags & JJ_F_GEN)))
        {
            if (!jj_is_number(a)) {
                jj_unsupported(r, op, a, b);
            }
            return jj_repeat(r, b, a);
        }
    }
    if (!jj_is_number(a) || !jj_is_number(b)) {
        if (op == JJ_MOD && a.type == JJ_STR) {
            jj_raise(r, "TypeError", "printf-style formatting with %% is not "
                     "supported");
        }
        jj_unsupported(r, op, a, b);
    }
    if (a.type != JJ_FLOAT && b.type != JJ_FLOAT) {
        switch (op) {
        case JJ_SUB:
            if (__builtin_sub_overflow(a.u.i, b.u.i, &q)) {
                jj_raise(r, "OverflowError", "integer overflow");
            }
            return jj_int(q);
        case JJ_MUL:
            if (__builtin_mul_overflow(a.u.i, b.u.i, &q)) {
                jj_raise(r, "OverflowError", "integer overflow");
            }
            return jj_int(q);
        case JJ_DIV:
            if (b.u.i == 0) {
                jj_raise(r, "ZeroDivisionError", "division by zero");
            }
            return jj_float((double) a.u.i / (double) b.u.i);
        case JJ_FLOORDIV:
        case JJ_MOD:
            if (b.u.i == 0) {
                jj_raise(r, "ZeroDivisionError", op == JJ_MOD
                         ? "integer modulo by zero"
                         : "integer division or modulo by zero");
            }
            if (b.u.i == -1) {
                if (op == JJ_MOD) {
                    return jj_int(0);
                }
                if (a.u.i == INT64_MIN) {
                    jj_raise(r, "OverflowError", "integer overflow");
                }
                return jj_int(-a.u.i);
            }
            q = a.u.i / b.u.i;
            m = a.u.i % b.u.i;
            if (m != 0 && ((m < 0) != (b.u.i < 0))) {
                q--;
                m += b.u.i;
            }
            return jj_int(op == JJ_MOD ? m : q);
        default:
            return jj_int_pow(r, a.u.i, b.u.i);
        }
    }
    x = jj_num(a);
    y = jj_num(b);
    switch (op) {
    case JJ_SUB:
        return jj_float(x - y);
    case JJ_MUL:
        return jj_float(x * y);
    case JJ_DIV:
        if (y == 0.0) {
            jj_raise(r, "ZeroDivisionError", "float division by zero");
        }
        return jj_float(x / y);
    case JJ_FLOORDIV:
    case JJ_MOD:
        if (y == 0.0) {
            jj_raise(r, "ZeroDivisionError", op == JJ_MOD ? "float modulo"
                                                          : "float floor "
                                                            "division by "
                                                            "zero");
        }
        /* Python's float_divmod() */
        fm = fmod(x, y);
        fd = (x - fm) / y;
        if (fm != 0.0) {
            if ((y < 0) != (fm < 0)) {
                fm += y;
                fd -= 1.0;
            }
        } else {
            fm = copysign(0.0, y);
        }
        if (op == JJ_MOD) {
            return jj_float(fm);
        }
        if (fd != 0.0) {
            x = floor(fd);
            return jj_float(fd - x > 0.5 ? x + 1.0 : x);
        }
        return jj_float(copysign(0.0, x / y));
    default:
        if (x == 0.0 && y < 0) {
            jj_raise(r, "ZeroDivisionError", "0.0 cannot be raised to a "
                     "negative power");
        }
        if (x < 0 && y != floor(y)) {
            jj_raise(r, "TypeError", "complex numbers are not supported");
        }
        return jj_float(pow(x, y));
    }
}

/* ---- attributes and items ----------------------------------------------- */

/* The attributes of the loop variable (jinja2's LoopContext). */
static jj_value_t
jj_loop_attr(jj_render_t *r, jj_value_t obj, const char *name, size_t len)
{
    const jj_loop_t  *l = obj.u.loop;

#define JJ_IS(s)  (len == sizeof(s) - 1 && memcmp(name, s, len) == 0)
    if (JJ_IS("index")) {
        return jj_int(l->i + 1);
    }
    if (JJ_IS("index0")) {
        return jj_int(l->i);
    }
    if (JJ_IS("revindex")) {
        return jj_int(l->n - l->i);
    }
    if (JJ_IS("revindex0")) {
        return jj_int(l->n - l->i - 1);
    }
    if (JJ_IS("first")) {
        return jj_bool(l->i == 0);
    }
    if (JJ_IS("last")) {
        return jj_bool(l->i + 1 == l->n);
    }
    if (JJ_IS("length")) {
        return jj_int(l->n);
    }
    if (JJ_IS("depth")) {
        return jj_int(1);
    }
    if (JJ_IS("depth0")) {
        return jj_int(0);
    }
    if (JJ_IS("previtem")) {
        return l->i > 0 ? l->items[l->i - 1]
                        : jj_undef_hint(r, NULL, "there is no previous item");
    }
    if (JJ_IS("nextitem")) {
        return l->i + 1 < l->n ? l->items[l->i + 1]
                               : jj_undef_hint(r, NULL,
                                               "there is no next item");
    }
    if (JJ_IS("cycle")) {
        return jj_func_new(r, JJ_FN_CYCLE, 0, "cycle", obj);
    }
#undef JJ_IS
    return jj_undef_attr(r, obj, jj_str(r, name, len));
}

static jj_value_t
jj_unsafe(jj_render_t *r, jj_value_t obj, const char *name, size_t len)
{
    return jj_undef_hint(r, "SecurityError", "access to attribute '%.*s' of "
                         "'%s' object is unsafe.", (int) len, name,
                         jj_type_name(obj));
}

/* A Python attribute of obj, or found == 0. */
static jj_value_t
jj_attribute(jj_render_t *r, jj_value_t obj, const char *name, size_t len,
    int *found)
{
    int  id;

    *found = 1;
    if (len >= 4 && name[0] == '_' && name[1] == '_' && name[len - 1] == '_'
        && name[len - 2] == '_')
    {
        /* dunders exist on every object; the sandbox refuses them all */
        return jj_unsafe(r, obj, name, len);
    }
    if (obj.type == JJ_LOOP) {
        return jj_loop_attr(r, obj, name, len);
    }
    if (obj.type == JJ_NS) {
        jj_value_t  *p = jj_dict_gets(obj.u.dict, name, len);

        if (p != NULL) {
            return *p;
        }
        *found = 0;
        return jj_undef();
    }
    id = jj_method_id(obj, name, len);
    if (id == -2) {
        return jj_unsafe(r, obj, name, len);
    }
    if (id >= 0) {
        return jj_func_new(r, JJ_FN_METHOD, id,
                           jj_strdup(&r->c, name, len), obj);
    }
    *found = 0;
    return jj_undef();
}

/* obj[key] in Python, or found == 0. */
static jj_value_t
jj_subscript(jj_render_t *r, jj_value_t obj, jj_value_t key, int *found)
{
    jj_value_t  *p;
    int64_t      i, n;
    size_t       b, e;

    *found = 1;
    switch (obj.type) {
    case JJ_DICT:
        if (key.type == JJ_LIST && !(key.flags & JJ_F_TUPLE)) {
            break;
        }
        if (key.type == JJ_DICT) {
            break;
        }
        p = jj_dict_get(r, obj.u.dict, key);
        if (p != NULL) {
            return *p;
        }
        break;
    case JJ_LIST:
    case JJ_STR:
        if ((obj.type == JJ_LIST && (obj.flags & JJ_F_GEN))
            || (key.type != JJ_INT && key.type != JJ_BOOL))
        {
            break;
        }
        n = jj_len(r, obj);
        i = key.u.i < 0 ? key.u.i + n : key.u.i;
        if (i < 0 || i >= n) {
            break;
        }
        if (obj.type == JJ_LIST) {
            return obj.u.list->v[i];
        }
        b = jj_utf8_offset(obj.u.s, obj.len, i);
        e = jj_utf8_offset(obj.u.s + b, obj.len - b, 1) + b;
        return jj_str(r, obj.u.s + b, e - b);
    default:
        break;
    }
    *found = 0;
    return jj_undef();
}

/* obj.name: environment.getattr, the attribute first, then the item. */
jj_value_t
jj_getattr(jj_render_t *r, jj_value_t obj, const char *name, size_t len)
{
    jj_value_t  v, key;
    int         found;

    jj_step(r, 1);
    jj_check_defined(r, obj);
    v = jj_attribute(r, obj, name, len, &found);
    if (found) {
        return v;
    }
    key = jj_str(r, name, len);
    v = jj_subscript(r, obj, key, &found);
    if (found) {
        return v;
    }
    return jj_undef_attr(r, obj, key);
}

/* obj[key]: environment.getitem, the item first, then the attribute. */
jj_value_t
jj_getitem(jj_render_t *r, jj_value_t obj, jj_value_t key)
{
    jj_value_t  v;
    int         found;

    jj_step(r, 1);
    jj_check_defined(r, obj);
    v = jj_subscript(r, obj, key, &found);
    if (found) {
        return v;
    }
    if (key.type == JJ_STR) {
        v = jj_attribute(r, obj, key.u.s, key.len, &found);
        if (found) {
            return v;
        }
    }
    return jj_undef_attr(r, obj, key);
}

/* slice.indices(): Python's clamping of start, stop, step to n. */
static int
jj_slice_index(jj_value_t v, int64_t *out)
{
    if (v.type == JJ_NONE || v.type == JJ_UNDEF) {
        return 0;
    }
    if (v.type != JJ_INT && v.type != JJ_BOOL) {
        return -1;
    }
    *out = v.u.i;
    return 1;
}

jj_value_t
jj_slice(jj_render_t *r, jj_value_t obj, jj_value_t vstart, jj_value_t vstop,
    jj_value_t vstep)
{
    int64_t      n, start = 0, stop = 0, step = 1, i, k;
    int          hs, he, hp;
    jj_value_t   v;
    jj_buf_t     b;
    size_t      *offs, j;

    jj_step(r, 1);
    jj_check_defined(r, obj);
    hp = jj_slice_index(vstep, &step);
    hs = jj_slice_index(vstart, &start);
    he = jj_slice_index(vstop, &stop);
    if (hs < 0 || he < 0 || hp < 0 || (obj.type != JJ_STR
                                       && (obj.type != JJ_LIST
                                           || (obj.flags & JJ_F_GEN))))
    {
        return jj_undef_hint(r, NULL, "%s object has no element slice",
                             jj_type_name(obj));
    }
    if (step == 0) {
        jj_raise(r, "ValueError", "slice step cannot be zero");
    }
    n = jj_len(r, obj);
    if (!hs) {
        start = step < 0 ? n - 1 : 0;
    } else {
        if (start < 0) {
            start += n;
            if (start < 0) {
                start = step < 0 ? -1 : 0;
            }
        } else if (start >= n) {
            start = step < 0 ? n - 1 : n;
        }
    }
    if (!he) {
        stop = step < 0 ? -1 : n;
    } else {
        if (stop < 0) {
            stop += n;
            if (stop < 0) {
                stop = step < 0 ? -1 : 0;
            }
        } else if (stop >= n) {
            stop = step < 0 ? n - 1 : n;
        }
    }
    jj_charge(r, n);
    if (obj.type == JJ_LIST) {
        v = jj_list_new(r, 0, obj.flags);
        for (i = start; step > 0 ? i < stop : i > stop; i += step) {
            jj_list_push(r, &v, obj.u.list->v[i]);
        }
        return v;
    }
    if (step == 1) {
        if (stop <= start) {
            return jj_str(r, "", 0);
        }
        j = jj_utf8_offset(obj.u.s, obj.len, start);
        k = (int64_t) (jj_utf8_offset(obj.u.s + j, obj.len - j, stop - start)
                       + j);
        return jj_str(r, obj.u.s + j, (size_t) k - j);
    }
    /* offsets of every character, then the picked ones */
    offs = jj_alloc(&r->c, (n + 1) * sizeof(size_t));
    for (i = 0, j = 0; i < n; i++) {
        offs[i] = j;
        jj_utf8_next(obj.u.s, obj.len, &j);
    }
    offs[n] = obj.len;
    memset(&b, 0, sizeof(b));
    for (i = start; step > 0 ? i < stop : i > stop; i += step) {
        jj_buf_add(r, &b, obj.u.s + offs[i], offs[i + 1] - offs[i]);
    }
    return jj_buf_str(r, &b);
}
