/*
 * credit.c - the per-thread memory credit registry. See credit.h.
 */
#include "store/credit.h"

_Thread_local rt_perthread_slot rt_t_credit;

int rt_credits_init(rt_credits *cs, uint64_t epoch) {
  return rt_perthread_init(&cs->list, epoch);
}

void rt_credits_destroy(rt_credits *cs) {
  rt_perthread_destroy(&cs->list);
}

size_t rt_credits_reclaim(rt_credits *cs) {
  size_t sum = 0;
  pthread_mutex_lock(&cs->list.lock);
  /* seq_cst: part of the store's Dekker pattern with mem_waiters (store_int.h,
   * credit_add): a release that adds to a credit after we took it sees the
   * waiter and gives the bytes back itself. */
  for (rt_perthread_node *n = cs->list.all; n; n = n->next)
    sum += atomic_exchange(&((rt_credit *)n)->bytes, 0);
  pthread_mutex_unlock(&cs->list.lock);
  return sum;
}

size_t rt_credits_held(rt_credits *cs) {
  size_t sum = 0;
  pthread_mutex_lock(&cs->list.lock);
  /* relaxed: a report, exact only when no call is in flight. */
  for (rt_perthread_node *n = cs->list.all; n; n = n->next)
    sum += atomic_load_explicit(&((rt_credit *)n)->bytes, memory_order_relaxed);
  pthread_mutex_unlock(&cs->list.lock);
  return sum;
}
