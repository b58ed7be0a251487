/*
 * test_cluster_transport.c - run under `mpirun -n N`: ray_init joins the
 * ranks (rank 0 is the driver, the others never return from it), control
 * records make round trips to every rank, bulk transfers arrive
 * byte-identical across chunk boundaries, an idle comm thread sleeps, and
 * the driver's ray_shutdown ends every rank.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "cluster/cluster.h"
#include "core/prim.h"
#include "ray.h"

static int expected_ranks(void) {
  const char *n = getenv("OMPI_COMM_WORLD_SIZE");
  return n ? atoi(n) : 1;
}

static void ranks_joined(void **state) {
  (void)state;
  assert_int_equal(ray_node_count(), expected_ranks());
  assert_int_equal(ray_node_rank(), 0);
  assert_true(ray_node_count() >= 2); /* this test only means something under mpirun */
}

static void round_trips(void **state) {
  (void)state;
  for (int r = 0; r < ray_node_count(); r++)
    for (int i = 0; i < 200; i++) assert_int_equal(rt_cluster_ping(r), RAY_OK);
  assert_int_equal(rt_cluster_ping(ray_node_count()), RAY_EINVAL);
  assert_non_null(strstr(ray_last_error(), "not in 0.."));
}

static void bulk_transfers(void **state) {
  (void)state;
  /* 0 and 1 byte, and 100 MiB: two 64 MiB-chunk boundaries' worth. */
  static const size_t sizes[] = {0, 1, 4096 + 3, (size_t)100 << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    unsigned char *buf = malloc(sizes[k] ? sizes[k] : 1);
    assert_non_null(buf);
    int from = 1 + (int)(k % (size_t)(ray_node_count() - 1));
    ray_status s = rt_cluster_pull_pattern(from, buf, sizes[k], k + 11);
    if (s != RAY_OK) fail_msg("%s", ray_last_error());
    free(buf);
  }
}

static void idle_comm_thread_sleeps(void **state) {
  (void)state;
  uint64_t before = rt_cluster_comm_sleeps();
  uint64_t deadline = rt_prim_now_ns() + 10ull * 1000000000ull;
  while (rt_cluster_comm_sleeps() < before + 5 && rt_prim_now_ns() < deadline) usleep(1000);
  assert_true(rt_cluster_comm_sleeps() >= before + 5);
}

static int setup(void **state) {
  (void)state;
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 1;
  return ray_init(&cfg) == RAY_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  if (ray_shutdown() != RAY_OK) return -1;
  /* The cluster is over: the count and rank say no runtime runs, and a new
   * runtime is a 1-node one. */
  if (ray_node_count() != 0 || ray_node_rank() != -1) return -1;
  if (ray_init(NULL) != RAY_OK) return -1;
  int ok = ray_node_count() == 1 && ray_node_rank() == 0;
  return ray_shutdown() == RAY_OK && ok ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ranks_joined),
      cmocka_unit_test(round_trips),
      cmocka_unit_test(bulk_transfers),
      cmocka_unit_test(idle_comm_thread_sleeps),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
