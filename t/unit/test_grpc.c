/*
 * gRPC's bytes (src/proto/grpc.c) and the KServe codec's protobuf half
 * (src/proto/kserve.c): framing fed in pieces, grpc-timeout, grpc-message,
 * methods, and ModelInferRequest messages built with protobuf-c's own
 * generated code, as a client's would be.
 */
#include "tap.h"

#include "grpc.h"
#include "grpc_service.pb-c.h"
#include "kserve.h"

static void
test_framing(void)
{
    int                   rc;
    char                  err[256];
    size_t                len, i;
    unsigned char         frames[64];
    const unsigned char  *msg;
    infer_grpc_reader_t   rd;

    memset(&rd, 0, sizeof(rd));
    /* two messages, "abc" and "", then the start of a third */
    memcpy(frames, "\0\0\0\0\3abc\0\0\0\0\0\0\0\0\0\7xy", 20);
    for (i = 0; i < 20; i++) {
        ok(infer_grpc_feed(&rd, frames + i, 1) == 0, "feed byte %zu", i);
        rc = infer_grpc_next(&rd, 100, &msg, &len, err, sizeof(err));
        if (i == 7) {
            ok(rc == 1 && len == 3 && memcmp(msg, "abc", 3) == 0,
               "the first message once its last byte came");
        } else if (i == 12) {
            ok(rc == 1 && len == 0, "an empty message");
        } else {
            ok(rc == 0, "nothing whole after byte %zu", i);
        }
    }
    is_int(infer_grpc_pending(&rd), 7, "the third message's bytes wait");
    infer_grpc_reader_free(&rd);

    memset(&rd, 0, sizeof(rd));
    infer_grpc_feed(&rd, "\1\0\0\0\1x", 6);
    rc = infer_grpc_next(&rd, 100, &msg, &len, err, sizeof(err));
    ok(rc == INFER_GRPC_ECOMPRESSED && strstr(err, "compressed"),
       "a compressed message is refused: %s", err);
    infer_grpc_reader_free(&rd);

    memset(&rd, 0, sizeof(rd));
    infer_grpc_feed(&rd, "\0\0\0\1\0", 5);
    rc = infer_grpc_next(&rd, 255, &msg, &len, err, sizeof(err));
    ok(rc == INFER_GRPC_ETOO_LONG, "256 bytes over a bound of 255, "
       "refused from the prefix alone: %s", err);
    infer_grpc_reader_free(&rd);
}

static void
test_headers(void)
{
    char      *s;
    uint64_t   ms;

    ok(infer_grpc_timeout("100m", 4, &ms) == 0 && ms == 100, "100m");
    ok(infer_grpc_timeout("2S", 2, &ms) == 0 && ms == 2000, "2S");
    ok(infer_grpc_timeout("1H", 2, &ms) == 0 && ms == 3600000, "1H");
    ok(infer_grpc_timeout("1500u", 5, &ms) == 0 && ms == 2, "1500u is 2 ms "
       "(rounded up)");
    ok(infer_grpc_timeout("1n", 2, &ms) == 0 && ms == 1, "1n is 1 ms");
    ok(infer_grpc_timeout("99999999H", 9, &ms) == 0 && ms == INT32_MAX,
       "the longest is capped");
    ok(infer_grpc_timeout("123456789S", 10, &ms) == -1, "9 digits refused");
    ok(infer_grpc_timeout("10", 2, &ms) == -1, "no unit refused");
    ok(infer_grpc_timeout("1x", 2, &ms) == -1, "unknown unit refused");
    ok(infer_grpc_timeout("-1S", 3, &ms) == -1, "a sign refused");

    s = infer_grpc_percent("a 100% \xc3\xa9\n", 10);
    is_str(s, "a 100%25 %C3%A9%0A", "grpc-message percent-encoding");
    free(s);

    is_int(infer_grpc_method("/inference.GRPCInferenceService/ModelInfer",
                             42), INFER_GRPC_MODEL_INFER, "ModelInfer");
    is_int(infer_grpc_method("/inference.GRPCInferenceService/ModelConfig",
                             43), INFER_GRPC_OTHER, "ModelConfig: not served");
    is_int(infer_grpc_method("/inference.GRPCInferenceService/", 32),
           INFER_GRPC_NONE, "no method");
    is_int(infer_grpc_method("/x/inference.GRPCInferenceService/ModelInfer",
                             44), INFER_GRPC_NONE, "no prefixes");
    is_int(infer_grpc_status_of_http(400), INFER_GRPC_INVALID_ARGUMENT,
           "400 is INVALID_ARGUMENT");
    is_int(infer_grpc_status_of_http(401), INFER_GRPC_UNAUTHENTICATED,
           "401 is UNAUTHENTICATED (16)");
    is_int(INFER_GRPC_UNAUTHENTICATED, 16, "UNAUTHENTICATED is 16");
    is_int(infer_grpc_status_of_http(403), INFER_GRPC_PERMISSION_DENIED,
           "403 is PERMISSION_DENIED");
    is_int(INFER_GRPC_PERMISSION_DENIED, 7, "PERMISSION_DENIED is 7");
    is_int(infer_grpc_status_of_http(503), INFER_GRPC_UNAVAILABLE,
           "503 is UNAVAILABLE");
    is_int(infer_grpc_status_of_http(504), INFER_GRPC_DEADLINE_EXCEEDED,
           "504 is DEADLINE_EXCEEDED");
}

/* A ModelInferRequest of text_input (raw or contents) and max_tokens as a
 * parameter, packed as a client packs it. */
static unsigned char *
text_request(int raw, const char *text, size_t *len)
{
    int64_t                                          shape[2] = { 1, 1 };
    uint8_t                                         *p;
    unsigned char                                    lp[4];
    ProtobufCBinaryData                              bd, rawd;
    Inference__InferParameter                        mt;
    Inference__InferTensorContents                   c;
    Inference__ModelInferRequest                     m;
    Inference__ModelInferRequest__ParametersEntry    e, *ep;
    Inference__ModelInferRequest__InferInputTensor   in, *inp;

    inference__model_infer_request__init(&m);
    m.model_name = "tiny";
    m.id = "r1";
    inference__model_infer_request__infer_input_tensor__init(&in);
    in.name = "text_input";
    in.datatype = "BYTES";
    in.n_shape = 2;
    in.shape = shape;
    inp = &in;
    m.n_inputs = 1;
    m.inputs = &inp;

    if (raw) {
        rawd.len = 4 + strlen(text);
        rawd.data = malloc(rawd.len);
        lp[0] = (unsigned char) strlen(text);
        lp[1] = lp[2] = lp[3] = 0;
        memcpy(rawd.data, lp, 4);
        memcpy(rawd.data + 4, text, strlen(text));
        m.n_raw_input_contents = 1;
        m.raw_input_contents = &rawd;
    } else {
        inference__infer_tensor_contents__init(&c);
        bd.data = (uint8_t *) text;
        bd.len = strlen(text);
        c.n_bytes_contents = 1;
        c.bytes_contents = &bd;
        in.contents = &c;
    }

    inference__infer_parameter__init(&mt);
    mt.parameter_choice_case =
        INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
    mt.int64_param = 7;
    inference__model_infer_request__parameters_entry__init(&e);
    e.key = "max_tokens";
    e.value = &mt;
    ep = &e;
    m.n_parameters = 1;
    m.parameters = &ep;

    *len = inference__model_infer_request__get_packed_size(&m);
    p = malloc(*len);
    inference__model_infer_request__pack(&m, p);
    if (raw) {
        free(rawd.data);
    }
    return p;
}

static void
test_pb(void)
{
    int                   raw, rc;
    size_t                len, n;
    unsigned char        *msg, *out;
    infer_ks_error_t      err;
    infer_ks_piece_t      piece;
    infer_ks_output_t     o;
    infer_ks_request_t    req;
    infer_ks_tensors_t    set;
    Inference__ModelStreamInferResponse  *sr;

    for (raw = 0; raw <= 1; raw++) {
        msg = text_request(raw, "Once upon", &len);
        rc = infer_ks_parse_pb(msg, len, &set, &err);
        ok(rc == 0, "%s text_input parses: %s", raw ? "raw" : "contents",
           rc ? err.message : "");
        if (rc != 0) {
            free(msg);
            continue;
        }
        is_str(set.model, "tiny", "the model named");
        rc = infer_ks_interpret(&set, 512, 0, &req, &err);
        ok(rc == 0 && req.kind == INFER_KS_TEXT && req.n_rows == 1
           && req.text_lens[0] == 9
           && memcmp(req.texts[0], "Once upon", 9) == 0
           && req.settings[0].max_tokens == 7
           && strcmp(req.id, "r1") == 0,
           "the same request as REST's: text, id, max_tokens parameter");
        infer_ks_request_free(&req);
        infer_ks_tensors_free(&set);
        free(msg);
    }

    ok(infer_ks_parse_pb((const unsigned char *) "\xff\xff", 2, &set, &err)
       == -1 && err.status == 400, "malformed protobuf is a 400: %s",
       err.message);

    /* a stream response: one text piece, final */
    piece.p = "hi";
    piece.len = 2;
    memset(&o, 0, sizeof(o));
    o.name = "text_output";
    o.dtype = INFER_KS_BYTES;
    o.n_dims = 2;
    o.dims[0] = o.dims[1] = 1;
    o.pieces = &piece;
    o.n_pieces = 1;
    out = infer_ks_pb_infer_body("tiny", "1", "r1", &o, 1, 1, 1, &len);
    ok(out != NULL && out[0] == 0, "a framed stream response");
    n = (size_t) out[1] << 24 | out[2] << 16 | out[3] << 8 | out[4];
    is_int(n + 5, len, "its prefix gives its length");
    sr = inference__model_stream_infer_response__unpack(NULL, n, out + 5);
    ok(sr != NULL && sr->infer_response
       && strcmp(sr->infer_response->id, "r1") == 0
       && sr->infer_response->n_raw_output_contents == 1
       && sr->infer_response->raw_output_contents[0].len == 6
       && memcmp(sr->infer_response->raw_output_contents[0].data,
                 "\2\0\0\0hi", 6) == 0
       && sr->infer_response->n_parameters == 1
       && strcmp(sr->infer_response->parameters[0]->key,
                 "triton_final_response") == 0
       && sr->infer_response->parameters[0]->value->bool_param,
       "it decodes: id, BYTES element length-prefixed, final");
    inference__model_stream_infer_response__free_unpacked(sr, NULL);
    free(out);
}

int
main(void)
{
    test_framing();
    test_headers();
    test_pb();
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}
