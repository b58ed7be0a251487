/*
 * test_oom.c - allocation-failure injection (SQLite's habit): every
 * allocation in src/ goes through core/alloc.h, which a test can make fail
 * on the Nth call. Each test walks N = 1, 2, ... over every allocation of a
 * workload, in two modes (only the Nth fails; the Nth and every later one
 * fail), until a run completes with no injected failure.
 *
 * The rule each step checks:
 *  - while injection is armed, every public call returns RAY_OK or
 *    RAY_ENOMEM, and RAY_ENOMEM comes with a ray_last_error() that names
 *    memory ("memory" or "ENOMEM");
 *  - a task's or call's result may instead fail with the status its own
 *    failure gives (RAY_ETASK, RAY_EACTOR) when its message names memory: the
 *    task's own allocation failed ("returned RAY_ENOMEM (...)"), or an
 *    argument's did ("not run: argument 0 comes from task ..., which failed:
 *    returned RAY_ENOMEM ..."), or the message itself could not be allocated
 *    (RAY_ENOMEM, "no memory left for its error message");
 *  - deliberate failures (a failing task, a crashing actor method) still
 *    fail with their own message, or with one that names memory;
 *  - after the step, with injection off: everything that succeeded reads
 *    back correct (objects, task results, the actor's state as a model of
 *    which calls took effect), every handle is released, the store is empty
 *    (objects 0, bytes_in_memory 0), every actor has ended, every task is
 *    counted as ended, ray_shutdown returns RAY_OK, and under ASan a leak
 *    check after each step finds nothing.
 *
 * Counting is global (every thread's allocations, workers included), so
 * the number of allocations of a run varies a little with timing; the walk
 * ends at the first N past the run's last allocation. Every N is walked (no
 * stride). While armed, stderr is sent to /dev/null (actor sends and
 * timeline drops warn there); RAY_OOM_VERBOSE=1 keeps it.
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

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "ray.h"
#include "test_util.h"

#if defined(RT_TEST_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

#if defined(RT_TEST_SANITIZED)
#define STEP_WATCHDOG_S 120
#else
#define STEP_WATCHDOG_S 30
#endif
#define MAX_STEPS 20000 /* a walk longer than this is a bug in the walk */

/* ------------------------------------------------------------------------ */
/* The harness                                                              */
/* ------------------------------------------------------------------------ */

static long g_step;
static const char *g_mode = "";
static const char *g_work = "";
static int g_saved_err = -1;

/* stderr to /dev/null while armed (unless RAY_OOM_VERBOSE is set). */
static void quiet_begin(void) {
  const char *v = getenv("RAY_OOM_VERBOSE");
  if ((v && *v && *v != '0') || g_saved_err >= 0) return;
  fflush(stderr);
  g_saved_err = dup(2);
  int fd = open("/dev/null", O_WRONLY);
  if (fd >= 0) {
    dup2(fd, 2);
    close(fd);
  }
}

static void quiet_end(void) {
  if (g_saved_err < 0) return;
  fflush(stderr);
  dup2(g_saved_err, 2);
  close(g_saved_err);
  g_saved_err = -1;
}

/* A step that hangs is a bug: say which, then abort (core dump, backtrace). */
static void watchdog(int sig) {
  (void)sig;
  char line[256];
  int n = snprintf(line, sizeof line, "test_oom: %s, %s, N = %ld: step hung for %d s\n", g_work,
                   g_mode, g_step, STEP_WATCHDOG_S);
  if (write(g_saved_err >= 0 ? g_saved_err : 2, line, (size_t)n) < 0) _exit(3);
  abort();
}

#define OOM_FAIL(...)                                                                              \
  do {                                                                                             \
    rt_alloc_fail_at(0, false);                                                                    \
    quiet_end();                                                                                   \
    fail_msg(__VA_ARGS__);                                                                         \
  } while (0)

static bool names_memory(const char *msg) {
  return strstr(msg, "memory") || strstr(msg, "ENOMEM");
}

/* A public call made while allocations may fail: RAY_OK, or RAY_ENOMEM that
 * says so. Evaluates to the status. */
#define OOM_CALL(call) oom_call(#call, __LINE__, (call))
static ray_status oom_call(const char *what, int line, ray_status s) {
  if (s == RAY_OK) return s;
  if (s == RAY_ENOMEM && names_memory(ray_last_error())) return s;
  OOM_FAIL("%s, %s, N = %ld, line %d: %s: %s: \"%s\"", g_work, g_mode, g_step, line, what,
           ray_status_name(s), ray_last_error());
  return s;
}

/* The result of a task or call that failed: explained by an allocation
 * failure (see the top of the file)? */
static bool failed_for_memory(ray_status s) {
  return (s == RAY_ENOMEM || s == RAY_ETASK || s == RAY_EACTOR) && names_memory(ray_last_error());
}

/* Reads the i64 of a task's or call's result, waiting for it. RAY_OK and
 * *out set; or a failure explained by memory; or, if `own` is not NULL, a
 * failure with status own_status whose message contains own. Anything else
 * fails the test. */
static ray_status result_i64(ray_ref *r, const char *what, int64_t *out, ray_status own_status,
                             const char *own) {
  ray_view v;
  ray_status s = ray_get(r, &ray_type_i64, -1, &v);
  if (s == RAY_OK) {
    if (v.size != sizeof(int64_t))
      OOM_FAIL("%s, %s, N = %ld: %s: %zu bytes", g_work, g_mode, g_step, what, v.size);
    *out = *(const int64_t *)v.data;
    ray_view_release(&v);
    return s;
  }
  if (failed_for_memory(s)) return s;
  if (own && s == own_status && strstr(ray_last_error(), own)) return s;
  OOM_FAIL("%s, %s, N = %ld: result of %s: %s: \"%s\"", g_work, g_mode, g_step, what,
           ray_status_name(s), ray_last_error());
  return s;
}

static void expect_i64(ray_ref *r, const char *what, int64_t want) {
  int64_t got;
  if (result_i64(r, what, &got, RAY_OK, NULL) == RAY_OK && got != want)
    OOM_FAIL("%s, %s, N = %ld: %s = %lld, expected %lld", g_work, g_mode, g_step, what,
             (long long)got, (long long)want);
}

/* Polls (bounded) until the stats settle to an empty runtime. */
static void expect_empty(void) {
  ray_stats s = stats();
  for (int i = 0; i < 10000; i++) {
    bool tasks_done = s.tasks_submitted == s.tasks_finished + s.tasks_failed + s.tasks_cancelled;
    if (s.objects == 0 && s.bytes_in_memory == 0 && s.actors_alive == 0 && tasks_done) return;
    usleep(500);
    s = stats();
  }
  fail_msg("%s, %s, N = %ld: not empty after the step: %llu objects, %zu bytes in memory, %llu "
           "actors alive, tasks %llu submitted, %llu finished, %llu failed, %llu cancelled",
           g_work, g_mode, g_step, (unsigned long long)s.objects, s.bytes_in_memory,
           (unsigned long long)s.actors_alive, (unsigned long long)s.tasks_submitted,
           (unsigned long long)s.tasks_finished, (unsigned long long)s.tasks_failed,
           (unsigned long long)s.tasks_cancelled);
}

static void leak_check(void) {
#if defined(RT_TEST_ASAN)
  if (__lsan_do_recoverable_leak_check())
    fail_msg("%s, %s, N = %ld: leak (see the report above)", g_work, g_mode, g_step);
#endif
}

typedef struct workload {
  const char *name;
  void (*run)(void);   /* armed: every call may see allocations fail */
  void (*check)(void); /* disarmed: verify what succeeded, release everything */
  bool timeline;       /* ray_init with a timeline path */
} workload;

static char g_timeline_path[64];

static ray_status init_runtime(bool timeline) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 2;
  cfg.object_store_memory = (size_t)256 << 20;
  cfg.put_timeout_ms = RAY_PUT_NO_WAIT;
  if (timeline) {
    snprintf(g_timeline_path, sizeof g_timeline_path, "/tmp/rayc-oom-%d.json", (int)getpid());
    cfg.timeline_path = g_timeline_path;
  }
  return ray_init(&cfg);
}

typedef struct walk_result {
  long steps;       /* walk steps taken */
  long allocations; /* allocations of the last (undisturbed) run */
  double seconds;   /* wall time of the walk */
} walk_result;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Walks N over the workload's allocations in one mode; see the top. */
static walk_result walk(const workload *w, bool once) {
  walk_result res = {0, 0, 0};
  double t0 = now_s();
  g_work = w->name;
  g_mode = once ? "only the Nth allocation fails" : "the Nth and later allocations fail";
  signal(SIGALRM, watchdog);
  for (long n = 1;; n++) {
    if (n > MAX_STEPS) fail_msg("%s, %s: more than %d steps", g_work, g_mode, MAX_STEPS);
    g_step = n;
    alarm(STEP_WATCHDOG_S);
    CHECK_OK(init_runtime(w->timeline));
    quiet_begin();
    rt_alloc_fail_at(n, once);
    w->run();
    rt_alloc_fail_at(0, false); /* off; the counts stay */
    long failed = rt_alloc_failed(), count = rt_alloc_count();
    quiet_end();
    w->check();
    expect_empty();
    ray_status s = ray_shutdown();
    if (s != RAY_OK)
      fail_msg("%s, %s, N = %ld: ray_shutdown: %s: %s", g_work, g_mode, n, ray_status_name(s),
               ray_last_error());
    alarm(0);
    leak_check();
    res.steps = n;
    if (failed == 0) {
      res.allocations = count;
      break;
    }
  }
  if (w->timeline) unlink(g_timeline_path);
  res.seconds = now_s() - t0;
  return res;
}

/* Which allocation a step hits depends a little on timing (workers
 * allocate too), so each walk runs ROUNDS times. */
#if defined(RT_TEST_SANITIZED)
#define ROUNDS 2
#else
#define ROUNDS 5
#endif

static void walk_both(const workload *w) {
  for (int round = 0; round < ROUNDS; round++) {
    walk_result a = walk(w, true), b = walk(w, false);
    printf("[ oom      ] %-8s %4ld allocations; walk: %ld + %ld steps in %.2f + %.2f s\n", w->name,
           a.allocations, a.steps, b.steps, a.seconds, b.seconds);
  }
  fflush(stdout);
}

/* A teardown for a test that failed halfway: injection off, runtime down. */
static int teardown(void **state) {
  (void)state;
  rt_alloc_fail_at(0, false);
  quiet_end();
  alarm(0);
  (void)ray_shutdown();
  return 0;
}

/* ------------------------------------------------------------------------ */
/* ray_init / ray_shutdown                                                  */
/* ------------------------------------------------------------------------ */

static void test_init_shutdown(void **state) {
  (void)state;
  double t0 = now_s();
  long steps[2] = {0, 0}, allocations = 0;
  g_work = "init";
  for (int mode = 0; mode < 2; mode++) {
    bool once = mode == 0;
    g_mode = once ? "only the Nth allocation fails" : "the Nth and later allocations fail";
    for (long n = 1;; n++) {
      if (n > MAX_STEPS) fail_msg("init: more than %d steps", MAX_STEPS);
      g_step = n;
      alarm(STEP_WATCHDOG_S);
      rt_alloc_fail_at(n, once);
      ray_status s = init_runtime(true);
      ray_status d = s == RAY_OK ? ray_shutdown() : RAY_OK;
      rt_alloc_fail_at(0, false);
      long failed = rt_alloc_failed(), count = rt_alloc_count();
      if (s != RAY_OK && !(s == RAY_ENOMEM && names_memory(ray_last_error())))
        fail_msg("init, %s, N = %ld: ray_init: %s: %s", g_mode, n, ray_status_name(s),
                 ray_last_error());
      if (s != RAY_OK && ray_is_initialized())
        fail_msg("init, %s, N = %ld: ray_init failed but the runtime runs", g_mode, n);
      /* Writing the timeline takes memory (its snapshot): without it,
       * ray_shutdown says so and shuts down all the same. */
      if (d != RAY_OK && !(d == RAY_ENOMEM && names_memory(ray_last_error()) &&
                           strstr(ray_last_error(), "timeline") && !ray_is_initialized()))
        fail_msg("init, %s, N = %ld: ray_shutdown: %s: %s", g_mode, n, ray_status_name(d),
                 ray_last_error());
      /* After a refused init, a later one works. */
      CHECK_OK(init_runtime(false));
      CHECK_OK(ray_shutdown());
      alarm(0);
      leak_check();
      steps[mode] = n;
      if (failed == 0) {
        allocations = count;
        break;
      }
    }
  }
  unlink(g_timeline_path);
  printf("[ oom      ] %-8s %4ld allocations; walk: %ld + %ld steps in %.2f s\n", "init",
         allocations, steps[0], steps[1], now_s() - t0);
  fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Puts, creates, refs objects, gets, views, waits                          */
/* ------------------------------------------------------------------------ */

enum { P_SMALL, P_MEDIUM, P_LARGE, P_OWNED, P_CREATED, P_REFS2, P_REFS40, P_N };

#define MEDIUM_BYTES 4096
#define LARGE_BYTES ((size_t)1 << 20) /* pooled, page-mapped */
#define OWNED_BYTES 300
#define CREATED_BYTES 2000

static unsigned char g_large[LARGE_BYTES];

static struct { ray_ref *ref[P_N]; } P;

static unsigned char pattern(size_t i, int k) {
  return (unsigned char)((i * 31 + (size_t)k * 7) % 251);
}

static void fill(unsigned char *b, size_t n, int k) {
  for (size_t i = 0; i < n; i++) b[i] = pattern(i, k);
}

static bool holds_pattern(const void *data, size_t n, int k) {
  const unsigned char *b = data;
  for (size_t i = 0; i < n; i++)
    if (b[i] != pattern(i, k)) return false;
  return true;
}

/* The contents object i must have, whenever a get of it succeeds. */
static void check_view(int i, const ray_view *v) {
  bool ok = false;
  switch (i) {
  case P_SMALL:
    ok = v->size == 8 && *(const int64_t *)v->data == 42 && v->type == &ray_type_i64;
    break;
  case P_MEDIUM:
    ok = v->size == MEDIUM_BYTES && holds_pattern(v->data, v->size, P_MEDIUM);
    break;
  case P_LARGE:
    ok = v->size == LARGE_BYTES && holds_pattern(v->data, v->size, P_LARGE);
    break;
  case P_OWNED:
    ok = v->size == OWNED_BYTES && holds_pattern(v->data, v->size, P_OWNED);
    break;
  case P_CREATED:
    ok = v->size == CREATED_BYTES && holds_pattern(v->data, v->size, P_CREATED);
    break;
  case P_REFS2: {
    ray_ref *const *r = v->data;
    ok = v->size == 2 * sizeof(ray_ref *) && r[0] == P.ref[P_SMALL] && r[1] == P.ref[P_MEDIUM];
    break;
  }
  case P_REFS40: {
    ray_ref *const *r = v->data;
    ok = v->size == 40 * sizeof(ray_ref *);
    for (int k = 0; ok && k < 40; k++) ok = r[k] == P.ref[k % 2 ? P_SMALL : P_LARGE];
    break;
  }
  }
  if (!ok) OOM_FAIL("puts, %s, N = %ld: object %d reads back wrong", g_mode, g_step, i);
}

static void run_puts(void) {
  memset(&P, 0, sizeof P);
  int64_t v = 42;
  OOM_CALL(ray_put(&v, sizeof v, &ray_type_i64, &P.ref[P_SMALL]));
  unsigned char medium[MEDIUM_BYTES];
  fill(medium, sizeof medium, P_MEDIUM);
  OOM_CALL(ray_put(medium, sizeof medium, NULL, &P.ref[P_MEDIUM]));
  OOM_CALL(ray_put(g_large, LARGE_BYTES, NULL, &P.ref[P_LARGE]));
  unsigned char *own = malloc(OWNED_BYTES); /* the test's own memory, not injected */
  assert_non_null(own);
  fill(own, OWNED_BYTES, P_OWNED);
  if (OOM_CALL(ray_put_owned(own, OWNED_BYTES, NULL, free, &P.ref[P_OWNED])) != RAY_OK) free(own);
  void *data;
  if (OOM_CALL(ray_create(CREATED_BYTES, NULL, &data, &P.ref[P_CREATED])) == RAY_OK) {
    fill(data, CREATED_BYTES, P_CREATED);
    CHECK_OK(ray_seal(P.ref[P_CREATED]));
  }
  if (P.ref[P_SMALL] && P.ref[P_MEDIUM]) {
    ray_ref *two[2] = {P.ref[P_SMALL], P.ref[P_MEDIUM]};
    OOM_CALL(ray_put_refs(two, 2, &P.ref[P_REFS2])); /* inline */
  }
  if (P.ref[P_SMALL] && P.ref[P_LARGE]) {
    ray_ref *forty[40];
    for (int k = 0; k < 40; k++) forty[k] = P.ref[k % 2 ? P_SMALL : P_LARGE];
    OOM_CALL(ray_put_refs(forty, 40, &P.ref[P_REFS40])); /* on the heap */
  }
  /* Gets and views, twice each (two views of one object at once). */
  for (int i = 0; i < P_N; i++) {
    if (!P.ref[i]) continue;
    ray_view a, b;
    if (OOM_CALL(ray_get(P.ref[i], i == P_SMALL ? &ray_type_i64 : NULL, -1, &a)) != RAY_OK)
      continue;
    check_view(i, &a);
    if (OOM_CALL(ray_get(P.ref[i], NULL, 0, &b)) == RAY_OK) {
      check_view(i, &b);
      ray_view_release(&b);
    }
    ray_view_release(&a);
  }
  /* A borrowed ref out of a refs object, retained past the view. */
  if (P.ref[P_REFS2]) {
    ray_view v;
    if (OOM_CALL(ray_get(P.ref[P_REFS2], &ray_type_refs, -1, &v)) == RAY_OK) {
      ray_ref *inner = ray_ref_retain(((ray_ref *const *)v.data)[1]);
      ray_view_release(&v);
      ray_view w;
      if (OOM_CALL(ray_get(inner, NULL, -1, &w)) == RAY_OK) {
        check_view(P_MEDIUM, &w);
        ray_view_release(&w);
      }
      ray_ref_release(inner);
    }
  }
  ray_ref *all[P_N];
  size_t n = 0;
  for (int i = 0; i < P_N; i++)
    if (P.ref[i]) all[n++] = P.ref[i];
  bool ready[P_N];
  if (OOM_CALL(ray_wait(all, n, n, -1, ready)) == RAY_OK)
    for (size_t i = 0; i < n; i++) assert_true(ready[i]);
  /* A wait that registers waiters: on an object not sealed yet. */
  ray_ref *open_ref;
  if (OOM_CALL(ray_create(16, NULL, &data, &open_ref)) == RAY_OK) {
    bool r;
    ray_status s = ray_wait(&open_ref, 1, 1, 1, &r);
    if (s != RAY_ETIMEOUT) OOM_CALL(s);
    CHECK_OK(ray_seal(open_ref));
    ray_ref_release(open_ref);
  }
  if (P.ref[P_LARGE]) {
    CHECK_OK(ray_pin(P.ref[P_LARGE]));
    CHECK_OK(ray_unpin(P.ref[P_LARGE]));
  }
}

static void check_puts(void) {
  for (int i = 0; i < P_N; i++) {
    if (!P.ref[i]) continue;
    ray_view v;
    CHECK_OK(ray_get(P.ref[i], NULL, -1, &v));
    check_view(i, &v);
    ray_view_release(&v);
  }
  for (int i = P_N; i-- > 0;) ray_ref_release(P.ref[i]);
}

static void test_puts(void **state) {
  (void)state;
  fill(g_large, LARGE_BYTES, P_LARGE);
  static const workload w = {"puts", run_puts, check_puts, false};
  walk_both(&w);
}

/* ------------------------------------------------------------------------ */
/* Tasks with dependencies                                                  */
/* ------------------------------------------------------------------------ */

static ray_status arg_i64(ray_ctx *ctx, size_t i, int64_t *x) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, i, &ray_type_i64, &v);
  if (s == RAY_OK) *x = *(const int64_t *)v.data;
  return s;
}

static ray_status ret_i64(ray_ctx *ctx, size_t i, int64_t x) {
  return ray_ctx_return(ctx, i, &x, sizeof x, &ray_type_i64);
}

/* (x + 1, 2x) */
static ray_status two_out(ray_ctx *ctx) {
  int64_t x;
  ray_status s = arg_i64(ctx, 0, &x);
  if (s == RAY_OK) s = ret_i64(ctx, 0, x + 1);
  if (s == RAY_OK) s = ret_i64(ctx, 1, 2 * x);
  return s;
}

/* Return i is i * x, for four returns (more than fit in the record). */
static ray_status four_out(ray_ctx *ctx) {
  int64_t x;
  ray_status s = arg_i64(ctx, 0, &x);
  for (int i = 0; s == RAY_OK && i < 4; i++) s = ret_i64(ctx, (size_t)i, i * x);
  return s;
}

static ray_status failing(ray_ctx *ctx) {
  int64_t x;
  ray_status s = arg_i64(ctx, 0, &x);
  if (s != RAY_OK) return s;
  return ray_ctx_fail(ctx, "invalid input %lld", (long long)x);
}

/* Submits add_one(x) from inside the task, waits for it: 10 (x + 1). */
static ray_status nested(ray_ctx *ctx) {
  int64_t x;
  ray_status s = arg_i64(ctx, 0, &x);
  if (s != RAY_OK) return s;
  ray_arg a = ray_arg_value(&x, sizeof x, &ray_type_i64);
  ray_ref *r;
  if ((s = ray_submit(add_one, &a, 1, NULL, &r)) != RAY_OK) return s;
  ray_view v;
  s = ray_get(r, &ray_type_i64, -1, &v);
  if (s == RAY_OK) {
    int64_t y = *(const int64_t *)v.data;
    ray_view_release(&v);
    s = ret_i64(ctx, 0, 10 * y);
  }
  ray_ref_release(r);
  return s;
}

enum { T_X, T_1, T_2A, T_2B, T_3, T_4A, T_4B, T_4C, T_4D, T_5, T_F, T_D, T_N, T_COUNT };

static struct { ray_ref *ref[T_COUNT]; } T;

static const char k_long_name[] = "a task name longer than the thirty-two bytes kept inline";

static void submit_task(ray_task_fn fn, const ray_arg *args, size_t nargs, const char *name,
                        int nret, int first) {
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = name;
  o.num_returns = nret;
  ray_ref *r[4];
  if (OOM_CALL(ray_submit(fn, args, nargs, &o, r)) != RAY_OK) return;
  for (int i = 0; i < nret; i++) T.ref[first + i] = r[i];
}

static void run_tasks(void) {
  memset(&T, 0, sizeof T);
  int64_t x = 3, two = 2, seven = 7, five = 5;
  int64_t sixteen[16];
  for (int i = 0; i < 16; i++) sixteen[i] = i + 1; /* 136, and 128 bytes: off the record */
  OOM_CALL(ray_put(&x, sizeof x, &ray_type_i64, &T.ref[T_X]));
  if (T.ref[T_X]) {
    ray_arg a = ray_arg_ref(T.ref[T_X]);
    submit_task(add_one, &a, 1, "add_one", 1, T_1); /* 4 */
  }
  if (T.ref[T_1]) {
    ray_arg a = ray_arg_ref(T.ref[T_1]);
    submit_task(two_out, &a, 1, "two_out", 2, T_2A); /* 5, 8 */
  }
  if (T.ref[T_2A]) {
    ray_arg a[2] = {ray_arg_ref(T.ref[T_2A]), ray_arg_ref(T.ref[T_2B])};
    submit_task(sum_args, a, 2, "sum", 1, T_3); /* 13 */
  }
  {
    ray_arg a = ray_arg_value(&two, sizeof two, &ray_type_i64);
    submit_task(four_out, &a, 1, "four_out", 4, T_4A); /* 0, 2, 4, 6 */
  }
  if (T.ref[T_3] && T.ref[T_4D]) {
    ray_arg a[3] = {ray_arg_value(sixteen, sizeof sixteen, &ray_type_i64), ray_arg_ref(T.ref[T_3]),
                    ray_arg_ref(T.ref[T_4D])};
    submit_task(sum_args, a, 3, k_long_name, 1, T_5); /* 136 + 13 + 6 = 155 */
  }
  {
    ray_arg a = ray_arg_value(&seven, sizeof seven, &ray_type_i64);
    submit_task(failing, &a, 1, "failing", 1, T_F);
  }
  if (T.ref[T_F]) {
    ray_arg a = ray_arg_ref(T.ref[T_F]);
    submit_task(add_one, &a, 1, "after_failing", 1, T_D);
  }
  {
    ray_arg a = ray_arg_value(&five, sizeof five, &ray_type_i64);
    submit_task(nested, &a, 1, "nested", 1, T_N); /* 60 */
  }
  ray_ref *last[3];
  size_t n = 0;
  if (T.ref[T_5]) last[n++] = T.ref[T_5];
  if (T.ref[T_D]) last[n++] = T.ref[T_D];
  if (T.ref[T_N]) last[n++] = T.ref[T_N];
  bool ready[3];
  OOM_CALL(ray_wait(last, n, n, -1, ready));
  /* Gets while armed: the same rule as after the step. */
  int64_t got;
  if (T.ref[T_5]) result_i64(T.ref[T_5], "T5", &got, RAY_OK, NULL);
  if (T.ref[T_D]) result_i64(T.ref[T_D], "after_failing", &got, RAY_ETASK, "invalid input 7");
}

static void check_tasks(void) {
  static const int64_t want[T_COUNT] = {
      [T_X] = 3,  [T_1] = 4,  [T_2A] = 5, [T_2B] = 8,  [T_3] = 13, [T_4A] = 0,
      [T_4B] = 2, [T_4C] = 4, [T_4D] = 6, [T_5] = 155, [T_N] = 60};
  for (int i = 0; i < T_COUNT; i++) {
    if (!T.ref[i]) continue;
    char what[32];
    snprintf(what, sizeof what, "task result %d", i);
    if (i == T_F || i == T_D) {
      int64_t got;
      if (result_i64(T.ref[i], what, &got, RAY_ETASK, "invalid input 7") == RAY_OK)
        OOM_FAIL("tasks, %s, N = %ld: %s succeeded", g_mode, g_step, what);
    } else {
      expect_i64(T.ref[i], what, want[i]);
    }
  }
  for (int i = 0; i < T_COUNT; i++) ray_ref_release(T.ref[i]);
}

static void test_tasks(void **state) {
  (void)state;
  static const workload w = {"tasks", run_tasks, check_tasks, true};
  walk_both(&w);
}

/* ------------------------------------------------------------------------ */
/* Actors with restarts                                                     */
/* ------------------------------------------------------------------------ */

typedef struct counter {
  int64_t total;
} counter;

static ray_status counter_start(void *state, ray_ctx *ctx) {
  return arg_i64(ctx, 0, &((counter *)state)->total);
}

/* Adds x and returns the new total; the state changes only if the result
 * could be set, so a call that failed had no effect. */
static ray_status counter_add_by(counter *c, ray_ctx *ctx, int64_t x) {
  ray_status s = ret_i64(ctx, 0, c->total + x);
  if (s == RAY_OK) c->total += x;
  return s;
}

static ray_status counter_add(void *state, ray_ctx *ctx) {
  int64_t x;
  ray_status s = arg_i64(ctx, 0, &x);
  return s == RAY_OK ? counter_add_by(state, ctx, x) : s;
}

static ray_status counter_bump(void *state, ray_ctx *ctx) {
  return counter_add_by(state, ctx, 1);
}

static ray_status counter_get(void *state, ray_ctx *ctx) {
  return ret_i64(ctx, 0, ((counter *)state)->total);
}

static ray_status counter_crash(void *state, ray_ctx *ctx) {
  (void)state;
  (void)ctx;
  return RAY_EACTOR;
}

enum { M_ADD, M_BUMP, M_GET, M_CRASH };
static const ray_method k_counter_methods[] = {
    {"add", counter_add}, {"bump", counter_bump}, {"get", counter_get}, {"crash", counter_crash}};
static const ray_actor_class k_counter = {"counter", sizeof(counter),   counter_start,
                                          NULL,      k_counter_methods, 4};

#define START_TOTAL 10
#define MAX_CALLS 16

/* What the driver did, in order, for the model in check_actors. */
typedef enum { OP_ADD, OP_GET, OP_CRASH, OP_SEND_BUMP, OP_KILL_RESTART } op_kind;
typedef struct op {
  op_kind kind;
  int64_t x;
  ray_ref *ref; /* the call's result; NULL: the call was refused */
  bool sent;    /* a send was accepted */
} op;

static struct {
  ray_actor *a;
  ray_ref *arg; /* a put passed by ref to add */
  op ops[MAX_CALLS];
  int nops;
} A;

static void actor_call(op_kind kind, size_t method, const ray_arg *args, size_t nargs, int64_t x) {
  op *o = &A.ops[A.nops++];
  *o = (op){kind, x, NULL, false};
  OOM_CALL(ray_actor_call(A.a, method, args, nargs, &o->ref));
}

/* Waits for every call made so far (their outcomes are read after the
 * step), so that a kill comes after them. A ray_wait refused for memory
 * has not waited; a ray_get has, whatever it returns: it allocates only
 * once the object is ready (the view's record). */
static void actor_settle(void) {
  for (int i = 0; i < A.nops; i++) {
    if (!A.ops[i].ref) continue;
    bool ready;
    if (OOM_CALL(ray_wait(&A.ops[i].ref, 1, 1, -1, &ready)) == RAY_OK) continue;
    ray_view v;
    if (ray_get(A.ops[i].ref, NULL, -1, &v) == RAY_OK) ray_view_release(&v);
  }
}

static void run_actors(void) {
  memset(&A, 0, sizeof A);
  int64_t start = START_TOTAL, five = 5, seven = 7;
  ray_arg ctor = ray_arg_value(&start, sizeof start, &ray_type_i64);
  ray_actor_opts opts = {0};
  opts.name = "oom-counter";
  opts.max_restarts = 2;
  opts.memory_quota = (size_t)1 << 20; /* an account */
  if (OOM_CALL(ray_actor_create(&k_counter, &ctor, 1, &opts, &A.a)) != RAY_OK) return;
  ray_actor *found;
  if (OOM_CALL(ray_actor_lookup("oom-counter", &found)) == RAY_OK) ray_actor_release(found);
  ray_arg v5 = ray_arg_value(&five, sizeof five, &ray_type_i64);
  actor_call(OP_ADD, M_ADD, &v5, 1, 5);
  actor_call(OP_CRASH, M_CRASH, NULL, 0, 0); /* restarts the actor: total 10 again */
  actor_call(OP_GET, M_GET, NULL, 0, 0);
  op *o = &A.ops[A.nops++];
  *o = (op){OP_SEND_BUMP, 1, NULL, false};
  o->sent = OOM_CALL(ray_actor_send(A.a, M_BUMP, NULL, 0)) == RAY_OK;
  if (OOM_CALL(ray_put(&seven, sizeof seven, &ray_type_i64, &A.arg)) == RAY_OK) {
    ray_arg r7 = ray_arg_ref(A.arg); /* a dependency */
    actor_call(OP_ADD, M_ADD, &r7, 1, 7);
  }
  actor_call(OP_GET, M_GET, NULL, 0, 0);
  actor_settle();
  /* A kill with restart acts before the calls made after it. */
  CHECK_OK(ray_actor_kill(A.a, false));
  A.ops[A.nops++] = (op){OP_KILL_RESTART, 0, NULL, true};
  actor_call(OP_GET, M_GET, NULL, 0, 0);
  actor_settle();
  CHECK_OK(ray_actor_kill(A.a, true));
  ray_actor_release(A.a);
}

/* Replays the calls on a model of the counter: the set of totals it may
 * hold, given which calls took effect. */
#define MAX_STATES 8
typedef struct model {
  int64_t v[MAX_STATES];
  int n;
} model;

static void model_add(model *m, int64_t x) {
  for (int i = 0; i < m->n; i++)
    if (m->v[i] == x) return;
  if (m->n == MAX_STATES) fail_msg("actors: the model has too many states");
  m->v[m->n++] = x;
}

static void check_actors(void) {
  model m = {{START_TOTAL}, 1};
  for (int i = 0; i < A.nops; i++) {
    op *o = &A.ops[i];
    char what[32];
    snprintf(what, sizeof what, "actor op %d", i);
    int64_t got;
    switch (o->kind) {
    case OP_ADD:
    case OP_GET:
      if (!o->ref) break;
      if (result_i64(o->ref, what, &got, RAY_OK, NULL) != RAY_OK) break;
      {
        int64_t x = o->kind == OP_ADD ? o->x : 0;
        model before = m;
        bool fits = false;
        for (int k = 0; k < before.n; k++) fits |= before.v[k] + x == got;
        if (!fits)
          OOM_FAIL("actors, %s, N = %ld: %s = %lld, not one of the %d totals the model allows "
                   "(first %lld)",
                   g_mode, g_step, what, (long long)got, before.n, (long long)before.v[0]);
        m.n = 0;
        model_add(&m, got);
      }
      break;
    case OP_CRASH:
      if (!o->ref) break;
      {
        ray_view v;
        ray_status s = ray_get(o->ref, NULL, -1, &v);
        if (s == RAY_EACTOR && strstr(ray_last_error(), "died in this call")) {
          m.n = 0;
          model_add(&m, START_TOTAL);
        } else if (failed_for_memory(s)) {
          model_add(&m, START_TOTAL); /* it may have crashed the actor all the same */
        } else {
          OOM_FAIL("actors, %s, N = %ld: crash call: %s: %s", g_mode, g_step, ray_status_name(s),
                   ray_last_error());
        }
      }
      break;
    case OP_SEND_BUMP:
      if (o->sent) {
        model next = m;
        for (int k = 0; k < m.n; k++) model_add(&next, m.v[k] + 1);
        m = next;
      }
      break;
    case OP_KILL_RESTART:
      m.n = 0;
      model_add(&m, START_TOTAL);
      break;
    }
  }
  for (int i = 0; i < A.nops; i++) ray_ref_release(A.ops[i].ref);
  ray_ref_release(A.arg);
}

static void test_actors(void **state) {
  (void)state;
  static const workload w = {"actors", run_actors, check_actors, false};
  walk_both(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_init_shutdown, teardown),
      cmocka_unit_test_teardown(test_puts, teardown),
      cmocka_unit_test_teardown(test_tasks, teardown),
      cmocka_unit_test_teardown(test_actors, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
