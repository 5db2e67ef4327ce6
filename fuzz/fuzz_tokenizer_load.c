/*
 * tokenizer.json (and tokenizer_config.json) loading.  The input up to
 * its first NUL byte is tokenizer.json, the rest, if there is a NUL,
 * tokenizer_config.json (neither may hold a NUL: JSON cannot); both are
 * written to one scratch directory per process.  Properties: a refused
 * file gives no tokenizer and a message naming the file; one that loads
 * answers its accessors consistently and encodes a few fixed texts (ASCII,
 * accents, CJK, an emoji, a NUL byte, spaces, its own special tokens) to
 * ids within its vocab, which stream back as whole UTF-8 characters.
 */
#include "fuzz.h"
#include "tokenizer.h"

static const struct {
    const char  *s;
    size_t       len;
} fuzz_texts[] = {
#define FUZZ_TEXT(s)  { s, sizeof(s) - 1 }
    FUZZ_TEXT("Hello, world! It's 2024."),
    FUZZ_TEXT("h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac "
              "\xf0\x9f\x99\x82 \xe2\x96\x81x"),
    FUZZ_TEXT("a\0b\0"),
    FUZZ_TEXT("   two  spaces\n\n\ttab \r\n"),
    FUZZ_TEXT("<s> </s> <unk> <|endoftext|> <|im_start|>user"),
    FUZZ_TEXT(""),
#undef FUZZ_TEXT
};

static char  fuzz_tj[600], fuzz_tc[600];


static int
fuzz_utf8(const char *s, size_t n)
{
    json_t  *j = json_stringn(s, n);

    json_decref(j);
    return j != NULL;
}


static void
fuzz_encode(const infer_tokenizer_t *t, const char *s, size_t len,
    int add_special)
{
    infer_detok_t  d;
    int32_t       *ids;
    int            n, i, vocab = infer_tokenizer_vocab_size(t);
    size_t         cap = infer_tokenizer_max_token_bytes(t) + 8, k;
    char          *chunk;

    /* An error is allowed (a Split regex may hit its limits), a crash,
     * a hang or ids out of range are not. */
    if (infer_tokenizer_encode(t, s, len, add_special, &ids, &n) != 0) {
        return;
    }
    chunk = malloc(cap);
    FUZZ_CHECK(chunk != NULL, "out of memory");
    infer_detok_init(&d, t, 1);
    for (i = 0; i <= n; i++) {
        if (i < n) {
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab, "id %d out of "
                       "[0, %d)", ids[i], vocab);
        }
        k = i < n ? infer_detok_push(&d, ids[i], chunk, cap)
                  : infer_detok_flush(&d, chunk, cap);
        FUZZ_CHECK(k <= cap && fuzz_utf8(chunk, k), "id %d: %zu bytes "
                   "(capacity %zu), not whole UTF-8 characters",
                   i < n ? ids[i] : -1, k, cap);
    }
    free(chunk);
    free(ids);
}


static void
fuzz_accessors(const infer_tokenizer_t *t)
{
    int          vocab = infer_tokenizer_vocab_size(t), bos, eos;
    int32_t      id;
    const char  *s;

    FUZZ_CHECK(vocab > 0, "vocab size %d", vocab);
    bos = infer_tokenizer_bos_id(t);
    eos = infer_tokenizer_eos_id(t);
    FUZZ_CHECK(bos >= -1 && bos < vocab && eos >= -1 && eos < vocab,
               "bos %d, eos %d, vocab %d", bos, eos, vocab);
    FUZZ_CHECK(!infer_tokenizer_add_bos(t) || bos >= 0, "adds bos %d",
               bos);
    FUZZ_CHECK(infer_tokenizer_token_str(t, -1) == NULL
               && infer_tokenizer_token_str(t, vocab) == NULL
               && !infer_tokenizer_is_special(t, vocab),
               "ids out of range have a token");
    for (id = 0; id < vocab && id < 64; id++) {
        s = infer_tokenizer_token_str(t, id);
        FUZZ_CHECK(s == NULL || fuzz_utf8(s, strlen(s)), "token %d is not "
                   "UTF-8", id);
    }
}


/* The file's own tokens, one after another and then spaced, so that its
 * merges and added tokens are met. */
static void
fuzz_vocab_text(const infer_tokenizer_t *t)
{
    char         text[4096];
    size_t       len = 0, n;
    int32_t      id;
    int          pass;
    const char  *s;

    for (pass = 0; pass < 2; pass++) {
        len = 0;
        for (id = 0; id < infer_tokenizer_vocab_size(t) && id < 64; id++) {
            s = infer_tokenizer_token_str(t, id);
            if (s == NULL) {
                continue;       /* an id no token has */
            }
            n = strlen(s);
            if (len + n + 1 > sizeof(text)) {
                break;
            }
            memcpy(text + len, s, n);
            len += n;
            if (pass == 1) {
                text[len++] = ' ';
            }
        }
        fuzz_encode(t, text, len, 1);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char         *dir = fuzz_tmpdir();
    const uint8_t      *nul = memchr(data, 0, size);
    infer_tokenizer_t  *t = (infer_tokenizer_t *) 1;
    char                err[512];
    size_t              i, tj_len = nul ? (size_t) (nul - data) : size;

    if (fuzz_tj[0] == '\0') {
        snprintf(fuzz_tj, sizeof(fuzz_tj), "%s/tokenizer.json", dir);
        snprintf(fuzz_tc, sizeof(fuzz_tc), "%s/tokenizer_config.json",
                 dir);
    }
    fuzz_write_file(fuzz_tj, data, tj_len);
    if (nul != NULL) {
        fuzz_write_file(fuzz_tc, nul + 1, size - tj_len - 1);
    } else {
        unlink(fuzz_tc);
    }

    err[0] = '\0';
    if (infer_tokenizer_load(dir, &t, err, sizeof(err)) != 0) {
        FUZZ_CHECK(t == NULL, "a refused file gives a tokenizer");
        FUZZ_CHECK(strstr(err, dir) != NULL, "the message does not name "
                   "the file: %s", err);
        return 0;
    }
    FUZZ_CHECK(t != NULL, "no tokenizer and no error");
    fuzz_accessors(t);
    for (i = 0; i < sizeof(fuzz_texts) / sizeof(fuzz_texts[0]); i++) {
        fuzz_encode(t, fuzz_texts[i].s, fuzz_texts[i].len, 0);
        fuzz_encode(t, fuzz_texts[i].s, fuzz_texts[i].len, 1);
    }
    fuzz_vocab_text(t);
    infer_tokenizer_free(t);
    return 0;
}
