/*
 * taskpool.c - pooled task records: no malloc per task in steady state.
 *
 * Records come from slabs of SLAB_TASKS owned by the runtime. Free records
 * sit in per-thread caches over a shared list, moved in batches
 * (core/batchcache.h): the lock is taken once per RT_BATCH submissions.
 * Tasks are typically submitted on one thread and freed on a worker, so the
 * records flow driver -> worker cache -> shared pool -> driver cache. A get
 * prefetches the record the next get will return, for writing, so that its
 * lines are on their way while the caller fills in the current one.
 *
 * Slabs are large and pre-faulted (rt_prim_map_large): a burst of a million
 * submissions touches a million records once, and first-touch page faults
 * (~0.3 GB/s here) would otherwise dominate it.
 */
#include <stdlib.h>
#include <string.h>

#include "core/array.h"
#include "core/prim.h"
#include "task/task.h"

#define SLAB_TASKS 4096
#define SLAB_BYTES (SLAB_TASKS * sizeof(rt_task))
static _Thread_local rt_batchcache t_cache;

/* Under the pool's lock: a new slab into the shared pool. */
static bool grow(void *arg) {
  rt_tasks *ts = arg;
  void **s = rt_array_reserve(ts->slabs, &ts->slabs_cap, ts->nslabs + 1, sizeof *s, 16);
  if (!s) return false;
  ts->slabs = s;
  if (!rt_batchlist_reserve(&ts->pool, SLAB_TASKS)) return false;
  rt_task *slab = rt_prim_map_large(SLAB_BYTES, SLAB_BYTES); /* zeroed pages */
  if (!slab) return false;
  ts->slabs[ts->nslabs++] = slab;
  /* Reversed so that the lowest addresses come out first. */
  rt_task **f = ts->pool.items;
  for (int i = SLAB_TASKS; i-- > 0;) f[ts->pool.n++] = &slab[i];
  return true;
}

rt_task *rt_taskpool_get(rt_tasks *ts) {
  rt_task *t = rt_batchcache_get_ptr(&t_cache, &ts->pool, grow, ts);
  if (t && t_cache.n) {
    /* The lines rt_task_build writes for every task (task.h). */
    rt_task *next = t_cache.ptr[t_cache.n - 1];
    __builtin_prefetch(next, 1);
    __builtin_prefetch((char *)next + 64, 1);
    __builtin_prefetch((char *)next + 128, 1);
  }
  return t;
}

void rt_taskpool_put(rt_tasks *ts, rt_task *t) {
  rt_batchcache_put_ptr(&t_cache, &ts->pool, t);
}

int rt_tasks_init(rt_tasks *ts, uint64_t epoch) {
  memset(ts, 0, sizeof *ts);
  ts->epoch = epoch;
  if (rt_tallies_init(&ts->tally, epoch) != 0) return -1;
  if (rt_batchlist_init(&ts->pool, sizeof(rt_task *), SLAB_TASKS, epoch) != 0) {
    rt_tallies_destroy(&ts->tally);
    return -1;
  }
  return 0;
}

void rt_tasks_bind(rt_tasks *ts, rt_store *store, rt_sched *sched, rt_timeline *timeline) {
  ts->store = store;
  ts->sched = sched;
  ts->timeline = timeline;
}

void rt_tasks_set_owner(rt_tasks *ts, const rt_task_owner_ops *ops, void *owner) {
  ts->owner_ops = ops;
  ts->owner = owner;
}

void rt_tasks_destroy(rt_tasks *ts) {
  for (size_t i = 0; i < ts->nslabs; i++) rt_prim_unmap(ts->slabs[i], SLAB_BYTES);
  free(ts->slabs);
  rt_batchlist_destroy(&ts->pool);
  rt_tallies_destroy(&ts->tally);
}
