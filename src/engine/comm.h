/*
 * Communicator for tensor parallelism: a group of ranks that all-reduce
 * (sum) and all-gather buffers.  Every rank calls each collective with the
 * same count, from its own thread.  Implementations: shared-memory threads
 * (cpu, float32 host buffers) and NCCL (cuda, device buffers, one stream
 * per rank).
 */
#ifndef INFER_COMM_H
#define INFER_COMM_H

#include <stddef.h>
#include "model.h"

typedef struct infer_comm infer_comm_t;

typedef struct {
    const char *name;
    int  (*all_reduce_sum)(infer_comm_t *c, int rank, void *buf,
                           size_t count, infer_dtype_t dt, void *stream);
    /* Each rank contributes count elements at send; recv gets
     * ranks x count elements in rank order. */
    int  (*all_gather)(infer_comm_t *c, int rank, const void *send,
                       void *recv, size_t count, infer_dtype_t dt,
                       void *stream);
    void (*destroy)(infer_comm_t *c);
} infer_comm_ops_t;

struct infer_comm {
    const infer_comm_ops_t *ops;
    int                     ranks;
    void                   *priv;
};

/* Shared-memory communicator for `ranks` threads of one process. */
int infer_comm_threads_create(int ranks, infer_comm_t **out);

#endif
