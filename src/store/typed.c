/*
 * typed.c - the store's typed helpers: scalar puts and gets, and the batch
 * get (Ray's ray.get(list)).
 *
 * Everything here is built on the public calls (ray_get, ray_view_release),
 * so the type check, the waiting rules and the error messages are ray_get's
 * own; a helper only adds its name to the message and checks that a scalar
 * object holds exactly one element. The scalar puts call what ray_put
 * calls, rt_store_put, with their own name and their caller's address, so
 * that messages name them and ray_memory_report charges the object to the
 * program's line, not to this file.
 *
 * ray_get_many takes one deadline for the whole batch and gets the objects
 * in index order, each with what is left of it. It is all or nothing: the
 * views go to a scratch array first (on the stack up to MANY_STACK, else on
 * the heap), and reach the caller's array only once every get succeeded;
 * on a failure the views taken so far are released and the caller's array
 * is left as it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/prim.h"
#include "core/types.h"
#include "store/store.h"

#define MANY_STACK 16

/* Records the failure of a call made on fn's behalf again, as fn's: the
 * message of `inner` (ray_get), with its leading "inner: " taken
 * off, after "fn: " and an optional context (", refs[3]"). */
static ray_status refail(ray_status s, const char *fn, const char *inner, const char *context) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", ray_last_error());
  const char *rest = msg;
  size_t k = strlen(inner);
  if (strncmp(rest, inner, k) == 0 && rest[k] == ':' && rest[k + 1] == ' ') rest += k + 2;
  return rt_fail(s, "%s: %s%s", fn, context, rest);
}

/* A scalar object holds one element of its type. */
static ray_status one_element(const ray_view *v, const char *fn, const char *what) {
  if (v->size == v->type->elem_size) return RAY_OK;
  return rt_fail(RAY_ETYPE, "%s: %s holds %zu '%s' elements, not one", fn, what,
                 v->size / v->type->elem_size, v->type->name);
}

static ray_status get_scalar(ray_ref *ref, int64_t timeout_ms, const ray_type *type, const char *fn,
                             void *out) {
  if (!rt_store_running(fn)) return RAY_ESHUTDOWN;
  if (!out) return rt_fail(RAY_EINVAL, "%s: out is NULL", fn);
  ray_view v;
  ray_status s = ray_get(ref, type, timeout_ms, &v);
  if (s != RAY_OK) return refail(s, fn, "ray_get", "");
  char id[33], what[48];
  ray_ref_id(ref, id);
  snprintf(what, sizeof what, "object %s", id);
  s = one_element(&v, fn, what);
  if (s == RAY_OK) memcpy(out, v.data, type->elem_size);
  ray_view_release(&v);
  return s;
}

ray_status ray_get_i64(ray_ref *ref, int64_t timeout_ms, int64_t *out) {
  return get_scalar(ref, timeout_ms, &ray_type_i64, "ray_get_i64", out);
}

ray_status ray_get_f64(ray_ref *ref, int64_t timeout_ms, double *out) {
  return get_scalar(ref, timeout_ms, &ray_type_f64, "ray_get_f64", out);
}

ray_status ray_put_i64(int64_t v, ray_ref **out) {
  return rt_store_put("ray_put_i64", RT_CALLER(), &v, sizeof v, &ray_type_i64, out);
}

ray_status ray_put_f64(double v, ray_ref **out) {
  return rt_store_put("ray_put_f64", RT_CALLER(), &v, sizeof v, &ray_type_f64, out);
}

/* What is left of the batch's wait, as a ray_get timeout: -1 for none,
 * else the milliseconds to the deadline rounded up (0 once it has passed:
 * the objects that are ready still count). */
static int64_t time_left(uint64_t deadline) {
  if (deadline == UINT64_MAX) return -1;
  uint64_t now = rt_prim_now_ns();
  if (now >= deadline) return 0;
  return (int64_t)((deadline - now + 999999u) / 1000000u);
}

ray_status ray_get_many(ray_ref *const refs[], size_t n, const ray_type *expect, int64_t timeout_ms,
                        ray_view out[]) {
  if (!rt_store_running("ray_get_many")) return RAY_ESHUTDOWN;
  if (n && (!refs || !out))
    return rt_fail(RAY_EINVAL, "ray_get_many: %s is NULL with n = %zu", refs ? "out" : "refs", n);
  if (timeout_ms < -1)
    return rt_fail(RAY_EINVAL, "ray_get_many: timeout_ms %lld is below -1 (-1 waits forever)",
                   (long long)timeout_ms);
  if (n == 0) return RAY_OK;
  ray_view stack[MANY_STACK];
  ray_view *views = n <= MANY_STACK ? stack : rt_malloc(n * sizeof *views);
  if (!views) return rt_fail(RAY_ENOMEM, "ray_get_many: no memory to hold %zu views", n);
  uint64_t deadline = rt_prim_deadline(timeout_ms);
  ray_status s = RAY_OK;
  size_t i = 0;
  for (; i < n; i++) {
    s = ray_get(refs[i], expect, time_left(deadline), &views[i]);
    if (s != RAY_OK) break;
  }
  if (s == RAY_OK) {
    memcpy(out, views, n * sizeof *views);
  } else {
    char context[64];
    if (s == RAY_ETIMEOUT) {
      char id[33];
      ray_ref_id(refs[i], id);
      rt_set_error("ray_get_many: refs[%zu] (object %s) not ready within %lld ms; no view "
                   "is held",
                   i, id, (long long)timeout_ms);
    } else {
      snprintf(context, sizeof context, "refs[%zu]: ", i);
      (void)refail(s, "ray_get_many", "ray_get", context);
    }
    for (size_t k = 0; k < i; k++) ray_view_release(&views[k]);
  }
  if (views != stack) free(views);
  return s;
}

ray_status ray_get_many_i64(ray_ref *const refs[], size_t n, int64_t timeout_ms, int64_t out[]) {
  if (!rt_store_running("ray_get_many_i64")) return RAY_ESHUTDOWN;
  if (n && (!refs || !out))
    return rt_fail(RAY_EINVAL, "ray_get_many_i64: %s is NULL with n = %zu", refs ? "out" : "refs",
                   n);
  if (n == 0) return RAY_OK;
  ray_view stack[MANY_STACK];
  ray_view *views = n <= MANY_STACK ? stack : rt_malloc(n * sizeof *views);
  if (!views) return rt_fail(RAY_ENOMEM, "ray_get_many_i64: no memory to hold %zu views", n);
  ray_status s = ray_get_many(refs, n, &ray_type_i64, timeout_ms, views);
  if (s != RAY_OK) {
    (void)refail(s, "ray_get_many_i64", "ray_get_many", "");
  } else {
    for (size_t i = 0; i < n && s == RAY_OK; i++) {
      char what[32];
      snprintf(what, sizeof what, "refs[%zu]", i);
      s = one_element(&views[i], "ray_get_many_i64", what);
    }
    /* All or nothing here too: out is written only when every one fits. */
    for (size_t i = 0; i < n; i++) {
      if (s == RAY_OK) memcpy(&out[i], views[i].data, sizeof out[i]);
      ray_view_release(&views[i]);
    }
  }
  if (views != stack) free(views);
  return s;
}
