/*
 * CPU backend: float32 compute, OpenBLAS for the matrix products (loaded
 * with the kernels for this CPU: blas.c).  Weights are float32, or with
 * dtype=bf16 the matrices (embedding and lm_head included) stay bfloat16
 * in memory, half the bytes a token reads, and are widened to float32 as
 * the products load them; with dtype=int8 they are int8 with a float32
 * scale per output row (int8.c), a quarter of the bytes.  Activations and
 * sums stay float32.
 *
 * One forward pass for every family, over a flat batch of tokens from many
 * sequences; what differs between families (norm kind and placement,
 * activation, positions, biases, q/k norms, soft-capping, sliding windows,
 * embedding scale) is read from the model's configuration, as transformers'
 * modeling code for that family computes it:
 *
 *     x = embed[token] * embed_scale (+ pos_embed[position])
 *     per layer:  h = norm(x)
 *                 q, k, v = h W^T + b;  q, k = qk_norm(q, k);  rope(q, k)
 *                 cache <- k, v
 *                 a = attention(q, cache)  (window, soft-cap, scale)
 *                 o = a Wo^T + bo;  x += post_norm(o)
 *                 h = norm(x)
 *                 m = act(h Wg^T) * h Wu^T,  or act(h Wu^T + bu)
 *                 o = m Wd^T + bd;  x += post_norm(o)
 *     logits = softcap(norm(x) lm_head^T)   (rows that need them)
 *
 * Each tensor-parallel rank holds a Megatron slice of every layer: its
 * share of the query/key/value heads and of the MLP's intermediate
 * columns; the attention output and the MLP down projection are partial
 * sums that an all-reduce completes (their biases are added after it).
 * Embedding, norms and lm_head are replicated and only rank 0 produces
 * logits.  Rank 0 runs in the caller's thread, ranks 1.. in threads of
 * their own.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "attn_decode.h"
#include "backend.h"
#include "blas.h"
#include "comm.h"
#include "crew.h"
#include "gemm_narrow.h"
#include "gemm_wide.h"
#include "int8.h"
#include "rope_freq.h"
#include "vmath.h"

/* The matrices' type in memory (dtype=). */
typedef enum {
    CPU_F32,
    CPU_BF16,
    CPU_INT8
} cpu_wtype_t;

/* A weight matrix [rows, cols]: float32, bfloat16 (dtype=bf16), or int8
 * with one scale per row (dtype=int8). */
typedef struct {
    const float    *f32;
    const uint16_t *bf16;
    const int8_t   *i8;
    const float    *scale;            /* [rows], with i8 */
} cpu_mat_t;

#define cpu_mat_set(m)  ((m).f32 != NULL || (m).bf16 != NULL || (m).i8 != NULL)

/* the helpers' products: rows of W a thread takes at a time, a multiple
 * of the narrow tiles' 3 and 4 rows (with 16, one row in 16 went through
 * the 1 x 1 tile, widening its weights once per row of x).  96 rather
 * than 24, so that a thread reads 96 consecutive rows before it jumps
 * past the other's (TinyLlama decode, 2 threads, 3-4 alternating runs,
 * int8 batch 1 13.1-13.6 tokens/s against 11.6-13.0, bf16 batch 1
 * 7.5-8.3 against 6.8-7.2, f32 batch 16 29.3-30.0 against 27.9-30.0,
 * int8 batch 16 37.8-39.1 against 36.9-39.1; 192 or 384 rows, or half
 * the rows each, no better for int8) */
#define ROW_CHUNK     96
_Static_assert(ROW_CHUNK <= INFER_WIDE_ROWS, "a wide product's rows");
/* floats of bf16/int8 rows widened for sgemm (prefill without the wide
 * products), per rank */
#define WTILE_FLOATS  (1 << 21)

/*
 * Up to this many rows of x the products read W directly (gemm_narrow.h);
 * more go to sgemm.  2048 x 5632, 1 thread, loaded machine: at 16 rows
 * narrow float32 14-16 ms against sgemm's 18-23, at 32 rows 25-29
 * against 31-43, at 64 rows 56-61 against 32-35; int8 13 ms against 33
 * for its widened tile and sgemm at 16 rows, 113 against 153 at 128.
 */
#define NARROW_ROWS  32

typedef struct {
    const float *attn_norm, *attn_norm_b;  /* [H]; b: LayerNorm */
    const float *mlp_norm, *mlp_norm_b;
    const float *post_attn_norm;           /* [H] or NULL */
    const float *post_mlp_norm;
    const float *q_norm, *k_norm;          /* [hd] or NULL */
    cpu_mat_t    wq, wk, wv;               /* [heads_r * hd, H] */
    const float *bq, *bk, *bv;             /* [heads_r * hd] or NULL */
    cpu_mat_t    wo;                       /* [H, n_heads_r * hd] */
    const float *bo;                       /* [H] */
    cpu_mat_t    w_gate, w_up;             /* [inter_r, H] */
    const float *b_gate, *b_up;            /* [inter_r] or NULL */
    cpu_mat_t    w_down;                   /* [H, inter_r] */
    const float *b_down;                   /* [H] */
    float        scale;                    /* of the attention scores */
    int          window;                   /* 0: the whole context */
} cpu_layer_t;

typedef struct cpu_backend cpu_backend_t;
typedef struct cpu_rank cpu_rank_t;

/*
 * What a rank's attention helpers share in a step.  The helpers are a crew
 * of threads - 1 threads (crew.h: they poll 0.2 ms after a job, then
 * sleep), not OpenMP: its idle threads spin far longer after a parallel
 * region and took the cores from OpenBLAS (stories260K batch-16 prefill,
 * 2 threads: 36k tokens/s, 52k with OMP_WAIT_POLICY=PASSIVE, which a
 * module cannot set before libgomp reads it at load).
 */
typedef struct {
    int                  layer;
    const infer_batch_t *batch;
    int                  next_pair;   /* taken with an atomic add */
    int                  next_head;   /* (prompt run, head), the same way */
} cpu_attention_job_t;

/* A product's rows shared by the helpers (linear_rows). */
typedef struct {
    int                  widen;       /* 1: widen W rows into wtile only */
    int                  wide;        /* 1: wide products (gemm_wide.h) */
    const float         *x;
    const float         *wf;          /* float32, or: */
    const uint16_t      *w;           /* bf16, or: */
    const int8_t        *w8;          /* int8 ... */
    const float         *scale;       /* ... and its rows' scales */
    const int16_t       *xq;          /* one row of x for int8 W, */
    const float         *xscale;      /* quantized (gemm_narrow.h) */
    const void          *xp;          /* x prepared for the wide ones */
    float               *y;
    int                  n, in, out;
    atomic_int           next_row;
} cpu_mat_job_t;

struct cpu_rank {
    cpu_backend_t *be;
    int            rank;
    int            n_heads;       /* query heads on this rank */
    int            n_kv_heads;    /* key/value heads on this rank */
    int            inter;         /* intermediate columns on this rank */
    cpu_layer_t   *layers;
    float         *k_cache;       /* [layers][blocks][kv_heads][bs][hd] */
    float         *v_cache;
    /* activations for up to max_tokens tokens */
    float         *x, *h, *q, *k, *v, *att, *o, *gate, *up;
    float         *scratch;       /* [threads][scratch_floats] */
    int32_t       *prompts;       /* [max_tokens][2]: first token, count */
    int32_t       *decodes;       /* [max_tokens]: tokens alone in a run */
    int            n_prompts, n_decodes;
    cpu_attention_job_t  job;
    cpu_mat_job_t        mat_job;
    int                  helping;     /* what the helpers run: 0 attention,
                                         1 a product's rows */
    float               *wtile;       /* bf16/int8 rows widened for sgemm */
    int16_t             *xq;          /* int8: a row of x quantized, */
    float               *xscale;      /* and its blocks' scales */
    void                *xwide;       /* x prepared for the wide products */
    infer_crew_t         helpers;
    int                  rc;
};

struct cpu_backend {
    infer_model_config_t  cfg;
    int                   tp;
    int                   threads;     /* per rank */
    int                   block_size;
    int                   n_blocks;
    int                   max_tokens;
    int                   max_seqs;
    int                   ctx_cap;     /* longest context the KV pool holds */
    size_t                scratch_floats;
    cpu_wtype_t           wtype;       /* the matrices' type */
    int                   wide;        /* prefill: gemm_wide.h, not sgemm */
    int                   f32_row;     /* one float32 row: ours, not sgemv */
    int                   f32_wide;    /* float32 prefill: ours, not sgemm */
    int                   bf16_pairs;  /* bf16 x bf16 products (x rounded) */
    int                   blas_threads; /* OpenBLAS's: 1, or threads */
    cpu_mat_t             embed;       /* [V, H] */
    const float          *pos_embed;   /* [max_position, H] or NULL */
    cpu_mat_t             lm_head;     /* [V, H] */
    const float          *final_norm;  /* [H] */
    const float          *final_norm_b;
    /* RoPE: one row of rot_dim / 2 frequencies, or one per sequence of
     * the step when they depend on its length */
    float                *inv_freq;    /* [max_seqs][rot_dim / 2] */
    int                   freq_rows;   /* 0: every token reads row 0 */
    float                 rope_scale;  /* cos and sin factor */
    float                *h_logits;    /* [max_tokens, H] normed rows */
    cpu_rank_t           *ranks;
    infer_comm_t         *comm;
    void                **owned;       /* converted weight copies */
    size_t               *owned_maps;  /* their mmap()ed bytes, or 0 */
    size_t                weight_bytes; /* mapped or copied, all ranks */
    int                   n_owned;

    /* ranks 1.. in threads of their own */
    infer_crew_t          crew;
    const infer_batch_t  *batch;
};

/* ---- weights ------------------------------------------------------------ */

/*
 * A buffer of size bytes that the backend owns (freed with it).  Large
 * ones are mapped in huge pages where the kernel has them (transparent
 * huge pages, "madvise" mode on Debian): a decode step streams every
 * weight, and with 4 KiB pages each page is a TLB miss and a stop for
 * the hardware prefetcher (bench/RESULTS.md "AVX-512").
 */
#define HUGE_PAGE  (2u << 20)

static void *
cpu_own(cpu_backend_t *be, size_t size)
{
    void    *p, **owned;
    size_t  *maps, map = 0;

    owned = realloc(be->owned, (be->n_owned + 1) * sizeof(void *));
    if (owned == NULL) {
        return NULL;
    }
    be->owned = owned;
    maps = realloc(be->owned_maps, (be->n_owned + 1) * sizeof(size_t));
    if (maps == NULL) {
        return NULL;
    }
    be->owned_maps = maps;
    if (size >= HUGE_PAGE) {
        map = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        p = mmap(NULL, map, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            return NULL;
        }
#ifdef MADV_HUGEPAGE
        (void) madvise(p, map, MADV_HUGEPAGE);
#endif
    } else {
        p = malloc(size > 0 ? size : 1);
        if (p == NULL) {
            return NULL;
        }
    }
    be->owned_maps[be->n_owned] = map;
    be->owned[be->n_owned++] = p;
    return p;
}

/* A copy the backend owns of a block of t, as float32. */
static float *
cpu_copy(cpu_backend_t *be, const infer_tensor_t *t, int64_t r0,
    int64_t nr, int64_t c0, int64_t nc)
{
    float  *copy = cpu_own(be, (size_t) nr * nc * sizeof(float));

    if (copy == NULL) {
        return NULL;
    }
    be->weight_bytes += (size_t) nr * nc * sizeof(float);
    infer_tensor_read_f32(t, r0, nr, c0, nc, copy);
    return copy;
}

/*
 * A float32 view of rows [r0, r0+nr) x cols [c0, c0+nc) of a tensor.  When
 * the file already holds aligned float32 and the block is contiguous the
 * view points into the mapping, so worker processes share the page cache;
 * otherwise it is converted into a copy the backend owns.
 */
static const float *
cpu_weight(cpu_backend_t *be, const infer_tensor_t *t, int64_t r0,
    int64_t nr, int64_t c0, int64_t nc)
{
    int64_t      cols = t->ndim == 1 ? t->shape[0] : t->shape[1];
    const float *mapped = c0 == 0 && nc == cols
                          ? infer_tensor_f32_rows(t, r0) : NULL;

    if (mapped == NULL) {
        return cpu_copy(be, t, r0, nr, c0, nc);
    }
    be->weight_bytes += (size_t) nr * nc * sizeof(float);
    return mapped;
}

static const float *
cpu_weight_rows(cpu_backend_t *be, const infer_tensor_t *t, int64_t r0,
    int64_t nr)
{
    int64_t cols = t->ndim == 1 ? t->shape[0] : t->shape[1];

    return cpu_weight(be, t, r0, nr, 0, cols);
}

/* A bias (one row) sliced as columns [c0, c0 + nc); NULL stays NULL. */
static int
cpu_bias(cpu_backend_t *be, const infer_tensor_t *t, int64_t c0, int64_t nc,
    const float **out)
{
    *out = t == NULL ? NULL : cpu_weight(be, t, 0, 1, c0, nc);
    return t == NULL || *out != NULL ? 0 : -1;
}

/*
 * dtype=int8: each row quantized with its scale (int8.h).  The scale is
 * the whole row's even when this rank holds a block of its columns
 * (o_proj, down_proj under tp), so that the ranks' partial sums add up to
 * the tp=1 product.
 */
static int
cpu_matrix_i8(cpu_backend_t *be, const infer_tensor_t *t, int64_t r0,
    int64_t nr, int64_t c0, int64_t nc, cpu_mat_t *out)
{
    int64_t  cols = t->ndim == 1 ? t->shape[0] : t->shape[1], r;
    int8_t  *q = cpu_own(be, (size_t) nr * nc), *qrow;
    float   *scale = cpu_own(be, (size_t) nr * sizeof(float));
    float   *row = malloc((size_t) cols * sizeof(float));

    qrow = malloc((size_t) cols);
    if (q == NULL || scale == NULL || row == NULL || qrow == NULL) {
        free(row);
        free(qrow);
        return -1;
    }
    for (r = 0; r < nr; r++) {
        infer_tensor_read_f32(t, r0 + r, 1, 0, cols, row);
        infer_i8_quantize_row(row, (int) cols, qrow, &scale[r]);
        memcpy(q + r * nc, qrow + c0, (size_t) nc);
    }
    free(row);
    free(qrow);
    be->weight_bytes += (size_t) nr * nc + (size_t) nr * sizeof(float);
    out->i8 = q;
    out->scale = scale;
    return 0;
}

/*
 * A matrix block as the products read it: float32 as above; with
 * dtype=bf16 bfloat16, pointing into the mapping when the file holds
 * aligned bf16 rows, else rounded (to nearest even) into an owned copy;
 * with dtype=int8 quantized into an owned copy.
 */
static int
cpu_matrix(cpu_backend_t *be, const infer_tensor_t *t, int64_t r0,
    int64_t nr, int64_t c0, int64_t nc, cpu_mat_t *out)
{
    int64_t          cols = t->ndim == 1 ? t->shape[0] : t->shape[1];
    const uint16_t  *mapped;
    uint16_t        *copy;

    memset(out, 0, sizeof(*out));
    if (be->wtype == CPU_F32) {
        out->f32 = cpu_weight(be, t, r0, nr, c0, nc);
        return out->f32 != NULL ? 0 : -1;
    }
    if (be->wtype == CPU_INT8) {
        return cpu_matrix_i8(be, t, r0, nr, c0, nc, out);
    }
    be->weight_bytes += (size_t) nr * nc * sizeof(uint16_t);
    mapped = c0 == 0 && nc == cols ? infer_tensor_bf16_rows(t, r0) : NULL;
    if (mapped != NULL) {
        out->bf16 = mapped;
        return 0;
    }
    copy = cpu_own(be, (size_t) nr * nc * sizeof(uint16_t));
    if (copy == NULL) {
        return -1;
    }
    infer_tensor_read_bf16(t, r0, nr, c0, nc, copy);
    out->bf16 = copy;
    return 0;
}

static int
cpu_matrix_rows(cpu_backend_t *be, const infer_tensor_t *t, int64_t r0,
    int64_t nr, cpu_mat_t *out)
{
    return cpu_matrix(be, t, r0, nr, 0, t->ndim == 1 ? t->shape[0]
                                                     : t->shape[1], out);
}

/*
 * A norm's weight as the forward multiplies by it: Gemma stores w - 1
 * and scales by (1.0 + w) in float32, which is exact to fold in here.
 */
static int
cpu_norm(cpu_backend_t *be, const infer_tensor_t *t, const float **out)
{
    float  *w;
    int64_t i;

    if (t == NULL) {
        *out = NULL;
        return 0;
    }
    if (be->cfg.norm_offset == 0.0f) {
        *out = cpu_weight_rows(be, t, 0, 1);
        return *out != NULL ? 0 : -1;
    }
    w = cpu_copy(be, t, 0, 1, 0, t->shape[0]);
    if (w == NULL) {
        return -1;
    }
    for (i = 0; i < t->shape[0]; i++) {
        w[i] = be->cfg.norm_offset + w[i];
    }
    *out = w;
    return 0;
}

static int
cpu_load_rank(cpu_backend_t *be, const infer_model_t *m, cpu_rank_t *rk)
{
    const infer_model_config_t *c = &be->cfg;
    int64_t  hd = c->head_dim, H = c->hidden_size;
    int64_t  q0 = (int64_t) rk->rank * rk->n_heads * hd;
    int64_t  kv0 = (int64_t) rk->rank * rk->n_kv_heads * hd;
    int64_t  i0 = (int64_t) c->intermediate_size * rk->rank / be->tp;
    int64_t  nq = rk->n_heads * hd, nkv = rk->n_kv_heads * hd;
    int      l;

    rk->layers = calloc(c->num_layers, sizeof(cpu_layer_t));
    if (rk->layers == NULL) {
        return -1;
    }
    for (l = 0; l < c->num_layers; l++) {
        const infer_layer_weights_t *w = &m->layers[l];
        cpu_layer_t                 *L = &rk->layers[l];

        L->scale = infer_model_attn_scale(c, l);
        L->window = infer_model_window(c, l);
        if (cpu_matrix_rows(be, w->wq, q0, nq, &L->wq) != 0
            || cpu_matrix_rows(be, w->wk, kv0, nkv, &L->wk) != 0
            || cpu_matrix_rows(be, w->wv, kv0, nkv, &L->wv) != 0
            || cpu_matrix(be, w->wo, 0, H, q0, nq, &L->wo) != 0
            || cpu_matrix_rows(be, w->w_up, i0, rk->inter, &L->w_up) != 0
            || cpu_matrix(be, w->w_down, 0, H, i0, rk->inter, &L->w_down)
               != 0
            || (w->w_gate != NULL
                && cpu_matrix_rows(be, w->w_gate, i0, rk->inter,
                                   &L->w_gate) != 0)
            || cpu_norm(be, w->attn_norm, &L->attn_norm) != 0
            || cpu_norm(be, w->mlp_norm, &L->mlp_norm) != 0
            || cpu_norm(be, w->post_attn_norm, &L->post_attn_norm) != 0
            || cpu_norm(be, w->post_mlp_norm, &L->post_mlp_norm) != 0
            || cpu_norm(be, w->q_norm, &L->q_norm) != 0
            || cpu_norm(be, w->k_norm, &L->k_norm) != 0
            || cpu_bias(be, w->attn_norm_b, 0, H, &L->attn_norm_b) != 0
            || cpu_bias(be, w->mlp_norm_b, 0, H, &L->mlp_norm_b) != 0
            || cpu_bias(be, w->bq, q0, nq, &L->bq) != 0
            || cpu_bias(be, w->bk, kv0, nkv, &L->bk) != 0
            || cpu_bias(be, w->bv, kv0, nkv, &L->bv) != 0
            || cpu_bias(be, w->bo, 0, H, &L->bo) != 0
            || cpu_bias(be, w->b_gate, i0, rk->inter, &L->b_gate) != 0
            || cpu_bias(be, w->b_up, i0, rk->inter, &L->b_up) != 0
            || cpu_bias(be, w->b_down, 0, H, &L->b_down) != 0)
        {
            return -1;
        }
    }
    return 0;
}

static int
cpu_alloc_rank(cpu_backend_t *be, cpu_rank_t *rk)
{
    const infer_model_config_t *c = &be->cfg;
    size_t  T = be->max_tokens, H = c->hidden_size, hd = c->head_dim;
    size_t  kv = (size_t) c->num_layers * be->n_blocks * rk->n_kv_heads
                 * be->block_size * hd;
    size_t  in, xbytes;

    rk->k_cache = malloc(kv * sizeof(float));
    rk->v_cache = malloc(kv * sizeof(float));
    rk->x = malloc(T * H * sizeof(float));
    rk->h = malloc(T * H * sizeof(float));
    rk->o = malloc(T * H * sizeof(float));
    rk->q = malloc(T * rk->n_heads * hd * sizeof(float));
    rk->att = malloc(T * rk->n_heads * hd * sizeof(float));
    rk->k = malloc(T * rk->n_kv_heads * hd * sizeof(float));
    rk->v = malloc(T * rk->n_kv_heads * hd * sizeof(float));
    rk->gate = malloc(T * rk->inter * sizeof(float));
    rk->up = malloc(T * rk->inter * sizeof(float));
    /* each thread of the rank gathers keys and values and scores a tile */
    rk->scratch = malloc((size_t) be->threads * be->scratch_floats
                         * sizeof(float));
    rk->prompts = malloc(T * 2 * sizeof(int32_t));
    rk->decodes = malloc(T * sizeof(int32_t));
    if (be->wtype != CPU_F32 && !be->wide) {
        rk->wtile = malloc(WTILE_FLOATS * sizeof(float));
        if (rk->wtile == NULL) {
            return -1;
        }
    }
    /* the widest input of a product: hidden, heads or intermediate */
    in = H > rk->n_heads * hd ? H : rk->n_heads * hd;
    in = in > (size_t) rk->inter ? in : (size_t) rk->inter;
    xbytes = be->wide ? infer_gemm_wide_x_bytes(be->wtype == CPU_INT8,
                                                (int) T, (int) in)
             : be->f32_wide ? infer_gemm_wide_f32_x_bytes((int) T, (int) in)
             : 0;
    if (xbytes > 0) {
        rk->xwide = malloc(xbytes);
        if (rk->xwide == NULL) {
            return -1;
        }
    }
    if (be->wtype == CPU_INT8) {
        rk->xq = malloc(in * sizeof(int16_t));
        rk->xscale = malloc((in / INFER_NARROW_XBLOCK + 1) * sizeof(float));
        if (rk->xq == NULL || rk->xscale == NULL) {
            return -1;
        }
    }

    return (rk->k_cache && rk->v_cache && rk->x && rk->h && rk->o && rk->q
            && rk->att && rk->k && rk->v && rk->gate && rk->up && rk->scratch
            && rk->prompts && rk->decodes)
           ? 0 : -1;
}

/* ---- the ops, one function each ----------------------------------------- */

/* y[t] += b for each of n rows of width w */
static void
add_bias(float *y, const float *b, int n, int w)
{
    int t, i;

    for (t = 0; t < n; t++) {
        float *yr = y + (size_t) t * w;

#pragma omp simd
        for (i = 0; i < w; i++) {
            yr[i] += b[i];
        }
    }
}

/* bfloat16 is float32's upper half: widening is exact. */
static inline float
bf16_float(uint16_t h)
{
    uint32_t u = (uint32_t) h << 16;
    float    f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

/* x = table[token] * scale (+ positions[position]) */
static void
embedding(const cpu_mat_t *table, const float *pos_table, float scale,
    const int32_t *tokens, const int32_t *positions, int n, int H, float *x)
{
    int t, i;

    for (t = 0; t < n; t++) {
        float  *xr = x + (size_t) t * H;
        size_t  row = (size_t) tokens[t] * H;

        if (table->bf16 != NULL) {
            for (i = 0; i < H; i++) {
                xr[i] = bf16_float(table->bf16[row + i]) * scale;
            }
        } else if (table->i8 != NULL) {
            float s = table->scale[tokens[t]] * scale;

            for (i = 0; i < H; i++) {
                xr[i] = (float) table->i8[row + i] * s;
            }
        } else if (scale == 1.0f) {
            memcpy(xr, table->f32 + row, H * sizeof(float));
        } else {
            for (i = 0; i < H; i++) {
                xr[i] = table->f32[row + i] * scale;
            }
        }
        if (pos_table != NULL) {
            for (i = 0; i < H; i++) {
                xr[i] += pos_table[(size_t) positions[t] * H + i];
            }
        }
    }
}

/*
 * RMSNorm y = w * (x / sqrt(mean(x^2) + eps)), or with b (LayerNorm)
 * y = (x - mean) / sqrt(var + eps) * w + b, over rows of H; y may be x.
 */
static void
norm(float *y, const float *x, const float *w, const float *b, int n, int H,
    float eps)
{
    int    t, i;
    double sum, ss;
    float  mean, scale, d;

    for (t = 0; t < n; t++) {
        const float *xr = x + (size_t) t * H;
        float       *yr = y + (size_t) t * H;

        if (b == NULL) {
            float f = 0.0f;

            for (i = 0; i < H; i++) {
                f += xr[i] * xr[i];
            }
            scale = 1.0f / sqrtf(f / H + eps);
            for (i = 0; i < H; i++) {
                yr[i] = w[i] * (xr[i] * scale);
            }
            continue;
        }
        sum = ss = 0.0;
        for (i = 0; i < H; i++) {
            sum += xr[i];
        }
        mean = (float) (sum / H);
        for (i = 0; i < H; i++) {
            d = xr[i] - mean;
            ss += (double) d * d;
        }
        scale = (float) (1.0 / sqrt(ss / H + eps));
        for (i = 0; i < H; i++) {
            yr[i] = (xr[i] - mean) * scale * w[i] + b[i];
        }
    }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void
widen_bf16(float *dst, const uint16_t *src, size_t n)
{
    size_t i;

#pragma omp simd
    for (i = 0; i < n; i++) {
        dst[i] = bf16_float(src[i]);
    }
}

/* Rows of the current job, ROW_CHUNK at a time, until none is left: a
 * narrow product's, or those of a tile to widen for sgemm; every thread
 * of the rank runs it. */
static void
linear_rows(cpu_rank_t *rk)
{
    cpu_mat_job_t *j = &rk->mat_job;
    int            r0, r1;
    size_t         at;

    for (;;) {
        r0 = atomic_fetch_add_explicit(&j->next_row, ROW_CHUNK,
                                       memory_order_relaxed);
        if (r0 >= j->out) {
            return;
        }
        r1 = r0 + ROW_CHUNK < j->out ? r0 + ROW_CHUNK : j->out;
        at = (size_t) r0 * j->in;
        if (j->wide && j->wf != NULL) {
            infer_gemm_wide_f32(j->xp, j->n, j->in, j->wf + at, r1 - r0,
                                j->y + r0, j->out);
        } else if (j->wide && j->w8 != NULL) {
            infer_gemm_wide_i8(j->x, j->xp, j->n, j->in, j->w8 + at,
                               j->scale + r0, r1 - r0, j->y + r0, j->out);
        } else if (j->wide) {
            infer_gemm_wide_bf16(j->x, j->xp, j->n, j->in, j->w + at,
                                 r1 - r0, j->y + r0, j->out);
        } else if (j->widen && j->w8 != NULL) {
            infer_i8_dequantize(j->w8 + at, j->scale + r0, r1 - r0, j->in,
                                rk->wtile + at);
        } else if (j->widen) {
            widen_bf16(rk->wtile + at, j->w + at, (size_t) (r1 - r0) * j->in);
        } else if (j->xq != NULL) {
            infer_gemm_narrow_i8_x16(j->xq, j->xscale, j->in, j->w8 + at,
                                     j->scale + r0, r1 - r0, j->y + r0);
        } else if (j->w8 != NULL) {
            infer_gemm_narrow_i8(j->x, j->n, j->in, j->w8 + at,
                                 j->scale + r0, r1 - r0, j->y + r0, j->out);
        } else if (j->w != NULL && j->xp != NULL) {
            infer_gemm_narrow_bf16_pairs(j->xp, j->n, j->in, j->w + at,
                                         r1 - r0, j->y + r0, j->out);
        } else if (j->w != NULL) {
            infer_gemm_narrow_bf16(j->x, j->n, j->in, j->w + at, r1 - r0,
                                   j->y + r0, j->out);
        } else {
            infer_gemm_narrow_f32(j->x, j->n, j->in, j->wf + at, r1 - r0,
                                  j->y + r0, j->out);
        }
    }
}

/* The helpers and this thread share the job's rows. */
static void
linear_share(cpu_rank_t *rk)
{
    rk->helping = 1;
    atomic_store_explicit(&rk->mat_job.next_row, 0, memory_order_relaxed);
    infer_crew_begin(&rk->helpers);
    linear_rows(rk);
    infer_crew_end(&rk->helpers);
    rk->helping = 0;
}

/*
 * y[n, out] = x[n, in] W[out, in]^T (+ b).
 *
 * Up to NARROW_ROWS rows of x (decode steps) the narrow products
 * (gemm_narrow.h) read W once, where it lies, its rows shared by the
 * rank's threads: bound by reading W (4, 2 or 1 bytes a weight) for a few
 * rows, then by the arithmetic.  OpenBLAS's sgemm packs W into a copy on
 * every call, which at 16 rows of x is most of its time.  A single float32
 * row stays with sgemv, which reads W once too (2048x5632, 1 thread: 3.0
 * ms, the narrow product the same), but on AVX-512 CPUs (be->f32_row),
 * where the narrow row product streams W as it does for bf16 and matched
 * it; for 2 or 3 rows sgemv would read W once per row.  A single row
 * against int8 W is quantized to int16 first and summed in integers
 * (gemm_narrow.h).  The paths round differently in the last bit; the
 * batching tests hold the generated text to the reference regardless.
 *
 * More rows (prefill) are bound by the arithmetic.  Float32 W goes to
 * the float32 wide product on AVX-512 CPUs (be->f32_wide: x in panels,
 * W read where it lies, where sgemm packs it on every call), else to
 * sgemm.  bf16 and int8 W go to the wide products (be->wide: AVX2 CPUs,
 * and AVX-512 ones with the pair dot products, gemm_wide.h), x prepared
 * for them first where they need it, ROW_CHUNK rows of W a call, shared
 * by the rank's threads as the narrow ones are, each packing its rows;
 * elsewhere they are widened to float32 a tile of rows at a time for
 * sgemm, also shared, one more pass over the tile per n rows of x.
 */
static void
linear(cpu_rank_t *rk, float *y, const float *x, const cpu_mat_t *Wm,
    const float *b, int n, int in, int out)
{
    cpu_mat_job_t *j = &rk->mat_job;
    int            r0, rows, tile = WTILE_FLOATS / in;

    j->x = x;
    j->in = in;
    j->n = n;
    j->wf = Wm->f32;
    j->w = Wm->bf16;
    j->w8 = Wm->i8;
    j->scale = Wm->scale;
    j->xq = NULL;
    j->xp = NULL;
    j->widen = 0;
    j->wide = 0;
    j->y = y;
    j->out = out;
    if (Wm->f32 != NULL && n == 1 && !rk->be->f32_row) {
        infer_blas.sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f,
                         Wm->f32, in, x, 1, 0.0f, y, 1);
    } else if (n <= NARROW_ROWS || (Wm->f32 == NULL && tile < 1)) {
        if (Wm->bf16 != NULL && rk->be->bf16_pairs) {
            infer_gemm_wide_prepare_rows(x, n, in, rk->xwide);
            j->xp = rk->xwide;
        }
        if (Wm->i8 != NULL && n == 1) {
            infer_gemm_narrow_quantize_x16(x, in, rk->xq, rk->xscale);
            j->xq = rk->xq;
            j->xscale = rk->xscale;
        }
        linear_share(rk);
    } else if (Wm->f32 != NULL ? rk->be->f32_wide : rk->be->wide) {
        if (Wm->f32 != NULL) {
            infer_gemm_wide_prepare_f32(x, n, in, rk->xwide);
        } else if (rk->xwide != NULL) {
            infer_gemm_wide_prepare(Wm->i8 != NULL, x, n, in, rk->xwide);
        }
        j->xp = rk->xwide;
        j->wide = 1;
        linear_share(rk);
    } else if (Wm->f32 != NULL) {
        infer_blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out,
                         in, 1.0f, x, in, Wm->f32, in, 0.0f, y, out);
    } else {
        for (r0 = 0; r0 < out; r0 += tile) {
            rows = out - r0 < tile ? out - r0 : tile;
            j->widen = 1;
            j->w = Wm->bf16 != NULL ? Wm->bf16 + (size_t) r0 * in : NULL;
            j->w8 = Wm->i8 != NULL ? Wm->i8 + (size_t) r0 * in : NULL;
            j->scale = Wm->i8 != NULL ? Wm->scale + r0 : NULL;
            j->out = rows;
            linear_share(rk);
            infer_blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n,
                             rows, in, 1.0f, x, in, rk->wtile, in, 0.0f,
                             y + r0, out);
        }
    }
    if (b != NULL) {
        add_bias(y, b, n, out);
    }
}

/*
 * Rotary position embedding, Hugging Face's rotate_half layout over the
 * first rot dims of each head: element i pairs with i + rot / 2, turned
 * by position * inv_freq[i]; cos and sin carry the rope_type's attention
 * factor.  A token's frequencies are row seq (freq_rows) or row 0.
 */
static void
rope(const cpu_backend_t *be, float *x, const infer_batch_t *b, int heads)
{
    int          hd = be->cfg.head_dim, half = be->cfg.rope.dim / 2;
    int          t, h, i;
    const float *inv;

    for (t = 0; t < b->n_tokens; t++) {
        inv = be->inv_freq
              + (be->freq_rows ? (size_t) b->seq_of_token[t] * half : 0);
        for (i = 0; i < half; i++) {
            float angle = (float) b->positions[t] * inv[i];
            float c = cosf(angle) * be->rope_scale;
            float s = sinf(angle) * be->rope_scale;

            for (h = 0; h < heads; h++) {
                float *xh = x + ((size_t) t * heads + h) * hd;
                float  x1 = xh[i], x2 = xh[i + half];

                xh[i] = x1 * c - x2 * s;
                xh[i + half] = x2 * c + x1 * s;
            }
        }
    }
}

/* Qwen3's q_norm / k_norm: an RMSNorm over each head of every token. */
static void
head_norm(float *x, const float *w, int n, int heads, int hd, float eps)
{
    norm(x, x, w, NULL, n * heads, hd, eps);
}

static size_t
kv_offset(const cpu_backend_t *be, const cpu_rank_t *rk, int layer,
    int block, int kv_head, int slot)
{
    return ((((size_t) layer * be->n_blocks + block) * rk->n_kv_heads
             + kv_head) * be->block_size + slot) * be->cfg.head_dim;
}

/* Stores this step's keys and values at their slots in the paged cache. */
static void
kv_cache_write(cpu_backend_t *be, cpu_rank_t *rk, int layer,
    const infer_batch_t *b)
{
    int hd = be->cfg.head_dim, bs = be->block_size, t, h;

    for (t = 0; t < b->n_tokens; t++) {
        int pos = b->positions[t];
        int block = b->block_table[(size_t) b->seq_of_token[t]
                                   * b->max_blocks + pos / bs];

        for (h = 0; h < rk->n_kv_heads; h++) {
            size_t off = kv_offset(be, rk, layer, block, h, pos % bs);
            size_t src = ((size_t) t * rk->n_kv_heads + h) * hd;

            memcpy(rk->k_cache + off, rk->k + src, hd * sizeof(float));
            memcpy(rk->v_cache + off, rk->v + src, hd * sizeof(float));
        }
    }
}

/* The first key a query at position pos sees: transformers' sliding
 * window keeps keys kv > pos - window. */
static int
window_start(int pos, int window)
{
    return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

/* Gemma-2's attention soft-cap: s = cap * tanh(s / cap), as transformers
 * writes it (a division, then a multiplication). */
static void
softcap(float *s, int n, float cap)
{
    int j;

    if (cap == 0.0f) {
        return;
    }
#pragma omp simd
    for (j = 0; j < n; j++) {
        s[j] = tanhf(s[j] / cap) * cap;
    }
}

/*
 * Prefill attention of a run: n consecutive positions p0.. of one sequence
 * and one query head, as Hugging Face's eager attention computes it: S =
 * Q K^T * scale (soft-capped), the causal and window mask, softmax by
 * rows, O = P V; both products by OpenBLAS, ATTN_TILE query rows at a
 * time, over the keys the tile's rows can see.  k and v hold the
 * context's keys and values gathered into rows from k0 on.  Against one
 * dot product per (token, key) this took TinyLlama-1.1B's 512-token
 * prefill (2 threads) from 121 to 146 tokens/s.
 */
#define ATTN_TILE  64

static void
attention_run_head(cpu_backend_t *be, cpu_rank_t *rk, int layer, int t0,
    int p0, int n, int head, const float *k, const float *v, int k0,
    float *s)
{
    const cpu_layer_t *L = &rk->layers[layer];
    int          hd = be->cfg.head_dim, ld = rk->n_heads * hd;
    int          i0, m, lo, hi, i, j, first, len;
    const float *q = rk->q + (size_t) t0 * ld + (size_t) head * hd;
    float       *out = rk->att + (size_t) t0 * ld + (size_t) head * hd;
    float       *row;

    for (i0 = 0; i0 < n; i0 += ATTN_TILE) {
        m = n - i0 < ATTN_TILE ? n - i0 : ATTN_TILE;
        lo = window_start(p0 + i0, L->window);   /* the first row's */
        hi = p0 + i0 + m;                        /* the last row sees all */
        infer_blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m,
                         hi - lo, hd, L->scale, q + (size_t) i0 * ld, ld,
                         k + (size_t) (lo - k0) * hd, hd, 0.0f, s, hi - lo);
        for (i = 0; i < m; i++) {
            row = s + (size_t) i * (hi - lo);
            first = window_start(p0 + i0 + i, L->window) - lo;
            len = p0 + i0 + i + 1 - lo;
            for (j = 0; j < first; j++) {
                row[j] = 0.0f;          /* masked: left of the window */
            }
            row += first;
            len -= first;
            infer_attn_softmax(row, len, be->cfg.attn_softcap);
            for (j = len; j < hi - lo - first; j++) {
                row[j] = 0.0f;          /* masked: later positions */
            }
        }
        infer_blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd,
                         hi - lo, 1.0f, s, hi - lo,
                         v + (size_t) (lo - k0) * hd, hd, 0.0f,
                         out + (size_t) i0 * ld, ld);
    }
}

/* Keys and values of positions [k0, ctx) of one kv head, in rows. */
static void
gather_kv(cpu_backend_t *be, cpu_rank_t *rk, int layer,
    const int32_t *table, int k0, int ctx, int kv_head, float *k, float *v)
{
    int    hd = be->cfg.head_dim, bs = be->block_size, p, n;
    size_t off;

    for (p = k0; p < ctx; p += n) {
        n = bs - p % bs;
        n = ctx - p < n ? ctx - p : n;
        off = kv_offset(be, rk, layer, table[p / bs], kv_head, p % bs);
        memcpy(k + (size_t) (p - k0) * hd, rk->k_cache + off,
               (size_t) n * hd * sizeof(float));
        memcpy(v + (size_t) (p - k0) * hd, rk->v_cache + off,
               (size_t) n * hd * sizeof(float));
    }
}

/*
 * Takes (decode token, kv head) pairs until none is left: the pair's
 * group of query heads, h / group == kv head (grouped-query attention),
 * over the token's cached positions [lo, pos] (lo: the window's first).
 */
static void
attention_decodes(cpu_backend_t *be, cpu_rank_t *rk, int worker)
{
    const infer_batch_t *b = rk->job.batch;
    const cpu_layer_t   *L = &rk->layers[rk->job.layer];
    int    hd = be->cfg.head_dim, group = rk->n_heads / rk->n_kv_heads;
    int    pairs = rk->n_decodes * rk->n_kv_heads, pair, t, g, ctx;
    float *s = rk->scratch + (size_t) worker * be->scratch_floats;
    size_t qoff;
    infer_attn_cache_t c;

    c.block_stride = (size_t) rk->n_kv_heads * be->block_size * hd;
    c.block_size = be->block_size;
    c.head_dim = hd;
    for ( ;; ) {
        pair = __atomic_fetch_add(&rk->job.next_pair, 1, __ATOMIC_RELAXED);
        if (pair >= pairs) {
            return;
        }
        t = rk->decodes[pair / rk->n_kv_heads];
        g = pair % rk->n_kv_heads;
        ctx = b->positions[t] + 1;
        c.k = rk->k_cache + kv_offset(be, rk, rk->job.layer, 0, g, 0);
        c.v = rk->v_cache + kv_offset(be, rk, rk->job.layer, 0, g, 0);
        c.table = b->block_table + (size_t) b->seq_of_token[t] * b->max_blocks;
        qoff = ((size_t) t * rk->n_heads + (size_t) g * group) * hd;
        infer_attn_decode(&c, window_start(ctx - 1, L->window), ctx,
                          rk->q + qoff, group, L->scale,
                          be->cfg.attn_softcap, rk->att + qoff, s);
    }
}

/*
 * Takes (prompt run, query head) pairs until none is left: the run's
 * keys and values of the head's kv head gathered into this thread's
 * scratch (once for the heads of a group, which come one after another),
 * then the head's attention.
 */
static void
attention_prompts(cpu_backend_t *be, cpu_rank_t *rk, int worker)
{
    const infer_batch_t *b = rk->job.batch;
    const cpu_layer_t   *L = &rk->layers[rk->job.layer];
    int     hd = be->cfg.head_dim, group = rk->n_heads / rk->n_kv_heads;
    int     items = rk->n_prompts * rk->n_heads, item, r, h, g, t0, n, p0;
    int     k0, held = -1;
    float  *k = rk->scratch + (size_t) worker * be->scratch_floats;
    float  *v = k + (size_t) be->ctx_cap * hd;
    float  *s = v + (size_t) be->ctx_cap * hd;
    const int32_t *table;

    for ( ;; ) {
        item = __atomic_fetch_add(&rk->job.next_head, 1, __ATOMIC_RELAXED);
        if (item >= items) {
            return;
        }
        r = item / rk->n_heads;
        h = item % rk->n_heads;
        g = h / group;
        t0 = rk->prompts[2 * r];
        n = rk->prompts[2 * r + 1];
        p0 = b->positions[t0];
        k0 = window_start(p0, L->window);
        if (held != r * rk->n_kv_heads + g) {
            held = r * rk->n_kv_heads + g;
            table = b->block_table
                    + (size_t) b->seq_of_token[t0] * b->max_blocks;
            gather_kv(be, rk, rk->job.layer, table, k0, p0 + n, g, k, v);
        }
        attention_run_head(be, rk, rk->job.layer, t0, p0, n, h, k, v, k0,
                           s);
    }
}

/* A thread's share of the step's attention: decode pairs, then prompt
 * heads where they are shared (OpenBLAS on the caller's thread: see
 * attention()). */
static void
attention_work(cpu_backend_t *be, cpu_rank_t *rk, int worker)
{
    attention_decodes(be, rk, worker);
    if (be->blas_threads == 1) {
        attention_prompts(be, rk, worker);
    }
}

/* What a helper runs when woken: attention pairs, or a product's rows. */
static void
rank_helper(void *arg, int index)
{
    cpu_rank_t *rk = arg;

    if (rk->helping == 1) {
        linear_rows(rk);
    } else {
        attention_work(rk->be, rk, index);
    }
}

/*
 * Attention for every token and query head of the batch.  A token alone
 * in the step for its sequence (decode) is a dot product per key
 * (attn_decode.h), and the helpers share its (token, kv head) pairs once
 * the step holds more than 2.5e5 key elements a query reads (a 128-token
 * context of TinyLlama's 32 heads of 64): TinyLlama int8 decode after 512
 * tokens, 2 threads, 11.0-12.7 tokens/s shared against 10.3-11.1 on this
 * thread alone (8.4-8.7 with one head at a time); after 128 tokens the
 * same either way.  Runs of prompt tokens go through OpenBLAS's matrix
 * products a query head at a time.  Where OpenBLAS has threads of its own
 * (be->blas_threads > 1: float32 weights, whose products it runs) they
 * are issued from this thread alone and OpenBLAS splits them: products
 * issued from several threads at once contend for its one pool
 * (TinyLlama-1.1B 512-token prefill, 2 threads: 146 tokens/s with the
 * runs on this thread, 48 with the runs shared by the helpers).  Where it
 * runs on the caller's thread (bf16 and int8 weights) the helpers share
 * the heads (TinyLlama bf16, 512-token prompt, 2 threads, 5 alternating
 * runs: 158-169 tokens/s, against 155-159 with the heads on this thread).
 */
static void
attention(cpu_backend_t *be, cpu_rank_t *rk, int layer,
    const infer_batch_t *b)
{
    double      work = 0;
    int         t, shared;

    rk->n_prompts = 0;
    rk->n_decodes = 0;
    for (t = 0; t < b->n_tokens; t++) {
        int n = 1;

        while (t + n < b->n_tokens
               && b->seq_of_token[t + n] == b->seq_of_token[t]
               && b->positions[t + n] == b->positions[t] + n)
        {
            n++;
        }
        if (n == 1) {
            rk->decodes[rk->n_decodes++] = t;
            work += (double) (b->positions[t] + 1) * rk->n_heads
                    * be->cfg.head_dim;
        } else {
            rk->prompts[2 * rk->n_prompts] = t;
            rk->prompts[2 * rk->n_prompts + 1] = n;
            rk->n_prompts++;
            t += n - 1;
        }
    }
    shared = work > 2.5e5 || (be->blas_threads == 1 && rk->n_prompts > 0);

    rk->job.layer = layer;
    rk->job.batch = b;
    rk->job.next_pair = 0;
    rk->job.next_head = 0;
    if (shared) {
        infer_crew_begin(&rk->helpers);
    }
    attention_work(be, rk, 0);
    if (shared) {
        infer_crew_end(&rk->helpers);
    }
    if (be->blas_threads > 1) {
        attention_prompts(be, rk, 0);
    }
}

/*
 * The MLP's activation, as transformers' ACT2FN computes it in float32:
 * silu x / (1 + exp(-x)); gelu x / 2 (1 + erf(x / sqrt 2)); the tanh
 * form x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).  Gated: a =
 * act(a) * up (Llama's act(gate) * up); else up is NULL.
 */
static void
activate(float *a, const float *up, size_t n, infer_act_t act)
{
    size_t i;

    switch (act) {
    case INFER_ACT_GELU:
#pragma omp simd
        for (i = 0; i < n; i++) {
            a[i] = a[i] * 0.5f * (1.0f + erff(a[i] * (float) M_SQRT1_2));
        }
        break;
    case INFER_ACT_GELU_TANH:
#pragma omp simd
        for (i = 0; i < n; i++) {
            float x = a[i];

            a[i] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f
                                            * (x + 0.044715f * x * x * x)));
        }
        break;
    default:
#pragma omp simd
        for (i = 0; i < n; i++) {
            a[i] = a[i] / (1.0f + expf(-a[i]));
        }
    }
    if (up != NULL) {
#pragma omp simd
        for (i = 0; i < n; i++) {
            a[i] *= up[i];
        }
    }
}

static void
residual_add(float *x, const float *y, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        x[i] += y[i];
    }
}

/* ---- the forward pass ---------------------------------------------------- */

/* Completes a partial product (o_proj, down_proj) over the ranks, then
 * adds its bias once. */
static int
reduce(cpu_backend_t *be, cpu_rank_t *rk, float *y, const float *bias,
    int n, int H)
{
    if (be->comm->ops->all_reduce_sum(be->comm, rk->rank, y, (size_t) n * H,
                                      INFER_DT_F32, NULL) != 0)
    {
        return -1;
    }
    if (bias != NULL) {
        add_bias(y, bias, n, H);
    }
    return 0;
}

static int
cpu_rank_forward(cpu_backend_t *be, cpu_rank_t *rk, const infer_batch_t *b,
    float *logits)
{
    const infer_model_config_t *c = &be->cfg;
    int    n = b->n_tokens, H = c->hidden_size, hd = c->head_dim;
    int    nq = rk->n_heads * hd, nkv = rk->n_kv_heads * hd, ni = rk->inter;
    float  eps = (float) c->rms_norm_eps;
    int    l, i;

    embedding(&be->embed, be->pos_embed, c->embed_scale, b->tokens,
              b->positions, n, H, rk->x);

    for (l = 0; l < c->num_layers; l++) {
        const cpu_layer_t *L = &rk->layers[l];

        /* self-attention block */
        norm(rk->h, rk->x, L->attn_norm, L->attn_norm_b, n, H, eps);
        linear(rk, rk->q, rk->h, &L->wq, L->bq, n, H, nq);
        linear(rk, rk->k, rk->h, &L->wk, L->bk, n, H, nkv);
        linear(rk, rk->v, rk->h, &L->wv, L->bv, n, H, nkv);
        if (L->q_norm != NULL) {
            head_norm(rk->q, L->q_norm, n, rk->n_heads, hd, eps);
            head_norm(rk->k, L->k_norm, n, rk->n_kv_heads, hd, eps);
        }
        if (c->rope.type != INFER_ROPE_NONE) {
            rope(be, rk->q, b, rk->n_heads);
            rope(be, rk->k, b, rk->n_kv_heads);
        }
        kv_cache_write(be, rk, l, b);
        attention(be, rk, l, b);
        linear(rk, rk->o, rk->att, &L->wo, NULL, n, nq, H);
        if (reduce(be, rk, rk->o, L->bo, n, H) != 0) {
            return -1;
        }
        if (L->post_attn_norm != NULL) {
            norm(rk->o, rk->o, L->post_attn_norm, NULL, n, H, eps);
        }
        residual_add(rk->x, rk->o, (size_t) n * H);

        /* MLP block */
        norm(rk->h, rk->x, L->mlp_norm, L->mlp_norm_b, n, H, eps);
        linear(rk, rk->up, rk->h, &L->w_up, L->b_up, n, H, ni);
        if (cpu_mat_set(L->w_gate)) {
            linear(rk, rk->gate, rk->h, &L->w_gate, L->b_gate, n, H, ni);
            activate(rk->gate, rk->up, (size_t) n * ni, c->act);
            linear(rk, rk->o, rk->gate, &L->w_down, NULL, n, ni, H);
        } else {
            activate(rk->up, NULL, (size_t) n * ni, c->act);
            linear(rk, rk->o, rk->up, &L->w_down, NULL, n, ni, H);
        }
        if (reduce(be, rk, rk->o, L->b_down, n, H) != 0) {
            return -1;
        }
        if (L->post_mlp_norm != NULL) {
            norm(rk->o, rk->o, L->post_mlp_norm, NULL, n, H, eps);
        }
        residual_add(rk->x, rk->o, (size_t) n * H);
    }

    if (rk->rank != 0 || b->n_logits == 0 || logits == NULL) {
        return 0;
    }

    /* final norm and lm_head, only for the tokens that are sampled */
    for (i = 0; i < b->n_logits; i++) {
        norm(be->h_logits + (size_t) i * H,
             rk->x + (size_t) b->logit_tokens[i] * H, be->final_norm,
             be->final_norm_b, 1, H, eps);
    }
    linear(rk, logits, be->h_logits, &be->lm_head, NULL, b->n_logits, H,
           c->vocab_size);
    if (c->final_softcap != 0.0f) {
        softcap(logits, b->n_logits * c->vocab_size, c->final_softcap);
    }
    return 0;
}

static void
cpu_rank_job(void *arg, int index)
{
    cpu_backend_t *be = arg;

    be->ranks[index].rc = cpu_rank_forward(be, &be->ranks[index], be->batch,
                                           NULL);
}

static int
cpu_forward(infer_backend_t *bk, const infer_batch_t *b, float *logits,
    char *err, size_t errlen)
{
    cpu_backend_t *be = bk->priv;
    int            r, rc, s;

    if (b->n_tokens < 1 || b->n_tokens > be->max_tokens) {
        snprintf(err, errlen, "cpu backend: batch of %d tokens (limit %d)",
                 b->n_tokens, be->max_tokens);
        return -1;
    }
    /* attention's scratch holds ctx_cap keys: a longer context would
     * overrun it */
    for (s = 0; s < b->n_seqs; s++) {
        if (b->ctx_len[s] < 1 || b->ctx_len[s] > be->ctx_cap) {
            snprintf(err, errlen, "cpu backend: sequence %d: context %d "
                     "outside [1, %d]", s, b->ctx_len[s], be->ctx_cap);
            return -1;
        }
    }

    /* length-dependent RoPE: each sequence's frequencies for its length
     * after this step, as transformers computes them from the largest
     * position of a forward call */
    if (be->freq_rows) {
        if (b->n_seqs < 1 || b->n_seqs > be->max_tokens) {
            snprintf(err, errlen, "cpu backend: batch of %d sequences "
                     "(limit %d)", b->n_seqs, be->max_tokens);
            return -1;
        }
        for (s = 0; s < b->n_seqs; s++) {
            infer_rope_inv_freq(&be->cfg.rope, b->ctx_len[s],
                                be->inv_freq
                                + (size_t) s * (be->cfg.rope.dim / 2));
        }
    }

    be->batch = b;
    infer_crew_begin(&be->crew);
    rc = cpu_rank_forward(be, &be->ranks[0], b, logits);
    infer_crew_end(&be->crew);
    for (r = 1; r < be->tp; r++) {
        rc |= be->ranks[r].rc;
    }
    if (rc != 0) {
        snprintf(err, errlen, "cpu backend: collective failed");
        return -1;
    }
    return 0;
}

/* ---- set-up and tear-down ------------------------------------------------ */

static void cpu_destroy(infer_backend_t *bk);

static int
cpu_init(infer_backend_t *bk, const infer_model_t *m,
    infer_backend_params_t *p, char *err, size_t errlen)
{
    const infer_model_config_t *c = &m->cfg;
    cpu_backend_t *be;
    const char    *wide, *row;
    size_t         per_block;
    int            r, half, cols, one_row, tp = p->tp > 0 ? p->tp : 1;

    if (c->num_heads % tp != 0 || c->num_kv_heads % tp != 0) {
        snprintf(err, errlen, "tp=%d must divide num_attention_heads (%d) "
                 "and num_key_value_heads (%d)", tp, c->num_heads,
                 c->num_kv_heads);
        return -1;
    }
    if (c->intermediate_size < tp) {
        snprintf(err, errlen, "tp=%d exceeds intermediate_size %d", tp,
                 c->intermediate_size);
        return -1;
    }

    be = calloc(1, sizeof(*be));
    if (be == NULL) {
        snprintf(err, errlen, "cpu backend: out of memory");
        return -1;
    }
    bk->priv = be;
    be->cfg = *c;
    be->tp = tp;
    be->threads = p->threads > 0 ? p->threads : 1;
    be->block_size = p->block_size;
    be->max_tokens = p->max_batch_tokens;

    /* the weights' type in memory: bf16 checkpoints stay bf16 unless f32
     * is asked for; int8 only when asked for */
    if (p->dtype == NULL || strcmp(p->dtype, "auto") == 0) {
        be->wtype = m->embed->dtype == INFER_DT_BF16 ? CPU_BF16 : CPU_F32;
    } else if (strcmp(p->dtype, "f32") == 0) {
        be->wtype = CPU_F32;
    } else if (strcmp(p->dtype, "bf16") == 0) {
        be->wtype = CPU_BF16;
    } else if (strcmp(p->dtype, "int8") == 0) {
        be->wtype = CPU_INT8;
    } else {
        snprintf(err, errlen, "dtype=%s: the cpu backend holds weights as "
                 "f32, bf16 or int8", p->dtype);
        goto failed;
    }
    p->dtype_used = be->wtype == CPU_INT8 ? "int8"
                    : be->wtype == CPU_BF16 ? "bf16" : "f32";

    /* the budget covers keys and values of every layer across all ranks */
    per_block = infer_backend_kv_block_bytes(&infer_backend_cpu, c,
                                             p->block_size);
    be->n_blocks = (int) (p->kv_cache_bytes / per_block);
    if (be->n_blocks < 1) {
        snprintf(err, errlen, "kv_cache=%zu bytes holds no block of %d "
                 "tokens (one block needs %zu bytes)", p->kv_cache_bytes,
                 p->block_size, per_block);
        goto failed;
    }
    p->n_blocks = be->n_blocks;
    be->ctx_cap = c->max_position;
    if ((int64_t) be->n_blocks * p->block_size < be->ctx_cap) {
        be->ctx_cap = be->n_blocks * p->block_size;
    }
    /* a thread's: a prompt run's keys, values and ATTN_TILE rows of
     * scores, or a decode group's rows of scores */
    cols = 2 * c->head_dim + ATTN_TILE;
    if (c->num_heads / c->num_kv_heads > cols) {
        cols = c->num_heads / c->num_kv_heads;
    }
    be->scratch_floats = (size_t) be->ctx_cap * cols;

    if (infer_blas_load(err, errlen) != 0) {
        goto failed;
    }
    /* Prefill with bf16 or int8 weights: ours (gemm_wide.h), which pack
     * W as it lies.  On AVX2 CPUs they widen it to float32 (TinyLlama,
     * 128 tokens, 2 threads, 3 alternating runs, against widening tiles
     * for sgemm: bf16 42.0-45.9 tokens/s against 33.4-38.8); on AVX-512
     * ones only with the pair dot products (AVX512_BF16 for bf16,
     * AVX512_VNNI for int8; bench/RESULTS.md "AVX-512"), else OpenBLAS's
     * SkylakeX sgemm on widened tiles, twice our AVX2 vector width.
     * Float32 W: on AVX2 sgemm, which packs it faster than ours (46.9-47.9
     * tokens/s against 41.5-45.5); on AVX-512 ours with x packed instead
     * and W read as it lies (gemm_wide.h; TinyLlama, 128 tokens, 2
     * threads on Zen 4, 3 alternating runs: 80.5-98.7 tokens/s against
     * sgemm's 73.5-80.8).  Decode: ours, and sgemv for one row of float32
     * (linear()). */
    wide = be->wtype != CPU_F32
           ? infer_gemm_wide_kernel(be->wtype == CPU_INT8) : NULL;
    be->f32_row = strcmp(infer_gemm_narrow_kernel(), "AVX-512") == 0;
    be->wide = wide != NULL && (strncmp(wide, "AVX512", 6) == 0
                                || !__builtin_cpu_supports("avx512f"));
    be->bf16_pairs = be->wide && strcmp(wide, "AVX512-BF16") == 0;
    be->f32_wide = be->wtype == CPU_F32
                   && infer_gemm_wide_f32_kernel() != NULL;
    /* int8's single rows run the x16 product */
    row = infer_gemm_narrow_x16_kernel();
    one_row = be->wtype == CPU_INT8
              && strcmp(row, infer_gemm_narrow_kernel()) != 0;
    snprintf(p->kernels, sizeof(p->kernels),
             "%s; decode products: %s%s%s%s; prefill products: %s; "
             "decode attention: %s", infer_blas_kernels(),
             be->bf16_pairs ? wide : infer_gemm_narrow_kernel(),
             one_row ? " (one row: " : "", one_row ? row : "",
             one_row ? ")" : "",
             be->wide ? wide
             : be->f32_wide ? infer_gemm_wide_f32_kernel() : "OpenBLAS",
             infer_attn_decode_kernel(c->head_dim));
    p->kernels_warning = infer_blas_warning();
    /* OpenBLAS's threads only where its sgemm runs the products (float32
     * without AVX-512, or bf16/int8 widened for it).  Elsewhere it runs
     * only prefill attention, inside the helpers, a head per thread, where
     * its own worker threads, idle, poll with sched_yield for a while
     * after each call, against the helpers and the decode steps that follow
     * (TinyLlama bf16, 512-token prompt, 2 threads: 1.25 million
     * sched_yield calls a run, 0.11 million with one OpenBLAS thread;
     * prefill 134-141 tokens/s against 131-133, 3 alternating runs). */
    be->blas_threads = (be->wtype != CPU_F32 && be->wide) || be->f32_wide
                       ? 1 : be->threads;
    if (p->threads > 0) {
        infer_blas.set_num_threads(be->blas_threads);
    }

    /* RoPE frequencies: computed once, or per sequence and step when
     * they depend on its length (a step has at most max_tokens) */
    half = c->rope.dim / 2 > 0 ? c->rope.dim / 2 : 1;
    be->freq_rows = infer_rope_depends_on_length(&c->rope);
    be->rope_scale = infer_rope_scaling(&c->rope);
    be->inv_freq = malloc((size_t) (be->freq_rows ? be->max_tokens : 1)
                          * half * sizeof(float));
    be->h_logits = malloc((size_t) be->max_tokens * c->hidden_size
                          * sizeof(float));
    be->ranks = calloc(tp, sizeof(cpu_rank_t));
    if (be->inv_freq == NULL || be->h_logits == NULL || be->ranks == NULL
        || infer_comm_threads_create(tp, &be->comm) != 0)
    {
        snprintf(err, errlen, "cpu backend: out of memory");
        goto failed;
    }
    if (c->rope.type != INFER_ROPE_NONE) {
        infer_rope_inv_freq(&c->rope, 1, be->inv_freq);
    }

    if (cpu_matrix_rows(be, m->embed, 0, c->vocab_size, &be->embed) != 0) {
        snprintf(err, errlen, "cpu backend: out of memory loading weights");
        goto failed;
    }
    if (m->lm_head == m->embed) {
        be->lm_head = be->embed;
    } else if (cpu_matrix_rows(be, m->lm_head, 0, c->vocab_size,
                               &be->lm_head) != 0)
    {
        snprintf(err, errlen, "cpu backend: out of memory loading weights");
        goto failed;
    }
    be->pos_embed = m->pos_embed == NULL ? NULL
                    : cpu_weight_rows(be, m->pos_embed, 0, c->max_position);
    if ((m->pos_embed != NULL && be->pos_embed == NULL)
        || cpu_norm(be, m->final_norm, &be->final_norm) != 0
        || cpu_bias(be, m->final_norm_b, 0, c->hidden_size,
                    &be->final_norm_b) != 0)
    {
        snprintf(err, errlen, "cpu backend: out of memory loading weights");
        goto failed;
    }

    for (r = 0; r < tp; r++) {
        cpu_rank_t *rk = &be->ranks[r];

        rk->be = be;
        rk->rank = r;
        rk->n_heads = c->num_heads / tp;
        rk->n_kv_heads = c->num_kv_heads / tp;
        rk->inter = c->intermediate_size * (r + 1) / tp
                    - c->intermediate_size * r / tp;
        if (cpu_load_rank(be, m, rk) != 0 || cpu_alloc_rank(be, rk) != 0) {
            snprintf(err, errlen, "cpu backend: out of memory for rank %d "
                     "(%d KV blocks of %d tokens)", r, be->n_blocks,
                     be->block_size);
            goto failed;
        }
        if (infer_crew_init(&rk->helpers, be->threads - 1, rank_helper,
                            rk) != 0)
        {
            snprintf(err, errlen, "cpu backend: cannot start the attention "
                     "threads of rank %d", r);
            goto failed;
        }
    }
    if (infer_crew_init(&be->crew, tp - 1, cpu_rank_job, be) != 0) {
        snprintf(err, errlen, "cpu backend: cannot start the rank threads");
        goto failed;
    }
    p->weight_bytes = be->weight_bytes;
    return 0;

failed:
    cpu_destroy(bk);
    return -1;
}

static void
cpu_destroy(infer_backend_t *bk)
{
    cpu_backend_t *be = bk->priv;
    int            r, i;

    if (be == NULL) {
        return;
    }
    /* the rank threads first: they use their ranks' helpers */
    infer_crew_destroy(&be->crew);
    if (be->ranks != NULL) {
        for (r = 0; r < be->tp; r++) {
            cpu_rank_t *rk = &be->ranks[r];

            infer_crew_destroy(&rk->helpers);
            free(rk->layers);
            free(rk->k_cache);
            free(rk->v_cache);
            free(rk->x);
            free(rk->h);
            free(rk->o);
            free(rk->q);
            free(rk->att);
            free(rk->k);
            free(rk->v);
            free(rk->gate);
            free(rk->up);
            free(rk->scratch);
            free(rk->prompts);
            free(rk->decodes);
            free(rk->wtile);
            free(rk->xq);
            free(rk->xscale);
            free(rk->xwide);
        }
        free(be->ranks);
    }
    for (i = 0; i < be->n_owned; i++) {
        if (be->owned_maps[i] > 0) {
            munmap(be->owned[i], be->owned_maps[i]);
        } else {
            free(be->owned[i]);
        }
    }
    free(be->owned);
    free(be->owned_maps);
    free(be->inv_freq);
    free(be->h_logits);
    if (be->comm != NULL) {
        be->comm->ops->destroy(be->comm);
    }
    free(be);
    bk->priv = NULL;
}

const infer_backend_ops_t infer_backend_cpu = {
    "cpu",
    sizeof(float),
    cpu_init,
    cpu_forward,
    NULL,
    cpu_destroy
};
