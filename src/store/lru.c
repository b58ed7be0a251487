/*
 * lru.c - intrusive LRU list of slot numbers. See lru.h. Every function runs
 * under the lock of the stripe that owns the list; the entry flag
 * RT_LF_ON_LRU records membership and is kept here, next to the links.
 */
#include <assert.h>

#include "store/lru.h"

void rt_lru_init(rt_lru *l) {
  l->head = l->tail = RT_NO_SLOT;
  l->count = 0;
}

void rt_lru_push_head(rt_lru *l, const rt_slots *s, uint32_t slot) {
  rt_entry *e = rt_slots_entry(s, slot);
  assert(!(e->locked_flags & RT_LF_ON_LRU));
  e->lru_prev = RT_NO_SLOT;
  e->lru_next = l->head;
  if (l->head != RT_NO_SLOT)
    rt_slots_entry(s, l->head)->lru_prev = slot;
  else
    l->tail = slot;
  l->head = slot;
  e->locked_flags |= RT_LF_ON_LRU;
  l->count++;
}

void rt_lru_remove(rt_lru *l, const rt_slots *s, uint32_t slot) {
  rt_entry *e = rt_slots_entry(s, slot);
  assert(e->locked_flags & RT_LF_ON_LRU);
  if (e->lru_prev != RT_NO_SLOT)
    rt_slots_entry(s, e->lru_prev)->lru_next = e->lru_next;
  else
    l->head = e->lru_next;
  if (e->lru_next != RT_NO_SLOT)
    rt_slots_entry(s, e->lru_next)->lru_prev = e->lru_prev;
  else
    l->tail = e->lru_prev;
  e->lru_prev = e->lru_next = RT_NO_SLOT;
  e->locked_flags &= (uint16_t)~RT_LF_ON_LRU;
  l->count--;
}
