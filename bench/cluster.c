/*
 * cluster.c - `ray_bench --cluster`: rayc across ranks, under mpirun.
 *
 *   mpirun -n 2 [--mca btl self,vader | --mca btl self,tcp] ray_bench --cluster [--quick]
 *
 * Baselines measured in the same run with plain MPI between ranks 0 and 1,
 * before rayc starts: the 8-byte ping-pong round trip and the bandwidth of
 * a 256 MiB send. Then, with rank 0 as the driver and everything placed on
 * rank 1:
 *   cluster_task_roundtrip      a sync task (submit + get), back to back
 *   cluster_task_after_idle     the same, the first call after an idle second
 *   cluster_tasks_async         tasks/s from one driver, results read at the end
 *   cluster_get_256mib          ray_get of a 256 MiB result made on rank 1
 *   cluster_idle_cpu            CPU time of rank 1's process per second, idle
 * Every figure is a median of repetitions.
 */
#define _GNU_SOURCE
#include <ray.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef RAY_BENCH_MPI
#include <mpi.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define CHECK(call)                                                                                \
  do {                                                                                             \
    ray_status s_ = (call);                                                                        \
    if (s_ != RAY_OK) {                                                                            \
      fprintf(stderr, "ray_bench --cluster: %s: %s: %s\n", #call, ray_status_name(s_),             \
              ray_last_error());                                                                   \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

/* ---- MPI baselines -------------------------------------------------------- */

static double mpi_pingpong_us(int rank, int reps) {
  char b[8] = {0};
  double v[64];
  int rounds = reps < 64 ? reps : 64;
  for (int r = 0; r < rounds; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    uint64_t t0 = now_ns();
    for (int i = 0; i < 1000; i++) {
      if (rank == 0) {
        MPI_Send(b, 8, MPI_BYTE, 1, 7, MPI_COMM_WORLD);
        MPI_Recv(b, 8, MPI_BYTE, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == 1) {
        MPI_Recv(b, 8, MPI_BYTE, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(b, 8, MPI_BYTE, 0, 7, MPI_COMM_WORLD);
      }
    }
    v[r] = (double)(now_ns() - t0) / 1000.0 / 1000.0;
  }
  return median(v, rounds);
}

static double mpi_bandwidth_gbs(int rank, size_t bytes, int reps) {
  unsigned char *buf = malloc(bytes);
  memset(buf, 1, bytes);
  size_t chunk = (size_t)64 << 20;
  double v[16];
  int rounds = reps < 16 ? reps : 16;
  for (int r = 0; r < rounds; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    uint64_t t0 = now_ns();
    MPI_Request req[64];
    int n = 0;
    for (size_t off = 0; off < bytes; off += chunk) {
      int c = (int)(bytes - off < chunk ? bytes - off : chunk);
      if (rank == 1) MPI_Isend(buf + off, c, MPI_BYTE, 0, 9, MPI_COMM_WORLD, &req[n++]);
      if (rank == 0) MPI_Irecv(buf + off, c, MPI_BYTE, 1, 9, MPI_COMM_WORLD, &req[n++]);
    }
    MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
    v[r] = (double)bytes / (double)(now_ns() - t0);
  }
  free(buf);
  return median(v, rounds);
}

/* ---- tasks on rank 1 ------------------------------------------------------ */

static ray_status empty(ray_ctx *ctx) {
  int64_t z = 0;
  return ray_ctx_return(ctx, 0, &z, sizeof z, &ray_type_i64);
}

static ray_status make_256(ray_ctx *ctx) {
  size_t n = (size_t)256 << 20;
  void *b = malloc(n);
  if (!b) return ray_ctx_fail(ctx, "out of memory");
  memset(b, 3, n);
  return ray_ctx_return_owned(ctx, 0, b, n, &ray_type_bytes, free);
}

static ray_status cpu_seconds(ray_ctx *ctx) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  return ray_ctx_return(ctx, 0, &s, sizeof s, &ray_type_f64);
}

static ray_task_opts on1(void) {
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.node = RAY_NODE(1);
  return o;
}

static void get_drop(ray_ref *r) {
  ray_view v;
  CHECK(ray_get(r, NULL, -1, &v));
  ray_view_release(&v);
  ray_ref_release(r);
}

static double roundtrip_us(int n) {
  ray_task_opts o = on1();
  uint64_t t0 = now_ns();
  for (int i = 0; i < n; i++) {
    ray_ref *r;
    CHECK(ray_submit(empty, NULL, 0, &o, &r));
    get_drop(r);
  }
  return (double)(now_ns() - t0) / 1000.0 / n;
}

static double async_per_s(size_t n) {
  ray_task_opts o = on1();
  ray_ref **refs = malloc(n * sizeof *refs);
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++) CHECK(ray_submit(empty, NULL, 0, &o, &refs[i]));
  for (size_t i = 0; i < n; i++) get_drop(refs[i]);
  double s = (double)(now_ns() - t0) / 1e9;
  free(refs);
  return (double)n / s;
}

static double get256_gbs(void) {
  ray_task_opts o = on1();
  ray_ref *r;
  CHECK(ray_submit(make_256, NULL, 0, &o, &r));
  bool ready = false;
  CHECK(ray_wait(&r, 1, 1, -1, &ready)); /* made, not yet here */
  uint64_t t0 = now_ns();
  ray_view v;
  CHECK(ray_get(r, &ray_type_bytes, -1, &v));
  double gbs = (double)v.size / (double)(now_ns() - t0);
  ray_view_release(&v);
  ray_ref_release(r);
  return gbs;
}

static double rank1_cpu(void) {
  ray_task_opts o = on1();
  ray_ref *r;
  CHECK(ray_submit(cpu_seconds, NULL, 0, &o, &r));
  ray_view v;
  CHECK(ray_get(r, &ray_type_f64, -1, &v));
  double s = *(const double *)v.data;
  ray_view_release(&v);
  ray_ref_release(r);
  return s;
}

int cluster_bench_main(int argc, char **argv) {
  bool quick = false;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--quick") == 0) quick = true;
  int provided = 0, rank = 0, size = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 2) {
    if (rank == 0) fprintf(stderr, "ray_bench --cluster: run it with mpirun -n 2 (or more)\n");
    MPI_Finalize();
    return 2;
  }
  int reps = quick ? 5 : 11;
  double ping = mpi_pingpong_us(rank, reps);
  double bw = mpi_bandwidth_gbs(rank, (size_t)256 << 20, quick ? 3 : 5);
  MPI_Barrier(MPI_COMM_WORLD);

  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 2;
  cfg.object_store_memory = (size_t)2 << 30;
  CHECK(ray_init(&cfg)); /* ranks other than 0 serve from here and exit at the end */

  double v[32];
  (void)roundtrip_us(200); /* warm up both sides */
  for (int r = 0; r < reps; r++) v[r] = roundtrip_us(quick ? 500 : 2000);
  double rt = median(v, reps);
  int idle_reps = quick ? 3 : 5;
  for (int r = 0; r < idle_reps; r++) {
    sleep(1);
    v[r] = roundtrip_us(1);
  }
  double after_idle = median(v, idle_reps);
  (void)async_per_s(10000);
  for (int r = 0; r < reps; r++) v[r] = async_per_s(quick ? 50000 : 200000);
  double async = median(v, reps);
  for (int r = 0; r < (quick ? 3 : 5); r++) v[r] = get256_gbs();
  double get = median(v, quick ? 3 : 5);
  double cpu0 = rank1_cpu();
  uint64_t t0 = now_ns();
  sleep(quick ? 2 : 5);
  double idle_cpu = (rank1_cpu() - cpu0) / ((double)(now_ns() - t0) / 1e9);

  printf("ray_bench --cluster: %d ranks, medians (%s run)\n", size, quick ? "quick" : "full");
  printf("%-28s %12s  %-34s %s\n", "metric", "value", "same-run MPI baseline", "ratio");
  printf("%-28s %9.2f us  %-34s %.1fx\n", "cluster_task_roundtrip", rt, "", rt / ping);
  printf("%-28s %12s  mpi_pingpong_8b %9.2f us\n", "", "", ping);
  printf("%-28s %9.2f us  %-34s\n", "cluster_task_after_idle", after_idle, "");
  printf("%-28s %8.3f M/s\n", "cluster_tasks_async", async / 1e6);
  printf("%-28s %8.2f GB/s  mpi_bandwidth_256mib %6.2f GB/s   %.2fx\n", "cluster_get_256mib", get,
         bw, get / bw);
  printf("%-28s %8.2f %%    of one core, comm thread included\n", "cluster_idle_cpu",
         idle_cpu * 100);
  CHECK(ray_shutdown());
  MPI_Finalize();
  return 0;
}

#else

int cluster_bench_main(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "ray_bench --cluster: this build has no MPI (configure with -DRAY_MPI=ON)\n");
  return 2;
}

#endif
