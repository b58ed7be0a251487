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

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

void *rt_malloc(size_t size);
void *rt_calloc(size_t n, size_t size);
void *rt_realloc(void *p, size_t size);
void *rt_aligned_alloc(size_t align, size_t size);
char *rt_strdup(const char *s);
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
 * rt_alloc_count() is the number of allocations made since the last
 * rt_alloc_fail_at call while armed: rt_alloc_fail_at(LONG_MAX, false)
 * only counts, so a test can size its walk.
 */
void rt_alloc_fail_at(long n, bool once);
long rt_alloc_count(void);
/* How many allocations injection has failed since the last rt_alloc_fail_at. */
long rt_alloc_failed(void);

#endif
