/*
 * ring.h - a bounded single-producer, multi-consumer ring of jobs: where a
 * thread outside the pool queues what it submits.
 *
 * The producer (the owning thread) writes a slot and then moves `tail` with
 * a release store: no atomic read-modify-write, and the slot array is read
 * in order by consumers, who take a batch of up to `max` jobs with one CAS
 * on `head` (Tokio's local run queue works the same way). Compared with the
 * shared injector this saves the producer two locked instructions per job
 * and saves a consumer a pointer chase through every job it takes: the
 * pointers sit side by side, eight to a cache line, so the records behind
 * them can be prefetched together.
 *
 * A full ring refuses the push (the caller falls back to the injector).
 * Lifetime: rt_ring_init .. the scheduler's destroy; the struct must not move.
 */
#ifndef RT_SCHED_RING_H
#define RT_SCHED_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/sched.h"

#define RT_RING_CAP 1024 /* a power of two */

typedef struct rt_ring {
  /* head is moved by consumers (CAS), tail by the producer: separate lines. */
  _Alignas(64) _Atomic uint32_t head;
  _Alignas(64) _Atomic uint32_t tail;
  uint32_t head_seen; /* producer only: a head value read earlier */
  _Atomic(rt_job *) slot[RT_RING_CAP];
} rt_ring;

void rt_ring_init(rt_ring *r);
/* Producer only. False when the ring is full (job not queued). */
bool rt_ring_push(rt_ring *r, rt_job *job);
/* Any thread. Takes up to max (>= 1) of the oldest jobs into out[], oldest
 * first; returns how many (0: empty). */
size_t rt_ring_pop(rt_ring *r, rt_job **out, size_t max);
/* Any thread; a hint, exact for the producer. Jobs queued. */
uint32_t rt_ring_len(const rt_ring *r);

#endif
