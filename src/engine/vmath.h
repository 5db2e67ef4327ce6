/*
 * glibc's libmvec (linked through libm) has vector expf, tanhf and erff;
 * math.h declares them only under -ffast-math, which would also drop the
 * infinities the softmax relies on.  Declared here, the loops under
 * `#pragma omp simd` call them 4 lanes at a time (8 in WTYPE_AVX2
 * functions): the exponentials were a quarter of stories260K's prefill
 * time.
 */
#ifndef INFER_VMATH_H
#define INFER_VMATH_H

#include <math.h>

#pragma omp declare simd notinbranch
float expf(float x);
#pragma omp declare simd notinbranch
float tanhf(float x);
#pragma omp declare simd notinbranch
float erff(float x);

#endif
