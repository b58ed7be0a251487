/*
 * store_int.h - what the store's own sources share; nothing outside
 * src/store includes it.
 *
 * The library is built without link-time optimisation, so what a put, a
 * get or a release used to inline from one store.c is here as static
 * inline functions rather than behind a call into another file: taking
 * memory from the thread's credit and giving it back (their slow paths are
 * in memory.c), quota uncharge, the stripe lock, and LRU membership.
 */
#ifndef RT_STORE_INT_H
#define RT_STORE_INT_H

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/prim.h"
#include "store/store.h"

/* ------------------------------------------------------------------------ */
/* Stripes                                                                  */
/* ------------------------------------------------------------------------ */

static inline rt_stripe *stripe_of(rt_store *st, uint32_t slot) {
  return &st->stripes[slot & (RT_STRIPES - 1)];
}

/*
 * A function that must run under a stripe's lock asserts it with
 * RT_ASSERT_STRIPE_HELD(sp) (SQLite's assert(sqlite3_mutex_held()) habit).
 * Debug builds record the holder's tag (the address of a thread-local, so
 * unique among live threads) in the stripe while it is locked through
 * stripe_lock; Release builds (NDEBUG) record and check nothing.
 */
#ifndef NDEBUG
extern _Thread_local char rt_t_stripe_tag;
#define RT_STRIPE_TAG ((uintptr_t)&rt_t_stripe_tag)
#define RT_ASSERT_STRIPE_HELD(sp)                                                                  \
  assert(atomic_load_explicit(&(sp)->holder, memory_order_relaxed) == RT_STRIPE_TAG)
#else
#define RT_ASSERT_STRIPE_HELD(sp) ((void)(sp))
#endif

static inline void stripe_lock(rt_stripe *sp) {
  pthread_mutex_lock(&sp->lock);
#ifndef NDEBUG
  /* relaxed: see rt_stripe.holder */
  atomic_store_explicit(&sp->holder, RT_STRIPE_TAG, memory_order_relaxed);
#endif
}

static inline void stripe_unlock(rt_stripe *sp) {
#ifndef NDEBUG
  RT_ASSERT_STRIPE_HELD(sp);
  atomic_store_explicit(&sp->holder, 0, memory_order_relaxed); /* before the unlock */
#endif
  pthread_mutex_unlock(&sp->lock);
}

/* ------------------------------------------------------------------------ */
/* States, IDs, messages                                                    */
/* ------------------------------------------------------------------------ */

/* Sealed or failed: what a get or a waiting task waits for. */
static inline bool state_ready(uint32_t state) {
  uint32_t s = state & RT_ST_MASK;
  return s == RT_ST_SEALED || s == RT_ST_FAILED;
}

static inline bool entry_ready(const rt_entry *e) {
  /* acquire: as in ray_get, the payload is visible once ready is. */
  return state_ready(atomic_load_explicit(&e->state, memory_order_acquire));
}

/* The 32 hex digits of an object ID: owner, then gen << 32 | slot. */
void rt_store_id_hex(const rt_store *st, uint32_t slot, uint32_t gen, char hex[33]);

/* The ID of a live entry, for messages. */
#define ENTRY_ID(st, slot, e, buf)                                                                 \
  (rt_store_id_hex((st), (slot), atomic_load_explicit(&(e)->gen, memory_order_relaxed), (buf)),    \
   (buf))

/* RAY_EINVAL for a handle that does not resolve: "fn: ref is NULL" or
 * "fn: ref 0x... is released or invalid". */
ray_status rt_store_bad_handle(const char *fn, const void *h);

/* ------------------------------------------------------------------------ */
/* Memory: reservation, credit, quotas (slow paths in memory.c)             */
/* ------------------------------------------------------------------------ */

/* The rest of mem_reserve once the thread's credit could not serve it; c is
 * the thread's credit if the size may use credit, else NULL. */
ray_status rt_store_reserve_slow(rt_store *st, const char *fn, size_t size, rt_credit *c);
/* Gives size (> 0) reserved bytes back to the shared counter and wakes
 * waiting puts. */
void rt_store_give_back(rt_store *st, size_t size);
/* Gives a credit above RT_CREDIT_MAX back down to RT_CREDIT_REFILL. */
void rt_store_credit_trim(rt_store *st, rt_credit *c);

/* The account objects made by this thread are charged to (actor code). */
extern _Thread_local uint16_t rt_t_account;

/* Charges size bytes to quota account idx (not 0); RAY_ESTOREFULL if the
 * account's quota would be exceeded. */
ray_status rt_store_account_charge(rt_store *st, const char *fn, uint16_t idx, size_t size);

/* A quota account; stable once created (never moved or freed before the
 * store). The creating thread published it under accounts_lock, and its
 * number reached this thread through that lock or a later happens-before. */
static inline rt_account *account_of(rt_store *st, uint16_t idx) {
  return st->accounts[idx];
}

/* Gives back what rt_store_account_charge charged; idx 0 (none) does
 * nothing. */
static inline void account_uncharge(rt_store *st, uint16_t idx, size_t size) {
  /* relaxed: a budget counter, as in rt_account.used */
  if (idx) atomic_fetch_sub_explicit(&account_of(st, idx)->used, size, memory_order_relaxed);
}

static inline void mem_give_back(rt_store *st, size_t size) {
  if (size) rt_store_give_back(st, size);
}

/* Adds n reserved bytes to this thread's credit, keeping at most
 * RT_CREDIT_MAX, and none while a put waits for room. */
static inline void credit_add(rt_store *st, rt_credit *c, size_t n) {
  /* seq_cst add, then seq_cst load of mem_waiters: against a waiter's
   * increment and then its reclaim (a Dekker pattern), either the reclaim
   * takes these bytes or we see the waiter and give them back ourselves. */
  size_t now = atomic_fetch_add(&c->bytes, n) + n;
  if (RT_UNLIKELY(atomic_load(&st->mem_waiters))) {
    mem_give_back(st, atomic_exchange(&c->bytes, 0)); /* seq_cst: as the add */
    return;
  }
  if (RT_UNLIKELY(now > RT_CREDIT_MAX)) rt_store_credit_trim(st, c);
}

/*
 * Reserves size payload bytes, waiting up to put_timeout_ms: RAY_OK, or
 * RAY_ESTOREFULL recorded for fn. The limit holds at every instant: bytes
 * are reserved before anything is allocated. Small sizes come from this
 * thread's credit when it has enough (credit.h); the rest is memory.c.
 */
static inline ray_status mem_reserve(rt_store *st, const char *fn, size_t size) {
  rt_credit *c = NULL;
  /* size - 1: a size of 0 (a task's pending return) wraps and skips this. */
  if (size - 1 < RT_CREDIT_SMALL && size <= st->limit &&
      (c = rt_credit_mine(&st->credits)) != NULL) {
    /* relaxed: the credit is reserved already; we only must not take more
     * than there is, and a reclaimer's swap to 0 makes the CAS fail. */
    size_t have = atomic_load_explicit(&c->bytes, memory_order_relaxed);
    while (have >= size)
      if (atomic_compare_exchange_weak_explicit(&c->bytes, &have, have - size, memory_order_relaxed,
                                                memory_order_relaxed))
        return RAY_OK;
  }
  return rt_store_reserve_slow(st, fn, size, c);
}

/* Gives back bytes from mem_reserve: small ones to this thread's credit. */
static inline void mem_release(rt_store *st, size_t size) {
  rt_credit *c;
  if (size - 1 < RT_CREDIT_SMALL && (c = rt_credit_mine(&st->credits)) != NULL)
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
/* True on the spiller thread (spill.c). */
extern _Thread_local bool rt_t_spiller;

/* Something became spillable while puts wait for memory: wakes them to ask
 * the spiller again (memory.c). */
void rt_store_spillable_now(rt_store *st);

/* When a spillable entry last went on its LRU list (monotonic ns): the
 * spiller compares the stripes' tails by it to take the globally least
 * recently used first. Kept in `inl` after the spill location (entry.h);
 * under the stripe lock. */
static inline void entry_set_last_use(rt_entry *e, uint64_t ns) {
  memcpy(e->inl + RT_ENTRY_LAST_USE_AT, &ns, sizeof ns);
}
static inline uint64_t entry_last_use(const rt_entry *e) {
  uint64_t ns;
  memcpy(&ns, e->inl + RT_ENTRY_LAST_USE_AT, sizeof ns);
  return ns;
}

static inline void lru_update(rt_store *st, rt_stripe *sp, uint32_t slot, rt_entry *e) {
  RT_ASSERT_STRIPE_HELD(sp);
  /* relaxed: every change of state or views that can change the answer is
   * followed by a call under this lock, which sees it. */
  bool want =
      (e->flags & RT_EF_SPILLABLE) && e->pins == 0 &&
      !(e->locked_flags & (RT_LF_SPILLING | RT_LF_OUT | RT_LF_RESTORING)) &&
      (atomic_load_explicit(&e->state, memory_order_relaxed) & RT_ST_MASK) == RT_ST_SEALED &&
      RT_HOLD_VIEWS(atomic_load_explicit(&e->holds, memory_order_relaxed)) == 0;
  bool on = e->locked_flags & RT_LF_ON_LRU;
  if (want && !on) {
    entry_set_last_use(e, rt_prim_now_ns());
    rt_lru_push_head(&sp->lru, &st->slots, slot);
    /* seq_cst: against a waiting put's increment of mem_waiters and its
     * spill round (memory.c, mem_wait): either the round saw this entry
     * on the list or we see the waiter and wake it to ask again. */
    /* (Not for what the spiller itself puts back: a batch it could not
     * write. Asking it again at once would only fail again.) */
    if (RT_UNLIKELY(atomic_load(&st->mem_waiters)) && !rt_t_spiller) rt_store_spillable_now(st);
  } else if (!want && on)
    rt_lru_remove(&sp->lru, &st->slots, slot);
}

static inline void lru_touch(rt_store *st, uint32_t slot, rt_entry *e) {
  rt_stripe *sp = stripe_of(st, slot);
  stripe_lock(sp);
  lru_update(st, sp, slot, e);
  stripe_unlock(sp);
}

/* ------------------------------------------------------------------------ */
/* Spilling (spill.c)                                                       */
/* ------------------------------------------------------------------------ */

/* Opens the spill directory and starts the spiller thread (ray_init). */
ray_status rt_spill_start(rt_store *st, const rt_config *cfg);
/* Stops the spiller thread; before anything it may touch is freed. */
void rt_spill_stop(rt_store *st);
/* Asks the spiller for size bytes of room and waits for its round. True if
 * the round gave any memory back (the caller then tries again); false if
 * nothing more could go, with why (if not NULL) set to the I/O error that
 * stopped it, or "". */
bool rt_spill_room(rt_store *st, size_t size, char *why, size_t whylen);
/* Under sp's lock: makes sure a spillable entry's bytes are in memory,
 * restoring them (the lock is dropped and retaken meanwhile) or waiting for
 * the thread that is. RAY_ELOST when its spill file cannot give them back,
 * RAY_ESTOREFULL when there is no room. */
ray_status rt_store_bring_in(rt_store *st, rt_stripe *sp, uint32_t slot, rt_entry *e,
                             const char *fn);
/* Frees an object's bytes in memory: a map of its spill record (mapped,
 * rt_spill_unmap), else its buffer by its flags (rt_store_buffer_free). */
void rt_store_free_in_memory(rt_store *st, uint16_t flags, size_t size, void *data, rt_aux aux,
                             bool mapped);
/* A finalized entry's disk copy, if any, is released (rt_spill_forget). */
void rt_spill_forget_entry(rt_store *st, rt_entry *e);

/* ------------------------------------------------------------------------ */
/* Reports (report.c)                                                       */
/* ------------------------------------------------------------------------ */

/* ray_memory_report of st to out, without its argument checks (the
 * reporter thread and shutdown call it too). */
ray_status rt_store_report(rt_store *st, FILE *out, unsigned flags);

/* Reads RAY_MEMORY_REPORT and RAY_MEMORY_SIGNAL (ray_init): RAY_EINVAL for
 * a malformed value; with a signal, installs its handler and starts the
 * reporter thread (RAY_EIO if it cannot: no pipe, no thread; RAY_EINVAL
 * if the signal cannot be handled). */
ray_status rt_report_start(rt_store *st);
/* Restores the signal's previous handler and joins the reporter thread
 * (rt_store_destroy, first). Idempotent. */
void rt_report_stop(rt_store *st);
/* The RAY_MEMORY_REPORT report, if asked for, on stderr (shutdown, before
 * anything is freed). */
void rt_report_at_shutdown(rt_store *st);

/* The biggest creators of what is alive at shutdown, for the leak warning:
 * up to RT_LEAK_TOP groups, most bytes first. */
#define RT_LEAK_TOP 5
typedef struct rt_leak {
  const char *label; /* rt_creator_label's: lives as long as the process */
  uint64_t objects, bytes;
} rt_leak;
typedef struct rt_leaks {
  size_t n;    /* groups in top */
  size_t more; /* groups left out */
  bool nomem;  /* no memory to group them */
  rt_leak top[RT_LEAK_TOP];
} rt_leaks;
void rt_report_leaks(rt_store *st, rt_leaks *out);
/* One warning line per group of l, after the leak warning itself. */
void rt_report_leaks_warn(const rt_leaks *l);

/* ------------------------------------------------------------------------ */
/* Entries (entries.c)                                                      */
/* ------------------------------------------------------------------------ */

/* A buffer of size bytes: inline (in `inl`), heap or pool by size; sets
 * *flags and, for the pool, *cap. */
ray_status rt_store_alloc_buffer(rt_store *st, const char *fn, size_t size, unsigned char *inl,
                                 void **data, uint16_t *flags, size_t *cap);
/* The kind of buffer an object of size bytes gets when it is not inline:
 * malloc'd below RT_BUFPOOL_MIN, else from the buffer pool. Either may
 * spill. */
static inline uint16_t rt_store_apart_kind(size_t size) {
  return size < RT_BUFPOOL_MIN ? RT_EF_HEAP | RT_EF_SPILLABLE : RT_EF_POOL | RT_EF_SPILLABLE;
}

/* A buffer of size bytes that is never inline (rt_store_apart_kind): what
 * rt_store_alloc_buffer gives bigger objects, and what copies of other
 * ranks' objects get whatever their size, as their `inl` holds their remote
 * location (entry.h). */
ray_status rt_store_alloc_apart(rt_store *st, const char *fn, size_t size, void **data,
                                uint16_t *flags, size_t *cap);
/* Drops one ref held by the store itself (the spiller's on a victim). */
void rt_store_drop_ref(rt_store *st, uint32_t slot, rt_entry *e);

/* Frees a buffer the store owns by how it was allocated (flags): malloc'd
 * (HEAP, ERROR, an out-of-line REFS array) with free, POOL back to the pool
 * (aux.cap), OWNED through aux.free_fn. Inline bytes and an alias's borrowed
 * bytes own nothing. Drops no refs: the caller does that for REFS and ALIAS
 * payloads first, if it must. */
void rt_store_buffer_free(rt_store *st, uint16_t flags, void *data, rt_aux aux);

#endif
