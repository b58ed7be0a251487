/*
 * batchcache.c - the slow paths of per-thread batch caches. See batchcache.h.
 */
#include "core/batchcache.h"

#include <stdlib.h>
#include <string.h>

#include "core/array.h"

int rt_batchlist_init(rt_batchlist *l, size_t item_size, size_t min_cap, uint64_t epoch) {
  memset(l, 0, sizeof *l);
  l->item_size = item_size;
  l->min_cap = min_cap;
  l->epoch = epoch;
  return pthread_mutex_init(&l->lock, NULL) == 0 ? 0 : -1;
}

void rt_batchlist_destroy(rt_batchlist *l) {
  free(l->items);
  pthread_mutex_destroy(&l->lock);
  memset(l, 0, sizeof *l);
}

bool rt_batchlist_reserve(rt_batchlist *l, size_t more) {
  void *f = rt_array_reserve(l->items, &l->cap, l->n + more, l->item_size, l->min_cap);
  if (!f) return false;
  l->items = f;
  return true;
}

static void cache_check(rt_batchcache *c, const rt_batchlist *l) {
  if (c->epoch != l->epoch) {
    c->epoch = l->epoch;
    c->n = 0;
  }
}

/* The cache's items as bytes: u32 and ptr share the union's start. */
static unsigned char *cache_bytes(rt_batchcache *c) {
  return (unsigned char *)c->ptr;
}

bool rt_batchcache_refill(rt_batchcache *c, rt_batchlist *l, bool (*grow)(void *arg), void *arg) {
  cache_check(c, l);
  if (c->n) return true;
  pthread_mutex_lock(&l->lock);
  if (l->n == 0 && !grow(arg)) {
    pthread_mutex_unlock(&l->lock);
    return false;
  }
  /* The top of the list, in its order: the cache pops what the list would. */
  uint32_t take = l->n < RT_BATCH ? (uint32_t)l->n : RT_BATCH;
  l->n -= take;
  memcpy(cache_bytes(c), (unsigned char *)l->items + l->n * l->item_size, take * l->item_size);
  c->n = take;
  pthread_mutex_unlock(&l->lock);
  return true;
}

bool rt_batchcache_spill(rt_batchcache *c, rt_batchlist *l) {
  cache_check(c, l);
  if (c->n < RT_BATCH_CACHE) return true;
  size_t sz = l->item_size;
  pthread_mutex_lock(&l->lock);
  if (rt_batchlist_reserve(l, RT_BATCH)) {
    /* The oldest half goes back: the newest stay hot in this thread. */
    memcpy((unsigned char *)l->items + l->n * sz, cache_bytes(c), RT_BATCH * sz);
    l->n += RT_BATCH;
    memmove(cache_bytes(c), cache_bytes(c) + RT_BATCH * sz, (RT_BATCH_CACHE - RT_BATCH) * sz);
    c->n -= RT_BATCH;
  }
  pthread_mutex_unlock(&l->lock);
  return c->n < RT_BATCH_CACHE;
}
