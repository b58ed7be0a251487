/*
 * error.h - the thread-local "last error" behind ray_last_error().
 *
 * Every failing public call formats one line naming what it was working on
 * and returns the status; rt_fail does both so a failure path is one line.
 */
#ifndef RT_ERROR_H
#define RT_ERROR_H

#include "ray.h"

#if defined(__GNUC__)
#define RT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RT_PRINTF(a, b)
#endif

/* Records "fmt..." as this thread's last error. */
void rt_set_error(const char *fmt, ...) RT_PRINTF(1, 2);

/* Empties this thread's last error. */
void rt_clear_error(void);

/* Records the message and evaluates to s: `return rt_fail(RAY_EINVAL, ...)`.
 * A macro rather than a function so that analysers see the status flow. */
#define rt_fail(s, ...) (rt_set_error(__VA_ARGS__), (s))

/* The one failure of a call made while no runtime runs (before ray_init,
 * after ray_shutdown): records "fn: the runtime is not running (call
 * ray_init first)" and evaluates to RAY_ESHUTDOWN. A macro over rt_fail, so
 * that analysers see the status (a caller's out-parameters stay unset only
 * on paths that return an error). */
#define rt_not_running(fn)                                                                         \
  rt_fail(RAY_ESHUTDOWN, "%s: the runtime is not running (call ray_init first)", (fn))

/* A warning on stderr, prefixed "rayc: ". */
void rt_warn(const char *fmt, ...) RT_PRINTF(1, 2);

#define RT_LIKELY(x) __builtin_expect(!!(x), 1)
#define RT_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif
