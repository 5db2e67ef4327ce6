/*
 * Tensor parallelism on the CUDA backend over NCCL: stories260K against the
 * fp32 CPU backend and the known greedy text, first with one rank whose
 * two all-reduces per layer still go through NCCL (INFER_CUDA_NCCL=1),
 * then with tp=2 on two devices when there are two.  Tolerances are those
 * of test_cuda_model.c: fp16 weights and activations stay within 3e-2 of
 * the CPU's largest logit over 5 layers; tp=2 adds one fp16 rounding of
 * each all-reduced partial, far below that.  Greedy tokens must match
 * exactly and decode to a prefix of expected_greedy_200.txt.  Device
 * decode (logits kept, device sampling, CUDA graphs that capture the
 * NCCL calls) must reproduce the same tokens.  dtype=int8: check_int8.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
#include "backend.h"
#include "sampling.h"
#include "tokenizer.h"

#define V        512
#define MB       16             /* blocks per sequence: 256 positions */
#define STEPS    64
#define PROMPT   16
#define STEPS8   32             /* dtype=int8 decode steps */
#define INT8_TOL    5e-3       /* as test_cuda_model.c */
#define INT8_TP_TOL 5e-3       /* measured 1.4e-3 under kernels/emu */

static const int32_t prompt[PROMPT] = {
    1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
    317, 426
};

static infer_backend_t *
make_dtype(const char *name, const infer_model_t *m, int tp,
    const int *devices, const char *dtype, char *err, size_t errlen)
{
    infer_backend_params_t p;
    infer_backend_t       *b;

    memset(&p, 0, sizeof(p));
    p.dtype = dtype;
    p.threads = 1;
    p.tp = tp;
    p.devices = devices;
    p.n_devices = devices != NULL ? tp : 0;
    p.kv_cache_bytes = 4 << 20;
    p.block_size = 16;
    p.max_batch_tokens = 64;
    p.max_seqs = 8;
    if (infer_backend_create(name, m, &p, &b, err, errlen) != 0) {
        return NULL;
    }
    return b;
}

static infer_backend_t *
make(const char *name, const infer_model_t *m, int tp, const int *devices,
    char *err, size_t errlen)
{
    return make_dtype(name, m, tp, devices, NULL, err, errlen);
}

typedef struct {
    int      n, n_logits;
    int32_t  tokens[PROMPT], pos[PROMPT], seq[PROMPT], ctx[1];
    int32_t  logit[PROMPT];
    int32_t  table[MB];
} step_t;

/* tokens at positions first..first+n-1 of one sequence; logits for the
 * last row, or for every row when all */
static int
step_run(infer_backend_t *b, const int32_t *tokens, int first, int n,
    int all, float *logits)
{
    infer_batch_t bt;
    step_t        st;
    char          err[512];
    int           i;

    memset(&st, 0, sizeof(st));
    for (i = 0; i < MB; i++) {
        st.table[i] = (i * 5 + 3) % MB;     /* scrambled physical blocks */
    }
    for (i = 0; i < n; i++) {
        st.tokens[i] = tokens[i];
        st.pos[i] = first + i;
        if (all || i == n - 1) {
            st.logit[st.n_logits++] = i;
        }
    }
    st.ctx[0] = first + n;
    memset(&bt, 0, sizeof(bt));
    bt.n_tokens = n;
    bt.tokens = st.tokens;
    bt.positions = st.pos;
    bt.seq_of_token = st.seq;
    bt.n_seqs = 1;
    bt.ctx_len = st.ctx;
    bt.block_table = st.table;
    bt.max_blocks = MB;
    bt.n_logits = st.n_logits;
    bt.logit_tokens = st.logit;
    if (b->ops->forward(b, &bt, logits, err, sizeof(err)) != 0) {
        diag("forward: %s", err);
        return -1;
    }
    return 0;
}

/* max |a - b| over n, relative to max |b| */
static double
rel_diff(const float *a, const float *b, int n)
{
    double d = 0.0, mx = 0.0;
    int    i;

    for (i = 0; i < n; i++) {
        if (!(fabs(a[i] - b[i]) <= d)) {
            d = fabs(a[i] - b[i]);
        }
        mx = fmax(mx, fabs(b[i]));
    }
    return d / fmax(mx, 1e-30);
}

static void
check_text(const char *dir, const int32_t *tokens, const char *what)
{
    char               path[1100], text[4096], *expected, err[256];
    infer_tokenizer_t *tok;
    infer_detok_t      dt;
    int                i, len = 0;

    if (infer_tokenizer_load(dir, &tok, err, sizeof(err)) != 0) {
        ok(0, "tokenizer: %s", err);
        return;
    }
    infer_detok_init(&dt, tok, 1);
    for (i = 1; i <= STEPS; i++) {
        len += infer_detok_push(&dt, tokens[i], text + len,
                                sizeof(text) - len);
    }
    len += infer_detok_flush(&dt, text + len, sizeof(text) - len);
    text[len] = '\0';
    infer_tokenizer_free(tok);
    snprintf(path, sizeof(path), "%s/expected_greedy_200.txt", dir);
    expected = tap_read_file(path, NULL);
    ok(expected != NULL && len > 100 && strncmp(expected, text, len) == 0,
       "%s: greedy %d tokens are a prefix of expected_greedy_200.txt",
       what, STEPS);
    if (expected == NULL || strncmp(expected, text, len) != 0) {
        diag("got: %s", text);
    }
    free(expected);
}

/*
 * The stories260K check on one configuration: greedy decode against the
 * CPU, the prompt's prefill rows against the CPU, then device decode
 * (logits kept, device argmax) reproducing the tokens.
 */
static void
check_model(const infer_model_t *m, infer_backend_t *cpu, const char *dir,
    int tp, const int *devices, const char *what)
{
    static float     pc[PROMPT * V], pg[PROMPT * V];
    float            lc[V], lg[V];
    int32_t          tokens[STEPS + 1], tok, cur = 1;
    infer_sampling_t greedy;
    infer_backend_t *gpu;
    double           worst = 0.0, d;
    char             err[512];
    int              i, agree = 0, same = 1;

    gpu = make("cuda", m, tp, devices, err, sizeof(err));
    ok(gpu != NULL, "%s: cuda backend created%s%s", what,
       gpu == NULL ? ": " : "", gpu == NULL ? err : "");
    if (gpu == NULL) {
        return;
    }
    tokens[0] = 1;
    for (i = 0; i < STEPS; i++) {
        if (step_run(cpu, &tokens[i], i, 1, 0, lc) != 0
            || step_run(gpu, &tokens[i], i, 1, 0, lg) != 0)
        {
            ok(0, "%s: greedy step %d ran", what, i);
            infer_backend_destroy(gpu);
            return;
        }
        d = rel_diff(lg, lc, V);
        worst = d > worst ? d : worst;
        tokens[i + 1] = infer_argmax(lg, V);
        agree += tokens[i + 1] == infer_argmax(lc, V);
    }
    ok(worst <= 3e-2, "%s: decode logits within 3e-2 of the CPU's largest "
       "(worst step %.2e)", what, worst);
    is_int(agree, STEPS, "%s: GPU argmax = CPU argmax for %d steps", what,
           STEPS);
    check_text(dir, tokens, what);

    /* 16 rows > max_seqs 8: prefill tiles and the chunked lm_head */
    if (step_run(cpu, prompt, 0, PROMPT, 1, pc) != 0
        || step_run(gpu, prompt, 0, PROMPT, 1, pg) != 0)
    {
        ok(0, "%s: prefill ran", what);
    } else {
        ok(rel_diff(pg, pc, PROMPT * V) <= 3e-2, "%s: prefill, all 16 rows "
           "within 3e-2 of the CPU (%.2e)", what,
           rel_diff(pg, pc, PROMPT * V));
    }

    /* overwrites the same positions' K/V with the greedy sequence again */
    memset(&greedy, 0, sizeof(greedy));
    for (i = 0; i < STEPS && same; i++) {
        if (step_run(gpu, &cur, i, 1, 0, NULL) != 0
            || gpu->ops->sample(gpu, &greedy, 1, &tok, err, sizeof(err))
               != 0)
        {
            diag("%s", err);
            same = 0;
            break;
        }
        same &= tok == tokens[i + 1];
        cur = tok;
    }
    ok(same, "%s: device decode and sampling reproduce the %d tokens",
       what, STEPS);
    infer_backend_destroy(gpu);
}

/*
 * dtype=int8 sharded: o_proj's and down_proj's rows are split between the
 * ranks but each rank's scales are the whole row's, so every rank's int8
 * values are those of tp=1.  Decode (the W8A16 kernel) against the CPU's
 * dtype=int8 within INT8_TOL of its largest logit, as test_cuda_model.c
 * holds tp=1 (fp16 activations; the weights are the same), with the same
 * argmax (measured 1.5e-3 at tp=1, 1.9e-3 at tp=2 under kernels/emu);
 * at tp > 1 against the tp=1 run's logits (tp1, which a tp=1 run fills)
 * within INT8_TP_TOL: the fp16 rounding of each all-reduced partial and
 * sums in another order.
 */
static void
check_int8(const infer_model_t *m, infer_backend_t *cpu8, int tp,
    const int *devices, float *tp1, const char *what)
{
    float            lc[V], lg[V];
    int32_t          tokens[STEPS8 + 1];
    infer_backend_t *gpu;
    double           worst = 0.0, worst_tp = 0.0, d;
    char             err[512];
    int              i, agree = 0;

    gpu = make_dtype("cuda", m, tp, devices, "int8", err, sizeof(err));
    ok(gpu != NULL, "%s int8: cuda backend created%s%s", what,
       gpu == NULL ? ": " : "", gpu == NULL ? err : "");
    if (gpu == NULL) {
        return;
    }
    tokens[0] = 1;
    for (i = 0; i < STEPS8; i++) {
        if (step_run(cpu8, &tokens[i], i, 1, 0, lc) != 0
            || step_run(gpu, &tokens[i], i, 1, 0, lg) != 0)
        {
            ok(0, "%s int8: greedy step %d ran", what, i);
            infer_backend_destroy(gpu);
            return;
        }
        d = rel_diff(lg, lc, V);
        worst = d > worst ? d : worst;
        if (tp > 1) {
            d = rel_diff(lg, tp1 + (size_t) i * V, V);
            worst_tp = d > worst_tp ? d : worst_tp;
        } else {
            memcpy(tp1 + (size_t) i * V, lg, sizeof(lg));
        }
        tokens[i + 1] = infer_argmax(lg, V);
        agree += tokens[i + 1] == infer_argmax(lc, V);
    }
    ok(worst <= INT8_TOL, "%s int8: decode logits within %.0e of the CPU "
       "int8's largest (worst step %.2e)", what, INT8_TOL, worst);
    is_int(agree, STEPS8, "%s int8: GPU argmax = CPU int8 argmax for %d "
           "steps", what, STEPS8);
    if (tp > 1) {
        ok(worst_tp <= INT8_TP_TOL, "%s int8 = tp=1 int8 within %.0e "
           "(worst step %.2e)", what, INT8_TP_TOL, worst_tp);
    }
    infer_backend_destroy(gpu);
}

static void
check_refusals(const infer_model_t *m, int count)
{
    static const int twice[2] = { 0, 0 };
    infer_backend_t *b;
    char             err[512] = "";

    b = make("cuda", m, 3, NULL, err, sizeof(err));
    ok(b == NULL && strstr(err, "num_attention_heads (8)") != NULL
       && strstr(err, "num_key_value_heads (4)") != NULL,
       "tp=3 refused naming both head counts: %s", err);
    if (b != NULL) {
        infer_backend_destroy(b);
    }
    if (count < 2) {
        ok(1, "# SKIP one device: none to give to two ranks");
        return;
    }
    b = make("cuda", m, 2, twice, err, sizeof(err));
    ok(b == NULL && strstr(err, "device 0 given to ranks 0 and 1") != NULL,
       "one device for two ranks refused: %s", err);
    if (b != NULL) {
        infer_backend_destroy(b);
    }
}

int
main(void)
{
    static const int two[2] = { 0, 1 };
    char             dir[1024], err[512], reason[160];
    infer_model_t   *m;
    infer_backend_t *cpu, *cpu8;
    static float     tp1[STEPS8 * V];
    int              count = 0;
    cudaError_t      rc = cudaGetDeviceCount(&count);

    if (rc != cudaSuccess || count == 0) {
        snprintf(reason, sizeof(reason), "no CUDA device: %s",
                 rc != cudaSuccess ? cudaGetErrorString(rc)
                                   : "cudaGetDeviceCount found none");
        skip_all(reason);
    }
    snprintf(dir, sizeof(dir), "%s/models/stories260K", shared_dir());
    if (infer_model_open(dir, &m, err, sizeof(err)) != 0) {
        diag("%s", err);
        skip_all("stories260K not available");
    }
    cpu = make("cpu", m, 1, NULL, err, sizeof(err));
    ok(cpu != NULL, "cpu backend created%s%s", cpu == NULL ? ": " : "",
       cpu == NULL ? err : "");
    if (cpu == NULL) {
        infer_model_close(m);
        return done_testing();
    }

    setenv("INFER_CUDA_NCCL", "1", 1);
    check_model(m, cpu, dir, 1, NULL, "tp=1 over NCCL");
    unsetenv("INFER_CUDA_NCCL");
    if (count >= 2) {
        check_model(m, cpu, dir, 2, two, "tp=2");
    } else {
        ok(1, "# SKIP tp=2 needs 2 CUDA devices, %d found", count);
    }
    cpu8 = make_dtype("cpu", m, 1, NULL, "int8", err, sizeof(err));
    ok(cpu8 != NULL, "cpu int8 backend created%s%s",
       cpu8 == NULL ? ": " : "", cpu8 == NULL ? err : "");
    if (cpu8 != NULL) {
        setenv("INFER_CUDA_NCCL", "1", 1);
        check_int8(m, cpu8, 1, NULL, tp1, "tp=1 over NCCL");
        unsetenv("INFER_CUDA_NCCL");
        if (count >= 2) {
            check_int8(m, cpu8, 2, two, tp1, "tp=2");
        } else {
            ok(1, "# SKIP int8 tp=2 needs 2 CUDA devices, %d found", count);
        }
        infer_backend_destroy(cpu8);
    }
    check_refusals(m, count);

    infer_backend_destroy(cpu);
    infer_model_close(m);
    return done_testing();
}

#endif
