/*
 * alloc.h - every heap allocation of the runtime goes through here.
 *
 * One wrapper per libc allocator, so that a test can make the Nth
 * allocation from now fail (SQLite's OOM-injection habit) and check that
 * each public call then returns RAY_ENOMEM or completes, with nothing
 * leaked and nothing lost. Large page mappings (rt_prim_map_large) count as
 * allocations too. Release with free() as usual (rt_free is free).
 *
 * Injection is off unless a test arms it; then the cost per allocation is
 * one relaxed load of a word nobody writes.
 */
#ifndef RT_ALLOC_H
#define RT_ALLOC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

void *rt_malloc(size_t size);
void *rt_calloc(size_t n, size_t size);
void *rt_realloc(void *p, size_t size);
void *rt_aligned_alloc(size_t align, size_t size);
char *rt_strdup(const char *s);
/* asprintf/vasprintf through the wrapper: *out is a new string (free it),
 * or NULL and -1 when memory ran out (or the format failed). */
int rt_asprintf(char **out, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int rt_vasprintf(char **out, const char *fmt, va_list ap)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 0)))
#endif
    ;
static inline void rt_free(void *p) {
  free(p);
}

/* True when an armed injection makes this allocation fail (for allocators
 * outside libc, such as page mappings). Counts the allocation. */
bool rt_alloc_inject(void);

/*
 * For tests. rt_alloc_fail_at(n): allocation number n from now (1 = the next
 * one) and every later one fail, until rt_alloc_fail_at(0) turns injection
 * off. With `once`, only the nth fails and later ones succeed.
 * rt_alloc_count() is the number of allocations made since the last arming
 * (n > 0) while armed: rt_alloc_fail_at(LONG_MAX, false) only counts, so a
 * test can size its walk. Turning injection off (n <= 0) keeps both counts,
 * so a test reads them after it disarmed: allocations that workers made in
 * the background until then are included.
 * The counts are global, not per thread: a walk covers the allocations of
 * every thread (workers included), and a thread that allocates while another
 * arms may take the failure, which a walk over N tolerates.
 */
void rt_alloc_fail_at(long n, bool once);
long rt_alloc_count(void);
/* How many allocations injection has failed since the last rt_alloc_fail_at. */
long rt_alloc_failed(void);

#endif
