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

/* store.c runs the producer of an object it waits for through here (the
 * task layer's rt_task_run_producer) until the store's ops table takes its
 * place. */
bool rt_task_run_awaited(rt_runtime *rt, ray_ref *ref);

#endif
