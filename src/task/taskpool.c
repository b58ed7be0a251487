/*
 * taskpool.c - pooled task records: no malloc per task in steady state.
 *
 * Records come from slabs of SLAB_TASKS owned by the runtime. A thread keeps
 * a small LIFO cache of free records; it refills from and spills to the
 * shared list in batches, so the lock is taken once per BATCH submissions.
 * Tasks are typically submitted on one thread and freed on a worker, so the
 * records flow driver -> worker cache -> shared list -> driver cache.
 * A cache is tied to the runtime's epoch: after ray_shutdown + ray_init a
 * stale cache is dropped, never used (its records were freed with the slabs).
 *
 * Slabs are large and pre-faulted (rt_prim_map_large): a burst of a million
 * submissions touches a million records once, and first-touch page faults
 * (~0.3 GB/s here) would otherwise dominate it.
 */
#include <stdlib.h>
#include <string.h>

#include "core/prim.h"
#include "task/task.h"

#define SLAB_TASKS 4096
#define SLAB_BYTES (SLAB_TASKS * sizeof(rt_task))
#define BATCH 32
#define CACHE_MAX (2 * BATCH)

static _Thread_local struct {
  uint64_t epoch;
  uint32_t n;
  rt_task *head;
} t_cache;

static void cache_check(rt_tasks *ts) {
  if (t_cache.epoch != ts->epoch) {
    t_cache.epoch = ts->epoch;
    t_cache.n = 0;
    t_cache.head = NULL;
  }
}

/* Under pool_lock: a new slab onto the shared list. */
static bool grow(rt_tasks *ts) {
  if (ts->nslabs == ts->slabs_cap) {
    size_t cap = ts->slabs_cap ? ts->slabs_cap * 2 : 16;
    void **s = realloc(ts->slabs, cap * sizeof *s);
    if (!s) return false;
    ts->slabs = s;
    ts->slabs_cap = cap;
  }
  rt_task *slab = rt_prim_map_large(SLAB_BYTES, SLAB_BYTES); /* zeroed pages */
  if (!slab) return false;
  ts->slabs[ts->nslabs++] = slab;
  for (int i = 0; i < SLAB_TASKS; i++) {
    slab[i].pooled = true;
    slab[i].next_free = ts->pool_free;
    ts->pool_free = &slab[i];
  }
  return true;
}

rt_task *rt_taskpool_get(rt_tasks *ts) {
  cache_check(ts);
  if (!t_cache.head) {
    pthread_mutex_lock(&ts->pool_lock);
    if (!ts->pool_free && !grow(ts)) {
      pthread_mutex_unlock(&ts->pool_lock);
      return NULL;
    }
    for (int i = 0; i < BATCH && ts->pool_free; i++) {
      rt_task *t = ts->pool_free;
      ts->pool_free = t->next_free;
      t->next_free = t_cache.head;
      t_cache.head = t;
      t_cache.n++;
    }
    pthread_mutex_unlock(&ts->pool_lock);
  }
  rt_task *t = t_cache.head;
  t_cache.head = t->next_free;
  t_cache.n--;
  return t;
}

void rt_taskpool_put(rt_tasks *ts, rt_task *t) {
  cache_check(ts);
  t->next_free = t_cache.head;
  t_cache.head = t;
  if (++t_cache.n < CACHE_MAX) return;
  /* Give a batch back so that the submitting thread can reuse it. */
  rt_task *first = t_cache.head, *last = first;
  for (int i = 1; i < BATCH; i++) last = last->next_free;
  t_cache.head = last->next_free;
  t_cache.n -= BATCH;
  pthread_mutex_lock(&ts->pool_lock);
  last->next_free = ts->pool_free;
  ts->pool_free = first;
  pthread_mutex_unlock(&ts->pool_lock);
}

int rt_tasks_init(rt_tasks *ts, uint64_t epoch) {
  memset(ts, 0, sizeof *ts);
  ts->epoch = epoch;
  return pthread_mutex_init(&ts->pool_lock, NULL);
}

void rt_tasks_destroy(rt_tasks *ts) {
  for (size_t i = 0; i < ts->nslabs; i++) rt_prim_unmap(ts->slabs[i], SLAB_BYTES);
  free(ts->slabs);
  pthread_mutex_destroy(&ts->pool_lock);
}
