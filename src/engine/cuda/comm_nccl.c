/*
 * NCCL communicator: ncclCommInitAll builds every rank's communicator in
 * one call; each rank then runs its collectives from its own thread on its
 * own stream (the threads must reach a collective together, as comm.h
 * requires).  Failures are reported on stderr naming the call, because
 * the comm.h collectives return only a status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include "comm_nccl.h"

typedef struct {
    ncclComm_t *comms;
    int        *devices;
} nccl_priv_t;

static int
nccl_type(infer_dtype_t dt, ncclDataType_t *out)
{
    switch (dt) {
    case INFER_DT_F32:
        *out = ncclFloat32;
        return 0;
    case INFER_DT_F16:
        *out = ncclFloat16;
        return 0;
    case INFER_DT_BF16:
        *out = ncclBfloat16;
        return 0;
    }
    fprintf(stderr, "comm=nccl: unknown dtype %d\n", (int) dt);
    return -1;
}

static int
nccl_prepare(infer_comm_t *c, int rank, infer_dtype_t dt,
    ncclDataType_t *t)
{
    nccl_priv_t *p = c->priv;
    cudaError_t  rc;

    if (rank < 0 || rank >= c->ranks) {
        fprintf(stderr, "comm=nccl: rank %d of %d\n", rank, c->ranks);
        return -1;
    }
    rc = cudaSetDevice(p->devices[rank]);
    if (rc != cudaSuccess) {
        fprintf(stderr, "comm=nccl: cudaSetDevice(%d): %s\n",
                p->devices[rank], cudaGetErrorString(rc));
        return -1;
    }
    return nccl_type(dt, t);
}

static int
nccl_all_reduce_sum(infer_comm_t *c, int rank, void *buf, size_t count,
    infer_dtype_t dt, void *stream)
{
    nccl_priv_t    *p = c->priv;
    ncclDataType_t  t;
    ncclResult_t    rc;

    if (nccl_prepare(c, rank, dt, &t) != 0) {
        return -1;
    }
    rc = ncclAllReduce(buf, buf, count, t, ncclSum, p->comms[rank],
                       (cudaStream_t) stream);
    if (rc != ncclSuccess) {
        fprintf(stderr, "comm=nccl: ncclAllReduce (rank %d): %s\n", rank,
                ncclGetErrorString(rc));
        return -1;
    }
    return 0;
}

static int
nccl_all_gather(infer_comm_t *c, int rank, const void *send, void *recv,
    size_t count, infer_dtype_t dt, void *stream)
{
    nccl_priv_t    *p = c->priv;
    ncclDataType_t  t;
    ncclResult_t    rc;

    if (nccl_prepare(c, rank, dt, &t) != 0) {
        return -1;
    }
    rc = ncclAllGather(send, recv, count, t, p->comms[rank],
                       (cudaStream_t) stream);
    if (rc != ncclSuccess) {
        fprintf(stderr, "comm=nccl: ncclAllGather (rank %d): %s\n", rank,
                ncclGetErrorString(rc));
        return -1;
    }
    return 0;
}

static void
nccl_destroy(infer_comm_t *c)
{
    nccl_priv_t *p;
    int          r;

    if (c == NULL) {
        return;
    }
    p = c->priv;
    for (r = 0; r < c->ranks && p->comms != NULL; r++) {
        if (p->comms[r] != NULL) {
            ncclCommDestroy(p->comms[r]);
        }
    }
    free(p->comms);
    free(p->devices);
    free(p);
    free(c);
}

static const infer_comm_ops_t nccl_ops = {
    "nccl",
    nccl_all_reduce_sum,
    nccl_all_gather,
    nccl_destroy
};

int
infer_comm_nccl_create(int ranks, const int *devices, infer_comm_t **out,
    char *err, size_t errlen)
{
    infer_comm_t *c;
    nccl_priv_t  *p;
    ncclResult_t  rc;
    int           r;

    if (ranks < 1 || devices == NULL) {
        snprintf(err, errlen, "comm=nccl: %d ranks need as many devices",
                 ranks);
        return -1;
    }
    c = calloc(1, sizeof(*c));
    p = calloc(1, sizeof(*p));
    if (c == NULL || p == NULL) {
        free(c);
        free(p);
        snprintf(err, errlen, "comm=nccl: out of memory");
        return -1;
    }
    c->ops = &nccl_ops;
    c->ranks = ranks;
    c->priv = p;
    p->comms = calloc(ranks, sizeof(ncclComm_t));
    p->devices = malloc(ranks * sizeof(int));
    if (p->comms == NULL || p->devices == NULL) {
        nccl_destroy(c);
        snprintf(err, errlen, "comm=nccl: out of memory");
        return -1;
    }
    for (r = 0; r < ranks; r++) {
        p->devices[r] = devices[r];
    }
    rc = ncclCommInitAll(p->comms, ranks, p->devices);
    if (rc != ncclSuccess) {
        free(p->comms);
        p->comms = NULL;
        nccl_destroy(c);
        snprintf(err, errlen, "comm=nccl: ncclCommInitAll (%d ranks): %s",
                 ranks, ncclGetErrorString(rc));
        return -1;
    }
    *out = c;
    return 0;
}
