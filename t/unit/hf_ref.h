/*
 * Reference logits written by tools/ref/hf_logits.py (Hugging Face
 * transformers, float32, CPU): its file format, read for the tests.
 */
#ifndef HF_REF_H
#define HF_REF_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char     name[64];
    char     source[256];
    int      n_tokens;
    int32_t  tokens[64];
    int      vocab, stride, n_ids;
    float   *ref;                   /* [n_tokens][n_ids] */
} hf_ref_t;

static inline int
hf_ref_read(const char *path, hf_ref_t *r)
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

#endif
