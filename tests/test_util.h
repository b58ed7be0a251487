/*
 * test_util.h - helpers shared by the cmocka test binaries. Include after
 * <cmocka.h>.
 */
#ifndef RAY_TEST_UTIL_H
#define RAY_TEST_UTIL_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ray.h"

/* Sanitizer builds run 5-20x slower (TSan most): tests scale loops down. */
#if defined(__SANITIZE_THREAD__)
#define RT_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RT_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RT_TEST_ASAN 1
#endif
#endif
#if defined(RT_TEST_TSAN) || defined(RT_TEST_ASAN)
#define RT_TEST_SANITIZED 1
#endif

/* Starts the runtime with these settings: workers (0: one per CPU), a
 * memory limit (0: the default) and put_timeout_ms. 0 on success, as cmocka
 * setup functions return. */
static inline int test_init(int workers, size_t limit, int64_t put_timeout_ms) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = workers;
  cfg.object_store_memory = limit;
  cfg.put_timeout_ms = put_timeout_ms;
  return ray_init(&cfg) == RAY_OK ? 0 : -1;
}

/* A cmocka teardown: shuts the runtime down. */
static inline int test_teardown(void **state) {
  (void)state;
  return ray_shutdown() == RAY_OK ? 0 : -1;
}

/* The runtime's counters; fails the test if they cannot be read. */
static inline ray_stats stats(void) {
  ray_stats s;
  assert_int_equal(ray_stats_get(&s), RAY_OK);
  return s;
}

/* A finished task drops its own reference on each return just after
 * sealing it, so `objects` settles a moment after the result is seen: wait
 * for it (bounded) rather than assert at an instant. Returns the count. */
static inline uint64_t settled_objects(uint64_t want) {
  ray_stats s = stats();
  for (int i = 0; i < 5000 && s.objects != want; i++) {
    usleep(1000);
    s = stats();
  }
  return s.objects;
}

/* Waits for an event that the code under test is certain to publish (a
 * counter, a flag a task sets at a gate): polls cond every millisecond and
 * fails the test, naming what, if it still does not hold after 60 s, a bound
 * that only a hang reaches. Never a way to let time pass: a test that needs
 * "X has not happened" gets it from a state the protocol guarantees. */
#define WAIT_UNTIL(cond, what)                                                                     \
  do {                                                                                             \
    for (int w_ = 0; !(cond); w_++) {                                                              \
      if (w_ >= 60000) fail_msg("no %s after 60 s", (what));                                       \
      usleep(1000);                                                                                \
    }                                                                                              \
  } while (0)

#ifdef RT_STORE_H
/* For tests that include "store/store.h" first: looks into the store of
 * the running runtime, for events no public call shows. */

/* A thread is parked waiting for ref's object (ray_get, ray_wait): a waiter
 * flags the entry (RT_ST_WAITERS, store/entry.h) under its stripe lock just
 * before it sleeps, and the flag stays until the object is sealed or
 * failed. */
static inline bool has_waiter(ray_ref *ref) {
  rt_store *st = rt_store_current();
  uint32_t slot;
  rt_entry *e = st ? rt_handle_resolve(&st->slots, ref, &slot) : NULL;
  return e && (atomic_load(&e->state) & RT_ST_WAITERS);
}

/* Threads parked waiting for ref's object: their nodes on its stripe's
 * list (store.h, rt_waiter), counted under the stripe lock. */
static inline int waiters_on(ray_ref *ref) {
  rt_store *st = rt_store_current();
  uint32_t slot;
  int stripe = rt_store_stripe_of(ref), n = 0;
  if (!st || stripe < 0 || !rt_handle_resolve(&st->slots, ref, &slot)) return 0;
  rt_stripe *sp = &st->stripes[stripe];
  pthread_mutex_lock(&sp->lock);
  for (rt_waiter *w = sp->waiters; w; w = w->next) n += w->slot == slot;
  pthread_mutex_unlock(&sp->lock);
  return n;
}

/* For a helper thread, which must not fail the test: waits until n threads
 * are parked on ref's object, or 60 s. */
static inline void await_waiters(ray_ref *ref, int n) {
  for (int i = 0; i < 60000 && waiters_on(ref) < n; i++) usleep(1000);
}
#endif

/* A task: its i64 argument 0 plus one. */
static inline ray_status add_one(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  int64_t x = *(const int64_t *)v.data + 1;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

/* A task: the sum of every i64 element of every argument (values or refs). */
static inline ray_status sum_args(ray_ctx *ctx) {
  int64_t sum = 0;
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) {
    ray_view v;
    ray_status s = ray_ctx_arg(ctx, i, &ray_type_i64, &v);
    if (s != RAY_OK) return s;
    for (size_t k = 0; k < v.size / 8; k++) sum += ((const int64_t *)v.data)[k];
  }
  return ray_ctx_return(ctx, 0, &sum, sizeof sum, &ray_type_i64);
}

/* Submits fn(args) named name with one return; fails the test on an error. */
static inline ray_ref *submit1(ray_task_fn fn, const ray_arg *args, size_t n, const char *name) {
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = name;
  ray_ref *r = NULL;
  ray_status s = ray_submit(fn, args, n, &o, &r);
  if (s != RAY_OK) fail_msg("ray_submit: %s: %s", ray_status_name(s), ray_last_error());
  return r;
}

/* The i64 value of an object, waiting for it; fails the test on an error. */
static inline int64_t get_i64(ray_ref *r) {
  ray_view v;
  ray_status s = ray_get(r, &ray_type_i64, -1, &v);
  if (s != RAY_OK) fail_msg("ray_get: %s: %s", ray_status_name(s), ray_last_error());
  int64_t x = *(const int64_t *)v.data;
  ray_view_release(&v);
  return x;
}

/* The thread's last error message contains text. */
#define assert_error_contains(text)                                                                \
  do {                                                                                             \
    if (!strstr(ray_last_error(), (text)))                                                         \
      fail_msg("ray_last_error() = \"%s\" lacks \"%s\"", ray_last_error(), (text));                \
  } while (0)

/* A rayc call returns RAY_OK, or the test fails with its status and message. */
#define CHECK_OK(call)                                                                             \
  do {                                                                                             \
    ray_status s_ = (call);                                                                        \
    if (s_ != RAY_OK) fail_msg("%s: %s: %s", #call, ray_status_name(s_), ray_last_error());        \
  } while (0)

/* stderr capture: fd 2 goes to an anonymous temp file around a call. */
typedef struct capture {
  FILE *file;
  int saved_fd;
} capture;

static inline void capture_begin(capture *c) {
  fflush(stderr);
  c->file = tmpfile();
  assert_non_null(c->file);
  c->saved_fd = dup(2);
  assert_true(c->saved_fd >= 0);
  assert_true(dup2(fileno(c->file), 2) == 2);
}

/* Restores fd 2 and returns what was written (NUL-terminated, truncated). */
static inline void capture_end(capture *c, char *buf, size_t cap) {
  fflush(stderr);
  dup2(c->saved_fd, 2);
  close(c->saved_fd);
  rewind(c->file);
  size_t n = fread(buf, 1, cap - 1, c->file);
  buf[n] = '\0';
  fclose(c->file);
}

/* Seeded pseudo-random bytes (splitmix64): object contents a test can
 * recompute instead of storing. pattern_fill writes n bytes of stream seed
 * to buf; pattern_mismatch gives the offset of the first byte of buf that
 * differs from that stream, or SIZE_MAX when all n are equal. */
static inline uint64_t pattern_word(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9e3779b97f4a7c15u + (i + 1) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static inline void pattern_fill(void *buf, size_t n, uint64_t seed) {
  unsigned char *p = buf;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = pattern_word(seed, i / 8);
    memcpy(p + i, &w, 8);
  }
  if (i < n) {
    uint64_t w = pattern_word(seed, i / 8);
    memcpy(p + i, &w, n - i);
  }
}

static inline size_t pattern_mismatch(const void *buf, size_t n, uint64_t seed) {
  const unsigned char *p = buf;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t w = pattern_word(seed, i / 8);
    size_t k = n - i < 8 ? n - i : 8;
    if (memcmp(p + i, &w, k) != 0)
      for (size_t j = 0; j < k; j++)
        if (p[i + j] != ((const unsigned char *)&w)[j]) return i + j;
  }
  return SIZE_MAX;
}

#endif
