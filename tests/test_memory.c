/*
 * test_memory.c - the memory limit, waiting puts, pinning, and the LRU order
 * of spillable objects (through the store's internal header).
 *
 * A put that must wait is shown to wait by the store's own count of parked
 * puts (rt_store.mem_waiters), not by a pause: once the count says it
 * parked, it cannot return until the test frees memory.
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
#include <time.h>
#include <unistd.h>

#include "ray.h"
#include "store/store.h"
#include "test_util.h"

#define MIB ((size_t)1 << 20)

static int setup_64m_200ms(void **state) {
  (void)state;
  return test_init(0, 64 * MIB, 200);
}
static int setup_64m_forever(void **state) {
  (void)state;
  return test_init(0, 64 * MIB, -1);
}
static void *g_big; /* 48 MiB of source bytes */

static ray_ref *put_mib(size_t mib) {
  ray_ref *r;
  assert_int_equal(ray_put(g_big, mib * MIB, NULL, &r), RAY_OK);
  return r;
}

static void test_put_over_the_limit_waits_then_fails_with_sizes(void **state) {
  (void)state;
  ray_ref *a = put_mib(40);
  ray_pin(a);
  ray_stats before = stats();
  ray_ref *b = NULL;
  assert_int_equal(ray_put(g_big, 30 * MIB, NULL, &b), RAY_ESTOREFULL);
  assert_null(b);
  char want[160];
  snprintf(want, sizeof want,
           "no room for %zu bytes within 200 ms: in use %zu, pinned %zu, viewed 0, spilled 0, "
           "limit %zu",
           30 * MIB, 40 * MIB, 40 * MIB, 64 * MIB);
  assert_error_contains(want);
  ray_stats after = stats();
  assert_memory_equal(&before, &after, sizeof before); /* the store is unchanged */
  void *d = NULL;
  assert_int_equal(ray_create(30 * MIB, NULL, &d, &b), RAY_ESTOREFULL);
  assert_null(d);
  assert_int_equal(ray_put_owned(g_big, 30 * MIB, NULL, NULL, &b), RAY_ESTOREFULL);
  ray_unpin(a);
  ray_ref_release(a);
  b = put_mib(30); /* room again */
  ray_ref_release(b);
}

static void test_object_larger_than_the_limit_fails_at_once(void **state) {
  (void)state; /* put_timeout_ms is -1: a wait here would hang the test */
  void *d;
  ray_ref *r = NULL;
  assert_int_equal(ray_create(65 * MIB, NULL, &d, &r), RAY_ESTOREFULL);
  assert_error_contains(
      "object of 68157440 bytes is larger than the whole memory limit of 67108864 bytes");
  assert_null(r);
  assert_int_equal(stats().objects, 0);
}

static void test_memory_limit_is_never_exceeded_by_many_puts(void **state) {
  (void)state;
  ray_ref *refs[64];
  for (int n = 0; n < 64; n++) {
    /* 12 x 5 MiB fit in 64 MiB; from the 13th on, older ones spill */
    assert_int_equal(ray_put(g_big, 5 * MIB, NULL, &refs[n]), RAY_OK);
    assert_true(stats().bytes_in_memory <= 64 * MIB);
  }
  ray_stats s = stats();
  assert_true(s.spills >= 64 - 12);
  assert_int_equal(s.bytes_in_memory + s.bytes_spilled, 64 * 5 * MIB); /* each is somewhere */
  for (int i = 0; i < 64; i++) ray_ref_release(refs[i]);
  s = stats();
  assert_int_equal(s.bytes_in_memory, 0);
  assert_int_equal(s.bytes_spilled, 0);
}

/* The running runtime's store. */
static rt_store *store(void) {
  rt_store *st = rt_store_current();
  assert_non_null(st);
  return st;
}

struct waiting_put {
  size_t mib;
  _Atomic int done;
  ray_status status;
  ray_ref *ref;
};

static void *put_in_thread(void *arg) {
  struct waiting_put *w = arg;
  w->status = ray_put(g_big, w->mib * MIB, NULL, &w->ref);
  atomic_store(&w->done, 1);
  return NULL;
}

/* Waits until n puts are parked for memory. A put counts itself in
 * mem_waiters under mem_lock after it failed to reserve, and leaves only
 * with its bytes reserved (puts here wait forever), so from then on it is
 * provably waiting. A put of w that returns instead fails the test. */
static void wait_until_parked(uint32_t n, struct waiting_put *w, int nw) {
  for (int i = 0; atomic_load(&store()->mem_waiters) < n; i++) {
    for (int j = 0; j < nw; j++)
      if (atomic_load(&w[j].done))
        fail_msg("a put of %zu MiB returned %s instead of waiting for memory", w[j].mib,
                 ray_status_name(w[j].status));
    if (i >= 60000) fail_msg("no %u puts parked for memory after 60 s", n);
    usleep(1000);
  }
}

static void test_releasing_a_view_lets_a_waiting_put_proceed(void **state) {
  (void)state;
  ray_ref *a = put_mib(40);
  ray_view v;
  assert_int_equal(ray_get(a, NULL, 0, &v), RAY_OK);
  ray_ref_release(a); /* the view alone keeps the 40 MiB in memory */
  struct waiting_put w = {.mib = 40};
  pthread_t t;
  pthread_create(&t, NULL, put_in_thread, &w);
  wait_until_parked(1, &w, 1);
  assert_int_equal(atomic_load(&w.done), 0); /* waiting for memory, parked */
  ray_view_release(&v);
  pthread_join(t, NULL);
  assert_int_equal(w.status, RAY_OK);
  assert_int_equal(stats().bytes_in_memory, 40 * MIB);
  ray_ref_release(w.ref);
}

/* A put that found nothing to spill and waits (forever, here) spills what
 * becomes spillable meanwhile: a view released while its ref stays frees no
 * memory by itself, so without another spill round the put would wait for
 * good. */
static void test_a_waiting_put_spills_what_a_view_release_lets_go(void **state) {
  (void)state;
  ray_ref *a = put_mib(40);
  ray_view v;
  assert_int_equal(ray_get(a, NULL, 0, &v), RAY_OK); /* viewed: cannot spill */
  struct waiting_put w = {.mib = 40};
  pthread_t t;
  pthread_create(&t, NULL, put_in_thread, &w);
  wait_until_parked(1, &w, 1);
  ray_view_release(&v); /* a keeps its ref: it can spill now */
  struct timespec limit;
  clock_gettime(CLOCK_REALTIME, &limit);
  limit.tv_sec += 60;
  if (pthread_timedjoin_np(t, NULL, &limit) != 0)
    fail_msg("the waiting put did not spill the object whose view was released (60 s)");
  assert_int_equal(w.status, RAY_OK);
  ray_stats s = stats();
  assert_int_equal(s.spills, 1);
  assert_int_equal(s.bytes_in_memory, 40 * MIB);
  assert_int_equal(s.bytes_spilled, 40 * MIB);
  ray_ref_release(w.ref);
  ray_ref_release(a);
  assert_int_equal(stats().bytes_spilled, 0);
}

static void test_releasing_a_ref_wakes_several_waiting_puts(void **state) {
  (void)state;
  ray_ref *a = put_mib(48); /* 16 MiB free: neither fits, both together do once a goes */
  assert_int_equal(ray_pin(a), RAY_OK); /* so it cannot spill: the puts must wait */
  struct waiting_put w[2] = {{.mib = 20}, {.mib = 20}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, put_in_thread, &w[i]);
  wait_until_parked(2, w, 2); /* both asleep: one release must wake both */
  ray_ref_release(a);
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].status, RAY_OK);
    ray_ref_release(w[i].ref);
  }
  assert_int_equal(stats().bytes_in_memory, 0);
}

/* Small objects reserve from per-thread credit (store/credit.h). A thread
 * that made and freed many small objects holds credit; that must never make
 * a put on another thread fail or wait when it would fit, and usage must
 * read exactly what is stored. */
struct small_churn {
  int n;          /* objects of 1000 bytes to keep */
  ray_ref **keep; /* n refs kept, or NULL: free them all */
};

static void *churn_small_objects(void *arg) {
  struct small_churn *c = arg;
  static const char bytes[1000];
  for (int round = 0; round < 100; round++) { /* fills and empties a credit */
    ray_ref *r;
    assert_int_equal(ray_put(bytes, sizeof bytes, NULL, &r), RAY_OK);
    ray_ref_release(r);
  }
  for (int i = 0; i < c->n; i++)
    assert_int_equal(ray_put(bytes, sizeof bytes, NULL, &c->keep[i]), RAY_OK);
  return NULL;
}

static void test_credit_held_by_another_thread_does_not_block_a_put(void **state) {
  (void)state;
  struct small_churn c = {0, NULL};
  pthread_t t;
  pthread_create(&t, NULL, churn_small_objects, &c);
  pthread_join(t, NULL); /* it exited holding credit */
  assert_int_equal(stats().bytes_in_memory, 0);
  /* The whole limit in one object: fits only if that credit comes back. */
  void *d;
  ray_ref *whole;
  assert_int_equal(ray_create(64 * MIB, NULL, &d, &whole), RAY_OK);
  assert_int_equal(stats().bytes_in_memory, 64 * MIB);
  ray_ref *r = NULL;
  assert_int_equal(ray_put("x", 1, NULL, &r), RAY_ESTOREFULL); /* and not a byte more */
  assert_null(r);
  ray_ref_release(whole);
  assert_int_equal(stats().bytes_in_memory, 0);
}

static void test_small_objects_freed_on_another_thread_are_counted_exactly(void **state) {
  (void)state;
  ray_ref *keep[300];
  struct small_churn c = {300, keep};
  pthread_t t;
  pthread_create(&t, NULL, churn_small_objects, &c);
  pthread_join(t, NULL);
  assert_int_equal(stats().bytes_in_memory, 300 * 1000);
  for (int i = 0; i < 300; i++) { /* freed here, made there */
    ray_ref_release(keep[i]);
    assert_int_equal(stats().bytes_in_memory, (size_t)(299 - i) * 1000);
  }
}

static void test_freeing_small_objects_wakes_a_waiting_put(void **state) {
  (void)state; /* 64 MiB limit, puts wait forever */
  ray_ref *big = put_mib(40);
  ray_ref *keep[200];
  struct small_churn c = {200, keep};
  pthread_t t;
  pthread_create(&t, NULL, churn_small_objects, &c);
  pthread_join(t, NULL);
  /* Nothing may spill: the big one is pinned and the small ones viewed. */
  assert_int_equal(ray_pin(big), RAY_OK);
  ray_view views[200];
  for (int i = 0; i < 200; i++) assert_int_equal(ray_get(keep[i], NULL, 0, &views[i]), RAY_OK);
  /* 24 MiB - 200 KB is free: a 24 MiB put must wait for the small ones. */
  struct waiting_put w = {.mib = 24};
  pthread_t p;
  pthread_create(&p, NULL, put_in_thread, &w);
  wait_until_parked(1, &w, 1);
  assert_int_equal(atomic_load(&w.done), 0);
  for (int i = 0; i < 200; i++) { /* into this thread's credit... */
    ray_view_release(&views[i]);
    ray_ref_release(keep[i]);
  }
  pthread_join(p, NULL); /* ...which the waiter takes back */
  assert_int_equal(w.status, RAY_OK);
  assert_int_equal(stats().bytes_in_memory, 64 * MIB);
  ray_ref_release(w.ref);
  ray_ref_release(big);
  assert_int_equal(stats().bytes_in_memory, 0);
}

static void test_pins_nest_and_are_counted(void **state) {
  (void)state;
  ray_ref *a = put_mib(3), *s;
  assert_int_equal(ray_put("tiny", 4, NULL, &s), RAY_OK);
  assert_int_equal(ray_pin(a), RAY_OK);
  assert_int_equal(ray_pin(a), RAY_OK);
  assert_int_equal(ray_pin(s), RAY_OK);
  assert_int_equal(stats().bytes_pinned, 3 * MIB + 4);
  assert_int_equal(ray_unpin(a), RAY_OK);
  assert_int_equal(stats().bytes_pinned, 3 * MIB + 4);
  assert_int_equal(ray_unpin(a), RAY_OK);
  assert_int_equal(stats().bytes_pinned, 4);
  assert_int_equal(ray_unpin(a), RAY_EINVAL);
  assert_error_contains("is not pinned");
  ray_ref_release(s); /* freed while pinned: its pin goes with it */
  assert_int_equal(stats().bytes_pinned, 0);
  ray_ref_release(a);
}

static void test_pin_of_an_unsealed_object_is_einval(void **state) {
  (void)state;
  void *d;
  ray_ref *r;
  assert_int_equal(ray_create(100, NULL, &d, &r), RAY_OK);
  assert_int_equal(ray_pin(r), RAY_EINVAL);
  assert_error_contains("is not sealed");
  ray_seal(r);
  assert_int_equal(ray_pin(r), RAY_OK);
  assert_int_equal(ray_unpin(r), RAY_OK);
  ray_ref_release(r);
}

/* Count of entries on every stripe's LRU list: the spill candidates. */
static uint32_t lru_count(void) {
  rt_store *st = store();
  uint32_t n = 0;
  for (int i = 0; i < RT_STRIPES; i++) {
    pthread_mutex_lock(&st->stripes[i].lock);
    n += st->stripes[i].lru.count;
    pthread_mutex_unlock(&st->stripes[i].lock);
  }
  return n;
}

static void test_lru_holds_exactly_the_unpinned_unviewed_large_objects(void **state) {
  (void)state;
  ray_ref *big[3], *small, *list, *created;
  for (int i = 0; i < 3; i++) big[i] = put_mib(1);
  assert_int_equal(ray_put("s", 1, NULL, &small), RAY_OK);
  assert_int_equal(ray_put_refs(big, 3, &list), RAY_OK);
  void *d;
  assert_int_equal(ray_create(MIB, NULL, &d, &created), RAY_OK);
  assert_int_equal(lru_count(), 3); /* inline, refs and unsealed objects are not spillable */
  ray_seal(created);
  assert_int_equal(lru_count(), 4);
  ray_view v1, v2;
  assert_int_equal(ray_get(big[0], NULL, 0, &v1), RAY_OK);
  assert_int_equal(ray_get(big[0], NULL, 0, &v2), RAY_OK);
  assert_int_equal(lru_count(), 3); /* viewed */
  ray_view_release(&v1);
  assert_int_equal(lru_count(), 3); /* still one view */
  ray_view_release(&v2);
  assert_int_equal(lru_count(), 4);
  ray_pin(big[1]);
  assert_int_equal(lru_count(), 3);
  ray_unpin(big[1]);
  assert_int_equal(lru_count(), 4);
  ray_ref_release(created);
  for (int i = 0; i < 3; i++) ray_ref_release(big[i]);
  assert_int_equal(lru_count(), 3); /* the list holds them */
  ray_ref_release(list);
  assert_int_equal(lru_count(), 0);
  ray_ref_release(small);
}

static void test_lru_order_is_least_recent_at_the_tail(void **state) {
  (void)state;
  /* Put objects until two land on the same stripe, then check that the one
   * used longest ago is at that stripe's tail. */
  rt_store *st = store();
  ray_ref *refs[RT_STRIPES + 1];
  int n = 0, first = -1, second = -1, stripe = -1;
  for (; n < RT_STRIPES + 1 && second < 0; n++) {
    assert_int_equal(ray_put(g_big, 300 * 1024, NULL, &refs[n]), RAY_OK);
    int sn = rt_store_stripe_of(refs[n]);
    assert_true(sn >= 0);
    for (int j = 0; j < n; j++)
      if (rt_store_stripe_of(refs[j]) == sn) {
        first = j;
        second = n;
        stripe = sn;
      }
  }
  assert_true(second >= 0);
  uint32_t s1, s2; /* their slots, as the LRU list names them */
  assert_non_null(rt_handle_resolve(&st->slots, refs[first], &s1));
  assert_non_null(rt_handle_resolve(&st->slots, refs[second], &s2));
  rt_stripe *sp = &st->stripes[stripe];
  assert_int_equal(rt_lru_tail(&sp->lru), s1);
  ray_view v; /* use the older one: it moves to the head */
  assert_int_equal(ray_get(refs[first], NULL, 0, &v), RAY_OK);
  ray_view_release(&v);
  assert_int_equal(rt_lru_tail(&sp->lru), s2);
  for (int i = 0; i < n; i++) ray_ref_release(refs[i]);
}

static void test_freed_large_buffers_are_reused(void **state) {
  (void)state;
  ray_ref *a = put_mib(8);
  ray_view v;
  assert_int_equal(ray_get(a, NULL, 0, &v), RAY_OK);
  const void *first = v.data;
  ray_view_release(&v);
  ray_ref_release(a);
  ray_ref *b = put_mib(8);
  assert_int_equal(ray_get(b, NULL, 0, &v), RAY_OK);
  assert_ptr_equal(v.data, first); /* warm pages, no new faults */
  assert_memory_equal(v.data, g_big, 8 * MIB);
  ray_view_release(&v);
  ray_ref_release(b);
}

static int group_setup(void **state) {
  (void)state;
  g_big = malloc(48 * MIB);
  for (size_t i = 0; i < 48 * MIB; i++) ((unsigned char *)g_big)[i] = (unsigned char)(i * 7);
  return 0;
}
static int group_teardown(void **state) {
  (void)state;
  free(g_big);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_over_the_limit_waits_then_fails_with_sizes,
                                      setup_64m_200ms, test_teardown),
      cmocka_unit_test_setup_teardown(test_object_larger_than_the_limit_fails_at_once,
                                      setup_64m_forever, test_teardown),
      cmocka_unit_test_setup_teardown(test_memory_limit_is_never_exceeded_by_many_puts,
                                      setup_64m_200ms, test_teardown),
      cmocka_unit_test_setup_teardown(test_releasing_a_view_lets_a_waiting_put_proceed,
                                      setup_64m_forever, test_teardown),
      cmocka_unit_test_setup_teardown(test_a_waiting_put_spills_what_a_view_release_lets_go,
                                      setup_64m_forever, test_teardown),
      cmocka_unit_test_setup_teardown(test_releasing_a_ref_wakes_several_waiting_puts,
                                      setup_64m_forever, test_teardown),
      cmocka_unit_test_setup_teardown(test_credit_held_by_another_thread_does_not_block_a_put,
                                      setup_64m_200ms, test_teardown),
      cmocka_unit_test_setup_teardown(
          test_small_objects_freed_on_another_thread_are_counted_exactly, setup_64m_200ms,
          test_teardown),
      cmocka_unit_test_setup_teardown(test_freeing_small_objects_wakes_a_waiting_put,
                                      setup_64m_forever, test_teardown),
      cmocka_unit_test_setup_teardown(test_pins_nest_and_are_counted, setup_64m_200ms,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_pin_of_an_unsealed_object_is_einval, setup_64m_200ms,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_lru_holds_exactly_the_unpinned_unviewed_large_objects,
                                      setup_64m_200ms, test_teardown),
      cmocka_unit_test_setup_teardown(test_lru_order_is_least_recent_at_the_tail, setup_64m_200ms,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_freed_large_buffers_are_reused, setup_64m_200ms,
                                      test_teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
