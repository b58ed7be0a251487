/*
 * batchcache.h - per-thread caches of free items over one shared free list,
 * moved in batches.
 *
 * A pool of reusable items (task records, record numbers) keeps its free
 * items on a shared list under a mutex. Taking that mutex per allocation
 * would make every allocation a contended lock, so each thread keeps a small
 * LIFO cache of free items (hot in its cache): it refills from the shared
 * list and spills to it RT_BATCH items at a time, and the mutex is taken
 * once per batch. A full cache gives back its oldest half; the newest stay.
 * Items are typically made on one thread and freed on another (a submitter
 * and a worker), so they flow cache -> shared list -> other cache.
 *
 * The cache holds the items themselves (pointers or numbers), not links
 * threaded through them: moving a batch copies RT_BATCH words and touches no
 * item, where a list would walk items last written on another core.
 *
 * The cache belongs to its user (one _Thread_local rt_batchcache per kind
 * of pool) and carries the pool's epoch, so a cache left from an earlier
 * runtime is dropped, never used. Items in the cache of a thread that
 * exits stay unused (at most RT_BATCH_CACHE per thread, for the pool's
 * life). Used by the task record pool (task/taskpool.c) and record-number
 * tables (core/idtable.c).
 */
#ifndef RT_BATCHCACHE_H
#define RT_BATCHCACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_BATCH 32
#define RT_BATCH_CACHE (2 * RT_BATCH)

/* The shared free list: items of item_size bytes (4 or 8). */
typedef struct rt_batchlist {
  pthread_mutex_t lock; /* guards the list, and the owner's growth */
  void *items;
  size_t n, cap;
  size_t item_size;
  size_t min_cap; /* the first allocation, in items */
  uint64_t epoch;
} rt_batchlist;

/* One thread's cache; zero-initialised (a _Thread_local) is valid. */
typedef struct rt_batchcache {
  uint64_t epoch;
  uint32_t n;
  union {
    uint32_t u32[RT_BATCH_CACHE];
    void *ptr[RT_BATCH_CACHE];
  };
} rt_batchcache;

/* 0, or -1 when the mutex could not be made. */
int rt_batchlist_init(rt_batchlist *l, size_t item_size, size_t min_cap, uint64_t epoch);
void rt_batchlist_destroy(rt_batchlist *l);
/* Under l->lock: room for `more` items, for an owner's grow that pushes. */
bool rt_batchlist_reserve(rt_batchlist *l, size_t more);

/* Slow path of a get: resets a stale cache and, if it is empty, refills
 * it with up to RT_BATCH items; grow(arg), called under l->lock when the
 * list is empty, adds items to it (rt_batchlist_reserve, then store them
 * at items[n++]). false: no item (grow failed). */
bool rt_batchcache_refill(rt_batchcache *c, rt_batchlist *l, bool (*grow)(void *arg), void *arg);
/* Slow path of a put: resets a stale cache and, if it is full, gives the
 * oldest RT_BATCH items back. false: it stays full (no memory for the
 * list), and the item being put is not kept. */
bool rt_batchcache_spill(rt_batchcache *c, rt_batchlist *l);

/* The fast paths: a get pops the cache, a put pushes on it; each goes to
 * the slow path once per RT_BATCH calls (or for a stale cache). */
static inline void *rt_batchcache_get_ptr(rt_batchcache *c, rt_batchlist *l,
                                          bool (*grow)(void *arg), void *arg) {
  if (__builtin_expect(c->epoch != l->epoch || c->n == 0, 0) &&
      !rt_batchcache_refill(c, l, grow, arg))
    return NULL;
  return c->ptr[--c->n];
}

static inline void rt_batchcache_put_ptr(rt_batchcache *c, rt_batchlist *l, void *item) {
  if (__builtin_expect(c->epoch != l->epoch || c->n == RT_BATCH_CACHE, 0) &&
      !rt_batchcache_spill(c, l))
    return; /* no memory for the list: the item idles until the pool goes */
  c->ptr[c->n++] = item;
}

/* As above for numbers; UINT32_MAX when there is none. */
static inline uint32_t rt_batchcache_get_u32(rt_batchcache *c, rt_batchlist *l,
                                             bool (*grow)(void *arg), void *arg) {
  if (__builtin_expect(c->epoch != l->epoch || c->n == 0, 0) &&
      !rt_batchcache_refill(c, l, grow, arg))
    return UINT32_MAX;
  return c->u32[--c->n];
}

static inline void rt_batchcache_put_u32(rt_batchcache *c, rt_batchlist *l, uint32_t item) {
  if (__builtin_expect(c->epoch != l->epoch || c->n == RT_BATCH_CACHE, 0) &&
      !rt_batchcache_spill(c, l))
    return;
  c->u32[c->n++] = item;
}

#endif
