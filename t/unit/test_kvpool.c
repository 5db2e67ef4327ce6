/*
 * The KV block pool against a simple model of it: random sequences of
 * allocations, shares (lookups), publications and releases, after each of
 * which every block's reference count, the free and cached counts, and the
 * block each call returned must be the model's.  The model is the
 * definition written plainly: a free stack, a list of unreferenced named
 * blocks in release order (evicted from its front), and names compared by
 * hash, previous hash and tokens.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvpool.h"
#include "tap.h"

#define N_BLOCKS  24
#define BS        4
#define N_NAMES   12
#define MAX_HELD  256

typedef struct {
    uint64_t  hash, prev;
    int32_t   tokens[BS];
} name_t;

typedef struct {
    int      refs[N_BLOCKS];
    int      name[N_BLOCKS];        /* index into names, -1: unnamed */
    int32_t  free[N_BLOCKS];
    int      n_free;
    int32_t  lru[N_BLOCKS];         /* oldest first */
    int      n_lru;
} model_t;

static name_t   names[N_NAMES];
static uint64_t rng = 88172645463325252ULL;

static uint64_t
next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int
model_named(const model_t *m, int k)
{
    int b;

    for (b = 0; b < N_BLOCKS; b++) {
        if (m->name[b] >= 0 && names[m->name[b]].hash == names[k].hash
            && names[m->name[b]].prev == names[k].prev
            && memcmp(names[m->name[b]].tokens, names[k].tokens,
                      sizeof(names[k].tokens)) == 0)
        {
            return b;
        }
    }
    return -1;
}

static void
lru_remove(model_t *m, int b)
{
    int i;

    for (i = 0; i < m->n_lru; i++) {
        if (m->lru[i] == b) {
            memmove(&m->lru[i], &m->lru[i + 1],
                    (m->n_lru - i - 1) * sizeof(int32_t));
            m->n_lru--;
            return;
        }
    }
}

static int
model_alloc(model_t *m)
{
    int b;

    if (m->n_free > 0) {
        b = m->free[--m->n_free];
    } else if (m->n_lru > 0) {
        b = m->lru[0];
        lru_remove(m, b);
        m->name[b] = -1;
    } else {
        return -1;
    }
    m->refs[b] = 1;
    return b;
}

static void
model_release(model_t *m, int b)
{
    if (--m->refs[b] > 0) {
        return;
    }
    if (m->name[b] >= 0) {
        m->lru[m->n_lru++] = b;
    } else {
        m->free[m->n_free++] = b;
    }
}

/* Every count the pool reports against the model's; 0 when they agree. */
static int
compare(const infer_kvpool_t *p, const model_t *m, int *bad)
{
    int b;

    if (infer_kvpool_available(p) != m->n_free + m->n_lru
        || infer_kvpool_cached(p) != m->n_lru)
    {
        *bad = -1;
        return -1;
    }
    for (b = 0; b < N_BLOCKS; b++) {
        if (infer_kvpool_refs(p, b) != m->refs[b]) {
            *bad = b;
            return -1;
        }
    }
    return 0;
}

/* One random run of `ops` operations; 0 when the pool matched the model
 * throughout, else the operation that broke it. */
static int
run(int cache, int ops, int *allocs, int *evictions, int *hits)
{
    infer_kvpool_t *p = infer_kvpool_create(N_BLOCKS, BS, cache);
    model_t         m;
    int32_t         held[MAX_HELD];
    int             n_held = 0, op, i, k, b, want, got, bad, failed = 0;

    memset(&m, 0, sizeof(m));
    for (b = 0; b < N_BLOCKS; b++) {
        m.free[b] = N_BLOCKS - 1 - b;
        m.name[b] = -1;
    }
    m.n_free = N_BLOCKS;

    for (op = 1; op <= ops && !failed; op++) {
        switch (next_rand() % 4) {
        case 0:                                 /* allocate */
            if (n_held == MAX_HELD) {
                break;
            }
            *evictions += m.n_free == 0 && m.n_lru > 0;
            want = model_alloc(&m);
            got = infer_kvpool_alloc(p);
            if (want != got) {
                diag("op %d alloc: got %d, model %d", op, got, want);
                failed = op;
                break;
            }
            if (got >= 0) {
                held[n_held++] = got;
                ++*allocs;
            }
            break;
        case 1:                                 /* release */
            if (n_held == 0) {
                break;
            }
            i = next_rand() % n_held;
            b = held[i];
            held[i] = held[--n_held];
            model_release(&m, b);
            infer_kvpool_release(p, b);
            break;
        case 2:                                 /* name a held block */
            if (n_held == 0) {
                break;
            }
            b = held[next_rand() % n_held];
            k = next_rand() % N_NAMES;
            if (cache && m.name[b] < 0 && model_named(&m, k) < 0) {
                m.name[b] = k;
            }
            infer_kvpool_publish(p, b, names[k].hash, names[k].prev,
                                 names[k].tokens);
            break;
        default:                                /* share by name */
            if (n_held == MAX_HELD) {
                break;
            }
            k = next_rand() % N_NAMES;
            want = cache ? model_named(&m, k) : -1;
            got = infer_kvpool_lookup(p, names[k].hash, names[k].prev,
                                      names[k].tokens);
            if (want != got) {
                diag("op %d lookup of name %d: got %d, model %d", op, k,
                     got, want);
                failed = op;
                break;
            }
            if (got >= 0) {
                if (m.refs[got]++ == 0) {
                    lru_remove(&m, got);
                }
                held[n_held++] = got;
                ++*hits;
            }
            break;
        }
        if (!failed && compare(p, &m, &bad) != 0) {
            diag("op %d: counts differ (block %d)", op, bad);
            failed = op;
        }
    }

    /* every reference dropped: the whole pool is available again */
    while (!failed && n_held > 0) {
        b = held[--n_held];
        model_release(&m, b);
        infer_kvpool_release(p, b);
    }
    if (!failed && (compare(p, &m, &bad) != 0
                    || infer_kvpool_available(p) != N_BLOCKS))
    {
        diag("after releasing everything: %d available",
             infer_kvpool_available(p));
        failed = ops + 1;
    }
    infer_kvpool_destroy(p);
    return failed;
}

static void
test_hash(void)
{
    int32_t  a[4] = { 1, 2, 3, 4 }, b[4] = { 1, 2, 3, 5 };
    uint64_t h1 = infer_kvpool_hash(0, a, 4);

    ok(h1 == infer_kvpool_hash(0, a, 4), "hash is a function of its input");
    ok(h1 != infer_kvpool_hash(0, b, 4), "one token changes the hash");
    ok(h1 != infer_kvpool_hash(h1, a, 4),
       "the previous block's hash changes it: the same tokens later in a "
       "prompt are another block");
}

int
main(void)
{
    int  k, j, seed, failed, allocs, evictions, hits;

    for (k = 0; k < N_NAMES; k++) {
        for (j = 0; j < BS; j++) {
            names[k].tokens[j] = (int32_t) (next_rand() % 7);
        }
        names[k].prev = next_rand() % 3;
        names[k].hash = infer_kvpool_hash(names[k].prev, names[k].tokens, BS);
    }
    /* names 1 and 2 collide on the hash (tokens differ), names 3 and 4 on
     * the hash and tokens (the previous block differs): the pool must
     * tell them apart */
    names[2].hash = names[1].hash;
    names[2].tokens[0] = names[1].tokens[0] + 1;
    memcpy(names[4].tokens, names[3].tokens, sizeof(names[3].tokens));
    names[4].hash = names[3].hash;
    names[4].prev = names[3].prev + 1;

    test_hash();
    for (j = 0; j < 2; j++) {
        failed = 0;
        allocs = evictions = hits = 0;
        for (seed = 0; seed < 200 && !failed; seed++) {
            failed = run(j, 2000, &allocs, &evictions, &hits);
        }
        ok(!failed, "cache %s: 200 random runs of 2000 operations match "
           "the model (refs, free, cached, ids allocated and found)",
           j ? "on" : "off");
        ok(allocs > 1000 && (j == 0 || (evictions > 100 && hits > 1000)),
           "cache %s: the runs exercised it (%d allocations, %d evictions, "
           "%d shares)", j ? "on" : "off", allocs, evictions, hits);
    }
    printf("1..%d\n", tap_n);
    return tap_failed != 0;
}
