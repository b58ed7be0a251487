/*
 * alloc.c - the allocation wrappers and their failure injection (alloc.h).
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define RT_ALLOC_LIKELY(x) __builtin_expect(!!(x), 1)

/* Relaxed throughout: injection is a test's knob. The test arms it before
 * the workload it measures and reads the counters after joining it (or
 * after ray_shutdown), and those joins order everything; an allocation
 * racing the arming itself may count either way, which a walk over N
 * tolerates. */
static _Atomic long g_armed; /* 0: off; else fail when the count reaches it */
static _Atomic bool g_once;
static _Atomic long g_count;
static _Atomic long g_failed;

bool rt_alloc_inject(void) {
  long at = atomic_load_explicit(&g_armed, memory_order_relaxed);
  if (RT_ALLOC_LIKELY(at == 0)) return false;
  long n = atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed) + 1;
  if (n < at || (n > at && atomic_load_explicit(&g_once, memory_order_relaxed))) return false;
  atomic_fetch_add_explicit(&g_failed, 1, memory_order_relaxed);
  return true;
}

void *rt_malloc(size_t size) {
  return rt_alloc_inject() ? NULL : malloc(size);
}

void *rt_calloc(size_t n, size_t size) {
  return rt_alloc_inject() ? NULL : calloc(n, size);
}

void *rt_realloc(void *p, size_t size) {
  return rt_alloc_inject() ? NULL : realloc(p, size);
}

void *rt_aligned_alloc(size_t align, size_t size) {
  return rt_alloc_inject() ? NULL : aligned_alloc(align, size);
}

char *rt_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = rt_malloc(n);
  return d ? memcpy(d, s, n) : NULL;
}

int rt_vasprintf(char **out, const char *fmt, va_list ap) {
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  char *d = n < 0 ? NULL : rt_malloc((size_t)n + 1);
  if (d) vsnprintf(d, (size_t)n + 1, fmt, again);
  va_end(again);
  *out = d;
  return d ? n : -1;
}

int rt_asprintf(char **out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = rt_vasprintf(out, fmt, ap);
  va_end(ap);
  return n;
}

void rt_alloc_fail_at(long n, bool once) {
  atomic_store_explicit(&g_armed, 0, memory_order_relaxed);
  if (n <= 0) return; /* off; the counts stay readable */
  atomic_store_explicit(&g_count, 0, memory_order_relaxed);
  atomic_store_explicit(&g_failed, 0, memory_order_relaxed);
  atomic_store_explicit(&g_once, once, memory_order_relaxed);
  atomic_store_explicit(&g_armed, n, memory_order_relaxed);
}

long rt_alloc_count(void) {
  return atomic_load_explicit(&g_count, memory_order_relaxed);
}

long rt_alloc_failed(void) {
  return atomic_load_explicit(&g_failed, memory_order_relaxed);
}
