/* CPU emulation of the NCCL subset comm_nccl.c uses (kernels/emu). */
#ifndef EMU_NCCL_H
#define EMU_NCCL_H
#include <stddef.h>
#include "cuda_runtime.h"
#ifdef __cplusplus
extern "C" {
#endif
typedef enum { ncclSuccess = 0, ncclInvalidArgument = 4 } ncclResult_t;
typedef enum { ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9 }
    ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;
typedef struct emu_nccl_comm *ncclComm_t;

ncclResult_t ncclCommInitAll(ncclComm_t *comms, int n, const int *devs);
ncclResult_t ncclCommDestroy(ncclComm_t c);
const char *ncclGetErrorString(ncclResult_t r);
ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count,
    ncclDataType_t t, ncclRedOp_t op, ncclComm_t c, cudaStream_t s);
ncclResult_t ncclAllGather(const void *send, void *recv, size_t count,
    ncclDataType_t t, ncclComm_t c, cudaStream_t s);
#ifdef __cplusplus
}
#endif
#endif
