/*
 * The CPU backend's matrix products, on one library at a time:
 *   y[n, out] = x[n, in] W[out, in]^T   (row-major, as linear() calls it)
 * for the shapes of a TinyLlama-1.1B layer and its lm_head, at n = 1
 * (decode) and n = 128 (a prefill chunk).  Built once per library
 * (bench/gemm.sh) so no library's cblas symbols shadow another's.
 *   gemm THREADS ROUNDS   -> one line per shape: name n out in best_ms GFLOP/s
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(USE_OPENBLAS)
#include <cblas.h>
char *openblas_get_corename(void);
static const char *lib_name(void) { return openblas_get_corename(); }
static void lib_threads(int t) { openblas_set_num_threads(t); }
static void
product(float *y, const float *x, const float *W, int n, int in, int out)
{
    if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in, x, 1,
                    0.0f, y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in,
                    1.0f, x, in, W, in, 0.0f, y, out);
    }
}
#elif defined(USE_BLIS)
#include <blis.h>
static const char *lib_name(void)
{
    return bli_arch_string(bli_arch_query_id());
}
static void lib_threads(int t) { bli_thread_set_num_threads(t); }
static void
product(float *y, const float *x, const float *W, int n, int in, int out)
{
    float one = 1.0f, zero = 0.0f;

    if (n == 1) {
        bli_sgemv(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, out, in, &one,
                  (float *) W, in, 1, (float *) x, 1, &zero, y, 1);
    } else {
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, n, out, in, &one,
                  (float *) x, in, 1, (float *) W, in, 1, &zero, y, out, 1);
    }
}
#elif defined(USE_DNNL)
#include <dnnl.h>
static const char *lib_name(void)
{
    static char s[64];
    const dnnl_version_t *v = dnnl_version();

    snprintf(s, sizeof(s), "oneDNN %d.%d.%d isa=%d", v->major, v->minor,
             v->patch, (int) dnnl_get_effective_cpu_isa());
    return s;
}
static void lib_threads(int t) { (void) t; /* OMP_NUM_THREADS */ }
static void
product(float *y, const float *x, const float *W, int n, int in, int out)
{
    dnnl_sgemm('N', 'T', n, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}
#endif

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int
main(int argc, char **argv)
{
    static const struct { const char *name; int out, in; } shape[] = {
        { "q_proj/o_proj", 2048, 2048 },
        { "k_proj/v_proj", 256, 2048 },
        { "gate/up_proj", 5632, 2048 },
        { "down_proj", 2048, 5632 },
        { "lm_head", 32000, 2048 },
    };
    static const int ns[] = { 1, 128 };
    int      threads = argc > 1 ? atoi(argv[1]) : 2;
    int      rounds = argc > 2 ? atoi(argv[2]) : 5;
    size_t   i, j, k;
    float   *x, *W, *y;

    lib_threads(threads);
    x = malloc(128 * 5632 * sizeof(float));
    W = malloc((size_t) 32000 * 2048 * sizeof(float));
    y = malloc((size_t) 128 * 32000 * sizeof(float));
    for (k = 0; k < (size_t) 32000 * 2048; k++) {
        W[k] = (float) ((k * 2654435761u) % 1000) / 1000.0f - 0.5f;
    }
    for (k = 0; k < 128 * 5632; k++) {
        x[k] = (float) ((k * 40503u) % 1000) / 1000.0f - 0.5f;
    }
    printf("# %s, %d threads\n", lib_name(), threads);
    for (i = 0; i < sizeof(shape) / sizeof(shape[0]); i++) {
        for (j = 0; j < 2; j++) {
            int    n = ns[j], r;
            double best = 1e9, t;

            if (n == 128 && strcmp(shape[i].name, "lm_head") == 0) {
                continue;   /* logits only for the rows that are sampled */
            }
            product(y, x, W, n, shape[i].in, shape[i].out);   /* warm */
            for (r = 0; r < rounds; r++) {
                t = now();
                product(y, x, W, n, shape[i].in, shape[i].out);
                t = now() - t;
                best = t < best ? t : best;
            }
            printf("%s %d %d %d %.3f %.1f\n", shape[i].name, n,
                   shape[i].out, shape[i].in, best * 1e3,
                   2.0 * n * shape[i].out * shape[i].in / best * 1e-9);
        }
    }
    return 0;
}
