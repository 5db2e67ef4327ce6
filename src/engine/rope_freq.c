/*
 * RoPE frequencies, one function per rope_type, each a transcription of
 * the tensor expression in transformers (named in its comment) into
 * float32 steps.  `f(x)` below marks a Python scalar rounded to float32
 * where it meets a float32 tensor; every float expression rounds once per
 * operator, as each tensor operation does (x86-64 has no excess precision
 * and the baseline target no FMA to contract into).
 */
#include <math.h>
#include "rope_freq.h"

#define f(x)  ((float) (x))


/* theta^e for float32 operands, correctly rounded (see rope_freq.h). */
static float
pow_f32(float base, float e)
{
    return (float) pow((double) base, (double) e);
}


/* compute_default_rope_parameters:
 *     1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)) */
static void
rope_default(float base, int dim, float *inv)
{
    int i;

    for (i = 0; i < dim / 2; i++) {
        inv[i] = 1.0f / pow_f32(base, f(2 * i) / f(dim));
    }
}


/* _compute_linear_scaling_rope_parameters: inv_freq /= factor */
static void
rope_linear(const infer_rope_t *r, float *inv)
{
    int i;

    rope_default(f(r->theta), r->dim, inv);
    for (i = 0; i < r->dim / 2; i++) {
        inv[i] = inv[i] / f(r->factor);
    }
}


/*
 * _compute_dynamic_ntk_parameters, called from dynamic_frequency_update
 * with seq_len = max(position_ids) + 1 as an int64 tensor once the length
 * passes max_position_embeddings (shorter keeps the default frequencies):
 *     base = base * ((factor * seq_len / max_pos) - (factor - 1))
 *                   ** (dim / (dim - 2))
 * in float32 (a Python float times an int64 tensor is float32).
 */
static void
rope_dynamic(const infer_rope_t *r, int seq_len, float *inv)
{
    float t, base;

    if (seq_len <= r->max_position) {
        rope_default(f(r->theta), r->dim, inv);
        return;
    }
    t = f(r->factor) * f(seq_len);
    t = t / f(r->max_position);
    t = t - f(r->factor - 1);
    /* a float32 tensor to a Python float power: torch keeps the exponent
     * in double */
    t = (float) pow((double) t, (double) r->dim / (r->dim - 2));
    base = f(r->theta) * t;
    rope_default(base, r->dim, inv);
}


/* find_correction_dim, in Python floats */
static double
yarn_correction_dim(double rotations, int dim, double base, int max_pos)
{
    return (dim * log(max_pos / (rotations * 2 * M_PI))) / (2 * log(base));
}


/*
 * _compute_yarn_parameters: a ramp between interpolated (1 / (factor *
 * pos_freqs)) and extrapolated (1 / pos_freqs) frequencies over the
 * dimensions between the correction range's ends.
 */
static void
rope_yarn(const infer_rope_t *r, float *inv)
{
    double  low, high, span;
    float   pos, extra, inter, ramp, ef;
    int     i, half = r->dim / 2;

    low = yarn_correction_dim(r->beta_fast, r->dim, r->theta,
                              r->original_max);
    high = yarn_correction_dim(r->beta_slow, r->dim, r->theta,
                               r->original_max);
    if (r->truncate) {
        low = floor(low);
        high = ceil(high);
    }
    low = low > 0 ? low : 0;
    high = high < r->dim - 1 ? high : r->dim - 1;
    if (low == high) {
        high += 0.001;                  /* "Prevent singularity" */
    }
    span = high - low;
    for (i = 0; i < half; i++) {
        pos = pow_f32(f(r->theta), f(2 * i) / f(r->dim));
        extra = 1.0f / pos;
        inter = 1.0f / (f(r->factor) * pos);
        ramp = (f(i) - f(low)) / f(span);
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        ef = 1.0f - ramp;
        inv[i] = inter * (1.0f - ef) + extra * ef;
    }
}


/* _compute_longrope_parameters:
 *     1.0 / (ext_factors * base ** (arange(0, dim, 2).float() / dim))
 * with the long factors once the sequence passes the original length. */
static void
rope_longrope(const infer_rope_t *r, int seq_len, float *inv)
{
    const float *ext = seq_len > r->original_max ? r->long_factor
                                                 : r->short_factor;
    int          i;

    for (i = 0; i < r->dim / 2; i++) {
        inv[i] = 1.0f / (ext[i] * pow_f32(f(r->theta),
                                          f(2 * i) / f(r->dim)));
    }
}


/* _compute_llama3_parameters: long wavelengths divided by factor, short
 * ones kept, a smooth blend in between. */
static void
rope_llama3(const infer_rope_t *r, float *inv)
{
    double  low_wl = r->original_max / r->low_freq_factor;
    double  high_wl = r->original_max / r->high_freq_factor;
    float   wl, ifl, smooth, smoothed;
    int     i;

    rope_default(f(r->theta), r->dim, inv);
    for (i = 0; i < r->dim / 2; i++) {
        wl = f(2 * M_PI) / inv[i];
        ifl = wl > f(low_wl) ? inv[i] / f(r->factor) : inv[i];
        smooth = (f(r->original_max) / wl - f(r->low_freq_factor))
                 / f(r->high_freq_factor - r->low_freq_factor);
        smoothed = (1.0f - smooth) * ifl / f(r->factor) + smooth * ifl;
        if (!(wl < f(high_wl)) && !(wl > f(low_wl))) {
            ifl = smoothed;
        }
        inv[i] = ifl;
    }
}


int
infer_rope_depends_on_length(const infer_rope_t *r)
{
    return r->type == INFER_ROPE_DYNAMIC || r->type == INFER_ROPE_LONGROPE;
}


void
infer_rope_inv_freq(const infer_rope_t *r, int seq_len, float *inv_freq)
{
    switch (r->type) {
    case INFER_ROPE_LINEAR:
        rope_linear(r, inv_freq);
        break;
    case INFER_ROPE_DYNAMIC:
        rope_dynamic(r, seq_len, inv_freq);
        break;
    case INFER_ROPE_YARN:
        rope_yarn(r, inv_freq);
        break;
    case INFER_ROPE_LONGROPE:
        rope_longrope(r, seq_len, inv_freq);
        break;
    case INFER_ROPE_LLAMA3:
        rope_llama3(r, inv_freq);
        break;
    default:
        rope_default(f(r->theta), r->dim, inv_freq);
    }
}


float
infer_rope_scaling(const infer_rope_t *r)
{
    return r->type == INFER_ROPE_YARN || r->type == INFER_ROPE_LONGROPE
           ? f(r->attention_factor) : 1.0f;
}


const char *
infer_rope_type_name(infer_rope_type_t t)
{
    static const char *names[] = {
        "none", "default", "linear", "dynamic", "yarn", "longrope", "llama3"
    };

    return (unsigned) t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}
