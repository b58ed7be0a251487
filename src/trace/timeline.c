/*
 * timeline.c - per-thread slice buffers, and the entry points that write
 * what they hold. See timeline.h for the design; the snapshot is in
 * snapshot.c, the writers in writers.c and page.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/prim.h"
#include "trace/timeline.h"
#include "trace/timeline_int.h"

/* This thread's buffer for the runtime of `epoch` (a buffer from an earlier
 * runtime was freed with it and is never touched). */
static _Thread_local struct {
  uint64_t epoch;
  rt_tl_buf *buf;
} t_buf;

void rt_timeline_init(rt_timeline *tl, bool on, uint64_t epoch, int nworkers) {
  memset(tl, 0, sizeof *tl);
  tl->on = on;
  tl->nworkers = nworkers;
  tl->epoch = epoch;
  tl->t0_ns = rt_prim_now_ns();
  pthread_mutex_init(&tl->lock, NULL);
}

void rt_timeline_destroy(rt_timeline *tl) {
  while (tl->bufs) {
    rt_tl_buf *b = tl->bufs;
    tl->bufs = b->next;
    for (int k = 0; k < RT_TL_CHUNKS; k++) free(b->chunk[k]);
    free(b);
  }
  pthread_mutex_destroy(&tl->lock);
  free(tl->extra);
  tl->extra = NULL;
  tl->extra_len = 0;
}

static rt_tl_buf *my_buf(rt_timeline *tl) {
  if (t_buf.epoch == tl->epoch && t_buf.buf) return t_buf.buf;
  rt_tl_buf *b = rt_calloc(1, sizeof *b);
  if (!b) return NULL;
  b->os_tid = rt_prim_tid();
  b->main = b->os_tid == rt_prim_pid();
  pthread_mutex_lock(&tl->lock);
  b->next = tl->bufs;
  tl->bufs = b;
  pthread_mutex_unlock(&tl->lock);
  t_buf.epoch = tl->epoch;
  t_buf.buf = b;
  return b;
}

/* Copies at most n - 1 bytes of src and a NUL, never ending inside a UTF-8
 * sequence (the cut drops the partial character). */
static void copy_utf8(char *dst, size_t n, const char *src) {
  size_t len = strnlen(src, n);
  if (len < n) {
    memcpy(dst, src, len + 1);
    return;
  }
  len = n - 1;
  /* Back up over continuation bytes (10xxxxxx) to the lead byte of the
   * character the cut falls in, and cut before it, unless the character
   * ends exactly at the cut. */
  size_t lead = len;
  while (lead > 0 && ((unsigned char)src[lead] & 0xC0) == 0x80) lead--;
  if (lead < len || ((unsigned char)src[len] & 0xC0) == 0x80) {
    unsigned char c = (unsigned char)src[lead];
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (lead + need > len) len = lead;
  }
  memcpy(dst, src, len);
  dst[len] = '\0';
}

void rt_timeline_record(rt_timeline *tl, const rt_tl_slice *s) {
  rt_tl_buf *b = my_buf(tl);
  if (!b) { /* no memory for this thread's buffer: the slice is counted, not kept */
    atomic_fetch_add_explicit(&tl->dropped, 1, memory_order_relaxed);
    return;
  }
  /* relaxed: this thread is the only writer of n */
  uint32_t i = atomic_load_explicit(&b->n, memory_order_relaxed);
  int k = i < RT_TL_CHUNK0 ? 0 : 64 - __builtin_clzll((unsigned long long)(i / RT_TL_CHUNK0));
  if (i >= RT_TL_MAX_EVENTS ||
      (!b->chunk[k] && !(b->chunk[k] = rt_malloc(sizeof(tl_event) *
                                                 (k ? RT_TL_CHUNK0 << (k - 1) : RT_TL_CHUNK0))))) {
    /* relaxed: a count the owner alone writes; snapshots read it as a total */
    atomic_store_explicit(&b->dropped, atomic_load_explicit(&b->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return;
  }
  tl_event *e = (tl_event *)rt_tl_event_at(b, i);
  e->start_ns = s->start_ns;
  e->end_ns = s->end_ns >= s->start_ns ? s->end_ns : s->start_ns;
  e->id = s->id;
  e->kind = s->kind;
  e->track = s->track;
  e->attempt = s->attempt;
  e->status = s->status;
  e->nobj = (uint16_t)(s->nobj > UINT16_MAX ? UINT16_MAX : s->nobj);
  e->cancelled = s->cancelled;
  copy_utf8(e->name, sizeof e->name, s->name ? s->name : "");
  /* A whole ID, or none (all zeros: a released ref has no ID) */
  if (s->obj && strnlen(s->obj, RT_TL_OBJ_LEN + 1) == RT_TL_OBJ_LEN &&
      strspn(s->obj, "0") < RT_TL_OBJ_LEN)
    memcpy(e->obj, s->obj, RT_TL_OBJ_LEN);
  else
    e->obj[0] = '\0';
  /* release: the slice (and chunk[k], written above) before the count that
   * lets a snapshot read it (acquire in snapshot.c) */
  atomic_store_explicit(&b->n, i + 1, memory_order_release);
}

/* ---- writing ------------------------------------------------------------- */

static bool is_html_path(const char *path) {
  const char *dot = strrchr(path, '.');
  return dot && !strchr(dot, '/') && (!strcasecmp(dot, ".html") || !strcasecmp(dot, ".htm"));
}

ray_status rt_timeline_write(rt_timeline *tl, const char *path, rt_tl_when when, const char *fn) {
  tl_snap s;
  ray_status st = rt_tl_snap_take(tl, &s, fn);
  if (st != RAY_OK) return st;
  FILE *f = fopen(path, "w");
  if (!f) {
    st = rt_fail(RAY_EIO, "%s: cannot write the timeline to '%s': %s", fn, path, strerror(errno));
  } else {
    if (is_html_path(path))
      rt_tl_write_html(&s, f, when);
    else
      rt_tl_write_chrome(&s, f, tl->extra, tl->extra_len);
    int werr = ferror(f) ? errno : 0;
    if (fclose(f) != 0 || werr)
      st = rt_fail(RAY_EIO, "%s: cannot write the timeline to '%s': %s", fn, path,
                   strerror(werr ? werr : errno));
  }
  rt_tl_snap_free(&s);
  return st;
}

ray_status rt_timeline_fragment(rt_timeline *tl, int rank, char **out, size_t *len,
                                const char *fn) {
  tl_snap s;
  ray_status st = rt_tl_snap_take(tl, &s, fn);
  if (st != RAY_OK) return st;
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  if (!f) {
    rt_tl_snap_free(&s);
    return rt_fail(RAY_ENOMEM, "%s: out of memory for the timeline of rank %d", fn, rank);
  }
  char label[32];
  snprintf(label, sizeof label, "rayc rank %d", rank);
  rt_tl_write_chrome_events(&s, f, label);
  bool bad = ferror(f) != 0;
  fclose(f);
  rt_tl_snap_free(&s);
  if (bad || !buf) {
    free(buf);
    return rt_fail(RAY_ENOMEM, "%s: out of memory for the timeline of rank %d", fn, rank);
  }
  *out = buf;
  *len = n;
  return RAY_OK;
}

void rt_timeline_add_extra(rt_timeline *tl, char *buf, size_t len) {
  free(tl->extra);
  tl->extra = buf;
  tl->extra_len = len;
}

ray_status rt_timeline_summary(rt_timeline *tl, FILE *out, const char *fn) {
  tl_snap s;
  ray_status st = rt_tl_snap_take(tl, &s, fn);
  if (st != RAY_OK) return st;
  clearerr(out);
  rt_tl_write_summary(&s, out);
  if (fflush(out) != 0 || ferror(out))
    st = rt_fail(RAY_EIO, "%s: cannot write the summary: %s", fn, strerror(errno));
  rt_tl_snap_free(&s);
  return st;
}
