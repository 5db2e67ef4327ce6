#include <stdlib.h>
#include "crew.h"

struct infer_crew_member {
    infer_crew_t  *crew;
    int            index;
    pthread_t      thread;
};

static void *
crew_member(void *p)
{
    infer_crew_member_t *m = p;
    infer_crew_t        *c = m->crew;
    uint64_t             seen = 0;

    for ( ;; ) {
        pthread_mutex_lock(&c->mu);
        while (!c->stop && c->generation == seen) {
            pthread_cond_wait(&c->go, &c->mu);
        }
        if (c->stop) {
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
        seen = c->generation;
        pthread_mutex_unlock(&c->mu);

        c->job(c->arg, m->index);

        pthread_mutex_lock(&c->mu);
        if (++c->n_done == c->n) {
            pthread_cond_signal(&c->done);
        }
        pthread_mutex_unlock(&c->mu);
    }
}

int
infer_crew_init(infer_crew_t *c, int n, infer_crew_job_t job, void *arg)
{
    int i;

    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->go, NULL);
    pthread_cond_init(&c->done, NULL);
    c->generation = 0;
    c->n = 0;
    c->n_done = 0;
    c->stop = 0;
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
    pthread_mutex_lock(&c->mu);
    c->n_done = 0;
    c->generation++;
    pthread_cond_broadcast(&c->go);
    pthread_mutex_unlock(&c->mu);
}

void
infer_crew_end(infer_crew_t *c)
{
    if (c->n == 0) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    while (c->n_done < c->n) {
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
    c->stop = 1;
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
