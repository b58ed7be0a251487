/*
 * fence.h - the one sequentially consistent fence the scheduler uses.
 *
 * gcc >= 11 warns (-Wtsan) that ThreadSanitizer does not model
 * atomic_thread_fence. That is fine for us: every fence in src/sched orders a
 * store before a later load (Dekker / store-buffering patterns: Chase-Lev's
 * take/steal race, sleeper announce vs. submitter wake-up check). Those fences
 * never create a happens-before edge for plain data; all data is published with
 * release/acquire pairs that TSan does see. The fence still executes under
 * TSan (as a real mfence), it is just not used for race detection, so we
 * silence the warning here and only here.
 */
#ifndef RT_SCHED_FENCE_H
#define RT_SCHED_FENCE_H

#include <stdatomic.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
static inline void rt_sched_fence_seq_cst(void) {
  atomic_thread_fence(memory_order_seq_cst);
}
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic pop
#endif

#endif
