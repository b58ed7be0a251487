/*
 * viewtab.c - view records: chunked table, per-thread free-record caches.
 * See viewtab.h for why and how.
 */
#include "store/viewtab.h"

#include <stdlib.h>
#include <string.h>

#include "core/array.h"
#include "core/prim.h"

#define CHUNK_BYTES ((size_t)RT_VIEW_CHUNK * sizeof(rt_viewrec))

_Thread_local rt_viewcache rt_t_viewcache;

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
   * acquire load in rt_viewtab_rec sees the zeroed records. */
  atomic_store_explicit(&t->chunks[t->nchunks], c, memory_order_release);
  t->nchunks++;
  return true;
}

static void cache_check(rt_viewtab *t) {
  rt_viewcache *c = &rt_t_viewcache;
  if (c->epoch != t->epoch) {
    c->epoch = t->epoch;
    c->n = 0;
  }
}

bool rt_viewtab_open_slow(rt_viewtab *t, ray_ref *ref, void **priv) {
  rt_viewcache *c = &rt_t_viewcache;
  cache_check(t);
  if (c->n == 0) {
    pthread_mutex_lock(&t->lock);
    if (t->nfree == 0 && !grow(t)) {
      pthread_mutex_unlock(&t->lock);
      return false;
    }
    uint32_t take = t->nfree < RT_VIEW_BATCH ? (uint32_t)t->nfree : RT_VIEW_BATCH;
    for (uint32_t i = 0; i < take; i++) c->idx[take - 1 - i] = t->free[--t->nfree];
    c->n = take;
    pthread_mutex_unlock(&t->lock);
  }
  return rt_viewtab_open(t, ref, priv);
}

void rt_viewtab_put_back_slow(rt_viewtab *t, uint32_t idx) {
  rt_viewcache *c = &rt_t_viewcache;
  cache_check(t);
  if (c->n == RT_VIEW_CACHE) {
    pthread_mutex_lock(&t->lock);
    if (free_reserve(t, RT_VIEW_BATCH)) {
      /* The oldest half goes back; the newest stay hot here. */
      for (uint32_t i = 0; i < RT_VIEW_BATCH; i++) t->free[t->nfree++] = c->idx[i];
      memmove(c->idx, c->idx + RT_VIEW_BATCH, RT_VIEW_BATCH * sizeof(uint32_t));
      c->n -= RT_VIEW_BATCH;
    }
    pthread_mutex_unlock(&t->lock);
    if (c->n == RT_VIEW_CACHE) return; /* no memory for the list: the record idles */
  }
  c->idx[c->n++] = idx;
}
