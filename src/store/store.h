/*
 * store.h - the object store: entry table, memory accounting, waiters.
 *
 * One store per runtime, shared by every thread. There is no global lock on
 * the hot path: a put takes a slot from a per-thread cache, reserves its
 * bytes with a CAS on one counter and publishes the entry with a release
 * store; a get of a sealed object is a lookup and one atomic add. Locks are
 * striped by slot number (RT_STRIPES) and are taken only for what needs
 * them: the LRU links of out-of-line objects, pins, and parked waiters.
 */
#ifndef RT_STORE_H
#define RT_STORE_H

#include <pthread.h>

#include "core/config.h"
#include "store/bufpool.h"
#include "store/lru.h"
#include "store/slots.h"

#define RT_STRIPES 64

/* A parked thread (or, later, a task) waiting for one slot to be sealed. It
 * lives on its stripe's list; fire() runs under the stripe lock, after the
 * node is unlinked, so the waiter may free the node once it has taken the
 * stripe lock itself. */
typedef struct rt_waiter rt_waiter;
struct rt_waiter {
  rt_waiter *next;
  uint32_t slot;
  void (*fire)(rt_waiter *w);
};

typedef struct rt_stripe {
  pthread_mutex_t lock;
  rt_lru lru;
  rt_waiter *waiters;
} __attribute__((aligned(64))) rt_stripe;

typedef struct rt_store {
  rt_slots slots;
  rt_stripe stripes[RT_STRIPES];
  rt_bufpool pool;
  size_t limit;
  int64_t put_timeout_ms;
  uint64_t owner; /* high half of every object ID: random ^ pid, per runtime */

  /* Counters are relaxed: they order nothing, and ray_stats_get is exact
   * only when no call is in flight. bytes_in_memory is the exception, see
   * mem_reserve/mem_release. */
  _Atomic size_t bytes_in_memory;
  _Atomic size_t bytes_pinned;
  _Atomic uint64_t objects, puts, gets;

  /* Puts waiting for memory park here (slow path only). */
  pthread_mutex_t mem_lock;
  pthread_cond_t mem_cond;
  _Atomic uint32_t mem_waiters;
} rt_store;

ray_status rt_store_init(rt_store *st, const rt_config *cfg, uint64_t epoch);
/* Frees every object, live or not; warns about unreleased refs and views. */
void rt_store_destroy(rt_store *st);

#endif
