/*
 * timeline.h - a Chrome trace of what ran where, written at shutdown.
 *
 * When ray_config.timeline_path (or RAY_TIMELINE) is set, every task run,
 * actor method, on_start and on_stop becomes one complete event ("ph":"X")
 * on the track of the worker that ran it. Events go to a per-thread buffer
 * (no lock, no shared cache line on the hot path); ray_shutdown writes them
 * all as JSON that chrome://tracing and Perfetto open. Off, the cost is one
 * predictable branch per run.
 */
#ifndef RT_TIMELINE_H
#define RT_TIMELINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ray.h"

typedef struct rt_tl_buf rt_tl_buf;

typedef struct rt_timeline {
  bool on;
  uint64_t epoch;
  uint64_t t0_ns;       /* timestamps are relative to ray_init */
  pthread_mutex_t lock; /* guards the list of buffers */
  rt_tl_buf *bufs;
  /* Events of threads that had no memory for a buffer: dropped, counted
   * with the buffers' own drops in the trace's "events dropped". */
  _Atomic uint64_t dropped;
} rt_timeline;

void rt_timeline_init(rt_timeline *tl, bool on, uint64_t epoch);
/* The track of the store's I/O thread (spills), named "rayc-io". */
#define RT_TL_TRACK_IO (-2)

/* Records one slice. kind: "task", "actor", "actor.on_start", ...; id is
 * the record's unique id; track: the worker index (-1: not a worker,
 * RT_TL_TRACK_IO: the store's I/O thread). */
void rt_timeline_record(rt_timeline *tl, const char *kind, const char *name, uint64_t id,
                        int attempt, ray_status status, int track, uint64_t start_ns,
                        uint64_t end_ns);
/* Writes the trace to path (if on) and frees the buffers. RAY_EIO with a
 * message naming the path when the file cannot be written. */
ray_status rt_timeline_finish(rt_timeline *tl, const char *path);

#endif
