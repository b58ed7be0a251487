/*
 * test_wait.c - ray_wait over objects being created and sealed by others.
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
#include <string.h>
#include <unistd.h>

#include "ray.h"
#include "store/store.h"
#include "test_util.h"

static int setup(void **state) {
  (void)state;
  return test_init(0, 64 << 20, 10000);
}
static ray_ref *created(void) {
  void *d;
  ray_ref *r;
  assert_int_equal(ray_create(8, NULL, &d, &r), RAY_OK);
  return r;
}
static ray_ref *sealed(void) {
  ray_ref *r;
  assert_int_equal(ray_put("12345678", 8, NULL, &r), RAY_OK);
  return r;
}

static void test_wait_all_ready_returns_at_once(void **state) {
  (void)state;
  ray_ref *r[4] = {sealed(), sealed(), sealed(), sealed()};
  bool ready[4] = {0};
  assert_int_equal(ray_wait(r, 4, 4, -1, ready), RAY_OK);
  for (int i = 0; i < 4; i++) assert_true(ready[i]);
  for (int i = 0; i < 4; i++) ray_ref_release(r[i]);
}

static void test_wait_one_of_four(void **state) {
  (void)state;
  ray_ref *r[4] = {created(), created(), sealed(), created()};
  bool ready[4];
  assert_int_equal(ray_wait(r, 4, 1, -1, ready), RAY_OK);
  assert_false(ready[0]);
  assert_false(ready[1]);
  assert_true(ready[2]);
  assert_false(ready[3]);
  for (int i = 0; i < 4; i++) ray_ref_release(r[i]);
}

static void test_wait_timeout_still_reports_ready_flags(void **state) {
  (void)state;
  ray_ref *r[3] = {sealed(), created(), created()};
  bool ready[3] = {false, true, true};
  assert_int_equal(ray_wait(r, 3, 2, 30, ready), RAY_ETIMEOUT);
  assert_error_contains("1 of 3 refs ready, 2 wanted");
  assert_true(ready[0]);
  assert_false(ready[1]);
  assert_false(ready[2]);
  assert_int_equal(ray_wait(r, 3, 2, 0, ready), RAY_ETIMEOUT); /* poll */
  assert_int_equal(ray_seal(r[2]), RAY_OK);
  assert_int_equal(ray_wait(r, 3, 2, 0, ready), RAY_OK);
  assert_true(ready[2]);
  for (int i = 0; i < 3; i++) ray_ref_release(r[i]);
}

struct seal_args {
  ray_ref *ref;
  useconds_t delay;
};
static void *seal_after(void *arg) {
  struct seal_args *a = arg;
  usleep(a->delay);
  if (ray_seal(a->ref) != RAY_OK) return (void *)1;
  return NULL;
}

static void test_wait_is_woken_by_seals_from_other_threads(void **state) {
  (void)state;
  enum { N = 8 };
  ray_ref *r[N];
  pthread_t t[N];
  struct seal_args a[N];
  for (int i = 0; i < N; i++) {
    r[i] = created();
    a[i] = (struct seal_args){r[i], (useconds_t)(5000 * (i + 1))};
  }
  for (int i = 0; i < N; i++) pthread_create(&t[i], NULL, seal_after, &a[i]);
  bool ready[N];
  assert_int_equal(ray_wait(r, N, 3, -1, ready), RAY_OK);
  int n = 0;
  for (int i = 0; i < N; i++) n += ready[i];
  assert_true(n >= 3);
  assert_int_equal(ray_wait(r, N, N, -1, ready), RAY_OK);
  for (int i = 0; i < N; i++) assert_true(ready[i]);
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    ray_ref_release(r[i]);
  }
}

/* Seals its object once a wait is parked on it. */
static void *seal_when_waited_for(void *arg) {
  ray_ref *ref = arg;
  await_waiters(ref, 1);
  return ray_seal(ref) == RAY_OK ? NULL : (void *)1;
}

static void test_wait_one_fast_one_slow_times_out_on_both(void **state) {
  (void)state;
  ray_ref *r[2] = {created(), created()};
  pthread_t t; /* seals r[0] during the wait, as soon as it is parked */
  pthread_create(&t, NULL, seal_when_waited_for, r[0]);
  bool ready[2]; /* 1 s: for that thread to see the wait and seal */
  assert_int_equal(ray_wait(r, 2, 2, 1000, ready), RAY_ETIMEOUT);
  assert_true(ready[0]);
  assert_false(ready[1]);
  pthread_join(t, NULL);
  ray_seal(r[1]);
  ray_ref_release(r[0]);
  ray_ref_release(r[1]);
}

static void test_wait_rejects_duplicates_and_bad_input(void **state) {
  (void)state;
  ray_ref *a = sealed(), *b = sealed();
  ray_ref *dup[3] = {a, b, a};
  bool ready[3] = {false, false, false};
  assert_int_equal(ray_wait(dup, 3, 1, 0, ready), RAY_EINVAL);
  assert_error_contains("appears more than once");
  assert_false(ready[0]); /* untouched on failure */
  ray_ref *two[2] = {a, b};
  assert_int_equal(ray_wait(two, 2, 3, 0, ready), RAY_EINVAL);
  assert_error_contains("num_ready 3 is more than the 2 refs");
  assert_int_equal(ray_wait(NULL, 2, 1, 0, ready), RAY_EINVAL);
  assert_int_equal(ray_wait(two, 2, 1, 0, NULL), RAY_EINVAL);
  ray_ref *withnull[2] = {a, NULL};
  assert_int_equal(ray_wait(withnull, 2, 1, 0, ready), RAY_EINVAL);
  assert_error_contains("refs[1]");
  ray_ref_release(b);
  assert_int_equal(ray_wait(two, 2, 1, 0, ready), RAY_EINVAL);
  assert_error_contains("released or invalid");
  ray_ref_release(a);
}

static void test_wait_on_an_empty_list(void **state) {
  (void)state;
  assert_int_equal(ray_wait(NULL, 0, 0, -1, NULL), RAY_OK);
  assert_int_equal(ray_wait(NULL, 0, 1, 0, NULL), RAY_EINVAL);
}

static void test_wait_over_a_thousand_refs(void **state) {
  (void)state;
  enum { N = 1000 };
  static ray_ref *r[N];
  static bool ready[N];
  for (int i = 0; i < N; i++) r[i] = i % 10 ? sealed() : created();
  assert_int_equal(ray_wait(r, N, N - N / 10, 0, ready), RAY_OK);
  for (int i = 0; i < N; i++) assert_int_equal(ready[i], i % 10 != 0);
  for (int i = 0; i < N; i += 10) ray_seal(r[i]);
  assert_int_equal(ray_wait(r, N, N, -1, ready), RAY_OK);
  for (int i = 0; i < N; i++) ray_ref_release(r[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_wait_all_ready_returns_at_once, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_wait_one_of_four, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_wait_timeout_still_reports_ready_flags, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_wait_is_woken_by_seals_from_other_threads, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_wait_one_fast_one_slow_times_out_on_both, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_wait_rejects_duplicates_and_bad_input, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_wait_on_an_empty_list, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_wait_over_a_thousand_refs, setup, test_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
