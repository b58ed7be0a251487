/*
 * types.h - type descriptor identity and the text used in type errors, and
 * the check of the reserved_ area of the public structs.
 */
#ifndef RT_TYPES_H
#define RT_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#include "ray.h"

/* Same address, or equal name and elem_size. */
bool rt_type_equal(const ray_type *a, const ray_type *b);

/* "'f64' (elem 8)" into buf; "(null)" names are shown as such. */
const char *rt_type_describe(const ray_type *t, char *buf, size_t n);

/* Whether a public struct's reserved_ array (ray.h: room for fields to
 * come, zero in every struct made with {0} or an _INIT) is all zero. One OR
 * per word and a single branch: it sits on ray_submit's path. */
static inline bool rt_all_zero(const uint64_t *w, size_t n) {
  uint64_t any = 0;
  for (size_t i = 0; i < n; i++) any |= w[i];
  return any == 0;
}
#define RT_RESERVED_ZERO(arr) rt_all_zero((arr), sizeof(arr) / sizeof((arr)[0]))

#endif
