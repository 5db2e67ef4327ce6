/*
 * RoPE frequencies against transformers: t/data/ref/rope.freqs holds, for
 * configs of every rope_type (published shapes and parameters), the
 * inv_freq buffer and attention scaling that the family's own rotary
 * module computed, as float32 bits, and cos at a few positions
 * (tools/ref/rope_freqs.py).  The config goes through the loader's parser,
 * so the test also covers how rope_scaling / rope_parameters are read.
 *
 * Exact where exact: the attention scaling bit for bit; inv_freq within
 * one ulp, and equal for at least 97% of frequencies.  The one-ulp cases
 * are torch's vectorised pow, which is not correctly rounded (rope_freq.h);
 * they move an angle by less than the float32 rounding of the angle
 * itself.  cos within what the arithmetic allows: both sides evaluate
 * cos of the same float32 angle with a 1-ulp libm (glibc here, SLEEF in
 * torch: 3e-7 for both), and where a frequency is one ulp off, the angle
 * moves by position x that ulp.
 */
#include <math.h>
#include <stdint.h>
#include "model.h"
#include "rope_freq.h"
#include "tap.h"

static float
hex_float(const char *hx)
{
    uint32_t w = 0;
    unsigned x;
    float    f;
    int      k;

    for (k = 0; k < 4; k++) {
        sscanf(hx + 2 * k, "%2x", &x);
        w |= x << (8 * k);
    }
    memcpy(&f, &w, 4);
    return f;
}

static int
ulps(float a, float b)
{
    int32_t ia, ib;

    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    return ia > ib ? ia - ib : ib - ia;
}

int
main(void)
{
    static char           line[65536];
    FILE                 *f = fopen("t/data/ref/rope.freqs", "r");
    infer_model_config_t  c;
    char                  name[128], err[512], hx[16], *p;
    float                 inv[INFER_ROPE_MAX_HALF], want, scale;
    float                 hinv[INFER_ROPE_MAX_HALF];
    int                   seq = 0, n, i, pos, nc, worst, exact, total = 0;
    int                   same = 0, cases = 0, n_inv = 0;
    double                cerr, bound;
    int                   bad;

    if (!ok(f != NULL, "t/data/ref/rope.freqs opens")) {
        return done_testing();
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "case %127s", name) == 1) {
            cases++;
            continue;
        }
        if (strncmp(line, "config ", 7) == 0) {
            if (!ok(infer_model_parse_config(line + 7, name, &c, err,
                                             sizeof(err)) == 0,
                    "%s: config parses", name))
            {
                diag("%s", err);
            }
            continue;
        }
        if (sscanf(line, "seq %d", &seq) == 1) {
            continue;
        }
        if (sscanf(line, "scaling %8s", hx) == 1) {
            scale = infer_rope_scaling(&c.rope);
            ok(scale == hex_float(hx), "%s: %s attention scaling %.9g "
               "(transformers %.9g)", name,
               infer_rope_type_name(c.rope.type), scale, hex_float(hx));
            continue;
        }
        if (sscanf(line, "inv %d%n", &n_inv, &nc) == 1) {
            is_int(n_inv, c.rope.dim / 2, "%s: %d frequencies", name,
                   c.rope.dim / 2);
            infer_rope_inv_freq(&c.rope, seq, inv);
            worst = exact = 0;
            for (i = 0, p = line + nc; i < n_inv && i < c.rope.dim / 2;
                 i++)
            {
                n = 0;
                if (sscanf(p, "%8s%n", hx, &n) != 1) {
                    break;
                }
                p += n;
                want = hex_float(hx);
                hinv[i] = want;
                worst = ulps(inv[i], want) > worst ? ulps(inv[i], want)
                                                   : worst;
                exact += inv[i] == want;
            }
            total += n_inv;
            same += exact;
            ok(i == n_inv && worst <= 1, "%s: inv_freq (seq %d) within 1 "
               "ulp of transformers (worst %d ulp, %d/%d exact)", name, seq,
               worst, exact, n_inv);
            continue;
        }
        if (sscanf(line, "cos %d%n", &pos, &nc) == 1) {
            cerr = 0;
            bad = 0;
            scale = infer_rope_scaling(&c.rope);
            for (i = 0, p = line + nc; i < n_inv; i++) {
                n = 0;
                if (sscanf(p, "%8s%n", hx, &n) != 1) {
                    break;
                }
                p += n;
                want = cosf((float) pos * inv[i]) * scale;
                /* two 1-ulp libms, and a one-ulp frequency's angle */
                bound = scale * (3e-7 + (inv[i] != hinv[i])
                                        * pos * (nextafterf(inv[i], 1e9f)
                                                 - inv[i]));
                bad += fabs(want - hex_float(hx)) > bound;
                cerr = fmax(cerr, fabs(want - hex_float(hx)));
            }
            ok(i == n_inv && bad == 0, "%s: cos at position %d within "
               "libm and frequency rounding (max %.2g)", name, pos, cerr);
        }
    }
    fclose(f);
    ok(cases >= 20, "%d cases", cases);
    ok(same >= 0.97 * total, "%d of %d frequencies bit-identical (>= 97%%)",
       same, total);
    return done_testing();
}
