/*
 * What the libFuzzer harnesses (fuzz/fuzz_*.c) share: a property check
 * that aborts so libFuzzer keeps the input, a scratch directory for the
 * harnesses that must hand the code under test a file, and a JSON
 * validity test for what the codecs emit.  Header-only: each harness is
 * one translation unit linked against build-fuzz/libinfer.a.
 */
#ifndef INFER_FUZZ_H
#define INFER_FUZZ_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

/* A broken property is a crash to libFuzzer: it saves the input as an
 * artifact, as for a sanitizer report. */
#define FUZZ_CHECK(cond, ...)                                                \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__,        \
                    __LINE__, #cond);                                        \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* FUZZ_VERBOSE=1 in the environment: harnesses say what the code under
 * test decided, to check that seeds reach the paths they were made for. */
#define FUZZ_SAY(...)                                                        \
    do {                                                                     \
        if (getenv("FUZZ_VERBOSE") != NULL) {                                \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

static char fuzz_dir_path[512];

static inline int
fuzz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static inline void
fuzz_rm_tmpdir(void)
{
    nftw(fuzz_dir_path, fuzz_rm, 8, FTW_DEPTH | FTW_PHYS);
}

/* One directory per process under $TMPDIR, removed at exit; one left by
 * a crash is removed by fuzz/run.sh, which points TMPDIR into the build
 * dir. */
static inline const char *
fuzz_tmpdir(void)
{
    const char  *base;

    if (fuzz_dir_path[0] == '\0') {
        base = getenv("TMPDIR");
        snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/infer-fuzz-XXXXXX",
                 base && base[0] ? base : "/tmp");
        if (mkdtemp(fuzz_dir_path) == NULL) {
            fprintf(stderr, "fuzz: mkdtemp %s: %s\n", fuzz_dir_path,
                    strerror(errno));
            abort();
        }
        atexit(fuzz_rm_tmpdir);
    }
    return fuzz_dir_path;
}

/* Replaces path with the n bytes at data; a write that fails is the
 * machine's fault, not the input's, so it stops the run. */
static inline void
fuzz_write_file(const char *path, const void *data, size_t n)
{
    const char  *p = data;
    ssize_t      w;
    int          fd;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "fuzz: open %s: %s\n", path, strerror(errno));
        abort();
    }
    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            fprintf(stderr, "fuzz: write %s: %s\n", path, strerror(errno));
            abort();
        }
        p += w;
        n -= (size_t) w;
    }
    close(fd);
}

/* The n bytes at s as one JSON value (jansson also checks the UTF-8), or
 * NULL; the caller owns the result. */
static inline json_t *
fuzz_json(const char *s, size_t n)
{
    json_error_t  jerr;

    return json_loadb(s, n, JSON_ALLOW_NUL, &jerr);
}

#endif
