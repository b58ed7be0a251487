/*
 * store.h - the object store: entry table, memory accounting, waiters.
 *
 * One store per runtime, shared by every thread. There is no global lock on
 * the hot path: a put takes a slot from a per-thread cache, reserves its
 * bytes with a CAS on one counter and publishes the entry with a release
 * store; a get of a sealed object is a lookup and one atomic add. Locks are
 * striped by slot number (RT_STRIPES) and are taken only for what needs
 * them: the LRU links of out-of-line objects, pins, and parked waiters.
 */
#ifndef RT_STORE_H
#define RT_STORE_H

#include <pthread.h>

#include "core/config.h"
#include "sched/sched.h"
#include "store/bufpool.h"
#include "store/counts.h"
#include "store/credit.h"
#include "store/lru.h"
#include "store/slots.h"
#include "store/viewtab.h"

#define RT_STRIPES 64
#define RT_MAX_ACCOUNTS 65535

typedef struct rt_account {
  _Atomic size_t used; /* relaxed: a budget counter, CAS-reserved like memory */
  size_t quota;
  char label[128]; /* "actor 'NAME' (ID)" for messages */
} rt_account;

/* A parked thread or a task waiting for one slot to become ready (sealed or
 * failed). It lives on its stripe's list, except a task's dependency on a
 * PENDING entry, which hangs off the entry itself (its `data`, so that
 * ending one entry does not walk every waiter of the stripe: see
 * rt_store_add_waiter). A thread waiter's fire() runs
 * under the stripe lock, after the node is unlinked, so the thread may free
 * the node once it has taken the stripe lock itself. A deferred waiter (a
 * task's dependency) is fired after the lock is dropped, because firing may
 * run arbitrary store operations (fail a task, submit it); its node belongs
 * to the task, which stays alive until all its deferred waiters fired. */
typedef struct rt_waiter rt_waiter;
struct rt_waiter {
  rt_waiter *next;
  uint32_t slot;
  bool deferred;
  void (*fire)(rt_waiter *w);
};

/* What a FAILED object holds: the status a get returns, the message it
 * reports, and, for dependents, which task failed and why. */
typedef struct rt_error {
  ray_status status;
  const char *msg;    /* "task 'parse' failed: invalid input -5" */
  const char *task;   /* "parse", or NULL when no task is involved */
  const char *reason; /* "invalid input -5" */
} rt_error;

/* A return value staged by a running task: bytes (inline copy, heap, pool or
 * adopted buffer) or an alias of another sealed object, with its memory
 * already reserved. Moved into the entry when the task ends. */
typedef struct rt_payload {
  void *data; /* NULL: unset */
  size_t size;
  const ray_type *type;
  uint16_t flags;
  union {
    void (*free_fn)(void *);
    size_t cap;
    ray_ref *target;
  } aux;
  unsigned char inl[RT_INLINE_MAX];
} rt_payload;

typedef struct rt_stripe {
  pthread_mutex_t lock;
  rt_lru lru;
  rt_waiter *waiters;
} __attribute__((aligned(64))) rt_stripe;

typedef struct rt_store {
  rt_slots slots;
  rt_viewtab views; /* a record per user view: one release each (viewtab.h) */
  rt_stripe stripes[RT_STRIPES];
  rt_bufpool pool;
  size_t limit;
  int64_t put_timeout_ms;
  uint64_t owner; /* high half of every object ID: random ^ pid, per runtime */

  /* Counters are relaxed: they order nothing, and ray_stats_get is exact
   * only when no call is in flight. bytes_in_memory is the exception, see
   * mem_reserve/mem_release: it counts reserved bytes, payload plus every
   * thread's credit (credit.h); rt_store_bytes_in_memory reports payload. */
  _Alignas(64) _Atomic size_t bytes_in_memory;
  _Alignas(64) _Atomic size_t bytes_pinned;
  _Alignas(64) _Atomic uint64_t objects;
  rt_counts counts; /* puts and gets, per thread (counts.h) */

  /* Memory-quota accounts (actors with a memory_quota), by number; 0 is
   * "none". Entries are allocated once and kept until the store goes. */
  pthread_mutex_t accounts_lock;
  struct rt_account **accounts; /* RT_MAX_ACCOUNTS pointers, lazily */
  uint32_t naccounts;           /* under accounts_lock */

  /* Puts waiting for memory park here (slow path only). */
  pthread_mutex_t mem_lock;
  pthread_cond_t mem_cond;
  _Atomic uint32_t mem_waiters;
  rt_credits credits; /* per-thread reserved bytes (credit.h) */
} rt_store;

ray_status rt_store_init(rt_store *st, const rt_config *cfg, uint64_t epoch);
/* Payload bytes of live objects in memory (ray_stats.bytes_in_memory). */
size_t rt_store_bytes_in_memory(rt_store *st);

/* --- for the task layer ------------------------------------------------- */

/* A new PENDING object produced by `producer` (a task record). It starts
 * with two refs: *user (for the submitter) and the producer's, which the
 * producer drops with ray_ref_release after it sealed or failed the entry. */
ray_status rt_store_new_pending(rt_store *st, const char *fn, void *producer, ray_ref **user);

/* Registers w (deferred) to fire when the object of `ref` is ready. Returns
 * false, registering nothing, if it is ready already. */
bool rt_store_add_waiter(rt_store *st, ray_ref *ref, rt_waiter *w);

/* Payload staging: each reserves memory (waiting as puts do) and fills *p;
 * discard undoes it. alias requires a sealed object and takes a ref on it. */
ray_status rt_store_payload_copy(rt_store *st, const char *fn, const void *data, size_t size,
                                 const ray_type *type, rt_payload *p);
ray_status rt_store_payload_adopt(rt_store *st, const char *fn, void *data, size_t size,
                                  const ray_type *type, void (*free_fn)(void *), rt_payload *p);
ray_status rt_store_payload_alias(rt_store *st, const char *fn, ray_ref *target, rt_payload *p);
void rt_store_payload_discard(rt_store *st, rt_payload *p);

/* Ends a PENDING object: seal with the payload, or fail with an error that
 * copies msg/task/reason. If the entry is no longer PENDING (a canceller got
 * there first), a payload is discarded and false is returned. */
bool rt_store_seal_pending(rt_store *st, ray_ref *ref, rt_payload *p);
bool rt_store_fail_pending(rt_store *st, ray_ref *ref, ray_status status, const char *msg,
                           const char *task, const char *reason);

/* Calls fn(producer, arg) under the entry's stripe lock if the object of
 * ref is PENDING, so the producer record cannot be freed meanwhile.
 * Returns false if the object is not pending (finished, or not a task's). */
bool rt_store_with_producer(rt_store *st, ray_ref *ref, void (*fn)(void *producer, void *arg),
                            void *arg);

/* The state of a live object: RT_ST_*; RT_ST_FREE for a bad handle. And the
 * error of a FAILED object (valid while the caller holds a ref). */
uint32_t rt_store_state(rt_store *st, ray_ref *ref);
const rt_error *rt_store_error(rt_store *st, ray_ref *ref);

/* A new quota account of quota bytes named by label; 0 if none is left. */
uint16_t rt_store_account_new(rt_store *st, size_t quota, const char *label);
/* Objects created by this thread from now on are charged to account (0:
 * none). Returns the previous account. */
uint16_t rt_store_set_account(uint16_t account);

/* Adds/drops a view hold on a sealed object for a task argument and gives
 * its bytes; the caller holds a ref, so the entry is alive. */
ray_status rt_store_view(rt_store *st, ray_ref *ref, const ray_type *expect, const char *what,
                         ray_view *out);
/* Ends a view from rt_store_view (not one from ray_get); a view already
 * ended (priv_ NULL) is left alone. */
void rt_store_view_drop(rt_store *st, ray_view *view);
/* Frees every object, live or not; warns about unreleased refs and views. */
void rt_store_destroy(rt_store *st);

#endif
