/*
 * task.h - task records, the task layer (rt_tasks) and what it offers the
 * actor layer above it.
 *
 * A task record lives from ray_submit until the task has ended and its
 * last dependency waiter has fired. Its `state` says who may act on it:
 *   WAITING  (dependencies outstanding) --deps ready--> QUEUED --claim--> RUNNING
 *   WAITING / QUEUED --ray_cancel--> CANCELLED
 *   WAITING --deps ready, one failed--> RUNNING (failed at once, no queue)
 *   RUNNING --retry, or an actor call run again after a restart--> QUEUED
 *   RUNNING --ended--> DONE
 * A CAS decides each contested transition, so a canceller and a runner
 * cannot both claim the task. Only task.c moves the state; others use the
 * state verbs below.
 *
 * `rc` counts who still uses the record. 1 for the record's own path (the
 * dependency path, then the queue or whoever claims it; for an actor's
 * constructor, the actor until rt_task_abandon), plus 1 for each of:
 *   - a canceller, or a get running the producer (rt_task_run_producer),
 *     while it works on the record (taken under the stripe lock of one of
 *     the returns, rt_store_with_producer);
 *   - an actor call's place in its actor's queue (rt_task_start_call);
 *   - an actor record's READY message while it is in the mailbox
 *     (deps_ready), since an intrusive node must outlive its queue stay.
 * The record is freed at 0 (task_release, acq_rel).
 */
#ifndef RT_TASK_H
#define RT_TASK_H

#include <stdatomic.h>
#include <stddef.h>

#include "core/batchcache.h"
#include "core/error.h"
#include "core/gate.h"
#include "core/mailbox.h"
#include "sched/sched.h"
#include "store/store.h"
#include "task/tally.h"
#include "trace/timeline.h"

enum { RT_ARG_REF = 1, RT_ARG_VALUE = 2, RT_ARG_ACTOR = 3 };

typedef struct rt_actor rt_actor;
typedef struct rt_task rt_task;

/* What a record runs: a task function (fn), or, through the record's
 * invoke pointer that the actor layer sets, an actor method or an actor's
 * on_start / on_stop (the constructor record). The kind names the run in
 * the timeline; ray_ctx_exit_actor accepts only RT_RUN_METHOD. */
enum { RT_RUN_TASK, RT_RUN_METHOD, RT_RUN_START, RT_RUN_STOP };
typedef ray_status (*rt_task_invoke_fn)(rt_task *t, ray_ctx *ctx);

/* Kinds of actor mailbox messages a record carries. */
enum { RT_AMSG_ENQUEUE, RT_AMSG_READY, RT_AMSG_DONE, RT_AMSG_CONTROL };

typedef struct rt_actor_msg {
  rt_msg m;
  int kind;
  rt_task *call; /* NULL for RT_AMSG_CONTROL */
} rt_actor_msg;

#define RT_TASK_INLINE_ARGS 2
#define RT_TASK_INLINE_RETS 2
#define RT_TASK_INLINE_BYTES 64
#define RT_TASK_NAME_INLINE 32
#define RT_TASK_MAX_RETURNS 256

typedef struct rt_task_arg {
  int kind;
  ray_ref *ref;     /* RT_ARG_REF: the task's own reference */
  const void *data; /* RT_ARG_VALUE: the copy */
  size_t size;
  const ray_type *type;
  rt_waiter dep; /* RT_ARG_REF: fires when the object is ready */
  rt_task *task;
  ray_view view; /* taken by the first ray_ctx_arg, released at the end */
  bool viewed;
  ray_actor *actor; /* RT_ARG_ACTOR: the task's own handle */
} rt_task_arg;

/* Field order follows use: line 0 holds what the scheduler and every run
 * read, line 1 what a run of a plain task reads or writes next, line 2 the
 * rest of what rt_task_build writes for every task (taskpool.c prefetches
 * these three lines). Cold and inline parts follow. */
struct rt_task {
  /* line 0 */
  rt_job job;
  _Atomic uint32_t state;
  _Atomic uint32_t deps; /* outstanding dependencies, +1 while submit registers them */
  _Atomic uint32_t rc;
  _Atomic uint32_t cancel; /* ray_cancel was called */
  ray_task_fn fn;
  /* Actor calls (actor != NULL): the target, the method, who submitted it
   * (for per-submitter order), and the mailbox messages it travels as. */
  rt_actor *actor;
  uint32_t nargs, nrets;
  uint8_t run_kind;
  bool send;       /* ray_actor_send: no one will read the result */
  bool uncounted;  /* not in the tally (an actor's constructor record) */
  bool name_owned; /* name is a heap copy, freed with the record */
  int attempts;
  /* line 1 */
  rt_task_arg *args;
  ray_ref **rets; /* the task's own refs on its returns */
  ray_ref *rets_inl[RT_TASK_INLINE_RETS];
  void *heap;         /* args/rets/bytes that did not fit inline */
  ray_ref **children; /* first return of each task submitted while running */
  const char *name;
  uint64_t id; /* unique per submit: the submitter id of calls it makes */
  /* line 2 */
  unsigned char *bytes; /* value argument copies: bytes_inl or in heap */
  uint32_t method;
  int max_retries;
  atomic_flag child_lock;
  uint16_t account; /* an actor's record: its memory-quota account (0: none) */
  /* A dependency the task waited for failed (set by dep_fire, read by the
   * last one): the task will not run, and fails at once (deps_ready). */
  _Atomic uint32_t arg_failed;
  size_t nchildren, children_cap;
  uint64_t submitter;
  rt_task_invoke_fn invoke; /* what runs unless run_kind is RT_RUN_TASK */
  union {
    rt_task *q_next;     /* an actor call: the actor's per-submitter queue */
    rt_task *unrun_next; /* a plain task: its thread's list of tasks to fail (task.c) */
  };
  /* cold and inline */
  rt_actor_msg enq_msg, ready_msg;
  int node;     /* cluster mode: the rank it runs on, or -1: here (rt_task_remote_ops) */
  bool shipped; /* sent to rank `node`; ends when that rank says (rt_task_end_shipped) */
  char name_inl[RT_TASK_NAME_INLINE];
  rt_task_arg args_inl[RT_TASK_INLINE_ARGS];
  _Alignas(16) unsigned char bytes_inl[RT_TASK_INLINE_BYTES];
} __attribute__((aligned(64)));
_Static_assert(offsetof(rt_task, args) == 64 && offsetof(rt_task, bytes) == 128 &&
                   offsetof(rt_task, enq_msg) <= 192,
               "rt_task's hot fields fill its first three cache lines");

/*
 * What the task layer asks of the layer that owns actors. The actor layer
 * installs it (rt_tasks_set_owner) with itself as `owner`, the first
 * argument of every call, so the task layer never calls up by name and
 * includes no actor header. Records with `actor` set are the actor layer's:
 * a call of a method, or an actor's constructor record.
 */
typedef struct rt_task_owner_ops {
  /* Whether h names a live actor (an RT_ARG_ACTOR argument's check). */
  bool (*actor_valid)(void *owner, ray_actor *h);
  /* The user handle of a (ray_ctx_self). */
  ray_actor *(*actor_handle)(void *owner, rt_actor *a);
  /* The dependencies of t (t->actor set) are ready and it is QUEUED: hand
   * it to its actor. The hand-off owns one record reference. */
  void (*call_ready)(void *owner, rt_task *t);
  /* A new call, built: file it with its actor, in the submitter's order
   * (rt_task_start_call). The actor's queue owns one record reference. */
  void (*call_enqueue)(void *owner, rt_task *t);
  /* A record freed; it held a reference on its actor a. */
  void (*actor_unref)(void *owner, rt_actor *a);
} rt_task_owner_ops;

/*
 * Cluster mode: what the task layer asks of the layer that moves tasks
 * between ranks (cluster/remote.c installs it; without it every task runs
 * here). Plain tasks only: actor calls and constructors run on their
 * actor's rank.
 */
typedef struct rt_task_remote_ops {
  void *arg;
  /* Where a plain task being submitted runs: a rank, or -1 for here. want
   * is the caller's hard choice (opts.node - 1) or -1 to let the policy
   * choose. Called before the task starts; the record is built. */
  int (*place)(void *arg, rt_task *t, int want);
  /* t (node set, not here) is claimed RUNNING with its arguments ready:
   * send it. Owns the record reference of the dependency path until the
   * rank that runs it answers (rt_task_end_shipped). */
  void (*ship)(void *arg, rt_task *t);
  /* ray_cancel reached t, shipped and running elsewhere: forward it. */
  void (*cancel)(void *arg, rt_task *t, bool recursive);
  /* Nodes in the runtime, for checking opts.node. */
  int (*count)(void *arg);
  /* Whether fn can run on another rank (it is in a module every rank
   * loaded at ray_init). */
  bool (*can_ship)(void *arg, ray_task_fn fn);
} rt_task_remote_ops;

/* The task layer: what it uses (set by rt_tasks_bind before the layer is
 * published, read-only after) and what it owns. */
typedef struct rt_tasks {
  rt_store *store;
  rt_sched *sched;
  rt_timeline *timeline;
  const rt_task_owner_ops *owner_ops; /* set by rt_tasks_set_owner */
  void *owner;
  const rt_task_remote_ops *remote; /* set by rt_tasks_set_remote; NULL: one node */
  uint64_t epoch;
  /* Each hot counter on its own cache line: submitters write some, workers
   * others, and sharing a line would make every task bounce it. */
  rt_tallies tally; /* records not yet freed (closing: ray_shutdown has begun) */
  _Alignas(64) _Atomic uint64_t submitted;
  _Alignas(64) _Atomic uint64_t finished;
  _Alignas(64) _Atomic uint64_t failed, cancelled, retried, sends_failed;
  /* record pool (taskpool.c) */
  rt_batchlist pool; /* free records (rt_task *) */
  void **slabs;      /* under pool.lock */
  size_t nslabs, slabs_cap;
} rt_tasks;

/* The task layer of the running runtime, or NULL. Published by ray_init
 * with a release store once the whole runtime is built, cleared by
 * ray_shutdown (runtime.c); acquire, so that a caller that sees the layer
 * sees everything ray_init built before publishing it. */
extern _Atomic(rt_tasks *) rt_g_tasks;
static inline rt_tasks *rt_tasks_current(void) {
  return atomic_load_explicit(&rt_g_tasks, memory_order_acquire);
}

int rt_tasks_init(rt_tasks *ts, uint64_t epoch);
/* Gives the layer what it uses; before it is published. */
void rt_tasks_bind(rt_tasks *ts, rt_store *store, rt_sched *sched, rt_timeline *timeline);
/* Installs the actor layer's ops; before the layer is published. */
void rt_tasks_set_owner(rt_tasks *ts, const rt_task_owner_ops *ops, void *owner);
/* Installs the cluster layer's ops; before the layer is published. */
void rt_tasks_set_remote(rt_tasks *ts, const rt_task_remote_ops *ops);
/* A shipped task ended on its rank and the caller has ended its returns
 * (sealed or failed each): counts it (finished, failed or cancelled), drops
 * its arguments and the record reference ship owned. */
enum { RT_SHIPPED_FINISHED, RT_SHIPPED_FAILED, RT_SHIPPED_CANCELLED };
void rt_task_end_shipped(rt_tasks *ts, rt_task *t, int outcome);

/* Refuses outside submissions from now on (rt_tasks_enter); seq_cst, the
 * first half of the gate's Dekker pattern (core/gate.h). Idempotent. */
void rt_tasks_close(rt_tasks *ts);
/* Refuses outside submissions, then waits until every task has ended. */
void rt_tasks_drain(rt_tasks *ts);
void rt_tasks_destroy(rt_tasks *ts);

/* Record pool: per-thread caches over a shared list, slabs freed at destroy. */
rt_task *rt_taskpool_get(rt_tasks *ts);
void rt_taskpool_put(rt_tasks *ts, rt_task *t);

/*
 * The start and end of a call that submits work (ray_submit, the actor
 * calls). From a thread outside the pool, enter passes the thread's gate
 * (core/gate.h) and then refuses the call once ray_shutdown has begun, so
 * that shutdown frees nothing under a call it let in. Inside the pool no
 * gate is needed: the drain waits for every running task. RAY_OK sets *ts
 * and *gate (NULL inside the pool), and the caller must call
 * rt_tasks_leave(*gate) when it is done with the runtime; otherwise
 * RAY_ESHUTDOWN or RAY_ENOMEM, recorded for fn, and nothing to leave.
 */
ray_status rt_tasks_enter(const char *fn, rt_tasks **ts, rt_gate **gate);
static inline void rt_tasks_leave(rt_gate *gate) {
  if (gate) rt_gate_leave(gate);
}

/* The task, method or actor hook running on this thread, or NULL. */
rt_task *rt_task_current(void);

/* For the actor layer (task.c). */
typedef struct ray_task_opts ray_task_opts;
/* Builds a record like ray_submit, as a plain task of fn. The actor layer
 * then sets its own fields (actor, run_kind, invoke, method, account, its
 * messages), which make the record an actor call or constructor whose
 * readiness goes to owner_ops->call_ready instead of the scheduler. name
 * is copied; NULL names the task after fn (its symbol, fnname.h), or
 * "unnamed" when fn is NULL or has no symbol. The caller must not touch the
 * record after starting it, except through the state verbs. */
ray_status rt_task_build(rt_tasks *ts, const char *fn_name, ray_task_fn fn, const ray_arg *args,
                         size_t nargs, const char *name, int nrets, int max_retries, rt_task **out,
                         ray_ref **returns);
/* Starts a built record: registers its dependencies, and once they are
 * ready hands it to the scheduler (a plain task) or to its actor
 * (owner_ops->call_ready). */
void rt_task_start(rt_tasks *ts, rt_task *t);
/* Starts an actor call: files it with its actor (owner_ops->call_enqueue)
 * in the submitter's order, and starts it. A call with no ref argument is
 * QUEUED before it is filed, so no READY hand-off follows. */
void rt_task_start_call(rt_tasks *ts, rt_task *t);
void rt_task_release(rt_tasks *ts, rt_task *t);
/* Takes a built record out of the drain's count: it lives as long as its
 * actor, not as a task (an actor's constructor). */
void rt_task_uncount(rt_tasks *ts, rt_task *t);
/* Runs a claimed (RUNNING) record and ends it: seals or fails its returns.
 * RT_EXEC_RETRY: the function failed with retries left (nothing ended);
 * RT_EXEC_CRASH: an actor method returned RAY_EACTOR (returns left pending
 * for the actor layer to retry or fail). *exit_actor: the method called
 * ray_ctx_exit_actor. */
enum { RT_EXEC_DONE, RT_EXEC_RETRY, RT_EXEC_CRASH };
int rt_task_execute(rt_tasks *ts, rt_task *t, bool *exit_actor, char **crash_reason);
/*
 * State verbs. The task layer alone moves `state` (task.c); the actor layer
 * drives its records through these, never by the state's values.
 */
/* Claims a QUEUED record to run it (QUEUED -> RUNNING); false if another
 * path owns it (cancelled, or run by a get that waited for it). */
bool rt_task_claim_run(rt_task *t);
/* A claimed record whose run must be repeated (a retry, or an actor call
 * that runs again after its actor restarts): RUNNING -> QUEUED, for the
 * next rt_task_claim_run. */
void rt_task_requeue(rt_task *t);
/* A claimed record is done (RUNNING -> DONE); its returns are ended, or
 * the caller ends them next. */
void rt_task_finish(rt_task *t);
/* Claims the end of a task not yet running (WAITING or QUEUED ->
 * cancelled); false if another path owns it. The caller then fails its
 * returns. */
bool rt_task_claim_end(rt_task *t);
/* Where a record in its owner's queue stands (an actor's calls and its
 * constructor): ready to claim, still waiting for an argument, or
 * cancelled (the owner drops it with rt_task_release_queued). */
enum { RT_TASK_WAITS, RT_TASK_READY, RT_TASK_CANCELLED };
int rt_task_readiness(const rt_task *t);
/* The owner of a queued record (an actor) will not touch it again, whether
 * it ran, failed or was cancelled: drops the queue's reference and, unless
 * it was cancelled while still waiting (then the dependency path drops its
 * own when the last argument is ready), the one the dependency path handed
 * over when it became ready. */
void rt_task_release_queued(rt_tasks *ts, rt_task *t);
/* The owner is done with a record it never claimed (an actor's
 * constructor, run through its hooks): drops the dependency path's
 * reference if that path handed it over (QUEUED), or marks the record
 * cancelled so that the path drops it when the last argument is ready. */
void rt_task_abandon(rt_tasks *ts, rt_task *t);
/* Fails every pending return of t with status and message. */
void rt_task_fail_returns(rt_tasks *ts, rt_task *t, ray_status status, const char *msg,
                          const char *reason);
/* Runs the task that produces ref on the calling thread, if it is a plain
 * task queued and not yet started: for a get that would otherwise wait for
 * it (the caller waits for that task in any case, so running it here adds no
 * wait and saves the hand-off). The task's job stays queued and, when a
 * worker pops it, finds it taken. False if it did not run it. */
bool rt_task_run_producer(rt_tasks *ts, ray_ref *ref);
/* Whether ref is the first return of one of the last few tasks that the
 * calling thread, outside the pool, submitted: the cheap test for trying
 * rt_task_run_producer (a get right after its submit, or nested gets). */
bool rt_task_recent_own(ray_ref *ref);
/* The id of the current submitter: the running record's id, or this
 * thread's. */
uint64_t rt_submitter_id(void);

#endif
