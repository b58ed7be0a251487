/*
 * timeline.c - per-thread event buffers and the Chrome trace writer.
 * See timeline.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/prim.h"
#include "trace/timeline.h"

#define NAME_MAX_LEN 48
#define BUF_MAX_EVENTS (1u << 20) /* per thread; later events are counted, not kept */

typedef struct tl_event {
  uint64_t start_ns, end_ns, id;
  int32_t track, attempt;
  ray_status status;
  const char *kind; /* static strings */
  char name[NAME_MAX_LEN];
} tl_event;

struct rt_tl_buf {
  rt_tl_buf *next;
  tl_event *ev;
  uint32_t n, cap;
  uint64_t dropped;
};

/* This thread's buffer for the runtime of `epoch` (a buffer from an earlier
 * runtime was freed with it and is never touched). */
static _Thread_local struct {
  uint64_t epoch;
  rt_tl_buf *buf;
} t_buf;

void rt_timeline_init(rt_timeline *tl, bool on, uint64_t epoch) {
  memset(tl, 0, sizeof *tl);
  tl->on = on;
  tl->epoch = epoch;
  tl->t0_ns = rt_prim_now_ns();
  pthread_mutex_init(&tl->lock, NULL);
}

static rt_tl_buf *my_buf(rt_timeline *tl) {
  if (t_buf.epoch == tl->epoch && t_buf.buf) return t_buf.buf;
  rt_tl_buf *b = rt_calloc(1, sizeof *b);
  if (!b) return NULL;
  pthread_mutex_lock(&tl->lock);
  b->next = tl->bufs;
  tl->bufs = b;
  pthread_mutex_unlock(&tl->lock);
  t_buf.epoch = tl->epoch;
  t_buf.buf = b;
  return b;
}

void rt_timeline_record(rt_timeline *tl, const char *kind, const char *name, uint64_t id,
                        int attempt, ray_status status, int track, uint64_t start_ns,
                        uint64_t end_ns) {
  rt_tl_buf *b = my_buf(tl);
  if (!b) { /* no memory for this thread's buffer: the event is counted, not kept */
    atomic_fetch_add_explicit(&tl->dropped, 1, memory_order_relaxed);
    return;
  }
  if (b->n == b->cap) {
    uint32_t cap = b->cap ? b->cap * 2 : 1024;
    tl_event *ev = cap <= BUF_MAX_EVENTS ? rt_realloc(b->ev, cap * sizeof *ev) : NULL;
    if (!ev) {
      b->dropped++;
      return;
    }
    b->ev = ev;
    b->cap = cap;
  }
  tl_event *e = &b->ev[b->n++];
  e->start_ns = start_ns;
  e->end_ns = end_ns;
  e->id = id;
  e->track = track;
  e->attempt = attempt;
  e->status = status;
  e->kind = kind;
  snprintf(e->name, sizeof e->name, "%s", name);
}

/* A JSON string body: quotes, backslashes and control characters escaped. */
static void put_json_str(FILE *f, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
}

ray_status rt_timeline_finish(rt_timeline *tl, const char *path) {
  ray_status status = RAY_OK;
  if (tl->on && path) {
    FILE *f = fopen(path, "w");
    if (!f) {
      status = rt_fail(RAY_EIO, "ray_shutdown: cannot write the timeline to '%s': %s", path,
                       strerror(errno));
    } else {
      uint32_t pid = rt_prim_pid();
      int max_track = -1;
      bool outside = false; /* events from threads outside the pool (track -1) */
      bool io = false;      /* events of the store's I/O thread (RT_TL_TRACK_IO) */
      uint64_t dropped = atomic_load_explicit(&tl->dropped, memory_order_relaxed);
      fprintf(f, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
      bool first = true;
      for (rt_tl_buf *b = tl->bufs; b; b = b->next) {
        dropped += b->dropped;
        for (uint32_t i = 0; i < b->n; i++) {
          const tl_event *e = &b->ev[i];
          if (e->track > max_track) max_track = e->track;
          outside |= e->track == -1;
          io |= e->track == RT_TL_TRACK_IO;
          fprintf(f, "%s{\"name\":\"", first ? "" : ",\n");
          put_json_str(f, e->name);
          fprintf(f,
                  "\",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%u,\"tid\":%d,"
                  "\"args\":{\"id\":%llu,\"attempt\":%d,\"status\":\"%s\"}}",
                  e->kind, (double)(e->start_ns - tl->t0_ns) / 1e3,
                  (double)(e->end_ns - e->start_ns) / 1e3, pid, e->track, (unsigned long long)e->id,
                  e->attempt, ray_status_name(e->status));
          first = false;
        }
      }
      /* One named track per worker that ran something. */
      for (int t = outside ? -1 : 0; t <= max_track; t++) {
        if (t < 0)
          fprintf(f,
                  "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":-1,"
                  "\"args\":{\"name\":\"outside the pool\"}}",
                  first ? "" : ",\n", pid);
        else
          fprintf(f,
                  "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":%d,"
                  "\"args\":{\"name\":\"worker %d\"}}",
                  first ? "" : ",\n", pid, t, t);
        first = false;
      }
      if (io) {
        fprintf(f,
                "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":%d,"
                "\"args\":{\"name\":\"rayc-io\"}}",
                first ? "" : ",\n", pid, RT_TL_TRACK_IO);
      }
      fprintf(f,
              ",\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%u,\"args\":{\"name\":"
              "\"rayc (%llu events dropped)\"}}\n]}\n",
              pid, (unsigned long long)dropped);
      if (fclose(f) != 0)
        status = rt_fail(RAY_EIO, "ray_shutdown: cannot write the timeline to '%s': %s", path,
                         strerror(errno));
    }
  }
  while (tl->bufs) {
    rt_tl_buf *b = tl->bufs;
    tl->bufs = b->next;
    free(b->ev);
    free(b);
  }
  pthread_mutex_destroy(&tl->lock);
  return status;
}
