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
 * Free slots: each thread keeps a small cache (LIFO, hot in cache); it refills
 * from and spills to the shared free list in batches under one mutex, so the
 * mutex is taken once per RT_SLOT_BATCH puts, not per put.
 */
#ifndef RT_SLOTS_H
#define RT_SLOTS_H

#include <pthread.h>

#include "store/entry.h"

#define RT_CHUNK_SHIFT 12
#define RT_CHUNK_SLOTS (1u << RT_CHUNK_SHIFT)
#define RT_MAX_CHUNKS (1u << 16) /* 268 M objects */
#define RT_SLOT_BATCH 32

typedef struct rt_slots {
  _Atomic(rt_entry *) *chunks; /* RT_MAX_CHUNKS pointers */
  pthread_mutex_t lock;        /* guards free list and growth */
  uint32_t nchunks;            /* under lock */
  uint32_t *free;              /* shared free list of slot numbers, under lock */
  size_t nfree, free_cap;
  uint32_t salt;
  uint64_t epoch; /* tells a thread's cache which runtime it belongs to */
} rt_slots;

int rt_slots_init(rt_slots *s, uint64_t epoch, uint32_t salt);
void rt_slots_destroy(rt_slots *s);

/* A free slot, or RT_NO_SLOT when the table is full or memory ran out. */
uint32_t rt_slots_alloc(rt_slots *s);
/* Returns a slot whose entry has been reset to FREE. */
void rt_slots_free(rt_slots *s, uint32_t slot);

static inline rt_entry *rt_slots_entry(const rt_slots *s, uint32_t slot) {
  /* acquire pairs with the release store that publishes a new chunk, so the
   * chunk's zeroed contents are visible; once seen, a chunk never changes. */
  rt_entry *c = atomic_load_explicit(&s->chunks[slot >> RT_CHUNK_SHIFT], memory_order_acquire);
  return c ? &c[slot & (RT_CHUNK_SLOTS - 1)] : NULL;
}

/* The entry of a slot known to be allocated (its chunk exists). */
static inline rt_entry *rt_slots_entry_live(const rt_slots *s, uint32_t slot) {
  rt_entry *e = rt_slots_entry(s, slot);
  if (!e) __builtin_unreachable();
  return e;
}

static inline ray_ref *rt_handle_make(const rt_slots *s, uint32_t slot, uint32_t gen) {
  return (ray_ref *)(uintptr_t)(((uint64_t)(gen ^ s->salt) << 32) | ((uint64_t)slot + 1));
}

/* The live entry a handle names, or NULL (NULL handle, out of range,
 * released, freed). *slot_out gets the slot. Relaxed loads suffice for the
 * generation and state here: a caller that legitimately holds the handle got
 * it through a happens-before chain from the put that published the entry. */
static inline rt_entry *rt_handle_resolve(const rt_slots *s, const ray_ref *h,
                                          uint32_t *slot_out) {
  uint64_t v = (uint64_t)(uintptr_t)h;
  uint32_t lo = (uint32_t)v;
  if (lo == 0 || ((lo - 1) >> RT_CHUNK_SHIFT) >= RT_MAX_CHUNKS) return NULL;
  uint32_t slot = lo - 1;
  rt_entry *e = rt_slots_entry(s, slot);
  if (!e) return NULL;
  if (atomic_load_explicit(&e->gen, memory_order_relaxed) != ((uint32_t)(v >> 32) ^ s->salt))
    return NULL;
  if ((atomic_load_explicit(&e->state, memory_order_relaxed) & RT_ST_MASK) == RT_ST_FREE)
    return NULL;
  *slot_out = slot;
  return e;
}

#endif
