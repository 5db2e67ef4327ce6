/*
 * Safetensors files: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets}}, then the raw tensor bytes.  A set of
 * files (one model, maybe sharded) is mmap'd read-only and every tensor is
 * validated against its file before anything may point into it.
 */
#ifndef INFER_SAFETENSORS_H
#define INFER_SAFETENSORS_H

#include <stddef.h>
#include "model.h"

/* A header larger than this is hostile, not a model. */
#define INFER_ST_MAX_HEADER  100000000ULL

typedef struct {
    char   *path;
    void   *base;
    size_t  size;
} infer_st_file_t;

typedef struct {
    infer_st_file_t *files;
    int              n_files;
    infer_tensor_t  *tensors;     /* sorted by name after infer_st_seal */
    int              n_tensors;
} infer_st_set_t;

/* Maps path and adds its tensors to the set (path is copied). */
int infer_st_add_file(infer_st_set_t *s, const char *path, char *err,
    size_t errlen);
/* Sorts the table and refuses a name that two files both define. */
int infer_st_seal(infer_st_set_t *s, char *err, size_t errlen);
const infer_tensor_t *infer_st_find(const infer_st_set_t *s,
    const char *name);
const infer_st_file_t *infer_st_file(const infer_st_set_t *s,
    const char *path);
void infer_st_free(infer_st_set_t *s);

size_t infer_dtype_size(infer_dtype_t dt);
const char *infer_dtype_name(infer_dtype_t dt);

#endif
