/*
 * The /predict codec: request bodies in JSON, MessagePack or protobuf (the
 * KServe v2 ModelInferRequest) become a batch of token id rows; the
 * engine's logits and logprobs for those rows become the reply, in JSON
 * numbers, JSON with base64 tensors, MessagePack or protobuf
 * (ModelInferResponse).  Pure functions: no nginx, no engine state; what
 * they return is malloc'd.
 *
 * Ragged batches are never padded: each row runs as it is.  A tensor of
 * all positions ("output": "all") holds the rows' positions one after the
 * other, in batch order, with "lengths" giving each row's count; its shape
 * is [batch, positions, vocab] when every row has the same length and
 * [total positions, vocab] when not.
 */
#ifndef INFER_PREDICT_H
#define INFER_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

typedef enum {
    INFER_PRED_JSON = 0,
    INFER_PRED_MSGPACK,
    INFER_PRED_PROTOBUF
} infer_pred_format_t;

typedef enum {
    INFER_PRED_ALL = 0,          /* logits of every position */
    INFER_PRED_LAST,             /* of the last one */
    INFER_PRED_LOGPROBS          /* logprobs of the tokens, top_k best */
} infer_pred_output_t;

/* A status and a message for the client (printable ASCII: what comes from
 * the request is quoted with other bytes as '?'). */
typedef struct {
    int   status;
    char  message[320];
} infer_pred_error_t;

typedef struct {
    infer_pred_format_t   format;      /* of the body */
    infer_pred_format_t   reply;       /* of the answer */
    infer_pred_output_t   output;
    int                   top_k;       /* logprobs: 0 .. 20 alternatives */
    int                   base64;      /* JSON reply: tensors in base64 */
    int                   f16;         /* logits as IEEE half floats */
    char                 *model;       /* named by the request, or NULL */
    char                 *id;          /* protobuf request id, or NULL */

    int                   n_rows;
    int32_t             **ids;         /* [n_rows] token ids */
    int                  *n_ids;
    char                **texts;       /* [n_rows] until tokenized, or
                                          NULL for id rows */
    size_t               *text_lens;
} infer_pred_request_t;

/* Most rows one request may hold; the engine's queue may hold fewer. */
#define INFER_PRED_MAX_ROWS  65536

/* The format a Content-Type names (NULL or empty: JSON); -1 when it is
 * none of ours. */
int infer_pred_content_format(const char *type, size_t len);
/* The reply's format from an Accept header (NULL: none): the first of our
 * media types it names, the request's own for a wildcard or no header,
 * -1 when it accepts none of them. */
int infer_pred_accept_format(const char *accept, size_t len,
    infer_pred_format_t request);
const char *infer_pred_content_type(infer_pred_format_t f);

/* Parses a body of req->format into req (set req->format and req->reply
 * first; the rest is filled).  0, or -1 with err set (400); req must be
 * freed either way. */
int infer_pred_parse(const char *body, size_t len, infer_pred_request_t *req,
    infer_pred_error_t *err);

/* Tokenizes text rows (bos added as completions do) and checks every
 * row: not empty, no longer than context, ids inside the vocabulary.
 * 0, or -1 with err set. */
int infer_pred_prepare(infer_pred_request_t *req, const infer_tokenizer_t *tok,
    int vocab, int context, infer_pred_error_t *err);

void infer_pred_request_free(infer_pred_request_t *req);

/* What the engine gave for one row. */
typedef struct {
    const void     *logits;      /* n_logits x vocab, float or half */
    int             n_logits;
    const int32_t  *lp_ids;      /* tokens 1 .. n - 1 */
    const float    *lp;
    const int32_t  *top_ids;     /* [n_lp][top] */
    const float    *top_lp;
    int             n_lp;
    int             top;
} infer_pred_row_t;

/* Bytes of the logits the rows of req ask for (the cap's measure). */
size_t infer_pred_output_bytes(const infer_pred_request_t *req, int vocab);

/* The reply to req from its rows (rows[i] for req->ids[i]) in req->reply;
 * NULL with err set when the rows are not what req asked for (500) or
 * memory ran out. */
char *infer_pred_reply(const infer_pred_request_t *req,
    const infer_pred_row_t *rows, int vocab, const char *model, size_t *len,
    infer_pred_error_t *err);

/* {"error": message} in JSON or MessagePack; protobuf has no error message
 * (gRPC carries errors in its status), so its errors are JSON: see
 * infer_pred_error_format().  NULL when memory ran out. */
char *infer_pred_error_body(infer_pred_format_t reply,
    const infer_pred_error_t *err, size_t *len);
infer_pred_format_t infer_pred_error_format(infer_pred_format_t reply);

void infer_pred_set_error(infer_pred_error_t *err, int status,
    const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
