/*
 * The Jinja interpreter's insides, shared by its parts:
 *
 *   jinja.c          arena, errors, the public entry points, JSON input,
 *                    apply_chat_template's preparation of the messages
 *   jinja_lex.c      template text -> tokens (whitespace control here)
 *   jinja_parse.c    tokens -> tree (jj_node_t)
 *   jinja_eval.c     the tree evaluated: statements, expressions, scopes
 *   jinja_value.c    Python's value semantics: str(), repr(), json.dumps,
 *                    ==, <, truth, len, Unicode helpers
 *   jinja_builtin.c  filters, tests, methods of str/dict/list, globals
 *
 * Errors in every part unwind with longjmp to the entry point, which frees
 * the arena that holds all memory of the parse or render: no part has
 * anything else to release, so the code reads as straight-line Python.
 */
#ifndef INFER_JINJA_IMPL_H
#define INFER_JINJA_IMPL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "jinja.h"

#define JJ_NORETURN  __attribute__((noreturn))
#define JJ_PRINTF(a, b)  __attribute__((format(printf, a, b)))

/* ---- arena -------------------------------------------------------------- */

typedef struct jj_chunk_s  jj_chunk_t;

typedef struct {
    jj_chunk_t  *head;
    size_t       total;     /* bytes of all chunks */
    size_t       limit;
} jj_arena_t;

/* Shared by parse and render: where errors go and how to unwind.  The
 * scratch arena holds what the parse needs only while it runs (tokens). */
typedef struct {
    jj_arena_t            arena;
    jj_arena_t            scratch;
    jmp_buf               jmp;
    infer_jinja_error_t  *err;
    unsigned              depth;        /* C recursion in progress */
    unsigned              depth_max;
} jj_ctx_t;

void *jj_arena_alloc(jj_ctx_t *c, jj_arena_t *a, size_t n);
void *jj_arena_grow(jj_ctx_t *c, jj_arena_t *a, void *p, size_t old,
    size_t n);
#define jj_alloc(c, n)  jj_arena_alloc((c), &(c)->arena, (n))
#define jj_grow(c, p, old, n)  jj_arena_grow((c), &(c)->arena, (p), (old), (n))
char *jj_strdup(jj_ctx_t *c, const char *s, size_t n);
void jj_arena_free(jj_arena_t *a);

void jj_fail(jj_ctx_t *c, const char *type, int line, int col,
    const char *fmt, ...) JJ_NORETURN JJ_PRINTF(5, 6);
void jj_vfail(jj_ctx_t *c, const char *type, int line, int col,
    const char *fmt, va_list ap) JJ_NORETURN;

/* ---- values ------------------------------------------------------------- */

typedef enum {
    JJ_UNDEF = 0,
    JJ_NONE,
    JJ_BOOL,
    JJ_INT,
    JJ_FLOAT,
    JJ_STR,
    JJ_LIST,            /* list, tuple, generator (flags) */
    JJ_DICT,
    JJ_NS,              /* namespace(): a dict assigned by attribute */
    JJ_FUNC,            /* macro, global function, bound method */
    JJ_LOOP             /* the loop variable of a for */
} jj_type_t;

#define JJ_F_MARKUP   0x01      /* str: markupsafe.Markup (|safe) */
#define JJ_F_TUPLE    0x02      /* list: a tuple */
#define JJ_F_GEN      0x04      /* list: a generator (what select, map,
                                   items... return): always true, no len */

typedef struct jj_list_s    jj_list_t;
typedef struct jj_dict_s    jj_dict_t;
typedef struct jj_undef_s   jj_undef_t;
typedef struct jj_func_s    jj_func_t;
typedef struct jj_loop_s    jj_loop_t;

typedef struct {
    uint8_t     type;
    uint8_t     flags;
    uint32_t    len;            /* JJ_STR: bytes */
    union {
        int64_t      i;         /* JJ_BOOL, JJ_INT */
        double       f;
        const char  *s;         /* UTF-8, not NUL-terminated */
        jj_list_t   *list;
        jj_dict_t   *dict;
        jj_undef_t  *undef;     /* NULL: a plain Undefined */
        jj_func_t   *func;
        jj_loop_t   *loop;
    } u;
} jj_value_t;

struct jj_list_s {
    uint32_t     n;
    uint32_t     cap;
    jj_value_t  *v;
};

/* Keys in insertion order, as Python's dict. */
struct jj_dict_s {
    uint32_t     n;
    uint32_t     cap;
    jj_value_t  *key;
    jj_value_t  *val;
};

/* Why a value is undefined, for the UndefinedError it raises when used
 * (jinja2's Undefined(hint, obj, name, exc)). */
struct jj_undef_s {
    const char  *hint;          /* the whole message, or NULL */
    const char  *exc;           /* "UndefinedError" or "SecurityError" */
    jj_value_t   obj;           /* JJ_UNDEF here: no object (a name) */
    jj_value_t   name;          /* str, or int for "has no element" */
};

typedef struct jj_node_s   jj_node_t;
typedef struct jj_scope_s  jj_scope_t;

typedef enum {
    JJ_FN_MACRO,
    JJ_FN_GLOBAL,               /* id: jj_global_t */
    JJ_FN_METHOD,               /* id: jj_method_t, bound to self */
    JJ_FN_CYCLE                 /* loop.cycle */
} jj_fn_kind_t;

struct jj_func_s {
    uint8_t           kind;
    uint16_t          id;
    const char       *name;
    jj_value_t        self;
    const jj_node_t  *macro;
    jj_scope_t       *closure;
};

struct jj_loop_s {
    const jj_value_t  *items;
    uint32_t           n;
    uint32_t           i;
};

/* ---- template tree ------------------------------------------------------ */

typedef enum {
    /* expressions */
    JJ_N_CONST,         /* val */
    JJ_N_NAME,          /* name */
    JJ_N_GETATTR,       /* a.name */
    JJ_N_GETITEM,       /* a[b] */
    JJ_N_SLICE,         /* a:b:c, each may be NULL (only inside GETITEM) */
    JJ_N_CALL,          /* a(list, list2 = keywords) */
    JJ_N_FILTER,        /* a|name(list, list2); a NULL: a block's body */
    JJ_N_TEST,          /* a is name(list, list2) */
    JJ_N_NOT,
    JJ_N_NEG,
    JJ_N_POS,
    JJ_N_BINOP,         /* a op b, op: jj_binop_t */
    JJ_N_AND,
    JJ_N_OR,
    JJ_N_CONCAT,        /* list joined with ~ */
    JJ_N_COMPARE,       /* a, then list of OPERAND (op: jj_cmp_t, a) */
    JJ_N_OPERAND,
    JJ_N_CONDEXPR,      /* b if a else c (c may be NULL) */
    JJ_N_LIST,
    JJ_N_TUPLE,
    JJ_N_DICT,          /* list of PAIR (a: b) */
    JJ_N_PAIR,
    JJ_N_KEYWORD,       /* name=a */
    /* statements */
    JJ_N_TEMPLATE,      /* list: body */
    JJ_N_DATA,          /* name: the text */
    JJ_N_OUTPUT,        /* {{ a }} */
    JJ_N_IF,            /* if a: list, else list2 (an elif is an IF) */
    JJ_N_FOR,           /* for a in b if c: list, else list2 */
    JJ_N_SET,           /* a = b */
    JJ_N_SETBLOCK,      /* a = list rendered, through filter chain b */
    JJ_N_MACRO,         /* name(list of PARAM: name = a): list2 */
    JJ_N_PARAM,
    JJ_N_FILTERBLOCK,   /* list rendered through filter chain b */
    JJ_N_GENERATION,    /* list */
    JJ_N_WITH,          /* list of SET, list2 body */
    JJ_N_CALLBLOCK,     /* a: a CALL given caller = a macro of params
                           list and body list2; b: its caller KEYWORD */
    JJ_N_BREAK,
    JJ_N_CONTINUE
} jj_kind_t;

typedef enum {
    JJ_ADD, JJ_SUB, JJ_MUL, JJ_DIV, JJ_FLOORDIV, JJ_MOD, JJ_POW
} jj_binop_t;

typedef enum {
    JJ_EQ, JJ_NE, JJ_LT, JJ_LE, JJ_GT, JJ_GE, JJ_IN, JJ_NOTIN
} jj_cmp_t;

typedef struct {
    jj_node_t  **v;
    uint32_t     n;
} jj_nodes_t;

/* Macro flags: what the body reads, as jinja2 decides a macro's
 * signature. */
#define JJ_MACRO_VARARGS  0x01
#define JJ_MACRO_KWARGS   0x02
#define JJ_MACRO_CALLER   0x04

struct jj_node_s {
    uint8_t      kind;
    uint8_t      flags;
    int16_t      op;            /* operator, filter/test id, macro flags */
    int          line;
    int          col;
    jj_node_t   *a;
    jj_node_t   *b;
    jj_node_t   *c;
    jj_nodes_t   list;
    jj_nodes_t   list2;
    const char  *name;          /* identifier or text */
    uint32_t     nlen;
    jj_value_t   val;
};

struct infer_jinja_tmpl_s {
    jj_arena_t   arena;
    jj_node_t   *root;
    const char  *src;           /* the normalized source */
    size_t       len;
};

/* ---- lexer -------------------------------------------------------------- */

typedef enum {
    JJ_T_EOF,
    JJ_T_DATA,
    JJ_T_VAR_BEGIN,
    JJ_T_VAR_END,
    JJ_T_BLOCK_BEGIN,
    JJ_T_BLOCK_END,
    JJ_T_NAME,
    JJ_T_STRING,
    JJ_T_INT,
    JJ_T_FLOAT,
    JJ_T_OP
} jj_tok_type_t;

/* Operators as the lexer tells them apart. */
typedef enum {
    JJ_OP_ADD = 1, JJ_OP_SUB, JJ_OP_MUL, JJ_OP_DIV, JJ_OP_FLOORDIV,
    JJ_OP_MOD, JJ_OP_POW, JJ_OP_TILDE, JJ_OP_LBRACKET, JJ_OP_RBRACKET,
    JJ_OP_LPAREN, JJ_OP_RPAREN, JJ_OP_LBRACE, JJ_OP_RBRACE, JJ_OP_EQ,
    JJ_OP_NE, JJ_OP_GT, JJ_OP_GE, JJ_OP_LT, JJ_OP_LE, JJ_OP_ASSIGN,
    JJ_OP_DOT, JJ_OP_COLON, JJ_OP_PIPE, JJ_OP_COMMA, JJ_OP_SEMICOLON
} jj_op_t;

typedef struct {
    uint8_t      type;
    uint8_t      op;
    int          line;
    int          col;
    const char  *s;             /* NAME, DATA, STRING (unescaped) */
    uint32_t     n;
    int64_t      i;
    double       f;
} jj_token_t;

typedef struct {
    jj_token_t  *v;
    uint32_t     n;
} jj_tokens_t;

/* src must already be normalized (jj_normalize). */
void jj_lex(jj_ctx_t *c, const char *src, size_t len, jj_tokens_t *out);
char *jj_normalize(jj_ctx_t *c, const char *src, size_t len, size_t *out);
jj_node_t *jj_parse(jj_ctx_t *c, const jj_tokens_t *toks);

/* ---- render ------------------------------------------------------------- */

typedef struct {
    const char  *name;
    uint32_t     len;
    jj_value_t   val;
} jj_var_t;

struct jj_scope_s {
    jj_scope_t  *parent;
    jj_var_t    *vars;
    uint32_t     n;
    uint32_t     cap;
};

typedef struct {
    jj_ctx_t          c;
    uint64_t          steps;
    uint64_t          steps_max;
    size_t            out_max;
    struct tm         now;
    const jj_node_t  *at;           /* where an error is reported */
} jj_render_t;

/* Text being rendered: the output, or a capture (macro, set block). */
typedef struct {
    char    *p;
    size_t   len;
    size_t   cap;
} jj_buf_t;

/* Arguments of a call as evaluated. */
typedef struct {
    jj_value_t         *pos;
    uint32_t            npos;
    const jj_node_t   **kwname;     /* KEYWORD nodes: their names */
    jj_value_t         *kw;
    uint32_t            nkw;
} jj_args_t;

void jj_raise(jj_render_t *r, const char *type, const char *fmt, ...)
    JJ_NORETURN JJ_PRINTF(3, 4);
void jj_step(jj_render_t *r, uint64_t n);
/* Charges for work over n bytes or elements: a step is about what
 * evaluating a node costs, some 50 ns, and scanning 8 bytes as much. */
#define jj_charge(r, n)  jj_step((r), 1 + ((uint64_t) (n) >> 3))

void jj_buf_add(jj_render_t *r, jj_buf_t *b, const char *s, size_t n);
void jj_buf_addc(jj_render_t *r, jj_buf_t *b, char ch);
void jj_buf_printf(jj_render_t *r, jj_buf_t *b, const char *fmt, ...)
    JJ_PRINTF(3, 4);

void jj_scope_set(jj_render_t *r, jj_scope_t *sc, const char *name,
    size_t len, jj_value_t v);
jj_value_t jj_render_tree(jj_render_t *r, const jj_node_t *root,
    jj_scope_t *globals);

/* Constructors. */
jj_value_t jj_undef(void);
jj_value_t jj_undef_hint(jj_render_t *r, const char *exc, const char *fmt,
    ...) JJ_PRINTF(3, 4);
jj_value_t jj_undef_attr(jj_render_t *r, jj_value_t obj, jj_value_t name);
jj_value_t jj_undef_name(jj_render_t *r, const char *name, size_t len);
jj_value_t jj_none(void);
jj_value_t jj_bool(int b);
jj_value_t jj_int(int64_t i);
jj_value_t jj_float(double f);
jj_value_t jj_str(jj_render_t *r, const char *s, size_t n);
jj_value_t jj_cstr(jj_render_t *r, const char *s);
jj_value_t jj_buf_str(jj_render_t *r, const jj_buf_t *b);
jj_value_t jj_list_new(jj_render_t *r, uint32_t cap, uint8_t flags);
void jj_list_push(jj_render_t *r, jj_value_t *list, jj_value_t v);
jj_value_t jj_dict_new(jj_render_t *r, uint32_t cap);
void jj_dict_set(jj_render_t *r, jj_value_t *dict, jj_value_t k,
    jj_value_t v);
/* The value of key k, or NULL. */
jj_value_t *jj_dict_get(jj_render_t *r, const jj_dict_t *d, jj_value_t k);
jj_value_t *jj_dict_gets(const jj_dict_t *d, const char *k, size_t n);
jj_value_t jj_func_new(jj_render_t *r, int kind, int id, const char *name,
    jj_value_t self);

/* Python semantics (jinja_value.c). */
int jj_truthy(jj_value_t v);
int jj_is_str(jj_value_t v);
const char *jj_type_name(jj_value_t v);
void jj_undef_fail(jj_render_t *r, jj_value_t v) JJ_NORETURN;
void jj_check_defined(jj_render_t *r, jj_value_t v);
jj_value_t jj_to_str(jj_render_t *r, jj_value_t v);
void jj_write_str(jj_render_t *r, jj_buf_t *b, jj_value_t v);
void jj_write_repr(jj_render_t *r, jj_buf_t *b, jj_value_t v);
void jj_write_float(jj_render_t *r, jj_buf_t *b, double f);

typedef struct {
    int          ensure_ascii;
    int          sort_keys;
    int          indent;        /* -1: none */
    const char  *indent_s;      /* an indent given as a string */
    uint32_t     indent_n;
    const char  *item_sep;
    uint32_t     item_sep_n;
    const char  *key_sep;
    uint32_t     key_sep_n;
} jj_json_opts_t;

void jj_write_json(jj_render_t *r, jj_buf_t *b, jj_value_t v,
    const jj_json_opts_t *o);
int jj_equal(jj_render_t *r, jj_value_t a, jj_value_t b);
/* a < b as Python orders them; TypeError where it does not. */
int jj_less(jj_render_t *r, jj_value_t a, jj_value_t b, const char *op);
int jj_contains(jj_render_t *r, jj_value_t seq, jj_value_t x);
int jj_compare(jj_render_t *r, int op, jj_value_t a, jj_value_t b);
void jj_check_hashable(jj_render_t *r, jj_value_t v);
int64_t jj_len(jj_render_t *r, jj_value_t v);
/* The items a for loop (or list()) sees; *n of them. */
const jj_value_t *jj_iterate(jj_render_t *r, jj_value_t v, uint32_t *n);
jj_value_t jj_as_list(jj_render_t *r, jj_value_t v);
jj_value_t jj_binop(jj_render_t *r, int op, jj_value_t a, jj_value_t b);
jj_value_t jj_getattr(jj_render_t *r, jj_value_t obj, const char *name,
    size_t len);
jj_value_t jj_getitem(jj_render_t *r, jj_value_t obj, jj_value_t key);
jj_value_t jj_slice(jj_render_t *r, jj_value_t obj, jj_value_t start,
    jj_value_t stop, jj_value_t step);

/* UTF-8 and Python's str (jinja_value.c). */
size_t jj_utf8_len(const char *s, size_t n);
int32_t jj_utf8_next(const char *s, size_t n, size_t *i);
size_t jj_utf8_offset(const char *s, size_t n, int64_t cp);
int jj_py_space(int32_t c);
void jj_write_utf8(jj_render_t *r, jj_buf_t *b, int32_t c);

/* Builtins (jinja_builtin.c). */
int jj_filter_id(const char *name, size_t len);
int jj_test_id(const char *name, size_t len);
int jj_global_id(const char *name, size_t len);
int jj_method_id(jj_value_t self, const char *name, size_t len);
jj_value_t jj_call_filter(jj_render_t *r, jj_scope_t *sc, int id,
    const char *name, jj_value_t v, jj_args_t *a);
int jj_call_test(jj_render_t *r, int id, const char *name, jj_value_t v,
    jj_args_t *a);
jj_value_t jj_call_global(jj_render_t *r, int id, jj_args_t *a);
jj_value_t jj_call_method(jj_render_t *r, const jj_func_t *f, jj_args_t *a);
jj_value_t jj_call(jj_render_t *r, jj_value_t fn, jj_args_t *a);
jj_value_t jj_call_macro(jj_render_t *r, const jj_func_t *f, jj_args_t *a);

#endif
