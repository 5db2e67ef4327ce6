/*
 * infer-cli: drive the engine from a terminal.
 *
 *   infer-cli MODEL_DIR "prompt" [options]     stream a completion
 *   infer-cli MODEL_DIR --bench [options]      prefill and decode tokens/s
 *
 * It uses only the public engine API, exactly as the nginx module does.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "infer.h"
#include "tokenizer.h"

typedef struct {
    const char *model_dir;
    const char *prompt;
    const char *prompt_ids;
    int         max_tokens;
    float       temperature;
    float       top_p;
    int         top_k;
    long long   seed;
    int         has_seed;
    int         ignore_eos;
    const char *stop;
    int         bench;
    int         batch;
    int         prompt_len;
    int         gen_len;
    infer_engine_config_t ec;
} cli_t;

static void
usage(FILE *f)
{
    fprintf(f,
"usage: infer-cli MODEL_DIR \"prompt\" [options]\n"
"       infer-cli MODEL_DIR --bench [--batch B] [--prompt-len P] "
"[--gen-len G] [options]\n"
"generation:\n"
"  --max-tokens N      tokens to generate (default 64)\n"
"  --temperature T     0 = greedy (default 0)\n"
"  --top-p P           nucleus mass in (0, 1] (default 1)\n"
"  --top-k K           keep the K most likely tokens (default 0 = off)\n"
"  --seed S            seed for sampling\n"
"  --stop STR          stop string\n"
"  --ignore-eos        keep going past end-of-sequence\n"
"  --prompt-ids LIST   comma-separated token ids instead of a prompt\n"
"engine:\n"
"  --backend NAME      cpu (default) or cuda\n"
"  --dtype T           weights in memory: auto (default: bf16 for bf16\n"
"                      checkpoints, else f32; f16 on cuda), f32, bf16,\n"
"                      int8 (per-row scales, computed at load; cpu and\n"
"                      cuda), f16 (cuda)\n"
"  --threads N         compute threads (default: all cores)\n"
"  --tp N              tensor-parallel ranks (default 1)\n"
"  --devices LIST      comma-separated device ids for the ranks (cuda)\n"
"  --kv-cache MB       KV cache budget in MiB (default 256)\n"
"  --max-batch-tokens N  token budget per step\n"
"  --max-seqs N        running sequences\n");
}

static int
parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    long  v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = (int) v;
    return 0;
}

static int
parse_float(const char *s, float *out)
{
    char *end;

    errno = 0;
    *out = strtof(s, &end);
    return errno || *s == '\0' || *end != '\0' ? -1 : 0;
}

static int
parse_devices(const char *s, cli_t *c)
{
    static int  devices[64];
    const char *p = s;
    char       *end;
    long        v;

    c->ec.n_devices = 0;
    while (*p && c->ec.n_devices < 64) {
        errno = 0;
        v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > 1023
            || (*end != ',' && *end != '\0'))
        {
            return -1;
        }
        devices[c->ec.n_devices++] = (int) v;
        p = *end == ',' ? end + 1 : end;
    }
    c->ec.devices = devices;
    return *p == '\0' && c->ec.n_devices > 0 ? 0 : -1;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
parse_args(int argc, char **argv, cli_t *c)
{
    static const struct option opts[] = {
        { "max-tokens", required_argument, NULL, 'n' },
        { "temperature", required_argument, NULL, 't' },
        { "top-p", required_argument, NULL, 'p' },
        { "top-k", required_argument, NULL, 'k' },
        { "seed", required_argument, NULL, 's' },
        { "stop", required_argument, NULL, 'S' },
        { "ignore-eos", no_argument, NULL, 'E' },
        { "prompt-ids", required_argument, NULL, 'I' },
        { "threads", required_argument, NULL, 'j' },
        { "backend", required_argument, NULL, 'b' },
        { "dtype", required_argument, NULL, 'd' },
        { "tp", required_argument, NULL, 'T' },
        { "devices", required_argument, NULL, 'D' },
        { "kv-cache", required_argument, NULL, 'K' },
        { "max-batch-tokens", required_argument, NULL, 'B' },
        { "max-seqs", required_argument, NULL, 'M' },
        { "bench", no_argument, NULL, 'x' },
        { "batch", required_argument, NULL, 'a' },
        { "prompt-len", required_argument, NULL, 'P' },
        { "gen-len", required_argument, NULL, 'G' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int  o, mib = 256, v;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    c->max_tokens = 64;
    c->top_p = 1.0f;
    c->batch = 1;
    c->prompt_len = 128;
    c->gen_len = 32;
    c->ec.threads = ncpu > 0 ? (int) ncpu : 1;
    c->ec.backend = "cpu";

    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;

        switch (o) {
        case 'n': bad = parse_int(optarg, 1, 1 << 20, &c->max_tokens); break;
        case 't': bad = parse_float(optarg, &c->temperature)
                        || c->temperature < 0; break;
        case 'p': bad = parse_float(optarg, &c->top_p)
                        || !(c->top_p > 0 && c->top_p <= 1); break;
        case 'k': bad = parse_int(optarg, 0, 1 << 24, &c->top_k); break;
        case 's': bad = sscanf(optarg, "%lld", &c->seed) != 1;
                  c->has_seed = 1; break;
        case 'S': c->stop = optarg; break;
        case 'E': c->ignore_eos = 1; break;
        case 'I': c->prompt_ids = optarg; break;
        case 'j': bad = parse_int(optarg, 1, 1024, &c->ec.threads); break;
        case 'b': c->ec.backend = optarg; break;
        case 'd': c->ec.dtype = optarg; break;
        case 'T': bad = parse_int(optarg, 1, 64, &c->ec.tp); break;
        case 'D': bad = parse_devices(optarg, c); break;
        case 'K': bad = parse_int(optarg, 1, 1 << 20, &mib); break;
        case 'B': bad = parse_int(optarg, 1, 1 << 20,
                                  &c->ec.max_batch_tokens); break;
        case 'M': bad = parse_int(optarg, 1, 4096, &c->ec.max_seqs); break;
        case 'x': c->bench = 1; break;
        case 'a': bad = parse_int(optarg, 1, 4096, &c->batch); break;
        case 'P': bad = parse_int(optarg, 1, 1 << 20, &c->prompt_len); break;
        case 'G': bad = parse_int(optarg, 1, 1 << 20, &c->gen_len); break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
        if (bad) {
            for (v = 0; opts[v].val != o; v++) {
                /* find the option's name */
            }
            fprintf(stderr, "infer-cli: bad value \"%s\" for --%s\n", optarg,
                    opts[v].name);
            return -1;
        }
    }
    c->ec.kv_cache_bytes = (size_t) mib << 20;

    if (optind >= argc) {
        fprintf(stderr, "infer-cli: MODEL_DIR is required\n");
        return -1;
    }
    c->model_dir = argv[optind++];
    c->ec.model_dir = c->model_dir;
    if (!c->bench) {
        if (optind < argc) {
            c->prompt = argv[optind++];
        }
        if ((c->prompt == NULL) == (c->prompt_ids == NULL)) {
            fprintf(stderr, "infer-cli: give a prompt or --prompt-ids\n");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "infer-cli: unexpected argument \"%s\"\n",
                argv[optind]);
        return -1;
    }
    if (c->bench && c->ec.max_batch_tokens == 0) {
        c->ec.max_batch_tokens = c->prompt_len * c->batch < 2048
                                 ? c->prompt_len * c->batch : 2048;
        if (c->ec.max_batch_tokens < c->batch) {
            c->ec.max_batch_tokens = c->batch;
        }
    }
    if (c->bench && c->ec.max_seqs == 0) {
        c->ec.max_seqs = c->batch;
    }
    return 0;
}

static int
parse_ids(const char *s, int32_t **ids, int *n)
{
    const char *p = s;
    int         cap = 16;

    *n = 0;
    *ids = malloc(cap * sizeof(int32_t));
    while (*ids != NULL && *p) {
        char *end;
        long  v = strtol(p, &end, 10);

        if (end == p || v < 0 || v > 0x7fffffff) {
            return -1;
        }
        if (*n == cap) {
            int32_t *g = realloc(*ids, (cap *= 2) * sizeof(int32_t));
            if (g == NULL) {
                return -1;
            }
            *ids = g;
        }
        (*ids)[(*n)++] = (int32_t) v;
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') {
            return -1;
        }
    }
    return *ids != NULL && *n > 0 ? 0 : -1;
}

/* Waits for events and hands each to fn until `remaining` reaches 0. */
static int
drain(infer_engine_t *e, int remaining,
    int (*fn)(infer_event_t *ev, void *arg), void *arg)
{
    infer_event_t  ev[64];
    struct pollfd  pfd;
    int            n, i, rc = 0;

    pfd.fd = infer_engine_event_fd(e);
    pfd.events = POLLIN;
    while (remaining > 0) {
        if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) {
            return -1;
        }
        n = infer_engine_poll(e, ev, 64);
        for (i = 0; i < n; i++) {
            if (ev[i].type != INFER_EVENT_TOKEN) {
                remaining--;
            }
            rc |= fn(&ev[i], arg);
            infer_event_release(&ev[i]);
        }
        if (n == 0 && !infer_engine_alive(e)) {
            return -1;
        }
    }
    return rc;
}

typedef struct {
    double  t_first;
    int     prompt_tokens;
    int     completion_tokens;
    int     finish;
} stream_t;

static int
print_event(infer_event_t *ev, void *arg)
{
    stream_t *st = arg;

    if (st->t_first == 0) {
        st->t_first = now_s();
    }
    if (ev->type == INFER_EVENT_ERROR) {
        fprintf(stderr, "\ninfer-cli: %s\n", ev->text ? ev->text : "error");
        return -1;
    }
    if (ev->text_len > 0) {
        fwrite(ev->text, 1, ev->text_len, stdout);
        fflush(stdout);
    }
    if (ev->type == INFER_EVENT_DONE) {
        st->prompt_tokens = ev->prompt_tokens;
        st->completion_tokens = ev->completion_tokens;
        st->finish = ev->finish;
    }
    return 0;
}

static int
run_prompt(infer_engine_t *e, cli_t *c)
{
    static const char *finish_names[] = {
        "none", "stop", "length", "cancelled", "deadline", "error"
    };
    infer_request_t  r;
    stream_t         st;
    int32_t         *ids = NULL;
    int              n = 0, rc;
    uint64_t         id;
    double           t0;
    const char      *stop[1];

    if (c->prompt_ids != NULL) {
        if (parse_ids(c->prompt_ids, &ids, &n) != 0) {
            fprintf(stderr, "infer-cli: bad --prompt-ids \"%s\"\n",
                    c->prompt_ids);
            free(ids);
            return 2;
        }
    } else if (infer_tokenizer_encode(infer_engine_tokenizer(e), c->prompt,
                                      strlen(c->prompt), 1, &ids, &n) != 0)
    {
        fprintf(stderr, "infer-cli: cannot tokenize the prompt\n");
        return 1;
    }

    memset(&r, 0, sizeof(r));
    r.prompt = ids;
    r.n_prompt = n;
    r.max_tokens = c->max_tokens;
    r.temperature = c->temperature;
    r.top_p = c->top_p;
    r.top_k = c->top_k;
    r.seed = (uint64_t) c->seed;
    r.has_seed = c->has_seed;
    r.ignore_eos = c->ignore_eos;
    if (c->stop != NULL) {
        stop[0] = c->stop;
        r.stop = stop;
        r.n_stop = 1;
    }

    memset(&st, 0, sizeof(st));
    t0 = now_s();
    rc = infer_engine_submit(e, &r, &id);
    free(ids);
    if (rc != INFER_OK) {
        fprintf(stderr, "infer-cli: %s\n", infer_strerror(rc));
        return 1;
    }
    if (drain(e, 1, print_event, &st) != 0) {
        return 1;
    }
    fprintf(stderr, "\n[prompt %d tokens, generated %d tokens, finish %s, "
            "%.1f tokens/s, first token %.1f ms]\n", st.prompt_tokens,
            st.completion_tokens, finish_names[st.finish],
            st.completion_tokens / (now_s() - t0), (st.t_first - t0) * 1e3);
    return 0;
}

typedef struct {
    int    generated;
    int    errors;
} bench_t;

static int
bench_event(infer_event_t *ev, void *arg)
{
    bench_t *b = arg;

    if (ev->type == INFER_EVENT_ERROR) {
        fprintf(stderr, "infer-cli: %s\n", ev->text ? ev->text : "error");
        b->errors++;
        return -1;
    }
    if (ev->type == INFER_EVENT_DONE) {
        b->generated += ev->completion_tokens;
    }
    return 0;
}

/* When every one of batch sequences has drawn its first token (the
 * engine's generated count, published after each step, has grown by
 * batch since base): the end of their prefill.  Not from the token
 * events: a token whose text is not complete UTF-8 yet, or has none,
 * comes in a later event, with a random-weight model often only in the
 * last. */
static double
first_tokens_at(infer_engine_t *e, uint64_t base, int batch)
{
    infer_stats_t    st;
    struct timespec  nap = { 0, 100000 };

    for ( ;; ) {
        infer_engine_stats(e, &st);
        if (st.generated_tokens >= base + (uint64_t) batch
            || !infer_engine_alive(e))
        {
            return now_s();
        }
        nanosleep(&nap, NULL);
    }
}

/*
 * Warm-up: B prompts of P tokens with max_tokens 1, not timed, so that
 * what a first step does once (its buffers' first pages, OpenBLAS's
 * threads coming up) is not counted as prefill: llama-bench runs such a
 * warm-up too.  Its tokens differ from the timed prompts', so that the
 * prefix cache has none of them.  Prefill: B prompts of P tokens with
 * max_tokens 1.  Decode: the same with G tokens each, timed from the end
 * of their prefill to their end: the G - 1 decode steps.
 */
static int
run_bench(infer_engine_t *e, cli_t *c)
{
    infer_request_t r;
    bench_t         b;
    int32_t        *ids;
    int             i, pass, vocab = infer_engine_vocab_size(e), rc;
    uint64_t        id;
    double          t0, t_prefill = 0, t_decode = 0, t_end;
    infer_stats_t   st;

    if (c->prompt_len + c->gen_len > infer_engine_context_length(e)) {
        fprintf(stderr, "infer-cli: prompt-len + gen-len exceeds the "
                "context (%d)\n", infer_engine_context_length(e));
        return 2;
    }
    ids = malloc(c->prompt_len * sizeof(int32_t));
    if (ids == NULL) {
        return 1;
    }

    for (pass = -1; pass < 2; pass++) {
        memset(&b, 0, sizeof(b));
        infer_engine_stats(e, &st);
        t0 = now_s();
        for (i = 0; i < c->batch; i++) {
            int k;

            for (k = 0; k < c->prompt_len; k++) {
                ids[k] = (int32_t) ((k * 7919u + i * 104729u
                                     + (pass < 0 ? 17 : 13)) % vocab);
            }
            memset(&r, 0, sizeof(r));
            r.prompt = ids;
            r.n_prompt = c->prompt_len;
            r.max_tokens = pass < 1 ? 1 : c->gen_len;
            r.top_p = 1.0f;
            r.ignore_eos = 1;
            rc = infer_engine_submit(e, &r, &id);
            if (rc != INFER_OK) {
                fprintf(stderr, "infer-cli: %s\n", infer_strerror(rc));
                free(ids);
                return 1;
            }
        }
        if (pass == 1) {
            t_decode = first_tokens_at(e, st.generated_tokens, c->batch);
        }
        if (drain(e, c->batch, bench_event, &b) != 0) {
            free(ids);
            return 1;
        }
        t_end = now_s();
        if (pass < 0) {
            continue;
        }
        if (pass == 0) {
            t_prefill = t_end - t0;
            printf("prefill: batch %d x %d tokens in %.3f s: %.1f tokens/s\n",
                   c->batch, c->prompt_len, t_prefill,
                   c->batch * c->prompt_len / t_prefill);
        } else {
            double dt = t_end - t_decode;
            int    steps = b.generated - c->batch;

            printf("decode: batch %d x %d tokens in %.3f s: %.1f tokens/s "
                   "(%.2f ms/step)\n", c->batch, c->gen_len, dt,
                   steps / dt, dt * 1e3 / (c->gen_len - 1 > 0
                                           ? c->gen_len - 1 : 1));
        }
    }
    free(ids);
    return 0;
}

/* What runs the model: on stderr, so that stdout stays the output. */
static void
log_engine(infer_engine_t *e)
{
    infer_stats_t  st;
    char           line[512];

    infer_engine_describe(e, line, sizeof(line));
    fprintf(stderr, "infer-cli: %s\n", line);
    infer_engine_stats(e, &st);
    if (st.kernels_warning != NULL) {
        fprintf(stderr, "infer-cli: warning: %s\n", st.kernels_warning);
    }
}

int
main(int argc, char **argv)
{
    cli_t           c;
    infer_engine_t *e;
    char            err[512];
    int             rc;

    memset(&c, 0, sizeof(c));
    if (parse_args(argc, argv, &c) != 0) {
        usage(stderr);
        return 2;
    }
    if (infer_engine_create(&c.ec, &e, err, sizeof(err)) != INFER_OK) {
        fprintf(stderr, "infer-cli: %s\n", err);
        return 1;
    }
    if (infer_engine_start(e, err, sizeof(err)) != INFER_OK) {
        fprintf(stderr, "infer-cli: %s\n", err);
        infer_engine_destroy(e);
        return 1;
    }
    log_engine(e);
    rc = c.bench ? run_bench(e, &c) : run_prompt(e, &c);
    infer_engine_destroy(e);
    return rc;
}
