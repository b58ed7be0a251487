/*
 * task.c - submitting, resolving, running, retrying and cancelling tasks.
 *
 * Path of a task: ray_submit copies value arguments into a pooled record,
 * takes a reference on each ref argument, creates one PENDING store entry
 * per return (the record is their "producer") and registers a dependency
 * waiter on every argument that is not ready. The last dependency to become
 * ready (the seal of the object, on whatever thread sealed it) pushes the
 * task to the scheduler: from a worker that is its own deque, so a consumer
 * runs where its input is still in cache. A worker runs the function with a
 * ray_ctx (ctx.c), then seals the returns it staged, or fails them, which in
 * turn wakes getters and dependent tasks. Notification, never polling.
 *
 * Errors flow as FAILED entries that carry the failing task's name and
 * reason, so a dependent's message can say which argument came from which
 * task and why that task failed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/prim.h"
#include "runtime.h"
#include "task/ctx.h"
#include "task/task.h"

static _Thread_local rt_task *t_current;

rt_task *rt_task_current(void) { return t_current; }

/* ------------------------------------------------------------------------ */
/* Record lifetime                                                          */
/* ------------------------------------------------------------------------ */

/* Drops the task's references on its ref arguments (once). */
static void release_args(rt_task *t) {
  for (uint32_t i = 0; i < t->nargs; i++)
    if (t->args[i].kind == RT_ARG_REF && t->args[i].ref) {
      ray_ref_release(t->args[i].ref);
      t->args[i].ref = NULL;
    }
}

static void task_free(rt_runtime *rt, rt_task *t) {
  release_args(t);
  for (uint32_t i = 0; i < t->nrets; i++) ray_ref_release(t->rets[i]);
  free(t->children);
  free(t->heap);
  if (t->name != t->name_inl) free((void *)t->name);
  t->children = NULL;
  t->heap = NULL;
  rt_taskpool_put(&rt->tasks, t);
  /* release: the record's last uses happen before a drain that sees 0. */
  if (atomic_fetch_sub_explicit(&rt->tasks.live, 1, memory_order_acq_rel) == 1 &&
      atomic_load_explicit(&rt->tasks.closing, memory_order_acquire))
    rt_prim_futex_wake(&rt->tasks.live, INT32_MAX);
}

static void task_release(rt_runtime *rt, rt_task *t) {
  /* acq_rel: every user's accesses to the record happen before the free. */
  if (atomic_fetch_sub_explicit(&t->rc, 1, memory_order_acq_rel) == 1) task_free(rt, t);
}

/* Fails every return still pending, with one message for all. */
static void fail_returns(rt_runtime *rt, rt_task *t, ray_status status, const char *msg,
                         const char *reason) {
  for (uint32_t i = 0; i < t->nrets; i++)
    rt_store_fail_pending(&rt->store, t->rets[i], status, msg, t->name, reason);
}

static void fail_cancelled(rt_runtime *rt, rt_task *t, const char *how) {
  char msg[320];
  snprintf(msg, sizeof msg, "task '%s' was cancelled%s", t->name, how);
  fail_returns(rt, t, RAY_ECANCELLED, msg, "cancelled");
}

/* ------------------------------------------------------------------------ */
/* Dependencies                                                             */
/* ------------------------------------------------------------------------ */

static void task_run(rt_job *job);

static void deps_ready(rt_runtime *rt, rt_task *t) {
  uint32_t expect = RT_T_WAITING;
  /* acq_rel: a worker that later claims the task (QUEUED -> RUNNING) sees
   * the record as submit and the dependency waiters left it. */
  if (atomic_compare_exchange_strong_explicit(&t->state, &expect, RT_T_QUEUED,
                                              memory_order_acq_rel, memory_order_acquire)) {
    rt_sched_submit(rt->sched, &t->job);
  } else {
    /* Cancelled while waiting: the canceller failed the returns; the last
     * dependency waiter has fired, so nothing points at the record now. */
    task_release(rt, t);
  }
}

static void dep_fire(rt_waiter *w) {
  rt_task_arg *a = (rt_task_arg *)((char *)w - offsetof(rt_task_arg, dep));
  rt_task *t = a->task;
  /* acq_rel: the last decrement sees every other waiter's effects. */
  if (atomic_fetch_sub_explicit(&t->deps, 1, memory_order_acq_rel) == 1)
    deps_ready(rt_current(), t);
}

/* ------------------------------------------------------------------------ */
/* Submit                                                                   */
/* ------------------------------------------------------------------------ */

ray_arg ray_arg_ref(ray_ref *ref) { return (ray_arg){RT_ARG_REF, ref, 0, NULL}; }

ray_arg ray_arg_value(const void *data, size_t size, const ray_type *type) {
  return (ray_arg){RT_ARG_VALUE, data, size, type ? type : &ray_type_bytes};
}

static ray_status check_args(rt_store *st, const ray_arg *args, size_t nargs, size_t *bytes) {
  *bytes = 0;
  for (size_t i = 0; i < nargs; i++) {
    const ray_arg *a = &args[i];
    if (a->kind_ == RT_ARG_REF) {
      if (rt_store_state(st, (ray_ref *)a->p_) == RT_ST_FREE)
        return rt_fail(RAY_EINVAL, "ray_submit: argument %zu: ref %p is %s", i, a->p_,
                       a->p_ ? "released or invalid" : "NULL");
    } else if (a->kind_ == RT_ARG_VALUE) {
      if (!a->p_ || a->size_ == 0)
        return rt_fail(RAY_EINVAL, "ray_submit: argument %zu: value with %s", i,
                       a->p_ ? "size 0" : "NULL data");
      if (!a->type_ || !a->type_->name)
        return rt_fail(RAY_EINVAL, "ray_submit: argument %zu: type has a NULL name", i);
      if (a->type_->elem_size && a->size_ % a->type_->elem_size)
        return rt_fail(RAY_EINVAL,
                       "ray_submit: argument %zu: %zu bytes is not a whole number of '%s' "
                       "elements of %zu bytes",
                       i, a->size_, a->type_->name, a->type_->elem_size);
      *bytes += (a->size_ + 15) & ~(size_t)15;
    } else {
      return rt_fail(RAY_EINVAL,
                     "ray_submit: argument %zu is not from ray_arg_ref or ray_arg_value", i);
    }
  }
  return RAY_OK;
}

/* Lays out args, rets and value bytes in the record or one heap block. */
static bool task_layout(rt_task *t, size_t nargs, size_t nrets, size_t bytes) {
  size_t need = 0;
  if (nargs > RT_TASK_INLINE_ARGS) need += nargs * sizeof(rt_task_arg);
  if (nrets > RT_TASK_INLINE_RETS) need += nrets * sizeof(ray_ref *);
  if (bytes > RT_TASK_INLINE_BYTES) need += bytes + 16;
  t->heap = NULL;
  char *at = NULL;
  if (need) {
    if (!(t->heap = malloc(need + 16))) return false;
    at = (char *)(((uintptr_t)t->heap + 15) & ~(uintptr_t)15);
  }
  if (bytes > RT_TASK_INLINE_BYTES) {
    t->bytes = (unsigned char *)at;
    at += (bytes + 15) & ~(size_t)15;
  } else {
    t->bytes = t->bytes_inl;
  }
  if (nargs > RT_TASK_INLINE_ARGS) {
    t->args = (rt_task_arg *)at;
    at += nargs * sizeof(rt_task_arg);
  } else {
    t->args = t->args_inl;
  }
  t->rets = nrets > RT_TASK_INLINE_RETS ? (ray_ref **)at : t->rets_inl;
  return true;
}

static void add_child(rt_task *parent, ray_ref *first_ret) {
  while (atomic_flag_test_and_set_explicit(&parent->child_lock, memory_order_acquire))
    rt_prim_pause();
  if (parent->nchildren == parent->children_cap) {
    size_t cap = parent->children_cap ? parent->children_cap * 2 : 8;
    ray_ref **c = realloc(parent->children, cap * sizeof *c);
    if (c) {
      parent->children = c;
      parent->children_cap = cap;
    }
  }
  /* Not retained: ray_cancel resolves it, and a freed object's handle no
   * longer resolves (generation check). Dropped if memory ran out. */
  if (parent->nchildren < parent->children_cap) parent->children[parent->nchildren++] = first_ret;
  atomic_flag_clear_explicit(&parent->child_lock, memory_order_release);
}

ray_status ray_submit(ray_task_fn fn, const ray_arg *args, size_t nargs,
                      const ray_task_opts *opts, ray_ref **returns) {
  rt_runtime *rt = rt_current();
  if (!rt) return rt_fail(RAY_ESHUTDOWN, "ray_submit: the runtime is not running (call ray_init first)");
  rt_task *parent = t_current;
  if (!parent && atomic_load_explicit(&rt->tasks.closing, memory_order_acquire))
    return rt_fail(RAY_ESHUTDOWN, "ray_submit: ray_shutdown has begun; only tasks may submit");
  static const ray_task_opts defaults = RAY_TASK_OPTS_INIT;
  if (!opts) opts = &defaults;
  if (!fn) return rt_fail(RAY_EINVAL, "ray_submit: fn is NULL");
  if (nargs && !args) return rt_fail(RAY_EINVAL, "ray_submit: args is NULL with nargs = %zu", nargs);
  if (nargs > UINT32_MAX) return rt_fail(RAY_EINVAL, "ray_submit: nargs = %zu is too many", nargs);
  if (opts->num_returns < 0 || opts->num_returns > RT_TASK_MAX_RETURNS)
    return rt_fail(RAY_EINVAL, "ray_submit: num_returns %d is not in 0..%d", opts->num_returns,
                   RT_TASK_MAX_RETURNS);
  if (opts->num_returns && !returns)
    return rt_fail(RAY_EINVAL, "ray_submit: returns is NULL with num_returns = %d",
                   opts->num_returns);
  if (opts->max_retries < -1)
    return rt_fail(RAY_EINVAL, "ray_submit: max_retries %d is below -1", opts->max_retries);
  size_t bytes;
  ray_status s = check_args(&rt->store, args, nargs, &bytes);
  if (s != RAY_OK) return s;

  rt_task *t = rt_taskpool_get(&rt->tasks);
  if (!t) return rt_fail(RAY_ENOMEM, "ray_submit: out of memory for a task record");
  size_t nrets = (size_t)opts->num_returns;
  if (!task_layout(t, nargs, nrets, bytes)) {
    rt_taskpool_put(&rt->tasks, t);
    return rt_fail(RAY_ENOMEM, "ray_submit: out of memory for %zu arguments", nargs);
  }
  const char *name = opts->name ? opts->name : "unnamed";
  size_t nlen = strlen(name);
  if (nlen < RT_TASK_NAME_INLINE) {
    memcpy(t->name_inl, name, nlen + 1);
    t->name = t->name_inl;
  } else if (!(t->name = strdup(name))) {
    free(t->heap);
    rt_taskpool_put(&rt->tasks, t);
    return rt_fail(RAY_ENOMEM, "ray_submit: out of memory for the task name");
  }
  t->job.run = task_run;
  t->fn = fn;
  t->nargs = (uint32_t)nargs;
  t->nrets = 0;
  t->max_retries = opts->max_retries;
  t->attempts = 0;
  t->children = NULL;
  t->nchildren = t->children_cap = 0;
  atomic_flag_clear(&t->child_lock);
  atomic_store_explicit(&t->state, RT_T_WAITING, memory_order_relaxed);
  atomic_store_explicit(&t->cancel, 0, memory_order_relaxed);
  atomic_store_explicit(&t->rc, 1, memory_order_relaxed);
  atomic_store_explicit(&t->deps, 1, memory_order_relaxed); /* guard while registering */

  unsigned char *at = t->bytes;
  for (size_t i = 0; i < nargs; i++) {
    rt_task_arg *a = &t->args[i];
    memset(a, 0, sizeof *a);
    a->kind = args[i].kind_;
    a->task = t;
    if (a->kind == RT_ARG_REF) {
      a->ref = ray_ref_retain((ray_ref *)args[i].p_); /* checked above */
      a->dep.fire = dep_fire;
    } else {
      memcpy(at, args[i].p_, args[i].size_);
      a->data = at;
      a->size = args[i].size_;
      a->type = args[i].type_;
      at += (args[i].size_ + 15) & ~(size_t)15;
    }
  }
  ray_ref *user[RT_TASK_MAX_RETURNS];
  for (size_t i = 0; i < nrets; i++) {
    if ((s = rt_store_new_pending(&rt->store, "ray_submit", t, &user[i])) != RAY_OK) {
      for (size_t j = 0; j < i; j++) ray_ref_release(user[j]); /* the task's ref goes in free */
      t->nrets = (uint32_t)i;
      atomic_fetch_add_explicit(&rt->tasks.live, 1, memory_order_relaxed);
      task_free(rt, t);
      return s;
    }
    t->rets[i] = user[i]; /* same handle value, the entry counts two refs */
    t->nrets++;
  }
  atomic_fetch_add_explicit(&rt->tasks.live, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&rt->tasks.submitted, 1, memory_order_relaxed);
  if (parent && nrets) add_child(parent, user[0]);
  for (size_t i = 0; i < nrets; i++) returns[i] = user[i];

  /* Register dependencies last: from the first registration on, another
   * thread may fire it, and the guard count keeps the task from starting
   * before every argument has been looked at. */
  for (size_t i = 0; i < nargs; i++) {
    rt_task_arg *a = &t->args[i];
    if (a->kind != RT_ARG_REF) continue;
    atomic_fetch_add_explicit(&t->deps, 1, memory_order_relaxed);
    if (!rt_store_add_waiter(&rt->store, a->ref, &a->dep))
      atomic_fetch_sub_explicit(&t->deps, 1, memory_order_relaxed);
  }
  if (atomic_fetch_sub_explicit(&t->deps, 1, memory_order_acq_rel) == 1) deps_ready(rt, t);
  return RAY_OK;
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */
/* ------------------------------------------------------------------------ */

/* If an argument failed, fails the task's returns and returns true. */
static bool upstream_failed(rt_runtime *rt, rt_task *t) {
  for (uint32_t i = 0; i < t->nargs; i++) {
    if (t->args[i].kind != RT_ARG_REF) continue;
    const rt_error *err = rt_store_error(&rt->store, t->args[i].ref);
    if (!err) continue;
    char reason[400], msg[480];
    ray_status status = err->status == RAY_ECANCELLED ? RAY_ECANCELLED : RAY_ETASK;
    if (err->task && err->status == RAY_ECANCELLED)
      snprintf(reason, sizeof reason, "not run: argument %u comes from task '%s', which was cancelled",
               i, err->task);
    else if (err->task)
      snprintf(reason, sizeof reason, "not run: argument %u comes from task '%s', which failed: %s",
               i, err->task, err->reason ? err->reason : err->msg);
    else
      snprintf(reason, sizeof reason, "not run: argument %u failed: %s", i, err->msg);
    snprintf(msg, sizeof msg, "task '%s' %s", t->name, reason);
    /* Counted before the returns fail: whoever sees the result sees the
     * stats include it (the same order everywhere below). */
    atomic_fetch_add_explicit(status == RAY_ECANCELLED ? &rt->tasks.cancelled : &rt->tasks.failed,
                              1, memory_order_relaxed);
    fail_returns(rt, t, status, msg, reason);
    return true;
  }
  return false;
}

static void task_run(rt_job *job) {
  rt_task *t = (rt_task *)job;
  rt_runtime *rt = rt_current();
  uint32_t expect = RT_T_QUEUED;
  if (!atomic_compare_exchange_strong_explicit(&t->state, &expect, RT_T_RUNNING,
                                               memory_order_acq_rel, memory_order_acquire)) {
    task_release(rt, t); /* cancelled while queued: the canceller failed the returns */
    return;
  }
  if (upstream_failed(rt, t)) {
    atomic_store_explicit(&t->state, RT_T_DONE, memory_order_release);
    task_release(rt, t);
    return;
  }
  t->attempts++;
  rt_task_outcome out;
  rt_task *outer = t_current;
  t_current = t;
  rt_ctx_run(rt, t, &out);
  t_current = outer;

  char msg[640];
  /* The arguments are done with: drop them before the results become
   * visible, so a caller that sees the result sees them gone (unless it
   * holds them itself). A retry keeps them. */
  bool retry = out.status != RAY_OK && !atomic_load_explicit(&t->cancel, memory_order_acquire) &&
               (t->max_retries < 0 || t->attempts <= t->max_retries);
  if (!retry) release_args(t);
  if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
    rt_ctx_discard(rt, &out);
    atomic_fetch_add_explicit(&rt->tasks.cancelled, 1, memory_order_relaxed);
    fail_cancelled(rt, t, " while running");
  } else if (out.status != RAY_OK) {
    rt_ctx_discard(rt, &out);
    if (retry) {
      free(out.reason);
      rt_ctx_done(&out);
      atomic_fetch_add_explicit(&rt->tasks.retried, 1, memory_order_relaxed);
      atomic_store_explicit(&t->state, RT_T_QUEUED, memory_order_release);
      rt_sched_submit(rt->sched, &t->job);
      return;
    }
    const char *reason = out.reason ? out.reason : "failed";
    if (t->max_retries != 0)
      snprintf(msg, sizeof msg, "task '%s' failed after %d attempt%s: %s", t->name, t->attempts,
               t->attempts == 1 ? "" : "s", reason);
    else
      snprintf(msg, sizeof msg, "task '%s' failed: %s", t->name, reason);
    atomic_fetch_add_explicit(&rt->tasks.failed, 1, memory_order_relaxed);
    fail_returns(rt, t, RAY_ETASK, msg, reason);
    free(out.reason);
  } else {
    bool all_set = true;
    for (uint32_t i = 0; i < t->nrets; i++) all_set &= out.staged[i].data != NULL;
    atomic_fetch_add_explicit(all_set ? &rt->tasks.finished : &rt->tasks.failed, 1,
                              memory_order_relaxed);
    for (uint32_t i = 0; i < t->nrets; i++) {
      if (out.staged[i].data) {
        rt_store_seal_pending(&rt->store, t->rets[i], &out.staged[i]);
      } else {
        char reason[160];
        snprintf(reason, sizeof reason, "returned RAY_OK without setting return %u of %u", i,
                 t->nrets);
        snprintf(msg, sizeof msg, "task '%s' %s", t->name, reason);
        rt_store_fail_pending(&rt->store, t->rets[i], RAY_ETASK, msg, t->name, reason);
      }
    }
  }
  rt_ctx_done(&out);
  atomic_store_explicit(&t->state, RT_T_DONE, memory_order_release);
  task_release(rt, t);
}

/* ------------------------------------------------------------------------ */
/* Cancel                                                                   */
/* ------------------------------------------------------------------------ */

/* Under the stripe lock of one of the task's returns, which keeps the
 * record alive: mark it, and hold it for the canceller. */
static void cancel_locked(void *producer, void *arg) {
  rt_task *t = producer;
  /* release: a running task that reads the flag (acquire) sees the cancel. */
  atomic_store_explicit(&t->cancel, 1, memory_order_release);
  atomic_fetch_add_explicit(&t->rc, 1, memory_order_relaxed); /* record is alive: relaxed */
  *(rt_task **)arg = t;
}

static void cancel_task(rt_runtime *rt, ray_ref *ref, bool recursive) {
  rt_task *t = NULL;
  if (!rt_store_with_producer(&rt->store, ref, cancel_locked, &t)) return;
  for (uint32_t from = RT_T_WAITING; from <= RT_T_QUEUED; from++) {
    uint32_t expect = from;
    if (atomic_compare_exchange_strong_explicit(&t->state, &expect, RT_T_CANCELLED,
                                                memory_order_acq_rel, memory_order_acquire)) {
      atomic_fetch_add_explicit(&rt->tasks.cancelled, 1, memory_order_relaxed);
      fail_cancelled(rt, t, "");
      break;
    }
  }
  if (recursive) {
    while (atomic_flag_test_and_set_explicit(&t->child_lock, memory_order_acquire))
      rt_prim_pause();
    size_t n = t->nchildren;
    ray_ref **kids = n ? malloc(n * sizeof *kids) : NULL;
    if (kids) memcpy(kids, t->children, n * sizeof *kids);
    atomic_flag_clear_explicit(&t->child_lock, memory_order_release);
    for (size_t i = 0; kids && i < n; i++) cancel_task(rt, kids[i], true);
    free(kids);
  }
  task_release(rt, t);
}

ray_status ray_cancel(ray_ref *ref, bool recursive) {
  rt_runtime *rt = rt_current();
  if (!rt) return rt_fail(RAY_ESHUTDOWN, "ray_cancel: the runtime is not running (call ray_init first)");
  if (rt_store_state(&rt->store, ref) == RT_ST_FREE)
    return rt_fail(RAY_EINVAL, "ray_cancel: ref %p is %s", (void *)ref,
                   ref ? "released or invalid" : "NULL");
  cancel_task(rt, ref, recursive);
  return RAY_OK;
}

/* ------------------------------------------------------------------------ */
/* Shutdown                                                                 */
/* ------------------------------------------------------------------------ */

void rt_tasks_drain(rt_tasks *ts) {
  /* seq_cst store then load of live: either a finishing task sees closing
   * and wakes us, or we see its decrement. */
  atomic_store(&ts->closing, 1);
  uint32_t n;
  while ((n = atomic_load(&ts->live)) != 0) rt_prim_futex_wait(&ts->live, n, UINT64_MAX);
}
