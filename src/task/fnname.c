/*
 * fnname.c - the default name of a task: its function's symbol, cached.
 *
 * A task submitted without opts.name is named after its function, so that
 * messages and the timeline say 'square' rather than 'unnamed'. The symbol
 * table (core/symbol.h) answers under a lock, with a binary search, and
 * reads the module's table on its first question: far too slow for
 * ray_submit, which runs millions of times a second. Two caches sit in
 * front of it:
 *
 *   - per thread, a direct-mapped table of RT_FN_WAYS (function -> name) pairs,
 *     indexed by the address bits above the alignment: a thread that submits a few functions
 *     finds each with one load and one compare, and touches nothing shared;
 *   - shared, an open-addressed table of G_SLOTS pairs with linear probing,
 *     filled under a mutex and read without one, so a thread's first task
 *     of a function that another thread named already costs no symbol
 *     lookup and no lock.
 *
 * Pairs are never removed or changed: a function's address names it while
 * its module is loaded (rayc never unloads code; a task function of a
 * library unloaded and replaced at the same address would keep the old
 * name, which only a message shows). A function without a symbol (a static
 * function of a stripped binary) is cached as "unnamed", so it is asked
 * about once too; a lookup that ran out of memory is not cached, and the
 * next submit asks again. When the shared table is full, the per-thread cache still
 * holds the answer and the lookup is made again by other threads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/symbol.h"
#include "task/fnname.h"

const char rt_task_unnamed[] = "unnamed";

#define G_SLOTS 1024 /* shared; a power of two */

_Thread_local rt_fn_cache rt_t_fn_cache;

static struct {
  _Atomic uintptr_t fn; /* 0: empty (no function lives at address 0) */
  _Atomic(const char *) name;
} g_table[G_SLOTS];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *shared_find(uintptr_t fn) {
  size_t h = rt_fn_hash(fn);
  for (size_t i = 0; i < G_SLOTS; i++) {
    size_t k = (h + i) & (G_SLOTS - 1);
    /* acquire: pairs with the release store of fn in shared_add, which
     * follows the store of the name, so a matching key comes with its name. */
    uintptr_t f = atomic_load_explicit(&g_table[k].fn, memory_order_acquire);
    if (f == fn) return atomic_load_explicit(&g_table[k].name, memory_order_relaxed);
    if (f == 0) return NULL; /* slots fill in probe order and never empty: absent */
  }
  return NULL;
}

static void shared_add(uintptr_t fn, const char *name) {
  pthread_mutex_lock(&g_lock);
  size_t h = rt_fn_hash(fn);
  for (size_t i = 0; i < G_SLOTS; i++) {
    size_t k = (h + i) & (G_SLOTS - 1);
    /* relaxed: writers are serialised by g_lock. */
    uintptr_t f = atomic_load_explicit(&g_table[k].fn, memory_order_relaxed);
    if (f == fn) break; /* another thread added it meanwhile */
    if (f == 0) {
      /* relaxed name, then release fn: a reader that sees the key (acquire)
       * sees the name. */
      atomic_store_explicit(&g_table[k].name, name, memory_order_relaxed);
      atomic_store_explicit(&g_table[k].fn, fn, memory_order_release);
      break;
    }
  }
  pthread_mutex_unlock(&g_lock);
}

const char *rt_task_fn_name_slow(uintptr_t fn) {
  const char *name = shared_find(fn);
  if (!name) {
    bool retry;
    name = rt_symbol_lookup((const void *)fn, &retry);
    if (!name && retry) return rt_task_unnamed; /* out of memory: ask again next time */
    if (!name) name = rt_task_unnamed;
    shared_add(fn, name);
  }
  size_t w = rt_fn_way(fn);
  rt_t_fn_cache.fn[w] = fn;
  rt_t_fn_cache.name[w] = name;
  return name;
}
