/*
 * tally.c - per-thread task counts and the shutdown drain. See tally.h.
 */
#include "task/tally.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/prim.h"

static _Thread_local rt_perthread_slot t_tally;

int rt_tallies_init(rt_tallies *ts, uint64_t epoch) {
  memset(ts, 0, sizeof *ts);
  ts->shared.shared = true;
  return rt_perthread_init(&ts->list, epoch);
}

void rt_tallies_destroy(rt_tallies *ts) {
  rt_perthread_destroy(&ts->list);
}

/* The calling thread's tally for this runtime, made on first use. */
static rt_tally *mine(rt_tallies *ts) {
  rt_tally *t = rt_perthread_mine(&ts->list, &t_tally, sizeof(rt_tally));
  return t ? t : &ts->shared;
}

void rt_tally_in(rt_tallies *ts) {
  rt_tally *t = mine(ts);
  /* relaxed: the record's hand-off to whoever frees it (a release/acquire
   * pair in the queues) orders this count before its count-out. */
  if (RT_UNLIKELY(t->shared))
    atomic_fetch_add_explicit(&t->submitted, 1, memory_order_relaxed);
  else
    atomic_store_explicit(&t->submitted,
                          atomic_load_explicit(&t->submitted, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void rt_tally_out(rt_tallies *ts) {
  rt_tally *t = mine(ts);
  /* seq_cst store, then seq_cst load of closing: with the drain's seq_cst
   * store of closing and loads of the tallies (a Dekker pattern), either the
   * drain sees this count or we see closing and wake it. */
  if (RT_UNLIKELY(t->shared))
    atomic_fetch_add(&t->freed, 1);
  else
    atomic_store(&t->freed, atomic_load_explicit(&t->freed, memory_order_relaxed) + 1);
  if (RT_UNLIKELY(atomic_load(&ts->closing))) {
    atomic_fetch_add(&ts->ended, 1);
    rt_prim_futex_wake(&ts->ended, INT32_MAX);
  }
}

/* True when every record counted in has been counted out (tally.h). */
static bool quiet(rt_tallies *ts) {
  uint64_t freed = atomic_load(&ts->shared.freed), submitted = 0;
  pthread_mutex_lock(&ts->list.lock);
  for (rt_perthread_node *n = ts->list.all; n; n = n->next)
    freed += atomic_load(&((rt_tally *)n)->freed);
  /* seq_cst loads: none of the submitted loads below moves above a freed
   * load (acquire would do for that; seq_cst also serves the Dekker). */
  submitted += atomic_load(&ts->shared.submitted);
  for (rt_perthread_node *n = ts->list.all; n; n = n->next)
    submitted += atomic_load(&((rt_tally *)n)->submitted);
  pthread_mutex_unlock(&ts->list.lock);
  return submitted == freed;
}

void rt_tallies_close(rt_tallies *ts) {
  /* seq_cst: see rt_tally_out, and the gate's pattern in core/gate.h. */
  atomic_store(&ts->closing, 1);
}

void rt_tallies_drain(rt_tallies *ts) {
  rt_tallies_close(ts);
  for (;;) {
    uint32_t seen = atomic_load(&ts->ended);
    if (quiet(ts)) return;
    /* A free after our check bumps ended, so the wait returns at once. */
    rt_prim_futex_wait(&ts->ended, seen, UINT64_MAX);
  }
}
