/*
 * Encoding and streaming decoding with the real tokenizers of ../shared
 * (GPT-2, Llama-2, Llama-3, stories260K), loaded once, and with each of
 * them under a Unicode normalizer (GPT-2 NFC, Llama-2 NFKC before its
 * own, Llama-3 NFD, stories260K NFKD before its own).  The first byte of
 * the input picks the tokenizer (bits 0-1), the mode (bit 2) and the
 * normalized one (bit 4):
 *
 *   text: the rest is encoded with and without bos/eos.  Properties: it
 *   encodes exactly when it is valid UTF-8; ids are in the vocab, at most
 *   two per byte (one, plus Llama-2's prepended U+2581 per segment; the
 *   normalized ones as many as the normalizer's growth allows);
 *   add_special only adds bos in front; streaming the ids back gives
 *   whole characters of valid UTF-8, and the text itself (normalized by
 *   utf8proc, as the tokenizer says it does) where the tokenizer is
 *   lossless: byte-level BPE (GPT-2, Llama-3) always, the SentencePiece
 *   ones unless the text holds U+2581 (their space).  Ids of special
 *   tokens decode to nothing, so no text holding one is expected back.
 *
 *   ids: the rest is a list of ids, three bytes each, from -1 to the
 *   vocab size (out of range on both sides), streamed to the detokenizer
 *   (bit 3: at_start).  Properties: every push and the flush write whole
 *   characters of valid UTF-8 within the capacity the header promises;
 *   for the SentencePiece ones (not at_start), the text is what HF's
 *   ByteFallback decoder makes of the whole list at once: a run of byte
 *   tokens its bytes if valid UTF-8, else U+FFFD for each of them (where
 *   no run is valid for INFER_DETOK_RUN bytes and broken later, which the
 *   streaming detokenizer lets out early by design).
 *
 * jansson's UTF-8 check is the oracle for "valid UTF-8" (it refuses
 * overlong forms, surrogates and code points past U+10FFFF, as the
 * tokenizer must).
 */
#include "fuzz.h"
#include "tokenizer.h"

#include <utf8proc.h>

#define FUZZ_N_TOK  4

static const struct {
    const char  *rel;           /* below ../shared */
    int          lossless;      /* decode(encode(text)) == text */
    const char  *form;          /* the normalized one's normalizer */
    int          options;       /* and its utf8proc_map() options */
    int          growth;        /* ids a byte, at most, normalized */
} fuzz_tok_info[FUZZ_N_TOK] = {
    { "tokenizers/gpt2", 1, "NFC", UTF8PROC_STABLE | UTF8PROC_COMPOSE,
      6 },
    { "tokenizers/llama2", 0, "NFKC",
      UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, 44 },
    { "tokenizers/llama3", 1, "NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
      6 },
    { "models/stories260K", 0, "NFKD",
      UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, 44 },
};

/* [k]: the tokenizer of ../shared; [FUZZ_N_TOK + k]: it normalized. */
static infer_tokenizer_t  *fuzz_tok[2 * FUZZ_N_TOK];


static int
fuzz_utf8(const char *s, size_t n)
{
    json_t  *j = json_stringn(s, n);

    json_decref(j);
    return j != NULL;
}


/* Tokenizer k's tokenizer.json with its normalizer form put first, in a
 * scratch directory, loaded as fuzz_tok[FUZZ_N_TOK + k]. */
static int
fuzz_normalized(const char *dir, int k, char *err, size_t errlen)
{
    char          path[1024];
    json_t       *root, *seq, *old;
    json_error_t  je;
    int           rc;

    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    root = json_load_file(path, 0, &je);
    if (root == NULL) {
        snprintf(err, errlen, "%s: %s", path, je.text);
        return -1;
    }
    seq = json_pack("{s:s, s:[{s:s}]}", "type", "Sequence", "normalizers",
                    "type", fuzz_tok_info[k].form);
    old = json_object_get(root, "normalizer");
    if (json_is_object(old)) {
        if (json_is_array(json_object_get(old, "normalizers"))) {
            json_array_extend(json_object_get(seq, "normalizers"),
                              json_object_get(old, "normalizers"));
        } else {
            json_array_append(json_object_get(seq, "normalizers"), old);
        }
    }
    json_object_set_new(root, "normalizer", seq);
    snprintf(path, sizeof(path), "%s/norm%d", fuzz_tmpdir(), k);
    mkdir(path, 0755);
    rc = json_dump_file(root, strcat(path, "/tokenizer.json"), 0);
    json_decref(root);
    /* its tokenizer_config.json (bos/eos flags) too */
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    root = json_load_file(path, 0, &je);
    snprintf(path, sizeof(path), "%s/norm%d/tokenizer_config.json",
             fuzz_tmpdir(), k);
    if (root != NULL) {
        rc |= json_dump_file(root, path, 0);
        json_decref(root);
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot write", path);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/norm%d", fuzz_tmpdir(), k);
    return infer_tokenizer_load(path, &fuzz_tok[FUZZ_N_TOK + k], err,
                                errlen);
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
        if (infer_tokenizer_load(dir, &fuzz_tok[k], err, sizeof(err)) != 0
            || fuzz_normalized(dir, k, err, sizeof(err)) != 0)
        {
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
    int at_start, int keep_special, size_t *len)
{
    infer_detok_t  d;
    size_t         cap = infer_tokenizer_max_token_bytes(t) + 8, k, i;
    char          *all, *chunk;

    all = malloc((n + 1) * cap + 1);
    chunk = malloc(cap);
    FUZZ_CHECK(all != NULL && chunk != NULL, "out of memory");
    *len = 0;
    infer_detok_init(&d, t, at_start);
    d.keep_special = keep_special;
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
    FUZZ_CHECK(d.n_pending == 0 && d.n_run == 0, "flush left %d and %d "
               "bytes held back", d.n_pending, d.n_run);
    return all;
}


/* What the text should decode to: itself, or normalized as tokenizer
 * k normalizes it (malloc'd, its length in *len). */
static char *
fuzz_expected(int k, int norm, const char *s, size_t *len)
{
    utf8proc_uint8_t  *d;
    utf8proc_ssize_t   n;
    char              *p;

    if (!norm || *len == 0) {
        p = malloc(*len + 1);
        FUZZ_CHECK(p != NULL, "out of memory");
        memcpy(p, s, *len);
        return p;
    }
    n = utf8proc_map((const utf8proc_uint8_t *) s, (utf8proc_ssize_t) *len,
                     &d, (utf8proc_option_t) fuzz_tok_info[k].options);
    FUZZ_CHECK(n >= 0, "utf8proc_map: %s", utf8proc_errmsg(n));
    *len = (size_t) n;
    return (char *) d;
}


static void
fuzz_text(int k, int norm, const char *s, size_t len)
{
    const infer_tokenizer_t  *t = fuzz_tok[norm * FUZZ_N_TOK + k];
    int32_t                  *ids0, *ids1;
    int                       n0, n1, rc0, rc1, valid, i, off, special = 0;
    int                       vocab = infer_tokenizer_vocab_size(t);
    int                       growth = norm ? fuzz_tok_info[k].growth : 2;
    char                     *dec, *want;
    size_t                    dlen, wlen = len;

    valid = fuzz_utf8(s, len);
    rc0 = infer_tokenizer_encode(t, s, len, 0, &ids0, &n0);
    rc1 = infer_tokenizer_encode(t, s, len, 1, &ids1, &n1);
    FUZZ_CHECK(rc0 == (valid ? 0 : -1) && rc1 == rc0, "tokenizer %d%s: "
               "encode gives %d and %d for %s UTF-8", k, norm ? "n" : "",
               rc0, rc1, valid ? "valid" : "invalid");
    if (rc0 != 0) {
        return;
    }
    FUZZ_CHECK((size_t) n0 <= growth * len && n1 <= n0 + 2, "tokenizer "
               "%d%s: %d and %d ids of %zu bytes", k, norm ? "n" : "", n0,
               n1, len);
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

    /* Without a special token the text was one segment, normalized as a
     * whole. */
    dec = fuzz_detok(t, ids1, n1, 1, 0, &dlen);
    if (!special) {
        want = fuzz_expected(k, norm, s, &wlen);
        if (fuzz_tok_info[k].lossless
            || memmem(want, wlen, "\xe2\x96\x81", 3) == NULL)
        {
            FUZZ_CHECK(dlen == wlen && memcmp(dec, want, wlen) == 0,
                       "tokenizer %d%s: %zu bytes decode to %zu other "
                       "bytes", k, norm ? "n" : "", len, dlen);
        }
        free(want);
    }
    free(dec);
    free(ids0);
    free(ids1);
}


/* Whether b[0, n) (n <= INFER_DETOK_RUN) is valid UTF-8 but for an
 * unfinished last character: some continuation makes it valid (a second
 * byte of 80, 90 or A0 suits every lead, any later one 80). */
static int
fuzz_utf8_start(const unsigned char *b, size_t n)
{
    static const unsigned char  next[] = { 0x80, 0x90, 0xa0 };
    unsigned char               tmp[INFER_DETOK_RUN + 4];
    int                         m, c;

    if (fuzz_utf8((const char *) b, n)) {
        return 1;
    }
    for (m = 1; m <= 3; m++) {
        for (c = 0; c < 3; c++) {
            memcpy(tmp, b, n);
            tmp[n] = next[c];
            memset(tmp + n + 1, 0x80, m - 1);
            if (fuzz_utf8((const char *) tmp, n + m)) {
                return 1;
            }
        }
    }
    return 0;
}


static int
fuzz_hex(int c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
           : -1;
}


/* HF's ByteFallback decoder over the whole list, not at the start (what
 * the decoders before and after it make of a token alone being what a
 * push of it to a fresh detokenizer gives); -1 where a run valid for
 * INFER_DETOK_RUN bytes breaks later. */
static int
fuzz_byte_fallback(const infer_tokenizer_t *t, const int32_t *ids,
    size_t n, char *out, size_t *len)
{
    infer_detok_t   d;
    unsigned char   run[4096];
    size_t          i, r = 0, k, cap = infer_tokenizer_max_token_bytes(t) + 8;
    const char     *s;
    int             end;

    *len = 0;
    for (i = 0; i <= n; i++) {
        end = i == n;
        if (!end) {
            if (ids[i] < 0 || ids[i] >= infer_tokenizer_vocab_size(t)
                || infer_tokenizer_is_special(t, ids[i])
                || (s = infer_tokenizer_token_str(t, ids[i])) == NULL)
            {
                continue;       /* skipped: the run goes on */
            }
            if (strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>'
                && fuzz_hex(s[3]) >= 0 && fuzz_hex(s[4]) >= 0)
            {
                FUZZ_CHECK(r < sizeof(run), "run of %zu bytes", r);
                run[r++] = (unsigned char) (16 * fuzz_hex(s[3])
                                            + fuzz_hex(s[4]));
                continue;
            }
        }
        if (r > 0 && fuzz_utf8((const char *) run, r)) {
            memcpy(out + *len, run, r);
            *len += r;
        } else if (r > 0) {
            if (r >= INFER_DETOK_RUN && fuzz_utf8_start(run, INFER_DETOK_RUN))
            {
                return -1;      /* its start is out already, by design */
            }
            for (k = 0; k < r; k++) {
                memcpy(out + *len, "\xef\xbf\xbd", 3);
                *len += 3;
            }
        }
        r = 0;
        if (!end) {
            infer_detok_init(&d, t, 0);
            k = infer_detok_push(&d, ids[i], out + *len, cap);
            *len += k + infer_detok_flush(&d, out + *len + k, cap);
        }
    }
    return 0;
}


static void
fuzz_ids(int k, int norm, const unsigned char *p, size_t len, int at_start)
{
    const infer_tokenizer_t  *t = fuzz_tok[norm * FUZZ_N_TOK + k];
    int32_t                  *ids;
    size_t                    n = len / 3, i, dlen, wlen;
    uint32_t                  v;
    char                     *dec, *want;

    ids = malloc((n + 1) * sizeof(int32_t));
    FUZZ_CHECK(ids != NULL, "out of memory");
    for (i = 0; i < n; i++) {
        v = (uint32_t) p[3 * i] | (uint32_t) p[3 * i + 1] << 8
            | (uint32_t) p[3 * i + 2] << 16;
        ids[i] = (int32_t) (v % (uint32_t) (infer_tokenizer_vocab_size(t)
                                            + 2)) - 1;
    }
    /* special tokens' text kept: whole characters, bounded chunks */
    free(fuzz_detok(t, ids, n, at_start, 1, &dlen));
    dec = fuzz_detok(t, ids, n, at_start, 0, &dlen);
    if (!fuzz_tok_info[k].lossless && !at_start) {
        want = malloc((n + 1) * (infer_tokenizer_max_token_bytes(t) + 8));
        FUZZ_CHECK(want != NULL, "out of memory");
        if (fuzz_byte_fallback(t, ids, n, want, &wlen) == 0) {
            FUZZ_CHECK(dlen == wlen && memcmp(dec, want, wlen) == 0,
                       "tokenizer %d: %zu ids stream to %zu bytes, not the "
                       "%zu of their decode as a whole", k, n, dlen, wlen);
        }
        free(want);
    }
    free(dec);
    free(ids);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int  k, norm;

    if (size == 0) {
        return 0;
    }
    k = data[0] & 3;
    norm = (data[0] & 16) != 0;
    if (data[0] & 4) {
        fuzz_ids(k, norm, data + 1, size - 1, (data[0] & 8) != 0);
    } else {
        fuzz_text(k, norm, (const char *) data + 1, size - 1);
    }
    return 0;
}
