/*
 * types.h - type descriptor identity and the text used in type errors.
 */
#ifndef RT_TYPES_H
#define RT_TYPES_H

#include <stdbool.h>

#include "ray.h"

/* Same address, or equal name and elem_size. */
bool rt_type_equal(const ray_type *a, const ray_type *b);

/* "'f64' (elem 8)" into buf; "(null)" names are shown as such. */
const char *rt_type_describe(const ray_type *t, char *buf, size_t n);

#endif
