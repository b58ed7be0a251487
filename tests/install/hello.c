/*
 * hello.c - the install smoke test's client: built against an installed rayc
 * (pkg-config or the CMake package), only <ray.h> and -lray.
 */
#include <ray.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define N 1000

static int fail(const char *what, ray_status s) {
  fprintf(stderr, "hello: %s: %s: %s\n", what, ray_status_name(s), ray_last_error());
  return 1;
}

int main(void) {
  /* The library loaded is the one installed with this header. */
  if (strcmp(ray_version(), RAY_VERSION_STRING) != 0) {
    fprintf(stderr, "hello: libray is %s, ray.h is %s\n", ray_version(), RAY_VERSION_STRING);
    return 1;
  }
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = (size_t)64 << 20;
  ray_status s = ray_init(&cfg);
  if (s != RAY_OK) return fail("ray_init", s);

  int64_t values[N];
  for (int64_t i = 0; i < N; i++) values[i] = i * i - 7;

  ray_ref *ref = NULL;
  s = ray_put(values, sizeof values, &ray_type_i64, &ref);
  if (s != RAY_OK) return fail("ray_put", s);

  ray_view view;
  s = ray_get(ref, &ray_type_i64, 5000, &view);
  if (s != RAY_OK) return fail("ray_get", s);
  int bad = view.size != sizeof values;
  const int64_t *got = view.data;
  for (int64_t i = 0; !bad && i < N; i++) bad = got[i] != i * i - 7;
  ray_view_release(&view);
  ray_ref_release(ref);

  s = ray_shutdown();
  if (s != RAY_OK) return fail("ray_shutdown", s);
  if (bad) {
    fprintf(stderr, "hello: the object read back differs from what was put\n");
    return 1;
  }
  printf("install ok (rayc %s)\n", ray_version());
  return 0;
}
