/*
 * timeline_int.h - what the timeline's writers share: the stored slice,
 * the per-thread buffer and the snapshot they all read (snapshot.c), the
 * JSON string writer, and the writers themselves. Private to src/trace/.
 */
#ifndef RT_TIMELINE_INT_H
#define RT_TIMELINE_INT_H

#include <stdio.h>

#include "trace/timeline.h"

#define RT_TL_NAME_LEN 48 /* with the NUL */
#define RT_TL_OBJ_LEN 32  /* hex digits, no NUL */

/* One stored slice: 128 bytes, two to a cache line pair. Written once by
 * its thread before the release store that publishes it, then read-only. */
typedef struct tl_event {
  uint64_t start_ns, end_ns, id;
  const char *kind; /* static */
  int32_t track, attempt;
  ray_status status;
  uint16_t nobj;
  uint8_t cancelled;
  char name[RT_TL_NAME_LEN];
  char obj[RT_TL_OBJ_LEN]; /* obj[0] == 0: no result */
} tl_event;
_Static_assert(sizeof(tl_event) == 128, "tl_event is two 64-byte halves");

/* Chunk k holds 1024 << (k - 1) slices (chunk 0: 1024), so chunk k begins
 * at slice 1024 << (k - 1) and the 11 chunks hold 2^20 in all. */
#define RT_TL_CHUNK0 1024u
#define RT_TL_CHUNKS 11
#define RT_TL_MAX_EVENTS (RT_TL_CHUNK0 << (RT_TL_CHUNKS - 1)) /* 2^20 per thread */

struct rt_tl_buf {
  /* Set before the buffer becomes the list's head under the lock, never
   * changed after: readers walk from a head read under the lock. */
  rt_tl_buf *next;
  uint32_t os_tid; /* the thread's id, for the lanes of outside threads */
  bool main;       /* the process's main thread */
  /* chunk[k] is written by the owner before the release store of n that
   * first covers a slice in it; a reader reads it only for slices below
   * the n it loaded (acquire). Chunks never move or go until destroy. */
  tl_event *chunk[RT_TL_CHUNKS];
  /* Slices published. Written only by the owner (release, after the
   * slice); read by snapshots (acquire). */
  _Atomic uint32_t n;
  /* Slices this thread could not keep (full, or no memory for a chunk).
   * Written only by the owner, read by snapshots: relaxed, a count that
   * orders nothing. */
  _Atomic uint64_t dropped;
};

/* Slice i of a buffer whose published count is above i. */
static inline const tl_event *rt_tl_event_at(const rt_tl_buf *b, uint32_t i) {
  if (i < RT_TL_CHUNK0) return &b->chunk[0][i];
  int k = 64 - __builtin_clzll((unsigned long long)(i / RT_TL_CHUNK0));
  return &b->chunk[k][i - (RT_TL_CHUNK0 << (k - 1))];
}

/* ---- the snapshot (snapshot.c) -------------------------------------------- */

/* A lane: one per worker, one per outside thread, one for rayc-io; in that
 * order (workers by index, the main thread first among outside ones). */
typedef struct tl_lane {
  int track;
  uint32_t os_tid; /* outside lanes */
  bool main;
  uint32_t made; /* order of discovery (the snapshot's own use) */
  char name[32]; /* "worker 3", "main thread", "thread 4242", "rayc-io" */
} tl_lane;

/* Slices are summed up per group: per name for tasks and actors, per kind
 * ("spill", "restore") for the store's slices, whose names carry object IDs
 * and counts. */
typedef struct tl_group {
  const char *name; /* the slices' name, or their kind; points into a slice */
  const char *kind;
  uint64_t count, failed, cancelled;
  uint64_t total_ns, p50_ns, p99_ns, max_ns;
  uint32_t rank; /* place in by_total */
} tl_group;

typedef struct tl_item {
  const tl_event *e;
  uint32_t lane, group;
} tl_item;

typedef struct tl_snap {
  uint64_t t0_ns;    /* ray_init */
  uint64_t taken_ns; /* when the snapshot was taken */
  uint64_t end_ns;   /* the latest end of a slice (t0_ns when none) */
  uint64_t dropped;
  uint32_t pid;
  tl_item *items; /* by lane, then start */
  size_t n;
  tl_lane *lanes;
  size_t nlanes;
  tl_group *groups;
  uint32_t *by_total; /* group indices, the largest total first */
  size_t ngroups;
  uint64_t failed, cancelled; /* slices, all groups */
} tl_snap;

/* Takes the snapshot and computes lanes, groups and their statistics.
 * RAY_ENOMEM (with the message, naming fn) when memory runs out. */
ray_status rt_tl_snap_take(rt_timeline *tl, tl_snap *s, const char *fn);
void rt_tl_snap_free(tl_snap *s);

/* Whether a slice counts as failed (an error status, not a cancelled run). */
static inline bool rt_tl_failed(const tl_event *e) {
  return e->status != RAY_OK && !e->cancelled;
}

/* ---- writers ---------------------------------------------------------------- */

/* A JSON string body: quotes, backslashes and control characters escaped;
 * html: also <, > and & (as \u003c ...), for a page's <script>; bytes that
 * are not valid UTF-8 become U+FFFD. */
void rt_tl_put_json_str(FILE *f, const char *s, bool html);
/* "12.3 us", "4.56 ms" ...: a duration for people. buf: 16 bytes. */
const char *rt_tl_fmt_dur(uint64_t ns, char buf[16]);

/* The whole trace: header, s's events, extra (already formatted objects,
 * each followed by ",\n"), footer. */
void rt_tl_write_chrome(const tl_snap *s, FILE *f, const char *extra, size_t extra_len);
/* s's events and its lanes' and process's names, each object followed by
 * ",\n"; the process named label. */
void rt_tl_write_chrome_events(const tl_snap *s, FILE *f, const char *label);
void rt_tl_write_html(const tl_snap *s, FILE *f, rt_tl_when when);
void rt_tl_write_summary(const tl_snap *s, FILE *f);

#endif
