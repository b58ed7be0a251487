/*
 * slots.c - the entry table on core/idtable.c. See slots.h for the design.
 */
#include "store/slots.h"

_Thread_local rt_idcache rt_t_slot_cache;

int rt_slots_init(rt_slots *s, uint64_t epoch, uint32_t salt) {
  s->salt = salt;
  return rt_idtable_init(&s->tab, sizeof(rt_entry), RT_CHUNK_SHIFT, RT_MAX_CHUNKS, epoch);
}

void rt_slots_destroy(rt_slots *s) {
  rt_idtable_destroy(&s->tab);
}
