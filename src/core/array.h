/*
 * array.h - growing a heap array by doubling.
 */
#ifndef RT_ARRAY_H
#define RT_ARRAY_H

#include <stddef.h>
#include <stdlib.h>

#include "core/alloc.h"

/* Makes room for need (>= 1) elements of elem bytes in items, whose
 * capacity is *cap: the capacity doubles, from first when it is 0, until it
 * is enough. Returns the array (moved or not), or NULL when memory ran out;
 * then items and *cap are unchanged and still the caller's. */
static inline void *rt_array_reserve(void *items, size_t *cap, size_t need, size_t elem,
                                     size_t first) {
  if (need <= *cap) return items;
  size_t c = *cap ? *cap * 2 : first;
  while (c < need) c *= 2;
  void *grown = rt_realloc(items, c * elem);
  if (grown) *cap = c;
  return grown;
}

#endif
