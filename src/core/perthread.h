/*
 * perthread.h - one block per thread, listed so another thread can read
 * them all: the pattern behind counters that must not share a cache line
 * between cores (task tallies, memory credit).
 *
 * A block is 64-byte aligned, zeroed, and starts with an rt_perthread_node;
 * it is made on a thread's first call and kept, listed, until the list is
 * destroyed (a thread that exits leaves its block, and its counts, behind).
 * The calling thread finds its block through a thread-local slot that the
 * caller owns (one per kind of block), tied to the list's epoch so that a
 * slot from an earlier runtime is never used.
 */
#ifndef RT_PERTHREAD_H
#define RT_PERTHREAD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rt_perthread_node {
  struct rt_perthread_node *next;
} rt_perthread_node;

typedef struct rt_perthread_list {
  pthread_mutex_t lock; /* guards `all`; readers walk the list under it */
  rt_perthread_node *all;
  uint64_t epoch;
} rt_perthread_list;

typedef struct rt_perthread_slot {
  uint64_t epoch;
  void *mine;
} rt_perthread_slot;

int rt_perthread_init(rt_perthread_list *l, uint64_t epoch);
/* Frees every block. */
void rt_perthread_destroy(rt_perthread_list *l);
/* The calling thread's block of `size` bytes (its first member an
 * rt_perthread_node), made and listed on first use; NULL if out of memory
 * (asked again on the next call). */
void *rt_perthread_make(rt_perthread_list *l, rt_perthread_slot *slot, size_t size);
static inline void *rt_perthread_mine(rt_perthread_list *l, rt_perthread_slot *slot, size_t size) {
  if (__builtin_expect(slot->epoch == l->epoch, 1)) return slot->mine;
  return rt_perthread_make(l, slot, size);
}

#endif
