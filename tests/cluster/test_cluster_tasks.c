/*
 * test_cluster_tasks.c - run under `mpirun -n N` (N >= 3): tasks and
 * objects across ranks through the public API. Rank 0 runs the tests; the
 * other ranks serve inside ray_init and exit at the driver's ray_shutdown.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "ray.h"

#define CHECK_OK(call)                                                                             \
  do {                                                                                             \
    ray_status s_ = (call);                                                                        \
    if (s_ != RAY_OK) fail_msg("%s: %s: %s", #call, ray_status_name(s_), ray_last_error());        \
  } while (0)

static int64_t get_i64(ray_ref *r) {
  ray_view v;
  CHECK_OK(ray_get(r, &ray_type_i64, -1, &v));
  int64_t x = *(const int64_t *)v.data;
  ray_view_release(&v);
  return x;
}

static int64_t arg_i64(ray_ctx *ctx, size_t i) {
  ray_view v;
  if (ray_ctx_arg(ctx, i, &ray_type_i64, &v) != RAY_OK) return INT64_MIN;
  return *(const int64_t *)v.data;
}

static ray_task_opts on(int rank) {
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.node = RAY_NODE(rank);
  return o;
}

/* ---- placement ---------------------------------------------------------- */

static ray_status my_rank(ray_ctx *ctx) {
  int64_t r = ray_node_rank();
  return ray_ctx_return(ctx, 0, &r, sizeof r, &ray_type_i64);
}

static void pinned_tasks_run_on_their_rank(void **state) {
  (void)state;
  int n = ray_node_count();
  assert_true(n >= 3);
  for (int rep = 0; rep < 3; rep++)
    for (int r = 0; r < n; r++) {
      ray_task_opts o = on(r);
      ray_ref *ref;
      CHECK_OK(ray_submit(my_rank, NULL, 0, &o, &ref));
      assert_int_equal(get_i64(ref), r);
      ray_ref_release(ref);
    }
  /* An actor lives on the rank that creates it. */
  ray_actor_opts ao = {0};
  ao.node = RAY_NODE(1);
  static const ray_actor_class k_empty = {"Empty", 8, NULL, NULL, NULL, 0};
  ray_actor *a = NULL;
  assert_int_equal(ray_actor_create(&k_empty, NULL, 0, &ao, &a), RAY_EINVAL);
  assert_non_null(strstr(ray_last_error(), "an actor lives on the rank that creates it"));
  assert_null(a);
  /* Code that is in no module (here: heap bytes, never called) cannot be
   * named on another rank: submit refuses it, naming why. */
  void *heap = malloc(64);
  ray_task_fn nowhere = (ray_task_fn)(uintptr_t)heap;
  ray_task_opts o1 = on(1);
  ray_ref *nr = NULL;
  assert_int_equal(ray_submit(nowhere, NULL, 0, &o1, &nr), RAY_EINVAL);
  assert_non_null(strstr(ray_last_error(), "in no module every rank loaded at ray_init"));
  assert_null(nr);
  free(heap);
  ray_task_opts bad = on(n);
  ray_ref *ref = NULL;
  assert_int_equal(ray_submit(my_rank, NULL, 0, &bad, &ref), RAY_EINVAL);
  assert_non_null(strstr(ray_last_error(), "not a rank of this runtime"));
  assert_null(ref);
}

/* ---- a big object made on rank 1 ---------------------------------------- */

#define BIG ((size_t)64 << 20)

static unsigned char pattern(size_t i) {
  return (unsigned char)((i * 131 + (i >> 16)) & 0xff);
}

static ray_status make_big(ray_ctx *ctx) {
  unsigned char *b = malloc(BIG);
  if (!b) return ray_ctx_fail(ctx, "out of memory");
  for (size_t i = 0; i < BIG; i++) b[i] = pattern(i);
  return ray_ctx_return_owned(ctx, 0, b, BIG, &ray_type_bytes, free);
}

/* Checks its argument's bytes; returns the rank it ran on, or fails. */
static ray_status check_big(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_bytes, &v);
  if (s != RAY_OK) return ray_ctx_fail(ctx, "arg: %s", ray_last_error());
  if (v.size != BIG) return ray_ctx_fail(ctx, "size %zu", v.size);
  const unsigned char *b = v.data;
  for (size_t i = 0; i < BIG; i++)
    if (b[i] != pattern(i)) return ray_ctx_fail(ctx, "byte %zu differs", i);
  int64_t r = ray_node_rank();
  return ray_ctx_return(ctx, 0, &r, sizeof r, &ray_type_i64);
}

static void big_object_read_on_other_ranks(void **state) {
  (void)state;
  ray_task_opts o1 = on(1), o2 = on(2);
  ray_ref *big, *checked, *checked2;
  CHECK_OK(ray_submit(make_big, NULL, 0, &o1, &big));
  ray_arg a = ray_arg_ref(big);
  CHECK_OK(ray_submit(check_big, &a, 1, &o2, &checked));
  CHECK_OK(ray_submit(check_big, &a, 1, &o2, &checked2)); /* the same copy on rank 2 */
  assert_int_equal(get_i64(checked), 2);
  assert_int_equal(get_i64(checked2), 2);
  ray_view v;
  CHECK_OK(ray_get(big, &ray_type_bytes, -1, &v)); /* the driver pulls it too */
  assert_int_equal(v.size, BIG);
  const unsigned char *b = v.data;
  size_t bad = SIZE_MAX;
  for (size_t i = 0; i < BIG && bad == SIZE_MAX; i++)
    if (b[i] != pattern(i)) bad = i;
  assert_int_equal(bad, SIZE_MAX);
  ray_view_release(&v);
  /* Back to rank 1, which made it: it reads its own bytes. */
  ray_ref *checked1;
  CHECK_OK(ray_submit(check_big, &a, 1, &o1, &checked1));
  assert_int_equal(get_i64(checked1), 1);
  ray_ref_release(checked1);
  ray_ref_release(checked);
  ray_ref_release(checked2);
  ray_ref_release(big);
}

/* A put of the driver, read by a task elsewhere. */
static ray_status sum_bytes(ray_ctx *ctx) {
  ray_view v;
  if (ray_ctx_arg(ctx, 0, NULL, &v) != RAY_OK) return ray_ctx_fail(ctx, "%s", ray_last_error());
  int64_t s = 0;
  for (size_t i = 0; i < v.size; i++) s += ((const unsigned char *)v.data)[i];
  return ray_ctx_return(ctx, 0, &s, sizeof s, &ray_type_i64);
}

static void driver_put_read_elsewhere(void **state) {
  (void)state;
  static const size_t sizes[] = {8, 40000, 3 << 20};
  for (size_t k = 0; k < 3; k++) {
    unsigned char *b = malloc(sizes[k]);
    int64_t want = 0;
    for (size_t i = 0; i < sizes[k]; i++) want += b[i] = (unsigned char)(i * 7);
    ray_ref *obj, *sum;
    CHECK_OK(ray_put(b, sizes[k], NULL, &obj));
    free(b);
    ray_arg a = ray_arg_ref(obj);
    ray_task_opts o = on(1 + (int)k % (ray_node_count() - 1));
    CHECK_OK(ray_submit(sum_bytes, &a, 1, &o, &sum));
    assert_int_equal(get_i64(sum), want);
    ray_ref_release(sum);
    ray_ref_release(obj);
  }
}

/* ---- refs objects (ray_put_refs) across ranks --------------------------- */

/* Sums the bytes of every object its refs-object argument holds. */
static ray_status sum_refs(ray_ctx *ctx) {
  ray_view v;
  if (ray_ctx_arg(ctx, 0, &ray_type_refs, &v) != RAY_OK)
    return ray_ctx_fail(ctx, "arg: %s", ray_last_error());
  ray_ref *const *refs = v.data;
  int64_t s = 0;
  for (size_t i = 0; i < v.size / sizeof(ray_ref *); i++) {
    ray_view e;
    if (ray_get(refs[i], NULL, -1, &e) != RAY_OK)
      return ray_ctx_fail(ctx, "get %zu: %s", i, ray_last_error());
    for (size_t k = 0; k < e.size; k++) s += ((const unsigned char *)e.data)[k];
    ray_view_release(&e);
  }
  return ray_ctx_return(ctx, 0, &s, sizeof s, &ray_type_i64);
}

static ray_status slow_seven(ray_ctx *ctx) {
  usleep(100000);
  unsigned char b[100000];
  memset(b, 7, sizeof b);
  return ray_ctx_return(ctx, 0, b, sizeof b, &ray_type_bytes);
}

/* Makes two objects here and returns a refs object holding them. */
static ray_status make_refs(ray_ctx *ctx) {
  unsigned char small[3] = {1, 2, 3};
  unsigned char *big = malloc(200000);
  if (!big) return ray_ctx_fail(ctx, "out of memory");
  memset(big, 2, 200000);
  ray_ref *r[2];
  if (ray_put(small, sizeof small, NULL, &r[0]) != RAY_OK ||
      ray_put(big, 200000, NULL, &r[1]) != RAY_OK)
    return ray_ctx_fail(ctx, "put: %s", ray_last_error());
  free(big);
  ray_ref *obj;
  ray_status s = ray_put_refs(r, 2, &obj);
  ray_ref_release(r[0]);
  ray_ref_release(r[1]);
  if (s != RAY_OK) return ray_ctx_fail(ctx, "put_refs: %s", ray_last_error());
  s = ray_ctx_return_ref(ctx, 0, obj);
  ray_ref_release(obj);
  return s;
}

static void refs_objects_cross_ranks(void **state) {
  (void)state;
  /* The driver's refs object, holding a small and a large object, read on rank 1. */
  unsigned char small[5] = {1, 1, 1, 1, 1};
  unsigned char *big = malloc(1 << 20);
  memset(big, 3, 1 << 20);
  ray_ref *r[2], *obj, *sum;
  CHECK_OK(ray_put(small, sizeof small, NULL, &r[0]));
  CHECK_OK(ray_put(big, 1 << 20, NULL, &r[1]));
  free(big);
  CHECK_OK(ray_put_refs(r, 2, &obj));
  ray_arg a = ray_arg_ref(obj);
  ray_task_opts o1 = on(1), o2 = on(2);
  CHECK_OK(ray_submit(sum_refs, &a, 1, &o1, &sum));
  assert_int_equal(get_i64(sum), 5 + 3 * (1 << 20));
  ray_ref_release(sum);
  ray_ref_release(obj);
  ray_ref_release(r[0]);
  ray_ref_release(r[1]);

  /* A refs object holding a result not made yet (a task on rank 2): the
   * reader on rank 1 waits for it there. */
  ray_ref *slow, *obj2;
  CHECK_OK(ray_submit(slow_seven, NULL, 0, &o2, &slow));
  CHECK_OK(ray_put_refs(&slow, 1, &obj2));
  ray_ref_release(slow);
  a = ray_arg_ref(obj2);
  CHECK_OK(ray_submit(sum_refs, &a, 1, &o1, &sum));
  assert_int_equal(get_i64(sum), 7 * 100000);
  ray_ref_release(sum);
  ray_ref_release(obj2);

  /* A refs object made on rank 1 and returned: the driver reads what it holds. */
  ray_ref *made;
  CHECK_OK(ray_submit(make_refs, NULL, 0, &o1, &made));
  ray_view v;
  CHECK_OK(ray_get(made, &ray_type_refs, -1, &v));
  assert_int_equal(v.size, 2 * sizeof(ray_ref *));
  ray_ref *const *got = v.data;
  ray_view e;
  CHECK_OK(ray_get(got[0], NULL, -1, &e));
  assert_int_equal(e.size, 3);
  assert_int_equal(((const unsigned char *)e.data)[2], 3);
  ray_view_release(&e);
  CHECK_OK(ray_get(got[1], NULL, -1, &e));
  assert_int_equal(e.size, 200000);
  assert_int_equal(((const unsigned char *)e.data)[199999], 2);
  ray_view_release(&e);
  ray_view_release(&v);
  ray_ref_release(made);
}

/* ---- a DAG with default placement --------------------------------------- */

static ray_status leaf(ray_ctx *ctx) {
  int64_t i = arg_i64(ctx, 0), sq = i * i;
  for (volatile int spin = 0; spin < 20000; spin++) {
  }
  return ray_ctx_return(ctx, 0, &sq, sizeof sq, &ray_type_i64);
}

static ray_status add_all(ray_ctx *ctx) {
  int64_t s = 0;
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) s += arg_i64(ctx, i);
  return ray_ctx_return(ctx, 0, &s, sizeof s, &ray_type_i64);
}

static void dag_uses_more_than_one_rank(void **state) {
  (void)state;
  enum { N = 10000, FAN = 100 };
  uint64_t before[64] = {0};
  int n = ray_node_count();
  for (int r = 0; r < n && r < 64; r++) {
    ray_stats s;
    CHECK_OK(ray_stats_get_node(r, &s));
    before[r] = s.tasks_finished;
  }
  static ray_ref *leaves[N];
  for (int64_t i = 0; i < N; i++) {
    ray_arg a = ray_arg_value(&i, sizeof i, &ray_type_i64);
    CHECK_OK(ray_submit(leaf, &a, 1, NULL, &leaves[i]));
  }
  ray_ref *partial[N / FAN];
  for (int g = 0; g < N / FAN; g++) {
    ray_arg args[FAN];
    for (int k = 0; k < FAN; k++) args[k] = ray_arg_ref(leaves[g * FAN + k]);
    CHECK_OK(ray_submit(add_all, args, FAN, NULL, &partial[g]));
    for (int k = 0; k < FAN; k++) ray_ref_release(leaves[g * FAN + k]);
  }
  ray_arg args[N / FAN];
  for (int g = 0; g < N / FAN; g++) args[g] = ray_arg_ref(partial[g]);
  ray_ref *total;
  CHECK_OK(ray_submit(add_all, args, N / FAN, NULL, &total));
  for (int g = 0; g < N / FAN; g++) ray_ref_release(partial[g]);
  int64_t want = 0;
  for (int64_t i = 0; i < N; i++) want += i * i;
  assert_int_equal(get_i64(total), want);
  ray_ref_release(total);
  int used = 0;
  for (int r = 0; r < n && r < 64; r++) {
    ray_stats s;
    CHECK_OK(ray_stats_get_node(r, &s));
    used += s.tasks_finished > before[r];
  }
  assert_true(used >= 2);
}

/* ---- errors across ranks ------------------------------------------------ */

static ray_status fails(ray_ctx *ctx) {
  return ray_ctx_fail(ctx, "invalid input %d", -5);
}

static ray_status passes_on(ray_ctx *ctx) {
  int64_t x = arg_i64(ctx, 0);
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

/* Fails with the error of a task it submits to the next rank down, or
 * fails itself at depth 0: an error that crosses every rank on its way. */
static ray_status chain(ray_ctx *ctx) {
  int64_t depth = arg_i64(ctx, 0);
  if (depth == 0) return ray_ctx_fail(ctx, "disk full at the bottom");
  int64_t next = depth - 1;
  ray_arg a = ray_arg_value(&next, sizeof next, &ray_type_i64);
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.node = RAY_NODE((int)next); /* depth d runs on rank d */
  o.name = next == 0 ? "bottom" : "middle";
  ray_ref *r;
  if (ray_submit(chain, &a, 1, &o, &r) != RAY_OK) return ray_ctx_fail(ctx, "submit");
  ray_view v;
  ray_status s = ray_get(r, NULL, -1, &v);
  ray_ref_release(r);
  if (s == RAY_OK) {
    ray_view_release(&v);
    return ray_ctx_fail(ctx, "the task below did not fail");
  }
  return ray_ctx_fail(ctx, "below: %s", ray_last_error());
}

static void error_chain_names_each_rank(void **state) {
  (void)state;
  ray_task_opts o1 = on(1), o2 = on(2);
  o1.name = "parse";
  o2.name = "sum";
  ray_ref *a, *b, *c;
  CHECK_OK(ray_submit(fails, NULL, 0, &o1, &a));
  ray_arg x = ray_arg_ref(a);
  CHECK_OK(ray_submit(passes_on, &x, 1, &o2, &b));
  ray_arg y = ray_arg_ref(b);
  ray_task_opts o0 = on(0);
  o0.name = "third";
  CHECK_OK(ray_submit(passes_on, &y, 1, &o0, &c));
  ray_view v;
  assert_int_equal(ray_get(a, NULL, -1, &v), RAY_ETASK);
  const char *m = ray_last_error();
  assert_non_null(strstr(m, "rank 1"));
  assert_non_null(strstr(m, "task 'parse' failed: invalid input -5"));
  assert_int_equal(ray_get(c, NULL, -1, &v), RAY_ETASK);
  m = ray_last_error();
  assert_non_null(strstr(m, "task 'third' not run"));
  assert_non_null(strstr(m, "'sum'"));
  assert_non_null(strstr(m, "invalid input -5"));
  assert_non_null(strstr(m, "rank 1"));
  ray_ref_release(a);
  ray_ref_release(b);
  ray_ref_release(c);
  /* An error made on rank 0, passed up through ranks 1 and 2: the driver's
   * message names each rank on the way. */
  int64_t top = 2;
  ray_arg t = ray_arg_value(&top, sizeof top, &ray_type_i64);
  ray_task_opts ot = on(2);
  ot.name = "top";
  CHECK_OK(ray_submit(chain, &t, 1, &ot, &a));
  assert_int_equal(ray_get(a, NULL, -1, &v), RAY_ETASK);
  m = ray_last_error();
  assert_non_null(strstr(m, "rank 2: task 'top' failed: below: "));
  assert_non_null(strstr(m, "rank 1: task 'middle' failed: below: "));
  assert_non_null(strstr(m, "task 'bottom' failed: disk full at the bottom"));
  ray_ref_release(a);
  /* And a task that runs on rank 2 and fails there names rank 2. */
  CHECK_OK(ray_submit(fails, NULL, 0, &o2, &a));
  assert_int_equal(ray_get(a, NULL, -1, &v), RAY_ETASK);
  assert_non_null(strstr(ray_last_error(), "rank 2"));
  ray_ref_release(a);
}

/* ---- cancel of a task running elsewhere --------------------------------- */

static ray_status until_cancelled(ray_ctx *ctx) {
  while (!ray_ctx_cancelled(ctx)) usleep(1000);
  int64_t r = ray_node_rank();
  return ray_ctx_return(ctx, 0, &r, sizeof r, &ray_type_i64);
}

static void cancel_reaches_other_rank(void **state) {
  (void)state;
  ray_task_opts o2 = on(2);
  ray_ref *r;
  CHECK_OK(ray_submit(until_cancelled, NULL, 0, &o2, &r));
  /* Wait until it runs there (its rank reports a task in flight). */
  for (int i = 0; i < 10000; i++) {
    ray_stats s;
    CHECK_OK(ray_stats_get_node(2, &s));
    if (s.tasks_submitted > s.tasks_finished + s.tasks_failed + s.tasks_cancelled) break;
    usleep(1000);
  }
  CHECK_OK(ray_cancel(r, false));
  ray_view v;
  assert_int_equal(ray_get(r, NULL, -1, &v), RAY_ECANCELLED);
  assert_non_null(strstr(ray_last_error(), "rank 2"));
  ray_ref_release(r);
}

/* ---- nested submit + get across ranks ----------------------------------- */

static ray_status nest(ray_ctx *ctx) {
  int64_t depth = arg_i64(ctx, 0);
  if (depth == 0) {
    int64_t zero = 0;
    return ray_ctx_return(ctx, 0, &zero, sizeof zero, &ray_type_i64);
  }
  int64_t next = depth - 1;
  ray_arg a = ray_arg_value(&next, sizeof next, &ray_type_i64);
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.node = RAY_NODE((ray_node_rank() + 1) % ray_node_count());
  ray_ref *child;
  ray_status s = ray_submit(nest, &a, 1, &o, &child);
  if (s != RAY_OK) return ray_ctx_fail(ctx, "submit: %s", ray_last_error());
  ray_view v;
  s = ray_get(child, &ray_type_i64, -1, &v);
  if (s != RAY_OK) {
    ray_ref_release(child);
    return ray_ctx_fail(ctx, "get: %s", ray_last_error());
  }
  int64_t r = *(const int64_t *)v.data + 1;
  ray_view_release(&v);
  ray_ref_release(child);
  return ray_ctx_return(ctx, 0, &r, sizeof r, &ray_type_i64);
}

static void nested_depth_100_across_ranks(void **state) {
  (void)state;
  int64_t depth = 100;
  ray_arg a = ray_arg_value(&depth, sizeof depth, &ray_type_i64);
  ray_task_opts o = on(1);
  ray_ref *r;
  CHECK_OK(ray_submit(nest, &a, 1, &o, &r));
  assert_int_equal(get_i64(r), 100);
  ray_ref_release(r);
}

/* ---- lifetime: nothing left anywhere ------------------------------------ */

static void every_rank_frees_everything(void **state) {
  (void)state;
  int n = ray_node_count();
  for (int r = 0; r < n; r++) {
    ray_stats s = {0};
    for (int i = 0; i < 10000; i++) { /* drops travel after the releases */
      CHECK_OK(ray_stats_get_node(r, &s));
      if (s.objects == 0) break;
      usleep(1000);
    }
    if (s.objects != 0)
      fail_msg("rank %d still has %llu objects", r, (unsigned long long)s.objects);
  }
}

static int setup(void **state) {
  (void)state;
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 2;
  return ray_init(&cfg) == RAY_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return ray_shutdown() == RAY_OK ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pinned_tasks_run_on_their_rank),
      cmocka_unit_test(big_object_read_on_other_ranks),
      cmocka_unit_test(driver_put_read_elsewhere),
      cmocka_unit_test(refs_objects_cross_ranks),
      cmocka_unit_test(dag_uses_more_than_one_rank),
      cmocka_unit_test(error_chain_names_each_rank),
      cmocka_unit_test(cancel_reaches_other_rank),
      cmocka_unit_test(nested_depth_100_across_ranks),
      cmocka_unit_test(every_rank_frees_everything),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
