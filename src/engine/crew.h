/*
 * A crew: threads that wait until the caller hands them a job, each run
 * it with its own index, and report back (they poll a while after each
 * job, then sleep: crew.c).  The CPU backend's tensor-parallel
 * ranks and its attention helpers, and the CUDA backend's ranks, are crews.
 * The caller works alongside as index 0: crew_begin wakes members 1..n,
 * crew_end waits until all of them are done.  A job's data lives wherever
 * the job function's argument points; what the caller writes there before
 * crew_begin is visible to the members, and what they write is visible to
 * the caller after crew_end (the generation and the count of members done
 * order both: release where they are written, acquire where read).
 */
#ifndef INFER_CREW_H
#define INFER_CREW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef void (*infer_crew_job_t)(void *arg, int index);

typedef struct infer_crew_member infer_crew_member_t;

typedef struct {
    pthread_mutex_t       mu;
    pthread_cond_t        go, done;
    _Atomic uint64_t      generation;   /* jobs handed out */
    int                   n;            /* members started */
    atomic_int            n_done;       /* members done with this job */
    atomic_int            stop;
    int                   ready;        /* init ran: destroy has work */
    infer_crew_job_t      job;
    void                 *arg;
    infer_crew_member_t  *members;
} infer_crew_t;

/* Starts n members (indices 1..n).  0, or -1 after which crew_destroy
 * stops the ones that started.  crew_destroy is also safe on a zeroed
 * crew that init never saw. */
int infer_crew_init(infer_crew_t *c, int n, infer_crew_job_t job, void *arg);
void infer_crew_begin(infer_crew_t *c);
void infer_crew_end(infer_crew_t *c);
/* Joins the members; the crew must be idle (no begin without its end). */
void infer_crew_destroy(infer_crew_t *c);

/*
 * A barrier for n threads that polls as a crew does (crew.c) before it
 * sleeps: pthread_barrier_wait sleeps at once, and the CPU tensor-parallel
 * all-reduce (comm_threads.c) passes three a reduction, 44 reductions a
 * TinyLlama token.  What a thread wrote before the barrier is visible to
 * every thread after it.
 */
typedef struct {
    pthread_mutex_t       mu;
    pthread_cond_t        next;
    int                   n;
    atomic_int            arrived;      /* at this phase so far */
    _Atomic uint64_t      phase;        /* barriers passed */
} infer_barrier_t;

int infer_barrier_init(infer_barrier_t *b, int n);   /* 0 or -1 */
void infer_barrier_wait(infer_barrier_t *b);
void infer_barrier_destroy(infer_barrier_t *b);

#endif
