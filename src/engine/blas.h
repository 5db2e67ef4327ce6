/*
 * The CPU backend's BLAS: Debian's OpenBLAS, loaded by the engine with the
 * kernel set chosen for the CPU it runs on (see blas.c).
 */
#ifndef INFER_BLAS_H
#define INFER_BLAS_H

#include <stddef.h>
#include <cblas.h>

typedef struct {
    typeof(cblas_sgemm)              *sgemm;
    typeof(cblas_sgemv)              *sgemv;
    typeof(openblas_set_num_threads) *set_num_threads;
} infer_blas_t;

/* Valid after infer_blas_load() returned 0. */
extern infer_blas_t  infer_blas;

/* Loads the library once per process; later calls return the first
 * result.  -1 with the reason in err when it cannot be loaded. */
int infer_blas_load(char *err, size_t errlen);

/* "OpenBLAS 0.3.21, Haswell kernels (chosen for AVX2+FMA)": the library
 * and the kernels it runs, for the start-up log and infer_stats. */
const char *infer_blas_kernels(void);

/* Non-NULL when the kernels are not the ones this CPU should run (a
 * generic set on a CPU with AVX2 or AVX-512): the warning to log. */
const char *infer_blas_warning(void);

#endif
