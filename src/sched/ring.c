/*
 * ring.c - bounded SPMC ring of jobs. See ring.h.
 *
 * Indices are free-running uint32_t; slot i lives at i % RT_RING_CAP, and
 * tail - head (mod 2^32) is the number of queued jobs. A consumer reads the
 * slots [head, head + n) and then claims them with CAS(head, head + n); the
 * producer never writes a slot in [head, head + CAP), so the slots it read
 * cannot change before its CAS, and a failed CAS just retries.
 */
#include "sched/ring.h"

void rt_ring_init(rt_ring *r) {
  atomic_init(&r->head, 0);
  atomic_init(&r->tail, 0);
  r->head_seen = 0;
  for (size_t i = 0; i < RT_RING_CAP; i++) atomic_init(&r->slot[i], NULL);
}

bool rt_ring_push(rt_ring *r, rt_job *job) {
  /* relaxed: only this thread writes tail. */
  uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  if (t - r->head_seen >= RT_RING_CAP) {
    /* acquire: pairs with the consumers' CAS, so their reads of the slots
     * we are about to reuse happened before our writes. Read only when the
     * cached value says full: head's line belongs to the consumers. */
    r->head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
    if (t - r->head_seen >= RT_RING_CAP) return false;
  }
  /* relaxed: published by the release store of tail below. */
  atomic_store_explicit(&r->slot[t & (RT_RING_CAP - 1)], job, memory_order_relaxed);
  /* release: a consumer that reads the new tail (acquire) sees the slot and
   * everything the submitter wrote into the job's record before. */
  atomic_store_explicit(&r->tail, t + 1, memory_order_release);
  return true;
}

size_t rt_ring_pop(rt_ring *r, rt_job **out, size_t max) {
  /* acquire: pairs with the release CAS of the previous consumer (a
   * consistent head) and, below, with the producer's release of tail. */
  uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);
  for (;;) {
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint32_t n = t - h;
    if (n == 0 || n > RT_RING_CAP) {
      /* n > CAP: head moved past the tail we read; read both again. */
      if (n == 0) return 0;
      h = atomic_load_explicit(&r->head, memory_order_acquire);
      continue;
    }
    if (n > max) n = (uint32_t)max;
    for (uint32_t i = 0; i < n; i++)
      out[i] = atomic_load_explicit(&r->slot[(h + i) & (RT_RING_CAP - 1)], memory_order_relaxed);
    /* acq_rel: release hands the slots back to the producer (its acquire
     * load of head); acquire orders our reads after the winner's. On
     * failure h is reloaded (acquire) and we try again. */
    if (atomic_compare_exchange_weak_explicit(&r->head, &h, h + n, memory_order_acq_rel,
                                              memory_order_acquire))
      return n;
  }
}

uint32_t rt_ring_len(const rt_ring *r) {
  rt_ring *m = (rt_ring *)r;
  /* relaxed: a hint (the parking re-check fences before calling it). Head
   * first: head never passes tail, so a tail read later is not below it,
   * and jobs pushed in between only make the count larger. */
  uint32_t h = atomic_load_explicit(&m->head, memory_order_relaxed);
  uint32_t t = atomic_load_explicit(&m->tail, memory_order_relaxed);
  uint32_t n = t - h;
  return n > RT_RING_CAP ? RT_RING_CAP : n;
}
