/*
 * CPU forward pass against Hugging Face transformers.  Each file in
 * t/data/ref holds float32 logits that transformers computed for a token
 * sequence on a model that infer-gen-model makes deterministically (or on
 * stories260K); the test makes the same model again, runs the backend and
 * compares: once as one prefill of the whole sequence, once as a prefill of
 * the first half followed by one-token decode steps through the KV cache,
 * and once as a prefill split over two tensor-parallel ranks.
 *
 * Tolerance: max |ours - ref| / max |ref| <= 1e-4 per model.  Both sides
 * compute in float32 but sum in different orders (OpenBLAS vs PyTorch
 * kernels, our softmax and RMSNorm loops), which moves logits by a few
 * 1e-7..1e-6 relative; 1e-4 leaves room for that while any real mistake
 * (RoPE layout, a missing bias, the wrong eps or head_dim, a GQA mapping
 * error, a masked position) moves them by 1e-3 or more.
 */
#include <libgen.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include "backend.h"
#include "tap.h"

#define TOL 1e-4

typedef struct {
    char     name[64];
    char     source[256];
    int      n_tokens;
    int32_t  tokens[64];
    int      vocab, stride, n_ids;
    float   *ref;                   /* [n_tokens][n_ids] */
} ref_t;

static char gen_path[4096];
static char err[1024];


static int
ref_read(const char *path, ref_t *r)
{
    FILE *f = fopen(path, "r");
    char  line[512];
    int   i, p, k;

    memset(r, 0, sizeof(*r));
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) && line[0] == '#') {
        /* comments */
    }
    if (sscanf(line, "model %63s", r->name) != 1
        || fscanf(f, "source %255[^\n]\n", r->source) != 1
        || fscanf(f, "tokens %d", &r->n_tokens) != 1
        || r->n_tokens < 2 || r->n_tokens > 64)
    {
        goto bad;
    }
    for (i = 0; i < r->n_tokens; i++) {
        if (fscanf(f, "%d", &r->tokens[i]) != 1) {
            goto bad;
        }
    }
    if (fscanf(f, " vocab %d stride %d ids %d", &r->vocab, &r->stride,
               &r->n_ids) != 3 || r->stride < 1 || r->n_ids < 1
        || (r->n_ids - 1) * r->stride >= r->vocab)
    {
        goto bad;
    }
    r->ref = malloc(sizeof(float) * r->n_tokens * r->n_ids);
    for (p = 0; r->ref && p < r->n_tokens; p++) {
        if (fscanf(f, " pos %d", &i) != 1 || i != p) {
            goto bad;
        }
        for (k = 0; k < r->n_ids; k++) {
            if (fscanf(f, "%f", &r->ref[p * r->n_ids + k]) != 1) {
                goto bad;
            }
        }
    }
    fclose(f);
    return r->ref ? 0 : -1;
bad:
    fclose(f);
    free(r->ref);
    r->ref = NULL;
    return -1;
}


/* Runs tokens [from, to) as one batch of sequence 0 and stores the logits
 * of every one of them into out[from..to). */
static int
run_steps(infer_backend_t *b, const ref_t *r, int from, int to,
    int block_size, float *out)
{
    int32_t  pos[64], seq[64], lt[64], bt[64], ctx;
    int      i, n = to - from, max_blocks;
    infer_batch_t batch;

    max_blocks = (r->n_tokens + block_size - 1) / block_size;
    for (i = 0; i < max_blocks; i++) {
        bt[i] = i;
    }
    for (i = 0; i < n; i++) {
        pos[i] = from + i;
        seq[i] = 0;
        lt[i] = i;
    }
    ctx = to;
    batch.n_tokens = n;
    batch.tokens = r->tokens + from;
    batch.positions = pos;
    batch.seq_of_token = seq;
    batch.n_seqs = 1;
    batch.ctx_len = &ctx;
    batch.block_table = bt;
    batch.max_blocks = max_blocks;
    batch.n_logits = n;
    batch.logit_tokens = lt;
    return b->ops->forward(b, &batch,
                           out + (size_t) from * r->vocab, err,
                           sizeof(err));
}


/* max |ours - ref| / max |ref| over the stored ids of every position. */
static double
compare(const ref_t *r, const float *got, int *argmax_same)
{
    double  maxd = 0, maxr = 0, d;
    int     p, k, ar, ag;

    *argmax_same = 1;
    for (p = 0; p < r->n_tokens; p++) {
        ar = ag = 0;
        for (k = 0; k < r->n_ids; k++) {
            d = fabs((double) got[(size_t) p * r->vocab + k * r->stride]
                     - r->ref[p * r->n_ids + k]);
            maxd = d > maxd || isnan(d) ? d : maxd;
            if (fabs(r->ref[p * r->n_ids + k]) > maxr) {
                maxr = fabs(r->ref[p * r->n_ids + k]);
            }
            if (r->ref[p * r->n_ids + k] > r->ref[p * r->n_ids + ar]) {
                ar = k;
            }
            if (got[(size_t) p * r->vocab + k * r->stride]
                > got[(size_t) p * r->vocab + ag * r->stride])
            {
                ag = k;
            }
        }
        *argmax_same &= ar == ag;
    }
    return maxr > 0 ? maxd / maxr : INFINITY;
}


static void
test_ref(const char *file, const char *tmp)
{
    ref_t                    r;
    char                     path[4200], dir[4200], cmd[12288];
    infer_model_t           *m = NULL;
    infer_backend_t         *b = NULL;
    infer_backend_params_t   p;
    float                   *got = NULL;
    double                   rel;
    int                      i, am, rc;

    snprintf(path, sizeof(path), "t/data/ref/%s.logits", file);
    if (!ok(ref_read(path, &r) == 0, "%s: reference parsed", path)) {
        return;
    }
    if (strncmp(r.source, "gen ", 4) == 0) {
        snprintf(dir, sizeof(dir), "%s/%s", tmp, file);
        snprintf(cmd, sizeof(cmd), "%s %s %s >/dev/null", gen_path, dir,
                 r.source + 4);
        if (!ok(system(cmd) == 0, "%s: generated (%s)", file, r.source)) {
            goto done;
        }
    } else {
        snprintf(dir, sizeof(dir), "%s/%s", shared_dir(), r.source + 7);
    }
    if (!ok(infer_model_open(dir, &m, err, sizeof(err)) == 0, "%s: opens",
            file))
    {
        diag("%s", err);
        goto done;
    }
    is_int(m->cfg.vocab_size, r.vocab, "%s: vocab matches", file);
    if (m->cfg.vocab_size != r.vocab) {
        goto done;
    }

    memset(&p, 0, sizeof(p));
    p.threads = 1;
    p.tp = 1;
    p.block_size = 8;                   /* the sequence spans 3 blocks */
    p.max_batch_tokens = 64;
    p.max_seqs = 4;
    p.kv_cache_bytes = (size_t) 2 * m->cfg.num_layers * m->cfg.num_kv_heads
                       * m->cfg.head_dim * sizeof(float) * 64;
    got = calloc((size_t) r.n_tokens * r.vocab, sizeof(float));
    if (!ok(infer_backend_create("cpu", m, &p, &b, err, sizeof(err)) == 0,
            "%s: cpu backend", file))
    {
        diag("%s", err);
        goto done;
    }

    /* one prefill of the whole sequence */
    rc = run_steps(b, &r, 0, r.n_tokens, p.block_size, got);
    if (!ok(rc == 0, "%s: prefill forward", file)) {
        diag("%s", err);
        goto done;
    }
    rel = compare(&r, got, &am);
    if (!ok(rel <= TOL, "%s: prefill of %d tokens, max rel err %.3g <= %g",
            file, r.n_tokens, rel, TOL))
    {
        diag("max |diff| / max |ref| = %.6g over %d positions x %d ids",
             rel, r.n_tokens, r.n_ids);
    }
    ok(am, "%s: prefill argmax agrees at every position", file);
    infer_backend_destroy(b);
    b = NULL;

    /* half as prefill, then decode through the KV cache, fresh cache */
    if (infer_backend_create("cpu", m, &p, &b, err, sizeof(err)) != 0) {
        ok(0, "%s: second cpu backend: %s", file, err);
        goto done;
    }
    memset(got, 0, sizeof(float) * r.n_tokens * r.vocab);
    rc = run_steps(b, &r, 0, r.n_tokens / 2, p.block_size, got);
    for (i = r.n_tokens / 2; rc == 0 && i < r.n_tokens; i++) {
        rc = run_steps(b, &r, i, i + 1, p.block_size, got);
    }
    if (!ok(rc == 0, "%s: prefill + decode forward", file)) {
        diag("%s", err);
        goto done;
    }
    rel = compare(&r, got, &am);
    ok(rel <= TOL, "%s: prefill %d + decode %d, max rel err %.3g <= %g",
       file, r.n_tokens / 2, r.n_tokens - r.n_tokens / 2, rel, TOL);
    ok(am, "%s: decode argmax agrees at every position", file);
    infer_backend_destroy(b);
    b = NULL;

    /* two tensor-parallel ranks: heads, gate/up columns and o/down rows
     * split across threads, read from the files as blocks */
    p.tp = 2;
    if (infer_backend_create("cpu", m, &p, &b, err, sizeof(err)) != 0) {
        ok(0, "%s: tp=2 cpu backend: %s", file, err);
        goto done;
    }
    memset(got, 0, sizeof(float) * r.n_tokens * r.vocab);
    rc = run_steps(b, &r, 0, r.n_tokens, p.block_size, got);
    if (!ok(rc == 0, "%s: tp=2 forward", file)) {
        diag("%s", err);
        goto done;
    }
    rel = compare(&r, got, &am);
    ok(rel <= TOL && am, "%s: tp=2 prefill, max rel err %.3g <= %g, "
       "argmax agrees", file, rel, TOL);

done:
    infer_backend_destroy(b);
    infer_model_close(m);
    free(got);
    free(r.ref);
}


int
main(int argc, char **argv)
{
    static const char *refs[] = {
        "stories260K", "tiny-llama-f32", "tiny-llama-bf16",
        "tiny-mistral-f32", "tiny-qwen2-f32", "tiny-qwen2-f16"
    };
    char        tmp[] = "/tmp/infer-test-hf-XXXXXX", self[4096], cmd[4200];
    const char *g = getenv("INFER_GEN_MODEL");
    struct stat st;
    size_t      i;

    (void) argc;
    snprintf(self, sizeof(self), "%s", argv[0]);
    snprintf(gen_path, sizeof(gen_path), "%s/../infer-gen-model",
             dirname(self));
    if (g) {
        snprintf(gen_path, sizeof(gen_path), "%s", g);
    }
    ok(stat(gen_path, &st) == 0, "generator %s exists (make tools)",
       gen_path);
    if (mkdtemp(tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    for (i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        test_ref(refs[i], tmp);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0) {
        diag("could not remove %s", tmp);
    }
    return done_testing();
}
