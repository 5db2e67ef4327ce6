/*
 * Backend contract: one forward pass over a flat batch (no padding).  The
 * scheduler builds the batch and owns KV block allocation; the backend owns
 * the weights and the KV block storage.  cpu and cuda implement the same
 * contract, so the scheduler cannot tell them apart.
 */
#ifndef INFER_BACKEND_H
#define INFER_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "model.h"
#include "sampling.h"

typedef struct {
    int            n_tokens;
    const int32_t *tokens;        /* [n_tokens] */
    const int32_t *positions;     /* [n_tokens] position in its sequence */
    const int32_t *seq_of_token;  /* [n_tokens] index into the seq arrays */
    int            n_seqs;
    /* per seq: KV length after this step (last position + 1) */
    const int32_t *ctx_len;       /* [n_seqs] */
    /* per seq: physical KV block ids; row s has max_blocks entries */
    const int32_t *block_table;   /* [n_seqs * max_blocks] */
    int            max_blocks;
    /* which tokens need logits, ascending indices into tokens */
    int            n_logits;
    const int32_t *logit_tokens;  /* [n_logits] */
} infer_batch_t;

typedef struct {
    int            threads;       /* compute threads per rank */
    int            tp;            /* ranks */
    const int     *devices;
    int            n_devices;
    size_t         kv_cache_bytes;
    int            block_size;
    int            max_batch_tokens;
    int            max_seqs;
    const char    *dtype;         /* weights in memory: "f32", "bf16",
                                     "int8", NULL or "auto" (the
                                     backend's choice) */
    int            n_blocks;      /* out: blocks that fit the budget */
    const char    *dtype_used;    /* out: what dtype became (NULL: the
                                     backend does not say) */
    size_t         weight_bytes;  /* out: weights in memory (0: unknown) */
    char           kernels[192];  /* out: matrix library and kernel set */
    const char    *kernels_warning; /* out: those kernels are not this
                                       CPU's best, or NULL */
} infer_backend_params_t;

typedef struct infer_backend infer_backend_t;

typedef struct {
    const char *name;
    int         kv_elem_bytes;    /* one cached key or value element */
    /* Loads weights (converted to the backend's type) and allocates
     * p->n_blocks KV blocks from p->kv_cache_bytes. */
    int  (*init)(infer_backend_t *b, const infer_model_t *m,
                 infer_backend_params_t *p, char *err, size_t errlen);
    /* Runs the batch; writes n_logits x vocab float32 logits to the host
     * buffer logits, or keeps them on the device when logits is NULL (then
     * sample must be set and is called next). */
    int  (*forward)(infer_backend_t *b, const infer_batch_t *batch,
                    float *logits, char *err, size_t errlen);
    /* Optional: samples the n_logits rows kept by forward(logits=NULL). */
    int  (*sample)(infer_backend_t *b, const infer_sampling_t *s, int n,
                   int32_t *out, char *err, size_t errlen);
    void (*destroy)(infer_backend_t *b);
} infer_backend_ops_t;

struct infer_backend {
    const infer_backend_ops_t *ops;
    const infer_model_t       *model;
    void                      *priv;
};

/* The backend of that name ("cpu", "cuda" or a registered one), or NULL
 * with the reason in err (a build without CUDA names it). */
const infer_backend_ops_t *infer_backend_find(const char *name, char *err,
    size_t errlen);
/* Adds a backend to the registry (tests use it for fault injection);
 * -1 when the registry is full. */
int infer_backend_register(const infer_backend_ops_t *ops);
/* KV cache bytes of one block across all ranks. */
size_t infer_backend_kv_block_bytes(const infer_backend_ops_t *ops,
    const infer_model_config_t *c, int block_size);

/* Creates a backend by name (see infer_backend_find). */
int infer_backend_create(const char *name, const infer_model_t *m,
    infer_backend_params_t *p, infer_backend_t **out, char *err,
    size_t errlen);
void infer_backend_destroy(infer_backend_t *b);

extern const infer_backend_ops_t infer_backend_cpu;
#ifdef INFER_HAVE_CUDA
extern const infer_backend_ops_t infer_backend_cuda;
#endif

#endif
