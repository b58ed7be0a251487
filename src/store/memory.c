/*
 * memory.c - the memory limit: reservation, per-thread credit, quotas.
 *
 * Algorithm and trade-offs:
 *  - bytes_in_memory is reserved with a CAS before anything is allocated,
 *    so the limit is never exceeded, not even transiently, and a put that
 *    fails leaves nothing behind. A put that does not fit parks on mem_cond
 *    until a free makes room or put_timeout_ms passes.
 *  - Small objects reserve from a per-thread credit (credit.h), so the
 *    shared counter's line does not cross cores with every task result. The
 *    credit fast paths are inline in store_int.h (mem_reserve, mem_release,
 *    credit_add); what is here is their slow side.
 *  - Memory-quota accounts (actors with a memory_quota) are charged with a
 *    CAS on their own counter, before the store-wide reservation.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/prim.h"
#include "store/store_int.h"

size_t rt_store_bytes_in_memory(rt_store *st) {
  size_t held = rt_credits_held(&st->credits);
  /* relaxed: a report, exact only when no call is in flight. */
  size_t all = atomic_load_explicit(&st->bytes_in_memory, memory_order_relaxed);
  return all > held ? all - held : 0; /* a refill in flight can skew it */
}

/* RAY_ESTOREFULL naming what holds the memory: what is in use, what of it
 * cannot be spilled (pinned, viewed), what is on disk already, and why
 * spilling stopped if it failed (spill_error, "" if not). */
static ray_status full_error(rt_store *st, const char *fn, size_t size, const char *why,
                             const char *spill_error) {
  /* relaxed: counters for a message (rt_store) */
  return rt_fail(RAY_ESTOREFULL,
                 "%s: no room for %zu bytes%s: in use %zu, pinned %zu, viewed %zu, spilled %llu, "
                 "limit %zu bytes%s%s",
                 fn, size, why, rt_store_bytes_in_memory(st),
                 atomic_load_explicit(&st->bytes_pinned, memory_order_relaxed),
                 atomic_load_explicit(&st->bytes_viewed, memory_order_relaxed),
                 (unsigned long long)rt_spill_bytes(&st->disk), st->limit,
                 spill_error[0] ? "; spilling failed: " : "", spill_error);
}

static bool mem_try_reserve(rt_store *st, size_t size) {
  /* seq_cst: pairs with the seq_cst decrement and mem_waiters load in
   * rt_store_give_back (a Dekker pattern): either this load sees the freed
   * bytes or the freer sees our mem_waiters increment and wakes us. */
  size_t cur = atomic_load(&st->bytes_in_memory);
  while (size <= st->limit - cur) {
    if (atomic_compare_exchange_weak(&st->bytes_in_memory, &cur, cur + size)) return true;
  }
  return false;
}

void rt_store_give_back(rt_store *st, size_t size) {
  atomic_fetch_sub(&st->bytes_in_memory, size); /* seq_cst: see mem_try_reserve */
  if (atomic_load(&st->mem_waiters)) {
    /* Taking the lock orders the broadcast after a waiter's failed try:
     * the waiter holds mem_lock from its try until it sleeps. */
    pthread_mutex_lock(&st->mem_lock);
    pthread_cond_broadcast(&st->mem_cond);
    pthread_mutex_unlock(&st->mem_lock);
  }
}

void rt_store_credit_trim(rt_store *st, rt_credit *c) {
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

void rt_store_spillable_now(rt_store *st) {
  pthread_mutex_lock(&st->mem_lock);
  st->mem_spillable++;
  pthread_cond_broadcast(&st->mem_cond);
  pthread_mutex_unlock(&st->mem_lock);
}

/*
 * Parks until size bytes fit or put_timeout_ms passes (deadline). Nothing
 * could be spilled when it began; whatever becomes spillable while it waits
 * (a view released, an unpin, a seal) is spilled for it: counted in
 * mem_waiters first, each turn asks the spiller once more, unlocked, and
 * sleeps only if nothing came free and no object became spillable since it
 * looked (mem_spillable, bumped under mem_lock: lru_update's seq_cst load
 * of mem_waiters is the other half).
 */
static bool mem_wait(rt_store *st, size_t size, uint64_t deadline, char *spill_error,
                     size_t errlen) {
  bool ok = false;
  st->ops.block_begin(st->ops.arg);
  pthread_mutex_lock(&st->mem_lock);
  atomic_fetch_add(&st->mem_waiters, 1); /* seq_cst: see mem_try_reserve, credit_add */
  for (;;) {
    mem_reclaim(st, true);
    if ((ok = mem_try_reserve(st, size))) break;
    if (rt_prim_now_ns() >= deadline) break;
    uint64_t seen = st->mem_spillable;
    pthread_mutex_unlock(&st->mem_lock);
    bool freed = rt_spill_room(st, size, spill_error, errlen);
    pthread_mutex_lock(&st->mem_lock);
    if (freed || st->mem_spillable != seen) continue;
    /* Try again under the lock before sleeping: a free that came while we
     * were unlocked above broadcast to no one. From this try until the
     * wait we hold mem_lock, which a freer takes to broadcast, so no
     * wake-up is lost (see rt_store_give_back). */
    mem_reclaim(st, true);
    if ((ok = mem_try_reserve(st, size))) break;
    if (!rt_prim_cond_wait_until(&st->mem_cond, &st->mem_lock, deadline)) {
      mem_reclaim(st, true);
      ok = mem_try_reserve(st, size);
      break;
    }
  }
  atomic_fetch_sub(&st->mem_waiters, 1); /* seq_cst: as the increment */
  pthread_mutex_unlock(&st->mem_lock);
  st->ops.block_end(st->ops.arg);
  return ok;
}

ray_status rt_store_reserve_slow(rt_store *st, const char *fn, size_t size, rt_credit *c) {
  if (size > st->limit)
    return rt_fail(RAY_ESTOREFULL,
                   "%s: object of %zu bytes is larger than the whole memory limit of %zu bytes", fn,
                   size, st->limit);
  if (size == 0) return RAY_OK; /* a task's pending return: nothing yet */
  if (c && mem_try_reserve(st, size + RT_CREDIT_REFILL)) { /* refill the credit */
    credit_add(st, c, RT_CREDIT_REFILL);
    return RAY_OK;
  }
  if (RT_LIKELY(mem_try_reserve(st, size))) return RAY_OK;
  mem_reclaim(st, false); /* credit must not make a put fail that would fit */
  if (mem_try_reserve(st, size)) return RAY_OK;
  /*
   * The store is full: spill least recently used objects (spill.c) until
   * this fits, whatever put_timeout_ms says; each round that gives memory
   * back earns another try. Only when nothing more can go does the put wait
   * for frees, up to put_timeout_ms.
   */
  char spill_error[256];
  while (rt_spill_room(st, size, spill_error, sizeof spill_error)) {
    mem_reclaim(st, false); /* what the spiller freed may sit in its credit */
    if (mem_try_reserve(st, size)) return RAY_OK;
  }
  if (st->put_timeout_ms == 0) return full_error(st, fn, size, "", spill_error);

  /* Slow path: give back the pages kept for reuse (they are not payload,
   * but a program at its limit wants the RAM), then park. */
  rt_bufpool_trim(&st->pool);
  if (mem_wait(st, size, rt_prim_deadline(st->put_timeout_ms), spill_error, sizeof spill_error))
    return RAY_OK;
  char why[64];
  snprintf(why, sizeof why, " within %lld ms", (long long)st->put_timeout_ms);
  return full_error(st, fn, size, why, spill_error);
}

/* ------------------------------------------------------------------------ */
/* Quota accounts                                                           */
/* ------------------------------------------------------------------------ */

_Thread_local uint16_t rt_t_account;

uint16_t rt_store_set_account(uint16_t account) {
  uint16_t old = rt_t_account;
  rt_t_account = account;
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

ray_status rt_store_account_charge(rt_store *st, const char *fn, uint16_t idx, size_t size) {
  rt_account *a = account_of(st, idx);
  /* relaxed: a budget counter (rt_account.used); the CAS keeps it exact. */
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
