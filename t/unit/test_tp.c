/*
 * Tensor parallelism on the CPU: the thread communicator's collectives are
 * exact, and stories260K's logits with tp=2 and tp=4 stay within 1e-5
 * (relative to the largest logit) of tp=1 over a mixed flat batch.  They
 * are not bit-identical because each rank sums its share of the o_proj and
 * down_proj products before the all-reduce adds the shares.
 *
 * Also the threads within a rank, float32 and bf16: a 500-token prompt
 * (its heads shared by the rank's two helpers where OpenBLAS runs on the
 * caller's thread: bf16 with the wide products) and then a decode step
 * large enough for the helpers to share its attention give the logits of
 * one thread alone.  Each (token, head) pair is computed whole by one
 * thread, so only the split of the products could change a rounding; the
 * bound is the tp one.
 */
#include <math.h>
#include <pthread.h>
#include "backend.h"
#include "comm.h"
#include "tap.h"

#define RANKS 3
#define COUNT 1001

typedef struct {
    infer_comm_t *comm;
    int           rank;
    float         buf[COUNT];
    float         gathered[RANKS * 7];
    int           rc;
} rank_arg_t;

static void *
rank_main(void *p)
{
    rank_arg_t *a = p;
    float       send[7];
    int         i;

    for (i = 0; i < COUNT; i++) {
        a->buf[i] = (float) (a->rank + 1) * (i % 13) + 0.25f;
    }
    for (i = 0; i < 7; i++) {
        send[i] = a->rank * 100.0f + i;
    }
    a->rc = a->comm->ops->all_reduce_sum(a->comm, a->rank, a->buf, COUNT,
                                         INFER_DT_F32, NULL)
            | a->comm->ops->all_gather(a->comm, a->rank, send, a->gathered,
                                       7, INFER_DT_F32, NULL);
    return NULL;
}

static void
test_comm(void)
{
    infer_comm_t *c;
    rank_arg_t    a[RANKS];
    pthread_t     th[RANKS];
    int           r, i, good = 1;

    ok(infer_comm_threads_create(RANKS, &c) == 0, "communicator of 3");
    for (r = 0; r < RANKS; r++) {
        a[r].comm = c;
        a[r].rank = r;
        pthread_create(&th[r], NULL, rank_main, &a[r]);
    }
    for (r = 0; r < RANKS; r++) {
        pthread_join(th[r], NULL);
    }
    for (r = 0; r < RANKS; r++) {
        good &= a[r].rc == 0;
        for (i = 0; i < COUNT; i++) {
            /* (1 + 2 + 3) * (i % 13) + 3 * 0.25, exact in float */
            good &= a[r].buf[i] == 6.0f * (i % 13) + 0.75f;
        }
        for (i = 0; i < RANKS * 7; i++) {
            good &= a[r].gathered[i] == (i / 7) * 100.0f + i % 7;
        }
    }
    ok(good, "all-reduce sums and all-gather orders exactly on every rank");
    c->ops->destroy(c);
}

/* Two sequences (a 16-token prompt and a 5-token one) in one flat batch. */
static int
logits_with_tp(const infer_model_t *m, int tp, float *out)
{
    static const int32_t tokens[21] = {
        1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
        317, 426, 1, 403, 407, 261, 378
    };
    int32_t                pos[21], seq[21], table[2 * 4], logit[2] = {15, 20};
    int32_t                ctx[2] = { 16, 5 };
    infer_backend_params_t p;
    infer_backend_t       *b;
    infer_batch_t          bt;
    char                   err[256];
    int                    i, rc;

    for (i = 0; i < 21; i++) {
        pos[i] = i < 16 ? i : i - 16;
        seq[i] = i < 16 ? 0 : 1;
    }
    for (i = 0; i < 8; i++) {
        table[i] = 7 - i;
    }
    memset(&p, 0, sizeof(p));
    p.threads = 1;
    p.tp = tp;
    p.kv_cache_bytes = 1 << 20;
    p.block_size = 16;
    p.max_batch_tokens = 32;
    p.max_seqs = 2;
    if (infer_backend_create("cpu", m, &p, &b, err, sizeof(err)) != 0) {
        diag("%s", err);
        return -1;
    }
    memset(&bt, 0, sizeof(bt));
    bt.n_tokens = 21;
    bt.tokens = tokens;
    bt.positions = pos;
    bt.seq_of_token = seq;
    bt.n_seqs = 2;
    bt.ctx_len = ctx;
    bt.block_table = table;
    bt.max_blocks = 4;
    bt.n_logits = 2;
    bt.logit_tokens = logit;
    rc = b->ops->forward(b, &bt, out, err, sizeof(err));
    infer_backend_destroy(b);
    return rc;
}

#define LONG_LEN  500
#define DECODES   160
#define MAXB      32            /* blocks of 16: 512 positions */

/*
 * A LONG_LEN-token prompt, then one decode step of DECODES tokens whose
 * sequences all read that prompt's blocks (their keys and values are the
 * last token's: it writes the shared slot last): 160 x 501 positions x 8
 * heads x 8 dims is past the 4e6 at which the helpers join in.  Logits of
 * every decode row.
 */
static int
logits_decode_step(const infer_model_t *m, const char *dtype, int threads,
    float *prompt_logits, float *out)
{
    static int32_t         tokens[LONG_LEN], pos[LONG_LEN], seq[LONG_LEN];
    static int32_t         table[DECODES * MAXB], dec_seq[DECODES];
    static int32_t         dec_tokens[DECODES], dec_pos[DECODES];
    static int32_t         ctx[DECODES], logit[DECODES];
    infer_backend_params_t p;
    infer_backend_t       *b;
    infer_batch_t          bt;
    char                   err[256];
    int                    i, rc;

    for (i = 0; i < LONG_LEN; i++) {
        tokens[i] = i == 0 ? 1 : (i * 37 + 11) % 512;
        pos[i] = i;
        seq[i] = 0;
    }
    for (i = 0; i < DECODES * MAXB; i++) {
        table[i] = MAXB - 1 - i % MAXB;
    }
    for (i = 0; i < DECODES; i++) {
        dec_tokens[i] = (i * 53 + 7) % 512;
        dec_pos[i] = LONG_LEN;
        dec_seq[i] = i;
        ctx[i] = LONG_LEN + 1;
        logit[i] = i;
    }
    memset(&p, 0, sizeof(p));
    p.dtype = dtype;
    p.threads = threads;
    p.tp = 1;
    p.kv_cache_bytes = 4 << 20;
    p.block_size = 16;
    p.max_batch_tokens = LONG_LEN;
    p.max_seqs = DECODES;
    if (infer_backend_create("cpu", m, &p, &b, err, sizeof(err)) != 0) {
        diag("%s", err);
        return -1;
    }
    memset(&bt, 0, sizeof(bt));
    bt.n_tokens = LONG_LEN;
    bt.tokens = tokens;
    bt.positions = pos;
    bt.seq_of_token = seq;
    bt.n_seqs = 1;
    ctx[0] = LONG_LEN;
    bt.ctx_len = ctx;
    bt.block_table = table;
    bt.max_blocks = MAXB;
    bt.n_logits = 1;
    bt.logit_tokens = logit;
    logit[0] = LONG_LEN - 1;
    rc = b->ops->forward(b, &bt, prompt_logits, err, sizeof(err));
    ctx[0] = LONG_LEN + 1;
    logit[0] = 0;

    bt.n_tokens = DECODES;
    bt.tokens = dec_tokens;
    bt.positions = dec_pos;
    bt.seq_of_token = dec_seq;
    bt.n_seqs = DECODES;
    bt.n_logits = DECODES;
    rc |= b->ops->forward(b, &bt, out, err, sizeof(err));
    if (rc != 0) {
        diag("%s", err);
    }
    infer_backend_destroy(b);
    return rc;
}

/* the largest difference relative to the largest of ref, or 1 when ref
 * has nothing larger than 1 to compare with */
static double
max_relative(const float *got, const float *ref, int n)
{
    double maxdiff = 0, maxref = 0;
    int    i;

    for (i = 0; i < n; i++) {
        maxdiff = fmax(maxdiff, fabs(got[i] - ref[i]));
        maxref = fmax(maxref, fabs(ref[i]));
    }
    return maxref > 1.0 ? maxdiff / maxref : 1.0;
}

int
main(void)
{
    char           dir[1024], err[512];
    infer_model_t *m;
    float          ref[2 * 512], got[2 * 512];
    int            tp, i;

    test_comm();

    snprintf(dir, sizeof(dir), "%s/models/stories260K", shared_dir());
    if (infer_model_open(dir, &m, err, sizeof(err)) != 0) {
        diag("%s", err);
        skip_all("stories260K not available");
    }
    ok(logits_with_tp(m, 1, ref) == 0, "tp=1 forward");
    for (tp = 2; tp <= 4; tp += 2) {
        ok(logits_with_tp(m, tp, got) == 0, "tp=%d forward", tp);
        ok(max_relative(got, ref, 2 * 512) <= 1e-5,
           "tp=%d logits within 1e-5 relative of tp=1 (%.2e)", tp,
           max_relative(got, ref, 2 * 512));
    }
    for (i = 0; i < 2; i++) {
        static float one[DECODES * 512], three[DECODES * 512];
        static float prompt1[512], prompt3[512];
        const char  *dtype = i == 0 ? "f32" : "bf16";

        ok(logits_decode_step(m, dtype, 1, prompt1, one) == 0
           && logits_decode_step(m, dtype, 3, prompt3, three) == 0,
           "%s: a %d-token prompt, then %d decode tokens over %d "
           "positions, with 1 and with 3 threads", dtype, LONG_LEN,
           DECODES, LONG_LEN + 1);
        ok(max_relative(prompt3, prompt1, 512) <= 1e-5,
           "%s: prompt attention with 3 threads = 1 thread (%.2e "
           "relative)", dtype, max_relative(prompt3, prompt1, 512));
        ok(max_relative(three, one, DECODES * 512) <= 1e-5,
           "%s: decode attention shared by 3 threads = 1 thread (%.2e "
           "relative)", dtype, max_relative(three, one, DECODES * 512));
    }
    {
        infer_backend_params_t p;
        infer_backend_t       *b;

        memset(&p, 0, sizeof(p));
        p.tp = 3;
        p.kv_cache_bytes = 1 << 20;
        p.block_size = 16;
        p.max_batch_tokens = 8;
        ok(infer_backend_create("cpu", m, &p, &b, err, sizeof(err)) != 0
           && strstr(err, "tp=3") && strstr(err, "num_attention_heads"),
           "tp=3 refused: 8 heads / 4 kv heads (%s)", err);
    }
    infer_model_close(m);
    return done_testing();
}
