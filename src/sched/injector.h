/*
 * injector.h - the global queue for jobs submitted from outside the pool.
 *
 * Many producers (any thread), many consumers (the workers), FIFO. Intrusive
 * on rt_job.next_, so a push never allocates and never fails.
 *
 * Lifetime: rt_injector_init .. (no destroy: it owns no memory). The struct
 * holds its own stub node and must not move after init.
 */
#ifndef RT_SCHED_INJECTOR_H
#define RT_SCHED_INJECTOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "sched/sched.h"

typedef struct rt_injector {
  _Alignas(64) _Atomic(rt_job *) head; /* producers' end: last pushed node */
  _Atomic size_t len;                  /* jobs pushed (or being pushed), not yet popped */
  _Alignas(64) atomic_flag lock;       /* consumer-side try-lock */
  rt_job *tail;                        /* consumers' end, under lock */
  rt_job stub;
} rt_injector;

void rt_injector_init(rt_injector *q);
/* Any thread; wait-free (one exchange and one store). */
void rt_injector_push(rt_injector *q, rt_job *job);
/* Any thread. The oldest job, or NULL when the queue is empty, when a producer
 * is half-way through a push, or when another consumer holds the consumer
 * lock. NULL is therefore "nothing for you right now", not "empty": use
 * rt_injector_maybe_nonempty to decide whether to sleep. */
rt_job *rt_injector_pop(rt_injector *q);
/* As rt_injector_pop, but takes up to max (>= 1) of the oldest jobs under one
 * acquisition of the consumer lock, into out[] oldest first. Returns how many. */
size_t rt_injector_pop_batch(rt_injector *q, rt_job **out, size_t max);
/* Any thread. False only when no job is queued or being pushed (a job being
 * popped concurrently may still count). */
bool rt_injector_maybe_nonempty(const rt_injector *q);
/* Any thread; a hint: about how many jobs are queued. */
size_t rt_injector_len(const rt_injector *q);

#endif
