/*
 * quickstart.c - a task DAG, an actor and put/get, with the typed helpers
 * and the one-line macros. The same program in Ray's Python API:
 *
 *   @ray.remote
 *   def square(x): return x * x
 *   @ray.remote
 *   def add(a, b): return a + b
 *   @ray.remote
 *   class Counter:
 *       def __init__(self): self.total = 0
 *       def add(self, x): self.total += x; return self.total
 *
 *   ten = ray.put(10)
 *   sq = [square.remote(i) for i in range(1, 5)]
 *   s = add.remote(sq[3], ten)                   # 16 + 10, after square(4)
 *   c = Counter.remote()
 *   for r in sq: c.add.remote(r)                 # 1 + 4 + 9 + 16
 *   assert ray.get(sq) == [1, 4, 9, 16] and ray.get(c.add.remote(s)) == 56
 *
 * quickstart_plain.c is this program in plain calls (ray_submit, ray_arg
 * arrays, views). Both check their result and run as tests (CTest:
 * example_quickstart, example_quickstart_plain).
 * Build by hand: cc quickstart.c $(pkg-config --cflags --libs ray)
 */
#include <ray.h>
#include <stdio.h>

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != RAY_OK) return fprintf(stderr, "%s: %s\n", #call, ray_last_error()), 1;          \
  } while (0)

static ray_status square(ray_ctx *ctx) {
  int64_t x;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &x);
  return s != RAY_OK ? s : ray_ctx_return_i64(ctx, 0, x * x);
}

static ray_status add(ray_ctx *ctx) {
  int64_t a, b;
  ray_status s;
  if ((s = ray_ctx_arg_i64(ctx, 0, &a)) != RAY_OK || (s = ray_ctx_arg_i64(ctx, 1, &b)) != RAY_OK)
    return s;
  return ray_ctx_return_i64(ctx, 0, a + b);
}

static ray_status counter_add(void *total, ray_ctx *ctx) {
  int64_t x;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &x);
  if (s != RAY_OK) return s;
  *(int64_t *)total += x;
  return ray_ctx_return_i64(ctx, 0, *(int64_t *)total);
}

static const ray_method counter_methods[] = {{"add", counter_add}};
static const ray_actor_class Counter = {"Counter", sizeof(int64_t), NULL, NULL, counter_methods, 1};

int main(void) {
  CHECK(ray_init(NULL));
  ray_ref *ten, *sq[4], *s, *total;
  ray_actor *c;
  CHECK(ray_put_i64(10, &ten));
  for (int i = 0; i < 4; i++) CHECK(RAY_SUBMIT(&sq[i], square, i + 1));
  CHECK(RAY_SUBMIT(&s, add, sq[3], ten));
  CHECK(RAY_ACTOR_CREATE(&c, &Counter));
  for (int i = 0; i < 4; i++) CHECK(RAY_SEND(c, 0, sq[i]));
  CHECK(RAY_CALL(&total, c, 0, s));
  int64_t squares[4], sum;
  CHECK(ray_get_many_i64(sq, 4, -1, squares));
  CHECK(ray_get_i64(total, -1, &sum));
  printf("squares %lld %lld %lld %lld, total %lld\n", (long long)squares[0], (long long)squares[1],
         (long long)squares[2], (long long)squares[3], (long long)sum);
  for (int i = 0; i < 4; i++) ray_ref_release(sq[i]);
  ray_ref_release(ten), ray_ref_release(s), ray_ref_release(total), ray_actor_release(c);
  bool ok = squares[0] == 1 && squares[1] == 4 && squares[2] == 9 && squares[3] == 16 && sum == 56;
  return ray_shutdown() == RAY_OK && ok ? 0 : 1;
}
