/*
 * stress_fns.c - the code ray_stress runs inside the runtime: task functions
 * that are pure functions of their arguments (so the model in stress_ops.c
 * can compute every result), the Counter actor, and the payload generator
 * and checksum that the model and the tasks share.
 *
 * Only flaky, nested and Counter.on_start touch state outside their
 * arguments, each through an atomic counter explained where it is declared.
 */
#define _GNU_SOURCE
#include "stress.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Payloads                                                                  */
/* ------------------------------------------------------------------------ */

uint64_t st_mix64(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* Byte i of a stream is byte i % 8 (little end first) of word i / 8, and
 * word w is st_mix64(key ^ w * odd constant): any byte range is cheap to
 * produce or check without materialising the stream from its start. */
static uint64_t stream_word(uint64_t key, uint64_t w) {
  return st_mix64(key ^ (w * UINT64_C(0xd6e8feb86659fd93)));
}

void st_fill(uint64_t key, size_t off, void *dst, size_t n) {
  unsigned char *d = dst;
  size_t i = 0;
  while (i < n) {
    size_t pos = off + i;
    uint64_t w = stream_word(key, pos / 8);
    for (size_t b = pos % 8; b < 8 && i < n; b++, i++) d[i] = (unsigned char)(w >> (8 * b));
  }
}

bool st_equal(uint64_t key, size_t off, const void *p, size_t n) {
  const unsigned char *s = p;
  size_t i = 0;
  while (i < n) {
    size_t pos = off + i;
    uint64_t w = stream_word(key, pos / 8);
    for (size_t b = pos % 8; b < 8 && i < n; b++, i++)
      if (s[i] != (unsigned char)(w >> (8 * b))) return false;
  }
  return true;
}

uint64_t st_hash_add(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, sizeof w);
    h = (h ^ w) * UINT64_C(0x100000001b3);
  }
  for (; i < n; i++) h = (h ^ s[i]) * UINT64_C(0x100000001b3);
  return st_mix64(h ^ n); /* the size ends each argument: "ab"+"c" != "a"+"bc" */
}

unsigned char st_pattern[ST_PATTERN_MAX];

void st_pattern_init(void) {
  st_fill(ST_PATTERN_KEY, 0, st_pattern, sizeof st_pattern);
}

/* ------------------------------------------------------------------------ */
/* Shared counters                                                           */
/* ------------------------------------------------------------------------ */

/* Relaxed everywhere below: these are counts, read by the main thread only
 * after the runtime has gone quiet (settled stats), and the runtime's own
 * hand-offs (submit -> run -> seal -> get) order the accesses of one task's
 * attempts; nothing else is published through them. */
_Atomic int st_flaky[ST_MAX_THREADS * ST_FLAKY_PER_THREAD];
_Atomic int64_t st_hold[ST_MAX_THREADS * ST_FLAKY_PER_THREAD];
_Atomic int64_t st_incarn[ST_MAX_THREADS * ST_ACTORS_PER_THREAD];
_Atomic uint64_t st_nested_submits, st_nested_gets;
_Atomic uint64_t st_owned_given, st_owned_freed;

void st_owned_free(void *p) {
  atomic_fetch_add_explicit(&st_owned_freed, 1, memory_order_relaxed);
  free(p);
}

/* ------------------------------------------------------------------------ */
/* Tasks                                                                     */
/* ------------------------------------------------------------------------ */

static ray_status arg_i64(ray_ctx *ctx, size_t i, int64_t *out) {
  *out = 0; /* set on every path: gcc -O3 cannot tell ray_ctx_fail never returns RAY_OK */
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, i, &ray_type_i64, &v);
  if (s != RAY_OK) return s;
  if (v.size != sizeof *out) return ray_ctx_fail(ctx, "argument %zu has %zu bytes", i, v.size);
  memcpy(out, v.data, sizeof *out);
  return RAY_OK;
}

static ray_status return_i64(ray_ctx *ctx, size_t i, int64_t x) {
  return ray_ctx_return(ctx, i, &x, sizeof x, &ray_type_i64);
}

ray_status st_fn_sum(ray_ctx *ctx) {
  uint64_t sum = 0; /* unsigned: wraps instead of overflowing */
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) {
    int64_t x;
    ray_status s = arg_i64(ctx, i, &x);
    if (s != RAY_OK) return s;
    sum += (uint64_t)x;
  }
  return return_i64(ctx, 0, (int64_t)sum);
}

ray_status st_fn_checksum(ray_ctx *ctx) {
  uint64_t h = ST_HASH_INIT;
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) {
    ray_view v;
    ray_status s = ray_ctx_arg(ctx, i, NULL, &v);
    if (s != RAY_OK) return s;
    h = st_hash_add(h, v.data, v.size);
  }
  return return_i64(ctx, 0, (int64_t)h);
}

ray_status st_fn_concat(ray_ctx *ctx) {
  size_t n = ray_ctx_nargs(ctx), total = 0;
  for (size_t i = 0; i < n; i++) {
    ray_view v;
    ray_status s = ray_ctx_arg(ctx, i, &ray_type_bytes, &v);
    if (s != RAY_OK) return s;
    total += v.size;
  }
  unsigned char *out = malloc(total);
  if (!out) return ray_ctx_fail(ctx, "no memory for %zu bytes", total);
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    ray_view v;
    ray_status s = ray_ctx_arg(ctx, i, &ray_type_bytes, &v);
    if (s != RAY_OK) {
      free(out);
      return s;
    }
    memcpy(out + at, v.data, v.size);
    at += v.size;
  }
  /* Both return paths: a copy for small results, adoption for large ones. */
  ray_status s;
  if (total > 64 * 1024) {
    s = ray_ctx_return_owned(ctx, 0, out, total, &ray_type_bytes, free);
    if (s != RAY_OK) free(out); /* on an error the buffer is still ours */
  } else {
    s = ray_ctx_return(ctx, 0, out, total, &ray_type_bytes);
    free(out);
  }
  return s;
}

ray_status st_fn_split(ray_ctx *ctx) {
  int64_t x, k;
  ray_status s = arg_i64(ctx, 0, &x);
  if (s == RAY_OK) s = arg_i64(ctx, 1, &k);
  for (int64_t i = 0; s == RAY_OK && i < k; i++)
    s = return_i64(ctx, (size_t)i, (int64_t)((uint64_t)x + (uint64_t)i * ST_SPLIT_STEP));
  return s;
}

ray_status st_fn_forward(ray_ctx *ctx) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_refs, &v);
  if (s != RAY_OK) return s;
  if (v.size != sizeof(ray_ref *)) return ray_ctx_fail(ctx, "refs object of %zu bytes", v.size);
  ray_ref *const *refs = v.data; /* borrowed from the refs object */
  return ray_ctx_return_ref(ctx, 0, refs[0]);
}

ray_status st_fn_flaky(ray_ctx *ctx) {
  int64_t slot, fail_times, value;
  ray_status s = arg_i64(ctx, 0, &slot);
  if (s == RAY_OK) s = arg_i64(ctx, 1, &fail_times);
  if (s == RAY_OK) s = arg_i64(ctx, 2, &value);
  if (s != RAY_OK) return s;
  int attempt = atomic_fetch_add_explicit(&st_flaky[slot], 1, memory_order_relaxed) + 1;
  if (attempt <= fail_times)
    return ray_ctx_fail(ctx, "flaky attempt %d of %lld", attempt, (long long)fail_times);
  return return_i64(ctx, 0, value);
}

ray_status st_fn_fail(ray_ctx *ctx) {
  int64_t code = 0;
  ray_status s = arg_i64(ctx, 0, &code);
  if (s != RAY_OK) return s;
  return ray_ctx_fail(ctx, "stress failure %lld", (long long)code);
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

ray_status st_fn_slow(ray_ctx *ctx) {
  int64_t value, us;
  ray_status s = arg_i64(ctx, 0, &value);
  if (s == RAY_OK) s = arg_i64(ctx, 1, &us);
  if (s != RAY_OK) return s;
  for (int64_t spent = 0; spent < us; spent += 100) {
    if (ray_ctx_cancelled(ctx)) return ray_ctx_fail(ctx, "stopped after %lld us", (long long)spent);
    sleep_us(100);
  }
  return return_i64(ctx, 0, value);
}

ray_status st_fn_hold(ray_ctx *ctx) {
  int64_t slot, ms, value;
  ray_status s = arg_i64(ctx, 0, &slot);
  if (s == RAY_OK) s = arg_i64(ctx, 1, &ms);
  if (s == RAY_OK) s = arg_i64(ctx, 2, &value);
  if (s != RAY_OK) return s;
  int64_t start = (int64_t)(st_now() * 1000) + 1; /* > 0: started */
  atomic_store_explicit(&st_hold[slot], start, memory_order_relaxed);
  while ((int64_t)(st_now() * 1000) + 1 - start < ms) {
    if (ray_ctx_cancelled(ctx)) return ray_ctx_fail(ctx, "held until cancelled");
    sleep_us(100);
  }
  return return_i64(ctx, 0, value);
}

ray_status st_fn_nested(ray_ctx *ctx) {
  int64_t in[2];
  ray_status s = arg_i64(ctx, 0, &in[0]);
  if (s == RAY_OK) s = arg_i64(ctx, 1, &in[1]);
  if (s != RAY_OK) return s;
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = "nested.child";
  ray_ref *r[2] = {NULL, NULL};
  for (int i = 0; i < 2 && s == RAY_OK; i++) {
    int64_t add = i + 1;
    ray_arg a[2] = {ray_arg_value(&in[i], sizeof in[i], &ray_type_i64),
                    ray_arg_value(&add, sizeof add, &ray_type_i64)};
    s = ray_submit(st_fn_sum, a, 2, &o, &r[i]);
    if (s == RAY_OK) atomic_fetch_add_explicit(&st_nested_submits, 1, memory_order_relaxed);
  }
  uint64_t total = 0;
  for (int i = 0; i < 2; i++) {
    ray_view v;
    if (s == RAY_OK && (s = ray_get(r[i], &ray_type_i64, -1, &v)) == RAY_OK) {
      atomic_fetch_add_explicit(&st_nested_gets, 1, memory_order_relaxed);
      total += (uint64_t) * (const int64_t *)v.data;
      ray_view_release(&v);
    }
    ray_ref_release(r[i]); /* NULL is ignored */
  }
  if (s != RAY_OK) return s;
  return return_i64(ctx, 0, (int64_t)total);
}

/* ------------------------------------------------------------------------ */
/* Counter                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct counter {
  int64_t inc, n;
} counter;

static ray_status counter_reply(counter *c, ray_ctx *ctx) {
  int64_t pair[2] = {c->inc, c->n};
  return ray_ctx_return(ctx, 0, pair, sizeof pair, &ray_type_i64);
}

static ray_status counter_start(void *state, ray_ctx *ctx) {
  counter *c = state;
  int64_t init, idx;
  ray_status s = arg_i64(ctx, 0, &init);
  if (s == RAY_OK) s = arg_i64(ctx, 1, &idx);
  if (s != RAY_OK) return s;
  c->inc = atomic_fetch_add_explicit(&st_incarn[idx], 1, memory_order_relaxed) + 1;
  c->n = init;
  return RAY_OK;
}

static ray_status counter_add(void *state, ray_ctx *ctx) {
  counter *c = state;
  int64_t k;
  ray_status s = arg_i64(ctx, 0, &k);
  if (s != RAY_OK) return s;
  c->n = (int64_t)((uint64_t)c->n + (uint64_t)k);
  return counter_reply(c, ctx);
}

static ray_status counter_get(void *state, ray_ctx *ctx) {
  return counter_reply(state, ctx);
}

static ray_status counter_fail(void *state, ray_ctx *ctx) {
  (void)state;
  int64_t code = 0;
  ray_status s = arg_i64(ctx, 0, &code);
  if (s != RAY_OK) return s;
  return ray_ctx_fail(ctx, "refused %lld", (long long)code);
}

static ray_status counter_crash(void *state, ray_ctx *ctx) {
  (void)state;
  ray_ctx_fail(ctx, "stress crash");
  return RAY_EACTOR; /* the actor dies: a restart if one is left */
}

static ray_status counter_slow_add(void *state, ray_ctx *ctx) {
  sleep_us(300); /* so that kills and calls arrive while a method runs */
  return counter_add(state, ctx);
}

static const ray_method counter_methods[ST_M_COUNT] = {
    [ST_M_ADD] = {"add", counter_add},
    [ST_M_GET] = {"get", counter_get},
    [ST_M_FAIL] = {"fail", counter_fail},
    [ST_M_CRASH] = {"crash", counter_crash},
    [ST_M_SLOW_ADD] = {"slow_add", counter_slow_add},
};

const ray_actor_class st_counter_class = {"Counter", sizeof(counter), counter_start,
                                          NULL,      counter_methods, ST_M_COUNT};
