/*
 * Model directories: config.json, generation_config.json and
 * model.safetensors.index.json come from the input (in that order,
 * separated by NUL bytes; a missing or empty part is no file), the weights
 * are a tiny model written once at start-up, whole in model.safetensors
 * and split over two shards for the index to name.  Its shape is vocab 8,
 * hidden 4, intermediate 8, 2 layers, 2 heads of 2, 1 key/value head, with
 * the qwen2 biases and an lm_head, so a config that matches loads.  A model
 * that loads must have every weight the forward pass reads, of the shape
 * the config implies: each is read whole, as the backends do.
 */
#include "fuzz.h"
#include "model.h"
#include "safetensors.h"

#define FUZZ_V   8
#define FUZZ_H   4
#define FUZZ_I   8
#define FUZZ_Q   4          /* heads x head_dim */
#define FUZZ_KV  2

typedef struct {
    const char     *name;       /* "%d" is the layer */
    int64_t         d0, d1;     /* d1 0: a vector */
    infer_dtype_t   dtype;
} fuzz_weight_t;

static const fuzz_weight_t fuzz_top[] = {
    { "model.embed_tokens.weight", FUZZ_V, FUZZ_H, INFER_DT_F32 },
    { "model.norm.weight", FUZZ_H, 0, INFER_DT_F16 },
    { "lm_head.weight", FUZZ_V, FUZZ_H, INFER_DT_BF16 },
};

static const fuzz_weight_t fuzz_layer[] = {
    { "model.layers.%d.input_layernorm.weight", FUZZ_H, 0, INFER_DT_F32 },
    { "model.layers.%d.self_attn.q_proj.weight", FUZZ_Q, FUZZ_H,
      INFER_DT_F16 },
    { "model.layers.%d.self_attn.k_proj.weight", FUZZ_KV, FUZZ_H,
      INFER_DT_BF16 },
    { "model.layers.%d.self_attn.v_proj.weight", FUZZ_KV, FUZZ_H,
      INFER_DT_F32 },
    { "model.layers.%d.self_attn.o_proj.weight", FUZZ_H, FUZZ_Q,
      INFER_DT_F32 },
    { "model.layers.%d.self_attn.q_proj.bias", FUZZ_Q, 0, INFER_DT_F32 },
    { "model.layers.%d.self_attn.k_proj.bias", FUZZ_KV, 0, INFER_DT_F16 },
    { "model.layers.%d.self_attn.v_proj.bias", FUZZ_KV, 0, INFER_DT_F32 },
    { "model.layers.%d.post_attention_layernorm.weight", FUZZ_H, 0,
      INFER_DT_F32 },
    { "model.layers.%d.mlp.gate_proj.weight", FUZZ_I, FUZZ_H,
      INFER_DT_F32 },
    { "model.layers.%d.mlp.up_proj.weight", FUZZ_I, FUZZ_H, INFER_DT_BF16 },
    { "model.layers.%d.mlp.down_proj.weight", FUZZ_H, FUZZ_I,
      INFER_DT_F16 },
};

#define FUZZ_LAYERS  2

static const char *fuzz_parts[] = {
    "config.json", "generation_config.json", "model.safetensors.index.json"
};

static char fuzz_dir[512];

/* Adds one tensor to a safetensors header and its bytes to data. */
static void
fuzz_st_add(json_t *hdr, unsigned char **data, size_t *len,
    const fuzz_weight_t *w, int layer)
{
    static const char  *dt[] = { "F32", "F16", "BF16" };
    char                name[128];
    size_t              n, i;
    int64_t             d1 = w->d1 ? w->d1 : 1;

    snprintf(name, sizeof(name), w->name, layer);
    n = (size_t) (w->d0 * d1) * infer_dtype_size(w->dtype);
    *data = realloc(*data, *len + n);
    FUZZ_CHECK(*data != NULL, "out of memory");
    for (i = 0; i < n; i++) {
        (*data)[*len + i] = (unsigned char) (i * 37 + layer);
    }
    FUZZ_CHECK(json_object_set_new(hdr, name,
                   w->d1 ? json_pack("{s:s,s:[I,I],s:[I,I]}", "dtype",
                                     dt[w->dtype], "shape", w->d0, w->d1,
                                     "data_offsets", (json_int_t) *len,
                                     (json_int_t) (*len + n))
                         : json_pack("{s:s,s:[I],s:[I,I]}", "dtype",
                                     dt[w->dtype], "shape", w->d0,
                                     "data_offsets", (json_int_t) *len,
                                     (json_int_t) (*len + n))) == 0,
               "json_pack");
    *len += n;
}

/* Writes the layers [l0, l1), with the top-level weights when top. */
static void
fuzz_st_write(const char *file, int top, int l0, int l1)
{
    json_t         *hdr = json_object();
    unsigned char  *data = NULL, *out;
    char           *h, path[700];
    size_t          len = 0, hl, i;
    int             l;

    if (top) {
        for (i = 0; i < sizeof(fuzz_top) / sizeof(fuzz_top[0]); i++) {
            fuzz_st_add(hdr, &data, &len, &fuzz_top[i], 0);
        }
    }
    for (l = l0; l < l1; l++) {
        for (i = 0; i < sizeof(fuzz_layer) / sizeof(fuzz_layer[0]); i++) {
            fuzz_st_add(hdr, &data, &len, &fuzz_layer[i], l);
        }
    }
    h = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    FUZZ_CHECK(h != NULL, "json_dumps");
    hl = strlen(h);
    out = malloc(8 + hl + len);
    FUZZ_CHECK(out != NULL, "out of memory");
    for (i = 0; i < 8; i++) {
        out[i] = (unsigned char) ((unsigned long long) hl >> (8 * i));
    }
    memcpy(out + 8, h, hl);
    memcpy(out + 8 + hl, data, len);
    snprintf(path, sizeof(path), "%s/%s", fuzz_dir, file);
    fuzz_write_file(path, out, 8 + hl + len);
    free(out);
    free(h);
    free(data);
    json_decref(hdr);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s", fuzz_tmpdir());
    fuzz_st_write("model.safetensors", 1, 0, FUZZ_LAYERS);
    fuzz_st_write("model-00001-of-00002.safetensors", 1, 0, 1);
    fuzz_st_write("model-00002-of-00002.safetensors", 0, 1, FUZZ_LAYERS);
    return 0;
}

/* Reads a bound weight whole; the asserts in infer_tensor_read_* and ASan
 * on the buffer catch a shape the loader should have refused. */
static void
fuzz_read(const infer_tensor_t *t, int64_t d0, int64_t d1)
{
    float     *f;
    uint16_t  *h;
    int64_t    rows = d1 ? d0 : 1, cols = d1 ? d1 : d0;

    FUZZ_CHECK(t != NULL, "a weight is missing");
    FUZZ_CHECK(t->ndim == (d1 ? 2 : 1) && t->shape[0] == d0
               && (!d1 || t->shape[1] == d1),
               "'%s' has the wrong shape", t->name);
    f = malloc(sizeof(*f) * rows * cols);
    h = malloc(sizeof(*h) * rows * cols);
    FUZZ_CHECK(f != NULL && h != NULL, "out of memory");
    infer_tensor_read_f32(t, 0, rows, 0, cols, f);
    infer_tensor_read_f16(t, 0, rows, 0, cols, h);
    free(f);
    free(h);
}

static void
fuzz_check_model(const infer_model_t *m)
{
    const infer_model_config_t  *c = &m->cfg;
    const infer_layer_weights_t *l;
    int64_t                      q, kv;
    int                          i;

    FUZZ_CHECK(c->vocab_size > 0 && c->hidden_size > 0
               && c->num_layers > 0 && c->num_heads > 0
               && c->num_kv_heads > 0 && c->num_heads % c->num_kv_heads == 0
               && c->head_dim > 0 && c->head_dim % 2 == 0
               && c->max_position > 0, "an impossible shape was accepted");
    FUZZ_CHECK(c->rms_norm_eps > 0 && c->rope_theta > 0,
               "eps %g theta %g", c->rms_norm_eps, c->rope_theta);
    FUZZ_CHECK(c->bos_token_id >= -1 && c->bos_token_id < c->vocab_size,
               "bos %d", c->bos_token_id);
    FUZZ_CHECK(c->n_eos >= 0 && c->n_eos <= 8, "n_eos %d", c->n_eos);
    for (i = 0; i < c->n_eos; i++) {
        FUZZ_CHECK(c->eos_token_ids[i] >= 0
                   && c->eos_token_ids[i] < c->vocab_size, "eos %d",
                   c->eos_token_ids[i]);
    }

    q = (int64_t) c->num_heads * c->head_dim;
    kv = (int64_t) c->num_kv_heads * c->head_dim;
    fuzz_read(m->embed, c->vocab_size, c->hidden_size);
    fuzz_read(m->lm_head, c->vocab_size, c->hidden_size);
    fuzz_read(m->final_norm, c->hidden_size, 0);
    FUZZ_CHECK(!c->tie_word_embeddings || m->lm_head == m->embed,
               "tied but lm_head is not the embedding");
    for (i = 0; i < c->num_layers; i++) {
        l = &m->layers[i];
        fuzz_read(l->attn_norm, c->hidden_size, 0);
        fuzz_read(l->wq, q, c->hidden_size);
        fuzz_read(l->wk, kv, c->hidden_size);
        fuzz_read(l->wv, kv, c->hidden_size);
        fuzz_read(l->wo, c->hidden_size, q);
        if (c->qkv_bias) {
            fuzz_read(l->bq, q, 0);
            fuzz_read(l->bk, kv, 0);
            fuzz_read(l->bv, kv, 0);
        }
        fuzz_read(l->mlp_norm, c->hidden_size, 0);
        fuzz_read(l->w_gate, c->intermediate_size, c->hidden_size);
        fuzz_read(l->w_up, c->intermediate_size, c->hidden_size);
        fuzz_read(l->w_down, c->hidden_size, c->intermediate_size);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    infer_model_t  *m = NULL;
    const uint8_t  *p = data, *end = data + size, *nul;
    char            path[700], err[1024];
    size_t          i;

    for (i = 0; i < sizeof(fuzz_parts) / sizeof(fuzz_parts[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", fuzz_dir, fuzz_parts[i]);
        if (p > end) {
            unlink(path);
            continue;
        }
        nul = memchr(p, '\0', (size_t) (end - p));
        if (nul == NULL || i == sizeof(fuzz_parts) / sizeof(fuzz_parts[0])
                                - 1)
        {
            nul = end;
        }
        if (nul > p) {
            fuzz_write_file(path, p, (size_t) (nul - p));
        } else {
            unlink(path);
        }
        p = nul + 1;
    }

    err[0] = '\0';
    if (infer_model_open(fuzz_dir, &m, err, sizeof(err)) != 0) {
        FUZZ_SAY("refused: %s", err);
        FUZZ_CHECK(m == NULL && err[0] != '\0',
                   "refused without a message or left a model");
        return 0;
    }
    FUZZ_SAY("loaded: %s, %d layers", m->cfg.model_type, m->cfg.num_layers);
    fuzz_check_model(m);
    infer_model_close(m);
    return 0;
}
