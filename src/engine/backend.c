/* Backend registry: the scheduler asks for a backend by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"

int
infer_backend_create(const char *name, const infer_model_t *m,
    infer_backend_params_t *p, infer_backend_t **out, char *err,
    size_t errlen)
{
    const infer_backend_ops_t *ops;
    infer_backend_t           *b;

    if (name == NULL || strcmp(name, "cpu") == 0) {
        ops = &infer_backend_cpu;
    } else if (strcmp(name, "cuda") == 0) {
#ifdef INFER_HAVE_CUDA
        ops = &infer_backend_cuda;
#else
        snprintf(err, errlen, "backend=cuda: this build has no CUDA support "
                 "(nvcc was not found when it was compiled)");
        return -1;
#endif
    } else {
        snprintf(err, errlen, "unknown backend \"%s\" (cpu, cuda)", name);
        return -1;
    }

    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(err, errlen, "backend %s: out of memory", ops->name);
        return -1;
    }
    b->ops = ops;
    b->model = m;
    if (ops->init(b, m, p, err, errlen) != 0) {
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

void
infer_backend_destroy(infer_backend_t *b)
{
    if (b != NULL) {
        b->ops->destroy(b);
        free(b);
    }
}
