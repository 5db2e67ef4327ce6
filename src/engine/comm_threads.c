/*
 * Shared-memory communicator for ranks that are threads of one process
 * (CPU tensor parallelism).  All-reduce without a staging buffer: every rank
 * publishes its buffer; rank r sums slice r over all ranks in rank order and
 * writes it into its own buffer (only rank r ever reads slice r before the
 * next barrier); then every rank copies the other ranks' reduced slices.
 * The order of the sum is fixed, so every rank ends with identical bytes.
 */
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "crew.h"

typedef struct {
    infer_barrier_t    barrier;
    void             **bufs;      /* [ranks] published pointers */
} infer_comm_threads_t;

static int
comm_threads_all_reduce(infer_comm_t *c, int rank, void *buf, size_t count,
    infer_dtype_t dt, void *stream)
{
    infer_comm_threads_t *t = c->priv;
    float                *mine = buf;
    size_t                lo, hi, i;
    int                   r;

    (void) stream;
    if (dt != INFER_DT_F32) {
        return -1;
    }
    if (c->ranks == 1) {
        return 0;
    }
    t->bufs[rank] = buf;
    infer_barrier_wait(&t->barrier);

    lo = count * rank / c->ranks;
    hi = count * (rank + 1) / c->ranks;
    for (i = lo; i < hi; i++) {
        float s = 0.0f;
        for (r = 0; r < c->ranks; r++) {
            s += ((const float *) t->bufs[r])[i];
        }
        mine[i] = s;
    }
    infer_barrier_wait(&t->barrier);

    for (r = 0; r < c->ranks; r++) {
        if (r != rank) {
            lo = count * r / c->ranks;
            hi = count * (r + 1) / c->ranks;
            memcpy(mine + lo, (const float *) t->bufs[r] + lo,
                   (hi - lo) * sizeof(float));
        }
    }
    infer_barrier_wait(&t->barrier);
    return 0;
}

static int
comm_threads_all_gather(infer_comm_t *c, int rank, const void *send,
    void *recv, size_t count, infer_dtype_t dt, void *stream)
{
    infer_comm_threads_t *t = c->priv;
    int                   r;

    (void) stream;
    if (dt != INFER_DT_F32) {
        return -1;
    }
    t->bufs[rank] = (void *) send;
    infer_barrier_wait(&t->barrier);
    for (r = 0; r < c->ranks; r++) {
        memcpy((float *) recv + (size_t) r * count, t->bufs[r],
               count * sizeof(float));
    }
    infer_barrier_wait(&t->barrier);
    return 0;
}

static void
comm_threads_destroy(infer_comm_t *c)
{
    infer_comm_threads_t *t;

    if (c == NULL) {
        return;
    }
    t = c->priv;
    infer_barrier_destroy(&t->barrier);
    free(t->bufs);
    free(t);
    free(c);
}

static const infer_comm_ops_t comm_threads_ops = {
    "threads",
    comm_threads_all_reduce,
    comm_threads_all_gather,
    comm_threads_destroy
};

int
infer_comm_threads_create(int ranks, infer_comm_t **out)
{
    infer_comm_t         *c;
    infer_comm_threads_t *t;

    c = calloc(1, sizeof(*c));
    t = calloc(1, sizeof(*t));
    if (c == NULL || t == NULL || ranks < 1) {
        free(c);
        free(t);
        return -1;
    }
    t->bufs = calloc(ranks, sizeof(void *));
    if (t->bufs == NULL || infer_barrier_init(&t->barrier, ranks) != 0) {
        free(t->bufs);
        free(c);
        free(t);
        return -1;
    }
    c->ops = &comm_threads_ops;
    c->ranks = ranks;
    c->priv = t;
    *out = c;
    return 0;
}
