/*
 * ngx_http_infer_module engine: public API.
 *
 * The engine is a C library with no nginx dependency.  One engine serves one
 * model; it owns a scheduler thread that runs continuous batching over a
 * backend (cpu, cuda).  Callers submit requests without blocking and collect
 * events (token text, done, error) from a queue; a file descriptor becomes
 * readable whenever events are pending, so an event loop can wait on it.
 */
#ifndef INFER_H
#define INFER_H

#include <stddef.h>
#include <stdint.h>

/* Return codes shared by every engine call. */
enum {
    INFER_OK = 0,
    INFER_ERROR = -1,           /* generic failure, message in err */
    INFER_EINVAL = -2,          /* invalid request parameter */
    INFER_EQUEUE_FULL = -3,     /* admission queue full: retry later */
    INFER_ECONTEXT = -4,        /* prompt (+ max_tokens) exceeds context */
    INFER_ESHUTDOWN = -5,       /* engine stopping or its thread died */
    INFER_ENOMEM = -6,
    INFER_EOUTPUT = -7          /* outputs asked for exceed the cap */
};

/* max_tokens of a request that runs to the end of the context. */
#define INFER_TO_CONTEXT_END    (-1)
/* Most alternatives a request may ask logprobs of, at each token. */
#define INFER_MAX_TOP_LOGPROBS  20

typedef struct infer_engine infer_engine_t;

typedef struct {
    const char  *model_dir;
    const char  *backend;          /* "cpu" (default) or "cuda" */
    const char  *dtype;            /* weights in memory: NULL or "auto"
                                      (bf16 checkpoints bf16, others f32
                                      on cpu; f16 on cuda), "f32", "bf16"
                                      (cpu), "int8", "f16" (cuda) */
    int          threads;          /* compute threads per rank; 0 = 1 */
    int          tp;               /* tensor-parallel ranks; 0 = 1 */
    const int   *devices;          /* device ids for the ranks (cuda) */
    int          n_devices;
    int          max_batch_tokens; /* token budget per step; 0 = 512 */
    int          max_seqs;         /* running sequences; 0 = 64 */
    size_t       kv_cache_bytes;   /* KV cache budget; 0 = 64 MiB */
    int          block_size;       /* tokens per KV block; 0 = 16 */
    int          max_queue;        /* waiting beyond the running slots;
                                      0 = 256 */
    size_t       max_output_bytes; /* logits and logprobs one request may
                                      ask for; 0 = 64 MiB */
    int          no_prefix_cache;  /* 1: every prompt computed in full */
    int          priority_aging_ms; /* a waiting request gains one level
                                      of priority this often; 0 = 1000 */
} infer_engine_config_t;

/* Request priorities: lower is served first (as vLLM's), 0 by default.
 * Waiting requests are admitted, and running ones keep their place when
 * memory runs short, in the order of priority x aging + arrival (ms): equal
 * priorities are first come, first served, and a request is never passed
 * by one of a better priority p levels up that arrived more than p x
 * aging later, so none waits forever behind a stream of better ones. */
#define INFER_PRIORITY_MAX  1000000      /* |priority| at most */
#define INFER_MAX_AGING_MS  3600000

/* Most compute threads per rank a configuration may ask for. */
#define INFER_MAX_THREADS  256

/* Checks a configuration against its model without loading weights or
 * starting anything, so that a configuration test can refuse what start-up
 * would: the model and tokenizer files, the backend name, tp against the
 * heads, the KV budget against one block, the thread count.  What only the
 * machine can tell (a GPU, its memory) is left to infer_engine_create(). */
int infer_engine_check(const infer_engine_config_t *cfg, char *err,
    size_t errlen);

/* Loads the model and prepares the backend; does not start threads. */
int infer_engine_create(const infer_engine_config_t *cfg,
    infer_engine_t **out, char *err, size_t errlen);
/* Starts the scheduler thread. */
int infer_engine_start(infer_engine_t *e, char *err, size_t errlen);
/* Stops the thread, fails every pending request, frees everything. */
void infer_engine_destroy(infer_engine_t *e);

/* Readable (eventfd semantics) while events are queued. */
int infer_engine_event_fd(infer_engine_t *e);
/* 1 while the scheduler thread is running and healthy. */
int infer_engine_alive(infer_engine_t *e);
/* Why the engine stopped on its own (a failed forward pass: every request
 * it held got an error event, and it takes no more), or NULL.  The string
 * lives as long as the engine. */
const char *infer_engine_error(infer_engine_t *e);

/* Which prompt positions' logits a request wants (row p is the model's
 * output at position p: the distribution of the token at index p + 1). */
typedef enum {
    INFER_LOGITS_NONE = 0,
    INFER_LOGITS_LAST,           /* the last prompt position */
    INFER_LOGITS_PROMPT          /* every prompt position */
} infer_logits_t;

typedef struct {
    const int32_t *prompt;       /* token ids, copied at submit */
    int            n_prompt;
    int            max_tokens;   /* tokens to generate: 0 (score the prompt
                                    only), INFER_TO_CONTEXT_END, or a count
                                    that must fit beside the prompt, else
                                    ECONTEXT */
    int            min_tokens;   /* no eos or stop id before this many */
    float          temperature;  /* 0 = greedy */
    float          top_p;        /* (0, 1]; 1 = off */
    int            top_k;        /* 0 = off */
    uint64_t       seed;
    int            has_seed;     /* 0: the engine picks a seed */
    /* Penalties, applied to the logits before sampling: OpenAI's presence
     * and frequency penalties over the generated tokens, Hugging Face's
     * repetition penalty over prompt and generated ones (1 = off), and
     * OpenAI's logit_bias, added to the logits of bias_ids. */
    float          presence_penalty;
    float          frequency_penalty;
    float          repetition_penalty;
    const int32_t *bias_ids;     /* copied at submit */
    const float   *bias;
    int            n_bias;
    const int32_t *stop_ids;     /* extra stop token ids (eos is implied) */
    int            n_stop_ids;
    const char   *const *stop;   /* stop strings, not included in output */
    int            n_stop;
    int            ignore_eos;
    int            keep_special; /* special tokens' text in the output
                                    (vLLM's skip_special_tokens false) */
    int64_t        deadline_ms;  /* CLOCK_MONOTONIC ms; 0 = none */
    int            priority;     /* lower first; see INFER_PRIORITY_MAX */
    /* Outputs besides text, in the events (see infer_event_t).  Logits and
     * logprobs are the model's, before penalties, bias and temperature. */
    infer_logits_t prompt_logits;
    int            gen_logits;   /* the rows each generated token was drawn
                                    from */
    int            logits_f16;   /* rows as IEEE half floats, not float */
    int            logprobs;     /* of each generated token */
    int            prompt_logprobs;  /* and of prompt tokens 1 .. n - 1 */
    int            top_logprobs; /* 0 .. INFER_MAX_TOP_LOGPROBS best
                                    alternatives with each */
    void          *user;         /* returned in every event */
} infer_request_t;

/* Bytes of the logits rows and logprobs a request asks for (with all the
 * tokens it may generate), which max_output_bytes caps: a caller that
 * submits several for one client can cap their sum the same way. */
size_t infer_engine_output_bytes(infer_engine_t *e, const infer_request_t *r);
/* The cap itself. */
size_t infer_engine_max_output(infer_engine_t *e);

/* Queues a request; never blocks.  On success *id identifies it.  Requests
 * submitted before infer_engine_start() wait for the thread. */
int infer_engine_submit(infer_engine_t *e, const infer_request_t *req,
    uint64_t *id);
/* Cancels a request; its resources are freed at the next step and a DONE
 * event with INFER_FINISH_CANCELLED follows (the caller may ignore it). */
void infer_engine_cancel(infer_engine_t *e, uint64_t id);
/* Pauses (paused = 1) or resumes a request's generation from the next
 * step on, for a caller whose client is not taking its output: a paused
 * request keeps its place and its KV cache (unless memory runs short, when
 * it is preempted first), and its deadline still applies. */
void infer_engine_pause(infer_engine_t *e, uint64_t id, int paused);

typedef enum {
    INFER_EVENT_TOKEN = 1,       /* text: newly completed UTF-8 text */
    INFER_EVENT_DONE,            /* finish reason and usage; text may hold
                                    the final flushed text */
    INFER_EVENT_ERROR            /* message in text */
} infer_event_type_t;

typedef enum {
    INFER_FINISH_NONE = 0,
    INFER_FINISH_STOP,           /* eos, stop id or stop string */
    INFER_FINISH_LENGTH,         /* max_tokens or context end */
    INFER_FINISH_CANCELLED,
    INFER_FINISH_DEADLINE,
    INFER_FINISH_ERROR
} infer_finish_t;

typedef struct {
    infer_event_type_t  type;
    uint64_t            id;
    void               *user;
    char               *text;        /* malloc'd, NUL-terminated, or NULL */
    size_t              text_len;
    int32_t            *tokens;      /* ids generated since the request's
                                        previous event: each id appears in
                                        exactly one event */
    int                 n_tokens;
    infer_finish_t      finish;
    int                 prompt_tokens;
    int                 completion_tokens;
    int                 cached_tokens;   /* prompt tokens whose keys and
                                            values came from the prefix
                                            cache (when first admitted) */

    /* Logits rows computed since the previous event, for the consecutive
     * positions rows_first .. rows_first + n_rows - 1, each vocab floats
     * (or halves with logits_f16).  Every row a request asked for comes
     * in exactly one event, in position order. */
    void               *rows;
    int                 n_rows;
    int                 rows_first;
    /* Logprobs of the tokens at sequence indices (prompt, then generated)
     * lp_first .. lp_first + n_lp - 1: the token, its logprob, and its
     * lp_top best alternatives (ids and logprobs, best first). */
    int                 lp_first;
    int                 n_lp;
    int                 lp_top;
    int32_t            *lp_ids;
    float              *lp;
    int32_t            *lp_top_ids;
    float              *lp_top_lp;

    /* Microseconds from submission until the request first joined the
     * running batch (its queue time, as vLLM's "scheduled"), -1 while it
     * has not (a request cancelled or timed out while waiting). */
    int64_t             queue_us;
    /* The engine's steps (numbered from 1, as infer_stats_t.steps counts
     * them) that computed its first and latest tokens; 0: none yet.  With
     * the trace id a front end logs, they follow a request to the steps
     * that ran it. */
    uint64_t            first_step;
    uint64_t            last_step;
} infer_event_t;

/* Drains up to max events (and the event fd counter); returns the count.
 * Each event must be released with infer_event_release(). */
int infer_engine_poll(infer_engine_t *e, infer_event_t *ev, int max);
void infer_event_release(infer_event_t *ev);

/* A histogram of the scheduler's steps: count[i] steps had a value of
 * at most bounds[i] (and above bounds[i - 1]); count[INFER_STEP_BOUNDS]
 * those above every bound. */
#define INFER_STEP_BOUNDS  16

typedef struct {
    uint64_t  count[INFER_STEP_BOUNDS + 1];
    uint64_t  sum;
} infer_hist_t;

/* The bounds: a step's wall time (forward pass and sampling) in
 * microseconds, and the tokens it computed (prompt and generated). */
extern const int64_t  infer_step_us_bounds[INFER_STEP_BOUNDS];
extern const int64_t  infer_step_tokens_bounds[INFER_STEP_BOUNDS];

/* A snapshot taken at the end of the scheduler's last step. */
typedef struct {
    int       n_blocks;          /* KV blocks in the pool */
    int       free_blocks;       /* free or cached, unreferenced */
    int       cached_blocks;     /* of those, cached for reuse */
    int       running;
    int       waiting;           /* submitted or preempted, not running */
    uint64_t  steps;
    uint64_t  prompt_tokens;     /* computed, recomputation included */
    uint64_t  generated_tokens;
    uint64_t  preemptions;
    uint64_t  prefix_queries;    /* prompt tokens looked up in the prefix
                                    cache (at every admission) */
    uint64_t  prefix_hits;       /* of those, found cached */
    infer_hist_t  step_us;       /* steps that computed tokens */
    infer_hist_t  step_tokens;
    /* facts fixed when the engine was created */
    const char *backend;         /* "cpu", "cuda" */
    const char *dtype;           /* the weights' type in memory */
    int       threads;           /* compute threads per rank */
    int       tp;                /* tensor-parallel ranks */
    size_t    weight_bytes;      /* weights in memory, all ranks; 0: the
                                    backend does not say */
    size_t    kv_block_bytes;    /* one KV block, all layers and ranks */
    const char *kernels;         /* matrix library and kernel set, or "" */
    const char *kernels_warning; /* those kernels are not the CPU's best */
} infer_stats_t;

void infer_engine_stats(infer_engine_t *e, infer_stats_t *st);

/* The facts above as one line for a start-up log: "cpu f32, weights
 * 4.10 GiB, 2 threads x tp=1, KV 128 blocks x 1.00 MiB, OpenBLAS ...". */
void infer_engine_describe(infer_engine_t *e, char *buf, size_t len);

/* Model facts the front end needs. */
typedef struct infer_tokenizer infer_tokenizer_t;
const infer_tokenizer_t *infer_engine_tokenizer(infer_engine_t *e);
int infer_engine_context_length(infer_engine_t *e);
int infer_engine_vocab_size(infer_engine_t *e);

const char *infer_strerror(int rc);
int64_t infer_now_ms(void);

#endif
