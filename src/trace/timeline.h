/*
 * timeline.h - a record of what ran where, written as a Chrome trace, as a
 * self-contained HTML page, or summed up per name.
 *
 * When the timeline is on (ray_config.timeline_path, RAY_TIMELINE or
 * RAY_TIMELINE_SUMMARY=1), every task run, actor method, on_start and
 * on_stop, and every spill and restore of the store, becomes one slice on
 * the track of the thread that ran it. Slices go to a per-thread buffer (no
 * lock, no shared cache line on the hot path); off, the cost is one
 * predictable branch per run.
 *
 * Readers may look while the runtime runs (ray_timeline_write, the summary,
 * the at-exit write): a buffer is a list of chunks that never move, and its
 * owner publishes each slice with a release store of its count after
 * writing it, so a reader that loads the count (acquire) reads only
 * complete slices and never waits for a writer. A snapshot loads every
 * thread's count once, one after the other, and then reads those prefixes:
 * each thread's slices up to that moment, no torn ones, and no thread held
 * up for longer than the registration of a new thread's buffer.
 */
#ifndef RT_TIMELINE_H
#define RT_TIMELINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "ray.h"

typedef struct rt_tl_buf rt_tl_buf;

typedef struct rt_timeline {
  bool on;
  int nworkers; /* each has a lane, busy or not */
  uint64_t epoch;
  uint64_t t0_ns;       /* timestamps are relative to ray_init */
  pthread_mutex_t lock; /* guards the list of buffers (its head and links) */
  rt_tl_buf *bufs;
  /* Slices of threads that had no memory for a buffer: dropped, counted
   * with the buffers' own drops in the "events dropped" totals. */
  _Atomic uint64_t dropped;
  /* Cluster mode, on the driver: the other ranks' events, Chrome trace
   * objects each followed by ",\n" (rt_timeline_fragment), written into
   * the Chrome trace after this rank's own. Owned; set by
   * rt_timeline_add_extra before the last write. */
  char *extra;
  size_t extra_len;
} rt_timeline;

void rt_timeline_init(rt_timeline *tl, bool on, uint64_t epoch, int nworkers);
/* Frees the buffers. Only when no thread records or reads any more. */
void rt_timeline_destroy(rt_timeline *tl);

/* The track of a thread outside the pool (the program's own threads). */
#define RT_TL_TRACK_OUTSIDE (-1)
/* The track of the store's I/O thread (spills), named "rayc-io". */
#define RT_TL_TRACK_IO (-2)

/* One slice, as the recording layer sees it. */
typedef struct rt_tl_slice {
  const char *kind;  /* "task", "actor.method", "spill", ...: static storage */
  const char *name;  /* copied (up to 47 bytes, cut at a UTF-8 boundary) */
  uint64_t id;       /* the record's unique id (spill: objects; restore: slot) */
  int attempt;       /* 1, 2, ... (0: on_start, on_stop; 1: the store's) */
  ray_status status; /* what the function returned */
  bool cancelled;    /* ray_cancel reached the run before it ended */
  int track;         /* worker index, RT_TL_TRACK_OUTSIDE or RT_TL_TRACK_IO */
  uint64_t start_ns, end_ns;
  const char *obj; /* hex ID of the first result (copied), NULL or "": none */
  uint32_t nobj;   /* results made by the run */
} rt_tl_slice;

/* Records one slice on the calling thread's buffer. Never blocks except
 * the first time a thread records in this runtime (it registers its
 * buffer under the lock). */
void rt_timeline_record(rt_timeline *tl, const rt_tl_slice *s);

/* When a file is written, for the page's header: "on demand", ... */
typedef enum { RT_TL_ON_DEMAND, RT_TL_AT_SHUTDOWN, RT_TL_AT_EXIT } rt_tl_when;

/*
 * Writes what was recorded so far to path: a self-contained HTML page when
 * the path ends in ".html" or ".htm" (any case), a Chrome trace (JSON)
 * otherwise. Safe while threads record. fn names the caller in messages.
 * Errors: RAY_EIO ("FN: cannot write the timeline to 'PATH': reason");
 * RAY_ENOMEM (no memory for the snapshot).
 */
ray_status rt_timeline_write(rt_timeline *tl, const char *path, rt_tl_when when, const char *fn);

/*
 * The per-name summary (count, total, mean, p50, p99, failed, cancelled,
 * sorted by total time) of what was recorded so far, to out. Safe while
 * threads record. Errors: RAY_EIO (writing to out failed); RAY_ENOMEM.
 */
ray_status rt_timeline_summary(rt_timeline *tl, FILE *out, const char *fn);

/* Cluster mode: this rank's events as Chrome trace objects, each followed
 * by ",\n", its process named "rayc rank RANK": for the driver's trace.
 * *out is malloc'd (free it). RAY_ENOMEM recorded for fn. */
ray_status rt_timeline_fragment(rt_timeline *tl, int rank, char **out, size_t *len, const char *fn);
/* Takes over buf (len bytes of fragments) for the Chrome trace. */
void rt_timeline_add_extra(rt_timeline *tl, char *buf, size_t len);

#endif
