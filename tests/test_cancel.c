/*
 * test_cancel.c - cancels and failures that cascade: a cancel made after
 * gets of a cancelled chain reaches the task still running, and a failure
 * or a cancel at the head of a long chain reaches its tail at once, with a
 * bounded message that still names the task that failed and why, and the
 * stats count every task once.
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

#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ray.h"
#include "test_util.h"

#if defined(RT_TEST_SANITIZED)
#define ROUNDS 10
#define CHAIN 10000
#else
#define ROUNDS 50
#define CHAIN 100000
#endif

static int setup_one_worker(void **state) {
  (void)state;
  return test_init(1, 0, 10000);
}
static int setup_two_workers(void **state) {
  (void)state;
  return test_init(2, 0, 10000);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------ */
/* A cancel after timed gets of a cancelled chain                           */
/* ------------------------------------------------------------------------ */

static _Atomic int g_busy_started;
static _Atomic int g_busy_saw_cancel;

/* Occupies a worker until it is cancelled, or 60 s at most, a time only a
 * hang reaches (so that a lost cancel fails the asserts instead of
 * hanging); counts the runs that saw their cancel. */
static ray_status busy(ray_ctx *ctx) {
  atomic_fetch_add(&g_busy_started, 1);
  uint64_t until = now_ms() + 60000;
  int64_t saw = 0;
  while (!saw && now_ms() < until) {
    saw = ray_ctx_cancelled(ctx);
    if (!saw) usleep(200);
  }
  atomic_fetch_add(&g_busy_saw_cancel, (int)saw);
  return ray_ctx_return(ctx, 0, &saw, sizeof saw, &ray_type_i64);
}

/* Issue 5: with a worker busy, put base; submit mid(base) and down(mid);
 * cancel mid; timed gets of mid and down (both RAY_ECANCELLED); then a
 * cancel of the busy task must reach it while it runs. It used to be lost
 * with one worker: down, whose argument failed, was queued behind the busy
 * task, so its timed get waited until the busy task had ended (an untimed
 * get hid it by running down on the calling thread). With more workers,
 * each is kept busy the same way: an idle one could run mid before the
 * cancel. */
static void cancel_after_timed_gets_of_a_cancelled_chain(int workers) {
  ray_stats before = stats();
  ray_ref *b[2];
  assert_true(workers <= 2);
  for (int round = 0; round < ROUNDS; round++) {
    atomic_store(&g_busy_started, 0);
    atomic_store(&g_busy_saw_cancel, 0);
    for (int w = 0; w < workers; w++) b[w] = submit1(busy, NULL, 0, "busy");
    while (atomic_load(&g_busy_started) < workers) usleep(100);
    int64_t x = 1;
    ray_ref *base;
    CHECK_OK(ray_put(&x, sizeof x, &ray_type_i64, &base));
    ray_arg a = ray_arg_ref(base);
    ray_ref *mid = submit1(add_one, &a, 1, "mid");
    ray_arg m = ray_arg_ref(mid);
    ray_ref *down = submit1(add_one, &m, 1, "down");
    assert_int_equal(ray_cancel(mid, false), RAY_OK);
    ray_view v;
    assert_int_equal(ray_get(mid, NULL, 5000, &v), RAY_ECANCELLED);
    assert_string_equal(ray_last_error(), "task 'mid' was cancelled");
    assert_int_equal(ray_get(down, NULL, 5000, &v), RAY_ECANCELLED);
    assert_string_equal(
        ray_last_error(),
        "task 'down' not run: argument 0 comes from task 'mid', which was cancelled");
    for (int w = 0; w < workers; w++) assert_int_equal(ray_cancel(b[w], false), RAY_OK);
    for (int w = 0; w < workers; w++) {
      ray_status s = ray_get(b[w], NULL, -1, &v);
      if (s == RAY_OK) {
        ray_view_release(&v);
        fail_msg("round %d: a busy task ended RAY_OK: its cancel was lost", round);
      }
      assert_int_equal(s, RAY_ECANCELLED);
      assert_string_equal(ray_last_error(), "task 'busy' was cancelled while running");
      ray_ref_release(b[w]);
    }
    assert_int_equal(atomic_load(&g_busy_saw_cancel), workers);
    ray_ref_release(base);
    ray_ref_release(mid);
    ray_ref_release(down);
  }
  ray_stats after = stats();
  assert_int_equal(after.tasks_cancelled - before.tasks_cancelled, (workers + 2) * ROUNDS);
  assert_int_equal(after.tasks_failed - before.tasks_failed, 0);
  assert_int_equal(after.tasks_finished - before.tasks_finished, 0);
  assert_int_equal(settled_objects(0), 0);
}

static void
test_cancel_after_timed_gets_of_a_cancelled_chain_reaches_the_running_task(void **state) {
  (void)state;
  cancel_after_timed_gets_of_a_cancelled_chain(1);
}

static void test_cancel_after_timed_gets_with_two_busy_workers(void **state) {
  (void)state;
  cancel_after_timed_gets_of_a_cancelled_chain(2);
}

/* A dependent of a cancelled task fails at once, even with every worker
 * busy: a poll of it does not have to wait for a worker. */
static void test_a_dependent_of_a_cancelled_task_fails_with_every_worker_busy(void **state) {
  (void)state;
  atomic_store(&g_busy_started, 0);
  atomic_store(&g_busy_saw_cancel, 0);
  ray_ref *b = submit1(busy, NULL, 0, "busy");
  while (!atomic_load(&g_busy_started)) usleep(100);
  ray_arg a = ray_arg_ref(b);
  ray_ref *mid = submit1(add_one, &a, 1, "mid"); /* waits for busy */
  ray_arg m = ray_arg_ref(mid);
  ray_ref *down = submit1(add_one, &m, 1, "down");
  assert_int_equal(ray_cancel(mid, false), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(down, NULL, 0, &v), RAY_ECANCELLED);
  assert_string_equal(ray_last_error(),
                      "task 'down' not run: argument 0 comes from task 'mid', which was cancelled");
  assert_int_equal(ray_cancel(b, false), RAY_OK);
  assert_int_equal(ray_get(b, NULL, -1, &v), RAY_ECANCELLED);
  assert_int_equal(atomic_load(&g_busy_saw_cancel), 1);
  ray_ref_release(mid);
  ray_ref_release(down);
  ray_ref_release(b);
  assert_int_equal(stats().tasks_cancelled, 3);
  assert_int_equal(settled_objects(0), 0);
}

/* ------------------------------------------------------------------------ */
/* Cascades along a long chain                                              */
/* ------------------------------------------------------------------------ */

static ray_status boom(ray_ctx *ctx) {
  return ray_ctx_fail(ctx, "boom at the head");
}

/* A chain head <- link <- link ... of n tasks, the head waiting on an
 * object not sealed yet. Returns the head and the tail; keeps the first
 * links in first[0..2] (the caller releases them all). */
typedef struct chain {
  ray_ref *gate, *head, *first[3], *tail;
} chain;

static chain build_chain(ray_task_fn head_fn, int n) {
  chain c;
  void *data;
  CHECK_OK(ray_create(sizeof(int64_t), &ray_type_i64, &data, &c.gate));
  *(int64_t *)data = 0;
  ray_arg g = ray_arg_ref(c.gate);
  c.head = submit1(head_fn, &g, 1, "head");
  ray_ref *prev = ray_ref_retain(c.head);
  for (int i = 1; i < n; i++) {
    ray_arg a = ray_arg_ref(prev);
    ray_ref *r = submit1(add_one, &a, 1, "link");
    if (i <= 3) c.first[i - 1] = ray_ref_retain(r);
    ray_ref_release(prev);
    prev = r;
  }
  c.tail = prev;
  return c;
}

static void release_chain(chain *c) {
  ray_ref_release(c->gate);
  ray_ref_release(c->head);
  for (int i = 0; i < 3; i++) ray_ref_release(c->first[i]);
  ray_ref_release(c->tail);
}

static void expect_error(ray_ref *r, ray_status want, const char *msg) {
  ray_view v;
  ray_status s = ray_get(r, NULL, -1, &v);
  if (s == RAY_OK) ray_view_release(&v);
  assert_int_equal(s, want);
  assert_string_equal(ray_last_error(), msg);
}

/* The sealed chain runs: the dependency waiters it had (one per link, all
 * registered before the head could run) fire in order. */
static void test_a_long_chain_waiting_on_one_object_runs_once_it_is_sealed(void **state) {
  (void)state;
  chain c = build_chain(add_one, CHAIN);
  CHECK_OK(ray_seal(c.gate));
  assert_int_equal(get_i64(c.tail), CHAIN);
  release_chain(&c);
  ray_stats s = stats();
  assert_int_equal(s.tasks_finished, CHAIN);
  assert_int_equal(s.tasks_failed + s.tasks_cancelled, 0);
  assert_int_equal(settled_objects(0), 0);
}

static void test_a_failure_at_the_head_of_a_long_chain_reaches_the_tail(void **state) {
  (void)state;
  chain c = build_chain(boom, CHAIN);
  CHECK_OK(ray_seal(c.gate));
  /* The tail's message names its own upstream, then the first link of the
   * chain: which task failed and why. Bounded, however long the chain. */
  expect_error(c.tail, RAY_ETASK,
               "task 'link' not run: argument 0 comes from task 'link', which failed: ... "
               "not run: argument 0 comes from task 'head', which failed: boom at the head");
  expect_error(c.head, RAY_ETASK, "task 'head' failed: boom at the head");
  expect_error(c.first[0], RAY_ETASK,
               "task 'link' not run: argument 0 comes from task 'head', which failed: "
               "boom at the head");
  expect_error(c.first[1], RAY_ETASK,
               "task 'link' not run: argument 0 comes from task 'link', which failed: "
               "not run: argument 0 comes from task 'head', which failed: boom at the head");
  expect_error(c.first[2], RAY_ETASK,
               "task 'link' not run: argument 0 comes from task 'link', which failed: ... "
               "not run: argument 0 comes from task 'head', which failed: boom at the head");
  release_chain(&c);
  ray_stats s = stats();
  assert_int_equal(s.tasks_submitted, CHAIN);
  assert_int_equal(s.tasks_failed, CHAIN);
  assert_int_equal(s.tasks_finished + s.tasks_cancelled, 0);
  assert_int_equal(settled_objects(0), 0);
}

static void test_cancelling_the_head_of_a_long_chain_cancels_the_tail(void **state) {
  (void)state;
  chain c = build_chain(add_one, CHAIN);
  assert_int_equal(ray_cancel(c.head, false), RAY_OK);
  CHECK_OK(ray_seal(c.gate)); /* the cancelled head does not run after all */
  expect_error(c.tail, RAY_ECANCELLED,
               "task 'link' not run: argument 0 comes from task 'link', which was cancelled");
  expect_error(c.head, RAY_ECANCELLED, "task 'head' was cancelled");
  expect_error(c.first[0], RAY_ECANCELLED,
               "task 'link' not run: argument 0 comes from task 'head', which was cancelled");
  ray_stats s = stats();
  assert_int_equal(s.tasks_submitted, CHAIN);
  assert_int_equal(s.tasks_cancelled, CHAIN);
  assert_int_equal(s.tasks_finished + s.tasks_failed, 0);
  release_chain(&c);
  assert_int_equal(settled_objects(0), 0);
}

/* One failure fans out to many dependents, which fan in again: each task
 * ends once, and the fan-in names its first argument. */
#define FAN 1000
static void test_a_failure_fans_out_and_in(void **state) {
  (void)state;
  void *data;
  ray_ref *gate;
  CHECK_OK(ray_create(sizeof(int64_t), &ray_type_i64, &data, &gate));
  *(int64_t *)data = 0;
  ray_arg g = ray_arg_ref(gate);
  ray_ref *head = submit1(boom, &g, 1, "head");
  static ray_arg fan[FAN];
  static ray_ref *mids[FAN];
  for (int i = 0; i < FAN; i++) {
    ray_arg a = ray_arg_ref(head);
    mids[i] = submit1(add_one, &a, 1, "mid");
    fan[i] = ray_arg_ref(mids[i]);
  }
  ray_ref *sum = submit1(add_one, fan, FAN, "sum");
  CHECK_OK(ray_seal(gate));
  expect_error(sum, RAY_ETASK,
               "task 'sum' not run: argument 0 comes from task 'mid', which failed: not run: "
               "argument 0 comes from task 'head', which failed: boom at the head");
  for (int i = 0; i < FAN; i++) ray_ref_release(mids[i]);
  ray_ref_release(sum);
  ray_ref_release(head);
  ray_ref_release(gate);
  ray_stats s = stats();
  assert_int_equal(s.tasks_failed, FAN + 2);
  assert_int_equal(s.tasks_finished + s.tasks_cancelled, 0);
  assert_int_equal(settled_objects(0), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_cancel_after_timed_gets_of_a_cancelled_chain_reaches_the_running_task,
          setup_one_worker, test_teardown),
      cmocka_unit_test_setup_teardown(test_cancel_after_timed_gets_with_two_busy_workers,
                                      setup_two_workers, test_teardown),
      cmocka_unit_test_setup_teardown(
          test_a_dependent_of_a_cancelled_task_fails_with_every_worker_busy, setup_one_worker,
          test_teardown),
      cmocka_unit_test_setup_teardown(
          test_a_long_chain_waiting_on_one_object_runs_once_it_is_sealed, setup_two_workers,
          test_teardown),
      cmocka_unit_test_setup_teardown(test_a_failure_at_the_head_of_a_long_chain_reaches_the_tail,
                                      setup_two_workers, test_teardown),
      cmocka_unit_test_setup_teardown(test_cancelling_the_head_of_a_long_chain_cancels_the_tail,
                                      setup_two_workers, test_teardown),
      cmocka_unit_test_setup_teardown(test_a_failure_fans_out_and_in, setup_two_workers,
                                      test_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
