/*
 * CPU backend: float32 compute, OpenBLAS for the matrix products.
 *
 * The forward pass follows Hugging Face's LlamaModel (and Qwen2, which only
 * adds q/k/v biases) over a flat batch of tokens from many sequences.  Each
 * tensor-parallel rank holds a Megatron slice of every layer: its share of
 * the query/key/value heads and of the MLP's intermediate columns; the
 * attention output and the MLP down projection are partial sums that an
 * all-reduce completes.  Embedding, final norm and lm_head are replicated
 * and only rank 0 produces logits.  Rank 0 runs in the caller's thread,
 * ranks 1.. in threads of their own.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "comm.h"
#include "crew.h"

/*
 * glibc's libmvec (linked through libm) has vector expf; math.h declares it
 * only under -ffast-math, which would also drop the infinities the softmax
 * relies on.  Declared here, the softmax loops call it 4 lanes at a time:
 * the exponentials were a quarter of stories260K's prefill time.
 */
#pragma omp declare simd notinbranch
float expf(float x);

typedef struct {
    const float *attn_norm, *mlp_norm;   /* [H] */
    const float *wq, *wk, *wv;           /* [heads_r * hd, H] */
    const float *bq, *bk, *bv;           /* [heads_r * hd] or NULL */
    const float *wo;                     /* [H, n_heads_r * hd] */
    const float *w_gate, *w_up;          /* [inter_r, H] */
    const float *w_down;                 /* [H, inter_r] */
} cpu_layer_t;

typedef struct cpu_backend cpu_backend_t;
typedef struct cpu_rank cpu_rank_t;

/*
 * What a rank's attention helpers share in a step.  The helpers are a crew
 * of threads - 1 sleeping threads, not OpenMP: its idle threads spin after
 * a parallel region and took the cores from OpenBLAS (stories260K
 * batch-16 prefill, 2 threads: 36k tokens/s, 52k with
 * OMP_WAIT_POLICY=PASSIVE, which a module cannot set before libgomp reads
 * it at load).
 */
typedef struct {
    int                  layer;
    const infer_batch_t *batch;
    int                  next_pair;   /* taken with an atomic add */
} cpu_attention_job_t;

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
    int                   ctx_cap;     /* longest context the KV pool holds */
    size_t                scratch_floats;
    const float          *embed;       /* [V, H] */
    const float          *lm_head;     /* [V, H] */
    const float          *final_norm;  /* [H] */
    float                *inv_freq;    /* [hd / 2] */
    float                *h_logits;    /* [max_tokens, H] normed rows */
    cpu_rank_t           *ranks;
    infer_comm_t         *comm;
    void                **owned;       /* converted weight copies */
    int                   n_owned;

    /* ranks 1.. in threads of their own */
    infer_crew_t          crew;
    const infer_batch_t  *batch;
};

/* ---- weights ------------------------------------------------------------ */

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
    int64_t  cols = t->ndim == 1 ? t->shape[0] : t->shape[1];
    float   *copy;
    void   **owned;

    if (t->dtype == INFER_DT_F32 && c0 == 0 && nc == cols
        && ((uintptr_t) t->data % sizeof(float)) == 0)
    {
        return (const float *) t->data + r0 * cols;
    }

    owned = realloc(be->owned, (be->n_owned + 1) * sizeof(void *));
    if (owned == NULL) {
        return NULL;
    }
    be->owned = owned;
    copy = malloc((size_t) nr * nc * sizeof(float));
    if (copy == NULL) {
        return NULL;
    }
    be->owned[be->n_owned++] = copy;
    infer_tensor_read_f32(t, r0, nr, c0, nc, copy);
    return copy;
}

static const float *
cpu_weight_rows(cpu_backend_t *be, const infer_tensor_t *t, int64_t r0,
    int64_t nr)
{
    int64_t cols = t->ndim == 1 ? t->shape[0] : t->shape[1];

    return cpu_weight(be, t, r0, nr, 0, cols);
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

        L->attn_norm = cpu_weight_rows(be, w->attn_norm, 0, 1);
        L->mlp_norm = cpu_weight_rows(be, w->mlp_norm, 0, 1);
        L->wq = cpu_weight_rows(be, w->wq, q0, nq);
        L->wk = cpu_weight_rows(be, w->wk, kv0, nkv);
        L->wv = cpu_weight_rows(be, w->wv, kv0, nkv);
        L->wo = cpu_weight(be, w->wo, 0, H, q0, nq);
        L->w_gate = cpu_weight_rows(be, w->w_gate, i0, rk->inter);
        L->w_up = cpu_weight_rows(be, w->w_up, i0, rk->inter);
        L->w_down = cpu_weight(be, w->w_down, 0, H, i0, rk->inter);
        if (!L->attn_norm || !L->mlp_norm || !L->wq || !L->wk || !L->wv
            || !L->wo || !L->w_gate || !L->w_up || !L->w_down)
        {
            return -1;
        }
        if (w->bq != NULL) {
            /* a bias is a single row: slice it as columns */
            L->bq = cpu_weight(be, w->bq, 0, 1, q0, nq);
            L->bk = cpu_weight(be, w->bk, 0, 1, kv0, nkv);
            L->bv = cpu_weight(be, w->bv, 0, 1, kv0, nkv);
            if (!L->bq || !L->bk || !L->bv) {
                return -1;
            }
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

    return (rk->k_cache && rk->v_cache && rk->x && rk->h && rk->o && rk->q
            && rk->att && rk->k && rk->v && rk->gate && rk->up && rk->scratch
            && rk->prompts && rk->decodes)
           ? 0 : -1;
}

/* ---- the ops, one function each ----------------------------------------- */

static void
embedding(const float *table, const int32_t *tokens, int n, int H, float *x)
{
    int t;

    for (t = 0; t < n; t++) {
        memcpy(x + (size_t) t * H, table + (size_t) tokens[t] * H,
               H * sizeof(float));
    }
}

/* y = x / sqrt(mean(x^2) + eps) * w, row by row */
static void
rms_norm(float *y, const float *x, const float *w, int n, int H, float eps)
{
    int t, i;

    for (t = 0; t < n; t++) {
        const float *xr = x + (size_t) t * H;
        float       *yr = y + (size_t) t * H;
        float        ss = 0.0f, scale;

        for (i = 0; i < H; i++) {
            ss += xr[i] * xr[i];
        }
        scale = 1.0f / sqrtf(ss / H + eps);
        for (i = 0; i < H; i++) {
            yr[i] = w[i] * (xr[i] * scale);
        }
    }
}

/*
 * y[n, out] = x[n, in] W[out, in]^T (+ b).  Below 4 rows, one sgemv per row:
 * OpenBLAS's sgemm packs W even for a single row and measured 2.8x slower
 * than sgemv at n=1 (2048x5632, 2 threads: 2.40 ms vs 0.86 ms); at n=4 the
 * two break even.  The two paths round differently in the last bit; the
 * batching tests hold the generated text to the reference regardless.
 */
static void
linear(float *y, const float *x, const float *W, const float *b, int n,
    int in, int out)
{
    int t;

    if (n < 4) {
        for (t = 0; t < n; t++) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in,
                        x + (size_t) t * in, 1, 0.0f, y + (size_t) t * out,
                        1);
        }
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in,
                    1.0f, x, in, W, in, 0.0f, y, out);
    }
    if (b != NULL) {
        for (t = 0; t < n; t++) {
            cblas_saxpy(out, 1.0f, b, 1, y + (size_t) t * out, 1);
        }
    }
}

/*
 * Rotary position embedding, Hugging Face's rotate_half layout: element i
 * of the first half of a head pairs with element i of the second half.
 */
static void
rope(float *x, const int32_t *positions, int n, int heads, int hd,
    const float *inv_freq)
{
    int t, h, i, half = hd / 2;

    for (t = 0; t < n; t++) {
        for (i = 0; i < half; i++) {
            float angle = (float) positions[t] * inv_freq[i];
            float c = cosf(angle), s = sinf(angle);

            for (h = 0; h < heads; h++) {
                float *xh = x + ((size_t) t * heads + h) * hd;
                float  a = xh[i], b = xh[i + half];

                xh[i] = a * c - b * s;
                xh[i + half] = b * c + a * s;
            }
        }
    }
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

/*
 * Causal attention of one token and one query head over its sequence's
 * cached positions [0, pos], block by block (a block's slots are
 * contiguous).
 */
static void
attention_head(cpu_backend_t *be, cpu_rank_t *rk, int layer,
    const int32_t *table, int ctx, int kv_head, const float *q, float *out,
    float *s)
{
    int          hd = be->cfg.head_dim, bs = be->block_size;
    int          blk, slot, j, d, n;
    float        scale = 1.0f / sqrtf((float) hd), max = -INFINITY;
    float        sum = 0.0f;
    const float *k, *v;

    for (blk = 0, j = 0; j < ctx; blk++) {
        k = rk->k_cache + kv_offset(be, rk, layer, table[blk], kv_head, 0);
        n = ctx - j < bs ? ctx - j : bs;
        for (slot = 0; slot < n; slot++, j++, k += hd) {
            float dot = 0.0f;

#pragma omp simd reduction(+:dot)
            for (d = 0; d < hd; d++) {
                dot += q[d] * k[d];
            }
            s[j] = dot * scale;
            max = s[j] > max ? s[j] : max;
        }
    }
#pragma omp simd reduction(+:sum)
    for (j = 0; j < ctx; j++) {
        s[j] = expf(s[j] - max);
        sum += s[j];
    }
    memset(out, 0, hd * sizeof(float));
    for (blk = 0, j = 0; j < ctx; blk++) {
        v = rk->v_cache + kv_offset(be, rk, layer, table[blk], kv_head, 0);
        n = ctx - j < bs ? ctx - j : bs;
        for (slot = 0; slot < n; slot++, j++, v += hd) {
            float p = s[j];

#pragma omp simd
            for (d = 0; d < hd; d++) {
                out[d] += p * v[d];
            }
        }
    }
    /* normalized once at the end: one division per head, not per slot */
    for (d = 0; d < hd; d++) {
        out[d] /= sum;
    }
}

/*
 * Prefill attention of a run: n consecutive positions p0.. of one sequence
 * and one query head, as Hugging Face's eager attention computes it: S =
 * Q K^T / sqrt(hd) over the context [0, p0 + n), the causal mask, softmax
 * by rows, O = P V; both products by OpenBLAS, ATTN_TILE query rows at a
 * time.  k and v hold the context's keys and values gathered into rows.
 * Against one dot product per (token, key) this took TinyLlama-1.1B's
 * 512-token prefill (2 threads) from 121 to 146 tokens/s.
 */
#define ATTN_TILE  64

static void
attention_run_head(cpu_backend_t *be, cpu_rank_t *rk, int t0, int p0, int n,
    int head, const float *k, const float *v, float *s)
{
    int          hd = be->cfg.head_dim, ld = rk->n_heads * hd;
    int          i0, m, ctx, i, j, len;
    float        scale = 1.0f / sqrtf((float) hd), max, sum;
    const float *q = rk->q + (size_t) t0 * ld + (size_t) head * hd;
    float       *out = rk->att + (size_t) t0 * ld + (size_t) head * hd;
    float       *row;

    for (i0 = 0; i0 < n; i0 += ATTN_TILE) {
        m = n - i0 < ATTN_TILE ? n - i0 : ATTN_TILE;
        ctx = p0 + i0 + m;              /* the tile's last row sees all */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, ctx, hd,
                    scale, q + (size_t) i0 * ld, ld, k, hd, 0.0f, s, ctx);
        for (i = 0; i < m; i++) {
            row = s + (size_t) i * ctx;
            len = p0 + i0 + i + 1;
            max = -INFINITY;
            sum = 0.0f;
#pragma omp simd reduction(max:max)
            for (j = 0; j < len; j++) {
                max = row[j] > max ? row[j] : max;
            }
#pragma omp simd reduction(+:sum)
            for (j = 0; j < len; j++) {
                row[j] = expf(row[j] - max);
                sum += row[j];
            }
            sum = 1.0f / sum;
#pragma omp simd
            for (j = 0; j < len; j++) {
                row[j] *= sum;
            }
            for (j = len; j < ctx; j++) {
                row[j] = 0.0f;          /* masked: later positions */
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, ctx,
                    1.0f, s, ctx, v, hd, 0.0f, out + (size_t) i0 * ld, ld);
    }
}

/* Keys and values of positions [0, ctx) of one kv head, in rows. */
static void
gather_kv(cpu_backend_t *be, cpu_rank_t *rk, int layer,
    const int32_t *table, int ctx, int kv_head, float *k, float *v)
{
    int    hd = be->cfg.head_dim, bs = be->block_size, blk, n;
    size_t off;

    for (blk = 0; blk * bs < ctx; blk++) {
        n = ctx - blk * bs < bs ? ctx - blk * bs : bs;
        off = kv_offset(be, rk, layer, table[blk], kv_head, 0);
        memcpy(k + (size_t) blk * bs * hd, rk->k_cache + off,
               (size_t) n * hd * sizeof(float));
        memcpy(v + (size_t) blk * bs * hd, rk->v_cache + off,
               (size_t) n * hd * sizeof(float));
    }
}

/*
 * Takes (decode token, query head) pairs until none is left.  Query head h
 * reads kv head h / group (grouped-query attention).
 */
static void
attention_decodes(cpu_backend_t *be, cpu_rank_t *rk, int worker)
{
    const infer_batch_t *b = rk->job.batch;
    int    hd = be->cfg.head_dim, group = rk->n_heads / rk->n_kv_heads;
    int    pairs = rk->n_decodes * rk->n_heads, pair, t, h;
    float *s = rk->scratch + (size_t) worker * be->scratch_floats;

    for ( ;; ) {
        pair = __atomic_fetch_add(&rk->job.next_pair, 1, __ATOMIC_RELAXED);
        if (pair >= pairs) {
            return;
        }
        t = rk->decodes[pair / rk->n_heads];
        h = pair % rk->n_heads;
        attention_head(be, rk, rk->job.layer,
                       b->block_table
                       + (size_t) b->seq_of_token[t] * b->max_blocks,
                       b->positions[t] + 1, h / group,
                       rk->q + ((size_t) t * rk->n_heads + h) * hd,
                       rk->att + ((size_t) t * rk->n_heads + h) * hd, s);
    }
}

/* Every run of two or more prompt tokens, kv head by kv head. */
static void
attention_prompts(cpu_backend_t *be, cpu_rank_t *rk)
{
    const infer_batch_t *b = rk->job.batch;
    int     hd = be->cfg.head_dim, group = rk->n_heads / rk->n_kv_heads;
    int     r, g, h, t0, n, p0;
    float  *k = rk->scratch, *v = k + (size_t) be->ctx_cap * hd;
    float  *s = v + (size_t) be->ctx_cap * hd;
    const int32_t *table;

    for (r = 0; r < rk->n_prompts; r++) {
        t0 = rk->prompts[2 * r];
        n = rk->prompts[2 * r + 1];
        p0 = b->positions[t0];
        table = b->block_table + (size_t) b->seq_of_token[t0] * b->max_blocks;
        for (g = 0; g < rk->n_kv_heads; g++) {
            gather_kv(be, rk, rk->job.layer, table, p0 + n, g, k, v);
            for (h = g * group; h < (g + 1) * group; h++) {
                attention_run_head(be, rk, t0, p0, n, h, k, v, s);
            }
        }
    }
}

static void
attention_helper(void *arg, int index)
{
    cpu_rank_t *rk = arg;

    attention_decodes(rk->be, rk, index);
}

/*
 * Attention for every token and query head of the batch.  A token alone
 * in the step for its sequence (decode) is a dot product per key, and the
 * helpers share those pairs when there are enough of them to pay for the
 * wake-ups.  Runs of prompt tokens go through matrix products from this
 * thread alone, which OpenBLAS splits over its own threads: products
 * issued from several threads at once contend for OpenBLAS's one pool
 * (TinyLlama-1.1B 512-token prefill, 2 threads: 146 tokens/s with the
 * runs on this thread, 48 with the runs shared by the helpers).
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
    shared = work > 4e6;

    rk->job.layer = layer;
    rk->job.batch = b;
    rk->job.next_pair = 0;
    if (shared) {
        infer_crew_begin(&rk->helpers);
    }
    attention_decodes(be, rk, 0);
    if (shared) {
        infer_crew_end(&rk->helpers);
    }
    attention_prompts(be, rk);
}

/* gate = silu(gate) * up */
static void
swiglu(float *gate, const float *up, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
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

static int
cpu_rank_forward(cpu_backend_t *be, cpu_rank_t *rk, const infer_batch_t *b,
    float *logits)
{
    const infer_model_config_t *c = &be->cfg;
    int    n = b->n_tokens, H = c->hidden_size, hd = c->head_dim;
    int    nq = rk->n_heads * hd, nkv = rk->n_kv_heads * hd;
    float  eps = (float) c->rms_norm_eps;
    int    l, i;

    embedding(be->embed, b->tokens, n, H, rk->x);

    for (l = 0; l < c->num_layers; l++) {
        const cpu_layer_t *L = &rk->layers[l];

        /* self-attention block */
        rms_norm(rk->h, rk->x, L->attn_norm, n, H, eps);
        linear(rk->q, rk->h, L->wq, L->bq, n, H, nq);
        linear(rk->k, rk->h, L->wk, L->bk, n, H, nkv);
        linear(rk->v, rk->h, L->wv, L->bv, n, H, nkv);
        rope(rk->q, b->positions, n, rk->n_heads, hd, be->inv_freq);
        rope(rk->k, b->positions, n, rk->n_kv_heads, hd, be->inv_freq);
        kv_cache_write(be, rk, l, b);
        attention(be, rk, l, b);
        linear(rk->o, rk->att, L->wo, NULL, n, nq, H);
        if (be->comm->ops->all_reduce_sum(be->comm, rk->rank, rk->o,
                                          (size_t) n * H, INFER_DT_F32,
                                          NULL) != 0)
        {
            return -1;
        }
        residual_add(rk->x, rk->o, (size_t) n * H);

        /* MLP block */
        rms_norm(rk->h, rk->x, L->mlp_norm, n, H, eps);
        linear(rk->gate, rk->h, L->w_gate, NULL, n, H, rk->inter);
        linear(rk->up, rk->h, L->w_up, NULL, n, H, rk->inter);
        swiglu(rk->gate, rk->up, (size_t) n * rk->inter);
        linear(rk->o, rk->gate, L->w_down, NULL, n, rk->inter, H);
        if (be->comm->ops->all_reduce_sum(be->comm, rk->rank, rk->o,
                                          (size_t) n * H, INFER_DT_F32,
                                          NULL) != 0)
        {
            return -1;
        }
        residual_add(rk->x, rk->o, (size_t) n * H);
    }

    if (rk->rank != 0 || b->n_logits == 0 || logits == NULL) {
        return 0;
    }

    /* final norm and lm_head, only for the tokens that are sampled */
    for (i = 0; i < b->n_logits; i++) {
        rms_norm(be->h_logits + (size_t) i * H,
                 rk->x + (size_t) b->logit_tokens[i] * H,
                 be->final_norm, 1, H, eps);
    }
    linear(logits, be->h_logits, be->lm_head, NULL, b->n_logits, H,
           c->vocab_size);
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
    int            r, rc;

    if (b->n_tokens < 1 || b->n_tokens > be->max_tokens) {
        snprintf(err, errlen, "cpu backend: batch of %d tokens (limit %d)",
                 b->n_tokens, be->max_tokens);
        return -1;
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
    size_t         per_block;
    int            r, i, tp = p->tp > 0 ? p->tp : 1;

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
    be->scratch_floats = (size_t) be->ctx_cap * (2 * c->head_dim + ATTN_TILE);

    if (p->threads > 0) {
        openblas_set_num_threads(p->threads);
    }

    be->inv_freq = malloc(c->head_dim / 2 * sizeof(float));
    be->h_logits = malloc((size_t) be->max_tokens * c->hidden_size
                          * sizeof(float));
    be->ranks = calloc(tp, sizeof(cpu_rank_t));
    if (be->inv_freq == NULL || be->h_logits == NULL || be->ranks == NULL
        || infer_comm_threads_create(tp, &be->comm) != 0)
    {
        snprintf(err, errlen, "cpu backend: out of memory");
        goto failed;
    }
    /* inv_freq_i = theta^(-2i/d), as Hugging Face computes it in float32 */
    for (i = 0; i < c->head_dim / 2; i++) {
        be->inv_freq[i] = (float) (1.0 / pow(c->rope_theta,
                                             (double) (2 * i) / c->head_dim));
    }

    be->embed = cpu_weight_rows(be, m->embed, 0, c->vocab_size);
    be->lm_head = m->lm_head == m->embed
                  ? be->embed
                  : cpu_weight_rows(be, m->lm_head, 0, c->vocab_size);
    be->final_norm = cpu_weight_rows(be, m->final_norm, 0, 1);
    if (!be->embed || !be->lm_head || !be->final_norm) {
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
        if (infer_crew_init(&rk->helpers, be->threads - 1, attention_helper,
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
        }
        free(be->ranks);
    }
    for (i = 0; i < be->n_owned; i++) {
        free(be->owned[i]);
    }
    free(be->owned);
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
