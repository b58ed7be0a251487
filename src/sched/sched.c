/*
 * sched.c - work-stealing scheduler: workers, parking, spare threads, drain.
 *
 * Submitting. A worker pushes onto its own deque. A thread outside the pool
 * pushes onto a ring of its own (ring.h: a plain store, no locked
 * instruction), or, when it has none (more than RT_SCHED_MAX_RINGS outside
 * threads), onto the shared injector. A full ring means the workers are
 * behind: the submitter yields once before queueing more, which keeps a
 * burst's backlog small enough to stay in cache.
 *
 * Finding work. A worker pops its own Chase-Lev deque (newest first), then
 * the rings and the injector, taking a share of up to RT_SCHED_OUTSIDE_BATCH
 * jobs into its deque (prefetching their records), then tries to steal from
 * every other worker starting at a random one (xorshift per worker), then
 * spins a few rounds with pause and tries again, then parks. Every
 * RT_SCHED_OUTSIDE_EVERY-th job it looks at the rings and the injector
 * first, so outside submitters are not starved by a job tree that keeps its
 * own deque full (Tokio and Go use the same trick).
 *
 * Parking. Each worker parks on its own futex word, and parked workers sit on
 * an idle list under park_lock; nidle mirrors the list length for a lock-free
 * check. The sleeper (1) puts itself on the list, nidle++, (2) seq_cst fence,
 * (3) re-checks every queue, (4) sleeps only if it found nothing and nobody
 * took it off the list meanwhile. The submitter (a) publishes the job (deque
 * bottom, ring tail, or the injector's len), (b) seq_cst fence, (c) reads
 * nsearching and nidle and, only if no worker is searching (below) and one
 * is idle, takes one worker off the list and wakes it. This is the
 * store-buffering (Dekker) pattern: by the C11 rule for two seq_cst fences,
 * whichever fence comes first in the total order S, the other side's load sees
 * the first side's store; so either the sleeper's re-check sees the job or the
 * submitter sees nidle > 0. No lost wake-up, no timed poll, and a busy pool
 * pays one fence and two loads per submit (no syscall, no lock). The waker
 * removes the sleeper from the list itself, so nidle drops at once. The lock
 * is only taken on the way to sleep and to wake, where a syscall is paid
 * anyway.
 *
 * Searching (Go's spinning Ms, Tokio's searching workers). Dekker alone only
 * rules out that *every* worker sleeps while a job is queued; the pool must
 * also never leave a job queued while *one* worker sleeps, or jobs that could
 * run side by side run one after another. A worker is searching while it is
 * counted in nsearching: it spins for work, or a waker took it off the idle
 * list for a job, or its parking re-check saw a job. The invariant: while a
 * job is queued, a worker is searching (awake, or being woken), or the job's
 * submitter has yet to reach (c), or no worker is idle. Three rules keep it:
 *  (W) a submitter that sees nsearching > 0 wakes nobody: a searcher answers
 *      for its job. Otherwise it wakes one idle worker and counts it in
 *      nsearching for it, under park_lock, so that a burst of submissions
 *      wakes one searcher instead of a herd.
 *  (H) a searcher that takes a job leaves nsearching, fences and, if no
 *      worker searches, one is idle and any job is still visible, wakes one
 *      (rule W's wake-up) before it runs its own: the hand-on. A burst is
 *      taken by a chain of wake-ups, one per job, not one run per job.
 *      One look is enough: the submitter of a job it misses fenced after
 *      it, so that submitter sees the decrement and applies W itself.
 *      (Without it, a worker woken for a burst whose other submitters had
 *      skipped their wake-ups, because a spinner was counted, ran one job
 *      and left the rest queued until a running job returned.)
 *  (P) a searcher that finds nothing (or may not spin: max_spinning are
 *      spinning) leaves nsearching and parks; a parking re-check (fenced,
 *      after the decrement) that sees a job makes the worker a searcher
 *      instead of a sleeper. A surplus thread that retires does the same
 *      re-check and hands the job on (park_spare).
 * Why no job J is missed when its submitter saw nsearching > 0: each
 * searcher T counted in that load leaves nsearching after it in the
 * modification order, then fences, then looks (H or P). Had T's fence come
 * before the submitter's in S, the submitter's load would have seen T's
 * decrement; so the submitter's fence comes first, and T's look sees J or
 * sees it taken. T then acts for J by H or P, and if T in turn sees
 * nsearching > 0 the same argument passes J on to a searcher whose fence is
 * later still in S, hence after J's: the chain ends in a wake-up, or with J
 * taken. A worker woken by rule W fences after its waker did (park_lock and
 * park_word order the two), so it too sees J. Workers that take a job
 * without searching (from their own deque, or a steal before they start to
 * search) answer for nothing, so the hot paths are unchanged: a busy worker
 * pushing to its own deque or an outside thread pushing to its ring pays one
 * fence and two loads. The price is paid by the idle side: a searcher that
 * finds a job pays a fence and a look at every queue (work_visible) before
 * running it.
 *
 * Spare threads. active counts threads that may run jobs: not blocked in
 * block_begin/end and not parked as spares (an idle-parked worker counts; it
 * will run the next job). block_begin decrements it and, if it fell below
 * nworkers, wakes a parked spare or creates a thread (at most
 * RT_SCHED_MAX_SPARES ever), which restores active to nworkers. block_end
 * increments it; the surplus goes away either at once (block_end moves an
 * idle-parked worker to the spare list) or when some running worker finds
 * its own deque empty and sees active > nworkers: it claims the surplus with
 * a CAS and parks as a spare. So at most nworkers threads run jobs except
 * between a block_end and the surplus worker's next empty-deque check.
 *
 * Draining. rt_sched_destroy does not count jobs (that would be two contended
 * atomics per job); it waits for quiescence instead: every thread settled,
 * i.e. parked asleep after a re-check that found nothing (idle), or parked as
 * a spare (spares never own work: a worker retires only with an empty deque).
 * With no outside submitter left, all threads settled means no job is queued
 * or running: a job can only be queued by a thread that later settled, and
 * its settling re-check would have seen the job or a thread taking it, which
 * is then not settled. A blocked worker is not settled, so the drain waits
 * for it. The last thread to settle wakes the destroyer, which then sets stop
 * and wakes everyone.
 *
 * Spinning (Go, Tokio): an idle worker spins for up to RT_SCHED_SPIN_NS
 * before parking, at most half the workers at a time (nspinning; a worker
 * woken for a job counts only once it spins, so it never keeps a worker that
 * has just run out of work from spinning for the next one). Waiting
 * (rt_sched_help): a worker about to block first runs jobs from its own
 * deque. Trade-offs: spares are created on demand (the fallback for waits
 * helping cannot resolve) and kept until destroy.
 */
#define _GNU_SOURCE
#include "sched/sched.h"
#include "core/alloc.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/prim.h"
#include "sched/deque.h"
#include "sched/fence.h"
#include "sched/injector.h"
#include "sched/ring.h"

/* Every RT_SCHED_OUTSIDE_EVERY-th job a worker looks at the outside queues
 * (rings, then the injector) before its own deque. */
#define RT_SCHED_OUTSIDE_EVERY 61 /* prime, as in Tokio/Go */
/* An idle worker looks for work for up to RT_SCHED_SPIN_NS before it parks:
 * a park + wake costs two syscalls and ~5-10 us of latency on this class of
 * machine, far more than a task, so a worker that just ran out of work stays
 * awake briefly for the next one. Every RT_SCHED_SPIN_YIELD rounds it yields,
 * so that on a machine with fewer cores than threads a spinning worker does
 * not starve the thread that is producing its work. */
#define RT_SCHED_SPIN_NS 50000
#define RT_SCHED_SPIN_YIELD 8
#define RT_SCHED_DEQUE_CAP 256
/* A worker that turns to the outside queues (a ring, else the injector)
 * takes up to this many jobs at once (its share: len / threads + 1, as Go's
 * globrunqget) and keeps them in its deque, where the others can steal
 * them. One ring CAS or injector lock per batch instead of per job; without
 * it the consumers of a burst of outside submissions contend one job at a
 * time. */
#define RT_SCHED_OUTSIDE_BATCH 32
/* An outside thread that finds more than this many jobs in the injector
 * after its push yields once (the same backpressure as a full ring). */
#define RT_SCHED_BACKLOG 1024
/* Threads outside the pool that get a ring of their own (ring.h); later
 * ones use the injector. Rings are kept until destroy, even when their
 * thread exits (its jobs are still in it), so this bounds the scan. */
#define RT_SCHED_MAX_RINGS 64

enum { W_RUNNING, W_ANNOUNCED, W_SETTLED };

typedef struct rt_worker {
  rt_deque dq; /* first, for its alignment */
  rt_sched *s;
  int index;
  pthread_t thread;
  uint64_t rng;         /* xorshift64 state, owner only */
  uint32_t tick;        /* jobs started, owner only */
  uint32_t ring_cursor; /* the ring to look at first, owner only */
  int block_depth;      /* block_begin nesting, owner only */
  /* Counted in s->nsearching ("Searching"). Owner only, except that the
   * waker that takes this worker off the idle list sets it (under
   * park_lock); the worker reads it after re-taking park_lock or after
   * park_wait's acquire, both of which order the waker's write before. */
  bool searching;
  /* Owner only: the deque's mark when the running job started. Jobs above
   * it were pushed by that job (its children): the only ones it may run
   * while it waits (rt_sched_help). */
  int64_t help_floor;
  /* Under s->park_lock: */
  int state;
  struct rt_worker *prev, *next; /* idle list (doubly linked) or spare list */
  /* Set to 1 (release) by whoever takes this worker off a list while it is
   * W_SETTLED; the worker futex-waits until it reads 1 (acquire). */
  _Alignas(64) _Atomic uint32_t park_word;
} rt_worker;

struct rt_sched {
  rt_injector inj;
  uint64_t id; /* unique per scheduler: tells a thread's ring which one it is for */
  /* Rings of outside threads: [0, nrings) set, each under park_lock before
   * nrings is raised (release), then read lock-free. */
  rt_ring *rings[RT_SCHED_MAX_RINGS];
  _Atomic int nrings;
  int nworkers;
  int max_threads;
  rt_worker **workers; /* max_threads slots; [0, nthreads) are set */
  /* Written under park_lock after workers[i] is set; read lock-free. */
  _Alignas(64) _Atomic int nthreads;
  /* Threads allowed to run jobs; see "Spare threads". A counter, no data is
   * published through it: every access is relaxed (RMWs on one atomic are
   * totally ordered whatever the memory order). */
  _Alignas(64) _Atomic int active;
  /* Length of the idle list, read lock-free by submitters. */
  _Alignas(64) _Atomic int nidle;
  /* Workers searching for work ("Searching"). No data is published through
   * it: relaxed RMWs, and the loads that decide a wake-up follow a seq_cst
   * fence (the Dekker argument in the opening comment). */
  _Alignas(64) _Atomic int nsearching;
  /* Of those, the ones spinning now; at most max_spinning. A counter
   * guarding a resource (CPU time), no data and no duty to wake anyone:
   * relaxed RMWs. Kept apart from nsearching so that a worker just woken for
   * a job does not stop a worker that has just run out of work from
   * spinning: that one would park, and be woken for the next job. */
  _Alignas(64) _Atomic int nspinning;
  int max_spinning;
  pthread_mutex_t park_lock;
  rt_worker *idle;           /* under park_lock; head = most recently parked */
  rt_worker *spare;          /* under park_lock; singly linked via next */
  int nsettled;              /* under park_lock */
  bool draining;             /* under park_lock */
  _Atomic uint32_t quiesced; /* futex word the destroyer waits on */
  _Atomic bool stop;
};

static _Thread_local rt_worker *tls_worker;

/* An outside thread's ring, for the scheduler whose id it names. */
static _Thread_local struct {
  uint64_t sched_id;
  rt_ring *ring; /* NULL: none was left (use the injector) */
} tls_ring;
static _Atomic uint64_t g_sched_ids = 1; /* relaxed: only uniqueness matters */

static inline bool ours(const rt_sched *s, const rt_worker *w) {
  return w && w->s == s;
}

/* ---- idle and spare lists (park_lock held) ------------------------------ */

static void idle_push(rt_sched *s, rt_worker *w) {
  w->prev = NULL;
  w->next = s->idle;
  if (s->idle) s->idle->prev = w;
  s->idle = w;
  /* relaxed RMW: the seq_cst fence the sleeper issues right after unlocking
   * orders it before the re-check (see "Parking"). */
  atomic_fetch_add_explicit(&s->nidle, 1, memory_order_relaxed);
}

static void idle_remove(rt_sched *s, rt_worker *w) {
  if (w->prev)
    w->prev->next = w->next;
  else
    s->idle = w->next;
  if (w->next) w->next->prev = w->prev;
  w->prev = w->next = NULL;
  /* relaxed: a stale larger value only costs a lock round trip in notify. */
  atomic_fetch_sub_explicit(&s->nidle, 1, memory_order_relaxed);
}

static void spare_push(rt_sched *s, rt_worker *w) {
  w->prev = NULL;
  w->next = s->spare;
  s->spare = w;
}

/* Called whenever nsettled grows: wakes the destroyer at quiescence. */
static void settle_locked(rt_sched *s) {
  s->nsettled++;
  /* relaxed: nthreads only changes under park_lock, which we hold. */
  if (s->draining && s->nsettled == atomic_load_explicit(&s->nthreads, memory_order_relaxed)) {
    /* release/acquire through the futex word is not needed for data (the
     * destroyer re-takes park_lock); release keeps it simple to reason. */
    atomic_store_explicit(&s->quiesced, 1, memory_order_release);
    rt_prim_futex_wake(&s->quiesced, 1);
  }
}

/* Wake a worker already taken off a list. Call without park_lock. */
static void unpark(rt_worker *w) {
  /* release: pairs with the acquire load in park_wait; the waker's writes
   * (stop flag, list state) happen before the worker resumes. */
  atomic_store_explicit(&w->park_word, 1, memory_order_release);
  rt_prim_futex_wake(&w->park_word, 1);
}

static void park_wait(rt_worker *w) {
  /* acquire: pairs with unpark's release store. */
  while (atomic_load_explicit(&w->park_word, memory_order_acquire) == 0)
    rt_prim_futex_wait(&w->park_word, 0, UINT64_MAX);
  /* relaxed: only this worker resets its word, and nobody sets it again
   * until this worker is back on a list (under park_lock, which orders it). */
  atomic_store_explicit(&w->park_word, 0, memory_order_relaxed);
}

/* ---- waking ------------------------------------------------------------- */

/* Rule W: unless a worker searches, take one idle worker off the list as a
 * searcher and wake it. The caller has published work and then issued a
 * seq_cst fence. */
static void wake_searcher(rt_sched *s) {
  /* A searcher will find the job: no wake-up (and no syscall). It cannot
   * miss it: it leaves nsearching before its own fence and look at the
   * queues, so if our load still counts it, the two fences order our job
   * before its look ("Searching"). relaxed: ordered by the caller's fence. */
  if (atomic_load_explicit(&s->nsearching, memory_order_relaxed) > 0) return;
  /* relaxed: ordered by the fence; 0 means every worker that could have
   * missed our job has not yet done its own fence + re-check. */
  if (atomic_load_explicit(&s->nidle, memory_order_relaxed) == 0) return;
  pthread_mutex_lock(&s->park_lock);
  rt_worker *w = s->idle;
  bool was_settled = false;
  /* relaxed, under the lock: a searcher counted by another waker since our
   * load above (it read the same fence-ordered state) answers for our job
   * as well, by the argument above; waking a second one would be a herd. */
  if (w && atomic_load_explicit(&s->nsearching, memory_order_relaxed) == 0) {
    idle_remove(s, w);
    was_settled = w->state == W_SETTLED;
    if (was_settled) s->nsettled--;
    w->state = W_RUNNING; /* an announced worker sees this and does not sleep */
    /* It answers for our job from now on, before it even runs. relaxed: as
     * every nsearching RMW. */
    w->searching = true;
    atomic_fetch_add_explicit(&s->nsearching, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&s->park_lock);
  if (was_settled) unpark(w);
}

/* Called after publishing a job: the submitter half of the Dekker pattern,
 * publish ; fence ; load nsearching and nidle. */
static void notify_one(rt_sched *s) {
  rt_sched_fence_seq_cst();
  wake_searcher(s);
}

/* ---- finding work ------------------------------------------------------- */

static inline uint64_t xorshift64(uint64_t *x) {
  uint64_t v = *x;
  v ^= v << 13, v ^= v >> 7, v ^= v << 17;
  return *x = v;
}

static rt_job *steal_round(rt_sched *s, rt_worker *w) {
  /* acquire: pairs with the release store in spawn_locked, so workers[i] and
   * its initialised deque are visible. */
  int n = atomic_load_explicit(&s->nthreads, memory_order_acquire);
  if (n <= 1) return NULL;
  int start = (int)(xorshift64(&w->rng) % (uint64_t)n);
  for (int attempt = 0; attempt < 3; attempt++) {
    bool contended = false;
    for (int i = 0; i < n; i++) {
      rt_worker *v = s->workers[(start + i) % n];
      if (v == w) continue;
      void *x;
      rt_deque_steal_result r = rt_deque_steal(&v->dq, &x);
      if (r == RT_DEQUE_STOLEN) return x;
      if (r == RT_DEQUE_ABORT) contended = true;
    }
    if (!contended) break;
  }
  return NULL;
}

/* True if any queue may hold a job. Callers issue a seq_cst fence first. */
static bool work_visible(rt_sched *s) {
  if (rt_injector_maybe_nonempty(&s->inj)) return true;
  /* acquire: as in take_rings. */
  int nr = atomic_load_explicit(&s->nrings, memory_order_acquire);
  for (int i = 0; i < nr; i++)
    if (rt_ring_len(s->rings[i])) return true;
  /* acquire: as in steal_round. */
  int n = atomic_load_explicit(&s->nthreads, memory_order_acquire);
  for (int i = 0; i < n; i++)
    if (rt_deque_maybe_nonempty(&s->workers[i]->dq)) return true;
  return false;
}

/* How many of `queued` jobs one worker takes at once: its share. */
static size_t batch_share(rt_sched *s, size_t queued) {
  /* relaxed: only sizes the batch (0 while the first threads start). */
  int threads = atomic_load_explicit(&s->nthreads, memory_order_relaxed);
  size_t want = queued / (size_t)(threads > 0 ? threads : 1) + 1;
  return want > RT_SCHED_OUTSIDE_BATCH ? RT_SCHED_OUTSIDE_BATCH : want;
}

/* A batch from the outside threads' rings, starting at a rotating one so
 * that every ring is served. */
static size_t take_rings(rt_sched *s, rt_worker *w, rt_job **got) {
  /* acquire: pairs with the release that published rings[i] (ring_of). */
  int n = atomic_load_explicit(&s->nrings, memory_order_acquire);
  for (int k = 0; k < n; k++) {
    rt_ring *r = s->rings[(w->ring_cursor + (uint32_t)k) % (uint32_t)n];
    uint32_t len = rt_ring_len(r);
    if (!len) continue;
    size_t got_n = rt_ring_pop(r, got, batch_share(s, len));
    if (got_n) {
      w->ring_cursor += (uint32_t)k + 1;
      /* The records behind the pointers: both lines a run reads first. */
      for (size_t i = 0; i < got_n; i++) {
        __builtin_prefetch(got[i], 1);
        __builtin_prefetch((char *)got[i] + 64, 1);
      }
      return got_n;
    }
  }
  return 0;
}

/* Work from outside the pool: the oldest job of the first non-empty ring
 * (take_rings), else of the injector, with a share of those behind it moved
 * to w's deque (pushed youngest first: w pops them oldest first, thieves
 * take the youngest). NULL: none for us right now (see rt_injector_pop). */
static rt_job *take_outside(rt_sched *s, rt_worker *w) {
  rt_job *got[RT_SCHED_OUTSIDE_BATCH];
  size_t n = take_rings(s, w, got);
  if (n == 0) {
    n = rt_injector_pop_batch(&s->inj, got, batch_share(s, rt_injector_len(&s->inj)));
    if (n == 0) return NULL;
    /* Popping read each job's first line; start fetching the next one,
     * which its run reads too (sched.h), for all of them at once. */
    for (size_t i = 0; i < n; i++) __builtin_prefetch((char *)got[i] + 64, 1);
  }
  for (size_t i = n; i-- > 1;)
    if (rt_deque_push(&w->dq, got[i]) != 0)
      rt_injector_push(&s->inj, got[i]); /* the deque could not grow: back it goes */
  /* Others may now steal what we took: wake one if none searches. A
   * searcher skips this: its hand-on (search_end) does the same. */
  if (n > 1 && !w->searching) notify_one(s);
  return got[0];
}

/* Leave nsearching (rules H and P). With a job in hand (took_job): hand the
 * search on if jobs are still queued and nobody else searches, before the
 * caller runs the job. Without: the caller parks or retires next, and the
 * re-check there does the same after its own fence. */
static void search_end(rt_sched *s, rt_worker *w, bool took_job) {
  w->searching = false;
  /* relaxed: the fence below (or the caller's parking fence) orders it
   * before our look at the queues, which is all the argument needs. */
  atomic_fetch_sub_explicit(&s->nsearching, 1, memory_order_relaxed);
  if (!took_job) return;
  rt_sched_fence_seq_cst(); /* decrement ; fence ; look: as a sleeper's re-check */
  /* relaxed: ordered by the fence. nsearching > 0: those searchers answer
   * for what is queued (they leave after this load and look after their
   * fence). nidle == 0: whoever parks next re-checks after its own fence.
   * Both are cheaper than work_visible's scan, so they go first. */
  if (atomic_load_explicit(&s->nsearching, memory_order_relaxed) > 0) return;
  if (atomic_load_explicit(&s->nidle, memory_order_relaxed) == 0) return;
  if (work_visible(s)) wake_searcher(s);
}

/* Spins for up to RT_SCHED_SPIN_NS, looking at the queues between pauses. */
static rt_job *spin_one(rt_sched *s, rt_worker *w) {
  uint64_t until = rt_prim_now_ns() + RT_SCHED_SPIN_NS;
  for (int round = 0;; round++) {
    for (int k = 0; k < (1 << (round < 5 ? round : 5)); k++) rt_prim_pause();
    rt_job *j = take_outside(s, w);
    if (!j) j = steal_round(s, w);
    if (j) return j;
    if (round % RT_SCHED_SPIN_YIELD == RT_SCHED_SPIN_YIELD - 1) {
      if (rt_prim_now_ns() >= until) return NULL;
      rt_prim_yield();
    }
  }
}

/* Spinning workers compete for cores with the threads that feed them; as in
 * Go and Tokio, at most half the workers (at least one) spin, the rest park
 * at once, searchers too (a searcher has made its pass over the queues by
 * now, as Go's spinning Ms do). Returns a job with the search still on
 * (worker_main ends it), or NULL with it ended. */
static rt_job *spin_for_job(rt_sched *s, rt_worker *w) {
  /* relaxed: see nspinning. */
  int n = atomic_load_explicit(&s->nspinning, memory_order_relaxed);
  do {
    if (n >= s->max_spinning) {
      /* A searcher that may not spin parks instead: its re-check answers
       * for what it was searching for (rule P). */
      if (w->searching) search_end(s, w, false);
      return NULL;
    }
  } while (!atomic_compare_exchange_weak_explicit(&s->nspinning, &n, n + 1, memory_order_relaxed,
                                                  memory_order_relaxed));
  if (!w->searching) {
    w->searching = true;
    /* relaxed: see nsearching. */
    atomic_fetch_add_explicit(&s->nsearching, 1, memory_order_relaxed);
  }
  rt_job *j = spin_one(s, w);
  atomic_fetch_sub_explicit(&s->nspinning, 1, memory_order_relaxed);
  if (!j) search_end(s, w, false);
  return j;
}

/* ---- parking ------------------------------------------------------------ */

/*
 * Park on the idle list. Returns true when the pool is stopping; false when
 * the worker should look for work again, then as a searcher if a waker or
 * its re-check sent it (w->searching).
 */
static bool park_idle(rt_sched *s, rt_worker *w) {
  assert(!w->searching);
  pthread_mutex_lock(&s->park_lock);
  w->state = W_ANNOUNCED;
  idle_push(s, w);
  pthread_mutex_unlock(&s->park_lock);

  /* The sleeper half of the Dekker pattern: nidle++ ; fence ; re-check. */
  rt_sched_fence_seq_cst();
  bool found = work_visible(s);

  pthread_mutex_lock(&s->park_lock);
  if (w->state != W_ANNOUNCED) {
    /* A waker took us off the list and made us a searcher for its job
     * (wake_searcher): the hand-on after we take a job covers the rest. */
    pthread_mutex_unlock(&s->park_lock);
    return false;
  }
  if (found) {
    /* Rule P: the submitters of what we saw may have skipped their wake-up
     * (they saw us or another searcher counted, or nidle == 0 before our
     * push): search for it, and hand on. relaxed: see nsearching. */
    idle_remove(s, w);
    w->state = W_RUNNING;
    pthread_mutex_unlock(&s->park_lock);
    w->searching = true;
    atomic_fetch_add_explicit(&s->nsearching, 1, memory_order_relaxed);
    return false;
  }
  w->state = W_SETTLED;
  settle_locked(s);
  pthread_mutex_unlock(&s->park_lock);

  park_wait(w);
  /* relaxed: the destroyer stores stop before unpark's release store, which
   * park_wait acquired. (A waker may also have set w->searching.) */
  return atomic_load_explicit(&s->stop, memory_order_relaxed);
}

/* Claim one unit of surplus (active > nworkers), if there is one. */
static bool claim_surplus(rt_sched *s) {
  int a = atomic_load_explicit(&s->active, memory_order_relaxed);
  while (a > s->nworkers)
    if (atomic_compare_exchange_weak_explicit(&s->active, &a, a - 1, memory_order_relaxed,
                                              memory_order_relaxed))
      return true;
  return false;
}

/* Park as a spare after claim_surplus. Returns true when the pool is stopping. */
static bool park_spare(rt_sched *s, rt_worker *w) {
  /* We may have been woken for a job that we now leave to others: the
   * submitter took us off the idle list under park_lock after publishing it,
   * so the job is visible to us unless someone took it already. Stop
   * searching, then hand the wake-up on (rule P), and do it before settling:
   * settling first could let the destroyer see every thread settled while
   * that job still waits. */
  if (w->searching) search_end(s, w, false);
  rt_sched_fence_seq_cst();
  if (work_visible(s)) wake_searcher(s);
  pthread_mutex_lock(&s->park_lock);
  w->state = W_SETTLED;
  spare_push(s, w);
  settle_locked(s);
  pthread_mutex_unlock(&s->park_lock);
  park_wait(w);
  return atomic_load_explicit(&s->stop, memory_order_relaxed); /* as in park_idle */
}

/* ---- threads ------------------------------------------------------------ */

static void *worker_main(void *arg) {
  rt_worker *w = arg;
  rt_sched *s = w->s;
  tls_worker = w;
  for (;;) {
    rt_job *j = NULL;
    if (++w->tick % RT_SCHED_OUTSIDE_EVERY == 0) j = take_outside(s, w);
    if (!j) j = rt_deque_pop(&w->dq);
    if (!j) {
      /* Own deque empty: the one point where a surplus thread may retire,
       * since it owns no queued work. */
      if (claim_surplus(s)) {
        if (park_spare(s, w)) break;
        continue;
      }
      j = take_outside(s, w);
      if (!j) j = steal_round(s, w);
      if (!j) j = spin_for_job(s, w);
      if (!j) {
        if (park_idle(s, w)) break;
        continue;
      }
    }
    /* Rule H: a searcher hands the search on before it runs its job. */
    if (w->searching) search_end(s, w, true);
    w->help_floor = rt_deque_mark(&w->dq);
    j->run(j); /* may free j */
  }
  tls_worker = NULL;
  return NULL;
}

/* Create worker number nthreads. park_lock held (or single-threaded create). */
static int spawn_locked(rt_sched *s) {
  int i = atomic_load_explicit(&s->nthreads, memory_order_relaxed); /* under lock */
  if (i >= s->max_threads) return EAGAIN;
  size_t size = (sizeof(rt_worker) + 63) & ~(size_t)63;
  rt_worker *w = rt_aligned_alloc(64, size);
  if (!w) return ENOMEM;
  memset(w, 0, size);
  int rc = rt_deque_init(&w->dq, RT_SCHED_DEQUE_CAP);
  if (rc) {
    free(w);
    return rc;
  }
  w->s = s;
  w->index = i;
  rt_prim_random(&w->rng, sizeof w->rng);
  w->rng |= 1; /* xorshift state must not be 0 */
  w->state = W_RUNNING;
  atomic_init(&w->park_word, 0);
  s->workers[i] = w;
  /* The new thread may read nthreads before the store below: it then just
   * does not steal from itself or later threads yet. It cannot take park_lock
   * (to settle) before we release it, so nsettled never outruns nthreads. */
  rc = pthread_create(&w->thread, NULL, worker_main, w);
  if (rc) {
    s->workers[i] = NULL;
    rt_deque_destroy(&w->dq);
    free(w);
    return rc;
  }
  /* release: publishes workers[i] and its deque to lock-free readers. */
  atomic_store_explicit(&s->nthreads, i + 1, memory_order_release);
  return 0;
}

static void drain_and_free(rt_sched *s) {
  pthread_mutex_lock(&s->park_lock);
  s->draining = true;
  bool done = s->nsettled == atomic_load_explicit(&s->nthreads, memory_order_relaxed);
  pthread_mutex_unlock(&s->park_lock);
  if (!done) {
    /* acquire: pairs with settle_locked's release. */
    while (atomic_load_explicit(&s->quiesced, memory_order_acquire) == 0)
      rt_prim_futex_wait(&s->quiesced, 0, UINT64_MAX);
  }
  /* relaxed: published to each worker by unpark's release store. */
  atomic_store_explicit(&s->stop, true, memory_order_relaxed);

  pthread_mutex_lock(&s->park_lock);
  /* Quiescent: every thread is on the idle or the spare list, settled. */
  rt_worker *wake = NULL;
  while (s->idle) {
    rt_worker *w = s->idle;
    idle_remove(s, w);
    w->next = wake;
    wake = w;
  }
  while (s->spare) {
    rt_worker *w = s->spare;
    s->spare = w->next;
    w->next = wake;
    wake = w;
  }
  s->nsettled = 0;
  int n = atomic_load_explicit(&s->nthreads, memory_order_relaxed);
  pthread_mutex_unlock(&s->park_lock);
  for (rt_worker *w = wake, *next; w; w = next) {
    next = w->next; /* read before unpark: w may exit at once */
    unpark(w);
  }
  for (int i = 0; i < n; i++) {
    rt_worker *w = s->workers[i];
    pthread_join(w->thread, NULL);
    rt_deque_destroy(&w->dq);
    free(w);
  }
  for (int i = 0; i < atomic_load_explicit(&s->nrings, memory_order_relaxed); i++)
    free(s->rings[i]);
  pthread_mutex_destroy(&s->park_lock);
  free(s->workers);
  free(s);
}

/* ---- API ---------------------------------------------------------------- */

int rt_sched_create(int nworkers, rt_sched **out) {
  if (nworkers < 1 || !out) return EINVAL;
  if (nworkers > INT32_MAX / 2 - RT_SCHED_MAX_SPARES) return EINVAL;
  size_t size = (sizeof(rt_sched) + 63) & ~(size_t)63;
  rt_sched *s = rt_aligned_alloc(64, size);
  if (!s) return ENOMEM;
  memset(s, 0, size);
  s->nworkers = nworkers;
  s->max_spinning = nworkers / 2 > 1 ? nworkers / 2 : 1;
  s->max_threads = nworkers + RT_SCHED_MAX_SPARES;
  s->workers = rt_calloc((size_t)s->max_threads, sizeof *s->workers);
  if (!s->workers) {
    free(s);
    return ENOMEM;
  }
  rt_injector_init(&s->inj);
  s->id = atomic_fetch_add_explicit(&g_sched_ids, 1, memory_order_relaxed);
  atomic_init(&s->nrings, 0);
  atomic_init(&s->nthreads, 0);
  atomic_init(&s->active, nworkers);
  atomic_init(&s->nidle, 0);
  atomic_init(&s->nsearching, 0);
  atomic_init(&s->nspinning, 0);
  atomic_init(&s->quiesced, 0);
  atomic_init(&s->stop, false);
  int rc = pthread_mutex_init(&s->park_lock, NULL);
  if (rc) {
    free(s->workers);
    free(s);
    return rc;
  }
  pthread_mutex_lock(&s->park_lock);
  for (int i = 0; i < nworkers && rc == 0; i++) rc = spawn_locked(s);
  pthread_mutex_unlock(&s->park_lock);
  if (rc) {
    drain_and_free(s); /* no job was submitted: the started threads settle */
    return rc;
  }
  *out = s;
  return 0;
}

void rt_sched_destroy(rt_sched *s) {
  if (!s) return;
  assert(!ours(s, tls_worker) && "rt_sched_destroy called from its own worker");
  drain_and_free(s);
}

/* The calling outside thread's ring, made on its first submit; NULL when
 * RT_SCHED_MAX_RINGS are taken or memory ran out. */
static rt_ring *ring_of(rt_sched *s) {
  if (RT_LIKELY(tls_ring.sched_id == s->id)) return tls_ring.ring;
  rt_ring *r = NULL;
  pthread_mutex_lock(&s->park_lock);
  int n = atomic_load_explicit(&s->nrings, memory_order_relaxed); /* under the lock */
  if (n < RT_SCHED_MAX_RINGS && (r = rt_aligned_alloc(64, sizeof *r)) != NULL) {
    rt_ring_init(r);
    s->rings[n] = r;
    /* release: publishes the initialised ring to lock-free readers. */
    atomic_store_explicit(&s->nrings, n + 1, memory_order_release);
  }
  pthread_mutex_unlock(&s->park_lock);
  tls_ring.sched_id = s->id;
  tls_ring.ring = r;
  return r;
}

void rt_sched_submit(rt_sched *s, rt_job *job) {
  rt_worker *w = tls_worker;
  if (ours(s, w)) {
    if (rt_deque_push(&w->dq, job) != 0)
      rt_injector_push(&s->inj, job); /* the deque could not grow */
    notify_one(s);
    return;
  }
  /* An outside thread: its own ring. When that is full the workers are
   * behind: let them have the CPU once before queueing more, so the backlog
   * stays small enough to be in cache (a burst of a million submissions
   * would otherwise cycle a million records through memory). */
  rt_ring *r = ring_of(s);
  if (r) {
    bool queued = rt_ring_push(r, job);
    if (!queued) {
      notify_one(s);
      rt_prim_yield();
      queued = rt_ring_push(r, job);
    }
    if (queued) {
      notify_one(s);
      return;
    }
  }
  rt_injector_push(&s->inj, job);
  notify_one(s);
  if (rt_injector_len(&s->inj) > RT_SCHED_BACKLOG) rt_prim_yield();
}

void rt_sched_block_begin(rt_sched *s) {
  rt_worker *w = tls_worker;
  if (!ours(s, w) || w->block_depth++ > 0) return;
  /* relaxed: see the comment on active. */
  int a = atomic_fetch_sub_explicit(&s->active, 1, memory_order_relaxed) - 1;
  if (a >= s->nworkers) return; /* a surplus thread is still running: no need */
  pthread_mutex_lock(&s->park_lock);
  rt_worker *v = s->spare;
  if (v) {
    s->spare = v->next;
    v->next = NULL;
    s->nsettled--;
    v->state = W_RUNNING;
    atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->park_lock);
    unpark(v);
    return;
  }
  /* No spare: start one. If that fails (limit or resources) the pool runs
   * with one thread less until block_end; a chain deeper than the limit can
   * then deadlock, which is the documented bound. */
  if (spawn_locked(s) == 0) atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
  pthread_mutex_unlock(&s->park_lock);
}

void rt_sched_block_end(rt_sched *s) {
  rt_worker *w = tls_worker;
  if (!ours(s, w)) return;
  assert(w->block_depth > 0 && "rt_sched_block_end without block_begin");
  if (--w->block_depth > 0) return;
  int a = atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed) + 1;
  /* relaxed: a hint; missing an idle worker leaves the surplus to the
   * running workers' claim_surplus. */
  if (a <= s->nworkers || atomic_load_explicit(&s->nidle, memory_order_relaxed) == 0) return;
  /* Retire a settled idle worker straight to the spare list: it is asleep
   * either way, and it will not wake up to run a job as a surplus thread. */
  pthread_mutex_lock(&s->park_lock);
  for (rt_worker *v = s->idle; v; v = v->next) {
    if (v->state != W_SETTLED) continue; /* announced ones may have found work */
    if (claim_surplus(s)) {
      idle_remove(s, v);
      spare_push(s, v); /* stays settled and asleep */
    }
    break;
  }
  pthread_mutex_unlock(&s->park_lock);
}

/* Jobs run by help nest on the waiter's stack, one frame chain per level:
 * a deque of thousands of jobs that all block (on something none of them
 * makes) would otherwise nest thousands deep and overflow the stack. Past
 * this depth a wait blocks and the pool compensates with a spare. */
#define RT_SCHED_HELP_DEPTH 128
static _Thread_local int tls_help_depth;

bool rt_sched_nest_enter(void) {
  if (tls_help_depth >= RT_SCHED_HELP_DEPTH) return false;
  tls_help_depth++;
  return true;
}

void rt_sched_nest_exit(void) {
  tls_help_depth--;
}

bool rt_sched_help(rt_sched *s) {
  rt_worker *w = tls_worker;
  if (!ours(s, w) || tls_help_depth >= RT_SCHED_HELP_DEPTH) return false;
  /* Only what the waiting job pushed itself: a job queued before it (a
   * batch from a ring, an older sibling) may wait for something the waiting
   * job makes after its wait, and running it on top would deadlock. */
  if (rt_deque_mark(&w->dq) <= w->help_floor) return false;
  rt_job *j = rt_deque_pop(&w->dq);
  if (!j) return false;
  int64_t floor = w->help_floor;
  w->help_floor = rt_deque_mark(&w->dq);
  tls_help_depth++;
  j->run(j); /* may free j */
  tls_help_depth--;
  w->help_floor = floor;
  return true;
}

int rt_sched_worker_index(const rt_sched *s) {
  rt_worker *w = tls_worker;
  return ours(s, w) ? w->index : -1;
}

int rt_sched_max_workers(const rt_sched *s) {
  return s->max_threads;
}
