/*
 * The crew that runs the CPU backend's ranks and attention helpers, and the
 * CUDA backend's ranks: every member runs each job exactly once with its
 * own index, sees what the caller wrote before crew_begin, and the caller
 * sees what the members wrote after crew_end; 2000 rounds back to back
 * catch a lost wake-up or a member that runs a round twice.
 */
#include <string.h>
#include "crew.h"
#include "tap.h"

#define MEMBERS 3
#define ROUNDS  2000

typedef struct {
    int  input;                  /* written by the caller before begin */
    int  out[MEMBERS + 1];       /* index -> input * 10 + index */
    int  runs[MEMBERS + 1];      /* how often each index ran */
} job_t;

static void
job(void *arg, int index)
{
    job_t *j = arg;

    j->out[index] = j->input * 10 + index;
    j->runs[index]++;
}

int
main(void)
{
    infer_crew_t c, zero;
    job_t        j;
    int          round, i, right = 1;

    memset(&j, 0, sizeof(j));
    ok(infer_crew_init(&c, MEMBERS, job, &j) == 0, "crew of %d", MEMBERS);
    for (round = 1; round <= ROUNDS; round++) {
        j.input = round;
        infer_crew_begin(&c);
        job(&j, 0);              /* the caller works as index 0 */
        infer_crew_end(&c);
        for (i = 0; i <= MEMBERS && right; i++) {
            if (j.out[i] != round * 10 + i || j.runs[i] != round) {
                diag("round %d: index %d wrote %d after %d runs", round, i,
                     j.out[i], j.runs[i]);
                right = 0;
            }
        }
        if (!right) {
            break;
        }
    }
    ok(right, "%d rounds: every index ran each job once and its result "
       "was there at crew_end", ROUNDS);
    infer_crew_destroy(&c);

    memset(&j, 0, sizeof(j));
    ok(infer_crew_init(&c, 0, job, &j) == 0, "a crew of none");
    infer_crew_begin(&c);
    infer_crew_end(&c);
    ok(j.runs[1] == 0, "begin/end with no members return at once");
    infer_crew_destroy(&c);

    memset(&zero, 0, sizeof(zero));
    infer_crew_destroy(&zero);
    ok(1, "destroy of a crew that init never saw");
    return done_testing();
}
