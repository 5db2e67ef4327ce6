/*
 * KServe v2 codec (src/proto/kserve.c).  Expected shapes follow the Open
 * Inference Protocol (REST) and Triton's binary tensor data and generate
 * extensions; binary bodies here are built by hand the way tritonclient
 * lays them out (JSON header, then each binary input's bytes in order,
 * BYTES elements as a 4-byte little-endian length and the bytes).
 */
#include <math.h>

#include <jansson.h>

#include "tap.h"
#include "infer.h"
#include "kserve.h"

#define VOCAB  512

/* A body: the JSON header, then bin (n bytes). */
static char *
body_of(const char *json, const void *bin, size_t n, size_t *len)
{
    size_t  h = strlen(json);
    char   *b = malloc(h + n + 1);

    memcpy(b, json, h);
    if (n) {
        memcpy(b + h, bin, n);
    }
    b[h + n] = '\0';
    *len = h + n;
    return b;
}

/* Parses and interprets; returns 0, or the error's status. */
static int
run(const char *json, const void *bin, size_t n, int generate,
    infer_ks_request_t *req, infer_ks_error_t *err)
{
    char                *b;
    size_t               len;
    int                  rc;
    infer_ks_tensors_t   set;

    err->message[0] = '\0';
    b = body_of(json, bin, n, &len);
    rc = generate ? infer_ks_parse_generate(b, len, &set, err)
                  : infer_ks_parse_infer(b, len, strlen(json), &set, err);
    if (rc == 0) {
        rc = infer_ks_interpret(&set, VOCAB, generate, req, err);
        infer_ks_tensors_free(&set);
    }
    free(b);
    return rc == 0 ? 0 : err->status;
}

static void
bad(const char *json, const void *bin, size_t n, int generate,
    const char *needle, const char *what)
{
    infer_ks_request_t  req;
    infer_ks_error_t    err;
    int                 st;

    st = run(json, bin, n, generate, &req, &err);
    ok(st == 400 && strstr(err.message, needle) != NULL, "400 on %s: %s",
       what, st ? err.message : "(accepted)");
    if (st == 0) {
        infer_ks_request_free(&req);
    }
}

static void
test_routes(void)
{
    static const struct {
        const char            *path;
        infer_ks_route_kind_t  kind;
        const char            *model, *version;
    } cases[] = {
        { "/v2", INFER_KS_ROUTE_SERVER, NULL, NULL },
        { "/v2/", INFER_KS_ROUTE_SERVER, NULL, NULL },
        { "/api/v2", INFER_KS_ROUTE_SERVER, NULL, NULL },
        { "/v2/health/live", INFER_KS_ROUTE_LIVE, NULL, NULL },
        { "/v2/health/ready", INFER_KS_ROUTE_READY, NULL, NULL },
        { "/v2/models/tiny", INFER_KS_ROUTE_MODEL, "tiny", NULL },
        { "/v2/models/tiny/versions/1", INFER_KS_ROUTE_MODEL, "tiny", "1" },
        { "/v2/models/tiny/ready", INFER_KS_ROUTE_MODEL_READY, "tiny",
          NULL },
        { "/v2/models/tiny/versions/7/ready", INFER_KS_ROUTE_MODEL_READY,
          "tiny", "7" },
        { "/v2/models/tiny/infer", INFER_KS_ROUTE_INFER, "tiny", NULL },
        { "/v2/models/a.b-c/versions/1/infer", INFER_KS_ROUTE_INFER,
          "a.b-c", "1" },
        { "/v2/models/tiny/generate", INFER_KS_ROUTE_GENERATE, "tiny",
          NULL },
        { "/v2/models/tiny/generate_stream",
          INFER_KS_ROUTE_GENERATE_STREAM, "tiny", NULL },
        { "/v2/models/tiny/ready/infer", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "/v2/models/tiny/inferx", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "/v2/models/tiny/", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "/v2/models/", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "/v2/models", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "/v2/models/tiny/versions/", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "/v2/health/live/x", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "/v2x/health/live", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "/v1/models", INFER_KS_ROUTE_NONE, NULL, NULL },
        { "", INFER_KS_ROUTE_NONE, NULL, NULL },
    };
    size_t            i;
    int               good;
    infer_ks_route_t  r;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        infer_ks_route(cases[i].path, strlen(cases[i].path), &r);
        good = r.kind == cases[i].kind
               && (cases[i].model == NULL
                   ? r.model == NULL
                   : (r.model && r.model_len == strlen(cases[i].model)
                      && memcmp(r.model, cases[i].model, r.model_len) == 0))
               && (cases[i].version == NULL
                   ? r.version == NULL
                   : (r.version
                      && r.version_len == strlen(cases[i].version)
                      && memcmp(r.version, cases[i].version,
                                r.version_len) == 0));
        ok(good, "route '%s'", cases[i].path);
    }
}

static void
test_header_length(void)
{
    size_t            v;
    infer_ks_error_t  err;

    ok(infer_ks_header_length("120", 3, 200, &v, &err) == 0 && v == 120,
       "Inference-Header-Content-Length 120");
    ok(infer_ks_header_length("200", 3, 200, &v, &err) == 0 && v == 200,
       "the whole body may be the header");
    ok(infer_ks_header_length("201", 3, 200, &v, &err) == -1
       && err.status == 400 && strstr(err.message, "has 200 bytes"),
       "a header longer than the body: %s", err.message);
    ok(infer_ks_header_length("-1", 2, 200, &v, &err) == -1
       && infer_ks_header_length("", 0, 200, &v, &err) == -1
       && infer_ks_header_length("12a", 3, 200, &v, &err) == -1
       && infer_ks_header_length("99999999999999999999999", 23, 200, &v,
                                 &err) == -1,
       "negative, empty, not a number, overflowing: 400");
}

static const char ids_json[] =
    "{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
    "\"shape\":[2,3],\"data\":[[1,403,407],[1,2,511]]}],"
    "\"outputs\":[{\"name\":\"logits\",\"parameters\":{\"binary_data\":"
    "true}}],\"parameters\":{\"logits\":\"last\"},\"id\":\"r1\"}";

static void
test_ids(void)
{
    static const int32_t  want[] = { 1, 403, 407, 1, 2, 511 };
    char                  json[512];
    int32_t               bin32[6];
    int64_t               bin64[6];
    int                   i, same;
    infer_ks_request_t    req;
    infer_ks_error_t      err;

    ok(run(ids_json, NULL, 0, 0, &req, &err) == 0, "JSON INT64 ids: %s",
       err.message);
    same = req.kind == INFER_KS_SCORE && req.n_rows == 2 && req.seq == 3;
    for (i = 0; same && i < 6; i++) {
        same = req.ids[i] == want[i];
    }
    ok(same && req.logits_last && req.n_outputs == 1
       && req.outputs[0] == INFER_KS_OUT_LOGITS && req.binary[0] == 1
       && req.id && strcmp(req.id, "r1") == 0,
       "[2, 3] nested rows, last position, binary logits, id r1");
    infer_ks_request_free(&req);

    for (i = 0; i < 6; i++) {
        bin32[i] = want[i];
        bin64[i] = want[i];
    }
    snprintf(json, sizeof(json), "{\"inputs\":[{\"name\":\"input_ids\","
             "\"datatype\":\"INT32\",\"shape\":[2,3],\"parameters\":"
             "{\"binary_data_size\":24}}]}");
    ok(run(json, bin32, 24, 0, &req, &err) == 0 && req.n_rows == 2
       && req.seq == 3 && memcmp(req.ids, want, sizeof(want)) == 0
       && !req.logits_last && req.binary[0] == 0,
       "binary INT32 ids give the same rows, all positions, JSON logits");
    infer_ks_request_free(&req);

    snprintf(json, sizeof(json), "{\"inputs\":[{\"name\":\"input_ids\","
             "\"datatype\":\"INT64\",\"shape\":[2,3],\"parameters\":"
             "{\"binary_data_size\":48}}],\"parameters\":"
             "{\"binary_data_output\":true}}");
    ok(run(json, bin64, 48, 0, &req, &err) == 0
       && memcmp(req.ids, want, sizeof(want)) == 0 && req.binary[0] == 1,
       "binary INT64 ids; binary_data_output makes logits binary");
    infer_ks_request_free(&req);

    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,2],\"data\":[1,512]}]}", NULL, 0, 0,
        "the id 512 at [0, 1] is outside the vocabulary of 512",
        "an id past the vocabulary");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT32\","
        "\"shape\":[1,2],\"data\":[-3,5]}]}", NULL, 0, 0,
        "the id -3 at [0, 0]", "a negative id");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"FP32\","
        "\"shape\":[1,2],\"data\":[1,5]}]}", NULL, 0, 0,
        "has the datatype FP32, expected INT32 or INT64", "FP32 ids");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[2],\"data\":[1,5]}]}", NULL, 0, 0,
        "has the shape [2], expected [batch, sequence]", "rank 1 ids");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,0],\"data\":[]}]}", NULL, 0, 0,
        "at least one id", "an empty sequence");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[65,1],\"data\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
        "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
        "1,1,1,1,1,1,1,1,1,1,1,1,1]}]}", NULL, 0, 0,
        "a batch of 65 rows, expected 1 to 64", "65 rows");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,2],\"data\":[1,5]},{\"name\":\"max_tokens\","
        "\"datatype\":\"INT32\",\"shape\":[1],\"data\":[4]}]}", NULL, 0, 0,
        "input 'max_tokens' is for text_input", "a setting with ids");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,2],\"data\":[1,5]}],\"outputs\":[{\"name\":"
        "\"text_output\"}]}", NULL, 0, 0, "this request gives logits",
        "text_output of ids");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,2],\"data\":[1,5]}],\"outputs\":[{\"name\":"
        "\"probs\"}]}", NULL, 0, 0, "unknown output 'probs'",
        "an unknown output");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,2],\"data\":[1,5]}],\"outputs\":[{\"name\":"
        "\"logits\"},{\"name\":\"logits\"}]}", NULL, 0, 0,
        "asked for twice", "an output twice");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,2],\"data\":[1,5]}],\"parameters\":{\"logits\":"
        "\"first\"}}", NULL, 0, 0, "must be \"last\" or \"all\"",
        "logits: first");
}

static void
test_tensors(void)
{
    static const unsigned char  strs[] = {
        5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0
    };
    unsigned char       buf[64];

    /* shapes and data */
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,-2],\"data\":[1,2]}]}", NULL, 0, 0,
        "dimension 1 of its shape is -2, a negative size", "a negative dim");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1099511627777,1],\"data\":[1]}]}", NULL, 0, 0,
        "dimension 0 of its shape (1099511627777) makes more elements",
        "a huge dim");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1048576,1048576,1048576],\"data\":[1]}]}", NULL, 0, 0,
        "more elements than a request can hold", "a huge product");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,3],\"data\":[1,2]}]}", NULL, 0, 0,
        "its data has 2 elements, its shape 3", "too little data");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"data\":[1,2]}]}", NULL, 0, 0,
        "more elements than the 1 of its shape", "too much data");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"data\":[[[[[[[[[1]]]]]]]]]}]}", NULL, 0, 0,
        "nested deeper than 8", "data nested 9 deep");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,2],\"data\":[1,\"2\"]}]}", NULL, 0, 0,
        "element 1 is a string, expected an integer for INT64",
        "a string in INT64 data");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT32\","
        "\"shape\":[1,1],\"data\":[4294967296]}]}", NULL, 0, 0,
        "out of the range of INT32", "an INT32 out of range");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"temperature\","
        "\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1e39]}]}", NULL, 0, 0,
        "out of the range of FP32", "an FP32 out of range");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT128\","
        "\"shape\":[1,1],\"data\":[1]}]}", NULL, 0, 0,
        "unknown datatype 'INT128'", "an unknown datatype");
    bad("{\"inputs\":[{\"name\":\"temperature\",\"datatype\":\"FP16\","
        "\"shape\":[1],\"data\":[1]}]}", NULL, 0, 0,
        "FP16 data must be binary", "FP16 as JSON");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1]}]}", NULL, 0, 0, "has no data", "no data");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"data\":[1]},{\"name\":\"input_ids\","
        "\"datatype\":\"INT64\",\"shape\":[1,1],\"data\":[1]}]}", NULL, 0,
        0, "appears twice", "an input twice");
    bad("{\"inputs\":[]}", NULL, 0, 0, "needs inputs", "no inputs");
    bad("[1,2]", NULL, 0, 0, "must be a JSON object", "an array body");
    bad("{\"inputs\":[{\"name\":\"input_ids\"", NULL, 0, 0,
        "not valid JSON", "a truncated body");
    bad("{\"inputs\":[{\"name\":\"foo\",\"datatype\":\"INT64\","
        "\"shape\":[1],\"data\":[1]}]}", NULL, 0, 0, "unknown input 'foo'",
        "an unknown input");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"data\":[1],\"parameters\":"
        "{\"shared_memory_region\":\"r\"}}]}", NULL, 0, 0,
        "shared memory is not supported", "shared memory");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"data\":[1]}],\"parameters\":{\"sequence_id\":"
        "7}}", NULL, 0, 0, "sequences are not supported", "sequence_id");

    /* binary framing */
    memset(buf, 0, sizeof(buf));
    buf[0] = 1;
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"parameters\":{\"binary_data_size\":8}}]}", buf, 7,
        0, "the body has 7 bytes after the JSON header, but the inputs' "
        "binary_data_size add up to 8", "binary data one byte short");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"parameters\":{\"binary_data_size\":8}}]}", buf, 9,
        0, "the body has 9 bytes", "binary data one byte long");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"parameters\":{\"binary_data_size\":8}}]}", NULL,
        0, 0, "the body has 0 bytes after the JSON header",
        "binary_data_size without binary data");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"parameters\":{\"binary_data_size\":"
        "99999999999999}}]}", buf, 8, 0, "add up to 99999999999999",
        "a huge binary_data_size");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,2],\"parameters\":{\"binary_data_size\":8}}]}", buf, 8,
        0, "binary_data_size is 8, but its shape [1, 2] of INT64 takes 16",
        "a size that does not match the shape");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"data\":[1],\"parameters\":{\"binary_data_size\":"
        "8}}]}", buf, 8, 0, "both data and binary_data_size",
        "data and binary data");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"parameters\":{\"binary_data_size\":-8}}]}", buf,
        8, 0, "non-negative integer", "a negative binary_data_size");
    bad("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
        "\"shape\":[1,1],\"data\":[1]}]}", buf, 4, 0,
        "the body has 4 bytes after the JSON header",
        "bytes after a header no input claims");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[2],\"parameters\":{\"binary_data_size\":12}}]}", strs,
        12, 0, "ends inside element 1 of 2", "a BYTES element cut short");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"parameters\":{\"binary_data_size\":13}}]}", strs,
        13, 0, "has 4 bytes past its 1 elements", "BYTES data left over");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1000],\"parameters\":{\"binary_data_size\":13}}]}", strs,
        13, 0, "cannot hold the 1000 elements", "BYTES count past the size");
    buf[0] = 2;
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"stream\",\"datatype\":"
        "\"BOOL\",\"shape\":[1],\"parameters\":{\"binary_data_size\":1}}]}",
        buf, 1, 0, "BOOL element 0 is 2", "a BOOL byte of 2");
}

static void
test_text(void)
{
    static const unsigned char  two[] = {
        5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 2, 0, 0, 0, 'h', 'i'
    };
    infer_ks_request_t          req;
    infer_ks_error_t            err;
    infer_ks_settings_t        *s;

    ok(run("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
           "\"shape\":[1,1],\"data\":[\"Once upon\"]}]}", NULL, 0, 0, &req,
           &err) == 0 && req.kind == INFER_KS_TEXT && req.n_rows == 1
       && req.text_rank == 2 && req.text_lens[0] == 9
       && strcmp(req.texts[0], "Once upon") == 0 && req.n_outputs == 1
       && req.outputs[0] == INFER_KS_OUT_TEXT,
       "text_input [1, 1] gives text_output");
    s = req.settings;
    ok(s && s->max_tokens == -1 && s->temperature == 1.0f
       && s->top_p == 1.0f && s->top_k == 0 && !s->has_seed
       && s->end_id == -1 && s->exclude_input && s->n_stop == 0
       && s->repetition_penalty == 1.0f,
       "defaults: max_tokens not given, temperature 1, top_p 1, "
       "exclude_input_in_output");
    infer_ks_request_free(&req);

    ok(run("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
           "\"shape\":[2],\"parameters\":{\"binary_data_size\":15}},"
           "{\"name\":\"max_tokens\",\"datatype\":\"INT32\",\"shape\":[2,1],"
           "\"data\":[3,7]},{\"name\":\"temperature\",\"datatype\":\"FP32\","
           "\"shape\":[1],\"data\":[0]},{\"name\":\"stop_words\","
           "\"datatype\":\"BYTES\",\"shape\":[2,2],\"data\":[[\".\",\"\"],"
           "[\"!\",\"?\"]]},{\"name\":\"random_seed\",\"datatype\":"
           "\"UINT64\",\"shape\":[1],\"data\":[42]},{\"name\":\"top_p\","
           "\"datatype\":\"FP64\",\"shape\":[1],\"data\":[0]}],"
           "\"parameters\":{\"max_tokens\":99,\"top_k\":5}}", two, 15, 0,
           &req, &err) == 0, "binary BYTES rows with settings: %s",
       err.message);
    s = req.settings;
    ok(req.n_rows == 2 && strcmp(req.texts[0], "hello") == 0
       && strcmp(req.texts[1], "hi") == 0 && req.text_rank == 1
       && s[0].max_tokens == 3 && s[1].max_tokens == 7
       && s[0].temperature == 0.0f && s[1].temperature == 0.0f
       && s[0].top_k == 5 && s[1].top_k == 5
       && s[0].seed == 42 && s[1].has_seed
       && s[0].top_p == 1.0f
       && s[0].n_stop == 1 && strcmp(s[0].stop[0], ".") == 0
       && s[1].n_stop == 2 && strcmp(s[1].stop[1], "?") == 0,
       "per-row max_tokens win over the parameter, one temperature for "
       "all, top_k from parameters, stop words per row, top_p 0 is off");
    infer_ks_request_free(&req);

    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"max_tokens\","
        "\"datatype\":\"FP32\",\"shape\":[1],\"data\":[4]}]}", NULL, 0, 0,
        "'max_tokens' has the datatype FP32, expected an integer type",
        "FP32 max_tokens");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"temperature\","
        "\"datatype\":\"INT32\",\"shape\":[1],\"data\":[1]}]}", NULL, 0, 0,
        "expected FP32 or FP64", "INT32 temperature");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"parameters\":{\"binary_data_size\":7}}]}",
        "\3\0\0\0a\xc3(", 7, 0, "element 0 is not UTF-8 (at byte 1)",
        "a text that is not UTF-8");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"INT32\","
        "\"shape\":[1],\"data\":[1]}]}", NULL, 0, 0,
        "'text_input' has the datatype INT32, expected BYTES",
        "INT32 text_input");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1,2],\"data\":[\"a\",\"b\"]}]}", NULL, 0, 0,
        "expected [batch] or [batch, 1]", "text_input [1, 2]");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[2],\"data\":[\"a\",\"b\"]},{\"name\":\"max_tokens\","
        "\"datatype\":\"INT32\",\"shape\":[3],\"data\":[1,2,3]}]}", NULL, 0,
        0, "has 3 elements, expected 1 or one for each of the 2 rows",
        "3 settings for 2 rows");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"max_tokens\","
        "\"datatype\":\"INT32\",\"shape\":[1],\"data\":[-1]}]}", NULL, 0, 0,
        "is -1, out of the range", "max_tokens -1");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"top_p\","
        "\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1.5]}]}", NULL, 0, 0,
        "is 1.5, out of the range [0, 1]", "top_p 1.5");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"end_id\","
        "\"datatype\":\"INT32\",\"shape\":[1],\"data\":[512]}]}", NULL, 0, 0,
        "outside the vocabulary of 512", "end_id 512");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"beam_width\","
        "\"datatype\":\"INT32\",\"shape\":[1],\"data\":[2]}]}", NULL, 0, 0,
        "only 1 is supported", "beam_width 2");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"bad_words\","
        "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"no\"]}]}", NULL, 0,
        0, "'bad_words' is not supported", "bad_words");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]}],\"parameters\":"
        "{\"return_log_probs\":true}}", NULL, 0, 0,
        "parameter 'return_log_probs' is not supported", "return_log_probs");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]}],\"parameters\":"
        "{\"max_tokens\":\"ten\"}}", NULL, 0, 0,
        "parameter 'max_tokens': element 0 is a string, expected an integer",
        "a string max_tokens parameter");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"seed\","
        "\"datatype\":\"UINT64\",\"shape\":[1],\"data\":[1]},{\"name\":"
        "\"random_seed\",\"datatype\":\"UINT64\",\"shape\":[1],\"data\":"
        "[2]}]}", NULL, 0, 0, "is given twice", "seed and random_seed");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"min_length\","
        "\"datatype\":\"INT32\",\"shape\":[1],\"data\":[5]},{\"name\":"
        "\"max_tokens\",\"datatype\":\"INT32\",\"shape\":[1],\"data\":"
        "[4]}]}", NULL, 0, 0, "min_length 5 is more than max_tokens 4",
        "min_length past max_tokens");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"input_ids\","
        "\"datatype\":\"INT32\",\"shape\":[1,1],\"data\":[1]}]}", NULL, 0, 0,
        "not both", "ids and text");
    bad("{\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\","
        "\"shape\":[1],\"data\":[\"x\"]},{\"name\":\"stop_words\","
        "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"a\\u0000b\"]}]}",
        NULL, 0, 0, "without NUL", "a stop word with NUL");
}

static void
test_generate(void)
{
    infer_ks_request_t  req;
    infer_ks_error_t    err;
    infer_ks_settings_t *s;

    ok(run("{\"text_input\":\"Once\",\"max_tokens\":20,\"stop_words\":"
           "[\".\",\"!\"],\"bad_words\":\"\",\"parameters\":{\"temperature\":"
           "0,\"max_tokens\":5,\"stream\":false,\"seed\":7,\"whatever\":1},"
           "\"unknown\":[1]}", NULL, 0, 1, &req, &err) == 0,
       "generate body: %s", err.message);
    s = req.settings;
    ok(req.kind == INFER_KS_TEXT && req.n_rows == 1
       && strcmp(req.texts[0], "Once") == 0 && s[0].max_tokens == 20
       && s[0].temperature == 0.0f && s[0].seed == 7 && s[0].n_stop == 2
       && strcmp(s[0].stop[1], "!") == 0 && !s[0].stream,
       "members are inputs and win over parameters; unknown ones ignored");
    infer_ks_request_free(&req);

    bad("{\"parameters\":{\"max_tokens\":5}}", NULL, 0, 1,
        "needs text_input", "generate without text_input");
    bad("{\"text_input\":[\"a\",\"b\"]}", NULL, 0, 1, "must be one string",
        "generate with two texts");
    bad("{\"text_input\":7}", NULL, 0, 1,
        "element 0 is an integer, expected a string", "a number text");
    bad("{\"text_input\":\"a\",\"max_tokens\":2.5}", NULL, 0, 1,
        "input 'max_tokens': element 0 is a real number", "2.5 tokens");
    bad("{\"text_input\":\"a\",\"temperature\":{\"x\":1}}", NULL, 0, 1,
        "must be a string, number, boolean or array", "an object setting");
    bad("{\"text_input\":\"a\",\"parameters\":[1]}", NULL, 0, 1,
        "parameters must be an object", "parameters an array");
    bad("{\"text_input\":\"a\"", NULL, 0, 1, "not valid JSON",
        "a truncated generate body");
}

/* The JSON header of a response and the bytes after it. */
static json_t *
header(const char *body, size_t len, size_t hlen)
{
    json_error_t  jerr;

    return json_loadb(body, hlen ? hlen : len, 0, &jerr);
}

static void
test_responses(void)
{
    static const float       logits[6] = {
        -6.22291279f, 8.4043417f, 1e-30f, 3.4028235e38f, -0.0f, 0.1f
    };
    char                    *body;
    size_t                   len, hlen, i;
    float                    back[6];
    json_t                  *j, *o, *data;
    int                      same;
    infer_ks_error_t         err;
    infer_ks_piece_t         rows[2], texts[2];
    infer_ks_output_t        out[2];

    rows[0].p = logits;
    rows[0].len = 12;
    rows[1].p = logits + 3;
    rows[1].len = 12;
    memset(out, 0, sizeof(out));
    out[0].name = "logits";
    out[0].dtype = INFER_KS_FP32;
    out[0].n_dims = 2;
    out[0].dims[0] = 2;
    out[0].dims[1] = 3;
    out[0].pieces = rows;
    out[0].n_pieces = 2;

    body = infer_ks_infer_body("tiny", "1", "r\"1", out, 1, &len, &hlen);
    j = body ? header(body, len, hlen) : NULL;
    o = json_array_get(json_object_get(j, "outputs"), 0);
    data = json_object_get(o, "data");
    same = json_array_size(data) == 6 && hlen == 0;
    for (i = 0; same && i < 6; i++) {
        same = (float) json_number_value(json_array_get(data, i))
               == logits[i];
    }
    ok(same && strcmp(json_string_value(json_object_get(j, "id")), "r\"1")
       == 0 && strcmp(json_string_value(json_object_get(j, "model_name")),
                      "tiny") == 0
       && json_integer_value(json_array_get(json_object_get(o, "shape"), 1))
          == 3,
       "JSON FP32 logits print back to the same floats: %s", body);
    json_decref(j);
    free(body);

    out[0].binary = 1;
    body = infer_ks_infer_body("tiny", "1", NULL, out, 1, &len, &hlen);
    j = body ? header(body, len, hlen) : NULL;
    o = json_array_get(json_object_get(j, "outputs"), 0);
    memcpy(back, body + hlen, sizeof(back));
    ok(j && hlen > 0 && len == hlen + 24
       && json_integer_value(json_object_get(json_object_get(o,
                             "parameters"), "binary_data_size")) == 24
       && json_object_get(o, "data") == NULL
       && memcmp(back, logits, 24) == 0,
       "binary FP32 logits: binary_data_size 24 after a %zu-byte header",
       hlen);
    json_decref(j);
    free(body);

    texts[0].p = "ok \xff\"\n";
    texts[0].len = 6;
    texts[1].p = "";
    texts[1].len = 0;
    out[1].name = "text_output";
    out[1].dtype = INFER_KS_BYTES;
    out[1].n_dims = 1;
    out[1].dims[0] = 2;
    out[1].pieces = texts;
    out[1].n_pieces = 2;
    out[1].binary = 0;
    body = infer_ks_infer_body("tiny", "1", NULL, &out[1], 1, &len, &hlen);
    j = body ? header(body, len, hlen) : NULL;
    data = json_object_get(json_array_get(json_object_get(j, "outputs"), 0),
                           "data");
    ok(j && hlen == 0 && json_array_size(data) == 2
       && strcmp(json_string_value(json_array_get(data, 0)),
                 "ok \xEF\xBF\xBD\"\n") == 0,
       "JSON BYTES: a byte that is not UTF-8 becomes U+FFFD");
    json_decref(j);
    free(body);

    out[1].binary = 1;
    body = infer_ks_infer_body("tiny", "1", NULL, out, 2, &len, &hlen);
    j = body ? header(body, len, hlen) : NULL;
    ok(j && len == hlen + 24 + 4 + 6 + 4
       && memcmp(body + hlen + 24, "\x06\0\0\0ok \xff\"\n\0\0\0\0", 14)
          == 0,
       "binary outputs follow the header in order, BYTES length-prefixed");
    json_decref(j);
    free(body);

    body = infer_ks_generate_event("tiny", "1", "a\tb", 3, "length", &len);
    ok(body && len > 8 && memcmp(body, "data: ", 6) == 0
       && memcmp(body + len - 2, "\n\n", 2) == 0
       && (j = header(body + 6, len - 8, 0)) != NULL
       && strcmp(json_string_value(json_object_get(j, "text_output")),
                 "a\tb") == 0
       && strcmp(json_string_value(json_object_get(j, "finish_reason")),
                 "length") == 0,
       "a generate_stream event: %.*s", (int) len - 2, body);
    json_decref(j);
    free(body);

    infer_ks_set_error(&err, 400, "bad \xc3 byte");
    body = infer_ks_error_body(&err, &len);
    j = body ? header(body, len, 0) : NULL;
    ok(j && strcmp(json_string_value(json_object_get(j, "error")),
                   "bad \xEF\xBF\xBD byte") == 0,
       "{\"error\": message} stays JSON with a broken character");
    json_decref(j);
    free(body);

    body = infer_ks_model_metadata("tiny", "1", VOCAB, &len);
    j = body ? header(body, len, 0) : NULL;
    o = json_array_get(json_object_get(j, "outputs"), 0);
    ok(j && json_array_size(json_object_get(j, "inputs")) >= 10
       && json_integer_value(json_array_get(json_object_get(o, "shape"), 2))
          == VOCAB,
       "model metadata lists the inputs and logits [-1, -1, 512]");
    json_decref(j);
    free(body);

    body = infer_ks_server_metadata("1.22.1", &len);
    j = body ? header(body, len, 0) : NULL;
    ok(j && strcmp(json_string_value(json_array_get(json_object_get(j,
                   "extensions"), 0)), "binary_tensor_data") == 0,
       "server metadata names the binary tensor data extension");
    json_decref(j);
    free(body);
}

int
main(void)
{
    test_routes();
    test_header_length();
    test_ids();
    test_tensors();
    test_text();
    test_generate();
    test_responses();
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}
