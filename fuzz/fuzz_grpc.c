/*
 * The gRPC request path on any bytes: the first byte sets the size of the
 * pieces the rest comes in (as HTTP/2 DATA frames may cut it anywhere),
 * the rest is a request body of 5-byte framed messages.  Each whole
 * message goes through the KServe codec's protobuf half as a
 * ModelInferRequest, then what the model makes of it; also as a
 * ModelReadyRequest, as a grpc-timeout value and as a grpc-message.  A
 * refused message must carry a 400 (or 500) and a message; an accepted
 * one must hold tensors whose data fits their shapes, and the stream
 * response built from its text must decode to that text.
 */
#include "fuzz.h"
#include "grpc.h"
#include "grpc_service.pb-c.h"
#include "infer.h"
#include "kserve.h"

#define VOCAB     512
#define MAX_MSG   (1 << 20)

static void
check_set(const infer_ks_tensors_t *set)
{
    int                       i;
    size_t                    k, len;
    const infer_ks_tensor_t  *t;

    FUZZ_CHECK(set->n_inputs >= 0 && set->n_inputs <= INFER_KS_MAX_INPUTS,
               "%d inputs", set->n_inputs);
    for (i = 0; i < set->n_inputs; i++) {
        t = &set->inputs[i];
        if (t->dtype == INFER_KS_BYTES) {
            for (k = 0; k < t->n; k++) {
                FUZZ_CHECK(t->offs[k] + 4 <= t->size, "element %zu", k);
                infer_ks_bytes_at(t, k, &len);
                FUZZ_CHECK(t->offs[k] + 4 + len <= t->size,
                           "element %zu of %zu bytes", k, len);
            }
        } else {
            FUZZ_CHECK(t->size == t->n * infer_ks_dtype_size(t->dtype),
                       "%s: %zu bytes for %zu elements", t->name, t->size,
                       t->n);
        }
    }
}

static void
check_response(const infer_ks_request_t *req)
{
    size_t                                 len, n;
    unsigned char                         *out;
    infer_ks_piece_t                       piece;
    infer_ks_output_t                      o;
    Inference__ModelStreamInferResponse   *sr;
    const ProtobufCBinaryData             *raw;

    piece.p = req->texts[0];
    piece.len = req->text_lens[0];
    memset(&o, 0, sizeof(o));
    o.name = "text_output";
    o.dtype = INFER_KS_BYTES;
    o.n_dims = req->text_rank;
    o.dims[0] = o.dims[1] = 1;
    o.pieces = &piece;
    o.n_pieces = 1;
    out = infer_ks_pb_infer_body("tiny", "1", req->id, &o, 1, 1, 1, &len);
    FUZZ_CHECK(out != NULL && len >= 5 && out[0] == 0, "no response");
    n = (size_t) out[1] << 24 | (size_t) out[2] << 16
        | (size_t) out[3] << 8 | out[4];
    FUZZ_CHECK(n + 5 == len, "prefix %zu for %zu bytes", n, len);
    sr = inference__model_stream_infer_response__unpack(NULL, n, out + 5);
    FUZZ_CHECK(sr != NULL && sr->infer_response != NULL
               && sr->infer_response->n_raw_output_contents == 1,
               "the response does not decode");
    raw = &sr->infer_response->raw_output_contents[0];
    FUZZ_CHECK(raw->len == piece.len + 4
               && (piece.len == 0
                   || memcmp(raw->data + 4, piece.p, piece.len) == 0),
               "the text does not come back");
    FUZZ_CHECK(strcmp(sr->infer_response->id, req->id ? req->id : "") == 0,
               "the id does not come back");
    inference__model_stream_infer_response__free_unpacked(sr, NULL);
    free(out);
}

static void
one_message(const unsigned char *msg, size_t len)
{
    int                  rc;
    char                *name, *version, *enc, *p;
    uint64_t             ms;
    infer_ks_error_t     err;
    infer_ks_request_t   req;
    infer_ks_tensors_t   set;

    memset(&err, 0, sizeof(err));
    rc = infer_ks_parse_pb(msg, len, &set, &err);
    FUZZ_SAY("parse: %d %s", rc, rc ? err.message : "");
    if (rc != 0) {
        FUZZ_CHECK(err.status == 400 || err.status == 500, "status %d",
                   err.status);
        FUZZ_CHECK(err.message[0] != '\0', "an error without a message");
        FUZZ_CHECK(set.n_inputs == 0 && set.pb == NULL, "a refused set "
                   "that holds something");
    } else {
        check_set(&set);
        rc = infer_ks_interpret(&set, VOCAB, 0, &req, &err);
        FUZZ_SAY("interpret: %d %s", rc, rc ? err.message : "");
        if (rc != 0) {
            FUZZ_CHECK(err.status == 400 || err.status == 500, "status %d",
                       err.status);
        } else {
            FUZZ_CHECK(req.n_rows >= 1 && req.n_rows <= INFER_KS_MAX_BATCH,
                       "%d rows", req.n_rows);
            if (req.kind == INFER_KS_TEXT) {
                check_response(&req);
            }
            infer_ks_request_free(&req);
        }
        infer_ks_tensors_free(&set);
    }

    if (infer_ks_pb_model_ref(msg, len, &name, &version) == 0) {
        free(name);
        free(version);
    }
    if (infer_grpc_timeout((const char *) msg, len, &ms) == 0) {
        FUZZ_CHECK(ms <= INT32_MAX, "%llu ms", (unsigned long long) ms);
    }
    enc = infer_grpc_percent((const char *) msg, len < 512 ? len : 512);
    FUZZ_CHECK(enc != NULL, "no grpc-message");
    for (p = enc; *p; p++) {
        FUZZ_CHECK(*p >= 0x20 && *p <= 0x7e, "byte %02x in grpc-message",
                   (unsigned char) *p);
    }
    free(enc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   rc;
    char                  err[256];
    size_t                piece, off, n, len;
    const unsigned char  *msg;
    infer_grpc_reader_t   rd;

    if (size < 1) {
        return 0;
    }
    piece = (size_t) data[0] * 4 + 1;
    data++;
    size--;

    memset(&rd, 0, sizeof(rd));
    for (off = 0; off < size; off += n) {
        n = size - off < piece ? size - off : piece;
        FUZZ_CHECK(infer_grpc_feed(&rd, data + off, n) == 0, "feed");
        for ( ;; ) {
            rc = infer_grpc_next(&rd, MAX_MSG, &msg, &len, err, sizeof(err));
            if (rc == 0) {
                break;
            }
            if (rc < 0) {
                FUZZ_CHECK(err[0] != '\0', "an error without a message");
                goto done;
            }
            FUZZ_CHECK(len <= MAX_MSG, "a message of %zu bytes", len);
            one_message(msg, len);
        }
    }
    FUZZ_CHECK(infer_grpc_pending(&rd) <= size, "pending");

done:

    infer_grpc_reader_free(&rd);
    return 0;
}
