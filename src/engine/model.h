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
} infer_tensor_t;

typedef enum {
    INFER_ARCH_LLAMA = 0,       /* llama, mistral */
    INFER_ARCH_QWEN2            /* llama + q/k/v bias */
} infer_arch_t;

typedef struct {
    char     model_type[32];
    infer_arch_t arch;
    int      vocab_size;
    int      hidden_size;
    int      intermediate_size;
    int      num_layers;
    int      num_heads;
    int      num_kv_heads;
    int      head_dim;
    int      max_position;
    double   rms_norm_eps;
    double   rope_theta;
    int      tie_word_embeddings;
    int      qkv_bias;
    int      bos_token_id;          /* -1 if none */
    int      eos_token_ids[8];      /* generation_config.json wins */
    int      n_eos;
} infer_model_config_t;

typedef struct {
    const infer_tensor_t *attn_norm;
    const infer_tensor_t *wq, *wk, *wv, *wo;
    const infer_tensor_t *bq, *bk, *bv;          /* NULL unless qkv_bias */
    const infer_tensor_t *mlp_norm;
    const infer_tensor_t *w_gate, *w_up, *w_down;
} infer_layer_weights_t;

typedef struct infer_model {
    infer_model_config_t    cfg;
    const infer_tensor_t   *embed;       /* [vocab, hidden] */
    const infer_tensor_t   *final_norm;  /* [hidden] */
    const infer_tensor_t   *lm_head;     /* [vocab, hidden]; == embed if tied */
    infer_layer_weights_t  *layers;      /* [num_layers] */
    void                   *priv;        /* mappings and tensor table */
} infer_model_t;

/* Opens and validates a model directory.  Every failure fills err with a
 * message naming the file and the field or tensor. */
int infer_model_open(const char *dir, infer_model_t **out, char *err,
    size_t errlen);
void infer_model_close(infer_model_t *m);

/* Looks up any tensor by name (NULL if absent). */
const infer_tensor_t *infer_model_tensor(const infer_model_t *m,
    const char *name);

/* Converts the block rows [r0, r0+nr) x cols [c0, c0+nc) of a 2-D tensor
 * (a 1-D tensor is one row) to float32 / IEEE half, row-major into dst. */
void infer_tensor_read_f32(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc, float *dst);
void infer_tensor_read_f16(const infer_tensor_t *t, int64_t r0, int64_t nr,
    int64_t c0, int64_t nc, uint16_t *dst);

float infer_half_to_float(uint16_t h);
uint16_t infer_float_to_half(float f);
float infer_bf16_to_float(uint16_t h);
uint16_t infer_float_to_bf16(float f);

#endif
