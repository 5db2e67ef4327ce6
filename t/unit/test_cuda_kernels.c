/*
 * Each CUDA kernel against its CPU reference (kernels/<op>_ref.c, itself
 * checked against float64 in test_kernels_ref.c) on random data with odd
 * sizes.  Outputs are poisoned with NaN (0xff bytes) first, so an element
 * a kernel fails to write fails the comparison.  Inputs are rounded to fp16
 * before the reference sees them, so the only differences are the
 * kernels' fp32 arithmetic and the final rounding to fp16 (2^-11 relative,
 * about 4.9e-4): tolerances are 1e-3 relative plus a small absolute floor,
 * stated per test.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
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
#include "act.h"
#include "attention.h"
#include "embed.h"
#include "gemm_w8.h"
#include "int8.h"
#include "kvcache.h"
#include "model.h"
#include "norm.h"
#include "rope.h"
#include "rope_freq.h"
#include "sample.h"
#include "sampling.h"
#include "softcap.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static float
frand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float) ((rng_state >> 40) / (double) (1 << 24) * 2.0 - 1.0);
}

static int
irand(int n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int) ((rng_state >> 33) % (uint64_t) n);
}

/* Random fp16 data and its exact float values. */
static void
fill_half(uint16_t *h, float *f, size_t n, float scale)
{
    size_t i;

    for (i = 0; i < n; i++) {
        h[i] = infer_float_to_half(frand() * scale);
        f[i] = infer_half_to_float(h[i]);
    }
}

static void *
dev_copy(const void *src, size_t bytes)
{
    void *d = NULL;

    if (cudaMalloc(&d, bytes) != cudaSuccess
        || cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
    {
        printf("Bail out! cudaMalloc/cudaMemcpy of %zu bytes failed\n",
               bytes);
        exit(1);
    }
    return d;
}

/* NaN in fp16 and fp32 alike, -1 in int32 */
static void *
dev_poison(size_t bytes)
{
    void *d = NULL;

    if (cudaMalloc(&d, bytes) != cudaSuccess
        || cudaMemset(d, 0xff, bytes) != cudaSuccess)
    {
        printf("Bail out! cudaMalloc of %zu bytes failed\n", bytes);
        exit(1);
    }
    return d;
}

static void
dev_get(void *dst, const void *src, size_t bytes)
{
    if (cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
        printf("Bail out! cudaMemcpy back failed: %s\n",
               cudaGetErrorString(cudaGetLastError()));
        exit(1);
    }
}

static int
launched(const char *what, int rc)
{
    cudaError_t s = cudaDeviceSynchronize();

    if (rc != 0 || s != cudaSuccess) {
        diag("%s: %s", what, cudaGetErrorString(rc != 0 ? (cudaError_t) rc
                                                         : s));
        return 0;
    }
    return 1;
}

/* |got - want| <= rtol |want| + atol everywhere (NaN fails). */
static int
close_f(const char *what, const float *got, const float *want, size_t n,
    double rtol, double atol)
{
    double worst = 0.0, e, lim;
    size_t i, at = 0;
    int    good = 1;

    for (i = 0; i < n; i++) {
        e = fabs((double) got[i] - want[i]);
        lim = rtol * fabs(want[i]) + atol;
        if (!(e <= lim)) {
            if (good) {
                at = i;
            }
            good = 0;
        }
        if (e > worst || e != e) {
            worst = e;
        }
    }
    ok(good, "%s (%zu values, max |err| %.3g)", what, n, worst);
    if (!good) {
        diag("first bad index %zu: got %.8g want %.8g", at, got[at],
             want[at]);
    }
    return good;
}

static int
close_h(const char *what, const uint16_t *got, const float *want, size_t n,
    double rtol, double atol)
{
    float *g = malloc(n * sizeof(float));
    size_t i;
    int    r;

    for (i = 0; i < n; i++) {
        g[i] = infer_half_to_float(got[i]);
    }
    r = close_f(what, g, want, n, rtol, atol);
    free(g);
    return r;
}

static void
test_embed(int with_pos)
{
    enum { V = 37, H = 131, N = 9, P = 20 };
    uint16_t table[V * H], pos[P * H];
    float    tf[V * H], pf[P * H], want[N * H], got[N * H];
    float    scale = with_pos ? 1.0f : 11.3137083f;
    int32_t  tokens[N], positions[N];
    void    *d_table, *d_pos, *d_tok, *d_p, *d_x;
    int      i;

    fill_half(table, tf, V * H, 2.0f);
    fill_half(pos, pf, P * H, 1.0f);
    for (i = 0; i < N; i++) {
        tokens[i] = irand(V);
        positions[i] = irand(P);
    }
    tokens[N - 1] = V - 1;
    positions[N - 1] = P - 1;
    infer_ref_embed(tf, with_pos ? pf : NULL, tokens, positions, N, H,
                    scale, want);
    d_table = dev_copy(table, sizeof(table));
    d_pos = dev_copy(pos, sizeof(pos));
    d_tok = dev_copy(tokens, sizeof(tokens));
    d_p = dev_copy(positions, sizeof(positions));
    d_x = dev_poison(sizeof(got));
    if (launched("embed", infer_cuda_embed(d_table, with_pos ? d_pos : NULL,
                                           d_tok, d_p, N, H, scale, d_x, 0)))
    {
        dev_get(got, d_x, sizeof(got));
        /* fp16 -> fp32 is exact, then one float multiply or add, as the
         * reference does it */
        close_f(with_pos ? "embed: token + learned position rows, exact"
                         : "embed: gather times sqrt(128), exact",
                got, want, N * H, 0.0, 0.0);
    }
    cudaFree(d_table);
    cudaFree(d_pos);
    cudaFree(d_tok);
    cudaFree(d_p);
    cudaFree(d_x);
}

/*
 * kind 0: RMSNorm, x += delta; kind 1: LayerNorm, x += delta + bias;
 * kind 2: RMSNorm, x += rmsnorm(delta + bias) * post (Gemma-2).
 */
static void
test_norm_size(int n, int hidden, int use_rows, int kind)
{
    static const char *kinds[] = { "rmsnorm", "layernorm + bias",
                                   "post-norm" };
    size_t    nh = (size_t) n * hidden;
    float    *x = malloc(nh * 4), *xr = malloc(nh * 4), *df = malloc(nh * 4);
    float    *wf = malloc(hidden * 4), *want = malloc(nh * 4);
    float    *bf = malloc(hidden * 4), *pf = malloc(hidden * 4);
    float    *xg = malloc(nh * 4);
    uint16_t *dh = malloc(nh * 2), *wh = malloc(hidden * 2);
    uint16_t *bh = malloc(hidden * 2), *ph = malloc(hidden * 2);
    uint16_t *got = malloc(nh * 2);
    int32_t   rows[3] = { n - 1, 0, n / 2 };
    int       n_out = use_rows ? 3 : n;
    void     *d_x, *d_d, *d_w, *d_b, *d_p, *d_rows, *d_out;
    char      what[128];
    size_t    i;
    infer_norm_args_t a;

    for (i = 0; i < nh; i++) {
        x[i] = frand() * 4.0f;
    }
    memcpy(xr, x, nh * 4);
    fill_half(dh, df, nh, 1.0f);
    fill_half(wh, wf, hidden, 1.5f);
    fill_half(bh, bf, hidden, 0.5f);
    fill_half(ph, pf, hidden, 2.0f);
    infer_ref_norm_residual(xr, df, kind ? bf : NULL, kind == 2 ? pf : NULL,
                            wf, kind == 1 ? bf : NULL,
                            use_rows ? rows : NULL, n_out, hidden, 1e-5f,
                            want);
    d_x = dev_copy(x, nh * 4);
    d_d = dev_copy(dh, nh * 2);
    d_w = dev_copy(wh, hidden * 2);
    d_b = dev_copy(bh, hidden * 2);
    d_p = dev_copy(ph, hidden * 2);
    d_rows = dev_copy(rows, sizeof(rows));
    d_out = dev_poison(nh * 2);
    a.x = d_x;
    a.delta = d_d;
    a.delta_bias = kind ? d_b : NULL;
    a.delta_norm = kind == 2 ? d_p : NULL;
    a.w = d_w;
    a.b = kind == 1 ? d_b : NULL;
    a.rows = use_rows ? d_rows : NULL;
    a.n = n_out;
    a.hidden = hidden;
    a.eps = 1e-5f;
    a.out = d_out;
    if (launched("norm", infer_cuda_norm_residual(&a, 0))) {
        dev_get(got, d_out, (size_t) n_out * hidden * 2);
        dev_get(xg, d_x, nh * 4);
        snprintf(what, sizeof(what), "%s %d x %d%s: output", kinds[kind], n,
                 hidden, use_rows ? " (3 rows)" : "");
        /* fp32 sums vs double: ~1e-6; fp16 output: 4.9e-4; the LayerNorm
         * bias is added after the rounding-prone product, so an absolute
         * floor of an fp16 ulp of |b| <= 0.5 */
        close_h(what, got, want, (size_t) n_out * hidden, 1e-3,
                kind == 1 ? 5e-4 : 1e-6);
        snprintf(what, sizeof(what), "%s %d x %d%s: residual x += delta",
                 kinds[kind], n, hidden, use_rows ? " (3 rows)" : "");
        /* plain adds are exact in both; the post-norm's product is not */
        close_f(what, xg, xr, nh, kind == 2 ? 1e-6 : 0.0,
                kind == 2 ? 1e-5 : 0.0);
    }
    cudaFree(d_x);
    cudaFree(d_d);
    cudaFree(d_w);
    cudaFree(d_b);
    cudaFree(d_p);
    cudaFree(d_rows);
    cudaFree(d_out);
    free(x);
    free(xr);
    free(df);
    free(wf);
    free(bf);
    free(pf);
    free(want);
    free(xg);
    free(dh);
    free(wh);
    free(bh);
    free(ph);
    free(got);
}

/*
 * variant 0: plain RoPE; 1: + q/k/v bias; 2: q/k norms, a partial rotary
 * dim (48 of 70), a cos/sin factor and per-sequence frequency rows; 3: no
 * rotation (learned positions), bias only.
 */
static void
test_rope(int variant)
{
    enum { N = 5, NH = 5, NKV = 2, HD = 70, W = (NH + 2 * NKV) * HD + 3 };
    static const char *names[] = { "rope", "rope + bias",
                                   "q/k norm + partial rope, rows",
                                   "bias without rope" };
    uint16_t qkv[N * W], bias[W], got[N * W], qn[HD], kn[HD];
    float    qf[N * W], bf[W], inv[2 * HD / 2], qnf[HD], knf[HD];
    int32_t  pos[N] = { 0, 1, 17, 1000, 4999 }, rows[N] = { 1, 0, 1, 1, 0 };
    int      rot = variant == 2 ? 48 : HD;
    void    *d_qkv, *d_bias, *d_pos, *d_inv, *d_rows, *d_qn, *d_kn;
    char     what[96];
    infer_rope_args_t a;
    infer_rope_t      rp = { .type = INFER_ROPE_DEFAULT, .theta = 1e6 };

    fill_half(qkv, qf, N * W, 1.0f);
    fill_half(bias, bf, W, 0.5f);
    fill_half(qn, qnf, HD, 1.5f);
    fill_half(kn, knf, HD, 1.5f);
    rp.dim = rot;
    infer_rope_inv_freq(&rp, 1, inv);
    rp.theta = 5e5;
    infer_rope_inv_freq(&rp, 1, inv + rot / 2);
    infer_ref_rope_qkv(qf, W, variant == 1 || variant == 3 ? bf : NULL,
                       variant == 2 ? qnf : NULL, variant == 2 ? knf : NULL,
                       1e-6f, pos, variant == 3 ? NULL : inv,
                       variant == 2 ? rows : NULL, rot,
                       variant == 2 ? 1.19f : 1.0f, N, NH, NKV, HD);
    d_qkv = dev_copy(qkv, sizeof(qkv));
    d_bias = dev_copy(bias, sizeof(bias));
    d_pos = dev_copy(pos, sizeof(pos));
    d_inv = dev_copy(inv, sizeof(inv));
    d_rows = dev_copy(rows, sizeof(rows));
    d_qn = dev_copy(qn, sizeof(qn));
    d_kn = dev_copy(kn, sizeof(kn));
    memset(&a, 0, sizeof(a));
    a.qkv = d_qkv;
    a.stride = W;
    a.bias = variant == 1 || variant == 3 ? d_bias : NULL;
    a.q_norm = variant == 2 ? d_qn : NULL;
    a.k_norm = variant == 2 ? d_kn : NULL;
    a.eps = 1e-6f;
    a.positions = d_pos;
    a.inv_freq = variant == 3 ? NULL : d_inv;
    a.freq_row = variant == 2 ? d_rows : NULL;
    a.rot = rot;
    a.scale = variant == 2 ? 1.19f : 1.0f;
    a.n = N;
    a.nh = NH;
    a.nkv = NKV;
    a.head_dim = HD;
    if (launched("rope", infer_cuda_rope_qkv(&a, 0))) {
        dev_get(got, d_qkv, sizeof(got));
        snprintf(what, sizeof(what), "%s: q, k rotated, v as expected",
                 names[variant]);
        /* same float angles; sincosf ~2 ulp; fp16 output 4.9e-4 of the
         * pair's size (<= 1.5 here, x 1.19 and norms <= 1.5 x 2 for
         * variant 2) */
        close_h(what, got, qf, N * W, 1e-3, variant == 2 ? 4e-3 : 1e-3);
    }
    cudaFree(d_qkv);
    cudaFree(d_bias);
    cudaFree(d_pos);
    cudaFree(d_inv);
    cudaFree(d_rows);
    cudaFree(d_qn);
    cudaFree(d_kn);
}

/* gated silu (SwiGLU), gated gelu-tanh with biases (GeGLU), plain gelu
 * with a bias (GPT-2) */
static void
test_act(int gated, int act, int with_bias)
{
    enum { N = 3, I = 1001 };
    uint16_t gu[N * 2 * I], b[2 * I], got[N * I];
    float    gf[N * 2 * I], bf[2 * I], want[N * I];
    void    *d_gu, *d_b, *d_out;
    char     what[64];

    fill_half(gu, gf, N * 2 * I, 8.0f);
    fill_half(b, bf, 2 * I, 1.0f);
    infer_ref_act(gf, with_bias ? bf : NULL, N, I, gated, act, want);
    d_gu = dev_copy(gu, sizeof(gu));
    d_b = dev_copy(b, sizeof(b));
    d_out = dev_poison(sizeof(got));
    if (launched("act", infer_cuda_act(d_gu, with_bias ? d_b : NULL, N, I,
                                       gated, act, d_out, 0)))
    {
        dev_get(got, d_out, sizeof(got));
        snprintf(what, sizeof(what), "act %s%s%s", act == INFER_KACT_SILU
                 ? "silu" : act == INFER_KACT_GELU ? "gelu" : "gelu-tanh",
                 gated ? ", gated" : "", with_bias ? ", bias" : "");
        /* fp32 expf / erff / tanhf; fp16 output */
        close_h(what, got, want, N * I, 1e-3, 1e-5);
    }
    cudaFree(d_gu);
    cudaFree(d_b);
    cudaFree(d_out);
}

static void
test_softcap(void)
{
    enum { N = 3001 };
    float  x[N], want[N], got[N];
    void  *d_x;
    int    i;

    for (i = 0; i < N; i++) {
        x[i] = frand() * 80.0f;
    }
    memcpy(want, x, sizeof(x));
    infer_ref_softcap(want, N, 30.0f);
    d_x = dev_copy(x, sizeof(x));
    if (launched("softcap", infer_cuda_softcap(d_x, N, 30.0f, 0))) {
        dev_get(got, d_x, sizeof(got));
        /* fp32 tanhf: a few ulps of values up to 30 */
        close_f("softcap 30 on fp32 logits", got, want, N, 1e-6, 1e-6);
    }
    cudaFree(d_x);
}

/*
 * One attention case: sequences with a context already in the cache and a
 * chunk of new query tokens each (chunk 1 = decode).  The cache is filled
 * on the host (unused slots NaN, so reading one poisons the output); the
 * kv-write kernel is checked on the same layout.
 */
typedef struct {
    const char *name;
    int         nh, nkv, hd, bs, n_seqs;
    int         ctx[4];         /* context length after the step */
    int         chunk[4];       /* new tokens at the end of it */
    int         window;         /* 0: none */
    float       softcap;        /* 0: none */
} attn_case_t;

static void
test_attention(const attn_case_t *c)
{
    int       qkvw = (c->nh + 2 * c->nkv) * c->hd, max_ctx = 0, mb, nb;
    int       n = 0, s, p, t, i, nt, n_dec, split_len, n_split;
    size_t    pool, slot_w = (size_t) c->nkv * c->hd, off;
    int32_t  *bt, *pos, *seq, *tiles, *dec;
    uint16_t *kc, *vc, *q, *got, *kv_got;
    float    *kcf, *vcf, *qf, *want;
    void     *d_q, *d_out, *d_bt, *d_pos, *d_seq, *d_tiles, *d_dec, *d_ml;
    void     *d_o, *d_kc, *d_vc;
    infer_attn_args_t a;
    char      what[128];

    for (s = 0; s < c->n_seqs; s++) {
        max_ctx = c->ctx[s] > max_ctx ? c->ctx[s] : max_ctx;
        n += c->chunk[s];
    }
    mb = (max_ctx + c->bs - 1) / c->bs + 1;
    nb = mb * c->n_seqs + 3;
    pool = (size_t) nb * c->bs * slot_w;
    bt = malloc(sizeof(int32_t) * mb * c->n_seqs);
    pos = malloc(sizeof(int32_t) * n);
    seq = malloc(sizeof(int32_t) * n);
    tiles = malloc(sizeof(int32_t) * 4 * n);
    dec = malloc(sizeof(int32_t) * n);
    kc = malloc(pool * 2);
    vc = malloc(pool * 2);
    kcf = malloc(pool * 4);
    vcf = malloc(pool * 4);
    q = malloc((size_t) n * qkvw * 2);
    qf = malloc((size_t) n * qkvw * 4);
    got = malloc((size_t) n * c->nh * c->hd * 2);
    want = malloc((size_t) n * c->nh * c->hd * 4);
    kv_got = malloc(pool * 2);

    /* physical blocks handed out in a scrambled order */
    for (i = 0; i < mb * c->n_seqs; i++) {
        bt[i] = (int32_t) ((i * 7 + 3) % nb);
    }
    for (i = 0; i < mb * c->n_seqs; i++) {
        int j = irand(mb * c->n_seqs), tmp = bt[i];

        bt[i] = bt[j];
        bt[j] = tmp;
    }
    for (off = 0; off < pool; off++) {
        kc[off] = 0xffff;
        vc[off] = 0xffff;
    }
    t = 0;
    for (s = 0; s < c->n_seqs; s++) {
        for (p = 0; p < c->ctx[s]; p++) {
            off = infer_kv_offset(bt[s * mb + p / c->bs], p % c->bs, c->bs,
                                  c->nkv, c->hd);
            for (i = 0; i < (int) slot_w; i++) {
                kc[off + i] = infer_float_to_half(frand());
                vc[off + i] = infer_float_to_half(frand());
            }
            if (p >= c->ctx[s] - c->chunk[s]) {
                pos[t] = p;
                seq[t] = s;
                t++;
            }
        }
    }
    for (off = 0; off < pool; off++) {
        kcf[off] = infer_half_to_float(kc[off]);
        vcf[off] = infer_half_to_float(vc[off]);
    }
    /* q large enough that the softmax is far from uniform */
    fill_half(q, qf, (size_t) n * qkvw, 4.0f);
    for (t = 0; t < n; t++) {
        /* this token's k, v as the kv-write kernel will find them */
        off = infer_kv_offset(bt[seq[t] * mb + pos[t] / c->bs],
                              pos[t] % c->bs, c->bs, c->nkv, c->hd);
        for (i = 0; i < (int) slot_w; i++) {
            q[(size_t) t * qkvw + c->nh * c->hd + i] = kc[off + i];
            q[(size_t) t * qkvw + c->nh * c->hd + slot_w + i] = vc[off + i];
        }
    }
    infer_ref_attention(qf, qkvw, kcf, vcf, pos, seq, bt, mb, c->bs, n,
                        c->nh, c->nkv, c->hd, (float) (1.0 / sqrt(c->hd)),
                        c->window, c->softcap, want, c->nh * c->hd);

    n_split = infer_attn_splits(mb * c->bs, &split_len);
    nt = infer_attn_plan(n, seq, c->nh / c->nkv, n_split, c->n_seqs, tiles,
                         dec, &n_dec);
    d_q = dev_copy(q, (size_t) n * qkvw * 2);
    d_out = dev_poison((size_t) n * c->nh * c->hd * 2);
    d_bt = dev_copy(bt, sizeof(int32_t) * mb * c->n_seqs);
    d_pos = dev_copy(pos, sizeof(int32_t) * n);
    d_seq = dev_copy(seq, sizeof(int32_t) * n);
    d_tiles = dev_copy(tiles, sizeof(int32_t) * 4 * nt);
    d_dec = dev_copy(dec, sizeof(int32_t) * (n_dec > 0 ? n_dec : 1));
    d_ml = dev_poison((size_t) c->n_seqs * n_split * c->nh * 2 * 4);
    d_o = dev_poison((size_t) c->n_seqs * n_split * c->nh * c->hd * 4);

    /* the kv-write kernel rebuilds the new tokens' slots from q rows */
    for (t = 0; t < n; t++) {
        off = infer_kv_offset(bt[seq[t] * mb + pos[t] / c->bs],
                              pos[t] % c->bs, c->bs, c->nkv, c->hd);
        for (i = 0; i < (int) slot_w; i++) {
            kc[off + i] = 0xffff;
            vc[off + i] = 0xffff;
        }
    }
    d_kc = dev_copy(kc, pool * 2);
    d_vc = dev_copy(vc, pool * 2);
    if (launched("kv_write", infer_cuda_kv_write(d_q, qkvw, d_pos, d_seq,
                                                 d_bt, mb, n, c->nh, c->nkv,
                                                 c->hd, c->bs, d_kc, d_vc,
                                                 0)))
    {
        int same = 1;

        dev_get(kv_got, d_kc, pool * 2);
        for (off = 0; off < pool; off++) {
            same &= kv_got[off] == infer_float_to_half(kcf[off])
                    || (kv_got[off] == 0xffff && isnan(kcf[off]));
        }
        dev_get(kv_got, d_vc, pool * 2);
        for (off = 0; off < pool; off++) {
            same &= kv_got[off] == infer_float_to_half(vcf[off])
                    || (kv_got[off] == 0xffff && isnan(vcf[off]));
        }
        ok(same, "%s: kv_write fills exactly the new tokens' slots",
           c->name);
    }

    memset(&a, 0, sizeof(a));
    a.q = d_q;
    a.q_stride = qkvw;
    a.k_cache = d_kc;
    a.v_cache = d_vc;
    a.out = d_out;
    a.out_stride = c->nh * c->hd;
    a.positions = d_pos;
    a.block_table = d_bt;
    a.max_blocks = mb;
    a.block_size = c->bs;
    a.nh = c->nh;
    a.nkv = c->nkv;
    a.head_dim = c->hd;
    a.scale = (float) (1.0 / sqrt(c->hd));
    a.window = c->window;
    a.softcap = c->softcap;
    a.tiles = d_tiles;
    a.n_tiles = nt;
    a.n_split = n_split;
    a.split_len = split_len;
    a.part_ml = d_ml;
    a.part_o = d_o;
    a.dec_tok = d_dec;
    a.n_dec = n_dec;
    if (launched("attention setup", infer_cuda_attention_setup(c->hd))
        && launched("attention", infer_cuda_attention(&a, 0)))
    {
        dev_get(got, d_out, (size_t) n * c->nh * c->hd * 2);
        snprintf(what, sizeof(what), "%s: attention (%d tokens, %d tiles, "
                 "%d splits of %d, %d split slots)", c->name, n, nt, n_split,
                 split_len, n_dec);
        /* outputs are convex combinations of |v| <= 1: fp32 softmax
         * ~1e-6, fp16 output 4.9e-4 relative */
        close_h(what, got, want, (size_t) n * c->nh * c->hd, 1e-3, 2e-4);
    }

    cudaFree(d_kc);
    cudaFree(d_vc);
    cudaFree(d_q);
    cudaFree(d_out);
    cudaFree(d_bt);
    cudaFree(d_pos);
    cudaFree(d_seq);
    cudaFree(d_tiles);
    cudaFree(d_dec);
    cudaFree(d_ml);
    cudaFree(d_o);
    free(bt);
    free(pos);
    free(seq);
    free(tiles);
    free(dec);
    free(kc);
    free(vc);
    free(kcf);
    free(vcf);
    free(q);
    free(qf);
    free(got);
    free(want);
    free(kv_got);
}

/*
 * Device sampler vs infer_sample() on the same logits: every setting the
 * CPU sampler branches on, quantised logits (many exact ties) and smooth
 * ones, many seeds.  Equality is expected for every draw (see sample.h).
 */
static void
test_sample(int vocab, int quantised)
{
    enum { ROWS = 12, TRIALS = 20 };
    static const infer_sampling_t settings[ROWS] = {
        { 0.0f, 0, 1.0f, 1, 0 },  { 0.7f, 1, 1.0f, 2, 0 },
        { 1.0f, 0, 1.0f, 3, 0 },  { 0.5f, 0, 1.0f, 4, 0 },
        { 1.0f, 5, 1.0f, 5, 0 },  { 1.3f, 50, 1.0f, 6, 0 },
        { 1.0f, 0, 0.9f, 7, 0 },  { 0.8f, 0, 0.5f, 8, 0 },
        { 1.0f, 40, 0.95f, 9, 0 }, { 2.0f, 0, 0.99f, 10, 0 },
        { 1.0f, 0, 0.0001f, 11, 0 }, { 0.9f, 100000, 1.0f, 12, 0 }
    };
    infer_sampling_t   s;
    infer_sample_row_t rows[ROWS];
    float             *lg = malloc((size_t) ROWS * vocab * 4);
    void              *scratch_h = malloc(infer_sample_scratch_bytes(vocab));
    int32_t            got[ROWS], want;
    void              *d_lg, *d_rows, *d_out, *d_scr;
    size_t             scr = infer_cuda_sample_scratch_bytes(ROWS, vocab);
    int                trial, r, i, same = 0, total = 0, any_sorted;

    d_lg = dev_poison((size_t) ROWS * vocab * 4);
    d_rows = dev_poison(sizeof(rows));
    d_out = dev_poison(sizeof(got));
    d_scr = dev_poison(scr > 0 ? scr : 1);
    ok(scr > 0, "sample: scratch for %d x %d is %zu bytes", ROWS, vocab,
       scr);
    for (trial = 0; trial < TRIALS; trial++) {
        for (i = 0; i < ROWS * vocab; i++) {
            lg[i] = frand() * 6.0f;
            if (quantised) {
                lg[i] = roundf(lg[i] * 2.0f) / 2.0f;
            }
        }
        any_sorted = 0;
        for (r = 0; r < ROWS; r++) {
            s = settings[r];
            s.seed = s.seed * 1000 + trial;
            s.step = trial * 3;
            infer_sample_row(&s, vocab, &rows[r]);
            any_sorted |= rows[r].mode == INFER_SAMPLE_SORTED;
        }
        cudaMemcpy(d_lg, lg, (size_t) ROWS * vocab * 4,
                   cudaMemcpyHostToDevice);
        cudaMemcpy(d_rows, rows, sizeof(rows), cudaMemcpyHostToDevice);
        if (!launched("sample", infer_cuda_sample(d_lg, ROWS, vocab, d_rows,
                                                  any_sorted, d_scr, scr,
                                                  d_out, 0)))
        {
            ok(0, "sample: launch");
            break;
        }
        dev_get(got, d_out, sizeof(got));
        for (r = 0; r < ROWS; r++) {
            s = settings[r];
            s.seed = s.seed * 1000 + trial;
            s.step = trial * 3;
            want = infer_sample(lg + (size_t) r * vocab, vocab, &s,
                                scratch_h);
            total++;
            if (got[r] == want) {
                same++;
            } else if (total - same <= 5) {
                diag("trial %d row %d (T %.2f k %d p %.4f): gpu %d cpu %d",
                     trial, r, settings[r].temperature, settings[r].top_k,
                     settings[r].top_p, got[r], want);
            }
        }
    }
    is_int(same, total, "sample: vocab %d%s: device draws = infer_sample "
           "draws", vocab, quantised ? " (tied logits)" : "");
    cudaFree(d_lg);
    cudaFree(d_rows);
    cudaFree(d_out);
    cudaFree(d_scr);
    free(lg);
    free(scratch_h);
}

/*
 * W8A16 against its reference: fp16 x (exact in the reference), int8
 * weights quantized as the CPU backend does; fp32 sums in another order
 * and the fp16 rounding of y (4.9e-4 relative), so 1e-3 relative plus
 * 1e-3 of the row's largest |y| (cancelling sums).  Widths that take the
 * vector path (in % 8 == 0) and the scalar one; n = 1, a partial launch
 * of 8 tokens, and more than one launch.
 */
static void
test_gemm_w8(int n, int in, int out)
{
    uint16_t *x = malloc((size_t) n * in * sizeof(uint16_t));
    uint16_t *got = malloc((size_t) n * out * sizeof(uint16_t));
    float    *xf = malloc((size_t) n * in * sizeof(float));
    float    *wf = malloc((size_t) in * sizeof(float));
    float    *scale = malloc((size_t) out * sizeof(float));
    float    *want = malloc((size_t) n * out * sizeof(float));
    int8_t   *w = malloc((size_t) out * in);
    void     *d_x, *d_w, *d_s, *d_y;
    char      what[96];
    double    ymax = 0;
    int       r, i;

    fill_half(x, xf, (size_t) n * in, 1.0f);
    for (r = 0; r < out; r++) {
        for (i = 0; i < in; i++) {
            wf[i] = frand() * 0.05f * (1 + r % 4);
        }
        infer_i8_quantize_row(wf, in, w + (size_t) r * in, &scale[r]);
    }
    infer_ref_gemm_w8a16(xf, w, scale, n, in, out, want);
    for (i = 0; i < n * out; i++) {
        ymax = fabs(want[i]) > ymax ? fabs(want[i]) : ymax;
    }
    d_x = dev_copy(x, (size_t) n * in * sizeof(uint16_t));
    d_w = dev_copy(w, (size_t) out * in);
    d_s = dev_copy(scale, (size_t) out * sizeof(float));
    d_y = dev_poison((size_t) n * out * sizeof(uint16_t));
    if (launched("gemm_w8a16", infer_cuda_gemm_w8a16(d_x, d_w, d_s, n, in,
                                                     out, d_y, 0)))
    {
        dev_get(got, d_y, (size_t) n * out * sizeof(uint16_t));
        snprintf(what, sizeof(what), "gemm_w8a16 %d x %d x %d = reference",
                 n, in, out);
        close_h(what, got, want, (size_t) n * out, 1e-3, 1e-3 * ymax);
    }
    cudaFree(d_x);
    cudaFree(d_w);
    cudaFree(d_s);
    cudaFree(d_y);
    free(x);
    free(got);
    free(xf);
    free(wf);
    free(scale);
    free(want);
    free(w);
}

/*
 * The prefill path's widening of int8 rows to fp16: exact, since kernel
 * and host both round the same float32 product scale * q to nearest even.
 * A zero row (scale 0) and odd sizes included.
 */
static void
test_dequant_w8(int rows, int in)
{
    size_t    n = (size_t) rows * in, i;
    int8_t   *w = malloc(n);
    float    *wf = malloc(n * sizeof(float));
    float    *scale = malloc((size_t) rows * sizeof(float));
    uint16_t *want = malloc(n * sizeof(uint16_t));
    uint16_t *got = malloc(n * sizeof(uint16_t));
    void     *d_w, *d_s, *d_y;
    int       r, bad = 0;

    for (i = 0; i < n; i++) {
        r = (int) (i / in);
        wf[i] = r == 1 ? 0.0f : frand() * (1 + r % 5);
    }
    for (r = 0; r < rows; r++) {
        infer_i8_quantize_row(wf + (size_t) r * in, in, w + (size_t) r * in,
                              &scale[r]);
    }
    infer_i8_dequantize(w, scale, rows, in, wf);
    for (i = 0; i < n; i++) {
        want[i] = infer_float_to_half(wf[i]);
    }
    d_w = dev_copy(w, n);
    d_s = dev_copy(scale, (size_t) rows * sizeof(float));
    d_y = dev_poison(n * sizeof(uint16_t));
    if (launched("dequant_w8", infer_cuda_dequant_w8(d_w, d_s, rows, in, d_y,
                                                     0)))
    {
        dev_get(got, d_y, n * sizeof(uint16_t));
        for (i = 0; i < n; i++) {
            bad += got[i] != want[i];
        }
        is_int(bad, 0, "dequant_w8 %d x %d: fp16(scale * q) exactly", rows,
               in);
    }
    cudaFree(d_w);
    cudaFree(d_s);
    cudaFree(d_y);
    free(w);
    free(wf);
    free(scale);
    free(want);
    free(got);
}

int
main(void)
{
    static const attn_case_t cases[] = {
        /* decode, long contexts: split over the context + reduce */
        { "decode gqa4 hd128", 8, 2, 128, 16, 4, { 1, 129, 700, 1500 },
          { 1, 1, 1, 1 }, 0, 0.0f },
        /* mixed step: prefill chunk after a cached prefix, decode, fresh
         * prefill; odd block size */
        { "mixed gqa4 hd64", 12, 3, 64, 7, 3, { 57, 100, 13 },
          { 37, 1, 13 }, 0, 0.0f },
        /* stories260K shape: head_dim 8, 2 query heads per kv head */
        { "stories hd8", 8, 4, 8, 16, 2, { 200, 31 }, { 1, 31 }, 0, 0.0f },
        /* no GQA, odd head_dim, full 32-row tiles */
        { "mha hd96", 4, 4, 96, 16, 2, { 300, 70 }, { 1, 70 }, 0, 0.0f },
        /* largest head_dim */
        { "hd256", 2, 1, 256, 32, 2, { 90, 450 }, { 90, 1 }, 0, 0.0f },
        /* sliding windows: split decodes whose first splits fall left of
         * the window, prefill tiles whose rows start at different keys,
         * a window inside one block; Gemma-2's soft-cap */
        { "window 300 decode", 8, 2, 64, 16, 4, { 1, 299, 700, 1500 },
          { 1, 1, 1, 1 }, 300, 0.0f },
        { "window 150 mixed", 4, 2, 32, 16, 3, { 400, 151, 90 },
          { 37, 1, 90 }, 150, 0.0f },
        { "window 5, soft-cap", 4, 2, 32, 7, 2, { 60, 33 }, { 20, 1 }, 5,
          1.5f },
        { "soft-cap 50 hd256", 2, 1, 256, 16, 2, { 90, 450 }, { 90, 1 }, 0,
          50.0f }
    };
    char      reason[160];
    int       count = 0;
    size_t    i;
    cudaError_t rc = cudaGetDeviceCount(&count);

    if (rc != cudaSuccess || count == 0) {
        snprintf(reason, sizeof(reason), "no CUDA device: %s",
                 rc != cudaSuccess ? cudaGetErrorString(rc)
                                   : "cudaGetDeviceCount found none");
        skip_all(reason);
    }
    test_embed(0);
    test_embed(1);
    test_norm_size(7, 67, 0, 0);
    test_norm_size(5, 5003, 0, 0);
    test_norm_size(6, 4096, 1, 0);
    test_norm_size(7, 67, 0, 1);
    test_norm_size(6, 2304, 1, 1);
    test_norm_size(5, 1000, 0, 2);
    test_rope(0);
    test_rope(1);
    test_rope(2);
    test_rope(3);
    test_act(1, INFER_KACT_SILU, 0);
    test_act(1, INFER_KACT_GELU_TANH, 1);
    test_act(0, INFER_KACT_GELU, 1);
    test_act(0, INFER_KACT_GELU_TANH, 1);
    test_softcap();
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        test_attention(&cases[i]);
    }
    test_sample(1000, 1);
    test_sample(32003, 0);
    test_gemm_w8(1, 2048, 37);
    test_gemm_w8(5, 2048, 256);
    test_gemm_w8(19, 5632, 67);
    test_gemm_w8(3, 301, 9);
    test_dequant_w8(7, 301);
    test_dequant_w8(40, 2048);
    return done_testing();
}

#endif
