/*
 * Model directory in Hugging Face layout: config.json,
 * generation_config.json, model.safetensors or sharded safetensors with
 * model.safetensors.index.json.  Tensors stay in the mmap'd files; backends
 * convert what they need (whole or a tensor-parallel slice) at load.
 */
#ifndef INFER_MODEL_H
#define INFER_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "rope_freq.h"

typedef enum {
    INFER_DT_F32 = 0,
    INFER_DT_F16,
    INFER_DT_BF16
} infer_dtype_t;

typedef struct {
    const char     *name;
    const char     *file;       /* file it lives in, for messages */
    infer_dtype_t   dtype;
    int             ndim;       /* 1 or 2 for every tensor we use */
    int64_t         shape[4];
    const void     *data;       /* inside the mapping, bounds-checked */
    size_t          nbytes;
    /*
     * Views (the loader's, never a file's): part of a file tensor that a
     * family stores fused, as one logical weight.  ld: elements between
     * stored rows (0: the row length); transposed: element (r, c) is
     * stored at (c, r), as GPT-2's Conv1D stores [in, out].
     */
    int64_t         ld;
    int             transposed;
} infer_tensor_t;

typedef enum {
    INFER_NORM_RMS = 0,         /* x / rms(x) * w */
    INFER_NORM_LAYER            /* (x - mean) / std * w + b */
} infer_norm_t;

typedef enum {
    INFER_ACT_SILU = 0,         /* silu, swish */
    INFER_ACT_GELU,             /* gelu (erf) */
    INFER_ACT_GELU_TANH         /* gelu_new, gelu_pytorch_tanh */
} infer_act_t;

#define INFER_MAX_LAYERS  4096

typedef struct infer_family infer_family_t;

/*
 * The architecture of a model, read from config.json through its
 * family's row of the table in model.c: what every backend's one forward
 * pass needs to know, as data.
 */
typedef struct {
    char     model_type[32];
    const infer_family_t *family;
    int      vocab_size;
    int      hidden_size;
    int      intermediate_size;
    int      num_layers;
    int      num_heads;
    int      num_kv_heads;
    int      head_dim;
    int      max_position;
    double   rms_norm_eps;          /* of every norm (gpt2: LayerNorm's) */
    double   rope_theta;
    int      tie_word_embeddings;

    infer_norm_t norm;
    float    norm_offset;           /* gemma: scales by (1 + w) */
    int      post_norms;            /* gemma2: sublayer outputs normed */
    int      qk_norm;               /* qwen3: RMSNorm per q and k head */
    int      qkv_bias;              /* q, k, v projections */
    int      o_bias;                /* output projection */
    int      mlp_bias;              /* MLP projections */
    infer_act_t act;
    int      gated_mlp;             /* down(act(gate) * up), else
                                       down(act(up)) */
    int      learned_pos;           /* gpt2: position embedding table */
    float    embed_scale;           /* gemma: sqrt(hidden); else 1 */
    double   attn_scale;            /* scores scale before the softmax */
    int      attn_scale_by_layer;   /* gpt2: scale / (layer + 1) */
    float    attn_softcap;          /* 0: none; else cap tanh(s / cap) */
    float    final_softcap;         /* the same on the logits */
    int      sliding_window;        /* keys (p - window, p]; 0: none */
    unsigned char layer_sliding[INFER_MAX_LAYERS];
    infer_rope_t rope;              /* type NONE with learned_pos */

    int      bos_token_id;          /* -1 if none */
    int      eos_token_ids[8];      /* generation_config.json wins */
    int      n_eos;
} infer_model_config_t;

/*
 * One layer's weights by role; a family that stores some fused (phi3's
 * qkv_proj, gpt2's c_attn) gets views of the parts.  NULL when the
 * family has no such weight.
 */
typedef struct {
    const infer_tensor_t *attn_norm, *attn_norm_b;
    const infer_tensor_t *wq, *wk, *wv, *wo;     /* [out, in] */
    const infer_tensor_t *bq, *bk, *bv, *bo;
    const infer_tensor_t *q_norm, *k_norm;       /* [head_dim] */
    const infer_tensor_t *post_attn_norm;
    const infer_tensor_t *mlp_norm, *mlp_norm_b;
    const infer_tensor_t *w_gate, *w_up, *w_down;
    const infer_tensor_t *b_gate, *b_up, *b_down;
    const infer_tensor_t *post_mlp_norm;
} infer_layer_weights_t;

typedef struct infer_model {
    infer_model_config_t    cfg;
    const infer_tensor_t   *embed;       /* [vocab, hidden] */
    const infer_tensor_t   *pos_embed;   /* [max_position, hidden] or NULL */
    const infer_tensor_t   *final_norm;  /* [hidden] */
    const infer_tensor_t   *final_norm_b;
    const infer_tensor_t   *lm_head;     /* [vocab, hidden]; == embed if tied */
    infer_layer_weights_t  *layers;      /* [num_layers] */
    void                   *priv;        /* mappings and tensor table */
} infer_model_t;

/* The scale of attention scores in a layer, and its sliding window (0:
 * the layer attends to the whole context). */
float infer_model_attn_scale(const infer_model_config_t *c, int layer);
int infer_model_window(const infer_model_config_t *c, int layer);

/* Parses config.json text (file names it in messages) as the loader does,
 * without weights or generation_config.json. */
int infer_model_parse_config(const char *json, const char *file,
    infer_model_config_t *c, char *err, size_t errlen);

/* Opens and validates a model directory.  Every failure fills err with a
 * message naming the file and the field or tensor. */
int infer_model_open(const char *dir, infer_model_t **out, char *err,
    size_t errlen);
void infer_model_close(infer_model_t *m);

/* Looks up any tensor by name (NULL if absent). */
const infer_tensor_t *infer_model_tensor(const infer_model_t *m,
    const char *name);

/* Converts the block rows [r0, r0+nr) x cols [c0, c0+nc) of a 2-D tensor
 * or view (a 1-D tensor is one row) to float32 / IEEE half, row-major
 * into dst. */
void infer_tensor_read_f32(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc, float *dst);
void infer_tensor_read_f16(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc, uint16_t *dst);
/* The same block as bfloat16 (round to nearest even from F32/F16). */
void infer_tensor_read_bf16(const infer_tensor_t *t, int64_t r0,
    int64_t nr, int64_t c0, int64_t nc, uint16_t *dst);
/* Whether rows [r0, r0+nr) lie in memory as one float32 [nr, cols] block
 * (then a backend may point into the mapping instead of copying); the
 * same for a bfloat16 block. */
const float *infer_tensor_f32_rows(const infer_tensor_t *t, int64_t r0);
const uint16_t *infer_tensor_bf16_rows(const infer_tensor_t *t, int64_t r0);

float infer_half_to_float(uint16_t h);
uint16_t infer_float_to_half(float f);
float infer_bf16_to_float(uint16_t h);
uint16_t infer_float_to_bf16(float f);

#endif
