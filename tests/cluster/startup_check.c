/*
 * startup_check.c - built twice, as startup_check_a and startup_check_b
 * (the second with -DRAY_VARIANT=1, so its executable differs); run as
 * `mpirun -n 1 startup_check_a : -n 2 startup_check_b` every rank's
 * ray_init must fail, naming a rank and the executable that differs.
 * Prints "rank R: STATUS: message" and exits 3 on failure; 0 if ray_init
 * succeeded (the driver prints "joined N").
 */
#include <stdio.h>

#include "ray.h"

#ifndef RAY_VARIANT
#define RAY_VARIANT 0
#endif

int main(void) {
  volatile int variant = RAY_VARIANT; /* makes the two builds' code differ */
  ray_status s = ray_init(NULL);
  if (s != RAY_OK) {
    printf("variant %d: %s: %s\n", variant, ray_status_name(s), ray_last_error());
    return 3;
  }
  printf("joined %d\n", ray_node_count());
  return ray_shutdown() == RAY_OK ? 0 : 1;
}
