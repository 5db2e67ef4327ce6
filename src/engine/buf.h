/*
 * A growable byte buffer: the one the tokenizer, the codecs and the chat
 * renderer build their text and bodies in.  It stays NUL-terminated, and
 * after a failed allocation every append does nothing and reports -1, so a
 * builder can check once at the end.
 */
#ifndef INFER_BUF_H
#define INFER_BUF_H

#include <stddef.h>

typedef struct {
    char    *p;
    size_t   len;
    size_t   cap;
    int      failed;     /* an allocation failed */
} infer_buf_t;

/* Room for `more` bytes (and the NUL) past len: 0, or -1. */
int infer_buf_reserve(infer_buf_t *b, size_t more);
int infer_buf_add(infer_buf_t *b, const void *s, size_t n);
/* A C string; NULL adds nothing. */
int infer_buf_puts(infer_buf_t *b, const char *s);
int infer_buf_printf(infer_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define infer_buf_lit(b, s)  infer_buf_add(b, s, sizeof(s) - 1)
/* A float as JSON: in printf's %.<digits>g form (9 digits give a float32
 * back exactly, 5 a half), null for NaN and infinities, which JSON lacks;
 * some ten times faster than printf, for replies of millions of logits. */
int infer_buf_json_float(infer_buf_t *b, float v, int digits);
/* The text, which the caller then owns (length in *len), or NULL (and the
 * buffer freed) if an allocation failed. */
char *infer_buf_take(infer_buf_t *b, size_t *len);
void infer_buf_free(infer_buf_t *b);

#endif
