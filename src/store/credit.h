/*
 * credit.h - per-thread memory credit: small reservations without a shared
 * counter per object.
 *
 * The memory limit is enforced by reserving bytes on one shared counter
 * (bytes_in_memory) before anything is stored. For small objects that
 * counter is the bottleneck: a task's return is reserved on the worker and
 * released where its last ref dies, usually another core, so the counter's
 * cache line would cross cores twice per task. Instead a thread reserves
 * RT_CREDIT_REFILL bytes at once and keeps them as credit: small
 * reservations and releases on that thread only touch its own credit, and
 * the shared counter moves once per few hundred objects. Credit is
 * reserved memory, so the limit still holds at every instant; reported usage
 * is the counter minus all credit. A reservation that does not fit takes
 * every thread's credit back first (rt_credits_reclaim), so credit never
 * makes a put fail that would fit without it.
 */
#ifndef RT_CREDIT_H
#define RT_CREDIT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/perthread.h"

#define RT_CREDIT_SMALL 1024                 /* reservations up to this size use credit */
#define RT_CREDIT_REFILL ((size_t)16 << 10)  /* taken from the shared counter at once */
#define RT_CREDIT_MAX (2 * RT_CREDIT_REFILL) /* kept at most; the rest goes back */

typedef struct rt_credit {
  rt_perthread_node node; /* first */
  /* Bytes reserved on the shared counter, not used by any object. Its
   * thread adds and takes; a reclaimer swaps it to 0. */
  _Atomic size_t bytes;
} rt_credit;

typedef struct rt_credits {
  rt_perthread_list list; /* of rt_credit */
} rt_credits;

int rt_credits_init(rt_credits *cs, uint64_t epoch);
void rt_credits_destroy(rt_credits *cs);
/* The calling thread's credit, made on first use; NULL if out of memory
 * (the caller then reserves on the shared counter directly). */
extern _Thread_local rt_perthread_slot rt_t_credit;
static inline rt_credit *rt_credit_mine(rt_credits *cs) {
  return (rt_credit *)rt_perthread_mine(&cs->list, &rt_t_credit, sizeof(rt_credit));
}
/* Takes back every thread's credit; returns the bytes taken. */
size_t rt_credits_reclaim(rt_credits *cs);
/* All credit held now (for reporting usage). */
size_t rt_credits_held(rt_credits *cs);

#endif
