/*
 * infer-logits: runs a prompt through one backend directly (no scheduler)
 * and dumps what a reference implementation can be compared with: the
 * logits of every prompt position (raw float32, row-major [P][vocab]) and
 * the greedy continuation.
 *
 *   infer-logits MODEL_DIR --prompt-ids 1,2,3 [--backend cpu|cuda]
 *                [--greedy N] [--logits FILE] [--kv-cache MB]
 *
 * Prints "greedy: id,id,..." on stdout.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "model.h"
#include "sampling.h"

#define BLOCK 16

static int
parse_ids(const char *s, int32_t **ids, int *n)
{
    const char *p;
    char       *end;
    long        v;
    int         cap = 1;

    for (p = s; *p; p++) {
        cap += *p == ',';
    }
    *ids = malloc(cap * sizeof(int32_t));
    *n = 0;
    for (p = s; *ids != NULL && *p; p = *end ? end + 1 : end) {
        v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            return -1;
        }
        (*ids)[(*n)++] = (int32_t) v;
    }
    return *ids != NULL && *n > 0 ? 0 : -1;
}

static int
run(infer_backend_t *b, int32_t *tokens, int first, int n, int32_t *table,
    int max_blocks, float *logits, int all_rows)
{
    int32_t      *pos = malloc(n * sizeof(int32_t));
    int32_t      *seq = calloc(n, sizeof(int32_t));
    int32_t      *rows = malloc(n * sizeof(int32_t));
    int32_t       ctx = first + n;
    infer_batch_t bt;
    char          err[512];
    int           i, rc;

    for (i = 0; i < n; i++) {
        pos[i] = first + i;
        rows[i] = i;
    }
    memset(&bt, 0, sizeof(bt));
    bt.n_tokens = n;
    bt.tokens = tokens;
    bt.positions = pos;
    bt.seq_of_token = seq;
    bt.n_seqs = 1;
    bt.ctx_len = &ctx;
    bt.block_table = table;
    bt.max_blocks = max_blocks;
    bt.n_logits = all_rows ? n : 1;
    bt.logit_tokens = all_rows ? rows : rows + n - 1;
    rc = b->ops->forward(b, &bt, logits, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "infer-logits: %s\n", err);
    }
    free(pos);
    free(seq);
    free(rows);
    return rc;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "backend", required_argument, NULL, 'b' },
        { "prompt-ids", required_argument, NULL, 'p' },
        { "greedy", required_argument, NULL, 'g' },
        { "logits", required_argument, NULL, 'l' },
        { "kv-cache", required_argument, NULL, 'k' },
        { NULL, 0, NULL, 0 }
    };
    const char            *backend = "cpu", *ids_arg = NULL, *out = NULL;
    infer_model_t         *m = NULL;
    infer_backend_t       *b = NULL;
    infer_backend_params_t p;
    int32_t               *ids = NULL, *table = NULL, tok;
    float                 *logits = NULL;
    FILE                  *f;
    char                   err[512];
    int                    c, n, greedy = 0, kv_mb = 256, vocab, i, mb;
    int                    rc = 1;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': backend = optarg; break;
        case 'p': ids_arg = optarg; break;
        case 'g': greedy = atoi(optarg); break;
        case 'l': out = optarg; break;
        case 'k': kv_mb = atoi(optarg); break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1 || ids_arg == NULL || greedy < 0 || kv_mb < 1) {
        fprintf(stderr, "usage: infer-logits MODEL_DIR --prompt-ids LIST "
                "[--backend cpu|cuda] [--greedy N] [--logits FILE] "
                "[--kv-cache MB]\n");
        return 2;
    }
    if (parse_ids(ids_arg, &ids, &n) != 0) {
        fprintf(stderr, "infer-logits: bad --prompt-ids \"%s\"\n", ids_arg);
        free(ids);
        return 2;
    }
    if (infer_model_open(argv[optind], &m, err, sizeof(err)) != 0) {
        fprintf(stderr, "infer-logits: %s\n", err);
        goto done;
    }
    vocab = m->cfg.vocab_size;
    for (i = 0; i < n; i++) {
        if (ids[i] >= vocab) {
            fprintf(stderr, "infer-logits: id %d >= vocab %d\n", ids[i],
                    vocab);
            goto done;
        }
    }
    mb = (n + greedy + BLOCK - 1) / BLOCK;
    memset(&p, 0, sizeof(p));
    p.tp = 1;
    p.kv_cache_bytes = (size_t) kv_mb << 20;
    p.block_size = BLOCK;
    p.max_batch_tokens = n;
    p.max_seqs = 1;
    if (infer_backend_create(backend, m, &p, &b, err, sizeof(err)) != 0) {
        fprintf(stderr, "infer-logits: %s\n", err);
        goto done;
    }
    if (p.n_blocks < mb) {
        fprintf(stderr, "infer-logits: KV cache holds %d blocks, %d needed "
                "(raise --kv-cache)\n", p.n_blocks, mb);
        goto done;
    }
    table = malloc(mb * sizeof(int32_t));
    logits = malloc((size_t) n * vocab * sizeof(float));
    ids = realloc(ids, (n + greedy + 1) * sizeof(int32_t));
    if (table == NULL || logits == NULL || ids == NULL) {
        fprintf(stderr, "infer-logits: out of memory\n");
        goto done;
    }
    for (i = 0; i < mb; i++) {
        table[i] = i;
    }
    if (run(b, ids, 0, n, table, mb, logits, 1) != 0) {
        goto done;
    }
    if (out != NULL) {
        f = fopen(out, "wb");
        if (f == NULL
            || fwrite(logits, sizeof(float), (size_t) n * vocab, f)
               != (size_t) n * vocab
            || fclose(f) != 0)
        {
            fprintf(stderr, "infer-logits: cannot write %s\n", out);
            goto done;
        }
    }
    printf("greedy: ");
    tok = infer_argmax(logits + (size_t) (n - 1) * vocab, vocab);
    for (i = 0; i < greedy; i++) {
        printf("%s%d", i ? "," : "", tok);
        ids[n + i] = tok;
        if (i + 1 < greedy) {
            if (run(b, ids + n + i, n + i, 1, table, mb, logits, 0) != 0) {
                goto done;
            }
            tok = infer_argmax(logits, vocab);
        }
    }
    printf("\n");
    rc = 0;

done:
    infer_backend_destroy(b);
    if (m != NULL) {
        infer_model_close(m);
    }
    free(ids);
    free(table);
    free(logits);
    return rc;
}
