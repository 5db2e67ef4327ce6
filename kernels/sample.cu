/*
 * Device sampler (see sample.h).  Rows that truncate need their logits in
 * descending order: a stable segmented radix sort of (logit, id) pairs
 * gives exactly the CPU's order (ties keep ascending ids).  Then one block
 * per row runs the CPU's passes (max, sum, top-p cut, inverse-CDF pick) as
 * chunked block scans in double.
 */
#include <limits.h>
#include <math.h>
#include <cub/device/device_segmented_radix_sort.cuh>
#include "device.cuh"
#include "sample.h"

#define SAMPLE_THREADS 256

/* Scratch layout, each part 256-byte aligned. */
typedef struct {
    float   *keys_in;
    float   *keys_out;
    int32_t *ids_in;
    int32_t *ids_out;
    int32_t *offsets;
    void    *sort_tmp;
    size_t   sort_bytes;
    size_t   total;
} sample_scratch_t;

static size_t
align256(size_t n)
{
    return (n + 255) & ~(size_t) 255;
}

static int
sample_layout(void *base, int n_rows, int vocab, sample_scratch_t *s)
{
    size_t      items = (size_t) n_rows * vocab, off = 0;
    char       *p = (char *) base;
    cudaError_t rc;

    s->sort_bytes = 0;
    rc = cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, s->sort_bytes, (const float *) nullptr, (float *) nullptr,
        (const int32_t *) nullptr, (int32_t *) nullptr, (int64_t) items,
        (int64_t) n_rows, (const int32_t *) nullptr,
        (const int32_t *) nullptr);
    if (rc != cudaSuccess) {
        return (int) rc;
    }
    s->keys_in = (float *) (p + off);
    off += align256(items * sizeof(float));
    s->keys_out = (float *) (p + off);
    off += align256(items * sizeof(float));
    s->ids_in = (int32_t *) (p + off);
    off += align256(items * sizeof(int32_t));
    s->ids_out = (int32_t *) (p + off);
    off += align256(items * sizeof(int32_t));
    s->offsets = (int32_t *) (p + off);
    off += align256(((size_t) n_rows + 1) * sizeof(int32_t));
    s->sort_tmp = p + off;
    off += align256(s->sort_bytes);
    s->total = off;
    return (int) cudaSuccess;
}

extern "C" size_t
infer_cuda_sample_scratch_bytes(int n_rows, int vocab)
{
    sample_scratch_t s;

    if (sample_layout(nullptr, n_rows, vocab, &s) != (int) cudaSuccess) {
        return 0;
    }
    return s.total;
}

/* Sort input: +0.0f turns -0.0 into +0.0 so the radix order ties them as
 * the CPU comparison does. */
static __global__ void
sample_prepare_kernel(const float *logits, int n_rows, int vocab,
    float *keys, int32_t *ids, int32_t *offsets)
{
    size_t total = (size_t) n_rows * vocab, i;

    for (i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < total;
         i += (size_t) gridDim.x * blockDim.x)
    {
        keys[i] = logits[i] + 0.0f;
        ids[i] = (int32_t) (i % vocab);
        if (i % vocab == 0) {
            offsets[i / vocab] = (int32_t) i;
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        offsets[n_rows] = (int32_t) total;
    }
}

/* Inclusive prefix sum over the block (blockDim.x == SAMPLE_THREADS);
 * *total gets the block's sum. */
static __device__ double
block_scan(double v, double *total)
{
    __shared__ double warp_tot[SAMPLE_THREADS / 32];
    int               warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    double            x, before = 0.0;

    for (int o = 1; o < 32; o <<= 1) {
        x = __shfl_up_sync(INFER_FULL_MASK, v, o);
        if (lane >= o) {
            v += x;
        }
    }
    __syncthreads();
    if (lane == 31) {
        warp_tot[warp] = v;
    }
    __syncthreads();
    *total = 0.0;
    for (int w = 0; w < SAMPLE_THREADS / 32; w++) {
        if (w < warp) {
            before += warp_tot[w];
        }
        *total += warp_tot[w];
    }
    return before + v;
}

static __device__ int
block_min_int(int v)
{
    __shared__ int part[SAMPLE_THREADS / 32];
    int            warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    for (int o = 16; o > 0; o >>= 1) {
        v = min(v, __shfl_xor_sync(INFER_FULL_MASK, v, o));
    }
    __syncthreads();
    if (lane == 0) {
        part[warp] = v;
    }
    __syncthreads();
    v = INT_MAX;
    for (int w = 0; w < SAMPLE_THREADS / 32; w++) {
        v = min(v, part[w]);
    }
    return v;
}

/*
 * Walks p_i = exp(z_i - zmax) over candidates [0, m) in order and returns
 * the first i whose running sum passes the threshold (cum >= thr, or
 * thr < cum when strict), or -1; *cum_out is the running sum there (the
 * whole sum when none does).  Every thread gets the same answer.
 */
static __device__ int
scan_first(const float *lg, const int32_t *ids, int m, double inv_t,
    double zmax, double thr, int strict, double *cum_out)
{
    __shared__ double hit_cum;
    double            carry = 0.0, p, cum, total;
    int               i, hit, first;

    for (int base = 0; base < m; base += SAMPLE_THREADS) {
        i = base + threadIdx.x;
        p = 0.0;
        if (i < m) {
            p = exp((double) lg[ids ? ids[i] : i] * inv_t - zmax);
        }
        cum = carry + block_scan(p, &total);
        hit = i < m && (strict ? thr < cum : cum >= thr) ? i : INT_MAX;
        first = block_min_int(hit);
        if (first != INT_MAX) {
            if (i == first) {
                hit_cum = cum;
            }
            __syncthreads();
            *cum_out = hit_cum;
            return first;
        }
        carry += total;
    }
    *cum_out = carry;
    return -1;
}

static __device__ void
argmax_row(const float *lg, int vocab, int32_t *out)
{
    __shared__ float sv[SAMPLE_THREADS / 32];
    __shared__ int   si[SAMPLE_THREADS / 32];
    float            best = -INFINITY, v;
    int              bi = INT_MAX, i, warp = threadIdx.x / 32;
    int              lane = threadIdx.x % 32;

    for (i = threadIdx.x; i < vocab; i += blockDim.x) {
        if (lg[i] > best || bi == INT_MAX) {
            best = lg[i];
            bi = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        v = __shfl_xor_sync(INFER_FULL_MASK, best, o);
        i = __shfl_xor_sync(INFER_FULL_MASK, bi, o);
        if (v > best || (v == best && i < bi)) {
            best = v;
            bi = i;
        }
    }
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < SAMPLE_THREADS / 32; w++) {
            if (sv[w] > best || (sv[w] == best && si[w] < bi)) {
                best = sv[w];
                bi = si[w];
            }
        }
        *out = bi;
    }
}

static __global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(const float *logits, int vocab, const infer_sample_row_t *rows,
    const int32_t *sorted_ids, int32_t *out)
{
    __shared__ double     s_max[SAMPLE_THREADS / 32];
    infer_sample_row_t    r = rows[blockIdx.x];
    const float          *lg = logits + (size_t) blockIdx.x * vocab;
    const int32_t        *ids = nullptr;
    double                zmax, z, sum, cum;
    int                   m = r.m, i;

    if (r.mode == INFER_SAMPLE_GREEDY) {
        argmax_row(lg, vocab, out + blockIdx.x);
        return;
    }
    if (r.mode == INFER_SAMPLE_SORTED) {
        ids = sorted_ids + (size_t) blockIdx.x * vocab;
        zmax = (double) lg[ids[0]] * r.inv_t;
    } else {
        zmax = -INFINITY;
        for (i = threadIdx.x; i < m; i += blockDim.x) {
            z = (double) lg[i] * r.inv_t;
            zmax = z > zmax ? z : zmax;
        }
        for (int o = 16; o > 0; o >>= 1) {
            zmax = fmax(zmax, __shfl_xor_sync(INFER_FULL_MASK, zmax, o));
        }
        if (threadIdx.x % 32 == 0) {
            s_max[threadIdx.x / 32] = zmax;
        }
        __syncthreads();
        for (int w = 0; w < SAMPLE_THREADS / 32; w++) {
            zmax = fmax(zmax, s_max[w]);
        }
    }

    /* the total mass (no threshold is ever met) */
    scan_first(lg, ids, m, r.inv_t, zmax, INFINITY, 0, &sum);
    if (r.top_p < 1.0) {
        i = scan_first(lg, ids, m, r.inv_t, zmax, r.top_p * sum, 0, &cum);
        if (i >= 0) {
            m = i + 1;
        }
        sum = cum;
    }
    i = scan_first(lg, ids, m, r.inv_t, zmax, r.u * sum, 1, &cum);
    if (threadIdx.x == 0) {
        i = i >= 0 ? i : m - 1;
        out[blockIdx.x] = ids ? ids[i] : i;
    }
}

extern "C" int
infer_cuda_sample(const float *logits, int n_rows, int vocab,
    const infer_sample_row_t *rows, int any_sorted, void *scratch,
    size_t scratch_bytes, int32_t *out, void *stream)
{
    cudaStream_t     st = (cudaStream_t) stream;
    sample_scratch_t s;
    size_t           total = (size_t) n_rows * vocab;
    int              rc;

    if (n_rows <= 0) {
        return (int) cudaSuccess;
    }
    if (any_sorted) {
        rc = sample_layout(scratch, n_rows, vocab, &s);
        if (rc != (int) cudaSuccess) {
            return rc;
        }
        if (s.total > scratch_bytes) {
            return (int) cudaErrorInvalidValue;
        }
        sample_prepare_kernel<<<(unsigned) ((total + 255) / 256 < 4096
                                            ? (total + 255) / 256 : 4096),
                                256, 0, st>>>(logits, n_rows, vocab,
                                              s.keys_in, s.ids_in,
                                              s.offsets);
        rc = (int) cudaGetLastError();
        if (rc != (int) cudaSuccess) {
            return rc;
        }
        rc = (int) cub::DeviceSegmentedRadixSort::SortPairsDescending(
            s.sort_tmp, s.sort_bytes, s.keys_in, s.keys_out, s.ids_in,
            s.ids_out, (int64_t) total, (int64_t) n_rows, s.offsets,
            s.offsets + 1, 0, (int) sizeof(float) * 8, st);
        if (rc != (int) cudaSuccess) {
            return rc;
        }
    }
    sample_kernel<<<n_rows, SAMPLE_THREADS, 0, st>>>(
        logits, vocab, rows, any_sorted ? s.ids_out : nullptr, out);
    return (int) cudaGetLastError();
}
