/*
 * NCCL communicator (comm.h) for tensor parallelism on GPUs: one process,
 * one thread per rank, rank r on devices[r].  Buffers are device pointers
 * and stream is the rank's cudaStream_t.
 */
#ifndef INFER_COMM_NCCL_H
#define INFER_COMM_NCCL_H

#include <stddef.h>
#include "comm.h"

int infer_comm_nccl_create(int ranks, const int *devices,
    infer_comm_t **out, char *err, size_t errlen);

#endif
