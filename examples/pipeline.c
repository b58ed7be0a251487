/*
 * pipeline.c - a three-stage task pipeline that passes objects by ref.
 *
 *   stage 1  generate(c)   16 tasks, each returns chunk c: the i64 values
 *                          c*LEN .. c*LEN + LEN-1
 *   stage 2  square(ref)   one task per chunk, started as soon as its stage-1
 *                          chunk exists (the dependency is the ref argument);
 *                          returns the chunk's squares
 *   stage 3  sum(refs...)  fan-in: the driver takes stage-2 results in the
 *                          order they finish (ray_wait, num_ready 1) and, every
 *                          4 results, submits a sum over them; a last sum adds
 *                          the partial sums
 *
 * The driver never copies a chunk: it passes refs from stage to stage and only
 * peeks at each stage-2 result (a zero-copy ray_get) to check it. The answer,
 * the sum of i^2 for i < 16*LEN, is checked against n(n-1)(2n-1)/6.
 *
 * Only <ray.h> is used. Every check prints what went wrong and makes the
 * program exit non-zero, so it doubles as a test (CTest: example_pipeline).
 * Build by hand: cc pipeline.c $(pkg-config --cflags --libs ray) -pthread
 */
#include <ray.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NUM_CHUNKS 16
#define CHUNK_LEN 65536 /* i64 elements per chunk: 512 KiB */
#define FAN_IN 4        /* stage-2 results per stage-3 sum */

static bool check(ray_status s, const char *call) {
  if (s == RAY_OK) return true;
  fprintf(stderr, "pipeline: %s failed: %s (%s): %s\n", call, ray_status_name(s), ray_strerror(s),
          ray_last_error());
  return false;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------------ */
/* The three stages. A task that returns an error status fails; the runtime  */
/* records the reason (ray_last_error() or ray_ctx_fail's text) and every    */
/* task that depends on its result fails with a message naming it.          */
/* ------------------------------------------------------------------------ */

/* Stage 1. Arg 0: the chunk index (i64 value). Returns CHUNK_LEN i64s. */
static ray_status generate(ray_ctx *ctx) {
  int64_t c;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &c); /* type-checked: one i64 */
  if (s != RAY_OK) return s;
  int64_t *x = malloc(CHUNK_LEN * sizeof *x);
  if (x == NULL) return ray_ctx_fail(ctx, "out of memory for chunk %" PRId64, c);
  for (int64_t j = 0; j < CHUNK_LEN; j++) x[j] = c * CHUNK_LEN + j;
  /* Hand the buffer to the store, no copy: it calls free() when the object
   * is gone. On an error we still own it. */
  s = ray_ctx_return_owned(ctx, 0, x, CHUNK_LEN * sizeof *x, &ray_type_i64, free);
  if (s != RAY_OK) free(x);
  return s;
}

/* Stage 2. Arg 0: a stage-1 chunk (by ref). Returns its squares. */
static ray_status square(ray_ctx *ctx) {
  ray_view in;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_i64, &in); /* zero-copy */
  if (s != RAY_OK) return s;
  size_t n = in.size / sizeof(int64_t);
  /* Another way to avoid a copy: write the result straight into a store
   * object (ray_create), seal it, and return that object. */
  void *buf;
  ray_ref *out;
  if ((s = ray_create(in.size, &ray_type_i64, &buf, &out)) != RAY_OK) return s;
  const int64_t *x = in.data;
  int64_t *y = buf;
  for (size_t j = 0; j < n; j++) y[j] = x[j] * x[j];
  if ((s = ray_seal(out)) == RAY_OK) s = ray_ctx_return_ref(ctx, 0, out);
  ray_ref_release(out); /* the return keeps the object alive */
  return s;
}

/* Stage 3. Any number of i64 arrays (by ref): returns the sum of all their
 * elements as one i64. Used for the partial sums and the final sum. */
static ray_status sum(ray_ctx *ctx) {
  int64_t total = 0;
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) {
    ray_view v;
    ray_status s = ray_ctx_arg(ctx, i, &ray_type_i64, &v);
    if (s != RAY_OK) return s;
    const int64_t *x = v.data;
    for (size_t j = 0; j < v.size / sizeof(int64_t); j++) total += x[j];
  }
  return ray_ctx_return_i64(ctx, 0, total);
}

/* Submits sum over n refs (each passed by ref); NULL on error. A count
 * known only at run time needs the plain call with an array of ray_args;
 * the task is named "sum" after its function all the same. */
static ray_ref *submit_sum(ray_ref *const refs[], size_t n) {
  ray_arg args[NUM_CHUNKS];
  for (size_t i = 0; i < n; i++) args[i] = ray_arg_ref(refs[i]);
  ray_ref *out = NULL;
  return check(ray_submit(sum, args, n, NULL, &out), "ray_submit(sum)") ? out : NULL;
}

int main(void) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = 256u << 20; /* 16 chunks x 2 stages x 512 KiB fit easily */
  if (!check(ray_init(&cfg), "ray_init")) return 1;
  int failures = 0;
  double t0 = now_ms();

  /* Stages 1 and 2 are submitted at once: each square task waits for its own
   * generate task, not for the whole stage. We release the stage-1 refs right
   * away: the square tasks hold their own references to their arguments. */
  ray_ref *pending[NUM_CHUNKS]; /* stage-2 results not handled yet */
  int64_t pending_chunk[NUM_CHUNKS];
  size_t num_pending = 0;
  for (int64_t c = 0; c < NUM_CHUNKS; c++) {
    ray_ref *chunk, *squared;
    /* c goes by value (copied), chunk by reference: square waits for it. */
    if (!check(RAY_SUBMIT(&chunk, generate, c), "RAY_SUBMIT(generate)")) {
      failures++;
      break;
    }
    bool ok = check(RAY_SUBMIT(&squared, square, chunk), "RAY_SUBMIT(square)");
    ray_ref_release(chunk);
    if (!ok) {
      failures++;
      break;
    }
    pending[num_pending] = squared;
    pending_chunk[num_pending++] = c;
  }

  /* Stage 3, fed as stage-2 results finish. ray_wait with num_ready 1
   * returns as soon as one (or more) of the pending refs is ready and marks
   * every ready one; we handle those and drop them from the pending set
   * (swap with the last), then wait again on the rest. */
  ray_ref *batch[FAN_IN];
  size_t batch_len = 0;
  ray_ref *partials[NUM_CHUNKS];
  size_t num_partials = 0;
  int64_t order[NUM_CHUNKS];
  size_t handled = 0;
  while (num_pending > 0 && failures == 0) {
    bool ready[NUM_CHUNKS];
    ray_status s = ray_wait(pending, num_pending, 1, 10000, ready);
    if (!check(s, "ray_wait")) { /* RAY_ETIMEOUT: nothing finished in 10 s */
      failures++;
      break;
    }
    for (size_t i = 0; i < num_pending;) {
      if (!ready[i]) {
        i++;
        continue;
      }
      ray_ref *r = pending[i];
      int64_t c = pending_chunk[i];
      num_pending--; /* remove entry i: move the last one into its place */
      pending[i] = pending[num_pending];
      pending_chunk[i] = pending_chunk[num_pending];
      ready[i] = ready[num_pending];

      /* "Ready" includes failed: a get tells which, with the reason. The
       * object is ready, so a 0 ms timeout never waits. */
      ray_view v;
      if (!check(ray_get(r, &ray_type_i64, 0, &v), "ray_get(square)")) {
        failures++;
        ray_ref_release(r);
        continue;
      }
      const int64_t *y = v.data;
      int64_t first = c * CHUNK_LEN, last = first + CHUNK_LEN - 1;
      if (v.size != CHUNK_LEN * sizeof(int64_t) || y[0] != first * first ||
          y[CHUNK_LEN - 1] != last * last) {
        fprintf(stderr, "pipeline: chunk %" PRId64 " of stage 2 is wrong\n", c);
        failures++;
      }
      ray_view_release(&v);
      order[handled++] = c;

      batch[batch_len++] = r; /* the batch owns r now */
      if (batch_len == FAN_IN || num_pending == 0) {
        ray_ref *p = submit_sum(batch, batch_len);
        if (p == NULL)
          failures++;
        else
          partials[num_partials++] = p;
        for (size_t k = 0; k < batch_len; k++) ray_ref_release(batch[k]); /* sum holds its own */
        batch_len = 0;
      }
    }
  }
  for (size_t i = 0; i < num_pending; i++) ray_ref_release(pending[i]); /* after an error */
  for (size_t k = 0; k < batch_len; k++) ray_ref_release(batch[k]);

  /* The final fan-in: one sum over the partial sums. */
  int64_t total = 0;
  if (failures == 0) {
    ray_ref *final = submit_sum(partials, num_partials);
    if (final == NULL || !check(ray_get_i64(final, -1, &total), "ray_get_i64(final sum)"))
      failures++;
    ray_ref_release(final);
  }
  for (size_t i = 0; i < num_partials; i++) ray_ref_release(partials[i]);
  double elapsed = now_ms() - t0;

  /* sum of i^2 for 0 <= i < n is n(n-1)(2n-1)/6; n(n-1)/2 is exact, and the
   * rest divides by 3 exactly. Fits in i64 (about 3.8e17). */
  const int64_t n = (int64_t)NUM_CHUNKS * CHUNK_LEN;
  const int64_t expected = n * (n - 1) / 2 * (2 * n - 1) / 3;
  if (failures == 0 && total != expected) {
    fprintf(stderr, "pipeline: total %" PRId64 ", expected %" PRId64 "\n", total, expected);
    failures++;
  }

  ray_stats st = {0};
  if (check(ray_stats_get(&st), "ray_stats_get")) {
    /* 16 generate + 16 square + 4 partial sums + 1 final sum */
    uint64_t want = 2 * NUM_CHUNKS + (NUM_CHUNKS + FAN_IN - 1) / FAN_IN + 1;
    if (failures == 0 && (st.tasks_finished != want || st.tasks_failed != 0)) {
      fprintf(stderr,
              "pipeline: tasks_finished %" PRIu64 " (expected %" PRIu64 "), failed %" PRIu64 "\n",
              st.tasks_finished, want, st.tasks_failed);
      failures++;
    }
  } else {
    failures++;
  }
  if (!check(ray_shutdown(), "ray_shutdown")) failures++;

  printf("stage 2 results handled in finishing order:");
  for (size_t i = 0; i < handled; i++) printf(" %" PRId64, order[i]);
  printf("\n%d chunks x %d i64 -> %d squares -> %zu partial sums (fan-in %d) -> 1 total; "
         "%" PRIu64 " tasks\n",
         NUM_CHUNKS, CHUNK_LEN, NUM_CHUNKS, num_partials, FAN_IN, st.tasks_finished);
  printf("pipeline: sum of i^2 for i < %" PRId64 " = %" PRId64 " (expected %" PRId64
         "): %s, %.1f ms\n",
         n, total, expected, failures == 0 ? "all checks passed" : "FAILED", elapsed);
  return failures == 0 ? 0 : 1;
}
