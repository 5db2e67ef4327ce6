/*
 * Token sampling: greedy, temperature, top-k, top-p, with a counter-based
 * generator so a request's draws depend only on (seed, step), never on what
 * else shares the batch, and the device can draw the same numbers.
 */
#ifndef INFER_SAMPLING_H
#define INFER_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float    temperature;   /* <= 0: greedy */
    int      top_k;         /* <= 0: off */
    float    top_p;         /* >= 1: off */
    uint64_t seed;
    uint64_t step;          /* index of the token being drawn */
} infer_sampling_t;

/* splitmix64 of (seed, counter): the uniform source on every backend. */
uint64_t infer_rng_u64(uint64_t seed, uint64_t counter);
/* Uniform in [0, 1) with 53 bits. */
double infer_rng_uniform(uint64_t seed, uint64_t counter);

/* Index of the largest logit; ties go to the lowest index. */
int32_t infer_argmax(const float *logits, int n);

/* Draws one token.  scratch holds n floats + n ints (see below). */
size_t infer_sample_scratch_bytes(int n);
int32_t infer_sample(const float *logits, int n, const infer_sampling_t *s,
    void *scratch);

#endif
