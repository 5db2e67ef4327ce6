/*
 * The paged KV cache's block pool: which physical blocks are free, which
 * sequences hold each block, and (with the prefix cache) which full blocks
 * are known by the tokens they hold, so that a later sequence with the same
 * prefix can read them instead of computing them again.
 *
 * A full block is named by a hash of its tokens chained with the previous
 * block's hash (so a block's name stands for the whole prefix up to its
 * end).  A block is referenced by every sequence whose block table holds
 * it; shared blocks are read-only (a sequence only shares blocks strictly
 * before the positions it computes).  When its last reference goes, a named
 * block stays cached, unreferenced, in least-recently-released order, until
 * an allocation finds no free block and evicts the oldest.  Unnamed blocks
 * go straight back to the free stack.
 *
 * The pool keeps no KV data (the backend does); it is the scheduler's,
 * used from its thread only.
 */
#ifndef INFER_KVPOOL_H
#define INFER_KVPOOL_H

#include <stdint.h>

typedef struct infer_kvpool infer_kvpool_t;

/* A pool of n_blocks blocks of block_size tokens; cache = 0 makes every
 * block go back to the free stack when released (no prefix cache).  NULL
 * when out of memory. */
infer_kvpool_t *infer_kvpool_create(int n_blocks, int block_size, int cache);
void infer_kvpool_destroy(infer_kvpool_t *p);

/* Blocks an allocation can take: free ones and cached unreferenced ones. */
int infer_kvpool_available(const infer_kvpool_t *p);
/* Of those, the cached ones (named, unreferenced, kept for reuse). */
int infer_kvpool_cached(const infer_kvpool_t *p);
/* References to a block (tests). */
int infer_kvpool_refs(const infer_kvpool_t *p, int32_t block);

/* A block with one reference: from the free stack, else the least recently
 * released cached block (forgetting its name); -1 when none is left. */
int32_t infer_kvpool_alloc(infer_kvpool_t *p);
/* Drops one reference. */
void infer_kvpool_release(infer_kvpool_t *p, int32_t block);

/* The name of the block_size tokens that follow a prefix named prev (0 for
 * the first block). */
uint64_t infer_kvpool_hash(uint64_t prev, const int32_t *tokens, int n);
/* Names a full block that holds `tokens` after the prefix named prev;
 * nothing when the cache is off, the block is already named, or another
 * block has that name (the first stays the one found). */
void infer_kvpool_publish(infer_kvpool_t *p, int32_t block, uint64_t hash,
    uint64_t prev, const int32_t *tokens);
/* The cached block holding `tokens` after the prefix named prev, with one
 * more reference, or -1.  The tokens and prev are compared, not only the
 * hash. */
int32_t infer_kvpool_lookup(infer_kvpool_t *p, uint64_t hash, uint64_t prev,
    const int32_t *tokens);

#endif
