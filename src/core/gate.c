/*
 * gate.c - per-thread gates for submission calls. See gate.h.
 */
#include "core/gate.h"
#include "core/alloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/prim.h"

struct rt_gate {
  /* Entries plus exits: odd while the owner is inside. Written only by the
   * owner thread; read by rt_gate_wait_all. */
  _Atomic uint32_t word;
  bool in_use; /* under g_lock: a living thread owns it */
  rt_gate *next;
} __attribute__((aligned(64)));

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static rt_gate *g_all;             /* under g_lock; never freed */
static _Atomic uint32_t g_waiters; /* rt_gate_wait_all calls in progress */
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static bool g_key_ok;
static _Thread_local rt_gate *t_gate;

/* At thread exit: the gate is free for a later thread. Its word is even:
 * a thread cannot exit from inside a call. */
static void gate_release(void *p) {
  rt_gate *g = p;
  pthread_mutex_lock(&g_lock);
  g->in_use = false;
  pthread_mutex_unlock(&g_lock);
}

static void key_make(void) {
  g_key_ok = pthread_key_create(&g_key, gate_release) == 0;
}

static rt_gate *gate_mine(void) {
  pthread_once(&g_key_once, key_make);
  if (!g_key_ok) return NULL;
  rt_gate *g = NULL;
  pthread_mutex_lock(&g_lock);
  for (rt_gate *x = g_all; x; x = x->next)
    if (!x->in_use) {
      g = x;
      break;
    }
  if (!g && (g = rt_aligned_alloc(64, sizeof *g)) != NULL) {
    memset(g, 0, sizeof *g);
    g->next = g_all;
    g_all = g;
  }
  if (g) g->in_use = true;
  pthread_mutex_unlock(&g_lock);
  if (g && pthread_setspecific(g_key, g) != 0) {
    gate_release(g);
    return NULL;
  }
  t_gate = g;
  return g;
}

rt_gate *rt_gate_enter(void) {
  rt_gate *g = t_gate;
  if (__builtin_expect(!g, 0) && !(g = gate_mine())) return NULL;
  /* seq_cst: the caller's half of the Dekker pattern in gate.h; it is
   * followed by the caller's seq_cst load of the closing flag. Only this
   * thread writes the word, so the exchange returns what we knew. */
  uint32_t w = atomic_load_explicit(&g->word, memory_order_relaxed);
  atomic_exchange(&g->word, w + 1);
  return g;
}

void rt_gate_leave(rt_gate *g) {
  /* release: everything the call did (the task it counted, the memory it
   * touched) happens before a waiter's acquire load sees the exit. */
  uint32_t w = atomic_load_explicit(&g->word, memory_order_relaxed);
  atomic_store_explicit(&g->word, w + 1, memory_order_release);
  /* relaxed: a waiter that we miss here sleeps at most one tick of its
   * bounded wait (rt_gate_wait_all); only a shutdown pays that. */
  if (atomic_load_explicit(&g_waiters, memory_order_relaxed))
    rt_prim_futex_wake(&g->word, INT32_MAX);
}

/* How long a waiter sleeps before it looks again, should a wake-up have
 * been missed (a leaver's store and load may pass our increment). */
#define RT_GATE_TICK_NS 1000000ull

void rt_gate_wait_all(void) {
  atomic_fetch_add(&g_waiters, 1); /* seq_cst: before our loads of the words */
  pthread_mutex_lock(&g_lock);
  for (rt_gate *g = g_all; g; g = g->next) {
    /* seq_cst: shutdown's half of the Dekker pattern (after its seq_cst
     * store of the closing flag); acquire for what the call did. */
    uint32_t w = atomic_load(&g->word);
    if (!(w & 1)) continue;
    while (atomic_load(&g->word) == w)
      rt_prim_futex_wait(&g->word, w, rt_prim_now_ns() + RT_GATE_TICK_NS);
  }
  pthread_mutex_unlock(&g_lock);
  atomic_fetch_sub(&g_waiters, 1);
}
