/*
 * infer_metrics: Prometheus text exposition of every worker's figures.
 *
 * The figures live in a shared memory zone ("infer_metrics", nginx's slab
 * allocator, as limit_req_zone keeps its states), so whichever worker
 * answers a scrape reads the sums of all of them.  Workers update it from
 * their event loop only: the bridge counts each engine event as it hands
 * it on, rejections are counted where they are logged, and the engines'
 * gauges, preemptions, prefix cache counts and step histograms are taken
 * from their snapshots every second and at each scrape (not after each
 * poll: the snapshot's mutex is the scheduler's).
 *
 * Counters and histograms are per model (by name, so a reload, which reuses
 * the zone, continues them; they are only ever added to, never copied, so
 * nothing is counted twice), updated with atomic adds: the old workers of a
 * reload and the new ones may count at once.  Gauges are per process: each
 * worker claims a slot of its own at start and gives it back at exit, and a
 * scrape sums the slots of live processes.  The memory is fixed: at most
 * NGX_HTTP_INFER_METRICS_MODELS model names and
 * NGX_HTTP_INFER_METRICS_PROCS processes, and no label value comes from a
 * request.
 */
#include "ngx_http_infer.h"

#include <stdarg.h>

#define NGX_HTTP_INFER_METRICS_MODELS   32
#define NGX_HTTP_INFER_METRICS_PROCS    64
#define NGX_HTTP_INFER_METRICS_BUCKETS  24      /* +Inf included */
#define NGX_HTTP_INFER_METRICS_NAME     64
#define NGX_HTTP_INFER_METRICS_PERIOD   1000    /* gauges, ms */

#define NGX_HTTP_INFER_FINISHES         5
#define NGX_HTTP_INFER_KINDS            11

enum {
    NGX_HTTP_INFER_H_TTFT = 0,
    NGX_HTTP_INFER_H_ITL,
    NGX_HTTP_INFER_H_E2E,
    NGX_HTTP_INFER_H_PROMPT,
    NGX_HTTP_INFER_H_GEN,
    NGX_HTTP_INFER_H_QUEUE,
    NGX_HTTP_INFER_H_STEP,
    NGX_HTTP_INFER_H_STEP_TOKENS,
    NGX_HTTP_INFER_HISTS
};

typedef struct {
    ngx_atomic_t             buckets[NGX_HTTP_INFER_METRICS_BUCKETS];
    ngx_atomic_t             sum;              /* us, or tokens */
} ngx_http_infer_hist_t;

typedef struct {
    u_char                   name[NGX_HTTP_INFER_METRICS_NAME];
    size_t                   len;
    ngx_atomic_t             requests[NGX_HTTP_INFER_ROUTES]
                                     [NGX_HTTP_INFER_FINISHES];
    ngx_atomic_t             errors[NGX_HTTP_INFER_ROUTES]
                                   [NGX_HTTP_INFER_KINDS];
    ngx_atomic_t             prompt_tokens;
    ngx_atomic_t             generation_tokens;
    ngx_atomic_t             preemptions;
    ngx_atomic_t             prefix_queries;    /* prompt tokens */
    ngx_atomic_t             prefix_hits;
    ngx_http_infer_hist_t    hist[NGX_HTTP_INFER_HISTS];
} ngx_http_infer_metrics_model_t;

typedef struct {
    ngx_atomic_t             running;
    ngx_atomic_t             waiting;
    ngx_atomic_t             blocks;
    ngx_atomic_t             used;
} ngx_http_infer_gauges_t;

typedef struct {
    ngx_atomic_t             pid;              /* 0: free */
    ngx_http_infer_gauges_t  g[NGX_HTTP_INFER_METRICS_MODELS];
} ngx_http_infer_metrics_proc_t;

typedef struct {
    ngx_uint_t                      n_models;
    ngx_http_infer_metrics_model_t  models[NGX_HTTP_INFER_METRICS_MODELS];
    /* rejections before a model was chosen (model="") */
    ngx_http_infer_metrics_model_t  none;
    ngx_http_infer_metrics_proc_t   procs[NGX_HTTP_INFER_METRICS_PROCS];
} ngx_http_infer_metrics_sh_t;

/* Bucket bounds in us (seconds) or tokens; a last bucket, +Inf, holds
 * what is above them. */
typedef struct {
    const char                     *name;
    const char                     *help;
    const int64_t                  *bounds;
    ngx_uint_t                      n;
    ngx_uint_t                      seconds;   /* values are in us */
} ngx_http_infer_hist_def_t;

#define ngx_http_infer_bounds(b)  b, sizeof(b) / sizeof(b[0])

/* As vLLM buckets them, with room below for small models on CPUs. */
static const int64_t  ngx_http_infer_ttft_buckets[] = {
    1000, 5000, 10000, 20000, 40000, 60000, 80000, 100000, 250000, 500000,
    750000, 1000000, 2500000, 5000000, 7500000, 10000000, 20000000, 40000000,
    80000000
};

static const int64_t  ngx_http_infer_itl_buckets[] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 75000, 100000, 150000, 200000,
    300000, 400000, 500000, 750000, 1000000, 2500000, 5000000, 10000000
};

static const int64_t  ngx_http_infer_e2e_buckets[] = {
    10000, 25000, 50000, 100000, 300000, 500000, 800000, 1000000, 1500000,
    2000000, 2500000, 5000000, 10000000, 15000000, 20000000, 30000000,
    40000000, 50000000, 60000000, 120000000
};

static const int64_t  ngx_http_infer_token_buckets[] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
    100000
};

static const ngx_http_infer_hist_def_t  ngx_http_infer_hists[] = {
    { "infer_time_to_first_token_seconds",
      "Time from submitting an engine request to its first generated token.",
      ngx_http_infer_bounds(ngx_http_infer_ttft_buckets), 1 },
    { "infer_inter_token_latency_seconds",
      "Time between generated tokens of an engine request (per token).",
      ngx_http_infer_bounds(ngx_http_infer_itl_buckets), 1 },
    { "infer_e2e_request_latency_seconds",
      "Time from submitting an engine request to its end.",
      ngx_http_infer_bounds(ngx_http_infer_e2e_buckets), 1 },
    { "infer_request_prompt_tokens",
      "Prompt tokens of each finished engine request.",
      ngx_http_infer_bounds(ngx_http_infer_token_buckets), 0 },
    { "infer_request_generation_tokens",
      "Generated tokens of each finished engine request.",
      ngx_http_infer_bounds(ngx_http_infer_token_buckets), 0 },
    { "infer_request_queue_time_seconds",
      "Time from submitting an engine request until it joined the running "
      "batch.",
      ngx_http_infer_bounds(ngx_http_infer_e2e_buckets), 1 },
    { "infer_engine_step_duration_seconds",
      "Wall time of each engine step that computed tokens (forward pass "
      "and sampling).",
      infer_step_us_bounds, INFER_STEP_BOUNDS, 1 },
    { "infer_engine_step_tokens",
      "Tokens computed by each engine step (prompt and generated).",
      infer_step_tokens_bounds, INFER_STEP_BOUNDS, 0 }
};

/* The per-model counters without labels of their own. */
typedef struct {
    const char  *name;
    const char  *help;
    size_t       offset;    /* in ngx_http_infer_metrics_model_t */
} ngx_http_infer_counter_def_t;

static const ngx_http_infer_counter_def_t  ngx_http_infer_counters[] = {
    { "infer_prompt_tokens_total",
      "Prompt tokens of finished engine requests.",
      offsetof(ngx_http_infer_metrics_model_t, prompt_tokens) },
    { "infer_generation_tokens_total",
      "Tokens generated by finished engine requests.",
      offsetof(ngx_http_infer_metrics_model_t, generation_tokens) },
    { "infer_preemptions_total",
      "Sequences preempted (KV cache full) to be recomputed later.",
      offsetof(ngx_http_infer_metrics_model_t, preemptions) },
    { "infer_prefix_cache_queries_total",
      "Prompt tokens looked up in the prefix cache.",
      offsetof(ngx_http_infer_metrics_model_t, prefix_queries) },
    { "infer_prefix_cache_hits_total",
      "Prompt tokens found in the prefix cache (not computed).",
      offsetof(ngx_http_infer_metrics_model_t, prefix_hits) },
    { NULL, NULL, 0 }
};

static const char  *ngx_http_infer_routes[NGX_HTTP_INFER_ROUTES] = {
    "openai", "predict", "kserve", "grpc"
};

static const char  *ngx_http_infer_finishes[NGX_HTTP_INFER_FINISHES] = {
    "stop", "length", "cancelled", "timeout", "error"
};

static const char  *ngx_http_infer_kinds[NGX_HTTP_INFER_KINDS] = {
    "invalid_request", "unauthorized", "not_found", "method_not_allowed",
    "too_large", "unsupported_media_type", "rate_limited", "unavailable",
    "timeout", "internal", "other"
};

typedef struct {
    char                    *data;
    size_t                   len;
    size_t                   cap;
    ngx_uint_t               failed;
} ngx_http_infer_text_t;

static ngx_int_t ngx_http_infer_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_infer_metrics_proc_t *ngx_http_infer_metrics_proc(
    ngx_http_infer_main_conf_t *imcf);
static void ngx_http_infer_metrics_timer(ngx_event_t *ev);

static ngx_http_infer_metrics_sh_t    *ngx_http_infer_metrics_sh;
static ngx_http_infer_metrics_proc_t  *ngx_http_infer_metrics_slot;
static ngx_event_t                     ngx_http_infer_metrics_ev;


/* infer_metrics: the zone, added once per configuration. */
ngx_int_t
ngx_http_infer_metrics_zone(ngx_conf_t *cf, ngx_http_infer_main_conf_t *imcf)
{
    size_t     size;
    ngx_str_t  name = ngx_string("infer_metrics");

    if (imcf->metrics_zone != NULL) {
        return NGX_OK;
    }

    /* A constant size, so that a reload finds the zone again. */
    size = ngx_align(sizeof(ngx_http_infer_metrics_sh_t), 4096)
           + 16 * 4096;

    imcf->metrics_zone = ngx_shared_memory_add(cf, &name, size,
                                               &ngx_http_infer_module);
    if (imcf->metrics_zone == NULL) {
        return NGX_ERROR;
    }
    if (imcf->metrics_zone->data != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "shared memory zone \"infer_metrics\" is "
                           "already in use");
        return NGX_ERROR;
    }

    imcf->metrics_zone->init = ngx_http_infer_metrics_init_zone;
    imcf->metrics_zone->data = imcf;

    return NGX_OK;
}

static ngx_http_infer_metrics_model_t *
ngx_http_infer_metrics_find(ngx_http_infer_metrics_sh_t *sh, ngx_str_t *name)
{
    ngx_uint_t                       i;
    ngx_http_infer_metrics_model_t  *mm;

    for (i = 0; i < sh->n_models; i++) {
        mm = &sh->models[i];
        if (mm->len == name->len
            && ngx_strncmp(mm->name, name->data, name->len) == 0)
        {
            return mm;
        }
    }

    if (sh->n_models == NGX_HTTP_INFER_METRICS_MODELS
        || name->len > NGX_HTTP_INFER_METRICS_NAME)
    {
        return NULL;
    }

    mm = &sh->models[sh->n_models];
    ngx_memcpy(mm->name, name->data, name->len);
    mm->len = name->len;
    ngx_memory_barrier();
    sh->n_models++;

    return mm;
}

/*
 * In the master, at every configuration load: a fresh zone, or the one the
 * previous configuration used (data is that configuration's main conf).
 * Each model gets its entry by name, an old one where it had one.
 */
static ngx_int_t
ngx_http_infer_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_infer_main_conf_t  *oimcf = data;

    ngx_uint_t                    i;
    ngx_slab_pool_t              *shpool;
    ngx_http_infer_model_t      **m;
    ngx_http_infer_main_conf_t   *imcf;
    ngx_http_infer_metrics_sh_t  *sh;

    imcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (oimcf != NULL) {
        sh = oimcf->metrics_sh;

    } else if (shm_zone->shm.exists) {
        sh = shpool->data;

    } else {
        sh = ngx_slab_calloc(shpool, sizeof(ngx_http_infer_metrics_sh_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }
        shpool->data = sh;
    }

    imcf->metrics_sh = sh;

    ngx_shmtx_lock(&shpool->mutex);

    m = imcf->models.elts;
    for (i = 0; i < imcf->models.nelts; i++) {
        m[i]->metrics = ngx_http_infer_metrics_find(sh, &m[i]->name);
        if (m[i]->metrics == NULL) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "infer_metrics: no room for model \"%V\" (%d "
                          "model names at most, of up to %d bytes): it is "
                          "not counted", &m[i]->name,
                          NGX_HTTP_INFER_METRICS_MODELS,
                          NGX_HTTP_INFER_METRICS_NAME);
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}

static ngx_uint_t
ngx_http_infer_metrics_index(ngx_http_infer_model_t *m)
{
    return (ngx_http_infer_metrics_model_t *) m->metrics
           - ngx_http_infer_metrics_sh->models;
}

/* In a worker: a gauge slot of its own, and the timer that fills it. */
ngx_int_t
ngx_http_infer_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_http_infer_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_infer_module);
    if (imcf == NULL || imcf->metrics_zone == NULL) {
        return NGX_OK;
    }

    ngx_http_infer_metrics_sh = imcf->metrics_sh;
    ngx_http_infer_metrics_slot = ngx_http_infer_metrics_proc(imcf);
    if (ngx_http_infer_metrics_slot == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "infer_metrics: no gauge slot left for this worker "
                      "(%d processes at most): its gauges are not shown",
                      NGX_HTTP_INFER_METRICS_PROCS);
    }

    ngx_http_infer_metrics_ev.handler = ngx_http_infer_metrics_timer;
    ngx_http_infer_metrics_ev.data = imcf;
    ngx_http_infer_metrics_ev.log = cycle->log;
    ngx_http_infer_metrics_ev.cancelable = 1;
    ngx_add_timer(&ngx_http_infer_metrics_ev, NGX_HTTP_INFER_METRICS_PERIOD);

    return NGX_OK;
}

static ngx_uint_t
ngx_http_infer_metrics_alive(ngx_pid_t pid)
{
    return pid == ngx_pid || kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}

/* A free slot, or one a dead process left. */
static ngx_http_infer_metrics_proc_t *
ngx_http_infer_metrics_proc(ngx_http_infer_main_conf_t *imcf)
{
    ngx_uint_t                      i;
    ngx_slab_pool_t                *shpool;
    ngx_http_infer_metrics_proc_t  *p, *found;

    shpool = (ngx_slab_pool_t *) imcf->metrics_zone->shm.addr;
    found = NULL;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < NGX_HTTP_INFER_METRICS_PROCS; i++) {
        p = &ngx_http_infer_metrics_sh->procs[i];
        if (p->pid == 0
            || !ngx_http_infer_metrics_alive((ngx_pid_t) p->pid))
        {
            ngx_memzero(p->g, sizeof(p->g));
            p->pid = (ngx_atomic_uint_t) ngx_pid;
            found = p;
            break;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return found;
}

void
ngx_http_infer_metrics_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_infer_metrics_proc_t  *p;

    if (ngx_http_infer_metrics_ev.timer_set) {
        ngx_del_timer(&ngx_http_infer_metrics_ev);
    }

    p = ngx_http_infer_metrics_slot;
    if (p == NULL) {
        return;
    }
    ngx_memzero(p->g, sizeof(p->g));
    ngx_memory_barrier();
    p->pid = 0;
    ngx_http_infer_metrics_slot = NULL;
}

/* Adds what an engine counter gained since this worker last looked. */
static void
ngx_http_infer_metrics_gain(ngx_atomic_t *counter, uint64_t now,
    uint64_t *seen)
{
    if (now > *seen) {
        (void) ngx_atomic_fetch_add(counter, (ngx_atomic_int_t) (now - *seen));
    }
    *seen = now;
}

/* An engine's step histogram h: what each bucket and the sum gained since
 * the last look (seen) goes into the model's. */
static void
ngx_http_infer_metrics_steps(ngx_http_infer_metrics_model_t *mm,
    ngx_uint_t h, const infer_hist_t *now, infer_hist_t *seen)
{
    ngx_uint_t  k;

    for (k = 0; k <= INFER_STEP_BOUNDS; k++) {
        ngx_http_infer_metrics_gain(&mm->hist[h].buckets[k], now->count[k],
                                    &seen->count[k]);
    }
    ngx_http_infer_metrics_gain(&mm->hist[h].sum, now->sum, &seen->sum);
}

/* This worker's gauges of m, and its engine's preemptions, steps and prefix
 * cache counts since the last look. */
void
ngx_http_infer_metrics_engine(ngx_http_infer_model_t *m)
{
    infer_stats_t                    st;
    ngx_http_infer_gauges_t         *g;
    ngx_http_infer_metrics_model_t  *mm = m->metrics;

    if (mm == NULL || ngx_http_infer_metrics_sh == NULL) {
        return;
    }

    if (m->engine == NULL) {
        ngx_memzero(&st, sizeof(st));

    } else {
        infer_engine_stats(m->engine, &st);
        ngx_http_infer_metrics_gain(&mm->preemptions, st.preemptions,
                                    &m->preemptions_seen);
        ngx_http_infer_metrics_gain(&mm->prefix_queries, st.prefix_queries,
                                    &m->prefix_queries_seen);
        ngx_http_infer_metrics_gain(&mm->prefix_hits, st.prefix_hits,
                                    &m->prefix_hits_seen);
        ngx_http_infer_metrics_steps(mm, NGX_HTTP_INFER_H_STEP, &st.step_us,
                                     &m->step_us_seen);
        ngx_http_infer_metrics_steps(mm, NGX_HTTP_INFER_H_STEP_TOKENS,
                                     &st.step_tokens, &m->step_tokens_seen);
    }

    if (ngx_http_infer_metrics_slot == NULL) {
        return;
    }
    g = &ngx_http_infer_metrics_slot->g[ngx_http_infer_metrics_index(m)];
    g->running = (ngx_atomic_uint_t) st.running;
    g->waiting = (ngx_atomic_uint_t) st.waiting;
    g->blocks = (ngx_atomic_uint_t) st.n_blocks;
    g->used = (ngx_atomic_uint_t) (st.n_blocks - st.free_blocks);
}

static void
ngx_http_infer_metrics_timer(ngx_event_t *ev)
{
    ngx_uint_t                   i;
    ngx_http_infer_model_t     **m;
    ngx_http_infer_main_conf_t  *imcf = ev->data;

    m = imcf->models.elts;
    for (i = 0; i < imcf->models.nelts; i++) {
        ngx_http_infer_metrics_engine(m[i]);
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_INFER_METRICS_PERIOD);
    }
}

/* The protocol of the location that serves r. */
ngx_uint_t
ngx_http_infer_metrics_route(ngx_http_request_t *r)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->handler == ngx_http_infer_predict_handler) {
        return NGX_HTTP_INFER_ROUTE_PREDICT;
    }
    if (clcf->handler == ngx_http_infer_kserve_handler) {
        return NGX_HTTP_INFER_ROUTE_KSERVE;
    }
    if (clcf->handler == ngx_http_infer_grpc_handler) {
        return NGX_HTTP_INFER_ROUTE_GRPC;
    }
    return NGX_HTTP_INFER_ROUTE_OPENAI;
}

int64_t
ngx_http_infer_now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
ngx_http_infer_observe(ngx_http_infer_metrics_model_t *mm, ngx_uint_t h,
    int64_t v, ngx_uint_t n)
{
    ngx_uint_t                        i;
    const ngx_http_infer_hist_def_t  *hd = &ngx_http_infer_hists[h];

    for (i = 0; i < hd->n && v > hd->bounds[i]; i++) { /* void */ }

    (void) ngx_atomic_fetch_add(&mm->hist[h].buckets[i],
                                (ngx_atomic_int_t) n);
    (void) ngx_atomic_fetch_add(&mm->hist[h].sum,
                                (ngx_atomic_int_t) (v * (int64_t) n));
}

/* An engine event of generation g, in the loop, before its front end
 * sees it. */
void
ngx_http_infer_metrics_event(ngx_http_infer_ctx_t *ctx,
    ngx_http_infer_gen_t *g, infer_event_t *ev)
{
    int64_t                          now, gap;
    ngx_uint_t                       f;
    ngx_http_infer_metrics_model_t  *mm = ctx->model->metrics;

    now = ngx_http_infer_now_us();

    if (ev->n_tokens > 0) {
        if (g->first_us == 0) {
            g->first_us = now;
            if (mm != NULL) {
                ngx_http_infer_observe(mm, NGX_HTTP_INFER_H_TTFT,
                                       now - g->start_us, 1);
            }
            if (ev->n_tokens > 1 && mm != NULL) {
                ngx_http_infer_observe(mm, NGX_HTTP_INFER_H_ITL, 0,
                                       ev->n_tokens - 1);
            }

        } else if (mm != NULL) {
            gap = (now - g->last_us) / ev->n_tokens;
            ngx_http_infer_observe(mm, NGX_HTTP_INFER_H_ITL, gap,
                                   ev->n_tokens);
        }
        g->last_us = now;
    }

    if (ev->type == INFER_EVENT_TOKEN) {
        return;
    }

    g->end_us = now;
    g->queue_us = ev->queue_us;
    g->first_step = ev->first_step;
    g->last_step = ev->last_step;

    if (mm == NULL) {
        return;
    }

    if (ev->type == INFER_EVENT_ERROR) {
        f = 4;

    } else {
        switch (ev->finish) {
        case INFER_FINISH_STOP:
            f = 0;
            break;
        case INFER_FINISH_LENGTH:
            f = 1;
            break;
        case INFER_FINISH_CANCELLED:
            f = 2;
            break;
        case INFER_FINISH_DEADLINE:
            f = 3;
            break;
        default:
            f = 4;
        }
    }

    (void) ngx_atomic_fetch_add(&mm->requests[ctx->route][f], 1);
    (void) ngx_atomic_fetch_add(&mm->prompt_tokens,
                                (ngx_atomic_int_t) ev->prompt_tokens);
    (void) ngx_atomic_fetch_add(&mm->generation_tokens,
                                (ngx_atomic_int_t) ev->completion_tokens);
    ngx_http_infer_observe(mm, NGX_HTTP_INFER_H_E2E, now - g->start_us, 1);
    ngx_http_infer_observe(mm, NGX_HTTP_INFER_H_PROMPT, ev->prompt_tokens, 1);
    ngx_http_infer_observe(mm, NGX_HTTP_INFER_H_GEN, ev->completion_tokens,
                           1);
    if (ev->queue_us >= 0) {
        ngx_http_infer_observe(mm, NGX_HTTP_INFER_H_QUEUE, ev->queue_us, 1);
    }
}

/* An error answer (ngx_http_infer_log_reject). */
void
ngx_http_infer_metrics_error(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_uint_t                       k, route;
    ngx_http_infer_ctx_t            *ctx;
    ngx_http_infer_model_t         **mp;
    ngx_http_infer_loc_conf_t       *ilcf;
    ngx_http_infer_metrics_model_t  *mm;

    if (ngx_http_infer_metrics_sh == NULL) {
        return;
    }

    /* The model of the request, or the location's only one. */
    mm = NULL;
    ctx = ngx_http_get_module_ctx(r, ngx_http_infer_module);
    if (ctx != NULL) {
        mm = ctx->model->metrics;

    } else {
        ilcf = ngx_http_get_module_loc_conf(r, ngx_http_infer_module);
        if (ilcf->models != NULL && ilcf->models->nelts == 1) {
            mp = ilcf->models->elts;
            mm = mp[0]->metrics;
        }
    }
    if (mm == NULL) {
        mm = &ngx_http_infer_metrics_sh->none;
    }

    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        k = 0;
        break;
    case NGX_HTTP_UNAUTHORIZED:
        k = 1;
        break;
    case NGX_HTTP_NOT_FOUND:
        k = 2;
        break;
    case NGX_HTTP_NOT_ALLOWED:
        k = 3;
        break;
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        k = 4;
        break;
    case NGX_HTTP_UNSUPPORTED_MEDIA_TYPE:
        k = 5;
        break;
    case NGX_HTTP_TOO_MANY_REQUESTS:
        k = 6;
        break;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        k = 7;
        break;
    case NGX_HTTP_GATEWAY_TIME_OUT:
        k = 8;
        break;
    default:
        k = status >= NGX_HTTP_INTERNAL_SERVER_ERROR ? 9 : 10;
    }

    route = ngx_http_infer_metrics_route(r);
    (void) ngx_atomic_fetch_add(&mm->errors[route][k], 1);
}


/* ---- the exposition ----------------------------------------------------- */

static void
ngx_http_infer_text(ngx_http_infer_text_t *t, const char *fmt, ...)
{
    int       n;
    char     *p;
    size_t    cap;
    va_list   ap;

    for ( ;; ) {
        if (t->failed) {
            return;
        }
        va_start(ap, fmt);
        n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t) n < t->cap - t->len) {
            t->len += n;
            return;
        }
        cap = t->cap * 2 + n;
        p = realloc(t->data, cap);
        if (p == NULL) {
            t->failed = 1;
            return;
        }
        t->data = p;
        t->cap = cap;
    }
}

/* A label value as the exposition format escapes it. */
static const char *
ngx_http_infer_label(char *buf, const u_char *s, size_t len)
{
    char  *p = buf;

    while (len--) {
        if (*s == '\\' || *s == '"') {
            *p++ = '\\';
            *p++ = (char) *s;
        } else if (*s == '\n') {
            *p++ = '\\';
            *p++ = 'n';
        } else {
            *p++ = (char) *s;
        }
        s++;
    }
    *p = '\0';
    return buf;
}

static void
ngx_http_infer_family(ngx_http_infer_text_t *t, const char *name,
    const char *type, const char *help)
{
    ngx_http_infer_text(t, "# HELP %s %s\n# TYPE %s %s\n",
                        name, help, name, type);
}

static void
ngx_http_infer_render(ngx_http_infer_text_t *t,
    ngx_http_infer_main_conf_t *imcf)
{
    char                                 names[NGX_HTTP_INFER_METRICS_MODELS
                                               + 1]
                                              [2 * NGX_HTTP_INFER_METRICS_NAME
                                               + 1];
    char                                 le[32];
    double                               ratio;
    uint64_t                             cum, v, sum[4];
    ngx_uint_t                           i, k, j, h, n, p, idx;
    ngx_http_infer_model_t             **m;
    ngx_http_infer_gauges_t             *g;
    ngx_http_infer_metrics_sh_t         *sh = imcf->metrics_sh;
    ngx_http_infer_metrics_proc_t       *proc;
    ngx_http_infer_metrics_model_t      *mms[NGX_HTTP_INFER_METRICS_MODELS
                                             + 1];
    const ngx_http_infer_hist_def_t     *hd;
    const ngx_http_infer_counter_def_t  *c;

    /* the models of this configuration that have an entry */
    m = imcf->models.elts;
    n = 0;
    for (i = 0; i < imcf->models.nelts; i++) {
        if (m[i]->metrics == NULL) {
            continue;
        }
        mms[n] = m[i]->metrics;
        ngx_http_infer_label(names[n], mms[n]->name, mms[n]->len);
        n++;
    }

    ngx_http_infer_family(t, "infer_requests_total", "counter",
                          "Engine requests finished (an OpenAI choice, a "
                          "KServe row, a gRPC stream generation), by "
                          "protocol and finish reason.");
    for (i = 0; i < n; i++) {
        for (k = 0; k < NGX_HTTP_INFER_ROUTES; k++) {
            for (j = 0; j < NGX_HTTP_INFER_FINISHES; j++) {
                v = mms[i]->requests[k][j];
                if (v == 0) {
                    continue;
                }
                ngx_http_infer_text(t, "infer_requests_total{model=\"%s\","
                                    "route=\"%s\",finish_reason=\"%s\"} "
                                    "%llu\n", names[i],
                                    ngx_http_infer_routes[k],
                                    ngx_http_infer_finishes[j],
                                    (unsigned long long) v);
            }
        }
    }

    /* errors before a model was chosen count under model="" */
    mms[n] = &sh->none;
    names[n][0] = '\0';

    ngx_http_infer_family(t, "infer_request_errors_total", "counter",
                          "Error answers, by protocol and kind.");
    for (i = 0; i <= n; i++) {
        for (k = 0; k < NGX_HTTP_INFER_ROUTES; k++) {
            for (j = 0; j < NGX_HTTP_INFER_KINDS; j++) {
                v = mms[i]->errors[k][j];
                if (v == 0) {
                    continue;
                }
                ngx_http_infer_text(t, "infer_request_errors_total{model="
                                    "\"%s\",route=\"%s\",kind=\"%s\"} %llu\n",
                                    names[i], ngx_http_infer_routes[k],
                                    ngx_http_infer_kinds[j],
                                    (unsigned long long) v);
            }
        }
    }

    for (c = ngx_http_infer_counters; c->name != NULL; c++) {
        ngx_http_infer_family(t, c->name, "counter", c->help);
        for (i = 0; i < n; i++) {
            ngx_http_infer_text(t, "%s{model=\"%s\"} %llu\n", c->name,
                                names[i], (unsigned long long)
                                *(ngx_atomic_t *) ((u_char *) mms[i]
                                                   + c->offset));
        }
    }

    /* gauges: the sums of the live processes' slots */
    for (h = 0; h < 5; h++) {
        switch (h) {
        case 0:
            ngx_http_infer_family(t, "infer_num_requests_running", "gauge",
                                  "Sequences in the engines' running "
                                  "batches.");
            break;
        case 1:
            ngx_http_infer_family(t, "infer_num_requests_waiting", "gauge",
                                  "Engine requests waiting to run "
                                  "(submitted or preempted).");
            break;
        case 2:
            ngx_http_infer_family(t, "infer_kv_cache_blocks", "gauge",
                                  "KV cache blocks of the engines' pools.");
            break;
        case 3:
            ngx_http_infer_family(t, "infer_kv_cache_used_blocks", "gauge",
                                  "KV cache blocks in use.");
            break;
        default:
            ngx_http_infer_family(t, "infer_kv_cache_usage_ratio", "gauge",
                                  "KV cache blocks in use over blocks in "
                                  "the pools (0 to 1).");
        }

        for (i = 0; i < n; i++) {
            idx = mms[i] - sh->models;
            ngx_memzero(sum, sizeof(sum));
            for (p = 0; p < NGX_HTTP_INFER_METRICS_PROCS; p++) {
                proc = &sh->procs[p];
                if (proc->pid == 0
                    || !ngx_http_infer_metrics_alive((ngx_pid_t) proc->pid))
                {
                    continue;
                }
                g = &proc->g[idx];
                sum[0] += g->running;
                sum[1] += g->waiting;
                sum[2] += g->blocks;
                sum[3] += g->used;
            }
            if (h < 4) {
                ngx_http_infer_text(t, "%s{model=\"%s\"} %llu\n",
                                    h == 0 ? "infer_num_requests_running"
                                    : h == 1 ? "infer_num_requests_waiting"
                                    : h == 2 ? "infer_kv_cache_blocks"
                                    : "infer_kv_cache_used_blocks",
                                    names[i], (unsigned long long) sum[h]);
            } else {
                ratio = sum[2] ? (double) sum[3] / (double) sum[2] : 0.0;
                ngx_http_infer_text(t, "infer_kv_cache_usage_ratio{model="
                                    "\"%s\"} %.6g\n", names[i], ratio);
            }
        }
    }

    for (h = 0; h < NGX_HTTP_INFER_HISTS; h++) {
        hd = &ngx_http_infer_hists[h];
        ngx_http_infer_family(t, hd->name, "histogram", hd->help);

        for (i = 0; i < n; i++) {
            cum = 0;
            for (k = 0; k <= hd->n; k++) {
                cum += mms[i]->hist[h].buckets[k];
                if (k == hd->n) {
                    le[0] = '\0';
                } else if (hd->seconds) {
                    snprintf(le, sizeof(le), "%.6g",
                             (double) hd->bounds[k] / 1e6);
                } else {
                    snprintf(le, sizeof(le), "%lld",
                             (long long) hd->bounds[k]);
                }
                ngx_http_infer_text(t, "%s_bucket{model=\"%s\",le=\"%s\"} "
                                    "%llu\n", hd->name, names[i],
                                    le[0] ? le : "+Inf",
                                    (unsigned long long) cum);
            }
            v = mms[i]->hist[h].sum;
            if (hd->seconds) {
                ngx_http_infer_text(t, "%s_sum{model=\"%s\"} %.6f\n",
                                    hd->name, names[i], (double) v / 1e6);
            } else {
                ngx_http_infer_text(t, "%s_sum{model=\"%s\"} %llu\n",
                                    hd->name, names[i],
                                    (unsigned long long) v);
            }
            ngx_http_infer_text(t, "%s_count{model=\"%s\"} %llu\n",
                                hd->name, names[i],
                                (unsigned long long) cum);
        }
    }
}

ngx_int_t
ngx_http_infer_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_http_infer_text_t         t;
    ngx_http_infer_model_t      **m;
    ngx_http_infer_main_conf_t   *imcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    imcf = ngx_http_get_module_main_conf(r, ngx_http_infer_module);

    /* this worker's own gauges as they are now */
    m = imcf->models.elts;
    for (i = 0; i < imcf->models.nelts; i++) {
        ngx_http_infer_metrics_engine(m[i]);
    }

    t.cap = 16384;
    t.len = 0;
    t.failed = 0;
    t.data = malloc(t.cap);
    if (t.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_infer_render(&t, imcf);

    if (t.failed) {
        free(t.data);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_infer_send(r, NGX_HTTP_OK, "text/plain; version=0.0.4",
                               t.data, t.len);
}
