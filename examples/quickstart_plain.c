/*
 * quickstart_plain.c - quickstart.c in plain calls only: ray_submit with
 * ray_arg arrays and counts, and typed views for arguments and results. A
 * task DAG, an actor and put/get; it checks its result
 * and runs as a test (CTest: example_quickstart_plain). The helpers that
 * quickstart.c uses are each a shorthand for one pattern here, with the
 * same type checks.
 * Build by hand: cc quickstart_plain.c $(pkg-config --cflags --libs ray)
 */
#include <ray.h>
#include <stdio.h>

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != RAY_OK) return fprintf(stderr, "%s: %s\n", #call, ray_last_error()), 1;          \
  } while (0)

/* Argument i as an int64_t: a typed, borrowed view of the argument. */
static ray_status arg_i64(ray_ctx *ctx, size_t i, int64_t *out) {
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, i, &ray_type_i64, &v);
  if (s == RAY_OK) *out = *(const int64_t *)v.data;
  return s;
}

static ray_status square(ray_ctx *ctx) {
  int64_t x;
  ray_status s = arg_i64(ctx, 0, &x);
  if (s != RAY_OK) return s;
  x *= x;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}

static ray_status add(ray_ctx *ctx) {
  int64_t a, b;
  ray_status s;
  if ((s = arg_i64(ctx, 0, &a)) != RAY_OK || (s = arg_i64(ctx, 1, &b)) != RAY_OK) return s;
  a += b;
  return ray_ctx_return(ctx, 0, &a, sizeof a, &ray_type_i64);
}

static ray_status counter_add(void *total, ray_ctx *ctx) {
  int64_t x;
  ray_status s = arg_i64(ctx, 0, &x);
  if (s != RAY_OK) return s;
  *(int64_t *)total += x;
  return ray_ctx_return(ctx, 0, total, sizeof x, &ray_type_i64);
}

static const ray_method counter_methods[] = {{"add", counter_add}};
static const ray_actor_class Counter = {"Counter", sizeof(int64_t), NULL, NULL, counter_methods, 1};

/* The value of an i64 object: a view, read, released. */
static ray_status get_i64(ray_ref *ref, int64_t *out) {
  ray_view v;
  ray_status s = ray_get(ref, &ray_type_i64, -1, &v);
  if (s != RAY_OK) return s;
  *out = *(const int64_t *)v.data;
  ray_view_release(&v);
  return RAY_OK;
}

int main(void) {
  CHECK(ray_init(NULL));
  ray_ref *ten, *sq[4], *s, *total;
  ray_actor *c;
  int64_t x = 10;
  CHECK(ray_put(&x, sizeof x, &ray_type_i64, &ten));
  for (int64_t i = 1; i <= 4; i++) {
    ray_arg a = ray_arg_value(&i, sizeof i, &ray_type_i64);
    CHECK(ray_submit(square, &a, 1, NULL, &sq[i - 1]));
  }
  ray_arg add_args[2] = {ray_arg_ref(sq[3]), ray_arg_ref(ten)};
  CHECK(ray_submit(add, add_args, 2, NULL, &s));
  CHECK(ray_actor_create(&Counter, NULL, 0, NULL, &c));
  for (int i = 0; i < 4; i++) {
    ray_arg a = ray_arg_ref(sq[i]);
    CHECK(ray_actor_send(c, 0, &a, 1));
  }
  ray_arg total_arg = ray_arg_ref(s);
  CHECK(ray_actor_call(c, 0, &total_arg, 1, &total));
  int64_t squares[4], sum;
  for (int i = 0; i < 4; i++) CHECK(get_i64(sq[i], &squares[i]));
  CHECK(get_i64(total, &sum));
  printf("squares %lld %lld %lld %lld, total %lld\n", (long long)squares[0], (long long)squares[1],
         (long long)squares[2], (long long)squares[3], (long long)sum);
  for (int i = 0; i < 4; i++) ray_ref_release(sq[i]);
  ray_ref_release(ten), ray_ref_release(s), ray_ref_release(total), ray_actor_release(c);
  bool ok = squares[0] == 1 && squares[1] == 4 && squares[2] == 9 && squares[3] == 16 && sum == 56;
  return ray_shutdown() == RAY_OK && ok ? 0 : 1;
}
