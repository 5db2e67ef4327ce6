/*
 * The crew that runs the CPU backend's ranks and attention helpers, and the
 * CUDA backend's ranks: every member runs each job exactly once with its
 * own index, sees what the caller wrote before crew_begin, and the caller
 * sees what the members wrote after crew_end; 2000 rounds back to back
 * catch a lost wake-up or a member that runs a round twice.  Members poll
 * for a while (crew.c's CREW_SPIN_NS, 0.2 ms) before they sleep, and so
 * does the caller in crew_end: rounds with pauses longer than that between
 * them, or a member slower than that, take the sleeping paths.  The
 * barrier beside it: 4 threads write, pass, read every other's write, pass,
 * 2000 times back to back and 30 times with one thread 1 ms late.
 */
#include <string.h>
#include <unistd.h>
#include "crew.h"
#include "tap.h"

#define MEMBERS 3
#define ROUNDS  2000

typedef struct {
    int  input;                  /* written by the caller before begin */
    int  slow;                   /* this index sleeps 1 ms in the job */
    int  out[MEMBERS + 1];       /* index -> input * 10 + index */
    int  runs[MEMBERS + 1];      /* how often each index ran */
} job_t;

static void
job(void *arg, int index)
{
    job_t *j = arg;

    if (index == j->slow) {
        usleep(1000);
    }
    j->out[index] = j->input * 10 + index;
    j->runs[index]++;
}

/* rounds first..last: 0 if every index ran each once with the right
 * input; pause_us between rounds, the slow index rotating if slow */
static int
rounds(infer_crew_t *c, job_t *j, int first, int last, int pause_us,
    int slow)
{
    int round, i;

    for (round = first; round <= last; round++) {
        j->input = round;
        j->slow = slow ? 1 + round % MEMBERS : -1;
        infer_crew_begin(c);
        job(j, 0);               /* the caller works as index 0 */
        infer_crew_end(c);
        for (i = 0; i <= MEMBERS; i++) {
            if (j->out[i] != round * 10 + i || j->runs[i] != round) {
                diag("round %d: index %d wrote %d after %d runs", round, i,
                     j->out[i], j->runs[i]);
                return -1;
            }
        }
        if (pause_us > 0) {
            usleep(pause_us);
        }
    }
    return 0;
}

#define BARRIER_THREADS  4

typedef struct {
    infer_barrier_t  b;
    int              slot[BARRIER_THREADS];
    int              wrong[BARRIER_THREADS];
    int              rounds, late;
} bjob_t;

typedef struct {
    bjob_t *j;
    int     index;
} barg_t;

static void *
barrier_thread(void *p)
{
    barg_t *a = p;
    bjob_t *j = a->j;
    int     round, k;

    for (round = 1; round <= j->rounds; round++) {
        if (j->late && a->index == round % BARRIER_THREADS) {
            usleep(1000);
        }
        j->slot[a->index] = round;
        infer_barrier_wait(&j->b);
        for (k = 0; k < BARRIER_THREADS; k++) {
            j->wrong[a->index] += j->slot[k] != round;
        }
        infer_barrier_wait(&j->b);
    }
    return NULL;
}

/* rounds of the barrier; the reads that saw another round's write */
static int
barrier_rounds(int rounds, int late)
{
    bjob_t     j;
    pthread_t  tid[BARRIER_THREADS];
    barg_t     a[BARRIER_THREADS];
    int        k, wrong = 0;

    memset(&j, 0, sizeof(j));
    j.rounds = rounds;
    j.late = late;
    if (infer_barrier_init(&j.b, BARRIER_THREADS) != 0) {
        return -1;
    }
    for (k = 0; k < BARRIER_THREADS; k++) {
        a[k].j = &j;
        a[k].index = k;
        pthread_create(&tid[k], NULL, barrier_thread, &a[k]);
    }
    for (k = 0; k < BARRIER_THREADS; k++) {
        pthread_join(tid[k], NULL);
        wrong += j.wrong[k];
    }
    infer_barrier_destroy(&j.b);
    return wrong;
}

int
main(void)
{
    infer_crew_t c, zero;
    job_t        j;

    memset(&j, 0, sizeof(j));
    j.slow = -1;
    ok(infer_crew_init(&c, MEMBERS, job, &j) == 0, "crew of %d", MEMBERS);
    ok(rounds(&c, &j, 1, ROUNDS, 0, 0) == 0, "%d rounds back to back: "
       "every index ran each job once and its result was there at "
       "crew_end", ROUNDS);
    ok(rounds(&c, &j, ROUNDS + 1, ROUNDS + 50, 2000, 0) == 0,
       "50 rounds 2 ms apart (the members asleep at each begin)");
    ok(rounds(&c, &j, ROUNDS + 51, ROUNDS + 80, 0, 1) == 0,
       "30 rounds with a member 1 ms slow (the caller asleep in crew_end)");
    infer_crew_destroy(&c);

    memset(&j, 0, sizeof(j));
    ok(infer_crew_init(&c, 0, job, &j) == 0, "a crew of none");
    infer_crew_begin(&c);
    infer_crew_end(&c);
    ok(j.runs[1] == 0, "begin/end with no members return at once");
    infer_crew_destroy(&c);

    ok(barrier_rounds(ROUNDS, 0) == 0, "barrier: %d rounds of %d threads, "
       "every write seen by all after it", ROUNDS, BARRIER_THREADS);
    ok(barrier_rounds(30, 1) == 0, "barrier: 30 rounds with a thread 1 ms "
       "late (the others asleep)");
    ok(infer_barrier_init(&(infer_barrier_t) { 0 }, 0) == -1,
       "a barrier of no threads refused");

    memset(&zero, 0, sizeof(zero));
    infer_crew_destroy(&zero);
    ok(1, "destroy of a crew that init never saw");
    return done_testing();
}
