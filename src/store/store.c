/*
 * store.c - the object store: puts, gets, seals, waits, pins, lifetime.
 *
 * Algorithm and trade-offs:
 *  - Lifetime: an entry's `holds` word counts refs (low half) and views (high
 *    half). Whoever moves it to zero frees the entry, exactly once. Refs and
 *    views are counted in one word because two separate counters would let
 *    the last ref-release and the last view-release both see "zero".
 *  - Memory: bytes_in_memory is reserved with a CAS before anything is
 *    allocated, so the limit is never exceeded, not even transiently, and a
 *    put that fails leaves nothing behind. A put that does not fit parks on
 *    mem_cond until a free makes room or put_timeout_ms passes. Small
 *    objects reserve from a per-thread credit (credit.h), so the shared
 *    counter's line does not cross cores with every task result.
 *  - Blocking gets park on a per-stripe waiter list, flagged in the entry's
 *    state word (RT_ST_WAITERS) so that a seal with nobody waiting never
 *    takes a lock. No polling anywhere.
 *  - Small objects (<= RT_INLINE_MAX bytes) live in the entry; larger ones in
 *    malloc'd memory or, from RT_BUFPOOL_MIN, in pooled pre-faulted buffers.
 *  - Freeing cascades (a refs object holds refs) through a per-thread list
 *    rather than recursion, so a long chain of refs objects cannot overflow
 *    the stack.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/prim.h"
#include "core/types.h"
#include "runtime.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static inline rt_stripe *stripe_of(rt_store *st, uint32_t slot) {
  return &st->stripes[slot & (RT_STRIPES - 1)];
}

static void id_hex(const rt_store *st, uint32_t slot, uint32_t gen, char hex[33]) {
  static const char digits[] = "0123456789abcdef";
  uint64_t part[2] = {st->owner, ((uint64_t)gen << 32) | slot};
  for (int p = 0; p < 2; p++)
    for (int i = 0; i < 16; i++) hex[p * 16 + i] = digits[(part[p] >> (60 - 4 * i)) & 15];
  hex[32] = '\0';
}

/* The 32-hex-digit ID of a live entry, for messages. */
#define ENTRY_ID(st, slot, e, buf)                                                                 \
  (id_hex((st), (slot), atomic_load_explicit(&(e)->gen, memory_order_relaxed), (buf)), (buf))

static ray_status bad_handle(const char *fn, const void *h) {
  if (!h) return rt_fail(RAY_EINVAL, "%s: ref is NULL", fn);
  return rt_fail(RAY_EINVAL, "%s: ref %p is released or invalid", fn, h);
}

static inline bool type_ok(const ray_type *t) {
  return t->name != NULL;
}

/* A quota account; stable once created (never moved or freed before the
 * store). The creating thread published it under accounts_lock, and its
 * number reached this thread through that lock or a later happens-before. */
static rt_account *account_of(rt_store *st, uint16_t idx) {
  return st->accounts[idx];
}

/* Sealed or failed: what a get or a waiting task waits for. */
static inline bool state_ready(uint32_t state) {
  uint32_t s = state & RT_ST_MASK;
  return s == RT_ST_SEALED || s == RT_ST_FAILED;
}

/* A worker thread that is about to block tells the scheduler, which keeps
 * the pool at full strength with a spare (no-op on other threads). */
static void block_begin(void) {
  rt_runtime *rt = rt_current();
  if (rt && rt->sched) rt_sched_block_begin(rt->sched);
}
static void block_end(void) {
  rt_runtime *rt = rt_current();
  if (rt && rt->sched) rt_sched_block_end(rt->sched);
}

/* On a worker: runs jobs from its own deque until the entry is ready or
 * there is none left (see rt_sched_help). Returns true if it is ready. */
static bool help_until_ready(rt_entry *e) {
  rt_runtime *rt = rt_current();
  if (!rt || !rt->sched) return false;
  for (;;) {
    /* acquire: as in ray_get, the payload is visible once ready is. */
    if (state_ready(atomic_load_explicit(&e->state, memory_order_acquire))) return true;
    if (!rt_sched_help(rt->sched)) return false;
  }
}

/* ------------------------------------------------------------------------ */
/* Memory accounting                                                        */
/* ------------------------------------------------------------------------ */

size_t rt_store_bytes_in_memory(rt_store *st) {
  size_t held = rt_credits_held(&st->credits);
  size_t all = atomic_load_explicit(&st->bytes_in_memory, memory_order_relaxed);
  return all > held ? all - held : 0; /* a refill in flight can skew it */
}

static ray_status full_error(rt_store *st, const char *fn, size_t size, const char *why) {
  return rt_fail(RAY_ESTOREFULL,
                 "%s: no room for %zu bytes%s: in use %zu, pinned %zu, limit %zu bytes", fn, size,
                 why, rt_store_bytes_in_memory(st),
                 atomic_load_explicit(&st->bytes_pinned, memory_order_relaxed), st->limit);
}

static bool mem_try_reserve(rt_store *st, size_t size) {
  /* seq_cst: pairs with the seq_cst decrement and mem_waiters load in
   * mem_release (a Dekker pattern): either this load sees the freed bytes or
   * the freer sees our mem_waiters increment and wakes us. */
  size_t cur = atomic_load(&st->bytes_in_memory);
  while (size <= st->limit - cur) {
    if (atomic_compare_exchange_weak(&st->bytes_in_memory, &cur, cur + size)) return true;
  }
  return false;
}

/* Gives reserved bytes back to the shared counter and wakes waiting puts. */
static void mem_give_back(rt_store *st, size_t size) {
  if (!size) return;
  atomic_fetch_sub(&st->bytes_in_memory, size); /* seq_cst: see mem_try_reserve */
  if (atomic_load(&st->mem_waiters)) {
    /* Taking the lock orders the broadcast after a waiter's failed try:
     * the waiter holds mem_lock from its try until it sleeps. */
    pthread_mutex_lock(&st->mem_lock);
    pthread_cond_broadcast(&st->mem_cond);
    pthread_mutex_unlock(&st->mem_lock);
  }
}

/* Adds n reserved bytes to this thread's credit, keeping at most
 * RT_CREDIT_MAX, and none while a put waits for room. */
static void credit_add(rt_store *st, rt_credit *c, size_t n) {
  /* seq_cst add, then seq_cst load of mem_waiters: against a waiter's
   * increment and then its reclaim (a Dekker pattern), either the reclaim
   * takes these bytes or we see the waiter and give them back ourselves. */
  size_t now = atomic_fetch_add(&c->bytes, n) + n;
  if (RT_UNLIKELY(atomic_load(&st->mem_waiters))) {
    mem_give_back(st, atomic_exchange(&c->bytes, 0));
    return;
  }
  if (now <= RT_CREDIT_MAX) return;
  /* relaxed: only this thread adds; a reclaimer can only lower it. */
  size_t have = atomic_load_explicit(&c->bytes, memory_order_relaxed);
  while (have > RT_CREDIT_REFILL &&
         !atomic_compare_exchange_weak_explicit(&c->bytes, &have, RT_CREDIT_REFILL,
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
  if (have > RT_CREDIT_REFILL) mem_give_back(st, have - RT_CREDIT_REFILL);
}

/* Takes every thread's credit back to the shared counter. */
static void mem_reclaim(rt_store *st, bool have_mem_lock) {
  size_t n = rt_credits_reclaim(&st->credits);
  if (!n) return;
  if (!have_mem_lock) {
    mem_give_back(st, n);
    return;
  }
  atomic_fetch_sub(&st->bytes_in_memory, n); /* seq_cst: see mem_try_reserve */
  pthread_cond_broadcast(&st->mem_cond);     /* other waiters may fit now */
}

/* Reserves size payload bytes, waiting up to put_timeout_ms. */
static ray_status mem_reserve(rt_store *st, const char *fn, size_t size) {
  if (size > st->limit)
    return rt_fail(RAY_ESTOREFULL,
                   "%s: object of %zu bytes is larger than the whole memory limit of %zu bytes", fn,
                   size, st->limit);
  if (size == 0) return RAY_OK; /* a task's pending return: nothing yet */
  rt_credit *c;
  if (size <= RT_CREDIT_SMALL && (c = rt_credit_mine(&st->credits)) != NULL) {
    /* relaxed: the credit is reserved already; we only must not take more
     * than there is, and a reclaimer's swap to 0 makes the CAS fail. */
    size_t have = atomic_load_explicit(&c->bytes, memory_order_relaxed);
    while (have >= size)
      if (atomic_compare_exchange_weak_explicit(&c->bytes, &have, have - size, memory_order_relaxed,
                                                memory_order_relaxed))
        return RAY_OK;
    if (mem_try_reserve(st, size + RT_CREDIT_REFILL)) {
      credit_add(st, c, RT_CREDIT_REFILL);
      return RAY_OK;
    }
  }
  if (RT_LIKELY(mem_try_reserve(st, size))) return RAY_OK;
  mem_reclaim(st, false); /* credit must not make a put fail that would fit */
  if (mem_try_reserve(st, size)) return RAY_OK;
  if (st->put_timeout_ms == 0) return full_error(st, fn, size, "");

  /* Slow path: give back the pages kept for reuse (they are not payload,
   * but a program at its limit wants the RAM), then park. */
  rt_bufpool_trim(&st->pool);
  uint64_t deadline = rt_prim_deadline(st->put_timeout_ms);
  struct timespec ts;
  if (deadline != UINT64_MAX) {
    ts.tv_sec = (time_t)(deadline / 1000000000ull);
    ts.tv_nsec = (long)(deadline % 1000000000ull);
  }
  bool ok = false;
  block_begin();
  pthread_mutex_lock(&st->mem_lock);
  atomic_fetch_add(&st->mem_waiters, 1); /* seq_cst: see mem_try_reserve, credit_add */
  for (;;) {
    mem_reclaim(st, true);
    if ((ok = mem_try_reserve(st, size))) break;
    if (deadline == UINT64_MAX) {
      pthread_cond_wait(&st->mem_cond, &st->mem_lock);
    } else if (pthread_cond_timedwait(&st->mem_cond, &st->mem_lock, &ts) != 0) {
      ok = mem_try_reserve(st, size);
      break;
    }
  }
  atomic_fetch_sub(&st->mem_waiters, 1);
  pthread_mutex_unlock(&st->mem_lock);
  block_end();
  if (ok) return RAY_OK;
  char why[64];
  snprintf(why, sizeof why, " within %lld ms", (long long)st->put_timeout_ms);
  return full_error(st, fn, size, why);
}

static void mem_release(rt_store *st, size_t size) {
  rt_credit *c;
  if (size && size <= RT_CREDIT_SMALL && (c = rt_credit_mine(&st->credits)) != NULL)
    credit_add(st, c, size);
  else
    mem_give_back(st, size);
}

/* ------------------------------------------------------------------------ */
/* LRU membership                                                           */
/* ------------------------------------------------------------------------ */

/* Under the stripe lock: put the entry on the LRU list exactly when it could
 * be spilled. Every change to views, pins or state calls this afterwards
 * under the lock, so the last call to run sees the final values. */
static void lru_update(rt_store *st, rt_stripe *sp, uint32_t slot, rt_entry *e) {
  bool want =
      (e->flags & RT_EF_SPILLABLE) && e->pins == 0 &&
      (atomic_load_explicit(&e->state, memory_order_relaxed) & RT_ST_MASK) == RT_ST_SEALED &&
      RT_HOLD_VIEWS(atomic_load_explicit(&e->holds, memory_order_relaxed)) == 0;
  bool on = e->locked_flags & RT_LF_ON_LRU;
  if (want && !on)
    rt_lru_push_head(&sp->lru, &st->slots, slot);
  else if (!want && on)
    rt_lru_remove(&sp->lru, &st->slots, slot);
}

static void lru_touch(rt_store *st, uint32_t slot, rt_entry *e) {
  rt_stripe *sp = stripe_of(st, slot);
  pthread_mutex_lock(&sp->lock);
  lru_update(st, sp, slot, e);
  pthread_mutex_unlock(&sp->lock);
}

/* ------------------------------------------------------------------------ */
/* Freeing                                                                  */
/* ------------------------------------------------------------------------ */

/* Entries whose holds reached zero on this thread, waiting to be finalized,
 * linked through lru_next. `active` marks that a finalize loop is running
 * further up this thread's stack. */
static _Thread_local struct {
  uint32_t head;
  bool active;
} t_fin = {RT_NO_SLOT, false};

static void hold_drop(rt_store *st, uint32_t slot, rt_entry *e, uint64_t what);

/* Releases what a finalized entry's payload owns; the kinds exclude each
 * other (flags): an error message, an alias's hold on its target, a refs
 * object's refs (and its array, unless inline), or a buffer. */
static void payload_release(rt_store *st, rt_entry *e, size_t size) {
  uint16_t f = e->flags;
  if (f & (RT_EF_ERROR | RT_EF_HEAP)) {
    free(e->data);
  } else if (f & RT_EF_ALIAS) {
    uint32_t s2;
    rt_entry *e2 = rt_handle_resolve(&st->slots, e->aux.target, &s2);
    if (e2) hold_drop(st, s2, e2, RT_HOLD_REF);
  } else if (f & RT_EF_REFS) {
    ray_ref *const *refs = e->data;
    size_t n = size / sizeof(ray_ref *);
    for (size_t i = 0; i < n; i++) {
      uint32_t s2;
      rt_entry *e2 = rt_handle_resolve(&st->slots, refs[i], &s2);
      if (e2) hold_drop(st, s2, e2, RT_HOLD_REF);
    }
    if (!(f & RT_EF_INLINE)) free(e->data);
  } else if (f & RT_EF_OWNED) {
    if (e->aux.free_fn) e->aux.free_fn(e->data);
  } else if (f & RT_EF_POOL) {
    rt_bufpool_put(&st->pool, e->data, e->aux.cap);
  }
}

static void finalize(rt_store *st, uint32_t slot, rt_entry *e) {
  size_t size = e->size;
  /* An alias's bytes are charged to its target, an error has none. */
  size_t charged = (e->flags & (RT_EF_ALIAS | RT_EF_ERROR)) ? 0 : size;
  if (e->pins) atomic_fetch_sub_explicit(&st->bytes_pinned, size, memory_order_relaxed);
  e->pins = 0;
  if (e->account)
    atomic_fetch_sub_explicit(&account_of(st, e->account)->used, size, memory_order_relaxed);
  e->account = 0;
  payload_release(st, e, size);
  e->data = NULL;
  e->type = NULL;
  e->size = 0;
  e->flags = 0;
  mem_release(st, charged);
  atomic_fetch_sub_explicit(&st->objects, 1, memory_order_relaxed);
  /* The generation changes before the state reads FREE, so a stale handle
   * fails either check. Relaxed: resolving a released handle is a bug we
   * report on a best-effort basis, not a synchronisation. */
  atomic_fetch_add_explicit(&e->gen, 1, memory_order_relaxed);
  atomic_store_explicit(&e->state, RT_ST_FREE, memory_order_relaxed);
  rt_slots_free(&st->slots, slot);
}

/* We dropped the last hold: the entry is ours. Finalizes it, and every
 * entry its finalization frees in turn, on this thread without recursion.
 * For a spillable entry, sp is its stripe, locked by the caller (see
 * hold_drop), which unlocks it here once the entry is off its LRU list:
 * the finalize list reuses the link field. */
static void entry_last_hold(rt_store *st, rt_stripe *sp, uint32_t slot, rt_entry *e) {
  if (sp) {
    if (e->locked_flags & RT_LF_ON_LRU) rt_lru_remove(&sp->lru, &st->slots, slot);
    pthread_mutex_unlock(&sp->lock);
  }
  e->lru_next = t_fin.head;
  t_fin.head = slot;
  if (t_fin.active) return;
  t_fin.active = true;
  while (t_fin.head != RT_NO_SLOT) {
    uint32_t s = t_fin.head;
    rt_entry *f = rt_slots_entry(&st->slots, s);
    t_fin.head = f->lru_next;
    f->lru_next = RT_NO_SLOT;
    finalize(st, s, f);
  }
  t_fin.active = false;
}

/*
 * Drops one ref or view; frees the entry if that was the last hold.
 *
 * After a drop that was not the last, this thread must not touch the entry
 * any more: another thread may drop the last hold at once, free the entry
 * and reuse its lru_next as a finalize-list link. The one follow-up a drop
 * needs, putting a spillable entry back on its LRU list when its last view
 * goes, therefore happens under the stripe lock together with the drop
 * itself, and the last drop of a spillable entry takes that lock before it
 * unlinks the entry: whichever of the two comes first runs whole. (Both
 * take the lock only where the LRU can change: a view drop that leaves
 * other views is one CAS, and entries that are never spilled never lock.)
 */
static void hold_drop(rt_store *st, uint32_t slot, rt_entry *e, uint64_t what) {
  /* A view is only taken of a sealed entry, whose flags are fixed (those of
   * a PENDING one are written when it ends): safe to read while we hold it. */
  if (what == RT_HOLD_VIEW && (e->flags & RT_EF_SPILLABLE)) {
    uint64_t h = atomic_load_explicit(&e->holds, memory_order_relaxed);
    /* release: as below; not the last hold, since another view remains. */
    while (RT_HOLD_VIEWS(h) > 1)
      if (atomic_compare_exchange_weak_explicit(&e->holds, &h, h - what, memory_order_release,
                                                memory_order_relaxed))
        return;
    rt_stripe *sp = stripe_of(st, slot);
    pthread_mutex_lock(&sp->lock);
    /* acq_rel: as below. */
    if (atomic_fetch_sub_explicit(&e->holds, what, memory_order_acq_rel) == what) {
      entry_last_hold(st, sp, slot, e);
      return;
    }
    lru_update(st, sp, slot, e); /* the last view went: spillable again */
    pthread_mutex_unlock(&sp->lock);
    return;
  }
  /* acq_rel: release makes this thread's reads of the payload happen before
   * the free; the thread that reaches zero acquires every other thread's. */
  uint64_t old = atomic_fetch_sub_explicit(&e->holds, what, memory_order_acq_rel);
  if (old != what) return;
  rt_stripe *sp = NULL;
  if (e->flags & RT_EF_SPILLABLE) { /* ours now: every writer's flags are visible */
    /* A view drop that put the entry on its LRU list did so under this
     * lock before its own decrement, which ours acquired: locking now waits
     * for it to finish and then sees its link. */
    sp = stripe_of(st, slot);
    pthread_mutex_lock(&sp->lock);
  }
  entry_last_hold(st, sp, slot, e);
}

/* ------------------------------------------------------------------------ */
/* Creating entries                                                         */
/* ------------------------------------------------------------------------ */

static ray_status check_new(const char *fn, size_t size, const ray_type *type, const void *out) {
  if (!out) return rt_fail(RAY_EINVAL, "%s: out is NULL", fn);
  if (size == 0) return rt_fail(RAY_EINVAL, "%s: size is 0", fn);
  if (!type_ok(type)) return rt_fail(RAY_EINVAL, "%s: type has a NULL name", fn);
  if (type->elem_size && size % type->elem_size)
    return rt_fail(RAY_EINVAL, "%s: %zu bytes is not a whole number of '%s' elements of %zu bytes",
                   fn, size, type->name, type->elem_size);
  return RAY_OK;
}

/* The account objects made by this thread are charged to (actor code). */
static _Thread_local uint16_t t_account;

uint16_t rt_store_set_account(uint16_t account) {
  uint16_t old = t_account;
  t_account = account;
  return old;
}

uint16_t rt_store_account_new(rt_store *st, size_t quota, const char *label) {
  rt_account *a = rt_calloc(1, sizeof *a);
  if (!a) return 0;
  a->quota = quota;
  snprintf(a->label, sizeof a->label, "%s", label);
  uint16_t idx = 0;
  pthread_mutex_lock(&st->accounts_lock);
  if (!st->accounts) st->accounts = rt_calloc(RT_MAX_ACCOUNTS + 1, sizeof *st->accounts);
  if (st->accounts && st->naccounts < RT_MAX_ACCOUNTS) {
    idx = (uint16_t)++st->naccounts;
    st->accounts[idx] = a;
  }
  pthread_mutex_unlock(&st->accounts_lock);
  if (!idx) free(a);
  return idx;
}

static ray_status account_charge(rt_store *st, const char *fn, uint16_t idx, size_t size) {
  rt_account *a = account_of(st, idx);
  size_t cur = atomic_load_explicit(&a->used, memory_order_relaxed);
  do {
    if (size > a->quota || cur > a->quota - size)
      return rt_fail(RAY_ESTOREFULL,
                     "%s: %s is over its memory quota: asked %zu bytes, using %zu of %zu", fn,
                     a->label, size, cur, a->quota);
  } while (!atomic_compare_exchange_weak_explicit(&a->used, &cur, cur + size, memory_order_relaxed,
                                                  memory_order_relaxed));
  return RAY_OK;
}

/* Reserves memory and a slot for a new object with one ref. The entry is not
 * published: its state stays FREE until the caller stores the final state. */
static ray_status entry_new(rt_store *st, const char *fn, size_t size, const ray_type *type,
                            uint32_t *slot_out, rt_entry **e_out) {
  uint16_t account = size ? t_account : 0;
  ray_status s;
  if (account && (s = account_charge(st, fn, account, size)) != RAY_OK) return s;
  if ((s = mem_reserve(st, fn, size)) != RAY_OK) {
    if (account)
      atomic_fetch_sub_explicit(&account_of(st, account)->used, size, memory_order_relaxed);
    return s;
  }
  uint32_t slot = rt_slots_alloc(&st->slots);
  if (slot == RT_NO_SLOT) {
    mem_release(st, size);
    if (account)
      atomic_fetch_sub_explicit(&account_of(st, account)->used, size, memory_order_relaxed);
    return rt_fail(RAY_ENOMEM, "%s: no memory for another object entry", fn);
  }
  rt_entry *e = rt_slots_entry(&st->slots, slot);
  if (!e) __builtin_unreachable(); /* an allocated slot's chunk exists */
  atomic_store_explicit(&e->holds, RT_HOLD_REF, memory_order_relaxed);
  e->pins = 0;
  e->account = account;
  e->flags = 0;
  e->locked_flags = 0;
  e->lru_prev = e->lru_next = RT_NO_SLOT;
  e->size = size;
  e->type = type;
  e->data = NULL;
  *slot_out = slot;
  *e_out = e;
  return RAY_OK;
}

/* Gives back a reserved entry that was never published. */
static void entry_abandon(rt_store *st, uint32_t slot, rt_entry *e) {
  size_t size = e->size;
  if (e->account)
    atomic_fetch_sub_explicit(&account_of(st, e->account)->used, size, memory_order_relaxed);
  e->account = 0;
  e->size = 0;
  e->type = NULL;
  atomic_store_explicit(&e->holds, 0, memory_order_relaxed);
  rt_slots_free(&st->slots, slot);
  mem_release(st, size);
}

/* A buffer of size bytes: inline (in `inl`), heap or pool; sets *flags and,
 * for the pool, *cap. */
static ray_status alloc_buffer(rt_store *st, const char *fn, size_t size, unsigned char *inl,
                               void **data, uint16_t *flags, size_t *cap) {
  if (size <= RT_INLINE_MAX) {
    *data = inl;
    *flags = RT_EF_INLINE;
  } else if (size < RT_BUFPOOL_MIN) {
    *data = rt_malloc(size);
    *flags = RT_EF_HEAP | RT_EF_SPILLABLE;
  } else {
    *data = rt_bufpool_get(&st->pool, size, cap);
    *flags = RT_EF_POOL | RT_EF_SPILLABLE;
  }
  if (!*data) {
    *flags = 0;
    return rt_fail(RAY_ENOMEM, "%s: cannot allocate %zu bytes", fn, size);
  }
  return RAY_OK;
}

/* Gives the entry a buffer of e->size bytes. */
static ray_status entry_alloc_data(rt_store *st, const char *fn, rt_entry *e) {
  return alloc_buffer(st, fn, e->size, e->inl, &e->data, &e->flags, &e->aux.cap);
}

/* Publishes a new entry in `state`; returns its handle. */
static ray_ref *entry_publish(rt_store *st, uint32_t slot, rt_entry *e, uint32_t state) {
  /* release: the payload, type and size written above are visible to any
   * thread that acquires the state (ray_get) or receives the handle. */
  atomic_store_explicit(&e->state, state, memory_order_release);
  if (state == RT_ST_SEALED && (e->flags & RT_EF_SPILLABLE)) lru_touch(st, slot, e);
  atomic_fetch_add_explicit(&st->objects, 1, memory_order_relaxed);
  if (state != RT_ST_PENDING) rt_count_put(&st->counts);
  return rt_handle_make(&st->slots, slot, atomic_load_explicit(&e->gen, memory_order_relaxed));
}

/* The shared start of ray_put and ray_create: checks, then an unpublished
 * entry with a buffer of size bytes. */
static ray_status new_buffered(const char *fn, const void *data, size_t size, const ray_type **type,
                               const void *out, rt_store **st_out, uint32_t *slot, rt_entry **e) {
  rt_store *st = rt_store_for(fn);
  if (!st) return RAY_ESHUTDOWN;
  if (!*type) *type = &ray_type_bytes;
  if (!data) return rt_fail(RAY_EINVAL, "%s: data is NULL", fn);
  ray_status s = check_new(fn, size, *type, out);
  if (s != RAY_OK) return s;
  if ((s = entry_new(st, fn, size, *type, slot, e)) != RAY_OK) return s;
  if ((s = entry_alloc_data(st, fn, *e)) != RAY_OK) {
    entry_abandon(st, *slot, *e);
    return s;
  }
  *st_out = st;
  return RAY_OK;
}

ray_status ray_put(const void *data, size_t size, const ray_type *type, ray_ref **out) {
  rt_store *st;
  uint32_t slot;
  rt_entry *e;
  ray_status s = new_buffered("ray_put", data, size, &type, out, &st, &slot, &e);
  if (s != RAY_OK) return s;
  memcpy(e->data, data, size);
  *out = entry_publish(st, slot, e, RT_ST_SEALED);
  return RAY_OK;
}

ray_status ray_put_owned(void *data, size_t size, const ray_type *type, void (*free_fn)(void *),
                         ray_ref **out) {
  rt_store *st = rt_store_for("ray_put_owned");
  if (!st) return RAY_ESHUTDOWN;
  if (!type) type = &ray_type_bytes;
  if (!data) return rt_fail(RAY_EINVAL, "ray_put_owned: data is NULL");
  ray_status s = check_new("ray_put_owned", size, type, out);
  if (s != RAY_OK) return s;
  uint32_t slot;
  rt_entry *e;
  if ((s = entry_new(st, "ray_put_owned", size, type, &slot, &e)) != RAY_OK) return s;
  e->data = data;
  e->aux.free_fn = free_fn;
  e->flags = RT_EF_OWNED | RT_EF_SPILLABLE;
  *out = entry_publish(st, slot, e, RT_ST_SEALED);
  return RAY_OK;
}

ray_status ray_create(size_t size, const ray_type *type, void **data, ray_ref **out) {
  rt_store *st;
  uint32_t slot;
  rt_entry *e;
  ray_status s = new_buffered("ray_create", data, size, &type, out, &st, &slot, &e);
  if (s != RAY_OK) return s;
  *data = e->data;
  *out = entry_publish(st, slot, e, RT_ST_CREATING);
  return RAY_OK;
}

/* Under the stripe lock: unlinks every waiter for slot and fires the thread
 * waiters; returns the deferred ones, linked, for fire_deferred. */
static rt_waiter *fire_waiters(rt_stripe *sp, uint32_t slot) {
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

/* After an entry became SEALED (old: its state before): fires the waiters
 * it had and puts it on its LRU list if it may be spilled. */
static void sealed_now(rt_store *st, uint32_t slot, rt_entry *e, uint32_t old) {
  if (!(old & RT_ST_WAITERS) && !(e->flags & RT_EF_SPILLABLE)) return;
  rt_stripe *sp = stripe_of(st, slot);
  rt_waiter *deferred = NULL;
  pthread_mutex_lock(&sp->lock);
  if (old & RT_ST_WAITERS) deferred = fire_waiters(sp, slot);
  lru_update(st, sp, slot, e);
  pthread_mutex_unlock(&sp->lock);
  fire_deferred(deferred);
}

ray_status ray_seal(ray_ref *ref) {
  rt_store *st = rt_store_for("ray_seal");
  if (!st) return RAY_ESHUTDOWN;
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return bad_handle("ray_seal", ref);
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

ray_status ray_put_refs(ray_ref *const refs[], size_t n, ray_ref **out) {
  rt_store *st = rt_store_for("ray_put_refs");
  if (!st) return RAY_ESHUTDOWN;
  if (!out) return rt_fail(RAY_EINVAL, "ray_put_refs: out is NULL");
  if (n && !refs) return rt_fail(RAY_EINVAL, "ray_put_refs: refs is NULL with n = %zu", n);
  if (n > SIZE_MAX / sizeof(ray_ref *))
    return rt_fail(RAY_EINVAL, "ray_put_refs: n = %zu is too large", n);
  for (size_t i = 0; i < n; i++) {
    uint32_t s2;
    if (!rt_handle_resolve(&st->slots, refs[i], &s2)) {
      char what[48];
      snprintf(what, sizeof what, "ray_put_refs: refs[%zu]", i);
      return bad_handle(what, refs[i]);
    }
  }
  size_t size = n * sizeof(ray_ref *);
  uint32_t slot;
  rt_entry *e;
  ray_status s = entry_new(st, "ray_put_refs", size, &ray_type_refs, &slot, &e);
  if (s != RAY_OK) return s;
  if (size <= RT_INLINE_MAX) {
    e->data = e->inl;
    e->flags = RT_EF_INLINE | RT_EF_REFS;
  } else if ((e->data = rt_malloc(size)) != NULL) {
    e->flags = RT_EF_REFS;
  } else {
    entry_abandon(st, slot, e);
    return rt_fail(RAY_ENOMEM, "ray_put_refs: cannot allocate %zu bytes", size);
  }
  if (n) memcpy(e->data, refs, size);
  /* Each contained ref holds its object. Relaxed is enough for an increment
   * made by a holder of a reference (it cannot race with the free). */
  for (size_t i = 0; i < n; i++) {
    uint32_t s2;
    rt_entry *e2 = rt_handle_resolve(&st->slots, refs[i], &s2);
    atomic_fetch_add_explicit(&e2->holds, RT_HOLD_REF, memory_order_relaxed);
  }
  *out = entry_publish(st, slot, e, RT_ST_SEALED);
  return RAY_OK;
}

/* ------------------------------------------------------------------------ */
/* Waiting for seals                                                        */
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

/* Under the stripe lock: flags the entry as waited on. Returns true if the
 * entry is not ready yet (the caller should park), false if it is. */
static bool flag_waiting(rt_entry *e) {
  /* acq_rel: acquire pairs with the sealer's release CAS, so if we see the
   * seal we also see the bytes; the flag itself is read by the sealer's CAS
   * and the list behind it is protected by the stripe lock. */
  uint32_t old = atomic_fetch_or_explicit(&e->state, RT_ST_WAITERS, memory_order_acq_rel);
  return !state_ready(old);
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
      /* acquire: as in ray_get, the payload is visible once ready is. */
      if (state_ready(atomic_load_explicit(&e->state, memory_order_acquire))) return true;
      rt_prim_pause();
    }
    if (rt_prim_now_ns() >= until) break;
    /* After a short pure spin (a quick round trip never pays a syscall),
     * let the thread that makes the object run should it share our core:
     * more threads than cores is common (a driver plus a worker per core). */
    if (round >= RT_GET_SPIN_ROUNDS) sched_yield();
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
    rt_runtime *rt = rt_current();
    if (rt && rt->sched && rt_task_recent_own(ref) && rt_task_run_awaited(rt, ref) &&
        state_ready(atomic_load_explicit(&e->state, memory_order_acquire)))
      return RAY_OK;
    if (help_until_ready(e)) return RAY_OK;
  }
  if (spin_until_ready(e, deadline)) return RAY_OK;
  rt_stripe *sp = stripe_of(st, slot);
  thread_waiter w = {{NULL, slot, false, thread_waiter_fire}, 0};
  pthread_mutex_lock(&sp->lock);
  if (!flag_waiting(e)) {
    pthread_mutex_unlock(&sp->lock);
    return RAY_OK;
  }
  w.base.next = sp->waiters;
  sp->waiters = &w.base;
  pthread_mutex_unlock(&sp->lock);

  bool timed_out = false;
  block_begin();
  while (!atomic_load_explicit(&w.fired, memory_order_acquire)) {
    if (!rt_prim_futex_wait(&w.fired, 0, deadline)) {
      timed_out = true;
      break;
    }
  }
  block_end();
  /* Take the stripe lock before the node goes out of scope: fire() runs
   * under it, so once we hold it no one touches the node any more. */
  pthread_mutex_lock(&sp->lock);
  if (timed_out && !atomic_load_explicit(&w.fired, memory_order_relaxed)) {
    for (rt_waiter **pp = &sp->waiters; *pp; pp = &(*pp)->next)
      if (*pp == &w.base) {
        *pp = w.base.next;
        break;
      }
    pthread_mutex_unlock(&sp->lock);
    char id[33];
    return rt_fail(RAY_ETIMEOUT, "ray_get: object %s not ready within %lld ms",
                   ENTRY_ID(st, slot, e, id), (long long)timeout_ms);
  }
  pthread_mutex_unlock(&sp->lock);
  return RAY_OK;
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
  /* Relaxed: the caller holds a ref, so the entry cannot be freed under us;
   * the count only has to be atomic. */
  uint64_t old = atomic_fetch_add_explicit(&e->holds, RT_HOLD_VIEW, memory_order_relaxed);
  if (RT_HOLD_VIEWS(old) == 0 && (e->flags & RT_EF_SPILLABLE)) lru_touch(st, slot, e);
  out->data = e->data;
  out->size = e->size;
  out->type = e->type;
  out->priv_ = priv;
  return RAY_OK;
}

ray_status ray_get(ray_ref *ref, const ray_type *expect, int64_t timeout_ms, ray_view *out) {
  rt_store *st = rt_store_for("ray_get");
  if (!st) return RAY_ESHUTDOWN;
  if (!out) return rt_fail(RAY_EINVAL, "ray_get: out is NULL");
  if (RT_UNLIKELY(timeout_ms < -1))
    return rt_fail(RAY_EINVAL, "ray_get: timeout_ms %lld is below -1 (-1 waits forever)",
                   (long long)timeout_ms);
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return bad_handle("ray_get", ref);
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

/* Drops the view hold of ref's object. */
static void view_drop(rt_store *st, ray_ref *ref, const char *fn) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e || RT_HOLD_VIEWS(atomic_load_explicit(&e->holds, memory_order_relaxed)) == 0) {
    rt_warn("%s: view of ref %p was already released", fn, (void *)ref);
    return;
  }
  hold_drop(st, slot, e, RT_HOLD_VIEW);
}

void ray_view_release(ray_view *view) {
  if (!view || !view->priv_) return;
  rt_runtime *rt = rt_current();
  void *priv = view->priv_;
  view->priv_ = NULL;
  view->data = NULL;
  view->size = 0;
  if (!rt) return; /* the runtime is gone and freed the object with it */
  ray_ref *ref = rt_viewtab_close(&rt->store.views, priv);
  if (RT_UNLIKELY(!ref)) {
    /* A copy of a view released before (or a view of an earlier runtime):
     * the hold it names is gone or belongs to another view. */
    rt_warn("ray_view_release: view %p was already released (through a copy of it?); "
            "ignored",
            priv);
    return;
  }
  view_drop(&rt->store, ref, "ray_view_release");
}

void rt_store_view_drop(rt_store *st, ray_view *view) {
  if (!view->priv_) return;
  view_drop(st, view->priv_, "rt_store_view_drop");
  view->priv_ = NULL;
  view->data = NULL;
  view->size = 0;
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

static bool entry_ready(const rt_entry *e) {
  return state_ready(atomic_load_explicit(&e->state, memory_order_acquire));
}

ray_status ray_wait(ray_ref *const refs[], size_t n, size_t num_ready, int64_t timeout_ms,
                    bool ready[]) {
  rt_store *st = rt_store_for("ray_wait");
  if (!st) return RAY_ESHUTDOWN;
  if (n && (!refs || !ready)) return rt_fail(RAY_EINVAL, "ray_wait: refs or ready is NULL");
  if (num_ready > n)
    return rt_fail(RAY_EINVAL, "ray_wait: num_ready %zu is more than the %zu refs", num_ready, n);
  if (timeout_ms < -1)
    return rt_fail(RAY_EINVAL, "ray_wait: timeout_ms %lld is below -1 (-1 waits forever)",
                   (long long)timeout_ms);
  if (n == 0) return RAY_OK;

  uint32_t *slots = rt_malloc(n * sizeof *slots);
  ray_ref **sorted = rt_malloc(n * sizeof *sorted);
  group_waiter *nodes = NULL;
  ray_status status = RAY_OK;
  if (!slots || !sorted) {
    status = rt_fail(RAY_ENOMEM, "ray_wait: out of memory for %zu refs", n);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (!rt_handle_resolve(&st->slots, refs[i], &slots[i])) {
      char what[48];
      snprintf(what, sizeof what, "ray_wait: refs[%zu]", i);
      status = bad_handle(what, refs[i]);
      goto out;
    }
    sorted[i] = refs[i];
  }
  qsort(sorted, n, sizeof *sorted, cmp_ptr);
  for (size_t i = 1; i < n; i++)
    if (sorted[i] == sorted[i - 1]) {
      status = rt_fail(RAY_EINVAL, "ray_wait: ref %p appears more than once", (void *)sorted[i]);
      goto out;
    }

  size_t nready = 0;
  for (size_t i = 0; i < n; i++) nready += entry_ready(rt_slots_entry_live(&st->slots, slots[i]));
  /* On a worker and untimed, run our own queued jobs first: they are
   * usually what we are waiting for (see help_until_ready); a job run
   * inline could outlast a deadline. */
  rt_runtime *rt = rt_current();
  while (nready < num_ready && timeout_ms < 0 && rt->sched && rt_sched_help(rt->sched)) {
    nready = 0;
    for (size_t i = 0; i < n; i++) nready += entry_ready(rt_slots_entry_live(&st->slots, slots[i]));
  }
  if (nready < num_ready && timeout_ms != 0) {
    nodes = rt_calloc(n, sizeof *nodes);
    if (!nodes) {
      status = rt_fail(RAY_ENOMEM, "ray_wait: out of memory for %zu waiters", n);
      goto out;
    }
    wait_group g = {0};
    uint64_t deadline = rt_prim_deadline(timeout_ms);
    size_t already = 0; /* sealed before we could register */
    for (size_t i = 0; i < n; i++) {
      rt_entry *e = rt_slots_entry_live(&st->slots, slots[i]);
      if (entry_ready(e)) {
        already++;
        continue;
      }
      rt_stripe *sp = stripe_of(st, slots[i]);
      pthread_mutex_lock(&sp->lock);
      if (flag_waiting(e)) {
        nodes[i] = (group_waiter){{sp->waiters, slots[i], false, group_waiter_fire}, &g, true};
        sp->waiters = &nodes[i].base;
      } else {
        already++;
      }
      pthread_mutex_unlock(&sp->lock);
    }
    block_begin();
    for (;;) {
      uint32_t f = atomic_load_explicit(&g.fired, memory_order_acquire);
      if (already + f >= num_ready || !rt_prim_futex_wait(&g.fired, f, deadline)) break;
    }
    block_end();
    /* Unlink what did not fire; holding each stripe lock once also waits
     * out any fire() still touching our nodes. */
    for (size_t i = 0; i < n; i++) {
      if (!nodes[i].registered) continue;
      rt_stripe *sp = stripe_of(st, slots[i]);
      pthread_mutex_lock(&sp->lock);
      for (rt_waiter **pp = &sp->waiters; *pp; pp = &(*pp)->next)
        if (*pp == &nodes[i].base) {
          *pp = nodes[i].base.next;
          break;
        }
      pthread_mutex_unlock(&sp->lock);
    }
  }
  nready = 0;
  for (size_t i = 0; i < n; i++) {
    ready[i] = entry_ready(rt_slots_entry_live(&st->slots, slots[i]));
    nready += ready[i];
  }
  if (nready < num_ready)
    status = rt_fail(RAY_ETIMEOUT, "ray_wait: %zu of %zu refs ready, %zu wanted, after %lld ms",
                     nready, n, num_ready, (long long)timeout_ms);
out:
  free(nodes);
  free(sorted);
  free(slots);
  return status;
}

/* ------------------------------------------------------------------------ */
/* Refs, pins, IDs                                                          */
/* ------------------------------------------------------------------------ */

ray_ref *ray_ref_retain(ray_ref *ref) {
  rt_runtime *rt = rt_current();
  uint32_t slot;
  rt_entry *e = rt ? rt_handle_resolve(&rt->store.slots, ref, &slot) : NULL;
  if (!e) return NULL;
  /* Relaxed: the caller holds a ref, so the count is above zero. */
  atomic_fetch_add_explicit(&e->holds, RT_HOLD_REF, memory_order_relaxed);
  return ref;
}

void ray_ref_release(ray_ref *ref) {
  if (!ref) return;
  rt_runtime *rt = rt_current();
  if (!rt) return; /* everything was freed by ray_shutdown */
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&rt->store.slots, ref, &slot);
  if (!e || RT_HOLD_REFS(atomic_load_explicit(&e->holds, memory_order_relaxed)) == 0) {
    rt_warn("ray_ref_release: ref %p was already released or is invalid", (void *)ref);
    return;
  }
  hold_drop(&rt->store, slot, e, RT_HOLD_REF);
}

static ray_status pin_change(ray_ref *ref, int delta, const char *fn) {
  rt_store *st = rt_store_for(fn);
  if (!st) return RAY_ESHUTDOWN;
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return bad_handle(fn, ref);
  char id[33];
  rt_stripe *sp = stripe_of(st, slot);
  pthread_mutex_lock(&sp->lock);
  if ((atomic_load_explicit(&e->state, memory_order_relaxed) & RT_ST_MASK) != RT_ST_SEALED) {
    pthread_mutex_unlock(&sp->lock);
    return rt_fail(RAY_EINVAL, "%s: object %s is not sealed", fn, ENTRY_ID(st, slot, e, id));
  }
  if (delta < 0 && e->pins == 0) {
    pthread_mutex_unlock(&sp->lock);
    return rt_fail(RAY_EINVAL, "%s: object %s is not pinned", fn, ENTRY_ID(st, slot, e, id));
  }
  if (delta > 0 && e->pins == UINT16_MAX) {
    pthread_mutex_unlock(&sp->lock);
    return rt_fail(RAY_EINVAL, "%s: object %s is pinned too often", fn, ENTRY_ID(st, slot, e, id));
  }
  e->pins = (uint16_t)(e->pins + delta);
  if (e->pins == (delta > 0 ? 1u : 0u)) {
    if (delta > 0)
      atomic_fetch_add_explicit(&st->bytes_pinned, e->size, memory_order_relaxed);
    else
      atomic_fetch_sub_explicit(&st->bytes_pinned, e->size, memory_order_relaxed);
  }
  lru_update(st, sp, slot, e);
  pthread_mutex_unlock(&sp->lock);
  return RAY_OK;
}

ray_status ray_pin(ray_ref *ref) {
  return pin_change(ref, +1, "ray_pin");
}
ray_status ray_unpin(ray_ref *ref) {
  return pin_change(ref, -1, "ray_unpin");
}

void ray_ref_id(const ray_ref *ref, char hex[33]) {
  if (!hex) return;
  rt_runtime *rt = rt_current();
  uint32_t slot;
  rt_entry *e = rt ? rt_handle_resolve(&rt->store.slots, ref, &slot) : NULL;
  if (!e) {
    memset(hex, '0', 32);
    hex[32] = '\0';
    return;
  }
  id_hex(&rt->store, slot, atomic_load_explicit(&e->gen, memory_order_relaxed), hex);
}

/* ------------------------------------------------------------------------ */
/* For the task layer: pending objects, staged payloads, dependencies       */
/* ------------------------------------------------------------------------ */

ray_status rt_store_new_pending(rt_store *st, const char *fn, void *producer, ray_ref **user) {
  uint32_t slot;
  rt_entry *e;
  ray_status s = entry_new(st, fn, 0, NULL, &slot, &e);
  if (s != RAY_OK) return s;
  /* Two refs: the submitter's and the producer's (entry_new set one). */
  atomic_store_explicit(&e->holds, 2 * RT_HOLD_REF, memory_order_relaxed);
  e->aux.producer = producer;
  *user = entry_publish(st, slot, e, RT_ST_PENDING);
  return RAY_OK;
}

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
  pthread_mutex_lock(&sp->lock);
  /* acq_rel, as in flag_waiting; the old state also says which list. */
  uint32_t old = atomic_fetch_or_explicit(&e->state, RT_ST_WAITERS, memory_order_acq_rel);
  if (!state_ready(old)) {
    w->slot = slot;
    w->deferred = true;
    if ((old & RT_ST_MASK) == RT_ST_PENDING) {
      w->next = e->data;
      e->data = w;
    } else {
      w->next = sp->waiters;
      sp->waiters = w;
    }
    registered = true;
  }
  pthread_mutex_unlock(&sp->lock);
  return registered;
}

static ray_status payload_check(const char *fn, const void *data, size_t size,
                                const ray_type *type) {
  if (!data) return rt_fail(RAY_EINVAL, "%s: data is NULL", fn);
  return check_new(fn, size, type, data);
}

ray_status rt_store_payload_copy(rt_store *st, const char *fn, const void *data, size_t size,
                                 const ray_type *type, rt_payload *p) {
  if (!type) type = &ray_type_bytes;
  ray_status s = payload_check(fn, data, size, type);
  if (s != RAY_OK) return s;
  if ((s = mem_reserve(st, fn, size)) != RAY_OK) return s;
  size_t cap = 0;
  if ((s = alloc_buffer(st, fn, size, p->inl, &p->data, &p->flags, &cap)) != RAY_OK) {
    mem_release(st, size);
    return s;
  }
  memcpy(p->data, data, size);
  p->aux.cap = cap;
  p->size = size;
  p->type = type;
  return RAY_OK;
}

ray_status rt_store_payload_adopt(rt_store *st, const char *fn, void *data, size_t size,
                                  const ray_type *type, void (*free_fn)(void *), rt_payload *p) {
  if (!type) type = &ray_type_bytes;
  ray_status s = payload_check(fn, data, size, type);
  if (s != RAY_OK) return s;
  if ((s = mem_reserve(st, fn, size)) != RAY_OK) return s;
  p->data = data;
  p->size = size;
  p->type = type;
  p->flags = RT_EF_OWNED | RT_EF_SPILLABLE;
  p->aux.free_fn = free_fn;
  return RAY_OK;
}

ray_status rt_store_payload_alias(rt_store *st, const char *fn, ray_ref *target, rt_payload *p) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, target, &slot);
  if (!e) return bad_handle(fn, target);
  if ((atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK) != RT_ST_SEALED) {
    char id[33];
    return rt_fail(RAY_EINVAL, "%s: object %s is not sealed", fn, ENTRY_ID(st, slot, e, id));
  }
  /* Relaxed: the caller holds a ref on the target (see ray_ref_retain). */
  atomic_fetch_add_explicit(&e->holds, RT_HOLD_REF, memory_order_relaxed);
  p->data = e->data;
  p->size = e->size;
  p->type = e->type;
  p->flags = RT_EF_ALIAS;
  p->aux.target = target;
  return RAY_OK;
}

void rt_store_payload_discard(rt_store *st, rt_payload *p) {
  if (!p->data) return;
  if (p->flags & RT_EF_ALIAS) {
    ray_ref_release(p->aux.target);
  } else {
    if (p->flags & RT_EF_HEAP)
      free(p->data);
    else if (p->flags & RT_EF_POOL)
      rt_bufpool_put(&st->pool, p->data, p->aux.cap);
    else if ((p->flags & RT_EF_OWNED) && p->aux.free_fn)
      p->aux.free_fn(p->data);
    mem_release(st, p->size);
  }
  p->data = NULL;
}

/* Under the stripe lock, on a claimed PENDING entry: unlinks its
 * dependency waiters (see rt_store_add_waiter), oldest first as the
 * stripe's list fires them. Before the outcome is written into `data`. */
static rt_waiter *take_deps(rt_entry *e) {
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
static bool claim_pending(rt_entry *e) {
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
  if (p->flags & RT_EF_ALIAS)
    e->aux.target = p->aux.target;
  else if (p->flags & RT_EF_OWNED)
    e->aux.free_fn = p->aux.free_fn;
  else
    e->aux.cap = p->aux.cap;
  p->data = NULL; /* moved */
}

bool rt_store_seal_pending(rt_store *st, ray_ref *ref, rt_payload *p) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) {
    rt_store_payload_discard(st, p);
    return false;
  }
  /* Fast path, no lock: nobody waits and no canceller holds the entry.
   * relaxed: the CAS only claims the entry; the payload is published by
   * the release exchange below. */
  uint32_t expect = RT_ST_PENDING;
  if (atomic_compare_exchange_strong_explicit(&e->state, &expect, RT_ST_ENDING,
                                              memory_order_relaxed, memory_order_relaxed)) {
    entry_take_payload(e, p);
    /* acq_rel: release publishes the payload to whoever acquires the state;
     * acquire pairs with a waiter's flag, whose list we then lock. */
    sealed_now(st, slot, e,
               atomic_exchange_explicit(&e->state, RT_ST_SEALED, memory_order_acq_rel));
    return true;
  }
  rt_stripe *sp = stripe_of(st, slot);
  pthread_mutex_lock(&sp->lock);
  if (!claim_pending(e)) {
    pthread_mutex_unlock(&sp->lock);
    rt_store_payload_discard(st, p);
    return false;
  }
  rt_waiter *deps = take_deps(e);
  entry_take_payload(e, p);
  rt_waiter *deferred = end_pending(st, sp, slot, e, RT_ST_SEALED, deps);
  pthread_mutex_unlock(&sp->lock);
  fire_deferred(deferred);
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
  pthread_mutex_lock(&sp->lock);
  if (!claim_pending(e)) {
    pthread_mutex_unlock(&sp->lock);
    free(err);
    return false;
  }
  rt_waiter *deps = take_deps(e);
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
  pthread_mutex_unlock(&sp->lock);
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
  pthread_mutex_lock(&sp->lock);
  if (claim_pending(e) && e->aux.producer) {
    pending = true;
    fn(e->aux.producer, arg);
  }
  pthread_mutex_unlock(&sp->lock);
  return pending;
}

uint32_t rt_store_state(rt_store *st, ray_ref *ref) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  return e ? atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK : RT_ST_FREE;
}

const rt_error *rt_store_error(rt_store *st, ray_ref *ref) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e || (atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK) != RT_ST_FAILED)
    return NULL;
  return e->data;
}

ray_status rt_store_view(rt_store *st, ray_ref *ref, const ray_type *expect, const char *what,
                         ray_view *out) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return bad_handle(what, ref);
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
/* Store life                                                               */
/* ------------------------------------------------------------------------ */

ray_status rt_store_init(rt_store *st, const rt_config *cfg, uint64_t epoch) {
  memset(st, 0, sizeof *st);
  uint32_t rnd[3];
  rt_prim_random(rnd, sizeof rnd);
  st->owner = ((uint64_t)rnd[0] << 32) | (rnd[1] ^ rt_prim_pid());
  st->limit = cfg->memory_limit;
  st->put_timeout_ms = cfg->put_timeout_ms;
  if (rt_slots_init(&st->slots, epoch, rnd[2]) != 0)
    return rt_fail(RAY_ENOMEM, "ray_init: cannot allocate the object table");
  if (rt_viewtab_init(&st->views, epoch, rnd[2] ^ rnd[0]) != 0) {
    rt_slots_destroy(&st->slots);
    return rt_fail(RAY_ENOMEM, "ray_init: cannot allocate the view table");
  }
  size_t budget = st->limit / 4 < ((size_t)1 << 30) ? st->limit / 4 : ((size_t)1 << 30);
  rt_bufpool_init(&st->pool, budget);
  for (int i = 0; i < RT_STRIPES; i++) {
    pthread_mutex_init(&st->stripes[i].lock, NULL);
    rt_lru_init(&st->stripes[i].lru);
  }
  pthread_mutex_init(&st->mem_lock, NULL);
  pthread_mutex_init(&st->accounts_lock, NULL);
  rt_credits_init(&st->credits, epoch);
  rt_counts_init(&st->counts, epoch);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines are monotonic */
  pthread_cond_init(&st->mem_cond, &ca);
  pthread_condattr_destroy(&ca);
  return RAY_OK;
}

void rt_store_destroy(rt_store *st) {
  uint64_t live = 0, refs = 0, views = 0;
  uint32_t nchunks = st->slots.tab.nchunks;
  for (uint32_t c = 0; c < nchunks; c++) {
    rt_entry *chunk = atomic_load_explicit(&st->slots.tab.chunks[c], memory_order_relaxed);
    for (uint32_t i = 0; i < RT_CHUNK_SLOTS; i++) {
      rt_entry *e = &chunk[i];
      if ((atomic_load_explicit(&e->state, memory_order_relaxed) & RT_ST_MASK) == RT_ST_FREE)
        continue;
      uint64_t h = atomic_load_explicit(&e->holds, memory_order_relaxed);
      live++;
      refs += RT_HOLD_REFS(h);
      views += RT_HOLD_VIEWS(h);
      /* Release the payload only: contained refs of a refs object belong to
       * entries that this same sweep frees. */
      bool own_heap = (e->flags & (RT_EF_ERROR | RT_EF_HEAP)) ||
                      (e->flags & (RT_EF_REFS | RT_EF_INLINE)) == RT_EF_REFS;
      if (own_heap) {
        free(e->data);
      } else if (e->flags & RT_EF_OWNED) {
        if (e->aux.free_fn) e->aux.free_fn(e->data);
      } else if (e->flags & RT_EF_POOL) {
        rt_prim_unmap(e->data, e->aux.cap);
      }
    }
  }
  if (live)
    rt_warn("ray_shutdown: %llu objects were still alive: %llu refs and %llu views never "
            "released; they are freed now",
            (unsigned long long)live, (unsigned long long)refs, (unsigned long long)views);
  rt_bufpool_destroy(&st->pool);
  for (int i = 0; i < RT_STRIPES; i++) pthread_mutex_destroy(&st->stripes[i].lock);
  pthread_mutex_destroy(&st->mem_lock);
  rt_credits_destroy(&st->credits);
  rt_counts_destroy(&st->counts);
  for (uint32_t i = 1; st->accounts && i <= st->naccounts; i++) free(st->accounts[i]);
  free(st->accounts);
  pthread_mutex_destroy(&st->accounts_lock);
  pthread_cond_destroy(&st->mem_cond);
  rt_viewtab_destroy(&st->views);
  rt_slots_destroy(&st->slots);
}
