/*
 * counts.h - per-thread counts of successful puts and gets (ray_stats).
 *
 * A shared counter costs a locked instruction per call and moves its cache
 * line between the cores that call: on a get of a small object (two
 * atomic adds on the entry otherwise) that was a third of the cost. Each
 * thread counts in a block of its own instead (perthread.h): a plain
 * increment only its thread writes, summed by ray_stats_get.
 */
#ifndef RT_COUNTS_H
#define RT_COUNTS_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/perthread.h"

typedef struct rt_count_block {
  rt_perthread_node node; /* first */
  /* Written by the owning thread only (relaxed load, then store: no locked
   * instruction), read by rt_counts_sum. */
  _Atomic uint64_t puts, gets;
} rt_count_block;

typedef struct rt_counts {
  rt_perthread_list list;      /* of rt_count_block */
  _Atomic uint64_t puts, gets; /* for threads whose block could not be allocated */
} rt_counts;

int rt_counts_init(rt_counts *c, uint64_t epoch);
void rt_counts_destroy(rt_counts *c);

extern _Thread_local rt_perthread_slot rt_t_counts;

static inline void rt_count_one(_Atomic uint64_t *mine, _Atomic uint64_t *shared) {
  if (__builtin_expect(mine != NULL, 1)) /* relaxed: a statistic, and only this thread writes it. */
    atomic_store_explicit(mine, atomic_load_explicit(mine, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  else
    atomic_fetch_add_explicit(shared, 1, memory_order_relaxed);
}

static inline rt_count_block *rt_counts_mine(rt_counts *c) {
  return rt_perthread_mine(&c->list, &rt_t_counts, sizeof(rt_count_block));
}

static inline void rt_count_put(rt_counts *c) {
  rt_count_block *b = rt_counts_mine(c);
  rt_count_one(b ? &b->puts : NULL, &c->puts);
}

static inline void rt_count_get(rt_counts *c) {
  rt_count_block *b = rt_counts_mine(c);
  rt_count_one(b ? &b->gets : NULL, &c->gets);
}

/* The totals so far (exact when no call is in flight). */
void rt_counts_sum(rt_counts *c, uint64_t *puts, uint64_t *gets);

#endif
