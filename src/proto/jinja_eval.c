/*
 * The tree evaluated, one function per construct.  Scopes are as jinja2's
 * compiled templates behave: a for loop's body gets a fresh scope each
 * iteration (what it sets is gone at the next one and after the loop),
 * if does not open one, a macro's body reads the scope it was defined in
 * as it is when the macro runs, and set blocks, filter blocks, with and
 * generation bodies keep their assignments to themselves.  Every node
 * evaluated is a step; every nesting is counted against the depth bound.
 */
#include <stdio.h>
#include <string.h>

#include "jinja_impl.h"

#define JJ_NEXT      0
#define JJ_BREAK     1
#define JJ_CONTINUE  2

static jj_value_t jj_eval(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n);
static int jj_exec_body(jj_render_t *r, jj_scope_t *sc, const jj_nodes_t *l,
    jj_buf_t *out);

/* ---- errors, budget, buffers -------------------------------------------- */

void
jj_raise(jj_render_t *r, const char *type, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    jj_vfail(&r->c, type, r->at ? r->at->line : 0, r->at ? r->at->col : 0,
             fmt, ap);
}

void
jj_step(jj_render_t *r, uint64_t n)
{
    r->steps += n;
    if (r->steps > r->steps_max) {
        jj_raise(r, "LimitError", "the template ran past its budget of %llu "
                 "steps", (unsigned long long) r->steps_max);
    }
}

void
jj_buf_add(jj_render_t *r, jj_buf_t *b, const char *s, size_t n)
{
    size_t  cap;

    if (n == 0) {
        return;
    }
    if (b->len + n > r->out_max) {
        jj_raise(r, "LimitError", "the template writes more than %zu bytes",
                 r->out_max);
    }
    if (b->len + n > b->cap) {
        cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n) {
            cap *= 2;
        }
        b->p = jj_grow(&r->c, b->p, b->len, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void
jj_buf_addc(jj_render_t *r, jj_buf_t *b, char ch)
{
    jj_buf_add(r, b, &ch, 1);
}

void
jj_buf_printf(jj_render_t *r, jj_buf_t *b, const char *fmt, ...)
{
    va_list  ap;
    char     tmp[64];
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    jj_buf_add(r, b, tmp, n < (int) sizeof(tmp) ? (size_t) n
                                                : sizeof(tmp) - 1);
}

/* The bound on nesting is what Python's recursion limit is to jinja2:
 * a template that recurses without end fails the same way. */
static void
jj_enter(jj_render_t *r)
{
    if (++r->c.depth > r->c.depth_max) {
        jj_raise(r, "RecursionError", "maximum recursion depth exceeded");
    }
}

/* ---- scopes ------------------------------------------------------------- */

static jj_scope_t *
jj_scope_new(jj_render_t *r, jj_scope_t *parent)
{
    jj_scope_t  *sc = jj_alloc(&r->c, sizeof(jj_scope_t));

    memset(sc, 0, sizeof(*sc));
    sc->parent = parent;
    return sc;
}

void
jj_scope_set(jj_render_t *r, jj_scope_t *sc, const char *name, size_t len,
    jj_value_t v)
{
    uint32_t  i, cap;

    for (i = 0; i < sc->n; i++) {
        if (sc->vars[i].len == len && memcmp(sc->vars[i].name, name, len) == 0)
        {
            sc->vars[i].val = v;
            return;
        }
    }
    if (sc->n == sc->cap) {
        cap = sc->cap ? sc->cap * 2 : 8;
        sc->vars = jj_grow(&r->c, sc->vars, sc->n * sizeof(jj_var_t),
                           cap * sizeof(jj_var_t));
        sc->cap = cap;
    }
    sc->vars[sc->n].name = name;
    sc->vars[sc->n].len = (uint32_t) len;
    sc->vars[sc->n].val = v;
    sc->n++;
}

/* A name: the scopes from the innermost out, then jinja2's globals. */
static jj_value_t
jj_lookup(jj_render_t *r, jj_scope_t *sc, const char *name, size_t len)
{
    uint32_t  i;
    int       id;

    for ( ; sc != NULL; sc = sc->parent) {
        jj_step(r, 1);
        for (i = sc->n; i-- > 0; ) {
            if (sc->vars[i].len == len
                && memcmp(sc->vars[i].name, name, len) == 0)
            {
                return sc->vars[i].val;
            }
        }
    }
    id = jj_global_id(name, len);
    if (id >= 0) {
        return jj_func_new(r, JJ_FN_GLOBAL, id, jj_strdup(&r->c, name, len),
                           jj_none());
    }
    return jj_undef_name(r, name, len);
}

static void
jj_assign(jj_render_t *r, jj_scope_t *sc, const jj_node_t *t, jj_value_t v)
{
    const jj_value_t  *items;
    jj_value_t         ns;
    uint32_t           n, i;

    switch (t->kind) {
    case JJ_N_NAME:
        jj_scope_set(r, sc, t->name, t->nlen, v);
        return;
    case JJ_N_TUPLE:
        items = jj_iterate(r, v, &n);
        if (n < t->list.n) {
            jj_raise(r, "ValueError", "not enough values to unpack (expected "
                     "%u, got %u)", t->list.n, n);
        }
        if (n > t->list.n) {
            jj_raise(r, "ValueError", "too many values to unpack (expected "
                     "%u)", t->list.n);
        }
        for (i = 0; i < n; i++) {
            jj_assign(r, sc, t->list.v[i], items[i]);
        }
        return;
    default:
        /* {% set ns.attr = v %} */
        ns = jj_lookup(r, sc, t->a->name, t->a->nlen);
        if (ns.type != JJ_NS) {
            jj_raise(r, "TemplateRuntimeError", "cannot assign attribute on "
                     "non-namespace object");
        }
        if (t->name[0] == '_') {
            jj_raise(r, "SecurityError", "Chat templates cannot store "
                     "underscore-prefixed attributes on a namespace, but got "
                     "'%.*s'. Please rename the attribute.", (int) t->nlen,
                     t->name);
        }
        jj_dict_set(r, &ns, jj_str(r, t->name, t->nlen), v);
        return;
    }
}

/* ---- expressions -------------------------------------------------------- */

static jj_value_t
jj_eval_name(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    return jj_lookup(r, sc, n->name, n->nlen);
}

static jj_value_t
jj_eval_getattr(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  obj = jj_eval(r, sc, n->a);

    r->at = n;
    return jj_getattr(r, obj, n->name, n->nlen);
}

static jj_value_t
jj_eval_opt(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    return n ? jj_eval(r, sc, n) : jj_none();
}

static jj_value_t
jj_eval_getitem(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  obj = jj_eval(r, sc, n->a), a, b, c;

    if (n->b->kind == JJ_N_SLICE) {
        a = jj_eval_opt(r, sc, n->b->a);
        b = jj_eval_opt(r, sc, n->b->b);
        c = jj_eval_opt(r, sc, n->b->c);
        r->at = n;
        return jj_slice(r, obj, a, b, c);
    }
    a = jj_eval(r, sc, n->b);
    r->at = n;
    return jj_getitem(r, obj, a);
}

/* The arguments of a call, filter or test: n->list, then n->list2. */
static void
jj_eval_args(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n,
    jj_args_t *a)
{
    uint32_t  i;

    a->npos = n->list.n;
    a->nkw = n->list2.n;
    a->pos = a->npos ? jj_alloc(&r->c, a->npos * sizeof(jj_value_t)) : NULL;
    a->kw = a->nkw ? jj_alloc(&r->c, a->nkw * sizeof(jj_value_t)) : NULL;
    a->kwname = (const jj_node_t **) n->list2.v;
    for (i = 0; i < a->npos; i++) {
        a->pos[i] = jj_eval(r, sc, n->list.v[i]);
    }
    for (i = 0; i < a->nkw; i++) {
        a->kw[i] = jj_eval(r, sc, n->list2.v[i]->a);
    }
}

static jj_value_t
jj_eval_call(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  fn = jj_eval(r, sc, n->a);
    jj_args_t   a;

    jj_eval_args(r, sc, n, &a);
    r->at = n;
    return jj_call(r, fn, &a);
}

/* A filter applied to v (a filter block's text when n->a is NULL). */
static jj_value_t
jj_apply_filter(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n,
    jj_value_t v)
{
    jj_args_t  a;

    jj_eval_args(r, sc, n, &a);
    r->at = n;
    if (n->op < 0) {
        jj_raise(r, "TemplateRuntimeError", "No filter named '%.*s' found.",
                 (int) n->nlen, n->name);
    }
    return jj_call_filter(r, sc, n->op, n->name, v, &a);
}

static jj_value_t
jj_eval_filter(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    return jj_apply_filter(r, sc, n, jj_eval(r, sc, n->a));
}

/* A chain of block filters ({% filter a|b %}, {% set x | a %}). */
static jj_value_t
jj_filter_chain(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n,
    jj_value_t text)
{
    if (n == NULL) {
        return text;
    }
    return jj_apply_filter(r, sc, n, jj_filter_chain(r, sc, n->a, text));
}

static jj_value_t
jj_eval_test(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  v = jj_eval(r, sc, n->a);
    jj_args_t   a;

    jj_eval_args(r, sc, n, &a);
    r->at = n;
    if (n->op < 0) {
        jj_raise(r, "TemplateRuntimeError", "No test named '%.*s' found.",
                 (int) n->nlen, n->name);
    }
    return jj_bool(jj_call_test(r, n->op, n->name, v, &a));
}

static jj_value_t
jj_eval_unary(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  v = jj_eval(r, sc, n->a);

    r->at = n;
    if (n->kind == JJ_N_NOT) {
        return jj_bool(!jj_truthy(v));
    }
    jj_check_defined(r, v);
    if (v.type == JJ_FLOAT) {
        return jj_float(n->kind == JJ_N_NEG ? -v.u.f : v.u.f);
    }
    if (v.type == JJ_INT || v.type == JJ_BOOL) {
        if (n->kind == JJ_N_NEG && v.u.i == INT64_MIN) {
            jj_raise(r, "OverflowError", "integer overflow");
        }
        return jj_int(n->kind == JJ_N_NEG ? -v.u.i : v.u.i);
    }
    jj_raise(r, "TypeError", "bad operand type for unary %c: '%s'",
             n->kind == JJ_N_NEG ? '-' : '+', jj_type_name(v));
}

static jj_value_t
jj_eval_binop(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  a = jj_eval(r, sc, n->a);
    jj_value_t  b = jj_eval(r, sc, n->b);

    r->at = n;
    return jj_binop(r, n->op, a, b);
}

/* and/or give an operand, as in Python. */
static jj_value_t
jj_eval_logic(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  a = jj_eval(r, sc, n->a);

    if (jj_truthy(a) == (n->kind == JJ_N_OR)) {
        return a;
    }
    return jj_eval(r, sc, n->b);
}

/* a ~ b: str() of each. */
static jj_value_t
jj_eval_concat(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_buf_t  b;
    uint32_t  i;

    memset(&b, 0, sizeof(b));
    for (i = 0; i < n->list.n; i++) {
        jj_write_str(r, &b, jj_eval(r, sc, n->list.v[i]));
    }
    return jj_buf_str(r, &b);
}

static jj_value_t
jj_eval_compare(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t         left = jj_eval(r, sc, n->a), right;
    const jj_node_t   *o;
    uint32_t           i;

    for (i = 0; i < n->list.n; i++) {
        o = n->list.v[i];
        right = jj_eval(r, sc, o->a);
        r->at = o;
        if (!jj_compare(r, o->op, left, right)) {
            return jj_bool(0);
        }
        left = right;
    }
    return jj_bool(1);
}

static jj_value_t
jj_eval_condexpr(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    if (jj_truthy(jj_eval(r, sc, n->a))) {
        return jj_eval(r, sc, n->b);
    }
    if (n->c != NULL) {
        return jj_eval(r, sc, n->c);
    }
    return jj_undef_hint(r, NULL, "the inline if-expression on line %d "
                         "evaluated to false and no else section was "
                         "defined.", n->line);
}

static jj_value_t
jj_eval_list(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  v = jj_list_new(r, n->list.n,
                                n->kind == JJ_N_TUPLE ? JJ_F_TUPLE : 0);
    uint32_t    i;

    for (i = 0; i < n->list.n; i++) {
        jj_list_push(r, &v, jj_eval(r, sc, n->list.v[i]));
    }
    return v;
}

static jj_value_t
jj_eval_dict(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  v = jj_dict_new(r, n->list.n), k, x;
    uint32_t    i;

    for (i = 0; i < n->list.n; i++) {
        k = jj_eval(r, sc, n->list.v[i]->a);
        x = jj_eval(r, sc, n->list.v[i]->b);
        r->at = n->list.v[i];
        jj_dict_set(r, &v, k, x);
    }
    return v;
}

static jj_value_t
jj_eval(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    jj_value_t  v;

    r->at = n;
    jj_step(r, 1);
    jj_enter(r);
    switch (n->kind) {
    case JJ_N_CONST:
        v = n->val;
        break;
    case JJ_N_NAME:
        v = jj_eval_name(r, sc, n);
        break;
    case JJ_N_GETATTR:
        v = jj_eval_getattr(r, sc, n);
        break;
    case JJ_N_GETITEM:
        v = jj_eval_getitem(r, sc, n);
        break;
    case JJ_N_CALL:
        v = jj_eval_call(r, sc, n);
        break;
    case JJ_N_FILTER:
        v = jj_eval_filter(r, sc, n);
        break;
    case JJ_N_TEST:
        v = jj_eval_test(r, sc, n);
        break;
    case JJ_N_NOT:
    case JJ_N_NEG:
    case JJ_N_POS:
        v = jj_eval_unary(r, sc, n);
        break;
    case JJ_N_BINOP:
        v = jj_eval_binop(r, sc, n);
        break;
    case JJ_N_AND:
    case JJ_N_OR:
        v = jj_eval_logic(r, sc, n);
        break;
    case JJ_N_CONCAT:
        v = jj_eval_concat(r, sc, n);
        break;
    case JJ_N_COMPARE:
        v = jj_eval_compare(r, sc, n);
        break;
    case JJ_N_CONDEXPR:
        v = jj_eval_condexpr(r, sc, n);
        break;
    case JJ_N_LIST:
    case JJ_N_TUPLE:
        v = jj_eval_list(r, sc, n);
        break;
    case JJ_N_DICT:
        v = jj_eval_dict(r, sc, n);
        break;
    default:
        jj_raise(r, "TemplateSyntaxError", "a slice outside of []");
    }
    r->c.depth--;
    return v;
}

/* ---- calls -------------------------------------------------------------- */

static int
jj_kw_index(const jj_args_t *a, const char *name, size_t len)
{
    uint32_t  i;

    for (i = 0; i < a->nkw; i++) {
        if (a->kwname[i]->nlen == len
            && memcmp(a->kwname[i]->name, name, len) == 0)
        {
            return (int) i;
        }
    }
    return -1;
}

static int
jj_has_param(const jj_node_t *m, const char *name, size_t len)
{
    uint32_t  i;

    for (i = 0; i < m->list.n; i++) {
        if (m->list.v[i]->nlen == len
            && memcmp(m->list.v[i]->name, name, len) == 0)
        {
            return 1;
        }
    }
    return 0;
}

static int
jj_is_caller(const jj_node_t *kw)
{
    return kw->nlen == 6 && memcmp(kw->name, "caller", 6) == 0;
}

/*
 * jinja2's Macro.__call__: the positional arguments, then keywords for
 * the parameters left, then their defaults (evaluated in the macro's
 * scope, in order, after all given ones are bound); caller for a body
 * that reads it; what is left goes to kwargs and varargs where the body
 * reads them, else it is jinja2's TypeError.
 */
jj_value_t
jj_call_macro(jj_render_t *r, const jj_func_t *f, jj_args_t *a)
{
    const jj_node_t  *m = f->macro, *p;
    jj_scope_t       *ms = jj_scope_new(r, f->closure);
    jj_value_t        v, extra, kwargs;
    jj_buf_t          out;
    uint32_t          i, npos = a->npos < m->list.n ? a->npos : m->list.n;
    uint8_t          *used, *given;
    int               k, caller, first;

    used = jj_alloc(&r->c, a->nkw + 1);
    given = jj_alloc(&r->c, m->list.n + 1);
    memset(used, 0, a->nkw + 1);
    for (i = 0; i < m->list.n; i++) {
        p = m->list.v[i];
        given[i] = 1;
        if (i < npos) {
            v = a->pos[i];
        } else if ((k = jj_kw_index(a, p->name, p->nlen)) >= 0) {
            v = a->kw[k];
            used[k] = 1;
        } else {
            given[i] = 0;
            v = jj_undef_hint(r, NULL, "parameter '%.*s' was not provided",
                              (int) p->nlen, p->name);
        }
        jj_scope_set(r, ms, p->name, p->nlen, v);
    }
    for (i = 0; i < m->list.n; i++) {
        p = m->list.v[i];
        if (!given[i] && p->a != NULL) {
            jj_scope_set(r, ms, p->name, p->nlen, jj_eval(r, ms, p->a));
        }
    }
    r->at = m;
    if ((m->op & JJ_MACRO_CALLER) && !jj_has_param(m, "caller", 6)) {
        k = jj_kw_index(a, "caller", 6);
        if (k >= 0) {
            used[k] = 1;
        }
        jj_scope_set(r, ms, "caller", 6,
                     k >= 0 ? a->kw[k]
                            : jj_undef_hint(r, NULL, "No caller defined"));
    }
    if (m->op & JJ_MACRO_KWARGS) {
        kwargs = jj_dict_new(r, 0);
        for (i = 0; i < a->nkw; i++) {
            if (!used[i]) {
                jj_dict_set(r, &kwargs, jj_str(r, a->kwname[i]->name,
                                               a->kwname[i]->nlen),
                            a->kw[i]);
            }
        }
        jj_scope_set(r, ms, "kwargs", 6, kwargs);
    } else {
        first = -1;
        caller = 0;
        for (i = 0; i < a->nkw; i++) {
            if (!used[i]) {
                first = first < 0 ? (int) i : first;
                caller |= jj_is_caller(a->kwname[i]);
            }
        }
        if (caller) {
            jj_raise(r, "TypeError", "macro '%s' was invoked with two values "
                     "for the special caller argument. This is most likely "
                     "a bug.", f->name);
        }
        if (first >= 0) {
            jj_raise(r, "TypeError", "macro '%s' takes no keyword argument "
                     "'%.*s'", f->name, (int) a->kwname[first]->nlen,
                     a->kwname[first]->name);
        }
    }
    if (m->op & JJ_MACRO_VARARGS) {
        extra = jj_list_new(r, 0, JJ_F_TUPLE);
        for (i = m->list.n; i < a->npos; i++) {
            jj_list_push(r, &extra, a->pos[i]);
        }
        jj_scope_set(r, ms, "varargs", 7, extra);
    } else if (a->npos > m->list.n) {
        jj_raise(r, "TypeError", "macro '%s' takes not more than %u "
                 "argument(s)", f->name, m->list.n);
    }
    memset(&out, 0, sizeof(out));
    jj_enter(r);
    jj_exec_body(r, ms, &m->list2, &out);
    r->c.depth--;
    return jj_buf_str(r, &out);
}

jj_value_t
jj_call(jj_render_t *r, jj_value_t fn, jj_args_t *a)
{
    const jj_loop_t  *l;

    jj_check_defined(r, fn);
    if (fn.type != JJ_FUNC) {
        jj_raise(r, "TypeError", "'%s' object is not callable",
                 jj_type_name(fn));
    }
    switch (fn.u.func->kind) {
    case JJ_FN_MACRO:
        return jj_call_macro(r, fn.u.func, a);
    case JJ_FN_GLOBAL:
        return jj_call_global(r, fn.u.func->id, a);
    case JJ_FN_METHOD:
        return jj_call_method(r, fn.u.func, a);
    default:
        l = fn.u.func->self.u.loop;
        if (a->npos == 0) {
            jj_raise(r, "TypeError", "no items for cycling given");
        }
        return a->pos[l->i % a->npos];
    }
}

/* ---- statements --------------------------------------------------------- */

static int
jj_exec_for(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n,
    jj_buf_t *out)
{
    const jj_value_t  *items;
    jj_value_t        *kept, loopv;
    jj_scope_t        *it;
    jj_loop_t         *loop;
    uint32_t           count, i, k;
    int                rc;

    items = jj_iterate(r, jj_eval(r, sc, n->b), &count);
    it = jj_scope_new(r, sc);
    if (n->c != NULL && count > 0) {
        /* the loop's filter sees each item bound, before the loop runs */
        kept = jj_alloc(&r->c, count * sizeof(jj_value_t));
        for (i = 0, k = 0; i < count; i++) {
            it->n = 0;
            jj_assign(r, it, n->a, items[i]);
            if (jj_truthy(jj_eval(r, it, n->c))) {
                kept[k++] = items[i];
            }
        }
        items = kept;
        count = k;
    }
    if (count == 0) {
        it->n = 0;
        return jj_exec_body(r, it, &n->list2, out);
    }
    loop = jj_alloc(&r->c, sizeof(jj_loop_t));
    loop->items = items;
    loop->n = count;
    memset(&loopv, 0, sizeof(loopv));
    loopv.type = JJ_LOOP;
    loopv.u.loop = loop;
    for (i = 0; i < count; i++) {
        jj_step(r, 1);
        loop->i = i;
        it->n = 0;
        r->at = n;
        jj_assign(r, it, n->a, items[i]);
        jj_scope_set(r, it, "loop", 4, loopv);
        rc = jj_exec_body(r, it, &n->list, out);
        if (rc == JJ_BREAK) {
            break;
        }
    }
    return JJ_NEXT;
}

static int
jj_exec_if(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n,
    jj_buf_t *out)
{
    if (jj_truthy(jj_eval(r, sc, n->a))) {
        return jj_exec_body(r, sc, &n->list, out);
    }
    return jj_exec_body(r, sc, &n->list2, out);
}

/* The text of a body rendered in a scope of its own. */
static jj_value_t
jj_capture(jj_render_t *r, jj_scope_t *sc, const jj_nodes_t *body)
{
    jj_buf_t  b;

    memset(&b, 0, sizeof(b));
    jj_exec_body(r, jj_scope_new(r, sc), body, &b);
    return jj_buf_str(r, &b);
}

static int
jj_exec_with(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n,
    jj_buf_t *out)
{
    jj_scope_t  *inner = jj_scope_new(r, sc);
    jj_value_t  *vals;
    uint32_t     i;

    vals = jj_alloc(&r->c, (n->list.n + 1) * sizeof(jj_value_t));
    for (i = 0; i < n->list.n; i++) {
        vals[i] = jj_eval(r, sc, n->list.v[i]->b);
    }
    for (i = 0; i < n->list.n; i++) {
        jj_assign(r, inner, n->list.v[i]->a, vals[i]);
    }
    return jj_exec_body(r, inner, &n->list2, out);
}

/* The call of a call block, with its body as the caller keyword. */
static jj_value_t
jj_exec_call_block(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n)
{
    const jj_node_t  *call = n->a;
    const jj_node_t **names;
    jj_value_t        fn, caller, *kw;
    jj_args_t         a;

    caller = jj_func_new(r, JJ_FN_MACRO, 0, "caller", jj_none());
    caller.u.func->macro = n;
    caller.u.func->closure = sc;
    fn = jj_eval(r, sc, call->a);
    jj_eval_args(r, sc, call, &a);
    names = jj_alloc(&r->c, (a.nkw + 1) * sizeof(jj_node_t *));
    kw = jj_alloc(&r->c, (a.nkw + 1) * sizeof(jj_value_t));
    if (a.nkw > 0) {
        memcpy(names, a.kwname, a.nkw * sizeof(jj_node_t *));
        memcpy(kw, a.kw, a.nkw * sizeof(jj_value_t));
    }
    names[a.nkw] = n->b;
    kw[a.nkw] = caller;
    a.kwname = names;
    a.kw = kw;
    a.nkw++;
    r->at = call;
    return jj_call(r, fn, &a);
}

static int
jj_exec(jj_render_t *r, jj_scope_t *sc, const jj_node_t *n, jj_buf_t *out)
{
    jj_value_t  v;
    int         rc = JJ_NEXT;

    r->at = n;
    jj_step(r, 1);
    jj_enter(r);
    switch (n->kind) {
    case JJ_N_DATA:
        jj_charge(r, n->nlen);
        jj_buf_add(r, out, n->name, n->nlen);
        break;
    case JJ_N_OUTPUT:
        v = jj_eval(r, sc, n->a);
        jj_write_str(r, out, v);
        break;
    case JJ_N_IF:
        rc = jj_exec_if(r, sc, n, out);
        break;
    case JJ_N_FOR:
        rc = jj_exec_for(r, sc, n, out);
        break;
    case JJ_N_SET:
        v = jj_eval(r, sc, n->b);
        r->at = n;
        jj_assign(r, sc, n->a, v);
        break;
    case JJ_N_SETBLOCK:
        v = jj_filter_chain(r, sc, n->b, jj_capture(r, sc, &n->list));
        r->at = n;
        jj_assign(r, sc, n->a, v);
        break;
    case JJ_N_MACRO:
        v = jj_func_new(r, JJ_FN_MACRO, 0, jj_strdup(&r->c, n->name, n->nlen),
                        jj_none());
        v.u.func->macro = n;
        v.u.func->closure = sc;
        jj_scope_set(r, sc, n->name, n->nlen, v);
        break;
    case JJ_N_FILTERBLOCK:
        v = jj_filter_chain(r, sc, n->b, jj_capture(r, sc, &n->list));
        jj_write_str(r, out, v);
        break;
    case JJ_N_GENERATION:
        rc = jj_exec_body(r, jj_scope_new(r, sc), &n->list, out);
        break;
    case JJ_N_WITH:
        rc = jj_exec_with(r, sc, n, out);
        break;
    case JJ_N_CALLBLOCK:
        jj_write_str(r, out, jj_exec_call_block(r, sc, n));
        break;
    case JJ_N_BREAK:
        rc = JJ_BREAK;
        break;
    case JJ_N_CONTINUE:
        rc = JJ_CONTINUE;
        break;
    default:
        jj_raise(r, "TemplateSyntaxError", "not a statement");
    }
    r->c.depth--;
    return rc;
}

static int
jj_exec_body(jj_render_t *r, jj_scope_t *sc, const jj_nodes_t *l,
    jj_buf_t *out)
{
    uint32_t  i;
    int       rc;

    for (i = 0; i < l->n; i++) {
        rc = jj_exec(r, sc, l->v[i], out);
        if (rc != JJ_NEXT) {
            return rc;
        }
    }
    return JJ_NEXT;
}

jj_value_t
jj_render_tree(jj_render_t *r, const jj_node_t *root, jj_scope_t *globals)
{
    jj_buf_t  out;

    memset(&out, 0, sizeof(out));
    jj_exec_body(r, globals, &root->list, &out);
    r->at = NULL;
    return jj_buf_str(r, &out);
}
