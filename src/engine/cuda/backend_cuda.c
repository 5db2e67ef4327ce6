/*
 * CUDA backend: fp16 weights and activations, an fp32 residual stream,
 * fp32 accumulation everywhere (cuBLAS GEMMs with fp32 compute on tensor
 * cores, our kernels for the rest).  dtype=int8 holds the projections as
 * the CPU backend's int8 rows and per-row scales (lay_out, linear).
 * One forward pass for every family, reading the model's configuration
 * as the CPU backend does:
 *
 *     x = embed[token] * embed_scale (+ pos_embed[position])
 *     h = norm(x) * w_attn_norm
 *     per layer:  q, k, v = h Wqkv^T;  + bias, q/k norm, rope(q, k)
 *                 cache <- k, v
 *                 a = attention(q, cache)   (window, soft-cap, scale)
 *                 x += post_norm(a Wo^T + bo);  h = norm(x) * w_mlp_norm
 *                 m = act(h Wgu^T + b)  (gated: act(gate) * up)
 *                 x += post_norm(m Wd^T + bd);  h = norm(x) * w_next
 *     logits = softcap((norm(x) * w_final) lm_head^T)    (rows that need
 *                                                          them)
 *
 * q/k/v and gate/up are fused into one weight each (whatever the file
 * stores: split, fused or Conv1D views), so a layer is four GEMMs; each
 * residual add rides on the next norm's kernel.  Steps whose launch shape
 * repeats (decode: one token per sequence) are captured once as a CUDA
 * graph and replayed; every launch then reads the step's metadata from
 * one device buffer that is refreshed by a single copy before the replay
 * (with the RoPE frequencies of each sequence, when they depend on its
 * length).
 *
 * Tensor parallelism (tp > 1) follows the CPU backend: each rank, one GPU
 * driven by one host thread, holds a Megatron shard (its query/key/value
 * heads and gate/up rows; o_proj and down_proj by input columns) and the
 * KV cache of its kv heads; the two partial products of a layer are
 * summed by an NCCL all-reduce on the rank's stream, and their biases
 * added after it.  Embeddings and norms are replicated; rank 0 alone
 * computes logits and samples.  The KV budget (kv_cache_bytes) covers a
 * block on every rank, as on the CPU, so each GPU holds 1/tp of it.
 * INFER_CUDA_NCCL=1 sends a single rank's all-reduces through NCCL too,
 * to run that path on one GPU.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include "backend.h"
#include "comm_nccl.h"
#include "crew.h"
#include "attention.h"
#include "act.h"
#include "embed.h"
#include "gemm_w8.h"
#include "int8.h"
#include "kvcache.h"
#include "norm.h"
#include "rope.h"
#include "rope_freq.h"
#include "sample.h"
#include "softcap.h"

#define CUDA_GRAPHS_MAX     32
#define CUDA_BLAS_WORKSPACE (32u << 20)
#define CUDA_ALIGN          256

/*
 * dtype=int8: products of up to this many rows read the int8 weights
 * directly (gemm_w8.h: 8 rows a launch, so 16 rows read them twice, as
 * many bytes as fp16 once); more rows (prefill, large decode batches) are
 * bound by math, not bytes, and go to cuBLAS on fp16 tiles widened from
 * the int8 rows, at most CUDA_W8_TILE weights at a time.  Not yet timed
 * on a GPU: bench/gpu.sh is where the crossover belongs.
 */
#define CUDA_W8_ROWS        16
#define CUDA_W8_TILE        ((size_t) 16 << 20)

/* A projection's weights [rows][cols]: fp16, or with dtype=int8 int8 with
 * one float32 scale per row (int8.h). */
typedef struct {
    uint16_t   *f16;
    int8_t     *i8;
    float      *scale;         /* [rows], with i8 */
} cuda_mat_t;

typedef struct {
    uint16_t   *attn_norm, *attn_norm_b;  /* b: LayerNorm's */
    cuda_mat_t  wqkv;          /* [(nh + 2 nkv) hd][hidden] */
    uint16_t   *bqkv;          /* or NULL */
    uint16_t   *q_norm, *k_norm;          /* [hd] or NULL */
    cuda_mat_t  wo;            /* [hidden][nh hd] */
    uint16_t   *bo;            /* [hidden] or NULL */
    uint16_t   *post_attn_norm;           /* or NULL */
    uint16_t   *mlp_norm, *mlp_norm_b;
    cuda_mat_t  w_in;          /* [2 inter][hidden] gate | up, or [inter] */
    uint16_t   *b_in;          /* or NULL */
    cuda_mat_t  w_down;        /* [hidden][inter] */
    uint16_t   *b_down;        /* [hidden] */
    uint16_t   *post_mlp_norm;
    float       scale;         /* of the attention scores */
    int         window;        /* 0: the whole context */
} cuda_layer_t;

/* Launch shape of a step: equal keys replay the same graph. */
typedef struct {
    int         n_tokens;
    int         n_seqs;
    int         n_logits;
    int         max_blocks;
    int         n_tiles;
    int         n_dec;
    int         n_split;
} cuda_shape_t;

typedef struct {
    cuda_shape_t     shape;
    cudaGraphExec_t  exec;         /* NULL: seen once, ran eagerly */
} cuda_graph_t;

/* One step's metadata: offsets (in int32s) into the metadata buffers. */
typedef struct {
    cuda_shape_t shape;
    int          split_len;
    size_t       tokens, positions, seqs, logit_rows, tiles, dec_tok;
    size_t       block_table, freqs, total;
} cuda_plan_t;

typedef struct cuda_backend cuda_backend_t;

/*
 * One GPU's state.  cfg is the model's configuration with num_heads,
 * num_kv_heads and intermediate_size cut to this rank's shard, so every
 * buffer, the KV cache and each launch are sized by it.
 */
typedef struct {
    infer_model_config_t  cfg;
    cuda_backend_t       *be;
    int                   rank;
    int                   inter0;           /* first intermediate column */
    infer_comm_t         *comm;             /* NULL: no all-reduce */
    int                   device;
    cudaStream_t          stream;
    cublasHandle_t        blas;
    void                 *blas_ws;

    void                 *weights;          /* one allocation */
    size_t                weight_bytes;     /* in it, padding excluded */
    uint16_t             *embed;
    uint16_t             *pos_embed;        /* or NULL */
    uint16_t             *final_norm, *final_norm_b;
    uint16_t             *lm_head;
    cuda_layer_t         *layers;
    float                *inv_freq;         /* [rot / 2], or NULL */
    int                   freq_rows;        /* per sequence, in d_meta */
    int                   in_width;         /* gate | up or up columns */

    uint16_t             *kv;               /* [layer][k, v][pool] */
    size_t                pool_elems;
    int                   n_blocks;
    int                   block_size;

    int                   max_tokens;
    int                   max_seqs;
    int                   max_logits;
    float                *x;
    uint16_t             *h, *qkv, *attn, *proj, *gate_up, *act;
    float                *logits;
    float                *part_ml, *part_o;
    uint16_t             *w_tile;           /* int8 rows widened, or NULL */
    size_t                tile_elems;

    int32_t              *d_meta;           /* device and pinned host */
    int32_t              *h_meta;
    size_t                meta_cap;

    void                 *sample_scratch;
    size_t                sample_bytes;
    infer_sample_row_t   *d_rows, *h_rows;
    int32_t              *d_out, *h_out;
    int                   n_kept;           /* rows kept by forward(NULL) */

    int                   use_graphs;
    cuda_graph_t          graphs[CUDA_GRAPHS_MAX];
    int                   n_graphs;

    int                   rc;
    char                  err[512];
} cuda_rank_t;

/*
 * The ranks of a tensor-parallel group.  Rank 0 runs in the caller's
 * thread and alone produces logits and samples; ranks 1.. are a crew that
 * runs the same step on their shards and meets rank 0 in the all-reduces.
 */
struct cuda_backend {
    int                   tp;
    int                   int8;             /* dtype=int8 */
    cuda_rank_t          *ranks;
    infer_comm_t         *comm;

    infer_crew_t          crew;
    const infer_batch_t  *batch;
};

static int
cuda_fail(char *err, size_t errlen, const char *call, cudaError_t rc)
{
    snprintf(err, errlen, "backend=cuda: %s: %s", call,
             cudaGetErrorString(rc));
    return -1;
}

#define CUDA_CHECK(call)                                                    \
    do {                                                                    \
        cudaError_t rc_ = (call);                                           \
        if (rc_ != cudaSuccess) {                                           \
            return cuda_fail(err, errlen, #call, rc_);                      \
        }                                                                   \
    } while (0)

/* Our kernel launchers return a cudaError_t as int. */
#define KERNEL_CHECK(name, call)                                            \
    do {                                                                    \
        int rc_ = (call);                                                   \
        if (rc_ != 0) {                                                     \
            return cuda_fail(err, errlen, name, (cudaError_t) rc_);         \
        }                                                                   \
    } while (0)

static size_t
align_up(size_t n)
{
    return (n + CUDA_ALIGN - 1) & ~(size_t) (CUDA_ALIGN - 1);
}

static int
cuda_alloc(void **p, size_t bytes, const char *what, char *err,
    size_t errlen)
{
    size_t      free_b = 0, total_b = 0;
    cudaError_t rc = cudaMalloc(p, bytes);

    if (rc != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        snprintf(err, errlen, "backend=cuda: cudaMalloc %s (%.1f MiB): %s "
                 "(device has %.1f MiB free of %.1f MiB)", what,
                 bytes / 1048576.0, cudaGetErrorString(rc),
                 free_b / 1048576.0, total_b / 1048576.0);
        return -1;
    }
    return 0;
}

/* ---- loading -------------------------------------------------------- */

/* Rows [r0, r0 + nr) x columns [c0, c0 + nc) of a tensor or view: a
 * rank's shard (a 1-D tensor is one row). */
typedef struct {
    const infer_tensor_t *t;
    int64_t               r0, nr, c0, nc;
} cuda_slice_t;

/*
 * Where a rank's weights go in its one allocation.  load_weights lays
 * them out twice: a dry run (base NULL) that only adds up the sizes, then
 * the run that uploads.
 */
typedef struct {
    char      *base;
    size_t     off;
    size_t     bytes;           /* laid out, padding excluded */
    uint16_t  *stage;           /* host staging: the largest upload */
    float      norm_offset;     /* Gemma's 1 in (1 + w) */
    int        int8;            /* dtype=int8 */
} cuda_loader_t;

/* What put() stores of a tensor's values. */
typedef enum {
    PUT_AS_IS,                  /* fp16 of the file's values */
    PUT_NORM,                   /* a norm's: the family's offset added */
    PUT_INT8_VALUES             /* dtype=int8: its rows quantized, in fp16 */
} cuda_put_t;

/*
 * Row r of a slice's tensor quantized whole (int8.h), into q and *scale:
 * the scale is the whole row's even when the rank holds a block of its
 * columns (o_proj, down_proj under tp), as on the CPU backend, so that
 * the ranks' partial sums add up to the tp=1 product.  row: the tensor's
 * width in floats.
 */
static void
quantize_row(const cuda_slice_t *s, int64_t r, float *row, int8_t *q,
    float *scale)
{
    const infer_tensor_t *t = s->t;
    int64_t               cols = t->ndim == 1 ? t->shape[0] : t->shape[1];

    infer_tensor_read_f32(t, s->r0 + r, 1, 0, cols, row);
    infer_i8_quantize_row(row, (int) cols, q, scale);
}

/* A row of the tensor in floats, and one in int8: quantize_row's. */
static int
row_buffers(const cuda_slice_t *s, float **row, int8_t **q, char *err,
    size_t errlen)
{
    int64_t cols = s->t->ndim == 1 ? s->t->shape[0] : s->t->shape[1];

    *row = malloc((size_t) cols * sizeof(float));
    *q = malloc((size_t) cols);
    if (*row == NULL || *q == NULL) {
        free(*row);
        free(*q);
        snprintf(err, errlen, "backend=cuda: out of host memory");
        return -1;
    }
    return 0;
}

/*
 * Copies slices (stacked by rows: q, k, v or gate, up) to the next place
 * in the allocation as fp16, through the staging buffer; only the shard
 * is read from the mapping.  A norm's weight gets the family's offset
 * first, in float32 as transformers adds it.  PUT_INT8_VALUES stores
 * fp16(scale * q), the values dtype=int8 gives the CPU backend's matrix.
 */
static int
put(cuda_loader_t *ld, uint16_t **dst, const cuda_slice_t *s, int n,
    cuda_put_t kind, char *err, size_t errlen)
{
    size_t    elems = 0, off = 0;
    float    *f, scale;
    int8_t   *q;
    int64_t   j, r;
    uint16_t *out;
    int       i;

    for (i = 0; i < n; i++) {
        elems += (size_t) s[i].nr * s[i].nc;
    }
    *dst = ld->base == NULL ? NULL : (uint16_t *) (ld->base + ld->off);
    ld->off += align_up(elems * 2);
    if (ld->base == NULL) {
        ld->bytes += elems * 2;
        return 0;
    }
    for (i = 0; i < n; i++) {
        out = ld->stage + off;
        if (kind == PUT_NORM && ld->norm_offset != 0.0f) {
            f = malloc((size_t) s[i].nc * sizeof(float));
            if (f == NULL) {
                snprintf(err, errlen, "backend=cuda: out of host memory");
                return -1;
            }
            infer_tensor_read_f32(s[i].t, 0, 1, s[i].c0, s[i].nc, f);
            for (j = 0; j < s[i].nc; j++) {
                out[j] = infer_float_to_half(ld->norm_offset + f[j]);
            }
            free(f);
        } else if (kind == PUT_INT8_VALUES) {
            if (row_buffers(&s[i], &f, &q, err, errlen) != 0) {
                return -1;
            }
            for (r = 0; r < s[i].nr; r++) {
                quantize_row(&s[i], r, f, q, &scale);
                for (j = 0; j < s[i].nc; j++) {
                    out[r * s[i].nc + j] =
                        infer_float_to_half(scale * (float) q[s[i].c0 + j]);
                }
            }
            free(f);
            free(q);
        } else {
            infer_tensor_read_f16(s[i].t, s[i].r0, s[i].nr, s[i].c0,
                                  s[i].nc, out);
        }
        off += (size_t) s[i].nr * s[i].nc;
    }
    CUDA_CHECK(cudaMemcpy(*dst, ld->stage, off * sizeof(uint16_t),
                          cudaMemcpyHostToDevice));
    return 0;
}

/*
 * A projection's slices (stacked by rows, as put's): fp16, or with
 * dtype=int8 quantized row by row (quantize_row) into int8 and its
 * scales, staged through the same buffer (elems bytes fit in its halves).
 */
static int
put_matrix(cuda_loader_t *ld, cuda_mat_t *dst, const cuda_slice_t *s,
    int n, char *err, size_t errlen)
{
    size_t  elems = 0, rows = 0, off = 0, row0 = 0;
    float      *f, *scales;
    int8_t     *q, *stage = (int8_t *) ld->stage;
    int64_t     r;
    int         i;
    cudaError_t rc;

    memset(dst, 0, sizeof(*dst));
    if (!ld->int8) {
        return put(ld, &dst->f16, s, n, PUT_AS_IS, err, errlen);
    }
    for (i = 0; i < n; i++) {
        elems += (size_t) s[i].nr * s[i].nc;
        rows += (size_t) s[i].nr;
    }
    if (ld->base == NULL) {
        ld->off += align_up(elems) + align_up(rows * sizeof(float));
        ld->bytes += elems + rows * sizeof(float);
        return 0;
    }
    dst->i8 = (int8_t *) (ld->base + ld->off);
    ld->off += align_up(elems);
    dst->scale = (float *) (ld->base + ld->off);
    ld->off += align_up(rows * sizeof(float));
    scales = malloc(rows * sizeof(float));
    if (scales == NULL) {
        snprintf(err, errlen, "backend=cuda: out of host memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (row_buffers(&s[i], &f, &q, err, errlen) != 0) {
            free(scales);
            return -1;
        }
        for (r = 0; r < s[i].nr; r++) {
            quantize_row(&s[i], r, f, q, &scales[row0 + r]);
            memcpy(stage + off + r * s[i].nc, q + s[i].c0,
                   (size_t) s[i].nc);
        }
        free(f);
        free(q);
        off += (size_t) s[i].nr * s[i].nc;
        row0 += (size_t) s[i].nr;
    }
    rc = cudaMemcpy(dst->i8, stage, elems, cudaMemcpyHostToDevice);
    if (rc == cudaSuccess) {
        rc = cudaMemcpy(dst->scale, scales, rows * sizeof(float),
                        cudaMemcpyHostToDevice);
    }
    free(scales);
    if (rc != cudaSuccess) {
        return cuda_fail(err, errlen, "cudaMemcpy (int8 weights)", rc);
    }
    return 0;
}

/*
 * The rank's shard (cb->cfg holds its head and column counts): query,
 * key and value heads [rank * heads, +heads) and their biases, gate/up
 * rows and down_proj columns [i0, i0 + inter), o_proj columns of its
 * heads.  Embeddings, norms and the output biases (added after the
 * all-reduce) are replicated; lm_head (when not tied) lives on rank 0
 * only.
 *
 * dtype=int8 makes the projections int8 (put_matrix).  The embedding and
 * lm_head stay fp16 in memory but hold their int8-quantized values, so
 * the model is the CPU backend's dtype=int8 model: the lookup reads one
 * row a token, and the head's product goes to cuBLAS in fp32 logits (the
 * W8A16 kernel writes fp16); their bytes are a small share of a
 * billion-parameter model's.
 */
static int
lay_out(cuda_rank_t *cb, const infer_model_t *m, cuda_loader_t *ld,
    char *err, size_t errlen)
{
    const infer_model_config_t  *c = &cb->cfg;
    const infer_layer_weights_t *lw;
    cuda_layer_t                *ly;
    cuda_put_t                   table;
    int64_t  H = c->hidden_size, I = c->intermediate_size;
    int64_t  qd = (int64_t) c->num_heads * c->head_dim;
    int64_t  kd = (int64_t) c->num_kv_heads * c->head_dim;
    int64_t  q0 = cb->rank * qd, k0 = cb->rank * kd, i0 = cb->inter0;
    int64_t  V = c->vocab_size, hd = c->head_dim;
    int      l, tied = m->lm_head == m->embed;

#define PUT(dst, kind, ...)                                                 \
    do {                                                                    \
        const cuda_slice_t list_[] = { __VA_ARGS__ };                       \
        if (put(ld, &(dst), list_, sizeof(list_) / sizeof(list_[0]), kind,  \
                err, errlen) != 0)                                          \
        {                                                                   \
            return -1;                                                      \
        }                                                                   \
    } while (0)
#define MAT(dst, ...)                                                       \
    do {                                                                    \
        const cuda_slice_t list_[] = { __VA_ARGS__ };                       \
        if (put_matrix(ld, &(dst), list_, sizeof(list_) / sizeof(list_[0]), \
                       err, errlen) != 0)                                   \
        {                                                                   \
            return -1;                                                      \
        }                                                                   \
    } while (0)
#define VEC(dst, t, kind, c0, nc)                                           \
    do {                                                                    \
        (dst) = NULL;                                                       \
        if ((t) != NULL) {                                                  \
            PUT(dst, kind, { t, 0, 1, c0, nc });                            \
        }                                                                   \
    } while (0)

    table = ld->int8 ? PUT_INT8_VALUES : PUT_AS_IS;
    PUT(cb->embed, table, { m->embed, 0, V, 0, H });
    cb->pos_embed = NULL;
    if (m->pos_embed != NULL) {
        PUT(cb->pos_embed, PUT_AS_IS, { m->pos_embed, 0,
                                        m->pos_embed->shape[0], 0, H });
    }
    cb->lm_head = cb->embed;
    if (!tied) {
        cb->lm_head = NULL;
        if (cb->rank == 0) {
            PUT(cb->lm_head, table, { m->lm_head, 0, V, 0, H });
        }
    }
    VEC(cb->final_norm, m->final_norm, PUT_NORM, 0, H);
    VEC(cb->final_norm_b, m->final_norm_b, PUT_AS_IS, 0, H);
    for (l = 0; l < c->num_layers; l++) {
        lw = &m->layers[l];
        ly = &cb->layers[l];
        ly->scale = infer_model_attn_scale(c, l);
        ly->window = infer_model_window(c, l);
        VEC(ly->attn_norm, lw->attn_norm, PUT_NORM, 0, H);
        VEC(ly->attn_norm_b, lw->attn_norm_b, PUT_AS_IS, 0, H);
        MAT(ly->wqkv, { lw->wq, q0, qd, 0, H }, { lw->wk, k0, kd, 0, H },
            { lw->wv, k0, kd, 0, H });
        ly->bqkv = NULL;
        if (lw->bq != NULL) {
            PUT(ly->bqkv, PUT_AS_IS, { lw->bq, 0, 1, q0, qd },
                { lw->bk, 0, 1, k0, kd }, { lw->bv, 0, 1, k0, kd });
        }
        VEC(ly->q_norm, lw->q_norm, PUT_NORM, 0, hd);
        VEC(ly->k_norm, lw->k_norm, PUT_NORM, 0, hd);
        MAT(ly->wo, { lw->wo, 0, H, q0, qd });
        VEC(ly->bo, lw->bo, PUT_AS_IS, 0, H);
        VEC(ly->post_attn_norm, lw->post_attn_norm, PUT_NORM, 0, H);
        VEC(ly->mlp_norm, lw->mlp_norm, PUT_NORM, 0, H);
        VEC(ly->mlp_norm_b, lw->mlp_norm_b, PUT_AS_IS, 0, H);
        ly->b_in = NULL;
        if (lw->w_gate != NULL) {
            MAT(ly->w_in, { lw->w_gate, i0, I, 0, H },
                { lw->w_up, i0, I, 0, H });
            if (lw->b_up != NULL) {
                PUT(ly->b_in, PUT_AS_IS, { lw->b_gate, 0, 1, i0, I },
                    { lw->b_up, 0, 1, i0, I });
            }
        } else {
            MAT(ly->w_in, { lw->w_up, i0, I, 0, H });
            VEC(ly->b_in, lw->b_up, PUT_AS_IS, i0, I);
        }
        MAT(ly->w_down, { lw->w_down, 0, H, i0, I });
        VEC(ly->b_down, lw->b_down, PUT_AS_IS, 0, H);
        VEC(ly->post_mlp_norm, lw->post_mlp_norm, PUT_NORM, 0, H);
    }
#undef PUT
#undef MAT
#undef VEC
    return 0;
}

static int
load_weights(cuda_rank_t *cb, const infer_model_t *m, char *err,
    size_t errlen)
{
    const infer_model_config_t *c = &cb->cfg;
    cuda_loader_t ld;
    int64_t       H = c->hidden_size, V = c->vocab_size, most;
    int64_t       qkv = (int64_t) (c->num_heads + 2 * c->num_kv_heads)
                        * c->head_dim;

    cb->layers = calloc(c->num_layers, sizeof(cuda_layer_t));
    if (cb->layers == NULL) {
        snprintf(err, errlen, "backend=cuda: out of host memory");
        return -1;
    }
    memset(&ld, 0, sizeof(ld));
    ld.norm_offset = c->norm_offset;
    ld.int8 = cb->be->int8;
    if (lay_out(cb, m, &ld, err, errlen) != 0
        || cuda_alloc(&cb->weights, ld.off, "weights", err, errlen) != 0)
    {
        return -1;
    }
    cb->weight_bytes = ld.bytes;
    /* the largest upload: embedding, positions, qkv, gate/up, o, down */
    most = V * H;
    if (m->pos_embed != NULL && (int64_t) c->max_position * H > most) {
        most = (int64_t) c->max_position * H;
    }
    most = most > qkv * H ? most : qkv * H;
    most = most > (int64_t) cb->in_width * H ? most
                                             : (int64_t) cb->in_width * H;
    most = most > H * c->num_heads * c->head_dim ? most
           : H * c->num_heads * c->head_dim;
    ld.stage = malloc((size_t) most * sizeof(uint16_t));
    if (ld.stage == NULL) {
        snprintf(err, errlen, "backend=cuda: out of host memory staging "
                 "weights (%.1f MiB)", most * 2 / 1048576.0);
        return -1;
    }
    ld.base = cb->weights;
    ld.off = 0;
    if (lay_out(cb, m, &ld, err, errlen) != 0) {
        free(ld.stage);
        return -1;
    }
    free(ld.stage);
    return 0;
}

/* ---- setup and teardown ---------------------------------------------- */

static void
rank_release(cuda_rank_t *cb)
{
    int i;

    /* errors are ignored here: there is nothing left to report them to */
    cudaSetDevice(cb->device);
    if (cb->stream != NULL) {
        cudaStreamSynchronize(cb->stream);
    }
    for (i = 0; i < cb->n_graphs; i++) {
        if (cb->graphs[i].exec != NULL) {
            cudaGraphExecDestroy(cb->graphs[i].exec);
        }
    }
    if (cb->blas != NULL) {
        cublasDestroy(cb->blas);
    }
    cudaFree(cb->blas_ws);
    cudaFree(cb->weights);
    cudaFree(cb->inv_freq);
    cudaFree(cb->kv);
    cudaFree(cb->x);
    cudaFree(cb->h);
    cudaFree(cb->qkv);
    cudaFree(cb->attn);
    cudaFree(cb->proj);
    cudaFree(cb->gate_up);
    cudaFree(cb->act);
    cudaFree(cb->logits);
    cudaFree(cb->part_ml);
    cudaFree(cb->part_o);
    cudaFree(cb->w_tile);
    cudaFree(cb->d_meta);
    cudaFreeHost(cb->h_meta);
    cudaFree(cb->sample_scratch);
    cudaFree(cb->d_rows);
    cudaFreeHost(cb->h_rows);
    cudaFree(cb->d_out);
    cudaFreeHost(cb->h_out);
    if (cb->stream != NULL) {
        cudaStreamDestroy(cb->stream);
    }
    cudaGetLastError();
    free(cb->layers);
}

static int
check_config(const infer_model_config_t *c, char *err, size_t errlen)
{
    if (c->num_kv_heads <= 0 || c->num_heads % c->num_kv_heads != 0) {
        snprintf(err, errlen, "backend=cuda: num_attention_heads %d is not "
                 "a multiple of num_key_value_heads %d", c->num_heads,
                 c->num_kv_heads);
        return -1;
    }
    if (c->num_heads / c->num_kv_heads > INFER_ATTN_ROWS) {
        snprintf(err, errlen, "backend=cuda: %d query heads per kv head; "
                 "the attention kernel handles at most %d",
                 c->num_heads / c->num_kv_heads, INFER_ATTN_ROWS);
        return -1;
    }
    if (c->head_dim % 2 != 0 || c->head_dim > INFER_ATTN_MAX_HEAD
        || c->head_dim > INFER_ROPE_MAX_HEAD)
    {
        snprintf(err, errlen, "backend=cuda: head_dim %d unsupported (even, "
                 "at most %d)", c->head_dim, INFER_ATTN_MAX_HEAD);
        return -1;
    }
    return 0;
}

static int
alloc_buffers(cuda_rank_t *cb, char *err, size_t errlen)
{
    const infer_model_config_t *c = &cb->cfg;
    size_t T = cb->max_tokens, H = c->hidden_size, I = c->intermediate_size;
    size_t hd = c->head_dim, nh = c->num_heads, nkv = c->num_kv_heads;
    size_t slots = (size_t) cb->max_seqs * INFER_ATTN_MAX_SPLIT * nh;
    size_t half = c->rope.dim / 2, most;
    float  inv_freq[INFER_ROPE_MAX_HEAD / 2];

    if (cuda_alloc((void **) &cb->x, T * H * 4, "residual", err, errlen)
        || cuda_alloc((void **) &cb->h, T * H * 2, "normed", err, errlen)
        || cuda_alloc((void **) &cb->qkv, T * (nh + 2 * nkv) * hd * 2,
                      "qkv", err, errlen)
        || cuda_alloc((void **) &cb->attn, T * nh * hd * 2, "attention",
                      err, errlen)
        || cuda_alloc((void **) &cb->proj, T * H * 2, "projection", err,
                      errlen)
        || cuda_alloc((void **) &cb->gate_up, T * cb->in_width * 2,
                      "gate_up", err, errlen)
        || cuda_alloc((void **) &cb->act, T * I * 2, "activation", err,
                      errlen)
        || cuda_alloc((void **) &cb->logits,
                      (size_t) cb->max_logits * c->vocab_size * 4, "logits",
                      err, errlen)
        || cuda_alloc((void **) &cb->part_ml, slots * 2 * 4,
                      "attention partials", err, errlen)
        || cuda_alloc((void **) &cb->part_o, slots * hd * 4,
                      "attention partials", err, errlen)
        || cuda_alloc((void **) &cb->d_rows,
                      cb->max_logits * sizeof(infer_sample_row_t),
                      "sampling", err, errlen)
        || cuda_alloc((void **) &cb->d_out, cb->max_logits * 4, "sampling",
                      err, errlen))
    {
        return -1;
    }
    /* dtype=int8: the widened tile of products over CUDA_W8_ROWS rows */
    if (cb->be->int8 && T > CUDA_W8_ROWS) {
        most = (nh + 2 * nkv) * hd * H;
        most = most > cb->in_width * H ? most : cb->in_width * H;
        most = most > H * nh * hd ? most : H * nh * hd;
        most = most > H * I ? most : H * I;
        cb->tile_elems = most < CUDA_W8_TILE ? most : CUDA_W8_TILE;
        if (cuda_alloc((void **) &cb->w_tile, cb->tile_elems * 2,
                       "int8 widening tile", err, errlen) != 0)
        {
            return -1;
        }
    }
    cb->sample_bytes = infer_cuda_sample_scratch_bytes(cb->max_logits,
                                                       c->vocab_size);
    if (cb->sample_bytes == 0) {
        snprintf(err, errlen, "backend=cuda: cub sort scratch size query "
                 "failed");
        return -1;
    }
    if (cuda_alloc(&cb->sample_scratch, cb->sample_bytes, "sampling", err,
                   errlen) != 0)
    {
        return -1;
    }
    CUDA_CHECK(cudaMallocHost((void **) &cb->h_rows,
                              cb->max_logits * sizeof(infer_sample_row_t)));
    CUDA_CHECK(cudaMallocHost((void **) &cb->h_out, cb->max_logits * 4));
    /* RoPE frequencies: once here, or per sequence with each step's
     * metadata when they depend on its length */
    cb->freq_rows = infer_rope_depends_on_length(&c->rope);
    if (c->rope.type != INFER_ROPE_NONE && !cb->freq_rows) {
        if (cuda_alloc((void **) &cb->inv_freq, half * 4, "rope", err,
                       errlen) != 0)
        {
            return -1;
        }
        infer_rope_inv_freq(&c->rope, 1, inv_freq);
        CUDA_CHECK(cudaMemcpy(cb->inv_freq, inv_freq, half * 4,
                              cudaMemcpyHostToDevice));
    }
    return 0;
}

static int
alloc_kv(cuda_rank_t *cb, infer_backend_params_t *p, char *err,
    size_t errlen)
{
    const infer_model_config_t *c = &cb->cfg;
    size_t per_rank = (size_t) c->num_layers * 2 * cb->block_size
                      * c->num_kv_heads * c->head_dim * sizeof(uint16_t);
    /* the budget covers the block on every rank, as on the CPU backend */
    size_t per_block = per_rank * cb->be->tp;
    size_t n = p->kv_cache_bytes / per_block;

    if (n < 1) {
        snprintf(err, errlen, "backend=cuda: kv_cache_bytes %zu holds no "
                 "block (one block of %d tokens takes %zu bytes)",
                 p->kv_cache_bytes, cb->block_size, per_block);
        return -1;
    }
    if (n > INT32_MAX) {
        n = INT32_MAX;
    }
    cb->n_blocks = (int) n;
    cb->pool_elems = n * cb->block_size * c->num_kv_heads * c->head_dim;
    if (cuda_alloc((void **) &cb->kv, n * per_rank, "KV cache", err,
                   errlen) != 0)
    {
        return -1;
    }
    p->n_blocks = cb->n_blocks;
    return 0;
}

/* Stream, cuBLAS, shard, buffers and KV cache of one rank, on its device. */
static int
rank_init(cuda_rank_t *cb, const infer_model_t *m,
    infer_backend_params_t *p, char *err, size_t errlen)
{
    cudaError_t    rc;
    cublasStatus_t st;

#define INIT_CHECK(call)                                                    \
    do {                                                                    \
        rc = (call);                                                        \
        if (rc != cudaSuccess) {                                            \
            return cuda_fail(err, errlen, #call, rc);                       \
        }                                                                   \
    } while (0)

    INIT_CHECK(cudaSetDevice(cb->device));
    INIT_CHECK(cudaStreamCreateWithFlags(&cb->stream,
                                         cudaStreamNonBlocking));
    st = cublasCreate(&cb->blas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cb->blas = NULL;
        snprintf(err, errlen, "backend=cuda: cublasCreate: %s",
                 cublasGetStatusString(st));
        return -1;
    }
    if (cuda_alloc(&cb->blas_ws, CUDA_BLAS_WORKSPACE, "cuBLAS workspace",
                   err, errlen) != 0)
    {
        return -1;
    }
    /* an explicit workspace keeps cuBLAS from allocating while a graph is
     * being captured */
    if ((st = cublasSetStream(cb->blas, cb->stream))
            != CUBLAS_STATUS_SUCCESS
        || (st = cublasSetWorkspace(cb->blas, cb->blas_ws,
                                    CUDA_BLAS_WORKSPACE))
            != CUBLAS_STATUS_SUCCESS)
    {
        snprintf(err, errlen, "backend=cuda: cublasSetStream/"
                 "cublasSetWorkspace: %s", cublasGetStatusString(st));
        return -1;
    }
    INIT_CHECK((cudaError_t) infer_cuda_attention_setup(m->cfg.head_dim));
#undef INIT_CHECK
    if (load_weights(cb, m, err, errlen) != 0
        || alloc_buffers(cb, err, errlen) != 0
        || alloc_kv(cb, p, err, errlen) != 0)
    {
        return -1;
    }
    return 0;
}

/*
 * The devices of the ranks: p->devices[0..tp) (default 0..tp-1), each
 * existing and none twice (NCCL refuses a GPU in two ranks).
 */
static int
pick_devices(const infer_backend_params_t *p, int tp, int count,
    int *devices, char *err, size_t errlen)
{
    int r, q;

    if (p->n_devices > 0 && p->n_devices < tp) {
        snprintf(err, errlen, "backend=cuda: tp=%d needs %d devices, %d "
                 "given", tp, tp, p->n_devices);
        return -1;
    }
    for (r = 0; r < tp; r++) {
        devices[r] = p->n_devices > 0 && p->devices != NULL ? p->devices[r]
                                                            : r;
        if (devices[r] < 0 || devices[r] >= count) {
            snprintf(err, errlen, "backend=cuda: device %d does not exist "
                     "(%d found)", devices[r], count);
            return -1;
        }
        for (q = 0; q < r; q++) {
            if (devices[q] == devices[r]) {
                snprintf(err, errlen, "backend=cuda: device %d given to "
                         "ranks %d and %d", devices[r], q, r);
                return -1;
            }
        }
    }
    return 0;
}

static void rank_job(void *arg, int index);
static void cuda_destroy(infer_backend_t *b);

static int
cuda_init(infer_backend_t *b, const infer_model_t *m,
    infer_backend_params_t *p, char *err, size_t errlen)
{
    const infer_model_config_t *c = &m->cfg;
    cuda_backend_t *be;
    cuda_rank_t    *cb;
    const char     *env;
    cudaError_t     rc;
    int             count = 0, tp = p->tp > 0 ? p->tp : 1, r, graphs;
    int            *devices;

    rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess) {
        snprintf(err, errlen, "backend=cuda: no CUDA device: %s",
                 cudaGetErrorString(rc));
        return -1;
    }
    if (count == 0) {
        snprintf(err, errlen, "backend=cuda: no CUDA device: "
                 "cudaGetDeviceCount found none");
        return -1;
    }
    if (c->num_heads % tp != 0 || c->num_kv_heads % tp != 0) {
        snprintf(err, errlen, "backend=cuda: tp=%d must divide "
                 "num_attention_heads (%d) and num_key_value_heads (%d)",
                 tp, c->num_heads, c->num_kv_heads);
        return -1;
    }
    if (c->intermediate_size < tp) {
        snprintf(err, errlen, "backend=cuda: tp=%d exceeds "
                 "intermediate_size %d", tp, c->intermediate_size);
        return -1;
    }
    if (check_config(c, err, errlen) != 0) {
        return -1;
    }
    if (p->dtype != NULL && strcmp(p->dtype, "auto") != 0
        && strcmp(p->dtype, "f16") != 0 && strcmp(p->dtype, "int8") != 0)
    {
        snprintf(err, errlen, "dtype=%s: the cuda backend holds weights as "
                 "f16 or int8", p->dtype);
        return -1;
    }
    devices = malloc(tp * sizeof(int));
    be = calloc(1, sizeof(*be));
    if (devices == NULL || be == NULL) {
        free(devices);
        free(be);
        snprintf(err, errlen, "backend=cuda: out of memory");
        return -1;
    }
    if (pick_devices(p, tp, count, devices, err, errlen) != 0) {
        free(devices);
        free(be);
        return -1;
    }
    be->tp = tp;
    be->int8 = p->dtype != NULL && strcmp(p->dtype, "int8") == 0;
    b->priv = be;
    be->ranks = calloc(tp, sizeof(cuda_rank_t));
    if (be->ranks == NULL) {
        snprintf(err, errlen, "backend=cuda: out of memory");
        goto failed;
    }

    /* INFER_CUDA_NCCL=1 routes even one rank's all-reduces through NCCL,
     * so the whole tensor-parallel path runs on a single GPU */
    env = getenv("INFER_CUDA_NCCL");
    if ((tp > 1 || (env != NULL && strcmp(env, "1") == 0))
        && infer_comm_nccl_create(tp, devices, &be->comm, err, errlen) != 0)
    {
        goto failed;
    }
    /* NCCL >= 2.9 collectives are capturable, so graphs stay on at tp>1 */
    env = getenv("INFER_CUDA_GRAPHS");
    graphs = env == NULL || strcmp(env, "0") != 0;

    for (r = 0; r < tp; r++) {
        cb = &be->ranks[r];
        cb->be = be;
        cb->rank = r;
        cb->device = devices[r];
        cb->comm = be->comm;
        cb->cfg = *c;
        cb->cfg.num_heads = c->num_heads / tp;
        cb->cfg.num_kv_heads = c->num_kv_heads / tp;
        /* as on the CPU: uneven column counts when tp does not divide */
        cb->inter0 = (int) ((int64_t) c->intermediate_size * r / tp);
        cb->cfg.intermediate_size =
            (int) ((int64_t) c->intermediate_size * (r + 1) / tp)
            - cb->inter0;
        cb->in_width = cb->cfg.intermediate_size * (c->gated_mlp ? 2 : 1);
        cb->block_size = p->block_size > 0 ? p->block_size : 16;
        cb->max_tokens = p->max_batch_tokens > 0 ? p->max_batch_tokens
                                                 : 512;
        cb->max_seqs = p->max_seqs > 0 ? p->max_seqs : 64;
        cb->max_logits = cb->max_seqs < cb->max_tokens ? cb->max_seqs
                                                       : cb->max_tokens;
        cb->use_graphs = graphs;
        if (rank_init(cb, m, p, err, errlen) != 0) {
            goto failed;
        }
    }
    if (infer_crew_init(&be->crew, tp - 1, rank_job, be) != 0) {
        snprintf(err, errlen, "backend=cuda: cannot start the rank threads");
        goto failed;
    }
    p->dtype_used = be->int8 ? "int8" : "f16";
    p->weight_bytes = 0;
    for (r = 0; r < tp; r++) {
        p->weight_bytes += be->ranks[r].weight_bytes;
    }
    if (be->int8) {
        snprintf(p->kernels, sizeof(p->kernels), "int8 products: W8A16 "
                 "kernel up to %d rows, cuBLAS on widened tiles above",
                 CUDA_W8_ROWS);
    }
    free(devices);
    return 0;

failed:
    free(devices);
    cuda_destroy(b);
    return -1;
}

static void
cuda_destroy(infer_backend_t *b)
{
    cuda_backend_t *be = b->priv;
    int             r;

    if (be == NULL) {
        return;
    }
    infer_crew_destroy(&be->crew);
    /* no stream may still run a collective when the communicator goes */
    for (r = 0; be->ranks != NULL && r < be->tp; r++) {
        if (be->ranks[r].stream != NULL) {
            cudaSetDevice(be->ranks[r].device);
            cudaStreamSynchronize(be->ranks[r].stream);
        }
    }
    if (be->comm != NULL) {
        be->comm->ops->destroy(be->comm);
    }
    for (r = 0; be->ranks != NULL && r < be->tp; r++) {
        rank_release(&be->ranks[r]);
    }
    free(be->ranks);
    free(be);
    b->priv = NULL;
}

/* ---- one step ----------------------------------------------------------- */

static int
validate_batch(const cuda_rank_t *cb, const infer_batch_t *bt,
    char *err, size_t errlen)
{
    int     t, s, j, seq, pos, nb, max_ctx;
    int32_t blk;

#define BAD(...)                                                            \
    do {                                                                    \
        int n_ = snprintf(err, errlen, "backend=cuda: batch: ");            \
        snprintf(err + n_, errlen > (size_t) n_ ? errlen - n_ : 0,          \
                 __VA_ARGS__);                                              \
        return -1;                                                          \
    } while (0)

    if (bt->n_tokens < 1 || bt->n_tokens > cb->max_tokens) {
        BAD("%d tokens (1 to max_batch_tokens %d)", bt->n_tokens,
            cb->max_tokens);
    }
    if (bt->n_seqs < 1 || bt->n_seqs > cb->max_seqs) {
        BAD("%d sequences (1 to max_seqs %d)", bt->n_seqs, cb->max_seqs);
    }
    if (bt->max_blocks < 1) {
        BAD("max_blocks %d", bt->max_blocks);
    }
    if (bt->n_logits < 0 || bt->n_logits > bt->n_tokens) {
        BAD("%d logit rows for %d tokens", bt->n_logits, bt->n_tokens);
    }
    max_ctx = bt->max_blocks * cb->block_size;
    for (s = 0; s < bt->n_seqs; s++) {
        if (bt->ctx_len[s] < 1 || bt->ctx_len[s] > max_ctx) {
            BAD("sequence %d: ctx_len %d outside [1, %d]", s,
                bt->ctx_len[s], max_ctx);
        }
        nb = (bt->ctx_len[s] + cb->block_size - 1) / cb->block_size;
        for (j = 0; j < nb; j++) {
            blk = bt->block_table[(size_t) s * bt->max_blocks + j];
            if (blk < 0 || blk >= cb->n_blocks) {
                BAD("sequence %d: block %d is %d (pool has %d)", s, j, blk,
                    cb->n_blocks);
            }
        }
    }
    for (t = 0; t < bt->n_tokens; t++) {
        seq = bt->seq_of_token[t];
        pos = bt->positions[t];
        if (bt->tokens[t] < 0 || bt->tokens[t] >= cb->cfg.vocab_size) {
            BAD("token %d: id %d outside the vocabulary (%d)", t,
                bt->tokens[t], cb->cfg.vocab_size);
        }
        if (seq < 0 || seq >= bt->n_seqs) {
            BAD("token %d: sequence %d of %d", t, seq, bt->n_seqs);
        }
        if (pos < 0 || pos >= bt->ctx_len[seq]) {
            BAD("token %d: position %d outside its context [0, %d)", t,
                pos, bt->ctx_len[seq]);
        }
        /* a tile's last token has its largest position */
        if (t > 0 && bt->seq_of_token[t - 1] == seq
            && bt->positions[t - 1] >= pos)
        {
            BAD("token %d: positions of sequence %d not ascending", t, seq);
        }
    }
    for (j = 0; j < bt->n_logits; j++) {
        if (bt->logit_tokens[j] < 0 || bt->logit_tokens[j] >= bt->n_tokens
            || (j > 0 && bt->logit_tokens[j] <= bt->logit_tokens[j - 1]))
        {
            BAD("logit_tokens[%d] = %d is not an ascending token index", j,
                bt->logit_tokens[j]);
        }
    }
#undef BAD
    return 0;
}

/* Grows the metadata buffers; cached graphs point into them, so they go. */
static int
reserve_meta(cuda_rank_t *cb, size_t ints, char *err, size_t errlen)
{
    int i;

    if (ints <= cb->meta_cap) {
        return 0;
    }
    ints = ints * 2;
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    for (i = 0; i < cb->n_graphs; i++) {
        if (cb->graphs[i].exec != NULL) {
            CUDA_CHECK(cudaGraphExecDestroy(cb->graphs[i].exec));
        }
    }
    cb->n_graphs = 0;
    CUDA_CHECK(cudaFree(cb->d_meta));
    CUDA_CHECK(cudaFreeHost(cb->h_meta));
    cb->d_meta = NULL;
    cb->h_meta = NULL;
    cb->meta_cap = 0;
    if (cuda_alloc((void **) &cb->d_meta, ints * 4, "batch metadata", err,
                   errlen) != 0)
    {
        return -1;
    }
    CUDA_CHECK(cudaMallocHost((void **) &cb->h_meta, ints * 4));
    cb->meta_cap = ints;
    return 0;
}

/*
 * Lays out the step's metadata in h_meta.  Offsets depend on n_tokens and
 * n_logits only, so steps with equal shapes fit the same graph.
 */
static int
plan_step(cuda_rank_t *cb, const infer_batch_t *bt, cuda_plan_t *pl,
    char *err, size_t errlen)
{
    size_t   n = bt->n_tokens, bt_ints, half = cb->cfg.rope.dim / 2;
    int32_t *h;
    int      group = cb->cfg.num_heads / cb->cfg.num_kv_heads, s;

    bt_ints = (size_t) bt->n_seqs * bt->max_blocks;
    pl->tokens = 0;
    pl->positions = n;
    pl->seqs = 2 * n;
    pl->dec_tok = 3 * n;
    pl->logit_rows = 4 * n;
    pl->tiles = 4 * n + bt->n_logits;
    pl->block_table = 8 * n + bt->n_logits;
    pl->freqs = pl->block_table + bt_ints;
    pl->total = pl->freqs + (cb->freq_rows ? (size_t) bt->n_seqs * half : 0);
    if (reserve_meta(cb, pl->total, err, errlen) != 0) {
        return -1;
    }
    h = cb->h_meta;
    memcpy(h + pl->tokens, bt->tokens, n * 4);
    memcpy(h + pl->positions, bt->positions, n * 4);
    memcpy(h + pl->seqs, bt->seq_of_token, n * 4);
    memcpy(h + pl->logit_rows, bt->logit_tokens, (size_t) bt->n_logits * 4);
    memcpy(h + pl->block_table, bt->block_table, bt_ints * 4);
    /* length-dependent RoPE: each sequence's frequencies for its length
     * after this step, as transformers computes them from the largest
     * position of a forward call; float bits in the int32 buffer */
    for (s = 0; cb->freq_rows && s < bt->n_seqs; s++) {
        infer_rope_inv_freq(&cb->cfg.rope, bt->ctx_len[s],
                            (float *) (h + pl->freqs + (size_t) s * half));
    }

    pl->shape.n_tokens = bt->n_tokens;
    pl->shape.n_seqs = bt->n_seqs;
    pl->shape.n_logits = bt->n_logits;
    pl->shape.max_blocks = bt->max_blocks;
    pl->shape.n_split = infer_attn_splits(bt->max_blocks * cb->block_size,
                                          &pl->split_len);
    pl->shape.n_tiles = infer_attn_plan(bt->n_tokens, bt->seq_of_token,
                                        group, pl->shape.n_split,
                                        cb->max_seqs, h + pl->tiles,
                                        h + pl->dec_tok, &pl->shape.n_dec);
    return 0;
}

/*
 * y[t][n] = x[t][k] w[n][k]^T, rows of y ldy apart: row-major operands
 * seen column-major.
 */
static int
gemm(cuda_rank_t *cb, const uint16_t *x, const uint16_t *w, void *y,
    cudaDataType_t y_type, int t, int n, int k, int ldy, const char *what,
    char *err, size_t errlen)
{
    const float    one = 1.0f, zero = 0.0f;
    cublasStatus_t st;

    st = cublasGemmEx(cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, t, k, &one, w,
                      CUDA_R_16F, k, x, CUDA_R_16F, k, &zero, y, y_type,
                      ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "backend=cuda: cublasGemmEx (%s, %d x %d x "
                 "%d): %s", what, t, n, k, cublasGetStatusString(st));
        return -1;
    }
    return 0;
}

/*
 * A projection, y[t][n] = x[t][k] w[n][k]^T in fp16.  int8 weights: up
 * to CUDA_W8_ROWS rows the W8A16 kernel reads them directly; more rows
 * go to cuBLAS, a tile of w's rows at a time widened to fp16 (the tile
 * is reused in stream order, so one buffer serves every projection).
 */
static int
linear(cuda_rank_t *cb, const uint16_t *x, const cuda_mat_t *w, uint16_t *y,
    int t, int n, int k, const char *what, char *err, size_t errlen)
{
    int r0, nr, tile_rows;

    if (w->i8 == NULL) {
        return gemm(cb, x, w->f16, y, CUDA_R_16F, t, n, k, n, what, err,
                    errlen);
    }
    if (t <= CUDA_W8_ROWS) {
        KERNEL_CHECK("infer_cuda_gemm_w8a16",
                     infer_cuda_gemm_w8a16(x, w->i8, w->scale, t, k, n, y,
                                           cb->stream));
        return 0;
    }
    tile_rows = (int) (cb->tile_elems / k);
    for (r0 = 0; r0 < n; r0 += nr) {
        nr = n - r0 < tile_rows ? n - r0 : tile_rows;
        KERNEL_CHECK("infer_cuda_dequant_w8",
                     infer_cuda_dequant_w8(w->i8 + (size_t) r0 * k,
                                           w->scale + r0, nr, k, cb->w_tile,
                                           cb->stream));
        if (gemm(cb, x, cb->w_tile, y + r0, CUDA_R_16F, t, nr, k, n, what,
                 err, errlen) != 0)
        {
            return -1;
        }
    }
    return 0;
}

/* logits[rows][vocab] = h lm_head^T, soft-capped (Gemma-2), in fp32 */
static int
head(cuda_rank_t *cb, const uint16_t *h, int rows, char *err,
    size_t errlen)
{
    const infer_model_config_t *c = &cb->cfg;

    if (gemm(cb, h, cb->lm_head, cb->logits, CUDA_R_32F, rows, c->vocab_size,
             c->hidden_size, c->vocab_size, "lm_head", err, errlen) != 0)
    {
        return -1;
    }
    if (c->final_softcap != 0.0f) {
        KERNEL_CHECK("infer_cuda_softcap",
                     infer_cuda_softcap(cb->logits,
                                        (size_t) rows * c->vocab_size,
                                        c->final_softcap, cb->stream));
    }
    return 0;
}

/*
 * Completes a partial product (o_proj, down_proj over this rank's heads
 * or columns) by summing it over the ranks, in place on the rank's stream.
 * fp16, as the residual add reads it: the sum is then rounded once more
 * than at tp=1, and decode all-reduces (a few KB) are latency-bound, so
 * halving the bytes against fp32 costs nothing in accuracy that matters.
 */
static int
all_reduce(cuda_rank_t *cb, int elems, const char *after, char *err,
    size_t errlen)
{
    if (cb->comm == NULL) {
        return 0;
    }
    if (cb->comm->ops->all_reduce_sum(cb->comm, cb->rank, cb->proj,
                                      (size_t) elems, INFER_DT_F16,
                                      cb->stream) != 0)
    {
        snprintf(err, errlen, "backend=cuda: rank %d: all-reduce after %s "
                 "failed (see stderr)", cb->rank, after);
        return -1;
    }
    return 0;
}

/*
 * The norm before a sublayer, fused with the residual add of the one
 * before it: x += post_norm(delta + bias) (delta NULL: nothing to add),
 * then h = norm(x) over n rows (or the rows listed).
 */
static int
norm_step(cuda_rank_t *cb, const uint16_t *delta, const uint16_t *bias,
    const uint16_t *post, const uint16_t *w, const uint16_t *b,
    const int32_t *rows, int n, char *err, size_t errlen)
{
    infer_norm_args_t na;

    na.x = cb->x;
    na.delta = delta;
    na.delta_bias = bias;
    na.delta_norm = post;
    na.w = w;
    na.b = b;
    na.rows = rows;
    na.n = n;
    na.hidden = cb->cfg.hidden_size;
    na.eps = (float) cb->cfg.rms_norm_eps;
    na.out = cb->h;
    KERNEL_CHECK("infer_cuda_norm_residual",
                 infer_cuda_norm_residual(&na, cb->stream));
    return 0;
}

/* Every launch of a step, from the embedding to the logits; capturable. */
static int
enqueue_step(cuda_rank_t *cb, const cuda_plan_t *pl, char *err,
    size_t errlen)
{
    const infer_model_config_t *c = &cb->cfg;
    const int32_t *meta = cb->d_meta;
    cuda_layer_t  *ly, *next;
    void          *s = cb->stream;
    int            n = pl->shape.n_tokens, H = c->hidden_size;
    int            I = c->intermediate_size, hd = c->head_dim;
    int            nh = c->num_heads, nkv = c->num_kv_heads;
    int            qkvw = (nh + 2 * nkv) * hd, l;
    infer_attn_args_t a;
    infer_rope_args_t r;

    memset(&a, 0, sizeof(a));
    a.q = cb->qkv;
    a.q_stride = qkvw;
    a.out = cb->attn;
    a.out_stride = nh * hd;
    a.positions = meta + pl->positions;
    a.block_table = meta + pl->block_table;
    a.max_blocks = pl->shape.max_blocks;
    a.block_size = cb->block_size;
    a.nh = nh;
    a.nkv = nkv;
    a.head_dim = hd;
    a.softcap = c->attn_softcap;
    a.tiles = meta + pl->tiles;
    a.n_tiles = pl->shape.n_tiles;
    a.n_split = pl->shape.n_split;
    a.split_len = pl->split_len;
    a.part_ml = cb->part_ml;
    a.part_o = cb->part_o;
    a.dec_tok = meta + pl->dec_tok;
    a.n_dec = pl->shape.n_dec;

    memset(&r, 0, sizeof(r));
    r.qkv = cb->qkv;
    r.stride = qkvw;
    r.eps = (float) c->rms_norm_eps;
    r.positions = meta + pl->positions;
    r.inv_freq = cb->freq_rows ? (const float *) (meta + pl->freqs)
                               : cb->inv_freq;
    r.freq_row = cb->freq_rows ? meta + pl->seqs : NULL;
    r.rot = c->rope.dim;
    r.scale = infer_rope_scaling(&c->rope);
    r.n = n;
    r.nh = nh;
    r.nkv = nkv;
    r.head_dim = hd;

    KERNEL_CHECK("infer_cuda_embed",
                 infer_cuda_embed(cb->embed, cb->pos_embed,
                                  meta + pl->tokens, meta + pl->positions, n,
                                  H, c->embed_scale, cb->x, s));
    if (norm_step(cb, NULL, NULL, NULL, cb->layers[0].attn_norm,
                  cb->layers[0].attn_norm_b, NULL, n, err, errlen) != 0)
    {
        return -1;
    }
    for (l = 0; l < c->num_layers; l++) {
        ly = &cb->layers[l];
        if (linear(cb, cb->h, &ly->wqkv, cb->qkv, n, qkvw, H, "qkv_proj",
                   err, errlen) != 0)
        {
            return -1;
        }
        r.bias = ly->bqkv;
        r.q_norm = ly->q_norm;
        r.k_norm = ly->k_norm;
        KERNEL_CHECK("infer_cuda_rope_qkv", infer_cuda_rope_qkv(&r, s));
        a.k_cache = cb->kv + (size_t) 2 * l * cb->pool_elems;
        a.v_cache = a.k_cache + cb->pool_elems;
        a.scale = ly->scale;
        a.window = ly->window;
        KERNEL_CHECK("infer_cuda_kv_write",
                     infer_cuda_kv_write(cb->qkv, qkvw, meta + pl->positions,
                                         meta + pl->seqs,
                                         meta + pl->block_table,
                                         pl->shape.max_blocks, n, nh, nkv,
                                         hd, cb->block_size,
                                         (uint16_t *) a.k_cache,
                                         (uint16_t *) a.v_cache, s));
        KERNEL_CHECK("infer_cuda_attention", infer_cuda_attention(&a, s));
        if (linear(cb, cb->attn, &ly->wo, cb->proj, n, H, nh * hd, "o_proj",
                   err, errlen) != 0
            || all_reduce(cb, n * H, "o_proj", err, errlen) != 0
            || norm_step(cb, cb->proj, ly->bo, ly->post_attn_norm,
                         ly->mlp_norm, ly->mlp_norm_b, NULL, n, err,
                         errlen) != 0
            || linear(cb, cb->h, &ly->w_in, cb->gate_up, n, cb->in_width, H,
                      "gate_up_proj", err, errlen) != 0)
        {
            return -1;
        }
        KERNEL_CHECK("infer_cuda_act",
                     infer_cuda_act(cb->gate_up, ly->b_in, n, I,
                                    c->gated_mlp, (int) c->act, cb->act, s));
        if (linear(cb, cb->act, &ly->w_down, cb->proj, n, H, I, "down_proj",
                   err, errlen) != 0
            || all_reduce(cb, n * H, "down_proj", err, errlen) != 0)
        {
            return -1;
        }
        if (l + 1 < c->num_layers) {
            next = &cb->layers[l + 1];
            if (norm_step(cb, cb->proj, ly->b_down, ly->post_mlp_norm,
                          next->attn_norm, next->attn_norm_b, NULL, n, err,
                          errlen) != 0)
            {
                return -1;
            }
        }
    }
    if (cb->rank != 0) {
        return 0;
    }
    /* the last residual add and the final norm, only where logits go */
    ly = &cb->layers[c->num_layers - 1];
    if (norm_step(cb, cb->proj, ly->b_down, ly->post_mlp_norm,
                  cb->final_norm, cb->final_norm_b, meta + pl->logit_rows,
                  pl->shape.n_logits, err, errlen) != 0)
    {
        return -1;
    }
    if (pl->shape.n_logits > 0 && pl->shape.n_logits <= cb->max_logits) {
        return head(cb, cb->h, pl->shape.n_logits, err, errlen);
    }
    return 0;
}

static int
capture_step(cuda_rank_t *cb, const cuda_plan_t *pl,
    cudaGraphExec_t *exec, char *err, size_t errlen)
{
    cudaGraph_t graph = NULL;
    cudaError_t rc;
    int         enq;

    CUDA_CHECK(cudaStreamBeginCapture(cb->stream,
                                      cudaStreamCaptureModeThreadLocal));
    enq = enqueue_step(cb, pl, err, errlen);
    rc = cudaStreamEndCapture(cb->stream, &graph);
    if (enq != 0 || rc != cudaSuccess) {
        if (graph != NULL) {
            cudaGraphDestroy(graph);
        }
        return enq != 0 ? -1
                        : cuda_fail(err, errlen, "cudaStreamEndCapture", rc);
    }
    rc = cudaGraphInstantiate(exec, graph, 0);
    cudaGraphDestroy(graph);
    if (rc != cudaSuccess) {
        return cuda_fail(err, errlen, "cudaGraphInstantiate", rc);
    }
    return 0;
}

/*
 * Decode-shaped steps (every tile one token) replay a graph keyed by their
 * launch shape; the rest run eagerly.  A shape is captured the second time
 * it comes, so lazy module loading and cuBLAS's first-call setup happen in
 * an eager run, outside the capture.  A failed capture turns graphs off
 * for this backend (with one line on stderr) rather than failing a step
 * that eager execution can run.
 */
static int
run_step(cuda_rank_t *cb, const cuda_plan_t *pl, char *err,
    size_t errlen)
{
    cuda_graph_t *g = NULL;
    int           i;

    if (!cb->use_graphs || pl->shape.n_tiles != pl->shape.n_tokens
        || pl->shape.n_logits > cb->max_logits)
    {
        return enqueue_step(cb, pl, err, errlen);
    }
    for (i = 0; i < cb->n_graphs; i++) {
        if (memcmp(&cb->graphs[i].shape, &pl->shape, sizeof(pl->shape))
            == 0)
        {
            g = &cb->graphs[i];
            break;
        }
    }
    if (g == NULL) {
        if (cb->n_graphs == CUDA_GRAPHS_MAX) {
            return enqueue_step(cb, pl, err, errlen);
        }
        g = &cb->graphs[cb->n_graphs++];
        g->shape = pl->shape;
        g->exec = NULL;
        return enqueue_step(cb, pl, err, errlen);
    }
    if (g->exec == NULL
        && capture_step(cb, pl, &g->exec, err, errlen) != 0)
    {
        fprintf(stderr, "%s; CUDA graphs disabled\n", err);
        cudaGetLastError();
        g->exec = NULL;
        cb->use_graphs = 0;
        return enqueue_step(cb, pl, err, errlen);
    }
    CUDA_CHECK(cudaGraphLaunch(g->exec, cb->stream));
    return 0;
}

/* One rank's share of a step: metadata up, then the launches. */
static int
rank_step(cuda_rank_t *cb, const infer_batch_t *batch, char *err,
    size_t errlen)
{
    cuda_plan_t pl;

    CUDA_CHECK(cudaSetDevice(cb->device));
    /* the previous step may still read h_meta */
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    if (plan_step(cb, batch, &pl, err, errlen) != 0) {
        return -1;
    }
    CUDA_CHECK(cudaMemcpyAsync(cb->d_meta, cb->h_meta, pl.total * 4,
                               cudaMemcpyHostToDevice, cb->stream));
    return run_step(cb, &pl, err, errlen);
}

static void
rank_job(void *arg, int index)
{
    cuda_backend_t *be = arg;
    cuda_rank_t    *cb = &be->ranks[index];

    cb->rc = rank_step(cb, be->batch, cb->err, sizeof(cb->err));
}

/*
 * Runs a step on every rank.  The batch is checked before any rank starts,
 * so a bad one never leaves a rank alone in a collective.
 */
static int
cuda_forward(infer_backend_t *b, const infer_batch_t *batch, float *logits,
    char *err, size_t errlen)
{
    cuda_backend_t *be = b->priv;
    cuda_rank_t    *cb = &be->ranks[0];
    size_t          V = cb->cfg.vocab_size;
    int             r, rows, rc, H = cb->cfg.hidden_size;

    cb->n_kept = 0;
    if (validate_batch(cb, batch, err, errlen) != 0) {
        return -1;
    }
    if (logits == NULL && batch->n_logits > cb->max_logits) {
        snprintf(err, errlen, "backend=cuda: %d logit rows kept on the "
                 "device; at most %d (max_seqs)", batch->n_logits,
                 cb->max_logits);
        return -1;
    }
    be->batch = batch;
    infer_crew_begin(&be->crew);
    rc = rank_step(cb, batch, err, errlen);
    infer_crew_end(&be->crew);
    for (r = 1; r < be->tp && rc == 0; r++) {
        if (be->ranks[r].rc != 0) {
            snprintf(err, errlen, "%s", be->ranks[r].err);
            rc = -1;
        }
    }
    if (rc != 0) {
        return -1;
    }
    if (logits == NULL) {
        cb->n_kept = batch->n_logits;
        return 0;
    }
    if (batch->n_logits <= cb->max_logits) {
        CUDA_CHECK(cudaMemcpyAsync(logits, cb->logits,
                                   batch->n_logits * V * 4,
                                   cudaMemcpyDeviceToHost, cb->stream));
    } else {
        /* more rows than the logits buffer: the head runs in chunks */
        for (r = 0; r < batch->n_logits; r += rows) {
            rows = batch->n_logits - r < cb->max_logits
                   ? batch->n_logits - r : cb->max_logits;
            if (head(cb, cb->h + (size_t) r * H, rows, err, errlen) != 0) {
                return -1;
            }
            CUDA_CHECK(cudaMemcpyAsync(logits + (size_t) r * V, cb->logits,
                                       rows * V * 4, cudaMemcpyDeviceToHost,
                                       cb->stream));
        }
    }
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    return 0;
}

static int
cuda_sample(infer_backend_t *b, const infer_sampling_t *s, int n,
    int32_t *out, char *err, size_t errlen)
{
    cuda_backend_t *be = b->priv;
    cuda_rank_t    *cb = &be->ranks[0];
    int             i, any_sorted = 0;

    if (n != cb->n_kept || n == 0) {
        snprintf(err, errlen, "backend=cuda: sample: %d rows asked, the "
                 "last forward kept %d on the device", n, cb->n_kept);
        return -1;
    }
    CUDA_CHECK(cudaSetDevice(cb->device));
    for (i = 0; i < n; i++) {
        infer_sample_row(&s[i], cb->cfg.vocab_size, &cb->h_rows[i]);
        any_sorted |= cb->h_rows[i].mode == INFER_SAMPLE_SORTED;
    }
    CUDA_CHECK(cudaMemcpyAsync(cb->d_rows, cb->h_rows,
                               n * sizeof(infer_sample_row_t),
                               cudaMemcpyHostToDevice, cb->stream));
    KERNEL_CHECK("infer_cuda_sample",
                 infer_cuda_sample(cb->logits, n, cb->cfg.vocab_size,
                                   cb->d_rows, any_sorted,
                                   cb->sample_scratch, cb->sample_bytes,
                                   cb->d_out, cb->stream));
    CUDA_CHECK(cudaMemcpyAsync(cb->h_out, cb->d_out, n * 4,
                               cudaMemcpyDeviceToHost, cb->stream));
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    memcpy(out, cb->h_out, n * 4);
    return 0;
}

const infer_backend_ops_t infer_backend_cuda = {
    "cuda",
    sizeof(uint16_t),
    cuda_init,
    cuda_forward,
    cuda_sample,
    cuda_destroy
};
