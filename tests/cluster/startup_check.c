/*
 * startup_check.c - built twice, as startup_check_a and startup_check_b
 * (the second with -DRAY_VARIANT=1, so its executable differs); run as
 * `mpirun -n 1 startup_check_a : -n 2 startup_check_b` every rank's
 * ray_init must fail, naming a rank and the executable that differs.
 * Prints "rank R: STATUS: message" and exits 3 on failure; 0 if ray_init
 * succeeded (the driver prints "joined N").
 *
 * With RAY_TEST_CRASH=1 the driver sends rank 1 a task that aborts the
 * process there: the whole job must end (fail-stop), naming rank 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ray.h"

#ifndef RAY_VARIANT
#define RAY_VARIANT 0
#endif

static ray_status dies(ray_ctx *ctx) {
  (void)ctx;
  fprintf(stderr, "rank %d: aborting on purpose\n", ray_node_rank());
  abort();
}

int main(void) {
  volatile int variant = RAY_VARIANT; /* makes the two builds' code differ */
  ray_status s = ray_init(NULL);
  if (s != RAY_OK) {
    printf("variant %d: %s: %s\n", variant, ray_status_name(s), ray_last_error());
    return 3;
  }
  printf("joined %d\n", ray_node_count());
  fflush(stdout);
  const char *crash = getenv("RAY_TEST_CRASH");
  if (crash && crash[0] == '1') {
    ray_task_opts o = RAY_TASK_OPTS_INIT;
    o.node = RAY_NODE(1);
    ray_ref *r;
    if (ray_submit(dies, NULL, 0, &o, &r) != RAY_OK) return 4;
    ray_view v;
    (void)ray_get(r, NULL, -1, &v); /* never returns: rank 1 takes the job down */
    printf("the driver survived a dead rank\n");
    return 5;
  }
  return ray_shutdown() == RAY_OK ? 0 : 1;
}
