/*
 * test_mailbox.c - the actor mailbox: FIFO, the idle/schedule hand-off, and a
 * stress test that drives it the way the actor scheduler will.
 *
 * Loop counts shrink under sanitizers (SCALE) so every test stays well under
 * its time limit there too. Threads never call cmocka asserts (they longjmp);
 * they record the first failure and the main thread reports it.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mailbox.h"

/* Sanitizers slow the code down 5-20x: TSan most, so it gets the smallest
 * loops. The full test takes ~0.2 s plain, so the margin to 5 s is wide. */
#include "test_util.h" /* RT_TEST_TSAN, RT_TEST_ASAN */
#if defined(RT_TEST_TSAN)
#define SCALE(n) ((n) / 4)
#elif defined(RT_TEST_ASAN)
#define SCALE(n) ((n) / 2)
#else
#define SCALE(n) (n)
#endif

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

typedef struct test_msg {
  rt_msg link;
  uint32_t producer;
  uint32_t seq;
} test_msg;

static test_msg *as_test_msg(rt_msg *m) {
  return m ? container_of(m, test_msg, link) : NULL;
}

/* First failure seen by any thread; reported by the main thread. */
static pthread_mutex_t g_err_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_err[256];
static int g_errors;

static void record_error(const char *fmt, ...) {
  pthread_mutex_lock(&g_err_mu);
  if (g_errors++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
  }
  pthread_mutex_unlock(&g_err_mu);
}

static void reset_errors(void) {
  pthread_mutex_lock(&g_err_mu);
  g_errors = 0;
  g_err[0] = '\0';
  pthread_mutex_unlock(&g_err_mu);
}

static void assert_no_thread_errors(void) {
  pthread_mutex_lock(&g_err_mu);
  int n = g_errors;
  char msg[sizeof g_err];
  memcpy(msg, g_err, sizeof msg);
  pthread_mutex_unlock(&g_err_mu);
  if (n != 0) fail_msg("%d failure(s) in threads, first: %s", n, msg);
}

/* ---- single thread -------------------------------------------------------- */

static void test_pop_returns_messages_in_push_order(void **state) {
  (void)state;
  rt_mailbox q;
  rt_mailbox_init(&q);
  assert_null(rt_mailbox_pop(&q));

  test_msg m[100];
  for (uint32_t i = 0; i < 100; i++) {
    m[i].seq = i;
    rt_mailbox_push(&q, &m[i].link);
  }
  for (uint32_t i = 0; i < 100; i++) {
    test_msg *got = as_test_msg(rt_mailbox_pop(&q));
    assert_non_null(got);
    assert_int_equal(got->seq, i);
  }
  assert_null(rt_mailbox_pop(&q));

  /* Interleaved pushes and pops, re-pushing records already popped: each
   * pop of a last message goes through the stub re-append path. */
  uint32_t next_in = 0, next_out = 0;
  for (int round = 0; round < 1000; round++) {
    int burst = round % 3 + 1;
    for (int k = 0; k < burst; k++) {
      test_msg *r = &m[next_in % 100];
      r->seq = next_in++;
      rt_mailbox_push(&q, &r->link);
    }
    for (int k = 0; k < burst; k++) {
      test_msg *got = as_test_msg(rt_mailbox_pop(&q));
      assert_non_null(got);
      assert_int_equal(got->seq, next_out++);
    }
    assert_null(rt_mailbox_pop(&q));
  }
  assert_true(rt_mailbox_try_idle(&q));
  rt_mailbox_destroy(&q);
}

static void test_push_on_idle_queue_returns_true_once_until_try_idle(void **state) {
  (void)state;
  rt_mailbox q;
  rt_mailbox_init(&q);
  test_msg m[4];

  for (int cycle = 0; cycle < 100; cycle++) {
    /* A fresh queue is idle, and so is one the consumer idled. */
    assert_true(rt_mailbox_push(&q, &m[0].link));
    assert_false(rt_mailbox_push(&q, &m[1].link));
    assert_false(rt_mailbox_push(&q, &m[2].link));
    assert_ptr_equal(rt_mailbox_pop(&q), &m[0].link);
    /* Partly drained, still scheduled: pushes do not ask for scheduling. */
    assert_false(rt_mailbox_push(&q, &m[3].link));
    assert_ptr_equal(rt_mailbox_pop(&q), &m[1].link);
    assert_ptr_equal(rt_mailbox_pop(&q), &m[2].link);
    assert_ptr_equal(rt_mailbox_pop(&q), &m[3].link);
    assert_null(rt_mailbox_pop(&q));
    /* Empty but not yet idled: the consumer is still running. */
    assert_false(rt_mailbox_push(&q, &m[0].link));
    assert_ptr_equal(rt_mailbox_pop(&q), &m[0].link);
    assert_null(rt_mailbox_pop(&q));
    assert_true(rt_mailbox_try_idle(&q));
  }
  rt_mailbox_destroy(&q);
}

static void test_try_idle_fails_while_messages_are_queued(void **state) {
  (void)state;
  rt_mailbox q;
  rt_mailbox_init(&q);
  test_msg a, b;
  assert_true(rt_mailbox_push(&q, &a.link));
  assert_false(rt_mailbox_push(&q, &b.link));
  assert_false(rt_mailbox_try_idle(&q)); /* nothing popped yet */
  assert_ptr_equal(rt_mailbox_pop(&q), &a.link);
  assert_false(rt_mailbox_try_idle(&q)); /* b still queued */
  assert_ptr_equal(rt_mailbox_pop(&q), &b.link);
  assert_null(rt_mailbox_pop(&q));
  assert_true(rt_mailbox_try_idle(&q));
  /* Failed try_idle calls did not idle the queue, and the successful one
   * did: the next push, and only it, schedules. */
  assert_true(rt_mailbox_push(&q, &a.link));
  assert_false(rt_mailbox_push(&q, &b.link));
  assert_ptr_equal(rt_mailbox_pop(&q), &a.link);
  assert_ptr_equal(rt_mailbox_pop(&q), &b.link);
  assert_true(rt_mailbox_try_idle(&q));
  rt_mailbox_destroy(&q);
}

/* White box: the two halves of a push (exchange head, then link), with the
 * consumer looking in between, as when a producer is preempted mid-push. */
static uintptr_t push_first_half(rt_mailbox *q, rt_msg *m) {
  atomic_store(&m->next_, NULL);
  return atomic_exchange(&q->head, (uintptr_t)m);
}
static void push_second_half(uintptr_t prev, rt_msg *m) {
  atomic_store(&((rt_msg *)(prev & ~(uintptr_t)1))->next_, m);
}

static void test_try_idle_fails_while_a_push_is_in_progress(void **state) {
  (void)state;
  rt_mailbox q;
  rt_mailbox_init(&q);
  test_msg a, b;

  /* Empty, scheduled queue; a push stops between its two halves. */
  assert_true(rt_mailbox_push(&q, &a.link));
  assert_ptr_equal(rt_mailbox_pop(&q), &a.link);
  uintptr_t prev = push_first_half(&q, &b.link);
  assert_int_equal(prev & 1, 0); /* not idle: this push does not schedule */
  assert_null(rt_mailbox_pop(&q));
  assert_false(rt_mailbox_try_idle(&q));
  push_second_half(prev, &b.link);
  assert_ptr_equal(rt_mailbox_pop(&q), &b.link);
  assert_null(rt_mailbox_pop(&q));
  assert_true(rt_mailbox_try_idle(&q));

  /* A queued message stays hidden behind a half-done later push, and comes
   * out first once it completes. */
  assert_true(rt_mailbox_push(&q, &a.link));
  prev = push_first_half(&q, &b.link);
  assert_null(rt_mailbox_pop(&q));
  assert_false(rt_mailbox_try_idle(&q));
  push_second_half(prev, &b.link);
  assert_ptr_equal(rt_mailbox_pop(&q), &a.link);
  assert_ptr_equal(rt_mailbox_pop(&q), &b.link);
  assert_null(rt_mailbox_pop(&q));
  assert_true(rt_mailbox_try_idle(&q));
  rt_mailbox_destroy(&q);
}

/* White box: the race in pop where a producer exchanges head between the
 * consumer's check "tail is the last node" and its re-append of the stub.
 * Then head == &stub although message a (and the producer's x) are still
 * queued; only tail != &stub tells the queue is not empty. */
static void test_try_idle_fails_while_stub_is_behind_an_unfinished_push(void **state) {
  (void)state;
  rt_mailbox q;
  rt_mailbox_init(&q);
  test_msg a, x;
  assert_true(rt_mailbox_push(&q, &a.link));
  /* The consumer's pop: skips the stub, finds a last, reads head == a. */
  q.tail = &a.link;
  /* The producer exchanges (head: a -> x) and stalls before linking a -> x. */
  uintptr_t prev_x = push_first_half(&q, &x.link);
  /* The consumer re-appends the stub behind x; head is now &stub. */
  uintptr_t prev_stub = push_first_half(&q, &q.stub);
  push_second_half(prev_stub, &q.stub);
  assert_int_equal(atomic_load(&q.head), (uintptr_t)&q.stub);

  assert_false(rt_mailbox_try_idle(&q));
  assert_null(rt_mailbox_pop(&q)); /* a -> x not linked yet */
  assert_false(rt_mailbox_try_idle(&q));
  push_second_half(prev_x, &x.link);
  assert_ptr_equal(rt_mailbox_pop(&q), &a.link);
  assert_ptr_equal(rt_mailbox_pop(&q), &x.link);
  assert_null(rt_mailbox_pop(&q));
  assert_true(rt_mailbox_try_idle(&q));
  assert_true(rt_mailbox_push(&q, &a.link)); /* idle for real now */
  assert_ptr_equal(rt_mailbox_pop(&q), &a.link);
  assert_true(rt_mailbox_try_idle(&q));
  rt_mailbox_destroy(&q);
}

/* ---- happens-before order across producers -------------------------------- */

#define HB_ROUNDS SCALE(20000)

typedef struct hb_shared {
  rt_mailbox q;
  test_msg *a, *b;
  _Atomic uint32_t a_pushed; /* rounds A has pushed */
} hb_shared;

static void *hb_producer_a(void *arg) {
  hb_shared *s = arg;
  for (uint32_t i = 0; i < HB_ROUNDS; i++) {
    rt_mailbox_push(&s->q, &s->a[i].link);
    /* release: B's push of b[i] comes after our push of a[i]; that
     * happens-before is the premise the test checks the mailbox against. */
    atomic_store_explicit(&s->a_pushed, i + 1, memory_order_release);
  }
  return NULL;
}

static void *hb_producer_b(void *arg) {
  hb_shared *s = arg;
  for (uint32_t i = 0; i < HB_ROUNDS; i++) {
    /* acquire: pairs with A's release above. */
    while (atomic_load_explicit(&s->a_pushed, memory_order_acquire) <= i) sched_yield();
    rt_mailbox_push(&s->q, &s->b[i].link);
  }
  return NULL;
}

static void test_pushes_ordered_by_happens_before_pop_in_that_order(void **state) {
  (void)state;
  reset_errors();
  hb_shared s;
  rt_mailbox_init(&s.q);
  s.a = calloc(HB_ROUNDS, sizeof *s.a);
  s.b = calloc(HB_ROUNDS, sizeof *s.b);
  assert_non_null(s.a);
  assert_non_null(s.b);
  for (uint32_t i = 0; i < HB_ROUNDS; i++) {
    s.a[i] = (test_msg){.producer = 0, .seq = i};
    s.b[i] = (test_msg){.producer = 1, .seq = i};
  }
  atomic_init(&s.a_pushed, 0);

  pthread_t ta, tb;
  assert_int_equal(pthread_create(&ta, NULL, hb_producer_a, &s), 0);
  assert_int_equal(pthread_create(&tb, NULL, hb_producer_b, &s), 0);
  /* This thread is the consumer, popping while both producers run. */
  uint32_t next_a = 0, next_b = 0;
  while (next_a < HB_ROUNDS || next_b < HB_ROUNDS) {
    test_msg *m = as_test_msg(rt_mailbox_pop(&s.q));
    if (!m) {
      sched_yield();
      continue;
    }
    if (m->producer == 0) {
      if (m->seq != next_a) record_error("a: got %u, expected %u", m->seq, next_a);
      next_a = m->seq + 1;
    } else {
      if (m->seq != next_b) record_error("b: got %u, expected %u", m->seq, next_b);
      if (m->seq >= next_a) record_error("b[%u] popped before a[%u]", m->seq, m->seq);
      next_b = m->seq + 1;
    }
  }
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  assert_null(rt_mailbox_pop(&s.q));
  assert_true(rt_mailbox_try_idle(&s.q));
  rt_mailbox_destroy(&s.q);
  free(s.a);
  free(s.b);
  assert_no_thread_errors();
}

/* ---- stress: producers and an actor scheduler ----------------------------- */

#define NPROD 4
#define NMSG SCALE(100000)
#define BATCH 64 /* messages per activation, then the actor yields (PONY_SCHED_BATCH) */

/* Stored into next_ of every popped message; a producer linking into a
 * message the consumer already owns would overwrite it. */
static rt_msg g_popped_poison;

typedef struct stress {
  rt_mailbox q;
  test_msg *msgs[NPROD];

  /* Actor state: touched only inside an activation, with no lock. Its
   * hand-off between activations on different workers is exactly what the
   * mailbox (try_idle -> push) or the run queue must order; TSan checks it. */
  uint32_t expect[NPROD];
  uint64_t received;
  uint64_t activations;

  /* Detector only. relaxed everywhere, on purpose: it must not add a
   * happens-before edge that would hide a missing one in the mailbox. */
  _Atomic int running;
  /* Counters read by the main thread to know when the actor has gone idle
   * for the last time; relaxed: counts only, the data is read after joins. */
  _Atomic uint64_t schedules; /* pushes that returned true */
  _Atomic uint64_t idles;     /* try_idle calls that returned true */

  /* Run queue of the toy scheduler: pending activations, under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t runnable;
  bool stop;
  int nworkers;
} stress;

typedef struct producer_arg {
  stress *s;
  uint32_t id;
} producer_arg;

static void post_activation(stress *s) {
  pthread_mutex_lock(&s->mu);
  s->runnable++;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void *stress_producer(void *arg) {
  producer_arg *pa = arg;
  stress *s = pa->s;
  for (uint32_t i = 0; i < NMSG; i++) {
    test_msg *m = &s->msgs[pa->id][i];
    m->producer = pa->id;
    m->seq = i;
    if (rt_mailbox_push(&s->q, &m->link)) {
      atomic_fetch_add_explicit(&s->schedules, 1, memory_order_relaxed);
      post_activation(s);
    }
    /* Now and then let another thread in mid-stream (2 cores, 7 threads). */
    if ((i & 15) == 0) sched_yield();
  }
  return NULL;
}

static void enter(stress *s) {
  if (atomic_exchange_explicit(&s->running, 1, memory_order_relaxed) != 0)
    record_error("actor activated while already running");
}
static void leave(stress *s) {
  atomic_store_explicit(&s->running, 0, memory_order_relaxed);
}

/* One activation: what an actor scheduler runs when it takes the actor. */
static void activate(stress *s) {
  enter(s);
  s->activations++;
  int n = 0, empty_rounds = 0;
  for (;;) {
    rt_msg *link = rt_mailbox_pop(&s->q);
    if (link) {
      test_msg *m = as_test_msg(link);
      atomic_store_explicit(&link->next_, &g_popped_poison, memory_order_relaxed);
      if (m->producer >= NPROD) {
        record_error("bad producer id %u", m->producer);
      } else {
        if (m->seq != s->expect[m->producer])
          record_error("producer %u: got seq %u, expected %u", m->producer, m->seq,
                       s->expect[m->producer]);
        s->expect[m->producer] = m->seq + 1;
      }
      s->received++;
      empty_rounds = 0;
      if (++n == BATCH) { /* batch done: yield, stay scheduled */
        leave(s);
        post_activation(s);
        return;
      }
      continue;
    }
    /* Leave before try_idle: once it succeeds a producer may schedule us on
     * another worker at once. Between here and a successful try_idle no push
     * can return true, so a real double activation still finds running == 1
     * for most of its run. */
    leave(s);
    if (rt_mailbox_try_idle(&s->q)) {
      atomic_fetch_add_explicit(&s->idles, 1, memory_order_relaxed);
      return;
    }
    /* A message or a push in progress: keep running. */
    enter(s);
    if (++empty_rounds > 16) sched_yield(); /* let a preempted producer finish */
  }
}

static void *stress_worker(void *arg) {
  stress *s = arg;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (s->runnable == 0 && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    if (s->runnable == 0) { /* stop */
      pthread_mutex_unlock(&s->mu);
      return NULL;
    }
    s->runnable--;
    pthread_mutex_unlock(&s->mu);
    activate(s);
  }
}

static void run_stress(int nworkers) {
  reset_errors();
  stress *s = calloc(1, sizeof *s);
  assert_non_null(s);
  rt_mailbox_init(&s->q);
  for (int p = 0; p < NPROD; p++) {
    s->msgs[p] = calloc(NMSG, sizeof(test_msg));
    assert_non_null(s->msgs[p]);
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  atomic_init(&s->running, 0);
  atomic_init(&s->schedules, 0);
  atomic_init(&s->idles, 0);
  s->nworkers = nworkers;

  pthread_t workers[4], producers[NPROD];
  producer_arg pargs[NPROD];
  for (int w = 0; w < nworkers; w++)
    assert_int_equal(pthread_create(&workers[w], NULL, stress_worker, s), 0);
  for (uint32_t p = 0; p < NPROD; p++) {
    pargs[p] = (producer_arg){s, p};
    assert_int_equal(pthread_create(&producers[p], NULL, stress_producer, &pargs[p]), 0);
  }
  for (int p = 0; p < NPROD; p++) pthread_join(producers[p], NULL);

  /* Every push is done, so schedules is final; the actor has drained the
   * queue once it has gone idle as many times as it was scheduled. A bug
   * that schedules it twice per idle period never gets there: give up after
   * 20 s rather than hang (the CTest timeout is the backstop). */
  uint64_t want = atomic_load_explicit(&s->schedules, memory_order_relaxed);
  struct timespec nap = {0, 1000000};
  for (int ms = 0; ms < 20000; ms++) {
    if (atomic_load_explicit(&s->idles, memory_order_relaxed) == want) break;
    nanosleep(&nap, NULL);
  }

  pthread_mutex_lock(&s->mu);
  s->stop = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (int w = 0; w < nworkers; w++) pthread_join(workers[w], NULL);

  assert_no_thread_errors();
  assert_true(want >= 1);
  assert_int_equal(atomic_load(&s->idles), want); /* one true push per idle period */
  assert_int_equal(s->received, (uint64_t)NPROD * NMSG);
  for (int p = 0; p < NPROD; p++) {
    assert_int_equal(s->expect[p], NMSG); /* with the in-order check: each exactly once */
    for (uint32_t i = 0; i < NMSG; i++)
      if (atomic_load_explicit(&s->msgs[p][i].link.next_, memory_order_relaxed) != &g_popped_poison)
        fail_msg("producer %d msg %u was written after it was popped", p, i);
  }
  assert_true(s->activations >= want);
  assert_null(rt_mailbox_pop(&s->q));
  rt_mailbox_destroy(&s->q);
  print_message("%d worker(s): %llu schedules, %llu activations\n", nworkers,
                (unsigned long long)want, (unsigned long long)s->activations);

  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  for (int p = 0; p < NPROD; p++) free(s->msgs[p]);
  free(s);
}

/* The brief's shape: one consumer thread, woken when a push says so. */
static void test_stress_four_producers_one_worker_every_message_once_in_order(void **state) {
  (void)state;
  run_stress(1);
}

/* Two workers share the run queue, so a second activation while one is
 * running would really run concurrently (and trip the running detector), and
 * the actor's state moves between threads through the mailbox hand-off. */
static void test_stress_four_producers_two_workers_never_run_actor_twice(void **state) {
  (void)state;
  run_stress(2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pop_returns_messages_in_push_order),
      cmocka_unit_test(test_push_on_idle_queue_returns_true_once_until_try_idle),
      cmocka_unit_test(test_try_idle_fails_while_messages_are_queued),
      cmocka_unit_test(test_try_idle_fails_while_a_push_is_in_progress),
      cmocka_unit_test(test_try_idle_fails_while_stub_is_behind_an_unfinished_push),
      cmocka_unit_test(test_pushes_ordered_by_happens_before_pop_in_that_order),
      cmocka_unit_test(test_stress_four_producers_one_worker_every_message_once_in_order),
      cmocka_unit_test(test_stress_four_producers_two_workers_never_run_actor_twice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
