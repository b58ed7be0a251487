/*
 * injector.c - Vyukov's intrusive MPSC queue, made multi-consumer with a
 * consumer-side try-lock.
 *
 * Producers: link the job in with one atomic exchange on head and one store
 * into the previous node's next_ (wait-free; no lock shared with consumers).
 * Consumers: one at a time, under a test-and-test-and-set try-lock; a worker
 * that finds the lock taken returns NULL and goes stealing instead of
 * waiting, since another worker is already draining the queue. The stub node
 * lets the queue become empty without a NULL head, so producers never need
 * to touch tail.
 *
 * Trade-offs: a consumer can see a producer half-way through a push (head
 * moved, link not yet written). It then returns NULL for that moment; the
 * producer finishes within a few instructions and its wake-up check makes
 * sure a worker looks again (sched.c). A mutex queue would be simpler but
 * would make every outside submission contend with the consumers' lock.
 *
 * Emptiness. In Vyukov's queue head == &stub does NOT mean empty: a consumer
 * that finds the last node unlinked re-inserts the stub, and a producer that
 * exchanged head just before it leaves its node (and the one before it)
 * queued *ahead* of the stub, with head == &stub. The parking protocol needs
 * an "is anything queued" test that never says no while a job is queued, so
 * the queue keeps len: incremented before a job is linked in, decremented
 * after it is unlinked. That costs one more atomic add per push and pop, on
 * the producers' cache line, which they own anyway.
 *
 * rt_job.next_ is a plain pointer (the struct is shared with the task layer),
 * so it is accessed with the __atomic builtins, which gcc, clang and TSan all
 * treat as atomics.
 */
#include "sched/injector.h"

#include <stddef.h>

static inline rt_job *next_load(rt_job *n) {
  /* acquire: pairs with the release store in link(); we then read the next
   * job's fields (run, and its owner's data) written before its push. */
  return __atomic_load_n(&n->next_, __ATOMIC_ACQUIRE);
}

static void link_in(rt_injector *q, rt_job *n) {
  /* relaxed: n is private to us until the exchange below publishes it. */
  __atomic_store_n(&n->next_, NULL, __ATOMIC_RELAXED);
  /* acq_rel. release: the next producer, which stores into n->next_, is
   * ordered after our NULL store above (so its link is not overwritten).
   * acquire: symmetric, our store into prev->next_ comes after prev's
   * producer's NULL store. */
  rt_job *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
  /* release: publishes n (and the caller's writes to the record holding n) to
   * the consumer, which reaches n only through prev->next_. */
  __atomic_store_n(&prev->next_, n, __ATOMIC_RELEASE);
}

void rt_injector_init(rt_injector *q) {
  q->stub.next_ = NULL;
  q->stub.run = NULL;
  atomic_init(&q->head, &q->stub);
  atomic_init(&q->len, 0);
  atomic_flag_clear_explicit(&q->lock, memory_order_relaxed);
  q->tail = &q->stub;
}

void rt_injector_push(rt_injector *q, rt_job *job) {
  /* relaxed: len is only the "may be non-empty" flag of the parking
   * protocol, whose ordering comes from the seq_cst fence the submitter issues
   * after this push (sched.c, notify_one). Counting before linking means len
   * covers the job for its whole time in the queue. */
  atomic_fetch_add_explicit(&q->len, 1, memory_order_relaxed);
  link_in(q, job);
}

static rt_job *pop_locked(rt_injector *q) {
  rt_job *tail = q->tail;
  rt_job *next = next_load(tail);
  if (tail == &q->stub) {
    if (!next) return NULL; /* empty, or a push in progress */
    q->tail = tail = next;
    next = next_load(tail);
  }
  if (next) {
    q->tail = next;
    return tail;
  }
  /* tail is the last linked node. relaxed: only compared, not dereferenced. */
  if (tail != atomic_load_explicit(&q->head, memory_order_relaxed))
    return NULL; /* a producer has exchanged head but not linked yet */
  /* Put the stub behind tail so tail can be detached. */
  link_in(q, &q->stub);
  next = next_load(tail);
  if (next) {
    q->tail = next;
    return tail;
  }
  return NULL; /* a producer slipped in between: its link comes soon */
}

size_t rt_injector_pop_batch(rt_injector *q, rt_job **out, size_t max) {
  /* Cheap empty check first so idle workers do not bounce the lock line.
   * relaxed: a hint (a stale 0 only sends the worker to its parking
   * re-check, which is fenced); the real check happens under the lock. */
  if (atomic_load_explicit(&q->len, memory_order_relaxed) == 0) return 0;
  /* acquire: pairs with the release in atomic_flag_clear below, so the
   * previous consumer's writes to tail are visible. */
  if (atomic_flag_test_and_set_explicit(&q->lock, memory_order_acquire)) return 0;
  size_t n = 0;
  while (n < max && (out[n] = pop_locked(q)) != NULL) n++;
  /* relaxed: as in push; only after the jobs are unlinked. */
  if (n) atomic_fetch_sub_explicit(&q->len, n, memory_order_relaxed);
  /* release: hands tail over to the next consumer. */
  atomic_flag_clear_explicit(&q->lock, memory_order_release);
  return n;
}

rt_job *rt_injector_pop(rt_injector *q) {
  rt_job *j;
  return rt_injector_pop_batch(q, &j, 1) ? j : NULL;
}

size_t rt_injector_len(const rt_injector *q) {
  /* relaxed: a sizing hint for batches. */
  return atomic_load_explicit(&((rt_injector *)q)->len, memory_order_relaxed);
}

bool rt_injector_maybe_nonempty(const rt_injector *q) {
  /* relaxed: the parking re-check calls this after a seq_cst fence, and the
   * submitter fences after its increment, so one of them sees the other
   * (sched.c, "Parking"). Every value of len in its modification order after
   * a job's increment and before that job's decrement is >= 1. */
  return atomic_load_explicit(&((rt_injector *)q)->len, memory_order_relaxed) != 0;
}
