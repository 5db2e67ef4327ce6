/* Minimal TAP producer for the C unit tests (run with prove). */
#ifndef INFER_TAP_H
#define INFER_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

static inline int
tap_ok(int cond, const char *fmt, ...)
{
    va_list ap;

    tap_n++;
    if (!cond) {
        tap_failed++;
    }
    printf("%sok %d - ", cond ? "" : "not ", tap_n);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    return cond;
}

#define ok(cond, ...)  tap_ok(!!(cond), __VA_ARGS__)

#define is_int(got, want, ...)                                              \
    do {                                                                    \
        long long g_ = (long long) (got), w_ = (long long) (want);          \
        if (!tap_ok(g_ == w_, __VA_ARGS__)) {                               \
            printf("#   got: %lld\n#   expected: %lld\n", g_, w_);         \
        }                                                                   \
    } while (0)

#define is_str(got, want, ...)                                              \
    do {                                                                    \
        const char *g_ = (got), *w_ = (want);                               \
        if (!tap_ok(g_ && w_ && strcmp(g_, w_) == 0, __VA_ARGS__)) {        \
            printf("#   got: '%s'\n#   expected: '%s'\n",                   \
                   g_ ? g_ : "(null)", w_ ? w_ : "(null)");                 \
        }                                                                   \
    } while (0)

static inline void
diag(const char *fmt, ...)
{
    va_list ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static inline void
skip_all(const char *reason)
{
    printf("1..0 # SKIP %s\n", reason);
    exit(0);
}

static inline int
done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

/* A whole file, NUL-terminated and malloc'd (NULL if unreadable); its
 * length in *len when len is not NULL. */
static inline char *
tap_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long  n;

    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = n >= 0 ? malloc(n + 1) : NULL;
    if (p == NULL || fread(p, 1, n, f) != (size_t) n) {
        free(p);
        fclose(f);
        return NULL;
    }
    p[n] = '\0';
    fclose(f);
    if (len != NULL) {
        *len = n;
    }
    return p;
}

/* ../shared next to the repository, or $INFER_SHARED. */
static inline const char *
shared_dir(void)
{
    const char *s = getenv("INFER_SHARED");
    return s ? s : "../shared";
}

#endif
