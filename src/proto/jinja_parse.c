/*
 * Tokens -> tree, one function per rule of jinja2's parser (parser.py),
 * with its precedence, from loosest to tightest:
 *
 *   a if b else c      condexpr
 *   or, and, not
 *   == != < <= > >= in, not in       (chained: a < b < c)
 *   + -
 *   ~
 *   * / // %
 *   **                 (left-associative, as in jinja2)
 *   unary - +
 *   |filter, is test, call       on a primary with .attr [item] (call)
 *
 * Statements: for (with else, a filter, loop controls), if/elif/else, set
 * (name, tuple, ns.attr, or a block with filters), macro, filter blocks,
 * with, print, and transformers' generation tag.  What jinja2 has and chat
 * templates do not use (extends, block, include, import, call, recursive
 * loops, *args in calls) is a syntax error that says so.
 *
 * After parsing, a pass refuses filters and tests that do not exist, as
 * jinja2's compiler does, except inside if and inline-if, where jinja2
 * defers the error to when the filter runs (and so do we).
 */
#include <string.h>

#include "jinja_impl.h"

typedef struct {
    jj_ctx_t           *c;
    const jj_token_t   *t;
    uint32_t            n;
    uint32_t            i;
    int                 loops;      /* for loops around this point */
    jj_node_t          *macro;      /* the macro being parsed */
    unsigned            depth;
} jj_parser_t;

static jj_node_t *jj_parse_expression(jj_parser_t *P, int with_condexpr);
static jj_node_t *jj_parse_tuple(jj_parser_t *P, int simplified,
    int with_condexpr, const char *extra_end, int explicit_parens);
static jj_node_t *jj_parse_primary(jj_parser_t *P);
static jj_node_t *jj_parse_unary(jj_parser_t *P, int with_filter);
static jj_node_t *jj_parse_filter(jj_parser_t *P, jj_node_t *node,
    int start_inline);
static jj_node_t *jj_parse_postfix(jj_parser_t *P, jj_node_t *node);
static jj_nodes_t jj_parse_statements(jj_parser_t *P,
    const char *const *ends, int drop_needle);

/* ---- tokens ------------------------------------------------------------- */

static const jj_token_t *
jj_cur(jj_parser_t *P)
{
    return &P->t[P->i];
}

static const jj_token_t *
jj_look(jj_parser_t *P)
{
    return &P->t[P->i + 1 < P->n ? P->i + 1 : P->n - 1];
}

static const jj_token_t *
jj_next(jj_parser_t *P)
{
    const jj_token_t  *t = &P->t[P->i];

    if (P->i + 1 < P->n) {
        P->i++;
    }
    return t;
}

static int
jj_is_op(const jj_token_t *t, int op)
{
    return t->type == JJ_T_OP && t->op == op;
}

static int
jj_is_name(const jj_token_t *t, const char *name)
{
    return t->type == JJ_T_NAME && t->n == strlen(name)
           && memcmp(t->s, name, t->n) == 0;
}

/* The token as jinja2's describe_token() names it in messages. */
static const char *
jj_describe(const jj_token_t *t, char *buf, size_t size)
{
    static const char *const  names[] = {
        "end of template", "template data / text",
        "begin of print statement", "end of print statement",
        "begin of statement block", "end of statement block",
        "name", "string", "integer", "float", "operator"
    };

    if (t->type == JJ_T_NAME || t->type == JJ_T_OP) {
        snprintf(buf, size, "%.*s", (int) (t->n > 64 ? 64 : t->n), t->s);
        return buf;
    }
    return names[t->type];
}

static void JJ_NORETURN JJ_PRINTF(3, 4)
jj_parse_fail(jj_parser_t *P, const jj_token_t *at, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    jj_vfail(P->c, "TemplateSyntaxError", at->line, at->col, fmt, ap);
}

static const jj_token_t *
jj_expect_op(jj_parser_t *P, int op, const char *what)
{
    char  buf[80];

    if (!jj_is_op(jj_cur(P), op)) {
        jj_parse_fail(P, jj_cur(P), "expected token '%s', got '%s'", what,
                      jj_describe(jj_cur(P), buf, sizeof(buf)));
    }
    return jj_next(P);
}

static const jj_token_t *
jj_expect(jj_parser_t *P, int type, const char *what)
{
    char  buf[80];

    if (jj_cur(P)->type != type) {
        jj_parse_fail(P, jj_cur(P), "expected token '%s', got '%s'", what,
                      jj_describe(jj_cur(P), buf, sizeof(buf)));
    }
    return jj_next(P);
}

static void
jj_enter(jj_parser_t *P)
{
    if (++P->depth > 200) {
        jj_parse_fail(P, jj_cur(P), "the template nests deeper than 200");
    }
}

/* ---- nodes -------------------------------------------------------------- */

static jj_node_t *
jj_mk(jj_parser_t *P, int kind, const jj_token_t *at)
{
    jj_node_t  *n = jj_alloc(P->c, sizeof(jj_node_t));

    memset(n, 0, sizeof(*n));
    n->kind = (uint8_t) kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

/* Lists grow by doubling; a count that is a power of two is full. */
static void
jj_push(jj_parser_t *P, jj_nodes_t *l, jj_node_t *x)
{
    uint32_t  cap;

    if ((l->n & (l->n - 1)) == 0) {
        cap = l->n ? l->n * 2 : 1;
        l->v = jj_grow(P->c, l->v, l->n * sizeof(jj_node_t *),
                       cap * sizeof(jj_node_t *));
    }
    l->v[l->n++] = x;
}

static void
jj_set_name(jj_node_t *n, const jj_token_t *t)
{
    n->name = t->s;
    n->nlen = t->n;
}

/* ---- expressions -------------------------------------------------------- */

static int
jj_is_tuple_end(jj_parser_t *P, const char *extra_end)
{
    const jj_token_t  *t = jj_cur(P);

    return t->type == JJ_T_VAR_END || t->type == JJ_T_BLOCK_END
           || jj_is_op(t, JJ_OP_RPAREN)
           || (extra_end != NULL && jj_is_name(t, extra_end));
}

/* (args, name=value, ...) into n->list and n->list2. */
static void
jj_parse_call_args(jj_parser_t *P, jj_node_t *n)
{
    const jj_token_t  *open, *t;
    jj_node_t         *kw;
    int                require_comma = 0;

    open = jj_expect_op(P, JJ_OP_LPAREN, "(");
    while (!jj_is_op(jj_cur(P), JJ_OP_RPAREN)) {
        if (require_comma) {
            jj_expect_op(P, JJ_OP_COMMA, ",");
            if (jj_is_op(jj_cur(P), JJ_OP_RPAREN)) {
                break;
            }
        }
        t = jj_cur(P);
        if (jj_is_op(t, JJ_OP_MUL) || jj_is_op(t, JJ_OP_POW)) {
            jj_parse_fail(P, t, "*args and **kwargs in calls are not "
                          "supported");
        }
        if (t->type == JJ_T_NAME && jj_is_op(jj_look(P), JJ_OP_ASSIGN)) {
            kw = jj_mk(P, JJ_N_KEYWORD, t);
            jj_set_name(kw, t);
            jj_next(P);
            jj_next(P);
            kw->a = jj_parse_expression(P, 1);
            jj_push(P, &n->list2, kw);
        } else {
            if (n->list2.n > 0) {
                jj_parse_fail(P, open, "invalid syntax for function call "
                              "expression");
            }
            jj_push(P, &n->list, jj_parse_expression(P, 1));
        }
        require_comma = 1;
    }
    jj_expect_op(P, JJ_OP_RPAREN, ")");
}

/* A dotted name after | or is ("a.b"), in the arena. */
static void
jj_parse_dotted(jj_parser_t *P, jj_node_t *n)
{
    const jj_token_t  *t = jj_expect(P, JJ_T_NAME, "name");
    char              *s;
    size_t             len;

    jj_set_name(n, t);
    while (jj_is_op(jj_cur(P), JJ_OP_DOT)) {
        jj_next(P);
        t = jj_expect(P, JJ_T_NAME, "name");
        len = n->nlen + 1 + t->n;
        s = jj_alloc(P->c, len);
        memcpy(s, n->name, n->nlen);
        s[n->nlen] = '.';
        memcpy(s + n->nlen + 1, t->s, t->n);
        n->name = s;
        n->nlen = (uint32_t) len;
    }
}

static jj_node_t *
jj_parse_filter(jj_parser_t *P, jj_node_t *node, int start_inline)
{
    const jj_token_t  *t;
    jj_node_t         *f;

    while (jj_is_op(jj_cur(P), JJ_OP_PIPE) || start_inline) {
        if (!start_inline) {
            jj_next(P);
        }
        t = jj_cur(P);
        f = jj_mk(P, JJ_N_FILTER, t);
        jj_parse_dotted(P, f);
        f->a = node;
        f->op = (int16_t) jj_filter_id(f->name, f->nlen);
        if (jj_is_op(jj_cur(P), JJ_OP_LPAREN)) {
            jj_parse_call_args(P, f);
        }
        node = f;
        start_inline = 0;
    }
    return node;
}

static jj_node_t *
jj_parse_test(jj_parser_t *P, jj_node_t *node)
{
    const jj_token_t  *is = jj_next(P), *t;
    jj_node_t         *n, *neg;
    int                negated = 0;

    if (jj_is_name(jj_cur(P), "not")) {
        jj_next(P);
        negated = 1;
    }
    n = jj_mk(P, JJ_N_TEST, is);
    jj_parse_dotted(P, n);
    n->a = node;
    n->op = (int16_t) jj_test_id(n->name, n->nlen);
    t = jj_cur(P);
    if (jj_is_op(t, JJ_OP_LPAREN)) {
        jj_parse_call_args(P, n);
    } else if ((t->type == JJ_T_NAME || t->type == JJ_T_STRING
                || t->type == JJ_T_INT || t->type == JJ_T_FLOAT
                || jj_is_op(t, JJ_OP_LBRACKET) || jj_is_op(t, JJ_OP_LBRACE))
               && !jj_is_name(t, "else") && !jj_is_name(t, "or")
               && !jj_is_name(t, "and"))
    {
        if (jj_is_name(t, "is")) {
            jj_parse_fail(P, t, "You cannot chain multiple tests with is");
        }
        jj_push(P, &n->list, jj_parse_postfix(P, jj_parse_primary(P)));
    }
    if (negated) {
        neg = jj_mk(P, JJ_N_NOT, is);
        neg->a = n;
        return neg;
    }
    return n;
}

static jj_node_t *
jj_parse_subscribed(jj_parser_t *P)
{
    const jj_token_t  *at = jj_cur(P);
    jj_node_t         *s, *start = NULL;

    if (!jj_is_op(at, JJ_OP_COLON)) {
        start = jj_parse_expression(P, 1);
        if (!jj_is_op(jj_cur(P), JJ_OP_COLON)) {
            return start;
        }
    }
    jj_next(P);
    s = jj_mk(P, JJ_N_SLICE, at);
    s->a = start;
    if (!jj_is_op(jj_cur(P), JJ_OP_COLON)
        && !jj_is_op(jj_cur(P), JJ_OP_RBRACKET)
        && !jj_is_op(jj_cur(P), JJ_OP_COMMA))
    {
        s->b = jj_parse_expression(P, 1);
    }
    if (jj_is_op(jj_cur(P), JJ_OP_COLON)) {
        jj_next(P);
        if (!jj_is_op(jj_cur(P), JJ_OP_RBRACKET)
            && !jj_is_op(jj_cur(P), JJ_OP_COMMA))
        {
            s->c = jj_parse_expression(P, 1);
        }
    }
    return s;
}

static jj_node_t *
jj_parse_subscript(jj_parser_t *P, jj_node_t *node)
{
    const jj_token_t  *t = jj_next(P), *attr;
    jj_node_t         *n, *tuple;
    jj_nodes_t         args = { NULL, 0 };
    uint32_t           i;

    if (jj_is_op(t, JJ_OP_DOT)) {
        attr = jj_next(P);
        if (attr->type == JJ_T_NAME) {
            /* errors point at the object: "x.y" at x */
            n = jj_mk(P, JJ_N_GETATTR, t);
            n->line = node->line;
            n->col = node->col;
            n->a = node;
            jj_set_name(n, attr);
            return n;
        }
        if (attr->type != JJ_T_INT) {
            jj_parse_fail(P, attr, "expected name or number");
        }
        n = jj_mk(P, JJ_N_GETITEM, t);
        n->a = node;
        n->b = jj_mk(P, JJ_N_CONST, attr);
        n->b->val = jj_int(attr->i);
        return n;
    }
    while (!jj_is_op(jj_cur(P), JJ_OP_RBRACKET)) {
        if (args.n > 0) {
            jj_expect_op(P, JJ_OP_COMMA, ",");
        }
        jj_push(P, &args, jj_parse_subscribed(P));
    }
    jj_expect_op(P, JJ_OP_RBRACKET, "]");
    n = jj_mk(P, JJ_N_GETITEM, t);
    n->line = node->line;
    n->col = node->col;
    n->a = node;
    if (args.n == 1) {
        n->b = args.v[0];
    } else {
        tuple = jj_mk(P, JJ_N_TUPLE, t);
        for (i = 0; i < args.n; i++) {
            jj_push(P, &tuple->list, args.v[i]);
        }
        n->b = tuple;
    }
    return n;
}

static jj_node_t *
jj_parse_call(jj_parser_t *P, jj_node_t *node)
{
    jj_node_t  *n = jj_mk(P, JJ_N_CALL, jj_cur(P));

    n->a = node;
    jj_parse_call_args(P, n);
    return n;
}

static jj_node_t *
jj_parse_postfix(jj_parser_t *P, jj_node_t *node)
{
    const jj_token_t  *t;

    for ( ;; ) {
        t = jj_cur(P);
        if (jj_is_op(t, JJ_OP_DOT) || jj_is_op(t, JJ_OP_LBRACKET)) {
            node = jj_parse_subscript(P, node);
        } else if (jj_is_op(t, JJ_OP_LPAREN)) {
            node = jj_parse_call(P, node);
        } else {
            return node;
        }
    }
}

static jj_node_t *
jj_parse_filter_expr(jj_parser_t *P, jj_node_t *node)
{
    const jj_token_t  *t;

    for ( ;; ) {
        t = jj_cur(P);
        if (jj_is_op(t, JJ_OP_PIPE)) {
            node = jj_parse_filter(P, node, 0);
        } else if (jj_is_name(t, "is")) {
            node = jj_parse_test(P, node);
        } else if (jj_is_op(t, JJ_OP_LPAREN)) {
            node = jj_parse_call(P, node);
        } else {
            return node;
        }
    }
}

static jj_node_t *
jj_parse_list(jj_parser_t *P)
{
    jj_node_t  *n = jj_mk(P, JJ_N_LIST, jj_expect_op(P, JJ_OP_LBRACKET, "["));

    while (!jj_is_op(jj_cur(P), JJ_OP_RBRACKET)) {
        if (n->list.n > 0) {
            jj_expect_op(P, JJ_OP_COMMA, ",");
        }
        if (jj_is_op(jj_cur(P), JJ_OP_RBRACKET)) {
            break;
        }
        jj_push(P, &n->list, jj_parse_expression(P, 1));
    }
    jj_expect_op(P, JJ_OP_RBRACKET, "]");
    return n;
}

static jj_node_t *
jj_parse_dict(jj_parser_t *P)
{
    jj_node_t  *n = jj_mk(P, JJ_N_DICT, jj_expect_op(P, JJ_OP_LBRACE, "{"));
    jj_node_t  *pair;

    while (!jj_is_op(jj_cur(P), JJ_OP_RBRACE)) {
        if (n->list.n > 0) {
            jj_expect_op(P, JJ_OP_COMMA, ",");
        }
        if (jj_is_op(jj_cur(P), JJ_OP_RBRACE)) {
            break;
        }
        pair = jj_mk(P, JJ_N_PAIR, jj_cur(P));
        pair->a = jj_parse_expression(P, 1);
        jj_expect_op(P, JJ_OP_COLON, ":");
        pair->b = jj_parse_expression(P, 1);
        jj_push(P, &n->list, pair);
    }
    jj_expect_op(P, JJ_OP_RBRACE, "}");
    return n;
}

/* Adjacent string literals are one ("a" "b"). */
static jj_node_t *
jj_parse_strings(jj_parser_t *P)
{
    const jj_token_t  *t = jj_next(P), *u;
    jj_node_t         *n = jj_mk(P, JJ_N_CONST, t);
    size_t             len = t->n;
    uint32_t           i, first = P->i - 1;
    char              *s;

    while (jj_cur(P)->type == JJ_T_STRING) {
        len += jj_next(P)->n;
    }
    n->val.type = JJ_STR;
    if (P->i - first == 1) {
        n->val.u.s = t->s;
        n->val.len = t->n;
        return n;
    }
    if (len > UINT32_MAX / 2) {
        jj_parse_fail(P, t, "string literal too long");
    }
    s = jj_alloc(P->c, len);
    len = 0;
    for (i = first; i < P->i; i++) {
        u = &P->t[i];
        memcpy(s + len, u->s, u->n);
        len += u->n;
    }
    n->val.u.s = s;
    n->val.len = (uint32_t) len;
    return n;
}

static jj_node_t *
jj_parse_primary(jj_parser_t *P)
{
    const jj_token_t  *t = jj_cur(P);
    jj_node_t         *n;
    char               buf[80];

    switch (t->type) {
    case JJ_T_NAME:
        jj_next(P);
        n = jj_mk(P, JJ_N_CONST, t);
        if (jj_is_name(t, "true") || jj_is_name(t, "True")) {
            n->val = jj_bool(1);
        } else if (jj_is_name(t, "false") || jj_is_name(t, "False")) {
            n->val = jj_bool(0);
        } else if (jj_is_name(t, "none") || jj_is_name(t, "None")) {
            n->val = jj_none();
        } else {
            n->kind = JJ_N_NAME;
            jj_set_name(n, t);
            if (P->macro != NULL && jj_is_name(t, "varargs")) {
                P->macro->op |= JJ_MACRO_VARARGS;
            }
            if (P->macro != NULL && jj_is_name(t, "kwargs")) {
                P->macro->op |= JJ_MACRO_KWARGS;
            }
            if (P->macro != NULL && jj_is_name(t, "caller")) {
                P->macro->op |= JJ_MACRO_CALLER;
            }
        }
        return n;
    case JJ_T_STRING:
        return jj_parse_strings(P);
    case JJ_T_INT:
    case JJ_T_FLOAT:
        jj_next(P);
        n = jj_mk(P, JJ_N_CONST, t);
        n->val = t->type == JJ_T_INT ? jj_int(t->i) : jj_float(t->f);
        return n;
    default:
        break;
    }
    if (jj_is_op(t, JJ_OP_LPAREN)) {
        jj_next(P);
        n = jj_parse_tuple(P, 0, 1, NULL, 1);
        jj_expect_op(P, JJ_OP_RPAREN, ")");
        return n;
    }
    if (jj_is_op(t, JJ_OP_LBRACKET)) {
        return jj_parse_list(P);
    }
    if (jj_is_op(t, JJ_OP_LBRACE)) {
        return jj_parse_dict(P);
    }
    jj_parse_fail(P, t, "unexpected '%s'", jj_describe(t, buf, sizeof(buf)));
}

static jj_node_t *
jj_parse_unary(jj_parser_t *P, int with_filter)
{
    const jj_token_t  *t = jj_cur(P);
    jj_node_t         *n;

    jj_enter(P);
    if (jj_is_op(t, JJ_OP_SUB) || jj_is_op(t, JJ_OP_ADD)) {
        jj_next(P);
        n = jj_mk(P, t->op == JJ_OP_SUB ? JJ_N_NEG : JJ_N_POS, t);
        n->a = jj_parse_unary(P, 0);
    } else {
        n = jj_parse_primary(P);
    }
    n = jj_parse_postfix(P, n);
    if (with_filter) {
        n = jj_parse_filter_expr(P, n);
    }
    P->depth--;
    return n;
}

static jj_node_t *
jj_binop_node(jj_parser_t *P, const jj_token_t *t, int op, jj_node_t *a,
    jj_node_t *b)
{
    jj_node_t  *n = jj_mk(P, JJ_N_BINOP, t);

    n->op = (int16_t) op;
    n->a = a;
    n->b = b;
    return n;
}

static jj_node_t *
jj_parse_pow(jj_parser_t *P)
{
    jj_node_t          *left = jj_parse_unary(P, 1);
    const jj_token_t   *t;

    while (jj_is_op(jj_cur(P), JJ_OP_POW)) {
        t = jj_next(P);
        left = jj_binop_node(P, t, JJ_POW, left, jj_parse_unary(P, 1));
    }
    return left;
}

static jj_node_t *
jj_parse_math2(jj_parser_t *P)
{
    jj_node_t          *left = jj_parse_pow(P);
    const jj_token_t   *t;
    int                 op;

    for ( ;; ) {
        t = jj_cur(P);
        if (jj_is_op(t, JJ_OP_MUL)) {
            op = JJ_MUL;
        } else if (jj_is_op(t, JJ_OP_DIV)) {
            op = JJ_DIV;
        } else if (jj_is_op(t, JJ_OP_FLOORDIV)) {
            op = JJ_FLOORDIV;
        } else if (jj_is_op(t, JJ_OP_MOD)) {
            op = JJ_MOD;
        } else {
            return left;
        }
        jj_next(P);
        left = jj_binop_node(P, t, op, left, jj_parse_pow(P));
    }
}

static jj_node_t *
jj_parse_concat(jj_parser_t *P)
{
    jj_node_t  *first = jj_parse_math2(P), *n;

    if (!jj_is_op(jj_cur(P), JJ_OP_TILDE)) {
        return first;
    }
    n = jj_mk(P, JJ_N_CONCAT, jj_cur(P));
    jj_push(P, &n->list, first);
    while (jj_is_op(jj_cur(P), JJ_OP_TILDE)) {
        jj_next(P);
        jj_push(P, &n->list, jj_parse_math2(P));
    }
    return n;
}

static jj_node_t *
jj_parse_math1(jj_parser_t *P)
{
    jj_node_t          *left = jj_parse_concat(P);
    const jj_token_t   *t;

    for ( ;; ) {
        t = jj_cur(P);
        if (!jj_is_op(t, JJ_OP_ADD) && !jj_is_op(t, JJ_OP_SUB)) {
            return left;
        }
        jj_next(P);
        left = jj_binop_node(P, t, t->op == JJ_OP_ADD ? JJ_ADD : JJ_SUB, left,
                             jj_parse_concat(P));
    }
}

static jj_node_t *
jj_parse_compare(jj_parser_t *P)
{
    static const struct {
        uint8_t  tok;
        uint8_t  cmp;
    } ops[] = {
        { JJ_OP_EQ, JJ_EQ }, { JJ_OP_NE, JJ_NE }, { JJ_OP_LT, JJ_LT },
        { JJ_OP_LE, JJ_LE }, { JJ_OP_GT, JJ_GT }, { JJ_OP_GE, JJ_GE }
    };
    const jj_token_t  *t, *at = jj_cur(P);
    jj_node_t         *expr = jj_parse_math1(P), *n = NULL, *o;
    size_t             i;
    int                cmp;

    for ( ;; ) {
        t = jj_cur(P);
        cmp = -1;
        for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
            if (jj_is_op(t, ops[i].tok)) {
                cmp = ops[i].cmp;
            }
        }
        if (cmp >= 0) {
            jj_next(P);
        } else if (jj_is_name(t, "in")) {
            jj_next(P);
            cmp = JJ_IN;
        } else if (jj_is_name(t, "not") && jj_is_name(jj_look(P), "in")) {
            jj_next(P);
            jj_next(P);
            cmp = JJ_NOTIN;
        } else {
            break;
        }
        if (n == NULL) {
            n = jj_mk(P, JJ_N_COMPARE, at);
            n->a = expr;
        }
        o = jj_mk(P, JJ_N_OPERAND, t);
        o->op = (int16_t) cmp;
        o->a = jj_parse_math1(P);
        jj_push(P, &n->list, o);
    }
    return n ? n : expr;
}

static jj_node_t *
jj_parse_not(jj_parser_t *P)
{
    const jj_token_t  *t = jj_cur(P);
    jj_node_t         *n;

    if (!jj_is_name(t, "not")) {
        return jj_parse_compare(P);
    }
    jj_enter(P);
    jj_next(P);
    n = jj_mk(P, JJ_N_NOT, t);
    n->a = jj_parse_not(P);
    P->depth--;
    return n;
}

/* left (word right)*: "a and b and c", "a or b". */
static jj_node_t *
jj_parse_logic(jj_parser_t *P, const char *word, int kind,
    jj_node_t *(*operand)(jj_parser_t *P))
{
    jj_node_t          *left = operand(P), *n;
    const jj_token_t   *t;

    while (jj_is_name(jj_cur(P), word)) {
        t = jj_next(P);
        n = jj_mk(P, kind, t);
        n->a = left;
        n->b = operand(P);
        left = n;
    }
    return left;
}

static jj_node_t *
jj_parse_and(jj_parser_t *P)
{
    return jj_parse_logic(P, "and", JJ_N_AND, jj_parse_not);
}

static jj_node_t *
jj_parse_or(jj_parser_t *P)
{
    return jj_parse_logic(P, "or", JJ_N_OR, jj_parse_and);
}

static jj_node_t *
jj_parse_condexpr(jj_parser_t *P)
{
    const jj_token_t  *at = jj_cur(P);
    jj_node_t         *expr1 = jj_parse_or(P), *n;

    while (jj_is_name(jj_cur(P), "if")) {
        jj_next(P);
        n = jj_mk(P, JJ_N_CONDEXPR, at);
        n->b = expr1;
        n->a = jj_parse_or(P);
        if (jj_is_name(jj_cur(P), "else")) {
            jj_next(P);
            n->c = jj_parse_condexpr(P);
        }
        expr1 = n;
        at = jj_cur(P);
    }
    return expr1;
}

static jj_node_t *
jj_parse_expression(jj_parser_t *P, int with_condexpr)
{
    jj_node_t  *n;

    jj_enter(P);
    n = with_condexpr ? jj_parse_condexpr(P) : jj_parse_or(P);
    P->depth--;
    return n;
}

static jj_node_t *
jj_parse_tuple(jj_parser_t *P, int simplified, int with_condexpr,
    const char *extra_end, int explicit_parens)
{
    const jj_token_t  *at = jj_cur(P);
    jj_node_t         *n = jj_mk(P, JJ_N_TUPLE, at);
    int                is_tuple = 0;
    char               buf[80];

    for ( ;; ) {
        if (n->list.n > 0) {
            jj_expect_op(P, JJ_OP_COMMA, ",");
        }
        if (jj_is_tuple_end(P, extra_end)) {
            break;
        }
        jj_push(P, &n->list, simplified ? jj_parse_primary(P)
                                        : jj_parse_expression(P,
                                                              with_condexpr));
        if (!jj_is_op(jj_cur(P), JJ_OP_COMMA)) {
            break;
        }
        is_tuple = 1;
    }
    if (!is_tuple) {
        if (n->list.n > 0) {
            return n->list.v[0];
        }
        if (!explicit_parens) {
            jj_parse_fail(P, jj_cur(P), "Expected an expression, got '%s'",
                          jj_describe(jj_cur(P), buf, sizeof(buf)));
        }
    }
    return n;
}

/* ---- statements --------------------------------------------------------- */

static int
jj_can_assign(const jj_node_t *n)
{
    uint32_t  i;

    if (n->kind == JJ_N_NAME) {
        return 1;
    }
    if (n->kind == JJ_N_TUPLE) {
        for (i = 0; i < n->list.n; i++) {
            if (!jj_can_assign(n->list.v[i])) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

static jj_node_t *
jj_parse_assign_target(jj_parser_t *P, int name_only, const char *extra_end,
    int with_namespace)
{
    const jj_token_t  *t = jj_cur(P), *attr;
    jj_node_t         *n;

    if (with_namespace && t->type == JJ_T_NAME
        && jj_is_op(jj_look(P), JJ_OP_DOT))
    {
        jj_next(P);
        jj_next(P);
        attr = jj_expect(P, JJ_T_NAME, "name");
        n = jj_mk(P, JJ_N_GETATTR, t);
        n->a = jj_mk(P, JJ_N_NAME, t);
        jj_set_name(n->a, t);
        jj_set_name(n, attr);
        return n;
    }
    if (name_only) {
        jj_expect(P, JJ_T_NAME, "name");
        n = jj_mk(P, JJ_N_NAME, t);
        jj_set_name(n, t);
    } else {
        n = jj_parse_tuple(P, 1, 1, extra_end, 0);
    }
    if (!jj_can_assign(n)) {
        jj_parse_fail(P, t, "can't assign to '%s'",
                      n->kind == JJ_N_CONST ? "const" : "expression");
    }
    return n;
}

static jj_node_t *
jj_parse_for(jj_parser_t *P, const jj_token_t *at)
{
    static const char *const  ends[] = { "endfor", "else", NULL };
    static const char *const  endfor[] = { "endfor", NULL };
    jj_node_t                *n = jj_mk(P, JJ_N_FOR, at);

    n->a = jj_parse_assign_target(P, 0, "in", 0);
    if (!jj_is_name(jj_cur(P), "in")) {
        jj_expect(P, JJ_T_EOF, "in");
    }
    jj_next(P);
    n->b = jj_parse_tuple(P, 0, 0, "recursive", 0);
    if (jj_is_name(jj_cur(P), "if")) {
        jj_next(P);
        n->c = jj_parse_expression(P, 1);
    }
    if (jj_is_name(jj_cur(P), "recursive")) {
        jj_parse_fail(P, jj_cur(P), "recursive loops are not supported");
    }
    P->loops++;
    n->list = jj_parse_statements(P, ends, 0);
    P->loops--;
    if (jj_is_name(jj_next(P), "else")) {
        n->list2 = jj_parse_statements(P, endfor, 1);
    }
    return n;
}

static jj_node_t *
jj_parse_if(jj_parser_t *P, const jj_token_t *at)
{
    static const char *const  ends[] = { "elif", "else", "endif", NULL };
    static const char *const  endif[] = { "endif", NULL };
    jj_node_t                *result = jj_mk(P, JJ_N_IF, at), *n = result;
    jj_node_t                *elif;
    const jj_token_t         *t;

    for ( ;; ) {
        n->a = jj_parse_tuple(P, 0, 0, NULL, 0);
        n->list = jj_parse_statements(P, ends, 0);
        t = jj_next(P);
        if (jj_is_name(t, "elif")) {
            elif = jj_mk(P, JJ_N_IF, t);
            jj_push(P, &n->list2, elif);
            n = elif;
            continue;
        }
        if (jj_is_name(t, "else")) {
            n->list2 = jj_parse_statements(P, endif, 1);
        }
        return result;
    }
}

static jj_node_t *
jj_parse_set(jj_parser_t *P, const jj_token_t *at)
{
    static const char *const  ends[] = { "endset", NULL };
    jj_node_t                *n = jj_mk(P, JJ_N_SET, at);

    n->a = jj_parse_assign_target(P, 0, NULL, 1);
    if (jj_is_op(jj_cur(P), JJ_OP_ASSIGN)) {
        jj_next(P);
        n->b = jj_parse_tuple(P, 0, 1, NULL, 0);
        return n;
    }
    n->kind = JJ_N_SETBLOCK;
    n->b = jj_parse_filter(P, NULL, 0);
    n->list = jj_parse_statements(P, ends, 1);
    return n;
}

/* (a, b=default, ...) into n->list as PARAM nodes. */
static void
jj_parse_signature(jj_parser_t *P, jj_node_t *n)
{
    const jj_token_t  *t;
    jj_node_t         *param;
    int                defaults = 0;

    jj_expect_op(P, JJ_OP_LPAREN, "(");
    while (!jj_is_op(jj_cur(P), JJ_OP_RPAREN)) {
        if (n->list.n > 0) {
            jj_expect_op(P, JJ_OP_COMMA, ",");
        }
        t = jj_expect(P, JJ_T_NAME, "name");
        param = jj_mk(P, JJ_N_PARAM, t);
        jj_set_name(param, t);
        if (jj_is_op(jj_cur(P), JJ_OP_ASSIGN)) {
            jj_next(P);
            param->a = jj_parse_expression(P, 1);
            defaults = 1;
        } else if (defaults) {
            jj_parse_fail(P, t, "non-default argument follows default "
                          "argument");
        }
        jj_push(P, &n->list, param);
    }
    jj_next(P);
}

/* A macro's body (or a call block's) in list2: loops around it do not
 * count, and what it reads sets its flags. */
static void
jj_parse_macro_body(jj_parser_t *P, jj_node_t *n, const char *end)
{
    const char  *ends[] = { end, NULL };
    jj_node_t   *saved_macro = P->macro;
    int          saved_loops = P->loops;

    P->macro = n;
    P->loops = 0;
    n->list2 = jj_parse_statements(P, ends, 1);
    P->macro = saved_macro;
    P->loops = saved_loops;
}

static jj_node_t *
jj_parse_macro(jj_parser_t *P, const jj_token_t *at)
{
    jj_node_t  *n = jj_mk(P, JJ_N_MACRO, at);

    jj_set_name(n, jj_expect(P, JJ_T_NAME, "name"));
    jj_parse_signature(P, n);
    jj_parse_macro_body(P, n, "endmacro");
    return n;
}

/* {% call(params) macro(args) %}body{% endcall %}: the macro gets the
 * body as caller. */
static jj_node_t *
jj_parse_call_block(jj_parser_t *P, const jj_token_t *at)
{
    jj_node_t  *n = jj_mk(P, JJ_N_CALLBLOCK, at);

    n->name = "caller";
    n->nlen = 6;
    if (jj_is_op(jj_cur(P), JJ_OP_LPAREN)) {
        jj_parse_signature(P, n);
    }
    n->a = jj_parse_expression(P, 1);
    if (n->a->kind != JJ_N_CALL) {
        jj_parse_fail(P, at, "expected call");
    }
    n->b = jj_mk(P, JJ_N_KEYWORD, at);
    n->b->name = "caller";
    n->b->nlen = 6;
    jj_parse_macro_body(P, n, "endcall");
    return n;
}

static jj_node_t *
jj_parse_with(jj_parser_t *P, const jj_token_t *at)
{
    static const char *const  ends[] = { "endwith", NULL };
    jj_node_t                *n = jj_mk(P, JJ_N_WITH, at), *set;

    while (jj_cur(P)->type != JJ_T_BLOCK_END) {
        if (n->list.n > 0) {
            jj_expect_op(P, JJ_OP_COMMA, ",");
        }
        set = jj_mk(P, JJ_N_SET, jj_cur(P));
        set->a = jj_parse_assign_target(P, 0, NULL, 0);
        jj_expect_op(P, JJ_OP_ASSIGN, "=");
        set->b = jj_parse_expression(P, 1);
        jj_push(P, &n->list, set);
    }
    n->list2 = jj_parse_statements(P, ends, 1);
    return n;
}

static jj_node_t *
jj_parse_statement(jj_parser_t *P)
{
    static const char *const  endfilter[] = { "endfilter", NULL };
    static const char *const  endgen[] = { "endgeneration", NULL };
    static const char *const  unsupported[] = {
        "block", "extends", "include", "import", "from", "autoescape", NULL
    };
    const jj_token_t         *t = jj_cur(P);
    const char *const        *u;
    jj_node_t                *n;

    if (t->type != JJ_T_NAME) {
        jj_parse_fail(P, t, "tag name expected");
    }
    jj_enter(P);
    jj_next(P);
    if (jj_is_name(t, "for")) {
        n = jj_parse_for(P, t);
    } else if (jj_is_name(t, "if")) {
        n = jj_parse_if(P, t);
    } else if (jj_is_name(t, "set")) {
        n = jj_parse_set(P, t);
    } else if (jj_is_name(t, "macro")) {
        n = jj_parse_macro(P, t);
    } else if (jj_is_name(t, "with")) {
        n = jj_parse_with(P, t);
    } else if (jj_is_name(t, "call")) {
        n = jj_parse_call_block(P, t);
    } else if (jj_is_name(t, "print")) {
        n = jj_mk(P, JJ_N_OUTPUT, t);
        n->a = jj_parse_tuple(P, 0, 1, NULL, 0);
    } else if (jj_is_name(t, "filter")) {
        n = jj_mk(P, JJ_N_FILTERBLOCK, t);
        n->b = jj_parse_filter(P, NULL, 1);
        n->list = jj_parse_statements(P, endfilter, 1);
    } else if (jj_is_name(t, "generation")) {
        n = jj_mk(P, JJ_N_GENERATION, t);
        n->list = jj_parse_statements(P, endgen, 1);
    } else if (jj_is_name(t, "break") || jj_is_name(t, "continue")) {
        if (P->loops == 0) {
            jj_parse_fail(P, t, "'%.*s' outside loop", (int) t->n, t->s);
        }
        n = jj_mk(P, jj_is_name(t, "break") ? JJ_N_BREAK : JJ_N_CONTINUE, t);
    } else {
        for (u = unsupported; *u != NULL; u++) {
            if (jj_is_name(t, *u)) {
                jj_parse_fail(P, t, "the '%s' tag is not supported in chat "
                              "templates", *u);
            }
        }
        jj_parse_fail(P, t, "Encountered unknown tag '%.*s'.",
                      (int) (t->n > 64 ? 64 : t->n), t->s);
    }
    P->depth--;
    return n;
}

static int
jj_is_end(const jj_token_t *t, const char *const *ends)
{
    for ( ; ends != NULL && *ends != NULL; ends++) {
        if (jj_is_name(t, *ends)) {
            return 1;
        }
    }
    return 0;
}

/* Statements and text up to one of ends (the token left at the end tag's
 * name), or to the end of the template when ends is NULL. */
static jj_nodes_t
jj_subparse(jj_parser_t *P, const char *const *ends)
{
    jj_nodes_t         body = { NULL, 0 };
    const jj_token_t  *t;
    jj_node_t         *n;
    char               want[160];
    size_t             k;

    for ( ;; ) {
        t = jj_cur(P);
        switch (t->type) {
        case JJ_T_DATA:
            n = jj_mk(P, JJ_N_DATA, t);
            jj_set_name(n, t);
            jj_push(P, &body, n);
            jj_next(P);
            break;
        case JJ_T_VAR_BEGIN:
            jj_next(P);
            n = jj_mk(P, JJ_N_OUTPUT, t);
            n->a = jj_parse_tuple(P, 0, 1, NULL, 0);
            jj_expect(P, JJ_T_VAR_END, "end of print statement");
            jj_push(P, &body, n);
            break;
        case JJ_T_BLOCK_BEGIN:
            jj_next(P);
            if (jj_is_end(jj_cur(P), ends)) {
                return body;
            }
            jj_push(P, &body, jj_parse_statement(P));
            jj_expect(P, JJ_T_BLOCK_END, "end of statement block");
            break;
        case JJ_T_EOF:
            if (ends == NULL) {
                return body;
            }
            k = 0;
            want[0] = '\0';
            for ( ; *ends != NULL && k + 32 < sizeof(want); ends++) {
                k += snprintf(want + k, sizeof(want) - k, "%s'%s'",
                              k ? " or " : "", *ends);
            }
            jj_parse_fail(P, t, "Unexpected end of template. Jinja was "
                          "looking for the following tags: %s.", want);
        default:
            jj_parse_fail(P, t, "unexpected '%s'",
                          jj_describe(t, want, sizeof(want)));
        }
    }
}

static jj_nodes_t
jj_parse_statements(jj_parser_t *P, const char *const *ends, int drop_needle)
{
    jj_nodes_t  body;

    if (jj_is_op(jj_cur(P), JJ_OP_COLON)) {
        jj_next(P);
    }
    jj_expect(P, JJ_T_BLOCK_END, "end of statement block");
    body = jj_subparse(P, ends);
    if (drop_needle) {
        jj_next(P);
    }
    return body;
}

/* ---- the check jinja2's compiler makes ---------------------------------- */

static void jj_check(jj_parser_t *P, const jj_node_t *n, int soft);

static void
jj_check_list(jj_parser_t *P, const jj_nodes_t *l, int soft)
{
    uint32_t  i;

    for (i = 0; i < l->n; i++) {
        jj_check(P, l->v[i], soft);
    }
}

/*
 * Unknown filters and tests fail here unless jinja2 would only find out
 * when they run: inside an if or an inline if ("soft" frames), but not in
 * a loop, macro or block nested in it, whose frames are new.  Also bounds
 * the depth of the tree, which long chains (a+b+c..., x|f|g...) make deep
 * without deep parser recursion.
 */
static void
jj_check(jj_parser_t *P, const jj_node_t *n, int soft)
{
    if (n == NULL) {
        return;
    }
    if (++P->depth > P->c->depth_max / 2) {
        jj_fail(P->c, "TemplateSyntaxError", n->line, n->col,
                "the expression nests deeper than %u", P->c->depth_max / 2);
    }
    if ((n->kind == JJ_N_FILTER || n->kind == JJ_N_TEST) && n->op < 0
        && !soft)
    {
        jj_fail(P->c, "TemplateAssertionError", n->line, n->col,
                "No %s named '%.*s'.", n->kind == JJ_N_FILTER ? "filter"
                                                               : "test",
                (int) (n->nlen > 64 ? 64 : n->nlen), n->name);
    }
    switch (n->kind) {
    case JJ_N_IF:
    case JJ_N_CONDEXPR:
        soft = 1;
        break;
    case JJ_N_FOR:
        jj_check(P, n->a, soft);
        jj_check(P, n->b, soft);
        soft = 0;
        jj_check(P, n->c, soft);
        jj_check_list(P, &n->list, soft);
        jj_check_list(P, &n->list2, soft);
        P->depth--;
        return;
    case JJ_N_WITH:
        jj_check_list(P, &n->list, soft);
        jj_check_list(P, &n->list2, 0);
        P->depth--;
        return;
    case JJ_N_MACRO:
    case JJ_N_CALLBLOCK:
    case JJ_N_SETBLOCK:
    case JJ_N_FILTERBLOCK:
    case JJ_N_GENERATION:
        soft = 0;
        break;
    default:
        break;
    }
    jj_check(P, n->a, soft);
    jj_check(P, n->b, soft);
    jj_check(P, n->c, soft);
    jj_check_list(P, &n->list, soft);
    jj_check_list(P, &n->list2, soft);
    P->depth--;
}

jj_node_t *
jj_parse(jj_ctx_t *c, const jj_tokens_t *toks)
{
    jj_parser_t  P;
    jj_node_t   *root;

    memset(&P, 0, sizeof(P));
    P.c = c;
    P.t = toks->v;
    P.n = toks->n;
    root = jj_mk(&P, JJ_N_TEMPLATE, jj_cur(&P));
    root->list = jj_subparse(&P, NULL);
    P.depth = 0;
    jj_check(&P, root, 0);
    return root;
}
