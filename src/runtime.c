/*
 * runtime.c - ray_init / ray_shutdown: owns the one store of the process.
 *
 * The runtime pointer is published with a release store once everything in
 * it is built, and every public call begins with an acquire load of it, so a
 * call sees either no runtime (RAY_ESHUTDOWN) or a complete one. ray_init and
 * ray_shutdown serialise on g_life_lock. Shutdown first refuses outside
 * submissions and waits for those already inside a submission call (each
 * outside thread passes a gate of its own: core/gate.h), drains the tasks,
 * stops the pool, then unpublishes and frees. Submissions may race
 * shutdown (they are refused, or finish before anything is freed); other
 * calls must not, which is what lets it free without a reader count on the
 * hot paths of gets and puts.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/prim.h"
#include "runtime.h"

_Atomic(rt_runtime *) rt_g_runtime;

static pthread_mutex_t g_life_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_epoch; /* under g_life_lock */

rt_store *rt_store_for(const char *fn) {
  rt_runtime *rt = rt_current();
  if (RT_LIKELY(rt != NULL)) return &rt->store;
  (void)rt_not_running(fn);
  return NULL;
}

bool rt_task_run_awaited(rt_runtime *rt, ray_ref *ref) {
  return rt_task_run_producer(&rt->tasks, ref);
}

ray_status ray_init(const ray_config *cfg) {
  pthread_mutex_lock(&g_life_lock);
  ray_status s = RAY_OK;
  rt_runtime *rt = NULL;
  if (rt_current()) {
    s = rt_fail(RAY_EEXIST, "ray_init: the runtime is already running");
    goto out;
  }
  /* Cache-line aligned: hot counters inside sit on lines of their own. */
  size_t rt_size = (sizeof *rt + 63) & ~(size_t)63;
  rt = rt_aligned_alloc(64, rt_size);
  if (rt) memset(rt, 0, rt_size);
  if (!rt) {
    s = rt_fail(RAY_ENOMEM, "ray_init: out of memory");
    goto out;
  }
  if ((s = rt_config_resolve(cfg, &rt->cfg)) != RAY_OK) goto out;
  rt->epoch = ++g_epoch;
  if ((s = rt_store_init(&rt->store, &rt->cfg, rt->epoch)) != RAY_OK) {
    rt_config_free(&rt->cfg);
    goto out;
  }
  rt_timeline_init(&rt->timeline, rt->cfg.timeline_path != NULL, rt->epoch);
  if (rt_tasks_init(&rt->tasks, rt->epoch) != 0) {
    s = rt_fail(RAY_ENOMEM, "ray_init: cannot set up the task layer");
    goto fail_store;
  }
  if (rt_actors_init(&rt->actors) != 0) {
    rt_tasks_destroy(&rt->tasks);
    s = rt_fail(RAY_ENOMEM, "ray_init: cannot set up the actor layer");
    goto fail_store;
  }
  int err = rt_sched_create(rt->cfg.num_workers, &rt->sched);
  if (err) {
    rt_actors_destroy(&rt->actors);
    s = rt_fail(err == ENOMEM ? RAY_ENOMEM : RAY_EIO, "ray_init: cannot start %d workers: %s",
                rt->cfg.num_workers, strerror(err));
    rt_tasks_destroy(&rt->tasks);
    goto fail_store;
  }
  rt_tasks_bind(&rt->tasks, &rt->store, rt->sched, &rt->timeline);
  rt_actors_bind(&rt->actors, &rt->tasks);
  /* release: publishes the fully built runtime to rt_current(),
   * rt_actors_current() and rt_tasks_current() (the actor layer first: a
   * caller that found the task layer finds it). */
  atomic_store_explicit(&rt_g_actors, &rt->actors, memory_order_release);
  atomic_store_explicit(&rt_g_tasks, &rt->tasks, memory_order_release);
  atomic_store_explicit(&rt_g_runtime, rt, memory_order_release);
  rt = NULL;
  goto out;
fail_store:
  rt_store_destroy(&rt->store);
  rt_config_free(&rt->cfg);
out:
  free(rt);
  pthread_mutex_unlock(&g_life_lock);
  return s;
}

ray_status ray_shutdown(void) {
  if (rt_task_current())
    return rt_fail(RAY_EINVAL, "ray_shutdown: called from inside a task, which would wait for "
                               "itself");
  pthread_mutex_lock(&g_life_lock);
  rt_runtime *rt = rt_current();
  ray_status ts = RAY_OK;
  if (rt) {
    /* Outside submissions are refused from here, and those already inside
     * a submission call finish it; submitted work, and the work it submits,
     * runs to the end. Then the pool stops. */
    rt_tasks_close(&rt->tasks);
    rt_gate_wait_all();
    rt_tasks_drain(&rt->tasks);
    rt_actors_end_all(&rt->actors); /* queued calls ran above; now on_stop, once each */
    rt_tasks_drain(&rt->tasks);     /* what on_stop submitted */
    rt_sched_destroy(rt->sched);
    /* Every worker has stopped: the timeline's buffers are complete. */
    ts = rt_timeline_finish(&rt->timeline, rt->cfg.timeline_path);
    /* New calls see no runtime from here on (acquire/release as in init). */
    atomic_store_explicit(&rt_g_runtime, NULL, memory_order_release);
    atomic_store_explicit(&rt_g_tasks, NULL, memory_order_release);
    atomic_store_explicit(&rt_g_actors, NULL, memory_order_release);
    rt_actors_destroy(&rt->actors);
    rt_tasks_destroy(&rt->tasks);
    rt_store_destroy(&rt->store);
    rt_config_free(&rt->cfg);
    free(rt);
    /* Memory freed on another thread than it was allocated on stays in
     * glibc's per-thread arenas, and each runtime's threads are new: a
     * program that starts and stops runtimes would see its resident size
     * ratchet up (about 13 MiB in 10 minutes of ray_stress --soak) though
     * nothing leaks. */
    rt_prim_heap_trim();
  }
  pthread_mutex_unlock(&g_life_lock);
  return ts;
}

bool ray_is_initialized(void) {
  return rt_current() != NULL;
}

ray_status ray_stats_get(ray_stats *out) {
  rt_store *st = rt_store_for("ray_stats_get");
  if (!st) return RAY_ESHUTDOWN;
  if (!out) return rt_fail(RAY_EINVAL, "ray_stats_get: out is NULL");
  memset(out, 0, sizeof *out);
  out->memory_limit = st->limit;
  out->bytes_in_memory = rt_store_bytes_in_memory(st);
  out->bytes_pinned = atomic_load_explicit(&st->bytes_pinned, memory_order_relaxed);
  out->objects = atomic_load_explicit(&st->objects, memory_order_relaxed);
  rt_counts_sum(&st->counts, &out->puts, &out->gets);
  rt_runtime *rt = rt_current();
  rt_tasks *ts = &rt->tasks;
  out->tasks_submitted = atomic_load_explicit(&ts->submitted, memory_order_relaxed);
  out->tasks_finished = atomic_load_explicit(&ts->finished, memory_order_relaxed);
  out->tasks_failed = atomic_load_explicit(&ts->failed, memory_order_relaxed);
  out->tasks_cancelled = atomic_load_explicit(&ts->cancelled, memory_order_relaxed);
  out->tasks_retried = atomic_load_explicit(&ts->retried, memory_order_relaxed);
  rt_actors_stats(&rt->actors, out);
  return RAY_OK;
}
