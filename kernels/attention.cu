/*
 * Paged causal GQA attention (see attention.h).  Block = (tile, kv head,
 * split), 8 warps.  K/V arrive in chunks of 32 positions through shared
 * memory; warp w owns query rows w, w+8, w+16, w+24 and keeps their online
 * softmax state (max, sum, output) in registers.  Scores: lane c scores key
 * c of the chunk; output: lane d accumulates dimensions d, d+32, ...
 */
#include <math.h>
#include "attention.h"
#include "device.cuh"
#include "kvcache.h"

#define WARPS   8
#define KEYS    32
#define RPW     (INFER_ATTN_ROWS / WARPS)

template <int DL>   /* dimensions per lane: ceil(head_dim / 32) */
static __global__ void __launch_bounds__(WARPS * 32)
attention_kernel(infer_attn_args_t a)
{
    extern __shared__ float smem[];
    const int      hd = a.head_dim, group = a.nh / a.nkv;
    const int32_t *tile = a.tiles + 4 * blockIdx.x;
    const int      tok0 = tile[0], rows = tile[1] * group, slot = tile[3];
    const int      kvh = blockIdx.y, split = blockIdx.z;
    const int      warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int32_t *bt = a.block_table + (size_t) tile[2] * a.max_blocks;
    float         *qs = smem;
    float         *ks = qs + INFER_ATTN_ROWS * hd;
    float         *vs = ks + KEYS * (hd + 1);
    float          m[RPW], l[RPW], acc[RPW][DL];
    int            rpos[RPW];
    int            last = a.positions[tok0 + tile[1] - 1], lo, hi, wlo;

    if (slot < 0) {
        if (split > 0) {
            return;
        }
        /* the window of the tile's first row starts first */
        lo = a.window > 0 ? max(0, a.positions[tok0] - a.window + 1) : 0;
        hi = last + 1;
    } else {
        lo = split * a.split_len;
        hi = min(lo + a.split_len, last + 1);
        wlo = a.window > 0 ? last - a.window + 1 : 0;
        if (lo > last || hi <= wlo) {
            return;             /* the reduce skips these splits too */
        }
        lo = max(lo, wlo);
    }

    for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
        int r = i / hd, d = i - r * hd;
        int t = tok0 + r / group, h = kvh * group + r % group;

        /* pre-scaled so a score is one dot product */
        qs[i] = __half2float(as_half(a.q)[(size_t) t * a.q_stride
                                          + (size_t) h * hd + d])
                * a.scale;
    }
#pragma unroll
    for (int j = 0; j < RPW; j++) {
        int r = warp + j * WARPS;

        m[j] = -INFINITY;
        l[j] = 0.0f;
        rpos[j] = r < rows ? a.positions[tok0 + r / group] : -1;
#pragma unroll
        for (int k = 0; k < DL; k++) {
            acc[j][k] = 0.0f;
        }
    }

    for (int c0 = lo; c0 < hi; c0 += KEYS) {
        int nk = min(KEYS, hi - c0);

        __syncthreads();        /* q stored, previous chunk consumed */
        for (int c = warp; c < nk; c += WARPS) {
            int    p = c0 + c;
            size_t off = infer_kv_offset(bt[p / a.block_size],
                                         p % a.block_size, a.block_size,
                                         a.nkv, hd)
                         + (size_t) kvh * hd;

            for (int d = lane; d < hd; d += 32) {
                ks[c * (hd + 1) + d] = __half2float(as_half(a.k_cache)[off + d]);
                vs[c * hd + d] = __half2float(as_half(a.v_cache)[off + d]);
            }
        }
        __syncthreads();

#pragma unroll
        for (int j = 0; j < RPW; j++) {
            int   r = warp + j * WARPS;
            float s = -INFINITY, mnew, alpha, p;

            if (r >= rows) {
                break;          /* uniform across the warp */
            }
            if (lane < nk && c0 + lane <= rpos[j]
                && (a.window == 0 || c0 + lane > rpos[j] - a.window))
            {
                const float *qr = qs + r * hd, *kr = ks + lane * (hd + 1);

                s = 0.0f;
                for (int d = 0; d < hd; d++) {
                    s += qr[d] * kr[d];
                }
                if (a.softcap > 0.0f) {
                    s = tanhf(s / a.softcap) * a.softcap;
                }
            }
            mnew = fmaxf(m[j], warp_max(s));
            if (mnew == -INFINITY) {
                continue;       /* no visible key yet */
            }
            alpha = expf(m[j] - mnew);
            p = s == -INFINITY ? 0.0f : expf(s - mnew);
            l[j] = l[j] * alpha + warp_sum(p);
#pragma unroll
            for (int k = 0; k < DL; k++) {
                acc[j][k] *= alpha;
            }
            for (int c = 0; c < nk; c++) {
                float pc = __shfl_sync(INFER_FULL_MASK, p, c);

#pragma unroll
                for (int k = 0; k < DL; k++) {
                    int d = lane + 32 * k;

                    if (d < hd) {
                        acc[j][k] += pc * vs[c * hd + d];
                    }
                }
            }
            m[j] = mnew;
        }
    }

#pragma unroll
    for (int j = 0; j < RPW; j++) {
        int    r = warp + j * WARPS;
        int    t = tok0 + r / group, h = kvh * group + r % group;
        size_t pi;

        if (r >= rows) {
            break;
        }
        if (slot < 0) {
#pragma unroll
            for (int k = 0; k < DL; k++) {
                int d = lane + 32 * k;

                if (d < hd) {
                    as_half(a.out)[(size_t) t * a.out_stride
                                   + (size_t) h * hd + d] =
                        __float2half(acc[j][k] / l[j]);
                }
            }
        } else {
            pi = ((size_t) slot * a.n_split + split) * a.nh + h;
            if (lane == 0) {
                a.part_ml[2 * pi] = m[j];
                a.part_ml[2 * pi + 1] = l[j];
            }
#pragma unroll
            for (int k = 0; k < DL; k++) {
                int d = lane + 32 * k;

                if (d < hd) {
                    a.part_o[pi * hd + d] = acc[j][k];
                }
            }
        }
    }
}

/* Merges the splits of one (slot, head): softmax over the union. */
static __global__ void
attention_reduce_kernel(infer_attn_args_t a)
{
    int    slot = blockIdx.x, h = blockIdx.y, t = a.dec_tok[slot];
    int    pos = a.positions[t];
    int    ns = min(a.n_split, pos / a.split_len + 1);
    /* the first split that holds a key of the window */
    int    s0 = a.window > 0 ? max(0, pos - a.window + 1) / a.split_len : 0;
    size_t base = (size_t) slot * a.n_split * a.nh + h;
    float  mx = -INFINITY, sum = 0.0f, o, w;

    for (int s = s0; s < ns; s++) {
        mx = fmaxf(mx, a.part_ml[2 * (base + (size_t) s * a.nh)]);
    }
    for (int s = s0; s < ns; s++) {
        sum += a.part_ml[2 * (base + (size_t) s * a.nh) + 1]
               * expf(a.part_ml[2 * (base + (size_t) s * a.nh)] - mx);
    }
    for (int d = threadIdx.x; d < a.head_dim; d += blockDim.x) {
        o = 0.0f;
        for (int s = s0; s < ns; s++) {
            w = expf(a.part_ml[2 * (base + (size_t) s * a.nh)] - mx);
            o += a.part_o[(base + (size_t) s * a.nh) * a.head_dim + d] * w;
        }
        as_half(a.out)[(size_t) t * a.out_stride + (size_t) h * a.head_dim
                       + d] = __float2half(o / sum);
    }
}

/* The kernel instance for head_dim, or NULL when it is too large. */
static void (*attention_instance(int head_dim))(infer_attn_args_t)
{
    if (head_dim <= 32) {
        return attention_kernel<1>;
    }
    if (head_dim <= 64) {
        return attention_kernel<2>;
    }
    if (head_dim <= 128) {
        return attention_kernel<4>;
    }
    if (head_dim <= INFER_ATTN_MAX_HEAD) {
        return attention_kernel<8>;
    }
    return nullptr;
}

extern "C" int
infer_cuda_attention_setup(int head_dim)
{
    void (*kernel)(infer_attn_args_t) = attention_instance(head_dim);

    if (kernel == nullptr) {
        return (int) cudaErrorInvalidValue;
    }
    return (int) cudaFuncSetAttribute(kernel,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      infer_attn_smem_bytes(head_dim));
}

extern "C" int
infer_cuda_attention(const infer_attn_args_t *a, void *stream)
{
    void (*kernel)(infer_attn_args_t) = attention_instance(a->head_dim);
    dim3 grid(a->n_tiles, a->nkv, a->n_split);
    cudaError_t rc;

    if (kernel == nullptr) {
        return (int) cudaErrorInvalidValue;
    }
    if (a->n_tiles == 0) {
        return (int) cudaSuccess;
    }
    kernel<<<grid, WARPS * 32, infer_attn_smem_bytes(a->head_dim),
             (cudaStream_t) stream>>>(*a);
    rc = cudaGetLastError();
    if (rc == cudaSuccess && a->n_dec > 0 && a->n_split > 1) {
        attention_reduce_kernel<<<dim3(a->n_dec, a->nh), 128, 0,
                                  (cudaStream_t) stream>>>(*a);
        rc = cudaGetLastError();
    }
    return (int) rc;
}
