/*
 * Sampler against hand-computed distributions.  logits = ln(1..4) gives
 * probabilities 0.1, 0.2, 0.3, 0.4; each truncation's expected frequencies
 * follow by hand.  20000 seeded draws; the tolerance is 5 standard errors
 * of a binomial proportion (sqrt(p(1-p)/n) <= 0.0036), so a wrong
 * distribution fails while a right one passes with certainty in practice.
 */
#include <math.h>
#include "logits.h"
#include "sampling.h"
#include "tap.h"

#define DRAWS 20000

static void
check(const char *what, float t, int k, float p, const double *want)
{
    float            logits[4] = { 0.0f, logf(2), logf(3), logf(4) };
    double           scratch[64];
    infer_sampling_t s = { t, k, p, 0, 0 };
    int              counts[4] = { 0 }, i, good = 1;

    for (i = 0; i < DRAWS; i++) {
        s.seed = 1000 + i;
        s.step = i % 7;
        counts[infer_sample(logits, 4, &s, scratch)]++;
    }
    for (i = 0; i < 4; i++) {
        double f = (double) counts[i] / DRAWS;
        double se = sqrt(want[i] * (1 - want[i]) / DRAWS) + 1e-9;

        if (fabs(f - want[i]) > 5 * se || (want[i] == 0 && counts[i])) {
            good = 0;
            diag("%s: token %d freq %.4f want %.4f", what, i, f, want[i]);
        }
    }
    ok(good, "%s: frequencies match", what);
}

/*
 * Penalties by hand: bias first, then the repetition penalty once per
 * distinct id of prompt + generated (2.0: 4 -> 2, -1 -> -2), then OpenAI's
 * presence (0.5 once) and frequency (0.25 per occurrence, over the
 * generated ids only).
 */
static void
test_penalties(void)
{
    float               row[6] = { 4.0f, -1.0f, 2.0f, 0.0f, 1.0f, 3.0f };
    /* id 0: 4 / 2 - (0.5 + 0.25); id 1: -1 * 2 - (0.5 + 2 * 0.25);
     * id 2: 2 + 1; id 5: 3 - 10 */
    static const float  want[6] = { 1.25f, -3.0f, 3.0f, 0.0f, 1.0f, -7.0f };
    static const int32_t prompt[3] = { 0, 1, 0 };
    static const int32_t gen[3] = { 1, 1, 0 };
    static const int32_t bias_ids[2] = { 5, 2 };
    static const float   bias[2] = { -10.0f, 1.0f };
    uint32_t            counts[6] = { 0 };
    infer_penalties_t   p = { 0.5f, 0.25f, 2.0f, bias_ids, bias, 2 };
    int                 i, same = 1, zeroed = 1;

    infer_apply_penalties(row, 6, &p, prompt, 3, gen, 3, counts);
    for (i = 0; i < 6; i++) {
        same &= fabsf(row[i] - want[i]) < 1e-6f;
        zeroed &= counts[i] == 0;
    }
    ok(same, "bias, repetition, presence and frequency as computed by hand "
       "(%g %g %g %g %g %g)", row[0], row[1], row[2], row[3], row[4],
       row[5]);
    ok(zeroed, "the counts scratch is left zeroed");
    ok(infer_penalties_active(&p), "active");
    p.presence = p.frequency = 0.0f;
    p.repetition = 1.0f;
    p.n_bias = 0;
    ok(!infer_penalties_active(&p), "inactive when all are neutral");
}

/* logsumexp in double and the best ids in order, ties to the lower id. */
static void
test_logprob_helpers(void)
{
    float    row[6] = { 1.0f, 3.0f, -2.0f, 3.0f, 0.5f, 2.0f };
    double   want = 0;
    int32_t  top[4];
    int      i;

    for (i = 0; i < 6; i++) {
        want += exp(row[i]);
    }
    ok(fabs(infer_logsumexp(row, 6) - log(want)) < 1e-12,
       "logsumexp in double");
    infer_top_ids(row, 6, 4, top);
    ok(top[0] == 1 && top[1] == 3 && top[2] == 5 && top[3] == 0,
       "top 4: 1 3 5 0 (got %d %d %d %d)", top[0], top[1], top[2], top[3]);
}

int
main(void)
{
    static const double plain[4] = { 0.1, 0.2, 0.3, 0.4 };
    static const double topk2[4] = { 0, 0, 3.0 / 7, 4.0 / 7 };
    static const double topp5[4] = { 0, 0, 3.0 / 7, 4.0 / 7 };
    static const double topp75[4] = { 0, 2.0 / 9, 3.0 / 9, 4.0 / 9 };
    double              t2[4], z = 0;
    float               ties[5] = { 1.0f, 3.0f, 3.0f, -2.0f, 3.0f };
    float               logits[4] = { 0.0f, logf(2), logf(3), logf(4) };
    double              scratch[64];
    infer_sampling_t    s = { 1.0f, 0, 1.0f, 42, 3 };
    int                 i, a, b;

    test_penalties();
    test_logprob_helpers();
    check("temperature 1", 1.0f, 0, 1.0f, plain);
    check("top_k 2", 1.0f, 2, 1.0f, topk2);
    check("top_p 0.5", 1.0f, 0, 0.5f, topp5);
    check("top_p 0.75", 1.0f, 0, 0.75f, topp75);
    /* temperature 2: p_i proportional to sqrt(i) */
    for (i = 0; i < 4; i++) {
        z += sqrt(i + 1.0);
    }
    for (i = 0; i < 4; i++) {
        t2[i] = sqrt(i + 1.0) / z;
    }
    check("temperature 2", 2.0f, 0, 1.0f, t2);

    is_int(infer_argmax(ties, 5), 1, "argmax ties go to the lowest id");
    s.temperature = 0.0f;
    is_int(infer_sample(logits, 4, &s, scratch), 3, "temperature 0 greedy");
    s.temperature = 1.0f;
    s.top_k = 1;
    is_int(infer_sample(logits, 4, &s, scratch), 3, "top_k 1 greedy");

    s.top_k = 0;
    a = infer_sample(logits, 4, &s, scratch);
    b = infer_sample(logits, 4, &s, scratch);
    is_int(a, b, "same seed and step, same draw");
    /* an odd width: the scratch layout must keep its doubles aligned */
    {
        float odd[5] = { 0.5f, 2.5f, -1.0f, 2.0f, 0.0f };

        s.top_k = 3;
        s.top_p = 0.9f;
        a = infer_sample(odd, 5, &s, scratch);
        ok(a == 1 || a == 3 || a == 0, "odd width: draws among the top 3 "
           "(%d)", a);
        s.top_k = 0;
        s.top_p = 1.0f;
    }

    /* splitmix64's published first outputs from state 0 */
    ok(infer_rng_u64(0, 0) == 0xe220a8397b1dcdafULL
       && infer_rng_u64(0, 1) == 0x6e789e6aa1b965f4ULL
       && infer_rng_u64(0, 2) == 0x06c45d188009454fULL,
       "generator is splitmix64 over (seed, counter)");
    return done_testing();
}
