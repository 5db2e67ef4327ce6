/*
 * Model loader: stories260K's numbers, every malformed model directory we
 * can think of (each must fail with a message naming the file and the field
 * or tensor), sharded == single-file loading, and exact half / bfloat16
 * conversion.
 */
#include <float.h>
#include <libgen.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <jansson.h>
#include "model.h"
#include "tap.h"

static char gen_path[4096];
static char err[1024];


/* ---- number formats --------------------------------------------------- */

static float
from_bits(uint32_t x)
{
    float f;

    memcpy(&f, &x, 4);
    return f;
}


/* Independent check of round-to-nearest-even: h is the nearest half to f,
 * and on a tie the even one.  Differences are exact in double. */
static int
half_is_nearest(float f, uint16_t h)
{
    double   d = f, v = infer_half_to_float(h), dv = fabs(v - d), dn;
    uint16_t n[2];
    int      i;

    if ((h & 0x7fff) == 0x7c00) {
        return fabs(d) >= 65520.0;
    }
    n[0] = (h & 0x7fff) ? h - 1 : (h ^ 0x8000) + 1;
    n[1] = h + 1;
    for (i = 0; i < 2; i++) {
        if ((n[i] & 0x7c00) == 0x7c00) {
            continue;
        }
        dn = fabs(infer_half_to_float(n[i]) - d);
        if (dn < dv || (dn == dv && (h & 1))) {
            return 0;
        }
    }
    return 1;
}


static void
test_half(void)
{
    uint32_t h, x, bad = 0, badn = 0;
    uint64_t s = 12345;
    float    f;

    ok(infer_half_to_float(0x3c00) == 1.0f, "half 0x3c00 = 1");
    ok(infer_half_to_float(0xc000) == -2.0f, "half 0xc000 = -2");
    ok(infer_half_to_float(0x7bff) == 65504.0f, "half 0x7bff = 65504");
    ok(infer_half_to_float(0x3555) == 0.333251953125f,
       "half 0x3555 = 0.333251953125");
    ok(infer_half_to_float(0x0400) == ldexpf(1, -14), "half min normal");
    ok(infer_half_to_float(0x0001) == ldexpf(1, -24), "half min subnormal");
    ok(infer_half_to_float(0x03ff) == ldexpf(1023, -24),
       "half max subnormal");
    ok(infer_half_to_float(0x7c00) == INFINITY, "half +inf");
    ok(infer_half_to_float(0xfc00) == -INFINITY, "half -inf");
    ok(isnan(infer_half_to_float(0x7e00)), "half nan");
    ok(signbit(infer_half_to_float(0x8000))
       && infer_half_to_float(0x8000) == 0, "half -0");

    is_int(infer_float_to_half(1.0f), 0x3c00, "1 -> 0x3c00");
    is_int(infer_float_to_half(-2.0f), 0xc000, "-2 -> 0xc000");
    is_int(infer_float_to_half(1.0f / 3), 0x3555, "1/3 -> 0x3555");
    is_int(infer_float_to_half(65504.0f), 0x7bff, "65504 -> max");
    is_int(infer_float_to_half(65519.996f), 0x7bff, "65519.996 -> max");
    is_int(infer_float_to_half(65520.0f), 0x7c00, "65520 ties to inf");
    is_int(infer_float_to_half(1e10f), 0x7c00, "1e10 -> inf");
    is_int(infer_float_to_half(-INFINITY), 0xfc00, "-inf -> -inf");
    is_int(infer_float_to_half(-0.0f), 0x8000, "-0 keeps its sign");
    is_int(infer_float_to_half(1 + ldexpf(1, -11)), 0x3c00,
           "1 + half ulp ties to even (down)");
    is_int(infer_float_to_half(1 + 3 * ldexpf(1, -11)), 0x3c02,
           "1 + 3/2 ulp ties to even (up)");
    is_int(infer_float_to_half(1 + ldexpf(1, -11) + ldexpf(1, -20)), 0x3c01,
           "just above a tie rounds up");
    is_int(infer_float_to_half(ldexpf(1, -24)), 0x0001, "2^-24 -> 0x0001");
    is_int(infer_float_to_half(ldexpf(1, -25)), 0x0000,
           "2^-25 ties to even zero");
    is_int(infer_float_to_half(nextafterf(ldexpf(1, -25), 1)), 0x0001,
           "just above 2^-25 -> 0x0001");
    is_int(infer_float_to_half(3 * ldexpf(1, -25)), 0x0002,
           "1.5 subnormal units tie to even 2");
    is_int(infer_float_to_half(ldexpf(2047, -25)), 0x0400,
           "max subnormal + half unit ties up into the normals");
    is_int(infer_float_to_half(ldexpf(1, -30)), 0x0000, "2^-30 -> 0");
    h = infer_float_to_half(NAN);
    ok((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0, "nan stays nan");
    h = infer_float_to_half(from_bits(0x7f800001));
    ok((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0,
       "signalling nan with a low payload stays nan");

    for (h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            continue;
        }
        bad += infer_float_to_half(infer_half_to_float(h)) != h;
    }
    is_int(bad, 0, "every non-nan half round-trips exactly");

    /* 10^6 random floats across the half range, and a band around the
     * subnormal boundary */
    for (x = 0; x < 1000000; x++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        f = from_bits((uint32_t) (s >> 32));
        if (isnan(f)) {
            continue;
        }
        if (x & 1) {
            f = ldexpf(f - truncf(f), -(int) (s >> 20 & 15));
        }
        if (fabsf(f) < 70000 && !half_is_nearest(f, infer_float_to_half(f))) {
            if (badn++ < 3) {
                diag("not nearest-even: %a -> 0x%04x", f,
                     infer_float_to_half(f));
            }
        }
    }
    is_int(badn, 0, "float -> half is nearest, ties to even (1e6 values)");
}


static void
test_bf16(void)
{
    uint32_t h, bad = 0;
    uint16_t b;

    ok(infer_bf16_to_float(0x3f80) == 1.0f, "bf16 0x3f80 = 1");
    ok(infer_bf16_to_float(0xc0a0) == -5.0f, "bf16 0xc0a0 = -5");
    ok(infer_bf16_to_float(0x0001) == from_bits(0x00010000),
       "bf16 subnormal");
    ok(infer_bf16_to_float(0x7f80) == INFINITY, "bf16 inf");
    is_int(infer_float_to_bf16(1.0f), 0x3f80, "1 -> 0x3f80");
    is_int(infer_float_to_bf16(1 + ldexpf(1, -8)), 0x3f80,
           "tie rounds to even (down)");
    is_int(infer_float_to_bf16(1 + 3 * ldexpf(1, -8)), 0x3f82,
           "tie rounds to even (up)");
    is_int(infer_float_to_bf16(1 + ldexpf(1, -8) + ldexpf(1, -20)), 0x3f81,
           "above a tie rounds up");
    is_int(infer_float_to_bf16(1.0f / 3), 0x3eab, "1/3 -> 0x3eab");
    is_int(infer_float_to_bf16(FLT_MAX), 0x7f80, "FLT_MAX rounds to inf");
    is_int(infer_float_to_bf16(from_bits(0x00008000)), 0x0000,
           "subnormal tie to even zero");
    is_int(infer_float_to_bf16(-0.0f), 0x8000, "-0 keeps its sign");
    b = infer_float_to_bf16(from_bits(0x7f800001));
    ok((b & 0x7f80) == 0x7f80 && (b & 0x7f), "nan with low payload stays "
       "nan");
    b = infer_float_to_bf16(-NAN);
    ok((b & 0x8000) && isnan(infer_bf16_to_float(b)), "-nan keeps sign");
    for (h = 0; h < 0x10000; h++) {
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) {
            continue;
        }
        bad += infer_float_to_bf16(infer_bf16_to_float(h)) != h;
    }
    is_int(bad, 0, "every non-nan bf16 round-trips exactly");
}


/*
 * The row paths of infer_tensor_read_f32/_bf16 (vectorized) against the
 * scalar conversions above, bit for bit: every float16 value, float32
 * values around every rounding case, from an odd address (a mapping need
 * not be aligned) and in lengths that leave vector tails.
 */
static void
test_rows(void)
{
    static unsigned char raw[4 * 0x10000 + 8];
    static float         f[0x10000];
    static uint16_t      b[0x10000];
    infer_tensor_t       t;
    uint32_t             i, x, bad = 0, badb = 0, badf = 0;
    uint64_t             s = 99;
    int64_t              n;
    uint16_t             h;

    memset(&t, 0, sizeof(t));
    t.ndim = 2;
    t.data = raw + 1;
    for (i = 0; i < 0x10000; i++) {
        h = (uint16_t) i;
        memcpy(raw + 1 + 2 * i, &h, 2);
    }
    t.dtype = INFER_DT_F16;
    t.shape[0] = 2;
    t.shape[1] = 0x8000;
    infer_tensor_read_f32(&t, 0, 2, 0, 0x8000, f);
    infer_tensor_read_bf16(&t, 0, 2, 0, 0x8000, b);
    for (i = 0; i < 0x10000; i++) {
        float ref = infer_half_to_float((uint16_t) i);

        bad += memcmp(&f[i], &ref, 4) != 0;
        badb += b[i] != infer_float_to_bf16(ref);
    }
    is_int(bad, 0, "float16 rows to float32: every value as the scalar");
    is_int(badb, 0, "float16 rows to bfloat16: every value as the scalar");

    /* float32: random bits, and ties, nans and infinities among them */
    for (i = 0; i < 0x10000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x = (uint32_t) (s >> 32);
        if (i % 4 == 1) {
            x = (x & 0xffff0000) | 0x8000;          /* a tie */
        } else if (i % 16 == 2) {
            x |= 0x7f800000;                        /* inf or nan */
        }
        memcpy(raw + 1 + 4 * i, &x, 4);
    }
    t.dtype = INFER_DT_F32;
    for (n = 1; n <= 17; n++) {
        t.shape[0] = 1;
        t.shape[1] = n;
        infer_tensor_read_bf16(&t, 0, 1, 0, n, b);
        for (i = 0; i < n; i++) {
            memcpy(&x, raw + 1 + 4 * i, 4);
            badf += b[i] != infer_float_to_bf16(from_bits(x));
        }
    }
    t.shape[0] = 4;
    t.shape[1] = 0x4000;
    infer_tensor_read_bf16(&t, 0, 4, 0, 0x4000, b);
    for (i = 0; i < 0x10000; i++) {
        memcpy(&x, raw + 1 + 4 * i, 4);
        badf += b[i] != infer_float_to_bf16(from_bits(x));
    }
    is_int(badf, 0, "float32 rows to bfloat16 (ties, nans, lengths 1-17) "
           "as the scalar");

    /* bfloat16 rows widen exactly */
    t.dtype = INFER_DT_BF16;
    t.shape[0] = 1;
    t.shape[1] = 13;
    infer_tensor_read_f32(&t, 0, 1, 0, 13, f);
    bad = 0;
    for (i = 0; i < 13; i++) {
        memcpy(&h, raw + 1 + 2 * i, 2);
        x = (uint32_t) h << 16;
        bad += memcmp(&f[i], &x, 4) != 0;
    }
    is_int(bad, 0, "bfloat16 rows to float32: exact");
}


/* ---- stories260K ------------------------------------------------------ */

static void
test_stories(void)
{
    infer_model_t         *m;
    char                   dir[4096];
    const infer_tensor_t  *t;
    float                  blk[6], raw[64];
    int                    i, nonnull = 1;

    snprintf(dir, sizeof(dir), "%s/models/stories260K", shared_dir());
    if (!ok(infer_model_open(dir, &m, err, sizeof(err)) == 0,
            "stories260K opens"))
    {
        diag("%s", err);
        return;
    }
    is_str(m->cfg.model_type, "llama", "model_type");
    ok(m->cfg.norm == INFER_NORM_RMS && m->cfg.act == INFER_ACT_SILU
       && m->cfg.gated_mlp && !m->cfg.learned_pos && !m->cfg.qk_norm
       && !m->cfg.post_norms && m->cfg.embed_scale == 1.0f
       && m->cfg.norm_offset == 0.0f, "llama: RMSNorm, SwiGLU, no extras");
    ok(m->cfg.rope.type == INFER_ROPE_DEFAULT && m->cfg.rope.dim == 8
       && m->cfg.sliding_window == 0 && m->cfg.attn_softcap == 0.0f
       && m->cfg.final_softcap == 0.0f
       && infer_model_attn_scale(&m->cfg, 3) == (float) pow(8, -0.5),
       "llama: plain RoPE over the head, no window or caps, 1/sqrt(8)");
    is_int(m->cfg.vocab_size, 512, "vocab_size");
    is_int(m->cfg.hidden_size, 64, "hidden_size");
    is_int(m->cfg.intermediate_size, 172, "intermediate_size");
    is_int(m->cfg.num_layers, 5, "num_hidden_layers");
    is_int(m->cfg.num_heads, 8, "num_attention_heads");
    is_int(m->cfg.num_kv_heads, 4, "num_key_value_heads");
    is_int(m->cfg.head_dim, 8, "head_dim = hidden / heads");
    is_int(m->cfg.max_position, 512, "max_position_embeddings");
    ok(m->cfg.rms_norm_eps == 1e-5, "rms_norm_eps 1e-5");
    ok(m->cfg.rope_theta == 10000.0, "rope_theta 10000");
    is_int(m->cfg.tie_word_embeddings, 1, "tied");
    is_int(m->cfg.qkv_bias, 0, "no qkv bias");
    is_int(m->cfg.bos_token_id, 1, "bos 1");
    is_int(m->cfg.n_eos, 1, "one eos");
    is_int(m->cfg.eos_token_ids[0], 2, "eos 2");
    ok(m->lm_head == m->embed, "lm_head is the embedding");
    is_int(m->embed->shape[0], 512, "embed rows");
    is_int(m->embed->shape[1], 64, "embed cols");
    is_int(m->embed->dtype, INFER_DT_F32, "F32");
    for (i = 0; i < 5; i++) {
        nonnull &= m->layers[i].wq && m->layers[i].wk && m->layers[i].wv
                   && m->layers[i].wo && m->layers[i].w_gate
                   && m->layers[i].w_up && m->layers[i].w_down
                   && m->layers[i].attn_norm && m->layers[i].mlp_norm
                   && !m->layers[i].bq;
    }
    ok(nonnull, "every layer bound, no biases");
    t = infer_model_tensor(m, "model.layers.4.mlp.down_proj.weight");
    ok(t && t->shape[0] == 64 && t->shape[1] == 172, "down_proj [64, 172]");
    ok(infer_model_tensor(m, "no.such.tensor") == NULL, "unknown is NULL");
    /* a 2x3 block at (10, 40) equals the raw row-major floats */
    infer_tensor_read_f32(m->embed, 10, 2, 40, 3, blk);
    memcpy(raw, (const char *) m->embed->data + 10 * 64 * 4, 64 * 4);
    ok(memcmp(blk, raw + 40, 12) == 0 && blk[0] != 0,
       "read_f32 block row 10");
    memcpy(raw, (const char *) m->embed->data + 11 * 64 * 4, 64 * 4);
    ok(memcmp(blk + 3, raw + 40, 12) == 0, "read_f32 block row 11");
    infer_model_close(m);
}


/* ---- generated models ------------------------------------------------- */

static int
gen(const char *dir, const char *args)
{
    char cmd[8192];

    snprintf(cmd, sizeof(cmd), "%s %s %s >/dev/null", gen_path, dir, args);
    return system(cmd);
}


static void
rmrf(const char *dir)
{
    char cmd[4200];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        diag("could not remove %s", dir);
    }
}


/* ---- the families' presets bind as their names say ------------------- */

static infer_model_t *
gen_open(const char *tmp, const char *preset)
{
    char           dir[4200], args[256];
    infer_model_t *m = NULL;

    snprintf(dir, sizeof(dir), "%s/fam-%s", tmp, preset);
    snprintf(args, sizeof(args), "--preset %s --seed 3", preset);
    if (!ok(gen(dir, args) == 0
            && infer_model_open(dir, &m, err, sizeof(err)) == 0,
            "%s: generated and opened", preset))
    {
        diag("%s", err);
        return NULL;
    }
    return m;
}


/* element (r, c) of a tensor or view, through the block reader */
static float
elem(const infer_tensor_t *t, int64_t r, int64_t c)
{
    float v;

    infer_tensor_read_f32(t, r, 1, c, 1, &v);
    return v;
}


static void
test_families(const char *tmp)
{
    infer_model_t              *m;
    const infer_layer_weights_t *l;
    const infer_tensor_t       *t;
    int                         ok_all, r, c;

    if ((m = gen_open(tmp, "tiny-gemma2")) != NULL) {
        l = &m->layers[1];
        ok(m->cfg.layer_sliding[0] && !m->cfg.layer_sliding[1]
           && m->cfg.layer_sliding[2] && !m->cfg.layer_sliding[3]
           && infer_model_window(&m->cfg, 2) == 128
           && infer_model_window(&m->cfg, 3) == 0,
           "gemma2: local, global, local, global; window 128");
        ok(m->cfg.attn_softcap == 2.0f && m->cfg.final_softcap == 3.0f
           && m->cfg.embed_scale == 8.0f && m->cfg.norm_offset == 1.0f
           && m->cfg.act == INFER_ACT_GELU_TANH && m->cfg.gated_mlp,
           "gemma2: soft-caps 2 / 3, embedding x sqrt(64), (1 + w) norms, "
           "GeGLU");
        ok(infer_model_attn_scale(&m->cfg, 0) == (float) pow(24, -0.5),
           "gemma2: scores scaled by query_pre_attn_scalar^-0.5");
        ok(l->post_attn_norm && l->post_mlp_norm
           && strstr(l->post_attn_norm->name, "post_attention_layernorm")
           && strstr(l->mlp_norm->name, "pre_feedforward_layernorm")
           && strstr(l->post_mlp_norm->name, "post_feedforward_layernorm"),
           "gemma2: pre/post norms bound by their roles");
        ok(m->lm_head == m->embed && m->cfg.rope.dim == 32,
           "gemma2: tied, RoPE over head_dim 32");
        infer_model_close(m);
    }
    if ((m = gen_open(tmp, "tiny-qwen3")) != NULL) {
        l = &m->layers[0];
        ok(m->cfg.qk_norm && l->q_norm && l->k_norm
           && l->q_norm->shape[0] == 32 && !m->cfg.qkv_bias && !l->bq
           && l->wq->shape[0] == 128 && m->cfg.sliding_window == 0,
           "qwen3: q/k norms over head_dim 32, 4 x 32 > hidden, no "
           "biases, no window");
        infer_model_close(m);
    }
    if ((m = gen_open(tmp, "tiny-phi3")) != NULL) {
        l = &m->layers[1];
        t = infer_model_tensor(m, "model.layers.1.self_attn.qkv_proj.weight");
        ok(t && l->wq->shape[0] == 64 && l->wk->shape[0] == 32
           && l->wv->shape[0] == 32 && l->wq->shape[1] == 64
           && strstr(l->wk->name, "qkv_proj.weight[k]"),
           "phi3: q, k, v are views of qkv_proj (64, 32, 32 rows)");
        ok_all = t != NULL;
        for (r = 0; ok_all && r < 32; r += 7) {
            for (c = 0; c < 64; c += 13) {
                ok_all &= elem(l->wk, r, c) == elem(t, 64 + r, c)
                          && elem(l->wv, r, c) == elem(t, 96 + r, c);
            }
        }
        ok(ok_all, "phi3: k rows follow q's, v rows k's");
        t = infer_model_tensor(m, "model.layers.1.mlp.gate_up_proj.weight");
        ok(t && l->w_gate->shape[0] == 128 && l->w_up->shape[0] == 128
           && elem(l->w_up, 5, 9) == elem(t, 133, 9)
           && elem(l->w_gate, 5, 9) == elem(t, 5, 9),
           "phi3: gate is the first half of gate_up_proj, up the second");
        ok(m->cfg.rope.type == INFER_ROPE_LONGROPE
           && m->cfg.rope.original_max == 256
           && m->cfg.rope.factor == 32.0
           && fabs(m->cfg.rope.attention_factor
                   - sqrt(1 + log(32.0) / log(256.0))) < 1e-12
           && m->cfg.rope.long_factor[7] == 31.0f
           && infer_model_window(&m->cfg, 1) == 300,
           "phi3: longrope over 8 pairs, original 256, factor 32, window "
           "300 on every layer");
        infer_model_close(m);
    }
    if ((m = gen_open(tmp, "tiny-gpt2")) != NULL) {
        l = &m->layers[0];
        t = infer_model_tensor(m, "transformer.h.0.attn.c_attn.weight");
        ok(m->cfg.learned_pos && m->pos_embed
           && m->pos_embed->shape[0] == 1024 && m->cfg.norm
           == INFER_NORM_LAYER && m->final_norm_b && l->attn_norm_b
           && l->mlp_norm_b && m->cfg.rope.type == INFER_ROPE_NONE
           && !m->cfg.gated_mlp && l->w_gate == NULL
           && m->cfg.act == INFER_ACT_GELU_TANH,
           "gpt2: learned positions, LayerNorms with biases, GELU MLP");
        ok(t && t->shape[0] == 64 && t->shape[1] == 192 && l->wq->transposed
           && l->wq->shape[0] == 64 && l->wq->shape[1] == 64
           && elem(l->wq, 3, 5) == elem(t, 5, 3)
           && elem(l->wk, 3, 5) == elem(t, 5, 67)
           && elem(l->wv, 63, 0) == elem(t, 0, 191),
           "gpt2: q, k, v are transposed column blocks of Conv1D c_attn");
        t = infer_model_tensor(m, "transformer.h.0.mlp.c_fc.weight");
        ok(t && l->w_up->shape[0] == 256 && l->w_up->shape[1] == 64
           && elem(l->w_up, 200, 7) == elem(t, 7, 200) && l->b_up
           && l->b_down && l->bo && l->bk
           && l->bk->shape[0] == 64,
           "gpt2: c_fc as [out, in], every projection with its bias");
        ok(infer_model_attn_scale(&m->cfg, 1) == 0.25f,
           "gpt2: scale 1/sqrt(16)");
        infer_model_close(m);
    }
    if ((m = gen_open(tmp, "tiny-llama3")) != NULL) {
        ok(m->cfg.rope.type == INFER_ROPE_LLAMA3
           && m->cfg.rope.factor == 32.0 && m->cfg.rope.original_max == 8192
           && m->cfg.rope.theta == 5e5 && m->lm_head == m->embed,
           "llama3: llama3 RoPE, factor 32, original 8192, tied");
        infer_model_close(m);
    }
    if ((m = gen_open(tmp, "tiny-llama-dynamic")) != NULL) {
        ok(m->cfg.rope.type == INFER_ROPE_DYNAMIC
           && m->cfg.max_position == 1024
           && m->cfg.rope.max_position == 512
           && infer_rope_depends_on_length(&m->cfg.rope),
           "dynamic NTK: context factor x 512, frequencies turn at 512");
        infer_model_close(m);
    }
}


static void
test_sharded(const char *tmp)
{
    char                   a[4200], b[4200];
    infer_model_t         *ma = NULL, *mb = NULL;
    const infer_tensor_t  *tb;
    int                    i, same = 1, files = 0;
    const char            *f0 = NULL;

    snprintf(a, sizeof(a), "%s/single", tmp);
    snprintf(b, sizeof(b), "%s/sharded", tmp);
    ok(gen(a, "--preset tiny-qwen2 --seed 9") == 0, "generate single");
    ok(gen(b, "--preset tiny-qwen2 --seed 9 --shards 2") == 0,
       "generate 2 shards");
    if (!ok(infer_model_open(a, &ma, err, sizeof(err)) == 0, "single opens")
        || !ok(infer_model_open(b, &mb, err, sizeof(err)) == 0,
               "sharded opens"))
    {
        diag("%s", err);
        infer_model_close(ma);
        return;
    }
    is_str(mb->cfg.model_type, "qwen2", "qwen2 model_type");
    ok(mb->cfg.qkv_bias && !mb->cfg.o_bias, "qwen2: q/k/v biases, no o "
       "bias");
    ok(mb->cfg.qkv_bias && mb->layers[1].bq && mb->layers[1].bv,
       "qwen2 biases bound");
    ok(mb->lm_head == mb->embed, "qwen2 preset is tied");
    is_int(mb->cfg.head_dim, 16, "head_dim 64 / 4");
    /* every tensor the architecture uses, byte for byte */
#define SAME(field)                                                          \
    tb = mb->field;                                                          \
    same &= tb->nbytes == ma->field->nbytes                                  \
            && memcmp(tb->data, ma->field->data, tb->nbytes) == 0;           \
    if (f0 == NULL || strcmp(f0, tb->file) != 0) {                           \
        files++;                                                             \
        f0 = tb->file;                                                       \
    }
    SAME(embed);
    for (i = 0; i < 2; i++) {
        SAME(layers[i].attn_norm); SAME(layers[i].wq); SAME(layers[i].wk);
        SAME(layers[i].wv); SAME(layers[i].bq); SAME(layers[i].bk);
        SAME(layers[i].bv); SAME(layers[i].wo); SAME(layers[i].mlp_norm);
        SAME(layers[i].w_gate); SAME(layers[i].w_up);
        SAME(layers[i].w_down);
    }
    SAME(final_norm);
#undef SAME
    ok(same, "sharded tensors byte-identical to the single file");
    ok(files == 2, "tensors come from both shards (%d files)", files);
    ok(strstr(mb->embed->file, "model-00001-of-00002.safetensors") != NULL,
       "embed in shard 1: %s", mb->embed->file);
    infer_model_close(ma);
    infer_model_close(mb);
}


static int
gen_status(const char *args)
{
    char cmd[8192];
    int  rc;

    snprintf(cmd, sizeof(cmd), "%s %s 2>/dev/null", gen_path, args);
    rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}


static void
test_gen_usage(const char *tmp)
{
    char args[4300];

    is_int(gen_status(""), 2, "generator without arguments: usage, exit 2");
    snprintf(args, sizeof(args), "%s/u", tmp);
    is_int(gen_status(args), 2, "generator without --preset: exit 2");
    snprintf(args, sizeof(args), "%s/u --preset nope", tmp);
    is_int(gen_status(args), 2, "unknown preset: exit 2");
    snprintf(args, sizeof(args), "%s/u --preset tiny-llama --dtype f64",
             tmp);
    is_int(gen_status(args), 2, "unknown dtype: exit 2");
    snprintf(args, sizeof(args), "%s/u --preset tiny-llama --layers 0",
             tmp);
    is_int(gen_status(args), 2, "--layers 0: exit 2");
}


/* A preset given another tokenizer takes that tokenizer's vocabulary. */
static void
test_gen_tokenizer(const char *tmp)
{
    char           dir[4200], args[4300];
    infer_model_t *m = NULL;

    snprintf(dir, sizeof(dir), "%s/l3", tmp);
    snprintf(args, sizeof(args), "--preset tiny-llama --layers 1 "
             "--dtype bf16 --tokenizer %s/tokenizers/llama3", shared_dir());
    if (!ok(gen(dir, args) == 0, "tiny-llama with the llama3 tokenizer")
        || !ok(infer_model_open(dir, &m, err, sizeof(err)) == 0,
               "and it opens"))
    {
        diag("%s", err);
        return;
    }
    is_int(m->cfg.vocab_size, 128256, "vocab_size = llama3's 128256");
    is_int(m->embed->shape[0], 128256, "embedding rows 128256");
    is_int(m->cfg.bos_token_id, 128000, "bos <|begin_of_text|>");
    infer_model_close(m);
}


/* The same seed in f32 and bf16/f16: the narrow file holds the rounded
 * f32 values, and block reads convert them exactly. */
static void
test_dtypes(const char *tmp)
{
    char            a[4200], b[4200], c[4200];
    infer_model_t  *m32 = NULL, *mbf = NULL, *m16 = NULL;
    float           f32[5 * 7], fbf[5 * 7], f16f[5 * 7];
    uint16_t        h[5 * 7], h32[5 * 7];
    int             i, okbf = 1, ok16 = 1, okh = 1;

    snprintf(a, sizeof(a), "%s/f32", tmp);
    snprintf(b, sizeof(b), "%s/bf16", tmp);
    snprintf(c, sizeof(c), "%s/f16", tmp);
    if (gen(a, "--preset tiny-mistral --seed 3") != 0
        || gen(b, "--preset tiny-mistral --seed 3 --dtype bf16") != 0
        || gen(c, "--preset tiny-mistral --seed 3 --dtype f16") != 0
        || infer_model_open(a, &m32, err, sizeof(err)) != 0
        || infer_model_open(b, &mbf, err, sizeof(err)) != 0
        || infer_model_open(c, &m16, err, sizeof(err)) != 0)
    {
        ok(0, "generate and open f32/bf16/f16 tiny-mistral: %s", err);
        infer_model_close(m32);
        infer_model_close(mbf);
        return;
    }
    is_int(m32->cfg.head_dim, 16, "explicit head_dim 16 (8 heads x 16 > "
           "hidden 64)");
    is_int(m32->layers[0].wq->shape[0], 128, "q_proj rows 128");
    is_int(mbf->embed->dtype, INFER_DT_BF16, "BF16 file");
    is_int(m16->embed->dtype, INFER_DT_F16, "F16 file");
    /* rows 3..7 x cols 20..26 of layer 1's q_proj */
    infer_tensor_read_f32(m32->layers[1].wq, 3, 5, 20, 7, f32);
    infer_tensor_read_f32(mbf->layers[1].wq, 3, 5, 20, 7, fbf);
    infer_tensor_read_f32(m16->layers[1].wq, 3, 5, 20, 7, f16f);
    infer_tensor_read_f16(m16->layers[1].wq, 3, 5, 20, 7, h);
    infer_tensor_read_f16(m32->layers[1].wq, 3, 5, 20, 7, h32);
    for (i = 0; i < 35; i++) {
        okbf &= fbf[i] == infer_bf16_to_float(infer_float_to_bf16(f32[i]));
        ok16 &= f16f[i] == infer_half_to_float(infer_float_to_half(f32[i]));
        okh &= h[i] == h32[i] && h[i] == infer_float_to_half(f32[i]);
    }
    ok(f32[0] != 0 && f32[0] != f32[1], "block holds distinct values");
    ok(okbf, "bf16 block = f32 rounded to bf16");
    ok(ok16, "f16 block = f32 rounded to half");
    ok(okh, "read_f16 from F16 and from F32 agree");
    infer_model_close(m32);
    infer_model_close(mbf);
    infer_model_close(m16);
}


/* ---- malformed model directories -------------------------------------- */

/* A small valid llama: vocab 16, hidden 8, inter 12, 1 layer, 2 heads,
 * 1 kv head (head_dim 4). */
static json_t *
tiny_config(void)
{
    return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f,"
                     " s:s, s:b, s:i, s:i}",
                     "model_type", "llama", "vocab_size", 16,
                     "hidden_size", 8, "intermediate_size", 12,
                     "num_hidden_layers", 1, "num_attention_heads", 2,
                     "num_key_value_heads", 1,
                     "max_position_embeddings", 64, "rms_norm_eps", 1e-5,
                     "rope_theta", 10000.0, "hidden_act", "silu",
                     "tie_word_embeddings", 0, "bos_token_id", 1,
                     "eos_token_id", 2);
}


static void
hdr_add(json_t *h, const char *name, int r, int c, long *off)
{
    long n = (long) r * (c ? c : 1) * 4;

    json_object_set_new(h, name, c
        ? json_pack("{s:s, s:[i,i], s:[I,I]}", "dtype", "F32", "shape", r, c,
                    "data_offsets", (json_int_t) *off,
                    (json_int_t) (*off + n))
        : json_pack("{s:s, s:[i], s:[I,I]}", "dtype", "F32", "shape", r,
                    "data_offsets", (json_int_t) *off,
                    (json_int_t) (*off + n)));
    *off += n;
}


/* Header of the tiny model (biases if qwen2); *len gets the data size. */
static json_t *
tiny_header(int bias, int lm_head, long *len)
{
    json_t *h = json_object();

    *len = 0;
    hdr_add(h, "model.embed_tokens.weight", 16, 8, len);
    hdr_add(h, "model.layers.0.input_layernorm.weight", 8, 0, len);
    hdr_add(h, "model.layers.0.self_attn.q_proj.weight", 8, 8, len);
    hdr_add(h, "model.layers.0.self_attn.k_proj.weight", 4, 8, len);
    hdr_add(h, "model.layers.0.self_attn.v_proj.weight", 4, 8, len);
    if (bias) {
        hdr_add(h, "model.layers.0.self_attn.q_proj.bias", 8, 0, len);
        hdr_add(h, "model.layers.0.self_attn.k_proj.bias", 4, 0, len);
        hdr_add(h, "model.layers.0.self_attn.v_proj.bias", 4, 0, len);
    }
    hdr_add(h, "model.layers.0.self_attn.o_proj.weight", 8, 8, len);
    hdr_add(h, "model.layers.0.post_attention_layernorm.weight", 8, 0, len);
    hdr_add(h, "model.layers.0.mlp.gate_proj.weight", 12, 8, len);
    hdr_add(h, "model.layers.0.mlp.up_proj.weight", 12, 8, len);
    hdr_add(h, "model.layers.0.mlp.down_proj.weight", 8, 12, len);
    hdr_add(h, "model.norm.weight", 8, 0, len);
    if (lm_head) {
        hdr_add(h, "lm_head.weight", 16, 8, len);
    }
    return h;
}


static void
write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char  path[4200];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        diag("cannot write %s", path);
        exit(1);
    }
}


static void
write_str(const char *dir, const char *name, const char *s)
{
    write_file(dir, name, s, strlen(s));
}


static void
write_json(const char *dir, const char *name, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);

    write_file(dir, name, s, strlen(s));
    free(s);
}


/* hlen < 0: the true header length; data_len bytes of non-zero floats. */
static void
write_st_raw(const char *dir, const char *name, const char *hdr,
    long long hlen, long data_len)
{
    size_t         n = strlen(hdr), i;
    unsigned char *buf = malloc(8 + n + data_len + 1);
    float          v;

    hlen = hlen < 0 ? (long long) n : hlen;
    for (i = 0; i < 8; i++) {
        buf[i] = (unsigned char) ((unsigned long long) hlen >> (8 * i));
    }
    memcpy(buf + 8, hdr, n);
    for (i = 0; i + 4 <= (size_t) data_len; i += 4) {
        v = 0.5f + (float) (i % 28) * 0.01f;
        memcpy(buf + 8 + n + i, &v, 4);
    }
    write_file(dir, name, buf, 8 + n + data_len);
    free(buf);
}


static void
write_st(const char *dir, const char *name, json_t *hdr, long data_len)
{
    char *s = json_dumps(hdr, JSON_COMPACT);

    write_st_raw(dir, name, s, -1, data_len);
    free(s);
}


/* Opens dir; the test passes if it fails and the message holds every
 * string in want (NULL-terminated). */
static void
expect_fail(const char *dir, const char *label, ...)
{
    infer_model_t *m = NULL;
    va_list        ap;
    const char    *w;
    int            rc, all = 1;

    err[0] = '\0';
    rc = infer_model_open(dir, &m, err, sizeof(err));
    va_start(ap, label);
    while ((w = va_arg(ap, const char *)) != NULL) {
        all &= strstr(err, w) != NULL;
    }
    va_end(ap);
    if (!ok(rc != 0 && m == NULL && all, "%s", label)) {
        diag("rc %d, message: %s", rc, err);
    } else {
        diag("  %s", err);
    }
    infer_model_close(m);
}


/* A fresh directory with the tiny model, config modified by cfg_edit. */
static char *
case_dir(const char *tmp, json_t *cfg, json_t *hdr, long len)
{
    static char dir[4200];
    static int  n;

    snprintf(dir, sizeof(dir), "%s/case%d", tmp, n++);
    mkdir(dir, 0755);
    write_json(dir, "config.json", cfg);
    write_st(dir, "model.safetensors", hdr, len);
    return dir;
}


/* One config change on an otherwise valid tiny model. */
static void
config_case(const char *tmp, const char *label, const char *key,
    json_t *val, const char *w1, const char *w2)
{
    json_t *cfg = tiny_config(), *hdr;
    long    len;
    char   *dir;

    hdr = tiny_header(0, 1, &len);
    if (val) {
        json_object_set_new(cfg, key, val);
    } else {
        json_object_del(cfg, key);
    }
    dir = case_dir(tmp, cfg, hdr, len);
    expect_fail(dir, label, "config.json", w1, w2, NULL);
    json_decref(cfg);
    json_decref(hdr);
}


/* One config change on the tiny model that must load; *m gets it (NULL
 * when it does not). */
static void
config_loads(const char *tmp, const char *label, const char *key,
    json_t *val, infer_model_t **m)
{
    json_t *cfg = tiny_config(), *hdr;
    long    len;

    hdr = tiny_header(0, 1, &len);
    json_object_set_new(cfg, key, val);
    *m = NULL;
    if (!ok(infer_model_open(case_dir(tmp, cfg, hdr, len), m, err,
                             sizeof(err)) == 0, "%s loads", label))
    {
        diag("%s", err);
        *m = NULL;
    }
    json_decref(cfg);
    json_decref(hdr);
}


/* One change to a tensor's header entry. */
static void
tensor_case(const char *tmp, const char *label, const char *tensor,
    const char *field, json_t *val, long len_delta, const char *w)
{
    json_t *cfg = tiny_config(), *hdr;
    long    len;
    char   *dir;

    hdr = tiny_header(0, 1, &len);
    if (field) {
        json_object_set_new(json_object_get(hdr, tensor), field, val);
    } else if (val) {
        json_object_set_new(hdr, tensor, val);
    } else {
        json_object_del(hdr, tensor);
    }
    dir = case_dir(tmp, cfg, hdr, len + len_delta);
    expect_fail(dir, label, "model.safetensors", tensor, w, NULL);
    json_decref(cfg);
    json_decref(hdr);
}


static void
test_bad_config(const char *tmp)
{
    char    dir[4200];
    json_t *cfg, *hdr;
    long    len;
    infer_model_t *m = NULL;

    snprintf(dir, sizeof(dir), "%s/empty", tmp);
    mkdir(dir, 0755);
    expect_fail(dir, "missing config.json", "config.json", NULL);
    write_str(dir, "config.json", "{\"model_type\": \"llama\",");
    expect_fail(dir, "malformed config.json", "config.json", NULL);

    /* the valid baseline really loads, so the cases below test one thing */
    cfg = tiny_config();
    hdr = tiny_header(0, 1, &len);
    if (!ok(infer_model_open(case_dir(tmp, cfg, hdr, len), &m, err,
                             sizeof(err)) == 0, "baseline tiny model opens"))
    {
        diag("%s", err);
    }
    infer_model_close(m);
    json_decref(cfg);
    json_decref(hdr);

    config_case(tmp, "unknown model_type", "model_type",
                json_string("gpt_neox"), "model_type", "gpt_neox");
    config_case(tmp, "missing model_type", "model_type", NULL,
                "model_type", "missing");
    config_case(tmp, "rope_scaling of an unknown type", "rope_scaling",
                json_pack("{s:s, s:f}", "rope_type", "proportional",
                          "factor", 2.0), "proportional", "not supported");
    config_case(tmp, "rope_parameters llama3 without factor",
                "rope_parameters",
                json_pack("{s:s, s:f}", "rope_type", "llama3", "rope_theta",
                          5e5), "llama3", "'factor'");
    config_case(tmp, "su is longrope for phi3 only", "rope_scaling",
                json_pack("{s:s}", "type", "su"), "rope_type 'su'",
                "not supported");
    config_case(tmp, "partial_rotary_factor for llama",
                "partial_rotary_factor", json_real(0.5),
                "partial_rotary_factor", "llama");
    config_case(tmp, "hidden_act relu", "hidden_act", json_string("relu"),
                "hidden_act relu", "not supported");
    config_case(tmp, "linear rope with a negative factor", "rope_scaling",
                json_pack("{s:s, s:f}", "type", "linear", "factor", -1.0),
                "factor", "positive");
    config_case(tmp, "missing hidden_size", "hidden_size", NULL,
                "hidden_size", "missing");
    config_case(tmp, "negative vocab_size", "vocab_size", json_integer(-3),
                "vocab_size", "integer");
    config_case(tmp, "hidden_size a string", "hidden_size",
                json_string("8"), "hidden_size", "integer");
    config_case(tmp, "kv heads do not divide heads", "num_key_value_heads",
                json_integer(3), "num_key_value_heads", "[1, 2]");
    config_case(tmp, "odd head_dim", "head_dim", json_integer(5),
                "head_dim", "even");
    config_case(tmp, "eos out of range", "eos_token_id", json_integer(99),
                "eos_token_id", "vocab_size");
    config_case(tmp, "rms_norm_eps not a number", "rms_norm_eps",
                json_string("x"), "rms_norm_eps", "number");
    config_case(tmp, "tie_word_embeddings not a bool", "tie_word_embeddings",
                json_integer(1), "tie_word_embeddings", "true or false");

    /* what transformers accepts loads: rope_type default, linear by 1,
     * swish */
    config_loads(tmp, "rope_scaling {rope_type: default}", "rope_scaling",
                 json_pack("{s:s}", "rope_type", "default"), &m);
    ok(m != NULL && m->cfg.rope.type == INFER_ROPE_DEFAULT,
       "rope_type default is plain RoPE");
    infer_model_close(m);
    config_loads(tmp, "linear rope_scaling with factor 1.0", "rope_scaling",
                 json_pack("{s:s, s:f}", "type", "linear", "factor", 1.0),
                 &m);
    ok(m != NULL && m->cfg.rope.type == INFER_ROPE_LINEAR
       && m->cfg.rope.factor == 1.0, "linear, factor 1");
    infer_model_close(m);
    config_loads(tmp, "hidden_act swish", "hidden_act",
                 json_string("swish"), &m);
    ok(m != NULL && m->cfg.act == INFER_ACT_SILU, "swish is silu");
    infer_model_close(m);
    config_loads(tmp, "hidden_act gelu", "hidden_act", json_string("gelu"),
                 &m);
    ok(m != NULL && m->cfg.act == INFER_ACT_GELU, "gelu is erf gelu");
    infer_model_close(m);

    /* llama's attention_bias and mlp_bias need their tensors */
    cfg = tiny_config();
    json_object_set_new(cfg, "attention_bias", json_true());
    hdr = tiny_header(1, 1, &len);
    expect_fail(case_dir(tmp, cfg, hdr, len), "llama attention_bias wants "
                "an o_proj bias too", "model.safetensors",
                "model.layers.0.self_attn.o_proj.bias", "missing", NULL);
    json_object_set_new(cfg, "attention_bias", json_false());
    json_object_set_new(cfg, "mlp_bias", json_true());
    expect_fail(case_dir(tmp, cfg, hdr, len), "llama mlp_bias wants MLP "
                "biases", "model.safetensors",
                "model.layers.0.mlp.gate_proj.bias", "missing", NULL);
    json_decref(cfg);
    json_decref(hdr);

    /* mistral: every layer windowed; absent means MistralConfig's 4096;
     * null none */
    cfg = tiny_config();
    json_object_set_new(cfg, "model_type", json_string("mistral"));
    json_object_set_new(cfg, "sliding_window", json_integer(16));
    hdr = tiny_header(0, 1, &len);
    ok(infer_model_open(case_dir(tmp, cfg, hdr, len), &m, err,
                        sizeof(err)) == 0
       && m->cfg.sliding_window == 16 && m->cfg.layer_sliding[0]
       && infer_model_window(&m->cfg, 0) == 16,
       "mistral sliding_window 16: layer 0 attends to 16 keys");
    infer_model_close(m);
    json_object_del(cfg, "sliding_window");
    json_object_del(cfg, "max_position_embeddings");
    ok(infer_model_open(case_dir(tmp, cfg, hdr, len), &m, err,
                        sizeof(err)) == 0 && m->cfg.sliding_window == 4096
       && m->cfg.max_position == 131072,
       "mistral default window 4096, default context 131072");
    infer_model_close(m);
    json_object_set_new(cfg, "sliding_window", json_null());
    ok(infer_model_open(case_dir(tmp, cfg, hdr, len), &m, err,
                        sizeof(err)) == 0
       && strcmp(m->cfg.model_type, "mistral") == 0
       && m->cfg.sliding_window == 0
       && infer_model_window(&m->cfg, 0) == 0,
       "mistral with sliding_window null: no window");
    infer_model_close(m);
    json_object_set_new(cfg, "sliding_window", json_string("4096"));
    expect_fail(case_dir(tmp, cfg, hdr, len), "sliding_window a string",
                "config.json", "sliding_window", "integer", NULL);
    json_decref(cfg);
    json_decref(hdr);

    /* qwen2: use_sliding_window from max_window_layers on (default 28, so
     * none of one layer); layer_types wins */
    cfg = tiny_config();
    json_object_set_new(cfg, "model_type", json_string("qwen2"));
    json_object_set_new(cfg, "use_sliding_window", json_true());
    json_object_set_new(cfg, "sliding_window", json_integer(32));
    hdr = tiny_header(1, 1, &len);
    ok(infer_model_open(case_dir(tmp, cfg, hdr, len), &m, err,
                        sizeof(err)) == 0 && m->cfg.sliding_window == 0,
       "qwen2 use_sliding_window, 1 layer < max_window_layers 28: none");
    infer_model_close(m);
    json_object_set_new(cfg, "max_window_layers", json_integer(0));
    ok(infer_model_open(case_dir(tmp, cfg, hdr, len), &m, err,
                        sizeof(err)) == 0
       && infer_model_window(&m->cfg, 0) == 32,
       "qwen2 max_window_layers 0: layer 0 windowed");
    infer_model_close(m);
    json_object_set_new(cfg, "layer_types", json_pack("[s]", "chunked"));
    expect_fail(case_dir(tmp, cfg, hdr, len), "layer_types chunked",
                "config.json", "layer_types[0] 'chunked'", "not supported",
                NULL);
    json_object_set_new(cfg, "layer_types", json_pack("[s]",
                                                      "sliding_attention"));
    json_object_set_new(cfg, "use_sliding_window", json_false());
    expect_fail(case_dir(tmp, cfg, hdr, len), "sliding layer_types without "
                "a window", "config.json", "sliding_window is not set",
                NULL);
    json_object_del(cfg, "layer_types");
    json_object_del(cfg, "max_window_layers");
    json_object_del(cfg, "sliding_window");
    json_decref(hdr);
    hdr = tiny_header(0, 1, &len);
    expect_fail(case_dir(tmp, cfg, hdr, len), "qwen2 without biases",
                "model.safetensors", "model.layers.0.self_attn.q_proj.bias",
                "missing", NULL);
    json_decref(cfg);
    json_decref(hdr);

    /* lm_head absent: fine when tied, an error naming it when not */
    cfg = tiny_config();
    hdr = tiny_header(0, 0, &len);
    expect_fail(case_dir(tmp, cfg, hdr, len), "untied without lm_head",
                "model.safetensors", "lm_head.weight", NULL);
    json_object_set_new(cfg, "tie_word_embeddings", json_true());
    ok(infer_model_open(case_dir(tmp, cfg, hdr, len), &m, err,
                        sizeof(err)) == 0 && m->lm_head == m->embed,
       "tied without lm_head: lm_head = embed");
    infer_model_close(m);

    /* generation_config.json wins, and may give a list */
    json_object_set_new(cfg, "eos_token_id", json_integer(2));
    snprintf(dir, sizeof(dir), "%s", case_dir(tmp, cfg, hdr, len));
    write_str(dir, "generation_config.json",
              "{\"bos_token_id\": 3, \"eos_token_id\": [5, 7]}");
    m = NULL;
    ok(infer_model_open(dir, &m, err, sizeof(err)) == 0
       && m->cfg.n_eos == 2 && m->cfg.eos_token_ids[0] == 5
       && m->cfg.eos_token_ids[1] == 7 && m->cfg.bos_token_id == 3,
       "generation_config eos list and bos win over config.json");
    infer_model_close(m);
    write_str(dir, "generation_config.json", "{\"eos_token_id\": \"x\"}");
    expect_fail(dir, "generation_config eos a string",
                "generation_config.json", "eos_token_id", NULL);
    write_str(dir, "generation_config.json", "{");
    expect_fail(dir, "malformed generation_config.json",
                "generation_config.json", NULL);
    json_decref(cfg);
    json_decref(hdr);
}


static void
test_bad_safetensors(const char *tmp)
{
    json_t     *cfg = tiny_config(), *hdr;
    char       *dir, *s, path[4300];
    long        len;
    const char *q = "model.layers.0.self_attn.q_proj.weight";
    const char *k = "model.layers.0.self_attn.k_proj.weight";

    hdr = tiny_header(0, 1, &len);
    s = json_dumps(hdr, JSON_COMPACT);

    dir = case_dir(tmp, cfg, hdr, len);
    write_st_raw(dir, "model.safetensors", s, 1000000, len);
    expect_fail(dir, "header length past the end", "model.safetensors",
                "header length 1000000", "exceeds", NULL);
    write_st_raw(dir, "model.safetensors", s, 1LL << 40, len);
    expect_fail(dir, "absurd header length", "model.safetensors", "absurd",
                NULL);
    write_str(dir, "model.safetensors", "\x10\0\0");
    expect_fail(dir, "3-byte file", "model.safetensors", "truncated", NULL);
    write_st_raw(dir, "model.safetensors", "{\"a\": [1, 2", -1, 0);
    expect_fail(dir, "malformed header JSON", "model.safetensors",
                "malformed header JSON", NULL);
    write_st_raw(dir, "model.safetensors", "[1, 2]", -1, 0);
    expect_fail(dir, "header is an array", "model.safetensors",
                "not a JSON object", NULL);
    write_st_raw(dir, "model.safetensors",
                 "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], "
                 "\"data_offsets\": [0, 4]}, \"x\": {}}", -1, 4);
    expect_fail(dir, "duplicate key in header", "model.safetensors",
                "malformed header JSON", "duplicate", NULL);
    /* the whole file, cut 100 bytes short: the last tensor runs out */
    write_st(dir, "model.safetensors", hdr, len - 100);
    expect_fail(dir, "truncated data", "model.safetensors",
                "lm_head.weight", "past the end", NULL);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    unlink(path);
    expect_fail(dir, "no weights file", "model.safetensors", "cannot open",
                NULL);
    mkdir(path, 0755);
    expect_fail(dir, "weights file is a directory", "model.safetensors",
                "not a regular file", NULL);
    rmdir(path);
    free(s);
    json_decref(hdr);

    tensor_case(tmp, "unsupported dtype I64", q, "dtype",
                json_string("I64"), 0, "I64");
    tensor_case(tmp, "dtype F64", q, "dtype", json_string("F64"), 0, "F64");
    tensor_case(tmp, "data_offsets past the end", q, "data_offsets",
                json_pack("[i,i]", 0, 1 << 20), 0, "past the end");
    tensor_case(tmp, "begin > end", q, "data_offsets",
                json_pack("[i,i]", 1024, 768), 0, "begin > end");
    tensor_case(tmp, "negative offset", q, "data_offsets",
                json_pack("[i,i]", -256, 0), 0, "negative");
    tensor_case(tmp, "size != shape x dtype", q, "data_offsets",
                json_pack("[i,i]", 512, 520), 0, "need 256");
    tensor_case(tmp, "overlapping tensors", k, "data_offsets",
                json_pack("[i,i]", 512, 640), 0, "overlap");
    tensor_case(tmp, "negative dimension", q, "shape",
                json_pack("[i,i]", -8, 8), 0, "shape");
    tensor_case(tmp, "5-D shape", q, "shape",
                json_pack("[i,i,i,i,i]", 1, 1, 1, 8, 8), 0, "shape");
    tensor_case(tmp, "shape overflowing 64 bits", q, "shape",
                json_pack("[I,I]", (json_int_t) 1 << 40,
                          (json_int_t) 1 << 40), 0, "shape");
    tensor_case(tmp, "data_offsets not a pair", q, "data_offsets",
                json_pack("[i]", 0), 0, "data_offsets");
    tensor_case(tmp, "entry not an object", q, NULL, json_integer(3), 0,
                "not an object");
    tensor_case(tmp, "missing q_proj", q, NULL, NULL, 0, "missing");
    tensor_case(tmp, "wrong k_proj shape", k, "shape",
                json_pack("[i,i]", 8, 4), 0, "implies [4, 8]");
    tensor_case(tmp, "norm as a matrix",
                "model.layers.0.input_layernorm.weight", "shape",
                json_pack("[i,i]", 2, 4), 0, "implies [8]");
    json_decref(cfg);
}


/* Two shards of the tiny model: the index names both. */
static char *
shard_case(const char *tmp, json_t *wm_edit_key, const char *wm_edit_val,
    int dup)
{
    json_t     *cfg = tiny_config(), *all, *h1 = json_object(), *h2, *wm;
    json_t     *v, *idx;
    const char *key;
    long        len, off = 0;
    char       *dir;
    void       *it;

    all = tiny_header(0, 1, &len);
    h2 = json_object();
    wm = json_object();
    /* embed goes to shard 1, everything else to shard 2 (offsets rebased
     * by rebuilding them) */
    json_object_foreach_safe(all, it, key, v) {
        json_int_t r = json_integer_value(json_array_get(
                           json_object_get(v, "shape"), 0));
        json_int_t c = json_array_size(json_object_get(v, "shape")) == 2
                       ? json_integer_value(json_array_get(
                             json_object_get(v, "shape"), 1)) : 0;
        if (strcmp(key, "model.embed_tokens.weight") == 0) {
            long o1 = 0;
            hdr_add(h1, key, (int) r, (int) c, &o1);
            json_object_set_new(wm, key, json_string(
                "model-00001-of-00002.safetensors"));
        } else {
            hdr_add(h2, key, (int) r, (int) c, &off);
            json_object_set_new(wm, key, json_string(
                "model-00002-of-00002.safetensors"));
        }
    }
    if (dup) {
        long o1 = 512;
        hdr_add(h1, "model.norm.weight", 8, 0, &o1);
    }
    if (wm_edit_key) {
        json_object_set_new(wm, json_string_value(wm_edit_key),
                            json_string(wm_edit_val));
    }
    idx = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0,
                    "weight_map", wm);
    dir = case_dir(tmp, cfg, all, len);
    write_st(dir, "model-00001-of-00002.safetensors", h1, 512 + 32);
    write_st(dir, "model-00002-of-00002.safetensors", h2, off);
    write_json(dir, "model.safetensors.index.json", idx);
    json_decref(cfg);
    json_decref(all);
    json_decref(h1);
    json_decref(h2);
    json_decref(idx);
    return dir;
}


static void
test_bad_index(const char *tmp)
{
    infer_model_t *m = NULL;
    json_t        *k;
    char          *dir, path[4300];

    dir = shard_case(tmp, NULL, NULL, 0);
    if (!ok(infer_model_open(dir, &m, err, sizeof(err)) == 0
            && strstr(m->embed->file, "model-00001-of-00002")
            && strstr(m->final_norm->file, "model-00002-of-00002"),
            "hand-made 2-shard model opens, tensors from both files"))
    {
        diag("%s", err);
    }
    infer_model_close(m);

    k = json_string("model.norm.weight");
    dir = shard_case(tmp, k, "model-00003-of-00002.safetensors", 0);
    expect_fail(dir, "index names a missing file",
                "model.safetensors.index.json", "model.norm.weight",
                "model-00003-of-00002.safetensors", "cannot be opened", NULL);
    dir = shard_case(tmp, k, "model-00001-of-00002.safetensors", 0);
    expect_fail(dir, "index puts a tensor in the wrong shard",
                "model.safetensors.index.json", "model.norm.weight",
                "does not hold it", NULL);
    dir = shard_case(tmp, k, "../../etc/passwd", 0);
    expect_fail(dir, "index escapes the directory",
                "model.safetensors.index.json", "model.norm.weight",
                "does not name a file", NULL);
    /* A path cut at the loader's buffer could name another file. */
    memset(path, 'x', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    dir = shard_case(tmp, k, path, 0);
    expect_fail(dir, "index names a path too long, not a shorter one",
                "model.safetensors.index.json", "model.norm.weight",
                "whose path is too long", NULL);
    json_decref(k);
    k = json_string("model.extra.weight");
    dir = shard_case(tmp, k, "model-00002-of-00002.safetensors", 0);
    expect_fail(dir, "index lists a tensor no shard holds",
                "model.safetensors.index.json", "model.extra.weight", NULL);
    json_decref(k);
    dir = shard_case(tmp, NULL, NULL, 1);
    expect_fail(dir, "tensor defined in two shards", "model.norm.weight",
                "also defined", NULL);
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    write_str(dir, "model.safetensors.index.json",
              "{\"weight_map\": 3}");
    expect_fail(dir, "weight_map not an object",
                "model.safetensors.index.json", "weight_map", NULL);
    write_str(dir, "model.safetensors.index.json", "{\"weight");
    expect_fail(dir, "malformed index", "model.safetensors.index.json",
                NULL);
}


int
main(int argc, char **argv)
{
    char        tmp[] = "/tmp/infer-test-model-XXXXXX", self[4096];
    struct stat st;
    const char *g = getenv("INFER_GEN_MODEL");

    (void) argc;
    snprintf(self, sizeof(self), "%s", argv[0]);
    /* build/t/test_model -> build/infer-gen-model (any BUILD dir) */
    snprintf(gen_path, sizeof(gen_path), "%s/../infer-gen-model",
             dirname(self));
    if (g) {
        snprintf(gen_path, sizeof(gen_path), "%s", g);
    }
    if (mkdtemp(tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_half();
    test_bf16();
    test_rows();
    test_stories();
    test_bad_config(tmp);
    test_bad_safetensors(tmp);
    test_bad_index(tmp);
    if (ok(stat(gen_path, &st) == 0, "generator %s exists (make tools)",
           gen_path))
    {
        test_gen_usage(tmp);
        test_gen_tokenizer(tmp);
        test_sharded(tmp);
        test_families(tmp);
        test_dtypes(tmp);
    }
    rmrf(tmp);
    return done_testing();
}
