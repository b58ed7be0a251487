/*
 * test_sched.c - the work-stealing deque, the injector and the scheduler.
 *
 * Loop counts shrink under sanitizers (SCALE) so every test stays well under
 * its time limit there too. No test asserts on timing except the idle-CPU
 * sanity check, whose margin is generous (50 ms of CPU in 200 ms of idling),
 * and test_sleeping_jobs_overlap, which needs four wake-ups in 100 ms.
 */
#define _GNU_SOURCE
/* cmocka needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

#include "core/prim.h"
#include "sched/deque.h"
#include "sched/injector.h"
#include "sched/ring.h"
#include "sched/sched.h"

/* Sanitizers slow the code down 5-20x: TSan most, so it gets the smallest loops. */
#include "test_util.h" /* RT_TEST_TSAN, RT_TEST_ASAN */
#if defined(RT_TEST_TSAN)
#define RT_TEST_SLOW 1
#define SCALE(n) ((n) / 10)
#elif defined(RT_TEST_ASAN)
#define RT_TEST_SLOW 1
#define SCALE(n) ((n) / 4)
#else
#define SCALE(n) (n)
#endif

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))
#define ITEM(i) ((void *)(uintptr_t)((i) + 1))
#define INDEX(p) ((size_t)(uintptr_t)(p)-1)

/* ---- deque ---------------------------------------------------------------- */

static void test_deque_pop_is_lifo_and_steal_is_fifo(void **state) {
  (void)state;
  rt_deque d;
  assert_int_equal(rt_deque_init(&d, 16), 0);
  void *x = NULL;
  assert_null(rt_deque_pop(&d));
  assert_int_equal(rt_deque_steal(&d, &x), RT_DEQUE_EMPTY);
  assert_false(rt_deque_maybe_nonempty(&d));
  for (size_t i = 0; i < 6; i++) assert_int_equal(rt_deque_push(&d, ITEM(i)), 0);
  assert_true(rt_deque_maybe_nonempty(&d));
  assert_ptr_equal(rt_deque_pop(&d), ITEM(5)); /* owner: newest */
  assert_int_equal(rt_deque_steal(&d, &x), RT_DEQUE_STOLEN);
  assert_ptr_equal(x, ITEM(0)); /* thief: oldest */
  assert_int_equal(rt_deque_steal(&d, &x), RT_DEQUE_STOLEN);
  assert_ptr_equal(x, ITEM(1));
  assert_ptr_equal(rt_deque_pop(&d), ITEM(4));
  assert_ptr_equal(rt_deque_pop(&d), ITEM(3));
  assert_ptr_equal(rt_deque_pop(&d), ITEM(2));
  assert_null(rt_deque_pop(&d));
  assert_int_equal(rt_deque_steal(&d, &x), RT_DEQUE_EMPTY);
  /* Usable again after running empty. */
  assert_int_equal(rt_deque_push(&d, ITEM(7)), 0);
  assert_int_equal(rt_deque_steal(&d, &x), RT_DEQUE_STOLEN);
  assert_ptr_equal(x, ITEM(7));
  assert_null(rt_deque_pop(&d));
  rt_deque_destroy(&d);
}

static void test_deque_grows_and_keeps_order(void **state) {
  (void)state;
  rt_deque d;
  assert_int_equal(rt_deque_init(&d, 2), 0);
  const size_t n = 10000;
  void *x;
  /* Interleave steals so the live window wraps around the buffer while it
   * grows. */
  size_t stolen = 0;
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(rt_deque_push(&d, ITEM(i)), 0);
    if (i % 3 == 0) {
      assert_int_equal(rt_deque_steal(&d, &x), RT_DEQUE_STOLEN);
      assert_ptr_equal(x, ITEM(stolen));
      stolen++;
    }
  }
  for (size_t i = n; i-- > stolen;) assert_ptr_equal(rt_deque_pop(&d), ITEM(i));
  assert_null(rt_deque_pop(&d));
  rt_deque_destroy(&d);
}

enum { STRESS_THIEVES = 3 };
typedef struct deque_stress {
  rt_deque d;
  size_t n;
  _Atomic uint8_t *taken; /* per item: how many times it was taken */
  atomic_bool done;
  atomic_size_t stolen;
} deque_stress;

static void take(deque_stress *st, void *x) {
  assert_non_null(x);
  size_t i = INDEX(x);
  assert_true(i < st->n);
  atomic_fetch_add(&st->taken[i], 1);
}

static void *stress_thief(void *arg) {
  deque_stress *st = arg;
  size_t mine = 0;
  for (;;) {
    /* Read done before trying, so a final empty steal after done is final. */
    bool done = atomic_load(&st->done);
    void *x;
    rt_deque_steal_result r = rt_deque_steal(&st->d, &x);
    if (r == RT_DEQUE_STOLEN) {
      take(st, x);
      mine++;
    } else if (r == RT_DEQUE_EMPTY && done) {
      break;
    }
  }
  atomic_fetch_add(&st->stolen, mine);
  return NULL;
}

static void test_deque_concurrent_steal_takes_each_item_once(void **state) {
  (void)state;
  deque_stress st;
  memset(&st, 0, sizeof st);
  st.n = SCALE(2000000);
  st.taken = calloc(st.n, 1);
  assert_non_null(st.taken);
  assert_int_equal(rt_deque_init(&st.d, 4), 0); /* small: growth under contention */
  pthread_t th[STRESS_THIEVES];
  for (int i = 0; i < STRESS_THIEVES; i++)
    assert_int_equal(pthread_create(&th[i], NULL, stress_thief, &st), 0);
  size_t popped = 0;
  uint64_t rng = 88172645463325252ull;
  for (size_t i = 0; i < st.n; i++) {
    assert_int_equal(rt_deque_push(&st.d, ITEM(i)), 0);
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    /* Pop about half as often as we push, in bursts, so the deque is often
     * near empty (owner/thief races on the last item) and sometimes long. */
    if (rng % 8 < 3) {
      for (unsigned k = (unsigned)(rng >> 8) % 4; k > 0; k--) {
        void *x = rt_deque_pop(&st.d);
        if (!x) break;
        take(&st, x);
        popped++;
      }
    }
  }
  for (void *x; (x = rt_deque_pop(&st.d)) != NULL; popped++) take(&st, x);
  atomic_store(&st.done, true);
  for (int i = 0; i < STRESS_THIEVES; i++) pthread_join(th[i], NULL);
  assert_int_equal(popped + atomic_load(&st.stolen), st.n);
  for (size_t i = 0; i < st.n; i++)
    if (atomic_load_explicit(&st.taken[i], memory_order_relaxed) != 1)
      fail_msg("item %zu taken %u times", i, (unsigned)st.taken[i]);
  rt_deque_destroy(&st.d);
  free(st.taken);
}

/* ---- injector ------------------------------------------------------------- */

typedef struct counted_job {
  rt_job job;
  atomic_uint ran;
} counted_job;

static void test_injector_is_fifo(void **state) {
  (void)state;
  rt_injector q;
  rt_injector_init(&q);
  counted_job j[5];
  assert_null(rt_injector_pop(&q));
  assert_false(rt_injector_maybe_nonempty(&q));
  for (int i = 0; i < 5; i++) rt_injector_push(&q, &j[i].job);
  assert_true(rt_injector_maybe_nonempty(&q));
  for (int i = 0; i < 5; i++) assert_ptr_equal(rt_injector_pop(&q), &j[i].job);
  assert_null(rt_injector_pop(&q));
  assert_false(rt_injector_maybe_nonempty(&q));
  rt_injector_push(&q, &j[2].job); /* reuse after running empty */
  assert_ptr_equal(rt_injector_pop(&q), &j[2].job);
  assert_null(rt_injector_pop(&q));
}

enum { INJ_PRODUCERS = 4, INJ_CONSUMERS = 2 };
typedef struct inj_stress {
  rt_injector q;
  counted_job *jobs;
  size_t per_producer;
  atomic_int producers_done;
  int next_producer;
  pthread_mutex_t mu;
} inj_stress;

static void *inj_producer(void *arg) {
  inj_stress *st = arg;
  pthread_mutex_lock(&st->mu);
  size_t p = (size_t)st->next_producer++;
  pthread_mutex_unlock(&st->mu);
  for (size_t i = 0; i < st->per_producer; i++)
    rt_injector_push(&st->q, &st->jobs[p * st->per_producer + i].job);
  atomic_fetch_add(&st->producers_done, 1);
  return NULL;
}

/* Consumers stop as soon as every producer is done and the queue says it is
 * empty: if maybe_nonempty ever said "empty" with jobs still queued (as a bare
 * head == &stub test would, see injector.c), jobs would be left unrun. */
static void *inj_consumer(void *arg) {
  inj_stress *st = arg;
  for (;;) {
    bool producers_done = atomic_load(&st->producers_done) == INJ_PRODUCERS;
    rt_job *j = rt_injector_pop(&st->q);
    if (j) {
      atomic_fetch_add(&container_of(j, counted_job, job)->ran, 1);
      continue;
    }
    if (producers_done && !rt_injector_maybe_nonempty(&st->q)) break;
  }
  return NULL;
}

static void test_injector_many_producers_many_consumers(void **state) {
  (void)state;
  inj_stress st;
  memset(&st, 0, sizeof st);
  rt_injector_init(&st.q);
  pthread_mutex_init(&st.mu, NULL);
  st.per_producer = SCALE(400000);
  st.jobs = calloc(INJ_PRODUCERS * st.per_producer, sizeof *st.jobs);
  assert_non_null(st.jobs);
  pthread_t p[INJ_PRODUCERS], c[INJ_CONSUMERS];
  for (int i = 0; i < INJ_CONSUMERS; i++) pthread_create(&c[i], NULL, inj_consumer, &st);
  for (int i = 0; i < INJ_PRODUCERS; i++) pthread_create(&p[i], NULL, inj_producer, &st);
  for (int i = 0; i < INJ_PRODUCERS; i++) pthread_join(p[i], NULL);
  for (int i = 0; i < INJ_CONSUMERS; i++) pthread_join(c[i], NULL);
  for (size_t i = 0; i < INJ_PRODUCERS * st.per_producer; i++)
    assert_int_equal(atomic_load(&st.jobs[i].ran), 1);
  assert_null(rt_injector_pop(&st.q));
  free(st.jobs);
  pthread_mutex_destroy(&st.mu);
}

/* ---- ring (an outside thread's queue) ------------------------------------- */

static void test_ring_is_fifo_bounded_and_pops_in_batches(void **state) {
  (void)state;
  rt_ring *r = aligned_alloc(64, sizeof *r);
  assert_non_null(r);
  rt_ring_init(r);
  counted_job *j = calloc(RT_RING_CAP + 1, sizeof *j);
  assert_non_null(j);
  rt_job *out[8];
  assert_int_equal(rt_ring_pop(r, out, 8), 0);
  assert_int_equal(rt_ring_len(r), 0);
  for (int i = 0; i < RT_RING_CAP; i++) assert_true(rt_ring_push(r, &j[i].job));
  assert_int_equal(rt_ring_len(r), RT_RING_CAP);
  assert_false(rt_ring_push(r, &j[RT_RING_CAP].job)); /* full: refused, not lost */
  assert_int_equal(rt_ring_pop(r, out, 5), 5);
  for (int i = 0; i < 5; i++) assert_ptr_equal(out[i], &j[i].job);
  assert_true(rt_ring_push(r, &j[RT_RING_CAP].job)); /* room again, in a reused slot */
  size_t next = 5;
  for (size_t n; (n = rt_ring_pop(r, out, 8)) != 0;)
    for (size_t k = 0; k < n; k++) assert_ptr_equal(out[k], &j[next++].job);
  assert_int_equal(next, RT_RING_CAP + 1);
  assert_int_equal(rt_ring_len(r), 0);
  free(j);
  free(r);
}

enum { RING_CONSUMERS = 3 };
typedef struct ring_stress {
  rt_ring *r;
  counted_job *jobs;
  size_t n;
  atomic_int producer_done;
} ring_stress;

static void *ring_producer(void *arg) {
  ring_stress *st = arg;
  for (size_t i = 0; i < st->n; i++)
    while (!rt_ring_push(st->r, &st->jobs[i].job)) sched_yield(); /* full: wait for consumers */
  atomic_store(&st->producer_done, 1);
  return NULL;
}

static void *ring_consumer(void *arg) {
  ring_stress *st = arg;
  rt_job *out[32];
  unsigned seed = (unsigned)(uintptr_t)&out;
  for (;;) {
    bool done = atomic_load(&st->producer_done);
    size_t n = rt_ring_pop(st->r, out, 1 + rand_r(&seed) % 32);
    for (size_t k = 0; k < n; k++)
      atomic_fetch_add(&container_of(out[k], counted_job, job)->ran, 1);
    if (!n && done && rt_ring_len(st->r) == 0) break;
  }
  return NULL;
}

static void test_ring_one_producer_many_consumers(void **state) {
  (void)state;
  ring_stress st = {.n = SCALE(1000000)};
  st.r = aligned_alloc(64, sizeof *st.r);
  st.jobs = calloc(st.n, sizeof *st.jobs);
  assert_true(st.r && st.jobs);
  rt_ring_init(st.r);
  pthread_t p, c[RING_CONSUMERS];
  for (int i = 0; i < RING_CONSUMERS; i++) pthread_create(&c[i], NULL, ring_consumer, &st);
  pthread_create(&p, NULL, ring_producer, &st);
  pthread_join(p, NULL);
  for (int i = 0; i < RING_CONSUMERS; i++) pthread_join(c[i], NULL);
  for (size_t i = 0; i < st.n; i++)
    if (atomic_load(&st.jobs[i].ran) != 1)
      fail_msg("job %zu taken %u times", i, atomic_load(&st.jobs[i].ran));
  free(st.jobs);
  free(st.r);
}

/* ---- scheduler ------------------------------------------------------------ */

static void counted_run(rt_job *j) {
  /* relaxed: destroy (thread join) orders it before the check. */
  atomic_fetch_add_explicit(&container_of(j, counted_job, job)->ran, 1, memory_order_relaxed);
}

static counted_job *counted_jobs(size_t n) {
  counted_job *jobs = calloc(n, sizeof *jobs);
  assert_non_null(jobs);
  for (size_t i = 0; i < n; i++) jobs[i].job.run = counted_run;
  return jobs;
}

static void assert_each_ran_once(counted_job *jobs, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (atomic_load(&jobs[i].ran) != 1)
      fail_msg("job %zu ran %u times", i, atomic_load(&jobs[i].ran));
}

static void test_create_rejects_bad_arguments(void **state) {
  (void)state;
  rt_sched *s = (rt_sched *)0x1;
  assert_int_equal(rt_sched_create(0, &s), EINVAL);
  assert_int_equal(rt_sched_create(-3, &s), EINVAL);
  assert_ptr_equal(s, (rt_sched *)0x1); /* untouched on error */
  assert_int_equal(rt_sched_create(2, NULL), EINVAL);
  rt_sched_destroy(NULL);
}

static void test_outside_submissions_each_run_exactly_once(void **state) {
  (void)state;
  const size_t n = SCALE(1000000);
  counted_job *jobs = counted_jobs(n);
  rt_sched *s;
  assert_int_equal(rt_sched_create(2, &s), 0);
  for (size_t i = 0; i < n; i++) rt_sched_submit(s, &jobs[i].job);
  rt_sched_destroy(s); /* drains */
  assert_each_ran_once(jobs, n);
  free(jobs);
}

typedef struct tree_job {
  rt_job job;
  rt_sched *s;
  int depth;
  atomic_size_t *count;
} tree_job;

static void tree_run(rt_job *j) {
  tree_job *t = container_of(j, tree_job, job);
  if (t->depth > 0) {
    for (int k = 0; k < 2; k++) {
      tree_job *c = malloc(sizeof *c);
      assert_non_null(c);
      *c = (tree_job){{NULL, tree_run}, t->s, t->depth - 1, t->count};
      rt_sched_submit(t->s, &c->job);
    }
  }
  atomic_fetch_add_explicit(t->count, 1, memory_order_relaxed);
  free(t); /* run() may free its job */
}

static void test_jobs_submitted_by_jobs_all_run_before_destroy_returns(void **state) {
  (void)state;
#ifdef RT_TEST_SLOW
  const int depth = 12;
#else
  const int depth = 17;
#endif
  atomic_size_t count = 0;
  rt_sched *s;
  assert_int_equal(rt_sched_create(3, &s), 0);
  for (int r = 0; r < 2; r++) { /* two roots, from outside */
    tree_job *root = malloc(sizeof *root);
    *root = (tree_job){{NULL, tree_run}, s, depth, &count};
    rt_sched_submit(s, &root->job);
  }
  rt_sched_destroy(s);
  assert_int_equal(atomic_load(&count), 2 * (((size_t)1 << (depth + 1)) - 1));
}

enum { SUBMITTERS = 4 };
typedef struct submit_arg {
  rt_sched *s;
  counted_job *jobs;
  size_t n;
} submit_arg;

static void *submitter(void *arg) {
  submit_arg *a = arg;
  for (size_t i = 0; i < a->n; i++) rt_sched_submit(a->s, &a->jobs[i].job);
  return NULL;
}

/* `threads` outside threads each submit `per` jobs and exit; then destroy,
 * which drains: every job must have run exactly once. */
static void run_outside_submitters(int threads, size_t per) {
  counted_job *jobs = counted_jobs((size_t)threads * per);
  rt_sched *s;
  assert_int_equal(rt_sched_create(2, &s), 0);
  pthread_t *th = calloc((size_t)threads, sizeof *th);
  submit_arg *args = calloc((size_t)threads, sizeof *args);
  assert_true(th && args);
  for (int i = 0; i < threads; i++) {
    args[i] = (submit_arg){s, jobs + (size_t)i * per, per};
    assert_int_equal(pthread_create(&th[i], NULL, submitter, &args[i]), 0);
  }
  for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  rt_sched_destroy(s);
  assert_each_ran_once(jobs, (size_t)threads * per);
  free(args);
  free(th);
  free(jobs);
}

static void test_concurrent_outside_submitters(void **state) {
  (void)state;
  run_outside_submitters(SUBMITTERS, SCALE(250000));
}

/* More outside threads than the scheduler has rings for (64): the first
 * ones queue in rings of their own, the rest in the injector; each job runs
 * exactly once either way, also after its submitting thread has exited. */
static void test_more_outside_threads_than_rings(void **state) {
  (void)state;
  run_outside_submitters(80, SCALE(5000));
}

/* Each link submits the next and blocks until it is done, like a task that
 * calls ray_get on the task it just submitted. */
enum { CHAIN_DEPTH = 200 };
typedef struct chain_job {
  rt_job job;
  rt_sched *s;
  struct chain_job *links;
  int depth;
  _Atomic uint32_t done;
  int worker_index;
} chain_job;

static void wait_flag(_Atomic uint32_t *flag) {
  /* acquire: pairs with the release store in set_flag. */
  while (atomic_load_explicit(flag, memory_order_acquire) == 0)
    rt_prim_futex_wait(flag, 0, UINT64_MAX);
}

static void set_flag(_Atomic uint32_t *flag) {
  atomic_store_explicit(flag, 1, memory_order_release);
  rt_prim_futex_wake(flag, INT_MAX);
}

static void chain_run(rt_job *j) {
  chain_job *c = container_of(j, chain_job, job);
  c->worker_index = rt_sched_worker_index(c->s);
  if (c->depth + 1 < CHAIN_DEPTH) {
    chain_job *next = &c->links[c->depth + 1];
    rt_sched_submit(c->s, &next->job);
    rt_sched_block_begin(c->s);
    wait_flag(&next->done);
    rt_sched_block_end(c->s);
  }
  set_flag(&c->done);
}

static void run_chain(rt_sched *s) {
  chain_job *links = calloc(CHAIN_DEPTH, sizeof *links);
  assert_non_null(links);
  for (int i = 0; i < CHAIN_DEPTH; i++)
    links[i] = (chain_job){.job = {NULL, chain_run}, .s = s, .links = links, .depth = i};
  rt_sched_submit(s, &links[0].job);
  wait_flag(&links[0].done);
  for (int i = 0; i < CHAIN_DEPTH; i++) {
    assert_int_equal(atomic_load(&links[i].done), 1);
    assert_true(links[i].worker_index >= 0);
    assert_true(links[i].worker_index < rt_sched_max_workers(s));
  }
  free(links);
}

static void test_nested_blocking_chain_of_200_runs_with_one_worker(void **state) {
  (void)state;
  rt_sched *s;
  assert_int_equal(rt_sched_create(1, &s), 0);
  run_chain(s);
  run_chain(s); /* again, now with parked spares to reuse */
  rt_sched_destroy(s);
}

static void test_destroy_waits_for_blocked_jobs(void **state) {
  (void)state;
  rt_sched *s;
  assert_int_equal(rt_sched_create(1, &s), 0);
  chain_job *links = calloc(CHAIN_DEPTH, sizeof *links);
  assert_non_null(links);
  for (int i = 0; i < CHAIN_DEPTH; i++)
    links[i] = (chain_job){.job = {NULL, chain_run}, .s = s, .links = links, .depth = i};
  rt_sched_submit(s, &links[0].job);
  rt_sched_destroy(s); /* while the chain is still blocking and spawning */
  for (int i = 0; i < CHAIN_DEPTH; i++) assert_int_equal(atomic_load(&links[i].done), 1);
  free(links);
}

/* Fork-join: each node submits two children and blocks until both are done,
 * so many workers block at once (up to every inner node). */
typedef struct fj_job {
  rt_job job;
  rt_sched *s;
  int depth;
  _Atomic uint32_t done;
  atomic_size_t *count;
} fj_job;

static void fj_run(rt_job *j) {
  fj_job *f = container_of(j, fj_job, job);
  if (f->depth > 0) {
    fj_job kids[2];
    for (int k = 0; k < 2; k++) {
      kids[k] = (fj_job){{NULL, fj_run}, f->s, f->depth - 1, 0, f->count};
      rt_sched_submit(f->s, &kids[k].job);
    }
    rt_sched_block_begin(f->s);
    wait_flag(&kids[0].done);
    wait_flag(&kids[1].done);
    rt_sched_block_end(f->s);
  }
  atomic_fetch_add_explicit(f->count, 1, memory_order_relaxed);
  set_flag(&f->done); /* f may be gone once the parent sees this */
}

static void test_fork_join_with_blocking_waits(void **state) {
  (void)state;
  rt_sched *s;
  assert_int_equal(rt_sched_create(2, &s), 0);
  atomic_size_t count = 0;
  for (int r = 0; r < 5; r++) {
    fj_job root = {{NULL, fj_run}, s, 6, 0, &count};
    rt_sched_submit(s, &root.job);
    wait_flag(&root.done);
  }
  rt_sched_destroy(s);
  assert_int_equal(atomic_load(&count), 5 * 127);
}

static void test_block_outside_a_worker_is_a_noop(void **state) {
  (void)state;
  rt_sched *s;
  assert_int_equal(rt_sched_create(1, &s), 0);
  rt_sched_block_begin(s);
  rt_sched_block_end(s);
  counted_job *jobs = counted_jobs(100);
  for (int i = 0; i < 100; i++) rt_sched_submit(s, &jobs[i].job);
  rt_sched_destroy(s);
  assert_each_ran_once(jobs, 100);
  free(jobs);
}

typedef struct index_job {
  rt_job job;
  rt_sched *s, *other;
  int index, index_in_other;
} index_job;

static void index_run(rt_job *j) {
  index_job *x = container_of(j, index_job, job);
  x->index = rt_sched_worker_index(x->s);
  x->index_in_other = rt_sched_worker_index(x->other);
}

static void test_worker_index_names_the_calling_worker(void **state) {
  (void)state;
  rt_sched *s, *other;
  assert_int_equal(rt_sched_create(3, &s), 0);
  assert_int_equal(rt_sched_create(1, &other), 0);
  assert_int_equal(rt_sched_max_workers(s), 3 + RT_SCHED_MAX_SPARES);
  assert_int_equal(rt_sched_worker_index(s), -1); /* not a worker */
  enum { N = 64 };
  index_job jobs[N];
  for (int i = 0; i < N; i++) {
    jobs[i] = (index_job){{NULL, index_run}, s, other, -2, -2};
    rt_sched_submit(s, &jobs[i].job);
  }
  rt_sched_destroy(s);
  rt_sched_destroy(other);
  for (int i = 0; i < N; i++) {
    assert_in_range(jobs[i].index, 0, 2); /* no blocking: no spares */
    assert_int_equal(jobs[i].index_in_other, -1);
  }
}

typedef struct done_job {
  rt_job job;
  _Atomic uint32_t *left;
} done_job;

static void done_run(rt_job *j) {
  _Atomic uint32_t *left = container_of(j, done_job, job)->left;
  /* acq_rel: the last decrement publishes all runs to the waiter. */
  if (atomic_fetch_sub_explicit(left, 1, memory_order_acq_rel) == 1)
    rt_prim_futex_wake(left, INT_MAX);
}

static void wait_for_zero(_Atomic uint32_t *left) {
  for (uint32_t v; (v = atomic_load_explicit(left, memory_order_acquire)) != 0;)
    rt_prim_futex_wait(left, v, UINT64_MAX);
}

/* One job per worker, each waiting until all have started, so that each ran
 * on a worker of its own: they learn the workers' thread ids. */
enum { IDLE_WORKERS = 2 };

typedef struct tid_job {
  done_job done;
  _Atomic uint32_t *met; /* futex word: jobs started */
  pid_t tid;
} tid_job;

static void tid_run(rt_job *j) {
  tid_job *t = container_of(j, tid_job, done.job);
  t->tid = (pid_t)syscall(SYS_gettid);
  if (atomic_fetch_add(t->met, 1) + 1 == IDLE_WORKERS) rt_prim_futex_wake(t->met, INT_MAX);
  uint64_t deadline = rt_prim_deadline(60000); /* fails below, never hangs */
  for (uint32_t n; (n = atomic_load(t->met)) < IDLE_WORKERS;)
    if (!rt_prim_futex_wait(t->met, n, deadline)) break;
  done_run(j);
}

/* What /proc says of one thread of this process: its state letter and its
 * context switches, voluntary and not. A thread parked on a futex is 'S',
 * and while nobody wakes it, it does not run at all: the count stays. */
typedef struct thread_seen {
  char state;
  unsigned long long switches;
} thread_seen;

static thread_seen thread_look(pid_t tid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot read %s", path);
  thread_seen t = {0, 0};
  while (fgets(line, sizeof line, f)) {
    unsigned long long n;
    char c;
    if (sscanf(line, "State: %c", &c) == 1)
      t.state = c;
    else if (sscanf(line, "voluntary_ctxt_switches: %llu", &n) == 1 ||
             sscanf(line, "nonvoluntary_ctxt_switches: %llu", &n) == 1)
      t.switches += n;
  }
  fclose(f);
  return t;
}

static bool all_asleep(const pid_t *tids, thread_seen *seen) {
  bool asleep = true;
  for (int i = 0; i < IDLE_WORKERS; i++) {
    seen[i] = thread_look(tids[i]);
    asleep = asleep && seen[i].state == 'S';
  }
  return asleep;
}

/* An idle pool parks: every worker asleep, and not running once (no context
 * switch) for IDLE_WINDOW_MS. A parked worker passes at the first look that
 * finds it parked, however slow or loaded the machine; a spinning one is
 * never asleep, and one that polls on a timer shorter than the window
 * switches within it. Only after 60 s of neither does the test fail. */
enum { IDLE_WINDOW_MS = 200 };

static void assert_workers_stay_parked(const pid_t *tids) {
  uint64_t deadline = rt_prim_deadline(60000);
  thread_seen before[IDLE_WORKERS], after[IDLE_WORKERS];
  for (;;) {
    if (all_asleep(tids, before)) {
      struct timespec window = {0, IDLE_WINDOW_MS * 1000000L};
      nanosleep(&window, NULL);
      bool still = all_asleep(tids, after);
      for (int i = 0; i < IDLE_WORKERS; i++)
        still = still && after[i].switches == before[i].switches;
      if (still) return;
    } else {
      struct timespec nap = {0, 1000000L};
      nanosleep(&nap, NULL);
    }
    if (rt_prim_now_ns() > deadline) {
      char msg[256];
      size_t len = 0;
      for (int i = 0; i < IDLE_WORKERS; i++)
        len += (size_t)snprintf(msg + len, sizeof msg - len,
                                " worker %d: state %c, %llu -> %llu switches;", i, after[i].state,
                                before[i].switches, after[i].switches);
      fail_msg("idle workers did not stay parked for %d ms within 60 s:%s", IDLE_WINDOW_MS, msg);
    }
  }
}

static void test_idle_pool_parks_and_uses_no_cpu(void **state) {
  (void)state;
  rt_sched *s;
  assert_int_equal(rt_sched_create(IDLE_WORKERS, &s), 0);
  enum { N = 1000 };
  static done_job jobs[N];
  _Atomic uint32_t left = N;
  for (int i = 0; i < N; i++) {
    jobs[i] = (done_job){{NULL, done_run}, &left};
    rt_sched_submit(s, &jobs[i].job);
  }
  wait_for_zero(&left);
  /* Learn the workers' thread ids, one job on each. */
  _Atomic uint32_t met = 0;
  tid_job tj[IDLE_WORKERS];
  atomic_store(&left, IDLE_WORKERS);
  for (int i = 0; i < IDLE_WORKERS; i++) {
    tj[i] = (tid_job){{{NULL, tid_run}, &left}, &met, 0};
    rt_sched_submit(s, &tj[i].done.job);
  }
  wait_for_zero(&left);
  assert_int_equal(atomic_load(&met), IDLE_WORKERS);
  pid_t tids[IDLE_WORKERS];
  for (int i = 0; i < IDLE_WORKERS; i++) tids[i] = tj[i].tid;
  assert_true(tids[0] != tids[1]);
  assert_workers_stay_parked(tids);
  /* Still wakes up for new work after a long sleep. */
  atomic_store(&left, 1);
  jobs[0] = (done_job){{NULL, done_run}, &left};
  rt_sched_submit(s, &jobs[0].job);
  wait_for_zero(&left);
  rt_sched_destroy(s);
}

static void test_create_and_destroy_repeatedly(void **state) {
  (void)state;
  counted_job *jobs = counted_jobs(20 * 50);
  for (int r = 0; r < 20; r++) {
    rt_sched *s;
    assert_int_equal(rt_sched_create(1 + r % 4, &s), 0);
    if (r % 2) /* half of them idle, half with a little work */
      for (int i = 0; i < 50; i++) rt_sched_submit(s, &jobs[r * 50 + i].job);
    rt_sched_destroy(s);
  }
  for (int r = 1; r < 20; r += 2) assert_each_ran_once(jobs + r * 50, 50);
  free(jobs);
}

/* ---- parallelism: no queued job waits while a worker sleeps ------------- */

/* A gang: GANG jobs that can only finish together, each waiting (up to
 * GANG_WAIT_MS) until all GANG have started, on a pool with more workers
 * than that. If the pool leaves one queued while a worker sleeps, it starts
 * only when a running member gives up: its mates see fewer than GANG start. */
enum { GANG_WORKERS = 6, GANG = 5, GANG_WAIT_MS = 10000, GANG_SLEEP_MS = 100 };
#ifdef RT_TEST_SLOW
enum { GANG_ROUNDS = 12, SLEEPY_ROUNDS = 4 };
#else
enum { GANG_ROUNDS = 40, SLEEPY_ROUNDS = 10 };
#endif

typedef struct gang {
  rt_sched *s;
  bool sleepy;              /* members sleep GANG_SLEEP_MS instead of waiting */
  _Atomic uint32_t started; /* futex word: members that have started */
  _Atomic uint32_t saw_all; /* members that saw all GANG start */
  _Atomic uint32_t running; /* sleepy members running now */
  _Atomic uint32_t max_running;
  _Atomic uint32_t finished; /* futex word */
  struct gang_job {
    rt_job job;
    struct gang *g;
  } members[GANG], driver;
} gang;

static void gang_member_run(rt_job *j) {
  gang *g = container_of(j, struct gang_job, job)->g;
  if (g->sleepy) {
    uint32_t now = atomic_fetch_add(&g->running, 1) + 1;
    for (uint32_t m = atomic_load(&g->max_running); m < now;)
      if (atomic_compare_exchange_weak(&g->max_running, &m, now)) break;
    struct timespec ts = {0, GANG_SLEEP_MS * 1000000L};
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&g->running, 1);
  } else {
    if (atomic_fetch_add(&g->started, 1) + 1 == GANG) rt_prim_futex_wake(&g->started, INT_MAX);
    uint64_t deadline = rt_prim_deadline(GANG_WAIT_MS);
    uint32_t n;
    while ((n = atomic_load(&g->started)) < GANG && rt_prim_futex_wait(&g->started, n, deadline)) {
    }
    if (atomic_load(&g->started) == GANG) atomic_fetch_add(&g->saw_all, 1);
  }
  atomic_fetch_add(&g->finished, 1);
  rt_prim_futex_wake(&g->finished, INT_MAX);
}

/* A job that submits the whole gang from inside a worker, then returns. */
static void gang_driver_run(rt_job *j) {
  gang *g = container_of(j, struct gang_job, job)->g;
  for (int i = 0; i < GANG; i++) rt_sched_submit(g->s, &g->members[i].job);
}

/* Runs one gang, submitted from this thread or (from_job) by a job, and
 * waits until every member has finished. */
static void run_gang(gang *g, rt_sched *s, bool from_job, bool sleepy) {
  memset(g, 0, sizeof *g);
  g->s = s;
  g->sleepy = sleepy;
  for (int i = 0; i < GANG; i++) g->members[i] = (struct gang_job){{NULL, gang_member_run}, g};
  g->driver = (struct gang_job){{NULL, gang_driver_run}, g};
  if (from_job)
    rt_sched_submit(s, &g->driver.job);
  else
    for (int i = 0; i < GANG; i++) rt_sched_submit(s, &g->members[i].job);
  for (uint32_t n; (n = atomic_load(&g->finished)) < GANG;)
    rt_prim_futex_wait(&g->finished, n, UINT64_MAX);
}

/* Between rounds the pool is left busy, spinning or parked, in turn: the
 * three states a submission can meet. */
static void pause_between_rounds(int round) {
  static const long ns[] = {0, 20 * 1000L, 2 * 1000000L};
  struct timespec ts = {0, ns[round % 3]};
  if (ts.tv_nsec) nanosleep(&ts, NULL);
}

static void run_gang_rounds(bool from_job) {
  rt_sched *s;
  assert_int_equal(rt_sched_create(GANG_WORKERS, &s), 0);
  gang *g = malloc(sizeof *g);
  assert_non_null(g);
  for (int r = 0; r < GANG_ROUNDS; r++) {
    run_gang(g, s, from_job, false);
    if (atomic_load(&g->saw_all) != GANG)
      fail_msg("round %d: %u of %d jobs saw all %d start within %d ms, with %d workers", r,
               atomic_load(&g->saw_all), GANG, GANG, GANG_WAIT_MS, GANG_WORKERS);
    pause_between_rounds(r);
  }
  rt_sched_destroy(s);
  free(g);
}

static void test_outside_submissions_run_at_once_on_idle_workers(void **state) {
  (void)state;
  run_gang_rounds(false);
}

static void test_jobs_submitted_by_a_job_run_at_once_on_idle_workers(void **state) {
  (void)state;
  run_gang_rounds(true);
}

/* Ray's slow-function shape: tasks that sleep must overlap. Asserts the
 * concurrency reached, not the time taken; it relies only on all GANG
 * starting within GANG_SLEEP_MS of the first, a chain of at most GANG - 1
 * wake-ups (the gang tests above have no such bound). */
static void test_sleeping_jobs_overlap(void **state) {
  (void)state;
  rt_sched *s;
  assert_int_equal(rt_sched_create(GANG_WORKERS, &s), 0);
  gang *g = malloc(sizeof *g);
  assert_non_null(g);
  for (int r = 0; r < SLEEPY_ROUNDS; r++) {
    run_gang(g, s, r % 2 == 1, true);
    if (atomic_load(&g->max_running) != GANG)
      fail_msg("round %d: at most %u of %d sleeping jobs ran at once, with %d workers", r,
               atomic_load(&g->max_running), GANG, GANG_WORKERS);
    pause_between_rounds(r);
  }
  rt_sched_destroy(s);
  free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deque_pop_is_lifo_and_steal_is_fifo),
      cmocka_unit_test(test_deque_grows_and_keeps_order),
      cmocka_unit_test(test_deque_concurrent_steal_takes_each_item_once),
      cmocka_unit_test(test_injector_is_fifo),
      cmocka_unit_test(test_injector_many_producers_many_consumers),
      cmocka_unit_test(test_ring_is_fifo_bounded_and_pops_in_batches),
      cmocka_unit_test(test_ring_one_producer_many_consumers),
      cmocka_unit_test(test_create_rejects_bad_arguments),
      cmocka_unit_test(test_outside_submissions_each_run_exactly_once),
      cmocka_unit_test(test_jobs_submitted_by_jobs_all_run_before_destroy_returns),
      cmocka_unit_test(test_concurrent_outside_submitters),
      cmocka_unit_test(test_more_outside_threads_than_rings),
      cmocka_unit_test(test_nested_blocking_chain_of_200_runs_with_one_worker),
      cmocka_unit_test(test_destroy_waits_for_blocked_jobs),
      cmocka_unit_test(test_fork_join_with_blocking_waits),
      cmocka_unit_test(test_block_outside_a_worker_is_a_noop),
      cmocka_unit_test(test_worker_index_names_the_calling_worker),
      cmocka_unit_test(test_idle_pool_parks_and_uses_no_cpu),
      cmocka_unit_test(test_create_and_destroy_repeatedly),
      cmocka_unit_test(test_outside_submissions_run_at_once_on_idle_workers),
      cmocka_unit_test(test_jobs_submitted_by_a_job_run_at_once_on_idle_workers),
      cmocka_unit_test(test_sleeping_jobs_overlap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
