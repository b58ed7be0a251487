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
 *
 * Creators (creator.h) live beside the entries, not in them: an entry is
 * exactly 128 bytes with no field free in every state (lru_prev links
 * spillable entries, inl holds inline payloads or a spill location, the
 * high bits of state are CASed by four modules), and a field that some
 * states borrow would need a rule per state for whoever reads it. So each
 * chunk of entries has a side chunk of RT_CHUNK_SLOTS 32-bit creator ids,
 * made the first time a slot of that chunk is handed out (rt_slots_alloc
 * refuses the slot if it cannot be made, as when the entry chunk cannot
 * be). The id is written by the creating thread before the entry is
 * published (a release store of its state) and read only by someone who
 * holds the entry and acquired its state, so a plain uint32_t is enough;
 * it stays until the slot's next object overwrites it. Cost: 4 bytes per
 * slot (16 KiB per 512 KiB chunk of entries), and per slot allocation a
 * load, a predictable branch, and a store when the id changes.
 */
#ifndef RT_SLOTS_H
#define RT_SLOTS_H

#include <stdbool.h>

#include "core/handle.h"
#include "core/idtable.h"
#include "store/entry.h"

#define RT_CHUNK_SHIFT 12
#define RT_CHUNK_SLOTS (1u << RT_CHUNK_SHIFT)
#define RT_MAX_CHUNKS (1u << 16) /* 268 M objects */

typedef struct rt_slots {
  rt_idtable tab; /* of rt_entry */
  uint32_t salt;
  /* RT_MAX_CHUNKS pointers to side chunks of creator ids, NULL until made.
   * Published with a release CAS, read with acquire loads: who sees the
   * pointer sees the zeroed chunk. Freed by rt_slots_destroy. */
  _Atomic(uint32_t *) *creators;
} rt_slots;

int rt_slots_init(rt_slots *s, uint64_t epoch, uint32_t salt);
void rt_slots_destroy(rt_slots *s);

/* The calling thread's free slots (idtable.h). */
extern _Thread_local rt_idcache rt_t_slot_cache;

/* Makes the side chunk of creator ids for slot's chunk; NULL when memory
 * ran out. */
uint32_t *rt_slots_creators_grow(rt_slots *s, uint32_t slot);

/* Returns a slot whose entry has been reset to FREE. */
static inline void rt_slots_free(rt_slots *s, uint32_t slot) {
  rt_idtable_free(&s->tab, &rt_t_slot_cache, slot);
}

/* A free slot with `creator` recorded as its object's creator, or
 * RT_NO_SLOT when the table is full or memory ran out. The creator id is
 * written before the object is published (see above). */
static inline uint32_t rt_slots_alloc(rt_slots *s, uint32_t creator) {
  uint32_t slot = rt_idtable_alloc(&s->tab, &rt_t_slot_cache);
  if (slot == RT_NO_SLOT) return slot;
  /* acquire: see rt_slots.creators. */
  uint32_t *c = atomic_load_explicit(&s->creators[slot >> RT_CHUNK_SHIFT], memory_order_acquire);
  if (__builtin_expect(!c, 0) && !(c = rt_slots_creators_grow(s, slot))) {
    rt_slots_free(s, slot);
    return RT_NO_SLOT;
  }
  /* Written only if it changes: a slot is mostly reused by the creator
   * that used it last (a loop of puts, one task submitted over and over),
   * and a store to a line that 16 slots share would make it bounce between
   * the cores that create objects in them; an unchanged id is a load of a
   * line every core may keep. (The old id is visible here: its writer
   * published its object, whose last holder freed the slot, which reached
   * this thread through the free list's lock.) */
  uint32_t *id = &c[slot & (RT_CHUNK_SLOTS - 1)];
  if (*id != creator) *id = creator;
  return slot;
}

/* The creator id of a slot's object, for one who holds the object and
 * acquired its state. */
static inline uint32_t rt_slots_creator(const rt_slots *s, uint32_t slot) {
  /* acquire: see rt_slots.creators (the id itself was published with the
   * object's state, which the caller acquired). */
  uint32_t *c = atomic_load_explicit(&s->creators[slot >> RT_CHUNK_SHIFT], memory_order_acquire);
  return c ? c[slot & (RT_CHUNK_SLOTS - 1)] : 0;
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
