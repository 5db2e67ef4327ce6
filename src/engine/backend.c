/* Backend registry: the scheduler asks for a backend by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"

#define INFER_MAX_EXTRA_BACKENDS  4

static const infer_backend_ops_t *extra[INFER_MAX_EXTRA_BACKENDS];
static int                        n_extra;

int
infer_backend_register(const infer_backend_ops_t *ops)
{
    if (n_extra == INFER_MAX_EXTRA_BACKENDS) {
        return -1;
    }
    extra[n_extra++] = ops;
    return 0;
}

const infer_backend_ops_t *
infer_backend_find(const char *name, char *err, size_t errlen)
{
    int  i;

    if (name == NULL || strcmp(name, "cpu") == 0) {
        return &infer_backend_cpu;
    }
    if (strcmp(name, "cuda") == 0) {
#ifdef INFER_HAVE_CUDA
        return &infer_backend_cuda;
#else
        snprintf(err, errlen, "backend=cuda: this build has no CUDA support "
                 "(nvcc was not found when it was compiled)");
        return NULL;
#endif
    }
    for (i = 0; i < n_extra; i++) {
        if (strcmp(name, extra[i]->name) == 0) {
            return extra[i];
        }
    }
    snprintf(err, errlen, "unknown backend \"%s\" (cpu, cuda)", name);
    return NULL;
}

size_t
infer_backend_kv_block_bytes(const infer_backend_ops_t *ops,
    const infer_model_config_t *c, int block_size)
{
    return (size_t) 2 * c->num_layers * c->num_kv_heads * block_size
           * c->head_dim * ops->kv_elem_bytes;
}

int
infer_backend_create(const char *name, const infer_model_t *m,
    infer_backend_params_t *p, infer_backend_t **out, char *err,
    size_t errlen)
{
    const infer_backend_ops_t *ops;
    infer_backend_t           *b;

    ops = infer_backend_find(name, err, errlen);
    if (ops == NULL) {
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
