/*
 * Encoding and streaming decoding with the real tokenizers of ../shared
 * (GPT-2, Llama-2, Llama-3, stories260K), loaded once.  The first byte of
 * the input picks the tokenizer (bits 0-1) and the mode (bit 2):
 *
 *   text: the rest is encoded with and without bos/eos.  Properties: it
 *   encodes exactly when it is valid UTF-8; ids are in the vocab, at most
 *   two per byte (one, plus Llama-2's prepended U+2581 per segment);
 *   add_special only adds bos in front; streaming the ids back gives
 *   whole characters of valid UTF-8, and the text itself where the
 *   tokenizer is lossless: byte-level BPE (GPT-2, Llama-3) always, the
 *   SentencePiece ones unless the text holds U+2581 (their space).  Ids
 *   of special tokens decode to nothing, so no text holding one is
 *   expected back.
 *
 *   ids: the rest is a list of ids, three bytes each, from -1 to the
 *   vocab size (out of range on both sides), streamed to the detokenizer
 *   (bit 3: at_start).  Properties: every push and the flush write whole
 *   characters of valid UTF-8 within the capacity the header promises.
 *
 * jansson's UTF-8 check is the oracle for "valid UTF-8" (it refuses
 * overlong forms, surrogates and code points past U+10FFFF, as the
 * tokenizer must).
 */
#include "fuzz.h"
#include "tokenizer.h"

#define FUZZ_N_TOK  4

static const struct {
    const char  *rel;           /* below ../shared */
    int          lossless;      /* decode(encode(text)) == text */
} fuzz_tok_info[FUZZ_N_TOK] = {
    { "tokenizers/gpt2", 1 },
    { "tokenizers/llama2", 0 },
    { "tokenizers/llama3", 1 },
    { "models/stories260K", 0 },
};

static infer_tokenizer_t  *fuzz_tok[FUZZ_N_TOK];


static int
fuzz_utf8(const char *s, size_t n)
{
    json_t  *j = json_stringn(s, n);

    json_decref(j);
    return j != NULL;
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char  *shared = getenv("INFER_SHARED");
    char         dir[1024], err[512];
    int          k;

    (void) argc;
    (void) argv;
    if (shared == NULL || shared[0] == '\0') {
        shared = "../shared";
    }
    for (k = 0; k < FUZZ_N_TOK; k++) {
        snprintf(dir, sizeof(dir), "%s/%s", shared, fuzz_tok_info[k].rel);
        if (infer_tokenizer_load(dir, &fuzz_tok[k], err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz_tokenizer_encode: %s\n", err);
            abort();
        }
    }
    return 0;
}


/* Streams ids through a detokenizer; returns the malloc'd concatenation
 * (its length in *len) after checking every chunk. */
static char *
fuzz_detok(const infer_tokenizer_t *t, const int32_t *ids, size_t n,
    int at_start, size_t *len)
{
    infer_detok_t  d;
    size_t         cap = infer_tokenizer_max_token_bytes(t) + 8, k, i;
    char          *all, *chunk;

    all = malloc((n + 1) * cap + 1);
    chunk = malloc(cap);
    FUZZ_CHECK(all != NULL && chunk != NULL, "out of memory");
    *len = 0;
    infer_detok_init(&d, t, at_start);
    for (i = 0; i <= n; i++) {
        k = i < n ? infer_detok_push(&d, ids[i], chunk, cap)
                  : infer_detok_flush(&d, chunk, cap);
        FUZZ_CHECK(k <= cap, "chunk of %zu bytes, capacity %zu", k, cap);
        FUZZ_CHECK(fuzz_utf8(chunk, k), "id %d (push %zu of %zu) gives "
                   "%zu bytes that are not whole UTF-8 characters",
                   i < n ? ids[i] : -1, i, n, k);
        memcpy(all + *len, chunk, k);
        *len += k;
    }
    free(chunk);
    FUZZ_CHECK(d.n_pending == 0, "flush left %d bytes held back",
               d.n_pending);
    return all;
}


static void
fuzz_text(int k, const char *s, size_t len)
{
    const infer_tokenizer_t  *t = fuzz_tok[k];
    int32_t                  *ids0, *ids1;
    int                       n0, n1, rc0, rc1, valid, i, off, special = 0;
    int                       vocab = infer_tokenizer_vocab_size(t);
    char                     *dec;
    size_t                    dlen;

    valid = fuzz_utf8(s, len);
    rc0 = infer_tokenizer_encode(t, s, len, 0, &ids0, &n0);
    rc1 = infer_tokenizer_encode(t, s, len, 1, &ids1, &n1);
    FUZZ_CHECK(rc0 == (valid ? 0 : -1) && rc1 == rc0, "tokenizer %d: "
               "encode gives %d and %d for %s UTF-8", k, rc0, rc1,
               valid ? "valid" : "invalid");
    if (rc0 != 0) {
        return;
    }
    FUZZ_CHECK((size_t) n0 <= 2 * len && n1 <= n0 + 2, "tokenizer %d: "
               "%d and %d ids of %zu bytes", k, n0, n1, len);
    for (i = 0; i < n1; i++) {
        FUZZ_CHECK(ids1[i] >= 0 && ids1[i] < vocab, "tokenizer %d: id "
                   "%d out of [0, %d)", k, ids1[i], vocab);
    }
    for (i = 0; i < n0; i++) {
        special |= infer_tokenizer_is_special(t, ids0[i]);
    }
    off = infer_tokenizer_add_bos(t);
    FUZZ_CHECK(n1 >= n0 + off
               && (!off || ids1[0] == infer_tokenizer_bos_id(t))
               && memcmp(ids1 + off, ids0, n0 * sizeof(int32_t)) == 0,
               "tokenizer %d: add_special does more than add bos", k);

    dec = fuzz_detok(t, ids1, n1, 1, &dlen);
    if (!special && (fuzz_tok_info[k].lossless
                     || memmem(s, len, "\xe2\x96\x81", 3) == NULL))
    {
        FUZZ_CHECK(dlen == len && memcmp(dec, s, len) == 0, "tokenizer "
                   "%d: %zu bytes decode to %zu other bytes", k, len, dlen);
    }
    free(dec);
    free(ids0);
    free(ids1);
}


static void
fuzz_ids(int k, const unsigned char *p, size_t len, int at_start)
{
    const infer_tokenizer_t  *t = fuzz_tok[k];
    int32_t                  *ids;
    size_t                    n = len / 3, i, dlen;
    uint32_t                  v;
    char                     *dec;

    ids = malloc((n + 1) * sizeof(int32_t));
    FUZZ_CHECK(ids != NULL, "out of memory");
    for (i = 0; i < n; i++) {
        v = (uint32_t) p[3 * i] | (uint32_t) p[3 * i + 1] << 8
            | (uint32_t) p[3 * i + 2] << 16;
        ids[i] = (int32_t) (v % (uint32_t) (infer_tokenizer_vocab_size(t)
                                            + 2)) - 1;
    }
    dec = fuzz_detok(t, ids, n, at_start, &dlen);
    free(dec);
    free(ids);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int  k;

    if (size == 0) {
        return 0;
    }
    k = data[0] & 3;
    if (data[0] & 4) {
        fuzz_ids(k, data + 1, size - 1, (data[0] & 8) != 0);
    } else {
        fuzz_text(k, (const char *) data + 1, size - 1);
    }
    return 0;
}
