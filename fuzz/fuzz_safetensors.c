/*
 * Safetensors files: the input is the whole file.  The mapping is not
 * tracked by ASan, so what a sanitizer cannot see is checked here: every
 * tensor of an accepted file lies inside the data section of its mapping,
 * after the header, with as many bytes as its shape and dtype need, and can
 * be found by name.  The same file added twice must be refused by
 * infer_st_seal (each name defined twice), once alone must not.
 */
#include "fuzz.h"
#include "safetensors.h"

static char fuzz_path[2][600];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    snprintf(fuzz_path[0], sizeof(fuzz_path[0]), "%s/a.safetensors",
             fuzz_tmpdir());
    snprintf(fuzz_path[1], sizeof(fuzz_path[1]), "%s/b.safetensors",
             fuzz_tmpdir());
    return 0;
}

static void
fuzz_check_tensor(const infer_st_set_t *s, const infer_tensor_t *t)
{
    const infer_st_file_t  *f = infer_st_file(s, t->file);
    const unsigned char    *base, *data;
    unsigned long long      hlen = 0;
    size_t                  nelem = 1;
    int                     i;

    FUZZ_CHECK(f != NULL && f->size >= 8, "tensor '%s' has no file",
               t->name);
    base = f->base;
    for (i = 7; i >= 0; i--) {
        hlen = hlen << 8 | base[i];
    }
    data = t->data;
    FUZZ_CHECK(data >= base + 8 + hlen && data <= base + f->size
               && t->nbytes <= (size_t) (base + f->size - data),
               "tensor '%s' lies outside the data section", t->name);
    FUZZ_CHECK(t->ndim >= 0 && t->ndim <= 4, "ndim %d", t->ndim);
    for (i = 0; i < t->ndim; i++) {
        FUZZ_CHECK(t->shape[i] >= 0, "negative dimension");
        nelem *= (size_t) t->shape[i];
    }
    FUZZ_CHECK(t->nbytes == nelem * infer_dtype_size(t->dtype),
               "tensor '%s': %zu bytes for %zu elements of %s", t->name,
               t->nbytes, nelem, infer_dtype_name(t->dtype));
    FUZZ_CHECK(infer_st_find(s, t->name) == t, "tensor '%s' not found",
               t->name);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    infer_st_set_t  s;
    char            err[512];
    int             i, n;

    fuzz_write_file(fuzz_path[0], data, size);
    memset(&s, 0, sizeof(s));
    err[0] = '\0';
    if (infer_st_add_file(&s, fuzz_path[0], err, sizeof(err)) != 0) {
        FUZZ_SAY("refused: %s", err);
        FUZZ_CHECK(err[0] != '\0', "refused without a message");
        infer_st_free(&s);
        return 0;
    }
    FUZZ_CHECK(infer_st_seal(&s, err, sizeof(err)) == 0,
               "one file's names clash: %s", err);
    for (i = 0; i < s.n_tensors; i++) {
        fuzz_check_tensor(&s, &s.tensors[i]);
    }
    n = s.n_tensors;
    FUZZ_SAY("accepted: %d tensors", n);
    infer_st_free(&s);

    fuzz_write_file(fuzz_path[1], data, size);
    memset(&s, 0, sizeof(s));
    FUZZ_CHECK(infer_st_add_file(&s, fuzz_path[0], err, sizeof(err)) == 0
               && infer_st_add_file(&s, fuzz_path[1], err, sizeof(err))
                  == 0, "accepted once, refused the second time: %s", err);
    FUZZ_CHECK(s.n_tensors == 2 * n, "%d tensors twice made %d", n,
               s.n_tensors);
    err[0] = '\0';
    FUZZ_CHECK((infer_st_seal(&s, err, sizeof(err)) != 0) == (n > 0),
               "%d names defined in two files, seal said \"%s\"", n, err);
    infer_st_free(&s);
    return 0;
}
