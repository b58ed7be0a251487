/*
 * mailbox.c - Vyukov's intrusive MPSC queue with Pony's idle tag on head.
 *
 * The queue is a singly linked list from tail (oldest, consumer's end) to
 * head (newest, producers' end), linked through rt_msg.next_. Producers
 * append with one atomic exchange on head and one store into the previous
 * node's next_: wait-free, and producers never touch tail. The consumer walks
 * tail along next_ links. A stub node lives in the mailbox so the list is
 * never truly empty: when the consumer is about to take the last node it
 * appends the stub behind it (as a producer would), so head always points at
 * a live node and a producer's "previous node" is never one the consumer has
 * handed back to its owner.
 *
 * Idle tag (from Pony's messageq.c): the low bit of head means "empty and not
 * scheduled". The queue is empty exactly when tail == &stub and head == &stub
 * (see rt_mailbox_try_idle), and only then may the consumer CAS head from
 * &stub to &stub|1. A producer's exchange replaces head with its own,
 * untagged node and sees the old value: tagged means it ended an idle period
 * and must schedule the consumer. Since the exchange clears the tag, only one
 * producer per idle period sees it.
 *
 * Trade-offs: a consumer can find a producer between its exchange and its
 * link; pop then returns NULL (and try_idle false) until the producer
 * finishes, and messages pushed before it stay hidden for that moment. A
 * preempted producer can stall its mailbox for a time slice; it cannot lose or
 * reorder anything. Every lock-free MPSC with one atomic per push has this
 * window; closing it would cost producers a CAS loop.
 *
 * Ordering between producers: all pushes exchange the one head word, so they
 * are totally ordered by head's modification order, which agrees with
 * happens-before; the list order is that order. Hence push(a) happens-before
 * push(b) implies a pops before b, and one producer's messages are FIFO.
 */
#include "core/mailbox.h"

#include <assert.h>
#include <stddef.h>

#define IDLE_TAG ((uintptr_t)1)

static inline rt_msg *untag(uintptr_t h) {
  return (rt_msg *)(h & ~IDLE_TAG);
}

static inline rt_msg *next_load(rt_msg *n) {
  /* acquire: pairs with the release store in link_in(); the consumer then
   * reads the next message's payload, written before its push, and later
   * n->next_ of that message, whose NULL store came before that release. */
  return atomic_load_explicit(&n->next_, memory_order_acquire);
}

/* Appends n; returns the old head (tag included). */
static uintptr_t link_in(rt_mailbox *q, rt_msg *n) {
  /* relaxed: n is private to us until the exchange below publishes it. */
  atomic_store_explicit(&n->next_, NULL, memory_order_relaxed);
  /* acq_rel. release: the next pusher, which stores into n->next_ once its
   * exchange reads n, is ordered after our NULL store above, so its link is
   * not overwritten. acquire: the same for us: our store into prev->next_
   * comes after prev's pusher's NULL store. It also makes the consumer's
   * work before a successful try_idle (a release CAS on head, read by this
   * exchange when the tag is set) happen-before whatever we do after a push
   * that returns true, in particular scheduling the consumer again.
   * Exchanges are RMWs, so the release sequence runs unbroken through any
   * number of later pushes. */
  uintptr_t prev = atomic_exchange_explicit(&q->head, (uintptr_t)n, memory_order_acq_rel);
  /* release: publishes n (and the caller's writes to the record holding it)
   * to the consumer, which reaches n only through prev->next_. */
  atomic_store_explicit(&untag(prev)->next_, n, memory_order_release);
  return prev;
}

void rt_mailbox_init(rt_mailbox *q) {
  atomic_init(&q->stub.next_, NULL);
  q->tail = &q->stub;
  /* Starts idle: the actor is not scheduled until its first message. */
  atomic_init(&q->head, (uintptr_t)&q->stub | IDLE_TAG);
}

bool rt_mailbox_push(rt_mailbox *q, rt_msg *m) {
  assert(m != NULL && ((uintptr_t)m & IDLE_TAG) == 0);
  return (link_in(q, m) & IDLE_TAG) != 0;
}

rt_msg *rt_mailbox_pop(rt_mailbox *q) {
  rt_msg *tail = q->tail;
  rt_msg *next = next_load(tail);
  if (tail == &q->stub) {
    if (next == NULL) return NULL; /* empty, or the first push in progress */
    /* Skip the stub; it is out of the list until re-appended below. */
    q->tail = tail = next;
    next = next_load(tail);
  }
  if (next != NULL) {
    q->tail = next;
    return tail;
  }
  /* tail is the last linked node. Take it only once the stub stands behind
   * it, else the next producer would link into a node we gave away.
   * relaxed: only compared, never dereferenced. It cannot read a head older
   * than tail: we reached tail through an acquire load of a link stored
   * after tail's exchange, and read-coherence forbids going back. A head
   * newer than tail means a push is in progress: its link into tail is
   * coming, so wait for it rather than append the stub. */
  uintptr_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
  if (head != (uintptr_t)tail) return NULL;
  /* The queue is scheduled (we are running), so head is untagged. */
  uintptr_t prev = link_in(q, &q->stub);
  (void)prev;
  assert((prev & IDLE_TAG) == 0);
  /* Usually the stub; a push that exchanged between our load of head and
   * our exchange is linked (or about to be) in front of it instead. */
  next = next_load(tail);
  if (next != NULL) {
    q->tail = next;
    return tail;
  }
  return NULL;
}

bool rt_mailbox_try_idle(rt_mailbox *q) {
  /* tail != &stub: tail is a message not yet returned (in this queue the
   * tail node is always the next message, unless it is the stub). */
  if (q->tail != &q->stub) return false;
  /* relaxed: debug check of the contract (only the consumer sets the tag). */
  assert((atomic_load_explicit(&q->head, memory_order_relaxed) & IDLE_TAG) == 0);
  /* tail == &stub, so every node before the stub has been popped. The CAS
   * succeeds only if head == &stub at that instant: no node after the stub
   * and no push in progress (a pusher changes head before anything else).
   * stub->next_ is then NULL too, since only a pusher whose exchange
   * returned &stub writes it, and such an exchange would have moved head.
   * release on success: everything the consumer did in this activation (its
   * actor state, its frees) happens-before the acq_rel exchange of the push
   * that reads the tag, and so before the next activation it schedules,
   * maybe on another worker.
   * relaxed on failure: we only learn "not empty"; the consumer's next pop
   * acquires whatever it reads. */
  uintptr_t expect = (uintptr_t)&q->stub;
  return atomic_compare_exchange_strong_explicit(&q->head, &expect, expect | IDLE_TAG,
                                                 memory_order_release, memory_order_relaxed);
}

void rt_mailbox_destroy(rt_mailbox *q) {
  /* relaxed: the caller guarantees no concurrent push, so no ordering is
   * involved; this is only a debug check. */
  assert(q->tail == &q->stub);
  assert(untag(atomic_load_explicit(&q->head, memory_order_relaxed)) == &q->stub);
  (void)q;
}
