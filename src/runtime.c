/*
 * runtime.c - ray_init / ray_shutdown: builds the layers, wires them
 * together and publishes them; the one file that knows them all.
 *
 * The layers below know nothing above them (docs/ARCHITECTURE.md draws the
 * include graph; scripts/layers.sh checks it): the store calls up only
 * through the ops table installed here (help, block, run a producer), and
 * the task layer reaches actors only through the ops the actor layer
 * installs when it is bound. Each layer finds itself through its own
 * published pointer (rt_store_current, rt_tasks_current,
 * rt_actors_current); this file publishes them, with release stores, once
 * everything is built, and every public call begins with an acquire load,
 * so a call sees either no runtime (RAY_ESHUTDOWN) or a complete one.
 *
 * ray_init and ray_shutdown serialise on g_life_lock. Shutdown first
 * refuses outside submissions and waits for those already inside a
 * submission call (each outside thread passes a gate of its own:
 * core/gate.h), drains the tasks, stops the pool, then unpublishes and
 * frees. Submissions may race shutdown (they are refused, or finish before
 * anything is freed); other calls must not, which is what lets it free
 * without a reader count on the hot paths of gets and puts.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "actor/actor.h"
#include "cluster/cluster.h"
#include "cluster/remote.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/error.h"
#include "core/gate.h"
#include "core/prim.h"
#include "sched/sched.h"
#include "store/store.h"
#include "task/task.h"
#include "trace/timeline.h"

/* The one runtime of the process: every layer's struct, side by side. */
typedef struct rt_runtime {
  rt_config cfg;
  rt_store store;
  rt_sched *sched;
  rt_tasks tasks;
  rt_actors actors;
  rt_timeline timeline;
  bool timeline_summary; /* RAY_TIMELINE_SUMMARY=1: the summary at the end */
  uint32_t pid;          /* of the process that ran ray_init (at exit: not a fork child) */
  uint64_t epoch;        /* 1, 2, ... per ray_init in this process */
} rt_runtime;

/* Published last by ray_init (release) and cleared first by ray_shutdown;
 * read (acquire) only here, under g_life_lock or by ray_is_initialized. */
static _Atomic(rt_runtime *) g_runtime;

static pthread_mutex_t g_life_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_epoch; /* under g_life_lock */

static rt_runtime *current(void) {
  return atomic_load_explicit(&g_runtime, memory_order_acquire);
}

/* ---- the store's hooks to the layers above it (store.h, rt_store_ops) --- */

static bool store_help(void *arg) {
  return rt_sched_help(((rt_runtime *)arg)->sched);
}
static void store_block_begin(void *arg) {
  rt_sched_block_begin(((rt_runtime *)arg)->sched);
}
static void store_block_end(void *arg) {
  rt_sched_block_end(((rt_runtime *)arg)->sched);
}
static bool store_run_producer(void *arg, ray_ref *ref) {
  return rt_task_recent_own(ref) && rt_task_run_producer(&((rt_runtime *)arg)->tasks, ref);
}
static void store_slice(void *arg, const char *kind, const char *name, uint64_t id,
                        ray_status status, bool io_thread, uint64_t start_ns, uint64_t end_ns) {
  rt_runtime *rt = arg;
  if (!rt->timeline.on) return;
  int track = io_thread ? RT_TL_TRACK_IO : rt_sched_worker_index(rt->sched);
  rt_timeline_record(&rt->timeline, &(rt_tl_slice){kind, name, id, 1, status, false, track,
                                                   start_ns, end_ns, NULL, 0});
}

/* ---- timeline: the environment switch and the at-exit write ------------- */

/* RAY_TIMELINE_SUMMARY: unset, "" or "0" off, "1" on; anything else is an
 * error, as for the RAY_* variables of ray_config_init. */
static ray_status timeline_summary_env(bool *on) {
  const char *v = getenv("RAY_TIMELINE_SUMMARY");
  *on = v && !strcmp(v, "1");
  if (v && *v && strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
    return rt_fail(RAY_EINVAL, "ray_init: RAY_TIMELINE_SUMMARY='%.64s' is not 0 or 1", v);
  return RAY_OK;
}

/* A program that sets a timeline and exits without ray_shutdown (returns
 * from main, calls exit) still gets its file and summary, with one line on
 * stderr that says why; _exit, a crash or a signal skip this. Workers may
 * still run: the write reads a snapshot, which is safe while they record.
 * trylock: an init or a shutdown under way (on any thread, this one
 * included) owns the runtime; then nothing is done here. */
static void timeline_at_exit(void) {
  if (pthread_mutex_trylock(&g_life_lock) != 0) return;
  rt_runtime *rt = current();
  if (rt && rt->timeline.on && rt->pid == rt_prim_pid()) {
    const char *path = rt->cfg.timeline_path;
    if (path) {
      if (rt_timeline_write(&rt->timeline, path, RT_TL_AT_EXIT, "at exit") == RAY_OK)
        rt_warn("the program exited without calling ray_shutdown; wrote the timeline so far "
                "to '%s'",
                path);
      else
        rt_warn("the program exited without calling ray_shutdown, and the timeline could not "
                "be written: %s",
                ray_last_error());
    }
    if (rt->timeline_summary) {
      if (!path)
        rt_warn("the program exited without calling ray_shutdown; the timeline's summary so "
                "far:");
      (void)rt_timeline_summary(&rt->timeline, stderr, "at exit");
    }
  }
  pthread_mutex_unlock(&g_life_lock);
}

static void register_at_exit(void) {
  if (atexit(timeline_at_exit) != 0)
    rt_warn("cannot register the at-exit write of the timeline: it is written by ray_shutdown "
            "only");
}

/* Cluster mode: this rank's timeline events, for the driver's one trace. */
static ray_status trace_fragment(void *arg, int rank, char **out, size_t *len) {
  rt_runtime *rt = arg;
  if (!rt->timeline.on) return RAY_EINVAL;
  return rt_timeline_fragment(&rt->timeline, rank, out, len, "ray_shutdown");
}

/* ---- init ---------------------------------------------------------------- */

/* Builds every layer bottom-up, binds them, and publishes them. On failure
 * it undoes what it built in reverse order (one label per step) and
 * returns the status, with the last error set. */
static ray_status runtime_start(const ray_config *cfg) {
  /* Cache-line aligned: hot counters inside sit on lines of their own. */
  size_t rt_size = (sizeof(rt_runtime) + 63) & ~(size_t)63;
  rt_runtime *rt = rt_aligned_alloc(64, rt_size);
  if (!rt) return rt_fail(RAY_ENOMEM, "ray_init: out of memory");
  memset(rt, 0, rt_size);
  ray_status s;
  int err;
  if ((s = rt_config_resolve(cfg, &rt->cfg)) != RAY_OK) goto free_rt;
  if ((s = timeline_summary_env(&rt->timeline_summary)) != RAY_OK) goto free_cfg;
  rt->pid = rt_prim_pid();
  rt->epoch = ++g_epoch;
  if ((s = rt_store_init(&rt->store, &rt->cfg, rt->epoch)) != RAY_OK) goto free_cfg;
  rt_timeline_init(&rt->timeline, rt->cfg.timeline_path || rt->timeline_summary, rt->epoch,
                   rt->cfg.num_workers);
  if (rt_tasks_init(&rt->tasks, rt->epoch) != 0) {
    s = rt_fail(RAY_ENOMEM, "ray_init: out of memory setting up the task layer");
    goto free_store;
  }
  if (rt_actors_init(&rt->actors) != 0) {
    s = rt_fail(RAY_ENOMEM, "ray_init: out of memory setting up the actor layer");
    goto free_tasks;
  }
  if ((err = rt_sched_create(rt->cfg.num_workers, &rt->sched)) != 0) {
    s = rt_fail(err == ENOMEM ? RAY_ENOMEM : RAY_EIO, "ray_init: cannot start %d workers: %s",
                rt->cfg.num_workers, strerror(err));
    goto free_actors;
  }

  rt_store_ops ops = {
      rt,   store_help, store_block_begin, store_block_end, store_run_producer, store_slice,
      NULL, NULL};
#ifdef RAY_HAVE_MPI
  ops.pull = rt_remote_pull;
  ops.remote_freed = rt_remote_freed;
#endif
  rt_store_set_ops(&rt->store, &ops);
  rt_tasks_bind(&rt->tasks, &rt->store, rt->sched, &rt->timeline);
#ifdef RAY_HAVE_MPI
  rt_remote_bind(&rt->store, &rt->tasks, rt->cfg.num_workers);
#endif
  rt_cluster_set_trace_source(trace_fragment, rt);
  rt_actors_bind(&rt->actors, &rt->tasks);
  /* release: each publishes the fully built runtime to its layer's
   * current() (acquire). The store first, then the actors before the
   * tasks: the actor calls enter through the task layer's gate
   * (rt_tasks_enter) and then read rt_actors_current(), which must not be
   * NULL once the task layer is found. */
  atomic_store_explicit(&rt_g_store, &rt->store, memory_order_release);
  atomic_store_explicit(&rt_g_actors, &rt->actors, memory_order_release);
  atomic_store_explicit(&rt_g_tasks, &rt->tasks, memory_order_release);
  atomic_store_explicit(&g_runtime, rt, memory_order_release);
  if (rt->timeline.on) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_at_exit);
  }
  return RAY_OK;

free_actors:
  rt_actors_destroy(&rt->actors);
free_tasks:
  rt_tasks_destroy(&rt->tasks);
free_store:
  rt_timeline_destroy(&rt->timeline);
  rt_store_destroy(&rt->store);
free_cfg:
  rt_config_free(&rt->cfg);
free_rt:
  free(rt);
  return s;
}

ray_status ray_init(const ray_config *cfg) {
  pthread_mutex_lock(&g_life_lock);
  ray_status s = RAY_OK;
  if (current())
    s = rt_fail(RAY_EEXIST, "ray_init: the runtime is already running");
  else if ((s = rt_cluster_join()) == RAY_OK) {
    if ((s = runtime_start(cfg)) == RAY_OK && (s = rt_cluster_start()) != RAY_OK) {
      pthread_mutex_unlock(&g_life_lock);
      (void)ray_shutdown(); /* the local runtime; no rank was told anything */
      pthread_mutex_lock(&g_life_lock);
    }
    if (s != RAY_OK) rt_cluster_abandon();
  }
  pthread_mutex_unlock(&g_life_lock);
  /* A rank other than 0 serves from here and exits at the driver's
   * ray_shutdown. */
  if (s == RAY_OK && !rt_cluster_is_driver()) rt_cluster_serve(ray_shutdown);
  return s;
}

/* ---- shutdown ------------------------------------------------------------ */

ray_status ray_shutdown(void) {
  if (rt_task_current())
    return rt_fail(RAY_EINVAL, "ray_shutdown: called from inside a task, which would wait for "
                               "itself");
  pthread_mutex_lock(&g_life_lock);
  rt_runtime *rt = current();
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
    /* The driver: every other rank drains and exits (with the timeline on,
     * after sending its events for the one trace). */
    char *trace = NULL;
    size_t trace_len = 0;
    rt_cluster_stop(rt->timeline.on ? &trace : NULL, &trace_len);
    if (trace) rt_timeline_add_extra(&rt->timeline, trace, trace_len);
    rt_sched_destroy(rt->sched);
    /* Every worker has stopped: the timeline's buffers are complete. The
     * summary is a diagnostic on stderr: its failure does not fail the
     * shutdown. */
    /* In a cluster only the driver writes it (one file, every rank). */
    if (rt->cfg.timeline_path && rt_cluster_is_driver())
      ts = rt_timeline_write(&rt->timeline, rt->cfg.timeline_path, RT_TL_AT_SHUTDOWN,
                             "ray_shutdown");
    if (rt->timeline_summary) (void)rt_timeline_summary(&rt->timeline, stderr, "ray_shutdown");
    rt_cluster_set_trace_source(NULL, NULL);
    rt_timeline_destroy(&rt->timeline);
    /* New calls see no runtime from here on (release, as in init; top-down,
     * the reverse of init). */
    atomic_store_explicit(&g_runtime, NULL, memory_order_release);
    atomic_store_explicit(&rt_g_tasks, NULL, memory_order_release);
    atomic_store_explicit(&rt_g_actors, NULL, memory_order_release);
    atomic_store_explicit(&rt_g_store, NULL, memory_order_release);
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

/* ---- queries -------------------------------------------------------------- */

bool ray_is_initialized(void) {
  return current() != NULL;
}

ray_status ray_stats_get(ray_stats *out) {
  rt_runtime *rt = current();
  if (!rt) return rt_not_running("ray_stats_get");
  if (!out) return rt_fail(RAY_EINVAL, "ray_stats_get: out is NULL");
  memset(out, 0, sizeof *out);
  rt_store *st = &rt->store;
  out->memory_limit = st->limit;
  out->bytes_in_memory = rt_store_bytes_in_memory(st);
  out->bytes_pinned = atomic_load_explicit(&st->bytes_pinned, memory_order_relaxed);
  out->objects = atomic_load_explicit(&st->objects, memory_order_relaxed);
  rt_counts_sum(&st->counts, &out->puts, &out->gets);
  out->bytes_spilled = rt_spill_bytes(&st->disk);
  out->spills = atomic_load_explicit(&st->spills, memory_order_relaxed);
  out->restores = atomic_load_explicit(&st->restores, memory_order_relaxed);
  out->bytes_spilled_total = atomic_load_explicit(&st->bytes_spilled_total, memory_order_relaxed);
  out->bytes_restored_total = atomic_load_explicit(&st->bytes_restored_total, memory_order_relaxed);
  rt_tasks *ts = &rt->tasks;
  out->tasks_submitted = atomic_load_explicit(&ts->submitted, memory_order_relaxed);
  out->tasks_finished = atomic_load_explicit(&ts->finished, memory_order_relaxed);
  out->tasks_failed = atomic_load_explicit(&ts->failed, memory_order_relaxed);
  out->tasks_cancelled = atomic_load_explicit(&ts->cancelled, memory_order_relaxed);
  out->tasks_retried = atomic_load_explicit(&ts->retried, memory_order_relaxed);
  rt_actors_stats(&rt->actors, out);
  return RAY_OK;
}

/* ---- timeline ---------------------------------------------------------------- */

/* The error of a call that needs the timeline when it is off. */
#define timeline_off(fn)                                                                           \
  rt_fail(RAY_EINVAL,                                                                              \
          "%s: the timeline is off; turn it on before ray_init with ray_config.timeline_path, "    \
          "RAY_TIMELINE=PATH or RAY_TIMELINE_SUMMARY=1",                                           \
          (fn))

ray_status ray_timeline_write(const char *path) {
  rt_runtime *rt = current();
  if (!rt) return rt_not_running("ray_timeline_write");
  if (!path || !*path)
    return rt_fail(RAY_EINVAL, "ray_timeline_write: path is %s", path ? "empty" : "NULL");
  if (!rt->timeline.on) return timeline_off("ray_timeline_write");
  return rt_timeline_write(&rt->timeline, path, RT_TL_ON_DEMAND, "ray_timeline_write");
}

ray_status ray_timeline_summary(FILE *out) {
  rt_runtime *rt = current();
  if (!rt) return rt_not_running("ray_timeline_summary");
  if (!out) return rt_fail(RAY_EINVAL, "ray_timeline_summary: out is NULL");
  if (!rt->timeline.on) return timeline_off("ray_timeline_summary");
  return rt_timeline_summary(&rt->timeline, out, "ray_timeline_summary");
}
