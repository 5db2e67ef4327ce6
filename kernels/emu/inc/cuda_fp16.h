/* CPU emulation of cuda_fp16.h: __half over _Float16 (kernels/emu). */
#ifndef EMU_CUDA_FP16_H
#define EMU_CUDA_FP16_H
#include "cuda_runtime.h"
struct __half { _Float16 v; };
static inline float __half2float(__half h) { return (float) h.v; }
static inline __half __float2half(float f) { __half h; h.v = (_Float16) f; return h; }
struct alignas(4) __half2 { __half x, y; };
static inline float2 __half22float2(__half2 h) {
    return float2{ (float) h.x.v, (float) h.y.v };
}
#endif
