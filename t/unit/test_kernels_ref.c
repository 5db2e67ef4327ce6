/*
 * The CUDA kernels' CPU references (kernels/<op>_ref.c) against independent
 * float64 recomputations and known answers.  Runs on every machine: the
 * GPU tests (test_cuda_*.c) then compare the kernels with these
 * references.  Tolerances: references round their double results to float
 * once, so 1e-6 relative (a few float ulps) unless stated.
 */
#include <math.h>
#include <stdint.h>
#include "tap.h"
#include "act.h"
#include "attention.h"
#include "embed.h"
#include "gemm_narrow.h"
#include "gemm_w8.h"
#include "int8.h"
#include "kvcache.h"
#include "norm.h"
#include "rope.h"
#include "rope_freq.h"
#include "sample.h"
#include "sampling.h"
#include "softcap.h"

static uint64_t rng_state = 0x1234567;

/* uniform in [-1, 1) */
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

static void
fill(float *x, size_t n, float scale)
{
    size_t i;

    for (i = 0; i < n; i++) {
        x[i] = frand() * scale;
    }
}

/* max |a - b| / (|b| + floor) over n elements */
static double
max_rel(const float *a, const double *b, size_t n, double floor)
{
    double worst = 0.0, e;
    size_t i;

    for (i = 0; i < n; i++) {
        e = fabs(a[i] - b[i]) / (fabs(b[i]) + floor);
        if (!(e <= worst)) {
            worst = e;          /* NaN sticks */
        }
    }
    return worst;
}

static void
test_embed(void)
{
    float   table[7 * 5], pos[4 * 5], x[3 * 5];
    int32_t tokens[3] = { 6, 0, 6 }, positions[3] = { 3, 0, 1 };
    int     ok_rows = 1, ok_pos = 1, t, j;

    fill(table, 35, 1.0f);
    fill(pos, 20, 1.0f);
    infer_ref_embed(table, NULL, tokens, NULL, 3, 5, 1.0f, x);
    for (t = 0; t < 3; t++) {
        for (j = 0; j < 5; j++) {
            ok_rows &= x[t * 5 + j] == table[tokens[t] * 5 + j];
        }
    }
    ok(ok_rows, "embed: rows are the table rows of the tokens");
    infer_ref_embed(table, pos, tokens, positions, 3, 5, 8.0f, x);
    for (t = 0; t < 3; t++) {
        for (j = 0; j < 5; j++) {
            ok_pos &= x[t * 5 + j] == table[tokens[t] * 5 + j] * 8.0f
                                      + pos[positions[t] * 5 + j];
        }
    }
    ok(ok_pos, "embed: scaled rows plus the position table's rows");
}

static void
test_rmsnorm(void)
{
    enum { N = 5, H = 67 };
    float      x[N * H], x0[N * H], delta[N * H], w[H], out[N * H];
    double     want[N * H], ss, r;
    long double acc;
    int32_t    rows[2] = { 4, 1 };
    int        i, j, exact = 1;

    fill(x, N * H, 3.0f);
    fill(delta, N * H, 1.0f);
    fill(w, H, 2.0f);
    memcpy(x0, x, sizeof(x));
    infer_ref_norm_residual(x, delta, NULL, NULL, w, NULL, NULL, N, H, 1e-5f,
                            out);
    for (i = 0; i < N; i++) {
        acc = 0.0L;
        for (j = 0; j < H; j++) {
            exact &= x[i * H + j] == x0[i * H + j] + delta[i * H + j];
            acc += (long double) x[i * H + j] * x[i * H + j];
        }
        r = (double) (1.0L / sqrtl(acc / H + 1e-5L));
        for (j = 0; j < H; j++) {
            want[i * H + j] = x[i * H + j] * r * w[j];
        }
    }
    ok(exact, "rmsnorm: residual x += delta in float");
    ok(max_rel(out, want, N * H, 1e-3) < 1e-6,
       "rmsnorm: matches long double recomputation");

    /* rows: only the listed rows are added to and normalised */
    memcpy(x, x0, sizeof(x));
    infer_ref_norm_residual(x, delta, NULL, NULL, w, NULL, rows, 2, H, 1e-5f,
                            out);
    ok(x[0] == x0[0] && x[4 * H] == x0[4 * H] + delta[4 * H]
       && x[H] == x0[H] + delta[H], "rmsnorm: rows select the updated rows");
    ok(fabs(out[0] - want[4 * H]) < 1e-6 * (fabs(want[4 * H]) + 1e-3)
       && fabs(out[H] - want[H]) < 1e-6 * (fabs(want[H]) + 1e-3),
       "rmsnorm: output row i comes from rows[i]");

    /* known answer: a constant row c normalises to c / sqrt(c^2 + eps) */
    for (j = 0; j < H; j++) {
        x[j] = -0.5f;
        w[j] = 1.0f;
    }
    infer_ref_norm_residual(x, NULL, NULL, NULL, w, NULL, NULL, 1, H, 1e-5f,
                            out);
    ss = 0.25;
    ok(fabs(out[7] - (-0.5 / sqrt(ss + 1e-5))) < 1e-6,
       "rmsnorm: constant row gives c / sqrt(c^2 + eps)");
}

/* LayerNorm with a bias, and the post-sublayer norm of a delta + bias
 * (Gemma-2's post norms, GPT-2's output biases). */
static void
test_layernorm(void)
{
    enum { N = 3, H = 41 };
    float      x[N * H], x0[N * H], delta[N * H], db[H], dn[H], w[H], b[H];
    float      out[N * H];
    double     want[N * H], xs[N * H], mean, var, ss, r, v;
    int        i, j;

    fill(x, N * H, 3.0f);
    fill(delta, N * H, 1.0f);
    fill(db, H, 0.5f);
    fill(dn, H, 2.0f);
    fill(w, H, 2.0f);
    fill(b, H, 1.0f);
    memcpy(x0, x, sizeof(x));
    infer_ref_norm_residual(x, delta, db, dn, w, b, NULL, N, H, 1e-5f, out);
    for (i = 0; i < N; i++) {
        ss = 0.0;
        for (j = 0; j < H; j++) {
            v = (double) delta[i * H + j] + db[j];
            ss += v * v;
        }
        r = 1.0 / sqrt(ss / H + 1e-5);
        mean = var = 0.0;
        for (j = 0; j < H; j++) {
            v = (double) delta[i * H + j] + db[j];
            xs[i * H + j] = (double) x0[i * H + j] + v * r * dn[j];
            mean += xs[i * H + j] / H;
        }
        for (j = 0; j < H; j++) {
            var += (xs[i * H + j] - mean) * (xs[i * H + j] - mean) / H;
        }
        for (j = 0; j < H; j++) {
            want[i * H + j] = (xs[i * H + j] - mean) / sqrt(var + 1e-5)
                              * w[j] + b[j];
        }
    }
    /* x is a float sum of values ~3: absolute float rounding */
    ok(max_rel(x, xs, N * H, 1.0) < 1e-6,
       "norm: x += rmsnorm(delta + bias) * post");
    ok(max_rel(out, want, N * H, 1e-3) < 1e-5,
       "norm: LayerNorm (x - mean) / std * w + b");
}

static void
test_rope(void)
{
    enum { NH = 3, NKV = 2, HD = 10, W = (NH + 2 * NKV) * HD };
    float   inv[HD / 2], row[W], a[W], b[W], bias[W], orig[W];
    double  d1, d2, want;
    int32_t pos0 = 0, pos[2];
    int     j, ok_id = 1;

    infer_rope_inv_freq(&(infer_rope_t) { .type = INFER_ROPE_DEFAULT,
                                          .theta = 10000.0, .dim = HD },
                        1, inv);
    ok(inv[0] == 1.0f && fabs(inv[1] - pow(10000.0, -0.2)) < 1e-7,
       "rope: inv_freq = theta^(-2j/d)");

    fill(row, W, 1.0f);
    memcpy(orig, row, sizeof(row));
    infer_ref_rope_qkv(row, W, NULL, NULL, NULL, 0.0f, &pos0, inv, NULL, HD,
                       1.0f, 1, NH, NKV, HD);
    for (j = 0; j < W; j++) {
        ok_id &= row[j] == orig[j];
    }
    ok(ok_id, "rope: position 0 is the identity");

    /* rotate_half pairing: unit vector at j turns into (cos, sin) at
     * (j, j + d/2) of the same head */
    memset(row, 0, sizeof(row));
    row[HD + 1] = 1.0f;             /* q head 1, j = 1 */
    pos[0] = 7;
    infer_ref_rope_qkv(row, W, NULL, NULL, NULL, 0.0f, pos, inv, NULL, HD,
                       1.0f, 1, NH, NKV, HD);
    want = 7.0 * inv[1];
    ok(fabs(row[HD + 1] - cos(want)) < 1e-6
       && fabs(row[HD + 1 + HD / 2] - sin(want)) < 1e-6
       && row[HD + 2] == 0.0f && row[HD] == 0.0f,
       "rope: element j pairs with j + head_dim/2");

    /* relative position: <R_m q, R_n k> depends on m - n only */
    fill(a, W, 1.0f);
    memcpy(b, a, sizeof(a));
    pos[0] = 3;
    infer_ref_rope_qkv(a, W, NULL, NULL, NULL, 0.0f, pos, inv, NULL, HD,
                       1.0f, 1, NH, NKV, HD);
    pos[0] = 11;
    infer_ref_rope_qkv(b, W, NULL, NULL, NULL, 0.0f, pos, inv, NULL, HD,
                       1.0f, 1, NH, NKV, HD);
    d1 = 0.0;
    d2 = 0.0;
    for (j = 0; j < HD; j++) {
        d1 += (double) a[j] * a[NH * HD + j];     /* q0 at 3, k0 at 3 */
        d2 += (double) b[j] * b[NH * HD + j];     /* q0 at 11, k0 at 11 */
    }
    ok(fabs(d1 - d2) < 1e-5, "rope: q.k invariant under a common shift "
       "(%.7f vs %.7f)", d1, d2);

    /* v is not rotated; bias is added to q, k and v before rotating */
    fill(row, W, 1.0f);
    fill(bias, W, 0.5f);
    memcpy(orig, row, sizeof(row));
    pos[0] = 0;
    infer_ref_rope_qkv(row, W, bias, NULL, NULL, 0.0f, pos, inv, NULL, HD,
                       1.0f, 1, NH, NKV, HD);
    ok_id = 1;
    for (j = 0; j < W; j++) {
        ok_id &= row[j] == orig[j] + bias[j];
    }
    ok(ok_id, "rope: bias added to q, k and v");
    fill(row, W, 1.0f);
    memcpy(orig, row, sizeof(row));
    pos[0] = 5;
    infer_ref_rope_qkv(row, W, NULL, NULL, NULL, 0.0f, pos, inv, NULL, HD,
                       1.0f, 1, NH, NKV, HD);
    ok(memcmp(row + (NH + NKV) * HD, orig + (NH + NKV) * HD,
              NKV * HD * sizeof(float)) == 0
       && memcmp(row, orig, HD * sizeof(float)) != 0,
       "rope: q rotated, v untouched");

    /* q/k norms before the rotation, a partial rotary dim, the cos/sin
     * factor and per-sequence frequency rows */
    {
        float   qn[HD], kn[HD], inv2[2][3], r0[W];
        int32_t rowsel[1] = { 1 }, p2[1] = { 5 };
        double  ss = 0.0, sc, x1, x2, ang;
        int     okn = 1;

        fill(qn, HD, 1.5f);
        fill(kn, HD, 1.5f);
        inv2[0][0] = 0.5f;
        inv2[0][1] = 0.25f;
        inv2[0][2] = 0.125f;
        inv2[1][0] = 0.3f;
        inv2[1][1] = 0.2f;
        inv2[1][2] = 0.1f;
        fill(r0, W, 1.0f);
        memcpy(orig, r0, sizeof(r0));
        /* the token reads frequency row 1; rot 6 of 10 */
        infer_ref_rope_qkv(r0, 0, NULL, qn, kn, 1e-6f, p2, &inv2[0][0],
                           rowsel, 6, 0.9f, 1, NH, NKV, HD);
        for (j = 0; j < HD; j++) {
            ss += (double) orig[NH * HD + j] * orig[NH * HD + j];
        }
        sc = 1.0 / sqrt(ss / HD + 1e-6);        /* k head 0 */
        for (j = 0; j < 3; j++) {
            ang = (double) (5.0f * inv2[1][j]);
            x1 = kn[j] * (orig[NH * HD + j] * sc);
            x2 = kn[j + 3] * (orig[NH * HD + j + 3] * sc);
            okn &= fabs(r0[NH * HD + j]
                        - (x1 * cos(ang) - x2 * sin(ang)) * 0.9) < 1e-5
                   && fabs(r0[NH * HD + j + 3]
                           - (x2 * cos(ang) + x1 * sin(ang)) * 0.9) < 1e-5;
        }
        for (j = 6; j < HD; j++) {
            okn &= fabs(r0[NH * HD + j]
                        - kn[j] * (orig[NH * HD + j] * sc)) < 1e-6;
        }
        ok(okn, "rope: k_norm, then rot 6 of 10 dims by row 1's "
           "frequencies, scaled; dims 6.. only normed");
    }
}

static void
test_act(void)
{
    enum { N = 3, I = 41 };
    float  gu[N * 2 * I], bias[2 * I], out[N * 2 * I];
    double want[N * I], g, u;
    int    t, i;

    fill(gu, N * 2 * I, 6.0f);
    fill(bias, 2 * I, 0.5f);
    infer_ref_act(gu, NULL, N, I, 1, INFER_KACT_SILU, out);
    for (t = 0; t < N; t++) {
        for (i = 0; i < I; i++) {
            g = gu[t * 2 * I + i];
            /* silu(g) = g * sigmoid(g), sigmoid via tanh */
            want[t * I + i] = g * 0.5 * (1.0 + tanh(g / 2.0))
                              * gu[t * 2 * I + I + i];
        }
    }
    ok(max_rel(out, want, N * I, 1e-6) < 1e-6,
       "act: swiglu matches g*sigmoid(g)*u");
    infer_ref_act(gu, bias, N, I, 1, INFER_KACT_GELU_TANH, out);
    for (t = 0; t < N; t++) {
        for (i = 0; i < I; i++) {
            g = gu[t * 2 * I + i] + (double) bias[i];
            u = gu[t * 2 * I + I + i] + (double) bias[I + i];
            want[t * I + i] = 0.5 * g * (1 + tanh(0.7978845608028654
                                                  * (g + 0.044715 * g * g
                                                     * g))) * u;
        }
    }
    ok(max_rel(out, want, N * I, 1e-6) < 1e-6,
       "act: geglu (tanh) with biases");
    infer_ref_act(gu, bias, 2 * N, I, 0, INFER_KACT_GELU, out);
    for (i = 0; i < I; i++) {
        g = gu[I + i] + (double) bias[i];          /* row 1 of [2N][I] */
        want[i] = g * 0.5 * erfc(-g / sqrt(2.0));
    }
    ok(max_rel(out + I, want, I, 1e-6) < 1e-6,
       "act: plain gelu (erf) over up + bias, not gated");
}

static void
test_softcap(void)
{
    float  x[3] = { 0.0f, 100.0f, -1.5f };

    infer_ref_softcap(x, 3, 30.0f);
    ok(x[0] == 0.0f && fabs(x[1] - 30 * tanh(100.0 / 30)) < 1e-5
       && x[1] < 30.0f && fabs(x[2] - 30 * tanh(-0.05)) < 1e-6,
       "softcap: cap * tanh(x / cap), bounded by cap");
}

/*
 * Three sequences of different lengths with shuffled physical blocks; the
 * test keeps each sequence's K/V contiguous and recomputes attention from
 * those, so paging, GQA and causality are all checked.
 */
static void
test_kv_and_attention(void)
{
    enum { NH = 6, NKV = 2, HD = 12, BS = 4, MB = 5, NSEQ = 3, NB = 16 };
    enum { W = (NH + 2 * NKV) * HD, POOL = NB * BS * NKV * HD };
    int     len[NSEQ] = { 17, 1, 9 };
    int32_t bt[NSEQ * MB], seqs[40], positions[40];
    float  *qkv, *kc, *vc, *out;
    double *want, s[20], mx, sum, acc;
    int     perm[NB], i, j, t, n = 0, h, p, d, kvh, ok_kv = 1, untouched;
    size_t  off;

    for (i = 0; i < NB; i++) {
        perm[i] = i;
    }
    for (i = NB - 1; i > 0; i--) {
        j = irand(i + 1);
        t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (i = 0; i < NSEQ * MB; i++) {
        bt[i] = perm[i];
    }
    for (i = 0; i < NSEQ; i++) {
        for (p = 0; p < len[i]; p++) {
            seqs[n] = i;
            positions[n] = p;
            n++;
        }
    }
    qkv = malloc(sizeof(float) * n * W);
    kc = malloc(sizeof(float) * POOL);
    vc = malloc(sizeof(float) * POOL);
    out = malloc(sizeof(float) * n * NH * HD);
    want = calloc((size_t) n * NH * HD, sizeof(double));
    fill(qkv, (size_t) n * W, 1.0f);
    for (i = 0; i < POOL; i++) {
        kc[i] = NAN;
        vc[i] = NAN;
    }
    infer_ref_kv_write(qkv, W, positions, seqs, bt, MB, n, NH, NKV, HD, BS,
                       kc, vc);
    for (t = 0; t < n; t++) {
        off = infer_kv_offset(bt[seqs[t] * MB + positions[t] / BS],
                              positions[t] % BS, BS, NKV, HD);
        ok_kv &= memcmp(kc + off, qkv + t * W + NH * HD,
                        NKV * HD * sizeof(float)) == 0
                 && memcmp(vc + off, qkv + t * W + (NH + NKV) * HD,
                           NKV * HD * sizeof(float)) == 0;
    }
    ok(ok_kv, "kv_write: k and v land at (block_table[p / bs], p %% bs)");
    untouched = 0;
    for (i = 0; i < POOL; i++) {
        untouched += isnan(kc[i]);
    }
    is_int(untouched, POOL - n * NKV * HD, "kv_write: no other slot written");

    /* contiguous recomputation: sequence i's tokens are rows base..base+len */
    for (t = 0; t < n; t++) {
        int base = t - positions[t];

        for (h = 0; h < NH; h++) {
            kvh = h * NKV / NH;         /* = h / (NH / NKV) */
            mx = -INFINITY;
            for (p = 0; p <= positions[t]; p++) {
                s[p] = 0.0;
                for (d = 0; d < HD; d++) {
                    s[p] += (double) qkv[t * W + h * HD + d]
                            * qkv[(base + p) * W + NH * HD + kvh * HD + d];
                }
                s[p] /= sqrt((double) HD);
                mx = s[p] > mx ? s[p] : mx;
            }
            sum = 0.0;
            for (p = 0; p <= positions[t]; p++) {
                sum += exp(s[p] - mx);
            }
            for (d = 0; d < HD; d++) {
                acc = 0.0;
                for (p = 0; p <= positions[t]; p++) {
                    acc += exp(s[p] - mx) / sum
                           * qkv[(base + p) * W + (NH + NKV) * HD + kvh * HD
                                 + d];
                }
                want[(t * NH + h) * HD + d] = acc;
            }
        }
    }
    infer_ref_attention(qkv, W, kc, vc, positions, seqs, bt, MB, BS, n, NH,
                        NKV, HD, (float) (1.0 / sqrt(HD)), 0, 0.0f, out,
                        NH * HD);
    ok(max_rel(out, want, (size_t) n * NH * HD, 1e-2) < 1e-5,
       "attention: paged GQA matches contiguous recomputation");
    /* a window of 5 keys and a soft-cap of 0.5 (it bites: |s| ~ 1) */
    for (t = 0; t < n; t++) {
        int base = t - positions[t], lo = positions[t] - 4 > 0
                                          ? positions[t] - 4 : 0;

        for (h = 0; h < NH; h++) {
            kvh = h * NKV / NH;
            mx = -INFINITY;
            for (p = lo; p <= positions[t]; p++) {
                s[p] = 0.0;
                for (d = 0; d < HD; d++) {
                    s[p] += (double) qkv[t * W + h * HD + d]
                            * qkv[(base + p) * W + NH * HD + kvh * HD + d];
                }
                s[p] = tanh(s[p] / sqrt((double) HD) / 0.5) * 0.5;
                mx = s[p] > mx ? s[p] : mx;
            }
            sum = 0.0;
            for (p = lo; p <= positions[t]; p++) {
                sum += exp(s[p] - mx);
            }
            for (d = 0; d < HD; d++) {
                acc = 0.0;
                for (p = lo; p <= positions[t]; p++) {
                    acc += exp(s[p] - mx) / sum
                           * qkv[(base + p) * W + (NH + NKV) * HD + kvh * HD
                                 + d];
                }
                want[(t * NH + h) * HD + d] = acc;
            }
        }
    }
    infer_ref_attention(qkv, W, kc, vc, positions, seqs, bt, MB, BS, n, NH,
                        NKV, HD, (float) (1.0 / sqrt(HD)), 5, 0.5f, out,
                        NH * HD);
    ok(max_rel(out, want, (size_t) n * NH * HD, 1e-2) < 1e-5,
       "attention: sliding window of 5 and soft-cap 0.5 match");
    infer_ref_attention(qkv, W, kc, vc, positions, seqs, bt, MB, BS, n, NH,
                        NKV, HD, (float) (1.0 / sqrt(HD)), 0, 0.0f, out,
                        NH * HD);

    /* position 0 sees only itself: output = its own v exactly */
    ok(memcmp(out, qkv + (NH + NKV) * HD, HD * sizeof(float)) == 0,
       "attention: first position returns its value vector");

    free(qkv);
    free(kc);
    free(vc);
    free(out);
    free(want);
}

static void
test_plan(void)
{
    int32_t seqs[12] = { 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 3, 4 };
    int32_t tiles[4 * 12], dec[12];
    int     nt, nd, i, covered = 0, ok_tiles = 1, split_len, ns;

    /* group 8: at most 4 tokens a tile */
    nt = infer_attn_plan(12, seqs, 8, 3, 64, tiles, dec, &nd);
    for (i = 0; i < nt; i++) {
        ok_tiles &= tiles[4 * i] == covered && tiles[4 * i + 1] <= 4
                    && tiles[4 * i + 2] == seqs[covered];
        covered += tiles[4 * i + 1];
    }
    ok(ok_tiles && covered == 12, "plan: tiles cover the tokens in order");
    is_int(nt, 6, "plan: 6 tiles (4+3, 1, 2, 1, 1)");
    is_int(nd, 3, "plan: single-token tiles get split slots");
    ok(dec[0] == 7 && dec[1] == 10 && dec[2] == 11 && tiles[4 * 2 + 3] == 0
       && tiles[4 * 0 + 3] == -1, "plan: slots name their tokens");
    nt = infer_attn_plan(12, seqs, 8, 1, 64, tiles, dec, &nd);
    is_int(nd, 0, "plan: no slots without splitting");
    infer_attn_plan(12, seqs, 8, 3, 2, tiles, dec, &nd);
    is_int(nd, 2, "plan: slots capped");

    ns = infer_attn_splits(100, &split_len);
    ok(ns == 1 && split_len >= 100, "splits: short context is one split");
    ns = infer_attn_splits(4096, &split_len);
    ok(ns <= INFER_ATTN_MAX_SPLIT && ns * split_len >= 4096
       && split_len % 32 == 0, "splits: 4096 -> %d x %d", ns, split_len);
    ns = infer_attn_splits(100000, &split_len);
    ok(ns <= INFER_ATTN_MAX_SPLIT && ns * split_len >= 100000,
       "splits: 100000 -> %d x %d", ns, split_len);
}

static void
test_sample_rows(void)
{
    infer_sampling_t   s = { 0.0f, 0, 1.0f, 42, 7 };
    infer_sample_row_t r;

    infer_sample_row(&s, 100, &r);
    is_int(r.mode, INFER_SAMPLE_GREEDY, "sample row: temperature 0 greedy");
    s.temperature = 0.8f;
    s.top_k = 1;
    infer_sample_row(&s, 100, &r);
    is_int(r.mode, INFER_SAMPLE_GREEDY, "sample row: top_k 1 greedy");
    s.top_k = 0;
    infer_sample_row(&s, 100, &r);
    ok(r.mode == INFER_SAMPLE_BY_ID && r.m == 100
       && r.u == infer_rng_uniform(42, 7) && r.inv_t == 1.0 / (double) 0.8f,
       "sample row: temperature only keeps id order");
    s.top_k = 100;
    infer_sample_row(&s, 100, &r);
    is_int(r.mode, INFER_SAMPLE_BY_ID, "sample row: top_k = vocab is off");
    s.top_k = 20;
    infer_sample_row(&s, 100, &r);
    ok(r.mode == INFER_SAMPLE_SORTED && r.m == 20 && r.top_p == 1.0,
       "sample row: top_k sorts and truncates");
    s.top_k = 0;
    s.top_p = 0.9f;
    infer_sample_row(&s, 100, &r);
    ok(r.mode == INFER_SAMPLE_SORTED && r.m == 100
       && r.top_p == (double) 0.9f, "sample row: top_p sorts all");
}

/*
 * The W8A16 reference: a known answer, and on random data the CPU
 * backend's int8 product (the same weights and scales, float32 sums)
 * within a float32 sum's bound, in * FLT_EPSILON * sum |terms|.
 */
static void
test_gemm_w8(void)
{
    enum { N = 5, IN = 301, OUT = 13 };
    static const float  kx[2 * 3] = { 1, 2, 3, -1, 0.5f, 0 };
    static const int8_t kw[2 * 3] = { 1, -2, 3, 127, 0, -127 };
    static const float  ks[2] = { 0.5f, 0.25f };
    float               ky[2 * 2], x[N * IN], wf[IN], scale[OUT];
    float               want[N * OUT], got[N * OUT];
    int8_t              w[OUT * IN];
    double              bound, e, worst = 0;
    int                 r, t, i;

    infer_ref_gemm_w8a16(kx, kw, ks, 2, 3, 2, ky);
    /* (1 - 4 + 9) / 2, (127 - 381) / 4, (-1 - 1) / 2, -127 / 4 */
    ok(ky[0] == 3.0f && ky[1] == -63.5f && ky[2] == -1.0f
       && ky[3] == -31.75f, "gemm_w8a16 ref: known answer");

    fill(x, N * IN, 1.0f);
    for (r = 0; r < OUT; r++) {
        fill(wf, IN, 0.1f * (r + 1));
        infer_i8_quantize_row(wf, IN, w + (size_t) r * IN, &scale[r]);
    }
    infer_ref_gemm_w8a16(x, w, scale, N, IN, OUT, want);
    infer_gemm_narrow_i8_ref(x, N, IN, w, scale, OUT, got, OUT);
    for (t = 0; t < N; t++) {
        for (r = 0; r < OUT; r++) {
            bound = 0;
            for (i = 0; i < IN; i++) {
                bound += fabs((double) x[t * IN + i] * w[r * IN + i]
                              * scale[r]);
            }
            bound *= (IN + 1) * 1.2e-7;
            e = fabs((double) got[t * OUT + r] - want[t * OUT + r]) / bound;
            worst = e > worst || e != e ? e : worst;
        }
    }
    ok(worst <= 1.0, "gemm_w8a16 ref = the CPU backend's int8 product "
       "within a float32 sum's bound (worst %.3g of it)", worst);
}

int
main(void)
{
    test_embed();
    test_rmsnorm();
    test_layernorm();
    test_rope();
    test_act();
    test_softcap();
    test_kv_and_attention();
    test_plan();
    test_sample_rows();
    test_gemm_w8();
    return done_testing();
}
