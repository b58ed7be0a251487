/*
 * slots.c - chunked entry table with per-thread free-slot caches.
 * See slots.h for the design.
 */
#include <stdlib.h>
#include <string.h>

#include "core/array.h"
#include "core/prim.h"
#include "store/slots.h"

#define CACHE_MAX (2 * RT_SLOT_BATCH)

/* The calling thread's cache of free slots. `epoch` ties it to one runtime:
 * after ray_shutdown + ray_init a stale cache is dropped, not used. Slots in
 * the cache of a thread that exits are not reused (at most CACHE_MAX per
 * thread, for the runtime's life). */
static _Thread_local struct {
  uint64_t epoch;
  uint32_t n;
  uint32_t slot[CACHE_MAX];
} t_cache;

#define CHUNK_BYTES ((size_t)RT_CHUNK_SLOTS * sizeof(rt_entry))

int rt_slots_init(rt_slots *s, uint64_t epoch, uint32_t salt) {
  memset(s, 0, sizeof *s);
  s->chunks = calloc(RT_MAX_CHUNKS, sizeof *s->chunks);
  if (!s->chunks) return -1;
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    free(s->chunks);
    return -1;
  }
  s->epoch = epoch;
  s->salt = salt;
  return 0;
}

void rt_slots_destroy(rt_slots *s) {
  for (uint32_t i = 0; i < s->nchunks; i++)
    rt_prim_unmap(atomic_load_explicit(&s->chunks[i], memory_order_relaxed), CHUNK_BYTES);
  free(s->chunks);
  free(s->free);
  pthread_mutex_destroy(&s->lock);
  memset(s, 0, sizeof *s);
}

/* Under s->lock: make room for `more` slots on the shared free list. */
static bool free_reserve(rt_slots *s, size_t more) {
  uint32_t *f = rt_array_reserve(s->free, &s->free_cap, s->nfree + more, sizeof *f, 4096);
  if (!f) return false;
  s->free = f;
  return true;
}

/* Under s->lock: add a chunk and put its slots on the free list. */
static bool grow(rt_slots *s) {
  if (s->nchunks == RT_MAX_CHUNKS || !free_reserve(s, RT_CHUNK_SLOTS)) return false;
  /* mmap'd pages are zeroed: every entry starts FREE with generation 0.
   * Pre-faulted: a burst of puts would otherwise fault page by page. */
  rt_entry *c = rt_prim_map_large(CHUNK_BYTES, CHUNK_BYTES);
  if (!c) return false;
  uint32_t base = s->nchunks << RT_CHUNK_SHIFT;
  /* Pushed in reverse so that low slots come out first (denser pages). */
  for (uint32_t i = RT_CHUNK_SLOTS; i-- > 0;) s->free[s->nfree++] = base + i;
  /* release: a thread that later resolves a slot of this chunk with the
   * acquire load in rt_slots_entry sees the zeroed entries. */
  atomic_store_explicit(&s->chunks[s->nchunks], c, memory_order_release);
  s->nchunks++;
  return true;
}

uint32_t rt_slots_alloc(rt_slots *s) {
  if (t_cache.epoch != s->epoch) {
    t_cache.epoch = s->epoch;
    t_cache.n = 0;
  }
  if (t_cache.n == 0) {
    pthread_mutex_lock(&s->lock);
    if (s->nfree == 0 && !grow(s)) {
      pthread_mutex_unlock(&s->lock);
      return RT_NO_SLOT;
    }
    uint32_t take = s->nfree < RT_SLOT_BATCH ? (uint32_t)s->nfree : RT_SLOT_BATCH;
    /* Reverse so the cache pops slots in the order the list held them. */
    for (uint32_t i = 0; i < take; i++) t_cache.slot[take - 1 - i] = s->free[--s->nfree];
    t_cache.n = take;
    pthread_mutex_unlock(&s->lock);
  }
  return t_cache.slot[--t_cache.n];
}

void rt_slots_free(rt_slots *s, uint32_t slot) {
  if (t_cache.epoch != s->epoch) {
    t_cache.epoch = s->epoch;
    t_cache.n = 0;
  }
  if (t_cache.n == CACHE_MAX) {
    pthread_mutex_lock(&s->lock);
    if (free_reserve(s, RT_SLOT_BATCH)) {
      /* The oldest half goes back: the newest stay hot in this thread. */
      for (uint32_t i = 0; i < RT_SLOT_BATCH; i++) s->free[s->nfree++] = t_cache.slot[i];
      memmove(t_cache.slot, t_cache.slot + RT_SLOT_BATCH, RT_SLOT_BATCH * sizeof(uint32_t));
      t_cache.n -= RT_SLOT_BATCH;
    }
    pthread_mutex_unlock(&s->lock);
    if (t_cache.n == CACHE_MAX) return; /* no memory for the list: the slot idles */
  }
  t_cache.slot[t_cache.n++] = slot;
}
