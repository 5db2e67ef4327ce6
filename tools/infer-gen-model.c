/*
 * infer-gen-model: writes a random-weight model in Hugging Face layout
 * (config.json, generation_config.json, safetensors, tokenizer files) with
 * the shapes of a real model, so loaders, backends and benchmarks can run
 * without downloading weights.
 *
 * The weights come from a seeded integer PRNG and reach float through exact
 * integer-to-float conversion and one IEEE multiplication, so the same seed
 * writes the same bytes on every machine: tests regenerate a model and
 * compare against logits that Hugging Face computed on it.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "model.h"

#define GEN_CHUNK  65536

/* How a family names and shapes its tensors (checked by transformers
 * loading what we write: tools/ref refuses missing or unused tensors). */
typedef enum {
    GEN_LLAMA = 0,      /* llama, mistral, qwen2: q/k/v/o, gate/up/down */
    GEN_QWEN3,          /* + self_attn.q_norm / k_norm */
    GEN_GEMMA2,         /* + post-attention, pre/post-feedforward norms */
    GEN_PHI3,           /* fused qkv_proj and gate_up_proj */
    GEN_GPT2            /* Conv1D c_attn / c_proj / c_fc, LayerNorms,
                           learned positions, biases everywhere */
} gen_layout_t;

typedef struct {
    const char *name;
    const char *model_type;
    const char *arch;
    gen_layout_t layout;
    int         hidden, inter, layers, heads, kv_heads;
    int         head_dim;       /* 0: not written, hidden / heads */
    int         vocab;          /* with its own tokenizer; 0: that one's
                                 * size (--tokenizer: always its size) */
    int         max_pos;
    double      rope_theta, eps;
    int         tied, qkv_bias;
    const char *tokenizer;      /* folder under shared/tokenizers */
    /* config.json fields of the published model beyond the common ones,
     * as JSON (they override those) */
    const char *extra;
} gen_preset_t;

/* Llama 3.1 / 3.2's RoPE */
#define GEN_LLAMA3_ROPE                                                     \
    "\"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0,"     \
    " \"low_freq_factor\": 1.0, \"original_max_position_embeddings\":"     \
    " 8192, \"rope_type\": \"llama3\"}"
#define GEN_GEMMA2_FLAGS                                                    \
    "\"hidden_act\": \"gelu_pytorch_tanh\", "                              \
    "\"hidden_activation\": \"gelu_pytorch_tanh\", "                       \
    "\"attention_bias\": false, \"cache_implementation\": \"hybrid\""
#define GEN_QWEN3_FLAGS                                                     \
    "\"attention_bias\": false, \"use_sliding_window\": false, "           \
    "\"sliding_window\": null, \"max_window_layers\": 28"
/* Phi-3 longrope lists: the shape of the published ones (rising from 1),
 * values made up, one per rotated pair */
#define GEN_PHI3_ROPE                                                       \
    "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1.0," \
    " 1.02, 1.05, 1.1, 1.2, 1.35, 1.6, 2.0], \"long_factor\": [1.0, 1.3,"   \
    " 2.1, 3.7, 6.5, 11.0, 19.0, 31.0]}"

static const gen_preset_t gen_presets[] = {
    { "tinyllama-1.1b", "llama", "LlamaForCausalLM", GEN_LLAMA,
      2048, 5632, 22, 32, 4, 0, 32000, 2048, 1e4, 1e-5, 0, 0, "llama2",
      NULL },
    { "llama2-7b", "llama", "LlamaForCausalLM", GEN_LLAMA,
      4096, 11008, 32, 32, 32, 0, 32000, 4096, 1e4, 1e-5, 0, 0, "llama2",
      NULL },
    { "mistral-7b", "mistral", "MistralForCausalLM", GEN_LLAMA,
      4096, 14336, 32, 32, 8, 128, 32000, 32768, 1e6, 1e-5, 0, 0,
      "llama2", NULL },
    { "qwen2-0.5b", "qwen2", "Qwen2ForCausalLM", GEN_LLAMA,
      896, 4864, 24, 14, 2, 0, 151936, 32768, 1e6, 1e-6, 1, 1, "llama3",
      NULL },
    /* the shapes of published models, new families */
    { "llama3.2-1b", "llama", "LlamaForCausalLM", GEN_LLAMA,
      2048, 8192, 16, 32, 8, 64, 128256, 131072, 5e5, 1e-5, 1, 0, "llama3",
      "{" GEN_LLAMA3_ROPE ", \"attention_bias\": false, "
      "\"mlp_bias\": false}" },
    { "llama3.1-8b", "llama", "LlamaForCausalLM", GEN_LLAMA,
      4096, 14336, 32, 32, 8, 128, 128256, 131072, 5e5, 1e-5, 0, 0,
      "llama3",
      "{\"rope_scaling\": {\"factor\": 8.0, \"high_freq_factor\": 4.0, "
      "\"low_freq_factor\": 1.0, \"original_max_position_embeddings\": "
      "8192, \"rope_type\": \"llama3\"}}" },
    { "qwen3-0.6b", "qwen3", "Qwen3ForCausalLM", GEN_QWEN3,
      1024, 3072, 28, 16, 8, 128, 151936, 40960, 1e6, 1e-6, 1, 0, "llama3",
      "{" GEN_QWEN3_FLAGS "}" },
    { "gemma2-2b", "gemma2", "Gemma2ForCausalLM", GEN_GEMMA2,
      2304, 9216, 26, 8, 4, 256, 256000, 8192, 1e4, 1e-6, 1, 0, "llama2",
      "{" GEN_GEMMA2_FLAGS ", \"query_pre_attn_scalar\": 256, "
      "\"sliding_window\": 4096, \"final_logit_softcapping\": 30.0, "
      "\"attn_logit_softcapping\": 50.0}" },
    { "mistral-7b-v0.1", "mistral", "MistralForCausalLM", GEN_LLAMA,
      4096, 14336, 32, 32, 8, 0, 32000, 32768, 1e4, 1e-5, 0, 0, "llama2",
      "{\"sliding_window\": 4096}" },
    { "phi3-mini-4k", "phi3", "Phi3ForCausalLM", GEN_PHI3,
      3072, 8192, 32, 32, 32, 0, 32064, 4096, 1e4, 1e-5, 0, 0, "llama2",
      "{\"original_max_position_embeddings\": 4096, "
      "\"sliding_window\": 2047, \"attention_bias\": false}" },
    { "gpt2", "gpt2", "GPT2LMHeadModel", GEN_GPT2,
      768, 3072, 12, 12, 12, 0, 50257, 1024, 0, 1e-5, 1, 1, "gpt2", NULL },
    /* small test models: widths and layers cut, every flag kept */
    { "tiny-llama", "llama", "LlamaForCausalLM", GEN_LLAMA,
      64, 172, 2, 8, 4, 0, 32000, 2048, 1e4, 1e-5, 0, 0, "llama2", NULL },
    /* head_dim 16 with 8 heads: q is wider than hidden, as HF allows */
    { "tiny-mistral", "mistral", "MistralForCausalLM", GEN_LLAMA,
      64, 128, 2, 8, 2, 16, 32000, 4096, 1e6, 1e-5, 0, 0, "llama2", NULL },
    { "tiny-qwen2", "qwen2", "Qwen2ForCausalLM", GEN_LLAMA,
      64, 160, 2, 4, 2, 0, 0, 4096, 1e6, 1e-6, 1, 1, "gpt2", NULL },
    { "tiny-llama3", "llama", "LlamaForCausalLM", GEN_LLAMA,
      64, 192, 2, 4, 2, 16, 0, 131072, 5e5, 1e-5, 1, 0, "llama3",
      "{" GEN_LLAMA3_ROPE ", \"attention_bias\": false, "
      "\"mlp_bias\": false}" },
    /* explicit head_dim 32 x 4 heads > hidden, as Qwen3-0.6B's 128 x 16 */
    { "tiny-qwen3", "qwen3", "Qwen3ForCausalLM", GEN_QWEN3,
      64, 160, 2, 4, 2, 32, 0, 40960, 1e6, 1e-6, 1, 0, "gpt2",
      "{" GEN_QWEN3_FLAGS "}" },
    /* 4 layers: local, global, local, global; the window cut to 128 so
     * long prompts pass it; query_pre_attn_scalar unlike head_dim (as
     * gemma-2-27b's) and soft-caps that bite at this scale */
    { "tiny-gemma2", "gemma2", "Gemma2ForCausalLM", GEN_GEMMA2,
      64, 128, 4, 4, 2, 32, 0, 8192, 1e4, 1e-6, 1, 0, "llama2",
      "{" GEN_GEMMA2_FLAGS ", \"query_pre_attn_scalar\": 24, "
      "\"sliding_window\": 128, \"final_logit_softcapping\": 3.0, "
      "\"attn_logit_softcapping\": 2.0}" },
    /* Mistral v0.1: every layer windowed, 4096 cut to 150 */
    { "tiny-mistral-v0.1", "mistral", "MistralForCausalLM", GEN_LLAMA,
      64, 128, 2, 4, 2, 0, 0, 32768, 1e4, 1e-5, 0, 0, "llama2",
      "{\"sliding_window\": 150}" },
    /* Phi-3 128k-style longrope (original 4096 cut to 256, the same
     * 32x extension) with Phi-3-mini-4k's kind of window (2047 -> 300),
     * grouped kv heads as Phi-3-medium */
    { "tiny-phi3", "phi3", "Phi3ForCausalLM", GEN_PHI3,
      64, 128, 2, 4, 2, 0, 32064, 8192, 1e4, 1e-5, 0, 0, "llama2",
      "{" GEN_PHI3_ROPE ", \"original_max_position_embeddings\": 256, "
      "\"sliding_window\": 300, \"attention_bias\": false}" },
    { "tiny-gpt2", "gpt2", "GPT2LMHeadModel", GEN_GPT2,
      64, 256, 2, 4, 4, 0, 0, 1024, 0, 1e-5, 1, 1, "gpt2", NULL },
    /* the other rope_types end to end, on tiny-llama's shape */
    { "tiny-llama-linear", "llama", "LlamaForCausalLM", GEN_LLAMA,
      64, 172, 2, 8, 4, 0, 32000, 8192, 1e4, 1e-5, 0, 0, "llama2",
      "{\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}}" },
    { "tiny-llama-dynamic", "llama", "LlamaForCausalLM", GEN_LLAMA,
      64, 172, 2, 8, 4, 0, 32000, 512, 1e4, 1e-5, 0, 0, "llama2",
      "{\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}" },
    { "tiny-qwen3-yarn", "qwen3", "Qwen3ForCausalLM", GEN_QWEN3,
      64, 160, 2, 4, 2, 32, 0, 1024, 1e6, 1e-6, 1, 0, "gpt2",
      "{" GEN_QWEN3_FLAGS ", \"rope_scaling\": {\"rope_type\": \"yarn\", "
      "\"factor\": 4.0, \"original_max_position_embeddings\": 256}}" },
};

#undef GEN_LLAMA3_ROPE
#undef GEN_GEMMA2_FLAGS
#undef GEN_QWEN3_FLAGS
#undef GEN_PHI3_ROPE

typedef enum { GEN_WEIGHT, GEN_NORM, GEN_BIAS } gen_kind_t;

typedef struct {
    char        name[96];
    int64_t     rows, cols;     /* cols 0: a vector of rows */
    gen_kind_t  kind;
    int64_t     fan_in;         /* 0: cols (Conv1D stores [in, out]) */
    int         shard;
    uint64_t    offset;         /* in its shard's data section */
} gen_tensor_t;

typedef struct {
    gen_tensor_t *t;
    int           n, cap;
} gen_list_t;


static void
usage(void)
{
    size_t i;

    fprintf(stderr, "usage: infer-gen-model OUT_DIR --preset NAME "
            "[--dtype f32|f16|bf16] [--seed N]\n"
            "                       [--tokenizer DIR] [--layers N] "
            "[--shards N]\npresets:");
    for (i = 0; i < sizeof(gen_presets) / sizeof(gen_presets[0]); i++) {
        fprintf(stderr, " %s", gen_presets[i].name);
    }
    fprintf(stderr, "\n");
    exit(2);
}


/* ---- deterministic numbers -------------------------------------------- */

static uint64_t
splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}


/* Each tensor has its own stream, so its bytes do not depend on sharding
 * or on the order tensors are written in. */
static uint64_t
gen_stream(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; *name; name++) {
        h = (h ^ (unsigned char) *name) * 0x100000001b3ULL;
    }
    return seed ^ h;
}


/* Sum of four 16-bit uniforms (Irwin-Hall), centred: integer, roughly
 * normal with standard deviation GEN_IH_STD, and no libm involved. */
#define GEN_IH_STD  37837.2270

static int32_t
gen_normalish(uint64_t *s)
{
    uint64_t r = splitmix64(s);

    return (int32_t) ((r & 0xffff) + (r >> 16 & 0xffff) + (r >> 32 & 0xffff)
                      + (r >> 48)) - 131070;
}


static float
gen_value(uint64_t *s, float scale, float base)
{
    return base + (float) gen_normalish(s) * scale;
}


/* ---- tensor list ------------------------------------------------------ */

static void
gen_add(gen_list_t *l, const char *name, int64_t rows, int64_t cols,
    gen_kind_t kind)
{
    gen_tensor_t *t;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->t = realloc(l->t, sizeof(*l->t) * l->cap);
        if (l->t == NULL) {
            fprintf(stderr, "infer-gen-model: out of memory\n");
            exit(1);
        }
    }
    t = &l->t[l->n++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->kind = kind;
}


/* GPT-2's Conv1D weight [in, out], and its bias */
static void
gen_conv1d(gen_list_t *l, const char *name, int64_t in, int64_t out)
{
    char n[96];

    snprintf(n, sizeof(n), "%s.weight", name);
    gen_add(l, n, in, out, GEN_WEIGHT);
    l->t[l->n - 1].fan_in = in;
    snprintf(n, sizeof(n), "%s.bias", name);
    gen_add(l, n, out, 0, GEN_BIAS);
}


static void
gen_tensors_gpt2(const gen_preset_t *p, int vocab, gen_list_t *l)
{
    int64_t h = p->hidden;
    char    n[96];
    int     i;

    gen_add(l, "transformer.wte.weight", vocab, h, GEN_WEIGHT);
    gen_add(l, "transformer.wpe.weight", p->max_pos, h, GEN_WEIGHT);
    for (i = 0; i < p->layers; i++) {
#define L(suffix) (snprintf(n, sizeof(n), "transformer.h.%d.%s", i, suffix), n)
        gen_add(l, L("ln_1.weight"), h, 0, GEN_NORM);
        gen_add(l, L("ln_1.bias"), h, 0, GEN_BIAS);
        gen_conv1d(l, L("attn.c_attn"), h, 3 * h);
        gen_conv1d(l, L("attn.c_proj"), h, h);
        gen_add(l, L("ln_2.weight"), h, 0, GEN_NORM);
        gen_add(l, L("ln_2.bias"), h, 0, GEN_BIAS);
        gen_conv1d(l, L("mlp.c_fc"), h, p->inter);
        gen_conv1d(l, L("mlp.c_proj"), p->inter, h);
#undef L
    }
    gen_add(l, "transformer.ln_f.weight", h, 0, GEN_NORM);
    gen_add(l, "transformer.ln_f.bias", h, 0, GEN_BIAS);
}


static void
gen_tensors(const gen_preset_t *p, int vocab, gen_list_t *l)
{
    int64_t h = p->hidden, in = p->inter;
    int64_t hd = p->head_dim ? p->head_dim : p->hidden / p->heads;
    int64_t q = p->heads * hd, kv = p->kv_heads * hd;
    char    n[96];
    int     i;

    if (p->layout == GEN_GPT2) {
        gen_tensors_gpt2(p, vocab, l);
        return;
    }
    gen_add(l, "model.embed_tokens.weight", vocab, h, GEN_WEIGHT);
    for (i = 0; i < p->layers; i++) {
#define L(suffix, r, c, k)                                                   \
        snprintf(n, sizeof(n), "model.layers.%d.%s", i, suffix);            \
        gen_add(l, n, r, c, k)
        L("input_layernorm.weight", h, 0, GEN_NORM);
        if (p->layout == GEN_PHI3) {
            L("self_attn.qkv_proj.weight", q + 2 * kv, h, GEN_WEIGHT);
        } else {
            L("self_attn.q_proj.weight", q, h, GEN_WEIGHT);
            L("self_attn.k_proj.weight", kv, h, GEN_WEIGHT);
            L("self_attn.v_proj.weight", kv, h, GEN_WEIGHT);
        }
        if (p->qkv_bias) {
            L("self_attn.q_proj.bias", q, 0, GEN_BIAS);
            L("self_attn.k_proj.bias", kv, 0, GEN_BIAS);
            L("self_attn.v_proj.bias", kv, 0, GEN_BIAS);
        }
        if (p->layout == GEN_QWEN3) {
            L("self_attn.q_norm.weight", hd, 0, GEN_NORM);
            L("self_attn.k_norm.weight", hd, 0, GEN_NORM);
        }
        L("self_attn.o_proj.weight", h, q, GEN_WEIGHT);
        L("post_attention_layernorm.weight", h, 0, GEN_NORM);
        if (p->layout == GEN_GEMMA2) {
            L("pre_feedforward_layernorm.weight", h, 0, GEN_NORM);
            L("post_feedforward_layernorm.weight", h, 0, GEN_NORM);
        }
        if (p->layout == GEN_PHI3) {
            L("mlp.gate_up_proj.weight", 2 * in, h, GEN_WEIGHT);
        } else {
            L("mlp.gate_proj.weight", in, h, GEN_WEIGHT);
            L("mlp.up_proj.weight", in, h, GEN_WEIGHT);
        }
        L("mlp.down_proj.weight", h, in, GEN_WEIGHT);
#undef L
    }
    gen_add(l, "model.norm.weight", h, 0, GEN_NORM);
    if (!p->tied) {
        gen_add(l, "lm_head.weight", vocab, h, GEN_WEIGHT);
    }
}


static uint64_t
gen_nelem(const gen_tensor_t *t)
{
    return (uint64_t) t->rows * (t->cols ? t->cols : 1);
}


/* ---- files ------------------------------------------------------------ */

static void
die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "infer-gen-model: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    exit(1);
}


static void
gen_write_json(const char *dir, const char *file, json_t *j)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(15))
        != 0)
    {
        die("%s: cannot write%s", path, "");
    }
    json_decref(j);
}


static void
gen_copy(const char *from_dir, const char *to_dir, const char *file)
{
    char    from[4096], to[4096], buf[65536];
    FILE   *in, *out;
    size_t  n;

    snprintf(from, sizeof(from), "%s/%s", from_dir, file);
    snprintf(to, sizeof(to), "%s/%s", to_dir, file);
    in = fopen(from, "rb");
    if (in == NULL) {
        die("%s: %s", from, strerror(errno));
    }
    out = fopen(to, "wb");
    if (out == NULL) {
        die("%s: %s", to, strerror(errno));
    }
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            die("%s: %s", to, strerror(errno));
        }
    }
    fclose(in);
    if (fclose(out) != 0) {
        die("%s: %s", to, strerror(errno));
    }
}


/* Token id of a special token named in tokenizer_config.json (a string or
 * {"content": ...}), looked up in tokenizer.json; -1 if none. */
static int
gen_special_id(json_t *tok, json_t *tcfg, const char *key)
{
    json_t     *v = json_object_get(tcfg, key), *a;
    const char *content;
    size_t      i;

    if (json_is_object(v)) {
        v = json_object_get(v, "content");
    }
    if (!json_is_string(v)) {
        return -1;
    }
    content = json_string_value(v);
    json_array_foreach(json_object_get(tok, "added_tokens"), i, a) {
        if (json_is_string(json_object_get(a, "content"))
            && strcmp(json_string_value(json_object_get(a, "content")),
                      content) == 0)
        {
            return (int) json_integer_value(json_object_get(a, "id"));
        }
    }
    v = json_object_get(json_object_get(json_object_get(tok, "model"),
                                        "vocab"), content);
    return json_is_integer(v) ? (int) json_integer_value(v) : -1;
}


/* Number of ids the tokenizer can produce (highest id + 1). */
static int
gen_tokenizer_size(json_t *tok)
{
    json_t     *v, *a;
    const char *k;
    size_t      i;
    int         n = 0, id;

    json_object_foreach(json_object_get(json_object_get(tok, "model"),
                                        "vocab"), k, v)
    {
        id = (int) json_integer_value(v);
        n = id + 1 > n ? id + 1 : n;
    }
    json_array_foreach(json_object_get(tok, "added_tokens"), i, a) {
        id = (int) json_integer_value(json_object_get(a, "id"));
        n = id + 1 > n ? id + 1 : n;
    }
    return n;
}


static json_t *
gen_id_json(int id)
{
    return id < 0 ? json_null() : json_integer(id);
}


static void
gen_configs(const char *dir, const gen_preset_t *p, int vocab, int layers,
    const char *dtype, int bos, int eos)
{
    json_t       *c = json_object(), *g = json_object(), *x;
    json_error_t  jerr;
    const char   *torch = strcmp(dtype, "f32") == 0 ? "float32"
                        : strcmp(dtype, "f16") == 0 ? "float16" : "bfloat16";

    json_object_set_new(c, "architectures", json_pack("[s]", p->arch));
    json_object_set_new(c, "model_type", json_string(p->model_type));
    json_object_set_new(c, "vocab_size", json_integer(vocab));
    if (p->layout == GEN_GPT2) {
        /* GPT2Config's own spelling, as the published gpt2 config.json */
        json_object_set_new(c, "n_embd", json_integer(p->hidden));
        json_object_set_new(c, "n_layer", json_integer(layers));
        json_object_set_new(c, "n_head", json_integer(p->heads));
        json_object_set_new(c, "n_positions", json_integer(p->max_pos));
        json_object_set_new(c, "n_ctx", json_integer(p->max_pos));
        json_object_set_new(c, "n_inner", json_null());     /* 4 x n_embd */
        json_object_set_new(c, "activation_function",
                            json_string("gelu_new"));
        json_object_set_new(c, "layer_norm_epsilon", json_real(p->eps));
        json_object_set_new(c, "scale_attn_weights", json_true());
        json_object_set_new(c, "tie_word_embeddings", json_true());
        json_object_set_new(c, "bos_token_id", gen_id_json(bos));
        json_object_set_new(c, "eos_token_id", gen_id_json(eos));
        json_object_set_new(c, "torch_dtype", json_string(torch));
        json_object_set_new(c, "initializer_range", json_real(0.02));
        json_object_set_new(c, "use_cache", json_true());
        goto written;
    }
    json_object_set_new(c, "hidden_size", json_integer(p->hidden));
    json_object_set_new(c, "intermediate_size", json_integer(p->inter));
    json_object_set_new(c, "num_hidden_layers", json_integer(layers));
    json_object_set_new(c, "num_attention_heads", json_integer(p->heads));
    json_object_set_new(c, "num_key_value_heads", json_integer(p->kv_heads));
    if (p->head_dim) {
        json_object_set_new(c, "head_dim", json_integer(p->head_dim));
    }
    json_object_set_new(c, "max_position_embeddings",
                        json_integer(p->max_pos));
    json_object_set_new(c, "rms_norm_eps", json_real(p->eps));
    json_object_set_new(c, "rope_theta", json_real(p->rope_theta));
    json_object_set_new(c, "rope_scaling", json_null());
    json_object_set_new(c, "hidden_act", json_string("silu"));
    json_object_set_new(c, "tie_word_embeddings", json_boolean(p->tied));
    json_object_set_new(c, "bos_token_id", gen_id_json(bos));
    json_object_set_new(c, "eos_token_id", gen_id_json(eos));
    json_object_set_new(c, "torch_dtype", json_string(torch));
    json_object_set_new(c, "initializer_range", json_real(0.02));
    json_object_set_new(c, "use_cache", json_true());
    if (strcmp(p->model_type, "llama") == 0) {
        json_object_set_new(c, "attention_bias", json_false());
        json_object_set_new(c, "mlp_bias", json_false());
    } else if (strcmp(p->model_type, "mistral") == 0) {
        json_object_set_new(c, "sliding_window", json_null());
    } else if (strcmp(p->model_type, "qwen2") == 0) {
        json_object_set_new(c, "use_sliding_window", json_false());
    }
written:
    if (p->extra != NULL) {
        x = json_loads(p->extra, 0, &jerr);
        if (x == NULL || json_object_update(c, x) != 0) {
            die("preset %s: bad extra config (%s)", p->name, jerr.text);
        }
        json_decref(x);
    }
    gen_write_json(dir, "config.json", c);
    json_object_set_new(g, "bos_token_id", gen_id_json(bos));
    json_object_set_new(g, "eos_token_id", gen_id_json(eos));
    gen_write_json(dir, "generation_config.json", g);
}


static void
gen_shard_name(char *buf, size_t len, int shard, int shards)
{
    if (shards == 1) {
        snprintf(buf, len, "model.safetensors");
    } else {
        snprintf(buf, len, "model-%05d-of-%05d.safetensors", shard + 1,
                 shards);
    }
}


/* Writes the values of t in chunks: a 7B model never sits in memory. */
static void
gen_write_data(FILE *f, const char *path, const gen_tensor_t *t,
    const char *dtype, uint64_t seed, int64_t hidden)
{
    static float     v[GEN_CHUNK];
    static uint16_t  h[GEN_CHUNK];
    uint64_t         s = gen_stream(seed, t->name), left = gen_nelem(t);
    int64_t          fan_in = t->fan_in ? t->fan_in
                              : t->cols ? t->cols : hidden;
    float            scale, base;
    size_t           i, n, ok;

    /* Weights ~ N(0, 1/fan_in) keep activations near unit scale through
     * every layer (0.016 for a 4096-wide 7B); norms near but not at 1;
     * biases small but large enough that dropping one is visible. */
    switch (t->kind) {
    case GEN_WEIGHT:
        scale = (float) (1.0 / sqrt((double) fan_in) / GEN_IH_STD);
        base = 0.0f;
        break;
    case GEN_NORM:
        scale = (float) (0.1 / GEN_IH_STD);
        base = 1.0f;
        break;
    default:
        scale = (float) (0.1 / GEN_IH_STD);
        base = 0.0f;
    }
    while (left) {
        n = left < GEN_CHUNK ? left : GEN_CHUNK;
        for (i = 0; i < n; i++) {
            v[i] = gen_value(&s, scale, base);
        }
        if (strcmp(dtype, "f32") == 0) {
            ok = fwrite(v, 4, n, f);
        } else {
            for (i = 0; i < n; i++) {
                h[i] = dtype[0] == 'f' ? infer_float_to_half(v[i])
                                       : infer_float_to_bf16(v[i]);
            }
            ok = fwrite(h, 2, n, f);
        }
        if (ok != n) {
            die("%s: %s", path, strerror(errno));
        }
        left -= n;
    }
}


static void
gen_write_shard(const char *dir, gen_list_t *l, int shard, int shards,
    const char *dtype, uint64_t seed, int64_t hidden)
{
    json_t     *hdr = json_object(), *e;
    char        name[64], path[4096], *js;
    size_t      jlen, pad, es = strcmp(dtype, "f32") == 0 ? 4 : 2;
    uint64_t    off = 0, len;
    unsigned    char le[8];
    FILE       *f;
    int         i;
    const char *st = strcmp(dtype, "f32") == 0 ? "F32"
                     : strcmp(dtype, "f16") == 0 ? "F16" : "BF16";

    gen_shard_name(name, sizeof(name), shard, shards);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    json_object_set_new(hdr, "__metadata__", json_pack("{ss}", "format",
                                                       "pt"));
    for (i = 0; i < l->n; i++) {
        if (l->t[i].shard != shard) {
            continue;
        }
        l->t[i].offset = off;
        len = gen_nelem(&l->t[i]) * es;
        e = l->t[i].cols
            ? json_pack("{s:s, s:[I,I], s:[I,I]}", "dtype", st, "shape",
                        (json_int_t) l->t[i].rows, (json_int_t) l->t[i].cols,
                        "data_offsets", (json_int_t) off,
                        (json_int_t) (off + len))
            : json_pack("{s:s, s:[I], s:[I,I]}", "dtype", st, "shape",
                        (json_int_t) l->t[i].rows, "data_offsets",
                        (json_int_t) off, (json_int_t) (off + len));
        json_object_set_new(hdr, l->t[i].name, e);
        off += len;
    }
    js = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    /* the format pads the header with spaces so the data is 8-aligned */
    jlen = strlen(js);
    pad = (8 - jlen % 8) % 8;
    f = fopen(path, "wb");
    if (f == NULL) {
        die("%s: %s", path, strerror(errno));
    }
    for (i = 0; i < 8; i++) {
        le[i] = (unsigned char) ((uint64_t) (jlen + pad) >> (8 * i));
    }
    if (fwrite(le, 1, 8, f) != 8 || fwrite(js, 1, jlen, f) != jlen
        || fwrite("       ", 1, pad, f) != pad)
    {
        die("%s: %s", path, strerror(errno));
    }
    free(js);
    for (i = 0; i < l->n; i++) {
        if (l->t[i].shard == shard) {
            gen_write_data(f, path, &l->t[i], dtype, seed, hidden);
        }
    }
    if (fclose(f) != 0) {
        die("%s: %s", path, strerror(errno));
    }
}


static void
gen_write_index(const char *dir, gen_list_t *l, int shards, uint64_t total)
{
    json_t *root = json_object(), *wm = json_object();
    char    name[64];
    int     i;

    for (i = 0; i < l->n; i++) {
        gen_shard_name(name, sizeof(name), l->t[i].shard, shards);
        json_object_set_new(wm, l->t[i].name, json_string(name));
    }
    json_object_set_new(root, "metadata",
                        json_pack("{s:I}", "total_size", (json_int_t) total));
    json_object_set_new(root, "weight_map", wm);
    gen_write_json(dir, "model.safetensors.index.json", root);
}


static long
gen_number(const char *s, long min, long max)
{
    char *end;
    long  v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "infer-gen-model: bad number '%s' (%ld..%ld)\n", s,
                min, max);
        usage();
    }
    return v;
}


int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "preset", required_argument, NULL, 'p' },
        { "dtype", required_argument, NULL, 'd' },
        { "seed", required_argument, NULL, 's' },
        { "tokenizer", required_argument, NULL, 't' },
        { "layers", required_argument, NULL, 'l' },
        { "shards", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const gen_preset_t *p = NULL;
    const char         *dtype = "f32", *tokdir = NULL, *out, *sh;
    char                deftok[2048], path[4096];
    uint64_t            seed = 0, total = 0, cum = 0, es;
    int                 c, layers = 0, shards = 1, vocab, need, i;
    size_t              k;
    json_t             *tok, *tcfg;
    json_error_t        jerr;
    gen_list_t          l = { NULL, 0, 0 };

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            for (k = 0; k < sizeof(gen_presets) / sizeof(gen_presets[0]);
                 k++)
            {
                if (strcmp(optarg, gen_presets[k].name) == 0) {
                    p = &gen_presets[k];
                }
            }
            if (p == NULL) {
                fprintf(stderr, "infer-gen-model: unknown preset '%s'\n",
                        optarg);
                usage();
            }
            break;
        case 'd':
            if (strcmp(optarg, "f32") && strcmp(optarg, "f16")
                && strcmp(optarg, "bf16"))
            {
                fprintf(stderr, "infer-gen-model: bad dtype '%s'\n", optarg);
                usage();
            }
            dtype = optarg;
            break;
        case 's':
            seed = (uint64_t) gen_number(optarg, 0, 0x7fffffffL);
            break;
        case 't':
            tokdir = optarg;
            break;
        case 'l':
            layers = (int) gen_number(optarg, 1, 4096);
            break;
        case 'n':
            shards = (int) gen_number(optarg, 1, 999);
            break;
        default:
            usage();
        }
    }
    if (p == NULL || optind != argc - 1) {
        usage();
    }
    out = argv[optind];
    layers = layers ? layers : p->layers;
    if (tokdir == NULL) {
        sh = getenv("INFER_SHARED");
        snprintf(deftok, sizeof(deftok), "%s/tokenizers/%s",
                 sh ? sh : "../shared", p->tokenizer);
        tokdir = deftok;
    }

    snprintf(path, sizeof(path), "%s/tokenizer.json", tokdir);
    tok = json_load_file(path, 0, &jerr);
    if (tok == NULL) {
        die("%s: %s", path, jerr.text);
    }
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", tokdir);
    /* real files hold model_max_length = 1e30 as an integer literal */
    tcfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &jerr);
    if (tcfg == NULL) {
        die("%s: %s", path, jerr.text);
    }
    need = gen_tokenizer_size(tok);
    /* the preset's vocabulary goes with its own tokenizer: another one
     * brings its own size (tiny-llama with Llama-3's 128256 ids) */
    vocab = p->vocab && tokdir == deftok ? p->vocab : need;
    if (vocab < need) {
        snprintf(path, sizeof(path), "%d < %d", vocab, need);
        die("vocab_size does not cover the tokenizer in %s (%s)", tokdir,
            path);
    }

    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        die("%s: %s", out, strerror(errno));
    }
    gen_configs(out, p, vocab, layers, dtype,
                gen_special_id(tok, tcfg, "bos_token"),
                gen_special_id(tok, tcfg, "eos_token"));
    json_decref(tok);
    json_decref(tcfg);
    gen_copy(tokdir, out, "tokenizer.json");
    gen_copy(tokdir, out, "tokenizer_config.json");

    gen_tensors(&(gen_preset_t) { .layout = p->layout, .hidden = p->hidden,
                                  .inter = p->inter, .layers = layers,
                                  .heads = p->heads,
                                  .kv_heads = p->kv_heads,
                                  .head_dim = p->head_dim,
                                  .max_pos = p->max_pos,
                                  .tied = p->tied,
                                  .qkv_bias = p->qkv_bias
                                              && p->layout != GEN_GPT2 },
                vocab, &l);
    if (shards > l.n) {
        fprintf(stderr, "infer-gen-model: --shards %d exceeds the %d "
                "tensors\n", shards, l.n);
        exit(2);
    }
    es = strcmp(dtype, "f32") == 0 ? 4 : 2;
    for (i = 0; i < l.n; i++) {
        total += gen_nelem(&l.t[i]) * es;
    }
    /* contiguous shards of about equal bytes, none empty */
    for (i = 0; i < l.n; i++) {
        l.t[i].shard = (int) (cum * shards / total);
        if (i > 0 && l.t[i].shard > l.t[i - 1].shard + 1) {
            l.t[i].shard = l.t[i - 1].shard + 1;
        }
        if (l.t[i].shard < shards - (l.n - i)) {
            l.t[i].shard = shards - (l.n - i);
        }
        cum += gen_nelem(&l.t[i]) * es;
    }
    for (i = 0; i < shards; i++) {
        gen_write_shard(out, &l, i, shards, dtype, seed, p->hidden);
    }
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", out);
    if (shards > 1) {
        gen_write_index(out, &l, shards, total);
    } else if (unlink(path) != 0 && errno != ENOENT) {
        die("%s: %s", path, strerror(errno));   /* a stale index wins */
    }
    free(l.t);
    return 0;
}
