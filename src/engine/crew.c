#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include "crew.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define crew_relax()  _mm_pause()
#else
#define crew_relax()  ((void) 0)
#endif

/*
 * How long a member polls for the next job, and the caller for the
 * members to finish, before sleeping on the condition variable.  A decode
 * step hands out a job per product, 154 a token for TinyLlama, a few
 * microseconds of other work apart; a member woken through the futex each
 * time lost the start of every product to the wake-up (a VM's idle vCPU
 * is woken by an interrupt): TinyLlama bf16 decode, 2 threads, on a Zen 4
 * VM, see bench/RESULTS.md "Zen 4".  Bounded, so that an idle engine, or
 * OpenBLAS running its own threads, has the core back within the window.
 */
#define CREW_SPIN_NS  200000

struct infer_crew_member {
    infer_crew_t  *crew;
    int            index;
    pthread_t      thread;
};

static uint64_t
crew_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Polls until what(obj, v) or CREW_SPIN_NS pass; what it last saw. */
static int
crew_spin(const void *obj, uint64_t v, int (*what)(const void *, uint64_t))
{
    uint64_t t0 = 0;
    int      i;

    for ( ;; ) {
        for (i = 0; i < 64; i++) {
            if (what(obj, v)) {
                return 1;
            }
            crew_relax();
        }
        if (t0 == 0) {
            t0 = crew_now_ns();
        } else if (crew_now_ns() - t0 > CREW_SPIN_NS) {
            return what(obj, v);
        }
    }
}

static int
crew_has_job(const void *obj, uint64_t seen)
{
    const infer_crew_t *c = obj;

    return atomic_load_explicit(&c->generation, memory_order_acquire) != seen
           || atomic_load_explicit(&c->stop, memory_order_relaxed);
}

static int
crew_all_done(const void *obj, uint64_t n)
{
    const infer_crew_t *c = obj;

    return (uint64_t) atomic_load_explicit(&c->n_done, memory_order_acquire)
           >= n;
}

static void *
crew_member(void *p)
{
    infer_crew_member_t *m = p;
    infer_crew_t        *c = m->crew;
    uint64_t             seen = 0;

    for ( ;; ) {
        if (!crew_spin(c, seen, crew_has_job)) {
            pthread_mutex_lock(&c->mu);
            while (!crew_has_job(c, seen)) {
                pthread_cond_wait(&c->go, &c->mu);
            }
            pthread_mutex_unlock(&c->mu);
        }
        if (atomic_load_explicit(&c->stop, memory_order_relaxed)) {
            return NULL;
        }
        seen = atomic_load_explicit(&c->generation, memory_order_acquire);

        c->job(c->arg, m->index);

        if (atomic_fetch_add_explicit(&c->n_done, 1, memory_order_release)
            + 1 == c->n)
        {
            /* under the mutex, so that a caller about to sleep in
             * crew_end either sees the count or gets the signal */
            pthread_mutex_lock(&c->mu);
            pthread_cond_signal(&c->done);
            pthread_mutex_unlock(&c->mu);
        }
    }
}

int
infer_crew_init(infer_crew_t *c, int n, infer_crew_job_t job, void *arg)
{
    int i;

    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->go, NULL);
    pthread_cond_init(&c->done, NULL);
    atomic_init(&c->generation, 0);
    atomic_init(&c->n_done, 0);
    atomic_init(&c->stop, 0);
    c->n = 0;
    c->ready = 1;
    c->job = job;
    c->arg = arg;
    c->members = NULL;
    if (n < 1) {
        return 0;
    }
    c->members = calloc(n, sizeof(infer_crew_member_t));
    if (c->members == NULL) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        c->members[i].crew = c;
        c->members[i].index = i + 1;
        if (pthread_create(&c->members[i].thread, NULL, crew_member,
                           &c->members[i]) != 0)
        {
            return -1;
        }
        c->n++;
    }
    return 0;
}

void
infer_crew_begin(infer_crew_t *c)
{
    if (c->n == 0) {
        return;
    }
    atomic_store_explicit(&c->n_done, 0, memory_order_relaxed);
    /* the new generation under the mutex: a member that found none and is
     * about to sleep holds it until it waits */
    pthread_mutex_lock(&c->mu);
    atomic_fetch_add_explicit(&c->generation, 1, memory_order_release);
    pthread_cond_broadcast(&c->go);
    pthread_mutex_unlock(&c->mu);
}

void
infer_crew_end(infer_crew_t *c)
{
    if (c->n == 0) {
        return;
    }
    if (crew_spin(c, (uint64_t) c->n, crew_all_done)) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    while (!crew_all_done(c, (uint64_t) c->n)) {
        pthread_cond_wait(&c->done, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

void
infer_crew_destroy(infer_crew_t *c)
{
    int i;

    if (!c->ready) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    atomic_store_explicit(&c->stop, 1, memory_order_relaxed);
    pthread_cond_broadcast(&c->go);
    pthread_mutex_unlock(&c->mu);
    for (i = 0; i < c->n; i++) {
        pthread_join(c->members[i].thread, NULL);
    }
    free(c->members);
    c->members = NULL;
    c->n = 0;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->go);
    pthread_cond_destroy(&c->done);
    c->ready = 0;
}

int
infer_barrier_init(infer_barrier_t *b, int n)
{
    if (n < 1 || pthread_mutex_init(&b->mu, NULL) != 0) {
        return -1;
    }
    if (pthread_cond_init(&b->next, NULL) != 0) {
        pthread_mutex_destroy(&b->mu);
        return -1;
    }
    b->n = n;
    atomic_init(&b->arrived, 0);
    atomic_init(&b->phase, 0);
    return 0;
}

static int
barrier_passed(const void *obj, uint64_t phase)
{
    const infer_barrier_t *b = obj;

    return atomic_load_explicit(&b->phase, memory_order_acquire) != phase;
}

void
infer_barrier_wait(infer_barrier_t *b)
{
    uint64_t phase = atomic_load_explicit(&b->phase, memory_order_acquire);

    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) + 1
        == b->n)
    {
        /* the last: reset the count before the others can leave and
         * arrive at the next one */
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        pthread_mutex_lock(&b->mu);
        atomic_fetch_add_explicit(&b->phase, 1, memory_order_release);
        pthread_cond_broadcast(&b->next);
        pthread_mutex_unlock(&b->mu);
        return;
    }
    if (crew_spin(b, phase, barrier_passed)) {
        return;
    }
    pthread_mutex_lock(&b->mu);
    while (!barrier_passed(b, phase)) {
        pthread_cond_wait(&b->next, &b->mu);
    }
    pthread_mutex_unlock(&b->mu);
}

void
infer_barrier_destroy(infer_barrier_t *b)
{
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->next);
}
