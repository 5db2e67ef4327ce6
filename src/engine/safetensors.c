/*
 * Safetensors reader.  Nothing in a file is trusted: the header length, the
 * JSON, every shape and every byte range are checked against the mapping so
 * that a hostile file gives an error naming the file and the tensor, never a
 * read outside the mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "safetensors.h"

/* Element counts above this could overflow a byte count. */
#define INFER_ST_MAX_ELEMS  (1LL << 60)


size_t
infer_dtype_size(infer_dtype_t dt)
{
    return dt == INFER_DT_F32 ? 4 : 2;
}


const char *
infer_dtype_name(infer_dtype_t dt)
{
    switch (dt) {
    case INFER_DT_F32:
        return "F32";
    case INFER_DT_F16:
        return "F16";
    default:
        return "BF16";
    }
}


static int
infer_st_map(infer_st_file_t *f, char *err, size_t errlen)
{
    int          fd;
    struct stat  st;

    fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", f->path,
                 strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", f->path);
        close(fd);
        return -1;
    }
    if (st.st_size < 8) {
        snprintf(err, errlen, "%s: truncated: %lld bytes, shorter than the "
                 "8-byte header length", f->path, (long long) st.st_size);
        close(fd);
        return -1;
    }
    f->size = (size_t) st.st_size;
    f->base = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->base == MAP_FAILED) {
        f->base = NULL;
        snprintf(err, errlen, "%s: mmap: %s", f->path, strerror(errno));
        return -1;
    }
    return 0;
}


static int
infer_st_parse_dtype(const char *s, infer_dtype_t *dt)
{
    if (strcmp(s, "F32") == 0) {
        *dt = INFER_DT_F32;
    } else if (strcmp(s, "F16") == 0) {
        *dt = INFER_DT_F16;
    } else if (strcmp(s, "BF16") == 0) {
        *dt = INFER_DT_BF16;
    } else {
        return -1;
    }
    return 0;
}


/* Fills t from one header entry; data_size is the bytes after the header. */
static int
infer_st_parse_tensor(const infer_st_file_t *f, const char *name,
    json_t *v, const unsigned char *data, size_t data_size,
    infer_tensor_t *t, char *err, size_t errlen)
{
    json_t      *jdt, *jshape, *joff, *jb, *je;
    const char  *dts;
    size_t       i;
    json_int_t   d, begin, end;
    long long    nelem;

    if (!json_is_object(v)) {
        snprintf(err, errlen, "%s: tensor '%s': header entry is not an "
                 "object", f->path, name);
        return -1;
    }
    jdt = json_object_get(v, "dtype");
    jshape = json_object_get(v, "shape");
    joff = json_object_get(v, "data_offsets");
    if (!json_is_string(jdt)) {
        snprintf(err, errlen, "%s: tensor '%s': dtype missing or not a "
                 "string", f->path, name);
        return -1;
    }
    dts = json_string_value(jdt);
    if (infer_st_parse_dtype(dts, &t->dtype) != 0) {
        snprintf(err, errlen, "%s: tensor '%s' has dtype %.32s; only F32, "
                 "F16 and BF16 are supported", f->path, name, dts);
        return -1;
    }
    if (!json_is_array(jshape) || json_array_size(jshape) > 4) {
        snprintf(err, errlen, "%s: tensor '%s': shape missing or not an "
                 "array of at most 4 dimensions", f->path, name);
        return -1;
    }
    t->ndim = (int) json_array_size(jshape);
    nelem = 1;
    for (i = 0; i < json_array_size(jshape); i++) {
        d = json_is_integer(json_array_get(jshape, i))
            ? json_integer_value(json_array_get(jshape, i)) : -1;
        if (d < 0 || (d > 0 && nelem > INFER_ST_MAX_ELEMS / d)) {
            snprintf(err, errlen, "%s: tensor '%s': shape dimension %zu is "
                     "not a sane non-negative integer", f->path, name, i);
            return -1;
        }
        t->shape[i] = d;
        nelem *= d;
    }
    for (; i < 4; i++) {
        t->shape[i] = 0;
    }
    if (!json_is_array(joff) || json_array_size(joff) != 2
        || !json_is_integer(jb = json_array_get(joff, 0))
        || !json_is_integer(je = json_array_get(joff, 1)))
    {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets missing or not "
                 "[begin, end]", f->path, name);
        return -1;
    }
    begin = json_integer_value(jb);
    end = json_integer_value(je);
    if (begin < 0 || begin > end) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets [%lld, %lld] "
                 "has begin > end or a negative offset", f->path, name,
                 (long long) begin, (long long) end);
        return -1;
    }
    if ((unsigned long long) end > data_size) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets end %lld is "
                 "past the end of the file (%zu data bytes)", f->path, name,
                 (long long) end, data_size);
        return -1;
    }
    t->nbytes = (size_t) nelem * infer_dtype_size(t->dtype);
    if ((size_t) (end - begin) != t->nbytes) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets span %lld "
                 "bytes but its shape and dtype %s need %zu", f->path, name,
                 (long long) (end - begin), dts, t->nbytes);
        return -1;
    }
    t->file = f->path;
    t->data = data + begin;
    return 0;
}


static int
infer_st_cmp_data(const void *a, const void *b)
{
    const infer_tensor_t *x = *(const infer_tensor_t * const *) a;
    const infer_tensor_t *y = *(const infer_tensor_t * const *) b;
    const char *px = x->data, *py = y->data;

    return px < py ? -1 : px > py;
}


/* Two tensors sharing bytes would let a write-through backend or a
 * hand-crafted file alias weights; the format forbids it. */
static int
infer_st_check_overlap(const infer_st_file_t *f, infer_tensor_t *t, int n,
    char *err, size_t errlen)
{
    const infer_tensor_t **v;
    const char            *prev_end = NULL;
    const infer_tensor_t  *prev = NULL;
    int                    i, k = 0, rc = 0;

    v = malloc(sizeof(*v) * (n ? n : 1));
    if (v == NULL) {
        snprintf(err, errlen, "%s: out of memory", f->path);
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (t[i].nbytes) {
            v[k++] = &t[i];
        }
    }
    qsort(v, k, sizeof(*v), infer_st_cmp_data);
    for (i = 0; i < k; i++) {
        if (prev && (const char *) v[i]->data < prev_end) {
            snprintf(err, errlen, "%s: tensors '%s' and '%s' overlap in "
                     "data_offsets", f->path, prev->name, v[i]->name);
            rc = -1;
            break;
        }
        prev = v[i];
        prev_end = (const char *) v[i]->data + v[i]->nbytes;
    }
    free(v);
    return rc;
}


static int
infer_st_parse_header(infer_st_set_t *s, const infer_st_file_t *f,
    char *err, size_t errlen)
{
    const unsigned char *b = f->base;
    unsigned long long   hlen = 0;
    json_t              *root, *v;
    json_error_t         jerr;
    const char          *key;
    infer_tensor_t      *nt, *t;
    size_t               data_size, n;
    int                  i, first = s->n_tensors, rc = -1;

    for (i = 7; i >= 0; i--) {
        hlen = hlen << 8 | b[i];
    }
    if (hlen > INFER_ST_MAX_HEADER) {
        snprintf(err, errlen, "%s: header length %llu is absurd (limit "
                 "%llu)", f->path, hlen, INFER_ST_MAX_HEADER);
        return -1;
    }
    if (hlen > f->size - 8) {
        snprintf(err, errlen, "%s: header length %llu exceeds the file "
                 "(%zu bytes): truncated or corrupt", f->path, hlen, f->size);
        return -1;
    }
    root = json_loadb((const char *) b + 8, hlen, JSON_REJECT_DUPLICATES,
                      &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "%s: malformed header JSON: %s (byte %d)",
                 f->path, jerr.text, jerr.position);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: header is not a JSON object", f->path);
        goto done;
    }
    n = json_object_size(root);
    nt = realloc(s->tensors, sizeof(*nt) * (s->n_tensors + n + 1));
    if (nt == NULL) {
        snprintf(err, errlen, "%s: out of memory", f->path);
        goto done;
    }
    s->tensors = nt;
    data_size = f->size - 8 - hlen;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            continue;
        }
        t = &s->tensors[s->n_tensors];
        memset(t, 0, sizeof(*t));
        if (infer_st_parse_tensor(f, key, v, b + 8 + hlen, data_size, t,
                                  err, errlen) != 0)
        {
            goto done;
        }
        t->name = strdup(key);
        if (t->name == NULL) {
            snprintf(err, errlen, "%s: out of memory", f->path);
            goto done;
        }
        s->n_tensors++;
    }
    rc = infer_st_check_overlap(f, &s->tensors[first], s->n_tensors - first,
                                err, errlen);
done:
    json_decref(root);
    return rc;
}


int
infer_st_add_file(infer_st_set_t *s, const char *path, char *err,
    size_t errlen)
{
    infer_st_file_t *nf, *f;

    nf = realloc(s->files, sizeof(*nf) * (s->n_files + 1));
    if (nf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    s->files = nf;
    f = &s->files[s->n_files];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (f->path == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    s->n_files++;
    if (infer_st_map(f, err, errlen) != 0) {
        return -1;
    }
    return infer_st_parse_header(s, f, err, errlen);
}


static int
infer_st_cmp_name(const void *a, const void *b)
{
    return strcmp(((const infer_tensor_t *) a)->name,
                  ((const infer_tensor_t *) b)->name);
}


int
infer_st_seal(infer_st_set_t *s, char *err, size_t errlen)
{
    int i;

    if (s->n_tensors > 1) {
        qsort(s->tensors, s->n_tensors, sizeof(*s->tensors),
              infer_st_cmp_name);
    }
    for (i = 1; i < s->n_tensors; i++) {
        if (strcmp(s->tensors[i - 1].name, s->tensors[i].name) == 0) {
            snprintf(err, errlen, "%s: tensor '%s' is also defined in %s",
                     s->tensors[i].file, s->tensors[i].name,
                     s->tensors[i - 1].file);
            return -1;
        }
    }
    return 0;
}


const infer_tensor_t *
infer_st_find(const infer_st_set_t *s, const char *name)
{
    infer_tensor_t key;

    if (s->n_tensors == 0) {
        return NULL;
    }
    key.name = name;
    return bsearch(&key, s->tensors, s->n_tensors, sizeof(*s->tensors),
                   infer_st_cmp_name);
}


const infer_st_file_t *
infer_st_file(const infer_st_set_t *s, const char *path)
{
    int i;

    for (i = 0; i < s->n_files; i++) {
        if (strcmp(s->files[i].path, path) == 0) {
            return &s->files[i];
        }
    }
    return NULL;
}


void
infer_st_free(infer_st_set_t *s)
{
    int i;

    for (i = 0; i < s->n_tensors; i++) {
        free((char *) s->tensors[i].name);
    }
    for (i = 0; i < s->n_files; i++) {
        if (s->files[i].base) {
            munmap(s->files[i].base, s->files[i].size);
        }
        free(s->files[i].path);
    }
    free(s->tensors);
    free(s->files);
    memset(s, 0, sizeof(*s));
}
