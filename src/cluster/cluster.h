/*
 * cluster.h - one program on N processes under mpirun/srun (DESIGN §6).
 *
 * Started by a launcher (Open MPI's mpirun, or srun: found by their
 * environment variables), or in a program that initialised MPI itself,
 * ray_init joins the processes into one runtime: rank 0 is the driver and
 * returns from ray_init; every other rank serves until the driver's
 * ray_shutdown, then finalises MPI (if rayc initialised it) and exits 0.
 * RAY_CLUSTER=0 keeps every process on its own (in-process mode);
 * RAY_CLUSTER=1 joins even when no launcher is recognised. Built without
 * MPI (-DRAY_MPI=OFF) every function here reports a 1-node runtime.
 *
 * runtime.c calls these under its life lock, in this order:
 *   ray_init:     rt_cluster_join, (build the runtime), rt_cluster_start,
 *                 and on ranks other than 0 rt_cluster_serve, which does
 *                 not return;
 *   ray_shutdown: (drain local work), rt_cluster_stop.
 */
#ifndef RT_CLUSTER_H
#define RT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ray.h"

/* Decides in-process or cluster; in a cluster, initialises MPI if the
 * program has not, and checks that every rank runs the same executable
 * and libraries. On failure (RAY_EINVAL: ranks differ, or MPI's thread
 * level is too low; RAY_EIO: MPI failed) every rank fails with a message
 * naming the rank and the file that differs. */
ray_status rt_cluster_join(void);

/* Starts the comm thread (a cluster) or does nothing. On failure the
 * caller unwinds and calls rt_cluster_abandon. */
ray_status rt_cluster_start(void);

/* ray_init failed after rt_cluster_join: leave MPI as the program expects
 * (finalised at exit if rayc initialised it). */
void rt_cluster_abandon(void);

/* Rank other than 0: serves until the driver's ray_shutdown, then shuts
 * the local runtime down with shutdown(), finalises MPI if rayc
 * initialised it, and exits 0. Never returns. */
_Noreturn void rt_cluster_serve(ray_status (*shutdown)(void));

/* The driver's ray_shutdown, after its own work is drained: every other
 * rank drains (and sends its timeline events, if trace is not NULL), shuts
 * down and exits; then the comm thread stops. The runtime is a 1-node one
 * from here (a later ray_init runs in-process). */
void rt_cluster_stop(char **trace, size_t *trace_len);

/* Where this rank's timeline events come from when the driver asks for
 * them (runtime.c, when the timeline is on): with trace non-NULL,
 * rt_cluster_stop collects every other rank's into *trace (malloc'd, for
 * rt_timeline_add_extra). */
void rt_cluster_set_trace_source(ray_status (*fn)(void *arg, int rank, char **out, size_t *len),
                                 void *arg);

/* Whether this process is rank 0 of a cluster, or in-process: ray_init
 * returns. */
bool rt_cluster_is_driver(void);

#ifdef RAY_HAVE_MPI
/* For remote.c: queue a record for a rank (rt_tp_send), a bulk transfer
 * (rt_tp_bulk) and its tag; abort the job (fail-stop), naming this rank. */
ray_status rt_cluster_send(int dest, const void *rec, size_t len);
ray_status rt_cluster_bulk(bool send, int peer, int tag, void *buf, size_t size,
                           void (*done)(void *arg, bool ok), void *arg);
int rt_cluster_new_tag(void);
_Noreturn void rt_cluster_abort(void);

/* A function or type address as every rank can name it: the number of its
 * module in rank 0's list and its offset there; false if it is in no
 * module every rank loaded at ray_init. decode: the address here, or NULL. */
bool rt_cluster_encode_addr(const void *p, uint32_t *mod, uint64_t *off);
const void *rt_cluster_decode_addr(uint32_t mod, uint64_t off);

/* For tests and the bench (cluster mode only; RAY_EINVAL otherwise). */
/* A round trip of one control record to rank and back. */
ray_status rt_cluster_ping(int rank);
/* Receives size bytes of a test pattern from rank through the bulk path
 * (chunks, several in flight) and checks them: RAY_EIO names the first
 * byte that differs. */
ray_status rt_cluster_pull_pattern(int rank, void *buf, size_t size, uint64_t seed);
/* How often this rank's comm thread went to sleep (idle check). */
uint64_t rt_cluster_comm_sleeps(void);
#endif

#endif
