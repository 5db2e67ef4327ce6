/*
 * OpenBLAS with the kernels for this CPU, without environment variables.
 *
 * Debian's OpenBLAS is built with DYNAMIC_ARCH: a constructor picks one
 * kernel set when the library is loaded, from its own CPU table, unless
 * OPENBLAS_CORETYPE names one.  Version 0.3.21's table predates recent
 * Xeons (Sapphire Rapids is "Prescott" to it: generic SSE3 kernels, 3.5x
 * slower prefill than its SkylakeX set on the same machine).  The choice is
 * made at load time, and a module linked with -lopenblas would have the
 * library loaded by the nginx master before any of our code runs.  So the
 * engine is not linked with it: it reads the CPU's features itself, names
 * the kernel set in OPENBLAS_CORETYPE, then dlopen()s the library.
 *
 *     AVX-512 F+BW+DQ+VL (the OS saving its state)  -> SkylakeX
 *     AVX2 + FMA, AMD                               -> Zen
 *     AVX2 + FMA, others                            -> Haswell
 *     older                                         -> OpenBLAS's own choice
 *
 * (0.3.21 also knows CooperLake and SapphireRapids by name only in builds
 * that include them; Debian's falls back to its detection for those names,
 * so SkylakeX is the AVX-512 set.)  An OPENBLAS_CORETYPE the operator set
 * wins, and so does a library already in the process (then its choice
 * stands); either way the kernels are compared with the CPU's and a
 * mismatch is reported as a warning.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "blas.h"

#define BLAS_SONAME  "libopenblas.so.0"

infer_blas_t  infer_blas;

static pthread_once_t  blas_once = PTHREAD_ONCE_INIT;
static int             blas_rc = -1;
static char            blas_err[256];
static char            blas_kernels[160];
static char            blas_warning[256];

/* The kernel set for this CPU, and why; NULL: leave it to OpenBLAS. */
static const char *
blas_core_for_cpu(const char **why)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl"))
    {
        *why = "AVX-512";
        return "SkylakeX";
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *why = "AVX2+FMA";
        return __builtin_cpu_is("amd") ? "Zen" : "Haswell";
    }
    *why = "no AVX2";
    return NULL;
}

/* Kernel sets that run the CPU's best instructions, by what it has. */
static int
blas_core_fits(const char *core, const char *want)
{
    static const char *const avx512[] = { "SkylakeX", "Cooperlake",
                                          "CooperLake", "SapphireRapids",
                                          NULL };
    static const char *const avx2[] = { "Haswell", "Zen", "SkylakeX",
                                        "Cooperlake", "CooperLake",
                                        "SapphireRapids", NULL };
    const char *const *ok;

    if (want == NULL) {
        return 1;
    }
    ok = strcmp(want, "SkylakeX") == 0 ? avx512 : avx2;
    for (; *ok != NULL; ok++) {
        if (strcasecmp(core, *ok) == 0) {
            return 1;
        }
    }
    return 0;
}

static void *
blas_sym(void *h, const char *name)
{
    void *f = dlsym(h, name);

    if (f == NULL && blas_err[0] == '\0') {
        snprintf(blas_err, sizeof(blas_err), "%s has no %s", BLAS_SONAME,
                 name);
    }
    return f;
}

static void
blas_load_once(void)
{
    const char  *why = "", *want, *set, *how;
    char      *(*corename)(void);
    char      *(*config)(void);
    char         version[32] = "";
    void        *h;

    want = blas_core_for_cpu(&why);
    set = getenv("OPENBLAS_CORETYPE");
    h = dlopen(BLAS_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (h != NULL) {
        how = "loaded before the engine: its own choice";
    } else if (set != NULL && set[0] != '\0') {
        how = "OPENBLAS_CORETYPE";
    } else if (want != NULL) {
        /* read by the library's constructor during dlopen() below; the
         * engine's threads that might read the environment do not exist
         * yet when the first engine is created */
        setenv("OPENBLAS_CORETYPE", want, 1);
        how = "chosen for";
    } else {
        how = "OpenBLAS's detection";
    }
    if (h == NULL) {
        h = dlopen(BLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    }
    if (h == NULL) {
        snprintf(blas_err, sizeof(blas_err), "cannot load %s: %s",
                 BLAS_SONAME, dlerror());
        return;
    }
    infer_blas.sgemm = (typeof(cblas_sgemm) *) blas_sym(h, "cblas_sgemm");
    infer_blas.sgemv = (typeof(cblas_sgemv) *) blas_sym(h, "cblas_sgemv");
    infer_blas.set_num_threads = (typeof(openblas_set_num_threads) *)
                                 blas_sym(h, "openblas_set_num_threads");
    corename = (char *(*)(void)) blas_sym(h, "openblas_get_corename");
    config = (char *(*)(void)) blas_sym(h, "openblas_get_config");
    if (blas_err[0] != '\0') {
        return;
    }

    /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." */
    sscanf(config(), "OpenBLAS %31s", version);
    if (strcmp(how, "chosen for") == 0) {
        snprintf(blas_kernels, sizeof(blas_kernels),
                 "OpenBLAS %s, %s kernels (chosen for %s)", version,
                 corename(), why);
    } else {
        snprintf(blas_kernels, sizeof(blas_kernels),
                 "OpenBLAS %s, %s kernels (%s)", version, corename(), how);
    }
    if (!blas_core_fits(corename(), want)) {
        snprintf(blas_warning, sizeof(blas_warning),
                 "OpenBLAS runs its %s kernels on a CPU with %s, whose "
                 "kernels are %s (%s): matrix products are several times "
                 "slower", corename(), why, want, how);
    }
    blas_rc = 0;
}

int
infer_blas_load(char *err, size_t errlen)
{
    pthread_once(&blas_once, blas_load_once);
    if (blas_rc != 0) {
        snprintf(err, errlen, "cpu backend: %s", blas_err);
    }
    return blas_rc;
}

const char *
infer_blas_kernels(void)
{
    return blas_rc == 0 ? blas_kernels : "";
}

const char *
infer_blas_warning(void)
{
    return blas_rc == 0 && blas_warning[0] != '\0' ? blas_warning : NULL;
}
