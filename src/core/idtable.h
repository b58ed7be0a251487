/*
 * idtable.h - a table of fixed-size records named by number, with
 * per-thread caches of free numbers.
 *
 * Records live in chunks of 2^chunk_shift that are mapped on demand and
 * never moved or freed before the table goes, so a record's address is
 * stable and looking one up is two loads with no lock (the chunk pointer,
 * then the record). Chunks are zeroed pages: a new record starts all zero.
 *
 * Free numbers: each thread keeps a small LIFO cache per kind of table
 * (hot in its cache), refilled from and spilled to the shared free list in
 * batches of RT_IDTABLE_BATCH under one mutex, so the mutex is taken once
 * per batch of allocations, not per allocation. The cache belongs to the
 * caller (one _Thread_local rt_idcache per kind of table) and carries the
 * table's epoch, so a cache left from an earlier runtime is dropped, never
 * used. The numbers in the cache of a thread that exits stay unused (at most
 * RT_IDTABLE_CACHE per thread, for the table's life).
 *
 * Used by the entry table (store/slots.h) and the view table
 * (store/viewtab.h).
 */
#ifndef RT_IDTABLE_H
#define RT_IDTABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RT_IDTABLE_NONE UINT32_MAX
#define RT_IDTABLE_BATCH 32
#define RT_IDTABLE_CACHE (2 * RT_IDTABLE_BATCH)

typedef struct rt_idtable {
  _Atomic(void *) *chunks; /* max_chunks pointers */
  uint32_t max_chunks;
  unsigned chunk_shift;
  size_t item_size;
  pthread_mutex_t lock; /* guards the free list and growth */
  uint32_t nchunks;     /* under lock */
  uint32_t *free;       /* shared free list, under lock */
  size_t nfree, free_cap;
  uint64_t epoch;
} rt_idtable;

typedef struct rt_idcache {
  uint64_t epoch;
  uint32_t n;
  uint32_t idx[RT_IDTABLE_CACHE];
} rt_idcache;

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

/* The slow paths of the two calls below. */
uint32_t rt_idtable_alloc_slow(rt_idtable *t, rt_idcache *c);
void rt_idtable_free_slow(rt_idtable *t, rt_idcache *c, uint32_t idx);

/* A free number (its record is as its last user left it, or zero), or
 * RT_IDTABLE_NONE when the table is full or memory ran out. */
static inline uint32_t rt_idtable_alloc(rt_idtable *t, rt_idcache *c) {
  if (__builtin_expect(c->epoch != t->epoch || c->n == 0, 0)) return rt_idtable_alloc_slow(t, c);
  return c->idx[--c->n];
}

/* Gives a number back (any thread may free any number). */
static inline void rt_idtable_free(rt_idtable *t, rt_idcache *c, uint32_t idx) {
  if (__builtin_expect(c->epoch != t->epoch || c->n == RT_IDTABLE_CACHE, 0)) {
    rt_idtable_free_slow(t, c, idx);
    return;
  }
  c->idx[c->n++] = idx;
}

#endif
