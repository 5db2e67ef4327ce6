/*
 * KServe v2 REST codec.  The rules are the Open Inference Protocol's
 * (tensors with a name, a datatype and a shape; data row major, nested or
 * flat in JSON; errors as {"error": message}) and Triton's: the binary
 * tensor data extension (binary_data_size on an input, binary_data on an
 * output, binary_data_output on the request; data after the JSON header,
 * in input order, BYTES elements each a 4-byte length and the bytes) and
 * the generate extension.  Every size a client states is checked against
 * the bytes that are really there before anything is allocated by it.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "buf.h"
#include "grpc.h"
#include "grpc_service.pb-c.h"
#include "infer.h"
#include "kserve.h"

/* A shape with more elements than this is refused before any arithmetic
 * on it could overflow: 2^40 elements are terabytes, which no body holds,
 * and its byte size still fits 64 bits. */
#define KS_MAX_ELEMS   ((uint64_t) 1 << 40)

static const struct {
    const char  *name;
    size_t       size;
} ks_dtypes[] = {
    { "BOOL", 1 }, { "UINT8", 1 }, { "UINT16", 2 }, { "UINT32", 4 },
    { "UINT64", 8 }, { "INT8", 1 }, { "INT16", 2 }, { "INT32", 4 },
    { "INT64", 8 }, { "FP16", 2 }, { "FP32", 4 }, { "FP64", 8 },
    { "BF16", 2 }, { "BYTES", 0 }
};

const char *
infer_ks_dtype_name(infer_ks_dtype_t t)
{
    return (unsigned) t < INFER_KS_NO_DTYPE ? ks_dtypes[t].name : NULL;
}

infer_ks_dtype_t
infer_ks_dtype(const char *name)
{
    int  i;

    for (i = 0; i < INFER_KS_NO_DTYPE; i++) {
        if (strcmp(name, ks_dtypes[i].name) == 0) {
            return (infer_ks_dtype_t) i;
        }
    }
    return INFER_KS_NO_DTYPE;
}

size_t
infer_ks_dtype_size(infer_ks_dtype_t t)
{
    return (unsigned) t < INFER_KS_NO_DTYPE ? ks_dtypes[t].size : 0;
}

static int
ks_is_int(infer_ks_dtype_t t)
{
    return t >= INFER_KS_UINT8 && t <= INFER_KS_INT64;
}

static int
ks_is_signed(infer_ks_dtype_t t)
{
    return t >= INFER_KS_INT8 && t <= INFER_KS_INT64;
}

void
infer_ks_set_error(infer_ks_error_t *err, int status, const char *fmt, ...)
{
    va_list  ap;

    err->status = status;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

#define ks_bad(err, ...)  infer_ks_set_error(err, 400, __VA_ARGS__)

static int
ks_nomem(infer_ks_error_t *err)
{
    infer_ks_set_error(err, 500, "out of memory");
    return -1;
}

/* "[2, 3]" for messages. */
static const char *
ks_shape_str(const int64_t *dims, int n, char *buf, size_t cap)
{
    size_t  o;
    int     i;

    o = (size_t) snprintf(buf, cap, "[");
    for (i = 0; i < n && o < cap; i++) {
        o += (size_t) snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "",
                               (long long) dims[i]);
    }
    if (o < cap) {
        snprintf(buf + o, cap - o, "]");
    }
    return buf;
}

/* ---- output buffer ------------------------------------------------------- */

static int
ks_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/*
 * A JSON string of any bytes.  Text from a client (a BYTES element, a
 * name quoted in a message) or cut at a buffer's end may hold bytes that
 * are not UTF-8, which JSON cannot carry: each becomes U+FFFD, so the
 * document is valid JSON whatever was sent.
 */
static void
ks_put_str(infer_buf_t *b, const char *s, size_t n)
{
    char              esc[8];
    size_t            i, k;
    unsigned char     c;
    utf8proc_int32_t  cp;
    utf8proc_ssize_t  r;

    infer_buf_add(b, "\"", 1);
    for (i = 0; i < n; i += k) {
        c = (unsigned char) s[i];
        if (ks_plain(c)) {
            for (k = 1; i + k < n && ks_plain((unsigned char) s[i + k]);
                 k++)
            {
                /* a run of plain ASCII in one copy */
            }
            infer_buf_add(b, s + i, k);
            continue;
        }
        k = 1;
        if (c < 0x80) {
            switch (c) {
            case '"':  infer_buf_add(b, "\\\"", 2); break;
            case '\\': infer_buf_add(b, "\\\\", 2); break;
            case '\n': infer_buf_add(b, "\\n", 2); break;
            case '\r': infer_buf_add(b, "\\r", 2); break;
            case '\t': infer_buf_add(b, "\\t", 2); break;
            default:
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                infer_buf_add(b, esc, 6);
            }
            continue;
        }
        r = utf8proc_iterate((const utf8proc_uint8_t *) s + i,
                             (utf8proc_ssize_t) (n - i), &cp);
        if (r > 0) {
            k = (size_t) r;
            infer_buf_add(b, s + i, k);
        } else {
            infer_buf_add(b, "\xEF\xBF\xBD", 3);
        }
    }
    infer_buf_add(b, "\"", 1);
}

static void
ks_put_cstr(infer_buf_t *b, const char *s)
{
    ks_put_str(b, s, strlen(s));
}

static char *
ks_done(infer_buf_t *b, size_t *len)
{
    if (b->failed || b->p == NULL) {
        free(b->p);
        return NULL;
    }
    *len = b->len;
    return b->p;
}

/* ---- elements ------------------------------------------------------------ */

static uint64_t
ks_le(const unsigned char *p, size_t size)
{
    uint64_t  v;
    size_t    i;

    v = 0;
    for (i = 0; i < size; i++) {
        v |= (uint64_t) p[i] << (8 * i);
    }
    return v;
}

static void
ks_put_le(unsigned char *p, uint64_t v, size_t size)
{
    size_t  i;

    for (i = 0; i < size; i++) {
        p[i] = (unsigned char) (v >> (8 * i));
    }
}

/* Element i of an integer tensor as a sign and a magnitude, so that every
 * INT64 and UINT64 value compares exactly. */
static void
ks_int_at(const infer_ks_tensor_t *t, size_t i, int *neg, uint64_t *mag)
{
    size_t    size;
    uint64_t  v;

    size = ks_dtypes[t->dtype].size;
    v = ks_le(t->data + i * size, size);
    *neg = 0;
    if (ks_is_signed(t->dtype)) {
        if (size < 8 && (v >> (8 * size - 1)) & 1) {
            v |= ~(uint64_t) 0 << (8 * size);
        }
        if ((int64_t) v < 0) {
            *neg = 1;
            v = (uint64_t) 0 - v;
        }
    }
    *mag = v;
}

static double
ks_float_at(const infer_ks_tensor_t *t, size_t i)
{
    float     f;
    double    d;
    uint32_t  u32;
    uint64_t  u64;

    if (t->dtype == INFER_KS_FP32) {
        u32 = (uint32_t) ks_le(t->data + i * 4, 4);
        memcpy(&f, &u32, 4);
        return f;
    }
    u64 = ks_le(t->data + i * 8, 8);
    memcpy(&d, &u64, 8);
    return d;
}

const unsigned char *
infer_ks_bytes_at(const infer_ks_tensor_t *t, size_t i, size_t *len)
{
    const unsigned char  *p;

    p = t->data + t->offs[i];
    *len = (size_t) ks_le(p, 4);
    return p + 4;
}

/* The elements of a BYTES tensor must fill its bytes exactly. */
static int
ks_index_bytes(infer_ks_tensor_t *t, const char *what,
    infer_ks_error_t *err)
{
    size_t  i, off, len;

    /* every element takes at least its 4-byte length: a count the bytes
     * cannot hold is refused before it sizes the index */
    if (t->n > t->size / 4) {
        ks_bad(err, "%s '%s': %zu bytes of BYTES data cannot hold the %zu "
               "elements of its shape", what, t->name, t->size, t->n);
        return -1;
    }
    t->offs = malloc((t->n ? t->n : 1) * sizeof(size_t));
    if (t->offs == NULL) {
        return ks_nomem(err);
    }
    off = 0;
    for (i = 0; i < t->n; i++) {
        len = t->size - off < 4 ? SIZE_MAX
                                : (size_t) ks_le(t->data + off, 4);
        if (len == SIZE_MAX || len > t->size - off - 4) {
            ks_bad(err, "%s '%s': its BYTES data ends inside element %zu "
                   "of %zu", what, t->name, i, t->n);
            return -1;
        }
        t->offs[i] = off;
        off += 4 + len;
    }
    if (off != t->size) {
        ks_bad(err, "%s '%s': its BYTES data has %zu bytes past its %zu "
               "elements", what, t->name, t->size - off, t->n);
        return -1;
    }
    return 0;
}

static int
ks_check_bools(const infer_ks_tensor_t *t, const char *what,
    infer_ks_error_t *err)
{
    size_t  i;

    for (i = 0; i < t->n; i++) {
        if (t->data[i] > 1) {
            ks_bad(err, "%s '%s': BOOL element %zu is %u, expected 0 or 1",
                   what, t->name, i, t->data[i]);
            return -1;
        }
    }
    return 0;
}

/* ---- JSON data ----------------------------------------------------------- */

/* Two walks over nested arrays: the first counts and sizes, the second
 * writes the binary layout into out. */
typedef struct {
    infer_ks_tensor_t  *t;
    const char         *what;
    size_t              count;
    size_t              pos;
    unsigned char      *out;
    infer_ks_error_t   *err;
} ks_walk_t;

static const char *
ks_json_kind(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:  return "an object";
    case JSON_ARRAY:   return "an array";
    case JSON_STRING:  return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL:    return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:   return "a boolean";
    default:           return "null";
    }
}

static int
ks_int_fits(infer_ks_dtype_t t, json_int_t v)
{
    switch (t) {
    case INFER_KS_UINT8:  return v >= 0 && v <= UINT8_MAX;
    case INFER_KS_UINT16: return v >= 0 && v <= UINT16_MAX;
    case INFER_KS_UINT32: return v >= 0 && v <= (json_int_t) UINT32_MAX;
    case INFER_KS_UINT64: return v >= 0;
    case INFER_KS_INT8:   return v >= INT8_MIN && v <= INT8_MAX;
    case INFER_KS_INT16:  return v >= INT16_MIN && v <= INT16_MAX;
    case INFER_KS_INT32:  return v >= INT32_MIN && v <= INT32_MAX;
    default:              return 1;
    }
}

static int
ks_element(ks_walk_t *w, json_t *v)
{
    float               f;
    double              d;
    size_t              size, len;
    uint32_t            u32;
    uint64_t            u64;
    json_int_t          iv;
    unsigned char      *p;
    const char         *want;
    infer_ks_tensor_t  *t = w->t;

    p = w->out ? w->out + w->pos : NULL;
    size = ks_dtypes[t->dtype].size;

    switch (t->dtype) {
    case INFER_KS_BOOL:
        want = "a boolean";
        if (!json_is_boolean(v)) {
            goto type;
        }
        if (p != NULL) {
            *p = json_is_true(v) ? 1 : 0;
        }
        break;

    case INFER_KS_BYTES:
        want = "a string";
        if (!json_is_string(v)) {
            goto type;
        }
        len = json_string_length(v);
        if (len > UINT32_MAX) {
            ks_bad(w->err, "%s '%s': element %zu is longer than 4 GB",
                   w->what, t->name, w->count);
            return -1;
        }
        if (p != NULL) {
            ks_put_le(p, len, 4);
            memcpy(p + 4, json_string_value(v), len);
        }
        size = 4 + len;
        break;

    case INFER_KS_FP32:
    case INFER_KS_FP64:
        want = "a number";
        if (!json_is_number(v)) {
            goto type;
        }
        d = json_number_value(v);
        if (t->dtype == INFER_KS_FP32) {
            f = (float) d;
            if (!isfinite(f)) {
                ks_bad(w->err, "%s '%s': element %zu (%g) is out of the "
                       "range of FP32", w->what, t->name, w->count, d);
                return -1;
            }
            memcpy(&u32, &f, 4);
            u64 = u32;
        } else {
            memcpy(&u64, &d, 8);
        }
        if (p != NULL) {
            ks_put_le(p, u64, size);
        }
        break;

    default:
        want = "an integer";
        if (!json_is_integer(v)) {
            goto type;
        }
        iv = json_integer_value(v);
        if (!ks_int_fits(t->dtype, iv)) {
            ks_bad(w->err, "%s '%s': element %zu (%lld) is out of the "
                   "range of %s", w->what, t->name, w->count,
                   (long long) iv, ks_dtypes[t->dtype].name);
            return -1;
        }
        if (p != NULL) {
            ks_put_le(p, (uint64_t) iv, size);
        }
    }

    w->pos += size;
    w->count++;
    return 0;

type:

    ks_bad(w->err, "%s '%s': element %zu is %s, expected %s for %s",
           w->what, t->name, w->count, ks_json_kind(v), want,
           ks_dtypes[t->dtype].name);
    return -1;
}

static int
ks_walk(ks_walk_t *w, json_t *v, int depth)
{
    size_t  i;

    if (!json_is_array(v)) {
        if (w->count >= w->t->n) {
            /* stops a long array at once, not after counting it */
            ks_bad(w->err, "%s '%s': its data has more elements than the "
                   "%zu of its shape", w->what, w->t->name, w->t->n);
            return -1;
        }
        return ks_element(w, v);
    }
    if (depth >= INFER_KS_MAX_DIMS) {
        ks_bad(w->err, "%s '%s': its data is nested deeper than %d arrays",
               w->what, w->t->name, INFER_KS_MAX_DIMS);
        return -1;
    }
    for (i = 0; i < json_array_size(v); i++) {
        if (ks_walk(w, json_array_get(v, i), depth + 1) != 0) {
            return -1;
        }
    }
    return 0;
}

/* t->data from JSON data (nested arrays or flat, or one scalar). */
static int
ks_json_data(infer_ks_tensor_t *t, json_t *data, const char *what,
    infer_ks_error_t *err)
{
    ks_walk_t  w;

    if (t->dtype == INFER_KS_FP16 || t->dtype == INFER_KS_BF16) {
        ks_bad(err, "%s '%s': %s data must be binary (binary_data_size), "
               "JSON has no %s numbers", what, t->name,
               ks_dtypes[t->dtype].name, ks_dtypes[t->dtype].name);
        return -1;
    }

    memset(&w, 0, sizeof(w));
    w.t = t;
    w.what = what;
    w.err = err;
    if (ks_walk(&w, data, 0) != 0) {
        return -1;
    }
    if (w.count != t->n) {
        ks_bad(err, "%s '%s': its data has %zu elements, its shape %zu",
               what, t->name, w.count, t->n);
        return -1;
    }

    t->own = malloc(w.pos ? w.pos : 1);
    if (t->own == NULL) {
        return ks_nomem(err);
    }
    t->size = w.pos;
    w.out = t->own;
    w.count = 0;
    w.pos = 0;
    if (ks_walk(&w, data, 0) != 0) {
        return -1;
    }
    t->data = t->own;
    return t->dtype == INFER_KS_BYTES ? ks_index_bytes(t, what, err) : 0;
}

/* ---- the model's inputs -------------------------------------------------- */

typedef enum {
    KS_IDS = 0,                 /* input_ids */
    KS_TEXT_IN,                 /* text_input */
    KS_INT,                     /* an int setting in [min, max] */
    KS_FLOAT,                   /* a float setting in [min, max] */
    KS_SEED,
    KS_END_ID,
    KS_STOP,
    KS_FLAG,                    /* a BOOL setting */
    KS_ONLY_ONE,                /* accepted at 1 only (beam_width) */
    KS_NO_WORDS,                /* accepted empty only (bad_words) */
    KS_OFF                      /* accepted false only (return_*) */
} ks_role_t;

typedef struct {
    const char        *name;
    const char        *alias;
    infer_ks_dtype_t   dtype;   /* in the metadata, and what a parameter
                                   of this name becomes */
    const char        *shape;   /* in the metadata */
    ks_role_t          role;
    size_t             field;   /* in infer_ks_settings_t */
    double             min, max;
} ks_input_t;

#define KS_SET(f)  offsetof(infer_ks_settings_t, f)

/*
 * The inputs of Triton's TensorRT-LLM models under their names, with the
 * settings our engine has; those it has not are accepted at the value that
 * asks for nothing (one beam, no bad words, no extra outputs) and refused
 * otherwise, never ignored.
 */
static const ks_input_t  ks_inputs[] = {
    { "input_ids", NULL, INFER_KS_INT64, "[-1,-1]", KS_IDS, 0, 0, 0 },
    { "text_input", NULL, INFER_KS_BYTES, "[-1,1]", KS_TEXT_IN, 0, 0, 0 },
    { "max_tokens", NULL, INFER_KS_INT32, "[-1,1]", KS_INT,
      KS_SET(max_tokens), 0, INT32_MAX },
    { "min_length", "min_tokens", INFER_KS_INT32, "[-1,1]", KS_INT,
      KS_SET(min_tokens), 0, INT32_MAX },
    { "temperature", NULL, INFER_KS_FP32, "[-1,1]", KS_FLOAT,
      KS_SET(temperature), 0, 1e6 },
    { "top_p", NULL, INFER_KS_FP32, "[-1,1]", KS_FLOAT, KS_SET(top_p),
      0, 1 },
    { "top_k", NULL, INFER_KS_INT32, "[-1,1]", KS_INT, KS_SET(top_k),
      0, INT32_MAX },
    /* Hugging Face's: a divisor of the logits, so 0 is not one */
    { "repetition_penalty", NULL, INFER_KS_FP32, "[-1,1]", KS_FLOAT,
      KS_SET(repetition_penalty), 1e-6, 1e6 },
    { "presence_penalty", NULL, INFER_KS_FP32, "[-1,1]", KS_FLOAT,
      KS_SET(presence_penalty), -1e6, 1e6 },
    { "frequency_penalty", NULL, INFER_KS_FP32, "[-1,1]", KS_FLOAT,
      KS_SET(frequency_penalty), -1e6, 1e6 },
    { "random_seed", "seed", INFER_KS_UINT64, "[-1,1]", KS_SEED, 0, 0, 0 },
    { "end_id", NULL, INFER_KS_INT32, "[-1,1]", KS_END_ID, 0, 0, 0 },
    { "stop_words", "stop", INFER_KS_BYTES, "[-1,-1]", KS_STOP, 0, 0, 0 },
    { "stream", NULL, INFER_KS_BOOL, "[-1,1]", KS_FLAG, KS_SET(stream),
      0, 0 },
    { "exclude_input_in_output", NULL, INFER_KS_BOOL, "[-1,1]", KS_FLAG,
      KS_SET(exclude_input), 0, 0 },
    { "beam_width", NULL, INFER_KS_INT32, "[-1,1]", KS_ONLY_ONE, 0, 0, 0 },
    { "bad_words", NULL, INFER_KS_BYTES, "[-1,-1]", KS_NO_WORDS, 0, 0, 0 },
    { "return_log_probs", NULL, INFER_KS_BOOL, "[-1,1]", KS_OFF, 0, 0, 0 },
    { "return_context_logits", NULL, INFER_KS_BOOL, "[-1,1]", KS_OFF,
      0, 0, 0 },
    { "return_generation_logits", NULL, INFER_KS_BOOL, "[-1,1]", KS_OFF,
      0, 0, 0 }
};

#define KS_N_INPUTS  (int) (sizeof(ks_inputs) / sizeof(ks_inputs[0]))

static int
ks_input_find(const char *name)
{
    int  i;

    for (i = 0; i < KS_N_INPUTS; i++) {
        if (strcmp(name, ks_inputs[i].name) == 0
            || (ks_inputs[i].alias && strcmp(name, ks_inputs[i].alias) == 0))
        {
            return i;
        }
    }
    return -1;
}

static const char *const  ks_output_names[] = { "logits", "text_output" };

/* ---- requests ------------------------------------------------------------ */

static void
ks_tensor_free(infer_ks_tensor_t *t)
{
    free(t->name);
    free(t->own);
    free(t->offs);
}

void
infer_ks_tensors_free(infer_ks_tensors_t *set)
{
    int  i;

    for (i = 0; i < set->n_inputs; i++) {
        ks_tensor_free(&set->inputs[i]);
    }
    for (i = 0; i < set->n_outputs; i++) {
        free(set->outputs[i].name);
    }
    free(set->id);
    if (set->pb != NULL) {
        inference__model_infer_request__free_unpacked(set->pb, NULL);
    }
    memset(set, 0, sizeof(*set));
}

/* A string member that is a name: not empty, no NUL, not too long. */
static const char *
ks_name(json_t *v, const char *what, infer_ks_error_t *err)
{
    size_t  len;

    if (!json_is_string(v)) {
        ks_bad(err, "%s must be a string", what);
        return NULL;
    }
    len = json_string_length(v);
    if (len == 0 || len > INFER_KS_MAX_NAME
        || strlen(json_string_value(v)) != len)
    {
        ks_bad(err, "%s must be 1 to %d characters without NUL", what,
               INFER_KS_MAX_NAME);
        return NULL;
    }
    return json_string_value(v);
}

static infer_ks_tensor_t *
ks_new_tensor(infer_ks_tensors_t *set, const char *name,
    infer_ks_error_t *err)
{
    infer_ks_tensor_t  *t;

    if (set->n_inputs == INFER_KS_MAX_INPUTS) {
        ks_bad(err, "more than %d inputs", INFER_KS_MAX_INPUTS);
        return NULL;
    }
    t = &set->inputs[set->n_inputs];
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    if (t->name == NULL) {
        ks_nomem(err);
        return NULL;
    }
    set->n_inputs++;
    return t;
}

/* Dimension i of input t's shape; *n counts its elements so far. */
static int
ks_dim(infer_ks_tensor_t *t, int i, int64_t dim, uint64_t *n,
    infer_ks_error_t *err)
{
    uint64_t  d;

    if (dim < 0) {
        ks_bad(err, "input '%s': dimension %d of its shape is %lld, "
               "a negative size", t->name, i, (long long) dim);
        return -1;
    }
    t->dims[i] = dim;
    d = (uint64_t) dim;
    if (d > KS_MAX_ELEMS || (d > 0 && *n > KS_MAX_ELEMS / d)) {
        ks_bad(err, "input '%s': dimension %d of its shape (%lld) "
               "makes more elements than a request can hold", t->name, i,
               (long long) dim);
        return -1;
    }
    *n *= d;
    return 0;
}

/* An input tensor of the request, named once. */
static infer_ks_tensor_t *
ks_new_input(infer_ks_tensors_t *set, const char *name,
    infer_ks_error_t *err)
{
    int  i;

    for (i = 0; i < set->n_inputs; i++) {
        if (!set->inputs[i].from_param
            && strcmp(set->inputs[i].name, name) == 0)
        {
            ks_bad(err, "input '%s' appears twice", name);
            return NULL;
        }
    }
    return ks_new_tensor(set, name, err);
}

/* A parameter or generate member made the tensor of the input it names:
 * a scalar is of shape [1], an array of shape [n]. */
static int
ks_value_tensor(infer_ks_tensors_t *set, const ks_input_t *in,
    const char *name, json_t *v, int from_param, infer_ks_error_t *err)
{
    const char         *what;
    infer_ks_tensor_t  *t;

    what = from_param ? "parameter" : "input";
    if (json_is_object(v)) {
        ks_bad(err, "%s '%s' must be a string, number, boolean or array",
               what, name);
        return -1;
    }
    t = ks_new_tensor(set, name, err);
    if (t == NULL) {
        return -1;
    }
    t->dtype = in->dtype;
    t->from_param = from_param;
    t->n_dims = 1;
    t->dims[0] = json_is_array(v) ? (int64_t) json_array_size(v) : 1;
    t->n = (size_t) t->dims[0];
    return ks_json_data(t, v, what, err);
}

/* Request parameters: ours, the settings (made tensors), Triton's
 * sequence_id (refused: there are no sequences); the rest are the
 * model-specific kind a model ignores when it does not know them. */
static int
ks_parse_params(infer_ks_tensors_t *set, json_t *params,
    infer_ks_error_t *err)
{
    int          k;
    json_t      *v;
    const char  *key, *s;

    if (!json_is_object(params)) {
        ks_bad(err, "parameters must be an object");
        return -1;
    }

    json_object_foreach(params, key, v) {
        if (json_is_null(v)) {
            continue;
        }
        if (strcmp(key, "binary_data_output") == 0) {
            if (!json_is_boolean(v)) {
                ks_bad(err, "parameter 'binary_data_output' must be a "
                       "boolean");
                return -1;
            }
            set->binary_output = json_is_true(v);
            continue;
        }
        if (strcmp(key, "logits") == 0) {
            s = json_is_string(v) ? json_string_value(v) : "";
            if (strcmp(s, "last") != 0 && strcmp(s, "all") != 0) {
                ks_bad(err, "parameter 'logits' must be \"last\" or "
                       "\"all\"");
                return -1;
            }
            set->logits_last = strcmp(s, "last") == 0;
            continue;
        }
        if (strcmp(key, "sequence_id") == 0) {
            if ((json_is_integer(v) && json_integer_value(v) != 0)
                || (json_is_string(v) && json_string_length(v) > 0))
            {
                ks_bad(err, "parameter 'sequence_id': sequences are not "
                       "supported");
                return -1;
            }
            continue;
        }
        k = ks_input_find(key);
        if (k >= 2 && ks_value_tensor(set, &ks_inputs[k], key, v, 1, err)
                      != 0)
        {
            return -1;
        }
    }
    return 0;
}

/* One member of "inputs"; *binary and *bds say whether its data follows
 * the JSON header, and how many bytes of it. */
static int
ks_parse_input(infer_ks_tensors_t *set, json_t *in, size_t idx,
    int *binary, size_t *bds, infer_ks_error_t *err)
{
    int                 i;
    char                what[64];
    json_t             *v, *shp, *params, *data;
    uint64_t            n;
    json_int_t          dim;
    const char         *name, *dt;
    infer_ks_tensor_t  *t;

    *binary = 0;
    if (!json_is_object(in)) {
        ks_bad(err, "inputs[%zu] must be an object", idx);
        return -1;
    }
    snprintf(what, sizeof(what), "the name of inputs[%zu]", idx);
    name = ks_name(json_object_get(in, "name"), what, err);
    if (name == NULL) {
        return -1;
    }
    t = ks_new_input(set, name, err);
    if (t == NULL) {
        return -1;
    }

    v = json_object_get(in, "datatype");
    dt = json_is_string(v) ? json_string_value(v) : NULL;
    t->dtype = dt ? infer_ks_dtype(dt) : INFER_KS_NO_DTYPE;
    if (t->dtype == INFER_KS_NO_DTYPE) {
        if (dt == NULL) {
            ks_bad(err, "input '%s' has no datatype", name);
        } else {
            ks_bad(err, "input '%s' has the unknown datatype '%.64s'", name,
                   dt);
        }
        return -1;
    }

    shp = json_object_get(in, "shape");
    if (!json_is_array(shp) || json_array_size(shp) > INFER_KS_MAX_DIMS) {
        ks_bad(err, "input '%s' needs a shape: an array of up to %d "
               "dimensions", name, INFER_KS_MAX_DIMS);
        return -1;
    }
    n = 1;
    t->n_dims = (int) json_array_size(shp);
    for (i = 0; i < t->n_dims; i++) {
        v = json_array_get(shp, i);
        if (!json_is_integer(v)) {
            ks_bad(err, "input '%s': dimension %d of its shape is not an "
                   "integer", name, i);
            return -1;
        }
        dim = json_integer_value(v);
        if (ks_dim(t, i, (int64_t) dim, &n, err) != 0) {
            return -1;
        }
    }
    t->n = (size_t) n;

    params = json_object_get(in, "parameters");
    if (params != NULL && !json_is_null(params)) {
        if (!json_is_object(params)) {
            ks_bad(err, "input '%s': parameters must be an object", name);
            return -1;
        }
        if (json_object_get(params, "shared_memory_region") != NULL) {
            ks_bad(err, "input '%s': shared memory is not supported", name);
            return -1;
        }
        v = json_object_get(params, "binary_data_size");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                ks_bad(err, "input '%s': binary_data_size must be a "
                       "non-negative integer", name);
                return -1;
            }
            *binary = 1;
            *bds = (size_t) json_integer_value(v);
        }
    }

    data = json_object_get(in, "data");
    if (*binary) {
        if (data != NULL) {
            ks_bad(err, "input '%s' has both data and binary_data_size",
                   name);
            return -1;
        }
        return 0;
    }
    if (!json_is_array(data)) {
        ks_bad(err, "input '%s' has no data: give an array, or "
               "binary_data_size and the bytes after the JSON header", name);
        return -1;
    }
    return ks_json_data(t, data, "input", err);
}

/* Checks binary input t's bytes against its shape and datatype. */
static int
ks_binary_input(infer_ks_tensor_t *t, infer_ks_error_t *err)
{
    char    shape[128];
    size_t  want;

    if (t->dtype == INFER_KS_BYTES) {
        return ks_index_bytes(t, "input", err);
    }
    want = t->n * ks_dtypes[t->dtype].size;
    if (t->size != want) {
        ks_bad(err, "input '%s': binary_data_size is %zu, but its shape %s "
               "of %s takes %zu bytes", t->name, t->size,
               ks_shape_str(t->dims, t->n_dims, shape, sizeof(shape)),
               ks_dtypes[t->dtype].name, want);
        return -1;
    }
    return t->dtype == INFER_KS_BOOL ? ks_check_bools(t, "input", err) : 0;
}

static int
ks_parse_outputs(infer_ks_tensors_t *set, json_t *outs,
    infer_ks_error_t *err)
{
    char          what[64];
    size_t        i;
    json_t       *o, *params, *v;
    const char   *name;

    if (!json_is_array(outs) || json_array_size(outs) > INFER_KS_MAX_OUTPUTS)
    {
        ks_bad(err, "outputs must be an array of up to %d",
               INFER_KS_MAX_OUTPUTS);
        return -1;
    }
    for (i = 0; i < json_array_size(outs); i++) {
        o = json_array_get(outs, i);
        if (!json_is_object(o)) {
            ks_bad(err, "outputs[%zu] must be an object", i);
            return -1;
        }
        snprintf(what, sizeof(what), "the name of outputs[%zu]", i);
        name = ks_name(json_object_get(o, "name"), what, err);
        if (name == NULL) {
            return -1;
        }
        set->outputs[i].binary = -1;
        set->outputs[i].name = strdup(name);
        set->n_outputs = (int) i + 1;
        if (set->outputs[i].name == NULL) {
            return ks_nomem(err);
        }
        params = json_object_get(o, "parameters");
        if (params == NULL || json_is_null(params)) {
            continue;
        }
        if (!json_is_object(params)) {
            ks_bad(err, "output '%s': parameters must be an object", name);
            return -1;
        }
        v = json_object_get(params, "binary_data");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_boolean(v)) {
                ks_bad(err, "output '%s': binary_data must be a boolean",
                       name);
                return -1;
            }
            set->outputs[i].binary = json_is_true(v);
        }
        v = json_object_get(params, "classification");
        if (v != NULL && !(json_is_integer(v) && json_integer_value(v) == 0))
        {
            ks_bad(err, "output '%s': classification is not supported",
                   name);
            return -1;
        }
        if (json_object_get(params, "shared_memory_region") != NULL) {
            ks_bad(err, "output '%s': shared memory is not supported",
                   name);
            return -1;
        }
    }
    return 0;
}

static int
ks_parse_id(infer_ks_tensors_t *set, json_t *root, infer_ks_error_t *err)
{
    json_t  *v;

    v = json_object_get(root, "id");
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (ks_name(v, "id", err) == NULL) {
        return -1;
    }
    set->id = strdup(json_string_value(v));
    return set->id ? 0 : ks_nomem(err);
}

/* The request object, its id and its parameters: what /infer and
 * generate bodies share.  NULL (with err, and set empty) when refused. */
static json_t *
ks_open(infer_ks_tensors_t *set, const char *body, size_t len,
    infer_ks_error_t *err)
{
    json_t        *root, *v;
    json_error_t   jerr;

    memset(set, 0, sizeof(*set));
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                      &jerr);
    if (root == NULL) {
        ks_bad(err, "the request is not valid JSON: %s (at byte %d)",
               jerr.text, jerr.position);
        return NULL;
    }
    if (!json_is_object(root)) {
        ks_bad(err, "the request must be a JSON object");
    } else if (ks_parse_id(set, root, err) == 0) {
        v = json_object_get(root, "parameters");
        if (v == NULL || json_is_null(v)
            || ks_parse_params(set, v, err) == 0)
        {
            return root;
        }
    }
    json_decref(root);
    infer_ks_tensors_free(set);
    return NULL;
}

/* Ends a parse: the JSON goes, and a refused set with it. */
static int
ks_close(json_t *root, infer_ks_tensors_t *set, int rc)
{
    json_decref(root);
    if (rc != 0) {
        infer_ks_tensors_free(set);
    }
    return rc;
}

int
infer_ks_header_length(const char *value, size_t len, size_t body_len,
    size_t *out, infer_ks_error_t *err)
{
    size_t  i, v;

    v = 0;
    for (i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9' || v > SIZE_MAX / 10 - 1) {
            break;
        }
        v = v * 10 + (size_t) (value[i] - '0');
    }
    if (len == 0 || i < len) {
        ks_bad(err, "Inference-Header-Content-Length must be a decimal "
               "number of bytes");
        return -1;
    }
    if (v > body_len) {
        ks_bad(err, "Inference-Header-Content-Length is %zu, but the body "
               "has %zu bytes", v, body_len);
        return -1;
    }
    *out = v;
    return 0;
}

int
infer_ks_parse_infer(const char *body, size_t len, size_t header_len,
    infer_ks_tensors_t *set, infer_ks_error_t *err)
{
    int      binary[INFER_KS_MAX_INPUTS], i, first;
    size_t   bds[INFER_KS_MAX_INPUTS], k, off, sum;
    json_t  *root, *v, *inputs;

    memset(set, 0, sizeof(*set));
    if (header_len > len) {
        ks_bad(err, "Inference-Header-Content-Length is %zu, but the body "
               "has %zu bytes", header_len, len);
        return -1;
    }
    root = ks_open(set, body, header_len, err);
    if (root == NULL) {
        return -1;
    }

    inputs = json_object_get(root, "inputs");
    if (!json_is_array(inputs) || json_array_size(inputs) == 0) {
        ks_bad(err, "the request needs inputs: an array of tensors");
        goto failed;
    }
    if (json_array_size(inputs) > INFER_KS_MAX_INPUTS) {
        ks_bad(err, "more than %d inputs", INFER_KS_MAX_INPUTS);
        goto failed;
    }
    first = set->n_inputs;
    for (k = 0; k < json_array_size(inputs); k++) {
        i = set->n_inputs;
        if (i == INFER_KS_MAX_INPUTS) {
            ks_bad(err, "more than %d inputs with the parameters",
                   INFER_KS_MAX_INPUTS);
            goto failed;
        }
        if (ks_parse_input(set, json_array_get(inputs, k), k, &binary[i],
                           &bds[i], err)
            != 0)
        {
            goto failed;
        }
    }

    v = json_object_get(root, "outputs");
    if (v != NULL && !json_is_null(v) && ks_parse_outputs(set, v, err) != 0)
    {
        goto failed;
    }

    /* the binary part holds each binary input's bytes in input order, and
     * nothing else */
    off = header_len;
    sum = 0;
    for (i = first; i < set->n_inputs; i++) {
        if (binary[i]) {
            /* saturating: a sum past any body is refused all the same */
            sum = bds[i] > SIZE_MAX - sum ? SIZE_MAX : sum + bds[i];
        }
    }
    if (sum != len - header_len) {
        ks_bad(err, "the body has %zu bytes after the JSON header, but the "
               "inputs' binary_data_size add up to %zu", len - header_len,
               sum);
        goto failed;
    }
    for (i = first; i < set->n_inputs; i++) {
        if (!binary[i]) {
            continue;
        }
        set->inputs[i].data = (const unsigned char *) body + off;
        set->inputs[i].size = bds[i];
        off += bds[i];
        if (ks_binary_input(&set->inputs[i], err) != 0) {
            goto failed;
        }
    }

    return ks_close(root, set, 0);

failed:

    return ks_close(root, set, -1);
}

int
infer_ks_parse_generate(const char *body, size_t len,
    infer_ks_tensors_t *set, infer_ks_error_t *err)
{
    int          k;
    json_t      *root, *v;
    const char  *key;

    root = ks_open(set, body, len, err);
    if (root == NULL) {
        return -1;
    }

    /* as Triton does, the members that name inputs are those inputs */
    json_object_foreach(root, key, v) {
        if (json_is_null(v) || strcmp(key, "parameters") == 0
            || strcmp(key, "id") == 0)
        {
            continue;
        }
        k = ks_input_find(key);
        if (k >= 0 && ks_value_tensor(set, &ks_inputs[k], key, v, 0, err)
                      != 0)
        {
            goto failed;
        }
    }

    return ks_close(root, set, 0);

failed:

    return ks_close(root, set, -1);
}

/* ---- what the model makes of the tensors --------------------------------- */

void
infer_ks_request_free(infer_ks_request_t *req)
{
    int  i, k;

    free(req->id);
    free(req->ids);
    for (i = 0; req->texts && i < req->n_rows; i++) {
        free(req->texts[i]);
    }
    free(req->texts);
    free(req->text_lens);
    for (i = 0; req->settings && i < req->n_rows; i++) {
        for (k = 0; k < req->settings[i].n_stop; k++) {
            free(req->settings[i].stop[k]);
        }
    }
    free(req->settings);
    memset(req, 0, sizeof(*req));
}

static int
ks_rows(const infer_ks_tensor_t *t, int64_t rows, infer_ks_error_t *err)
{
    if (rows < 1 || rows > INFER_KS_MAX_BATCH) {
        ks_bad(err, "input '%s': a batch of %lld rows, expected 1 to %d",
               t->name, (long long) rows, INFER_KS_MAX_BATCH);
        return -1;
    }
    return 0;
}

static int
ks_score(const infer_ks_tensor_t *t, int vocab, infer_ks_request_t *req,
    infer_ks_error_t *err)
{
    int       neg;
    char      shape[128];
    size_t    i;
    uint64_t  id;

    if (t->dtype != INFER_KS_INT32 && t->dtype != INFER_KS_INT64) {
        ks_bad(err, "input 'input_ids' has the datatype %s, expected INT32 "
               "or INT64", ks_dtypes[t->dtype].name);
        return -1;
    }
    if (t->n_dims != 2 || t->dims[1] < 1 || t->dims[1] > INT_MAX) {
        ks_bad(err, "input 'input_ids' has the shape %s, expected [batch, "
               "sequence] with a sequence of at least one id",
               ks_shape_str(t->dims, t->n_dims, shape, sizeof(shape)));
        return -1;
    }
    if (ks_rows(t, t->dims[0], err) != 0) {
        return -1;
    }
    req->kind = INFER_KS_SCORE;
    req->n_rows = (int) t->dims[0];
    req->seq = (int) t->dims[1];
    req->ids = malloc(t->n * sizeof(int32_t));
    if (req->ids == NULL) {
        return ks_nomem(err);
    }
    for (i = 0; i < t->n; i++) {
        ks_int_at(t, i, &neg, &id);
        if (neg || id >= (uint64_t) vocab) {
            ks_bad(err, "input 'input_ids': the id %s%llu at [%zu, %zu] is "
                   "outside the vocabulary of %d", neg ? "-" : "",
                   (unsigned long long) id, i / req->seq, i % req->seq,
                   vocab);
            return -1;
        }
        req->ids[i] = (int32_t) id;
    }
    return 0;
}

/* Where s stops being UTF-8, or len. */
static size_t
ks_utf8_end(const unsigned char *s, size_t len)
{
    size_t            i;
    utf8proc_int32_t  cp;
    utf8proc_ssize_t  k;

    for (i = 0; i < len; i += (size_t) k) {
        if (s[i] < 0x80) {
            k = 1;
            continue;
        }
        k = utf8proc_iterate(s + i, (utf8proc_ssize_t) (len - i), &cp);
        if (k <= 0) {
            return i;
        }
    }
    return len;
}

static int
ks_text(const infer_ks_tensor_t *t, infer_ks_request_t *req,
    infer_ks_error_t *err)
{
    int                   b;
    char                  shape[128];
    size_t                len, bad;
    const unsigned char  *p;

    if (t->dtype != INFER_KS_BYTES) {
        ks_bad(err, "input 'text_input' has the datatype %s, expected BYTES",
               ks_dtypes[t->dtype].name);
        return -1;
    }
    if (t->n_dims < 1 || t->n_dims > 2
        || (t->n_dims == 2 && t->dims[1] != 1))
    {
        ks_bad(err, "input 'text_input' has the shape %s, expected [batch] "
               "or [batch, 1]",
               ks_shape_str(t->dims, t->n_dims, shape, sizeof(shape)));
        return -1;
    }
    if (ks_rows(t, t->dims[0], err) != 0) {
        return -1;
    }
    req->kind = INFER_KS_TEXT;
    req->n_rows = (int) t->dims[0];
    req->text_rank = t->n_dims;
    req->texts = calloc(req->n_rows, sizeof(char *));
    req->text_lens = calloc(req->n_rows, sizeof(size_t));
    if (req->texts == NULL || req->text_lens == NULL) {
        return ks_nomem(err);
    }
    for (b = 0; b < req->n_rows; b++) {
        p = infer_ks_bytes_at(t, (size_t) b, &len);
        bad = ks_utf8_end(p, len);
        if (bad < len) {
            /* text the tokenizer cannot take, refused as the client's */
            ks_bad(err, "input 'text_input': element %d is not UTF-8 (at "
                   "byte %zu)", b, bad);
            return -1;
        }
        req->texts[b] = malloc(len + 1);
        if (req->texts[b] == NULL) {
            return ks_nomem(err);
        }
        memcpy(req->texts[b], p, len);
        req->texts[b][len] = '\0';
        req->text_lens[b] = len;
    }
    return 0;
}

/* Stop words: a tensor of [batch, k] gives row b its k words, any other
 * shape all of them to every row; empty strings stand for none (as
 * Triton's examples send ""). */
static int
ks_stop_words(const infer_ks_tensor_t *t, const char *what,
    infer_ks_request_t *req, infer_ks_error_t *err)
{
    int                   b, all;
    char                 *s;
    size_t                i, per, first, len;
    const unsigned char  *p;
    infer_ks_settings_t  *st;

    all = !(t->n_dims >= 2 && t->dims[0] == req->n_rows);
    per = all ? t->n : t->n / (size_t) req->n_rows;

    for (b = 0; b < req->n_rows; b++) {
        st = &req->settings[b];
        first = all ? 0 : (size_t) b * per;
        for (i = first; i < first + per; i++) {
            p = infer_ks_bytes_at(t, i, &len);
            if (len == 0) {
                continue;
            }
            if (len > INFER_KS_MAX_STOP_LEN || memchr(p, '\0', len)) {
                ks_bad(err, "%s '%s': element %zu must be at most %d bytes "
                       "without NUL", what, t->name, i,
                       INFER_KS_MAX_STOP_LEN);
                return -1;
            }
            if (st->n_stop == INFER_KS_MAX_STOP) {
                ks_bad(err, "%s '%s': more than %d stop words for a row",
                       what, t->name, INFER_KS_MAX_STOP);
                return -1;
            }
            s = malloc(len + 1);
            if (s == NULL) {
                return ks_nomem(err);
            }
            memcpy(s, p, len);
            s[len] = '\0';
            st->stop[st->n_stop++] = s;
        }
    }
    return 0;
}

/* Gives each row the setting of tensor t (input d). */
static int
ks_setting(const ks_input_t *d, const infer_ks_tensor_t *t, int vocab,
    infer_ks_request_t *req, infer_ks_error_t *err)
{
    int                   b, neg, ok;
    char                 *field;
    double                x;
    size_t                i, len;
    uint64_t              mag;
    const char           *what, *want;
    infer_ks_settings_t  *st;

    what = t->from_param ? "parameter" : "input";
    switch (d->role) {
    case KS_FLOAT:
        ok = t->dtype == INFER_KS_FP32 || t->dtype == INFER_KS_FP64;
        want = "FP32 or FP64";
        break;
    case KS_FLAG:
    case KS_OFF:
        ok = t->dtype == INFER_KS_BOOL;
        want = "BOOL";
        break;
    case KS_STOP:
    case KS_NO_WORDS:
        ok = t->dtype == INFER_KS_BYTES;
        want = "BYTES";
        break;
    default:
        ok = ks_is_int(t->dtype);
        want = "an integer type";
    }
    if (!ok) {
        ks_bad(err, "%s '%s' has the datatype %s, expected %s", what,
               t->name, ks_dtypes[t->dtype].name, want);
        return -1;
    }

    if (d->role == KS_STOP) {
        return ks_stop_words(t, what, req, err);
    }
    if (d->role == KS_NO_WORDS) {
        for (i = 0; i < t->n; i++) {
            if (infer_ks_bytes_at(t, i, &len) && len > 0) {
                ks_bad(err, "%s '%s' is not supported: give no words or "
                       "empty strings", what, t->name);
                return -1;
            }
        }
        return 0;
    }
    if (t->n != 1 && t->n != (size_t) req->n_rows) {
        ks_bad(err, "%s '%s' has %zu elements, expected 1 or one for each "
               "of the %d rows", what, t->name, t->n, req->n_rows);
        return -1;
    }

    for (b = 0; b < req->n_rows; b++) {
        i = t->n == 1 ? 0 : (size_t) b;
        st = &req->settings[b];
        field = (char *) st + d->field;
        mag = 0;
        neg = 0;
        if (ks_is_int(t->dtype)) {
            ks_int_at(t, i, &neg, &mag);
        }

        switch (d->role) {
        case KS_INT:
            if (neg || mag > (uint64_t) d->max) {
                ks_bad(err, "%s '%s' is %s%llu, out of the range [%.0f, "
                       "%.0f]", what, t->name, neg ? "-" : "",
                       (unsigned long long) mag, d->min, d->max);
                return -1;
            }
            *(int *) (void *) field = (int) mag;
            break;
        case KS_FLOAT:
            x = ks_float_at(t, i);
            if (!(x >= d->min && x <= d->max)) {
                ks_bad(err, "%s '%s' is %g, out of the range [%g, %g]",
                       what, t->name, x, d->min, d->max);
                return -1;
            }
            *(float *) (void *) field = (float) x;
            break;
        case KS_SEED:
            if (neg) {
                ks_bad(err, "%s '%s' is negative", what, t->name);
                return -1;
            }
            st->seed = mag;
            st->has_seed = 1;
            break;
        case KS_END_ID:
            if (neg || mag >= (uint64_t) vocab) {
                ks_bad(err, "%s '%s' is %s%llu, outside the vocabulary of "
                       "%d", what, t->name, neg ? "-" : "",
                       (unsigned long long) mag, vocab);
                return -1;
            }
            st->end_id = (int32_t) mag;
            break;
        case KS_FLAG:
            *(int *) (void *) field = t->data[i] != 0;
            break;
        case KS_ONLY_ONE:
            if (neg || mag != 1) {
                ks_bad(err, "%s '%s' is %s%llu: only 1 is supported (one "
                       "sequence a row, no beam search)", what, t->name,
                       neg ? "-" : "", (unsigned long long) mag);
                return -1;
            }
            break;
        default:
            if (t->data[i] != 0) {
                ks_bad(err, "%s '%s' is not supported: only false", what,
                       t->name);
                return -1;
            }
        }
    }
    return 0;
}

static void
ks_defaults(infer_ks_settings_t *st)
{
    memset(st, 0, sizeof(*st));
    st->max_tokens = -1;
    st->temperature = 1.0f;
    st->top_p = 1.0f;
    st->repetition_penalty = 1.0f;
    st->end_id = -1;
    st->exclude_input = 1;
}

/* The outputs to send: those asked for, or the request's kind's one. */
static int
ks_outputs(const infer_ks_tensors_t *set, infer_ks_request_t *req,
    infer_ks_error_t *err)
{
    int             i, k, o;
    infer_ks_out_t  mine;

    mine = req->kind == INFER_KS_SCORE ? INFER_KS_OUT_LOGITS
                                       : INFER_KS_OUT_TEXT;
    if (set->n_outputs == 0) {
        req->outputs[0] = mine;
        req->binary[0] = set->binary_output;
        req->n_outputs = 1;
        return 0;
    }
    for (i = 0; i < set->n_outputs; i++) {
        for (o = INFER_KS_OUT_LOGITS; o <= INFER_KS_OUT_TEXT; o++) {
            if (strcmp(set->outputs[i].name, ks_output_names[o]) == 0) {
                break;
            }
        }
        if (o > INFER_KS_OUT_TEXT) {
            ks_bad(err, "unknown output '%s': the model's outputs are "
                   "logits and text_output", set->outputs[i].name);
            return -1;
        }
        if (o != (int) mine) {
            ks_bad(err, "output '%s' comes from %s; this request gives %s",
                   ks_output_names[o], o == INFER_KS_OUT_LOGITS
                   ? "input_ids" : "text_input", ks_output_names[mine]);
            return -1;
        }
        for (k = 0; k < req->n_outputs; k++) {
            if ((int) req->outputs[k] == o) {
                ks_bad(err, "output '%s' is asked for twice",
                       ks_output_names[o]);
                return -1;
            }
        }
        req->outputs[req->n_outputs] = (infer_ks_out_t) o;
        req->binary[req->n_outputs] = set->outputs[i].binary >= 0
                                      ? set->outputs[i].binary
                                      : set->binary_output;
        req->n_outputs++;
    }
    return 0;
}

int
infer_ks_interpret(infer_ks_tensors_t *set, int vocab, int generate,
    infer_ks_request_t *req, infer_ks_error_t *err)
{
    int                       i, k, b;
    const infer_ks_tensor_t  *by[KS_N_INPUTS], *t;

    memset(req, 0, sizeof(*req));
    memset(by, 0, sizeof(by));

    for (i = 0; i < set->n_inputs; i++) {
        t = &set->inputs[i];
        k = ks_input_find(t->name);
        if (k < 0) {
            ks_bad(err, "unknown input '%s': the model takes input_ids "
                   "(to score) or text_input (to continue) and the "
                   "settings its metadata lists", t->name);
            return -1;
        }
        if (by[k] == NULL || (by[k]->from_param && !t->from_param)) {
            by[k] = t;      /* an input tensor wins over a parameter */
        } else if (by[k]->from_param == t->from_param) {
            ks_bad(err, "input '%s' is given twice (as '%s' and '%s')",
                   ks_inputs[k].name, by[k]->name, t->name);
            return -1;
        }
    }

    if (by[KS_IDS] != NULL && by[KS_TEXT_IN] != NULL) {
        ks_bad(err, "give input_ids (to score) or text_input (to "
               "continue), not both");
        return -1;
    }
    if (generate && by[KS_TEXT_IN] == NULL) {
        ks_bad(err, "the request needs text_input: a string");
        return -1;
    }
    if (by[KS_IDS] == NULL && by[KS_TEXT_IN] == NULL) {
        ks_bad(err, "the request needs input_ids (to score) or text_input "
               "(to continue)");
        return -1;
    }

    if (by[KS_IDS] != NULL) {
        if (ks_score(by[KS_IDS], vocab, req, err) != 0) {
            goto failed;
        }
        for (k = KS_TEXT_IN + 1; k < KS_N_INPUTS; k++) {
            if (by[k] != NULL) {
                ks_bad(err, "%s '%s' is for text_input: input_ids are "
                       "scored, not continued",
                       by[k]->from_param ? "parameter" : "input",
                       by[k]->name);
                goto failed;
            }
        }
        req->logits_last = set->logits_last;

    } else {
        if (ks_text(by[KS_TEXT_IN], req, err) != 0) {
            goto failed;
        }
        if (generate && req->n_rows != 1) {
            ks_bad(err, "text_input must be one string");
            goto failed;
        }
        if (set->logits_last) {
            ks_bad(err, "parameter 'logits' is for input_ids");
            goto failed;
        }
        req->settings = malloc(req->n_rows * sizeof(infer_ks_settings_t));
        if (req->settings == NULL) {
            ks_nomem(err);
            goto failed;
        }
        for (b = 0; b < req->n_rows; b++) {
            ks_defaults(&req->settings[b]);
        }
        for (k = KS_TEXT_IN + 1; k < KS_N_INPUTS; k++) {
            if (by[k] != NULL
                && ks_setting(&ks_inputs[k], by[k], vocab, req, err) != 0)
            {
                goto failed;
            }
        }
        for (b = 0; b < req->n_rows; b++) {
            if (req->settings[b].max_tokens >= 0
                && req->settings[b].min_tokens
                   > req->settings[b].max_tokens)
            {
                ks_bad(err, "min_length %d is more than max_tokens %d",
                       req->settings[b].min_tokens,
                       req->settings[b].max_tokens);
                goto failed;
            }
            if (req->settings[b].top_p == 0.0f) {
                /* TensorRT-LLM's "off", as 1 is ours */
                req->settings[b].top_p = 1.0f;
            }
        }
    }

    if (!generate && ks_outputs(set, req, err) != 0) {
        goto failed;
    }
    req->id = set->id;
    set->id = NULL;
    return 0;

failed:

    infer_ks_request_free(req);
    return -1;
}

/* ---- responses ----------------------------------------------------------- */

static void
ks_put_shape(infer_buf_t *b, const int64_t *dims, int n)
{
    int  i;

    infer_buf_add(b, "[", 1);
    for (i = 0; i < n; i++) {
        infer_buf_printf(b, "%s%lld", i ? "," : "", (long long) dims[i]);
    }
    infer_buf_add(b, "]", 1);
}

static size_t
ks_output_bytes(const infer_ks_output_t *o)
{
    int     i;
    size_t  n;

    n = 0;
    for (i = 0; i < o->n_pieces; i++) {
        n += o->pieces[i].len + (o->dtype == INFER_KS_BYTES ? 4 : 0);
    }
    return n;
}

static void
ks_put_json_data(infer_buf_t *b, const infer_ks_output_t *o)
{
    int                   i, first;
    float                 f;
    size_t                j;
    const unsigned char  *p;

    infer_buf_add(b, "[", 1);
    first = 1;
    for (i = 0; i < o->n_pieces; i++) {
        p = o->pieces[i].p;
        if (o->dtype == INFER_KS_BYTES) {
            if (!first) {
                infer_buf_add(b, ",", 1);
            }
            ks_put_str(b, (const char *) p, o->pieces[i].len);
            first = 0;
            continue;
        }
        if (infer_buf_reserve(b, o->pieces[i].len / 4 * 17) != 0) {
            return;
        }
        for (j = 0; j + 4 <= o->pieces[i].len; j += 4) {
            if (!first) {
                infer_buf_add(b, ",", 1);
            }
            memcpy(&f, p + j, 4);
            infer_buf_json_float(b, f, 9);
            first = 0;
        }
    }
    infer_buf_add(b, "]", 1);
}

char *
infer_ks_infer_body(const char *model, const char *version,
    const char *id, const infer_ks_output_t *outs, int n, size_t *len,
    size_t *header_len)
{
    int                      i, k, binary;
    infer_buf_t                 b;
    unsigned char            pre[4];
    const infer_ks_output_t *o;

    memset(&b, 0, sizeof(b));
    infer_buf_puts(&b, "{\"model_name\":");
    ks_put_cstr(&b, model);
    infer_buf_puts(&b, ",\"model_version\":");
    ks_put_cstr(&b, version);
    if (id != NULL) {
        infer_buf_puts(&b, ",\"id\":");
        ks_put_cstr(&b, id);
    }
    infer_buf_puts(&b, ",\"outputs\":[");
    binary = 0;
    for (i = 0; i < n; i++) {
        o = &outs[i];
        infer_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        ks_put_cstr(&b, o->name);
        infer_buf_puts(&b, ",\"datatype\":");
        ks_put_cstr(&b, ks_dtypes[o->dtype].name);
        infer_buf_puts(&b, ",\"shape\":");
        ks_put_shape(&b, o->dims, o->n_dims);
        if (o->binary) {
            binary = 1;
            infer_buf_printf(&b, ",\"parameters\":{\"binary_data_size\":%zu}}",
                      ks_output_bytes(o));
        } else {
            infer_buf_puts(&b, ",\"data\":");
            ks_put_json_data(&b, o);
            infer_buf_puts(&b, "}");
        }
    }
    infer_buf_puts(&b, "]}");

    *header_len = binary ? b.len : 0;
    for (i = 0; i < n; i++) {
        o = &outs[i];
        for (k = 0; o->binary && k < o->n_pieces; k++) {
            if (o->dtype == INFER_KS_BYTES) {
                ks_put_le(pre, o->pieces[k].len, 4);
                infer_buf_add(&b, pre, 4);
            }
            infer_buf_add(&b, o->pieces[k].p, o->pieces[k].len);
        }
    }
    return ks_done(&b, len);
}

static void
ks_generate_object(infer_buf_t *b, const char *model, const char *version,
    const char *text, size_t text_len, const char *finish)
{
    infer_buf_puts(b, "{\"model_name\":");
    ks_put_cstr(b, model);
    infer_buf_puts(b, ",\"model_version\":");
    ks_put_cstr(b, version);
    infer_buf_puts(b, ",\"text_output\":");
    ks_put_str(b, text, text_len);
    if (finish != NULL) {
        infer_buf_puts(b, ",\"finish_reason\":");
        ks_put_cstr(b, finish);
    }
    infer_buf_puts(b, "}");
}

char *
infer_ks_generate_body(const char *model, const char *version,
    const char *text, size_t text_len, const char *finish, size_t *len)
{
    infer_buf_t  b;

    memset(&b, 0, sizeof(b));
    ks_generate_object(&b, model, version, text, text_len, finish);
    return ks_done(&b, len);
}

char *
infer_ks_generate_event(const char *model, const char *version,
    const char *text, size_t text_len, const char *finish, size_t *len)
{
    infer_buf_t  b;

    memset(&b, 0, sizeof(b));
    infer_buf_puts(&b, "data: ");
    ks_generate_object(&b, model, version, text, text_len, finish);
    infer_buf_puts(&b, "\n\n");
    return ks_done(&b, len);
}

static char *
ks_error(const infer_ks_error_t *err, int event, size_t *len)
{
    infer_buf_t  b;

    memset(&b, 0, sizeof(b));
    infer_buf_puts(&b, event ? "data: {\"error\":" : "{\"error\":");
    ks_put_str(&b, err->message, strnlen(err->message,
                                         sizeof(err->message)));
    infer_buf_puts(&b, event ? "}\n\n" : "}");
    return ks_done(&b, len);
}

char *
infer_ks_error_body(const infer_ks_error_t *err, size_t *len)
{
    return ks_error(err, 0, len);
}

char *
infer_ks_error_event(const infer_ks_error_t *err, size_t *len)
{
    return ks_error(err, 1, len);
}

char *
infer_ks_server_metadata(const char *version, size_t *len)
{
    infer_buf_t  b;

    memset(&b, 0, sizeof(b));
    infer_buf_puts(&b, "{\"name\":\"ngx_http_infer_module\",\"version\":");
    ks_put_cstr(&b, version);
    infer_buf_puts(&b, ",\"extensions\":[\"binary_tensor_data\",\"parameters\","
            "\"generate\"]}");
    return ks_done(&b, len);
}

char *
infer_ks_model_metadata(const char *model, const char *version, int vocab,
    size_t *len)
{
    int       i;
    infer_buf_t  b;

    memset(&b, 0, sizeof(b));
    infer_buf_puts(&b, "{\"name\":");
    ks_put_cstr(&b, model);
    infer_buf_puts(&b, ",\"versions\":[");
    ks_put_cstr(&b, version);
    infer_buf_puts(&b, "],\"platform\":\"ngx_http_infer\",\"inputs\":[");
    for (i = 0; i < KS_N_INPUTS; i++) {
        infer_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        ks_put_cstr(&b, ks_inputs[i].name);
        infer_buf_puts(&b, ",\"datatype\":");
        ks_put_cstr(&b, ks_dtypes[ks_inputs[i].dtype].name);
        infer_buf_puts(&b, ",\"shape\":");
        infer_buf_puts(&b, ks_inputs[i].shape);
        infer_buf_puts(&b, "}");
    }
    infer_buf_puts(&b, "],\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\","
            "\"shape\":[-1,-1,");
    infer_buf_printf(&b, "%d]},", vocab);
    infer_buf_puts(&b, "{\"name\":\"text_output\",\"datatype\":\"BYTES\","
            "\"shape\":[-1,1]}]}");
    return ks_done(&b, len);
}

const char *
infer_ks_finish_reason(int finish)
{
    switch (finish) {
    case INFER_FINISH_STOP:   return "stop";
    case INFER_FINISH_LENGTH: return "length";
    default:                  return NULL;
    }
}

/* ---- routes -------------------------------------------------------------- */

/* Whether [p, end) starts with the segment s (followed by '/' or end). */
static int
ks_segment(const char **p, const char *end, const char *s)
{
    size_t  n;

    n = strlen(s);
    if ((size_t) (end - *p) < n || memcmp(*p, s, n) != 0
        || (*p + n < end && (*p)[n] != '/'))
    {
        return 0;
    }
    *p += n;
    return 1;
}

/* Whether [p, end) is s. */
static int
ks_tail(const char *p, const char *end, const char *s)
{
    return (size_t) (end - p) == strlen(s) && memcmp(p, s, end - p) == 0;
}

/* The next path segment after a '/': [*s, *s + *n). */
static int
ks_name_segment(const char **p, const char *end, const char **s, size_t *n)
{
    const char  *q;

    if (*p >= end || **p != '/') {
        return 0;
    }
    q = *p + 1;
    while (q < end && *q != '/') {
        q++;
    }
    if (q == *p + 1) {
        return 0;
    }
    *s = *p + 1;
    *n = (size_t) (q - *s);
    *p = q;
    return 1;
}

void
infer_ks_route(const char *path, size_t len, infer_ks_route_t *route)
{
    const char  *p, *end, *rest;

    memset(route, 0, sizeof(*route));
    end = path + len;

    /* the first "/v2" segment */
    rest = NULL;
    for (p = path; p < end; p++) {
        rest = p;
        if (*p == '/' && ks_segment(&rest, end, "/v2")) {
            break;
        }
    }
    if (p >= end) {
        return;
    }
    p = rest;

    if (p == end || ks_tail(p, end, "/")) {
        route->kind = INFER_KS_ROUTE_SERVER;
        return;
    }
    if (ks_tail(p, end, "/health/live")) {
        route->kind = INFER_KS_ROUTE_LIVE;
        return;
    }
    if (ks_tail(p, end, "/health/ready")) {
        route->kind = INFER_KS_ROUTE_READY;
        return;
    }
    if (!ks_segment(&p, end, "/models")
        || !ks_name_segment(&p, end, &route->model, &route->model_len))
    {
        route->model = NULL;
        return;
    }
    rest = p;
    if (ks_segment(&rest, end, "/versions")) {
        p = rest;
        if (!ks_name_segment(&p, end, &route->version,
                             &route->version_len))
        {
            route->model = NULL;
            route->version = NULL;
            return;
        }
    }

    if (p == end) {
        route->kind = INFER_KS_ROUTE_MODEL;
    } else if (ks_tail(p, end, "/ready")) {
        route->kind = INFER_KS_ROUTE_MODEL_READY;
    } else if (ks_tail(p, end, "/infer")) {
        route->kind = INFER_KS_ROUTE_INFER;
    } else if (ks_tail(p, end, "/generate")) {
        route->kind = INFER_KS_ROUTE_GENERATE;
    } else if (ks_tail(p, end, "/generate_stream")) {
        route->kind = INFER_KS_ROUTE_GENERATE_STREAM;
    } else {
        route->model = NULL;
        route->version = NULL;
    }
}

/* ---- protobuf: inference.GRPCInferenceService ---------------------------- */

#define KS_PB_PARAM(c)  INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_##c

typedef Inference__ModelInferRequest__InferInputTensor  ks_pb_input_t;

/* A parameter as the JSON value ks_parse_params reads. */
static json_t *
ks_pb_value(const Inference__InferParameter *p, const char *key,
    infer_ks_error_t *err)
{
    json_t  *v;

    switch (p ? p->parameter_choice_case : 0) {
    case KS_PB_PARAM(BOOL_PARAM):
        return json_boolean(p->bool_param);
    case KS_PB_PARAM(INT64_PARAM):
        return json_integer(p->int64_param);
    case KS_PB_PARAM(UINT64_PARAM):
        if (p->uint64_param > INT64_MAX) {
            ks_bad(err, "parameter '%s' is %llu, beyond what any "
                   "parameter takes", key,
                   (unsigned long long) p->uint64_param);
            return NULL;
        }
        return json_integer((json_int_t) p->uint64_param);
    case KS_PB_PARAM(DOUBLE_PARAM):
        v = json_real(p->double_param);
        if (v == NULL) {
            ks_bad(err, "parameter '%s' is not a finite number", key);
        }
        return v;
    case KS_PB_PARAM(STRING_PARAM):
        v = json_string(p->string_param);
        if (v == NULL) {
            ks_bad(err, "parameter '%s' is not UTF-8", key);
        }
        return v;
    default:
        /* unset: as a JSON null, nothing */
        return json_null();
    }
}

static int
ks_pb_params(infer_ks_tensors_t *set,
    Inference__ModelInferRequest__ParametersEntry **e, size_t n,
    infer_ks_error_t *err)
{
    int      rc;
    size_t   i;
    json_t  *obj, *v;

    obj = json_object();
    if (obj == NULL) {
        return ks_nomem(err);
    }
    for (i = 0; i < n; i++) {
        v = ks_pb_value(e[i]->value, e[i]->key, err);
        if (v == NULL) {
            json_decref(obj);
            return -1;
        }
        if (json_object_set_new(obj, e[i]->key, v) != 0) {
            json_decref(obj);
            ks_bad(err, "a parameter name is not UTF-8");
            return -1;
        }
    }
    rc = ks_parse_params(set, obj, err);
    json_decref(obj);
    return rc;
}

/*
 * Typed contents in the binary layout: the list of the tensor's datatype
 * (INT8/16/32 in int_contents, UINT8/16/32 in uint_contents, ...) with
 * exactly its shape's elements, each in its datatype's range; FP16 and
 * BF16 have no list.
 */
static int
ks_pb_contents(infer_ks_tensor_t *t, const Inference__InferTensorContents *c,
    infer_ks_error_t *err)
{
    int             neg;
    size_t          i, have, all, size;
    double          d;
    uint64_t        mag, lim;
    unsigned char  *p;

    switch (t->dtype) {
    case INFER_KS_BOOL:   have = c->n_bool_contents; break;
    case INFER_KS_INT8:
    case INFER_KS_INT16:
    case INFER_KS_INT32:  have = c->n_int_contents; break;
    case INFER_KS_INT64:  have = c->n_int64_contents; break;
    case INFER_KS_UINT8:
    case INFER_KS_UINT16:
    case INFER_KS_UINT32: have = c->n_uint_contents; break;
    case INFER_KS_UINT64: have = c->n_uint64_contents; break;
    case INFER_KS_FP32:   have = c->n_fp32_contents; break;
    case INFER_KS_FP64:   have = c->n_fp64_contents; break;
    case INFER_KS_BYTES:  have = c->n_bytes_contents; break;
    default:
        ks_bad(err, "input '%s' is %s, which has no contents list: send it "
               "in raw_input_contents", t->name, ks_dtypes[t->dtype].name);
        return -1;
    }
    all = c->n_bool_contents + c->n_int_contents + c->n_int64_contents
          + c->n_uint_contents + c->n_uint64_contents + c->n_fp32_contents
          + c->n_fp64_contents + c->n_bytes_contents;
    if (all != have) {
        ks_bad(err, "input '%s' is %s, but its contents are in another "
               "type's list", t->name, ks_dtypes[t->dtype].name);
        return -1;
    }
    if (have != t->n) {
        ks_bad(err, "input '%s': %zu values for a shape of %zu elements",
               t->name, have, t->n);
        return -1;
    }

    size = ks_dtypes[t->dtype].size;
    if (t->dtype == INFER_KS_BYTES) {
        size = 0;
        for (i = 0; i < t->n; i++) {
            if (c->bytes_contents[i].len > UINT32_MAX) {
                ks_bad(err, "input '%s': element %zu is longer than 4 GB",
                       t->name, i);
                return -1;
            }
            size += 4 + c->bytes_contents[i].len;
        }
    } else {
        size *= t->n;
    }
    t->own = malloc(size ? size : 1);
    if (t->own == NULL) {
        return ks_nomem(err);
    }
    t->data = t->own;
    t->size = size;

    p = t->own;
    size = ks_dtypes[t->dtype].size;
    for (i = 0; i < t->n; i++) {
        switch (t->dtype) {
        case INFER_KS_BOOL:
            *p++ = c->bool_contents[i] ? 1 : 0;
            continue;
        case INFER_KS_BYTES:
            ks_put_le(p, c->bytes_contents[i].len, 4);
            if (c->bytes_contents[i].len > 0) {
                memcpy(p + 4, c->bytes_contents[i].data,
                       c->bytes_contents[i].len);
            }
            p += 4 + c->bytes_contents[i].len;
            continue;
        case INFER_KS_FP32:
            memcpy(p, &c->fp32_contents[i], 4);
            p += 4;
            continue;
        case INFER_KS_FP64:
            d = c->fp64_contents[i];
            memcpy(p, &d, 8);
            p += 8;
            continue;
        default:
            break;
        }
        /* integers: a sign and a magnitude against the type's range */
        neg = 0;
        if (t->dtype == INFER_KS_INT64 || ks_is_signed(t->dtype)) {
            int64_t  s = t->dtype == INFER_KS_INT64 ? c->int64_contents[i]
                                                    : c->int_contents[i];
            neg = s < 0;
            mag = neg ? (uint64_t) 0 - (uint64_t) s : (uint64_t) s;
            lim = ((uint64_t) 1 << (8 * size - 1)) - (neg ? 0 : 1);
        } else {
            mag = t->dtype == INFER_KS_UINT64 ? c->uint64_contents[i]
                                              : c->uint_contents[i];
            lim = size == 8 ? UINT64_MAX : ((uint64_t) 1 << (8 * size)) - 1;
        }
        if (mag > lim) {
            ks_bad(err, "input '%s': element %zu is outside the range of "
                   "%s", t->name, i, ks_dtypes[t->dtype].name);
            return -1;
        }
        ks_put_le(p, neg ? (uint64_t) 0 - mag : mag, size);
        p += size;
    }
    return t->dtype == INFER_KS_BYTES ? ks_index_bytes(t, "input", err) : 0;
}

static int
ks_pb_input(infer_ks_tensors_t *set, const ks_pb_input_t *in,
    const ProtobufCBinaryData *raw, size_t idx, infer_ks_error_t *err)
{
    int                 i;
    size_t              k, len;
    uint64_t            n;
    infer_ks_tensor_t  *t;

    len = strlen(in->name);
    if (len == 0 || len > INFER_KS_MAX_NAME) {
        ks_bad(err, "the name of inputs[%zu] must be 1 to %d characters",
               idx, INFER_KS_MAX_NAME);
        return -1;
    }
    t = ks_new_input(set, in->name, err);
    if (t == NULL) {
        return -1;
    }
    t->dtype = infer_ks_dtype(in->datatype);
    if (t->dtype == INFER_KS_NO_DTYPE) {
        ks_bad(err, "input '%s' has the unknown datatype '%.64s'", t->name,
               in->datatype);
        return -1;
    }
    if (in->n_shape > INFER_KS_MAX_DIMS) {
        ks_bad(err, "input '%s' needs a shape of up to %d dimensions",
               t->name, INFER_KS_MAX_DIMS);
        return -1;
    }
    n = 1;
    t->n_dims = (int) in->n_shape;
    for (i = 0; i < t->n_dims; i++) {
        if (ks_dim(t, i, in->shape[i], &n, err) != 0) {
            return -1;
        }
    }
    t->n = (size_t) n;

    for (k = 0; k < in->n_parameters; k++) {
        if (strcmp(in->parameters[k]->key, "shared_memory_region") == 0) {
            ks_bad(err, "input '%s': shared memory is not supported",
                   t->name);
            return -1;
        }
    }

    if (raw != NULL) {
        if (in->contents != NULL) {
            ks_bad(err, "input '%s' has contents and raw_input_contents; "
                   "give one", t->name);
            return -1;
        }
        t->data = raw->data;
        t->size = raw->len;
        return ks_binary_input(t, err);
    }
    if (in->contents == NULL) {
        ks_bad(err, "input '%s' has no data: give its contents or "
               "raw_input_contents", t->name);
        return -1;
    }
    return ks_pb_contents(t, in->contents, err);
}

int
infer_ks_parse_pb(const unsigned char *msg, size_t len,
    infer_ks_tensors_t *set, infer_ks_error_t *err)
{
    size_t                                           i, k;
    Inference__ModelInferRequest                    *m;
    Inference__ModelInferRequest__InferRequestedOutputTensor  *o;

    memset(set, 0, sizeof(*set));
    m = inference__model_infer_request__unpack(NULL, len, msg);
    if (m == NULL) {
        ks_bad(err, "malformed protobuf: the message is not a "
               "ModelInferRequest");
        return -1;
    }
    set->pb = m;
    set->model = m->model_name;
    set->version = m->model_version;

    if (m->id[0] != '\0') {
        if (strlen(m->id) > INFER_KS_MAX_NAME) {
            ks_bad(err, "id must be up to %d characters", INFER_KS_MAX_NAME);
            goto failed;
        }
        set->id = strdup(m->id);
        if (set->id == NULL) {
            ks_nomem(err);
            goto failed;
        }
    }
    if (m->n_parameters > 0
        && ks_pb_params(set, m->parameters, m->n_parameters, err) != 0)
    {
        goto failed;
    }

    if (m->n_raw_input_contents > 0 && m->n_raw_input_contents != m->n_inputs)
    {
        ks_bad(err, "%zu raw_input_contents for %zu inputs: give one per "
               "input, or none", m->n_raw_input_contents, m->n_inputs);
        goto failed;
    }
    for (i = 0; i < m->n_inputs; i++) {
        if (ks_pb_input(set, m->inputs[i], m->n_raw_input_contents
                                           ? &m->raw_input_contents[i]
                                           : NULL, i, err)
            != 0)
        {
            goto failed;
        }
    }

    if (m->n_outputs > INFER_KS_MAX_OUTPUTS) {
        ks_bad(err, "more than %d outputs asked for", INFER_KS_MAX_OUTPUTS);
        goto failed;
    }
    for (i = 0; i < m->n_outputs; i++) {
        o = m->outputs[i];
        if (o->name[0] == '\0' || strlen(o->name) > INFER_KS_MAX_NAME) {
            ks_bad(err, "the name of outputs[%zu] must be 1 to %d "
                   "characters", i, INFER_KS_MAX_NAME);
            goto failed;
        }
        for (k = 0; k < o->n_parameters; k++) {
            if (strcmp(o->parameters[k]->key, "shared_memory_region") == 0
                || strcmp(o->parameters[k]->key, "classification") == 0)
            {
                ks_bad(err, "output '%s': %s is not supported", o->name,
                       o->parameters[k]->key);
                goto failed;
            }
        }
        set->outputs[i].name = strdup(o->name);
        set->outputs[i].binary = 1;
        set->n_outputs = (int) i + 1;
        if (set->outputs[i].name == NULL) {
            ks_nomem(err);
            goto failed;
        }
    }
    /* every output travels as raw_output_contents */
    set->binary_output = 1;
    return 0;

failed:

    infer_ks_tensors_free(set);
    return -1;
}

int
infer_ks_pb_model_ref(const unsigned char *msg, size_t len, char **name,
    char **version)
{
    Inference__ModelReadyRequest  *m;

    /* ModelMetadataRequest is the same two strings */
    m = inference__model_ready_request__unpack(NULL, len, msg);
    if (m == NULL) {
        return -1;
    }
    *name = strdup(m->name);
    *version = strdup(m->version);
    inference__model_ready_request__free_unpacked(m, NULL);
    if (*name == NULL || *version == NULL) {
        free(*name);
        free(*version);
        return -1;
    }
    return 0;
}

unsigned char *
infer_ks_pb_infer_body(const char *model, const char *version,
    const char *id, const infer_ks_output_t *outs, int n, int final,
    int stream, size_t *len)
{
    int                                         i, k;
    size_t                                      size;
    unsigned char                              *p, *q;
    const infer_ks_output_t                    *o;
    Inference__InferParameter                   fin;
    Inference__ModelInferResponse               rsp;
    Inference__ModelStreamInferResponse         srsp;
    ProtobufCBinaryData                         raw[INFER_KS_MAX_OUTPUTS];
    Inference__ModelInferResponse__ParametersEntry  fin_e, *fin_ep;
    Inference__ModelInferResponse__InferOutputTensor  ot[INFER_KS_MAX_OUTPUTS];
    Inference__ModelInferResponse__InferOutputTensor *otp[INFER_KS_MAX_OUTPUTS];

    if (n > INFER_KS_MAX_OUTPUTS) {
        return NULL;
    }
    inference__model_infer_response__init(&rsp);
    rsp.model_name = (char *) model;
    rsp.model_version = (char *) version;
    rsp.id = (char *) (id ? id : "");

    p = NULL;
    for (i = 0; i < n; i++) {
        o = &outs[i];
        inference__model_infer_response__infer_output_tensor__init(&ot[i]);
        ot[i].name = (char *) o->name;
        ot[i].datatype = (char *) ks_dtypes[o->dtype].name;
        ot[i].n_shape = o->n_dims;
        ot[i].shape = (int64_t *) o->dims;
        otp[i] = &ot[i];

        size = ks_output_bytes(o);
        raw[i].data = malloc(size ? size : 1);
        raw[i].len = size;
        if (raw[i].data == NULL) {
            n = i;
            goto done;
        }
        q = raw[i].data;
        for (k = 0; k < o->n_pieces; k++) {
            if (o->dtype == INFER_KS_BYTES) {
                ks_put_le(q, o->pieces[k].len, 4);
                q += 4;
            }
            if (o->pieces[k].len > 0) {
                memcpy(q, o->pieces[k].p, o->pieces[k].len);
                q += o->pieces[k].len;
            }
        }
    }
    rsp.n_outputs = n;
    rsp.outputs = otp;
    rsp.n_raw_output_contents = n;
    rsp.raw_output_contents = raw;

    if (final >= 0) {
        inference__infer_parameter__init(&fin);
        fin.parameter_choice_case = KS_PB_PARAM(BOOL_PARAM);
        fin.bool_param = final != 0;
        inference__model_infer_response__parameters_entry__init(&fin_e);
        fin_e.key = "triton_final_response";
        fin_e.value = &fin;
        fin_ep = &fin_e;
        rsp.n_parameters = 1;
        rsp.parameters = &fin_ep;
    }

    if (stream) {
        inference__model_stream_infer_response__init(&srsp);
        srsp.infer_response = &rsp;
        p = infer_grpc_pack(&srsp.base, len);
    } else {
        p = infer_grpc_pack(&rsp.base, len);
    }

done:

    for (i = 0; i < n; i++) {
        free(raw[i].data);
    }
    return p;
}

unsigned char *
infer_ks_pb_stream_error(const char *message, size_t *len)
{
    Inference__ModelStreamInferResponse  rsp;

    inference__model_stream_infer_response__init(&rsp);
    rsp.error_message = (char *) message;
    return infer_grpc_pack(&rsp.base, len);
}

unsigned char *
infer_ks_pb_flag(int live, int ready, size_t *len)
{
    Inference__ServerLiveResponse   l;
    Inference__ServerReadyResponse  r;

    if (live) {
        inference__server_live_response__init(&l);
        l.live = 1;
        return infer_grpc_pack(&l.base, len);
    }
    /* ModelReadyResponse is the same one bool */
    inference__server_ready_response__init(&r);
    r.ready = ready != 0;
    return infer_grpc_pack(&r.base, len);
}

unsigned char *
infer_ks_pb_server_metadata(const char *version, size_t *len)
{
    char                             *ext[] = { "parameters" };
    Inference__ServerMetadataResponse  rsp;

    inference__server_metadata_response__init(&rsp);
    rsp.name = "ngx_http_infer_module";
    rsp.version = (char *) version;
    rsp.n_extensions = 1;
    rsp.extensions = ext;
    return infer_grpc_pack(&rsp.base, len);
}

/* "[-1,1]" of the inputs table as dimensions. */
static size_t
ks_pb_shape(const char *s, int64_t *dims, size_t cap)
{
    char    *end;
    size_t   n;

    n = 0;
    while (*s != '\0' && *s != ']' && n < cap) {
        dims[n++] = strtoll(s + 1, &end, 10);
        s = end;
    }
    return n;
}

unsigned char *
infer_ks_pb_model_metadata(const char *model, const char *version,
    int vocab, size_t *len)
{
    int                                              i;
    char                                            *versions[1];
    int64_t                                          dims[KS_N_INPUTS + 2][4];
    Inference__ModelMetadataResponse                 rsp;
    Inference__ModelMetadataResponse__TensorMetadata tm[KS_N_INPUTS + 2];
    Inference__ModelMetadataResponse__TensorMetadata *in[KS_N_INPUTS];
    Inference__ModelMetadataResponse__TensorMetadata *out[2];

    inference__model_metadata_response__init(&rsp);
    versions[0] = (char *) version;
    rsp.name = (char *) model;
    rsp.n_versions = 1;
    rsp.versions = versions;
    rsp.platform = "ngx_http_infer";

    for (i = 0; i < KS_N_INPUTS; i++) {
        inference__model_metadata_response__tensor_metadata__init(&tm[i]);
        tm[i].name = (char *) ks_inputs[i].name;
        tm[i].datatype = (char *) ks_dtypes[ks_inputs[i].dtype].name;
        tm[i].shape = dims[i];
        tm[i].n_shape = ks_pb_shape(ks_inputs[i].shape, dims[i], 4);
        in[i] = &tm[i];
    }
    /* the outputs of infer_ks_model_metadata */
    for (i = KS_N_INPUTS; i < KS_N_INPUTS + 2; i++) {
        inference__model_metadata_response__tensor_metadata__init(&tm[i]);
        tm[i].shape = dims[i];
        out[i - KS_N_INPUTS] = &tm[i];
    }
    tm[KS_N_INPUTS].name = (char *) ks_output_names[INFER_KS_OUT_LOGITS];
    tm[KS_N_INPUTS].datatype = "FP32";
    dims[KS_N_INPUTS][0] = -1;
    dims[KS_N_INPUTS][1] = -1;
    dims[KS_N_INPUTS][2] = vocab;
    tm[KS_N_INPUTS].n_shape = 3;
    tm[KS_N_INPUTS + 1].name = (char *) ks_output_names[INFER_KS_OUT_TEXT];
    tm[KS_N_INPUTS + 1].datatype = "BYTES";
    dims[KS_N_INPUTS + 1][0] = -1;
    dims[KS_N_INPUTS + 1][1] = 1;
    tm[KS_N_INPUTS + 1].n_shape = 2;

    rsp.n_inputs = KS_N_INPUTS;
    rsp.inputs = in;
    rsp.n_outputs = 2;
    rsp.outputs = out;
    return infer_grpc_pack(&rsp.base, len);
}
