/* Device helpers shared by the kernels: half pointers and reductions. */
#ifndef INFER_KERNELS_DEVICE_CUH
#define INFER_KERNELS_DEVICE_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#define INFER_FULL_MASK 0xffffffffu

static __device__ __forceinline__ float
warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(INFER_FULL_MASK, v, o);
    }
    return v;
}

static __device__ __forceinline__ float
warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(INFER_FULL_MASK, v, o));
    }
    return v;
}

/* Sum over the block, returned to every thread; blockDim.x is a multiple
 * of 32 and at most 1024. */
static __device__ __forceinline__ float
block_sum(float v)
{
    __shared__ float part[32];
    int              warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    v = warp_sum(v);
    __syncthreads();            /* part may still be read by a prior call */
    if (lane == 0) {
        part[warp] = v;
    }
    __syncthreads();
    v = lane < (int) (blockDim.x / 32) ? part[lane] : 0.0f;
    return warp_sum(v);
}

static __device__ __forceinline__ const __half *
as_half(const uint16_t *p)
{
    return reinterpret_cast<const __half *>(p);
}

static __device__ __forceinline__ __half *
as_half(uint16_t *p)
{
    return reinterpret_cast<__half *>(p);
}

#endif
