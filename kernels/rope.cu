/* RoPE (rotate_half) with the optional qkv bias: one block per token. */
#include "device.cuh"
#include "rope.h"

static __global__ void
rope_qkv_kernel(__half *qkv, int stride, const __half *bias,
    const int32_t *positions, const float *inv_freq, int nh, int nkv,
    int head_dim)
{
    __half *row = qkv + (size_t) blockIdx.x * stride;
    float   pos = (float) positions[blockIdx.x];
    int     half = head_dim / 2, pairs = (nh + nkv) * half, a, b, j;
    float   x1, x2, s, c;

    for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
        j = i % half;
        a = (i / half) * head_dim + j;
        b = a + half;
        x1 = __half2float(row[a]);
        x2 = __half2float(row[b]);
        if (bias != nullptr) {
            x1 += __half2float(bias[a]);
            x2 += __half2float(bias[b]);
        }
        /* the angle is rounded to float as Hugging Face computes it */
        sincosf(pos * inv_freq[j], &s, &c);
        row[a] = __float2half(x1 * c - x2 * s);
        row[b] = __float2half(x2 * c + x1 * s);
    }
    if (bias != nullptr) {
        for (int i = threadIdx.x; i < nkv * head_dim; i += blockDim.x) {
            a = (nh + nkv) * head_dim + i;
            row[a] = __float2half(__half2float(row[a])
                                  + __half2float(bias[a]));
        }
    }
}

extern "C" int
infer_cuda_rope_qkv(uint16_t *qkv, int stride, const uint16_t *bias,
    const int32_t *positions, const float *inv_freq, int n, int nh,
    int nkv, int head_dim, void *stream)
{
    if (n > 0) {
        rope_qkv_kernel<<<n, 256, 0, (cudaStream_t) stream>>>(
            reinterpret_cast<__half *>(qkv), stride,
            reinterpret_cast<const __half *>(bias), positions, inv_freq, nh,
            nkv, head_dim);
    }
    return (int) cudaGetLastError();
}
