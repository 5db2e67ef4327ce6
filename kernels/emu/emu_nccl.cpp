/*
 * CPU emulation of NCCL for N ranks as threads of one process (the way
 * comm_nccl.c uses it): a collective is a function on the rank's stream,
 * run at once or recorded into a graph, that meets the other ranks at a
 * barrier, reads their buffers and writes its own.  fp16 sums are taken
 * in float and rounded once, as NCCL's ring does for two ranks.
 */
#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>
#include "cuda_runtime.h"
#include "nccl.h"

void emu_record_or_run(cudaStream_t s, std::function<void()> f);

struct emu_nccl_group {
    int                       n;
    std::barrier<>            bar;
    std::vector<const void *> send;
    std::atomic<int>          refs;
    emu_nccl_group(int k) : n(k), bar(k), send(k), refs(k) {}
};

struct emu_nccl_comm {
    emu_nccl_group *g;
    int             rank;
};

static size_t
elem_size(ncclDataType_t t)
{
    return t == ncclFloat32 ? 4 : 2;
}

static float
load(const void *p, ncclDataType_t t, size_t i)
{
    if (t == ncclFloat32) {
        return ((const float *) p)[i];
    }
    if (t == ncclFloat16) {
        return (float) ((const _Float16 *) p)[i];
    }
    uint32_t u = (uint32_t) ((const uint16_t *) p)[i] << 16;
    float    f;
    std::memcpy(&f, &u, 4);
    return f;
}

static void
store(void *p, ncclDataType_t t, size_t i, float v)
{
    if (t == ncclFloat32) {
        ((float *) p)[i] = v;
    } else if (t == ncclFloat16) {
        ((_Float16 *) p)[i] = (_Float16) v;
    } else {
        uint32_t u;
        std::memcpy(&u, &v, 4);
        u += 0x7fff + ((u >> 16) & 1);      /* round to nearest even */
        ((uint16_t *) p)[i] = (uint16_t) (u >> 16);
    }
}

extern "C" {

ncclResult_t ncclCommInitAll(ncclComm_t *comms, int n, const int *devs)
{
    int count = 0;

    cudaGetDeviceCount(&count);
    for (int r = 0; r < n; r++) {
        if (devs[r] < 0 || devs[r] >= count) {
            return ncclInvalidArgument;
        }
        for (int q = 0; q < r; q++) {
            if (devs[q] == devs[r]) {
                return ncclInvalidArgument;   /* NCCL: duplicate GPU */
            }
        }
    }
    emu_nccl_group *g = new emu_nccl_group(n);
    for (int r = 0; r < n; r++) {
        comms[r] = new emu_nccl_comm{g, r};
    }
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t c)
{
    if (--c->g->refs == 0) {
        delete c->g;
    }
    delete c;
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r)
{
    return r == ncclSuccess ? "no error" : "emu nccl: invalid argument";
}

/* Publish, meet, read the others, meet again before writing in place. */
ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count,
    ncclDataType_t t, ncclRedOp_t, ncclComm_t c, cudaStream_t s)
{
    emu_record_or_run(s, [=]() {
        emu_nccl_group    *g = c->g;
        std::vector<float> sum(count, 0.0f);

        g->send[c->rank] = send;
        g->bar.arrive_and_wait();
        for (int r = 0; r < g->n; r++) {
            for (size_t i = 0; i < count; i++) {
                sum[i] += load(g->send[r], t, i);
            }
        }
        g->bar.arrive_and_wait();
        for (size_t i = 0; i < count; i++) {
            store(recv, t, i, sum[i]);
        }
    });
    return ncclSuccess;
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t count,
    ncclDataType_t t, ncclComm_t c, cudaStream_t s)
{
    emu_record_or_run(s, [=]() {
        emu_nccl_group    *g = c->g;
        size_t             bytes = count * elem_size(t);
        std::vector<char>  all(bytes * g->n);

        g->send[c->rank] = send;
        g->bar.arrive_and_wait();
        for (int r = 0; r < g->n; r++) {
            std::memcpy(all.data() + r * bytes, g->send[r], bytes);
        }
        g->bar.arrive_and_wait();
        std::memcpy(recv, all.data(), all.size());
    });
    return ncclSuccess;
}

}
