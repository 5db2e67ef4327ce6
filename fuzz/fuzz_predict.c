/*
 * The /predict codec on any bytes.  The first byte picks the body's format
 * (JSON, MessagePack, protobuf: its value mod 3) and the reply's (its value
 * / 3 mod 3); the rest is the body.  A rejected body must still give the
 * client an error it can read in the reply's format; an accepted one must
 * hold what the front end relies on, tokenize and check against
 * stories260K's tokenizer, and every reply built for it (made-up logits of
 * a 3-id vocabulary) must decode again with jansson, msgpack-c and
 * protobuf-c into what was asked for.
 */
#include <msgpack.h>

#include "fuzz.h"
#include "grpc_service.pb-c.h"
#include "predict.h"

#define FUZZ_VOCAB      3           /* of the made-up replies */
#define FUZZ_POSITIONS  4096        /* replies built up to this many */

static infer_tokenizer_t  *fuzz_tok;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char  *shared = getenv("INFER_SHARED");
    char         dir[1024], err[512];

    (void) argc;
    (void) argv;
    if (shared == NULL || shared[0] == '\0') {
        shared = "../shared";
    }
    snprintf(dir, sizeof(dir), "%s/models/stories260K", shared);
    if (infer_tokenizer_load(dir, &fuzz_tok, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_predict: %s\n", err);
        abort();
    }
    return 0;
}

/* An error body in the reply's format is {"error": "..."}. */
static void
fuzz_check_error(infer_pred_format_t reply, const infer_pred_error_t *err)
{
    char              *body;
    size_t             len, off = 0;
    json_t            *j;
    msgpack_unpacked   u;

    FUZZ_CHECK(err->status == 400 || err->status == 500, "status %d",
               err->status);
    FUZZ_CHECK(err->message[0] != '\0', "an error without a message");

    body = infer_pred_error_body(reply, err, &len);
    FUZZ_CHECK(body != NULL, "no error body for \"%s\"", err->message);
    if (infer_pred_error_format(reply) == INFER_PRED_JSON) {
        j = fuzz_json(body, len);
        FUZZ_CHECK(json_is_string(json_object_get(j, "error")),
                   "not {\"error\": \"...\"}: %s", body);
        json_decref(j);

    } else {
        msgpack_unpacked_init(&u);
        FUZZ_CHECK(msgpack_unpack_next(&u, body, len, &off)
                   == MSGPACK_UNPACK_SUCCESS && off == len
                   && u.data.type == MSGPACK_OBJECT_MAP
                   && u.data.via.map.size == 1
                   && u.data.via.map.ptr[0].val.type == MSGPACK_OBJECT_STR,
                   "not a MessagePack {error: message}");
        msgpack_unpacked_destroy(&u);
    }
    free(body);
}

/* The reply to req in its format, decoded: the right number of rows. */
static void
fuzz_check_reply(infer_pred_request_t *req, const infer_pred_row_t *rows,
    size_t positions)
{
    char                           *body;
    size_t                          len, off = 0, i, tensor;
    json_t                         *j, *res;
    msgpack_unpacked                u;
    infer_pred_error_t              err;
    Inference__ModelInferResponse  *m;

    body = infer_pred_reply(req, rows, FUZZ_VOCAB, "fuzz", &len, &err);
    FUZZ_CHECK(body != NULL, "no reply: %s", err.message);

    switch (req->reply) {
    case INFER_PRED_JSON:
        j = fuzz_json(body, len);
        res = json_object_get(j, "result");
        if (req->base64 && req->output != INFER_PRED_LOGPROBS) {
            tensor = positions * FUZZ_VOCAB * (req->f16 ? 2 : 4);
            FUZZ_CHECK(json_is_object(res)
                       && json_string_length(json_object_get(res, "data"))
                          == (tensor + 2) / 3 * 4,
                       "base64 tensor of %zu bytes wrong: %.200s", tensor,
                       body);
        } else {
            FUZZ_CHECK(json_is_array(res)
                       && json_array_size(res) == (size_t) req->n_rows,
                       "JSON result not %d rows: %.200s", req->n_rows, body);
        }
        json_decref(j);
        break;

    case INFER_PRED_MSGPACK:
        msgpack_unpacked_init(&u);
        FUZZ_CHECK(msgpack_unpack_next(&u, body, len, &off)
                   == MSGPACK_UNPACK_SUCCESS && off == len
                   && u.data.type == MSGPACK_OBJECT_MAP,
                   "reply is not one MessagePack map");
        msgpack_unpacked_destroy(&u);
        break;

    default:
        m = inference__model_infer_response__unpack(NULL, len,
                                                    (uint8_t *) body);
        FUZZ_CHECK(m != NULL && m->n_outputs >= 1
                   && m->n_outputs == m->n_raw_output_contents,
                   "reply is no ModelInferResponse with raw outputs");
        for (i = 0; i < m->n_outputs; i++) {
            if (strcmp(m->outputs[i]->name, "lengths") == 0) {
                FUZZ_CHECK(m->raw_output_contents[i].len
                           == (size_t) req->n_rows * 4, "lengths of %zu "
                           "bytes for %d rows",
                           m->raw_output_contents[i].len, req->n_rows);
            }
        }
        inference__model_infer_response__free_unpacked(m, NULL);
    }
    free(body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    i, k, rc;
    size_t                 positions;
    float                 *logits;
    infer_pred_row_t      *rows;
    infer_pred_error_t     err;
    infer_pred_request_t   req;
    infer_pred_format_t    reply;

    if (size < 1) {
        return 0;
    }
    memset(&req, 0, sizeof(req));
    req.format = (infer_pred_format_t) (data[0] % 3);
    req.reply = reply = (infer_pred_format_t) (data[0] / 3 % 3);

    rc = infer_pred_parse((const char *) data + 1, size - 1, &req, &err);
    FUZZ_SAY("parse: %d %s", rc, rc ? err.message : "");
    if (rc != 0) {
        FUZZ_CHECK(req.reply == reply, "the reply's format changed");
        fuzz_check_error(reply, &err);
        infer_pred_request_free(&req);
        return 0;
    }

    FUZZ_CHECK(req.n_rows >= 1 && req.n_rows <= INFER_PRED_MAX_ROWS
               && req.ids != NULL && req.n_ids != NULL
               && req.top_k >= 0 && req.top_k <= 20
               && !(req.base64 && req.reply != INFER_PRED_JSON),
               "accepted request breaks the contract: %d rows, top_k %d",
               req.n_rows, req.top_k);

    rc = infer_pred_prepare(&req, fuzz_tok, infer_tokenizer_vocab_size(
                                fuzz_tok), 512, &err);
    FUZZ_SAY("prepare: %d %s", rc, rc ? err.message : "");
    if (rc != 0) {
        fuzz_check_error(req.reply, &err);
        infer_pred_request_free(&req);
        return 0;
    }

    positions = 0;
    for (i = 0; i < req.n_rows; i++) {
        FUZZ_CHECK(req.n_ids[i] >= 1 && req.n_ids[i] <= 512
                   && req.ids[i] != NULL, "row %d of %d ids passed", i,
                   req.n_ids[i]);
        for (k = 0; k < req.n_ids[i]; k++) {
            FUZZ_CHECK(req.ids[i][k] >= 0 && req.ids[i][k] < 512,
                       "id %d passed", req.ids[i][k]);
        }
        positions += req.output == INFER_PRED_ALL ? (size_t) req.n_ids[i]
                     : req.output == INFER_PRED_LAST ? 1 : 0;
    }
    if (positions > FUZZ_POSITIONS) {
        infer_pred_request_free(&req);
        return 0;
    }

    /* made-up rows, as the engine would give them: one buffer big enough
     * for every row's logits or logprobs */
    rows = calloc(req.n_rows, sizeof(*rows));
    logits = calloc(512 * 21 + positions * FUZZ_VOCAB + 1, sizeof(float));
    FUZZ_CHECK(rows && logits, "out of memory");
    for (i = 0; i < 512 * 21 + (int) positions * FUZZ_VOCAB; i++) {
        logits[i] = (float) (i % 97) / 7.0f - 5.0f;
    }
    for (i = 0; i < req.n_rows; i++) {
        if (req.output == INFER_PRED_LOGPROBS) {
            rows[i].n_lp = req.n_ids[i] - 1;
            rows[i].top = req.top_k;
            if (rows[i].n_lp == 0) {
                continue;           /* the engine gives no arrays then */
            }
            rows[i].lp = logits;
            rows[i].lp_ids = req.ids[i] + 1;
            rows[i].top_ids = req.ids[0];       /* any ids will do */
            rows[i].top_lp = logits;
            if ((size_t) rows[i].n_lp * req.top_k > (size_t) req.n_ids[0]) {
                rows[i].top_ids = (int32_t *) logits;
            }
        } else {
            rows[i].logits = logits;
            rows[i].n_logits = req.output == INFER_PRED_ALL ? req.n_ids[i]
                                                            : 1;
        }
    }
    fuzz_check_reply(&req, rows, positions);

    /* the same rows in the other formats */
    for (k = 0; k < 3; k++) {
        req.reply = (infer_pred_format_t) k;
        req.base64 = 0;
        fuzz_check_reply(&req, rows, positions);
    }

    free(logits);
    free(rows);
    infer_pred_request_free(&req);
    return 0;
}
