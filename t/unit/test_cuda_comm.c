/*
 * NCCL communicator: all-reduce sums and all-gather orders exactly (small
 * integers in float are exact) with one thread per rank, over up to 2
 * devices (1 device still runs the calls as a group of one).
 *
 * INFER_COMM_BENCH=1 adds a timing mode: the mean latency of in-place fp16
 * all-reduces of 4 to 64 KB (the backend's decode sizes: tokens x hidden
 * x 2 bytes), 1000 back to back per size after 50 warm-up calls, printed
 * as diagnostics (a measurement, not a pass/fail check).
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include "tap.h"

#ifndef INFER_HAVE_CUDA

int
main(void)
{
    skip_all("built without CUDA (CUDA=0, or no nvcc at build time)");
    return 0;
}

#else

#include <cuda_runtime.h>
#include "cuda/comm_nccl.h"

#define COUNT 1003
#define GATHER 7
#define BENCH_SIZES 5
#define BENCH_ITERS 1000
#define BENCH_WARM 50

static const size_t bench_bytes[BENCH_SIZES] = {
    4096, 8192, 16384, 32768, 65536
};

typedef struct {
    infer_comm_t *comm;
    int           rank, device, rc, bench;
    float         sum[COUNT], gathered[2 * GATHER];
    double        us[BENCH_SIZES];
} rank_arg_t;

/* Mean microseconds per all-reduce, host enqueue to stream completion. */
static int
bench(rank_arg_t *a, cudaStream_t s)
{
    struct timespec t0, t1;
    void           *buf = NULL;
    size_t          n;
    int             i, k;

    if (cudaMalloc(&buf, bench_bytes[BENCH_SIZES - 1]) != cudaSuccess
        || cudaMemset(buf, 0, bench_bytes[BENCH_SIZES - 1]) != cudaSuccess)
    {
        return -1;
    }
    for (k = 0; k < BENCH_SIZES; k++) {
        n = bench_bytes[k] / 2;
        for (i = 0; i < BENCH_WARM + BENCH_ITERS; i++) {
            if (i == BENCH_WARM) {
                if (cudaStreamSynchronize(s) != cudaSuccess) {
                    return -1;
                }
                clock_gettime(CLOCK_MONOTONIC, &t0);
            }
            if (a->comm->ops->all_reduce_sum(a->comm, a->rank, buf, n,
                                             INFER_DT_F16, s) != 0)
            {
                return -1;
            }
        }
        if (cudaStreamSynchronize(s) != cudaSuccess) {
            return -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        a->us[k] = ((t1.tv_sec - t0.tv_sec) * 1e6
                    + (t1.tv_nsec - t0.tv_nsec) / 1e3) / BENCH_ITERS;
    }
    cudaFree(buf);
    return 0;
}

static void *
rank_main(void *p)
{
    rank_arg_t  *a = p;
    float        host[COUNT], send[GATHER];
    float       *d_buf = NULL, *d_send = NULL, *d_recv = NULL;
    cudaStream_t s = NULL;
    int          i, ranks = a->comm->ranks;

    for (i = 0; i < COUNT; i++) {
        host[i] = (float) ((a->rank + 1) * (i % 17)) + 0.5f;
    }
    for (i = 0; i < GATHER; i++) {
        send[i] = a->rank * 100.0f + i;
    }
    a->rc = -1;
    if (cudaSetDevice(a->device) != cudaSuccess
        || cudaStreamCreate(&s) != cudaSuccess
        || cudaMalloc((void **) &d_buf, sizeof(host)) != cudaSuccess
        || cudaMalloc((void **) &d_send, sizeof(send)) != cudaSuccess
        || cudaMalloc((void **) &d_recv, sizeof(float) * ranks * GATHER)
           != cudaSuccess
        || cudaMemcpy(d_buf, host, sizeof(host), cudaMemcpyHostToDevice)
           != cudaSuccess
        || cudaMemcpy(d_send, send, sizeof(send), cudaMemcpyHostToDevice)
           != cudaSuccess)
    {
        return NULL;
    }
    if (a->comm->ops->all_reduce_sum(a->comm, a->rank, d_buf, COUNT,
                                     INFER_DT_F32, s) == 0
        && a->comm->ops->all_gather(a->comm, a->rank, d_send, d_recv,
                                    GATHER, INFER_DT_F32, s) == 0
        && cudaStreamSynchronize(s) == cudaSuccess
        && cudaMemcpy(a->sum, d_buf, sizeof(a->sum), cudaMemcpyDeviceToHost)
           == cudaSuccess
        && cudaMemcpy(a->gathered, d_recv, sizeof(float) * ranks * GATHER,
                      cudaMemcpyDeviceToHost) == cudaSuccess)
    {
        a->rc = a->bench ? bench(a, s) : 0;
    }
    cudaFree(d_buf);
    cudaFree(d_send);
    cudaFree(d_recv);
    cudaStreamDestroy(s);
    return NULL;
}

int
main(void)
{
    char          reason[160], err[256];
    int           count = 0, ranks, devices[2] = { 0, 1 }, r, i, good = 1;
    infer_comm_t *c = NULL;
    rank_arg_t    a[2];
    pthread_t     th[2];
    float         total;
    const char   *env = getenv("INFER_COMM_BENCH");
    cudaError_t   rc = cudaGetDeviceCount(&count);

    if (rc != cudaSuccess || count == 0) {
        snprintf(reason, sizeof(reason), "no CUDA device: %s",
                 rc != cudaSuccess ? cudaGetErrorString(rc)
                                   : "cudaGetDeviceCount found none");
        skip_all(reason);
    }
    ranks = count >= 2 ? 2 : 1;
    ok(infer_comm_nccl_create(ranks, devices, &c, err, sizeof(err)) == 0,
       "ncclCommInitAll over %d device(s)", ranks);
    if (c == NULL) {
        diag("%s", err);
        return done_testing();
    }
    for (r = 0; r < ranks; r++) {
        memset(&a[r], 0, sizeof(a[r]));
        a[r].comm = c;
        a[r].rank = r;
        a[r].device = devices[r];
        a[r].bench = env != NULL && strcmp(env, "1") == 0;
        pthread_create(&th[r], NULL, rank_main, &a[r]);
    }
    for (r = 0; r < ranks; r++) {
        pthread_join(th[r], NULL);
    }
    for (r = 0; r < ranks; r++) {
        good &= a[r].rc == 0;
        for (i = 0; i < COUNT; i++) {
            /* sum over ranks q of (q + 1) * (i % 17) + 0.5 */
            total = (float) (ranks * (ranks + 1) / 2 * (i % 17))
                    + 0.5f * ranks;
            good &= a[r].sum[i] == total;
        }
        for (i = 0; i < ranks * GATHER; i++) {
            good &= a[r].gathered[i] == (i / GATHER) * 100.0f + i % GATHER;
        }
    }
    ok(good, "all-reduce sum and all-gather exact on every rank");
    for (i = 0; a[0].bench && i < BENCH_SIZES; i++) {
        diag("all-reduce fp16 %zu bytes over %d rank(s): %.2f us",
             bench_bytes[i], ranks, a[0].us[i]);
    }
    c->ops->destroy(c);
    return done_testing();
}

#endif
