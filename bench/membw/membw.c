/*
 * Memory-read bandwidth, the roofline of batch-1 decode: THREADS threads
 * each sum their share of a MiB-sized float array (far past the caches),
 * PASSES times; prints the best pass in GB/s (1e9 bytes).
 *   cc -O2 -march=native -pthread bench/membw/membw.c -o membw
 *   membw [THREADS] [MIB] [PASSES]
 */
#include <pthread.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    const float *p;
    size_t       n;
    float        sum;
} part_t;

/*
 * Four streams a thread, each summed in 8-float vectors: the prefetchers
 * follow several streams at once, as they follow the rows of W that the
 * decode products read side by side.
 */
typedef float v8_t __attribute__((vector_size(32)));

static void *
sum_part(void *arg)
{
    part_t     *t = arg;
    size_t      i, q = t->n / 8 / 4;
    const v8_t *p0 = (const v8_t *) t->p, *p1 = p0 + q, *p2 = p1 + q;
    const v8_t *p3 = p2 + q;
    v8_t        s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
    int         k;

    for (i = 0; i < q; i++) {
        s0 += p0[i];
        s1 += p1[i];
        s2 += p2[i];
        s3 += p3[i];
    }
    s0 += s1 + s2 + s3;
    t->sum = 0;
    for (k = 0; k < 8; k++) {
        t->sum += s0[k];
    }
    return NULL;
}

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
    int        threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t     mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 1024;
    int        passes = argc > 3 ? atoi(argv[3]) : 5;
    size_t     n = mib << 18, i;          /* floats */
    float     *a, check = 0;
    part_t     parts[64];
    pthread_t  tid[64];
    double     t0, best = 1e30;
    int        p, k;

    /* in huge pages where the kernel has them (THP "madvise" mode): with
     * 4 KiB pages every page is a TLB miss and a stop for the hardware
     * prefetcher, and this read 25-40% below what the engine's weights,
     * which it maps that way, are read at (an AVX-512 Zen 5 VM) */
    a = mmap(NULL, n * sizeof(float), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || threads < 1 || threads > 64) {
        return 1;
    }
#ifdef MADV_HUGEPAGE
    (void) madvise(a, n * sizeof(float), MADV_HUGEPAGE);
#endif
    for (i = 0; i < n; i++) {
        a[i] = (float) (i & 7);
    }
    for (p = 0; p < passes; p++) {
        t0 = now();
        for (k = 0; k < threads; k++) {
            parts[k].p = a + n / threads * k;
            parts[k].n = n / threads;
            pthread_create(&tid[k], NULL, sum_part, &parts[k]);
        }
        for (k = 0; k < threads; k++) {
            pthread_join(tid[k], NULL);
            check += parts[k].sum;
        }
        best = now() - t0 < best ? now() - t0 : best;
    }
    printf("%.2f GB/s read, %d threads, %zu MiB, best of %d (checksum "
           "%g)\n", (double) n * sizeof(float) / best / 1e9, threads, mib,
           passes, check);
    munmap(a, n * sizeof(float));
    return 0;
}
