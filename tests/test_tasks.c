/*
 * test_tasks.c - tasks through the public API: dependencies, DAGs, returns,
 * error chains, retries, cancellation, nesting, volume and shutdown.
 *
 * Tests order events with gates, never with pauses: a task that must not
 * finish yet waits for an object the test seals (wait_for_gate) or a flag
 * it sets; and where a test needs a thread parked in a wait, it asks the
 * store whether the object has a waiter (has_waiter, the one look through
 * an internal header).
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

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ray.h"
#include "store/store.h"
#include "test_util.h"

#if defined(RT_TEST_SANITIZED)
#define SCALE 10 /* sanitizers run 5-20x slower: fewer iterations, same checks */
#else
#define SCALE 1
#endif

static int init_workers(int n) {
  return test_init(n, (size_t)512 << 20, 10000);
}
static int setup(void **state) {
  (void)state;
  return init_workers(2);
}
static int setup_one_worker(void **state) {
  (void)state;
  return init_workers(1);
}
/* ------------------------------------------------------------------------ */
/* Task functions                                                           */
/* ------------------------------------------------------------------------ */

static ray_status empty_task(ray_ctx *ctx) {
  int64_t z = 0;
  return ray_ctx_return(ctx, 0, &z, sizeof z, &ray_type_i64);
}

static ray_arg val_i64(const int64_t *x) {
  return ray_arg_value(x, sizeof *x, &ray_type_i64);
}

/* ------------------------------------------------------------------------ */

static void test_chain_of_100_dependent_tasks_gives_100(void **state) {
  (void)state;
  int64_t zero = 0;
  ray_arg a = val_i64(&zero);
  ray_ref *prev = submit1(add_one, &a, 1, "add_one");
  for (int i = 1; i < 100; i++) {
    ray_arg arg = ray_arg_ref(prev);
    ray_ref *next = submit1(add_one, &arg, 1, "add_one");
    ray_ref_release(prev); /* the task holds its own reference */
    prev = next;
  }
  assert_int_equal(get_i64(prev), 100);
  ray_ref_release(prev);
  ray_stats s = stats();
  assert_int_equal(s.tasks_submitted, 100);
  assert_int_equal(s.tasks_finished, 100);
  assert_int_equal(settled_objects(0), 0);
}

static void test_diamond_and_fan_in(void **state) {
  (void)state;
  /*      a=1
   *     /    \
   *   b=a+1  c=a+1
   *     \    /
   *     d=b+c     and a fan-in of 50 leaves into one sum */
  int64_t one = 1;
  ray_arg va = val_i64(&one);
  ray_ref *a = submit1(sum_args, &va, 1, "a");
  ray_arg ra = ray_arg_ref(a);
  ray_ref *b = submit1(add_one, &ra, 1, "b");
  ray_ref *c = submit1(add_one, &ra, 1, "c");
  ray_arg bc[2] = {ray_arg_ref(b), ray_arg_ref(c)};
  ray_ref *d = submit1(sum_args, bc, 2, "d");
  assert_int_equal(get_i64(d), 4);
  ray_ref_release(a);
  ray_ref_release(b);
  ray_ref_release(c);
  ray_ref_release(d);

  enum { LEAVES = 50 };
  ray_arg leaves[LEAVES];
  ray_ref *refs[LEAVES];
  for (int64_t i = 0; i < LEAVES; i++) {
    ray_arg v = val_i64(&i);
    refs[i] = submit1(sum_args, &v, 1, "leaf");
    leaves[i] = ray_arg_ref(refs[i]);
  }
  ray_ref *total = submit1(sum_args, leaves, LEAVES, "fan_in");
  for (int i = 0; i < LEAVES; i++) ray_ref_release(refs[i]);
  assert_int_equal(get_i64(total), LEAVES * (LEAVES - 1) / 2);
  ray_ref_release(total);
}

static void test_same_ref_in_several_slots_and_mixed_args(void **state) {
  (void)state;
  int64_t seven = 7, hundred = 100;
  ray_ref *x;
  assert_int_equal(ray_put(&seven, 8, &ray_type_i64, &x), RAY_OK);
  ray_arg args[4] = {ray_arg_ref(x), val_i64(&hundred), ray_arg_ref(x), ray_arg_ref(x)};
  ray_ref *r = submit1(sum_args, args, 4, "mixed");
  hundred = 999; /* ignored: value arguments were copied at submit */
  ray_ref_release(x);
  assert_int_equal(get_i64(r), 7 + 100 + 7 + 7);
  ray_ref_release(r);
  assert_int_equal(settled_objects(0), 0);
}

static ray_status reverse_array(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  size_t n = v.size / 8;
  int64_t *out = malloc(v.size);
  if (!out) return ray_ctx_fail(ctx, "no memory");
  for (size_t i = 0; i < n; i++) out[i] = ((const int64_t *)v.data)[n - 1 - i];
  s = ray_ctx_return_owned(ctx, 0, out, v.size, &ray_type_i64, free);
  if (s != RAY_OK) free(out);
  return s;
}

static void test_100k_element_array_through_put_task_and_get(void **state) {
  (void)state;
  enum { N = 100000 };
  int64_t *a = malloc(N * sizeof *a);
  for (int i = 0; i < N; i++) a[i] = (int64_t)i * i;
  ray_ref *in;
  assert_int_equal(ray_put(a, N * sizeof *a, &ray_type_i64, &in), RAY_OK);
  ray_arg arg = ray_arg_ref(in);
  ray_ref *out = submit1(reverse_array, &arg, 1, "reverse");
  ray_view v;
  assert_int_equal(ray_get(out, &ray_type_i64, -1, &v), RAY_OK);
  assert_int_equal(v.size, N * sizeof *a);
  for (int i = 0; i < N; i++) assert_true(((const int64_t *)v.data)[i] == a[N - 1 - i]);
  ray_view_release(&v);
  ray_ref_release(in);
  ray_ref_release(out);
  free(a);
}

static ray_status three_returns(ray_ctx *ctx) {
  for (int64_t i = 0; i < 3; i++) {
    int64_t x = (i + 1) * 10;
    ray_status s = ray_ctx_return(ctx, (size_t)i, &x, sizeof x, &ray_type_i64);
    if (s != RAY_OK) return s;
  }
  return RAY_OK;
}

static void test_num_returns_3(void **state) {
  (void)state;
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.num_returns = 3;
  ray_ref *r[3];
  assert_int_equal(ray_submit(three_returns, NULL, 0, &o, r), RAY_OK);
  assert_int_equal(get_i64(r[2]), 30);
  assert_int_equal(get_i64(r[0]), 10);
  assert_int_equal(get_i64(r[1]), 20);
  for (int i = 0; i < 3; i++) ray_ref_release(r[i]);
}

static void test_get_a_list_in_order_with_duplicates(void **state) {
  (void)state;
  enum { N = 20 };
  ray_ref *r[N];
  for (int64_t i = 0; i < N; i++) {
    ray_arg v = val_i64(&i);
    r[i] = submit1(sum_args, &v, 1, "id");
  }
  int order[] = {5, 3, 5, 19, 0, 3, 3, 12};
  for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
    assert_int_equal(get_i64(r[order[k]]), order[k]);
  for (int i = 0; i < N; i++) ray_ref_release(r[i]);
}

/* Blocks until the object whose handle is argument 0 (as a value) is sealed. */
static ray_status wait_for_gate(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v);
  if (s != RAY_OK) return s;
  ray_ref *gate = *(ray_ref *const *)v.data;
  ray_view g;
  if ((s = ray_get(gate, NULL, -1, &g)) != RAY_OK) return s;
  ray_view_release(&g);
  int64_t one = 1;
  return ray_ctx_return(ctx, 0, &one, sizeof one, &ray_type_i64);
}

/* A gate: an object created unsealed, which the test seals to open it. */
static ray_ref *new_gate(void) {
  void *d;
  ray_ref *gate;
  CHECK_OK(ray_create(8, NULL, &d, &gate));
  return gate;
}

/* A task that cannot finish before gate is sealed. */
static ray_ref *gated(ray_ref *gate) {
  ray_arg a = ray_arg_value(&gate, sizeof gate, NULL);
  return submit1(wait_for_gate, &a, 1, "gated");
}

static ray_ref *quick(void) {
  int64_t zero = 0;
  ray_arg a = val_i64(&zero);
  return submit1(add_one, &a, 1, "quick");
}

static void test_wait_on_task_results(void **state) {
  (void)state;
  ray_ref *gate = new_gate();
  ray_ref *r[4] = {quick(), gated(gate), gated(gate), gated(gate)};
  bool ready[4];
  assert_int_equal(ray_wait(r, 4, 1, -1, ready), RAY_OK); /* 1 of 4 */
  assert_true(ready[0]);
  for (int i = 1; i < 4; i++) assert_false(ready[i]); /* their gate is shut */
  CHECK_OK(ray_seal(gate));
  assert_int_equal(ray_wait(r, 4, 4, -1, ready), RAY_OK); /* 4 of 4 */
  for (int i = 0; i < 4; i++) assert_true(ready[i]);
  for (int i = 0; i < 4; i++) ray_ref_release(r[i]);
  ray_ref_release(gate);

  gate = new_gate();
  ray_ref *fs[2] = {quick(), gated(gate)}; /* one done, one that cannot be */
  assert_int_equal(get_i64(fs[0]), 1);
  assert_int_equal(ray_wait(fs, 2, 2, 100, ready), RAY_ETIMEOUT);
  assert_true(ready[0]);
  assert_false(ready[1]);
  ray_ref *dup[2] = {fs[0], fs[0]};
  assert_int_equal(ray_wait(dup, 2, 1, 0, ready), RAY_EINVAL);
  assert_error_contains("more than once");
  assert_int_equal(ray_wait(NULL, 0, 0, 0, NULL), RAY_OK);
  CHECK_OK(ray_seal(gate));
  assert_int_equal(get_i64(fs[1]), 1);
  ray_ref_release(fs[0]);
  ray_ref_release(fs[1]);
  ray_ref_release(gate);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static ray_status parse(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  int64_t x = *(const int64_t *)v.data;
  if (x < 0) return ray_ctx_fail(ctx, "invalid input %lld", (long long)x);
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static void test_error_chain_names_the_upstream_task_and_reason(void **state) {
  (void)state;
  int64_t bad = -5;
  ray_arg v = val_i64(&bad);
  ray_ref *p = submit1(parse, &v, 1, "parse");
  ray_arg a = ray_arg_ref(p);
  ray_ref *s = submit1(sum_args, &a, 1, "sum");
  ray_arg b = ray_arg_ref(s);
  ray_ref *t = submit1(add_one, &b, 1, "third");
  ray_view view;
  assert_int_equal(ray_get(p, NULL, -1, &view), RAY_ETASK);
  assert_string_equal(ray_last_error(), "task 'parse' failed: invalid input -5");
  assert_int_equal(ray_get(s, NULL, -1, &view), RAY_ETASK);
  assert_string_equal(ray_last_error(),
                      "task 'sum' not run: argument 0 comes from task 'parse', which failed: "
                      "invalid input -5");
  assert_int_equal(ray_get(t, NULL, -1, &view), RAY_ETASK);
  assert_error_contains("task 'third' not run: argument 0 comes from task 'sum'");
  assert_error_contains("invalid input -5");
  bool ready[3];
  ray_ref *all[3] = {p, s, t};
  assert_int_equal(ray_wait(all, 3, 3, 0, ready), RAY_OK); /* failed counts as ready */
  ray_ref_release(p);
  ray_ref_release(s);
  ray_ref_release(t);
  ray_stats st = stats();
  assert_int_equal(st.tasks_failed, 3);
  assert_int_equal(st.tasks_finished, 0);
  assert_int_equal(settled_objects(0), 0);
}

static ray_status typed_wrong(ray_ctx *ctx) {
  ray_view v;
  return ray_ctx_arg(ctx, 0, &ray_type_f64, &v); /* the argument is i64 */
}

static void test_argument_type_mismatch_fails_the_task_with_both_types(void **state) {
  (void)state;
  int64_t x = 3;
  ray_arg v = val_i64(&x);
  ray_ref *r = submit1(typed_wrong, &v, 1, "typed");
  ray_view view;
  assert_int_equal(ray_get(r, NULL, -1, &view), RAY_ETASK);
  assert_error_contains("task 'typed' failed: returned RAY_ETYPE");
  assert_error_contains("argument 0: value has type 'i64' (elem 8), expected 'f64' (elem 8)");
  ray_ref_release(r);
}

static ray_status sets_one_of_two(ray_ctx *ctx) {
  int64_t x = 1;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static void test_unset_return_fails_with_a_clear_message(void **state) {
  (void)state;
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = "half";
  o.num_returns = 2;
  ray_ref *r[2];
  assert_int_equal(ray_submit(sets_one_of_two, NULL, 0, &o, r), RAY_OK);
  assert_int_equal(get_i64(r[0]), 1);
  ray_view v;
  assert_int_equal(ray_get(r[1], NULL, -1, &v), RAY_ETASK);
  assert_string_equal(ray_last_error(),
                      "task 'half' returned RAY_OK without setting return 1 of 2");
  ray_ref_release(r[0]);
  ray_ref_release(r[1]);
}

static _Atomic int g_attempts;

static ray_status fails_twice(ray_ctx *ctx) {
  int n = atomic_fetch_add(&g_attempts, 1) + 1;
  if (n < 3) return ray_ctx_fail(ctx, "attempt %d failed", n);
  int64_t x = n;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static void test_retries_succeed_on_attempt_3_of_3(void **state) {
  (void)state;
  atomic_store(&g_attempts, 0);
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = "flaky";
  o.max_retries = 2;
  ray_ref *r;
  assert_int_equal(ray_submit(fails_twice, NULL, 0, &o, &r), RAY_OK);
  assert_int_equal(get_i64(r), 3);
  ray_ref_release(r);
  ray_stats s = stats();
  assert_int_equal(s.tasks_retried, 2);
  assert_int_equal(s.tasks_finished, 1);
}

static void test_retries_run_out_and_say_how_many_attempts(void **state) {
  (void)state;
  atomic_store(&g_attempts, 0);
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = "flaky";
  o.max_retries = 1;
  ray_ref *r;
  assert_int_equal(ray_submit(fails_twice, NULL, 0, &o, &r), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(r, NULL, -1, &v), RAY_ETASK);
  assert_string_equal(ray_last_error(), "task 'flaky' failed after 2 attempts: attempt 2 failed");
  assert_int_equal(atomic_load(&g_attempts), 2);
  ray_ref_release(r);
  assert_int_equal(stats().tasks_failed, 1);
}

/* ------------------------------------------------------------------------ */
/* Cancellation                                                             */
/* ------------------------------------------------------------------------ */

static _Atomic int g_release_gate;
static _Atomic int g_ran;

static ray_status gate_task(ray_ctx *ctx) {
  while (!atomic_load(&g_release_gate)) usleep(1000);
  atomic_fetch_add(&g_ran, 1);
  int64_t x = 5;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static ray_status count_and_add(ray_ctx *ctx) {
  atomic_fetch_add(&g_ran, 100);
  return add_one(ctx);
}

static void test_cancel_a_pending_chain_with_one_worker(void **state) {
  (void)state;
  atomic_store(&g_release_gate, 0);
  atomic_store(&g_ran, 0);
  ray_ref *up = submit1(gate_task, NULL, 0, "upstream"); /* occupies the one worker */
  ray_arg a = ray_arg_ref(up);
  ray_ref *mid = submit1(count_and_add, &a, 1, "middle");
  ray_arg b = ray_arg_ref(mid);
  ray_ref *down = submit1(count_and_add, &b, 1, "downstream");
  assert_int_equal(ray_cancel(mid, false), RAY_OK);
  ray_view v;
  /* The cancelled task fails at once, before its upstream has finished. */
  assert_int_equal(ray_get(mid, NULL, -1, &v), RAY_ECANCELLED);
  assert_string_equal(ray_last_error(), "task 'middle' was cancelled");
  atomic_store(&g_release_gate, 1);
  assert_int_equal(ray_get(down, NULL, -1, &v), RAY_ECANCELLED);
  assert_string_equal(ray_last_error(), "task 'downstream' not run: argument 0 comes from task "
                                        "'middle', which was cancelled");
  assert_int_equal(get_i64(up), 5);                /* upstream unaffected */
  assert_int_equal(atomic_load(&g_ran), 1);        /* middle and downstream never ran */
  assert_int_equal(ray_cancel(up, false), RAY_OK); /* finished: harmless */
  assert_int_equal(get_i64(up), 5);
  ray_ref_release(up);
  ray_ref_release(mid);
  ray_ref_release(down);
  ray_stats s = stats();
  assert_int_equal(s.tasks_cancelled, 2);
  assert_int_equal(s.tasks_finished, 1);
}

static _Atomic int g_started;

static ray_status until_cancelled(ray_ctx *ctx) {
  atomic_store(&g_started, 1);
  while (!ray_ctx_cancelled(ctx)) usleep(1000);
  int64_t x = 1;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static void test_a_running_task_sees_its_cancel(void **state) {
  (void)state;
  atomic_store(&g_started, 0);
  ray_ref *r = submit1(until_cancelled, NULL, 0, "long");
  while (!atomic_load(&g_started)) usleep(1000);
  assert_int_equal(ray_cancel(r, false), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(r, NULL, -1, &v), RAY_ECANCELLED);
  assert_string_equal(ray_last_error(), "task 'long' was cancelled while running");
  ray_ref_release(r);
}

static ray_status spawn_children(ray_ctx *ctx) {
  ray_ref *kids[3];
  for (int i = 0; i < 3; i++) {
    ray_task_opts o = RAY_TASK_OPTS_INIT;
    o.name = "child";
    ray_status s = ray_submit(until_cancelled, NULL, 0, &o, &kids[i]);
    if (s != RAY_OK) return s;
  }
  ray_ref *list;
  ray_status s = ray_put_refs(kids, 3, &list);
  for (int i = 0; i < 3; i++) ray_ref_release(kids[i]);
  if (s != RAY_OK) return s;
  s = ray_ctx_return_ref(ctx, 0, list);
  ray_ref_release(list);
  while (!ray_ctx_cancelled(ctx)) usleep(1000);
  return s;
}

static void test_recursive_cancel_reaches_the_children(void **state) {
  (void)state;
  ray_ref *parent = submit1(spawn_children, NULL, 0, "parent");
  /* Wait until the children exist: the parent's return is set only after
   * it submitted them, but it is sealed only when the parent ends, so look
   * at the stats instead. */
  while (stats().tasks_submitted < 4) usleep(1000);
  assert_int_equal(ray_cancel(parent, true), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(parent, NULL, -1, &v), RAY_ECANCELLED);
  ray_ref_release(parent);
  /* Every child ends (cancelled while running or before it started). */
  ray_stats s;
  do {
    usleep(1000);
    s = stats();
  } while (s.tasks_cancelled + s.tasks_finished + s.tasks_failed < 4);
  assert_int_equal(s.tasks_cancelled, 4);
}

/* A get outside the pool, with its task still queued and the one worker
 * busy, runs that task itself (nested gets too, and retries): it waits for
 * it anyway. A watchdog frees the worker after 60 s, a time only a hang
 * reaches, so that a regression fails the asserts instead of hanging. */
static _Atomic int g_busy_started;
static pthread_t g_main_thread;

static ray_status busy_until_gate(ray_ctx *ctx) {
  atomic_store(&g_busy_started, 1);
  while (!atomic_load(&g_release_gate)) usleep(1000);
  int64_t x = 0;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static void *open_gate_after_60s(void *arg) {
  (void)arg;
  for (int i = 0; i < 60000 && !atomic_load(&g_release_gate); i++) usleep(1000);
  atomic_store(&g_release_gate, 1);
  return NULL;
}

/* Levels of a nested chain (value arg: levels below) that ran on the main
 * thread. */
static ray_status chain_on_caller(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  int64_t below = *(const int64_t *)v.data, here = pthread_equal(pthread_self(), g_main_thread);
  if (below > 0) {
    int64_t next = below - 1;
    ray_arg a = ray_arg_value(&next, sizeof next, &ray_type_i64);
    ray_ref *r;
    if ((s = ray_submit(chain_on_caller, &a, 1, NULL, &r)) != RAY_OK) return s;
    ray_view cv;
    s = ray_get(r, &ray_type_i64, -1, &cv);
    if (s == RAY_OK) here += *(const int64_t *)cv.data;
    ray_view_release(&cv);
    ray_ref_release(r);
    if (s != RAY_OK) return s;
  }
  return ray_ctx_return(ctx, 0, &here, sizeof here, &ray_type_i64);
}

static void test_a_get_outside_the_pool_runs_its_queued_task(void **state) {
  (void)state; /* one worker */
  atomic_store(&g_release_gate, 0);
  atomic_store(&g_busy_started, 0);
  atomic_store(&g_attempts, 0);
  g_main_thread = pthread_self();
  ray_ref *busy = submit1(busy_until_gate, NULL, 0, "busy");
  while (!atomic_load(&g_busy_started)) usleep(1000);
  pthread_t watchdog;
  pthread_create(&watchdog, NULL, open_gate_after_60s, NULL);

  int64_t levels = 20;
  ray_arg a = ray_arg_value(&levels, sizeof levels, &ray_type_i64);
  ray_ref *chain = submit1(chain_on_caller, &a, 1, "chain");
  assert_int_equal(get_i64(chain), levels + 1); /* every level ran right here */
  assert_int_equal(atomic_load(&g_release_gate), 0);

  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = "flaky";
  o.max_retries = 2;
  ray_ref *flaky;
  assert_int_equal(ray_submit(fails_twice, NULL, 0, &o, &flaky), RAY_OK);
  assert_int_equal(get_i64(flaky), 3); /* three attempts, all here */
  assert_int_equal(atomic_load(&g_release_gate), 0);

  atomic_store(&g_release_gate, 1);
  pthread_join(watchdog, NULL);
  assert_int_equal(get_i64(busy), 0);
  ray_ref_release(busy);
  ray_ref_release(chain);
  ray_ref_release(flaky);
  ray_stats s = stats();
  assert_int_equal(s.tasks_finished, levels + 3);
  assert_int_equal(s.tasks_retried, 2);
  assert_int_equal(settled_objects(0), 0);
}

/* Help while waiting runs only the waiting task's own children. Here the
 * one worker takes A and B from the driver's queue together; A waits for X
 * (sealed later by the driver) and then seals Y; B waits for Y. Had A's wait
 * run B on top of itself, B would wait for Y forever under A. */
struct handoff {
  ray_ref *wait_for, *then_seal;
  void *seal_data;
};

static ray_status wait_then_seal(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v);
  if (s != RAY_OK) return s;
  struct handoff h = *(const struct handoff *)v.data;
  ray_view x;
  if ((s = ray_get(h.wait_for, NULL, -1, &x)) != RAY_OK) return s;
  ray_view_release(&x);
  if (h.then_seal) {
    memset(h.seal_data, 7, 8);
    if ((s = ray_seal(h.then_seal)) != RAY_OK) return s;
  }
  int64_t one = 1;
  return ray_ctx_return(ctx, 0, &one, sizeof one, &ray_type_i64);
}

static void test_a_wait_does_not_run_jobs_queued_before_its_task(void **state) {
  (void)state; /* one worker */
  atomic_store(&g_release_gate, 0);
  atomic_store(&g_busy_started, 0);
  ray_ref *busy = submit1(busy_until_gate, NULL, 0, "busy");
  while (!atomic_load(&g_busy_started)) usleep(1000);
  void *xd, *yd;
  ray_ref *x, *y;
  assert_int_equal(ray_create(8, NULL, &xd, &x), RAY_OK);
  assert_int_equal(ray_create(8, NULL, &yd, &y), RAY_OK);
  struct handoff ha = {x, y, yd}, hb = {y, NULL, NULL};
  ray_arg aa = ray_arg_value(&ha, sizeof ha, NULL), ab = ray_arg_value(&hb, sizeof hb, NULL);
  ray_ref *a = submit1(wait_then_seal, &aa, 1, "A");
  ray_ref *b = submit1(wait_then_seal, &ab, 1, "B");
  atomic_store(&g_release_gate, 1); /* the worker now takes A and B at once */
  /* Seal X only once A waits for it: parked on X, past any help. (Had A's
   * help run B, B would be parked on Y instead, under A: fail fast.) */
  WAIT_UNTIL(has_waiter(x) || has_waiter(y), "waiter on X or Y");
  assert_true(has_waiter(x));
  memset(xd, 1, 8);
  assert_int_equal(ray_seal(x), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(b, &ray_type_i64, 10000, &v), RAY_OK);
  ray_view_release(&v);
  assert_int_equal(ray_get(a, &ray_type_i64, 10000, &v), RAY_OK);
  ray_view_release(&v);
  assert_int_equal(get_i64(busy), 0);
  ray_ref *all[] = {busy, a, b, x, y};
  for (int i = 0; i < 5; i++) ray_ref_release(all[i]);
}

/* A task that finishes and a ray_cancel race for each return: the finishing
 * task ends it without a lock unless a canceller holds the entry
 * (store/entry.h). Either side may win, never both, and nothing is lost. */
#define RACE_TASKS (20000 / SCALE)

struct canceller {
  ray_ref **refs;
  int n;
};

static void *cancel_odd_ones(void *arg) {
  struct canceller *c = arg;
  for (int i = c->n - 1; i >= 0; i -= 2) assert_int_equal(ray_cancel(c->refs[i], false), RAY_OK);
  return NULL;
}

static void test_cancel_racing_with_the_end_of_tasks(void **state) {
  (void)state;
  ray_ref **refs = malloc(RACE_TASKS * sizeof *refs);
  assert_non_null(refs);
  ray_stats before = stats();
  for (int64_t i = 0; i < RACE_TASKS; i++) {
    ray_arg a = ray_arg_value(&i, sizeof i, &ray_type_i64);
    refs[i] = submit1(add_one, &a, 1, "racer");
  }
  struct canceller c = {refs, RACE_TASKS};
  pthread_t t;
  pthread_create(&t, NULL, cancel_odd_ones, &c);
  int cancelled = 0;
  for (int64_t i = 0; i < RACE_TASKS; i++) {
    ray_view v;
    ray_status s = ray_get(refs[i], &ray_type_i64, -1, &v);
    if (s == RAY_OK) {
      assert_int_equal(*(const int64_t *)v.data, i + 1);
      ray_view_release(&v);
    } else {
      assert_int_equal(s, RAY_ECANCELLED);
      assert_true(i % 2 == 1); /* only odd ones were cancelled */
      /* before it ran, or while it ran (its result is then dropped) */
      assert_true(strcmp(ray_last_error(), "task 'racer' was cancelled") == 0 ||
                  strcmp(ray_last_error(), "task 'racer' was cancelled while running") == 0);
      cancelled++;
    }
  }
  pthread_join(t, NULL);
  for (int i = 0; i < RACE_TASKS; i++) ray_ref_release(refs[i]);
  free(refs);
  ray_stats after = stats();
  assert_int_equal(after.tasks_submitted - before.tasks_submitted, RACE_TASKS);
  assert_int_equal(after.tasks_cancelled - before.tasks_cancelled, cancelled);
  assert_int_equal(after.tasks_finished - before.tasks_finished, RACE_TASKS - cancelled);
  assert_int_equal(settled_objects(0), 0);
}

/* ------------------------------------------------------------------------ */
/* Nesting, forwarding, volume                                              */
/* ------------------------------------------------------------------------ */

static ray_status nested(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  int64_t depth = *(const int64_t *)v.data;
  if (depth == 0) return ray_ctx_return(ctx, 0, &depth, sizeof depth, &ray_type_i64);
  int64_t next = depth - 1;
  ray_arg a = ray_arg_value(&next, sizeof next, &ray_type_i64);
  ray_ref *child;
  if ((s = ray_submit(nested, &a, 1, NULL, &child)) != RAY_OK) return s;
  ray_view cv; /* blocks this worker: the pool must compensate */
  s = ray_get(child, &ray_type_i64, -1, &cv);
  if (s == RAY_OK) {
    int64_t r = *(const int64_t *)cv.data + 1;
    ray_view_release(&cv);
    s = ray_ctx_return(ctx, 0, &r, sizeof r, &ray_type_i64);
  }
  ray_ref_release(child);
  return s;
}

static void test_nested_chain_of_depth_200_with_one_worker(void **state) {
  (void)state;
  int64_t depth = 200;
  ray_arg a = val_i64(&depth);
  ray_ref *r = submit1(nested, &a, 1, "nested");
  assert_int_equal(get_i64(r), 200);
  ray_ref_release(r);
  assert_int_equal(stats().tasks_finished, 201);
}

static ray_status fib(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  int64_t n = *(const int64_t *)v.data;
  if (n < 2) return ray_ctx_return(ctx, 0, &n, sizeof n, &ray_type_i64);
  int64_t m[2] = {n - 1, n - 2};
  ray_ref *c[2];
  for (int i = 0; i < 2; i++) {
    ray_arg a = ray_arg_value(&m[i], sizeof m[i], &ray_type_i64);
    if ((s = ray_submit(fib, &a, 1, NULL, &c[i])) != RAY_OK) return s;
  }
  int64_t sum = 0;
  for (int i = 0; i < 2; i++) { /* both blocking gets, inside a task */
    ray_view cv;
    if (s == RAY_OK && (s = ray_get(c[i], &ray_type_i64, -1, &cv)) == RAY_OK) {
      sum += *(const int64_t *)cv.data;
      ray_view_release(&cv);
    }
    ray_ref_release(c[i]);
  }
  return s == RAY_OK ? ray_ctx_return(ctx, 0, &sum, sizeof sum, &ray_type_i64) : s;
}

static void test_a_tree_of_blocking_gets_of_any_width_with_one_worker(void **state) {
  (void)state; /* fib(20): 21891 tasks, thousands blocked in ray_get at once */
  int64_t n = 20;
  ray_arg a = val_i64(&n);
  ray_ref *r = submit1(fib, &a, 1, "fib");
  assert_int_equal(get_i64(r), 6765);
  ray_ref_release(r);
  assert_int_equal(stats().tasks_finished, 21891);
}

/* Submits many children that all block on the same gate, then gets them. */
static ray_status many_blocked_children(ray_ctx *ctx) {
  const int N = 20000 / SCALE; /* enough to overflow a stack one frame each */
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v);
  if (s != RAY_OK) return s;
  ray_ref **kids = malloc(N * sizeof *kids);
  if (!kids) return ray_ctx_fail(ctx, "no memory");
  int n = 0;
  ray_arg a = ray_arg_value(v.data, v.size, NULL);
  for (; n < N && s == RAY_OK; n++)
    if ((s = ray_submit(wait_for_gate, &a, 1, NULL, &kids[n])) != RAY_OK) break;
  int64_t sum = 0;
  for (int i = 0; i < n; i++) {
    ray_view k;
    if (s == RAY_OK && (s = ray_get(kids[i], &ray_type_i64, -1, &k)) == RAY_OK) {
      sum += *(const int64_t *)k.data;
      ray_view_release(&k);
    }
    ray_ref_release(kids[i]);
  }
  free(kids);
  return s == RAY_OK ? ray_ctx_return(ctx, 0, &sum, sizeof sum, &ray_type_i64) : s;
}

static void test_thousands_of_queued_children_blocking_on_one_gate(void **state) {
  (void)state; /* helping must not nest one stack frame per waiting child */
  ray_ref *gate = new_gate();
  ray_arg a = ray_arg_value(&gate, sizeof gate, NULL);
  ray_ref *r = submit1(many_blocked_children, &a, 1, "parent");
  /* The children pile up, blocked: all submitted, some parked on the gate. */
  WAIT_UNTIL(stats().tasks_submitted == 1 + 20000 / SCALE && has_waiter(gate),
             "children all submitted and blocked on the gate");
  CHECK_OK(ray_seal(gate));
  assert_int_equal(get_i64(r), 20000 / SCALE);
  ray_ref_release(r);
  ray_ref_release(gate);
}

/* Gets its child, which waits for the gate of argument 0, with a 50 ms
 * timeout. Run inline, the child would hold the get until the gate opens. */
static ray_status timed_get_of_a_gated_child(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v);
  if (s != RAY_OK) return s;
  ray_arg a = ray_arg_value(v.data, v.size, NULL);
  ray_ref *child;
  if ((s = ray_submit(wait_for_gate, &a, 1, NULL, &child)) != RAY_OK) return s;
  ray_view cv;
  int64_t got = ray_get(child, NULL, 50, &cv); /* must not run the child inline */
  if (got == RAY_OK) ray_view_release(&cv);
  ray_ref_release(child);
  return ray_ctx_return(ctx, 0, &got, sizeof got, &ray_type_i64);
}

static void test_a_timed_get_inside_a_task_keeps_its_deadline(void **state) {
  (void)state;
  ray_ref *gate = new_gate();
  ray_arg a = ray_arg_value(&gate, sizeof gate, NULL);
  ray_ref *r = submit1(timed_get_of_a_gated_child, &a, 1, "timed");
  ray_view v; /* timed, so that a child run inline fails here, not hangs */
  ray_status s = ray_get(r, &ray_type_i64, 60000, &v);
  CHECK_OK(ray_seal(gate)); /* the child may end now, however it ran */
  if (s != RAY_OK) fail_msg("ray_get: %s: %s", ray_status_name(s), ray_last_error());
  assert_int_equal(*(const int64_t *)v.data, RAY_ETIMEOUT);
  ray_view_release(&v);
  ray_ref_release(r);
  /* The child holds the gate's handle, not a ref: keep the gate until the
   * child has ended. */
  WAIT_UNTIL(stats().tasks_finished == 2, "the gated child's end");
  ray_ref_release(gate);
}

static ray_status forward(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v); /* a refs object of one */
  if (s != RAY_OK) return s;
  ray_ref *inner = ((ray_ref *const *)v.data)[0];
  return ray_ctx_return_ref(ctx, 0, inner);
}

static void test_return_ref_forwards_without_a_copy(void **state) {
  (void)state;
  size_t n = (size_t)4 << 20;
  char *big = malloc(n);
  memset(big, 'z', n);
  ray_ref *obj, *list;
  assert_int_equal(ray_put(big, n, NULL, &obj), RAY_OK);
  assert_int_equal(ray_put_refs(&obj, 1, &list), RAY_OK);
  ray_view orig;
  assert_int_equal(ray_get(obj, NULL, 0, &orig), RAY_OK);
  ray_arg a = ray_arg_ref(list);
  ray_ref *r = submit1(forward, &a, 1, "forward");
  ray_view v;
  assert_int_equal(ray_get(r, NULL, -1, &v), RAY_OK);
  assert_ptr_equal(v.data, orig.data); /* the same bytes */
  assert_int_equal(v.size, n);
  assert_int_equal(stats().bytes_in_memory, n + sizeof(ray_ref *)); /* counted once */
  ray_view_release(&orig);
  ray_view_release(&v);
  ray_ref_release(obj);
  ray_ref_release(list);
  assert_int_equal(ray_get(r, NULL, 0, &v), RAY_OK); /* the alias keeps the bytes alive */
  assert_memory_equal(v.data, big, n);
  ray_view_release(&v);
  ray_ref_release(r);
  assert_int_equal(settled_objects(0), 0);
  free(big);
}

static void test_a_million_tasks_submitted_then_all_fetched(void **state) {
  (void)state;
  size_t n = 1000000 / SCALE;
  ray_ref **r = malloc(n * sizeof *r);
  for (size_t i = 0; i < n; i++) {
    ray_status s = ray_submit(empty_task, NULL, 0, NULL, &r[i]);
    if (s != RAY_OK) fail_msg("submit %zu: %s", i, ray_last_error());
  }
  for (size_t i = 0; i < n; i++) {
    ray_view v;
    if (ray_get(r[i], &ray_type_i64, -1, &v) != RAY_OK) fail_msg("get %zu", i);
    ray_view_release(&v);
    ray_ref_release(r[i]);
  }
  free(r);
  ray_stats s = stats();
  assert_int_equal(s.tasks_finished, n);
  assert_int_equal(settled_objects(0), 0);
}

static void *driver(void *arg) {
  int64_t base = (int64_t)(intptr_t)arg * 1000000;
  enum { N = 5000 };
  ray_ref *r[N];
  for (int64_t i = 0; i < N; i++) {
    int64_t x = base + i;
    ray_arg a = ray_arg_value(&x, sizeof x, &ray_type_i64);
    if (ray_submit(add_one, &a, 1, NULL, &r[i]) != RAY_OK) return (void *)1;
  }
  for (int64_t i = 0; i < N; i++) {
    ray_view v;
    if (ray_get(r[i], &ray_type_i64, -1, &v) != RAY_OK) return (void *)1;
    if (*(const int64_t *)v.data != base + i + 1) return (void *)1;
    ray_view_release(&v);
    ray_ref_release(r[i]);
  }
  return NULL;
}

static void test_four_driver_threads_submit_at_once(void **state) {
  (void)state;
  pthread_t t[4];
  for (intptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, driver, (void *)i);
  for (int i = 0; i < 4; i++) {
    void *ret;
    pthread_join(t[i], &ret);
    assert_null(ret);
  }
  assert_int_equal(stats().tasks_finished, 4 * 5000);
}

/* ------------------------------------------------------------------------ */
/* Bad input, shutdown, cycles                                              */
/* ------------------------------------------------------------------------ */

static void test_submit_rejects_bad_arguments(void **state) {
  (void)state;
  ray_ref *r = NULL, *gone;
  int64_t x = 1;
  assert_int_equal(ray_submit(NULL, NULL, 0, NULL, &r), RAY_EINVAL);
  assert_error_contains("fn is NULL");
  assert_int_equal(ray_submit(empty_task, NULL, 2, NULL, &r), RAY_EINVAL);
  assert_error_contains("args is NULL");
  assert_int_equal(ray_submit(empty_task, NULL, 0, NULL, NULL), RAY_EINVAL);
  assert_error_contains("returns is NULL");
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.num_returns = -2;
  assert_int_equal(ray_submit(empty_task, NULL, 0, &o, &r), RAY_EINVAL);
  assert_error_contains("num_returns -2");
  o.num_returns = 257;
  assert_int_equal(ray_submit(empty_task, NULL, 0, &o, &r), RAY_EINVAL);
  assert_error_contains("num_returns 257 is more than 256");
  o.num_returns = 1;
  o.max_retries = -2;
  assert_int_equal(ray_submit(empty_task, NULL, 0, &o, &r), RAY_EINVAL);
  assert_int_equal(ray_put(&x, 8, &ray_type_i64, &gone), RAY_OK);
  ray_ref_release(gone);
  ray_arg bad[2] = {val_i64(&x), ray_arg_ref(gone)};
  assert_int_equal(ray_submit(empty_task, bad, 2, NULL, &r), RAY_EINVAL);
  assert_error_contains("argument 1: ref");
  assert_error_contains("released or invalid");
  ray_arg nul = ray_arg_value(NULL, 8, NULL);
  assert_int_equal(ray_submit(empty_task, &nul, 1, NULL, &r), RAY_EINVAL);
  assert_error_contains("argument 0: value with NULL data");
  ray_arg odd = ray_arg_value(&x, 5, &ray_type_i64);
  assert_int_equal(ray_submit(empty_task, &odd, 1, NULL, &r), RAY_EINVAL);
  ray_arg junk = {42, NULL, 0, NULL};
  assert_int_equal(ray_submit(empty_task, &junk, 1, NULL, &r), RAY_EINVAL);
  assert_null(r);
  assert_int_equal(ray_cancel(NULL, false), RAY_EINVAL);
  assert_int_equal(ray_cancel(gone, true), RAY_EINVAL);
  ray_stats s = stats();
  assert_int_equal(s.tasks_submitted, 0);
  assert_int_equal(settled_objects(0), 0);
}

static ray_status ctx_misuse(ray_ctx *ctx) {
  ray_view v;
  int64_t x = 1;
  int fails = 0;
  fails += ray_ctx_arg(ctx, 3, NULL, &v) == RAY_EINVAL;
  fails += ray_ctx_return(ctx, 1, &x, 8, NULL) == RAY_EINVAL;
  fails += ray_ctx_return(ctx, 0, NULL, 8, NULL) == RAY_EINVAL;
  fails += ray_ctx_return(ctx, 0, &x, 0, NULL) == RAY_EINVAL;
  fails += ray_ctx_arg(NULL, 0, NULL, &v) == RAY_EINVAL;
  fails += ray_ctx_nargs(NULL) == 0;
  fails += ray_ctx_return(ctx, 0, &x, 8, &ray_type_i64) == RAY_OK;
  fails += ray_ctx_return(ctx, 0, &x, 8, &ray_type_i64) == RAY_EINVAL; /* set twice */
  x = fails;
  return fails == 8 ? RAY_OK : ray_ctx_fail(ctx, "only %d checks held", fails);
}

static void test_ctx_rejects_bad_arguments(void **state) {
  (void)state;
  ray_ref *r = submit1(ctx_misuse, NULL, 0, "misuse");
  assert_int_equal(get_i64(r), 1);
  ray_ref_release(r);
}

static void test_calls_without_a_runtime_give_eshutdown(void **state) {
  (void)state;
  ray_ref *r;
  assert_int_equal(ray_submit(empty_task, NULL, 0, NULL, &r), RAY_ESHUTDOWN);
  assert_error_contains("not running");
  assert_int_equal(ray_cancel((ray_ref *)(uintptr_t)1, false), RAY_ESHUTDOWN);
}

static _Atomic int g_finished_during_shutdown, g_spawned_during_shutdown, g_slow_started;

/* Runs until the test saw shutdown begin, then submits a child. */
static ray_status slow_then_spawn(ray_ctx *ctx) {
  atomic_fetch_add(&g_slow_started, 1);
  while (!atomic_load(&g_release_gate)) usleep(1000);
  ray_ref *child; /* tasks may still submit while shutdown drains */
  ray_status s = ray_submit(empty_task, NULL, 0, NULL, &child);
  if (s == RAY_OK) {
    ray_ref_release(child);
    atomic_fetch_add(&g_spawned_during_shutdown, 1);
  }
  atomic_fetch_add(&g_finished_during_shutdown, 1);
  int64_t x = s;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static void *shutdown_thread(void *arg) {
  (void)arg;
  ray_shutdown();
  return NULL;
}

static void test_shutdown_lets_running_tasks_finish_and_rejects_new_ones(void **state) {
  (void)state;
  assert_int_equal(init_workers(2), 0);
  atomic_store(&g_finished_during_shutdown, 0);
  atomic_store(&g_spawned_during_shutdown, 0);
  atomic_store(&g_slow_started, 0);
  atomic_store(&g_release_gate, 0);
  ray_ref *r[4];
  for (int i = 0; i < 4; i++) r[i] = submit1(slow_then_spawn, NULL, 0, "slow");
  for (int i = 0; i < 4; i++) ray_ref_release(r[i]);
  WAIT_UNTIL(atomic_load(&g_slow_started) == 2, "both workers running a slow task");
  pthread_t t;
  pthread_create(&t, NULL, shutdown_thread, NULL);
  /* While shutdown drains, an outside submit is refused. The slow tasks
   * hold the drain open until the test has seen that. */
  ray_status s = RAY_OK;
  ray_ref *late = NULL;
  for (int tries = 0; tries < 600000 && s == RAY_OK; tries++) { /* bounded: 60 s */
    s = ray_submit(empty_task, NULL, 0, NULL, &late);
    if (s == RAY_OK) {
      ray_ref_release(late);
      usleep(100);
    }
  }
  atomic_store(&g_release_gate, 1);
  assert_int_equal(s, RAY_ESHUTDOWN);
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&g_finished_during_shutdown), 4);
  assert_int_equal(atomic_load(&g_spawned_during_shutdown), 4);
  assert_false(ray_is_initialized());
}

/* Threads that submit and exit without getting anything: their jobs wait in
 * rings whose owner is gone, and their counts in tallies nobody writes any
 * more (task/tally.c). ray_shutdown must still run every one first. */
enum { EXITED_SUBMITTERS = 6, PER_EXITED = 3000 / SCALE };
static _Atomic int g_exited_ran;

static ray_status count_slowly(ray_ctx *ctx) {
  (void)ctx;
  for (volatile int i = 0; i < 2000; i++) {
  }
  atomic_fetch_add(&g_exited_ran, 1);
  return RAY_OK;
}

static void *submit_and_exit(void *arg) {
  (void)arg;
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.num_returns = RAY_NO_RETURNS; /* nothing to get: only shutdown waits for them */
  for (int i = 0; i < PER_EXITED; i++)
    assert_int_equal(ray_submit(count_slowly, NULL, 0, &o, NULL), RAY_OK);
  return NULL;
}

static void test_shutdown_runs_what_exited_threads_submitted(void **state) {
  (void)state;
  assert_int_equal(init_workers(1), 0);
  atomic_store(&g_exited_ran, 0);
  pthread_t t[EXITED_SUBMITTERS];
  for (int i = 0; i < EXITED_SUBMITTERS; i++) pthread_create(&t[i], NULL, submit_and_exit, NULL);
  for (int i = 0; i < EXITED_SUBMITTERS; i++) pthread_join(t[i], NULL);
  assert_int_equal(ray_shutdown(), RAY_OK);
  assert_int_equal(atomic_load(&g_exited_ran), EXITED_SUBMITTERS * PER_EXITED);
}

static void test_ten_init_run_shutdown_cycles(void **state) {
  (void)state;
  for (int c = 0; c < 10; c++) {
    assert_int_equal(init_workers(1 + c % 3), 0);
    int64_t x = c;
    ray_arg a = val_i64(&x);
    ray_ref *r = submit1(add_one, &a, 1, "cycle");
    assert_int_equal(get_i64(r), c + 1);
    if (c % 2) ray_ref_release(r); /* odd cycles release; even ones leave it to shutdown */
    assert_int_equal(ray_shutdown(), RAY_OK);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_chain_of_100_dependent_tasks_gives_100, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_diamond_and_fan_in, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_same_ref_in_several_slots_and_mixed_args, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_100k_element_array_through_put_task_and_get, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_num_returns_3, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_get_a_list_in_order_with_duplicates, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_wait_on_task_results, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_error_chain_names_the_upstream_task_and_reason, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_argument_type_mismatch_fails_the_task_with_both_types,
                                      setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_unset_return_fails_with_a_clear_message, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_retries_succeed_on_attempt_3_of_3, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_retries_run_out_and_say_how_many_attempts, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_cancel_a_pending_chain_with_one_worker, setup_one_worker,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_a_running_task_sees_its_cancel, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_recursive_cancel_reaches_the_children, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_cancel_racing_with_the_end_of_tasks, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_a_get_outside_the_pool_runs_its_queued_task,
                                      setup_one_worker, test_teardown),
      cmocka_unit_test_setup_teardown(test_a_wait_does_not_run_jobs_queued_before_its_task,
                                      setup_one_worker, test_teardown),
      cmocka_unit_test_setup_teardown(test_nested_chain_of_depth_200_with_one_worker,
                                      setup_one_worker, test_teardown),
      cmocka_unit_test_setup_teardown(test_a_tree_of_blocking_gets_of_any_width_with_one_worker,
                                      setup_one_worker, test_teardown),
      cmocka_unit_test_setup_teardown(test_thousands_of_queued_children_blocking_on_one_gate,
                                      setup_one_worker, test_teardown),
      cmocka_unit_test_setup_teardown(test_a_timed_get_inside_a_task_keeps_its_deadline,
                                      setup_one_worker, test_teardown),
      cmocka_unit_test_setup_teardown(test_return_ref_forwards_without_a_copy, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_a_million_tasks_submitted_then_all_fetched, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_four_driver_threads_submit_at_once, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_submit_rejects_bad_arguments, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_ctx_rejects_bad_arguments, setup, test_teardown),
      cmocka_unit_test(test_calls_without_a_runtime_give_eshutdown),
      cmocka_unit_test(test_shutdown_lets_running_tasks_finish_and_rejects_new_ones),
      cmocka_unit_test(test_shutdown_runs_what_exited_threads_submitted),
      cmocka_unit_test(test_ten_init_run_shutdown_cycles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
