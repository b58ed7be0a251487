/*
 * test_version.c - the version macros and ray_version(): the string and the
 * number are built from RAY_VERSION_MAJOR/MINOR/PATCH, and the library built
 * with this header reports the same version at any time, before ray_init
 * included, on any thread.
 */
/* cmocka needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"
#include <ray.h>

/* The number must work in #if, where a program tests for a feature. */
#if RAY_VERSION_NUMBER != RAY_VERSION_MAJOR * 10000 + RAY_VERSION_MINOR * 100 + RAY_VERSION_PATCH
#error "RAY_VERSION_NUMBER does not combine MAJOR, MINOR and PATCH"
#endif
/* MINOR and PATCH below 100 keep the number ordered like the version. */
_Static_assert(RAY_VERSION_MINOR >= 0 && RAY_VERSION_MINOR < 100, "MINOR out of 0..99");
_Static_assert(RAY_VERSION_PATCH >= 0 && RAY_VERSION_PATCH < 100, "PATCH out of 0..99");

static void test_version_string_is_major_dot_minor_dot_patch(void **state) {
  (void)state;
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", RAY_VERSION_MAJOR, RAY_VERSION_MINOR, RAY_VERSION_PATCH);
  assert_string_equal(RAY_VERSION_STRING, want);
  /* A string literal: it concatenates with others at compile time. */
  static const char banner[] = "rayc " RAY_VERSION_STRING;
  assert_int_equal(sizeof banner, strlen("rayc ") + strlen(want) + 1);
}

static void test_version_number_orders_like_the_version(void **state) {
  (void)state;
  long n = RAY_VERSION_NUMBER;
  assert_int_equal(n / 10000, RAY_VERSION_MAJOR);
  assert_int_equal(n / 100 % 100, RAY_VERSION_MINOR);
  assert_int_equal(n % 100, RAY_VERSION_PATCH);
}

static void *version_on_thread(void *arg) {
  (void)arg;
  return (void *)ray_version();
}

static void test_ray_version_is_the_headers_before_during_and_after_a_runtime(void **state) {
  (void)state;
  assert_false(ray_is_initialized());
  const char *before = ray_version();
  assert_non_null(before);
  assert_string_equal(before, RAY_VERSION_STRING);

  assert_int_equal(test_init(1, (size_t)8 << 20, 1000), 0);
  assert_ptr_equal(ray_version(), before); /* static storage: the same string */
  pthread_t t;
  void *other = NULL;
  assert_int_equal(pthread_create(&t, NULL, version_on_thread, NULL), 0);
  assert_int_equal(pthread_join(t, &other), 0);
  assert_ptr_equal(other, before);
  assert_int_equal(ray_shutdown(), RAY_OK);

  assert_string_equal(ray_version(), RAY_VERSION_STRING);
  /* It is not a failing call: the last error stays as it was. */
  assert_string_equal(ray_last_error(), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version_string_is_major_dot_minor_dot_patch),
      cmocka_unit_test(test_version_number_orders_like_the_version),
      cmocka_unit_test(test_ray_version_is_the_headers_before_during_and_after_a_runtime),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
