/*
 * idtable.c - chunked record tables with per-thread free-number caches.
 * See idtable.h.
 */
#include "core/idtable.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "core/array.h"
#include "core/prim.h"

int rt_idtable_init(rt_idtable *t, size_t item_size, unsigned chunk_shift, uint32_t max_chunks,
                    uint64_t epoch) {
  memset(t, 0, sizeof *t);
  t->chunks = rt_calloc(max_chunks, sizeof *t->chunks);
  if (!t->chunks) return -1;
  if (pthread_mutex_init(&t->lock, NULL) != 0) {
    free(t->chunks);
    return -1;
  }
  t->max_chunks = max_chunks;
  t->chunk_shift = chunk_shift;
  t->item_size = item_size;
  t->epoch = epoch;
  return 0;
}

static size_t chunk_bytes(const rt_idtable *t) {
  return t->item_size << t->chunk_shift;
}

void rt_idtable_destroy(rt_idtable *t) {
  for (uint32_t i = 0; i < t->nchunks; i++)
    rt_prim_unmap(atomic_load_explicit(&t->chunks[i], memory_order_relaxed), chunk_bytes(t));
  free(t->chunks);
  free(t->free);
  pthread_mutex_destroy(&t->lock);
  memset(t, 0, sizeof *t);
}

/* Under t->lock: room for `more` numbers on the shared free list. */
static bool free_reserve(rt_idtable *t, size_t more) {
  uint32_t *f = rt_array_reserve(t->free, &t->free_cap, t->nfree + more, sizeof *f, 4096);
  if (!f) return false;
  t->free = f;
  return true;
}

/* Under t->lock: one more chunk, its numbers on the free list. */
static bool grow(rt_idtable *t) {
  uint32_t per = 1u << t->chunk_shift;
  if (t->nchunks == t->max_chunks || !free_reserve(t, per)) return false;
  /* mmap'd pages are zeroed. Pre-faulted: a burst of allocations would
   * otherwise fault page by page. */
  void *c = rt_prim_map_large(chunk_bytes(t), chunk_bytes(t));
  if (!c) return false;
  uint32_t base = t->nchunks << t->chunk_shift;
  /* Pushed in reverse so that low numbers come out first (denser pages). */
  for (uint32_t i = per; i-- > 0;) t->free[t->nfree++] = base + i;
  /* release: pairs with rt_idtable_chunk's acquire load. */
  atomic_store_explicit(&t->chunks[t->nchunks], c, memory_order_release);
  t->nchunks++;
  return true;
}

static void cache_check(rt_idtable *t, rt_idcache *c) {
  if (c->epoch != t->epoch) {
    c->epoch = t->epoch;
    c->n = 0;
  }
}

uint32_t rt_idtable_alloc_slow(rt_idtable *t, rt_idcache *c) {
  cache_check(t, c);
  if (c->n == 0) {
    pthread_mutex_lock(&t->lock);
    if (t->nfree == 0 && !grow(t)) {
      pthread_mutex_unlock(&t->lock);
      return RT_IDTABLE_NONE;
    }
    uint32_t take = t->nfree < RT_IDTABLE_BATCH ? (uint32_t)t->nfree : RT_IDTABLE_BATCH;
    /* Reversed so the cache pops numbers in the order the list held them. */
    for (uint32_t i = 0; i < take; i++) c->idx[take - 1 - i] = t->free[--t->nfree];
    c->n = take;
    pthread_mutex_unlock(&t->lock);
  }
  return c->idx[--c->n];
}

void rt_idtable_free_slow(rt_idtable *t, rt_idcache *c, uint32_t idx) {
  cache_check(t, c);
  if (c->n == RT_IDTABLE_CACHE) {
    pthread_mutex_lock(&t->lock);
    if (free_reserve(t, RT_IDTABLE_BATCH)) {
      /* The oldest half goes back: the newest stay hot in this thread. */
      for (uint32_t i = 0; i < RT_IDTABLE_BATCH; i++) t->free[t->nfree++] = c->idx[i];
      memmove(c->idx, c->idx + RT_IDTABLE_BATCH, RT_IDTABLE_BATCH * sizeof(uint32_t));
      c->n -= RT_IDTABLE_BATCH;
    }
    pthread_mutex_unlock(&t->lock);
    if (c->n == RT_IDTABLE_CACHE) return; /* no memory for the list: the number idles */
  }
  c->idx[c->n++] = idx;
}
