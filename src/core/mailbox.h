/*
 * mailbox.h - an actor's message queue: intrusive MPSC FIFO that also tells
 * producers when the actor must be scheduled.
 *
 * Many producers (any thread), one consumer at a time (whichever worker is
 * running the actor). The queue is intrusive on rt_msg, so a push never
 * allocates and never fails.
 *
 * It lives in core/ rather than actor/ because the task record carries the
 * messages an actor call travels as (task.h), and the task layer sits below
 * the actor layer (docs/ARCHITECTURE.md, the include graph).
 *
 * Scheduling contract (Pony's messageq): the queue has an "idle" state that
 * means "empty and not scheduled". A push onto an idle queue returns true and
 * the pusher must then schedule the consumer; every other push returns false.
 * The running consumer leaves only through rt_mailbox_try_idle: when it
 * returns true the queue is idle again and the consumer must not touch it
 * until it is scheduled anew. So exactly one producer gets true per idle
 * period and the consumer never runs twice at once.
 *
 * Ordering: messages from one producer come out in push order; more generally
 * if push(a) happens-before push(b), a comes out before b. Everything the
 * consumer did before a successful try_idle happens-before everything done
 * after the push that returns true (through whatever hand-off the scheduler
 * uses, as long as that hand-off is itself release/acquire).
 *
 * Lifetime: rt_mailbox_init .. rt_mailbox_destroy. The struct holds its own
 * stub node, so it must not move after init. A message belongs to the queue
 * from the start of its push until the pop that returns it; then it is the
 * consumer's again (free it, reuse it, push it elsewhere).
 */
#ifndef RT_CORE_MAILBOX_H
#define RT_CORE_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct rt_msg rt_msg;
/* Embed at the start of a message record (or anywhere, with container_of).
 * Must be at least 2-byte aligned: the low bit of head is the idle tag; any
 * struct holding a pointer is. */
struct rt_msg {
  _Atomic(rt_msg *) next_;
};

typedef struct rt_mailbox {
  /* Producers' end: the last node pushed, as an integer so that the idle
   * tag (low bit) never makes an invalid pointer value. */
  _Atomic(uintptr_t) head;
  /* Keep producers' exchanges off the consumer's line. Padding rather than
   * _Alignas(64): actors embed the mailbox in records from plain malloc. */
  char pad_[64 - sizeof(uintptr_t)];
  rt_msg *tail; /* consumer's end: the next message to return, or &stub */
  rt_msg stub;  /* lets the queue be empty without a NULL head */
} rt_mailbox;

/* Empty and idle: the first push returns true. */
void rt_mailbox_init(rt_mailbox *q);

/* Any thread; wait-free (one exchange, one store). m must not be in any
 * queue. Returns true when the queue was idle before this push: the caller
 * must then schedule the consumer. Exactly one push per idle period (and the
 * first push after init) returns true. */
bool rt_mailbox_push(rt_mailbox *q, rt_msg *m);

/* Consumer only. The oldest message, now owned by the caller, or NULL when
 * none is visible yet. NULL does not mean empty: a producer may be between
 * its exchange and its link, which also hides messages pushed before its own
 * until it finishes (a few instructions, unless it is preempted). Use
 * rt_mailbox_try_idle to decide whether to stop. */
rt_msg *rt_mailbox_pop(rt_mailbox *q);

/* Consumer only, while scheduled (the queue is not idle). If the queue is
 * empty with no push in progress, marks it idle and returns true: the consumer
 * must stop and not touch the queue again until a push returns true for
 * someone. Returns false when a message is queued or a push is in progress:
 * the consumer must keep running (pop again) or reschedule itself. */
bool rt_mailbox_try_idle(rt_mailbox *q);

/* The queue must be empty (idle or not) and no push may be in progress. It
 * owns no memory; this only checks that in debug builds. */
void rt_mailbox_destroy(rt_mailbox *q);

#endif
