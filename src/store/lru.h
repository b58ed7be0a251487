/*
 * lru.h - the order in which objects would be spilled.
 *
 * An intrusive doubly linked list of slot numbers through the entries'
 * lru_prev/lru_next, one list per stripe of the store, guarded by that
 * stripe's lock. As in SQLite's pcache1, "on the list" means "could be
 * spilled": sealed, out of line, no view, no pin. Entries are linked at the
 * head (most recently used); the spiller takes from the tail. A spiller that
 * needs the global oldest compares the tails of the stripes by last_use.
 */
#ifndef RT_LRU_H
#define RT_LRU_H

#include "store/slots.h"

typedef struct rt_lru {
  uint32_t head, tail; /* RT_NO_SLOT when empty */
  uint32_t count;
} rt_lru;

void rt_lru_init(rt_lru *l);
/* Links slot at the head; the entry must not be on a list. */
void rt_lru_push_head(rt_lru *l, const rt_slots *s, uint32_t slot);
/* Unlinks slot, which must be on this list. */
void rt_lru_remove(rt_lru *l, const rt_slots *s, uint32_t slot);
/* The least recently used slot, or RT_NO_SLOT. */
static inline uint32_t rt_lru_tail(const rt_lru *l) {
  return l->tail;
}

#endif
