/*
 * test_util.h - helpers shared by the cmocka test binaries. Include after
 * <cmocka.h>.
 */
#ifndef RAY_TEST_UTIL_H
#define RAY_TEST_UTIL_H

#include <string.h>

#include "ray.h"

/* The runtime's counters; fails the test if they cannot be read. */
static inline ray_stats stats(void) {
  ray_stats s;
  assert_int_equal(ray_stats_get(&s), RAY_OK);
  return s;
}

/* The thread's last error message contains text. */
#define assert_error_contains(text) \
  do { \
    if (!strstr(ray_last_error(), (text))) \
      fail_msg("ray_last_error() = \"%s\" lacks \"%s\"", ray_last_error(), (text)); \
  } while (0)

/* A rayc call returns RAY_OK, or the test fails with its status and message. */
#define CHECK_OK(call) \
  do { \
    ray_status s_ = (call); \
    if (s_ != RAY_OK) fail_msg("%s: %s: %s", #call, ray_status_name(s_), ray_last_error()); \
  } while (0)

#endif
