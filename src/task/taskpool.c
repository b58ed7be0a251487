/*
 * taskpool.c - pooled task records: no malloc per task in steady state.
 *
 * Records come from slabs of SLAB_TASKS owned by the runtime. A thread keeps
 * a small LIFO cache of free records; it refills from and spills to the
 * shared pool in batches, so the lock is taken once per BATCH submissions.
 * Tasks are typically submitted on one thread and freed on a worker, so the
 * records flow driver -> worker cache -> shared pool -> driver cache.
 *
 * Caches and the shared pool are arrays of record pointers, not lists
 * threaded through the records: moving a batch copies BATCH pointers and
 * touches no record, where a list would walk BATCH records that were last
 * written on another core (a cache miss each). A get prefetches the record
 * the next get will return, for writing, so that its lines are on their
 * way while the caller fills in the current one.
 *
 * A cache is tied to the runtime's epoch: after ray_shutdown + ray_init a
 * stale cache is dropped, never used (its records were freed with the slabs).
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
#define BATCH 32
#define CACHE_MAX (2 * BATCH)

static _Thread_local struct {
  uint64_t epoch;
  uint32_t n;
  rt_task *t[CACHE_MAX];
} t_cache;

static void cache_check(rt_tasks *ts) {
  if (t_cache.epoch != ts->epoch) {
    t_cache.epoch = ts->epoch;
    t_cache.n = 0;
  }
}

/* Under pool_lock: room for `more` pointers in the shared pool. */
static bool pool_reserve(rt_tasks *ts, size_t more) {
  rt_task **f =
      rt_array_reserve(ts->pool_free, &ts->free_cap, ts->nfree + more, sizeof *f, SLAB_TASKS);
  if (!f) return false;
  ts->pool_free = f;
  return true;
}

/* Under pool_lock: a new slab into the shared pool. */
static bool grow(rt_tasks *ts) {
  void **s = rt_array_reserve(ts->slabs, &ts->slabs_cap, ts->nslabs + 1, sizeof *s, 16);
  if (!s) return false;
  ts->slabs = s;
  if (!pool_reserve(ts, SLAB_TASKS)) return false;
  rt_task *slab = rt_prim_map_large(SLAB_BYTES, SLAB_BYTES); /* zeroed pages */
  if (!slab) return false;
  ts->slabs[ts->nslabs++] = slab;
  /* Reversed so that the lowest addresses come out first. */
  for (int i = SLAB_TASKS; i-- > 0;) ts->pool_free[ts->nfree++] = &slab[i];
  return true;
}

rt_task *rt_taskpool_get(rt_tasks *ts) {
  cache_check(ts);
  if (t_cache.n == 0) {
    pthread_mutex_lock(&ts->pool_lock);
    if (ts->nfree == 0 && !grow(ts)) {
      pthread_mutex_unlock(&ts->pool_lock);
      return NULL;
    }
    uint32_t take = ts->nfree < BATCH ? (uint32_t)ts->nfree : BATCH;
    ts->nfree -= take;
    memcpy(t_cache.t, ts->pool_free + ts->nfree, take * sizeof(rt_task *));
    t_cache.n = take;
    pthread_mutex_unlock(&ts->pool_lock);
  }
  rt_task *t = t_cache.t[--t_cache.n];
  if (t_cache.n) {
    /* The lines rt_task_build writes for every task (task.h). */
    rt_task *next = t_cache.t[t_cache.n - 1];
    __builtin_prefetch(next, 1);
    __builtin_prefetch((char *)next + 64, 1);
    __builtin_prefetch((char *)next + 128, 1);
  }
  return t;
}

void rt_taskpool_put(rt_tasks *ts, rt_task *t) {
  cache_check(ts);
  if (t_cache.n == CACHE_MAX) {
    /* Give the oldest half back so that the submitting thread can reuse it;
     * the newest stay, hot in this thread's cache. */
    pthread_mutex_lock(&ts->pool_lock);
    if (pool_reserve(ts, BATCH)) {
      memcpy(ts->pool_free + ts->nfree, t_cache.t, BATCH * sizeof(rt_task *));
      ts->nfree += BATCH;
      memmove(t_cache.t, t_cache.t + BATCH, (CACHE_MAX - BATCH) * sizeof(rt_task *));
      t_cache.n -= BATCH;
    }
    pthread_mutex_unlock(&ts->pool_lock);
    /* No memory to grow the pool's array: the record idles until destroy,
     * where its slab is unmapped with the others. */
    if (t_cache.n == CACHE_MAX) return;
  }
  t_cache.t[t_cache.n++] = t;
}

int rt_tasks_init(rt_tasks *ts, uint64_t epoch) {
  memset(ts, 0, sizeof *ts);
  ts->epoch = epoch;
  if (rt_tallies_init(&ts->tally, epoch) != 0) return -1;
  if (pthread_mutex_init(&ts->pool_lock, NULL) != 0) {
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
  free(ts->pool_free);
  pthread_mutex_destroy(&ts->pool_lock);
  rt_tallies_destroy(&ts->tally);
}
