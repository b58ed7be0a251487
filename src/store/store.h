/*
 * store.h - the object store: entry table, memory accounting, waiters.
 *
 * One store per runtime, shared by every thread. There is no global lock on
 * the hot path: a put takes a slot from a per-thread cache, reserves its
 * bytes with a CAS on one counter and publishes the entry with a release
 * store; a get of a sealed object is a lookup and one atomic add. Locks are
 * striped by slot number (RT_STRIPES) and are taken only for what needs
 * them: the LRU links of out-of-line objects, pins, and parked waiters.
 *
 * The store is a layer below tasks and the scheduler and never names them:
 * what it needs from above (helping with queued jobs while a get waits,
 * telling the pool that a thread blocks, running the task that produces an
 * awaited object) it asks through rt_store_ops, which the runtime installs.
 * Its sources include only ray.h, core/ and store/ headers.
 *
 * Files: store.c (the store's life, finding it, IDs), memory.c (reservation,
 * credit, quotas; where spilling plugs in), entries.c (creating, holding and freeing entries: puts,
 * refs, views, pins, staged payloads), wait.c (seals and what waits for
 * them: gets, ray_wait, task dependencies, ending pending objects),
 * creator.c (who made each object), report.c (ray_memory_report, its
 * environment variables and signal, and the shutdown leak summary);
 * store_int.h holds what they share.
 */
#ifndef RT_STORE_H
#define RT_STORE_H

#include <pthread.h>
#include <signal.h>

#include "core/config.h"
#include "core/error.h"
#include "store/bufpool.h"
#include "store/counts.h"
#include "store/creator.h"
#include "store/credit.h"
#include "store/lru.h"
#include "store/slots.h"
#include "store/spillfile.h"
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
  rt_aux aux; /* free_fn, cap or target, as in an entry (entry.h) */
  unsigned char inl[RT_INLINE_MAX];
} rt_payload;

/* Lock with store_int.h's stripe_lock/stripe_unlock, which in Debug builds
 * record the holder so that code needing the lock can assert it. */
typedef struct rt_stripe {
  pthread_mutex_t lock;
  rt_lru lru;              /* under lock */
  rt_waiter *waiters;      /* under lock */
  pthread_cond_t restored; /* with lock: a restore of one of its entries ended */
#ifndef NDEBUG
  /* The holding thread's tag (store_int.h), 0 when unlocked. Relaxed: only
   * compared with the reader's own tag, which only the reader itself ever
   * stores there (and clears before unlocking), so a thread sees its own
   * tag exactly while it holds the lock. */
  _Atomic uintptr_t holder;
#endif
} __attribute__((aligned(64))) rt_stripe;

/*
 * What the store asks of the layers above it (the runtime installs it after
 * building them: rt_store_set_ops; until then every hook does nothing). The
 * store calls them with none of its locks held, on the thread of the store
 * call, and only on slow paths: a get or ray_wait of an object that is not
 * ready, a put that has to wait for memory.
 */
typedef struct rt_store_ops {
  void *arg; /* the first argument of every hook */
  /* Runs one job queued on the calling worker's own deque. False when the
   * caller is not a worker or has nothing queued (rt_sched_help). */
  bool (*help)(void *arg);
  /* Around a thread's sleep in the store: a worker about to block tells the
   * pool, which keeps itself at full strength with a spare (no-op on other
   * threads). */
  void (*block_begin)(void *arg);
  void (*block_end)(void *arg);
  /* An untimed get found ref's object not ready: if its producer is a task
   * this thread may run itself (one it submitted lately that no worker has
   * started), run it here and return true; otherwise false, doing nothing. */
  bool (*run_producer)(void *arg, ray_ref *ref);
  /* A slice of the store's own work for the timeline: kind "spill" (on the
   * I/O thread) or "restore" (on the getting thread). */
  void (*slice)(void *arg, const char *kind, const char *name, uint64_t id, ray_status status,
                bool io_thread, uint64_t start_ns, uint64_t end_ns);
  /* Cluster mode (NULL without a cluster). pull: copies the size bytes of
   * the remote object at loc into buf, waiting for them; RAY_ELOST (with
   * the rank named) if they cannot be had. remote_freed: an RT_EF_REMOTE
   * entry is freed; tell its lender. Both run on the thread of the store
   * call, with no store lock held. */
  ray_status (*pull)(void *arg, const rt_remote_loc *loc, void *buf, size_t size);
  void (*remote_freed)(void *arg, const rt_remote_loc *loc);
} rt_store_ops;

/*
 * The spiller (spill.c): one I/O thread that moves objects out of memory
 * when a reservation does not fit. A thread that needs room asks for bytes
 * (a ticket) and sleeps on `done` until a round that started after its ask
 * has ended; the round spills least recently used objects until it has
 * freed what was asked (at least RT_SPILL_MIN_ROUND), or nothing more can
 * go. All fields under `lock`.
 */
typedef struct rt_spiller {
  pthread_mutex_t lock;
  pthread_cond_t work; /* the thread sleeps here for asks */
  pthread_cond_t done; /* askers sleep here for the end of a round */
  pthread_t thread;
  bool started, stop;
  uint64_t asked;        /* tickets handed out */
  uint64_t served;       /* every ticket up to this one has had its round */
  size_t want;           /* bytes asked since the last round began */
  size_t round_freed;    /* bytes the last round gave back */
  char round_error[256]; /* why the last round stopped short ("" if it did not) */
} rt_spiller;

/*
 * ray_memory_report without changing the program (report.c): what
 * RAY_MEMORY_REPORT and RAY_MEMORY_SIGNAL asked for at ray_init, and the
 * reporter thread that the signal's handler wakes through a pipe. Written
 * by rt_store_init and rt_store_destroy only (the thread reads flags).
 */
typedef struct rt_reporter {
  bool at_shutdown; /* RAY_MEMORY_REPORT: print the report at shutdown */
  bool ready;       /* rt_store_init succeeded: shutdown may print it */
  unsigned flags;   /* RAY_MEMORY_* of both reports (RAY_MEMORY_REPORT=all) */
  int signo;        /* RAY_MEMORY_SIGNAL; 0: none */
  bool started;     /* handler installed and thread running */
  int rfd, wfd;     /* the pipe: the thread reads, the handler writes */
  pthread_t thread;
  struct sigaction old; /* the handler signo had before ours */
} rt_reporter;

typedef struct rt_store {
  rt_slots slots;
  rt_viewtab views; /* a record per user view: one release each (viewtab.h) */
  rt_stripe stripes[RT_STRIPES];
  rt_bufpool pool;
  size_t limit;
  int64_t put_timeout_ms;
  uint64_t owner;   /* high half of every object ID: random ^ pid, per runtime */
  rt_store_ops ops; /* the layers above (rt_store_set_ops); read-only once published */

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
  /* Bumped (under mem_lock, with a broadcast) when an object becomes
   * spillable while a put waits: the put asks the spiller again. */
  uint64_t mem_spillable;
  rt_credits credits; /* per-thread reserved bytes (credit.h) */

  /* Spilling (spill.c, spillfile.c). Counters relaxed, as above;
   * bytes_viewed counts spillable objects with a view (changes under their
   * stripe lock), for RAY_ESTOREFULL messages. */
  rt_spilldir disk;
  rt_spiller spiller;
  _Atomic size_t bytes_viewed;
  _Atomic uint64_t spills, restores, bytes_spilled_total, bytes_restored_total;

  rt_reporter reporter; /* RAY_MEMORY_REPORT, RAY_MEMORY_SIGNAL (report.c) */
} rt_store;

/*
 * The store of the running runtime, published by ray_init with a release
 * store once the whole runtime is built, and set to NULL by ray_shutdown
 * (runtime.c). A call that finds it must not race ray_shutdown, which
 * frees the store without a reader count (see runtime.c).
 */
extern _Atomic(rt_store *) rt_g_store;

/* The running store, or NULL. acquire: pairs with ray_init's release store
 * of rt_g_store, so a caller that sees the pointer also sees everything
 * built before it was published (the store's tables, its ops, and the
 * layers those ops reach). */
static inline rt_store *rt_store_current(void) {
  return atomic_load_explicit(&rt_g_store, memory_order_acquire);
}

/* Records "fn: the runtime is not running" (rt_not_running); NULL. */
rt_store *rt_store_not_running(const char *fn);

/* The running store, or NULL with "fn: the runtime is not running"
 * recorded for the caller to return RAY_ESHUTDOWN. Inline: every public
 * store call begins here. */
static inline rt_store *rt_store_running(const char *fn) {
  rt_store *st = rt_store_current();
  return RT_LIKELY(st != NULL) ? st : rt_store_not_running(fn);
}

ray_status rt_store_init(rt_store *st, const rt_config *cfg, uint64_t epoch);
/* Installs the hooks to the layers above; before the store is published. */
void rt_store_set_ops(rt_store *st, const rt_store_ops *ops);
/* Payload bytes of live objects in memory (ray_stats.bytes_in_memory). */
size_t rt_store_bytes_in_memory(rt_store *st);

/* --- the puts, for public wrappers in the library ------------------------ */

/*
 * What ray_put, ray_put_owned, ray_create and ray_put_refs do, with the
 * name of the call for messages and reports (fn: a string that lives as
 * long as the process, e.g. a literal) and the code address the object is
 * charged to in ray_memory_report (site). Each public call passes its own
 * name and its caller's return address (RT_CALLER(), creator.h); a public
 * wrapper in the library passes its name and ITS caller's address, so that
 * the report names the program's line, not the wrapper's.
 */
ray_status rt_store_put(const char *fn, const void *site, const void *data, size_t size,
                        const ray_type *type, ray_ref **out);
ray_status rt_store_put_owned(const char *fn, const void *site, void *data, size_t size,
                              const ray_type *type, void (*free_fn)(void *), ray_ref **out);
ray_status rt_store_create(const char *fn, const void *site, size_t size, const ray_type *type,
                           void **data, ray_ref **out);
ray_status rt_store_put_refs(const char *fn, const void *site, ray_ref *const refs[], size_t n,
                             ray_ref **out);

/* --- for the task layer ------------------------------------------------- */

/* A new PENDING object produced by `producer` (a task record), made by
 * `creator` (ray_memory_report: a task's rt_creator_task of its record's
 * name, or RT_CREATOR_REMOTE). It starts with two refs: *user (for the
 * submitter) and the producer's, which the producer drops with
 * ray_ref_release after it sealed or failed the entry. */
ray_status rt_store_new_pending(rt_store *st, const char *fn, void *producer, rt_creator_id creator,
                                ray_ref **user);

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

/*
 * Cluster mode: ends a PENDING object as a copy of an object of another
 * rank (RT_EF_REMOTE, loc kept in the entry). With bytes (size of them,
 * copied), the object is in memory at once; with bytes NULL they stay at
 * loc->holder and the first view pulls them (ops.pull), as a restore reads
 * a spilled object. False, *ok RAY_OK, if the entry was not PENDING; false
 * with *ok RAY_ESTOREFULL or RAY_ENOMEM (recorded) if there was no memory
 * for the bytes: the entry is still PENDING, for the caller to fail.
 */
bool rt_store_seal_remote(rt_store *st, ray_ref *ref, size_t size, const ray_type *type,
                          const rt_remote_loc *loc, const void *bytes, ray_status *ok);
/* A new ref on the object of handle ref, which the caller does not hold
 * (a weak reference), or NULL if that object has been freed meanwhile. */
ray_ref *rt_store_try_retain(rt_store *st, ray_ref *ref);
/* The size and type of a sealed object, without bringing it in; false if
 * it is not sealed. */
bool rt_store_info(rt_store *st, ray_ref *ref, size_t *size, const ray_type **type);
/* The remote location of an RT_EF_REMOTE object (false for any other),
 * and whether its bytes are in memory here. */
bool rt_store_remote_loc(rt_store *st, ray_ref *ref, rt_remote_loc *loc, bool *local);

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

/* The stripe (0 .. RT_STRIPES - 1) of the object of a live ref of the
 * running store, or -1 if ref does not resolve (or no runtime runs). For
 * tests of per-stripe order; the store itself works with slots. */
int rt_store_stripe_of(const ray_ref *ref);

#endif
