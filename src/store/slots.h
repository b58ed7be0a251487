/*
 * slots.h - the entry table: slot numbers, handles and free-slot caches.
 *
 * Entries live in chunks of RT_CHUNK_SLOTS that are never moved or freed
 * before shutdown, so an entry pointer stays valid for the runtime's life and
 * a lookup is two loads with no lock. A ray_ref * is not a pointer: it packs
 * (generation ^ salt) << 32 | (slot + 1). Decoding checks the generation, so a
 * released handle is reported as such until its slot has been reused 2^32
 * times, and a handle from an earlier runtime does not resolve (new salt).
 *
 * Slots come and go through core/idtable.h: chunks of RT_CHUNK_SLOTS
 * entries, and a per-thread cache of free slots over a shared free list.
 */
#ifndef RT_SLOTS_H
#define RT_SLOTS_H

#include "core/handle.h"
#include "core/idtable.h"
#include "store/entry.h"

#define RT_CHUNK_SHIFT 12
#define RT_CHUNK_SLOTS (1u << RT_CHUNK_SHIFT)
#define RT_MAX_CHUNKS (1u << 16) /* 268 M objects */

typedef struct rt_slots {
  rt_idtable tab; /* of rt_entry */
  uint32_t salt;
} rt_slots;

int rt_slots_init(rt_slots *s, uint64_t epoch, uint32_t salt);
void rt_slots_destroy(rt_slots *s);

/* The calling thread's free slots (idtable.h). */
extern _Thread_local rt_idcache rt_t_slot_cache;

/* A free slot, or RT_NO_SLOT when the table is full or memory ran out. */
static inline uint32_t rt_slots_alloc(rt_slots *s) {
  return rt_idtable_alloc(&s->tab, &rt_t_slot_cache);
}
/* Returns a slot whose entry has been reset to FREE. */
static inline void rt_slots_free(rt_slots *s, uint32_t slot) {
  rt_idtable_free(&s->tab, &rt_t_slot_cache, slot);
}

static inline rt_entry *rt_slots_entry(const rt_slots *s, uint32_t slot) {
  rt_entry *c = rt_idtable_chunk(&s->tab, slot);
  return c ? &c[slot & (RT_CHUNK_SLOTS - 1)] : NULL;
}

/* The entry of a slot known to be allocated (its chunk exists). */
static inline rt_entry *rt_slots_entry_live(const rt_slots *s, uint32_t slot) {
  rt_entry *e = rt_slots_entry(s, slot);
  if (!e) __builtin_unreachable();
  return e;
}

static inline ray_ref *rt_handle_make(const rt_slots *s, uint32_t slot, uint32_t gen) {
  return (ray_ref *)rt_handle_pack(slot, gen, s->salt);
}

/* The live entry a handle names, or NULL (NULL handle, out of range,
 * released, freed). *slot_out gets the slot. Relaxed loads suffice for the
 * generation and state here: a caller that legitimately holds the handle got
 * it through a happens-before chain from the put that published the entry. */
static inline rt_entry *rt_handle_resolve(const rt_slots *s, const ray_ref *h, uint32_t *slot_out) {
  uint32_t slot = rt_handle_index(h);    /* a NULL handle is out of range */
  rt_entry *e = rt_slots_entry(s, slot); /* NULL when out of range (idtable.h) */
  if (!e) return NULL;
  if (atomic_load_explicit(&e->gen, memory_order_relaxed) != rt_handle_gen(h, s->salt)) return NULL;
  if ((atomic_load_explicit(&e->state, memory_order_relaxed) & RT_ST_MASK) == RT_ST_FREE)
    return NULL;
  *slot_out = slot;
  return e;
}

#endif
