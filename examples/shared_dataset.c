/*
 * shared_dataset.c - one large dataset, built once by an actor, read
 * zero-copy by many tasks (`make demo` runs it first).
 *
 *  1. Start a runtime with a 1 GiB object store and one worker per CPU.
 *  2. Create a "Dataset" actor. Its on_start builds 256 MiB of doubles in
 *     place: ray_create reserves the object, on_start fills it, ray_seal makes
 *     it immutable. The bytes are written once and never copied. The actor
 *     keeps the ref in its state and releases it in on_stop.
 *  3. Call the actor's "ref" method. It answers with ray_ctx_return_ref: the
 *     reply is the dataset object itself (same bytes), not a copy.
 *  4. Submit 64 tasks, each with two arguments: the dataset ref (read
 *     zero-copy by the task) and a small value, its slice (first, count).
 *     Each returns the sum, min and max of its slice. The driver does not wait
 *     for the actor's reply first: the tasks wait for it themselves.
 *  5. Combine the partial results and check them against the closed form:
 *     x[i] = i gives sum N(N-1)/2, min 0 and max N-1 (exact in doubles).
 *  6. Print ray_stats: bytes_in_memory counts the dataset once, however many
 *     tasks read it.
 *  7. Release everything. The actor ends with its last handle, its on_stop
 *     releases the dataset and the store is empty again. Shut down.
 *
 * Only <ray.h> is used. Every check prints what went wrong and makes the
 * program exit non-zero, so it doubles as a test (CTest: example_shared_dataset).
 * Build by hand: cc shared_dataset.c $(pkg-config --cflags --libs ray) -pthread
 */
#include <ray.h>

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
#define DATASET_BYTES (256 * MiB)
#define NUM_ELEMS ((int64_t)(DATASET_BYTES / sizeof(double)))
#define NUM_TASKS 64

/* Prints the failed call, its status and the runtime's one-line detail. */
static bool check(ray_status s, const char *call) {
  if (s == RAY_OK) return true;
  fprintf(stderr, "shared_dataset: %s failed: %s (%s): %s\n", call, ray_status_name(s),
          ray_strerror(s), ray_last_error());
  return false;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Our own object types. The store checks them on every typed read, so a task
 * handed the wrong object gets RAY_ETYPE instead of garbage. Static storage:
 * the runtime keeps the pointers. */
typedef struct slice {
  int64_t first, count; /* elements [first, first + count) */
} slice;
typedef struct slice_stats {
  double sum, min, max;
  int64_t count;
  uint64_t data_addr; /* where the task's view of the dataset pointed */
} slice_stats;
static RAY_DEFINE_TYPE(slice_type, slice, "slice");
static RAY_DEFINE_TYPE(slice_stats_type, slice_stats, "slice_stats");

/* ------------------------------------------------------------------------ */
/* The Dataset actor                                                        */
/* ------------------------------------------------------------------------ */

typedef struct dataset {
  ray_ref *data; /* the dataset object; released in on_stop */
} dataset;

/* Constructor argument 0: the number of elements (i64). Builds the dataset.
 * If this fails, the actor ends and every call to it fails RAY_EACTOR with
 * our reason. */
static ray_status dataset_start(void *state, ray_ctx *ctx) {
  dataset *ds = state;
  int64_t n;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &n);
  if (s != RAY_OK) return s; /* the runtime records ray_last_error() as the reason */

  /* Reserve n doubles in the store and write them in place. Until ray_seal,
   * a ray_get of this object would block. */
  void *buf;
  s = ray_create((size_t)n * sizeof(double), &ray_type_f64, &buf, &ds->data);
  if (s != RAY_OK) return s; /* e.g. RAY_ESTOREFULL: more than object_store_memory */
  double *x = buf;
  for (int64_t i = 0; i < n; i++) x[i] = (double)i;
  s = ray_seal(ds->data);
  if (s != RAY_OK) {
    ray_ref_release(ds->data); /* frees the unsealed object */
    ds->data = NULL;
    return s;
  }
  return RAY_OK;
}

/* Runs once when the actor ends: drop our ref. The object itself lives on
 * while anyone else (the driver, a task) still holds a ref or view of it. */
static void dataset_stop(void *state, ray_ctx *ctx) {
  (void)ctx;
  dataset *ds = state;
  ray_ref_release(ds->data);
  ds->data = NULL;
}

/* "ref": returns the dataset object itself, no copy. */
static ray_status dataset_ref(void *state, ray_ctx *ctx) {
  dataset *ds = state;
  return ray_ctx_return_ref(ctx, 0, ds->data);
}

enum { DATASET_REF }; /* method indices */
static const ray_method dataset_methods[] = {{"ref", dataset_ref}};
static const ray_actor_class dataset_class = {"Dataset",    sizeof(dataset), dataset_start,
                                              dataset_stop, dataset_methods, 1};

/* ------------------------------------------------------------------------ */
/* The task                                                                 */
/* ------------------------------------------------------------------------ */

/* Args: 0 the dataset (f64, by ref), 1 a slice (by value).
 * Returns one slice_stats. */
static ray_status slice_stats_task(ray_ctx *ctx) {
  ray_view data, sv;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_f64, &data); /* zero-copy, borrowed */
  if (s != RAY_OK) return s;
  if ((s = ray_ctx_arg(ctx, 1, &slice_type, &sv)) != RAY_OK) return s;
  slice sl = *(const slice *)sv.data;
  int64_t n = (int64_t)(data.size / sizeof(double));
  if (sl.first < 0 || sl.count <= 0 || sl.first + sl.count > n)
    return ray_ctx_fail(ctx, "slice [%" PRId64 ", +%" PRId64 ") outside the %" PRId64 " elements",
                        sl.first, sl.count, n);

  const double *x = (const double *)data.data + sl.first; /* the store's bytes */
  slice_stats out = {0, x[0], x[0], sl.count, (uint64_t)(uintptr_t)data.data};
  for (int64_t i = 0; i < sl.count; i++) {
    out.sum += x[i];
    if (x[i] < out.min) out.min = x[i];
    if (x[i] > out.max) out.max = x[i];
  }
  /* Borrowed views need no release; a small result is simply copied. */
  return ray_ctx_return(ctx, 0, &out, sizeof out, &slice_stats_type);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  int failures = 0;
#define EXPECT(cond, ...)                                                                          \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "shared_dataset: check failed: " __VA_ARGS__);                               \
      fputc('\n', stderr);                                                                         \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

  /* 1. Runtime: 1 GiB of store, num_workers 0 = one worker per online CPU. */
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 0;
  cfg.object_store_memory = 1024 * MiB;
  if (!check(ray_init(&cfg), "ray_init")) return 1;
  double t0 = now_ms();

  /* 2. The actor builds the dataset in its on_start (asynchronously). */
  ray_actor *ds = NULL;
  if (!check(RAY_ACTOR_CREATE(&ds, &dataset_class, NUM_ELEMS), "RAY_ACTOR_CREATE")) {
    ray_shutdown();
    return 1;
  }

  /* 3. Ask for the dataset. This returns at once with a ref that becomes
   * ready when the method has run (after on_start). */
  ray_ref *data = NULL;
  if (!check(RAY_CALL(&data, ds, DATASET_REF), "RAY_CALL(ref)")) {
    ray_actor_release(ds);
    ray_shutdown();
    return 1;
  }

  /* 4. Fan out: each task gets the dataset by ref and its slice by value
   * (a struct of our own type goes as a ray_arg). */
  ray_ref *parts[NUM_TASKS] = {0};
  int submitted = 0;
  /* Zero copy means reading the bytes where they are: under mpirun the tasks
   * stay on this rank, with the dataset (in-process this changes nothing). */
  ray_task_opts here = RAY_TASK_OPTS_INIT;
  here.node = RAY_NODE(ray_node_rank());
  for (int t = 0; t < NUM_TASKS; t++) {
    slice sl = {t * (NUM_ELEMS / NUM_TASKS), NUM_ELEMS / NUM_TASKS};
    if (t == NUM_TASKS - 1) sl.count = NUM_ELEMS - sl.first; /* the rest */
    ray_arg sl_arg = ray_arg_value(&sl, sizeof sl, &slice_type);
    if (!check(RAY_SUBMIT_OPTS(&here, &parts[t], slice_stats_task, data, sl_arg),
               "RAY_SUBMIT_OPTS")) {
      failures++;
      break;
    }
    submitted++;
  }

  /* 5. Combine: one batch get of every result (it waits until each task has
   * finished). Failures of the actor (on_start) or of a task show up here,
   * with their reason and the index of the first result that has one. */
  double sum = 0, min = 0, max = 0;
  int64_t count = 0;
  uint64_t first_addr = 0;
  bool same_bytes = true;
  ray_view v[NUM_TASKS];
  if (failures == 0 &&
      check(ray_get_many(parts, (size_t)submitted, &slice_stats_type, -1, v), "ray_get_many")) {
    for (int t = 0; t < submitted; t++) {
      const slice_stats *p = v[t].data;
      sum += p->sum;
      min = (t == 0 || p->min < min) ? p->min : min;
      max = (t == 0 || p->max > max) ? p->max : max;
      count += p->count;
      if (t == 0) first_addr = p->data_addr;
      same_bytes = same_bytes && p->data_addr == first_addr;
      ray_view_release(&v[t]);
    }
  } else {
    failures++;
  }
  double elapsed = now_ms() - t0;
  if (failures > 0) { /* a submit or get failed (reported above): nothing to check */
    for (int t = 0; t < submitted; t++) ray_ref_release(parts[t]);
    ray_ref_release(data);
    ray_actor_release(ds);
    ray_shutdown();
    fprintf(stderr, "shared_dataset: FAILED\n");
    return 1;
  }

  /* The closed form: 0 + 1 + ... + (N-1). Every partial sum is an integer
   * below 2^53, so the double arithmetic is exact. */
  double expected = (double)NUM_ELEMS * (double)(NUM_ELEMS - 1) / 2;
  printf("dataset: %" PRId64 " doubles (%zu MiB), built once by actor 'Dataset'\n", NUM_ELEMS,
         DATASET_BYTES / MiB);
  printf("%d tasks over zero-copy slices: sum %.0f (expected %.0f), min %.0f, max %.0f, "
         "%" PRId64 " elements\n",
         submitted, sum, expected, min, max, count);
  EXPECT(sum == expected, "sum %.0f, expected %.0f", sum, expected);
  EXPECT(min == 0 && max == (double)(NUM_ELEMS - 1), "min %.0f max %.0f, expected 0 and %" PRId64,
         min, max, NUM_ELEMS - 1);
  EXPECT(count == NUM_ELEMS, "the slices covered %" PRId64 " elements, not %" PRId64, count,
         NUM_ELEMS);

  /* Zero copy: the driver's view, and every task's view, point at the same
   * bytes, the ones on_start wrote. */
  ray_view dv;
  if (check(ray_get(data, &ray_type_f64, -1, &dv), "ray_get(dataset)")) {
    EXPECT(same_bytes && first_addr == (uint64_t)(uintptr_t)dv.data,
           "the tasks read copies: addresses %#" PRIx64 " vs the driver's %p", first_addr, dv.data);
    printf("every task read the same bytes as the driver's view (%p): %s\n", dv.data,
           same_bytes && first_addr == (uint64_t)(uintptr_t)dv.data ? "yes" : "NO");
    ray_view_release(&dv);
  } else {
    failures++;
  }

  /* 6. The store counts the dataset once: the actor's ref, the reply of
   * "ref" (ray_ctx_return_ref shares the bytes), the tasks' arguments and
   * the driver's view are all the same object. The 64 small results add a
   * few bytes at most. */
  ray_stats st;
  if (check(ray_stats_get(&st), "ray_stats_get")) {
    printf("stats: bytes_in_memory %zu (dataset %zu, limit %zu), objects %" PRIu64
           ", tasks_finished %" PRIu64 ", actor_calls %" PRIu64 ", actors_alive %" PRIu64 "\n",
           st.bytes_in_memory, DATASET_BYTES, st.memory_limit, st.objects, st.tasks_finished,
           st.actor_calls, st.actors_alive);
    EXPECT(st.bytes_in_memory >= DATASET_BYTES && st.bytes_in_memory < DATASET_BYTES + MiB,
           "bytes_in_memory %zu: the dataset (%zu) is not counted exactly once", st.bytes_in_memory,
           DATASET_BYTES);
    EXPECT(st.tasks_finished == NUM_TASKS, "tasks_finished %" PRIu64 ", expected %d",
           st.tasks_finished, NUM_TASKS);
    EXPECT(st.actor_calls == 1, "actor_calls %" PRIu64 ", expected 1", st.actor_calls);
  } else {
    failures++;
  }

  /* 7. Release every handle. Releasing the actor's last handle ends it (after
   * its queued calls); its on_stop then drops the dataset. Stats settle a
   * moment later, so wait for that (bounded) instead of checking at once. */
  for (int t = 0; t < submitted; t++) ray_ref_release(parts[t]);
  ray_ref_release(data);
  ray_actor_release(ds);
  bool empty = false;
  for (int i = 0; i < 5000 && !empty; i++) {
    if (!check(ray_stats_get(&st), "ray_stats_get")) break;
    empty = st.objects == 0 && st.bytes_in_memory == 0 && st.actors_alive == 0;
    if (!empty) usleep(1000);
  }
  EXPECT(empty, "after releasing everything: %" PRIu64 " objects, %zu bytes, %" PRIu64 " actors",
         st.objects, st.bytes_in_memory, st.actors_alive);
  printf("after release: the actor ended, on_stop released the dataset, store empty: %s\n",
         empty ? "yes" : "NO");

  if (!check(ray_shutdown(), "ray_shutdown")) failures++;
  printf("shared_dataset: %s (%.0f ms from actor creation to the combined result)\n",
         failures == 0 ? "all checks passed" : "FAILED", elapsed);
  return failures == 0 ? 0 : 1;
#undef EXPECT
}
