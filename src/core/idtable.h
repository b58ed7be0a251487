/*
 * idtable.h - a table of fixed-size records named by number, with
 * per-thread caches of free numbers.
 *
 * Records live in chunks of 2^chunk_shift that are mapped on demand and
 * never moved or freed before the table goes, so a record's address is
 * stable and looking one up is two loads with no lock (the chunk pointer,
 * then the record). Chunks are zeroed pages: a new record starts all zero.
 *
 * Free numbers: a shared free list with per-thread caches moved in batches
 * (core/batchcache.h). The cache belongs to the caller (one _Thread_local
 * rt_idcache per kind of table).
 *
 * Used by the entry table (store/slots.h) and the view table
 * (store/viewtab.h).
 */
#ifndef RT_IDTABLE_H
#define RT_IDTABLE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/batchcache.h"

#define RT_IDTABLE_NONE UINT32_MAX

typedef struct rt_idtable {
  _Atomic(void *) *chunks; /* max_chunks pointers */
  uint32_t max_chunks;
  unsigned chunk_shift;
  size_t item_size;
  rt_batchlist free; /* free numbers; its lock also guards growth */
  uint32_t nchunks;  /* under free.lock */
} rt_idtable;

typedef rt_batchcache rt_idcache;

/* 0, or -1 when memory ran out. */
int rt_idtable_init(rt_idtable *t, size_t item_size, unsigned chunk_shift, uint32_t max_chunks,
                    uint64_t epoch);
/* Unmaps every chunk. */
void rt_idtable_destroy(rt_idtable *t);

/* The chunk that holds number idx, or NULL (out of range, not made yet).
 * acquire: pairs with the release store that publishes a new chunk, so its
 * zeroed records are visible; once seen, a chunk never changes. */
static inline void *rt_idtable_chunk(const rt_idtable *t, uint32_t idx) {
  uint32_t c = idx >> t->chunk_shift;
  if (c >= t->max_chunks) return NULL;
  return atomic_load_explicit(&t->chunks[c], memory_order_acquire);
}

/* Under t->free.lock: maps one more chunk and puts its numbers on the free
 * list (the cache's refill calls it when the list is empty). */
bool rt_idtable_grow(void *t);

/* A free number (its record is as its last user left it, or zero), or
 * RT_IDTABLE_NONE when the table is full or memory ran out. */
static inline uint32_t rt_idtable_alloc(rt_idtable *t, rt_idcache *c) {
  return rt_batchcache_get_u32(c, &t->free, rt_idtable_grow, t);
}

/* Gives a number back (any thread may free any number). */
static inline void rt_idtable_free(rt_idtable *t, rt_idcache *c, uint32_t idx) {
  rt_batchcache_put_u32(c, &t->free, idx);
}

#endif
