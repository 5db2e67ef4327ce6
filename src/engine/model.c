/*
 * Model directory loader: config.json and generation_config.json describe
 * the architecture, the safetensors files hold the weights.  Whatever the
 * engine does not implement is refused here by name, so a model either runs
 * exactly as Hugging Face would run it or does not load at all.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "model.h"
#include "safetensors.h"

#define INFER_MAX_DIM     (1 << 24)
#define INFER_REQUIRED    INT_MIN
#define INFER_NAME_LEN    192
/* q, k, v and their biases, gate and up and theirs, Conv1D's o, up, down */
#define INFER_VIEWS_PER_LAYER  14

typedef struct {
    infer_st_set_t  st;
    char           *weights;     /* model.safetensors or the index */
    const char     *prefix;      /* tensor names' prefix in this file */
    infer_tensor_t *views;       /* fused parts, transposed Conv1D */
    char           *view_names;  /* [max_views][INFER_NAME_LEN] */
    int             n_views, max_views;
} infer_model_priv_t;


/* dir/name into buf.  A path that does not fit is refused: cut short, it
 * could name another file that exists. */
static int
infer_path(char *buf, size_t len, const char *dir, const char *name,
    char *err, size_t errlen)
{
    if ((size_t) snprintf(buf, len, "%s/%s", dir, name) >= len) {
        snprintf(err, errlen, "%s/%s: path too long", dir, name);
        return -1;
    }
    return 0;
}


/* ---- the families ------------------------------------------------------ */

typedef enum {
    INFER_WIN_NONE = 0,         /* no sliding window */
    INFER_WIN_ALL,              /* every layer when sliding_window is set */
    INFER_WIN_QWEN,             /* use_sliding_window: layers from
                                   max_window_layers on */
    INFER_WIN_ALTERNATE         /* even layers local, odd global */
} infer_window_rule_t;

/*
 * A family is a row of this table: what transformers' configuration and
 * modeling code for that model_type does, as data.  Defaults are those of
 * its Config class for keys a config.json leaves out; names are module
 * paths of its state dict (".weight" / ".bias" appended), relative to a
 * prefix that checkpoints may or may not carry (GPT-2's "transformer.").
 */
struct infer_family {
    const char   *model_type;
    /* config.json keys; GPT-2 has its own spelling */
    const char   *k_hidden, *k_layers, *k_heads, *k_kv_heads, *k_inter;
    const char   *k_max_pos, *k_eps, *k_act;
    /* defaults */
    int           max_pos;
    int           kv_heads;         /* 0: num_attention_heads */
    int           head_dim;         /* 0: hidden / heads */
    int           inter_mul;        /* k_inter null: hidden x this (gpt2) */
    double        eps;
    int           tie;
    const char   *act;
    /* architecture */
    infer_norm_t  norm;
    float         norm_offset;
    int           post_norms, qk_norm, gated, learned_pos, embed_scale;
    int           qkv_bias, o_bias;     /* fixed by the family ... */
    int           attention_bias_key;   /* ... or config attention_bias */
    int           mlp_bias_key;         /* config mlp_bias (llama) */
    int           mlp_bias;             /* fixed (gpt2) */
    int           softcap;              /* gemma2's two softcaps */
    int           query_pre_attn_scalar;
    int           scale_attn_keys;      /* gpt2's scale_attn_* */
    int           rope;                 /* 0: learned positions */
    int           partial_rotary;       /* honours partial_rotary_factor */
    int           original_max_key;     /* phi3: top-level key wins */
    int           longrope_aliases;     /* phi3: "su", "yarn" = longrope */
    infer_window_rule_t window;
    int           window_default;       /* sliding_window absent */
    int           layer_types;          /* honours config layer_types */
    /* tensor names */
    const char   *prefix[2];
    const char   *embed, *pos_embed, *final_norm, *lm_head, *layer;
    const char   *attn_norm, *q, *k, *v, *qkv, *o, *q_norm, *k_norm;
    const char   *post_attn_norm, *mlp_norm, *gate, *up, *gate_up, *down;
    const char   *post_mlp_norm;
    int           conv1d;               /* weights stored [in, out] */
};

#define LLAMA_KEYS  "hidden_size", "num_hidden_layers",                      \
                    "num_attention_heads", "num_key_value_heads",            \
                    "intermediate_size", "max_position_embeddings",          \
                    "rms_norm_eps", "hidden_act"
#define LLAMA_NAMES { "", NULL }, "model.embed_tokens", NULL, "model.norm",  \
                    "lm_head", "model.layers.%d.", "input_layernorm"

static const infer_family_t infer_families[] = {
    { .model_type = "llama", LLAMA_KEYS,
      .max_pos = 2048, .eps = 1e-6, .act = "silu",
      .gated = 1, .attention_bias_key = 1, .mlp_bias_key = 1, .rope = 1,
      .prefix = LLAMA_NAMES, .q = "self_attn.q_proj",
      .k = "self_attn.k_proj", .v = "self_attn.v_proj",
      .o = "self_attn.o_proj", .mlp_norm = "post_attention_layernorm",
      .gate = "mlp.gate_proj", .up = "mlp.up_proj",
      .down = "mlp.down_proj" },
    { .model_type = "mistral", LLAMA_KEYS,
      .max_pos = 4096 * 32, .kv_heads = 8, .eps = 1e-6, .act = "silu",
      .gated = 1, .rope = 1, .window = INFER_WIN_ALL,
      .window_default = 4096,
      .prefix = LLAMA_NAMES, .q = "self_attn.q_proj",
      .k = "self_attn.k_proj", .v = "self_attn.v_proj",
      .o = "self_attn.o_proj", .mlp_norm = "post_attention_layernorm",
      .gate = "mlp.gate_proj", .up = "mlp.up_proj",
      .down = "mlp.down_proj" },
    { .model_type = "qwen2", LLAMA_KEYS,
      .max_pos = 32768, .kv_heads = 32, .eps = 1e-6, .act = "silu",
      .gated = 1, .qkv_bias = 1, .rope = 1, .window = INFER_WIN_QWEN,
      .window_default = 4096, .layer_types = 1,
      .prefix = LLAMA_NAMES, .q = "self_attn.q_proj",
      .k = "self_attn.k_proj", .v = "self_attn.v_proj",
      .o = "self_attn.o_proj", .mlp_norm = "post_attention_layernorm",
      .gate = "mlp.gate_proj", .up = "mlp.up_proj",
      .down = "mlp.down_proj" },
    { .model_type = "qwen3", LLAMA_KEYS,
      .max_pos = 32768, .kv_heads = 32, .head_dim = 128, .eps = 1e-6,
      .act = "silu", .gated = 1, .qk_norm = 1, .attention_bias_key = 1,
      .rope = 1, .window = INFER_WIN_QWEN, .window_default = 4096,
      .layer_types = 1,
      .prefix = LLAMA_NAMES, .q = "self_attn.q_proj",
      .k = "self_attn.k_proj", .v = "self_attn.v_proj",
      .o = "self_attn.o_proj", .q_norm = "self_attn.q_norm",
      .k_norm = "self_attn.k_norm", .mlp_norm = "post_attention_layernorm",
      .gate = "mlp.gate_proj", .up = "mlp.up_proj",
      .down = "mlp.down_proj" },
    { .model_type = "gemma2",
      "hidden_size", "num_hidden_layers", "num_attention_heads",
      "num_key_value_heads", "intermediate_size", "max_position_embeddings",
      "rms_norm_eps", "hidden_activation",
      .max_pos = 8192, .kv_heads = 4, .head_dim = 256, .eps = 1e-6,
      .tie = 1, .act = "gelu_pytorch_tanh", .norm_offset = 1.0f,
      .post_norms = 1, .gated = 1, .embed_scale = 1,
      .attention_bias_key = 1, .softcap = 1, .query_pre_attn_scalar = 1,
      .rope = 1, .window = INFER_WIN_ALTERNATE, .window_default = 4096,
      .layer_types = 1,
      .prefix = LLAMA_NAMES, .q = "self_attn.q_proj",
      .k = "self_attn.k_proj", .v = "self_attn.v_proj",
      .o = "self_attn.o_proj", .post_attn_norm = "post_attention_layernorm",
      .mlp_norm = "pre_feedforward_layernorm", .gate = "mlp.gate_proj",
      .up = "mlp.up_proj", .down = "mlp.down_proj",
      .post_mlp_norm = "post_feedforward_layernorm" },
    { .model_type = "phi3", LLAMA_KEYS,
      .max_pos = 4096, .eps = 1e-5, .act = "silu", .gated = 1, .rope = 1,
      .partial_rotary = 1, .original_max_key = 1, .longrope_aliases = 1,
      .window = INFER_WIN_ALL,
      .prefix = LLAMA_NAMES, .qkv = "self_attn.qkv_proj",
      .o = "self_attn.o_proj", .mlp_norm = "post_attention_layernorm",
      .gate_up = "mlp.gate_up_proj", .down = "mlp.down_proj" },
    { .model_type = "gpt2",
      "n_embd", "n_layer", "n_head", NULL, "n_inner", "n_positions",
      "layer_norm_epsilon", "activation_function",
      .max_pos = 1024, .inter_mul = 4, .eps = 1e-5, .tie = 1,
      .act = "gelu_new", .norm = INFER_NORM_LAYER, .qkv_bias = 1,
      .o_bias = 1, .mlp_bias = 1, .learned_pos = 1, .scale_attn_keys = 1,
      .prefix = { "transformer.", "" }, .embed = "wte", .pos_embed = "wpe",
      .final_norm = "ln_f", .lm_head = "lm_head", .layer = "h.%d.",
      .attn_norm = "ln_1", .qkv = "attn.c_attn", .o = "attn.c_proj",
      .mlp_norm = "ln_2", .up = "mlp.c_fc", .down = "mlp.c_proj",
      .conv1d = 1 },
};

#undef LLAMA_KEYS
#undef LLAMA_NAMES

/* hidden_act values and what they compute (transformers' ACT2FN) */
static const struct {
    const char  *name;
    infer_act_t  act;
} infer_acts[] = {
    { "silu", INFER_ACT_SILU },
    { "swish", INFER_ACT_SILU },
    { "gelu", INFER_ACT_GELU },
    { "gelu_new", INFER_ACT_GELU_TANH },
    { "gelu_pytorch_tanh", INFER_ACT_GELU_TANH },
};


static const infer_family_t *
infer_family_find(const char *model_type)
{
    size_t i;

    for (i = 0; i < sizeof(infer_families) / sizeof(infer_families[0]); i++)
    {
        if (strcmp(infer_families[i].model_type, model_type) == 0) {
            return &infer_families[i];
        }
    }
    return NULL;
}


static void
infer_family_list(char *buf, size_t len)
{
    size_t i, n = 0;

    buf[0] = '\0';
    for (i = 0; i < sizeof(infer_families) / sizeof(infer_families[0])
                && n < len; i++)
    {
        n += snprintf(buf + n, len - n, "%s%s", i ? ", " : "",
                      infer_families[i].model_type);
    }
}


/* ---- config.json ------------------------------------------------------ */

static int
infer_cfg_int(json_t *root, const char *file, const char *key, int def,
    int min, int max, int *out, char *err, size_t errlen)
{
    json_t     *v = key ? json_object_get(root, key) : NULL;
    json_int_t  x;

    if (v == NULL || json_is_null(v)) {
        if (def == INFER_REQUIRED) {
            snprintf(err, errlen, "%s: field '%s' missing", file, key);
            return -1;
        }
        *out = def;
        return 0;
    }
    x = json_is_integer(v) ? json_integer_value(v) : (json_int_t) min - 1;
    if (x < min || x > max) {
        snprintf(err, errlen, "%s: field '%s' must be an integer in "
                 "[%d, %d]", file, key, min, max);
        return -1;
    }
    *out = (int) x;
    return 0;
}


static int
infer_cfg_real(json_t *root, const char *file, const char *key, double def,
    double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);

    if (v == NULL || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v) || !(json_number_value(v) > 0)
        || !isfinite(json_number_value(v)))
    {
        snprintf(err, errlen, "%s: field '%s' must be a positive number",
                 file, key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}


static int
infer_cfg_bool(json_t *root, const char *file, const char *key, int def,
    int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);

    if (v == NULL || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "%s: field '%s' must be true or false", file,
                 key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}


static json_t *
infer_json_load(const char *path, int optional, char *err, size_t errlen)
{
    json_t        *root;
    json_error_t   jerr;
    struct stat    st;

    if (optional && stat(path, &st) != 0) {
        return json_object();
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "%s: %s (line %d)", path, jerr.text,
                 jerr.line);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        json_decref(root);
        return NULL;
    }
    return root;
}


/* eos_token_id may be an integer, a list of integers, or null. */
static int
infer_cfg_eos(json_t *v, const char *file, infer_model_config_t *c,
    char *err, size_t errlen)
{
    size_t i;
    json_t *e;

    c->n_eos = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (json_is_integer(v)) {
        v = json_pack("[O]", v);
    } else {
        json_incref(v);
    }
    if (v == NULL || !json_is_array(v) || json_array_size(v) > 8) {
        snprintf(err, errlen, "%s: field 'eos_token_id' must be an integer "
                 "or a list of at most 8 integers", file);
        json_decref(v);
        return -1;
    }
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 0
            || json_integer_value(e) >= c->vocab_size)
        {
            snprintf(err, errlen, "%s: field 'eos_token_id' holds a value "
                     "that is not a token id below vocab_size %d", file,
                     c->vocab_size);
            json_decref(v);
            return -1;
        }
        c->eos_token_ids[c->n_eos++] = (int) json_integer_value(e);
    }
    json_decref(v);
    return 0;
}


/* A number-or-null field whose null (or, with def, absence) means
 * "off" (0). */
static int
infer_cfg_optional(json_t *root, const char *file, const char *key,
    double def, double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);

    if (v != NULL && json_is_null(v)) {
        *out = 0;
        return 0;
    }
    return infer_cfg_real(root, file, key, def, out, err, errlen);
}


static int
infer_cfg_factor_list(json_t *rp, const char *file, const char *key,
    int n, float *out, char *err, size_t errlen)
{
    json_t *a = json_object_get(rp, key), *e;
    size_t  i;

    if (!json_is_array(a) || (int) json_array_size(a) != n) {
        snprintf(err, errlen, "%s: rope_scaling.%s must be a list of %d "
                 "numbers (rotated dims / 2)", file, key, n);
        return -1;
    }
    json_array_foreach(a, i, e) {
        if (!json_is_number(e) || !(json_number_value(e) > 0)
            || !isfinite(json_number_value(e)))
        {
            snprintf(err, errlen, "%s: rope_scaling.%s[%zu] must be a "
                     "positive number", file, key, i);
            return -1;
        }
        out[i] = (float) json_number_value(e);
    }
    return 0;
}


/* yarn's get_mscale */
static double
infer_yarn_mscale(double scale, double mscale)
{
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}


/*
 * The RoPE parameters, as RotaryEmbeddingConfigMixin standardises them:
 * rope_scaling (older configs) wins over rope_parameters (transformers 5);
 * its rope_theta over the top-level one; its rope_type over "type".
 */
static int
infer_cfg_rope(json_t *root, const char *file, infer_model_config_t *c,
    char *err, size_t errlen)
{
    const infer_family_t *fam = c->family;
    infer_rope_t         *r = &c->rope;
    json_t               *rp, *type, *v;
    const char           *tn;
    double                prf, d;
    int                   om;

    memset(r, 0, sizeof(*r));
    if (!fam->rope) {
        r->type = INFER_ROPE_NONE;
        c->rope_theta = 10000.0;        /* unused */
        return 0;
    }
    rp = json_object_get(root, "rope_scaling");
    if (rp == NULL || json_is_null(rp)
        || (json_is_object(rp) && json_object_size(rp) == 0))
    {
        rp = json_object_get(root, "rope_parameters");
    }
    if (rp != NULL && json_is_null(rp)) {
        rp = NULL;
    }
    if (rp != NULL && !json_is_object(rp)) {
        snprintf(err, errlen, "%s: field 'rope_scaling' / 'rope_parameters' "
                 "must be an object", file);
        return -1;
    }
    if (rp == NULL) {
        rp = root;                      /* rope_theta at the top level */
    }
    if (infer_cfg_real(root, file, "rope_theta", 10000.0, &c->rope_theta,
                       err, errlen) != 0
        || infer_cfg_real(rp, file, "rope_theta", c->rope_theta,
                          &c->rope_theta, err, errlen) != 0
        || infer_cfg_real(root, file, "partial_rotary_factor", 1.0, &prf,
                          err, errlen) != 0
        || infer_cfg_real(rp, file, "partial_rotary_factor", prf, &prf,
                          err, errlen) != 0)
    {
        return -1;
    }
    r->theta = c->rope_theta;
    r->max_position = c->max_position;
    if (prf != 1.0 && !fam->partial_rotary) {
        snprintf(err, errlen, "%s: partial_rotary_factor %g is not "
                 "supported for %s (transformers rotates whole heads "
                 "there)", file, prf, fam->model_type);
        return -1;
    }
    r->dim = (int) (c->head_dim * prf);
    if (prf > 1.0 || r->dim < 2 || r->dim % 2 != 0) {
        snprintf(err, errlen, "%s: partial_rotary_factor %g of head_dim %d "
                 "gives %d rotated dims; they must be even, 2 to head_dim",
                 file, prf, c->head_dim, r->dim);
        return -1;
    }

    type = rp == root ? NULL : json_object_get(rp, "rope_type");
    if (type == NULL && rp != root) {
        type = json_object_get(rp, "type");
    }
    if (type != NULL && !json_is_string(type)) {
        snprintf(err, errlen, "%s: rope_scaling.rope_type must be a string",
                 file);
        return -1;
    }
    tn = type ? json_string_value(type) : "default";
    if (fam->longrope_aliases
        && (strcmp(tn, "su") == 0 || strcmp(tn, "yarn") == 0))
    {
        tn = "longrope";                /* Phi3Config renames them */
    }
    for (r->type = INFER_ROPE_DEFAULT; r->type <= INFER_ROPE_LLAMA3;
         r->type++)
    {
        if (strcmp(tn, infer_rope_type_name(r->type)) == 0) {
            break;
        }
    }
    if (r->type > INFER_ROPE_LLAMA3) {
        snprintf(err, errlen, "%s: rope_type '%.32s' is not supported "
                 "(default, linear, dynamic, yarn, longrope, llama3)", file,
                 tn);
        return -1;
    }

#define NEED(key, out)                                                      \
    if (json_object_get(rp, key) == NULL) {                                 \
        snprintf(err, errlen, "%s: rope_scaling of type %s needs '%s'",     \
                 file, tn, key);                                            \
        return -1;                                                          \
    }                                                                       \
    if (infer_cfg_real(rp, file, key, 0, out, err, errlen) != 0) {          \
        return -1;                                                          \
    }

    /* the pre-training context of llama3, yarn and longrope: the rope
     * dict's, else max_position_embeddings; Phi3Config's own attribute
     * (default 4096) wins over both */
    om = c->max_position;
    if (infer_cfg_int(rp, file, "original_max_position_embeddings",
                      om, 1, INT_MAX, &om, err, errlen) != 0
        || (fam->original_max_key
            && infer_cfg_int(root, file, "original_max_position_embeddings",
                             4096, 1, INT_MAX, &om, err, errlen) != 0))
    {
        return -1;
    }
    r->original_max = om;

    switch (r->type) {
    case INFER_ROPE_LINEAR:
    case INFER_ROPE_DYNAMIC:
        NEED("factor", &r->factor);
        break;
    case INFER_ROPE_LLAMA3:
        NEED("factor", &r->factor);
        NEED("low_freq_factor", &r->low_freq_factor);
        NEED("high_freq_factor", &r->high_freq_factor);
        if (!(r->high_freq_factor > r->low_freq_factor)) {
            snprintf(err, errlen, "%s: rope_scaling high_freq_factor must "
                     "exceed low_freq_factor", file);
            return -1;
        }
        break;
    case INFER_ROPE_YARN:
        NEED("factor", &r->factor);
        if (infer_cfg_real(rp, file, "beta_fast", 32, &r->beta_fast, err,
                           errlen) != 0
            || infer_cfg_real(rp, file, "beta_slow", 1, &r->beta_slow, err,
                              errlen) != 0
            || infer_cfg_bool(rp, file, "truncate", 1, &r->truncate, err,
                              errlen) != 0)
        {
            return -1;
        }
        if (json_object_get(rp, "attention_factor") != NULL
            && !json_is_null(json_object_get(rp, "attention_factor")))
        {
            NEED("attention_factor", &r->attention_factor);
        } else {
            double ms = 0, msa = 0;

            if (infer_cfg_optional(rp, file, "mscale", 0, &ms, err, errlen)
                    != 0
                || infer_cfg_optional(rp, file, "mscale_all_dim", 0, &msa,
                                      err, errlen) != 0)
            {
                return -1;
            }
            r->attention_factor = ms && msa
                ? infer_yarn_mscale(r->factor, ms)
                  / infer_yarn_mscale(r->factor, msa)
                : infer_yarn_mscale(r->factor, 1);
        }
        break;
    case INFER_ROPE_LONGROPE:
        if (r->dim / 2 > INFER_ROPE_MAX_HALF) {
            snprintf(err, errlen, "%s: longrope over %d rotated dims; at "
                     "most %d", file, r->dim, 2 * INFER_ROPE_MAX_HALF);
            return -1;
        }
        if (infer_cfg_factor_list(rp, file, "short_factor", r->dim / 2,
                                  r->short_factor, err, errlen) != 0
            || infer_cfg_factor_list(rp, file, "long_factor", r->dim / 2,
                                     r->long_factor, err, errlen) != 0
            || infer_cfg_real(rp, file, "factor",
                              (double) c->max_position / om, &r->factor, err,
                              errlen) != 0)
        {
            return -1;
        }
        v = json_object_get(rp, "attention_factor");
        if (v != NULL && !json_is_null(v)) {
            NEED("attention_factor", &r->attention_factor);
        } else {
            r->attention_factor = r->factor <= 1.0 ? 1.0
                : sqrt(1 + log(r->factor) / log((double) om));
        }
        break;
    default:
        break;
    }
#undef NEED
    /* dynamic NTK exists to run past max_position_embeddings, which the
     * config keeps at the trained length: the context is factor times
     * that (as vLLM derives it); the frequencies still turn at the
     * trained length (r->max_position) */
    if (r->type == INFER_ROPE_DYNAMIC && r->factor > 1.0) {
        d = floor(c->max_position * r->factor);
        c->max_position = d < INT_MAX ? (int) d : INT_MAX;
    }
    d = infer_rope_scaling(r);
    if (!isfinite(d) || d <= 0) {
        snprintf(err, errlen, "%s: RoPE attention factor %g is not a "
                 "positive number", file, d);
        return -1;
    }
    return 0;
}


/*
 * Which layers attend through a sliding window: every layer (mistral,
 * phi3), config layer_types or the family's rule (qwen2/3: from
 * max_window_layers on, and only with use_sliding_window; gemma2: even
 * layers).
 */
static int
infer_cfg_window(json_t *root, const char *file, infer_model_config_t *c,
    char *err, size_t errlen)
{
    const infer_family_t *fam = c->family;
    json_t               *lt, *e;
    const char           *s;
    size_t                i;
    int                   use = 1, mwl, any = 0, l;

    memset(c->layer_sliding, 0, sizeof(c->layer_sliding));
    c->sliding_window = 0;
    if (fam->window == INFER_WIN_NONE) {
        return 0;
    }
    if (infer_cfg_int(root, file, "sliding_window", fam->window_default, 1,
                      INT_MAX, &c->sliding_window, err, errlen) != 0)
    {
        return -1;
    }
    if (fam->window == INFER_WIN_QWEN) {
        if (infer_cfg_bool(root, file, "use_sliding_window", 0, &use, err,
                           errlen) != 0
            || infer_cfg_int(root, file, "max_window_layers", 28, 0,
                             INT_MAX, &mwl, err, errlen) != 0)
        {
            return -1;
        }
    }
    if (json_is_null(json_object_get(root, "sliding_window")) || !use) {
        c->sliding_window = 0;
    }
    lt = fam->layer_types ? json_object_get(root, "layer_types") : NULL;
    if (lt != NULL && !json_is_null(lt)) {
        if (!json_is_array(lt) || (int) json_array_size(lt) != c->num_layers)
        {
            snprintf(err, errlen, "%s: field 'layer_types' must list %d "
                     "layer types", file, c->num_layers);
            return -1;
        }
        json_array_foreach(lt, i, e) {
            s = json_is_string(e) ? json_string_value(e) : "?";
            if (strcmp(s, "sliding_attention") == 0) {
                c->layer_sliding[i] = 1;
            } else if (strcmp(s, "full_attention") != 0) {
                snprintf(err, errlen, "%s: layer_types[%zu] '%.32s' is not "
                         "supported (full_attention, sliding_attention)",
                         file, i, s);
                return -1;
            }
        }
    } else {
        for (l = 0; l < c->num_layers; l++) {
            c->layer_sliding[l] =
                fam->window == INFER_WIN_ALL
                || (fam->window == INFER_WIN_QWEN && c->sliding_window
                    && l >= mwl)
                || (fam->window == INFER_WIN_ALTERNATE && l % 2 == 0);
        }
    }
    for (l = 0; l < c->num_layers; l++) {
        any |= c->layer_sliding[l];
    }
    if (any && c->sliding_window == 0) {
        if (fam->window == INFER_WIN_ALL) {
            memset(c->layer_sliding, 0, sizeof(c->layer_sliding));
            return 0;
        }
        snprintf(err, errlen, "%s: layer_types has sliding_attention layers "
                 "but sliding_window is not set", file);
        return -1;
    }
    if (!any) {
        c->sliding_window = 0;
    }
    return 0;
}


/* The activation, biases, norms and scales the family takes from the
 * config. */
static int
infer_cfg_features(json_t *root, const char *file, infer_model_config_t *c,
    char *err, size_t errlen)
{
    const infer_family_t *fam = c->family;
    json_t               *act = json_object_get(root, fam->k_act);
    const char           *an;
    double                qs, cap;
    size_t                i;
    int                   b;

    an = act == NULL || json_is_null(act) ? fam->act
         : json_is_string(act) ? json_string_value(act) : "?";
    for (i = 0; i < sizeof(infer_acts) / sizeof(infer_acts[0]); i++) {
        if (strcmp(an, infer_acts[i].name) == 0) {
            break;
        }
    }
    if (i == sizeof(infer_acts) / sizeof(infer_acts[0])) {
        snprintf(err, errlen, "%s: %s %.32s is not supported (silu, swish, "
                 "gelu, gelu_new, gelu_pytorch_tanh)", file, fam->k_act, an);
        return -1;
    }
    c->act = infer_acts[i].act;

    c->norm = fam->norm;
    c->norm_offset = fam->norm_offset;
    c->post_norms = fam->post_norms;
    c->qk_norm = fam->qk_norm;
    c->gated_mlp = fam->gated;
    c->learned_pos = fam->learned_pos;
    c->qkv_bias = fam->qkv_bias;
    c->o_bias = fam->o_bias;
    c->mlp_bias = fam->mlp_bias;
    if (fam->attention_bias_key) {
        if (infer_cfg_bool(root, file, "attention_bias", 0, &b, err, errlen)
            != 0)
        {
            return -1;
        }
        c->qkv_bias = c->o_bias = b;
    }
    if (fam->mlp_bias_key
        && infer_cfg_bool(root, file, "mlp_bias", 0, &c->mlp_bias, err,
                          errlen) != 0)
    {
        return -1;
    }
    c->embed_scale = fam->embed_scale
                     ? (float) sqrt((double) c->hidden_size) : 1.0f;

    /* the score scale in Python floats, rounded where it meets the
     * scores */
    c->attn_scale = pow((double) c->head_dim, -0.5);
    c->attn_scale_by_layer = 0;
    if (fam->query_pre_attn_scalar) {
        if (infer_cfg_real(root, file, "query_pre_attn_scalar", 256, &qs,
                           err, errlen) != 0)
        {
            return -1;
        }
        c->attn_scale = pow(qs, -0.5);
    }
    if (fam->scale_attn_keys) {
        if (infer_cfg_bool(root, file, "scale_attn_weights", 1, &b, err,
                           errlen) != 0
            || infer_cfg_bool(root, file, "scale_attn_by_inverse_layer_idx",
                              0, &c->attn_scale_by_layer, err, errlen) != 0)
        {
            return -1;
        }
        if (!b) {
            c->attn_scale = 1.0;
        }
        if (infer_cfg_bool(root, file, "add_cross_attention", 0, &b, err,
                           errlen) != 0)
        {
            return -1;
        }
        if (b) {
            snprintf(err, errlen, "%s: add_cross_attention true is not "
                     "supported (a decoder-only engine)", file);
            return -1;
        }
    }
    c->attn_softcap = c->final_softcap = 0;
    if (fam->softcap) {
        if (infer_cfg_optional(root, file, "attn_logit_softcapping", 50.0,
                               &cap, err, errlen) != 0)
        {
            return -1;
        }
        c->attn_softcap = (float) cap;
        if (infer_cfg_optional(root, file, "final_logit_softcapping", 30.0,
                               &cap, err, errlen) != 0)
        {
            return -1;
        }
        c->final_softcap = (float) cap;
        if (infer_cfg_bool(root, file, "use_bidirectional_attention", 0, &b,
                           err, errlen) != 0)
        {
            return -1;
        }
        if (b) {
            snprintf(err, errlen, "%s: use_bidirectional_attention true is "
                     "not supported (causal decoding only)", file);
            return -1;
        }
    }
    return 0;
}


static int
infer_cfg_shape(json_t *root, const char *file, infer_model_config_t *c,
    char *err, size_t errlen)
{
    const infer_family_t *fam = c->family;
    json_t               *hd = json_object_get(root, "head_dim");
    json_t               *in = json_object_get(root, fam->k_inter);

    if (infer_cfg_int(root, file, "vocab_size", INFER_REQUIRED, 1,
                      INFER_MAX_DIM, &c->vocab_size, err, errlen) != 0
        || infer_cfg_int(root, file, fam->k_hidden, INFER_REQUIRED, 1,
                         INFER_MAX_DIM, &c->hidden_size, err, errlen) != 0
        || infer_cfg_int(root, file, fam->k_layers, INFER_REQUIRED, 1,
                         INFER_MAX_LAYERS, &c->num_layers, err, errlen) != 0
        || infer_cfg_int(root, file, fam->k_heads, INFER_REQUIRED,
                         1, INFER_MAX_DIM, &c->num_heads, err, errlen) != 0
        || infer_cfg_int(root, file, fam->k_kv_heads,
                         fam->kv_heads ? fam->kv_heads : c->num_heads, 1,
                         c->num_heads, &c->num_kv_heads, err, errlen) != 0
        || infer_cfg_int(root, file, fam->k_max_pos, fam->max_pos, 1,
                         INT_MAX, &c->max_position, err, errlen) != 0)
    {
        return -1;
    }
    if (fam->inter_mul && (in == NULL || json_is_null(in))) {
        if ((long long) c->hidden_size * fam->inter_mul > INFER_MAX_DIM) {
            snprintf(err, errlen, "%s: %s x %d is more than %d", file,
                     fam->k_hidden, fam->inter_mul, INFER_MAX_DIM);
            return -1;
        }
        c->intermediate_size = c->hidden_size * fam->inter_mul;
    } else if (infer_cfg_int(root, file, fam->k_inter, INFER_REQUIRED, 1,
                             INFER_MAX_DIM, &c->intermediate_size, err,
                             errlen) != 0)
    {
        return -1;
    }
    if (c->num_heads % c->num_kv_heads != 0) {
        snprintf(err, errlen, "%s: num_attention_heads %d is not a multiple "
                 "of num_key_value_heads %d", file, c->num_heads,
                 c->num_kv_heads);
        return -1;
    }
    if (fam->conv1d || ((hd == NULL || json_is_null(hd)) && !fam->head_dim))
    {
        /* gpt2 splits the width whatever head_dim says */
        if (c->hidden_size % c->num_heads != 0) {
            snprintf(err, errlen, "%s: %s %d is not a multiple of %s %d "
                     "and head_dim is not given", file, fam->k_hidden,
                     c->hidden_size, fam->k_heads, c->num_heads);
            return -1;
        }
        c->head_dim = c->hidden_size / c->num_heads;
    } else if (infer_cfg_int(root, file, "head_dim", fam->head_dim, 2,
                             INFER_MAX_DIM, &c->head_dim, err, errlen) != 0)
    {
        return -1;
    }
    if (c->head_dim % 2 != 0
        || (long long) c->num_heads * c->head_dim > INFER_MAX_DIM)
    {
        snprintf(err, errlen, "%s: head_dim %d must be even (RoPE rotates "
                 "pairs) and num_attention_heads x head_dim at most %d",
                 file, c->head_dim, INFER_MAX_DIM);
        return -1;
    }
    return 0;
}


/* Everything config.json says, through the family's row. */
static int
infer_cfg_parse(json_t *root, const char *file, infer_model_config_t *c,
    char *err, size_t errlen)
{
    json_t *mt = json_object_get(root, "model_type");
    char    list[256];
    int     tie;

    memset(c, 0, sizeof(*c));
    if (!json_is_string(mt)) {
        snprintf(err, errlen, "%s: field 'model_type' missing", file);
        return -1;
    }
    snprintf(c->model_type, sizeof(c->model_type), "%s",
             json_string_value(mt));
    c->family = infer_family_find(json_string_value(mt));
    if (c->family == NULL) {
        infer_family_list(list, sizeof(list));
        snprintf(err, errlen, "%s: model_type '%.32s' is not supported "
                 "(%s)", file, json_string_value(mt), list);
        return -1;
    }
    if (infer_cfg_shape(root, file, c, err, errlen) != 0
        || infer_cfg_features(root, file, c, err, errlen) != 0
        || infer_cfg_window(root, file, c, err, errlen) != 0
        || infer_cfg_rope(root, file, c, err, errlen) != 0
        || infer_cfg_real(root, file, c->family->k_eps, c->family->eps,
                          &c->rms_norm_eps, err, errlen) != 0
        || infer_cfg_bool(root, file, "tie_word_embeddings", c->family->tie,
                          &tie, err, errlen) != 0
        || infer_cfg_int(root, file, "bos_token_id", -1, 0,
                         c->vocab_size - 1, &c->bos_token_id, err,
                         errlen) != 0
        || infer_cfg_eos(json_object_get(root, "eos_token_id"), file, c, err,
                         errlen) != 0)
    {
        return -1;
    }
    c->tie_word_embeddings = tie;
    return 0;
}


int
infer_model_parse_config(const char *json, const char *file,
    infer_model_config_t *c, char *err, size_t errlen)
{
    json_error_t  jerr;
    json_t       *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    int           rc;

    if (root == NULL || !json_is_object(root)) {
        snprintf(err, errlen, "%s: %s", file,
                 root == NULL ? jerr.text : "not a JSON object");
        json_decref(root);
        return -1;
    }
    rc = infer_cfg_parse(root, file, c, err, errlen);
    json_decref(root);
    return rc;
}


float
infer_model_attn_scale(const infer_model_config_t *c, int layer)
{
    return (float) (c->attn_scale_by_layer ? c->attn_scale / (layer + 1)
                                           : c->attn_scale);
}


int
infer_model_window(const infer_model_config_t *c, int layer)
{
    return c->layer_sliding[layer] ? c->sliding_window : 0;
}


static int
infer_model_read_config(const char *dir, infer_model_config_t *c, char *err,
    size_t errlen)
{
    char        file[4096], gfile[4096];
    json_t     *root, *gen = NULL, *eos;
    int         rc = -1;

    if (infer_path(file, sizeof(file), dir, "config.json", err, errlen) != 0
        || infer_path(gfile, sizeof(gfile), dir, "generation_config.json",
                      err, errlen) != 0)
    {
        return -1;
    }
    root = infer_json_load(file, 0, err, errlen);
    if (root == NULL) {
        return -1;
    }
    if (infer_cfg_parse(root, file, c, err, errlen) != 0) {
        goto done;
    }
    gen = infer_json_load(gfile, 1, err, errlen);
    if (gen == NULL
        || infer_cfg_int(gen, gfile, "bos_token_id", c->bos_token_id, 0,
                         c->vocab_size - 1, &c->bos_token_id, err,
                         errlen) != 0)
    {
        goto done;
    }
    eos = json_object_get(gen, "eos_token_id");
    if (eos != NULL && infer_cfg_eos(eos, gfile, c, err, errlen) != 0) {
        goto done;
    }
    rc = 0;
done:
    json_decref(gen);
    json_decref(root);
    return rc;
}


/* ---- weights ---------------------------------------------------------- */

/* A shard name from the index must stay inside the model directory. */
static int
infer_shard_name_ok(const char *s)
{
    return s[0] != '\0' && s[0] != '.' && strchr(s, '/') == NULL;
}


static int
infer_model_map_sharded(const char *dir, const char *index,
    infer_st_set_t *st, char *err, size_t errlen)
{
    json_t                *root, *wm, *v;
    const char            *name, *fn;
    const infer_tensor_t  *t;
    char                   path[4096];
    int                    rc = -1;

    root = infer_json_load(index, 0, err, errlen);
    if (root == NULL) {
        return -1;
    }
    wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        snprintf(err, errlen, "%s: field 'weight_map' missing or not a "
                 "non-empty object", index);
        goto done;
    }
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v) || !infer_shard_name_ok(json_string_value(v)))
        {
            snprintf(err, errlen, "%s: weight_map entry '%s' does not name a "
                     "file in the model directory", index, name);
            goto done;
        }
        if (infer_path(path, sizeof(path), dir, json_string_value(v), err,
                       errlen) != 0)
        {
            snprintf(err, errlen, "%s: weight_map entry '%s' names a file "
                     "whose path is too long", index, name);
            goto done;
        }
        if (infer_st_file(st, path) != NULL) {
            continue;
        }
        if (access(path, R_OK) != 0) {
            snprintf(err, errlen, "%s: weight_map entry '%s' names %s, which "
                     "cannot be opened: %s", index, name, path,
                     strerror(errno));
            goto done;
        }
        if (infer_st_add_file(st, path, err, errlen) != 0) {
            goto done;
        }
    }
    if (infer_st_seal(st, err, errlen) != 0) {
        goto done;
    }
    json_object_foreach(wm, name, v) {
        fn = json_string_value(v);
        snprintf(path, sizeof(path), "%s/%s", dir, fn);  /* fitted above */
        t = infer_st_find(st, name);
        if (t == NULL || strcmp(t->file, path) != 0) {
            snprintf(err, errlen, "%s: tensor '%s' is listed in weight_map "
                     "but %s does not hold it", index, name, path);
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}


static int
infer_model_map(const char *dir, infer_model_priv_t *p, char *err,
    size_t errlen)
{
    char         index[4096], single[4096];
    struct stat  sb;

    if (infer_path(index, sizeof(index), dir, "model.safetensors.index.json",
                   err, errlen) != 0
        || infer_path(single, sizeof(single), dir, "model.safetensors", err,
                      errlen) != 0)
    {
        return -1;
    }
    p->weights = strdup(stat(index, &sb) == 0 ? index : single);
    if (p->weights == NULL) {
        snprintf(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    if (strcmp(p->weights, index) == 0) {
        return infer_model_map_sharded(dir, index, &p->st, err, errlen);
    }
    if (infer_st_add_file(&p->st, single, err, errlen) != 0) {
        return -1;
    }
    return infer_st_seal(&p->st, err, errlen);
}


static void
infer_shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    int    i;
    size_t n;

    n = snprintf(buf, len, "[");
    for (i = 0; i < ndim && n < len; i++) {
        n += snprintf(buf + n, len - n, "%s%lld", i ? ", " : "",
                      (long long) shape[i]);
    }
    if (n < len) {
        snprintf(buf + n, len - n, "]");
    }
}


/* Finds a tensor and checks its shape (d1 < 0: a vector of d0). */
static const infer_tensor_t *
infer_model_need(infer_model_t *m, const char *name, int64_t d0, int64_t d1,
    char *err, size_t errlen)
{
    infer_model_priv_t     *p = m->priv;
    const infer_tensor_t   *t = infer_st_find(&p->st, name);
    int64_t                 want[2] = { d0, d1 };
    int                     ndim = d1 < 0 ? 1 : 2;
    char                    got_s[96], want_s[64];

    if (t == NULL) {
        snprintf(err, errlen, "%s: tensor '%s' missing", p->weights, name);
        return NULL;
    }
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2
                                                 && t->shape[1] != d1))
    {
        infer_shape_str(got_s, sizeof(got_s), t->ndim, t->shape);
        infer_shape_str(want_s, sizeof(want_s), ndim, want);
        snprintf(err, errlen, "%s: tensor '%s' has shape %s, config.json "
                 "implies %s", t->file, name, got_s, want_s);
        return NULL;
    }
    return t;
}


/*
 * A view of part of src as one logical weight: rows [off, off + rows) of
 * a row-stacked matrix ([q | k | v] x in), its output columns of a
 * Conv1D matrix stored [in, out] (transposed), or elements of a vector.
 */
static const infer_tensor_t *
infer_model_view(infer_model_t *m, const infer_tensor_t *src, int64_t off,
    int64_t rows, const char *part)
{
    infer_model_priv_t *p = m->priv;
    infer_tensor_t     *v = &p->views[p->n_views];
    char               *name = p->view_names + p->n_views * INFER_NAME_LEN;
    size_t              es = infer_dtype_size(src->dtype);

    assert(p->n_views < p->max_views);
    p->n_views++;
    snprintf(name, INFER_NAME_LEN, "%s[%s]", src->name, part);
    *v = *src;
    v->name = name;
    v->shape[0] = rows;
    if (src->ndim == 1) {
        v->data = (const unsigned char *) src->data + off * es;
    } else if (src->transposed) {
        /* a Conv1D view of the whole [in, out]: columns off.. */
        v->data = (const unsigned char *) src->data + off * es;
        v->shape[1] = src->shape[1];
    } else {
        v->data = (const unsigned char *) src->data
                  + off * (src->ld ? src->ld : src->shape[1]) * es;
    }
    v->nbytes = (size_t) rows * (src->ndim == 2 ? v->shape[1] : 1) * es;
    return v;
}


/*
 * A matrix [rows = out, cols = in] of module `name`: the tensor itself,
 * or for Conv1D families a transposed view of the stored [in, out].
 */
static const infer_tensor_t *
infer_model_matrix(infer_model_t *m, const char *name, int64_t rows,
    int64_t cols, char *err, size_t errlen)
{
    infer_model_priv_t    *p = m->priv;
    const infer_tensor_t  *t;
    infer_tensor_t        *v;

    if (!m->cfg.family->conv1d) {
        return infer_model_need(m, name, rows, cols, err, errlen);
    }
    t = infer_model_need(m, name, cols, rows, err, errlen);
    if (t == NULL) {
        return NULL;
    }
    assert(p->n_views < p->max_views);
    v = &p->views[p->n_views++];
    *v = *t;
    v->shape[0] = rows;
    v->shape[1] = cols;
    v->ld = rows;
    v->transposed = 1;
    return v;
}


/* prefix + (layer >= 0: the family's layer path) + module + suffix */
static const char *
infer_model_name(infer_model_t *m, char *buf, size_t len, int layer,
    const char *module, const char *suffix)
{
    infer_model_priv_t *p = m->priv;
    char                lp[64] = "";

    if (layer >= 0) {
        snprintf(lp, sizeof(lp), m->cfg.family->layer, layer);
    }
    snprintf(buf, len, "%s%s%s%s", p->prefix, lp, module, suffix);
    return buf;
}


/*
 * Binds layer i's weights by role, following the family's names: split
 * or fused projections (views of the parts), biases and norms as the
 * config says.
 */
static int
infer_model_bind_layer(infer_model_t *m, int i, char *err, size_t errlen)
{
    const infer_family_t   *fam = m->cfg.family;
    infer_model_config_t   *c = &m->cfg;
    infer_layer_weights_t  *l = &m->layers[i];
    int64_t                 h = c->hidden_size, in = c->intermediate_size;
    int64_t                 q = (int64_t) c->num_heads * c->head_dim;
    int64_t                 kv = (int64_t) c->num_kv_heads * c->head_dim;
    int                     ln = c->norm == INFER_NORM_LAYER;
    const infer_tensor_t   *src;
    char                    n[INFER_NAME_LEN];

#define NAME(module, suffix)                                                \
    infer_model_name(m, n, sizeof(n), i, module, suffix)
#define VEC(field, module, suffix, d0)                                      \
    if ((l->field = infer_model_need(m, NAME(module, suffix), d0, -1, err,  \
                                     errlen)) == NULL)                      \
    {                                                                       \
        return -1;                                                          \
    }
#define MAT(field, module, rows, cols)                                      \
    if ((l->field = infer_model_matrix(m, NAME(module, ".weight"), rows,    \
                                       cols, err, errlen)) == NULL)         \
    {                                                                       \
        return -1;                                                          \
    }
#define FUSED(module, rows, cols)                                           \
    if ((src = fam->conv1d                                                  \
               ? infer_model_matrix(m, NAME(module, ".weight"), rows, cols, \
                                    err, errlen)                            \
               : infer_model_need(m, NAME(module, ".weight"), rows, cols,   \
                                  err, errlen)) == NULL)                    \
    {                                                                       \
        return -1;                                                          \
    }

    VEC(attn_norm, fam->attn_norm, ".weight", h);
    if (ln) {
        VEC(attn_norm_b, fam->attn_norm, ".bias", h);
    }
    if (fam->qkv != NULL) {
        FUSED(fam->qkv, q + 2 * kv, h);
        l->wq = infer_model_view(m, src, 0, q, "q");
        l->wk = infer_model_view(m, src, q, kv, "k");
        l->wv = infer_model_view(m, src, q + kv, kv, "v");
        if (c->qkv_bias) {
            VEC(bv, fam->qkv, ".bias", q + 2 * kv);
            src = l->bv;
            l->bq = infer_model_view(m, src, 0, q, "q");
            l->bk = infer_model_view(m, src, q, kv, "k");
            l->bv = infer_model_view(m, src, q + kv, kv, "v");
        }
    } else {
        MAT(wq, fam->q, q, h);
        MAT(wk, fam->k, kv, h);
        MAT(wv, fam->v, kv, h);
        if (c->qkv_bias) {
            VEC(bq, fam->q, ".bias", q);
            VEC(bk, fam->k, ".bias", kv);
            VEC(bv, fam->v, ".bias", kv);
        }
    }
    MAT(wo, fam->o, h, q);
    if (c->o_bias) {
        VEC(bo, fam->o, ".bias", h);
    }
    if (c->qk_norm) {
        VEC(q_norm, fam->q_norm, ".weight", c->head_dim);
        VEC(k_norm, fam->k_norm, ".weight", c->head_dim);
    }
    if (c->post_norms) {
        VEC(post_attn_norm, fam->post_attn_norm, ".weight", h);
        VEC(post_mlp_norm, fam->post_mlp_norm, ".weight", h);
    }
    VEC(mlp_norm, fam->mlp_norm, ".weight", h);
    if (ln) {
        VEC(mlp_norm_b, fam->mlp_norm, ".bias", h);
    }
    if (c->gated_mlp && fam->gate_up != NULL) {
        FUSED(fam->gate_up, 2 * in, h);
        l->w_gate = infer_model_view(m, src, 0, in, "gate");
        l->w_up = infer_model_view(m, src, in, in, "up");
        if (c->mlp_bias) {
            VEC(b_up, fam->gate_up, ".bias", 2 * in);
            src = l->b_up;
            l->b_gate = infer_model_view(m, src, 0, in, "gate");
            l->b_up = infer_model_view(m, src, in, in, "up");
        }
    } else {
        if (c->gated_mlp) {
            MAT(w_gate, fam->gate, in, h);
            if (c->mlp_bias) {
                VEC(b_gate, fam->gate, ".bias", in);
            }
        }
        MAT(w_up, fam->up, in, h);
        if (c->mlp_bias) {
            VEC(b_up, fam->up, ".bias", in);
        }
    }
    MAT(w_down, fam->down, h, in);
    if (c->mlp_bias) {
        VEC(b_down, fam->down, ".bias", h);
    }
#undef NAME
#undef VEC
#undef MAT
#undef FUSED
    return 0;
}


static int
infer_model_bind(infer_model_t *m, char *err, size_t errlen)
{
    infer_model_priv_t    *p = m->priv;
    infer_model_config_t  *c = &m->cfg;
    const infer_family_t  *fam = c->family;
    char                   n[INFER_NAME_LEN];
    int                    i;

    /* the prefix the checkpoint uses: the first whose embedding exists */
    p->prefix = fam->prefix[0];
    for (i = 0; i < 2 && fam->prefix[i] != NULL; i++) {
        snprintf(n, sizeof(n), "%s%s.weight", fam->prefix[i], fam->embed);
        if (infer_st_find(&p->st, n) != NULL) {
            p->prefix = fam->prefix[i];
            break;
        }
    }
    p->max_views = c->num_layers * INFER_VIEWS_PER_LAYER;
    p->views = calloc(p->max_views, sizeof(*p->views));
    p->view_names = calloc(p->max_views, INFER_NAME_LEN);
    m->layers = calloc(c->num_layers, sizeof(*m->layers));
    if (p->views == NULL || p->view_names == NULL || m->layers == NULL) {
        snprintf(err, errlen, "%s: out of memory", p->weights);
        return -1;
    }

    m->embed = infer_model_need(m, infer_model_name(m, n, sizeof(n), -1,
                                                    fam->embed, ".weight"),
                                c->vocab_size, c->hidden_size, err, errlen);
    if (m->embed == NULL) {
        return -1;
    }
    if (c->learned_pos) {
        m->pos_embed = infer_model_need(m, infer_model_name(m, n, sizeof(n),
                                            -1, fam->pos_embed, ".weight"),
                                        c->max_position, c->hidden_size, err,
                                        errlen);
        if (m->pos_embed == NULL) {
            return -1;
        }
    }
    m->final_norm = infer_model_need(m, infer_model_name(m, n, sizeof(n),
                                         -1, fam->final_norm, ".weight"),
                                     c->hidden_size, -1, err, errlen);
    if (m->final_norm == NULL) {
        return -1;
    }
    if (c->norm == INFER_NORM_LAYER) {
        m->final_norm_b = infer_model_need(m, infer_model_name(m, n,
                                               sizeof(n), -1, fam->final_norm,
                                               ".bias"),
                                           c->hidden_size, -1, err, errlen);
        if (m->final_norm_b == NULL) {
            return -1;
        }
    }
    /* Hugging Face ties lm_head to the embedding whenever the config says
     * so, even if the file also carries an lm_head tensor; the head sits
     * outside the base model, so it has no prefix. */
    snprintf(n, sizeof(n), "%s.weight", fam->lm_head);
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
    } else if (infer_st_find(&p->st, n) == NULL) {
        snprintf(err, errlen, "%s: tensor '%s' missing and "
                 "tie_word_embeddings is false", p->weights, n);
        return -1;
    } else {
        m->lm_head = infer_model_need(m, n, c->vocab_size, c->hidden_size,
                                      err, errlen);
        if (m->lm_head == NULL) {
            return -1;
        }
    }
    for (i = 0; i < c->num_layers; i++) {
        if (infer_model_bind_layer(m, i, err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
}


int
infer_model_open(const char *dir, infer_model_t **out, char *err,
    size_t errlen)
{
    infer_model_t       *m;
    infer_model_priv_t  *p;

    *out = NULL;
    m = calloc(1, sizeof(*m));
    p = calloc(1, sizeof(*p));
    if (m == NULL || p == NULL) {
        free(m);
        free(p);
        snprintf(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    m->priv = p;
    if (infer_model_read_config(dir, &m->cfg, err, errlen) != 0
        || infer_model_map(dir, p, err, errlen) != 0
        || infer_model_bind(m, err, errlen) != 0)
    {
        infer_model_close(m);
        return -1;
    }
    *out = m;
    return 0;
}


void
infer_model_close(infer_model_t *m)
{
    infer_model_priv_t *p;

    if (m == NULL) {
        return;
    }
    p = m->priv;
    infer_st_free(&p->st);
    free(p->weights);
    free(p->views);
    free(p->view_names);
    free(p);
    free(m->layers);
    free(m);
}


const infer_tensor_t *
infer_model_tensor(const infer_model_t *m, const char *name)
{
    return infer_st_find(&((const infer_model_priv_t *) m->priv)->st, name);
}


/* ---- number formats --------------------------------------------------- */

/*
 * float16 -> float32 bits, exact: a normal number rebiased, inf/nan with
 * its payload, zero or subnormal as mant x 2^-24 (exact in float).  In
 * masks rather than branches, so that the row loops below vectorize.
 */
static inline uint32_t
half_bits(uint32_t h)
{
    uint32_t sign = (h & 0x8000) << 16, e = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff, sub;
    uint32_t is_sub = 0u - (e == 0), is_inf = 0u - (e == 0x1f);
    float    f = (float) mant * 0x1p-24f;

    memcpy(&sub, &f, 4);
    return sign | (sub & is_sub) | ((0x7f800000 | mant << 13) & is_inf)
           | (((e + 112) << 23 | mant << 13) & ~(is_sub | is_inf));
}


/* float32 bits -> bfloat16: round to nearest, ties to even; a nan stays
 * a (quiet) nan with its sign. */
static inline uint16_t
bf16_bits(uint32_t x)
{
    return (x & 0x7fffffff) > 0x7f800000
           ? (uint16_t) ((x >> 16) | 0x0040)
           : (uint16_t) ((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}


float
infer_half_to_float(uint16_t h)
{
    uint32_t x = half_bits(h);
    float    f;

    memcpy(&f, &x, 4);
    return f;
}


uint16_t
infer_float_to_half(float f)
{
    uint32_t x, sign, ax, e, mant, shift, q, rem, half;

    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000;
    ax = x & 0x7fffffff;
    if (ax > 0x7f800000) {
        return sign | 0x7e00 | ((ax >> 13) & 0x3ff);   /* quiet nan */
    }
    if (ax >= 0x477ff000) {
        return sign | 0x7c00;           /* >= 65520 rounds to inf */
    }
    e = ax >> 23;
    if (e < 113) {
        /* below 2^-14: a half subnormal, in units of 2^-24 */
        if (e < 102) {
            return sign;                /* below 2^-25: rounds to zero */
        }
        mant = (ax & 0x7fffff) | 0x800000;
        shift = 126 - e;
        q = mant >> shift;
        rem = mant & ((1u << shift) - 1);
        half = 1u << (shift - 1);
    } else {
        q = (ax - (112u << 23)) >> 13;
        rem = ax & 0x1fff;
        half = 0x1000;
    }
    /* round to nearest, ties to even; a carry may step into the exponent,
     * which is the correct next value */
    if (rem > half || (rem == half && (q & 1))) {
        q++;
    }
    return sign | q;
}


float
infer_bf16_to_float(uint16_t h)
{
    uint32_t x = (uint32_t) h << 16;
    float    f;

    memcpy(&f, &x, 4);
    return f;
}


uint16_t
infer_float_to_bf16(float f)
{
    uint32_t x;

    memcpy(&x, &f, 4);
    return bf16_bits(x);
}


/*
 * Rows of a checkpoint converted at load, vectorized for AVX2 where the
 * CPU has it (the mapping may be unaligned: loads through memcpy).  Read
 * element by element through infer_tensor_elem, TinyLlama-1.1B's float16
 * weights took most of a 10-17 s start-up (now 4-7 s, int8 included).
 * This one: float16 (half 1) or bfloat16 (0) to float32.
 */
__attribute__((target_clones("arch=x86-64-v3", "default")))
static void
row16_to_f32(const unsigned char *src, int half, int64_t n, float *dst)
{
    int64_t  i;
    uint16_t h;
    uint32_t x;

    if (half) {
#pragma omp simd
        for (i = 0; i < n; i++) {
            memcpy(&h, src + 2 * i, 2);
            x = half_bits(h);
            memcpy(dst + i, &x, 4);
        }
        return;
    }
#pragma omp simd
    for (i = 0; i < n; i++) {
        memcpy(&h, src + 2 * i, 2);
        x = (uint32_t) h << 16;
        memcpy(dst + i, &x, 4);
    }
}


/* float32 (f32 1) or float16 (0) rows to bfloat16 */
__attribute__((target_clones("arch=x86-64-v3", "default")))
static void
row_to_bf16(const unsigned char *src, int f32, int64_t n, uint16_t *dst)
{
    int64_t  i;
    uint16_t h;
    uint32_t x;

    if (f32) {
    #pragma omp simd
    for (i = 0; i < n; i++) {
            memcpy(&x, src + 4 * i, 4);
            dst[i] = bf16_bits(x);
        }
        return;
    }
#pragma omp simd
    for (i = 0; i < n; i++) {
        memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_bits(half_bits(h));
    }
}


/* ---- tensor blocks ---------------------------------------------------- */

static float
infer_tensor_elem(const unsigned char *p, infer_dtype_t dt)
{
    uint16_t h;
    float    f;

    if (dt == INFER_DT_F32) {
        memcpy(&f, p, 4);
        return f;
    }
    memcpy(&h, p, 2);
    return dt == INFER_DT_F16 ? infer_half_to_float(h)
                              : infer_bf16_to_float(h);
}


/* Element (r, c) of a tensor or view; the mapping may be unaligned, so
 * elements are read with memcpy. */
static const unsigned char *
infer_tensor_at(const infer_tensor_t *t, int64_t r, int64_t c)
{
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    int64_t ld = t->ld ? t->ld : cols;
    int64_t off = t->transposed ? c * ld + r : r * ld + c;

    return (const unsigned char *) t->data
           + off * (int64_t) infer_dtype_size(t->dtype);
}


static void
infer_tensor_check_block(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc)
{
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1;
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];

    assert(t->ndim == 1 || t->ndim == 2);
    assert(r0 >= 0 && nr >= 0 && r0 + nr <= rows);
    assert(c0 >= 0 && nc >= 0 && c0 + nc <= cols);
    (void) rows;
    (void) cols;
}


void
infer_tensor_read_f32(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc, float *dst)
{
    const unsigned char *src;
    int64_t              r, c;

    infer_tensor_check_block(t, r0, nr, c0, nc);
    for (r = 0; r < nr; r++) {
        if (t->transposed) {
            for (c = 0; c < nc; c++) {
                dst[r * nc + c] = infer_tensor_elem(
                    infer_tensor_at(t, r0 + r, c0 + c), t->dtype);
            }
            continue;
        }
        src = infer_tensor_at(t, r0 + r, c0);
        if (t->dtype == INFER_DT_F32) {
            memcpy(dst + r * nc, src, nc * 4);
        } else {
            row16_to_f32(src, t->dtype == INFER_DT_F16, nc, dst + r * nc);
        }
    }
}


void
infer_tensor_read_f16(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc, uint16_t *dst)
{
    const unsigned char *src;
    int64_t              r, c;
    size_t               es = infer_dtype_size(t->dtype);

    infer_tensor_check_block(t, r0, nr, c0, nc);
    for (r = 0; r < nr; r++) {
        if (t->transposed) {
            for (c = 0; c < nc; c++) {
                dst[r * nc + c] = infer_float_to_half(infer_tensor_elem(
                    infer_tensor_at(t, r0 + r, c0 + c), t->dtype));
            }
            continue;
        }
        src = infer_tensor_at(t, r0 + r, c0);
        if (t->dtype == INFER_DT_F16) {
            memcpy(dst + r * nc, src, nc * 2);
            continue;
        }
        for (c = 0; c < nc; c++) {
            dst[r * nc + c] = infer_float_to_half(
                infer_tensor_elem(src + c * es, t->dtype));
        }
    }
}


void
infer_tensor_read_bf16(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc, uint16_t *dst)
{
    const unsigned char *src;
    int64_t              r, c;

    infer_tensor_check_block(t, r0, nr, c0, nc);
    for (r = 0; r < nr; r++) {
        if (t->transposed) {
            for (c = 0; c < nc; c++) {
                dst[r * nc + c] = infer_float_to_bf16(infer_tensor_elem(
                    infer_tensor_at(t, r0 + r, c0 + c), t->dtype));
            }
            continue;
        }
        src = infer_tensor_at(t, r0 + r, c0);
        if (t->dtype == INFER_DT_BF16) {
            memcpy(dst + r * nc, src, nc * 2);
        } else {
            row_to_bf16(src, t->dtype == INFER_DT_F32, nc, dst + r * nc);
        }
    }
}


const uint16_t *
infer_tensor_bf16_rows(const infer_tensor_t *t, int64_t r0)
{
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];

    if (t->dtype != INFER_DT_BF16 || t->transposed
        || (t->ld != 0 && t->ld != cols)
        || ((uintptr_t) t->data % sizeof(uint16_t)) != 0)
    {
        return NULL;
    }
    return (const uint16_t *) infer_tensor_at(t, r0, 0);
}


const float *
infer_tensor_f32_rows(const infer_tensor_t *t, int64_t r0)
{
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];

    if (t->dtype != INFER_DT_F32 || t->transposed
        || (t->ld != 0 && t->ld != cols)
        || ((uintptr_t) t->data % sizeof(float)) != 0)
    {
        return NULL;
    }
    return (const float *) infer_tensor_at(t, r0, 0);
}
