/*
 * wait.c - seals and what waits for them: ray_seal, ending a task's pending
 * object, ray_get, ray_wait, and task dependencies.
 *
 * Algorithm and trade-offs:
 *  - Blocking gets park on a per-stripe waiter list, flagged in the entry's
 *    state word (RT_ST_WAITERS) so that a seal with nobody waiting never
 *    takes a lock. No polling anywhere.
 *  - Before parking, an untimed get runs the object's producer itself when
 *    it may (a task this thread just submitted), or helps with the jobs
 *    queued on its own worker; then it spins briefly. What that needs from
 *    the layers above it asks through st->ops (store.h).
 *  - A task's dependency on a PENDING object hangs off the entry itself,
 *    not its stripe's list (rt_store_add_waiter), so ending one object does
 *    not walk every waiter of the stripe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/prim.h"
#include "core/types.h"
#include "store/store_int.h"

/* ------------------------------------------------------------------------ */
/* Waiter lists                                                             */
/* ------------------------------------------------------------------------ */

/* Under the stripe lock: flags the entry as waited on. Returns true if the
 * entry is not ready yet (the caller should park), false if it is. */
static bool flag_waiting(rt_stripe *sp, rt_entry *e) {
  RT_ASSERT_STRIPE_HELD(sp);
  /* acq_rel: acquire pairs with the sealer's release CAS, so if we see the
   * seal we also see the bytes; the flag itself is read by the sealer's CAS
   * and the list behind it is protected by the stripe lock. */
  uint32_t old = atomic_fetch_or_explicit(&e->state, RT_ST_WAITERS, memory_order_acq_rel);
  return !state_ready(old);
}

/* Under the stripe lock: links w on the stripe's list. */
static void waiter_push(rt_stripe *sp, rt_waiter *w) {
  RT_ASSERT_STRIPE_HELD(sp);
  w->next = sp->waiters;
  sp->waiters = w;
}

/* Under the stripe lock: unlinks w if it is still on the stripe's list (it
 * is not once fired). */
static void waiter_unlink(rt_stripe *sp, rt_waiter *w) {
  RT_ASSERT_STRIPE_HELD(sp);
  for (rt_waiter **pp = &sp->waiters; *pp; pp = &(*pp)->next)
    if (*pp == w) {
      *pp = w->next;
      break;
    }
}

/* Under the stripe lock: unlinks every waiter for slot and fires the thread
 * waiters; returns the deferred ones, linked, for fire_deferred. */
static rt_waiter *fire_waiters(rt_stripe *sp, uint32_t slot) {
  RT_ASSERT_STRIPE_HELD(sp);
  rt_waiter *deferred = NULL, **pp = &sp->waiters;
  while (*pp) {
    rt_waiter *w = *pp;
    if (w->slot == slot) {
      *pp = w->next;
      if (w->deferred) {
        w->next = deferred;
        deferred = w;
      } else {
        w->next = NULL;
        w->fire(w);
      }
    } else {
      pp = &w->next;
    }
  }
  return deferred;
}

/* Outside any lock: fires task dependencies (which may free their nodes). */
static void fire_deferred(rt_waiter *w) {
  while (w) {
    rt_waiter *next = w->next;
    w->fire(w);
    w = next;
  }
}

/* ------------------------------------------------------------------------ */
/* Sealing                                                                  */
/* ------------------------------------------------------------------------ */

/* After an entry became SEALED (old: its state before): fires the waiters
 * it had and puts it on its LRU list if it may be spilled. */
static void sealed_now(rt_store *st, uint32_t slot, rt_entry *e, uint32_t old) {
  if (!(old & RT_ST_WAITERS) && !(e->flags & RT_EF_SPILLABLE)) return;
  rt_stripe *sp = stripe_of(st, slot);
  rt_waiter *deferred = NULL;
  stripe_lock(sp);
  if (old & RT_ST_WAITERS) deferred = fire_waiters(sp, slot);
  lru_update(st, sp, slot, e);
  stripe_unlock(sp);
  fire_deferred(deferred);
}

ray_status ray_seal(ray_ref *ref) {
  rt_store *st = rt_store_running("ray_seal");
  if (!st) return RAY_ESHUTDOWN;
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return rt_store_bad_handle("ray_seal", ref);
  /* relaxed: only a first guess for the CAS, which orders what it must. */
  uint32_t cur = atomic_load_explicit(&e->state, memory_order_relaxed);
  do {
    if ((cur & RT_ST_MASK) != RT_ST_CREATING) {
      char id[33];
      return rt_fail(RAY_EINVAL, "ray_seal: object %s is already sealed (or not from ray_create)",
                     ENTRY_ID(st, slot, e, id));
    }
    /* acq_rel: release publishes the bytes written in place to getters that
     * acquire the state; acquire pairs with a waiter's WAITERS flag. */
  } while (!atomic_compare_exchange_weak_explicit(&e->state, &cur, RT_ST_SEALED,
                                                  memory_order_acq_rel, memory_order_relaxed));
  sealed_now(st, slot, e, cur);
  return RAY_OK;
}

/* ------------------------------------------------------------------------ */
/* ray_get                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct thread_waiter {
  rt_waiter base;
  _Atomic uint32_t fired;
} thread_waiter;

static void thread_waiter_fire(rt_waiter *w) {
  thread_waiter *t = (thread_waiter *)w;
  /* release: orders nothing the waiter reads from us (it re-reads the state
   * with acquire), but keeps the flag and the wake in order. */
  atomic_store_explicit(&t->fired, 1, memory_order_release);
  rt_prim_futex_wake(&t->fired, 1);
}

/* On a worker: runs jobs from its own deque until the entry is ready or
 * there is none left (st->ops.help). Returns true if it is ready. */
static bool help_until_ready(rt_store *st, rt_entry *e) {
  for (;;) {
    if (entry_ready(e)) return true;
    if (!st->ops.help(st->ops.arg)) return false;
  }
}

/* How long a blocking get spins before it parks. A task result usually
 * arrives within microseconds; parking costs a futex wait plus a wake-up
 * syscall in the sealer (~5-10 us together here), which would double a
 * submit+get round trip. 20 us of spinning bounds the waste; yielding
 * between rounds keeps the spin from starving the producer. */
#define RT_GET_SPIN_NS 20000
#define RT_GET_SPIN_ROUNDS 16 /* ~64 pauses each: a few microseconds */

static bool spin_until_ready(rt_entry *e, uint64_t deadline) {
  uint64_t until = rt_prim_now_ns() + RT_GET_SPIN_NS;
  if (until > deadline) until = deadline;
  for (int round = 0;; round++) {
    for (int k = 0; k < 64; k++) {
      if (entry_ready(e)) return true;
      rt_prim_pause();
    }
    if (rt_prim_now_ns() >= until) break;
    /* After a short pure spin (a quick round trip never pays a syscall),
     * let the thread that makes the object run should it share our core:
     * more threads than cores is common (a driver plus a worker per core). */
    if (round >= RT_GET_SPIN_ROUNDS) rt_prim_yield();
  }
  return false;
}

/* Parks until the entry is sealed or the deadline passes. */
static ray_status wait_sealed(rt_store *st, ray_ref *ref, uint32_t slot, rt_entry *e,
                              uint64_t deadline, int64_t timeout_ms) {
  /* Only an untimed wait runs jobs itself: one could outlast a deadline.
   * Outside the pool, waiting for one of the last tasks this thread
   * submitted (submit, then get at once; nested gets), run that task if no
   * worker has started it: we wait for it anyway, and this saves two
   * hand-offs between cores. (Older submissions are rarely still ours to
   * take, and trying costs the stripe lock.) On a worker, run the jobs
   * queued on its own deque. */
  if (deadline == UINT64_MAX) {
    if (st->ops.run_producer(st->ops.arg, ref) && entry_ready(e)) return RAY_OK;
    if (help_until_ready(st, e)) return RAY_OK;
  }
  if (spin_until_ready(e, deadline)) return RAY_OK;
  rt_stripe *sp = stripe_of(st, slot);
  thread_waiter w = {{NULL, slot, false, thread_waiter_fire}, 0};
  stripe_lock(sp);
  if (!flag_waiting(sp, e)) {
    stripe_unlock(sp);
    return RAY_OK;
  }
  waiter_push(sp, &w.base);
  stripe_unlock(sp);

  bool timed_out = false;
  st->ops.block_begin(st->ops.arg);
  while (!atomic_load_explicit(&w.fired, memory_order_acquire)) {
    if (!rt_prim_futex_wait(&w.fired, 0, deadline)) {
      timed_out = true;
      break;
    }
  }
  st->ops.block_end(st->ops.arg);
  /* Take the stripe lock before the node goes out of scope: fire() runs
   * under it, so once we hold it no one touches the node any more. */
  stripe_lock(sp);
  /* relaxed: fire() stores it under this lock, which we hold. */
  if (timed_out && !atomic_load_explicit(&w.fired, memory_order_relaxed)) {
    waiter_unlink(sp, &w.base);
    stripe_unlock(sp);
    char id[33];
    return rt_fail(RAY_ETIMEOUT, "ray_get: object %s not ready within %lld ms",
                   ENTRY_ID(st, slot, e, id), (long long)timeout_ms);
  }
  stripe_unlock(sp);
  return RAY_OK;
}

/* The view hold of a spillable entry, taken under its stripe lock: where
 * its bytes are changes only under that lock (spill.c), so this is where a
 * view of a spilled object brings it back in first. */
static ray_status view_spillable(rt_store *st, uint32_t slot, rt_entry *e, const char *what,
                                 ray_view *out) {
  rt_stripe *sp = stripe_of(st, slot);
  stripe_lock(sp);
  ray_status s = rt_store_bring_in(st, sp, slot, e, what);
  if (s == RAY_OK) {
    /* Relaxed: under the stripe lock, as every change of a spillable
     * entry's view count to or from zero (hold_drop), which is what the
     * spiller reads. */
    uint64_t old = atomic_fetch_add_explicit(&e->holds, RT_HOLD_VIEW, memory_order_relaxed);
    if (RT_HOLD_VIEWS(old) == 0) {
      atomic_fetch_add_explicit(&st->bytes_viewed, e->size, memory_order_relaxed); /* counter */
      lru_update(st, sp, slot, e);
    }
    out->data = e->data;
    out->size = e->size;
    out->type = e->type;
  }
  stripe_unlock(sp);
  return s;
}

/* A view of a sealed entry: type-checked against expect (the message starts
 * with `what`), then one more view hold. A user's view (ray_get) owns a view
 * record (viewtab.h), so that only one release of it counts; the task
 * layer's views (rt_store_view) carry their ref and are dropped by
 * rt_store_view_drop. */
static inline __attribute__((always_inline)) ray_status
view_sealed(rt_store *st, uint32_t slot, rt_entry *e, ray_ref *ref, const ray_type *expect,
            const char *what, bool user, ray_view *out) {
  char id[33];
  if (expect && !rt_type_equal(e->type, expect)) {
    char a[96], b[96];
    return rt_fail(RAY_ETYPE, "%s: object %s has type %s, expected %s", what,
                   ENTRY_ID(st, slot, e, id), rt_type_describe(e->type, a, sizeof a),
                   rt_type_describe(expect, b, sizeof b));
  }
  void *priv = ref;
  if (user && RT_UNLIKELY(!rt_viewtab_open(&st->views, ref, &priv)))
    return rt_fail(RAY_ENOMEM, "%s: no memory to record a view of object %s", what,
                   ENTRY_ID(st, slot, e, id));
  if (e->flags & RT_EF_SPILLABLE) {
    ray_status s = view_spillable(st, slot, e, what, out);
    if (RT_UNLIKELY(s != RAY_OK)) {
      if (user) (void)rt_viewtab_close(&st->views, priv);
      return s;
    }
    out->priv_ = priv;
    return RAY_OK;
  }
  /* Relaxed: the caller holds a ref, so the entry cannot be freed under us;
   * the count only has to be atomic. */
  atomic_fetch_add_explicit(&e->holds, RT_HOLD_VIEW, memory_order_relaxed);
  out->data = e->data;
  out->size = e->size;
  out->type = e->type;
  out->priv_ = priv;
  return RAY_OK;
}

ray_status ray_get(ray_ref *ref, const ray_type *expect, int64_t timeout_ms, ray_view *out) {
  rt_store *st = rt_store_running("ray_get");
  if (!st) return RAY_ESHUTDOWN;
  if (!out) return rt_fail(RAY_EINVAL, "ray_get: out is NULL");
  if (RT_UNLIKELY(timeout_ms < -1))
    return rt_fail(RAY_EINVAL, "ray_get: timeout_ms %lld is below -1 (-1 waits forever)",
                   (long long)timeout_ms);
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return rt_store_bad_handle("ray_get", ref);
  /* acquire: pairs with the release that sealed the entry, so the payload
   * is visible before we hand out a pointer to it. */
  uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire);
  if (RT_UNLIKELY((state & RT_ST_MASK) != RT_ST_SEALED)) {
    if (!state_ready(state)) {
      if (timeout_ms == 0) {
        char id[33];
        return rt_fail(RAY_ETIMEOUT, "ray_get: object %s is not ready yet",
                       ENTRY_ID(st, slot, e, id));
      }
      ray_status s = wait_sealed(st, ref, slot, e, rt_prim_deadline(timeout_ms), timeout_ms);
      if (s != RAY_OK) return s;
      state = atomic_load_explicit(&e->state, memory_order_acquire);
    }
    if ((state & RT_ST_MASK) == RT_ST_FAILED) {
      const rt_error *err = e->data;
      return rt_fail(err->status, "%s", err->msg);
    }
  }
  ray_status s = view_sealed(st, slot, e, ref, expect, "ray_get", true, out);
  if (s == RAY_OK) rt_count_get(&st->counts);
  return s;
}

ray_status rt_store_view(rt_store *st, ray_ref *ref, const ray_type *expect, const char *what,
                         ray_view *out) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return rt_store_bad_handle(what, ref);
  /* acquire: as in ray_get, the payload or error is visible once ready is. */
  uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK;
  char id[33];
  if (state == RT_ST_FAILED)
    return rt_fail(((const rt_error *)e->data)->status, "%s: %s", what,
                   ((const rt_error *)e->data)->msg);
  if (state != RT_ST_SEALED)
    return rt_fail(RAY_EINVAL, "%s: object %s is not ready", what, ENTRY_ID(st, slot, e, id));
  return view_sealed(st, slot, e, ref, expect, what, false, out);
}

/* ------------------------------------------------------------------------ */
/* ray_wait                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct wait_group {
  _Atomic uint32_t fired; /* futex word: count of waiters fired */
} wait_group;

typedef struct group_waiter {
  rt_waiter base;
  wait_group *group;
  bool registered;
} group_waiter;

static void group_waiter_fire(rt_waiter *w) {
  wait_group *g = ((group_waiter *)w)->group;
  /* release: the waiter re-reads entry states with acquire after waking;
   * this increment only has to be atomic and precede the wake. */
  atomic_fetch_add_explicit(&g->fired, 1, memory_order_release);
  rt_prim_futex_wake(&g->fired, 1);
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

static ray_status wait_check_args(ray_ref *const refs[], size_t n, size_t num_ready,
                                  int64_t timeout_ms, const bool ready[]) {
  if (n && (!refs || !ready)) return rt_fail(RAY_EINVAL, "ray_wait: refs or ready is NULL");
  if (num_ready > n)
    return rt_fail(RAY_EINVAL, "ray_wait: num_ready %zu is more than the %zu refs", num_ready, n);
  if (timeout_ms < -1)
    return rt_fail(RAY_EINVAL, "ray_wait: timeout_ms %lld is below -1 (-1 waits forever)",
                   (long long)timeout_ms);
  return RAY_OK;
}

/* Resolves every ref into slots[] and refuses a ref given twice (sorted is
 * scratch space for n refs). */
static ray_status wait_resolve(rt_store *st, ray_ref *const refs[], size_t n, uint32_t *slots,
                               ray_ref **sorted) {
  for (size_t i = 0; i < n; i++) {
    if (!rt_handle_resolve(&st->slots, refs[i], &slots[i])) {
      char what[48];
      snprintf(what, sizeof what, "ray_wait: refs[%zu]", i);
      return rt_store_bad_handle(what, refs[i]);
    }
    sorted[i] = refs[i];
  }
  qsort(sorted, n, sizeof *sorted, cmp_ptr);
  for (size_t i = 1; i < n; i++)
    if (sorted[i] == sorted[i - 1])
      return rt_fail(RAY_EINVAL, "ray_wait: ref %p appears more than once", (void *)sorted[i]);
  return RAY_OK;
}

static size_t count_ready(rt_store *st, const uint32_t *slots, size_t n) {
  size_t nready = 0;
  for (size_t i = 0; i < n; i++) nready += entry_ready(rt_slots_entry_live(&st->slots, slots[i]));
  return nready;
}

/* Registers a node for each unready slot on the group; returns how many
 * were ready before they could be registered. */
static size_t wait_register(rt_store *st, const uint32_t *slots, size_t n, group_waiter *nodes,
                            wait_group *g) {
  size_t already = 0;
  for (size_t i = 0; i < n; i++) {
    rt_entry *e = rt_slots_entry_live(&st->slots, slots[i]);
    if (entry_ready(e)) {
      already++;
      continue;
    }
    rt_stripe *sp = stripe_of(st, slots[i]);
    stripe_lock(sp);
    if (flag_waiting(sp, e)) {
      nodes[i] = (group_waiter){{NULL, slots[i], false, group_waiter_fire}, g, true};
      waiter_push(sp, &nodes[i].base);
    } else {
      already++;
    }
    stripe_unlock(sp);
  }
  return already;
}

/* Sleeps until num_ready of the refs are ready (already of them before
 * registering, and one more per fired node) or the deadline passes. */
static void wait_sleep(rt_store *st, wait_group *g, size_t already, size_t num_ready,
                       uint64_t deadline) {
  st->ops.block_begin(st->ops.arg);
  for (;;) {
    uint32_t f = atomic_load_explicit(&g->fired, memory_order_acquire);
    if (already + f >= num_ready || !rt_prim_futex_wait(&g->fired, f, deadline)) break;
  }
  st->ops.block_end(st->ops.arg);
}

/* Unlinks the nodes that did not fire; holding each stripe lock once also
 * waits out any fire() still touching our nodes. */
static void wait_unlink(rt_store *st, const uint32_t *slots, size_t n, group_waiter *nodes) {
  for (size_t i = 0; i < n; i++) {
    if (!nodes[i].registered) continue;
    rt_stripe *sp = stripe_of(st, slots[i]);
    stripe_lock(sp);
    waiter_unlink(sp, &nodes[i].base);
    stripe_unlock(sp);
  }
}

/* Registers on every unready ref and sleeps until num_ready are ready or
 * timeout_ms passes; the caller then counts what is ready. */
static ray_status wait_park(rt_store *st, const uint32_t *slots, size_t n, size_t num_ready,
                            int64_t timeout_ms) {
  group_waiter *nodes = rt_calloc(n, sizeof *nodes);
  if (!nodes) return rt_fail(RAY_ENOMEM, "ray_wait: out of memory for %zu waiters", n);
  wait_group g = {0};
  uint64_t deadline = rt_prim_deadline(timeout_ms);
  size_t already = wait_register(st, slots, n, nodes, &g);
  wait_sleep(st, &g, already, num_ready, deadline);
  wait_unlink(st, slots, n, nodes);
  free(nodes);
  return RAY_OK;
}

/* Fills ready[]; RAY_ETIMEOUT if fewer than num_ready are. */
static ray_status wait_result(rt_store *st, const uint32_t *slots, size_t n, size_t num_ready,
                              int64_t timeout_ms, bool ready[]) {
  size_t nready = 0;
  for (size_t i = 0; i < n; i++) {
    ready[i] = entry_ready(rt_slots_entry_live(&st->slots, slots[i]));
    nready += ready[i];
  }
  if (nready < num_ready)
    return rt_fail(RAY_ETIMEOUT, "ray_wait: %zu of %zu refs ready, %zu wanted, after %lld ms",
                   nready, n, num_ready, (long long)timeout_ms);
  return RAY_OK;
}

ray_status ray_wait(ray_ref *const refs[], size_t n, size_t num_ready, int64_t timeout_ms,
                    bool ready[]) {
  rt_store *st = rt_store_running("ray_wait");
  if (!st) return RAY_ESHUTDOWN;
  ray_status status = wait_check_args(refs, n, num_ready, timeout_ms, ready);
  if (status != RAY_OK || n == 0) return status;

  uint32_t *slots = rt_malloc(n * sizeof *slots);
  ray_ref **sorted = rt_malloc(n * sizeof *sorted);
  if (!slots || !sorted) {
    status = rt_fail(RAY_ENOMEM, "ray_wait: out of memory for %zu refs", n);
    goto out;
  }
  if ((status = wait_resolve(st, refs, n, slots, sorted)) != RAY_OK) goto out;

  size_t nready = count_ready(st, slots, n);
  /* On a worker and untimed, run our own queued jobs first: they are
   * usually what we are waiting for (see help_until_ready); a job run
   * inline could outlast a deadline. */
  while (nready < num_ready && timeout_ms < 0 && st->ops.help(st->ops.arg))
    nready = count_ready(st, slots, n);
  if (nready < num_ready && timeout_ms != 0 &&
      (status = wait_park(st, slots, n, num_ready, timeout_ms)) != RAY_OK)
    goto out;
  status = wait_result(st, slots, n, num_ready, timeout_ms, ready);
out:
  free(sorted);
  free(slots);
  return status;
}

/* ------------------------------------------------------------------------ */
/* For the task layer: dependencies, ending pending objects                 */
/* ------------------------------------------------------------------------ */

/*
 * A task's dependency on a PENDING entry waits on the entry itself, not on
 * its stripe's list. Every end of an entry with waiters walks its stripe's
 * whole list (fire_waiters), and a chain of n tasks submitted ahead keeps
 * n / RT_STRIPES dependency waiters on each stripe: each hop of the chain,
 * run, failed or cancelled, cost O(n) (about 90 us a task at n = 100,000).
 * A PENDING entry has no payload yet, so its `data` holds the head of its
 * dependency list, under the stripe lock. RT_ST_WAITERS is set with the
 * first one, so the lock-free sealer's CAS from exactly PENDING fails and
 * every end of such an entry takes the locked path, which unlinks the list
 * (take_deps) before the outcome overwrites `data`. Thread waiters, and
 * dependencies on a CREATING or ENDING entry (whose end, ray_seal or the
 * lock-free sealer, only fires the stripe's list), stay on the stripe.
 */
bool rt_store_add_waiter(rt_store *st, ray_ref *ref, rt_waiter *w) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return false;
  if (entry_ready(e)) return false; /* fast path, no lock */
  rt_stripe *sp = stripe_of(st, slot);
  bool registered = false;
  stripe_lock(sp);
  /* acq_rel, as in flag_waiting; the old state also says which list. */
  uint32_t old = atomic_fetch_or_explicit(&e->state, RT_ST_WAITERS, memory_order_acq_rel);
  if (!state_ready(old)) {
    w->slot = slot;
    w->deferred = true;
    if ((old & RT_ST_MASK) == RT_ST_PENDING) {
      w->next = e->data;
      e->data = w;
    } else {
      waiter_push(sp, w);
    }
    registered = true;
  }
  stripe_unlock(sp);
  return registered;
}

/* Under the stripe lock, on a claimed PENDING entry: unlinks its
 * dependency waiters (see rt_store_add_waiter), oldest first as the
 * stripe's list fires them. Before the outcome is written into `data`. */
static rt_waiter *take_deps(rt_stripe *sp, rt_entry *e) {
  RT_ASSERT_STRIPE_HELD(sp);
  rt_waiter *w = e->data, *oldest_first = NULL;
  e->data = NULL;
  while (w) {
    rt_waiter *next = w->next;
    w->next = oldest_first;
    oldest_first = w;
    w = next;
  }
  return oldest_first;
}

/* Under the stripe lock: ends a PENDING entry in `state`, firing waiters.
 * Returns the deferred waiters to fire after unlocking: the stripe's, then
 * deps (from take_deps). */
static rt_waiter *end_pending(rt_store *st, rt_stripe *sp, uint32_t slot, rt_entry *e,
                              uint32_t state, rt_waiter *deps) {
  RT_ASSERT_STRIPE_HELD(sp);
  /* release: the payload or error written above is visible to whoever
   * acquires the state (getters, waiters, dependent tasks). */
  uint32_t old = atomic_exchange_explicit(&e->state, state, memory_order_acq_rel);
  rt_waiter *deferred = (old & RT_ST_WAITERS) ? fire_waiters(sp, slot) : NULL;
  lru_update(st, sp, slot, e);
  rt_waiter **tail = &deferred;
  while (*tail) tail = &(*tail)->next;
  *tail = deps;
  return deferred;
}

/* Under the stripe lock: claims a PENDING entry for the caller to end (or
 * to read its producer): sets RT_ST_WAITERS, which keeps the lock-free
 * sealer out (entry.h). False if it is no longer PENDING. */
static bool claim_pending(rt_stripe *sp, rt_entry *e) {
  RT_ASSERT_STRIPE_HELD(sp);
  /* acquire: pairs with the producer's publication (new_pending) of what
   * we then read; the flag must be atomic with the check. */
  uint32_t old = atomic_fetch_or_explicit(&e->state, RT_ST_WAITERS, memory_order_acquire);
  return (old & RT_ST_MASK) == RT_ST_PENDING;
}

/* Writes a staged payload into an entry its caller owns (ENDING or
 * claimed). */
static void entry_take_payload(rt_entry *e, rt_payload *p) {
  e->size = p->size;
  e->type = p->type;
  e->flags = p->flags;
  if (p->flags & RT_EF_INLINE) {
    memcpy(e->inl, p->inl, p->size);
    e->data = e->inl;
  } else {
    e->data = p->data;
  }
  e->aux = p->aux;
  p->data = NULL; /* moved */
}

/* Writes a remote copy's payload and location into a claimed entry. */
static void entry_take_remote(rt_entry *e, rt_payload *p, const rt_remote_loc *loc, bool out) {
  entry_take_payload(e, p);
  memcpy(e->inl + RT_ENTRY_REMOTE_AT, loc, sizeof *loc);
  /* Ours alone while ENDING or claimed: the spiller and views look only at
   * sealed entries, after acquiring the state we publish next. */
  e->locked_flags = out ? (uint16_t)(RT_LF_OUT | RT_LF_REMOTE) : 0;
  if (out) e->data = NULL;
}

/* Ends the PENDING entry e with payload p (for a remote copy, loc not NULL:
 * its location, and out: its bytes are not here). False, taking nothing,
 * if the entry is no longer PENDING (a canceller got there first). */
static bool seal_entry(rt_store *st, uint32_t slot, rt_entry *e, rt_payload *p,
                       const rt_remote_loc *loc, bool out) {
  /* Fast path, no lock: nobody waits and no canceller holds the entry.
   * relaxed: the CAS only claims the entry; the payload is published by
   * the release exchange below. */
  uint32_t expect = RT_ST_PENDING;
  if (atomic_compare_exchange_strong_explicit(&e->state, &expect, RT_ST_ENDING,
                                              memory_order_relaxed, memory_order_relaxed)) {
    if (loc)
      entry_take_remote(e, p, loc, out);
    else
      entry_take_payload(e, p);
    /* acq_rel: release publishes the payload to whoever acquires the state;
     * acquire pairs with a waiter's flag, whose list we then lock. */
    sealed_now(st, slot, e,
               atomic_exchange_explicit(&e->state, RT_ST_SEALED, memory_order_acq_rel));
    return true;
  }
  rt_stripe *sp = stripe_of(st, slot);
  stripe_lock(sp);
  if (!claim_pending(sp, e)) {
    stripe_unlock(sp);
    return false;
  }
  rt_waiter *deps = take_deps(sp, e);
  if (loc)
    entry_take_remote(e, p, loc, out);
  else
    entry_take_payload(e, p);
  rt_waiter *deferred = end_pending(st, sp, slot, e, RT_ST_SEALED, deps);
  stripe_unlock(sp);
  fire_deferred(deferred);
  return true;
}

bool rt_store_seal_pending(rt_store *st, ray_ref *ref, rt_payload *p) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (e && seal_entry(st, slot, e, p, NULL, false)) return true;
  rt_store_payload_discard(st, p);
  return false;
}

bool rt_store_seal_remote(rt_store *st, ray_ref *ref, size_t size, const ray_type *type,
                          const rt_remote_loc *loc, const void *bytes, ray_status *ok) {
  *ok = RAY_OK;
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return false;
  rt_payload p = {.size = size, .type = type};
  if (bytes) { /* in memory here from the start: reserve and copy */
    ray_status s = mem_reserve(st, "ray_get", size);
    if (s == RAY_OK &&
        (s = rt_store_alloc_apart(st, "ray_get", size, &p.data, &p.flags, &p.aux.cap)) != RAY_OK)
      mem_release(st, size);
    if (s != RAY_OK) {
      *ok = s;
      return false;
    }
    memcpy(p.data, bytes, size);
  } else { /* the buffer's kind, for the pull that brings the bytes in */
    p.flags = rt_store_apart_kind(size);
    p.data = (void *)loc; /* not NULL: "set"; entry_take_remote clears it */
  }
  p.flags |= RT_EF_REMOTE;
  bool out = bytes == NULL;
  if (seal_entry(st, slot, e, &p, loc, out)) return true;
  if (!out) { /* not pending any more: give back the copy's buffer */
    rt_store_buffer_free(st, p.flags, p.data, p.aux);
    mem_release(st, size);
  }
  return false;
}

bool rt_store_info(rt_store *st, ray_ref *ref, size_t *size, const ray_type **type) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  /* acquire: size and type are written before the seal publishes them. */
  if (!e || (atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK) != RT_ST_SEALED)
    return false;
  *size = e->size;
  *type = e->type;
  return true;
}

bool rt_store_remote_loc(rt_store *st, ray_ref *ref, rt_remote_loc *loc, bool *local) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  /* acquire: the flags and location are written before the seal publishes
   * the state (entry_take_remote). */
  if (!e || (atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK) != RT_ST_SEALED ||
      !(e->flags & RT_EF_REMOTE))
    return false;
  rt_stripe *sp = stripe_of(st, slot);
  stripe_lock(sp);
  memcpy(loc, e->inl + RT_ENTRY_REMOTE_AT, sizeof *loc);
  *local = !(e->locked_flags & RT_LF_REMOTE);
  stripe_unlock(sp);
  return true;
}

static char *pack_str(char **at, const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = *at;
  memcpy(d, s, n);
  *at += n;
  return d;
}

/* When even the message cannot be allocated, the error still gets through. */
static const rt_error k_error_nomem = {RAY_ENOMEM,
                                       "task failed, and there was no memory left "
                                       "for its error message",
                                       NULL, "out of memory"};

bool rt_store_fail_pending(rt_store *st, ray_ref *ref, ray_status status, const char *msg,
                           const char *task, const char *reason) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return false;
  size_t n = sizeof(rt_error) + strlen(msg) + 1 + (task ? strlen(task) + 1 : 0) +
             (reason ? strlen(reason) + 1 : 0);
  rt_error *err = rt_malloc(n);
  if (err) {
    char *at = (char *)(err + 1);
    err->status = status;
    err->msg = pack_str(&at, msg);
    err->task = pack_str(&at, task);
    err->reason = pack_str(&at, reason);
  }
  rt_stripe *sp = stripe_of(st, slot);
  stripe_lock(sp);
  if (!claim_pending(sp, e)) {
    stripe_unlock(sp);
    free(err);
    return false;
  }
  rt_waiter *deps = take_deps(sp, e);
  e->size = 0;
  e->type = NULL;
  if (err) { /* the entry owns it now; finalize frees it */
    e->data = err;
    e->flags = RT_EF_ERROR;
  } else {
    e->data = (void *)&k_error_nomem;
    e->flags = 0;
  }
  rt_waiter *deferred = end_pending(st, sp, slot, e, RT_ST_FAILED, deps);
  stripe_unlock(sp);
  fire_deferred(deferred);
  return true;
}

bool rt_store_with_producer(rt_store *st, ray_ref *ref, void (*fn)(void *producer, void *arg),
                            void *arg) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return false;
  rt_stripe *sp = stripe_of(st, slot);
  bool pending = false;
  stripe_lock(sp);
  if (claim_pending(sp, e) && e->aux.producer) {
    pending = true;
    fn(e->aux.producer, arg);
  }
  stripe_unlock(sp);
  return pending;
}

uint32_t rt_store_state(rt_store *st, ray_ref *ref) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  /* acquire: a caller that sees SEALED or FAILED also sees the outcome
   * (pairs with the release that ended the entry). */
  return e ? atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK : RT_ST_FREE;
}

const rt_error *rt_store_error(rt_store *st, ray_ref *ref) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  /* acquire: as in rt_store_state, so the error it returns is whole. */
  if (!e || (atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK) != RT_ST_FAILED)
    return NULL;
  return e->data;
}
