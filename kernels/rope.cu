/*
 * Bias, q/k norm and RoPE: one block per token, one warp per head; a head
 * is staged in shared memory so that lane j can pair element j with
 * j + rot/2.
 */
#include "device.cuh"
#include "rope.h"

#define WARPS  8

static __global__ void __launch_bounds__(WARPS * 32)
rope_qkv_kernel(infer_rope_args_t a)
{
    __shared__ float buf[WARPS][INFER_ROPE_MAX_HEAD];
    __half          *row = as_half(a.qkv) + (size_t) blockIdx.x * a.stride;
    const __half    *bias = as_half(a.bias), *w;
    const float     *inv = a.inv_freq;
    int              warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int              hd = a.head_dim, half = a.rot / 2;
    float            pos = (float) a.positions[blockIdx.x], *b = buf[warp];
    float            ss, r, x1, x2, s, c;

    if (inv != nullptr && a.freq_row != nullptr) {
        inv += (size_t) a.freq_row[blockIdx.x] * half;
    }
    for (int h = warp; h < a.nh + a.nkv; h += WARPS) {
        __half *x = row + (size_t) h * hd;

        ss = 0.0f;
        for (int d = lane; d < hd; d += 32) {
            b[d] = __half2float(x[d]);
            if (bias != nullptr) {
                b[d] += __half2float(bias[(size_t) h * hd + d]);
            }
            ss += b[d] * b[d];
        }
        w = h < a.nh ? as_half(a.q_norm) : as_half(a.k_norm);
        if (w != nullptr) {
            r = rsqrtf(warp_sum(ss) / hd + a.eps);
            for (int d = lane; d < hd; d += 32) {
                b[d] = __half2float(w[d]) * (b[d] * r);
            }
        }
        __syncwarp();
        for (int d = lane; d < hd; d += 32) {
            if (inv == nullptr || d >= a.rot) {
                x[d] = __float2half(b[d]);
                continue;
            }
            /* the angle is rounded to float as Hugging Face computes it */
            sincosf(pos * inv[d < half ? d : d - half], &s, &c);
            s *= a.scale;
            c *= a.scale;
            x1 = b[d < half ? d : d - half];
            x2 = b[d < half ? d + half : d];
            x[d] = __float2half(d < half ? x1 * c - x2 * s
                                         : x2 * c + x1 * s);
        }
        __syncwarp();           /* b is the next head's */
    }
    if (bias != nullptr) {
        for (int i = threadIdx.x; i < a.nkv * hd; i += blockDim.x) {
            int at = (a.nh + a.nkv) * hd + i;

            row[at] = __float2half(__half2float(row[at])
                                   + __half2float(bias[at]));
        }
    }
}

extern "C" int
infer_cuda_rope_qkv(const infer_rope_args_t *a, void *stream)
{
    if (a->head_dim > INFER_ROPE_MAX_HEAD || a->rot > a->head_dim
        || a->rot % 2 != 0)
    {
        return (int) cudaErrorInvalidValue;
    }
    if (a->n > 0) {
        rope_qkv_kernel<<<a->n, WARPS * 32, 0, (cudaStream_t) stream>>>(*a);
    }
    return (int) cudaGetLastError();
}
