/*
 * CPU emulation of the CUDA runtime and cuBLAS subset the backend uses, so
 * the kernels, the backend and their tests run (slowly) on machines
 * without a GPU: device memory is host memory (filled with 0xa5, not
 * zeros), kernels run as one std::thread per CUDA thread, stream capture
 * records launches and graph launches replay them, cublasGemmEx follows
 * the column-major definition in the cuBLAS documentation.  Test aid only:
 * it checks indexing, synchronisation and the host logic, not timing or
 * the real hardware's memory model.  EMU_DEVICES devices (default 2, all
 * the same host memory) let tensor parallelism run; launches from several
 * host threads (one per rank) take turns, since the emulated block state
 * is global.
 */
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <functional>
#include <mutex>
#include <vector>
#include "emu_device.h"
#include "cublas_v2.h"

thread_local emu_idx threadIdx, blockIdx;
emu_idx blockDim, gridDim;
char *emu_dyn_smem;
std::barrier<> *emu_block_bar;
std::vector<std::barrier<> *> emu_warp_bar;
uint64_t emu_slots[32][32];

struct emu_stream { int capturing; std::vector<std::function<void()>> rec; };
struct emu_graph { std::vector<std::function<void()>> ops; };
struct emu_graph_exec { std::vector<std::function<void()>> ops; };
static thread_local cudaError_t last_err;
static std::mutex emu_launch_mu;
std::atomic<long> emu_launches, emu_replays;

void emu_set_error(cudaError_t e) { last_err = e; }

void emu_record_or_run(cudaStream_t s, std::function<void()> f)
{
    if (s != nullptr && s->capturing) {
        s->rec.push_back(f);
    } else {
        f();
    }
}

/* One thread per CUDA thread of a block, reused for every block of the
 * launch (blocks run one after another, so __shared__ statics are safe). */
static void run_now(dim3 g, dim3 b, size_t smem, std::function<void()> body)
{
    unsigned n = b.x * b.y * b.z, nb = g.x * g.y * g.z;
    if (n % 32 != 0 || n > 1024) {
        fprintf(stderr, "emu: block of %u threads\n", n);
        abort();
    }
    std::lock_guard<std::mutex> turn(emu_launch_mu);
    std::vector<char> dyn(smem + 16, (char) 0xff);   /* garbage: NaN */
    std::barrier<> bar(n), done(n);
    std::vector<std::barrier<> *> wb;
    for (unsigned w = 0; w < n / 32; w++) wb.push_back(new std::barrier<>(32));
    blockDim = {b.x, b.y, b.z};
    gridDim = {g.x, g.y, g.z};
    emu_block_bar = &bar;
    emu_warp_bar = wb;
    emu_dyn_smem = dyn.data();
    emu_launches++;
    std::vector<std::thread> th;
    for (unsigned t = 0; t < n; t++) {
        th.emplace_back([&, t]() {
            threadIdx = {t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
            for (unsigned i = 0; i < nb; i++) {
                blockIdx = {i % g.x, (i / g.x) % g.y, i / (g.x * g.y)};
                body();
                done.arrive_and_wait();
                if (t == 0) std::memset(dyn.data(), 0xff, dyn.size());
                done.arrive_and_wait();
            }
        });
    }
    for (auto &t : th) t.join();
    for (auto *p : wb) delete p;
}

void emu_run(dim3 g, dim3 b, size_t smem, cudaStream_t s,
             std::function<void()> body)
{
    emu_record_or_run(s, [=]() { run_now(g, b, smem, body); });
}

extern "C" {
cudaError_t cudaGetDeviceCount(int *n) {
    const char *e = getenv("EMU_DEVICES");
    *n = e != nullptr ? atoi(e) : 2;
    return *n > 0 ? cudaSuccess : cudaErrorNoDevice; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) {
    static char b[64]; snprintf(b, sizeof b, "emu error %d", (int) e); return b; }
cudaError_t cudaGetLastError(void) { cudaError_t e = last_err; last_err = cudaSuccess; return e; }
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    if (*p) memset(*p, 0xa5, n);       /* not zero: unwritten reads show */
    return *p ? cudaSuccess : cudaErrorMemoryAllocation; }
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMallocHost(void **p, size_t n) { return cudaMalloc(p, n); }
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemset(void *p, int v, size_t n) { memset(p, v, n); return cudaSuccess; }
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
    memcpy(d, s, n); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind,
                            cudaStream_t st) {
    emu_record_or_run(st, [=]() { memcpy(d, s, n); }); return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *f = 1ull << 34; *t = 1ull << 35; return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = new emu_stream(); (*s)->capturing = 0; return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) { delete s; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    return s && s->capturing ? cudaErrorInvalidValue : cudaSuccess; }
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (getenv("EMU_NO_CAPTURE")) return cudaErrorStreamCaptureUnsupported;
    s->capturing = 1; s->rec.clear(); return cudaSuccess; }
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    *g = new emu_graph{s->rec}; s->rec.clear(); s->capturing = 0; return cudaSuccess; }
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    *e = new emu_graph_exec{g->ops}; return cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete e; return cudaSuccess; }
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    emu_replays++; for (auto &f : e->ops) f(); return cudaSuccess; }
cudaError_t emu_func_set_attribute(const void *, cudaFuncAttribute, int v) {
    return v <= 227 * 1024 ? cudaSuccess : cudaErrorInvalidValue; }

struct emu_blas { cudaStream_t s; };
cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new emu_blas{nullptr}; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) { h->s = s; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *, size_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t) { return "emu cublas error"; }

static float ld(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_16F ? (float) ((const _Float16 *) p)[i] : ((const float *) p)[i]; }

/* Column-major, as the cuBLAS documentation defines it.  The operands are
 * converted to float once per call, as op(A) rows and op(B) columns, so
 * the inner loop is a plain dot product (a vocabulary-wide lm_head is
 * otherwise millions of half conversions per token). */
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta,
    cublasOperation_t tb, int m, int n, int k, const void *alpha,
    const void *A, cudaDataType_t at, int lda, const void *B,
    cudaDataType_t bt, int ldb, const void *beta, void *C,
    cudaDataType_t ct, int ldc, cublasComputeType_t, cublasGemmAlgo_t)
{
    float al = *(const float *) alpha, be = *(const float *) beta;
    if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n)
        || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
    emu_record_or_run(h->s, [=]() {
        std::vector<float> a((size_t) m * k), b((size_t) k * n);
        for (int i = 0; i < m; i++)
            for (int l = 0; l < k; l++)
                a[(size_t) i * k + l] = ta == CUBLAS_OP_N
                    ? ld(A, at, i + (size_t) l * lda)
                    : ld(A, at, l + (size_t) i * lda);
        for (int j = 0; j < n; j++)
            for (int l = 0; l < k; l++)
                b[(size_t) j * k + l] = tb == CUBLAS_OP_N
                    ? ld(B, bt, l + (size_t) j * ldb)
                    : ld(B, bt, j + (size_t) l * ldb);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const float *ar = &a[(size_t) i * k], *bc = &b[(size_t) j * k];
                double acc = 0;
                for (int l = 0; l < k; l++) acc += (double) ar[l] * bc[l];
                size_t ci = i + (size_t) j * ldc;
                float old = be != 0 ? ld(C, ct, ci) : 0.0f;
                float v = (float) (al * acc + be * old);
                if (ct == CUDA_R_16F) ((_Float16 *) C)[ci] = (_Float16) v;
                else ((float *) C)[ci] = v;
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}
}
