/*
 * counts.c - per-thread put and get counts. See counts.h.
 */
#include "store/counts.h"

_Thread_local rt_perthread_slot rt_t_counts;

int rt_counts_init(rt_counts *c, uint64_t epoch) {
  atomic_init(&c->puts, 0);
  atomic_init(&c->gets, 0);
  return rt_perthread_init(&c->list, epoch);
}

void rt_counts_destroy(rt_counts *c) {
  rt_perthread_destroy(&c->list);
}

void rt_counts_sum(rt_counts *c, uint64_t *puts, uint64_t *gets) {
  /* relaxed: a report, exact only when no call is in flight. */
  uint64_t p = atomic_load_explicit(&c->puts, memory_order_relaxed);
  uint64_t g = atomic_load_explicit(&c->gets, memory_order_relaxed);
  pthread_mutex_lock(&c->list.lock);
  for (rt_perthread_node *n = c->list.all; n; n = n->next) {
    rt_count_block *b = (rt_count_block *)n;
    p += atomic_load_explicit(&b->puts, memory_order_relaxed);
    g += atomic_load_explicit(&b->gets, memory_order_relaxed);
  }
  pthread_mutex_unlock(&c->list.lock);
  *puts = p;
  *gets = g;
}
