/*
 * viewtab.c - view records: chunked table, per-thread free-record caches.
 * See viewtab.h for why and how.
 */
#include "store/viewtab.h"

#include <stdlib.h>
#include <string.h>

#include "core/array.h"
#include "core/error.h"
#include "core/prim.h"

#define BATCH 32
#define CACHE_MAX (2 * BATCH)
#define CHUNK_BYTES ((size_t)RT_VIEW_CHUNK * sizeof(rt_viewrec))

/* The calling thread's free records, for the runtime of `epoch` only. The
 * records in the cache of a thread that exits stay unused (at most
 * CACHE_MAX per thread, for the runtime's life). */
static _Thread_local struct {
  uint64_t epoch;
  uint32_t n;
  uint32_t idx[CACHE_MAX];
} t_cache;

int rt_viewtab_init(rt_viewtab *t, uint64_t epoch, uint32_t salt) {
  memset(t, 0, sizeof *t);
  t->chunks = calloc(RT_VIEW_MAX_CHUNKS, sizeof *t->chunks);
  if (!t->chunks) return -1;
  if (pthread_mutex_init(&t->lock, NULL) != 0) {
    free(t->chunks);
    return -1;
  }
  t->epoch = epoch;
  t->salt = salt;
  return 0;
}

void rt_viewtab_destroy(rt_viewtab *t) {
  for (uint32_t i = 0; i < t->nchunks; i++)
    rt_prim_unmap(atomic_load_explicit(&t->chunks[i], memory_order_relaxed), CHUNK_BYTES);
  free(t->chunks);
  free(t->free);
  pthread_mutex_destroy(&t->lock);
  memset(t, 0, sizeof *t);
}

/* Under t->lock: room for `more` indices on the shared free list. */
static bool free_reserve(rt_viewtab *t, size_t more) {
  uint32_t *f = rt_array_reserve(t->free, &t->free_cap, t->nfree + more, sizeof *f, 4096);
  if (!f) return false;
  t->free = f;
  return true;
}

/* Under t->lock: one more chunk, its records on the free list. */
static bool grow(rt_viewtab *t) {
  if (t->nchunks == RT_VIEW_MAX_CHUNKS || !free_reserve(t, RT_VIEW_CHUNK)) return false;
  /* Zeroed pages: every record starts free with seq 0. */
  rt_viewrec *c = rt_prim_map_large(CHUNK_BYTES, CHUNK_BYTES);
  if (!c) return false;
  uint32_t base = t->nchunks << RT_VIEW_CHUNK_SHIFT;
  for (uint32_t i = RT_VIEW_CHUNK; i-- > 0;) t->free[t->nfree++] = base + i;
  /* release: a thread that resolves an index of this chunk with the
   * acquire load in rec_at sees the zeroed records. */
  atomic_store_explicit(&t->chunks[t->nchunks], c, memory_order_release);
  t->nchunks++;
  return true;
}

static inline rt_viewrec *rec_at(rt_viewtab *t, uint32_t idx) {
  if ((idx >> RT_VIEW_CHUNK_SHIFT) >= RT_VIEW_MAX_CHUNKS) return NULL;
  /* acquire: pairs with grow's release store. */
  rt_viewrec *c =
      atomic_load_explicit(&t->chunks[idx >> RT_VIEW_CHUNK_SHIFT], memory_order_acquire);
  return c ? &c[idx & (RT_VIEW_CHUNK - 1)] : NULL;
}

static inline void cache_check(rt_viewtab *t) {
  if (RT_UNLIKELY(t_cache.epoch != t->epoch)) {
    t_cache.epoch = t->epoch;
    t_cache.n = 0;
  }
}

bool rt_viewtab_open(rt_viewtab *t, ray_ref *ref, void **priv) {
  cache_check(t);
  if (RT_UNLIKELY(t_cache.n == 0)) {
    pthread_mutex_lock(&t->lock);
    if (t->nfree == 0 && !grow(t)) {
      pthread_mutex_unlock(&t->lock);
      return false;
    }
    uint32_t take = t->nfree < BATCH ? (uint32_t)t->nfree : BATCH;
    for (uint32_t i = 0; i < take; i++) t_cache.idx[take - 1 - i] = t->free[--t->nfree];
    t_cache.n = take;
    pthread_mutex_unlock(&t->lock);
  }
  uint32_t idx = t_cache.idx[--t_cache.n];
  rt_viewrec *r = rec_at(t, idx);
  if (!r) __builtin_unreachable(); /* a cached index's chunk exists */
  /* relaxed: the record is this thread's until a release claims it, and a
   * release learns of the view (and so of ref and seq) only through the
   * program's own hand-off of the view, which orders these stores first. A
   * stale copy's CAS only has to fail, which any other value makes it do. */
  uint32_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed) + 1; /* odd: held */
  r->ref = ref;
  atomic_store_explicit(&r->seq, seq, memory_order_relaxed);
  *priv = (void *)(uintptr_t)(((uint64_t)(seq ^ t->salt) << 32) | ((uint64_t)idx + 1));
  return true;
}

/* Returns a claimed record to this thread's cache. */
static void put_back(rt_viewtab *t, uint32_t idx) {
  cache_check(t);
  if (t_cache.n == CACHE_MAX) {
    pthread_mutex_lock(&t->lock);
    if (free_reserve(t, BATCH)) {
      /* The oldest half goes back; the newest stay hot here. */
      for (uint32_t i = 0; i < BATCH; i++) t->free[t->nfree++] = t_cache.idx[i];
      memmove(t_cache.idx, t_cache.idx + BATCH, BATCH * sizeof(uint32_t));
      t_cache.n -= BATCH;
    }
    pthread_mutex_unlock(&t->lock);
    if (t_cache.n == CACHE_MAX) return; /* no memory for the list: the record idles */
  }
  t_cache.idx[t_cache.n++] = idx;
}

ray_ref *rt_viewtab_close(rt_viewtab *t, void *priv) {
  uint64_t v = (uint64_t)(uintptr_t)priv;
  uint32_t lo = (uint32_t)v;
  if (lo == 0) return NULL;
  uint32_t idx = lo - 1;
  rt_viewrec *r = rec_at(t, idx);
  if (!r) return NULL;
  uint32_t seq = (uint32_t)(v >> 32) ^ t->salt;
  if (!(seq & 1)) return NULL;
  /* relaxed: the CAS only decides which release of this get wins; what the
   * winner reads next (ref) was written before the view reached it. */
  if (!atomic_compare_exchange_strong_explicit(&r->seq, &seq, seq + 1, memory_order_relaxed,
                                               memory_order_relaxed))
    return NULL;
  ray_ref *ref = r->ref;
  put_back(t, idx);
  return ref;
}
