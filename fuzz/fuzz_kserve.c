/*
 * The KServe v2 codec on any bytes.  The first byte picks what the rest
 * is: an /infer body whose JSON header ends where the next two bytes say
 * (the binary tensor data extension), an /infer body that is all JSON, a
 * generate body, or a path and an Inference-Header-Content-Length value.
 * A refused body must still give the client {"error": ...}; an accepted
 * one must hold what the front end and the engine rely on, and every
 * response built from it must be JSON (with binary data that adds up) that
 * gives its text back unchanged.
 */
#include <math.h>
#include <utf8proc.h>

#include "fuzz.h"
#include "infer.h"
#include "kserve.h"

#define VOCAB  512

static void
check_error(const infer_ks_error_t *err)
{
    char    *s;
    size_t   len;
    json_t  *j;

    FUZZ_CHECK(err->status == 400 || err->status == 500, "status %d",
               err->status);
    FUZZ_CHECK(err->message[0] != '\0', "an error without a message");

    s = infer_ks_error_body(err, &len);
    FUZZ_CHECK(s != NULL, "no error body");
    j = fuzz_json(s, len);
    FUZZ_CHECK(json_is_string(json_object_get(j, "error")),
               "error body is not {\"error\": string}: %s", s);
    json_decref(j);
    free(s);

    s = infer_ks_error_event(err, &len);
    FUZZ_CHECK(s != NULL && len > 8 && memcmp(s, "data: ", 6) == 0
               && memcmp(s + len - 2, "\n\n", 2) == 0, "bad error event");
    j = fuzz_json(s + 6, len - 8);
    FUZZ_CHECK(json_is_string(json_object_get(j, "error")),
               "error event is not {\"error\": string}: %s", s);
    json_decref(j);
    free(s);
}

/* Every tensor's data is where it says and as long as its shape needs. */
static void
check_tensors(const infer_ks_tensors_t *set, const char *body, size_t len)
{
    int                       i, d;
    size_t                    n, k, el;
    const unsigned char      *p;
    const infer_ks_tensor_t  *t;

    FUZZ_CHECK(set->n_inputs >= 0 && set->n_inputs <= INFER_KS_MAX_INPUTS,
               "%d inputs", set->n_inputs);
    for (i = 0; i < set->n_inputs; i++) {
        t = &set->inputs[i];
        FUZZ_CHECK(t->name != NULL && infer_ks_dtype_name(t->dtype) != NULL,
                   "input %d without a name or datatype", i);
        n = 1;
        for (d = 0; d < t->n_dims; d++) {
            FUZZ_CHECK(t->dims[d] >= 0, "negative dimension");
            n *= (size_t) t->dims[d];
        }
        FUZZ_CHECK(n == t->n, "input '%s': %zu elements, its shape %zu",
                   t->name, t->n, n);
        FUZZ_CHECK(t->data != NULL, "input '%s' without data", t->name);
        FUZZ_CHECK(t->data == t->own
                   || ((const char *) t->data >= body
                       && (const char *) t->data + t->size <= body + len),
                   "input '%s': data outside the body", t->name);
        if (t->dtype != INFER_KS_BYTES) {
            FUZZ_CHECK(t->size == t->n * infer_ks_dtype_size(t->dtype),
                       "input '%s': %zu bytes for %zu elements", t->name,
                       t->size, t->n);
            continue;
        }
        for (k = 0; k < t->n; k++) {
            p = infer_ks_bytes_at(t, k, &el);
            FUZZ_CHECK(p >= t->data && p + el <= t->data + t->size,
                       "input '%s': element %zu outside its data", t->name,
                       k);
        }
    }
}

static int
utf8_ok(const char *s, size_t len)
{
    return utf8proc_decompose((const utf8proc_uint8_t *) s,
                              (utf8proc_ssize_t) len, NULL, 0, 0) >= 0;
}

static void
check_settings(const infer_ks_settings_t *st)
{
    int  i;

    FUZZ_CHECK(st->max_tokens >= -1 && st->min_tokens >= 0
               && (st->max_tokens < 0 || st->min_tokens <= st->max_tokens),
               "max_tokens %d min_tokens %d", st->max_tokens,
               st->min_tokens);
    FUZZ_CHECK(st->temperature >= 0.0f && st->temperature <= 1e6f,
               "temperature %g", st->temperature);
    FUZZ_CHECK(st->top_p > 0.0f && st->top_p <= 1.0f, "top_p %g",
               st->top_p);
    FUZZ_CHECK(st->top_k >= 0, "top_k %d", st->top_k);
    FUZZ_CHECK(st->repetition_penalty > 0.0f
               && isfinite(st->repetition_penalty)
               && isfinite(st->presence_penalty)
               && isfinite(st->frequency_penalty), "a penalty out of range");
    FUZZ_CHECK(st->end_id >= -1 && st->end_id < VOCAB, "end_id %d",
               st->end_id);
    FUZZ_CHECK(st->n_stop >= 0 && st->n_stop <= INFER_KS_MAX_STOP,
               "%d stop words", st->n_stop);
    for (i = 0; i < st->n_stop; i++) {
        FUZZ_CHECK(st->stop[i] != NULL && st->stop[i][0] != '\0'
                   && strlen(st->stop[i]) <= INFER_KS_MAX_STOP_LEN,
                   "stop word %d is empty or too long", i);
    }
}

/* The response a front end builds from the request, parsed back. */
static void
check_response(const infer_ks_request_t *req, int binary)
{
    int                 i, vocab;
    char               *s;
    size_t              len, hlen, k, rows;
    float              *logits;
    json_t             *j, *o, *data;
    infer_ks_piece_t   *pieces;
    infer_ks_output_t   out;

    /* a few floats a row is enough for the encoder */
    vocab = 3;
    rows = req->kind == INFER_KS_SCORE
           ? (size_t) req->n_rows * (req->logits_last ? 1 : req->seq) : 0;
    if (rows > 4096) {
        return;
    }
    pieces = calloc(req->n_rows, sizeof(infer_ks_piece_t));
    logits = calloc(rows * vocab + 1, sizeof(float));
    FUZZ_CHECK(pieces && logits, "out of memory");
    for (k = 0; k < rows * vocab; k++) {
        logits[k] = (float) k / 7.0f - 3.0f;
    }

    memset(&out, 0, sizeof(out));
    out.binary = binary;
    out.pieces = pieces;
    out.n_pieces = req->n_rows;
    out.dims[0] = req->n_rows;
    for (i = 0; i < req->n_rows; i++) {
        if (req->kind == INFER_KS_TEXT) {
            pieces[i].p = req->texts[i];
            pieces[i].len = req->text_lens[i];
        } else {
            pieces[i].p = logits + rows / req->n_rows * vocab * i;
            pieces[i].len = rows / req->n_rows * vocab * sizeof(float);
        }
    }
    if (req->kind == INFER_KS_TEXT) {
        out.name = "text_output";
        out.dtype = INFER_KS_BYTES;
        out.n_dims = req->text_rank;
        out.dims[1] = 1;
    } else {
        out.name = "logits";
        out.dtype = INFER_KS_FP32;
        out.n_dims = 2;
        out.dims[1] = (int64_t) (rows / req->n_rows) * vocab;
    }

    s = infer_ks_infer_body("m", "1", req->id, &out, 1, &len, &hlen);
    FUZZ_CHECK(s != NULL, "no response");
    FUZZ_CHECK(binary ? hlen > 0 && hlen < len : hlen == 0,
               "header length %zu of %zu", hlen, len);
    j = fuzz_json(s, hlen ? hlen : len);
    FUZZ_CHECK(j != NULL, "the response header is not JSON: %.*s",
               (int) (hlen ? hlen : len), s);
    FUZZ_CHECK(req->id == NULL
               || strcmp(json_string_value(json_object_get(j, "id")),
                         req->id) == 0, "id did not round-trip");
    o = json_array_get(json_object_get(j, "outputs"), 0);
    if (binary) {
        FUZZ_CHECK(json_integer_value(json_object_get(json_object_get(o,
                       "parameters"), "binary_data_size"))
                   == (json_int_t) (len - hlen),
                   "binary_data_size is not what follows the header");
    } else {
        data = json_object_get(o, "data");
        FUZZ_CHECK(json_array_size(data) == (req->kind == INFER_KS_TEXT
                                             ? (size_t) req->n_rows
                                             : rows * vocab),
                   "%zu data elements", json_array_size(data));
        for (i = 0; req->kind == INFER_KS_TEXT && i < req->n_rows; i++) {
            o = json_array_get(data, i);
            FUZZ_CHECK(json_string_length(o) == req->text_lens[i]
                       && memcmp(json_string_value(o), req->texts[i],
                                 req->text_lens[i]) == 0,
                       "text %d did not round-trip", i);
        }
        for (k = 0; req->kind == INFER_KS_SCORE && k < rows * vocab; k++) {
            FUZZ_CHECK((float) json_number_value(json_array_get(data, k))
                       == logits[k], "logit %zu did not round-trip", k);
        }
    }
    json_decref(j);
    free(s);
    free(pieces);
    free(logits);

    if (req->kind != INFER_KS_TEXT) {
        return;
    }
    s = infer_ks_generate_event("m", "1", req->texts[0], req->text_lens[0],
                                "stop", &len);
    FUZZ_CHECK(s && len > 8 && memcmp(s, "data: ", 6) == 0, "bad event");
    j = fuzz_json(s + 6, len - 8);
    o = json_object_get(j, "text_output");
    FUZZ_CHECK(json_string_length(o) == req->text_lens[0]
               && memcmp(json_string_value(o), req->texts[0],
                         req->text_lens[0]) == 0,
               "generate text did not round-trip");
    json_decref(j);
    free(s);
}

static void
check_request(const infer_ks_request_t *req, int generate)
{
    int     i;
    size_t  k;

    FUZZ_CHECK(req->n_rows >= 1 && req->n_rows <= INFER_KS_MAX_BATCH,
               "%d rows", req->n_rows);
    FUZZ_CHECK(!generate || (req->kind == INFER_KS_TEXT && req->n_rows == 1),
               "generate without one text");
    if (req->kind == INFER_KS_SCORE) {
        FUZZ_CHECK(req->seq >= 1 && req->ids != NULL, "seq %d", req->seq);
        for (k = 0; k < (size_t) req->n_rows * req->seq; k++) {
            FUZZ_CHECK(req->ids[k] >= 0 && req->ids[k] < VOCAB,
                       "id %d outside the vocabulary", req->ids[k]);
        }
    } else {
        FUZZ_CHECK(req->kind == INFER_KS_TEXT && req->settings != NULL
                   && (req->text_rank == 1 || req->text_rank == 2),
                   "a text request without settings");
        for (i = 0; i < req->n_rows; i++) {
            FUZZ_CHECK(req->texts[i][req->text_lens[i]] == '\0'
                       && utf8_ok(req->texts[i], req->text_lens[i]),
                       "text %d is not terminated UTF-8", i);
            check_settings(&req->settings[i]);
        }
    }
    FUZZ_CHECK(generate || (req->n_outputs >= 1
                            && req->n_outputs <= INFER_KS_MAX_OUTPUTS),
               "%d outputs", req->n_outputs);
    for (i = 0; i < req->n_outputs; i++) {
        FUZZ_CHECK(req->outputs[i] == (req->kind == INFER_KS_SCORE
                                       ? INFER_KS_OUT_LOGITS
                                       : INFER_KS_OUT_TEXT),
                   "output %d is not the kind's", i);
    }
    check_response(req, 0);
    check_response(req, 1);
}

static void
fuzz_body(const char *body, size_t len, size_t header_len, int generate)
{
    int                  rc;
    infer_ks_error_t     err;
    infer_ks_tensors_t   set;
    infer_ks_request_t   req;

    rc = generate ? infer_ks_parse_generate(body, len, &set, &err)
                  : infer_ks_parse_infer(body, len, header_len, &set, &err);
    if (rc != 0) {
        FUZZ_SAY("refused: %s", err.message);
        check_error(&err);
        return;
    }
    check_tensors(&set, body, len);
    rc = infer_ks_interpret(&set, VOCAB, generate, &req, &err);
    infer_ks_tensors_free(&set);
    if (rc != 0) {
        FUZZ_SAY("not for the model: %s", err.message);
        check_error(&err);
        return;
    }
    FUZZ_SAY("accepted: %d rows of %s", req.n_rows,
             req.kind == INFER_KS_SCORE ? "ids" : "text");
    check_request(&req, generate);
    infer_ks_request_free(&req);
}

static void
fuzz_route(const char *s, size_t len)
{
    size_t            v, cut;
    infer_ks_route_t  r;
    infer_ks_error_t  err;

    infer_ks_route(s, len, &r);
    FUZZ_CHECK((r.kind == INFER_KS_ROUTE_NONE) == (r.kind == 0),
               "route kind");
    if (r.model != NULL) {
        FUZZ_CHECK(r.kind >= INFER_KS_ROUTE_MODEL && r.model_len > 0
                   && r.model >= s && r.model + r.model_len <= s + len
                   && memchr(r.model, '/', r.model_len) == NULL,
                   "model name outside its segment");
    } else {
        FUZZ_CHECK(r.kind < INFER_KS_ROUTE_MODEL, "a model route without "
                   "a model");
    }
    if (r.version != NULL) {
        FUZZ_CHECK(r.model != NULL && r.version_len > 0
                   && r.version + r.version_len <= s + len,
                   "version outside the path");
    }

    cut = len / 2;
    if (infer_ks_header_length(s, cut, len, &v, &err) == 0) {
        FUZZ_CHECK(v <= len, "header length %zu past %zu", v, len);
    } else {
        check_error(&err);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char    *body;
    size_t   len, hl;

    if (size < 3) {
        return 0;
    }
    /* a copy of exactly the body, so that ASan sees any read past it */
    len = size - 3;
    body = malloc(len ? len : 1);
    memcpy(body, data + 3, len);

    switch (data[0] & 3) {
    case 0:
        hl = ((size_t) data[1] << 8 | data[2]);
        fuzz_body(body, len, hl, 0);
        break;
    case 1:
        fuzz_body(body, len, len, 0);
        break;
    case 2:
        fuzz_body(body, len, len, 1);
        break;
    default:
        fuzz_route(body, len);
    }
    free(body);
    return 0;
}
