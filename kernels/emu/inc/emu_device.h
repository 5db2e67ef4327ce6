/* CPU emulation of CUDA device code: one std::thread per CUDA thread, a
 * block at a time; __syncthreads and warp shuffles via barriers. */
#ifndef EMU_DEVICE_H
#define EMU_DEVICE_H
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <math.h>
#include <thread>
#include <vector>
#include "cuda_runtime.h"
#include "cuda_fp16.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct emu_idx { unsigned x, y, z; };
extern thread_local emu_idx threadIdx, blockIdx;
extern emu_idx blockDim, gridDim;
extern char *emu_dyn_smem;
extern std::barrier<> *emu_block_bar;
extern std::vector<std::barrier<> *> emu_warp_bar;
extern uint64_t emu_slots[32][32];

static inline int emu_linear() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
static inline void __syncthreads() { emu_block_bar->arrive_and_wait(); }
static inline void __syncwarp(unsigned = 0xffffffffu) {
    emu_warp_bar[emu_linear() / 32]->arrive_and_wait();
}

template <class T> static inline T emu_exchange(T v, int src) {
    int id = emu_linear(), w = id / 32, lane = id % 32;
    T   r;
    static_assert(sizeof(T) <= 8, "slot");
    std::memcpy(&emu_slots[w][lane], &v, sizeof(T));
    emu_warp_bar[w]->arrive_and_wait();
    std::memcpy(&r, &emu_slots[w][src & 31], sizeof(T));
    emu_warp_bar[w]->arrive_and_wait();
    return r;
}
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int m) {
    return emu_exchange(v, (emu_linear() % 32) ^ m);
}
template <class T> static inline T __shfl_sync(unsigned, T v, int src) {
    return emu_exchange(v, src);
}
template <class T> static inline T __shfl_up_sync(unsigned, T v, unsigned d) {
    int lane = emu_linear() % 32;
    return emu_exchange(v, lane >= (int) d ? lane - (int) d : lane);
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

void emu_run(dim3 g, dim3 b, size_t smem, cudaStream_t s,
             std::function<void()> body);

template <class... P, class... A>
void emu_launch(void (*k)(P...), dim3 g, dim3 b, size_t smem, cudaStream_t s,
                A... a)
{
    emu_run(g, b, smem, s, [=]() { k(a...); });
}
#endif
