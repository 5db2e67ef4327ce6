/*
 * Hugging Face tokenizer.json, BPE models only, following the `tokenizers`
 * library step by step so that ids match it exactly:
 *
 *   encode = split on added tokens -> normalize -> pre-tokenize
 *            -> BPE on every pre-token -> post-process (bos/eos)
 *
 * Two families are covered.  SentencePiece-style (Llama-2): a Prepend +
 * Replace normalizer or a Metaspace pre-tokenizer turns spaces into U+2581,
 * characters missing from the vocab fall back to <0xNN> byte tokens.
 * Byte-level (GPT-2, Llama-3, Qwen2): a regex splits the text, then every
 * byte is mapped to a printable code point (GPT-2's bytes_to_unicode) so
 * that BPE never meets an unknown character.  Either may normalize the
 * text first (NFC in Qwen2's files), by utf8proc.
 *
 * Decoding is precomputed per token (the bytes it stands for), so the
 * streaming detokenizer only strips the start of the text and holds back
 * unfinished UTF-8 characters and runs of byte tokens.
 */

#define PCRE2_CODE_UNIT_WIDTH 8

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include <jansson.h>
#include <pcre2.h>
#include <utf8proc.h>

#include "buf.h"
#include "tokenizer.h"

#define INFER_TOK_NONE       UINT32_MAX
#define INFER_TOK_MAX_ID     (1 << 24)
#define INFER_TOK_MAX_FIXES  8

/*
 * What a tokenizer.json's regexes may make encode cost.  One match may
 * take INFER_TOK_MATCH_LIMIT backtracking steps (PCRE2's own default, set
 * here so that no build can raise it), nest INFER_TOK_DEPTH_LIMIT deep and
 * use INFER_TOK_HEAP_LIMIT KiB in the interpreter; the real patterns need
 * about one step a byte of their longest piece, so 10 MB pieces pass.
 * Steps do not count every scan, so a pattern that looks far ahead for
 * short matches ("a+y|a") is quadratic within those limits: all the
 * matches of one text also share a CPU time budget of
 * INFER_TOK_REGEX_BASE_NS plus INFER_TOK_REGEX_BYTE_NS a byte, 1.5 s for
 * 1 MB where the real patterns take under 0.1 s, JIT or not.
 */
#define INFER_TOK_MATCH_LIMIT    10000000
#define INFER_TOK_DEPTH_LIMIT    1000000
#define INFER_TOK_HEAP_LIMIT     65536
#define INFER_TOK_REGEX_BASE_NS  500000000LL
#define INFER_TOK_REGEX_BYTE_NS  1000LL

/*
 * Normalizers and pre-tokenizers may lengthen the text (Replace, Prepend,
 * Metaspace, ByteLevel's byte map); load refuses a chain that could make
 * more than INFER_TOK_MAX_GROWTH bytes of one input byte, so that encode's
 * buffers and ids stay proportional to its input (the real tokenizers
 * grow text at most 12 times by this bound, and make at most one id per
 * input byte).
 */
#define INFER_TOK_MAX_GROWTH     256

/* GPT-2's pre-tokenizer regex, used by ByteLevel when use_regex is set. */
#define INFER_GPT2_PATTERN                                                  \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"     \
    "|\\s+(?!\\S)|\\s+"

typedef enum {
    INFER_NORM_PREPEND,
    INFER_NORM_REPLACE,
    INFER_NORM_UNICODE              /* NFC, NFD, NFKC, NFKD by utf8proc */
} infer_norm_type_e;

typedef struct {
    infer_norm_type_e   type;
    char               *from;       /* Replace: the string replaced */
    size_t              from_len;
    char               *to;         /* Prepend: prefix; Replace: content */
    size_t              to_len;
    int                 form;       /* Unicode: utf8proc_map() options */
    int                 compat;     /* Unicode: NFKC or NFKD */
} infer_norm_t;

typedef enum {
    INFER_PRE_SPLIT,                /* regex; matches and gaps both kept */
    INFER_PRE_BYTE_LEVEL,           /* optional GPT-2 regex, byte mapping */
    INFER_PRE_METASPACE             /* ' ' -> U+2581, split before each */
} infer_pre_type_e;

typedef enum {
    INFER_PREPEND_ALWAYS,
    INFER_PREPEND_FIRST,
    INFER_PREPEND_NEVER
} infer_prepend_e;

typedef struct {
    infer_pre_type_e    type;
    pcre2_code         *re;
    int                 add_prefix_space;
    char                repl[8];
    size_t              repl_len;
    infer_prepend_e     prepend;
    int                 split;
} infer_pre_t;

typedef struct {
    char               *content;
    size_t              len;
    char               *match;      /* content, normalized if flagged */
    size_t              match_len;
    int32_t             id;
    int32_t             next;       /* next one with this match, or -1 */
    unsigned            special:1;
    unsigned            lstrip:1;
    unsigned            rstrip:1;
    unsigned            single_word:1;
    unsigned            normalized:1;
} infer_added_t;

struct infer_tokenizer {
    int                 n_vocab;
    uint64_t            hash_key[2];        /* of every table, per load */

    /* Token strings as stored (NUL-terminated), by id. */
    infer_buf_t         strs;
    uint32_t           *str_off;
    uint32_t           *str_len;

    /* Model vocab: open addressing, slot = id + 1, 0 = empty. */
    uint32_t           *vocab_slots;
    uint32_t            vocab_mask;
    int32_t             one_byte[256];      /* id of each 1-byte string */

    /* Merges: (left id << 32 | right id) -> rank, merged id. */
    uint64_t           *merge_keys;
    uint32_t           *merge_rank;
    int32_t            *merge_new;
    uint32_t            merge_mask;

    int32_t             byte_id[256];
    int32_t             unk_id;
    int                 byte_fallback;
    int                 fuse_unk;
    int                 ignore_merges;

    infer_added_t      *added;
    int                 n_added;
    int                 has_normalized_added;
    unsigned char       added_first[256];   /* first bytes of added tokens */

    /* The added tokens' match strings as a trie, so that finding them
     * costs the length of the match at each position, not the number of
     * tokens (Llama-3's 256 all begin with "<|").  Node 0 is the root of
     * the raw tokens, node 1 of the normalized ones; an edge is an
     * open-addressing entry (node << 8 | byte) + 1 -> child. */
    uint64_t           *trie_keys;
    uint32_t           *trie_child;
    uint32_t            trie_mask;
    int32_t            *trie_term;          /* first token ending here */
    uint32_t            n_trie;
    unsigned char      *special;

    infer_norm_t       *norm;
    int                 n_norm;
    infer_pre_t        *pre;
    int                 n_pre;
    pcre2_match_context *mctx;              /* the limits of every match */
    unsigned            growth;             /* bytes per input byte, max */
    size_t              max_cover;          /* input bytes one id covers at
                                               most; 0: no bound */
    uint16_t            byte_to_cp[256];
    int16_t             cp_to_byte[324];

    /* Decoder. */
    int                 dec_byte_level;
    int                 dec_byte_fallback;
    char               *dec_from;
    size_t              dec_from_len;
    char               *dec_to;
    size_t              dec_to_len;
    int                 dec_strip;          /* leading ' ' to drop */
    int                 dec_metaspace_first;
    infer_buf_t         dec;
    uint32_t           *dec_off;
    size_t              max_token_bytes;

    int32_t             prefix[INFER_TOK_MAX_FIXES];
    int                 n_prefix;
    int32_t             suffix[INFER_TOK_MAX_FIXES];
    int                 n_suffix;
    int                 bos_id;
    int                 eos_id;
    char               *chat_template;
};

typedef struct {
    int32_t             id;
    int32_t             prev;
    int32_t             next;
    int                 alive;
} infer_sym_t;

typedef struct {
    uint32_t            rank;
    int32_t             pos;
    int32_t             new_id;
} infer_pair_t;

typedef struct {
    size_t              off;
    size_t              len;
} infer_span_t;

/* Pre-tokens: byte spans in one buffer. */
typedef struct {
    infer_buf_t         buf;
    infer_span_t       *span;
    size_t              n;
    size_t              cap;
} infer_pieces_t;

typedef struct {
    const infer_tokenizer_t *t;
    pcre2_match_data   *md;
    int32_t            *ids;
    size_t              n_ids;
    size_t              cap_ids;
    infer_buf_t         norm;
    infer_buf_t         tmp;
    infer_buf_t         scratch;
    infer_pieces_t      pa;
    infer_pieces_t      pb;
    infer_sym_t        *sym;
    size_t              cap_sym;
    infer_pair_t       *heap;
    size_t              cap_heap;
    size_t              max_ids;
    long long           regex_deadline;     /* thread CPU time, ns */
    unsigned            n_match;
} infer_enc_t;


static void
tok_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}


static int
grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t   ncap;
    void    *np;

    if (need <= *cap) {
        return 0;
    }
    ncap = *cap ? *cap : 16;
    while (ncap < need) {
        ncap *= 2;
    }
    np = realloc(*p, ncap * size);
    if (np == NULL) {
        return -1;
    }
    *p = np;
    *cap = ncap;
    return 0;
}


static char *
tok_strndup(const char *s, size_t len)
{
    char  *p = malloc(len + 1);

    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}


/* ---- UTF-8 ------------------------------------------------------------- */

/* Length of the character a lead byte starts, 0 if it cannot start one. */
static int
utf8_lead_len(unsigned char b)
{
    if (b < 0x80) {
        return 1;
    }
    if (b >= 0xc2 && b <= 0xdf) {
        return 2;
    }
    if (b >= 0xe0 && b <= 0xef) {
        return 3;
    }
    if (b >= 0xf0 && b <= 0xf4) {
        return 4;
    }
    return 0;
}


/* Whether b may follow lead at position pos (1..3): the second byte's
 * narrower ranges exclude overlong forms, surrogates and > U+10FFFF. */
static int
utf8_cont_ok(unsigned char lead, int pos, unsigned char b)
{
    if (pos == 1) {
        switch (lead) {
        case 0xe0: return b >= 0xa0 && b <= 0xbf;
        case 0xed: return b >= 0x80 && b <= 0x9f;
        case 0xf0: return b >= 0x90 && b <= 0xbf;
        case 0xf4: return b >= 0x80 && b <= 0x8f;
        }
    }
    return b >= 0x80 && b <= 0xbf;
}


static int
utf8_valid(const unsigned char *s, size_t len)
{
    size_t  i;
    int     k, n;

    for (i = 0; i < len; i += n) {
        n = utf8_lead_len(s[i]);
        if (n == 0 || i + n > len) {
            return 0;
        }
        for (k = 1; k < n; k++) {
            if (!utf8_cont_ok(s[i], k, s[i + k])) {
                return 0;
            }
        }
    }
    return 1;
}


/* Encodes a code point below U+0800, as all of the byte map's are. */
static size_t
utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char) cp;
        return 1;
    }
    out[0] = (char) (0xc0 | (cp >> 6));
    out[1] = (char) (0x80 | (cp & 0x3f));
    return 2;
}


/* Decodes one character of valid UTF-8; returns its length. */
static int
utf8_get(const unsigned char *s, uint32_t *cp)
{
    int  n = utf8_lead_len(s[0]), k;

    *cp = n == 1 ? s[0] : s[0] & (0x7f >> n);
    for (k = 1; k < n; k++) {
        *cp = (*cp << 6) | (s[k] & 0x3f);
    }
    return n;
}


static int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
           || c == '\v';
}


static int
is_word_byte(unsigned char c)
{
    return c >= 0x80 || c == '_' || (c >= '0' && c <= '9')
           || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}


/* ---- hash maps --------------------------------------------------------- */

/*
 * SipHash-1-3 (the hash of Rust's HashMap) under a key drawn at each
 * load.  The tables probe linearly, so keys that share a slot make load
 * and lookups quadratic in their number; with a fixed hash a
 * tokenizer.json can be made of such keys: 128k of them (a 2 MB file)
 * took load from 0.15 s to 6-10 s, and a lookup of a key at the end of
 * their cluster walked all of it (64 kB of such characters encoded in
 * 3 s, not 2 ms).  A secret key leaves a file nothing to aim at.
 */
#define SIP_ROTL(x, b)  (((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND(v0, v1, v2, v3)                                           \
    do {                                                                    \
        v0 += v1; v1 = SIP_ROTL(v1, 13); v1 ^= v0; v0 = SIP_ROTL(v0, 32);  \
        v2 += v3; v3 = SIP_ROTL(v3, 16); v3 ^= v2;                          \
        v0 += v3; v3 = SIP_ROTL(v3, 21); v3 ^= v0;                          \
        v2 += v1; v1 = SIP_ROTL(v1, 17); v1 ^= v2; v2 = SIP_ROTL(v2, 32);  \
    } while (0)

static uint64_t
siphash13(const uint64_t key[2], const unsigned char *s, size_t len)
{
    uint64_t  v0 = key[0] ^ 0x736f6d6570736575ull;
    uint64_t  v1 = key[1] ^ 0x646f72616e646f6dull;
    uint64_t  v2 = key[0] ^ 0x6c7967656e657261ull;
    uint64_t  v3 = key[1] ^ 0x7465646279746573ull;
    uint64_t  m;
    size_t    i, k, end = len & ~(size_t) 7;

    for (i = 0; i < end; i += 8) {
        for (m = 0, k = 0; k < 8; k++) {
            m |= (uint64_t) s[i + k] << (8 * k);    /* little-endian */
        }
        v3 ^= m;
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    for (m = (uint64_t) len << 56, k = 0; end + k < len; k++) {
        m |= (uint64_t) s[end + k] << (8 * k);
    }
    v3 ^= m;
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= m;
    v2 ^= 0xff;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}


static uint64_t
hash_bytes(const infer_tokenizer_t *t, const char *s, size_t len)
{
    return siphash13(t->hash_key, (const unsigned char *) s, len);
}


/* Murmur3's 64-bit finalizer: every input bit moves every output bit. */
static uint64_t
mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}


/* An id pair (or trie edge).  Ids follow from the vocab, whose strings
 * the file chooses, and BPE looks pairs up several times a merge:
 * SipHash there made encode twice as slow, two keyed rounds of mix64 do
 * not. */
static uint64_t
hash_pair(const infer_tokenizer_t *t, uint64_t key)
{
    return mix64(mix64(key ^ t->hash_key[0]) ^ t->hash_key[1]);
}


/* A key no file can know: getrandom(), else the clock and addresses (a
 * fallback that still differs between loads and processes). */
static void
hash_seed(infer_tokenizer_t *t)
{
    struct timespec  ts;
    uint64_t         k[2];

    if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t) sizeof(k)) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] = (uint64_t) ts.tv_nsec * 0x9e3779b97f4a7c15ull
               ^ (uint64_t) ts.tv_sec ^ (uint64_t) (uintptr_t) t;
        k[1] = (uint64_t) getpid() << 32 ^ (uint64_t) (uintptr_t) &ts
               ^ (uint64_t) clock();
    }
    t->hash_key[0] = k[0];
    t->hash_key[1] = k[1];
}


static const char *
tok_str(const infer_tokenizer_t *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab || t->str_off[id] == INFER_TOK_NONE) {
        return NULL;
    }
    *len = t->str_len[id];
    return t->strs.p + t->str_off[id];
}


static int32_t
vocab_find(const infer_tokenizer_t *t, const char *s, size_t len)
{
    uint32_t  i, id;

    for (i = hash_bytes(t, s, len) & t->vocab_mask; ;
         i = (i + 1) & t->vocab_mask)
    {
        if (t->vocab_slots[i] == 0) {
            return -1;
        }
        id = t->vocab_slots[i] - 1;
        if (t->str_len[id] == len
            && memcmp(t->strs.p + t->str_off[id], s, len) == 0)
        {
            return (int32_t) id;
        }
    }
}


/* One-byte strings, most of what BPE looks up in ASCII text, from a
 * table: no hash to compute. */
static int32_t
vocab_get(const infer_tokenizer_t *t, const char *s, size_t len)
{
    return len == 1 ? t->one_byte[(unsigned char) s[0]]
                    : vocab_find(t, s, len);
}


/* Returns the merge's index in the table, -1 if the pair never merges. */
static int64_t
merge_get(const infer_tokenizer_t *t, int32_t a, int32_t b)
{
    uint64_t  key = (uint64_t) (uint32_t) a << 32 | (uint32_t) b;
    uint32_t  i;

    if (t->merge_keys == NULL) {
        return -1;
    }
    for (i = hash_pair(t, key) & t->merge_mask; ; i = (i + 1) & t->merge_mask) {
        if (t->merge_keys[i] == key) {
            return i;
        }
        if (t->merge_keys[i] == UINT64_MAX) {
            return -1;
        }
    }
}


static uint32_t
table_size(size_t n)
{
    uint32_t  size = 16;

    while (size < 2 * n) {
        size *= 2;
    }
    return size;
}


/* ---- loading ----------------------------------------------------------- */

/* optional: a missing file is no error; *absent tells. */
static json_t *
load_json(const char *path, int optional, int *absent, size_t flags,
    char *err, size_t errlen)
{
    FILE          *f;
    json_t        *root;
    json_error_t   je;

    f = fopen(path, "rb");
    if (f == NULL) {
        if (optional && errno == ENOENT) {
            *absent = 1;
            return NULL;
        }
        tok_err(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    root = json_loadf(f, flags, &je);
    fclose(f);
    if (root == NULL) {
        tok_err(err, errlen, "%s: line %d column %d: %s", path, je.line,
                je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        tok_err(err, errlen, "%s: top level is not a JSON object", path);
        json_decref(root);
        return NULL;
    }
    return root;
}


static int
set_token_str(infer_tokenizer_t *t, int32_t id, const char *s, size_t len)
{
    t->str_off[id] = (uint32_t) t->strs.len;
    t->str_len[id] = (uint32_t) len;
    /* The terminating NUL is stored so that token_str can return it. */
    if (infer_buf_add(&t->strs, s, len) != 0 || infer_buf_add(&t->strs, "", 1)) {
        return -1;
    }
    return 0;
}


/* Largest id in the model vocab and the added tokens sizes the id tables. */
static int
count_ids(infer_tokenizer_t *t, json_t *vocab, json_t *added,
    const char *path, char *err, size_t errlen)
{
    const char  *key;
    json_t      *v, *a;
    json_int_t   id, max = -1;
    size_t       i;

    json_object_foreach(vocab, key, v) {
        id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= INFER_TOK_MAX_ID) {
            tok_err(err, errlen, "%s: model.vocab[\"%s\"]: id is not an "
                    "integer in [0, %d)", path, key, INFER_TOK_MAX_ID);
            return -1;
        }
        max = id > max ? id : max;
    }
    json_array_foreach(added, i, a) {
        v = json_object_get(a, "id");
        id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= INFER_TOK_MAX_ID
            || !json_is_string(json_object_get(a, "content")))
        {
            tok_err(err, errlen, "%s: added_tokens[%zu]: needs an integer "
                    "id in [0, %d) and a content string", path, i,
                    INFER_TOK_MAX_ID);
            return -1;
        }
        max = id > max ? id : max;
    }
    if (max < 0) {
        tok_err(err, errlen, "%s: model.vocab: empty", path);
        return -1;
    }
    t->n_vocab = (int) max + 1;
    return 0;
}


static int
load_vocab(infer_tokenizer_t *t, json_t *model, json_t *added,
    const char *path, char *err, size_t errlen)
{
    json_t      *vocab = json_object_get(model, "vocab"), *v;
    const char  *key;
    size_t       len;
    uint32_t     i;
    int32_t      id;
    char         c;

    if (!json_is_object(vocab)) {
        tok_err(err, errlen, "%s: model.vocab: missing or not an object",
                path);
        return -1;
    }
    if (count_ids(t, vocab, added, path, err, errlen) != 0) {
        return -1;
    }
    t->str_off = malloc(t->n_vocab * sizeof(uint32_t));
    t->str_len = calloc(t->n_vocab, sizeof(uint32_t));
    t->special = calloc(t->n_vocab, 1);
    t->vocab_mask = table_size(json_object_size(vocab)) - 1;
    t->vocab_slots = calloc((size_t) t->vocab_mask + 1, sizeof(uint32_t));
    if (!t->str_off || !t->str_len || !t->special || !t->vocab_slots) {
        goto nomem;
    }
    memset(t->str_off, 0xff, t->n_vocab * sizeof(uint32_t));

    json_object_foreach(vocab, key, v) {
        id = (int32_t) json_integer_value(v);
        len = strlen(key);
        if (t->str_off[id] != INFER_TOK_NONE) {
            tok_err(err, errlen, "%s: model.vocab: id %d given to both "
                    "\"%s\" and \"%s\"", path, id,
                    t->strs.p + t->str_off[id], key);
            return -1;
        }
        if (set_token_str(t, id, key, len) != 0) {
            goto nomem;
        }
        for (i = hash_bytes(t, key, len) & t->vocab_mask;
             t->vocab_slots[i] != 0;
             i = (i + 1) & t->vocab_mask)
        { /* linear probing */ }
        t->vocab_slots[i] = (uint32_t) id + 1;
    }
    for (i = 0; i < 256; i++) {
        c = (char) i;
        t->one_byte[i] = vocab_find(t, &c, 1);
    }
    return 0;

nomem:
    tok_err(err, errlen, "%s: out of memory", path);
    return -1;
}


static int
load_merges(infer_tokenizer_t *t, json_t *model, const char *path,
    char *err, size_t errlen)
{
    json_t       *merges = json_object_get(model, "merges"), *m;
    const char   *a, *b, *sp;
    size_t        i, alen, blen, n;
    int32_t       ida, idb, idn;
    uint64_t      key;
    uint32_t      k;
    infer_buf_t   cat = { 0 };
    char         *one = NULL;
    int           rc = -1;

    if (merges == NULL || json_is_null(merges)) {
        return 0;
    }
    if (!json_is_array(merges)) {
        tok_err(err, errlen, "%s: model.merges: not an array", path);
        return -1;
    }
    n = json_array_size(merges);
    t->merge_mask = table_size(n) - 1;
    t->merge_keys = malloc(((size_t) t->merge_mask + 1) * sizeof(uint64_t));
    t->merge_rank = malloc(((size_t) t->merge_mask + 1) * sizeof(uint32_t));
    t->merge_new = malloc(((size_t) t->merge_mask + 1) * sizeof(int32_t));
    if (!t->merge_keys || !t->merge_rank || !t->merge_new) {
        tok_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    memset(t->merge_keys, 0xff,
           ((size_t) t->merge_mask + 1) * sizeof(uint64_t));

    json_array_foreach(merges, i, m) {
        /* "a b" (one space, as HF requires) or ["a", "b"]. */
        if (json_is_string(m)) {
            a = json_string_value(m);
            sp = strchr(a, ' ');
            if (sp == NULL || strchr(sp + 1, ' ') != NULL) {
                tok_err(err, errlen, "%s: model.merges[%zu]: \"%s\" is not "
                        "two tokens separated by one space", path, i, a);
                goto done;
            }
            alen = sp - a;
            b = sp + 1;
        } else if (json_is_array(m) && json_array_size(m) == 2
                   && json_is_string(json_array_get(m, 0))
                   && json_is_string(json_array_get(m, 1)))
        {
            a = json_string_value(json_array_get(m, 0));
            alen = strlen(a);
            b = json_string_value(json_array_get(m, 1));
        } else {
            tok_err(err, errlen, "%s: model.merges[%zu]: neither \"a b\" "
                    "nor [\"a\", \"b\"]", path, i);
            goto done;
        }
        blen = strlen(b);
        cat.len = 0;
        if (infer_buf_add(&cat, a, alen) != 0 || infer_buf_add(&cat, b, blen)) {
            tok_err(err, errlen, "%s: out of memory", path);
            goto done;
        }
        ida = vocab_get(t, a, alen);
        idb = vocab_get(t, b, blen);
        idn = vocab_get(t, cat.p, cat.len);
        if (ida < 0 || idb < 0 || idn < 0) {
            free(one);
            one = tok_strndup(ida < 0 ? a : idb < 0 ? b : cat.p,
                              ida < 0 ? alen : idb < 0 ? blen : cat.len);
            tok_err(err, errlen, "%s: model.merges[%zu]: \"%s\" is not in "
                    "model.vocab", path, i, one ? one : "?");
            goto done;
        }
        key = (uint64_t) (uint32_t) ida << 32 | (uint32_t) idb;
        for (k = hash_pair(t, key) & t->merge_mask;
             t->merge_keys[k] != UINT64_MAX && t->merge_keys[k] != key;
             k = (k + 1) & t->merge_mask)
        { /* linear probing */ }
        /* A repeated pair keeps its last rank, like HF's HashMap. */
        t->merge_keys[k] = key;
        t->merge_rank[k] = (uint32_t) i;
        t->merge_new[k] = idn;
    }
    rc = 0;

done:
    free(one);
    free(cat.p);
    return rc;
}


static int
get_bool(json_t *obj, const char *name, int dflt)
{
    json_t  *v = json_object_get(obj, name);

    return json_is_boolean(v) ? json_is_true(v) : dflt;
}


static const char *
get_type(json_t *obj)
{
    const char  *type = json_string_value(json_object_get(obj, "type"));

    return type ? type : "(none)";
}


static int
load_model(infer_tokenizer_t *t, json_t *root, const char *path,
    char *err, size_t errlen)
{
    json_t      *model = json_object_get(root, "model"), *v;
    const char  *type;
    char         name[8];
    int          b;

    if (!json_is_object(model)) {
        tok_err(err, errlen, "%s: model: missing or not an object", path);
        return -1;
    }
    type = json_string_value(json_object_get(model, "type"));
    if (type != NULL && strcmp(type, "BPE") != 0) {
        tok_err(err, errlen, "%s: model.type: \"%s\" is not supported "
                "(only BPE)", path, type);
        return -1;
    }
    v = json_object_get(root, "added_tokens");
    if (v != NULL && !json_is_null(v) && !json_is_array(v)) {
        tok_err(err, errlen, "%s: added_tokens: not an array", path);
        return -1;
    }
    if (load_vocab(t, model, v, path, err, errlen) != 0
        || load_merges(t, model, path, err, errlen) != 0)
    {
        return -1;
    }
    v = json_object_get(model, "continuing_subword_prefix");
    if (json_is_string(v) && json_string_length(v) > 0) {
        tok_err(err, errlen, "%s: model.continuing_subword_prefix: not "
                "supported", path);
        return -1;
    }
    v = json_object_get(model, "end_of_word_suffix");
    if (json_is_string(v) && json_string_length(v) > 0) {
        tok_err(err, errlen, "%s: model.end_of_word_suffix: not supported",
                path);
        return -1;
    }

    t->byte_fallback = get_bool(model, "byte_fallback", 0);
    t->fuse_unk = get_bool(model, "fuse_unk", 0);
    t->ignore_merges = get_bool(model, "ignore_merges", 0);
    v = json_object_get(model, "unk_token");
    t->unk_id = -1;
    if (json_is_string(v)) {
        t->unk_id = vocab_get(t, json_string_value(v), json_string_length(v));
        if (t->unk_id < 0) {
            tok_err(err, errlen, "%s: model.unk_token: \"%s\" is not in "
                    "model.vocab", path, json_string_value(v));
            return -1;
        }
    }
    for (b = 0; b < 256; b++) {
        snprintf(name, sizeof(name), "<0x%02X>", b);
        t->byte_id[b] = vocab_get(t, name, 6);
    }
    return 0;
}


static int
add_norm(infer_tokenizer_t *t, infer_norm_type_e type, const char *from,
    size_t from_len, const char *to, size_t to_len)
{
    infer_norm_t  *n, *nn;

    nn = realloc(t->norm, (t->n_norm + 1) * sizeof(infer_norm_t));
    if (nn == NULL) {
        return -1;
    }
    t->norm = nn;
    n = &t->norm[t->n_norm];
    memset(n, 0, sizeof(*n));
    n->type = type;
    n->from = from ? tok_strndup(from, from_len) : NULL;
    n->from_len = from_len;
    n->to = tok_strndup(to, to_len);
    if ((from && n->from == NULL) || n->to == NULL) {
        free(n->from);
        free(n->to);
        return -1;
    }
    n->to_len = to_len;
    t->n_norm++;
    return 0;
}


static int
load_normalizer(infer_tokenizer_t *t, json_t *n, const char *path,
    char *err, size_t errlen)
{
    const char    *type = get_type(n);
    json_t        *v, *pat, *from, *to;
    size_t         i;
    infer_norm_t  *nn;

    if (n == NULL || json_is_null(n)) {
        return 0;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_array_foreach(json_object_get(n, "normalizers"), i, v) {
            if (load_normalizer(t, v, path, err, errlen) != 0) {
                return -1;
            }
        }
        return 0;
    }
    if (strcmp(type, "NFC") == 0 || strcmp(type, "NFD") == 0
        || strcmp(type, "NFKC") == 0 || strcmp(type, "NFKD") == 0)
    {
        /* The options of utf8proc_NFC() and its kin, less NULLTERM: text
         * may hold NUL bytes. */
        if (add_norm(t, INFER_NORM_UNICODE, NULL, 0, "", 0) != 0) {
            goto nomem;
        }
        nn = &t->norm[t->n_norm - 1];
        nn->compat = type[2] == 'K';
        nn->form = UTF8PROC_STABLE
                   | (type[strlen(type) - 1] == 'C' ? UTF8PROC_COMPOSE
                                                    : UTF8PROC_DECOMPOSE)
                   | (nn->compat ? UTF8PROC_COMPAT : 0);
        return 0;
    }
    if (strcmp(type, "Prepend") == 0) {
        to = json_object_get(n, "prepend");
        if (!json_is_string(to)) {
            tok_err(err, errlen, "%s: normalizer Prepend: no prepend "
                    "string", path);
            return -1;
        }
        if (add_norm(t, INFER_NORM_PREPEND, NULL, 0, json_string_value(to),
                     json_string_length(to)) != 0)
        {
            goto nomem;
        }
        return 0;
    }
    if (strcmp(type, "Replace") == 0) {
        pat = json_object_get(n, "pattern");
        from = json_object_get(pat, "String");
        to = json_object_get(n, "content");
        if (!json_is_string(from) || json_string_length(from) == 0
            || !json_is_string(to))
        {
            tok_err(err, errlen, "%s: normalizer Replace: only a non-empty "
                    "pattern.String and a content string are supported",
                    path);
            return -1;
        }
        if (add_norm(t, INFER_NORM_REPLACE, json_string_value(from),
                     json_string_length(from), json_string_value(to),
                     json_string_length(to)) != 0)
        {
            goto nomem;
        }
        return 0;
    }
    tok_err(err, errlen, "%s: normalizer: type \"%s\" is not supported",
            path, type);
    return -1;

nomem:
    tok_err(err, errlen, "%s: out of memory", path);
    return -1;
}


static pcre2_code *
compile_regex(const char *pattern, size_t len, uint32_t flags,
    const char *path, const char *where, char *err, size_t errlen)
{
    pcre2_code   *re;
    int           code;
    size_t        show;
    PCRE2_SIZE    off;
    PCRE2_UCHAR   msg[256];

    if (len == PCRE2_ZERO_TERMINATED) {
        len = strlen(pattern);
    }
    /* \C matches one byte even inside a character, so pieces would start
     * mid-character; without it every match of valid UTF-8 (all encode
     * ever matches) is whole characters.  MATCH_INVALID_UTF would be a
     * second guard, but makes the interpreter quadratic on long runs.
     * PCRE2 refuses both UCP and NEVER_BACKSLASH_C with LITERAL, where
     * they mean nothing. */
    if (!(flags & PCRE2_LITERAL)) {
        flags |= PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C;
    }
    re = pcre2_compile((PCRE2_SPTR) pattern, len, PCRE2_UTF | flags, &code,
                       &off, NULL);
    if (re == NULL) {
        pcre2_get_error_message(code, msg, sizeof(msg));
        show = len;
        if (show > 80) {
            /* Cut long patterns on a character boundary. */
            for (show = 77; show > 0
                 && ((unsigned char) pattern[show] & 0xc0) == 0x80; show--)
            { /* back to a lead byte */ }
        }
        tok_err(err, errlen, "%s: %s: regex error at offset %zu of "
                "\"%.*s%s\": %s", path, where, (size_t) off, (int) show,
                pattern, show < len ? "..." : "", (char *) msg);
        return NULL;
    }
    /* Without JIT (not built in) the interpreter gives the same matches. */
    (void) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}


static infer_pre_t *
add_pre(infer_tokenizer_t *t, infer_pre_type_e type)
{
    infer_pre_t  *np;

    np = realloc(t->pre, (t->n_pre + 1) * sizeof(infer_pre_t));
    if (np == NULL) {
        return NULL;
    }
    t->pre = np;
    np = &t->pre[t->n_pre++];
    memset(np, 0, sizeof(*np));
    np->type = type;
    return np;
}


static int
load_split(infer_tokenizer_t *t, json_t *p, const char *path, char *err,
    size_t errlen)
{
    json_t       *pat = json_object_get(p, "pattern"), *re, *str;
    const char   *behavior = json_string_value(json_object_get(p,
                                                               "behavior"));
    infer_pre_t  *pre;

    re = json_object_get(pat, "Regex");
    str = json_object_get(pat, "String");
    if (!json_is_string(re) && !json_is_string(str)) {
        tok_err(err, errlen, "%s: pre_tokenizer Split: pattern needs a "
                "Regex or String", path);
        return -1;
    }
    if (behavior == NULL || strcmp(behavior, "Isolated") != 0
        || get_bool(p, "invert", 0))
    {
        tok_err(err, errlen, "%s: pre_tokenizer Split: only behavior "
                "\"Isolated\" without invert is supported", path);
        return -1;
    }
    pre = add_pre(t, INFER_PRE_SPLIT);
    if (pre == NULL) {
        tok_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    pre->re = json_is_string(re)
              ? compile_regex(json_string_value(re), json_string_length(re),
                              0, path, "pre_tokenizer Split", err, errlen)
              : compile_regex(json_string_value(str),
                              json_string_length(str), PCRE2_LITERAL, path,
                              "pre_tokenizer Split", err, errlen);
    return pre->re ? 0 : -1;
}


static int
load_metaspace(infer_pre_t *pre, json_t *p, const char *path, char *err,
    size_t errlen)
{
    json_t      *repl = json_object_get(p, "replacement");
    const char  *scheme;

    if (repl == NULL) {
        memcpy(pre->repl, "\xe2\x96\x81", 3);
        pre->repl_len = 3;
    } else if (json_is_string(repl) && json_string_length(repl) > 0
               && json_string_length(repl) < sizeof(pre->repl))
    {
        memcpy(pre->repl, json_string_value(repl), json_string_length(repl));
        pre->repl_len = json_string_length(repl);
    } else {
        tok_err(err, errlen, "%s: Metaspace: bad replacement", path);
        return -1;
    }
    scheme = json_string_value(json_object_get(p, "prepend_scheme"));
    if (scheme == NULL) {
        pre->prepend = get_bool(p, "add_prefix_space", 1)
                       ? INFER_PREPEND_ALWAYS : INFER_PREPEND_NEVER;
    } else if (strcmp(scheme, "always") == 0) {
        pre->prepend = INFER_PREPEND_ALWAYS;
    } else if (strcmp(scheme, "first") == 0) {
        pre->prepend = INFER_PREPEND_FIRST;
    } else if (strcmp(scheme, "never") == 0) {
        pre->prepend = INFER_PREPEND_NEVER;
    } else {
        tok_err(err, errlen, "%s: Metaspace: prepend_scheme \"%s\" unknown",
                path, scheme);
        return -1;
    }
    pre->split = get_bool(p, "split", 1);
    return 0;
}


static int
load_pre_tokenizer(infer_tokenizer_t *t, json_t *p, const char *path,
    char *err, size_t errlen)
{
    const char   *type = get_type(p);
    json_t       *v;
    size_t        i;
    infer_pre_t  *pre;

    if (p == NULL || json_is_null(p)) {
        return 0;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_array_foreach(json_object_get(p, "pretokenizers"), i, v) {
            if (load_pre_tokenizer(t, v, path, err, errlen) != 0) {
                return -1;
            }
        }
        return 0;
    }
    if (strcmp(type, "Split") == 0) {
        return load_split(t, p, path, err, errlen);
    }
    if (strcmp(type, "ByteLevel") == 0 || strcmp(type, "Metaspace") == 0) {
        pre = add_pre(t, type[0] == 'B' ? INFER_PRE_BYTE_LEVEL
                                        : INFER_PRE_METASPACE);
        if (pre == NULL) {
            tok_err(err, errlen, "%s: out of memory", path);
            return -1;
        }
        if (pre->type == INFER_PRE_METASPACE) {
            return load_metaspace(pre, p, path, err, errlen);
        }
        pre->add_prefix_space = get_bool(p, "add_prefix_space", 0);
        if (get_bool(p, "use_regex", 1)) {
            pre->re = compile_regex(INFER_GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                                    0, path, "pre_tokenizer ByteLevel", err,
                                    errlen);
            if (pre->re == NULL) {
                return -1;
            }
        }
        return 0;
    }
    tok_err(err, errlen, "%s: pre_tokenizer: type \"%s\" is not supported",
            path, type);
    return -1;
}


static int
set_dec_replace(infer_tokenizer_t *t, const char *from, size_t from_len,
    const char *to, size_t to_len)
{
    free(t->dec_from);
    free(t->dec_to);
    t->dec_from = tok_strndup(from, from_len);
    t->dec_to = tok_strndup(to, to_len);
    t->dec_from_len = from_len;
    t->dec_to_len = to_len;
    return t->dec_from && t->dec_to ? 0 : -1;
}


static int
load_decoder(infer_tokenizer_t *t, json_t *d, const char *path,
    char *err, size_t errlen)
{
    const char   *type = get_type(d);
    json_t       *v, *from, *to;
    size_t        i;
    infer_pre_t   ms;

    if (d == NULL || json_is_null(d)) {
        tok_err(err, errlen, "%s: decoder: missing", path);
        return -1;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_array_foreach(json_object_get(d, "decoders"), i, v) {
            if (load_decoder(t, v, path, err, errlen) != 0) {
                return -1;
            }
        }
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        t->dec_byte_level = 1;
        return 0;
    }
    if (strcmp(type, "ByteFallback") == 0) {
        t->dec_byte_fallback = 1;
        return 0;
    }
    if (strcmp(type, "Fuse") == 0) {
        return 0;
    }
    if (strcmp(type, "Replace") == 0) {
        from = json_object_get(json_object_get(d, "pattern"), "String");
        to = json_object_get(d, "content");
        if (!json_is_string(from) || json_string_length(from) == 0
            || !json_is_string(to))
        {
            tok_err(err, errlen, "%s: decoder Replace: only a non-empty "
                    "pattern.String and a content string are supported",
                    path);
            return -1;
        }
        if (set_dec_replace(t, json_string_value(from),
                            json_string_length(from), json_string_value(to),
                            json_string_length(to)) != 0)
        {
            goto nomem;
        }
        return 0;
    }
    if (strcmp(type, "Strip") == 0) {
        v = json_object_get(d, "content");
        if (!json_is_string(v) || strcmp(json_string_value(v), " ") != 0
            || !json_is_integer(json_object_get(d, "start"))
            || json_integer_value(json_object_get(d, "stop")) != 0)
        {
            tok_err(err, errlen, "%s: decoder Strip: only content \" \" "
                    "with stop 0 is supported", path);
            return -1;
        }
        t->dec_strip = (int) json_integer_value(json_object_get(d, "start"));
        return 0;
    }
    if (strcmp(type, "Metaspace") == 0) {
        memset(&ms, 0, sizeof(ms));
        if (load_metaspace(&ms, d, path, err, errlen) != 0) {
            return -1;
        }
        t->dec_metaspace_first = ms.prepend != INFER_PREPEND_NEVER;
        if (set_dec_replace(t, ms.repl, ms.repl_len, " ", 1) != 0) {
            goto nomem;
        }
        return 0;
    }
    tok_err(err, errlen, "%s: decoder: type \"%s\" is not supported", path,
            type);
    return -1;

nomem:
    tok_err(err, errlen, "%s: out of memory", path);
    return -1;
}


/*
 * NFC and its kin by utf8proc.  HF's tables are Unicode 9.0's, utf8proc's
 * (2.8) Unicode 15.0's: the two differ on 243 code points assigned since,
 * new combining marks and compositions of recent scripts (measured over
 * every code point alone and between marks), where HF leaves the text as
 * it is; everywhere else they agree.  cur is valid UTF-8 (encode checks
 * its input, and every stage keeps it so), which utf8proc checks again.
 */
static int
normalize_unicode(const infer_norm_t *n, const infer_buf_t *cur,
    infer_buf_t *out)
{
    utf8proc_uint8_t  *d = NULL;
    utf8proc_ssize_t   len;
    int                rc;

    len = utf8proc_map((const utf8proc_uint8_t *) cur->p,
                       (utf8proc_ssize_t) cur->len, &d,
                       (utf8proc_option_t) n->form);
    rc = len >= 0 ? infer_buf_add(out, d, (size_t) len) : -1;
    free(d);
    return rc;
}


/* Runs the normalizer over s into out; tmp is scratch. */
static int
normalize(const infer_tokenizer_t *t, const char *s, size_t len,
    infer_buf_t *out, infer_buf_t *tmp)
{
    infer_buf_t         *cur = out, *oth = tmp, *sw, keep;
    const infer_norm_t  *n;
    const char          *p, *end, *q;
    int                  i;

    out->len = 0;
    if (infer_buf_add(out, s, len) != 0) {
        return -1;
    }
    for (i = 0; i < t->n_norm; i++) {
        n = &t->norm[i];
        oth->len = 0;
        if (n->type == INFER_NORM_PREPEND) {
            if (cur->len == 0) {
                continue;
            }
            if (infer_buf_add(oth, n->to, n->to_len) != 0
                || infer_buf_add(oth, cur->p, cur->len) != 0)
            {
                return -1;
            }
        } else if (n->type == INFER_NORM_UNICODE) {
            if (cur->len == 0) {
                continue;
            }
            if (normalize_unicode(n, cur, oth) != 0) {
                return -1;
            }
        } else {
            p = cur->p;
            end = cur->p + cur->len;
            while ((q = memmem(p, end - p, n->from, n->from_len)) != NULL) {
                if (infer_buf_add(oth, p, q - p) != 0
                    || infer_buf_add(oth, n->to, n->to_len) != 0)
                {
                    return -1;
                }
                p = q + n->from_len;
            }
            if (infer_buf_add(oth, p, end - p) != 0) {
                return -1;
            }
        }
        sw = cur;
        cur = oth;
        oth = sw;
    }
    if (cur != out) {
        keep = *out;
        *out = *tmp;
        *tmp = keep;
    }
    return 0;
}


static int64_t
trie_get(const infer_tokenizer_t *t, uint32_t node, unsigned char b)
{
    uint64_t  key = ((uint64_t) node << 8 | b) + 1;
    uint32_t  i;

    for (i = hash_pair(t, key) & t->trie_mask; ; i = (i + 1) & t->trie_mask) {
        if (t->trie_keys[i] == key) {
            return t->trie_child[i];
        }
        if (t->trie_keys[i] == 0) {
            return -1;
        }
    }
}


/* Tokens with the same match string are chained in file order: the first
 * that fits (single_word) wins, as in a scan of the list. */
static int
build_trie(infer_tokenizer_t *t)
{
    size_t          total = 0, size;
    uint32_t        node, k;
    uint64_t        key;
    int64_t         child;
    int32_t        *last;
    int             i;
    size_t          j;
    infer_added_t  *a;

    for (i = 0; i < t->n_added; i++) {
        total += t->added[i].match_len;
    }
    size = table_size(total + 1);
    t->trie_mask = (uint32_t) size - 1;
    t->trie_keys = calloc(size, sizeof(uint64_t));
    t->trie_child = malloc(size * sizeof(uint32_t));
    t->trie_term = malloc((total + 2) * sizeof(int32_t));
    last = malloc((total + 2) * sizeof(int32_t));
    if (!t->trie_keys || !t->trie_child || !t->trie_term || !last) {
        free(last);
        return -1;
    }
    t->trie_term[0] = t->trie_term[1] = -1;
    t->n_trie = 2;
    for (i = 0; i < t->n_added; i++) {
        a = &t->added[i];
        node = a->normalized;
        for (j = 0; j < a->match_len; j++) {
            child = trie_get(t, node, (unsigned char) a->match[j]);
            if (child < 0) {
                key = ((uint64_t) node << 8 | (unsigned char) a->match[j])
                      + 1;
                for (k = hash_pair(t, key) & t->trie_mask; t->trie_keys[k];
                     k = (k + 1) & t->trie_mask)
                { /* linear probing */ }
                t->trie_keys[k] = key;
                t->trie_child[k] = t->n_trie;
                t->trie_term[t->n_trie] = -1;
                child = t->n_trie++;
            }
            node = (uint32_t) child;
        }
        a->next = -1;
        if (t->trie_term[node] < 0) {
            t->trie_term[node] = i;
        } else {
            t->added[last[node]].next = i;
        }
        last[node] = i;
    }
    free(last);
    return 0;
}


/* Added tokens are matched before the model sees the text; "normalized"
 * ones are matched in normalized text, as their normalized content. */
static int
load_added(infer_tokenizer_t *t, json_t *root, const char *path,
    char *err, size_t errlen)
{
    json_t         *added = json_object_get(root, "added_tokens"), *a, *c;
    size_t          i;
    infer_added_t  *at;
    infer_buf_t     nb = { 0 }, tmp = { 0 };
    int32_t         id;

    t->added = calloc(json_array_size(added) + 1, sizeof(infer_added_t));
    if (t->added == NULL) {
        goto nomem;
    }
    json_array_foreach(added, i, a) {
        id = (int32_t) json_integer_value(json_object_get(a, "id"));
        c = json_object_get(a, "content");
        at = &t->added[t->n_added];
        at->id = id;
        at->special = get_bool(a, "special", 0);
        at->lstrip = get_bool(a, "lstrip", 0);
        at->rstrip = get_bool(a, "rstrip", 0);
        at->single_word = get_bool(a, "single_word", 0);
        at->normalized = get_bool(a, "normalized", !at->special)
                         && t->n_norm > 0;
        t->special[id] = at->special;
        if (json_string_length(c) == 0) {
            /* It would match everywhere without consuming anything. */
            tok_err(err, errlen, "%s: added_tokens[%zu] (id %d): empty "
                    "content", path, i, id);
            goto failed;
        }
        at->content = tok_strndup(json_string_value(c),
                                  json_string_length(c));
        at->len = json_string_length(c);
        if (at->content == NULL) {
            goto nomem;
        }
        if (at->normalized) {
            if (normalize(t, at->content, at->len, &nb, &tmp) != 0) {
                goto nomem;
            }
            if (nb.len == 0) {
                /* Matched in normalized text, it would match everywhere
                 * (encode would never get past it). */
                tok_err(err, errlen, "%s: added_tokens[%zu] \"%s\" (id %d): "
                        "normalizes to an empty string, which matches "
                        "everywhere", path, i, at->content, id);
                goto failed;
            }
            at->match = tok_strndup(nb.p, nb.len);
            at->match_len = nb.len;
            t->has_normalized_added = 1;
        } else {
            at->match = tok_strndup(at->content, at->len);
            at->match_len = at->len;
        }
        /* HF's id_to_token (and so its decode) gives the normalized form;
         * token_to_id still takes the content as written. */
        if (at->match == NULL
            || (t->str_off[id] == INFER_TOK_NONE
                && set_token_str(t, id, at->match, at->match_len) != 0))
        {
            goto nomem;
        }
        t->added_first[(unsigned char) at->match[0]] = 1;
        t->n_added++;
    }
    free(nb.p);
    free(tmp.p);
    if (build_trie(t) != 0) {
        tok_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    return 0;

nomem:
    tok_err(err, errlen, "%s: out of memory", path);

failed:
    free(nb.p);
    free(tmp.p);
    return -1;
}


static int
load_template(infer_tokenizer_t *t, json_t *pp, const char *path,
    char *err, size_t errlen)
{
    json_t       *specials = json_object_get(pp, "special_tokens");
    json_t       *item, *ids, *v;
    const char   *name;
    size_t        i, k;
    int           seen_a = 0, *n;
    int32_t      *fix;
    json_int_t    id;

    json_array_foreach(json_object_get(pp, "single"), i, item) {
        if (json_object_get(item, "Sequence") != NULL) {
            seen_a = 1;
            continue;
        }
        name = json_string_value(json_object_get(
                   json_object_get(item, "SpecialToken"), "id"));
        ids = json_object_get(json_object_get(specials, name ? name : ""),
                              "ids");
        if (name == NULL || !json_is_array(ids)) {
            tok_err(err, errlen, "%s: post_processor.single[%zu]: special "
                    "token without ids in special_tokens", path, i);
            return -1;
        }
        fix = seen_a ? t->suffix : t->prefix;
        n = seen_a ? &t->n_suffix : &t->n_prefix;
        json_array_foreach(ids, k, v) {
            id = json_is_integer(v) ? json_integer_value(v) : -1;
            if (id < 0 || id >= t->n_vocab || *n == INFER_TOK_MAX_FIXES) {
                tok_err(err, errlen, "%s: post_processor: special token "
                        "\"%s\": bad id or too many", path, name);
                return -1;
            }
            fix[(*n)++] = (int32_t) id;
        }
    }
    return 0;
}


static int
load_post_processor(infer_tokenizer_t *t, json_t *pp, const char *path,
    char *err, size_t errlen)
{
    const char  *type = get_type(pp);
    json_t      *v;
    size_t       i;

    if (pp == NULL || json_is_null(pp)) {
        return 0;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_array_foreach(json_object_get(pp, "processors"), i, v) {
            if (load_post_processor(t, v, path, err, errlen) != 0) {
                return -1;
            }
        }
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        return 0;       /* offsets only */
    }
    if (strcmp(type, "TemplateProcessing") == 0) {
        return load_template(t, pp, path, err, errlen);
    }
    tok_err(err, errlen, "%s: post_processor: type \"%s\" is not supported",
            path, type);
    return -1;
}


/* The byte a "<0xNN>" token stands for, -1 if none; NN read as HF's
 * ByteFallback reads it, by Rust's u8::from_str_radix(NN, 16), which also
 * takes "+F" (a sign, then one digit). */
static int
byte_token_value(const char *s, size_t len)
{
    int  i, v = 0, c;

    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') {
        return -1;
    }
    for (i = s[3] == '+' ? 4 : 3; i < 5; i++) {
        c = (unsigned char) s[i];
        if (c >= '0' && c <= '9') {
            v = v * 16 + c - '0';
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v = v * 16 + (c | 0x20) - 'a' + 10;
        } else {
            return -1;
        }
    }
    return v;
}


/* The bytes a token stands for, as the decoder chain makes them. */
static int
decode_token(const infer_tokenizer_t *t, const char *s, size_t len,
    infer_buf_t *out)
{
    size_t       i, start = out->len;
    uint32_t     cp;
    const char  *p, *q, *end;
    int          b;
    char         c;

    if (t->dec_byte_level) {
        for (i = 0; i < len; i += b) {
            b = utf8_get((const unsigned char *) s + i, &cp);
            if (cp >= 324 || t->cp_to_byte[cp] < 0) {
                /* Like HF: a token with an unmapped character is taken
                 * as it is written. */
                out->len = start;
                return infer_buf_add(out, s, len);
            }
            c = (char) t->cp_to_byte[cp];
            if (infer_buf_add(out, &c, 1) != 0) {
                return -1;
            }
        }
        return 0;
    }
    if (t->dec_byte_fallback && (b = byte_token_value(s, len)) >= 0) {
        c = (char) b;
        return infer_buf_add(out, &c, 1);
    }
    if (t->dec_from == NULL) {
        return infer_buf_add(out, s, len);
    }
    p = s;
    end = s + len;
    while ((q = memmem(p, end - p, t->dec_from, t->dec_from_len)) != NULL) {
        if (infer_buf_add(out, p, q - p) != 0
            || infer_buf_add(out, t->dec_to, t->dec_to_len) != 0)
        {
            return -1;
        }
        p = q + t->dec_from_len;
    }
    return infer_buf_add(out, p, end - p);
}


static int
load_decoded(infer_tokenizer_t *t, const char *path, char *err,
    size_t errlen)
{
    int32_t      id;
    size_t       len, max = 0;
    const char  *s;

    t->dec_off = malloc(((size_t) t->n_vocab + 1) * sizeof(uint32_t));
    if (t->dec_off == NULL) {
        goto nomem;
    }
    for (id = 0; id < t->n_vocab; id++) {
        t->dec_off[id] = (uint32_t) t->dec.len;
        s = tok_str(t, id, &len);
        if (s != NULL && decode_token(t, s, len, &t->dec) != 0) {
            goto nomem;
        }
        len = t->dec.len - t->dec_off[id];
        max = len > max ? len : max;
    }
    t->dec_off[t->n_vocab] = (uint32_t) t->dec.len;
    /* Bound on one detok push: every byte of a broken character may turn
     * into a 3-byte U+FFFD, held-back bytes included (the +8 slack), and
     * so may every byte of a held-back run of byte tokens. */
    t->max_token_bytes = 3 * max + 1;
    if (t->dec_byte_fallback && !t->dec_byte_level) {
        t->max_token_bytes += 3 * INFER_DETOK_RUN;
    }
    return 0;

nomem:
    tok_err(err, errlen, "%s: out of memory", path);
    return -1;
}


static const char *
config_token(json_t *cfg, const char *name)
{
    json_t  *v = json_object_get(cfg, name);

    if (json_is_object(v)) {
        v = json_object_get(v, "content");
    }
    return json_string_value(v);
}


static int
load_chat_template(infer_tokenizer_t *t, json_t *cfg)
{
    json_t      *v = json_object_get(cfg, "chat_template"), *e;
    const char  *tpl = json_string_value(v), *name;
    size_t       i;

    /* A list of named templates: the "default" one, else the first. */
    json_array_foreach(v, i, e) {
        name = json_string_value(json_object_get(e, "name"));
        if (tpl == NULL || (name && strcmp(name, "default") == 0)) {
            tpl = json_string_value(json_object_get(e, "template"));
        }
    }
    if (tpl != NULL) {
        t->chat_template = strdup(tpl);
        return t->chat_template ? 0 : -1;
    }
    return 0;
}


/* bos/eos from tokenizer_config.json; add_bos_token / add_eos_token there
 * override the post_processor template, as transformers' Llama tokenizer
 * does when it rebuilds its template from them. */
static int
load_config(infer_tokenizer_t *t, const char *dir, char *err, size_t errlen)
{
    json_t      *cfg, *v;
    const char  *s;
    char        *path;
    int          absent = 0, rc = -1;

    if (t->n_prefix > 0) {
        t->bos_id = t->prefix[0];
    }
    if (t->n_suffix > 0) {
        t->eos_id = t->suffix[t->n_suffix - 1];
    }
    path = malloc(strlen(dir) + sizeof("/tokenizer_config.json"));
    if (path == NULL) {
        tok_err(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    sprintf(path, "%s/tokenizer_config.json", dir);
    /* Integers there (model_max_length = 1e30) overflow jansson's. */
    cfg = load_json(path, 1, &absent, JSON_DECODE_INT_AS_REAL, err, errlen);
    if (cfg == NULL) {
        free(path);
        return absent ? 0 : -1;
    }
    if ((s = config_token(cfg, "bos_token")) != NULL) {
        t->bos_id = infer_tokenizer_token_id(t, s);
    }
    if ((s = config_token(cfg, "eos_token")) != NULL) {
        t->eos_id = infer_tokenizer_token_id(t, s);
    }
    v = json_object_get(cfg, "add_bos_token");
    if (json_is_boolean(v)) {
        t->n_prefix = 0;
        if (json_is_true(v) && t->bos_id >= 0) {
            t->prefix[t->n_prefix++] = t->bos_id;
        }
    }
    v = json_object_get(cfg, "add_eos_token");
    if (json_is_boolean(v)) {
        t->n_suffix = 0;
        if (json_is_true(v) && t->eos_id >= 0) {
            t->suffix[t->n_suffix++] = t->eos_id;
        }
    }
    if (load_chat_template(t, cfg) != 0) {
        tok_err(err, errlen, "%s: out of memory", path);
        goto done;
    }
    rc = 0;

done:
    json_decref(cfg);
    free(path);
    return rc;
}


/* A bound on the bytes that normalizing and pre-tokenizing make of one
 * input byte: every stage's output is at most m times its input, as each
 * text a stage works on (segment between added tokens, piece) has one
 * byte at least.  Refuses a chain above INFER_TOK_MAX_GROWTH, e.g. some
 * Replace "a" -> "aa" in a row, which would double the text each. */
static int
check_growth(infer_tokenizer_t *t, const char *path, char *err,
    size_t errlen)
{
    const infer_norm_t  *n;
    const infer_pre_t   *pre;
    uint64_t             g = 1, m;
    int                  i;

    for (i = 0; i < t->n_norm + t->n_pre; i++) {
        if (i < t->n_norm) {
            n = &t->norm[i];
            /* Unicode: a character's decomposition is at most 3 (NFC,
             * NFD: U+1D160) or 11 (NFKC, NFKD: U+FDFA) times its bytes,
             * as Unicode bounds it; reordering keeps the length and
             * composing shortens. */
            m = n->type == INFER_NORM_PREPEND ? 1 + n->to_len
                : n->type == INFER_NORM_UNICODE ? (n->compat ? 11 : 3)
                : (n->to_len + n->from_len - 1) / n->from_len;
        } else {
            pre = &t->pre[i - t->n_norm];
            switch (pre->type) {
            case INFER_PRE_METASPACE:
                /* ' ' -> replacement, which may also be prepended */
                m = pre->repl_len
                    * (pre->prepend == INFER_PREPEND_NEVER ? 1 : 2);
                break;
            case INFER_PRE_BYTE_LEVEL:
                /* a byte -> one code point below U+0800, maybe a ' ' */
                m = pre->add_prefix_space ? 4 : 2;
                break;
            default:
                m = 1;
            }
        }
        g *= m > 1 ? m : 1;
        if (g > INFER_TOK_MAX_GROWTH) {
            tok_err(err, errlen, "%s: the normalizer and pre_tokenizer "
                    "could make more than %d bytes of one input byte "
                    "(at %s %d): refused, as encode's memory would not be "
                    "bounded by its input", path, INFER_TOK_MAX_GROWTH,
                    i < t->n_norm ? "normalizer" : "pre_tokenizer",
                    i < t->n_norm ? i : i - t->n_norm);
            return -1;
        }
    }
    t->growth = (unsigned) g;
    return 0;
}


/*
 * The most input bytes one id can stand for, so that a caller can tell
 * from a prompt's size alone that it cannot fit a context.  An id is a
 * token string (the longest in the vocab, added tokens included, or an
 * added token's normalized match) found in the normalized, pre-tokenized
 * text; only a Replace whose content is shorter than its pattern makes
 * that text shorter than the input, by at most from/to per stage (one
 * with an empty content leaves no bound at all), and a Unicode
 * normalization, by at most 4.  A chain that could shrink text more than
 * 2^32 times leaves no bound either (the product would overflow).
 */
static void
cover_bound(infer_tokenizer_t *t)
{
    const infer_norm_t  *n;
    uint64_t             shrink = 1, longest = 0;
    int                  i;

    for (i = 0; i < t->n_norm; i++) {
        n = &t->norm[i];
        if (n->type == INFER_NORM_UNICODE) {
            /* A character becomes one of a quarter of its bytes at
             * least (NFKC of U+1D400 is "A"), a composed sequence one
             * of a third (Hangul L V T, 9 bytes to 3). */
            shrink *= 4;
        } else if (n->type == INFER_NORM_REPLACE
                   && n->to_len < n->from_len)
        {
            if (n->to_len == 0) {
                t->max_cover = 0;
                return;
            }
            shrink *= (n->from_len + n->to_len - 1) / n->to_len;
        }
        if (shrink > (uint64_t) 1 << 32) {
            t->max_cover = 0;
            return;
        }
    }
    for (i = 0; i < t->n_vocab; i++) {
        longest = t->str_len[i] > longest ? t->str_len[i] : longest;
    }
    for (i = 0; i < t->n_added; i++) {
        longest = t->added[i].match_len > longest ? t->added[i].match_len
                                                  : longest;
    }
    t->max_cover = (size_t) (shrink * (longest > 0 ? longest : 1));
}

/* Every match of one tokenizer under the same limits (a context is only
 * read by pcre2_match, so threads may share it). */
static int
make_match_context(infer_tokenizer_t *t, const char *path, char *err,
    size_t errlen)
{
    t->mctx = pcre2_match_context_create(NULL);
    if (t->mctx == NULL) {
        tok_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    pcre2_set_match_limit(t->mctx, INFER_TOK_MATCH_LIMIT);
    pcre2_set_depth_limit(t->mctx, INFER_TOK_DEPTH_LIMIT);
    pcre2_set_heap_limit(t->mctx, INFER_TOK_HEAP_LIMIT);
    return 0;
}


/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
 * others for 256, 257, ... in byte order. */
static void
byte_level_tables(infer_tokenizer_t *t)
{
    int  b, n = 0, cp;

    memset(t->cp_to_byte, 0xff, sizeof(t->cp_to_byte));
    for (b = 0; b < 256; b++) {
        cp = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae
             ? b : 256 + n++;
        t->byte_to_cp[b] = (uint16_t) cp;
        t->cp_to_byte[cp] = (int16_t) b;
    }
}


int
infer_tokenizer_load(const char *dir, infer_tokenizer_t **out, char *err,
    size_t errlen)
{
    infer_tokenizer_t  *t = NULL;
    json_t             *root;
    char               *path;

    *out = NULL;
    path = malloc(strlen(dir) + sizeof("/tokenizer.json"));
    if (path == NULL) {
        tok_err(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    sprintf(path, "%s/tokenizer.json", dir);
    root = load_json(path, 0, NULL, 0, err, errlen);
    if (root == NULL) {
        free(path);
        return -1;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        tok_err(err, errlen, "%s: out of memory", path);
        goto failed;
    }
    t->bos_id = -1;
    t->eos_id = -1;
    hash_seed(t);
    byte_level_tables(t);
    if (load_model(t, root, path, err, errlen) != 0
        || load_normalizer(t, json_object_get(root, "normalizer"), path,
                           err, errlen) != 0
        || load_added(t, root, path, err, errlen) != 0
        || load_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"),
                              path, err, errlen) != 0
        || check_growth(t, path, err, errlen) != 0
        || make_match_context(t, path, err, errlen) != 0
        || load_decoder(t, json_object_get(root, "decoder"), path, err,
                        errlen) != 0
        || load_post_processor(t, json_object_get(root, "post_processor"),
                               path, err, errlen) != 0
        || load_decoded(t, path, err, errlen) != 0
        || load_config(t, dir, err, errlen) != 0)
    {
        goto failed;
    }
    cover_bound(t);
    json_decref(root);
    free(path);
    *out = t;
    return 0;

failed:
    infer_tokenizer_free(t);
    json_decref(root);
    free(path);
    return -1;
}


void
infer_tokenizer_free(infer_tokenizer_t *t)
{
    int  i;

    if (t == NULL) {
        return;
    }
    free(t->strs.p);
    free(t->str_off);
    free(t->str_len);
    free(t->vocab_slots);
    free(t->merge_keys);
    free(t->merge_rank);
    free(t->merge_new);
    for (i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    /* A failed load may leave one entry half-made past n_added. */
    if (t->added != NULL) {
        free(t->added[t->n_added].content);
        free(t->added[t->n_added].match);
    }
    free(t->added);
    free(t->trie_keys);
    free(t->trie_child);
    free(t->trie_term);
    free(t->special);
    for (i = 0; i < t->n_norm; i++) {
        free(t->norm[i].from);
        free(t->norm[i].to);
    }
    free(t->norm);
    for (i = 0; i < t->n_pre; i++) {
        pcre2_code_free(t->pre[i].re);
    }
    free(t->pre);
    pcre2_match_context_free(t->mctx);
    free(t->dec_from);
    free(t->dec_to);
    free(t->dec.p);
    free(t->dec_off);
    free(t->chat_template);
    free(t);
}


int
infer_tokenizer_vocab_size(const infer_tokenizer_t *t)
{
    return t->n_vocab;
}


int
infer_tokenizer_bos_id(const infer_tokenizer_t *t)
{
    return t->bos_id;
}


int
infer_tokenizer_eos_id(const infer_tokenizer_t *t)
{
    return t->eos_id;
}


int
infer_tokenizer_add_bos(const infer_tokenizer_t *t)
{
    return t->n_prefix > 0 && t->prefix[0] == t->bos_id;
}


int
infer_tokenizer_is_special(const infer_tokenizer_t *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->special[id];
}


int32_t
infer_tokenizer_token_id(const infer_tokenizer_t *t, const char *s)
{
    size_t  len = strlen(s);
    int     i;

    for (i = 0; i < t->n_added; i++) {
        if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0)
        {
            return t->added[i].id;
        }
    }
    return vocab_get(t, s, len);
}


const char *
infer_tokenizer_token_str(const infer_tokenizer_t *t, int32_t id)
{
    size_t  len;

    return tok_str(t, id, &len);
}


const char *
infer_tokenizer_token_bytes(const infer_tokenizer_t *t, int32_t id,
    size_t *len)
{
    if (id < 0 || id >= t->n_vocab || t->str_off[id] == INFER_TOK_NONE) {
        return NULL;
    }
    *len = t->dec_off[id + 1] - t->dec_off[id];
    return t->dec.p + t->dec_off[id];
}


const char *
infer_tokenizer_chat_template(const infer_tokenizer_t *t)
{
    return t->chat_template;
}


size_t
infer_tokenizer_max_token_bytes(const infer_tokenizer_t *t)
{
    return t->max_token_bytes;
}

size_t
infer_tokenizer_min_ids(const infer_tokenizer_t *t, size_t len)
{
    return t->max_cover > 0 ? len / t->max_cover : 0;
}


/* ---- encoding ---------------------------------------------------------- */

static int
push_id(infer_enc_t *e, int32_t id)
{
    /* Load bounded the growth, so this cannot happen: a last guard
     * against a loop that would fill memory. */
    if (e->n_ids >= e->max_ids) {
        return -1;
    }
    if (grow((void **) &e->ids, &e->cap_ids, e->n_ids + 1, sizeof(int32_t)))
    {
        return -1;
    }
    e->ids[e->n_ids++] = id;
    return 0;
}


/* Appends a pre-token; with byte_map, each byte as its GPT-2 code point. */
static int
pieces_add(const infer_tokenizer_t *t, infer_pieces_t *p, const char *s,
    size_t len, int byte_map)
{
    size_t  i, off = p->buf.len;
    char    cp[2];

    if (len == 0) {
        return 0;
    }
    if (grow((void **) &p->span, &p->cap, p->n + 1, sizeof(infer_span_t))) {
        return -1;
    }
    if (!byte_map) {
        if (infer_buf_add(&p->buf, s, len) != 0) {
            return -1;
        }
    } else {
        for (i = 0; i < len; i++) {
            if (infer_buf_add(&p->buf, cp,
                           utf8_put(cp, t->byte_to_cp[(unsigned char) s[i]]))
                != 0)
            {
                return -1;
            }
        }
    }
    p->span[p->n].off = off;
    p->span[p->n].len = p->buf.len - off;
    p->n++;
    return 0;
}


static long long
cpu_ns(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) {
        return 0;
    }
    return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}


/* Isolated split: every match and every gap between matches is a piece.
 * s is valid UTF-8 (encode checks its input, and every normalizer and
 * pre-tokenizer keeps it so), hence PCRE2_NO_UTF_CHECK. */
static int
split_regex(infer_enc_t *e, const pcre2_code *re, const char *s, size_t len,
    int byte_map, infer_pieces_t *out)
{
    size_t       start = 0, last = 0, ms, me;
    PCRE2_SIZE  *ov;
    int          rc, cl;

    while (start < len) {
        /* The clock costs a system call: look at it now and then; one
         * match is bounded by the match limit meanwhile. */
        if ((++e->n_match & 15) == 0 && cpu_ns() > e->regex_deadline) {
            return -1;
        }
        rc = pcre2_match(re, (PCRE2_SPTR) s, len, start, PCRE2_NO_UTF_CHECK,
                         e->md, e->t->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) {
            break;
        }
        if (rc < 0) {
            return -1;     /* a limit, or out of memory: an encode error */
        }
        ov = pcre2_get_ovector_pointer(e->md);
        ms = ov[0];
        me = ov[1];
        if (ms < start || me < ms || me > len) {
            return -1;     /* PCRE2 promises otherwise; cheap to check */
        }
        if (me == ms) {
            /* An empty match splits nothing: try from the next char (one
             * byte at least, so that the loop always moves on). */
            if (me == len) {
                break;
            }
            cl = utf8_lead_len((unsigned char) s[me]);
            start = me + (cl > 0 ? cl : 1);
            continue;
        }
        if (pieces_add(e->t, out, s + last, ms - last, byte_map) != 0
            || pieces_add(e->t, out, s + ms, me - ms, byte_map) != 0)
        {
            return -1;
        }
        last = start = me;
    }
    return pieces_add(e->t, out, s + last, len - last, byte_map);
}


/* Spaces become the replacement char, which then starts every piece. */
static int
metaspace(infer_enc_t *e, const infer_pre_t *pre, const char *s,
    size_t len, int at_origin, infer_pieces_t *out)
{
    infer_buf_t  *b = &e->scratch;
    size_t        i, last;

    b->len = 0;
    if ((pre->prepend == INFER_PREPEND_ALWAYS
         || (pre->prepend == INFER_PREPEND_FIRST && at_origin))
        && s[0] != ' '
        && !(len >= pre->repl_len && memcmp(s, pre->repl, pre->repl_len) == 0)
        && infer_buf_add(b, pre->repl, pre->repl_len) != 0)
    {
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (s[i] == ' ' ? infer_buf_add(b, pre->repl, pre->repl_len)
                        : infer_buf_add(b, s + i, 1))
        {
            return -1;
        }
    }
    if (!pre->split) {
        return pieces_add(e->t, out, b->p, b->len, 0);
    }
    last = 0;
    for (i = 1; i + pre->repl_len <= b->len; i++) {
        if (memcmp(b->p + i, pre->repl, pre->repl_len) == 0) {
            if (pieces_add(e->t, out, b->p + last, i - last, 0) != 0) {
                return -1;
            }
            last = i;
        }
    }
    return pieces_add(e->t, out, b->p + last, b->len - last, 0);
}


static int
pre_tokenize_one(infer_enc_t *e, const infer_pre_t *pre, const char *s,
    size_t len, int at_origin, infer_pieces_t *out)
{
    infer_buf_t  *b = &e->scratch;

    switch (pre->type) {

    case INFER_PRE_SPLIT:
        return split_regex(e, pre->re, s, len, 0, out);

    case INFER_PRE_BYTE_LEVEL:
        if (pre->add_prefix_space && s[0] != ' ') {
            b->len = 0;
            if (infer_buf_add(b, " ", 1) != 0 || infer_buf_add(b, s, len) != 0) {
                return -1;
            }
            s = b->p;
            len = b->len;
        }
        return pre->re ? split_regex(e, pre->re, s, len, 1, out)
                       : pieces_add(e->t, out, s, len, 1);

    case INFER_PRE_METASPACE:
        return metaspace(e, pre, s, len, at_origin, out);
    }
    return -1;
}


static int
pair_less(const infer_pair_t *a, const infer_pair_t *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}


static void
heap_push(infer_pair_t *h, size_t *n, infer_pair_t x)
{
    size_t  i = (*n)++, up;

    while (i > 0 && pair_less(&x, &h[up = (i - 1) / 2])) {
        h[i] = h[up];
        i = up;
    }
    h[i] = x;
}


static infer_pair_t
heap_pop(infer_pair_t *h, size_t *n)
{
    infer_pair_t  top = h[0], x = h[--(*n)];
    size_t        i = 0, c;

    while ((c = 2 * i + 1) < *n) {
        if (c + 1 < *n && pair_less(&h[c + 1], &h[c])) {
            c++;
        }
        if (!pair_less(&h[c], &x)) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}


static void
queue_pair(infer_enc_t *e, size_t *nh, int32_t pos)
{
    const infer_tokenizer_t  *t = e->t;
    int64_t                   m;
    infer_pair_t              p;

    m = merge_get(t, e->sym[pos].id, e->sym[e->sym[pos].next].id);
    if (m >= 0) {
        p.rank = t->merge_rank[m];
        p.pos = pos;
        p.new_id = t->merge_new[m];
        heap_push(e->heap, nh, p);
    }
}


/* The word's characters as tokens (or their bytes, or unk). */
static int
bpe_symbols(infer_enc_t *e, const char *s, size_t len, size_t *nsym)
{
    const infer_tokenizer_t  *t = e->t;
    size_t                    i, k, n = 0;
    int                       cl, bytes_ok;
    int32_t                   id;

    for (i = 0; i < len; i += cl) {
        /* Pieces are whole characters; were one not, a byte that starts
         * none stands alone, so that i always advances and no character
         * yields more symbols than it has bytes (sym holds len). */
        cl = utf8_lead_len((unsigned char) s[i]);
        if (cl == 0 || (size_t) cl > len - i) {
            cl = 1;
        }
        id = vocab_get(t, s + i, cl);
        if (id >= 0) {
            e->sym[n++].id = id;
            continue;
        }
        bytes_ok = t->byte_fallback;
        for (k = 0; bytes_ok && k < (size_t) cl; k++) {
            bytes_ok = t->byte_id[(unsigned char) s[i + k]] >= 0;
        }
        if (bytes_ok) {
            for (k = 0; k < (size_t) cl; k++) {
                e->sym[n++].id = t->byte_id[(unsigned char) s[i + k]];
            }
            continue;
        }
        /* Without an unk token HF drops the character. */
        if (t->unk_id >= 0
            && !(t->fuse_unk && n > 0 && e->sym[n - 1].id == t->unk_id))
        {
            e->sym[n++].id = t->unk_id;
        }
    }
    *nsym = n;
    return 0;
}


/* BPE as HF does it: repeatedly merge the pair of lowest rank, leftmost
 * first, with a heap of candidate pairs checked again when popped. */
static int
bpe_word(infer_enc_t *e, const char *s, size_t len)
{
    const infer_tokenizer_t  *t = e->t;
    infer_sym_t              *sym;
    infer_pair_t              top;
    size_t                    nsym, nh = 0, i;
    int32_t                   id, nx;
    int64_t                   m;

    if (t->ignore_merges && (id = vocab_get(t, s, len)) >= 0) {
        return push_id(e, id);
    }
    if (len > INT32_MAX / 4) {
        return -1;      /* symbols are linked by int32_t */
    }
    /* At most a symbol a byte; the heap holds the first pairs and two
     * for each merge, fewer than 3 a symbol (sized by symbols, not bytes:
     * 1 MB of U+2581 is a million symbols of three bytes). */
    if (grow((void **) &e->sym, &e->cap_sym, len, sizeof(infer_sym_t)) != 0
        || bpe_symbols(e, s, len, &nsym) != 0
        || grow((void **) &e->heap, &e->cap_heap, 3 * nsym,
                sizeof(infer_pair_t)) != 0)
    {
        return -1;
    }
    sym = e->sym;
    for (i = 0; i < nsym; i++) {
        sym[i].prev = (int32_t) i - 1;
        sym[i].next = i + 1 < nsym ? (int32_t) i + 1 : -1;
        sym[i].alive = 1;
    }
    for (i = 0; i + 1 < nsym; i++) {
        queue_pair(e, &nh, (int32_t) i);
    }
    while (nh > 0) {
        top = heap_pop(e->heap, &nh);
        if (!sym[top.pos].alive || (nx = sym[top.pos].next) < 0) {
            continue;
        }
        /* Stale entry: one side has merged since it was queued. */
        m = merge_get(t, sym[top.pos].id, sym[nx].id);
        if (m < 0 || t->merge_new[m] != top.new_id) {
            continue;
        }
        sym[top.pos].id = top.new_id;
        sym[nx].alive = 0;
        sym[top.pos].next = sym[nx].next;
        if (sym[nx].next >= 0) {
            sym[sym[nx].next].prev = top.pos;
        }
        if (sym[top.pos].prev >= 0) {
            queue_pair(e, &nh, sym[top.pos].prev);
        }
        if (sym[top.pos].next >= 0) {
            queue_pair(e, &nh, top.pos);
        }
    }
    for (i = 0; nsym > 0 && (int32_t) i >= 0; i = sym[i].next) {
        if (push_id(e, sym[i].id) != 0) {
            return -1;
        }
        if (sym[i].next < 0) {
            break;
        }
    }
    return 0;
}


static int
encode_pieces(infer_enc_t *e, const char *s, size_t len, int at_origin)
{
    const infer_tokenizer_t  *t = e->t;
    infer_pieces_t           *in = &e->pa, *out = &e->pb, *sw;
    size_t                    j;
    int                       i;

    in->n = 0;
    in->buf.len = 0;
    if (pieces_add(t, in, s, len, 0) != 0) {
        return -1;
    }
    for (i = 0; i < t->n_pre; i++) {
        out->n = 0;
        out->buf.len = 0;
        for (j = 0; j < in->n; j++) {
            if (pre_tokenize_one(e, &t->pre[i], in->buf.p + in->span[j].off,
                                 in->span[j].len, at_origin && j == 0, out))
            {
                return -1;
            }
        }
        sw = in;
        in = out;
        out = sw;
    }
    for (j = 0; j < in->n; j++) {
        if (bpe_word(e, in->buf.p + in->span[j].off, in->span[j].len) != 0) {
            return -1;
        }
    }
    return 0;
}


/* Leftmost, then longest, added token in s[from, len) (of those of one
 * length, the first in the file that fits); lstrip/rstrip widen the match
 * over the whitespace beside it.  Every token has one byte at least (load
 * refuses empty ones), so encode's scan, going on from the end of a
 * match, always moves on. */
static int
added_find(const infer_tokenizer_t *t, const char *s, size_t len,
    size_t from, int normalized, size_t *ms, size_t *me, int32_t *id)
{
    const infer_added_t  *a, *best;
    size_t                p, q;
    int64_t               node;
    int32_t               i;

    for (p = from; p < len; p++) {
        if (!t->added_first[(unsigned char) s[p]]) {
            continue;
        }
        best = NULL;
        node = normalized;
        for (q = p; q < len; q++) {
            node = trie_get(t, (uint32_t) node, (unsigned char) s[q]);
            if (node < 0) {
                break;
            }
            for (i = t->trie_term[node]; i >= 0; i = t->added[i].next) {
                a = &t->added[i];
                if (!a->single_word
                    || ((p == 0 || !is_word_byte(s[p - 1]))
                        && (q + 1 == len || !is_word_byte(s[q + 1]))))
                {
                    best = a;
                    break;
                }
            }
        }
        if (best != NULL) {
            *ms = p;
            *me = p + best->match_len;
            while (best->lstrip && *ms > from && is_space(s[*ms - 1])) {
                (*ms)--;
            }
            while (best->rstrip && *me < len && is_space(s[*me])) {
                (*me)++;
            }
            *id = best->id;
            return 1;
        }
    }
    return 0;
}


static int
encode_segment(infer_enc_t *e, const char *s, size_t len, int at_origin)
{
    const infer_tokenizer_t  *t = e->t;
    size_t                    pos = 0, ms, me, end;
    int32_t                   id;
    int                       found;

    if (t->n_norm > 0) {
        if (normalize(t, s, len, &e->norm, &e->tmp) != 0) {
            return -1;
        }
        s = e->norm.p;
        len = e->norm.len;
    }
    for ( ;; ) {
        found = t->has_normalized_added
                && added_find(t, s, len, pos, 1, &ms, &me, &id);
        end = found ? ms : len;
        if (end > pos
            && encode_pieces(e, s + pos, end - pos, at_origin && pos == 0))
        {
            return -1;
        }
        if (!found) {
            return 0;
        }
        if (push_id(e, id) != 0) {
            return -1;
        }
        pos = me;
    }
}


int
infer_tokenizer_encode(const infer_tokenizer_t *t, const char *text,
    size_t len, int add_special, int32_t **ids, int *n)
{
    infer_enc_t  e;
    size_t       pos = 0, ms, me, end;
    int32_t      id;
    int          i, found, rc = -1;

    *ids = NULL;
    *n = 0;
    if (!utf8_valid((const unsigned char *) text, len)) {
        return -1;
    }
    memset(&e, 0, sizeof(e));
    e.t = t;
    /* Every input byte is in an added token (one id for one byte or more)
     * or grows to at most t->growth bytes of pieces, one id a byte. */
    e.max_ids = (size_t) t->growth * len + 2 * INFER_TOK_MAX_FIXES;
    e.regex_deadline = cpu_ns() + INFER_TOK_REGEX_BASE_NS
                       + (long long) len * INFER_TOK_REGEX_BYTE_NS;
    e.md = pcre2_match_data_create(1, NULL);
    if (e.md == NULL) {
        return -1;
    }
    for (i = 0; add_special && i < t->n_prefix; i++) {
        if (push_id(&e, t->prefix[i]) != 0) {
            goto done;
        }
    }
    for ( ;; ) {
        found = added_find(t, text, len, pos, 0, &ms, &me, &id);
        end = found ? ms : len;
        if (end > pos && encode_segment(&e, text + pos, end - pos, pos == 0))
        {
            goto done;
        }
        if (!found) {
            break;
        }
        if (push_id(&e, id) != 0) {
            goto done;
        }
        pos = me;
    }
    for (i = 0; add_special && i < t->n_suffix; i++) {
        if (push_id(&e, t->suffix[i]) != 0) {
            goto done;
        }
    }
    if (e.n_ids > INT32_MAX) {
        goto done;
    }
    /* An empty result is still a valid allocation for the caller. */
    if (e.ids == NULL && (e.ids = malloc(sizeof(int32_t))) == NULL) {
        goto done;
    }
    *ids = e.ids;
    *n = (int) e.n_ids;
    e.ids = NULL;
    rc = 0;

done:
    pcre2_match_data_free(e.md);
    free(e.ids);
    free(e.norm.p);
    free(e.tmp.p);
    free(e.scratch.p);
    free(e.pa.buf.p);
    free(e.pa.span);
    free(e.pb.buf.p);
    free(e.pb.span);
    free(e.sym);
    free(e.heap);
    return rc;
}


/* ---- streaming detokenizer --------------------------------------------- */

void
infer_detok_init(infer_detok_t *d, const infer_tokenizer_t *t, int at_start)
{
    memset(d, 0, sizeof(*d));
    d->tok = t;
    d->at_start = at_start;
    d->strip = at_start ? t->dec_strip : 0;
}


/* Appends s, less the leading spaces the Strip decoder still takes: HF
 * strips after Fuse, so off the start of the whole decoded text, whatever
 * tokens made it. */
static size_t
put(infer_detok_t *d, char *out, size_t cap, size_t n, const void *s,
    size_t len)
{
    const char  *p = s;

    for ( ; d->strip > 0 && len > 0; d->strip--) {
        if (p[0] != ' ') {
            d->strip = 0;
            break;
        }
        p++;
        len--;
    }
    if (n + len > cap) {
        return n;   /* cannot happen with cap >= max_token_bytes + 8 */
    }
    memcpy(out + n, p, len);
    return n + len;
}


static size_t
put_fffd(infer_detok_t *d, char *out, size_t cap, size_t n, int count)
{
    for ( ; count > 0; count--) {
        n = put(d, out, cap, n, "\xef\xbf\xbd", 3);
    }
    return n;
}


/* Held-back bytes that will never complete: one U+FFFD per broken
 * sequence, as String::from_utf8_lossy in the ByteLevel decoder. */
static size_t
detok_broken(infer_detok_t *d, char *out, size_t cap, size_t n)
{
    n = put_fffd(d, out, cap, n, 1);
    d->n_pending = 0;
    return n;
}


static size_t
detok_bytes(infer_detok_t *d, const unsigned char *s, size_t len,
    char *out, size_t cap)
{
    size_t         i, n = 0;
    unsigned char  b;

    for (i = 0; i < len; i++) {
        b = s[i];
        if (d->n_pending > 0
            && !utf8_cont_ok(d->pending[0], d->n_pending, b))
        {
            n = detok_broken(d, out, cap, n);
        }
        if (d->n_pending > 0) {
            d->pending[d->n_pending++] = b;
            if (d->n_pending == utf8_lead_len(d->pending[0])) {
                n = put(d, out, cap, n, d->pending, d->n_pending);
                d->n_pending = 0;
            }
        } else if (b < 0x80) {
            n = put(d, out, cap, n, &b, 1);
        } else if (utf8_lead_len(b) > 1) {
            d->pending[d->n_pending++] = b;
        } else {
            /* A byte that can start no character. */
            n = put_fffd(d, out, cap, n, 1);
        }
    }
    return n;
}


/*
 * SentencePiece's byte tokens, as HF's ByteFallback decoder takes them: a
 * run of them (special tokens, skipped before decoding, do not end one)
 * is its bytes where they are valid UTF-8 as a whole, else one U+FFFD per
 * byte token, the valid characters in it included.  So a run is held back
 * while it is valid, until a token of another kind or the flush ends it;
 * once broken, it and the rest of it come out as U+FFFD at once.  A run
 * valid for INFER_DETOK_RUN bytes gives out its whole characters then, to
 * bound the wait: should it break later, only the bytes from there on
 * become U+FFFD (HF would replace the whole run).
 */
/* Bytes still missing from the run's last character (0: it is whole);
 * *lead is where that character starts.  The run is valid UTF-8 so far. */
static int
run_missing(const infer_detok_t *d, int *lead)
{
    int  i;

    if (d->n_run == 0) {
        *lead = 0;
        return 0;
    }
    for (i = d->n_run - 1; i > 0 && (d->run[i] & 0xc0) == 0x80; i--) {
        /* back to the lead byte */
    }
    *lead = i;
    return utf8_lead_len(d->run[i]) - (d->n_run - i);
}


static size_t
detok_run_byte(infer_detok_t *d, unsigned char b, char *out, size_t cap)
{
    size_t  n;
    int     lead, valid, count, whole;

    if (d->run_broken) {
        return put_fffd(d, out, cap, 0, 1);
    }
    valid = run_missing(d, &lead) == 0
            ? utf8_lead_len(b) > 0
            : utf8_cont_ok(d->run[lead], d->n_run - lead, b);
    if (!valid) {
        count = d->n_run + 1;
        d->n_run = 0;
        d->run_broken = 1;
        return put_fffd(d, out, cap, 0, count);
    }
    d->run[d->n_run++] = b;
    if (d->n_run < INFER_DETOK_RUN) {
        return 0;
    }
    /* Full: out with its whole characters; an unfinished one stays. */
    whole = run_missing(d, &lead) == 0 ? d->n_run : lead;
    n = put(d, out, cap, 0, d->run, whole);
    d->n_run -= whole;
    memmove(d->run, d->run + whole, d->n_run);
    return n;
}


static size_t
detok_run_end(infer_detok_t *d, char *out, size_t cap)
{
    size_t  n = 0;
    int     lead;

    if (d->n_run > 0) {
        n = run_missing(d, &lead) == 0
            ? put(d, out, cap, 0, d->run, d->n_run)
            : put_fffd(d, out, cap, 0, d->n_run);
    }
    d->n_run = 0;
    d->run_broken = 0;
    return n;
}


size_t
infer_detok_push(infer_detok_t *d, int32_t id, char *out, size_t cap)
{
    const infer_tokenizer_t  *t = d->tok;
    const unsigned char      *s;
    size_t                    len, n, i;
    int                       b;

    if (id < 0 || id >= t->n_vocab || t->str_off[id] == INFER_TOK_NONE
        || (t->special[id] && !d->keep_special))
    {
        return 0;
    }
    s = (const unsigned char *) t->dec.p + t->dec_off[id];
    len = t->dec_off[id + 1] - t->dec_off[id];
    if (t->special[id]) {
        /* HF puts the token's content through the decoder like any other
         * piece, so it ends a byte run and is the text's first token */
        n = detok_run_end(d, out, cap);
        d->at_start = 0;
        return n + detok_bytes(d, s, len, out + n, cap - n);
    }
    b = t->dec_byte_fallback && !t->dec_byte_level
        ? byte_token_value(t->strs.p + t->str_off[id], t->str_len[id])
        : -1;
    if (b >= 0) {
        d->at_start = 0;
        return detok_run_byte(d, (unsigned char) b, out, cap);
    }
    n = detok_run_end(d, out, cap);

    if (d->at_start && t->dec_metaspace_first) {
        /* HF's Metaspace decoder drops the replacement char (not just the
         * first) in the first token; vocab pieces hold no real spaces. */
        d->at_start = 0;
        for (i = 0; i < len; i++) {
            if (s[i] != ' ') {
                n += detok_bytes(d, s + i, 1, out + n, cap - n);
            }
        }
        return n;
    }
    d->at_start = 0;
    return n + detok_bytes(d, s, len, out + n, cap - n);
}


size_t
infer_detok_flush(infer_detok_t *d, char *out, size_t cap)
{
    size_t  n;

    n = detok_run_end(d, out, cap);
    return d->n_pending > 0 ? detok_broken(d, out, cap, n) : n;
}
