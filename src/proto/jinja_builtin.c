/*
 * What a template can call: jinja2's filters and tests (filters.py,
 * tests.py) with transformers' tojson, the methods of str, dict and list
 * that jinja2's immutable sandbox lets a template call, and the globals
 * transformers and jinja2 define (range, namespace, dict, raise_exception,
 * strftime_now).  Each follows its Python original: the same arguments
 * (positional or by keyword), the same result, the same exception.  A
 * method that changes its object (list.append, dict.update, ...) is the
 * sandbox's SecurityError; a filter jinja2 has that chat templates do not
 * use is an error that says so.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "jinja_impl.h"

#define JJ_MAX_RANGE  100000     /* jinja2's sandbox MAX_RANGE */

/* ---- arguments ---------------------------------------------------------- */

/*
 * Binds the arguments of fname to params (NULL-terminated), by position
 * then by keyword, as Python does; out[i] is the argument of params[i].
 * Returns a bit mask of the parameters given.
 */
static unsigned
jj_bind(jj_render_t *r, const char *fname, const jj_args_t *a,
    const char *const *params, jj_value_t *out)
{
    unsigned          given = 0;
    uint32_t          i, np;
    const jj_node_t  *k;

    for (np = 0; params[np] != NULL; np++) {
        out[np] = jj_undef();
    }
    if (a->npos > np) {
        jj_raise(r, "TypeError", "%s() takes at most %u argument(s) (%u "
                 "given)", fname, np, a->npos);
    }
    for (i = 0; i < a->npos; i++) {
        out[i] = a->pos[i];
        given |= 1u << i;
    }
    for (i = 0; i < a->nkw; i++) {
        uint32_t  j;

        k = a->kwname[i];
        for (j = 0; j < np; j++) {
            if (strlen(params[j]) == k->nlen
                && memcmp(params[j], k->name, k->nlen) == 0)
            {
                break;
            }
        }
        if (j == np) {
            jj_raise(r, "TypeError", "%s() got an unexpected keyword argument "
                     "'%.*s'", fname, (int) k->nlen, k->name);
        }
        if (given & (1u << j)) {
            jj_raise(r, "TypeError", "%s() got multiple values for argument "
                     "'%s'", fname, params[j]);
        }
        out[j] = a->kw[i];
        given |= 1u << j;
    }
    return given;
}

static void
jj_args_shift(jj_args_t *a, uint32_t n, jj_args_t *out)
{
    *out = *a;
    out->pos = a->pos + n;
    out->npos = a->npos - n;
}

static int64_t
jj_int_arg(jj_render_t *r, jj_value_t v, const char *what)
{
    jj_check_defined(r, v);
    if (v.type != JJ_INT && v.type != JJ_BOOL) {
        jj_raise(r, "TypeError", "%s must be an integer, not '%s'", what,
                 jj_type_name(v));
    }
    return v.u.i;
}

static jj_value_t
jj_str_arg(jj_render_t *r, jj_value_t v, const char *what)
{
    jj_check_defined(r, v);
    if (v.type != JJ_STR) {
        jj_raise(r, "TypeError", "%s must be str, not %s", what,
                 jj_type_name(v));
    }
    return v;
}

static jj_value_t
jj_markup(jj_value_t v)
{
    v.flags |= JJ_F_MARKUP;
    return v;
}

/* ---- Unicode ------------------------------------------------------------ */

typedef enum {
    JJ_CASE_LOWER, JJ_CASE_UPPER, JJ_CASE_TITLE, JJ_CASE_CAPITALIZE,
    JJ_CASE_SWAPCASE
} jj_case_t;

static int
jj_cased(int32_t c)
{
    utf8proc_category_t  k = utf8proc_category(c);

    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL
           || k == UTF8PROC_CATEGORY_LT;
}

static void
jj_put_upper(jj_render_t *r, jj_buf_t *b, int32_t c)
{
    if (c == 0xdf) {                /* Python's full mapping: ß -> SS */
        jj_buf_add(r, b, "SS", 2);
        return;
    }
    jj_write_utf8(r, b, utf8proc_toupper(c));
}

static void
jj_put_title(jj_render_t *r, jj_buf_t *b, int32_t c)
{
    if (c == 0xdf) {
        jj_buf_add(r, b, "Ss", 2);
        return;
    }
    jj_write_utf8(r, b, utf8proc_totitle(c));
}

/* str.lower(), .upper(), .title(), .capitalize(), .swapcase() (simple
 * case mappings, and ß's full one). */
static jj_value_t
jj_case(jj_render_t *r, jj_value_t s, int mode)
{
    jj_buf_t  b;
    size_t    i = 0;
    int32_t   c;
    int       prev_cased = 0, first = 1;

    memset(&b, 0, sizeof(b));
    jj_charge(r, s.len);
    while (i < s.len) {
        c = jj_utf8_next(s.u.s, s.len, &i);
        switch (mode) {
        case JJ_CASE_LOWER:
            jj_write_utf8(r, &b, utf8proc_tolower(c));
            break;
        case JJ_CASE_UPPER:
            jj_put_upper(r, &b, c);
            break;
        case JJ_CASE_TITLE:
            if (prev_cased) {
                jj_write_utf8(r, &b, utf8proc_tolower(c));
            } else {
                jj_put_title(r, &b, c);
            }
            prev_cased = jj_cased(c);
            break;
        case JJ_CASE_CAPITALIZE:
            if (first) {
                jj_put_title(r, &b, c);
            } else {
                jj_write_utf8(r, &b, utf8proc_tolower(c));
            }
            break;
        default:
            if (utf8proc_category(c) == UTF8PROC_CATEGORY_LU) {
                jj_write_utf8(r, &b, utf8proc_tolower(c));
            } else if (utf8proc_category(c) == UTF8PROC_CATEGORY_LL) {
                jj_put_upper(r, &b, c);
            } else {
                jj_write_utf8(r, &b, c);
            }
            break;
        }
        first = 0;
    }
    return jj_buf_str(r, &b);
}

/* Is c in the code points of chars (a str)? */
static int
jj_in_chars(jj_value_t chars, int32_t c)
{
    size_t  i = 0;

    while (i < chars.len) {
        if (jj_utf8_next(chars.u.s, chars.len, &i) == c) {
            return 1;
        }
    }
    return 0;
}

/* str.strip/lstrip/rstrip(chars): where = 1 left, 2 right, 3 both. */
static jj_value_t
jj_strip(jj_render_t *r, jj_value_t s, jj_value_t chars, int where)
{
    size_t   b = 0, e = s.len, i, j;
    int32_t  c;
    int      isdef = chars.type == JJ_STR;

    if (chars.type != JJ_STR && chars.type != JJ_NONE
        && chars.type != JJ_UNDEF)
    {
        jj_raise(r, "TypeError", "strip arg must be None or str");
    }
    jj_charge(r, s.len);
    if (where & 1) {
        while (b < e) {
            i = b;
            c = jj_utf8_next(s.u.s, s.len, &i);
            if (isdef ? !jj_in_chars(chars, c) : !jj_py_space(c)) {
                break;
            }
            b = i;
        }
    }
    if (where & 2) {
        /* forward, remembering where the last kept character ends */
        for (i = b, j = b; i < e; ) {
            c = jj_utf8_next(s.u.s, s.len, &i);
            if (isdef ? !jj_in_chars(chars, c) : !jj_py_space(c)) {
                j = i;
            }
        }
        e = j;
    }
    s.u.s += b;
    s.len = (uint32_t) (e - b);
    s.flags = 0;
    return s;
}

/* The bytes [b, e) of s for the code point range [start, end) Python
 * finds in str.find(sub, start, end) and friends. */
static void
jj_cp_range(jj_render_t *r, jj_value_t s, jj_value_t vstart, jj_value_t vend,
    size_t *b, size_t *e)
{
    int64_t  n = -1, start = 0, end = INT64_MAX;

    if (vstart.type == JJ_INT || vstart.type == JJ_BOOL) {
        start = vstart.u.i;
    }
    if (vend.type == JJ_INT || vend.type == JJ_BOOL) {
        end = vend.u.i;
    }
    if (start < 0 || end < 0) {
        n = (int64_t) jj_utf8_len(s.u.s, s.len);
        if (start < 0) {
            start = start + n < 0 ? 0 : start + n;
        }
        if (end < 0) {
            end = end + n < 0 ? 0 : end + n;
        }
    }
    *b = jj_utf8_offset(s.u.s, s.len, start);
    *e = end == INT64_MAX ? s.len
                          : jj_utf8_offset(s.u.s, s.len, end < start ? start
                                                                     : end);
    (void) r;
}

/* The code point index of byte offset off. */
static int64_t
jj_cp_index(jj_value_t s, size_t off)
{
    return (int64_t) jj_utf8_len(s.u.s, off);
}

static jj_value_t
jj_find(jj_render_t *r, jj_value_t s, jj_value_t sub, jj_value_t start,
    jj_value_t end, int rev)
{
    size_t       b, e, i;
    const char  *p, *last = NULL;

    sub = jj_str_arg(r, sub, "substring");
    jj_cp_range(r, s, start, end, &b, &e);
    jj_charge(r, e - b);
    if (e < b || sub.len > e - b) {
        return jj_int(-1);
    }
    if (!rev) {
        p = sub.len ? memmem(s.u.s + b, e - b, sub.u.s, sub.len) : s.u.s + b;
        return jj_int(p ? jj_cp_index(s, p - s.u.s) : -1);
    }
    for (i = b; i + sub.len <= e; i++) {
        if (memcmp(s.u.s + i, sub.u.s, sub.len) == 0) {
            last = s.u.s + i;
        }
    }
    return jj_int(last ? jj_cp_index(s, last - s.u.s) : -1);
}

static int64_t
jj_count(jj_render_t *r, jj_value_t s, jj_value_t sub, size_t b, size_t e)
{
    int64_t      n = 0;
    const char  *p;

    sub = jj_str_arg(r, sub, "substring");
    jj_charge(r, e - b);
    if (sub.len == 0) {
        return (int64_t) jj_utf8_len(s.u.s + b, e - b) + 1;
    }
    while (b < e && (p = memmem(s.u.s + b, e - b, sub.u.s, sub.len)) != NULL)
    {
        n++;
        b = (size_t) (p - s.u.s) + sub.len;
    }
    return n;
}

/* str.replace(old, new, count). */
static jj_value_t
jj_replace(jj_render_t *r, jj_value_t s, jj_value_t old, jj_value_t new_,
    int64_t count)
{
    jj_buf_t     b;
    size_t       i = 0, j;
    const char  *p;

    memset(&b, 0, sizeof(b));
    jj_charge(r, s.len);
    if (old.len == 0) {
        /* the new text between every character, and around them */
        while (count != 0) {
            jj_buf_add(r, &b, new_.u.s, new_.len);
            count--;
            if (i >= s.len) {
                break;
            }
            j = i;
            jj_utf8_next(s.u.s, s.len, &j);
            jj_buf_add(r, &b, s.u.s + i, j - i);
            i = j;
        }
        jj_buf_add(r, &b, s.u.s + i, s.len - i);
        return jj_buf_str(r, &b);
    }
    while (count != 0
           && (p = memmem(s.u.s + i, s.len - i, old.u.s, old.len)) != NULL)
    {
        jj_buf_add(r, &b, s.u.s + i, (size_t) (p - s.u.s) - i);
        jj_buf_add(r, &b, new_.u.s, new_.len);
        i = (size_t) (p - s.u.s) + old.len;
        count--;
    }
    if (i == 0) {
        s.flags = 0;
        return s;
    }
    jj_buf_add(r, &b, s.u.s + i, s.len - i);
    return jj_buf_str(r, &b);
}

/* str.split(sep, maxsplit), rsplit when rev. */
static jj_value_t
jj_split(jj_render_t *r, jj_value_t s, jj_value_t sep, int64_t max, int rev)
{
    jj_value_t   out = jj_list_new(r, 0, 0), part;
    size_t       i, j, k, b, e;
    const char  *p;
    int32_t      c;

    jj_charge(r, s.len);
    if (sep.type == JJ_STR) {
        if (sep.len == 0) {
            jj_raise(r, "ValueError", "empty separator");
        }
        if (!rev) {
            for (i = 0; max != 0
                 && (p = memmem(s.u.s + i, s.len - i, sep.u.s, sep.len))
                    != NULL; max--)
            {
                jj_list_push(r, &out, jj_str(r, s.u.s + i,
                                             (size_t) (p - s.u.s) - i));
                i = (size_t) (p - s.u.s) + sep.len;
            }
            jj_list_push(r, &out, jj_str(r, s.u.s + i, s.len - i));
            return out;
        }
        /* from the right: cut pieces off the end, then reverse */
        e = s.len;
        while (max != 0) {
            p = NULL;
            for (k = e; k >= sep.len; k--) {
                if (memcmp(s.u.s + k - sep.len, sep.u.s, sep.len) == 0) {
                    p = s.u.s + k - sep.len;
                    break;
                }
            }
            if (p == NULL) {
                break;
            }
            jj_list_push(r, &out, jj_str(r, p + sep.len,
                                         e - (size_t) (p - s.u.s) - sep.len));
            e = (size_t) (p - s.u.s);
            max--;
        }
        jj_list_push(r, &out, jj_str(r, s.u.s, e));
        goto reverse;
    }
    if (!rev) {
        i = 0;
        for ( ;; ) {
            /* skip whitespace, then a word */
            for ( ; i < s.len; i = j) {
                j = i;
                c = jj_utf8_next(s.u.s, s.len, &j);
                if (!jj_py_space(c)) {
                    break;
                }
            }
            if (i >= s.len) {
                return out;
            }
            if (max == 0) {
                jj_list_push(r, &out, jj_str(r, s.u.s + i, s.len - i));
                return out;
            }
            for (b = i; i < s.len; i = j) {
                j = i;
                c = jj_utf8_next(s.u.s, s.len, &j);
                if (jj_py_space(c)) {
                    break;
                }
            }
            jj_list_push(r, &out, jj_str(r, s.u.s + b, i - b));
            max--;
        }
    }
    /* rsplit() on whitespace: words from the right */
    e = s.len;
    for ( ;; ) {
        size_t  ws = e;

        /* back over whitespace */
        while (ws > 0) {
            for (k = ws - 1; k > 0 && ((unsigned char) s.u.s[k] & 0xc0)
                                      == 0x80; k--)
            {
            }
            j = k;
            c = jj_utf8_next(s.u.s, s.len, &j);
            if (!jj_py_space(c)) {
                break;
            }
            ws = k;
        }
        e = ws;
        if (e == 0) {
            break;
        }
        if (max == 0) {
            jj_list_push(r, &out, jj_str(r, s.u.s, e));
            break;
        }
        b = e;
        while (b > 0) {
            for (k = b - 1; k > 0 && ((unsigned char) s.u.s[k] & 0xc0)
                                     == 0x80; k--)
            {
            }
            j = k;
            c = jj_utf8_next(s.u.s, s.len, &j);
            if (jj_py_space(c)) {
                break;
            }
            b = k;
        }
        jj_list_push(r, &out, jj_str(r, s.u.s + b, e - b));
        e = b;
        max--;
    }
reverse:
    for (i = 0, k = out.u.list->n; i < k / 2; i++) {
        part = out.u.list->v[i];
        out.u.list->v[i] = out.u.list->v[k - 1 - i];
        out.u.list->v[k - 1 - i] = part;
    }
    return out;
}

/* The line boundaries of str.splitlines(): the length of the one at
 * s[i], or 0. */
static size_t
jj_line_break(const char *s, size_t n, size_t i)
{
    size_t   j = i;
    int32_t  c = jj_utf8_next(s, n, &j);

    if (c == '\r' && j < n && s[j] == '\n') {
        return 2;
    }
    if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0x1c
        || c == 0x1d || c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029)
    {
        return j - i;
    }
    return 0;
}

static jj_value_t
jj_splitlines(jj_render_t *r, jj_value_t s, int keepends)
{
    jj_value_t  out = jj_list_new(r, 0, 0);
    size_t      i = 0, start = 0, k;

    jj_charge(r, s.len);
    while (i < s.len) {
        k = jj_line_break(s.u.s, s.len, i);
        if (k == 0) {
            jj_utf8_next(s.u.s, s.len, &i);
            continue;
        }
        jj_list_push(r, &out, jj_str(r, s.u.s + start,
                                     i - start + (keepends ? k : 0)));
        i += k;
        start = i;
    }
    if (start < s.len) {
        jj_list_push(r, &out, jj_str(r, s.u.s + start, s.len - start));
    }
    return out;
}

/* str.startswith / endswith with a str or a tuple of them. */
static int
jj_affix(jj_render_t *r, jj_value_t s, jj_value_t fix, jj_value_t start,
    jj_value_t end, int suffix, const char *fname)
{
    size_t    b, e;
    uint32_t  i;

    jj_check_defined(r, fix);
    jj_cp_range(r, s, start, end, &b, &e);
    if (e < b) {
        return 0;
    }
    if (fix.type == JJ_LIST && (fix.flags & JJ_F_TUPLE)) {
        for (i = 0; i < fix.u.list->n; i++) {
            if (fix.u.list->v[i].type != JJ_STR) {
                jj_raise(r, "TypeError", "tuple for %s must only contain str, "
                         "not %s", fname, jj_type_name(fix.u.list->v[i]));
            }
            if (jj_affix(r, s, fix.u.list->v[i], start, end, suffix, fname)) {
                return 1;
            }
        }
        return 0;
    }
    if (fix.type != JJ_STR) {
        jj_raise(r, "TypeError", "%s first arg must be str or a tuple of str, "
                 "not %s", fname, jj_type_name(fix));
    }
    if (fix.len > e - b) {
        return 0;
    }
    return memcmp(s.u.s + (suffix ? e - fix.len : b), fix.u.s, fix.len) == 0;
}

/* sep.join(items): every item a str. */
static jj_value_t
jj_join_strs(jj_render_t *r, jj_value_t sep, jj_value_t items)
{
    const jj_value_t  *v;
    jj_buf_t           b;
    uint32_t           n, i;

    v = jj_iterate(r, items, &n);
    memset(&b, 0, sizeof(b));
    for (i = 0; i < n; i++) {
        if (v[i].type != JJ_STR) {
            jj_raise(r, "TypeError", "sequence item %u: expected str "
                     "instance, %s found", i, jj_type_name(v[i]));
        }
        if (i > 0) {
            jj_buf_add(r, &b, sep.u.s, sep.len);
        }
        jj_charge(r, v[i].len);
        jj_buf_add(r, &b, v[i].u.s, v[i].len);
    }
    return jj_buf_str(r, &b);
}

/* str.format(): {} {0} {name}, {{ and }}, !s and !r; no format specs. */
static jj_value_t
jj_format(jj_render_t *r, jj_value_t fmt, jj_args_t *a)
{
    jj_buf_t     b;
    size_t       i, j, k;
    uint32_t     autoi = 0, idx, m;
    jj_value_t   v;
    const char  *s = fmt.u.s;
    char         conv;

    memset(&b, 0, sizeof(b));
    jj_charge(r, fmt.len);
    for (i = 0; i < fmt.len; i++) {
        if (s[i] == '}' ) {
            if (i + 1 < fmt.len && s[i + 1] == '}') {
                jj_buf_addc(r, &b, '}');
                i++;
                continue;
            }
            jj_raise(r, "ValueError", "Single '}' encountered in format "
                     "string");
        }
        if (s[i] != '{') {
            jj_buf_addc(r, &b, s[i]);
            continue;
        }
        if (i + 1 < fmt.len && s[i + 1] == '{') {
            jj_buf_addc(r, &b, '{');
            i++;
            continue;
        }
        for (j = i + 1; j < fmt.len && s[j] != '}' && s[j] != '!'
             && s[j] != ':'; j++)
        {
        }
        conv = 0;
        k = j;
        if (k < fmt.len && s[k] == '!' && k + 1 < fmt.len) {
            conv = s[k + 1];
            k += 2;
        }
        if (k >= fmt.len || s[k] != '}') {
            jj_raise(r, "ValueError", "format specs and unterminated fields "
                     "are not supported in str.format()");
        }
        if (j == i + 1) {
            idx = autoi++;
            goto positional;
        }
        if (s[i + 1] >= '0' && s[i + 1] <= '9') {
            idx = 0;
            for (m = (uint32_t) i + 1; m < j; m++) {
                if (s[m] < '0' || s[m] > '9' || idx > 100000) {
                    jj_raise(r, "ValueError", "unsupported format field");
                }
                idx = idx * 10 + (uint32_t) (s[m] - '0');
            }
            goto positional;
        }
        for (m = 0; m < a->nkw; m++) {
            if (a->kwname[m]->nlen == j - i - 1
                && memcmp(a->kwname[m]->name, s + i + 1, j - i - 1) == 0)
            {
                break;
            }
        }
        if (m == a->nkw) {
            jj_raise(r, "KeyError", "'%.*s'", (int) (j - i - 1), s + i + 1);
        }
        v = a->kw[m];
        goto put;
    positional:
        if (idx >= a->npos) {
            jj_raise(r, "IndexError", "Replacement index %u out of range for "
                     "positional args tuple", idx);
        }
        v = a->pos[idx];
    put:
        if (conv == 'r') {
            jj_write_repr(r, &b, v);
        } else {
            jj_write_str(r, &b, v);
        }
        i = k;
    }
    return jj_buf_str(r, &b);
}

static jj_value_t
jj_pad(jj_render_t *r, jj_value_t s, int64_t width, jj_value_t fill,
    int how)
{
    int64_t   n = (int64_t) jj_utf8_len(s.u.s, s.len), left, right, i;
    jj_buf_t  b;

    if (fill.type == JJ_UNDEF) {
        fill = jj_str(r, " ", 1);
    }
    if (fill.type != JJ_STR || jj_utf8_len(fill.u.s, fill.len) != 1) {
        jj_raise(r, "TypeError", "The fill character must be exactly one "
                 "character long");
    }
    if (width <= n) {
        return s;
    }
    if (width - n > (int64_t) r->out_max) {
        jj_raise(r, "LimitError", "a padding makes more than %zu bytes",
                 r->out_max);
    }
    left = how == 0 ? 0 : how == 1 ? width - n : (width - n) / 2
                                                 + ((width - n) & n & 1);
    right = width - n - left;
    memset(&b, 0, sizeof(b));
    for (i = 0; i < left; i++) {
        jj_buf_add(r, &b, fill.u.s, fill.len);
    }
    jj_buf_add(r, &b, s.u.s, s.len);
    for (i = 0; i < right; i++) {
        jj_buf_add(r, &b, fill.u.s, fill.len);
    }
    return jj_buf_str(r, &b);
}

/* Python's str.isalpha() and friends, over every character. */
static int
jj_str_is(jj_value_t s, int what)
{
    size_t               i = 0;
    int32_t              c;
    utf8proc_category_t  k;
    int                  cased = 0;

    if (s.len == 0) {
        return 0;
    }
    while (i < s.len) {
        c = jj_utf8_next(s.u.s, s.len, &i);
        k = utf8proc_category(c);
        switch (what) {
        case 'a':
            if (k < UTF8PROC_CATEGORY_LU || k > UTF8PROC_CATEGORY_LO) {
                return 0;
            }
            break;
        case 'd':
            if (k != UTF8PROC_CATEGORY_ND) {
                return 0;
            }
            break;
        case 'n':
            if ((k < UTF8PROC_CATEGORY_LU || k > UTF8PROC_CATEGORY_LO)
                && (k < UTF8PROC_CATEGORY_ND || k > UTF8PROC_CATEGORY_NO))
            {
                return 0;
            }
            break;
        case 's':
            if (!jj_py_space(c)) {
                return 0;
            }
            break;
        case 'l':
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) {
                return 0;
            }
            cased |= k == UTF8PROC_CATEGORY_LL;
            break;
        default:
            if (k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) {
                return 0;
            }
            cased |= k == UTF8PROC_CATEGORY_LU;
            break;
        }
    }
    return what == 'l' || what == 'u' ? cased : 1;
}

/* ---- methods ------------------------------------------------------------ */

typedef enum {
    JJ_M_STRIP, JJ_M_LSTRIP, JJ_M_RSTRIP, JJ_M_SPLIT, JJ_M_RSPLIT,
    JJ_M_SPLITLINES, JJ_M_STARTSWITH, JJ_M_ENDSWITH, JJ_M_REPLACE,
    JJ_M_UPPER, JJ_M_LOWER, JJ_M_TITLE, JJ_M_CAPITALIZE, JJ_M_SWAPCASE,
    JJ_M_FIND, JJ_M_RFIND, JJ_M_INDEX, JJ_M_RINDEX, JJ_M_COUNT, JJ_M_JOIN,
    JJ_M_FORMAT, JJ_M_ISALNUM, JJ_M_ISALPHA, JJ_M_ISDIGIT, JJ_M_ISSPACE,
    JJ_M_ISLOWER, JJ_M_ISUPPER, JJ_M_PARTITION, JJ_M_RPARTITION,
    JJ_M_REMOVEPREFIX, JJ_M_REMOVESUFFIX, JJ_M_ZFILL, JJ_M_CENTER,
    JJ_M_LJUST, JJ_M_RJUST, JJ_M_STR_OTHER,
    JJ_M_GET, JJ_M_ITEMS, JJ_M_KEYS, JJ_M_VALUES, JJ_M_COPY,
    JJ_M_LCOUNT, JJ_M_LINDEX
} jj_method_t;

typedef struct {
    const char  *name;
    int          id;            /* -2: the sandbox refuses it */
} jj_name_t;

static const jj_name_t  jj_str_methods[] = {
    { "strip", JJ_M_STRIP }, { "lstrip", JJ_M_LSTRIP },
    { "rstrip", JJ_M_RSTRIP }, { "split", JJ_M_SPLIT },
    { "rsplit", JJ_M_RSPLIT }, { "splitlines", JJ_M_SPLITLINES },
    { "startswith", JJ_M_STARTSWITH }, { "endswith", JJ_M_ENDSWITH },
    { "replace", JJ_M_REPLACE }, { "upper", JJ_M_UPPER },
    { "lower", JJ_M_LOWER }, { "title", JJ_M_TITLE },
    { "capitalize", JJ_M_CAPITALIZE }, { "swapcase", JJ_M_SWAPCASE },
    { "find", JJ_M_FIND }, { "rfind", JJ_M_RFIND }, { "index", JJ_M_INDEX },
    { "rindex", JJ_M_RINDEX }, { "count", JJ_M_COUNT },
    { "join", JJ_M_JOIN }, { "format", JJ_M_FORMAT },
    { "isalnum", JJ_M_ISALNUM }, { "isalpha", JJ_M_ISALPHA },
    { "isdigit", JJ_M_ISDIGIT }, { "isspace", JJ_M_ISSPACE },
    { "islower", JJ_M_ISLOWER }, { "isupper", JJ_M_ISUPPER },
    { "partition", JJ_M_PARTITION }, { "rpartition", JJ_M_RPARTITION },
    { "removeprefix", JJ_M_REMOVEPREFIX },
    { "removesuffix", JJ_M_REMOVESUFFIX }, { "zfill", JJ_M_ZFILL },
    { "center", JJ_M_CENTER }, { "ljust", JJ_M_LJUST },
    { "rjust", JJ_M_RJUST },
    /* str has these too; a template that calls one is told so */
    { "casefold", JJ_M_STR_OTHER }, { "encode", JJ_M_STR_OTHER },
    { "expandtabs", JJ_M_STR_OTHER }, { "format_map", JJ_M_STR_OTHER },
    { "isascii", JJ_M_STR_OTHER }, { "isdecimal", JJ_M_STR_OTHER },
    { "isidentifier", JJ_M_STR_OTHER }, { "isnumeric", JJ_M_STR_OTHER },
    { "isprintable", JJ_M_STR_OTHER }, { "istitle", JJ_M_STR_OTHER },
    { "maketrans", JJ_M_STR_OTHER }, { "translate", JJ_M_STR_OTHER },
    { NULL, 0 }
};

static const jj_name_t  jj_dict_methods[] = {
    { "get", JJ_M_GET }, { "items", JJ_M_ITEMS }, { "keys", JJ_M_KEYS },
    { "values", JJ_M_VALUES }, { "copy", JJ_M_COPY },
    { "clear", -2 }, { "pop", -2 }, { "popitem", -2 }, { "setdefault", -2 },
    { "update", -2 },
    { NULL, 0 }
};

static const jj_name_t  jj_list_methods[] = {
    { "count", JJ_M_LCOUNT }, { "index", JJ_M_LINDEX },
    { "copy", JJ_M_COPY },
    { "append", -2 }, { "clear", -2 }, { "extend", -2 }, { "insert", -2 },
    { "pop", -2 }, { "remove", -2 }, { "reverse", -2 }, { "sort", -2 },
    { NULL, 0 }
};

static const jj_name_t  jj_tuple_methods[] = {
    { "count", JJ_M_LCOUNT }, { "index", JJ_M_LINDEX },
    { NULL, 0 }
};

static int
jj_name_find(const jj_name_t *t, const char *name, size_t len, int none)
{
    for ( ; t->name != NULL; t++) {
        if (strlen(t->name) == len && memcmp(t->name, name, len) == 0) {
            return t->id;
        }
    }
    return none;
}

/* The method name of self: its id, -2 if the sandbox refuses it, -1 if
 * self has no such attribute. */
int
jj_method_id(jj_value_t self, const char *name, size_t len)
{
    switch (self.type) {
    case JJ_STR:
        return jj_name_find(jj_str_methods, name, len, -1);
    case JJ_DICT:
        return jj_name_find(jj_dict_methods, name, len, -1);
    case JJ_LIST:
        if (self.flags & JJ_F_GEN) {
            return -1;
        }
        return jj_name_find(self.flags & JJ_F_TUPLE ? jj_tuple_methods
                                                     : jj_list_methods,
                            name, len, -1);
    default:
        return -1;
    }
}

static jj_value_t
jj_tuple3(jj_render_t *r, jj_value_t a, jj_value_t b, jj_value_t c)
{
    jj_value_t  t = jj_list_new(r, 3, JJ_F_TUPLE);

    jj_list_push(r, &t, a);
    jj_list_push(r, &t, b);
    jj_list_push(r, &t, c);
    return t;
}

static jj_value_t
jj_pair(jj_render_t *r, jj_value_t a, jj_value_t b)
{
    jj_value_t  t = jj_list_new(r, 2, JJ_F_TUPLE);

    jj_list_push(r, &t, a);
    jj_list_push(r, &t, b);
    return t;
}

static jj_value_t
jj_dict_view(jj_render_t *r, const jj_dict_t *d, int what)
{
    jj_value_t  l = jj_list_new(r, d->n, 0);
    uint32_t    i;

    jj_charge(r, d->n);
    for (i = 0; i < d->n; i++) {
        jj_list_push(r, &l, what == JJ_M_KEYS ? d->key[i]
                            : what == JJ_M_VALUES ? d->val[i]
                            : jj_pair(r, d->key[i], d->val[i]));
    }
    return l;
}

static jj_value_t
jj_call_dict_method(jj_render_t *r, const jj_func_t *f, jj_args_t *a)
{
    static const char *const  get[] = { "key", "default", NULL };
    static const char *const  none[] = { NULL };
    jj_value_t                self = f->self, arg[2], *p, copy;
    uint32_t                  i;

    if (f->id == JJ_M_GET) {
        if (!(jj_bind(r, "get", a, get, arg) & 1)) {
            jj_raise(r, "TypeError", "get expected at least 1 argument, got "
                     "0");
        }
        jj_check_hashable(r, arg[0]);
        p = jj_dict_get(r, self.u.dict, arg[0]);
        return p ? *p : arg[1].type == JJ_UNDEF ? jj_none() : arg[1];
    }
    jj_bind(r, f->name, a, none, arg);
    if (f->id == JJ_M_COPY) {
        copy = jj_dict_new(r, self.u.dict->n);
        for (i = 0; i < self.u.dict->n; i++) {
            jj_dict_set(r, &copy, self.u.dict->key[i], self.u.dict->val[i]);
        }
        return copy;
    }
    return jj_dict_view(r, self.u.dict, f->id);
}

static jj_value_t
jj_call_list_method(jj_render_t *r, const jj_func_t *f, jj_args_t *a)
{
    static const char *const  one[] = { "value", NULL };
    static const char *const  none[] = { NULL };
    jj_value_t                self = f->self, arg[1];
    uint32_t                  i, n = self.u.list->n;
    int64_t                   k = 0;

    if (f->id == JJ_M_COPY) {
        jj_bind(r, "copy", a, none, arg);
        return jj_slice(r, self, jj_none(), jj_none(), jj_none());
    }
    if (a->npos != 1 || a->nkw != 0) {
        jj_raise(r, "TypeError", "%s() takes exactly one argument", f->name);
    }
    (void) one;
    for (i = 0; i < n; i++) {
        if (jj_equal(r, self.u.list->v[i], a->pos[0])) {
            if (f->id == JJ_M_LINDEX) {
                return jj_int(i);
            }
            k++;
        }
    }
    if (f->id == JJ_M_LINDEX) {
        jj_raise(r, "ValueError", "%s.index(x): x not in %s",
                 jj_type_name(self), jj_type_name(self));
    }
    return jj_int(k);
}

jj_value_t
jj_call_method(jj_render_t *r, const jj_func_t *f, jj_args_t *a)
{
    static const char *const  p_chars[] = { "chars", NULL };
    static const char *const  p_split[] = { "sep", "maxsplit", NULL };
    static const char *const  p_keep[] = { "keepends", NULL };
    static const char *const  p_affix[] = { "prefix", "start", "end", NULL };
    static const char *const  p_repl[] = { "old", "new", "count", NULL };
    static const char *const  p_find[] = { "sub", "start", "end", NULL };
    static const char *const  p_one[] = { "x", NULL };
    static const char *const  p_pad[] = { "width", "fillchar", NULL };
    static const char *const  none[] = { NULL };
    jj_value_t                s = f->self, arg[3], v, head;
    unsigned                  given;
    size_t                    b, e;
    const char               *p;
    int64_t                   n;

    if (s.type == JJ_DICT) {
        return jj_call_dict_method(r, f, a);
    }
    if (s.type == JJ_LIST) {
        return jj_call_list_method(r, f, a);
    }
    switch (f->id) {
    case JJ_M_STRIP:
    case JJ_M_LSTRIP:
    case JJ_M_RSTRIP:
        jj_bind(r, f->name, a, p_chars, arg);
        return jj_strip(r, s, arg[0], f->id == JJ_M_STRIP ? 3
                                      : f->id == JJ_M_LSTRIP ? 1 : 2);
    case JJ_M_SPLIT:
    case JJ_M_RSPLIT:
        given = jj_bind(r, f->name, a, p_split, arg);
        if (arg[0].type != JJ_STR && arg[0].type != JJ_NONE
            && arg[0].type != JJ_UNDEF)
        {
            jj_raise(r, "TypeError", "must be str or None, not %s",
                     jj_type_name(arg[0]));
        }
        n = given & 2 ? jj_int_arg(r, arg[1], "maxsplit") : -1;
        return jj_split(r, s, arg[0], n < 0 ? -1 : n, f->id == JJ_M_RSPLIT);
    case JJ_M_SPLITLINES:
        jj_bind(r, f->name, a, p_keep, arg);
        return jj_splitlines(r, s, jj_truthy(arg[0]));
    case JJ_M_STARTSWITH:
    case JJ_M_ENDSWITH:
        if (!(jj_bind(r, f->name, a, p_affix, arg) & 1)) {
            jj_raise(r, "TypeError", "%s() takes at least 1 argument (0 "
                     "given)", f->name);
        }
        return jj_bool(jj_affix(r, s, arg[0], arg[1], arg[2],
                                f->id == JJ_M_ENDSWITH, f->name));
    case JJ_M_REPLACE:
        given = jj_bind(r, f->name, a, p_repl, arg);
        if ((given & 3) != 3) {
            jj_raise(r, "TypeError", "replace expected at least 2 arguments, "
                     "got %u", a->npos + a->nkw);
        }
        arg[0] = jj_str_arg(r, arg[0], "replace() argument 1");
        arg[1] = jj_str_arg(r, arg[1], "replace() argument 2");
        n = given & 4 ? jj_int_arg(r, arg[2], "count") : -1;
        return jj_replace(r, s, arg[0], arg[1], n < 0 ? -1 : n);
    case JJ_M_UPPER:
    case JJ_M_LOWER:
    case JJ_M_TITLE:
    case JJ_M_CAPITALIZE:
    case JJ_M_SWAPCASE:
        jj_bind(r, f->name, a, none, arg);
        return jj_case(r, s, f->id == JJ_M_UPPER ? JJ_CASE_UPPER
                             : f->id == JJ_M_LOWER ? JJ_CASE_LOWER
                             : f->id == JJ_M_TITLE ? JJ_CASE_TITLE
                             : f->id == JJ_M_CAPITALIZE ? JJ_CASE_CAPITALIZE
                             : JJ_CASE_SWAPCASE);
    case JJ_M_FIND:
    case JJ_M_RFIND:
    case JJ_M_INDEX:
    case JJ_M_RINDEX:
        if (!(jj_bind(r, f->name, a, p_find, arg) & 1)) {
            jj_raise(r, "TypeError", "%s() takes at least 1 argument (0 "
                     "given)", f->name);
        }
        v = jj_find(r, s, arg[0], arg[1], arg[2],
                    f->id == JJ_M_RFIND || f->id == JJ_M_RINDEX);
        if (v.u.i < 0 && (f->id == JJ_M_INDEX || f->id == JJ_M_RINDEX)) {
            jj_raise(r, "ValueError", "substring not found");
        }
        return v;
    case JJ_M_COUNT:
        if (!(jj_bind(r, f->name, a, p_find, arg) & 1)) {
            jj_raise(r, "TypeError", "count() takes at least 1 argument (0 "
                     "given)");
        }
        jj_cp_range(r, s, arg[1], arg[2], &b, &e);
        return jj_int(e < b ? 0 : jj_count(r, s, arg[0], b, e));
    case JJ_M_JOIN:
        jj_bind(r, f->name, a, p_one, arg);
        return jj_join_strs(r, s, arg[0]);
    case JJ_M_FORMAT:
        return jj_format(r, s, a);
    case JJ_M_ISALNUM:
    case JJ_M_ISALPHA:
    case JJ_M_ISDIGIT:
    case JJ_M_ISSPACE:
    case JJ_M_ISLOWER:
    case JJ_M_ISUPPER:
        jj_bind(r, f->name, a, none, arg);
        return jj_bool(jj_str_is(s, f->id == JJ_M_ISALNUM ? 'n'
                                    : f->id == JJ_M_ISALPHA ? 'a'
                                    : f->id == JJ_M_ISDIGIT ? 'd'
                                    : f->id == JJ_M_ISSPACE ? 's'
                                    : f->id == JJ_M_ISLOWER ? 'l' : 'u'));
    case JJ_M_PARTITION:
    case JJ_M_RPARTITION:
        jj_bind(r, f->name, a, p_one, arg);
        arg[0] = jj_str_arg(r, arg[0], "separator");
        if (arg[0].len == 0) {
            jj_raise(r, "ValueError", "empty separator");
        }
        v = jj_find(r, s, arg[0], jj_none(), jj_none(),
                    f->id == JJ_M_RPARTITION);
        if (v.u.i < 0) {
            head = jj_str(r, "", 0);
            return f->id == JJ_M_PARTITION ? jj_tuple3(r, s, head, head)
                                           : jj_tuple3(r, head, head, s);
        }
        b = jj_utf8_offset(s.u.s, s.len, v.u.i);
        return jj_tuple3(r, jj_str(r, s.u.s, b), arg[0],
                         jj_str(r, s.u.s + b + arg[0].len,
                                s.len - b - arg[0].len));
    case JJ_M_REMOVEPREFIX:
    case JJ_M_REMOVESUFFIX:
        jj_bind(r, f->name, a, p_one, arg);
        arg[0] = jj_str_arg(r, arg[0], f->name);
        if (arg[0].len <= s.len) {
            p = f->id == JJ_M_REMOVEPREFIX ? s.u.s
                                            : s.u.s + s.len - arg[0].len;
            if (memcmp(p, arg[0].u.s, arg[0].len) == 0) {
                return jj_str(r, f->id == JJ_M_REMOVEPREFIX
                                 ? s.u.s + arg[0].len : s.u.s,
                              s.len - arg[0].len);
            }
        }
        return s;
    case JJ_M_ZFILL:
        jj_bind(r, f->name, a, p_one, arg);
        n = jj_int_arg(r, arg[0], "width");
        if (s.len > 0 && (s.u.s[0] == '-' || s.u.s[0] == '+')) {
            v = jj_pad(r, jj_str(r, s.u.s + 1, s.len - 1), n - 1,
                       jj_str(r, "0", 1), 1);
            head = jj_str(r, s.u.s, 1);
            return jj_binop(r, JJ_ADD, head, v);
        }
        return jj_pad(r, s, n, jj_str(r, "0", 1), 1);
    case JJ_M_CENTER:
    case JJ_M_LJUST:
    case JJ_M_RJUST:
        jj_bind(r, f->name, a, p_pad, arg);
        n = jj_int_arg(r, arg[0], "width");
        return jj_pad(r, s, n, arg[1], f->id == JJ_M_LJUST ? 0
                                       : f->id == JJ_M_RJUST ? 1 : 2);
    default:
        jj_raise(r, "TypeError", "str.%s() is not supported in chat "
                 "templates", f->name);
    }
}

/* ---- filters ------------------------------------------------------------ */

typedef enum {
    JJ_F_ABS, JJ_F_CAPITALIZE, JJ_F_CENTER, JJ_F_COUNT, JJ_F_DEFAULT,
    JJ_F_DICTSORT, JJ_F_ESCAPE, JJ_F_FIRST, JJ_F_FLOAT, JJ_F_FORCEESCAPE,
    JJ_F_INDENT, JJ_F_INT, JJ_F_ITEMS, JJ_F_JOIN, JJ_F_LAST, JJ_F_LENGTH,
    JJ_F_LIST, JJ_F_LOWER, JJ_F_MAP, JJ_F_MAX, JJ_F_MIN, JJ_F_REJECT,
    JJ_F_REJECTATTR, JJ_F_REPLACE, JJ_F_REVERSE, JJ_F_ROUND, JJ_F_SAFE,
    JJ_F_SELECT, JJ_F_SELECTATTR, JJ_F_SORT, JJ_F_STRING, JJ_F_SUM,
    JJ_F_TITLE, JJ_F_TOJSON, JJ_F_TRIM, JJ_F_UNIQUE, JJ_F_UPPER,
    JJ_F_WORDCOUNT, JJ_F_OTHER
} jj_filter_t;

static const jj_name_t  jj_filters[] = {
    { "abs", JJ_F_ABS }, { "capitalize", JJ_F_CAPITALIZE },
    { "center", JJ_F_CENTER }, { "count", JJ_F_COUNT },
    { "d", JJ_F_DEFAULT }, { "default", JJ_F_DEFAULT },
    { "dictsort", JJ_F_DICTSORT }, { "e", JJ_F_ESCAPE },
    { "escape", JJ_F_ESCAPE }, { "first", JJ_F_FIRST },
    { "float", JJ_F_FLOAT }, { "forceescape", JJ_F_FORCEESCAPE },
    { "indent", JJ_F_INDENT }, { "int", JJ_F_INT }, { "items", JJ_F_ITEMS },
    { "join", JJ_F_JOIN }, { "last", JJ_F_LAST }, { "length", JJ_F_LENGTH },
    { "list", JJ_F_LIST }, { "lower", JJ_F_LOWER }, { "map", JJ_F_MAP },
    { "max", JJ_F_MAX }, { "min", JJ_F_MIN }, { "reject", JJ_F_REJECT },
    { "rejectattr", JJ_F_REJECTATTR }, { "replace", JJ_F_REPLACE },
    { "reverse", JJ_F_REVERSE }, { "round", JJ_F_ROUND },
    { "safe", JJ_F_SAFE }, { "select", JJ_F_SELECT },
    { "selectattr", JJ_F_SELECTATTR }, { "sort", JJ_F_SORT },
    { "string", JJ_F_STRING }, { "sum", JJ_F_SUM }, { "title", JJ_F_TITLE },
    { "tojson", JJ_F_TOJSON }, { "trim", JJ_F_TRIM },
    { "unique", JJ_F_UNIQUE }, { "upper", JJ_F_UPPER },
    { "wordcount", JJ_F_WORDCOUNT },
    /* jinja2 has these; chat templates do not use them */
    { "attr", JJ_F_OTHER }, { "batch", JJ_F_OTHER },
    { "filesizeformat", JJ_F_OTHER }, { "format", JJ_F_OTHER },
    { "groupby", JJ_F_OTHER },
    { "pprint", JJ_F_OTHER }, { "random", JJ_F_OTHER },
    { "slice", JJ_F_OTHER }, { "striptags", JJ_F_OTHER },
    { "truncate", JJ_F_OTHER }, { "urlencode", JJ_F_OTHER },
    { "urlize", JJ_F_OTHER }, { "wordwrap", JJ_F_OTHER },
    { "xmlattr", JJ_F_OTHER },
    { NULL, 0 }
};

int
jj_filter_id(const char *name, size_t len)
{
    return jj_name_find(jj_filters, name, len, -1);
}

/* soft_str(): a str (Markup too) as it is, anything else str()'d. */
static jj_value_t
jj_soft_str(jj_render_t *r, jj_value_t v)
{
    return v.type == JJ_STR ? v : jj_to_str(r, v);
}

/* ignore_case(): strings lowercased for comparing. */
static jj_value_t
jj_ignore_case(jj_render_t *r, jj_value_t v)
{
    return v.type == JJ_STR ? jj_case(r, v, JJ_CASE_LOWER) : v;
}

/* make_attrgetter(): "a.b.0" looked up item by item (getitem), with a
 * default for an undefined result. */
static jj_value_t
jj_attrgetter(jj_render_t *r, jj_value_t item, jj_value_t attr,
    jj_value_t dflt)
{
    const char  *s, *e, *dot;
    jj_value_t   key;
    int64_t      k;
    char        *end;

    if (attr.type == JJ_UNDEF || attr.type == JJ_NONE) {
        return item;
    }
    if (attr.type != JJ_STR) {
        item = jj_getitem(r, item, attr);
        return item.type == JJ_UNDEF && dflt.type != JJ_UNDEF
               && dflt.type != JJ_NONE ? dflt : item;
    }
    s = attr.u.s;
    e = s + attr.len;
    for ( ;; ) {
        dot = memchr(s, '.', (size_t) (e - s));
        if (dot == NULL) {
            dot = e;
        }
        key = jj_str(r, s, (size_t) (dot - s));
        if (dot > s && s[0] >= '0' && s[0] <= '9') {
            k = strtoll(jj_strdup(&r->c, s, (size_t) (dot - s)), &end, 10);
            if (*end == '\0') {
                key = jj_int(k);
            }
        }
        item = jj_getitem(r, item, key);
        if (item.type == JJ_UNDEF && dflt.type != JJ_UNDEF
            && dflt.type != JJ_NONE)
        {
            item = dflt;
        }
        if (dot == e) {
            return item;
        }
        s = dot + 1;
    }
}

/* A stable merge sort of items by keys (Python's sorted()). */
static void
jj_sort(jj_render_t *r, jj_value_t *items, jj_value_t *keys, uint32_t n,
    int reverse)
{
    jj_value_t  *ti, *tk;
    uint32_t     width, lo, mid, hi, i, j, k;

    ti = jj_alloc(&r->c, (n + 1) * sizeof(jj_value_t));
    tk = jj_alloc(&r->c, (n + 1) * sizeof(jj_value_t));
    for (width = 1; width < n; width *= 2) {
        for (lo = 0; lo < n; lo += 2 * width) {
            mid = lo + width < n ? lo + width : n;
            hi = lo + 2 * width < n ? lo + 2 * width : n;
            i = lo;
            j = mid;
            k = lo;
            while (i < mid && j < hi) {
                /* the right one first only if strictly before */
                if (reverse ? jj_less(r, keys[i], keys[j], "<")
                            : jj_less(r, keys[j], keys[i], "<"))
                {
                    ti[k] = items[j];
                    tk[k++] = keys[j++];
                } else {
                    ti[k] = items[i];
                    tk[k++] = keys[i++];
                }
            }
            while (i < mid) {
                ti[k] = items[i];
                tk[k++] = keys[i++];
            }
            while (j < hi) {
                ti[k] = items[j];
                tk[k++] = keys[j++];
            }
        }
        memcpy(items, ti, n * sizeof(jj_value_t));
        memcpy(keys, tk, n * sizeof(jj_value_t));
    }
}

static jj_value_t
jj_filter_sort(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = {
        "reverse", "case_sensitive", "attribute", NULL
    };
    jj_value_t                arg[3], out, *keys;
    uint32_t                  i, n;

    jj_bind(r, "sort", a, p, arg);
    out = jj_as_list(r, v);
    n = out.u.list->n;
    keys = jj_alloc(&r->c, (n + 1) * sizeof(jj_value_t));
    for (i = 0; i < n; i++) {
        keys[i] = jj_attrgetter(r, out.u.list->v[i], arg[2], jj_undef());
        if (!jj_truthy(arg[1])) {
            keys[i] = jj_ignore_case(r, keys[i]);
        }
    }
    jj_charge(r, (uint64_t) n * 8);
    jj_sort(r, out.u.list->v, keys, n, jj_truthy(arg[0]));
    return out;
}

static jj_value_t
jj_filter_dictsort(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = {
        "case_sensitive", "by", "reverse", NULL
    };
    jj_value_t                arg[3], out, *keys;
    uint32_t                  i, n;
    int                       pos = 0;

    jj_bind(r, "dictsort", a, p, arg);
    jj_check_defined(r, v);
    if (v.type != JJ_DICT) {
        jj_raise(r, "AttributeError", "'%s' object has no attribute 'items'",
                 jj_type_name(v));
    }
    if (arg[1].type == JJ_STR && arg[1].len == 5
        && memcmp(arg[1].u.s, "value", 5) == 0)
    {
        pos = 1;
    } else if (arg[1].type != JJ_UNDEF && !(arg[1].type == JJ_STR
               && arg[1].len == 3 && memcmp(arg[1].u.s, "key", 3) == 0))
    {
        jj_raise(r, "FilterArgumentError", "You can only sort by either "
                 "\"key\" or \"value\"");
    }
    out = jj_dict_view(r, v.u.dict, JJ_M_ITEMS);
    n = out.u.list->n;
    keys = jj_alloc(&r->c, (n + 1) * sizeof(jj_value_t));
    for (i = 0; i < n; i++) {
        keys[i] = pos ? v.u.dict->val[i] : v.u.dict->key[i];
        if (!jj_truthy(arg[0])) {
            keys[i] = jj_ignore_case(r, keys[i]);
        }
    }
    jj_charge(r, (uint64_t) n * 8);
    jj_sort(r, out.u.list->v, keys, n, jj_truthy(arg[2]));
    return out;
}

static jj_value_t
jj_filter_minmax(jj_render_t *r, jj_value_t v, jj_args_t *a, int max)
{
    static const char *const  p[] = { "case_sensitive", "attribute", NULL };
    const jj_value_t         *items;
    jj_value_t                arg[2], best, bk, k;
    uint32_t                  i, n;

    jj_bind(r, max ? "max" : "min", a, p, arg);
    items = jj_iterate(r, v, &n);
    if (n == 0) {
        return jj_undef_hint(r, NULL, "No aggregated item, sequence was "
                             "empty.");
    }
    best = items[0];
    bk = jj_attrgetter(r, best, arg[1], jj_undef());
    if (!jj_truthy(arg[0])) {
        bk = jj_ignore_case(r, bk);
    }
    for (i = 1; i < n; i++) {
        k = jj_attrgetter(r, items[i], arg[1], jj_undef());
        if (!jj_truthy(arg[0])) {
            k = jj_ignore_case(r, k);
        }
        if (max ? jj_less(r, bk, k, "<") : jj_less(r, k, bk, "<")) {
            best = items[i];
            bk = k;
        }
    }
    return best;
}

static jj_value_t
jj_filter_unique(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = { "case_sensitive", "attribute", NULL };
    const jj_value_t         *items;
    jj_value_t                arg[2], out, seen, k;
    uint32_t                  i, n;

    jj_bind(r, "unique", a, p, arg);
    items = jj_iterate(r, v, &n);
    out = jj_list_new(r, 0, JJ_F_GEN);
    seen = jj_list_new(r, 0, 0);
    for (i = 0; i < n; i++) {
        k = jj_attrgetter(r, items[i], arg[1], jj_undef());
        if (!jj_truthy(arg[0])) {
            k = jj_ignore_case(r, k);
        }
        jj_check_hashable(r, k);
        if (!jj_contains(r, seen, k)) {
            jj_list_push(r, &seen, k);
            jj_list_push(r, &out, items[i]);
        }
    }
    return out;
}

/* select, reject, selectattr, rejectattr (select_or_reject()). */
static jj_value_t
jj_filter_select(jj_render_t *r, jj_value_t v, jj_args_t *a, int reject,
    int attr)
{
    const jj_value_t  *items;
    jj_value_t         out = jj_list_new(r, 0, JJ_F_GEN), x;
    jj_args_t          rest;
    uint32_t           i, n, off = attr ? 1 : 0;
    int                id = -1, keep;
    const char        *name = NULL;

    if (!jj_truthy(v)) {
        return out;
    }
    if (attr && a->npos == 0) {
        jj_raise(r, "FilterArgumentError", "Missing parameter for attribute "
                 "name");
    }
    if (a->npos > off) {
        jj_check_defined(r, a->pos[off]);
        if (a->pos[off].type != JJ_STR) {
            jj_raise(r, "TemplateRuntimeError", "No test named %s.",
                     jj_type_name(a->pos[off]));
        }
        name = jj_strdup(&r->c, a->pos[off].u.s, a->pos[off].len);
        id = jj_test_id(a->pos[off].u.s, a->pos[off].len);
        if (id < 0) {
            jj_raise(r, "TemplateRuntimeError", "No test named '%s'.", name);
        }
        jj_args_shift(a, off + 1, &rest);
    }
    items = jj_iterate(r, v, &n);
    for (i = 0; i < n; i++) {
        x = attr ? jj_attrgetter(r, items[i], a->pos[0], jj_undef())
                 : items[i];
        keep = name ? jj_call_test(r, id, name, x, &rest) : jj_truthy(x);
        if (keep != reject) {
            jj_list_push(r, &out, items[i]);
        }
    }
    return out;
}

static jj_value_t
jj_filter_map(jj_render_t *r, jj_scope_t *sc, jj_value_t v, jj_args_t *a)
{
    const jj_value_t  *items;
    jj_value_t         out = jj_list_new(r, 0, JJ_F_GEN), attr, dflt;
    jj_args_t          rest;
    uint32_t           i, n, k;
    int                id;
    const char        *name;

    if (!jj_truthy(v)) {
        return out;
    }
    items = jj_iterate(r, v, &n);
    if (a->npos == 0) {
        attr = jj_undef();
        dflt = jj_undef();
        for (k = 0; k < a->nkw; k++) {
            const jj_node_t  *kn = a->kwname[k];

            if (kn->nlen == 9 && memcmp(kn->name, "attribute", 9) == 0) {
                attr = a->kw[k];
            } else if (kn->nlen == 7 && memcmp(kn->name, "default", 7) == 0) {
                dflt = a->kw[k];
            } else {
                jj_raise(r, "FilterArgumentError", "Unexpected keyword "
                         "argument '%.*s'", (int) kn->nlen, kn->name);
            }
        }
        if (attr.type == JJ_UNDEF) {
            jj_raise(r, "FilterArgumentError", "map requires a filter "
                     "argument");
        }
        for (i = 0; i < n; i++) {
            jj_list_push(r, &out, jj_attrgetter(r, items[i], attr, dflt));
        }
        return out;
    }
    jj_check_defined(r, a->pos[0]);
    if (a->pos[0].type != JJ_STR) {
        jj_raise(r, "TemplateRuntimeError", "No filter named %s.",
                 jj_type_name(a->pos[0]));
    }
    name = jj_strdup(&r->c, a->pos[0].u.s, a->pos[0].len);
    id = jj_filter_id(a->pos[0].u.s, a->pos[0].len);
    if (id < 0) {
        jj_raise(r, "TemplateRuntimeError", "No filter named '%s'.", name);
    }
    jj_args_shift(a, 1, &rest);
    for (i = 0; i < n; i++) {
        jj_list_push(r, &out, jj_call_filter(r, sc, id, name, items[i],
                                             &rest));
    }
    return out;
}

static jj_value_t
jj_filter_join(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = { "d", "attribute", NULL };
    const jj_value_t         *items;
    jj_value_t                arg[2], sep;
    jj_buf_t                  b;
    uint32_t                  i, n;

    jj_bind(r, "join", a, p, arg);
    sep = arg[0].type == JJ_UNDEF && !(a->npos > 0) ? jj_str(r, "", 0)
                                                    : jj_to_str(r, arg[0]);
    items = jj_iterate(r, v, &n);
    memset(&b, 0, sizeof(b));
    for (i = 0; i < n; i++) {
        if (i > 0) {
            jj_buf_add(r, &b, sep.u.s, sep.len);
        }
        jj_write_str(r, &b, jj_attrgetter(r, items[i], arg[1], jj_undef()));
    }
    return jj_buf_str(r, &b);
}

static jj_value_t
jj_filter_indent(jj_render_t *r, jj_value_t s, jj_args_t *a)
{
    static const char *const  p[] = { "width", "first", "blank", NULL };
    jj_value_t                arg[3], ind, lines, nl;
    jj_buf_t                  b;
    unsigned                  given;
    uint32_t                  i;
    int64_t                   w, k;
    int                       markup = s.type == JJ_STR
                                       && (s.flags & JJ_F_MARKUP);

    given = jj_bind(r, "indent", a, p, arg);
    memset(&b, 0, sizeof(b));
    if (arg[0].type == JJ_STR) {
        ind = arg[0];
    } else {
        w = given & 1 ? jj_int_arg(r, arg[0], "width") : 4;
        if (w > 4096) {
            jj_raise(r, "LimitError", "an indent of %lld", (long long) w);
        }
        for (k = 0; k < w; k++) {
            jj_buf_addc(r, &b, ' ');
        }
        ind = jj_buf_str(r, &b);
        memset(&b, 0, sizeof(b));
    }
    nl = jj_str(r, "\n", 1);
    s = jj_binop(r, JJ_ADD, s, nl);
    lines = jj_splitlines(r, s, 0);
    if (jj_truthy(arg[1])) {
        jj_buf_add(r, &b, ind.u.s, ind.len);
    }
    for (i = 0; i < lines.u.list->n; i++) {
        jj_value_t  line = lines.u.list->v[i];

        if (i > 0) {
            jj_buf_addc(r, &b, '\n');
            if (jj_truthy(arg[2]) || line.len > 0) {
                jj_buf_add(r, &b, ind.u.s, ind.len);
            }
        }
        jj_buf_add(r, &b, line.u.s, line.len);
    }
    s = jj_buf_str(r, &b);
    return markup ? jj_markup(s) : s;
}

/* int(value, default=0, base=10): int(), else int(float()), else the
 * default. */
static int
jj_parse_int(jj_value_t s, int64_t base, int64_t *out)
{
    char        buf[80];
    size_t      i = 0, n = 0, b, e;
    int         neg = 0, d, any = 0;
    int64_t     v = 0;

    b = 0;
    e = s.len;
    while (b < e && jj_py_space((unsigned char) s.u.s[b])) {
        b++;
    }
    while (e > b && jj_py_space((unsigned char) s.u.s[e - 1])) {
        e--;
    }
    if (e - b >= sizeof(buf)) {
        return 0;
    }
    for (i = b; i < e; i++) {
        buf[n++] = s.u.s[i];
    }
    buf[n] = '\0';
    i = 0;
    if (buf[i] == '+' || buf[i] == '-') {
        neg = buf[i++] == '-';
    }
    if (base == 0 || base == 16 || base == 8 || base == 2) {
        if (buf[i] == '0' && buf[i + 1] != '\0'
            && strchr("xXoObB", buf[i + 1]) != NULL)
        {
            int  pb = (buf[i + 1] | 0x20) == 'x' ? 16
                      : (buf[i + 1] | 0x20) == 'o' ? 8 : 2;

            if (base != 0 && base != pb) {
                return 0;
            }
            base = pb;
            i += 2;
            if (buf[i] == '_') {
                i++;
            }
        } else if (base == 0) {
            base = 10;
        }
    }
    if (base < 2 || base > 36) {
        return 0;
    }
    for ( ; buf[i] != '\0'; i++) {
        if (buf[i] == '_' && any && buf[i + 1] != '\0' && buf[i + 1] != '_') {
            continue;
        }
        d = buf[i] >= '0' && buf[i] <= '9' ? buf[i] - '0'
            : (buf[i] | 0x20) >= 'a' && (buf[i] | 0x20) <= 'z'
              ? (buf[i] | 0x20) - 'a' + 10 : 99;
        if (d >= base || v > (INT64_MAX - d) / base) {
            return 0;
        }
        v = v * base + d;
        any = 1;
    }
    if (!any) {
        return 0;
    }
    *out = neg ? -v : v;
    return 1;
}

static int
jj_parse_float(jj_value_t s, double *out)
{
    char    buf[80], *end;
    size_t  b = 0, e = s.len, n = 0, i;

    while (b < e && jj_py_space((unsigned char) s.u.s[b])) {
        b++;
    }
    while (e > b && jj_py_space((unsigned char) s.u.s[e - 1])) {
        e--;
    }
    if (e == b || e - b >= sizeof(buf)) {
        return 0;
    }
    for (i = b; i < e; i++) {
        if (s.u.s[i] != '_') {
            buf[n++] = s.u.s[i];
        }
    }
    buf[n] = '\0';
    if (strchr(buf, 'x') || strchr(buf, 'X')) {
        return 0;
    }
    *out = strtod(buf, &end);
    return *end == '\0';
}

static jj_value_t
jj_filter_int(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = { "default", "base", NULL };
    jj_value_t                arg[2];
    int64_t                   i, base;
    double                    f;
    unsigned                  given;

    given = jj_bind(r, "int", a, p, arg);
    base = given & 2 ? jj_int_arg(r, arg[1], "base") : 10;
    switch (v.type) {
    case JJ_INT:
    case JJ_BOOL:
        return jj_int(v.u.i);
    case JJ_FLOAT:
        if (isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) {
            return jj_int((int64_t) v.u.f);
        }
        break;
    case JJ_STR:
        if (jj_parse_int(v, base, &i)) {
            return jj_int(i);
        }
        if (jj_parse_float(v, &f) && isfinite(f) && fabs(f) < 9.2e18) {
            return jj_int((int64_t) f);
        }
        break;
    default:
        break;
    }
    return given & 1 ? arg[0] : jj_int(0);
}

static jj_value_t
jj_filter_float(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = { "default", NULL };
    jj_value_t                arg[1];
    double                    f;
    unsigned                  given;

    given = jj_bind(r, "float", a, p, arg);
    switch (v.type) {
    case JJ_INT:
    case JJ_BOOL:
        return jj_float((double) v.u.i);
    case JJ_FLOAT:
        return v;
    case JJ_STR:
        if (jj_parse_float(v, &f)) {
            return jj_float(f);
        }
        break;
    default:
        break;
    }
    return given & 1 ? arg[0] : jj_float(0.0);
}

static jj_value_t
jj_filter_round(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = { "precision", "method", NULL };
    jj_value_t                arg[2];
    int64_t                   prec;
    double                    x, m;
    char                      buf[400];
    unsigned                  given;

    given = jj_bind(r, "round", a, p, arg);
    prec = given & 1 ? jj_int_arg(r, arg[0], "precision") : 0;
    jj_check_defined(r, v);
    if (v.type != JJ_INT && v.type != JJ_FLOAT && v.type != JJ_BOOL) {
        jj_raise(r, "TypeError", "type %s doesn't define __round__ method",
                 jj_type_name(v));
    }
    x = v.type == JJ_FLOAT ? v.u.f : (double) v.u.i;
    if (prec < -300 || prec > 300) {
        jj_raise(r, "ValueError", "precision out of range");
    }
    if (arg[1].type == JJ_STR && arg[1].len == 4
        && memcmp(arg[1].u.s, "ceil", 4) == 0)
    {
        m = pow(10, (double) prec);
        return jj_float(ceil(x * m) / m);
    }
    if (arg[1].type == JJ_STR && arg[1].len == 5
        && memcmp(arg[1].u.s, "floor", 5) == 0)
    {
        m = pow(10, (double) prec);
        return jj_float(floor(x * m) / m);
    }
    if (arg[1].type != JJ_UNDEF && !(arg[1].type == JJ_STR
        && arg[1].len == 6 && memcmp(arg[1].u.s, "common", 6) == 0))
    {
        jj_raise(r, "FilterArgumentError", "method must be common, ceil or "
                 "floor");
    }
    if (v.type != JJ_FLOAT) {
        return jj_int(v.u.i);
    }
    if (!isfinite(x) || prec < 0) {
        return jj_float(prec < 0 ? nearbyint(x / pow(10, (double) -prec))
                                   * pow(10, (double) -prec) : x);
    }
    /* correctly rounded, half to even, as Python's round() */
    snprintf(buf, sizeof(buf), "%.*f", (int) prec, x);
    return jj_float(strtod(buf, NULL));
}

static jj_value_t
jj_filter_sum(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = { "attribute", "start", NULL };
    const jj_value_t         *items;
    jj_value_t                arg[2], acc;
    uint32_t                  i, n;
    unsigned                  given;

    given = jj_bind(r, "sum", a, p, arg);
    acc = given & 2 ? arg[1] : jj_int(0);
    items = jj_iterate(r, v, &n);
    for (i = 0; i < n; i++) {
        acc = jj_binop(r, JJ_ADD, acc, jj_attrgetter(r, items[i], arg[0],
                                                     jj_undef()));
    }
    return acc;
}

/* jinja2's own title(): a capital after -, whitespace, (, {, [ or <. */
static jj_value_t
jj_filter_title(jj_render_t *r, jj_value_t s)
{
    jj_buf_t  b;
    size_t    i = 0;
    int32_t   c;
    int       start = 1, sep;

    memset(&b, 0, sizeof(b));
    jj_charge(r, s.len);
    while (i < s.len) {
        c = jj_utf8_next(s.u.s, s.len, &i);
        sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<'
              || jj_py_space(c);
        if (start) {
            jj_put_upper(r, &b, c);
        } else {
            jj_write_utf8(r, &b, utf8proc_tolower(c));
        }
        /* what follows a separator starts a word */
        start = sep;
    }
    return jj_buf_str(r, &b);
}

static jj_value_t
jj_filter_tojson(jj_render_t *r, jj_value_t v, jj_args_t *a)
{
    static const char *const  p[] = {
        "ensure_ascii", "indent", "separators", "sort_keys", NULL
    };
    jj_value_t                arg[4], ind, sep;
    jj_json_opts_t            o;
    jj_buf_t                  b, ib;
    int64_t                   k, w;

    jj_bind(r, "tojson", a, p, arg);
    memset(&o, 0, sizeof(o));
    o.ensure_ascii = jj_truthy(arg[0]);
    o.sort_keys = jj_truthy(arg[3]);
    ind = arg[1];
    if (ind.type != JJ_UNDEF && ind.type != JJ_NONE) {
        if (ind.type == JJ_STR) {
            o.indent_s = ind.u.s;
            o.indent_n = ind.len;
        } else {
            w = jj_int_arg(r, ind, "indent");
            if (w > 4096) {
                jj_raise(r, "LimitError", "an indent of %lld", (long long) w);
            }
            memset(&ib, 0, sizeof(ib));
            for (k = 0; k < w; k++) {
                jj_buf_addc(r, &ib, ' ');
            }
            o.indent_s = ib.p ? ib.p : "";
            o.indent_n = (uint32_t) ib.len;
        }
    }
    o.item_sep = o.indent_s ? "," : ", ";
    o.item_sep_n = o.indent_s ? 1 : 2;
    o.key_sep = ": ";
    o.key_sep_n = 2;
    sep = arg[2];
    if (sep.type != JJ_UNDEF && sep.type != JJ_NONE) {
        if (sep.type != JJ_LIST || sep.u.list->n != 2
            || sep.u.list->v[0].type != JJ_STR
            || sep.u.list->v[1].type != JJ_STR)
        {
            jj_raise(r, "TypeError", "separators must be a pair of strings");
        }
        o.item_sep = sep.u.list->v[0].u.s;
        o.item_sep_n = sep.u.list->v[0].len;
        o.key_sep = sep.u.list->v[1].u.s;
        o.key_sep_n = sep.u.list->v[1].len;
    }
    memset(&b, 0, sizeof(b));
    jj_write_json(r, &b, v, &o);
    return jj_buf_str(r, &b);
}

static jj_value_t
jj_filter_items(jj_render_t *r, jj_value_t v)
{
    jj_value_t  l;

    if (v.type == JJ_UNDEF) {
        return jj_list_new(r, 0, JJ_F_GEN);
    }
    if (v.type != JJ_DICT) {
        jj_raise(r, "TypeError", "Can only get item pairs from a mapping.");
    }
    l = jj_dict_view(r, v.u.dict, JJ_M_ITEMS);
    l.flags = JJ_F_GEN;
    return l;
}

static jj_value_t
jj_filter_first_last(jj_render_t *r, jj_value_t v, int last)
{
    const jj_value_t  *items;
    uint32_t           n;

    if (last && v.type == JJ_LIST && (v.flags & JJ_F_GEN)) {
        jj_raise(r, "TypeError", "'generator' object is not reversible");
    }
    items = jj_iterate(r, v, &n);
    if (n == 0) {
        return jj_undef_hint(r, NULL, "No %s item, sequence was empty.",
                             last ? "last" : "first");
    }
    return items[last ? n - 1 : 0];
}

static jj_value_t
jj_filter_reverse(jj_render_t *r, jj_value_t v)
{
    const jj_value_t  *items;
    jj_value_t         out;
    uint32_t           n, i;

    if (v.type == JJ_STR) {
        return jj_slice(r, v, jj_none(), jj_none(), jj_int(-1));
    }
    items = jj_iterate(r, v, &n);
    jj_charge(r, n);
    out = jj_list_new(r, n, v.type == JJ_LIST && !(v.flags & JJ_F_GEN)
                            ? JJ_F_GEN : 0);
    for (i = n; i-- > 0; ) {
        jj_list_push(r, &out, items[i]);
    }
    return out;
}

static jj_value_t
jj_filter_wordcount(jj_render_t *r, jj_value_t s)
{
    size_t               i = 0;
    int32_t              c;
    int64_t              words = 0;
    int                  in = 0, w;
    utf8proc_category_t  k;

    jj_charge(r, s.len);
    while (i < s.len) {
        c = jj_utf8_next(s.u.s, s.len, &i);
        k = utf8proc_category(c);
        w = c == '_' || (k >= UTF8PROC_CATEGORY_LU
                         && k <= UTF8PROC_CATEGORY_LO)
            || (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
        words += w && !in;
        in = w;
    }
    return jj_int(words);
}

jj_value_t
jj_call_filter(jj_render_t *r, jj_scope_t *sc, int id, const char *name,
    jj_value_t v, jj_args_t *a)
{
    static const char *const  p_default[] = {
        "default_value", "boolean", NULL
    };
    static const char *const  p_replace[] = { "old", "new", "count", NULL };
    static const char *const  p_trim[] = { "chars", NULL };
    static const char *const  p_center[] = { "width", NULL };
    static const char *const  none[] = { NULL };
    jj_value_t                arg[3], s;
    unsigned                  given;
    int64_t                   n;

    jj_step(r, 1);
    switch (id) {
    case JJ_F_ABS:
        jj_bind(r, name, a, none, arg);
        jj_check_defined(r, v);
        if (v.type == JJ_FLOAT) {
            return jj_float(fabs(v.u.f));
        }
        if (v.type == JJ_INT || v.type == JJ_BOOL) {
            if (v.u.i == INT64_MIN) {
                jj_raise(r, "OverflowError", "integer overflow");
            }
            return jj_int(v.u.i < 0 ? -v.u.i : v.u.i);
        }
        jj_raise(r, "TypeError", "bad operand type for abs(): '%s'",
                 jj_type_name(v));
    case JJ_F_CAPITALIZE:
        jj_bind(r, name, a, none, arg);
        return jj_case(r, jj_soft_str(r, v), JJ_CASE_CAPITALIZE);
    case JJ_F_CENTER:
        given = jj_bind(r, name, a, p_center, arg);
        n = given & 1 ? jj_int_arg(r, arg[0], "width") : 80;
        return jj_pad(r, jj_soft_str(r, v), n, jj_undef(), 2);
    case JJ_F_COUNT:
    case JJ_F_LENGTH:
        jj_bind(r, name, a, none, arg);
        return jj_int(jj_len(r, v));
    case JJ_F_DEFAULT:
        given = jj_bind(r, name, a, p_default, arg);
        if (v.type == JJ_UNDEF || (jj_truthy(arg[1]) && !jj_truthy(v))) {
            return given & 1 ? arg[0] : jj_str(r, "", 0);
        }
        return v;
    case JJ_F_DICTSORT:
        return jj_filter_dictsort(r, v, a);
    case JJ_F_ESCAPE:
    case JJ_F_FORCEESCAPE:
        jj_bind(r, name, a, none, arg);
        if (v.type == JJ_STR && (v.flags & JJ_F_MARKUP) && id == JJ_F_ESCAPE)
        {
            return v;
        }
        s = jj_to_str(r, v);
        return jj_markup(jj_binop(r, JJ_ADD, jj_markup(jj_str(r, "", 0)), s));
    case JJ_F_FIRST:
    case JJ_F_LAST:
        jj_bind(r, name, a, none, arg);
        return jj_filter_first_last(r, v, id == JJ_F_LAST);
    case JJ_F_FLOAT:
        return jj_filter_float(r, v, a);
    case JJ_F_INDENT:
        return jj_filter_indent(r, v, a);
    case JJ_F_INT:
        return jj_filter_int(r, v, a);
    case JJ_F_ITEMS:
        jj_bind(r, name, a, none, arg);
        return jj_filter_items(r, v);
    case JJ_F_JOIN:
        return jj_filter_join(r, v, a);
    case JJ_F_LIST:
        jj_bind(r, name, a, none, arg);
        return jj_as_list(r, v);
    case JJ_F_LOWER:
    case JJ_F_UPPER:
        jj_bind(r, name, a, none, arg);
        return jj_case(r, jj_soft_str(r, v), id == JJ_F_LOWER ? JJ_CASE_LOWER
                                                              : JJ_CASE_UPPER);
    case JJ_F_MAP:
        return jj_filter_map(r, sc, v, a);
    case JJ_F_MAX:
    case JJ_F_MIN:
        return jj_filter_minmax(r, v, a, id == JJ_F_MAX);
    case JJ_F_REJECT:
    case JJ_F_SELECT:
        return jj_filter_select(r, v, a, id == JJ_F_REJECT, 0);
    case JJ_F_REJECTATTR:
    case JJ_F_SELECTATTR:
        return jj_filter_select(r, v, a, id == JJ_F_REJECTATTR, 1);
    case JJ_F_REPLACE:
        given = jj_bind(r, name, a, p_replace, arg);
        if ((given & 3) != 3) {
            jj_raise(r, "TypeError", "do_replace() missing required "
                     "arguments");
        }
        n = given & 4 && arg[2].type != JJ_NONE
            ? jj_int_arg(r, arg[2], "count") : -1;
        return jj_replace(r, jj_to_str(r, v), jj_to_str(r, arg[0]),
                          jj_to_str(r, arg[1]), n < 0 ? -1 : n);
    case JJ_F_REVERSE:
        jj_bind(r, name, a, none, arg);
        return jj_filter_reverse(r, v);
    case JJ_F_ROUND:
        return jj_filter_round(r, v, a);
    case JJ_F_SAFE:
        jj_bind(r, name, a, none, arg);
        return jj_markup(jj_to_str(r, v));
    case JJ_F_SORT:
        return jj_filter_sort(r, v, a);
    case JJ_F_STRING:
        jj_bind(r, name, a, none, arg);
        return jj_soft_str(r, v);
    case JJ_F_SUM:
        return jj_filter_sum(r, v, a);
    case JJ_F_TITLE:
        jj_bind(r, name, a, none, arg);
        return jj_filter_title(r, jj_soft_str(r, v));
    case JJ_F_TOJSON:
        return jj_filter_tojson(r, v, a);
    case JJ_F_TRIM:
        jj_bind(r, name, a, p_trim, arg);
        return jj_strip(r, jj_soft_str(r, v), arg[0], 3);
    case JJ_F_UNIQUE:
        return jj_filter_unique(r, v, a);
    case JJ_F_WORDCOUNT:
        jj_bind(r, name, a, none, arg);
        return jj_filter_wordcount(r, jj_soft_str(r, v));
    default:
        jj_raise(r, "TemplateRuntimeError", "the '%s' filter is not "
                 "supported in chat templates", name);
    }
}

/* ---- tests -------------------------------------------------------------- */

typedef enum {
    JJ_TS_DEFINED, JJ_TS_UNDEFINED, JJ_TS_NONE, JJ_TS_BOOLEAN, JJ_TS_FALSE,
    JJ_TS_TRUE, JJ_TS_INTEGER, JJ_TS_FLOAT, JJ_TS_NUMBER, JJ_TS_STRING,
    JJ_TS_MAPPING, JJ_TS_SEQUENCE, JJ_TS_ITERABLE, JJ_TS_CALLABLE,
    JJ_TS_SAMEAS, JJ_TS_ESCAPED, JJ_TS_ODD, JJ_TS_EVEN, JJ_TS_DIVISIBLEBY,
    JJ_TS_LOWER, JJ_TS_UPPER, JJ_TS_IN, JJ_TS_EQ, JJ_TS_NE, JJ_TS_LT, JJ_TS_LE,
    JJ_TS_GT, JJ_TS_GE, JJ_TS_FILTER, JJ_TS_TEST
} jj_test_t;

static const jj_name_t  jj_tests[] = {
    { "defined", JJ_TS_DEFINED }, { "undefined", JJ_TS_UNDEFINED },
    { "none", JJ_TS_NONE }, { "boolean", JJ_TS_BOOLEAN },
    { "false", JJ_TS_FALSE }, { "true", JJ_TS_TRUE },
    { "integer", JJ_TS_INTEGER }, { "float", JJ_TS_FLOAT },
    { "number", JJ_TS_NUMBER }, { "string", JJ_TS_STRING },
    { "mapping", JJ_TS_MAPPING }, { "sequence", JJ_TS_SEQUENCE },
    { "iterable", JJ_TS_ITERABLE }, { "callable", JJ_TS_CALLABLE },
    { "sameas", JJ_TS_SAMEAS }, { "escaped", JJ_TS_ESCAPED },
    { "odd", JJ_TS_ODD }, { "even", JJ_TS_EVEN },
    { "divisibleby", JJ_TS_DIVISIBLEBY }, { "lower", JJ_TS_LOWER },
    { "upper", JJ_TS_UPPER }, { "in", JJ_TS_IN },
    { "==", JJ_TS_EQ }, { "eq", JJ_TS_EQ }, { "equalto", JJ_TS_EQ },
    { "!=", JJ_TS_NE }, { "ne", JJ_TS_NE },
    { "<", JJ_TS_LT }, { "lt", JJ_TS_LT }, { "lessthan", JJ_TS_LT },
    { "<=", JJ_TS_LE }, { "le", JJ_TS_LE },
    { ">", JJ_TS_GT }, { "gt", JJ_TS_GT }, { "greaterthan", JJ_TS_GT },
    { ">=", JJ_TS_GE }, { "ge", JJ_TS_GE },
    { "filter", JJ_TS_FILTER }, { "test", JJ_TS_TEST },
    { NULL, 0 }
};

int
jj_test_id(const char *name, size_t len)
{
    return jj_name_find(jj_tests, name, len, -1);
}

/* `a is sameas b`: Python's identity, for the values that have one. */
static int
jj_same(jj_value_t a, jj_value_t b)
{
    if (a.type != b.type) {
        return 0;
    }
    switch (a.type) {
    case JJ_NONE:
    case JJ_UNDEF:
        return a.type == JJ_NONE || a.u.undef == b.u.undef;
    case JJ_BOOL:
        return a.u.i == b.u.i;
    case JJ_INT:
        /* CPython caches the small ints */
        return a.u.i == b.u.i && a.u.i >= -5 && a.u.i <= 256;
    case JJ_STR:
        return a.u.s == b.u.s && a.len == b.len;
    case JJ_LIST:
        return a.u.list == b.u.list;
    case JJ_DICT:
    case JJ_NS:
        return a.u.dict == b.u.dict;
    case JJ_FUNC:
        return a.u.func == b.u.func;
    case JJ_LOOP:
        return a.u.loop == b.u.loop;
    default:
        return 0;
    }
}

/* value % m == want, as tests.py's odd, even and divisibleby. */
static int
jj_test_mod(jj_render_t *r, jj_value_t v, jj_value_t m, int64_t want)
{
    return jj_equal(r, jj_binop(r, JJ_MOD, v, m), jj_int(want));
}

int
jj_call_test(jj_render_t *r, int id, const char *name, jj_value_t v,
    jj_args_t *a)
{
    static const char *const  one[] = { "other", NULL };
    static const char *const  none[] = { NULL };
    jj_value_t                arg[1];
    jj_value_t                s;

    jj_step(r, 1);
    if (id >= JJ_TS_SAMEAS && id != JJ_TS_ESCAPED && id != JJ_TS_ODD
        && id != JJ_TS_EVEN && id != JJ_TS_LOWER && id != JJ_TS_UPPER
        && id != JJ_TS_FILTER && id != JJ_TS_TEST)
    {
        if (!(jj_bind(r, name, a, one, arg) & 1)) {
            jj_raise(r, "TypeError", "test_%s() missing 1 required positional "
                     "argument", name);
        }
    } else {
        jj_bind(r, name, a, none, arg);
    }
    switch (id) {
    case JJ_TS_DEFINED:
        return v.type != JJ_UNDEF;
    case JJ_TS_UNDEFINED:
        return v.type == JJ_UNDEF;
    case JJ_TS_NONE:
        return v.type == JJ_NONE;
    case JJ_TS_BOOLEAN:
        return v.type == JJ_BOOL;
    case JJ_TS_FALSE:
        return v.type == JJ_BOOL && !v.u.i;
    case JJ_TS_TRUE:
        return v.type == JJ_BOOL && v.u.i;
    case JJ_TS_INTEGER:
        return v.type == JJ_INT;
    case JJ_TS_FLOAT:
        return v.type == JJ_FLOAT;
    case JJ_TS_NUMBER:
        return v.type == JJ_INT || v.type == JJ_FLOAT || v.type == JJ_BOOL;
    case JJ_TS_STRING:
        return v.type == JJ_STR;
    case JJ_TS_MAPPING:
        return v.type == JJ_DICT;
    case JJ_TS_SEQUENCE:
        /* len() and __getitem__: Undefined has both */
        return v.type == JJ_STR || v.type == JJ_DICT || v.type == JJ_UNDEF
               || (v.type == JJ_LIST && !(v.flags & JJ_F_GEN));
    case JJ_TS_ITERABLE:
        return v.type == JJ_STR || v.type == JJ_DICT || v.type == JJ_UNDEF
               || v.type == JJ_LIST || v.type == JJ_LOOP;
    case JJ_TS_CALLABLE:
        return v.type == JJ_FUNC || v.type == JJ_UNDEF;
    case JJ_TS_SAMEAS:
        return jj_same(v, arg[0]);
    case JJ_TS_ESCAPED:
        return v.type == JJ_STR && (v.flags & JJ_F_MARKUP);
    case JJ_TS_ODD:
        return jj_test_mod(r, v, jj_int(2), 1);
    case JJ_TS_EVEN:
        return jj_test_mod(r, v, jj_int(2), 0);
    case JJ_TS_DIVISIBLEBY:
        return jj_test_mod(r, v, arg[0], 0);
    case JJ_TS_LOWER:
    case JJ_TS_UPPER:
        s = jj_to_str(r, v);
        return jj_str_is(s, id == JJ_TS_LOWER ? 'l' : 'u');
    case JJ_TS_IN:
        return jj_contains(r, arg[0], v);
    case JJ_TS_EQ:
    case JJ_TS_NE:
    case JJ_TS_LT:
    case JJ_TS_LE:
    case JJ_TS_GT:
    case JJ_TS_GE:
        return jj_compare(r, JJ_EQ + (id - JJ_TS_EQ), v, arg[0]);
    case JJ_TS_FILTER:
        return v.type == JJ_STR && jj_filter_id(v.u.s, v.len) >= 0;
    default:
        return v.type == JJ_STR && jj_test_id(v.u.s, v.len) >= 0;
    }
}

/* ---- globals ------------------------------------------------------------ */

typedef enum {
    JJ_G_RANGE, JJ_G_NAMESPACE, JJ_G_DICT, JJ_G_RAISE, JJ_G_STRFTIME,
    JJ_G_OTHER
} jj_global_t;

static const jj_name_t  jj_globals[] = {
    { "range", JJ_G_RANGE }, { "namespace", JJ_G_NAMESPACE },
    { "dict", JJ_G_DICT }, { "raise_exception", JJ_G_RAISE },
    { "strftime_now", JJ_G_STRFTIME },
    { "lipsum", JJ_G_OTHER }, { "cycler", JJ_G_OTHER },
    { "joiner", JJ_G_OTHER },
    { NULL, 0 }
};

int
jj_global_id(const char *name, size_t len)
{
    return jj_name_find(jj_globals, name, len, -1);
}

static jj_value_t
jj_range(jj_render_t *r, jj_args_t *a)
{
    int64_t     arg[3] = { 0, 0, 1 }, n, i, x;
    jj_value_t  out;
    uint32_t    k;

    if (a->nkw > 0) {
        jj_raise(r, "TypeError", "range() takes no keyword arguments");
    }
    if (a->npos < 1 || a->npos > 3) {
        jj_raise(r, "TypeError", "range expected at least 1 argument, got %u",
                 a->npos);
    }
    for (k = 0; k < a->npos; k++) {
        x = jj_int_arg(r, a->pos[k], "range() argument");
        arg[a->npos == 1 ? 1 : k] = x;
    }
    if (arg[2] == 0) {
        jj_raise(r, "ValueError", "range() arg 3 must not be zero");
    }
    if (arg[2] > 0) {
        n = arg[1] > arg[0] ? (arg[1] - arg[0] + arg[2] - 1) / arg[2] : 0;
    } else {
        n = arg[0] > arg[1] ? (arg[0] - arg[1] - arg[2] - 1) / -arg[2] : 0;
    }
    if (n > JJ_MAX_RANGE) {
        jj_raise(r, "OverflowError", "Range too big. The sandbox blocks "
                 "ranges larger than MAX_RANGE (%d).", JJ_MAX_RANGE);
    }
    jj_charge(r, n);
    out = jj_list_new(r, (uint32_t) n, 0);
    for (i = 0; i < n; i++) {
        jj_list_push(r, &out, jj_int(arg[0] + i * arg[2]));
    }
    return out;
}

/* dict(*args, **kwargs): a mapping or pairs, then the keywords. */
static jj_value_t
jj_make_dict(jj_render_t *r, jj_args_t *a, const char *fname)
{
    jj_value_t         d = jj_dict_new(r, 0), src;
    const jj_value_t  *items, *pair;
    uint32_t           i, n, k;

    if (a->npos > 1) {
        jj_raise(r, "TypeError", "%s expected at most 1 argument, got %u",
                 fname, a->npos);
    }
    if (a->npos == 1) {
        src = a->pos[0];
        if (src.type == JJ_DICT || src.type == JJ_NS) {
            for (i = 0; i < src.u.dict->n; i++) {
                jj_dict_set(r, &d, src.u.dict->key[i], src.u.dict->val[i]);
            }
        } else {
            items = jj_iterate(r, src, &n);
            for (i = 0; i < n; i++) {
                pair = jj_iterate(r, items[i], &k);
                if (k != 2) {
                    jj_raise(r, "ValueError", "dictionary update sequence "
                             "element #%u has length %u; 2 is required", i,
                             k);
                }
                jj_check_hashable(r, pair[0]);
                jj_dict_set(r, &d, pair[0], pair[1]);
            }
        }
    }
    for (i = 0; i < a->nkw; i++) {
        jj_dict_set(r, &d, jj_str(r, a->kwname[i]->name, a->kwname[i]->nlen),
                    a->kw[i]);
    }
    return d;
}

static const char *const  jj_months[] = {
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December"
};
static const char *const  jj_days[] = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
    "Saturday"
};

/* datetime.now().strftime(fmt) on the render's clock: the C locale's
 * names, as Python's strftime gives them. */
static jj_value_t
jj_strftime(jj_render_t *r, jj_value_t fmt)
{
    const struct tm  *tm = &r->now;
    jj_buf_t          b;
    uint32_t          i;
    char              tmp[64], spec[3];
    int               h12;

    memset(&b, 0, sizeof(b));
    jj_charge(r, fmt.len);
    for (i = 0; i < fmt.len; i++) {
        if (fmt.u.s[i] != '%' || i + 1 == fmt.len) {
            jj_buf_addc(r, &b, fmt.u.s[i]);
            continue;
        }
        h12 = tm->tm_hour % 12 == 0 ? 12 : tm->tm_hour % 12;
        switch (fmt.u.s[++i]) {
        case 'Y': jj_buf_printf(r, &b, "%d", tm->tm_year + 1900); break;
        case 'y': jj_buf_printf(r, &b, "%02d", (tm->tm_year + 1900) % 100);
                  break;
        case 'm': jj_buf_printf(r, &b, "%02d", tm->tm_mon + 1); break;
        case 'd': jj_buf_printf(r, &b, "%02d", tm->tm_mday); break;
        case 'e': jj_buf_printf(r, &b, "%2d", tm->tm_mday); break;
        case 'H': jj_buf_printf(r, &b, "%02d", tm->tm_hour); break;
        case 'I': jj_buf_printf(r, &b, "%02d", h12); break;
        case 'M': jj_buf_printf(r, &b, "%02d", tm->tm_min); break;
        case 'S': jj_buf_printf(r, &b, "%02d", tm->tm_sec); break;
        case 'f': jj_buf_add(r, &b, "000000", 6); break;
        case 'j': jj_buf_printf(r, &b, "%03d", tm->tm_yday + 1); break;
        case 'p': jj_buf_add(r, &b, tm->tm_hour < 12 ? "AM" : "PM", 2);
                  break;
        case 'B': jj_buf_printf(r, &b, "%s", jj_months[tm->tm_mon % 12]);
                  break;
        case 'b':
        case 'h': jj_buf_printf(r, &b, "%.3s", jj_months[tm->tm_mon % 12]);
                  break;
        case 'A': jj_buf_printf(r, &b, "%s", jj_days[tm->tm_wday % 7]);
                  break;
        case 'a': jj_buf_printf(r, &b, "%.3s", jj_days[tm->tm_wday % 7]);
                  break;
        case 'z':
        case 'Z': break;            /* a naive datetime has no zone */
        case '%': jj_buf_addc(r, &b, '%'); break;
        default:
            spec[0] = '%';
            spec[1] = fmt.u.s[i];
            spec[2] = '\0';
            if (strftime(tmp, sizeof(tmp), spec, tm) > 0) {
                jj_buf_add(r, &b, tmp, strlen(tmp));
            } else {
                jj_buf_add(r, &b, spec, 2);
            }
        }
    }
    return jj_buf_str(r, &b);
}

jj_value_t
jj_call_global(jj_render_t *r, int id, jj_args_t *a)
{
    static const char *const  p_msg[] = { "message", NULL };
    static const char *const  p_fmt[] = { "format", NULL };
    jj_value_t                arg[1], v;
    uint32_t                  i;

    switch (id) {
    case JJ_G_RANGE:
        return jj_range(r, a);
    case JJ_G_NAMESPACE:
        v = jj_make_dict(r, a, "namespace");
        for (i = 0; i < v.u.dict->n; i++) {
            if (v.u.dict->key[i].type == JJ_STR && v.u.dict->key[i].len > 0
                && v.u.dict->key[i].u.s[0] == '_')
            {
                jj_raise(r, "SecurityError", "Chat templates cannot store "
                         "underscore-prefixed attributes on a namespace, but "
                         "got '%.*s'. Please rename the attribute.",
                         (int) v.u.dict->key[i].len, v.u.dict->key[i].u.s);
            }
        }
        v.type = JJ_NS;
        return v;
    case JJ_G_DICT:
        return jj_make_dict(r, a, "dict");
    case JJ_G_RAISE:
        if (!(jj_bind(r, "raise_exception", a, p_msg, arg) & 1)) {
            jj_raise(r, "TypeError", "raise_exception() missing 1 required "
                     "positional argument: 'message'");
        }
        v = jj_to_str(r, arg[0]);
        jj_raise(r, "TemplateError", "%.*s", (int) v.len, v.u.s);
    case JJ_G_STRFTIME:
        if (!(jj_bind(r, "strftime_now", a, p_fmt, arg) & 1)) {
            jj_raise(r, "TypeError", "strftime_now() missing 1 required "
                     "positional argument: 'format'");
        }
        return jj_strftime(r, jj_str_arg(r, arg[0], "strftime() argument 1"));
    default:
        jj_raise(r, "TemplateRuntimeError", "this global function is not "
                 "supported in chat templates");
    }
}
