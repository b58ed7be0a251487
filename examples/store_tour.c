/*
 * store_tour.c - a tour of the rayc object store (`make demo` runs it).
 *
 *  1. Start a runtime whose store may hold 256 MiB of object payload.
 *  2. Hand a 128 MiB array of doubles to the store without copying it
 *     (ray_put_owned): the store now owns the buffer and frees it.
 *  3. Four threads each take a zero-copy view of the object and sum a
 *     quarter of it; every view points at the very buffer we handed over.
 *  4. Pin the object (a pinned object is never spilled to disk) and try to
 *     put 200 MiB more: 128 + 200 > 256 and nothing can make room, so the put
 *     fails with RAY_ESTOREFULL after put_timeout_ms and the store is
 *     unchanged.
 *  5. Release everything, print the store's counters, shut down.
 *
 * Only <ray.h> is used. Every check prints what went wrong and makes the
 * program exit non-zero, so it doubles as a test (CTest: example_store_tour).
 * Build by hand: cc store_tour.c $(pkg-config --cflags --libs ray) -pthread
 */
#include <ray.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MiB ((size_t)1 << 20)
#define NUM_THREADS 4

/* Prints the failed call, its status and the runtime's one-line detail. */
static bool check(ray_status s, const char *call) {
  if (s == RAY_OK) return true;
  fprintf(stderr, "store_tour: %s failed: %s (%s): %s\n", call, ray_status_name(s), ray_strerror(s),
          ray_last_error());
  return false;
}

/* What each reader thread gets and gives back. */
typedef struct reader {
  ray_ref *ref;          /* borrowed from main: main keeps it alive */
  size_t first, count;   /* the slice of elements to sum */
  double sum;            /* out */
  const void *view_data; /* out: where the view pointed */
  bool ok;               /* out */
} reader;

static void *read_quarter(void *arg) {
  reader *r = arg;
  ray_view view;
  /* ray_get is safe from any thread. Asking for ray_type_f64 makes the store
   * check the object's type: a mismatch would give RAY_ETYPE, not garbage. */
  if (!check(ray_get(r->ref, &ray_type_f64, -1, &view), "ray_get")) return NULL;
  const double *x = view.data; /* zero-copy: the store's bytes, read-only */
  double sum = 0;
  for (size_t i = r->first; i < r->first + r->count; i++) sum += x[i];
  r->sum = sum;
  r->view_data = view.data;
  r->ok = view.type == &ray_type_f64 && view.size >= (r->first + r->count) * sizeof(double);
  ray_view_release(&view); /* every view is released exactly once */
  return NULL;
}

int main(void) {
  int failures = 0;
#define EXPECT(cond, ...)                                                                          \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "store_tour: check failed: " __VA_ARGS__);                                   \
      fputc('\n', stderr);                                                                         \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

  /* 1. Start the runtime. ray_config_init gives the defaults (and applies
   * RAY_* environment overrides); we then set what this tour needs. */
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = 256 * MiB; /* payload bytes held in memory, never exceeded */
  cfg.put_timeout_ms = 200;            /* how long a put waits for room */
  if (!check(ray_init(&cfg), "ray_init")) return 1;

  /* 2. A 128 MiB buffer of doubles, filled by us, handed over without a copy.
   * After a successful ray_put_owned the store owns it and calls free() on it
   * when the last ref and view are gone: we must not free it ourselves. */
  const size_t n = 128 * MiB / sizeof(double);
  double *buf = malloc(n * sizeof(double));
  if (buf == NULL) {
    fprintf(stderr, "store_tour: out of memory\n");
    return 1;
  }
  double expected = 0;
  for (size_t i = 0; i < n; i++) {
    buf[i] = (double)(i % 1000); /* small integers: the sums are exact */
    expected += buf[i];
  }
  ray_ref *big = NULL;
  if (!check(ray_put_owned(buf, n * sizeof(double), &ray_type_f64, free, &big), "ray_put_owned")) {
    free(buf); /* on failure we still own it */
    ray_shutdown();
    return 1;
  }
  printf("put_owned: 128 MiB of f64 handed to the store, no copy\n");

  /* 3. Four threads read it in parallel, each through its own view. */
  pthread_t threads[NUM_THREADS];
  reader readers[NUM_THREADS];
  for (int t = 0; t < NUM_THREADS; t++) {
    readers[t] =
        (reader){.ref = big, .first = (size_t)t * (n / NUM_THREADS), .count = n / NUM_THREADS};
    if (pthread_create(&threads[t], NULL, read_quarter, &readers[t]) != 0) {
      fprintf(stderr, "store_tour: pthread_create failed\n");
      return 1;
    }
  }
  double total = 0;
  bool same_pointer = true;
  for (int t = 0; t < NUM_THREADS; t++) {
    pthread_join(threads[t], NULL);
    EXPECT(readers[t].ok, "reader %d did not get a valid f64 view", t);
    total += readers[t].sum;
    same_pointer = same_pointer && readers[t].view_data == (const void *)buf;
    printf("  thread %d: view data %p, sum of its quarter %.0f\n", t, readers[t].view_data,
           readers[t].sum);
  }
  EXPECT(total == expected, "total %.0f, expected %.0f", total, expected);
  EXPECT(same_pointer, "a view did not point at the buffer handed over (%p)", (void *)buf);
  printf("every view has the same data pointer as the buffer handed over (%p): %s\n", (void *)buf,
         same_pointer ? "yes" : "NO");

  /* 4. Memory limit. Under pressure the store would spill referenced objects
   * to disk to make room; a pinned (or currently viewed) object stays in
   * memory. With 128 MiB pinned, 200 MiB more cannot fit in 256 MiB, so the
   * put waits put_timeout_ms and fails with RAY_ESTOREFULL, store unchanged. */
  if (!check(ray_pin(big), "ray_pin")) failures++;
  const size_t big_size = 200 * MiB;
  void *more = calloc(1, big_size); /* calloc: untouched zero pages, cheap */
  if (more == NULL) {
    fprintf(stderr, "store_tour: out of memory\n");
    return 1;
  }
  ray_ref *too_big = NULL;
  ray_status s = ray_put(more, big_size, &ray_type_bytes, &too_big);
  printf("ray_put of 200 MiB while 128 MiB is pinned: %s\n  ray_last_error(): %s\n",
         ray_status_name(s), s == RAY_OK ? "" : ray_last_error());
  EXPECT(s == RAY_ESTOREFULL, "expected RAY_ESTOREFULL, got %s", ray_status_name(s));
  EXPECT(too_big == NULL, "a failed put must leave its output untouched");
  if (s == RAY_OK) ray_ref_release(too_big);
  free(more); /* ray_put copies (or, here, did nothing): the buffer stays ours */

  ray_stats st;
  if (check(ray_stats_get(&st), "ray_stats_get")) {
    EXPECT(st.objects == 1 && st.bytes_in_memory == n * sizeof(double),
           "after the failed put: %" PRIu64 " objects, %zu bytes in memory (store changed)",
           st.objects, st.bytes_in_memory);
  } else {
    failures++;
  }

  /* 5. Release: one unpin per pin, one release per ref. The object (and our
   * buffer, through free) goes away with its last ref. */
  if (!check(ray_unpin(big), "ray_unpin")) failures++;
  ray_ref_release(big);

  if (check(ray_stats_get(&st), "ray_stats_get")) {
    printf("stats: memory_limit %zu, bytes_in_memory %zu, objects %" PRIu64 ", puts %" PRIu64
           ", gets %" PRIu64 "\n",
           st.memory_limit, st.bytes_in_memory, st.objects, st.puts, st.gets);
    EXPECT(st.memory_limit == 256 * MiB, "memory_limit %zu", st.memory_limit);
    EXPECT(st.objects == 0 && st.bytes_in_memory == 0,
           "after releasing everything: %" PRIu64 " objects, %zu bytes still in memory", st.objects,
           st.bytes_in_memory);
    EXPECT(st.puts == 1, "puts %" PRIu64 ", expected 1 (a failed put does not count)", st.puts);
    EXPECT(st.gets >= NUM_THREADS, "gets %" PRIu64 ", expected at least %d", st.gets, NUM_THREADS);
  } else {
    failures++;
  }

  if (!check(ray_shutdown(), "ray_shutdown")) failures++;
  printf("%s\n", failures == 0 ? "store tour: all checks passed" : "store tour: FAILED");
  return failures == 0 ? 0 : 1;
#undef EXPECT
}
