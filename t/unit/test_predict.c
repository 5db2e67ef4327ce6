/*
 * The /predict codec (src/proto/predict.c): content negotiation, the JSON,
 * MessagePack and protobuf decoders on good and bad bodies, tokenizing
 * with stories260K's tokenizer (ids from Hugging Face tokenizers: "Once
 * upon a time" is [1, 403, 407, 261, 378]), and every reply encoding
 * decoded again with jansson, msgpack-c and protobuf-c.
 */
#include <math.h>

#include <jansson.h>
#include <msgpack.h>

#include "tap.h"
#include "grpc_service.pb-c.h"
#include "infer.h"
#include "model.h"
#include "predict.h"

#define MODEL_DIR  "../shared/models/stories260K"

/* ---- content negotiation ------------------------------------------------ */

static int
ct(const char *s)
{
    return infer_pred_content_format(s, s ? strlen(s) : 0);
}

static int
acc(const char *s, infer_pred_format_t request)
{
    return infer_pred_accept_format(s, s ? strlen(s) : 0, request);
}

static void
test_negotiation(void)
{
    is_int(ct(NULL), INFER_PRED_JSON, "no Content-Type: JSON");
    is_int(ct("application/json; charset=utf-8"), INFER_PRED_JSON,
           "application/json with a charset");
    is_int(ct("application/x-www-form-urlencoded"), INFER_PRED_JSON,
           "curl -d's default type is read as JSON");
    is_int(ct("Application/MsgPack"), INFER_PRED_MSGPACK,
           "media types are case-insensitive");
    is_int(ct("application/x-msgpack"), INFER_PRED_MSGPACK,
           "application/x-msgpack");
    is_int(ct("application/vnd.msgpack"), INFER_PRED_MSGPACK,
           "application/vnd.msgpack");
    is_int(ct(" application/x-protobuf ;proto=inference.ModelInferRequest"),
           INFER_PRED_PROTOBUF, "application/x-protobuf with a parameter");
    is_int(ct("application/protobuf"), INFER_PRED_PROTOBUF,
           "application/protobuf");
    is_int(ct("text/plain"), -1, "text/plain is none of ours");
    is_int(ct("*/*"), -1, "a wildcard is no Content-Type");
    is_int(ct("application/jsonx"), -1, "no prefix match");

    is_int(acc(NULL, INFER_PRED_MSGPACK), INFER_PRED_MSGPACK,
           "no Accept: the request's own format");
    is_int(acc("*/*", INFER_PRED_PROTOBUF), INFER_PRED_PROTOBUF,
           "*/*: the request's own format");
    is_int(acc("application/msgpack", INFER_PRED_JSON), INFER_PRED_MSGPACK,
           "Accept picks the reply's format");
    is_int(acc("text/html, application/x-protobuf;q=0.9", INFER_PRED_JSON),
           INFER_PRED_PROTOBUF, "types not ours are skipped");
    is_int(acc("application/json;q=0.5, application/msgpack",
               INFER_PRED_JSON), INFER_PRED_MSGPACK, "the highest q wins");
    is_int(acc("*/*, application/x-protobuf", INFER_PRED_JSON),
           INFER_PRED_PROTOBUF, "a named type before a wildcard of the same q");
    is_int(acc("application/msgpack;q=0", INFER_PRED_JSON), -1,
           "q=0 refuses a type");
    is_int(acc("text/html", INFER_PRED_JSON), -1, "nothing acceptable: -1");
    is_str(infer_pred_content_type(INFER_PRED_MSGPACK), "application/msgpack",
           "MessagePack replies' Content-Type");
}

/* ---- decoders ------------------------------------------------------------ */

static int
parse(infer_pred_format_t f, const void *body, size_t len,
    infer_pred_request_t *req, infer_pred_error_t *err)
{
    memset(req, 0, sizeof(*req));
    req->format = f;
    req->reply = f;
    err->status = 0;
    err->message[0] = '\0';
    return infer_pred_parse(body, len, req, err);
}

/* A body that must fail with 400 and a message holding want. */
static void
bad(infer_pred_format_t f, const void *body, size_t len, const char *want,
    const char *what)
{
    infer_pred_request_t  req;
    infer_pred_error_t    err;
    int                   rc;

    rc = parse(f, body, len, &req, &err);
    ok(rc == -1 && err.status == 400 && strstr(err.message, want) != NULL,
       "400 on %s: %s", what, rc ? err.message : "(accepted)");
    infer_pred_request_free(&req);
}

static void
bad_json(const char *body, const char *want, const char *what)
{
    bad(INFER_PRED_JSON, body, strlen(body), want, what);
}

static int
same_ids(const infer_pred_request_t *req, int row, const int32_t *ids, int n)
{
    return row < req->n_rows && req->n_ids[row] == n
           && memcmp(req->ids[row], ids, n * sizeof(int32_t)) == 0;
}

static void
test_json(void)
{
    static const int32_t   r0[] = { 1, 403, 407 }, r1[] = { 1 };
    infer_pred_request_t   req;
    infer_pred_error_t     err;
    const char            *body;

    body = "{\"input\": [[1, 403, 407], [1]]}";
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && req.n_rows == 2 && same_ids(&req, 0, r0, 3)
       && same_ids(&req, 1, r1, 1) && req.output == INFER_PRED_ALL
       && req.texts == NULL && !req.base64 && !req.f16 && req.model == NULL,
       "a ragged batch of ids, all positions by default");
    infer_pred_request_free(&req);

    body = "{\"text\": \"Once upon a time\", \"output\": \"last\", "
           "\"dtype\": \"float16\", \"encoding\": \"base64\", "
           "\"model\": \"tiny\"}";
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && req.n_rows == 1 && req.texts != NULL
       && strcmp(req.texts[0], "Once upon a time") == 0
       && req.text_lens[0] == 16 && req.output == INFER_PRED_LAST
       && req.f16 && req.base64 && strcmp(req.model, "tiny") == 0,
       "one text, the last position, float16 in base64, a model");
    infer_pred_request_free(&req);

    body = "{\"text\": [\"a\", \"\"], \"output\": \"logprobs\", \"top_k\": 20}";
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && req.n_rows == 2 && req.text_lens[1] == 0
       && req.output == INFER_PRED_LOGPROBS && req.top_k == 20,
       "a list of texts, logprobs with 20 alternatives");
    infer_pred_request_free(&req);

    bad_json("{\"input\": [[1, 2]", "malformed JSON", "truncated JSON");
    bad_json("[[1, 2]]", "must be a JSON object", "a bare list");
    bad_json("{}", "no field \"input\"", "neither input nor text");
    bad_json("{\"input\": [[1]], \"text\": \"a\"}", "not both",
             "input and text");
    bad_json("{\"text\": \"a\", \"input\": [[1]]}", "not both",
             "text and input");
    bad_json("{\"input\": [1, 2, 3]}", "list of token id lists",
             "a flat list of ids");
    bad_json("{\"input\": []}", "list of token id lists", "an empty batch");
    bad_json("{\"input\": [[1], 2]}", "input[1] is not a list",
             "a row that is no list");
    bad_json("{\"input\": [[1, -1]]}", "input[0][1] is not a token id",
             "a negative id");
    bad_json("{\"input\": [[1, 2.5]]}", "input[0][1] is not a token id",
             "a fractional id");
    bad_json("{\"input\": [[1, 4294967296]]}", "input[0][1]",
             "an id beyond 32 bits");
    bad_json("{\"input\": [[\"1\"]]}", "input[0][0]", "an id as a string");
    bad_json("{\"text\": 5}", "\"text\" must be a string", "a numeric text");
    bad_json("{\"text\": [\"a\", null]}", "\"text\" must be a string",
             "a null in the texts");
    bad_json("{\"input\": [[1]], \"output\": \"first\"}",
             "\"output\" cannot be \"first\"", "an unknown output");
    bad_json("{\"input\": [[1]], \"output\": 1}", "must be a string",
             "a numeric output");
    bad_json("{\"input\": [[1]], \"output\": \"logprobs\", \"top_k\": 21}",
             "from 0 to 20", "top_k 21");
    bad_json("{\"input\": [[1]], \"output\": \"logprobs\", \"top_k\": -1}",
             "from 0 to 20", "a negative top_k");
    bad_json("{\"input\": [[1]], \"output\": \"logprobs\", \"top_k\": 2.0}",
             "must be an integer", "a fractional top_k");
    bad_json("{\"input\": [[1]], \"top_k\": 2}", "goes with",
             "top_k without logprobs");
    bad_json("{\"input\": [[1]], \"encoding\": \"hex\"}", "\"encoding\"",
             "an unknown encoding");
    bad_json("{\"input\": [[1]], \"dtype\": \"bfloat16\"}", "\"dtype\"",
             "an unknown dtype");
    bad_json("{\"input\": [[1]], \"output\": \"logprobs\", "
             "\"dtype\": \"float16\"}", "logprobs are float32",
             "dtype with logprobs");
    bad_json("{\"input\": [[1]], \"output\": \"logprobs\", "
             "\"encoding\": \"base64\"}", "logprobs come as numbers",
             "base64 with logprobs");
    bad_json("{\"input\": [[1]], \"model\": \"\"}", "must name a model",
             "an empty model");
    bad_json("{\"input\": [[1]], \"inputs\": 1}", "unknown field \"inputs\"",
             "an unknown field");
    bad_json("{\"input\": [[1]], \"input\": [[2]]}", "malformed JSON",
             "a duplicate field");
    bad_json("{\"input\": [[1]], \"\xff\": 1}", "malformed JSON",
             "a key that is not UTF-8");
}

/* MessagePack bodies built with msgpack-c. */
typedef struct {
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
} mp_t;

static void
mp_init(mp_t *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void
mp_str(mp_t *m, const char *s)
{
    msgpack_pack_str(&m->pk, strlen(s));
    msgpack_pack_str_body(&m->pk, s, strlen(s));
}

static void
bad_mp(mp_t *m, const char *want, const char *what)
{
    bad(INFER_PRED_MSGPACK, m->sb.data, m->sb.size, want, what);
    msgpack_sbuffer_destroy(&m->sb);
}

static void
test_msgpack(void)
{
    static const int32_t   r0[] = { 1, 403, 407 }, r1[] = { 300, 2 };
    infer_pred_request_t   req;
    infer_pred_error_t     err;
    mp_t                   m;
    int                    i;
    char                   deep[64];

    mp_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mp_str(&m, "input");
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_uint8(&m.pk, 1);
    msgpack_pack_uint16(&m.pk, 403);
    msgpack_pack_int64(&m.pk, 407);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_uint32(&m.pk, 300);
    msgpack_pack_int8(&m.pk, 2);
    mp_str(&m, "output");
    mp_str(&m, "logprobs");
    mp_str(&m, "top_k");
    msgpack_pack_int(&m.pk, 3);
    ok(parse(INFER_PRED_MSGPACK, m.sb.data, m.sb.size, &req, &err) == 0
       && req.n_rows == 2 && same_ids(&req, 0, r0, 3)
       && same_ids(&req, 1, r1, 2) && req.output == INFER_PRED_LOGPROBS
       && req.top_k == 3, "MessagePack: ids of every integer width, "
       "logprobs with 3 alternatives");
    infer_pred_request_free(&req);
    msgpack_sbuffer_destroy(&m.sb);

    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "text");
    msgpack_pack_array(&m.pk, 2);
    mp_str(&m, "Once");
    mp_str(&m, "upon");
    ok(parse(INFER_PRED_MSGPACK, m.sb.data, m.sb.size, &req, &err) == 0
       && req.n_rows == 2 && strcmp(req.texts[1], "upon") == 0,
       "MessagePack: a list of texts");
    infer_pred_request_free(&req);
    msgpack_sbuffer_destroy(&m.sb);

    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "input");
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_int(&m.pk, 1);
    bad(INFER_PRED_MSGPACK, m.sb.data, m.sb.size - 1, "malformed MessagePack",
        "MessagePack cut short");
    msgpack_pack_nil(&m.pk);
    bad_mp(&m, "1 bytes after", "MessagePack with a byte after the map");

    bad(INFER_PRED_MSGPACK, "\xdd\xff\xff\xff\xff", 5, "more elements than",
        "an array header announcing 4 billion elements");
    bad(INFER_PRED_MSGPACK, "\xdf\x00\x10\x00\x00\xa1x", 7,
        "more elements than", "a map header announcing a million pairs");
    bad(INFER_PRED_MSGPACK, "\x81\xa5input\xc6\x7f\xff\xff\xff", 12,
        "ends inside", "a bin longer than the body");
    bad(INFER_PRED_MSGPACK, "\xc1", 1, "0xc1", "the never-used byte 0xc1");
    bad(INFER_PRED_MSGPACK, "", 0, "ends inside", "an empty body");
    bad(INFER_PRED_MSGPACK, "\x93\x01\x02\x03", 4, "must be a MessagePack map",
        "an array at the top");
    for (i = 0; i < 40; i++) {
        deep[i] = (char) 0x91;          /* [[[...]]] */
    }
    deep[40] = 0x01;
    bad(INFER_PRED_MSGPACK, deep, 41, "malformed MessagePack",
        "arrays nested 40 deep");

    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    msgpack_pack_int(&m.pk, 1);
    msgpack_pack_int(&m.pk, 1);
    bad_mp(&m, "keys must be strings", "a numeric key");

    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "output");
    mp_str(&m, "last");
    mp_str(&m, "output");
    mp_str(&m, "all");
    bad_mp(&m, "duplicate field \"output\"", "a duplicate key");

    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "input");
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_int(&m.pk, -5);
    bad_mp(&m, "input[0][0] is not a token id", "a negative id");

    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "input");
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_float(&m.pk, 1.0f);
    bad_mp(&m, "input[0][0] is not a token id", "a float id");

    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "text");
    mp_str(&m, "a");
    mp_str(&m, "top_k");
    mp_str(&m, "3");
    bad_mp(&m, "\"top_k\" must be an integer", "top_k as a string");

    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "text");
    msgpack_pack_bin(&m.pk, 1);
    msgpack_pack_bin_body(&m.pk, "a", 1);
    bad_mp(&m, "\"text\" must be a string", "text as bin");

    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_str(&m, "text");
    mp_str(&m, "a");
    mp_str(&m, "encoding");
    mp_str(&m, "base64");
    bad_mp(&m, "binary already", "base64 with a MessagePack reply");

    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    msgpack_pack_str(&m.pk, 3);
    msgpack_pack_str_body(&m.pk, "\x01\"\xfe", 3);
    msgpack_pack_nil(&m.pk);
    bad_mp(&m, "unknown field \"?\"?\"", "a key of control bytes, quoted");
}

/* protobuf bodies built with protobuf-c. */
typedef Inference__ModelInferRequest__InferInputTensor  in_t;

static uint8_t *
pb_pack(Inference__ModelInferRequest *m, size_t *len)
{
    uint8_t  *p;

    *len = inference__model_infer_request__get_packed_size(m);
    p = malloc(*len + 1);
    inference__model_infer_request__pack(m, p);
    return p;
}

static void
pb_bad(Inference__ModelInferRequest *m, const char *want, const char *what)
{
    size_t    len;
    uint8_t  *p = pb_pack(m, &len);

    bad(INFER_PRED_PROTOBUF, p, len, want, what);
    free(p);
}

static int
pb_parse(Inference__ModelInferRequest *m, infer_pred_request_t *req,
    infer_pred_error_t *err)
{
    int       rc;
    size_t    len;
    uint8_t  *p = pb_pack(m, &len);

    rc = parse(INFER_PRED_PROTOBUF, p, len, req, err);
    free(p);
    return rc;
}

static void
test_protobuf(void)
{
    static const int32_t  r0[] = { 1, 403, 407 }, r1[] = { 1, 5, 6 };
    static const int32_t  f0[] = { 1, 403 }, f1[] = { 9, 8, 7, 6 };
    int32_t                                         ids32[6] = {
        1, 403, 407, 1, 5, 6 };
    int64_t                                         ids64[6] = {
        1, 403, 9, 8, 7, 6 }, lens64[2] = { 2, 4 };
    int64_t                                         shape2[2] = { 2, 3 };
    int64_t                                         shape1[1] = { 6 };
    int64_t                                         shape_b[1] = { 2 };
    int64_t                                         neg[2] = { 2, -3 };
    uint8_t                                         rawtext[32];
    ProtobufCBinaryData                             raw[2], strs[2];
    in_t                                            t0, t1, *ins[2];
    Inference__InferTensorContents                  c0, c1;
    Inference__ModelInferRequest                    m;
    Inference__InferParameter                       pv, pv2;
    Inference__ModelInferRequest__ParametersEntry   pe, pe2, *pes[2];
    Inference__ModelInferRequest__InferRequestedOutputTensor  ro, *ros[1];
    infer_pred_request_t                            req;
    infer_pred_error_t                              err;
    uint32_t                                        k;

    /* [2, 3] INT32 in typed contents, with parameters and an id */
    inference__model_infer_request__init(&m);
    inference__model_infer_request__infer_input_tensor__init(&t0);
    inference__infer_tensor_contents__init(&c0);
    t0.name = "input_ids";
    t0.datatype = "INT32";
    t0.shape = shape2;
    t0.n_shape = 2;
    c0.int_contents = ids32;
    c0.n_int_contents = 6;
    t0.contents = &c0;
    ins[0] = &t0;
    m.inputs = ins;
    m.n_inputs = 1;
    m.model_name = "tiny";
    m.id = "req-7";
    inference__infer_parameter__init(&pv);
    pv.parameter_choice_case =
        INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
    pv.string_param = "last";
    inference__model_infer_request__parameters_entry__init(&pe);
    pe.key = "output";
    pe.value = &pv;
    pes[0] = &pe;
    m.parameters = pes;
    m.n_parameters = 1;
    ok(pb_parse(&m, &req, &err) == 0 && req.n_rows == 2
       && same_ids(&req, 0, r0, 3) && same_ids(&req, 1, r1, 3)
       && req.output == INFER_PRED_LAST && strcmp(req.model, "tiny") == 0
       && strcmp(req.id, "req-7") == 0,
       "protobuf: INT32 [2, 3] contents, output last, model and id");
    infer_pred_request_free(&req);

    /* ragged: INT64 ids [6] and lengths [2], both raw */
    t0.datatype = "INT64";
    t0.shape = shape1;
    t0.n_shape = 1;
    t0.contents = NULL;
    inference__model_infer_request__infer_input_tensor__init(&t1);
    t1.name = "lengths";
    t1.datatype = "INT64";
    t1.shape = shape_b;
    t1.n_shape = 1;
    ins[1] = &t1;
    m.n_inputs = 2;
    raw[0].data = (uint8_t *) ids64;
    raw[0].len = sizeof(ids64);
    raw[1].data = (uint8_t *) lens64;
    raw[1].len = sizeof(lens64);
    m.raw_input_contents = raw;
    m.n_raw_input_contents = 2;
    m.n_parameters = 0;
    m.model_name = "";
    m.id = "";
    ok(pb_parse(&m, &req, &err) == 0 && req.n_rows == 2
       && same_ids(&req, 0, f0, 2) && same_ids(&req, 1, f1, 4)
       && req.output == INFER_PRED_ALL && req.model == NULL
       && req.id == NULL,
       "protobuf: a ragged batch as raw INT64 ids and lengths");
    infer_pred_request_free(&req);

    lens64[1] = 3;
    pb_bad(&m, "adds up to 5", "lengths that do not add up");
    lens64[1] = 5;
    pb_bad(&m, "do not fit", "lengths beyond the ids");
    lens64[1] = 4;
    raw[1].len = 12;
    pb_bad(&m, "12 raw bytes for 2 INT64", "raw bytes that do not fit the "
           "shape");
    raw[1].len = sizeof(lens64);
    m.n_raw_input_contents = 1;
    pb_bad(&m, "1 raw_input_contents for 2 inputs", "raw for one of two "
           "inputs");
    m.n_raw_input_contents = 2;
    t1.name = "lengthz";
    pb_bad(&m, "unknown input \"lengthz\"", "an unknown input");
    t1.name = "input_ids";
    pb_bad(&m, "duplicate input \"input_ids\"", "a duplicate input");
    t1.name = "lengths";
    t0.shape = shape2;
    t0.n_shape = 2;
    pb_bad(&m, "[1, tokens]", "lengths with a [2, 3] id tensor");

    /* back to one input in typed contents */
    m.n_inputs = 1;
    m.n_raw_input_contents = 0;
    m.raw_input_contents = NULL;
    t0.datatype = "INT32";
    t0.contents = &c0;
    t0.datatype = "FP32";
    pb_bad(&m, "must be INT32 or INT64, not \"FP32\"", "FP32 ids");
    t0.datatype = "INT64";
    pb_bad(&m, "contents are of another type", "INT64 with int_contents");
    t0.datatype = "INT32";
    c0.n_int_contents = 5;
    pb_bad(&m, "5 values for a shape of 6", "a shape that does not match "
           "the data");
    c0.n_int_contents = 6;
    t0.shape = neg;
    pb_bad(&m, "dimension 1 of its shape is -3", "a negative dimension");
    t0.shape = shape2;
    ids32[4] = -4;
    pb_bad(&m, "input_ids[1][1] = -4", "a negative id");
    ids32[4] = 5;
    raw[0].data = (uint8_t *) ids32;
    raw[0].len = sizeof(ids32);
    m.raw_input_contents = raw;
    m.n_raw_input_contents = 1;
    pb_bad(&m, "contents and raw_input_contents", "contents and raw");
    m.n_raw_input_contents = 0;

    inference__model_infer_request__parameters_entry__init(&pe2);
    inference__infer_parameter__init(&pv2);
    pe2.key = "binary_data";
    pv2.parameter_choice_case =
        INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM;
    pv2.bool_param = 1;
    pe2.value = &pv2;
    pes[0] = &pe2;
    m.n_parameters = 1;
    pb_bad(&m, "unknown parameter \"binary_data\"", "an unknown parameter");
    pe2.key = "top_k";
    pb_bad(&m, "must be an int64_param", "top_k as a bool");
    pe.key = "output";
    pv.string_param = "logprobs";
    pv2.parameter_choice_case =
        INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
    pv2.int64_param = 5;
    pes[0] = &pe;
    pes[1] = &pe2;
    m.n_parameters = 2;
    inference__model_infer_request__infer_requested_output_tensor__init(&ro);
    ro.name = "top_logprobs";
    ros[0] = &ro;
    m.outputs = ros;
    m.n_outputs = 1;
    ok(pb_parse(&m, &req, &err) == 0 && req.output == INFER_PRED_LOGPROBS
       && req.top_k == 5, "protobuf: logprobs with top_k 5, asking for "
       "top_logprobs");
    infer_pred_request_free(&req);
    ro.name = "logits";
    pb_bad(&m, "output \"logits\" is not one", "an output the form does not "
           "give");
    m.n_outputs = 0;
    m.n_parameters = 0;

    /* text_input: typed and raw BYTES */
    inference__infer_tensor_contents__init(&c1);
    t1.name = "text_input";
    t1.datatype = "BYTES";
    t1.shape = shape_b;
    t1.n_shape = 1;
    strs[0].data = (uint8_t *) "Once";
    strs[0].len = 4;
    strs[1].data = (uint8_t *) "";
    strs[1].len = 0;
    c1.bytes_contents = strs;
    c1.n_bytes_contents = 2;
    t1.contents = &c1;
    ins[0] = &t1;
    ok(pb_parse(&m, &req, &err) == 0 && req.n_rows == 2
       && strcmp(req.texts[0], "Once") == 0 && req.text_lens[1] == 0,
       "protobuf: text_input BYTES [2] contents");
    infer_pred_request_free(&req);

    k = 4;
    memcpy(rawtext, &k, 4);
    memcpy(rawtext + 4, "upon", 4);
    k = 1;
    memcpy(rawtext + 8, &k, 4);
    memcpy(rawtext + 12, "a", 1);
    t1.contents = NULL;
    raw[0].data = rawtext;
    raw[0].len = 13;
    m.raw_input_contents = raw;
    m.n_raw_input_contents = 1;
    ok(pb_parse(&m, &req, &err) == 0 && req.n_rows == 2
       && strcmp(req.texts[0], "upon") == 0
       && strcmp(req.texts[1], "a") == 0,
       "protobuf: text_input as length-prefixed raw BYTES");
    infer_pred_request_free(&req);
    raw[0].len = 12;
    pb_bad(&m, "not 2 length-prefixed strings", "raw BYTES cut short");
    raw[0].len = 13;
    t1.datatype = "STRING";
    pb_bad(&m, "must be BYTES", "text_input not BYTES");

    m.n_inputs = 0;
    m.n_raw_input_contents = 0;
    pb_bad(&m, "no input tensor \"input_ids\"", "no inputs");
    bad(INFER_PRED_PROTOBUF, "\x0a\xff\x01", 3, "not a KServe v2",
        "bytes that are no protobuf");
    bad(INFER_PRED_PROTOBUF, "\x2a\x05\x0a\x03\xff\xfe\xfd", 7,
        "unknown input \"???\"", "a tensor name that is not UTF-8, quoted");
}

/* ---- tokenizing and checking rows ---------------------------------------- */

static void
test_prepare(void)
{
    static const int32_t   once[] = { 1, 403, 407, 261, 378 };
    infer_pred_request_t   req;
    infer_pred_error_t     err;
    infer_tokenizer_t     *tok;
    char                   msg[256], *body;
    size_t                 n;
    int                    vocab;

    if (!ok(infer_tokenizer_load(MODEL_DIR, &tok, msg, sizeof(msg)) == 0,
            "stories260K's tokenizer loads: %s", msg))
    {
        return;
    }
    vocab = infer_tokenizer_vocab_size(tok);

    body = "{\"text\": [\"Once upon a time\", \"\"]}";
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && infer_pred_prepare(&req, tok, vocab, 512, &err) == 0
       && same_ids(&req, 0, once, 5) && same_ids(&req, 1, once, 1)
       && req.texts[0] == NULL,
       "texts are tokenized as completions: bos first (%s)", err.message);
    infer_pred_request_free(&req);

    body = "{\"input\": [[1, 512]]}";
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && infer_pred_prepare(&req, tok, vocab, 512, &err) == -1
       && err.status == 400
       && strstr(err.message, "token id 512 (row 0, position 1) is outside "
                 "the vocabulary of 512") != NULL,
       "an id outside the vocabulary: %s", err.message);
    infer_pred_request_free(&req);

    body = "{\"input\": [[1], []]}";
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && infer_pred_prepare(&req, tok, vocab, 512, &err) == -1
       && err.status == 400 && strstr(err.message, "row 1 is empty"),
       "an empty row: %s", err.message);
    infer_pred_request_free(&req);

    body = "{\"input\": [[1, 2, 3, 4]]}";
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && infer_pred_prepare(&req, tok, vocab, 4, &err) == 0,
       "a row as long as the context is scored");
    infer_pred_request_free(&req);

    body = "{\"input\": [[1, 2, 3, 4, 5]]}";
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && infer_pred_prepare(&req, tok, vocab, 4, &err) == -1
       && err.status == 400
       && strstr(err.message, "row 0 has 5 tokens, and the model's context "
                 "is 4"),
       "a row longer than the context: %s", err.message);
    infer_pred_request_free(&req);

    n = 5000;
    body = malloc(n + 32);
    memcpy(body, "{\"text\": \"", 10);
    memset(body + 10, 'x', n);
    strcpy(body + 10 + n, "\"}");
    ok(parse(INFER_PRED_JSON, body, strlen(body), &req, &err) == 0
       && infer_pred_prepare(&req, tok, vocab, 512, &err) == -1
       && err.status == 400 && strstr(err.message, "text 0: 5000 bytes"),
       "a text that cannot fit by its size is refused: %s", err.message);
    infer_pred_request_free(&req);
    free(body);

    infer_tokenizer_free(tok);
}

/* ---- replies -------------------------------------------------------------- */

#define V  4

/* Two rows of 3 and 1 tokens, vocabulary 4; logits of position p, id k
 * are p - k / 8 + row / 2 (NaN for row 1's id 3). */
static float                logits0[3][V], logits1[1][V];
static uint16_t             halves0[3][V], halves1[1][V];
static int32_t              tok0[] = { 1, 2, 3 }, tok1[] = { 0 };
static float                lp0[] = { -0.5f, -0.25f };
static int32_t              top_ids0[] = { 2, 0, 3, 1 };
static float                top_lp0[] = { -0.5f, -1.5f, -0.25f, -2.0f };

static void
make_request(infer_pred_request_t *req, infer_pred_format_t reply,
    infer_pred_output_t output, int base64, int f16)
{
    static int32_t  *ids[2];
    static int       n_ids[2];

    memset(req, 0, sizeof(*req));
    ids[0] = tok0;
    ids[1] = tok1;
    n_ids[0] = 3;
    n_ids[1] = 1;
    req->reply = reply;
    req->output = output;
    req->base64 = base64;
    req->f16 = f16;
    req->top_k = output == INFER_PRED_LOGPROBS ? 2 : 0;
    req->n_rows = 2;
    req->ids = ids;
    req->n_ids = n_ids;
}

static void
make_rows(infer_pred_row_t *rows, const infer_pred_request_t *req)
{
    int  p, k;

    for (p = 0; p < 3; p++) {
        for (k = 0; k < V; k++) {
            logits0[p][k] = p - k / 8.0f;
            halves0[p][k] = infer_float_to_half(logits0[p][k]);
        }
    }
    for (k = 0; k < V; k++) {
        logits1[0][k] = k == 3 ? NAN : 0.5f - k / 8.0f;
        halves1[0][k] = infer_float_to_half(logits1[0][k]);
    }
    memset(rows, 0, 2 * sizeof(*rows));
    switch (req->output) {
    case INFER_PRED_ALL:
        rows[0].logits = req->f16 ? (void *) halves0 : (void *) logits0;
        rows[0].n_logits = 3;
        rows[1].logits = req->f16 ? (void *) halves1 : (void *) logits1;
        rows[1].n_logits = 1;
        break;
    case INFER_PRED_LAST:
        rows[0].logits = req->f16 ? (void *) halves0[2] : (void *) logits0[2];
        rows[0].n_logits = 1;
        rows[1].logits = req->f16 ? (void *) halves1 : (void *) logits1;
        rows[1].n_logits = 1;
        break;
    default:
        rows[0].lp_ids = tok0 + 1;
        rows[0].lp = lp0;
        rows[0].top_ids = top_ids0;
        rows[0].top_lp = top_lp0;
        rows[0].n_lp = 2;
        rows[0].top = 2;
    }
}

static char *
reply(infer_pred_format_t f, infer_pred_output_t output, int base64, int f16,
    size_t *len)
{
    infer_pred_request_t  req;
    infer_pred_row_t      rows[2];
    infer_pred_error_t    err;
    char                 *body;

    make_request(&req, f, output, base64, f16);
    make_rows(rows, &req);
    body = infer_pred_reply(&req, rows, V, "tiny", len, &err);
    if (body == NULL) {
        diag("no reply: %s", err.message);
    }
    return body;
}

static void
test_reply_json(void)
{
    char          *body;
    size_t         len, dlen;
    json_t        *j, *t;
    const char    *data;
    json_error_t   jerr;
    unsigned char  bin[64];
    float          f;

    body = reply(INFER_PRED_JSON, INFER_PRED_ALL, 0, 0, &len);
    is_str(body, "{\"result\":[[[0,-0.125,-0.25,-0.375],[1,0.875,0.75,0.625],"
           "[2,1.875,1.75,1.625]],[[0.5,0.375,0.25,null]]]}\n",
           "JSON numbers, all positions: [batch][position][vocab], NaN as "
           "null");
    free(body);

    body = reply(INFER_PRED_JSON, INFER_PRED_LAST, 0, 1, &len);
    is_str(body, "{\"result\":[[2,1.875,1.75,1.625],[0.5,0.375,0.25,null]]}\n",
           "JSON numbers of halves, last position: [batch][vocab]");
    free(body);

    body = reply(INFER_PRED_JSON, INFER_PRED_LOGPROBS, 0, 0, &len);
    is_str(body, "{\"result\":[{\"tokens\":[1,2,3],\"logprobs\":[-0.5,-0.25],"
           "\"top_ids\":[[2,0],[3,1]],\"top_logprobs\":[[-0.5,-1.5],"
           "[-0.25,-2]]},{\"tokens\":[0],\"logprobs\":[],\"top_ids\":[],"
           "\"top_logprobs\":[]}]}\n",
           "JSON logprobs: tokens, logprobs of tokens 1.., top ids and "
           "logprobs");
    free(body);

    /* base64: the bytes of the rows one after the other */
    body = reply(INFER_PRED_JSON, INFER_PRED_ALL, 1, 0, &len);
    j = json_loadb(body, len, 0, &jerr);
    t = json_object_get(j, "result");
    data = json_string_value(json_object_get(t, "data"));
    ok(j && strcmp(json_string_value(json_object_get(t, "dtype")), "float32")
       == 0 && json_array_size(json_object_get(t, "shape")) == 2
       && json_integer_value(json_array_get(json_object_get(t, "shape"), 0))
          == 4
       && json_integer_value(json_array_get(json_object_get(t, "shape"), 1))
          == V
       && json_integer_value(json_array_get(json_object_get(t, "lengths"),
                                            1)) == 1
       && data && strlen(data) == (16 * 4 + 2) / 3 * 4,
       "base64, ragged: shape [positions of all rows, vocab], lengths, "
       "%zu base64 bytes", data ? strlen(data) : 0);
    if (data != NULL) {
        /* decode with a tiny reference decoder */
        static const char  a[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t   i, o = 0;
        uint32_t v = 0;
        int      bits = 0;

        for (i = 0; data[i] && data[i] != '=' && o < sizeof(bin); i++) {
            v = v << 6 | (uint32_t) (strchr(a, data[i]) - a);
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                bin[o++] = (unsigned char) (v >> bits);
            }
        }
        dlen = o;
        memcpy(&f, bin + 15 * 4, 4);
        ok(dlen == 64 && memcmp(bin, logits0, 48) == 0
           && memcmp(bin + 48, logits1, 12) == 0 && isnan(f),
           "base64 decodes to row 0's 3 x 4 floats, then row 1's");
    }
    json_decref(j);
    free(body);

    body = reply(INFER_PRED_JSON, INFER_PRED_LAST, 1, 1, &len);
    ok(body && strstr(body, "\"dtype\":\"float16\",\"shape\":[2,4],\"data\"")
       && strstr(body, "lengths") == NULL,
       "base64 halves of the last position: shape [batch, vocab], no "
       "lengths");
    free(body);
}

static void
test_reply_msgpack(void)
{
    char                  *body;
    size_t                 len, off = 0;
    msgpack_unpacked       u;
    msgpack_object         r, v;
    msgpack_object_kv     *kv;
    uint32_t               i;
    int                    good = 0;

    body = reply(INFER_PRED_MSGPACK, INFER_PRED_ALL, 0, 1, &len);
    msgpack_unpacked_init(&u);
    if (body && msgpack_unpack_next(&u, body, len, &off)
                == MSGPACK_UNPACK_SUCCESS && off == len
        && u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 1)
    {
        r = u.data.via.map.ptr[0].val;
        for (i = 0; r.type == MSGPACK_OBJECT_MAP && i < r.via.map.size; i++) {
            kv = &r.via.map.ptr[i];
            v = kv->val;
#define key_is(s) (kv->key.via.str.size == strlen(s) \
                   && memcmp(kv->key.via.str.ptr, s, strlen(s)) == 0)
            if (key_is("dtype") && v.type == MSGPACK_OBJECT_STR
                && v.via.str.size == 7
                && memcmp(v.via.str.ptr, "float16", 7) == 0)
            {
                good |= 1;
            } else if (key_is("shape") && v.type == MSGPACK_OBJECT_ARRAY
                       && v.via.array.size == 2
                       && v.via.array.ptr[0].via.u64 == 4
                       && v.via.array.ptr[1].via.u64 == V)
            {
                good |= 2;
            } else if (key_is("lengths") && v.via.array.size == 2
                       && v.via.array.ptr[0].via.u64 == 3
                       && v.via.array.ptr[1].via.u64 == 1)
            {
                good |= 4;
            } else if (key_is("data") && v.type == MSGPACK_OBJECT_BIN
                       && v.via.bin.size == 32
                       && memcmp(v.via.bin.ptr, halves0, 24) == 0
                       && memcmp(v.via.bin.ptr + 24, halves1, 8) == 0)
            {
                good |= 8;
            }
#undef key_is
        }
    }
    is_int(good, 15, "MessagePack, all positions as float16: dtype, shape "
           "[4, 4], lengths [3, 1], data bin of the rows' halves");
    msgpack_unpacked_destroy(&u);
    free(body);

    body = reply(INFER_PRED_MSGPACK, INFER_PRED_LOGPROBS, 0, 0, &len);
    off = 0;
    msgpack_unpacked_init(&u);
    good = body && msgpack_unpack_next(&u, body, len, &off)
                   == MSGPACK_UNPACK_SUCCESS && off == len;
    if (good) {
        r = u.data.via.map.ptr[0].val;
        good = r.type == MSGPACK_OBJECT_ARRAY && r.via.array.size == 2
               && r.via.array.ptr[0].type == MSGPACK_OBJECT_MAP
               && r.via.array.ptr[0].via.map.size == 4;
    }
    if (good) {
        kv = r.via.array.ptr[0].via.map.ptr;
        good = kv[1].val.via.array.size == 2
               && kv[1].val.via.array.ptr[1].type == MSGPACK_OBJECT_FLOAT32
               && kv[1].val.via.array.ptr[1].via.f64 == -0.25
               && kv[3].val.via.array.ptr[1].via.array.ptr[1].via.f64 == -2.0
               && kv[2].val.via.array.ptr[0].via.array.ptr[0].via.u64 == 2;
    }
    ok(good, "MessagePack logprobs: float32 logprobs, top ids and logprobs");
    msgpack_unpacked_destroy(&u);
    free(body);
}

static const Inference__ModelInferResponse__InferOutputTensor *
pb_out(const Inference__ModelInferResponse *m, const char *name, size_t *i)
{
    for (*i = 0; *i < m->n_outputs; (*i)++) {
        if (strcmp(m->outputs[*i]->name, name) == 0) {
            return m->outputs[*i];
        }
    }
    return NULL;
}

static void
test_reply_protobuf(void)
{
    char                                                 *body;
    size_t                                                len, i, j;
    int32_t                                               l[2];
    Inference__ModelInferResponse                        *m;
    const Inference__ModelInferResponse__InferOutputTensor  *o, *lo;

    body = reply(INFER_PRED_PROTOBUF, INFER_PRED_ALL, 0, 0, &len);
    m = inference__model_infer_response__unpack(NULL, len,
                                                (uint8_t *) body);
    o = m ? pb_out(m, "logits", &i) : NULL;
    lo = m ? pb_out(m, "lengths", &j) : NULL;
    if (lo != NULL) {
        memcpy(l, m->raw_output_contents[j].data, 8);
    }
    ok(o && lo && strcmp(m->model_name, "tiny") == 0
       && m->n_raw_output_contents == m->n_outputs
       && strcmp(o->datatype, "FP32") == 0 && o->n_shape == 2
       && o->shape[0] == 4 && o->shape[1] == V
       && m->raw_output_contents[i].len == 64
       && memcmp(m->raw_output_contents[i].data, logits0, 48) == 0
       && strcmp(lo->datatype, "INT32") == 0 && lo->shape[0] == 2
       && l[0] == 3 && l[1] == 1,
       "protobuf ModelInferResponse: logits FP32 [4, 4] raw, lengths "
       "INT32 [2]");
    if (m) {
        inference__model_infer_response__free_unpacked(m, NULL);
    }
    free(body);

    body = reply(INFER_PRED_PROTOBUF, INFER_PRED_LOGPROBS, 0, 0, &len);
    m = inference__model_infer_response__unpack(NULL, len,
                                                (uint8_t *) body);
    o = m ? pb_out(m, "top_ids", &i) : NULL;
    ok(m && m->n_outputs == 5 && o && o->n_shape == 2 && o->shape[0] == 2
       && o->shape[1] == 2 && m->raw_output_contents[i].len == 16
       && memcmp(m->raw_output_contents[i].data, top_ids0, 16) == 0
       && pb_out(m, "tokens", &j) && m->outputs[j]->shape[0] == 4
       && pb_out(m, "logprobs", &j) && m->outputs[j]->shape[0] == 2
       && memcmp(m->raw_output_contents[j].data, lp0, 8) == 0,
       "protobuf logprobs: tokens [4], logprobs [2], top_ids [2, 2], "
       "top_logprobs, lengths");
    if (m) {
        inference__model_infer_response__free_unpacked(m, NULL);
    }
    free(body);
}

static void
test_reply_checks(void)
{
    infer_pred_request_t  req;
    infer_pred_row_t      rows[2];
    infer_pred_error_t    err;
    size_t                len;
    char                 *body, *s;
    float                 f, back;
    uint32_t              bits;
    int                   i, bad_back = 0, not_printf = 0, not_half = 0;
    char                  want[64];
    json_t               *j;
    json_error_t          jerr;

    make_request(&req, INFER_PRED_JSON, INFER_PRED_ALL, 0, 0);
    make_rows(rows, &req);
    rows[0].n_logits = 2;
    ok(infer_pred_reply(&req, rows, V, "tiny", &len, &err) == NULL
       && err.status == 500 && strstr(err.message, "row 0 2 logits rows"),
       "rows that are not what was asked for: 500, nothing read past "
       "them (%s)", err.message);

    /* the JSON numbers are printf's %.9g (%.5g for halves), which give
     * every float back */
    make_request(&req, INFER_PRED_JSON, INFER_PRED_LAST, 0, 0);
    req.n_rows = 1;
    for (i = 0; i < 200000; i++) {
        bits = (uint32_t) i * 2654435761u;
        memcpy(&f, &bits, 4);
        if (!isfinite(f)) {
            continue;
        }
        logits0[0][0] = f;
        rows[0].logits = logits0[0];
        rows[0].n_logits = 1;
        body = infer_pred_reply(&req, rows, 1, "tiny", &len, &err);
        back = body ? strtof(body + 12, &s) : NAN;
        bad_back += body == NULL || memcmp(&back, &f, 4) != 0;
        snprintf(want, sizeof(want), "{\"result\":[[%.9g]]}\n", (double) f);
        not_printf += body == NULL || strcmp(body, want) != 0;
        free(body);
    }
    is_int(bad_back, 0, "200000 float32 bit patterns in JSON read back "
           "exactly");
    is_int(not_printf, 0, "and are printed as printf's %%.9g prints them");
    req.f16 = 1;
    for (i = 0; i < 65536; i++) {
        halves0[0][0] = (uint16_t) i;
        f = infer_half_to_float((uint16_t) i);
        rows[0].logits = halves0[0];
        body = infer_pred_reply(&req, rows, 1, "tiny", &len, &err);
        if (!isfinite(f)) {
            not_half += body == NULL || strstr(body, "null") == NULL;
        } else {
            snprintf(want, sizeof(want), "{\"result\":[[%.5g]]}\n",
                     (double) f);
            not_half += body == NULL || strcmp(body, want) != 0;
            back = strtof(body + 12, NULL);
            not_half += infer_float_to_half(back) != (uint16_t) i
                        && !(back == 0 && f == 0);
        }
        free(body);
    }
    is_int(not_half, 0, "every half is printed as %%.5g, reads back as the "
           "same half, and infinities and NaNs are null");

    infer_pred_set_error(&err, 400, "a \"quoted\" \\ name\x01\xc3\xa9");
    body = infer_pred_error_body(INFER_PRED_JSON, &err, &len);
    j = json_loadb(body, len, 0, &jerr);
    ok(j && strcmp(json_string_value(json_object_get(j, "error")),
                   "a \"quoted\" \\ name???") == 0,
       "a JSON error is valid JSON whatever its message holds: %s", body);
    json_decref(j);
    free(body);
    ok(infer_pred_error_format(INFER_PRED_PROTOBUF) == INFER_PRED_JSON,
       "protobuf errors are JSON");
    body = infer_pred_error_body(INFER_PRED_MSGPACK, &err, &len);
    ok(body && (unsigned char) body[0] == 0x81 && memmem(body, len, "error", 5),
       "a MessagePack error is a map {error: message}");
    free(body);
}

int
main(void)
{
    test_negotiation();
    test_json();
    test_msgpack();
    test_protobuf();
    test_prepare();
    test_reply_json();
    test_reply_msgpack();
    test_reply_protobuf();
    test_reply_checks();
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}
