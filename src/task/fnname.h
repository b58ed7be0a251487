/*
 * fnname.h - the name of a task submitted without one: its function's
 * symbol, looked up once and cached (fnname.c explains the caches).
 */
#ifndef RT_FNNAME_H
#define RT_FNNAME_H

#include <stddef.h>
#include <stdint.h>

/* "unnamed": the name of a task whose function has no symbol. */
extern const char rt_task_unnamed[];

#define RT_FN_WAYS 8 /* per-thread cache entries; a power of two */
typedef struct rt_fn_cache {
  uintptr_t fn[RT_FN_WAYS];
  const char *name[RT_FN_WAYS];
} rt_fn_cache;
extern _Thread_local rt_fn_cache rt_t_fn_cache;

/* For the shared table: code addresses are 16-byte aligned as a rule, so
 * their low bits say little; a multiplicative hash spreads the rest. */
static inline size_t rt_fn_hash(uintptr_t fn) {
  return (size_t)(((uint64_t)fn * 0x9e3779b97f4a7c15u) >> 40);
}

/* For the per-thread cache: the bits just above the alignment, a shift and
 * a mask (functions next to each other in a file land on different ways). */
static inline size_t rt_fn_way(uintptr_t fn) {
  return (size_t)(fn >> 4) & (RT_FN_WAYS - 1);
}

/* Misses of the per-thread cache: the shared table, then the symbol. */
const char *rt_task_fn_name_slow(uintptr_t fn);

/* The name of the function at fn ("square"), or rt_task_unnamed. The
 * string has static storage (valid until the process ends): a record points
 * at it without a copy. Steady state: one load and one compare. */
static inline const char *rt_task_fn_name(uintptr_t fn) {
  size_t w = rt_fn_way(fn);
  if (__builtin_expect(rt_t_fn_cache.fn[w] == fn, 1)) return rt_t_fn_cache.name[w];
  return rt_task_fn_name_slow(fn);
}

#endif
