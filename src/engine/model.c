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
#define INFER_MAX_LAYERS  4096
#define INFER_REQUIRED    INT_MIN

typedef struct {
    infer_st_set_t  st;
    char           *weights;     /* model.safetensors or the index */
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


/* ---- config.json ------------------------------------------------------ */

static int
infer_cfg_int(json_t *root, const char *file, const char *key, int def,
    int min, int max, int *out, char *err, size_t errlen)
{
    json_t     *v = json_object_get(root, key);
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


/* RoPE variants other than the plain one change the math: refuse them.
 * Older configs say rope_theta and rope_scaling; transformers 5 writes
 * rope_parameters {rope_type, rope_theta}. */
static int
infer_cfg_rope(json_t *root, const char *file, infer_model_config_t *c,
    char *err, size_t errlen)
{
    json_t     *rs = json_object_get(root, "rope_scaling");
    json_t     *rp = json_object_get(root, "rope_parameters");
    json_t     *type;

    if (rs != NULL && !json_is_null(rs)) {
        snprintf(err, errlen, "%s: rope_scaling is not supported (only "
                 "plain RoPE)", file);
        return -1;
    }
    if (infer_cfg_real(root, file, "rope_theta", 10000.0, &c->rope_theta,
                       err, errlen) != 0)
    {
        return -1;
    }
    if (rp == NULL || json_is_null(rp)) {
        return 0;
    }
    if (!json_is_object(rp)) {
        snprintf(err, errlen, "%s: field 'rope_parameters' must be an "
                 "object", file);
        return -1;
    }
    type = json_object_get(rp, "rope_type");
    if (type != NULL && !(json_is_string(type)
                          && strcmp(json_string_value(type), "default") == 0))
    {
        snprintf(err, errlen, "%s: rope_parameters.rope_type %.32s is not "
                 "supported (only plain RoPE, \"default\")", file,
                 json_is_string(type) ? json_string_value(type) : "?");
        return -1;
    }
    return infer_cfg_real(rp, file, "rope_theta", c->rope_theta,
                          &c->rope_theta, err, errlen);
}


/* Features that Hugging Face implements for these model types and we do
 * not: each is refused by name rather than silently computed wrong. */
static int
infer_cfg_refuse(json_t *root, const char *file, infer_model_config_t *c,
    char *err, size_t errlen)
{
    json_t *act = json_object_get(root, "hidden_act");
    int     b, sw;

    if (act != NULL && !(json_is_string(act)
                         && strcmp(json_string_value(act), "silu") == 0))
    {
        snprintf(err, errlen, "%s: hidden_act %.32s is not supported (only "
                 "silu)", file,
                 json_is_string(act) ? json_string_value(act) : "?");
        return -1;
    }
    if (infer_cfg_bool(root, file, "mlp_bias", 0, &b, err, errlen) != 0) {
        return -1;
    }
    if (b) {
        snprintf(err, errlen, "%s: mlp_bias true is not supported", file);
        return -1;
    }
    if (c->arch == INFER_ARCH_LLAMA && strcmp(c->model_type, "llama") == 0) {
        if (infer_cfg_bool(root, file, "attention_bias", 0, &b, err, errlen)
            != 0)
        {
            return -1;
        }
        if (b) {
            snprintf(err, errlen, "%s: attention_bias true is not supported "
                     "for llama", file);
            return -1;
        }
    }
    if (strcmp(c->model_type, "mistral") == 0) {
        /* MistralConfig defaults sliding_window to 4096; a window at least
         * as long as the context never masks anything. */
        if (infer_cfg_int(root, file, "sliding_window", 4096, 1, INT_MAX,
                          &sw, err, errlen) != 0)
        {
            return -1;
        }
        if (json_is_null(json_object_get(root, "sliding_window"))) {
            sw = INT_MAX;
        }
        if (sw < c->max_position) {
            snprintf(err, errlen, "%s: sliding_window %d (< "
                     "max_position_embeddings %d) is not supported", file,
                     sw, c->max_position);
            return -1;
        }
    }
    if (c->arch == INFER_ARCH_QWEN2) {
        if (infer_cfg_bool(root, file, "use_sliding_window", 0, &b, err,
                           errlen) != 0)
        {
            return -1;
        }
        if (b) {
            snprintf(err, errlen, "%s: use_sliding_window true is not "
                     "supported", file);
            return -1;
        }
    }
    return 0;
}


static int
infer_cfg_shape(json_t *root, const char *file, infer_model_config_t *c,
    int max_pos_default, char *err, size_t errlen)
{
    if (infer_cfg_int(root, file, "vocab_size", INFER_REQUIRED, 1,
                      INFER_MAX_DIM, &c->vocab_size, err, errlen) != 0
        || infer_cfg_int(root, file, "hidden_size", INFER_REQUIRED, 1,
                         INFER_MAX_DIM, &c->hidden_size, err, errlen) != 0
        || infer_cfg_int(root, file, "intermediate_size", INFER_REQUIRED, 1,
                         INFER_MAX_DIM, &c->intermediate_size, err,
                         errlen) != 0
        || infer_cfg_int(root, file, "num_hidden_layers", INFER_REQUIRED, 1,
                         INFER_MAX_LAYERS, &c->num_layers, err, errlen) != 0
        || infer_cfg_int(root, file, "num_attention_heads", INFER_REQUIRED,
                         1, INFER_MAX_DIM, &c->num_heads, err, errlen) != 0
        || infer_cfg_int(root, file, "num_key_value_heads", c->num_heads, 1,
                         c->num_heads, &c->num_kv_heads, err, errlen) != 0
        || infer_cfg_int(root, file, "max_position_embeddings",
                         max_pos_default, 1, INT_MAX, &c->max_position, err,
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
    if (json_object_get(root, "head_dim") == NULL
        || json_is_null(json_object_get(root, "head_dim")))
    {
        if (c->hidden_size % c->num_heads != 0) {
            snprintf(err, errlen, "%s: hidden_size %d is not a multiple of "
                     "num_attention_heads %d and head_dim is not given", file,
                     c->hidden_size, c->num_heads);
            return -1;
        }
        c->head_dim = c->hidden_size / c->num_heads;
    } else if (infer_cfg_int(root, file, "head_dim", INFER_REQUIRED, 2,
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


static int
infer_model_read_config(const char *dir, infer_model_config_t *c, char *err,
    size_t errlen)
{
    char        file[4096], gfile[4096];
    json_t     *root, *gen = NULL, *mt, *eos;
    int         rc = -1, max_pos, tie;

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
    mt = json_object_get(root, "model_type");
    if (!json_is_string(mt)) {
        snprintf(err, errlen, "%s: field 'model_type' missing", file);
        goto done;
    }
    snprintf(c->model_type, sizeof(c->model_type), "%s",
             json_string_value(mt));
    /* Defaults are those of the transformers config class of each type. */
    if (strcmp(c->model_type, "llama") == 0) {
        c->arch = INFER_ARCH_LLAMA;
        max_pos = 2048;
    } else if (strcmp(c->model_type, "mistral") == 0) {
        c->arch = INFER_ARCH_LLAMA;
        max_pos = 4096 * 32;
    } else if (strcmp(c->model_type, "qwen2") == 0) {
        c->arch = INFER_ARCH_QWEN2;
        max_pos = 32768;
    } else {
        snprintf(err, errlen, "%s: model_type '%.32s' is not supported "
                 "(llama, mistral, qwen2)", file, json_string_value(mt));
        goto done;
    }
    c->qkv_bias = c->arch == INFER_ARCH_QWEN2;
    if (infer_cfg_shape(root, file, c, max_pos, err, errlen) != 0
        || infer_cfg_refuse(root, file, c, err, errlen) != 0
        || infer_cfg_rope(root, file, c, err, errlen) != 0
        || infer_cfg_real(root, file, "rms_norm_eps", 1e-6, &c->rms_norm_eps,
                          err, errlen) != 0
        || infer_cfg_bool(root, file, "tie_word_embeddings", 0, &tie, err,
                          errlen) != 0
        || infer_cfg_int(root, file, "bos_token_id", -1, 0,
                         c->vocab_size - 1, &c->bos_token_id, err,
                         errlen) != 0
        || infer_cfg_eos(json_object_get(root, "eos_token_id"), file, c, err,
                         errlen) != 0)
    {
        goto done;
    }
    c->tie_word_embeddings = tie;
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


/* Finds a tensor the architecture needs and checks its shape against the
 * config (d1 < 0: a vector of d0). */
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


static int
infer_model_bind_layer(infer_model_t *m, int i, char *err, size_t errlen)
{
    infer_model_config_t   *c = &m->cfg;
    infer_layer_weights_t  *l = &m->layers[i];
    int64_t                 h = c->hidden_size, in = c->intermediate_size;
    int64_t                 q = (int64_t) c->num_heads * c->head_dim;
    int64_t                 kv = (int64_t) c->num_kv_heads * c->head_dim;
    char                    n[160];

#define NEED(field, suffix, d0, d1)                                          \
    snprintf(n, sizeof(n), "model.layers.%d.%s", i, suffix);                \
    if ((l->field = infer_model_need(m, n, d0, d1, err, errlen)) == NULL) { \
        return -1;                                                          \
    }

    NEED(attn_norm, "input_layernorm.weight", h, -1);
    NEED(wq, "self_attn.q_proj.weight", q, h);
    NEED(wk, "self_attn.k_proj.weight", kv, h);
    NEED(wv, "self_attn.v_proj.weight", kv, h);
    NEED(wo, "self_attn.o_proj.weight", h, q);
    if (c->qkv_bias) {
        NEED(bq, "self_attn.q_proj.bias", q, -1);
        NEED(bk, "self_attn.k_proj.bias", kv, -1);
        NEED(bv, "self_attn.v_proj.bias", kv, -1);
    }
    NEED(mlp_norm, "post_attention_layernorm.weight", h, -1);
    NEED(w_gate, "mlp.gate_proj.weight", in, h);
    NEED(w_up, "mlp.up_proj.weight", in, h);
    NEED(w_down, "mlp.down_proj.weight", h, in);
#undef NEED
    return 0;
}


static int
infer_model_bind(infer_model_t *m, char *err, size_t errlen)
{
    infer_model_priv_t  *p = m->priv;
    infer_model_config_t *c = &m->cfg;
    int                  i;

    m->embed = infer_model_need(m, "model.embed_tokens.weight",
                                c->vocab_size, c->hidden_size, err, errlen);
    m->final_norm = m->embed == NULL ? NULL
                    : infer_model_need(m, "model.norm.weight",
                                       c->hidden_size, -1, err, errlen);
    if (m->final_norm == NULL) {
        return -1;
    }
    /* Hugging Face ties lm_head to the embedding whenever the config says
     * so, even if the file also carries an lm_head tensor. */
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
    } else if (infer_st_find(&p->st, "lm_head.weight") == NULL) {
        snprintf(err, errlen, "%s: tensor 'lm_head.weight' missing and "
                 "tie_word_embeddings is false", p->weights);
        return -1;
    } else {
        m->lm_head = infer_model_need(m, "lm_head.weight", c->vocab_size,
                                      c->hidden_size, err, errlen);
        if (m->lm_head == NULL) {
            return -1;
        }
    }
    m->layers = calloc(c->num_layers, sizeof(*m->layers));
    if (m->layers == NULL) {
        snprintf(err, errlen, "%s: out of memory", p->weights);
        return -1;
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

float
infer_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t) (h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, mant = h & 0x3ff, x;
    float    f;

    if (e == 0) {
        /* zero or subnormal: mant x 2^-24, exact in float */
        f = ldexpf((float) mant, -24);
        return sign ? -f : f;
    }
    if (e == 0x1f) {
        x = sign | 0x7f800000 | mant << 13;     /* inf, or nan + payload */
    } else {
        x = sign | (e + 112) << 23 | mant << 13;
    }
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
    if ((x & 0x7fffffff) > 0x7f800000) {
        return (x >> 16) | 0x0040;      /* quiet nan, keep the sign */
    }
    x += 0x7fff + ((x >> 16) & 1);      /* round to nearest, ties to even */
    return x >> 16;
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


/* Start of row r, column c; the mapping may be unaligned, so elements are
 * read with memcpy. */
static const unsigned char *
infer_tensor_at(const infer_tensor_t *t, int64_t r0, int64_t nr, int64_t c0,
    int64_t nc, int64_t r)
{
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1;
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];

    assert(t->ndim == 1 || t->ndim == 2);
    assert(r0 >= 0 && nr >= 0 && r0 + nr <= rows);
    assert(c0 >= 0 && nc >= 0 && c0 + nc <= cols);
    return (const unsigned char *) t->data
           + ((r0 + r) * cols + c0) * (int64_t) infer_dtype_size(t->dtype);
}


void
infer_tensor_read_f32(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc, float *dst)
{
    const unsigned char *src;
    int64_t              r, c;
    size_t               es = infer_dtype_size(t->dtype);

    for (r = 0; r < nr; r++) {
        src = infer_tensor_at(t, r0, nr, c0, nc, r);
        if (t->dtype == INFER_DT_F32) {
            memcpy(dst + r * nc, src, nc * 4);
            continue;
        }
        for (c = 0; c < nc; c++) {
            dst[r * nc + c] = infer_tensor_elem(src + c * es, t->dtype);
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

    for (r = 0; r < nr; r++) {
        src = infer_tensor_at(t, r0, nr, c0, nc, r);
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
