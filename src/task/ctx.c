/*
 * ctx.c - the ray_ctx a task function sees: zero-copy arguments, staged
 * returns, failure reasons, cancellation.
 *
 * Returns are staged, not written into the return entries, so a task that
 * fails after setting some returns (or is retried) leaves nothing behind:
 * the staged payloads are discarded and their memory given back.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/prim.h"
#include "core/types.h"
#include "task/ctx.h"

static _Thread_local rt_task *t_current;

rt_task *rt_task_current(void) {
  return t_current;
}

struct ray_ctx {
  rt_tasks *ts;
  rt_task *task;
  rt_task_outcome *out;
  char *fail_msg; /* from ray_ctx_fail */
};

void rt_ctx_run(rt_tasks *ts, rt_task *t, rt_task_outcome *out) {
  /* Not a memset of the whole outcome: the inline payload areas are a few
   * hundred bytes that a return overwrites anyway; "unset" is data == NULL. */
  out->status = RAY_OK;
  out->exit_actor = false;
  out->reason = NULL;
  out->nstaged = t->nrets;
  if (t->nrets <= RT_TASK_INLINE_RETS) {
    out->staged = out->staged_inl;
    for (uint32_t i = 0; i < t->nrets; i++) out->staged[i].data = NULL;
  } else if (!(out->staged = rt_calloc(t->nrets, sizeof *out->staged))) {
    out->status = RAY_ENOMEM;
    out->reason = rt_strdup("no memory to stage the returns");
    return;
  }
  ray_ctx ctx = {ts, t, out, NULL};
  rt_clear_error(); /* so a failure's reason names this run's error, not an old one */
  rt_task *outer = t_current;
  t_current = t;
  /* Objects put by actor code are charged to the actor's quota. */
  uint16_t outer_account = rt_store_set_account(t->actor ? t->account : 0);
  uint64_t t0 = ts->timeline->on ? rt_prim_now_ns() : 0;
  ray_status s = t->run_kind == RT_RUN_TASK ? t->fn(&ctx) : t->invoke(t, &ctx);
  if (ts->timeline->on) {
    static const char *const kinds[] = {"task", "actor.method", "actor.on_start", "actor.on_stop"};
    uint64_t t1 = rt_prim_now_ns();
    char obj[33] = ""; /* the first result's ID, for the page's hover */
    if (t->nrets && t->rets && t->rets[0]) ray_ref_id(t->rets[0], obj);
    /* relaxed: whether ray_cancel got here before the end only marks the
     * slice; the outcome itself is decided by the task layer */
    bool cancelled = atomic_load_explicit(&t->cancel, memory_order_relaxed) != 0;
    rt_timeline_record(ts->timeline,
                       &(rt_tl_slice){kinds[t->run_kind], t->name, t->id, t->attempts, s, cancelled,
                                      rt_sched_worker_index(ts->sched), t0, t1, obj, t->nrets});
  }
  rt_store_set_account(outer_account);
  t_current = outer;
  out->status = s;
  if (s != RAY_OK) {
    if (ctx.fail_msg) {
      out->reason = ctx.fail_msg;
      ctx.fail_msg = NULL;
    } else {
      const char *detail = ray_last_error();
      int r = *detail ? rt_asprintf(&out->reason, "returned %s (%s)", ray_status_name(s), detail)
                      : rt_asprintf(&out->reason, "returned %s", ray_status_name(s));
      if (r < 0) out->reason = NULL;
    }
  }
  free(ctx.fail_msg);
  for (uint32_t i = 0; i < t->nargs; i++) {
    rt_task_arg *a = &t->args[i];
    if (a->viewed) {
      rt_store_view_drop(ts->store, &a->view);
      a->viewed = false;
    }
  }
}

void rt_ctx_discard(rt_tasks *ts, rt_task_outcome *out) {
  if (!out->staged) return;
  for (uint32_t i = 0; i < out->nstaged; i++) rt_store_payload_discard(ts->store, &out->staged[i]);
}

void rt_ctx_done(rt_task_outcome *out) {
  if (out->staged && out->staged != out->staged_inl) free(out->staged);
  out->staged = NULL;
}

/* ------------------------------------------------------------------------ */

size_t ray_ctx_nargs(const ray_ctx *ctx) {
  return ctx ? ctx->task->nargs : 0;
}

bool ray_ctx_cancelled(const ray_ctx *ctx) {
  /* acquire: pairs with the release store in ray_cancel. */
  return ctx && atomic_load_explicit(&ctx->task->cancel, memory_order_acquire);
}

ray_status ray_ctx_arg(ray_ctx *ctx, size_t i, const ray_type *expect, ray_view *out) {
  if (!ctx || !out) return rt_fail(RAY_EINVAL, "ray_ctx_arg: %s is NULL", ctx ? "out" : "ctx");
  rt_task *t = ctx->task;
  if (i >= t->nargs)
    return rt_fail(RAY_EINVAL, "ray_ctx_arg: task '%s' has %u arguments, not %zu", t->name,
                   t->nargs, i + 1);
  rt_task_arg *a = &t->args[i];
  char what[96], x[96], y[96];
  snprintf(what, sizeof what, "task '%s' argument %zu", t->name, i);
  if (a->kind == RT_ARG_VALUE) {
    if (expect && !rt_type_equal(a->type, expect))
      return rt_fail(RAY_ETYPE, "%s: value has type %s, expected %s", what,
                     rt_type_describe(a->type, x, sizeof x), rt_type_describe(expect, y, sizeof y));
    *out = (ray_view){a->data, a->size, a->type, NULL};
    return RAY_OK;
  }
  if (!a->viewed) {
    ray_status s = rt_store_view(ctx->ts->store, a->ref, expect, what, &a->view);
    if (s != RAY_OK) return s;
    a->viewed = true;
  } else if (expect && !rt_type_equal(a->view.type, expect)) {
    return rt_fail(RAY_ETYPE, "%s: object has type %s, expected %s", what,
                   rt_type_describe(a->view.type, x, sizeof x),
                   rt_type_describe(expect, y, sizeof y));
  }
  /* Borrowed: priv_ NULL makes a user's ray_view_release a no-op. */
  *out = (ray_view){a->view.data, a->view.size, a->view.type, NULL};
  return RAY_OK;
}

/* Typed arguments: ray_ctx_arg's check and message, under the helper's
 * name, and then the shape the helper reads. */
static ray_status typed_arg(ray_ctx *ctx, size_t i, const ray_type *type, const char *fn,
                            ray_view *v) {
  ray_status s = ray_ctx_arg(ctx, i, type, v);
  if (s == RAY_OK) return s;
  char msg[512];
  snprintf(msg, sizeof msg, "%s", ray_last_error());
  const char *rest = strncmp(msg, "ray_ctx_arg: ", 13) == 0 ? msg + 13 : msg;
  return rt_fail(s, "%s: %s", fn, rest);
}

static ray_status scalar_arg(ray_ctx *ctx, size_t i, const ray_type *type, const char *fn,
                             void *out) {
  if (ctx && !out) return rt_fail(RAY_EINVAL, "%s: out is NULL", fn);
  ray_view v;
  ray_status s = typed_arg(ctx, i, type, fn, &v);
  if (s != RAY_OK) return s;
  if (v.size != type->elem_size)
    return rt_fail(RAY_ETYPE, "%s: task '%s' argument %zu holds %zu '%s' elements, not one", fn,
                   ctx->task->name, i, v.size / type->elem_size, type->name);
  memcpy(out, v.data, type->elem_size);
  return RAY_OK;
}

ray_status ray_ctx_arg_i64(ray_ctx *ctx, size_t i, int64_t *out) {
  return scalar_arg(ctx, i, &ray_type_i64, "ray_ctx_arg_i64", out);
}

ray_status ray_ctx_arg_f64(ray_ctx *ctx, size_t i, double *out) {
  return scalar_arg(ctx, i, &ray_type_f64, "ray_ctx_arg_f64", out);
}

ray_status ray_ctx_arg_str(ray_ctx *ctx, size_t i, const char **out) {
  if (ctx && !out) return rt_fail(RAY_EINVAL, "ray_ctx_arg_str: out is NULL");
  ray_view v;
  ray_status s = typed_arg(ctx, i, &ray_type_str, "ray_ctx_arg_str", &v);
  if (s != RAY_OK) return s;
  if (!memchr(v.data, '\0', v.size))
    return rt_fail(RAY_ETYPE,
                   "ray_ctx_arg_str: task '%s' argument %zu: %zu bytes of 'str' "
                   "without a terminating NUL",
                   ctx->task->name, i, v.size);
  *out = v.data;
  return RAY_OK;
}

static ray_status return_slot(ray_ctx *ctx, size_t i, const char *fn, rt_payload **p) {
  if (!ctx) return rt_fail(RAY_EINVAL, "%s: ctx is NULL", fn);
  rt_task *t = ctx->task;
  if (i >= t->nrets)
    return rt_fail(RAY_EINVAL, "%s: task '%s' has %u returns, not %zu", fn, t->name, t->nrets,
                   i + 1);
  if (ctx->out->staged[i].data)
    return rt_fail(RAY_EINVAL, "%s: return %zu of task '%s' is already set", fn, i, t->name);
  *p = &ctx->out->staged[i];
  return RAY_OK;
}

/* Return i as a copy of size bytes of data; fn names the public call. */
static ray_status return_copy(ray_ctx *ctx, size_t i, const char *fn, const void *data, size_t size,
                              const ray_type *type) {
  rt_payload *p;
  ray_status s = return_slot(ctx, i, fn, &p);
  if (s != RAY_OK) return s;
  return rt_store_payload_copy(ctx->ts->store, fn, data, size, type, p);
}

ray_status ray_ctx_return(ray_ctx *ctx, size_t i, const void *data, size_t size,
                          const ray_type *type) {
  return return_copy(ctx, i, "ray_ctx_return", data, size, type);
}

ray_status ray_ctx_return_i64(ray_ctx *ctx, size_t i, int64_t v) {
  return return_copy(ctx, i, "ray_ctx_return_i64", &v, sizeof v, &ray_type_i64);
}

ray_status ray_ctx_return_f64(ray_ctx *ctx, size_t i, double v) {
  return return_copy(ctx, i, "ray_ctx_return_f64", &v, sizeof v, &ray_type_f64);
}

ray_status ray_ctx_return_owned(ray_ctx *ctx, size_t i, void *data, size_t size,
                                const ray_type *type, void (*free_fn)(void *)) {
  rt_payload *p;
  ray_status s = return_slot(ctx, i, "ray_ctx_return_owned", &p);
  if (s != RAY_OK) return s;
  return rt_store_payload_adopt(ctx->ts->store, "ray_ctx_return_owned", data, size, type, free_fn,
                                p);
}

ray_status ray_ctx_return_ref(ray_ctx *ctx, size_t i, ray_ref *ref) {
  rt_payload *p;
  ray_status s = return_slot(ctx, i, "ray_ctx_return_ref", &p);
  if (s != RAY_OK) return s;
  rt_store *st = ctx->ts->store;
  uint32_t state = rt_store_state(st, ref);
  if (state == RT_ST_FREE)
    return rt_fail(RAY_EINVAL, "ray_ctx_return_ref: ref %p is %s", (void *)ref,
                   ref ? "released or invalid" : "NULL");
  if (state != RT_ST_SEALED && state != RT_ST_FAILED) {
    bool ready;
    if ((s = ray_wait(&ref, 1, 1, -1, &ready)) != RAY_OK) return s;
  }
  const rt_error *err = rt_store_error(st, ref);
  if (err) return rt_fail(err->status, "ray_ctx_return_ref: %s", err->msg);
  return rt_store_payload_alias(st, "ray_ctx_return_ref", ref, p);
}

ray_status ray_ctx_arg_actor(ray_ctx *ctx, size_t i, ray_actor **out) {
  if (!ctx || !out)
    return rt_fail(RAY_EINVAL, "ray_ctx_arg_actor: %s is NULL", ctx ? "out" : "ctx");
  rt_task *t = ctx->task;
  if (i >= t->nargs)
    return rt_fail(RAY_EINVAL, "ray_ctx_arg_actor: task '%s' has %u arguments, not %zu", t->name,
                   t->nargs, i + 1);
  if (t->args[i].kind != RT_ARG_ACTOR)
    return rt_fail(RAY_ETYPE, "ray_ctx_arg_actor: task '%s' argument %zu is %s, not an actor",
                   t->name, i, t->args[i].kind == RT_ARG_REF ? "an object ref" : "a value");
  *out = t->args[i].actor;
  return RAY_OK;
}

ray_actor *ray_ctx_self(const ray_ctx *ctx) {
  if (!ctx || !ctx->task->actor) return NULL;
  return ctx->ts->owner_ops->actor_handle(ctx->ts->owner, ctx->task->actor);
}

ray_status ray_ctx_exit_actor(ray_ctx *ctx) {
  if (!ctx) return rt_fail(RAY_EINVAL, "ray_ctx_exit_actor: ctx is NULL");
  if (!ctx->task->actor || ctx->task->run_kind != RT_RUN_METHOD)
    return rt_fail(RAY_EINVAL, "ray_ctx_exit_actor: task '%s' is not an actor method",
                   ctx->task->name);
  ctx->out->exit_actor = true;
  return RAY_OK;
}

ray_status ray_ctx_fail(ray_ctx *ctx, const char *fmt, ...) {
  if (!ctx) return rt_fail(RAY_EINVAL, "ray_ctx_fail: ctx is NULL");
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (!fmt || rt_vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  va_end(ap);
  free(ctx->fail_msg);
  ctx->fail_msg = msg;
  return rt_fail(RAY_ETASK, "task '%s' failed: %s", ctx->task->name,
                 msg   ? msg
                 : fmt ? "(out of memory for the reason)"
                       : "(no reason)");
}
