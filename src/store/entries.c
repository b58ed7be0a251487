/*
 * entries.c - creating, holding and freeing entries: puts, refs, views'
 * release, pins, and the task layer's pending objects and staged payloads.
 *
 * Algorithm and trade-offs:
 *  - Lifetime: an entry's `holds` word counts refs (low half) and views (high
 *    half). Whoever moves it to zero frees the entry, exactly once. Refs and
 *    views are counted in one word because two separate counters would let
 *    the last ref-release and the last view-release both see "zero".
 *  - A new entry reserves its memory (memory.c) and a slot before anything
 *    is allocated, and is published by a release store of its state, so a
 *    put that fails leaves nothing behind and a getter sees a whole object.
 *  - Small objects (<= RT_INLINE_MAX bytes) live in the entry; larger ones in
 *    malloc'd memory or, from RT_BUFPOOL_MIN, in pooled pre-faulted buffers.
 *  - Freeing cascades (a refs object holds refs) through a per-thread list
 *    rather than recursion, so a long chain of refs objects cannot overflow
 *    the stack.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/types.h"
#include "store/creator.h"
#include "store/store_int.h"

/* ------------------------------------------------------------------------ */
/* Freeing                                                                  */
/* ------------------------------------------------------------------------ */

void rt_store_buffer_free(rt_store *st, uint16_t flags, void *data, rt_aux aux) {
  if ((flags & (RT_EF_ERROR | RT_EF_HEAP)) || (flags & (RT_EF_REFS | RT_EF_INLINE)) == RT_EF_REFS) {
    free(data);
  } else if (flags & RT_EF_OWNED) {
    if (aux.free_fn) aux.free_fn(data);
  } else if (flags & RT_EF_POOL) {
    rt_bufpool_put(&st->pool, data, aux.cap);
  }
}

/* Entries whose holds reached zero on this thread, waiting to be finalized,
 * linked through lru_next. `active` marks that a finalize loop is running
 * further up this thread's stack. */
static _Thread_local struct {
  uint32_t head;
  bool active;
} t_fin = {RT_NO_SLOT, false};

static void hold_drop(rt_store *st, uint32_t slot, rt_entry *e, uint64_t what);

/* Releases what a finalized entry's payload owns: an alias's hold on its
 * target or a refs object's refs (the flags exclude each other), then its
 * buffer. */
static void payload_release(rt_store *st, rt_entry *e, size_t size) {
  uint16_t f = e->flags;
  if (f & RT_EF_ALIAS) { /* a view of its target (rt_store_payload_alias) */
    uint32_t s2;
    rt_entry *e2 = rt_handle_resolve(&st->slots, e->aux.target, &s2);
    if (e2) hold_drop(st, s2, e2, RT_HOLD_VIEW);
  } else if (f & RT_EF_REFS) {
    ray_ref *const *refs = e->data;
    size_t n = size / sizeof(ray_ref *);
    for (size_t i = 0; i < n; i++) {
      uint32_t s2;
      rt_entry *e2 = rt_handle_resolve(&st->slots, refs[i], &s2);
      if (e2) hold_drop(st, s2, e2, RT_HOLD_REF);
    }
  }
  rt_store_buffer_free(st, f, e->data, e->aux);
}

static void finalize(rt_store *st, uint32_t slot, rt_entry *e) {
  size_t size = e->size;
  /* An alias's bytes are charged to its target, an error has none, and an
   * object that is out (spilled) gave its memory back when it went. The
   * last holder owns the entry: the spiller's flag changes, made under the
   * stripe lock before its own drop, are visible (hold_drop acquires). */
  bool out = (e->flags & RT_EF_SPILLABLE) && (e->locked_flags & RT_LF_OUT);
  size_t charged = (out || (e->flags & (RT_EF_ALIAS | RT_EF_ERROR))) ? 0 : size;
  /* relaxed, here and for `objects` below: counters that order nothing
   * (rt_store). */
  if (e->pins) atomic_fetch_sub_explicit(&st->bytes_pinned, size, memory_order_relaxed);
  e->pins = 0;
  account_uncharge(st, e->account, size);
  e->account = 0;
  if (e->locked_flags & RT_LF_MAPPED) /* restored by a map: unmap before forgetting it */
    rt_store_free_in_memory(st, e->flags, size, e->data, e->aux, true);
  else if (!out)
    payload_release(st, e, size);
  if (e->flags & RT_EF_SPILLABLE) rt_spill_forget_entry(st, e); /* its disk copy, if any */
  if (e->flags & RT_EF_REMOTE) { /* a copy of another rank's object: tell its lender */
    rt_remote_loc loc;
    memcpy(&loc, e->inl + RT_ENTRY_REMOTE_AT, sizeof loc);
    st->ops.remote_freed(st->ops.arg, &loc);
  }
  e->locked_flags = 0;
  e->data = NULL;
  e->type = NULL;
  e->size = 0;
  e->flags = 0;
  mem_release(st, charged);
  atomic_fetch_sub_explicit(&st->objects, 1, memory_order_relaxed);
  /* The generation changes before the state reads FREE, so a stale handle
   * fails either check. Relaxed: resolving a released handle is a bug we
   * report on a best-effort basis, not a synchronisation. */
  atomic_fetch_add_explicit(&e->gen, 1, memory_order_relaxed);
  atomic_store_explicit(&e->state, RT_ST_FREE, memory_order_relaxed);
  rt_slots_free(&st->slots, slot);
}

/* We dropped the last hold: the entry is ours. Finalizes it, and every
 * entry its finalization frees in turn, on this thread without recursion.
 * For a spillable entry, sp is its stripe, locked by the caller (see
 * hold_drop), which unlocks it here once the entry is off its LRU list:
 * the finalize list reuses the link field. */
static void entry_last_hold(rt_store *st, rt_stripe *sp, uint32_t slot, rt_entry *e) {
  if (sp) {
    RT_ASSERT_STRIPE_HELD(sp);
    if (e->locked_flags & RT_LF_ON_LRU) rt_lru_remove(&sp->lru, &st->slots, slot);
    stripe_unlock(sp);
  }
  e->lru_next = t_fin.head;
  t_fin.head = slot;
  if (t_fin.active) return;
  t_fin.active = true;
  while (t_fin.head != RT_NO_SLOT) {
    uint32_t s = t_fin.head;
    rt_entry *f = rt_slots_entry(&st->slots, s);
    t_fin.head = f->lru_next;
    f->lru_next = RT_NO_SLOT;
    finalize(st, s, f);
  }
  t_fin.active = false;
}

/*
 * Drops one ref or view; frees the entry if that was the last hold.
 *
 * After a drop that was not the last, this thread must not touch the entry
 * any more: another thread may drop the last hold at once, free the entry
 * and reuse its lru_next as a finalize-list link. The one follow-up a drop
 * needs, putting a spillable entry back on its LRU list when its last view
 * goes, therefore happens under the stripe lock together with the drop
 * itself, and the last drop of a spillable entry takes that lock before it
 * unlinks the entry: whichever of the two comes first runs whole. (Both
 * take the lock only where the LRU can change: a view drop that leaves
 * other views is one CAS, and entries that are never spilled never lock.)
 */
static void hold_drop(rt_store *st, uint32_t slot, rt_entry *e, uint64_t what) {
  /* A view is only taken of a sealed entry, whose flags are fixed (those of
   * a PENDING one are written when it ends): safe to read while we hold it. */
  if (what == RT_HOLD_VIEW && (e->flags & RT_EF_SPILLABLE)) {
    uint64_t h = atomic_load_explicit(&e->holds, memory_order_relaxed);
    /* release: as below; not the last hold, since another view remains. */
    while (RT_HOLD_VIEWS(h) > 1)
      if (atomic_compare_exchange_weak_explicit(&e->holds, &h, h - what, memory_order_release,
                                                memory_order_relaxed))
        return;
    rt_stripe *sp = stripe_of(st, slot);
    stripe_lock(sp);
    /* acq_rel: as below. (Another view may have come since our load: views
     * are taken under this lock, so the value this returns is exact.) */
    uint64_t old = atomic_fetch_sub_explicit(&e->holds, what, memory_order_acq_rel);
    if (RT_HOLD_VIEWS(old) == 1) /* relaxed: a counter (rt_store) */
      atomic_fetch_sub_explicit(&st->bytes_viewed, e->size, memory_order_relaxed);
    if (old == what) {
      entry_last_hold(st, sp, slot, e);
      return;
    }
    lru_update(st, sp, slot, e); /* if the last view went: spillable again */
    stripe_unlock(sp);
    return;
  }
  /* acq_rel: release makes this thread's reads of the payload happen before
   * the free; the thread that reaches zero acquires every other thread's. */
  uint64_t old = atomic_fetch_sub_explicit(&e->holds, what, memory_order_acq_rel);
  if (old != what) return;
  rt_stripe *sp = NULL;
  if (e->flags & RT_EF_SPILLABLE) { /* ours now: every writer's flags are visible */
    /* A view drop that put the entry on its LRU list did so under this
     * lock before its own decrement, which ours acquired: locking now waits
     * for it to finish and then sees its link. */
    sp = stripe_of(st, slot);
    stripe_lock(sp);
  }
  entry_last_hold(st, sp, slot, e);
}

/* ------------------------------------------------------------------------ */
/* Creating entries                                                         */
/* ------------------------------------------------------------------------ */

static ray_status check_new(const char *fn, size_t size, const ray_type *type, const void *out) {
  if (!out) return rt_fail(RAY_EINVAL, "%s: out is NULL", fn);
  if (size == 0) return rt_fail(RAY_EINVAL, "%s: size is 0", fn);
  if (!type->name) return rt_fail(RAY_EINVAL, "%s: type has a NULL name", fn);
  if (type->elem_size && size % type->elem_size)
    return rt_fail(RAY_EINVAL, "%s: %zu bytes is not a whole number of '%s' elements of %zu bytes",
                   fn, size, type->name, type->elem_size);
  return RAY_OK;
}

/* Reserves memory and a slot for a new object made by `creator`. The entry
 * is not published: its state stays FREE, and its holds 0, until the
 * caller publishes it (entry_publish). Holds stay 0 so that a reporter
 * (report.c), which takes a hold only on an entry whose holds are not 0,
 * never adds one to an entry that is still being made: a slot's holds go
 * from 0 to nonzero only in entry_publish. */
static ray_status entry_new(rt_store *st, const char *fn, size_t size, const ray_type *type,
                            rt_creator_id creator, uint32_t *slot_out, rt_entry **e_out) {
  uint16_t account = size ? rt_t_account : 0;
  ray_status s;
  if (account && (s = rt_store_account_charge(st, fn, account, size)) != RAY_OK) return s;
  if ((s = mem_reserve(st, fn, size)) != RAY_OK) {
    account_uncharge(st, account, size);
    return s;
  }
  uint32_t slot = rt_slots_alloc(&st->slots, creator);
  if (slot == RT_NO_SLOT) {
    mem_release(st, size);
    account_uncharge(st, account, size);
    return rt_fail(RAY_ENOMEM, "%s: no memory for another object entry", fn);
  }
  rt_entry *e = rt_slots_entry(&st->slots, slot);
  if (!e) __builtin_unreachable(); /* an allocated slot's chunk exists */
  /* relaxed: a free slot's holds are 0 (its last drop, or entry_abandon). */
  assert(atomic_load_explicit(&e->holds, memory_order_relaxed) == 0);
  e->pins = 0;
  e->account = account;
  e->flags = 0;
  e->locked_flags = 0;
  e->lru_prev = e->lru_next = RT_NO_SLOT;
  e->size = size;
  e->type = type;
  e->data = NULL;
  *slot_out = slot;
  *e_out = e;
  return RAY_OK;
}

/* Gives back a reserved entry that was never published (and has no
 * buffer yet). */
static void entry_abandon(rt_store *st, uint32_t slot, rt_entry *e) {
  size_t size = e->size;
  account_uncharge(st, e->account, size);
  e->account = 0;
  e->size = 0;
  e->type = NULL;
  rt_slots_free(&st->slots, slot); /* holds are still 0 (entry_new) */
  mem_release(st, size);
}

/* A buffer of size bytes: inline (in `inl`), heap or pool; sets *flags and,
 * for the pool, *cap. */
ray_status rt_store_alloc_apart(rt_store *st, const char *fn, size_t size, void **data,
                                uint16_t *flags, size_t *cap) {
  *flags = rt_store_apart_kind(size);
  *data = (*flags & RT_EF_HEAP) ? rt_malloc(size) : rt_bufpool_get(&st->pool, size, cap);
  if (!*data) {
    *flags = 0;
    return rt_fail(RAY_ENOMEM, "%s: out of memory for %zu bytes", fn, size);
  }
  return RAY_OK;
}

ray_status rt_store_alloc_buffer(rt_store *st, const char *fn, size_t size, unsigned char *inl,
                                 void **data, uint16_t *flags, size_t *cap) {
  if (size > RT_INLINE_MAX) return rt_store_alloc_apart(st, fn, size, data, flags, cap);
  *data = inl;
  *flags = RT_EF_INLINE;
  return RAY_OK;
}

/* Publishes a new entry in `state` with `holds` (RT_HOLD_REF per ref);
 * returns its handle. */
static ray_ref *entry_publish(rt_store *st, uint32_t slot, rt_entry *e, uint32_t state,
                              uint64_t holds) {
  /* relaxed: nobody can drop a hold before the handle is returned; a
   * reporter that takes one now, before the state below, sees the state
   * still FREE and drops it again (report.c). */
  atomic_store_explicit(&e->holds, holds, memory_order_relaxed);
  /* release: the payload, type and size written above are visible to any
   * thread that acquires the state (ray_get) or receives the handle. */
  atomic_store_explicit(&e->state, state, memory_order_release);
  if (state == RT_ST_SEALED && (e->flags & RT_EF_SPILLABLE)) lru_touch(st, slot, e);
  atomic_fetch_add_explicit(&st->objects, 1, memory_order_relaxed); /* a counter (rt_store) */
  if (state != RT_ST_PENDING) rt_count_put(&st->counts);
  return rt_handle_make(&st->slots, slot, atomic_load_explicit(&e->gen, memory_order_relaxed));
}

/* The shared start of ray_put and ray_create: checks, then an unpublished
 * entry with a buffer of size bytes. */
static ray_status new_buffered(const char *fn, const void *site, const void *data, size_t size,
                               const ray_type **type, const void *out, rt_store **st_out,
                               uint32_t *slot, rt_entry **e) {
  rt_store *st = rt_store_running(fn);
  if (!st) return RAY_ESHUTDOWN;
  if (!*type) *type = &ray_type_bytes;
  if (!data) return rt_fail(RAY_EINVAL, "%s: data is NULL", fn);
  ray_status s = check_new(fn, size, *type, out);
  if (s != RAY_OK) return s;
  if ((s = entry_new(st, fn, size, *type, rt_creator_site(fn, site), slot, e)) != RAY_OK) return s;
  rt_entry *n = *e;
  if ((s = rt_store_alloc_buffer(st, fn, size, n->inl, &n->data, &n->flags, &n->aux.cap)) !=
      RAY_OK) {
    entry_abandon(st, *slot, n);
    return s;
  }
  *st_out = st;
  return RAY_OK;
}

ray_status rt_store_put(const char *fn, const void *site, const void *data, size_t size,
                        const ray_type *type, ray_ref **out) {
  rt_store *st;
  uint32_t slot;
  rt_entry *e;
  ray_status s = new_buffered(fn, site, data, size, &type, out, &st, &slot, &e);
  if (s != RAY_OK) return s;
  memcpy(e->data, data, size);
  *out = entry_publish(st, slot, e, RT_ST_SEALED, RT_HOLD_REF);
  return RAY_OK;
}

ray_status ray_put(const void *data, size_t size, const ray_type *type, ray_ref **out) {
  return rt_store_put("ray_put", RT_CALLER(), data, size, type, out);
}

ray_status rt_store_put_owned(const char *fn, const void *site, void *data, size_t size,
                              const ray_type *type, void (*free_fn)(void *), ray_ref **out) {
  rt_store *st = rt_store_running(fn);
  if (!st) return RAY_ESHUTDOWN;
  if (!type) type = &ray_type_bytes;
  if (!data) return rt_fail(RAY_EINVAL, "%s: data is NULL", fn);
  ray_status s = check_new(fn, size, type, out);
  if (s != RAY_OK) return s;
  uint32_t slot;
  rt_entry *e;
  if ((s = entry_new(st, fn, size, type, rt_creator_site(fn, site), &slot, &e)) != RAY_OK) return s;
  e->data = data;
  e->aux.free_fn = free_fn;
  e->flags = RT_EF_OWNED; /* the caller's buffer: never spilled */
  *out = entry_publish(st, slot, e, RT_ST_SEALED, RT_HOLD_REF);
  return RAY_OK;
}

ray_status ray_put_owned(void *data, size_t size, const ray_type *type, void (*free_fn)(void *),
                         ray_ref **out) {
  return rt_store_put_owned("ray_put_owned", RT_CALLER(), data, size, type, free_fn, out);
}

ray_status rt_store_create(const char *fn, const void *site, size_t size, const ray_type *type,
                           void **data, ray_ref **out) {
  rt_store *st;
  uint32_t slot;
  rt_entry *e;
  ray_status s = new_buffered(fn, site, data, size, &type, out, &st, &slot, &e);
  if (s != RAY_OK) return s;
  *data = e->data;
  *out = entry_publish(st, slot, e, RT_ST_CREATING, RT_HOLD_REF);
  return RAY_OK;
}

ray_status ray_create(size_t size, const ray_type *type, void **data, ray_ref **out) {
  return rt_store_create("ray_create", RT_CALLER(), size, type, data, out);
}

ray_status rt_store_put_refs(const char *fn, const void *site, ray_ref *const refs[], size_t n,
                             ray_ref **out) {
  rt_store *st = rt_store_running(fn);
  if (!st) return RAY_ESHUTDOWN;
  if (!out) return rt_fail(RAY_EINVAL, "%s: out is NULL", fn);
  if (n && !refs) return rt_fail(RAY_EINVAL, "%s: refs is NULL with n = %zu", fn, n);
  if (n > SIZE_MAX / sizeof(ray_ref *))
    return rt_fail(RAY_EINVAL, "%s: n = %zu is too large", fn, n);
  for (size_t i = 0; i < n; i++) {
    uint32_t s2;
    if (!rt_handle_resolve(&st->slots, refs[i], &s2)) {
      char what[64];
      snprintf(what, sizeof what, "%s: refs[%zu]", fn, i);
      return rt_store_bad_handle(what, refs[i]);
    }
  }
  size_t size = n * sizeof(ray_ref *);
  uint32_t slot;
  rt_entry *e;
  ray_status s = entry_new(st, fn, size, &ray_type_refs, rt_creator_site(fn, site), &slot, &e);
  if (s != RAY_OK) return s;
  if (size <= RT_INLINE_MAX) {
    e->data = e->inl;
    e->flags = RT_EF_INLINE | RT_EF_REFS;
  } else if ((e->data = rt_malloc(size)) != NULL) {
    e->flags = RT_EF_REFS;
  } else {
    entry_abandon(st, slot, e);
    return rt_fail(RAY_ENOMEM, "%s: out of memory for %zu bytes", fn, size);
  }
  if (n) memcpy(e->data, refs, size);
  /* Each contained ref holds its object. Relaxed is enough for an increment
   * made by a holder of a reference (it cannot race with the free). */
  for (size_t i = 0; i < n; i++) {
    uint32_t s2;
    rt_entry *e2 = rt_handle_resolve(&st->slots, refs[i], &s2);
    atomic_fetch_add_explicit(&e2->holds, RT_HOLD_REF, memory_order_relaxed);
  }
  *out = entry_publish(st, slot, e, RT_ST_SEALED, RT_HOLD_REF);
  return RAY_OK;
}

ray_status ray_put_refs(ray_ref *const refs[], size_t n, ray_ref **out) {
  return rt_store_put_refs("ray_put_refs", RT_CALLER(), refs, n, out);
}

/* ------------------------------------------------------------------------ */
/* Refs, views, pins, IDs                                                   */
/* ------------------------------------------------------------------------ */

ray_ref *ray_ref_retain(ray_ref *ref) {
  rt_store *st = rt_store_current();
  uint32_t slot;
  rt_entry *e = st ? rt_handle_resolve(&st->slots, ref, &slot) : NULL;
  if (!e) return NULL;
  /* Relaxed: the caller holds a ref, so the count is above zero. */
  atomic_fetch_add_explicit(&e->holds, RT_HOLD_REF, memory_order_relaxed);
  return ref;
}

ray_ref *rt_store_try_retain(rt_store *st, ray_ref *ref) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return NULL;
  /* relaxed: a CAS from a nonzero count cannot resurrect an entry whose
   * last hold went (that one saw zero and finalizes it). The slot may have
   * been freed and reused between the resolve and the CAS: then the
   * generation differs afterwards and the hold we took is the new
   * object's, which we give back. */
  uint64_t h = atomic_load_explicit(&e->holds, memory_order_relaxed);
  do {
    if (h == 0) return NULL;
  } while (!atomic_compare_exchange_weak_explicit(&e->holds, &h, h + RT_HOLD_REF,
                                                  memory_order_acquire, memory_order_relaxed));
  if (atomic_load_explicit(&e->gen, memory_order_relaxed) != rt_handle_gen(ref, st->slots.salt)) {
    hold_drop(st, slot, e, RT_HOLD_REF);
    return NULL;
  }
  return ref;
}

static void ref_release(rt_store *st, ray_ref *ref) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  /* relaxed: a best-effort report of a double release, as in resolving. */
  if (!e || RT_HOLD_REFS(atomic_load_explicit(&e->holds, memory_order_relaxed)) == 0) {
    rt_warn("ray_ref_release: ref %p was already released or is invalid", (void *)ref);
    return;
  }
  hold_drop(st, slot, e, RT_HOLD_REF);
}

void rt_store_drop_ref(rt_store *st, uint32_t slot, rt_entry *e) {
  hold_drop(st, slot, e, RT_HOLD_REF);
}

void ray_ref_release(ray_ref *ref) {
  if (!ref) return;
  rt_store *st = rt_store_current();
  if (!st) return; /* everything was freed by ray_shutdown */
  ref_release(st, ref);
}

/* Drops the view hold of ref's object. */
static void view_drop(rt_store *st, ray_ref *ref, const char *fn) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  /* relaxed: a best-effort report of a double release, as in resolving. */
  if (!e || RT_HOLD_VIEWS(atomic_load_explicit(&e->holds, memory_order_relaxed)) == 0) {
    rt_warn("%s: view of ref %p was already released", fn, (void *)ref);
    return;
  }
  hold_drop(st, slot, e, RT_HOLD_VIEW);
}

void ray_view_release(ray_view *view) {
  if (!view || !view->priv_) return;
  rt_store *st = rt_store_current();
  void *priv = view->priv_;
  view->priv_ = NULL;
  view->data = NULL;
  view->size = 0;
  if (!st) return; /* the runtime is gone and freed the object with it */
  ray_ref *ref = rt_viewtab_close(&st->views, priv);
  if (RT_UNLIKELY(!ref)) {
    /* A copy of a view released before (or a view of an earlier runtime):
     * the hold it names is gone or belongs to another view. */
    rt_warn("ray_view_release: view %p was already released (through a copy of it?); "
            "ignored",
            priv);
    return;
  }
  view_drop(st, ref, "ray_view_release");
}

void rt_store_view_drop(rt_store *st, ray_view *view) {
  if (!view->priv_) return;
  view_drop(st, view->priv_, "rt_store_view_drop");
  view->priv_ = NULL;
  view->data = NULL;
  view->size = 0;
}

static ray_status pin_change(ray_ref *ref, int delta, const char *fn) {
  rt_store *st = rt_store_running(fn);
  if (!st) return RAY_ESHUTDOWN;
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, ref, &slot);
  if (!e) return rt_store_bad_handle(fn, ref);
  char id[33];
  rt_stripe *sp = stripe_of(st, slot);
  stripe_lock(sp);
  /* relaxed: a pin that follows the seal in the program's order sees it
   * (the program provides that happens-before); one racing the seal may be
   * refused as if it came first. The lock orders it against pins. */
  if ((atomic_load_explicit(&e->state, memory_order_relaxed) & RT_ST_MASK) != RT_ST_SEALED) {
    stripe_unlock(sp);
    return rt_fail(RAY_EINVAL, "%s: object %s is not sealed", fn, ENTRY_ID(st, slot, e, id));
  }
  /* Before the checks below: bringing it in unlocks the stripe for a while. */
  if (delta > 0 && (e->flags & RT_EF_SPILLABLE)) { /* a pin holds the object in memory */
    ray_status s = rt_store_bring_in(st, sp, slot, e, fn);
    if (s != RAY_OK) {
      stripe_unlock(sp);
      return s;
    }
  }
  if (delta < 0 && e->pins == 0) {
    stripe_unlock(sp);
    return rt_fail(RAY_EINVAL, "%s: object %s is not pinned", fn, ENTRY_ID(st, slot, e, id));
  }
  if (delta > 0 && e->pins == UINT16_MAX) {
    stripe_unlock(sp);
    return rt_fail(RAY_EINVAL, "%s: object %s is pinned too often", fn, ENTRY_ID(st, slot, e, id));
  }
  e->pins = (uint16_t)(e->pins + delta);
  if (e->pins == (delta > 0 ? 1u : 0u)) { /* relaxed: a counter (rt_store) */
    if (delta > 0)
      atomic_fetch_add_explicit(&st->bytes_pinned, e->size, memory_order_relaxed);
    else
      atomic_fetch_sub_explicit(&st->bytes_pinned, e->size, memory_order_relaxed);
  }
  lru_update(st, sp, slot, e);
  stripe_unlock(sp);
  return RAY_OK;
}

ray_status ray_pin(ray_ref *ref) {
  return pin_change(ref, +1, "ray_pin");
}
ray_status ray_unpin(ray_ref *ref) {
  return pin_change(ref, -1, "ray_unpin");
}

void ray_ref_id(const ray_ref *ref, char hex[33]) {
  if (!hex) return;
  rt_store *st = rt_store_current();
  uint32_t slot;
  rt_entry *e = st ? rt_handle_resolve(&st->slots, ref, &slot) : NULL;
  if (!e) {
    memset(hex, '0', 32);
    hex[32] = '\0';
    return;
  }
  rt_store_id_hex(st, slot, atomic_load_explicit(&e->gen, memory_order_relaxed), hex);
}

/* ------------------------------------------------------------------------ */
/* For the task layer: pending objects, staged payloads                     */
/* ------------------------------------------------------------------------ */

ray_status rt_store_new_pending(rt_store *st, const char *fn, void *producer, rt_creator_id creator,
                                ray_ref **user) {
  uint32_t slot;
  rt_entry *e;
  ray_status s = entry_new(st, fn, 0, NULL, creator, &slot, &e);
  if (s != RAY_OK) return s;
  e->aux.producer = producer;
  /* Two refs: the submitter's and the producer's. */
  *user = entry_publish(st, slot, e, RT_ST_PENDING, 2 * RT_HOLD_REF);
  return RAY_OK;
}

static ray_status payload_check(const char *fn, const void *data, size_t size,
                                const ray_type *type) {
  if (!data) return rt_fail(RAY_EINVAL, "%s: data is NULL", fn);
  return check_new(fn, size, type, data);
}

ray_status rt_store_payload_copy(rt_store *st, const char *fn, const void *data, size_t size,
                                 const ray_type *type, rt_payload *p) {
  if (!type) type = &ray_type_bytes;
  ray_status s = payload_check(fn, data, size, type);
  if (s != RAY_OK) return s;
  if ((s = mem_reserve(st, fn, size)) != RAY_OK) return s;
  size_t cap = 0;
  if ((s = rt_store_alloc_buffer(st, fn, size, p->inl, &p->data, &p->flags, &cap)) != RAY_OK) {
    mem_release(st, size);
    return s;
  }
  memcpy(p->data, data, size);
  p->aux.cap = cap;
  p->size = size;
  p->type = type;
  return RAY_OK;
}

ray_status rt_store_payload_adopt(rt_store *st, const char *fn, void *data, size_t size,
                                  const ray_type *type, void (*free_fn)(void *), rt_payload *p) {
  if (!type) type = &ray_type_bytes;
  ray_status s = payload_check(fn, data, size, type);
  if (s != RAY_OK) return s;
  if ((s = mem_reserve(st, fn, size)) != RAY_OK) return s;
  p->data = data;
  p->size = size;
  p->type = type;
  p->flags = RT_EF_OWNED; /* the caller's buffer: never spilled */
  p->aux.free_fn = free_fn;
  return RAY_OK;
}

ray_status rt_store_payload_alias(rt_store *st, const char *fn, ray_ref *target, rt_payload *p) {
  uint32_t slot;
  rt_entry *e = rt_handle_resolve(&st->slots, target, &slot);
  if (!e) return rt_store_bad_handle(fn, target);
  if ((atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK) != RT_ST_SEALED) {
    char id[33];
    return rt_fail(RAY_EINVAL, "%s: object %s is not sealed", fn, ENTRY_ID(st, slot, e, id));
  }
  /* A view, not just a ref: the alias reads the target's bytes, which must
   * stay in memory (a view keeps an object from being spilled, and taking
   * it restores a spilled one). */
  ray_view v;
  ray_status s = rt_store_view(st, target, NULL, fn, &v);
  if (s != RAY_OK) return s;
  p->data = (void *)v.data;
  p->size = v.size;
  p->type = v.type;
  p->flags = RT_EF_ALIAS;
  p->aux.target = target;
  return RAY_OK;
}

void rt_store_payload_discard(rt_store *st, rt_payload *p) {
  if (!p->data) return;
  if (p->flags & RT_EF_ALIAS) {
    view_drop(st, p->aux.target, "rt_store_payload_discard");
  } else {
    rt_store_buffer_free(st, p->flags, p->data, p->aux);
    mem_release(st, p->size);
  }
  p->data = NULL;
}
