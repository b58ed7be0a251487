/*
 * ctx.h - running a task function with its ray_ctx, and what it leaves.
 */
#ifndef RT_CTX_H
#define RT_CTX_H

#include "task/task.h"

/* What one run of a task function produced. */
typedef struct rt_task_outcome {
  ray_status status;
  bool exit_actor;    /* the method called ray_ctx_exit_actor */
  uint32_t nstaged;   /* the task's number of returns */
  char *reason;       /* malloc'd reason of a failure, or NULL */
  rt_payload *staged; /* one per return; data NULL when unset */
  rt_payload staged_inl[RT_TASK_INLINE_RETS];
} rt_task_outcome;

/* Runs the record with a fresh ctx: t->fn for a plain task, t->invoke for
 * an actor's record; argument views end with the run. */
void rt_ctx_run(rt_tasks *ts, rt_task *t, rt_task_outcome *out);
/* Gives back every staged return (memory, buffers, alias targets). */
void rt_ctx_discard(rt_tasks *ts, rt_task_outcome *out);
/* Frees the outcome's own storage (after its payloads were sealed or discarded). */
void rt_ctx_done(rt_task_outcome *out);

#endif
