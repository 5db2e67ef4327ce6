/*
 * Tokenizer against Hugging Face `tokenizers`: the ids and decodes in
 * t/data/tokenizer/ come from tools/ref/tokenizer_ids.py, run over the real
 * tokenizer.json files in ../shared.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tap.h"
#include "tokenizer.h"

#define DATA  "t/data/tokenizer"

typedef struct {
    const char  *name;
    const char  *rel;       /* below shared_dir() */
} tok_case_t;

static const tok_case_t  tokenizers[] = {
    { "gpt2", "tokenizers/gpt2" },
    { "llama2", "tokenizers/llama2" },
    { "llama3", "tokenizers/llama3" },
    { "stories260K", "models/stories260K" },
};

#define N_TOK  (sizeof(tokenizers) / sizeof(tokenizers[0]))

static infer_tokenizer_t  *tok[N_TOK];


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


/* Splits a file into lines in place; the last newline ends the last one. */
static int
split_lines(char *p, size_t len, char ***lines)
{
    int     n = 0, cap = 64;
    size_t  i, start = 0;

    *lines = malloc(cap * sizeof(char *));
    for (i = 0; i < len; i++) {
        if (p[i] == '\n') {
            p[i] = '\0';
            if (n == cap) {
                cap *= 2;
                *lines = realloc(*lines, cap * sizeof(char *));
            }
            (*lines)[n++] = p + start;
            start = i + 1;
        }
    }
    return n;
}


/* A \u{HEX} escape at s (1 to 6 hex digits, as tokenizer_ids.py reads
 * them): the code point, and in *len the escape's length; -1 if none. */
static long
codepoint_escape(const char *s, size_t *len)
{
    long    cp = 0;
    size_t  i;
    int     d;

    if (strncmp(s, "\\u{", 3) != 0) {
        return -1;
    }
    for (i = 3; i < 9; i++) {
        d = s[i] >= '0' && s[i] <= '9' ? s[i] - '0'
            : (s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f'
            ? (s[i] | 0x20) - 'a' + 10 : -1;
        if (d < 0) {
            break;
        }
        cp = cp * 16 + d;
    }
    if (i == 3 || s[i] != '}') {
        return -1;
    }
    *len = i + 1;
    return cp;
}


/* The corpus escapes: \n \t \r \s (space) \\ and \u{HEX} (a code point,
 * as UTF-8); in place (no escape is shorter than what it stands for),
 * returns the length (the text may hold NUL bytes). */
static size_t
unescape(char *s)
{
    char    *r = s, *w = s;
    long     cp;
    size_t   n;

    while (*r) {
        if ((cp = codepoint_escape(r, &n)) >= 0) {
            if (cp < 0x80) {
                *w++ = (char) cp;
            } else if (cp < 0x800) {
                *w++ = (char) (0xc0 | cp >> 6);
                *w++ = (char) (0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                *w++ = (char) (0xe0 | cp >> 12);
                *w++ = (char) (0x80 | (cp >> 6 & 0x3f));
                *w++ = (char) (0x80 | (cp & 0x3f));
            } else {
                *w++ = (char) (0xf0 | cp >> 18);
                *w++ = (char) (0x80 | (cp >> 12 & 0x3f));
                *w++ = (char) (0x80 | (cp >> 6 & 0x3f));
                *w++ = (char) (0x80 | (cp & 0x3f));
            }
            r += n;
        } else if (r[0] == '\\' && r[1] != '\0' && strchr("ntrs\\", r[1])) {
            *w++ = r[1] == 'n' ? '\n' : r[1] == 't' ? '\t'
                   : r[1] == 'r' ? '\r' : r[1] == 's' ? ' ' : '\\';
            r += 2;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return w - s;
}


static int
parse_ids(const char *s, int32_t *ids, int max)
{
    int    n = 0;
    char  *end;
    long   v;

    for ( ;; ) {
        v = strtol(s, &end, 10);
        if (end == s || n == max) {
            return n;
        }
        ids[n++] = (int32_t) v;
        s = end;
    }
}


static void
diag_ids(const char *what, const int32_t *ids, int n)
{
    char  line[4096];
    int   i, off = 0;

    for (i = 0; i < n && off < (int) sizeof(line) - 16; i++) {
        off += snprintf(line + off, sizeof(line) - off, " %d", ids[i]);
    }
    diag("%s:%s", what, line);
}


/* Whether s[0, len) is whole UTF-8 characters (no partial one at the end
 * nor anywhere else). */
static int
whole_utf8(const unsigned char *s, size_t len)
{
    size_t  i = 0;
    int     n, k;

    while (i < len) {
        n = s[i] < 0x80 ? 1 : s[i] >= 0xc2 && s[i] <= 0xdf ? 2
            : s[i] >= 0xe0 && s[i] <= 0xef ? 3
            : s[i] >= 0xf0 && s[i] <= 0xf4 ? 4 : 0;
        if (n == 0 || i + n > len) {
            return 0;
        }
        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
        }
        i += n;
    }
    return 1;
}


/* Streams ids through the detokenizer, special tokens kept or not;
 * *chunks_ok tells whether every chunk was whole UTF-8.  Returns the
 * malloc'd concatenation. */
static char *
detok_special(const infer_tokenizer_t *t, const int32_t *ids, int n,
    int at_start, int keep_special, int *chunks_ok, size_t *out_len)
{
    infer_detok_t  d;
    size_t         cap = infer_tokenizer_max_token_bytes(t) + 8, len = 0;
    size_t         k;
    char          *all = malloc((n + 1) * cap + 1), *chunk = malloc(cap);
    int            i;

    *chunks_ok = 1;
    infer_detok_init(&d, t, at_start);
    d.keep_special = keep_special;
    for (i = 0; i <= n; i++) {
        k = i < n ? infer_detok_push(&d, ids[i], chunk, cap)
                  : infer_detok_flush(&d, chunk, cap);
        if (!whole_utf8((unsigned char *) chunk, k)) {
            *chunks_ok = 0;
        }
        memcpy(all + len, chunk, k);
        len += k;
    }
    all[len] = '\0';
    free(chunk);
    *out_len = len;
    return all;
}


static char *
detok_all(const infer_tokenizer_t *t, const int32_t *ids, int n,
    int at_start, int *chunks_ok, size_t *out_len)
{
    return detok_special(t, ids, n, at_start, 0, chunks_ok, out_len);
}


static void
load_all(void)
{
    char      dir[1024], err[512];
    unsigned  i;
    double    t0;

    for (i = 0; i < N_TOK; i++) {
        snprintf(dir, sizeof(dir), "%s/%s", shared_dir(), tokenizers[i].rel);
        t0 = now();
        err[0] = '\0';
        ok(infer_tokenizer_load(dir, &tok[i], err, sizeof(err)) == 0,
           "%s loads", tokenizers[i].name);
        diag("%s: load %.3f s%s%s", tokenizers[i].name, now() - t0,
             err[0] ? ", error: " : "", err);
        if (tok[i] == NULL) {
            printf("Bail out! %s does not load\n", tokenizers[i].name);
            exit(1);
        }
    }
}


static void
test_corpus(const infer_tokenizer_t *t, const char *name)
{
    char                      path[512], *corpus, *ids_txt, *dec_txt;
    char                    **cases, **want_ids, **want_dec, *got_dec;
    size_t                    len = 0, dlen;
    int                       n_cases, n_ids, n_dec, i, n, nw, chunks_ok;
    int32_t                  *got, want[4096];
    int                       id_fail = 0, dec_fail = 0, bound_fail = 0;

    corpus = tap_read_file(DATA "/corpus.txt", &len);
    n_cases = split_lines(corpus, len, &cases);
    snprintf(path, sizeof(path), DATA "/%s.ids", name);
    ids_txt = tap_read_file(path, &len);
    n_ids = split_lines(ids_txt, len, &want_ids);
    snprintf(path, sizeof(path), DATA "/%s.dec", name);
    dec_txt = tap_read_file(path, &len);
    n_dec = split_lines(dec_txt, len, &want_dec);
    is_int(n_ids, n_cases, "%s: one line of expected ids per case", name);
    is_int(n_dec, n_cases, "%s: one expected decode per case", name);

    for (i = 0; i < n_cases && i < n_ids && i < n_dec; i++) {
        len = unescape(cases[i]);
        nw = parse_ids(want_ids[i], want, 4096);
        if (infer_tokenizer_encode(t, cases[i], len, 1, &got, &n) != 0) {
            n = -1;
            got = NULL;
        }
        if (n >= 0 && infer_tokenizer_min_ids(t, len) > (size_t) n) {
            diag("%s: case %d: min_ids %zu, %d ids", name, i + 1,
                 infer_tokenizer_min_ids(t, len), n);
            bound_fail++;
        }
        if (!ok(n == nw && memcmp(got, want, nw * sizeof(int32_t)) == 0,
                "%s: case %d ids match HF", name, i + 1))
        {
            diag("text: %s", cases[i]);
            diag_ids("got     ", got, n);
            diag_ids("expected", want, nw);
            id_fail++;
        }
        free(got);

        /* Decoding HF's ids gives HF's decode, chunk by chunk whole. */
        dlen = unescape(want_dec[i]);
        got_dec = detok_all(t, want, nw, 1, &chunks_ok, &len);
        if (!ok(chunks_ok && len == dlen
                && memcmp(got_dec, want_dec[i], len) == 0,
                "%s: case %d decodes as HF", name, i + 1))
        {
            diag("got      '%s'%s", got_dec,
                 chunks_ok ? "" : " (a chunk split a character)");
            diag("expected '%s'", want_dec[i]);
            dec_fail++;
        }
        free(got_dec);
    }
    is_int(bound_fail, 0, "%s: min_ids is at most the ids of every case",
           name);
    diag("%s: %d cases, %d id mismatches, %d decode mismatches", name,
         n_cases, id_fail, dec_fail);
    free(cases);
    free(want_ids);
    free(want_dec);
    free(corpus);
    free(ids_txt);
    free(dec_txt);
}


/* The tokenizers with reference decodes of chosen ids (tokenizer_ids.py's
 * DETOK): every one of them must have its file. */
static const char  *detok_refs[] = {
    "gpt2", "llama2", "stories260K", "stories260K-bytes"
};


/* DATA/<name>.detok: "ids<TAB>decode" a line, decode as HF's
 * decode(ids, skip_special_tokens=True), and <name>.detok-keep the same
 * ids as decode(ids, skip_special_tokens=False); streamed from the start
 * of the text (at_start), chunk by chunk whole characters. */
static void
test_detok_file(const infer_tokenizer_t *t, const char *name, int keep)
{
    char      path[512], *txt, **lines, *tab, *got;
    size_t    len = 0, glen, wlen;
    int       n, i, nw, chunks_ok, fail = 0, listed = 0;
    int32_t   ids[4096];
    unsigned  k;

    for (k = 0; k < sizeof(detok_refs) / sizeof(detok_refs[0]); k++) {
        listed |= strcmp(detok_refs[k], name) == 0;
    }
    if (!listed) {
        return;
    }
    snprintf(path, sizeof(path), DATA "/%s.detok%s", name,
             keep ? "-keep" : "");
    txt = tap_read_file(path, &len);
    if (!ok(txt != NULL, "%s: %s is readable", name, path)) {
        return;
    }
    n = split_lines(txt, len, &lines);
    for (i = 0; i < n; i++) {
        tab = strchr(lines[i], '\t');
        if (tab == NULL) {
            fail++;
            diag("%s: line %d has no tab", path, i + 1);
            continue;
        }
        *tab = '\0';
        nw = parse_ids(lines[i], ids, 4096);
        wlen = unescape(tab + 1);
        got = detok_special(t, ids, nw, 1, keep, &chunks_ok, &glen);
        if (!chunks_ok || glen != wlen || memcmp(got, tab + 1, wlen) != 0) {
            if (fail++ < 10) {
                diag("%s: ids %s", name, lines[i]);
                diag("got      '%s'%s", got,
                     chunks_ok ? "" : " (a chunk split a character)");
                diag("expected '%s'", tab + 1);
            }
        }
        free(got);
    }
    ok(n >= 100 && fail == 0, "%s: %d decodes of chosen ids as HF's, "
       "special tokens %s (%d differ)", name, n, keep ? "kept" : "skipped",
       fail);
    free(lines);
    free(txt);
}


static void
test_detok_ref(const infer_tokenizer_t *t, const char *name)
{
    test_detok_file(t, name, 0);
    test_detok_file(t, name, 1);
}


/* The variants of tools/ref/tokenizer_ids.py, built the same way: the
 * base tokenizer.json with fields (and model fields) set, vocab entries
 * and added tokens appended, merges as pairs; written to a temporary
 * directory and loaded from there. */
static int
make_variant(json_t *spec, const char *dir, char *err, size_t errlen)
{
    char          path[256];
    const char   *key;
    json_t       *root, *v, *merges, *m, *pair;
    json_error_t  je;
    size_t        i;
    const char   *s, *sp;

    snprintf(path, sizeof(path), "%s/%s/tokenizer.json", shared_dir(),
             json_string_value(json_object_get(spec, "base")));
    root = json_load_file(path, 0, &je);
    if (root == NULL) {
        snprintf(err, errlen, "%s: %s", path, je.text);
        return -1;
    }
    json_object_foreach(json_object_get(spec, "set"), key, v) {
        json_object_set(root, key, v);
    }
    json_object_foreach(json_object_get(spec, "set_model"), key, v) {
        json_object_set(json_object_get(root, "model"), key, v);
    }
    json_object_foreach(json_object_get(spec, "add_vocab"), key, v) {
        json_object_set(json_object_get(json_object_get(root, "model"),
                                        "vocab"), key, v);
    }
    json_array_extend(json_object_get(root, "added_tokens"),
                      json_object_get(spec, "add_tokens"));
    if (json_is_true(json_object_get(spec, "merges_as_pairs"))) {
        merges = json_object_get(json_object_get(root, "model"), "merges");
        json_array_foreach(merges, i, m) {
            s = json_string_value(m);
            sp = strchr(s, ' ');
            pair = json_pack("[s#s]", s, (int) (sp - s), sp + 1);
            json_array_set_new(merges, i, pair);
        }
    }
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    if (json_dump_file(root, path, 0) != 0) {
        snprintf(err, errlen, "%s: cannot write", path);
        json_decref(root);
        return -1;
    }
    json_decref(root);
    return 0;
}


static void
test_variants(void)
{
    char                dir[] = "/tmp/test_tokenizer.XXXXXX", path[1024];
    char                err[1024] = "";
    const char         *name;
    json_t             *variants, *spec;
    json_error_t        je;
    infer_tokenizer_t  *t;

    variants = json_load_file(DATA "/variants.json", 0, &je);
    ok(variants != NULL, "variants.json loads");
    if (variants == NULL || mkdtemp(dir) == NULL) {
        json_decref(variants);
        return;
    }
    json_object_foreach(variants, name, spec) {
        t = NULL;
        if (!ok(make_variant(spec, dir, err, sizeof(err)) == 0
                && infer_tokenizer_load(dir, &t, err, sizeof(err)) == 0,
                "variant %s loads", name))
        {
            diag("%s", err);
            continue;
        }
        if (!json_is_false(json_object_get(spec, "corpus"))) {
            test_corpus(t, name);
        }
        test_detok_ref(t, name);
        infer_tokenizer_free(t);
    }
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
    json_decref(variants);
}


static void
test_stories(void)
{
    static const int32_t  want[] = {
        1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
        317, 426
    };
    const infer_tokenizer_t  *t = tok[3];
    const char  *s = "Once upon a time, there was a little girl named Lily.";
    const char  *u = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 "
                     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82";
    int32_t     *ids;
    int          n, i, bytes = 0, chunks_ok;
    char        *text;
    size_t       len;

    ok(infer_tokenizer_encode(t, s, strlen(s), 1, &ids, &n) == 0,
       "stories260K: README sentence encodes");
    ok(n == 16 && memcmp(ids, want, sizeof(want)) == 0,
       "stories260K: README sentence gives the README's ids");
    text = detok_all(t, ids, n, 1, &chunks_ok, &len);
    is_str(text, s, "stories260K: and decodes back (bos skipped, no "
           "leading space)");
    free(text);
    free(ids);

    is_int(infer_tokenizer_vocab_size(t), 512, "stories260K: vocab 512");
    is_int(infer_tokenizer_bos_id(t), 1, "stories260K: bos <s> = 1");
    is_int(infer_tokenizer_eos_id(t), 2, "stories260K: eos </s> = 2");
    ok(infer_tokenizer_add_bos(t), "stories260K: adds bos");

    /* Non-ASCII text only exists as <0xNN> byte tokens in 512 tokens. */
    ok(infer_tokenizer_encode(t, u, strlen(u), 0, &ids, &n) == 0,
       "stories260K: non-ASCII text encodes");
    for (i = 0; i < n; i++) {
        bytes += ids[i] >= 3 && ids[i] <= 258;
    }
    ok(bytes >= 15, "stories260K: through byte fallback (%d byte tokens)",
       bytes);
    text = detok_all(t, ids, n, 1, &chunks_ok, &len);
    ok(chunks_ok, "stories260K: no chunk ends inside a character");
    is_str(text, u, "stories260K: non-ASCII round-trips");
    free(text);
    free(ids);
}


/* Streaming: characters split across byte tokens come out whole. */
static void
test_streaming(void)
{
    const infer_tokenizer_t  *l2 = tok[1], *g2 = tok[0];
    const char  *s = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82"
                     " \xe2\x98\x85 \xf0\x9f\x91\xa8\xe2\x80\x8d"
                     "\xf0\x9f\x91\xa9";
    infer_detok_t  d;
    char           out[256];
    int32_t       *ids, id;
    int            n, i, split = 0, chunks_ok;
    size_t         k, len, total = 0;
    char          *text;

    /* GPT-2 splits these characters over several byte-level tokens. */
    ok(infer_tokenizer_encode(g2, s, strlen(s), 0, &ids, &n) == 0,
       "gpt2: multi-byte text encodes");
    infer_detok_init(&d, g2, 1);
    for (i = 0; i < n; i++) {
        k = infer_detok_push(&d, ids[i], out, sizeof(out));
        split += k == 0;
        total += k;
        if (!whole_utf8((unsigned char *) out, k)) {
            break;
        }
    }
    ok(i == n, "gpt2: no chunk ends in a partial character");
    ok(split > 0, "gpt2: some tokens held back (%d of %d)", split, n);
    is_int(total, strlen(s), "gpt2: all bytes come out");
    free(ids);

    ok(infer_tokenizer_encode(l2, s, strlen(s), 1, &ids, &n) == 0,
       "llama2: multi-byte text encodes");
    text = detok_all(l2, ids, n, 1, &chunks_ok, &len);
    ok(chunks_ok, "llama2: no chunk ends in a partial character");
    is_str(text, s, "llama2: concatenation is exact");
    free(text);
    free(ids);

    /* An unfinished character is held back, then flushed as U+FFFD. */
    infer_detok_init(&d, l2, 0);
    id = infer_tokenizer_token_id(l2, "<0xE6>");
    ok(id >= 3, "llama2: byte token <0xE6> exists");
    is_int(infer_detok_push(&d, id, out, sizeof(out)), 0,
           "llama2: lead byte alone is held back");
    k = infer_detok_flush(&d, out, sizeof(out));
    out[k] = '\0';
    is_str(out, "\xef\xbf\xbd", "llama2: flush gives U+FFFD");
    is_int(infer_detok_flush(&d, out, sizeof(out)), 0,
           "llama2: second flush gives nothing");

    /* The leading-space strip applies only at the start. */
    id = infer_tokenizer_token_id(l2, "\xe2\x96\x81Once");
    infer_detok_init(&d, l2, 0);
    k = infer_detok_push(&d, id, out, sizeof(out));
    out[k] = '\0';
    is_str(out, " Once", "llama2: mid-stream token keeps its space");
    infer_detok_init(&d, l2, 1);
    k = infer_detok_push(&d, 1, out, sizeof(out));
    is_int(k, 0, "llama2: <s> decodes to nothing");
    k = infer_detok_push(&d, id, out, sizeof(out));
    k += infer_detok_push(&d, id, out + k, sizeof(out) - k);
    out[k] = '\0';
    is_str(out, "Once Once", "llama2: only the first token is stripped");
}


/* Broken characters: U+FFFD where HF's decode puts it (strings from
 * tokenizers' decode of the same ids). */
static void
test_broken(void)
{
    static const int32_t  g_lone[] = { 222 };             /* 0x80 */
    static const int32_t  g_cut[] = { 162, 245, 64 };     /* E6 97 a */
    static const int32_t  g_two[] = { 162, 64, 162 };     /* E6 a E6 */
    static const int32_t  l_cut[] = { 233, 154, 264 };    /* E6 97 _a */
    static const int32_t  l_end[] = { 264, 233, 154 };    /* _a E6 97 */
    char                 *s;
    size_t                len;
    int                   chunks_ok;

#define FFFD  "\xef\xbf\xbd"
    s = detok_all(tok[0], g_lone, 1, 1, &chunks_ok, &len);
    is_str(s, FFFD, "gpt2: lone continuation byte is U+FFFD");
    free(s);
    s = detok_all(tok[0], g_cut, 3, 1, &chunks_ok, &len);
    is_str(s, FFFD "a", "gpt2: cut sequence is one U+FFFD (lossy)");
    free(s);
    s = detok_all(tok[0], g_two, 3, 1, &chunks_ok, &len);
    is_str(s, FFFD "a" FFFD, "gpt2: unfinished at the end, flushed");
    free(s);
    s = detok_all(tok[1], l_cut, 3, 1, &chunks_ok, &len);
    is_str(s, FFFD FFFD " a", "llama2: one U+FFFD per byte (ByteFallback)");
    free(s);
    s = detok_all(tok[1], l_end, 3, 1, &chunks_ok, &len);
    is_str(s, "a" FFFD FFFD, "llama2: flushed at the end, one per byte");
    free(s);
#undef FFFD
}


/* Pushes the byte tokens of data, one by one, after the tokens of pre;
 * returns what came out of all the pushes before the flush, and in
 * *flushed what the flush gave (both malloc'd). */
static char *
push_bytes(const infer_tokenizer_t *t, const char *pre, const char *data,
    size_t len, char **flushed, size_t *max_chunk)
{
    infer_detok_t  d;
    size_t         cap = infer_tokenizer_max_token_bytes(t) + 8, k, n = 0;
    size_t         i;
    char           name[8], *all = malloc(4 * len + 64), *chunk = malloc(cap);

    *max_chunk = 0;
    infer_detok_init(&d, t, 0);
    if (pre != NULL) {
        n = infer_detok_push(&d, infer_tokenizer_token_id(t, pre), all, cap);
    }
    for (i = 0; i < len; i++) {
        snprintf(name, sizeof(name), "<0x%02X>", (unsigned char) data[i]);
        k = infer_detok_push(&d, infer_tokenizer_token_id(t, name), chunk,
                             cap);
        *max_chunk = k > *max_chunk ? k : *max_chunk;
        memcpy(all + n, chunk, k);
        n += k;
    }
    all[n] = '\0';
    k = infer_detok_flush(&d, chunk, cap);
    chunk[k] = '\0';
    *flushed = chunk;
    return all;
}


/* A run of byte tokens is held back while it is valid UTF-8, until it
 * ends or reaches INFER_DETOK_RUN bytes; past that, what came out stays
 * out (HF, which sees the whole run, would make all of it U+FFFD). */
static void
test_runs(void)
{
    const infer_tokenizer_t  *l2 = tok[1];
    const char  *emoji = "\xf0\x9f\x99\x82";
    char         s[64], want[128], *out, *fl;
    size_t       max, i, cap = infer_tokenizer_max_token_bytes(l2) + 8;
    int32_t      ids[40];
    int          chunks_ok;

#define FFFD  "\xef\xbf\xbd"
    out = push_bytes(l2, NULL, "\xe6\x97\xa5", 3, &fl, &max);
    ok(out[0] == '\0' && strcmp(fl, "\xe6\x97\xa5") == 0,
       "llama2: a valid run is held back until it ends ('%s', then '%s')",
       out, fl);
    free(out);
    free(fl);

    out = push_bytes(l2, NULL, "\xe6\x97\xa5\x80x", 5, &fl, &max);
    ok(strcmp(out, FFFD FFFD FFFD FFFD FFFD) == 0 && fl[0] == '\0',
       "llama2: broken, it is U+FFFD at once, to its end");
    free(out);
    free(fl);

    /* 8 emoji are 32 bytes: out when the run is full, not at its end */
    for (i = 0; i < 8; i++) {
        memcpy(s + 4 * i, emoji, 4);
    }
    out = push_bytes(l2, NULL, s, 32, &fl, &max);
    ok(strlen(out) == 32 && memcmp(out, s, 32) == 0 && fl[0] == '\0',
       "llama2: a run of %d valid bytes comes out when full",
       INFER_DETOK_RUN);
    free(out);
    free(fl);

    /* 7 emoji and a cut one, then a bad byte: the run is 31 bytes when it
     * breaks, all U+FFFD as HF has it. */
    memcpy(s + 28, emoji, 3);
    s[31] = '\xff';
    out = push_bytes(l2, NULL, s, 32, &fl, &max);
    for (i = 0, want[0] = '\0'; i < 32; i++) {
        strcat(want, FFFD);
    }
    is_str(out, want, "llama2: broken within %d bytes: all U+FFFD",
           INFER_DETOK_RUN);
    ok(max <= cap, "llama2: 32 U+FFFD fit the promised capacity (%zu of "
       "%zu)", max, cap);
    free(out);
    free(fl);

    /* 9 emoji, then a bad byte: the first 8 are out already; the 9th and
     * the bad byte become U+FFFD (HF: 37 of them). */
    for (i = 0; i < 9; i++) {
        memcpy(s + 4 * i, emoji, 4);
    }
    s[36] = '\x80';
    out = push_bytes(l2, NULL, s, 37, &fl, &max);
    memcpy(want, s, 32);
    strcpy(want + 32, FFFD FFFD FFFD FFFD FFFD);
    is_str(out, want, "llama2: broken past %d bytes: U+FFFD from the "
           "last held bytes on", INFER_DETOK_RUN);
    free(out);
    free(fl);

    /* The Strip decoder takes the start of the text, whichever token
     * gives it: a space byte, but not a U+FFFD. */
    ids[0] = infer_tokenizer_token_id(l2, "<0x20>");
    ids[1] = infer_tokenizer_token_id(l2, "<0x41>");
    out = detok_all(l2, ids, 2, 1, &chunks_ok, &i);
    is_str(out, "A", "llama2: a leading space byte is stripped");
    free(out);
    ids[1] = infer_tokenizer_token_id(l2, "<0xE6>");
    out = detok_all(l2, ids, 2, 1, &chunks_ok, &i);
    is_str(out, FFFD FFFD, "llama2: not when its run is broken");
    free(out);
#undef FFFD
}


static void
test_specials(void)
{
    const infer_tokenizer_t  *g2 = tok[0], *l2 = tok[1], *l3 = tok[2];
    int32_t                  *ids;
    int                       n;

    is_int(infer_tokenizer_vocab_size(g2), 50257, "gpt2: vocab size");
    is_int(infer_tokenizer_vocab_size(l2), 32000, "llama2: vocab size");
    is_int(infer_tokenizer_vocab_size(l3), 128256, "llama3: vocab size");
    is_int(infer_tokenizer_bos_id(g2), 50256, "gpt2: bos");
    is_int(infer_tokenizer_eos_id(g2), 50256, "gpt2: eos");
    ok(!infer_tokenizer_add_bos(g2), "gpt2: adds no bos");
    is_int(infer_tokenizer_bos_id(l3), 128000, "llama3: bos");
    is_int(infer_tokenizer_eos_id(l3), 128001, "llama3: eos");
    /* This tokenizer.json's post_processor is ByteLevel only, so HF adds
     * no <|begin_of_text|>; the chat template writes it. */
    ok(!infer_tokenizer_add_bos(l3), "llama3: adds no bos (as HF here)");
    ok(infer_tokenizer_add_bos(l2), "llama2: adds bos");
    is_int(infer_tokenizer_token_id(l3, "<|eot_id|>"), 128009,
           "llama3: <|eot_id|> id");
    ok(infer_tokenizer_is_special(l3, 128009), "llama3: it is special");
    ok(!infer_tokenizer_is_special(l3, 40), "llama3: 40 is not");
    is_str(infer_tokenizer_token_str(l3, 128006), "<|start_header_id|>",
           "llama3: token_str of an added token");
    is_str(infer_tokenizer_token_str(g2, 40), "I", "gpt2: token_str");
    is_str(infer_tokenizer_token_str(l2, 3), "<0x00>",
           "llama2: token_str keeps the vocab form");
    ok(infer_tokenizer_token_str(g2, 50257) == NULL
       && infer_tokenizer_token_str(g2, -1) == NULL,
       "gpt2: token_str out of range is NULL");
    ok(infer_tokenizer_chat_template(l3) != NULL
       && strstr(infer_tokenizer_chat_template(l3), "<|start_header_id|>"),
       "llama3: chat_template from tokenizer_config.json");
    ok(infer_tokenizer_chat_template(g2) == NULL, "gpt2: no chat_template");
    ok(infer_tokenizer_max_token_bytes(l3) >= 128,
       "llama3: max_token_bytes %zu", infer_tokenizer_max_token_bytes(l3));

    ok(infer_tokenizer_encode(l3, "\xff", 1, 1, &ids, &n) == -1,
       "invalid UTF-8 is refused");
    ok(infer_tokenizer_encode(l3, "x\xe6\x97", 3, 1, &ids, &n) == -1,
       "truncated UTF-8 is refused");
    ok(infer_tokenizer_encode(l2, "", 0, 0, &ids, &n) == 0 && n == 0,
       "empty text, no specials: no ids");
    free(ids);
}


/* Long inputs: one long word and one whitespace run stay fast and work
 * (regex JIT stack, heap-based BPE). */
static void
test_long(void)
{
    size_t   len = 200000, i;
    char    *s = malloc(len);
    int32_t *ids;
    int      n, rc;
    double   t0;
    unsigned k;

    for (k = 0; k < N_TOK; k++) {
        for (i = 0; i < len; i++) {
            s[i] = i % 6 == 5 ? ' ' : (char) ('a' + i * 7919 % 26);
        }
        t0 = now();
        rc = infer_tokenizer_encode(tok[k], s, len, 1, &ids, &n);
        ok(rc == 0 && (size_t) n > len / 20 && (size_t) n <= len + 2,
           "%s: 200 kB of words encodes "
           "(%d ids, %.3f s)", tokenizers[k].name, n, now() - t0);
        free(ids);
        memset(s, ' ', len);
        memcpy(s, "x", 1);
        t0 = now();
        rc = infer_tokenizer_encode(tok[k], s, len, 1, &ids, &n);
        ok(rc == 0 && n > 0 && (size_t) n <= len + 2,
           "%s: 200 kB of spaces encodes (%d ids, "
           "%.3f s)", tokenizers[k].name, n, now() - t0);
        free(ids);
        memset(s, 'a', len);
        t0 = now();
        rc = infer_tokenizer_encode(tok[k], s, len, 1, &ids, &n);
        ok(rc == 0 && n > 0 && (size_t) n <= len + 2,
           "%s: one 200 kB word encodes (%d ids, %.3f s)",
           tokenizers[k].name, n, now() - t0);
        free(ids);
        /* Near-misses of added tokens (Llama-3's all begin "<|"). */
        for (i = 0; i < len; i++) {
            s[i] = "<|<|reserved_special_token_"[i % 27];
        }
        t0 = now();
        rc = infer_tokenizer_encode(tok[k], s, len, 1, &ids, &n);
        ok(rc == 0 && n > 0 && (size_t) n <= len + 2,
           "%s: 200 kB of near added tokens encodes (%d ids, %.3f s)",
           tokenizers[k].name, n, now() - t0);
        free(ids);
    }
    free(s);
}


static void
write_text(const char *path, const char *text)
{
    FILE  *f = fopen(path, "w");

    fputs(text, f);
    fclose(f);
}


static void
expect_error(const char *dir, const char *want1, const char *want2,
    const char *what)
{
    infer_tokenizer_t  *t = NULL;
    char                err[512] = "";
    int                 rc;

    rc = infer_tokenizer_load(dir, &t, err, sizeof(err));
    if (!ok(rc == -1 && t == NULL && strstr(err, want1)
            && strstr(err, want2), "error: %s", what))
    {
        diag("err: %s", err);
    }
    infer_tokenizer_free(t);
}


static void
test_errors(void)
{
    char  dir[] = "/tmp/test_tokenizer.XXXXXX", tj[128], tc[128];

    expect_error("/nonexistent/dir", "/nonexistent/dir/tokenizer.json",
                 "No such file", "missing directory names the file");
    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(tj, sizeof(tj), "%s/tokenizer.json", dir);
    snprintf(tc, sizeof(tc), "%s/tokenizer_config.json", dir);

    write_text(tj, "{ \"model\": { \"type\": \"BPE\", \n \"vocab\": [ }");
    expect_error(dir, tj, "line 2", "malformed JSON names file and line");
    write_text(tj, "[1, 2]");
    expect_error(dir, tj, "not a JSON object", "non-object top level");
    write_text(tj, "{ \"model\": { \"type\": \"WordPiece\", \"vocab\": {} } }");
    expect_error(dir, tj, "model.type: \"WordPiece\"", "unsupported model");
    write_text(tj, "{ \"model\": { \"type\": \"BPE\" } }");
    expect_error(dir, tj, "model.vocab", "missing vocab");
    write_text(tj, "{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0,"
               " \"b\": 1 }, \"merges\": [\"a c\"] },"
               " \"decoder\": { \"type\": \"ByteLevel\" } }");
    expect_error(dir, tj, "model.merges[0]: \"c\"", "merge out of vocab");
    write_text(tj, "{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0,"
               " \"b\": 1, \"ab\": 2 }, \"merges\": [[\"a\", \"b\"]] },"
               " \"pre_tokenizer\": { \"type\": \"Split\", \"pattern\":"
               " { \"Regex\": \"(\" }, \"behavior\": \"Isolated\" },"
               " \"decoder\": { \"type\": \"ByteLevel\" } }");
    expect_error(dir, tj, "regex error", "bad regex");
    write_text(tj, "{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0,"
               " \"b\": 1, \"ab\": 2 }, \"merges\": [[\"a\", \"b\"]] },"
               " \"decoder\": { \"type\": \"ByteLevel\" } }");
    write_text(tc, "{ \"bos_token\": ");
    expect_error(dir, tc, "line", "malformed tokenizer_config.json");
    unlink(tc);
    {
        infer_tokenizer_t  *t;
        char                err[256];
        int32_t            *ids;
        int                 n;

        ok(infer_tokenizer_load(dir, &t, err, sizeof(err)) == 0
           && infer_tokenizer_encode(t, "aab", 3, 1, &ids, &n) == 0
           && n == 2 && ids[0] == 0 && ids[1] == 2,
           "minimal file with [a, b] pair merges: aab -> a ab");
        if (t != NULL) {
            free(ids);
            infer_tokenizer_free(t);
        }
    }
    write_text(tj, "{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0 } },"
               " \"normalizer\": { \"type\": \"Precompiled\","
               " \"precompiled_charsmap\": \"\" },"
               " \"decoder\": { \"type\": \"Fuse\" } }");
    expect_error(dir, tj, ": normalizer: type \"Precompiled\" is not "
                 "supported", "a normalizer not supported, by name");
    unlink(tj);
    rmdir(dir);
}


/* A tokenizer.json written to dir and loaded (NULL on error, with it in
 * the diagnostics). */
static infer_tokenizer_t *
load_text(const char *dir, const char *json)
{
    infer_tokenizer_t  *t = NULL;
    char                path[256], err[512] = "";

    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    write_text(path, json);
    if (infer_tokenizer_load(dir, &t, err, sizeof(err)) != 0) {
        diag("load: %s", err);
    }
    return t;
}


static void
expect_ids(const infer_tokenizer_t *t, const char *text, size_t len,
    const int32_t *want, int nw, const char *what)
{
    int32_t  *got = NULL;
    int       n = -1;

    if (t == NULL || infer_tokenizer_encode(t, text, len, 0, &got, &n) != 0)
    {
        n = -1;
    }
    if (!ok(n == nw && (nw == 0 || memcmp(got, want, nw * 4) == 0), "%s",
            what))
    {
        diag_ids("got     ", got, n);
        diag_ids("expected", want, nw);
    }
    free(got);
}


/*
 * infer_tokenizer_min_ids() is a lower bound: never above the real count,
 * on the corpus and on inputs made to pack many bytes into few ids; and
 * tight enough that a megabyte cannot pass for something that fits
 * stories260K's 512 positions.
 */
static void
test_min_ids(void)
{
    static const char  *shapes[] = { "a", " ", "<|", "\xe4\xb8\x80", "ab " };
    size_t              len = 99996, i, j, least;   /* whole shapes */
    char               *s = malloc(len), *corpus, path[512];
    char                dir[] = "/tmp/test_tokenizer.XXXXXX";
    int32_t            *ids;
    int                 n, bad;
    unsigned            k;
    infer_tokenizer_t  *t;

    snprintf(path, sizeof(path), "%s/corpus.txt", DATA);
    corpus = tap_read_file(path, &j);
    for (k = 0; k < N_TOK; k++) {
        bad = 0;
        for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
            for (j = 0; j < len; j++) {
                s[j] = shapes[i][j % strlen(shapes[i])];
            }
            least = infer_tokenizer_min_ids(tok[k], len);
            if (infer_tokenizer_encode(tok[k], s, len, 0, &ids, &n) != 0
                || least > (size_t) n || least == 0)
            {
                bad++;
                diag("%s: \"%s\" x: bound %zu, %d ids", tokenizers[k].name,
                     shapes[i], least, n);
            }
            free(ids);
        }
        if (corpus != NULL) {
            least = infer_tokenizer_min_ids(tok[k], strlen(corpus));
            if (infer_tokenizer_encode(tok[k], corpus, strlen(corpus), 0,
                                       &ids, &n) != 0
                || least > (size_t) n)
            {
                bad++;
            }
            free(ids);
        }
        is_int(bad, 0, "%s: min_ids is at most the ids of every input",
               tokenizers[k].name);
    }
    free(corpus);
    free(s);

    ok(infer_tokenizer_min_ids(tok[N_TOK - 1], 1 << 20) > 512,
       "stories260K: 1 MB has more than 512 ids by its size alone (%zu)",
       infer_tokenizer_min_ids(tok[N_TOK - 1], 1 << 20));

    /* a Replace to nothing can shrink text without bound */
    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    t = load_text(dir,
                  "{\"model\":{\"vocab\":{\"a\":0,\"<unk>\":1},"
                  "\"unk_token\":\"<unk>\"},\"normalizer\":{\"type\":"
                  "\"Replace\",\"pattern\":{\"String\":\"x\"},"
                  "\"content\":\"\"},\"decoder\":{\"type\":\"Fuse\"}}");
    ok(t != NULL && infer_tokenizer_min_ids(t, 1 << 20) == 0,
       "a Replace to \"\" gives no bound");
    infer_tokenizer_free(t);
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
}


/* The files of ../shared/repro that made encode overflow or loop: each is
 * refused at load, with a message naming the file and the culprit. */
static void
test_repro(void)
{
    static const struct {
        const char  *file;
        const char  *want;
    } cases[] = {
        { "tokenizer-split-backslash-C-unk.json",
          ": pre_tokenizer Split: regex error at offset 2 of \"\\C\": "
          "using \\C is disabled" },
        { "tokenizer-split-backslash-C-fallback.json",
          ": pre_tokenizer Split: regex error at offset 2 of \"\\C\": "
          "using \\C is disabled" },
        { "tokenizer-empty-normalized-added-token.json",
          ": added_tokens[0] \"x\" (id 1): normalizes to an empty string" },
    };
    char     dir[] = "/tmp/test_tokenizer.XXXXXX", path[1024], tj[128];
    char    *json;
    unsigned i;

    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(tj, sizeof(tj), "%s/tokenizer.json", dir);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(path, sizeof(path), "%s/repro/%s", shared_dir(),
                 cases[i].file);
        json = tap_read_file(path, NULL);
        if (!ok(json != NULL, "repro %s is readable", cases[i].file)) {
            continue;
        }
        write_text(tj, json);
        free(json);
        expect_error(dir, tj, cases[i].want, cases[i].file);
    }
    unlink(tj);
    rmdir(dir);
}


/* The vocab's hash before it was keyed: FNV-1a, folded. */
static uint64_t
fixed_hash(const char *s, size_t len)
{
    uint64_t  h = 0xcbf29ce484222325ull;
    size_t    i;

    for (i = 0; i < len; i++) {
        h = (h ^ (unsigned char) s[i]) * 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}


/* A character of len (2 or 3) bytes whose slot under the fixed hash is
 * in the first 1/64 of a table of mask + 1 slots, into out. */
static void
low_slot_char(int len, uint64_t mask, char *out)
{
    unsigned  cp;

    for (cp = len == 2 ? 0x100 : 0x4e00; ; cp++) {
        if (len == 2) {
            out[0] = (char) (0xc0 | cp >> 6);
            out[1] = (char) (0x80 | (cp & 0x3f));
        } else {
            out[0] = (char) (0xe0 | cp >> 12);
            out[1] = (char) (0x80 | (cp >> 6 & 0x3f));
            out[2] = (char) (0x80 | (cp & 0x3f));
        }
        out[len] = '\0';
        if ((fixed_hash(out, len) & mask) <= mask / 64) {
            return;
        }
    }
}


/* DIR/tokenizer.json with n vocab keys: "k<hex>" ones, then the two
 * characters of chars.  With aim, only keys the fixed hash put in the
 * first 1/64 of the table (2n slots), which it probed linearly: one
 * cluster of them all, and the characters at its end. */
static double
write_vocab(const char *dir, long n, uint64_t mask, int aim,
    const char chars[2][4])
{
    char      path[256], key[32];
    FILE     *f;
    long      got = 0;
    uint64_t  c = 0;
    int       len;
    double    t0 = now();

    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    f = fopen(path, "w");
    fputs("{\"model\":{\"type\":\"BPE\",\"vocab\":{", f);
    for (got = 0; got < n - 2; c++) {
        len = snprintf(key, sizeof(key), "k%llx", (unsigned long long) c);
        if (aim && (fixed_hash(key, len) & mask) > mask / 64) {
            continue;
        }
        fprintf(f, "\"%s\":%ld,", key, got++);
    }
    fprintf(f, "\"%s\":%ld,\"%s\":%ld},\"merges\":[]},"
            "\"decoder\":{\"type\":\"Fuse\"}}\n", chars[0], n - 2,
            chars[1], n - 1);
    fclose(f);
    return now() - t0;
}


/* Keys that shared slots under the fixed hash made load (so nginx -t)
 * and encode's lookups quadratic: 128k of them loaded in 10 s, not
 * 0.15 s, and each lookup of a character at the cluster's end walked it
 * all.  Under the keyed hash they are keys like any others. */
static void
test_hash_collisions(void)
{
    char                dir[] = "/tmp/test_tokenizer.XXXXXX", path[256];
    char                err[512] = "", *text, chars[2][4];
    double              t_gen, t_load[2], t_enc[2], t0;
    infer_tokenizer_t  *t;
    int32_t            *ids;
    long                n = 131072;
    uint64_t            mask = 2 * n - 1;   /* the table of n keys */
    size_t              len = 1 << 16, i;
    int                 aim, got, rc[2];

    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    /* two- and three-byte lookups, as the one-byte ones take no hash */
    low_slot_char(2, mask, chars[0]);
    low_slot_char(3, mask, chars[1]);
    text = malloc(len);
    for (i = 0; i + 5 <= len; i += 5) {
        memcpy(text + i, chars[0], 2);
        memcpy(text + i + 2, chars[1], 3);
    }
    len = i;
    for (aim = 0; aim < 2; aim++) {
        t_gen = write_vocab(dir, n, mask, aim, chars);
        t0 = now();
        rc[aim] = infer_tokenizer_load(dir, &t, err, sizeof(err));
        t_load[aim] = now() - t0;
        t0 = now();
        if (rc[aim] == 0) {
            rc[aim] = infer_tokenizer_encode(t, text, len, 0, &ids, &got);
            rc[aim] |= got != (int) (len / 5 * 2) || ids[0] != n - 2;
            free(ids);
            infer_tokenizer_free(t);
        }
        t_enc[aim] = now() - t0;
        diag("%s keys: made in %.3f s, load %.3f s, encode 64 kB %.3f s%s%s",
             aim ? "colliding" : "plain", t_gen, t_load[aim], t_enc[aim],
             err[0] ? ": " : "", err);
    }
    ok(rc[0] == 0 && rc[1] == 0 && t_load[1] < 3 * t_load[0] + 1
       && t_enc[1] < 3 * t_enc[0] + 0.5,
       "128k keys colliding under the fixed hash: load %.3f s (plain "
       "%.3f s), encode %.3f s (plain %.3f s)", t_load[1], t_load[0],
       t_enc[1], t_enc[0]);
    free(text);
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
}


#define GUARD_MODEL                                                         \
    "\"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0, \"b\": 1,"       \
    " \"ab\": 2, \"<unk>\": 3, \"y\": 4 }, \"merges\": [\"a b\"],"          \
    " \"unk_token\": \"<unk>\" }, \"decoder\": { \"type\": \"Fuse\" }"

#define GUARD_SPLIT(re)                                                     \
    "{ " GUARD_MODEL ", \"pre_tokenizer\": { \"type\": \"Split\","           \
    " \"pattern\": { \"Regex\": \"" re "\" }, \"behavior\": \"Isolated\" } }"

/* What a tokenizer.json could make encode do, bounded: every loop moves
 * on, a regex's time is limited, text growth and empty tokens refused. */
static void
test_guards(void)
{
    static const int32_t  a_ab[] = { 0, 2 };
    static const int32_t  literal[] = { 2, 3, 0, 3, 1 };
    static const int32_t  norm_added[] = { 0, 3, 1, 0, 1 };
    static const int32_t  trie[] = { 5, 7, 6, 0 };
    static const int32_t  words[] = { 1, 9, 3, 8, 3, 9, 0 };
    char                  dir[] = "/tmp/test_tokenizer.XXXXXX", tj[128];
    char                 *s;
    infer_tokenizer_t    *t;
    int32_t              *ids, *want;
    int                   n, rc, i;
    double                t0;

    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(tj, sizeof(tj), "%s/tokenizer.json", dir);

    /* A pattern that matches only empty strings splits nothing. */
    t = load_text(dir, GUARD_SPLIT("(?=b)|$"));
    expect_ids(t, "aab", 3, a_ab, 2, "empty regex matches: aab -> a ab");
    infer_tokenizer_free(t);

    /* A literal String pattern (PCRE2 refused it with UCP once): the
     * spaces are pieces of their own, so "a" and "b" do not merge. */
    t = load_text(dir, "{ \"model\": { \"type\": \"BPE\", \"vocab\": {"
                  " \"a\": 0, \"b\": 1, \"ab\": 2, \" \": 3, \"a b\": 4 },"
                  " \"merges\": [[\"a\", \"b\"]] }, \"decoder\": { \"type\":"
                  " \"Fuse\" }, \"pre_tokenizer\": { \"type\": \"Split\","
                  " \"pattern\": { \"String\": \" \" }, \"behavior\":"
                  " \"Isolated\" } }");
    expect_ids(t, "ab a b", 6, literal, 5, "Split on the String \" \"");
    infer_tokenizer_free(t);

    /* Catastrophic backtracking stops at the match limit. */
    t = load_text(dir, GUARD_SPLIT("(a+)+[yb]"));
    s = malloc(1 << 18);
    memset(s, 'a', 40);
    t0 = now();
    rc = t ? infer_tokenizer_encode(t, s, 40, 0, &ids, &n) : 0;
    ok(rc == -1, "(a+)+[yb] on 40 a's: encode error (%.3f s)", now() - t0);
    infer_tokenizer_free(t);

    /* Quadratic in matches (each looks to the end for a short match):
     * stopped by the CPU budget, far from the hours it would take. */
    t = load_text(dir, GUARD_SPLIT("a+y|a"));
    memset(s, 'a', 1 << 18);
    want = malloc(2000 * sizeof(int32_t));
    for (i = 0; i < 2000; i++) {
        want[i] = 0;
    }
    expect_ids(t, s, 2000, want, 2000, "a+y|a on 2000 a's: 2000 a's");
    free(want);
    t0 = now();
    rc = t ? infer_tokenizer_encode(t, s, 1 << 18, 0, &ids, &n) : 0;
    ok(rc == -1 && now() - t0 < 10, "a+y|a on 256 kB of a's: encode error "
       "within the budget (%.3f s)", now() - t0);
    free(s);
    infer_tokenizer_free(t);

    write_text(tj, "{ " GUARD_MODEL ", \"added_tokens\": [ { \"id\": 5,"
               " \"content\": \"\" } ] }");
    expect_error(dir, tj, ": added_tokens[0] (id 5): empty content",
                 "an empty added token is refused");

    /* 7 x 7 x 7 bytes of one 'a' is too many; 7 x 7 is not. */
    write_text(tj, "{ " GUARD_MODEL ", \"normalizer\": { \"type\":"
               " \"Sequence\", \"normalizers\": ["
               " { \"type\": \"Replace\", \"pattern\": { \"String\": \"a\" },"
               " \"content\": \"aaaaaaa\" },"
               " { \"type\": \"Replace\", \"pattern\": { \"String\": \"a\" },"
               " \"content\": \"aaaaaaa\" },"
               " { \"type\": \"Replace\", \"pattern\": { \"String\": \"a\" },"
               " \"content\": \"aaaaaaa\" } ] } }");
    expect_error(dir, tj, ": the normalizer and pre_tokenizer could make "
                 "more than 256 bytes of one input byte (at normalizer 2)",
                 "a normalizer chain growing text 343 times is refused");
    t = load_text(dir, "{ " GUARD_MODEL ", \"normalizer\": { \"type\":"
                  " \"Sequence\", \"normalizers\": ["
                  " { \"type\": \"Replace\", \"pattern\": { \"String\":"
                  " \"a\" }, \"content\": \"aaaaaaa\" },"
                  " { \"type\": \"Replace\", \"pattern\": { \"String\":"
                  " \"a\" }, \"content\": \"aaaaaaa\" } ] } }");
    ok(t != NULL && infer_tokenizer_encode(t, "a", 1, 0, &ids, &n) == 0
       && n == 49, "49 times loads, and 'a' is 49 ids (%d)", t ? n : -1);
    if (t != NULL) {
        free(ids);
    }
    infer_tokenizer_free(t);

    /* NFKC makes at most 11 bytes of one: three in a row could make
     * 1331, two 121. */
    write_text(tj, "{ " GUARD_MODEL ", \"normalizer\": { \"type\":"
               " \"Sequence\", \"normalizers\": [ { \"type\": \"NFKC\" },"
               " { \"type\": \"NFKC\" }, { \"type\": \"NFKC\" } ] } }");
    expect_error(dir, tj, "could make more than 256 bytes of one input "
                 "byte (at normalizer 2)", "NFKC three times is refused");
    t = load_text(dir, "{ " GUARD_MODEL ", \"normalizer\": { \"type\":"
                  " \"Sequence\", \"normalizers\": [ { \"type\":"
                  " \"NFKC\" }, { \"type\": \"NFKC\" } ] } }");
    ok(t != NULL, "NFKC twice loads");
    infer_tokenizer_free(t);

    /* A normalized added token, found in normalized text past a NUL. */
    t = load_text(dir, "{ " GUARD_MODEL ", \"normalizer\": { \"type\":"
                  " \"Replace\", \"pattern\": { \"String\": \"x\" },"
                  " \"content\": \"y\" }, \"added_tokens\": [ { \"id\": 1,"
                  " \"content\": \"x\", \"normalized\": true } ] }");
    expect_ids(t, "a\0xay", 5, norm_added, 5,
               "normalized added token x (as y) after a NUL byte");
    infer_tokenizer_free(t);

    /* Added tokens that share a prefix: the longest at each place, of
     * one length the first that fits single_word. */
    t = load_text(dir, "{ " GUARD_MODEL ", \"added_tokens\": ["
                  " { \"id\": 5, \"content\": \"<|a\" },"
                  " { \"id\": 6, \"content\": \"<|a|>\" },"
                  " { \"id\": 7, \"content\": \"<|ab|>\" },"
                  " { \"id\": 8, \"content\": \"ab\", \"single_word\": true },"
                  " { \"id\": 9, \"content\": \"ab\" } ] }");
    expect_ids(t, "<|a<|ab|><|a|>a", 15, trie, 4,
               "shared prefixes: longest match at each place");
    expect_ids(t, "bab ab aba", 10, words, 7,
               "same content twice: single_word one only between words");
    infer_tokenizer_free(t);

    unlink(tj);
    rmdir(dir);
}


int
main(void)
{
    unsigned  i;
    char      path[1024];

    snprintf(path, sizeof(path), "%s/tokenizers/llama3/tokenizer.json",
             shared_dir());
    if (access(path, R_OK) != 0) {
        skip_all("no ../shared tokenizers");
    }
    load_all();
    test_stories();
    test_specials();
    test_streaming();
    test_broken();
    test_runs();
    for (i = 0; i < N_TOK; i++) {
        test_corpus(tok[i], tokenizers[i].name);
        test_detok_ref(tok[i], tokenizers[i].name);
    }
    test_variants();
    test_long();
    test_min_ids();
    test_errors();
    test_repro();
    test_guards();
    test_hash_collisions();
    for (i = 0; i < N_TOK; i++) {
        infer_tokenizer_free(tok[i]);
    }
    return done_testing();
}
