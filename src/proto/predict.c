/*
 * The /predict codec (predict.h): three request decoders, four reply
 * encoders, content negotiation and the errors.
 *
 * Everything a client sends is bounded by what it sent: jansson and
 * protobuf-c allocate in proportion to the bytes they read, and
 * MessagePack bodies are walked first (pred_msgpack_check) because
 * msgpack-c allocates an array's or a map's elements from the count in
 * its header, before reading them: five bytes could ask for gigabytes.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <msgpack.h>

#include "buf.h"
#include "grpc_service.pb-c.h"
#include "infer.h"
#include "model.h"
#include "predict.h"

/* The binary encodings are little-endian and take the host's floats and
 * ints as they are. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "predict.c writes host numbers as little-endian bytes"
#endif

#define PRED_QUOTE  48          /* bytes of a client's string in messages */

#define PRED_PARAM(kind)  INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_##kind

void
infer_pred_set_error(infer_pred_error_t *err, int status, const char *fmt,
    ...)
{
    va_list  ap;

    err->status = status;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

/* A client's bytes fit for a message: printable ASCII, others as '?',
 * cut at PRED_QUOTE. */
static const char *
pred_quote(char *buf, const char *s, size_t len)
{
    size_t  i, n;

    n = len < PRED_QUOTE ? len : PRED_QUOTE;
    for (i = 0; i < n; i++) {
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    }
    if (len > n) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- content negotiation ------------------------------------------------ */

#define PRED_WILDCARD  (-2)

/* One media type, without parameters or spaces around it. */
static int
pred_media(const char *s, size_t n)
{
    static const struct {
        const char  *name;
        int          format;
    } types[] = {
        { "application/json", INFER_PRED_JSON },
        /* what curl -d sends unless told: read as JSON */
        { "application/x-www-form-urlencoded", INFER_PRED_JSON },
        { "application/msgpack", INFER_PRED_MSGPACK },
        { "application/x-msgpack", INFER_PRED_MSGPACK },
        { "application/vnd.msgpack", INFER_PRED_MSGPACK },
        { "application/x-protobuf", INFER_PRED_PROTOBUF },
        { "application/protobuf", INFER_PRED_PROTOBUF },
        { "*/*", PRED_WILDCARD },
        { "application/*", PRED_WILDCARD }
    };
    size_t  i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strlen(types[i].name) == n
            && strncasecmp(types[i].name, s, n) == 0)
        {
            return types[i].format;
        }
    }
    return -1;
}

/* Splits "type/sub ; q=0.5" into the type (trimmed) and its q value. */
static int
pred_media_range(const char *s, size_t n, double *q)
{
    const char  *p, *end = s + n, *semi;
    char         num[16];
    size_t       k;

    *q = 1.0;
    while (s < end && (*s == ' ' || *s == '\t')) {
        s++;
    }
    semi = memchr(s, ';', end - s);
    p = semi ? semi : end;
    while (p > s && (p[-1] == ' ' || p[-1] == '\t')) {
        p--;
    }

    /* parameters: only q matters */
    while (semi != NULL) {
        const char  *a = semi + 1, *b;

        semi = memchr(a, ';', end - a);
        b = semi ? semi : end;
        while (a < b && (*a == ' ' || *a == '\t')) {
            a++;
        }
        if (b - a > 2 && (a[0] == 'q' || a[0] == 'Q') && a[1] == '=') {
            k = (size_t) (b - a - 2) < sizeof(num) - 1
                ? (size_t) (b - a - 2) : sizeof(num) - 1;
            memcpy(num, a + 2, k);
            num[k] = '\0';
            *q = strtod(num, NULL);
        }
    }
    return pred_media(s, p - s);
}

int
infer_pred_content_format(const char *type, size_t len)
{
    double  q;
    int     f;

    if (type == NULL || len == 0) {
        return INFER_PRED_JSON;
    }
    f = pred_media_range(type, len, &q);
    return f >= 0 ? f : -1;
}

int
infer_pred_accept_format(const char *accept, size_t len,
    infer_pred_format_t request)
{
    const char  *p, *end, *comma;
    double       q, best_q = 0;
    int          f, best = -1, best_wild = 0;

    if (accept == NULL || len == 0) {
        return request;
    }
    for (p = accept, end = accept + len; p < end; p = comma + 1) {
        comma = memchr(p, ',', end - p);
        if (comma == NULL) {
            comma = end;
        }
        f = pred_media_range(p, comma - p, &q);
        if (f == -1 || !(q > 0)) {
            continue;
        }
        /* the highest q wins; at the same q the first named type, and a
         * named type before a wildcard */
        if (best == -1 || q > best_q
            || (q == best_q && best_wild && f != PRED_WILDCARD))
        {
            best_wild = f == PRED_WILDCARD;
            best = best_wild ? (int) request : f;
            best_q = q;
        }
    }
    return best;
}

const char *
infer_pred_content_type(infer_pred_format_t f)
{
    switch (f) {
    case INFER_PRED_MSGPACK:
        return "application/msgpack";
    case INFER_PRED_PROTOBUF:
        return "application/x-protobuf";
    default:
        return "application/json";
    }
}

/* ---- what every decoder fills ------------------------------------------ */

/* Which fields a body named, for the checks common to the formats. */
typedef struct {
    unsigned  input:1;
    unsigned  text:1;
    unsigned  output:1;
    unsigned  top_k:1;
    unsigned  encoding:1;
    unsigned  dtype:1;
    unsigned  model:1;
    unsigned  lengths:1;
} pred_seen_t;

static int
pred_alloc_rows(infer_pred_request_t *req, size_t n, int text,
    infer_pred_error_t *err)
{
    if (n == 0) {
        infer_pred_set_error(err, 400, "the batch is empty: give at least "
                             "one row");
        return -1;
    }
    if (n > INFER_PRED_MAX_ROWS) {
        infer_pred_set_error(err, 400, "a batch of %zu rows is more than "
                             "the %d one request may hold", n,
                             INFER_PRED_MAX_ROWS);
        return -1;
    }
    req->ids = calloc(n, sizeof(int32_t *));
    req->n_ids = calloc(n, sizeof(int));
    if (text) {
        req->texts = calloc(n, sizeof(char *));
        req->text_lens = calloc(n, sizeof(size_t));
    }
    if (req->ids == NULL || req->n_ids == NULL
        || (text && (req->texts == NULL || req->text_lens == NULL)))
    {
        infer_pred_set_error(err, 500, "out of memory");
        return -1;
    }
    req->n_rows = (int) n;
    return 0;
}

static int
pred_set_text(infer_pred_request_t *req, int i, const char *s, size_t len,
    infer_pred_error_t *err)
{
    req->texts[i] = malloc(len + 1);
    if (req->texts[i] == NULL) {
        infer_pred_set_error(err, 500, "out of memory");
        return -1;
    }
    if (len > 0) {
        /* an empty string may have no bytes at all (NULL) */
        memcpy(req->texts[i], s, len);
    }
    req->texts[i][len] = '\0';
    req->text_lens[i] = len;
    return 0;
}

static int
pred_set_model(infer_pred_request_t *req, const char *s, size_t len,
    infer_pred_error_t *err)
{
    char  q[PRED_QUOTE + 4];

    if (len == 0 || memchr(s, '\0', len) != NULL) {
        infer_pred_set_error(err, 400, "\"model\" must name a model, not "
                             "\"%s\"", pred_quote(q, s, len));
        return -1;
    }
    req->model = strndup(s, len);
    if (req->model == NULL) {
        infer_pred_set_error(err, 500, "out of memory");
        return -1;
    }
    return 0;
}

/* The string options, by their names in the request. */
static int
pred_set_option(infer_pred_request_t *req, const char *key, const char *s,
    size_t len, infer_pred_error_t *err)
{
    char  q[PRED_QUOTE + 4];

#define pred_is(lit)  (len == sizeof(lit) - 1 && memcmp(s, lit, len) == 0)

    if (strcmp(key, "output") == 0) {
        if (pred_is("all")) {
            req->output = INFER_PRED_ALL;
        } else if (pred_is("last")) {
            req->output = INFER_PRED_LAST;
        } else if (pred_is("logprobs")) {
            req->output = INFER_PRED_LOGPROBS;
        } else {
            goto bad;
        }
        return 0;
    }
    if (strcmp(key, "encoding") == 0) {
        if (pred_is("numbers") || pred_is("json")) {
            req->base64 = 0;
        } else if (pred_is("base64")) {
            req->base64 = 1;
        } else {
            goto bad;
        }
        return 0;
    }
    if (strcmp(key, "dtype") == 0) {
        if (pred_is("float32")) {
            req->f16 = 0;
        } else if (pred_is("float16")) {
            req->f16 = 1;
        } else {
            goto bad;
        }
        return 0;
    }

#undef pred_is

bad:
    infer_pred_set_error(err, 400, "\"%s\" cannot be \"%s\": %s", key,
                         pred_quote(q, s, len),
                         strcmp(key, "output") == 0
                         ? "use \"all\", \"last\" or \"logprobs\""
                         : strcmp(key, "encoding") == 0
                         ? "use \"numbers\" or \"base64\""
                         : "use \"float32\" or \"float16\"");
    return -1;
}

static int
pred_set_top_k(infer_pred_request_t *req, int64_t k, infer_pred_error_t *err)
{
    if (k < 0 || k > INFER_MAX_TOP_LOGPROBS) {
        infer_pred_set_error(err, 400, "\"top_k\" must be from 0 to %d, "
                             "not %lld", INFER_MAX_TOP_LOGPROBS,
                             (long long) k);
        return -1;
    }
    req->top_k = (int) k;
    return 0;
}

/* What no format allows, whatever its syntax. */
static int
pred_check_request(infer_pred_request_t *req, const pred_seen_t *seen,
    infer_pred_error_t *err)
{
    const char  *in = req->format == INFER_PRED_PROTOBUF ? "input tensor"
                                                         : "field";

    if (!seen->input && !seen->text) {
        infer_pred_set_error(err, 400, "the request has no %s \"%s\" (token "
                             "id rows) nor \"%s\"", in,
                             req->format == INFER_PRED_PROTOBUF
                             ? "input_ids" : "input",
                             req->format == INFER_PRED_PROTOBUF
                             ? "text_input" : "text");
        return -1;
    }
    if (seen->input && seen->text) {
        infer_pred_set_error(err, 400, "give token ids or text, not both");
        return -1;
    }
    if (seen->top_k && req->output != INFER_PRED_LOGPROBS) {
        infer_pred_set_error(err, 400, "\"top_k\" goes with \"output\": "
                             "\"logprobs\"");
        return -1;
    }
    if (seen->dtype && req->output == INFER_PRED_LOGPROBS) {
        infer_pred_set_error(err, 400, "\"dtype\" is the logits' type; "
                             "logprobs are float32");
        return -1;
    }
    if (req->base64 && req->reply != INFER_PRED_JSON) {
        infer_pred_set_error(err, 400, "\"encoding\": \"base64\" is for JSON "
                             "replies; a %s reply is binary already",
                             req->reply == INFER_PRED_MSGPACK ? "MessagePack"
                                                              : "protobuf");
        return -1;
    }
    if (req->base64 && req->output == INFER_PRED_LOGPROBS) {
        infer_pred_set_error(err, 400, "\"encoding\": \"base64\" is for "
                             "logits; logprobs come as numbers");
        return -1;
    }
    return 0;
}

/* ---- JSON ---------------------------------------------------------------- */

static int
pred_json_input(infer_pred_request_t *req, json_t *v, infer_pred_error_t *err)
{
    size_t      i, k, n;
    json_t     *row, *id;
    json_int_t  x;

    if (!json_is_array(v) || json_array_size(v) == 0
        || !json_is_array(json_array_get(v, 0)))
    {
        infer_pred_set_error(err, 400, "\"input\" must be a list of token id "
                             "lists, as [[1, 2, 3]]");
        return -1;
    }
    if (pred_alloc_rows(req, json_array_size(v), 0, err) != 0) {
        return -1;
    }

    json_array_foreach(v, i, row) {
        if (!json_is_array(row)) {
            infer_pred_set_error(err, 400, "input[%zu] is not a list of "
                                 "token ids", i);
            return -1;
        }
        n = json_array_size(row);
        req->ids[i] = malloc((n ? n : 1) * sizeof(int32_t));
        if (req->ids[i] == NULL) {
            infer_pred_set_error(err, 500, "out of memory");
            return -1;
        }
        json_array_foreach(row, k, id) {
            x = json_is_integer(id) ? json_integer_value(id) : -1;
            if (x < 0 || x > INT32_MAX) {
                infer_pred_set_error(err, 400, "input[%zu][%zu] is not a "
                                     "token id (an integer from 0)", i, k);
                return -1;
            }
            req->ids[i][k] = (int32_t) x;
        }
        req->n_ids[i] = (int) n;
    }
    return 0;
}

static int
pred_json_text(infer_pred_request_t *req, json_t *v, infer_pred_error_t *err)
{
    size_t   i;
    json_t  *s;

    if (json_is_string(v)) {
        return pred_alloc_rows(req, 1, 1, err) != 0
               ? -1 : pred_set_text(req, 0, json_string_value(v),
                                    json_string_length(v), err);
    }
    if (!json_is_array(v)) {
        goto bad;
    }
    if (pred_alloc_rows(req, json_array_size(v), 1, err) != 0) {
        return -1;
    }
    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) {
            goto bad;
        }
        if (pred_set_text(req, (int) i, json_string_value(s),
                          json_string_length(s), err)
            != 0)
        {
            return -1;
        }
    }
    return 0;

bad:
    infer_pred_set_error(err, 400, "\"text\" must be a string or a list of "
                         "strings");
    return -1;
}

static int
pred_parse_json(const char *body, size_t len, infer_pred_request_t *req,
    infer_pred_error_t *err)
{
    int           rc;
    char          q[PRED_QUOTE + 4];
    json_t       *root, *v;
    const char   *key;
    pred_seen_t   seen;
    json_error_t  jerr;

    memset(&seen, 0, sizeof(seen));
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        infer_pred_set_error(err, 400, "malformed JSON at line %d, column "
                             "%d: %s", jerr.line, jerr.column,
                             pred_quote(q, jerr.text, strlen(jerr.text)));
        return -1;
    }
    if (!json_is_object(root)) {
        infer_pred_set_error(err, 400, "the body must be a JSON object, as "
                             "{\"input\": [[1, 2, 3]]}");
        json_decref(root);
        return -1;
    }

    rc = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "input") == 0 || strcmp(key, "text") == 0) {
            if (seen.input || seen.text) {
                /* both: pred_check_request says so */
                seen.input = seen.text = 1;
                break;
            }
            if (key[0] == 'i') {
                seen.input = 1;
                rc = pred_json_input(req, v, err);
            } else {
                seen.text = 1;
                rc = pred_json_text(req, v, err);
            }

        } else if (strcmp(key, "output") == 0
                   || strcmp(key, "encoding") == 0
                   || strcmp(key, "dtype") == 0)
        {
            if (!json_is_string(v)) {
                infer_pred_set_error(err, 400, "\"%s\" must be a string",
                                     key);
                rc = -1;
            } else {
                rc = pred_set_option(req, key, json_string_value(v),
                                     json_string_length(v), err);
            }
            seen.dtype |= strcmp(key, "dtype") == 0;

        } else if (strcmp(key, "top_k") == 0) {
            seen.top_k = 1;
            if (!json_is_integer(v)) {
                infer_pred_set_error(err, 400, "\"top_k\" must be an "
                                     "integer");
                rc = -1;
            } else {
                rc = pred_set_top_k(req, json_integer_value(v), err);
            }

        } else if (strcmp(key, "model") == 0) {
            if (!json_is_string(v)) {
                infer_pred_set_error(err, 400, "\"model\" must be a string");
                rc = -1;
            } else {
                rc = pred_set_model(req, json_string_value(v),
                                    json_string_length(v), err);
            }

        } else {
            infer_pred_set_error(err, 400, "unknown field \"%s\" (known: "
                                 "input, text, output, top_k, encoding, "
                                 "dtype, model)",
                                 pred_quote(q, key, strlen(key)));
            rc = -1;
        }
        if (rc != 0) {
            break;
        }
    }
    json_decref(root);

    return rc != 0 ? -1 : pred_check_request(req, &seen, err);
}

/* ---- MessagePack -------------------------------------------------------- */

static uint64_t
pred_be(const unsigned char *p, int n)
{
    uint64_t  v = 0;
    int       i;

    for (i = 0; i < n; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/*
 * Walks one MessagePack object over all of p[0..len) without building it:
 * every header is complete, every string, binary and extension fits, no
 * container announces more elements than bytes are left for them (each
 * takes one at least), and nothing follows the object.  Past this check
 * msgpack-c allocates less than its object size per byte of the body.
 */
static int
pred_msgpack_check(const unsigned char *p, size_t len, infer_pred_error_t *err)
{
    size_t         pos = 0, pending = 1, left;
    uint64_t       n, count;
    unsigned char  b;
    int            width;
    const char    *why;

    while (pending > 0) {
        why = "the body ends inside an object";
        if (pos >= len) {
            goto bad;
        }
        b = p[pos++];
        pending--;
        n = 0;          /* payload bytes */
        count = 0;      /* objects inside */
        width = 0;      /* bytes of a length or count */

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b >= 0x80 && b <= 0x8f) {
            count = 2 * (uint64_t) (b & 0x0f);
        } else if (b >= 0x90 && b <= 0x9f) {
            count = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            n = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4: case 0xd9: width = 1; break;     /* bin8, str8 */
            case 0xc5: case 0xda: width = 2; break;
            case 0xc6: case 0xdb: width = 4; break;
            case 0xc7: width = 1; n = 1; break;         /* ext8: + type */
            case 0xc8: width = 2; n = 1; break;
            case 0xc9: width = 4; n = 1; break;
            case 0xca: n = 4; break;                    /* float32 */
            case 0xcb: n = 8; break;
            case 0xcc: case 0xd0: n = 1; break;
            case 0xcd: case 0xd1: n = 2; break;
            case 0xce: case 0xd2: n = 4; break;
            case 0xcf: case 0xd3: n = 8; break;
            case 0xd4: n = 2; break;                    /* fixext: type */
            case 0xd5: n = 3; break;
            case 0xd6: n = 5; break;
            case 0xd7: n = 9; break;
            case 0xd8: n = 17; break;
            case 0xdc: case 0xde: width = 2; break;     /* array, map */
            case 0xdd: case 0xdf: width = 4; break;
            default:
                why = "a byte that starts no MessagePack object (0xc1)";
                goto bad;
            }
            if (width > 0) {
                if (len - pos < (size_t) width) {
                    goto bad;
                }
                count = pred_be(p + pos, width);
                pos += width;
                if (b >= 0xdc) {
                    count *= (b == 0xde || b == 0xdf) ? 2 : 1;
                } else {
                    n += count;
                    count = 0;
                }
            }
        }

        left = len - pos;
        if (n > left) {
            goto bad;
        }
        pos += n;
        if (count > left - n || pending + count > left - n) {
            why = "a container announces more elements than the body holds";
            goto bad;
        }
        pending += count;
    }

    if (pos != len) {
        infer_pred_set_error(err, 400, "malformed MessagePack: %zu bytes "
                             "after the request's map", len - pos);
        return -1;
    }
    return 0;

bad:
    infer_pred_set_error(err, 400, "malformed MessagePack at byte %zu: %s",
                         pos, why);
    return -1;
}

static int
pred_mp_int(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *v = o->via.u64 > INT64_MAX ? INT64_MAX : (int64_t) o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    return -1;
}

static int
pred_mp_input(infer_pred_request_t *req, const msgpack_object *v,
    infer_pred_error_t *err)
{
    uint32_t               i, k;
    int64_t                x;
    const msgpack_object  *row;

    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size == 0
        || v->via.array.ptr[0].type != MSGPACK_OBJECT_ARRAY)
    {
        infer_pred_set_error(err, 400, "\"input\" must be an array of token "
                             "id arrays, as [[1, 2, 3]]");
        return -1;
    }
    if (pred_alloc_rows(req, v->via.array.size, 0, err) != 0) {
        return -1;
    }
    for (i = 0; i < v->via.array.size; i++) {
        row = &v->via.array.ptr[i];
        if (row->type != MSGPACK_OBJECT_ARRAY) {
            infer_pred_set_error(err, 400, "input[%u] is not an array of "
                                 "token ids", i);
            return -1;
        }
        req->ids[i] = malloc((row->via.array.size ? row->via.array.size : 1)
                             * sizeof(int32_t));
        if (req->ids[i] == NULL) {
            infer_pred_set_error(err, 500, "out of memory");
            return -1;
        }
        for (k = 0; k < row->via.array.size; k++) {
            if (pred_mp_int(&row->via.array.ptr[k], &x) != 0
                || x < 0 || x > INT32_MAX)
            {
                infer_pred_set_error(err, 400, "input[%u][%u] is not a "
                                     "token id (an integer from 0)", i, k);
                return -1;
            }
            req->ids[i][k] = (int32_t) x;
        }
        req->n_ids[i] = (int) row->via.array.size;
    }
    return 0;
}

static int
pred_mp_text(infer_pred_request_t *req, const msgpack_object *v,
    infer_pred_error_t *err)
{
    uint32_t               i;
    const msgpack_object  *s;

    if (v->type == MSGPACK_OBJECT_STR) {
        return pred_alloc_rows(req, 1, 1, err) != 0
               ? -1 : pred_set_text(req, 0, v->via.str.ptr,
                                    v->via.str.size, err);
    }
    if (v->type != MSGPACK_OBJECT_ARRAY) {
        goto bad;
    }
    if (pred_alloc_rows(req, v->via.array.size, 1, err) != 0) {
        return -1;
    }
    for (i = 0; i < v->via.array.size; i++) {
        s = &v->via.array.ptr[i];
        if (s->type != MSGPACK_OBJECT_STR) {
            goto bad;
        }
        if (pred_set_text(req, (int) i, s->via.str.ptr, s->via.str.size, err)
            != 0)
        {
            return -1;
        }
    }
    return 0;

bad:
    infer_pred_set_error(err, 400, "\"text\" must be a string or an array of "
                         "strings");
    return -1;
}

static int
pred_parse_msgpack(const char *body, size_t len, infer_pred_request_t *req,
    infer_pred_error_t *err)
{
    int                      rc;
    char                     key[16], q[PRED_QUOTE + 4];
    size_t                   off;
    int64_t                  x;
    uint32_t                 i;
    unsigned                 bit, seen_bits;
    pred_seen_t              seen;
    msgpack_unpacked         u;
    const msgpack_object    *root, *k, *v;
    msgpack_unpack_return    urc;

    static const char *const  names[] = {
        "input", "text", "output", "top_k", "encoding", "dtype", "model"
    };

    if (pred_msgpack_check((const unsigned char *) body, len, err) != 0) {
        return -1;
    }

    memset(&seen, 0, sizeof(seen));
    msgpack_unpacked_init(&u);
    off = 0;
    urc = msgpack_unpack_next(&u, body, len, &off);
    if (urc != MSGPACK_UNPACK_SUCCESS || off != len) {
        infer_pred_set_error(err, 400, "malformed MessagePack (%s)",
                             urc == MSGPACK_UNPACK_NOMEM_ERROR
                             ? "nested too deep" : "unreadable");
        msgpack_unpacked_destroy(&u);
        return -1;
    }
    root = &u.data;
    if (root->type != MSGPACK_OBJECT_MAP) {
        infer_pred_set_error(err, 400, "the body must be a MessagePack map, "
                             "as {\"input\": [[1, 2, 3]]}");
        msgpack_unpacked_destroy(&u);
        return -1;
    }

    rc = 0;
    seen_bits = 0;
    for (i = 0; i < root->via.map.size && rc == 0; i++) {
        k = &root->via.map.ptr[i].key;
        v = &root->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR) {
            infer_pred_set_error(err, 400, "the map's keys must be strings");
            rc = -1;
            break;
        }
        for (bit = 0; bit < sizeof(names) / sizeof(names[0]); bit++) {
            if (strlen(names[bit]) == k->via.str.size
                && memcmp(names[bit], k->via.str.ptr, k->via.str.size) == 0)
            {
                break;
            }
        }
        if (bit == sizeof(names) / sizeof(names[0])) {
            infer_pred_set_error(err, 400, "unknown field \"%s\" (known: "
                                 "input, text, output, top_k, encoding, "
                                 "dtype, model)",
                                 pred_quote(q, k->via.str.ptr,
                                            k->via.str.size));
            rc = -1;
            break;
        }
        if (seen_bits & (1u << bit)) {
            infer_pred_set_error(err, 400, "duplicate field \"%s\"",
                                 names[bit]);
            rc = -1;
            break;
        }
        seen_bits |= 1u << bit;
        snprintf(key, sizeof(key), "%s", names[bit]);

        switch (bit) {
        case 0:
            seen.input = 1;
            rc = seen.text ? 0 : pred_mp_input(req, v, err);
            break;
        case 1:
            seen.text = 1;
            rc = seen.input ? 0 : pred_mp_text(req, v, err);
            break;
        case 3:
            seen.top_k = 1;
            if (pred_mp_int(v, &x) != 0) {
                infer_pred_set_error(err, 400, "\"top_k\" must be an "
                                     "integer");
                rc = -1;
            } else {
                rc = pred_set_top_k(req, x, err);
            }
            break;
        case 6:
            if (v->type != MSGPACK_OBJECT_STR) {
                infer_pred_set_error(err, 400, "\"model\" must be a string");
                rc = -1;
            } else {
                rc = pred_set_model(req, v->via.str.ptr, v->via.str.size,
                                    err);
            }
            break;
        default:
            seen.dtype |= bit == 5;
            if (v->type != MSGPACK_OBJECT_STR) {
                infer_pred_set_error(err, 400, "\"%s\" must be a string",
                                     key);
                rc = -1;
            } else {
                rc = pred_set_option(req, key, v->via.str.ptr,
                                     v->via.str.size, err);
            }
        }
    }
    msgpack_unpacked_destroy(&u);

    return rc != 0 ? -1 : pred_check_request(req, &seen, err);
}

/* ---- protobuf: KServe v2 ModelInferRequest ------------------------------ */

typedef Inference__ModelInferRequest__InferInputTensor  pred_tensor_t;

/* The element count of a tensor's shape; -1 (err set) when a dimension is
 * negative or the count is beyond any body. */
static int64_t
pred_pb_count(const pred_tensor_t *t, infer_pred_error_t *err)
{
    size_t   i;
    int64_t  n = 1;

    for (i = 0; i < t->n_shape; i++) {
        if (t->shape[i] < 0 || t->shape[i] > INT32_MAX) {
            infer_pred_set_error(err, 400, "input \"%s\": dimension %zu of "
                                 "its shape is %lld", t->name, i,
                                 (long long) t->shape[i]);
            return -1;
        }
        n *= t->shape[i];
        if (n > INT32_MAX) {
            infer_pred_set_error(err, 400, "input \"%s\": its shape holds "
                                 "more than 2^31 elements", t->name);
            return -1;
        }
    }
    return n;
}

/* The integers of an INT32 or INT64 tensor, n of them, into out (whose
 * values are checked to be ids or lengths by the caller). */
static int
pred_pb_ints(const pred_tensor_t *t, const ProtobufCBinaryData *raw,
    int64_t n, int64_t *out, infer_pred_error_t *err)
{
    char                                   q[PRED_QUOTE + 4];
    int                                    is64;
    size_t                                 have;
    int32_t                                v32;
    int64_t                                i;
    const Inference__InferTensorContents  *c = t->contents;

    is64 = strcmp(t->datatype, "INT64") == 0;
    if (!is64 && strcmp(t->datatype, "INT32") != 0) {
        infer_pred_set_error(err, 400, "input \"%s\" must be INT32 or "
                             "INT64, not \"%s\"", t->name,
                             pred_quote(q, t->datatype, strlen(t->datatype)));
        return -1;
    }

    if (raw != NULL) {
        if (raw->len != (size_t) n * (is64 ? 8 : 4)) {
            infer_pred_set_error(err, 400, "input \"%s\": %zu raw bytes for "
                                 "%lld %s elements", t->name, raw->len,
                                 (long long) n, t->datatype);
            return -1;
        }
        for (i = 0; i < n; i++) {
            if (is64) {
                memcpy(&out[i], raw->data + i * 8, 8);
            } else {
                memcpy(&v32, raw->data + i * 4, 4);
                out[i] = v32;
            }
        }
        return 0;
    }

    have = c == NULL ? 0 : is64 ? c->n_int64_contents : c->n_int_contents;
    if (c != NULL
        && (c->n_bool_contents || c->n_uint_contents || c->n_uint64_contents
            || c->n_fp32_contents || c->n_fp64_contents
            || c->n_bytes_contents
            || (is64 ? c->n_int_contents : c->n_int64_contents)))
    {
        infer_pred_set_error(err, 400, "input \"%s\" is %s but its contents "
                             "are of another type", t->name, t->datatype);
        return -1;
    }
    if (have != (size_t) n) {
        infer_pred_set_error(err, 400, "input \"%s\": %zu values for a "
                             "shape of %lld elements", t->name, have,
                             (long long) n);
        return -1;
    }
    for (i = 0; i < n; i++) {
        out[i] = is64 ? c->int64_contents[i] : c->int_contents[i];
    }
    return 0;
}

static int
pred_pb_ids(infer_pred_request_t *req, const pred_tensor_t *ids,
    const ProtobufCBinaryData *ids_raw, const pred_tensor_t *lens,
    const ProtobufCBinaryData *lens_raw, infer_pred_error_t *err)
{
    int       rc = -1;
    int64_t   n, b, i, r, k, total, *v = NULL, *l = NULL;

    n = pred_pb_count(ids, err);
    if (n < 0) {
        return -1;
    }
    if (lens == NULL && ids->n_shape != 2 && ids->n_shape != 1) {
        infer_pred_set_error(err, 400, "input \"input_ids\" must have shape "
                             "[batch, tokens] (or [tokens] with an input "
                             "\"lengths\" for a ragged batch)");
        return -1;
    }
    if (lens != NULL && (ids->n_shape < 1 || ids->n_shape > 2
                         || (ids->n_shape == 2 && ids->shape[0] != 1)))
    {
        infer_pred_set_error(err, 400, "with \"lengths\", input "
                             "\"input_ids\" must have shape [tokens] or "
                             "[1, tokens]: the rows one after the other");
        return -1;
    }

    v = malloc((n ? n : 1) * sizeof(int64_t));
    if (v == NULL) {
        infer_pred_set_error(err, 500, "out of memory");
        return -1;
    }
    if (pred_pb_ints(ids, ids_raw, n, v, err) != 0) {
        goto done;
    }

    if (lens != NULL) {
        b = pred_pb_count(lens, err);
        if (b < 0) {
            goto done;
        }
        if (lens->n_shape != 1) {
            infer_pred_set_error(err, 400, "input \"lengths\" must have "
                                 "shape [batch]");
            goto done;
        }
        l = malloc((b ? b : 1) * sizeof(int64_t));
        if (l == NULL) {
            infer_pred_set_error(err, 500, "out of memory");
            goto done;
        }
        if (pred_pb_ints(lens, lens_raw, b, l, err) != 0) {
            goto done;
        }
        total = 0;
        for (r = 0; r < b; r++) {
            if (l[r] < 1 || l[r] > n - total) {
                infer_pred_set_error(err, 400, "input \"lengths\": rows of "
                                     "%lld tokens from %lld do not fit in "
                                     "%lld ids, or are empty",
                                     (long long) l[r], (long long) total,
                                     (long long) n);
                goto done;
            }
            total += l[r];
        }
        if (total != n) {
            infer_pred_set_error(err, 400, "input \"lengths\" adds up to "
                                 "%lld, but \"input_ids\" holds %lld",
                                 (long long) total, (long long) n);
            goto done;
        }

    } else {
        b = ids->n_shape == 2 ? ids->shape[0] : 1;
    }

    if (pred_alloc_rows(req, (size_t) b, 0, err) != 0) {
        goto done;
    }
    for (r = 0, i = 0; r < b; r++) {
        k = l ? l[r] : (ids->n_shape == 2 ? ids->shape[1] : n);
        req->ids[r] = malloc((k ? k : 1) * sizeof(int32_t));
        if (req->ids[r] == NULL) {
            infer_pred_set_error(err, 500, "out of memory");
            goto done;
        }
        req->n_ids[r] = (int) k;
        for (k = 0; k < req->n_ids[r]; k++, i++) {
            if (v[i] < 0 || v[i] > INT32_MAX) {
                infer_pred_set_error(err, 400, "input_ids[%lld][%lld] = %lld "
                                     "is not a token id", (long long) r,
                                     (long long) k, (long long) v[i]);
                goto done;
            }
            req->ids[r][k] = (int32_t) v[i];
        }
    }
    rc = 0;

done:
    free(v);
    free(l);
    return rc;
}

/* BYTES elements: typed contents, or raw with a 4-byte length before
 * each. */
static int
pred_pb_text(infer_pred_request_t *req, const pred_tensor_t *t,
    const ProtobufCBinaryData *raw, infer_pred_error_t *err)
{
    char            q[PRED_QUOTE + 4];
    size_t          pos;
    int64_t         n, i;
    uint32_t        k;
    const uint8_t  *p;

    if (strcmp(t->datatype, "BYTES") != 0) {
        infer_pred_set_error(err, 400, "input \"text_input\" must be BYTES, "
                             "not \"%s\"", pred_quote(q, t->datatype,
                                                    strlen(t->datatype)));
        return -1;
    }
    n = pred_pb_count(t, err);
    if (n < 0) {
        return -1;
    }
    if (raw == NULL && (t->contents == NULL
                        || t->contents->n_bytes_contents != (size_t) n))
    {
        infer_pred_set_error(err, 400, "input \"text_input\": %zu strings "
                             "for a shape of %lld elements",
                             t->contents ? t->contents->n_bytes_contents : 0,
                             (long long) n);
        return -1;
    }
    if (pred_alloc_rows(req, (size_t) n, 1, err) != 0) {
        return -1;
    }

    pos = 0;
    for (i = 0; i < n; i++) {
        if (raw == NULL) {
            p = t->contents->bytes_contents[i].data;
            k = (uint32_t) t->contents->bytes_contents[i].len;

        } else {
            if (raw->len - pos < 4) {
                goto short_raw;
            }
            memcpy(&k, raw->data + pos, 4);
            pos += 4;
            if (raw->len - pos < k) {
                goto short_raw;
            }
            p = raw->data + pos;
            pos += k;
        }
        if (pred_set_text(req, (int) i, (const char *) p, k, err) != 0) {
            return -1;
        }
    }
    if (raw != NULL && pos != raw->len) {
        goto short_raw;
    }
    return 0;

short_raw:
    infer_pred_set_error(err, 400, "input \"text_input\": its %zu raw bytes "
                         "are not %lld length-prefixed strings", raw->len,
                         (long long) n);
    return -1;
}

/* The outputs each form gives (ModelInferResponse tensor names). */
static int
pred_pb_known_output(infer_pred_output_t output, const char *name)
{
    if (output == INFER_PRED_LOGPROBS) {
        return strcmp(name, "tokens") == 0 || strcmp(name, "logprobs") == 0
               || strcmp(name, "top_ids") == 0
               || strcmp(name, "top_logprobs") == 0
               || strcmp(name, "lengths") == 0;
    }
    return strcmp(name, "logits") == 0
           || (output == INFER_PRED_ALL && strcmp(name, "lengths") == 0);
}

static int
pred_parse_protobuf(const char *body, size_t len, infer_pred_request_t *req,
    infer_pred_error_t *err)
{
    int                                        rc = -1;
    size_t                                     i;
    char                                       q[PRED_QUOTE + 4];
    pred_seen_t                                seen;
    const char                                *s;
    pred_tensor_t                             *t, *ids, *lens, *text;
    const ProtobufCBinaryData                 *raw, *ids_raw, *lens_raw;
    const ProtobufCBinaryData                 *text_raw;
    Inference__ModelInferRequest              *m;
    Inference__InferParameter                 *p;
    Inference__ModelInferRequest__ParametersEntry  *e;

    memset(&seen, 0, sizeof(seen));
    m = inference__model_infer_request__unpack(NULL, len,
                                               (const uint8_t *) body);
    if (m == NULL) {
        infer_pred_set_error(err, 400, "malformed protobuf: the body is not "
                             "a KServe v2 ModelInferRequest");
        return -1;
    }

    if (m->model_name[0] != '\0'
        && pred_set_model(req, m->model_name, strlen(m->model_name), err)
           != 0)
    {
        goto done;
    }
    if (m->id[0] != '\0') {
        req->id = strdup(m->id);
        if (req->id == NULL) {
            infer_pred_set_error(err, 500, "out of memory");
            goto done;
        }
    }

    for (i = 0; i < m->n_parameters; i++) {
        e = m->parameters[i];
        p = e->value;
        s = p != NULL && p->parameter_choice_case == PRED_PARAM(STRING_PARAM)
            ? p->string_param : NULL;

        if (strcmp(e->key, "output") == 0 || strcmp(e->key, "dtype") == 0) {
            seen.dtype |= strcmp(e->key, "dtype") == 0;
            if (s == NULL) {
                infer_pred_set_error(err, 400, "parameter \"%s\" must be a "
                                     "string_param", e->key);
                goto done;
            }
            if (pred_set_option(req, e->key, s, strlen(s), err) != 0) {
                goto done;
            }

        } else if (strcmp(e->key, "top_k") == 0) {
            seen.top_k = 1;
            if (p == NULL
                || p->parameter_choice_case != PRED_PARAM(INT64_PARAM))
            {
                infer_pred_set_error(err, 400, "parameter \"top_k\" must be "
                                     "an int64_param");
                goto done;
            }
            if (pred_set_top_k(req, p->int64_param, err) != 0) {
                goto done;
            }

        } else {
            infer_pred_set_error(err, 400, "unknown parameter \"%s\" (known: "
                                 "output, top_k, dtype)",
                                 pred_quote(q, e->key, strlen(e->key)));
            goto done;
        }
    }

    if (m->n_raw_input_contents > 0
        && m->n_raw_input_contents != m->n_inputs)
    {
        infer_pred_set_error(err, 400, "%zu raw_input_contents for %zu "
                             "inputs: give one per input, or none",
                             m->n_raw_input_contents, m->n_inputs);
        goto done;
    }

    ids = lens = text = NULL;
    ids_raw = lens_raw = text_raw = NULL;
    for (i = 0; i < m->n_inputs; i++) {
        t = m->inputs[i];
        raw = m->n_raw_input_contents ? &m->raw_input_contents[i] : NULL;
        if (raw != NULL && t->contents != NULL) {
            infer_pred_set_error(err, 400, "input \"%s\" has contents and "
                                 "raw_input_contents; give one",
                                 pred_quote(q, t->name, strlen(t->name)));
            goto done;
        }
        if (t->n_parameters > 0) {
            infer_pred_set_error(err, 400, "input \"%s\": no input takes "
                                 "parameters",
                                 pred_quote(q, t->name, strlen(t->name)));
            goto done;
        }
        if (strcmp(t->name, "input_ids") == 0 && ids == NULL) {
            ids = t;
            ids_raw = raw;
        } else if (strcmp(t->name, "lengths") == 0 && lens == NULL) {
            lens = t;
            lens_raw = raw;
        } else if (strcmp(t->name, "text_input") == 0 && text == NULL) {
            text = t;
            text_raw = raw;
        } else {
            infer_pred_set_error(err, 400, "%s input \"%s\" (known: "
                                 "input_ids, lengths, text_input)",
                                 strcmp(t->name, "input_ids") == 0
                                 || strcmp(t->name, "lengths") == 0
                                 || strcmp(t->name, "text_input") == 0
                                 ? "duplicate" : "unknown",
                                 pred_quote(q, t->name, strlen(t->name)));
            goto done;
        }
    }

    seen.input = ids != NULL;
    seen.text = text != NULL;
    if (lens != NULL && ids == NULL) {
        infer_pred_set_error(err, 400, "input \"lengths\" goes with "
                             "\"input_ids\"");
        goto done;
    }
    if (pred_check_request(req, &seen, err) != 0) {
        goto done;
    }

    for (i = 0; i < m->n_outputs; i++) {
        if (!pred_pb_known_output(req->output, m->outputs[i]->name)) {
            infer_pred_set_error(err, 400, "output \"%s\" is not one that "
                                 "\"output\": \"%s\" gives",
                                 pred_quote(q, m->outputs[i]->name,
                                            strlen(m->outputs[i]->name)),
                                 req->output == INFER_PRED_ALL ? "all"
                                 : req->output == INFER_PRED_LAST ? "last"
                                 : "logprobs");
            goto done;
        }
    }

    rc = ids != NULL ? pred_pb_ids(req, ids, ids_raw, lens, lens_raw, err)
                     : pred_pb_text(req, text, text_raw, err);

done:
    inference__model_infer_request__free_unpacked(m, NULL);
    return rc;
}

int
infer_pred_parse(const char *body, size_t len, infer_pred_request_t *req,
    infer_pred_error_t *err)
{
    infer_pred_format_t  format = req->format, reply = req->reply;

    memset(req, 0, sizeof(*req));
    req->format = format;
    req->reply = reply;

    switch (format) {
    case INFER_PRED_MSGPACK:
        return pred_parse_msgpack(body, len, req, err);
    case INFER_PRED_PROTOBUF:
        return pred_parse_protobuf(body, len, req, err);
    default:
        return pred_parse_json(body, len, req, err);
    }
}

int
infer_pred_prepare(infer_pred_request_t *req, const infer_tokenizer_t *tok,
    int vocab, int context, infer_pred_error_t *err)
{
    int     i, k, n;
    size_t  least;

    for (i = 0; i < req->n_rows; i++) {
        if (req->texts != NULL && req->texts[i] != NULL) {
            /* what cannot fit, by its size alone, is not encoded */
            least = infer_tokenizer_min_ids(tok, req->text_lens[i]);
            if (least > (size_t) context) {
                infer_pred_set_error(err, 400, "text %d: %zu bytes make at "
                                     "least %zu tokens, and the model's "
                                     "context is %d", i,
                                     req->text_lens[i], least, context);
                return -1;
            }
            if (infer_tokenizer_encode(tok, req->texts[i], req->text_lens[i],
                                       1, &req->ids[i], &req->n_ids[i])
                != 0)
            {
                req->ids[i] = NULL;
                req->n_ids[i] = 0;
                infer_pred_set_error(err, 500, "text %d could not be "
                                     "tokenized", i);
                return -1;
            }
            free(req->texts[i]);
            req->texts[i] = NULL;
        }

        n = req->n_ids[i];
        if (n == 0) {
            infer_pred_set_error(err, 400, "row %d is empty", i);
            return -1;
        }
        if (n > context) {
            /* a row is only scored, so it may fill the whole context */
            infer_pred_set_error(err, 400, "row %d has %d tokens, and the "
                                 "model's context is %d", i, n, context);
            return -1;
        }
        for (k = 0; k < n; k++) {
            if (req->ids[i][k] >= vocab) {
                infer_pred_set_error(err, 400, "token id %d (row %d, "
                                     "position %d) is outside the "
                                     "vocabulary of %d", req->ids[i][k], i,
                                     k, vocab);
                return -1;
            }
        }
    }
    return 0;
}

void
infer_pred_request_free(infer_pred_request_t *req)
{
    int  i;

    for (i = 0; i < req->n_rows; i++) {
        if (req->ids != NULL) {
            free(req->ids[i]);
        }
        if (req->texts != NULL) {
            free(req->texts[i]);
        }
    }
    free(req->ids);
    free(req->n_ids);
    free(req->texts);
    free(req->text_lens);
    free(req->model);
    free(req->id);
    req->ids = NULL;
    req->n_ids = NULL;
    req->texts = NULL;
    req->text_lens = NULL;
    req->model = NULL;
    req->id = NULL;
    req->n_rows = 0;
}

size_t
infer_pred_output_bytes(const infer_pred_request_t *req, int vocab)
{
    int     i;
    size_t  bytes = 0, each = (size_t) vocab * (req->f16 ? 2 : 4);

    for (i = 0; i < req->n_rows; i++) {
        switch (req->output) {
        case INFER_PRED_ALL:
            bytes += each * req->n_ids[i];
            break;
        case INFER_PRED_LAST:
            bytes += each;
            break;
        default:
            bytes += (size_t) req->n_ids[i] * (req->top_k + 1) * 8;
        }
    }
    return bytes;
}

/* ---- replies ----------------------------------------------------------- */

static void
pred_int(infer_buf_t *b, long long v)
{
    if (infer_buf_reserve(b, 24) == 0) {
        b->len += snprintf(b->p + b->len, 24, "%lld", v);
    }
}

/* Logit k of a row, whichever its type. */
static float
pred_logit(const infer_pred_request_t *req, const void *row, size_t k)
{
    return req->f16 ? infer_half_to_float(((const uint16_t *) row)[k])
                    : ((const float *) row)[k];
}

static void
pred_json_row(infer_buf_t *b, const infer_pred_request_t *req, const void *row,
    int vocab)
{
    int  k, digits = req->f16 ? 5 : 9;

    infer_buf_lit(b, "[");
    for (k = 0; k < vocab; k++) {
        if (k > 0) {
            infer_buf_lit(b, ",");
        }
        infer_buf_json_float(b, pred_logit(req, row, k), digits);
    }
    infer_buf_lit(b, "]");
}

static void
pred_json_ints(infer_buf_t *b, const int32_t *v, int n)
{
    int  i;

    infer_buf_lit(b, "[");
    for (i = 0; i < n; i++) {
        if (i > 0) {
            infer_buf_lit(b, ",");
        }
        pred_int(b, v[i]);
    }
    infer_buf_lit(b, "]");
}

static void
pred_json_floats(infer_buf_t *b, const float *v, int n)
{
    int  i;

    infer_buf_lit(b, "[");
    for (i = 0; i < n; i++) {
        if (i > 0) {
            infer_buf_lit(b, ",");
        }
        infer_buf_json_float(b, v[i], 9);
    }
    infer_buf_lit(b, "]");
}

/* The logprobs form of one row, in JSON. */
static void
pred_json_logprobs(infer_buf_t *b, const infer_pred_request_t *req, int i,
    const infer_pred_row_t *row)
{
    int  p;

    infer_buf_lit(b, "{\"tokens\":");
    pred_json_ints(b, req->ids[i], req->n_ids[i]);
    infer_buf_lit(b, ",\"logprobs\":");
    pred_json_floats(b, row->lp, row->n_lp);
    if (req->top_k > 0) {
        infer_buf_lit(b, ",\"top_ids\":[");
        for (p = 0; p < row->n_lp; p++) {
            if (p > 0) {
                infer_buf_lit(b, ",");
            }
            pred_json_ints(b, row->top_ids + (size_t) p * row->top, row->top);
        }
        infer_buf_lit(b, "],\"top_logprobs\":[");
        for (p = 0; p < row->n_lp; p++) {
            if (p > 0) {
                infer_buf_lit(b, ",");
            }
            pred_json_floats(b, row->top_lp + (size_t) p * row->top,
                             row->top);
        }
        infer_buf_lit(b, "]");
    }
    infer_buf_lit(b, "}");
}

static void
pred_reply_numbers(infer_buf_t *b, const infer_pred_request_t *req,
    const infer_pred_row_t *rows, int vocab)
{
    int     i, p;
    size_t  each = (size_t) vocab * (req->f16 ? 2 : 4);

    infer_buf_lit(b, "{\"result\":[");
    for (i = 0; i < req->n_rows; i++) {
        if (i > 0) {
            infer_buf_lit(b, ",");
        }
        switch (req->output) {
        case INFER_PRED_ALL:
            infer_buf_lit(b, "[");
            for (p = 0; p < rows[i].n_logits; p++) {
                if (p > 0) {
                    infer_buf_lit(b, ",");
                }
                pred_json_row(b, req,
                              (const char *) rows[i].logits + p * each,
                              vocab);
            }
            infer_buf_lit(b, "]");
            break;
        case INFER_PRED_LAST:
            pred_json_row(b, req, rows[i].logits, vocab);
            break;
        default:
            pred_json_logprobs(b, req, i, &rows[i]);
        }
    }
    infer_buf_lit(b, "]}\n");
}

/* The shape of the logits tensor: [batch, positions, vocab] when every
 * row is as long, [positions of all rows, vocab] when not; [batch, vocab]
 * for the last position.  Returns the number of dimensions. */
static int
pred_logits_shape(const infer_pred_request_t *req, int vocab, int64_t *shape,
    size_t *total)
{
    int  i, same = 1;

    *total = 0;
    for (i = 0; i < req->n_rows; i++) {
        *total += req->output == INFER_PRED_ALL ? req->n_ids[i] : 1;
        same &= req->n_ids[i] == req->n_ids[0];
    }
    if (req->output == INFER_PRED_LAST) {
        shape[0] = req->n_rows;
        shape[1] = vocab;
        return 2;
    }
    if (same) {
        shape[0] = req->n_rows;
        shape[1] = req->n_ids[0];
        shape[2] = vocab;
        return 3;
    }
    shape[0] = (int64_t) *total;
    shape[1] = vocab;
    return 2;
}

static const char  pred_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 over several pieces of one tensor: what does not make a whole
 * group of three bytes waits for the next piece. */
typedef struct {
    infer_buf_t     *b;
    unsigned char   carry[3];
    int             n_carry;
} pred_b64_t;

static void
pred_b64_group(char *o, const unsigned char *s, int n)
{
    uint32_t  v;

    v = (uint32_t) s[0] << 16 | (n > 1 ? (uint32_t) s[1] << 8 : 0)
        | (n > 2 ? s[2] : 0);
    o[0] = pred_b64[v >> 18];
    o[1] = pred_b64[(v >> 12) & 63];
    o[2] = n > 1 ? pred_b64[(v >> 6) & 63] : '=';
    o[3] = n > 2 ? pred_b64[v & 63] : '=';
}

static void
pred_b64_add(pred_b64_t *s, const void *data, size_t n)
{
    const unsigned char  *p = data;
    char                 *o;

    if (infer_buf_reserve(s->b, (n + 3) / 3 * 4 + 4) != 0) {
        return;
    }
    o = s->b->p + s->b->len;
    while (s->n_carry > 0 && s->n_carry < 3 && n > 0) {
        s->carry[s->n_carry++] = *p++;
        n--;
    }
    if (s->n_carry == 3) {
        pred_b64_group(o, s->carry, 3);
        o += 4;
        s->n_carry = 0;
    }
    for (; n >= 3; n -= 3, p += 3, o += 4) {
        pred_b64_group(o, p, 3);
    }
    while (n > 0) {
        s->carry[s->n_carry++] = *p++;
        n--;
    }
    s->b->len = o - s->b->p;
}

static void
pred_b64_end(pred_b64_t *s)
{
    if (s->n_carry > 0 && infer_buf_reserve(s->b, 4) == 0) {
        pred_b64_group(s->b->p + s->b->len, s->carry, s->n_carry);
        s->b->len += 4;
    }
}

static void
pred_reply_base64(infer_buf_t *b, const infer_pred_request_t *req,
    const infer_pred_row_t *rows, int vocab)
{
    int         i, nd;
    size_t      total, each = (size_t) vocab * (req->f16 ? 2 : 4);
    int64_t     shape[3];
    pred_b64_t  s;

    nd = pred_logits_shape(req, vocab, shape, &total);
    infer_buf_lit(b, "{\"result\":{\"dtype\":");
    if (req->f16) {
        infer_buf_lit(b, "\"float16\"");
    } else {
        infer_buf_lit(b, "\"float32\"");
    }
    infer_buf_lit(b, ",\"shape\":[");
    for (i = 0; i < nd; i++) {
        if (i > 0) {
            infer_buf_lit(b, ",");
        }
        pred_int(b, shape[i]);
    }
    infer_buf_lit(b, "]");
    if (req->output == INFER_PRED_ALL) {
        infer_buf_lit(b, ",\"lengths\":");
        pred_json_ints(b, req->n_ids, req->n_rows);
    }
    infer_buf_lit(b, ",\"data\":\"");
    memset(&s, 0, sizeof(s));
    s.b = b;
    for (i = 0; i < req->n_rows; i++) {
        pred_b64_add(&s, rows[i].logits, rows[i].n_logits * each);
    }
    pred_b64_end(&s);
    infer_buf_lit(b, "\"}}\n");
}

/* msgpack-c writes through this callback into our buffer. */
static int
pred_mp_write(void *data, const char *s, size_t n)
{
    infer_buf_t  *b = data;

    infer_buf_add(b, s, n);
    return b->failed ? -1 : 0;
}

static void
pred_mp_str(msgpack_packer *pk, const char *s)
{
    size_t  n = strlen(s);

    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void
pred_mp_ints(msgpack_packer *pk, const int32_t *v, int n)
{
    int  i;

    msgpack_pack_array(pk, n);
    for (i = 0; i < n; i++) {
        msgpack_pack_int32(pk, v[i]);
    }
}

static void
pred_mp_floats(msgpack_packer *pk, const float *v, int n)
{
    int  i;

    msgpack_pack_array(pk, n);
    for (i = 0; i < n; i++) {
        msgpack_pack_float(pk, v[i]);
    }
}

static void
pred_reply_msgpack(infer_buf_t *b, const infer_pred_request_t *req,
    const infer_pred_row_t *rows, int vocab)
{
    int             i, p, nd;
    size_t          total, each = (size_t) vocab * (req->f16 ? 2 : 4);
    int64_t         shape[3];
    msgpack_packer  pk;

    msgpack_packer_init(&pk, b, pred_mp_write);
    msgpack_pack_map(&pk, 1);
    pred_mp_str(&pk, "result");

    if (req->output == INFER_PRED_LOGPROBS) {
        msgpack_pack_array(&pk, req->n_rows);
        for (i = 0; i < req->n_rows; i++) {
            msgpack_pack_map(&pk, req->top_k > 0 ? 4 : 2);
            pred_mp_str(&pk, "tokens");
            pred_mp_ints(&pk, req->ids[i], req->n_ids[i]);
            pred_mp_str(&pk, "logprobs");
            pred_mp_floats(&pk, rows[i].lp, rows[i].n_lp);
            if (req->top_k == 0) {
                continue;
            }
            pred_mp_str(&pk, "top_ids");
            msgpack_pack_array(&pk, rows[i].n_lp);
            for (p = 0; p < rows[i].n_lp; p++) {
                pred_mp_ints(&pk, rows[i].top_ids + (size_t) p * rows[i].top,
                             rows[i].top);
            }
            pred_mp_str(&pk, "top_logprobs");
            msgpack_pack_array(&pk, rows[i].n_lp);
            for (p = 0; p < rows[i].n_lp; p++) {
                pred_mp_floats(&pk, rows[i].top_lp + (size_t) p * rows[i].top,
                               rows[i].top);
            }
        }
        return;
    }

    nd = pred_logits_shape(req, vocab, shape, &total);
    msgpack_pack_map(&pk, req->output == INFER_PRED_ALL ? 4 : 3);
    pred_mp_str(&pk, "dtype");
    pred_mp_str(&pk, req->f16 ? "float16" : "float32");
    pred_mp_str(&pk, "shape");
    msgpack_pack_array(&pk, nd);
    for (i = 0; i < nd; i++) {
        msgpack_pack_int64(&pk, shape[i]);
    }
    if (req->output == INFER_PRED_ALL) {
        pred_mp_str(&pk, "lengths");
        msgpack_pack_array(&pk, req->n_rows);
        for (i = 0; i < req->n_rows; i++) {
            msgpack_pack_int(&pk, req->n_ids[i]);
        }
    }
    pred_mp_str(&pk, "data");
    msgpack_pack_bin(&pk, total * each);
    for (i = 0; i < req->n_rows; i++) {
        msgpack_pack_bin_body(&pk, rows[i].logits, rows[i].n_logits * each);
    }
}

/* ---- protobuf replies ---------------------------------------------------- */

typedef Inference__ModelInferResponse__InferOutputTensor  pred_out_t;

typedef struct {
    Inference__ModelInferResponse  rsp;
    pred_out_t                     outs[5];
    pred_out_t                    *out_ptrs[5];
    int64_t                        shapes[5][3];
    ProtobufCBinaryData            raw[5];
} pred_pb_reply_t;

/* Adds an output whose raw contents are data (malloc'd: freed with the
 * reply, or NULL when out of memory). */
static int
pred_pb_output(pred_pb_reply_t *r, const char *name, const char *datatype,
    const int64_t *shape, int nd, void *data, size_t len)
{
    size_t       k = r->rsp.n_outputs;
    pred_out_t  *o = &r->outs[k];

    inference__model_infer_response__infer_output_tensor__init(o);
    o->name = (char *) name;
    o->datatype = (char *) datatype;
    memcpy(r->shapes[k], shape, nd * sizeof(int64_t));
    o->shape = r->shapes[k];
    o->n_shape = nd;
    r->out_ptrs[k] = o;
    r->raw[k].data = data;
    r->raw[k].len = len;
    r->rsp.n_outputs++;
    r->rsp.n_raw_output_contents++;
    return data != NULL || len == 0 ? 0 : -1;
}

/* The rows' lengths as an INT32 [batch] output. */
static int
pred_pb_lengths(pred_pb_reply_t *r, const infer_pred_request_t *req)
{
    int       i;
    int32_t  *v;
    int64_t   shape = req->n_rows;

    v = malloc(req->n_rows * sizeof(int32_t));
    for (i = 0; v != NULL && i < req->n_rows; i++) {
        v[i] = req->n_ids[i];
    }
    return pred_pb_output(r, "lengths", "INT32", &shape, 1, v,
                          req->n_rows * sizeof(int32_t));
}

/* Writes v as a protobuf varint at p (when not NULL); its length. */
static size_t
pred_varint(uint8_t *p, uint64_t v)
{
    size_t  n = 0;

    do {
        if (p != NULL) {
            p[n] = (uint8_t) (v & 0x7f) | (v > 0x7f ? 0x80 : 0);
        }
        n++;
        v >>= 7;
    } while (v > 0);
    return n;
}

static char *
pred_reply_protobuf(const infer_pred_request_t *req,
    const infer_pred_row_t *rows, int vocab, const char *model, size_t *len,
    infer_pred_error_t *err)
{
    int              i, p, nd, failed = 0, logits = 0;
    char            *body = NULL;
    size_t           total, pos, n_lp, each = 0, k, head, n_raw;
    int64_t          shape[3];
    int32_t         *ints;
    float           *fl;
    uint8_t         *p8;
    pred_pb_reply_t  r;

    memset(&r, 0, sizeof(r));
    inference__model_infer_response__init(&r.rsp);
    r.rsp.model_name = (char *) model;
    r.rsp.model_version = "1";
    r.rsp.id = req->id ? req->id : "";
    r.rsp.outputs = r.out_ptrs;
    r.rsp.raw_output_contents = r.raw;

    if (req->output != INFER_PRED_LOGPROBS) {
        each = (size_t) vocab * (req->f16 ? 2 : 4);
        nd = pred_logits_shape(req, vocab, shape, &total);
        /* the rows themselves are written into the body (below) */
        (void) pred_pb_output(&r, "logits", req->f16 ? "FP16" : "FP32",
                              shape, nd, NULL, total * each);
        logits = 1;
        if (req->output == INFER_PRED_ALL) {
            shape[0] = req->n_rows;
            failed |= pred_pb_lengths(&r, req);
        }

    } else {
        total = 0;
        n_lp = 0;
        for (i = 0; i < req->n_rows; i++) {
            total += req->n_ids[i];
            n_lp += rows[i].n_lp;
        }

        shape[0] = (int64_t) total;
        ints = malloc(total * sizeof(int32_t));
        for (i = 0, pos = 0; ints && i < req->n_rows; i++) {
            memcpy(ints + pos, req->ids[i], req->n_ids[i] * sizeof(int32_t));
            pos += req->n_ids[i];
        }
        failed |= pred_pb_output(&r, "tokens", "INT32", shape, 1, ints,
                                 total * sizeof(int32_t));

        shape[0] = (int64_t) n_lp;
        fl = malloc(n_lp ? n_lp * sizeof(float) : 1);
        for (i = 0, pos = 0; fl && i < req->n_rows; i++) {
            if (rows[i].n_lp > 0) {     /* a one-token row has none */
                memcpy(fl + pos, rows[i].lp, rows[i].n_lp * sizeof(float));
                pos += rows[i].n_lp;
            }
        }
        failed |= pred_pb_output(&r, "logprobs", "FP32", shape, 1, fl,
                                 n_lp * sizeof(float));

        if (req->top_k > 0) {
            k = (size_t) req->top_k;
            shape[1] = req->top_k;
            ints = malloc(n_lp ? n_lp * k * sizeof(int32_t) : 1);
            fl = malloc(n_lp ? n_lp * k * sizeof(float) : 1);
            for (i = 0, pos = 0; ints && fl && i < req->n_rows; i++) {
                for (p = 0; p < rows[i].n_lp; p++, pos++) {
                    memcpy(ints + pos * k, rows[i].top_ids + p * rows[i].top,
                           k * sizeof(int32_t));
                    memcpy(fl + pos * k, rows[i].top_lp + p * rows[i].top,
                           k * sizeof(float));
                }
            }
            failed |= pred_pb_output(&r, "top_ids", "INT32", shape, 2, ints,
                                     n_lp * k * sizeof(int32_t));
            failed |= pred_pb_output(&r, "top_logprobs", "FP32", shape, 2, fl,
                                     n_lp * k * sizeof(float));
        }

        failed |= pred_pb_lengths(&r, req);
    }

    /*
     * The message without its raw contents, then each raw_output_contents
     * field framed by hand (tag, length, bytes): a parser appends repeated
     * fields in the order they come, wherever they are, and the logits
     * rows go from the engine's buffers into the body in one copy.
     */
    n_raw = r.rsp.n_raw_output_contents;
    r.rsp.n_raw_output_contents = 0;
    if (!failed) {
        head = inference__model_infer_response__get_packed_size(&r.rsp);
        *len = head;
        for (k = 0; k < n_raw; k++) {
            *len += 1 + pred_varint(NULL, r.raw[k].len) + r.raw[k].len;
        }
        body = malloc(*len);
    }
    if (body != NULL) {
        p8 = (uint8_t *) body
             + inference__model_infer_response__pack(&r.rsp,
                                                     (uint8_t *) body);
        for (k = 0; k < n_raw; k++) {
            *p8++ = 6 << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
            p8 += pred_varint(p8, r.raw[k].len);
            if (k == 0 && logits) {
                for (i = 0; i < req->n_rows; i++) {
                    memcpy(p8, rows[i].logits, rows[i].n_logits * each);
                    p8 += rows[i].n_logits * each;
                }
            } else {
                memcpy(p8, r.raw[k].data, r.raw[k].len);
                p8 += r.raw[k].len;
            }
        }
    }
    for (k = 0; k < n_raw; k++) {
        free(r.raw[k].data);
    }
    if (body == NULL) {
        infer_pred_set_error(err, 500, "out of memory");
    }
    return body;
}

/* The rows are what the request asked for: the engine's side of the
 * contract, checked so that no encoder reads past a row. */
static int
pred_check_rows(const infer_pred_request_t *req, const infer_pred_row_t *rows,
    infer_pred_error_t *err)
{
    int  i, want;

    for (i = 0; i < req->n_rows; i++) {
        want = req->output == INFER_PRED_ALL ? req->n_ids[i]
               : req->output == INFER_PRED_LAST ? 1 : 0;
        if (rows[i].n_logits != want
            || (want > 0 && rows[i].logits == NULL)
            || (req->output == INFER_PRED_LOGPROBS
                && (rows[i].n_lp != req->n_ids[i] - 1
                    || (rows[i].n_lp > 0 && rows[i].lp == NULL)
                    || (req->top_k > 0 && rows[i].n_lp > 0
                        && (rows[i].top != req->top_k
                            || rows[i].top_ids == NULL
                            || rows[i].top_lp == NULL)))))
        {
            infer_pred_set_error(err, 500, "the engine gave row %d %d logits "
                                 "rows and %d logprobs (of %d alternatives) "
                                 "for %d tokens", i, rows[i].n_logits,
                                 rows[i].n_lp, rows[i].top, req->n_ids[i]);
            return -1;
        }
    }
    return 0;
}

char *
infer_pred_reply(const infer_pred_request_t *req,
    const infer_pred_row_t *rows, int vocab, const char *model, size_t *len,
    infer_pred_error_t *err)
{
    infer_buf_t  b;

    if (pred_check_rows(req, rows, err) != 0) {
        return NULL;
    }
    if (req->reply == INFER_PRED_PROTOBUF) {
        return pred_reply_protobuf(req, rows, vocab, model, len, err);
    }

    memset(&b, 0, sizeof(b));
    if (req->reply == INFER_PRED_MSGPACK) {
        pred_reply_msgpack(&b, req, rows, vocab);
    } else if (req->base64 && req->output != INFER_PRED_LOGPROBS) {
        pred_reply_base64(&b, req, rows, vocab);
    } else {
        pred_reply_numbers(&b, req, rows, vocab);
    }
    /* a NUL after the end, not counted: the text replies are strings */
    infer_buf_add(&b, "", 1);
    if (b.failed) {
        free(b.p);
        infer_pred_set_error(err, 500, "out of memory");
        return NULL;
    }
    *len = b.len - 1;
    return b.p;
}

infer_pred_format_t
infer_pred_error_format(infer_pred_format_t reply)
{
    return reply == INFER_PRED_MSGPACK ? INFER_PRED_MSGPACK : INFER_PRED_JSON;
}

char *
infer_pred_error_body(infer_pred_format_t reply, const infer_pred_error_t *err,
    size_t *len)
{
    const char      *s;
    infer_buf_t       b;
    msgpack_packer   pk;

    memset(&b, 0, sizeof(b));
    if (infer_pred_error_format(reply) == INFER_PRED_MSGPACK) {
        msgpack_packer_init(&pk, &b, pred_mp_write);
        msgpack_pack_map(&pk, 1);
        pred_mp_str(&pk, "error");
        pred_mp_str(&pk, err->message);

    } else {
        /* messages quote clients' bytes as printable ASCII (pred_quote);
         * whatever else slipped in becomes '?', so the body is JSON */
        infer_buf_lit(&b, "{\"error\":\"");
        for (s = err->message; *s; s++) {
            if (*s == '"' || *s == '\\') {
                infer_buf_lit(&b, "\\");
            }
            infer_buf_add(&b, *s >= 0x20 && *s < 0x7f ? s : "?", 1);
        }
        infer_buf_lit(&b, "\"}\n");
    }
    infer_buf_add(&b, "", 1);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len - 1;
    return b.p;
}
