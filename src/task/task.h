/*
 * task.h - task records and the task layer's hooks into the runtime.
 *
 * A task record lives from ray_submit until the task has ended and its
 * last dependency waiter has fired. Its `state` says who may act on it:
 *   WAITING  (dependencies outstanding) --deps ready--> QUEUED --worker--> RUNNING
 *   WAITING / QUEUED --ray_cancel--> CANCELLED
 * A CAS decides each transition, so a canceller and the worker cannot both
 * claim the task. `rc` counts who still uses the record: 1 for the task's
 * own path through the states, +1 while a canceller works on it.
 */
#ifndef RT_TASK_H
#define RT_TASK_H

#include <stdatomic.h>

#include "sched/sched.h"
#include "store/store.h"

enum { RT_T_WAITING, RT_T_QUEUED, RT_T_RUNNING, RT_T_CANCELLED, RT_T_DONE };
enum { RT_ARG_REF = 1, RT_ARG_VALUE = 2 };

#define RT_TASK_INLINE_ARGS 4
#define RT_TASK_INLINE_RETS 2
#define RT_TASK_INLINE_BYTES 96
#define RT_TASK_NAME_INLINE 32
#define RT_TASK_MAX_RETURNS 256

typedef struct rt_task rt_task;

typedef struct rt_task_arg {
  int kind;
  ray_ref *ref;         /* RT_ARG_REF: the task's own reference */
  const void *data;     /* RT_ARG_VALUE: the copy */
  size_t size;
  const ray_type *type;
  rt_waiter dep;        /* RT_ARG_REF: fires when the object is ready */
  rt_task *task;
  ray_view view;        /* taken by the first ray_ctx_arg, released at the end */
  bool viewed;
} rt_task_arg;

struct rt_task {
  rt_job job;
  rt_task *next_free;
  _Atomic uint32_t state;
  _Atomic uint32_t deps; /* outstanding dependencies, +1 while submit registers them */
  _Atomic uint32_t rc;
  _Atomic uint32_t cancel; /* ray_cancel was called */
  ray_task_fn fn;
  const char *name;
  uint32_t nargs, nrets;
  int max_retries, attempts;
  rt_task_arg *args;
  ray_ref **rets;        /* the task's own refs on its returns */
  unsigned char *bytes;  /* value argument copies: bytes_inl or in heap */
  void *heap;            /* args/rets/bytes that did not fit inline */
  atomic_flag child_lock;
  ray_ref **children;    /* first return of each task submitted while running */
  size_t nchildren, children_cap;
  bool pooled;
  char name_inl[RT_TASK_NAME_INLINE];
  rt_task_arg args_inl[RT_TASK_INLINE_ARGS];
  ray_ref *rets_inl[RT_TASK_INLINE_RETS];
  _Alignas(16) unsigned char bytes_inl[RT_TASK_INLINE_BYTES];
};

/* The task layer's part of the runtime. */
typedef struct rt_tasks {
  _Atomic uint32_t live;    /* records not yet freed; ray_shutdown waits for 0 */
  _Atomic uint32_t closing; /* ray_shutdown has begun */
  _Atomic uint64_t submitted, finished, failed, cancelled, retried;
  /* record pool */
  pthread_mutex_t pool_lock;
  rt_task *pool_free;  /* under pool_lock */
  void **slabs;        /* under pool_lock */
  size_t nslabs, slabs_cap;
  uint64_t epoch;
} rt_tasks;

int rt_tasks_init(rt_tasks *ts, uint64_t epoch);
/* Rejects outside submissions, then waits until every task has ended. */
void rt_tasks_drain(rt_tasks *ts);
void rt_tasks_destroy(rt_tasks *ts);

/* Record pool: per-thread caches over a shared list, slabs freed at destroy. */
rt_task *rt_taskpool_get(rt_tasks *ts);
void rt_taskpool_put(rt_tasks *ts, rt_task *t);

/* The task running on this thread, or NULL. */
rt_task *rt_task_current(void);

#endif
