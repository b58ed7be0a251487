/*
 * tally.h - how many tasks are alive, counted without a shared counter.
 *
 * ray_shutdown must wait until every task record has been freed. One shared
 * `live` counter would be written by the submitting thread and by the worker
 * that frees the record, moving its cache line between cores twice per task.
 * Instead each thread owns a tally of the records it counted in (submitted)
 * and out (freed); both only grow, and only the owner writes them, so an
 * update is a plain store to a line the thread already holds.
 *
 * Quiescence (rt_tally_quiet): read every `freed`, then every `submitted`.
 * A record's count-in happens before its count-out, so each free we read has
 * its submit in the later sum: submitted >= freed. Equality means every task
 * we saw submitted was freed; a task we did not see was submitted by a task
 * (outside threads are refused once shutdown begins) whose own submit we saw
 * and whose free we saw, which happened after that child's submit, so we
 * would have seen it. Hence equal sums mean no task is alive or can be made.
 */
#ifndef RT_TALLY_H
#define RT_TALLY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/perthread.h"

typedef struct rt_tally {
  rt_perthread_node node; /* first */
  /* Written by the owning thread only (relaxed load, then store); read by
   * the drain. The shared fallback tally is written with atomic adds. */
  _Atomic uint64_t submitted;
  _Atomic uint64_t freed;
  bool shared;
} rt_tally;

typedef struct rt_tallies {
  rt_perthread_list list;   /* of rt_tally */
  rt_tally shared;          /* for threads whose own tally could not be allocated */
  _Atomic uint32_t closing; /* rt_tallies_drain has begun */
  _Atomic uint32_t ended;   /* futex word: bumped by each free after closing */
} rt_tallies;

int rt_tallies_init(rt_tallies *ts, uint64_t epoch);
void rt_tallies_destroy(rt_tallies *ts);
/* Counts a record in (on the calling thread's tally). */
void rt_tally_in(rt_tallies *ts);
/* Counts a record out; wakes a drain in progress. */
void rt_tally_out(rt_tallies *ts);
/* Marks the runtime closing (seq_cst: see core/gate.h); idempotent. */
void rt_tallies_close(rt_tallies *ts);
/* Marks the runtime closing, then waits until no counted record is alive. */
void rt_tallies_drain(rt_tallies *ts);

#endif
