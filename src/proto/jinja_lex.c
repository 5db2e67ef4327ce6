/*
 * Template text -> tokens, as jinja2's lexer (lexer.py) splits it with
 * trim_blocks and lstrip_blocks on: text between tags is data; {{ }}, {% %}
 * hold expression tokens; {# #} comments vanish.  Whitespace control is
 * decided here, where jinja2 decides it:
 *
 *   {%- {{- {#-   the data before loses its trailing whitespace
 *   -%} -}} -#}   the whitespace after the tag is skipped
 *   %} #}         one newline after the tag is skipped (trim_blocks)
 *   {% {#         on a line of only whitespace before them, that
 *                 whitespace goes (lstrip_blocks); {%+ keeps it
 *   +%} +#}       keeps the newline
 *
 * Whitespace is Python's (str.isspace), as jinja2's regular expressions
 * see it.  The source is first normalized as jinja2 does: \r\n and \r
 * become \n and one trailing newline is dropped.
 */
#include <string.h>

#include "jinja_impl.h"

#define JJ_BALANCE_MAX  256

typedef struct {
    jj_ctx_t     *c;
    const char   *s;
    size_t        n;
    size_t        pos;
    /* where line/column were last computed: tokens come in order */
    size_t        at;
    int           line;
    int           col;
    jj_token_t   *v;
    uint32_t      nt;
    uint32_t      cap;
    int           line_starting;
    char          bal[JJ_BALANCE_MAX];
    int           nbal;
} jj_lexer_t;

/* Line and column (in characters) of byte offset pos. */
static void
jj_lex_where(jj_lexer_t *L, size_t pos, int *line, int *col)
{
    if (pos < L->at) {
        L->at = 0;
        L->line = 1;
        L->col = 1;
    }
    while (L->at < pos && L->at < L->n) {
        if (L->s[L->at] == '\n') {
            L->line++;
            L->col = 1;
        } else if (((unsigned char) L->s[L->at] & 0xc0) != 0x80) {
            L->col++;
        }
        L->at++;
    }
    *line = L->line;
    *col = L->col;
}

static void JJ_NORETURN JJ_PRINTF(3, 4)
jj_lex_fail(jj_lexer_t *L, size_t pos, const char *fmt, ...)
{
    va_list  ap;
    int      line, col;

    jj_lex_where(L, pos, &line, &col);
    va_start(ap, fmt);
    jj_vfail(L->c, "TemplateSyntaxError", line, col, fmt, ap);
}

static jj_token_t *
jj_lex_emit(jj_lexer_t *L, int type, size_t pos)
{
    jj_token_t  *t;

    if (L->nt == L->cap) {
        L->cap = L->cap ? L->cap * 2 : 256;
        L->v = jj_arena_grow(L->c, &L->c->scratch, L->v,
                             L->nt * sizeof(jj_token_t),
                             L->cap * sizeof(jj_token_t));
    }
    t = &L->v[L->nt++];
    memset(t, 0, sizeof(*t));
    t->type = (uint8_t) type;
    jj_lex_where(L, pos, &t->line, &t->col);
    return t;
}

/* The length of the Python whitespace character at s[i], or 0. */
static size_t
jj_lex_space(const char *s, size_t n, size_t i)
{
    size_t   j = i;
    int32_t  ch;

    if (i >= n) {
        return 0;
    }
    ch = jj_utf8_next(s, n, &j);
    return jj_py_space(ch) ? j - i : 0;
}

static size_t
jj_lex_skip_space(const char *s, size_t n, size_t i)
{
    size_t  k;

    while ((k = jj_lex_space(s, n, i)) > 0) {
        i += k;
    }
    return i;
}

/* len of s[0..n) without its trailing whitespace (str.rstrip()). */
static size_t
jj_lex_rstrip(const char *s, size_t n)
{
    size_t  i = 0, end = 0, k;

    while (i < n) {
        k = jj_lex_space(s, n, i);
        if (k == 0) {
            jj_utf8_next(s, n, &i);
            end = i;
        } else {
            i += k;
        }
    }
    return end;
}

char *
jj_normalize(jj_ctx_t *c, const char *src, size_t len, size_t *out)
{
    char     *p = jj_alloc(c, len + 1);
    size_t    i, n = 0, line = 1, col = 1, j;
    int32_t   ch;

    for (i = 0; i < len; ) {
        j = i;
        ch = jj_utf8_next(src, len, &j);
        if (ch < 0) {
            jj_fail(c, "TemplateSyntaxError", (int) line, (int) col,
                    "the template is not valid UTF-8");
        }
        if (src[i] == '\r') {
            p[n++] = '\n';
            i += (i + 1 < len && src[i + 1] == '\n') ? 2 : 1;
            line++;
            col = 1;
            continue;
        }
        if (src[i] == '\n') {
            line++;
            col = 0;
        }
        memcpy(p + n, src + i, j - i);
        n += j - i;
        i = j;
        col++;
    }
    if (n > 0 && p[n - 1] == '\n') {
        n--;
    }
    p[n] = '\0';
    *out = n;
    return p;
}

/* ---- inside {{ }} and {% %} --------------------------------------------- */

static int
jj_lex_hex(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* The escapes of Python's "unicode-escape" codec, applied to a literal
 * whose non-ASCII characters jinja2 first turns into \x, \u, \U escapes
 * ("backslashreplace"): so a backslash before such a character stays a
 * backslash and the escape's text follows it. */
static void
jj_lex_unescape(jj_lexer_t *L, jj_token_t *t, const char *s, size_t n,
    size_t at)
{
    jj_ctx_t  *c = L->c;
    char      *o;
    size_t     i, j, k, len = 0, digits;
    int32_t    cp;
    int        h;
    char       esc[12];

    if (memchr(s, '\\', n) == NULL) {
        t->s = s;
        t->n = (uint32_t) n;
        return;
    }
    o = jj_alloc(c, n * 2 + 1);
    for (i = 0; i < n; ) {
        if (s[i] != '\\' || i + 1 >= n) {
            o[len++] = s[i++];
            continue;
        }
        i++;
        switch (s[i]) {
        case '\n': i++; continue;
        case '\\': o[len++] = '\\'; i++; continue;
        case '\'': o[len++] = '\''; i++; continue;
        case '"': o[len++] = '"'; i++; continue;
        case 'a': o[len++] = '\a'; i++; continue;
        case 'b': o[len++] = '\b'; i++; continue;
        case 'f': o[len++] = '\f'; i++; continue;
        case 'n': o[len++] = '\n'; i++; continue;
        case 'r': o[len++] = '\r'; i++; continue;
        case 't': o[len++] = '\t'; i++; continue;
        case 'v': o[len++] = '\v'; i++; continue;
        default: break;
        }
        if (s[i] >= '0' && s[i] <= '7') {
            cp = 0;
            for (k = 0; k < 3 && i < n && s[i] >= '0' && s[i] <= '7'; k++) {
                cp = cp * 8 + (s[i++] - '0');
            }
            goto put;
        }
        if (s[i] == 'x' || s[i] == 'u' || s[i] == 'U') {
            digits = s[i] == 'x' ? 2 : s[i] == 'u' ? 4 : 8;
            i++;
            cp = 0;
            for (k = 0; k < digits; k++) {
                h = i + k < n ? jj_lex_hex((unsigned char) s[i + k]) : -1;
                if (h < 0) {
                    jj_lex_fail(L, at, "(unicode error) 'unicodeescape' codec "
                                "can't decode bytes: truncated \\%c escape",
                                digits == 2 ? 'x' : digits == 4 ? 'u' : 'U');
                }
                cp = cp * 16 + h;
                if (cp > 0x10ffff) {
                    jj_lex_fail(L, at, "(unicode error) 'unicodeescape' "
                                "codec can't decode bytes: illegal Unicode "
                                "character");
                }
            }
            i += digits;
            goto put;
        }
        if ((unsigned char) s[i] >= 0x80) {
            /* backslashreplace wrote this character as an escape */
            j = i;
            cp = jj_utf8_next(s, n, &j);
            k = (size_t) (cp < 0x100 ? snprintf(esc, sizeof(esc), "x%02x", cp)
                          : cp < 0x10000 ? snprintf(esc, sizeof(esc), "u%04x",
                                                    cp)
                          : snprintf(esc, sizeof(esc), "U%08x", cp));
            o[len++] = '\\';
            memcpy(o + len, esc, k);
            len += k;
            i = j;
            continue;
        }
        if (s[i] == 'N') {
            jj_lex_fail(L, at, "\\N{...} escapes are not supported");
        }
        o[len++] = '\\';
        continue;
    put:
        if (cp >= 0xd800 && cp <= 0xdfff) {
            jj_lex_fail(L, at, "a string escapes a surrogate (U+%04X)", cp);
        }
        if (cp < 0x80) {
            o[len++] = (char) cp;
        } else if (cp < 0x800) {
            o[len++] = (char) (0xc0 | (cp >> 6));
            o[len++] = (char) (0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            o[len++] = (char) (0xe0 | (cp >> 12));
            o[len++] = (char) (0x80 | ((cp >> 6) & 0x3f));
            o[len++] = (char) (0x80 | (cp & 0x3f));
        } else {
            o[len++] = (char) (0xf0 | (cp >> 18));
            o[len++] = (char) (0x80 | ((cp >> 12) & 0x3f));
            o[len++] = (char) (0x80 | ((cp >> 6) & 0x3f));
            o[len++] = (char) (0x80 | (cp & 0x3f));
        }
    }
    t->s = o;
    t->n = (uint32_t) len;
}

/* A string literal at L->pos; 0 if there is none (unterminated). */
static int
jj_lex_string(jj_lexer_t *L)
{
    const char  *s = L->s;
    char         q = s[L->pos];
    size_t       i = L->pos + 1;
    jj_token_t  *t;

    while (i < L->n && s[i] != q) {
        i += s[i] == '\\' && i + 1 < L->n ? 2 : 1;
    }
    if (i >= L->n) {
        return 0;
    }
    t = jj_lex_emit(L, JJ_T_STRING, L->pos);
    jj_lex_unescape(L, t, s + L->pos + 1, i - L->pos - 1, L->pos);
    L->pos = i + 1;
    return 1;
}

static int
jj_lex_digit(int ch, int base)
{
    int  d = jj_lex_hex(ch);

    return d >= 0 && d < base ? d : -1;
}

/* Digits with single underscores between them ("1_000"); the end. */
static size_t
jj_lex_digits(const char *s, size_t n, size_t i, int base, int lead_us)
{
    size_t  start = i;

    for ( ;; ) {
        if (i < n && s[i] == '_' && (i > start || lead_us) && i + 1 < n
            && jj_lex_digit((unsigned char) s[i + 1], base) >= 0)
        {
            i++;
        }
        if (i < n && jj_lex_digit((unsigned char) s[i], base) >= 0) {
            i++;
            continue;
        }
        return i;
    }
}

/* jinja2's float_re, then integer_re; 0 if neither matches here. */
static int
jj_lex_number(jj_lexer_t *L)
{
    const char  *s = L->s;
    size_t       n = L->n, i = L->pos, e, j;
    jj_token_t  *t;
    char         buf[512];
    int          base, d, isfloat = 0;
    int64_t      v;

    if (!(s[i] >= '0' && s[i] <= '9')) {
        return 0;
    }
    e = jj_lex_digits(s, n, i, 10, 0);
    if (!(i > 0 && s[i - 1] == '.')) {
        j = e;
        if (j + 1 < n && s[j] == '.' && s[j + 1] >= '0' && s[j + 1] <= '9') {
            j = jj_lex_digits(s, n, j + 1, 10, 0);
            isfloat = 1;
        }
        if (j < n && (s[j] == 'e' || s[j] == 'E')) {
            size_t  k = j + 1;

            if (k < n && (s[k] == '+' || s[k] == '-')) {
                k++;
            }
            if (k < n && s[k] >= '0' && s[k] <= '9') {
                j = jj_lex_digits(s, n, k, 10, 0);
                isfloat = 1;
            }
        }
        if (isfloat) {
            size_t  m = 0;

            for (e = i; e < j && m + 1 < sizeof(buf); e++) {
                if (s[e] != '_') {
                    buf[m++] = s[e];
                }
            }
            buf[m] = '\0';
            t = jj_lex_emit(L, JJ_T_FLOAT, i);
            t->f = strtod(buf, NULL);
            L->pos = j;
            return 1;
        }
    }
    base = 10;
    if (s[i] == '0' && i + 2 < n && strchr("bBoOxX", s[i + 1]) != NULL
        && s[i + 1] != '\0')
    {
        base = (s[i + 1] | 0x20) == 'b' ? 2 : (s[i + 1] | 0x20) == 'o' ? 8
                                                                       : 16;
        j = jj_lex_digits(s, n, i + 2, base, 1);
        if (j > i + 2) {
            i += 2;
            e = j;
        } else {
            base = 10;
        }
    }
    if (base == 10) {
        /* "0" then zeros only, or a digit 1-9 then digits */
        if (s[i] == '0') {
            for (e = i + 1; e < n && (s[e] == '0' || (s[e] == '_' && e + 1 < n
                                                      && s[e + 1] == '0'));
                 e++)
            {
            }
        }
    }
    t = jj_lex_emit(L, JJ_T_INT, L->pos);
    v = 0;
    for (j = i; j < e; j++) {
        if (s[j] == '_') {
            continue;
        }
        d = jj_lex_digit((unsigned char) s[j], base);
        if (v > (INT64_MAX - d) / base) {
            jj_lex_fail(L, L->pos, "integer literal too large");
        }
        v = v * base + d;
    }
    t->i = v;
    L->pos = e;
    return 1;
}

static int
jj_lex_name(jj_lexer_t *L)
{
    const char  *s = L->s;
    size_t       i = L->pos;
    jj_token_t  *t;

    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
          || s[i] == '_'))
    {
        return 0;
    }
    while (i < L->n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A'
                        && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')
                        || s[i] == '_'))
    {
        i++;
    }
    t = jj_lex_emit(L, JJ_T_NAME, L->pos);
    t->s = s + L->pos;
    t->n = (uint32_t) (i - L->pos);
    L->pos = i;
    return 1;
}

static const struct {
    const char  *s;
    uint8_t      op;
} jj_ops[] = {
    { "//", JJ_OP_FLOORDIV }, { "**", JJ_OP_POW }, { "==", JJ_OP_EQ },
    { "!=", JJ_OP_NE }, { ">=", JJ_OP_GE }, { "<=", JJ_OP_LE },
    { "+", JJ_OP_ADD }, { "-", JJ_OP_SUB }, { "/", JJ_OP_DIV },
    { "*", JJ_OP_MUL }, { "%", JJ_OP_MOD }, { "~", JJ_OP_TILDE },
    { "[", JJ_OP_LBRACKET }, { "]", JJ_OP_RBRACKET },
    { "(", JJ_OP_LPAREN }, { ")", JJ_OP_RPAREN },
    { "{", JJ_OP_LBRACE }, { "}", JJ_OP_RBRACE },
    { "|", JJ_OP_PIPE }, { ",", JJ_OP_COMMA }, { ";", JJ_OP_SEMICOLON },
    { ":", JJ_OP_COLON }, { ".", JJ_OP_DOT }, { "=", JJ_OP_ASSIGN },
    { "<", JJ_OP_LT }, { ">", JJ_OP_GT }
};

static int
jj_lex_operator(jj_lexer_t *L)
{
    const char  *s = L->s + L->pos;
    size_t       i, k, left = L->n - L->pos;
    jj_token_t  *t;
    char         ch, want;

    for (i = 0; i < sizeof(jj_ops) / sizeof(jj_ops[0]); i++) {
        k = strlen(jj_ops[i].s);
        if (k <= left && memcmp(s, jj_ops[i].s, k) == 0) {
            break;
        }
    }
    if (i == sizeof(jj_ops) / sizeof(jj_ops[0])) {
        return 0;
    }
    ch = jj_ops[i].s[0];
    if (k == 1 && (ch == '{' || ch == '(' || ch == '[')) {
        if (L->nbal == JJ_BALANCE_MAX) {
            jj_lex_fail(L, L->pos, "brackets nest deeper than %d",
                        JJ_BALANCE_MAX);
        }
        L->bal[L->nbal++] = ch == '{' ? '}' : ch == '(' ? ')' : ']';
    } else if (k == 1 && (ch == '}' || ch == ')' || ch == ']')) {
        if (L->nbal == 0) {
            jj_lex_fail(L, L->pos, "unexpected '%c'", ch);
        }
        want = L->bal[--L->nbal];
        if (want != ch) {
            jj_lex_fail(L, L->pos, "unexpected '%c', expected '%c'", ch, want);
        }
    }
    t = jj_lex_emit(L, JJ_T_OP, L->pos);
    t->op = jj_ops[i].op;
    t->s = jj_ops[i].s;
    t->n = (uint32_t) k;
    L->pos += k;
    return 1;
}

/* The end of a tag ("%}" or "}}") at L->pos, with its whitespace
 * control; 0 if it is not there. */
static int
jj_lex_tag_end(jj_lexer_t *L, char close, int type)
{
    const char  *s = L->s;
    size_t       i = L->pos, n = L->n;

    if (L->nbal > 0) {
        return 0;
    }
    if (close == '%' && i + 2 < n && s[i] == '+' && s[i + 1] == '%'
        && s[i + 2] == '}')
    {
        jj_lex_emit(L, type, i);
        L->pos = i + 3;
        L->line_starting = 0;
        return 1;
    }
    if (i + 2 < n && s[i] == '-' && s[i + 1] == close && s[i + 2] == '}')
    {
        jj_lex_emit(L, type, i);
        L->pos = jj_lex_skip_space(s, n, i + 3);
        L->line_starting = L->pos > i + 3 && s[L->pos - 1] == '\n';
        return 1;
    }
    if (i + 1 < n && s[i] == close && s[i + 1] == '}') {
        jj_lex_emit(L, type, i);
        L->pos = i + 2;
        L->line_starting = 0;
        if (close == '%' && L->pos < n && s[L->pos] == '\n') {
            L->pos++;
            L->line_starting = 1;
        }
        return 1;
    }
    return 0;
}

/* Tokens up to the end of a {{ }} (close '}') or {% %} (close '%'). */
static void
jj_lex_tag(jj_lexer_t *L, char close)
{
    int     end = close == '%' ? JJ_T_BLOCK_END : JJ_T_VAR_END;
    size_t  k;

    L->nbal = 0;
    while (L->pos < L->n) {
        if (jj_lex_tag_end(L, close, end)) {
            return;
        }
        k = jj_lex_skip_space(L->s, L->n, L->pos);
        if (k > L->pos) {
            L->line_starting = L->s[k - 1] == '\n';
            L->pos = k;
            continue;
        }
        L->line_starting = 0;
        if (jj_lex_number(L) || jj_lex_name(L)) {
            continue;
        }
        if ((L->s[L->pos] == '\'' || L->s[L->pos] == '"') && jj_lex_string(L))
        {
            continue;
        }
        if (jj_lex_operator(L)) {
            continue;
        }
        jj_lex_fail(L, L->pos, "unexpected char '%c' at %zu",
                    L->s[L->pos], L->pos);
    }
}

/* ---- between tags ------------------------------------------------------- */

/* The comment from L->pos (after "{#" and its sign) to its end. */
static void
jj_lex_comment(jj_lexer_t *L, size_t start)
{
    const char  *s = L->s;
    size_t       i, n = L->n;

    for (i = L->pos; i + 1 < n; i++) {
        if (s[i] == '+' && i + 2 < n && s[i + 1] == '#' && s[i + 2] == '}') {
            L->pos = i + 3;
            L->line_starting = 0;
            return;
        }
        if (s[i] == '-' && i + 2 < n && s[i + 1] == '#' && s[i + 2] == '}') {
            L->pos = jj_lex_skip_space(s, n, i + 3);
            L->line_starting = L->pos > i + 3 && s[L->pos - 1] == '\n';
            return;
        }
        if (s[i] == '#' && s[i + 1] == '}') {
            L->pos = i + 2;
            L->line_starting = 0;
            if (L->pos < n && s[L->pos] == '\n') {
                L->pos++;
                L->line_starting = 1;
            }
            return;
        }
    }
    jj_lex_fail(L, start, "Missing end of comment tag");
}

/* "{%" sign? space* "raw" space* ("-%}" space* | "%}") at i: its end. */
static size_t
jj_lex_raw_begin(jj_lexer_t *L, size_t i, const char *word)
{
    const char  *s = L->s;
    size_t       n = L->n, k = strlen(word);

    i += 2;
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        i++;
    }
    i = jj_lex_skip_space(s, n, i);
    if (i + k > n || memcmp(s + i, word, k) != 0) {
        return 0;
    }
    i = jj_lex_skip_space(s, n, i + k);
    return i;
}

/* Data up to where the tag opener at i starts, with the strip rules. */
static void
jj_lex_data(jj_lexer_t *L, size_t end, char sign, int lstrip)
{
    const char  *s = L->s + L->pos;
    size_t       n = end - L->pos, l, i;
    jj_token_t  *t;

    if (sign == '-') {
        n = jj_lex_rstrip(s, n);
    } else if (sign != '+' && lstrip) {
        for (l = n; l > 0 && s[l - 1] != '\n'; l--) {
        }
        if ((l > 0 || L->line_starting) && l < n) {
            for (i = l; i < n && jj_lex_space(s, n, i) > 0;
                 i += jj_lex_space(s, n, i))
            {
            }
            if (i == n) {
                n = l;
            }
        }
    }
    if (n > 0) {
        t = jj_lex_emit(L, JJ_T_DATA, L->pos);
        t->s = s;
        t->n = (uint32_t) n;
    }
}

/* {% raw %}...{% endraw %}: the text between as data. */
static void
jj_lex_raw(jj_lexer_t *L, size_t open)
{
    const char  *s = L->s;
    size_t       n = L->n, i, k;

    i = jj_lex_raw_begin(L, open, "raw");
    if (i + 1 < n && s[i] == '-' && s[i + 1] == '%' && i + 2 < n
        && s[i + 2] == '}')
    {
        i = jj_lex_skip_space(s, n, i + 3);
    } else {
        i += 2;
    }
    L->pos = i;
    for (k = i; k + 1 < n; k++) {
        size_t  e;
        char    sign;

        if (s[k] != '{' || s[k + 1] != '%') {
            continue;
        }
        e = jj_lex_raw_begin(L, k, "endraw");
        if (e == 0) {
            continue;
        }
        sign = k + 2 < n && (s[k + 2] == '-' || s[k + 2] == '+') ? s[k + 2]
                                                                   : 0;
        if (e + 2 < n && s[e] == '+' && s[e + 1] == '%' && s[e + 2] == '}')
        {
            e += 3;
        } else if (e + 2 < n && s[e] == '-' && s[e + 1] == '%'
                   && s[e + 2] == '}')
        {
            e = jj_lex_skip_space(s, n, e + 3);
        } else if (e + 1 < n && s[e] == '%' && s[e + 1] == '}') {
            e += 2;
            if (e < n && s[e] == '\n') {
                e++;
            }
        } else {
            continue;
        }
        jj_lex_data(L, k, sign, 1);
        L->pos = e;
        L->line_starting = s[e - 1] == '\n';
        return;
    }
    jj_lex_fail(L, open, "Missing end of raw directive");
}

void
jj_lex(jj_ctx_t *c, const char *src, size_t len, jj_tokens_t *out)
{
    jj_lexer_t   L;
    const char  *s = src, *p;
    size_t       i, e;
    char         kind, sign;

    memset(&L, 0, sizeof(L));
    L.c = c;
    L.s = src;
    L.n = len;
    L.line = 1;
    L.col = 1;
    L.line_starting = 1;
    while (L.pos < len) {
        p = NULL;
        for (i = L.pos; i + 1 < len; i++) {
            if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%'
                                || s[i + 1] == '#'))
            {
                p = s + i;
                break;
            }
        }
        if (p == NULL) {
            jj_lex_data(&L, len, 0, 0);
            break;
        }
        kind = s[i + 1];
        sign = i + 2 < len && (s[i + 2] == '-' || s[i + 2] == '+') ? s[i + 2]
                                                                   : 0;
        if (kind == '%') {
            e = jj_lex_raw_begin(&L, i, "raw");
            if (e != 0 && ((e + 1 < len && s[e] == '%' && s[e + 1] == '}')
                           || (e + 2 < len && s[e] == '-' && s[e + 1] == '%'
                               && s[e + 2] == '}')))
            {
                jj_lex_data(&L, i, sign, 1);
                jj_lex_raw(&L, i);
                continue;
            }
        }
        jj_lex_data(&L, i, sign, kind != '{');
        L.pos = i + 2 + (sign != 0);
        L.line_starting = 0;
        if (kind == '#') {
            jj_lex_comment(&L, i);
            continue;
        }
        jj_lex_emit(&L, kind == '%' ? JJ_T_BLOCK_BEGIN : JJ_T_VAR_BEGIN, i);
        jj_lex_tag(&L, kind == '%' ? '%' : '}');
    }
    jj_lex_emit(&L, JJ_T_EOF, len);
    out->v = L.v;
    out->n = L.nt;
}
