/*
 * Logits -> token on the device, the same algorithm as infer_sample() in
 * src/engine/sampling.c: greedy (temperature <= 0 or top_k == 1: first
 * largest logit), else candidates ordered by descending logit (ties: lower
 * id) when top-k or top-p truncates and by id otherwise, p = exp(l/T -
 * max) in double, top-p cut at the first prefix whose mass reaches
 * top_p * sum, and an inverse-CDF pick with the host-drawn uniform u.
 * Sums run in double in a different order than the CPU's sequential
 * loop, so a draw can differ only when u lands within ~1e-16 (relative)
 * of a CDF step.
 */
#ifndef INFER_KERNELS_SAMPLE_H
#define INFER_KERNELS_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include "sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double   inv_t;     /* 1 / temperature (unused when greedy) */
    double   top_p;     /* (double) top_p; >= 1: off */
    double   u;         /* infer_rng_uniform(seed, step) */
    int32_t  m;         /* candidates: top_k when it truncates, else vocab */
    int32_t  mode;      /* INFER_SAMPLE_* */
} infer_sample_row_t;

enum {
    INFER_SAMPLE_GREEDY = 0,
    INFER_SAMPLE_SORTED,        /* candidates in descending logit order */
    INFER_SAMPLE_BY_ID          /* every token, in id order */
};

/* Row parameters from a request's sampling settings (host). */
void infer_sample_row(const infer_sampling_t *s, int vocab,
    infer_sample_row_t *row);

/* Device scratch for n_rows x vocab logits (sort keys, ids, cub temp). */
size_t infer_cuda_sample_scratch_bytes(int n_rows, int vocab);

/*
 * logits [n_rows][vocab] fp32 on the device; rows [n_rows] of parameters
 * on the device; any_sorted: whether any row is INFER_SAMPLE_SORTED (the
 * sort is skipped otherwise).  Writes n_rows ids to out (device).
 */
int infer_cuda_sample(const float *logits, int n_rows, int vocab,
    const infer_sample_row_t *rows, int any_sorted, void *scratch,
    size_t scratch_bytes, int32_t *out, void *stream);

#ifdef __cplusplus
}
#endif

#endif
