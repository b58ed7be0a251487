/*
 * ray_bench.c - microbenchmarks for rayc, with Ray's metric names.
 *
 *   ray_bench [--quick] [--json FILE] [--filter SUBSTR] [--workers N]
 *
 * Prints one row per metric: value, unit, the baseline it is compared with
 * (measured in the same run), the ratio value/baseline and the goal from
 * DESIGN.md section 5. The machine is shared and noisy, so every figure is the
 * median of several repetitions and the ratios to same-run baselines are what
 * should be compared between runs, not the raw values.
 *
 * Adding a metric = adding one row to `rows[]` below: a name, a unit, an
 * optional setup/teardown pair and a `rep` function that measures ONE sample.
 * The runner does the repetitions, the median, the baseline ratio, the goal
 * check, the filtering and the output.
 *
 * Uses only <ray.h>, OpenMP, libc and POSIX. Any rayc call that does not
 * return RAY_OK aborts the run (exit 1) with the status and ray_last_error():
 * a benchmark that silently measures error paths is worse than none.
 */
#define _GNU_SOURCE /* mkstemp, fsync, lseek also under -std=c11 */

#include <ray.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Failure handling                                                         */
/* ------------------------------------------------------------------------ */

static void die(const char *fmt, ...) __attribute__((noreturn, cold, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ray_bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  /* No ray_shutdown: after an unexpected failure the runtime may be in any
   * state, and a hung shutdown would hide the message above. */
  exit(1);
}

static void ray_fail(const char *expr, ray_status st, int line) __attribute__((noreturn, cold));
static void ray_fail(const char *expr, ray_status st, int line) {
  die("line %d: %s -> %s: %s", line, expr, ray_status_name(st), ray_last_error());
}

/* Checks a rayc call. Cheap enough for hot loops: one predicted branch. */
#define RAY_CHECK(call)                                                                            \
  do {                                                                                             \
    ray_status st_ = (call);                                                                       \
    if (__builtin_expect(st_ != RAY_OK, 0)) ray_fail(#call, st_, __LINE__);                        \
  } while (0)

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) die("out of memory allocating %zu bytes", n);
  return p;
}

/* ------------------------------------------------------------------------ */
/* Clock, statistics, memory                                                */
/* ------------------------------------------------------------------------ */

static uint64_t now_ns(void) {
  struct timespec ts;
  /* MONOTONIC: immune to wall-clock steps (NTP) during a measurement. */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double secs(uint64_t ns) {
  return (double)ns * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median (sorts v in place). The median, not the mean: a shared, noisy
 * machine produces one-sided outliers (preemption) that would drag a mean. */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return (n % 2) ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Resident set size in bytes, from /proc/self/statm (2nd field, pages).
 * Read with open/read into a stack buffer: stdio would malloc a FILE and its
 * buffer and perturb the very number being measured. */
static size_t rss_bytes(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open /proc/self/statm: %s", strerror(errno));
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) die("read /proc/self/statm: %s", strerror(errno));
  buf[n] = '\0';
  unsigned long size_pages = 0, rss_pages = 0;
  if (sscanf(buf, "%lu %lu", &size_pages, &rss_pages) != 2) die("cannot parse /proc/self/statm");
  return (size_t)rss_pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* malloc + fill: the fill faults every page in now, so later timings see warm
 * memory (first touch runs at ~0.3 GB/s here, 40x slower than a warm copy).
 * A non-zero pattern so no page can stay mapped to the shared zero page. */
static unsigned char *alloc_filled(size_t n) {
  unsigned char *p = xmalloc(n);
  memset(p, 0x5a, n);
  return p;
}

/* Stops the compiler from proving a buffer dead and dropping a copy into it. */
static volatile unsigned char g_sink;

/* ------------------------------------------------------------------------ */
/* Run options                                                              */
/* ------------------------------------------------------------------------ */

static struct {
  bool quick;
  int reps;            /* repetitions per metric: 5, 3 with --quick */
  int many_reps;       /* rows marked REPS_MANY: 21 / 5 */
  uint64_t min_rep_ns; /* a throughput sample runs at least this long */
  size_t file_bytes;   /* file baseline size: 1 GiB, 256 MiB with --quick */
  int workers;         /* rayc workers, OpenMP threads, clients and actors: 2 (the cores here) */
} g_opt;

#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

enum {
  CALL_BATCH = 1024,         /* calls between two clock reads in rate loops */
  SMALL_OBJECTS = 1000000,   /* objects per small_object_bytes sample */
  WAIT_REFS = 1000,          /* refs per ray_wait call */
  OMP_ASYNC_TASKS = 1000000, /* tasks per baseline_openmp_tasks_async sample */
  TASKS_ASYNC = 1000000,     /* tasks per single_client_tasks_async sample (1/10 quick) */
  TASK_BATCH = 1000,         /* tasks per single_client_tasks_and_get_batch batch */
  MAX_WORKERS = 256,         /* --workers at most */
  ACTOR_CALLS = 1000000,     /* calls per n_n actor sample (1/10 quick) */
  ACTOR_BATCH = 1000,        /* calls per batch in the async actor rows, as Ray's */
};
#define BIG_PUT_BYTES (256 * MIB)
#define FILE_CHUNK (8 * MIB)

/* Buffers shared by several rows, allocated on first use and freed after
 * ray_shutdown (only then is it certain no object still refers to them). */
static unsigned char *g_src256; /* 256 MiB, filled: put_gigabytes + memcpy */
static unsigned char *g_gib;    /* 1 GiB, filled: put_owned + get latency */

static unsigned char *src256(void) {
  if (!g_src256) g_src256 = alloc_filled(BIG_PUT_BYTES);
  return g_src256;
}

static unsigned char *gib_buffer(void) {
  if (!g_gib) g_gib = alloc_filled(GIB);
  return g_gib;
}

/* Runs the body (a batch of `batch` calls) until at least min_rep_ns has
 * passed, then RETURNS from the enclosing function the calls per second.
 * Variadic so that commas in the body cannot split the macro arguments.
 * The clock is read once per batch so its ~20 ns cost does not inflate
 * per-call figures of ~100 ns. */
#define RATE_LOOP(batch, ...)                                                                      \
  do {                                                                                             \
    uint64_t t0_ = now_ns(), el_;                                                                  \
    uint64_t n_ = 0;                                                                               \
    do {                                                                                           \
      __VA_ARGS__;                                                                                 \
      n_ += (batch);                                                                               \
      el_ = now_ns() - t0_;                                                                        \
    } while (el_ < g_opt.min_rep_ns);                                                              \
    return (double)n_ / secs(el_);                                                                 \
  } while (0)

/* ------------------------------------------------------------------------ */
/* rayc object store metrics                                                */
/* ------------------------------------------------------------------------ */

static const uint64_t k_small_payload = 0x0123456789abcdefu; /* 8 bytes */

/* single_client_put_calls: the full cost of a small put, including dropping
 * the ref, as in Ray's loop where each ObjectRef is garbage at once. */
static double rep_put_calls(void *st) {
  (void)st;
  RATE_LOOP(CALL_BATCH, {
    for (int i = 0; i < CALL_BATCH; i++) {
      ray_ref *r;
      RAY_CHECK(ray_put(&k_small_payload, sizeof k_small_payload, &ray_type_bytes, &r));
      ray_ref_release(r);
    }
  });
}

/* single_client_get_calls: get + view release of one 8-byte object. */
static ray_ref *g_get_ref;

static void *setup_get_calls(void) {
  RAY_CHECK(ray_put(&k_small_payload, sizeof k_small_payload, &ray_type_bytes, &g_get_ref));
  ray_view v;
  RAY_CHECK(ray_get(g_get_ref, NULL, 0, &v));
  /* Check once, outside the timed loop, that get returns what was put. */
  if (v.size != sizeof k_small_payload || memcmp(v.data, &k_small_payload, v.size) != 0)
    die("single_client_get_calls: ray_get returned wrong bytes (size %zu)", v.size);
  ray_view_release(&v);
  return NULL;
}

static double rep_get_calls(void *st) {
  (void)st;
  RATE_LOOP(CALL_BATCH, {
    for (int i = 0; i < CALL_BATCH; i++) {
      ray_view v;
      RAY_CHECK(ray_get(g_get_ref, NULL, 0, &v));
      ray_view_release(&v);
    }
  });
}

static void teardown_get_calls(void *st) {
  (void)st;
  ray_ref_release(g_get_ref);
  g_get_ref = NULL;
}

/* ------------------------------------------------------------------------ */
/* rayc task metrics                                                        */
/* ------------------------------------------------------------------------ */

/* The "empty" task: returns 8 bytes, as Ray's microbenchmark's small_value. */
static ray_status empty_task(ray_ctx *ctx) {
  return ray_ctx_return(ctx, 0, &k_small_payload, sizeof k_small_payload, &ray_type_bytes);
}

static void get_and_drop(ray_ref *r) {
  ray_view v;
  RAY_CHECK(ray_get(r, NULL, -1, &v));
  if (v.size != sizeof k_small_payload) die("task returned %zu bytes, not 8", v.size);
  ray_view_release(&v);
  ray_ref_release(r);
}

static ray_ref **g_task_refs; /* TASKS_ASYNC slots */

static void *setup_task_refs(void) {
  g_task_refs = xmalloc(TASKS_ASYNC * sizeof *g_task_refs);
  memset(g_task_refs, 0xff, TASKS_ASYNC * sizeof *g_task_refs); /* touched: not in the time */
  return NULL;
}
static void teardown_task_refs(void *st) {
  (void)st;
  free(g_task_refs);
  g_task_refs = NULL;
}

/* single_client_tasks_async: submit TASKS_ASYNC empty tasks, then get all. */
static double rep_tasks_async(void *st) {
  (void)st;
  size_t n = g_opt.quick ? TASKS_ASYNC / 10 : TASKS_ASYNC;
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++) RAY_CHECK(ray_submit(empty_task, NULL, 0, NULL, &g_task_refs[i]));
  for (size_t i = 0; i < n; i++) get_and_drop(g_task_refs[i]);
  return (double)n / secs(now_ns() - t0);
}

/* single_client_tasks_sync: submit one, get it, repeat: the round trip. */
static double rep_tasks_sync(void *st) {
  (void)st;
  RATE_LOOP(256, {
    for (int i = 0; i < 256; i++) {
      ray_ref *r;
      RAY_CHECK(ray_submit(empty_task, NULL, 0, NULL, &r));
      get_and_drop(r);
    }
  });
}

/* single_client_tasks_and_get_batch: 1000 tasks, then get the batch. */
static double rep_tasks_batch(void *st) {
  (void)st;
  RATE_LOOP(TASK_BATCH, {
    for (int i = 0; i < TASK_BATCH; i++)
      RAY_CHECK(ray_submit(empty_task, NULL, 0, NULL, &g_task_refs[i]));
    for (int i = 0; i < TASK_BATCH; i++) get_and_drop(g_task_refs[i]);
  });
}

/* multi_client_tasks_async: the clients are tasks, one per worker; each
 * submits its share of empty tasks and gets them all. */
static ray_status client_task(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v);
  if (s != RAY_OK) return s;
  size_t n = *(const size_t *)v.data;
  ray_ref **refs = malloc(n * sizeof *refs);
  if (!refs) return ray_ctx_fail(ctx, "no memory for %zu refs", n);
  for (size_t i = 0; i < n && s == RAY_OK; i++) s = ray_submit(empty_task, NULL, 0, NULL, &refs[i]);
  for (size_t i = 0; i < n && s == RAY_OK; i++) {
    ray_view rv;
    if ((s = ray_get(refs[i], NULL, -1, &rv)) == RAY_OK) ray_view_release(&rv);
    ray_ref_release(refs[i]);
  }
  free(refs);
  if (s != RAY_OK) return s;
  return ray_ctx_return(ctx, 0, &n, sizeof n, NULL);
}

static double rep_multi_client(void *st) {
  (void)st;
  int nc = g_opt.workers; /* one client task per worker */
  size_t per = (g_opt.quick ? TASKS_ASYNC / 10 : TASKS_ASYNC) / (size_t)nc;
  ray_ref *clients[MAX_WORKERS];
  uint64_t t0 = now_ns();
  for (int c = 0; c < nc; c++) {
    ray_arg a = ray_arg_value(&per, sizeof per, NULL);
    RAY_CHECK(ray_submit(client_task, &a, 1, NULL, &clients[c]));
  }
  for (int c = 0; c < nc; c++) get_and_drop(clients[c]);
  return (double)(per * (size_t)nc) / secs(now_ns() - t0);
}

/* ------------------------------------------------------------------------ */
/* rayc actor metrics                                                       */
/* ------------------------------------------------------------------------ */

/* The bench actor: a method that returns 8 bytes, like Ray's small_value,
 * and one that also reads its argument. */
static ray_status actor_small(void *state, ray_ctx *ctx) {
  (void)state;
  return ray_ctx_return(ctx, 0, &k_small_payload, sizeof k_small_payload, &ray_type_bytes);
}
static ray_status actor_with_arg(void *state, ray_ctx *ctx) {
  (void)state;
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v);
  if (s != RAY_OK) return s;
  return ray_ctx_return(ctx, 0, v.data, v.size, &ray_type_bytes);
}
static const ray_method k_bench_methods[] = {{"small", actor_small}, {"with_arg", actor_with_arg}};
static const ray_actor_class k_bench_actor = {"Bench", 0, NULL, NULL, k_bench_methods, 2};

/* Actors (and client tasks) in the 1_n / n_n rows: one per worker. */
#define ACTORS_N g_opt.workers
static ray_actor *g_actors[MAX_WORKERS];

static void *setup_actors(void) {
  for (int i = 0; i < ACTORS_N; i++)
    RAY_CHECK(ray_actor_create(&k_bench_actor, NULL, 0, NULL, &g_actors[i]));
  return NULL;
}
static void teardown_actors(void *st) {
  (void)st;
  for (int i = 0; i < ACTORS_N; i++) ray_actor_release(g_actors[i]);
}

static size_t actor_calls(void) {
  return g_opt.quick ? ACTOR_CALLS / 10 : ACTOR_CALLS;
}

/* 1_1_actor_calls_sync: call, get, repeat. */
static double rep_actor_sync(void *st) {
  (void)st;
  RATE_LOOP(256, {
    for (int i = 0; i < 256; i++) {
      ray_ref *r;
      RAY_CHECK(ray_actor_call(g_actors[0], 0, NULL, 0, &r));
      get_and_drop(r);
    }
  });
}

/* Calls `n` times spread over `nactors` actors from this thread, then gets
 * every result; with `arg`, each call reads that object. */
static void calls_async(size_t n, int nactors, ray_ref *arg, ray_ref **refs) {
  ray_arg a = ray_arg_ref(arg);
  for (size_t i = 0; i < n; i++)
    RAY_CHECK(ray_actor_call(g_actors[i % (size_t)nactors], arg ? 1 : 0, arg ? &a : NULL,
                             arg ? 1 : 0, &refs[i]));
  for (size_t i = 0; i < n; i++) get_and_drop(refs[i]);
}

/* 1_1_actor_calls_async, as Ray measures it (ray_perf.py): batches of
 * ACTOR_BATCH calls to one actor, then get the batch. */
static double rep_actor_1_1_async(void *st) {
  (void)st;
  RATE_LOOP(ACTOR_BATCH, calls_async(ACTOR_BATCH, 1, NULL, g_task_refs));
}

/* 1_n_actor_calls_async: the same batches spread over ACTORS_N actors. */
static double rep_actor_1_n_async(void *st) {
  (void)st;
  RATE_LOOP(ACTOR_BATCH, calls_async(ACTOR_BATCH, ACTORS_N, NULL, g_task_refs));
}

/* n_n_actor_calls_async(_with_arg): ACTORS_N client tasks, each calling all
 * ACTORS_N actors; the arg variant passes a small object by ref. */
static ray_ref *g_nn_arg;

static ray_status nn_client(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, NULL, &v);
  if (s != RAY_OK) return s;
  size_t n = *(const size_t *)v.data;
  ray_ref *refs[ACTOR_BATCH];
  ray_arg a = ray_arg_ref(g_nn_arg);
  for (size_t done = 0; done < n && s == RAY_OK; done += ACTOR_BATCH) { /* batches, as Ray */
    size_t k = n - done < ACTOR_BATCH ? n - done : ACTOR_BATCH;
    for (size_t i = 0; i < k && s == RAY_OK; i++)
      if ((s = ray_actor_call(g_actors[i % ACTORS_N], g_nn_arg ? 1 : 0, g_nn_arg ? &a : NULL,
                              g_nn_arg ? 1 : 0, &refs[i])) != RAY_OK)
        k = i;
    for (size_t i = 0; i < k; i++) {
      ray_view rv;
      ray_status g = ray_get(refs[i], NULL, -1, &rv);
      if (g == RAY_OK)
        ray_view_release(&rv);
      else
        s = g;
      ray_ref_release(refs[i]);
    }
  }
  if (s != RAY_OK) return s;
  return ray_ctx_return(ctx, 0, &n, sizeof n, NULL);
}

static double nn_run(void) {
  size_t per = actor_calls() / (size_t)ACTORS_N;
  ray_ref *clients[MAX_WORKERS];
  uint64_t t0 = now_ns();
  for (int c = 0; c < ACTORS_N; c++) {
    ray_arg a = ray_arg_value(&per, sizeof per, NULL);
    RAY_CHECK(ray_submit(nn_client, &a, 1, NULL, &clients[c]));
  }
  for (int c = 0; c < ACTORS_N; c++) get_and_drop(clients[c]);
  return (double)(per * (size_t)ACTORS_N) / secs(now_ns() - t0);
}

static double rep_actor_n_n_async(void *st) {
  (void)st;
  g_nn_arg = NULL;
  return nn_run();
}

static double rep_actor_n_n_arg_async(void *st) {
  (void)st;
  RAY_CHECK(ray_put(&k_small_payload, sizeof k_small_payload, &ray_type_bytes, &g_nn_arg));
  double r = nn_run();
  ray_ref_release(g_nn_arg);
  g_nn_arg = NULL;
  return r;
}

static void *setup_actors_and_refs(void) {
  setup_task_refs();
  return setup_actors();
}
static void teardown_actors_and_refs(void *st) {
  teardown_actors(st);
  teardown_task_refs(st);
}

/* single_client_wait_1k_refs, as Ray measures it: submit 1000 tasks, then
 * ray_wait for one ready ref at a time, dropping what is ready, until none
 * is left. Rate: such cycles per second. */
static double rep_wait(void *st) {
  (void)st;
  static ray_ref *left[WAIT_REFS];
  static bool ready[WAIT_REFS];
  RATE_LOOP(1, {
    size_t n = WAIT_REFS;
    for (size_t i = 0; i < n; i++) RAY_CHECK(ray_submit(empty_task, NULL, 0, NULL, &left[i]));
    while (n) {
      RAY_CHECK(ray_wait(left, n, 1, -1, ready));
      size_t k = 0;
      for (size_t i = 0; i < n; i++) {
        if (ready[i])
          get_and_drop(left[i]);
        else
          left[k++] = left[i];
      }
      if (k == n) die("single_client_wait_1k_refs: ray_wait returned RAY_OK with none ready");
      n = k;
    }
  });
}

/* small_object_bytes: RSS growth per live 8-byte object.
 *
 * Each sample puts SMALL_OBJECTS more objects ON TOP of those of the earlier
 * samples and keeps them all until teardown. Releasing between samples would
 * let the next sample reuse the freed memory and report ~0 bytes; keeping them
 * measures the marginal cost of one more live object, which is what a program
 * holding many small objects pays. The ref array is allocated and touched
 * before any measurement so its pages are not counted. */
static ray_ref **g_small_refs;
static size_t g_small_count;

static void *setup_small(void) {
  size_t cap = (size_t)g_opt.reps * SMALL_OBJECTS;
  g_small_refs = xmalloc(cap * sizeof *g_small_refs);
  /* Fault the pages in now. Not with 0: GCC turns malloc + memset(0) into
   * calloc, whose fresh pages are untouched zero pages, and the 8 bytes per
   * ref would then be counted in the measurement. */
  memset(g_small_refs, 0xff, cap * sizeof *g_small_refs);
  g_small_count = 0;
  return NULL;
}

static double rep_small(void *st) {
  (void)st;
  ray_ref **refs = g_small_refs + g_small_count;
  size_t before = rss_bytes();
  for (size_t i = 0; i < SMALL_OBJECTS; i++)
    RAY_CHECK(ray_put(&k_small_payload, sizeof k_small_payload, &ray_type_bytes, &refs[i]));
  size_t after = rss_bytes();
  g_small_count += SMALL_OBJECTS;
  /* Signed: a background free in the runtime could shrink RSS meanwhile. */
  return ((double)after - (double)before) / SMALL_OBJECTS;
}

static void teardown_small(void *st) {
  (void)st;
  for (size_t i = 0; i < g_small_count; i++) ray_ref_release(g_small_refs[i]);
  free(g_small_refs);
  g_small_refs = NULL;
  g_small_count = 0;
}

/* small_object_overhead_bytes = small_object_bytes - the 8 payload bytes.
 * (The median commutes with subtracting a constant.) */
static double derive_overhead(double small_object_bytes) {
  return small_object_bytes - (double)sizeof k_small_payload;
}

/* single_client_put_gigabytes: throughput of put-and-drop of a 256 MiB warm
 * buffer. The release is inside the timed region: the store's steady state is
 * "a buffer is freed, the next put reuses it", and giving it back is part of
 * that cycle. Warm-up puts in setup let the store fault in and cache its
 * buffers first, so the samples measure copying, not first-touch page faults
 * (which the store avoids by reusing memory: DESIGN.md section 5). */
static void *setup_put_gb(void) {
  unsigned char *src = src256();
  for (int i = 0; i < (g_opt.quick ? 2 : 3); i++) {
    ray_ref *r;
    RAY_CHECK(ray_put(src, BIG_PUT_BYTES, &ray_type_bytes, &r));
    ray_ref_release(r);
  }
  return src;
}

static double rep_put_gb(void *st) {
  unsigned char *src = st;
  uint64_t t0 = now_ns(), el;
  size_t puts = 0;
  do {
    ray_ref *r;
    RAY_CHECK(ray_put(src, BIG_PUT_BYTES, &ray_type_bytes, &r));
    ray_ref_release(r);
    puts++;
    el = now_ns() - t0;
  } while (el < g_opt.min_rep_ns);
  return (double)puts * (double)BIG_PUT_BYTES / 1e9 / secs(el);
}

/* put_owned_1gib_latency_us: ray_put_owned adopts the buffer, so its cost
 * must not depend on the size. Only the call is timed. free_fn is NULL so we
 * keep the buffer and reuse it in every sample: once the ref is released the
 * object is gone and the buffer is ours again, unchanged (the store never
 * writes it), which avoids faulting in a fresh GiB per sample. */
static void *setup_gib(void) {
  return gib_buffer();
}

static double rep_put_owned(void *st) {
  ray_ref *r;
  uint64_t t0 = now_ns();
  RAY_CHECK(ray_put_owned(st, GIB, &ray_type_bytes, NULL, &r));
  uint64_t el = now_ns() - t0;
  ray_ref_release(r); /* untimed */
  return (double)el / 1e3;
}

/* get_1gib_latency_us: a zero-copy get must not depend on the size either.
 * The object is adopted with ray_put_owned (no 1 GiB copy needed to set up;
 * where the bytes live does not change what a zero-copy get does). */
static ray_ref *g_gib_ref;

static void *setup_get_gib(void) {
  RAY_CHECK(ray_put_owned(gib_buffer(), GIB, &ray_type_bytes, NULL, &g_gib_ref));
  return NULL;
}

static double rep_get_gib(void *st) {
  (void)st;
  ray_view v;
  uint64_t t0 = now_ns();
  RAY_CHECK(ray_get(g_gib_ref, NULL, 0, &v));
  uint64_t el = now_ns() - t0;
  if (v.size != GIB) die("get_1gib_latency_us: view size %zu, expected %zu", v.size, GIB);
  g_sink = ((const unsigned char *)v.data)[GIB - 1]; /* the view is real */
  ray_view_release(&v);                              /* untimed */
  return (double)el / 1e3;
}

static void teardown_get_gib(void *st) {
  (void)st;
  ray_ref_release(g_gib_ref);
  g_gib_ref = NULL;
}

/* ------------------------------------------------------------------------ */
/* Spilling                                                                 */
/* ------------------------------------------------------------------------ */

/* The spill rows need a small memory limit, so they run on a runtime of
 * their own: setup shuts the run's runtime down and starts one with their
 * limit, teardown puts the run's runtime back. spill_dir is always the
 * default ($TMPDIR/rayc-<pid>, whatever RAY_SPILL_DIR says): the same
 * filesystem as the file baselines, and ray_shutdown removes it, so a run
 * leaves nothing on disk. */
#define RUN_STORE_BYTES (4 * GIB)
#define SPILL_OBJ (64 * MIB)
#define SMALL_SPILL_STORE (64 * MIB)
#define SMALL_SPILL_OBJ 1024

static void start_runtime(size_t limit) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = limit;
  cfg.put_timeout_ms = 10000;
  cfg.num_workers = g_opt.workers;
  cfg.spill_dir = NULL;
  RAY_CHECK(ray_init(&cfg));
}

static void restart_runtime(size_t limit) {
  RAY_CHECK(ray_shutdown());
  start_runtime(limit);
}

static ray_stats stats_now(void) {
  ray_stats s;
  RAY_CHECK(ray_stats_get(&s));
  return s;
}

/* spill_gigabytes / restore_gigabytes: 4x the limit (512 MiB; 256 MiB with
 * --quick) in 64 MiB objects. */
static size_t spill_limit(void) {
  return g_opt.quick ? 256 * MIB : 512 * MIB;
}
static size_t spill_count(void) {
  return 4 * spill_limit() / SPILL_OBJ;
}

static unsigned char *g_spill_src; /* one 64 MiB object's bytes, filled */
static ray_ref **g_spill_refs;     /* spill_count() refs while a sample holds them */

static void *setup_spill(void) {
  restart_runtime(spill_limit());
  g_spill_src = alloc_filled(SPILL_OBJ);
  g_spill_refs = xmalloc(spill_count() * sizeof *g_spill_refs);
  return NULL;
}

static void teardown_spill(void *st) {
  (void)st;
  restart_runtime(RUN_STORE_BYTES); /* also deletes the spill files */
  free(g_spill_refs);
  g_spill_refs = NULL;
  free(g_spill_src);
  g_spill_src = NULL;
}

/* Puts spill_count() objects of 64 MiB and keeps them all, so that 3/4 of
 * them must go to disk; returns the ns from the first put to the return of
 * the last. */
static uint64_t put_all_spilling(void) {
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < spill_count(); i++)
    RAY_CHECK(ray_put(g_spill_src, SPILL_OBJ, &ray_type_bytes, &g_spill_refs[i]));
  return now_ns() - t0;
}

static void release_all_spilled(void) {
  for (size_t i = 0; i < spill_count(); i++) ray_ref_release(g_spill_refs[i]);
}

/* spill_gigabytes: payload bytes written to spill files (the store's
 * bytes_spilled_total) per second of putting; each put waits for the spill
 * that makes its room, so this is the rate at which the store moves data
 * out. The release that ends the sample (it frees every spill record) is
 * not timed. */
static double rep_spill_gb(void *st) {
  (void)st;
  ray_stats s0 = stats_now();
  uint64_t el = put_all_spilling();
  ray_stats s1 = stats_now();
  uint64_t bytes = s1.bytes_spilled_total - s0.bytes_spilled_total;
  release_all_spilled();
  if (bytes == 0)
    die("spill_gigabytes: %zu MiB put through a %zu MiB store spilled nothing",
        spill_count() * SPILL_OBJ / MIB, spill_limit() / MIB);
  return (double)bytes / 1e9 / secs(el);
}

/* Reads every object once, in put order; returns the ns taken. */
static uint64_t get_all_in_order(void) {
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < spill_count(); i++) {
    ray_view v;
    RAY_CHECK(ray_get(g_spill_refs[i], NULL, -1, &v));
    if (v.size != SPILL_OBJ) die("restore_gigabytes: object of %zu bytes", v.size);
    g_sink = ((const unsigned char *)v.data)[SPILL_OBJ - 1]; /* the view is real */
    ray_view_release(&v);
  }
  return now_ns() - t0;
}

/* restore_gigabytes: setup puts the objects (spilling 3/4 of them) and reads
 * them all once, untimed: after that every object has a disk copy and the
 * last quarter read is in memory. A sample reads them all in put order: in
 * LRU order, each one read is then on disk only (cold for the store; the
 * page cache is not dropped, as for baseline_file_read_gbps), and the
 * object it evicts has a disk copy, so the sample writes nothing. Value:
 * bytes read back (bytes_restored_total) per second. */
static void *setup_restore(void) {
  setup_spill();
  put_all_spilling();
  get_all_in_order();
  return NULL;
}

static double rep_restore_gb(void *st) {
  (void)st;
  ray_stats s0 = stats_now();
  uint64_t el = get_all_in_order();
  ray_stats s1 = stats_now();
  uint64_t bytes = s1.bytes_restored_total - s0.bytes_restored_total;
  uint64_t written = s1.bytes_spilled_total - s0.bytes_spilled_total;
  if (bytes == 0)
    die("restore_gigabytes: reading %zu spilled objects restored nothing", spill_count());
  if (bytes != (uint64_t)spill_count() * SPILL_OBJ || written != 0)
    fprintf(stderr,
            "\n[ray_bench] restore_gigabytes: a sample restored %llu MiB of %zu and wrote %llu "
            "MiB: not every read was cold, or evictions were written\n",
            (unsigned long long)(bytes / MIB), spill_count() * SPILL_OBJ / MIB,
            (unsigned long long)(written / MIB));
  return (double)bytes / 1e9 / secs(el);
}

static void teardown_restore(void *st) {
  release_all_spilled();
  teardown_spill(st);
}

/* small_object_spill_per_s: 1 M objects of 1 KiB (200 k with --quick) put
 * through a 64 MiB store, all kept: objects moved out of memory (the
 * store's spills) per second of putting. They are released after the
 * sample, untimed. */
static size_t small_spill_count(void) {
  return g_opt.quick ? 200000 : 1000000;
}

static ray_ref **g_small_spill_refs;
static unsigned char g_small_spill_payload[SMALL_SPILL_OBJ];

static void *setup_small_spill(void) {
  restart_runtime(SMALL_SPILL_STORE);
  g_small_spill_refs = xmalloc(small_spill_count() * sizeof *g_small_spill_refs);
  memset(g_small_spill_refs, 0xff, small_spill_count() * sizeof *g_small_spill_refs);
  memset(g_small_spill_payload, 0x5a, sizeof g_small_spill_payload);
  return NULL;
}

static double rep_small_spill(void *st) {
  (void)st;
  ray_stats s0 = stats_now();
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < small_spill_count(); i++)
    RAY_CHECK(
        ray_put(g_small_spill_payload, SMALL_SPILL_OBJ, &ray_type_bytes, &g_small_spill_refs[i]));
  uint64_t el = now_ns() - t0;
  ray_stats s1 = stats_now();
  for (size_t i = 0; i < small_spill_count(); i++) ray_ref_release(g_small_spill_refs[i]);
  uint64_t spills = s1.spills - s0.spills;
  if (spills == 0)
    die("small_object_spill_per_s: %zu objects of 1 KiB through a 64 MiB store spilled none",
        small_spill_count());
  return (double)spills / secs(el);
}

static void teardown_small_spill(void *st) {
  (void)st;
  restart_runtime(RUN_STORE_BYTES);
  free(g_small_spill_refs);
  g_small_spill_refs = NULL;
}

/* ------------------------------------------------------------------------ */
/* Baselines                                                                */
/* ------------------------------------------------------------------------ */

/* baseline_memcpy_gbps: warm memcpy of 256 MiB between pre-faulted buffers,
 * the upper bound for a copying put. */
static unsigned char *g_memcpy_dst;

static void *setup_memcpy(void) {
  g_memcpy_dst = alloc_filled(BIG_PUT_BYTES);
  memcpy(g_memcpy_dst, src256(), BIG_PUT_BYTES); /* warm-up */
  return NULL;
}

static double rep_memcpy(void *st) {
  (void)st;
  uint64_t t0 = now_ns(), el;
  size_t copies = 0;
  do {
    memcpy(g_memcpy_dst, g_src256, BIG_PUT_BYTES);
    g_sink = g_memcpy_dst[copies % BIG_PUT_BYTES]; /* keep the copy observable */
    copies++;
    el = now_ns() - t0;
  } while (el < g_opt.min_rep_ns);
  return (double)copies * (double)BIG_PUT_BYTES / 1e9 / secs(el);
}

static void teardown_memcpy(void *st) {
  (void)st;
  free(g_memcpy_dst);
  g_memcpy_dst = NULL;
}

/* Sequential file I/O: the reference for spill/restore throughput. write()
 * in 8 MiB chunks + fsync (so the write figure includes reaching the disk),
 * then a sequential read. Nothing is dropped from the page cache: the read
 * figure is whatever this machine gives right after a write, as a restore
 * right after a spill would see. */
static unsigned char *g_file_buf; /* one 8 MiB chunk, filled */
static char g_file_path[4096];

static int create_temp_file(void) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  int n = snprintf(g_file_path, sizeof g_file_path, "%s/ray_bench-XXXXXX", dir);
  if (n < 0 || (size_t)n >= sizeof g_file_path) die("TMPDIR path too long");
  int fd = mkstemp(g_file_path);
  if (fd < 0) die("mkstemp %s: %s", g_file_path, strerror(errno));
  return fd;
}

/* Writes file_bytes to fd and fsyncs it; returns the nanoseconds taken. */
static uint64_t write_file(int fd) {
  uint64_t t0 = now_ns();
  for (size_t done = 0; done < g_opt.file_bytes;) {
    size_t want = g_opt.file_bytes - done < FILE_CHUNK ? g_opt.file_bytes - done : FILE_CHUNK;
    ssize_t w = write(fd, g_file_buf + (done % FILE_CHUNK), want);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write %s: %s", g_file_path, w < 0 ? strerror(errno) : "wrote nothing");
    done += (size_t)w;
  }
  if (fsync(fd) != 0) die("fsync %s: %s", g_file_path, strerror(errno));
  return now_ns() - t0;
}

static void *setup_file_buf(void) {
  g_file_buf = alloc_filled(FILE_CHUNK);
  return NULL;
}

static double rep_file_write(void *st) {
  (void)st;
  int fd = create_temp_file();
  uint64_t el = write_file(fd); /* open, close and unlink are not timed */
  close(fd);
  unlink(g_file_path);
  return (double)g_opt.file_bytes / 1e9 / secs(el);
}

static void teardown_file_buf(void *st) {
  (void)st;
  free(g_file_buf);
  g_file_buf = NULL;
}

static int g_read_fd = -1;

static void *setup_file_read(void) {
  setup_file_buf();
  g_read_fd = create_temp_file();
  write_file(g_read_fd);
  return NULL;
}

static double rep_file_read(void *st) {
  (void)st;
  if (lseek(g_read_fd, 0, SEEK_SET) != 0) die("lseek %s: %s", g_file_path, strerror(errno));
  uint64_t t0 = now_ns();
  size_t done = 0;
  for (;;) {
    ssize_t r = read(g_read_fd, g_file_buf, FILE_CHUNK);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("read %s: %s", g_file_path, strerror(errno));
    if (r == 0) break;
    done += (size_t)r;
  }
  uint64_t el = now_ns() - t0;
  if (done != g_opt.file_bytes)
    die("read %zu bytes of %s, expected %zu", done, g_file_path, g_opt.file_bytes);
  return (double)done / 1e9 / secs(el);
}

static void teardown_file_read(void *st) {
  close(g_read_fd);
  g_read_fd = -1;
  unlink(g_file_path);
  teardown_file_buf(st);
}

/* OpenMP task baselines: the peer that rayc tasks are compared with. As
 * many threads as rayc workers (--workers; 2, the cores here). */

/* The "empty" task body. A literally empty `#pragma omp task {}` is deleted by
 * GCC at -O2 (it measured 5e12 tasks/s), so the body is an out-of-line call
 * the optimiser cannot see through; its cost (~1 ns) is noise next to a task. */
static __attribute__((noinline)) void omp_task_body(void) {
  __asm__ volatile("" ::: "memory");
}
static void *setup_omp(void) {
  omp_set_num_threads(g_opt.workers);
  return NULL;
}

/* baseline_openmp_tasks_async: one thread creates 1M no-op tasks, the team
 * runs them, then taskwait. Timed inside `single` so the thread-team start
 * is not counted. (libgomp may run a task at once in the creating thread when
 * its queue is long; that is part of the baseline as OpenMP users get it.
 * It makes single samples swing 4-80 M tasks/s with how often the second
 * thread contends for the queue, hence REPS_MANY for this row.) */
static double rep_omp_async(void *st) {
  (void)st;
  double rate = 0;
#pragma omp parallel
#pragma omp single
  {
    uint64_t t0 = now_ns();
    for (int i = 0; i < OMP_ASYNC_TASKS; i++) {
#pragma omp task
      omp_task_body(); /* no work: measures scheduling overhead only */
    }
#pragma omp taskwait
    rate = (double)OMP_ASYNC_TASKS / secs(now_ns() - t0);
  }
  return rate;
}

/* baseline_openmp_tasks_sync: create one task and wait for it, repeatedly:
 * the round trip that a rayc submit + get costs. */
static double rep_omp_sync(void *st) {
  (void)st;
  double rate = 0;
#pragma omp parallel
#pragma omp single
  {
    uint64_t t0 = now_ns(), el, n = 0;
    do {
      for (int i = 0; i < CALL_BATCH; i++) {
#pragma omp task
        omp_task_body();
#pragma omp taskwait
      }
      n += CALL_BATCH;
      el = now_ns() - t0;
    } while (el < g_opt.min_rep_ns);
    rate = (double)n / secs(el);
  }
  return rate;
}

/* ------------------------------------------------------------------------ */
/* The table                                                                */
/* ------------------------------------------------------------------------ */

typedef enum goal_kind {
  GOAL_NONE,
  GOAL_GE,       /* value >= goal */
  GOAL_LT,       /* value <  goal */
  GOAL_LE,       /* value <= goal */
  GOAL_RATIO_GE, /* value / baseline >= goal */
} goal_kind;

typedef enum rep_kind {
  REPS_DEFAULT, /* g_opt.reps */
  REPS_MANY,    /* g_opt.many_reps: cheap samples (one call) or very noisy ones */
} rep_kind;

typedef struct bench_row {
  const char *name;
  const char *unit;
  /* One sample. NULL for a derived row. */
  double (*rep)(void *state);
  /* Optional: called once before / after the samples; setup's result is
   * passed to rep and teardown. */
  void *(*setup)(void);
  void (*teardown)(void *state);
  rep_kind reps;
  /* Name of the row this value is compared with (value / baseline), or NULL.
   * That row is always run too, even if --filter does not select it. */
  const char *baseline;
  goal_kind goal;
  double goal_value;
  /* Derived rows: value = derive(value of row `from`); `from` must come
   * earlier in the table and is run too. */
  const char *from;
  double (*derive)(double from_value);
} bench_row;

/*
 * Run order matters: rayc metrics first, then baselines. The OpenMP baselines
 * go last because libgomp's idle threads spin for a while after a parallel
 * region and would steal the second core from rayc's workers.
 * Later issues add task and actor rows (single_client_tasks_async with
 * baseline "baseline_openmp_tasks_async", ...) before the baselines.
 */
static const bench_row rows[] = {
    {.name = "single_client_put_calls",
     .unit = "calls/s",
     .rep = rep_put_calls,
     .goal = GOAL_GE,
     .goal_value = 5e6},
    {.name = "single_client_get_calls",
     .unit = "calls/s",
     .rep = rep_get_calls,
     .setup = setup_get_calls,
     .teardown = teardown_get_calls,
     .goal = GOAL_GE,
     .goal_value = 1e7},
    {.name = "single_client_tasks_async",
     .unit = "tasks/s",
     .rep = rep_tasks_async,
     .setup = setup_task_refs,
     .teardown = teardown_task_refs,
     .baseline = "baseline_openmp_tasks_async",
     .goal = GOAL_RATIO_GE,
     .goal_value = 1.0},
    {.name = "single_client_tasks_sync",
     .unit = "tasks/s",
     .rep = rep_tasks_sync,
     .baseline = "baseline_openmp_tasks_sync",
     .goal = GOAL_GE,
     .goal_value = 2e5},
    {.name = "single_client_tasks_and_get_batch",
     .unit = "tasks/s",
     .rep = rep_tasks_batch,
     .setup = setup_task_refs,
     .teardown = teardown_task_refs},
    {.name = "multi_client_tasks_async", .unit = "tasks/s", .rep = rep_multi_client},
    {.name = "single_client_wait_1k_refs", .unit = "cycles/s", .rep = rep_wait},
    {.name = "1_1_actor_calls_sync",
     .unit = "calls/s",
     .rep = rep_actor_sync,
     .setup = setup_actors,
     .teardown = teardown_actors,
     .goal = GOAL_GE,
     .goal_value = 1e5},
    {.name = "1_1_actor_calls_async",
     .unit = "calls/s",
     .rep = rep_actor_1_1_async,
     .setup = setup_actors_and_refs,
     .teardown = teardown_actors_and_refs,
     .goal = GOAL_GE,
     .goal_value = 3e6},
    {.name = "1_n_actor_calls_async",
     .unit = "calls/s",
     .rep = rep_actor_1_n_async,
     .setup = setup_actors_and_refs,
     .teardown = teardown_actors_and_refs},
    {.name = "n_n_actor_calls_async",
     .unit = "calls/s",
     .rep = rep_actor_n_n_async,
     .setup = setup_actors,
     .teardown = teardown_actors},
    {.name = "n_n_actor_calls_with_arg_async",
     .unit = "calls/s",
     .rep = rep_actor_n_n_arg_async,
     .setup = setup_actors,
     .teardown = teardown_actors},
    {.name = "small_object_bytes",
     .unit = "bytes",
     .rep = rep_small,
     .setup = setup_small,
     .teardown = teardown_small},
    {.name = "small_object_overhead_bytes",
     .unit = "bytes",
     .from = "small_object_bytes",
     .derive = derive_overhead,
     .goal = GOAL_LE,
     .goal_value = 128},
    {.name = "single_client_put_gigabytes",
     .unit = "GB/s",
     .rep = rep_put_gb,
     .setup = setup_put_gb,
     .baseline = "baseline_memcpy_gbps",
     .goal = GOAL_RATIO_GE,
     .goal_value = 0.8},
    {.name = "put_owned_1gib_latency_us",
     .unit = "us",
     .rep = rep_put_owned,
     .setup = setup_gib,
     .reps = REPS_MANY,
     .goal = GOAL_LT,
     .goal_value = 2},
    {.name = "get_1gib_latency_us",
     .unit = "us",
     .rep = rep_get_gib,
     .setup = setup_get_gib,
     .teardown = teardown_get_gib,
     .reps = REPS_MANY,
     .goal = GOAL_LT,
     .goal_value = 2},
    {.name = "spill_gigabytes",
     .unit = "GB/s",
     .rep = rep_spill_gb,
     .setup = setup_spill,
     .teardown = teardown_spill,
     .baseline = "baseline_file_write_gbps",
     .goal = GOAL_RATIO_GE,
     .goal_value = 0.8},
    {.name = "restore_gigabytes",
     .unit = "GB/s",
     .rep = rep_restore_gb,
     .setup = setup_restore,
     .teardown = teardown_restore,
     .baseline = "baseline_file_read_gbps",
     .goal = GOAL_RATIO_GE,
     .goal_value = 0.8},
    {.name = "small_object_spill_per_s",
     .unit = "objects/s",
     .rep = rep_small_spill,
     .setup = setup_small_spill,
     .teardown = teardown_small_spill,
     .goal = GOAL_GE,
     .goal_value = 2e5},
    /* Baselines. */
    {.name = "baseline_memcpy_gbps",
     .unit = "GB/s",
     .rep = rep_memcpy,
     .setup = setup_memcpy,
     .teardown = teardown_memcpy},
    {.name = "baseline_file_write_gbps",
     .unit = "GB/s",
     .rep = rep_file_write,
     .setup = setup_file_buf,
     .teardown = teardown_file_buf},
    {.name = "baseline_file_read_gbps",
     .unit = "GB/s",
     .rep = rep_file_read,
     .setup = setup_file_read,
     .teardown = teardown_file_read},
    {.name = "baseline_openmp_tasks_async",
     .unit = "tasks/s",
     .rep = rep_omp_async,
     .setup = setup_omp,
     .reps = REPS_MANY},
    {.name = "baseline_openmp_tasks_sync",
     .unit = "tasks/s",
     .rep = rep_omp_sync,
     .setup = setup_omp},
};

#define NROWS ((int)(sizeof rows / sizeof rows[0]))

static bool g_selected[NROWS]; /* chosen by --filter, or needed by one that is */
static bool g_have[NROWS];
static double g_value[NROWS];

static int row_index(const char *name) {
  for (int i = 0; i < NROWS; i++)
    if (strcmp(rows[i].name, name) == 0) return i;
  die("internal: no row named %s", name);
}

static void run_row(int i) {
  const bench_row *b = &rows[i];
  if (b->derive) {
    int src = row_index(b->from);
    if (!g_have[src]) die("internal: %s needs %s, which has not run", b->name, b->from);
    g_value[i] = b->derive(g_value[src]);
    g_have[i] = true;
    return;
  }
  int n = b->reps == REPS_MANY ? g_opt.many_reps : g_opt.reps;
  double samples[64];
  if (n > (int)(sizeof samples / sizeof samples[0])) die("internal: too many repetitions");
  fprintf(stderr, "[ray_bench] %-30s ", b->name);
  fflush(stderr);
  uint64_t t0 = now_ns();
  void *state = b->setup ? b->setup() : NULL;
  for (int r = 0; r < n; r++) samples[r] = b->rep(state);
  if (b->teardown) b->teardown(state);
  g_value[i] = median(samples, n);
  g_have[i] = true;
  fprintf(stderr, "%.4g %s (median of %d, min %.4g, max %.4g; %.1f s)\n", g_value[i], b->unit, n,
          samples[0], samples[n - 1], secs(now_ns() - t0));
}

/* Ratio value/baseline, or NaN when there is none. */
static double row_ratio(int i) {
  if (!rows[i].baseline) return NAN;
  int b = row_index(rows[i].baseline);
  if (!g_have[i] || !g_have[b] || g_value[b] == 0) return NAN;
  return g_value[i] / g_value[b];
}

static void goal_text(const bench_row *b, char *buf, size_t n) {
  switch (b->goal) {
  case GOAL_NONE:
    snprintf(buf, n, "-");
    break;
  case GOAL_GE:
    snprintf(buf, n, ">= %g", b->goal_value);
    break;
  case GOAL_LT:
    snprintf(buf, n, "< %g", b->goal_value);
    break;
  case GOAL_LE:
    snprintf(buf, n, "<= %g", b->goal_value);
    break;
  case GOAL_RATIO_GE:
    snprintf(buf, n, "ratio >= %g", b->goal_value);
    break;
  }
}

/* "ok", "MISS", or "" when the row has no goal. */
static const char *goal_verdict(int i) {
  const bench_row *b = &rows[i];
  double v = g_value[i];
  bool ok;
  switch (b->goal) {
  case GOAL_GE:
    ok = v >= b->goal_value;
    break;
  case GOAL_LT:
    ok = v < b->goal_value;
    break;
  case GOAL_LE:
    ok = v <= b->goal_value;
    break;
  case GOAL_RATIO_GE: {
    double r = row_ratio(i);
    ok = !isnan(r) && r >= b->goal_value;
    break;
  }
  default:
    return "";
  }
  return ok ? "ok" : "MISS";
}

/* Fixed-point for readability: rates as integers, small values with 3
 * decimals. */
static void fmt_num(double v, char *buf, size_t n) {
  if (isnan(v))
    snprintf(buf, n, "-");
  else if (fabs(v) >= 1000)
    snprintf(buf, n, "%.0f", v);
  else
    snprintf(buf, n, "%.3f", v);
}

static void print_table(void) {
  printf("\n%-30s %14s %-8s %-28s %14s %8s %-12s %s\n", "metric", "value", "unit", "baseline",
         "baseline value", "ratio", "goal", "");
  for (int i = 0; i < NROWS; i++) {
    if (!g_have[i]) continue;
    const bench_row *b = &rows[i];
    char val[32], bval[32], ratio[32], goal[32];
    fmt_num(g_value[i], val, sizeof val);
    int bi = b->baseline ? row_index(b->baseline) : -1;
    fmt_num(bi >= 0 && g_have[bi] ? g_value[bi] : NAN, bval, sizeof bval);
    double r = row_ratio(i);
    if (isnan(r))
      snprintf(ratio, sizeof ratio, "-");
    else
      snprintf(ratio, sizeof ratio, "%.3f", r);
    goal_text(b, goal, sizeof goal);
    printf("%-30s %14s %-8s %-28s %14s %8s %-12s %s\n", b->name, val, b->unit,
           b->baseline ? b->baseline : "-", bval, ratio, goal, goal_verdict(i));
  }
}

static void write_json(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) die("cannot open %s: %s", path, strerror(errno));
  fprintf(f, "{\n  \"metrics\": {");
  bool first = true;
  for (int i = 0; i < NROWS; i++) {
    /* JSON has no NaN or Infinity; such a value would make the file unreadable. */
    if (!g_have[i] || !isfinite(g_value[i])) continue;
    fprintf(f, "%s\n    \"%s\": {\"value\": %.9g, \"unit\": \"%s\"", first ? "" : ",", rows[i].name,
            g_value[i], rows[i].unit);
    double r = row_ratio(i);
    if (rows[i].baseline && isfinite(r))
      fprintf(f, ", \"baseline\": \"%s\", \"ratio\": %.9g", rows[i].baseline, r);
    fputc('}', f);
    first = false;
  }
  fprintf(f, "\n  }\n}\n");
  if (ferror(f) | (fclose(f) != 0)) die("error writing %s", path);
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */
/* ------------------------------------------------------------------------ */

static void usage(FILE *to) {
  fprintf(to,
          "usage: ray_bench [--quick] [--json FILE] [--filter SUBSTR] [--workers N]\n"
          "  --quick          fewer repetitions and smaller files (about 30 s)\n"
          "  --json FILE      also write {\"metrics\": {name: {value, unit}}} to FILE\n"
          "  --filter SUBSTR  only metrics whose name contains SUBSTR (and their baselines)\n"
          "  --workers N      rayc workers, OpenMP threads, client tasks and actors (default 2,\n"
          "                   the cores of the project machine; more to see scaling)\n");
}

int cluster_bench_main(int argc, char **argv); /* cluster.c */

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--cluster") == 0) return cluster_bench_main(argc, argv);
  const char *json_path = NULL, *filter = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      g_opt.quick = true;
    } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_path = argv[++i];
    } else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
      filter = argv[++i];
    } else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
      char *end;
      long w = strtol(argv[++i], &end, 10);
      if (*end || w < 1 || w > MAX_WORKERS)
        die("--workers: '%s' is not in 1..%d", argv[i], MAX_WORKERS);
      g_opt.workers = (int)w;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "ray_bench: bad argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (!g_opt.workers) g_opt.workers = 2;
  g_opt.reps = g_opt.quick ? 3 : 5;
  g_opt.many_reps = g_opt.quick ? 5 : 21;
  g_opt.min_rep_ns = g_opt.quick ? 50000000u : 200000000u; /* 50 ms / 200 ms */
  g_opt.file_bytes = g_opt.quick ? 256 * MIB : GIB;

  /* Selection: the filter, then whatever the selected rows depend on. */
  int nsel = 0;
  for (int i = 0; i < NROWS; i++) {
    g_selected[i] = !filter || strstr(rows[i].name, filter) != NULL;
    nsel += g_selected[i];
  }
  if (nsel == 0) die("no metric name contains '%s'", filter);
  for (int i = 0; i < NROWS; i++) {
    if (!g_selected[i]) continue;
    if (rows[i].baseline) g_selected[row_index(rows[i].baseline)] = true;
    if (rows[i].from) g_selected[row_index(rows[i].from)] = true;
  }

  /* One runtime for the whole run (the spill rows swap in one with their
   * own limit and put it back). Explicit values override any RAY_*
   * environment so that runs are comparable: 4 GiB so a 1 GiB object fits
   * next to the others, 2 workers for the 2 cores (or --workers). */
  start_runtime(RUN_STORE_BYTES);

  for (int i = 0; i < NROWS; i++)
    if (g_selected[i]) run_row(i);

  RAY_CHECK(ray_shutdown());
  /* Only now are no objects left that could point into these. */
  free(g_src256);
  free(g_gib);

  printf("ray_bench: %s run, medians of %d samples (%d for latencies and OpenMP async)\n",
         g_opt.quick ? "quick" : "full", g_opt.reps, g_opt.many_reps);
  print_table();
  if (json_path) write_json(json_path);
  return 0;
}
