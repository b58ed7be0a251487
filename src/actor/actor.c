/*
 * actor.c - actors on the shared worker pool (Pony / CAF style: actors are
 * not threads).
 *
 * An actor is a record with a state block, an MPSC mailbox (mailbox.c) and a
 * scheduler job, its "turn". Everything that wants the actor's attention
 * pushes a message; the push that finds the mailbox idle schedules the turn,
 * so exactly one turn runs at a time and the turn owns every field marked
 * "turn only" below without locks.
 *
 * Calls are task records (task.c) with `actor` set: arguments, dependencies,
 * pending returns, staging, cancellation and error chains are the tasks'.
 * A call is pushed to the mailbox when it is made, which keeps each
 * submitter's calls in order (the mailbox is FIFO per producer); the turn
 * files it in its submitter's queue. When its dependencies are ready a second
 * message wakes the turn. The turn runs, in each submitter queue, the head
 * once it is ready: a call waiting on an unresolved argument holds back only
 * its own submitter. With max_concurrency > 1 ready heads are dispatched as
 * separate jobs, up to that many at once, without ordering.
 *
 * The turn runs a bounded batch (RT_ACTOR_BATCH) and then yields its worker
 * by resubmitting itself, as Pony's scheduler does.
 *
 * Record lifetime: `rc` counts user handles, calls and the constructor
 * record (each holds one), plus one while the turn is scheduled. The
 * constructor record lives until the actor has ended, so a detached actor
 * with no handle stays alive. The record is freed at rc 0.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/actor.h"
#include "core/alloc.h"
#include "core/handle.h"
#include "core/prim.h"
#include "core/symbol.h"
#include "core/types.h"
#include "task/ctx.h"

#define RT_ACTOR_BATCH 64

enum { PH_STARTING, PH_ALIVE, PH_DEAD };
enum {
  CTL_RELEASED = 1,
  CTL_KILL_END = 2,
  CTL_KILL_RESTART = 4,
  CTL_SHUTDOWN = 8,
  CTL_CRASH = 16,
  CTL_EXIT = 32 /* a dispatched method called ray_ctx_exit_actor */
};

/* Calls of one submitter, in the order they were made (turn only). */
typedef struct rt_subq {
  uint64_t submitter;
  rt_task *head, *tail;
  struct rt_subq *next;
} rt_subq;

struct rt_actor {
  uint32_t slot;
  uint32_t gen;
  _Atomic uint32_t handles; /* user handles (and task-argument handles) */
  _Atomic uint32_t rc;      /* see the top of the file */
  const ray_actor_class *cls;
  char *name;        /* registered name, or NULL */
  char label[64];    /* the name, or the class name, for messages */
  char **call_names; /* "label.method" per method, made once (calls copy it) */
  char id[33];
  int max_restarts, max_task_retries, max_concurrency;
  bool detached;
  uint16_t account;
  void *state;
  rt_mailbox mbox;
  rt_job job;
  rt_task *ctor; /* constructor record: its args, for every (re)start */
  rt_actor_msg ctl_msg;
  _Atomic uint32_t ctl;          /* CTL_* requests not yet seen by the turn */
  _Atomic uint32_t ended;        /* 1 once the actor has ended; end_msg is set */
  char end_msg[320];             /* "actor 'NAME' (ID) ended: REASON" */
  _Atomic int inflight;          /* dispatched calls (max_concurrency > 1) */
  rt_actor *all_next, *all_prev; /* rt_actors.all, under its lock */
  /* turn only */
  int phase;
  int restarts_left;
  bool started; /* on_start succeeded for this incarnation */
  bool released, kill_end, kill_restart, shutdown_req, exit_req;
  bool crashed; /* a dispatched call crashed the actor (max_concurrency > 1) */
  rt_subq *queues;
};

static void actor_turn(rt_job *job);

/* ------------------------------------------------------------------------ */
/* Handle table                                                             */
/* ------------------------------------------------------------------------ */

static rt_actor_slot *slot_at(rt_actors *as, uint32_t slot) {
  /* acquire: pairs with the release that published the chunk. */
  rt_actor_slot *c = atomic_load_explicit(&as->chunks[slot / RT_ACTOR_CHUNK], memory_order_acquire);
  return c ? &c[slot % RT_ACTOR_CHUNK] : NULL;
}

/* The live actor a handle names, or NULL (NULL, released, stale). */
static rt_actor *resolve(rt_actors *as, ray_actor *h) {
  uint32_t idx = rt_handle_index(h); /* UINT32_MAX for NULL: out of range */
  if (!as || idx / RT_ACTOR_CHUNK >= RT_ACTOR_CHUNKS) return NULL;
  rt_actor_slot *s = slot_at(as, idx);
  /* Relaxed: a caller holding a valid handle got it through a
   * happens-before chain from the create that filled the slot; a released
   * handle is reported on a best-effort basis. */
  if (!s || atomic_load_explicit(&s->gen, memory_order_relaxed) != rt_handle_gen(h, as->salt))
    return NULL;
  rt_actor *a = atomic_load_explicit(&s->actor, memory_order_acquire);
  /* A caller with a valid handle keeps the count above zero; at zero every
   * handle has been released (the record may live on for its calls). */
  if (a && atomic_load_explicit(&a->handles, memory_order_relaxed) == 0) return NULL;
  return a;
}

static ray_actor *handle_of(rt_actors *as, rt_actor *a) {
  /* a->gen changes only under the table lock while no handle exists; a
   * caller holding one reads a stable value. */
  return rt_handle_pack(a->slot, a->gen, as->salt);
}

/* Under as->lock: a free slot, or UINT32_MAX. */
static uint32_t slot_alloc(rt_actors *as) {
  if (as->nfree == 0) {
    if (as->nchunks == RT_ACTOR_CHUNKS) return UINT32_MAX;
    size_t need = as->nfree + RT_ACTOR_CHUNK;
    if (need > as->free_cap) {
      uint32_t *f = rt_realloc(as->free_slots, need * sizeof *f);
      if (!f) return UINT32_MAX;
      as->free_slots = f;
      as->free_cap = need;
    }
    rt_actor_slot *c = rt_calloc(RT_ACTOR_CHUNK, sizeof *c);
    if (!c) return UINT32_MAX;
    uint32_t base = as->nchunks * RT_ACTOR_CHUNK;
    for (uint32_t i = RT_ACTOR_CHUNK; i-- > 0;) as->free_slots[as->nfree++] = base + i;
    atomic_store_explicit(&as->chunks[as->nchunks++], c, memory_order_release);
  }
  return as->free_slots[--as->nfree];
}

/* The record's invoke pointers (task.h): what ctx.c runs for an actor. */
static ray_status invoke_method(rt_task *t, ray_ctx *ctx) {
  rt_actor *a = t->actor;
  return a->cls->methods[t->method].fn(a->state, ctx);
}

static ray_status invoke_start(rt_task *t, ray_ctx *ctx) {
  rt_actor *a = t->actor;
  return a->cls->on_start ? a->cls->on_start(a->state, ctx) : RAY_OK;
}

static ray_status invoke_stop(rt_task *t, ray_ctx *ctx) {
  rt_actor *a = t->actor;
  if (a->cls->on_stop) a->cls->on_stop(a->state, ctx);
  return RAY_OK;
}

/* ------------------------------------------------------------------------ */
/* Record lifetime                                                          */
/* ------------------------------------------------------------------------ */

static void free_call_names(rt_actor *a) {
  for (size_t i = 0; a->call_names && i < a->cls->num_methods; i++) free(a->call_names[i]);
  free(a->call_names);
}

/* A method's name: its ray_method name, else its function's symbol (as a
 * task without a name is named), else "?". */
static const char *method_label(const ray_method *m) {
  if (m->name) return m->name;
  const char *sym = rt_symbol_name((const void *)(uintptr_t)m->fn);
  return sym ? sym : "?";
}

static bool make_call_names(rt_actor *a) {
  if (!a->cls->num_methods) return true;
  if (!(a->call_names = rt_calloc(a->cls->num_methods, sizeof *a->call_names))) return false;
  for (size_t i = 0; i < a->cls->num_methods; i++) {
    const char *m = method_label(&a->cls->methods[i]);
    if (rt_asprintf(&a->call_names[i], "%s.%s", a->label, m) < 0) {
      a->call_names[i] = NULL;
      return false;
    }
  }
  return true;
}

static void actor_free(rt_actors *as, rt_actor *a) {
  pthread_mutex_lock(&as->lock);
  rt_actor_slot *s = slot_at(as, a->slot);
  atomic_store_explicit(&s->actor, NULL, memory_order_relaxed);
  /* The generation moves on, so the handle no longer resolves. */
  atomic_store_explicit(&s->gen, a->gen + 1, memory_order_relaxed);
  if (as->nfree < as->free_cap) as->free_slots[as->nfree++] = a->slot;
  if (a->all_prev)
    a->all_prev->all_next = a->all_next;
  else
    as->all = a->all_next;
  if (a->all_next) a->all_next->all_prev = a->all_prev;
  pthread_mutex_unlock(&as->lock);
  rt_mailbox_destroy(&a->mbox);
  free_call_names(a);
  free(a->name);
  free(a->state);
  free(a);
}

static void unref(rt_actors *as, rt_actor *a) {
  /* acq_rel: every holder's use of the record happens before the free. */
  if (atomic_fetch_sub_explicit(&a->rc, 1, memory_order_acq_rel) == 1) actor_free(as, a);
}

/* Schedules the turn; the turn holds a record reference while scheduled.
 * Relaxed increment: the caller holds a reference itself. */
static void schedule(rt_actors *as, rt_actor *a) {
  atomic_fetch_add_explicit(&a->rc, 1, memory_order_relaxed);
  rt_sched_submit(as->sched, &a->job);
}

static void push(rt_actors *as, rt_actor *a, rt_actor_msg *m) {
  if (rt_mailbox_push(&a->mbox, &m->m)) schedule(as, a);
}

/* Asks the turn to act on a control request (any thread holding a ref). */
static void control(rt_actors *as, rt_actor *a, uint32_t bit) {
  /* acq_rel: the turn's exchange (acquire) sees what we did before. Only
   * the request that finds no other pending pushes the message, which the
   * turn has popped before it took the previous requests. */
  if (atomic_fetch_or_explicit(&a->ctl, bit, memory_order_acq_rel) == 0) push(as, a, &a->ctl_msg);
}

static void call_ready(rt_actors *as, rt_task *call) {
  push(as, call->actor, &call->ready_msg);
}

/* ------------------------------------------------------------------------ */
/* Ending and restarting (turn only)                                        */
/* ------------------------------------------------------------------------ */

static void run_hook(rt_actors *as, rt_actor *a, int kind, rt_task_invoke_fn hook,
                     rt_task_outcome *out) {
  a->ctor->run_kind = (uint8_t)kind;
  a->ctor->invoke = hook;
  rt_ctx_run(as->tasks, a->ctor, out);
}

static void run_on_stop(rt_actors *as, rt_actor *a) {
  if (!a->started) return;
  a->started = false;
  if (!a->cls->on_stop) return;
  rt_task_outcome out;
  run_hook(as, a, RT_RUN_STOP, invoke_stop, &out);
  free(out.reason);
  rt_ctx_done(&out);
}

static void actor_die(rt_actors *as, rt_actor *a, const char *reason) {
  snprintf(a->end_msg, sizeof a->end_msg, "actor '%s' (%s) ended: %s", a->label, a->id, reason);
  a->phase = PH_DEAD;
  /* release: submitters that see ended (acquire) also see end_msg. */
  atomic_store_explicit(&a->ended, 1, memory_order_release);
  if (a->name) { /* the name is free again */
    pthread_mutex_lock(&as->lock);
    free(a->name);
    a->name = NULL;
    pthread_mutex_unlock(&as->lock);
  }
  rt_task *ctor = a->ctor;
  a->ctor = NULL;
  /* seq_cst: pairs with the shutdown's load of alive before it sleeps. */
  if (atomic_fetch_sub(&as->alive, 1) == 1) rt_prim_futex_wake(&as->alive, INT32_MAX);
  /* The constructor's own reference: ours once its arguments were ready;
   * while it still waits for one, the dependency path drops it. */
  rt_task_abandon(as->tasks, ctor);
}

/* An orderly end: on_stop, then dead. */
static void actor_end(rt_actors *as, rt_actor *a, const char *reason) {
  run_on_stop(as, a);
  actor_die(as, a, reason);
}

/* After a crash (no on_stop) or a kill with restart (on_stop first). */
static void restart_or_die(rt_actors *as, rt_actor *a, const char *reason, bool orderly) {
  if (orderly) run_on_stop(as, a);
  a->started = false;
  if (a->restarts_left == 0) {
    actor_die(as, a, reason);
    return;
  }
  if (a->restarts_left > 0) a->restarts_left--;
  atomic_fetch_add_explicit(&as->restarts, 1, memory_order_relaxed);
  if (a->state) memset(a->state, 0, a->cls->state_size); /* fresh zeroed state */
  a->phase = PH_STARTING;
}

/* ------------------------------------------------------------------------ */
/* The turn                                                                 */
/* ------------------------------------------------------------------------ */

static void enqueue(rt_actor *a, rt_task *call) {
  rt_subq *q = a->queues;
  while (q && q->submitter != call->submitter) q = q->next;
  if (!q) {
    q = rt_calloc(1, sizeof *q);
    if (!q) { /* cannot file it: fail the call rather than lose it */
      rt_actors *as = rt_actors_current();
      if (rt_task_claim_end(call))
        rt_task_fail_returns(as->tasks, call, RAY_ENOMEM, "actor call dropped: out of memory",
                             "out of memory");
      /* the queue's reference, and the dependency path's unless it is
       * still waiting (rt_task_release_queued, as drop_call) */
      rt_task_release_queued(as->tasks, call);
      return;
    }
    q->submitter = call->submitter;
    q->next = a->queues;
    a->queues = q;
  }
  call->q_next = NULL;
  if (q->tail)
    q->tail->q_next = call;
  else
    q->head = call;
  q->tail = call;
}

static void dequeue_head(rt_subq *q) {
  q->head = q->head->q_next;
  if (!q->head) q->tail = NULL;
}

/* Drops empty submitter queues. */
static void prune_queues(rt_actor *a) {
  for (rt_subq **pp = &a->queues; *pp;) {
    if (!(*pp)->head) {
      rt_subq *dead = *pp;
      *pp = dead->next;
      free(dead);
    } else {
      pp = &(*pp)->next;
    }
  }
}

/* The turn is done with a call in its queue (ran, failed or cancelled). */
static void drop_call(rt_actors *as, rt_task *call) {
  rt_task_release_queued(as->tasks, call);
}

static void handle_done(rt_actors *as, rt_actor *a, rt_task *call);

static void drain_mailbox(rt_actors *as, rt_actor *a) {
  rt_msg *m;
  while ((m = rt_mailbox_pop(&a->mbox)) != NULL) {
    rt_actor_msg *am = (rt_actor_msg *)m;
    switch (am->kind) {
    case RT_AMSG_ENQUEUE:
      enqueue(a, am->call);
      break;
    case RT_AMSG_DONE:
      handle_done(as, a, am->call);
      break;
    case RT_AMSG_CONTROL: {
      /* acq_rel: see control(). */
      uint32_t bits = atomic_exchange_explicit(&a->ctl, 0, memory_order_acq_rel);
      a->released |= (bits & CTL_RELEASED) != 0;
      a->kill_end |= (bits & CTL_KILL_END) != 0;
      a->kill_restart |= (bits & CTL_KILL_RESTART) != 0;
      a->shutdown_req |= (bits & CTL_SHUTDOWN) != 0;
      a->crashed |= (bits & CTL_CRASH) != 0;
      a->exit_req |= (bits & CTL_EXIT) != 0;
      break;
    }
    case RT_AMSG_READY: /* a wake-up; the message held the record until now */
      rt_task_release(as->tasks, am->call);
      break;
    default:
      break;
    }
  }
}

/* The method's name, for messages. */
static const char *method_name(const rt_actor *a, const rt_task *call) {
  return method_label(&a->cls->methods[call->method]);
}

/* The method crashed the actor in `call`. */
static void on_crash(rt_actors *as, rt_actor *a, rt_task *call, char *why, rt_subq *q) {
  char reason[256];
  snprintf(reason, sizeof reason, "method '%s' returned RAY_EACTOR: %s", method_name(a, call),
           why ? why : "(no reason)");
  free(why);
  bool retry =
      a->restarts_left != 0 && (a->max_task_retries < 0 || call->attempts <= a->max_task_retries);
  if (retry && q) { /* runs again, first of its queue, after the restart */
    rt_task_requeue(call);
  } else {
    char msg[400];
    snprintf(msg, sizeof msg, "actor '%s' (%s) died in this call: %s", a->label, a->id, reason);
    rt_task_finish(call);
    rt_task_fail_returns(as->tasks, call, RAY_EACTOR, msg, reason);
    if (q) dequeue_head(q);
    drop_call(as, call);
  }
  restart_or_die(as, a, reason, false);
}

static void handle_done(rt_actors *as, rt_actor *a, rt_task *call) {
  atomic_fetch_sub_explicit(&a->inflight, 1, memory_order_relaxed);
  rt_task_finish(call);
  drop_call(as, call);
}

/* A dispatched call (max_concurrency > 1), on any worker. */
static void call_job(rt_job *job) {
  rt_task *call = (rt_task *)job;
  rt_actors *as = rt_actors_current();
  rt_actor *a = call->actor;
  bool exit_actor;
  char *why = NULL;
  if (rt_task_execute(as->tasks, call, &exit_actor, &why) == RT_EXEC_CRASH) {
    /* Concurrent calls are not retried: this one fails, and the turn
     * restarts the actor once the others have returned. */
    char msg[400];
    snprintf(msg, sizeof msg,
             "actor '%s' (%s) died in this call: method '%s' returned "
             "RAY_EACTOR: %s",
             a->label, a->id, method_name(a, call), why ? why : "(no reason)");
    rt_task_fail_returns(as->tasks, call, RAY_EACTOR, msg, why);
    free(why);
    control(as, a, CTL_CRASH);
  } else if (exit_actor) {
    control(as, a, CTL_EXIT);
  }
  call->enq_msg.kind = RT_AMSG_DONE;
  push(as, a, &call->enq_msg);
}

/* Fails every queued call (the actor has ended). */
static bool fail_queued(rt_actors *as, rt_actor *a) {
  bool any = false;
  for (rt_subq *q = a->queues; q; q = q->next) {
    while (q->head) {
      rt_task *call = q->head;
      dequeue_head(q);
      if (rt_task_claim_end(call))
        rt_task_fail_returns(as->tasks, call, RAY_EACTOR, a->end_msg, a->end_msg);
      drop_call(as, call);
      any = true;
    }
  }
  prune_queues(a);
  return any;
}

/* What one step did: nothing to do now, some work, or (step_control only)
 * no request pending, so the step goes on. */
enum { STEP_IDLE, STEP_WORKED, STEP_NONE };

/* Acts on a pending control request once no dispatched call runs: an end
 * (kill, shutdown, exit in a method) before a restart (a crash of a
 * dispatched call, then a kill with restart). */
static int step_control(rt_actors *as, rt_actor *a, int inflight) {
  const char *end = a->kill_end       ? "killed"
                    : a->shutdown_req ? "the runtime shut down"
                    : a->exit_req     ? "exited in a method"
                                      : NULL;
  if (!end && !a->crashed && !a->kill_restart) return STEP_NONE;
  if (inflight) return STEP_IDLE; /* wait for dispatched calls */
  if (end) {
    actor_end(as, a, end);
  } else if (a->crashed) {
    a->crashed = false;
    restart_or_die(as, a, "a method returned RAY_EACTOR", false);
  } else {
    a->kill_restart = false;
    restart_or_die(as, a, "killed", true);
  }
  return STEP_WORKED;
}

/* STARTING: runs on_start once the constructor's arguments are ready. */
static bool step_start(rt_actors *as, rt_actor *a) {
  if (rt_task_readiness(a->ctor) != RT_TASK_READY) return false; /* arguments not ready */
  rt_task_outcome out;
  run_hook(as, a, RT_RUN_START, invoke_start, &out);
  if (out.status == RAY_OK) {
    a->phase = PH_ALIVE;
    a->started = true;
  } else {
    char reason[256];
    snprintf(reason, sizeof reason, "on_start failed: %s", out.reason ? out.reason : "error");
    restart_or_die(as, a, reason, false);
  }
  free(out.reason);
  rt_ctx_done(&out);
  return true;
}

/* Runs a claimed call, the head of q, on this turn (max_concurrency 1). */
static void run_call(rt_actors *as, rt_actor *a, rt_subq *q, rt_task *call) {
  bool exit_actor;
  char *why = NULL;
  if (rt_task_execute(as->tasks, call, &exit_actor, &why) == RT_EXEC_CRASH) {
    on_crash(as, a, call, why, q);
    return;
  }
  dequeue_head(q);
  drop_call(as, call);
  if (exit_actor) {
    char reason[160];
    snprintf(reason, sizeof reason, "exited in method '%s'", method_name(a, call));
    actor_end(as, a, reason);
  }
}

/* Hands a claimed call, the head of q, to the pool (max_concurrency > 1). */
static void dispatch_call(rt_actors *as, rt_actor *a, rt_subq *q, rt_task *call) {
  dequeue_head(q);
  atomic_fetch_add_explicit(&a->inflight, 1, memory_order_relaxed);
  call->job.run = call_job;
  rt_sched_submit(as->sched, &call->job);
}

/* ALIVE: runs or dispatches the first ready head, in any submitter queue,
 * dropping cancelled heads on the way. */
static bool step_calls(rt_actors *as, rt_actor *a, int inflight) {
  bool progress = false;
  for (rt_subq *q = a->queues; q; q = q->next) {
    while (q->head) {
      rt_task *call = q->head;
      int readiness = rt_task_readiness(call);
      if (readiness == RT_TASK_CANCELLED) {
        dequeue_head(q);
        drop_call(as, call);
        progress = true;
        continue;
      }
      if (readiness == RT_TASK_WAITS) break; /* on an argument: only this queue waits */
      if (a->max_concurrency > 1 && (inflight >= a->max_concurrency || a->crashed)) return progress;
      if (!rt_task_claim_run(call)) continue; /* cancelled meanwhile: dropped on the next pass */
      if (a->max_concurrency > 1) {
        dispatch_call(as, a, q, call);
        return true;
      }
      run_call(as, a, q, call);
      prune_queues(a);
      return true;
    }
  }
  prune_queues(a);
  return progress;
}

/* One step of work; false when there is nothing to do right now. */
static bool step(rt_actors *as, rt_actor *a) {
  if (a->phase == PH_DEAD) return fail_queued(as, a);
  int inflight = atomic_load_explicit(&a->inflight, memory_order_relaxed);
  int c = step_control(as, a, inflight);
  if (c != STEP_NONE) return c == STEP_WORKED;
  if (a->phase == PH_STARTING) return step_start(as, a);
  if (step_calls(as, a, inflight)) return true;
  /* Nothing left to run and no handle left: the actor ends by itself. */
  if (a->released && !a->detached && !a->queues && inflight == 0) {
    actor_end(as, a, "its last handle was released");
    return true;
  }
  return false;
}

static void actor_turn(rt_job *job) {
  rt_actor *a = (rt_actor *)((char *)job - offsetof(rt_actor, job));
  rt_actors *as = rt_actors_current();
  for (int budget = RT_ACTOR_BATCH;;) {
    drain_mailbox(as, a);
    if (step(as, a)) {
      if (--budget > 0) continue;
      /* Yield the worker: the turn goes to the back of the line, keeping
       * its scheduled reference (the mailbox stays non-idle). */
      rt_sched_submit(as->sched, &a->job);
      return;
    }
    if (rt_mailbox_try_idle(&a->mbox)) {
      unref(as, a); /* the scheduled reference; last touch of a */
      return;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */
/* ------------------------------------------------------------------------ */

/* rt_tasks_enter for the actor calls that submit (create, call, send). */
static ray_status enter(const char *fn, rt_actors **as, rt_gate **gate) {
  rt_tasks *ts;
  ray_status s = rt_tasks_enter(fn, &ts, gate);
  /* Published before the task layer (runtime.c): not NULL once that is. */
  if (s == RAY_OK) *as = rt_actors_current();
  return s;
}

/* Frees an actor that ray_actor_create could not finish (never published). */
static void discard_new(rt_actors *as, rt_actor *a) {
  if (a->ctor) {
    a->ctor->actor = NULL; /* it holds no record reference yet */
    rt_task_release(as->tasks, a->ctor);
  }
  free_call_names(a);
  free(a->state);
  free(a);
}

static ray_status check_class(const ray_actor_class *cls) {
  if (!cls) return rt_fail(RAY_EINVAL, "ray_actor_create: cls is NULL");
  if (cls->num_methods && !cls->methods)
    return rt_fail(RAY_EINVAL, "ray_actor_create: class '%s' has %zu method%s but methods is NULL",
                   cls->name ? cls->name : "?", cls->num_methods, cls->num_methods == 1 ? "" : "s");
  for (size_t i = 0; i < cls->num_methods; i++)
    if (!cls->methods[i].fn)
      return rt_fail(RAY_EINVAL, "ray_actor_create: method %zu of class '%s' has a NULL fn", i,
                     cls->name ? cls->name : "?");
  return RAY_OK;
}

static ray_status check_opts(const ray_actor_opts *opts) {
  if (opts->name && !opts->name[0])
    return rt_fail(RAY_EINVAL, "ray_actor_create: the name is empty");
  if (!RT_RESERVED_ZERO(opts->reserved_))
    return rt_fail(RAY_EINVAL, "ray_actor_create: opts.reserved_ is not zero (initialise the "
                               "options with {0})");
  int nodes = ray_node_count();
  if (opts->node < 0 || opts->node > nodes)
    return rt_fail(
        RAY_EINVAL,
        "ray_actor_create: node %d (rank %d) is not a rank of this runtime (ranks 0..%d)",
        opts->node, opts->node - 1, nodes - 1);
  if (opts->node != RAY_NODE_ANY && opts->node != RAY_NODE(ray_node_rank()))
    return rt_fail(
        RAY_EINVAL,
        "ray_actor_create: node RAY_NODE(%d): an actor lives on the rank that creates it "
        "(rank %d); create it from a task placed on rank %d",
        opts->node - 1, ray_node_rank(), opts->node - 1);
  if (opts->max_concurrency < 0 || opts->max_restarts < -1 || opts->max_task_retries < -1)
    return rt_fail(RAY_EINVAL,
                   "ray_actor_create: max_concurrency %d, max_restarts %d or max_task_retries %d "
                   "is out of range",
                   opts->max_concurrency, opts->max_restarts, opts->max_task_retries);
  return RAY_OK;
}

/* A new record: state, names, id, options, mailbox, quota account; not
 * yet published. */
static ray_status actor_new(rt_actors *as, const ray_actor_class *cls, const ray_actor_opts *opts,
                            rt_actor **out) {
  rt_actor *a = rt_calloc(1, sizeof *a);
  if (!a) return rt_fail(RAY_ENOMEM, "ray_actor_create: out of memory");
  if (cls->state_size && !(a->state = rt_calloc(1, cls->state_size))) {
    free(a);
    return rt_fail(RAY_ENOMEM, "ray_actor_create: no memory for %zu bytes of state",
                   cls->state_size);
  }
  a->cls = cls;
  snprintf(a->label, sizeof a->label, "%s",
           opts->name  ? opts->name
           : cls->name ? cls->name
                       : "actor");
  if (!make_call_names(a)) {
    discard_new(as, a);
    return rt_fail(RAY_ENOMEM, "ray_actor_create: out of memory");
  }
  uint64_t seq = atomic_fetch_add_explicit(&as->seq, 1, memory_order_relaxed) + 1;
  snprintf(a->id, sizeof a->id, "%016llx%016llx", (unsigned long long)as->store->owner,
           (unsigned long long)(seq | (1ull << 63))); /* high bit: an actor, not an object */
  a->max_restarts = opts->max_restarts;
  a->restarts_left = opts->max_restarts;
  a->max_task_retries = opts->max_task_retries;
  a->max_concurrency = opts->max_concurrency ? opts->max_concurrency : 1;
  a->detached = opts->detached;
  a->phase = PH_STARTING;
  a->job.run = actor_turn;
  a->ctl_msg.kind = RT_AMSG_CONTROL;
  rt_mailbox_init(&a->mbox);
  if (opts->memory_quota) {
    char label[128];
    snprintf(label, sizeof label, "actor '%s' (%s)", a->label, a->id);
    if (!(a->account = rt_store_account_new(as->store, opts->memory_quota, label))) {
      discard_new(as, a);
      return rt_fail(RAY_ENOMEM, "ray_actor_create: no memory-quota account left");
    }
  }
  *out = a;
  return RAY_OK;
}

/* The constructor record: the arguments of every (re)start. */
static ray_status make_ctor(rt_actors *as, rt_actor *a, const ray_arg *args, size_t nargs) {
  rt_task *t;
  ray_status s =
      rt_task_build(as->tasks, "ray_actor_create", NULL, args, nargs, a->label, 0, 0, &t, NULL);
  if (s != RAY_OK) return s;
  rt_task_uncount(as->tasks, t); /* lives as long as the actor, not a task to drain */
  t->actor = a;
  t->run_kind = RT_RUN_START;
  t->invoke = invoke_start;
  t->account = a->account;
  t->ready_msg = (rt_actor_msg){{NULL}, RT_AMSG_READY, t};
  a->ctor = t;
  return RAY_OK;
}

/* Under as->lock: takes the name (if any) and a slot, links the record on
 * the list of all, and publishes it in its slot. */
static ray_status publish_locked(rt_actors *as, rt_actor *a, const char *name) {
  if (name) {
    for (rt_actor *o = as->all; o; o = o->all_next)
      if (o->name && strcmp(o->name, name) == 0)
        return rt_fail(RAY_EEXIST, "ray_actor_create: an actor named '%s' is alive", name);
  }
  uint32_t slot = slot_alloc(as);
  if (slot == UINT32_MAX || (name && !(a->name = rt_strdup(name)))) {
    if (slot != UINT32_MAX) as->free_slots[as->nfree++] = slot;
    return rt_fail(RAY_ENOMEM, "ray_actor_create: out of memory for another actor");
  }
  a->slot = slot;
  rt_actor_slot *sl = slot_at(as, slot);
  a->gen = atomic_load_explicit(&sl->gen, memory_order_relaxed);
  /* release: a thread that resolves the handle (acquire) sees the record. */
  atomic_store_explicit(&sl->actor, a, memory_order_release);
  a->all_next = as->all;
  if (as->all) as->all->all_prev = a;
  as->all = a;
  return RAY_OK;
}

static ray_status actor_create(rt_actors *as, const ray_actor_class *cls, const ray_arg *args,
                               size_t nargs, const ray_actor_opts *opts, ray_actor **out) {
  ray_status s = check_class(cls);
  if (s != RAY_OK) return s;
  static const ray_actor_opts defaults;
  if (!opts) opts = &defaults;
  if (!out) return rt_fail(RAY_EINVAL, "ray_actor_create: out is NULL");
  if ((s = check_opts(opts)) != RAY_OK) return s;
  rt_actor *a;
  if ((s = actor_new(as, cls, opts, &a)) != RAY_OK) return s;
  if ((s = make_ctor(as, a, args, nargs)) != RAY_OK) {
    discard_new(as, a);
    return s;
  }
  atomic_store_explicit(&a->handles, 1, memory_order_relaxed);
  atomic_store_explicit(&a->rc, 2, memory_order_relaxed); /* the handle and the constructor */
  pthread_mutex_lock(&as->lock);
  s = publish_locked(as, a, opts->name);
  pthread_mutex_unlock(&as->lock);
  if (s != RAY_OK) {
    discard_new(as, a);
    return s;
  }
  atomic_fetch_add_explicit(&as->alive, 1, memory_order_relaxed);
  *out = handle_of(as, a);
  rt_task_start(as->tasks, a->ctor); /* ready arguments wake the first turn */
  return RAY_OK;
}

ray_status ray_actor_create(const ray_actor_class *cls, const ray_arg *args, size_t nargs,
                            const ray_actor_opts *opts, ray_actor **out) {
  rt_actors *as = NULL;
  rt_gate *gate = NULL;
  ray_status s = enter("ray_actor_create", &as, &gate);
  if (s != RAY_OK) return s;
  s = actor_create(as, cls, args, nargs, opts, out);
  rt_tasks_leave(gate);
  return s;
}

static ray_status make_call(rt_actors *as, ray_actor *h, size_t method, const ray_arg *args,
                            size_t nargs, ray_ref **ret, bool send, const char *fn) {
  rt_actor *a = resolve(as, h);
  if (!a)
    return rt_fail(RAY_EINVAL, "%s: actor handle %p is %s", fn, (void *)h,
                   h ? "released or invalid" : "NULL");
  if (method >= a->cls->num_methods)
    return rt_fail(RAY_EINVAL, "%s: actor '%s' has %zu method%s, not index %zu", fn, a->label,
                   a->cls->num_methods, a->cls->num_methods == 1 ? "" : "s", method);
  if (!send && !ret) return rt_fail(RAY_EINVAL, "%s: ret is NULL", fn);
  /* acquire: pairs with actor_die's release, so end_msg is complete. */
  if (atomic_load_explicit(&a->ended, memory_order_acquire))
    return rt_fail(RAY_EACTOR, "%s: %s", fn, a->end_msg);
  const char *name = a->call_names[method];
  rt_task *t;
  ray_ref *dropped; /* a send's result: the method sets it as for a call */
  ray_status s =
      rt_task_build(as->tasks, fn, NULL, args, nargs, name, 1, 0, &t, send ? &dropped : ret);
  if (s != RAY_OK) return s;
  t->actor = a;
  atomic_fetch_add_explicit(&a->rc, 1, memory_order_relaxed); /* the call holds the record */
  t->run_kind = RT_RUN_METHOD;
  t->invoke = invoke_method;
  t->account = a->account;
  t->method = (uint32_t)method;
  t->send = send;
  t->submitter = rt_submitter_id();
  t->enq_msg = (rt_actor_msg){{NULL}, RT_AMSG_ENQUEUE, t};
  t->ready_msg = (rt_actor_msg){{NULL}, RT_AMSG_READY, t};
  atomic_fetch_add_explicit(&as->calls, 1, memory_order_relaxed);
  rt_task_start_call(as->tasks, t);   /* files it through call_enqueue */
  if (send) ray_ref_release(dropped); /* nobody reads it; failures are logged */
  return RAY_OK;
}

ray_status ray_actor_call(ray_actor *h, size_t method, const ray_arg *args, size_t nargs,
                          ray_ref **ret) {
  rt_actors *as = NULL;
  rt_gate *gate = NULL;
  ray_status s = enter("ray_actor_call", &as, &gate);
  if (s != RAY_OK) return s;
  s = make_call(as, h, method, args, nargs, ret, false, "ray_actor_call");
  rt_tasks_leave(gate);
  return s;
}

ray_status ray_actor_send(ray_actor *h, size_t method, const ray_arg *args, size_t nargs) {
  rt_actors *as = NULL;
  rt_gate *gate = NULL;
  ray_status s = enter("ray_actor_send", &as, &gate);
  if (s == RAY_OK) {
    s = make_call(as, h, method, args, nargs, NULL, true, "ray_actor_send");
    if (s != RAY_OK) atomic_fetch_add_explicit(&as->tasks->sends_failed, 1, memory_order_relaxed);
    rt_tasks_leave(gate);
  }
  if (s != RAY_OK) rt_warn("%s", ray_last_error()); /* nobody would see it otherwise */
  return s;
}

ray_status ray_actor_lookup(const char *name, ray_actor **out) {
  rt_actors *as = rt_actors_current();
  if (!as) return rt_not_running("ray_actor_lookup");
  if (!name || !name[0] || !out)
    return rt_fail(RAY_EINVAL, "ray_actor_lookup: %s",
                   !out ? "out is NULL" : "the name is NULL or empty");
  pthread_mutex_lock(&as->lock);
  for (rt_actor *a = as->all; a; a = a->all_next) {
    if (!a->name || strcmp(a->name, name) != 0) continue;
    /* A handle only while one exists, or the actor is detached: an actor
     * whose last handle went is ending and is not found. */
    uint32_t h = atomic_load_explicit(&a->handles, memory_order_relaxed);
    if (h == 0 && !a->detached) break;
    atomic_fetch_add_explicit(&a->handles, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&a->rc, 1, memory_order_relaxed);
    *out = handle_of(as, a);
    pthread_mutex_unlock(&as->lock);
    return RAY_OK;
  }
  pthread_mutex_unlock(&as->lock);
  return rt_fail(RAY_ENOTFOUND, "ray_actor_lookup: no living actor is named '%s'", name);
}

ray_status ray_actor_kill(ray_actor *h, bool no_restart) {
  rt_actors *as = rt_actors_current();
  if (!as) return rt_not_running("ray_actor_kill");
  rt_actor *a = resolve(as, h);
  if (!a)
    return rt_fail(RAY_EINVAL, "ray_actor_kill: actor handle %p is %s", (void *)h,
                   h ? "released or invalid" : "NULL");
  control(as, a, no_restart ? CTL_KILL_END : CTL_KILL_RESTART);
  return RAY_OK;
}

ray_actor *ray_actor_retain(ray_actor *h) {
  rt_actors *as = rt_actors_current();
  rt_actor *a = resolve(as, h);
  if (!a) return NULL;
  /* Relaxed: the caller holds a handle, so both counts are above zero. */
  atomic_fetch_add_explicit(&a->handles, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&a->rc, 1, memory_order_relaxed);
  return h;
}

void ray_actor_release(ray_actor *h) {
  if (!h) return;
  rt_actors *as = rt_actors_current();
  if (!as) return; /* the runtime and its actors are gone */
  rt_actor *a = resolve(as, h);
  if (!a || atomic_load_explicit(&a->handles, memory_order_relaxed) == 0) {
    rt_warn("ray_actor_release: actor handle %p was already released or is invalid", (void *)h);
    return;
  }
  /* acq_rel: the last handle's release orders the caller's calls before the
   * turn sees CTL_RELEASED. */
  if (atomic_fetch_sub_explicit(&a->handles, 1, memory_order_acq_rel) == 1) {
    /* Every handle is gone: move the slot's generation on now, so a use of
     * a released handle fails its check without touching the record, which
     * may be freed any moment. (A lookup of a detached actor issues a new
     * handle with the new generation.) */
    pthread_mutex_lock(&as->lock);
    a->gen++;
    atomic_store_explicit(&slot_at(as, a->slot)->gen, a->gen, memory_order_relaxed);
    pthread_mutex_unlock(&as->lock);
    control(as, a, CTL_RELEASED);
  }
  unref(as, a);
}

/* ------------------------------------------------------------------------ */
/* Runtime hooks                                                            */
/* ------------------------------------------------------------------------ */

_Atomic(rt_actors *) rt_g_actors;

static bool op_actor_valid(void *owner, ray_actor *h) {
  return resolve(owner, h) != NULL;
}
static ray_actor *op_actor_handle(void *owner, rt_actor *a) {
  return handle_of(owner, a);
}
static void op_call_ready(void *owner, rt_task *t) {
  call_ready(owner, t);
}
static void op_call_enqueue(void *owner, rt_task *t) {
  push(owner, t->actor, &t->enq_msg);
}
static void op_actor_unref(void *owner, rt_actor *a) {
  unref(owner, a);
}

static const rt_task_owner_ops k_owner_ops = {
    .actor_valid = op_actor_valid,
    .actor_handle = op_actor_handle,
    .call_ready = op_call_ready,
    .call_enqueue = op_call_enqueue,
    .actor_unref = op_actor_unref,
};

int rt_actors_init(rt_actors *as) {
  memset(as, 0, sizeof *as);
  rt_prim_random(&as->salt, sizeof as->salt);
  return pthread_mutex_init(&as->lock, NULL);
}

void rt_actors_bind(rt_actors *as, rt_tasks *ts) {
  as->tasks = ts;
  as->store = ts->store;
  as->sched = ts->sched;
  rt_tasks_set_owner(ts, &k_owner_ops, as);
}

void rt_actors_end_all(rt_actors *as) {
  pthread_mutex_lock(&as->lock);
  /* Under the lock no record is freed; a request schedules the turn, which
   * then holds the record itself. */
  for (rt_actor *a = as->all; a; a = a->all_next)
    if (!atomic_load_explicit(&a->ended, memory_order_acquire)) control(as, a, CTL_SHUTDOWN);
  pthread_mutex_unlock(&as->lock);
  uint32_t n;
  while ((n = atomic_load(&as->alive)) != 0) rt_prim_futex_wait(&as->alive, n, UINT64_MAX);
}

void rt_actors_destroy(rt_actors *as) {
  uint64_t leaked = 0, handles = 0;
  while (as->all) {
    rt_actor *a = as->all;
    handles += atomic_load_explicit(&a->handles, memory_order_relaxed);
    leaked++;
    as->all = a->all_next;
    free_call_names(a);
    free(a->name);
    free(a->state);
    free(a);
  }
  if (leaked)
    rt_warn("ray_shutdown: %llu actor handles were never released; freed now",
            (unsigned long long)handles);
  for (uint32_t i = 0; i < as->nchunks; i++)
    free(atomic_load_explicit(&as->chunks[i], memory_order_relaxed));
  free(as->free_slots);
  pthread_mutex_destroy(&as->lock);
}

void rt_actors_stats(rt_actors *as, ray_stats *out) {
  out->actors_alive = atomic_load_explicit(&as->alive, memory_order_relaxed);
  out->actor_restarts = atomic_load_explicit(&as->restarts, memory_order_relaxed);
  out->actor_calls = atomic_load_explicit(&as->calls, memory_order_relaxed);
  out->actor_sends_failed = atomic_load_explicit(&as->tasks->sends_failed, memory_order_relaxed);
}
