/*
 * credit.c - the per-thread memory credit registry. See credit.h.
 */
#include "store/credit.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static _Thread_local struct {
  uint64_t epoch;
  rt_credit *mine;
} t_credit;

int rt_credits_init(rt_credits *cs, uint64_t epoch) {
  memset(cs, 0, sizeof *cs);
  cs->epoch = epoch;
  return pthread_mutex_init(&cs->lock, NULL);
}

void rt_credits_destroy(rt_credits *cs) {
  for (rt_credit *c = cs->all, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  cs->all = NULL;
  pthread_mutex_destroy(&cs->lock);
}

rt_credit *rt_credit_mine(rt_credits *cs) {
  if (RT_LIKELY(t_credit.epoch == cs->epoch)) return t_credit.mine;
  rt_credit *c = aligned_alloc(64, sizeof *c);
  if (c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_lock(&cs->lock);
    c->next = cs->all;
    cs->all = c;
    pthread_mutex_unlock(&cs->lock);
  }
  t_credit.epoch = cs->epoch;
  t_credit.mine = c;
  return c;
}

size_t rt_credits_reclaim(rt_credits *cs) {
  size_t sum = 0;
  pthread_mutex_lock(&cs->lock);
  /* seq_cst: part of the store's Dekker pattern with mem_waiters (store.c,
   * mem_release): a release that adds to a credit after we took it sees
   * the waiter and gives the bytes back itself. */
  for (rt_credit *c = cs->all; c; c = c->next) sum += atomic_exchange(&c->bytes, 0);
  pthread_mutex_unlock(&cs->lock);
  return sum;
}

size_t rt_credits_held(rt_credits *cs) {
  size_t sum = 0;
  pthread_mutex_lock(&cs->lock);
  /* relaxed: a report, exact only when no call is in flight. */
  for (rt_credit *c = cs->all; c; c = c->next)
    sum += atomic_load_explicit(&c->bytes, memory_order_relaxed);
  pthread_mutex_unlock(&cs->lock);
  return sum;
}
