/*
 * task.c - submitting, resolving, running, retrying and cancelling tasks.
 *
 * Path of a task: ray_submit copies value arguments into a pooled record,
 * takes a reference on each ref argument, creates one PENDING store entry
 * per return (the record is their "producer") and registers a dependency
 * waiter on every argument that is not ready. The last dependency to become
 * ready (the seal of the object, on whatever thread sealed it) pushes the
 * task to the scheduler: from a worker that is its own deque, so a consumer
 * runs where its input is still in cache; if one of them failed, that
 * thread fails the task at once instead (fail_unrun). A worker runs the
 * function with a ray_ctx (ctx.c), then seals the returns it staged, or
 * fails them, which in turn wakes getters and dependent tasks.
 * Notification, never polling.
 *
 * Errors flow as FAILED entries that carry the failing task's name and
 * reason, so a dependent's message can say which argument came from which
 * task and why that task failed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/array.h"
#include "core/prim.h"
#include "core/symbol.h"
#include "core/types.h"
#include "task/ctx.h"
#include "task/fnname.h"
#include "task/task.h"

_Atomic(rt_tasks *) rt_g_tasks;

/* The record's states (task.h). CANCELLED_W: cancelled while WAITING (the
 * dependency path still owns its reference); CANCELLED_Q: cancelled while
 * QUEUED (the queue owns it). Only this file names them: other modules use
 * the state verbs. */
enum { RT_T_WAITING, RT_T_QUEUED, RT_T_RUNNING, RT_T_CANCELLED_W, RT_T_CANCELLED_Q, RT_T_DONE };

/* Unique ids for records and submitting threads (relaxed: only uniqueness
 * matters). A thread's id is drawn once, on its first call. */
static _Atomic uint64_t g_ids = 1;
static _Thread_local uint64_t t_thread_id;

/* Ids come to each thread in blocks, so a submit does not bounce g_ids
 * between the cores that submit. */
#define ID_BLOCK 1024
static _Thread_local struct { uint64_t next, end; } t_ids;

static uint64_t new_id(void) {
  if (RT_UNLIKELY(t_ids.next == t_ids.end)) {
    t_ids.next = atomic_fetch_add_explicit(&g_ids, ID_BLOCK, memory_order_relaxed);
    t_ids.end = t_ids.next + ID_BLOCK;
  }
  return t_ids.next++;
}

uint64_t rt_submitter_id(void) {
  rt_task *cur = rt_task_current();
  if (cur) return cur->id;
  if (!t_thread_id) t_thread_id = new_id();
  return t_thread_id;
}

/* The first returns of the last RECENT tasks this thread submitted from
 * outside the pool (rt_task_recent_own). Handles, not pointers: a stale
 * one only costs a try that finds nothing. */
#define RECENT 4
static _Thread_local struct {
  ray_ref *ref[RECENT];
  uint32_t next;
} t_recent;

bool rt_task_recent_own(ray_ref *ref) {
  for (int i = 0; i < RECENT; i++)
    if (t_recent.ref[i] == ref) return true;
  return false;
}

/* Task counters count plain tasks; actor calls have their own. */
static void count(rt_task *t, _Atomic uint64_t *counter) {
  if (!t->actor) atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

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

static void task_free(rt_tasks *ts, rt_task *t) {
  release_args(t);
  for (uint32_t i = 0; i < t->nargs; i++)
    if (t->args[i].kind == RT_ARG_ACTOR) ray_actor_release(t->args[i].actor);
  rt_actor *actor = t->actor;
  bool counted = !t->uncounted;
  for (uint32_t i = 0; i < t->nrets; i++) ray_ref_release(t->rets[i]);
  free(t->children);
  free(t->heap);
  if (t->name_owned) free((void *)t->name);
  t->children = NULL;
  t->heap = NULL;
  t->actor = NULL;
  rt_taskpool_put(ts, t);
  if (actor) ts->owner_ops->actor_unref(ts->owner, actor);
  if (counted) rt_tally_out(&ts->tally);
}

void rt_task_uncount(rt_tasks *ts, rt_task *t) {
  t->uncounted = true;
  rt_tally_out(&ts->tally);
}

static void task_release(rt_tasks *ts, rt_task *t) {
  /* acq_rel: every user's accesses to the record happen before the free. */
  if (atomic_fetch_sub_explicit(&t->rc, 1, memory_order_acq_rel) == 1) task_free(ts, t);
}

void rt_task_release(rt_tasks *ts, rt_task *t) {
  task_release(ts, t);
}

/* Fails every return still pending, with one message for all. A send has
 * no return to carry the failure: it is written to stderr and counted. */
static void fail_returns(rt_tasks *ts, rt_task *t, ray_status status, const char *msg,
                         const char *reason) {
  for (uint32_t i = 0; i < t->nrets; i++)
    rt_store_fail_pending(ts->store, t->rets[i], status, msg, t->name, reason);
  if (t->send) {
    atomic_fetch_add_explicit(&ts->sends_failed, 1, memory_order_relaxed);
    rt_warn("ray_actor_send: %s", msg);
  }
}

void rt_task_fail_returns(rt_tasks *ts, rt_task *t, ray_status status, const char *msg,
                          const char *reason) {
  fail_returns(ts, t, status, msg, reason);
}

static void fail_cancelled(rt_tasks *ts, rt_task *t, const char *how) {
  char msg[320];
  snprintf(msg, sizeof msg, "task '%s' was cancelled%s", t->name, how);
  fail_returns(ts, t, RAY_ECANCELLED, msg, "cancelled");
}

/* ------------------------------------------------------------------------ */
/* State verbs                                                              */
/* ------------------------------------------------------------------------ */

/* Each verb below says which store/CAS its release pairs with (who
 * acquires it) and which release its acquire pairs with. The record's
 * memory as a whole is ordered by rc (task_release, acq_rel); the state
 * orders who acts on it. */

bool rt_task_claim_run(rt_task *t) {
  uint32_t expect = RT_T_QUEUED;
  /* acquire: pairs with the release that made it QUEUED (deps_ready's CAS,
   * rt_task_requeue; the start's relaxed store is published by the queue
   * hand-off), so the runner sees the record as they left it. release:
   * a canceller's failed rt_task_claim_end and the owner's
   * rt_task_readiness (acquire) see it claimed. Racing claims (a worker's
   * task_run, a get's rt_task_run_producer, an actor turn) and cancels:
   * the CAS lets exactly one win. */
  return atomic_compare_exchange_strong_explicit(&t->state, &expect, RT_T_RUNNING,
                                                 memory_order_acq_rel, memory_order_acquire);
}

void rt_task_requeue(rt_task *t) {
  /* release: pairs with the next rt_task_claim_run's CAS (the worker that
   * pops the resubmitted job, or the actor turn after a restart) and the
   * turn's rt_task_readiness: the next run sees what this one left. */
  atomic_store_explicit(&t->state, RT_T_QUEUED, memory_order_release);
}

void rt_task_finish(rt_task *t) {
  /* release: pairs with a canceller's failed rt_task_claim_end and with
   * rt_task_release_queued's load (acquire); those need only the value. */
  atomic_store_explicit(&t->state, RT_T_DONE, memory_order_release);
}

bool rt_task_claim_end(rt_task *t) {
  /* acq_rel: the winner of the CAS owns ending the task; its acquire pairs
   * with the release that made it WAITING (submit, published by the
   * returns' or the parent's hand-off) or QUEUED (deps_ready, requeue);
   * its release pairs with the acquire of the loser: deps_ready's failed
   * CAS, rt_task_claim_run's failed CAS, rt_task_readiness and
   * rt_task_release_queued. */
  uint32_t expect = RT_T_WAITING;
  if (atomic_compare_exchange_strong_explicit(&t->state, &expect, RT_T_CANCELLED_W,
                                              memory_order_acq_rel, memory_order_acquire))
    return true;
  expect = RT_T_QUEUED;
  return atomic_compare_exchange_strong_explicit(&t->state, &expect, RT_T_CANCELLED_Q,
                                                 memory_order_acq_rel, memory_order_acquire);
}

int rt_task_readiness(const rt_task *t) {
  /* acquire: pairs with deps_ready's CAS (QUEUED: the arguments are
   * ready), rt_task_requeue, and rt_task_claim_end (cancelled). */
  uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
  if (st == RT_T_CANCELLED_W || st == RT_T_CANCELLED_Q) return RT_TASK_CANCELLED;
  return st == RT_T_QUEUED ? RT_TASK_READY : RT_TASK_WAITS;
}

void rt_task_release_queued(rt_tasks *ts, rt_task *t) {
  /* acquire: pairs with rt_task_claim_end's CAS (CANCELLED_W) and
   * deps_ready's (QUEUED: the path handed its reference over). */
  uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
  if (st != RT_T_CANCELLED_W) task_release(ts, t);
  task_release(ts, t);
}

void rt_task_abandon(rt_tasks *ts, rt_task *t) {
  uint32_t expect = RT_T_WAITING;
  /* acq_rel: release pairs with deps_ready's failed CAS (acquire), which
   * then drops the dependency path's reference; acquire pairs with
   * deps_ready's successful CAS, whose reference we drop instead. */
  if (!atomic_compare_exchange_strong_explicit(&t->state, &expect, RT_T_CANCELLED_W,
                                               memory_order_acq_rel, memory_order_acquire))
    task_release(ts, t);
}

/* ------------------------------------------------------------------------ */
/* Dependencies                                                             */
/* ------------------------------------------------------------------------ */

static void task_run(rt_job *job);
static bool upstream_failed(rt_tasks *ts, rt_task *t);

/*
 * A plain task whose argument failed will not run, so it is failed at once
 * by the thread that failed the argument, not queued for a worker: a queued
 * one would wait behind whatever the workers are busy with (a get of it,
 * and a cancel made after that get, would wait as long), and a failure or
 * cancel would cross the queue once per task of a chain. Failing a task
 * fails its returns, which fires its own dependents, so the cascade runs
 * on a per-thread worklist rather than recursively: a chain of any length
 * needs no more stack than one hop.
 */
static _Thread_local struct {
  rt_task *head; /* linked through unrun_next */
  bool active;   /* a drain loop runs further up this thread's stack */
} t_unrun;

/* t is claimed (WAITING -> RUNNING) and its dependency path's reference is
 * ours: fails it, then drops that reference. */
static void end_unrun(rt_tasks *ts, rt_task *t) {
  if (!upstream_failed(ts, t)) { /* cannot happen (FAILED is final); run it after all */
    rt_task_requeue(t);
    rt_sched_submit(ts->sched, &t->job);
    return;
  }
  release_args(t);
  rt_task_finish(t);
  task_release(ts, t);
}

static void fail_unrun(rt_tasks *ts, rt_task *t) {
  t->unrun_next = t_unrun.head;
  t_unrun.head = t;
  if (t_unrun.active) return;
  t_unrun.active = true;
  while (t_unrun.head) {
    rt_task *u = t_unrun.head;
    t_unrun.head = u->unrun_next;
    end_unrun(ts, u);
  }
  t_unrun.active = false;
}

/* A plain task is ready to run: to the pool, or to the rank it is placed
 * on. The caller's record reference goes with it. */
static void dispatch(rt_tasks *ts, rt_task *t) {
  if (RT_LIKELY(t->node < 0) || !ts->remote) {
    rt_sched_submit(ts->sched, &t->job);
    return;
  }
  if (!rt_task_claim_run(t)) { /* cancelled meanwhile: the canceller failed the returns */
    task_release(ts, t);
    return;
  }
  t->shipped = true;
  ts->remote->ship(ts->remote->arg, t);
}

static void deps_ready(rt_tasks *ts, rt_task *t) {
  /* A call is in its actor's queue already, and once QUEUED the actor may
   * run it at any moment: the READY message we push must keep the record
   * alive until the actor pops it (an intrusive node must not be reused
   * while it is still in a mailbox). It owns one reference; taken now, as
   * this path owns one itself (relaxed suffices). */
  bool call = t->actor != NULL;
  if (call) atomic_fetch_add_explicit(&t->rc, 1, memory_order_relaxed);
  /* An actor call goes to its actor even so: calls keep their order there.
   * relaxed: our caller's acq_rel decrement of deps ordered every
   * dep_fire's store before this load. */
  bool unrun = !call && atomic_load_explicit(&t->arg_failed, memory_order_relaxed);
  uint32_t expect = RT_T_WAITING;
  /* acq_rel: release pairs with whoever claims the task next
   * (rt_task_claim_run, rt_task_readiness, rt_task_claim_end), which sees
   * the record as submit and the dependency waiters left it; acquire pairs
   * with a canceller's rt_task_claim_end or rt_task_abandon when it fails. */
  if (atomic_compare_exchange_strong_explicit(&t->state, &expect,
                                              unrun ? RT_T_RUNNING : RT_T_QUEUED,
                                              memory_order_acq_rel, memory_order_acquire)) {
    if (call)
      ts->owner_ops->call_ready(ts->owner, t);
    else if (unrun)
      fail_unrun(ts, t);
    else
      dispatch(ts, t);
  } else {
    /* Cancelled while waiting: the canceller failed the returns; the last
     * dependency waiter has fired, so the dependency path is done with it. */
    task_release(ts, t);
    if (call) task_release(ts, t); /* no READY message after all */
  }
}

static void dep_fire(rt_waiter *w) {
  rt_task_arg *a = (rt_task_arg *)((char *)w - offsetof(rt_task_arg, dep));
  rt_task *t = a->task;
  rt_tasks *ts = rt_tasks_current();
  /* The entry is ready now and stays so (the task holds a ref on it).
   * relaxed: published by the decrement below. */
  if (rt_store_state(ts->store, a->ref) == RT_ST_FAILED)
    atomic_store_explicit(&t->arg_failed, 1, memory_order_relaxed);
  /* acq_rel: the last decrement sees every other waiter's effects. */
  if (atomic_fetch_sub_explicit(&t->deps, 1, memory_order_acq_rel) == 1) deps_ready(ts, t);
}

/* ------------------------------------------------------------------------ */
/* Submit                                                                   */
/* ------------------------------------------------------------------------ */

ray_arg ray_arg_ref(ray_ref *ref) {
  return (ray_arg){RT_ARG_REF, ref, 0, NULL};
}

ray_arg ray_arg_value(const void *data, size_t size, const ray_type *type) {
  return (ray_arg){RT_ARG_VALUE, data, size, type ? type : &ray_type_bytes};
}

ray_arg ray_arg_str(const char *s) {
  return (ray_arg){RT_ARG_VALUE, s, s ? strlen(s) + 1 : 0, &ray_type_str};
}

ray_arg ray_arg_actor(ray_actor *actor) {
  return (ray_arg){RT_ARG_ACTOR, actor, 0, NULL};
}

static ray_status check_args(rt_tasks *ts, const char *fn, const ray_arg *args, size_t nargs,
                             size_t *bytes) {
  rt_store *st = ts->store;
  *bytes = 0;
  for (size_t i = 0; i < nargs; i++) {
    const ray_arg *a = &args[i];
    if (a->kind_ == RT_ARG_REF) {
      if (rt_store_state(st, (ray_ref *)a->p_) == RT_ST_FREE)
        return rt_fail(RAY_EINVAL, "%s: argument %zu: ref %p is %s", fn, i, a->p_,
                       a->p_ ? "released or invalid" : "NULL");
    } else if (a->kind_ == RT_ARG_ACTOR) {
      if (!ts->owner_ops || !ts->owner_ops->actor_valid(ts->owner, (ray_actor *)a->p_))
        return rt_fail(RAY_EINVAL, "%s: argument %zu: actor handle %p is %s", fn, i, a->p_,
                       a->p_ ? "released or invalid" : "NULL");
    } else if (a->kind_ == RT_ARG_VALUE) {
      if (!a->p_ || a->size_ == 0)
        return rt_fail(RAY_EINVAL, "%s: argument %zu: value with %s", fn, i,
                       a->p_ ? "size 0" : "NULL data");
      if (!a->type_ || !a->type_->name)
        return rt_fail(RAY_EINVAL, "%s: argument %zu: type has a NULL name", fn, i);
      if (a->type_->elem_size && a->size_ % a->type_->elem_size)
        return rt_fail(RAY_EINVAL,
                       "%s: argument %zu: %zu bytes is not a whole number of '%s' "
                       "elements of %zu bytes",
                       fn, i, a->size_, a->type_->name, a->type_->elem_size);
      *bytes += (a->size_ + 15) & ~(size_t)15;
    } else {
      return rt_fail(RAY_EINVAL,
                     "%s: argument %zu is not from ray_arg_ref, ray_arg_value or ray_arg_actor", fn,
                     i);
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
    if (!(t->heap = rt_malloc(need + 16))) return false;
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

/* Records that parent submitted the task whose first return is first_ret
 * (for recursive cancel). */
static void note_child(rt_task *parent, ray_ref *first_ret) {
  while (atomic_flag_test_and_set_explicit(&parent->child_lock, memory_order_acquire))
    rt_prim_pause();
  ray_ref **c = rt_array_reserve(parent->children, &parent->children_cap, parent->nchildren + 1,
                                 sizeof *c, 8);
  /* Not retained: ray_cancel resolves it, and a freed object's handle no
   * longer resolves (generation check). reserve_child made the room, so c
   * is never NULL here. */
  if (c) {
    parent->children = c;
    c[parent->nchildren++] = first_ret;
  }
  atomic_flag_clear_explicit(&parent->child_lock, memory_order_release);
}

/* Room for one more child in the parent's list, made while the submit can
 * still fail, so that note_child, after the task has been handed out,
 * needs no memory (a child left off the list would escape a recursive
 * ray_cancel). Only the thread running the parent writes the list, so it
 * reads the capacity without the lock; it takes the lock only to move the
 * array, which cancellers read under it. */
static ray_status reserve_child(rt_task *parent, const char *fn_name) {
  if (parent->nchildren < parent->children_cap) return RAY_OK;
  while (atomic_flag_test_and_set_explicit(&parent->child_lock, memory_order_acquire))
    rt_prim_pause();
  ray_ref **c = rt_array_reserve(parent->children, &parent->children_cap, parent->nchildren + 1,
                                 sizeof *c, 8);
  if (c) parent->children = c;
  atomic_flag_clear_explicit(&parent->child_lock, memory_order_release);
  if (c) return RAY_OK;
  return rt_fail(RAY_ENOMEM, "%s: out of memory to record the task as a child of '%s'", fn_name,
                 parent->name);
}

/* Names the record: a given name inline if short, else a copy; without
 * one, its function's name, which has static storage (fnname.h) and is not
 * copied. False when out of memory. */
static bool set_name(rt_task *t, ray_task_fn fn, const char *name) {
  t->name_owned = false;
  if (!name) {
    t->name = fn ? rt_task_fn_name((uintptr_t)fn) : rt_task_unnamed;
    return true;
  }
  size_t nlen = strlen(name);
  if (nlen < RT_TASK_NAME_INLINE) {
    memcpy(t->name_inl, name, nlen + 1);
    t->name = t->name_inl;
  } else if ((t->name = rt_strdup(name)) != NULL) {
    t->name_owned = true;
  } else {
    return false;
  }
  return true;
}

/* A record from the pool, laid out for its arguments and returns, named. */
static ray_status record_new(rt_tasks *ts, const char *fn_name, ray_task_fn fn, size_t nargs,
                             size_t nrets, size_t bytes, const char *name, rt_task **out) {
  rt_task *t = rt_taskpool_get(ts);
  if (!t) return rt_fail(RAY_ENOMEM, "%s: out of memory for a task record", fn_name);
  if (!task_layout(t, nargs, nrets, bytes)) {
    rt_taskpool_put(ts, t);
    return rt_fail(RAY_ENOMEM, "%s: out of memory for %zu arguments", fn_name, nargs);
  }
  if (!set_name(t, fn, name)) {
    free(t->heap);
    rt_taskpool_put(ts, t);
    return rt_fail(RAY_ENOMEM, "%s: out of memory for the task name", fn_name);
  }
  *out = t;
  return RAY_OK;
}

/* Every field a plain task starts with (the actor layer sets its own after
 * rt_task_build). The record is private until started: relaxed stores. */
static void record_init(rt_task *t, ray_task_fn fn, size_t nargs, int max_retries) {
  t->job.run = task_run;
  t->fn = fn;
  t->actor = NULL;
  t->run_kind = RT_RUN_TASK;
  t->method = 0;
  t->account = 0;
  t->send = false;
  t->uncounted = false;
  t->q_next = NULL;
  t->submitter = 0;
  t->id = new_id();
  t->nargs = (uint32_t)nargs;
  t->nrets = 0;
  t->max_retries = max_retries;
  t->attempts = 0;
  t->children = NULL;
  t->nchildren = t->children_cap = 0;
  t->node = -1;
  t->shipped = false;
  atomic_flag_clear_explicit(&t->child_lock, memory_order_relaxed);
  atomic_store_explicit(&t->state, RT_T_WAITING, memory_order_relaxed);
  atomic_store_explicit(&t->cancel, 0, memory_order_relaxed);
  atomic_store_explicit(&t->arg_failed, 0, memory_order_relaxed);
  atomic_store_explicit(&t->rc, 1, memory_order_relaxed);
  atomic_store_explicit(&t->deps, 1, memory_order_relaxed); /* guard while registering */
}

/* Copies value arguments, and takes a reference on each ref or actor
 * argument (checked by check_args). */
static void copy_args(rt_task *t, const ray_arg *args, size_t nargs) {
  unsigned char *at = t->bytes;
  for (size_t i = 0; i < nargs; i++) {
    rt_task_arg *a = &t->args[i];
    memset(a, 0, sizeof *a);
    a->kind = args[i].kind_;
    a->task = t;
    if (a->kind == RT_ARG_REF) {
      a->ref = ray_ref_retain((ray_ref *)args[i].p_);
      a->dep.fire = dep_fire;
    } else if (a->kind == RT_ARG_ACTOR) {
      a->actor = ray_actor_retain((ray_actor *)args[i].p_);
    } else {
      memcpy(at, args[i].p_, args[i].size_);
      a->data = at;
      a->size = args[i].size_;
      a->type = args[i].type_;
      at += (args[i].size_ + 15) & ~(size_t)15;
    }
  }
}

/* One PENDING entry per return. Each handle in t->rets counts two refs:
 * the task's and the caller's. On failure the record is freed. */
static ray_status make_returns(rt_tasks *ts, rt_task *t, const char *fn_name, size_t nrets) {
  /* Who made them, for ray_memory_report: the record's name. */
  rt_creator_id creator = nrets ? rt_creator_task(t->name) : RT_CREATOR_UNKNOWN;
  for (size_t i = 0; i < nrets; i++) {
    ray_status s = rt_store_new_pending(ts->store, fn_name, t, creator, &t->rets[i]);
    if (s != RAY_OK) {
      for (size_t j = 0; j < i; j++)
        ray_ref_release(t->rets[j]); /* the caller's; free drops the task's */
      t->nrets = (uint32_t)i;
      task_free(ts, t);
      return s;
    }
    t->nrets++;
  }
  return RAY_OK;
}

ray_status rt_task_build(rt_tasks *ts, const char *fn_name, ray_task_fn fn, const ray_arg *args,
                         size_t nargs, const char *name, int num_returns, int max_retries,
                         rt_task **out, ray_ref **returns) {
  if (nargs && !args)
    return rt_fail(RAY_EINVAL, "%s: args is NULL with nargs = %zu", fn_name, nargs);
  if (nargs > UINT32_MAX) return rt_fail(RAY_EINVAL, "%s: nargs = %zu is too many", fn_name, nargs);
  size_t bytes;
  ray_status s = check_args(ts, fn_name, args, nargs, &bytes);
  if (s != RAY_OK) return s;
  rt_task *parent = rt_task_current();
  if (num_returns && parent && (s = reserve_child(parent, fn_name)) != RAY_OK) return s;
  rt_task *t;
  size_t nrets = (size_t)num_returns;
  if ((s = record_new(ts, fn_name, fn, nargs, nrets, bytes, name, &t)) != RAY_OK) return s;
  record_init(t, fn, nargs, max_retries);
  copy_args(t, args, nargs);
  rt_tally_in(&ts->tally);
  if ((s = make_returns(ts, t, fn_name, nrets)) != RAY_OK) return s;
  /* Only now: on failure the caller's array is untouched. (A loop, not a
   * memcpy: for one or two returns a string move costs more than it does.) */
  for (size_t i = 0; i < nrets; i++) returns[i] = t->rets[i];
  *out = t;
  return RAY_OK;
}

/* extra_rc: references to add for the caller (an actor call's queue). */
static void start(rt_tasks *ts, rt_task *t, uint32_t extra_rc) {
  if (extra_rc) atomic_fetch_add_explicit(&t->rc, extra_rc, memory_order_relaxed);
  count(t, &ts->submitted);
  rt_task *parent = rt_task_current();
  if (parent && t->nrets) note_child(parent, t->rets[0]);
  if (t->nrets && !t->actor && rt_sched_worker_index(ts->sched) < 0)
    t_recent.ref[t_recent.next++ % RECENT] = t->rets[0];
  /* Register dependencies last: from the first registration on, another
   * thread may fire it, and the guard count keeps the task from starting
   * before every argument has been looked at. */
  bool waiting = false;
  for (uint32_t i = 0; i < t->nargs; i++) {
    rt_task_arg *a = &t->args[i];
    if (a->kind != RT_ARG_REF) continue;
    atomic_fetch_add_explicit(&t->deps, 1, memory_order_relaxed);
    if (rt_store_add_waiter(ts->store, a->ref, &a->dep))
      waiting = true;
    else
      atomic_fetch_sub_explicit(&t->deps, 1, memory_order_relaxed);
  }
  /* With no waiter registered no other thread knows the counter, so the
   * guard is dropped without an atomic read-modify-write (the common case:
   * value arguments or arguments that are ready already). */
  if (!waiting && !parent && !t->actor) {
    /* Nobody else can reach the record yet: a canceller finds a task
     * through its parent or its refs, and the refs are not returned yet.
     * relaxed: the queue's release publishes it with the record. */
    atomic_store_explicit(&t->state, RT_T_QUEUED, memory_order_relaxed);
    dispatch(ts, t);
  } else if (!waiting || atomic_fetch_sub_explicit(&t->deps, 1, memory_order_acq_rel) == 1) {
    deps_ready(ts, t);
  }
}

void rt_task_start(rt_tasks *ts, rt_task *t) {
  start(ts, t, 0);
}

static bool has_ref_arg(const rt_task *t) {
  for (uint32_t i = 0; i < t->nargs; i++)
    if (t->args[i].kind == RT_ARG_REF) return true;
  return false;
}

void rt_task_start_call(rt_tasks *ts, rt_task *t) {
  /* The actor's queue holds one reference, the dependency path the other. */
  if (has_ref_arg(t)) {
    /* Filed first, in this submitter's order; it becomes ready (READY
     * hand-off) when its last argument is. The queue's reference is taken
     * before the push: from the push on, the turn may drop the call at once
     * (its actor has ended, or its queue could not be allocated) and
     * release that reference while this thread is still in start().
     * Relaxed: the push (a release exchange, which the turn's pop
     * acquires) publishes it with the record. */
    atomic_fetch_add_explicit(&t->rc, 1, memory_order_relaxed);
    ts->owner_ops->call_enqueue(ts->owner, t);
    start(ts, t, 0);
    return;
  }
  /* Nothing to wait for: QUEUED before the one message that carries it, so
   * no READY hand-off is needed. Relaxed: nobody else can reach the record
   * yet; the parent's child list (child_lock's release) and the enqueue
   * (the mailbox push) publish it. */
  atomic_store_explicit(&t->state, RT_T_QUEUED, memory_order_relaxed);
  atomic_store_explicit(&t->deps, 0, memory_order_relaxed);
  atomic_fetch_add_explicit(&t->rc, 1, memory_order_relaxed);
  rt_task *parent = rt_task_current();
  if (parent) note_child(parent, t->rets[0]);
  ts->owner_ops->call_enqueue(ts->owner, t);
}

/* Checks opts (not NULL) and gives the number of returns it asks for:
 * zero is the default in every field (ray.h), so num_returns 0 means 1. */
static ray_status check_opts(rt_tasks *ts, ray_task_fn fn, const ray_task_opts *opts,
                             ray_ref **returns, int *nrets) {
  int n = opts->num_returns;
  if (n <= 0) {
    if (n < RAY_NO_RETURNS)
      return rt_fail(RAY_EINVAL,
                     "ray_submit: num_returns %d is not in 1..%d (0 means 1, RAY_NO_RETURNS "
                     "none)",
                     n, RT_TASK_MAX_RETURNS);
    n = n == RAY_NO_RETURNS ? 0 : 1;
  }
  if (n > RT_TASK_MAX_RETURNS)
    return rt_fail(RAY_EINVAL, "ray_submit: num_returns %d is more than %d", n,
                   RT_TASK_MAX_RETURNS);
  if (n && !returns)
    return rt_fail(RAY_EINVAL, "ray_submit: returns is NULL with num_returns = %d%s",
                   opts->num_returns,
                   opts->num_returns ? "" : " (0 means 1; RAY_NO_RETURNS asks for none)");
  if (opts->max_retries < -1)
    return rt_fail(RAY_EINVAL, "ray_submit: max_retries %d is below -1", opts->max_retries);
  int nodes = ts->remote ? ts->remote->count(ts->remote->arg) : 1;
  if (opts->node < 0 || opts->node > nodes)
    return rt_fail(RAY_EINVAL,
                   "ray_submit: node %d (rank %d) is not a rank of this runtime (ranks 0..%d)",
                   opts->node, opts->node - 1, nodes - 1);
  if (opts->node > 0 && ts->remote && opts->node - 1 != ray_node_rank() &&
      !ts->remote->can_ship(ts->remote->arg, fn)) {
    const char *name = rt_symbol_name((const void *)fn);
    return rt_fail(RAY_EINVAL,
                   "ray_submit: function %s (%p) cannot run on rank %d: it is in no module every "
                   "rank loaded at ray_init",
                   name ? name : "?", (void *)fn, opts->node - 1);
  }
  if (!RT_RESERVED_ZERO(opts->reserved_) || opts->reserved_int_)
    return rt_fail(RAY_EINVAL, "ray_submit: opts.reserved_ is not zero (initialise the options "
                               "with {0} or RAY_TASK_OPTS_INIT)");
  *nrets = n;
  return RAY_OK;
}

static ray_status submit(rt_tasks *ts, ray_task_fn fn, const ray_arg *args, size_t nargs,
                         const ray_task_opts *opts, ray_ref **returns) {
  if (!fn) return rt_fail(RAY_EINVAL, "ray_submit: fn is NULL");
  /* NULL opts, the common case, needs no option checks: one return, no
   * retries, named after fn. */
  int nrets = 1;
  ray_status s;
  if (RT_UNLIKELY(opts != NULL)) {
    if ((s = check_opts(ts, fn, opts, returns, &nrets)) != RAY_OK) return s;
  } else if (!returns) {
    return rt_fail(RAY_EINVAL, "ray_submit: returns is NULL with num_returns = 1");
  }
  rt_task *t;
  s = rt_task_build(ts, "ray_submit", fn, args, nargs, opts ? opts->name : NULL, nrets,
                    opts ? opts->max_retries : 0, &t, returns);
  if (s != RAY_OK) return s;
  if (ts->remote) t->node = ts->remote->place(ts->remote->arg, t, opts ? opts->node - 1 : -1);
  rt_task_start(ts, t);
  return RAY_OK;
}

ray_status ray_submit(ray_task_fn fn, const ray_arg *args, size_t nargs, const ray_task_opts *opts,
                      ray_ref **returns) {
  rt_tasks *ts = NULL; /* set on RAY_OK; initialised for -Wmaybe-uninitialized */
  rt_gate *gate = NULL;
  ray_status s = rt_tasks_enter("ray_submit", &ts, &gate);
  if (s != RAY_OK) return s;
  s = submit(ts, fn, args, nargs, opts, returns);
  rt_tasks_leave(gate);
  return s;
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * The message of a task not run because an argument failed names the task
 * the argument comes from and why that one failed. When that one was not
 * run either, the reason it passes on is the first link of the chain, which
 * names the task that did fail and its reason:
 *   task 'sum' not run: argument 0 comes from task 'parse', which failed: invalid input -5
 *   task 'third' not run: argument 0 comes from task 'sum', which failed:
 *     not run: argument 0 comes from task 'parse', which failed: invalid input -5
 *   task 'fourth' not run: argument 0 comes from task 'third', which failed:
 *     ... not run: argument 0 comes from task 'parse', which failed: invalid input -5
 * ("..." stands for the links between). A task not run stores that first
 * link as its reason (rt_error.reason) instead of nesting its upstream's,
 * so the message stays bounded along a chain of any length and the root
 * cause is never cut off. A cancelled chain says "which was cancelled".
 */

/* For the error of a task that was not run ("task 'NAME' not run: ..."): 1
 * if its reason is its own link (its upstream failed itself), 2 if it passed
 * its upstream's on. 0 for a task that failed itself. */
static int unrun_depth(const rt_error *err) {
  if (!err->task || !err->reason) return 0;
  size_t n = strlen(err->task);
  const char *m = err->msg;
  if (strncmp(m, "task '", 6) != 0 || strncmp(m + 6, err->task, n) != 0 ||
      strncmp(m + 6 + n, "' not run: ", 11) != 0)
    return 0;
  return strcmp(m + 6 + n + 2, err->reason) == 0 ? 1 : 2;
}

/* If an argument failed, fails the task's returns and returns true. */
static bool upstream_failed(rt_tasks *ts, rt_task *t) {
  for (uint32_t i = 0; i < t->nargs; i++) {
    if (t->args[i].kind != RT_ARG_REF) continue;
    const rt_error *err = rt_store_error(ts->store, t->args[i].ref);
    if (!err) continue;
    char said[400], msg[480];
    const char *reason = said; /* passed on to our dependents */
    ray_status status = err->status == RAY_ECANCELLED ? RAY_ECANCELLED : RAY_ETASK;
    int depth = unrun_depth(err);
    if (err->task && err->status == RAY_ECANCELLED) {
      snprintf(said, sizeof said, "not run: argument %u comes from task '%s', which was cancelled",
               i, err->task);
    } else if (err->task && depth) {
      snprintf(said, sizeof said, "not run: argument %u comes from task '%s', which failed: %s%s",
               i, err->task, depth == 1 ? "" : "... ", err->reason);
      reason = err->reason; /* valid while we hold the argument */
    } else if (err->task) {
      snprintf(said, sizeof said, "not run: argument %u comes from task '%s', which failed: %s", i,
               err->task, err->reason ? err->reason : err->msg);
    } else {
      snprintf(said, sizeof said, "not run: argument %u failed: %s", i, err->msg);
    }
    snprintf(msg, sizeof msg, "task '%s' %s", t->name, said);
    /* Counted before the returns fail: whoever sees the result sees the
     * stats include it (the same order everywhere below). */
    count(t, status == RAY_ECANCELLED ? &ts->cancelled : &ts->failed);
    fail_returns(ts, t, status, msg, reason);
    return true;
  }
  return false;
}

int rt_task_execute(rt_tasks *ts, rt_task *t, bool *exit_actor, char **crash_reason) {
  if (exit_actor) *exit_actor = false;
  if (upstream_failed(ts, t)) {
    release_args(t);
    rt_task_finish(t);
    return RT_EXEC_DONE;
  }
  t->attempts++;
  rt_task_outcome out;
  rt_ctx_run(ts, t, &out);
  if (exit_actor) *exit_actor = out.exit_actor;

  char msg[640];
  bool cancelled = atomic_load_explicit(&t->cancel, memory_order_acquire);
  bool crashed = !cancelled && t->actor && out.status == RAY_EACTOR;
  if (crashed) { /* the actor layer retries the call or fails it */
    rt_ctx_discard(ts, &out);
    rt_ctx_done(&out);
    if (crash_reason)
      *crash_reason = out.reason;
    else
      free(out.reason);
    return RT_EXEC_CRASH;
  }
  bool retry =
      out.status != RAY_OK && !cancelled && (t->max_retries < 0 || t->attempts <= t->max_retries);
  /* The arguments are done with: drop them before the results become
   * visible, so a caller that sees the result sees them gone (unless it
   * holds them itself). A retry keeps them. */
  if (!retry) release_args(t);
  if (cancelled) {
    rt_ctx_discard(ts, &out);
    free(out.reason); /* a cancelled task that also failed: the cancel wins */
    count(t, &ts->cancelled);
    fail_cancelled(ts, t, " while running");
  } else if (out.status != RAY_OK) {
    rt_ctx_discard(ts, &out);
    if (retry) {
      free(out.reason);
      rt_ctx_done(&out);
      count(t, &ts->retried);
      return RT_EXEC_RETRY;
    }
    const char *reason = out.reason ? out.reason : "failed (out of memory for the reason)";
    if (t->max_retries != 0)
      snprintf(msg, sizeof msg, "task '%s' failed after %d attempt%s: %s", t->name, t->attempts,
               t->attempts == 1 ? "" : "s", reason);
    else
      snprintf(msg, sizeof msg, "task '%s' failed: %s", t->name, reason);
    count(t, &ts->failed);
    fail_returns(ts, t, RAY_ETASK, msg, reason);
    free(out.reason);
  } else {
    bool all_set = true;
    for (uint32_t i = 0; i < t->nrets; i++) all_set &= out.staged[i].data != NULL;
    count(t, all_set ? &ts->finished : &ts->failed);
    for (uint32_t i = 0; i < t->nrets; i++) {
      if (out.staged[i].data) {
        rt_store_seal_pending(ts->store, t->rets[i], &out.staged[i]);
      } else {
        char reason[160];
        snprintf(reason, sizeof reason, "returned RAY_OK without setting return %u of %u", i,
                 t->nrets);
        snprintf(msg, sizeof msg, "task '%s' %s", t->name, reason);
        rt_store_fail_pending(ts->store, t->rets[i], RAY_ETASK, msg, t->name, reason);
      }
    }
  }
  rt_ctx_done(&out);
  rt_task_finish(t);
  return RT_EXEC_DONE;
}

static void task_run(rt_job *job) {
  rt_task *t = (rt_task *)job;
  rt_tasks *ts = rt_tasks_current();
  if (!rt_task_claim_run(t)) {
    /* Cancelled while queued (the canceller failed the returns), or run
     * already by a get that waited for it (rt_task_run_producer). */
    task_release(ts, t);
    return;
  }
  if (rt_task_execute(ts, t, NULL, NULL) == RT_EXEC_RETRY) {
    rt_task_requeue(t);
    rt_sched_submit(ts->sched, &t->job);
    return;
  }
  task_release(ts, t);
}

/* Under the stripe lock of one of the task's returns, which keeps the
 * record alive: one more reference on it, for the caller (*arg). */
static void hold_record(rt_task *t, void *arg) {
  atomic_fetch_add_explicit(&t->rc, 1, memory_order_relaxed); /* record is alive: relaxed */
  *(rt_task **)arg = t;
}

/* rt_store_with_producer callback: holds the record if it is a plain task. */
static void hold_plain_task(void *producer, void *arg) {
  rt_task *t = producer;
  /* An actor's calls run in its turn, in order; a task placed on another
   * rank runs there. */
  if (!t->actor && t->node < 0) hold_record(t, arg);
}

bool rt_task_run_producer(rt_tasks *ts, ray_ref *ref) {
  rt_task *t = NULL;
  if (!rt_store_with_producer(ts->store, ref, hold_plain_task, &t) || !t) return false;
  bool ran = false;
  /* The claim races task_run's; the loser leaves the task alone. */
  if (rt_sched_nest_enter()) {
    if (rt_task_claim_run(t)) {
      while (rt_task_execute(ts, t, NULL, NULL) == RT_EXEC_RETRY) {
      } /* retries run here too: the state stays RUNNING */
      ran = true;
    }
    rt_sched_nest_exit();
  }
  task_release(ts, t);
  return ran;
}

/* ------------------------------------------------------------------------ */
/* Cancel                                                                   */
/* ------------------------------------------------------------------------ */

/* rt_store_with_producer callback: marks the task and holds it for the
 * canceller. */
static void cancel_locked(void *producer, void *arg) {
  rt_task *t = producer;
  /* release: a running task that reads the flag (acquire) sees the cancel. */
  atomic_store_explicit(&t->cancel, 1, memory_order_release);
  hold_record(t, arg);
}

static void cancel_task(rt_tasks *ts, ray_ref *ref, bool recursive) {
  rt_task *t = NULL;
  if (!rt_store_with_producer(ts->store, ref, cancel_locked, &t)) return;
  if (rt_task_claim_end(t)) {
    count(t, &ts->cancelled);
    fail_cancelled(ts, t, "");
  } else if (t->node >= 0 && ts->remote) {
    /* Shipped (or about to be: ship sets it after its claim): the rank
     * that runs it cancels it there, and its children, if asked. */
    ts->remote->cancel(ts->remote->arg, t, recursive);
  }
  /* The list only grows and its entries never change: read one at a time
   * under the lock, with no copy (a copy that could not be allocated would
   * skip the children silently). */
  for (size_t i = 0; recursive; i++) {
    while (atomic_flag_test_and_set_explicit(&t->child_lock, memory_order_acquire)) rt_prim_pause();
    ray_ref *kid = i < t->nchildren ? t->children[i] : NULL;
    atomic_flag_clear_explicit(&t->child_lock, memory_order_release);
    if (!kid) break;
    cancel_task(ts, kid, true);
  }
  task_release(ts, t);
}

void rt_tasks_set_remote(rt_tasks *ts, const rt_task_remote_ops *ops) {
  ts->remote = ops;
}

void rt_task_end_shipped(rt_tasks *ts, rt_task *t, int outcome) {
  count(t, outcome == RT_SHIPPED_FINISHED ? &ts->finished
           : outcome == RT_SHIPPED_FAILED ? &ts->failed
                                          : &ts->cancelled);
  release_args(t);
  rt_task_finish(t);
  task_release(ts, t);
}

ray_status ray_cancel(ray_ref *ref, bool recursive) {
  rt_tasks *ts = rt_tasks_current();
  if (!ts) return rt_not_running("ray_cancel");
  if (rt_store_state(ts->store, ref) == RT_ST_FREE)
    return rt_fail(RAY_EINVAL, "ray_cancel: ref %p is %s", (void *)ref,
                   ref ? "released or invalid" : "NULL");
  cancel_task(ts, ref, recursive);
  return RAY_OK;
}

/* ------------------------------------------------------------------------ */
/* Shutdown                                                                 */
/* ------------------------------------------------------------------------ */

ray_status rt_tasks_enter(const char *fn, rt_tasks **ts_out, rt_gate **gate_out) {
  rt_gate *gate = NULL;
  if (!rt_task_current() && !(gate = rt_gate_enter()))
    return rt_fail(RAY_ENOMEM, "%s: out of memory for this thread's submission gate", fn);
  rt_tasks *ts = rt_tasks_current();
  if (!ts) {
    rt_tasks_leave(gate);
    return rt_not_running(fn);
  }
  /* seq_cst: the second half of the gate's Dekker pattern (gate.h), against
   * ray_shutdown's seq_cst store of closing (rt_tallies_close). */
  if (gate && atomic_load(&ts->tally.closing)) {
    rt_tasks_leave(gate);
    return rt_fail(RAY_ESHUTDOWN,
                   "%s: ray_shutdown has begun; only tasks and actor methods may "
                   "submit now",
                   fn);
  }
  *ts_out = ts;
  *gate_out = gate;
  return RAY_OK;
}

void rt_tasks_close(rt_tasks *ts) {
  rt_tallies_close(&ts->tally);
}

void rt_tasks_drain(rt_tasks *ts) {
  rt_tallies_drain(&ts->tally);
}
