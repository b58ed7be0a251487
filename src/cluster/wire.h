/*
 * wire.h - writing and reading the fields of control records.
 *
 * Records are little-endian byte strings (every rank runs the same
 * executable, so also the same byte order); a writer grows its buffer and
 * remembers running out of memory, a reader remembers running off the end,
 * so that callers check once per record.
 */
#ifndef RT_WIRE_H
#define RT_WIRE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

typedef struct rt_wbuf {
  unsigned char *p;
  size_t len, cap;
  bool oom;
} rt_wbuf;

static inline void *rt_wbuf_room(rt_wbuf *w, size_t n) {
  if (w->oom) return NULL;
  if (w->len + n > w->cap) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n) cap *= 2;
    unsigned char *p = rt_realloc(w->p, cap);
    if (!p) {
      w->oom = true;
      return NULL;
    }
    w->p = p;
    w->cap = cap;
  }
  void *at = w->p + w->len;
  w->len += n;
  return at;
}

static inline void rt_wbuf_put(rt_wbuf *w, const void *src, size_t n) {
  void *at = rt_wbuf_room(w, n);
  if (at && n) memcpy(at, src, n);
}
#define RT_WPUT(w, v)                                                                              \
  do {                                                                                             \
    __typeof__(v) v_ = (v);                                                                        \
    rt_wbuf_put((w), &v_, sizeof v_);                                                              \
  } while (0)

static inline void rt_wbuf_str(rt_wbuf *w, const char *s) {
  uint32_t n = s ? (uint32_t)strlen(s) + 1 : 0; /* 0: NULL */
  RT_WPUT(w, n);
  if (n) rt_wbuf_put(w, s, n);
}

typedef struct rt_rbuf {
  const unsigned char *p;
  size_t len, at;
  bool bad;
} rt_rbuf;

static inline const void *rt_rbuf_take(rt_rbuf *r, size_t n) {
  if (r->bad || r->len - r->at < n) {
    r->bad = true;
    return NULL;
  }
  const void *at = r->p + r->at;
  r->at += n;
  return at;
}

static inline void rt_rbuf_get(rt_rbuf *r, void *dst, size_t n) {
  const void *at = rt_rbuf_take(r, n);
  if (at)
    memcpy(dst, at, n);
  else
    memset(dst, 0, n);
}
#define RT_RGET(r, v) rt_rbuf_get((r), &(v), sizeof(v))

/* A string written by rt_wbuf_str, in place (valid with the record), or
 * NULL. */
static inline const char *rt_rbuf_str(rt_rbuf *r) {
  uint32_t n = 0;
  RT_RGET(r, n);
  if (!n) return NULL;
  const char *s = rt_rbuf_take(r, n);
  if (s && s[n - 1] != '\0') r->bad = true;
  return r->bad ? NULL : s;
}

#endif
