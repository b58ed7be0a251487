/*
 * param_server.c - Ray's parameter-server pattern: synchronous data-parallel
 * gradient descent on a synthetic linear regression.
 *
 *   data        y = X w* + noise, 10 features, 8 shards of 1000 rows,
 *               generated from a fixed seed and put in the store once
 *   server      a "ParameterServer" actor holds the weights w
 *   iteration   1. w_ref = server.get_weights()            (actor call)
 *               2. g[s]  = gradient(w_ref, data, s)        (8 tasks, one per
 *                          shard; they start as soon as w_ref is ready)
 *               3. mse   = server.apply_gradients(g[0..7]) (actor call: the
 *                          gradients go to the actor by ref, the driver never
 *                          reads them)
 *               4. the driver reads mse and stops once it is below the target
 *
 * The server's calls from the driver run in the order they were made, so each
 * get_weights sees the update of the previous apply_gradients. The example
 * fails (exit 1) if the error is not below MSE_TARGET within MAX_ITERS
 * iterations, or if the learnt weights are not close to w*.
 *
 * Only <ray.h> is used (no libm). Every check prints what went wrong and
 * makes the program exit non-zero, so it doubles as a test (CTest:
 * example_param_server).
 * Build by hand: cc param_server.c $(pkg-config --cflags --libs ray) -pthread
 */
#include <ray.h>

#include <inttypes.h>
#include <stdio.h>

#define D 10            /* features */
#define NUM_SHARDS 8    /* gradient tasks per iteration */
#define SHARD_ROWS 1000 /* rows per shard */
#define NUM_ROWS (NUM_SHARDS * SHARD_ROWS)
#define NOISE 0.1           /* standard deviation of the label noise */
#define LEARNING_RATE 0.5   /* step size of gradient descent */
#define MSE_TARGET 0.0105   /* the noise alone gives NOISE^2 = 0.01 */
#define MAX_ITERS 100       /* iteration budget */
#define MAX_WEIGHT_ERR 0.02 /* |w - w*| per coordinate at the end */

static bool check(ray_status s, const char *call) {
  if (s == RAY_OK) return true;
  fprintf(stderr, "param_server: %s failed: %s (%s): %s\n", call, ray_status_name(s),
          ray_strerror(s), ray_last_error());
  return false;
}

/* Object types, checked by the store on every typed read. */
typedef struct row {
  double x[D];
  double y;
} row;
typedef struct weights {
  double w[D];
  int64_t version; /* number of updates applied */
} weights;
typedef struct gradient_sum {
  double g[D];     /* sum over the shard's rows of d(r^2)/dw = 2 r x */
  double sq_err;   /* sum of r^2, r = x.w - y */
  int64_t rows;    /* rows in the shard */
  int64_t version; /* of the weights it was computed with */
} gradient_sum;
static RAY_DEFINE_TYPE(row_type, row, "row");
static RAY_DEFINE_TYPE(weights_type, weights, "weights");
static RAY_DEFINE_TYPE(gradient_type, gradient_sum, "gradient");

/* A small deterministic generator (splitmix64): same data on every run. */
static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}
static double uniform(uint64_t *s) { /* [-1, 1) */
  return (double)(next_u64(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}
static double normal(uint64_t *s) { /* approximately N(0, 1): 12 uniforms in [0,1) */
  double sum = 0;
  for (int i = 0; i < 12; i++) sum += (uniform(s) + 1) / 2;
  return sum - 6;
}

/* ------------------------------------------------------------------------ */
/* The ParameterServer actor                                                */
/* ------------------------------------------------------------------------ */

typedef struct server {
  weights current; /* starts at zero: the state block is zeroed */
  double lr;
} server;

/* Constructor argument 0: the learning rate (f64). */
static ray_status server_start(void *state, ray_ctx *ctx) {
  server *ps = state;
  return ray_ctx_arg_f64(ctx, 0, &ps->lr);
}

/* "get_weights": a copy of the current weights (88 bytes). */
static ray_status server_get_weights(void *state, ray_ctx *ctx) {
  server *ps = state;
  return ray_ctx_return(ctx, 0, &ps->current, sizeof ps->current, &weights_type);
}

/* "apply_gradients": args are gradients (by ref), one per shard, all for the
 * current weights. Averages them, takes one step, and returns the mean
 * squared error the gradients were computed at (f64). */
static ray_status server_apply_gradients(void *state, ray_ctx *ctx) {
  server *ps = state;
  double g[D] = {0}, sq_err = 0;
  int64_t rows = 0;
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) {
    ray_view v;
    ray_status s = ray_ctx_arg(ctx, i, &gradient_type, &v);
    if (s != RAY_OK) return s; /* fails this call only; the weights stay as they are */
    const gradient_sum *gi = v.data;
    if (gi->version != ps->current.version)
      return ray_ctx_fail(ctx, "gradient %zu is for weights v%" PRId64 ", current is v%" PRId64, i,
                          gi->version, ps->current.version);
    for (int j = 0; j < D; j++) g[j] += gi->g[j];
    sq_err += gi->sq_err;
    rows += gi->rows;
  }
  if (rows == 0) return ray_ctx_fail(ctx, "no gradients");
  for (int j = 0; j < D; j++) ps->current.w[j] -= ps->lr * g[j] / (double)rows;
  ps->current.version++;
  return ray_ctx_return_f64(ctx, 0, sq_err / (double)rows);
}

enum { GET_WEIGHTS, APPLY_GRADIENTS }; /* method indices */
static const ray_method server_methods[] = {{"get_weights", server_get_weights},
                                            {"apply_gradients", server_apply_gradients}};
static const ray_actor_class server_class = {
    "ParameterServer", sizeof(server), server_start, NULL, server_methods, 2};

/* ------------------------------------------------------------------------ */
/* The worker task                                                          */
/* ------------------------------------------------------------------------ */

/* Args: 0 the weights (by ref, from get_weights), 1 the whole dataset (by
 * ref, read zero-copy), 2 the shard index (i64 value). */
static ray_status gradient(ray_ctx *ctx) {
  ray_view wv, dv;
  int64_t shard;
  ray_status s;
  if ((s = ray_ctx_arg(ctx, 0, &weights_type, &wv)) != RAY_OK ||
      (s = ray_ctx_arg(ctx, 1, &row_type, &dv)) != RAY_OK ||
      (s = ray_ctx_arg_i64(ctx, 2, &shard)) != RAY_OK)
    return s;
  const weights *w = wv.data;
  if (shard < 0 || (size_t)(shard + 1) * SHARD_ROWS > dv.size / sizeof(row))
    return ray_ctx_fail(ctx, "no shard %" PRId64, shard);

  const row *rows = (const row *)dv.data + shard * SHARD_ROWS;
  gradient_sum out = {.rows = SHARD_ROWS, .version = w->version};
  for (int i = 0; i < SHARD_ROWS; i++) {
    double r = -rows[i].y;
    for (int j = 0; j < D; j++) r += rows[i].x[j] * w->w[j];
    for (int j = 0; j < D; j++) out.g[j] += 2 * r * rows[i].x[j];
    out.sq_err += r * r;
  }
  return ray_ctx_return(ctx, 0, &out, sizeof out, &gradient_type);
}

/* ------------------------------------------------------------------------ */

/* One iteration: get_weights -> NUM_SHARDS gradient tasks -> apply_gradients.
 * Returns the error before the step through *mse. */
static bool iterate(ray_actor *ps, ray_ref *data, double *mse) {
  ray_ref *w = NULL, *grads[NUM_SHARDS], *result = NULL;
  size_t n = 0;
  bool ok = check(RAY_CALL(&w, ps, GET_WEIGHTS), "RAY_CALL(get_weights)");
  for (int64_t s = 0; ok && s < NUM_SHARDS; s++) {
    ok = check(RAY_SUBMIT(&grads[n], gradient, w, data, s), "RAY_SUBMIT(gradient)");
    if (ok) n++;
  }
  if (ok) {
    ray_arg args[NUM_SHARDS];
    for (size_t i = 0; i < n; i++) args[i] = ray_arg_ref(grads[i]);
    ok = check(ray_actor_call(ps, APPLY_GRADIENTS, args, n, &result),
               "ray_actor_call(apply_gradients)");
  }
  /* The tasks and the call hold their own references to their arguments. */
  ray_ref_release(w);
  for (size_t i = 0; i < n; i++) ray_ref_release(grads[i]);
  ok = ok && check(ray_get_f64(result, -1, mse), "ray_get_f64"); /* a failed gradient shows here */
  ray_ref_release(result);
  return ok;
}

int main(void) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = 64u << 20;
  if (!check(ray_init(&cfg), "ray_init")) return 1;
  int failures = 0;

  /* The data, written in place into one store object: row i of shard s is
   * row s*SHARD_ROWS + i. */
  uint64_t seed = 42;
  double w_true[D];
  for (int j = 0; j < D; j++) w_true[j] = 2 * uniform(&seed); /* in [-2, 2) */
  void *buf;
  ray_ref *data = NULL;
  if (!check(ray_create(NUM_ROWS * sizeof(row), &row_type, &buf, &data), "ray_create")) {
    ray_shutdown();
    return 1;
  }
  row *rows = buf;
  for (int i = 0; i < NUM_ROWS; i++) {
    rows[i].y = NOISE * normal(&seed);
    for (int j = 0; j < D; j++) {
      rows[i].x[j] = uniform(&seed);
      rows[i].y += rows[i].x[j] * w_true[j];
    }
  }
  if (!check(ray_seal(data), "ray_seal")) {
    ray_ref_release(data);
    ray_shutdown();
    return 1;
  }

  /* The server, constructed with the learning rate. */
  ray_actor *ps = NULL;
  if (!check(RAY_ACTOR_CREATE(&ps, &server_class, LEARNING_RATE), "RAY_ACTOR_CREATE")) {
    ray_ref_release(data);
    ray_shutdown();
    return 1;
  }

  printf("linear regression: %d rows x %d features in %d shards, noise sd %.2f, lr %.2f\n",
         NUM_ROWS, D, NUM_SHARDS, NOISE, LEARNING_RATE);
  double mse = 0;
  int iters = 0;
  bool converged = false;
  for (int it = 0; it < MAX_ITERS && !converged; it++) {
    if (!iterate(ps, data, &mse)) {
      failures++;
      break;
    }
    iters = it + 1;
    converged = mse < MSE_TARGET; /* the error of the weights this iteration started from */
    if (it % 5 == 0 || converged) printf("  iteration %3d: mse %.6f\n", it, mse);
  }
  if (failures == 0 && !converged) {
    fprintf(stderr, "param_server: mse %.6f still >= %.4f after %d iterations\n", mse, MSE_TARGET,
            iters);
    failures++;
  }

  /* Compare the learnt weights with the true ones. */
  double max_err = 0;
  ray_ref *wref = NULL;
  ray_view wv;
  if (check(RAY_CALL(&wref, ps, GET_WEIGHTS), "RAY_CALL(get_weights)") &&
      check(ray_get(wref, &weights_type, -1, &wv), "ray_get(weights)")) {
    const weights *w = wv.data;
    for (int j = 0; j < D; j++) {
      double e = w->w[j] - w_true[j];
      if (e < 0) e = -e;
      if (e > max_err) max_err = e;
    }
    ray_view_release(&wv);
    if (max_err > MAX_WEIGHT_ERR) {
      fprintf(stderr, "param_server: weights off by up to %.4f (allowed %.4f)\n", max_err,
              MAX_WEIGHT_ERR);
      failures++;
    }
  } else {
    failures++;
  }
  ray_ref_release(wref);

  ray_stats st = {0};
  if (!check(ray_stats_get(&st), "ray_stats_get")) failures++;
  printf("%d iterations: %" PRIu64 " gradient tasks, %" PRIu64 " actor calls, "
         "max |w - w*| = %.4f\n",
         iters, st.tasks_finished, st.actor_calls, max_err);

  ray_actor_release(ps);
  ray_ref_release(data);
  if (!check(ray_shutdown(), "ray_shutdown")) failures++;
  printf("param_server: mse %.6f %s %.4f after %d iterations: %s\n", mse,
         converged ? "<" : ">=", MSE_TARGET, iters, failures == 0 ? "all checks passed" : "FAILED");
  return failures == 0 ? 0 : 1;
}
