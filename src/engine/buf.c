/* Growable byte buffers; see buf.h. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"

int
infer_buf_reserve(infer_buf_t *b, size_t more)
{
    char    *p;
    size_t   cap;

    if (b->failed) {
        return -1;
    }
    if (more < SIZE_MAX / 4 && b->len + more + 1 <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) {
        if (cap > SIZE_MAX / 4 || more > SIZE_MAX / 4) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int
infer_buf_add(infer_buf_t *b, const void *s, size_t n)
{
    if (infer_buf_reserve(b, n) != 0) {
        return -1;
    }
    if (n > 0) {
        memcpy(b->p + b->len, s, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int
infer_buf_puts(infer_buf_t *b, const char *s)
{
    return s != NULL ? infer_buf_add(b, s, strlen(s)) : 0;
}

int
infer_buf_printf(infer_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || infer_buf_reserve(b, (size_t) n) != 0) {
        b->failed = 1;
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t) n;
    return 0;
}

char *
infer_buf_take(infer_buf_t *b, size_t *len)
{
    char  *p;

    if (b->failed || infer_buf_reserve(b, 0) != 0) {
        infer_buf_free(b);
        return NULL;
    }
    p = b->p;
    *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void
infer_buf_free(infer_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Powers of ten as doubles: exact up to 1e22, then within half an ulp. */
static const double  buf_pow10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
    1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24,
    1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31, 1e32, 1e33, 1e34, 1e35, 1e36,
    1e37, 1e38, 1e39, 1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47, 1e48,
    1e49, 1e50, 1e51, 1e52, 1e53, 1e54
};

static double
buf_scale10(double v, int k)
{
    return k >= 0 ? v * buf_pow10[k] : v / buf_pow10[-k];
}

/*
 * A finite float (or half) in printf's %.<digits>g form, some ten times
 * faster than printf (a logits reply has millions of them).  The float is
 * scaled in double to <digits> significant digits: its error, some 1e-16
 * of the value, is far below the half unit of the last digit that makes
 * the rounding, and 9 digits (5 for a half) are finer than half the
 * float's own step, so the text reads back as the same float whichever
 * way a rare near-tie is rounded (exact ties go to even, as in printf).
 * Returns the length written.
 */
static size_t
buf_format_float(char *out, float f, int digits)
{
    char      d[12], *o = out;
    int       e, e2, nd, i;
    double    v = f, scaled, lo, hi;
    uint64_t  n;

    if (signbit(v)) {
        *o++ = '-';
        v = -v;
    }
    if (v == 0) {
        *o++ = '0';
        return o - out;
    }

    /* the decimal exponent: from the binary one, then corrected */
    (void) frexp(v, &e2);
    e = (int) floor((e2 - 1) * 0.30102999566398120);
    lo = buf_pow10[digits - 1] - 0.5;
    hi = buf_pow10[digits] - 0.5;
    scaled = buf_scale10(v, digits - 1 - e);
    if (scaled >= hi) {
        e++;
        scaled = buf_scale10(v, digits - 1 - e);
    } else if (scaled < lo) {
        e--;
        scaled = buf_scale10(v, digits - 1 - e);
    }
    /* to nearest, a tie to even, as printf rounds (ties are exact) */
    n = (uint64_t) scaled;
    scaled -= (double) n;
    n += scaled > 0.5 || (scaled == 0.5 && (n & 1));
    if (n >= (uint64_t) buf_pow10[digits]) {
        n /= 10;
        e++;
    }

    for (i = digits - 1; i >= 0; i--) {
        d[i] = (char) ('0' + n % 10);
        n /= 10;
    }
    for (nd = digits; nd > 1 && d[nd - 1] == '0'; nd--) {
        /* %g drops trailing zeros */
    }

    if (e < -4 || e >= digits) {
        *o++ = d[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, d + 1, nd - 1);
            o += nd - 1;
        }
        *o++ = 'e';
        *o++ = e < 0 ? '-' : '+';
        e = e < 0 ? -e : e;
        if (e >= 10) {
            *o++ = (char) ('0' + e / 10);
        } else {
            *o++ = '0';
        }
        *o++ = (char) ('0' + e % 10);

    } else if (e >= 0) {
        for (i = 0; i <= e; i++) {
            *o++ = i < nd ? d[i] : '0';
        }
        if (nd > e + 1) {
            *o++ = '.';
            memcpy(o, d + e + 1, nd - e - 1);
            o += nd - e - 1;
        }

    } else {
        *o++ = '0';
        *o++ = '.';
        for (i = -1; i > e; i--) {
            *o++ = '0';
        }
        memcpy(o, d, nd);
        o += nd;
    }
    return o - out;
}

/* A float as JSON: 9 significant digits give back the same float32 (and
 * 5 the same half); JSON has no NaN or infinity, so those are null. */
int
infer_buf_json_float(infer_buf_t *b, float v, int digits)
{
    if (!isfinite(v)) {
        return infer_buf_lit(b, "null");
    }
    if (infer_buf_reserve(b, 32) != 0) {
        return -1;
    }
    b->len += buf_format_float(b->p + b->len, v, digits);
    b->p[b->len] = '\0';
    return 0;
}

