/*
 * slots.c - the entry table on core/idtable.c. See slots.h for the design.
 */
#include "store/slots.h"

#include <stdlib.h>

#include "core/alloc.h"

_Thread_local rt_idcache rt_t_slot_cache;

int rt_slots_init(rt_slots *s, uint64_t epoch, uint32_t salt) {
  s->salt = salt;
  /* Pointers only (512 KiB of address space, touched a page at a time). */
  if (!(s->creators = rt_calloc(RT_MAX_CHUNKS, sizeof *s->creators))) return -1;
  if (rt_idtable_init(&s->tab, sizeof(rt_entry), RT_CHUNK_SHIFT, RT_MAX_CHUNKS, epoch) != 0) {
    free(s->creators);
    s->creators = NULL;
    return -1;
  }
  return 0;
}

uint32_t *rt_slots_creators_grow(rt_slots *s, uint32_t slot) {
  uint32_t *c = rt_calloc(RT_CHUNK_SLOTS, sizeof *c);
  if (!c) return NULL;
  uint32_t *had = NULL;
  /* acq_rel: release publishes the zeroed chunk (rt_slots.creators); two
   * threads may race for the first slots of a new chunk, and the loser,
   * acquiring the winner's chunk, frees its own and uses that one. */
  if (!atomic_compare_exchange_strong_explicit(&s->creators[slot >> RT_CHUNK_SHIFT], &had, c,
                                               memory_order_acq_rel, memory_order_acquire)) {
    free(c);
    c = had;
  }
  return c;
}

void rt_slots_destroy(rt_slots *s) {
  rt_idtable_destroy(&s->tab);
  /* relaxed: the store is quiescent (rt_store_destroy). */
  for (uint32_t i = 0; s->creators && i < RT_MAX_CHUNKS; i++)
    free(atomic_load_explicit(&s->creators[i], memory_order_relaxed));
  free(s->creators);
  s->creators = NULL;
}
