/*
 * Rotary position embedding frequencies, as Hugging Face transformers
 * computes them (each model's compute_default_rope_parameters and
 * modeling_rope_utils.py): float32 tensor arithmetic, one rounding per
 * tensor operation, Python scalars rounded to float32 where they meet a
 * tensor.  Both backends take their frequencies from here, so they rotate
 * by the same angles.
 *
 * The one float32 operation we cannot reproduce bit for bit is the power
 * theta^(2i/d): PyTorch's vectorised pow (SLEEF, 1 ulp) is not correctly
 * rounded, and its last bit depends on the SLEEF build and the CPU's
 * vector width.  We round the exact power to float32 instead (a double
 * pow, rounded once), which agrees with torch 2.15 on AVX2 for about 99%
 * of frequencies and is one ulp away for the rest: the same size as the
 * float32 rounding of the angle pos * inv_freq itself.
 */
#ifndef INFER_ROPE_FREQ_H
#define INFER_ROPE_FREQ_H

#define INFER_ROPE_MAX_HALF  256        /* rotated dims / 2 (longrope lists) */

typedef enum {
    INFER_ROPE_NONE = 0,                /* learned positions (gpt2) */
    INFER_ROPE_DEFAULT,
    INFER_ROPE_LINEAR,
    INFER_ROPE_DYNAMIC,
    INFER_ROPE_YARN,
    INFER_ROPE_LONGROPE,
    INFER_ROPE_LLAMA3
} infer_rope_type_t;

typedef struct {
    infer_rope_type_t  type;
    double             theta;
    int                dim;             /* rotated dims of a head (even) */
    double             factor;
    int                max_position;    /* max_position_embeddings */
    int                original_max;    /* original_max_position_embeddings */
    double             low_freq_factor, high_freq_factor;   /* llama3 */
    double             beta_fast, beta_slow;                /* yarn */
    int                truncate;                            /* yarn */
    double             attention_factor;  /* yarn, longrope: cos, sin scale */
    float              short_factor[INFER_ROPE_MAX_HALF];   /* longrope */
    float              long_factor[INFER_ROPE_MAX_HALF];
} infer_rope_t;

/* Whether the frequencies depend on the sequence length (dynamic NTK,
 * longrope): then a sequence of length seq_len gets its own. */
int infer_rope_depends_on_length(const infer_rope_t *r);

/*
 * inv_freq[dim / 2] for a sequence whose longest position is seq_len - 1.
 * transformers recomputes dynamic and longrope frequencies from the
 * largest position of the forward call; per sequence, this is the same for
 * a sequence alone (prefill or decode).
 */
void infer_rope_inv_freq(const infer_rope_t *r, int seq_len, float *inv_freq);

/* The factor transformers multiplies cos and sin by (1 unless yarn or
 * longrope), rounded to float32 as the multiplication rounds it. */
float infer_rope_scaling(const infer_rope_t *r);

/* The name of a type as config.json spells it. */
const char *infer_rope_type_name(infer_rope_type_t t);

#endif
