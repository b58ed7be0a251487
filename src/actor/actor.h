/*
 * actor.h - actors: a state block plus a mailbox, run on the worker pool.
 *
 * The task layer sees actors only through the ops this layer installs in
 * it (rt_task_owner_ops, task.h): resolving handles, the hand-off of a call
 * whose dependencies are ready, dropping a record's hold on its actor.
 */
#ifndef RT_ACTOR_H
#define RT_ACTOR_H

#include "ray.h"
#include "task/task.h"

#include <pthread.h>

/* One slot of the handle table: handles encode (generation ^ salt, slot). */
typedef struct rt_actor_slot {
  _Atomic(rt_actor *) actor;
  _Atomic uint32_t gen;
} rt_actor_slot;

#define RT_ACTOR_CHUNK 1024
#define RT_ACTOR_CHUNKS 1024 /* a million actors at once */

typedef struct rt_actors {
  /* What the layer uses: set by rt_actors_bind, read-only after. */
  rt_tasks *tasks;
  rt_store *store;
  rt_sched *sched;
  pthread_mutex_t lock; /* table growth, free slots, names, the list of all */
  _Atomic(rt_actor_slot *) chunks[RT_ACTOR_CHUNKS];
  uint32_t nchunks;
  uint32_t *free_slots;
  size_t nfree, free_cap;
  uint32_t salt;
  rt_actor *all; /* every record not yet freed, for shutdown and names */
  /* Counters: relaxed, they order nothing (alive is also a futex word the
   * shutdown waits on; its decrement is seq_cst, see rt_actors_end_all). */
  _Atomic uint32_t alive;
  _Atomic uint64_t restarts, calls, seq;
} rt_actors;

/* The actor layer of the running runtime, or NULL. Published by ray_init
 * with a release store once the whole runtime is built (before the task
 * layer, so a caller that found the task layer finds this one), cleared by
 * ray_shutdown (runtime.c); acquire, so that a caller that sees the layer
 * sees everything ray_init built before publishing it. */
extern _Atomic(rt_actors *) rt_g_actors;
static inline rt_actors *rt_actors_current(void) {
  return atomic_load_explicit(&rt_g_actors, memory_order_acquire);
}

/* The lifetime of the layer: init, bind (what it uses, and installs its
 * ops in the task layer), end_all (at shutdown: every living actor ends,
 * on_stop once each, and is waited for), destroy (frees what is left:
 * records whose handles were never released). */
int rt_actors_init(rt_actors *as);
void rt_actors_bind(rt_actors *as, rt_tasks *ts);
void rt_actors_end_all(rt_actors *as);
void rt_actors_destroy(rt_actors *as);
/* Counters for ray_stats. */
void rt_actors_stats(rt_actors *as, ray_stats *out);

#endif
