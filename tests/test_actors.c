/*
 * test_actors.c - actors through the public API: state, ordering, the
 * shared store with tasks, failures and restarts, names, quotas, volume,
 * shutdown.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ray.h"
#include "test_util.h"

#if defined(RT_TEST_SANITIZED)
#define SCALE 4
#else
#define SCALE 1
#endif

static int init_workers(int n) {
  return test_init(n, (size_t)1 << 30, 10000);
}
static int setup(void **state) {
  (void)state;
  return init_workers(2);
}
static int setup_four(void **state) {
  (void)state; /* methods that sleep do not free their worker: room for 3 */
  return init_workers(4);
}

/* Calls method and returns its i64 result (releases the ref). */
static int64_t call_i64(ray_actor *a, size_t m, const ray_arg *args, size_t n) {
  ray_ref *r;
  CHECK_OK(ray_actor_call(a, m, args, n, &r));
  int64_t x = get_i64(r);
  ray_ref_release(r);
  return x;
}

static ray_arg val(const int64_t *x) {
  return ray_arg_value(x, sizeof *x, &ray_type_i64);
}

static ray_status ret_i64(ray_ctx *ctx, int64_t x) {
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static int64_t arg_i64(ray_ctx *ctx, size_t i) {
  ray_view v;
  if (ray_ctx_arg(ctx, i, &ray_type_i64, &v) != RAY_OK) return INT64_MIN;
  return *(const int64_t *)v.data;
}

/* ------------------------------------------------------------------------ */
/* Counter                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct counter {
  int64_t n;
  int64_t starts;
} counter;

static _Atomic int g_stops;

static ray_status counter_start(void *state, ray_ctx *ctx) {
  counter *c = state;
  c->starts++;
  if (ray_ctx_nargs(ctx) > 0) c->n = arg_i64(ctx, 0);
  if (c->n == -1) return ray_ctx_fail(ctx, "bad start value %lld", (long long)c->n);
  return RAY_OK;
}
static void counter_stop(void *state, ray_ctx *ctx) {
  (void)state;
  (void)ctx;
  atomic_fetch_add(&g_stops, 1);
}
static ray_status counter_incr(void *state, ray_ctx *ctx) {
  counter *c = state;
  return ret_i64(ctx, ++c->n);
}
static ray_status counter_add(void *state, ray_ctx *ctx) {
  counter *c = state;
  c->n += arg_i64(ctx, 0);
  return ret_i64(ctx, c->n);
}
static ray_status counter_get(void *state, ray_ctx *ctx) {
  return ret_i64(ctx, ((counter *)state)->n);
}
static ray_status counter_crash(void *state, ray_ctx *ctx) {
  (void)state;
  return ray_ctx_fail(ctx, "boom"), RAY_EACTOR;
}
static ray_status counter_exit(void *state, ray_ctx *ctx) {
  ray_status s = ray_ctx_exit_actor(ctx);
  if (s != RAY_OK) return s;
  return ret_i64(ctx, ((counter *)state)->n);
}
static ray_status counter_fail(void *state, ray_ctx *ctx) {
  (void)state;
  return ray_ctx_fail(ctx, "not today");
}
static ray_status counter_starts(void *state, ray_ctx *ctx) {
  return ret_i64(ctx, ((counter *)state)->starts);
}

enum { INCR, ADD, GET, CRASH, EXIT, FAIL, STARTS };
static const ray_method counter_methods[] = {
    {"incr", counter_incr},     {"add", counter_add},   {"get", counter_get},
    {"crash", counter_crash},   {"exit", counter_exit}, {"fail", counter_fail},
    {"starts", counter_starts},
};
static const ray_actor_class counter_class = {
    "Counter",    sizeof(counter), counter_start,
    counter_stop, counter_methods, sizeof counter_methods / sizeof counter_methods[0]};

static ray_actor *new_counter(const int64_t *start, const ray_actor_opts *opts) {
  ray_actor *a;
  ray_arg arg = start ? val(start) : (ray_arg){0};
  CHECK_OK(ray_actor_create(&counter_class, start ? &arg : NULL, start ? 1 : 0, opts, &a));
  return a;
}

/* Calls incr until a call or its get fails (the actor has ended, say);
 * returns that status, its message left as the last error. */
static ray_status call_until_failure(ray_actor *a) {
  for (;;) {
    ray_ref *r;
    ray_status s = ray_actor_call(a, INCR, NULL, 0, &r);
    if (s != RAY_OK) return s;
    ray_view v;
    s = ray_get(r, NULL, -1, &v);
    ray_ref_release(r);
    if (s != RAY_OK) return s;
    ray_view_release(&v);
  }
}

static void test_counter_increment_add_get_gives_6(void **state) {
  (void)state;
  ray_actor *a = new_counter(NULL, NULL);
  assert_int_equal(call_i64(a, INCR, NULL, 0), 1);
  int64_t five = 5;
  ray_arg arg = val(&five);
  assert_int_equal(call_i64(a, ADD, &arg, 1), 6);
  assert_int_equal(call_i64(a, GET, NULL, 0), 6);
  int64_t hundred = 100; /* the other constructor: a start value */
  ray_actor *b = new_counter(&hundred, NULL);
  assert_int_equal(call_i64(b, INCR, NULL, 0), 101);
  ray_actor_release(a);
  ray_actor_release(b);
  ray_stats s = stats();
  assert_int_equal(s.actor_calls, 4);
}

static void test_calls_from_one_submitter_run_in_order_without_waiting(void **state) {
  (void)state;
  ray_actor *a = new_counter(NULL, NULL);
  enum { N = 1000 };
  ray_ref *r[N];
  for (int i = 0; i < N; i++) CHECK_OK(ray_actor_call(a, INCR, NULL, 0, &r[i]));
  for (int i = 0; i < N; i++) {
    assert_int_equal(get_i64(r[i]), i + 1);
    ray_ref_release(r[i]);
  }
  ray_actor_release(a);
}

/* ------------------------------------------------------------------------ */
/* The shared store                                                         */
/* ------------------------------------------------------------------------ */

#define BIG ((size_t)64 << 20)

typedef struct producer {
  ray_ref *data;
} producer;

static ray_status producer_make(void *state, ray_ctx *ctx) {
  producer *p = state;
  if (!p->data) {
    void *buf;
    ray_status s = ray_create(BIG, &ray_type_i64, &buf, &p->data);
    if (s != RAY_OK) return s;
    int64_t *x = buf;
    for (size_t i = 0; i < BIG / 8; i++) x[i] = (int64_t)i;
    if ((s = ray_seal(p->data)) != RAY_OK) return s;
  }
  return ray_ctx_return_ref(ctx, 0, p->data);
}
static void producer_stop(void *state, ray_ctx *ctx) {
  (void)ctx;
  ray_ref_release(((producer *)state)->data);
}
static const ray_method producer_methods[] = {{"make", producer_make}};
static const ray_actor_class producer_class = {"Producer",    sizeof(producer), NULL,
                                               producer_stop, producer_methods, 1};

/* Returns the data pointer of argument 0 and checks one element. */
static ray_status reader_task(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  if (((const int64_t *)v.data)[12345] != 12345) return ray_ctx_fail(ctx, "wrong data");
  int64_t p = (int64_t)(intptr_t)v.data;
  return ray_ctx_return(ctx, 0, &p, sizeof p, &ray_type_i64);
}
static ray_status reader_method(void *state, ray_ctx *ctx) {
  (void)state;
  return reader_task(ctx);
}
static const ray_method reader_methods[] = {{"read", reader_method}};
static const ray_actor_class reader_class = {"Reader", 0, NULL, NULL, reader_methods, 1};

static void test_dataset_put_once_is_read_zero_copy_by_tasks_and_actors(void **state) {
  (void)state;
  ray_actor *prod;
  CHECK_OK(ray_actor_create(&producer_class, NULL, 0, NULL, &prod));
  ray_ref *data;
  CHECK_OK(ray_actor_call(prod, 0, NULL, 0, &data));
  ray_view v;
  CHECK_OK(ray_get(data, &ray_type_i64, -1, &v));
  intptr_t ptr = (intptr_t)v.data;
  ray_view_release(&v);
  ray_arg arg = ray_arg_ref(data);
  ray_ref *seen[6];
  for (int i = 0; i < 4; i++) CHECK_OK(ray_submit(reader_task, &arg, 1, NULL, &seen[i]));
  ray_actor *readers[2];
  for (int i = 0; i < 2; i++) {
    CHECK_OK(ray_actor_create(&reader_class, NULL, 0, NULL, &readers[i]));
    CHECK_OK(ray_actor_call(readers[i], 0, &arg, 1, &seen[4 + i]));
  }
  for (int i = 0; i < 6; i++) {
    assert_int_equal(get_i64(seen[i]), ptr); /* every view has the same data pointer */
    ray_ref_release(seen[i]);
  }
  ray_stats s = stats();
  assert_true(s.bytes_in_memory >= BIG && s.bytes_in_memory < BIG + 4096); /* counted once */
  ray_ref_release(data);
  ray_actor_release(prod);
  for (int i = 0; i < 2; i++) ray_actor_release(readers[i]);
}

static ray_status make_refs_task(ray_ctx *ctx) {
  ray_ref *r[3];
  for (int64_t i = 0; i < 3; i++) {
    int64_t x = (i + 1) * 111;
    ray_status s = ray_put(&x, sizeof x, &ray_type_i64, &r[i]);
    if (s != RAY_OK) return s;
  }
  ray_ref *list;
  ray_status s = ray_put_refs(r, 3, &list);
  for (int i = 0; i < 3; i++) ray_ref_release(r[i]);
  if (s != RAY_OK) return s;
  s = ray_ctx_return_ref(ctx, 0, list);
  ray_ref_release(list);
  return s;
}

/* Reads element k of a refs object: arg 0 the refs object, arg 1 k. */
static ray_status pick_method(void *state, ray_ctx *ctx) {
  (void)state;
  ray_view lv, iv;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_refs, &lv);
  if (s != RAY_OK) return s;
  ray_ref *item = ((ray_ref *const *)lv.data)[arg_i64(ctx, 1)];
  if ((s = ray_get(item, &ray_type_i64, -1, &iv)) != RAY_OK) return s;
  int64_t x = *(const int64_t *)iv.data;
  ray_view_release(&iv);
  return ret_i64(ctx, x);
}
static ray_status double_task(ray_ctx *ctx) {
  return ret_i64(ctx, 2 * arg_i64(ctx, 0));
}
static const ray_method pick_methods[] = {{"pick", pick_method}, {"add", counter_add}};
static const ray_actor_class pick_class = {"Picker", sizeof(counter), NULL, NULL, pick_methods, 2};

static void test_refs_flow_between_tasks_actors_and_the_driver(void **state) {
  (void)state;
  /* A task result passed to an actor, an actor result passed to a task. */
  int64_t x = 21;
  ray_arg a0 = val(&x);
  ray_ref *doubled;
  CHECK_OK(ray_submit(double_task, &a0, 1, NULL, &doubled));
  ray_actor *acc;
  CHECK_OK(ray_actor_create(&pick_class, NULL, 0, NULL, &acc));
  ray_arg a1 = ray_arg_ref(doubled);
  ray_ref *sum;
  CHECK_OK(ray_actor_call(acc, 1, &a1, 1, &sum)); /* add(42) */
  ray_arg a2 = ray_arg_ref(sum);
  ray_ref *again;
  CHECK_OK(ray_submit(double_task, &a2, 1, NULL, &again));
  assert_int_equal(get_i64(again), 84);
  ray_ref_release(doubled);
  ray_ref_release(sum);
  ray_ref_release(again);
  /* A task returns a refs object of 3 puts, read by 3 actors. */
  ray_ref *list;
  CHECK_OK(ray_submit(make_refs_task, NULL, 0, NULL, &list));
  ray_actor *pickers[3];
  ray_ref *got[3];
  for (int64_t i = 0; i < 3; i++) {
    CHECK_OK(ray_actor_create(&pick_class, NULL, 0, NULL, &pickers[i]));
    ray_arg args[2] = {ray_arg_ref(list), val(&i)};
    CHECK_OK(ray_actor_call(pickers[i], 0, args, 2, &got[i]));
  }
  for (int i = 0; i < 3; i++) {
    assert_int_equal(get_i64(got[i]), (i + 1) * 111);
    ray_ref_release(got[i]);
    ray_actor_release(pickers[i]);
  }
  ray_ref_release(list);
  ray_actor_release(acc);
}

/* ------------------------------------------------------------------------ */
/* Ordering                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct recorder {
  int64_t seen[256];
  int n;
} recorder;

static ray_status record_method(void *state, ray_ctx *ctx) {
  recorder *r = state;
  int64_t tag = arg_i64(ctx, 1); /* arg 0 is the delaying ref */
  if (r->n < 256) r->seen[r->n++] = tag;
  return ret_i64(ctx, tag);
}
static ray_status seen_method(void *state, ray_ctx *ctx) {
  recorder *r = state;
  int64_t ok = 1;
  for (int i = 0; i < r->n; i++) ok &= r->seen[i] == i;
  return ret_i64(ctx, ok ? r->n : -1);
}
static const ray_method recorder_methods[] = {{"record", record_method}, {"seen", seen_method}};
static const ray_actor_class recorder_class = {"Recorder", sizeof(recorder), NULL,
                                               NULL,       recorder_methods, 2};

static ray_status delay_task(ray_ctx *ctx) {
  usleep((useconds_t)arg_i64(ctx, 0));
  return ret_i64(ctx, 0);
}

static void test_calls_with_args_resolving_at_random_times_run_in_order(void **state) {
  (void)state;
  ray_actor *a;
  CHECK_OK(ray_actor_create(&recorder_class, NULL, 0, NULL, &a));
  enum { N = 100 };
  ray_ref *r[N];
  unsigned seed = 7;
  for (int64_t i = 0; i < N; i++) {
    int64_t us = rand_r(&seed) % 3000;
    ray_arg d = val(&us);
    ray_ref *delay;
    CHECK_OK(ray_submit(delay_task, &d, 1, NULL, &delay));
    ray_arg args[2] = {ray_arg_ref(delay), val(&i)};
    CHECK_OK(ray_actor_call(a, 0, args, 2, &r[i]));
    ray_ref_release(delay);
  }
  for (int i = 0; i < N; i++) ray_ref_release(r[i]);
  assert_int_equal(call_i64(a, 1, NULL, 0), N); /* all N, in submission order */
  ray_actor_release(a);
}

/* c -> b -> a: args (next, after-next, x). Each forwards the call to next,
 * shifting the chain, and returns its result; the end answers x + 1. */
static ray_status relay_method(void *state, ray_ctx *ctx) {
  (void)state;
  ray_actor *next, *after;
  int64_t x = arg_i64(ctx, 2);
  if (ray_ctx_arg_actor(ctx, 0, &next) != RAY_OK) return ret_i64(ctx, x + 1); /* the end */
  ray_arg rest[3] = {ray_ctx_arg_actor(ctx, 1, &after) == RAY_OK ? ray_arg_actor(after)
                                                                 : ray_arg_value("", 1, NULL),
                     ray_arg_value("", 1, NULL), val(&x)};
  ray_ref *r;
  ray_status s = ray_actor_call(next, 0, rest, 3, &r);
  if (s != RAY_OK) return s;
  s = ray_ctx_return_ref(ctx, 0, r); /* waits for a's result, zero copy */
  ray_ref_release(r);
  return s;
}
static const ray_method relay_methods[] = {{"relay", relay_method}};
static const ray_actor_class relay_class = {"Relay", 0, NULL, NULL, relay_methods, 1};

static void test_delegation_chain_c_b_a_of_100_calls(void **state) {
  (void)state;
  ray_actor *a, *b, *c;
  CHECK_OK(ray_actor_create(&relay_class, NULL, 0, NULL, &a));
  CHECK_OK(ray_actor_create(&relay_class, NULL, 0, NULL, &b));
  CHECK_OK(ray_actor_create(&relay_class, NULL, 0, NULL, &c));
  ray_ref *r[100];
  for (int64_t i = 0; i < 100; i++) {
    ray_arg args[3] = {ray_arg_actor(b), ray_arg_actor(a), val(&i)};
    CHECK_OK(ray_actor_call(c, 0, args, 3, &r[i]));
  }
  for (int i = 0; i < 100; i++) {
    ray_view v;
    CHECK_OK(ray_get(r[i], &ray_type_i64, -1, &v));
    assert_int_equal(*(const int64_t *)v.data, i + 1);
    ray_view_release(&v);
    ray_ref_release(r[i]);
  }
  ray_actor_release(a);
  ray_actor_release(b);
  ray_actor_release(c);
}

struct submitter_b {
  ray_actor *a;
  int done;
};
static void *submitter_b_thread(void *arg) {
  struct submitter_b *sb = arg;
  ray_ref *r[100];
  for (int64_t i = 0; i < 100; i++) {
    ray_arg args[2] = {ray_arg_value("", 1, NULL), ray_arg_value(&i, 8, &ray_type_i64)};
    if (ray_actor_call(sb->a, 0, args, 2, &r[i]) != RAY_OK) return NULL;
  }
  for (int i = 0; i < 100; i++) {
    ray_view v;
    if (ray_get(r[i], NULL, -1, &v) != RAY_OK) return NULL;
    ray_view_release(&v);
    ray_ref_release(r[i]);
  }
  sb->done = 1;
  return NULL;
}

static void test_a_waiting_call_does_not_hold_back_other_submitters(void **state) {
  (void)state;
  ray_actor *a;
  CHECK_OK(ray_actor_create(&recorder_class, NULL, 0, NULL, &a));
  int64_t second = 1000000, tag = 999;
  ray_arg d = val(&second);
  ray_ref *slow;
  CHECK_OK(ray_submit(delay_task, &d, 1, NULL, &slow)); /* a 1-second task */
  ray_arg args[2] = {ray_arg_ref(slow), val(&tag)};
  ray_ref *waiting;
  CHECK_OK(ray_actor_call(a, 0, args, 2, &waiting)); /* submitter A waits on it */
  struct submitter_b sb = {a, 0};
  pthread_t t;
  pthread_create(&t, NULL, submitter_b_thread, &sb);
  pthread_join(t, NULL);
  assert_int_equal(sb.done, 1);
  bool ready;
  ray_ref *w1[1] = {waiting};
  assert_int_equal(ray_wait(w1, 1, 1, 0, &ready), RAY_ETIMEOUT); /* A's call still waits */
  assert_int_equal(get_i64(waiting), 999);
  ray_ref_release(waiting);
  ray_ref_release(slow);
  ray_actor_release(a);
}

static _Atomic int g_inside, g_max_inside;

static ray_status rendezvous_method(void *state, ray_ctx *ctx) {
  (void)state;
  int now = atomic_fetch_add(&g_inside, 1) + 1;
  int m = atomic_load(&g_max_inside);
  while (now > m && !atomic_compare_exchange_weak(&g_max_inside, &m, now)) {
  }
  /* Wait until all three are inside at once (a real rendezvous), bounded
   * by 60 s, which only a hang reaches. */
  for (int i = 0; i < 60000 && atomic_load(&g_max_inside) < 3; i++) usleep(1000);
  usleep(2000);
  atomic_fetch_sub(&g_inside, 1);
  return ret_i64(ctx, atomic_load(&g_max_inside));
}
static const ray_method rv_methods[] = {{"meet", rendezvous_method}};
static const ray_actor_class rv_class = {"Rendezvous", 0, NULL, NULL, rv_methods, 1};

static void test_max_concurrency_3_runs_three_methods_at_once_never_more(void **state) {
  (void)state;
  atomic_store(&g_inside, 0);
  atomic_store(&g_max_inside, 0);
  ray_actor_opts o = {0};
  o.max_concurrency = 3;
  ray_actor *a;
  CHECK_OK(ray_actor_create(&rv_class, NULL, 0, &o, &a));
  ray_ref *r[6];
  for (int i = 0; i < 6; i++) CHECK_OK(ray_actor_call(a, 0, NULL, 0, &r[i]));
  for (int i = 0; i < 6; i++) {
    assert_int_equal(get_i64(r[i]), 3);
    ray_ref_release(r[i]);
  }
  assert_int_equal(atomic_load(&g_max_inside), 3);
  ray_actor_release(a);
}

/* ------------------------------------------------------------------------ */
/* Failures                                                                 */
/* ------------------------------------------------------------------------ */

static void test_a_method_error_fails_only_that_call(void **state) {
  (void)state;
  ray_actor *a = new_counter(NULL, NULL);
  assert_int_equal(call_i64(a, INCR, NULL, 0), 1);
  ray_ref *r;
  CHECK_OK(ray_actor_call(a, FAIL, NULL, 0, &r));
  ray_view v;
  assert_int_equal(ray_get(r, NULL, -1, &v), RAY_ETASK);
  assert_string_equal(ray_last_error(), "task 'Counter.fail' failed: not today");
  ray_ref_release(r);
  assert_int_equal(call_i64(a, INCR, NULL, 0), 2); /* state intact */
  ray_actor_release(a);
}

static void test_restart_gives_fresh_state_and_reruns_on_start(void **state) {
  (void)state;
  ray_actor_opts o = {0};
  o.max_restarts = 2;
  o.max_task_retries = 0;
  int64_t ten = 10;
  ray_actor *a = new_counter(&ten, &o);
  assert_int_equal(call_i64(a, INCR, NULL, 0), 11);
  ray_ref *r;
  CHECK_OK(ray_actor_call(a, CRASH, NULL, 0, &r));
  ray_view v;
  assert_int_equal(ray_get(r, NULL, -1, &v), RAY_EACTOR);
  assert_error_contains("died in this call: method 'crash' returned RAY_EACTOR: boom");
  ray_ref_release(r);
  /* Fresh zeroed state, then on_start with the original argument 10. */
  assert_int_equal(call_i64(a, INCR, NULL, 0), 11);
  assert_int_equal(call_i64(a, STARTS, NULL, 0), 1);
  assert_int_equal(stats().actor_restarts, 1);
  ray_actor_release(a);
}

static void test_every_call_fails_once_restarts_run_out(void **state) {
  (void)state;
  ray_actor_opts o = {0};
  o.max_restarts = 1;
  ray_actor *a = new_counter(NULL, &o);
  ray_ref *r;
  for (int i = 0; i < 2; i++) { /* the first crash restarts, the second ends */
    CHECK_OK(ray_actor_call(a, CRASH, NULL, 0, &r));
    ray_view v;
    assert_int_equal(ray_get(r, NULL, -1, &v), RAY_EACTOR);
    ray_ref_release(r);
  }
  assert_int_equal(call_until_failure(a), RAY_EACTOR); /* until the end is seen */
  assert_error_contains("actor 'Counter' (");
  assert_error_contains(") ended: method 'crash' returned RAY_EACTOR: boom");
  assert_int_equal(ray_actor_send(a, INCR, NULL, 0), RAY_EACTOR);
  ray_actor_release(a);
}

static void test_on_start_failure_fails_every_call_with_the_reason(void **state) {
  (void)state;
  int64_t bad = -1;
  ray_actor *a = new_counter(&bad, NULL);
  assert_int_equal(call_until_failure(a), RAY_EACTOR);
  assert_error_contains("ended: on_start failed: bad start value -1");
  ray_actor_release(a);
}

static void test_intentional_exit_is_never_restarted(void **state) {
  (void)state;
  atomic_store(&g_stops, 0);
  ray_actor_opts o = {0};
  o.max_restarts = 5;
  ray_actor *a = new_counter(NULL, &o);
  assert_int_equal(call_i64(a, INCR, NULL, 0), 1);
  assert_int_equal(call_i64(a, EXIT, NULL, 0), 1); /* its result is delivered */
  assert_int_equal(call_until_failure(a), RAY_EACTOR);
  assert_error_contains("ended: exited in method 'exit'");
  assert_int_equal(stats().actor_restarts, 0);
  assert_int_equal(atomic_load(&g_stops), 1);
  ray_actor_release(a);
}

static void test_kill_with_and_without_restart(void **state) {
  (void)state;
  atomic_store(&g_stops, 0);
  ray_actor_opts o = {0};
  o.max_restarts = 1;
  int64_t seven = 7;
  ray_actor *a = new_counter(&seven, &o);
  assert_int_equal(call_i64(a, INCR, NULL, 0), 8);
  CHECK_OK(ray_actor_kill(a, false)); /* restarts: on_stop, fresh state, on_start(7) */
  assert_int_equal(call_i64(a, INCR, NULL, 0), 8);
  assert_int_equal(stats().actor_restarts, 1);
  CHECK_OK(ray_actor_kill(a, true));
  assert_int_equal(call_until_failure(a), RAY_EACTOR);
  assert_error_contains("ended: killed");
  assert_int_equal(atomic_load(&g_stops), 2); /* once per started incarnation */
  assert_int_equal(ray_actor_kill(NULL, true), RAY_EINVAL);
  ray_actor_release(a);
}

/* ------------------------------------------------------------------------ */
/* Names, handles, quota, bad input                                         */
/* ------------------------------------------------------------------------ */

static void test_names_are_unique_and_free_again_once_ended(void **state) {
  (void)state;
  ray_actor_opts o = {0};
  o.name = "counter-1";
  ray_actor *a = new_counter(NULL, &o), *b, *found;
  assert_int_equal(ray_actor_create(&counter_class, NULL, 0, &o, &b), RAY_EEXIST);
  assert_error_contains("'counter-1'");
  CHECK_OK(ray_actor_lookup("counter-1", &found));
  assert_int_equal(call_i64(found, INCR, NULL, 0), 1);
  assert_int_equal(call_i64(a, INCR, NULL, 0), 2); /* the same actor */
  assert_int_equal(ray_actor_lookup("nobody", &found), RAY_ENOTFOUND);
  assert_error_contains("'nobody'");
  ray_actor_opts empty = {0};
  empty.name = "";
  assert_int_equal(ray_actor_create(&counter_class, NULL, 0, &empty, &b), RAY_EINVAL);
  assert_error_contains("empty");
  assert_int_equal(ray_actor_lookup("", &b), RAY_EINVAL);
  ray_actor_release(found);
  CHECK_OK(ray_actor_kill(a, true));
  ray_actor_release(a);
  /* Once it has ended, the name is free again. */
  ray_status s;
  for (int i = 0; i < 60000; i++) { /* 60 s at most: a hang */
    s = ray_actor_create(&counter_class, NULL, 0, &o, &b);
    if (s != RAY_EEXIST) break;
    usleep(1000);
  }
  assert_int_equal(s, RAY_OK);
  ray_actor_release(b);
}

static ray_status use_actor_task(ray_ctx *ctx) {
  ray_actor *a;
  ray_status s = ray_ctx_arg_actor(ctx, 0, &a);
  if (s != RAY_OK) return s;
  ray_ref *r;
  if ((s = ray_actor_call(a, INCR, NULL, 0, &r)) != RAY_OK) return s;
  s = ray_ctx_return_ref(ctx, 0, r);
  ray_ref_release(r);
  return s;
}

static ray_status self_method(void *state, ray_ctx *ctx) {
  (void)state;
  ray_actor *me = ray_ctx_self(ctx);
  return ret_i64(ctx, me != NULL);
}

static void test_actor_handles_pass_to_tasks_and_count(void **state) {
  (void)state;
  ray_actor *a = new_counter(NULL, NULL);
  ray_arg arg = ray_arg_actor(a);
  ray_ref *r;
  CHECK_OK(ray_submit(use_actor_task, &arg, 1, NULL, &r));
  ray_actor_release(a); /* the task holds its own handle */
  assert_int_equal(get_i64(r), 1);
  ray_ref_release(r);
  /* A released handle is detected (b's only handle is gone). */
  ray_actor *b = new_counter(NULL, NULL);
  ray_actor_release(b);
  assert_int_equal(ray_actor_call(b, INCR, NULL, 0, &r), RAY_EINVAL);
  assert_error_contains("released or invalid");
  assert_null(ray_actor_retain(b));
  static const ray_method m[] = {{"self", self_method}};
  static const ray_actor_class selfc = {"Self", 0, NULL, NULL, m, 1};
  ray_actor *s;
  CHECK_OK(ray_actor_create(&selfc, NULL, 0, NULL, &s));
  assert_int_equal(call_i64(s, 0, NULL, 0), 1);
  ray_actor_release(s);
}

static ray_status hog_method(void *state, ray_ctx *ctx) {
  (void)state;
  ray_ref *keep[2];
  static char buf[700 * 1024];
  ray_status s = ray_put(buf, sizeof buf, NULL, &keep[0]);
  if (s != RAY_OK) return s;
  s = ray_put(buf, sizeof buf, NULL, &keep[1]); /* 1.4 MB > 1 MiB quota */
  ray_ref_release(keep[0]);
  if (s == RAY_OK) ray_ref_release(keep[1]);
  return s == RAY_OK ? ret_i64(ctx, 0) : s;
}

static void test_memory_quota_refuses_a_put_naming_the_actor(void **state) {
  (void)state;
  static const ray_method m[] = {{"hog", hog_method}};
  static const ray_actor_class hog = {"Hog", 0, NULL, NULL, m, 1};
  ray_actor_opts o = {0};
  o.name = "hungry";
  o.memory_quota = (size_t)1 << 20;
  ray_actor *a;
  CHECK_OK(ray_actor_create(&hog, NULL, 0, &o, &a));
  ray_ref *r;
  CHECK_OK(ray_actor_call(a, 0, NULL, 0, &r));
  ray_view v;
  assert_int_equal(ray_get(r, NULL, -1, &v), RAY_ETASK);
  assert_error_contains("returned RAY_ESTOREFULL");
  assert_error_contains("actor 'hungry' (");
  assert_error_contains("is over its memory quota: asked 716800 bytes, using 716800 of 1048576");
  ray_ref_release(r);
  /* The first object was released: the quota is free again. */
  ray_ref *r2;
  CHECK_OK(ray_actor_call(a, 0, NULL, 0, &r2));
  assert_int_equal(ray_get(r2, NULL, -1, &v), RAY_ETASK);
  ray_ref_release(r2);
  ray_actor_release(a);
}

static void test_bad_actor_arguments_give_einval(void **state) {
  (void)state;
  ray_actor *a, *b;
  assert_int_equal(ray_actor_create(NULL, NULL, 0, NULL, &a), RAY_EINVAL);
  assert_int_equal(ray_actor_create(&counter_class, NULL, 0, NULL, NULL), RAY_EINVAL);
  static const ray_method bad[] = {{"x", NULL}};
  static const ray_actor_class badc = {"Bad", 0, NULL, NULL, bad, 1};
  assert_int_equal(ray_actor_create(&badc, NULL, 0, NULL, &a), RAY_EINVAL);
  assert_error_contains("method 0 of class 'Bad' has a NULL fn");
  ray_actor_opts o = {0};
  o.max_concurrency = -1;
  assert_int_equal(ray_actor_create(&counter_class, NULL, 0, &o, &a), RAY_EINVAL);
  a = new_counter(NULL, NULL);
  ray_ref *r;
  assert_int_equal(ray_actor_call(a, 99, NULL, 0, &r), RAY_EINVAL);
  assert_error_contains("has 7 methods, not index 99");
  /* One method is "1 method", in both messages that count them. */
  static const ray_method one[] = {{"get", counter_get}};
  static const ray_actor_class onec = {"One", sizeof(counter), NULL, NULL, one, 1};
  static const ray_actor_class nullc = {"Null", 0, NULL, NULL, NULL, 1};
  assert_int_equal(ray_actor_create(&nullc, NULL, 0, NULL, &b), RAY_EINVAL);
  assert_error_contains("class 'Null' has 1 method but methods is NULL");
  assert_int_equal(ray_actor_create(&onec, NULL, 0, NULL, &b), RAY_OK);
  assert_int_equal(ray_actor_call(b, 1, NULL, 0, &r), RAY_EINVAL);
  assert_error_contains("actor 'One' has 1 method, not index 1");
  ray_actor_release(b);
  assert_int_equal(ray_actor_call(a, INCR, NULL, 0, NULL), RAY_EINVAL);
  assert_int_equal(ray_actor_call(NULL, 0, NULL, 0, &r), RAY_EINVAL);
  assert_int_equal(ray_actor_send(NULL, 0, NULL, 0), RAY_EINVAL);
  ray_actor_release(a);
  ray_actor_release(NULL);
}

static void test_failed_sends_are_counted_and_logged(void **state) {
  (void)state;
  ray_actor *a = new_counter(NULL, NULL);
  CHECK_OK(ray_actor_send(a, FAIL, NULL, 0));
  CHECK_OK(ray_actor_send(a, INCR, NULL, 0));
  assert_int_equal(call_i64(a, GET, NULL, 0), 1); /* in order: both sends ran */
  assert_int_equal(stats().actor_sends_failed, 1);
  ray_actor_release(a);
}

/* ------------------------------------------------------------------------ */
/* Volume and shutdown                                                      */
/* ------------------------------------------------------------------------ */

static void test_1000_actors_times_100_messages(void **state) {
  (void)state;
  int n = 1000 / SCALE;
  ray_actor **a = malloc((size_t)n * sizeof *a);
  for (int i = 0; i < n; i++) a[i] = new_counter(NULL, NULL);
  for (int m = 0; m < 100; m++)
    for (int i = 0; i < n; i++) CHECK_OK(ray_actor_send(a[i], INCR, NULL, 0));
  for (int i = 0; i < n; i++) {
    assert_int_equal(call_i64(a[i], GET, NULL, 0), 100);
    ray_actor_release(a[i]);
  }
  free(a);
  assert_int_equal(stats().actor_calls, (uint64_t)n * 101);
}

typedef struct tally {
  int64_t n;
} tally;
static _Atomic int64_t g_tally_at_stop[3];
static _Atomic int g_stop_calls;

static ray_status tally_start(void *state, ray_ctx *ctx) {
  ((tally *)state)->n = 100 * arg_i64(ctx, 0); /* remembers which actor it is */
  return RAY_OK;
}
static void tally_stop(void *state, ray_ctx *ctx) {
  (void)ctx;
  tally *t = state;
  atomic_store(&g_tally_at_stop[t->n / 100], t->n % 100);
  atomic_fetch_add(&g_stop_calls, 1);
}
static ray_status tally_incr(void *state, ray_ctx *ctx) {
  (void)ctx;
  ((tally *)state)->n++;
  usleep(2000); /* so that sends are still queued at shutdown */
  return RAY_OK;
}
static const ray_method tally_methods[] = {{"incr", tally_incr}};
static const ray_actor_class tally_class = {"Tally",    sizeof(tally), tally_start,
                                            tally_stop, tally_methods, 1};

static void test_queued_sends_all_run_before_on_stop_at_shutdown(void **state) {
  (void)state;
  assert_int_equal(init_workers(2), 0);
  atomic_store(&g_stop_calls, 0);
  ray_actor *a[3];
  for (int64_t i = 0; i < 3; i++) {
    ray_arg arg = val(&i);
    ray_actor_opts o = {0};
    o.detached = i == 2; /* detached actors end at shutdown too */
    CHECK_OK(ray_actor_create(&tally_class, &arg, 1, &o, &a[i]));
  }
  for (int k = 0; k < 5; k++)
    for (int i = 0; i < 3; i++) CHECK_OK(ray_actor_send(a[i], 0, NULL, 0));
  ray_actor_release(a[0]); /* ends after its queued calls */
  ray_actor_release(a[2]);
  assert_int_equal(ray_shutdown(), RAY_OK);        /* a[1] still held: warned, ended */
  assert_int_equal(atomic_load(&g_stop_calls), 3); /* on_stop exactly once each */
  for (int i = 0; i < 3; i++) assert_int_equal(atomic_load(&g_tally_at_stop[i]), 5);
}

static void test_actor_killed_while_its_constructor_waits_for_an_argument(void **state) {
  (void)state;
  void *d;
  ray_ref *later;
  CHECK_OK(ray_create(8, &ray_type_i64, &d, &later)); /* not sealed yet */
  ray_arg arg = ray_arg_ref(later);
  ray_actor *a;
  CHECK_OK(ray_actor_create(&counter_class, &arg, 1, NULL, &a));
  CHECK_OK(ray_actor_kill(a, true)); /* ends before on_start could run */
  assert_int_equal(call_until_failure(a), RAY_EACTOR);
  assert_error_contains("ended: killed");
  *(int64_t *)d = 5; /* the argument arrives after the end: nothing runs */
  CHECK_OK(ray_seal(later));
  ray_ref_release(later);
  ray_actor_release(a);
  assert_int_equal(stats().actors_alive, 0);
}

static void test_calls_without_a_runtime_give_eshutdown(void **state) {
  (void)state;
  ray_actor *a;
  assert_int_equal(ray_actor_create(&counter_class, NULL, 0, NULL, &a), RAY_ESHUTDOWN);
  assert_int_equal(ray_actor_lookup("x", &a), RAY_ESHUTDOWN);
  assert_int_equal(ray_actor_call((ray_actor *)(uintptr_t)1, 0, NULL, 0, NULL), RAY_ESHUTDOWN);
  assert_int_equal(ray_actor_kill((ray_actor *)(uintptr_t)1, true), RAY_ESHUTDOWN);
  ray_actor_release((ray_actor *)(uintptr_t)1); /* ignored */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_counter_increment_add_get_gives_6, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_calls_from_one_submitter_run_in_order_without_waiting,
                                      setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_dataset_put_once_is_read_zero_copy_by_tasks_and_actors,
                                      setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_refs_flow_between_tasks_actors_and_the_driver, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_calls_with_args_resolving_at_random_times_run_in_order,
                                      setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_delegation_chain_c_b_a_of_100_calls, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_a_waiting_call_does_not_hold_back_other_submitters,
                                      setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_max_concurrency_3_runs_three_methods_at_once_never_more,
                                      setup_four, test_teardown),
      cmocka_unit_test_setup_teardown(test_a_method_error_fails_only_that_call, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_restart_gives_fresh_state_and_reruns_on_start, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_every_call_fails_once_restarts_run_out, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_on_start_failure_fails_every_call_with_the_reason, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_intentional_exit_is_never_restarted, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_kill_with_and_without_restart, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_names_are_unique_and_free_again_once_ended, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_actor_handles_pass_to_tasks_and_count, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_memory_quota_refuses_a_put_naming_the_actor, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_bad_actor_arguments_give_einval, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_failed_sends_are_counted_and_logged, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_1000_actors_times_100_messages, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_actor_killed_while_its_constructor_waits_for_an_argument,
                                      setup, test_teardown),
      cmocka_unit_test(test_queued_sends_all_run_before_on_stop_at_shutdown),
      cmocka_unit_test(test_calls_without_a_runtime_give_eshutdown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
