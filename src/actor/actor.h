/*
 * actor.h - actors: a state block plus a mailbox, run on the worker pool.
 *
 * The task layer sees actors through these calls: resolving handles, the
 * hand-off of a call whose dependencies are ready, and what a record needs
 * to run a method (state, class, method function, quota account).
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

/* The live actor a handle names, or NULL (NULL, released, stale). */
rt_actor *rt_actor_resolve(rt_runtime *rt, ray_actor *h);
ray_actor *rt_actor_handle(rt_actor *a);
void *rt_actor_state(rt_actor *a);
const ray_actor_class *rt_actor_class(rt_actor *a);
ray_method_fn rt_actor_method(rt_actor *a, uint32_t method);
uint16_t rt_actor_account(rt_actor *a);

/* A call's (or the constructor's) dependencies are ready: queue it. */
void rt_actor_call_ready(rt_runtime *rt, rt_task *call);
/* Drops a record reference on a (calls and the constructor hold one). */
void rt_actor_unref(rt_runtime *rt, rt_actor *a);

/* The actor layer's part of the runtime. */
int rt_actors_init(rt_runtime *rt);
/* Ends every living actor (on_stop once each) and waits for them. */
void rt_actors_end_all(rt_runtime *rt);
/* Frees what is left (records whose handles were never released). */
void rt_actors_destroy(rt_runtime *rt);
/* Counters for ray_stats. */
void rt_actors_stats(rt_runtime *rt, ray_stats *out);

#endif
