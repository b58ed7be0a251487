/*
 * deque.c - Chase-Lev work-stealing deque (see deque.h for the contract).
 *
 * Indices top <= bottom grow forever (int64_t: no wrap in practice); item i
 * lives in slot i & mask of the current buffer. The owner works at bottom,
 * thieves at top. The only contended case is the last item, which both the
 * owner's pop and a thief may want: both sides then CAS top, and exactly one
 * wins. Memory orders are those of Le et al. (2013), which proved them correct
 * in the C11 model, with one change: push publishes with a release *store* of
 * bottom instead of a release fence followed by a relaxed store. That is the
 * same cost on x86 and ARMv8, is what ThreadSanitizer understands, and orders
 * exactly what has to be ordered (the slot, the buffer and the caller's writes
 * to the item before the new bottom).
 *
 * Trade-offs: the buffer grows (doubling) but never shrinks; a deque that once
 * held a million items keeps that buffer until destroy. Slots are atomics so a
 * thief that reads a slot the owner is overwriting (after the thief's CAS is
 * doomed to fail) is not a data race.
 */
#include "sched/deque.h"
#include "core/alloc.h"

#include <errno.h>
#include <stdlib.h>

#include "sched/fence.h"

struct rt_deque_buf {
  int64_t cap; /* power of two */
  rt_deque_buf *prev_retired;
  _Atomic(void *) slot[];
};

static rt_deque_buf *buf_new(int64_t cap) {
  rt_deque_buf *a = rt_malloc(sizeof *a + (size_t)cap * sizeof(a->slot[0]));
  if (!a) return NULL;
  a->cap = cap;
  a->prev_retired = NULL;
  /* Fresh slots are never read before being written (a slot is read only for
   * indices in [top, bottom), all pushed), so no initialisation is needed;
   * relaxed stores keep them "atomic objects" for tools anyway. */
  for (int64_t i = 0; i < cap; i++) atomic_init(&a->slot[i], NULL);
  return a;
}

int rt_deque_init(rt_deque *d, size_t initial_cap) {
  int64_t cap = 2;
  while ((size_t)cap < initial_cap) cap <<= 1;
  rt_deque_buf *a = buf_new(cap);
  if (!a) return ENOMEM;
  atomic_init(&d->top, 0);
  atomic_init(&d->bottom, 0);
  atomic_init(&d->buf, a);
  d->retired = NULL;
  return 0;
}

void rt_deque_destroy(rt_deque *d) {
  /* No concurrent users by contract: relaxed is enough. */
  free(atomic_load_explicit(&d->buf, memory_order_relaxed));
  for (rt_deque_buf *a = d->retired, *next; a; a = next) {
    next = a->prev_retired;
    free(a);
  }
  d->retired = NULL;
}

/* Owner only: copy the live items [t, b) into a buffer twice the size. */
static rt_deque_buf *grow(rt_deque *d, rt_deque_buf *a, int64_t t, int64_t b) {
  rt_deque_buf *n = buf_new(a->cap * 2);
  if (!n) return NULL;
  /* relaxed: only the owner writes slots; thieves read n only after the
   * release store of d->buf below (or of bottom in push). */
  for (int64_t i = t; i < b; i++)
    atomic_store_explicit(&n->slot[i & (n->cap - 1)],
                          atomic_load_explicit(&a->slot[i & (a->cap - 1)], memory_order_relaxed),
                          memory_order_relaxed);
  a->prev_retired = d->retired;
  d->retired = a;
  /* release: a thief that loads the new buffer (acquire in steal) also sees
   * the copied slots. Thieves still holding a keep reading valid memory with
   * the same items at the same indices; a is never written again. */
  atomic_store_explicit(&d->buf, n, memory_order_release);
  return n;
}

int rt_deque_push(rt_deque *d, void *item) {
  /* relaxed: only the owner writes bottom, so it reads its own last value. */
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
  /* acquire: pairs with the thief's successful CAS of top. A thief reads slot
   * t before its CAS; seeing that CAS here means the read happened before we
   * may overwrite slot t (index t + cap) below. */
  int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
  /* relaxed: only the owner writes buf. */
  rt_deque_buf *a = atomic_load_explicit(&d->buf, memory_order_relaxed);
  if (b - t > a->cap - 1) {
    a = grow(d, a, t, b);
    if (!a) return ENOMEM;
  }
  /* relaxed: published by the release store of bottom just below. */
  atomic_store_explicit(&a->slot[b & (a->cap - 1)], item, memory_order_relaxed);
  /* release: a thief that sees bottom > b (acquire load in steal) also sees
   * the slot, the buffer (if it grew) and everything the caller wrote into
   * the item before pushing it. Later relaxed stores of bottom by this owner
   * (in pop) stay in this store's release sequence (C11 5.1.2.4p10), so a
   * thief that reads one of those is synchronised too. */
  atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
  return 0;
}

void *rt_deque_pop(rt_deque *d) {
  /* relaxed: owner's own variable. */
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1;
  rt_deque_buf *a = atomic_load_explicit(&d->buf, memory_order_relaxed);
  /* relaxed: the fence below orders it. Reserving slot b first means a thief
   * that comes later sees bottom = b and will not take it (unless b == top,
   * settled by the CAS). */
  atomic_store_explicit(&d->bottom, b, memory_order_relaxed);
  /* seq_cst fence: store bottom ; load top must not be reordered (store-load),
   * against the thief's load top ; fence ; load bottom. With both fences in
   * the single total order S, either we see the thief's CAS of top or the thief
   * sees our decremented bottom; they cannot both take item b. */
  rt_sched_fence_seq_cst();
  int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
  void *x = NULL;
  if (t <= b) {
    /* relaxed: the owner wrote this slot itself. */
    x = atomic_load_explicit(&a->slot[b & (a->cap - 1)], memory_order_relaxed);
    if (t == b) {
      /* Last item: race the thieves for it. seq_cst as in Le et al.; failure
       * relaxed since on failure we use nothing we read. */
      if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                   memory_order_relaxed))
        x = NULL;
      /* relaxed: restores the empty state top == bottom; no data published. */
      atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    }
  } else {
    /* Was empty: undo the reservation. relaxed for the same reason. */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
  }
  return x;
}

rt_deque_steal_result rt_deque_steal(rt_deque *d, void **out) {
  /* acquire: pairs with another thief's (or the owner's) CAS of top, so the
   * slot reads below are not older than the last successful take. */
  int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
  /* seq_cst fence: load top ; load bottom must not be reordered against the
   * owner's store bottom ; fence ; load top in pop (see there). */
  rt_sched_fence_seq_cst();
  /* acquire: pairs with the release store of bottom in push, so slot t, the
   * buffer and the item's contents are visible. */
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_acquire);
  if (t >= b) return RT_DEQUE_EMPTY;
  /* acquire (the paper's consume): the buffer's slots as copied by grow. */
  rt_deque_buf *a = atomic_load_explicit(&d->buf, memory_order_acquire);
  /* relaxed: ordered by the acquire loads above; if the owner has since
   * overwritten the slot, top has moved and our CAS fails. */
  void *x = atomic_load_explicit(&a->slot[t & (a->cap - 1)], memory_order_relaxed);
  /* seq_cst: one total order with the owner's CAS and fences (Le et al.).
   * Success claims item t; failure means someone else took it. */
  if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                               memory_order_relaxed))
    return RT_DEQUE_ABORT;
  *out = x;
  return RT_DEQUE_STOLEN;
}

bool rt_deque_maybe_nonempty(const rt_deque *d) {
  /* relaxed: a hint. The parking re-check calls this after a seq_cst fence,
   * which is what makes a concurrent push either visible here or visible to
   * the pusher's own wake-up check (sched.c, "Parking"). */
  int64_t t = atomic_load_explicit(&((rt_deque *)d)->top, memory_order_relaxed);
  int64_t b = atomic_load_explicit(&((rt_deque *)d)->bottom, memory_order_relaxed);
  return b > t;
}
