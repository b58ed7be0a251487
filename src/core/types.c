/*
 * types.c - the builtin type descriptors and type identity.
 */
#include <stdio.h>
#include <string.h>

#include "core/types.h"

const ray_type ray_type_bytes = {"bytes", 0};
const ray_type ray_type_i64 = {"i64", sizeof(int64_t)};
const ray_type ray_type_f64 = {"f64", sizeof(double)};
const ray_type ray_type_str = {"str", 0};
const ray_type ray_type_refs = {"refs", sizeof(ray_ref *)};

bool rt_type_equal(const ray_type *a, const ray_type *b) {
  if (a == b) return true;
  if (!a || !b || a->elem_size != b->elem_size) return false;
  if (!a->name || !b->name) return false;
  return strcmp(a->name, b->name) == 0;
}

const char *rt_type_describe(const ray_type *t, char *buf, size_t n) {
  snprintf(buf, n, "'%s' (elem %zu)", t && t->name ? t->name : "(null)", t ? t->elem_size : 0);
  return buf;
}
