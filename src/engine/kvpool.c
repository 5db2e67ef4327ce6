/*
 * The KV block pool (see kvpool.h): a free stack, reference counts, and for
 * the prefix cache a hash table of named blocks plus a doubly linked list of
 * the named blocks nobody references, oldest release first.
 */
#include <stdlib.h>
#include <string.h>
#include "kvpool.h"

struct infer_kvpool {
    int        n_blocks;
    int        block_size;
    int        cache;
    int32_t   *free;          /* stack of unnamed, unreferenced blocks */
    int        n_free;
    int32_t   *refs;          /* [n_blocks] */
    uint8_t   *named;         /* [n_blocks] */
    uint64_t  *hash;          /* [n_blocks] the name, when named */
    uint64_t  *prev;          /* [n_blocks] the previous block's name */
    int32_t   *tokens;        /* [n_blocks * block_size] when named */
    int32_t   *bucket;        /* [n_buckets] first block of each chain */
    int32_t   *chain;         /* [n_blocks] next block in its bucket */
    uint32_t   mask;          /* n_buckets - 1 */
    int32_t   *lru_prev, *lru_next;   /* [n_blocks] */
    int32_t    lru_head, lru_tail;    /* oldest, newest */
    int        n_cached;
};

/* splitmix64's finalizer: every input bit moves every output bit. */
static uint64_t
mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t
infer_kvpool_hash(uint64_t prev, const int32_t *tokens, int n)
{
    uint64_t h = mix(prev ^ 0x9e3779b97f4a7c15ULL);
    int      i;

    for (i = 0; i < n; i++) {
        h = mix(h + (uint32_t) tokens[i] + 0x9e3779b97f4a7c15ULL);
    }
    return h;
}

infer_kvpool_t *
infer_kvpool_create(int n_blocks, int block_size, int cache)
{
    infer_kvpool_t *p = calloc(1, sizeof(*p));
    uint32_t        n_buckets = 1;
    int             i;

    if (p == NULL) {
        return NULL;
    }
    while (n_buckets < (uint32_t) n_blocks) {
        n_buckets <<= 1;
    }
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->cache = cache;
    p->mask = n_buckets - 1;
    p->free = malloc(n_blocks * sizeof(int32_t));
    p->refs = calloc(n_blocks, sizeof(int32_t));
    p->named = calloc(n_blocks, 1);
    p->hash = calloc(n_blocks, sizeof(uint64_t));
    p->prev = calloc(n_blocks, sizeof(uint64_t));
    p->tokens = cache ? malloc((size_t) n_blocks * block_size
                               * sizeof(int32_t))
                      : malloc(1);
    p->bucket = malloc(n_buckets * sizeof(int32_t));
    p->chain = malloc(n_blocks * sizeof(int32_t));
    p->lru_prev = malloc(n_blocks * sizeof(int32_t));
    p->lru_next = malloc(n_blocks * sizeof(int32_t));
    if (!p->free || !p->refs || !p->named || !p->hash || !p->prev
        || !p->tokens || !p->bucket || !p->chain || !p->lru_prev
        || !p->lru_next)
    {
        infer_kvpool_destroy(p);
        return NULL;
    }
    /* block 0 on top: the first allocations take 0, 1, 2, ... */
    for (i = 0; i < n_blocks; i++) {
        p->free[i] = n_blocks - 1 - i;
    }
    p->n_free = n_blocks;
    memset(p->bucket, 0xff, n_buckets * sizeof(int32_t));
    p->lru_head = p->lru_tail = -1;
    return p;
}

void
infer_kvpool_destroy(infer_kvpool_t *p)
{
    if (p == NULL) {
        return;
    }
    free(p->free);
    free(p->refs);
    free(p->named);
    free(p->hash);
    free(p->prev);
    free(p->tokens);
    free(p->bucket);
    free(p->chain);
    free(p->lru_prev);
    free(p->lru_next);
    free(p);
}

int
infer_kvpool_available(const infer_kvpool_t *p)
{
    return p->n_free + p->n_cached;
}

int
infer_kvpool_cached(const infer_kvpool_t *p)
{
    return p->n_cached;
}

int
infer_kvpool_refs(const infer_kvpool_t *p, int32_t block)
{
    return p->refs[block];
}

/* ---- the unreferenced named blocks, oldest first -------------------------- */

static void
lru_unlink(infer_kvpool_t *p, int32_t b)
{
    if (p->lru_prev[b] >= 0) {
        p->lru_next[p->lru_prev[b]] = p->lru_next[b];
    } else {
        p->lru_head = p->lru_next[b];
    }
    if (p->lru_next[b] >= 0) {
        p->lru_prev[p->lru_next[b]] = p->lru_prev[b];
    } else {
        p->lru_tail = p->lru_prev[b];
    }
    p->n_cached--;
}

static void
lru_append(infer_kvpool_t *p, int32_t b)
{
    p->lru_prev[b] = p->lru_tail;
    p->lru_next[b] = -1;
    if (p->lru_tail >= 0) {
        p->lru_next[p->lru_tail] = b;
    } else {
        p->lru_head = b;
    }
    p->lru_tail = b;
    p->n_cached++;
}

/* ---- names ----------------------------------------------------------------- */

static void
unname(infer_kvpool_t *p, int32_t b)
{
    int32_t *pp = &p->bucket[p->hash[b] & p->mask];

    while (*pp != b) {
        pp = &p->chain[*pp];
    }
    *pp = p->chain[b];
    p->named[b] = 0;
}

static int32_t
find(const infer_kvpool_t *p, uint64_t hash, uint64_t prev,
    const int32_t *tokens)
{
    int32_t b;

    for (b = p->bucket[hash & p->mask]; b >= 0; b = p->chain[b]) {
        if (p->hash[b] == hash && p->prev[b] == prev
            && memcmp(p->tokens + (size_t) b * p->block_size, tokens,
                      p->block_size * sizeof(int32_t)) == 0)
        {
            return b;
        }
    }
    return -1;
}

void
infer_kvpool_publish(infer_kvpool_t *p, int32_t block, uint64_t hash,
    uint64_t prev, const int32_t *tokens)
{
    uint32_t i;

    if (!p->cache || p->named[block] || find(p, hash, prev, tokens) >= 0) {
        return;
    }
    p->named[block] = 1;
    p->hash[block] = hash;
    p->prev[block] = prev;
    memcpy(p->tokens + (size_t) block * p->block_size, tokens,
           p->block_size * sizeof(int32_t));
    i = hash & p->mask;
    p->chain[block] = p->bucket[i];
    p->bucket[i] = block;
}

int32_t
infer_kvpool_lookup(infer_kvpool_t *p, uint64_t hash, uint64_t prev,
    const int32_t *tokens)
{
    int32_t b;

    if (!p->cache || (b = find(p, hash, prev, tokens)) < 0) {
        return -1;
    }
    if (p->refs[b]++ == 0) {
        lru_unlink(p, b);
    }
    return b;
}

/* ---- references -------------------------------------------------------------- */

int32_t
infer_kvpool_alloc(infer_kvpool_t *p)
{
    int32_t b;

    if (p->n_free > 0) {
        b = p->free[--p->n_free];
    } else if (p->lru_head >= 0) {
        b = p->lru_head;
        lru_unlink(p, b);
        unname(p, b);
    } else {
        return -1;
    }
    p->refs[b] = 1;
    return b;
}

void
infer_kvpool_release(infer_kvpool_t *p, int32_t block)
{
    if (--p->refs[block] > 0) {
        return;
    }
    if (p->named[block]) {
        lru_append(p, block);
    } else {
        p->free[p->n_free++] = block;
    }
}
