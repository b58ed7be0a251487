/*
 * test_store_stress.c - the store under many threads: exact stats after
 * 8 x 100k put/get/release, seals racing gets and waits, shared objects
 * viewed and pinned concurrently, and puts contending for a small limit.
 * Built and run in the ThreadSanitizer suite too.
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
#include "test_util.h"

#define MIB ((size_t)1 << 20)

static int setup(void **state) {
  (void)state;
  return test_init(0, 1024 * MIB, 10000);
}
static int setup_small(void **state) {
  (void)state;
  return test_init(0, 8 * MIB, -1);
}
/* A failure inside a thread is recorded here and asserted by the test. */
static _Atomic int g_errors;
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) atomic_fetch_add(&g_errors, 1);                                                   \
  } while (0)

/* ------------------------------------------------------------------------ */

enum { THREADS = 8, ROUNDS = 100000 };

static void *put_get_release(void *arg) {
  uint64_t x = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
  static unsigned char big[300 * 1024];
  for (int i = 0; i < ROUNDS; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    /* mostly small, some medium (heap), a few large (pool) objects */
    size_t size = (x % 1000) == 0 ? sizeof big : (x % 10) == 0 ? 1000 : 8;
    uint64_t tag = x;
    ray_ref *r;
    const void *src = size == 8 ? (const void *)&tag : (const void *)big;
    if (ray_put(src, size, NULL, &r) != RAY_OK) {
      CHECK(0);
      continue;
    }
    ray_view v;
    CHECK(ray_get(r, NULL, 0, &v) == RAY_OK);
    CHECK(v.size == size);
    if (size == 8) CHECK(memcmp(v.data, &tag, 8) == 0);
    if (x & 1) { /* both release orders */
      ray_ref_release(r);
      ray_view_release(&v);
    } else {
      ray_view_release(&v);
      ray_ref_release(r);
    }
  }
  return NULL;
}

static void test_eight_threads_put_get_release_and_stats_add_up(void **state) {
  (void)state;
  atomic_store(&g_errors, 0);
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, put_get_release, (void *)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&g_errors), 0);
  ray_stats s = stats();
  assert_int_equal(s.puts, (uint64_t)THREADS * ROUNDS);
  assert_int_equal(s.gets, (uint64_t)THREADS * ROUNDS);
  assert_int_equal(s.objects, 0);
  assert_int_equal(s.bytes_in_memory, 0);
  assert_int_equal(s.bytes_pinned, 0);
}

/* ------------------------------------------------------------------------ */

enum { SHARED = 16, VIEWERS = 4, VIEW_ROUNDS = 20000 };
static ray_ref *g_shared[SHARED];

static void *view_and_pin(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  for (int i = 0; i < VIEW_ROUNDS; i++) {
    ray_ref *r = g_shared[(i + id) % SHARED];
    ray_view v;
    CHECK(ray_get(r, NULL, 0, &v) == RAY_OK);
    CHECK(((const unsigned char *)v.data)[v.size - 1] == (unsigned char)((i + id) % SHARED));
    if (i % 3 == 0) {
      CHECK(ray_pin(r) == RAY_OK);
      CHECK(ray_unpin(r) == RAY_OK);
    }
    ray_ref *extra = ray_ref_retain(r);
    ray_view_release(&v);
    ray_ref_release(extra);
  }
  return NULL;
}

static void test_shared_objects_viewed_and_pinned_from_many_threads(void **state) {
  (void)state;
  atomic_store(&g_errors, 0);
  unsigned char *buf = malloc(MIB);
  for (int i = 0; i < SHARED; i++) {
    memset(buf, i, MIB);
    assert_int_equal(ray_put(buf, i % 2 ? MIB : 40000, NULL, &g_shared[i]), RAY_OK);
  }
  free(buf);
  pthread_t t[VIEWERS];
  for (uintptr_t i = 0; i < VIEWERS; i++) pthread_create(&t[i], NULL, view_and_pin, (void *)i);
  for (int i = 0; i < VIEWERS; i++) pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&g_errors), 0);
  ray_stats s = stats();
  assert_int_equal(s.objects, SHARED);
  assert_int_equal(s.bytes_pinned, 0);
  for (int i = 0; i < SHARED; i++) ray_ref_release(g_shared[i]);
  s = stats();
  assert_int_equal(s.objects, 0);
  assert_int_equal(s.bytes_in_memory, 0);
}

/* ------------------------------------------------------------------------ */

enum { HANDOFFS = 2000 };
static _Atomic(ray_ref *) g_slots[HANDOFFS];

static void *producer(void *arg) {
  (void)arg;
  for (int i = 0; i < HANDOFFS; i++) {
    void *d;
    ray_ref *r;
    if (ray_create(64 + (size_t)(i % 3) * 4096, &ray_type_i64, &d, &r) != RAY_OK) {
      CHECK(0);
      return NULL;
    }
    ray_ref *getter_ref = ray_ref_retain(r);
    atomic_store(&g_slots[i], getter_ref); /* hand over before sealing */
    ((int64_t *)d)[0] = i;
    ((int64_t *)d)[7] = -i;
    CHECK(ray_seal(r) == RAY_OK);
    ray_ref_release(r);
  }
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  for (int i = 0; i < HANDOFFS; i++) {
    ray_ref *r;
    while (!(r = atomic_load(&g_slots[i]))) sched_yield();
    ray_view v;
    if (i % 2) {
      bool ready;
      CHECK(ray_wait(&r, 1, 1, -1, &ready) == RAY_OK && ready);
    }
    CHECK(ray_get(r, &ray_type_i64, -1, &v) == RAY_OK);
    CHECK(((const int64_t *)v.data)[0] == i && ((const int64_t *)v.data)[7] == -i);
    ray_view_release(&v);
    ray_ref_release(r);
  }
  return NULL;
}

static void test_gets_and_waits_race_seals_from_another_thread(void **state) {
  (void)state;
  atomic_store(&g_errors, 0);
  for (int i = 0; i < HANDOFFS; i++) atomic_store(&g_slots[i], NULL);
  pthread_t p, c;
  pthread_create(&c, NULL, consumer, NULL);
  pthread_create(&p, NULL, producer, NULL);
  pthread_join(p, NULL);
  pthread_join(c, NULL);
  assert_int_equal(atomic_load(&g_errors), 0);
  assert_int_equal(stats().objects, 0);
}

/* ------------------------------------------------------------------------ */

enum { CONTENDERS = 4, CONTEND_ROUNDS = 300 };
static _Atomic int g_stop;
static _Atomic size_t g_max_seen;

static void *contend(void *arg) {
  (void)arg;
  static const unsigned char src[MIB];
  for (int i = 0; i < CONTEND_ROUNDS; i++) {
    ray_ref *r[3];
    for (int k = 0; k < 3; k++) CHECK(ray_put(src, MIB / 2, NULL, &r[k]) == RAY_OK);
    for (int k = 0; k < 3; k++) ray_ref_release(r[k]);
  }
  return NULL;
}

static void *monitor(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop)) {
    ray_stats s;
    if (ray_stats_get(&s) == RAY_OK && s.bytes_in_memory > atomic_load(&g_max_seen))
      atomic_store(&g_max_seen, s.bytes_in_memory);
  }
  return NULL;
}

static void test_puts_contending_for_a_small_limit_all_succeed_within_it(void **state) {
  (void)state; /* 4 threads x 1.5 MiB live against 8 MiB, put_timeout -1 */
  atomic_store(&g_errors, 0);
  atomic_store(&g_stop, 0);
  atomic_store(&g_max_seen, 0);
  pthread_t t[CONTENDERS + 2], m;
  pthread_create(&m, NULL, monitor, NULL);
  for (int i = 0; i < CONTENDERS + 2; i++) pthread_create(&t[i], NULL, contend, NULL);
  for (int i = 0; i < CONTENDERS + 2; i++) pthread_join(t[i], NULL);
  atomic_store(&g_stop, 1);
  pthread_join(m, NULL);
  assert_int_equal(atomic_load(&g_errors), 0);
  assert_true(atomic_load(&g_max_seen) <= 8 * MIB);
  ray_stats s = stats();
  assert_int_equal(s.puts, (uint64_t)(CONTENDERS + 2) * CONTEND_ROUNDS * 3);
  assert_int_equal(s.bytes_in_memory, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_eight_threads_put_get_release_and_stats_add_up, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_shared_objects_viewed_and_pinned_from_many_threads,
                                      setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_gets_and_waits_race_seals_from_another_thread, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_puts_contending_for_a_small_limit_all_succeed_within_it,
                                      setup_small, test_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
