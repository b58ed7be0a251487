/*
 * idtable.c - chunked record tables; free numbers in per-thread batch
 * caches (core/batchcache.h). See idtable.h.
 */
#include "core/idtable.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "core/prim.h"

int rt_idtable_init(rt_idtable *t, size_t item_size, unsigned chunk_shift, uint32_t max_chunks,
                    uint64_t epoch) {
  memset(t, 0, sizeof *t);
  t->chunks = rt_calloc(max_chunks, sizeof *t->chunks);
  if (!t->chunks) return -1;
  if (rt_batchlist_init(&t->free, sizeof(uint32_t), 4096, epoch) != 0) {
    free(t->chunks);
    return -1;
  }
  t->max_chunks = max_chunks;
  t->chunk_shift = chunk_shift;
  t->item_size = item_size;
  return 0;
}

static size_t chunk_bytes(const rt_idtable *t) {
  return t->item_size << t->chunk_shift;
}

void rt_idtable_destroy(rt_idtable *t) {
  for (uint32_t i = 0; i < t->nchunks; i++)
    rt_prim_unmap(atomic_load_explicit(&t->chunks[i], memory_order_relaxed), chunk_bytes(t));
  free(t->chunks);
  rt_batchlist_destroy(&t->free);
  memset(t, 0, sizeof *t);
}

bool rt_idtable_grow(void *table) {
  rt_idtable *t = table;
  uint32_t per = 1u << t->chunk_shift;
  if (t->nchunks == t->max_chunks || !rt_batchlist_reserve(&t->free, per)) return false;
  /* mmap'd pages are zeroed. Pre-faulted: a burst of allocations would
   * otherwise fault page by page. */
  void *c = rt_prim_map_large(chunk_bytes(t), chunk_bytes(t));
  if (!c) return false;
  uint32_t base = t->nchunks << t->chunk_shift;
  /* Pushed in reverse so that low numbers come out first (denser pages). */
  uint32_t *f = t->free.items;
  for (uint32_t i = per; i-- > 0;) f[t->free.n++] = base + i;
  /* release: pairs with rt_idtable_chunk's acquire load. */
  atomic_store_explicit(&t->chunks[t->nchunks], c, memory_order_release);
  t->nchunks++;
  return true;
}
