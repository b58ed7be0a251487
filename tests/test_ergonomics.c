/*
 * test_ergonomics.c - a task in a few lines, with the type checks kept:
 *   - zeroed option structs ({0}) mean the defaults, and the _INIT macros
 *     and ray_config_init keep their meaning; reserved_ must be zero;
 *   - tasks and methods without a name are named after their function, in
 *     error chains and in the timeline; the symbol cache in front of it;
 *   - the typed helpers (ray_ctx_arg_i64 .., ray_get_i64 .., ray_get_many);
 *   - the one-line macros (RAY_SUBMIT, RAY_CALL, ...): every argument kind,
 *     0 and 16 arguments, names. (That they refuse an unsupported type at
 *     compile time is tests/ergonomics/compile_errors.sh.)
 *
 * Every test leaves the runtime shut down and the RAY_* variables unset.
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

#include "core/alloc.h"
#include "core/prim.h"
#include "store/store.h"
#include "task/fnname.h"
#include "test_util.h"
#include <ray.h>

#define MIB ((size_t)1 << 20)

static const char *const k_env_vars[] = {
    "RAY_NUM_WORKERS", "RAY_OBJECT_STORE_MEMORY", "RAY_SPILL_DIR",
    "RAY_TIMELINE",    "RAY_PUT_TIMEOUT_MS",
};

static void unset_ray_env(void) {
  for (size_t i = 0; i < sizeof k_env_vars / sizeof k_env_vars[0]; i++) unsetenv(k_env_vars[i]);
}

static int setup_env(void **state) {
  (void)state;
  unset_ray_env();
  return ray_is_initialized() ? -1 : 0;
}

static int setup(void **state) {
  (void)state;
  unset_ray_env();
  return test_init(2, 256 * MIB, 10000);
}

static int teardown(void **state) {
  (void)state;
  rt_alloc_fail_at(0, false);
  ray_status s = ray_shutdown();
  unset_ray_env();
  return s == RAY_OK ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Typed helpers                                                            */
/* ------------------------------------------------------------------------ */

static ray_status square_it(ray_ctx *ctx) {
  int64_t x;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &x);
  return s != RAY_OK ? s : ray_ctx_return_i64(ctx, 0, x * x);
}

static ray_status fails_on_purpose(ray_ctx *ctx) {
  return ray_ctx_fail(ctx, "bad input");
}

static ray_status plus_one(ray_ctx *ctx) {
  int64_t x;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &x);
  return s != RAY_OK ? s : ray_ctx_return_i64(ctx, 0, x + 1);
}

/* The result of the task that reads it with ray_ctx_arg_<kind>: status and
 * message come back through a get. */
static ray_status read_as_i64(ray_ctx *ctx) {
  int64_t x;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &x);
  return s != RAY_OK ? s : ray_ctx_return_i64(ctx, 0, x);
}

static ray_status read_as_f64(ray_ctx *ctx) {
  double x;
  ray_status s = ray_ctx_arg_f64(ctx, 0, &x);
  return s != RAY_OK ? s : ray_ctx_return_f64(ctx, 0, x);
}

static ray_status read_as_str(ray_ctx *ctx) {
  const char *p;
  ray_status s = ray_ctx_arg_str(ctx, 0, &p);
  return s != RAY_OK ? s : ray_ctx_return_i64(ctx, 0, (int64_t)strlen(p));
}

/* Argument checks that must fail inside a task: returns the status of the
 * first call that did not fail as it should (RAY_OK when all did). */
static ray_status bad_ctx_calls(ray_ctx *ctx) {
  int64_t x;
  double d;
  const char *p;
  if (ray_ctx_arg_i64(ctx, 0, NULL) != RAY_EINVAL || !strstr(ray_last_error(), "out is NULL"))
    return ray_ctx_fail(ctx, "i64 out NULL: %s", ray_last_error());
  if (ray_ctx_arg_f64(ctx, 5, &d) != RAY_EINVAL ||
      !strstr(ray_last_error(), "ray_ctx_arg_f64: task 'bad_ctx_calls' has 1 arguments, not 6"))
    return ray_ctx_fail(ctx, "f64 out of range: %s", ray_last_error());
  if (ray_ctx_arg_str(ctx, 0, NULL) != RAY_EINVAL)
    return ray_ctx_fail(ctx, "str out NULL: %s", ray_last_error());
  if (ray_ctx_arg_str(ctx, 0, &p) != RAY_ETYPE ||
      !strstr(ray_last_error(), "ray_ctx_arg_str: task 'bad_ctx_calls' argument 0"))
    return ray_ctx_fail(ctx, "str of an i64: %s", ray_last_error());
  if (ray_ctx_arg_i64(ctx, 0, &x) != RAY_OK) return ray_ctx_fail(ctx, "i64: %s", ray_last_error());
  if (ray_ctx_return_i64(ctx, 0, x) != RAY_OK) return ray_ctx_fail(ctx, "return");
  if (ray_ctx_return_i64(ctx, 0, x) != RAY_EINVAL ||
      !strstr(ray_last_error(), "ray_ctx_return_i64: return 0 of task 'bad_ctx_calls' is already"))
    return ray_ctx_fail(ctx, "second return: %s", ray_last_error());
  if (ray_ctx_return_f64(ctx, 3, 1.0) != RAY_EINVAL ||
      !strstr(ray_last_error(), "ray_ctx_return_f64: task 'bad_ctx_calls' has 1 returns, not 4"))
    return ray_ctx_fail(ctx, "return out of range: %s", ray_last_error());
  return RAY_OK;
}

/* Submits fn(arg) and returns the status of a get of its result, leaving
 * the message in ray_last_error(). */
static ray_status run_on(ray_task_fn fn, ray_arg arg, int64_t *out) {
  ray_ref *r;
  CHECK_OK(ray_submit(fn, &arg, 1, NULL, &r));
  int64_t x = 0;
  ray_status s = ray_get_i64(r, -1, &x);
  ray_ref_release(r);
  if (out) *out = x;
  return s;
}

static void test_ctx_typed_args_read_their_values(void **state) {
  (void)state;
  int64_t n;
  CHECK_OK(run_on(read_as_i64, ray_arg_value(&(int64_t){-42}, 8, &ray_type_i64), &n));
  assert_int_equal(n, -42);
  ray_ref *r;
  double d = 0;
  ray_arg half = ray_arg_value(&(double){0.5}, 8, &ray_type_f64);
  CHECK_OK(ray_submit(read_as_f64, &half, 1, NULL, &r));
  CHECK_OK(ray_get_f64(r, -1, &d));
  assert_true(d == 0.5);
  ray_ref_release(r);
  CHECK_OK(run_on(read_as_str, ray_arg_str("four"), &n));
  assert_int_equal(n, 4);
  CHECK_OK(run_on(read_as_str, ray_arg_str(""), &n)); /* the NUL makes it one byte */
  assert_int_equal(n, 0);
  /* A str object with a NUL before its end reads up to the NUL. */
  CHECK_OK(run_on(read_as_str, ray_arg_value("ab\0cd", 5, &ray_type_str), &n));
  assert_int_equal(n, 2);
  /* By ref, from the store. */
  ray_ref *obj;
  CHECK_OK(ray_put_i64(99, &obj));
  CHECK_OK(run_on(read_as_i64, ray_arg_ref(obj), &n));
  assert_int_equal(n, 99);
  ray_ref_release(obj);
}

static void test_ctx_typed_args_keep_the_type_check(void **state) {
  (void)state;
  /* Another type: both names, the task and the argument. (The task returns
   * the helper's RAY_ETYPE, so the get of its result gives RAY_ETASK with
   * the helper's message as the reason.) */
  assert_int_equal(run_on(read_as_i64, ray_arg_value(&(double){1}, 8, &ray_type_f64), NULL),
                   RAY_ETASK);
  assert_error_contains("returned RAY_ETYPE");
  assert_error_contains("ray_ctx_arg_i64: task 'read_as_i64' argument 0: value has type 'f64' "
                        "(elem 8), expected 'i64' (elem 8)");
  ray_ref *obj;
  CHECK_OK(ray_put_i64(3, &obj));
  assert_int_equal(run_on(read_as_f64, ray_arg_ref(obj), NULL), RAY_ETASK);
  assert_error_contains("ray_ctx_arg_f64: task 'read_as_f64' argument 0");
  assert_error_contains("has type 'i64' (elem 8), expected 'f64' (elem 8)");
  ray_ref_release(obj);
  /* The right type, but not one element. */
  int64_t two[2] = {1, 2};
  assert_int_equal(run_on(read_as_i64, ray_arg_value(two, sizeof two, &ray_type_i64), NULL),
                   RAY_ETASK);
  assert_error_contains(
      "ray_ctx_arg_i64: task 'read_as_i64' argument 0 holds 2 'i64' elements, not one");
  /* A str without a NUL. */
  assert_int_equal(run_on(read_as_str, ray_arg_value("abc", 3, &ray_type_str), NULL), RAY_ETASK);
  assert_error_contains("ray_ctx_arg_str: task 'read_as_str' argument 0: 3 bytes of 'str' "
                        "without a terminating NUL");
  /* Bad calls inside a task, and a NULL ctx. */
  int64_t n;
  CHECK_OK(run_on(bad_ctx_calls, ray_arg_value(&(int64_t){1}, 8, &ray_type_i64), &n));
  assert_int_equal(n, 1);
  int64_t x;
  assert_int_equal(ray_ctx_arg_i64(NULL, 0, &x), RAY_EINVAL);
  assert_error_contains("ray_ctx_arg_i64: ctx is NULL");
  assert_int_equal(ray_ctx_return_f64(NULL, 0, 1.0), RAY_EINVAL);
  assert_error_contains("ray_ctx_return_f64: ctx is NULL");
  /* ray_arg_str(NULL) fails the submit, naming the argument. */
  ray_arg nul = ray_arg_str(NULL);
  ray_ref *r = NULL;
  assert_int_equal(ray_submit(read_as_str, &nul, 1, NULL, &r), RAY_EINVAL);
  assert_error_contains("argument 0: value with NULL data");
  assert_null(r);
}

static void test_put_and_get_scalars(void **state) {
  (void)state;
  ray_ref *i, *f;
  CHECK_OK(ray_put_i64(INT64_MIN, &i));
  CHECK_OK(ray_put_f64(-2.5, &f));
  int64_t x = 0;
  double d = 0;
  CHECK_OK(ray_get_i64(i, 0, &x));
  CHECK_OK(ray_get_f64(f, 0, &d));
  assert_true(x == INT64_MIN);
  assert_true(d == -2.5);
  ray_view v;
  CHECK_OK(ray_get(i, &ray_type_i64, 0, &v)); /* a plain object of the type */
  assert_int_equal(v.size, 8);
  ray_view_release(&v);

  /* Type checks: both names, under the helper's name; out untouched. */
  x = 11;
  assert_int_equal(ray_get_i64(f, 0, &x), RAY_ETYPE);
  assert_error_contains("ray_get_i64: object ");
  assert_error_contains("has type 'f64' (elem 8), expected 'i64' (elem 8)");
  assert_int_equal(x, 11);
  assert_int_equal(ray_get_f64(i, 0, &d), RAY_ETYPE);
  assert_error_contains("ray_get_f64: object ");
  int64_t two[2] = {1, 2};
  ray_ref *pair;
  CHECK_OK(ray_put(two, sizeof two, &ray_type_i64, &pair));
  assert_int_equal(ray_get_i64(pair, 0, &x), RAY_ETYPE);
  assert_error_contains("holds 2 'i64' elements, not one");
  assert_int_equal(x, 11);
  assert_int_equal(ray_get_i64(i, 0, NULL), RAY_EINVAL);
  assert_error_contains("ray_get_i64: out is NULL");
  assert_int_equal(ray_get_i64(i, -2, &x), RAY_EINVAL);
  assert_error_contains("ray_get_i64: timeout_ms -2 is below -1");

  /* Not ready, and a task's failure: ray_get's status and message. */
  void *data;
  ray_ref *pending, *bad;
  CHECK_OK(ray_create(8, &ray_type_i64, &data, &pending));
  assert_int_equal(ray_get_i64(pending, 0, &x), RAY_ETIMEOUT);
  assert_error_contains("ray_get_i64: object ");
  assert_error_contains("is not ready yet");
  memcpy(data, &(int64_t){8}, 8);
  CHECK_OK(ray_seal(pending));
  CHECK_OK(ray_get_i64(pending, 0, &x));
  assert_int_equal(x, 8);
  CHECK_OK(ray_submit(fails_on_purpose, NULL, 0, NULL, &bad));
  assert_int_equal(ray_get_f64(bad, -1, &d), RAY_ETASK);
  assert_error_contains("ray_get_f64: task 'fails_on_purpose' failed: bad input");
  ray_ref_release(i);
  ray_ref_release(f);
  ray_ref_release(pair);
  ray_ref_release(pending);
  ray_ref_release(bad);
  assert_int_equal(ray_get_i64(i, 0, &x), RAY_EINVAL); /* released */
  assert_error_contains("ray_get_i64:");
}

static void test_typed_helpers_need_a_runtime(void **state) {
  (void)state;
  int64_t x;
  double d;
  ray_ref *r = NULL;
  ray_view v;
  assert_int_equal(ray_get_i64(NULL, 0, &x), RAY_ESHUTDOWN);
  assert_error_contains("ray_get_i64: the runtime is not running");
  assert_int_equal(ray_get_f64(NULL, 0, &d), RAY_ESHUTDOWN);
  assert_int_equal(ray_put_i64(1, &r), RAY_ESHUTDOWN);
  assert_error_contains("ray_put_i64: the runtime is not running");
  assert_int_equal(ray_put_f64(1, &r), RAY_ESHUTDOWN);
  assert_null(r);
  assert_int_equal(ray_get_many(NULL, 0, NULL, 0, NULL), RAY_ESHUTDOWN);
  assert_error_contains("ray_get_many: the runtime is not running");
  assert_int_equal(ray_get_many(&r, 1, NULL, 0, &v), RAY_ESHUTDOWN);
  assert_int_equal(ray_get_many_i64(NULL, 0, 0, NULL), RAY_ESHUTDOWN);
}

/* Fills n views with a pattern, to see that a failed batch leaves them. */
static void poison(ray_view *v, size_t n) {
  memset(v, 0x3c, n * sizeof *v);
}
static bool poisoned(const ray_view *v, size_t n) {
  for (size_t i = 0; i < n * sizeof *v; i++)
    if (((const unsigned char *)v)[i] != 0x3c) return false;
  return true;
}

static void test_get_many_gets_every_object(void **state) {
  (void)state;
  enum { N = 40 }; /* more than fit in its stack scratch */
  ray_ref *refs[N];
  for (int i = 0; i < N; i++) {
    ray_arg a = ray_arg_value(&(int64_t){i}, 8, &ray_type_i64);
    if (i % 2)
      CHECK_OK(ray_put_i64(i, &refs[i]));
    else
      CHECK_OK(ray_submit(square_it, &a, 1, NULL, &refs[i]));
  }
  ray_view v[N];
  CHECK_OK(ray_get_many(refs, N, &ray_type_i64, -1, v));
  for (int i = 0; i < N; i++) {
    assert_int_equal(*(const int64_t *)v[i].data, i % 2 ? i : i * i);
    ray_view_release(&v[i]);
  }
  int64_t x[N];
  CHECK_OK(ray_get_many_i64(refs, N, 1000, x));
  for (int i = 0; i < N; i++) assert_int_equal(x[i], i % 2 ? i : i * i);

  /* The same ref twice, any type with expect NULL, and a poll. */
  ray_ref *f;
  CHECK_OK(ray_put_f64(0.25, &f));
  ray_ref *mixed[3] = {refs[1], f, refs[1]};
  CHECK_OK(ray_get_many(mixed, 3, NULL, 0, v));
  assert_ptr_equal(v[1].type, &ray_type_f64);
  assert_int_equal(*(const int64_t *)v[2].data, 1);
  for (int i = 0; i < 3; i++) ray_view_release(&v[i]);
  /* The views are held until released: every object outlives its refs. */
  CHECK_OK(ray_get_many(refs, 4, NULL, 0, v));
  for (int i = 0; i < N; i++) ray_ref_release(refs[i]);
  assert_int_equal(*(const int64_t *)v[3].data, 3);
  for (int i = 0; i < 4; i++) ray_view_release(&v[i]);
  ray_ref_release(f);
  assert_int_equal(settled_objects(0), 0);

  /* Nothing to get. */
  CHECK_OK(ray_get_many(NULL, 0, NULL, 0, NULL));
  CHECK_OK(ray_get_many_i64(NULL, 0, 0, NULL));
}

static void test_get_many_bad_arguments(void **state) {
  (void)state;
  ray_ref *r;
  CHECK_OK(ray_put_i64(1, &r));
  ray_view v[2];
  int64_t x[2];
  assert_int_equal(ray_get_many(NULL, 1, NULL, 0, v), RAY_EINVAL);
  assert_error_contains("ray_get_many: refs is NULL with n = 1");
  assert_int_equal(ray_get_many(&r, 1, NULL, 0, NULL), RAY_EINVAL);
  assert_error_contains("ray_get_many: out is NULL with n = 1");
  assert_int_equal(ray_get_many(&r, 1, NULL, -2, v), RAY_EINVAL);
  assert_error_contains("ray_get_many: timeout_ms -2 is below -1");
  assert_int_equal(ray_get_many_i64(NULL, 2, 0, x), RAY_EINVAL);
  assert_error_contains("ray_get_many_i64: refs is NULL with n = 2");
  assert_int_equal(ray_get_many_i64(&r, 1, 0, NULL), RAY_EINVAL);
  assert_error_contains("ray_get_many_i64: out is NULL with n = 1");
  /* A NULL ref in the batch: named by its index, the view before released. */
  ray_ref *with_null[2] = {r, NULL};
  poison(v, 2);
  assert_int_equal(ray_get_many(with_null, 2, NULL, 0, v), RAY_EINVAL);
  assert_error_contains("ray_get_many: refs[1]: ");
  assert_true(poisoned(v, 2));
  ray_ref_release(r);
  assert_int_equal(settled_objects(0), 0); /* no view of refs[0] kept it */
}

static void test_get_many_timeout_holds_nothing(void **state) {
  (void)state;
  ray_ref *ready, *pending;
  void *data;
  CHECK_OK(ray_put_i64(5, &ready));
  CHECK_OK(ray_create(8, &ray_type_i64, &data, &pending));
  ray_ref *refs[3] = {ready, pending, ready};
  ray_view v[3];
  poison(v, 3);
  assert_int_equal(ray_get_many(refs, 3, &ray_type_i64, 30, v), RAY_ETIMEOUT);
  char want[96], id[33];
  ray_ref_id(pending, id);
  snprintf(want, sizeof want, "ray_get_many: refs[1] (object %s) not ready within 30 ms", id);
  assert_error_contains(want);
  assert_error_contains("no view is held");
  assert_true(poisoned(v, 3));
  assert_int_equal(ray_get_many(refs, 3, &ray_type_i64, 0, v), RAY_ETIMEOUT); /* a poll */
  assert_error_contains("refs[1]");
  int64_t x[3] = {-1, -1, -1};
  assert_int_equal(ray_get_many_i64(refs, 3, 0, x), RAY_ETIMEOUT);
  assert_error_contains("ray_get_many_i64: refs[1] (object ");
  assert_int_equal(x[0], -1);
  /* Once sealed, the whole batch comes. */
  memcpy(data, &(int64_t){6}, 8);
  CHECK_OK(ray_seal(pending));
  CHECK_OK(ray_get_many_i64(refs, 3, 0, x));
  assert_int_equal(x[0] + x[1] + x[2], 16);
  ray_ref_release(pending);
  ray_ref_release(ready); /* no view of it is left from the failed batches */
  assert_int_equal(settled_objects(0), 0);
}

static void test_get_many_reports_the_failing_object(void **state) {
  (void)state;
  ray_ref *good, *f, *bad, *pair;
  CHECK_OK(ray_put_i64(1, &good));
  CHECK_OK(ray_put_f64(1, &f));
  CHECK_OK(ray_submit(fails_on_purpose, NULL, 0, NULL, &bad));
  int64_t two[2] = {1, 2};
  CHECK_OK(ray_put(two, sizeof two, &ray_type_i64, &pair));
  ray_view v[3];
  int64_t x[3] = {-1, -1, -1};

  ray_ref *task_failed[3] = {good, good, bad};
  poison(v, 3);
  assert_int_equal(ray_get_many(task_failed, 3, NULL, -1, v), RAY_ETASK);
  assert_error_contains("ray_get_many: refs[2]: task 'fails_on_purpose' failed: bad input");
  assert_true(poisoned(v, 3));

  ray_ref *wrong_type[3] = {good, f, good};
  assert_int_equal(ray_get_many(wrong_type, 3, &ray_type_i64, -1, v), RAY_ETYPE);
  assert_error_contains("ray_get_many: refs[1]: object ");
  assert_error_contains("has type 'f64' (elem 8), expected 'i64' (elem 8)");
  assert_true(poisoned(v, 3));
  assert_int_equal(ray_get_many_i64(wrong_type, 3, -1, x), RAY_ETYPE);
  assert_error_contains("ray_get_many_i64: refs[1]: object ");

  ray_ref *not_one[3] = {good, good, pair};
  assert_int_equal(ray_get_many_i64(not_one, 3, -1, x), RAY_ETYPE);
  assert_error_contains("ray_get_many_i64: refs[2] holds 2 'i64' elements, not one");
  assert_int_equal(x[0], -1); /* all or nothing */
  assert_int_equal(ray_get_many_i64(task_failed, 3, -1, x), RAY_ETASK);
  assert_error_contains("ray_get_many_i64: refs[2]: task 'fails_on_purpose' failed");

  ray_ref_release(good);
  ray_ref_release(f);
  ray_ref_release(bad);
  ray_ref_release(pair);
  assert_int_equal(settled_objects(0), 0); /* no view left behind */
}

static void test_get_many_out_of_memory_holds_nothing(void **state) {
  (void)state;
  enum { N = 20 };
  ray_ref *refs[N];
  for (int i = 0; i < N; i++) CHECK_OK(ray_put_i64(i, &refs[i]));
  ray_view v[N];
  int64_t x[N];
  poison(v, N);
  rt_alloc_fail_at(1, true); /* the scratch views */
  ray_status s = ray_get_many(refs, N, NULL, 0, v);
  rt_alloc_fail_at(0, false);
  assert_int_equal(s, RAY_ENOMEM);
  assert_error_contains("ray_get_many: no memory to hold 20 views");
  assert_true(poisoned(v, N));
  rt_alloc_fail_at(1, true);
  s = ray_get_many_i64(refs, N, 0, x);
  rt_alloc_fail_at(0, false);
  assert_int_equal(s, RAY_ENOMEM);
  assert_error_contains("ray_get_many_i64: no memory to hold 20 views");
  rt_alloc_fail_at(2, true); /* its own scratch, then ray_get_many's */
  s = ray_get_many_i64(refs, N, 0, x);
  rt_alloc_fail_at(0, false);
  assert_int_equal(s, RAY_ENOMEM);
  assert_error_contains("ray_get_many_i64: no memory to hold 20 views");
  for (int i = 0; i < N; i++) ray_ref_release(refs[i]);
  assert_int_equal(settled_objects(0), 0);
}

/* ------------------------------------------------------------------------ */
/* Zeroed option structs                                                    */
/* ------------------------------------------------------------------------ */

static ray_status seven(ray_ctx *ctx) {
  return ray_ctx_return_i64(ctx, 0, 7);
}

/* Two returns: the argument and its negation. */
static ray_status both_signs(ray_ctx *ctx) {
  int64_t x;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &x);
  if (s == RAY_OK) s = ray_ctx_return_i64(ctx, 0, x);
  return s != RAY_OK ? s : ray_ctx_return_i64(ctx, 1, -x);
}

static _Atomic int g_no_returns_ran;
static ray_status count_run(ray_ctx *ctx) {
  (void)ctx;
  atomic_fetch_add(&g_no_returns_ran, 1);
  return RAY_OK;
}

/* The acc actor: a running sum; "add" adds every i64 argument and returns
 * the sum; method 1 has no name and fails. */
static ray_status acc_start(void *state, ray_ctx *ctx) {
  return ray_ctx_nargs(ctx) ? ray_ctx_arg_i64(ctx, 0, state) : RAY_OK;
}
static ray_status acc_add(void *state, ray_ctx *ctx) {
  int64_t *sum = state;
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) {
    int64_t x;
    ray_status s = ray_ctx_arg_i64(ctx, i, &x);
    if (s != RAY_OK) return s;
    *sum += x;
  }
  return ray_ctx_return_i64(ctx, 0, *sum);
}
static ray_status acc_refuses(void *state, ray_ctx *ctx) {
  (void)state;
  return ray_ctx_fail(ctx, "refused");
}
enum { ACC_ADD, ACC_REFUSES };
static const ray_method k_acc_methods[] = {{"add", acc_add}, {NULL, acc_refuses}};
static const ray_actor_class k_acc = {"Acc", sizeof(int64_t), acc_start, NULL, k_acc_methods, 2};

static void test_zeroed_task_opts_mean_one_return(void **state) {
  (void)state;
  ray_task_opts o = {0};
  int64_t x = 6;
  ray_arg a = ray_arg_value(&x, sizeof x, &ray_type_i64);
  ray_ref *r[2] = {NULL, NULL};
  CHECK_OK(ray_submit(square_it, &a, 1, &o, r));
  assert_non_null(r[0]);
  assert_null(r[1]);
  assert_int_equal(get_i64(r[0]), 36);
  ray_ref_release(r[0]);
}

static void test_task_opts_init_keeps_its_meaning(void **state) {
  (void)state;
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  assert_null(o.name);
  assert_int_equal(o.num_returns, 1);
  assert_int_equal(o.max_retries, 0);
  for (size_t i = 0; i < sizeof o.reserved_ / sizeof o.reserved_[0]; i++)
    assert_int_equal(o.reserved_[i], 0);
  o.num_returns = 2;
  o.name = "signs";
  int64_t x = 4;
  ray_arg a = ray_arg_value(&x, sizeof x, &ray_type_i64);
  ray_ref *r[2];
  CHECK_OK(ray_submit(both_signs, &a, 1, &o, r));
  assert_int_equal(get_i64(r[0]), 4);
  assert_int_equal(get_i64(r[1]), -4);
  ray_ref_release(r[0]);
  ray_ref_release(r[1]);
}

static void test_no_returns_runs_a_task_without_results(void **state) {
  (void)state;
  ray_task_opts o = {.num_returns = RAY_NO_RETURNS};
  int before = atomic_load(&g_no_returns_ran);
  CHECK_OK(ray_submit(count_run, NULL, 0, &o, NULL));
  WAIT_UNTIL(atomic_load(&g_no_returns_ran) == before + 1, "run of the task without returns");
}

static void test_zero_num_returns_with_null_returns_names_the_fix(void **state) {
  (void)state;
  ray_task_opts o = {0};
  assert_int_equal(ray_submit(count_run, NULL, 0, &o, NULL), RAY_EINVAL);
  assert_error_contains("ray_submit: returns is NULL with num_returns = 0");
  assert_error_contains("RAY_NO_RETURNS asks for none");
}

static void test_task_opts_reserved_must_be_zero(void **state) {
  (void)state;
  ray_task_opts o = {0};
  o.reserved_[2] = 1;
  ray_ref *r = NULL;
  assert_int_equal(ray_submit(seven, NULL, 0, &o, &r), RAY_EINVAL);
  assert_null(r);
  assert_error_contains("ray_submit: opts.reserved_ is not zero");
  o.reserved_[2] = 0;
  o.reserved_int_ = 1;
  assert_int_equal(ray_submit(seven, NULL, 0, &o, &r), RAY_EINVAL);
  assert_null(r);
  assert_error_contains("ray_submit: opts.reserved_ is not zero");
  /* A node that is not a rank of this (1-node) runtime. */
  o.reserved_int_ = 0;
  o.node = RAY_NODE(1);
  assert_int_equal(ray_submit(seven, NULL, 0, &o, &r), RAY_EINVAL);
  assert_null(r);
  assert_error_contains("ray_submit: node 2 (rank 1) is not a rank of this runtime (ranks 0..0)");
  o.node = -1;
  assert_int_equal(ray_submit(seven, NULL, 0, &o, &r), RAY_EINVAL);
  o.node = RAY_NODE(0); /* this rank: fine */
  CHECK_OK(ray_submit(seven, NULL, 0, &o, &r));
  ray_ref_release(r);
}

static void test_zeroed_actor_opts_are_the_defaults(void **state) {
  (void)state;
  ray_actor_opts o = {0};
  ray_actor *a = NULL;
  int64_t start = 10, x = 5;
  ray_arg arg = ray_arg_value(&start, sizeof start, &ray_type_i64);
  CHECK_OK(ray_actor_create(&k_acc, &arg, 1, &o, &a));
  ray_arg ax = ray_arg_value(&x, sizeof x, &ray_type_i64);
  ray_ref *r;
  CHECK_OK(ray_actor_call(a, ACC_ADD, &ax, 1, &r));
  assert_int_equal(get_i64(r), 15);
  ray_ref_release(r);
  ray_actor_release(a);

  o.node = RAY_NODE(3);
  ray_actor *a0 = NULL;
  assert_int_equal(ray_actor_create(&k_acc, NULL, 0, &o, &a0), RAY_EINVAL);
  assert_error_contains("ray_actor_create: node 4 (rank 3) is not a rank of this runtime");
  o.node = RAY_NODE(0);
  CHECK_OK(ray_actor_create(&k_acc, NULL, 0, &o, &a0));
  ray_actor_release(a0);
  o.node = 0;
  o.reserved_[0] = 7;
  a = NULL;
  assert_int_equal(ray_actor_create(&k_acc, NULL, 0, &o, &a), RAY_EINVAL);
  assert_null(a);
  assert_error_contains("ray_actor_create: opts.reserved_ is not zero");
}

static void test_zeroed_config_starts_with_the_defaults(void **state) {
  (void)state;
  ray_config cfg = {0};
  CHECK_OK(ray_init(&cfg));
  assert_int_equal(stats().memory_limit, (size_t)(rt_prim_ram_bytes() / 10 * 3));
  CHECK_OK(ray_shutdown());
  /* ray_config_init leaves reserved_ zero as well, over any garbage. */
  memset(&cfg, 0x5c, sizeof cfg);
  ray_config_init(&cfg);
  for (size_t i = 0; i < sizeof cfg.reserved_ / sizeof cfg.reserved_[0]; i++)
    assert_int_equal(cfg.reserved_[i], 0);
}

static void test_zeroed_config_takes_the_environment(void **state) {
  (void)state;
  char path[64];
  snprintf(path, sizeof path, "/tmp/rayc-ergo-env-%d.json", (int)getpid());
  assert_int_equal(setenv("RAY_OBJECT_STORE_MEMORY", "48M", 1), 0);
  assert_int_equal(setenv("RAY_TIMELINE", path, 1), 0);
  ray_config cfg = {0};
  CHECK_OK(ray_init(&cfg));
  assert_int_equal(stats().memory_limit, 48 * MIB);
  ray_ref *r;
  CHECK_OK(ray_submit(seven, NULL, 0, NULL, &r));
  assert_int_equal(get_i64(r), 7);
  ray_ref_release(r);
  CHECK_OK(ray_shutdown());
  FILE *f = fopen(path, "r"); /* RAY_TIMELINE applied to the NULL timeline_path */
  assert_non_null(f);
  fclose(f);
  unlink(path);

  /* A field the program set beats the environment. */
  cfg.object_store_memory = 32 * MIB;
  unsetenv("RAY_TIMELINE");
  CHECK_OK(ray_init(&cfg));
  assert_int_equal(stats().memory_limit, 32 * MIB);
  CHECK_OK(ray_shutdown());
}

static void test_malformed_environment_fails_a_zeroed_config(void **state) {
  (void)state;
  assert_int_equal(setenv("RAY_NUM_WORKERS", "many", 1), 0);
  ray_config cfg = {0};
  assert_int_equal(ray_init(&cfg), RAY_EINVAL);
  assert_error_contains("RAY_NUM_WORKERS='many'");
  assert_false(ray_is_initialized());
  cfg.num_workers = 2; /* set, yet the variable is malformed: still refused */
  assert_int_equal(ray_init(&cfg), RAY_EINVAL);
  assert_error_contains("RAY_NUM_WORKERS");
  unsetenv("RAY_NUM_WORKERS");
  CHECK_OK(ray_init(&cfg));
}

static void test_config_reserved_must_be_zero(void **state) {
  (void)state;
  ray_config cfg = {0};
  cfg.reserved_[7] = 1;
  assert_int_equal(ray_init(&cfg), RAY_EINVAL);
  assert_error_contains("ray_init: config.reserved_ is not zero");
  assert_false(ray_is_initialized());
}

/* The object that keeps the store full; released by the helper once a put
 * waits for memory (or once the test is over, should the put not wait). */
static ray_ref *g_in_the_way;
static _Atomic int g_put_done;

static void *release_when_a_put_waits(void *arg) {
  (void)arg;
  rt_store *st = rt_store_current();
  while (!atomic_load(&g_put_done) && atomic_load(&st->mem_waiters) == 0) usleep(1000);
  ray_unpin(g_in_the_way);
  ray_ref_release(g_in_the_way);
  return NULL;
}

/* put_timeout_ms 0 is the default wait (10 s), no longer "fail at once": a
 * put that finds the store full of pinned bytes waits for the free. */
static void test_zero_put_timeout_waits_as_the_default(void **state) {
  (void)state;
  ray_config cfg = {0};
  cfg.object_store_memory = 1 * MIB;
  CHECK_OK(ray_init(&cfg));
  void *data;
  CHECK_OK(ray_create(1 * MIB, NULL, &data, &g_in_the_way));
  CHECK_OK(ray_seal(g_in_the_way));
  CHECK_OK(ray_pin(g_in_the_way));
  atomic_store(&g_put_done, 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, release_when_a_put_waits, NULL), 0);
  static unsigned char half[(size_t)1 << 19];
  ray_ref *r = NULL;
  ray_status s = ray_put(half, sizeof half, NULL, &r);
  atomic_store(&g_put_done, 1);
  pthread_join(th, NULL);
  if (s != RAY_OK) fail_msg("ray_put: %s: %s", ray_status_name(s), ray_last_error());
  ray_ref_release(r);
}

static void test_put_no_wait_fails_at_once(void **state) {
  (void)state;
  ray_config cfg = {0};
  cfg.object_store_memory = 1 * MIB;
  cfg.put_timeout_ms = RAY_PUT_NO_WAIT;
  CHECK_OK(ray_init(&cfg));
  void *data;
  ray_ref *full, *r = NULL;
  CHECK_OK(ray_create(1 * MIB, NULL, &data, &full));
  CHECK_OK(ray_seal(full));
  CHECK_OK(ray_pin(full));
  static unsigned char half[(size_t)1 << 19];
  assert_int_equal(ray_put(half, sizeof half, NULL, &r), RAY_ESTOREFULL);
  assert_null(r);
  assert_null(strstr(ray_last_error(), " within ")); /* it did not wait */
  /* The environment's 0 means the same. */
  CHECK_OK(ray_unpin(full));
  ray_ref_release(full);
  CHECK_OK(ray_shutdown());
  assert_int_equal(setenv("RAY_PUT_TIMEOUT_MS", "0", 1), 0);
  ray_config_init(&cfg);
  assert_int_equal(cfg.put_timeout_ms, RAY_PUT_NO_WAIT);
}

static void test_stats_reserved_is_zeroed(void **state) {
  (void)state;
  ray_stats st;
  memset(&st, 0xa5, sizeof st);
  CHECK_OK(ray_stats_get(&st));
  for (size_t i = 0; i < sizeof st.reserved_ / sizeof st.reserved_[0]; i++)
    assert_int_equal(st.reserved_[i], 0);
}

/* ------------------------------------------------------------------------ */
/* Default names                                                            */
/* ------------------------------------------------------------------------ */

static ray_status never_submitted(ray_ctx *ctx) {
  (void)ctx;
  return RAY_OK;
}

/* Runs first, before anything has read the executable's symbol table: a
 * lookup that runs out of memory names the task "unnamed" this once, and
 * is not cached, so the next lookup finds the name. */
static void test_name_lookup_out_of_memory_is_not_cached(void **state) {
  (void)state;
  uintptr_t fn = (uintptr_t)never_submitted;
  rt_alloc_fail_at(1, false); /* recording the module fails */
  const char *a = rt_task_fn_name(fn);
  rt_alloc_fail_at(2, true); /* the module is recorded; reading its table fails */
  const char *b = rt_task_fn_name(fn);
  rt_alloc_fail_at(0, false);
  assert_string_equal(a, "unnamed");
  assert_string_equal(b, "unnamed");
  const char *c = rt_task_fn_name(fn);
  assert_string_equal(c, "never_submitted");
  assert_ptr_equal(rt_task_fn_name(fn), c); /* cached: the same string */
}

static void *name_on_another_thread(void *arg) {
  return (void *)rt_task_fn_name((uintptr_t)arg);
}

/* More functions than the per-thread cache has ways, asked from two
 * threads: each gets its own name every time, the same pointer everywhere. */
static void test_name_cache_answers_every_function_on_every_thread(void **state) {
  (void)state;
  ray_task_fn fns[] = {square_it, seven,       fails_on_purpose, plus_one,    both_signs,
                       count_run, read_as_i64, read_as_f64,      read_as_str, bad_ctx_calls};
  const char *names[] = {"square_it",   "seven",        "fails_on_purpose", "plus_one",
                         "both_signs",  "count_run",    "read_as_i64",      "read_as_f64",
                         "read_as_str", "bad_ctx_calls"};
  size_t n = sizeof fns / sizeof fns[0];
  for (int round = 0; round < 3; round++)
    for (size_t i = 0; i < n; i++) {
      const char *here = rt_task_fn_name((uintptr_t)fns[i]);
      assert_string_equal(here, names[i]);
      pthread_t th;
      void *there;
      assert_int_equal(pthread_create(&th, NULL, name_on_another_thread, (void *)(uintptr_t)fns[i]),
                       0);
      pthread_join(th, &there);
      assert_ptr_equal(there, here);
    }
}

static void test_unnamed_task_is_named_after_its_function_in_errors(void **state) {
  (void)state;
  ray_ref *bad, *next;
  CHECK_OK(ray_submit(fails_on_purpose, NULL, 0, NULL, &bad));
  ray_arg a = ray_arg_ref(bad);
  CHECK_OK(ray_submit(plus_one, &a, 1, NULL, &next));
  ray_view v;
  assert_int_equal(ray_get(bad, NULL, -1, &v), RAY_ETASK);
  assert_error_contains("task 'fails_on_purpose' failed: bad input");
  assert_int_equal(ray_get(next, NULL, -1, &v), RAY_ETASK);
  assert_error_contains(
      "task 'plus_one' not run: argument 0 comes from task 'fails_on_purpose', which failed: "
      "bad input");
  ray_ref_release(bad);
  ray_ref_release(next);
  /* A name given in the options still wins. */
  ray_task_opts o = {.name = "custom"};
  CHECK_OK(ray_submit(fails_on_purpose, NULL, 0, &o, &bad));
  assert_int_equal(ray_get(bad, NULL, -1, &v), RAY_ETASK);
  assert_error_contains("task 'custom' failed");
  ray_ref_release(bad);
}

static void test_method_without_a_name_is_named_after_its_function(void **state) {
  (void)state;
  ray_actor *a;
  CHECK_OK(ray_actor_create(&k_acc, NULL, 0, NULL, &a));
  ray_ref *r;
  CHECK_OK(ray_actor_call(a, ACC_REFUSES, NULL, 0, &r));
  ray_view v;
  assert_int_equal(ray_get(r, NULL, -1, &v), RAY_ETASK);
  assert_error_contains("task 'Acc.acc_refuses' failed: refused");
  ray_ref_release(r);
  ray_actor_release(a);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void test_timeline_names_tasks_and_methods(void **state) {
  (void)state;
  char path[64];
  snprintf(path, sizeof path, "/tmp/rayc-ergo-tl-%d.json", (int)getpid());
  ray_config cfg = {0};
  cfg.num_workers = 2;
  cfg.timeline_path = path;
  CHECK_OK(ray_init(&cfg));
  ray_ref *r, *m;
  CHECK_OK(ray_submit(seven, NULL, 0, NULL, &r));
  assert_int_equal(get_i64(r), 7);
  ray_actor *a;
  CHECK_OK(ray_actor_create(&k_acc, NULL, 0, NULL, &a));
  ray_arg ar = ray_arg_ref(r);
  CHECK_OK(ray_actor_call(a, ACC_ADD, &ar, 1, &m));
  assert_int_equal(get_i64(m), 7);
  ray_ref_release(r);
  ray_ref_release(m);
  ray_actor_release(a);
  CHECK_OK(ray_shutdown());
  const char *json = read_file(path);
  unlink(path);
  assert_non_null(json);
  if (!strstr(json, "{\"name\":\"seven\",\"cat\":\"task\""))
    fail_msg("no task slice named seven in %s", json);
  if (!strstr(json, "{\"name\":\"Acc.add\",\"cat\":\"actor.method\""))
    fail_msg("no method slice named Acc.add in %s", json);
  assert_null(strstr(json, "unnamed"));
}

/* ------------------------------------------------------------------------ */
/* The one-line macros                                                      */
/* ------------------------------------------------------------------------ */

/* The number of arguments, and the sum of those that are one i64. */
static ray_status count_and_sum(ray_ctx *ctx) {
  int64_t sum = 0;
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) {
    int64_t x;
    ray_status s = ray_ctx_arg_i64(ctx, i, &x);
    if (s != RAY_OK) return s;
    sum += x;
  }
  ray_status s = ray_ctx_return_i64(ctx, 0, (int64_t)ray_ctx_nargs(ctx));
  return s != RAY_OK ? s : ray_ctx_return_i64(ctx, 1, sum);
}

typedef struct point {
  int64_t x, y;
} point;
static RAY_DEFINE_TYPE(point_type, point, "point");

/* The 16 arguments, one of each kind the macros know, checked one by one;
 * returns how many it checked. */
static ray_status all_kinds(ray_ctx *ctx) {
  if (ray_ctx_nargs(ctx) != 16) return ray_ctx_fail(ctx, "%zu arguments", ray_ctx_nargs(ctx));
  int64_t i64[16];
  double f64[16];
  const char *str;
  ray_view v;
  ray_actor *a;
  ray_status s;
  /* 0: a ref to an i64 object; 1: an actor; 2: a point by ray_arg */
  if ((s = ray_ctx_arg_i64(ctx, 0, &i64[0])) != RAY_OK || i64[0] != 5)
    return ray_ctx_fail(ctx, "arg 0");
  if ((s = ray_ctx_arg_actor(ctx, 1, &a)) != RAY_OK) return ray_ctx_fail(ctx, "arg 1");
  if ((s = ray_ctx_arg(ctx, 2, &point_type, &v)) != RAY_OK || ((const point *)v.data)->y != -4)
    return ray_ctx_fail(ctx, "arg 2");
  /* 3 and 15: strings, char * and const char * */
  if (ray_ctx_arg_str(ctx, 3, &str) != RAY_OK || strcmp(str, "hello") != 0)
    return ray_ctx_fail(ctx, "arg 3");
  if (ray_ctx_arg_str(ctx, 15, &str) != RAY_OK || strcmp(str, "const") != 0)
    return ray_ctx_fail(ctx, "arg 15");
  /* 4..11: integers of every accepted type, as i64 */
  static const int64_t want[] = {7, -3, 4000000000, -9000000000, 1, 'A', -100, 200};
  for (size_t i = 4; i <= 11; i++)
    if (ray_ctx_arg_i64(ctx, i, &i64[i]) != RAY_OK || i64[i] != want[i - 4])
      return ray_ctx_fail(ctx, "arg %zu: %s", i, ray_last_error());
  /* 12..14: unsigned short, float and double, as i64, f64, f64 */
  if (ray_ctx_arg_i64(ctx, 12, &i64[12]) != RAY_OK || i64[12] != 60000)
    return ray_ctx_fail(ctx, "arg 12");
  if (ray_ctx_arg_f64(ctx, 13, &f64[13]) != RAY_OK || f64[13] != 1.5)
    return ray_ctx_fail(ctx, "arg 13");
  if (ray_ctx_arg_f64(ctx, 14, &f64[14]) != RAY_OK || f64[14] != 2.25)
    return ray_ctx_fail(ctx, "arg 14");
  return ray_ctx_return_i64(ctx, 0, 16);
}

static void test_submit_macro_takes_every_argument_kind(void **state) {
  (void)state;
  ray_ref *five, *r;
  CHECK_OK(ray_put_i64(5, &five));
  ray_actor *acc;
  CHECK_OK(RAY_ACTOR_CREATE(&acc, &k_acc, 0));
  point p = {3, -4};
  char hello[] = "hello";
  const char *konst = "const";
  short sh = -3;
  unsigned int ui = 4000000000u;
  long long ll = -9000000000LL;
  _Bool yes = 1;
  char c = 'A';
  signed char sc = -100;
  unsigned char uc = 200;
  unsigned short us = 60000;
  float fl = 1.5f;
  CHECK_OK(RAY_SUBMIT(&r, all_kinds, five, acc, ray_arg_value(&p, sizeof p, &point_type), hello, 7,
                      sh, ui, ll, yes, c, sc, uc, us, fl, 2.25, konst));
  int64_t n = 0;
  CHECK_OK(ray_get_i64(r, -1, &n));
  assert_int_equal(n, 16);
  ray_ref_release(r);
  ray_ref_release(five);
  ray_actor_release(acc);
}

static void test_submit_macro_zero_and_sixteen_arguments(void **state) {
  (void)state;
  ray_ref *r;
  CHECK_OK(RAY_SUBMIT(&r, seven));
  assert_int_equal(get_i64(r), 7);
  ray_ref_release(r);
  ray_ref *two[2];
  ray_task_opts o = {.num_returns = 2};
  CHECK_OK(RAY_SUBMIT_OPTS(&o, two, count_and_sum, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                           15, 16));
  assert_int_equal(get_i64(two[0]), 16);
  assert_int_equal(get_i64(two[1]), 136);
  ray_ref_release(two[0]);
  ray_ref_release(two[1]);
  CHECK_OK(RAY_SUBMIT_OPTS(&o, two, count_and_sum));
  assert_int_equal(get_i64(two[0]), 0);
  ray_ref_release(two[0]);
  ray_ref_release(two[1]);
  /* A value and a ref of the same object in one call; values evaluated once. */
  int64_t i = 0;
  ray_ref *sq;
  CHECK_OK(RAY_SUBMIT(&sq, square_it, ++i + 2)); /* 3 */
  CHECK_OK(RAY_SUBMIT_OPTS(&o, two, count_and_sum, sq, i, sq));
  assert_int_equal(i, 1);
  assert_int_equal(get_i64(two[1]), 9 + 1 + 9);
  ray_ref_release(sq);
  ray_ref_release(two[0]);
  ray_ref_release(two[1]);
}

static void test_submit_macro_names_the_task_after_its_function(void **state) {
  (void)state;
  ray_ref *bad, *next;
  CHECK_OK(RAY_SUBMIT(&bad, fails_on_purpose));
  CHECK_OK(RAY_SUBMIT(&next, plus_one, bad));
  int64_t x;
  assert_int_equal(ray_get_i64(next, -1, &x), RAY_ETASK);
  assert_error_contains(
      "task 'plus_one' not run: argument 0 comes from task 'fails_on_purpose', which failed");
  ray_ref_release(bad);
  ray_ref_release(next);
  /* RAY_SUBMIT_OPTS: a name in the options wins; without one, the function's. */
  ray_task_opts o = {.name = "renamed", .max_retries = 1};
  CHECK_OK(RAY_SUBMIT_OPTS(&o, &bad, fails_on_purpose));
  assert_int_equal(ray_get_i64(bad, -1, &x), RAY_ETASK);
  assert_error_contains("task 'renamed' failed");
  ray_ref_release(bad);
  CHECK_OK(RAY_SUBMIT_OPTS(NULL, &bad, fails_on_purpose));
  assert_int_equal(ray_get_i64(bad, -1, &x), RAY_ETASK);
  assert_error_contains("task 'fails_on_purpose' failed");
  ray_ref_release(bad);
  /* The errors are ray_submit's. */
  assert_int_equal(RAY_SUBMIT(NULL, seven), RAY_EINVAL);
  assert_error_contains("ray_submit: returns is NULL");
}

static void test_call_send_and_create_macros(void **state) {
  (void)state;
  ray_actor *acc;
  CHECK_OK(RAY_ACTOR_CREATE(&acc, &k_acc, 100));
  ray_ref *r, *one;
  CHECK_OK(RAY_CALL(&r, acc, ACC_ADD));
  assert_int_equal(get_i64(r), 100);
  ray_ref_release(r);
  CHECK_OK(RAY_SEND(acc, ACC_ADD, 5));
  CHECK_OK(ray_put_i64(1, &one));
  CHECK_OK(RAY_CALL(&r, acc, ACC_ADD, one, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16));
  assert_int_equal(get_i64(r), 100 + 5 + 136);
  ray_ref_release(r);
  CHECK_OK(RAY_SEND(acc, ACC_ADD, one, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16));
  CHECK_OK(RAY_CALL(&r, acc, ACC_ADD, 0));
  assert_int_equal(get_i64(r), 100 + 5 + 136 + 136);
  ray_ref_release(r);
  CHECK_OK(RAY_CALL(&r, acc, ACC_REFUSES));
  int64_t x;
  assert_int_equal(ray_get_i64(r, -1, &x), RAY_ETASK);
  assert_error_contains("task 'Acc.acc_refuses' failed: refused");
  ray_ref_release(r);
  /* The errors are the plain calls'. */
  assert_int_equal(RAY_CALL(&r, acc, 7, one), RAY_EINVAL);
  assert_error_contains("ray_actor_call: actor 'Acc' has 2 methods, not index 7");
  assert_int_equal(RAY_SEND(acc, 9), RAY_EINVAL);
  assert_error_contains("ray_actor_send:");
  ray_ref_release(one);
  ray_actor_release(acc);
  ray_actor_opts named = {.name = "the_acc"};
  CHECK_OK(RAY_ACTOR_CREATE_OPTS(&named, &acc, &k_acc, 1));
  ray_actor *found;
  CHECK_OK(ray_actor_lookup("the_acc", &found));
  CHECK_OK(RAY_CALL(&r, found, ACC_ADD, 1));
  assert_int_equal(get_i64(r), 2);
  ray_ref_release(r);
  ray_actor_release(found);
  ray_actor_release(acc);
}

int main(void) {
  /* First: its first test needs an executable whose symbol table nothing has read. */
  const struct CMUnitTest names[] = {
      cmocka_unit_test_setup_teardown(test_name_lookup_out_of_memory_is_not_cached, setup_env,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_name_cache_answers_every_function_on_every_thread,
                                      setup_env, teardown),
      cmocka_unit_test_setup_teardown(test_unnamed_task_is_named_after_its_function_in_errors,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_method_without_a_name_is_named_after_its_function, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_timeline_names_tasks_and_methods, setup_env, teardown),
  };
  const struct CMUnitTest helpers[] = {
      cmocka_unit_test_setup_teardown(test_ctx_typed_args_read_their_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ctx_typed_args_keep_the_type_check, setup, teardown),
      cmocka_unit_test_setup_teardown(test_put_and_get_scalars, setup, teardown),
      cmocka_unit_test_setup_teardown(test_typed_helpers_need_a_runtime, setup_env, teardown),
      cmocka_unit_test_setup_teardown(test_get_many_gets_every_object, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_many_bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_many_timeout_holds_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_many_reports_the_failing_object, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_many_out_of_memory_holds_nothing, setup, teardown),
  };
  const struct CMUnitTest zeroed[] = {
      cmocka_unit_test_setup_teardown(test_zeroed_task_opts_mean_one_return, setup, teardown),
      cmocka_unit_test_setup_teardown(test_task_opts_init_keeps_its_meaning, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_returns_runs_a_task_without_results, setup, teardown),
      cmocka_unit_test_setup_teardown(test_zero_num_returns_with_null_returns_names_the_fix, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_task_opts_reserved_must_be_zero, setup, teardown),
      cmocka_unit_test_setup_teardown(test_zeroed_actor_opts_are_the_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_zeroed_config_starts_with_the_defaults, setup_env,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_zeroed_config_takes_the_environment, setup_env,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_malformed_environment_fails_a_zeroed_config, setup_env,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_config_reserved_must_be_zero, setup_env, teardown),
      cmocka_unit_test_setup_teardown(test_zero_put_timeout_waits_as_the_default, setup_env,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_put_no_wait_fails_at_once, setup_env, teardown),
      cmocka_unit_test_setup_teardown(test_stats_reserved_is_zeroed, setup, teardown),
  };
  const struct CMUnitTest macros[] = {
      cmocka_unit_test_setup_teardown(test_submit_macro_takes_every_argument_kind, setup, teardown),
      cmocka_unit_test_setup_teardown(test_submit_macro_zero_and_sixteen_arguments, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_submit_macro_names_the_task_after_its_function, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_call_send_and_create_macros, setup, teardown),
  };
  int failed = 0;
  failed += cmocka_run_group_tests_name("default names", names, NULL, NULL);
  failed += cmocka_run_group_tests_name("typed helpers", helpers, NULL, NULL);
  failed += cmocka_run_group_tests_name("zeroed option structs", zeroed, NULL, NULL);
  failed += cmocka_run_group_tests_name("one-line macros", macros, NULL, NULL);
  return failed;
}
