/*
 * The KServe v2 tensor jobs that the REST front end (ngx_http_infer_kserve.c)
 * and the gRPC one (ngx_http_infer_grpc.c) share: a request's tensors
 * interpreted and tokenized, its rows run as a batch, its outputs gathered
 * for a codec.  Only how a job's body comes in and its answer goes out
 * differs, through the hooks below.
 */
#ifndef NGX_HTTP_INFER_KSERVE_H
#define NGX_HTTP_INFER_KSERVE_H

#include "ngx_http_infer.h"
#include "kserve.h"

/* A model has one version: the one its directory holds. */
#define NGX_HTTP_INFER_KS_VERSION   "1"

typedef struct ngx_http_infer_ks_s  ngx_http_infer_ks_t;

/*
 * One request from its body to its answer, in r->pool (or malloc'd, for
 * the messages of a gRPC stream); what it holds is malloc'd and freed
 * with it (ngx_http_infer_ks_free).
 */
struct ngx_http_infer_ks_s {
    infer_ks_route_kind_t       kind;
    ngx_http_infer_model_t     *model;
    const infer_tokenizer_t    *tok;
    int                         vocab;
    int                         context;
    ngx_msec_t                  timeout;       /* the deadline; 0: the
                                                  model's */
    u_char                     *body;          /* in r->pool */
    size_t                      body_len;
    size_t                      header_len;
    infer_ks_tensors_t          set;           /* pb: parsed already */
    infer_ks_request_t          req;
    int32_t                   **ids;           /* [n_rows] of text rows */
    int                        *n_ids;
    ngx_int_t                   rc;            /* of the preparation */
    infer_ks_error_t            err;
    ngx_http_infer_batch_t     *batch;
    char                       *reply;         /* malloc'd, or NULL */
    size_t                      reply_len;
    size_t                      reply_header_len;
    int                         bad_row;       /* 1 + a row the engine
                                                  answered wrongly */
    unsigned                    pb:1;          /* a ModelInferRequest */

    /* how the answer goes out: an error, and the batch's outputs encoded
     * (maybe in a thread) then sent (in the loop) */
    ngx_int_t                 (*send_error)(ngx_http_request_t *r,
                                            infer_ks_error_t *err);
    void                      (*encode)(void *data);
    void                      (*answer)(ngx_http_request_t *r, void *data);
    void                       *data;          /* the front end's */
};

/* 1 with err set (403) when infer_allowed_models does not let the request
 * call the model (500 when it cannot be evaluated). */
int ngx_http_infer_ks_forbidden(ngx_http_request_t *r,
    ngx_http_infer_model_t *m, infer_ks_error_t *err);
/* 1 with err set (503, the reason) when the model's engine is not up in
 * this worker. */
int ngx_http_infer_ks_unavailable(ngx_http_infer_model_t *m,
    infer_ks_error_t *err);
/* A job in r->pool with REST's hooks. */
ngx_http_infer_ks_t *ngx_http_infer_ks_job(ngx_http_request_t *r);
/* Its model known: prepared (in the thread pool when bytes make it
 * worth it), then its rows submitted as a batch, or its error sent. */
void ngx_http_infer_ks_run(ngx_http_request_t *r, ngx_http_infer_ks_t *job,
    size_t bytes);
/* Interprets the tensors and tokenizes the texts: job->rc NGX_OK, or
 * NGX_ERROR with job->err.  Touches only the job and the tokenizer. */
void ngx_http_infer_ks_prepare(void *data);
/* The engine request of row b. */
void ngx_http_infer_ks_row(ngx_http_infer_ks_t *job, int b,
    infer_request_t *ir);
/* The error of a refused submit of row b (bytes: the outputs asked). */
void ngx_http_infer_ks_submit_error(ngx_http_infer_ks_t *job, int b, int rc,
    size_t bytes, infer_ks_error_t *err);
/* The outputs of a batch that has ended, for a codec; then free them. */
ngx_int_t ngx_http_infer_ks_outputs(ngx_http_infer_ks_t *job,
    infer_ks_output_t *out, infer_ks_piece_t **pieces, u_char ***own);
void ngx_http_infer_ks_outputs_free(ngx_http_infer_ks_t *job,
    infer_ks_piece_t *pieces, u_char **own);
/* Frees what a job holds (not the job). */
void ngx_http_infer_ks_free(void *data);

#endif
