/*
 * test_objects.c - the object API through the public header: put, put_owned,
 * create/seal, put_refs, get, views, types, refs, IDs and bad input.
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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ray.h"
#include "store/store.h"
#include "test_util.h"

#define MIB ((size_t)1 << 20)

static int setup(void **state) {
  (void)state;
  return test_init(0, 256 * MIB, 100);
}

/* ------------------------------------------------------------------------ */

static void test_put_copies_and_get_returns_the_bytes(void **state) {
  (void)state;
  static const size_t sizes[] = {1, 8, 63, 64, 65, 1000, 4096, 300 * 1024, 3 * MIB + 7};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    unsigned char *src = malloc(n);
    for (size_t i = 0; i < n; i++) src[i] = (unsigned char)(i * 31 + k);
    ray_ref *ref;
    assert_int_equal(ray_put(src, n, &ray_type_bytes, &ref), RAY_OK);
    memset(src, 0xEE, n); /* the put copied: changing the source changes nothing */
    ray_view v;
    assert_int_equal(ray_get(ref, &ray_type_bytes, 0, &v), RAY_OK);
    assert_int_equal(v.size, n);
    assert_ptr_equal(v.type, &ray_type_bytes);
    const unsigned char *d = v.data;
    for (size_t i = 0; i < n; i++)
      if (d[i] != (unsigned char)(i * 31 + k)) fail_msg("size %zu: byte %zu differs", n, i);
    ray_view_release(&v);
    ray_ref_release(ref);
    free(src);
  }
  ray_stats s = stats();
  assert_int_equal(s.objects, 0);
  assert_int_equal(s.bytes_in_memory, 0);
}

static void test_put_with_null_type_is_bytes(void **state) {
  (void)state;
  ray_ref *ref;
  assert_int_equal(ray_put("abc", 3, NULL, &ref), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(ref, &ray_type_bytes, 0, &v), RAY_OK);
  assert_ptr_equal(v.type, &ray_type_bytes);
  ray_view_release(&v);
  ray_ref_release(ref);
}

static int g_freed;
static void *g_freed_ptr;
static void count_free(void *p) {
  g_freed++;
  g_freed_ptr = p;
  free(p);
}

static void test_put_owned_is_zero_copy_and_freed_once_at_the_end(void **state) {
  (void)state;
  size_t n = 8 * MIB;
  double *buf = malloc(n);
  for (size_t i = 0; i < n / sizeof(double); i++) buf[i] = (double)i;
  g_freed = 0;
  ray_ref *ref;
  assert_int_equal(ray_put_owned(buf, n, &ray_type_f64, count_free, &ref), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(ref, &ray_type_f64, 0, &v), RAY_OK);
  assert_ptr_equal(v.data, buf); /* zero copy */
  ray_ref *again = ray_ref_retain(ref);
  assert_ptr_equal(again, ref);
  ray_ref_release(ref);
  ray_ref_release(again);
  assert_int_equal(g_freed, 0); /* the view still holds it */
  assert_true(((const double *)v.data)[12345] == 12345.0);
  ray_view_release(&v);
  assert_int_equal(g_freed, 1);
  assert_ptr_equal(g_freed_ptr, buf);
  assert_int_equal(stats().bytes_in_memory, 0);
}

static void test_put_owned_without_free_fn_leaves_ownership(void **state) {
  (void)state;
  char buf[256];
  memset(buf, 7, sizeof buf);
  ray_ref *ref;
  assert_int_equal(ray_put_owned(buf, sizeof buf, NULL, NULL, &ref), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(ref, NULL, 0, &v), RAY_OK);
  assert_ptr_equal(v.data, buf);
  ray_view_release(&v);
  ray_ref_release(ref);
  assert_int_equal(buf[100], 7); /* untouched, not freed */
}

static void test_put_owned_failure_leaves_buffer_with_caller(void **state) {
  (void)state;
  g_freed = 0;
  void *big = malloc(16);
  ray_ref *ref = NULL;
  /* 12 bytes are not whole i64 elements: rejected, caller still owns it */
  assert_int_equal(ray_put_owned(big, 12, &ray_type_i64, count_free, &ref), RAY_EINVAL);
  assert_null(ref);
  assert_int_equal(g_freed, 0);
  free(big);
}

static void test_create_then_seal_writes_in_place(void **state) {
  (void)state;
  for (size_t n = 8; n <= 4 * MIB; n *= 16) {
    void *data;
    ray_ref *ref;
    assert_int_equal(ray_create(n, &ray_type_i64, &data, &ref), RAY_OK);
    int64_t *p = data;
    for (size_t i = 0; i < n / 8; i++) p[i] = (int64_t)i * 3;
    assert_int_equal(ray_seal(ref), RAY_OK);
    ray_view v;
    assert_int_equal(ray_get(ref, &ray_type_i64, 0, &v), RAY_OK);
    assert_ptr_equal(v.data, data);
    assert_int_equal(((const int64_t *)v.data)[n / 8 - 1], (int64_t)(n / 8 - 1) * 3);
    ray_view_release(&v);
    ray_ref_release(ref);
  }
}

static void test_seal_twice_is_einval(void **state) {
  (void)state;
  void *data;
  ray_ref *ref;
  assert_int_equal(ray_create(16, NULL, &data, &ref), RAY_OK);
  assert_int_equal(ray_seal(ref), RAY_OK);
  assert_int_equal(ray_seal(ref), RAY_EINVAL);
  assert_error_contains("already sealed");
  char id[33];
  ray_ref_id(ref, id);
  assert_error_contains(id);
  ray_ref_release(ref);

  assert_int_equal(ray_put("x", 1, NULL, &ref), RAY_OK);
  assert_int_equal(ray_seal(ref), RAY_EINVAL); /* not from ray_create */
  ray_ref_release(ref);
}

static void test_unsealed_object_freed_at_last_release(void **state) {
  (void)state;
  void *data;
  ray_ref *ref;
  assert_int_equal(ray_create(MIB, NULL, &data, &ref), RAY_OK);
  assert_int_equal(stats().bytes_in_memory, MIB);
  ray_ref_release(ref);
  assert_int_equal(stats().bytes_in_memory, 0);
  assert_int_equal(stats().objects, 0);
}

struct sealer {
  ray_ref *ref;
  int64_t *data;
  int getters;
};

/* Writes and seals once every getter is parked on the object. */
static void *seal_later(void *arg) {
  struct sealer *s = arg;
  await_waiters(s->ref, s->getters);
  for (int i = 0; i < 1000; i++) s->data[i] = 1000 - i;
  if (ray_seal(s->ref) != RAY_OK) abort();
  return NULL;
}

static void test_get_blocks_until_another_thread_seals(void **state) {
  (void)state;
  struct sealer s = {.getters = 1};
  void *data;
  assert_int_equal(ray_create(1000 * sizeof(int64_t), &ray_type_i64, &data, &s.ref), RAY_OK);
  s.data = data;
  pthread_t t;
  pthread_create(&t, NULL, seal_later, &s);
  ray_view v;
  assert_int_equal(ray_get(s.ref, &ray_type_i64, -1, &v), RAY_OK);
  /* Everything written before the seal is visible to the woken getter. */
  for (int i = 0; i < 1000; i++) assert_int_equal(((const int64_t *)v.data)[i], 1000 - i);
  ray_view_release(&v);
  pthread_join(t, NULL);
  ray_ref_release(s.ref);
}

static void test_get_timeout_changes_nothing_and_a_later_get_works(void **state) {
  (void)state;
  void *data;
  ray_ref *ref;
  assert_int_equal(ray_create(8, &ray_type_i64, &data, &ref), RAY_OK);
  ray_view v = {0};
  assert_int_equal(ray_get(ref, NULL, 30, &v), RAY_ETIMEOUT);
  assert_error_contains("not ready within 30 ms");
  assert_null(v.data); /* output untouched */
  assert_int_equal(ray_get(ref, NULL, 0, &v), RAY_ETIMEOUT);
  assert_error_contains("not ready yet");
  *(int64_t *)data = 42;
  assert_int_equal(ray_seal(ref), RAY_OK);
  assert_int_equal(ray_get(ref, &ray_type_i64, 0, &v), RAY_OK);
  assert_int_equal(*(const int64_t *)v.data, 42);
  ray_view_release(&v);
  ray_ref_release(ref);
  assert_int_equal(stats().gets, 1); /* failed gets are not counted */
}

struct getter_arg {
  ray_ref *ref;
  int ok;
};

static void *get_and_check(void *arg) {
  struct getter_arg *g = arg;
  ray_view v;
  if (ray_get(g->ref, &ray_type_i64, -1, &v) != RAY_OK) return NULL;
  g->ok = ((const int64_t *)v.data)[999] == 1;
  ray_view_release(&v);
  return NULL;
}

static void test_many_getters_all_woken_by_one_seal(void **state) {
  (void)state;
  enum { N = 6 };
  struct sealer s = {.getters = N};
  void *data;
  assert_int_equal(ray_create(1000 * sizeof(int64_t), &ray_type_i64, &data, &s.ref), RAY_OK);
  s.data = data;
  pthread_t getters[N], t;
  struct getter_arg args[N];
  for (int i = 0; i < N; i++) {
    args[i] = (struct getter_arg){s.ref, 0};
    pthread_create(&getters[i], NULL, get_and_check, &args[i]);
  }
  pthread_create(&t, NULL, seal_later, &s);
  for (int i = 0; i < N; i++) {
    pthread_join(getters[i], NULL);
    assert_int_equal(args[i].ok, 1);
  }
  pthread_join(t, NULL);
  ray_ref_release(s.ref);
  assert_int_equal(stats().gets, N);
}

static void test_view_outlives_last_ref(void **state) {
  (void)state;
  size_t n = 2 * MIB;
  char *src = malloc(n);
  memset(src, 'q', n);
  ray_ref *ref;
  assert_int_equal(ray_put(src, n, NULL, &ref), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(ref, NULL, 0, &v), RAY_OK);
  ray_ref_release(ref);
  ray_stats s = stats();
  assert_int_equal(s.objects, 1);
  assert_int_equal(s.bytes_in_memory, n);
  assert_memory_equal(v.data, src, n);
  ray_view_release(&v);
  assert_null(v.data);
  s = stats();
  assert_int_equal(s.objects, 0);
  assert_int_equal(s.bytes_in_memory, 0);
  ray_view_release(&v); /* a released view is ignored */
  ray_view_release(NULL);
  free(src);
}

static void test_type_mismatch_names_object_and_both_types(void **state) {
  (void)state;
  int64_t vals[4] = {1, 2, 3, 4};
  ray_ref *ref;
  assert_int_equal(ray_put(vals, sizeof vals, &ray_type_i64, &ref), RAY_OK);
  ray_view v = {0};
  assert_int_equal(ray_get(ref, &ray_type_f64, 0, &v), RAY_ETYPE);
  assert_null(v.data);
  assert_error_contains("'i64'");
  assert_error_contains("'f64'");
  char id[33];
  ray_ref_id(ref, id);
  assert_error_contains(id);
  assert_int_equal(ray_get(ref, NULL, 0, &v), RAY_OK); /* NULL: any type */
  ray_view_release(&v);
  ray_ref_release(ref);
}

typedef struct point {
  float x, y;
} point;
RAY_DEFINE_TYPE(point_type, point, "point");
RAY_DEFINE_TYPE(point_twin, point, "point");     /* same name and size */
RAY_DEFINE_TYPE(point_wide, double[2], "point"); /* same name, other size */
RAY_DEFINE_TYPE(vec2_type, point, "vec2");       /* same size, other name */

static void test_types_are_equal_by_address_or_name_and_size(void **state) {
  (void)state;
  point pts[3] = {{1, 2}, {3, 4}, {5, 6}};
  ray_ref *ref;
  assert_int_equal(ray_put(pts, sizeof pts, &point_type, &ref), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(ref, &point_twin, 0, &v), RAY_OK);
  assert_int_equal(v.size / point_type.elem_size, 3);
  ray_view_release(&v);
  assert_int_equal(ray_get(ref, &point_wide, 0, &v), RAY_ETYPE);
  assert_error_contains("(elem 16)");
  assert_int_equal(ray_get(ref, &vec2_type, 0, &v), RAY_ETYPE);
  assert_error_contains("'vec2'");
  ray_ref_release(ref);
}

static void test_elem_size_is_checked_at_put(void **state) {
  (void)state;
  char buf[12] = {0};
  ray_ref *ref = NULL;
  ray_stats before = stats();
  assert_int_equal(ray_put(buf, sizeof buf, &ray_type_i64, &ref), RAY_EINVAL);
  assert_error_contains("12 bytes is not a whole number of 'i64' elements of 8 bytes");
  void *data = NULL;
  assert_int_equal(ray_create(12, &ray_type_f64, &data, &ref), RAY_EINVAL);
  assert_null(data);
  assert_null(ref);
  ray_stats after = stats();
  assert_int_equal(after.puts, before.puts);
  assert_int_equal(after.objects, before.objects);
  ray_type nameless = {NULL, 0};
  assert_int_equal(ray_put(buf, sizeof buf, &nameless, &ref), RAY_EINVAL);
  assert_error_contains("NULL name");
}

static void test_bad_arguments_give_einval_with_a_message(void **state) {
  (void)state;
  ray_ref *ref = NULL;
  ray_view v;
  void *data;
  char c = 'x';
  assert_int_equal(ray_put(NULL, 4, NULL, &ref), RAY_EINVAL);
  assert_error_contains("ray_put: data is NULL");
  assert_int_equal(ray_put(&c, 1, NULL, NULL), RAY_EINVAL);
  assert_error_contains("ray_put: out is NULL");
  assert_int_equal(ray_put(&c, 0, NULL, &ref), RAY_EINVAL);
  assert_error_contains("ray_put: size is 0");
  assert_int_equal(ray_put_owned(NULL, 4, NULL, free, &ref), RAY_EINVAL);
  assert_error_contains("ray_put_owned: data is NULL");
  assert_int_equal(ray_put_owned(&c, 0, NULL, NULL, &ref), RAY_EINVAL);
  assert_int_equal(ray_create(0, NULL, &data, &ref), RAY_EINVAL);
  assert_error_contains("ray_create: size is 0");
  assert_int_equal(ray_create(8, NULL, NULL, &ref), RAY_EINVAL);
  assert_int_equal(ray_create(8, NULL, &data, NULL), RAY_EINVAL);
  assert_int_equal(ray_seal(NULL), RAY_EINVAL);
  assert_error_contains("ray_seal: ref is NULL");
  assert_int_equal(ray_get(NULL, NULL, 0, &v), RAY_EINVAL);
  assert_error_contains("ray_get: ref is NULL");
  assert_int_equal(ray_put(&c, 1, NULL, &ref), RAY_OK);
  assert_int_equal(ray_get(ref, NULL, 0, NULL), RAY_EINVAL);
  assert_error_contains("ray_get: out is NULL");
  assert_int_equal(ray_pin(NULL), RAY_EINVAL);
  assert_int_equal(ray_unpin(NULL), RAY_EINVAL);
  assert_int_equal(ray_stats_get(NULL), RAY_EINVAL);
  assert_null(ray_ref_retain(NULL));
  ray_ref_release(NULL); /* ignored */
  /* A value that was never a handle. */
  assert_int_equal(ray_get((ray_ref *)(uintptr_t)0x12345678, NULL, 0, &v), RAY_EINVAL);
  assert_error_contains("released or invalid");
  ray_ref_release(ref);
  assert_int_equal(stats().objects, 0);
}

static void test_released_handle_is_detected(void **state) {
  (void)state;
  ray_ref *ref;
  assert_int_equal(ray_put("abcdef", 6, NULL, &ref), RAY_OK);
  ray_ref_release(ref);
  ray_view v;
  assert_int_equal(ray_get(ref, NULL, 0, &v), RAY_EINVAL);
  assert_error_contains("released or invalid");
  assert_int_equal(ray_seal(ref), RAY_EINVAL);
  assert_int_equal(ray_pin(ref), RAY_EINVAL);
  assert_null(ray_ref_retain(ref));
  char id[33];
  ray_ref_id(ref, id);
  assert_string_equal(id, "00000000000000000000000000000000");
  /* The slot is reused by the next put, under a new generation: the old
   * handle still does not resolve. */
  ray_ref *next;
  assert_int_equal(ray_put("x", 1, NULL, &next), RAY_OK);
  assert_true(next != ref);
  assert_int_equal(ray_get(ref, NULL, 0, &v), RAY_EINVAL);
  ray_ref_release(ref); /* reported on stderr, ignored */
  assert_int_equal(ray_get(next, NULL, 0, &v), RAY_OK);
  ray_view_release(&v);
  ray_ref_release(next);
}

static void test_retain_and_release_count_handles(void **state) {
  (void)state;
  ray_ref *a;
  assert_int_equal(ray_put("hello", 5, &ray_type_str, &a), RAY_OK);
  ray_ref *b = ray_ref_retain(a);
  ray_ref *c = ray_ref_retain(b);
  ray_ref_release(a);
  ray_ref_release(b);
  assert_int_equal(stats().objects, 1);
  ray_view v;
  assert_int_equal(ray_get(c, &ray_type_str, 0, &v), RAY_OK);
  assert_memory_equal(v.data, "hello", 5);
  ray_view_release(&v);
  ray_ref_release(c);
  assert_int_equal(stats().objects, 0);
}

static void test_ids_are_32_hex_digits_and_unique(void **state) {
  (void)state;
  enum { N = 1000 };
  static char ids[N][33];
  ray_ref *refs[N];
  for (int i = 0; i < N; i++) {
    assert_int_equal(ray_put(&i, sizeof i, NULL, &refs[i]), RAY_OK);
    ray_ref_id(refs[i], ids[i]);
    assert_int_equal(strlen(ids[i]), 32);
    assert_int_equal(strspn(ids[i], "0123456789abcdef"), 32);
  }
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++) assert_string_not_equal(ids[i], ids[j]);
  char again[33];
  ray_ref *r = ray_ref_retain(refs[7]);
  ray_ref_id(r, again);
  assert_string_equal(again, ids[7]);
  ray_ref_release(r);
  /* A freed and reused slot gets a new ID. */
  ray_ref_release(refs[0]);
  ray_ref *fresh;
  assert_int_equal(ray_put("z", 1, NULL, &fresh), RAY_OK);
  ray_ref_id(fresh, again);
  for (int i = 0; i < N; i++) assert_string_not_equal(again, ids[i]);
  ray_ref_release(fresh);
  for (int i = 1; i < N; i++) ray_ref_release(refs[i]);
}

static void test_put_refs_keeps_its_objects_alive(void **state) {
  (void)state;
  ray_ref *a, *b, *list;
  int64_t x = 11, y = 22;
  assert_int_equal(ray_put(&x, 8, &ray_type_i64, &a), RAY_OK);
  assert_int_equal(ray_put(&y, 8, &ray_type_i64, &b), RAY_OK);
  ray_ref *items[3] = {a, b, a}; /* a ref may appear twice */
  assert_int_equal(ray_put_refs(items, 3, &list), RAY_OK);
  ray_ref_release(a);
  ray_ref_release(b);
  assert_int_equal(stats().objects, 3);
  ray_view lv;
  assert_int_equal(ray_get(list, &ray_type_refs, 0, &lv), RAY_OK);
  assert_int_equal(lv.size, 3 * sizeof(ray_ref *));
  ray_ref *const *held = lv.data;
  int64_t want[3] = {11, 22, 11};
  for (int i = 0; i < 3; i++) {
    ray_view iv;
    assert_int_equal(ray_get(held[i], &ray_type_i64, 0, &iv), RAY_OK);
    assert_int_equal(*(const int64_t *)iv.data, want[i]);
    ray_view_release(&iv);
  }
  ray_ref *kept = ray_ref_retain(held[1]); /* outlive the list */
  ray_view_release(&lv);
  ray_ref_release(list);
  assert_int_equal(stats().objects, 1);
  ray_view kv;
  assert_int_equal(ray_get(kept, &ray_type_i64, 0, &kv), RAY_OK);
  assert_int_equal(*(const int64_t *)kv.data, 22);
  ray_view_release(&kv);
  ray_ref_release(kept);
  assert_int_equal(stats().objects, 0);
  assert_int_equal(stats().bytes_in_memory, 0);
}

static void test_put_refs_of_many_and_of_none(void **state) {
  (void)state;
  enum { N = 100 };
  ray_ref *refs[N], *list, *empty;
  for (int i = 0; i < N; i++) assert_int_equal(ray_put(&i, sizeof i, NULL, &refs[i]), RAY_OK);
  assert_int_equal(ray_put_refs(refs, N, &list), RAY_OK); /* out of line: 800 bytes */
  for (int i = 0; i < N; i++) ray_ref_release(refs[i]);
  assert_int_equal(ray_put_refs(NULL, 0, &empty), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(empty, &ray_type_refs, 0, &v), RAY_OK);
  assert_int_equal(v.size, 0);
  ray_view_release(&v);
  assert_int_equal(ray_get(list, &ray_type_refs, 0, &v), RAY_OK);
  ray_ref *const *held = v.data;
  ray_view iv;
  assert_int_equal(ray_get(held[77], NULL, 0, &iv), RAY_OK);
  assert_int_equal(*(const int *)iv.data, 77);
  ray_view_release(&iv);
  ray_view_release(&v);
  ray_ref_release(list);
  ray_ref_release(empty);
  assert_int_equal(stats().objects, 0);
}

static void test_put_refs_rejects_a_released_ref_and_keeps_the_rest(void **state) {
  (void)state;
  ray_ref *a, *b, *list = NULL;
  assert_int_equal(ray_put("a", 1, NULL, &a), RAY_OK);
  assert_int_equal(ray_put("b", 1, NULL, &b), RAY_OK);
  ray_ref_release(b);
  ray_ref *items[2] = {a, b};
  assert_int_equal(ray_put_refs(items, 2, &list), RAY_EINVAL);
  assert_error_contains("refs[1]");
  assert_null(list);
  assert_int_equal(ray_put_refs(NULL, 2, &list), RAY_EINVAL);
  assert_int_equal(stats().objects, 1);
  ray_ref_release(a); /* a holds exactly one ref: no retain leaked */
  assert_int_equal(stats().objects, 0);
}

static void test_long_chain_of_refs_objects_frees_without_recursion(void **state) {
  (void)state;
  enum { DEPTH = 200000 };
  ray_ref *prev;
  assert_int_equal(ray_put("leaf", 4, NULL, &prev), RAY_OK);
  for (int i = 0; i < DEPTH; i++) {
    ray_ref *next;
    assert_int_equal(ray_put_refs(&prev, 1, &next), RAY_OK);
    ray_ref_release(prev);
    prev = next;
  }
  assert_int_equal(stats().objects, DEPTH + 1);
  ray_ref_release(prev); /* frees the whole chain */
  assert_int_equal(stats().objects, 0);
  assert_int_equal(stats().bytes_in_memory, 0);
}

static void test_stats_count_puts_gets_and_objects(void **state) {
  (void)state;
  ray_ref *r[4];
  void *d;
  assert_int_equal(ray_put("abcd", 4, NULL, &r[0]), RAY_OK);
  assert_int_equal(ray_put_owned(malloc(100), 100, NULL, free, &r[1]), RAY_OK);
  assert_int_equal(ray_create(1000, NULL, &d, &r[2]), RAY_OK);
  assert_int_equal(ray_put_refs(r, 2, &r[3]), RAY_OK);
  ray_stats s = stats();
  assert_int_equal(s.puts, 4);
  assert_int_equal(s.objects, 4);
  assert_int_equal(s.bytes_in_memory, 4 + 100 + 1000 + 2 * sizeof(ray_ref *));
  assert_int_equal(s.memory_limit, 256 * MIB);
  assert_int_equal(s.bytes_spilled, 0);
  assert_int_equal(ray_seal(r[2]), RAY_OK);
  ray_view v;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ray_get(r[i], NULL, 0, &v), RAY_OK);
    ray_view_release(&v);
  }
  assert_int_equal(stats().gets, 4);
  for (int i = 0; i < 4; i++) ray_ref_release(r[i]);
  s = stats();
  assert_int_equal(s.objects, 0);
  assert_int_equal(s.bytes_in_memory, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_copies_and_get_returns_the_bytes, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_put_with_null_type_is_bytes, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_put_owned_is_zero_copy_and_freed_once_at_the_end, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_put_owned_without_free_fn_leaves_ownership, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_put_owned_failure_leaves_buffer_with_caller, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_create_then_seal_writes_in_place, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_seal_twice_is_einval, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_unsealed_object_freed_at_last_release, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_get_blocks_until_another_thread_seals, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_get_timeout_changes_nothing_and_a_later_get_works, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_many_getters_all_woken_by_one_seal, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_view_outlives_last_ref, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_type_mismatch_names_object_and_both_types, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_types_are_equal_by_address_or_name_and_size, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_elem_size_is_checked_at_put, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments_give_einval_with_a_message, setup,
                                      test_teardown),
      cmocka_unit_test_setup_teardown(test_released_handle_is_detected, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_retain_and_release_count_handles, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_ids_are_32_hex_digits_and_unique, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_put_refs_keeps_its_objects_alive, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_put_refs_of_many_and_of_none, setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_put_refs_rejects_a_released_ref_and_keeps_the_rest,
                                      setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_long_chain_of_refs_objects_frees_without_recursion,
                                      setup, test_teardown),
      cmocka_unit_test_setup_teardown(test_stats_count_puts_gets_and_objects, setup, test_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
