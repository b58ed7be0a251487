/*
 * test_memory_report.c - ray_memory_report (issue 13, section 2): live
 * objects grouped by creator (a put's call site, a task's name) with their
 * counts, bytes, refs, views, pins and spilled objects; the report while
 * other threads put, get and free; the shutdown leak warning naming the
 * creators; RAY_MEMORY_REPORT and RAY_MEMORY_SIGNAL; bad inputs and
 * allocation failures.
 *
 * The put sites are small functions of this file marked noinline, each
 * used by one test only: creators are interned once per process, so a site
 * seen by another test would change nothing but the order of ties.
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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "ray.h"
#include "store/creator.h"
#include "store/store.h"
#include "test_util.h"

#define KIB ((size_t)1 << 10)
#define NOINLINE __attribute__((noinline))
#define GET_TIMEOUT_MS 60000 /* only a hang reaches it */

/* ------------------------------------------------------------------------ */
/* Reading reports                                                          */
/* ------------------------------------------------------------------------ */

/* The report, with flags, as a string (malloc'd). */
static char *report(unsigned flags) {
  FILE *f = tmpfile();
  assert_non_null(f);
  ray_status s = ray_memory_report(f, flags);
  if (s != RAY_OK) fail_msg("ray_memory_report: %s: %s", ray_status_name(s), ray_last_error());
  long n = ftell(f);
  assert_true(n > 0);
  char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  rewind(f);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

typedef struct row {
  uint64_t objects, bytes, refs, views, pins, spilled, spilled_bytes;
  int index; /* which group line, from 0 */
} row;

/* The group line whose creator contains `label`; fails the test unless
 * exactly one does. */
static row group_row(const char *rep, const char *label) {
  row r = {0};
  int found = 0, index = 0;
  const char *line = strchr(rep, '\n'); /* past the title */
  assert_non_null(line);
  line = strchr(line + 1, '\n'); /* past the column names */
  assert_non_null(line);
  for (line++; *line; index++) {
    const char *end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    row x;
    int at = 0;
    if (sscanf(line,
               "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
               " %n",
               &x.objects, &x.bytes, &x.refs, &x.views, &x.pins, &x.spilled, &x.spilled_bytes,
               &at) != 7)
      break; /* past the groups */
    char name[512];
    size_t len = (size_t)(end - line) - (size_t)at;
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, line + at, len);
    name[len] = '\0';
    if (strstr(name, label)) {
      r = x;
      r.index = index;
      found++;
    }
    line = *end ? end + 1 : end;
  }
  if (found != 1) fail_msg("%d group lines name '%s' in:\n%s", found, label, rep);
  return r;
}

static void assert_row(const row *r, uint64_t objects, uint64_t bytes, uint64_t refs,
                       uint64_t views, uint64_t pins, uint64_t spilled, uint64_t spilled_bytes) {
  assert_int_equal(r->objects, objects);
  assert_int_equal(r->bytes, bytes);
  assert_int_equal(r->refs, refs);
  assert_int_equal(r->views, views);
  assert_int_equal(r->pins, pins);
  assert_int_equal(r->spilled, spilled);
  assert_int_equal(r->spilled_bytes, spilled_bytes);
}

/* The report (flags) once the group `label` has `refs` refs. A task drops
 * its own ref on each result just after sealing it, a moment after a get
 * has seen the result: a report made at once may still count it. */
static char *report_settled(unsigned flags, const char *label, uint64_t refs) {
  char *rep = NULL;
  WAIT_UNTIL((free(rep), rep = report(flags), group_row(rep, label).refs == refs),
             "the tasks' own refs on their results dropped");
  return rep;
}

static size_t count_lines_with(const char *text, const char *what) {
  size_t n = 0;
  for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what)) n++;
  return n;
}

static bool have_addr2line(void) {
  return system("command -v addr2line >/dev/null 2>&1") == 0;
}

static void assert_contains(const char *text, const char *what) {
  if (!strstr(text, what)) fail_msg("'%s' not found in:\n%s", what, text);
}

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */
/* ------------------------------------------------------------------------ */

/* Returns its i64 argument times itself. */
static ray_status square(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  int64_t x = *(const int64_t *)v.data;
  x *= x;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

/* Submits square(x) named `name`; returns its result ref. */
static ray_ref *submit_named(const char *name, int64_t x) {
  ray_arg arg = ray_arg_value(&x, sizeof x, &ray_type_i64);
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = name;
  ray_ref *r = NULL;
  ray_status s = ray_submit(square, &arg, 1, &o, &r);
  if (s != RAY_OK) fail_msg("ray_submit: %s: %s", ray_status_name(s), ray_last_error());
  return r;
}

/* Waits for a task's result and checks it. */
static void expect_i64(ray_ref *r, int64_t want) {
  ray_view v;
  ray_status s = ray_get(r, &ray_type_i64, GET_TIMEOUT_MS, &v);
  if (s != RAY_OK) fail_msg("ray_get: %s: %s", ray_status_name(s), ray_last_error());
  assert_int_equal(*(const int64_t *)v.data, want);
  ray_view_release(&v);
}

/* ------------------------------------------------------------------------ */
/* Groups and counts                                                        */
/* ------------------------------------------------------------------------ */

static NOINLINE ray_ref *put_spilled(void) {
  void *buf = calloc(1, 300 * KIB);
  assert_non_null(buf);
  ray_ref *r = NULL;
  assert_int_equal(ray_put(buf, 300 * KIB, NULL, &r), RAY_OK);
  free(buf);
  return r;
}

static NOINLINE ray_ref *put_kept(void) {
  void *buf = calloc(1, 300 * KIB);
  assert_non_null(buf);
  ray_ref *r = NULL;
  assert_int_equal(ray_put(buf, 300 * KIB, NULL, &r), RAY_OK);
  free(buf);
  return r;
}

static NOINLINE void put_site_a(ray_ref *out[3]) {
  for (int64_t i = 0; i < 3; i++)
    assert_int_equal(ray_put(&i, sizeof i, &ray_type_i64, &out[i]), RAY_OK);
}

static NOINLINE void put_site_b(ray_ref *out[2]) {
  char bytes[100] = {0};
  for (int i = 0; i < 2; i++) assert_int_equal(ray_put(bytes, sizeof bytes, NULL, &out[i]), RAY_OK);
}

static void test_groups_and_counts_are_exact_for_a_known_mix(void **state) {
  (void)state;
  /* 512 KiB: the second 300 KiB object does not fit beside the first,
   * which is the only spillable object then, so exactly it spills. */
  assert_int_equal(test_init(2, 512 * KIB, 10000), 0);
  ray_ref *spilled = put_spilled();
  ray_ref *kept = put_kept();
  assert_int_equal(stats().spills, 1);
  ray_ref *a[3], *b[2];
  put_site_a(a);
  put_site_b(b);
  /* Group A: two more refs on a[0]. Group B: a view of b[0], a pin of
   * b[1]; neither can spill now. */
  assert_ptr_equal(ray_ref_retain(a[0]), a[0]);
  assert_ptr_equal(ray_ref_retain(a[0]), a[0]);
  ray_view vb;
  assert_int_equal(ray_get(b[0], NULL, 0, &vb), RAY_OK);
  assert_int_equal(ray_pin(b[1]), RAY_OK);
  ray_ref *sq[2] = {submit_named("square", 3), submit_named("square", 4)};
  ray_ref *ha = submit_named("halve", 5);
  expect_i64(sq[0], 9);
  expect_i64(sq[1], 16);
  expect_i64(ha, 25);
  char *rep = report_settled(0, "total", 12);
  assert_contains(rep, "rayc memory report: 10 live objects, 614648 bytes (307200 spilled to "
                       "disk), from 6 creators, most bytes first");
  row r = group_row(rep, "ray_put at put_spilled");
  assert_row(&r, 1, 300 * KIB, 1, 0, 0, 1, 300 * KIB);
  assert_int_equal(r.index, 0);
  r = group_row(rep, "ray_put at put_kept"); /* as many bytes: the older creator first */
  assert_row(&r, 1, 300 * KIB, 1, 0, 0, 0, 0);
  assert_int_equal(r.index, 1);
  r = group_row(rep, "ray_put at put_site_b");
  assert_row(&r, 2, 200, 2, 1, 1, 0, 0);
  assert_int_equal(r.index, 2);
  r = group_row(rep, "ray_put at put_site_a");
  assert_row(&r, 3, 24, 5, 0, 0, 0, 0);
  assert_int_equal(r.index, 3);
  r = group_row(rep, "returned by 'square'");
  assert_row(&r, 2, 16, 2, 0, 0, 0, 0);
  assert_int_equal(r.index, 4);
  r = group_row(rep, "returned by 'halve'");
  assert_row(&r, 1, 8, 1, 0, 0, 0, 0);
  assert_int_equal(r.index, 5);
  r = group_row(rep, "total");
  assert_row(&r, 10, 2 * 300 * KIB + 200 + 24 + 16 + 8, 12, 1, 1, 1, 300 * KIB);
  assert_int_equal(r.index, 6);
  free(rep);

  /* One line per object: 10 of them, one on disk, all sealed. */
  rep = report(RAY_MEMORY_ALL);
  assert_int_equal(count_lines_with(rep, " SEALED "), 10);
  assert_int_equal(count_lines_with(rep, " disk "), 1);
  assert_int_equal(count_lines_with(rep, " i64 "), 6); /* a's and the results */
  char id[33];
  ray_ref_id(spilled, id);
  const char *line = strstr(rep, id);
  assert_non_null(line);
  assert_non_null(strstr(line, "disk"));
  assert_true(strstr(line, "ray_put at put_spilled") < strchr(line, '\n'));
  free(rep);

  ray_view_release(&vb);
  assert_int_equal(ray_unpin(b[1]), RAY_OK);
  ray_ref *all[] = {spilled, kept, a[0], a[0], a[0], a[1], a[2], b[0], b[1], sq[0], sq[1], ha};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ray_ref_release(all[i]);
  rep = report(0);
  assert_contains(rep, "rayc memory report: 0 live objects, 0 bytes (0 spilled to disk), from 0 "
                       "creators");
  r = group_row(rep, "total");
  assert_row(&r, 0, 0, 0, 0, 0, 0, 0);
  free(rep);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* The label of a put site is the function that called (and, with line
 * information, its file and line); each public call names itself. */
static void test_put_sites_are_named_after_the_calling_function(void **state) {
  (void)state;
  assert_int_equal(test_init(1, 0, 10000), 0);
  int64_t v = 7;
  ray_ref *p = NULL, *c = NULL, *o = NULL, *refs = NULL;
  int put_line = __LINE__ + 1;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &p), RAY_OK);
  void *data = NULL;
  assert_int_equal(ray_create(16, NULL, &data, &c), RAY_OK);
  static char owned[8];
  assert_int_equal(ray_put_owned(owned, sizeof owned, NULL, NULL, &o), RAY_OK);
  assert_int_equal(ray_put_refs(&p, 1, &refs), RAY_OK);
  /* A helper of the library's is charged to its caller, as itself. */
  ray_ref *pi = NULL, *pf = NULL;
  assert_int_equal(ray_put_i64(5, &pi), RAY_OK);
  assert_int_equal(ray_put_f64(0.5, &pf), RAY_OK);

  char *rep = report(0);
  const char *fn = "test_put_sites_are_named_after_the_calling_function";
  char want[256];
  const char *calls[] = {"ray_put",      "ray_create",  "ray_put_owned",
                         "ray_put_refs", "ray_put_i64", "ray_put_f64"};
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    snprintf(want, sizeof want, "%s at %s", calls[i], fn);
    row r = group_row(rep, want);
    assert_int_equal(r.objects, 1);
  }
  /* ray_put's object has its own ref and the refs object's. */
  snprintf(want, sizeof want, "ray_put at %s", fn);
  assert_int_equal(group_row(rep, want).refs, 2);
  /* The object being created is listed too, as CREATING. */
  free(rep);
  rep = report(RAY_MEMORY_ALL);
  assert_int_equal(count_lines_with(rep, " CREATING "), 1);
  if (have_addr2line()) {
    snprintf(want, sizeof want, "ray_put at %s (test_memory_report.c:%d)", fn, put_line);
    assert_contains(rep, want);
  } else {
    print_message("addr2line not installed: only the function name is checked\n");
  }
  free(rep);
  assert_int_equal(ray_seal(c), RAY_OK);
  ray_ref_release(refs);
  ray_ref_release(p);
  ray_ref_release(c);
  ray_ref_release(o);
  ray_ref_release(pi);
  ray_ref_release(pf);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* A failed task's result counts as an object of no bytes; a task result
 * not yet made as one too, PENDING. */
static ray_status fail_task(ray_ctx *ctx) {
  return ray_ctx_fail(ctx, "no");
}

static ray_status wait_gate_task(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v);
  if (s != RAY_OK) return s;
  int64_t x = 1;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

/* A ray_create object a task waits for: the cleanup seals it if a failed
 * check left it open, or ray_shutdown would wait for the task forever. */
static ray_ref *g_gate;

static void test_pending_and_failed_results_are_listed(void **state) {
  (void)state;
  assert_int_equal(test_init(2, 0, 10000), 0);
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = "doomed";
  ray_ref *failed = NULL, *pending = NULL, *gate = NULL;
  assert_int_equal(ray_submit(fail_task, NULL, 0, &o, &failed), RAY_OK);
  void *gd = NULL;
  assert_int_equal(ray_create(8, NULL, &gd, &gate), RAY_OK);
  g_gate = gate;
  ray_arg ga = ray_arg_ref(gate);
  o.name = "gated";
  assert_int_equal(ray_submit(wait_gate_task, &ga, 1, &o, &pending), RAY_OK);
  ray_view v;
  assert_int_equal(ray_get(failed, NULL, GET_TIMEOUT_MS, &v), RAY_ETASK);
  char *rep = report_settled(RAY_MEMORY_ALL, "returned by 'doomed'", 1);
  row r = group_row(rep, "returned by 'doomed'");
  assert_row(&r, 1, 0, 1, 0, 0, 0, 0);
  r = group_row(rep, "returned by 'gated'");
  assert_int_equal(r.objects, 1);
  assert_int_equal(r.bytes, 0);
  assert_int_equal(count_lines_with(rep, " FAILED "), 1);
  assert_int_equal(count_lines_with(rep, " PENDING "), 1);
  free(rep);
  assert_int_equal(ray_seal(gate), RAY_OK);
  g_gate = NULL;
  expect_i64(pending, 1);
  ray_ref_release(gate);
  ray_ref_release(failed);
  ray_ref_release(pending);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* ------------------------------------------------------------------------ */
/* Reports while others put, get and free                                   */
/* ------------------------------------------------------------------------ */

typedef struct churn {
  atomic_bool stop;
  atomic_long rounds;
  int seed;
} churn;

/* cmocka's checks may not run off the main thread: these abort instead. */
#define CHURN_OK(call)                                                                             \
  do {                                                                                             \
    ray_status s_ = (call);                                                                        \
    if (s_ != RAY_OK) {                                                                            \
      fprintf(stderr, "%s: %s: %s\n", #call, ray_status_name(s_), ray_last_error());               \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

static NOINLINE ray_ref *churn_put(size_t size, int seed) {
  char buf[2048];
  memset(buf, seed, sizeof buf);
  ray_ref *r = NULL;
  CHURN_OK(ray_put(buf, size, NULL, &r));
  return r;
}

static void *churn_main(void *arg) {
  churn *c = arg;
  ray_ref *keep[8] = {0};
  for (long i = 0; !atomic_load(&c->stop); i++) {
    size_t k = (size_t)i % 8;
    ray_ref_release(keep[k]);
    keep[k] = churn_put(i % 3 == 0 ? 8 : i % 3 == 1 ? 100 : 2000, c->seed);
    ray_ref *other = keep[(k + 3) % 8] ? keep[(k + 3) % 8] : keep[k];
    ray_view v;
    CHURN_OK(ray_get(other, NULL, GET_TIMEOUT_MS, &v));
    ray_view_release(&v);
    if (i % 16 == 0) {
      ray_ref *holder = NULL, *t = NULL;
      CHURN_OK(ray_put_refs(&keep[k], 1, &holder));
      int64_t x = i;
      ray_arg arg = ray_arg_value(&x, sizeof x, &ray_type_i64);
      ray_task_opts o = RAY_TASK_OPTS_INIT;
      o.name = "churn";
      CHURN_OK(ray_submit(square, &arg, 1, &o, &t));
      ray_ref_release(holder);
      CHURN_OK(ray_get(t, &ray_type_i64, GET_TIMEOUT_MS, &v));
      if (*(const int64_t *)v.data != x * x) abort();
      ray_view_release(&v);
      ray_ref_release(t);
    }
    if (i % 32 == 0) { /* a pin may find the object spilled: it reads it back */
      CHURN_OK(ray_pin(keep[k]));
      CHURN_OK(ray_unpin(keep[k]));
    }
    atomic_fetch_add(&c->rounds, 1);
  }
  for (int k = 0; k < 8; k++) ray_ref_release(keep[k]);
  return NULL;
}

static void test_report_while_others_put_get_and_free(void **state) {
  (void)state;
  /* A small limit: the spiller moves objects too while reports run. */
  assert_int_equal(test_init(2, 64 * KIB, 10000), 0);
  churn c[2] = {{.seed = 1}, {.seed = 2}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, churn_main, &c[i]), 0);
  /* Both threads are under way before the reports and go on during them. */
  WAIT_UNTIL(atomic_load(&c[0].rounds) > 10 && atomic_load(&c[1].rounds) > 10, "churn rounds");
  FILE *null = fopen("/dev/null", "w");
  assert_non_null(null);
#if defined(RT_TEST_SANITIZED)
  const int reports = 20;
#else
  const int reports = 200;
#endif
  for (int i = 0; i < reports; i++) {
    ray_status s = ray_memory_report(null, i % 2 ? RAY_MEMORY_ALL : 0);
    if (s != RAY_OK) fail_msg("ray_memory_report: %s: %s", ray_status_name(s), ray_last_error());
  }
  for (int i = 0; i < 2; i++) atomic_store(&c[i].stop, true);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  fclose(null);
  assert_int_equal(settled_objects(0), 0);
  char *rep = report(0);
  assert_contains(rep, "rayc memory report: 0 live objects");
  free(rep);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* ------------------------------------------------------------------------ */
/* Shutdown                                                                 */
/* ------------------------------------------------------------------------ */

/* Shuts down with stderr captured into buf. */
static ray_status shutdown_captured(char *buf, size_t cap) {
  capture c;
  capture_begin(&c);
  ray_status s = ray_shutdown();
  capture_end(&c, buf, cap);
  return s;
}

static NOINLINE ray_ref *leak_site(int64_t v) {
  ray_ref *r = NULL;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &r), RAY_OK);
  return r;
}

static void test_shutdown_warning_names_the_creators_of_leaks(void **state) {
  (void)state;
  assert_int_equal(test_init(2, 0, 10000), 0);
  (void)leak_site(1);
  (void)leak_site(2);
  ray_ref *l = submit_named("leaky", 2);
  expect_i64(l, 4);
  char name[32];
  for (int i = 1; i <= 5; i++) {
    snprintf(name, sizeof name, "leak-%d", i);
    expect_i64(submit_named(name, i), i * i);
  }
  assert_int_equal(settled_objects(8), 8);
  char err[4096];
  assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
  assert_contains(err, "rayc: ray_shutdown: 8 objects were still alive: 8 refs and 0 views never "
                       "released; they are freed now; made by:\n");
  /* The five with the most bytes (ties: more objects, then the older
   * creator), each on a line, then how many more. */
  const char *want[] = {"rayc:   2 objects, 16 bytes: ray_put at leak_site",
                        "rayc:   1 object, 8 bytes: returned by 'leaky'",
                        "rayc:   1 object, 8 bytes: returned by 'leak-1'",
                        "rayc:   1 object, 8 bytes: returned by 'leak-2'",
                        "rayc:   1 object, 8 bytes: returned by 'leak-3'",
                        "rayc:   and 2 more creators (RAY_MEMORY_REPORT=1 lists them all)\n"};
  const char *at = err;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const char *p = strstr(at, want[i]);
    if (!p) fail_msg("'%s' not found, in this order, in:\n%s", want[i], err);
    at = p + strlen(want[i]);
  }
  assert_null(strstr(err, "leak-4"));
}

static void test_shutdown_warning_without_memory_still_counts(void **state) {
  (void)state;
  assert_int_equal(test_init(1, 0, 10000), 0);
  (void)leak_site(3);
  char err[2048];
  rt_alloc_fail_at(1, false); /* every allocation from here fails */
  ray_status s = shutdown_captured(err, sizeof err);
  rt_alloc_fail_at(0, false);
  assert_int_equal(s, RAY_OK);
  assert_contains(err, "1 objects were still alive: 1 refs and 0 views never released");
  assert_contains(err, "rayc:   (their creators are not named: out of memory)\n");
}

/* ------------------------------------------------------------------------ */
/* RAY_MEMORY_REPORT and RAY_MEMORY_SIGNAL                                  */
/* ------------------------------------------------------------------------ */

static NOINLINE ray_ref *env_site(void) {
  int64_t v = 5;
  ray_ref *r = NULL;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &r), RAY_OK);
  return r;
}

static void test_env_report_prints_at_shutdown_before_freeing(void **state) {
  (void)state;
  const char *values[] = {"1", "all"};
  for (int i = 0; i < 2; i++) {
    setenv("RAY_MEMORY_REPORT", values[i], 1);
    int rc = test_init(1, 0, 10000);
    unsetenv("RAY_MEMORY_REPORT");
    assert_int_equal(rc, 0);
    ray_ref *r = env_site();
    char id[33];
    ray_ref_id(r, id);
    char err[8192];
    assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
    /* The report first, with the leaked object, then the warning. */
    const char *rep = strstr(err, "rayc memory report: 1 live objects, 8 bytes");
    assert_non_null(rep);
    const char *warn = strstr(err, "ray_shutdown: 1 objects were still alive");
    assert_non_null(warn);
    assert_true(rep < warn);
    const char *site = strstr(rep, "ray_put at env_site");
    assert_true(site && site < warn);
    /* "all": the object's own line too. */
    assert_int_equal(strstr(err, id) != NULL, i == 1);
  }
  /* 0 asks for nothing. */
  setenv("RAY_MEMORY_REPORT", "0", 1);
  int rc = test_init(1, 0, 10000);
  unsetenv("RAY_MEMORY_REPORT");
  assert_int_equal(rc, 0);
  char err[1024];
  assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
  assert_string_equal(err, "");
}

static atomic_int g_own_signals;
static void own_handler(int sig) {
  (void)sig;
  atomic_fetch_add(&g_own_signals, 1);
}

/* Threads of this process, from /proc. */
static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* Bytes of the file at fd from its start, as a string in buf. */
static void read_all(int fd, char *buf, size_t cap) {
  ssize_t n = pread(fd, buf, cap - 1, 0);
  buf[n > 0 ? n : 0] = '\0';
}

static NOINLINE ray_ref *signal_site(void) {
  int64_t v = 6;
  ray_ref *r = NULL;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &r), RAY_OK);
  return r;
}

static void test_signal_prints_the_report_and_shutdown_restores_the_handler(void **state) {
  (void)state;
  struct sigaction sa = {0}, before;
  sa.sa_handler = own_handler;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR2, &sa, &before), 0);
  int threads = thread_count();

  setenv("RAY_MEMORY_SIGNAL", "USR2", 1);
  int rc = test_init(1, 0, 10000);
  unsetenv("RAY_MEMORY_SIGNAL");
  assert_int_equal(rc, 0);
  ray_ref *r = signal_site();
  capture c;
  capture_begin(&c);
  char out[8192];
  assert_int_equal(raise(SIGUSR2), 0);
  /* The reporter thread writes it: wait for the total line. */
  WAIT_UNTIL((read_all(fileno(c.file), out, sizeof out), strstr(out, "  total\n") != NULL),
             "report on SIGUSR2");
  assert_contains(out, "rayc memory report: 1 live objects, 8 bytes");
  assert_contains(out, "ray_put at signal_site");
  assert_int_equal(atomic_load(&g_own_signals), 0); /* rayc had the signal */
  ray_ref_release(r);
  assert_int_equal(ray_shutdown(), RAY_OK);
  capture_end(&c, out, sizeof out);

  /* The program's handler is back, and the thread is gone. */
  assert_int_equal(raise(SIGUSR2), 0);
  assert_int_equal(atomic_load(&g_own_signals), 1);
  assert_int_equal(thread_count(), threads);
  struct sigaction now;
  assert_int_equal(sigaction(SIGUSR2, &before, &now), 0);
  assert_ptr_equal(now.sa_handler, own_handler);

  /* A number works as well as a name. */
  char num[16];
  snprintf(num, sizeof num, "%d", SIGUSR1);
  setenv("RAY_MEMORY_SIGNAL", num, 1);
  rc = test_init(1, 0, 10000);
  unsetenv("RAY_MEMORY_SIGNAL");
  assert_int_equal(rc, 0);
  capture_begin(&c);
  assert_int_equal(raise(SIGUSR1), 0);
  WAIT_UNTIL((read_all(fileno(c.file), out, sizeof out), strstr(out, "  total\n") != NULL),
             "report on SIGUSR1");
  assert_int_equal(ray_shutdown(), RAY_OK);
  capture_end(&c, out, sizeof out);
  assert_contains(out, "rayc memory report: 0 live objects");
}

/* ------------------------------------------------------------------------ */
/* Bad inputs and failures                                                  */
/* ------------------------------------------------------------------------ */

static void test_bad_arguments_and_not_running(void **state) {
  (void)state;
  assert_int_equal(ray_memory_report(stderr, 0), RAY_ESHUTDOWN);
  assert_string_equal(ray_last_error(),
                      "ray_memory_report: the runtime is not running (call ray_init first)");
  assert_int_equal(test_init(1, 0, 10000), 0);
  assert_int_equal(ray_memory_report(NULL, 0), RAY_EINVAL);
  assert_string_equal(ray_last_error(), "ray_memory_report: out is NULL");
  assert_int_equal(ray_memory_report(stderr, 6), RAY_EINVAL);
  assert_string_equal(ray_last_error(),
                      "ray_memory_report: unknown flags 0x6 (RAY_MEMORY_ALL is 0x1)");
  /* A write that fails: /dev/full takes nothing. */
  FILE *full = fopen("/dev/full", "w");
  assert_non_null(full);
  assert_int_equal(ray_memory_report(full, RAY_MEMORY_ALL), RAY_EIO);
  assert_string_equal(ray_last_error(),
                      "ray_memory_report: cannot write the report: No space left on device");
  fclose(full);
  /* An error flag left on the stream by an earlier failure is cleared. */
  char path[] = "/tmp/memreport-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *w = fdopen(fd, "w");
  assert_non_null(w);
  assert_int_equal(fgetc(w), EOF); /* a read of a write-only stream: error flag */
  assert_true(ferror(w));
  assert_int_equal(ray_memory_report(w, 0), RAY_OK);
  fclose(w);
  unlink(path);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

static void test_malformed_environment_fails_init(void **state) {
  (void)state;
  static const struct {
    const char *var, *value, *msg;
  } cases[] = {
      {"RAY_MEMORY_REPORT", "yes", "ray_init: RAY_MEMORY_REPORT='yes' is not 0, 1 or all"},
      {"RAY_MEMORY_REPORT", "", "ray_init: RAY_MEMORY_REPORT='' is not 0, 1 or all"},
      {"RAY_MEMORY_SIGNAL", "BOGUS", "ray_init: RAY_MEMORY_SIGNAL='BOGUS' is not a signal"},
      {"RAY_MEMORY_SIGNAL", "0", "ray_init: RAY_MEMORY_SIGNAL='0' is not a signal"},
      {"RAY_MEMORY_SIGNAL", "", "ray_init: RAY_MEMORY_SIGNAL='' is not a signal"},
      {"RAY_MEMORY_SIGNAL", "9",
       "ray_init: RAY_MEMORY_SIGNAL: cannot handle signal 9: Invalid "
       "argument"},
  };
  int threads = thread_count();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    setenv(cases[i].var, cases[i].value, 1);
    ray_status s = ray_init(NULL);
    unsetenv(cases[i].var);
    if (s != RAY_EINVAL) fail_msg("%s='%s': %s", cases[i].var, cases[i].value, ray_status_name(s));
    if (strncmp(ray_last_error(), cases[i].msg, strlen(cases[i].msg)) != 0)
      fail_msg("%s='%s': '%s'", cases[i].var, cases[i].value, ray_last_error());
    assert_false(ray_is_initialized());
    assert_int_equal(thread_count(), threads); /* no reporter thread left behind */
  }
  /* SIGUSR2 names work with or without SIG. */
  setenv("RAY_MEMORY_SIGNAL", "SIGUSR2", 1);
  ray_status s = ray_init(NULL);
  unsetenv("RAY_MEMORY_SIGNAL");
  assert_int_equal(s, RAY_OK);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* Every allocation of ray_init with a signal, made to fail in turn: each
 * failure is RAY_ENOMEM, or RAY_EIO for the reporter thread, and leaves the
 * signal's handler as it was and no thread behind. */
static void test_init_with_signal_under_allocation_failures(void **state) {
  (void)state;
  struct sigaction dfl = {0}, now;
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGUSR2, &dfl, NULL);
  int threads = thread_count();
  bool thread_failed = false;
  setenv("RAY_MEMORY_SIGNAL", "USR2", 1);
  for (long n = 1;; n++) {
    rt_alloc_fail_at(n, true);
    ray_status s = ray_init(NULL);
    long failed = rt_alloc_failed();
    rt_alloc_fail_at(0, false);
    if (s == RAY_OK) {
      assert_int_equal(ray_shutdown(), RAY_OK);
      if (failed == 0) break;
      continue; /* an allocation whose failure init works around */
    }
    if (s == RAY_EIO) {
      assert_string_equal(ray_last_error(),
                          "ray_init: cannot start the memory report thread: Resource temporarily "
                          "unavailable");
      thread_failed = true;
    } else if (s != RAY_ENOMEM) {
      fail_msg("N = %ld: %s: %s", n, ray_status_name(s), ray_last_error());
    }
    assert_false(ray_is_initialized());
    assert_int_equal(thread_count(), threads);
    assert_int_equal(sigaction(SIGUSR2, NULL, &now), 0);
    assert_ptr_equal(now.sa_handler, SIG_DFL);
  }
  unsetenv("RAY_MEMORY_SIGNAL");
  assert_true(thread_failed);
}

/* No file descriptor left for the pipe: RAY_EIO, in a child process (the
 * limit would hurt the rest of this one). */
static void test_init_with_signal_and_no_descriptors_fails_eio(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    int lowest = dup(0); /* the lowest free descriptor */
    close(lowest);
    struct rlimit rl = {(rlim_t)lowest, (rlim_t)lowest};
    if (lowest < 0 || setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(2);
    setenv("RAY_MEMORY_SIGNAL", "USR2", 1);
    ray_status s = ray_init(NULL);
    char msg[256];
    snprintf(msg, sizeof msg, "%s %s", ray_status_name(s), ray_last_error());
    ssize_t w = write(fds[1], msg, strlen(msg));
    (void)w;
    _exit(0);
  }
  close(fds[1]);
  char msg[256];
  ssize_t n = read(fds[0], msg, sizeof msg - 1);
  close(fds[0]);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_true(n > 0);
  msg[n] = '\0';
  assert_string_equal(
      msg, "RAY_EIO ray_init: RAY_MEMORY_SIGNAL: cannot make a pipe: Too many open files");
}

static void test_report_without_memory_is_enomem(void **state) {
  (void)state;
  assert_int_equal(test_init(1, 0, 10000), 0);
  ray_ref *r = leak_site(9);
  FILE *null = fopen("/dev/null", "w");
  assert_non_null(null);
  /* The report's first allocation is its table of groups. Injection counts
   * every thread's allocations: a worker that allocates meanwhile (while it
   * starts) takes the failure instead, and the report succeeds; try again. */
  ray_status s = RAY_OK;
  for (int tries = 0; tries < 1000 && s == RAY_OK; tries++) {
    rt_alloc_fail_at(1, true);
    s = ray_memory_report(null, 0);
    rt_alloc_fail_at(0, false);
  }
  assert_int_equal(s, RAY_ENOMEM);
  assert_string_equal(ray_last_error(), "ray_memory_report: out of memory for the creator groups");
  fclose(null);
  ray_ref_release(r);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

static NOINLINE ray_ref *oom_site(void) {
  int64_t v = 10;
  ray_ref *r = NULL;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &r), RAY_OK);
  return r;
}

static NOINLINE ray_ref *unnamed_site(void) {
  int64_t v = 11;
  ray_ref *r = NULL;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &r), RAY_OK);
  return r;
}

/* No memory to record a creator: the put succeeds all the same, and its
 * object is listed under "(unknown creator ...)". No memory for a site's
 * label: the report says so and still succeeds. */
static void test_creator_allocation_failures_never_fail_a_put(void **state) {
  (void)state;
  assert_int_equal(test_init(1, 0, 10000), 0);
  ray_ref *warm = leak_site(1); /* slots, credit: nothing left to allocate in a put */
  /* Injection counts every thread's allocations: let the worker make its
   * own first (it does as it runs its first task), so that the failure
   * below is the put's. */
  ray_ref *t = submit_named("warm-up", 1);
  expect_i64(t, 1);
  ray_ref_release(t);
  rt_alloc_fail_at(1, true);
  ray_ref *r = oom_site();
  long failed = rt_alloc_failed();
  rt_alloc_fail_at(0, false);
  assert_int_equal(failed, 1);
  char *rep = report(0);
  row x = group_row(rep, "(unknown creator: no memory to record it)");
  assert_int_equal(x.objects, 1);
  assert_null(strstr(rep, "oom_site"));
  free(rep);
  ray_ref *r2 = oom_site(); /* recorded now */
  rep = report(0);
  assert_int_equal(group_row(rep, "ray_put at oom_site").objects, 1);
  free(rep);

  /* The label: the report's first allocation is its groups, and among the
   * next ones is the label of a site never named before. */
  ray_ref *u = unnamed_site();
  bool fallback = false;
  for (long n = 2; n < 64; n++) {
    FILE *f = tmpfile();
    assert_non_null(f);
    rt_alloc_fail_at(n, true);
    ray_status s = ray_memory_report(f, 0);
    failed = rt_alloc_failed();
    rt_alloc_fail_at(0, false);
    assert_int_equal(s, RAY_OK);
    char buf[4096];
    rewind(f);
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    buf[len] = '\0';
    fclose(f);
    if (strstr(buf, "(a put site: no memory to name it)")) fallback = true;
    if (failed == 0) {
      assert_non_null(strstr(buf, "ray_put at unnamed_site"));
      break;
    }
  }
  assert_true(fallback);
  ray_ref_release(u);
  ray_ref_release(r2);
  ray_ref_release(r);
  ray_ref_release(warm);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

static NOINLINE ray_status chunk_site(int64_t v, ray_ref **out) {
  return ray_put(&v, sizeof v, &ray_type_i64, out);
}

/* A new chunk of entries needs its side chunk of creator ids: when that
 * cannot be made, the put fails RAY_ENOMEM as when the chunk itself
 * cannot, leaves nothing behind, and the next put works. */
static void test_put_fails_cleanly_when_the_creator_chunk_cannot_be_made(void **state) {
  (void)state;
  assert_int_equal(test_init(1, 0, 10000), 0);
  rt_store *st = rt_store_current();
  ray_ref **refs = calloc(2 * RT_CHUNK_SLOTS, sizeof *refs);
  assert_non_null(refs);
  /* The site is recorded by the first put, which is not injected: the
   * puts below allocate only for the table. */
  assert_int_equal(chunk_site(0, &refs[0]), RAY_OK);
  size_t n = 1;
  bool side_failed = false;
  while (!atomic_load(&st->slots.creators[1])) {
    assert_true(n < 2 * RT_CHUNK_SLOTS);
    /* Each allocation of this put fails in turn until it succeeds. */
    for (long k = 1;; k++) {
      uint64_t before = stats().objects;
      rt_alloc_fail_at(k, true);
      ray_status s = chunk_site((int64_t)n, &refs[n]);
      long failed = rt_alloc_failed();
      rt_alloc_fail_at(0, false);
      if (s == RAY_OK) {
        n++;
        break;
      }
      assert_int_equal(s, RAY_ENOMEM);
      assert_int_equal(failed, 1);
      assert_string_equal(ray_last_error(), "ray_put: no memory for another object entry");
      assert_int_equal(stats().objects, before);
      /* The entry chunk was made but not its creator chunk. */
      if (atomic_load(&st->slots.tab.chunks[1]) && !atomic_load(&st->slots.creators[1]))
        side_failed = true;
    }
  }
  assert_true(side_failed);
  char *rep = report(0);
  char line[64];
  snprintf(line, sizeof line, "rayc memory report: %zu live objects", n);
  assert_contains(rep, line);
  assert_int_equal(group_row(rep, "ray_put at chunk_site").objects, n);
  free(rep);
  for (size_t i = 0; i < n; i++) ray_ref_release(refs[i]);
  free(refs);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* Past RT_CREATOR_MAX distinct creators, new ones share one group. In a
 * child process: the table is the process's. */
static void test_creators_past_the_table_share_one_group(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    int code = 0;
    char name[32];
    rt_creator_id last = 0;
    for (unsigned i = 0; rt_creator_count() < RT_CREATOR_MAX; i++) {
      snprintf(name, sizeof name, "filler-%u", i);
      rt_creator_id id = rt_creator_task(name);
      if (id <= last || rt_creator_task(name) != id) code = 3; /* new, then the same */
      last = id;
    }
    if (rt_creator_task("one too many") != RT_CREATOR_OTHER) code = 4;
    if (rt_creator_task("filler-7") == RT_CREATOR_OTHER) code = 5; /* old ones keep theirs */
    if (test_init(1, 0, 10000) != 0) _exit(6);
    ray_ref *r = submit_named("overflowing", 3);
    ray_view v;
    if (ray_get(r, NULL, GET_TIMEOUT_MS, &v) != RAY_OK) _exit(7);
    ray_view_release(&v);
    while (stats().objects != 1) usleep(1000);
    FILE *f = fdopen(fds[1], "w");
    if (!f || ray_memory_report(f, 0) != RAY_OK) _exit(8);
    fclose(f);
    ray_ref_release(r);
    ray_shutdown();
    _exit(code);
  }
  close(fds[1]);
  char out[4096];
  size_t len = 0;
  ssize_t k;
  while (len < sizeof out - 1 && (k = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
    len += (size_t)k;
  out[len] = '\0';
  close(fds[0]);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_int_equal(group_row(out, "(other creators: more than the table holds)").objects, 1);
  assert_null(strstr(out, "overflowing"));
}

/* After each test, pass or fail: injection off, the variables unset, the
 * runtime down, so that one failure does not fail the tests after it. */
static int cleanup(void **state) {
  (void)state;
  rt_alloc_fail_at(0, false);
  unsetenv("RAY_MEMORY_REPORT");
  unsetenv("RAY_MEMORY_SIGNAL");
  if (g_gate) (void)ray_seal(g_gate);
  g_gate = NULL;
  return ray_is_initialized() && ray_shutdown() != RAY_OK ? -1 : 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_groups_and_counts_are_exact_for_a_known_mix, cleanup),
      cmocka_unit_test_teardown(test_put_sites_are_named_after_the_calling_function, cleanup),
      cmocka_unit_test_teardown(test_pending_and_failed_results_are_listed, cleanup),
      cmocka_unit_test_teardown(test_report_while_others_put_get_and_free, cleanup),
      cmocka_unit_test_teardown(test_shutdown_warning_names_the_creators_of_leaks, cleanup),
      cmocka_unit_test_teardown(test_shutdown_warning_without_memory_still_counts, cleanup),
      cmocka_unit_test_teardown(test_env_report_prints_at_shutdown_before_freeing, cleanup),
      cmocka_unit_test_teardown(test_signal_prints_the_report_and_shutdown_restores_the_handler,
                                cleanup),
      cmocka_unit_test_teardown(test_bad_arguments_and_not_running, cleanup),
      cmocka_unit_test_teardown(test_malformed_environment_fails_init, cleanup),
      cmocka_unit_test_teardown(test_init_with_signal_under_allocation_failures, cleanup),
      cmocka_unit_test_teardown(test_init_with_signal_and_no_descriptors_fails_eio, cleanup),
      cmocka_unit_test_teardown(test_report_without_memory_is_enomem, cleanup),
      cmocka_unit_test_teardown(test_creator_allocation_failures_never_fail_a_put, cleanup),
      cmocka_unit_test_teardown(test_put_fails_cleanly_when_the_creator_chunk_cannot_be_made,
                                cleanup),
      cmocka_unit_test_teardown(test_creators_past_the_table_share_one_group, cleanup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
