/*
 * Decode attention (attn_decode.c) on random data against float64.
 *
 * A paged cache of two kv heads, every slot NaN but the positions of the
 * head under test, in blocks taken in a shuffled order, so that a read of
 * the wrong head, block or slot shows as NaN.  For head sizes that take
 * the AVX2 kernel (multiples of 8) and that do not (20), groups of 1, 2
 * and 8 query heads, contexts across block boundaries, windows (lo > 0)
 * and soft-capping, both kernels against the softmax attention computed
 * in double from the same float32 inputs.
 *
 * The bound, per output element: a float32 dot product of hd terms is off
 * by at most (hd + 1) eps sum_d |q_d k_d| (any order); a score error of e
 * moves each probability by at most 2e of itself (the softmax's
 * sensitivity), and the exponentials, the sum and the division add (n +
 * 8) eps more (libmvec's expf: within 4 ulp).  So
 *
 *     |out_d - ref_d| <= (2 E + (n + hd + 16) eps) sum_j p_j |v_jd|,
 *     E = max_j scale (hd + 1) eps sum_d |q_d k_jd|  (times 1 under
 *         soft-capping: tanh's slope is at most 1)
 *
 * A key element moved by a large step must fall outside it, so it can
 * fail.  Each call writes only its group's rows of out.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "attn_decode.h"
#include "tap.h"

enum { BS = 16, KVH = 2, HEAD = 1, MAXCTX = 100, MAXG = 8, MAXHD = 80,
       NBLK = MAXCTX / BS + 4 };

static uint64_t rng = 0x243f6a8885a308d3ull;

/* uniform in [-1, 1) */
static float
uniform(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((double) (rng >> 11) / (double) (1ull << 52) - 1.0);
}

static float   kc[NBLK * KVH * BS * MAXHD], vc[NBLK * KVH * BS * MAXHD];
static int32_t table[NBLK];
static float   q[MAXG * MAXHD], out[MAXG * MAXHD + 8], s[MAXG * MAXCTX + 8];

/* position p's key or value of HEAD */
static float *
at(float *cache, int hd, int p)
{
    return cache + ((size_t) table[p / BS] * KVH + HEAD) * BS * hd
           + (size_t) (p % BS) * hd;
}

static void
fill(int hd, int ctx)
{
    int i, j, d, p;

    for (i = 0; i < NBLK * KVH * BS * MAXHD; i++) {
        kc[i] = vc[i] = NAN;
    }
    for (i = 0; i < NBLK; i++) {
        table[i] = i;
    }
    for (i = NBLK - 1; i > 0; i--) {
        j = (int) ((uniform() + 1.0f) * 0.5f * (float) (i + 1)) % (i + 1);
        p = table[i];
        table[i] = table[j];
        table[j] = p;
    }
    for (p = 0; p < ctx; p++) {
        for (d = 0; d < hd; d++) {
            at(kc, hd, p)[d] = uniform();
            at(vc, hd, p)[d] = uniform();
        }
    }
    for (i = 0; i < MAXG * MAXHD; i++) {
        q[i] = 3.0f * uniform();      /* scores spread over a few units */
    }
}

/* out of every head against float64: the worst error over its bound */
static double
check(int hd, int group, int lo, int ctx, float scale, float cap)
{
    int    n = ctx - lo, h, j, d;
    double sc[MAXCTX], p[MAXCTX], max, sum, dot, mag, ref, w, err;
    double score_err, worst = 0.0, eps = FLT_EPSILON;

    for (h = 0; h < group; h++) {
        const float *qh = q + (size_t) h * hd;

        score_err = 0.0;
        max = -INFINITY;
        for (j = 0; j < n; j++) {
            const float *k = at(kc, hd, lo + j);

            dot = 0.0;
            mag = 0.0;
            for (d = 0; d < hd; d++) {
                dot += (double) qh[d] * k[d];
                mag += fabs((double) qh[d] * k[d]);
            }
            sc[j] = dot * scale;
            if (cap != 0.0f) {
                sc[j] = tanh(sc[j] / cap) * cap;
            }
            score_err = fmax(score_err, scale * (hd + 1) * eps * mag);
            max = fmax(max, sc[j]);
        }
        sum = 0.0;
        for (j = 0; j < n; j++) {
            p[j] = exp(sc[j] - max);
            sum += p[j];
        }
        for (d = 0; d < hd; d++) {
            ref = 0.0;
            w = 0.0;
            for (j = 0; j < n; j++) {
                ref += p[j] / sum * at(vc, hd, lo + j)[d];
                w += p[j] / sum * fabs(at(vc, hd, lo + j)[d]);
            }
            err = fabs(out[h * hd + d] - ref)
                  / ((2.0 * score_err + (n + hd + 16) * eps) * w);
            if (!(err <= worst)) {
                worst = err;             /* a NaN stays */
            }
        }
    }
    return worst;
}

typedef void attn_fn(const infer_attn_cache_t *, int, int, const float *,
    int, float, float, float *, float *);

/* one kernel on one case: the worst error over the bound, or 1e9 if it
 * wrote past its rows */
static double
run(attn_fn *fn, int hd, int group, int lo, int ctx, float cap)
{
    infer_attn_cache_t c;
    float              scale = 1.0f / sqrtf((float) hd);
    int                i;

    c.k = kc + (size_t) HEAD * BS * hd;
    c.v = vc + (size_t) HEAD * BS * hd;
    c.table = table;
    c.block_stride = (size_t) KVH * BS * hd;
    c.block_size = BS;
    c.head_dim = hd;
    for (i = 0; i < MAXG * MAXHD + 8; i++) {
        out[i] = -7.0f;
    }
    s[group * (ctx - lo)] = -7.0f;
    fn(&c, lo, ctx, q, group, scale, cap, out, s);
    for (i = group * hd; i < group * hd + 8; i++) {
        if (out[i] != -7.0f) {
            return 1e9;
        }
    }
    if (s[group * (ctx - lo)] != -7.0f) {
        return 1e9;
    }
    return check(hd, group, lo, ctx, scale, cap);
}

int
main(void)
{
    static const int hds[] = { 8, 64, 80, 20 };
    static const int groups[] = { 1, 2, 8 };
    static const int ctxs[] = { 1, 5, 16, 17, 40, 100 };
    static const float caps[] = { 0.0f, 1.5f };
    attn_fn *const fns[] = { infer_attn_decode_ref, infer_attn_decode };
    const char *const names[] = { "C", "dispatched" };
    double   worst[2] = { 0, 0 }, e;
    int      a, b, g, c, w, f, lo, cases = 0, bad[2] = { 0, 0 };

    diag("kernel for head_dim 64: %s", infer_attn_decode_kernel(64));
    for (a = 0; a < 4; a++) {
        for (c = 0; c < 6; c++) {
            fill(hds[a], ctxs[c]);
            for (g = 0; g < 3; g++) {
                for (w = 0; w < 2; w++) {
                    lo = w && ctxs[c] > 7 ? ctxs[c] - 7 : 0;
                    for (b = 0; b < 2; b++) {
                        cases++;
                        for (f = 0; f < 2; f++) {
                            e = run(fns[f], hds[a], groups[g], lo, ctxs[c],
                                    caps[b]);
                            if (!(e <= 1.0)) {
                                bad[f]++;
                                diag("%s hd=%d group=%d lo=%d ctx=%d "
                                     "cap=%g: %g of the bound", names[f],
                                     hds[a], groups[g], lo, ctxs[c],
                                     caps[b], e);
                            }
                            if (!(e <= worst[f])) {
                                worst[f] = e;
                            }
                        }
                    }
                }
            }
        }
    }
    for (f = 0; f < 2; f++) {
        ok(bad[f] == 0, "%s kernel: %d cases within the float32 bound, "
           "only their rows written (worst %.3f of the bound)", names[f],
           cases, worst[f]);
    }

    /* the bound can fail: out against a key element moved by 0.25 */
    fill(64, 40);
    (void) run(infer_attn_decode, 64, 8, 0, 40, 0.0f);
    at(kc, 64, 2)[5] += 0.25f;
    e = check(64, 8, 0, 40, 1.0f / sqrtf(64.0f), 0.0f);
    ok(e > 1.0, "out against a key element moved by 0.25 falls outside "
       "the bound (%.1f of it)", e);
    return done_testing();
}
