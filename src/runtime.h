/*
 * runtime.h - the one runtime of the process and how calls find it.
 */
#ifndef RT_RUNTIME_H
#define RT_RUNTIME_H

#include "actor/actor.h"
#include "core/config.h"
#include "core/error.h"
#include "core/gate.h"
#include "store/store.h"
#include "task/task.h"
#include "trace/timeline.h"

typedef struct rt_runtime {
  rt_config cfg;
  rt_store store;
  rt_sched *sched;
  rt_tasks tasks;
  rt_actors actors;
  rt_timeline timeline;
  uint64_t epoch; /* 1, 2, ... per ray_init in this process */
} rt_runtime;

/* Published by ray_init (release) and cleared by ray_shutdown; a call pairs
 * with it by an acquire load, so it sees the fully built runtime. */
extern _Atomic(rt_runtime *) rt_g_runtime;

static inline rt_runtime *rt_current(void) {
  return atomic_load_explicit(&rt_g_runtime, memory_order_acquire);
}

/* The store, or NULL with RAY_ESHUTDOWN recorded as the last error for fn. */
rt_store *rt_store_for(const char *fn);

/*
 * The start and end of a call that submits work (ray_submit, the actor
 * calls). From a thread outside the pool, enter passes the thread's gate
 * (core/gate.h) and then refuses the call once ray_shutdown has begun, so
 * that shutdown frees nothing under a call it let in. Inside the pool no
 * gate is needed: the drain waits for every running task. RAY_OK sets *rt
 * and *gate (NULL inside the pool), and the caller must call
 * rt_runtime_leave(*gate) when it is done with the runtime; otherwise
 * RAY_ESHUTDOWN or RAY_ENOMEM, recorded for fn, and nothing to leave.
 */
ray_status rt_runtime_enter(const char *fn, rt_runtime **rt, struct rt_gate **gate);
static inline void rt_runtime_leave(struct rt_gate *gate) {
  if (gate) rt_gate_leave(gate);
}

#endif
