/*
 * deque.h - Chase-Lev work-stealing deque of pointers.
 *
 * One owner thread pushes and pops at the bottom (LIFO); any number of thief
 * threads steal from the top (FIFO). Follows Le, Pop, Cohen and Zappa Nardelli,
 * "Correct and Efficient Work-Stealing for Weak Memory Models" (PPoPP 2013),
 * with a growable circular buffer. Buffers replaced on growth are kept on a
 * retired list and freed only by rt_deque_destroy, so a thief that still reads
 * an old buffer never touches freed memory (no reclamation scheme needed; the
 * retired buffers together are smaller than the live one).
 *
 * Lifetime: rt_deque_init .. rt_deque_destroy; destroy only when no thread
 * uses the deque any more. Items are opaque non-NULL pointers the deque never
 * dereferences.
 */
#ifndef RT_SCHED_DEQUE_H
#define RT_SCHED_DEQUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rt_deque_buf rt_deque_buf;

typedef struct rt_deque {
  /* top is written by thieves (CAS) and bottom by the owner: separate lines. */
  _Alignas(64) _Atomic int64_t top;
  _Alignas(64) _Atomic int64_t bottom;
  _Atomic(rt_deque_buf *) buf;
  rt_deque_buf *retired; /* owner only; freed at destroy */
} rt_deque;

typedef enum rt_deque_steal_result {
  RT_DEQUE_EMPTY = 0, /* nothing to steal */
  RT_DEQUE_STOLEN,    /* *out holds the item, now owned by the thief */
  RT_DEQUE_ABORT      /* lost a race with another thief or the owner: retry */
} rt_deque_steal_result;

/* initial_cap is rounded up to a power of two (minimum 2). 0 or ENOMEM. */
int rt_deque_init(rt_deque *d, size_t initial_cap);
void rt_deque_destroy(rt_deque *d);

/* Owner only. 0, or ENOMEM when the buffer had to grow and could not (the item
 * is then not queued and stays the caller's). */
int rt_deque_push(rt_deque *d, void *item);
/* Owner only. The most recently pushed item not yet taken, or NULL. */
void *rt_deque_pop(rt_deque *d);
/* Any thread. Takes the oldest item. */
rt_deque_steal_result rt_deque_steal(rt_deque *d, void **out);
/* Any thread; a hint only (exact when called by the owner). Used by the
 * parking re-check, after a seq_cst fence, see sched.c. */
bool rt_deque_maybe_nonempty(const rt_deque *d);
/* Owner only. A mark of the bottom end: an item pushed after the mark sits
 * at or above it, so rt_deque_pop returns such an item only while
 * rt_deque_mark(d) > the mark taken before its push. */
static inline int64_t rt_deque_mark(const rt_deque *d) {
  /* relaxed: the owner's own variable. */
  return atomic_load_explicit(&((rt_deque *)d)->bottom, memory_order_relaxed);
}

#endif
